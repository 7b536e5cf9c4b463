//! The relay lease: which instance publishes the outbox, and the statements it publishes by.
//!
//! The lease is a **session-level** advisory lock (`pg_try_advisory_lock`) taken on a
//! connection of its own, opened with `db::dedicated_connection` (a real session even when the
//! pool goes through a transaction pooler): bb8 never sees it, so a lock-holding session is
//! never handed to a request or recycled. The relay reads and marks
//! events on that same connection, in autocommit statements: no transaction stays open while
//! events are published, so neither `idle_in_transaction_session_timeout` nor a slow broker
//! can end the session under the relay, and every statement that succeeds also proves the
//! session (and with it the lock) is still alive.
//!
//! The lock lives exactly as long as the session. If the process dies or the connection
//! breaks, PostgreSQL releases it and a standby takes the lease at its next try; the relay
//! that lost its connection forgets the lease at its next statement and opens a new
//! connection to try again. [`Lease::release`] gives the lease up on purpose (shutdown, a
//! broker that keeps failing) so a standby need not wait for the session to end.

use diesel::{QueryableByName, sql_types::BigInt, sql_types::Bool};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::{
    Pool,
    events::{self, EventRow},
};

/// Advisory lock key of the relay lease (`cust-rly` in ASCII).
pub const RELAY_LOCK: i64 = 0x6375_7374_2d72_6c79;

/// Why a lease statement failed. The lease is forgotten (and its connection closed) first.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// No connection for the lease could be opened.
    #[error("cannot open the relay lease connection: {0}")]
    Connect(String),
    /// A statement on the lease connection failed.
    #[error("relay lease connection: {0}")]
    Query(#[from] diesel::result::Error),
    /// The relay asked to publish without holding the lease.
    #[error("the relay lease is not held")]
    NotHeld,
}

#[derive(QueryableByName)]
struct Held {
    #[diesel(sql_type = Bool)]
    held: bool,
}

/// The relay lease of this process: a dedicated connection and whether its session holds the
/// lock. Dropping it closes the connection, which releases the lock.
#[derive(Debug, Default)]
pub struct Lease {
    conn: Option<Session>,
    held: bool,
}

/// The lease's dedicated connection (its session holds the lock).
struct Session(AsyncPgConnection);

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session")
    }
}

impl Lease {
    /// No connection, no lease.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether this process held the lease at its last statement.
    pub fn is_held(&self) -> bool {
        self.held
    }

    /// Tries to take the lease (opening the connection if needed); `true` while this process
    /// holds it. Never waits for another holder.
    pub async fn try_acquire(&mut self, pool: &Pool) -> Result<bool, LeaseError> {
        if self.held {
            return Ok(true);
        }
        if self.conn.is_none() {
            let conn = super::dedicated_connection(pool)
                .await
                .map_err(LeaseError::Connect)?;
            self.conn = Some(Session(conn));
        }
        // Session-level locks stack: only ask while not holding, so one unlock frees it.
        let held: Held = self
            .statement(async |conn| {
                diesel::sql_query("SELECT pg_try_advisory_lock($1) AS held")
                    .bind::<BigInt, _>(RELAY_LOCK)
                    .get_result(conn)
                    .await
            })
            .await?;
        self.held = held.held;
        Ok(self.held)
    }

    /// Up to `limit` positioned, unpublished events in position order (see
    /// [`events::unpublished`]), read on the lease connection.
    pub async fn unpublished(&mut self, limit: i64) -> Result<Vec<EventRow>, LeaseError> {
        if !self.held {
            return Err(LeaseError::NotHeld);
        }
        self.statement(async |conn| events::unpublished(conn, limit).await)
            .await
    }

    /// Marks these events published, in one committed statement on the lease connection.
    pub async fn mark_published(&mut self, ids: &[i64]) -> Result<usize, LeaseError> {
        if !self.held {
            return Err(LeaseError::NotHeld);
        }
        self.statement(async |conn| events::mark_published(conn, ids).await)
            .await
    }

    /// Gives the lease up (the connection stays open for the next try). A failure closes the
    /// connection, which releases the lock as well.
    pub async fn release(&mut self) {
        if !self.held {
            return;
        }
        let released = self
            .statement(async |conn| {
                diesel::sql_query("SELECT pg_advisory_unlock($1) AS held")
                    .bind::<BigInt, _>(RELAY_LOCK)
                    .get_result::<Held>(conn)
                    .await
            })
            .await;
        if released.is_err() {
            self.conn = None;
        }
        self.held = false;
    }

    /// Runs `body` on the lease connection; on failure the connection is closed and the lease
    /// forgotten, because the session may be gone (and the lock with it).
    async fn statement<T>(
        &mut self,
        body: impl AsyncFnOnce(&mut AsyncPgConnection) -> diesel::QueryResult<T>,
    ) -> Result<T, LeaseError> {
        let Some(Session(conn)) = self.conn.as_mut() else {
            self.held = false;
            return Err(LeaseError::Connect("the lease connection is closed".into()));
        };
        match body(conn).await {
            Ok(value) => Ok(value),
            Err(error) => {
                self.conn = None;
                self.held = false;
                Err(error.into())
            }
        }
    }
}
