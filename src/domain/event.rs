//! Domain events: what happened to a customer, a company or a note, as the rest of the
//! business knows it.
//!
//! The service layer records one [`EventData`] per change, inside the change's transaction;
//! adapters turn it into `customer.v1.CustomerEvent` (gRPC, REST, NATS). Every event is about
//! one resource (its *aggregate*: `customers/{id}`, `companies/{id}` or
//! `customers/{id}/notes/{id}`) and numbered within it. This module also holds the pure
//! parts of reading events: the diff between two states of a customer and the `parent` of
//! ListCustomerEvents/WatchCustomerEvents. ListCustomerEvents' filter is the common AIP-160
//! language over [`EventField`](super::filter::EventField).

use super::names::ResourceName as _;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    FieldViolation,
    company::{Company, CompanyData},
    customer::{Customer, CustomerData, PostalAddress},
    names::{CompanyName, CustomerName},
    note::{Note, NoteData},
};

/// The kinds of events, named as the business knows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// A customer was registered.
    CustomerRegistered,
    /// Fields of a customer changed.
    CustomerUpdated,
    /// A customer was soft-deleted.
    CustomerDeleted,
    /// A soft-deleted customer was restored.
    CustomerUndeleted,
    /// A soft-deleted customer was removed for good after its retention.
    CustomerPurged,
    /// A customer was erased at once (EraseCustomer).
    CustomerErased,
    /// Other customers were merged into a customer (MergeCustomers).
    CustomersMerged,
    /// A merge into a customer was undone (UnmergeCustomers).
    CustomersUnmerged,
    /// A company was created.
    CompanyCreated,
    /// Fields of a company changed.
    CompanyUpdated,
    /// A company was soft-deleted.
    CompanyDeleted,
    /// A soft-deleted company was restored.
    CompanyUndeleted,
    /// A note was added to a customer.
    NoteAdded,
    /// The text of a note changed.
    NoteUpdated,
    /// A note was deleted.
    NoteDeleted,
}

/// The kind of resource an event is about, which decides the shape of its [`EventData`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// `customers/{id}`
    Customer,
    /// `companies/{id}`
    Company,
    /// `customers/{id}/notes/{id}`
    Note,
}

impl EventType {
    /// Every type, for parsing and documentation.
    pub const ALL: [Self; 15] = [
        Self::CustomerRegistered,
        Self::CustomerUpdated,
        Self::CustomerDeleted,
        Self::CustomerUndeleted,
        Self::CustomerPurged,
        Self::CustomerErased,
        Self::CustomersMerged,
        Self::CustomersUnmerged,
        Self::CompanyCreated,
        Self::CompanyUpdated,
        Self::CompanyDeleted,
        Self::CompanyUndeleted,
        Self::NoteAdded,
        Self::NoteUpdated,
        Self::NoteDeleted,
    ];

    /// The name stored and filtered on, also the CloudEvents type after `customer.v1.`:
    /// `CustomerRegistered`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CustomerRegistered => "CustomerRegistered",
            Self::CustomerUpdated => "CustomerUpdated",
            Self::CustomerDeleted => "CustomerDeleted",
            Self::CustomerUndeleted => "CustomerUndeleted",
            Self::CustomerPurged => "CustomerPurged",
            Self::CustomerErased => "CustomerErased",
            Self::CustomersMerged => "CustomersMerged",
            Self::CustomersUnmerged => "CustomersUnmerged",
            Self::CompanyCreated => "CompanyCreated",
            Self::CompanyUpdated => "CompanyUpdated",
            Self::CompanyDeleted => "CompanyDeleted",
            Self::CompanyUndeleted => "CompanyUndeleted",
            Self::NoteAdded => "NoteAdded",
            Self::NoteUpdated => "NoteUpdated",
            Self::NoteDeleted => "NoteDeleted",
        }
    }

    /// The last token of the NATS subject: `registered` for customer events (as first
    /// published, so existing subscriptions keep working), `company_created`, `note_added`
    /// … for the others.
    pub fn subject_token(self) -> &'static str {
        match self {
            Self::CustomerRegistered => "registered",
            Self::CustomerUpdated => "updated",
            Self::CustomerDeleted => "deleted",
            Self::CustomerUndeleted => "undeleted",
            Self::CustomerPurged => "purged",
            Self::CustomerErased => "erased",
            Self::CustomersMerged => "merged",
            Self::CustomersUnmerged => "unmerged",
            Self::CompanyCreated => "company_created",
            Self::CompanyUpdated => "company_updated",
            Self::CompanyDeleted => "company_deleted",
            Self::CompanyUndeleted => "company_undeleted",
            Self::NoteAdded => "note_added",
            Self::NoteUpdated => "note_updated",
            Self::NoteDeleted => "note_deleted",
        }
    }

    /// The kind of resource events of this type are about.
    pub fn resource(self) -> ResourceKind {
        match self {
            Self::CustomerRegistered
            | Self::CustomerUpdated
            | Self::CustomerDeleted
            | Self::CustomerUndeleted
            | Self::CustomerPurged
            | Self::CustomerErased
            | Self::CustomersMerged
            | Self::CustomersUnmerged => ResourceKind::Customer,
            Self::CompanyCreated
            | Self::CompanyUpdated
            | Self::CompanyDeleted
            | Self::CompanyUndeleted => ResourceKind::Company,
            Self::NoteAdded | Self::NoteUpdated | Self::NoteDeleted => ResourceKind::Note,
        }
    }

    /// The type named `text`, if any.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

