//! What each request leaves behind: its request id and one access-log line, on every
//! transport (gRPC, gRPC-web, REST and the plain HTTP routes).
//!
//! Two pieces, because no single place sees everything:
//!
//! - [`Observe`] wraps the whole listener's service (outside routing, CORS, the gateway and
//!   tonic-web). It settles the request id (a valid `x-request-id` from the client, else a
//!   new UUIDv7), sets it on the request, so the gateway forwards it and the service sees it,
//!   and on the response; it counts body bytes both ways, and when the response body ends
//!   (or is dropped: the client went away) it writes the access line.
//! - [`RpcObserver`] wraps each gRPC service where calls enter (after tonic-web, and behind
//!   the gateway's in-process call), where the gRPC status is plain trailers on every
//!   transport: it records the call's code, and puts the request id into the
//!   `google.rpc.ErrorInfo` metadata (`requestId`) of every error status, whoever raised it
//!   (REST errors carry it through the gateway, which adds it to the errors it raises
//!   itself).
//!
//! With tracing on ([`crate::telemetry`]), [`Observe`] also opens the request's server span
//! (OpenTelemetry RPC and HTTP conventions: `rpc.system`, `rpc.service`, `rpc.method`,
//! `rpc.grpc.status_code`, `http.request.method`, `http.route` — the template —,
//! `http.response.status_code`, plus `request.id` and `enduser.id`, masked), continuing the
//! caller's W3C trace context, and runs the request in its context (the parent of the spans
//! below it); the span ends with the access line, and the line's `trace_id` is the span's.
//! Without tracing there is no span and only the caller's `traceparent` is read, for the
//! log.
//!
//! They share a [`RequestContext`] carried in the request's extensions (the gateway passes
//! extensions on to its in-process call); the auth layer adds the caller to it.
//!
//! The access line is a `tracing` event of target `access`, so `--log-format` shapes it and
//! `RUST_LOG` filters it (`access=off`, `access=warn`). Its fields: `transport`, `method`
//! (HTTP; `transport` is `grpc`, `grpc-web`, `connect`, `rest` or `http`), `route` (the REST path template or a probe's path: never a raw path with ids),
//! `rpc` (`/package.Service/Method`), `grpc_code`, `http_status`, `duration_ms`,
//! `request_id`, `caller` (the token's `sub` or `api-key:{id}`), `bytes_in` and `bytes_out`
//! (the body bytes the server read and wrote: a refused call's message is never read),
//! `trace_id`. Server errors (5xx, or the codes that map to them) are logged at WARN, other
//! calls at INFO, the probes (`/healthz`, `/readyz`, `/metrics`, …) at DEBUG;
//! `ACCESS_LOG_SAMPLE` keeps only a share of the successful INFO lines.

use std::{
    cell::Cell,
    future::Future,
    pin::Pin,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicI32, AtomicU64, Ordering},
    },
    task::{Context, Poll, ready},
    time::Instant,
};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use tonic::Code;
use tower::Service;

use crate::{
    grpc::{
        middleware::{Inner, Middleware, ResponseFuture, call_with_hook},
        status::{add_request_id, client_faults},
    },
    telemetry,
};

/// The request id header, read from requests and set on every response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest accepted client request id.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Paths of the plain HTTP routes, logged at DEBUG under their own name.
const PROBES: [&str; 5] = [
    "/healthz",
    "/healthz/events",
    "/readyz",
    "/metrics",
    "/openapi.json",
];

/// What the layers of one request learn about it, shared through its extensions.
#[derive(Debug)]
pub struct RequestContext {
    request_id: HeaderValue,
    caller: OnceLock<Arc<str>>,
    /// The gRPC code of the call, `-1` until known.
    code: AtomicI32,
    bytes_in: AtomicU64,
}

impl RequestContext {
    fn new(request_id: HeaderValue) -> Self {
        Self {
            request_id,
            caller: OnceLock::new(),
            code: AtomicI32::new(-1),
            bytes_in: AtomicU64::new(0),
        }
    }

    /// The context of `request`, when it came through [`Observe`].
    pub fn of<B>(request: &Request<B>) -> Option<&Arc<Self>> {
        request.extensions().get::<Arc<Self>>()
    }

