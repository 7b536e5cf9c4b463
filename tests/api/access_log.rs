//! The access log and request ids: one line per request on every transport (gRPC, gRPC-web,
//! REST), for success, 400, 401, 404 and 5xx alike, with the request id the client sent (or
//! the one generated and echoed in `x-request-id`), the caller, the status both ways, the
//! bytes and the trace id; never a raw path. Every error carries the request id in its
//! `google.rpc.ErrorInfo` metadata. Captured through the production subscriber in JSON
//! (`crate::capture`).

use bytes::Bytes;
use customer_api::{config::LogFormat, pb, registry::UrlTemplate};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use prost::Message;
use serde_json::{Value, json};
use tonic_types::StatusExt;

use crate::{
    capture::captured,
    helpers::{TestApp, new_customer},
};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Grpc,
    GrpcWeb,
    /// Connect, unary binary (`application/proto`).
    Connect,
    Rest,
}

/// What a client sent and got back, as the access line must report it.
struct Exchange {
    request_id: String,
    status: StatusCode,
    headers: HeaderMap,
    bytes_in: usize,
    bytes_out: usize,
    body: Bytes,
}

/// One call of `rpc` (with its REST form `rest_path`) over `transport`, sending
/// `x-request-id: request_id` (unless empty), `traceparent` and the token when `authorized`.
async fn call(
    app: &TestApp,
    transport: Transport,
    (rpc, rest_path): (&str, &str),
    message: &impl Message,
    request_id: &str,
    authorized: bool,
) -> Exchange {
    let (uri, content_type, body) = match transport {
        Transport::Rest => (format!("http://{}{rest_path}", app.addr), None, Vec::new()),
        Transport::Connect => (
            format!("http://{}/customer.v1.CustomerService/{rpc}", app.addr),
            Some("application/proto"),
            message.encode_to_vec(),
        ),
        Transport::Grpc | Transport::GrpcWeb => {
            let encoded = message.encode_to_vec();
            let mut framed = vec![0_u8];
            framed.extend_from_slice(&u32::try_from(encoded.len()).unwrap().to_be_bytes());
            framed.extend_from_slice(&encoded);
            let content_type = if transport == Transport::Grpc {
                "application/grpc"
            } else {
                "application/grpc-web+proto"
            };
            (
                format!("http://{}/customer.v1.CustomerService/{rpc}", app.addr),
                Some(content_type),
                framed,
            )
        }
    };
    let method = if transport == Transport::Rest {
        Method::GET
    } else {
        Method::POST
    };
    let mut request = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("traceparent", TRACEPARENT);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    if transport == Transport::Grpc {
        request = request.header("te", "trailers");
    }
    if !request_id.is_empty() {
        request = request.header("x-request-id", request_id);
    }
    if authorized {
        request = request.header("authorization", app.bearer());
    }
    let bytes_in = body.len();
    let request = request.body(Full::new(Bytes::from(body))).unwrap();
    let mut builder = Client::builder(TokioExecutor::new());
    let client = if transport == Transport::Grpc {
        builder.http2_only(true).build_http()
    } else {
        builder.build_http()
    };
    let response = client.request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.unwrap();
    let mut headers = parts.headers;
    if let Some(trailers) = collected.trailers() {
        headers.extend(trailers.clone());
    }
    let body = collected.to_bytes();
    Exchange {
        request_id: request_id.to_owned(),
        status: parts.status,
        headers,
        bytes_in,
        bytes_out: body.len(),
        body,
    }
}

