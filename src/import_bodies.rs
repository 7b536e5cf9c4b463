//! `POST /v1/customers:import`: the REST form of ImportCustomers, a file streamed as the
//! request body (`application/x-ndjson` or `text/csv`).
//!
//! The gateway serves unary and server-streaming RPCs; a client stream has no JSON form, so
//! this thin layer in front of it turns the upload into the RPC's stream: a first message
//! with the settings (from the query: `mode`, `validateOnly`, `requestId`, or the
//! `Idempotency-Key` header), then one `chunk` message per part of the body as it arrives
//! (never the whole file in memory; parts larger than [`MAX_CHUNK_BYTES`] are split). The
//! call goes to the same in-process gRPC service as every REST route, so authentication,
//! scopes, limits, metrics, access logs and errors are those of every other route; the
//! answer is the operation as JSON (or the AIP-193 error body).

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt as _;
use gateway::{
    MatchedRoute, Outcome,
    error::{HttpError, Violation},
    grpc_call::{self, GrpcService},
    transcode,
};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use prost::Message as _;
use prost_reflect::DescriptorPool;
use tonic::Code;
use tower::Service;

use crate::{observe::REQUEST_ID, pb};

/// The REST route of ImportCustomers.
pub const PATH: &str = "/v1/customers:import";

/// The RPC it calls.
pub const GRPC_PATH: &str = "/customer.v1.CustomerService/ImportCustomers";

/// The largest `chunk` message a body part becomes (larger parts are split).
pub const MAX_CHUNK_BYTES: usize = 256 * 1024;

/// What the layer needs besides the service it fronts.
struct Shared {
    grpc: GrpcService,
    pool: DescriptorPool,
    plans: gateway::wire::Plans,
    operation: usize,
    route: Arc<MatchedRoute>,
}

/// `inner` (the REST gateway), with the import route served in front of it.
#[derive(Clone)]
pub struct ImportBodies<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for ImportBodies<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ImportBodies")
    }
}

impl<S> ImportBodies<S> {
    /// `inner`, with `POST /v1/customers:import` calling ImportCustomers on `grpc`.
    pub fn new(inner: S, grpc: GrpcService) -> Result<Self, gateway::BuildError> {
        let mut pool = DescriptorPool::new();
        pool.decode_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
            .map_err(|e| gateway::BuildError::Descriptors(e.to_string()))?;
        let operation = pool
            .get_message_by_name("google.longrunning.Operation")
            .ok_or_else(|| gateway::BuildError::Descriptors("no Operation".into()))?;
        let mut plans = gateway::wire::Plans::default();
        let operation = plans.add(&operation);
        Ok(Self {
            inner,
            shared: Arc::new(Shared {
                grpc,
                pool,
                plans,
                operation,
                route: Arc::new(MatchedRoute {
                    method: Method::POST,
                    template: PATH.to_owned(),
                    grpc_path: GRPC_PATH.to_owned(),
                }),
            }),
        })
    }
}

impl<S> Service<Request<Body>> for ImportBodies<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if request.uri().path() != PATH {
            let mut inner = self.inner.clone();
            return Box::pin(async move { inner.call(request).await });
        }
        let shared = self.shared.clone();
        Box::pin(async move { Ok(shared.import(request).await) })
    }
}

impl Shared {
    async fn import(&self, request: Request<Body>) -> Response<Body> {
        let (mut parts, body) = request.into_parts();
        let request_id = parts
            .headers
            .get(REQUEST_ID)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let answer = async {
            if parts.method != Method::POST {
                let mut error = HttpError::with_status(
                    StatusCode::METHOD_NOT_ALLOWED,
                    Code::Unimplemented,
                    "METHOD_NOT_ALLOWED",
                    format!("{PATH} takes POST"),
                );
                error
                    .headers
                    .push((header::ALLOW, HeaderValue::from_static("POST")));
                return Err(error);
            }
            let settings = settings(&parts)?;
            let mut first = grpc_call::frame_buffer(64);
            pb::ImportCustomersRequest {
                settings: Some(settings),
                ..Default::default()
            }
            .encode(&mut first)
            .map_err(|e| {
                HttpError::with_status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Code::Internal,
                    "INTERNAL",
                    e.to_string(),
                )
            })?;
            set_frame_length(&mut first);
            let chunks = body.into_data_stream().flat_map(|part| {
                futures_util::stream::iter(match part {
                    Ok(bytes) => chunk_frames(bytes).into_iter().map(Ok).collect::<Vec<_>>(),
                    Err(error) => vec![Err(error)],
                })
            });
            let body = Body::from_stream(
                futures_util::stream::iter([Ok::<_, axum::Error>(Bytes::from(first))])
                    .chain(chunks),
            );
            let metadata = transcode::metadata(&parts.headers);
            let extensions = std::mem::take(&mut parts.extensions);
            let uri = http::Uri::from_static(GRPC_PATH);
            let mut call = grpc_call::start_streaming(&self.grpc, &uri, body, metadata, extensions)
                .await
                .map_err(|status| HttpError::from_status(&status, &self.pool))?;
            let message = call
                .next()
                .await
                .map_err(|status| HttpError::from_status(&status, &self.pool))?
                .unwrap_or_default();
            // The end of the call (its OK status).
            call.next()
                .await
                .map_err(|status| HttpError::from_status(&status, &self.pool))?;
            failed_operation(&message, &self.pool)?;
            let mut json = Vec::with_capacity(512);
            self.plans
                .write(self.operation, &message, &mut json)
                .map_err(|_| {
                    HttpError::with_status(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        Code::Internal,
                        "INTERNAL",
                        "the operation could not be written as JSON".to_owned(),
                    )
                })?;
            Ok(json)
        };
        let (code, mut response) = match answer.await {
            Ok(json) => {
                let mut response = Response::new(Body::from(json));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                (Code::Ok, response)
            }
            Err(mut error) => {
                if let Some(id) = request_id {
                    error.add_error_metadata("requestId", id);
                }
                (error.code, error.into_response())
            }
        };
        response.extensions_mut().insert(Outcome {
            route: Some(self.route.clone()),
            code,
        });
        response
    }
}