    /// The request id (validated or generated, so always visible ASCII).
    pub fn request_id(&self) -> &str {
        self.request_id.to_str().unwrap_or_default()
    }

    /// Records who is calling (the first caller set wins).
    pub fn set_caller(&self, subject: &Arc<str>) {
        let _ = self.caller.set(subject.clone());
    }

    /// Who is calling, once authenticated.
    pub fn caller(&self) -> Option<&str> {
        self.caller.get().map(|caller| &**caller)
    }

    fn set_code(&self, code: Code) {
        self.code.store(code as i32, Ordering::Relaxed);
    }

    fn code(&self) -> Option<Code> {
        let code = self.code.load(Ordering::Relaxed);
        (code >= 0).then(|| Code::from_i32(code))
    }
}

/// The client's `x-request-id` if it is one we accept: 1 to [`MAX_REQUEST_ID_LEN`] bytes of
/// letters, digits and `-_.:/+=`; anything else is replaced by a generated id.
pub fn accepted_request_id(headers: &HeaderMap) -> Option<HeaderValue> {
    let value = headers.get(REQUEST_ID)?;
    let bytes = value.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(b));
    valid.then(|| value.clone())
}

/// A new request id: a UUIDv7 (time-ordered, so ids sort by arrival in logs). Its random
/// bits come from a per-thread generator seeded from the OS once: ids must be unique, not
/// secret, and a system call per request is not worth it.
pub fn new_request_id() -> HeaderValue {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(getrandom::u64().unwrap_or_else(|_| {
            // No OS randomness: the time and the thread still tell threads and runs apart.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            nanos ^ (std::ptr::addr_of!(nanos) as u64)
        }));
    }
    let random = STATE.with(|state| {
        let (a, s1) = splitmix64(state.get());
        let (b, s2) = splitmix64(s1);
        state.set(s2);
        (u128::from(a) << 64) | u128::from(b)
    });
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let random_bytes: [u8; 10] = random.to_be_bytes()[..10].try_into().unwrap_or([0; 10]);
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &random_bytes).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = id.hyphenated().encode_lower(&mut text);
    HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static("-"))
}

/// One step of SplitMix64: (output, next state).
fn splitmix64(state: u64) -> (u64, u64) {
    let next = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = next;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31), next)
}

/// How a request reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Grpc,
    GrpcWeb,
    /// The Connect protocol on a gRPC path.
    Connect,
    Rest,
    /// The plain HTTP routes (probes, metrics, the OpenAPI document).
    Http,
}

impl Transport {
    fn of<B>(request: &Request<B>) -> Self {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .map_or(&b""[..], HeaderValue::as_bytes);
        if content_type.starts_with(b"application/grpc-web") {
            Self::GrpcWeb
        } else if content_type.starts_with(b"application/grpc") {
            Self::Grpc
        } else if is_grpc_path(request.uri().path())
            && gateway::connect::is_connect(request.method(), request.headers())
        {
            Self::Connect
        } else if PROBES.contains(&request.uri().path()) {
            Self::Http
        } else {
            Self::Rest
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::GrpcWeb => "grpc-web",
            Self::Connect => "connect",
            Self::Rest => "rest",
            Self::Http => "http",
        }
    }
}

/// Which successful calls get an access line: every one, or an even share of them.
#[derive(Debug)]
struct Sampler {
    /// The share kept, in `[0, 1]`.
    share: f64,
    seen: AtomicU64,
}

impl Sampler {
    /// Keeps the n-th call when `floor(n·share)` steps up: exactly the share, spread evenly.
    fn keep(&self) -> bool {
        if self.share >= 1.0 {
            return true;
        }
        let n = self.seen.fetch_add(1, Ordering::Relaxed) as f64;
        ((n + 1.0) * self.share).floor() > (n * self.share).floor()
    }
}

/// Observes every request of the service it wraps (see the module docs).
#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
    sampler: Arc<Sampler>,
}

impl<S> Observe<S> {
    /// Wraps `inner`; `sample` is the share of successful calls that get an access line.
    pub fn new(inner: S, sample: f64) -> Self {
        Self {
            inner,
            sampler: Arc::new(Sampler {
                share: sample.clamp(0.0, 1.0),
                seen: AtomicU64::new(0),
            }),
        }
    }
}

