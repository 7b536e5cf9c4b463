//! Schemathesis (PyPI, pinned by `make tools`) against the served `/openapi.json`: every
//! check it has, its coverage, fuzzing and stateful (links) phases, a fixed seed and no
//! example database, so every run sends the same cases. The server is the real one on a
//! private database seeded with a company, a customer of it and a note, a customer to erase,
//! and a business registry of this test's own (the one `business.rs` uses); the streaming
//! watch routes are left out (a stream does not end by itself).
//!
//! Two runs, because one premise of the checks cannot hold everywhere:
//!
//! 1. **All checks.** "Schema-valid input is accepted" needs inputs whose validity the
//!    schema can state. Those it cannot are pinned to valid values: what depends on stored
//!    state (a request id is unique per request, a referenced company exists, the seeded
//!    resources stay live, so DELETE and undelete get no seeded ids and ids seen in
//!    responses are not reused; `allowMissing` turns a PATCH of an unknown id into a
//!    create), the filter and `order_by` grammars and update masks (pinned per operation to
//!    valid expressions; the cargo-fuzz targets fuzz those parsers), page tokens (opaque),
//!    and an upsert whose customer names its own key under another id (the source is
//!    pinned). 412 (a stale etag: a valid request refused by state, like 409) counts as an
//!    accepted answer, and the stateful phase, whose sequences delete resources and then
//!    write to them (refused by design, `FAILED_PRECONDITION`), does not apply that check.
//! 2. **Free inputs.** Nothing pinned, the seeded ids half the time, every check but that
//!    one: server errors, schema-violating input accepted, response and status conformance.
//!
//! Both count 412, 413 and 415 as rejections of invalid input (the etag is checked before
//! the values). Either run fails the test on any failure or error schemathesis reports.

use std::path::{Path, PathBuf};
use std::time::Instant;

use customer_api::registry::UrlTemplate;
use http::Method;
use serde_json::{Value as Json, json};

use crate::helpers::{Scratch, TestApp, tool};

/// Fixed, so every run draws the same cases.
const SEED: &str = "20261206";

/// Paths left out of the runs: the streaming watch routes (a stream never ends), and
/// MergeCustomers, whose refusals of a self-merge (a source equal to the path's target) and of a
/// `field_policy` choice naming a customer outside `sources` are rules across fields that an
/// OpenAPI schema cannot state (ST202 on `sources: [<the target>]`); tests/api/merge.rs covers
/// its refusals.
const EXCLUDED_SUFFIXES: [&str; 2] = [":watch", ":merge"];
/// [`EXCLUDED_SUFFIXES`] as schemathesis' `--exclude-path-regex`.
const EXCLUDED: &str = "(:watch|:merge)$";
/// Test cases per operation in each phase.
const MAX_EXAMPLES: &str = "5";

/// The seeded resources' ids.
struct Seeded {
    company: String,
    customer: String,
    note: String,
    api_key: String,
    /// A customer for EraseCustomer (the others must stay).
    erasable: String,
}

/// Creates a resource over REST and returns its id.
async fn create(app: &TestApp, path: &str, body: Json) -> String {
    let (status, _, created) =
        crate::rest::call(app, false, Method::POST, path, Some(&body.to_string()), &[]).await;
    assert_eq!(status, 201, "{created}");
    let name = created["name"].as_str().unwrap();
    name.rsplit('/').next().unwrap().to_owned()
}

/// Creates what the operations on existing resources need.
async fn seed(app: &TestApp) -> Seeded {
    let company = create(
        app,
        "/v1/companies",
        json!({"displayName": "Acme", "domain": "acme.example"}),
    )
    .await;
    let customer = create(
        app,
        "/v1/customers",
        json!({
            "givenName": "Ada", "familyName": "Lovelace", "email": "ada@seed.example",
            "company": format!("companies/{company}"),
            // A PATCH may change part of an address that exists.
            "address": {"lines": ["12 St James's Square"], "locality": "London", "countryCode": "GB"},
        }),
    )
    .await;
    let note = create(
        app,
        &format!("/v1/customers/{customer}/notes"),
        json!({"text": "First call."}),
    )
    .await;
    let api_key = create(
        app,
        "/v1/apiKeys",
        json!({"displayName": "Schemathesis", "scopes": ["customers.read"]}),
    )
    .await;
    let erasable = create(
        app,
        "/v1/customers",
        json!({"givenName": "Erin", "familyName": "Erasable", "email": "erin@seed.example"}),
    )
    .await;
    Seeded {
        company,
        customer,
        note,
        api_key,
        erasable,
    }
}

