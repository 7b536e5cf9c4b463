//! REST/JSON over the gateway: every CustomerService route over real HTTP/1.1 and HTTP/2.

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use serde_json::{Value as Json, json};

use crate::helpers::TestApp;

/// A JSON call; returns status, headers and the parsed body (Null when empty).
pub(crate) async fn call(
    app: &TestApp,
    http2: bool,
    method: Method,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Json) {
    let mut builder = Client::builder(TokioExecutor::new());
    let client = if http2 {
        builder.http2_only(true).build_http::<Full<Bytes>>()
    } else {
        builder.build_http::<Full<Bytes>>()
    };
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", app.addr));
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("authorization"))
    {
        request = request.header("authorization", app.bearer());
    }
    if body.is_some()
        && !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    {
        request = request.header("content-type", "application/json");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let json = json_body(body).await;
    (parts.status, parts.headers, json)
}

/// A response body as JSON (Null when empty).
pub(crate) async fn json_body(body: hyper::body::Incoming) -> Json {
    let bytes = body.collect().await.unwrap().to_bytes();
    if bytes.is_empty() {
        return Json::Null;
    }
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)))
}

async fn get(app: &TestApp, path: &str) -> (StatusCode, HeaderMap, Json) {
    call(app, false, Method::GET, path, None, &[]).await
}

