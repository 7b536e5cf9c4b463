//! Prometheus metrics, served as OpenMetrics text at `GET /metrics`.
//!
//! The RPC metrics follow the names of go-grpc-prometheus / grpc-ecosystem, so the dashboards
//! and alerts people already have for gRPC services work unchanged:
//!
//! - `grpc_server_started_total{grpc_service, grpc_method, grpc_type}`
//! - `grpc_server_handled_total{…, grpc_code}` (`OK`, `NotFound`, `Unauthenticated`, …)
//! - `grpc_server_handling_seconds{…}`: a histogram of the time from the request to its
//!   status (for a server stream, to its end)
//!
//! They are taken by [`Metered`] around the CustomerService stack itself, outside load
//! shedding and authentication, so every call counts whatever its transport (gRPC, gRPC-web,
//! or REST through the gateway's in-process call) and whatever its fate (shed, refused,
//! failed). The status is read where gRPC puts it: the response headers of a trailers-only
//! answer, else the trailers at the end of the body; a body dropped before its trailers (the
//! client went away) counts as `Canceled`. Methods are labelled only when they are methods of
//! the service (from the descriptors), so unknown paths cannot grow the label set.
//!
//! Also: `customer_api_db_pool_connections{state="idle"|"in_use"}` and
//! `customer_api_db_pool_max_connections`, read at scrape time, and
//! `customer_api_db_pool_wait_seconds` (a histogram of checkout waits); the NATS relay's
//! `customer_api_events_published_total`, `customer_api_events_relay_connected`,
//! `customer_api_events_publish_seconds` (send to acknowledgement),
//! `customer_api_events_unpublished` and `customer_api_events_outbox_lag_seconds` (the age
//! of the oldest event not yet published, 0 when none waits); the business registry's
//! `customer_api_registry_requests_total{outcome}`;
//! `customer_api_background_task_restarts_total{task}` (see [`crate::app::supervisor`]);
//! `customer_api_events_watch_outage_retries_total` (watch reads retried through a database
//! outage); `customer_api_db_reads_queued{resource}` and `customer_api_db_reads_shared_total{resource}`
//! (Gets waiting for a read lane, Gets answered by another's statement: `core::coalesce`);
//! `customer_api_build_info{version,commit}`; `customer_api_ready` (what `/readyz` says);
//! and the usual process metrics ([`process`]).
//! docs/observability.md says what each means.

pub mod process;

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock},
    time::Instant,
};

use http::{HeaderMap, Request};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use tonic::Code;

use crate::grpc::middleware::{Inner, Middleware, ResponseFuture, call_with_hook};

/// Which RPC a call is.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Method {
    grpc_service: &'static str,
    grpc_method: &'static str,
    grpc_type: &'static str,
}