impl<S, B, R> Service<Request<B>> for Observe<S>
where
    S: Service<Request<Counted<B>>, Response = Response<R>>,
{
    type Response = Response<ObservedBody<R>>;
    type Error = S::Error;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let start = Instant::now();
        let transport = Transport::of(&request);
        let accepted = accepted_request_id(request.headers());
        // An id made here is a UUID: nothing in it to mask.
        let generated = accepted.is_none();
        let request_id = accepted.unwrap_or_else(new_request_id);
        request.headers_mut().insert(REQUEST_ID, request_id.clone());
        let context = Arc::new(RequestContext::new(request_id));
        request.extensions_mut().insert(context.clone());
        // The path is logged only where it names no resource.
        let path = match transport {
            Transport::Grpc | Transport::GrpcWeb | Transport::Connect => {
                is_grpc_path(request.uri().path())
            }
            Transport::Http => true,
            Transport::Rest => false,
        }
        .then(|| request.uri().path_and_query().cloned())
        .flatten();
        let (cx, trace_id) = match telemetry::span::tracer() {
            None => (None, trace_id(request.headers())),
            Some(tracer) => {
                let cx = server_span(
                    tracer,
                    &request,
                    transport,
                    path.as_ref(),
                    &context,
                    generated,
                );
                let trace_id = telemetry::span::trace_id(&cx);
                (Some(cx), trace_id)
            }
        };
        let record = Record {
            sampler: self.sampler.clone(),
            context: context.clone(),
            start,
            transport,
            method: request.method().clone(),
            path,
            route: None,
            status: None,
            code: None,
            bytes_out: 0,
            trace_id,
            cx,
        };
        let request = request.map(|inner| Watched {
            inner,
            watch: BytesIn(context),
        });
        ObserveFuture {
            inner: self.inner.call(request),
            record: Some(record),
        }
    }
}

/// Starts the server span of a request, with what the request tells at once, continuing the
/// caller's trace: the context the request runs in. Only called with tracing on.
fn server_span<B>(
    tracer: telemetry::span::Tracer,
    request: &Request<B>,
    transport: Transport,
    path: Option<&http::uri::PathAndQuery>,
    context: &RequestContext,
    generated_id: bool,
) -> opentelemetry::Context {
    let method = request.method();
    let request_id = if generated_id {
        context.request_id().to_owned()
    } else {
        crate::redact::mask_pii(context.request_id()).into_owned()
    };
    let name = ServerSpanName {
        method: method.as_str(),
        transport,
        path,
    }
    .to_string();
    telemetry::span::start_server(
        tracer,
        &telemetry::extract(request.headers()),
        name.into(),
        server_attributes(transport, method, path),
        vec![opentelemetry::KeyValue::new("request.id", request_id)],
    )
}

/// Kinds of request a thread keeps the server span attributes of.
const KNOWN_REQUESTS: usize = 64;

/// A kind of request (transport, method, gRPC method or probe path) and its server span's
/// constant attributes, encoded.
type KnownRequest = (Transport, Method, Box<str>, Bytes);

