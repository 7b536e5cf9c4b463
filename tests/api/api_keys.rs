//! ApiKeyService (issue 16 item 10): operators manage API keys over the API with the
//! `customers.admin` scope. Keys are created, read, listed, rotated and revoked over gRPC,
//! REST, gRPC-web and Connect; secrets are answered once and never logged; revoked and
//! rotated secrets are refused from the next call on; every change is audited with its
//! caller.

use bytes::Bytes;
use customer_api::{
    auth::scopes,
    config::LogFormat,
    pb::{self, api_key::State, api_key_service_client::ApiKeyServiceClient, audit_record::Action},
};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use prost::Message;
use serde_json::json;
use tonic::{
    Code,
    metadata::{Ascii, MetadataValue},
    service::interceptor::InterceptedService,
    transport::Channel,
};

use crate::{
    capture::captured,
    helpers::{TestApp, assert_invalid, assert_reason, mint},
    rest,
};

/// Sends one credential header with every call.
#[derive(Clone)]
struct Credential(&'static str, MetadataValue<Ascii>);

impl tonic::service::Interceptor for Credential {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert(self.0, self.1.clone());
        Ok(request)
    }
}

type Keys = ApiKeyServiceClient<InterceptedService<Channel, Credential>>;

/// An ApiKeyService client calling as the app's all-scopes token (subject `test-user`).
fn admin(app: &TestApp) -> Keys {
    with_header(app, "authorization", &app.bearer())
}

/// An ApiKeyService client calling with the API key `key`.
fn as_key(app: &TestApp, key: &str) -> Keys {
    with_header(app, "x-api-key", key)
}

fn with_header(app: &TestApp, name: &'static str, value: &str) -> Keys {
    ApiKeyServiceClient::with_interceptor(
        app.channel.clone(),
        Credential(name, value.parse().unwrap()),
    )
}

/// A CustomerService client calling with the API key `key`.
fn customers_as_key(
    app: &TestApp,
    key: &str,
) -> pb::customer_service_client::CustomerServiceClient<InterceptedService<Channel, Credential>> {
    pb::customer_service_client::CustomerServiceClient::with_interceptor(
        app.channel.clone(),
        Credential("x-api-key", key.parse().unwrap()),
    )
}

