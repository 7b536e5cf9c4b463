//! Generic REST/JSON <-> gRPC transcoding driven by `google.api.http` annotations.
//!
//! This crate is the Rust counterpart of grpc-gateway / Envoy's gRPC-JSON transcoder:
//! given a protobuf descriptor set and a tower service that speaks gRPC (the tonic services
//! the process already serves), it derives the REST route table from the annotations at
//! start-up and serves each route by calling the gRPC method in-process: no network hop, no
//! second implementation, nothing that can drift from the proto. It knows nothing of any
//! particular API.
//!
//! ```text
//! HTTP request ──► route match (template) ──► path + query + JSON body ─► request message
//!      ▲                                                                        │ in-process
//! HTTP response ◄── JSON / NDJSON / SSE ◄── response message(s) + status ◄── gRPC service
//! ```
//!
//! - [`template`]: path templates (`/v1/{name=customers/*}:undelete`).
//! - [`routes`]: the route table read from the descriptors.
//! - [`transcode`]: request and response conversion (canonical proto3 JSON via prost-reflect).
//! - [`json`]: the canonical JSON writer for decoded messages.
//! - [`wire`]: the same JSON straight from protobuf bytes (the fast path for responses).
//! - [`grpc_call`]: the in-process call and its frame reader.
//! - [`error`]: gRPC status -> HTTP status and the AIP-193 error body.
//! - [`openapi`]: the OpenAPI 3.1 document of the routes.
//! - [`connect`]: the Connect protocol on the gRPC paths, over the same in-process call and
//!   JSON writers.
//!
//! ## The cost of a request
//!
//! The gateway is meant to cost little next to the RPC it calls: a REST read should keep up
//! with the same read over gRPC. So what can be computed once is computed when the gateway
//! is built (a plan per route: the response writer, field numbers, the request encoder),
//! and the common requests take fast paths that fall back to the general path wherever
//! they would not produce exactly its result: a request with only path variables is encoded straight to protobuf
//! ([`transcode::SimpleRequest`]); a response is written from its wire bytes without being
//! decoded into a `DynamicMessage` ([`wire::Plans`]).

pub mod connect;
pub mod error;
pub mod grpc_call;
pub mod json;
pub mod openapi;
pub mod routes;
pub mod strict_json;
pub mod template;
pub mod transcode;
pub mod wire;

use std::{
    borrow::Cow,
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, Value};
use tonic::Code;
use tower::{Service, util::BoxCloneSyncService};

pub use crate::{
    error::HttpError,
    grpc_call::GrpcService,
    routes::{Route, RouteError},
};

/// Whether `error` (or an error it was caused by) is a `TimedOut` I/O error: what a server
/// puts in a request body that did not arrive by its deadline. Such a body is answered 408
/// on REST and `deadline_exceeded` on Connect.
pub fn body_timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        next = error.source();
    }
    false
}

/// Default largest accepted request body.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Errors of building a gateway.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A descriptor set could not be decoded or added.
    #[error("descriptor set: {0}")]
    Descriptors(String),
    /// The annotations describe a route that cannot be served.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// The OpenAPI settings do not fit the descriptors.
    #[error("openapi: {0}")]
    OpenApi(String),
}

/// A route the gateway matched, as access logs and traces name it: never the raw path, which
/// holds ids.
#[derive(Debug)]
pub struct MatchedRoute {
    /// HTTP method.
    pub method: Method,
    /// The path template, e.g. `/v1/{name=customers/*}`.
    pub template: String,
    /// The RPC it calls, `/package.Service/Method`.
    pub grpc_path: String,
}

/// What the gateway made of a request: an extension of every response it answers, for
/// access logs and traces.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The route matched (`None`: no route, 404 or 405).
    pub route: Option<Arc<MatchedRoute>>,
    /// The gRPC code the answer stands for (for a stream, that of its start).
    pub code: Code,
}

/// A text filter for error messages, e.g. one that masks personal data.
pub type Redactor = fn(&str) -> Cow<'_, str>;

/// Configures a [`Gateway`].
pub struct Builder {
    pool: DescriptorPool,
    services: Vec<String>,
    max_body_bytes: usize,
    redact: Option<Redactor>,
    request_id: Option<http::HeaderName>,
}