/// A TOML basic string.
fn toml(text: &str) -> String {
    Json::String(text.to_owned()).to_string()
}

/// What both runs share: the credential (in the file, so no command line shows it), and a
/// rejection of invalid input with 412 (the etag is checked before the values) or 413/415
/// counted as the rejection it is.
fn common_config(app: &TestApp) -> String {
    format!(
        "# A generator that discards many draws (a long pattern in a path) is slow, not wrong.\n\
         suppress-health-check = [\"filter_too_much\"]\n\n\
         [headers]\nAuthorization = {}\n\n\
         [checks.negative_data_rejection]\n\
         expected-statuses = [\"400\", \"401\", \"403\", \"404\", \"405\", \"406\", \"409\", \
         \"412\", \"413\", \"415\", \"422\", \"428\", \"429\", \"5xx\"]\n\n",
        toml(&app.bearer()),
    )
}

/// Run 1: every check, with the inputs the schema cannot judge pinned (see the module doc).
/// Pinned values are fixed values (the coverage phase honours those, not dictionaries).
fn all_checks_config(app: &TestApp, seeded: &Seeded) -> String {
    let customer = format!("\"path.customer\" = {}", toml(&seeded.customer));
    let company = format!("\"path.company\" = {}", toml(&seeded.company));
    let note = format!("\"path.note\" = {}", toml(&seeded.note));
    let company_name = toml(&format!("companies/{}", seeded.company));
    let company_field = format!("\"body.company\" = {company_name}");
    let customers_query =
        r#""query.filter" = 'family_name = "Lovelace"', "query.orderBy" = "create_time desc""#
            .to_owned();
    let operations: Vec<(&[&str], Vec<String>)> = vec![
        (
            &["GET /v1/customers", "GET /v1/customers:export"],
            vec![customers_query.clone(), r#""query.parent" = """#.into()],
        ),
        (
            &["GET /v1/companies/{company}/customers"],
            vec![customers_query, company.clone()],
        ),
        (
            &["GET /v1/companies"],
            vec![
                r#""query.filter" = 'display_name = "Acme"', "query.orderBy" = "display_name""#
                    .into(),
            ],
        ),
        (
            &["GET /v1/customers/{customer}/events"],
            vec![
                r#""query.filter" = 'type = "CustomerRegistered"'"#.into(),
                customer.clone(),
            ],
        ),
        (
            &["GET /v1/companies/{company}/events"],
            vec![
                r#""query.filter" = 'type = "CompanyCreated"'"#.into(),
                company.clone(),
            ],
        ),
        (
            // `allowMissing` on an unknown id turns a PATCH into a create, which needs a
            // complete customer.
            &["PATCH /v1/customers/{customer}"],
            vec![
                customer.clone(),
                company_field.clone(),
                r#""query.allowMissing" = "false""#.into(),
            ],
        ),
        (
            &[
                "GET /v1/customers/{customer}",
                "GET /v1/customers/{customer}:findDuplicates",
                "PUT /v1/customers/{customer}",
                "GET /v1/customers/{customer}/notes",
                "POST /v1/customers/{customer}/notes",
            ],
            vec![customer.clone(), company_field.clone()],
        ),
        (
            &[
                "GET /v1/companies/{company}",
                "PATCH /v1/companies/{company}",
                "PUT /v1/companies/{company}",
            ],
            vec![company],
        ),
        (
            &[
                "GET /v1/customers/{customer}/notes/{note}",
                "PATCH /v1/customers/{customer}/notes/{note}",
                "PUT /v1/customers/{customer}/notes/{note}",
            ],
            vec![customer, note],
        ),
        (&["POST /v1/customers"], vec![company_field]),
        // An erased customer stays erased: only the customer seeded for it. A request id
        // sent with two reasons is a reused one (refused): none.
        (
            &["POST /v1/customers/{customer}:erase"],
            vec![
                format!("\"path.customer\" = {}", toml(&seeded.erasable)),
                r#""body.requestId" = """#.into(),
            ],
        ),
    ];
    let mut config = common_config(app);
    config.push_str(
        "[checks.positive_data_acceptance]\n\
         expected-statuses = [\"2xx\", \"401\", \"403\", \"404\", \"409\", \"412\", \"429\", \"5xx\"]\n\n\
         [phases.stateful.checks.positive_data_acceptance]\nenabled = false\n\n\
         # Ids seen in responses would reach DELETE and undelete: the seeded ids are given.\n\
         [phases.coverage.extra-data-sources]\nresponses = false\n\
         [phases.fuzzing.extra-data-sources]\nresponses = false\n\n\
         [parameters]\n\
         \"query.requestId\" = \"\"\n\
         \"header.Idempotency-Key\" = \"\"\n\
         \"query.pageToken\" = \"\"\n\
         \"query.updateMask\" = \"\"\n\n",
    );
    for (names, parameters) in operations {
        let names: Vec<String> = names.iter().map(|name| toml(name)).collect();
        config.push_str(&format!(
            "[[operations]]\ninclude-name = [{}]\nparameters = {{ {} }}\n\n",
            names.join(", "),
            parameters.join(", ")
        ));
    }
    // The seeded key is read and rotated, never revoked (a revoked key cannot rotate).
    config.push_str(&format!(
        "[[operations]]\ninclude-name = [\"GET /v1/apiKeys/{{api_key}}\", \
         \"POST /v1/apiKeys/{{api_key}}:rotate\"]\n\
         parameters = {{ \"path.api_key\" = {} }}\n\n",
        toml(&seeded.api_key)
    ));
    // A key's expiry must lie ahead, which no schema says: pinned, and the coverage phase,
    // which does not apply pinned body values, left out.
    config.push_str(
        "[[operations]]\ninclude-name = [\"POST /v1/apiKeys\"]\n\
         parameters = { \"body.expireTime\" = \"2099-01-01T00:00:00Z\" }\n\
         phases.coverage.enabled = false\n\n",
    );
    // A page token is opaque (pinned empty); the coverage phase, which does not apply
    // pinned body values, left out.
    config.push_str(
        "[[operations]]\ninclude-name = [\"POST /v1/customers:findDuplicates\"]\n\
         parameters = { \"body.pageToken\" = \"\" }\n\
         phases.coverage.enabled = false\n\n",
    );
    // An import's body is a file (CSV whose header names known columns, or NDJSON of
    // customers) whose grammar a `type: string` schema cannot state: a random string is a
    // file refused as a whole (400). tests/api/import.rs covers what it accepts and refuses.
    config.push_str(
        "[[operations]]\ninclude-name = [\"POST /v1/customers:import\"]\n\
         checks.positive_data_acceptance.enabled = false\n\n",
    );
    // The source is pinned to a key no generated customer holds; the coverage phase, which
    // does not apply pinned body values, would send the same minimal key twice.
    config.push_str(&format!(
        "[[operations]]\ninclude-name = [\"POST /v1/customers:upsert\"]\n\
         parameters = {{ \"body.customer.company\" = {company_name}, \
         \"body.source\" = \"schemathesis_upsert_key\", \"body.requestId\" = \"\", \
         \"body.updateMask\" = \"\" }}\n\
         phases.coverage.enabled = false\n"
    ));
    config
}

/// Run 2: free inputs; the seeded ids half the time, so the cases get past 404.
fn free_inputs_config(app: &TestApp, seeded: &Seeded) -> String {
    let mut config = common_config(app);
    config.push_str(&format!(
        "[checks.positive_data_acceptance]\nenabled = false\n\n\
         [dictionaries.customer]\nvalues = [{}]\n\
         [dictionaries.company]\nvalues = [{}]\n\
         [dictionaries.note]\nvalues = [{}]\n\n\
         [parameters]\n\
         \"path.customer\" = {{ dictionary = \"customer\", probability = 0.5 }}\n\
         \"path.company\" = {{ dictionary = \"company\", probability = 0.5 }}\n\
         \"path.note\" = {{ dictionary = \"note\", probability = 0.5 }}\n",
        toml(&seeded.customer),
        toml(&seeded.company),
        toml(&seeded.note),
    ));
    config
}

/// What one run reported.
struct Report {
    /// Test cases generated.
    cases: u64,
    /// The run's report, for the failure message.
    json: Json,
}

/// Runs schemathesis with `config` (schemathesis 4 runs every check unless the
/// configuration turns one off); fails with its output unless it reports no failure and no
/// error.
async fn schemathesis(app: &TestApp, dir: &Path, name: &str, config: &str) -> Report {
    let program = tool("target/tools/venv/bin/schemathesis");
    let venv: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/venv/bin");
    let config_file = dir.join(format!("{name}.toml"));
    std::fs::write(&config_file, config).unwrap();
    let reports = dir.join(name);
    let url = format!("http://{}/openapi.json", app.addr);
    let args = vec![
        "--config-file".to_owned(),
        config_file.display().to_string(),
        "run".to_owned(),
        url,
        "--phases".to_owned(),
        "coverage,fuzzing,stateful".to_owned(),
        "--max-examples".to_owned(),
        MAX_EXAMPLES.to_owned(),
        "--seed".to_owned(),
        SEED.to_owned(),
        "--generation-database".to_owned(),
        "none".to_owned(),
        // One worker: the cases, and the server state they meet, come in one order.
        "--workers".to_owned(),
        "1".to_owned(),
        "--exclude-path-regex".to_owned(),
        EXCLUDED.to_owned(),
        "--request-timeout".to_owned(),
        "30".to_owned(),
        "--continue-on-failure".to_owned(),
        "--no-color".to_owned(),
        "--report".to_owned(),
        "json".to_owned(),
        "--report-json-path".to_owned(),
        reports.join("report.json").display().to_string(),
    ];
    let output = tokio::process::Command::new(&program)
        .args(&args)
        .current_dir(dir)
        .env_clear()
        .env(
            "PATH",
            format!("{}:/usr/local/bin:/usr/bin:/bin", venv.display()),
        )
        .env("HOME", dir)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let text = std::fs::read_to_string(reports.join("report.json")).unwrap_or_else(|e| {
        panic!(
            "no report ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let json: Json = serde_json::from_str(&text).unwrap();
    assert!(
        output.status.success()
            && json["test_cases"]["with_failures"] == 0
            && json["operations"]["errored"] == 0
            && json["errors"].as_array().is_some_and(Vec::is_empty),
        "schemathesis ({name}) reported failures ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Report {
        cases: json["test_cases"]["generated"].as_u64().unwrap(),
        json,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_against_the_served_document() {
    let (registry, _, _) = crate::business::recording_registry().await;
    let app = TestApp::spawn_with(|settings| {
        settings.registry.business_registry_url = Some(UrlTemplate::parse(&registry).unwrap());
    })
    .await;
    let seeded = seed(&app).await;
    let scratch = Scratch::new("schemathesis");

    // The operations left out of the runs (`EXCLUDED`): the two change streams.
    let (status, _, document) =
        crate::rest::call(&app, false, Method::GET, "/openapi.json", None, &[]).await;
    assert_eq!(status, 200);
    let watches = document["paths"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|path| {
            EXCLUDED_SUFFIXES
                .iter()
                .any(|suffix| path.ends_with(suffix))
        })
        .count();
    assert_eq!(watches, 3);
    let runs = [
        ("all-checks", all_checks_config(&app, &seeded)),
        ("free-inputs", free_inputs_config(&app, &seeded)),
    ];
    for (name, config) in runs {
        let started = Instant::now();
        let report = schemathesis(&app, &scratch.0, name, &config).await;
        // Every operation schemathesis found but the excluded ones was tested.
        let counts = &report.json["operations"];
        assert_eq!(
            counts["tested"].as_u64().unwrap() + watches as u64,
            counts["total"].as_u64().unwrap(),
            "{counts}"
        );
        eprintln!(
            "schemathesis {name}: {} cases in {:.0?}",
            report.cases,
            started.elapsed()
        );
    }
}
