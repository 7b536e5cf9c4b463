//! PostgreSQL access: the connection pool, embedded migrations and the queries.
//!
//! - Pool: bb8 over diesel-async's `AsyncPgConnection` (pure Rust, no libpq). Checkout waits
//!   at most `checkout_timeout` (2 s by default) so a dead database answers UNAVAILABLE fast
//!   instead of queueing requests. Each connection sets `statement_timeout` and
//!   `idle_in_transaction_session_timeout` on connect, so neither a runaway query nor a
//!   forgotten transaction can hold a backend for long. A connection whose socket closed
//!   (database restart, `pg_terminate_backend`) is discarded at checkout, so the pool heals
//!   itself after a restart with no manual action.
//! - Migrations: `migrations/` is embedded in the binary and applied under an advisory lock,
//!   so several instances starting at once migrate exactly once.
//! - [`customers`], [`companies`], [`notes`], [`events`], [`request_ids`] and [`api_keys`]:
//!   the queries, one function per statement. The statements every resource table has alike
//!   are declared once in [`table`], its row types in [`models`].
//! - [`keys`]: secrets generated once and shared by every replica (the page-token key).
//! - [`filter`]: the typed filter of each listing as a SQL condition; [`keyset`]: the keyset
//!   pagination every listing shares.
//! - [`relay`]: the outbox relay's lease, a session-level advisory lock on a connection of
//!   its own.
//! - [`store`]: the core's storage seam over PostgreSQL; [`error`]: database failures
//!   classified once.
//!
//! No module outside `db` builds SQL: the others call these functions with a connection.

pub mod api_keys;
pub mod companies;
pub mod customers;
pub mod error;
pub mod events;
pub mod filter;
pub mod keys;
pub mod keyset;
pub mod models;
pub mod notes;
pub mod relay;
pub mod request_ids;
pub mod schema;
pub mod store;
pub mod table;

use std::time::Duration;

