//! Test harness: a real server on `127.0.0.1:0` over a fresh PostgreSQL database per test.
//!
//! The first test to start migrates a *template* database (named after a hash of
//! `migrations/`, built under an advisory lock so parallel test processes agree); every test
//! then gets `CREATE DATABASE … TEMPLATE …`, which copies the migrated schema in
//! milliseconds. Databases left by earlier runs of this checkout are dropped when the template is
//! checked (each checkout has its own name prefix, so parallel checkouts never collide).
//!
//! PostgreSQL is required: without `DATABASE_URL` the tests fail with a message saying how
//! to provide one (`make test` does). They never skip.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use customer_api::{
    auth::scopes,
    config::ServeSettings,
    db,
    pb::{self, customer_service_client::CustomerServiceClient},
    server,
};
use diesel::{QueryableByName, sql_types::Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use sha2::{Digest, Sha256};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::{
    Code, Status,
    service::interceptor::InterceptedService,
    transport::{Channel, ClientTlsConfig, Endpoint},
};
use tonic_types::{ErrorDetails, StatusExt};

/// Prefix of every database the tests create.
const PREFIX: &str = "customer_api_test";

/// The prefix of this checkout's databases: several checkouts (worktrees, clones) sharing
/// one server each clean up only their own leftovers, never another's template.
fn namespace() -> &'static str {
    static NAMESPACE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAMESPACE.get_or_init(|| {
        let checkout = Sha256::digest(env!("CARGO_MANIFEST_DIR").as_bytes());
        format!("{PREFIX}_{}", hex(&checkout[..3]))
    })
}

static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
static NEXT_DATABASE: AtomicUsize = AtomicUsize::new(0);

/// The server URL every test database lives on.
pub fn base_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "DATABASE_URL is not set. These tests need a real PostgreSQL: run `make test`, \
             which finds or starts one, or export DATABASE_URL=postgres://user@host:port/db"
        )
    })
}

async fn admin() -> AsyncPgConnection {
    let url =
        db::with_database(&base_url(), "postgres").expect("DATABASE_URL is a postgres:// URL");
    connect(&url).await.unwrap_or_else(|e| {
        panic!(
            "cannot reach PostgreSQL at {}: {e}",
            customer_api::config::redact_url(&url)
        )
    })
}

/// A connection to `url` opened as the service opens them (TLS parameters included).
pub async fn connect(url: &str) -> Result<AsyncPgConnection, String> {
    db::Connector::from_url(url)
        .map_err(|e| e.to_string())?
        .connect(false)
        .await
        .map_err(|e| e.to_string())
}

fn migrations_hash() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files: Vec<_> = walk(&dir);
    files.sort();
    let mut hasher = Sha256::new();
    for file in files {
        hasher.update(file.to_string_lossy().as_bytes());
        hasher.update(std::fs::read(&file).expect("read migration"));
    }
    hex(&hasher.finalize()[..6])
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read migrations/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

/// Whether `database` (`{prefix}_{pid}_{n}`) belongs to a test process that is still running:
/// under cargo-nextest every test is a process of its own, and one must never drop another's
/// database. Templates (`{prefix}_tpl_…`) and databases of processes that are gone are not held.
fn held_by_live_process(prefix: &str, database: &str) -> bool {
    let pid = database
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .and_then(|rest| rest.split('_').next())
        .and_then(|pid| pid.parse::<u32>().ok());
    pid.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
}

