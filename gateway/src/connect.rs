//! The Connect protocol (<https://connectrpc.com/docs/protocol>) over the same gRPC services:
//! unary calls as plain HTTP (`POST` with `application/json` or `application/proto`, and `GET`
//! for the methods whose proto declares `idempotency_level = NO_SIDE_EFFECTS`), server streams
//! as enveloped `application/connect+json` / `application/connect+proto`.
//!
//! Like the REST routes, a Connect call is served by calling the gRPC method in-process
//! ([`grpc_call`]): the request is turned into one protobuf message (binary bodies are passed
//! on as they are, JSON is parsed against the method's input descriptor), the service answers
//! as it answers gRPC, and the response frames are passed on (binary) or written as JSON by
//! the same writers as the REST responses ([`wire`], [`json`]). So authentication, limits,
//! deadlines, metrics and the request id are those of the gRPC path, and the error details
//! are the ones a gRPC client decodes, re-encoded as Connect's
//! `{code, message, details: [{type, value, debug}]}`.
//!
//! Which methods may be called with `GET` is read from the descriptors, never listed here.
//! Compression is not offered: requests must come uncompressed (a compressed one is answered
//! `unimplemented`, naming `identity` as what is accepted) and responses are never compressed.

use std::{
    collections::{HashMap, HashSet},
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use base64::Engine;
use bytes::{BufMut, Bytes};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use prost::Message;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, MethodDescriptor,
    prost_types::method_options::IdempotencyLevel,
};
use serde_json::{Map, Value as Json, json};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::{
    BuildError, BytesBody, Outcome, Redactor,
    error::{code_name, http_status},
    grpc_call::{self, GrpcService},
    wire,
};

/// The value of `Connect-Protocol-Version` (and of the `connect` query parameter of a GET).
pub const PROTOCOL_VERSION: &str = "1";

/// Content types of unary Connect calls.
pub const UNARY_CONTENT_TYPES: [&str; 2] = ["application/json", "application/proto"];

/// Content types of streaming Connect calls.
pub const STREAM_CONTENT_TYPES: [&str; 2] =
    ["application/connect+json", "application/connect+proto"];

/// The flag of the envelope that ends a stream (its payload is JSON: error and trailers).
const END_STREAM: u8 = 0b10;
/// The flag of a compressed envelope.
const COMPRESSED: u8 = 0b01;
/// Envelope header: flags, 32-bit big-endian length.
const ENVELOPE_HEADER: usize = 5;

/// Request headers that belong to HTTP or to the Connect protocol itself, never passed on to
/// the service as metadata. Every other header is metadata, as in gRPC and gRPC-web.
const NOT_METADATA: [&str; 17] = [
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "content-type",
    "content-length",
    "content-encoding",
    "accept",
    "accept-encoding",
    "grpc-timeout",
    "grpc-encoding",
    "grpc-accept-encoding",
    "origin",
    "cookie",
];

/// Whether a request is meant for the Connect protocol: a `GET` (the Connect form of a read)
/// or a `POST` of one of its content types. What else reaches a gRPC path is gRPC, gRPC-web or
/// refused.
pub fn is_connect(method: &Method, headers: &HeaderMap) -> bool {
    if method == Method::GET {
        return true;
    }
    let Some(codec) = content_type(headers) else {
        return false;
    };
    UNARY_CONTENT_TYPES.contains(&codec.as_str()) || STREAM_CONTENT_TYPES.contains(&codec.as_str())
}

/// The content type's essence, lowercase, with `; charset=utf-8` (allowed for JSON) dropped.
fn content_type(headers: &HeaderMap) -> Option<String> {
    let text = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let mut parts = text.split(';');
    let essence = parts.next()?.trim().to_ascii_lowercase();
    for parameter in parts {
        let parameter = parameter.trim().to_ascii_lowercase().replace(' ', "");
        if !(essence.ends_with("json") && parameter == "charset=utf-8") {
            return None;
        }
    }
    Some(essence)
}

/// How messages are encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Json,
    Proto,
}

impl Codec {
    fn unary_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Proto => "application/proto",
        }
    }

    fn stream_type(self) -> &'static str {
        match self {
            Self::Json => "application/connect+json",
            Self::Proto => "application/connect+proto",
        }
    }
}

/// A method served over Connect.
struct Rpc {
    descriptor: MethodDescriptor,
    uri: http::Uri,
    streaming: bool,
    /// `idempotency_level = NO_SIDE_EFFECTS`: may be called with `GET`.
    no_side_effects: bool,
    /// The [`wire::Plans`] index of the output message.
    plan: usize,
}

