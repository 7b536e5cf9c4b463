//! Privacy: a full CRUD run over gRPC and REST, with every log line of the server captured at
//! DEBUG through the production subscriber (`telemetry::dispatch`), leaves no raw email
//! address or phone number in the logs nor in any error message a client receives.
//!
//! The capture is [`crate::capture`]'s: not global, so other tests in this binary, running in
//! parallel, are neither captured nor slowed down.

use bytes::Bytes;
use customer_api::{config::LogFormat, pb};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use prost_types::FieldMask;
use tonic::{Code, Status};

use crate::{capture::captured, helpers::TestApp};

/// The values that must never appear in clear.
const EMAIL: &str = "privacy.probe.7731@example-mail.org";
const PHONE: &str = "+4915112345678";
const NEW_EMAIL: &str = "second.probe.7731@example-mail.org";
const NEW_PHONE: &str = "+4930987654321";
const REST_EMAIL: &str = "rest.probe.7731@example-mail.org";
const REST_PHONE: &str = "+14155550123";

/// Their masked forms, as the redactor writes them.
const MASKED: [&str; 6] = [
    "p***@example-mail.org",
    "+*******78",
    "s***@example-mail.org",
    "+*******21",
    "r***@example-mail.org",
    "+*******23",
];

/// What must not appear: each value, its local part, and each phone number's digits.
fn forbidden() -> Vec<String> {
    let mut forbidden = Vec::new();
    for email in [EMAIL, NEW_EMAIL, REST_EMAIL] {
        forbidden.push(email.to_owned());
        forbidden.push(email.split('@').next().unwrap().to_owned());
    }
    for phone in [PHONE, NEW_PHONE, REST_PHONE] {
        forbidden.push(phone.to_owned());
        forbidden.push(phone[1..].to_owned());
    }
    forbidden
}

/// Everything a client can read of an error: message and encoded details.
fn status_text(status: &Status) -> String {
    format!(
        "{} {}",
        status.message(),
        String::from_utf8_lossy(status.details())
    )
}

