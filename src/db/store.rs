//! The core's storage seam implemented over PostgreSQL: [`PgStore`] hands out pooled
//! connections, and a connection is a [`Storage`] whose repositories turn rows into domain
//! types and unique violations into typed [`Conflict`]s.

use diesel_async::{AnsiTransactionManager, AsyncPgConnection, TransactionManager};
use uuid::Uuid;

use super::{
    Pool, companies, customers,
    events::{self, NewEventRow},
    models::{CompanyChanges, CustomerChanges, NewCompanyRow, NewCustomerRow, NewNoteRow},
    notes, request_ids,
};
use crate::{
    core::{
        replay::StoredReplay,
        store::{
            Claim, Conflict, Lock, NewEvent, Repository, Restore, Storage, Store, Transact, TxBody,
        },
    },
    domain::{
        company::Company,
        customer::Customer,
        names::{CompanyName, CustomerName, NoteName},
        note::Note,
    },
    encoding::event_payload,
    service::{Error, Result, Unreachable, events::EventLog},
};

/// PostgreSQL behind a pool.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: Pool,
    events: EventLog,
}

impl PgStore {
    /// The store over `pool`, whose writes record their events in `events`.
    pub fn new(pool: Pool, events: EventLog) -> Self {
        Self { pool, events }
    }

