//! Calling a gRPC method in-process: frame the request, call the tonic service as a tower
//! service (no socket, no second implementation), and read the response frames and status
//! back, for unary and server-streaming methods alike.

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Version, header};
use http_body_util::BodyExt;
use tonic::Status;
use tower::{ServiceExt, util::BoxCloneSyncService};

/// The gRPC services the gateway calls: any tower service speaking gRPC over HTTP/2 framing.
pub type GrpcService = BoxCloneSyncService<
    Request<axum::body::Body>,
    http::Response<axum::body::Body>,
    std::convert::Infallible,
>;

/// An answered call: its response metadata and the message frames still to read.
pub struct Call {
    /// Response headers (gRPC metadata).
    pub headers: HeaderMap,
    frames: Frames,
}

/// Sends `message` (encoded protobuf) to `path` (`/pkg.Service/Method`). An error status
/// that arrives before any message (trailers-only) is returned as `Err`.
pub async fn start(
    service: &GrpcService,
    path: &str,
    message: Vec<u8>,
    metadata: HeaderMap,
) -> Result<Call, Status> {
    let mut framed = Vec::with_capacity(message.len() + 5);
    framed.push(0);
    framed.extend_from_slice(
        &u32::try_from(message.len())
            .map_err(|_| Status::resource_exhausted("request too large"))?
            .to_be_bytes(),
    );
    framed.extend_from_slice(&message);
    let mut request = Request::post(path)
        .version(Version::HTTP_2)
        .body(axum::body::Body::from(framed))
        .map_err(|e| Status::internal(format!("gateway request: {e}")))?;
    let headers = request.headers_mut();
    headers.extend(metadata);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(header::TE, HeaderValue::from_static("trailers"));

    let response = service
        .clone()
        .oneshot(request)
        .await
        .unwrap_or_else(|never| match never {});
    let (parts, body) = response.into_parts();
    if parts.headers.contains_key("grpc-status") {
        let status = Status::from_header_map(&parts.headers)
            .unwrap_or_else(|| Status::internal("unreadable grpc-status"));
        if status.code() != tonic::Code::Ok {
            return Err(status);
        }
    }
    Ok(Call {
        headers: parts.headers,
        frames: Frames {
            body,
            buffer: BytesMut::new(),
            trailers: None,
            done: false,
        },
    })
}

impl Call {
    /// The next response message, `Ok(None)` at a successful end, `Err` for a failed one.
    pub async fn next(&mut self) -> Result<Option<Bytes>, Status> {
        self.frames.next().await
    }

    /// Trailing metadata, once [`Call::next`] returned `Ok(None)`.
    pub fn trailers(&self) -> Option<&HeaderMap> {
        self.frames.trailers.as_ref()
    }
}

struct Frames {
    body: axum::body::Body,
    buffer: BytesMut,
    trailers: Option<HeaderMap>,
    done: bool,
}

impl Frames {
    async fn next(&mut self) -> Result<Option<Bytes>, Status> {
        loop {
            if self.buffer.len() >= 5 {
                let compressed = self.buffer[0] != 0;
                let length = u32::from_be_bytes([
                    self.buffer[1],
                    self.buffer[2],
                    self.buffer[3],
                    self.buffer[4],
                ]) as usize;
                if compressed {
                    return Err(Status::internal(
                        "compressed gRPC frame on an uncompressed call",
                    ));
                }
                if self.buffer.len() >= 5 + length {
                    self.buffer.advance(5);
                    return Ok(Some(self.buffer.split_to(length).freeze()));
                }
            }
            if self.done {
                if !self.buffer.is_empty() {
                    return Err(Status::internal("truncated gRPC frame"));
                }
                let trailers = self.trailers.as_ref();
                return match trailers.and_then(Status::from_header_map) {
                    Some(status) if status.code() == tonic::Code::Ok => Ok(None),
                    Some(status) => Err(status),
                    None => Err(Status::internal("the gRPC response ended without a status")),
                };
            }
            match self.body.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.buffer.extend_from_slice(&data),
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            self.trailers = Some(trailers);
                        }
                    }
                },
                Some(Err(error)) => {
                    return Err(Status::internal(format!("gRPC response body: {error}")));
                }
                None => self.done = true,
            }
        }
    }
}