/// The Connect face of a set of gRPC services: a cloneable tower service for the paths
/// `/{package.Service}/{Method}`.
#[derive(Clone)]
pub struct Connect {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Connect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connect")
            .field("methods", &self.inner.rpcs.len())
            .finish()
    }
}

struct Inner {
    pool: DescriptorPool,
    /// By path, `/package.Service/Method`.
    rpcs: HashMap<String, Rpc>,
    /// Paths of the client- and bidirectional-streaming methods, answered with a refusal
    /// that says where they are served instead of "no such method".
    client_streams: HashSet<String>,
    plans: wire::Plans,
    grpc: GrpcService,
    max_message_bytes: usize,
    redact: Option<Redactor>,
    request_id: Option<HeaderName>,
}

impl Connect {
    /// The unary and server-streaming methods of `services` (client and bidirectional
    /// streams are not served over Connect here) over `grpc`.
    pub(crate) fn new(
        pool: DescriptorPool,
        services: &[String],
        grpc: GrpcService,
        max_message_bytes: usize,
        redact: Option<Redactor>,
        request_id: Option<HeaderName>,
    ) -> Result<Self, BuildError> {
        let mut rpcs = HashMap::new();
        let mut client_streams = HashSet::new();
        let mut plans = wire::Plans::default();
        for name in services {
            let service = pool
                .get_service_by_name(name)
                .ok_or_else(|| BuildError::Descriptors(format!("no service {name}")))?;
            for method in service.methods() {
                let path = format!("/{}/{}", service.full_name(), method.name());
                if method.is_client_streaming() {
                    client_streams.insert(path);
                    continue;
                }
                let uri = path
                    .parse()
                    .map_err(|e| BuildError::Descriptors(format!("{path}: {e}")))?;
                let no_side_effects = method
                    .method_descriptor_proto()
                    .options
                    .as_ref()
                    .is_some_and(|options| {
                        options.idempotency_level() == IdempotencyLevel::NoSideEffects
                    });
                let rpc = Rpc {
                    plan: plans.add(&method.output()),
                    streaming: method.is_server_streaming(),
                    no_side_effects,
                    uri,
                    descriptor: method,
                };
                rpcs.insert(path, rpc);
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                rpcs,
                client_streams,
                plans,
                grpc,
                max_message_bytes,
                redact,
                request_id,
            }),
        })
    }
}

impl<B> tower::Service<http::Request<B>> for Connect
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
        Box::pin(async move { Ok(inner.serve(request).await) })
    }
}

/// An error the adapter raises itself, before or instead of a call: the HTTP status when it is
/// one Connect does not derive from the code (405, 415), and headers to add.
struct Refusal {
    status: Status,
    http: Option<StatusCode>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl From<Status> for Refusal {
    fn from(status: Status) -> Self {
        Self {
            status,
            http: None,
            headers: Vec::new(),
        }
    }
}

/// What a request asks for, once its protocol parts are checked.
struct Call<'a> {
    rpc: &'a Rpc,
    codec: Codec,
    streaming: bool,
    /// The request message, protobuf-encoded after [`grpc_call::FRAME_HEADER`] bytes of room.
    framed: Vec<u8>,
    metadata: HeaderMap,
}

