//! A store over maps, for unit tests of the core and the resources' rules without a
//! network. Transactions are serialisable (one at a time, over a copy of the state that
//! replaces it on commit), which is what the row locks give the PostgreSQL store for the
//! rows a write touches; unique constraints hold among live rows, as the partial unique
//! indexes do.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use chrono::Utc;
use uuid::Uuid;

use super::{
    replay::StoredReplay,
    store::{
        Claim, Conflict, Lock, NewEvent, Repository, Restore, Storage, Store, Transact, TxBody,
    },
};
use crate::{
    domain::{
        company::{Company, CompanyData},
        customer::{Customer, CustomerData},
        names::{CompanyName, CustomerName, NoteName},
        note::{Note, NoteData},
    },
    service::Result,
};

/// Everything the store holds.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub customers: BTreeMap<Uuid, Customer>,
    pub companies: BTreeMap<Uuid, Company>,
    pub notes: BTreeMap<Uuid, Note>,
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
    async fn write<T, F>(&self, body: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'r> TxBody<'r, MemConn, T> + Send + 'static,
    {
        let mut committed = self.state.clone().lock_owned().await;
        let mut conn = MemConn {
            state: committed.clone(),
        };
        let value = body(&mut conn).await?;
        *committed = conn.state;
        Ok(value)
    }

    async fn read<T, F>(&self, body: F) -> Result<T>
    where
        T: Send,
        F: for<'r> TxBody<'r, MemConn, T> + Send,
    {
        let mut conn = MemConn {
            state: self.state.lock().await.clone(),
        };
        body(&mut conn).await
    }
}

fn email_taken(state: &State, data: &CustomerData, except: Uuid) -> bool {
    state.customers.values().any(|c| {
        c.id != except && c.delete_time.is_none() && c.data.email.eq_ignore_ascii_case(&data.email)
    })
}

fn business_id_taken(state: &State, data: &CompanyData, except: Uuid) -> bool {
    data.business_id.is_some()
        && state.companies.values().any(|c| {
            c.id != except && c.delete_time.is_none() && c.data.business_id == data.business_id
        })
}

impl Repository<Customer> for MemConn {
    async fn find(&mut self, name: CustomerName, _: Lock) -> Result<Option<Customer>> {
        Ok(self.state.customers.get(&name.id()).cloned())
    }

    async fn insert(
        &mut self,
        name: CustomerName,
        data: &CustomerData,
        _: &str,
    ) -> Result<Customer> {
        if email_taken(&self.state, data, name.id()) {
            return Err(Conflict::Email.into());
        }
        let now = Utc::now();
        let customer = Customer {
            id: name.id(),
            data: data.clone(),
            version: 1,
            create_time: now,
            update_time: now,
            delete_time: None,
            expire_time: None,
        };
        self.state.customers.insert(customer.id, customer.clone());
        Ok(customer)
    }

    async fn update(
        &mut self,
        current: &Customer,
        data: &CustomerData,
        _: &str,
    ) -> Result<Customer> {
        if email_taken(&self.state, data, current.id) {
            return Err(Conflict::Email.into());
        }
        let customer = self
            .state
            .customers
            .entry(current.id)
            .or_insert_with(|| current.clone());
        customer.data = data.clone();
        customer.version += 1;
        customer.update_time = Utc::now();
        Ok(customer.clone())
    }

    async fn remove(&mut self, current: &Customer, _: &str) -> Result<Customer> {
        let customer = self
            .state
            .customers
            .entry(current.id)
            .or_insert_with(|| current.clone());
        customer.version += 1;
        customer.update_time = Utc::now();
        customer.delete_time = Some(customer.update_time);
        Ok(customer.clone())
    }
}

impl Restore<Customer> for MemConn {
    async fn restore(
        &mut self,
        current: &Customer,
        data: Option<&CustomerData>,
        _: &str,
    ) -> Result<Customer> {
        let data = data.unwrap_or(&current.data).clone();
        if email_taken(&self.state, &data, current.id) {
            return Err(Conflict::Email.into());
        }
        let customer = self
            .state
            .customers
            .entry(current.id)
            .or_insert_with(|| current.clone());
        customer.data = data;
        customer.version += 1;
        customer.update_time = Utc::now();
        customer.delete_time = None;
        Ok(customer.clone())
    }
}

impl Repository<Company> for MemConn {
    async fn find(&mut self, name: CompanyName, _: Lock) -> Result<Option<Company>> {
        Ok(self.state.companies.get(&name.id()).cloned())
    }

    async fn insert(&mut self, name: CompanyName, data: &CompanyData, _: &str) -> Result<Company> {
        if business_id_taken(&self.state, data, name.id()) {
            return Err(Conflict::BusinessId.into());
        }
        let now = Utc::now();
        let company = Company {
            id: name.id(),
            data: data.clone(),
            version: 1,
            create_time: now,
            update_time: now,
            delete_time: None,
        };
        self.state.companies.insert(company.id, company.clone());
        Ok(company)
    }

