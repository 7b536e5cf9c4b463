//! Customers as a resource of the core: the declaration plus the customer's own rules.
//!
//! Rules beyond the core's: a customer's `company` must name a live company, share-locked
//! while the write runs (so a concurrent DeleteCompany waits, and a customer never joins a
//! deleted company); an undeleted customer whose company was deleted meanwhile comes back
//! without it; a soft-deleted customer shows its `expire_time`, when the purger removes it.

use crate::domain::names::ResourceName as _;
use std::time::Duration;

use crate::{
    convert::{self, timestamp},
    core::{
        fingerprint::{Fingerprint, Parts},
        mask::mask_fields,
        resource::{Events, Reasons, Resource},
        store::{Lock, Repository, Storage, Store, Transact},
        write::{
            Origin, Writer, call, change, collect, insert_new, locked_live, masked_stand_in,
            update_mask,
        },
    },
    domain::{
        Input as _, Violations,
        company::Company,
        customer::{
            Customer, CustomerData, CustomerField, CustomerInput, PostalAddress, clip,
            external_id_problem, is_external_source,
        },
        event::{Change, EventData, EventType, changed_fields},
        names::{self, CUSTOMER_TYPE, CompanyName, CustomerName},
        stored::Stored,
    },
    pb,
    service::{Error, Result, error::reason},
};

impl Resource for Customer {
    type Name = CustomerName;
    type Input = CustomerInput;
    type Data = CustomerData;
    type Field = CustomerField;
    type Message = pb::Customer;

    const TYPE: &'static str = CUSTOMER_TYPE;
    const PROTO: &'static str = "customer.v1.Customer";
    const FIELD: &'static str = "customer";
    const KIND: &'static str = "Customer";
    const EVENTS: Events = Events {
        created: EventType::CustomerRegistered,
        updated: EventType::CustomerUpdated,
        deleted: EventType::CustomerDeleted,
        undeleted: Some(EventType::CustomerUndeleted),
    };
    const REASONS: Reasons = Reasons {
        deleted: reason::DELETED,
        deleted_message: "is deleted; undelete it first",
        not_deleted: reason::NOT_DELETED,
    };

    fn name(&self) -> CustomerName {
        Customer::name(self)
    }

    fn gate(gates: &crate::core::coalesce::Gates) -> Option<&crate::core::coalesce::Gate<Self>> {
        Some(&gates.customers)
    }

    fn stored(&self) -> &Stored {
        &self.stored
    }

    fn data(&self) -> &CustomerData {
        &self.data
    }

    fn stand_in() -> CustomerInput {
        CustomerInput {
            given_name: "x".into(),
            family_name: "x".into(),
            email: "x@example.com".into(),
            address: Some(PostalAddress {
                country_code: "US".into(),
                ..PostalAddress::default()
            }),
            ..CustomerInput::default()
        }
    }

    fn to_message(self) -> pb::Customer {
        let stored = self.stored_message();
        let data = self.data;
        pb::Customer {
            given_name: data.given_name,
            family_name: data.family_name,
            email: data.email,
            phone: data.phone.unwrap_or_default(),
            address: data.address.map(convert::address_to_proto),
            status: i32::from(data.status.number()),
            company: data.company.unwrap_or_default(),
            business_id: data.business_id.unwrap_or_default(),
            labels: data.labels,
            external_ids: data.external_ids,
            expire_time: self.expire_time.map(timestamp),
            merged_into: self
                .merged_into
                .map(|name| name.to_string())
                .unwrap_or_default(),
            ..stored
        }
    }

    fn input_from(customer: pb::Customer) -> CustomerInput {
        CustomerInput {
            given_name: customer.given_name,
            family_name: customer.family_name,
            email: customer.email,
            phone: customer.phone,
            address: customer.address.map(convert::address_from_proto),
            status: customer.status,
            company: customer.company,
            business_id: customer.business_id,
            labels: customer.labels,
            external_ids: customer.external_ids,
        }
    }

