//! The core's storage seam implemented over PostgreSQL: [`PgStore`] hands out pooled
//! connections, and a connection is a [`Storage`] whose repositories turn rows into domain
//! types and unique violations into typed [`Conflict`]s.

use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use crate::domain::names::ResourceName as _;

use super::{
    Pool, companies, customers,
    events::{self, NewEventRow},
    models::{
        CompanyChanges, CustomerChanges, NewCompanyRow, NewCustomerRow, NewNoteRow, NoteChanges,
    },
    notes, request_ids,
};
use crate::{
    core::{
        replay::{Forgotten, StoredReplay},
        resource::Resource,
        store::{
            Bulk, Claim, Conflict, Lock, NewEvent, ReadBody, Repository, Restore, Storage, Store,
            Transact, WriteBody,
        },
    },
    domain::{
        company::Company,
        customer::Customer,
        names::{CompanyName, NoteName},
        note::{Note, NoteData},
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
    async fn write<T: Send + 'static>(
        &self,
        body: impl WriteBody<AsyncPgConnection, T>,
    ) -> Result<T> {
        let pool = self.pool.clone();
        let events = self.events.clone();
        // A spawned task: once started, the transaction finishes (or rolls back) even if the
        // caller goes away, so no connection is left idle in transaction.
        // In the caller's trace context: its statements belong to the caller's trace.
        // The caller's deadline bounds the transaction's statements: a write its client gave
        // up on stops waiting (for a lock, a slow table) and rolls back.
        let deadline = crate::service::deadline::current();
        let transaction = async move {
            let mut checkout = pool.get().await?;
            let conn: &mut AsyncPgConnection = &mut checkout;
            pool.begin(conn, deadline).await?;
            let result = body(conn).await;
            let result = super::finish(conn, result).await;
            checkout.done();
            if result.is_ok() {
                // Committed (perhaps with an event): number it now rather than at the next
                // sweep. A replayed request id wakes the sequencer for nothing, cheaply.
                events.committed();
            }
            result
        };
        // Boxed before it is spawned: the task then holds a pointer, and tokio's moves of its
        // stage (spawn, completion) copy a few words instead of the whole transaction state.
        tokio::spawn(crate::telemetry::span::in_current(Box::pin(transaction))).await?
    }

    async fn read<T: Send>(&self, body: impl ReadBody<AsyncPgConnection, T>) -> Result<T> {
        // Dropped before `done` (the caller's deadline passed, the client went away), the
        // checkout cancels the running statement and discards the connection.
        let mut checkout = self.pool.get().await?;
        let conn: &mut AsyncPgConnection = &mut checkout;
        let result = if self.pool.pins_statements() {
            // Behind a transaction pooler a read too must stay on one server connection.
            self.pool
                .begin(conn, crate::service::deadline::current())
                .await?;
            let result = body(conn).await;
            super::finish(conn, result).await
        } else {
            body(conn).await
        };
        checkout.done();
        result
    }
}

/// The bytes a stored response is written as: only the current version is ever written
/// (older ones are only read back).
fn written(response: StoredReplay) -> Result<Vec<u8>> {
    match response {
        StoredReplay::Bytes(bytes) => Ok(bytes),
        StoredReplay::Json(_) | StoredReplay::Forgotten(_) => Err(Error::internal(&Unreachable(
            "only current replays are written",
        ))),
    }
}

/// Unique violations of the constraints that mean "another live resource has this value"
/// become typed conflicts (by SQLSTATE class and constraint name); anything else is
/// classified as usual.
pub(crate) fn conflict(error: diesel::result::Error) -> Error {
    use diesel::result::{DatabaseErrorKind, Error as E};
    if let E::DatabaseError(DatabaseErrorKind::UniqueViolation, info) = &error {
        match info.constraint_name() {
            Some("customers_live_email_key") => return Conflict::Email.into(),
            Some("companies_live_business_id_key") => return Conflict::BusinessId.into(),
            Some("customer_external_ids_live_key") => {
                if let Some(conflict) = info.details().and_then(external_id_conflict) {
                    return conflict.into();
                }
            }
            _ => {}
        }
    }
    error.into()
}