/// The `google.rpc.ErrorInfo` of an error answer as (reason, metadata): from the JSON body
/// (REST, Connect), the trailers or trailers-only headers (gRPC), or the trailer frame
/// (gRPC-web).
fn error_info(transport: Transport, exchange: &Exchange) -> (String, Value) {
    if transport == Transport::Connect {
        let body: Value = serde_json::from_slice(&exchange.body).unwrap();
        let info = &body["details"]
            .as_array()
            .unwrap()
            .iter()
            .find(|detail| detail["type"] == "google.rpc.ErrorInfo")
            .unwrap_or_else(|| panic!("no ErrorInfo in {body}"))["debug"];
        return (
            info["reason"].as_str().unwrap().to_owned(),
            info["metadata"].clone(),
        );
    }
    if transport == Transport::Rest {
        let body: Value = serde_json::from_slice(&exchange.body).unwrap();
        let info = body["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .find(|detail| detail["@type"] == "type.googleapis.com/google.rpc.ErrorInfo")
            .unwrap_or_else(|| panic!("no ErrorInfo in {body}"))
            .clone();
        return (
            info["reason"].as_str().unwrap().to_owned(),
            info["metadata"].clone(),
        );
    }
    let mut metadata = exchange.headers.clone();
    if !metadata.contains_key("grpc-status") {
        // gRPC-web: the trailers are the last frame of the body, flagged 0x80.
        let mut body = &exchange.body[..];
        while body.len() >= 5 {
            let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
            if body[0] & 0x80 != 0 {
                for line in std::str::from_utf8(&body[5..5 + len])
                    .unwrap()
                    .split("\r\n")
                {
                    if let Some((name, value)) = line.split_once(':') {
                        metadata.insert(
                            http::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
                            value.trim().parse().unwrap(),
                        );
                    }
                }
            }
            body = &body[5 + len..];
        }
    }
    let status = tonic::Status::from_header_map(&metadata).unwrap();
    let info = status
        .get_error_details()
        .error_info()
        .cloned()
        .unwrap_or_else(|| {
            panic!("no ErrorInfo in {status:?}");
        });
    (info.reason, json!(info.metadata))
}

/// The access lines of `logs` (JSON), by request id.
fn access_lines(logs: &str) -> Vec<Value> {
    logs.lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|line| line["target"] == "access")
        .collect()
}

fn line_of<'a>(lines: &'a [Value], request_id: &str) -> &'a Value {
    let found: Vec<&Value> = lines
        .iter()
        .filter(|line| line["request_id"] == request_id)
        .collect();
    assert_eq!(found.len(), 1, "one line for {request_id}: {lines:#?}");
    found[0]
}

/// The line without its timestamp and duration (checked apart: they vary).
fn fixed(line: &Value) -> Value {
    let mut line = line.clone();
    let fields = line.as_object_mut().unwrap();
    let duration = fields.remove("duration_ms").unwrap();
    assert!(duration.as_f64().unwrap() >= 0.0, "{duration}");
    assert!(fields.remove("timestamp").is_some());
    line
}

