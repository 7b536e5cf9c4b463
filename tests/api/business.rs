//! GetBusinessInfo end to end: the real server asks a registry of this test's own (a small
//! HTTP server on 127.0.0.1 that counts its requests), over gRPC and REST.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};

use customer_api::{pb, registry::UrlTemplate};
use http_body_util::{BodyExt, Empty};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use crate::helpers::{TestApp, assert_invalid, assert_reason};

/// A registry that knows one business (`GB-1`) and answers 404 for anything else.
async fn registry() -> (String, Arc<AtomicUsize>) {
    let (url, requests, _) = recording_registry().await;
    (url, requests)
}

/// [`registry`], which also keeps the head (request line and headers) of every request.
pub(crate) async fn recording_registry() -> (String, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let (counter, recorded) = (requests.clone(), heads.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let recorded = recorded.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0_u8; 4096];
                let mut read = 0;
                while !buffer[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                }
                let head = String::from_utf8_lossy(&buffer[..read]).to_string();
                recorded.lock().unwrap().push(head.clone());
                let (status, body) = if head.starts_with("GET /v1/companies/GB-1 ") {
                    (
                        "200 OK",
                        r#"{"business_id":"GB-1","legal_name":"Acme Widgets Ltd","status":"active",
                            "address":{"lines":["1 High Street"],"locality":"London","country_code":"gb"}}"#,
                    )
                } else {
                    ("404 Not Found", r#"{"error":"not found"}"#)
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    (
        format!("http://{addr}/v1/companies/{{business_id}}"),
        requests,
        heads,
    )
}

async fn lookup(app: &TestApp, name: &str) -> Result<pb::BusinessInfo, tonic::Status> {
    app.client
        .clone()
        .get_business_info(pb::GetBusinessInfoRequest { name: name.into() })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn business_info_comes_from_the_registry_once_then_from_the_cache() {
    let (url, requests) = registry().await;
    let app = TestApp::spawn_with(|settings| {
        settings.registry.business_registry_url = Some(UrlTemplate::parse(&url).unwrap());
    })
    .await;

    let info = lookup(&app, "businesses/GB-1").await.unwrap();
    assert_eq!(info.name, "businesses/GB-1");
    assert_eq!(info.business_id, "GB-1");
    assert_eq!(info.legal_name, "Acme Widgets Ltd");
    assert_eq!(
        info.registration_status,
        pb::business_info::RegistrationStatus::Active as i32
    );
    let address = info.address.clone().unwrap();
    assert_eq!(address.locality, "London");
    assert_eq!(address.country_code, "GB");
    assert_eq!(info.source, "127.0.0.1");
    assert!(info.fetch_time.is_some());
    // The next lookups (over REST this time) are served from the cache: with the name's `/`
    // as sent by hand, and percent-encoded as generated clients send it.
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    for path in ["/v1/businesses/GB-1", "/v1/businesses%2FGB-1"] {
        let request = http::Request::get(format!("http://{}{path}", app.addr))
            .header("authorization", app.bearer())
            .body(Empty::new())
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["name"], "businesses/GB-1", "{path}");
        assert_eq!(json["legalName"], "Acme Widgets Ltd");
        assert_eq!(json["registrationStatus"], "ACTIVE");
        assert_eq!(json["address"]["locality"], "London");
    }
    assert_eq!(requests.load(Ordering::SeqCst), 1);

    let status = lookup(&app, "businesses/GB-404").await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = lookup(&app, "companies/GB-1").await.unwrap_err();
    assert_invalid(&status, "INVALID_FIELDS", &["name"]);
    let status = lookup(&app, "businesses/not valid!").await.unwrap_err();
    assert_invalid(&status, "INVALID_FIELDS", &["name"]);
    // Invalid names never reach the registry.
    assert_eq!(requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn business_info_without_a_registry_is_failed_precondition() {
    let app = TestApp::spawn().await;
    let status = lookup(&app, "businesses/GB-1").await.unwrap_err();
    assert_reason(&status, Code::FailedPrecondition, "REGISTRY_NOT_CONFIGURED");
}

/// A customer with `business_id`.
async fn customer_of(app: &TestApp, business_id: &str) -> pb::Customer {
    let mut customer = crate::helpers::new_customer("Ann", "Able");
    customer.business_id = business_id.into();
    app.register(customer).await
}

async fn get(
    app: &TestApp,
    name: &str,
    view: pb::CustomerView,
) -> Result<pb::Customer, tonic::Status> {
    app.client
        .clone()
        .get_customer(pb::GetCustomerRequest {
            name: name.into(),
            view: view as i32,
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn the_full_view_embeds_the_registry_record_of_the_business_id() {
    let (url, requests) = registry().await;
    let app = TestApp::spawn_with(|settings| {
        settings.registry.business_registry_url = Some(UrlTemplate::parse(&url).unwrap());
    })
    .await;
    let known = customer_of(&app, "GB-1").await;
    let unknown = customer_of(&app, "GB-404").await;
    let without = customer_of(&app, "").await;

    // BASIC (and unspecified) never asks the registry.
    for view in [pb::CustomerView::Unspecified, pb::CustomerView::Basic] {
        let basic = get(&app, &known.name, view).await.unwrap();
        assert_eq!(basic, known);
        assert_eq!(basic.business_info, None);
    }
    assert_eq!(requests.load(Ordering::SeqCst), 0);

    let full = get(&app, &known.name, pb::CustomerView::Full)
        .await
        .unwrap();
    let info = full.business_info.clone().unwrap();
    assert_eq!(info.name, "businesses/GB-1");
    assert_eq!(info.legal_name, "Acme Widgets Ltd");
    assert_eq!(
        pb::Customer {
            business_info: None,
            ..full
        },
        known,
        "the rest is the stored customer"
    );
    // A business the registry does not know, and no business id at all: no business_info.
    let full = get(&app, &unknown.name, pb::CustomerView::Full)
        .await
        .unwrap();
    assert_eq!(full.business_info, None);
    let full = get(&app, &without.name, pb::CustomerView::Full)
        .await
        .unwrap();
    assert_eq!(full.business_info, None);
    assert_eq!(
        requests.load(Ordering::SeqCst),
        2,
        "GB-1, GB-404; none for no id"
    );

    // REST: `?view=FULL` (cached by now); without it the unset field is left out.
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    for (query, legal_name) in [("?view=FULL", json!("Acme Widgets Ltd")), ("", json!(null))] {
        let request = http::Request::get(format!("http://{}/v1/{}{query}", app.addr, known.name))
            .header("authorization", app.bearer())
            .body(Empty::new())
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if legal_name.is_null() {
            assert!(json.get("businessInfo").is_none(), "{query}: {json}");
        } else {
            assert_eq!(
                json["businessInfo"]["legalName"], legal_name,
                "{query}: {json}"
            );
        }
    }
    assert_eq!(requests.load(Ordering::SeqCst), 2);

    // A missing customer is NOT_FOUND before any registry call.
    let status = get(
        &app,
        &format!("customers/{}", uuid::Uuid::now_v7()),
        pb::CustomerView::Full,
    )
    .await
    .unwrap_err();
    assert_reason(&status, Code::NotFound, "RESOURCE_NOT_FOUND");
}

#[tokio::test]
async fn the_full_view_is_unavailable_while_the_registry_is() {
    // A port nothing listens on: every attempt is refused.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let app = TestApp::spawn_with(|settings| {
        settings.registry.business_registry_url = Some(
            UrlTemplate::parse(&format!("http://{addr}/v1/companies/{{business_id}}")).unwrap(),
        );
    })
    .await;
    let customer = customer_of(&app, "GB-1").await;
    let status = get(&app, &customer.name, pb::CustomerView::Full)
        .await
        .unwrap_err();
    assert_reason(&status, Code::Unavailable, "REGISTRY_UNAVAILABLE");
    // The BASIC view does not depend on the registry.
    assert_eq!(
        get(&app, &customer.name, pb::CustomerView::Basic)
            .await
            .unwrap(),
        customer
    );
}
