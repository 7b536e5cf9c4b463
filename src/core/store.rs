//! The storage seam: what the core asks of a database, in domain terms.
//!
//! [`Store`] hands out a [`Storage`] (one connection, in a transaction for writes); a
//! [`Storage`] offers a [`Repository`] per resource plus the request-id records and the
//! outbox every write uses. Nothing here names a query language, a driver or a connection type:
//! `crate::db` implements these traits for PostgreSQL, and the unit tests implement them over
//! maps (`core::memory`), which is how the business rules are tested without a network.
//!
//! Unique-constraint violations arrive as a typed [`Conflict`] (classified in `db/` by
//! SQLSTATE and constraint name), never as driver errors for the core to pick apart.

use std::future::Future;

use uuid::Uuid;

use crate::{
    domain::{
        company::Company,
        customer::Customer,
        names::{CompanyName, CustomerName},
        note::Note,
    },
    service::Result,
};

use super::resource::Resource;

/// How a row is read inside a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// A plain read.
    None,
    /// `FOR SHARE`: writers referring to the row hold this, so a delete of it waits for them.
    Share,
    /// `FOR UPDATE`: the writer of the row; concurrent writers take turns.
    Update,
}

/// A unique attribute another live resource already holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    /// Another live customer uses the email.
    Email,
    /// Another live company has the business id.
    BusinessId,
    /// Another live customer (`holder`, when known) has the external id `id` of `source`.
    ExternalId {
        /// The source system.
        source: String,
        /// The id it knows the customer by.
        id: String,
        /// The customer holding the pair.
        holder: Option<Uuid>,
    },
}

/// What claiming a request id found.
#[derive(Debug)]
pub enum Claim {
    /// The id is new: the write proceeds and records its response.
    Fresh,
    /// A committed write used the id with this fingerprint and response.
    Used {
        /// Fingerprint of the first request.
        fingerprint: Vec<u8>,
        /// Its stored response, or why it was forgotten.
        response: super::replay::StoredReplay,
    },
}

pub use crate::domain::event::NewEvent;

/// Reads and writes of one resource type.
pub trait Repository<R: Resource>: Send {
    /// The resource, deleted or not, read with `lock`.
    fn find(&mut self, name: R::Name, lock: Lock)
    -> impl Future<Output = Result<Option<R>>> + Send;

    /// The resources among `names`, deleted or not, in any order: unlocked, in one statement
    /// where the store can (concurrent Gets share it, `core::coalesce`).
    fn find_many(&mut self, names: &[R::Name]) -> impl Future<Output = Result<Vec<R>>> + Send {
        async move {
            let mut found = Vec::with_capacity(names.len());
            for &name in names {
                found.extend(self.find(name, Lock::None).await?);
            }
            Ok(found)
        }
    }

    /// Stores a new resource under `name`.
    fn insert(
        &mut self,
        name: R::Name,
        data: &R::Data,
        actor: &str,
    ) -> impl Future<Output = Result<R>> + Send;

    /// Writes new field values, bumping the version.
    fn update(
        &mut self,
        current: &R,
        data: &R::Data,
        actor: &str,
    ) -> impl Future<Output = Result<R>> + Send;

    /// Removes the resource: a soft delete (the resource as deleted) or a hard one (the
    /// resource as it was last).
    fn remove(&mut self, current: &R, actor: &str) -> impl Future<Output = Result<R>> + Send;
}

/// Resources that are soft-deleted and can be restored (AIP-164).
pub trait Restore<R: Resource>: Repository<R> {
    /// Restores a soft-deleted resource, replacing its fields with `data` when given (one
    /// version, one event).
    fn restore(
        &mut self,
        current: &R,
        data: Option<&R::Data>,
        actor: &str,
    ) -> impl Future<Output = Result<R>> + Send;
}

