//! The one listener: gRPC (h2c), gRPC-web (HTTP/1.1 and h2, binary and text), health,
//! reflection and plain HTTP probes, with graceful shutdown.
//!
//! Start-up: connect the pool, apply migrations, build the services, accept. The caller
//! binds the listener and passes a shutdown future (tests bind `127.0.0.1:0`; `main` binds
//! the configured address and passes SIGTERM/SIGINT). On shutdown the health service turns
//! NOT_SERVING, the listener closes, and in-flight calls get `drain_timeout` to finish.
//!
//! With a certificate configured the listener speaks TLS instead (see [`crate::tls`]); the
//! handshake runs in each connection's task, never in the accept loop.
//!
//! Each gRPC service is wrapped in tonic-web's layer individually (wrapping the merged
//! router would answer 400 to every plain HTTP/1.1 request) and in [`DeadlineLayer`].

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, http::StatusCode, routing::get};
use http::{HeaderName, Method, header};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic_health::server::HealthReporter;
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::{
    FILE_DESCRIPTOR_SET,
    auth::{
        Authenticator,
        jwt::JwtVerifier,
        layer::AuthLayer,
        limits::{ConcurrencyLimitLayer, RateLimits},
        scopes,
    },
    config::ServeSettings,
    db,
    grpc::{CustomerApi, deadline::DeadlineLayer},
    metrics::{Metrics, MetricsLayer, Snapshot},
    pb::customer_service_server::CustomerServiceServer,
    relay::{Relay, RelayStatus},
    service::{CustomerService, page_token::PageTokens},
    tls::{self, TlsAcceptor},
};

/// Shortest accepted page-token signing key.
const MIN_PAGE_TOKEN_KEY_BYTES: usize = 16;

/// Largest response message (a full page or batch of customers fits easily).
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

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

