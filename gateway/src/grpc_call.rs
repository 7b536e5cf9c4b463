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

/// `grpc-status`, looked up in every response (a name made once, not parsed per lookup).
static GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

/// Length of the gRPC message frame header (compression flag, 32-bit length).
pub const FRAME_HEADER: usize = 5;

/// A buffer for one gRPC frame: room for the header, which [`start_framed`] fills in, then
/// the message is encoded straight after it (no copy into a frame afterwards).
pub fn frame_buffer(capacity: usize) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(FRAME_HEADER + capacity);
    buffer.resize(FRAME_HEADER, 0);
    buffer
}

/// Sends `message` (encoded protobuf) to `path` (`/pkg.Service/Method`). An error status
/// that arrives before any message (trailers-only) is returned as `Err`.
pub async fn start(
    service: &GrpcService,
    path: &http::Uri,
    message: Vec<u8>,
    metadata: HeaderMap,
) -> Result<Call, Status> {
    let mut framed = frame_buffer(message.len());
    framed.extend_from_slice(&message);
    start_framed(service, path, framed, metadata, http::Extensions::new()).await
}

/// [`start`] for a message already encoded after [`FRAME_HEADER`] bytes of room (see
/// [`frame_buffer`]), with the request `extensions` of the call.
pub async fn start_framed(
    service: &GrpcService,
    path: &http::Uri,
    mut framed: Vec<u8>,
    metadata: HeaderMap,
    extensions: http::Extensions,
) -> Result<Call, Status> {
    let length = framed
        .len()
        .checked_sub(FRAME_HEADER)
        .ok_or_else(|| Status::internal("gateway request without a frame header"))?;
    let length =
        u32::try_from(length).map_err(|_| Status::resource_exhausted("request too large"))?;
    framed[0] = 0;
    framed[1..FRAME_HEADER].copy_from_slice(&length.to_be_bytes());
    start_streaming(
        service,
        path,
        axum::body::Body::from(framed),
        metadata,
        extensions,
    )
    .await
}

