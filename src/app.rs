//! The server's lifecycle: [`App::build`] prepares everything, [`App::run`] serves until a
//! shutdown future resolves, then stops in order.
//!
//! - **Build** (no listening yet): check the settings, load TLS files, connect the pool, apply
//!   migrations, set up authentication, the business registry, the service, the relay and
//!   the router. Every configuration error fails here, before a port is served.
//! - **Run**: the caller binds the listener and passes the shutdown future (tests bind
//!   `127.0.0.1:0` and a oneshot; `main` the configured address and SIGTERM/SIGINT), the
//!   shape of mini-redis's `server::run` and zero2prod's `Application::build` /
//!   `run_until_stopped`. The first database probe runs before the first accept, so the first
//!   health check already tells the truth. Then the background tasks start as one
//!   [`Supervisor`] set (a task that dies is logged, counted and restarted with backoff):
//!
//!   | task | what |
//!   |---|---|
//!   | `health-probe` | keeps gRPC health and `/readyz` in step with the database |
//!   | `request-id-purger` | forgets expired request ids (hourly) |
//!   | `customer-purger` | purges soft-deleted customers past retention |
//!   | `event-sequencer` | numbers committed events in commit order |
//!   | `event-listener` | follows positions numbered by other instances (`LISTEN`) |
//!   | `event-pruner` | removes events past retention |
//!   | `event-lag-reporter` | logs the relay's lag (with a relay only) |
//!   | `event-relay` | publishes events to NATS JetStream (with `NATS_URL` only) |
//!   | `api-key-listener` | forgets cached verifications of keys revoked or rotated anywhere (`LISTEN`) |
//!
//! - **Shutdown**: readiness and health turn NOT_SERVING at once; the listener keeps serving
//!   for `shutdown_delay` (load balancers take the instance out meanwhile), then closes, watch
//!   streams end (they never finish on their own), and in-flight calls get `drain_timeout`.
//!   Meanwhile the maintenance tasks are cancelled and awaited (bounded: each gets a grace
//!   period, then is aborted; the relay gives its lease up). The event sequencer and listener
//!   stop last, once the calls are drained: a list in flight may still be waiting for the
//!   sequencer to number the write before it.

pub mod supervisor;

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic_health::server::HealthReporter;

pub use self::supervisor::{Restarts, Supervisor};
use crate::{
    auth::{Authenticator, jwt::JwtVerifier},
    config::ServeSettings,
    connections::Connections,
    db,
    relay::{Relay, RelayStatus},
    server,
    service::{CustomerService, page_token::PageTokens},
    tls::{self, TlsAcceptor},
};

/// Shortest accepted page-token signing key.
const MIN_PAGE_TOKEN_KEY_BYTES: usize = 16;

/// Longest a background task may take to stop after cancellation before it is aborted
/// (bounded by `drain_timeout` as well). Long enough for a statement or a JetStream
/// acknowledgement in hand.
const TASK_STOP_GRACE: Duration = Duration::from_secs(5);

