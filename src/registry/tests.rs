//! The client against a registry of the test's own: a tiny HTTP/1.1 responder on
//! 127.0.0.1:0 that answers from a script and counts the requests it receives. Time for the
//! cache and the breaker is a [`ManualClock`]; only timeouts and backoff (a millisecond in
//! these configurations) use real time.

#![allow(clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::{Semaphore, watch},
};

use super::*;
use crate::service::{Error, error::reason};

/// What the fake registry does with one request.
#[derive(Clone)]
enum Reply {
    /// This status and JSON body.
    Json(u16, String),
    /// This status, empty body.
    Status(u16),
    /// Wait, then reply.
    After(Duration, Box<Reply>),
    /// Wait until the test adds a permit, then reply.
    Gate(Arc<Semaphore>, Box<Reply>),
    /// Close the connection without answering.
    Hangup,
}

/// One request as the registry saw it.
#[derive(Debug, Clone)]
struct Seen {
    target: String,
    authorization: Option<String>,
}

struct FakeRegistry {
    addr: SocketAddr,
    count: watch::Receiver<usize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeRegistry {
    /// Serves until the test's runtime ends; `script(n)` answers the n-th request (from 0).
    async fn start(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (count_tx, count) = watch::channel(0usize);
        let count_tx = Arc::new(count_tx);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(script);
        let seen_by_server = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let (count_tx, seen, script) =
                    (count_tx.clone(), seen_by_server.clone(), script.clone());
                tokio::spawn(async move {
                    let Some(request) = read_head(&mut socket).await else {
                        return;
                    };
                    seen.lock().unwrap().push(request);
                    let mut n = 0;
                    count_tx.send_modify(|count| {
                        n = *count;
                        *count += 1;
                    });
                    let mut reply = script(n);
                    loop {
                        match reply {
                            Reply::After(delay, next) => {
                                tokio::time::sleep(delay).await;
                                reply = *next;
                            }
                            Reply::Gate(gate, next) => {
                                let _permit = gate.acquire().await.unwrap();
                                reply = *next;
                            }
                            Reply::Hangup => return,
                            Reply::Status(status) => {
                                write_response(&mut socket, status, "").await;
                                return;
                            }
                            Reply::Json(status, body) => {
                                write_response(&mut socket, status, &body).await;
                                return;
                            }
                        }
                    }
                });
            }
        });
        Self { addr, count, seen }
    }

    /// Requests received so far.
    fn requests(&self) -> usize {
        *self.count.borrow()
    }

    /// Waits (at most 5 s) until `n` requests have arrived.
    async fn wait_for_requests(&self, n: usize) {
        let mut count = self.count.clone();
        tokio::time::timeout(Duration::from_secs(5), count.wait_for(|c| *c >= n))
            .await
            .expect("the registry received the requests in time")
            .unwrap();
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn template(&self) -> UrlTemplate {
        UrlTemplate::parse(&format!(
            "http://{}/v1/businesses/{{business_id}}?format=json",
            self.addr
        ))
        .unwrap()
    }
}

async fn read_head(socket: &mut tokio::net::TcpStream) -> Option<Seen> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = socket.read(&mut chunk).await.ok()?;
        if read == 0 || buffer.len() > 16 * 1024 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    let head = String::from_utf8_lossy(&buffer);
    let mut lines = head.split("\r\n");
    let target = lines.next()?.split(' ').nth(1)?.to_owned();
    let authorization = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("authorization")
            .then(|| value.trim().to_owned())
    });
    Some(Seen {
        target,
        authorization,
    })
}

async fn write_response(socket: &mut tokio::net::TcpStream, status: u16, body: &str) {
    let response = format!(
        "HTTP/1.1 {status} Scripted\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // The client may have given up already (timeouts): nothing to do then.
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}

const ACME: &str = r#"{"business_id":"GB-1","legal_name":"Acme Widgets Ltd","status":"active",
    "address":{"lines":["1 High Street","Floor 2"],"locality":"London","region":"",
               "postal_code":"EC1A 1BB","country_code":"gb"}}"#;

fn ok() -> Reply {
    Reply::Json(200, ACME.into())
}

/// A good answer, long after any test's timeout.
fn slow() -> Reply {
    Reply::After(Duration::from_secs(30), Box::new(ok()))
}

fn minimal() -> Reply {
    Reply::Json(
        200,
        r#"{"legal_name":"Some Business","status":"active"}"#.into(),
    )
}

