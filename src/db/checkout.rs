//! A pooled connection that is never handed back with a statement still running.
//!
//! Dropping a future does not stop its SQL: the server keeps executing the query (or keeps
//! waiting for a lock), while bb8 would count the connection idle again and give it to the
//! next caller, whose statement then queues behind the abandoned one. A [`Checkout`] is
//! *busy* from checkout until its user says it is [`done`](Checkout::done). Dropped while
//! busy — the call was abandoned: client deadline, cancel, disconnect — it
//! 1. sends PostgreSQL a cancel request for whatever the connection is running
//!    (tokio-postgres' `CancelToken`, over the connector's own TLS), so the backend stops
//!    at once instead of at its `statement_timeout`;
//! 2. marks the connection broken, so bb8 closes it rather than pooling it, and opens a
//!    fresh one in its place. (A reused connection could receive the cancel meant for the
//!    abandoned statement.)

use std::ops::{Deref, DerefMut};

use diesel_async::{AnsiTransactionManager, AsyncPgConnection, TransactionManager};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::Connection;

/// A pooled connection checked out for one unit of work (see the module docs).
pub struct Checkout {
    conn: Connection,
    tls: MakeRustlsConnect,
    busy: bool,
}

impl Checkout {
    pub(super) fn new(conn: Connection, tls: MakeRustlsConnect) -> Self {
        Self {
            conn,
            tls,
            busy: true,
        }
    }

    /// The work finished (successfully or not) with no statement left running: the
    /// connection may go back to the pool when dropped.
    pub fn done(mut self) {
        self.busy = false;
    }
}

impl Deref for Checkout {
    type Target = AsyncPgConnection;

    fn deref(&self) -> &AsyncPgConnection {
        &self.conn
    }
}

impl DerefMut for Checkout {
    fn deref_mut(&mut self) -> &mut AsyncPgConnection {
        &mut self.conn
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if !self.busy {
            return;
        }
        // bb8 asks the manager whether the connection is broken when it comes back; an
        // errored transaction manager is broken, so the pool closes it.
        let conn: &mut AsyncPgConnection = &mut self.conn;
        AnsiTransactionManager::transaction_manager_status_mut(conn).set_in_error();
        let token = self.conn.cancel_token();
        let tls = self.tls.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = token.cancel_query(tls).await {
                    tracing::debug!(%error, "cancel request for an abandoned statement failed");
                }
            });
        }
        tracing::debug!("abandoned database call: statement cancelled, connection discarded");
    }
}