    async fn update(&mut self, current: &Company, data: &CompanyData, _: &str) -> Result<Company> {
        if business_id_taken(&self.state, data, current.id) {
            return Err(Conflict::BusinessId.into());
        }
        let company = self
            .state
            .companies
            .entry(current.id)
            .or_insert_with(|| current.clone());
        company.data = data.clone();
        company.version += 1;
        company.update_time = Utc::now();
        Ok(company.clone())
    }

    async fn remove(&mut self, current: &Company, _: &str) -> Result<Company> {
        let company = self
            .state
            .companies
            .entry(current.id)
            .or_insert_with(|| current.clone());
        company.version += 1;
        company.update_time = Utc::now();
        company.delete_time = Some(company.update_time);
        Ok(company.clone())
    }
}

impl Restore<Company> for MemConn {
    async fn restore(
        &mut self,
        current: &Company,
        data: Option<&CompanyData>,
        _: &str,
    ) -> Result<Company> {
        let data = data.unwrap_or(&current.data).clone();
        if business_id_taken(&self.state, &data, current.id) {
            return Err(Conflict::BusinessId.into());
        }
        let company = self
            .state
            .companies
            .entry(current.id)
            .or_insert_with(|| current.clone());
        company.data = data;
        company.version += 1;
        company.update_time = Utc::now();
        company.delete_time = None;
        Ok(company.clone())
    }
}

impl Repository<Note> for MemConn {
    async fn find(&mut self, name: NoteName, _: Lock) -> Result<Option<Note>> {
        Ok(self
            .state
            .notes
            .get(&name.id())
            .filter(|note| note.customer_id == name.customer.id())
            .cloned())
    }

    async fn insert(&mut self, name: NoteName, data: &NoteData, actor: &str) -> Result<Note> {
        let now = Utc::now();
        let note = Note {
            id: name.id(),
            customer_id: name.customer.id(),
            data: data.clone(),
            author: actor.to_owned(),
            version: 1,
            create_time: now,
            update_time: now,
        };
        self.state.notes.insert(note.id, note.clone());
        Ok(note)
    }

    async fn update(&mut self, current: &Note, data: &NoteData, _: &str) -> Result<Note> {
        let note = self
            .state
            .notes
            .entry(current.id)
            .or_insert_with(|| current.clone());
        note.data = data.clone();
        note.version += 1;
        note.update_time = Utc::now();
        Ok(note.clone())
    }

    async fn remove(&mut self, current: &Note, _: &str) -> Result<Note> {
        self.state.notes.remove(&current.id);
        Ok(current.clone())
    }
}

impl Storage for MemConn {
    async fn claim(&mut self, request_id: Uuid, fingerprint: &[u8]) -> Result<Claim> {
        Ok(match self.state.request_ids.get(&request_id) {
            Some((first, response)) => Claim::Used {
                fingerprint: first.clone(),
                response: response.clone(),
            },
            None => {
                self.state
                    .request_ids
                    .insert(request_id, (fingerprint.to_vec(), None));
                Claim::Fresh
            }
        })
    }

    async fn complete(&mut self, request_id: Uuid, response: StoredReplay) -> Result<()> {
        if let Some(record) = self.state.request_ids.get_mut(&request_id) {
            record.1 = Some(response);
        }
        Ok(())
    }

    async fn record(&mut self, event: NewEvent) -> Result<()> {
        self.state.events.push(event);
        Ok(())
    }