/// Serves until `shutdown` resolves, then drains. Returns once every connection is closed or
/// the drain timeout passed.
pub async fn serve(
    settings: ServeSettings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), StartError> {
    if settings
        .page_token_key
        .as_ref()
        .is_some_and(|key| key.len() < MIN_PAGE_TOKEN_KEY_BYTES)
    {
        return Err(StartError::Config(format!(
            "PAGE_TOKEN_KEY must be at least {MIN_PAGE_TOKEN_KEY_BYTES} bytes"
        )));
    }
    // Before any I/O: bad certificate or key files fail start-up, naming the file.
    let tls: Option<TlsAcceptor> = tls::acceptor(&settings.tls)?;
    let pool = db::connect(&settings.database).await?;
    let applied = db::migrate(&pool).await?;
    if applied > 0 {
        tracing::info!(applied, "applied database migrations");
    }
    let page_tokens = match settings.page_token_key.as_deref() {
        Some(secret) => PageTokens::from_secret(secret),
        None => {
            tracing::info!(
                "PAGE_TOKEN_KEY is not set: page tokens are encrypted with the key stored in \
                 the database (shared by every instance)"
            );
            let mut conn = pool
                .get()
                .await
                .map_err(|e| db::SetupError::Connect(e.to_string()))?;
            let key = db::keys::page_token_key(&mut conn)
                .await
                .map_err(db::SetupError::from)?;
            PageTokens::from_key(&key)
        }
    };
    let authenticator = if settings.auth.auth_disabled {
        tracing::warn!(
            "AUTHENTICATION IS DISABLED (--auth-disabled): every caller has every scope. \
             Never run like this outside a local experiment."
        );
        Authenticator::disabled()
    } else {
        let jwt = JwtVerifier::new(&settings.auth.jwt()).await?;
        if jwt.is_none() {
            tracing::info!("no JWT_HS256_SECRET or JWKS_FILE: only API keys are accepted");
        }
        Authenticator::new(jwt, pool.clone())
            .with_api_key_cache_ttl(settings.auth.api_key_cache_ttl)
    };
    let registry = crate::registry::RegistryClient::from_config(settings.registry.config())
        .map_err(|e| StartError::Config(format!("business registry: {e}")))?;
    let service = CustomerService::new(pool.clone(), page_tokens)
        .with_registry(registry)
        .with_purge_after(
            (!settings.customer_purge_after.is_zero()).then_some(settings.customer_purge_after),
        );
    let events = service.events().clone();
    let relay = settings
        .events
        .nats_url
        .is_some()
        .then(|| Relay::new(pool, events.clone(), settings.events.clone()));
    let relay_status = relay.as_ref().map(Relay::status);

    let (health, health_service) = tonic_health::server::health_reporter();
    let ready = Arc::new(AtomicBool::new(false));
    // Registered before the first connection, so Watch works from the start; the first probe
    // runs before accepting, so the first Check already tells the truth.
    let mut last_probe = None;
    probe_once(&service, &health, &ready, &mut last_probe).await;
    let background = [
        tokio::spawn(probe_database(
            service.clone(),
            health.clone(),
            ready.clone(),
            settings.health_probe_interval,
            last_probe,
        )),
        tokio::spawn(purge_request_ids(service.clone(), settings.request_id_ttl)),
        tokio::spawn(purge_customers(
            service.clone(),
            settings.customer_purge_interval,
        )),
        tokio::spawn(events.clone().run_sequencer()),
        tokio::spawn(
            events
                .clone()
                .run_listener(settings.database.database_url.clone()),
        ),
        tokio::spawn(prune_events(
            service.clone(),
            settings.events.event_retention,
            settings.events.event_prune_interval,
            relay.is_none(),
        )),
        tokio::spawn(report_event_lag(service.clone(), relay_status.clone())),
        tokio::spawn(async move {
            if let Some(relay) = relay {
                relay.run().await;
            }
        }),
    ];

    let router = router(
        &settings,
        service.clone(),
        authenticator,
        health_service,
        ready.clone(),
        relay_status,
    )?;
    let local = listener.local_addr().ok();
    tracing::info!(
        address = ?local,
        tls = tls.is_some(),
        mutual_tls = settings.tls.client_ca.is_some(),
        "serving gRPC, gRPC-web and HTTP"
    );

    let graceful = GracefulShutdown::new();
    let builder = Arc::new(connection_builder());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Typically EMFILE: back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%error, "TCP_NODELAY");
                }
                let service = TowerToHyperService::new(router.clone());
                let (builder, watcher) = (builder.clone(), graceful.watcher());
                let acceptor = tls.clone();
                // The TLS handshake runs here, off the accept loop.
                tokio::spawn(async move {
                    let result = match acceptor {
                        None => {
                            let io = TokioIo::new(stream);
                            let connection = builder.serve_connection(io, service);
                            watcher.watch(connection.into_owned()).await
                        }
                        Some(acceptor) => match tls::accept(&acceptor, stream).await {
                            Ok(stream) => {
                                let io = TokioIo::new(stream);
                                let connection =
                                    builder.serve_connection(io, service);
                                watcher.watch(connection.into_owned()).await
                            }
                            Err(error) => {
                                tracing::debug!(%peer, %error, "TLS handshake failed");
                                return;
                            }
                        },
                    };
                    if let Err(error) = result {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }

    tracing::info!("shutting down: no new connections, draining in-flight calls");
    ready.store(false, Ordering::SeqCst);
    // Watch streams never finish on their own: end them so their connections can drain.
    events.close();
    for task in &background {
        task.abort();
    }
    for service in [
        <CustomerServiceServer<CustomerApi> as NamedService>::NAME,
        "",
    ] {
        health
            .set_service_status(service, tonic_health::ServingStatus::NotServing)
            .await;
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(settings.drain_timeout) => {
            tracing::warn!(timeout = ?settings.drain_timeout, "drain timeout: closing remaining connections");
        }
    }
    Ok(())
}

/// HTTP/1.1 + HTTP/2 (h2c) per connection, with timeouts against idle and slow peers.
fn connection_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(1024)
        .max_header_list_size(64 * 1024)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    builder
}