    fn input_message(input: &CustomerInput) -> pb::Customer {
        pb::Customer {
            given_name: input.given_name.clone(),
            family_name: input.family_name.clone(),
            email: input.email.clone(),
            phone: input.phone.clone(),
            address: input.address.clone().map(convert::address_to_proto),
            status: input.status,
            company: input.company.clone(),
            business_id: input.business_id.clone(),
            labels: input.labels.clone(),
            external_ids: input.external_ids.clone(),
            ..pb::Customer::default()
        }
    }

    fn legacy_input(input: &CustomerInput) -> String {
        serde_json::to_string(input).unwrap_or_default()
    }

    /// Logged as is: the log writer masks email addresses and phone numbers in every line
    /// (`j***@example.com`), which keeps the domain for operators and nothing more.
    fn trace_create(data: &CustomerData) {
        tracing::debug!(
            email = %data.email,
            phone = data.phone.as_deref().unwrap_or_default(),
            "creating customer"
        );
    }

    fn event(event_type: EventType, snapshot: &Self, previous: Option<&CustomerData>) -> EventData {
        let _ = event_type;
        EventData::Customer(Box::new(Change {
            changed_fields: previous
                .map(|before| changed_fields(before, &snapshot.data))
                .unwrap_or_default(),
            previous: previous.cloned(),
            snapshot: snapshot.clone(),
        }))
    }

    /// `expire_time` is derived rather than stored, so a changed retention applies to every
    /// deleted customer at once, as the purger applies it.
    fn with_retention(mut self, retention: Option<Duration>) -> Self {
        self.expire_time = self
            .stored
            .delete_time
            .zip(retention)
            .and_then(|(deleted, after)| {
                chrono::Duration::from_std(after)
                    .ok()
                    .and_then(|after| deleted.checked_add_signed(after))
            });
        self
    }

    /// Only a new reference is checked: a customer keeps the company it has.
    async fn check_references<C: Storage>(
        conn: &mut C,
        data: &CustomerData,
        current: Option<&CustomerData>,
    ) -> Result<()> {
        match &data.company {
            Some(company) if current.is_none_or(|current| current.company != data.company) => {
                check_company_reference(conn, company).await
            }
            _ => Ok(()),
        }
    }

    /// A company deleted while the customer was deleted does not come back with it
    /// (DeleteCompany only detached live customers). A merged customer comes back only by
    /// UnmergeCustomers (FAILED_PRECONDITION, CUSTOMER_MERGED).
    async fn restored_data<C: Storage>(
        conn: &mut C,
        current: &Self,
    ) -> Result<Option<CustomerData>> {
        if let Some(into) = current.merged_into {
            return Err(Error::FailedPrecondition {
                message: format!(
                    "{} was merged into {into}; undo the merge with UnmergeCustomers",
                    current.name()
                ),
                reason: reason::CUSTOMER_MERGED,
                resource_type: CUSTOMER_TYPE,
                resource_name: current.name().to_string(),
            });
        }
        let Some(company) = &current.data.company else {
            return Ok(None);
        };
        if live_company(conn, company).await?.is_some() {
            return Ok(None);
        }
        let mut data = current.data.clone();
        data.company = None;
        Ok(Some(data))
    }
}

mask_fields! {
    CustomerField for CustomerInput [
        labels: Label by crate::domain::customer::is_label_key as "label key",
        external_ids: ExternalId by crate::domain::customer::is_external_source as "external id source"
    ] {
        GivenName = "given_name" => given_name,
        FamilyName = "family_name" => family_name,
        Email = "email" => email,
        Phone = "phone" => phone,
        Address = "address" => address,
        AddressLines = "address.lines" => (|t, s| address(t).lines = part(s, |a| &a.lines)),
        AddressLocality = "address.locality" => (|t, s| address(t).locality = part(s, |a| &a.locality)),
        AddressRegion = "address.region" => (|t, s| address(t).region = part(s, |a| &a.region)),
        AddressPostalCode = "address.postal_code" => (|t, s| address(t).postal_code = part(s, |a| &a.postal_code)),
        AddressCountryCode = "address.country_code" => (|t, s| address(t).country_code = part(s, |a| &a.country_code)),
        Status = "status" => status,
        Company = "company" => company,
        BusinessId = "business_id" => business_id,
        Labels = "labels" => labels,
        ExternalIds = "external_ids" => external_ids,
    }
}