impl Inner {
    async fn serve<B>(
        self: &Arc<Self>,
        request: http::Request<B>,
    ) -> http::Response<axum::body::Body>
    where
        B: BytesBody,
    {
        let (mut parts, body) = request.into_parts();
        let request_id = crate::header_text(self.request_id.as_ref(), &parts.headers);
        let streaming_type = content_type(&parts.headers)
            .is_some_and(|codec| STREAM_CONTENT_TYPES.contains(&codec.as_str()));
        let call = match self.prepare(&parts, body).await {
            Ok(call) => call,
            Err(refusal) => {
                let refusal = self.with_request_id(refusal, request_id.as_deref());
                return if streaming_type && refusal.http.is_none() {
                    self.end_stream_only(&refusal.status, stream_codec(&parts.headers))
                } else {
                    self.unary_error(refusal)
                };
            }
        };
        let extensions = std::mem::take(&mut parts.extensions);
        let rpc = call.rpc;
        let started =
            grpc_call::start_framed(&self.grpc, &rpc.uri, call.framed, call.metadata, extensions)
                .await;
        if call.streaming {
            return match started {
                Ok(grpc) => self.stream(rpc.plan, &rpc.descriptor, call.codec, grpc),
                Err(status) => self.end_stream_only(&status, call.codec),
            };
        }
        let mut grpc = match started {
            Ok(grpc) => grpc,
            Err(status) => return self.unary_error(status.into()),
        };
        let message = match unary_message(&mut grpc).await {
            Ok(message) => message,
            Err(status) => return self.unary_error(status.into()),
        };
        let body = match call.codec {
            Codec::Proto => message,
            Codec::Json => match self.json(rpc.plan, &rpc.descriptor, message) {
                Ok(json) => Bytes::from(json),
                Err(status) => return self.unary_error(status.into()),
            },
        };
        let mut response = http::Response::new(axum::body::Body::from(body));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(call.codec.unary_type()),
        );
        for (name, value) in crate::transcode::metadata_headers(&grpc.headers) {
            headers.append(name, value);
        }
        // Unary trailers travel as headers with a `trailer-` prefix.
        if let Some(trailers) = grpc.trailers() {
            for (name, value) in crate::transcode::metadata_headers(trailers) {
                if let Ok(name) = HeaderName::try_from(format!("trailer-{name}")) {
                    headers.append(name, value);
                }
            }
        }
        response.extensions_mut().insert(Outcome {
            route: None,
            code: Code::Ok,
        });
        response
    }

    /// Checks the protocol parts of a request and reads its message.
    async fn prepare<B>(&self, parts: &http::request::Parts, body: B) -> Result<Call<'_>, Refusal>
    where
        B: BytesBody,
    {
        let path = parts.uri.path();
        let rpc = self.rpcs.get(path).ok_or_else(|| {
            Status::unimplemented(if self.client_streams.contains(path) {
                format!(
                    "{path} takes a stream of requests, which this server serves over gRPC \
                     (and its REST binding), not Connect"
                )
            } else {
                format!("{path} is not a method served over Connect")
            })
        })?;
        let metadata = call_metadata(&parts.headers)?;
        let (codec, message) = match parts.method {
            Method::GET => self.get_message(rpc, parts)?,
            Method::POST => self.post_message(rpc, parts, body).await?,
            _ => return Err(method_not_allowed(rpc, parts)),
        };
        let framed = self.encode(rpc, codec, &message)?;
        Ok(Call {
            rpc,
            codec,
            streaming: rpc.streaming,
            framed,
            metadata,
        })
    }

    /// The codec and message of a POST: the body (a streaming call's one envelope) in the
    /// content type the kind of method takes, uncompressed.
    async fn post_message<B>(
        &self,
        rpc: &Rpc,
        parts: &http::request::Parts,
        body: B,
    ) -> Result<(Codec, Bytes), Refusal>
    where
        B: BytesBody,
    {
        let (codec, accepted) = match (rpc.streaming, content_type(&parts.headers).as_deref()) {
            (true, Some("application/connect+json")) | (false, Some("application/json")) => {
                (Codec::Json, None)
            }
            (true, Some("application/connect+proto")) | (false, Some("application/proto")) => {
                (Codec::Proto, None)
            }
            (true, _) => (Codec::Json, Some(STREAM_CONTENT_TYPES)),
            (false, _) => (Codec::Json, Some(UNARY_CONTENT_TYPES)),
        };
        if let Some(accepted) = accepted {
            return Err(unsupported_media_type(
                &parts.headers,
                parts.uri.path(),
                rpc.streaming,
                &accepted,
            ));
        }
        let encoding = if rpc.streaming {
            "connect-content-encoding"
        } else {
            "content-encoding"
        };
        if let Some(encoding) = parts.headers.get(encoding)
            && !encoding.as_bytes().eq_ignore_ascii_case(b"identity")
        {
            return Err(compressed(encoding.as_bytes(), rpc.streaming));
        }
        // An envelope header more than the message itself.
        let limit = self.max_message_bytes + ENVELOPE_HEADER;
        let body = match Limited::new(body, limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                return Err(too_large(self.max_message_bytes).into());
            }
            Err(error) if crate::body_timed_out(&*error) => {
                return Err(
                    Status::deadline_exceeded("the request body did not arrive in time").into(),
                );
            }
            Err(error) => {
                return Err(Status::invalid_argument(format!(
                    "the request body could not be read: {error}"
                ))
                .into());
            }
        };
        let message = if rpc.streaming {
            single_envelope(&body)?
        } else {
            body
        };
        if message.len() > self.max_message_bytes {
            return Err(too_large(self.max_message_bytes).into());
        }
        Ok((codec, message))
    }

    /// The codec and message of a GET: `?connect=v1&encoding=json|proto&message=…&base64=1`,
    /// for a method without side effects.
    fn get_message(
        &self,
        rpc: &Rpc,
        parts: &http::request::Parts,
    ) -> Result<(Codec, Bytes), Refusal> {
        if rpc.streaming || !rpc.no_side_effects {
            return Err(Refusal {
                status: Status::unimplemented(format!(
                    "GET is not allowed on {}: only methods without side effects \
                     (idempotency_level = NO_SIDE_EFFECTS) take GET; use POST",
                    parts.uri.path()
                )),
                http: Some(StatusCode::METHOD_NOT_ALLOWED),
                headers: vec![(header::ALLOW, HeaderValue::from_static("POST"))],
            });
        }
        let query = parts.uri.query().unwrap_or("");
        let (mut encoding, mut message, mut base64, mut compression) = (None, None, false, None);
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*key {
                "connect" if value != "v1" => {
                    return Err(invalid(
                        "UNSUPPORTED_PROTOCOL_VERSION",
                        "connect",
                        format!("connect=`{value}` is not supported: send connect=v1"),
                    )
                    .into());
                }
                "encoding" => encoding = Some(value.into_owned()),
                "message" => message = Some(value.into_owned()),
                "base64" => base64 = value == "1",
                "compression" => compression = Some(value.into_owned()),
                _ => {}
            }
        }
        if let Some(compression) = compression
            && compression != "identity"
        {
            return Err(compressed(compression.as_bytes(), false));
        }
        let codec = match encoding.as_deref() {
            Some("json") => Codec::Json,
            Some("proto") => Codec::Proto,
            Some(other) => {
                return Err(Refusal {
                    status: invalid(
                        "UNSUPPORTED_ENCODING",
                        "encoding",
                        format!("encoding=`{other}` is not supported: use json or proto"),
                    ),
                    http: Some(StatusCode::UNSUPPORTED_MEDIA_TYPE),
                    headers: Vec::new(),
                });
            }
            None => {
                return Err(invalid(
                    "MISSING_ENCODING",
                    "encoding",
                    "a Connect GET needs the query parameter encoding=json or encoding=proto"
                        .to_owned(),
                )
                .into());
            }
        };
        let message = message.unwrap_or_default();
        let message = if base64 {
            let trimmed = message.trim_end_matches('=');
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(trimmed)
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
                .map_err(|e| {
                    invalid(
                        "INVALID_MESSAGE",
                        "message",
                        format!("the message parameter is not base64: {e}"),
                    )
                })?
        } else {
            message.into_bytes()
        };
        if message.len() > self.max_message_bytes {
            return Err(too_large(self.max_message_bytes).into());
        }
        Ok((codec, Bytes::from(message)))
    }

    /// The request message as protobuf, after room for the gRPC frame header: binary as it
    /// came (the service decodes it), JSON parsed against the method's input.
    fn encode(&self, rpc: &Rpc, codec: Codec, message: &[u8]) -> Result<Vec<u8>, Refusal> {
        let mut framed = grpc_call::frame_buffer(message.len());
        match codec {
            Codec::Proto => framed.extend_from_slice(message),
            Codec::Json => {
                // An empty body is the empty message, as an empty binary body is.
                let text: &[u8] = if message.iter().all(u8::is_ascii_whitespace) {
                    b"{}"
                } else {
                    message
                };
                // A key named twice is refused, as on the REST routes: the message parser
                // would keep the last.
                let parsed = crate::strict_json::from_slice(text).and_then(|_| {
                    let mut deserializer = serde_json::Deserializer::from_slice(text);
                    DynamicMessage::deserialize_with_options(
                        rpc.descriptor.input(),
                        &mut deserializer,
                        &DeserializeOptions::new().deny_unknown_fields(true),
                    )
                    .and_then(|message| deserializer.end().map(|()| message))
                });
                let parsed = parsed.map_err(|e| {
                    let text = e.to_string();
                    let description = self.redact(&text);
                    invalid(
                        "INVALID_JSON",
                        "",
                        format!(
                            "the request is not a valid {} in JSON: {description}",
                            rpc.descriptor.input().full_name()
                        ),
                    )
                })?;
                // Encoding into a Vec cannot run out of room.
                let _ = parsed.encode(&mut framed);
            }
        }
        Ok(framed)
    }

    /// A response message as JSON: from its wire bytes, else through a decoded message.
    fn json(
        &self,
        plan: usize,
        descriptor: &MethodDescriptor,
        bytes: Bytes,
    ) -> Result<Vec<u8>, Status> {
        let mut out = Vec::with_capacity(bytes.len() * 2 + 64);
        if self.plans.write(plan, &bytes, &mut out).is_ok() {
            return Ok(out);
        }
        out.clear();
        let message = DynamicMessage::decode(descriptor.output(), bytes)
            .map_err(|e| Status::internal(format!("undecodable response: {e}")))?;
        crate::json::write_message(&message, &mut out).map_err(Status::internal)?;
        Ok(out)
    }

    fn redact<'t>(&self, text: &'t str) -> std::borrow::Cow<'t, str> {
        match self.redact {
            Some(redact) => redact(text),
            None => std::borrow::Cow::Borrowed(text),
        }
    }

    /// Puts the request id into the `ErrorInfo` of an error the adapter raised, as the service
    /// does for its own.
    fn with_request_id(&self, mut refusal: Refusal, request_id: Option<&str>) -> Refusal {
        let Some(request_id) = request_id else {
            return refusal;
        };
        let status = &refusal.status;
        let mut details = status.get_error_details();
        let mut info = details.error_info().cloned().unwrap_or_else(|| {
            tonic_types::ErrorInfo::new(
                code_name(status.code()),
                crate::error::error_domain(),
                HashMap::<String, String>::new(),
            )
        });
        info.metadata
            .entry("requestId".to_owned())
            .or_insert_with(|| request_id.to_owned());
        details.set_error_info(info.reason, info.domain, info.metadata);
        refusal.status = Status::with_error_details_and_metadata(
            status.code(),
            status.message(),
            details,
            status.metadata().clone(),
        );
        refusal
    }

    /// A unary error: the HTTP status from the code (or the refusal's own), the Connect error
    /// JSON, the status metadata as headers.
    fn unary_error(&self, refusal: Refusal) -> http::Response<axum::body::Body> {
        let Refusal {
            status,
            http,
            headers: extra,
        } = refusal;
        let body = serde_json::to_vec(&self.error_json(&status)).unwrap_or_default();
        let mut response = http::Response::new(axum::body::Body::from(body));
        *response.status_mut() = http.unwrap_or_else(|| http_status(status.code()));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // The status metadata (e.g. `www-authenticate`) and `Retry-After` from a RetryInfo,
        // as the REST routes answer them.
        for (name, value) in crate::HttpError::from_status(&status, &self.pool).headers {
            headers.append(name, value);
        }
        for (name, value) in extra {
            headers.append(name, value);
        }
        response.extensions_mut().insert(Outcome {
            route: None,
            code: status.code(),
        });
        response
    }

    /// The Connect error JSON of a status: `{code, message, details: [{type, value, debug}]}`,
    /// each detail the `google.protobuf.Any` of `grpc-status-details-bin` (its type name, its
    /// bytes in base64), with its JSON form as `debug`.
    fn error_json(&self, status: &Status) -> Json {
        let mut error = Map::new();
        error.insert("code".into(), json!(connect_code(status.code())));
        if !status.message().is_empty() {
            error.insert("message".into(), json!(status.message()));
        }
        let details: Vec<Json> = tonic_types::pb::Status::decode(status.details())
            .map(|rpc| rpc.details)
            .unwrap_or_default()
            .iter()
            .map(|any| {
                let name = any.type_url.rsplit('/').next().unwrap_or(&any.type_url);
                let mut detail = Map::new();
                detail.insert("type".into(), json!(name));
                detail.insert(
                    "value".into(),
                    json!(base64::engine::general_purpose::STANDARD_NO_PAD.encode(&any.value)),
                );
                if let Json::Object(mut debug) =
                    crate::error::decode_any(&any.type_url, &any.value, &self.pool)
                    && !debug.contains_key("value")
                {
                    debug.remove("@type");
                    detail.insert("debug".into(), Json::Object(debug));
                }
                Json::Object(detail)
            })
            .collect();
        if !details.is_empty() {
            error.insert("details".into(), Json::Array(details));
        }
        Json::Object(error)
    }

    /// A server stream: each message in an envelope, then the end-stream envelope (with the
    /// error, if the call failed, and the trailers). HTTP 200 whatever the outcome.
    fn stream(
        self: &Arc<Self>,
        plan: usize,
        descriptor: &MethodDescriptor,
        codec: Codec,
        call: grpc_call::Call,
    ) -> http::Response<axum::body::Body> {
        let response_headers = call.headers.clone();
        let descriptor = descriptor.clone();
        let state = (Some(call), Arc::clone(self));
        let chunks = futures_util::stream::unfold(state, move |(call, inner)| {
            let descriptor = descriptor.clone();
            async move {
                let mut call = call?;
                let (chunk, next) = match call.next().await {
                    Ok(Some(bytes)) => {
                        let payload = match codec {
                            Codec::Proto => Ok(bytes.to_vec()),
                            Codec::Json => inner.json(plan, &descriptor, bytes),
                        };
                        match payload {
                            Ok(payload) => (envelope(0, &payload), Some(call)),
                            Err(status) => (inner.end_stream(Some(&status), None), None),
                        }
                    }
                    Ok(None) => (inner.end_stream(None, call.trailers()), None),
                    Err(status) => (inner.end_stream(Some(&status), None), None),
                };
                Some((Ok::<_, Infallible>(chunk), (next, inner)))
            }
        });
        let mut response = http::Response::new(axum::body::Body::from_stream(chunks));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(codec.stream_type()),
        );
        for (name, value) in crate::transcode::metadata_headers(&response_headers) {
            headers.append(name, value);
        }
        response.extensions_mut().insert(Outcome {
            route: None,
            code: Code::Ok,
        });
        response
    }

    /// A stream that ends before any message: its end-stream envelope alone, HTTP 200.
    fn end_stream_only(&self, status: &Status, codec: Codec) -> http::Response<axum::body::Body> {
        let chunk = self.end_stream(Some(status), None);
        let mut response = http::Response::new(axum::body::Body::from(chunk));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(codec.stream_type()),
        );
        response.extensions_mut().insert(Outcome {
            route: None,
            code: status.code(),
        });
        response
    }

    /// The end-stream envelope: `{"error": {…}, "metadata": {name: [values]}}`, JSON whatever
    /// the codec. The metadata are the trailers, or for an error the status metadata.
    fn end_stream(&self, error: Option<&Status>, trailers: Option<&HeaderMap>) -> Bytes {
        let mut end = Map::new();
        if let Some(status) = error {
            end.insert("error".into(), self.error_json(status));
        }
        let metadata = match error {
            Some(status) => status.metadata().clone().into_headers(),
            None => trailers.cloned().unwrap_or_default(),
        };
        let mut values: Map<String, Json> = Map::new();
        for (name, value) in crate::transcode::metadata_headers(&metadata) {
            let entry = values
                .entry(name.as_str().to_owned())
                .or_insert_with(|| Json::Array(Vec::new()));
            if let (Json::Array(list), Ok(text)) = (entry, value.to_str()) {
                list.push(json!(text));
            }
        }
        if !values.is_empty() {
            end.insert("metadata".into(), Json::Object(values));
        }
        envelope(
            END_STREAM,
            &serde_json::to_vec(&Json::Object(end)).unwrap_or_default(),
        )
    }
}