/// Every route of the listener.
fn router(
    settings: &ServeSettings,
    service: CustomerService,
    authenticator: Authenticator,
    health_service: impl GrpcService,
    ready: Arc<AtomicBool>,
    relay: Option<Arc<RelayStatus>>,
) -> Result<Router, StartError> {
    // Authentication and scopes wrap the service itself, so gRPC, gRPC-web and REST (which
    // calls it in-process with the caller's headers) are checked in exactly one place.
    // Overload is shed first (cheapest), then the caller is identified, scoped and rate
    // limited.
    let rate_limits = RateLimits::new(settings.rate_limit_rps, settings.rate_limit_burst);
    // Metrics outermost: shed and refused calls count too.
    let metrics = Arc::new(Metrics::new(
        FILE_DESCRIPTOR_SET,
        &[<CustomerServiceServer<CustomerApi> as NamedService>::NAME],
    ));
    let customers = MetricsLayer::new(metrics.clone()).layer(
        ConcurrencyLimitLayer::new(settings.max_concurrent_requests).layer(
            AuthLayer::new(authenticator.clone(), rate_limits).layer(
                CustomerServiceServer::new(CustomerApi::new(service.clone()))
                    .max_decoding_message_size(settings.max_request_bytes)
                    .max_encoding_message_size(MAX_RESPONSE_BYTES),
            ),
        ),
    );
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let grpc = add_grpc(Router::new(), customers.clone());
    let grpc = add_grpc(grpc, health_service);
    let protect_docs = settings.auth.protect_docs;
    let grpc = if protect_docs {
        let protect = AuthLayer::requiring(authenticator.clone(), scopes::READ);
        let grpc = add_grpc(grpc, protect.layer(reflection_v1));
        add_grpc(grpc, protect.layer(reflection_v1alpha))
    } else {
        let grpc = add_grpc(grpc, reflection_v1);
        add_grpc(grpc, reflection_v1alpha)
    };
    // REST/JSON: routes derived from the proto's google.api.http annotations, each served by
    // calling the same gRPC services in-process.
    let rest = rest_gateway()?.max_body_bytes(settings.max_rest_body_bytes);
    let openapi =
        Bytes::from(serde_json::to_vec_pretty(&rest.openapi(&openapi_info())?).unwrap_or_default());
    // The gateway calls the tonic service directly (with deadlines): an in-process call needs
    // neither the router's path matching nor the gRPC-web layer a second time.
    let rest = rest.build(DeadlineLayer.layer(customers))?;
    let probes = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/healthz/events",
            get({
                let service = service.clone();
                let relay = relay.clone();
                move || event_health(service.clone(), relay.clone())
            }),
        )
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get({
                let service = service.clone();
                let authenticator = authenticator.clone();
                let relay = relay.clone();
                let pool_max = settings.database.pool_size.max(1);
                move |headers: http::HeaderMap| {
                    let (service, authenticator) = (service.clone(), authenticator.clone());
                    let (metrics, relay) = (metrics.clone(), relay.clone());
                    async move {
                        if !docs_allowed(protect_docs, &authenticator, &headers).await {
                            return docs_unauthorized();
                        }
                        let (connections, idle) = service.pool_state();
                        let text = metrics.render(Snapshot {
                            pool_connections: connections,
                            pool_idle: idle,
                            pool_max,
                            relay: relay.map(|relay| (relay.connected(), relay.published())),
                        });
                        (
                            StatusCode::OK,
                            [
                                (
                                    header::CONTENT_TYPE,
                                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                ),
                                (header::CACHE_CONTROL, "no-cache"),
                            ],
                            Bytes::from(text),
                        )
                    }
                }
            }),
        )
        .route(
            "/openapi.json",
            get(move |headers: http::HeaderMap| {
                let openapi = openapi.clone();
                let authenticator = authenticator.clone();
                async move {
                    if !docs_allowed(protect_docs, &authenticator, &headers).await {
                        return docs_unauthorized();
                    }
                    (
                        StatusCode::OK,
                        [
                            (header::CONTENT_TYPE, "application/json"),
                            (header::CACHE_CONTROL, "no-cache"),
                        ],
                        openapi,
                    )
                }
            }),
        )
        .with_state(Probe { service, ready });
    let router = grpc.merge(probes).fallback_service(rest);
    Ok(match cors(&settings.cors_allowed_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    })
}

