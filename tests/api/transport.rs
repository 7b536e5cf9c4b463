//! The listener's other faces: gRPC-web (binary and text, HTTP/1.1), CORS, reflection,
//! health, HTTP probes, malformed protobuf.

use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;
use customer_api::pb;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use prost::Message;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_types::StatusExt;

use crate::helpers::{TestApp, new_customer};

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

fn http1() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn http2() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A gRPC length-prefixed frame.
pub(crate) fn frame(message: &impl Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut framed = vec![0_u8];
    framed.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(&body);
    framed
}

/// Splits a gRPC-web response body into (data frames, trailer block).
pub(crate) fn unframe(mut body: &[u8]) -> (Vec<Vec<u8>>, String) {
    let mut data = Vec::new();
    let mut trailers = String::new();
    while body.len() >= 5 {
        let flag = body[0];
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        let payload = &body[5..5 + len];
        if flag & 0x80 != 0 {
            trailers.push_str(std::str::from_utf8(payload).unwrap());
        } else {
            data.push(payload.to_vec());
        }
        body = &body[5 + len..];
    }
    assert!(body.is_empty(), "trailing bytes in gRPC-web body");
    (data, trailers)
}

/// A gRPC-web response field: from the trailer frame, or from the headers of a
/// trailers-only response (errors raised before any message).
fn status_field(parts: &http::response::Parts, trailers: &str, name: &str) -> Option<String> {
    trailer(trailers, name).map(str::to_owned).or_else(|| {
        parts
            .headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    })
}

pub(crate) fn trailer<'a>(trailers: &'a str, name: &str) -> Option<&'a str> {
    trailers
        .split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .find(|(key, _)| key.trim().eq_ignore_ascii_case(name))
        .map(|(_, value)| value.trim())
}

