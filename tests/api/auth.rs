//! Authentication and authorization on every transport: the negative battery (each answers
//! UNAUTHENTICATED / 401 before the service does any work), JWKS algorithms, API keys, scopes.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use customer_api::{auth::api_keys, config::ServeSettings, db, pb};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value as Json, json};
use tonic::Code;

use crate::helpers::{TEST_SECRET, TestApp, eventually, fixture, mint, new_customer, scoped};

const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "customer-api";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Json) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(fixture(&format!("jwt/{name}"))).unwrap()
}

fn good_claims() -> Json {
    json!({"sub": "svc", "scope": "customers.read customers.write", "exp": now() + 600,
           "iss": ISSUER, "aud": AUDIENCE})
}

async fn strict_app() -> TestApp {
    TestApp::spawn_with(|s| {
        s.auth.jwt_issuer = Some(ISSUER.into());
        s.auth.jwt_audience = Some(AUDIENCE.into());
    })
    .await
}

async fn rest_create(
    app: &TestApp,
    headers: &[(&str, &str)],
) -> (http::StatusCode, http::HeaderMap, Json) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let body = json!({"givenName": "A", "familyName": "B", "email": format!("{}@example.com", uuid::Uuid::new_v4())});
    let mut request = http::Request::post(format!("http://{}/v1/customers", app.addr))
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(
            request
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap(),
        )
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        serde_json::from_slice(&bytes).unwrap_or(Json::Null),
    )
}