impl Builder {
    /// Adds the files of an encoded `FileDescriptorSet` (files already present are kept).
    pub fn descriptors(mut self, encoded: &[u8]) -> Result<Self, BuildError> {
        add_files(&mut self.pool, encoded)?;
        Ok(self)
    }

    /// Exposes the routes of a service (fully qualified name, e.g. `customer.v1.CustomerService`).
    pub fn service(mut self, name: impl Into<String>) -> Self {
        self.services.push(name.into());
        self
    }

    /// Largest accepted request body (default 1 MiB); larger bodies answer 413.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Passes the errors the gateway itself answers (no route, unreadable or ill-typed body,
    /// bad parameter), which may quote the request, through `redact`: their message and every
    /// string in their details. Errors of the service are passed on as the service wrote them.
    pub fn redact_errors(mut self, redact: Redactor) -> Self {
        self.redact = Some(redact);
        self
    }

    /// Puts the value of the request header `name` (e.g. `x-request-id`) into the
    /// `google.rpc.ErrorInfo` metadata of every error answered, as `requestId`, unless the
    /// service already put one there.
    pub fn request_id_header(mut self, name: http::HeaderName) -> Self {
        self.request_id = Some(name);
        self
    }

    /// The OpenAPI 3.1 document of the routes this builder would serve.
    pub fn openapi(&self, info: &openapi::Info) -> Result<serde_json::Value, BuildError> {
        info.constraints
            .check(&self.pool)
            .map_err(BuildError::OpenApi)?;
        let routes = routes::routes(&self.pool, &self.services)?;
        Ok(openapi::document(&self.pool, &routes, info))
    }

    /// The Connect protocol for the services of this builder over `grpc` (as for
    /// [`Builder::build`]), taking request messages of at most `max_message_bytes`.
    pub fn connect<S, B>(
        &self,
        grpc: S,
        max_message_bytes: usize,
    ) -> Result<connect::Connect, BuildError>
    where
        S: Upstream<B>,
        B: BytesBody,
    {
        connect::Connect::new(
            self.pool.clone(),
            &self.services,
            boxed(grpc),
            max_message_bytes,
            self.redact,
            self.request_id.clone(),
        )
    }

    /// Builds the gateway over `grpc`, which must route `/{service}/{method}` gRPC requests
    /// (e.g. the same tonic services the server mounts).
    pub fn build<S, B>(self, grpc: S) -> Result<Gateway, BuildError>
    where
        S: Upstream<B>,
        B: BytesBody,
    {
        let routes = routes::routes(&self.pool, &self.services)?;
        let mut plans = wire::Plans::default();
        let route_plans = routes
            .iter()
            .map(|route| RoutePlan::new(route, &mut plans))
            .collect();
        let mut verbs: Vec<String> = routes
            .iter()
            .filter_map(|route| route.template.verb.clone())
            .collect();
        verbs.sort();
        verbs.dedup();
        let grpc = boxed(grpc);
        Ok(Gateway {
            inner: Arc::new(Inner {
                pool: self.pool,
                index: routes::RouteIndex::new(&routes),
                routes,
                route_plans,
                plans,
                verbs,
                grpc,
                max_body_bytes: self.max_body_bytes,
                redact: self.redact,
                request_id: self.request_id,
            }),
        })
    }
}

/// What the gateway and Connect call: a cloneable tower service answering gRPC requests
/// (e.g. the tonic services the server mounts), with a response body of [`BytesBody`].
pub trait Upstream<B>:
    Service<
        http::Request<axum::body::Body>,
        Response = http::Response<B>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S, B> Upstream<B> for S where
    S: Service<
            http::Request<axum::body::Body>,
            Response = http::Response<B>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// An HTTP body of bytes that can move between tasks: what requests bring and upstream
/// responses carry.
pub trait BytesBody:
    http_body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
    + Send
    + 'static
{
}

impl<B> BytesBody for B where
    B: http_body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + 'static
{
}

/// `grpc` as the boxed service the gateway and Connect call.
fn boxed<S: Upstream<B>, B: BytesBody>(grpc: S) -> GrpcService {
    BoxCloneSyncService::new(tower::ServiceExt::map_response(
        grpc,
        |response: http::Response<B>| response.map(axum::body::Body::new),
    ))
}

