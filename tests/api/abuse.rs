//! Denial of service by peers that hold resources without using them (issue 16): idle and
//! silent sockets, the connection cap, bodies that never arrive, one caller's share of the
//! call budget, unread watch streams. Each scenario holds the abuse open while another
//! caller is served, and asserts what the server counts, never how fast it was.
//!
//! Timeouts are set small in each test's settings; [`bounded`] only turns a server that never
//! reacts into a failure instead of a hang (it is not an assertion about time).

use std::{future::Future, net::SocketAddr, time::Duration};

use customer_api::{auth::scopes, config::ServeSettings, pb};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tonic::Code;

use crate::helpers::{
    TEST_SECRET, TestApp, assert_reason, eventually, lock_customer, mint,
    sessions_waiting_for_locks,
};

/// `future`, or a panic naming `what` if it has not finished in 60 s.
async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .unwrap_or_else(|_| panic!("the server never {what}"))
}

/// Reads `stream` to its end: the bytes the server sent before closing it.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    match stream.read_to_end(&mut received).await {
        Ok(_) => {}
        // A close with unread input is a reset: closed all the same.
        Err(error) => assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset),
    }
    received
}

/// `GET /healthz` over HTTP/1.1 on a new connection: the status line, or `None` when the
/// connection was closed without an answer.
async fn healthz(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let text = String::from_utf8_lossy(&response);
    text.lines().next().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_socket_that_sends_nothing_is_closed_after_the_header_read_timeout() {
    let app = TestApp::spawn_with(|settings| {
        settings.limits.header_read_timeout = Duration::from_millis(300);
    })
    .await;

    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    let received = bounded("closed a silent socket", read_until_closed(&mut silent)).await;

    assert_eq!(received, b"", "closed without a word");
    // Others are served meanwhile and after.
    assert_eq!(
        healthz(app.addr).await.as_deref(),
        Some("HTTP/1.1 200 OK"),
        "another caller"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http1_request_whose_headers_never_end_is_closed() {
    let app = TestApp::spawn_with(|settings| {
        settings.limits.header_read_timeout = Duration::from_millis(300);
    })
    .await;

    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: te")
        .await
        .unwrap();
    let received = bounded("closed a slow header", read_until_closed(&mut slow)).await;

    let text = String::from_utf8_lossy(&received);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "closed, at most with a 408: {text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_http2_connection_is_closed_but_one_with_an_open_watch_is_not() {
    let app = TestApp::spawn_with(|settings| {
        settings.limits.connection_idle_timeout = Duration::from_millis(300);
    })
    .await;
    let mut watch = app
        .client
        .clone()
        .watch_customer_events(pb::WatchCustomerEventsRequest {
            parent: "customers/-".into(),
            start_after: String::new(),
        })
        .await
        .unwrap()
        .into_inner();

    // An HTTP/2 connection that finished its handshake and then makes no call.
    let tcp = TcpStream::connect(app.addr).await.unwrap();
    let (_client, connection) = h2::client::handshake(tcp).await.unwrap();
    let ended = bounded("closed an idle HTTP/2 connection", connection).await;
    assert!(
        ended.as_ref().is_ok() || ended.as_ref().is_err_and(|e| e.is_io() || e.is_go_away()),
        "{ended:?}"
    );

    // The watch's connection outlived several idle timeouts: it still delivers.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let created = app.create("Ada", "Lovelace").await;
    let event = bounded("delivered the event", watch.message())
        .await
        .expect("the watch is still open")
        .expect("an event");
    assert_eq!(
        event.snapshot.expect("snapshot").name,
        created.name,
        "the watch kept its connection"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_max_connections_are_closed_at_once_and_slots_come_back() {
    // The test client's channel holds one connection; two idle sockets fill the rest.
    let app = TestApp::spawn_with(|settings| {
        settings.limits.max_connections = 3;
    })
    .await;
    app.create("Ada", "Lovelace").await;
    let first = TcpStream::connect(app.addr).await.unwrap();
    let _second = TcpStream::connect(app.addr).await.unwrap();

    let mut beyond = TcpStream::connect(app.addr).await.unwrap();
    let received = bounded(
        "closed a connection beyond the cap",
        read_until_closed(&mut beyond),
    )
    .await;
    assert_eq!(received, b"");

    // The connected client is still served; a freed slot serves a new caller.
    app.create("Grace", "Hopper").await;
    drop(first);
    eventually("a freed slot is taken by a new caller", || async {
        healthz(app.addr).await.as_deref() == Some("HTTP/1.1 200 OK")
    })
    .await;
}

/// A token of the test servers for `subject` with `granted` scopes.
fn token(subject: &str, granted: &[&str]) -> String {
    let mut settings = ServeSettings::for_database("postgres://unused/unused");
    settings.auth.jwt_hs256_secret = Some(TEST_SECRET.into());
    format!("Bearer {}", mint(&settings, subject, granted))
}

/// `GET {path}` over HTTP/1.1 on a new connection: the whole response as text.
async fn get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    String::from_utf8_lossy(&read_until_closed(&mut stream).await).into_owned()
}

/// The value of the first metric line starting with `prefix` on `/metrics`.
async fn metric(addr: SocketAddr, prefix: &str) -> Option<f64> {
    get(addr, "/metrics")
        .await
        .lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

/// GetCustomer calls the server has started (counted before any limit).
async fn get_customer_calls_started(addr: SocketAddr) -> f64 {
    metric(
        addr,
        r#"grpc_server_started_total{grpc_service="customer.v1.CustomerService",grpc_method="GetCustomer""#,
    )
    .await
    .unwrap_or(0.0)
}

/// An HTTP/2 GetCustomer request's headers with `authorization` (the body is up to the caller).
fn grpc_headers(authorization: &str) -> http::Request<()> {
    http::Request::post("http://test/customer.v1.CustomerService/GetCustomer")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", authorization)
        .body(())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_whose_body_never_arrives_hold_no_permit_so_other_callers_are_served() {
    let app = TestApp::spawn_with(|settings| {
        settings.max_concurrent_requests = 8;
    })
    .await;
    let customer = app.create("Ada", "Lovelace").await;
    let reader = token("attacker", &[scopes::READ]);

    // One HTTP/2 connection with 50 streams that send their headers and never their body…
    let tcp = TcpStream::connect(app.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut held = Vec::new();
    for _ in 0..50 {
        let mut client = client.clone().ready().await.unwrap();
        let (response, body) = client.send_request(grpc_headers(&reader), false).unwrap();
        held.push((response, body));
    }
    // …and 20 gRPC-web HTTP/1.1 connections that announce 100 bytes and send 5.
    let mut short = Vec::new();
    for _ in 0..20 {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        let head = format!(
            "POST /customer.v1.CustomerService/GetCustomer HTTP/1.1\r\nhost: test\r\n\
             content-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\n\
             authorization: {reader}\r\ncontent-length: 100\r\n\r\n\0\0\0\0\x5f"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        short.push(stream);
    }
    eventually("the server started all 70 calls", || async {
        get_customer_calls_started(app.addr).await >= 70.0
    })
    .await;

    // While they are held, another caller is served on every transport, and the instance
    // stays ready (no permit is taken).
    let found = app
        .client
        .clone()
        .get_customer(pb::GetCustomerRequest {
            name: customer.name.clone(),
            ..Default::default()
        })
        .await
        .expect("another caller is served, not shed")
        .into_inner();
    assert_eq!(found.name, customer.name);
    let rest = get(app.addr, "/readyz").await;
    assert!(rest.starts_with("HTTP/1.1 200"), "{rest}");
    assert_eq!(
        metric(app.addr, "customer_api_requests_in_flight").await,
        Some(0.0),
        "no call holds a permit"
    );
    drop((held, short));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_body_that_does_not_arrive_in_time_is_deadline_exceeded_or_408() {
    let app = TestApp::spawn_with(|settings| {
        settings.limits.request_body_timeout = Duration::from_millis(300);
    })
    .await;
    let reader = token("slow", &[scopes::READ, scopes::WRITE]);

    // gRPC: headers, then nothing.
    let tcp = TcpStream::connect(app.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let (response, _body) = client.send_request(grpc_headers(&reader), false).unwrap();
    let response = bounded("answered a missing body", response).await.unwrap();
    assert_eq!(response.headers()["grpc-status"], "4", "{response:?}");

    // gRPC-web over HTTP/1.1: 5 of 100 announced bytes.
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /customer.v1.CustomerService/GetCustomer HTTP/1.1\r\nhost: test\r\n\
         content-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\nconnection: close\r\n\
         authorization: {reader}\r\ncontent-length: 100\r\n\r\n\0\0\0\0\x5f"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = bounded(
        "answered a short gRPC-web body",
        read_until_closed(&mut stream),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(answer.contains("grpc-status: 4"), "{answer}");

    // REST: 10 of 100 announced bytes.
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /v1/customers HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         connection: close\r\nauthorization: {reader}\r\ncontent-length: 100\r\n\r\n{{\"given\""
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = bounded("answered a short REST body", read_until_closed(&mut stream)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("DEADLINE_EXCEEDED"), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_caller_gets_its_share_of_the_budget_and_only_saturation_turns_readiness_off() {
    let app = TestApp::spawn_with(|settings| {
        settings.max_concurrent_requests = 2;
        settings.limits.max_concurrent_requests_per_caller = 1;
        // The held calls wait on a row lock for as long as the test holds it.
        settings.database.statement_timeout = Duration::from_secs(120);
    })
    .await;
    let customer = app.create("Ada", "Lovelace").await;
    let rename = |given: &str| pb::UpdateCustomerRequest {
        customer: Some(pb::Customer {
            name: customer.name.clone(),
            given_name: given.into(),
            ..Default::default()
        }),
        update_mask: None,
        request_id: String::new(),
    };
    let writer =
        |subject: &str| app.client_with(Some(&token(subject, &[scopes::READ, scopes::WRITE])));
    let lock = lock_customer(&app, &customer.name).await;

    // Caller A holds its one call (waiting on the lock)…
    let held_a = {
        let (mut client, request) = (writer("caller-a"), rename("A"));
        tokio::spawn(async move { client.update_customer(request).await })
    };
    eventually("A's call waits on the lock", || async {
        sessions_waiting_for_locks(&app).await == 1
    })
    .await;
    // …so its next call is refused, while caller B is served and the instance stays ready.
    let refused = writer("caller-a")
        .get_customer(pb::GetCustomerRequest {
            name: customer.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_reason(
        &refused,
        Code::ResourceExhausted,
        "CALLER_CONCURRENCY_EXCEEDED",
    );
    app.client
        .clone()
        .get_customer(pb::GetCustomerRequest {
            name: customer.name.clone(),
            ..Default::default()
        })
        .await
        .expect("caller B is served");
    assert!(get(app.addr, "/readyz").await.starts_with("HTTP/1.1 200"));

    // A second caller takes the last permit: now the instance is saturated and says so.
    let held_c = {
        let (mut client, request) = (writer("caller-c"), rename("C"));
        tokio::spawn(async move { client.update_customer(request).await })
    };
    eventually("C's call waits on the lock", || async {
        sessions_waiting_for_locks(&app).await == 2
    })
    .await;
    let saturated = get(app.addr, "/readyz").await;
    assert!(saturated.starts_with("HTTP/1.1 503"), "{saturated}");
    assert!(saturated.ends_with("overloaded\n"), "{saturated}");

    drop(lock);
    held_a.await.unwrap().expect("A's update");
    held_c.await.unwrap().expect("C's update");
    assert!(get(app.addr, "/readyz").await.starts_with("HTTP/1.1 200"));
}