pub(crate) async fn grpc_web(
    app: &TestApp,
    method: &str,
    body: Vec<u8>,
    content_type: &str,
) -> (http::response::Parts, Vec<u8>) {
    let request = http::Request::post(format!(
        "http://{}/customer.v1.CustomerService/{method}",
        app.addr
    ))
    .header("content-type", content_type)
    .header("x-grpc-web", "1")
    .header("authorization", app.bearer())
    .header("accept", content_type)
    .body(Full::new(Bytes::from(body)))
    .unwrap();
    let response = http1().request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    (parts, body.collect().await.unwrap().to_bytes().to_vec())
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_web_binary_over_http1_creates_and_reads() {
    let app = TestApp::spawn().await;
    let request = pb::CreateCustomerRequest {
        duplicate_policy: 0,
        customer: Some(new_customer("Web", "Binary")),
        request_id: String::new(),
    };

    let (parts, body) = grpc_web(
        &app,
        "CreateCustomer",
        frame(&request),
        "application/grpc-web+proto",
    )
    .await;

    assert_eq!(parts.status, 200);
    assert_eq!(parts.version, http::Version::HTTP_11);
    assert_eq!(parts.headers["content-type"], "application/grpc-web+proto");
    let (data, trailers) = unframe(&body);
    assert_eq!(trailer(&trailers, "grpc-status"), Some("0"));
    let created = pb::Customer::decode(data[0].as_slice()).unwrap();
    assert_eq!(created.given_name, "Web");
    assert_eq!(app.count("customers", "").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_web_text_carries_errors_with_details_in_trailers() {
    let app = TestApp::spawn().await;
    let name = format!("customers/{}", uuid::Uuid::now_v7());
    let body = STANDARD.encode(frame(&pb::GetCustomerRequest {
        name: name.clone(),
        ..Default::default()
    }));

    let (parts, body) = grpc_web(
        &app,
        "GetCustomer",
        body.into_bytes(),
        "application/grpc-web-text",
    )
    .await;

    assert_eq!(parts.status, 200);
    assert_eq!(
        parts.headers["content-type"],
        "application/grpc-web-text+proto"
    );
    let decoded = STANDARD.decode(&body).unwrap();
    let (data, trailers) = unframe(&decoded);
    assert!(data.is_empty());
    assert_eq!(
        status_field(&parts, &trailers, "grpc-status").as_deref(),
        Some("5")
    );
    let details = status_field(&parts, &trailers, "grpc-status-details-bin").expect("details");
    let status = tonic_types::pb::Status::decode(
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(details.trim_end_matches('='))
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    assert_eq!(status.code, Code::NotFound as i32);
    assert!(
        status
            .details
            .iter()
            .any(|d| d.type_url.ends_with("google.rpc.ResourceInfo"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_preflight_and_exposed_grpc_headers_for_configured_origins() {
    let app =
        TestApp::spawn_with(|s| s.cors_allowed_origins = vec!["https://app.example".into()]).await;
    let preflight = http::Request::builder()
        .method("OPTIONS")
        .uri(format!(
            "http://{}/customer.v1.CustomerService/GetCustomer",
            app.addr
        ))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,x-grpc-web,x-user-agent",
        )
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = http1().request(preflight).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let allowed = response.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(allowed.contains("x-grpc-web"), "{allowed}");

    let request = http::Request::post(format!(
        "http://{}/customer.v1.CustomerService/ListCustomers",
        app.addr
    ))
    .header("origin", "https://app.example")
    .header("authorization", app.bearer())
    .header("content-type", "application/grpc-web+proto")
    .body(Full::new(Bytes::from(frame(
        &pb::ListCustomersRequest::default(),
    ))))
    .unwrap();
    let response = http1().request(request).await.unwrap();
    let exposed = response.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    for header in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        assert!(exposed.contains(header), "{exposed}");
    }

    let foreign = http::Request::builder()
        .method("OPTIONS")
        .uri(format!(
            "http://{}/customer.v1.CustomerService/GetCustomer",
            app.addr
        ))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = http1().request(foreign).await.unwrap();
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

/// A comma-separated header's items.
fn header_list<'h>(headers: &'h http::HeaderMap, name: &str) -> Vec<&'h str> {
    headers[name]
        .to_str()
        .unwrap()
        .split(',')
        .map(str::trim)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_allows_every_header_the_service_reads_and_exposes_every_one_it_sets() {
    let app =
        TestApp::spawn_with(|s| s.cors_allowed_origins = vec!["https://app.example".into()]).await;
    let mut requested: Vec<&str> = customer_api::server::CORS_REQUEST_HEADERS.to_vec();
    requested.extend(["grpc-metadata-tenant", "x-not-read", "cookie"]);
    for path in [
        "/v1/customers",
        "/customer.v1.CustomerService/ListCustomers",
    ] {
        let preflight = http::Request::builder()
            .method("OPTIONS")
            .uri(format!("http://{}{path}", app.addr))
            .header("origin", "https://app.example")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", requested.join(", "))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = http1().request(preflight).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let allowed = header_list(response.headers(), "access-control-allow-headers");
        let mut expected = customer_api::server::CORS_REQUEST_HEADERS.to_vec();
        expected.push("grpc-metadata-tenant");
        assert_eq!(allowed, expected, "{path}");
        for must in ["traceparent", "tracestate", "idempotency-key", "if-match"] {
            assert!(allowed.contains(&must), "{must}");
        }
    }

    // An actual cross-origin call may read every header the service sets.
    let request = http::Request::get(format!("http://{}/v1/customers", app.addr))
        .header("origin", "https://app.example")
        .header("authorization", app.bearer())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = http1().request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let exposed = header_list(response.headers(), "access-control-expose-headers");
    assert_eq!(exposed, customer_api::server::CORS_EXPOSED_HEADERS);
    for must in ["retry-after", "etag", "location", "grpc-status-details-bin"] {
        assert!(exposed.contains(&must), "{must}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unsupported_content_types_are_415_with_a_json_error_on_every_path() {
    let app = TestApp::spawn().await;
    let grpc = "/customer.v1.CustomerService/ListCustomers";
    let body = frame(&pb::ListCustomersRequest::default());
    for (h2, path, content_type) in [
        (true, grpc, Some("text/plain")),
        (true, grpc, Some("application/grpc+json")),
        (true, grpc, None),
        (false, grpc, Some("application/grpc-web+json")),
        // Connect's content types are served on the customer service (tests/api/connect.rs,
        // which also covers a Connect type on the wrong kind of method), not on health.
        (true, "/grpc.health.v1.Health/Check", Some("text/plain")),
        (
            false,
            "/grpc.health.v1.Health/Check",
            Some("application/json"),
        ),
        (
            true,
            "/grpc.health.v1.Health/Check",
            Some("application/connect+proto"),
        ),
        (false, "/v1/customers", Some("text/plain")),
        (true, "/v1/customers", Some("application/grpc")),
    ] {
        let mut request = http::Request::post(format!("http://{}{path}", app.addr))
            .header("authorization", app.bearer());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let request = request.body(Full::new(Bytes::from(body.clone()))).unwrap();
        let client = if h2 { http2() } else { http1() };
        let response = client.request(request).await.unwrap();
        let case = format!("{path} {content_type:?} (h2 {h2})");
        assert_eq!(response.status(), 415, "{case}");
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{case}"
        );
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let error: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(error["error"]["code"], 415, "{case}");
        assert_eq!(error["error"]["status"], "INVALID_ARGUMENT", "{case}");
        assert_eq!(
            error["error"]["details"][0]["reason"], "UNSUPPORTED_MEDIA_TYPE",
            "{case}"
        );
        let message = error["error"]["message"].as_str().unwrap();
        let named = content_type.unwrap_or("no content type");
        assert!(message.contains(named), "{case}: {message}");
    }
    // gRPC-web itself still passes.
    let request = http::Request::post(format!("http://{}{grpc}", app.addr))
        .header("authorization", app.bearer())
        .header("content-type", "application/grpc-web+proto")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = http1().request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let (messages, trailers) = unframe(&bytes);
    assert_eq!(messages.len(), 1);
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_protobuf_is_invalid_argument_on_grpc_and_grpc_web() {
    let app = TestApp::spawn().await;
    // Field 1 declared as a 100-byte string, but only 1 byte follows.
    let garbage = [0x0a, 0x64, 0x41];
    let mut framed = vec![0_u8, 0, 0, 0, 3];
    framed.extend_from_slice(&garbage);

    let request = http::Request::post(format!(
        "http://{}/customer.v1.CustomerService/GetCustomer",
        app.addr
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .header("authorization", app.bearer())
    .body(Full::new(Bytes::from(framed.clone())))
    .unwrap();
    let response = http2().request(request).await.unwrap();
    let status = tonic::Status::from_header_map(response.headers()).expect("trailers-only status");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.get_error_details().error_info().unwrap().reason,
        "MALFORMED_REQUEST"
    );

    let (parts, body) = grpc_web(&app, "GetCustomer", framed, "application/grpc-web+proto").await;
    let (_, trailers) = unframe(&body);
    assert_eq!(
        status_field(&parts, &trailers, "grpc-status").as_deref(),
        Some("3")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reflection_v1_and_v1alpha_list_and_describe_everything() {
    use tonic_reflection::pb::{v1, v1alpha};
    let app = TestApp::spawn().await;

    let mut client = v1::server_reflection_client::ServerReflectionClient::new(app.channel.clone());
    let requests = [
        v1::server_reflection_request::MessageRequest::ListServices(String::new()),
        v1::server_reflection_request::MessageRequest::FileContainingSymbol(
            "customer.v1.CustomerService".into(),
        ),
        v1::server_reflection_request::MessageRequest::FileContainingSymbol(
            "google.rpc.BadRequest".into(),
        ),
    ]
    .map(|message| v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(message),
    });
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut answers = Vec::new();
    while let Some(response) = responses.message().await.unwrap() {
        answers.push(response.message_response.unwrap());
    }
    let v1::server_reflection_response::MessageResponse::ListServicesResponse(list) = &answers[0]
    else {
        panic!("{:?}", answers[0]);
    };
    let services: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "customer.v1.CustomerService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(services.contains(&expected), "{services:?}");
    }
    for answer in &answers[1..] {
        assert!(
            matches!(answer, v1::server_reflection_response::MessageResponse::FileDescriptorResponse(f) if !f.file_descriptor_proto.is_empty()),
            "{answer:?}"
        );
    }

    let mut alpha =
        v1alpha::server_reflection_client::ServerReflectionClient::new(app.channel.clone());
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut responses = alpha
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = responses.message().await.unwrap().unwrap();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answer.message_response
    else {
        panic!("no list");
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "customer.v1.CustomerService")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_reports_serving_and_http_probes_answer() {
    let app = TestApp::spawn().await;
    let mut health = HealthClient::new(app.channel.clone());
    // The first probe runs at start-up; watch until it has reported.
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "customer.v1.CustomerService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    loop {
        let status = watch.message().await.unwrap().unwrap().status;
        if status == ServingStatus::Serving as i32 {
            break;
        }
    }
    for service in ["", "customer.v1.CustomerService"] {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            response.status,
            ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "nope.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    for (path, body) in [("/healthz", "ok\n"), ("/readyz", "ready\n")] {
        let response = http1()
            .request(
                http::Request::get(format!("http://{}{path}", app.addr))
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let text = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(text, body.as_bytes(), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_web_clients_can_watch_events_over_http1() {
    let app = TestApp::spawn().await;
    let customer = app.create("Web", "Watcher").await;
    let request = pb::WatchCustomerEventsRequest {
        parent: customer.name.clone(),
        start_after: String::new(),
    };
    let request = http::Request::post(format!(
        "http://{}/customer.v1.CustomerService/WatchCustomerEvents",
        app.addr
    ))
    .header("content-type", "application/grpc-web+proto")
    .header("x-grpc-web", "1")
    .header("authorization", app.bearer())
    .body(Full::new(Bytes::from(frame(&request))))
    .unwrap();
    let response = http1().request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_11);
    // The stream stays open (it follows new events): read until the first message is whole.
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    let first = loop {
        if bytes.len() >= 5 {
            let len = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
            if bytes.len() >= 5 + len {
                assert_eq!(bytes[0], 0, "a data frame");
                break pb::CustomerEvent::decode(&bytes[5..5 + len]).unwrap();
            }
        }
        let frame = tokio::time::timeout(std::time::Duration::from_secs(20), body.frame())
            .await
            .expect("an event arrives")
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            bytes.extend_from_slice(&data);
        }
    };
    assert_eq!(first.customer, customer.name);
    assert_eq!(first.sequence, 1);
    assert!(matches!(
        first.kind,
        Some(pb::customer_event::Kind::Registered(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn client_faults_are_reported_as_client_faults_on_every_transport() {
    let app = TestApp::spawn_with(|s| s.max_request_bytes = 64 * 1024).await;

    // gRPC-web text that is not base64: INVALID_ARGUMENT, not INTERNAL.
    let (parts, body) = grpc_web(
        &app,
        "GetCustomer",
        b"!!!!AAAA".to_vec(),
        "application/grpc-web-text",
    )
    .await;
    let decoded = STANDARD.decode(&body).unwrap_or_default();
    let (_, trailers) = unframe(&decoded);
    assert_eq!(
        status_field(&parts, &trailers, "grpc-status").as_deref(),
        Some("3"),
        "{parts:?} {trailers}"
    );

    // A message over MAX_REQUEST_BYTES: RESOURCE_EXHAUSTED, not OUT_OF_RANGE.
    let mut big = new_customer("Big", "Request");
    big.labels.insert("k".into(), "v".repeat(70 * 1024));
    let status = crate::helpers::raw_grpc_status(
        &app,
        "CreateCustomer",
        &pb::CreateCustomerRequest {
            duplicate_policy: 0,
            customer: Some(big),
            request_id: String::new(),
        },
        &[],
    )
    .await;
    crate::helpers::assert_reason(&status, Code::ResourceExhausted, "REQUEST_TOO_LARGE");

    // A method nobody serves, asked by an authenticated caller: UNIMPLEMENTED.
    let status = crate::helpers::raw_grpc_status(
        &app,
        "DropAllCustomers",
        &pb::GetCustomerRequest::default(),
        &[],
    )
    .await;
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");

    // An enum number outside the enum is refused, as `status = 99` is.
    let customer = app.create("View", "Ninety-Nine").await;
    let status = app
        .client
        .clone()
        .get_customer(pb::GetCustomerRequest {
            name: customer.name.clone(),
            view: 99,
        })
        .await
        .unwrap_err();
    crate::helpers::assert_invalid(&status, "INVALID_FIELDS", &["view"]);

    // A REST body naming a key twice.
    let (status, _, body) = crate::rest::call(
        &app,
        false,
        http::Method::PATCH,
        &format!("/v1/{}", customer.name),
        Some(r#"{"givenName":"Ann","givenName":"Bob"}"#),
        &[],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`givenName` appears twice"),
        "{body}"
    );
}