/// Errors that stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be prepared.
    #[error(transparent)]
    Database(#[from] db::SetupError),
    /// Reflection could not be built from the descriptor sets.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The REST gateway could not be built from the descriptors.
    #[error("REST gateway: {0}")]
    Gateway(#[from] gateway::BuildError),
    /// Token verification could not be set up.
    #[error("authentication: {0}")]
    Auth(#[from] crate::auth::jwt::JwtSetupError),
    /// A setting is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The TLS certificate, key or client CA could not be loaded.
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
}

/// A built server: everything prepared, nothing served or running in the background yet.
pub struct App {
    settings: ServeSettings,
    tls: Option<TlsAcceptor>,
    service: CustomerService,
    relay: Option<Arc<Relay>>,
    health: HealthReporter,
    ready: Arc<Readiness>,
    router: server::Routes,
    /// The open connections (capped by `MAX_CONNECTIONS`).
    connections: Arc<Connections>,
    /// Maintenance tasks, stopped when shutdown begins.
    tasks: Supervisor,
    /// The event sequencer and listener, stopped once in-flight calls have drained.
    event_tasks: Supervisor,
    /// Who is calling (its cache follows key revocations in a background task).
    authenticator: Authenticator,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("settings", &"…")
            .field("tls", &self.tls.is_some())
            .field("relay", &self.relay.is_some())
            .finish_non_exhaustive()
    }
}

impl App {
    /// Validates `settings` and prepares the server: TLS files, pool, migrations,
    /// authentication, registry client, service, relay and routes. Serves nothing and starts
    /// no task; [`App::run`] does.
    pub async fn build(settings: ServeSettings) -> Result<Self, StartError> {
        check(&settings)?;
        // Before any I/O: bad certificate or key files fail start-up, naming the file.
        let tls = tls::acceptor(&settings.tls)?;
        let http =
            crate::http_client::HttpClient::with_extra_ca_file(settings.extra_ca_file.as_deref())?;
        if settings.database.database_session_url.is_none()
            && !settings.database.prepared_statements
        {
            tracing::warn!(
                "DB_PREPARED_STATEMENTS=false without DATABASE_SESSION_URL: migrations, the \
                 relay lease and event notifications need real sessions; behind a \
                 transaction-pooling PgBouncer set DATABASE_SESSION_URL to a direct or \
                 session-pooled address"
            );
        }
        let pool = db::connect(&settings.database).await?;
        let applied = db::migrate(&pool).await?;
        if applied > 0 {
            tracing::info!(applied, "applied database migrations");
        }
        let page_tokens = match settings.page_token_key.as_deref() {
            Some(secret) => PageTokens::from_secret(secret),
            None => {
                tracing::info!(
                    "PAGE_TOKEN_KEY is not set: page tokens are encrypted with the key stored \
                     in the database (shared by every instance)"
                );
                let key = pool
                    .run(async |conn| {
                        db::keys::page_token_key(conn)
                            .await
                            .map_err(db::SetupError::from)
                    })
                    .await?;
                PageTokens::from_key(&key)
            }
        }
        .with_page_bytes(settings.limits.max_response_page_bytes);
        let authenticator = if settings.auth.auth_disabled {
            tracing::warn!(
                "AUTHENTICATION IS DISABLED (--auth-disabled): every caller has every scope. \
                 Never run like this outside a local experiment."
            );
            Authenticator::disabled()
        } else {
            let jwt = JwtVerifier::with_http(&settings.auth.jwt(), Some(http.clone())).await?;
            if jwt.is_none() {
                tracing::info!("no JWT_HS256_SECRET or JWKS_FILE: only API keys are accepted");
            }
            Authenticator::new(jwt, pool.clone())
                .with_api_key_cache_ttl(settings.auth.api_key_cache_ttl)
        };
        let registry = crate::registry::RegistryClient::from_config_with_http(
            settings.registry.config(),
            http,
        )
        .map_err(|e| StartError::Config(format!("business registry: {e}")))?;
        let service = CustomerService::new(pool.clone(), page_tokens)
            .with_watch_outage_tolerance(settings.events.watch_outage_tolerance)
            .with_registry(registry)
            .with_read_lanes(settings.db_read_lanes)
            .with_purge_after(
                (!settings.customer_purge_after.is_zero()).then_some(settings.customer_purge_after),
            );
        service
            .events()
            .configure_watches(crate::service::watches::WatchLimits::new(
                settings.limits.max_watches_per_caller,
                settings.limits.max_watches,
                settings.limits.watch_slow_consumer_timeout,
            ));
        let relay = settings.events.nats_url.is_some().then(|| {
            Arc::new(Relay::new(
                pool,
                service.events().clone(),
                settings.events.clone(),
            ))
        });
        // Registered before the first connection, so Watch works from the start.
        let (health, health_service) = tonic_health::server::health_reporter();
        let ready = Arc::new(Readiness::default());
        let tasks = Supervisor::new(TASK_STOP_GRACE.min(settings.drain_timeout));
        let event_tasks = tasks.sibling();
        let connections = Arc::new(Connections::new(settings.limits.max_connections));
        let router = server::router(
            &settings,
            service.clone(),
            authenticator.clone(),
            health_service,
            ready.clone(),
            relay.as_ref().map(|relay| relay.status()),
            (tasks.restarts(), connections.clone()),
        )?;
        Ok(Self {
            settings,
            connections,
            tls,
            service,
            relay,
            health,
            ready,
            router,
            tasks,
            event_tasks,
            authenticator,
        })
    }

    /// The service the routes call (for in-process use and tests).
    pub fn service(&self) -> &CustomerService {
        &self.service
    }

    /// How often each background task was restarted (empty before [`App::run`]).
    pub fn restarts(&self) -> Restarts {
        self.tasks.restarts()
    }

    /// Serves on `listener` until `shutdown` resolves, then stops: health NOT_SERVING, no new
    /// connections, watches ended, background tasks cancelled and awaited, in-flight calls
    /// drained for up to `drain_timeout`. Returns once all of that is done.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), StartError> {
        let mut last_probe = None;
        probe_once(&self.service, &self.health, &self.ready, &mut last_probe).await;
        spawn_tasks(
            (&self.tasks, &self.event_tasks),
            &self.settings,
            &self.service,
            self.relay,
            &self.health,
            &self.ready,
            last_probe,
        );
        self.tasks.spawn("api-key-listener", {
            let authenticator = self.authenticator.clone();
            move |stop| authenticator.clone().follow_changes(stop)
        });

        tracing::info!(
            address = ?listener.local_addr().ok(),
            tls = self.tls.is_some(),
            mutual_tls = self.settings.tls.tls_client_ca.is_some(),
            "serving gRPC, gRPC-web and HTTP"
        );
        let graceful = GracefulShutdown::new();
        // Readiness drops first; connections are still accepted for `shutdown_delay`, so
        // calls a load balancer sends before it notices are served, not refused.
        let stop_accepting = {
            let (ready, health) = (self.ready.clone(), self.health.clone());
            let delay = self.settings.shutdown_delay;
            async move {
                shutdown.await;
                ready.stop();
                report(&health, tonic_health::ServingStatus::NotServing).await;
                if !delay.is_zero() {
                    tracing::info!(?delay, "shutting down: not ready, still serving");
                    tokio::time::sleep(delay).await;
                }
            }
        };
        server::accept(
            &listener,
            self.router,
            self.tls,
            &graceful,
            (&self.settings.limits, &self.connections),
            stop_accepting,
        )
        .await;

        tracing::info!("shutting down: no new connections, draining in-flight calls");
        self.tasks.cancel();
        // Watch streams never finish on their own: end them so their connections can drain.
        self.service.events().close();
        drop(listener);
        let drain_timeout = self.settings.drain_timeout;
        let drain = async {
            tokio::select! {
                () = graceful.shutdown() => tracing::info!("all connections drained"),
                () = tokio::time::sleep(drain_timeout) => {
                    tracing::warn!(
                        timeout = ?drain_timeout,
                        "drain timeout: closing remaining connections"
                    );
                }
            }
        };
        tokio::join!(drain, self.tasks.shutdown());
        self.event_tasks.shutdown().await;
        Ok(())
    }
}