/// One change of a resource of type `S` whose mutable fields are `D`: the resource after the
/// change and, for an update, what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change<S, D> {
    /// The resource after the change (for a hard delete: as it was last).
    pub snapshot: S,
    /// Field paths whose values changed (updates only): every field that differs between
    /// `previous` and the snapshot, and no other.
    pub changed_fields: Vec<String>,
    /// The resource's fields before the change (updates only); adapters show only the
    /// changed ones.
    pub previous: Option<D>,
}

/// The payload of an event: which resource changed and how. Stored in a versioned encoding
/// (`crate::encoding::event_payload`), never as the serde image of these types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventData {
    /// A customer changed.
    Customer(Box<Change<Customer, CustomerData>>),
    /// A company changed.
    Company(Box<Change<Company, CompanyData>>),
    /// A note changed.
    Note(Box<Change<Note, NoteData>>),
    /// Customers were merged into a customer, or a merge was undone: the target's change.
    Merge(Box<MergeChange>),
}

/// What a merge or an unmerge did to its target ([`EventData::Merge`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeChange {
    /// The target's change (snapshot, changed fields, previous values).
    pub change: Change<Customer, CustomerData>,
    /// The merge record, `customers/{target}/merges/{merge}`.
    pub merge: String,
    /// The sources, `customers/{id}`.
    pub sources: Vec<String>,
    /// The notes moved: (previous name, name).
    pub moved_notes: Vec<(String, String)>,
}

impl EventData {
    /// This event as the history keeps it once its customer is purged (`purged` is the
    /// customer's purged snapshot, [`Customer::purged`]): a customer event shows the purged
    /// snapshot (name, status and times only), a note event its note with an empty text, and
    /// neither keeps `previous`. What happened stays: types, sequences and changed field
    /// names are untouched. Company events hold no customer's data and stay as they are.
    pub fn forget(self, purged: &Customer) -> Self {
        self.erase(|_| purged.clone())
    }

    /// This event as a caller without `customers.admin` sees it while its customer is
    /// soft-deleted: as [`EventData::forget`] makes it, except that a customer event keeps its
    /// own snapshot's name, version, times and status.
    pub fn redacted(self) -> Self {
        self.erase(Customer::without_personal_data)
    }

    /// The event without `previous`, a note's text or the customer data `snapshot` leaves
    /// of a customer event's snapshot.
    fn erase(self, snapshot: impl FnOnce(&Customer) -> Customer) -> Self {
        match self {
            Self::Customer(change) => Self::Customer(Box::new(Change {
                snapshot: snapshot(&change.snapshot),
                changed_fields: change.changed_fields,
                previous: None,
            })),
            Self::Note(mut change) => {
                change.snapshot.data.text.clear();
                change.previous = None;
                Self::Note(change)
            }
            Self::Company(change) => Self::Company(change),
            Self::Merge(merge) => {
                let MergeChange {
                    change,
                    merge,
                    sources,
                    moved_notes,
                } = *merge;
                Self::Merge(Box::new(MergeChange {
                    change: Change {
                        snapshot: snapshot(&change.snapshot),
                        changed_fields: change.changed_fields,
                        previous: None,
                    },
                    merge,
                    sources,
                    moved_notes,
                }))
            }
        }
    }
}

/// An event as its write records it in the outbox, inside the write's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// What happened.
    pub event_type: EventType,
    /// The resource it happened to, the aggregate (`customers/{id}`, …).
    pub resource: String,
    /// 1, 2, 3 … per resource, without gaps (a note's deletion takes the number after its
    /// last version).
    pub sequence: i64,
    /// Snapshot and diff.
    pub data: EventData,
    /// Who did it.
    pub actor: String,
    /// The request id of the call, if any.
    pub request_id: Option<Uuid>,
}

/// A recorded event, as read back from the log: what its write recorded, and what the log
/// added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Unique id (UUID v7).
    pub event_id: Uuid,
    /// The customer it concerns: the resource itself, a note's customer, or empty for
    /// company events.
    pub customer: String,
    /// What the write recorded.
    pub recorded: NewEvent,
    /// When it happened.
    pub occur_time: DateTime<Utc>,
    /// Commit-ordered position in the log (what resume tokens carry).
    pub position: i64,
}