/// The migrated template, created once per schema version.
async fn template() -> &'static str {
    TEMPLATE
        .get_or_init(|| async {
            let prefix = namespace();
            let name = format!("{prefix}_tpl_{}", migrations_hash());
            let mut conn = admin().await;
            conn.batch_execute("SELECT pg_advisory_lock(774411)")
                .await
                .expect("lock");
            let existing: Vec<Name> = diesel::sql_query(format!(
                "SELECT datname AS name FROM pg_database WHERE datname LIKE '{prefix}%'"
            ))
            .load(&mut conn)
            .await
            .expect("list databases");
            for stale in &existing {
                if stale.name != name && !held_by_live_process(prefix, &stale.name) {
                    // Fails harmlessly if another run is still using it.
                    let _ = conn
                        .batch_execute(&format!(
                            "DROP DATABASE IF EXISTS {}",
                            db::quote_ident(&stale.name)
                        ))
                        .await;
                }
            }
            if !existing.iter().any(|db| db.name == name) {
                let building = format!("{name}_building");
                let _ = conn
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {}",
                        db::quote_ident(&building)
                    ))
                    .await;
                conn.batch_execute(&format!("CREATE DATABASE {}", db::quote_ident(&building)))
                    .await
                    .expect("create template");
                let url = db::with_database(&base_url(), &building).expect("url");
                let settings = ServeSettings::for_database(url).database;
                let pool = db::connect(&settings).await.expect("connect to template");
                db::migrate(&pool).await.expect("migrate template");
                drop(pool);
                // Published by rename, so nobody clones a half-migrated template. The
                // pool's sessions end asynchronously after the drop; terminate them and wait
                // (pg_terminate_backend with a timeout blocks until the backend is gone).
                conn.batch_execute(&format!(
                    "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity \
                     WHERE datname = '{building}'"
                ))
                .await
                .expect("end template sessions");
                conn.batch_execute(&format!(
                    "ALTER DATABASE {} RENAME TO {}",
                    db::quote_ident(&building),
                    db::quote_ident(&name)
                ))
                .await
                .expect("publish template");
            }
            conn.batch_execute("SELECT pg_advisory_unlock(774411)")
                .await
                .expect("unlock");
            name
        })
        .await
}

/// A test database, dropped (`WITH (FORCE)`) when the last holder of it is gone: the test
/// that asked for it and every [`TestApp`] serving it. Each test thereby leaves no database
/// behind, whether it passes or fails.
#[derive(Clone)]
pub struct TestDatabase(Arc<Owned>);

struct Owned {
    url: String,
    name: String,
}

/// The databases of this process still held, by name: a second server started on a name
/// (`TestApp::spawn_on`) holds it too, so stopping the first never drops it under the second.
static HELD: Mutex<Option<HashMap<String, Weak<Owned>>>> = Mutex::new(None);

impl TestDatabase {
    /// Its URL and its name.
    pub fn parts(&self) -> (String, String) {
        (self.0.url.clone(), self.0.name.clone())
    }

    fn held(name: &str) -> Option<Self> {
        let held = HELD.lock().unwrap();
        held.as_ref()?.get(name)?.upgrade().map(Self)
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(held) = HELD.lock().unwrap().as_mut() {
            held.remove(&self.name);
        }
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot block on a future: the statement
        // runs on a thread of its own with a runtime of its own, and is waited for.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                admin()
                    .await
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        db::quote_ident(&name)
                    ))
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            // Not a panic: this may run while a failed test unwinds. `make test` drops what is
            // left after the run (scripts/drop-test-databases.sh).
            eprintln!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}

/// A fresh, migrated database, dropped when the returned handle (and every server started on
/// it) is gone.
pub async fn fresh_database() -> TestDatabase {
    let template = template().await;
    let name = format!(
        "{}_{}_{}",
        namespace(),
        std::process::id(),
        NEXT_DATABASE.fetch_add(1, Ordering::SeqCst)
    );
    let mut conn = admin().await;
    conn.batch_execute(&format!(
        "CREATE DATABASE {} TEMPLATE {}",
        db::quote_ident(&name),
        db::quote_ident(template)
    ))
    .await
    .expect("create test database");
    let owned = Arc::new(Owned {
        url: db::with_database(&base_url(), &name).expect("url"),
        name: name.clone(),
    });
    HELD.lock()
        .unwrap()
        .get_or_insert_default()
        .insert(name, Arc::downgrade(&owned));
    TestDatabase(owned)
}

/// A running server and a client connected to it.
pub struct TestApp {
    /// Where the server listens.
    pub addr: SocketAddr,
    /// gRPC client over HTTP/2, sending an all-scopes bearer token.
    pub client: Client,
    /// The all-scopes bearer token the client sends (`authorization: Bearer …`).
    pub token: String,
    /// The channel (for other service clients).
    pub channel: Channel,
    /// The test database.
    pub database_url: String,
    /// Its name.
    pub database_name: String,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), server::StartError>>>,
    /// Keeps a test database alive while this server uses it (none for other databases).
    _database: Option<TestDatabase>,
}

impl TestApp {
    /// Default settings.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Settings adjusted by `configure` (the database URL is already set).
    pub async fn spawn_with(configure: impl FnOnce(&mut ServeSettings)) -> Self {
        Self::spawn_configured(configure, None).await
    }

