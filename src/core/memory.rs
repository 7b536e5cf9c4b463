//! A store over maps, for unit tests of the core and the resources' rules without a
//! network. Transactions are serialisable (one at a time, over a copy of the state that
//! replaces it on commit), which is what the row locks give the PostgreSQL store for the
//! rows a write touches; unique constraints hold among live rows, as the partial unique
//! indexes do.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::names::ResourceName as _;

use super::{
    replay::StoredReplay,
    resource::Resource,
    store::{
        Claim, Conflict, Lock, NewEvent, ReadBody, Repository, Restore, Storage, Store, Transact,
        WriteBody,
    },
};
use crate::{
    domain::{
        company::{Company, CompanyData},
        customer::{Customer, CustomerData},
        names::{CompanyName, NoteName},
        note::{Note, NoteData},
        stored::Stored,
    },
    service::Result,
};

/// Everything the store holds.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub customers: BTreeMap<Uuid, Customer>,
    pub companies: BTreeMap<Uuid, Company>,
    pub notes: BTreeMap<(Uuid, Uuid), Note>,
    pub request_ids: HashMap<Uuid, (Vec<u8>, Option<StoredReplay>)>,
    pub events: Vec<NewEvent>,
}

/// The store.
#[derive(Debug, Clone, Default)]
pub struct MemStore {
    state: Arc<tokio::sync::Mutex<State>>,
}

impl MemStore {
    /// A copy of what is committed.
    pub async fn snapshot(&self) -> State {
        self.state.lock().await.clone()
    }

    /// Changes the committed state directly (test set-up).
    pub async fn edit(&self, change: impl FnOnce(&mut State)) {
        change(&mut *self.state.lock().await);
    }
}

/// One transaction's view.
#[derive(Debug)]
pub struct MemConn {
    state: State,
}

impl Store for MemStore {
    type Conn = MemConn;
}

impl Transact<MemConn> for MemStore {
    async fn write<T: Send + 'static>(&self, body: impl WriteBody<MemConn, T>) -> Result<T> {
        let mut committed = self.state.clone().lock_owned().await;
        let mut conn = MemConn {
            state: committed.clone(),
        };
        let value = body(&mut conn).await?;
        *committed = conn.state;
        Ok(value)
    }

    async fn read<T: Send>(&self, body: impl ReadBody<MemConn, T>) -> Result<T> {
        let mut conn = MemConn {
            state: self.state.lock().await.clone(),
        };
        body(&mut conn).await
    }
}

/// How the map store keeps one resource type: its map in the [`State`], how a resource is
/// first stored, and the parts of it a write changes. The [`Repository`] over maps is
/// written once, against this.
trait Kept: Resource {
    /// What its map is keyed by: the name's ids (a note's include its customer's, so a note
    /// is found under its own customer only).
    type Key: Ord + Send;
    /// The key of `name`.
    fn key(name: Self::Name) -> Self::Key;
    /// Its map.
    fn map(state: &mut State) -> &mut BTreeMap<Self::Key, Self>;
    /// The resource first stored under `name`, by `actor`, at `now`.
    fn created(name: Self::Name, data: &Self::Data, actor: &str, now: DateTime<Utc>) -> Self;
    /// The parts of it a write changes.
    fn stamps(&mut self) -> Stamps<'_, Self::Data>;
    /// The values of `data` no two live resources may share, each with the conflict it makes.
    fn unique(data: &Self::Data) -> Vec<(Conflict, String)> {
        let _ = data;
        Vec::new()
    }
}

/// What a write changes of a stored resource.
struct Stamps<'a, D> {
    data: &'a mut D,
    stored: &'a mut Stored,
    /// False for resources that are deleted for good rather than softly.
    soft: bool,
}

/// The record of a resource first stored at `now`.
fn first_stored(id: Uuid, now: DateTime<Utc>) -> Stored {
    Stored {
        id,
        version: 1,
        create_time: now,
        update_time: now,
        delete_time: None,
    }
}