/// A `FileDescriptorSet` with each file kept as raw bytes: decoding through `prost_types`
/// would drop the unknown fields that carry custom options such as `google.api.http`.
#[derive(Clone, PartialEq, Message)]
struct RawFileDescriptorSet {
    #[prost(bytes = "vec", repeated, tag = "1")]
    file: Vec<Vec<u8>>,
}

/// Adds the files of an encoded set, skipping files the pool already has (sets built by
/// different tools often share `google/protobuf/*.proto` with small differences).
fn add_files(pool: &mut DescriptorPool, encoded: &[u8]) -> Result<(), BuildError> {
    let set = RawFileDescriptorSet::decode(encoded)
        .map_err(|e| BuildError::Descriptors(e.to_string()))?;
    for raw in set.file {
        let file = prost_types::FileDescriptorProto::decode(raw.as_slice())
            .map_err(|e| BuildError::Descriptors(e.to_string()))?;
        if pool.get_file_by_name(file.name()).is_some() {
            continue;
        }
        // The same types under another file name (a vendored copy of the file that another
        // set, e.g. tonic-types', names differently): the first definition is kept.
        let package = file.package();
        let defined = file.message_type.iter().any(|message| {
            let name = if package.is_empty() {
                message.name().to_owned()
            } else {
                format!("{package}.{}", message.name())
            };
            pool.get_message_by_name(&name).is_some()
        });
        if defined {
            continue;
        }
        pool.decode_file_descriptor_proto(raw.as_slice())
            .map_err(|e| BuildError::Descriptors(e.to_string()))?;
    }
    Ok(())
}

/// A buffer for the JSON of the message `bytes`: canonical JSON (camelCase names, defaults
/// spelled out) runs about twice the bytes.
fn json_buffer(bytes: &[u8]) -> Vec<u8> {
    Vec::with_capacity(bytes.len() * 2 + 256)
}

/// The REST/JSON face of a set of gRPC services. A cloneable tower service; mount it as the
/// fallback of the server's router.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    pool: DescriptorPool,
    routes: Vec<Route>,
    /// The routes by method and literal second segment.
    index: routes::RouteIndex,
    /// Per route (same index), what its requests and responses need, computed once.
    route_plans: Vec<RoutePlan>,
    /// The wire-level writers of every response type.
    plans: wire::Plans,
    /// The custom verbs of the routes (`undelete`).
    verbs: Vec<String>,
    grpc: GrpcService,
    max_body_bytes: usize,
    redact: Option<Redactor>,
    request_id: Option<http::HeaderName>,
}

/// A unary response's body and the headers taken from its message.
struct Answer {
    json: Vec<u8>,
    etag: Option<HeaderValue>,
    /// `Location` (creations only).
    location: Option<HeaderValue>,
}

/// What serving one route needs, derived from its descriptors when the gateway is built.
#[derive(Debug)]
struct RoutePlan {
    /// The response type's writer in [`Inner::plans`].
    response: usize,
    /// `response_body`: the field number answered instead of the whole response.
    response_body: Option<u32>,
    /// The response's top-level `etag` / `name` string fields (`ETag`, `Location`).
    etag: Option<u32>,
    name: Option<u32>,
    /// The encoder for requests that need no parsing, if the route's variables allow it.
    request: Option<transcode::SimpleRequest>,
    /// The RPC streams its responses (NDJSON / SSE).
    streaming: bool,
    /// A `POST` to a `Create…` RPC: 201 Created with `Location`.
    creates: bool,
    /// The route as [`Outcome`] names it.
    matched: Arc<MatchedRoute>,
}

impl RoutePlan {
    fn new(route: &Route, plans: &mut wire::Plans) -> Self {
        let output = route.rpc.output();
        // As `etag_header` / `location` read them: a singular string field of that name.
        let string_field = |name: &str| {
            output
                .get_field_by_name(name)
                .filter(|f| f.kind() == prost_reflect::Kind::String && !f.is_list())
                .map(|f| f.number())
        };
        Self {
            response: plans.add(&output),
            response_body: route.response_body.as_ref().map(|f| f.number()),
            etag: string_field("etag"),
            name: string_field("name"),
            request: transcode::SimpleRequest::new(route),
            streaming: route.server_streaming(),
            creates: route.creates(),
            matched: Arc::new(MatchedRoute {
                method: route.method.clone(),
                template: route.template.source.clone(),
                grpc_path: route.grpc_path.clone(),
            }),
        }
    }
}