/// The one message of a unary call, the call drained to its status.
async fn unary_message(call: &mut grpc_call::Call) -> Result<Bytes, Status> {
    let message = call
        .next()
        .await?
        .ok_or_else(|| Status::internal("no response message"))?;
    while call.next().await?.is_some() {}
    Ok(message)
}

/// `payload` in a Connect envelope with `flags`.
fn envelope(flags: u8, payload: &[u8]) -> Bytes {
    let mut out = bytes::BytesMut::with_capacity(ENVELOPE_HEADER + payload.len());
    out.put_u8(flags);
    out.put_u32(u32::try_from(payload.len()).unwrap_or(u32::MAX));
    out.put_slice(payload);
    out.freeze()
}

/// The message of a streaming request body: exactly one uncompressed envelope (a server
/// stream takes one request message), optionally followed by an empty end-stream envelope.
fn single_envelope(body: &Bytes) -> Result<Bytes, Refusal> {
    let malformed = |why: &str| -> Refusal {
        invalid(
            "INVALID_ENVELOPE",
            "",
            format!("malformed Connect envelope: {why}"),
        )
        .into()
    };
    let mut rest = body.clone();
    let mut message = None;
    while !rest.is_empty() {
        if rest.len() < ENVELOPE_HEADER {
            return Err(malformed("truncated header"));
        }
        let flags = rest[0];
        let length = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        if rest.len() < ENVELOPE_HEADER + length {
            return Err(malformed("truncated message"));
        }
        let payload = rest.slice(ENVELOPE_HEADER..ENVELOPE_HEADER + length);
        rest = rest.slice(ENVELOPE_HEADER + length..);
        if flags & COMPRESSED != 0 {
            return Err(compressed(b"(flagged compressed)", true));
        }
        if flags & END_STREAM != 0 {
            continue;
        }
        if message.replace(payload).is_some() {
            return Err(malformed(
                "a server stream takes exactly one request message",
            ));
        }
    }
    message.ok_or_else(|| malformed("no request message"))
}

