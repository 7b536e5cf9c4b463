//! `make cluster-test`: several replicas behave as one service.
//!
//! Three replicas of the real `customer-api` binary (no PAGE_TOKEN_KEY: they share the key the
//! first one stores in the database) run over one fresh PostgreSQL database (created by
//! `customer-api migrate`, as a deployment's migration job does, and dropped at the end) and
//! one NATS JetStream stream and subject prefix of this run's own, behind HAProxy (gRPC over
//! h2c and REST over HTTP/1.1 on one frontend, `/readyz` health checks). Six clients (three
//! gRPC, three REST) create, update, read and page through their customers while:
//!
//! 1. the relay leader is killed with `kill -9`: calls in flight fail and are retried with the
//!    same `request_id`; another replica takes the relay lease;
//! 2. another replica gets SIGTERM: its `/readyz` turns 503 while it still serves
//!    (`SHUTDOWN_DELAY`), HAProxy takes it out, no request reaches it afterwards, no client
//!    call fails because of it, and it exits 0 after draining;
//! 3. both come back and take traffic again.
//!
//! Then: every acknowledged write is present exactly once (one event per request id, the final
//! state of every customer), every event is in JetStream exactly once in position (hence
//! per-customer) order, page tokens issued by one replica are accepted by the others, and two
//! watches (WatchCustomerEvents) that started on the killed and on the drained replica, resumed
//! through HAProxy with their last resume token, saw the whole log without gap or repeat.
//!
//! Every wait is on an observable condition (readiness, HAProxy's admin socket, counters,
//! stream length) with a bound. Whatever happens, the processes are killed, the database is
//! dropped and the stream deleted before the process exits; logs stay under
//! `target/tmp/cluster-<pid>/` when the run fails. Needs DATABASE_URL and NATS_URL (the make
//! target finds or starts both) and HAProxy (the make target installs Debian's package). Part
//! of `make test`; `make cluster-test` runs it alone.

mod load;
mod procs;
mod verify;
mod watch;

use std::{
    net::SocketAddr,
    panic::AssertUnwindSafe,
    path::PathBuf,
    process::ExitCode,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use customer_api::db;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures_util::FutureExt;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    load::{Counters, Protocol},
    procs::{BIN, HaProxy, Replica, http_get, replica, until},
};

/// How long the whole scenario may take before it is declared stuck.
const SCENARIO_LIMIT: Duration = Duration::from_secs(600);
/// Acknowledged operations between the phases (the load keeps running throughout).
const OPS_PER_PHASE: u64 = 150;
/// How long a SIGTERMed replica keeps serving with /readyz at 503.
const SHUTDOWN_DELAY: &str = "3s";

/// What the run created, so that it can all be removed whatever happens.
struct Cluster {
    started: Instant,
    dir: PathBuf,
    server_url: String,
    database_name: String,
    database_url: String,
    nats_url: String,
    stream: String,
    subject_prefix: String,
    replicas: Vec<Replica>,
    haproxy: Option<HaProxy>,
}

