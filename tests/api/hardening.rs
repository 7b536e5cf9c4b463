//! Hostile input refused at the door (issue 16): text PostgreSQL cannot store, oversized
//! and repeated requests, protocol mis-mappings. Each answer is the documented client error on
//! every transport, never a 500.

use customer_api::pb;
use http::{Method, StatusCode};
use tonic::Code;

use crate::{
    helpers::{TestApp, assert_reason, new_customer},
    rest::{call, error_reason},
};

/// Percent-encodes `text` for a query string.
fn query(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nul_byte_in_any_filter_is_invalid_argument_on_grpc_and_rest() {
    let app = TestApp::spawn().await;
    let filters = [
        ("/v1/customers", "family_name = \"a\u{0}b\""),
        ("/v1/customers", "family_name:\"a\u{0}\""),
        ("/v1/companies", "display_name = \"a\u{0}b\""),
        ("/v1/customers/-/events", "actor = \"a\u{0}b\""),
    ];
    for (path, filter) in filters {
        let (status, _, body) = call(
            &app,
            false,
            Method::GET,
            &format!("{path}?filter={}", query(filter)),
            None,
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {filter:?}: {body}");
        assert_eq!(error_reason(&body), "INVALID_FIELDS", "{body}");
        let status = list_over_grpc(&app, path, filter).await.unwrap_err();
        assert_reason(&status, Code::InvalidArgument, "INVALID_FIELDS");
    }
}

/// The list RPC of the collection at the REST `path` with `filter` (its first page).
async fn list_over_grpc(app: &TestApp, path: &str, filter: &str) -> Result<(), tonic::Status> {
    let mut client = app.client.clone();
    let filter = filter.to_owned();
    match path {
        "/v1/customers" => {
            let request = pb::ListCustomersRequest {
                filter,
                ..Default::default()
            };
            client.list_customers(request).await.map(drop)
        }
        "/v1/companies" => {
            let request = pb::ListCompaniesRequest {
                filter,
                ..Default::default()
            };
            client.list_companies(request).await.map(drop)
        }
        "/v1/customers/-/events" => {
            let request = pb::ListCustomerEventsRequest {
                parent: "customers/-".into(),
                filter,
                ..Default::default()
            };
            client.list_customer_events(request).await.map(drop)
        }
        other => panic!("no list RPC for {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nul_byte_in_any_written_text_is_invalid_argument() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    let customer = app.create("Nul", "Text").await;
    let nul = |text: &str| format!("{text}\u{0}x");
    let mut cases: Vec<(&str, pb::Customer)> = Vec::new();
    let mut c = new_customer("A", "B");
    c.given_name = nul("A");
    cases.push(("given_name", c));
    let mut c = new_customer("A", "B");
    c.email = nul("a@example.com");
    cases.push(("email", c));
    let mut c = new_customer("A", "B");
    c.phone = nul("+4930123456");
    cases.push(("phone", c));
    let mut c = new_customer("A", "B");
    c.business_id = nul("GB-1");
    cases.push(("business_id", c));
    let mut c = new_customer("A", "B");
    c.labels.insert("k".into(), nul("v"));
    cases.push(("labels value", c));
    let mut c = new_customer("A", "B");
    c.labels.insert(nul("k"), "v".into());
    cases.push(("labels key", c));
    let mut c = new_customer("A", "B");
    c.address = Some(pb::PostalAddress {
        lines: vec![nul("1 Main St")],
        locality: nul("Town"),
        country_code: "GB".into(),
        ..Default::default()
    });
    cases.push(("address", c));
    for (case, customer) in cases {
        let status = app.create_customer(customer).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{case}: {status:?}");
    }
    let status = client
        .create_company(pb::CreateCompanyRequest {
            duplicate_policy: 0,
            company: Some(pb::Company {
                display_name: nul("Acme"),
                domain: nul("acme.example"),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_reason(&status, Code::InvalidArgument, "INVALID_FIELDS");
    let status = client
        .create_note(pb::CreateNoteRequest {
            parent: customer.name.clone(),
            note: Some(pb::Note {
                text: nul("hello"),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_reason(&status, Code::InvalidArgument, "INVALID_FIELDS");
    let lists = [
        pb::ListCustomersRequest {
            order_by: nul("family_name"),
            ..Default::default()
        },
        pb::ListCustomersRequest {
            page_token: nul("abc"),
            ..Default::default()
        },
    ];
    for request in lists {
        let status = client.list_customers(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }
    let status = client
        .delete_customer(pb::DeleteCustomerRequest {
            name: customer.name.clone(),
            etag: nul("W/\"1\""),
            ..Default::default()
        })
        .await
        .unwrap_err();
    // An etag is compared, never stored: a foreign one is simply not current.
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    let status = client
        .get_business_info(pb::GetBusinessInfoRequest {
            name: nul("businesses/GB-1"),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let status = client
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                name: customer.name.clone(),
                given_name: "Ok".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec![nul("given_name")],
            }),
            request_id: String::new(),
            allow_missing: false,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn violations_are_listed_up_to_twenty_and_the_rest_counted() {
    let app = TestApp::spawn().await;
    let names: Vec<String> = (0..100).map(|i| format!("customers/bad-{i}")).collect();
    let status = app
        .client
        .clone()
        .batch_get_customers(pb::BatchGetCustomersRequest { names })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let details = crate::helpers::details(&status);
    let violations = details.bad_request().unwrap().field_violations.clone();
    assert_eq!(violations.len(), 20);
    assert_eq!(violations[0].field, "names[0]");
    assert_eq!(
        details.error_info().unwrap().metadata["omittedViolations"],
        "80"
    );
    assert!(status.details().len() < 4096, "{}", status.details().len());
}

fn error_info(body: &serde_json::Value) -> serde_json::Value {
    body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo")
        .cloned()
        .unwrap_or_else(|| panic!("no ErrorInfo: {body}"))
}

/// `authorization` with a token of the test servers granting only `customers.read`.
fn reader_authorization() -> String {
    let mut settings = customer_api::config::ServeSettings::for_database("unused");
    settings.auth.jwt_hs256_secret = Some(crate::helpers::TEST_SECRET.into());
    format!(
        "Bearer {}",
        crate::helpers::mint(&settings, "reader", &["customers.read"])
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn every_error_carries_error_info_in_the_one_domain() {
    let app = TestApp::spawn().await;
    let reader = reader_authorization();
    let body = r#"{"givenName":"A","familyName":"B","email":"a@example.com"}"#;
    let cases = [
        ("not JSON", Some("{"), vec![], 400, "INVALID_JSON"),
        (
            "unknown field",
            Some(r#"{"nope":1}"#),
            vec![],
            400,
            "INVALID_BODY",
        ),
        (
            "no credentials",
            Some(body),
            vec![("authorization", "Bearer not-a-token")],
            401,
            "UNAUTHENTICATED",
        ),
        (
            "missing scope",
            Some(body),
            vec![("authorization", reader.as_str())],
            403,
            "PERMISSION_DENIED",
        ),
    ];
    for (case, body, headers, status, reason) in cases {
        let (got, _, json) = call(&app, false, Method::POST, "/v1/customers", body, &headers).await;
        assert_eq!(got.as_u16(), status, "{case}: {json}");
        let info = error_info(&json);
        assert_eq!(info["domain"], "customer.example.com", "{case}: {json}");
        assert_eq!(info["reason"], reason, "{case}: {json}");
        assert!(info["metadata"]["requestId"].is_string(), "{case}: {json}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_json_type_names_the_field_path() {
    let app = TestApp::spawn().await;
    let cases = [
        (r#"{"givenName":5,"familyName":"B"}"#, "customer.given_name"),
        (
            r#"{"givenName":"A","address":{"lines":"one line"}}"#,
            "customer.address.lines",
        ),
    ];
    for (body, path) in cases {
        let (status, _, json) =
            call(&app, false, Method::POST, "/v1/customers", Some(body), &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
        let violations = json["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest")
            .unwrap()["fieldViolations"]
            .clone();
        assert_eq!(violations[0]["field"], path, "{json}");
    }
}

/// The `ErrorInfo` of an encoded `google.rpc.Status` (a `grpc-status-details-bin` value).
fn status_error_info(details_bin: &str) -> tonic_types::ErrorInfo {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(details_bin.trim_end_matches('='))
        .unwrap();
    let status = tonic::Status::with_details(Code::Unknown, "", bytes.into());
    tonic_types::StatusExt::get_error_details(&status)
        .error_info()
        .cloned()
        .unwrap_or_else(|| panic!("no ErrorInfo in {details_bin}"))
}

/// A unary call over HTTP/1.1 (gRPC-web binary or Connect JSON) to `method` with
/// `authorization`: the status, headers and body.
async fn http1_call(
    app: &TestApp,
    method: &str,
    content_type: &str,
    authorization: &str,
    body: Vec<u8>,
) -> (StatusCode, http::HeaderMap, bytes::Bytes) {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let request = http::Request::post(format!(
        "http://{}/customer.v1.CustomerService/{method}",
        app.addr
    ))
    .header("content-type", content_type)
    .header("authorization", authorization)
    .header("x-grpc-web", "1")
    .body(http_body_util::Full::new(bytes::Bytes::from(body)))
    .unwrap();
    let (parts, body) = client.request(request).await.unwrap().into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthenticated_and_forbidden_carry_error_info_on_grpc_grpc_web_and_connect() {
    use prost::Message as _;
    let app = TestApp::spawn().await;
    let reader = reader_authorization();
    let cases = [
        (
            "Bearer not-a-token",
            Code::Unauthenticated,
            "UNAUTHENTICATED",
            401,
        ),
        (
            reader.as_str(),
            Code::PermissionDenied,
            "PERMISSION_DENIED",
            403,
        ),
    ];
    for (authorization, code, reason, http) in cases {
        // gRPC.
        let status = app
            .client_with(Some(authorization))
            .create_customer(pb::CreateCustomerRequest {
                duplicate_policy: 0,
                customer: Some(new_customer("A", "B")),
                request_id: String::new(),
            })
            .await
            .unwrap_err();
        assert_reason(&status, code, reason);

        // gRPC-web: a trailers-only answer, the status in the headers.
        let mut framed = vec![0_u8, 0, 0, 0, 0];
        pb::CreateCustomerRequest {
            duplicate_policy: 0,
            customer: Some(new_customer("A", "B")),
            request_id: String::new(),
        }
        .encode(&mut framed)
        .unwrap();
        let length = u32::try_from(framed.len() - 5).unwrap().to_be_bytes();
        framed[1..5].copy_from_slice(&length);
        let (_, headers, _) = http1_call(
            &app,
            "CreateCustomer",
            "application/grpc-web+proto",
            authorization,
            framed,
        )
        .await;
        assert_eq!(
            headers["grpc-status"],
            (code as i32).to_string(),
            "{headers:?}"
        );
        let info = status_error_info(headers["grpc-status-details-bin"].to_str().unwrap());
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            (reason, "customer.example.com")
        );

        // Connect.
        let body = br#"{"customer":{"givenName":"A","familyName":"B","email":"a@example.com"}}"#;
        let (status, _, body) = http1_call(
            &app,
            "CreateCustomer",
            "application/json",
            authorization,
            body.to_vec(),
        )
        .await;
        assert_eq!(status.as_u16(), http);
        let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let info = error["details"]
            .as_array()
            .unwrap()
            .iter()
            .find(|detail| detail["type"] == "google.rpc.ErrorInfo")
            .unwrap_or_else(|| panic!("no ErrorInfo: {error}"));
        assert_eq!(info["debug"]["reason"], reason, "{error}");
        assert_eq!(info["debug"]["domain"], "customer.example.com", "{error}");
    }
}
