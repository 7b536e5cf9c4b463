//! `GET /metrics`: every CustomerService call counted once by method and status code, whatever
//! the transport, with the pool's state.

use bytes::Bytes;
use customer_api::pb;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use serde_json::json;
use tonic::Code;
use uuid::Uuid;

use crate::{
    helpers::{TestApp, eventually},
    rest::call,
};

/// The metrics text, after checking the status and content type.
pub(crate) async fn scrape(app: &TestApp) -> String {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = http::Request::get(format!("http://{}/metrics", app.addr))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

/// The value of the sample `name{labels}` (labels as written by the encoder), if present.
pub(crate) fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .map(|value| value.parse().unwrap())
}

fn rpc(method: &str, kind: &str) -> String {
    format!(
        r#"grpc_service="customer.v1.CustomerService",grpc_method="{method}",grpc_type="{kind}""#
    )
}

fn handled(method: &str, kind: &str, code: &str) -> String {
    format!(r#"{},grpc_code="{code}""#, rpc(method, kind))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_call_is_counted_once_by_method_and_code_over_every_transport() {
    let app = TestApp::spawn_with(|s| s.database.pool_size = 7).await;
    let before = scrape(&app).await;
    assert!(
        before
            .lines()
            .any(|line| line == "customer_api_db_pool_max_connections 7"),
        "{before}"
    );

    // gRPC: one found, one missing, one refused before the service.
    let created = app.create("Ann", "Able").await;
    app.get_customer(&created.name).await.unwrap();
    let missing = app
        .get_customer(&format!("customers/{}", Uuid::now_v7()))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let refused = app
        .client_with(Some("Bearer not-a-token"))
        .get_customer(pb::GetCustomerRequest {
            name: created.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    // REST, through the gateway's in-process call: a creation and a validation error.
    let body = json!({"givenName": "Bob", "familyName": "Baker", "email": "bob@example.com"});
    let (status, _, _) = call(
        &app,
        false,
        Method::POST,
        "/v1/customers",
        Some(&body.to_string()),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, _) = call(&app, true, Method::POST, "/v1/customers", Some("{}"), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Connect, through its in-process call: a GET read; a body that is not JSON never
    // reaches the service.
    let message = form_urlencoded::Serializer::new(String::new())
        .append_pair("message", &json!({"name": created.name}).to_string())
        .finish();
    let get = format!("/customer.v1.CustomerService/GetCustomer?encoding=json&{message}");
    let (status, _, _) = call(&app, false, Method::GET, &get, None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = call(
        &app,
        false,
        Method::POST,
        "/customer.v1.CustomerService/GetCustomer",
        Some("{"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let text = scrape(&app).await;
    let counts = [
        (handled("CreateCustomer", "unary", "OK"), 2.0),
        (handled("CreateCustomer", "unary", "InvalidArgument"), 1.0),
        (handled("GetCustomer", "unary", "OK"), 2.0),
        (handled("GetCustomer", "unary", "NotFound"), 1.0),
        (handled("GetCustomer", "unary", "Unauthenticated"), 1.0),
    ];
    for (labels, expected) in &counts {
        assert_eq!(
            sample(&text, "grpc_server_handled_total", labels),
            Some(*expected),
            "{labels}\n{text}"
        );
    }
    assert_eq!(
        sample(
            &text,
            "grpc_server_started_total",
            &rpc("GetCustomer", "unary")
        ),
        Some(4.0)
    );
    assert_eq!(
        sample(
            &text,
            "grpc_server_handling_seconds_count",
            &rpc("CreateCustomer", "unary")
        ),
        Some(3.0)
    );
    // Nothing else was called.
    let handled_lines = text
        .lines()
        .filter(|line| line.starts_with("grpc_server_handled_total{"))
        .count();
    assert_eq!(handled_lines, counts.len(), "{text}");
    let in_use = sample(
        &text,
        "customer_api_db_pool_connections",
        r#"state="in_use""#,
    );
    let idle = sample(&text, "customer_api_db_pool_connections", r#"state="idle""#);
    assert!(
        in_use.is_some() && idle.is_some_and(|idle| idle >= 1.0),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_the_client_drops_counts_as_canceled_when_it_ends() {
    let app = TestApp::spawn().await;
    let stream = app.watch("customers/-", "").await.unwrap();
    let started = sample(
        &scrape(&app).await,
        "grpc_server_started_total",
        &rpc("WatchCustomerEvents", "server_stream"),
    );
    assert_eq!(started, Some(1.0));
    // Still running: no status yet.
    let text = scrape(&app).await;
    assert_eq!(
        sample(
            &text,
            "grpc_server_handled_total",
            &handled("WatchCustomerEvents", "server_stream", "Canceled")
        ),
        None,
        "{text}"
    );
    drop(stream);
    let labels = handled("WatchCustomerEvents", "server_stream", "Canceled");
    eventually("the dropped watch is counted", || async {
        sample(&scrape(&app).await, "grpc_server_handled_total", &labels) == Some(1.0)
    })
    .await;
}

/// The value of the unlabelled sample `name`, if present.
fn value(text: &str, name: &str) -> Option<f64> {
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .map(|value| value.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pool_the_outbox_the_relay_the_registry_the_build_and_the_process_are_measured() {
    let url = crate::helpers::nats_url();
    let (stream, prefix) = crate::events::private_stream();
    let (registry, _, _) = crate::business::recording_registry().await;
    let app = TestApp::spawn_with(|settings| {
        settings.events.nats_url = Some(url.clone());
        settings.events.nats_stream = stream.clone();
        settings.events.nats_subject_prefix = prefix.clone();
        settings.registry.business_registry_url =
            Some(customer_api::registry::UrlTemplate::parse(&registry).unwrap());
    })
    .await;
    let js = crate::events::jetstream_context(&url).await;

    app.create("Metered", "Event").await;
    crate::events::stream_messages(&js, &stream, 1).await;
    let mut client = app.client.clone();
    for id in ["GB-1", "XX-9"] {
        let _ = client
            .get_business_info(pb::GetBusinessInfoRequest {
                name: format!("businesses/{id}"),
            })
            .await;
    }
    // The relay marks the event published after JetStream's acknowledgement.
    eventually("the outbox is empty", || async {
        value(&scrape(&app).await, "customer_api_events_unpublished") == Some(0.0)
    })
    .await;
    let text = scrape(&app).await;
    js.delete_stream(&stream).await.unwrap();

    assert_eq!(
        value(&text, "customer_api_events_publish_seconds_count"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "customer_api_events_outbox_lag_seconds"),
        Some(0.0)
    );
    assert!(value(&text, "customer_api_db_pool_wait_seconds_count").unwrap() >= 1.0);
    for (outcome, count) in [("ok", 1.0), ("not_found", 1.0)] {
        assert_eq!(
            sample(
                &text,
                "customer_api_registry_requests_total",
                &format!(r#"outcome="{outcome}""#)
            ),
            Some(count),
            "{outcome}: {text}"
        );
    }
    assert_eq!(
        sample(
            &text,
            "customer_api_build_info",
            &format!(
                r#"version="{}",commit="{}""#,
                env!("CARGO_PKG_VERSION"),
                customer_api::config::COMMIT
            )
        ),
        Some(1.0),
        "{text}"
    );
    // Every family the dashboard and the alert rules name is there.
    let exported: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    for family in crate::monitoring::monitored_families() {
        assert!(
            exported.contains(family.as_str()),
            "{family} is monitored but not exported: {text}"
        );
    }
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(value(&text, name).unwrap() > 0.0, "{name}: {text}");
    }
}

#[test]
fn version_names_the_commit_and_the_build_date() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_customer-api"))
        .arg("--version")
        .env_clear()
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let expected = format!(
        "customer-api {} (commit {}, built ",
        env!("CARGO_PKG_VERSION"),
        customer_api::config::COMMIT
    );
    assert!(text.starts_with(&expected), "{text}");
    let date = text.trim_end().trim_start_matches(&expected);
    let date = date.strip_suffix(')').unwrap();
    assert!(
        chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok(),
        "{text}"
    );
}
