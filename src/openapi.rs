//! The OpenAPI document `GET /openapi.json` serves (and `openapi/openapi.json` commits).
//!
//! The gateway describes the REST routes from the proto: paths, parameters, and a schema per
//! message in three variants (responses, create/replace `…Input`, PATCH `…Patch`; see
//! `gateway::openapi`). This module adds what only the service knows, each from the place
//! that enforces it, so the document cannot drift from the behaviour:
//!
//! - [`constraints`]: the limits the domain validates request values against, as JSON Schema
//!   keywords built from the domain's own constants (`MAX_NAME_CHARS`, `UUID_PATTERN`,
//!   `MAX_PAGE_SIZE`, …) — one table;
//! - authentication: the bearer-JWT and `x-api-key` schemes, required globally, with each
//!   operation's scope from the scope table (`auth::scopes`); open routes say `security: []`;
//! - `servers`, and the plain HTTP routes served beside the gateway (health, readiness, this
//!   document, the landing page and the API console).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::auth::scopes;
use crate::core::list::MAX_PAGE_SIZE;
use crate::domain::{company, country, customer, erasure, names, note};
use crate::service::{MAX_BATCH_GET, api_keys};

/// Title, version, description and constraints of the document.
pub fn info() -> gateway::openapi::Info {
    gateway::openapi::Info {
        title: "customer-api".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: Some(
            "customer.v1.CustomerService and customer.v1.ApiKeyService as REST/JSON, \
             transcoded from the gRPC API by their google.api.http annotations. Errors follow \
             AIP-193.\n\n\
             JSON: fields that can be unset (messages such as `address` or `deleteTime`) are \
             left out of responses when unset, never `null`; every other field is always \
             present. Authenticate with `authorization: Bearer <JWT>` or `x-api-key: <key>`; \
             each operation names the scope it needs."
                .into(),
        ),
        constraints: constraints(),
    }
}

/// Text without control characters (what `bounded_text` accepts, checked before trimming).
const NO_CONTROL: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";
/// The same with at least one character that is not white space (a required text).
const NOT_BLANK: &str = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$";
/// A note: line breaks and tabs allowed, and something that is not white space.
const NOTE_TEXT: &str = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$";
/// E.164: `+`, a non-zero digit, at most 15 digits (or empty: no phone).
const PHONE: &str = r"^(\+[1-9][0-9]{1,14})?$";
/// What Rust's `str::trim` removes (Unicode `White_Space`), as a character class.
const WHITE_SPACE: &str = r"[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]";

