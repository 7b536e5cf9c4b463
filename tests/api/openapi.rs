//! The OpenAPI document: committed, in sync with the proto, and served.

use crate::helpers::TestApp;

fn committed() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    let text = std::fs::read_to_string(path).expect("openapi/openapi.json is committed");
    serde_json::from_str(&text).expect("committed document is JSON")
}

#[test]
fn the_committed_document_matches_the_proto() {
    let generated = customer_api::server::openapi_document().unwrap();
    assert!(
        generated == committed(),
        "openapi/openapi.json is stale: run `make openapi` and commit the result"
    );
}

#[test]
fn the_document_describes_exactly_the_served_routes() {
    let document = committed();
    assert_eq!(document["openapi"], "3.1.0");
    let mut operations: Vec<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|key| ["get", "post", "put", "patch", "delete"].contains(&key.as_str()))
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    operations.sort();
    assert_eq!(
        operations,
        [
            ("DELETE", "/v1/companies/{company}"),
            ("DELETE", "/v1/customers/{customer}"),
            ("DELETE", "/v1/customers/{customer}/notes/{note}"),
            ("GET", "/"),
            ("GET", "/docs"),
            ("GET", "/healthz"),
            ("GET", "/openapi.json"),
            ("GET", "/readyz"),
            ("GET", "/v1/apiKeys"),
            ("GET", "/v1/apiKeys/{api_key}"),
            ("GET", "/v1/companies"),
            ("GET", "/v1/companies/{company}"),
            ("GET", "/v1/companies/{company}/customers"),
            ("GET", "/v1/companies/{company}/events"),
            ("GET", "/v1/companies/{company}/events:watch"),
            ("GET", "/v1/customers"),
            ("GET", "/v1/customers/{customer}"),
            ("GET", "/v1/customers/{customer}/events"),
            ("GET", "/v1/customers/{customer}/events:watch"),
            ("GET", "/v1/customers/{customer}/notes"),
            ("GET", "/v1/customers/{customer}/notes/{note}"),
            ("GET", "/v1/customers/{customer}:exportData"),
            ("GET", "/v1/customers/{customer}:findDuplicates"),
            ("GET", "/v1/customers:batchGet"),
            ("GET", "/v1/customers:export"),
            ("GET", "/v1/customers:lookup"),
            ("GET", "/v1/operations"),
            ("GET", "/v1/operations/{operation}"),
            ("GET", "/v1/{name}"),
            ("PATCH", "/v1/companies/{company}"),
            ("PATCH", "/v1/customers/{customer}"),
            ("PATCH", "/v1/customers/{customer}/notes/{note}"),
            ("POST", "/v1/apiKeys"),
            ("POST", "/v1/apiKeys/{api_key}:revoke"),
            ("POST", "/v1/apiKeys/{api_key}:rotate"),
            ("POST", "/v1/companies"),
            ("POST", "/v1/companies/{company}:undelete"),
            ("POST", "/v1/customers"),
            ("POST", "/v1/customers/{customer}/merges/{merge}:unmerge"),
            ("POST", "/v1/customers/{customer}/notes"),
            ("POST", "/v1/customers/{customer}:erase"),
            ("POST", "/v1/customers/{customer}:merge"),
            ("POST", "/v1/customers/{customer}:undelete"),
            ("POST", "/v1/customers/{customer}:unmerge"),
            ("POST", "/v1/customers:findDuplicates"),
            ("POST", "/v1/customers:import"),
            ("POST", "/v1/customers:upsert"),
            ("POST", "/v1/operations/{operation}:cancel"),
            ("PUT", "/v1/companies/{company}"),
            ("PUT", "/v1/customers/{customer}"),
            ("PUT", "/v1/customers/{customer}/notes/{note}"),
        ]
        .map(|(m, p)| (m.to_owned(), p.to_owned()))
    );
    let customer = &document["components"]["schemas"]["customer.v1.Customer"];
    assert_eq!(customer["properties"]["createTime"]["readOnly"], true);
    let input = &document["components"]["schemas"]["customer.v1.CustomerInput"];
    let required: Vec<&str> = input["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required, ["givenName", "familyName", "email"]);
    let schemas = &document["components"]["schemas"];
    assert_eq!(
        schemas["customer.v1.CompanyInput"]["required"],
        serde_json::json!(["displayName"])
    );
    assert_eq!(
        schemas["customer.v1.NoteInput"]["required"],
        serde_json::json!(["text"])
    );
    assert_eq!(
        schemas["customer.v1.Note"]["properties"]["author"]["readOnly"],
        true
    );
    // Every gateway operation needs the scope of its RPC; the open routes need nothing.
    assert_eq!(
        document["security"],
        serde_json::json!([{"bearerAuth": []}, {"apiKey": []}])
    );
    for (path, item) in document["paths"].as_object().unwrap() {
        for operation in item.as_object().unwrap().values() {
            let expected = match operation["x-grpc-method"].as_str() {
                Some(method) => {
                    let scope = customer_api::auth::scopes::required(method).unwrap();
                    serde_json::json!([{"bearerAuth": [scope]}, {"apiKey": [scope]}])
                }
                None => serde_json::json!([]),
            };
            assert_eq!(operation["security"], expected, "{path}");
        }
    }
    assert_eq!(
        document["paths"]["/v1/apiKeys"]["post"]["security"],
        serde_json::json!([{"bearerAuth": ["customers.admin"]}, {"apiKey": ["customers.admin"]}])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_serves_the_committed_document() {
    use http_body_util::{BodyExt, Full};
    let app = TestApp::spawn().await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let response = client
        .request(
            http::Request::get(format!("http://{}/openapi.json", app.addr))
                .body(Full::new(bytes::Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let served: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(served, committed());
}

/// The committed (and served) document is valid OpenAPI 3.1, as openapi-spec-validator
/// (`make tools`) reads the specification.
#[tokio::test(flavor = "multi_thread")]
async fn the_document_is_valid_openapi_3_1() {
    let validator = crate::helpers::tool("target/tools/venv/bin/openapi-spec-validator");
    let document = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    let output = tokio::process::Command::new(validator)
        .arg(document)
        .env_clear()
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.trim(), format!("{document}: OK"));
}

/// What FindDuplicateCustomers and EraseCustomer accept, as the document says it: exactly one
/// of `name` and a probe, a probe of partial values, no `customer` beside a `name` in the
/// path, and no UNSPECIFIED erasure reason.
#[test]
fn the_document_says_what_find_duplicates_and_erase_accept() {
    let document = committed();
    let body = &document["paths"]["/v1/customers:findDuplicates"]["post"]["requestBody"]["content"]
        ["application/json"]["schema"];
    assert_eq!(
        body["oneOf"],
        serde_json::json!([
            {"required": ["name"], "properties": {"name": {"type": "string", "minLength": 1}}},
            {"required": ["customer"], "properties": {"customer": {"type": "object"}}},
        ])
    );
    assert_eq!(
        body["properties"]["customer"]["anyOf"][0]["$ref"],
        "#/components/schemas/customer.v1.DuplicateProbe"
    );
    let probe = &document["components"]["schemas"]["customer.v1.DuplicateProbe"];
    assert!(probe.get("required").is_none(), "{probe}");
    let compared: Vec<&str> = probe["anyOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|branch| branch["required"][0].as_str().unwrap())
        .collect();
    assert_eq!(
        compared,
        ["givenName", "familyName", "email", "phone", "externalIds"]
    );
    assert_eq!(
        probe["properties"]["email"]["anyOf"][0],
        serde_json::json!({"type": ["string", "null"], "maxLength": 0})
    );
    let by_name = document["paths"]["/v1/customers/{customer}:findDuplicates"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let names: Vec<&str> = by_name
        .iter()
        .map(|parameter| parameter["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["customer", "pageSize", "pageToken"]);

    let erase = &document["paths"]["/v1/customers/{customer}:erase"]["post"]["requestBody"]["content"]
        ["application/json"]["schema"];
    assert_eq!(erase["required"], serde_json::json!(["reason"]));
    let reasons = erase["properties"]["reason"]["enum"].as_array().unwrap();
    assert_eq!(reasons.len(), 5);
    assert!(!reasons.contains(&serde_json::json!("ERASURE_REASON_UNSPECIFIED")));
}