impl Cluster {
    fn new() -> Self {
        let server_url = required_env("DATABASE_URL", "PostgreSQL");
        let nats_url = required_env("NATS_URL", "NATS with JetStream");
        // Named like the integration tests' databases (scripts/drop-test-databases.sh removes
        // leftovers of a run that could not clean up).
        let checkout = Sha256::digest(env!("CARGO_MANIFEST_DIR").as_bytes());
        let namespace: String = checkout[..3].iter().map(|b| format!("{b:02x}")).collect();
        let database_name = format!(
            "customer_api_test_{namespace}_{}_cluster",
            std::process::id()
        );
        let database_url = db::with_database(&server_url, &database_name)
            .expect("DATABASE_URL is a postgres:// URL");
        let run = Uuid::new_v4().simple().to_string();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("cluster-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("work directory");
        Self {
            started: Instant::now(),
            dir,
            server_url,
            database_name,
            database_url,
            nats_url,
            stream: format!("CLUSTER_TEST_{run}"),
            subject_prefix: format!("cluster.{run}.events"),
            replicas: Vec::new(),
            haproxy: None,
        }
    }

    fn step(&self, what: &str) {
        println!("[{:6.1}s] {what}", self.started.elapsed().as_secs_f64());
    }

    /// The environment of every replica: nothing from the shell's.
    fn replica_env(&self, jwt_secret: &str) -> Vec<(String, String)> {
        [
            ("DATABASE_URL", self.database_url.as_str()),
            ("JWT_HS256_SECRET", jwt_secret),
            ("NATS_URL", &self.nats_url),
            ("NATS_STREAM", &self.stream),
            ("NATS_SUBJECT_PREFIX", &self.subject_prefix),
            ("HEALTH_PROBE_INTERVAL", "100ms"),
            ("SHUTDOWN_DELAY", SHUTDOWN_DELAY),
            ("SHUTDOWN_DRAIN_TIMEOUT", "10s"),
            ("DB_POOL_SIZE", "8"),
            // One caller makes every call here; the per-caller limit is not under test.
            ("RATE_LIMIT_RPS", "0"),
            ("LOG_FORMAT", "text"),
            ("NO_COLOR", "1"),
            ("RUST_LOG", "info"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// Kills every process, deletes the stream, drops the database. Reports what failed.
    async fn cleanup(&mut self, passed: bool) {
        // Bounded: cleanup never hangs the run (DROP DATABASE waits for a checkpoint, slow on a
        // busy server).
        let bound = Duration::from_secs(120);
        if tokio::time::timeout(bound, self.cleanup_steps())
            .await
            .is_err()
        {
            eprintln!("cleanup: a step took longer than {bound:?}");
        }
        self.step("cleanup: processes, stream and database removed");
        if passed {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            for replica in &self.replicas {
                print_tail(&replica.log().to_path_buf());
            }
            print_tail(&self.dir.join("haproxy.log"));
            eprintln!("logs kept in {}", self.dir.display());
        }
    }

    async fn cleanup_steps(&mut self) {
        for replica in &mut self.replicas {
            replica.stop().await;
        }
        if let Some(haproxy) = &mut self.haproxy {
            haproxy.stop().await;
        }
        self.step("cleanup: processes stopped");
        match async_nats::connect(&self.nats_url).await {
            Ok(client) => {
                let js = async_nats::jetstream::new(client);
                if js.get_stream(&self.stream).await.is_ok()
                    && let Err(error) = js.delete_stream(&self.stream).await
                {
                    eprintln!("cleanup: deleting stream {}: {error}", self.stream);
                }
            }
            Err(error) => eprintln!("cleanup: NATS: {error}"),
        }
        self.step("cleanup: stream deleted");
        let admin = db::with_database(&self.server_url, "postgres").expect("admin url");
        match AsyncPgConnection::establish(&admin).await {
            Ok(mut conn) => {
                let drop = format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    db::quote_ident(&self.database_name)
                );
                if let Err(error) = conn.batch_execute(&drop).await {
                    eprintln!("cleanup: {drop}: {error}");
                }
            }
            Err(error) => eprintln!("cleanup: PostgreSQL: {error}"),
        }
    }
}

fn print_tail(path: &PathBuf) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    eprintln!("--- last lines of {}", path.display());
    for line in &lines[lines.len().saturating_sub(15)..] {
        eprintln!("{line}");
    }
}

/// A server this test needs: from the environment `make cluster-test` prepares. Fails loudly.
fn required_env(name: &str, what: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: the cluster test needs {what}; run it with `make cluster-test`")
    })
}