/// The address a part of it is copied into, created empty if missing.
fn address(target: &mut CustomerInput) -> &mut PostalAddress {
    target.address.get_or_insert_with(PostalAddress::default)
}

/// A part of the source's address; empty when it has none (the part is then cleared).
fn part<T: Clone + Default>(source: &CustomerInput, get: fn(&PostalAddress) -> &T) -> T {
    source
        .address
        .as_ref()
        .map(get)
        .cloned()
        .unwrap_or_default()
}

/// The company a customer refers to, share-locked for this transaction, if it is live.
async fn live_company<C: Storage>(conn: &mut C, reference: &str) -> Result<Option<Company>> {
    let Ok(name) = CompanyName::parse("", reference) else {
        return Ok(None);
    };
    let company = Repository::<Company>::find(conn, name, Lock::Share).await?;
    Ok(company.filter(|company| !company.is_deleted()))
}

/// A new `customer.company` must name a live company: INVALID_ARGUMENT naming the field
/// otherwise.
async fn check_company_reference<C: Storage>(conn: &mut C, reference: &str) -> Result<()> {
    let Ok(name) = CompanyName::parse("customer.company", reference) else {
        // Validation already checked the form; a malformed name is simply not a company.
        return Err(Error::invalid_field(
            reason::INVALID_FIELDS,
            "customer.company",
            format!("`{reference}` is not a company name"),
        ));
    };
    let problem = match Repository::<Company>::find(conn, name, Lock::Share).await? {
        None => "does not exist",
        Some(company) if company.is_deleted() => "is deleted",
        Some(_) => return Ok(()),
    };
    Err(Error::invalid_field(
        reason::INVALID_FIELDS,
        "customer.company",
        format!("{name} {problem}; refer to a live company or leave the field empty"),
    ))
}

/// An upsert by external key (UpsertCustomer).
#[derive(Debug, Clone, Default)]
pub struct UpsertRequest {
    /// The source system of the key.
    pub source: String,
    /// The id the source knows the customer by.
    pub external_id: String,
    /// The values.
    pub input: CustomerInput,
    /// `update_mask.paths`; `None` (or empty): the fields set in `input`.
    pub update_mask: Option<Vec<String>>,
    /// Idempotency key.
    pub request_id: String,
}

