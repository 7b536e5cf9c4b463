//! The Connect protocol on the gRPC paths: raw requests (GET reads in JSON and binary, the
//! methods GET is allowed on derived from the proto, the error JSON with the same details a
//! gRPC client gets, 415s, protocol headers, enveloped streams and their end-stream error),
//! then real clients: @connectrpc/connect-node (JSON over HTTP/1.1, binary over h2c) and
//! connect-web's default transport in headless Chromium, each running the scenario of
//! `tests/clients/connect_scenario.ts` (type-checked) on the TypeScript SDK that
//! `buf generate` makes.

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use prost::Message;
use serde_json::{Value as Json, json};
use tonic_types::StatusExt;

use crate::{
    capture::captured,
    docs::CHROMIUM,
    helpers::{Scratch, TestApp, tool},
};
use customer_api::{config::LogFormat, pb};

const SERVICE: &str = "/customer.v1.CustomerService";

/// Sends a request (with the app's token unless `authorized` is false) over HTTP/1.1 and
/// reads the whole answer.
async fn send(
    app: &TestApp,
    method: Method,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
    authorized: bool,
) -> (StatusCode, HeaderMap, Bytes) {
    let bearer = app.bearer();
    let mut all = Vec::with_capacity(headers.len() + 1);
    if authorized {
        all.push(("authorization", bearer.as_str()));
    }
    all.extend_from_slice(headers);
    crate::helpers::http_request(app, method, path_and_query, &all, body.into()).await
}