use diesel::ConnectionError;
use diesel_async::{
    AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl,
    pooled_connection::{
        AsyncDieselConnectionManager, ManagerConfig, PoolableConnection, RecyclingMethod,
    },
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures_util::FutureExt;

use crate::config::DatabaseSettings;

/// The migrations of `migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Advisory lock key serialising migrations across instances (`customer-api` in ASCII).
const MIGRATION_LOCK: i64 = 0x6375_7374_6170_6931;

/// The connection pool.
pub type Pool = bb8::Pool<AsyncDieselConnectionManager<AsyncPgConnection>>;
/// A connection checked out of the pool, owned (can move into a spawned task).
pub type Connection =
    bb8::PooledConnection<'static, AsyncDieselConnectionManager<AsyncPgConnection>>;
/// A pool checkout failure.
pub type PoolError = bb8::RunError<diesel_async::pooled_connection::PoolError>;

/// Errors of setting the database up (connecting, creating, migrating).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The server could not be reached or refused the connection.
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(String),
    /// A statement failed.
    #[error("database statement failed: {0}")]
    Query(#[from] diesel::result::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migration(String),
    /// The database URL could not be understood.
    #[error("invalid DATABASE_URL: {0}")]
    Url(String),
}

/// Builds the pool. Fails if the database cannot be reached within the checkout timeout.
pub async fn connect(settings: &DatabaseSettings) -> Result<Pool, SetupError> {
    let statement_timeout = settings.statement_timeout;
    let mut config = ManagerConfig::default();
    config.custom_setup = Box::new(move |url| setup_connection(url, statement_timeout).boxed());
    // Cheap recycling: no round trip per checkout, only a look at the socket and the
    // transaction state. A closed socket (database restart) fails the check and bb8 opens a
    // fresh connection instead.
    config.recycling_method = RecyclingMethod::CustomFunction(Box::new(|conn| {
        async move {
            if PoolableConnection::is_broken(conn) {
                Err(diesel::result::Error::BrokenTransactionManager)
            } else {
                Ok(())
            }
        }
        .boxed()
    }));
    let manager = AsyncDieselConnectionManager::new_with_config(&settings.database_url, config);
    bb8::Pool::builder()
        .max_size(settings.pool_size.max(1))
        .min_idle(Some(1))
        .connection_timeout(settings.checkout_timeout)
        .idle_timeout(Some(Duration::from_secs(300)))
        .test_on_check_out(true)
        .build(manager)
        .await
        .map_err(|e| SetupError::Connect(e.to_string()))
}

async fn setup_connection(
    url: &str,
    statement_timeout: Duration,
) -> Result<AsyncPgConnection, ConnectionError> {
    let mut conn = AsyncPgConnection::establish(url).await?;
    let statement = format!(
        "SET statement_timeout = {}; SET idle_in_transaction_session_timeout = {}; \
         SET application_name = 'customer-api'",
        statement_timeout.as_millis(),
        // A transaction only idles when its client task died; a bound well above any
        // legitimate gap between statements frees the backend anyway.
        (statement_timeout * 6).as_millis(),
    );
    diesel_async::SimpleAsyncConnection::batch_execute(&mut conn, &statement)
        .await
        .map_err(ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
}

/// A connection of its own, outside the pool's rotation (bb8 never hands it to a request or
/// recycles it), for a session that must stay the same one: an advisory lock, a `LISTEN`.
/// Fails with the reason as text, for the caller's own error.
pub(crate) async fn dedicated_connection(pool: &Pool) -> Result<AsyncPgConnection, String> {
    pool.dedicated_connection().await.map_err(|e| e.to_string())
}

/// Whether the database answers a trivial query on `conn` (health checks).
pub async fn ping(conn: &mut AsyncPgConnection) -> diesel::QueryResult<()> {
    diesel::sql_query("SELECT 1").execute(conn).await.map(drop)
}

/// Applies pending migrations under an advisory lock; returns how many were applied.
pub async fn migrate(pool: &Pool) -> Result<usize, SetupError> {
    let mut conn = dedicated_connection(pool)
        .await
        .map_err(SetupError::Connect)?;
    diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .execute(&mut conn)
        .await?;
    // The harness is synchronous (it blocks on the async connection), so it runs on a
    // blocking thread rather than stalling a runtime worker.
    let outcome = tokio::task::spawn_blocking(move || {
        let mut harness = AsyncMigrationHarness::new(conn);
        let applied = harness
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.len())
            .map_err(|e| SetupError::Migration(e.to_string()));
        (applied, harness.into_inner())
    })
    .await
    .map_err(|e| SetupError::Migration(e.to_string()))?;
    let (applied, mut conn) = outcome;
    diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
        .execute(&mut conn)
        .await?;
    applied
}

/// Creates the database named in `url` if it does not exist (for `customer-api migrate`
/// and development set-ups). Connects to the server's `postgres` database to do so.
pub async fn create_database_if_missing(url: &str) -> Result<bool, SetupError> {
    let name = database_name(url)?;
    let admin_url = with_database(url, "postgres")?;
    let mut conn = AsyncPgConnection::establish(&admin_url)
        .await
        .map_err(|e| SetupError::Connect(e.to_string()))?;
    #[derive(diesel::QueryableByName)]
    struct Exists {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        exists: bool,
    }
    let exists: Exists =
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
            .bind::<diesel::sql_types::Text, _>(&name)
            .get_result(&mut conn)
            .await?;
    if exists.exists {
        return Ok(false);
    }
    match diesel::sql_query(format!("CREATE DATABASE {}", quote_ident(&name)))
        .execute(&mut conn)
        .await
    {
        Ok(_) => Ok(true),
        // Another process created it between our check and our CREATE.
        Err(diesel::result::Error::DatabaseError(_, info))
            if info.message().contains("already exists") =>
        {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// The database name of a `postgres://` URL.
pub fn database_name(url: &str) -> Result<String, SetupError> {
    let (_, path, _) = split_url(url)?;
    if path.is_empty() {
        return Err(SetupError::Url("the URL names no database".into()));
    }
    Ok(path.to_owned())
}

/// The same URL pointing at another database.
pub fn with_database(url: &str, database: &str) -> Result<String, SetupError> {
    let (base, _, query) = split_url(url)?;
    Ok(format!("{base}/{database}{query}"))
}

/// Splits `scheme://authority/path?query` into (`scheme://authority`, `path`, `?query`).
fn split_url(url: &str) -> Result<(&str, &str, &str), SetupError> {
    let scheme_end = url
        .find("://")
        .ok_or_else(|| SetupError::Url("expected postgres://…".into()))?;
    let (before_query, query) = url.split_at(url.find('?').unwrap_or(url.len()));
    match before_query[scheme_end + 3..].find('/') {
        Some(slash) => {
            let slash = scheme_end + 3 + slash;
            Ok((&before_query[..slash], &before_query[slash + 1..], query))
        }
        None => Ok((before_query, "", query)),
    }
}

/// Quotes an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_retargeted_to_another_database() {
        let url = "postgres://u:p@h:5432/customer_api?sslmode=disable";
        assert_eq!(database_name(url).unwrap(), "customer_api");
        assert_eq!(
            with_database(url, "postgres").unwrap(),
            "postgres://u:p@h:5432/postgres?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h", "x").unwrap(),
            "postgres://h/x"
        );
        assert!(database_name("postgres://h").is_err());
        assert!(database_name("h:5432").is_err());
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
