//! The HTTP side of the one listener: gRPC (h2c), gRPC-web (HTTP/1.1 and h2, binary and
//! text), Connect (on the gRPC paths), REST through the gateway, health, reflection, metrics
//! and plain HTTP probes.
//!
//! `router` assembles every route over a built service ([`Dispatch`]: the services' own
//! calls straight to their stack, the rest through axum's router); `accept` runs the accept loop
//! (plaintext, or TLS with the handshake in each connection's task, never in the loop) and
//! hands each connection to hyper under a [`GracefulShutdown`] watcher. The lifecycle around
//! them (start-up, background tasks, shutdown and drain) is [`crate::app`]'s; [`serve`] is the
//! one-call form of `App::build` + `App::run`.
//!
//! Each gRPC service is wrapped in tonic-web's layer individually (wrapping the merged
//! router would answer 400 to every plain HTTP/1.1 request) and in [`Deadline`].

use std::{convert::Infallible, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, body::Bytes, extract::State, http::StatusCode, routing::get};
use http::{HeaderName, Method, header};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic_health::pb::health_server::{Health, HealthServer};
use tower::Layer;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

pub use crate::app::StartError;
use crate::{
    FILE_DESCRIPTOR_SET,
    app::{App, Readiness, supervisor::Restarts},
    auth::{
        Authenticator,
        layer::Auth,
        limits::{CallerLimits, ConcurrencyLimit, RateLimits},
        scopes,
    },
    config::{LimitSettings, ServeSettings},
    connections::{Activity, Connections, IdleIo, Tracked},
    grpc::{
        CustomerApi,
        api_keys::ApiKeyApi,
        body::BodyFirst,
        content_type::GrpcContentType,
        deadline::Deadline,
        middleware::{Also, Inner, Wrapped},
        operations::OperationsApi,
    },
    longrunning::operations_server::OperationsServer,
    metrics::{Metered, Metrics, Snapshot},
    observe::{Observe, REQUEST_ID, RpcObserver},
    pb::{
        api_key_service_server::ApiKeyServiceServer, customer_service_server::CustomerServiceServer,
    },
    relay::RelayStatus,
    service::CustomerService,
    tls::{self, TlsAcceptor},
};

/// Largest response message (a full page or batch of customers fits easily).
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Builds the app and serves until `shutdown` resolves, then drains: `App::build` followed
/// by `App::run`. Returns once every connection is closed or the drain timeout passed.
pub async fn serve(
    settings: ServeSettings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), StartError> {
    App::build(settings).await?.run(listener, shutdown).await
}