/// The domain's limits on request values, by proto field, as JSON Schema keywords.
pub fn constraints() -> gateway::openapi::Constraints {
    let uuid = names::UUID_PATTERN
        .trim_start_matches('^')
        .trim_end_matches('$');
    let optional_name = |collection: &str| format!("^({collection}/{uuid})?$");
    let text = |max: usize| json!({"maxLength": max, "pattern": NO_CONTROL});
    let required_text = |max: usize| json!({"maxLength": max, "pattern": NOT_BLANK});
    let business_id = json!({
        "pattern": format!("^[A-Za-z0-9._/-]{{0,{}}}$", customer::MAX_BUSINESS_ID_CHARS),
    });
    let labels = json!({
        "maxProperties": customer::MAX_LABELS,
        "propertyNames": {"pattern": customer::LABEL_KEY_PATTERN},
        "additionalProperties": {
            "maxLength": customer::MAX_LABEL_VALUE_CHARS,
            "pattern": NO_CONTROL,
        },
    });
    let label = format!(
        "[A-Za-z0-9]([A-Za-z0-9-]{{0,{}}}[A-Za-z0-9])?",
        company::MAX_DOMAIN_LABEL_CHARS - 2
    );
    let domain = json!({
        "maxLength": company::MAX_DOMAIN_CHARS,
        "pattern": format!(r"^(({label}\.)+[A-Za-z]([A-Za-z0-9-]{{0,{}}}[A-Za-z0-9])?)?$",
            company::MAX_DOMAIN_LABEL_CHARS - 2),
    });
    // AIP-158: a larger page size is coerced to the maximum, not refused.
    let page_size = json!({
        "minimum": 0,
        "description": format!("At most {MAX_PAGE_SIZE} items are returned; a larger value \
            counts as {MAX_PAGE_SIZE}. 0 (or absent) picks the default."),
    });
    let source = json!({"pattern": customer::EXTERNAL_SOURCE_PATTERN});
    let external_id = json!({
        "minLength": 1,
        "maxLength": customer::MAX_EXTERNAL_ID_CHARS,
        "pattern": NO_CONTROL,
    });
    let request_id = json!({"pattern": format!("^({uuid})?$")});

    let mut fields = BTreeMap::new();
    let mut add = |field: &str, keywords: Value| {
        fields.insert(format!("customer.v1.{field}"), keywords);
    };
    add(
        "Customer.given_name",
        required_text(customer::MAX_NAME_CHARS),
    );
    add(
        "Customer.family_name",
        required_text(customer::MAX_NAME_CHARS),
    );
    add(
        "Customer.email",
        json!({"format": "email", "maxLength": customer::MAX_EMAIL_CHARS, "pattern": r"^\S+@\S+\.\S+$"}),
    );
    add("Customer.phone", json!({"pattern": PHONE}));
    add(
        "Customer.company",
        json!({"pattern": optional_name("companies")}),
    );
    add("Customer.business_id", business_id.clone());
    add("Customer.labels", labels.clone());
    add(
        "Customer.external_ids",
        json!({
            "maxProperties": customer::MAX_EXTERNAL_IDS,
            "propertyNames": {"pattern": customer::EXTERNAL_SOURCE_PATTERN},
            "additionalProperties": external_id.clone(),
        }),
    );
    add(
        "PostalAddress.lines",
        json!({
            "maxItems": customer::MAX_ADDRESS_LINES,
            "items": {"maxLength": customer::MAX_ADDRESS_LINE_CHARS, "pattern": NOT_BLANK},
        }),
    );
    for part in ["locality", "region", "postal_code"] {
        add(
            &format!("PostalAddress.{part}"),
            text(customer::MAX_ADDRESS_PART_CHARS),
        );
    }
    add(
        "PostalAddress.country_code",
        json!({"pattern": country_code_pattern()}),
    );
    add(
        "Company.display_name",
        required_text(company::MAX_DISPLAY_NAME_CHARS),
    );
    add("Company.domain", domain);
    add("Company.business_id", business_id);
    add("Company.labels", labels);
    add(
        "Note.text",
        json!({"maxLength": note::MAX_TEXT_CHARS, "pattern": NOTE_TEXT}),
    );
    add(
        "ListCustomersRequest.parent",
        json!({"pattern": optional_name("companies")}),
    );
    add(
        "BatchGetCustomersRequest.names",
        json!({
            "minItems": 1,
            "maxItems": MAX_BATCH_GET,
            "items": {"pattern": format!("^customers/{uuid}$")},
            // A name listed twice is refused (it would only repeat a customer).
            "uniqueItems": true,
        }),
    );
    add(
        "MergeCustomersRequest.sources",
        json!({
            "minItems": 1,
            "maxItems": crate::domain::merge::MAX_SOURCES,
            "items": {"pattern": format!("^customers/{uuid}$")},
            // A source named twice is refused.
            "uniqueItems": true,
        }),
    );
    add(
        "FieldPolicy.choices",
        json!({
            "propertyNames": {"enum": crate::domain::merge::CHOOSABLE_FIELDS},
            "additionalProperties": {"pattern": format!("^customers/{uuid}$")},
        }),
    );
    for request in ["UpsertCustomerRequest", "LookupCustomerRequest"] {
        add(&format!("{request}.source"), source.clone());
        add(&format!("{request}.external_id"), external_id.clone());
    }
    add(
        "GetBusinessInfoRequest.name",
        json!({"pattern": format!(
            "^businesses/[A-Za-z0-9._/-]{{1,{}}}$",
            customer::MAX_BUSINESS_ID_CHARS
        )}),
    );
    add(
        "ApiKey.display_name",
        required_text(api_keys::MAX_DISPLAY_NAME_CHARS),
    );
    add(
        "ApiKey.scopes",
        json!({
            "minItems": 1,
            "uniqueItems": true,
            "items": {"enum": scopes::ALL},
        }),
    );
    // A rotation's grace period: a JSON Duration from 0 to MAX_ROTATION_GRACE (7 days).
    const _: () = assert!(api_keys::MAX_ROTATION_GRACE.as_secs() == 604_800);
    add(
        "RotateApiKeyRequest.grace_period",
        json!({"pattern": r"^(0*([0-9]{1,5}|[1-5][0-9]{5}|60[0-3][0-9]{3}|604[0-7][0-9]{2})(\.[0-9]+)?|0*604800(\.0+)?)s$"}),
    );
    add(
        "EraseCustomerRequest.reference",
        json!({"pattern": format!(
            "^([A-Za-z0-9._:-]{{1,{}}})?$",
            erasure::MAX_REFERENCE_LEN
        )}),
    );
    add(
        "FindDuplicateCustomersRequest.name",
        json!({"pattern": format!("^(customers/{uuid})?$")}),
    );
    // Every request's page size and request id go through one parser each
    // (`list::page_size`, `names::parse_request_id`): every such field gets their limits.
    for (request, field) in request_fields(&["page_size", "request_id"]) {
        let keywords = if field == "page_size" {
            page_size.clone()
        } else {
            request_id.clone()
        };
        add(&format!("{request}.{field}"), keywords);
    }

    // google.longrunning's ListOperations: the same page-size rule (up to
    // MAX_OPERATIONS_PAGE), and the only filters `service::import` reads.
    const _: () = assert!(crate::service::import::MAX_OPERATIONS_PAGE == 1000);
    fields.insert(
        "google.longrunning.ListOperationsRequest.page_size".to_owned(),
        json!({
            "minimum": 0,
            "description": "At most 1000 operations are returned; a larger value counts as \
                1000. 0 (or absent) picks the default, 50.",
        }),
    );
    fields.insert(
        "google.longrunning.ListOperationsRequest.filter".to_owned(),
        json!({"pattern": r"^\s*(done\s+=\s+(true|false)\s*)?$"}),
    );

    // An operation's id is its import's request id, a UUID.
    let mut ids: BTreeMap<String, String> = [
        "customer",
        "company",
        "note",
        "api_key",
        "merge",
        "operation",
    ]
    .into_iter()
    .map(|id| (id.to_owned(), names::UUID_PATTERN.to_owned()))
    .collect();
    // The change stream also takes `customers/-`: every customer, note and company.
    for request in ["ListCustomerEventsRequest", "WatchCustomerEventsRequest"] {
        ids.insert(
            format!("customer.v1.{request}.parent:customer"),
            format!("^({uuid}|-)$"),
        );
    }
    gateway::openapi::Constraints { fields, ids }
}