impl Gateway {
    /// Starts configuring a gateway from an encoded `FileDescriptorSet` that includes
    /// `google/api/annotations.proto`. The `google.rpc` error detail types are always known.
    pub fn builder(descriptors: &[u8]) -> Result<Builder, BuildError> {
        let mut pool = DescriptorPool::new();
        add_files(&mut pool, descriptors)?;
        add_files(&mut pool, tonic_types::pb::FILE_DESCRIPTOR_SET)?;
        Ok(Builder {
            pool,
            services: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            redact: None,
            request_id: None,
        })
    }

    /// The routes served, most specific first.
    pub fn routes(&self) -> &[Route] {
        &self.inner.routes
    }

    /// The descriptors the routes come from.
    pub fn pool(&self) -> &DescriptorPool {
        &self.inner.pool
    }

    /// Transcodes `request` as serving it would and starts its gRPC call, for a caller that
    /// writes the response itself in a representation the gateway does not (e.g. CSV rows
    /// of a server stream). The route is returned for the response's [`Outcome`]; a failure
    /// comes as the response the gateway would have sent (with its [`Outcome`]).
    pub async fn start_call<B>(
        &self,
        request: http::Request<B>,
    ) -> Result<(Arc<MatchedRoute>, grpc_call::Call), http::Response<axum::body::Body>>
    where
        B: BytesBody,
    {
        let inner = &self.inner;
        let (mut parts, body) = request.into_parts();
        let request_id = header_text(inner.request_id.as_ref(), &parts.headers);
        let fail = |route: Option<Arc<MatchedRoute>>, error: HttpError| {
            let mut error = inner.redacted(error);
            if let Some(id) = request_id.clone() {
                error.add_error_metadata("requestId", id);
            }
            let code = error.code;
            let mut response = error.into_response();
            response.extensions_mut().insert(Outcome { route, code });
            response
        };
        let (index, captures) = inner
            .route(&parts.method, parts.uri.path())
            .map_err(|error| fail(None, error))?;
        let (route, matched) = (&inner.routes[index], &inner.route_plans[index].matched);
        let started = async {
            let body = inner.read_body(&parts, body).await?;
            let prepared = transcode::prepare(route, &parts, captures, &body)?;
            let mut framed = grpc_call::frame_buffer(prepared.message.encoded_len());
            // Encoding into a Vec cannot run out of room.
            let _ = prepared.message.encode(&mut framed);
            let extensions = std::mem::take(&mut parts.extensions);
            grpc_call::start_framed(
                &inner.grpc,
                &route.grpc_uri,
                framed,
                prepared.metadata,
                extensions,
            )
            .await
            .map_err(|status| inner.status_error(&status, prepared.if_match))
        };
        match started.await {
            Ok(call) => Ok((matched.clone(), call)),
            Err(error) => Err(fail(Some(matched.clone()), error)),
        }
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("routes", &self.inner.routes.len())
            .finish()
    }
}

impl<B> Service<http::Request<B>> for Gateway
where
    B: BytesBody,
{
    type Response = http::Response<axum::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            if parts.method == Method::OPTIONS
                && let Some(response) = inner.options(parts.uri.path())
            {
                return Ok(response);
            }
            let (index, answer) = match inner.route(&parts.method, parts.uri.path()) {
                Ok((index, captures)) => (
                    Some(index),
                    inner.handle(index, captures, &mut parts, body).await,
                ),
                Err(error) => (None, Err(inner.redacted(error))),
            };
            let route = index.map(|index| inner.route_plans[index].matched.clone());
            let (code, mut response) = match answer {
                Ok(response) => (Code::Ok, response),
                Err(mut error) => {
                    // Read only for an error: a success does not quote it.
                    if let Some(id) = header_text(inner.request_id.as_ref(), &parts.headers) {
                        error.add_error_metadata("requestId", id);
                    }
                    (error.code, error.into_response())
                }
            };
            response.extensions_mut().insert(Outcome { route, code });
            Ok(response)
        })
    }
}