/// The field paths whose values differ between two states, in field order. Address
/// sub-fields are named individually when both states have an address.
pub fn changed_fields(before: &CustomerData, after: &CustomerData) -> Vec<String> {
    let mut paths = Vec::new();
    let mut check = |changed: bool, path: &str| {
        if changed {
            paths.push(path.to_owned());
        }
    };
    check(before.given_name != after.given_name, "given_name");
    check(before.family_name != after.family_name, "family_name");
    check(before.email != after.email, "email");
    check(before.phone != after.phone, "phone");
    match (&before.address, &after.address) {
        (Some(b), Some(a)) => {
            let PostalAddress {
                lines,
                locality,
                region,
                postal_code,
                country_code,
            } = b;
            check(*lines != a.lines, "address.lines");
            check(*locality != a.locality, "address.locality");
            check(*region != a.region, "address.region");
            check(*postal_code != a.postal_code, "address.postal_code");
            check(*country_code != a.country_code, "address.country_code");
        }
        (b, a) => check(b != a, "address"),
    }
    check(before.status != after.status, "status");
    check(before.company != after.company, "company");
    check(before.business_id != after.business_id, "business_id");
    check(before.labels != after.labels, "labels");
    check(before.external_ids != after.external_ids, "external_ids");
    paths
}

/// Whose events a list or watch covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventParent {
    /// `customers/-`: every event (customers, their notes, companies).
    All,
    /// `customers/{id}`: one customer and its notes.
    Customer(CustomerName),
    /// `companies/{id}`: one company.
    Company(CompanyName),
}

impl EventParent {
    /// Parses `customers/-`, `customers/{uuid}` or `companies/{uuid}`.
    pub fn parse(field: &str, text: &str) -> Result<Self, FieldViolation> {
        if text == "customers/-" {
            return Ok(Self::All);
        }
        let parsed = if text.starts_with("companies/") {
            CompanyName::parse(field, text).map(Self::Company)
        } else {
            CustomerName::parse(field, text).map(Self::Customer)
        };
        parsed.map_err(|violation| FieldViolation {
            field: violation.field,
            description: format!(
                "{}; use customers/- for the events of every customer and company",
                violation.description
            ),
        })
    }

    /// The resource to restrict to (its own events and, for a customer, its notes'), if
    /// any.
    pub fn resource(&self) -> Option<String> {
        match self {
            Self::All => None,
            Self::Customer(name) => Some(name.to_string()),
            Self::Company(name) => Some(name.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::customer::Status;

    fn data() -> CustomerData {
        CustomerData {
            given_name: "Ada".into(),
            family_name: "Lovelace".into(),
            email: "ada@example.com".into(),
            phone: None,
            address: Some(PostalAddress {
                locality: "London".into(),
                country_code: "GB".into(),
                ..PostalAddress::default()
            }),
            status: Status::Active,
            company: None,
            business_id: None,
            labels: Default::default(),
            external_ids: Default::default(),
        }
    }

    #[test]
    fn changed_fields_names_each_changed_field_in_order() {
        let before = data();
        let mut after = data();
        after.family_name = "Byron".into();
        after.status = Status::Inactive;
        after.labels.insert("tier".into(), "gold".into());
        if let Some(address) = after.address.as_mut() {
            address.locality = "Paris".into();
        }
        assert_eq!(
            changed_fields(&before, &after),
            ["family_name", "address.locality", "status", "labels"]
        );
        assert!(changed_fields(&before, &before).is_empty());
    }

    #[test]
    fn every_type_names_its_resource_and_subject() {
        assert_eq!(EventType::CompanyCreated.subject_token(), "company_created");
        assert_eq!(EventType::NoteAdded.subject_token(), "note_added");
        assert_eq!(EventType::CustomerRegistered.subject_token(), "registered");
        assert_eq!(EventType::NoteDeleted.resource(), ResourceKind::Note);
        assert_eq!(EventType::CompanyUpdated.resource(), ResourceKind::Company);
        for kind in EventType::ALL {
            assert_eq!(EventType::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn a_removed_address_is_one_change() {
        let before = data();
        let mut after = data();
        after.address = None;
        assert_eq!(changed_fields(&before, &after), ["address"]);
    }

    #[test]
    fn parent_is_all_one_customer_or_one_company() {
        assert_eq!(
            EventParent::parse("parent", "customers/-"),
            Ok(EventParent::All)
        );
        let id = Uuid::now_v7();
        assert_eq!(
            EventParent::parse("parent", &format!("customers/{id}")),
            Ok(EventParent::Customer(CustomerName(id)))
        );
        assert_eq!(
            EventParent::parse("parent", &format!("companies/{id}")),
            Ok(EventParent::Company(CompanyName(id)))
        );
        assert_eq!(
            EventParent::parse("parent", &format!("companies/{id}"))
                .unwrap()
                .resource(),
            Some(format!("companies/{id}"))
        );
        for bad in ["companies/x", "customers/x", "notes/x", "companies/-"] {
            let error = EventParent::parse("parent", bad).unwrap_err();
            assert_eq!(error.field, "parent");
            assert!(error.description.contains("customers/-"), "{error:?}");
        }
    }
}