/// An RPC and how it ended.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Handled {
    grpc_service: &'static str,
    grpc_method: &'static str,
    grpc_type: &'static str,
    grpc_code: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolState {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabel {
    resource: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Task {
    task: &'static str,
}

/// The metrics of one server.
#[derive(Debug)]
pub struct Metrics {
    /// `/package.Service/Method` -> its labels and metrics, for every method of the metered
    /// services (foldhash: this lookup runs on every call, and the keys are the proto's).
    methods: HashMap<String, Arc<MethodMetrics>, foldhash::fast::RandomState>,
    started: Family<Method, Counter>,
    handled: Family<Handled, Counter>,
    handling: Family<Method, Histogram>,
    pool_connections: Family<PoolState, Gauge>,
    pool_max: Gauge,
}

/// What the scrape reads from the rest of the process.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Connections the pool holds, and how many of them are idle.
    pub pool_connections: u32,
    /// Idle connections.
    pub pool_idle: u32,
    /// The pool's maximum size.
    pub pool_max: u32,
    /// The NATS relay, when one is configured: connected, events published.
    pub relay: Option<(bool, u64)>,
    /// Each supervised background task and how often it was restarted.
    pub task_restarts: Vec<(&'static str, u64)>,
    /// Pool checkout waits.
    pub pool_wait: Option<Histogram>,
    /// The relay's publish latencies (with a relay).
    pub publish_latency: Option<Histogram>,
    /// The outbox (with a relay): events not yet published, and the age of the oldest in
    /// seconds.
    pub outbox: Option<(i64, Option<f64>)>,
    /// Business-registry requests by outcome (with a registry).
    pub registry_requests: Option<Family<crate::registry::Outcome, Counter>>,
    /// What `/proc` says of the process.
    pub process: process::Process,
    /// What `/readyz` would answer (without its own database ping: the last probe's).
    pub ready: bool,
    /// Reads that watches retried because the database was unavailable.
    pub watch_outage_retries: u64,
    /// Shared reads (`core::coalesce`), per resource: reads waiting for a lane now, reads
    /// answered by another read's statement so far.
    pub read_gates: Vec<(&'static str, usize, u64)>,
    /// The abuse limits' gauges (connections, calls, watches): name, help, value.
    pub limit_gauges: Vec<(&'static str, &'static str, i64)>,
    /// The abuse limits' counters (refusals): name without `_total`, help, value.
    pub limit_counters: Vec<(&'static str, &'static str, u64)>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Build {
    version: &'static str,
    commit: &'static str,
}

impl Metrics {
    /// Metrics for the methods of `services` (fully qualified names) in `descriptors` (an
    /// encoded `FileDescriptorSet`).
    pub fn new(descriptors: &[u8], services: &[&str]) -> Self {
        let mut methods = HashMap::default();
        if let Ok(pool) = prost_reflect::DescriptorPool::decode(descriptors) {
            for service in services
                .iter()
                .filter_map(|name| pool.get_service_by_name(name))
            {
                // Leaked once per method at start-up: label values must be 'static to be
                // cheap to clone on every call, and the set is fixed by the proto.
                let service_name: &'static str = leak(service.full_name());
                for method in service.methods() {
                    let grpc_type =
                        match (method.is_client_streaming(), method.is_server_streaming()) {
                            (false, false) => "unary",
                            (false, true) => "server_stream",
                            (true, false) => "client_stream",
                            (true, true) => "bidi_stream",
                        };
                    methods.insert(
                        format!("/{}/{}", service.full_name(), method.name()),
                        Arc::new(MethodMetrics::new(Method {
                            grpc_service: service_name,
                            grpc_method: leak(method.name()),
                            grpc_type,
                        })),
                    );
                }
            }
        }
        Self {
            methods,
            started: Family::default(),
            handled: Family::default(),
            // 1 ms … ~16 s in doublings.
            handling: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 15))
            }),
            pool_connections: Family::default(),
            pool_max: Gauge::default(),
        }
    }

    /// The OpenMetrics text of every metric, with the scrape-time values of `snapshot`.
    pub fn render(&self, snapshot: Snapshot) -> String {
        let in_use = snapshot.pool_connections.saturating_sub(snapshot.pool_idle);
        self.pool_connections
            .get_or_create(&PoolState { state: "idle" })
            .set(i64::from(snapshot.pool_idle));
        self.pool_connections
            .get_or_create(&PoolState { state: "in_use" })
            .set(i64::from(in_use));
        self.pool_max.set(i64::from(snapshot.pool_max));

        let mut registry = Registry::default();
        register!(registry;
            "grpc_server_started", "RPCs started on the server" => self.started.clone();
            "grpc_server_handled", "RPCs completed on the server, by status code" => self.handled.clone();
            "grpc_server_handling_seconds", "Time from the request to the status of each RPC" => self.handling.clone();
            "customer_api_db_pool_connections", "PostgreSQL connections held by the pool, idle or in use" => self.pool_connections.clone();
            "customer_api_db_pool_max_connections", "The pool's maximum number of PostgreSQL connections" => self.pool_max.clone();
        );
        if let Some((connected, published)) = snapshot.relay {
            register!(registry;
                "customer_api_events_relay_connected", "Whether the NATS relay is connected (1) or not (0)" => ConstGauge::new(i64::from(connected));
                "customer_api_events_published", "Events this process published to NATS JetStream" => ConstCounter::new(published);
            );
        }
        if !snapshot.task_restarts.is_empty() {
            let restarts = Family::<Task, Counter>::default();
            for (task, count) in &snapshot.task_restarts {
                restarts.get_or_create(&Task { task }).inc_by(*count);
            }
            register!(registry;
                "customer_api_background_task_restarts", "Times a background task ended or panicked unexpectedly and was restarted" => restarts;
            );
        }
        if let Some(wait) = snapshot.pool_wait {
            registry.register(
                "customer_api_db_pool_wait_seconds",
                "Time a request waited for a pooled PostgreSQL connection",
                wait,
            );
        }
        if let Some(latency) = snapshot.publish_latency {
            registry.register(
                "customer_api_events_publish_seconds",
                "Time from sending an event to NATS JetStream to its acknowledgement",
                latency,
            );
        }
        if let Some((unpublished, oldest)) = snapshot.outbox {
            registry.register(
                "customer_api_events_unpublished",
                "Events committed but not yet published to NATS JetStream",
                ConstGauge::new(unpublished),
            );
            registry.register(
                "customer_api_events_outbox_lag_seconds",
                "Age of the oldest event not yet published (0 when none waits)",
                ConstGauge::new(oldest.unwrap_or(0.0)),
            );
        }
        if !snapshot.read_gates.is_empty() {
            let queued = Family::<ResourceLabel, Gauge>::default();
            let shared = Family::<ResourceLabel, Counter>::default();
            for &(resource, waiting, answered) in &snapshot.read_gates {
                let label = ResourceLabel { resource };
                queued
                    .get_or_create(&label)
                    .set(i64::try_from(waiting).unwrap_or(i64::MAX));
                shared.get_or_create(&label).inc_by(answered);
            }
            register!(registry;
                "customer_api_db_reads_queued", "Gets waiting for one of the DB_READ_LANES reads of their resource type to finish (they then share one statement)" => queued;
                "customer_api_db_reads_shared", "Gets answered by a statement another Get ran (reads that arrived while DB_READ_LANES reads of their type were running)" => shared;
            );
        }
        if let Some(requests) = snapshot.registry_requests {
            registry.register(
                "customer_api_registry_requests",
                "Requests to the business registry, by outcome (ok, not_found, timeout, \
                 connection, status, rejected, malformed, circuit_open)",
                requests,
            );
        }
        registry.register(
            "customer_api_events_watch_outage_retries",
            "Reads of WatchCustomerEvents streams retried because the database was unavailable \
             (the streams stay open through an outage up to WATCH_OUTAGE_TOLERANCE)",
            ConstCounter::new(snapshot.watch_outage_retries),
        );
        registry.register(
            "customer_api_ready",
            "Whether the instance takes calls (1): the database answered the last health \
             probe and shutdown has not begun; 0 otherwise (/readyz answers 503)",
            ConstGauge::new(i64::from(snapshot.ready)),
        );
        let build = Family::<Build, Gauge>::default();
        build
            .get_or_create(&Build {
                version: env!("CARGO_PKG_VERSION"),
                commit: crate::config::COMMIT,
            })
            .set(1);
        registry.register(
            "customer_api_build_info",
            "The running build: its version and git commit (always 1)",
            build,
        );
        for (name, help, value) in snapshot.limit_gauges {
            registry.register(name, help, ConstGauge::new(value));
        }
        for (name, help, value) in snapshot.limit_counters {
            registry.register(name, help, ConstCounter::new(value));
        }
        register_process(&mut registry, &snapshot.process);
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &registry);
        text
    }

    fn start(self: &Arc<Self>, path: &str) -> Option<Call> {
        let method = self.methods.get(path)?;
        method
            .started
            .get_or_init(|| self.started.get_or_create(&method.labels).clone())
            .inc();
        Some(Call {
            metrics: Arc::clone(self),
            method: Arc::clone(method),
            start: Instant::now(),
        })
    }
}