/// Settings that cannot work, refused before anything starts.
fn check(settings: &ServeSettings) -> Result<(), StartError> {
    if settings
        .page_token_key
        .as_ref()
        .is_some_and(|key| key.len() < MIN_PAGE_TOKEN_KEY_BYTES)
    {
        return Err(StartError::Config(format!(
            "PAGE_TOKEN_KEY must be at least {MIN_PAGE_TOKEN_KEY_BYTES} bytes"
        )));
    }
    if let Some(url) = &settings.events.nats_url {
        // The parser's messages never repeat the URL (which may hold credentials).
        url.parse::<async_nats::ServerAddr>()
            .map_err(|e| StartError::Config(format!("NATS_URL: {e}")))?;
    }
    Ok(())
}

/// Starts every background task: maintenance in `tasks`, the event pipeline that serves
/// in-flight reads in `event_tasks`.
fn spawn_tasks(
    (tasks, event_tasks): (&Supervisor, &Supervisor),
    settings: &ServeSettings,
    service: &CustomerService,
    relay: Option<Arc<Relay>>,
    health: &HealthReporter,
    ready: &Arc<Readiness>,
    last_probe: Option<bool>,
) {
    tasks.spawn("health-probe", {
        let (service, health, ready) = (service.clone(), health.clone(), ready.clone());
        let interval = settings.health_probe_interval;
        // The first run continues from the start-up probe; a restarted one reports afresh.
        let mut last = Some(last_probe);
        move |stop| {
            probe_database(
                service.clone(),
                health.clone(),
                ready.clone(),
                interval,
                last.take().flatten(),
                stop,
            )
        }
    });
    tasks.spawn("request-id-purger", {
        let service = service.clone();
        let ttl = settings.request_id_ttl;
        move |stop| purge_request_ids(service.clone(), ttl, stop)
    });
    tasks.spawn("customer-purger", {
        let service = service.clone();
        let interval = settings.customer_purge_interval;
        move |stop| purge_customers(service.clone(), interval, stop)
    });
    event_tasks.spawn("event-sequencer", {
        let events = service.events().clone();
        move |stop| events.clone().run_sequencer(stop)
    });
    event_tasks.spawn("event-listener", {
        let events = service.events().clone();
        move |stop| events.clone().run_listener(stop)
    });
    tasks.spawn("event-pruner", {
        let service = service.clone();
        let (retention, interval) = (
            settings.events.event_retention,
            settings.events.event_prune_interval,
        );
        let include_unpublished = relay.is_none();
        move |stop| {
            prune_events(
                service.clone(),
                retention,
                interval,
                include_unpublished,
                stop,
            )
        }
    });
    if let Some(relay) = relay {
        tasks.spawn("event-lag-reporter", {
            let (service, status) = (service.clone(), relay.status());
            move |stop| report_event_lag(service.clone(), status.clone(), stop)
        });
        tasks.spawn("event-relay", move |stop| {
            let relay = relay.clone();
            async move { relay.run(stop).await }
        });
    }
}