/// Whether a request may read `/openapi.json` and `/metrics`: always, unless `protect` (the
/// `PROTECT_DOCS` setting) asks for a `customers.read` credential.
async fn docs_allowed(
    protect: bool,
    authenticator: &Authenticator,
    headers: &http::HeaderMap,
) -> bool {
    !protect
        || authenticator
            .authenticate(headers)
            .await
            .is_ok_and(|caller| caller.has(scopes::READ))
}

/// The 401 of a protected document, in the AIP-193 shape of every other error.
fn docs_unauthorized() -> (StatusCode, [(header::HeaderName, &'static str); 2], Bytes) {
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::WWW_AUTHENTICATE, r#"Bearer realm="customer-api""#),
        ],
        Bytes::from_static(
            br#"{"error":{"code":401,"status":"UNAUTHENTICATED","message":"a customers.read credential is required","details":[]}}"#,
        ),
    )
}

/// The REST gateway over this service's descriptors (routes from `google.api.http`).
fn rest_gateway() -> Result<gateway::Builder, gateway::BuildError> {
    Ok(gateway::Gateway::builder(FILE_DESCRIPTOR_SET)?
        .service(<CustomerServiceServer<CustomerApi> as NamedService>::NAME)
        // Gateway errors quote paths and bodies, which may hold an email or phone number.
        .redact_errors(crate::redact::mask_pii))
}

fn openapi_info() -> gateway::openapi::Info {
    gateway::openapi::Info {
        title: "customer-api".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: Some(
            "customer.v1.CustomerService as REST/JSON, transcoded from the gRPC API by its \
             google.api.http annotations. Errors follow AIP-193."
                .into(),
        ),
    }
}

/// The OpenAPI 3.1 document of the REST routes (what `GET /openapi.json` serves).
pub fn openapi_document() -> Result<serde_json::Value, StartError> {
    Ok(rest_gateway()?.openapi(&openapi_info())?)
}

/// What a gRPC service must be to be mounted.
pub trait GrpcService:
    Service<
        http::Request<tonic::body::Body>,
        Response = http::Response<tonic::body::Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + NamedService
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> GrpcService for S where
    S: Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + NamedService
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// Mounts `service` at `/{package.Service}/*`, speaking gRPC and gRPC-web, with deadlines.
fn add_grpc<S: GrpcService>(router: Router, service: S) -> Router {
    let path = format!("/{}/{{*method}}", S::NAME);
    let stack = tonic_web::GrpcWebLayer::new().layer(DeadlineLayer.layer(service));
    router.route_service(&path, stack)
}

/// CORS for browser clients (gRPC-web now, REST later), exposing the gRPC trailers-in-headers.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    let origins: Vec<&String> = origins.iter().filter(|o| !o.trim().is_empty()).collect();
    if origins.is_empty() {
        return None;
    }
    let allow_origin = if origins.iter().any(|o| o.trim() == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|origin| origin.trim().parse().ok()),
        )
    };
    let headers = [
        "content-type",
        "x-grpc-web",
        "x-user-agent",
        "grpc-timeout",
        "authorization",
        "x-api-key",
        "x-request-id",
        "if-match",
        "idempotency-key",
    ];
    let exposed = [
        "grpc-status",
        "grpc-message",
        "grpc-status-details-bin",
        "etag",
        "location",
        "x-request-id",
    ];
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PATCH,
                Method::PUT,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers(headers.map(HeaderName::from_static))
            .expose_headers(exposed.map(HeaderName::from_static))
            .max_age(Duration::from_secs(86_400)),
    )
}

#[derive(Clone)]
struct Probe {
    service: CustomerService,
    ready: Arc<AtomicBool>,
}

