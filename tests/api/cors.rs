//! CORS from a real cross-origin page: headless Chromium (see [`crate::docs::in_chromium`])
//! loads a page from another origin, which calls REST, gRPC-web and Connect with the headers
//! the service reads and reads the headers it exposes; a page from an unlisted origin is
//! refused by the browser itself.

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    docs::{CHROMIUM, in_chromium},
    helpers::TestApp,
};
use customer_api::registry::UrlTemplate;

/// Serves a blank HTML page for every request; the task ends with the test's runtime.
async fn page_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body = "<!doctype html><title>client</title>";
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_on_a_listed_origin_calls_rest_and_grpc_web_with_every_header_it_needs() {
    let page_port = page_server().await;
    let origin = format!("http://127.0.0.1:{page_port}");
    // A port nothing listens on: the registry is down, so the full view answers 503.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registry = closed.local_addr().unwrap();
    drop(closed);
    let app = TestApp::spawn_with(|settings| {
        settings.cors_allowed_origins = vec![origin.clone()];
        settings.registry.business_registry_url = Some(
            UrlTemplate::parse(&format!("http://{registry}/v1/companies/{{business_id}}")).unwrap(),
        );
    })
    .await;

    let api = format!("http://{}", app.addr);
    // Same port, another host: another origin, not listed.
    let other = format!("http://localhost:{page_port}/");
    let seen = in_chromium(
        "cors_browser.mjs",
        &[&format!("{origin}/"), &other, &api, &app.token, CHROMIUM],
    )
    .await;

    assert_eq!(
        seen,
        json!({
            "origin": origin,
            "create": [201, "cors-create", true],
            "update": [200, "cors-update", "Crossed", true],
            "stale": [412, "ABORTED"],
            "unavailable": [503, "1"],
            "grpcWeb": [200, "cors-grpc-web", true, true],
            "grpcWebNotFound": ["5", 0],
            "connect": [200, "cors-connect", "Crossed"],
            "connectGet": [200, "Crossed"],
            "otherOrigin": "TypeError",
        })
    );
}