/// The codec a streaming request asked for (JSON unless it named proto).
fn stream_codec(headers: &HeaderMap) -> Codec {
    match content_type(headers).as_deref() {
        Some("application/connect+proto") => Codec::Proto,
        _ => Codec::Json,
    }
}

/// The gRPC metadata of a call: the request's headers but HTTP's and the protocol's own,
/// with `Connect-Timeout-Ms` as `grpc-timeout`; `Connect-Protocol-Version`, if sent, must be
/// the one this speaks.
fn call_metadata(headers: &HeaderMap) -> Result<HeaderMap, Refusal> {
    if let Some(version) = headers.get("connect-protocol-version")
        && version.as_bytes() != PROTOCOL_VERSION.as_bytes()
    {
        return Err(invalid(
            "UNSUPPORTED_PROTOCOL_VERSION",
            "connect-protocol-version",
            format!(
                "Connect-Protocol-Version `{}` is not supported: send `{PROTOCOL_VERSION}`",
                String::from_utf8_lossy(version.as_bytes())
            ),
        )
        .into());
    }
    let mut metadata = metadata(headers);
    if let Some(timeout) = headers.get("connect-timeout-ms") {
        let millis = timeout
            .to_str()
            .ok()
            .filter(|text| (1..=10).contains(&text.len()))
            .and_then(|text| text.parse::<u64>().ok())
            .ok_or_else(|| {
                invalid(
                    "INVALID_TIMEOUT",
                    "connect-timeout-ms",
                    "Connect-Timeout-Ms must be a positive integer of at most 10 digits".to_owned(),
                )
            })?;
        // gRPC's timeout takes at most 8 digits: larger values in seconds.
        let grpc_timeout = if millis < 100_000_000 {
            format!("{millis}m")
        } else {
            format!("{}S", millis.div_ceil(1000).min(99_999_999))
        };
        if let Ok(value) = HeaderValue::from_str(&grpc_timeout) {
            metadata.insert("grpc-timeout", value);
        }
    }
    Ok(metadata)
}