    async fn detach_company(&mut self, company: CompanyName, _: &str) -> Result<Vec<Customer>> {
        let reference = Some(company.to_string());
        let mut detached = Vec::new();
        for customer in self.state.customers.values_mut() {
            if customer.delete_time.is_none() && customer.data.company == reference {
                customer.data.company = None;
                customer.version += 1;
                customer.update_time = Utc::now();
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
            .filter(|c| c.delete_time.is_none() && c.data.company == reference)
            .count() as i64)
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

    fn reason_of(error: &Error) -> &'static str {
        match error {
            Error::InvalidArgument { reason, .. }
            | Error::AlreadyExists { reason, .. }
            | Error::Aborted { reason, .. }
            | Error::FailedPrecondition { reason, .. }
            | Error::OutOfRange { reason, .. }
            | Error::Unavailable { reason, .. } => reason,
            Error::NotFound { .. } => reason::NOT_FOUND,
            Error::DeadlineExceeded { .. } => reason::DEADLINE_EXCEEDED,
            Error::Internal { .. } => reason::INTERNAL,
        }
    }

    fn event_types(state: &State) -> Vec<EventType> {
        state.events.iter().map(|e| e.event_type).collect()
    }

    #[tokio::test]
    async fn a_retry_replays_the_first_response_and_writes_once() {
        let (service, store) = service();
        let id = Uuid::new_v4().to_string();
        let first = service
            .create::<Customer>("", ada(), &id, "user:a")
            .await
            .unwrap();
        let again = service
            .create::<Customer>("", ada(), &id, "user:a")
            .await
            .unwrap();
        assert_eq!(first, again);
        let state = store.snapshot().await;
        assert_eq!(state.customers.len(), 1);
        assert_eq!(event_types(&state), [EventType::CustomerRegistered]);
        assert_eq!(state.events[0].request_id.map(|u| u.to_string()), Some(id));
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
        let first = service
            .create::<Customer>("", ada(), "", "user:a")
            .await
            .unwrap();
        let id = Uuid::new_v4();
        // What the previous release stored for this request: the v1 hash of the method,
        // the caller and the input's JSON, and the response's JSON.
        let parts = crate::core::fingerprint::Parts {
            method: "CreateCustomer".into(),
            ..Default::default()
        };
        let input_json = serde_json::to_string(&ada()).unwrap();
        let legacy = Fingerprint::new(&parts, &["user:a", &input_json]).legacy;
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
        service
            .create::<Customer>("", ada(), "", "user:a")
            .await
            .unwrap();
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
        let customer = service
            .create::<Customer>("", ada(), "", "user:a")
            .await
            .unwrap();
        let update = |etag: String, given_name: &str| UpdateRequest {
            name: customer.name().to_string(),
            etag,
            input: CustomerInput {
                given_name: given_name.into(),
                ..CustomerInput::default()
            },
            update_mask: Some(vec!["given_name".into()]),
            request_id: String::new(),
        };
        let same = service
            .update::<Customer>(update(customer.etag(), "Ada"), "user:a")
            .await
            .unwrap();
        assert_eq!(same.version, customer.version);
        let changed = service
            .update::<Customer>(update(customer.etag(), "Augusta"), "user:a")
            .await
            .unwrap();
        assert_eq!(changed.version, customer.version + 1);
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
        let company = service
            .create::<Company>(
                "",
                CompanyInput {
                    display_name: "Acme".into(),
                    ..CompanyInput::default()
                },
                "",
                "user:a",
            )
            .await
            .unwrap();
        let member = CustomerInput {
            company: company.name().to_string(),
            ..ada()
        };
        let customer = service
            .create::<Customer>("", member.clone(), "", "user:a")
            .await
            .unwrap();
        let refused = service
            .delete::<Company>(
                DeleteRequest {
                    name: company.name().to_string(),
                    ..DeleteRequest::default()
                },
                "user:a",
            )
            .await
            .unwrap_err();
        assert_eq!(reason_of(&refused), reason::COMPANY_HAS_CUSTOMERS);
        service
            .delete::<Company>(
                DeleteRequest {
                    name: company.name().to_string(),
                    force: true,
                    ..DeleteRequest::default()
                },
                "user:a",
            )
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
        let company = service
            .create::<Company>(
                "",
                CompanyInput {
                    display_name: "Acme".into(),
                    ..CompanyInput::default()
                },
                "",
                "user:a",
            )
            .await
            .unwrap();
        let customer = service
            .create::<Customer>(
                "",
                CustomerInput {
                    company: company.name().to_string(),
                    ..ada()
                },
                "",
                "user:a",
            )
            .await
            .unwrap();
        let name = customer.name().to_string();
        let live = service
            .undelete::<Customer>(&name, "", "user:a")
            .await
            .unwrap_err();
        assert_eq!(reason_of(&live), reason::NOT_DELETED);
        service
            .delete::<Customer>(
                DeleteRequest {
                    name: name.clone(),
                    ..DeleteRequest::default()
                },
                "user:a",
            )
            .await
            .unwrap();
        service
            .delete::<Company>(
                DeleteRequest {
                    name: company.name().to_string(),
                    ..DeleteRequest::default()
                },
                "user:a",
            )
            .await
            .unwrap();
        let restored = service
            .undelete::<Customer>(&name, "", "user:a")
            .await
            .unwrap();
        assert_eq!(restored.data.company, None);
        assert_eq!(restored.version, customer.version + 2);
        let state = store.snapshot().await;
        assert_eq!(
            event_types(&state)[3..],
            [EventType::CompanyDeleted, EventType::CustomerUndeleted]
        );
    }

    #[tokio::test]
    async fn notes_follow_their_customer_and_a_deletion_takes_the_next_sequence() {
        let (service, store) = service();
        let customer = service
            .create::<Customer>("", ada(), "", "user:a")
            .await
            .unwrap();
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
            .delete::<Customer>(
                DeleteRequest {
                    name: parent.clone(),
                    ..DeleteRequest::default()
                },
                "user:a",
            )
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
        let customer = service
            .create::<Customer>("", ada(), "", "user:a")
            .await
            .unwrap();
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
