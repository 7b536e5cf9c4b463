//! PostgreSQL access: the connection pool, embedded migrations and the queries.
//!
//! - Pool: bb8 over diesel-async's `AsyncPgConnection` (pure Rust, no libpq). Checkout waits
//!   at most `checkout_timeout` (2 s by default) so a dead database answers UNAVAILABLE fast
//!   instead of queueing requests. Each connection sets `statement_timeout` and
//!   `idle_in_transaction_session_timeout` on connect, so neither a runaway query nor a
//!   forgotten transaction can hold a backend for long. A connection whose socket closed
//!   (database restart, `pg_terminate_backend`) is discarded at checkout, so the pool heals
//!   itself after a restart with no manual action.
//! - [`connect`]: every connection is opened by a [`Connector`]: libpq's `sslmode`,
//!   `sslrootcert`, `sslcert` and `sslkey` from the URL, TLS by rustls.
//! - Connection poolers: with `DB_PREPARED_STATEMENTS=false` no prepared statement outlives a
//!   transaction and every statement runs inside one ([`Pool::run`], [`Pool::begin`]), as a
//!   transaction-pooling PgBouncer requires; session state (migrations' and the relay's
//!   advisory locks, `LISTEN`) uses [`Pool::session`] connections, opened through
//!   `DATABASE_SESSION_URL` when set.
//! - Migrations: `migrations/` is embedded in the binary and applied under an advisory lock,
//!   so several instances starting at once migrate exactly once.
//! - [`customers`], [`companies`], [`notes`], [`events`], [`request_ids`], [`api_keys`] and
//!   [`erasure`] (data-subject rights), [`duplicates`] (duplicate detection):
//!   the queries, one function per statement. The statements every resource table has alike
//!   are declared once in [`table`], its row types in [`models`].
//! - [`operations`]: long-running operations (imports), each row its import's resume point.
//! - [`keys`]: secrets generated once and shared by every replica (the page-token key).
//! - [`filter`]: the typed filter of each listing as a SQL condition; [`keyset`]: the keyset
//!   pagination every listing shares.
//! - [`relay`]: the outbox relay's lease, a session-level advisory lock on a connection of
//!   its own.
//! - [`store`]: the core's storage seam over PostgreSQL; [`error`]: database failures
//!   classified once.
//! - [`checkout`]: a call abandoned while its statement runs (client deadline, cancel) has
//!   the statement cancelled and its connection discarded, never pooled as idle;
//!   [`deadline`]: a transaction's statements are bounded by what is left of the client's
//!   deadline. [`Pool::ping`] (readiness) runs on a connection of its own, so a slow table
//!   that holds every pooled connection cannot make an instance look down.
//! - Traces: a span per pool checkout ([`Pool::get`]) and per statement ([`spans`]), when a
//!   trace layer is installed.
//! - [`statement`]: statements of a fixed shape (reads by id, inserts, updates) render their
//!   SQL once per call site instead of on every call.
//!
//! No module outside `db` builds SQL: the others call these functions with a connection.

pub mod api_keys;
pub mod checkout;
pub mod companies;
pub mod connect;
pub mod customers;
pub mod deadline;
pub mod duplicates;
pub mod erasure;
pub mod error;
pub mod events;
pub mod filter;
pub mod keys;
pub mod keyset;
pub mod merges;
pub mod models;
pub mod notes;
pub mod operations;
pub mod relay;
pub mod request_ids;
pub mod schema;
pub mod spans;
pub mod statement;
pub mod store;
pub mod table;

use std::time::Duration;