fn new_key(display_name: &str, granted: &[&str]) -> pb::CreateApiKeyRequest {
    pb::CreateApiKeyRequest {
        api_key: Some(pb::ApiKey {
            display_name: display_name.into(),
            scopes: granted.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

async fn create(app: &TestApp, display_name: &str, granted: &[&str]) -> pb::ApiKey {
    admin(app)
        .create_api_key(new_key(display_name, granted))
        .await
        .unwrap()
        .into_inner()
}

/// Revokes key `name` as the app's admin.
async fn revoke(app: &TestApp, name: &str) -> pb::ApiKey {
    admin(app)
        .revoke_api_key(pb::RevokeApiKeyRequest {
            name: name.to_owned(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// Rotates key `name` as the app's admin, the old secret accepted `grace` seconds longer.
async fn rotate(app: &TestApp, name: &str, grace: i64) -> Result<pb::ApiKey, tonic::Status> {
    admin(app)
        .rotate_api_key(pb::RotateApiKeyRequest {
            name: name.to_owned(),
            grace_period: (grace != 0).then_some(prost_types::Duration {
                seconds: grace,
                nanos: 0,
            }),
            request_id: String::new(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Whether `key` may list customers (UNAUTHENTICATED is `Err`, anything else a failure).
async fn reads(app: &TestApp, key: &str) -> Result<(), Code> {
    match customers_as_key(app, key)
        .list_customers(pb::ListCustomersRequest::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(status) if status.code() == Code::Unauthenticated => Err(status.code()),
        Err(status) => panic!("unexpected {status:?}"),
    }
}

/// The secret of key `cak_<32 hex>_<secret>` (which may itself hold `_`).
fn secret_part(key: &str) -> &str {
    &key["cak_".len() + 32 + 1..]
}

fn actions(key: &pb::ApiKey) -> Vec<(Action, String)> {
    key.audit
        .iter()
        .map(|record| (record.action(), record.actor.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_creates_a_key_whose_secret_works_for_the_scopes_it_grants() {
    let app = TestApp::spawn().await;

    let key = create(&app, "nightly export", &[scopes::READ]).await;

    let id = key.name.strip_prefix("apiKeys/").unwrap();
    assert_eq!(key.uid, id);
    assert!(
        key.secret
            .starts_with(&format!("cak_{}_", id.replace('-', ""))),
        "{}",
        key.secret
    );
    assert_eq!(key.display_name, "nightly export");
    assert_eq!(key.scopes, [scopes::READ]);
    assert_eq!(key.state(), State::Active);
    assert_eq!(key.creator, "test-user");
    assert_eq!(actions(&key), [(Action::Created, "test-user".to_owned())]);
    // What is stored is SHA-256 of the secret part, never the secret.
    let secret = secret_part(&key.secret);
    assert_eq!(
        app.count(
            "api_keys",
            &format!("id = '{id}' AND secret_hash = sha256(convert_to('{secret}', 'UTF8'))")
        )
        .await,
        1
    );

    assert_eq!(reads(&app, &key.secret).await, Ok(()));
    let write = customers_as_key(&app, &key.secret)
        .create_customer(pb::CreateCustomerRequest {
            duplicate_policy: 0,
            customer: Some(crate::helpers::new_customer("Key", "Holder")),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(write.code(), Code::PermissionDenied, "{write:?}");
    // Reading customers does not make it an admin.
    let listing = as_key(&app, &key.secret)
        .list_api_keys(pb::ListApiKeysRequest::default())
        .await
        .unwrap_err();
    assert_eq!(listing.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread")]
async fn callers_without_the_admin_scope_are_denied_every_rpc() {
    let app = TestApp::spawn().await;
    let key = create(&app, "target", &[scopes::READ]).await;
    let mut settings = customer_api::config::ServeSettings::for_database(&app.database_url);
    settings.auth.jwt_hs256_secret = Some(crate::helpers::TEST_SECRET.into());
    let writer = mint(&settings, "writer", &[scopes::READ, scopes::WRITE]);
    let mut client = with_header(&app, "authorization", &format!("Bearer {writer}"));
    let name = key.name.clone();
    let denied = [
        client
            .create_api_key(new_key("escalation", &[scopes::ADMIN]))
            .await
            .map(drop),
        client
            .get_api_key(pb::GetApiKeyRequest { name: name.clone() })
            .await
            .map(drop),
        client
            .list_api_keys(pb::ListApiKeysRequest::default())
            .await
            .map(drop),
        client
            .revoke_api_key(pb::RevokeApiKeyRequest {
                name: name.clone(),
                request_id: String::new(),
            })
            .await
            .map(drop),
        client
            .rotate_api_key(pb::RotateApiKeyRequest {
                name: name.clone(),
                ..Default::default()
            })
            .await
            .map(drop),
    ];
    for (rpc, outcome) in denied.into_iter().enumerate() {
        let status = outcome.unwrap_err();
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "rpc {rpc}: {status:?}"
        );
        assert!(status.message().contains("customers.admin"), "{status:?}");
    }
    let (status, _, body) = rest::call(
        &app,
        false,
        Method::GET,
        "/v1/apiKeys",
        None,
        &[("authorization", &format!("Bearer {writer}"))],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(rest::error_reason(&body), "PERMISSION_DENIED");
    let anonymous = ApiKeyServiceClient::new(app.channel.clone())
        .list_api_keys(pb::ListApiKeysRequest::default())
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    assert_eq!(app.count("api_keys", "").await, 1, "nothing was created");
    assert_eq!(
        app.count("api_keys", "revoke_time IS NULL AND rotate_time IS NULL")
            .await,
        1,
        "nothing was changed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn get_and_list_never_show_a_secret_and_page_newest_first() {
    let app = TestApp::spawn().await;
    let first = create(&app, "first", &[scopes::READ]).await;
    let second = create(&app, "second", &[scopes::WRITE]).await;
    let third = create(&app, "third", &[scopes::ADMIN]).await;
    let mut client = admin(&app);

    let got = client
        .get_api_key(pb::GetApiKeyRequest {
            name: first.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.secret, "");
    assert_eq!(
        got,
        pb::ApiKey {
            secret: String::new(),
            ..first.clone()
        }
    );

    let mut names = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_api_keys(pb::ListApiKeysRequest {
                page_size: 2,
                page_token,
                show_revoked: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.api_keys.len() <= 2);
        for key in &page.api_keys {
            assert_eq!(key.secret, "", "{}", key.name);
            assert_eq!(key.audit.len(), 1, "{}", key.name);
        }
        names.extend(page.api_keys.into_iter().map(|key| key.name));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(names, [third.name, second.name, first.name]);

    let token_of_other_query = client
        .list_api_keys(pb::ListApiKeysRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    let refused = client
        .list_api_keys(pb::ListApiKeysRequest {
            page_size: 1,
            page_token: token_of_other_query,
            show_revoked: true,
        })
        .await
        .unwrap_err();
    assert_reason(&refused, Code::InvalidArgument, "INVALID_PAGE_TOKEN");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_key_is_refused_at_once_and_listed_only_on_request() {
    // The default cache TTL (5 s): the key's verification is cached when it is revoked.
    let app = TestApp::spawn().await;
    let key = create(&app, "leaked", &[scopes::READ]).await;
    assert_eq!(reads(&app, &key.secret).await, Ok(()));
    assert_eq!(reads(&app, &key.secret).await, Ok(()), "cached now");

    let revoked = revoke(&app, &key.name).await;

    assert_eq!(reads(&app, &key.secret).await, Err(Code::Unauthenticated));
    assert_eq!(revoked.state(), State::Revoked);
    assert!(revoked.revoke_time.is_some());
    assert_eq!(revoked.secret, "");
    assert_eq!(
        actions(&revoked),
        [
            (Action::Created, "test-user".to_owned()),
            (Action::Revoked, "test-user".to_owned())
        ]
    );
    // Revoking again changes nothing and records nothing.
    let again = revoke(&app, &key.name).await;
    assert_eq!(again.revoke_time, revoked.revoke_time);
    assert_eq!(app.count("api_key_audit", "action = 'REVOKED'").await, 1);

    let listed = |show_revoked| {
        let mut client = admin(&app);
        async move {
            client
                .list_api_keys(pb::ListApiKeysRequest {
                    show_revoked,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .api_keys
                .len()
        }
    };
    assert_eq!(listed(false).await, 0);
    assert_eq!(listed(true).await, 1);

    let rotation = rotate(&app, &key.name, 0).await.unwrap_err();
    assert_reason(&rotation, Code::FailedPrecondition, "API_KEY_REVOKED");
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_refuses_the_old_secret_at_once_or_after_its_grace_period() {
    let app = TestApp::spawn().await;
    let key = create(&app, "service", &[scopes::READ]).await;
    assert_eq!(reads(&app, &key.secret).await, Ok(()));

    let rotated = rotate(&app, &key.name, 0).await.unwrap();

    assert_ne!(rotated.secret, key.secret);
    assert_eq!(rotated.name, key.name);
    assert!(rotated.rotate_time.is_some());
    assert_eq!(rotated.previous_secret_expire_time, None);
    assert_eq!(reads(&app, &key.secret).await, Err(Code::Unauthenticated));
    assert_eq!(reads(&app, &rotated.secret).await, Ok(()));

    // With a grace period both work until it ends.
    let graceful = rotate(&app, &key.name, 3600).await.unwrap();
    let grace_end = graceful.previous_secret_expire_time.unwrap();
    let rotate_time = graceful.rotate_time.unwrap();
    assert_eq!(grace_end.seconds - rotate_time.seconds, 3600);
    assert_eq!(reads(&app, &rotated.secret).await, Ok(()));
    assert_eq!(reads(&app, &graceful.secret).await, Ok(()));
    assert_eq!(reads(&app, &key.secret).await, Err(Code::Unauthenticated));
    // Revocation ends the grace period too.
    revoke(&app, &key.name).await;
    assert_eq!(
        reads(&app, &rotated.secret).await,
        Err(Code::Unauthenticated)
    );
    assert_eq!(
        reads(&app, &graceful.secret).await,
        Err(Code::Unauthenticated)
    );

    let too_long = rotate(&app, &key.name, 8 * 24 * 3600).await.unwrap_err();
    assert_invalid(&too_long, "INVALID_FIELDS", &["grace_period"]);
    let negative = rotate(&app, &key.name, -1).await.unwrap_err();
    assert_invalid(&negative, "INVALID_FIELDS", &["grace_period"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_create_or_rotation_returns_the_same_key_without_its_secret() {
    let app = TestApp::spawn().await;
    let request_id = uuid::Uuid::new_v4().to_string();
    let request = pb::CreateApiKeyRequest {
        request_id: request_id.clone(),
        ..new_key("retried", &[scopes::READ])
    };

    let first = admin(&app)
        .create_api_key(request.clone())
        .await
        .unwrap()
        .into_inner();
    let retry = admin(&app)
        .create_api_key(request.clone())
        .await
        .unwrap()
        .into_inner();

    assert!(!first.secret.is_empty());
    assert_eq!(
        retry,
        pb::ApiKey {
            secret: String::new(),
            ..first.clone()
        },
        "the same key, its secret not shown again"
    );
    assert_eq!(app.count("api_keys", "").await, 1);
    assert_eq!(first.audit[0].request_id, request_id);
    let reused = admin(&app)
        .create_api_key(pb::CreateApiKeyRequest {
            request_id: request_id.clone(),
            ..new_key("another", &[scopes::READ])
        })
        .await
        .unwrap_err();
    assert_invalid(&reused, "REQUEST_ID_REUSED", &["request_id"]);

    let rotation = pb::RotateApiKeyRequest {
        name: first.name.clone(),
        grace_period: None,
        request_id: uuid::Uuid::new_v4().to_string(),
    };
    let rotated = admin(&app)
        .rotate_api_key(rotation.clone())
        .await
        .unwrap()
        .into_inner();
    let rotated_again = admin(&app)
        .rotate_api_key(rotation)
        .await
        .unwrap()
        .into_inner();
    assert!(!rotated.secret.is_empty());
    assert_eq!(rotated_again.secret, "");
    assert_eq!(rotated_again.rotate_time, rotated.rotate_time);
    assert_eq!(app.count("api_key_audit", "action = 'ROTATED'").await, 1);
    assert_eq!(reads(&app, &rotated.secret).await, Ok(()), "one rotation");
    // No stored response holds a secret.
    let secret = secret_part(&rotated.secret);
    assert_eq!(
        app.count(
            "request_ids",
            &format!("position(convert_to('{secret}', 'UTF8') in response_pb) > 0")
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_records_carry_the_caller_whether_token_or_key() {
    let app = TestApp::spawn().await;
    let operator = create(&app, "operator", &[scopes::ADMIN]).await;
    let operator_subject = format!("api-key:{}", operator.uid);

    let made = as_key(&app, &operator.secret)
        .create_api_key(new_key("made by a key", &[scopes::READ]))
        .await
        .unwrap()
        .into_inner();
    let rotated = rotate(&app, &made.name, 0).await.unwrap();
    let revoked = as_key(&app, &operator.secret)
        .revoke_api_key(pb::RevokeApiKeyRequest {
            name: made.name.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();

    assert_eq!(made.creator, operator_subject);
    assert_eq!(rotated.audit.len(), 2);
    assert_eq!(
        actions(&revoked),
        [
            (Action::Created, operator_subject.clone()),
            (Action::Rotated, "test-user".to_owned()),
            (Action::Revoked, operator_subject.clone()),
        ]
    );
    for record in &revoked.audit {
        assert!(record.time.is_some());
    }
    assert_eq!(
        app.count(
            "api_key_audit",
            &format!(
                "api_key_id = '{}' AND actor = '{operator_subject}'",
                made.uid
            )
        )
        .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_requests_name_every_bad_field() {
    let app = TestApp::spawn().await;
    let mut client = admin(&app);
    let past = prost_types::Timestamp {
        seconds: 1_000_000_000,
        nanos: 0,
    };
    let bad = client
        .create_api_key(pb::CreateApiKeyRequest {
            api_key: Some(pb::ApiKey {
                display_name: "  ".into(),
                scopes: vec!["customers.everything".into()],
                expire_time: Some(past),
                ..Default::default()
            }),
            request_id: "retry-1".into(),
        })
        .await
        .unwrap_err();
    assert_invalid(
        &bad,
        "INVALID_FIELDS",
        &[
            "request_id",
            "api_key.expire_time",
            "api_key.display_name",
            "api_key.scopes[0]",
        ],
    );
    let missing = client
        .create_api_key(pb::CreateApiKeyRequest::default())
        .await
        .unwrap_err();
    assert_invalid(&missing, "INVALID_FIELDS", &["api_key"]);
    let bad_name = client
        .get_api_key(pb::GetApiKeyRequest {
            name: "customers/1".into(),
        })
        .await
        .unwrap_err();
    assert_invalid(&bad_name, "INVALID_FIELDS", &["name"]);
    let unknown = client
        .revoke_api_key(pb::RevokeApiKeyRequest {
            name: format!("apiKeys/{}", uuid::Uuid::new_v4()),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_reason(&unknown, Code::NotFound, "RESOURCE_NOT_FOUND");
    assert_eq!(app.count("api_keys", "").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn rest_routes_create_get_list_rotate_and_revoke() {
    let app = TestApp::spawn().await;
    let body = json!({"displayName": "rest key", "scopes": ["customers.read"]}).to_string();
    let (status, headers, created) = rest::call(
        &app,
        false,
        Method::POST,
        "/v1/apiKeys",
        Some(&body),
        &[("idempotency-key", "7a1f0b9e-3a52-4c8e-9d07-3a0c2f1e5b11")],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let name = created["name"].as_str().unwrap().to_owned();
    assert_eq!(headers["location"], format!("/v1/{name}"));
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("cak_"));
    assert_eq!(created["state"], "ACTIVE");
    assert_eq!(created["audit"][0]["action"], "CREATED");
    assert_eq!(
        created["audit"][0]["requestId"],
        "7a1f0b9e-3a52-4c8e-9d07-3a0c2f1e5b11"
    );
    let (status, _, replay) = rest::call(
        &app,
        false,
        Method::POST,
        "/v1/apiKeys",
        Some(&body),
        &[("idempotency-key", "7a1f0b9e-3a52-4c8e-9d07-3a0c2f1e5b11")],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(replay["name"], created["name"]);
    // Scalars are always written (the JSON writers' rule): an empty secret.
    assert_eq!(replay["secret"], "", "{replay}");

    let (status, _, got) =
        rest::call(&app, true, Method::GET, &format!("/v1/{name}"), None, &[]).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["secret"], "");
    assert_eq!(got["displayName"], "rest key");

    let (status, _, rotated) = rest::call(
        &app,
        false,
        Method::POST,
        &format!("/v1/{name}:rotate"),
        Some(r#"{"gracePeriod": "60s"}"#),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    assert!(rotated["previousSecretExpireTime"].is_string());

    let (status, _, revoked) = rest::call(
        &app,
        false,
        Method::POST,
        &format!("/v1/{name}:revoke"),
        Some("{}"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["state"], "REVOKED");

    let (status, _, listed) = rest::call(
        &app,
        false,
        Method::GET,
        "/v1/apiKeys?showRevoked=true",
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["apiKeys"].as_array().unwrap().len(), 1);
    assert_eq!(listed["apiKeys"][0]["secret"], "");
    let (status, _, live) = rest::call(&app, false, Method::GET, "/v1/apiKeys", None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(live["apiKeys"], json!([]), "{live}");

    let (status, _, bad) = rest::call(
        &app,
        false,
        Method::POST,
        "/v1/apiKeys",
        Some(r#"{"displayName": "", "scopes": []}"#),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        rest::violations(&bad),
        ["api_key.display_name", "api_key.scopes"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_web_connect_reflection_and_health_serve_the_service() {
    let app = TestApp::spawn().await;
    let key = create(&app, "transports", &[scopes::READ]).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let path = format!("http://{}/customer.v1.ApiKeyService/GetApiKey", app.addr);
    let request = pb::GetApiKeyRequest {
        name: key.name.clone(),
    };

    // gRPC-web (binary, HTTP/1.1).
    let mut framed = vec![0_u8];
    let message = request.encode_to_vec();
    framed.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(&message);
    let response = client
        .request(
            http::Request::post(&path)
                .header("content-type", "application/grpc-web+proto")
                .header("x-grpc-web", "1")
                .header("authorization", app.bearer())
                .body(Full::new(Bytes::from(framed)))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body[0], 0, "a data frame first");
    let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    let got = pb::ApiKey::decode(&body[5..5 + len]).unwrap();
    assert_eq!(got.name, key.name);
    assert_eq!(got.secret, "");

    // Connect (unary JSON).
    let response = client
        .request(
            http::Request::post(&path)
                .header("content-type", "application/json")
                .header("connect-protocol-version", "1")
                .header("authorization", app.bearer())
                .body(Full::new(Bytes::from(
                    json!({"name": key.name}).to_string(),
                )))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let got: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(got["name"], key.name.as_str());

    // Health names the service.
    let health = tonic_health::pb::health_client::HealthClient::new(app.channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: "customer.v1.ApiKeyService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        health.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );

    // Reflection lists it.
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut stream = ServerReflectionClient::new(app.channel.clone())
        .server_reflection_info(tokio_stream::iter([ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }]))
        .await
        .unwrap()
        .into_inner();
    let answer = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("{answer:?}");
    };
    assert!(
        list.service
            .iter()
            .any(|service| service.name == "customer.v1.ApiKeyService"),
        "{list:?}"
    );
}

/// Secrets made over gRPC and REST, used, rotated and guessed wrong, with every log line of
/// the server captured at `trace`: none of them is in the log.
#[test]
fn a_secret_never_appears_in_the_server_log() {
    let (logs, secrets) = captured(LogFormat::Json, "trace", async {
        let app = TestApp::spawn().await;
        let key = create(&app, "logged?", &[scopes::READ, scopes::ADMIN]).await;
        assert_eq!(reads(&app, &key.secret).await, Ok(()));
        let rotated = as_key(&app, &key.secret)
            .rotate_api_key(pb::RotateApiKeyRequest {
                name: key.name.clone(),
                grace_period: Some(prost_types::Duration {
                    seconds: 60,
                    nanos: 0,
                }),
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let body = json!({"displayName": "rest", "scopes": ["customers.read"]}).to_string();
        let (status, _, created) =
            rest::call(&app, false, Method::POST, "/v1/apiKeys", Some(&body), &[]).await;
        assert_eq!(status, StatusCode::CREATED);
        // A key where a name belongs is refused without being logged either.
        let (status, _, _) = rest::call(
            &app,
            false,
            Method::GET,
            &format!("/v1/apiKeys/{}", key.secret),
            None,
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let misplaced = admin(&app)
            .get_api_key(pb::GetApiKeyRequest {
                name: format!("apiKeys/{}", rotated.secret),
            })
            .await
            .unwrap_err();
        assert_eq!(misplaced.code(), Code::InvalidArgument);
        // A wrong secret is refused, and is not logged either.
        let (kept, last) = rotated.secret.split_at(rotated.secret.len() - 1);
        let wrong = format!("{kept}{}", if last == "A" { "B" } else { "A" });
        assert_eq!(reads(&app, &wrong).await, Err(Code::Unauthenticated));
        vec![
            key.secret,
            rotated.secret,
            created["secret"].as_str().unwrap().to_owned(),
            wrong,
        ]
    });
    assert!(logs.contains("CreateApiKey"), "the calls were logged");
    for secret in &secrets {
        let part = secret_part(secret);
        assert!(!logs.contains(part), "a secret is in the log");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_revoked_anywhere_is_refused_by_an_instance_that_cached_it() {
    // Cached verifications would be trusted for an hour: only the announcement of the
    // revocation (LISTEN/NOTIFY) can make the other instance refuse the key.
    let hour = std::time::Duration::from_secs(3600);
    let first = TestApp::spawn_with(|s| s.auth.api_key_cache_ttl = hour).await;
    let second = TestApp::spawn_on(
        first.database_url.clone(),
        first.database_name.clone(),
        |s| s.auth.api_key_cache_ttl = hour,
        None,
    )
    .await;
    let refused_by_second = |key: String| {
        let second = &second;
        move || {
            let key = key.clone();
            async move { reads(second, &key).await.is_err() }
        }
    };

    let key = create(&first, "through the API", &[scopes::READ]).await;
    assert_eq!(reads(&second, &key.secret).await, Ok(()));
    assert_eq!(reads(&second, &key.secret).await, Ok(()), "cached now");
    revoke(&first, &key.name).await;
    crate::helpers::eventually(
        "the other instance refuses the key revoked through the first",
        refused_by_second(key.secret.clone()),
    )
    .await;

    let rotated = create(&first, "rotated", &[scopes::READ]).await;
    assert_eq!(reads(&second, &rotated.secret).await, Ok(()));
    rotate(&first, &rotated.name, 0).await.unwrap();
    crate::helpers::eventually(
        "the other instance refuses the secret rotated away on the first",
        refused_by_second(rotated.secret.clone()),
    )
    .await;

    // The command line's revocation is announced too.
    let settings = customer_api::config::ServeSettings::for_database(&first.database_url);
    let pool = customer_api::db::connect(&settings.database).await.unwrap();
    let (info, cli_key) =
        customer_api::auth::api_keys::create(&pool, "cli", &[scopes::READ.into()], None)
            .await
            .unwrap();
    assert_eq!(reads(&second, &cli_key).await, Ok(()));
    assert!(
        customer_api::auth::api_keys::revoke(&pool, info.id)
            .await
            .unwrap()
    );
    crate::helpers::eventually(
        "the instance refuses the key revoked by the command line",
        refused_by_second(cli_key),
    )
    .await;
    // An expired key (the command line allows a past expiry) is not rotated.
    let past = chrono::Utc::now() - chrono::Duration::seconds(1);
    let (expired, _) =
        customer_api::auth::api_keys::create(&pool, "expired", &[scopes::READ.into()], Some(past))
            .await
            .unwrap();
    let refused = rotate(&first, &format!("apiKeys/{}", expired.id), 0)
        .await
        .unwrap_err();
    assert_reason(&refused, Code::FailedPrecondition, "API_KEY_EXPIRED");
    assert_eq!(
        first
            .count(
                "api_key_audit",
                &format!("api_key_id = '{}' AND actor = 'cli'", info.id)
            )
            .await,
        2,
        "created and revoked by `cli`"
    );
}