/// Everything a write transaction (or a read) can do.
pub trait Storage:
    Repository<Customer>
    + Repository<Company>
    + Repository<Note>
    + Restore<Customer>
    + Restore<Company>
    + Send
{
    /// Claims a request id for a request with `fingerprint` (in the write's transaction, so
    /// the claim and the write commit or roll back together).
    fn claim(
        &mut self,
        request_id: Uuid,
        fingerprint: &[u8],
    ) -> impl Future<Output = Result<Claim>> + Send;

    /// Records the response of the write that claimed `request_id`, and the customer whose
    /// personal data it holds (erased when that customer is purged).
    fn complete(
        &mut self,
        request_id: Uuid,
        response: super::replay::StoredReplay,
        customer: Option<Uuid>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Claims `request_id` for a request with `fingerprint` and records its response in one
    /// go, at the end of a write that ran before claiming; `false` (nothing written) when a
    /// committed write used the id, and the transaction must roll back.
    fn claim_with_response(
        &mut self,
        request_id: Uuid,
        fingerprint: &[u8],
        response: super::replay::StoredReplay,
        customer: Option<Uuid>,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Records an event in the outbox.
    fn record(&mut self, event: NewEvent) -> impl Future<Output = Result<()>> + Send;

    /// Clears the company of every live customer of `company`, bumping each one's version;
    /// the customers as they are now.
    fn detach_company(
        &mut self,
        company: CompanyName,
        actor: &str,
    ) -> impl Future<Output = Result<Vec<Customer>>> + Send;

    /// How many live customers belong to `company`.
    fn count_live_in_company(
        &mut self,
        company: CompanyName,
    ) -> impl Future<Output = Result<i64>> + Send;

    /// Takes a lock on `key` until the end of the transaction, so that writes about a thing
    /// that has no row yet (a missing name, an external key) take turns.
    fn lock_key(&mut self, key: &str) -> impl Future<Output = Result<()>> + Send;

    /// The live customer holding the external id `(source, id)`, if any.
    fn customer_by_external_id(
        &mut self,
        source: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<CustomerName>>> + Send;
}

/// An async closure over a storage whose future is `Send` (so a write can run on a spawned
/// task). Spelled out because the database driver's equivalent bound is not public.
pub trait TxBody<'r, C: 'r, T>:
    AsyncFnOnce(&'r mut C) -> Result<T> + FnOnce(&'r mut C) -> <Self as TxBody<'r, C, T>>::Future
{
    /// The closure's future.
    type Future: Future<Output = Result<T>> + Send;
}

impl<'r, C: 'r, T, F, Fut> TxBody<'r, C, T> for F
where
    F: AsyncFnOnce(&'r mut C) -> Result<T> + FnOnce(&'r mut C) -> Fut,
    Fut: Future<Output = Result<T>> + Send,
{
    type Future = Fut;
}

/// The body of a [`Transact::write`]: it runs on a spawned task, so it is `'static`.
pub trait WriteBody<C, T>: for<'r> TxBody<'r, C, T> + Send + 'static {}

impl<C, T, F: for<'r> TxBody<'r, C, T> + Send + 'static> WriteBody<C, T> for F {}

/// The body of a [`Transact::read`].
pub trait ReadBody<C, T>: for<'r> TxBody<'r, C, T> + Send {}

impl<C, T, F: for<'r> TxBody<'r, C, T> + Send> ReadBody<C, T> for F {}

/// A database: hands out storage (of type [`Store::Conn`]) through [`Transact`].
pub trait Store: Clone + Send + Sync + 'static {
    /// One connection's worth of storage.
    type Conn: Storage + 'static;
}

/// Reads and transactions over `C`, the [`Store::Conn`] of the store. A separate trait with
/// the connection as a parameter, so that implementations name their connection type
/// directly: rustc does not normalise an associated type inside the higher-ranked closure
/// bounds of an implementation's methods.
pub trait Transact<C>: Store {
    /// Runs `body` in a transaction on a spawned task, so that the caller going away (client
    /// cancel, disconnect) cannot cut it short; commits when it returns `Ok`. Its statements
    /// are bounded by the caller's deadline, if any: past it, the transaction rolls back.
    fn write<T: Send + 'static>(
        &self,
        body: impl WriteBody<C, T>,
    ) -> impl Future<Output = Result<T>> + Send;

    /// Runs `body` on a connection, outside any transaction.
    fn read<T: Send>(&self, body: impl ReadBody<C, T>) -> impl Future<Output = Result<T>> + Send;
}

/// What a bulk write (an import's batch) asks of a database beyond the single-row writes:
/// set-based probes for a whole batch and multi-row inserts, so a batch of a thousand rows
/// costs a handful of statements rather than thousands. Used inside a [`Transact::write`]
/// like the rest of [`Storage`].
pub trait Bulk: Storage {
    /// Stores new customers (each under its name), in one statement; them as stored, in
    /// the order given. A taken email or external id fails the whole call (a typed
    /// [`Conflict`]).
    fn insert_customers(
        &mut self,
        rows: &[(CustomerName, crate::domain::customer::CustomerData)],
        actor: &str,
    ) -> impl Future<Output = Result<Vec<Customer>>> + Send;

    /// Which of `emails` (lowercased) live customers hold, and who.
    fn live_emails(
        &mut self,
        emails: &[String],
    ) -> impl Future<Output = Result<std::collections::HashMap<String, Uuid>>> + Send;

    /// Which of the external ids `pairs` (source, id) live customers hold, and who.
    fn external_id_holders(
        &mut self,
        pairs: &[(String, String)],
    ) -> impl Future<Output = Result<std::collections::HashMap<(String, String), Uuid>>> + Send;

    /// Which of `companies` are live, share-locked for this transaction.
    fn live_companies(
        &mut self,
        companies: &[CompanyName],
    ) -> impl Future<Output = Result<std::collections::HashSet<CompanyName>>> + Send;

    /// Records many events in the outbox, in order.
    fn record_many(&mut self, events: Vec<NewEvent>) -> impl Future<Output = Result<()>> + Send;
}