    /// Like [`TestApp::spawn_with`] for a server configured for TLS: `client` and `channel`
    /// speak TLS with `client_tls` to `https://localhost:PORT` instead of plaintext.
    pub async fn spawn_with_tls(
        configure: impl FnOnce(&mut ServeSettings),
        client_tls: ClientTlsConfig,
    ) -> Self {
        Self::spawn_configured(configure, Some(client_tls)).await
    }

    async fn spawn_configured(
        configure: impl FnOnce(&mut ServeSettings),
        client_tls: Option<ClientTlsConfig>,
    ) -> Self {
        let database = fresh_database().await;
        let (database_url, database_name) = database.parts();
        Self::spawn_on(database_url, database_name, configure, client_tls).await
    }

    /// A server over an existing test database (a second instance, or a restart).
    pub async fn spawn_on(
        database_url: String,
        database_name: String,
        configure: impl FnOnce(&mut ServeSettings),
        client_tls: Option<ClientTlsConfig>,
    ) -> Self {
        let mut settings = ServeSettings::for_database(&database_url);
        // NATS_URL in the environment (make test exports it) is for the tests that ask for
        // a relay; every other server runs without one.
        settings.events.nats_url = None;
        settings.page_token_key = Some("integration-test page token key".into());
        settings.health_probe_interval = Duration::from_millis(100);
        settings.auth.jwt_hs256_secret = Some(TEST_SECRET.into());
        settings.auth.jwks_file = Some(fixture("jwt/jwks.json").into());
        configure(&mut settings);
        Self::start(settings, database_url, database_name, client_tls).await
    }

    async fn start(
        settings: ServeSettings,
        database_url: String,
        database_name: String,
        client_tls: Option<ClientTlsConfig>,
    ) -> Self {
        let token = mint(&settings, "test-user", &scopes::ALL);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (shutdown, stop) = oneshot::channel::<()>();
        let server = tokio::spawn(server::serve(settings, listener, async {
            let _ = stop.await;
        }));
        // The listener is bound, so connecting succeeds at once; calls queue in the backlog
        // until start-up (migrations) is done. (Over TLS the handshake completes once the
        // server accepts.)
        let endpoint = match client_tls {
            None => Endpoint::from_shared(format!("http://{addr}")).expect("endpoint"),
            Some(tls) => Endpoint::from_shared(format!("https://localhost:{}", addr.port()))
                .expect("endpoint")
                .tls_config(tls)
                .expect("client TLS config"),
        };
        let channel = endpoint.connect().await.expect("connect");
        let database = TestDatabase::held(&database_name);
        Self {
            addr,
            client: CustomerServiceClient::with_interceptor(channel.clone(), Bearer::new(&token)),
            token,
            channel,
            database_url,
            database_name,
            shutdown: Some(shutdown),
            server: Some(server),
            _database: database,
        }
    }