thread_local! {
    /// The kinds of request this thread has seen, forgotten all at once beyond
    /// [`KNOWN_REQUESTS`]: the same few, encoded once each.
    static SERVER_ATTRIBUTES: std::cell::RefCell<Vec<KnownRequest>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The server span attributes that follow from the kind of request: `rpc.*` (gRPC),
/// `http.request.method`, `http.route` (a probe), `network.protocol.name`; encoded.
fn server_attributes(
    transport: Transport,
    method: &Method,
    path: Option<&http::uri::PathAndQuery>,
) -> Bytes {
    let path = path.map_or("", |path| path.path());
    SERVER_ATTRIBUTES.with_borrow_mut(|known| {
        if let Some((.., attributes)) = known
            .iter()
            .find(|(t, m, p, _)| *t == transport && m == method && **p == *path)
        {
            return attributes.clone();
        }
        use opentelemetry::KeyValue;
        let mut attributes = Vec::with_capacity(6);
        if matches!(
            transport,
            Transport::Grpc | Transport::GrpcWeb | Transport::Connect
        ) && let Some((service, rpc_method)) = rpc_parts(path)
        {
            let system = if transport == Transport::Connect {
                "connect_rpc"
            } else {
                "grpc"
            };
            attributes.extend([
                KeyValue::new("rpc.system", system),
                KeyValue::new("rpc.service", service.to_owned()),
                KeyValue::new("rpc.method", rpc_method.to_owned()),
            ]);
        }
        attributes.push(KeyValue::new("http.request.method", method_name(method)));
        if transport == Transport::Http && !path.is_empty() {
            attributes.push(KeyValue::new("http.route", path.to_owned()));
        }
        attributes.push(KeyValue::new(
            "network.protocol.name",
            match transport {
                Transport::Rest | Transport::Http | Transport::Connect => "http",
                Transport::Grpc | Transport::GrpcWeb => "grpc",
            },
        ));
        let encoded = telemetry::span::fixed_attributes(&attributes);
        if known.len() >= KNOWN_REQUESTS {
            known.clear();
        }
        known.push((transport, method.clone(), path.into(), encoded.clone()));
        encoded
    })
}

/// `http.request.method`: the standard methods without allocating.
fn method_name(method: &Method) -> opentelemetry::Value {
    let name = match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => return method.as_str().to_owned().into(),
    };
    name.into()
}

/// The server span's first name: the gRPC method (`package.Service/Method`), `GET /readyz`
/// for a probe, the HTTP method otherwise (renamed once the REST route is known).
struct ServerSpanName<'a> {
    method: &'a str,
    transport: Transport,
    path: Option<&'a http::uri::PathAndQuery>,
}

impl std::fmt::Display for ServerSpanName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.transport, self.path) {
            (Transport::Grpc | Transport::GrpcWeb | Transport::Connect, Some(path)) => {
                f.write_str(path.path().trim_start_matches('/'))
            }
            (Transport::Http, Some(path)) => write!(f, "{} {}", self.method, path.path()),
            _ => f.write_str(self.method),
        }
    }
}

/// The service and method of a `/package.Service/Method` path.
fn rpc_parts(path: &str) -> Option<(&str, &str)> {
    path.trim_start_matches('/').split_once('/')
}

/// `rpc.system` (`grpc`, or `connect_rpc` for the Connect protocol), `rpc.service` and
/// `rpc.method` of a `/package.Service/Method` path.
fn record_rpc(span: &opentelemetry::trace::SpanRef<'_>, system: &'static str, path: &str) {
    use opentelemetry::KeyValue;
    if let Some((service, method)) = rpc_parts(path) {
        span.set_attributes([
            KeyValue::new("rpc.system", system),
            KeyValue::new("rpc.service", service.to_owned()),
            KeyValue::new("rpc.method", method.to_owned()),
        ]);
    }
}

/// `/package.Service/Method` in the characters protobuf names allow, of a sane length: only
/// then is a gRPC path logged (it is the client's text).
fn is_grpc_path(path: &str) -> bool {
    let Some((service, method)) = path.strip_prefix('/').and_then(|rest| rest.split_once('/'))
    else {
        return false;
    };
    // A table lookup per byte: this runs on every gRPC request.
    /// Bit 1: a byte of a method name (letters, digits, `_`); bit 2: of a service name (also `.`).
    const NAME_BYTES: [u8; 256] = {
        let mut table = [0_u8; 256];
        let mut i = 0;
        while i < 256 {
            let b = i as u8;
            if b.is_ascii_alphanumeric() || b == b'_' {
                table[i] = 3;
            } else if b == b'.' {
                table[i] = 2;
            }
            i += 1;
        }
        table
    };
    path.len() <= 256
        && !service.is_empty()
        && !method.is_empty()
        && service.bytes().all(|b| NAME_BYTES[usize::from(b)] & 2 != 0)
        && method.bytes().all(|b| NAME_BYTES[usize::from(b)] & 1 != 0)
}

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), if well formed.
fn trace_id(headers: &HeaderMap) -> Option<Box<str>> {
    // A constant name: looking a header up by a `&str` parses the name first.
    const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
    let value = headers.get(TRACEPARENT)?.to_str().ok()?;
    let mut parts = value.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |text: &str, len: usize| {
        text.len() == len
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && hex(flags, 2);
    valid.then(|| trace.into())
}

pin_project_lite::pin_project! {
    /// The response future of [`Observe`].
    pub struct ObserveFuture<F> {
        #[pin]
        inner: F,
        record: Option<Record>,
    }
}

impl<F, R, E> Future for ObserveFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = Result<Response<ObservedBody<R>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The request runs in its server span's context (the parent of what it traces).
        let entered = this
            .record
            .as_ref()
            .and_then(|record| record.cx.clone())
            .map(opentelemetry::Context::attach);
        let result = ready!(this.inner.poll(cx));
        drop(entered);
        let mut record = this.record.take();
        Poll::Ready(result.map(|mut response| {
            if let Some(record) = &mut record {
                record.respond(&mut response);
            }
            response.map(|inner| Watched {
                inner,
                watch: Access(record),
            })
        }))
    }
}