/// Settings for fast tests: short timeout, 1 ms backoff, a breaker that stays out of the way
/// unless a test lowers its threshold.
fn config(registry: &FakeRegistry) -> RegistryConfig {
    let mut config = RegistryConfig::new(registry.template());
    config.timeout = Duration::from_millis(300);
    config.retries = 2;
    config.retry_backoff = Duration::from_millis(1);
    config.breaker_threshold = 100;
    config.breaker_cooldown = Duration::from_secs(30);
    config
}

/// [`config`] with 100 ms per attempt and one retry, for a [`slow`] registry.
fn impatient(registry: &FakeRegistry) -> RegistryConfig {
    RegistryConfig {
        timeout: Duration::from_millis(100),
        retries: 1,
        ..config(registry)
    }
}

fn client(config: RegistryConfig, clock: &ManualClock) -> RegistryClient {
    RegistryClient::with_parts(config, HttpClient::new().unwrap(), Arc::new(clock.clone())).unwrap()
}

#[tokio::test]
async fn a_lookup_maps_the_registry_answer_and_sends_the_encoded_id_and_token() {
    let registry = FakeRegistry::start(|n| if n == 0 { ok() } else { minimal() }).await;
    let mut config = config(&registry);
    config.token = Some("registry-token".into());
    let client = client(config, &ManualClock::new());
    let before = Utc::now();

    let info = client.lookup("GB-1").await.unwrap();

    assert_eq!(info.business_id, "GB-1");
    assert_eq!(info.legal_name, "Acme Widgets Ltd");
    assert_eq!(info.registration_status, RegistrationStatus::Active);
    let address = info.address.unwrap();
    assert_eq!(address.lines, ["1 High Street", "Floor 2"]);
    assert_eq!(address.locality, "London");
    assert_eq!(address.postal_code, "EC1A 1BB");
    assert_eq!(address.country_code, "GB");
    assert_eq!(info.source, "127.0.0.1");
    assert!(before <= info.fetch_time && info.fetch_time <= Utc::now());

    client.lookup("GB/2.x").await.unwrap();
    let seen = registry.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].target, "/v1/businesses/GB-1?format=json");
    assert_eq!(seen[1].target, "/v1/businesses/GB%2F2.x?format=json");
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some("Bearer registry-token")
    );
}

#[tokio::test]
async fn the_source_is_the_configured_registry_name() {
    let registry = FakeRegistry::start(|_| minimal()).await;
    let mut config = config(&registry);
    config.name = Some("Companies Register".into());
    let info = client(config, &ManualClock::new())
        .lookup("GB-1")
        .await
        .unwrap();
    assert_eq!(info.source, "Companies Register");
    assert_eq!(
        registry.seen()[0].authorization,
        None,
        "no token, no header"
    );
}

#[tokio::test]
async fn repeated_lookups_are_served_from_the_cache_until_the_ttl_ends() {
    let registry = FakeRegistry::start(|_| ok()).await;
    let clock = ManualClock::new();
    let mut config = config(&registry);
    config.cache_ttl = Duration::from_secs(3600);
    let client = client(config, &clock);

    let first = client.lookup("GB-1").await.unwrap();
    clock.advance(Duration::from_secs(3599));
    let second = client.lookup("GB-1").await.unwrap();
    assert_eq!(registry.requests(), 1, "a cache hit makes no request");
    assert_eq!(second, first, "the cached answer keeps its fetch time");

    clock.advance(Duration::from_secs(1));
    let third = client.lookup("GB-1").await.unwrap();
    assert_eq!(registry.requests(), 2, "an expired entry is fetched again");
    assert!(third.fetch_time >= first.fetch_time);
}

#[tokio::test]
async fn a_zero_ttl_disables_the_cache() {
    let registry = FakeRegistry::start(|_| ok()).await;
    let mut config = config(&registry);
    config.cache_ttl = Duration::ZERO;
    let client = client(config, &ManualClock::new());
    client.lookup("GB-1").await.unwrap();
    client.lookup("GB-1").await.unwrap();
    assert_eq!(registry.requests(), 2);
}