impl Inner {
    async fn handle<B>(
        self: &Arc<Self>,
        index: usize,
        captures: template::Captures,
        parts: &mut http::request::Parts,
        body: B,
    ) -> Result<http::Response<axum::body::Body>, HttpError>
    where
        B: BytesBody,
    {
        let (route, plan) = (&self.routes[index], &self.route_plans[index]);
        let body = self
            .read_body(parts, body)
            .await
            .map_err(|e| self.redacted(e))?;

        // The request message, encoded straight into its gRPC frame.
        let mut framed = grpc_call::frame_buffer(128);
        let simple = plan
            .request
            .as_ref()
            .and_then(|simple| simple.encode(route, parts, &captures, &body, &mut framed));
        let (metadata, if_match) = match simple {
            Some(if_match) => (transcode::metadata(&parts.headers), if_match),
            None => {
                let prepared = transcode::prepare(route, parts, captures, &body)
                    .map_err(|e| self.redacted(e))?;
                framed.truncate(grpc_call::FRAME_HEADER);
                // Encoding into a Vec cannot run out of room.
                let _ = prepared.message.encode(&mut framed);
                (prepared.metadata, prepared.if_match)
            }
        };
        // The request's extensions go along, so layers around the service see what layers
        // around the gateway put there.
        let extensions = std::mem::take(&mut parts.extensions);
        let mut call =
            grpc_call::start_framed(&self.grpc, &route.grpc_uri, framed, metadata, extensions)
                .await
                .map_err(|status| self.status_error(&status, if_match))?;

        if plan.streaming {
            return Ok(self.stream(index, call, &parts.headers));
        }
        let first = call
            .next()
            .await
            .map_err(|s| self.status_error(&s, if_match))?;
        let bytes = first.ok_or_else(|| {
            HttpError::from_status(&tonic::Status::internal("no response message"), &self.pool)
        })?;
        // Drain to the end: the status in the trailers decides success.
        while call
            .next()
            .await
            .map_err(|s| self.status_error(&s, if_match))?
            .is_some()
        {}
        let created = plan.creates;
        let Answer {
            json,
            etag,
            location,
        } = match self.response_fast(plan, &bytes, created) {
            Some(answer) => answer,
            None => self.response_general(route, bytes, created)?,
        };

        let mut response = http::Response::new(axum::body::Body::from(json));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in transcode::metadata_headers(&call.headers) {
            headers.append(name, value);
        }
        if let Some(etag) = etag {
            headers.insert(header::ETAG, etag);
        }
        if created {
            *response.status_mut() = StatusCode::CREATED;
            if let Some(location) = location {
                response.headers_mut().insert(header::LOCATION, location);
            }
        }
        Ok(response)
    }

