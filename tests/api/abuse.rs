//! Denial of service by peers that hold resources without using them (issue 16): idle and
//! silent sockets, the connection cap, bodies that never arrive, one caller's share of the
//! call budget, unread watch streams. Each scenario holds the abuse open while another
//! caller is served, and asserts what the server counts, never how fast it was.
//!
//! Timeouts are set small in each test's settings; a server that never reacts hangs the test
//! until nextest's `slow-timeout` ends it (no clock in the assertions).

use std::{net::SocketAddr, time::Duration};

use customer_api::{auth::scopes, config::ServeSettings, pb};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::helpers::{
    TEST_SECRET, TestApp, assert_reason, eventually, lock_customer, mint,
    sessions_waiting_for_locks,
};

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
    let received = read_until_closed(&mut silent).await;

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
    let received = read_until_closed(&mut slow).await;

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
    let mut watch = app.watch("customers/-", "").await.unwrap();

    // An HTTP/2 connection that finished its handshake and then makes no call.
    let tcp = TcpStream::connect(app.addr).await.unwrap();
    let (_client, connection) = h2::client::handshake(tcp).await.unwrap();
    let ended = connection.await;
    assert!(
        ended.as_ref().is_ok() || ended.as_ref().is_err_and(|e| e.is_io() || e.is_go_away()),
        "{ended:?}"
    );

    // The watch's connection outlived several idle timeouts: it still delivers.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let created = app.create("Ada", "Lovelace").await;
    let event = watch
        .message()
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
    let received = read_until_closed(&mut beyond).await;
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
async fn an_http2_connection_is_offered_http2_max_concurrent_streams() {
    let app = TestApp::spawn_with(|settings| {
        settings.limits.http2_max_concurrent_streams = 7;
    })
    .await;
    let tcp = TcpStream::connect(app.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let client = client.ready().await.unwrap();
    // The server's SETTINGS arrive on the connection after the handshake.
    eventually("the server's SETTINGS arrived", || async {
        client.current_max_send_streams() == 7
    })
    .await;
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
        .get_customer(&customer.name)
        .await
        .expect("another caller is served, not shed");
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
    let response = response.await.unwrap();
    assert_eq!(response.headers()["grpc-status"], "4", "{response:?}");

    // gRPC-web over HTTP/1.1: 5 of 100 announced bytes.
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /customer.v1.CustomerService/GetCustomer HTTP/1.1\r\nhost: test\r\n\
         content-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\nconnection: close\r\n\
         authorization: {reader}\r\ncontent-length: 100\r\n\r\n\0\0\0\0\x5f"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut stream).await;
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(answer.contains("grpc-status: 4"), "{answer}");

    // REST: 10 of 100 announced bytes.
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /v1/customers HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         connection: close\r\nauthorization: {reader}\r\ncontent-length: 100\r\n\r\n{{\"given\""
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut stream).await;
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
        allow_missing: false,
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
    app.get_customer(&customer.name)
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
    eventually("gRPC health reports the saturation", || async {
        health(&app).await == ServingStatus::NotServing
    })
    .await;

    drop(lock);
    held_a.await.unwrap().expect("A's update");
    held_c.await.unwrap().expect("C's update");
    assert!(get(app.addr, "/readyz").await.starts_with("HTTP/1.1 200"));
    eventually("gRPC health serves again", || async {
        health(&app).await == ServingStatus::Serving
    })
    .await;
}

/// What gRPC health says of the customer service.
async fn health(app: &TestApp) -> ServingStatus {
    let mut client = HealthClient::new(app.channel.clone());
    let response = client
        .check(HealthCheckRequest {
            service: "customer.v1.CustomerService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    ServingStatus::try_from(response.status).unwrap()
}

/// A gRPC length-prefixed frame.
fn frame(message: &impl prost::Message) -> bytes::Bytes {
    let body = message.encode_to_vec();
    let mut framed = vec![0_u8];
    framed.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(&body);
    framed.into()
}

/// An HTTP/2 connection whose streams accept only `window` bytes until they are read.
async fn stingy_connection(addr: SocketAddr, window: u32) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(window)
        .handshake(tcp)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// Opens WatchCustomerEvents of everything on `client` as `authorization`: the response
/// (headers only until the stream is read).
async fn open_watch(
    client: &h2::client::SendRequest<bytes::Bytes>,
    authorization: &str,
    start_after: &str,
) -> http::Response<h2::RecvStream> {
    let request =
        http::Request::post("http://test/customer.v1.CustomerService/WatchCustomerEvents")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("authorization", authorization)
            .body(())
            .unwrap();
    let mut client = client.clone().ready().await.unwrap();
    let (response, mut body) = client.send_request(request, false).unwrap();
    body.send_data(
        frame(&pb::WatchCustomerEventsRequest {
            parent: "customers/-".into(),
            start_after: start_after.into(),
        }),
        true,
    )
    .unwrap();
    response.await.unwrap()
}

/// Reads a watch stream to its end, giving its window back as it goes: the events and the
/// trailers.
async fn read_watch(
    response: http::Response<h2::RecvStream>,
) -> (Vec<pb::CustomerEvent>, http::HeaderMap) {
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(data) = body.data().await {
        let data = data.unwrap();
        body.flow_control().release_capacity(data.len()).unwrap();
        bytes.extend_from_slice(&data);
    }
    let trailers = body.trailers().await.unwrap().unwrap_or_default();
    (decode_events(&bytes), trailers)
}

#[tokio::test(flavor = "multi_thread")]
async fn unread_watches_hold_a_bounded_number_of_events_while_other_callers_are_served() {
    let app = TestApp::spawn_with(|settings| {
        settings.limits.max_watches_per_caller = 4;
    })
    .await;
    let reader = token("watcher", &[scopes::READ]);
    // 100 events, more than a watch may hold (before: 564 per watch).
    for n in 0..100 {
        app.create("Ada", &format!("Lovelace{n}")).await;
    }

    // Four watches on a connection whose streams take no data until read; a fifth is refused.
    let stingy = stingy_connection(app.addr, 0).await;
    let mut unread = Vec::new();
    for _ in 0..4 {
        let response = open_watch(&stingy, &reader, "").await;
        assert_eq!(response.headers().get("grpc-status"), None, "open");
        unread.push(response);
    }
    let fifth = open_watch(&stingy, &reader, "").await;
    assert_eq!(fifth.headers()["grpc-status"], "8", "RESOURCE_EXHAUSTED");
    // Another caller watches too, and reads.
    let mut reading = app.watch("customers/-", "").await.unwrap();

    for _ in 0..100 {
        reading.message().await.unwrap().expect("an event");
    }

    // Each unread watch reads one batch (32 events) and no further: its response took what
    // its channel held (8: tonic encodes them into its buffer, which flow control keeps
    // there), the channel filled again, and the rest of the batch waits for room.
    eventually("the unread watches fill their channels", || async {
        metric(app.addr, "customer_api_watch_buffered_events")
            .await
            .is_some_and(|held| held >= 4.0 * 8.0)
    })
    .await;
    // More events change nothing for them: at most a batch each, 128 in all (not 4 × 150),
    // and in bytes too (these events are under 1 KiB each).
    for n in 0..50 {
        app.create("Grace", &format!("Hopper{n}")).await;
    }
    for _ in 0..50 {
        reading.message().await.unwrap().expect("an event");
    }
    let held = metric(app.addr, "customer_api_watch_buffered_events")
        .await
        .unwrap();
    assert!((32.0..=128.0).contains(&held), "{held}");
    let bytes = metric(app.addr, "customer_api_watch_buffered_bytes")
        .await
        .unwrap();
    assert!(bytes > 0.0 && bytes <= 128.0 * 1024.0, "{bytes}");
    assert_eq!(metric(app.addr, "customer_api_watches ").await, Some(5.0));
    let created = app.create("Grace", "Hopper").await;
    let fetched = app
        .get_customer(&created.name)
        .await
        .expect("another caller is served");
    assert_eq!(fetched.name, created.name);
    drop(unread);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_whose_client_does_not_read_is_ended_with_a_resume_token_that_misses_nothing() {
    let app = TestApp::spawn_with(|settings| {
        settings.limits.watch_slow_consumer_timeout = Duration::from_millis(200);
    })
    .await;
    let reader = token("slow-reader", &[scopes::READ]);
    let stingy = stingy_connection(app.addr, 64).await;
    let unread = open_watch(&stingy, &reader, "").await;
    let mut names = Vec::new();
    for n in 0..60 {
        names.push(app.create("Ada", &format!("Lovelace{n}")).await.name);
    }
    eventually("the watch was dropped for not reading", || async {
        metric(app.addr, "customer_api_watches_dropped_total").await == Some(1.0)
    })
    .await;
    // The batch it had read is let go of; only what its response already took remains.
    let held = metric(app.addr, "customer_api_watch_buffered_events")
        .await
        .unwrap();
    assert!(held <= 8.0, "{held}");

    // Read now: the events it was sent, then UNAVAILABLE with where to resume.
    let (events, trailers) = read_watch(unread).await;
    assert!(!events.is_empty() && events.len() < 60, "{}", events.len());
    let status = tonic::Status::from_header_map(&trailers).expect("a status");
    assert_reason(&status, Code::Unavailable, "SLOW_CONSUMER");
    let details = tonic_types::StatusExt::get_error_details(&status);
    let resume = &details.error_info().unwrap().metadata["resumeToken"];
    let last = events.last().unwrap();
    assert_eq!(resume, &last.resume_token, "the last event it was sent");

    // Watching again from there delivers the rest, in order, none missed or repeated.
    let again = stingy_connection(app.addr, 1 << 20).await;
    let resumed = open_watch(&again, &reader, resume).await;
    let mut seen: Vec<String> = events
        .iter()
        .map(|event| event.snapshot.clone().unwrap().name)
        .collect();
    let mut body = resumed.into_body();
    let mut bytes = Vec::new();
    let rest = names.len() - seen.len();
    while bytes_events(&bytes) < rest {
        let data = body.data().await.unwrap().unwrap();
        body.flow_control().release_capacity(data.len()).unwrap();
        bytes.extend_from_slice(&data);
    }
    seen.extend(
        decode_events(&bytes)
            .into_iter()
            .map(|event| event.snapshot.unwrap().name),
    );
    assert_eq!(seen, names);
}

/// Complete gRPC frames in `bytes`.
fn bytes_events(bytes: &[u8]) -> usize {
    decode_events(bytes).len()
}

/// The events in the complete gRPC frames of `bytes`.
fn decode_events(mut bytes: &[u8]) -> Vec<pb::CustomerEvent> {
    use prost::Message;
    let mut events = Vec::new();
    while bytes.len() >= 5 {
        let length = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
        if bytes.len() < 5 + length {
            break;
        }
        events.push(pb::CustomerEvent::decode(&bytes[5..5 + length]).unwrap());
        bytes = &bytes[5 + length..];
    }
    events
}
