//! `make chaos`: the standing fault-injection suite.
//!
//! One run starts its own PostgreSQL cluster and `nats-server -js` (never the developer's),
//! migrates a database, and starts the real `customer-api` binary over them. A watcher
//! (`WatchCustomerEvents` from the start, reconnecting with its last `resume_token` whenever
//! its stream ends) runs through the whole run. Then, in order of importance:
//!
//! 1. **locked table**: `LOCK TABLE customers IN ACCESS EXCLUSIVE MODE`, 8 then 24 reads with
//!    a 300 ms deadline abandoned on it, then 4 patient reads; readiness stays up, the
//!    abandoned statements are cancelled, the patient reads answer right after the unlock;
//! 2. **PostgreSQL restart**, `fast` and `immediate`, under idempotent write load (clients
//!    retry with the same `request_id`);
//! 3. **server `kill -9`** three times under write load, restarted at once;
//! 4. **NATS outage** (broker killed for 3 s under write load) and **broker killed during
//!    catch-up** of a backlog;
//! 5. **races**: the same email ×32, the same etag ×16, the same request id ×16, a company
//!    deleted while 120 customers are created in it;
//! 6. **PostgreSQL stopped 15 s**: calls answer UNAVAILABLE fast, readiness goes down and
//!    comes back, the watch stays open;
//! 7. **SIGTERM drain**: new connections refused at once, the call in flight finishes, exit 0.
//!
//! At the end: every acknowledged write is stored exactly once (one row, one event per request
//! id), every event is in JetStream exactly once in per-customer order, the watcher saw the
//! whole log in order without gap or repeat, and no client ever saw INTERNAL. A summary table
//! gives each scenario's measured recovery and its bound; `docs/reliability.md` quotes it.
//! Logs stay under `target/tmp/chaos-<pid>/` when the run fails.

// Tests fail by panicking; `expect` messages would only repeat the line.
#![allow(clippy::unwrap_used)]

mod procs;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
    panic::AssertUnwindSafe,
    path::PathBuf,
    process::ExitCode,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_nats::jetstream;
use customer_api::{
    db,
    pb::{self, customer_service_client::CustomerServiceClient},
};
use diesel::{
    QueryableByName,
    sql_types::{BigInt, Text},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use futures_util::{FutureExt, StreamExt};
use tokio::{sync::watch, task::JoinHandle};
use tonic::{
    Code, Request, Status,
    metadata::{Ascii, MetadataValue},
    transport::{Channel, Endpoint},
};
use uuid::Uuid;

use crate::procs::{Nats, Postgres, Server, http_get, until};

/// Writers of the load.
const WRITERS: usize = 4;
/// Deadline of one load attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts of one write before the run fails (with 50 ms pauses: outlasts every outage here).
const MAX_ATTEMPTS: u32 = 400;

/// A client of the service with the run's token.
#[derive(Clone)]
struct Api {
    client: CustomerServiceClient<Channel>,
    bearer: MetadataValue<Ascii>,
}

impl Api {
    fn new(addr: SocketAddr, token: &str) -> Self {
        // Lazy: reconnects by itself after the server was killed.
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect_timeout(Duration::from_secs(1))
            .connect_lazy();
        Self {
            client: CustomerServiceClient::new(channel),
            bearer: format!("Bearer {token}").parse().expect("ascii token"),
        }
    }

    fn request<T>(&self, message: T, timeout: Duration) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(timeout);
        request
            .metadata_mut()
            .insert("authorization", self.bearer.clone());
        request
    }

    async fn create(
        &self,
        customer: pb::Customer,
        request_id: &str,
        timeout: Duration,
    ) -> Result<pb::Customer, Status> {
        let request = self.request(
            pb::CreateCustomerRequest {
                duplicate_policy: 0,
                customer: Some(customer),
                request_id: request_id.to_owned(),
            },
            timeout,
        );
        self.client
            .clone()
            .create_customer(request)
            .await
            .map(tonic::Response::into_inner)
    }

    async fn get(&self, name: &str, timeout: Duration) -> Result<pb::Customer, Status> {
        let request = self.request(
            pb::GetCustomerRequest {
                name: name.to_owned(),
                ..Default::default()
            },
            timeout,
        );
        self.client
            .clone()
            .get_customer(request)
            .await
            .map(tonic::Response::into_inner)
    }
}

fn customer(given: &str, family: &str, email: &str) -> pb::Customer {
    pb::Customer {
        given_name: given.into(),
        family_name: family.into(),
        email: email.into(),
        ..Default::default()
    }
}

/// Codes no client may ever see, counted over the whole run.
#[derive(Default)]
struct Codes {
    seen: Mutex<BTreeMap<String, u64>>,
}