/// Accepts connections on `listener` until `shutdown` resolves, serving each with `router`
/// (over TLS when `tls` is set) under a watcher of `graceful`, so the caller can drain them.
pub(crate) async fn accept(
    listener: &TcpListener,
    router: Routes,
    tls: Option<TlsAcceptor>,
    graceful: &GracefulShutdown,
    (limits, connections): (&LimitSettings, &Connections),
    shutdown: impl Future<Output = ()>,
) {
    let builder = Arc::new(connection_builder(limits));
    let timeouts = limits.timeouts();
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
                // Beyond the cap the peer reads EOF at once instead of waiting in the backlog.
                let Some(slot) = connections.admit() else {
                    tracing::debug!(%peer, "connection refused: MAX_CONNECTIONS are open");
                    continue;
                };
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%error, "TCP_NODELAY");
                }
                let activity = Activity::new();
                let service = TowerToHyperService::new(Tracked::new(
                    router.clone(),
                    activity.clone(),
                    timeouts.request_body,
                ));
                let (builder, watcher) = (builder.clone(), graceful.watcher());
                let acceptor = tls.clone();
                // The TLS handshake runs here, off the accept loop.
                tokio::spawn(async move {
                    let _slot = slot;
                    let result = match acceptor {
                        None => {
                            let io = TokioIo::new(IdleIo::new(stream, activity, timeouts));
                            let connection = builder.serve_connection(io, service);
                            watcher.watch(connection.into_owned()).await
                        }
                        Some(acceptor) => match tls::accept(&acceptor, stream).await {
                            Ok(stream) => {
                                let io = TokioIo::new(IdleIo::new(stream, activity, timeouts));
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
}

/// HTTP/1.1 + HTTP/2 (h2c) per connection, with timeouts against idle and slow peers (and
/// [`IdleIo`] for what hyper does not time out).
fn connection_builder(limits: &LimitSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .max_header_list_size(64 * 1024)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    builder
}

/// What the listener serves: every route, each request observed (request id, access log).
pub(crate) type Routes = Observe<Dispatch>;

/// The stack of [`SERVICES`] (gRPC, gRPC-web and Connect), as [`Dispatch`] calls it.
type ServicesRoute = tower::util::BoxCloneSyncService<
    http::Request<axum::body::Body>,
    http::Response<axum::body::Body>,
    Infallible,
>;

/// Every route: a call on a path of one of [`SERVICES`] goes straight to their stack, a call
/// on a path under a REST route's first segment (`/v1/…`) straight to the gateway's stack, the
/// rest through the router. Those calls are nearly every request the service answers, and
/// the router's path match, the map of captured parameters it builds, and its layers of
/// futures cost ~3k instructions per call (3% of a whole GetCustomer) to find what the
/// path's prefix tells. The router keeps the same routes (the gateway is its fallback, and
/// none of its own routes lies under a REST prefix), so the two agree on where each request
/// goes; a `HEAD` request still takes the router, whose route strips a response's body.
///
/// hyper clones the whole service for each request, so the two direct stacks sit behind one
/// `Arc` and only the one a request takes is cloned.
#[derive(Clone)]
pub(crate) struct Dispatch {
    direct: Arc<Direct>,
    router: Router,
}

/// The stacks [`Dispatch`] calls without the router.
struct Direct {
    services: ServicesRoute,
    rest: ServicesRoute,
    /// The first segments of the REST routes (`v1`), each as `/v1/`.
    rest_prefixes: Box<[String]>,
}

impl Dispatch {
    /// Whether `path` is `/{service}/{method}` of one of [`SERVICES`], as the router's
    /// `/{service}/{*method}` routes match it (the method not empty).
    fn for_services(path: &str) -> bool {
        path.strip_prefix('/').is_some_and(|path| {
            SERVICES.iter().any(|name| {
                path.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix('/'))
                    .is_some_and(|method| !method.is_empty())
            })
        })
    }

    /// Whether `path` lies under one of `prefixes` (each `/segment/`), where the router
    /// would find none of its routes and hand it to its fallback, the gateway.
    fn for_rest(prefixes: &[String], path: &str) -> bool {
        prefixes
            .iter()
            .any(|prefix| path.starts_with(prefix.as_str()))
    }

    /// `/segment/` for each first literal segment of `routes`' templates, once each.
    fn rest_prefixes(routes: &[gateway::Route]) -> Box<[String]> {
        let mut prefixes: Vec<String> = routes
            .iter()
            .filter_map(|route| match route.template.segments.first() {
                Some(gateway::template::Segment::Literal(first)) => Some(format!("/{first}/")),
                _ => None,
            })
            .collect();
        prefixes.sort_unstable();
        prefixes.dedup();
        prefixes.into()
    }
}

impl<B> tower::Service<http::Request<B>> for Dispatch
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = http::Response<axum::body::Body>;
    type Error = Infallible;
    type Future = futures_util::future::Either<
        tower::util::Oneshot<ServicesRoute, http::Request<axum::body::Body>>,
        <Router as tower::Service<http::Request<B>>>::Future,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        // The direct stacks are made ready by their `Oneshot`.
        tower::Service::<http::Request<B>>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let direct = if Self::for_services(path) {
            Some(&self.direct.services)
        } else if request.method() != Method::HEAD
            && Self::for_rest(&self.direct.rest_prefixes, path)
        {
            // (HEAD stays with the router, which answers it without the body.)
            Some(&self.direct.rest)
        } else {
            None
        };
        if let Some(stack) = direct {
            let request = request.map(axum::body::Body::new);
            futures_util::future::Either::Left(tower::ServiceExt::oneshot(stack.clone(), request))
        } else {
            futures_util::future::Either::Right(self.router.call(request))
        }
    }
}

/// Every route of the listener. `ready` is what `/readyz` reports (with a database ping);
/// `relay`, `restarts` and `connections` feed `/healthz/events` and `/metrics`.
pub(crate) fn router(
    settings: &ServeSettings,
    service: CustomerService,
    authenticator: Authenticator,
    health_service: HealthServer<impl Health>,
    ready: Arc<Readiness>,
    relay: Option<Arc<RelayStatus>>,
    (restarts, connections): (Restarts, Arc<Connections>),
) -> Result<Routes, StartError> {
    // Authentication and scopes wrap the service itself, so gRPC, gRPC-web and REST (which
    // calls it in-process with the caller's headers) are checked in exactly one place.
    // Overload is shed first (cheapest), then the caller is identified, scoped and rate
    // limited.
    let rate_limits = RateLimits::new(settings.rate_limit_rps, settings.rate_limit_burst);
    // Metrics outermost: shed and refused calls count too.
    let metrics = Arc::new(Metrics::new(FILE_DESCRIPTOR_SET, SERVICES));
    let customers = CustomerServiceServer::new(CustomerApi::new(service.clone()))
        .max_decoding_message_size(settings.max_request_bytes)
        .max_encoding_message_size(MAX_RESPONSE_BYTES);
    // ApiKeyService shares the whole stack below (and the entry of REST and Connect): its
    // calls are limited, authenticated, scoped and metered as the customer service's are.
    let api_keys = ApiKeyServiceServer::new(ApiKeyApi::new(service.clone(), authenticator.clone()))
        .max_decoding_message_size(settings.max_request_bytes)
        .max_encoding_message_size(MAX_RESPONSE_BYTES);
    let customers = Wrapped::new(Also::new(api_keys), customers);
    // google.longrunning.Operations (the imports' operations) likewise.
    let operations = OperationsServer::new(OperationsApi::new(service.clone()))
        .max_decoding_message_size(settings.max_request_bytes)
        .max_encoding_message_size(MAX_RESPONSE_BYTES);
    let customers = Wrapped::new(Also::new(operations), customers);
    // The global permit is taken once the request message is read (BodyFirst), so bodies
    // that never come hold none; the caller is identified (and held to its share) before its
    // body is read, so nobody unauthenticated makes the server read or buffer a body.
    let concurrency = ConcurrencyLimit::new(settings.max_concurrent_requests);
    ready.watch_saturation(concurrency.clone());
    let customers = Wrapped::new(concurrency.clone(), customers);
    // The largest message and its frame header.
    let customers = Wrapped::new(BodyFirst::new(settings.max_request_bytes + 5), customers);
    let callers = CallerLimits::new(settings.limits.max_concurrent_requests_per_caller);
    let auth = Auth::new(authenticator.clone(), rate_limits).with_caller_limits(callers);
    let customers = Wrapped::new(auth, customers);
    let customers = Wrapped::new(Metered::new(metrics.clone()), customers);
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

    // REST/JSON: routes derived from the proto's google.api.http annotations, each served by
    // calling the same gRPC services in-process; Connect on the gRPC paths, likewise.
    let rest = rest_gateway()?.max_body_bytes(settings.max_rest_body_bytes);
    let connect = rest.connect(entry(customers.clone()), settings.max_request_bytes)?;
    let services = GrpcContentType::with_connect(
        tonic_web::GrpcWebLayer::new().layer(entry(customers.clone())),
        connect,
    );
    let grpc = add_grpc_and_connect(Router::new(), services.clone(), SERVICES);
    let grpc = add_grpc(grpc, health_service);
    let protect_docs = settings.auth.protect_docs;
    let grpc = if protect_docs {
        let protect = Auth::requiring(authenticator.clone(), scopes::READ);
        let grpc = add_grpc(grpc, Wrapped::new(protect.clone(), reflection_v1));
        add_grpc(grpc, Wrapped::new(protect, reflection_v1alpha))
    } else {
        let grpc = add_grpc(grpc, reflection_v1);
        add_grpc(grpc, reflection_v1alpha)
    };
    let openapi = Bytes::from(
        serde_json::to_vec_pretty(&crate::openapi::document(&rest)?).unwrap_or_default(),
    );
    // The gateway calls the tonic service directly (with deadlines): an in-process call needs
    // neither the router's path matching nor the gRPC-web layer a second time.
    // The import route's upload goes to the same entry, as a client stream.
    let grpc_upstream = boxed_upstream(entry(customers.clone()));
    let rest = rest.build(entry(customers))?;
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
                let ready = ready.clone();
                let pool_max = settings.database.pool_size.max(1);
                let max_in_flight = settings.max_concurrent_requests;
                move |headers: http::HeaderMap| {
                    let (service, authenticator) = (service.clone(), authenticator.clone());
                    let (metrics, relay) = (metrics.clone(), relay.clone());
                    let ready = ready.is_ready();
                    let restarts = restarts.clone();
                    let open_connections = connections.clone();
                    let concurrency = concurrency.clone();
                    async move {
                        if !docs_allowed(protect_docs, &authenticator, &headers).await {
                            return docs_unauthorized(&headers);
                        }
                        let (connections, idle) = service.pool_state();
                        let (watches, held_events, held_bytes, dropped_watches) =
                            service.events().watch_limits().snapshot();
                        let gauge = |value: usize| i64::try_from(value).unwrap_or(i64::MAX);
                        // The outbox only lags where a relay publishes it; a database
                        // that does not answer leaves the two gauges out of this scrape.
                        let outbox = match &relay {
                            Some(_) => outbox_lag(&service).await,
                            None => None,
                        };
                        let text = metrics.render(Snapshot {
                            pool_connections: connections,
                            pool_idle: idle,
                            pool_max,
                            relay: relay
                                .as_ref()
                                .map(|relay| (relay.connected(), relay.published())),
                            task_restarts: restarts.snapshot(),
                            pool_wait: Some(service.pool_wait()),
                            publish_latency: relay.as_ref().map(|relay| relay.publish_histogram()),
                            outbox,
                            registry_requests: service.registry_outcomes(),
                            process: crate::metrics::process::Process::read(),
                            ready,
                            watch_outage_retries: service.events().watch_outage_retries(),
                            read_gates: service.read_gates().to_vec(),
                            limit_gauges: vec![
                                (
                                    "customer_api_requests_in_flight",
                                    "Calls holding a permit of MAX_CONCURRENT_REQUESTS",
                                    i64::try_from(concurrency.in_flight(max_in_flight))
                                        .unwrap_or(i64::MAX),
                                ),
                                (
                                    "customer_api_connections",
                                    "Connections open now (at most MAX_CONNECTIONS)",
                                    i64::try_from(open_connections.open()).unwrap_or(i64::MAX),
                                ),
                                ("customer_api_watches", "Watch streams open now", gauge(watches)),
                                (
                                    "customer_api_watch_buffered_events",
                                    "Events read by watches and not yet taken by their response",
                                    gauge(held_events),
                                ),
                                (
                                    "customer_api_watch_buffered_bytes",
                                    "Bytes of the events read by watches and not yet taken by their response",
                                    gauge(held_bytes),
                                ),
                            ],
                            limit_counters: vec![
                                (
                                    "customer_api_watches_dropped",
                                    "Watches ended because their client did not read",
                                    dropped_watches,
                                ),
                                (
                                "customer_api_connections_refused",
                                "Connections closed at once because MAX_CONNECTIONS were open",
                                open_connections.refused(),
                            )],
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
                        return docs_unauthorized(&headers);
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
    let rest_prefixes = Dispatch::rest_prefixes(rest.routes());
    let rest = crate::import_bodies::ImportBodies::new(
        crate::export_formats::ExportFormats::new(rest),
        grpc_upstream,
    )?;
    let router = grpc
        .merge(probes)
        .merge(crate::docs::routes())
        .fallback_service(rest.clone());
    // Every side answers cross-origin requests alike.
    let services = tower::ServiceExt::<http::Request<axum::body::Body>>::map_response(
        services,
        |response: http::Response<_>| response.map(axum::body::Body::new),
    );
    let (router, services, rest) = match cors(&settings.cors_allowed_origins) {
        Some(cors) => {
            let allow = tower::util::MapRequestLayer::new(allow_requested_headers);
            let services = allow.layer(cors.clone().layer(services));
            let rest = allow.layer(cors.clone().layer(rest));
            let router = router.layer(cors).layer(allow);
            (
                router,
                ServicesRoute::new(services),
                ServicesRoute::new(rest),
            )
        }
        None => (
            router,
            ServicesRoute::new(services),
            ServicesRoute::new(rest),
        ),
    };
    let routes = Dispatch {
        direct: Arc::new(Direct {
            services,
            rest,
            rest_prefixes,
        }),
        router,
    };
    Ok(Observe::new(routes, settings.access_log_sample))
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

/// The 401 of a protected document, in the AIP-193 shape of every other error (with the
/// request id the observer set on the request).
fn docs_unauthorized(
    headers: &http::HeaderMap,
) -> (StatusCode, [(header::HeaderName, &'static str); 2], Bytes) {
    let request_id = headers
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let body = serde_json::json!({"error": {
        "code": 401,
        "status": "UNAUTHENTICATED",
        "message": "a customers.read credential is required",
        "details": [{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "UNAUTHENTICATED",
            "domain": crate::service::error::ERROR_DOMAIN,
            "metadata": {"requestId": request_id},
        }],
    }});
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::WWW_AUTHENTICATE, r#"Bearer realm="customer-api""#),
        ],
        Bytes::from(body.to_string()),
    )
}

/// The REST gateway over this service's descriptors (routes from `google.api.http`).
fn rest_gateway() -> Result<gateway::Builder, gateway::BuildError> {
    // One error domain for every error, whichever layer raised it.
    gateway::error::set_error_domain(crate::service::error::ERROR_DOMAIN);
    Ok(gateway::Gateway::builder(FILE_DESCRIPTOR_SET)?
        .service(<CustomerServiceServer<CustomerApi> as NamedService>::NAME)
        .service(<ApiKeyServiceServer<ApiKeyApi> as NamedService>::NAME)
        .service(<OperationsServer<OperationsApi> as NamedService>::NAME)
        // Gateway errors quote paths and bodies, which may hold an email or phone number.
        .redact_errors(crate::redact::mask_pii)
        .request_id_header(REQUEST_ID))
}

/// The OpenAPI 3.1 document of the REST routes (what `GET /openapi.json` serves).
pub fn openapi_document() -> Result<serde_json::Value, StartError> {
    Ok(crate::openapi::document(&rest_gateway()?)?)
}

/// `grpc` as the boxed in-process service the gateway's calls go to.
fn boxed_upstream<S, B>(grpc: S) -> gateway::grpc_call::GrpcService
where
    S: gateway::Upstream<B>,
    B: gateway::BytesBody,
{
    tower::util::BoxCloneSyncService::new(tower::ServiceExt::map_response(
        grpc,
        |response: http::Response<B>| response.map(axum::body::Body::new),
    ))
}

/// Mounts `service` at `/{package.Service}/*`, speaking gRPC and gRPC-web (other content
/// types get 415), with deadlines.
fn add_grpc<S>(router: Router, service: S) -> Router
where
    S: Inner<tonic::body::Body, Error = Infallible> + NamedService + Sync,
{
    let path = format!("/{}/{{*method}}", S::NAME);
    let stack = tonic_web::GrpcWebLayer::new().layer(entry(service));
    router.route_service(&path, GrpcContentType::new(stack))
}

/// [`add_grpc`] for `services`, the gRPC stack already wrapped for the gRPC-web layer and
/// Connect ([`GrpcContentType::with_connect`]), mounted at the path of each of `names` (the
/// services it serves).
fn add_grpc_and_connect<S>(router: Router, services: S, names: &[&str]) -> Router
where
    S: tower::Service<
            http::Request<axum::body::Body>,
            Response: axum::response::IntoResponse,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static,
{
    names.iter().fold(router, |router, name| {
        router.route_service(&format!("/{name}/{{*method}}"), services.clone())
    })
}

/// The services every transport serves (gRPC, gRPC-web, Connect, REST), behind one stack.
pub const SERVICES: &[&str] = &[
    <CustomerServiceServer<CustomerApi> as NamedService>::NAME,
    <ApiKeyServiceServer<ApiKeyApi> as NamedService>::NAME,
    <OperationsServer<OperationsApi> as NamedService>::NAME,
];

/// Where calls enter a gRPC service, from the listener or the gateway: the client's deadline
/// enforced, the call's status recorded for the access log.
fn entry<S>(service: S) -> Wrapped<RpcObserver, Wrapped<Deadline, S>> {
    Wrapped::new(RpcObserver, Wrapped::new(Deadline, service))
}

/// Request headers the service reads, so browsers may send them cross-origin: content
/// negotiation, gRPC-web and Connect, credentials, deadlines, request ids, conditional and
/// idempotent writes, W3C trace context. `grpc-metadata-*` (passed through as gRPC metadata)
/// is allowed by prefix in [`allow_requested_headers`].
pub const CORS_REQUEST_HEADERS: [&str; 15] = [
    "content-type",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "connect-protocol-version",
    "connect-timeout-ms",
    "connect-content-encoding",
    "connect-accept-encoding",
    "authorization",
    "x-api-key",
    "x-request-id",
    "if-match",
    "idempotency-key",
    "traceparent",
    "tracestate",
];

/// Response headers the service sets that scripts may read: gRPC status and details,
/// entity tags and locations of REST writes, request ids, and when to retry.
pub const CORS_EXPOSED_HEADERS: [&str; 7] = [
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "etag",
    "location",
    "x-request-id",
    "retry-after",
];

/// CORS for browser clients of the listed origins (`*` for any); `None` when the list is
/// empty (same-origin only). Preflights are answered with the requested headers the
/// service reads ([`allow_requested_headers`] drops the others before the layer mirrors
/// them).
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
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers(CORS_EXPOSED_HEADERS.map(HeaderName::from_static))
            .max_age(Duration::from_secs(86_400)),
    )
}

/// Keeps in a preflight's `Access-Control-Request-Headers` only the headers the service
/// reads ([`CORS_REQUEST_HEADERS`] and `grpc-metadata-*`), so the CORS layer, which mirrors
/// that list, allows exactly those: a prefix cannot be listed in `Allow-Headers`.
fn allow_requested_headers<B>(mut request: http::Request<B>) -> http::Request<B> {
    let name = header::ACCESS_CONTROL_REQUEST_HEADERS;
    let Some(requested) = request.headers().get(&name) else {
        return request;
    };
    let kept: Vec<String> = requested
        .to_str()
        .unwrap_or_default()
        .split(',')
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| {
            CORS_REQUEST_HEADERS.contains(&name.as_str())
                || name
                    .strip_prefix("grpc-metadata-")
                    .is_some_and(|rest| !rest.is_empty())
        })
        .collect();
    match http::HeaderValue::from_str(&kept.join(",")) {
        Ok(value) if !kept.is_empty() => {
            request.headers_mut().insert(name, value);
        }
        _ => {
            request.headers_mut().remove(name);
        }
    }
    request
}

#[derive(Clone)]
struct Probe {
    service: CustomerService,
    ready: Arc<Readiness>,
}

/// Ready while the database answers, the server is not shutting down and not every call
/// permit is taken (one caller cannot take them all: see `CallerLimits`).
async fn readyz(
    State(probe): State<Probe>,
) -> (
    StatusCode,
    [(header::HeaderName, &'static str); 1],
    &'static str,
) {
    let text = [(header::CONTENT_TYPE, "text/plain")];
    if probe.ready.saturated() {
        return (StatusCode::SERVICE_UNAVAILABLE, text, "overloaded\n");
    }
    if !probe.ready.is_ready() {
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

/// The event pipeline in numbers: events not yet published, the age of the oldest, and the
/// relay's broker connection. 503 when the database cannot answer.
async fn event_health(
    service: CustomerService,
    relay: Option<Arc<RelayStatus>>,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], String) {
    let json = [(header::CONTENT_TYPE, "application/json")];
    match service.events().unpublished_lag().await {
        Ok((unpublished, oldest)) => {
            let age = oldest.map(age_seconds);
            let relay = match relay {
                None => serde_json::json!({"enabled": false}),
                Some(status) => serde_json::json!({
                    "enabled": true,
                    "connected": status.connected(),
                    "published": status.published(),
                    "leading": status.leading(),
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

/// Events not yet published and the age of the oldest in seconds; `None` when the database
/// does not answer within a scrape's patience.
async fn outbox_lag(service: &CustomerService) -> Option<(i64, Option<f64>)> {
    let lag = tokio::time::timeout(Duration::from_secs(2), service.events().unpublished_lag());
    let (unpublished, oldest) = lag.await.ok()?.ok()?;
    Some((unpublished, oldest.map(age_seconds)))
}

/// Seconds since `time` (0 for a time ahead of this clock).
fn age_seconds(time: chrono::DateTime<chrono::Utc>) -> f64 {
    ((chrono::Utc::now() - time).num_milliseconds() as f64 / 1e3).max(0.0)
}

/// Binds `addr` (for `main`; tests bind their own listener).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_services_calls_are_told_by_their_path_as_the_router_tells_them() {
        for path in [
            "/customer.v1.CustomerService/GetCustomer",
            "/customer.v1.ApiKeyService/ListApiKeys",
            "/google.longrunning.Operations/GetOperation",
            // `{*method}` takes the rest, slashes included.
            "/customer.v1.CustomerService/GetCustomer/",
        ] {
            assert!(Dispatch::for_services(path), "{path}");
        }
        for path in [
            "/customer.v1.CustomerService/",
            "/customer.v1.CustomerService",
            "/customer.v1.CustomerServiceX/GetCustomer",
            "customer.v1.CustomerService/GetCustomer",
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/v1/customers/0190a7b2-8c1e-7c1a-9d2e-1f2a3b4c5d6e",
            "/healthz",
            "/",
        ] {
            assert!(!Dispatch::for_services(path), "{path}");
        }
    }

    #[test]
    fn the_rest_calls_are_told_by_their_first_segment_and_no_router_route_has_it() {
        let gateway = rest_gateway()
            .unwrap()
            .build(boxed_upstream(tower::service_fn(
                |_: http::Request<axum::body::Body>| async {
                    Ok::<_, Infallible>(http::Response::new(axum::body::Body::empty()))
                },
            )))
            .unwrap();
        let prefixes = Dispatch::rest_prefixes(gateway.routes());
        assert_eq!(&*prefixes, ["/v1/".to_owned()]);
        for path in [
            "/v1/customers/0190a7b2-8c1e-7c1a-9d2e-1f2a3b4c5d6e",
            "/v1/customers:import",
            "/v1/operations/x",
            "/v1/",
        ] {
            assert!(Dispatch::for_rest(&prefixes, path), "{path}");
        }
        // The router's own routes (and what the gateway answers only as its fallback).
        for path in [
            "/",
            "/docs",
            "/docs/init.js",
            "/healthz",
            "/healthz/events",
            "/readyz",
            "/metrics",
            "/openapi.json",
            "/grpc.health.v1.Health/Check",
            "/customer.v1.CustomerService/GetCustomer",
            "/v1",
            "/v1%2Fcustomers",
            "/v2/customers",
        ] {
            assert!(!Dispatch::for_rest(&prefixes, path), "{path}");
        }
    }
}
