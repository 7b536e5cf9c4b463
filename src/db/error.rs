//! Database failures classified once, into the service's error classification.
//!
//! Integrity violations are classified by diesel's SQLSTATE-derived `DatabaseErrorKind` and
//! the constraint name (see `store::conflict`). diesel 2.3 exposes no SQLSTATE for the other
//! classes (diesel-rs/diesel#5232 adds it), so the few server conditions that must not be
//! reported as internal errors — statement timeout (57014), administrator shutdown and
//! start-up (57P01, 57P03), lost connections — are recognised here, and only here, by the
//! server's primary message for those codes. Pool checkouts that fail mean the database is
//! unreachable.

use super::{PoolError, models::CorruptRow};
use crate::service::Error;

impl From<diesel::result::Error> for Error {
    fn from(error: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind as Kind, Error as E};
        match &error {
            E::DatabaseError(Kind::ClosedConnection | Kind::UnableToSendCommand, _) => {
                tracing::warn!(error = %error, "database connection lost");
                Self::database_unavailable()
            }
            E::DatabaseError(_, info) if is_statement_timeout(info.message()) => {
                tracing::warn!(error = %error, "statement timeout");
                Self::DeadlineExceeded {
                    message: "the database did not answer in time".into(),
                }
            }
            E::DatabaseError(_, info) if is_connection_gone(info.message()) => {
                tracing::warn!(error = %error, "database connection lost");
                Self::database_unavailable()
            }
            _ => Self::internal(&error),
        }
    }
}

/// SQLSTATE 57014 (query_canceled) raised by `statement_timeout`.
fn is_statement_timeout(message: &str) -> bool {
    message.contains("statement timeout")
}

/// Admin shutdown / terminated backend / broken socket, as reported by tokio-postgres.
fn is_connection_gone(message: &str) -> bool {
    message.contains("terminating connection")
        || message.contains("connection closed")
        || message.contains("error communicating with the server")
        || message.contains("the database system is shutting down")
        || message.contains("the database system is starting up")
}

impl From<PoolError> for Error {
    fn from(error: PoolError) -> Self {
        tracing::warn!(error = %error, "no database connection");
        Self::database_unavailable()
    }
}

impl From<CorruptRow> for Error {
    fn from(error: CorruptRow) -> Self {
        Self::internal(&error)
    }
}