fn json_of(body: &[u8]) -> Json {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

/// A Connect envelope.
fn envelope(flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![flags];
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The envelopes of a stream body, as (flags, payload).
fn envelopes(mut body: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let length = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        out.push((body[0], body[5..5 + length].to_vec()));
        body = &body[5 + length..];
    }
    out
}

fn query(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_get_reads_a_customer_in_json_and_in_binary_as_rest_and_grpc_do() {
    let app = TestApp::spawn().await;
    let ada = app.create("Ada", "Lovelace").await;
    let message = json!({"name": ada.name}).to_string();

    let (status, headers, body) = send(
        &app,
        Method::GET,
        &format!(
            "{SERVICE}/GetCustomer?{}",
            query(&[
                ("connect", "v1"),
                ("encoding", "json"),
                ("message", &message)
            ])
        ),
        &[],
        Bytes::new(),
        true,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert_eq!(headers["content-type"], "application/json");
    let (_, _, rest) = crate::rest::call(
        &app,
        false,
        Method::GET,
        &format!("/v1/{}", ada.name),
        None,
        &[],
    )
    .await;
    assert_eq!(json_of(&body), rest);

    let request = pb::GetCustomerRequest {
        name: ada.name.clone(),
        ..Default::default()
    };
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(request.encode_to_vec());
    let (status, headers, body) = send(
        &app,
        Method::GET,
        &format!(
            "{SERVICE}/GetCustomer?{}",
            query(&[
                ("connect", "v1"),
                ("encoding", "proto"),
                ("base64", "1"),
                ("message", &encoded)
            ])
        ),
        &[],
        Bytes::new(),
        true,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/proto");
    assert_eq!(pb::Customer::decode(body).unwrap(), ada);
}

#[tokio::test(flavor = "multi_thread")]
async fn get_is_served_exactly_for_the_methods_the_proto_marks_without_side_effects() {
    let app = TestApp::spawn().await;
    let set = prost_types::FileDescriptorSet::decode(customer_api::FILE_DESCRIPTOR_SET).unwrap();
    let service = set
        .file
        .iter()
        .flat_map(|file| &file.service)
        .find(|service| service.name() == "CustomerService")
        .unwrap();
    let mut reads = Vec::new();
    for method in &service.method {
        let no_side_effects = method.options.as_ref().is_some_and(|options| {
            options.idempotency_level()
                == prost_types::method_options::IdempotencyLevel::NoSideEffects
        });
        let (status, headers, body) = send(
            &app,
            Method::GET,
            &format!(
                "{SERVICE}/{}?connect=v1&encoding=json&message=%7B%7D",
                method.name()
            ),
            &[],
            Bytes::new(),
            true,
        )
        .await;
        if method.client_streaming() {
            // Connect serves no client streams here: the refusal says where it is served.
            assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{}", method.name());
            let body = json_of(&body);
            assert_eq!(body["code"], "unimplemented");
            assert!(
                body["message"]
                    .as_str()
                    .unwrap()
                    .ends_with("takes a stream of requests, which this server serves over gRPC (and its REST binding), not Connect"),
                "{body}"
            );
        } else if no_side_effects {
            reads.push(method.name().to_owned());
            // An empty request: the service's own answer (a missing name), not a refusal.
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{}", method.name());
            assert_ne!(
                status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{}",
                method.name()
            );
        } else {
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{}", method.name());
            assert_eq!(headers["allow"], "POST");
            assert_eq!(json_of(&body)["code"], "unimplemented");
        }
    }
    assert_eq!(
        reads,
        [
            "GetCustomer",
            "BatchGetCustomers",
            "ListCustomers",
            "LookupCustomer",
            "ListCustomerEvents",
            "GetCompany",
            "ListCompanies",
            "GetNote",
            "ListNotes",
            "GetBusinessInfo",
            "ExportCustomerData"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_error_is_connect_error_json_carrying_the_details_grpc_gives() {
    let app = TestApp::spawn().await;
    let customer =
        json!({"customer": {"givenName": "X", "familyName": "Y", "email": "not-an-email"}});

    let (status, headers, body) = send(
        &app,
        Method::POST,
        &format!("{SERVICE}/CreateCustomer"),
        &[
            ("content-type", "application/json"),
            ("connect-protocol-version", "1"),
            ("x-request-id", "connect-error-1"),
        ],
        customer.to_string(),
        true,
    )
    .await;

    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers["content-type"], "application/json");
    let error = json_of(&body);
    assert_eq!(error["code"], "invalid_argument");
    let mut grpc_request = tonic::Request::new(pb::CreateCustomerRequest {
        duplicate_policy: 0,
        customer: Some(pb::Customer {
            given_name: "X".into(),
            family_name: "Y".into(),
            email: "not-an-email".into(),
            ..Default::default()
        }),
        request_id: String::new(),
    });
    grpc_request
        .metadata_mut()
        .insert("x-request-id", "connect-error-1".parse().unwrap());
    let status = app
        .client
        .clone()
        .create_customer(grpc_request)
        .await
        .unwrap_err();
    assert_eq!(error["message"], status.message());
    let details = error["details"].as_array().unwrap();
    let grpc_details = tonic_types::pb::Status::decode(status.details())
        .unwrap()
        .details;
    assert_eq!(details.len(), grpc_details.len());
    for (detail, any) in details.iter().zip(&grpc_details) {
        // The same Any, in Connect's form: the type's name and its bytes in base64.
        assert_eq!(
            detail["type"],
            any.type_url.trim_start_matches("type.googleapis.com/")
        );
        let value = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(detail["value"].as_str().unwrap())
            .unwrap();
        match detail["type"].as_str().unwrap() {
            // A map: compare decoded, its encoding order is not fixed.
            "google.rpc.ErrorInfo" => {
                let info = tonic_types::pb::ErrorInfo::decode(value.as_slice()).unwrap();
                assert_eq!(
                    info,
                    tonic_types::pb::ErrorInfo::decode(any.value.as_slice()).unwrap()
                );
                assert_eq!(info.metadata["requestId"], "connect-error-1");
                assert_eq!(detail["debug"]["metadata"]["requestId"], "connect-error-1");
            }
            "google.rpc.BadRequest" => {
                assert_eq!(value, any.value);
                assert_eq!(
                    detail["debug"]["fieldViolations"][0]["field"],
                    "customer.email"
                );
            }
            other => panic!("unexpected detail {other}"),
        }
    }
    assert_eq!(
        status
            .get_error_details()
            .bad_request()
            .unwrap()
            .field_violations[0]
            .field,
        "customer.email"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unsupported_content_types_get_415_naming_what_is_accepted_on_every_path() {
    let app = TestApp::spawn().await;
    let cases = [
        // Neither gRPC, gRPC-web nor Connect.
        ("GetCustomer", "text/plain", None),
        ("GetCustomer", "application/grpc+json", None),
        // Connect, but the other kind of call.
        (
            "GetCustomer",
            "application/connect+json",
            Some("application/json, application/proto"),
        ),
        (
            "WatchCustomerEvents",
            "application/json",
            Some("application/connect+json, application/connect+proto"),
        ),
    ];
    for (method, content_type, accept_post) in cases {
        let (status, headers, body) = send(
            &app,
            Method::POST,
            &format!("{SERVICE}/{method}"),
            &[("content-type", content_type)],
            "{}",
            true,
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{method} {content_type}"
        );
        assert_eq!(headers["content-type"], "application/json");
        let error = json_of(&body);
        let message = match accept_post {
            None => error["error"]["message"].as_str().unwrap().to_owned(),
            Some(accepted) => {
                assert_eq!(headers["accept-post"], accepted);
                assert_eq!(error["code"], "invalid_argument");
                error["message"].as_str().unwrap().to_owned()
            }
        };
        assert!(
            message.starts_with(&format!(
                "`{content_type}` is not supported on {SERVICE}/{method}"
            )),
            "{message}"
        );
        assert!(message.contains("Connect"), "{message}");
    }
    // And on a REST route.
    let (status, _, body) = send(
        &app,
        Method::POST,
        "/v1/customers",
        &[("content-type", "text/plain")],
        "{}",
        true,
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(json_of(&body)["error"]["status"], "INVALID_ARGUMENT");
}

#[tokio::test(flavor = "multi_thread")]
async fn protocol_headers_are_checked_and_the_caller_is_authenticated() {
    let app = TestApp::spawn().await;
    let path = format!("{SERVICE}/ListCustomers");
    let json = ("content-type", "application/json");
    for (header, reason) in [
        (
            ("connect-protocol-version", "2"),
            "UNSUPPORTED_PROTOCOL_VERSION",
        ),
        (("connect-timeout-ms", "soon"), "INVALID_TIMEOUT"),
        (("connect-timeout-ms", "12345678901"), "INVALID_TIMEOUT"),
    ] {
        let (status, _, body) = send(&app, Method::POST, &path, &[json, header], "{}", true).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{header:?}");
        let error = json_of(&body);
        assert_eq!(error["code"], "invalid_argument");
        let info = error["details"]
            .as_array()
            .unwrap()
            .iter()
            .find(|detail| detail["type"] == "google.rpc.ErrorInfo")
            .unwrap();
        assert_eq!(info["debug"]["reason"], reason);
        assert!(info["debug"]["metadata"]["requestId"].is_string());
    }

    let (status, headers, body) = send(
        &app,
        Method::POST,
        &path,
        &[json, ("content-encoding", "gzip")],
        "{}",
        true,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    assert_eq!(headers["accept-encoding"], "identity");
    assert_eq!(json_of(&body)["code"], "unimplemented");

    // A generous timeout is passed on as the call's deadline and the call succeeds.
    let (status, _, body) = send(
        &app,
        Method::POST,
        &path,
        &[json, ("connect-timeout-ms", "60000")],
        "{}",
        true,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json_of(&body)["customers"], json!([]));

    let (status, headers, body) = send(&app, Method::POST, &path, &[json], "{}", false).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.contains_key("www-authenticate"));
    assert_eq!(json_of(&body)["code"], "unauthenticated");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_sends_enveloped_messages_and_a_failing_one_ends_with_an_end_stream_error() {
    let app = TestApp::spawn().await;
    let ada = app.create("Ada", "Lovelace").await;
    let path = format!("{SERVICE}/WatchCustomerEvents");

    // A failing stream: HTTP 200, one end-stream envelope with the error.
    let request = json!({"parent": "bogus"}).to_string();
    let (status, headers, body) = send(
        &app,
        Method::POST,
        &path,
        &[("content-type", "application/connect+json")],
        envelope(0, request.as_bytes()),
        true,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/connect+json");
    let frames = envelopes(&body);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].0, 0b10);
    let end = json_of(&frames[0].1);
    assert_eq!(end["error"]["code"], "invalid_argument");
    assert!(
        end["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .any(|detail| detail["type"] == "google.rpc.BadRequest"),
        "{end}"
    );

    // A live stream (binary): the first message envelope is Ada's creation. The stream stays
    // open for more, so only its start is read.
    let request = pb::WatchCustomerEventsRequest {
        parent: ada.name.clone(),
        ..Default::default()
    };
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = client
        .request(
            Request::post(format!("http://{}{path}", app.addr))
                .header("authorization", app.bearer())
                .header("content-type", "application/connect+proto")
                .body(Full::new(Bytes::from(envelope(
                    0,
                    &request.encode_to_vec(),
                ))))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/connect+proto"
    );
    let mut body = response.into_body();
    let mut received = Vec::new();
    loop {
        if received.len() >= 5 {
            let length = u32::from_be_bytes(received[1..5].try_into().unwrap()) as usize;
            if received.len() >= 5 + length {
                break;
            }
        }
        let frame = body.frame().await.unwrap().unwrap();
        if let Ok(data) = frame.into_data() {
            received.extend_from_slice(&data);
        }
    }
    let (flags, payload) =
        envelopes(&received[..5 + u32::from_be_bytes(received[1..5].try_into().unwrap()) as usize])
            .remove(0);
    assert_eq!(flags, 0);
    let event = pb::CustomerEvent::decode(payload.as_slice()).unwrap();
    assert_eq!((event.sequence, event.customer), (1, ada.name));
}

/// The TypeScript SDK `buf generate` makes (buf.gen.yaml), in `dir/gen/ts`, with the tools'
/// node_modules beside it and the scenario type-checked against it (`tsc --strict`, the SDK's
/// declarations included) and compiled to `connect_scenario.js`.
async fn typescript_sdk(dir: &std::path::Path) {
    crate::sdk::generate(dir).await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for script in [
        "connect_scenario.ts",
        "connect_node.mjs",
        "connect_web.mjs",
        "connect_web_entry.mjs",
    ] {
        std::fs::copy(root.join("tests/clients").join(script), dir.join(script)).unwrap();
    }
    crate::clients::node_project(dir, &["connect_scenario.ts"], json!({}));
    let tsc = tool("target/tools/node/node_modules/.bin/tsc");
    crate::clients::run(&tsc, &["-p", "."], dir, &[&root.join("target/tools/node")]).await;
}

/// What the scenario must report, for customers tagged `tag`.
fn expected(tag: &str) -> Json {
    let ada = format!("ada.{}", tag.to_lowercase());
    json!({
        "created": ["Ada", "Alan", "Grace"],
        "got": ada,
        "unsetIsAbsent": true,
        "listed": ["Ada", "Alan", "Grace"],
        "pages": 2,
        "updated": {"phone": "+14155550123", "email": ada},
        "staleEtag": ["Aborted", [], true],
        "deleted": true,
        "invalid": ["InvalidArgument", ["customer.email"], true],
        "missing": ["NotFound", [], true],
        "unauthenticated": ["Unauthenticated", [], true],
        "watched": [[1, ""], [2, "+14155550123"], [3, "+14155550123"]],
        "watchInvalid": ["InvalidArgument", ["parent"], true],
    })
}

/// Per RPC, the HTTP methods its calls came with (from the server's access lines of RPCs,
/// all of which must be of the Connect transport), in order, repeats removed. (A browser
/// also asks for its page and /favicon.ico.)
fn methods_by_rpc(logs: &str) -> Json {
    let mut methods: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for line in logs.lines() {
        let line: Json = serde_json::from_str(line).unwrap();
        if line["target"] != "access" || line["rpc"].is_null() {
            continue;
        }
        assert_eq!(line["transport"], "connect", "{line}");
        let rpc = line["rpc"].as_str().unwrap().rsplit('/').next().unwrap();
        let list = methods.entry(rpc.to_owned()).or_default();
        let method = line["method"].as_str().unwrap().to_owned();
        if !list.contains(&method) {
            list.push(method);
        }
    }
    json!(methods)
}

/// Reads (Get, List) by GET, everything else by POST.
fn connect_methods() -> Json {
    json!({
        "CreateCustomer": ["POST"],
        "DeleteCustomer": ["POST"],
        "GetCustomer": ["GET"],
        "ListCustomers": ["GET"],
        "UpdateCustomer": ["POST"],
        "WatchCustomerEvents": ["POST"],
    })
}

#[test]
fn connect_node_runs_the_scenario_in_json_and_in_binary() {
    let node = tool("target/tools/node/node");
    let (logs, reports) = captured(LogFormat::Json, "warn,access=info", async {
        let app = TestApp::spawn().await;
        let scratch = Scratch::new("connect-node");
        typescript_sdk(&scratch.0).await;
        let api = format!("http://{}", app.addr);
        let mut reports = Vec::new();
        for format in ["json", "binary"] {
            let stdout = crate::clients::run(
                &node,
                &["connect_node.mjs", &api, &app.token, format],
                &scratch.0,
                &[],
            )
            .await;
            reports.push(crate::clients::report(&stdout));
        }
        reports
    });

    assert_eq!(reports, [expected("Json"), expected("Binary")]);
    assert_eq!(methods_by_rpc(&logs), connect_methods());
}

#[test]
fn connect_web_in_chromium_runs_the_scenario_in_json_and_in_binary() {
    let node = tool("target/tools/node/node");
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run `make test-tools` (`make test` does it first)"
    );
    let (logs, report) = captured(LogFormat::Json, "warn,access=info", async {
        let app = TestApp::spawn().await;
        let scratch = Scratch::new("connect-web");
        typescript_sdk(&scratch.0).await;
        let api = format!("http://{}", app.addr);
        let stdout = crate::clients::run(
            &node,
            &["connect_web.mjs", &api, &app.token, CHROMIUM],
            &scratch.0,
            &[],
        )
        .await;
        crate::clients::report(&stdout)
    });

    assert_eq!(
        report,
        json!({
            "json": expected("WebJson"),
            "binary": expected("WebBinary"),
            "pageErrors": [],
        })
    );
    assert_eq!(methods_by_rpc(&logs), connect_methods());
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_timeout_ms_is_the_deadline_of_the_call() {
    use diesel_async::SimpleAsyncConnection;
    let app = TestApp::spawn().await;
    let ada = app.create("Ada", "Lovelace").await;
    // The row is locked, so the update waits for it past its deadline.
    let mut lock = crate::helpers::lock_customer(&app, &ada.name).await;
    let update = json!({
        "customer": {"name": ada.name, "phone": "+14155550123"},
        "updateMask": "phone",
    });

    let (status, _, body) = send(
        &app,
        Method::POST,
        &format!("{SERVICE}/UpdateCustomer"),
        &[
            ("content-type", "application/json"),
            ("connect-timeout-ms", "200"),
        ],
        update.to_string(),
        true,
    )
    .await;

    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body:?}");
    assert_eq!(json_of(&body)["code"], "deadline_exceeded");
    lock.batch_execute("ROLLBACK").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_that_is_not_its_message_in_json_is_invalid_and_quoted_masked() {
    let app = TestApp::spawn().await;
    let (status, _, body) = send(
        &app,
        Method::POST,
        &format!("{SERVICE}/ListCustomers"),
        &[("content-type", "application/json")],
        r#"{"showDeleted": "jane.doe@example.com"}"#,
        true,
    )
    .await;

    assert_eq!(status, StatusCode::BAD_REQUEST);
    let error = json_of(&body);
    assert_eq!(error["code"], "invalid_argument");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("the request is not a valid customer.v1.ListCustomersRequest in JSON"),
        "{message}"
    );
    // The value is quoted with the personal data masked, as the REST routes do.
    let text = String::from_utf8_lossy(&body);
    assert!(!text.contains("jane.doe"), "{text}");
    assert!(text.contains("j***@example.com"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_json_request_naming_a_key_twice_is_invalid_argument_and_creates_nothing() {
    let app = TestApp::spawn().await;
    for body in [
        r#"{"customer":{"givenName":"A","familyName":"B","email":"a@example.com","email":"b@example.com"}}"#,
        r#"{"customer":{"givenName":"A","familyName":"B","email":"a@example.com"},"customer":{"givenName":"C"}}"#,
        r#"{"customer":{"givenName":"A","familyName":"B","email":"a@example.com","labels":{"k":"1","k":"2"}}}"#,
    ] {
        let (status, _, answer) = send(
            &app,
            Method::POST,
            &format!("{SERVICE}/CreateCustomer"),
            &[("content-type", "application/json")],
            body,
            true,
        )
        .await;

        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let error = json_of(&answer);
        assert_eq!(error["code"], "invalid_argument", "{error}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains("appears twice"), "{message}");
    }
    assert_eq!(app.count("customers", "").await, 0);
}