/// The error of an import that ended with one (a file refused as a whole, a cancelled or
/// broken-off import) as the HTTP error it is, naming the operation (`ErrorInfo.metadata`
/// `operation`) whose metadata says how far it got: an upload answers as a call does, not
/// with a 200 holding an error.
fn failed_operation(message: &[u8], pool: &DescriptorPool) -> Result<(), HttpError> {
    let Ok(operation) = crate::longrunning::Operation::decode(message) else {
        return Ok(());
    };
    match operation.result {
        Some(crate::longrunning::operation::Result::Error(status)) if operation.done => {
            let mut error = HttpError::from_status(
                &tonic::Status::new(Code::from(status.code), status.message),
                pool,
            );
            error.add_error_metadata("operation", operation.name);
            Err(error)
        }
        _ => Ok(()),
    }
}

/// Fills in the frame header of a message encoded after [`grpc_call::FRAME_HEADER`] bytes.
fn set_frame_length(framed: &mut [u8]) {
    let length = u32::try_from(framed.len() - grpc_call::FRAME_HEADER).unwrap_or(u32::MAX);
    framed[0] = 0;
    framed[1..grpc_call::FRAME_HEADER].copy_from_slice(&length.to_be_bytes());
}

/// A part of the body as `chunk` messages, framed.
fn chunk_frames(bytes: Bytes) -> Vec<Bytes> {
    bytes
        .chunks(MAX_CHUNK_BYTES)
        .map(|piece| {
            let message = pb::ImportCustomersRequest {
                chunk: piece.to_vec(),
                ..Default::default()
            };
            let mut framed = grpc_call::frame_buffer(piece.len() + 8);
            // Encoding into a Vec cannot run out of room.
            let _ = message.encode(&mut framed);
            set_frame_length(&mut framed);
            Bytes::from(framed)
        })
        .collect()
}

/// The settings from the query and headers; a bad one is a 400 naming it.
fn settings(parts: &http::request::Parts) -> Result<pb::ImportSettings, HttpError> {
    let bad = |field: &str, description: String| {
        HttpError::bad_request(
            "INVALID_QUERY_PARAMETER",
            format!("invalid query parameter: {field}"),
            vec![Violation {
                field: field.to_owned(),
                description,
            }],
        )
    };
    let format = match parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase())
        .as_deref()
    {
        Some("application/x-ndjson" | "application/jsonl" | "application/ndjson") => {
            pb::ImportFormat::Ndjson
        }
        Some("text/csv") => pb::ImportFormat::Csv,
        _ => {
            return Err(HttpError::with_status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Code::InvalidArgument,
                "UNSUPPORTED_MEDIA_TYPE",
                "an import's body is `application/x-ndjson` (one JSON customer per line) or \
                 `text/csv` (with a header row)"
                    .to_owned(),
            ));
        }
    };
    let mut settings = pb::ImportSettings {
        format: format as i32,
        ..Default::default()
    };
    let query = parts.uri.query().unwrap_or_default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "mode" => {
                settings.mode = match value.as_ref() {
                    "create-only" | "createOnly" | "IMPORT_MODE_CREATE_ONLY" => {
                        pb::ImportMode::CreateOnly
                    }
                    "upsert" | "IMPORT_MODE_UPSERT_BY_EXTERNAL_ID" => {
                        pb::ImportMode::UpsertByExternalId
                    }
                    other => {
                        return Err(bad(
                            "mode",
                            format!("`{other}` is not a mode; use create-only or upsert"),
                        ));
                    }
                } as i32;
            }
            "validateOnly" | "validate_only" => {
                settings.validate_only = match value.as_ref() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad("validateOnly", "must be true or false".into())),
                };
            }
            "requestId" | "request_id" => settings.request_id = value.into_owned(),
            other => {
                return Err(bad(
                    other,
                    "is not a parameter of this route (mode, validateOnly, requestId)".into(),
                ));
            }
        }
    }
    if settings.request_id.is_empty()
        && let Some(key) = parts.headers.get("idempotency-key")
    {
        settings.request_id = key
            .to_str()
            .map_err(|_| bad("Idempotency-Key", "must be visible ASCII (a UUID)".into()))?
            .to_owned();
    }
    Ok(settings)
}