/// `(request, field)` for each `customer.v1` request message with a field of one of these
/// names, the request named relative to the package.
fn request_fields(names: &[&str]) -> Vec<(String, String)> {
    let Ok(pool) = prost_reflect::DescriptorPool::decode(crate::FILE_DESCRIPTOR_SET) else {
        return Vec::new();
    };
    pool.all_messages()
        .filter_map(|message| {
            let request = message.full_name().strip_prefix("customer.v1.")?.to_owned();
            request.ends_with("Request").then_some((message, request))
        })
        .flat_map(|(message, request)| {
            names
                .iter()
                .filter(move |name| message.get_field_by_name(name).is_some())
                .map(move |name| (request.clone(), (*name).to_owned()))
        })
        .collect()
}

/// An assigned ISO 3166-1 alpha-2 code in either case, with white space around it: what the
/// service accepts (it trims and upper-cases before looking the code up).
fn country_code_pattern() -> String {
    let mut by_first: BTreeMap<char, String> = BTreeMap::new();
    for code in country::CODES {
        let mut letters = code.chars();
        if let (Some(first), Some(second)) = (letters.next(), letters.next()) {
            let seconds = by_first.entry(first).or_default();
            seconds.push(second);
            seconds.push(second.to_ascii_lowercase());
        }
    }
    let alternatives: Vec<String> = by_first
        .iter()
        .map(|(first, seconds)| format!("[{first}{}][{seconds}]", first.to_ascii_lowercase()))
        .collect();
    format!("^{WHITE_SPACE}*({}){WHITE_SPACE}*$", alternatives.join("|"))
}

