//! The served `/openapi.json` is a contract the server keeps: a scenario over REST (create,
//! get, list every page, patch, replace, delete, undelete, notes, companies, events, the
//! watch stream and the errors) checks every response against the document with a JSON
//! Schema validator, as a generated client would parse it, and every request it sends too:
//! path, query and body. Requests the service must refuse are sent as well, and the document
//! must refuse them first (its constraints say what the service checks).

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde_json::{Value as Json, json};

use crate::helpers::TestApp;

/// A REST client that holds the server to its served document.
struct Contract {
    app: TestApp,
    document: Json,
    client: Client<HttpConnector, Full<Bytes>>,
    /// Responses validated so far.
    checked: usize,
}

/// Whether a request should satisfy the document.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Request {
    /// Schema-valid: the document describes it.
    Valid,
    /// Schema-invalid: the document must reject it before the service does.
    Invalid,
}

impl Contract {
    async fn new() -> Self {
        let app = TestApp::spawn().await;
        let client = Client::builder(TokioExecutor::new()).build_http();
        let request = http::Request::get(format!("http://{}/openapi.json", app.addr))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let document = serde_json::from_slice(&bytes).unwrap();
        Self {
            app,
            document,
            client,
            checked: 0,
        }
    }

    /// The path template, method and operation of `id`.
    fn operation(&self, id: &str) -> (String, Method, Json) {
        for (path, item) in self.document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                if operation["operationId"] == id {
                    let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                    return (path.clone(), method, operation.clone());
                }
            }
        }
        panic!("no operation {id} in the document");
    }

    /// The errors of `instance` against `schema` (resolved within the document).
    fn errors(&self, schema: &Json, instance: &Json) -> Vec<String> {
        let mut root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.document["components"],
        });
        for (key, value) in schema.as_object().unwrap() {
            root[key] = value.clone();
        }
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("invalid schema {schema}: {e}"));
        validator
            .iter_errors(instance)
            .map(|error| format!("{error} (at `{}`)", error.instance_path()))
            .collect()
    }

    /// The request's own errors against the operation: path and query parameters, body.
    fn request_errors(
        &self,
        template: &str,
        operation: &Json,
        uri: &str,
        body: Option<&Json>,
    ) -> Vec<String> {
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        let parameters = operation["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let schema_of = |name: &str, place: &str| {
            parameters
                .iter()
                .find(|p| p["name"] == name && p["in"] == place)
                .map(|p| p["schema"].clone())
                .unwrap_or_else(|| panic!("{template}: no {place} parameter `{name}`"))
        };
        let mut errors = Vec::new();
        let values =
            path_values(template, path).unwrap_or_else(|| panic!("{path} is not {template}"));
        for (name, value) in values {
            errors.extend(self.errors(&schema_of(&name, "path"), &json!(value)));
        }
        let mut query_values: Vec<(String, Vec<String>)> = Vec::new();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            match query_values.iter_mut().find(|(n, _)| *n == name) {
                Some((_, values)) => values.push(value.into_owned()),
                None => query_values.push((name.into_owned(), vec![value.into_owned()])),
            }
        }
        for (name, values) in query_values {
            let schema = schema_of(&name, "query");
            let typed = |value: &str, schema: &Json| match schema["type"].as_str() {
                Some("integer") => value.parse::<i64>().map_or(json!(value), |n| json!(n)),
                Some("boolean") => value.parse::<bool>().map_or(json!(value), |b| json!(b)),
                _ => json!(value),
            };
            let instance = if schema["type"] == "array" {
                Json::Array(values.iter().map(|v| typed(v, &schema["items"])).collect())
            } else {
                assert_eq!(values.len(), 1, "{name} repeated");
                typed(&values[0], &schema)
            };
            errors.extend(self.errors(&schema, &instance));
        }
        if let Some(body) = body {
            let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
            assert!(schema.is_object(), "{template} takes no body");
            errors.extend(self.errors(schema, body));
        }
        errors
    }

    /// Sends a request to operation `id`, checks it against the document as `kind` says,
    /// then checks the response.
    async fn call(
        &mut self,
        id: &str,
        kind: Request,
        uri: &str,
        body: Option<Json>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Json) {
        let (template, method, operation) = self.operation(id);
        let request_errors = self.request_errors(&template, &operation, uri, body.as_ref());
        match kind {
            Request::Valid => assert!(request_errors.is_empty(), "{id} {uri}: {request_errors:#?}"),
            Request::Invalid => assert!(
                !request_errors.is_empty(),
                "{id} {uri} {body:?} is schema-valid"
            ),
        }
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{uri}", self.app.addr));
        if !headers.iter().any(|(name, _)| *name == "authorization") {
            request = request.header("authorization", self.app.bearer());
        }
        if body.is_some() && !headers.iter().any(|(name, _)| *name == "content-type") {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers.iter().filter(|(_, value)| !value.is_empty()) {
            request = request.header(*name, *value);
        }
        let bytes = body.map_or_else(Bytes::new, |body| Bytes::from(body.to_string()));
        let response = self
            .client
            .request(request.body(Full::new(bytes)).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let json = crate::rest::json_body(body).await;
        self.check_response(id, &operation, parts.status, &parts.headers, &json);
        (parts.status, parts.headers, json)
    }

    /// The response's status is documented and its body follows the documented schema.
    fn check_response(
        &mut self,
        id: &str,
        operation: &Json,
        status: StatusCode,
        headers: &HeaderMap,
        body: &Json,
    ) {
        let responses = &operation["responses"];
        let mut response = responses
            .get(status.as_str())
            .or_else(|| responses.get("default"))
            .unwrap_or_else(|| panic!("{id}: {status} is not documented"))
            .clone();
        if let Some(reference) = response["$ref"].as_str() {
            let name = reference.trim_start_matches("#/components/responses/");
            response = self.document["components"]["responses"][name].clone();
        }
        let content_type = headers[http::header::CONTENT_TYPE].to_str().unwrap();
        let schema = &response["content"][content_type]["schema"];
        assert!(
            schema.is_object(),
            "{id}: {status} {content_type} is not documented"
        );
        let errors = self.errors(schema, body);
        assert!(errors.is_empty(), "{id} {status}: {errors:#?}\n{body:#}");
        self.checked += 1;
    }

    /// Reads `n` lines of a watch stream, each checked against the documented schema.
    async fn watch(&mut self, id: &str, uri: &str, n: usize) -> Vec<Json> {
        let (template, method, operation) = self.operation(id);
        assert_eq!(method, Method::GET);
        let errors = self.request_errors(&template, &operation, uri, None);
        assert!(errors.is_empty(), "{errors:#?}");
        let request = http::Request::get(format!("http://{}{uri}", self.app.addr))
            .header("authorization", self.app.bearer())
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = self.client.request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        let schema = operation["responses"]["200"]["content"][&content_type]["schema"].clone();
        let mut body = response.into_body();
        let mut text = String::new();
        while text.matches('\n').count() < n {
            let frame = body.frame().await.expect("the stream ended").unwrap();
            if let Ok(data) = frame.into_data() {
                text.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
        let lines: Vec<Json> = text
            .lines()
            .take(n)
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        for line in &lines {
            let errors = self.errors(&schema, line);
            assert!(errors.is_empty(), "{id}: {errors:#?}\n{line:#}");
            self.checked += 1;
        }
        lines
    }
}

/// The values of the `{parameters}` of an OpenAPI path template in `path`.
fn path_values(template: &str, path: &str) -> Option<Vec<(String, String)>> {
    let mut values = Vec::new();
    let mut rest = path;
    let mut pieces = template.split('{').peekable();
    let first = pieces.next()?;
    rest = rest.strip_prefix(first)?;
    for piece in pieces {
        let (name, literal) = piece.split_once('}')?;
        let end = if literal.is_empty() {
            rest.len()
        } else {
            rest.find(literal)?
        };
        values.push((name.to_owned(), rest[..end].to_owned()));
        rest = rest[end..].strip_prefix(literal)?;
    }
    rest.is_empty().then_some(values)
}

fn name_id(resource: &Json) -> String {
    resource["name"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rest_response_of_a_full_scenario_follows_the_served_document() {
    use Request::{Invalid, Valid};
    let mut c = Contract::new().await;

    // Authentication first: the error body is documented too.
    let (status, _, _) = c
        .call(
            "ListCustomers",
            Valid,
            "/v1/customers",
            None,
            &[("authorization", "")],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Companies and customers: only what the `…Input` schemas ask for, then everything.
    let (status, _, acme) = c
        .call(
            "CreateCompany",
            Valid,
            "/v1/companies",
            Some(json!({"displayName": "Acme", "domain": "acme.example"})),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{acme}");
    let (_, _, other) = c
        .call(
            "CreateCompany",
            Valid,
            "/v1/companies",
            Some(json!({"displayName": "Other"})),
            &[],
        )
        .await;
    let minimal = json!({"givenName": "Ada", "familyName": "Lovelace", "email": "ada@example.com"});
    let (status, headers, ada) = c
        .call("CreateCustomer", Valid, "/v1/customers", Some(minimal), &[])
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ada}");
    assert!(
        ada.get("address").is_none() && ada.get("deleteTime").is_none(),
        "{ada}"
    );
    assert_eq!(
        headers["location"],
        format!("/v1/{}", ada["name"].as_str().unwrap())
    );
    let full = json!({
        "givenName": "Grace", "familyName": "Hopper", "email": "grace@example.com",
        "phone": "+14155550123", "status": "PROSPECTIVE", "company": acme["name"],
        "businessId": "GB-1", "labels": {"tier": "gold"},
        "address": {"lines": ["1 Main St"], "locality": "Arlington", "countryCode": "US"},
    });
    let request_id = uuid::Uuid::new_v4().to_string();
    let (status, _, grace) = c
        .call(
            "CreateCustomer",
            Valid,
            "/v1/customers",
            Some(full),
            &[("idempotency-key", &request_id)],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{grace}");
    let (_, _, alan) = c
        .call(
            "CreateCustomer",
            Valid,
            "/v1/customers",
            Some(json!({"givenName": "Alan", "familyName": "Turing", "email": "alan@example.com"})),
            &[],
        )
        .await;
    let (ada_id, grace_id, acme_id) = (name_id(&ada), name_id(&grace), name_id(&acme));

    let (status, _, got) = c
        .call(
            "GetCustomer",
            Valid,
            &format!("/v1/customers/{grace_id}"),
            None,
            &[],
        )
        .await;
    assert_eq!((status, &got), (StatusCode::OK, &grace));

    // Every page of the list.
    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let query = if token.is_empty() {
            String::new()
        } else {
            format!("&pageToken={token}")
        };
        let (status, _, page) = c
            .call(
                "ListCustomers",
                Valid,
                &format!("/v1/customers?pageSize=2&orderBy=given_name{query}"),
                None,
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        names.extend(
            page["customers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["givenName"].clone()),
        );
        token = page["nextPageToken"].as_str().unwrap().to_owned();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(names, ["Ada", "Alan", "Grace"]);
    let (_, _, company_customers) = c
        .call(
            "ListCompanyCustomers",
            Valid,
            &format!("/v1/companies/{acme_id}/customers"),
            None,
            &[],
        )
        .await;
    assert_eq!(company_customers["customers"][0]["name"], grace["name"]);
    let batch = format!(
        "/v1/customers:batchGet?names={}&names={}",
        ada["name"].as_str().unwrap(),
        alan["name"].as_str().unwrap()
    );
    let (status, _, _) = c.call("BatchGetCustomers", Valid, &batch, None, &[]).await;
    assert_eq!(status, StatusCode::OK);

    // PATCH carries only what changes; PUT the whole customer; a stale etag is 412.
    let etag = grace["etag"].as_str().unwrap();
    let (status, headers, patched) = c
        .call(
            "UpdateCustomer",
            Valid,
            &format!("/v1/customers/{grace_id}"),
            Some(json!({"phone": "+442071234567"})),
            &[("if-match", etag)],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["phone"], "+442071234567");
    let (status, _, _) = c
        .call(
            "UpdateCustomer",
            Valid,
            &format!("/v1/customers/{grace_id}"),
            Some(json!({"address": {"locality": "Washington"}})),
            &[("if-match", etag)],
        )
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let current = headers["etag"].to_str().unwrap().to_owned();
    let (status, _, patched) = c
        .call(
            "UpdateCustomer",
            Valid,
            &format!("/v1/customers/{grace_id}"),
            Some(json!({"address": {"locality": "Washington"}})),
            &[("if-match", &current)],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["address"]["countryCode"], "US");
    let (status, _, replaced) = c
        .call("ReplaceCustomer", Valid, &format!("/v1/customers/{ada_id}"), Some(json!({"givenName": "Augusta Ada", "familyName": "King", "email": "ada@example.com"})), &[])
        .await;
    assert_eq!(status, StatusCode::OK, "{replaced}");

    // Errors the document declares, with their details.
    let (status, _, error) = c
        .call(
            "CreateCustomer",
            Valid,
            "/v1/customers",
            Some(json!({"givenName": "Dup", "familyName": "Licate", "email": "ADA@example.com"})),
            &[],
        )
        .await;
    assert_eq!(
        (status, error["error"]["status"].as_str()),
        (StatusCode::CONFLICT, Some("ALREADY_EXISTS"))
    );
    let (status, _, error) = c
        .call(
            "GetCustomer",
            Valid,
            &format!("/v1/customers/{}", uuid::Uuid::new_v4()),
            None,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");
    // What the service refuses, the document refuses first.
    for (body, field) in [
        (
            json!({"givenName": "X", "familyName": "Y", "email": "no-at-sign"}),
            "customer.email",
        ),
        (
            json!({"givenName": " ", "familyName": "Y", "email": "x@example.com"}),
            "customer.given_name",
        ),
        (
            json!({"givenName": "X", "familyName": "Y", "email": "x@example.com", "phone": "555-0100"}),
            "customer.phone",
        ),
        (
            json!({"givenName": "X", "familyName": "Y", "email": "x@example.com", "labels": {"Bad Key": "v"}}),
            "customer.labels[\"Bad Key\"]",
        ),
        (
            json!({"givenName": "X", "familyName": "Y", "email": "x@example.com", "address": {"locality": "Nowhere"}}),
            "customer.address.country_code",
        ),
    ] {
        let (status, _, error) = c
            .call("CreateCustomer", Invalid, "/v1/customers", Some(body), &[])
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
        assert_eq!(crate::rest::violations(&error), [field]);
    }
    let (status, _, _) = c
        .call(
            "GetCustomer",
            Invalid,
            "/v1/customers/not-a-uuid",
            None,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = c
        .call(
            "ListCustomers",
            Invalid,
            "/v1/customers?pageSize=-1",
            None,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, error) = c
        .call(
            "CreateCustomer",
            Valid,
            "/v1/customers",
            Some(json!({"givenName": "T", "familyName": "P", "email": "t@example.com"})),
            &[("content-type", "text/plain")],
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{error}");

    // Notes: create, list, get, patch, delete (an empty object).
    let notes = format!("/v1/customers/{ada_id}/notes");
    let (status, _, note) = c
        .call(
            "CreateNote",
            Valid,
            &notes,
            Some(json!({"text": "Called about the invoice."})),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{note}");
    let note_path = format!("/v1/{}", note["name"].as_str().unwrap());
    let (_, _, listed) = c.call("ListNotes", Valid, &notes, None, &[]).await;
    assert_eq!(listed["notes"].as_array().unwrap().len(), 1);
    c.call("GetNote", Valid, &note_path, None, &[]).await;
    let (status, _, _) = c
        .call(
            "UpdateNote",
            Valid,
            &note_path,
            Some(json!({"text": "Paid."})),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, deleted) = c.call("DeleteNote", Valid, &note_path, None, &[]).await;
    assert_eq!((status, deleted), (StatusCode::OK, json!({})));

    // Soft delete and undelete: the deleted customer has its delete and expire times.
    let (status, _, deleted) = c
        .call(
            "DeleteCustomer",
            Valid,
            &format!("/v1/customers/{ada_id}"),
            None,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(deleted["deleteTime"].is_string(), "{deleted}");
    let (status, _, restored) = c
        .call(
            "UndeleteCustomer",
            Valid,
            &format!("/v1/customers/{ada_id}:undelete"),
            Some(json!({})),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(restored.get("deleteTime").is_none(), "{restored}");

    // Companies.
    c.call(
        "ListCompanies",
        Valid,
        "/v1/companies?pageSize=1000",
        None,
        &[],
    )
    .await;
    c.call(
        "GetCompany",
        Valid,
        &format!("/v1/companies/{acme_id}"),
        None,
        &[],
    )
    .await;
    let (status, _, _) = c
        .call(
            "UpdateCompany",
            Valid,
            &format!("/v1/companies/{acme_id}"),
            Some(json!({"labels": {"size": "large"}})),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = c
        .call(
            "DeleteCompany",
            Valid,
            &format!("/v1/companies/{}", name_id(&other)),
            None,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = c
        .call(
            "UndeleteCompany",
            Valid,
            &format!("/v1/companies/{}:undelete", name_id(&other)),
            Some(json!({})),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Events: every kind so far, as a page and as the watch stream.
    let (_, _, all) = c
        .call(
            "ListCustomerEvents",
            Valid,
            "/v1/customers/-/events?pageSize=1000",
            None,
            &[],
        )
        .await;
    let events = all["events"].as_array().unwrap().len();
    assert!(all["nextPageToken"] == "", "{all}");
    c.call(
        "ListCustomerEvents",
        Valid,
        &format!("/v1/customers/{grace_id}/events"),
        None,
        &[],
    )
    .await;
    c.call(
        "ListCompanyEvents",
        Valid,
        &format!("/v1/companies/{acme_id}/events"),
        None,
        &[],
    )
    .await;
    let streamed = c
        .watch(
            "WatchCustomerEvents",
            "/v1/customers/-/events:watch",
            events,
        )
        .await;
    assert_eq!(streamed.len(), events);
    let updated = streamed
        .iter()
        .find(|e| e.get("updated").is_some())
        .unwrap();
    assert!(updated["updated"]["previous"].is_object(), "{updated}");

    // The check has teeth: the shapes the issue found (an unset message as `null`, a field
    // missing) fail it.
    let customer = json!({"$ref": "#/components/schemas/customer.v1.Customer"});
    let mut with_null = restored.clone();
    with_null["deleteTime"] = Json::Null;
    assert_eq!(c.errors(&customer, &with_null).len(), 1);
    let mut without_email = restored.clone();
    without_email.as_object_mut().unwrap().remove("email");
    assert_eq!(c.errors(&customer, &without_email).len(), 1);

    // Every response above was checked: one per call, one per streamed event.
    let calls = 40;
    assert_eq!(c.checked, calls + events);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rest_response_of_the_api_key_routes_follows_the_served_document() {
    use Request::{Invalid, Valid};
    let mut c = Contract::new().await;

    let (status, _, created) = c
        .call(
            "CreateApiKey",
            Valid,
            "/v1/apiKeys",
            Some(json!({
                "displayName": "contract",
                "scopes": ["customers.read"],
                "expireTime": "2999-01-01T00:00:00Z",
            })),
            &[("idempotency-key", "5b0c3c8e-8c37-4f0e-9f51-0d6b1a2c3d4e")],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let name = created["name"].as_str().unwrap().to_owned();
    let id = name_id(&created);
    let (status, _, _) = c
        .call("GetApiKey", Valid, &format!("/v1/apiKeys/{id}"), None, &[])
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, rotated) = c
        .call(
            "RotateApiKey",
            Valid,
            &format!("/v1/apiKeys/{id}:rotate"),
            Some(json!({"gracePeriod": "30s"})),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let (status, _, revoked) = c
        .call(
            "RevokeApiKey",
            Valid,
            &format!("/v1/apiKeys/{id}:revoke"),
            Some(json!({})),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    let (status, _, listed) = c
        .call(
            "ListApiKeys",
            Valid,
            "/v1/apiKeys?showRevoked=true&pageSize=10",
            None,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["apiKeys"][0]["name"], name.as_str());

    // Refused requests and errors are documented too.
    let (status, _, _) = c
        .call(
            "CreateApiKey",
            Invalid,
            "/v1/apiKeys",
            Some(json!({"displayName": 7, "scopes": "customers.read"})),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = c
        .call(
            "RotateApiKey",
            Valid,
            &format!("/v1/apiKeys/{id}:rotate"),
            Some(json!({})),
            &[],
        )
        .await;
    // A revoked key cannot be rotated: FAILED_PRECONDITION, 400.
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(c.checked, 7);
}