    /// The JSON, `ETag` and (for a creation) `Location` of a unary response, written from its
    /// wire bytes; `None` where [`wire`] leaves the message to the general path.
    fn response_fast<'b>(
        &self,
        plan: &RoutePlan,
        bytes: &'b [u8],
        created: bool,
    ) -> Option<Answer> {
        // `name` only makes the `Location` of a creation.
        let header_fields = [plan.etag, plan.name.filter(|_| created)];
        let (json, [etag, name]) = match plan.response_body {
            // The header fields found while the message is written.
            None => {
                let mut json = json_buffer(bytes);
                let found = self
                    .plans
                    .write_finding(plan.response, bytes, &mut json, header_fields)
                    .ok()?;
                (json, found)
            }
            Some(_) => (
                self.write_fast(plan, bytes).ok()?,
                header_fields.map(|number| number.and_then(|n| wire::last_string(bytes, n))),
            ),
        };
        // An absent field reads as "", as `get_field_by_name` gives its default.
        let text =
            |number: Option<u32>, found: Option<&'b str>| number.map(|_| found.unwrap_or(""));
        let etag = text(plan.etag, etag).and_then(transcode::etag_value);
        let location = if created {
            text(plan.name, name).and_then(|name| self.location(name))
        } else {
            None
        };
        Some(Answer {
            json,
            etag,
            location,
        })
    }

    /// A response message (or its `response_body` field) as JSON, from its wire bytes.
    fn write_fast(&self, plan: &RoutePlan, bytes: &[u8]) -> Result<Vec<u8>, wire::Unsupported> {
        let mut json = json_buffer(bytes);
        match plan.response_body {
            None => self.plans.write(plan.response, bytes, &mut json)?,
            Some(number) => self
                .plans
                .write_field(plan.response, number, bytes, &mut json)?,
        }
        Ok(json)
    }

    /// [`Inner::response_fast`] through a decoded `DynamicMessage`: every message the fast
    /// path declines, and the errors (an undecodable response is a 500).
    fn response_general(
        &self,
        route: &Route,
        bytes: Bytes,
        created: bool,
    ) -> Result<Answer, HttpError> {
        let message = DynamicMessage::decode(route.rpc.output(), bytes).map_err(|e| {
            HttpError::from_status(
                &tonic::Status::internal(format!("undecodable response: {e}")),
                &self.pool,
            )
        })?;
        let json = transcode::response_bytes(route, &message)
            .map_err(|e| HttpError::from_status(&tonic::Status::internal(e), &self.pool))?;
        let etag = transcode::etag_header(&message);
        let location = if created {
            match message.get_field_by_name("name").as_deref() {
                Some(Value::String(name)) => self.location(name),
                _ => None,
            }
        } else {
            None
        };
        Ok(Answer {
            json,
            etag,
            location,
        })
    }

    /// The route for a method and path: 404 when no template matches the path, 405 (with
    /// `Allow`) when templates match but not for this method. A path that matches nothing
    /// as sent is tried once more with its percent-encoded `/` (`%2F`) decoded, which is how
    /// generated clients send a multi-segment variable (`businesses%2FDE-123` for
    /// `businesses/**`).
    fn route(&self, method: &Method, path: &str) -> Result<(usize, template::Captures), HttpError> {
        let first = self.route_as_sent(method, path);
        if let Err(error) = &first
            && error.status == StatusCode::NOT_FOUND
            && let Some(decoded) = decode_slashes(path)
        {
            let second = self.route_as_sent(method, &decoded);
            if second
                .as_ref()
                .err()
                .is_none_or(|error| error.status != StatusCode::NOT_FOUND)
            {
                return second;
            }
        }
        first
    }

    /// `OPTIONS` on a served path: 204 with `Allow` (CORS preflights are answered before the
    /// gateway). `None` for a path no route serves.
    fn options(&self, path: &str) -> Option<http::Response<axum::body::Body>> {
        let mut allowed = self.allowed(path);
        if allowed.is_empty() {
            allowed = decode_slashes(path).map_or_else(Vec::new, |path| self.allowed(&path));
        }
        if allowed.is_empty() {
            return None;
        }
        allowed.push("OPTIONS");
        let mut response = http::Response::new(axum::body::Body::empty());
        *response.status_mut() = StatusCode::NO_CONTENT;
        if let Ok(allow) = HeaderValue::from_str(&allowed.join(", ")) {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        Some(response)
    }

    /// The verb the path of `shape` ends in (`undelete` of `/v1/customers/1:undelete`), if
    /// some route declares it.
    fn verb<'p>(&self, shape: &template::PathShape<'p>) -> Option<&'p str> {
        shape
            .verb()
            .filter(|verb| self.verbs.iter().any(|known| known == verb))
    }

    /// Whether `route` serves `path` (whose shape is `shape` and declared verb `verb`). A
    /// template without a verb does not match a path ending in a declared verb:
    /// `/v1/customers/1:undelete` is the undelete route's path only, not also the path of a
    /// customer `1:undelete`.
    fn serves(
        route: &Route,
        path: &str,
        shape: &template::PathShape<'_>,
        verb: Option<&str>,
    ) -> Option<template::Captures> {
        if route.template.verb.is_none() && verb.is_some() {
            return None;
        }
        route.template.matches_shape(path, shape)
    }

    /// The methods of the routes that serve `path`, sorted.
    fn allowed(&self, path: &str) -> Vec<&str> {
        let shape = template::PathShape::of(path);
        let verb = self.verb(&shape);
        let mut allowed: Vec<&str> = self
            .routes
            .iter()
            .filter(|route| Self::serves(route, path, &shape, verb).is_some())
            .map(|route| route.method.as_str())
            .collect();
        allowed.sort_unstable();
        allowed.dedup();
        allowed
    }

    fn route_as_sent(
        &self,
        method: &Method,
        path: &str,
    ) -> Result<(usize, template::Captures), HttpError> {
        let shape = template::PathShape::of(path);
        let verb = self.verb(&shape);
        // Templates are matched only for the routes of this method that the index leaves
        // (in table order); the others are tried only to tell 405 from 404.
        for &index in self.index.candidates(method, &shape) {
            let route = &self.routes[index];
            if route.template.may_match(&shape)
                && let Some(captures) = Self::serves(route, path, &shape, verb)
            {
                return Ok((index, captures));
            }
        }
        let allowed = self.allowed(path);
        if allowed.is_empty() {
            return Err(HttpError::with_status(
                StatusCode::NOT_FOUND,
                Code::NotFound,
                "ROUTE_NOT_FOUND",
                format!("no route for {method} {path}"),
            ));
        }
        let mut error = HttpError::with_status(
            StatusCode::METHOD_NOT_ALLOWED,
            Code::Unimplemented,
            "METHOD_NOT_ALLOWED",
            format!(
                "{method} is not allowed on {path}; use {}",
                allowed.join(", ")
            ),
        );
        if let Ok(allow) = HeaderValue::from_str(&allowed.join(", ")) {
            error.headers.push((header::ALLOW, allow));
        }
        Err(error)
    }

    async fn read_body<B>(&self, parts: &http::request::Parts, body: B) -> Result<Bytes, HttpError>
    where
        B: BytesBody,
    {
        let too_large = || {
            HttpError::with_status(
                StatusCode::PAYLOAD_TOO_LARGE,
                Code::InvalidArgument,
                "BODY_TOO_LARGE",
                format!("the request body exceeds {} bytes", self.max_body_bytes),
            )
        };
        // GET/DELETE usually carry nothing: skip the collection machinery (and the header:
        // a body that has ended declares no length beyond what it held).
        if http_body::Body::is_end_stream(&body) {
            return Ok(Bytes::new());
        }
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.max_body_bytes as u64) {
            return Err(too_large());
        }
        match Limited::new(body, self.max_body_bytes).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(too_large()),
            Err(error) if body_timed_out(&*error) => Err(HttpError::with_status(
                http::StatusCode::REQUEST_TIMEOUT,
                Code::DeadlineExceeded,
                "REQUEST_TIMEOUT",
                "the request body did not arrive in time",
            )),
            Err(error) => Err(HttpError::bad_request(
                "UNREADABLE_BODY",
                format!("the request body could not be read: {error}"),
                Vec::new(),
            )),
        }
    }

    /// `error` through the configured [`Redactor`], if any.
    fn redacted(&self, mut error: HttpError) -> HttpError {
        if let Some(redact) = self.redact {
            if let Cow::Owned(message) = redact(&error.message) {
                error.message = message;
            }
            for detail in &mut error.details {
                redact_strings(detail, redact);
            }
        }
        error
    }

    /// A service status as HTTP. ABORTED is a stale etag (AIP-154) and answers 412 however
    /// the etag was sent: in `If-Match`, in the body or in the query — one answer for one
    /// situation.
    fn status_error(&self, status: &tonic::Status, _if_match: bool) -> HttpError {
        let mut error = HttpError::from_status(status, &self.pool);
        if status.code() == Code::Aborted {
            error.status = StatusCode::PRECONDITION_FAILED;
        }
        error
    }

    /// `Location` of a created resource: the GET route whose only variable matches its name.
    fn location(&self, name: &str) -> Option<HeaderValue> {
        self.routes
            .iter()
            .filter(|route| route.method == Method::GET && route.template.verb.is_none())
            .filter(|route| {
                route.template.variables.len() == 1
                    && route.template.variables[0].field_path == "name"
            })
            .find_map(|route| route.template.render(&[name]))
            .and_then(|path| HeaderValue::from_str(&path).ok())
    }

    /// One message of a server stream as JSON: the wire-level writer, else the general path.
    fn stream_message(&self, index: usize, bytes: Bytes) -> Result<Vec<u8>, String> {
        let (route, plan) = (&self.routes[index], &self.route_plans[index]);
        if let Ok(json) = self.write_fast(plan, &bytes) {
            return Ok(json);
        }
        let message =
            DynamicMessage::decode(route.rpc.output(), bytes).map_err(|e| e.to_string())?;
        transcode::response_bytes(route, &message)
    }

    /// A server-streaming response: NDJSON, or Server-Sent Events when the client accepts
    /// `text/event-stream`. An error after the first message ends the stream with an error
    /// object.
    fn stream(
        self: &Arc<Self>,
        index: usize,
        call: grpc_call::Call,
        request_headers: &http::HeaderMap,
    ) -> http::Response<axum::body::Body> {
        let sse = request_headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("text/event-stream"));
        let response_headers = call.headers.clone();
        let inner = Arc::clone(self);
        let chunks = futures_util::stream::unfold(Some(call), move |state| {
            let inner = Arc::clone(&inner);
            async move {
                let mut call = state?;
                let pool = &inner.pool;
                let chunk = match call.next().await {
                    Ok(Some(bytes)) => {
                        let json = inner.stream_message(index, bytes);
                        match json {
                            Ok(json) => {
                                let mut chunk = Vec::with_capacity(json.len() + 8);
                                if sse {
                                    chunk.extend_from_slice(b"data: ");
                                    chunk.extend_from_slice(&json);
                                    chunk.extend_from_slice(b"\n\n");
                                } else {
                                    chunk.extend_from_slice(&json);
                                    chunk.push(b'\n');
                                }
                                return Some((Ok::<_, Infallible>(Bytes::from(chunk)), Some(call)));
                            }
                            Err(e) => HttpError::from_status(&tonic::Status::internal(e), pool),
                        }
                    }
                    Ok(None) => return None,
                    Err(status) => HttpError::from_status(&status, pool),
                };
                let text = serde_json::to_string(&chunk.body()).unwrap_or_default();
                let chunk = if sse {
                    format!("event: error\ndata: {text}\n\n")
                } else {
                    format!("{text}\n")
                };
                Some((Ok(Bytes::from(chunk)), None))
            }
        });
        let mut response = http::Response::new(axum::body::Body::from_stream(chunks));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(if sse {
                "text/event-stream"
            } else {
                "application/x-ndjson"
            }),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        for (name, value) in transcode::metadata_headers(&response_headers) {
            headers.append(name, value);
        }
        response
    }
}