/// The [`Kept`] of a soft-deleted resource (customers, companies) in map `$map`, its other
/// fields starting as `$field: $value`.
macro_rules! soft_deleted_kept {
    ($resource:ident in $map:ident { $($field:ident: $value:expr),* }, unique: $unique:expr) => {
        impl Kept for $resource {
            type Key = Uuid;

            fn key(name: <$resource as Resource>::Name) -> Uuid {
                name.id()
            }

            fn map(state: &mut State) -> &mut BTreeMap<Uuid, Self> {
                &mut state.$map
            }

            fn created(
                name: <$resource as Resource>::Name,
                data: &<$resource as Resource>::Data,
                _: &str,
                now: DateTime<Utc>,
            ) -> Self {
                $resource {
                    stored: first_stored(name.id(), now),
                    data: data.clone(),
                    $($field: $value,)*
                }
            }

            fn stamps(&mut self) -> Stamps<'_, <$resource as Resource>::Data> {
                Stamps {
                    data: &mut self.data,
                    stored: &mut self.stored,
                    soft: true,
                }
            }

            fn unique(data: &<$resource as Resource>::Data) -> Vec<(Conflict, String)> {
                $unique(data)
            }
        }
    };
}

soft_deleted_kept!(
    Customer in customers { expire_time: None, merged_into: None },
    // Emails are unique case-insensitively; each external id pair is unique.
    unique: |data: &CustomerData| {
        let email = (Conflict::Email, format!("email:{}", data.email.to_ascii_lowercase()));
        let external = data.external_ids.iter().map(|(source, id)| {
            let conflict = Conflict::ExternalId {
                source: source.clone(),
                id: id.clone(),
                holder: None,
            };
            (conflict, format!("external:{source}\u{1f}{id}"))
        });
        std::iter::once(email).chain(external).collect()
    }
);
soft_deleted_kept!(
    Company in companies {},
    unique: |data: &CompanyData| {
        data.business_id.clone().map(|id| (Conflict::BusinessId, id)).into_iter().collect()
    }
);

impl Kept for Note {
    type Key = (Uuid, Uuid);

    fn key(name: NoteName) -> (Uuid, Uuid) {
        (name.customer.id(), name.id())
    }

    fn map(state: &mut State) -> &mut BTreeMap<(Uuid, Uuid), Self> {
        &mut state.notes
    }

    fn created(name: NoteName, data: &NoteData, actor: &str, now: DateTime<Utc>) -> Self {
        Note {
            stored: first_stored(name.id(), now),
            customer_id: name.customer.id(),
            author: actor.to_owned(),
            data: data.clone(),
        }
    }

    fn stamps(&mut self) -> Stamps<'_, NoteData> {
        Stamps {
            data: &mut self.data,
            stored: &mut self.stored,
            soft: false,
        }
    }
}

impl MemConn {
    /// Refuses `data` for the resource under `key` when another live resource holds its
    /// unique value, as the partial unique indexes do.
    fn check_unique<R: Kept>(&mut self, key: &R::Key, data: &R::Data) -> Result<()> {
        for (conflict, value) in R::unique(data) {
            let taken = R::map(&mut self.state).iter().any(|(other, resource)| {
                other != key
                    && !resource.is_deleted()
                    && R::unique(resource.data())
                        .iter()
                        .any(|(_, held)| *held == value)
            });
            if taken {
                return Err(conflict.into());
            }
        }
        Ok(())
    }

    /// Applies `change` to the stored `current` (bumping its version and update time) and
    /// returns the resource as it is now.
    fn write<R: Kept>(&mut self, current: &R, change: impl FnOnce(Stamps<'_, R::Data>)) -> R {
        let stored = R::map(&mut self.state)
            .entry(R::key(current.name()))
            .or_insert_with(|| current.clone());
        let stamps = stored.stamps();
        stamps.stored.version += 1;
        stamps.stored.update_time = Utc::now();
        change(stamps);
        stored.clone()
    }
}

impl<R: Kept> Repository<R> for MemConn {
    async fn find(&mut self, name: R::Name, _: Lock) -> Result<Option<R>> {
        Ok(R::map(&mut self.state).get(&R::key(name)).cloned())
    }

    async fn insert(&mut self, name: R::Name, data: &R::Data, actor: &str) -> Result<R> {
        let key = R::key(name);
        self.check_unique::<R>(&key, data)?;
        let created = R::created(name, data, actor, Utc::now());
        R::map(&mut self.state).insert(key, created.clone());
        Ok(created)
    }

