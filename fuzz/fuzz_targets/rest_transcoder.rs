//! The REST gateway end to end (path + query + headers + body -> request message -> gRPC
//! call -> response JSON), over the service's real routes, with an in-process upstream that
//! checks the request it receives and answers with fuzzed response bytes.
//!
//! Input (readable seeds in `corpus/rest_transcoder/`):
//! ```text
//! POST /v1/customers?requestId=r1
//! content-type: application/json
//!
//! {"givenName":"Ada"}
//! \n\0<the upstream's response message, protobuf bytes>
//! ```
//! Properties:
//! - nothing panics; every `application/json` answer is valid JSON;
//! - the gRPC request the gateway sends decodes as the method's input message;
//! - no 5xx unless the upstream's response message itself does not decode;
//! - where the path-only fast encoder (`transcode::SimpleRequest`) takes a request, it
//!   encodes the message the general path (`transcode::prepare`) builds.

#![no_main]

use std::{
    convert::Infallible,
    sync::{Arc, LazyLock, Mutex},
};

use bytes::Bytes;
use customer_api_fuzz::{POOL, RUNTIME};
use gateway::{
    Gateway,
    transcode::{SimpleRequest, prepare},
};
use http::{HeaderName, HeaderValue, Method, Request, request::Parts};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use prost_reflect::DynamicMessage;
use tower::ServiceExt as _;

const SERVICE: &str = "customer.v1.CustomerService";

/// What the upstream saw of one call: its method and whether the request decoded.
#[derive(Default)]
struct Seen {
    method: Option<prost_reflect::MethodDescriptor>,
    request: Option<Result<DynamicMessage, String>>,
}

/// Per request (as an extension, which the gateway forwards): the upstream's answer and
/// where it records what it saw.
#[derive(Clone)]
struct Call {
    reply: Bytes,
    seen: Arc<Mutex<Seen>>,
}

static GATEWAY: LazyLock<Gateway> = LazyLock::new(|| {
    Gateway::builder(customer_api::FILE_DESCRIPTOR_SET)
        .expect("descriptors")
        .service(SERVICE)
        .redact_errors(customer_api::redact::mask_pii)
        .request_id_header(HeaderName::from_static("x-request-id"))
        .build(tower::service_fn(upstream))
        .expect("the service's routes build")
});

/// The gRPC side: decodes the framed request as the method's input, answers `reply`.
async fn upstream(
    request: Request<axum::body::Body>,
) -> Result<http::Response<axum::body::Body>, Infallible> {
    let (parts, body) = request.into_parts();
    let call = parts
        .extensions
        .get::<Call>()
        .cloned()
        .expect("the gateway forwards the request's extensions");
    let method = parts
        .uri
        .path()
        .strip_prefix(&format!("/{SERVICE}/"))
        .and_then(|name| {
            POOL.get_service_by_name(SERVICE)?
                .methods()
                .find(|m| m.name() == name)
        });
    let body = body.collect().await.map(|b| b.to_bytes());
    let decoded = match (&method, body) {
        (None, _) => Err(format!("unknown method {}", parts.uri.path())),
        (_, Err(e)) => Err(format!("body: {e}")),
        (Some(method), Ok(framed)) => match framed.split_first_chunk::<5>() {
            Some((header, message))
                if header[0] == 0 && header[1..] == (message.len() as u32).to_be_bytes() =>
            {
                DynamicMessage::decode(method.input(), message).map_err(|e| e.to_string())
            }
            _ => Err(format!("not one uncompressed gRPC frame: {framed:?}")),
        },
    };
    {
        let mut seen = call.seen.lock().expect("not poisoned");
        seen.method = method;
        seen.request = Some(decoded);
    }
    let mut framed = vec![0];
    framed.extend_from_slice(&(call.reply.len() as u32).to_be_bytes());
    framed.extend_from_slice(&call.reply);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let frames = [
        Ok::<_, Infallible>(Frame::data(Bytes::from(framed))),
        Ok(Frame::trailers(trailers)),
    ];
    let mut response = http::Response::new(axum::body::Body::new(StreamBody::new(
        futures_util::stream::iter(frames),
    )));
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    Ok(response)
}