/// What a [`Watched`] body does with each frame; `end` says it is the last.
pub trait Watch {
    /// Sees `frame` go by.
    fn frame<E>(&mut self, frame: Option<&Result<http_body::Frame<Bytes>, E>>, end: bool);
}

pin_project_lite::pin_project! {
    /// A body whose frames a [`Watch`] sees on their way.
    pub struct Watched<B, W> {
        #[pin]
        inner: B,
        watch: W,
    }
}

impl<B: http_body::Body<Data = Bytes>, W: Watch> http_body::Body for Watched<B, W> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let end = frame.is_none() || this.inner.is_end_stream();
        this.watch.frame(frame.as_ref(), end);
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that counts its bytes into the request's context.
pub type Counted<B> = Watched<B, BytesIn>;

/// Counts a request's body bytes.
#[derive(Debug)]
pub struct BytesIn(Arc<RequestContext>);

impl Watch for BytesIn {
    fn frame<E>(&mut self, frame: Option<&Result<http_body::Frame<Bytes>, E>>, _: bool) {
        if let Some(Ok(frame)) = frame
            && let Some(data) = frame.data_ref()
        {
            self.0
                .bytes_in
                .fetch_add(data.len() as u64, Ordering::Relaxed);
        }
    }
}

/// A response body that counts its bytes and writes the access line when it ends or is
/// dropped.
pub type ObservedBody<B> = Watched<B, Access>;

/// A request until its access line is written.
pub struct Access(Option<Record>);

impl Watch for Access {
    fn frame<E>(&mut self, frame: Option<&Result<http_body::Frame<Bytes>, E>>, end: bool) {
        let Some(record) = self.0.as_mut() else {
            return;
        };
        match frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    record.bytes_out += data.len() as u64;
                } else if let Some(trailers) = frame.trailers_ref()
                    && record.code.is_none()
                    // The call's own hook has already read its status from the trailers.
                    && record.context.code().is_none()
                {
                    record.code = status_code(trailers);
                }
            }
            Some(Err(_)) => record.code = record.code.or(Some(Code::Internal)),
            None => {}
        }
        // The line is written before the last frame is handed on, so it is there by the
        // time the client has the whole answer.
        if end {
            self.0.take();
        }
    }
}

/// The `grpc-status` in `headers`, if there is one.
pub(crate) fn status_code(headers: &HeaderMap) -> Option<Code> {
    // Looked for by name, not by hash: a response's headers and trailers are a handful, and
    // every call's status is looked for in each several times (the access line, metrics,
    // the service's own hook), where hashing the name cost more than the scan.
    let value = headers
        .iter()
        .find_map(|(name, value)| (name.as_str() == "grpc-status").then_some(value))?;
    let number = value.to_str().ok()?.parse::<i32>().ok()?;
    Some(Code::from_i32(number))
}