/// Creates or updates the live customer holding `(source, external_id)`, in one transaction
/// on the core's write path: under a lock on the key (so concurrent upserts of one key take
/// turns and make one customer), the holder is looked up; none is registered with the key
/// set (CustomerRegistered), one is changed like an update (CustomerUpdated, or nothing).
/// A retry with the same request id replays the first answer.
pub async fn upsert<S>(writer: &Writer<S>, request: UpsertRequest, actor: &str) -> Result<Customer>
where
    S: Transact<<S as Store>::Conn>,
{
    let mut violations = Violations::new();
    if !is_external_source(&request.source) {
        violations.add(
            "source",
            "must be a lowercase identifier matching [a-z][a-z0-9_]{0,63}",
        );
    }
    if let Some(problem) = external_id_problem(&request.external_id) {
        violations.add("external_id", problem);
    }
    let key_is_valid = violations.is_empty();
    let request_id = collect(
        &mut violations,
        names::parse_request_id("request_id", &request.request_id),
    );
    let key_path = format!("customer.external_ids[\"{}\"]", clip(&request.source));
    if let Some(other) = request.input.external_ids.get(&request.source)
        && *other != request.external_id
    {
        violations.add(
            key_path,
            "must be `external_id` (or left out): an upsert keeps the key it is addressed by",
        );
    }
    let mask = update_mask::<Customer>(
        &mut violations,
        request.update_mask.as_deref(),
        &request.input,
    );
    let (source, external_id) = (request.source, request.external_id);
    let mut probe = masked_stand_in::<Customer>(&mask, &request.input);
    if key_is_valid {
        // Reported above when the key is not: not again as an entry of external_ids.
        probe = with_key(probe, &source, &external_id);
    }
    if let Err(more) = probe.validate(Customer::FIELD) {
        violations.extend(more);
    }
    let Some(request_id) = violations.into_result(request_id)? else {
        return Err(Error::internal(&crate::service::Unreachable(
            "validated upsert without parts",
        )));
    };
    let fingerprint = Fingerprint::new(
        &Parts {
            mask: mask.canonical_paths(),
            input: Customer::canonical_input(&request.input),
            ..call::<Customer>("Upsert", actor, &format!("{source}\u{1f}{external_id}"))
        },
        // A new method: no version-1 record can name it.
        &[],
    );
    let origin = Origin {
        actor: actor.to_owned(),
        request_id,
    };
    let input = request.input;
    writer
        .idempotent(request_id, fingerprint, async move |conn: &mut S::Conn| {
            conn.lock_key(&format!("external_id:{source}\u{1f}{external_id}"))
                .await?;
            match conn.customer_by_external_id(&source, &external_id).await? {
                Some(name) => {
                    let current = locked_live::<Customer, _>(conn, name, "").await?;
                    let mut merged = CustomerInput::from(current.data());
                    mask.apply(&mut merged, &input);
                    change(
                        conn,
                        current,
                        &with_key(merged, &source, &external_id),
                        &origin,
                    )
                    .await
                }
                None => {
                    let mut fresh = CustomerInput::default();
                    mask.apply(&mut fresh, &input);
                    let data = with_key(fresh, &source, &external_id).validate(Customer::FIELD)?;
                    let name = CustomerName(uuid::Uuid::now_v7());
                    insert_new(conn, name, &data, &origin).await
                }
            }
        })
        .await
}

/// The live customer holding `(source, external_id)` (LookupCustomer): NOT_FOUND if none.
pub async fn lookup<S>(writer: &Writer<S>, source: &str, external_id: &str) -> Result<Customer>
where
    S: Transact<<S as Store>::Conn>,
{
    let mut violations = Violations::new();
    if !is_external_source(source) {
        violations.add(
            "source",
            "must be a lowercase identifier matching [a-z][a-z0-9_]{0,63}",
        );
    }
    if let Some(problem) = external_id_problem(external_id) {
        violations.add("external_id", problem);
    }
    violations.into_result(())?;
    let (source, external_id) = (source.to_owned(), external_id.to_owned());
    let not_found = Error::NotFound {
        resource_type: CUSTOMER_TYPE,
        resource_name: format!(
            "a live customer with external id {source} = {:?}",
            clip(&external_id)
        ),
    };
    let found = writer
        .store
        .read(async move |conn: &mut S::Conn| {
            match conn.customer_by_external_id(&source, &external_id).await? {
                Some(name) => Repository::<Customer>::find(conn, name, Lock::None).await,
                None => Ok(None),
            }
        })
        .await?;
    found
        .filter(|customer| !customer.is_deleted())
        .map(|customer| customer.with_retention(writer.retention))
        .ok_or(not_found)
}

/// `input` with the upserted key among its external ids.
fn with_key(mut input: CustomerInput, source: &str, external_id: &str) -> CustomerInput {
    input
        .external_ids
        .insert(source.to_owned(), external_id.to_owned());
    input
}
