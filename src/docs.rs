//! The browsable API: a landing page at `/` and Swagger UI at `/docs`, served from the binary.
//!
//! Swagger UI is vendored from the npm package `swagger-ui-dist` at a pinned version
//! (`assets/swagger-ui/`, refreshed by `scripts/vendor-swagger-ui.sh`) and compiled in with
//! `include_bytes!`: no CDN, nothing fetched at run time. The console loads the served
//! `/openapi.json`, whose security schemes give it the Authorize dialog (a bearer token or an
//! API key); "Try it out" calls the REST routes of this same server. The pages hold no data,
//! so they are open like `/healthz`; the calls made from them need credentials as any other.

use axum::{
    Router,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};

/// The vendored Swagger UI's version (`swagger-ui-dist@x.y.z`).
pub const SWAGGER_UI_VERSION: &str = include_str!("../assets/swagger-ui/VERSION");

const BUNDLE: &[u8] = include_bytes!("../assets/swagger-ui/swagger-ui-bundle.js");
const CSS: &[u8] = include_bytes!("../assets/swagger-ui/swagger-ui.css");
const FAVICON: &[u8] = include_bytes!("../assets/swagger-ui/favicon-32x32.png");

/// Only this server's own scripts and styles (Swagger UI sets inline styles; images of its
/// icons are data URLs).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'";

const DOCS: &str = r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>customer-api · API console</title>
  <link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
  <link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/init.js"></script>
</body>
</html>
"#;

/// The console's settings: the served document, "Try it out" on, operation ids shown.
const INIT: &str = r##"window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  tryItOutEnabled: true,
  displayOperationId: true,
  defaultModelsExpandDepth: 0,
  persistAuthorization: false,
});
"##;

const LANDING: &str = r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>customer-api</title>
  <style>
    body { font-family: system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.5; }
    code, pre { background: #f4f4f4; padding: 0.1rem 0.3rem; border-radius: 3px; }
    pre { padding: 0.6rem; overflow-x: auto; }
  </style>
</head>
<body>
  <h1>customer-api</h1>
  <p><code>customer.v1.CustomerService</code> on this port as gRPC (h2c), gRPC-web, Connect and REST/JSON.
     Every call needs <code>authorization: Bearer &lt;JWT&gt;</code> or <code>x-api-key: &lt;key&gt;</code>
     (<code>customer-api token</code> issues a development token).</p>
  <ul>
    <li><a href="/docs">API console</a> (Swagger UI): browse the REST routes, authorize, try them.</li>
    <li><a href="/openapi.json">/openapi.json</a>: the OpenAPI 3.1 document, for generated clients.</li>
    <li><a href="/healthz">/healthz</a> (liveness), <a href="/readyz">/readyz</a> (readiness),
        <a href="/healthz/events">/healthz/events</a> (the event pipeline).</li>
    <li><a href="/metrics">/metrics</a>: Prometheus metrics.</li>
  </ul>
  <h2>gRPC</h2>
  <p>Server reflection (v1 and v1alpha) describes every service, for example:</p>
  <pre>grpcurl -plaintext HOST:PORT list
grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{}' HOST:PORT customer.v1.CustomerService/ListCustomers
buf curl --protocol grpc --http2-prior-knowledge -H "authorization: Bearer $TOKEN" -d '{}' http://HOST:PORT/customer.v1.CustomerService/ListCustomers</pre>
  <h2>Connect</h2>
  <p>The gRPC paths speak the Connect protocol too (JSON or binary; reads also as GET):</p>
  <pre>curl -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{}' http://HOST:PORT/customer.v1.CustomerService/ListCustomers</pre>
  <h2>REST</h2>
  <pre>curl -H "authorization: Bearer $TOKEN" http://HOST:PORT/v1/customers</pre>
</body>
</html>
"#;

/// `/`, `/docs` and the console's assets.
pub fn routes() -> Router {
    Router::new()
        .route("/", get(|| async { page(LANDING) }))
        .route("/docs", get(|| async { page(DOCS) }))
        .route(
            "/docs/init.js",
            get(|| async { asset("text/javascript", INIT.as_bytes()) }),
        )
        .route(
            "/docs/swagger-ui-bundle.js",
            get(|| async { asset("text/javascript", BUNDLE) }),
        )
        .route(
            "/docs/swagger-ui.css",
            get(|| async { asset("text/css", CSS) }),
        )
        .route(
            "/docs/favicon-32x32.png",
            get(|| async { asset("image/png", FAVICON) }),
        )
}

fn page(html: &'static str) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        html,
    )
        .into_response()
}

/// A vendored file; it changes only with the binary, so caches may keep it for a day.
fn asset(content_type: &'static str, bytes: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        bytes,
    )
        .into_response()
}