/// A request as the input describes it.
struct Input<'a> {
    method: Method,
    uri: http::Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: &'a [u8],
    reply: &'a [u8],
}

fn parse(data: &[u8]) -> Option<Input<'_>> {
    let (request, reply) = match data.windows(2).position(|w| w == b"\n\0") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let line_end = request
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(request.len());
    let line = std::str::from_utf8(&request[..line_end]).ok()?;
    let (method, uri) = line.split_once(' ')?;
    let method = Method::from_bytes(method.as_bytes()).ok()?;
    let uri: http::Uri = uri.parse().ok()?;
    if !uri.path().starts_with('/') || uri.scheme().is_some() {
        return None;
    }
    let mut rest = request.get(line_end + 1..).unwrap_or_default();
    let mut headers = Vec::new();
    loop {
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let line = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or_default();
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) {
            headers.push((name, value));
        }
    }
    Some(Input {
        method,
        uri,
        headers,
        body: rest,
        reply,
    })
}

impl Input<'_> {
    fn parts(&self) -> Parts {
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(self.uri.clone());
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        builder.body(()).expect("valid parts").into_parts().0
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = parse(data) else {
        return;
    };
    check_simple_requests(&input);

    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut request =
        Request::from_parts(input.parts(), Full::new(Bytes::copy_from_slice(input.body)));
    request.extensions_mut().insert(Call {
        reply: Bytes::copy_from_slice(input.reply),
        seen: Arc::clone(&seen),
    });
    let (status, content_type, body) = RUNTIME.block_on(async {
        let response = GATEWAY.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let content_type = response.headers().get("content-type").cloned();
        let body = response.into_body().collect().await.map(|b| b.to_bytes());
        (status, content_type, body)
    });
    let body = body.expect("the gateway's answer is readable");
    let seen = seen.lock().expect("not poisoned");

    if let Some(request) = &seen.request {
        if let Err(e) = request {
            panic!("the gateway sent a request the method cannot decode: {e}");
        }
    }
    if content_type
        .as_ref()
        .is_some_and(|t| t == "application/json")
    {
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(&body) {
            panic!(
                "{status}: invalid JSON {:?}: {e}",
                String::from_utf8_lossy(&body)
            );
        }
    }
    if status.is_server_error() {
        let reply_decodes = seen
            .method
            .as_ref()
            .is_some_and(|m| DynamicMessage::decode(m.output(), input.reply).is_ok());
        assert!(
            !reply_decodes && seen.request.is_some(),
            "{status} for a valid upstream answer: {}",
            String::from_utf8_lossy(&body)
        );
    }
});

/// Wherever the fast encoder takes the request, it encodes what the general path builds.
fn check_simple_requests(input: &Input<'_>) {
    for route in GATEWAY.routes() {
        if route.method != input.method {
            continue;
        }
        let Some(captures) = route.template.matches(input.uri.path()) else {
            continue;
        };
        let Some(simple) = SimpleRequest::new(route) else {
            continue;
        };
        let parts = input.parts();
        let mut encoded = Vec::new();
        if simple
            .encode(route, &parts, &captures, input.body, &mut encoded)
            .is_none()
        {
            continue;
        }
        let fast =
            DynamicMessage::decode(route.rpc.input(), encoded.as_slice()).unwrap_or_else(|e| {
                panic!(
                    "{}: the fast encoding does not decode: {e}",
                    route.grpc_path
                )
            });
        let general = prepare(route, &parts, captures, input.body).unwrap_or_else(|e| {
            panic!(
                "{}: the fast path took a request the general path refuses: {}",
                route.grpc_path, e.message
            )
        });
        assert_eq!(
            fast.encode_to_vec(),
            general.message.encode_to_vec(),
            "{}: fast and general encodings differ",
            route.grpc_path
        );
    }
}
