//! The request message is read before a call takes a permit of the global budget.
//!
//! Every RPC of the service takes one request message (unary or server-streaming), so
//! [`BodyFirst`] reads the body before the concurrency limit behind it runs: a peer that
//! opens streams and never sends their body (or trickles it) holds no global permit, only its
//! stream and its own share of calls (the authentication layer in front of this one checks
//! that share, and refuses unauthenticated calls before any body is read), which
//! `HTTP2_MAX_CONCURRENT_STREAMS`, `MAX_CONCURRENT_REQUESTS_PER_CALLER` and
//! `REQUEST_BODY_TIMEOUT` bound. A body that misses its deadline
//! ([`crate::connections::DeadlineBody`]) is DEADLINE_EXCEEDED.
//!
//! At most `limit` bytes are buffered here: a longer body is handed on as it is (what was
//! read, then the rest), so tonic refuses it by its frame header as before.
//!
//! The client-streaming RPCs ([`CLIENT_STREAMING`], ImportCustomers) are a stream of
//! messages as long as the client's file: for them only the first message (the settings)
//! is read here, and the rest is handed on as it arrives, each part of it within
//! `REQUEST_BODY_TIMEOUT` of the one before (`crate::connections`).

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use http::Request;
use http_body::Frame;
use http_body_util::BodyExt;
use tonic::{Code, Status, body::Body};

use super::{
    middleware::{Inner, Middleware, ResponseFuture},
    status::{is_grpc_web_decode_error, transport_status},
};
use crate::{connections::BodyDeadline, service::error::reason};

/// Reads the request body (up to `limit` bytes) before calling the wrapped service.
#[derive(Debug, Clone, Copy)]
pub struct BodyFirst {
    limit: usize,
}

impl BodyFirst {
    /// Buffers at most `limit` bytes of each body (the largest request message and its
    /// frame header).
    pub fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl<S, B> Middleware<S, B> for BodyFirst
where
    S: Inner<B>,
    B: Rebody,
{
    fn call(&self, inner: &mut S, request: Request<B>) -> ResponseFuture<S::Error> {
        // The readied service handles this call; a fresh clone waits for the next one.
        let clone = inner.clone();
        let mut inner = std::mem::replace(inner, clone);
        let limit = self.limit;
        let first_only = CLIENT_STREAMING.contains(&request.uri().path());
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let deadline = parts.extensions.get::<BodyDeadline>().map(|due| due.0);
            let body = match read(body, limit, deadline, first_only).await {
                Ok(body) => body,
                Err(status) => return Ok(status.into_http()),
            };
            inner.call(Request::from_parts(parts, body)).await
        })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The client-streaming methods: only their first message is read before the call.
pub const CLIENT_STREAMING: &[&str] = &["/customer.v1.CustomerService/ImportCustomers"];

/// Whether `buffered` holds a whole gRPC message (frame header and body).
fn holds_a_message(buffered: &[u8]) -> bool {
    let Some(header) = buffered.get(1..5) else {
        return false;
    };
    let mut length = [0_u8; 4];
    length.copy_from_slice(header);
    buffered.len() >= 5 + u32::from_be_bytes(length) as usize
}

/// A request body type the gRPC stack is called with (tonic's from the listener, axum's from
/// the gateway), which can be rebuilt around what [`BodyFirst`] read.
pub trait Rebody:
    http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin + Sized + 'static
{
    /// `body` as this type.
    fn rebody(body: impl http_body::Body<Data = Bytes, Error = BoxError> + Send + 'static) -> Self;
}

impl Rebody for Body {
    fn rebody(body: impl http_body::Body<Data = Bytes, Error = BoxError> + Send + 'static) -> Self {
        Body::new(body)
    }
}

impl Rebody for axum::body::Body {
    fn rebody(body: impl http_body::Body<Data = Bytes, Error = BoxError> + Send + 'static) -> Self {
        axum::body::Body::new(body)
    }
}

/// The body read to its end (or past `limit` bytes, then with the rest still to come).
async fn read<B: Rebody>(
    mut body: B,
    limit: usize,
    deadline: Option<tokio::time::Instant>,
    first_only: bool,
) -> Result<B, Status> {
    // Most messages come in one frame, kept as it came; a second one starts a copy.
    let mut first: Option<Bytes> = None;
    let mut buffered = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            // The layers in between (gRPC-web) may have dropped the error's cause.
            let late = deadline.is_some_and(|due| tokio::time::Instant::now() >= due);
            unreadable(&*error.into(), late)
        })?;
        // gRPC requests carry no trailers; a data frame is all there is.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let read = if buffered.is_empty() && first.is_none() {
            first.insert(data)
        } else {
            if let Some(first) = first.take() {
                buffered.extend_from_slice(&first);
            }
            buffered.extend_from_slice(&data);
            &buffered[..]
        };
        if read.len() > limit || (first_only && holds_a_message(read)) {
            let prefix = first.take().unwrap_or_else(|| buffered.split().freeze());
            return Ok(B::rebody(Prefixed {
                prefix: Some(prefix),
                rest: body.map_err(Into::into),
            }));
        }
    }
    let message = first.unwrap_or_else(|| buffered.freeze());
    Ok(B::rebody(
        http_body_util::Full::new(message).map_err(|never| match never {}),
    ))
}

/// The status of a body that could not be read: DEADLINE_EXCEEDED when it did not arrive
/// in time, else CANCELLED (the peer reset the stream; nobody reads the answer).
fn unreadable(error: &(dyn std::error::Error + 'static), late: bool) -> Status {
    if late || gateway::body_timed_out(error) {
        return transport_status(
            Code::DeadlineExceeded,
            reason::DEADLINE_EXCEEDED,
            "the request message did not arrive in time (REQUEST_BODY_TIMEOUT)",
            None,
        );
    }
    // tonic-web decodes a gRPC-web-text body as it is read: bad base64 is the client's
    // fault (INVALID_ARGUMENT, as `status::client_faults` says of it after the read).
    let malformed = std::iter::successors(Some(error), |error| error.source()).any(|error| {
        is_grpc_web_decode_error(
            &error
                .downcast_ref::<Status>()
                .map_or_else(|| error.to_string(), |status| status.message().to_owned()),
        )
    });
    if malformed {
        return transport_status(
            Code::InvalidArgument,
            reason::MALFORMED_REQUEST,
            "the gRPC-web request body is not valid base64",
            None,
        );
    }
    Status::cancelled("the request body could not be read")
}

pin_project_lite::pin_project! {
    /// What was buffered, then the rest of the body.
    struct Prefixed<R> {
        prefix: Option<Bytes>,
        #[pin]
        rest: R,
    }
}

impl<R: http_body::Body<Data = Bytes, Error = BoxError>> http_body::Body for Prefixed<R> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if let Some(prefix) = this.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        this.rest.poll_frame(cx)
    }
}