#[test]
fn every_transport_logs_one_line_per_request_whatever_its_outcome() {
    let (logs, calls) = captured(LogFormat::Json, "warn,access=debug", async {
        // Nothing listens there: the registry lookup fails, a 5xx.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let registry = closed.local_addr().unwrap();
        drop(closed);
        let app = TestApp::spawn_with(|settings| {
            settings.registry.business_registry_url = Some(
                UrlTemplate::parse(&format!("http://{registry}/v1/companies/{{business_id}}"))
                    .unwrap(),
            );
            settings.registry.business_registry_retries = 0;
        })
        .await;
        let customer = app.register(new_customer("Ada", "Lovelace")).await;
        let missing = "customers/0190a7b2-8c1e-7c1a-9d2e-1f2a3b4c5d6e";
        let get = |name: &str| pb::GetCustomerRequest {
            name: name.into(),
            ..Default::default()
        };
        let rest_get = |name: &str| format!("/v1/{name}");
        let mut calls = Vec::new();
        for transport in [
            Transport::Grpc,
            Transport::GrpcWeb,
            Transport::Connect,
            Transport::Rest,
        ] {
            let tag = format!("{transport:?}").to_lowercase();
            let cases = [
                ("ok", &customer.name[..], true),
                ("invalid", "customers/abc", true),
                ("unauthenticated", &customer.name[..], false),
                ("missing", missing, true),
            ];
            for (case, name, authorized) in cases {
                let exchange = call(
                    &app,
                    transport,
                    ("GetCustomer", &rest_get(name)),
                    &get(name),
                    &format!("{tag}-{case}"),
                    authorized,
                )
                .await;
                calls.push((transport, case, exchange));
            }
            let business = pb::GetBusinessInfoRequest {
                name: "businesses/GB-1".into(),
            };
            let exchange = call(
                &app,
                transport,
                ("GetBusinessInfo", "/v1/businesses/GB-1"),
                &business,
                &format!("{tag}-unavailable"),
                true,
            )
            .await;
            calls.push((transport, "unavailable", exchange));
        }
        // No route at all, a generated request id, and a probe.
        let no_route = call(
            &app,
            Transport::Rest,
            ("", "/v1/nothing/jane.doe@example.com"),
            &get(""),
            "",
            true,
        )
        .await;
        calls.push((Transport::Rest, "no-route", no_route));
        let probe = call(
            &app,
            Transport::Rest,
            ("", "/healthz"),
            &get(""),
            "probe",
            false,
        )
        .await;
        calls.push((Transport::Rest, "probe", probe));
        calls
    });
    let lines = access_lines(&logs);
    // And the CreateCustomer of the set-up.
    assert_eq!(lines.len(), calls.len() + 1, "{lines:#?}");

    for (transport, case, exchange) in &calls {
        let echoed = exchange.headers["x-request-id"].to_str().unwrap();
        let request_id = if exchange.request_id.is_empty() {
            let generated = uuid::Uuid::parse_str(echoed).unwrap();
            assert_eq!(generated.get_version_num(), 7, "{echoed}");
            echoed
        } else {
            assert_eq!(echoed, exchange.request_id);
            &exchange.request_id
        };
        let line = fixed(line_of(&lines, request_id));
        let (code, http) = match *case {
            "ok" | "probe" => ("OK", 200),
            "invalid" => ("INVALID_ARGUMENT", 400),
            "unauthenticated" => ("UNAUTHENTICATED", 401),
            "missing" | "no-route" => ("NOT_FOUND", 404),
            "unavailable" => ("UNAVAILABLE", 503),
            other => unreachable!("{other}"),
        };
        let (rpc, rest_route) = if *case == "unavailable" {
            ("GetBusinessInfo", "/v1/{name=businesses/**}")
        } else {
            ("GetCustomer", "/v1/{name=customers/*}")
        };
        let level = match *case {
            "unavailable" => "WARN",
            "probe" => "DEBUG",
            _ => "INFO",
        };
        // What the server read: a refused caller's message is never read (Connect reads it
        // whole first, to make the in-process call).
        let bytes_in = if *case == "unauthenticated" && *transport != Transport::Connect {
            0
        } else {
            exchange.bytes_in
        };
        let mut expected = json!({
            "level": level,
            "target": "access",
            "request_id": request_id,
            "bytes_in": bytes_in,
            "bytes_out": exchange.bytes_out,
            "trace_id": TRACE_ID,
        });
        let fields = expected.as_object_mut().unwrap();
        match (transport, *case) {
            (_, "probe") => {
                fields.insert("transport".into(), json!("http"));
                fields.insert("method".into(), json!("GET"));
                fields.insert("route".into(), json!("/healthz"));
                fields.insert("http_status".into(), json!(200));
            }
            (_, "no-route") => {
                fields.insert("transport".into(), json!("rest"));
                fields.insert("method".into(), json!("GET"));
                fields.insert("grpc_code".into(), json!(code));
                fields.insert("http_status".into(), json!(404));
            }
            (Transport::Connect, _) => {
                fields.insert("transport".into(), json!("connect"));
                fields.insert("method".into(), json!("POST"));
                fields.insert(
                    "rpc".into(),
                    json!(format!("/customer.v1.CustomerService/{rpc}")),
                );
                fields.insert("grpc_code".into(), json!(code));
                fields.insert("http_status".into(), json!(http));
            }
            (Transport::Rest, _) => {
                fields.insert("transport".into(), json!("rest"));
                fields.insert("method".into(), json!("GET"));
                fields.insert("route".into(), json!(rest_route));
                fields.insert(
                    "rpc".into(),
                    json!(format!("/customer.v1.CustomerService/{rpc}")),
                );
                fields.insert("grpc_code".into(), json!(code));
                fields.insert("http_status".into(), json!(http));
            }
            (grpc, _) => {
                let name = if *grpc == Transport::Grpc {
                    "grpc"
                } else {
                    "grpc-web"
                };
                fields.insert("transport".into(), json!(name));
                fields.insert("method".into(), json!("POST"));
                fields.insert(
                    "rpc".into(),
                    json!(format!("/customer.v1.CustomerService/{rpc}")),
                );
                fields.insert("grpc_code".into(), json!(code));
                fields.insert("http_status".into(), json!(200));
            }
        }
        if !matches!(*case, "unauthenticated" | "probe" | "no-route") {
            fields.insert("caller".into(), json!("test-user"));
        }
        if matches!(transport, Transport::Rest | Transport::Connect) {
            assert_eq!(exchange.status.as_u16(), http, "{case}");
        }
        if code != "OK" {
            let (reason, metadata) = error_info(*transport, exchange);
            assert_eq!(
                metadata["requestId"], request_id,
                "{transport:?} {case}: {metadata}"
            );
            if *case == "unauthenticated" {
                assert_eq!(reason, "UNAUTHENTICATED", "{transport:?}");
            }
        }
        assert_eq!(line, expected, "{transport:?} {case}");
    }
    // Neither the raw path of the unrouted request nor anything in it.
    assert!(!logs.contains("nothing/"), "{logs}");
    assert!(!logs.contains("jane.doe"), "{logs}");
}