    async fn update(&mut self, current: &R, data: &R::Data, _: &str) -> Result<R> {
        self.check_unique::<R>(&R::key(current.name()), data)?;
        Ok(self.write(current, |stamps| *stamps.data = data.clone()))
    }

    async fn remove(&mut self, current: &R, _: &str) -> Result<R> {
        let mut soft = false;
        let removed = self.write(current, |stamps| {
            if stamps.soft {
                stamps.stored.delete_time = Some(stamps.stored.update_time);
                soft = true;
            }
        });
        if soft {
            return Ok(removed);
        }
        R::map(&mut self.state).remove(&R::key(current.name()));
        Ok(current.clone())
    }
}

impl<R: Kept> Restore<R> for MemConn {
    async fn restore(&mut self, current: &R, data: Option<&R::Data>, _: &str) -> Result<R> {
        let data = data.unwrap_or(current.data()).clone();
        self.check_unique::<R>(&R::key(current.name()), &data)?;
        Ok(self.write(current, |stamps| {
            *stamps.data = data;
            stamps.stored.delete_time = None;
        }))
    }
}

impl Storage for MemConn {
    async fn claim(&mut self, request_id: Uuid, fingerprint: &[u8]) -> Result<Claim> {
        Ok(match self.state.request_ids.get(&request_id) {
            Some((first, Some(response))) => Claim::Used {
                fingerprint: first.clone(),
                response: response.clone(),
            },
            // A claim is committed with its response (the state is only seen whole).
            Some((_, None)) => {
                return Err(crate::service::Error::internal(
                    &crate::service::Unreachable("a committed claim without a response"),
                ));
            }
            None => {
                self.state
                    .request_ids
                    .insert(request_id, (fingerprint.to_vec(), None));
                Claim::Fresh
            }
        })
    }

    async fn complete(
        &mut self,
        request_id: Uuid,
        response: StoredReplay,
        _: Option<Uuid>,
    ) -> Result<()> {
        if let Some(record) = self.state.request_ids.get_mut(&request_id) {
            record.1 = Some(response);
        }
        Ok(())
    }

    async fn claim_with_response(
        &mut self,
        request_id: Uuid,
        fingerprint: &[u8],
        response: StoredReplay,
        _: Option<Uuid>,
    ) -> Result<bool> {
        if self.state.request_ids.contains_key(&request_id) {
            return Ok(false);
        }
        self.state
            .request_ids
            .insert(request_id, (fingerprint.to_vec(), Some(response)));
        Ok(true)
    }

    async fn record(&mut self, event: NewEvent) -> Result<()> {
        self.state.events.push(event);
        Ok(())
    }

    async fn detach_company(&mut self, company: CompanyName, _: &str) -> Result<Vec<Customer>> {
        let reference = Some(company.to_string());
        let mut detached = Vec::new();
        for customer in self.state.customers.values_mut() {
            if !customer.is_deleted() && customer.data.company == reference {
                customer.data.company = None;
                customer.stored.version += 1;
                customer.stored.update_time = Utc::now();
                detached.push(customer.clone());
            }
        }
        Ok(detached)
    }

    async fn count_live_in_company(&mut self, company: CompanyName) -> Result<i64> {
        let reference = Some(company.to_string());
        Ok(self
            .state
            .customers
            .values()
            .filter(|c| !c.is_deleted() && c.data.company == reference)
            .count() as i64)
    }

    /// Transactions already run one at a time.
    async fn lock_key(&mut self, _: &str) -> Result<()> {
        Ok(())
    }