use diesel::{ConnectionError, connection::CacheSize};
use diesel_async::{
    AnsiTransactionManager, AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl,
    SimpleAsyncConnection, TransactionManager,
    pooled_connection::{
        AsyncDieselConnectionManager, ManagerConfig, PoolableConnection, RecyclingMethod,
    },
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures_util::FutureExt;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tokio::time::Instant;

pub use self::connect::{ConnectError, Connector, SslMode};
use crate::config::DatabaseSettings;

/// The migrations of `migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Advisory lock key serialising migrations across instances (`customer-api` in ASCII).
const MIGRATION_LOCK: i64 = 0x6375_7374_6170_6931;

type Manager = AsyncDieselConnectionManager<AsyncPgConnection>;
/// The connection every query of this module takes: other modules name it only through
/// this alias, so the driver stays this module's business.
pub type Conn = AsyncPgConnection;
/// A connection checked out of the pool, owned (can move into a spawned task).
pub type Connection = bb8::PooledConnection<'static, Manager>;
/// A pool checkout failure.
pub type PoolError = bb8::RunError<diesel_async::pooled_connection::PoolError>;
/// A failed statement, as this module's queries return it.
pub type QueryError = diesel::result::Error;

/// Errors of setting the database up (connecting, creating, migrating).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The connection URL or a file it names is unusable.
    #[error(transparent)]
    Connector(#[from] ConnectError),
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

impl From<PoolError> for SetupError {
    fn from(error: PoolError) -> Self {
        Self::Connect(error.to_string())
    }
}

/// How pooled connections use the server.
#[derive(Debug, Clone, Copy)]
struct Statements {
    /// Prepared statements cached per connection (the default). Off, every statement runs in
    /// an explicit transaction and no prepared statement outlives it: what a
    /// transaction-pooling PgBouncer (which may move a client to another server connection
    /// between two transactions) needs.
    prepared: bool,
    /// `statement_timeout`.
    timeout: Duration,
}

impl Statements {
    /// Session settings of every connection: bounds on a runaway statement and a forgotten
    /// transaction. Set per transaction (`SET LOCAL`) when statements are pinned, because a
    /// pooler would carry a session setting to whichever client gets the server next.
    fn settings(self, scope: &str) -> String {
        format!(
            "SET {scope} statement_timeout = {}; SET {scope} idle_in_transaction_session_timeout = {}",
            self.timeout.as_millis(),
            // A transaction only idles when its client task died; a bound well above any
            // legitimate gap between statements frees the backend anyway.
            (self.timeout * 6).as_millis(),
        )
    }
}

/// The connection pool (bb8), and the connector of the sessions that must stay on one server
/// connection (migrations, the relay lease, `LISTEN`). Cheap to clone.
#[derive(Clone)]
pub struct Pool {
    connections: bb8::Pool<Manager>,
    sessions: Connector,
    statements: Statements,
    /// How long each checkout waited (`customer_api_db_pool_wait_seconds`).
    wait: Histogram,
    /// Opens pooled connections (and cancels their statements, `checkout`).
    connector: Connector,
    /// The connection of [`Pool::ping`], outside the pool (taken while a ping runs).
    probe: std::sync::Arc<tokio::sync::Mutex<Option<AsyncPgConnection>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("state", &self.connections.state())
            .field("sessions", &self.sessions)
            .field("statements", &self.statements)
            .finish()
    }
}

impl Pool {
    /// A pooled connection, owned, for one unit of work: call [`Checkout::done`] when it
    /// finished, else the connection is treated as abandoned mid-statement (cancelled and
    /// discarded, see [`checkout`]). Behind a transaction pooler (prepared statements off)
    /// use it only through [`Pool::begin`] or [`Pool::run`].
    pub async fn get(&self) -> Result<checkout::Checkout, PoolError> {
        let connection = self.checkout().await?;
        Ok(checkout::Checkout::new(connection, self.connector.tls()))
    }

    async fn checkout(&self) -> Result<Connection, PoolError> {
        // A child of the traced operation, if any (nothing runs inside it that records spans
        // of its own: connections are opened by the pool's tasks). It ends when dropped, once
        // the checkout is done.
        static ATTRIBUTES: std::sync::LazyLock<bytes::Bytes> = std::sync::LazyLock::new(|| {
            crate::telemetry::span::fixed_attributes(&[opentelemetry::KeyValue::new(
                "db.system",
                "postgresql",
            )])
        });
        let span = crate::telemetry::span::child_fixed(
            "pool checkout",
            opentelemetry::trace::SpanKind::Internal,
            &ATTRIBUTES,
        );
        let start = std::time::Instant::now();
        let connection = self.connections.get_owned().await;
        self.wait.observe(start.elapsed().as_secs_f64());
        drop(span);
        connection
    }

    /// The histogram of checkout waits, successful or not.
    pub fn wait_histogram(&self) -> Histogram {
        self.wait.clone()
    }

    /// Connections open and idle.
    pub fn state(&self) -> bb8::State {
        self.connections.state()
    }

    /// Whether every statement must run inside an explicit transaction (prepared statements
    /// off, for a transaction-pooling PgBouncer).
    pub fn pins_statements(&self) -> bool {
        !self.statements.prepared
    }

    /// A connection outside the pool that is a real session: through `DATABASE_SESSION_URL`
    /// when set (a direct or session-pooled address), so session state (advisory locks,
    /// `LISTEN`) holds even when the pool goes through a transaction pooler.
    pub async fn session(&self) -> Result<AsyncPgConnection, ConnectionError> {
        let mut conn = self.sessions.connect(false).await?;
        conn.batch_execute(&format!(
            "{}; SET application_name = 'customer-api'",
            self.statements.settings("SESSION")
        ))
        .await
        .map_err(ConnectionError::CouldntSetupConfiguration)?;
        Ok(conn)
    }

    /// Begins a transaction on a pooled connection (with the statement bounds when statements
    /// are pinned), its statements bounded by the call's deadline (`deadline`).
    pub async fn begin(
        &self,
        conn: &mut AsyncPgConnection,
        deadline: Option<Instant>,
    ) -> diesel::QueryResult<()> {
        let bounded = deadline::begin_sql(self.statements.timeout, deadline);
        if self.statements.prepared {
            match bounded {
                None => AnsiTransactionManager::begin_transaction(conn).await,
                Some(sql) => AnsiTransactionManager::begin_transaction_sql(conn, &sql).await,
            }
        } else {
            // The deadline's SET LOCAL comes after the settings', so it wins.
            let mut sql = format!("BEGIN; {}", self.statements.settings("LOCAL"));
            if let Some(bounded) = bounded {
                sql.push_str(bounded.trim_start_matches("BEGIN"));
            }
            AnsiTransactionManager::begin_transaction_sql(conn, &sql).await
        }
    }

    /// Whether the database answers a trivial query, asked on a connection of its own (not
    /// a pooled one): readiness must not queue behind user traffic, or one slow table and
    /// short client deadlines would take every replica out of rotation at once. The
    /// connection is reopened after any failure; a ping dropped half-way (its caller's
    /// timeout) discards it.
    pub async fn ping(&self) -> Result<(), String> {
        let mut slot = self.probe.lock().await;
        let mut conn = match slot.take() {
            Some(conn) => conn,
            // Set up as pooled connections are (behind a transaction pooler: no session
            // settings), but never handed to a request.
            None => setup_session(self.connector.clone(), self.statements)
                .await
                .map_err(|e| e.to_string())?,
        };
        ping(&mut conn).await.map_err(|e| e.to_string())?;
        *slot = Some(conn);
        Ok(())
    }

    /// Begins a read-only REPEATABLE READ transaction: every statement in it reads the one
    /// snapshot taken by its first. Private: snapshots are run by [`Pool::run_in`]
    /// (`Transaction::Snapshot`), which also ends them.
    async fn begin_snapshot(&self, conn: &mut AsyncPgConnection) -> diesel::QueryResult<()> {
        const BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";
        let sql = if self.statements.prepared {
            BEGIN.to_owned()
        } else {
            format!("{BEGIN}; {}", self.statements.settings("LOCAL"))
        };
        AnsiTransactionManager::begin_transaction_sql(conn, &sql).await
    }

    /// Runs `body` on a pooled connection: as it is, or, when statements are pinned, in a
    /// transaction committed when `body` succeeds and rolled back when it fails.
    pub async fn run<T, E>(
        &self,
        body: impl AsyncFnOnce(&mut AsyncPgConnection) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<PoolError> + From<diesel::result::Error>,
    {
        let transaction = if self.statements.prepared {
            Transaction::Autocommit
        } else {
            Transaction::Pinned
        };
        self.run_in(transaction, body).await
    }

    /// Runs `body` on a pooled connection in `transaction`, which ends as `body` does
    /// (COMMIT, or ROLLBACK when it fails). The connection goes back to the pool once `body`
    /// has finished; a failed BEGIN discards it.
    pub async fn run_in<T, E>(
        &self,
        transaction: Transaction,
        body: impl AsyncFnOnce(&mut AsyncPgConnection) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<PoolError> + From<diesel::result::Error>,
    {
        let mut checkout = self.get().await?;
        let conn: &mut AsyncPgConnection = &mut checkout;
        let begun = match transaction {
            Transaction::Autocommit => false,
            Transaction::Pinned => {
                self.begin(conn, None).await?;
                true
            }
            Transaction::Snapshot => {
                self.begin_snapshot(conn).await?;
                true
            }
        };
        let result = body(conn).await;
        let result = if begun {
            finish(conn, result).await
        } else {
            result
        };
        checkout.done();
        result
    }
}

/// What [`Pool::run_in`] runs its body in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transaction {
    /// No transaction: each statement commits on its own.
    Autocommit,
    /// [`Pool::begin`] without a deadline: what pins the session settings behind a
    /// transaction pooler.
    Pinned,
    /// A read-only REPEATABLE READ transaction: every statement reads the one snapshot taken
    /// by the first (exports).
    Snapshot,
}

/// Ends the transaction that produced `result`: COMMIT when it is `Ok`, ROLLBACK when not. A
/// failed COMMIT is rolled back too (as diesel-async's own `transaction` does) and its error
/// returned.
pub(crate) async fn finish<T, E>(conn: &mut AsyncPgConnection, result: Result<T, E>) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    match result {
        Ok(value) => match AnsiTransactionManager::commit_transaction(conn).await {
            Ok(()) => Ok(value),
            Err(error) => {
                let _ = AnsiTransactionManager::rollback_transaction(conn).await;
                Err(error.into())
            }
        },
        Err(error) => {
            AnsiTransactionManager::rollback_transaction(conn).await?;
            Err(error)
        }
    }
}

/// A transaction-level advisory lock on `key` (hashed to 64 bits), released at COMMIT or
/// ROLLBACK: writes about a thing without a row yet take turns on it.
pub(crate) async fn lock_key(conn: &mut AsyncPgConnection, key: &str) -> diesel::QueryResult<()> {
    use diesel_async::RunQueryDsl as _;
    diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind::<diesel::sql_types::Text, _>(key)
        .execute(conn)
        .await
        .map(drop)
}

/// Builds the pool. Fails if the database cannot be reached within the checkout timeout.
pub async fn connect(settings: &DatabaseSettings) -> Result<Pool, SetupError> {
    let connector = Connector::from_url(&settings.database_url)?;
    let sessions = match &settings.database_session_url {
        Some(url) => Connector::from_url(url)?,
        None => connector.clone(),
    };
    let statements = Statements {
        prepared: settings.prepared_statements,
        timeout: settings.statement_timeout,
    };
    let mut config = ManagerConfig::default();
    let pooled = connector.clone();
    config.custom_setup = Box::new(move |_| setup_connection(pooled.clone(), statements).boxed());
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
    // The URL argument only reaches `custom_setup`, which connects with the parsed connector
    // instead: the manager need not hold the password.
    let manager = AsyncDieselConnectionManager::new_with_config("", config);
    let connections = bb8::Pool::builder()
        .max_size(settings.pool_size.max(1))
        .min_idle(Some(1))
        .connection_timeout(settings.checkout_timeout)
        .idle_timeout(Some(Duration::from_secs(300)))
        .test_on_check_out(true)
        .build(manager)
        .await
        .map_err(|e| SetupError::Connect(e.to_string()))?;
    Ok(Pool {
        connections,
        sessions,
        statements,
        // 50 µs … ~1.6 s in doublings; the checkout timeout (2 s) lands in +Inf.
        wait: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
        connector,
        probe: std::sync::Arc::default(),
    })
}

async fn setup_connection(
    connector: Connector,
    statements: Statements,
) -> Result<AsyncPgConnection, ConnectionError> {
    let mut conn = setup_session(connector, statements).await?;
    if spans::wanted() {
        conn.set_instrumentation(spans::StatementSpans::default());
    }
    Ok(conn)
}

async fn setup_session(
    connector: Connector,
    statements: Statements,
) -> Result<AsyncPgConnection, ConnectionError> {
    if statements.prepared {
        let mut conn = connector.connect(false).await?;
        let sql = format!(
            "{}; SET application_name = 'customer-api'",
            statements.settings("SESSION")
        );
        conn.batch_execute(&sql)
            .await
            .map_err(ConnectionError::CouldntSetupConfiguration)?;
        return Ok(conn);
    }
    // diesel-async's own set-up statements ran inside the transaction `connect` began; the
    // cache is switched off before the commit, which closes them on the same server
    // connection. application_name is a parameter PgBouncer tracks per client.
    let mut conn = connector.connect(true).await?;
    conn.set_prepared_statement_cache_size(CacheSize::Disabled);
    conn.batch_execute("SET application_name = 'customer-api'; COMMIT")
        .await
        .map_err(ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
}

/// A connection of its own, outside the pool's rotation (bb8 never hands it to a request or
/// recycles it), for a session that must stay the same one: an advisory lock, a `LISTEN`
/// (`Pool::session`: a real session even behind a transaction pooler).
/// Fails with the reason as text, for the caller's own error.
pub(crate) async fn dedicated_connection(pool: &Pool) -> Result<AsyncPgConnection, String> {
    pool.session().await.map_err(|e| e.to_string())
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
    // A migration's work grows with the table (an index build takes minutes at a million
    // customers), so the request bound `DB_STATEMENT_TIMEOUT` would fail it on the largest
    // databases only; the deployment's own timeout bounds a migration instead.
    conn.batch_execute("SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0")
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

/// Creates the database of `settings` if it does not exist (for `customer-api migrate` and
/// development set-ups), over the session URL. Asks the server's `postgres` database only when
/// ours cannot be reached, so an account without access to `postgres` can still migrate a
/// database that exists.
pub async fn create_database_if_missing(settings: &DatabaseSettings) -> Result<bool, SetupError> {
    let connector = Connector::from_url(
        settings
            .database_session_url
            .as_deref()
            .unwrap_or(&settings.database_url),
    )?;
    let name = connector
        .database()
        .filter(|name| !name.is_empty())
        .ok_or_else(|| SetupError::Url("the URL names no database".into()))?
        .to_owned();
    if connector.connect(false).await.is_ok() {
        return Ok(false);
    }
    let mut conn = connector
        .with_database("postgres")
        .connect(false)
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