    /// Stops the server gracefully and waits for it to exit.
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server ran");
        }
    }

    /// A direct database connection (to inspect rows or hold locks).
    pub async fn db(&self) -> AsyncPgConnection {
        connect(&self.database_url)
            .await
            .expect("connect to the test database")
    }

    /// Counts rows of `table` (optionally filtered by `condition`).
    pub async fn count(&self, table: &str, condition: &str) -> i64 {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = self.db().await;
        let where_clause = if condition.is_empty() {
            String::new()
        } else {
            format!(" WHERE {condition}")
        };
        let count: Count =
            diesel::sql_query(format!("SELECT count(*) AS n FROM {table}{where_clause}"))
                .get_result(&mut conn)
                .await
                .expect("count");
        count.n
    }

    /// GetCustomer (the BASIC view) of `name`, over gRPC with the all-scopes token.
    pub async fn get_customer(&self, name: &str) -> Result<pb::Customer, Status> {
        let request = pb::GetCustomerRequest {
            name: name.to_owned(),
            ..Default::default()
        };
        let response = self.client.clone().get_customer(request).await;
        response.map(tonic::Response::into_inner)
    }

    /// WatchCustomerEvents of `parent` (`customers/-`: every customer) after the resume token
    /// `start_after` (empty: from the start of the log).
    pub async fn watch(
        &self,
        parent: &str,
        start_after: &str,
    ) -> Result<tonic::Streaming<pb::CustomerEvent>, Status> {
        let request = pb::WatchCustomerEventsRequest {
            parent: parent.into(),
            start_after: start_after.into(),
        };
        let response = self.client.clone().watch_customer_events(request).await;
        response.map(tonic::Response::into_inner)
    }

    /// The names of the customers ListCustomers answers `request` with (its one page).
    pub async fn customer_names(&self, request: pb::ListCustomersRequest) -> Vec<String> {
        let response = self.client.clone().list_customers(request).await;
        let customers = response.expect("list customers").into_inner().customers;
        customers
            .into_iter()
            .map(|customer| customer.name)
            .collect()
    }

    /// DeleteCustomer of `name` (soft, no etag), over gRPC with the all-scopes token.
    pub async fn delete_customer(&self, name: &str) -> Result<pb::Customer, Status> {
        let request = pb::DeleteCustomerRequest {
            name: name.to_owned(),
            ..Default::default()
        };
        let response = self.client.clone().delete_customer(request).await;
        response.map(tonic::Response::into_inner)
    }

    /// UndeleteCustomer of `name` (no etag), over gRPC with the all-scopes token.
    pub async fn undelete_customer(&self, name: &str) -> Result<pb::Customer, Status> {
        let request = pb::UndeleteCustomerRequest {
            name: name.to_owned(),
            ..Default::default()
        };
        let response = self.client.clone().undelete_customer(request).await;
        response.map(tonic::Response::into_inner)
    }

    /// Creates a customer with a unique email and returns it.
    pub async fn create(&self, given: &str, family: &str) -> pb::Customer {
        self.register(new_customer(given, family)).await
    }

    /// Creates `customer` (which must be valid) and returns it as stored.
    pub async fn register(&self, customer: pb::Customer) -> pb::Customer {
        self.create_customer(customer)
            .await
            .expect("create customer")
    }

    /// CreateCustomer of `customer` (no request id), over gRPC with the all-scopes token.
    pub async fn create_customer(&self, customer: pb::Customer) -> Result<pb::Customer, Status> {
        let request = pb::CreateCustomerRequest {
            duplicate_policy: 0,
            customer: Some(customer),
            request_id: String::new(),
        };
        let response = self.client.clone().create_customer(request).await;
        response.map(tonic::Response::into_inner)
    }
}

impl TestApp {
    /// `authorization` header value for the all-scopes token.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// A client sending `authorization: <value>` (or nothing for `None`).
    pub fn client_with(&self, authorization: Option<&str>) -> Client {
        let bearer = Bearer(authorization.map(|value| value.parse().expect("header value")));
        CustomerServiceClient::with_interceptor(self.channel.clone(), bearer)
    }
}

/// The NATS server with JetStream the event tests publish through: `NATS_URL` (make test
/// provides one). Fails, never skips, without it.
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| {
        panic!(
            "NATS_URL is not set: the event tests need a NATS server with JetStream. \
             Run them with `make test`, which finds or starts one (scripts/ensure-nats.sh)."
        )
    })
}

/// HS256 secret of the test servers.
pub const TEST_SECRET: &str = "integration-test-secret-0123456789abcdef";

/// A bearer token (`Bearer …`) with exactly `granted` scopes, for the default test server.
pub fn scoped(granted: &[&str]) -> String {
    let mut settings = ServeSettings::for_database("unused");
    settings.auth.jwt_hs256_secret = Some(TEST_SECRET.into());
    format!("Bearer {}", mint(&settings, "scoped", granted))
}

/// `GET http://{app}{path}` over HTTP/1.1 with `headers`: status, headers and whole body.
pub async fn http_get(
    app: &TestApp,
    path: &str,
    headers: &[(&str, &str)],
) -> (http::StatusCode, http::HeaderMap, bytes::Bytes) {
    http_request(app, http::Method::GET, path, headers, bytes::Bytes::new()).await
}

