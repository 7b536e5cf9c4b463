//! The browsable API: the landing page and the API console (Swagger UI from the binary),
//! over HTTP and in headless Chromium (Debian `chromium` from `make test-tools`, driven by
//! playwright-core from `make tools`): authorize, execute ListCustomers and CreateCustomer.

use std::path::Path;

use bytes::Bytes;
use serde_json::json;

use crate::helpers::{Scratch, TestApp, tool};

/// Debian's chromium, which `make test-tools` installs.
pub(crate) const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs `script` (from tests/clients/) with node and playwright-core from `make tools`, in
/// a scratch directory; returns the JSON object it prints.
pub(crate) async fn in_chromium(script: &str, args: &[&str]) -> serde_json::Value {
    let node = tool("target/tools/node/node");
    tool("target/tools/node/node_modules/playwright-core/package.json");
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run `make test-tools` (`make test` does it first)"
    );
    let scratch = Scratch::new("browser");
    let dir = &scratch.0;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(root.join("tests/clients").join(script), dir.join(script)).unwrap();
    std::os::unix::fs::symlink(
        root.join("target/tools/node/node_modules"),
        dir.join("node_modules"),
    )
    .unwrap();
    let mut argv = vec![script];
    argv.extend_from_slice(args);
    let stdout = crate::clients::run(&node, &argv, dir, &[]).await;
    crate::clients::report(&stdout)
}

async fn fetch(app: &TestApp, path: &str) -> (http::StatusCode, http::HeaderMap, Bytes) {
    crate::helpers::http_get(app, path, &[]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_landing_page_and_the_console_are_served_without_credentials() {
    let app = TestApp::spawn().await;
    let (status, headers, body) = fetch(&app, "/").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let landing = String::from_utf8(body.to_vec()).unwrap();
    for link in [
        r#"href="/docs""#,
        r#"href="/openapi.json""#,
        r#"href="/healthz""#,
        r#"href="/metrics""#,
    ] {
        assert!(landing.contains(link), "{link}");
    }
    assert!(landing.contains("grpcurl -plaintext HOST:PORT list"));

    let (status, headers, body) = fetch(&app, "/docs").await;
    assert_eq!(status, 200);
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    let console = String::from_utf8(body.to_vec()).unwrap();
    assert!(console.contains(r#"<script src="/docs/swagger-ui-bundle.js"></script>"#));

    // The vendored files, byte for byte, with their types.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/swagger-ui");
    for (path, file, content_type) in [
        (
            "/docs/swagger-ui-bundle.js",
            "swagger-ui-bundle.js",
            "text/javascript",
        ),
        ("/docs/swagger-ui.css", "swagger-ui.css", "text/css"),
        ("/docs/favicon-32x32.png", "favicon-32x32.png", "image/png"),
    ] {
        let (status, headers, body) = fetch(&app, path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(headers["content-type"], content_type, "{path}");
        assert_eq!(body, std::fs::read(root.join(file)).unwrap(), "{path}");
    }
    let (_, _, init) = fetch(&app, "/docs/init.js").await;
    assert!(String::from_utf8_lossy(&init).contains(r#"url: "/openapi.json""#));
}

#[tokio::test(flavor = "multi_thread")]
async fn in_chromium_the_console_authorizes_and_executes_list_and_create() {
    let app = TestApp::spawn().await;
    // The screenshot is the test's artifact: it stays under target/artifacts/.
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("docs-console.png");
    let _ = std::fs::remove_file(&screenshot);

    let url = format!("http://{}", app.addr);
    let screenshot_path = screenshot.display().to_string();
    let seen = in_chromium(
        "docs_browser.mjs",
        &[&url, &app.token, CHROMIUM, &screenshot_path],
    )
    .await;

    assert_eq!(
        seen,
        json!({
            "title": "customer-api",
            "authorized": true,
            "create": [201, "Console", "console@example.com"],
            "list": [200, ["console@example.com"]],
            "failures": [],
        })
    );
    let png = std::fs::read(&screenshot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}