/// The gateway's document completed with authentication, servers and the open routes.
pub fn document(rest: &gateway::Builder) -> Result<Value, gateway::BuildError> {
    let mut document = rest.openapi(&info())?;
    document["servers"] = json!([
        {"url": "/", "description": "The server that serves this document."},
        {"url": "http://127.0.0.1:8080", "description": "`make run` (LISTEN_ADDR)."},
    ]);
    document["components"]["securitySchemes"] = json!({
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A JWT (`authorization: Bearer <token>`) whose `scope` claim holds \
                the scope an operation names, e.g. `customers.read`; `customer-api token` \
                issues one for development.",
        },
        "apiKey": {
            "type": "apiKey",
            "in": "header",
            "name": "x-api-key",
            "description": "An API key (`POST /v1/apiKeys` with `customers.admin`, or \
                `customer-api api-key create` for the first) with the scope an operation names.",
        },
    });
    document["security"] = json!([{"bearerAuth": []}, {"apiKey": []}]);
    if let Some(tags) = document["tags"].as_array_mut() {
        tags.push(json!({
            "name": "Server",
            "description": "Probes, this document and the pages about it.",
        }));
    }
    if let Some(paths) = document["paths"].as_object_mut() {
        for item in paths.values_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for operation in item.values_mut() {
                let scope = operation["x-grpc-method"]
                    .as_str()
                    .and_then(scopes::required);
                if let Some(scope) = scope {
                    // OpenAPI 3.1 lets non-OAuth schemes list required roles: the scope.
                    operation["security"] = json!([{"bearerAuth": [scope]}, {"apiKey": [scope]}]);
                }
            }
        }
        if let Some(export) = paths.get_mut(crate::export_formats::PATH) {
            export_formats(&mut export["get"]);
        }
        paths.insert(crate::import_bodies::PATH.to_owned(), import_route());
        for (path, item) in open_routes() {
            paths.insert(path.to_owned(), item);
        }
    }
    let probe = duplicate_probe_schema(&document["components"]["schemas"]);
    if let Some(paths) = document["paths"].as_object_mut() {
        duplicate_probe(paths);
    }
    document["components"]["schemas"][PROBE_SCHEMA] = probe;
    Ok(document)
}

/// The schema of a FindDuplicateCustomers probe (`customer`).
const PROBE_SCHEMA: &str = "customer.v1.DuplicateProbe";

/// The fields a probe compares, by JSON name: at least one must be set
/// (`duplicates::Probe::new`), and a string or map left empty is not set.
const PROBE_COMPARES: [(&str, &str); 5] = [
    ("givenName", "string"),
    ("familyName", "string"),
    ("email", "string"),
    ("phone", "string"),
    ("externalIds", "object"),
];

/// What FindDuplicateCustomers accepts as its probe (`service::duplicates::requested_probe`):
/// a customer's values, each valid as a customer's (`CustomerInput`), none required (the
/// given and family names and the email a customer requires may be empty, i.e. not given),
/// and at least one of [`PROBE_COMPARES`] set.
fn duplicate_probe_schema(schemas: &Value) -> Value {
    let mut probe = schemas["customer.v1.CustomerInput"].clone();
    let Some(object) = probe.as_object_mut() else {
        return probe;
    };
    let required = object.remove("required");
    for field in required
        .iter()
        .flat_map(|r| r.as_array().into_iter().flatten())
    {
        let Some(field) = field.as_str() else {
            continue;
        };
        let property = &mut object["properties"][field];
        let description = property
            .as_object_mut()
            .and_then(|p| p.remove("description"));
        let valid = property.take();
        *property = json!({"anyOf": [{"type": ["string", "null"], "maxLength": 0}, valid]});
        if let Some(description) = description {
            property["description"] = description;
        }
    }
    let set: Vec<Value> = PROBE_COMPARES
        .iter()
        .map(|(field, kind)| {
            let value = if *kind == "string" {
                json!({"type": "string", "minLength": 1})
            } else {
                json!({"type": "object", "minProperties": 1})
            };
            json!({"required": [field], "properties": {*field: value}})
        })
        .collect();
    object.insert("anyOf".into(), Value::Array(set));
    object.insert(
        "description".into(),
        json!(
            "Values to compare with: each one given is checked as a customer's, none is \
            required (an empty name or email is not given), and at least one of `givenName`, \
            `familyName`, `email`, `phone` and `externalIds` is set."
        ),
    );
    probe
}

