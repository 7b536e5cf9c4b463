//! ExportCustomers (issue 18): the customers of a filter from one snapshot, over gRPC (a
//! server stream) and REST (newline-delimited JSON or CSV), equal to paging ListCustomers;
//! the scope `customers.export` it needs.

use customer_api::pb;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

use crate::helpers::{Scratch, TestApp, assert_invalid, http_get, labels, new_customer, scoped};

/// Every customer of `filter` through ListCustomers, in pages of 4.
async fn list_all(app: &TestApp, filter: &str, show_deleted: bool) -> Vec<pb::Customer> {
    let mut customers = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .client
            .clone()
            .list_customers(pb::ListCustomersRequest {
                filter: filter.into(),
                show_deleted,
                page_size: 4,
                page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        customers.extend(page.customers);
        if page.next_page_token.is_empty() {
            return customers;
        }
        page_token = page.next_page_token;
    }
}

async fn export(
    app: &TestApp,
    filter: &str,
    show_deleted: bool,
) -> Result<Vec<pb::Customer>, tonic::Status> {
    let mut stream = app
        .client
        .clone()
        .export_customers(pb::ExportCustomersRequest {
            filter: filter.into(),
            show_deleted,
        })
        .await?
        .into_inner();
    let mut customers = Vec::new();
    while let Some(customer) = stream.next().await {
        customers.push(customer?);
    }
    Ok(customers)
}

/// Eleven customers, six of them gold (one of those deleted), and one more deleted.
async fn seed(app: &TestApp) {
    for i in 0..11 {
        let tier = if i % 2 == 0 { "gold" } else { "silver" };
        let customer = app
            .register(pb::Customer {
                labels: labels(&[("tier", tier)]),
                ..new_customer(&format!("N{i}"), "Export")
            })
            .await;
        if i == 4 || i == 5 {
            app.delete_customer(&customer.name).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn export_of_a_filtered_set_equals_list_paging_and_honours_show_deleted() {
    let app = TestApp::spawn().await;
    seed(&app).await;

    for (filter, show_deleted, expected) in [
        (r#"labels.tier = "gold""#, false, 5),
        (r#"labels.tier = "gold""#, true, 6),
        ("", false, 9),
        ("", true, 11),
        ("given_name = nobody", false, 0),
    ] {
        let exported = export(&app, filter, show_deleted).await.unwrap();
        assert_eq!(exported.len(), expected, "{filter} {show_deleted}");
        assert_eq!(
            exported,
            list_all(&app, filter, show_deleted).await,
            "{filter} {show_deleted}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn export_over_rest_is_one_json_customer_per_line() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let request = http::Request::get(format!(
        "http://{}/v1/customers:export?filter=labels.tier%20%3D%20gold&showDeleted=true",
        app.addr
    ))
    .header("authorization", app.bearer())
    .body(Empty::new())
    .unwrap();

    let response = client.request(request).await.unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let names: Vec<String> = std::str::from_utf8(&body)
        .unwrap()
        .lines()
        .map(|line| {
            let json: serde_json::Value = serde_json::from_str(line).unwrap();
            let customer = json.get("result").unwrap_or(&json);
            customer["name"].as_str().unwrap().to_owned()
        })
        .collect();
    let listed: Vec<String> = list_all(&app, "labels.tier = gold", true)
        .await
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, listed);
    assert_eq!(names.len(), 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_filter_fails_before_anything_is_streamed() {
    let app = TestApp::spawn().await;

    let status = export(&app, "nickname = x", false).await.unwrap_err();

    assert_invalid(&status, "INVALID_FIELDS", &["filter"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_larger_than_a_batch_equals_list_paging() {
    use diesel_async::RunQueryDsl;
    let app = TestApp::spawn().await;
    // More rows than one batch (500), all with one create_time: the id breaks every tie.
    diesel::sql_query(
        "INSERT INTO customers (id, given_name, family_name, email, status) \
         SELECT gen_random_uuid(), 'G' || i, 'Bulk', 'bulk' || i || '@example.com', 1 \
         FROM generate_series(1, 1100) AS i",
    )
    .execute(&mut app.db().await)
    .await
    .unwrap();

    let exported = export(&app, "family_name = Bulk", false).await.unwrap();

    assert_eq!(exported.len(), 1100);
    let mut listed = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .client
            .clone()
            .list_customers(pb::ListCustomersRequest {
                filter: "family_name = Bulk".into(),
                page_size: 1000,
                page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        listed.extend(page.customers);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(exported, listed);
}

/// `GET /v1/customers:export?{query}` with `authorization` (the app's all-scopes token when
/// `None`): status, headers and body.
async fn rest_export(
    app: &TestApp,
    query: &str,
    authorization: Option<&str>,
) -> (http::StatusCode, http::HeaderMap, bytes::Bytes) {
    let authorization = authorization.map_or_else(|| app.bearer(), str::to_owned);
    let path = format!("/v1/customers:export?{query}");
    http_get(app, &path, &[("authorization", &authorization)]).await
}

/// The records of an RFC 4180 document (quoted cells may hold commas, CRLF and `""`).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let (mut record, mut cell) = (Vec::new(), String::new());
    let (mut quoted, mut chars) = (false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut cell)),
            (false, '\r') => assert_eq!(chars.next(), Some('\n'), "CR without LF"),
            (false, '\n') => panic!("a row ended with LF alone"),
            (false, c) => cell.push(c),
        }
        if !quoted && c == '\r' {
            record.push(std::mem::take(&mut cell));
            records.push(std::mem::take(&mut record));
        }
    }
    assert!(
        cell.is_empty() && record.is_empty(),
        "the last row has no CRLF"
    );
    records
}

/// The CSV export of `query`: its header and rows, each row a map of column to cell.
async fn csv_export(
    app: &TestApp,
    query: &str,
) -> (Vec<String>, Vec<std::collections::BTreeMap<String, String>>) {
    let (status, headers, body) = rest_export(app, &format!("format=csv&{query}"), None).await;
    assert_eq!(status, 200, "{body:?}");
    assert_eq!(
        headers["content-type"],
        "text/csv; charset=utf-8; header=present"
    );
    let mut records = parse_csv(std::str::from_utf8(&body).unwrap()).into_iter();
    let header = records.next().expect("a header row");
    let rows = records
        .map(|record| {
            assert_eq!(record.len(), header.len(), "{record:?}");
            header.iter().cloned().zip(record).collect()
        })
        .collect();
    (header, rows)
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_export_of_a_filtered_set_equals_list_paging_and_honours_show_deleted() {
    let app = TestApp::spawn().await;
    seed(&app).await;

    for (query, filter, show_deleted, expected) in [
        (
            "filter=labels.tier%20%3D%20gold",
            r#"labels.tier = "gold""#,
            false,
            5,
        ),
        (
            "filter=labels.tier%20%3D%20gold&showDeleted=true",
            r#"labels.tier = "gold""#,
            true,
            6,
        ),
        ("", "", false, 9),
        ("showDeleted=true", "", true, 11),
        (
            "filter=given_name%20%3D%20nobody",
            "given_name = nobody",
            false,
            0,
        ),
    ] {
        let (_, rows) = csv_export(&app, query).await;

        let listed = list_all(&app, filter, show_deleted).await;
        let names: Vec<&str> = rows.iter().map(|row| row["name"].as_str()).collect();
        let listed_names: Vec<&str> = listed.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, listed_names, "{query}");
        assert_eq!(names.len(), expected, "{query}");
        for (row, customer) in rows.iter().zip(&listed) {
            assert_eq!(row["given_name"], customer.given_name);
            assert_eq!(row["email"], customer.email);
            assert_eq!(row["etag"], customer.etag);
            assert_eq!(row["status"], "ACTIVE");
            assert_eq!(
                row["labels"],
                format!(r#"{{"tier":"{}"}}"#, customer.labels["tier"])
            );
            assert_eq!(
                row["delete_time"].is_empty(),
                customer.delete_time.is_none()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_cells_are_quoted_guarded_against_formulas_and_name_every_field() {
    let app = TestApp::spawn().await;
    let customer = app
        .register(pb::Customer {
            phone: "+358401234567".into(),
            address: Some(pb::PostalAddress {
                lines: vec!["1 \"Main\" Street, Flat 2".into(), "Back door".into()],
                locality: "Helsinki".into(),
                postal_code: "00100".into(),
                country_code: "FI".into(),
                ..Default::default()
            }),
            labels: labels(&[("tier", "gold"), ("team", "b2b")]),
            external_ids: labels(&[("crm", "4711")]),
            email: "formula.export@example.com".into(),
            ..new_customer("=cmd", "Smith, \"Jr\"")
        })
        .await;
    app.register(pb::Customer {
        external_ids: labels(&[("erp", "-9")]),
        ..new_customer("Plain", "Row")
    })
    .await;

    let (status, headers, body) = rest_export(&app, "format=csv", None).await;

    assert_eq!(status, 200);
    assert_eq!(headers["export-external-id-sources"], "crm,erp");
    let text = std::str::from_utf8(&body).unwrap();
    let header_row = "name,uid,given_name,family_name,email,phone,address.lines,\
        address.locality,address.region,address.postal_code,address.country_code,status,\
        company,business_id,labels,etag,create_time,update_time,delete_time,expire_time,\
        external_ids.crm,external_ids.erp\r\n";
    assert!(text.starts_with(header_row), "{text}");
    let first_row = text[header_row.len()..].split("\r\n").next().unwrap();
    // An etag (`W/"1"`) holds quotes.
    let quoted_etag = ["\"", &customer.etag.replace('"', "\"\""), "\""].concat();
    let expected = format!(
        "{name},{uid},'=cmd,\"Smith, \"\"Jr\"\"\",{email},'+358401234567,\
         \"1 \"\"Main\"\" Street, Flat 2\nBack door\",Helsinki,,00100,FI,ACTIVE,,,\
         \"{{\"\"team\"\":\"\"b2b\"\",\"\"tier\"\":\"\"gold\"\"}}\",{etag},{created},{updated},,,4711,",
        name = customer.name,
        uid = customer.uid,
        email = customer.email,
        etag = quoted_etag,
        created = rfc3339(customer.create_time.as_ref().unwrap()),
        updated = rfc3339(customer.update_time.as_ref().unwrap()),
    );
    assert_eq!(first_row, expected);
    let (_, rows) = csv_export(&app, "").await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["family_name"], "Smith, \"Jr\"");
    assert_eq!(
        rows[0]["address.lines"],
        "1 \"Main\" Street, Flat 2\nBack door"
    );
    assert_eq!(rows[1]["external_ids.erp"], "'-9");
    assert_eq!(rows[1]["external_ids.crm"], "");
}

/// A timestamp as the CSV writes it (RFC 3339, UTC, `Z`).
fn rfc3339(time: &prost_types::Timestamp) -> String {
    chrono::DateTime::from_timestamp(time.seconds, u32::try_from(time.nanos).unwrap())
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_export_format_is_invalid_argument_naming_format() {
    let app = TestApp::spawn().await;

    for query in ["format=xml", "format=csv&format=ndjson", "format="] {
        let (status, _, body) = rest_export(&app, query, None).await;

        assert_eq!(status, 400, "{query}");
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"]["status"], "INVALID_ARGUMENT", "{query}");
        let violations = json["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest")
            .expect("BadRequest")["fieldViolations"]
            .clone();
        assert_eq!(violations.as_array().unwrap().len(), 1, "{query}");
        assert_eq!(violations[0]["field"], "format", "{query}");
    }
    let (status, headers, _) = rest_export(&app, "format=ndjson", None).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/x-ndjson");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_filter_of_a_csv_export_is_a_400_before_any_row() {
    let app = TestApp::spawn().await;

    let (status, headers, body) =
        rest_export(&app, "format=csv&filter=nickname%20%3D%20x", None).await;

    assert_eq!(status, 400);
    assert_eq!(headers["content-type"], "application/json");
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"]["status"], "INVALID_ARGUMENT");
}

#[tokio::test(flavor = "multi_thread")]
async fn export_needs_the_export_scope_which_read_does_not_grant() {
    let app = TestApp::spawn().await;
    app.create("Scoped", "Export").await;
    let reader = scoped(&["customers.read", "customers.write"]);
    let exporter = scoped(&["customers.export"]);

    for format in ["csv", "ndjson"] {
        let (status, _, body) = rest_export(&app, &format!("format={format}"), Some(&reader)).await;
        assert_eq!(status, 403, "{format}");
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"]["status"], "PERMISSION_DENIED");
        assert!(
            json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("customers.export"),
            "{json}"
        );
    }
    let denied = app
        .client_with(Some(&reader))
        .export_customers(pb::ExportCustomersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);

    let (status, _, body) = rest_export(&app, "format=csv", Some(&exporter)).await;
    assert_eq!(status, 200);
    assert_eq!(parse_csv(std::str::from_utf8(&body).unwrap()).len(), 2);
    let mut stream = app
        .client_with(Some(&exporter))
        .export_customers(pb::ExportCustomersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.next().await.unwrap().unwrap().given_name, "Scoped");
    assert!(stream.next().await.is_none());
}

/// `customer-api export ARGS` against `app` (its all-scopes token), with no environment.
async fn cli_export(app: &TestApp, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_customer-api"))
        .env_clear()
        .arg("export")
        .args(["--server", &format!("http://{}", app.addr)])
        .args(["--token", &app.token])
        .args(args)
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_writes_the_same_csv_and_ndjson_as_the_rest_export() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let dir = Scratch::new("cli-export");

    for (format, query) in [
        (
            "csv",
            "format=csv&filter=labels.tier%20%3D%20gold&showDeleted=true",
        ),
        (
            "ndjson",
            "format=ndjson&filter=labels.tier%20%3D%20gold&showDeleted=true",
        ),
    ] {
        let file = dir.0.join(format!("gold.{format}"));
        let file_arg = file.to_str().unwrap();

        let output = cli_export(
            &app,
            &[
                "--filter",
                "labels.tier = gold",
                "--show-deleted",
                "--format",
                format,
                "-o",
                file_arg,
            ],
        )
        .await;

        assert!(output.status.success(), "{output:?}");
        let written = std::fs::read(&file).unwrap();
        let (status, _, served) = rest_export(&app, query, None).await;
        assert_eq!(status, 200);
        assert_eq!(
            String::from_utf8(written).unwrap(),
            std::str::from_utf8(&served).unwrap()
        );
    }
    let csv = std::fs::read_to_string(dir.0.join("gold.csv")).unwrap();
    assert_eq!(parse_csv(&csv).len(), 1 + 6);
    let ndjson = std::fs::read_to_string(dir.0.join("gold.ndjson")).unwrap();
    assert_eq!(ndjson.lines().count(), 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_fails_with_the_servers_reason_and_writes_to_stdout_by_default() {
    let app = TestApp::spawn().await;
    app.create("Only", "One").await;

    let bad = cli_export(&app, &["--filter", "nickname = x"]).await;
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("the export failed after 0 customer(s)"),
        "{stderr}"
    );
    assert!(stderr.contains("nickname"), "{stderr}");

    let ok = cli_export(&app, &["--format", "csv"]).await;
    assert!(ok.status.success(), "{ok:?}");
    let rows = parse_csv(std::str::from_utf8(&ok.stdout).unwrap());
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1][2], "Only");
}

/// Sessions of the test database inside a transaction that waits for its client.
async fn idle_in_transaction(app: &TestApp) -> i64 {
    app.count(
        "pg_stat_activity",
        "datname = current_database() AND state = 'idle in transaction'",
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_external_id_sources_fail_the_export_before_any_row_and_end_its_snapshot() {
    use diesel_async::RunQueryDsl as _;

    let app = TestApp::spawn().await;
    let customer = app.create("Many", "Sources").await;
    // More sources than a CSV header may name (written behind the API's back: a customer
    // holds at most 16).
    let inserted = diesel::sql_query(format!(
        "INSERT INTO customer_external_ids (source, external_id, customer_id) \
         SELECT 'source_' || g, 'id', '{}' FROM generate_series(1, {}) AS g",
        customer.uid,
        customer_api::service::export::MAX_EXTERNAL_ID_SOURCES + 1
    ))
    .execute(&mut app.db().await)
    .await
    .unwrap();
    assert_eq!(inserted, 1001);

    let status = export(&app, "", false).await.unwrap_err();

    crate::helpers::assert_reason(
        &status,
        tonic::Code::FailedPrecondition,
        "TOO_MANY_EXTERNAL_ID_SOURCES",
    );
    // The runner ended the snapshot before the answer left.
    assert_eq!(idle_in_transaction(&app).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_that_goes_away_ends_the_export_and_its_snapshot() {
    use diesel_async::RunQueryDsl as _;

    let app = TestApp::spawn().await;
    // Far more than the channel and the stream's windows hold, so the walk waits on the
    // reader.
    let inserted = diesel::sql_query(
        "INSERT INTO customers (id, given_name, family_name, email, status, labels, version, \
         create_time, update_time, external_ids) \
         SELECT gen_random_uuid(), 'Reader' || g, 'Gone', 'reader' || g || '@gone.example', 1, \
         '{}', 1, now(), now(), '{}' FROM generate_series(1, 5000) AS g",
    )
    .execute(&mut app.db().await)
    .await
    .unwrap();
    assert_eq!(inserted, 5000);
    let mut stream = app
        .client
        .clone()
        .export_customers(pb::ExportCustomersRequest {
            filter: String::new(),
            show_deleted: false,
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.given_name.starts_with("Reader"), "{first:?}");
    crate::helpers::eventually("the walk waits for the reader in its snapshot", || async {
        idle_in_transaction(&app).await == 1
    })
    .await;

    drop(stream);

    crate::helpers::eventually("the export's snapshot has ended", || async {
        idle_in_transaction(&app).await == 0
    })
    .await;
    // The connection went back to the pool, usable.
    let page = pb::ListCustomersRequest {
        page_size: 10,
        ..Default::default()
    };
    assert_eq!(app.customer_names(page).await.len(), 10);
}