/// The pair and holder the `customers_claim_external_ids` trigger names in the DETAIL of
/// its unique violation (JSON: `{"source", "id", "customer"}`).
fn external_id_conflict(detail: &str) -> Option<Conflict> {
    #[derive(serde::Deserialize)]
    struct Taken {
        source: String,
        id: String,
        customer: Option<Uuid>,
    }
    let taken: Taken = serde_json::from_str(detail).ok()?;
    Some(Conflict::ExternalId {
        source: taken.source,
        id: taken.id,
        holder: taken.customer,
    })
}

/// The repository of a soft-deleted resource stored one row each in `$table` (the module of
/// its [`soft_deleted_statements!`](super::table::soft_deleted_statements)), whose unique
/// violations are typed conflicts.
macro_rules! soft_deleted_repository {
    ($resource:ident in $table:ident: $new:ident, $changes:ident) => {
        impl Repository<$resource> for AsyncPgConnection {
            async fn find(
                &mut self,
                name: <$resource as Resource>::Name,
                lock: Lock,
            ) -> Result<Option<$resource>> {
                let row = $table::find_locked(self, name.id(), lock).await?;
                Ok(row.map($resource::try_from).transpose()?)
            }

            async fn find_many(
                &mut self,
                names: &[<$resource as Resource>::Name],
            ) -> Result<Vec<$resource>> {
                let ids: Vec<Uuid> = names.iter().map(|name| name.id()).collect();
                let rows = $table::find_many(self, &ids).await?;
                Ok(rows
                    .into_iter()
                    .map($resource::try_from)
                    .collect::<std::result::Result<_, _>>()?)
            }

            async fn insert(
                &mut self,
                name: <$resource as Resource>::Name,
                data: &<$resource as Resource>::Data,
                actor: &str,
            ) -> Result<$resource> {
                let row = $new::new(name.id(), data, actor);
                let stored = $table::insert(self, &row).await.map_err(conflict)?;
                Ok($resource::try_from(stored)?)
            }

            async fn update(
                &mut self,
                current: &$resource,
                data: &<$resource as Resource>::Data,
                actor: &str,
            ) -> Result<$resource> {
                let changes = $changes::new(data, actor);
                let row = $table::update(self, current.stored.id, &changes)
                    .await
                    .map_err(conflict)?;
                Ok($resource::try_from(row)?)
            }

            async fn remove(&mut self, current: &$resource, actor: &str) -> Result<$resource> {
                let row = $table::set_deleted(self, current.stored.id, actor, true).await?;
                Ok($resource::try_from(row)?)
            }
        }

        impl Restore<$resource> for AsyncPgConnection {
            async fn restore(
                &mut self,
                current: &$resource,
                data: Option<&<$resource as Resource>::Data>,
                actor: &str,
            ) -> Result<$resource> {
                let row = match data {
                    None => $table::set_deleted(self, current.stored.id, actor, false).await,
                    Some(data) => {
                        let changes = $changes::new(data, actor);
                        $table::update(self, current.stored.id, &changes).await
                    }
                }
                .map_err(conflict)?;
                Ok($resource::try_from(row)?)
            }
        }
    };
}

soft_deleted_repository!(Customer in customers: NewCustomerRow, CustomerChanges);
soft_deleted_repository!(Company in companies: NewCompanyRow, CompanyChanges);

impl Repository<Note> for AsyncPgConnection {
    async fn find(&mut self, name: NoteName, lock: Lock) -> Result<Option<Note>> {
        let row = notes::find(self, name.customer.id(), name.id(), lock).await?;
        Ok(row.map(Note::from))
    }

    async fn insert(&mut self, name: NoteName, data: &NoteData, actor: &str) -> Result<Note> {
        let row = NewNoteRow {
            id: name.id(),
            customer_id: name.customer.id(),
            author: actor.to_owned(),
            fields: NoteChanges::new(data, actor),
        };
        Ok(Note::from(notes::insert(self, &row).await?))
    }

    async fn update(&mut self, current: &Note, data: &NoteData, actor: &str) -> Result<Note> {
        let row = notes::update(self, current.stored.id, &NoteChanges::new(data, actor)).await?;
        Ok(Note::from(row))
    }