/// FindDuplicateCustomers takes exactly one of `name` and `customer` (a probe,
/// [`duplicate_probe_schema`]): the POST body says so with `oneOf` (an empty `name` and a
/// `null` are unset, as in proto3 JSON), and the GET route, whose path sets `name`, takes
/// no `customer`.
fn duplicate_probe(paths: &mut serde_json::Map<String, Value>) {
    let probe_ref = json!({"$ref": format!("#/components/schemas/{PROBE_SCHEMA}")});
    if let Some(body) = paths
        .get_mut("/v1/customers:findDuplicates")
        .map(|item| &mut item["post"]["requestBody"]["content"]["application/json"]["schema"])
    {
        if let Some(customer) = body["properties"]["customer"]["anyOf"].as_array_mut()
            && let Some(first) = customer.first_mut()
        {
            *first = probe_ref;
        }
        body["oneOf"] = json!([
            {"required": ["name"], "properties": {"name": {"type": "string", "minLength": 1}}},
            {"required": ["customer"], "properties": {"customer": {"type": "object"}}},
        ]);
    }
    if let Some(parameters) = paths
        .get_mut("/v1/customers/{customer}:findDuplicates")
        .and_then(|item| item["get"]["parameters"].as_array_mut())
    {
        parameters.retain(|parameter| {
            !parameter["name"]
                .as_str()
                .is_some_and(|name| name.starts_with("customer."))
        });
    }
}

/// The export route's `format` parameter and its CSV representation
/// ([`crate::export_formats`], which serves them in front of the gateway).
fn export_formats(operation: &mut Value) {
    if let Some(parameters) = operation["parameters"].as_array_mut() {
        parameters.push(json!({
            "name": "format",
            "in": "query",
            "description": "`ndjson` (the default): one JSON customer per line; `csv`: RFC 4180 \
                with a header row, one column per field (`address.locality`, `labels` as a \
                JSON object, one `external_ids.<source>` column per source), cells starting \
                with `=`, `+`, `-`, `@`, a tab or CR prefixed with `'` against formula \
                injection. Any other value is 400 `INVALID_ARGUMENT` (`format`).",
            "schema": {"type": "string", "enum": ["ndjson", "csv"], "default": "ndjson"},
        }));
    }
    operation["responses"]["200"]["content"]["text/csv"] = json!({
        "schema": {"type": "string", "description": "CSV with a header row (`format=csv`)."},
    });
    operation["responses"]["200"]["headers"][crate::grpc::EXTERNAL_ID_SOURCES_HEADER] = json!({
        "description": "The external id sources of the export's snapshot, comma-separated: \
            the `external_ids.<source>` columns of its CSV.",
        "schema": {"type": "string"},
    });
}