/// Calls `path` with `body`, gRPC message frames the caller produces as they come (a
/// client stream, e.g. an upload transcoded part by part), with the request `metadata` and
/// `extensions`. The answer as for [`start_framed`].
pub async fn start_streaming(
    service: &GrpcService,
    path: &http::Uri,
    body: axum::body::Body,
    metadata: HeaderMap,
    extensions: http::Extensions,
) -> Result<Call, Status> {
    // Set part by part: the builder's checks (and its error path) are for parts that could
    // be invalid, and these are a method, a parsed URI and a version.
    let mut request = Request::new(body);
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = path.clone();
    *request.version_mut() = Version::HTTP_2;
    *request.extensions_mut() = extensions;
    let headers = request.headers_mut();
    // The request was built without headers: the metadata's map becomes its headers, not
    // copied (and hashed again) entry by entry.
    *headers = metadata;
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
    let trailers_only = parts.headers.contains_key(&GRPC_STATUS);
    if trailers_only {
        let status = Status::from_header_map(&parts.headers)
            .unwrap_or_else(|| Status::internal("unreadable grpc-status"));
        if status.code() != tonic::Code::Ok {
            return Err(status);
        }
    }
    // Trailers-Only: the (OK) status came with the headers and no trailers will follow.
    let trailers = trailers_only.then(|| parts.headers.clone());
    Ok(Call {
        headers: parts.headers,
        frames: Frames {
            body,
            chunk: Bytes::new(),
            buffer: BytesMut::new(),
            trailers,
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
    /// The last data chunk received, while `buffer` is empty: frames that arrived whole in
    /// one chunk (the usual case for unary responses) are sliced out of it, not copied.
    chunk: Bytes,
    /// A frame split across chunks, gathered.
    buffer: BytesMut,
    trailers: Option<HeaderMap>,
    done: bool,
}

/// The message length of the frame at the front of `bytes`, once all of it is there.
fn whole_frame(bytes: &[u8]) -> Result<Option<usize>, Status> {
    let Some((header, rest)) = bytes.split_first_chunk::<FRAME_HEADER>() else {
        return Ok(None);
    };
    if header[0] != 0 {
        return Err(Status::internal(
            "compressed gRPC frame on an uncompressed call",
        ));
    }
    let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    Ok((rest.len() >= length).then_some(length))
}

/// Whether `trailers` are `grpc-status: 0` and nothing else.
fn only_ok(trailers: &HeaderMap) -> bool {
    trailers.len() == 1
        && trailers
            .get(&GRPC_STATUS)
            .is_some_and(|status| status.as_bytes() == b"0")
}

impl Frames {
    async fn next(&mut self) -> Result<Option<Bytes>, Status> {
        loop {
            if !self.chunk.is_empty() {
                if let Some(length) = whole_frame(&self.chunk)? {
                    self.chunk.advance(FRAME_HEADER);
                    return Ok(Some(self.chunk.split_to(length)));
                }
                // The frame continues in the next chunk: gather it.
                self.buffer.extend_from_slice(&self.chunk);
                self.chunk = Bytes::new();
            }
            if let Some(length) = whole_frame(&self.buffer)? {
                self.buffer.advance(FRAME_HEADER);
                return Ok(Some(self.buffer.split_to(length).freeze()));
            }
            if self.done {
                if !self.buffer.is_empty() {
                    return Err(Status::internal("truncated gRPC frame"));
                }
                let trailers = self.trailers.as_ref();
                // The usual end, `grpc-status: 0` alone: no `Status` (with its copy of the
                // trailers as metadata) to build only to find it OK.
                if trailers.is_some_and(only_ok) {
                    return Ok(None);
                }
                return match trailers.and_then(Status::from_header_map) {
                    Some(status) if status.code() == tonic::Code::Ok => Ok(None),
                    Some(status) => Err(status),
                    None => Err(Status::internal("the gRPC response ended without a status")),
                };
            }
            match self.body.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if self.buffer.is_empty() => self.chunk = data,
                    Ok(data) => self.buffer.extend_from_slice(&data),
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            self.trailers = Some(trailers);
                            // Trailers end an HTTP body: what a body yields after them is
                            // not part of the response. tonic's encoder does yield more when
                            // a message exceeds its encoding limit (the trailers carry
                            // OUT_OF_RANGE, then the unsent message follows), and reading
                            // on would report that status as a broken frame (a 500).
                            self.done = true;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::{
        convert::Infallible,
        sync::{Arc, Mutex},
    };

    use http::HeaderName;
    use http_body::Frame;
    use http_body_util::StreamBody;

    use super::*;

    /// A response body part: data, or trailers.
    type Part = Result<Bytes, HeaderMap>;

    /// A gRPC service that answers every call with `headers` and `parts` and keeps the
    /// request it received.
    fn service(
        headers: &[(&'static str, &'static str)],
        parts: Vec<Part>,
        seen: Arc<Mutex<Option<(http::request::Parts, Bytes)>>>,
    ) -> GrpcService {
        let headers: Vec<_> = headers.to_vec();
        BoxCloneSyncService::new(tower::service_fn(
            move |request: Request<axum::body::Body>| {
                let headers = headers.clone();
                let frames = parts.clone().into_iter().map(|part| match part {
                    Ok(data) => Ok::<_, Infallible>(Frame::data(data)),
                    Err(trailers) => Ok(Frame::trailers(trailers)),
                });
                let seen = seen.clone();
                async move {
                    let (parts, body) = request.into_parts();
                    let body = body.collect().await.unwrap().to_bytes();
                    *seen.lock().unwrap() = Some((parts, body));
                    let mut response = http::Response::new(axum::body::Body::new(StreamBody::new(
                        futures_util::stream::iter(frames),
                    )));
                    for (name, value) in headers {
                        response.headers_mut().insert(
                            HeaderName::from_static(name),
                            HeaderValue::from_static(value),
                        );
                    }
                    Ok::<_, Infallible>(response)
                }
            },
        ))
    }

    fn trailers(pairs: &[(&'static str, &'static str)]) -> Part {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        Err(map)
    }

    fn data(bytes: &[u8]) -> Part {
        Ok(Bytes::copy_from_slice(bytes))
    }

    /// A call to a service answering with `parts` and no headers.
    async fn answered(parts: Vec<Part>) -> Call {
        let grpc = service(&[], parts, Arc::default());
        let path = "/p.S/M".parse().unwrap();
        start(&grpc, &path, Vec::new(), HeaderMap::new())
            .await
            .unwrap()
    }

    fn framed(messages: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for message in messages {
            out.push(0);
            out.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
            out.extend_from_slice(message);
        }
        out
    }

    #[tokio::test]
    async fn sends_one_framed_message_with_grpc_headers_and_metadata() {
        let seen = Arc::default();
        let grpc = service(
            &[("content-type", "application/grpc")],
            vec![trailers(&[("grpc-status", "0")])],
            Arc::clone(&seen),
        );
        let mut metadata = HeaderMap::new();
        metadata.insert("authorization", HeaderValue::from_static("Bearer x"));
        let mut call = start(
            &grpc,
            &"/pkg.Service/Method".parse().unwrap(),
            b"abc".to_vec(),
            metadata,
        )
        .await
        .unwrap();
        assert_eq!(call.next().await.unwrap(), None);

        let (parts, body) = seen.lock().unwrap().take().unwrap();
        assert_eq!(parts.method, http::Method::POST);
        assert_eq!(parts.uri.path(), "/pkg.Service/Method");
        assert_eq!(parts.version, Version::HTTP_2);
        assert_eq!(parts.headers["content-type"], "application/grpc");
        assert_eq!(parts.headers["te"], "trailers");
        assert_eq!(parts.headers["authorization"], "Bearer x");
        assert_eq!(body.as_ref(), framed(&[b"abc"]).as_slice());
    }

    #[tokio::test]
    async fn reads_messages_split_and_joined_across_data_frames() {
        let wire = framed(&[b"first", b"", b"third message"]);
        let (a, rest) = wire.split_at(3);
        let (b, c) = rest.split_at(9);
        let grpc = service(
            &[("x-served-by", "unit")],
            vec![
                data(a),
                data(b),
                data(c),
                trailers(&[("grpc-status", "0"), ("x-trailer", "t")]),
            ],
            Arc::default(),
        );
        let mut call = start(
            &grpc,
            &"/p.S/M".parse().unwrap(),
            Vec::new(),
            HeaderMap::new(),
        )
        .await
        .unwrap();
        assert_eq!(call.headers["x-served-by"], "unit");
        assert_eq!(call.next().await.unwrap().unwrap().as_ref(), b"first");
        assert_eq!(call.next().await.unwrap().unwrap().as_ref(), b"");
        assert_eq!(
            call.next().await.unwrap().unwrap().as_ref(),
            b"third message"
        );
        assert_eq!(call.next().await.unwrap(), None);
        assert_eq!(call.trailers().unwrap()["x-trailer"], "t");
    }

    #[tokio::test]
    async fn whole_frames_in_one_chunk_and_a_frame_across_chunks() {
        let wire = framed(&[b"one", b"two", b"a longer third"]);
        // The first chunk holds two whole frames and the start of the third.
        let (a, b) = wire.split_at(20);
        let mut call = answered(vec![data(a), data(b), trailers(&[("grpc-status", "0")])]).await;
        assert_eq!(call.next().await.unwrap().unwrap().as_ref(), b"one");
        assert_eq!(call.next().await.unwrap().unwrap().as_ref(), b"two");
        assert_eq!(
            call.next().await.unwrap().unwrap().as_ref(),
            b"a longer third"
        );
        assert_eq!(call.next().await.unwrap(), None);
    }

    #[tokio::test]
    async fn trailers_only_errors_fail_the_start() {
        let grpc = service(
            &[("grpc-status", "5"), ("grpc-message", "gone")],
            Vec::new(),
            Arc::default(),
        );
        let status = start(
            &grpc,
            &"/p.S/M".parse().unwrap(),
            Vec::new(),
            HeaderMap::new(),
        )
        .await
        .err()
        .unwrap();
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert_eq!(status.message(), "gone");
    }

    #[tokio::test]
    async fn trailers_only_ok_is_an_empty_successful_call() {
        // A server may answer an empty stream with Trailers-Only: status in the headers, no
        // body, no trailers.
        let grpc = service(&[("grpc-status", "0")], Vec::new(), Arc::default());
        let mut call = start(
            &grpc,
            &"/p.S/M".parse().unwrap(),
            Vec::new(),
            HeaderMap::new(),
        )
        .await
        .unwrap();
        assert_eq!(call.next().await.unwrap(), None);
    }

    #[tokio::test]
    async fn errors_after_messages_come_from_the_trailers() {
        let mut call = answered(vec![
            data(&framed(&[b"one"])),
            trailers(&[("grpc-status", "14"), ("grpc-message", "later")]),
        ])
        .await;
        assert_eq!(call.next().await.unwrap().unwrap().as_ref(), b"one");
        let status = call.next().await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(status.message(), "later");
    }

    #[tokio::test]
    async fn nothing_after_the_trailers_is_read() {
        // What tonic sends for a message over its encoding limit: the status, then the
        // message it did not frame (five zero bytes, then the message itself).
        let mut unsent = vec![0_u8; FRAME_HEADER];
        unsent.extend_from_slice(b"\x0a\x03abc");
        let mut call = answered(vec![
            trailers(&[("grpc-status", "11"), ("grpc-message", "too large")]),
            data(&unsent),
        ])
        .await;
        let status = call.next().await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::OutOfRange);
        assert_eq!(status.message(), "too large");
    }

    #[tokio::test]
    async fn broken_responses_are_internal_errors() {
        let mut compressed = framed(&[b"zip"]);
        compressed[0] = 1;
        let truncated = framed(&[b"whole"])[..7].to_vec();
        for (frames, message) in [
            (
                vec![data(&compressed)],
                "compressed gRPC frame on an uncompressed call",
            ),
            (
                vec![data(&truncated), trailers(&[("grpc-status", "0")])],
                "truncated gRPC frame",
            ),
            (
                vec![data(&framed(&[b"ok"]))],
                "the gRPC response ended without a status",
            ),
        ] {
            let mut call = answered(frames).await;
            let mut result = call.next().await;
            if matches!(result, Ok(Some(_))) {
                result = call.next().await;
            }
            let status = result.unwrap_err();
            assert_eq!(status.code(), tonic::Code::Internal);
            assert_eq!(status.message(), message);
        }
    }
}