/// Ready while the database answers and the server is not shutting down.
async fn readyz(
    State(probe): State<Probe>,
) -> (
    StatusCode,
    [(header::HeaderName, &'static str); 1],
    &'static str,
) {
    let text = [(header::CONTENT_TYPE, "text/plain")];
    if !probe.ready.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, text, "not ready\n");
    }
    match tokio::time::timeout(Duration::from_secs(2), probe.service.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, text, "ready\n"),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            text,
            "database unavailable\n",
        ),
    }
}

/// Keeps the gRPC health status in step with the database: SERVING while it answers.
async fn probe_database(
    service: CustomerService,
    health: HealthReporter,
    ready: Arc<AtomicBool>,
    interval: Duration,
    mut last: Option<bool>,
) {
    loop {
        tokio::time::sleep(interval).await;
        probe_once(&service, &health, &ready, &mut last).await;
    }
}

/// Pings the database once and reports a change of state.
async fn probe_once(
    service: &CustomerService,
    health: &HealthReporter,
    ready: &AtomicBool,
    last: &mut Option<bool>,
) {
    let up = matches!(
        tokio::time::timeout(Duration::from_secs(2), service.ping()).await,
        Ok(Ok(()))
    );
    if *last == Some(up) {
        return;
    }
    let status = if up {
        tracing::info!("database reachable: SERVING");
        tonic_health::ServingStatus::Serving
    } else {
        tracing::warn!("database unreachable: NOT_SERVING");
        tonic_health::ServingStatus::NotServing
    };
    health
        .set_service_status(
            <CustomerServiceServer<CustomerApi> as NamedService>::NAME,
            status,
        )
        .await;
    health.set_service_status("", status).await;
    ready.store(up, Ordering::SeqCst);
    *last = Some(up);
}

/// Forgets expired request ids every hour.
async fn purge_request_ids(service: CustomerService, ttl: Duration) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        every.tick().await;
        match service.purge_request_ids(ttl).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "forgot expired request ids"),
            Err(error) => tracing::warn!(%error, "purging request ids failed"),
        }
    }
}

/// Purges soft-deleted customers past their retention, a batch at a time.
async fn purge_customers(service: CustomerService, interval: Duration) {
    const BATCH: i64 = 100;
    let mut every = tokio::time::interval(interval.max(Duration::from_millis(10)));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        loop {
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

/// The event pipeline in numbers: events not yet published, the age of the oldest, and the
/// relay's broker connection. 503 when the database cannot answer.
async fn event_health(
    service: CustomerService,
    relay: Option<Arc<RelayStatus>>,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], String) {
    let json = [(header::CONTENT_TYPE, "application/json")];
    match service.events().unpublished_lag().await {
        Ok((unpublished, oldest)) => {
            let age =
                oldest.map(|time| (chrono::Utc::now() - time).num_milliseconds() as f64 / 1e3);
            let relay = match relay {
                None => serde_json::json!({"enabled": false}),
                Some(status) => serde_json::json!({
                    "enabled": true,
                    "connected": status.connected(),
                    "published": status.published(),
                }),
            };
            let body = serde_json::json!({
                "unpublished": unpublished,
                "oldestUnpublishedAgeSeconds": age,
                "relay": relay,
            });
            (StatusCode::OK, json, body.to_string())
        }
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json,
            serde_json::json!({"error": error.to_string()}).to_string(),
        ),
    }
}

/// Logs the relay's lag every 30 s while events wait (warning once the oldest is a minute old).
async fn report_event_lag(service: CustomerService, relay: Option<Arc<RelayStatus>>) {
    let Some(relay) = relay else { return };
    let mut every = tokio::time::interval(Duration::from_secs(30));
    loop {
        every.tick().await;
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
) {
    let mut every = tokio::time::interval(interval.max(Duration::from_secs(1)));
    loop {
        every.tick().await;
        match service.events().prune(retention, include_unpublished).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "removed events past retention"),
            Err(error) => tracing::warn!(%error, "pruning events failed"),
        }
    }
}

/// Binds `addr` (for `main`; tests bind their own listener).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