/// A REST call; returns the status and the body text.
async fn rest(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<String>,
) -> (StatusCode, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", app.addr))
        .header("authorization", app.bearer());
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn query(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Create, read, list with filters naming the values, update, conflict, invalid input that
/// quotes the values, delete, undelete and an internal error, over gRPC and REST. Returns
/// every error text a client received.
async fn crud_run() -> Vec<String> {
    let mut errors = Vec::new();
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();

    // Create (gRPC) and read.
    let created = client
        .create_customer(pb::CreateCustomerRequest {
            duplicate_policy: 0,
            customer: Some(pb::Customer {
                given_name: "Petra".into(),
                family_name: "Probe".into(),
                email: EMAIL.into(),
                phone: PHONE.into(),
                address: Some(pb::PostalAddress {
                    lines: vec!["Probestraße 1".into()],
                    locality: "Berlin".into(),
                    postal_code: "10115".into(),
                    country_code: "DE".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let name = created.name.clone();
    let got = client
        .get_customer(pb::GetCustomerRequest {
            name: name.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.email, EMAIL);

    // List with filters naming the email and the phone (gRPC and REST).
    for filter in [
        format!("email = \"{EMAIL}\""),
        format!("phone = \"{PHONE}\""),
        format!("email:\"{}\"", &EMAIL[..12]),
    ] {
        let page = client
            .list_customers(pb::ListCustomersRequest {
                filter: filter.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.customers.len(), 1, "{filter}");
    }
    let (status, body) = rest(
        &app,
        Method::GET,
        &format!(
            "/v1/customers?filter={}",
            query(&format!("email = \"{EMAIL}\""))
        ),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains(EMAIL),
        "the owner of the data gets it back: {body}"
    );

    // Update email and phone (gRPC).
    let updated = client
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                name: name.clone(),
                email: NEW_EMAIL.into(),
                phone: NEW_PHONE.into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["email".into(), "phone".into()],
            }),
            request_id: String::new(),
            allow_missing: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (updated.email.as_str(), updated.phone.as_str()),
        (NEW_EMAIL, NEW_PHONE)
    );

    // Create over REST, then a duplicate email on both transports.
    let rest_customer = serde_json::json!({
        "givenName": "Rita", "familyName": "Probe", "email": REST_EMAIL, "phone": REST_PHONE,
    })
    .to_string();
    let (status, body) = rest(
        &app,
        Method::POST,
        "/v1/customers",
        Some(rest_customer.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = rest(&app, Method::POST, "/v1/customers", Some(rest_customer)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    errors.push(body);
    let conflict = client
        .create_customer(pb::CreateCustomerRequest {
            duplicate_policy: 0,
            customer: Some(pb::Customer {
                given_name: "Dup".into(),
                family_name: "Probe".into(),
                email: NEW_EMAIL.into(),
                phone: NEW_PHONE.into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(conflict.code(), Code::AlreadyExists, "{conflict:?}");
    errors.push(status_text(&conflict));

    // Invalid input that quotes the values back: filters, order_by, names, label keys.
    for (filter, order_by) in [
        (format!("status = {NEW_EMAIL}"), String::new()),
        (format!("{NEW_EMAIL} = \"x\""), String::new()),
        (format!("create_time > {NEW_PHONE}"), String::new()),
        (format!("labels.{} = x", &NEW_PHONE[1..]), String::new()),
        (String::new(), format!("{NEW_EMAIL} desc")),
        (String::new(), format!("email {NEW_PHONE}")),
    ] {
        let status = client
            .list_customers(pb::ListCustomersRequest {
                filter: filter.clone(),
                order_by: order_by.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{filter} {order_by}: {status:?}"
        );
        errors.push(status_text(&status));
    }
    for bad_name in [format!("customers/{NEW_EMAIL}"), NEW_PHONE.to_owned()] {
        let status = client
            .get_customer(pb::GetCustomerRequest {
                name: bad_name,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        errors.push(status_text(&status));
    }
    let status = client
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                name: name.clone(),
                labels: [(NEW_EMAIL.to_owned(), NEW_PHONE.to_owned())].into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec![format!("labels.{NEW_EMAIL}"), NEW_PHONE.into()],
            }),
            request_id: String::new(),
            allow_missing: false,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    errors.push(status_text(&status));
    for path in [
        format!(
            "/v1/customers?filter={}",
            query(&format!("status = {NEW_EMAIL}"))
        ),
        format!("/v1/customers/{NEW_EMAIL}"),
        format!("/v1/{NEW_EMAIL}/{}", &NEW_PHONE[1..]),
    ] {
        let (status, body) = rest(&app, Method::GET, &path, None).await;
        assert!(status.is_client_error(), "{path}: {status} {body}");
        errors.push(body);
    }
    let (status, body) = rest(
        &app,
        Method::POST,
        "/v1/customers",
        Some(format!(
            "{{\"email\": \"{NEW_EMAIL}\", \"status\": \"{NEW_PHONE}\"}}"
        )),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    errors.push(body);

    // Delete (gRPC) and undelete (REST).
    client
        .delete_customer(pb::DeleteCustomerRequest {
            name: name.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let (status, body) = rest(
        &app,
        Method::POST,
        &format!("/v1/{name}:undelete"),
        Some("{}".into()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // An internal error whose cause quotes the values: a row corrupted behind the service's
    // back, as in read.rs. The log line names the cause; the client gets a reference only.
    use diesel_async::SimpleAsyncConnection;
    app.db()
        .await
        .batch_execute(&format!(
            "UPDATE customers SET address = '{{\"lines\": \"{NEW_EMAIL} {NEW_PHONE}\"}}' \
             WHERE id = '{}'",
            created.uid
        ))
        .await
        .unwrap();
    let internal = client
        .get_customer(pb::GetCustomerRequest {
            name: name.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(internal.code(), Code::Internal, "{internal:?}");
    errors.push(status_text(&internal));

    let mut app = app;
    app.stop().await;
    errors
}

fn assert_private(format: LogFormat, logs: &str, errors: &[String]) {
    for raw in forbidden() {
        assert!(
            !logs.contains(&raw),
            "{format:?} logs contain {raw}:\n{logs}"
        );
        for error in errors {
            assert!(!error.contains(&raw), "an error contains {raw}: {error}");
        }
    }
    // The capture works and the values were logged, masked.
    for (what, needle) in [
        ("create", "creating customer"),
        ("list", "listing customers"),
        ("update", "updating customer"),
        ("delete", "deleting customer"),
        ("undelete", "undeleting customer"),
        ("the internal error", "internal error"),
    ] {
        assert!(logs.contains(needle), "no log line for {what}:\n{logs}");
    }
    for masked in MASKED {
        assert!(
            logs.contains(masked),
            "{format:?} logs lack {masked}:\n{logs}"
        );
    }
    // Quoted values are masked, not dropped, in what clients read.
    let errors = errors.join("\n");
    for masked in ["s***@example-mail.org", "+*******21"] {
        assert!(errors.contains(masked), "errors lack {masked}:\n{errors}");
    }
}

#[test]
fn text_logs_and_errors_never_contain_raw_emails_or_phone_numbers() {
    let (logs, errors) = captured(LogFormat::Text, "debug", crud_run());
    assert_private(LogFormat::Text, &logs, &errors);
}

#[test]
fn json_logs_never_contain_raw_emails_or_phone_numbers() {
    let (logs, errors) = captured(LogFormat::Json, "debug", crud_run());
    assert_private(LogFormat::Json, &logs, &errors);
    for line in logs.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("{e}: not a JSON line: {line}"));
    }
}