/// One request until its access line is written (on drop: whatever way the request ends).
struct Record {
    sampler: Arc<Sampler>,
    context: Arc<RequestContext>,
    start: Instant,
    transport: Transport,
    method: Method,
    /// The gRPC method (gRPC, gRPC-web) or the probe's path (plain HTTP).
    path: Option<http::uri::PathAndQuery>,
    /// The gateway's route (REST).
    route: Option<Arc<gateway::MatchedRoute>>,
    status: Option<StatusCode>,
    code: Option<Code>,
    bytes_out: u64,
    trace_id: Option<Box<str>>,
    /// The context of the server span (tracing on), ended with the record.
    cx: Option<opentelemetry::Context>,
}

impl Record {
    /// Takes what the response headers tell, and sets the request id on them.
    fn respond<R>(&mut self, response: &mut Response<R>) {
        self.status = Some(response.status());
        if let Some(outcome) = response.extensions().get::<gateway::Outcome>() {
            self.route = outcome.route.clone();
            self.code = Some(outcome.code);
            if let Some(route) = &outcome.route
                && let Some(cx) = &self.cx
            {
                use opentelemetry::trace::TraceContextExt;
                let span = cx.span();
                span.set_attribute(opentelemetry::KeyValue::new(
                    "http.route",
                    route.template.clone(),
                ));
                span.update_name(format!("{} {}", route.method, route.template));
                record_rpc(&span, "grpc", &route.grpc_path);
            }
        }
        if let Some(code) = status_code(response.headers()) {
            self.code = Some(code);
        }
        // Marked sensitive: HPACK then sends it as a literal never indexed instead of adding
        // each new id to the connection's header table, which filled up with ids (evicting
        // the repeated headers) and made every response's encoding compare its id with each
        // of them.
        let mut request_id = self.context.request_id.clone();
        request_id.set_sensitive(true);
        response.headers_mut().insert(REQUEST_ID, request_id);
    }

    /// Records how the request ended on its span, and ends it.
    fn end_span(&self, cx: &opentelemetry::Context, code: Option<Code>, server_error: bool) {
        use opentelemetry::KeyValue;
        let mut attributes = Vec::with_capacity(3);
        if let Some(status) = self.status {
            attributes.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status.as_u16()),
            ));
        }
        if let Some(code) = code.filter(|_| self.transport != Transport::Http) {
            attributes.push(KeyValue::new("rpc.grpc.status_code", code as i64));
        }
        if let Some(caller) = self.context.caller() {
            attributes.push(KeyValue::new(
                "enduser.id",
                crate::redact::mask_pii(caller).into_owned(),
            ));
        }
        // Only failures of the server make a server span an error (semantic conventions).
        telemetry::span::end(cx, attributes, server_error);
    }

    fn level(&self, code: Option<Code>) -> tracing::Level {
        if self.transport == Transport::Http {
            return tracing::Level::DEBUG;
        }
        let server_error = self.status.is_some_and(|s| s.is_server_error())
            || matches!(
                code,
                Some(
                    Code::Unknown
                        | Code::Internal
                        | Code::Unavailable
                        | Code::DataLoss
                        | Code::DeadlineExceeded
                )
            );
        if server_error {
            tracing::Level::WARN
        } else {
            tracing::Level::INFO
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        let duration = self.start.elapsed();
        // The code the service answered wins over what the wrappers saw; a request that ended
        // before any answer was cancelled by the client.
        let code = self
            .context
            .code()
            .or(self.code)
            .or(self.status.is_none().then_some(Code::Cancelled));
        let level = self.level(code);
        if let Some(cx) = &self.cx {
            self.end_span(cx, code, level == tracing::Level::WARN);
        }
        let succeeded = code.is_none_or(|code| code == Code::Ok)
            && self
                .status
                .is_none_or(|s| s.is_success() || s.is_redirection());
        if level == tracing::Level::INFO && succeeded && !self.sampler.keep() {
            return;
        }
        let (rpc, route) = match (&self.route, self.transport) {
            (Some(route), _) => (Some(&*route.grpc_path), Some(&*route.template)),
            (None, Transport::Http) => (None, self.path.as_ref().map(|p| p.path())),
            (None, _) => (self.path.as_ref().map(|p| p.path()), None),
        };
        macro_rules! access {
            ($level:expr) => {
                tracing::event!(
                    target: "access",
                    $level,
                    transport = self.transport.name(),
                    method = self.method.as_str(),
                    route,
                    rpc,
                    grpc_code = code.map(gateway::error::code_name),
                    http_status = self.status.map(|s| s.as_u16()),
                    // Whole microseconds, so the number prints short.
                    duration_ms = duration.as_micros() as f64 / 1e3,
                    request_id = self.context.request_id(),
                    caller = self.context.caller(),
                    bytes_in = self.context.bytes_in.load(Ordering::Relaxed),
                    bytes_out = self.bytes_out,
                    trace_id = self.trace_id.as_deref(),
                )
            };
        }
        match level {
            tracing::Level::WARN => access!(tracing::Level::WARN),
            tracing::Level::DEBUG => access!(tracing::Level::DEBUG),
            _ => access!(tracing::Level::INFO),
        }
    }
}

