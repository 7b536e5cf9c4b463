//! Denial of service by peers that hold resources without using them (issue 16): idle and
//! silent sockets, the connection cap, bodies that never arrive, one caller's share of the
//! call budget, unread watch streams. Each scenario holds the abuse open while another
//! caller is served, and asserts what the server counts, never how fast it was.
//!
//! Timeouts are set small in each test's settings; [`bounded`] only turns a server that never
//! reacts into a failure instead of a hang (it is not an assertion about time).

use std::{future::Future, net::SocketAddr, time::Duration};

use customer_api::pb;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::{TestApp, eventually};

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