/// 405 for an HTTP method Connect does not use, naming those the method takes.
fn method_not_allowed(rpc: &Rpc, parts: &http::request::Parts) -> Refusal {
    Refusal {
        status: Status::unimplemented(format!(
            "{} is not allowed on {}: Connect calls are POST (or GET for reads)",
            parts.method,
            parts.uri.path()
        )),
        http: Some(StatusCode::METHOD_NOT_ALLOWED),
        headers: vec![(
            header::ALLOW,
            HeaderValue::from_static(if rpc.no_side_effects && !rpc.streaming {
                "GET, POST"
            } else {
                "POST"
            }),
        )],
    }
}

/// Request headers that become gRPC metadata: all but HTTP's and the protocol's own.
fn metadata(headers: &HeaderMap) -> HeaderMap {
    let mut metadata = HeaderMap::new();
    for (name, value) in headers {
        let text = name.as_str();
        if NOT_METADATA.contains(&text) || text.starts_with("connect-") || text.starts_with("sec-")
        {
            continue;
        }
        metadata.append(name.clone(), value.clone());
    }
    metadata
}

/// Connect's name of a code: the gRPC name in snake case (`canceled` with one `l`).
pub fn connect_code(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// An INVALID_ARGUMENT of the adapter: `ErrorInfo` (reason, domain `gateway`) and, when it is
/// about one field or parameter, a `BadRequest` naming it, as the REST routes answer.
fn invalid(reason: &str, field: &str, message: String) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(
        reason,
        crate::error::error_domain(),
        HashMap::<String, String>::new(),
    );
    if !field.is_empty() {
        details.set_bad_request(vec![FieldViolation::new(field, message.clone())]);
    }
    Status::with_error_details(Code::InvalidArgument, message, details)
}