/// Registers each `name, help => metric` in `registry` (metrics of different types, so a
/// macro rather than a loop over a table).
macro_rules! register {
    ($registry:ident; $($name:literal, $help:literal => $metric:expr;)+) => {
        $($registry.register($name, $help, $metric);)+
    };
}
use register;

/// The process metrics under the names every Prometheus client library uses.
fn register_process(registry: &mut Registry, process: &process::Process) {
    if let Some(seconds) = process.cpu_seconds {
        registry.register(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            ConstCounter::new(seconds),
        );
    }
    let n = |value: Option<u64>| value.map(|value| value as f64);
    let gauges = [
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            n(process.resident_memory_bytes),
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            n(process.virtual_memory_bytes),
        ),
        (
            "process_open_fds",
            "Number of open file descriptors",
            n(process.open_fds),
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors",
            n(process.max_fds),
        ),
        (
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds",
            process.start_time_seconds,
        ),
    ];
    for (name, help, value) in gauges {
        if let Some(value) = value {
            registry.register(name, help, ConstGauge::new(value));
        }
    }
}

fn leak(text: &str) -> &'static str {
    Box::leak(text.to_owned().into_boxed_str())
}

/// One method's labels and its series, each taken from its family the first time it is
/// used: a family's lookup (a lock, and SipHash over every label) then happens once per
/// method and code, not on every call, and a series still appears only once it has a value.
#[derive(Debug)]
struct MethodMetrics {
    labels: Method,
    started: OnceLock<Counter>,
    handling: OnceLock<Histogram>,
    /// By gRPC code (0–16).
    handled: [OnceLock<Counter>; 17],
}