    async fn customer_by_external_id(
        &mut self,
        source: &str,
        id: &str,
    ) -> Result<Option<crate::domain::names::CustomerName>> {
        Ok(self
            .state
            .customers
            .values()
            .find(|c| {
                !c.is_deleted() && c.data.external_ids.get(source).map(String::as_str) == Some(id)
            })
            .map(Customer::name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        core::write::{DeleteRequest, UpdateRequest, Writer},
        core::{fingerprint::Fingerprint, replay::Replayable},
        domain::{
            company::CompanyInput, customer::CustomerInput, event::EventType, note::NoteInput,
        },
        service::{Error, error::reason},
    };

    fn service() -> (Writer<MemStore>, MemStore) {
        let store = MemStore::default();
        let writer = Writer {
            store: store.clone(),
            retention: None,
            gates: std::sync::Arc::default(),
        };
        (writer, store)
    }

    fn ada() -> CustomerInput {
        CustomerInput {
            given_name: "Ada".into(),
            family_name: "Lovelace".into(),
            email: "ada@example.com".into(),
            ..CustomerInput::default()
        }
    }

    /// Ada, created without a request id.
    async fn create_ada(service: &Writer<MemStore>) -> Customer {
        service
            .create::<Customer>("", ada(), "", "user:a")
            .await
            .unwrap()
    }

    async fn acme(service: &Writer<MemStore>) -> Company {
        let input = CompanyInput {
            display_name: "Acme".into(),
            ..CompanyInput::default()
        };
        service
            .create::<Company>("", input, "", "user:a")
            .await
            .unwrap()
    }

    /// Ada as a customer of `company`.
    fn member_of(company: &Company) -> CustomerInput {
        CustomerInput {
            company: company.name().to_string(),
            ..ada()
        }
    }

    /// A delete of `name`, with `force` (companies).
    fn delete(name: String, force: bool) -> DeleteRequest {
        DeleteRequest {
            name,
            force,
            ..DeleteRequest::default()
        }
    }

    fn reason_of(error: &Error) -> &'static str {
        match error {
            Error::InvalidArgument { reason, .. }
            | Error::AlreadyExists { reason, .. }
            | Error::Aborted { reason, .. }
            | Error::FailedPrecondition { reason, .. }
            | Error::OutOfRange { reason, .. }
            | Error::Unavailable { reason, .. } => reason,
            Error::NotFound { .. } => reason::NOT_FOUND,
            Error::Duplicates { reason, .. } => reason,
            Error::DeadlineExceeded { .. } => reason::DEADLINE_EXCEEDED,
            Error::Internal { .. } => reason::INTERNAL,
        }
    }

    /// Ada created under request id `id`, which must succeed.
    async fn create_ada_as(service: &Writer<MemStore>, id: &str) -> Customer {
        service
            .create::<Customer>("", ada(), id, "user:a")
            .await
            .unwrap()
    }

    fn event_types(state: &State) -> Vec<EventType> {
        state.events.iter().map(|e| e.event_type).collect()
    }

    #[tokio::test]
    async fn a_retry_replays_the_first_response_and_writes_once() {
        let (service, store) = service();
        let id = Uuid::new_v4().to_string();
        let first = create_ada_as(&service, &id).await;
        let again = create_ada_as(&service, &id).await;
        assert_eq!(first, again);
        let state = store.snapshot().await;
        assert_eq!(state.customers.len(), 1);
        assert_eq!(event_types(&state), [EventType::CustomerRegistered]);
        assert_eq!(state.events[0].request_id.map(|u| u.to_string()), Some(id));
    }

    /// A write claims its request id last: a retry whose own run succeeds (its customer was
    /// deleted, so the email is free) must be rolled back and answered by the claim.
    #[tokio::test]
    async fn a_retry_whose_run_would_succeed_replays_and_writes_nothing() {
        let (service, store) = service();
        let id = Uuid::new_v4().to_string();
        let first = create_ada_as(&service, &id).await;
        service
            .delete::<Customer>(delete(first.name().to_string(), false), "user:a")
            .await
            .unwrap();
        let before = store.snapshot().await;

        let again = create_ada_as(&service, &id).await;

        assert_eq!(again, first);
        let after = store.snapshot().await;
        assert_eq!(after.customers.len(), 1);
        assert_eq!(event_types(&after), event_types(&before));
        assert_eq!(after.request_ids.len(), 1);
    }

    #[tokio::test]
    async fn a_request_id_reused_for_another_request_or_caller_is_refused() {
        let (service, store) = service();
        let id = Uuid::new_v4().to_string();
        service
            .create::<Customer>("", ada(), &id, "user:a")
            .await
            .unwrap();
        let other_input = CustomerInput {
            email: "grace@example.com".into(),
            ..ada()
        };
        for (input, actor) in [(other_input, "user:a"), (ada(), "user:b")] {
            let error = service
                .create::<Customer>("", input, &id, actor)
                .await
                .unwrap_err();
            assert_eq!(reason_of(&error), reason::REQUEST_ID_REUSED);
        }
        assert_eq!(store.snapshot().await.customers.len(), 1);
    }

    #[tokio::test]
    async fn a_request_id_stored_with_a_version_1_fingerprint_is_still_replayed() {
        let (service, store) = service();
        let first = create_ada(&service).await;
        let id = Uuid::new_v4();
        // What the previous release stored for this request: the v1 hash of the method,
        // the caller and the input's JSON, and the response's JSON.
        let parts = crate::core::fingerprint::Parts {
            method: "CreateCustomer".into(),
            ..Default::default()
        };
        let input_json = serde_json::to_string(&ada()).unwrap();
        let legacy = Fingerprint::new(&parts, &["user:a", &input_json]).legacy();
        let replay = first.store_replay();
        store
            .edit(|state| {
                state.request_ids.insert(id, (legacy, Some(replay)));
            })
            .await;
        let again = service
            .create::<Customer>("", ada(), &id.to_string(), "user:a")
            .await
            .unwrap();
        assert_eq!(again, first);
        assert_eq!(store.snapshot().await.customers.len(), 1);
    }

    #[tokio::test]
    async fn a_failed_write_leaves_no_trace() {
        let (service, store) = service();
        create_ada(&service).await;
        let before = store.snapshot().await;
        let id = Uuid::new_v4().to_string();
        let error = service
            .create::<Customer>("", ada(), &id, "user:a")
            .await
            .unwrap_err();
        assert_eq!(reason_of(&error), reason::EMAIL_ALREADY_EXISTS);
        let after = store.snapshot().await;
        assert_eq!(after.events.len(), before.events.len());
        assert!(
            after.request_ids.is_empty(),
            "the claim rolled back with the write"
        );
    }

    #[tokio::test]
    async fn updates_check_the_etag_and_a_no_op_writes_nothing() {
        let (service, store) = service();
        let customer = create_ada(&service).await;
        let update = |etag: String, given_name: &str| UpdateRequest {
            name: customer.name().to_string(),
            etag,
            input: CustomerInput {
                given_name: given_name.into(),
                ..CustomerInput::default()
            },
            update_mask: Some(vec!["given_name".into()]),
            request_id: String::new(),
            allow_missing: false,
        };
        let same = service
            .update::<Customer>(update(customer.etag(), "Ada"), "user:a")
            .await
            .unwrap();
        assert_eq!(same.stored.version, customer.stored.version);
        let changed = service
            .update::<Customer>(update(customer.etag(), "Augusta"), "user:a")
            .await
            .unwrap();
        assert_eq!(changed.stored.version, customer.stored.version + 1);
        let stale = service
            .update::<Customer>(update(customer.etag(), "Ada"), "user:a")
            .await
            .unwrap_err();
        assert_eq!(reason_of(&stale), reason::ETAG_MISMATCH);
        let state = store.snapshot().await;
        assert_eq!(
            event_types(&state),
            [EventType::CustomerRegistered, EventType::CustomerUpdated]
        );
        let EventData::Customer(change) = &state.events[1].data else {
            panic!("a customer event");
        };
        assert_eq!(change.changed_fields, ["given_name"]);
    }

    use crate::domain::event::EventData;

    #[tokio::test]
    async fn a_customer_refers_only_to_a_live_company() {
        let (service, _) = service();
        let company = acme(&service).await;
        let member = member_of(&company);
        let customer = service
            .create::<Customer>("", member.clone(), "", "user:a")
            .await
            .unwrap();
        let refused = service
            .delete::<Company>(delete(company.name().to_string(), false), "user:a")
            .await
            .unwrap_err();
        assert_eq!(reason_of(&refused), reason::COMPANY_HAS_CUSTOMERS);
        service
            .delete::<Company>(delete(company.name().to_string(), true), "user:a")
            .await
            .unwrap();
        let detached = service
            .get::<Customer>(&customer.name().to_string())
            .await
            .unwrap();
        assert_eq!(detached.data.company, None);
        let to_deleted = CustomerInput {
            email: "grace@example.com".into(),
            ..member
        };
        let error = service
            .create::<Customer>("", to_deleted, "", "user:a")
            .await
            .unwrap_err();
        let Error::InvalidArgument { violations, .. } = error else {
            panic!("invalid argument");
        };
        assert_eq!(violations[0].field, "customer.company");
        assert!(
            violations[0]
                .description
                .ends_with("is deleted; refer to a live company or leave the field empty")
        );
    }

    #[tokio::test]
    async fn an_undeleted_customer_comes_back_without_a_company_deleted_meanwhile() {
        let (service, store) = service();
        let company = acme(&service).await;
        let customer = service
            .create::<Customer>("", member_of(&company), "", "user:a")
            .await
            .unwrap();
        let name = customer.name().to_string();
        let live = service
            .undelete::<Customer>(&name, "", "", "user:a")
            .await
            .unwrap_err();
        assert_eq!(reason_of(&live), reason::NOT_DELETED);
        service
            .delete::<Customer>(delete(name.clone(), false), "user:a")
            .await
            .unwrap();
        service
            .delete::<Company>(delete(company.name().to_string(), false), "user:a")
            .await
            .unwrap();
        let restored = service
            .undelete::<Customer>(&name, "", "", "user:a")
            .await
            .unwrap();
        assert_eq!(restored.data.company, None);
        assert_eq!(restored.stored.version, customer.stored.version + 2);
        let state = store.snapshot().await;
        assert_eq!(
            event_types(&state)[3..],
            [EventType::CompanyDeleted, EventType::CustomerUndeleted]
        );
    }

    #[tokio::test]
    async fn notes_follow_their_customer_and_a_deletion_takes_the_next_sequence() {
        let (service, store) = service();
        let customer = create_ada(&service).await;
        let parent = customer.name().to_string();
        let note = service
            .create::<Note>(
                &parent,
                NoteInput {
                    text: " Called. ".into(),
                },
                "",
                "user:n",
            )
            .await
            .unwrap();
        assert_eq!(
            (note.data.text.as_str(), note.author.as_str()),
            ("Called.", "user:n")
        );
        let edited = service
            .update::<Note>(
                UpdateRequest {
                    name: note.name().to_string(),
                    input: NoteInput {
                        text: "Called twice.".into(),
                    },
                    ..UpdateRequest::default()
                },
                "user:n",
            )
            .await
            .unwrap();
        let deletion = DeleteRequest {
            name: note.name().to_string(),
            etag: edited.etag(),
            ..DeleteRequest::default()
        };
        service.delete::<Note>(deletion, "user:n").await.unwrap();
        let state = store.snapshot().await;
        let sequences: Vec<_> = state.events[1..].iter().map(|e| e.sequence).collect();
        assert_eq!(sequences, [1, 2, 3]);
        service
            .delete::<Customer>(delete(parent.clone(), false), "user:a")
            .await
            .unwrap();
        let hidden = service
            .create::<Note>(&parent, NoteInput { text: "x".into() }, "", "user:n")
            .await
            .unwrap_err();
        assert_eq!(reason_of(&hidden), reason::DELETED);
    }

    #[tokio::test]
    async fn masks_name_proto_fields_and_output_only_ones_are_refused() {
        let (service, _) = service();
        let customer = create_ada(&service).await;
        let error = service
            .update::<Customer>(
                UpdateRequest {
                    name: customer.name().to_string(),
                    update_mask: Some(vec!["create_time".into(), "nickname".into()]),
                    ..UpdateRequest::default()
                },
                "user:a",
            )
            .await
            .unwrap_err();
        let Error::InvalidArgument { violations, .. } = error else {
            panic!("invalid argument");
        };
        let descriptions: Vec<_> = violations.iter().map(|v| v.description.as_str()).collect();
        assert_eq!(
            descriptions,
            [
                "`create_time` is output only and cannot be updated",
                "`nickname` is not a field of Customer"
            ]
        );
    }
}