fn too_large(limit: usize) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(
        "MESSAGE_TOO_LARGE",
        crate::error::error_domain(),
        HashMap::<String, String>::new(),
    );
    Status::with_error_details(
        Code::ResourceExhausted,
        format!("the request message exceeds {limit} bytes"),
        details,
    )
}

/// A compressed request: `unimplemented`, naming the one encoding accepted.
fn compressed(encoding: &[u8], streaming: bool) -> Refusal {
    let mut details = ErrorDetails::new();
    details.set_error_info(
        "UNSUPPORTED_COMPRESSION",
        crate::error::error_domain(),
        HashMap::<String, String>::new(),
    );
    let name = if streaming {
        "connect-accept-encoding"
    } else {
        "accept-encoding"
    };
    Refusal {
        status: Status::with_error_details(
            Code::Unimplemented,
            format!(
                "compression `{}` is not supported: send the request uncompressed (identity)",
                String::from_utf8_lossy(encoding)
            ),
            details,
        ),
        http: None,
        headers: vec![(
            HeaderName::from_static(name),
            HeaderValue::from_static("identity"),
        )],
    }
}

/// 415 for a content type the method's kind of call does not take, naming those it does.
fn unsupported_media_type(
    headers: &HeaderMap,
    path: &str,
    streaming: bool,
    accepted: &[&str],
) -> Refusal {
    let got = headers
        .get(header::CONTENT_TYPE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    let got = match got {
        Some(text) => format!("`{}`", text.chars().take(80).collect::<String>()),
        None => "no content type".to_owned(),
    };
    let kind = if streaming {
        "a server-streaming method"
    } else {
        "a unary method"
    };
    let mut details = ErrorDetails::new();
    details.set_error_info(
        "UNSUPPORTED_MEDIA_TYPE",
        crate::error::error_domain(),
        HashMap::<String, String>::new(),
    );
    let accepted_list = accepted
        .iter()
        .map(|t| format!("`{t}`"))
        .collect::<Vec<_>>()
        .join(" or ");
    Refusal {
        status: Status::with_error_details(
            Code::InvalidArgument,
            format!(
                "{got} is not supported on {path}, {kind}: over Connect send {accepted_list}; \
                 gRPC and gRPC-web are served on the same path"
            ),
            details,
        ),
        http: Some(StatusCode::UNSUPPORTED_MEDIA_TYPE),
        headers: HeaderValue::from_str(&accepted.join(", "))
            .map(|value| vec![(HeaderName::from_static("accept-post"), value)])
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn with_type(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, content_type.parse().unwrap());
        headers
    }

    #[test]
    fn json_may_say_utf_8_and_nothing_else_takes_parameters() {
        assert_eq!(
            content_type(&with_type("Application/JSON; Charset=UTF-8")).as_deref(),
            Some("application/json")
        );
        assert_eq!(
            content_type(&with_type("application/connect+json;charset=utf-8")).as_deref(),
            Some("application/connect+json")
        );
        assert_eq!(
            content_type(&with_type("application/json; charset=latin1")),
            None
        );
        assert_eq!(
            content_type(&with_type("application/proto; charset=utf-8")),
            None
        );
    }

    #[test]
    fn a_streaming_request_is_one_message_envelope_optionally_ended() {
        let message = envelope(0, b"abc");
        assert_eq!(single_envelope(&message).ok().unwrap().as_ref(), b"abc");
        let mut ended = message.to_vec();
        ended.extend_from_slice(&envelope(END_STREAM, b""));
        assert_eq!(
            single_envelope(&Bytes::from(ended)).ok().unwrap().as_ref(),
            b"abc"
        );
        let reason = |body: &[u8]| {
            let refusal = single_envelope(&Bytes::copy_from_slice(body))
                .err()
                .unwrap();
            (refusal.status.code(), refusal.status.message().to_owned())
        };
        let mut two = message.to_vec();
        two.extend_from_slice(&message);
        assert_eq!(
            reason(&two),
            (
                Code::InvalidArgument,
                "malformed Connect envelope: a server stream takes exactly one request message"
                    .to_owned()
            )
        );
        assert_eq!(
            reason(&message[..7]).1,
            "malformed Connect envelope: truncated message"
        );
        assert_eq!(
            reason(&message[..3]).1,
            "malformed Connect envelope: truncated header"
        );
        assert_eq!(
            reason(b"").1,
            "malformed Connect envelope: no request message"
        );
        assert_eq!(reason(&envelope(COMPRESSED, b"abc")).0, Code::Unimplemented);
    }

    #[test]
    fn protocol_headers_are_not_metadata_and_the_rest_is() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("content-type", "application/json"),
            ("connect-protocol-version", "1"),
            ("connect-timeout-ms", "10"),
            ("accept-encoding", "gzip"),
            ("grpc-timeout", "1S"),
            ("authorization", "Bearer x"),
            ("x-request-id", "r"),
            ("tenant", "acme"),
        ] {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let mut names: Vec<&str> = Vec::new();
        let metadata = metadata(&headers);
        names.extend(metadata.keys().map(HeaderName::as_str));
        names.sort_unstable();
        assert_eq!(names, ["authorization", "tenant", "x-request-id"]);
    }

    #[test]
    fn codes_are_named_as_connect_names_them() {
        assert_eq!(connect_code(Code::Cancelled), "canceled");
        assert_eq!(connect_code(Code::InvalidArgument), "invalid_argument");
        assert_eq!(connect_code(Code::DeadlineExceeded), "deadline_exceeded");
        assert_eq!(connect_code(Code::Unauthenticated), "unauthenticated");
    }
}