/// Runs the binary with `args` and exactly `env`; returns its standard output.
fn run_binary(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = std::process::Command::new(BIN)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run customer-api");
    assert!(
        output.status.success(),
        "customer-api {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

/// Which replica leads the relay (holds the lease), once exactly one of `candidates` does.
async fn relay_leader(replicas: &[Replica], candidates: &[usize]) -> usize {
    until(
        "exactly one replica leads the relay",
        Duration::from_secs(30),
        || async {
            let mut leaders = Vec::new();
            for &index in candidates {
                let (status, body) = http_get(replicas[index].addr, "/healthz/events").await?;
                let health: serde_json::Value = serde_json::from_str(&body).ok()?;
                if status == 200 && health["relay"]["leading"] == true {
                    leaders.push(index);
                }
            }
            (leaders.len() == 1).then(|| leaders[0])
        },
    )
    .await
}

async fn wait_ops(counters: &Counters, at_least: u64) {
    until(
        &format!("the clients have {at_least} acknowledged operations"),
        Duration::from_secs(180),
        || async { (counters.ops.load(Ordering::Relaxed) >= at_least).then_some(()) },
    )
    .await;
}

async fn scenario(cluster: &mut Cluster) {
    cluster.step("customer-api migrate (creates the database)");
    run_binary(&["migrate"], &[("DATABASE_URL", &cluster.database_url)]);
    let jwt_secret = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let token = run_binary(
        &[
            "token",
            "--scopes",
            "customers.read customers.write",
            "--sub",
            "cluster-test",
            "--ttl",
            "1h",
        ],
        &[("JWT_HS256_SECRET", &jwt_secret)],
    )
    .trim()
    .to_owned();

    let env = cluster.replica_env(&jwt_secret);
    for index in 0..3 {
        let mut replica = replica(index, &cluster.dir, env.clone());
        replica.start();
        cluster.replicas.push(replica);
    }
    for replica in &cluster.replicas {
        replica.wait_ready().await;
    }
    cluster.step("3 replicas ready; starting HAProxy");
    let haproxy = HaProxy::start(&cluster.dir, &cluster.replicas.iter().collect::<Vec<_>>()).await;
    for replica in &cluster.replicas {
        haproxy.wait_status(&replica.name, "UP").await;
    }
    let front: SocketAddr = haproxy.addr;
    cluster.haproxy = Some(haproxy);

    let killed = relay_leader(&cluster.replicas, &[0, 1, 2]).await;
    let drained = (killed + 1) % 3;
    let survivor = (killed + 2) % 3;
    let (killed_name, drained_name) = (
        cluster.replicas[killed].name.clone(),
        cluster.replicas[drained].name.clone(),
    );
    cluster.step(&format!(
        "HAProxy on {front}: all UP; {killed_name} leads the relay (to be killed), {drained_name} will be drained"
    ));

    // Two watches from the first event, one on each replica about to go.
    let (total_tx, total_rx) = tokio::sync::watch::channel(None);
    let mut watchers = Vec::new();
    for index in [killed, drained] {
        let (opened_tx, opened_rx) = tokio::sync::oneshot::channel();
        watchers.push(tokio::spawn(watch::watcher(
            cluster.replicas[index].addr,
            front,
            token.clone(),
            total_rx.clone(),
            opened_tx,
        )));
        opened_rx.await.expect("the watch opened");
    }

    // The load, through HAProxy.
    let counters = Arc::new(Counters::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let clients: Vec<_> = [
        (Protocol::Grpc, "Alpha"),
        (Protocol::Grpc, "Bravo"),
        (Protocol::Grpc, "Charlie"),
        (Protocol::Rest, "Delta"),
        (Protocol::Rest, "Echo"),
        (Protocol::Rest, "Foxtrot"),
    ]
    .into_iter()
    .map(|(protocol, family)| {
        tokio::spawn(load::client(
            protocol,
            family.to_owned(),
            front,
            token.clone(),
            stop_rx.clone(),
            counters.clone(),
        ))
    })
    .collect();
    wait_ops(&counters, OPS_PER_PHASE).await;

    // 1. kill -9 the relay leader.
    cluster.step(&format!("kill -9 {killed_name} under load"));
    cluster.replicas[killed].kill().await;
    let haproxy = cluster.haproxy.as_ref().expect("haproxy");
    haproxy.wait_status(&killed_name, "DOWN").await;
    let new_leader = relay_leader(&cluster.replicas, &[drained, survivor]).await;
    cluster.step(&format!(
        "HAProxy marked {killed_name} DOWN; {} took the relay lease",
        cluster.replicas[new_leader].name
    ));
    let ops = counters.ops.load(Ordering::Relaxed);
    wait_ops(&counters, ops + OPS_PER_PHASE).await;

    // 2. SIGTERM another: readiness drops first, then traffic stops, then it exits.
    let retries_before_drain = counters.retries.load(Ordering::Relaxed);
    let drained_addr = cluster.replicas[drained].addr;
    cluster.step(&format!("SIGTERM {drained_name} under load"));
    cluster.replicas[drained].terminate();
    until(
        &format!("{drained_name} answers /readyz with 503"),
        Duration::from_secs(10),
        || async {
            match http_get(drained_addr, "/readyz").await {
                Some((503, _)) => Some(()),
                Some((200, _)) => None,
                other => panic!(
                    "{drained_name} stopped answering before its readiness dropped: {other:?}"
                ),
            }
        },
    )
    .await;
    let marked_down = haproxy.wait_status(&drained_name, "DOWN").await;
    let still_serving = http_get(drained_addr, "/healthz").await;
    assert_eq!(
        still_serving.as_ref().map(|(status, _)| *status),
        Some(200),
        "{drained_name} still serves after HAProxy took it out (SHUTDOWN_DELAY)"
    );
    cluster.step(&format!(
        "{drained_name}: /readyz 503, HAProxy marked it DOWN, it still serves; waiting for it to exit"
    ));
    let exit = cluster.replicas[drained]
        .wait_exit(Duration::from_secs(60))
        .await;
    assert!(
        exit.success(),
        "{drained_name} exited with {exit} after SIGTERM"
    );
    let after_exit = haproxy.server(&drained_name).await;
    assert_eq!(
        after_exit.total, marked_down.total,
        "no request reached {drained_name} after HAProxy marked it down"
    );
    // What the clients saw meanwhile: a call cut by the drain would fail with a reset
    // stream, a 502/503 or UNAVAILABLE. Only their own deadline passing is tolerated: on a
    // machine busy with other builds a call can be slow, wherever it is served.
    let retries_after_drain = counters.retries.load(Ordering::Relaxed);
    let during_drain: Vec<String> = counters
        .failures
        .lock()
        .map(|failures| {
            failures
                .iter()
                .filter(|(n, _)| (retries_before_drain..retries_after_drain).contains(n))
                .map(|(_, failure)| failure.clone())
                .collect()
        })
        .unwrap_or_default();
    let cut: Vec<&String> = during_drain
        .iter()
        .filter(|f| !f.contains("DeadlineExceeded") && !f.ends_with("timed out"))
        .collect();
    assert!(
        cut.is_empty(),
        "draining {drained_name} failed client calls: {cut:#?}"
    );
    cluster.step(&format!(
        "{drained_name} exited 0; no client call failed because of its drain ({} slow calls retried)",
        during_drain.len()
    ));

    // 3. Both come back and take traffic again.
    let mut before_restart = Vec::new();
    for index in [drained, killed] {
        cluster.replicas[index].start();
        cluster.replicas[index].wait_ready().await;
        let name = cluster.replicas[index].name.clone();
        let haproxy = cluster.haproxy.as_ref().expect("haproxy");
        before_restart.push((name.clone(), haproxy.wait_status(&name, "UP").await.total));
    }
    cluster.step(&format!(
        "{drained_name} and {killed_name} restarted, UP again"
    ));
    let ops = counters.ops.load(Ordering::Relaxed);
    wait_ops(&counters, ops + OPS_PER_PHASE).await;
    let haproxy = cluster.haproxy.as_ref().expect("haproxy");
    for (name, total) in &before_restart {
        let now = haproxy.server(name).await.total;
        assert!(
            now > *total,
            "{name} took traffic after its restart ({total} -> {now})"
        );
    }
    stop_tx.send(true).expect("clients listening");
    let mut ledgers = Vec::new();
    for client in clients {
        ledgers.push(client.await.expect("a client failed"));
    }
    let total_ops = counters.ops.load(Ordering::Relaxed);
    let retries = counters.retries.load(Ordering::Relaxed);
    let per_client: Vec<String> = ledgers
        .iter()
        .map(|l| {
            format!(
                "{} {}c/{}u/{}r",
                l.family,
                l.created.len(),
                l.updated.len(),
                l.reads
            )
        })
        .collect();
    cluster.step(&format!(
        "load stopped: {total_ops} operations acknowledged, {retries} attempts retried \
         (creates/updates/checked reads: {})",
        per_client.join(", ")
    ));

    // The checks.
    let addrs: Vec<SocketAddr> = cluster.replicas.iter().map(|r| r.addr).collect();
    until(
        "every event is published",
        Duration::from_secs(60),
        || async {
            let (_, body) = http_get(addrs[survivor], "/healthz/events").await?;
            let health: serde_json::Value = serde_json::from_str(&body).ok()?;
            (health["unpublished"] == 0).then_some(())
        },
    )
    .await;
    let events = verify::all_events(addrs[survivor], &token).await;
    let (customers, _) = verify::all_customers(&addrs[survivor..=survivor], &token, 1000).await;
    verify::writes_exactly_once(&ledgers, &events, &customers);
    let writes: usize = ledgers
        .iter()
        .map(|l| l.created.len() + l.updated.len())
        .sum();
    cluster.step(&format!(
        "{writes} acknowledged writes, each present exactly once ({} customers, {} events)",
        customers.len(),
        events.len()
    ));

    verify::jetstream_exactly_once(&cluster.nats_url, &cluster.stream, &events).await;
    cluster.step(&format!(
        "JetStream {}: {} messages, each event once, in log and per-customer order",
        cluster.stream,
        events.len()
    ));

    let (rotated, pages) = verify::all_customers(&addrs, &token, 7).await;
    assert!(
        pages >= 3,
        "the listing spans every replica ({pages} pages)"
    );
    let names = |list: &[customer_api::pb::Customer]| -> Vec<String> {
        list.iter().map(|c| c.name.clone()).collect()
    };
    assert_eq!(names(&rotated), names(&customers), "paging across replicas");
    cluster.step(&format!(
        "page tokens: {pages} pages, each from the next replica, list every customer once"
    ));

    total_tx
        .send(Some(events.len()))
        .expect("watchers listening");
    let logged: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
    for (watcher, started_on) in watchers.into_iter().zip([&killed_name, &drained_name]) {
        let watched = tokio::time::timeout(Duration::from_secs(60), watcher)
            .await
            .unwrap_or_else(|_| panic!("the watch started on {started_on} did not catch up"))
            .expect("a watcher failed");
        assert!(
            watched.resumes >= 1,
            "the watch started on {started_on} was resumed elsewhere"
        );
        assert_eq!(
            watched.event_ids, logged,
            "the watch started on {started_on}: every event once, in order, across {} resumes",
            watched.resumes
        );
        cluster.step(&format!(
            "watch started on {started_on}: resumed {} times, {} events without gap or repeat",
            watched.resumes,
            watched.event_ids.len()
        ));
    }
}

/// Whether libtest-style arguments select this test (named `cluster`): `cargo test relay`
/// passes the filter `relay` to every test binary; flags such as `--test-threads 6` are
/// ignored. `--list` lists it.
fn selected(args: &[String]) -> Option<bool> {
    if args.iter().any(|arg| arg == "--list") {
        // cargo-nextest lists the ignored tests separately (`--list --ignored`): there are none.
        if !args.iter().any(|arg| arg == "--ignored") {
            println!("cluster: test");
        }
        return None;
    }
    let mut filters = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--test-threads" | "--skip" | "--format" | "--color" | "-Z" => {
                args.next();
            }
            flag if flag.starts_with('-') => {}
            filter => filters.push(filter),
        }
    }
    Some(filters.is_empty() || filters.iter().any(|filter| "cluster".contains(filter)))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match selected(&args) {
        None => return ExitCode::SUCCESS,
        Some(false) => {
            println!("cluster: 0 passed, 0 failed, 1 filtered out");
            return ExitCode::SUCCESS;
        }
        Some(true) => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let passed = runtime.block_on(async {
        let mut cluster = match std::panic::catch_unwind(Cluster::new) {
            Ok(cluster) => cluster,
            Err(_) => return false,
        };
        let outcome = tokio::time::timeout(
            SCENARIO_LIMIT,
            AssertUnwindSafe(scenario(&mut cluster)).catch_unwind(),
        )
        .await;
        let passed = match outcome {
            Ok(Ok(())) => true,
            Ok(Err(_)) => false,
            Err(_) => {
                eprintln!("the scenario did not finish within {SCENARIO_LIMIT:?}");
                false
            }
        };
        cluster.step("cleaning up");
        cluster.cleanup(passed).await;
        cluster.step(if passed { "passed" } else { "FAILED" });
        passed
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    if passed {
        println!("cluster: 1 passed, 0 failed");
        ExitCode::SUCCESS
    } else {
        println!("cluster: 0 passed, 1 failed");
        ExitCode::FAILURE
    }
}