/// `POST /v1/customers:import` ([`crate::import_bodies`], served in front of the gateway:
/// ImportCustomers is a client stream, which the gateway does not transcode).
fn import_route() -> Value {
    let error = |description: &str| json!({"$ref": "#/components/responses/Error", "description": description});
    let uuid = format!(
        "^({})?$",
        names::UUID_PATTERN
            .trim_start_matches('^')
            .trim_end_matches('$')
    );
    json!({"post": {
        "operationId": "ImportCustomers",
        "summary": "Imports customers from an NDJSON or CSV file, streamed.",
        "description": "The body is a file, read as it arrives (never held whole): \
            `application/x-ndjson`, one customer per line in the JSON of `Customer` (what \
            `GET /v1/customers:export` writes), or `text/csv` with a header row naming the \
            columns of the CSV export (`given_name`, `email`, `address.locality`, `labels` as a \
            JSON object, `external_ids.<source>`, ...; output-only columns are ignored). Each \
            row is validated as CreateCustomer validates; valid rows commit in batches of \
            1,000, each one transaction with one event per customer. The answer is the \
            finished `google.longrunning.Operation`: `response` an ImportCustomersResponse \
            (`created`, `updated`, `unchanged`, `rejected`, and `errors`: each rejected row's \
            `line` and `fieldViolations`, at most 1,000), `metadata` an \
            ImportCustomersMetadata (`rowsRead`, `rowsCommitted`, `rowsRejected`). Poll \
            `GET /v1/operations/{requestId}` for progress while uploading. Re-sending with \
            the same request id resumes an import that broke off, skipping what was \
            committed, and answers a finished one as it ended.\n\n\
            gRPC: `/customer.v1.CustomerService/ImportCustomers` (a client stream).",
        "x-grpc-method": crate::import_bodies::GRPC_PATH,
        "parameters": [
            {"name": "mode", "in": "query", "description": "`create-only` (the default): every \
                row registers a customer; `upsert`: a row updates the live customer holding its \
                external ids (required), or registers one.",
             "schema": {"type": "string", "enum": ["create-only", "upsert"], "default": "create-only"}},
            {"name": "validateOnly", "in": "query", "description": "Validate every row (against \
                the stored customers too) and write nothing.",
             "schema": {"type": "boolean", "default": false}},
            {"name": "requestId", "in": "query", "description": "A UUID identifying the import \
                (the operation is `operations/{requestId}`); re-sending resumes it.",
             "schema": {"type": "string", "pattern": uuid}},
            {"name": "Idempotency-Key", "in": "header", "description": "The request id, when \
                `requestId` is not given.",
             "schema": {"type": "string", "pattern": uuid}},
        ],
        "requestBody": {
            "required": true,
            "description": "The file.",
            "content": {
                "application/x-ndjson": {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        },
        "responses": {
            "200": {
                "description": "The import's operation, done: every row committed or reported in `response`.",
                "content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/google.longrunning.Operation",
                }}},
            },
            "400": error("Bad Request: `INVALID_ARGUMENT` (settings, a request id used for another import, or a file refused as a whole, such as a CSV header naming an unknown column). An import that ended with an error answers that error, its `ErrorInfo.metadata.operation` naming the operation that says how far it got."),
            "401": error("Unauthorized: `UNAUTHENTICATED`."),
            "403": error("Forbidden: `PERMISSION_DENIED`."),
            "408": error("Request Timeout: a part of the body did not arrive within REQUEST_BODY_TIMEOUT of the one before (`DEADLINE_EXCEEDED`); re-send to resume."),
            "409": error("Conflict: `ABORTED`, another run of the same import is committing."),
            "415": error("Unsupported Media Type: the body is neither `application/x-ndjson` nor `text/csv`."),
            "429": error("Too Many Requests: `RESOURCE_EXHAUSTED`."),
            "500": error("Internal Server Error: `INTERNAL`; re-send to resume."),
            "503": error("Service Unavailable: `UNAVAILABLE`; re-send to resume."),
            "default": error("Any other error."),
        },
        "security": [{"bearerAuth": [scopes::WRITE]}, {"apiKey": [scopes::WRITE]}],
    }})
}

/// The plain HTTP routes beside the gateway that need no credential.
fn open_routes() -> Vec<(&'static str, Value)> {
    let text = |description: &str| json!({"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}});
    let probe = |id: &str, summary: &str, ok: &str, unavailable: Option<&str>| {
        let mut responses = json!({"200": text(ok)});
        if let Some(unavailable) = unavailable {
            responses["503"] = text(unavailable);
        }
        json!({"get": {
            "operationId": id,
            "summary": summary,
            "tags": ["Server"],
            "security": [],
            "responses": responses,
        }})
    };
    let html = |id: &str, summary: &str| {
        json!({"get": {
            "operationId": id,
            "summary": summary,
            "tags": ["Server"],
            "security": [],
            "responses": {"200": {
                "description": "An HTML page.",
                "content": {"text/html": {"schema": {"type": "string"}}},
            }},
        }})
    };
    vec![
        (
            "/healthz",
            probe(
                "Healthz",
                "Liveness: the process serves requests.",
                "`ok`",
                None,
            ),
        ),
        (
            "/readyz",
            probe(
                "Readyz",
                "Readiness: the database answers and the server is not shutting down.",
                "`ready`",
                Some("`not ready` or `database unavailable`"),
            ),
        ),
        (
            "/",
            html(
                "GetLandingPage",
                "Links to the console, this document, health and metrics.",
            ),
        ),
        (
            "/docs",
            html(
                "GetApiConsole",
                "The API console (Swagger UI, served from the binary) over this document.",
            ),
        ),
        (
            "/openapi.json",
            json!({"get": {
                "operationId": "GetOpenApiDocument",
                "summary": "This document.",
                "description": "Open unless the server runs with `PROTECT_DOCS`, which asks for \
                    a `customers.read` credential.",
                "tags": ["Server"],
                "security": [],
                "responses": {"200": {
                    "description": "The OpenAPI 3.1 document.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }},
            }}),
        ),
    ]
}