async fn grpc_create(
    app: &TestApp,
    authorization: Option<&str>,
) -> Result<pb::Customer, tonic::Status> {
    app.client_with(authorization)
        .create_customer(pb::CreateCustomerRequest {
            duplicate_policy: 0,
            customer: Some(new_customer("Auth", "Test")),
            request_id: String::new(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Asserts 401/UNAUTHENTICATED with a Bearer challenge on both transports, and no write.
async fn assert_rejected(
    app: &TestApp,
    case: &str,
    authorization: Option<&str>,
    api_key: Option<&str>,
) {
    let before = app.count("customers", "").await;
    let mut headers = Vec::new();
    if let Some(value) = authorization {
        headers.push(("authorization", value));
    }
    if let Some(key) = api_key {
        headers.push(("x-api-key", key));
    }
    let (status, response_headers, body) = rest_create(app, &headers).await;
    assert_eq!(status, 401, "{case}: {body}");
    assert_eq!(body["error"]["status"], "UNAUTHENTICATED", "{case}");
    assert!(
        response_headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer realm=\"customer-api\""),
        "{case}"
    );

    let mut client = app.client_with(authorization);
    let mut request = tonic::Request::new(pb::CreateCustomerRequest {
        duplicate_policy: 0,
        customer: Some(new_customer("Auth", "Test")),
        request_id: String::new(),
    });
    if let Some(key) = api_key {
        request
            .metadata_mut()
            .insert("x-api-key", key.parse().unwrap());
    }
    let status = client.create_customer(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{case}: {status:?}");
    assert!(
        status.metadata().get("www-authenticate").is_some(),
        "{case}"
    );
    assert_eq!(
        app.count("customers", "").await,
        before,
        "{case}: nothing may be written"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_credential_is_rejected_on_grpc_and_rest() {
    let app = strict_app().await;
    let hs = EncodingKey::from_secret(TEST_SECRET.as_bytes());
    let rsa = EncodingKey::from_rsa_pem(&pem("rsa.pem")).unwrap();
    let claims = |f: &dyn Fn(&mut serde_json::Map<String, Json>)| {
        let mut c = good_claims();
        f(c.as_object_mut().unwrap());
        c
    };
    let none_token = {
        use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(good_claims().to_string());
        format!("{header}.{payload}.")
    };
    let cases: Vec<(&str, String)> = vec![
        ("garbage token", "garbage".into()),
        ("alg none", none_token),
        (
            "HS256 signed with the RSA public key as secret",
            sign(
                Algorithm::HS256,
                Some("rsa-1"),
                &EncodingKey::from_secret(&pem("rsa_public.pem")),
                &good_claims(),
            ),
        ),
        (
            "expired beyond leeway",
            sign(
                Algorithm::HS256,
                None,
                &hs,
                &claims(&|c| {
                    c.insert("exp".into(), json!(now() - 120));
                }),
            ),
        ),
        (
            "nbf in the future",
            sign(
                Algorithm::HS256,
                None,
                &hs,
                &claims(&|c| {
                    c.insert("nbf".into(), json!(now() + 600));
                }),
            ),
        ),
        (
            "exp as a string",
            sign(
                Algorithm::HS256,
                None,
                &hs,
                &claims(&|c| {
                    c.insert("exp".into(), json!((now() + 600).to_string()));
                }),
            ),
        ),
        (
            "nbf as a string",
            sign(
                Algorithm::HS256,
                None,
                &hs,
                &claims(&|c| {
                    c.insert("nbf".into(), json!("0"));
                }),
            ),
        ),
        (
            "missing exp",
            sign(
                Algorithm::HS256,
                None,
                &hs,
                &claims(&|c| {
                    c.remove("exp");
                }),
            ),
        ),
        (
            "wrong issuer",
            sign(
                Algorithm::HS256,
                None,
                &hs,
                &claims(&|c| {
                    c.insert("iss".into(), json!("https://evil.example"));
                }),
            ),
        ),
        (
            "wrong audience",
            sign(
                Algorithm::HS256,
                None,
                &hs,
                &claims(&|c| {
                    c.insert("aud".into(), json!("someone-else"));
                }),
            ),
        ),
        (
            "unknown kid",
            sign(Algorithm::RS256, Some("nope"), &rsa, &good_claims()),
        ),
        (
            "RS256 without kid",
            sign(Algorithm::RS256, None, &rsa, &good_claims()),
        ),
        (
            "RS256 key presented as ES256 kid",
            sign(Algorithm::RS256, Some("ec-1"), &rsa, &good_claims()),
        ),
        (
            "wrong secret",
            sign(
                Algorithm::HS256,
                None,
                &EncodingKey::from_secret(b"another-secret-another-secret-0123"),
                &good_claims(),
            ),
        ),
        (
            "oversized token",
            format!(
                "{}.{}.{}",
                "a".repeat(4000),
                "b".repeat(4000),
                "c".repeat(400)
            ),
        ),
    ];

    assert_rejected(&app, "no credentials", None, None).await;
    for (case, token) in &cases {
        assert_rejected(&app, case, Some(&format!("Bearer {token}")), None).await;
    }
    assert_rejected(
        &app,
        "not a bearer scheme",
        Some("Basic dXNlcjpwYXNz"),
        None,
    )
    .await;
    assert_rejected(&app, "malformed API key", None, Some("cak_nonsense")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_from_the_jwks_verify_by_kid_for_each_algorithm() {
    let app = strict_app().await;
    let keys = [
        (
            Algorithm::RS256,
            "rsa-1",
            EncodingKey::from_rsa_pem(&pem("rsa.pem")).unwrap(),
        ),
        (
            Algorithm::ES256,
            "ec-1",
            EncodingKey::from_ec_pem(&pem("ec.pem")).unwrap(),
        ),
        (
            Algorithm::EdDSA,
            "ed-1",
            EncodingKey::from_ed_pem(&pem("ed25519.pem")).unwrap(),
        ),
    ];
    for (alg, kid, key) in keys {
        let token = sign(alg, Some(kid), &key, &good_claims());
        let created = grpc_create(&app, Some(&format!("Bearer {token}"))).await;
        assert!(created.is_ok(), "{alg:?}: {created:?}");
    }
    // Leeway: expired 10 s ago is still within the 30 s default.
    let mut claims = good_claims();
    claims["exp"] = json!(now() - 10);
    let token = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(TEST_SECRET.as_bytes()),
        &claims,
    );
    assert!(
        grpc_create(&app, Some(&format!("Bearer {token}")))
            .await
            .is_ok()
    );
    assert_eq!(app.count("customers", "created_by = 'svc'").await, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn scopes_gate_each_rpc_with_permission_denied() {
    let app = TestApp::spawn().await;
    let reader = scoped(&["customers.read"]);
    let writer = scoped(&["customers.write"]);
    let admin_only = scoped(&["customers.admin"]);

    let status = grpc_create(&app, Some(&reader)).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("customers.write"),
        "{}",
        status.message()
    );
    let (http_status, _, body) = rest_create(&app, &[("authorization", &reader)]).await;
    assert_eq!(http_status, 403, "{body}");
    assert_eq!(body["error"]["status"], "PERMISSION_DENIED");

    assert!(grpc_create(&app, Some(&writer)).await.is_ok());
    let list = app
        .client_with(Some(&writer))
        .list_customers(pb::ListCustomersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(list.code(), Code::PermissionDenied);
    assert!(list.message().contains("customers.read"));

    let list = app
        .client_with(Some(&reader))
        .list_customers(pb::ListCustomersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.customers.len(), 1);

    // The admin scope is for key management; it grants no customer access by itself.
    let denied = app
        .client_with(Some(&admin_only))
        .list_customers(pb::ListCustomersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread")]
async fn api_keys_authenticate_until_revoked_or_expired() {
    // With the verified-key cache off (TTL 0) the database is asked on every call, so a
    // revocation takes effect at once; with the cache on it takes effect within the TTL
    // (`a_revoked_api_key_stops_working_within_the_cache_ttl`).
    let app = TestApp::spawn_with(|s| s.auth.api_key_cache_ttl = Duration::ZERO).await;
    let settings = ServeSettings::for_database(&app.database_url).database;
    let pool = db::connect(&settings).await.unwrap();
    let (info, key) = api_keys::create(
        &pool,
        "batch job",
        &["customers.read".into(), "customers.write".into()],
        None,
    )
    .await
    .unwrap();
    assert!(key.starts_with("cak_"));
    // What is stored is exactly SHA-256 of the secret part, never the secret itself.
    let (_, secret) = key.strip_prefix("cak_").unwrap().split_once('_').unwrap();
    assert_eq!(
        app.count(
            "api_keys",
            &format!(
                "id = '{}' AND secret_hash = sha256(convert_to('{secret}', 'UTF8'))",
                info.id
            )
        )
        .await,
        1
    );
    assert_eq!(
        app.count(
            "api_keys",
            &format!(
                "secret_hash = convert_to('{secret}', 'UTF8') OR position('{secret}' in name) > 0"
            )
        )
        .await,
        0,
        "the secret itself is stored nowhere"
    );

    let (status, _, created) = rest_create(&app, &[("x-api-key", &key)]).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        app.count("customers", &format!("created_by = 'api-key:{}'", info.id))
            .await,
        1
    );

    assert!(api_keys::revoke(&pool, info.id).await.unwrap());
    assert_rejected(&app, "revoked API key", None, Some(&key)).await;

    let past = chrono::Utc::now() - chrono::Duration::seconds(1);
    let (_, expired) = api_keys::create(&pool, "old", &["customers.read".into()], Some(past))
        .await
        .unwrap();
    assert_rejected(&app, "expired API key", None, Some(&expired)).await;

    let unknown_scope = api_keys::create(&pool, "x", &["customers.everything".into()], None).await;
    assert!(unknown_scope.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_api_key_stops_working_within_the_cache_ttl() {
    // Verified keys are trusted for API_KEY_CACHE_TTL without asking the database again;
    // revocation (from another process) therefore takes effect within that bound.
    let ttl = Duration::from_millis(500);
    let app = TestApp::spawn_with(|s| s.auth.api_key_cache_ttl = ttl).await;
    let settings = ServeSettings::for_database(&app.database_url).database;
    let pool = db::connect(&settings).await.unwrap();
    let (info, key) = api_keys::create(&pool, "batch job", &["customers.read".into()], None)
        .await
        .unwrap();
    let list = |key: String| {
        let mut client = app.client_with(None);
        async move {
            let mut request = tonic::Request::new(pb::ListCustomersRequest::default());
            request
                .metadata_mut()
                .insert("x-api-key", key.parse().unwrap());
            client.list_customers(request).await.map(drop)
        }
    };
    list(key.clone()).await.unwrap();

    assert!(api_keys::revoke(&pool, info.id).await.unwrap());
    let revoked = Instant::now();
    eventually("the revoked key is refused", || {
        let attempt = list(key.clone());
        async move { matches!(attempt.await, Err(status) if status.code() == Code::Unauthenticated) }
    })
    .await;
    let took = revoked.elapsed();
    assert!(
        took < ttl + Duration::from_millis(500),
        "a revoked key must stop working within the cache TTL ({ttl:?}), took {took:?}"
    );
    // And it stays refused.
    assert_eq!(list(key).await.unwrap_err().code(), Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread")]
async fn cached_tokens_expire_at_exp_and_are_never_confused_with_each_other() {
    let app = TestApp::spawn_with(|s| s.auth.jwt_leeway = Duration::ZERO).await;
    let key = EncodingKey::from_secret(TEST_SECRET.as_bytes());
    let reader = sign(
        Algorithm::HS256,
        None,
        &key,
        &json!({"sub": "reader", "scope": "customers.read", "exp": now() + 600}),
    );
    let writer = sign(
        Algorithm::HS256,
        None,
        &key,
        &json!({"sub": "writer", "scope": "customers.read customers.write", "exp": now() + 600}),
    );
    // Each token, used twice (the second use is answered from the cache), keeps its own
    // subject and scopes.
    for _ in 0..2 {
        let denied = grpc_create(&app, Some(&format!("Bearer {reader}")))
            .await
            .unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied);
        grpc_create(&app, Some(&format!("Bearer {writer}")))
            .await
            .unwrap();
    }
    assert_eq!(app.count("customers", "created_by = 'writer'").await, 2);
    assert_eq!(app.count("customers", "created_by <> 'writer'").await, 0);

    // A token expiring in a second works now (and is cached), and is refused once `exp`
    // has passed, although it is still in the cache.
    let exp = now() + 1;
    let short = sign(
        Algorithm::HS256,
        None,
        &key,
        &json!({"sub": "brief", "scope": "customers.read customers.write", "exp": exp}),
    );
    let bearer = format!("Bearer {short}");
    grpc_create(&app, Some(&bearer)).await.unwrap();
    eventually("the expired token is refused", || {
        let attempt = grpc_create(&app, Some(&bearer));
        async move { matches!(attempt.await, Err(status) if status.code() == Code::Unauthenticated) }
    })
    .await;
    assert!(now() >= exp, "refused only once exp has passed");
    let (status, _, body) = rest_create(&app, &[("authorization", &bearer)]).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["error"]["message"],
        "invalid token: the token has expired"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_reflection_and_openapi_stay_open() {
    let app = TestApp::spawn().await;
    assert!(crate::helpers::health_status(&app.channel).await.is_ok());
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    for path in ["/openapi.json", "/healthz"] {
        let response = client
            .request(
                http::Request::get(format!("http://{}{path}", app.addr))
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_caller_over_its_rate_limit_gets_429_then_recovers() {
    let app = TestApp::spawn_with(|s| {
        s.rate_limit_rps = 1;
        s.rate_limit_burst = 2;
    })
    .await;
    let list = || async {
        app.client
            .clone()
            .list_customers(pb::ListCustomersRequest::default())
            .await
    };
    assert!(list().await.is_ok());
    assert!(list().await.is_ok());

    let limited = list().await.unwrap_err();
    assert_eq!(limited.code(), Code::ResourceExhausted, "{limited:?}");
    let retry = crate::helpers::details(&limited)
        .retry_info()
        .and_then(|info| info.retry_delay)
        .expect("RetryInfo");
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = client
        .request(
            http::Request::get(format!("http://{}/v1/customers", app.addr))
                .header("authorization", app.bearer())
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));

    // Another caller has its own budget.
    let other = scoped(&["customers.read"]);
    assert!(
        app.client_with(Some(&other))
            .list_customers(pb::ListCustomersRequest::default())
            .await
            .is_ok()
    );

    // Waiting the advertised delay is the recovery being tested, not synchronisation.
    tokio::time::sleep(retry).await;
    assert!(list().await.is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_beyond_the_concurrency_limit_are_shed_at_once() {
    use diesel_async::SimpleAsyncConnection;
    let app = TestApp::spawn_with(|s| {
        s.max_concurrent_requests = 1;
        s.database.statement_timeout = std::time::Duration::from_secs(60);
    })
    .await;
    let customer = app.create("Busy", "Server").await;
    let mut lock = crate::helpers::lock_customer(&app, &customer.name).await;
    let holder = {
        let mut client = app.client.clone();
        let request = pb::DeleteCustomerRequest {
            name: customer.name.clone(),
            ..Default::default()
        };
        tokio::spawn(async move { client.delete_customer(request).await })
    };
    crate::helpers::eventually("the only slot is taken", || async {
        crate::helpers::sessions_waiting_for_locks(&app).await == 1
    })
    .await;

    let shed = app.get_customer(&customer.name).await.unwrap_err();
    assert_eq!(shed.code(), Code::Unavailable);
    assert_eq!(
        crate::helpers::details(&shed).error_info().unwrap().reason,
        "OVERLOADED"
    );
    let (status, _, _) = rest_create(&app, &[("authorization", &app.bearer())]).await;
    assert_eq!(status, 503);

    lock.batch_execute("COMMIT").await.unwrap();
    assert!(holder.await.unwrap().is_ok());
    assert!(app.get_customer(&customer.name).await.is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_from_a_jwks_url_verify_and_unknown_kids_cannot_force_refetches() {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };
    let fetches = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let jwks = Bytes::from(std::fs::read(fixture("jwt/jwks.json")).unwrap());
    {
        let fetches = fetches.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let fetches = fetches.clone();
                let jwks = jwks.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_request| {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        let jwks = jwks.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(jwks)))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    }
    let app = TestApp::spawn_with(|s| {
        s.auth.jwks_file = None;
        s.auth.jwks_url = Some(format!("http://{addr}/.well-known/jwks.json"));
        s.auth.jwt_issuer = Some(ISSUER.into());
        s.auth.jwt_audience = Some(AUDIENCE.into());
    })
    .await;
    // The first call waits for start-up, which fetched the keys once.
    let rsa = EncodingKey::from_rsa_pem(&pem("rsa.pem")).unwrap();
    let token = sign(Algorithm::RS256, Some("rsa-1"), &rsa, &good_claims());
    assert!(
        grpc_create(&app, Some(&format!("Bearer {token}")))
            .await
            .is_ok()
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 1);

    for n in 0..5 {
        let forged = sign(
            Algorithm::RS256,
            Some(&format!("made-up-{n}")),
            &rsa,
            &good_claims(),
        );
        let status = grpc_create(&app, Some(&format!("Bearer {forged}")))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "unknown kids refetch at most once a minute"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_jwks_url_stops_start_up_with_a_clear_error() {
    let database = crate::helpers::fresh_database().await;
    let (database_url, _) = database.parts();
    let mut settings = ServeSettings::for_database(database_url);
    settings.auth.jwks_url = Some("http://127.0.0.1:9/jwks.json".into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = customer_api::server::serve(settings, listener, std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("authentication: JWKS http://127.0.0.1:9/jwks.json:"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reflection_and_openapi_can_be_put_behind_authentication() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest,
    };
    let app = TestApp::spawn_with(|s| s.auth.protect_docs = true).await;
    let list = || {
        tokio_stream::iter([ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }])
    };

    let denied = ServerReflectionClient::new(app.channel.clone())
        .server_reflection_info(list())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::Unauthenticated);
    let bearer: tonic::metadata::MetadataValue<_> = app.bearer().parse().unwrap();
    let mut request = tonic::Request::new(list());
    request.metadata_mut().insert("authorization", bearer);
    assert!(
        ServerReflectionClient::new(app.channel.clone())
            .server_reflection_info(request)
            .await
            .is_ok()
    );

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    for path in ["/openapi.json", "/metrics"] {
        let get = |authorization: Option<String>| {
            let mut request = http::Request::get(format!("http://{}{path}", app.addr))
                .header("x-request-id", "docs-1");
            if let Some(value) = authorization {
                request = request.header("authorization", value);
            }
            client.request(request.body(Full::new(Bytes::new())).unwrap())
        };
        let response = get(None).await.unwrap();
        assert_eq!(response.status(), 401, "{path}");
        assert!(response.headers().contains_key("www-authenticate"));
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body["error"]["details"][0],
            serde_json::json!({
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "UNAUTHENTICATED",
                "domain": "customer.example.com",
                "metadata": {"requestId": "docs-1"},
            }),
            "{path}"
        );
        assert_eq!(
            get(Some(app.bearer())).await.unwrap().status(),
            200,
            "{path}"
        );
    }

    // Health checks stay open whatever the setting.
    assert!(crate::helpers::health_status(&app.channel).await.is_ok());
}

/// Serves `body` over HTTPS on 127.0.0.1 with a certificate for `localhost` issued by a CA
/// made here; returns the port and that CA's certificate (PEM).
async fn https_server(body: Bytes) -> (u16, String) {
    use crate::tls::{ca, leaf};
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let (ca_params, ca_key, ca_cert) = ca("private CA");
    let server = leaf(
        &["localhost"],
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        &rcgen::Issuer::new(ca_params, ca_key),
    );
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from_pem_slice(server.cert.as_bytes()).unwrap()],
        PrivateKeyDer::from_pem_slice(server.key.as_bytes()).unwrap(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (acceptor, body) = (acceptor.clone(), body.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |_request| {
                    let body = body.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(body)))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, ca_cert)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jwks_behind_a_private_ca_is_trusted_only_with_extra_ca_file() {
    let jwks = Bytes::from(std::fs::read(fixture("jwt/jwks.json")).unwrap());
    let (port, ca_cert) = https_server(jwks).await;
    let jwks_url = format!("https://localhost:{port}/.well-known/jwks.json");
    let database = crate::helpers::fresh_database().await;
    let (database_url, database_name) = database.parts();

    let mut settings = ServeSettings::for_database(database_url.clone());
    settings.auth.jwks_url = Some(jwks_url.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = customer_api::server::serve(settings, listener, std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        format!(
            "authentication: JWKS {jwks_url}: TLS handshake failed: invalid peer certificate: \
             UnknownIssuer (the server's certificate is not issued by a trusted CA; if it is \
             a private CA, add its certificate to EXTRA_CA_FILE)"
        )
    );

    let files = crate::tls::TempDir::new();
    let ca_file = files.write("private-ca.pem", &ca_cert);
    let app = TestApp::spawn_on(
        database_url,
        database_name,
        |s| {
            s.auth.jwks_file = None;
            s.auth.jwks_url = Some(jwks_url);
            s.auth.jwt_issuer = Some(ISSUER.into());
            s.auth.jwt_audience = Some(AUDIENCE.into());
            s.extra_ca_file = Some(ca_file);
        },
        None,
    )
    .await;
    let rsa = EncodingKey::from_rsa_pem(&pem("rsa.pem")).unwrap();
    let token = sign(Algorithm::RS256, Some("rsa-1"), &rsa, &good_claims());
    assert!(
        grpc_create(&app, Some(&format!("Bearer {token}")))
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unusable_extra_ca_file_stops_start_up_naming_it() {
    let database = crate::helpers::fresh_database().await;
    let (database_url, _) = database.parts();
    let files = crate::tls::TempDir::new();
    let not_pem = files.write("not-a-ca.pem", "hello");
    let mut settings = ServeSettings::for_database(database_url);
    settings.extra_ca_file = Some(not_pem.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = customer_api::server::serve(settings, listener, std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        format!(
            "TLS: cannot load extra CA certificates (EXTRA_CA_FILE) from {}: no PEM extra CA \
             certificates (EXTRA_CA_FILE) found",
            not_pem.display()
        )
    );
}

/// Test servers are built from the defaults, never from the shell: this test binary runs
/// [`health_reflection_and_openapi_stay_open`] again in a child process whose environment
/// sets variables a developer might have exported (protected docs, a broker, a tiny pool).
#[test]
fn the_developers_environment_does_not_change_the_test_servers() {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "auth::health_reflection_and_openapi_stay_open",
            "--nocapture",
        ])
        .env("PROTECT_DOCS", "true")
        .env("DB_POOL_SIZE", "0")
        .env("NATS_STREAM", "CUSTOMER_EVENTS_OF_A_DEVELOPER")
        .env("LISTEN_ADDR", "not an address")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("1 passed"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn configured_claims_are_required_and_crit_and_endless_tokens_are_refused() {
    let app = strict_app().await;
    let hs = EncodingKey::from_secret(TEST_SECRET.as_bytes());
    let without = |claim: &str| {
        let mut claims = good_claims();
        claims.as_object_mut().unwrap().remove(claim);
        sign(Algorithm::HS256, None, &hs, &claims)
    };
    let with_crit = {
        let mut header = Header::new(Algorithm::HS256);
        header.crit = Some(vec!["exp-extension".into()]);
        jsonwebtoken::encode(&header, &good_claims(), &hs).unwrap()
    };
    let lifetime = |iat: u64, exp: u64| {
        let mut claims = good_claims();
        claims["iat"] = json!(iat);
        claims["exp"] = json!(exp);
        sign(Algorithm::HS256, None, &hs, &claims)
    };
    let cases = [
        ("missing aud", without("aud")),
        ("missing iss", without("iss")),
        ("unknown crit header", with_crit),
        ("exp in year 9999", lifetime(now(), 253_402_300_799)),
        (
            "iat to exp beyond 24h",
            lifetime(now() - 3600, now() + 24 * 3600),
        ),
    ];
    for (case, token) in &cases {
        assert_rejected(&app, case, Some(&format!("Bearer {token}")), None).await;
    }
    // A day, as the default allows, is accepted.
    let day = lifetime(now(), now() + 24 * 3600 - 60);
    assert!(
        grpc_create(&app, Some(&format!("Bearer {day}")))
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_whose_subject_names_an_api_key_is_not_that_key() {
    let app = TestApp::spawn_with(|s| {
        s.rate_limit_rps = 1;
        s.rate_limit_burst = 1;
    })
    .await;
    let settings = ServeSettings::for_database(&app.database_url).database;
    let pool = db::connect(&settings).await.unwrap();
    let (info, key) = api_keys::create(
        &pool,
        "svc",
        &["customers.read".into(), "customers.write".into()],
        None,
    )
    .await
    .unwrap();
    let impostor = {
        let mut settings = ServeSettings::for_database("unused");
        settings.auth.jwt_hs256_secret = Some(TEST_SECRET.into());
        mint(
            &settings,
            &format!("api-key:{}", info.id),
            &["customers.read", "customers.write"],
        )
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    let create = |api_key: Option<&str>, bearer: Option<&str>| {
        let mut request = tonic::Request::new(pb::CreateCustomerRequest {
            duplicate_policy: 0,
            customer: Some(new_customer("Name", "Space")),
            request_id: request_id.clone(),
        });
        if let Some(key) = api_key {
            request
                .metadata_mut()
                .insert("x-api-key", key.parse().unwrap());
        }
        let mut client = app.client_with(bearer);
        async move { client.create_customer(request).await }
    };

    // The key spends its one-call budget and stores its response under the request id.
    create(Some(&key), None).await.unwrap();
    // The token has a budget of its own, and the key's stored response is not its to replay.
    let bearer = format!("Bearer {impostor}");
    let status = create(None, Some(&bearer)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        crate::helpers::details(&status)
            .error_info()
            .unwrap()
            .reason,
        "REQUEST_ID_REUSED"
    );
    assert_eq!(
        app.count("customers", &format!("created_by = 'api-key:{}'", info.id))
            .await,
        1
    );
}