    async fn remove(&mut self, current: &Note, _: &str) -> Result<Note> {
        notes::delete(self, current.stored.id).await?;
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
                    customer_id,
                    forgotten_reason,
                } => Claim::Used {
                    fingerprint,
                    response: match (response, response_v1) {
                        (Some(bytes), _) => StoredReplay::Bytes(bytes),
                        (None, Some(json)) => StoredReplay::Json(json),
                        // The stored reason; a row an older release forgot has none:
                        // its purge kept the owner, its erasure cleared it.
                        (None, None) => StoredReplay::Forgotten(
                            match (forgotten_reason.as_deref(), customer_id) {
                                (Some(request_ids::PURGED) | None, Some(customer)) => {
                                    Forgotten::Purged { customer }
                                }
                                _ => Forgotten::Erased,
                            },
                        ),
                    },
                },
            },
        )
    }

    async fn complete(
        &mut self,
        request_id: Uuid,
        response: StoredReplay,
        customer: Option<Uuid>,
    ) -> Result<()> {
        let bytes = written(response)?;
        request_ids::complete(self, request_id, &bytes, customer).await?;
        Ok(())
    }

    async fn claim_with_response(
        &mut self,
        request_id: Uuid,
        fingerprint: &[u8],
        response: StoredReplay,
        customer: Option<Uuid>,
    ) -> Result<bool> {
        let bytes = written(response)?;
        Ok(
            request_ids::claim_with_response(self, request_id, fingerprint, &bytes, customer)
                .await?,
        )
    }

    async fn record(&mut self, event: NewEvent) -> Result<()> {
        events::insert(self, &event_row(event, crate::telemetry::traceparent())).await?;
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

    async fn lock_key(&mut self, key: &str) -> Result<()> {
        Ok(super::lock_key(self, key).await?)
    }

    async fn customer_by_external_id(
        &mut self,
        source: &str,
        id: &str,
    ) -> Result<Option<crate::domain::names::CustomerName>> {
        let found = customers::by_external_id(self, source, id).await?;
        Ok(found.map(crate::domain::names::CustomerName))
    }
}

/// The outbox row of `event`.
fn event_row(event: NewEvent, traceparent: Option<String>) -> NewEventRow {
    NewEventRow {
        event_id: Uuid::now_v7(),
        aggregate: event.resource,
        sequence: event.sequence,
        event_type: event.event_type.as_str().to_owned(),
        payload: event_payload::encode(event.event_type, event.data),
        actor: event.actor,
        request_id: event.request_id,
        traceparent,
    }
}

impl Bulk for AsyncPgConnection {
    async fn insert_customers(
        &mut self,
        rows: &[(
            crate::domain::names::CustomerName,
            crate::domain::customer::CustomerData,
        )],
        actor: &str,
    ) -> Result<Vec<Customer>> {
        let new: Vec<NewCustomerRow> = rows
            .iter()
            .map(|(name, data)| NewCustomerRow::new(name.id(), data, actor))
            .collect();
        let stored = customers::insert_many(self, &new).await.map_err(conflict)?;
        Ok(stored
            .into_iter()
            .map(Customer::try_from)
            .collect::<Result<_, _>>()?)
    }

    async fn live_emails(
        &mut self,
        emails: &[String],
    ) -> Result<std::collections::HashMap<String, Uuid>> {
        Ok(customers::live_emails_among(self, emails)
            .await?
            .into_iter()
            .collect())
    }

    async fn external_id_holders(
        &mut self,
        pairs: &[(String, String)],
    ) -> Result<std::collections::HashMap<(String, String), Uuid>> {
        let (sources, ids): (Vec<String>, Vec<String>) = pairs.iter().cloned().unzip();
        Ok(customers::external_id_holders(self, &sources, &ids)
            .await?
            .into_iter()
            .map(|(source, id, holder)| ((source, id), holder))
            .collect())
    }

    async fn live_companies(
        &mut self,
        names: &[CompanyName],
    ) -> Result<std::collections::HashSet<CompanyName>> {
        let ids: Vec<Uuid> = names.iter().map(CompanyName::id).collect();
        Ok(companies::live_among(self, &ids)
            .await?
            .into_iter()
            .map(CompanyName)
            .collect())
    }

    async fn record_many(&mut self, events: Vec<NewEvent>) -> Result<()> {
        // One traceparent for the batch: the request's.
        let traceparent = crate::telemetry::traceparent();
        let rows: Vec<NewEventRow> = events
            .into_iter()
            .map(|event| event_row(event, traceparent.clone()))
            .collect();
        events::insert_many(self, &rows).await?;
        Ok(())
    }
}