impl MethodMetrics {
    fn new(labels: Method) -> Self {
        Self {
            labels,
            started: OnceLock::new(),
            handling: OnceLock::new(),
            handled: std::array::from_fn(|_| OnceLock::new()),
        }
    }
}

/// One metered call, until its status is known.
#[derive(Debug)]
struct Call {
    metrics: Arc<Metrics>,
    method: Arc<MethodMetrics>,
    start: Instant,
}

impl Call {
    fn finish(self, code: Code) {
        let Self {
            metrics,
            method,
            start,
        } = self;
        let handled = || {
            let Method {
                grpc_service,
                grpc_method,
                grpc_type,
            } = method.labels.clone();
            metrics
                .handled
                .get_or_create(&Handled {
                    grpc_service,
                    grpc_method,
                    grpc_type,
                    grpc_code: code_name(code),
                })
                .clone()
        };
        match method.handled.get(code as usize) {
            Some(counter) => counter.get_or_init(handled).inc(),
            None => handled().inc(),
        };
        method
            .handling
            .get_or_init(|| metrics.handling.get_or_create(&method.labels).clone())
            .observe(start.elapsed().as_secs_f64());
    }
}

/// The code as go-grpc-prometheus labels it (Go's `codes.Code.String()`).
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// Meters the calls of the service it wraps (see the module docs).
#[derive(Debug, Clone)]
pub struct Metered {
    metrics: Arc<Metrics>,
}