impl Codes {
    fn saw(&self, status: &Status) {
        *self
            .seen
            .lock()
            .unwrap()
            .entry(format!("{:?}", status.code()))
            .or_default() += 1;
    }

    fn internal(&self) -> u64 {
        self.seen
            .lock()
            .unwrap()
            .get("Internal")
            .copied()
            .unwrap_or(0)
    }
}

/// Acknowledged creates of one load: (request id, customer name).
type Ledger = Vec<(String, String)>;

/// Idempotent write load: writers creating customers of family `family`, each write retried
/// with its request id until acknowledged.
struct Load {
    family: String,
    stop: watch::Sender<bool>,
    writers: Vec<JoinHandle<Ledger>>,
    acks: Arc<Mutex<Vec<Instant>>>,
    retries: Arc<AtomicU64>,
}

impl Load {
    fn start(api: &Api, codes: &Arc<Codes>, family: &str) -> Self {
        let (stop, stopped) = watch::channel(false);
        let acks = Arc::new(Mutex::new(Vec::new()));
        let retries = Arc::new(AtomicU64::new(0));
        let writers = (0..WRITERS)
            .map(|writer| {
                let (api, codes, acks, retries) =
                    (api.clone(), codes.clone(), acks.clone(), retries.clone());
                let (family, stopped) = (family.to_owned(), stopped.clone());
                tokio::spawn(async move {
                    let mut ledger = Ledger::new();
                    for n in 0.. {
                        if *stopped.borrow() {
                            break;
                        }
                        let request_id = Uuid::new_v4().to_string();
                        let email =
                            format!("{}.{writer}.{n}@chaos.example.com", family.to_lowercase());
                        let body = customer("Load", &family, &email);
                        let mut attempt = 0;
                        let created = loop {
                            attempt += 1;
                            match api.create(body.clone(), &request_id, ATTEMPT_TIMEOUT).await {
                                Ok(created) => break created,
                                Err(status) => {
                                    codes.saw(&status);
                                    assert!(
                                        matches!(
                                            status.code(),
                                            Code::Unavailable
                                                | Code::DeadlineExceeded
                                                | Code::Cancelled
                                                | Code::Unknown
                                        ),
                                        "a write failed for good: {status:?}"
                                    );
                                    assert!(
                                        attempt < MAX_ATTEMPTS,
                                        "{request_id}: {attempt} attempts, last {status:?}"
                                    );
                                    retries.fetch_add(1, Ordering::Relaxed);
                                    tokio::time::sleep(Duration::from_millis(50)).await;
                                }
                            }
                        };
                        acks.lock().unwrap().push(Instant::now());
                        ledger.push((request_id, created.name));
                    }
                    ledger
                })
            })
            .collect();
        Self {
            family: family.to_owned(),
            stop,
            writers,
            acks,
            retries,
        }
    }

    /// Waits until `n` more writes were acknowledged.
    async fn until_acked(&self, n: usize) {
        let target = self.acks.lock().unwrap().len() + n;
        until(
            "the load makes progress",
            Duration::from_secs(60),
            || async { (self.acks.lock().unwrap().len() >= target).then_some(()) },
        )
        .await;
    }