/// The text of the header `name` (e.g. the request id), if configured and present.
fn header_text(name: Option<&http::HeaderName>, headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get(name?)?;
    value.to_str().ok().map(str::to_owned)
}

/// `path` with its percent-encoded `/` decoded, if it has any.
fn decode_slashes(path: &str) -> Option<String> {
    (path.contains("%2F") || path.contains("%2f"))
        .then(|| path.replace("%2F", "/").replace("%2f", "/"))
}

/// Applies `redact` to every string in `value`.
fn redact_strings(value: &mut serde_json::Value, redact: Redactor) {
    match value {
        serde_json::Value::String(text) => {
            if let Cow::Owned(redacted) = redact(text) {
                *text = redacted;
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                redact_strings(item, redact);
            }
        }
        serde_json::Value::Object(fields) => {
            for field in fields.values_mut() {
                redact_strings(field, redact);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn stars(text: &str) -> Cow<'_, str> {
        if text.contains("secret") {
            Cow::Owned(text.replace("secret", "***"))
        } else {
            Cow::Borrowed(text)
        }
    }

    #[test]
    fn redaction_reaches_every_string_of_the_details() {
        let mut error = HttpError::bad_request(
            "INVALID_BODY",
            "bad secret",
            vec![error::Violation {
                field: "customer.email".into(),
                description: "`secret` is not valid".into(),
            }],
        );
        for detail in &mut error.details {
            redact_strings(detail, stars);
        }
        let details = json!(error.details).to_string();
        assert!(!details.contains("secret"), "{details}");
        assert!(details.contains("`***` is not valid"), "{details}");
        assert!(details.contains("customer.email"), "{details}");
    }
}