/// Keeps the gRPC health status in step with the database: SERVING while it answers.
async fn probe_database(
    service: CustomerService,
    health: HealthReporter,
    ready: Arc<Readiness>,
    interval: Duration,
    mut last: Option<bool>,
    stop: CancellationToken,
) {
    while stop
        .run_until_cancelled(tokio::time::sleep(interval))
        .await
        .is_some()
    {
        probe_once(&service, &health, &ready, &mut last).await;
    }
}

/// Pings the database once and reports a change of state.
async fn probe_once(
    service: &CustomerService,
    health: &HealthReporter,
    ready: &Readiness,
    last: &mut Option<bool>,
) {
    let database = matches!(
        tokio::time::timeout(Duration::from_secs(2), service.ping()).await,
        Ok(Ok(()))
    );
    ready.set_database(database);
    let up = database && !ready.saturated();
    if *last == Some(up) {
        return;
    }
    *last = Some(up);
    if ready.is_stopping() {
        return;
    }
    if up {
        tracing::info!("database reachable: SERVING");
        report(health, tonic_health::ServingStatus::Serving).await;
    } else if database {
        tracing::warn!("every call permit is taken: NOT_SERVING");
        report(health, tonic_health::ServingStatus::NotServing).await;
    } else {
        tracing::warn!("database unreachable: NOT_SERVING");
        report(health, tonic_health::ServingStatus::NotServing).await;
    }
    // Shutdown may have begun while SERVING was being reported: it reports NOT_SERVING after
    // marking itself stopping, so checking again here leaves NOT_SERVING last either way.
    if ready.is_stopping() {
        report(health, tonic_health::ServingStatus::NotServing).await;
    }
}