async fn create(app: &TestApp, given: &str, email: &str) -> Json {
    let body = json!({"givenName": given, "familyName": "Rest", "email": email}).to_string();
    let (status, _, json) = call(app, false, Method::POST, "/v1/customers", Some(&body), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    json
}

pub(crate) fn error_reason(json: &Json) -> &str {
    json["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo")
        .and_then(|d| d["reason"].as_str())
        .unwrap()
}

pub(crate) fn violations(json: &Json) -> Vec<String> {
    json["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest")
        .map(|d| {
            d["fieldViolations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn create_answers_201_with_location_etag_and_the_full_json_shape() {
    let app = TestApp::spawn().await;
    for http2 in [false, true] {
        let email = format!("ada.{http2}@example.com");
        let body = json!({
            "given_name": "Ada",
            "familyName": "Lovelace",
            "email": email,
            "address": {"lines": ["1 Main St"], "countryCode": "gb"},
            "labels": {"tier": "gold"},
            "status": "PROSPECTIVE"
        })
        .to_string();

        let (status, headers, created) =
            call(&app, http2, Method::POST, "/v1/customers", Some(&body), &[]).await;

        assert_eq!(status, StatusCode::CREATED, "{created}");
        let name = created["name"].as_str().unwrap();
        assert_eq!(headers["location"], format!("/v1/{name}"));
        assert_eq!(headers["etag"], created["etag"].as_str().unwrap());
        assert_eq!(created["givenName"], "Ada");
        assert_eq!(created["status"], "PROSPECTIVE");
        assert_eq!(created["address"]["countryCode"], "GB");
        assert_eq!(created["address"]["region"], "");
        assert_eq!(created["phone"], "");
        // Unset messages are left out, never `null` (the published schema allows no null).
        for unset in ["deleteTime", "businessInfo", "expireTime"] {
            assert!(created.get(unset).is_none(), "{unset}: {created}");
        }
        assert!(created["createTime"].as_str().unwrap().ends_with('Z'));
        let mut keys: Vec<&str> = created
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "address",
                "businessId",
                "company",
                "createTime",
                "email",
                "etag",
                "externalIds",
                "familyName",
                "givenName",
                "labels",
                "mergedInto",
                "name",
                "phone",
                "status",
                "uid",
                "updateTime"
            ]
        );

        let (status, headers, fetched) = get(&app, &format!("/v1/{name}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(fetched, created);
        assert_eq!(headers["content-type"], "application/json");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_create_is_400_with_the_same_violations_as_grpc() {
    let app = TestApp::spawn().await;
    let body =
        json!({"givenName": "", "familyName": "X", "email": "nope", "phone": "12"}).to_string();

    let (status, _, error) =
        call(&app, false, Method::POST, "/v1/customers", Some(&body), &[]).await;

    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"]["code"], 400);
    assert_eq!(error["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(error_reason(&error), "INVALID_FIELDS");
    assert_eq!(
        violations(&error),
        ["customer.given_name", "customer.email", "customer.phone"]
    );
    assert_eq!(app.count("customers", "").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_json_fields_wrong_types_and_bad_json_are_400() {
    let app = TestApp::spawn().await;
    for body in [
        r#"{"givenName":"A","familyName":"B","email":"a@b.co","shoeSize":44}"#,
        r#"{"givenName":7,"familyName":"B","email":"a@b.co"}"#,
        r#"{"givenName":"A","#,
        r#"{"status":"SOMETIMES","givenName":"A","familyName":"B","email":"a@b.co"}"#,
    ] {
        let (status, _, error) =
            call(&app, false, Method::POST, "/v1/customers", Some(body), &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
        assert_eq!(error["error"]["status"], "INVALID_ARGUMENT");
    }
    assert_eq!(app.count("customers", "").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn non_json_bodies_are_415_and_oversized_bodies_413() {
    let app = TestApp::spawn_with(|s| s.max_rest_body_bytes = 1024).await;
    let (status, _, error) = call(
        &app,
        false,
        Method::POST,
        "/v1/customers",
        Some("given_name=A"),
        &[("content-type", "application/x-www-form-urlencoded")],
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{error}");

    let big =
        json!({"givenName": "x".repeat(2000), "familyName": "B", "email": "a@b.co"}).to_string();
    let (status, _, error) =
        call(&app, false, Method::POST, "/v1/customers", Some(&big), &[]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn get_errors_map_to_http_statuses_with_details() {
    let app = TestApp::spawn().await;
    let missing = format!("customers/{}", uuid::Uuid::now_v7());
    let (status, _, error) = get(&app, &format!("/v1/{missing}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error["error"]["status"], "NOT_FOUND");
    let resource = error["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.ResourceInfo")
        .unwrap();
    assert_eq!(resource["resourceName"], missing.as_str());

    let (status, _, error) = get(&app, "/v1/customers/not-a-uuid").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(violations(&error), ["name"]);

    let (status, _, _) = get(&app, "/v1/nothing/here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, headers, _) =
        call(&app, false, Method::PUT, "/v1/customers", Some("{}"), &[]).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "GET, POST");

    // A path ending in `:undelete` is the undelete route's only: not also a customer named
    // `{id}:undelete` (GET, PATCH, PUT and DELETE do not work there).
    let undelete = format!("/v1/customers/{}:undelete", uuid::Uuid::new_v4());
    let (status, headers, error) = get(&app, &undelete).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{error}");
    assert_eq!(headers["allow"], "POST");
    for (path, allow) in [
        (undelete.as_str(), "POST, OPTIONS"),
        ("/v1/customers", "GET, POST, OPTIONS"),
        ("/v1/businesses%2FGB-1", "GET, OPTIONS"),
    ] {
        let (status, headers, body) = call(&app, false, Method::OPTIONS, path, None, &[]).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{path}");
        assert_eq!(headers["allow"], allow, "{path}");
        assert_eq!(body, Json::Null, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_email_is_409() {
    let app = TestApp::spawn().await;
    create(&app, "A", "same@example.com").await;
    let body =
        json!({"givenName": "B", "familyName": "C", "email": "SAME@example.com"}).to_string();
    let (status, _, error) =
        call(&app, true, Method::POST, "/v1/customers", Some(&body), &[]).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error["error"]["status"], "ALREADY_EXISTS");
    assert_eq!(error_reason(&error), "EMAIL_ALREADY_EXISTS");
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotency_key_replays_the_first_create() {
    let app = TestApp::spawn().await;
    let key = uuid::Uuid::new_v4().to_string();
    let body =
        json!({"givenName": "A", "familyName": "B", "email": "once@example.com"}).to_string();
    let headers = [("idempotency-key", key.as_str())];

    let (first_status, _, first) = call(
        &app,
        false,
        Method::POST,
        "/v1/customers",
        Some(&body),
        &headers,
    )
    .await;
    let (second_status, _, second) = call(
        &app,
        false,
        Method::POST,
        "/v1/customers",
        Some(&body),
        &headers,
    )
    .await;

    assert_eq!(first_status, StatusCode::CREATED);
    assert_eq!(second_status, StatusCode::CREATED);
    assert_eq!(first, second);
    assert_eq!(app.count("customers", "").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn patch_derives_the_mask_from_the_body_and_if_match_guards_it() {
    let app = TestApp::spawn().await;
    let created = create(&app, "Ada", "ada@example.com").await;
    let path = format!("/v1/{}", created["name"].as_str().unwrap());
    let etag = created["etag"].as_str().unwrap().to_owned();

    // Only `phone` and `address.locality` are sent: nothing else may change.
    let body =
        json!({"phone": "+14155550123", "address": {"locality": "London", "countryCode": "GB"}})
            .to_string();
    let (status, headers, updated) = call(
        &app,
        false,
        Method::PATCH,
        &path,
        Some(&body),
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["phone"], "+14155550123");
    assert_eq!(updated["address"]["locality"], "London");
    assert_eq!(updated["givenName"], "Ada");
    assert_eq!(updated["email"], "ada@example.com");
    assert_ne!(headers["etag"], etag.as_str());

    // The old etag is now stale: 412.
    let body = json!({"givenName": "Late"}).to_string();
    let (status, _, error) = call(
        &app,
        false,
        Method::PATCH,
        &path,
        Some(&body),
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{error}");
    assert_eq!(error_reason(&error), "ETAG_MISMATCH");

    // The same staleness in the body (no If-Match) answers the same: 412, status ABORTED.
    let body = json!({"givenName": "Late", "etag": etag}).to_string();
    let (status, _, error) = call(&app, false, Method::PATCH, &path, Some(&body), &[]).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(error["error"]["status"], "ABORTED");

    // A resource read back and sent whole: output-only fields are not part of the derived mask.
    let (_, headers, current) = get(&app, &path).await;
    let mut edited = current.clone();
    edited["givenName"] = json!("Edited");
    let (status, _, updated) = call(
        &app,
        false,
        Method::PATCH,
        &path,
        Some(&edited.to_string()),
        &[("if-match", headers["etag"].to_str().unwrap())],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["givenName"], "Edited");

    // An explicit updateMask wins over the derived one.
    let body = json!({"givenName": "Masked", "familyName": "Ignored"}).to_string();
    let (status, _, updated) = call(
        &app,
        false,
        Method::PATCH,
        &format!("{path}?updateMask=givenName"),
        Some(&body),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["givenName"], "Masked");
    assert_eq!(updated["familyName"], "Rest");
}

#[tokio::test(flavor = "multi_thread")]
async fn put_replaces_the_whole_customer() {
    let app = TestApp::spawn().await;
    let body = json!({"givenName": "Ada", "familyName": "L", "email": "put@example.com", "phone": "+14155550123",
                      "labels": {"a": "1"}})
    .to_string();
    let (_, _, created) = call(&app, false, Method::POST, "/v1/customers", Some(&body), &[]).await;
    let path = format!("/v1/{}", created["name"].as_str().unwrap());

    let replacement =
        json!({"givenName": "Grace", "familyName": "Hopper", "email": "put@example.com"})
            .to_string();
    let (status, _, replaced) = call(&app, true, Method::PUT, &path, Some(&replacement), &[]).await;

    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["givenName"], "Grace");
    assert_eq!(replaced["phone"], "");
    assert_eq!(replaced["labels"], json!({}));
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_undelete_and_show_deleted() {
    let app = TestApp::spawn().await;
    let created = create(&app, "Ada", "del@example.com").await;
    let name = created["name"].as_str().unwrap().to_owned();
    let path = format!("/v1/{name}");

    let (status, _, error) = call(
        &app,
        false,
        Method::DELETE,
        &path,
        None,
        &[("if-match", "W/\"99\"")],
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{error}");

    let etag = created["etag"].as_str().unwrap();
    let (status, headers, deleted) = call(
        &app,
        false,
        Method::DELETE,
        &path,
        None,
        &[("if-match", etag)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert!(deleted["deleteTime"].is_string());

    let (_, _, live) = get(&app, "/v1/customers").await;
    assert_eq!(live["customers"], json!([]));
    let (_, _, all) = get(&app, "/v1/customers?showDeleted=true").await;
    assert_eq!(all["customers"][0]["name"], name.as_str());

    let (status, _, error) = call(&app, false, Method::DELETE, &path, None, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"]["status"], "FAILED_PRECONDITION");

    let undelete = format!("{path}:undelete");
    let (status, _, restored) = call(
        &app,
        false,
        Method::POST,
        &undelete,
        Some("{}"),
        &[("if-match", headers["etag"].to_str().unwrap())],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{restored}");
    assert!(restored.get("deleteTime").is_none(), "{restored}");

    let (status, _, error) = call(&app, false, Method::POST, &undelete, Some("{}"), &[]).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_reason(&error), "CUSTOMER_NOT_DELETED");
}

#[tokio::test(flavor = "multi_thread")]
async fn list_filters_orders_and_pages_through_next_page_token() {
    let app = TestApp::spawn().await;
    let mut expected = Vec::new();
    for i in 0..7 {
        let customer = create(&app, &format!("N{i}"), &format!("n{i}@example.com")).await;
        expected.push(customer["name"].as_str().unwrap().to_owned());
    }

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("pageSize", "3")
            .append_pair("filter", "family_name = \"Rest\" AND given_name:\"n\"")
            .append_pair("orderBy", "create_time")
            .append_pair("pageToken", &token)
            .finish();
        let (status, _, page) = get(&app, &format!("/v1/customers?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(
            page["customers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap().to_owned()),
        );
        token = page["nextPageToken"].as_str().unwrap().to_owned();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen, expected);

    let (_, _, desc) = get(&app, "/v1/customers?orderBy=given_name%20desc&page_size=2").await;
    assert_eq!(desc["customers"][0]["givenName"], "N6");
    assert_eq!(desc["customers"].as_array().unwrap().len(), 2);

    let (status, _, error) =
        get(&app, "/v1/customers?pageSize=-1&filter=nope%3D1&colour=red").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(violations(&error), ["colour"]);
    let (status, _, error) = get(&app, "/v1/customers?pageSize=-1&filter=nope%3D1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(violations(&error), ["page_size", "filter"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_get_takes_repeated_names() {
    let app = TestApp::spawn().await;
    let a = create(&app, "A", "a@example.com").await;
    let b = create(&app, "B", "b@example.com").await;
    let (a, b) = (a["name"].as_str().unwrap(), b["name"].as_str().unwrap());

    let (status, _, batch) =
        get(&app, &format!("/v1/customers:batchGet?names={b}&names={a}")).await;

    assert_eq!(status, StatusCode::OK, "{batch}");
    let names: Vec<&str> = batch["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [b, a]);
}

#[tokio::test(flavor = "multi_thread")]
async fn request_headers_become_metadata_and_cors_covers_rest() {
    let app =
        TestApp::spawn_with(|s| s.cors_allowed_origins = vec!["https://app.example".into()]).await;
    let preflight = call(
        &app,
        false,
        Method::OPTIONS,
        "/v1/customers",
        None,
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "PATCH"),
            (
                "access-control-request-headers",
                "content-type,if-match,idempotency-key",
            ),
        ],
    )
    .await;
    assert_eq!(preflight.0, StatusCode::OK);
    assert_eq!(
        preflight.1["access-control-allow-origin"],
        "https://app.example"
    );

    let (status, headers, _) = call(
        &app,
        false,
        Method::GET,
        "/v1/customers",
        None,
        &[("origin", "https://app.example")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let exposed = headers["access-control-expose-headers"].to_str().unwrap();
    assert!(
        exposed.contains("etag") && exposed.contains("location"),
        "{exposed}"
    );
}