    /// Stops the writers (each finishes its write) and returns what was acknowledged, the
    /// longest time without any acknowledgement after `since`, and the retries.
    async fn finish(self, since: Instant) -> (String, Ledger, Duration, u64) {
        self.stop.send_replace(true);
        let mut ledger = Ledger::new();
        for writer in self.writers {
            ledger.extend(writer.await.expect("writer"));
        }
        let mut acks: Vec<Instant> = self
            .acks
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|t| *t >= since)
            .collect();
        acks.sort();
        let mut gap = Duration::ZERO;
        let mut last = since;
        for ack in acks {
            gap = gap.max(ack - last);
            last = ack;
        }
        (
            self.family,
            ledger,
            gap,
            AtomicU64::load(&self.retries, Ordering::Relaxed),
        )
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Pair {
    #[diesel(sql_type = Text)]
    a: String,
    #[diesel(sql_type = Text)]
    b: String,
}

#[derive(QueryableByName)]
struct EventRow {
    #[diesel(sql_type = Text)]
    event_id: String,
    #[diesel(sql_type = Text)]
    aggregate: String,
    #[diesel(sql_type = BigInt)]
    sequence: i64,
}

async fn connect(url: &str) -> AsyncPgConnection {
    db::Connector::from_url(url)
        .expect("url")
        .connect(false)
        .await
        .expect("connect to the chaos database")
}

async fn count(url: &str, sql: &str) -> i64 {
    let mut conn = connect(url).await;
    diesel::sql_query(sql)
        .get_result::<Count>(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .n
}

/// Every acknowledged create of `family` is stored exactly once: one row per request id and
/// one `CustomerRegistered` event per request id, and nothing else of that family.
async fn assert_exactly_once(url: &str, family: &str, ledger: &Ledger) {
    let rows = count(
        url,
        &format!("SELECT count(*) AS n FROM customers WHERE family_name = '{family}'"),
    )
    .await;
    assert_eq!(
        rows as usize,
        ledger.len(),
        "{family}: one row per acknowledged create"
    );
    let mut conn = connect(url).await;
    let events: Vec<Pair> = diesel::sql_query(format!(
        "SELECT e.request_id::text AS a, e.aggregate AS b FROM events e \
         WHERE e.event_type = 'CustomerRegistered' AND e.aggregate IN \
         (SELECT 'customers/' || id FROM customers WHERE family_name = '{family}')"
    ))
    .load(&mut conn)
    .await
    .expect("events of the family");
    let stored: HashMap<String, String> =
        events.iter().map(|p| (p.a.clone(), p.b.clone())).collect();
    assert_eq!(
        stored.len(),
        events.len(),
        "{family}: one event per request id"
    );
    let acknowledged: HashMap<String, String> = ledger.iter().cloned().collect();
    assert_eq!(acknowledged.len(), ledger.len(), "distinct request ids");
    assert_eq!(
        stored, acknowledged,
        "{family}: the events are the acknowledged creates"
    );
}

/// One row of the summary.
struct Row {
    scenario: String,
    observed: String,
    recovery: Duration,
    bound: Duration,
}

struct Run {
    started: Instant,
    dir: PathBuf,
    rows: Vec<Row>,
    codes: Arc<Codes>,
}

impl Run {
    fn step(&self, what: &str) {
        println!("[{:6.1}s] {what}", self.started.elapsed().as_secs_f64());
    }

    fn record(&mut self, scenario: &str, observed: String, recovery: Duration, bound: Duration) {
        self.step(&format!(
            "{scenario}: {observed}; recovery {recovery:.2?} (bound {bound:?})"
        ));
        self.rows.push(Row {
            scenario: scenario.to_owned(),
            observed,
            recovery,
            bound,
        });
    }
}

/// The watcher: follows `customers/-` from the start, resuming with its last token.
struct Watcher {
    seen: Arc<Mutex<Vec<String>>>,
    resumes: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Watcher {
    fn start(api: &Api, codes: &Arc<Codes>) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let resumes = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let (api, codes, seen, resumes) =
                (api.clone(), codes.clone(), seen.clone(), resumes.clone());
            async move {
                let mut token = String::new();
                loop {
                    let mut request = Request::new(pb::WatchCustomerEventsRequest {
                        parent: "customers/-".into(),
                        start_after: token.clone(),
                    });
                    request
                        .metadata_mut()
                        .insert("authorization", api.bearer.clone());
                    match api.client.clone().watch_customer_events(request).await {
                        Ok(stream) => {
                            let mut stream = stream.into_inner();
                            loop {
                                match stream.message().await {
                                    Ok(Some(event)) => {
                                        token = event.resume_token.clone();
                                        seen.lock().unwrap().push(event.event_id);
                                    }
                                    Ok(None) => break,
                                    Err(status) => {
                                        codes.saw(&status);
                                        assert!(
                                            !matches!(
                                                status.code(),
                                                Code::Internal
                                                    | Code::OutOfRange
                                                    | Code::InvalidArgument
                                            ),
                                            "the watch failed: {status:?}"
                                        );
                                        break;
                                    }
                                }
                            }
                        }
                        Err(status) => codes.saw(&status),
                    }
                    resumes.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        Self {
            seen,
            resumes,
            task,
        }
    }

    /// Events received so far.
    fn seen(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// libtest's conventions, for cargo and cargo-nextest: the suite is one test, `chaos`, listed
/// like any other. `make test` leaves it out by the nextest profile's `default-filter`
/// (.config/nextest.toml: it starts and kills its own servers for about a minute, so it runs
/// alone); `make chaos` runs it (`cargo test --test chaos`).
fn selected(args: &[String]) -> Option<bool> {
    if args.iter().any(|arg| arg == "--list") {
        // cargo-nextest lists the ignored tests separately (`--list --ignored`): there are none.
        if !args.iter().any(|arg| arg == "--ignored") {
            println!("chaos: test");
        }
        return None;
    }
    if args.iter().any(|arg| arg == "--ignored") {
        return Some(false);
    }
    let mut filters = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--test-threads" | "--skip" | "--format" | "--color" | "-Z" => {
                rest.next();
            }
            flag if flag.starts_with('-') => {}
            filter => filters.push(filter),
        }
    }
    Some(filters.is_empty() || filters.iter().any(|filter| "chaos".contains(filter)))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match selected(&args) {
        None => return ExitCode::SUCCESS,
        Some(false) => {
            println!("chaos: 0 passed, 0 failed, 0 ignored, 1 filtered out");
            return ExitCode::SUCCESS;
        }
        Some(true) => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = runtime.block_on(chaos());
    runtime.shutdown_timeout(Duration::from_secs(5));
    code
}

async fn chaos() -> ExitCode {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("chaos-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("work directory");
    let mut run = Run {
        started: Instant::now(),
        dir: dir.clone(),
        rows: Vec::new(),
        codes: Arc::default(),
    };
    let outcome = AssertUnwindSafe(scenarios(&mut run)).catch_unwind().await;
    print_summary(&run);
    match outcome {
        Ok(()) => {
            let _ = std::fs::remove_dir_all(&dir);
            println!("chaos: PASS ({:.1}s)", run.started.elapsed().as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(_) => {
            println!("chaos: FAIL (logs under {})", run.dir.display());
            ExitCode::FAILURE
        }
    }
}

fn print_summary(run: &Run) {
    println!();
    println!("| scenario | observed | recovery | bound | |");
    println!("|---|---|---|---|---|");
    for row in &run.rows {
        let pass = if row.recovery <= row.bound {
            "pass"
        } else {
            "FAIL"
        };
        println!(
            "| {} | {} | {:.2} s | {} s | {pass} |",
            row.scenario,
            row.observed,
            row.recovery.as_secs_f64(),
            row.bound.as_secs_f64()
        );
    }
    let seen = run.codes.seen.lock().unwrap();
    println!("client-side codes of failed calls (retried): {seen:?}");
}

async fn scenarios(run: &mut Run) {
    run.step("starting a private PostgreSQL and nats-server");
    let pg = Postgres::start(&run.dir);
    let mut nats = Nats::start(&run.dir).await;
    let url = pg.url("customer_api_chaos");
    let suffix = Uuid::new_v4().simple().to_string();
    let stream = format!("CHAOS_{suffix}");
    let env: Vec<(String, String)> = [
        ("DATABASE_URL", url.as_str()),
        ("JWT_HS256_SECRET", "chaos-suite-secret-0123456789abcdef"),
        ("NATS_URL", &nats.url()),
        ("NATS_STREAM", &stream),
        ("NATS_SUBJECT_PREFIX", &format!("chaos.{suffix}.events")),
        ("HEALTH_PROBE_INTERVAL", "100ms"),
        ("RATE_LIMIT_RPS", "0"),
        ("SHUTDOWN_DRAIN_TIMEOUT", "10s"),
        ("PAGE_TOKEN_KEY", "chaos suite page token key 0123456789"),
        ("RUST_LOG", "warn"),
        ("NO_COLOR", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let mut server = Server::new("the server", run.dir.join("server.log"), env);
    server.run(&["migrate"]);
    let token = server.run(&[
        "token",
        "--scopes",
        "customers.read customers.write",
        "--ttl",
        "1h",
    ]);
    server.start();
    server.wait_ready().await;
    let api = Api::new(server.addr, &token);
    let watcher = Watcher::start(&api, &run.codes);
    let mut ledgers: Vec<(String, Ledger)> = Vec::new();

    locked_table(run, &api, &watcher, &url, server.addr).await;

    for mode in ["fast", "immediate"] {
        let load = Load::start(&api, &run.codes, &format!("Restart{mode}"));
        load.until_acked(100).await;
        let since = Instant::now();
        tokio::task::block_in_place(|| {
            pg.stop(mode);
            pg.start_again();
        });
        load.until_acked(100).await;
        let (family, ledger, gap, retries) = load.finish(since).await;
        assert_exactly_once(&url, &family, &ledger).await;
        let bound = if mode == "fast" { 10 } else { 15 };
        run.record(
            &format!("PostgreSQL restart -m {mode} under write load"),
            format!(
                "{} creates acknowledged, each stored once; {retries} retries",
                ledger.len()
            ),
            gap,
            Duration::from_secs(bound),
        );
        ledgers.push((family, ledger));
    }

    {
        let load = Load::start(&api, &run.codes, "Killed");
        let since = Instant::now();
        let mut worst = Duration::ZERO;
        for _ in 0..3 {
            load.until_acked(100).await;
            let killed = Instant::now();
            server.kill().await;
            server.start();
            load.until_acked(1).await;
            worst = worst.max(killed.elapsed());
        }
        load.until_acked(50).await;
        let (family, ledger, gap, retries) = load.finish(since).await;
        assert_exactly_once(&url, &family, &ledger).await;
        run.record(
            "server kill -9 ×3 under write load, restarted",
            format!("{} creates acknowledged, each stored once; {retries} retries; longest gap {gap:.2?}", ledger.len()),
            worst,
            Duration::from_secs(15),
        );
        ledgers.push((family, ledger));
    }

    nats_outage(run, &api, &url, &mut nats, &mut ledgers, server.addr).await;
    races(run, &api, &url).await;
    postgres_stopped(run, &api, &pg, server.addr, &watcher).await;
    sigterm_drain(run, &api, &url, &mut server).await;

    run.step("restarting the server for the final checks");
    server.start();
    server.wait_ready().await;
    let total = count(&url, "SELECT count(*) AS n FROM events").await as usize;
    let started = Instant::now();
    until(
        "the watcher has seen every event",
        Duration::from_secs(60),
        || async { (watcher.seen.lock().unwrap().len() >= total).then_some(()) },
    )
    .await;
    let caught_up = started.elapsed();
    watcher.task.abort();
    let mut conn = connect(&url).await;
    let rows: Vec<EventRow> = diesel::sql_query(
        "SELECT event_id::text AS event_id, aggregate, sequence FROM events ORDER BY position",
    )
    .load(&mut conn)
    .await
    .expect("events");
    let seen = watcher.seen.lock().unwrap().clone();
    let stored: Vec<String> = rows.iter().map(|r| r.event_id.clone()).collect();
    assert_eq!(
        seen, stored,
        "the watcher saw every event once, in commit order"
    );
    run.record(
        "watch across every fault above (resumed with its last token)",
        format!(
            "{} events seen exactly once in order over {} streams",
            seen.len(),
            AtomicU64::load(&watcher.resumes, Ordering::Relaxed) + 1
        ),
        caught_up,
        Duration::from_secs(10),
    );

    for (family, ledger) in &ledgers {
        assert_exactly_once(&url, family, ledger).await;
    }
    let started = Instant::now();
    until(
        "every event is published",
        Duration::from_secs(60),
        || async {
            (count(
                &url,
                "SELECT count(*) AS n FROM events WHERE publish_time IS NULL",
            )
            .await
                == 0)
                .then_some(())
        },
    )
    .await;
    let drained = started.elapsed();
    assert_published_exactly_once(&nats.url(), &stream, &rows).await;
    run.record(
        "JetStream: every event exactly once, per-customer order",
        format!("{} events", rows.len()),
        drained,
        Duration::from_secs(30),
    );
    let internal = run.codes.internal();
    assert_eq!(internal, 0, "no client ever sees INTERNAL");
    for row in &run.rows {
        assert!(
            row.recovery <= row.bound,
            "{}: {:?} > {:?}",
            row.scenario,
            row.recovery,
            row.bound
        );
    }
    server.stop().await;
    nats.kill().await;
    let _ = server.log();
}

async fn assert_published_exactly_once(nats_url: &str, stream: &str, rows: &[EventRow]) {
    let js = jetstream::new(
        async_nats::connect(nats_url)
            .await
            .expect("connect to NATS"),
    );
    let mut handle = js.get_stream(stream).await.expect("the stream exists");
    let messages = handle.info().await.expect("stream info").state.messages;
    assert_eq!(messages as usize, rows.len(), "one message per event");
    let mut ids = HashSet::new();
    let mut last: HashMap<String, i64> = HashMap::new();
    let expected: HashMap<&str, (&str, i64)> = rows
        .iter()
        .map(|r| (r.event_id.as_str(), (r.aggregate.as_str(), r.sequence)))
        .collect();
    for sequence in 1..=messages {
        let message = handle.get_raw_message(sequence).await.expect("message");
        let header = |name: &str| {
            message
                .headers
                .get(name)
                .unwrap_or_else(|| panic!("header {name}"))
                .as_str()
                .to_owned()
        };
        let id = header("ce-id");
        let subject = header("ce-subject");
        let event_sequence: i64 = header("ce-sequence").parse().expect("ce-sequence");
        assert!(ids.insert(id.clone()), "{id} published twice");
        assert_eq!(
            expected.get(id.as_str()),
            Some(&(subject.as_str(), event_sequence)),
            "{id}"
        );
        let previous = last.insert(subject.clone(), event_sequence);
        assert_eq!(
            event_sequence,
            previous.unwrap_or(0) + 1,
            "{subject}: per-resource order"
        );
    }
    js.delete_stream(stream).await.expect("delete the stream");
}

/// Sessions running a statement on `customers` (other than the asking one).
async fn active_on_customers(url: &str) -> i64 {
    count(
        url,
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
         AND pid <> pg_backend_pid() AND state = 'active' AND query ILIKE '%from \"customers\"%'",
    )
    .await
}

async fn locked_table(run: &mut Run, api: &Api, watcher: &Watcher, url: &str, addr: SocketAddr) {
    let target = api
        .create(
            customer("Locked", "Table", "locked.table@chaos.example.com"),
            "",
            Duration::from_secs(10),
        )
        .await
        .expect("create");
    // The watch reads each new event's customer (is it soft-deleted? its history is then
    // redacted). Delivered under the lock, the registration would add the watch's statement
    // to the ones counted on the locked table; the scenario counts only reads it sends itself.
    until(
        "the watcher has the target's registration",
        Duration::from_secs(10),
        || async { (watcher.seen() == 1).then_some(()) },
    )
    .await;
    let mut worst = Duration::ZERO;
    let mut abandoned_total = 0;
    for abandoned in [8, 24] {
        let mut lock = connect(url).await;
        lock.batch_execute("BEGIN; LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
            .await
            .expect("lock");
        let answers = futures_util::future::join_all(
            (0..abandoned).map(|_| api.get(&target.name, Duration::from_millis(300))),
        )
        .await;
        for answer in &answers {
            let status = answer.as_ref().expect_err("the table is locked");
            assert!(
                matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
                "{status:?}"
            );
        }
        abandoned_total += abandoned;
        until(
            "the abandoned statements are cancelled",
            Duration::from_secs(10),
            || async { (active_on_customers(url).await == 0).then_some(()) },
        )
        .await;
        let ready = http_get(addr, "/readyz").await.map(|(status, _)| status);
        assert_eq!(
            ready,
            Some(200),
            "readiness stays up while a table is locked"
        );
        let patient = futures_util::future::join_all(
            (0..4).map(|_| api.get(&target.name, Duration::from_secs(60))),
        );
        let released = async {
            until(
                "the patient reads wait for the table",
                Duration::from_secs(10),
                || async { (active_on_customers(url).await == 4).then_some(()) },
            )
            .await;
            lock.batch_execute("COMMIT").await.expect("unlock");
            Instant::now()
        };
        let (answers, unlocked) = tokio::join!(
            async {
                let answers = patient.await;
                (answers, Instant::now())
            },
            released
        );
        let (answers, answered) = answers;
        for answer in answers {
            assert_eq!(answer.expect("answered after the unlock"), target);
        }
        worst = worst.max(answered.saturating_duration_since(unlocked));
    }
    run.record(
        "locked table: reads abandoned at a 300 ms deadline, then 4 patient reads",
        format!("{abandoned_total} abandoned reads cancelled; /readyz 200 while locked"),
        worst,
        Duration::from_secs(1),
    );
}

async fn nats_outage(
    run: &mut Run,
    api: &Api,
    url: &str,
    nats: &mut Nats,
    ledgers: &mut Vec<(String, Ledger)>,
    addr: SocketAddr,
) {
    let unpublished = || {
        count(
            url,
            "SELECT count(*) AS n FROM events WHERE publish_time IS NULL",
        )
    };
    // The broker dies under write load: writes go on.
    let load = Load::start(api, &run.codes, "BrokerDown");
    load.until_acked(50).await;
    nats.kill().await;
    let since = Instant::now();
    load.until_acked(300).await;
    let (family, ledger, gap, _) = load.finish(since).await;
    assert_exactly_once(url, &family, &ledger).await;
    let backlog = unpublished().await;
    nats.start_again().await;
    let restarted = Instant::now();
    until(
        "the backlog is published",
        Duration::from_secs(60),
        || async { (unpublished().await == 0).then_some(()) },
    )
    .await;
    let drained = restarted.elapsed();
    assert!(
        gap < Duration::from_secs(1),
        "writes never wait for the broker: {gap:?}"
    );
    run.record(
        "NATS killed under write load, then restarted",
        format!(
            "{} writes during the outage, longest gap {gap:.2?}; backlog of {backlog} published",
            ledger.len()
        ),
        drained,
        Duration::from_secs(30),
    );
    ledgers.push((family, ledger));

    // The broker dies again while the relay catches up with a backlog.
    nats.kill().await;
    let load = Load::start(api, &run.codes, "CatchUp");
    load.until_acked(600).await;
    let (family, ledger, _, _) = load.finish(Instant::now()).await;
    let backlog = unpublished().await;
    nats.start_again().await;
    until(
        "the relay is catching up",
        Duration::from_secs(30),
        || async { (unpublished().await < backlog).then_some(()) },
    )
    .await;
    nats.kill().await;
    let left = unpublished().await;
    nats.start_again().await;
    let restarted = Instant::now();
    until(
        "the rest of the backlog is published",
        Duration::from_secs(60),
        || async { (unpublished().await == 0).then_some(()) },
    )
    .await;
    let drained = restarted.elapsed();
    let health = http_get(addr, "/healthz/events")
        .await
        .map(|(status, _)| status);
    assert_eq!(health, Some(200));
    run.record(
        "NATS killed during catch-up of a backlog",
        format!("backlog {backlog}, {left} left at the kill, all published"),
        drained,
        Duration::from_secs(30),
    );
    ledgers.push((family, ledger));
}

async fn races(run: &mut Run, api: &Api, url: &str) {
    let started = Instant::now();
    let codes_of = |results: &[Result<(), Status>]| {
        let mut codes: BTreeMap<String, usize> = BTreeMap::new();
        for result in results {
            let code = match result {
                Ok(()) => "Ok".to_owned(),
                Err(status) => format!("{:?}", status.code()),
            };
            *codes.entry(code).or_default() += 1;
        }
        codes
    };
    let timeout = Duration::from_secs(30);

    // The same email ×32: one wins.
    let email = "race.email@chaos.example.com";
    let results: Vec<Result<(), Status>> = futures_util::future::join_all((0..32).map(|i| {
        api.create(
            customer(&format!("Racer{i}"), "RaceEmail", email),
            "",
            timeout,
        )
        .map(|r| r.map(drop))
    }))
    .await;
    let email_codes = codes_of(&results);
    assert_eq!(
        email_codes,
        BTreeMap::from([("AlreadyExists".to_owned(), 31), ("Ok".to_owned(), 1)])
    );

    // The same etag ×16: one wins, the others are ABORTED.
    let target = api
        .create(
            customer("Etag", "RaceEtag", "race.etag@chaos.example.com"),
            "",
            timeout,
        )
        .await
        .expect("create");
    let results: Vec<Result<(), Status>> = futures_util::future::join_all((0..16).map(|i| {
        let request = api.request(
            pb::UpdateCustomerRequest {
                customer: Some(pb::Customer {
                    name: target.name.clone(),
                    given_name: format!("Etag{i}"),
                    etag: target.etag.clone(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["given_name".into()],
                }),
                request_id: String::new(),
                allow_missing: false,
            },
            timeout,
        );
        let mut client = api.client.clone();
        async move { client.update_customer(request).await.map(drop) }
    }))
    .await;
    assert_eq!(
        codes_of(&results),
        BTreeMap::from([("Aborted".to_owned(), 15), ("Ok".to_owned(), 1)])
    );

    // The same request id ×16: one create, sixteen identical answers.
    let request_id = Uuid::new_v4().to_string();
    let body = customer("Same", "RaceRequest", "race.request@chaos.example.com");
    let results = futures_util::future::join_all(
        (0..16).map(|_| api.create(body.clone(), &request_id, timeout)),
    )
    .await;
    let names: HashSet<String> = results
        .into_iter()
        .map(|r| r.expect("every retry is answered").name)
        .collect();
    assert_eq!(names.len(), 1, "one customer");
    assert_eq!(
        count(
            url,
            "SELECT count(*) AS n FROM customers WHERE family_name = 'RaceRequest'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            url,
            &format!("SELECT count(*) AS n FROM events WHERE request_id = '{request_id}'")
        )
        .await,
        1
    );

    // A company deleted while 120 customers are created in it: never a live customer of a
    // deleted company.
    let mut company_client = api.client.clone();
    let company = company_client
        .create_company(api.request(
            pb::CreateCompanyRequest {
                duplicate_policy: 0,
                company: Some(pb::Company {
                    display_name: "Race Ltd".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            timeout,
        ))
        .await
        .expect("create company")
        .into_inner();
    let answered = AtomicU64::new(0);
    // Eight at a time, so the delete gets a pooled connection while creates still come.
    let creates = futures_util::stream::iter((0..120).map(|i| {
        let mut body = customer(
            "Member",
            "RaceCompany",
            &format!("race.company.{i}@chaos.example.com"),
        );
        body.company = company.name.clone();
        let answered = &answered;
        api.create(body, "", timeout).map(move |r| {
            answered.fetch_add(1, Ordering::SeqCst);
            r.map(drop)
        })
    }))
    .buffer_unordered(8)
    .collect::<Vec<_>>();
    // Forced: the delete detaches the members that committed before it, and a create that
    // commits after it must be refused; none may end up in a deleted company.
    // Sent once half the creates were answered: the rest race it.
    let delete = async {
        until(
            "half the creates are answered",
            Duration::from_secs(30),
            || async { (AtomicU64::load(&answered, Ordering::SeqCst) >= 60).then_some(()) },
        )
        .await;
        let mut client = api.client.clone();
        client
            .delete_company(api.request(
                pb::DeleteCompanyRequest {
                    name: company.name.clone(),
                    force: true,
                    ..Default::default()
                },
                timeout,
            ))
            .await
            .map(drop)
    };
    let (created, deleted) = tokio::join!(creates, delete);
    let create_codes = codes_of(&created);
    for code in create_codes.keys() {
        assert!(
            ["Ok", "InvalidArgument"].contains(&code.as_str()),
            "{create_codes:?}"
        );
    }
    let live_members = count(
        url,
        &format!(
            "SELECT count(*) AS n FROM customers WHERE company = '{}' AND delete_time IS NULL",
            company.name
        ),
    )
    .await;
    assert!(deleted.is_ok(), "{deleted:?}");
    assert_eq!(live_members, 0, "no live customer of a deleted company");
    let refused = create_codes.get("InvalidArgument").copied().unwrap_or(0);
    run.record(
        "races: email ×32, etag ×16, request id ×16, company delete vs 120 creates",
        format!(
            "1 winner each; request id: 1 row, 1 event; forced company delete: {} creates \
             before it (detached), {refused} refused after it, 0 live members",
            120 - refused
        ),
        started.elapsed(),
        Duration::from_secs(30),
    );
}

async fn postgres_stopped(
    run: &mut Run,
    api: &Api,
    pg: &Postgres,
    addr: SocketAddr,
    watcher: &Watcher,
) {
    let target = api
        .create(
            customer("Outage", "Stopped", "outage.stopped@chaos.example.com"),
            "",
            Duration::from_secs(10),
        )
        .await
        .expect("create");
    let resumes = AtomicU64::load(&watcher.resumes, Ordering::Relaxed);
    tokio::task::block_in_place(|| pg.stop("fast"));
    let stopped = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut calls = 0;
    let mut not_ready = false;
    while stopped.elapsed() < Duration::from_secs(15) {
        let asked = Instant::now();
        let status = api
            .get(&target.name, Duration::from_secs(10))
            .await
            .expect_err("PostgreSQL is stopped");
        slowest = slowest.max(asked.elapsed());
        run.codes.saw(&status);
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        calls += 1;
        not_ready |= http_get(addr, "/readyz").await.map(|(status, _)| status) == Some(503);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        not_ready,
        "/readyz answered 503 while PostgreSQL was stopped"
    );
    tokio::task::block_in_place(|| pg.start_again());
    let started = Instant::now();
    until("reads succeed again", Duration::from_secs(30), || async {
        api.get(&target.name, Duration::from_secs(2)).await.ok()
    })
    .await;
    let recovered = started.elapsed();
    until(
        "/readyz answers 200 again",
        Duration::from_secs(30),
        || async {
            (http_get(addr, "/readyz").await.map(|(status, _)| status) == Some(200)).then_some(())
        },
    )
    .await;
    let watch_resumes = AtomicU64::load(&watcher.resumes, Ordering::Relaxed) - resumes;
    run.record(
        "PostgreSQL stopped 15 s",
        format!(
            "{calls} calls UNAVAILABLE, slowest answer {slowest:.2?}; /readyz 503 then 200; \
             the watch was resumed {watch_resumes} times"
        ),
        recovered,
        Duration::from_secs(5),
    );
    assert!(
        slowest < Duration::from_secs(3),
        "UNAVAILABLE within ~2 s: {slowest:?}"
    );
}

async fn sigterm_drain(run: &mut Run, api: &Api, url: &str, server: &mut Server) {
    let target = api
        .create(
            customer("Drain", "Sigterm", "drain.sigterm@chaos.example.com"),
            "",
            Duration::from_secs(10),
        )
        .await
        .expect("create");
    let mut lock = connect(url).await;
    let id = target.name.trim_start_matches("customers/");
    lock.batch_execute(&format!(
        "BEGIN; SELECT 1 FROM customers WHERE id = '{id}' FOR UPDATE"
    ))
    .await
    .expect("lock the row");
    let in_flight = {
        let request = api.request(
            pb::UpdateCustomerRequest {
                customer: Some(pb::Customer {
                    name: target.name.clone(),
                    given_name: "Drained".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["given_name".into()],
                }),
                request_id: String::new(),
                allow_missing: false,
            },
            Duration::from_secs(60),
        );
        let mut client = api.client.clone();
        tokio::spawn(async move { client.update_customer(request).await })
    };
    until(
        "the update waits for the row",
        Duration::from_secs(10),
        || async {
            (count(
                url,
                "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock'",
            )
            .await
                == 1)
                .then_some(())
        },
    )
    .await;
    let signalled = Instant::now();
    server.terminate();
    until(
        "new connections are refused",
        Duration::from_secs(10),
        || async {
            tokio::net::TcpStream::connect(server.addr)
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
    let refused = signalled.elapsed();
    lock.batch_execute("COMMIT").await.expect("unlock");
    let updated = in_flight
        .await
        .expect("call task")
        .expect("the call in flight finishes");
    assert_eq!(updated.into_inner().given_name, "Drained");
    let exit = server.wait_exit(Duration::from_secs(20)).await;
    let exited = signalled.elapsed();
    assert_eq!(exit.code(), Some(0), "exit 0 after draining");
    run.record(
        "SIGTERM drain with a call in flight",
        format!("new connections refused after {refused:.3?}; the call in flight finished; exit 0"),
        exited,
        Duration::from_secs(12),
    );
}