/// Sets the gRPC health of the service and of the server as a whole.
async fn report(health: &HealthReporter, status: tonic_health::ServingStatus) {
    for name in server::SERVICES.iter().copied().chain([""]) {
        health.set_service_status(name, status).await;
    }
}

/// What `/readyz` reports: the database answered the last probe and shutdown has not begun.
/// Two flags combined when read, so a probe that finishes after shutdown began can never
/// make the instance look ready again.
///
/// It also turns not ready while the server is saturated (every `MAX_CONCURRENT_REQUESTS`
/// permit taken): a load balancer then sends new calls to other instances instead of having
/// them shed. One caller cannot cause that alone: its share
/// (`MAX_CONCURRENT_REQUESTS_PER_CALLER`) is below the global budget.
#[derive(Debug, Default)]
pub struct Readiness {
    database: AtomicBool,
    stopping: AtomicBool,
    load: std::sync::OnceLock<crate::auth::limits::ConcurrencyLimit>,
}

impl Readiness {
    /// Whether the instance should receive new calls.
    pub fn is_ready(&self) -> bool {
        !self.stopping.load(Ordering::SeqCst)
            && self.database.load(Ordering::SeqCst)
            && !self.saturated()
    }

    /// Reports saturation of `limit` (the calls in flight) from now on.
    pub fn watch_saturation(&self, limit: crate::auth::limits::ConcurrencyLimit) {
        let _ = self.load.set(limit);
    }

    /// Whether every call permit is taken.
    pub fn saturated(&self) -> bool {
        self.load.get().is_some_and(|limit| limit.saturated())
    }

    fn set_database(&self, up: bool) {
        self.database.store(up, Ordering::SeqCst);
    }

    fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

/// Forgets expired request ids every hour.
async fn purge_request_ids(service: CustomerService, ttl: Duration, stop: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    while stop.run_until_cancelled(every.tick()).await.is_some() {
        match service.purge_request_ids(ttl).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "forgot expired request ids"),
            Err(error) => tracing::warn!(%error, "purging request ids failed"),
        }
    }
}

/// Purges soft-deleted customers past their retention, a batch at a time.
async fn purge_customers(service: CustomerService, interval: Duration, stop: CancellationToken) {
    const BATCH: i64 = 100;
    let mut every = tokio::time::interval(interval.max(Duration::from_millis(10)));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while stop.run_until_cancelled(every.tick()).await.is_some() {
        while !stop.is_cancelled() {
            match service.purge_expired(BATCH).await {
                Ok(0) => break,
                Ok(purged) => {
                    tracing::info!(purged, "purged customers past their retention");
                    if purged < BATCH as usize {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "purging customers failed");
                    break;
                }
            }
        }
    }
}

/// Logs the relay's lag every 30 s while events wait (warning once the oldest is a minute old).
async fn report_event_lag(
    service: CustomerService,
    relay: Arc<RelayStatus>,
    stop: CancellationToken,
) {
    let mut every = tokio::time::interval(Duration::from_secs(30));
    while stop.run_until_cancelled(every.tick()).await.is_some() {
        let Ok((unpublished, Some(oldest))) = service.events().unpublished_lag().await else {
            continue;
        };
        let age = (chrono::Utc::now() - oldest).num_seconds();
        if age >= 60 {
            tracing::warn!(
                unpublished,
                oldest_age_seconds = age,
                connected = relay.connected(),
                "events are waiting to be published"
            );
        } else {
            tracing::info!(unpublished, oldest_age_seconds = age, "event relay lag");
        }
    }
}

/// Removes events older than the retention period, every `interval`.
async fn prune_events(
    service: CustomerService,
    retention: Duration,
    interval: Duration,
    include_unpublished: bool,
    stop: CancellationToken,
) {
    let mut every = tokio::time::interval(interval.max(Duration::from_secs(1)));
    while stop.run_until_cancelled(every.tick()).await.is_some() {
        match service.events().prune(retention, include_unpublished).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "removed events past retention"),
            Err(error) => tracing::warn!(%error, "pruning events failed"),
        }
    }
}