    /// The event log.
    pub fn events(&self) -> &EventLog {
        &self.events
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

impl Store for PgStore {
    type Conn = AsyncPgConnection;
}

impl Transact<AsyncPgConnection> for PgStore {
    async fn write<T, F>(&self, body: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'r> TxBody<'r, AsyncPgConnection, T> + Send + 'static,
    {
        let pool = self.pool.clone();
        let events = self.events.clone();
        // A spawned task: once started, the transaction finishes (or rolls back) even if the
        // caller goes away, so no connection is left idle in transaction.
        tokio::spawn(async move {
            let mut conn = pool.get().await?;
            let conn: &mut AsyncPgConnection = &mut conn;
            pool.begin(conn).await?;
            let result = match body(conn).await {
                Ok(value) => match AnsiTransactionManager::commit_transaction(conn).await {
                    Ok(()) => Ok(value),
                    Err(error) => {
                        // diesel-async's own `transaction` does the same: a failed COMMIT
                        // leaves the transaction to be rolled back.
                        let _ = AnsiTransactionManager::rollback_transaction(conn).await;
                        Err(error.into())
                    }
                },
                Err(error) => {
                    AnsiTransactionManager::rollback_transaction(conn).await?;
                    Err(error)
                }
            };
            if result.is_ok() {
                // Committed (perhaps with an event): number it now rather than at the next
                // sweep. A replayed request id wakes the sequencer for nothing, cheaply.
                events.committed();
            }
            result
        })
        .await?
    }

    async fn read<T, F>(&self, body: F) -> Result<T>
    where
        T: Send,
        F: for<'r> TxBody<'r, AsyncPgConnection, T> + Send,
    {
        let mut conn = self.pool.get().await?;
        let conn: &mut AsyncPgConnection = &mut conn;
        if !self.pool.pins_statements() {
            return body(conn).await;
        }
        // Behind a transaction pooler a read too must stay on one server connection.
        self.pool.begin(conn).await?;
        match body(conn).await {
            Ok(value) => {
                AnsiTransactionManager::commit_transaction(conn).await?;
                Ok(value)
            }
            Err(error) => {
                AnsiTransactionManager::rollback_transaction(conn).await?;
                Err(error)
            }
        }
    }
}

/// Unique violations of the constraints that mean "another live resource has this value"
/// become typed conflicts (by SQLSTATE class and constraint name); anything else is
/// classified as usual.
fn conflict(error: diesel::result::Error) -> Error {
    use diesel::result::{DatabaseErrorKind, Error as E};
    if let E::DatabaseError(DatabaseErrorKind::UniqueViolation, info) = &error {
        match info.constraint_name() {
            Some("customers_live_email_key") => return Conflict::Email.into(),
            Some("companies_live_business_id_key") => return Conflict::BusinessId.into(),
            _ => {}
        }
    }
    error.into()
}

impl Repository<Customer> for AsyncPgConnection {
    async fn find(&mut self, name: CustomerName, lock: Lock) -> Result<Option<Customer>> {
        let row = match lock {
            Lock::None => customers::find(self, name.id()).await?,
            Lock::Share => customers::find_for_share(self, name.id()).await?,
            Lock::Update => customers::find_for_update(self, name.id()).await?,
        };
        Ok(row.map(Customer::try_from).transpose()?)
    }

    async fn insert(
        &mut self,
        name: CustomerName,
        data: &crate::domain::customer::CustomerData,
        actor: &str,
    ) -> Result<Customer> {
        let row = NewCustomerRow {
            id: name.id(),
            created_by: Some(actor.to_owned()),
            fields: CustomerChanges::new(data, actor),
        };
        let stored = customers::insert(self, &row).await.map_err(conflict)?;
        Ok(Customer::try_from(stored)?)
    }

    async fn update(
        &mut self,
        current: &Customer,
        data: &crate::domain::customer::CustomerData,
        actor: &str,
    ) -> Result<Customer> {
        let row = customers::update(self, current.id, &CustomerChanges::new(data, actor))
            .await
            .map_err(conflict)?;
        Ok(Customer::try_from(row)?)
    }

    async fn remove(&mut self, current: &Customer, actor: &str) -> Result<Customer> {
        let row = customers::set_deleted(self, current.id, actor).await?;
        Ok(Customer::try_from(row)?)
    }
}

impl Restore<Customer> for AsyncPgConnection {
    async fn restore(
        &mut self,
        current: &Customer,
        data: Option<&crate::domain::customer::CustomerData>,
        actor: &str,
    ) -> Result<Customer> {
        let changes = data.map(|data| CustomerChanges::new(data, actor));
        let row = customers::restore(self, current.id, changes.as_ref(), actor)
            .await
            .map_err(conflict)?;
        Ok(Customer::try_from(row)?)
    }
}

impl Repository<Company> for AsyncPgConnection {
    async fn find(&mut self, name: CompanyName, lock: Lock) -> Result<Option<Company>> {
        let row = match lock {
            Lock::None => companies::find(self, name.id()).await?,
            Lock::Share => companies::find_for_share(self, name.id()).await?,
            Lock::Update => companies::find_for_update(self, name.id()).await?,
        };
        Ok(row.map(Company::try_from).transpose()?)
    }

    async fn insert(
        &mut self,
        name: CompanyName,
        data: &crate::domain::company::CompanyData,
        actor: &str,
    ) -> Result<Company> {
        let row = NewCompanyRow {
            id: name.id(),
            created_by: Some(actor.to_owned()),
            fields: CompanyChanges::new(data, actor),
        };
        let stored = companies::insert(self, &row).await.map_err(conflict)?;
        Ok(Company::try_from(stored)?)
    }

    async fn update(
        &mut self,
        current: &Company,
        data: &crate::domain::company::CompanyData,
        actor: &str,
    ) -> Result<Company> {
        let row = companies::update(self, current.id, &CompanyChanges::new(data, actor))
            .await
            .map_err(conflict)?;
        Ok(Company::try_from(row)?)
    }

    async fn remove(&mut self, current: &Company, actor: &str) -> Result<Company> {
        let row = companies::set_deleted(self, current.id, actor, true).await?;
        Ok(Company::try_from(row)?)
    }
}

impl Restore<Company> for AsyncPgConnection {
    async fn restore(
        &mut self,
        current: &Company,
        data: Option<&crate::domain::company::CompanyData>,
        actor: &str,
    ) -> Result<Company> {
        if data.is_some() {
            return Err(Error::internal(&Unreachable(
                "a company is restored with its own fields",
            )));
        }
        let row = companies::set_deleted(self, current.id, actor, false)
            .await
            .map_err(conflict)?;
        Ok(Company::try_from(row)?)
    }
}

impl Repository<Note> for AsyncPgConnection {
    async fn find(&mut self, name: NoteName, lock: Lock) -> Result<Option<Note>> {
        let (customer, id) = (name.customer.id(), name.id());
        let row = match lock {
            // Nothing refers to a note, so nothing share-locks one.
            Lock::None | Lock::Share => notes::find(self, customer, id).await?,
            Lock::Update => notes::find_for_update(self, customer, id).await?,
        };
        Ok(row.map(Note::from))
    }

    async fn insert(
        &mut self,
        name: NoteName,
        data: &crate::domain::note::NoteData,
        actor: &str,
    ) -> Result<Note> {
        let row = NewNoteRow {
            id: name.id(),
            customer_id: name.customer.id(),
            text: data.text.clone(),
            author: actor.to_owned(),
            updated_by: Some(actor.to_owned()),
        };
        Ok(Note::from(notes::insert(self, &row).await?))
    }

    async fn update(
        &mut self,
        current: &Note,
        data: &crate::domain::note::NoteData,
        actor: &str,
    ) -> Result<Note> {
        let row = notes::update_text(self, current.id, &data.text, actor).await?;
        Ok(Note::from(row))
    }

    async fn remove(&mut self, current: &Note, _: &str) -> Result<Note> {
        notes::delete(self, current.id).await?;
        Ok(current.clone())
    }
}

impl Storage for AsyncPgConnection {
    async fn claim(&mut self, request_id: Uuid, fingerprint: &[u8]) -> Result<Claim> {
        Ok(
            match request_ids::claim(self, request_id, fingerprint).await? {
                request_ids::Claim::Fresh => Claim::Fresh,
                request_ids::Claim::Used {
                    fingerprint,
                    response,
                    response_v1,
                } => Claim::Used {
                    fingerprint,
                    response: response
                        .map(StoredReplay::Bytes)
                        .or(response_v1.map(StoredReplay::Json)),
                },
            },
        )
    }

    async fn complete(&mut self, request_id: Uuid, response: StoredReplay) -> Result<()> {
        match response {
            StoredReplay::Bytes(bytes) => {
                request_ids::complete(self, request_id, &bytes).await?;
                Ok(())
            }
            StoredReplay::Json(_) => Err(Error::internal(&Unreachable(
                "version 1 replays are read, never written",
            ))),
        }
    }

    async fn record(&mut self, event: NewEvent) -> Result<()> {
        let row = NewEventRow {
            event_id: Uuid::now_v7(),
            aggregate: event.resource,
            sequence: event.sequence,
            event_type: event.event_type.as_str().to_owned(),
            payload: event_payload::encode(event.event_type, &event.data),
            actor: event.actor,
            request_id: event.request_id,
        };
        events::insert(self, &row).await?;
        Ok(())
    }

    async fn detach_company(&mut self, company: CompanyName, actor: &str) -> Result<Vec<Customer>> {
        let rows = customers::detach_company(self, &company.to_string(), actor).await?;
        Ok(rows
            .into_iter()
            .map(Customer::try_from)
            .collect::<Result<_, _>>()?)
    }

    async fn count_live_in_company(&mut self, company: CompanyName) -> Result<i64> {
        Ok(customers::count_live_in_company(self, &company.to_string()).await?)
    }
}
