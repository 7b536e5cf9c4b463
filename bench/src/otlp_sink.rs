//! `otlp-sink`: an OpenTelemetry trace receiver that accepts OTLP exports and discards them,
//! for measuring what tracing costs the server (`BENCHMARKS.md`, "Observability overhead").
//!
//! It answers both OTLP transports on one port: gRPC (`POST
//! /opentelemetry.proto.collector.trace.v1.TraceService/Export`, HTTP/2, an empty
//! `ExportTraceServiceResponse` and `grpc-status: 0`) and HTTP/protobuf (`POST /v1/traces`,
//! 200 with an empty response message). Each export is decoded just enough to count its spans
//! by name (so a run shows that every span of every request arrived, none dropped by a full
//! export queue), and a running total is printed to stderr after each export.
//!
//! The messages are declared here with the OTLP field numbers of the few fields read
//! (`opentelemetry/proto/collector/trace/v1`, `trace/v1/trace.proto`); prost skips the others.
//!
//! ```sh
//! target/release/otlp-sink --listen 127.0.0.1:4317 &
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 OTEL_EXPORTER_OTLP_PROTOCOL=grpc …
//! ```

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::{Buf, Bytes};
use clap::Parser;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;

/// `ExportTraceServiceRequest`: `repeated ResourceSpans resource_spans = 1`.
#[derive(Clone, PartialEq, Message)]
struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<ResourceSpans>,
}

/// `ResourceSpans`: `repeated ScopeSpans scope_spans = 2`.
#[derive(Clone, PartialEq, Message)]
struct ResourceSpans {
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<ScopeSpans>,
}

/// `ScopeSpans`: `repeated Span spans = 2`.
#[derive(Clone, PartialEq, Message)]
struct ScopeSpans {
    #[prost(message, repeated, tag = "2")]
    spans: Vec<Span>,
}

/// `Span`: `string name = 5`.
#[derive(Clone, PartialEq, Message)]
struct Span {
    #[prost(string, tag = "5")]
    name: String,
}

/// Accepts OTLP trace exports (gRPC and HTTP/protobuf) and discards them.
#[derive(Debug, Parser)]
#[command(name = "otlp-sink", version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4317")]
    listen: SocketAddr,
}

/// What has been received so far.
#[derive(Debug, Default)]
struct Received {
    exports: u64,
    bytes: u64,
    spans: BTreeMap<String, u64>,
}

const GRPC_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const HTTP_PATH: &str = "/v1/traces";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!("otlp-sink: listening on {}", listener.local_addr()?);
    let received = Arc::new(Mutex::new(Received::default()));
    loop {
        let (stream, _) = listener.accept().await?;
        let received = received.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let received = received.clone();
                async move { Ok::<_, Infallible>(answer(request, &received).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Reads one export and answers it as its transport expects.
async fn answer(request: Request<Incoming>, received: &Mutex<Received>) -> Response<Reply> {
    let path = request.uri().path().to_owned();
    let grpc = path == GRPC_PATH;
    if !grpc && path != HTTP_PATH {
        return Reply::status(StatusCode::NOT_FOUND);
    }
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return Reply::status(StatusCode::BAD_REQUEST),
    };
    let message = if grpc { grpc_message(body) } else { Some(body) };
    let Some(Ok(export)) = message.map(ExportTraceServiceRequest::decode) else {
        return Reply::status(StatusCode::BAD_REQUEST);
    };
    let report = {
        let mut received = received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        received.exports += 1;
        received.bytes += export.encoded_len() as u64;
        let spans = export
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans);
        for span in spans {
            *received.spans.entry(span.name.clone()).or_default() += 1;
        }
        let total: u64 = received.spans.values().sum();
        let names: Vec<String> = received
            .spans
            .iter()
            .map(|(name, n)| format!("{name}={n}"))
            .collect();
        format!(
            "otlp-sink: {} exports, {} bytes, {total} spans: {}",
            received.exports,
            received.bytes,
            names.join(" ")
        )
    };
    eprintln!("{report}");
    if grpc {
        // An empty ExportTraceServiceResponse in one uncompressed gRPC frame, then the status.
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let mut response = Response::new(Reply {
            data: Some(Bytes::from_static(&[0, 0, 0, 0, 0])),
            trailers: Some(trailers),
        });
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        response
    } else {
        let mut response = Response::new(Reply {
            data: None,
            trailers: None,
        });
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        response
    }
}

/// The message of a unary gRPC request body (one uncompressed length-prefixed frame).
fn grpc_message(mut body: Bytes) -> Option<Bytes> {
    if body.len() < 5 || body[0] != 0 {
        return None;
    }
    body.advance(1);
    let len = body.get_u32() as usize;
    (body.len() == len).then_some(body)
}

/// A response body: at most one data frame, then at most one trailers frame.
struct Reply {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Reply {
    fn status(status: StatusCode) -> Response<Self> {
        let mut response = Response::new(Self {
            data: None,
            trailers: None,
        });
        *response.status_mut() = status;
        response
    }
}

impl hyper::body::Body for Reply {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}