#[tokio::test]
async fn the_cache_is_bounded() {
    let registry = FakeRegistry::start(|_| minimal()).await;
    let clock = ManualClock::new();
    let mut config = config(&registry);
    config.cache_capacity = 2;
    let client = client(config, &clock);

    for id in ["A-1", "A-2", "A-3"] {
        client.lookup(id).await.unwrap();
        clock.advance(Duration::from_secs(1));
    }
    let held = lock(&client.inner.as_ref().unwrap().cache).len();
    assert_eq!(held, 2);
    client.lookup("A-3").await.unwrap();
    client.lookup("A-2").await.unwrap();
    assert_eq!(registry.requests(), 3, "the two newest are cached");
    client.lookup("A-1").await.unwrap();
    assert_eq!(registry.requests(), 4, "the oldest was evicted");
}

#[tokio::test]
async fn not_found_is_not_retried_and_is_cached_briefly() {
    let registry = FakeRegistry::start(|_| Reply::Json(404, r#"{"error":"no"}"#.into())).await;
    let clock = ManualClock::new();
    let mut config = config(&registry);
    config.negative_cache_ttl = Duration::from_secs(60);
    config.breaker_threshold = 1;
    let client = client(config, &clock);

    assert_eq!(client.lookup("GB-404").await, Err(RegistryError::NotFound));
    assert_eq!(registry.requests(), 1, "a 404 is final");
    assert_eq!(client.lookup("GB-404").await, Err(RegistryError::NotFound));
    assert_eq!(registry.requests(), 1, "answered from the negative cache");
    assert_eq!(
        client.breaker_state(),
        Some(BreakerState::Closed),
        "a 404 is an answer, not a failure"
    );

    clock.advance(Duration::from_secs(60));
    assert_eq!(client.lookup("GB-404").await, Err(RegistryError::NotFound));
    assert_eq!(registry.requests(), 2);
}

#[tokio::test]
async fn server_errors_are_retried_a_bounded_number_of_times() {
    for (status, retries) in [(500, 2), (503, 0)] {
        let registry = FakeRegistry::start(move |_| Reply::Status(status)).await;
        let mut config = config(&registry);
        config.retries = retries;
        let client = client(config, &ManualClock::new());
        let failed = Err(RegistryError::Status(status));
        let attempts = 1 + retries as usize;

        assert_eq!(client.lookup("GB-1").await, failed);
        assert_eq!(
            registry.requests(),
            attempts,
            "one attempt, {retries} retries"
        );
        assert_eq!(client.lookup("GB-1").await, failed);
        assert_eq!(registry.requests(), 2 * attempts, "failures are not cached");
    }
}

#[tokio::test]
async fn client_errors_are_never_retried() {
    for (status, expected) in [
        (400, RegistryError::Rejected(400)),
        (401, RegistryError::Rejected(401)),
        (403, RegistryError::Rejected(403)),
        (410, RegistryError::NotFound),
        (429, RegistryError::Status(429)),
        (302, RegistryError::Rejected(302)),
    ] {
        let registry = FakeRegistry::start(move |_| Reply::Status(status)).await;
        let client = client(config(&registry), &ManualClock::new());
        assert_eq!(client.lookup("GB-1").await, Err(expected), "HTTP {status}");
        assert_eq!(registry.requests(), 1, "HTTP {status} is not retried");
    }
}

#[tokio::test]
async fn a_slow_registry_times_out_per_attempt_and_is_retried() {
    let registry = FakeRegistry::start(|_| slow()).await;
    let client = client(impatient(&registry), &ManualClock::new());

    let started = Instant::now();
    let result = client.lookup("GB-1").await;
    let elapsed = started.elapsed();

    assert_eq!(
        result,
        Err(RegistryError::Timeout(Duration::from_millis(100)))
    );
    assert_eq!(registry.requests(), 2, "one attempt and one retry");
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn dropped_connections_are_retried() {
    let registry = FakeRegistry::start(|_| Reply::Hangup).await;
    let client = client(config(&registry), &ManualClock::new());
    let error = client.lookup("GB-1").await.unwrap_err();
    assert!(matches!(error, RegistryError::Connection(_)), "{error:?}");
    assert_eq!(registry.requests(), 3);
}

#[tokio::test]
async fn a_refused_connection_is_unavailable() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let template = UrlTemplate::parse(&format!("http://{addr}/{{business_id}}")).unwrap();
    let mut config = RegistryConfig::new(template);
    config.retry_backoff = Duration::from_millis(1);
    let error = client(config, &ManualClock::new())
        .lookup("GB-1")
        .await
        .unwrap_err();
    assert!(matches!(error, RegistryError::Connection(_)), "{error:?}");
    let status = tonic::Status::from(error.into_service_error("GB-1"));
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(
        !status.message().contains("127.0.0.1"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_registry_that_recovers_within_the_retries_answers() {
    let registry = FakeRegistry::start(|n| if n < 2 { Reply::Status(502) } else { ok() }).await;
    let client = client(config(&registry), &ManualClock::new());
    let info = client.lookup("GB-1").await.unwrap();
    assert_eq!(info.legal_name, "Acme Widgets Ltd");
    assert_eq!(registry.requests(), 3);
    assert_eq!(client.breaker_state(), Some(BreakerState::Closed));
}

#[tokio::test]
async fn malformed_answers_are_unavailable_not_retried_and_not_echoed() {
    let bodies = [
        "<html><body>Jane Roe, 1 Secret Lane</body></html>",
        r#"["Jane Roe"]"#,
        r#"{"status":"active","address":{"lines":["1 Secret Lane"],"country_code":"GB"}}"#,
        r#"{"legal_name":{"first":"Jane","last":"Roe"},"status":"active"}"#,
        r#"{"legal_name":"Jane Roe","status":["active"]}"#,
        r#"{"legal_name":"Jane Roe","status":"active","address":{"lines":"1 Secret Lane","country_code":"GB"}}"#,
        r#"{"legal_name":"Jane Roe","status":"active","address":{"lines":["1 Secret Lane"],"country_code":"Roeland"}}"#,
        r#"{"legal_name":"Jane Roe","status":"active","business_id":"SOMEONE-ELSE"}"#,
        r#"{"legal_name":"Jane Roe","#,
        "",
    ];
    for body in bodies {
        let body_for_server = body.to_owned();
        let registry =
            FakeRegistry::start(move |_| Reply::Json(200, body_for_server.clone())).await;
        let client = client(config(&registry), &ManualClock::new());

        let error = client.lookup("GB-1").await.unwrap_err();

        assert!(
            matches!(error, RegistryError::Malformed(_)),
            "{body}: {error:?}"
        );
        assert_eq!(registry.requests(), 1, "{body}: not retried");
        let text = error.to_string();
        assert!(!text.contains("Roe") && !text.contains("Secret"), "{text}");
        let status = tonic::Status::from(error.into_service_error("GB-1"));
        assert_eq!(status.code(), tonic::Code::Unavailable, "{body}");
        assert!(!status.message().contains("Roe"), "{}", status.message());
    }
}

#[tokio::test]
async fn an_oversized_answer_is_malformed() {
    let huge = format!(
        r#"{{"legal_name":"Acme","status":"active","padding":"{}"}}"#,
        "x".repeat(MAX_RESPONSE_BYTES)
    );
    let registry = FakeRegistry::start(move |_| Reply::Json(200, huge.clone())).await;
    let client = client(config(&registry), &ManualClock::new());
    let error = client.lookup("GB-1").await.unwrap_err();
    assert!(
        matches!(&error, RegistryError::Malformed(detail) if detail.contains("exceeds")),
        "{error:?}"
    );
    assert_eq!(registry.requests(), 1);
}

/// Every log line of this test binary from the moment the first test asks for it, through the
/// production subscriber (`telemetry::dispatch`) at DEBUG.
///
/// Global rather than scoped to one test: tracing caches a callsite's interest when the
/// callsite is first hit, and with a single scoped dispatcher a hit on another test's thread
/// caches "never" for everyone. A global dispatcher sees every thread, and the lines of other
/// registry tests (whose answers also carry names and addresses) are checked as well.
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    use std::sync::OnceLock;

    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let dispatch = crate::telemetry::dispatch(
            crate::config::LogFormat::Text,
            tracing_subscriber::EnvFilter::new("debug"),
            Capture(logs.clone()),
        );
        tracing::dispatcher::set_global_default(dispatch)
            .expect("no other test installs a global subscriber");
        logs
    })
}

/// The text without ANSI colour sequences (`ESC [ … m`).
fn strip_ansi(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

#[tokio::test]
async fn failures_are_logged_without_the_answer_or_the_id() {
    let logs = captured_logs();
    let registry = FakeRegistry::start(|n| {
        if n == 0 {
            Reply::Status(500)
        } else {
            Reply::Json(
                200,
                r#"{"legal_name":"Jane Roe","status":"active","address":{"lines":["1 Secret Lane"],"country_code":"XX"}}"#
                    .into(),
            )
        }
    })
    .await;
    let mut config = config(&registry);
    config.name = Some("registry-under-log-test".into());
    let client = client(config, &ManualClock::new());
    let error = client.lookup("SOLE-TRADER-77").await.unwrap_err();
    assert!(matches!(error, RegistryError::Malformed(_)), "{error:?}");

    let logged = strip_ansi(&String::from_utf8(logs.lock().unwrap().clone()).unwrap());
    let ours: Vec<&str> = logged
        .lines()
        .filter(|line| line.contains("registry-under-log-test"))
        .collect();
    assert_eq!(ours.len(), 1, "one warning for the failed lookup: {logged}");
    assert!(ours[0].contains("WARN"), "{}", ours[0]);
    assert!(
        ours[0].contains("business registry lookup failed"),
        "{}",
        ours[0]
    );
    assert!(ours[0].contains("attempts=2"), "{}", ours[0]);
    assert!(ours[0].contains("address.country_code"), "{}", ours[0]);
    assert!(
        logged.contains("retrying"),
        "the retried 500 is logged at DEBUG: {logged}"
    );
    for secret in ["Jane", "Roe", "Secret", "SOLE-TRADER-77", "XX", "Acme"] {
        assert!(!logged.contains(secret), "`{secret}` was logged: {logged}");
    }
}

/// A registry that fails every request with 500, and a client on `clock` whose breaker opens
/// on its first lookup (three attempts, threshold three) for 30 s.
async fn failing_registry(clock: &ManualClock) -> (FakeRegistry, RegistryClient) {
    let registry = FakeRegistry::start(|_| Reply::Status(500)).await;
    let mut config = config(&registry);
    config.retries = 2;
    config.breaker_threshold = 3;
    config.breaker_cooldown = Duration::from_secs(30);
    let client = client(config, clock);
    (registry, client)
}

#[tokio::test]
async fn the_breaker_opens_after_consecutive_failures_and_then_answers_without_requests() {
    let clock = ManualClock::new();
    let (registry, client) = failing_registry(&clock).await;

    assert_eq!(client.lookup("GB-1").await, Err(RegistryError::Status(500)));
    assert_eq!(registry.requests(), 3);
    assert_eq!(client.breaker_state(), Some(BreakerState::Open));

    let started = Instant::now();
    for id in ["GB-1", "GB-2", "GB-3"] {
        let error = client.lookup(id).await.unwrap_err();
        assert_eq!(error, RegistryError::CircuitOpen(Duration::from_secs(30)));
    }
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(registry.requests(), 3, "an open breaker sends nothing");

    clock.advance(Duration::from_secs(10));
    let error = client.lookup("GB-1").await.unwrap_err();
    assert_eq!(error, RegistryError::CircuitOpen(Duration::from_secs(20)));
    let status = tonic::Status::from(error.into_service_error("GB-1"));
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(registry.requests(), 3);
}

#[tokio::test]
async fn the_breaker_stops_retries_once_it_opens() {
    let registry = FakeRegistry::start(|_| Reply::Status(500)).await;
    let mut config = config(&registry);
    config.retries = 5;
    config.breaker_threshold = 2;
    let client = client(config, &ManualClock::new());
    assert_eq!(client.lookup("GB-1").await, Err(RegistryError::Status(500)));
    assert_eq!(
        registry.requests(),
        2,
        "the third attempt was refused by the breaker"
    );
}

#[tokio::test]
async fn a_half_open_probe_that_succeeds_closes_the_breaker() {
    // Flapping: four failures, then healthy.
    let registry =
        FakeRegistry::start(|n| if n < 4 { Reply::Status(503) } else { minimal() }).await;
    let clock = ManualClock::new();
    let mut config = config(&registry);
    config.retries = 1;
    config.breaker_threshold = 4;
    let client = client(config, &clock);

    client.lookup("GB-1").await.unwrap_err();
    client.lookup("GB-1").await.unwrap_err();
    assert_eq!(registry.requests(), 4);
    assert_eq!(client.breaker_state(), Some(BreakerState::Open));

    clock.advance(Duration::from_secs(30));
    let info = client.lookup("GB-1").await.unwrap();
    assert_eq!(info.legal_name, "Some Business");
    assert_eq!(registry.requests(), 5, "one probe");
    assert_eq!(client.breaker_state(), Some(BreakerState::Closed));

    client.lookup("GB-2").await.unwrap();
    assert_eq!(registry.requests(), 6, "closed again: requests flow");
}

#[tokio::test]
async fn a_failed_probe_reopens_the_breaker_without_retrying() {
    let clock = ManualClock::new();
    let (registry, client) = failing_registry(&clock).await;
    client.lookup("GB-1").await.unwrap_err();
    assert_eq!(registry.requests(), 3);

    clock.advance(Duration::from_secs(30));
    assert_eq!(client.lookup("GB-1").await, Err(RegistryError::Status(500)));
    assert_eq!(registry.requests(), 4, "exactly one probe, no retries");
    assert_eq!(client.breaker_state(), Some(BreakerState::Open));
    assert!(matches!(
        client.lookup("GB-1").await,
        Err(RegistryError::CircuitOpen(_))
    ));
    assert_eq!(registry.requests(), 4);
}

#[tokio::test]
async fn a_slow_registry_opens_the_breaker_and_later_lookups_answer_fast() {
    let registry = FakeRegistry::start(|_| slow()).await;
    let config = RegistryConfig {
        breaker_threshold: 2,
        ..impatient(&registry)
    };
    let client = client(config, &ManualClock::new());

    client.lookup("GB-1").await.unwrap_err();
    assert_eq!(registry.requests(), 2);

    let started = Instant::now();
    let error = client.lookup("GB-2").await.unwrap_err();
    assert!(matches!(error, RegistryError::CircuitOpen(_)), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "faster than one timeout"
    );
    assert_eq!(registry.requests(), 2);
}

#[tokio::test]
async fn a_cancelled_probe_lets_the_next_lookup_probe() {
    let gate = Arc::new(Semaphore::new(0));
    let gate_for_server = gate.clone();
    let registry = FakeRegistry::start(move |n| match n {
        0 => Reply::Status(500),
        1 => Reply::Gate(gate_for_server.clone(), Box::new(ok())),
        _ => ok(),
    })
    .await;
    let clock = ManualClock::new();
    let mut config = config(&registry);
    config.retries = 0;
    config.breaker_threshold = 1;
    config.timeout = Duration::from_secs(10);
    let client = client(config, &clock);
    client.lookup("GB-1").await.unwrap_err();
    clock.advance(Duration::from_secs(30));

    let probe = tokio::spawn({
        let client = client.clone();
        async move { client.lookup("GB-1").await }
    });
    registry.wait_for_requests(2).await;
    assert_eq!(client.breaker_state(), Some(BreakerState::HalfOpen));
    probe.abort();
    assert!(probe.await.unwrap_err().is_cancelled());

    let info = client.lookup("GB-1").await.unwrap();
    assert_eq!(info.legal_name, "Acme Widgets Ltd");
    assert_eq!(registry.requests(), 3);
    assert_eq!(client.breaker_state(), Some(BreakerState::Closed));
    gate.add_permits(1);
}

#[tokio::test]
async fn concurrent_lookups_of_one_id_share_one_request() {
    let gate = Arc::new(Semaphore::new(0));
    let gate_for_server = gate.clone();
    let registry =
        FakeRegistry::start(move |_| Reply::Gate(gate_for_server.clone(), Box::new(ok()))).await;
    let mut config = config(&registry);
    config.timeout = Duration::from_secs(10);
    let client = client(config, &ManualClock::new());

    let lookups: Vec<_> = (0..10)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.lookup("GB-1").await })
        })
        .collect();
    registry.wait_for_requests(1).await;
    tokio::time::timeout(Duration::from_secs(5), async {
        while client.waiting("GB-1") < 10 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("all ten lookups joined the one in flight");
    gate.add_permits(1);

    for lookup in lookups {
        assert_eq!(
            lookup.await.unwrap().unwrap().legal_name,
            "Acme Widgets Ltd"
        );
    }
    assert_eq!(registry.requests(), 1);
    assert_eq!(client.waiting("GB-1"), 0, "the flight is gone");
}

#[tokio::test]
async fn invalid_ids_are_refused_without_a_request() {
    let registry = FakeRegistry::start(|_| ok()).await;
    let client = client(config(&registry), &ManualClock::new());
    let too_long = "x".repeat(65);
    for id in [
        "",
        "has space",
        "..",
        ".",
        "ümlaut",
        "a?b",
        "a#b",
        too_long.as_str(),
    ] {
        let error = client.lookup(id).await.unwrap_err();
        assert!(
            matches!(error, RegistryError::InvalidId(_)),
            "{id}: {error:?}"
        );
        let status = tonic::Status::from(error.into_service_error(id));
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{id}");
    }
    assert_eq!(registry.requests(), 0);
}

#[tokio::test]
async fn an_unconfigured_client_answers_failed_precondition() {
    let client = RegistryClient::disabled();
    assert!(!client.is_configured());
    assert_eq!(client.breaker_state(), None);
    let error = client.lookup("GB-1").await.unwrap_err();
    assert_eq!(error, RegistryError::NotConfigured);
    assert!(matches!(
        client.lookup("not valid").await,
        Err(RegistryError::InvalidId(_))
    ));

    match error.into_service_error("GB-1") {
        Error::FailedPrecondition {
            reason: r,
            resource_type,
            resource_name,
            message,
        } => {
            assert_eq!(r, reason::REGISTRY_NOT_CONFIGURED);
            assert_eq!(resource_type, BUSINESS_TYPE);
            assert_eq!(resource_name, "businesses/GB-1");
            assert!(
                message.contains("no business registry is configured"),
                "{message}"
            );
        }
        other => panic!("expected FAILED_PRECONDITION, got {other:?}"),
    }
    let disabled = RegistryClient::from_config(None).unwrap();
    assert!(!disabled.is_configured());
}

#[test]
fn registry_errors_map_to_service_errors() {
    let not_found = RegistryError::NotFound.into_service_error("GB-1");
    assert!(matches!(
        &not_found,
        Error::NotFound { resource_type, resource_name }
            if *resource_type == BUSINESS_TYPE && resource_name == "businesses/GB-1"
    ));
    assert_eq!(tonic::Status::from(not_found).code(), tonic::Code::NotFound);

    for error in [
        RegistryError::Timeout(Duration::from_secs(2)),
        RegistryError::Connection("connection refused".into()),
        RegistryError::Status(503),
        RegistryError::Status(429),
        RegistryError::Malformed("`legal_name` is missing".into()),
    ] {
        match error.clone().into_service_error("GB-1") {
            Error::Unavailable {
                reason: r,
                retry_after,
                ..
            } => {
                assert_eq!(r, reason::REGISTRY_UNAVAILABLE, "{error:?}");
                assert_eq!(retry_after, Duration::from_secs(1), "{error:?}");
            }
            other => panic!("{error:?} became {other:?}"),
        }
    }
    match RegistryError::CircuitOpen(Duration::from_secs(12)).into_service_error("GB-1") {
        Error::Unavailable { retry_after, .. } => {
            assert_eq!(retry_after, Duration::from_secs(12));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        RegistryError::Rejected(401).into_service_error("GB-1"),
        Error::Internal { .. }
    ));
    assert!(matches!(
        RegistryError::InvalidId("bad".into()).into_service_error("x y"),
        Error::InvalidArgument { ref violations, .. } if violations[0].field == "name"
    ));
}

#[test]
fn only_transient_failures_are_retried_and_only_registry_faults_trip_the_breaker() {
    use RegistryError::*;
    let cases = [
        (Timeout(Duration::from_secs(1)), true, true),
        (Connection("reset".into()), true, true),
        (Status(500), true, true),
        (Status(599), true, true),
        (Status(429), false, true),
        (Malformed("x".into()), false, true),
        (NotFound, false, false),
        (Rejected(400), false, false),
        (InvalidId("x".into()), false, false),
        (NotConfigured, false, false),
        (CircuitOpen(Duration::from_secs(1)), false, false),
    ];
    for (error, retryable, failure) in cases {
        assert_eq!(error.is_retryable(), retryable, "{error:?}");
        assert_eq!(error.is_registry_failure(), failure, "{error:?}");
    }
}

#[test]
fn backoff_doubles_with_jitter_and_is_capped() {
    let template = UrlTemplate::parse("http://127.0.0.1:9/{business_id}").unwrap();
    let mut config = RegistryConfig::new(template);
    config.retry_backoff = Duration::from_millis(100);
    let client = client(config, &ManualClock::new());
    let inner = client.inner.as_ref().unwrap();
    for (attempt, full) in [(1, 100), (2, 200), (3, 400), (10, 5000), (40, 5000)] {
        let full = Duration::from_millis(full);
        for _ in 0..20 {
            let delay = inner.backoff(attempt);
            assert!(delay >= full / 2 && delay <= full, "{attempt}: {delay:?}");
        }
    }
}