impl Metered {
    /// Records into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S: Inner<B>, B> Middleware<S, B> for Metered {
    fn call(&self, inner: &mut S, request: Request<B>) -> ResponseFuture<S::Error> {
        let call = self.metrics.start(request.uri().path());
        let hook = call.map(|call| move |code: Code, _: Option<&mut HeaderMap>| call.finish(code));
        call_with_hook(inner, request, hook)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_come_from_the_descriptors_and_codes_read_like_go() {
        let metrics = Arc::new(Metrics::new(
            crate::FILE_DESCRIPTOR_SET,
            &["customer.v1.CustomerService"],
        ));
        let get = metrics
            .start("/customer.v1.CustomerService/GetCustomer")
            .unwrap();
        assert_eq!(get.method.labels.grpc_type, "unary");
        get.finish(Code::NotFound);
        let watch = metrics
            .start("/customer.v1.CustomerService/WatchCustomerEvents")
            .unwrap();
        assert_eq!(watch.method.labels.grpc_type, "server_stream");
        watch.finish(Code::Cancelled);
        assert!(metrics.start("/customer.v1.CustomerService/Nope").is_none());
        assert!(metrics.start("/other.Service/GetCustomer").is_none());

        let wait = Histogram::new(exponential_buckets(0.001, 2.0, 2));
        wait.observe(0.0005);
        wait.observe(0.5);
        let registry_requests = Family::<crate::registry::Outcome, Counter>::default();
        registry_requests
            .get_or_create(&crate::registry::Outcome { outcome: "timeout" })
            .inc_by(3);
        let text = metrics.render(Snapshot {
            pool_connections: 3,
            pool_idle: 1,
            pool_max: 10,
            relay: Some((true, 7)),
            task_restarts: vec![("event-relay", 2), ("event-sequencer", 0)],
            pool_wait: Some(wait),
            publish_latency: None,
            outbox: Some((4, Some(1.5))),
            registry_requests: Some(registry_requests),
            watch_outage_retries: 0,
            process: process::Process {
                cpu_seconds: Some(1.25),
                resident_memory_bytes: Some(4096),
                virtual_memory_bytes: None,
                open_fds: Some(9),
                max_fds: Some(1024),
                start_time_seconds: Some(1.7e9),
            },
            ready: true,
            limit_gauges: vec![("customer_api_connections", "Open connections", 3)],
            limit_counters: vec![("customer_api_connections_refused", "Refused", 2)],
            read_gates: vec![("customer", 3, 40), ("company", 0, 0)],
        });
        for line in [
            r#"grpc_server_handled_total{grpc_service="customer.v1.CustomerService",grpc_method="GetCustomer",grpc_type="unary",grpc_code="NotFound"} 1"#,
            r#"grpc_server_handled_total{grpc_service="customer.v1.CustomerService",grpc_method="WatchCustomerEvents",grpc_type="server_stream",grpc_code="Canceled"} 1"#,
            r#"grpc_server_started_total{grpc_service="customer.v1.CustomerService",grpc_method="GetCustomer",grpc_type="unary"} 1"#,
            r#"customer_api_db_pool_connections{state="idle"} 1"#,
            "customer_api_connections 3",
            "customer_api_connections_refused_total 2",
            r#"customer_api_db_pool_connections{state="in_use"} 2"#,
            "customer_api_db_pool_max_connections 10",
            "customer_api_events_relay_connected 1",
            "customer_api_events_published_total 7",
            r#"customer_api_background_task_restarts_total{task="event-relay"} 2"#,
            r#"customer_api_background_task_restarts_total{task="event-sequencer"} 0"#,
            "customer_api_db_pool_wait_seconds_count 2",
            r#"customer_api_db_pool_wait_seconds_bucket{le="0.001"} 1"#,
            "customer_api_events_unpublished 4",
            r#"customer_api_db_reads_queued{resource="customer"} 3"#,
            r#"customer_api_db_reads_shared_total{resource="customer"} 40"#,
            r#"customer_api_db_reads_shared_total{resource="company"} 0"#,
            "customer_api_events_outbox_lag_seconds 1.5",
            r#"customer_api_registry_requests_total{outcome="timeout"} 3"#,
            &format!(
                r#"customer_api_build_info{{version="{}",commit="{}"}} 1"#,
                env!("CARGO_PKG_VERSION"),
                crate::config::COMMIT
            ),
            "customer_api_ready 1",
            "process_cpu_seconds_total 1.25",
            "process_resident_memory_bytes 4096.0",
            "process_open_fds 9.0",
            "process_max_fds 1024.0",
            "process_start_time_seconds 1700000000.0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
        assert!(!text.contains("process_virtual_memory_bytes"), "{text}");
        assert!(
            !text.contains("customer_api_events_publish_seconds"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