/// A request to `http://{app}{path}` over HTTP/1.1 with `headers` and `body`: status,
/// headers and whole body of the answer.
pub async fn http_request(
    app: &TestApp,
    method: http::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: bytes::Bytes,
) -> (http::StatusCode, http::HeaderMap, bytes::Bytes) {
    use http_body_util::{BodyExt, Full};
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", app.addr));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(request.body(Full::new(body)).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

/// A file under `tests/fixtures`.
pub fn fixture(path: &str) -> String {
    format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"))
}

/// An HS256 token for the test server's settings.
pub fn mint(settings: &ServeSettings, subject: &str, granted: &[&str]) -> String {
    let granted: Vec<String> = granted.iter().map(|s| (*s).to_owned()).collect();
    customer_api::auth::jwt::mint_hs256(
        &settings.auth.jwt(),
        subject,
        &granted,
        Duration::from_secs(3600),
    )
    .expect("mint test token")
}

/// The generated client with a bearer-token interceptor.
pub type Client = CustomerServiceClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization` to every call (or nothing).
#[derive(Clone)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl Bearer {
    fn new(token: &str) -> Self {
        Self(Some(
            format!("Bearer {token}").parse().expect("token is ASCII"),
        ))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

static NEXT_EMAIL: AtomicUsize = AtomicUsize::new(0);

/// A valid new customer with a unique email.
pub fn new_customer(given: &str, family: &str) -> pb::Customer {
    let n = NEXT_EMAIL.fetch_add(1, Ordering::SeqCst);
    pb::Customer {
        given_name: given.into(),
        family_name: family.into(),
        email: format!(
            "{}.{}.{n}@example.com",
            given.to_lowercase(),
            family.to_lowercase()
        ),
        ..Default::default()
    }
}

/// The rich error details of a status.
pub fn details(status: &Status) -> ErrorDetails {
    status.get_error_details()
}

/// Asserts `status` is INVALID_ARGUMENT listing exactly `fields` (in order) with `reason`.
pub fn assert_invalid(status: &Status, reason: &str, fields: &[&str]) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let details = details(status);
    let info = details.error_info().expect("ErrorInfo detail");
    assert_eq!(info.reason, reason);
    assert_eq!(info.domain, "customer.example.com");
    let got: Vec<&str> = details
        .bad_request()
        .expect("BadRequest detail")
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(got, fields, "{status:?}");
}

/// Asserts the status code and `ErrorInfo.reason`.
pub fn assert_reason(status: &Status, code: Code, reason: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    let details = details(status);
    let info = details.error_info().expect("ErrorInfo detail");
    assert_eq!(info.reason, reason, "{status:?}");
    assert_eq!(info.domain, "customer.example.com");
}

/// The label map type of the generated code.
pub fn labels(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect()
}

/// Sessions of the test database in state `state` (e.g. `idle in transaction`).
pub async fn sessions_in_state(app: &TestApp, state: &str) -> i64 {
    app.count(
        "pg_stat_activity",
        &format!("datname = '{}' AND state = '{state}'", app.database_name),
    )
    .await
}

/// Polls `condition` every 10 ms until it holds; panics after 1,000 looks. For waiting on
/// state another process owns (PostgreSQL sessions), where no event can be awaited. Bounded
/// by a count, not a clock: a loaded machine makes it slower, not a failure.
pub async fn eventually<F, Fut>(what: &str, condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    until_reached(&format!("waiting until {what}"), 1000, condition).await;
}

/// Polls `condition` until it holds, at most `attempts` times with a 10 ms pause between
/// two looks; panics naming `what` after the last. For state another process owns
/// (PostgreSQL sessions) that the test cannot await: bounded by a count of looks, so a loaded
/// machine makes it slower, never wrong in another way.
pub async fn until_reached<F, Fut>(what: &str, attempts: u32, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..attempts {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: not reached after {attempts} looks");
}

/// Sessions of the test database running a statement on `table` (other than the asking
/// one): `active`, whether executing or waiting for a lock.
pub async fn active_statements_on(app: &TestApp, table: &str) -> i64 {
    app.count(
        "pg_stat_activity",
        &format!(
            "datname = '{}' AND pid <> pg_backend_pid() AND state = 'active' \
             AND query ILIKE '%from \"{table}\"%'",
            app.database_name
        ),
    )
    .await
}

/// Sessions of the test database waiting for a lock.
pub async fn sessions_waiting_for_locks(app: &TestApp) -> i64 {
    app.count(
        "pg_stat_activity",
        &format!(
            "datname = '{}' AND wait_event_type = 'Lock'",
            app.database_name
        ),
    )
    .await
}

/// Holds `FOR UPDATE` on a customer row in an open transaction until dropped/committed.
pub async fn lock_customer(app: &TestApp, name: &str) -> AsyncPgConnection {
    let mut conn = app.db().await;
    let id = name.strip_prefix("customers/").expect("customer name");
    conn.batch_execute(&format!(
        "BEGIN; SELECT 1 FROM customers WHERE id = '{id}' FOR UPDATE"
    ))
    .await
    .expect("lock row");
    conn
}

/// The `host:port` of a postgres URL.
pub fn authority(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.split(['/', '?']).next().unwrap_or(rest);
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    }
}

/// A TCP proxy in front of PostgreSQL that a test can cut, to play "database down".
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    upstream: String,
    stop: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// A proxy on a free port.
    pub async fn start(upstream: &str) -> Self {
        Self::start_at("127.0.0.1:0".parse().expect("addr"), upstream).await
    }

    /// A proxy on `addr` (to come back on the same port).
    pub async fn start_at(addr: SocketAddr, upstream: &str) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let target = upstream.to_owned();
        let task = tokio::spawn(async move {
            let mut stopped_accepting = stopped.clone();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((mut client, _)) = accepted else { continue };
                        let target = target.clone();
                        let mut stopped = stopped.clone();
                        tokio::spawn(async move {
                            let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else { return };
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                                _ = stopped.changed() => {}
                            }
                        });
                    }
                    _ = stopped_accepting.changed() => return,
                }
            }
        });
        Self {
            addr,
            upstream: upstream.to_owned(),
            stop,
            task,
        }
    }

    /// Closes the listener and every proxied connection; returns what restarts it.
    pub async fn cut(self) -> (SocketAddr, String) {
        let _ = self.stop.send(true);
        self.task.await.expect("proxy task");
        (self.addr, self.upstream)
    }

    /// `url` routed through this proxy.
    pub fn route(&self, url: &str) -> String {
        url.replacen(&authority(url), &self.addr.to_string(), 1)
    }
}

/// One unary gRPC call over a plain HTTP/2 client (no tonic client-side behaviour such as
/// its own deadline timer): returns the status the server sent.
pub async fn raw_grpc_status(
    app: &TestApp,
    method: &str,
    message: &impl prost::Message,
    headers: &[(&str, &str)],
) -> Status {
    use http_body_util::{BodyExt, Full};
    let body = message.encode_to_vec();
    let mut framed = vec![0_u8];
    framed.extend_from_slice(&u32::try_from(body.len()).expect("small").to_be_bytes());
    framed.extend_from_slice(&body);
    let mut request = http::Request::post(format!(
        "http://{}/customer.v1.CustomerService/{method}",
        app.addr
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .header("authorization", app.bearer());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<bytes::Bytes>>();
    let response = client
        .request(
            request
                .body(Full::new(bytes::Bytes::from(framed)))
                .expect("request"),
        )
        .await
        .expect("HTTP/2 call");
    if let Some(status) = Status::from_header_map(response.headers()) {
        return status;
    }
    let collected = response.into_body().collect().await.expect("body");
    let trailers = collected.trailers().cloned().unwrap_or_default();
    Status::from_header_map(&trailers).unwrap_or_else(|| Status::ok(""))
}

/// The overall status (`ServingStatus` as a number) the gRPC health service reports over
/// `channel`.
pub async fn health_status(channel: &Channel) -> Result<i32, Status> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let mut health = HealthClient::new(channel.clone());
    let response = health.check(HealthCheckRequest::default()).await;
    response.map(|response| response.into_inner().status)
}

/// Sessions of the test database (other than the one asking) that are running a statement
/// or waiting for a lock.
pub async fn busy_sessions(app: &TestApp) -> i64 {
    app.count(
        "pg_stat_activity",
        &format!(
            "datname = '{}' AND pid <> pg_backend_pid() \
             AND (state = 'active' OR wait_event_type = 'Lock' OR state = 'idle in transaction')",
            app.database_name
        ),
    )
    .await
}

/// A test tool `make tools` installs under `target/tools/` (pinned, from PyPI or npm), by its
/// path in the repository; fails, naming the fix, when it is missing (tests never skip).
pub fn tool(path: &str) -> std::path::PathBuf {
    let tool = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    assert!(
        tool.exists(),
        "{} is missing: run `make tools` (`make test` does it first)",
        tool.display()
    );
    tool
}

/// A scratch directory under cargo's per-target tmp dir, removed when dropped.
pub struct Scratch(pub std::path::PathBuf);

impl Scratch {
    /// A new empty directory named after `label`.
    pub fn new(label: &str) -> Self {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{label}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