/// Records the gRPC code of each call into its [`RequestContext`] (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcObserver;

impl<S: Inner<B>, B> Middleware<S, B> for RpcObserver {
    fn call(&self, inner: &mut S, request: Request<B>) -> ResponseFuture<S::Error> {
        let context = RequestContext::of(&request).cloned();
        let hook = context.map(|context| {
            move |code: Code, mut metadata: Option<&mut HeaderMap>| {
                let code = match metadata.as_deref_mut() {
                    Some(metadata) if code != Code::Ok => client_faults(code, metadata),
                    _ => code,
                };
                context.set_code(code);
                if code != Code::Ok
                    && let Some(metadata) = metadata
                {
                    add_request_id(metadata, code, context.request_id());
                }
            }
        });
        call_with_hook(inner, request, hook)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_request_ids_are_kept_only_when_short_and_plain() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(REQUEST_ID, HeaderValue::from_str(value).unwrap());
            accepted_request_id(&headers).map(|v| v.to_str().unwrap().to_owned())
        };
        for good in [
            "abc",
            "0190a7b2-8c1e-7c1a-9d2e-1f2a3b4c5d6e",
            "Root=1-5759e988:bd862e3f/x+y_z.",
        ] {
            assert_eq!(with(good).as_deref(), Some(good));
        }
        let long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        for bad in [
            "",
            "has space",
            "jane@example.com",
            "a\"b",
            "é",
            long.as_str(),
        ] {
            let Ok(value) = HeaderValue::from_str(bad) else {
                continue;
            };
            let mut headers = HeaderMap::new();
            headers.insert(REQUEST_ID, value);
            assert_eq!(accepted_request_id(&headers), None, "{bad}");
        }
        assert_eq!(
            with(&"a".repeat(MAX_REQUEST_ID_LEN)).map(|v| v.len()),
            Some(128)
        );
    }

    #[test]
    fn generated_request_ids_are_distinct_version_7_uuids() {
        let ids: Vec<String> = (0..1000)
            .map(|_| new_request_id().to_str().unwrap().to_owned())
            .collect();
        for id in &ids {
            let uuid = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(uuid.get_version_num(), 7, "{id}");
            assert_eq!(id.len(), 36);
        }
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }

    #[test]
    fn only_well_formed_traceparents_give_a_trace_id() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("traceparent", HeaderValue::from_str(value).unwrap());
            trace_id(&headers).map(String::from)
        };
        assert_eq!(
            with("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert_eq!(with(bad), None, "{bad}");
        }
    }

    #[test]
    fn grpc_paths_are_logged_only_when_they_look_like_methods() {
        assert!(is_grpc_path("/customer.v1.CustomerService/GetCustomer"));
        for bad in [
            "/",
            "/x",
            "/customer.v1.CustomerService/",
            "/a/b/c",
            "/v1/customers/jane@example.com",
        ] {
            assert!(!is_grpc_path(bad), "{bad}");
        }
    }

    #[test]
    fn the_sampler_keeps_exactly_its_share() {
        for (share, expected) in [(1.0, 1000), (0.1, 100), (0.25, 250), (0.0, 0)] {
            let sampler = Sampler {
                share,
                seen: AtomicU64::new(0),
            };
            let kept = (0..1000).filter(|_| sampler.keep()).count();
            assert_eq!(kept, expected, "{share}");
        }
    }
}
