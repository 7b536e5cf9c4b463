//! ImportCustomers (issue 18): a client stream of customers or of NDJSON/CSV chunks, over
//! gRPC and REST, committed in batches of 1,000 with one event per customer; rejected rows
//! reported with their line and every violation; dry runs; upserts by external id; re-sends
//! with the same request id that resume instead of duplicating; a failed batch leaves
//! nothing of itself; the operations (Get, List, Cancel) over gRPC, gRPC-web and REST; the
//! scopes; the CLI.

use bytes::Bytes;
use customer_api::{
    longrunning::{self, operations_client::OperationsClient},
    pb,
};
use diesel_async::RunQueryDsl;
use http::{Method, StatusCode};
use prost::Message;
use serde_json::Value;
use tonic::{Code, transport::Channel};

use crate::helpers::{Scratch, TestApp, eventually, http_request, labels, new_customer, scoped};

/// The first message of an import.
fn settings(
    mode: pb::ImportMode,
    request_id: &str,
    format: pb::ImportFormat,
) -> pb::ImportCustomersRequest {
    pb::ImportCustomersRequest {
        settings: Some(pb::ImportSettings {
            mode: mode as i32,
            validate_only: false,
            request_id: request_id.into(),
            format: format as i32,
        }),
        ..Default::default()
    }
}

fn customers(customers: Vec<pb::Customer>) -> pb::ImportCustomersRequest {
    pb::ImportCustomersRequest {
        customers,
        ..Default::default()
    }
}

fn chunk(text: &str) -> pb::ImportCustomersRequest {
    pb::ImportCustomersRequest {
        chunk: text.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// Sends `messages` as one import with the app's all-scopes token.
async fn import(
    app: &TestApp,
    messages: Vec<pb::ImportCustomersRequest>,
) -> Result<longrunning::Operation, tonic::Status> {
    app.client
        .clone()
        .import_customers(futures_util::stream::iter(messages))
        .await
        .map(tonic::Response::into_inner)
}

fn response(operation: &longrunning::Operation) -> pb::ImportCustomersResponse {
    match &operation.result {
        Some(longrunning::operation::Result::Response(any)) => {
            assert_eq!(
                any.type_url,
                "type.googleapis.com/customer.v1.ImportCustomersResponse"
            );
            pb::ImportCustomersResponse::decode(any.value.as_slice()).unwrap()
        }
        other => panic!("no response: {other:?}"),
    }
}

fn metadata(operation: &longrunning::Operation) -> pb::ImportCustomersMetadata {
    let any = operation.metadata.as_ref().unwrap();
    assert_eq!(
        any.type_url,
        "type.googleapis.com/customer.v1.ImportCustomersMetadata"
    );
    pb::ImportCustomersMetadata::decode(any.value.as_slice()).unwrap()
}

/// `(line, [field paths])` of every reported row.
fn rejected(response: &pb::ImportCustomersResponse) -> Vec<(i64, Vec<String>)> {
    response
        .errors
        .iter()
        .map(|error| {
            (
                error.line,
                error
                    .field_violations
                    .iter()
                    .map(|violation| violation.field.clone())
                    .collect(),
            )
        })
        .collect()
}

fn operations(app: &TestApp) -> OperationsClient<Channel> {
    OperationsClient::new(app.channel.clone())
}

fn authed<T>(message: T, authorization: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", authorization.parse().unwrap());
    request
}

async fn get_operation(
    app: &TestApp,
    name: &str,
    authorization: &str,
) -> Result<longrunning::Operation, tonic::Status> {
    operations(app)
        .get_operation(authed(
            longrunning::GetOperationRequest { name: name.into() },
            authorization,
        ))
        .await
        .map(tonic::Response::into_inner)
}

fn numbered(count: usize, prefix: &str) -> Vec<pb::Customer> {
    (0..count)
        .map(|i| pb::Customer {
            given_name: format!("{prefix}{i}"),
            family_name: "Import".into(),
            email: format!("{prefix}.{i}@example.com"),
            ..Default::default()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_streamed_import_commits_valid_rows_and_reports_each_invalid_one_with_every_violation() {
    let app = TestApp::spawn().await;
    let existing = app.register(new_customer("Existing", "One")).await;
    let mut rows = numbered(12, "row");
    rows[2].email = "not-an-email".into();
    rows[6].given_name = String::new();
    rows[6].address = Some(pb::PostalAddress {
        country_code: "XX".into(),
        ..Default::default()
    });
    rows[8].email = rows[0].email.to_uppercase();
    rows[10].email = existing.email.clone();
    let request_id = uuid::Uuid::new_v4().to_string();

    let operation = import(
        &app,
        vec![
            settings(
                pb::ImportMode::Unspecified,
                &request_id,
                pb::ImportFormat::Unspecified,
            ),
            customers(rows[..5].to_vec()),
            customers(rows[5..].to_vec()),
        ],
    )
    .await
    .unwrap();

    assert_eq!(operation.name, format!("operations/{request_id}"));
    assert!(operation.done);
    let response = response(&operation);
    assert_eq!(
        (
            response.created,
            response.updated,
            response.unchanged,
            response.rejected
        ),
        (8, 0, 0, 4)
    );
    assert_eq!(
        rejected(&response),
        [
            (3, vec!["customer.email".to_owned()]),
            (
                7,
                vec![
                    "customer.given_name".to_owned(),
                    "customer.address.country_code".to_owned()
                ]
            ),
            (9, vec!["customer.email".to_owned()]),
            (11, vec!["customer.email".to_owned()]),
        ]
    );
    assert_eq!(
        response.errors[2].field_violations[0].description,
        "repeats the email of line 1; an email belongs to one customer"
    );
    assert_eq!(
        response.errors[3].field_violations[0].description,
        "another live customer already uses this email"
    );
    assert!(!response.errors_truncated);
    let progress = metadata(&operation);
    assert_eq!(
        (
            progress.rows_read,
            progress.rows_committed,
            progress.rows_rejected
        ),
        (12, 8, 4)
    );
    assert_eq!(app.count("customers", "family_name = 'Import'").await, 8);
    assert_eq!(
        app.count(
            "events",
            &format!("event_type = 'CustomerRegistered' AND request_id = '{request_id}'")
        )
        .await,
        8
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rest_imports_stream_ndjson_and_csv_files() {
    let app = TestApp::spawn().await;
    let bearer = app.bearer();
    let ndjson = "{\"givenName\":\"Nd\",\"familyName\":\"Json\",\"email\":\"nd1@example.com\"}\n\
                  {\"givenName\":\"Nd\",\"familyName\":\"Json\",\"nickname\":\"x\"}\n\
                  \n\
                  {\"result\":{\"givenName\":\"Nd\",\"familyName\":\"Json\",\"email\":\"nd2@example.com\",\"externalIds\":{\"crm\":\"7\"}}}\n";

    let (status, headers, body) = http_request(
        &app,
        Method::POST,
        "/v1/customers:import",
        &[
            ("authorization", &bearer),
            ("content-type", "application/x-ndjson"),
        ],
        Bytes::from(ndjson),
    )
    .await;

    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert_eq!(headers["content-type"], "application/json");
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["done"], true);
    assert_eq!(
        json["response"]["@type"],
        "type.googleapis.com/customer.v1.ImportCustomersResponse"
    );
    assert_eq!(json["response"]["created"], "2");
    assert_eq!(json["response"]["rejected"], "1");
    assert_eq!(json["response"]["errors"][0]["line"], "2");
    assert_eq!(
        json["response"]["errors"][0]["fieldViolations"][0]["field"],
        "customer"
    );
    assert_eq!(json["metadata"]["rowsCommitted"], "2");

    let csv = "name,given_name,family_name,email,phone,status,labels,external_ids.crm\r\n\
               customers/ignored,Cs,\"V, Jr\",cs1@example.com,'+358401234567,ACTIVE,\"{\"\"tier\"\":\"\"gold\"\"}\",8\r\n\
               ,Cs,V,cs2@example.com,,SLEEPY,,\r\n\
               ,Cs,V,cs3@example.com,,,,9\r\n";
    let (status, _, body) = http_request(
        &app,
        Method::POST,
        "/v1/customers:import?mode=create-only",
        &[("authorization", &bearer), ("content-type", "text/csv")],
        Bytes::from(csv),
    )
    .await;

    assert_eq!(status, StatusCode::OK, "{body:?}");
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["response"]["created"], "2");
    assert_eq!(json["response"]["errors"][0]["line"], "3");
    assert_eq!(
        json["response"]["errors"][0]["fieldViolations"][0]["field"],
        "customer.status"
    );
    let imported = app
        .client
        .clone()
        .lookup_customer(pb::LookupCustomerRequest {
            source: "crm".into(),
            external_id: "8".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(imported.family_name, "V, Jr");
    assert_eq!(imported.phone, "+358401234567");
    assert_eq!(imported.labels, labels(&[("tier", "gold")]));

    let (status, _, _) = http_request(
        &app,
        Method::POST,
        "/v1/customers:import",
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
        ],
        Bytes::from("{}"),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // A file refused as a whole (a header naming no column) is the operation's error as an
    // HTTP error, naming the operation, not a 200.
    let request_id = uuid::Uuid::now_v7().to_string();
    let (status, _, body) = http_request(
        &app,
        Method::POST,
        &format!("/v1/customers:import?requestId={request_id}"),
        &[("authorization", &bearer), ("content-type", "text/csv")],
        Bytes::from("{}\n"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"]["status"], "INVALID_ARGUMENT");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the CSV header names an unknown column `{}`"),
        "{json}"
    );
    assert_eq!(
        json["error"]["details"][0]["metadata"]["operation"],
        format!("operations/{request_id}")
    );

    // Another method: 405 with the one it takes.
    let (status, headers, _) = http_request(
        &app,
        Method::PUT,
        "/v1/customers:import",
        &[("authorization", &bearer), ("content-type", "text/csv")],
        Bytes::new(),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "POST");
    assert_eq!(app.count("customers", "").await, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_only_checks_every_row_and_commits_nothing() {
    let app = TestApp::spawn().await;
    let existing = app.register(new_customer("Existing", "Two")).await;
    let file = format!(
        "{{\"givenName\":\"A\",\"familyName\":\"B\",\"email\":\"dry1@example.com\"}}\n\
         {{\"givenName\":\"A\",\"familyName\":\"B\",\"email\":\"{}\"}}\n",
        existing.email
    );
    let mut first = settings(pb::ImportMode::CreateOnly, "", pb::ImportFormat::Ndjson);
    first.settings.as_mut().unwrap().validate_only = true;

    let operation = import(&app, vec![first, chunk(&file[..30]), chunk(&file[30..])])
        .await
        .unwrap();

    let response = response(&operation);
    assert_eq!((response.created, response.rejected), (1, 1));
    assert_eq!(
        rejected(&response),
        [(2, vec!["customer.email".to_owned()])]
    );
    let progress = metadata(&operation);
    assert!(progress.validate_only);
    assert_eq!((progress.rows_read, progress.rows_committed), (2, 0));
    assert_eq!(app.count("customers", "").await, 1);
    assert_eq!(app.count("events", "").await, 1);
}

fn line_count(rows: usize) -> i64 {
    i64::try_from(rows).unwrap()
}

/// A dry run answers what the real run then does, also for rows repeating an email or a key
/// of a row in an earlier batch (which a dry run never writes to the table).
#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_finds_repeats_across_batches_as_the_real_run_does() {
    let app = TestApp::spawn().await;
    let batch = customer_api::service::import::BATCH_ROWS;
    let keyed = |i: usize, key: &str| pb::Customer {
        external_ids: [("crm".to_owned(), key.to_owned())].into(),
        ..numbered(i + 1, "x").pop().unwrap()
    };
    for mode in [
        pb::ImportMode::CreateOnly,
        pb::ImportMode::UpsertByExternalId,
    ] {
        let prefix = format!("{}", mode as i32);
        let mut rows: Vec<pb::Customer> = (0..batch)
            .map(|i| pb::Customer {
                email: format!("m{prefix}.{i}@example.com"),
                ..keyed(i, &format!("{prefix}-{i}"))
            })
            .collect();
        // The second batch: line batch+1 repeats the email of line 1 under a key of its own;
        // line batch+2 repeats line 2's key with a new email; line batch+3 is new.
        rows.push(pb::Customer {
            email: format!("m{prefix}.0@example.com"),
            ..keyed(batch, &format!("{prefix}-new-a"))
        });
        rows.push(pb::Customer {
            email: format!("m{prefix}.other@example.com"),
            ..keyed(batch + 1, &format!("{prefix}-1"))
        });
        rows.push(pb::Customer {
            email: format!("m{prefix}.new@example.com"),
            ..keyed(batch + 2, &format!("{prefix}-new-b"))
        });
        let answer = |validate_only: bool| {
            let mut first = settings(mode, "", pb::ImportFormat::Unspecified);
            first.settings.as_mut().unwrap().validate_only = validate_only;
            import(&app, vec![first, customers(rows.clone())])
        };
        let dry = response(&answer(true).await.unwrap());
        let mine = format!("email LIKE 'm{prefix}.%'");
        assert_eq!(app.count("customers", &mine).await, 0, "{mode:?}");
        let real = response(&answer(false).await.unwrap());
        assert_eq!(
            app.count("customers", &mine).await,
            line_count(batch) + 1,
            "{mode:?}"
        );

        let line = line_count(batch);
        let expected = match mode {
            // The repeated email and the repeated key are refused.
            pb::ImportMode::CreateOnly => (
                (line + 1, 0, 2),
                vec![
                    (line + 1, vec!["customer.email".to_owned()]),
                    (line + 2, vec!["customer.external_ids[\"crm\"]".to_owned()]),
                ],
            ),
            // The repeated key updates the customer line 2 registered.
            _ => (
                (line + 1, 1, 1),
                vec![(line + 1, vec!["customer.email".to_owned()])],
            ),
        };
        for (run, response) in [("dry", &dry), ("real", &real)] {
            assert_eq!(
                (response.created, response.updated, response.rejected),
                expected.0,
                "{mode:?} {run}"
            );
            assert_eq!(rejected(response), expected.1, "{mode:?} {run}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn upsert_mode_creates_then_updates_by_external_id_with_customer_updated_events() {
    let app = TestApp::spawn().await;
    let keyed = |key: &str, family: &str| pb::Customer {
        given_name: "Up".into(),
        family_name: family.into(),
        email: format!("up.{key}@example.com"),
        external_ids: [("crm".to_owned(), key.to_owned())].into(),
        ..Default::default()
    };
    let first = import(
        &app,
        vec![
            settings(
                pb::ImportMode::UpsertByExternalId,
                "",
                pb::ImportFormat::Unspecified,
            ),
            customers(vec![
                keyed("1", "First"),
                keyed("2", "First"),
                new_customer("No", "Key"),
            ]),
        ],
    )
    .await
    .unwrap();
    let first = response(&first);
    assert_eq!((first.created, first.updated, first.rejected), (2, 0, 1));
    assert_eq!(
        rejected(&first),
        [(3, vec!["customer.external_ids".to_owned()])]
    );

    let second = import(
        &app,
        vec![
            settings(
                pb::ImportMode::UpsertByExternalId,
                "",
                pb::ImportFormat::Unspecified,
            ),
            customers(vec![
                keyed("1", "Second"),
                keyed("2", "First"),
                keyed("3", "New"),
            ]),
        ],
    )
    .await
    .unwrap();

    let second = response(&second);
    assert_eq!(
        (
            second.created,
            second.updated,
            second.unchanged,
            second.rejected
        ),
        (1, 1, 1, 0)
    );
    let one = app
        .client
        .clone()
        .lookup_customer(pb::LookupCustomerRequest {
            source: "crm".into(),
            external_id: "1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.family_name, "Second");
    assert_eq!(
        app.count(
            "events",
            &format!(
                "event_type = 'CustomerUpdated' AND aggregate = '{}'",
                one.name
            )
        )
        .await,
        1
    );
    assert_eq!(
        app.count("events", "event_type = 'CustomerRegistered'")
            .await,
        3
    );
    assert_eq!(app.count("customers", "").await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resent_import_with_the_same_request_id_duplicates_nothing() {
    let app = TestApp::spawn().await;
    let request_id = uuid::Uuid::new_v4().to_string();
    let messages = || {
        vec![
            settings(
                pb::ImportMode::CreateOnly,
                &request_id,
                pb::ImportFormat::Unspecified,
            ),
            customers(numbered(5, "again")),
        ]
    };
    let first = import(&app, messages()).await.unwrap();

    let second = import(&app, messages()).await.unwrap();

    assert_eq!(second, first);
    assert_eq!(response(&second).created, 5);
    assert_eq!(app.count("customers", "").await, 5);
    assert_eq!(app.count("events", "").await, 5);
    assert_eq!(app.count("operations", "").await, 1);

    let mut other = messages();
    other[0].settings.as_mut().unwrap().mode = pb::ImportMode::UpsertByExternalId as i32;
    let status = import(&app, other).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("settings.request_id"),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_failing_midway_leaves_nothing_of_itself_and_a_resend_resumes_after_the_committed_ones()
 {
    let app = TestApp::spawn().await;
    let mut conn = app.db().await;
    // A failure only the database knows of, in the second batch's row 1,500.
    diesel::sql_query(
        "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.email = 'boom.1499@example.com' THEN RAISE EXCEPTION 'boom'; END IF; \
         RETURN NEW; END $$",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query(
        "CREATE TRIGGER refuse_boom BEFORE INSERT ON customers \
         FOR EACH ROW EXECUTE FUNCTION refuse_boom()",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let request_id = uuid::Uuid::new_v4().to_string();
    let rows = numbered(2500, "boom");
    let messages = || {
        let mut messages = vec![settings(
            pb::ImportMode::CreateOnly,
            &request_id,
            pb::ImportFormat::Unspecified,
        )];
        messages.extend(rows.chunks(500).map(|part| customers(part.to_vec())));
        messages
    };

    let status = import(&app, messages()).await.unwrap_err();

    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert_eq!(app.count("customers", "").await, 1000);
    assert_eq!(app.count("events", "").await, 1000);
    let stopped = get_operation(&app, &format!("operations/{request_id}"), &app.bearer())
        .await
        .unwrap();
    assert!(!stopped.done);
    assert_eq!(metadata(&stopped).rows_committed, 1000);

    diesel::sql_query("DROP TRIGGER refuse_boom ON customers")
        .execute(&mut conn)
        .await
        .unwrap();
    let resumed = import(&app, messages()).await.unwrap();

    assert!(resumed.done);
    assert_eq!(response(&resumed).created, 2500);
    assert_eq!(metadata(&resumed).rows_read, 2500);
    assert_eq!(app.count("customers", "").await, 2500);
    assert_eq!(
        app.count("events", "event_type = 'CustomerRegistered'")
            .await,
        2500
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn operations_are_read_listed_and_cancelled_over_grpc_grpc_web_and_rest() {
    let app = TestApp::spawn().await;
    let bearer = app.bearer();
    let request_id = uuid::Uuid::new_v4().to_string();
    let name = format!("operations/{request_id}");
    let (sender, receiver) = tokio::sync::mpsc::channel::<pb::ImportCustomersRequest>(4);
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|message| (message, receiver))
    });
    let mut client = app.client.clone();
    let running = tokio::spawn(async move { client.import_customers(stream).await });
    sender
        .send(settings(
            pb::ImportMode::CreateOnly,
            &request_id,
            pb::ImportFormat::Unspecified,
        ))
        .await
        .unwrap();
    sender
        .send(customers(numbered(1000, "first")))
        .await
        .unwrap();
    eventually("the first batch commits", || async {
        get_operation(&app, &name, &app.bearer())
            .await
            .is_ok_and(|operation| metadata(&operation).rows_committed == 1000)
    })
    .await;

    // gRPC: the caller's own operation; anyone else's is not there.
    let running_now = get_operation(&app, &name, &bearer).await.unwrap();
    assert!(!running_now.done);
    let stranger = get_operation(&app, &name, &scoped(&["customers.write"]))
        .await
        .unwrap_err();
    assert_eq!(stranger.code(), Code::NotFound);
    let listed = operations(&app)
        .list_operations(authed(
            longrunning::ListOperationsRequest {
                filter: "done = false".into(),
                ..Default::default()
            },
            &bearer,
        ))
        .await
        .unwrap()
        .into_inner();
    let listed: Vec<&str> = listed.operations.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(listed, [name.as_str()]);

    // REST: cancel; the import stops after the batch under way.
    let (status, _, body) = http_request(
        &app,
        Method::POST,
        &format!("/v1/{name}:cancel"),
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
        ],
        Bytes::from("{}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    sender
        .send(customers(numbered(500, "second")))
        .await
        .unwrap();
    drop(sender);
    let cancelled = running.await.unwrap().unwrap().into_inner();

    assert!(cancelled.done);
    match &cancelled.result {
        Some(longrunning::operation::Result::Error(status)) => assert_eq!(status.code, 1),
        other => panic!("not cancelled: {other:?}"),
    }
    assert_eq!(metadata(&cancelled).rows_committed, 1000);
    assert!(metadata(&cancelled).cancel_requested);
    assert_eq!(app.count("customers", "").await, 1000);

    let (status, _, body) = http_request(
        &app,
        Method::GET,
        &format!("/v1/{name}"),
        &[("authorization", &bearer)],
        Bytes::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["name"], name);
    assert_eq!(json["done"], true);
    assert_eq!(json["error"]["code"], 1);
    assert_eq!(json["metadata"]["rowsCommitted"], "1000");
    let (status, _, body) = http_request(
        &app,
        Method::GET,
        "/v1/operations?filter=done%20%3D%20true",
        &[("authorization", &bearer)],
        Bytes::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["operations"][0]["name"], name);

    // gRPC-web (binary, HTTP/1.1).
    let message = longrunning::GetOperationRequest { name: name.clone() }.encode_to_vec();
    let mut framed = vec![0_u8];
    framed.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(&message);
    let (status, _, body) = http_request(
        &app,
        Method::POST,
        "/google.longrunning.Operations/GetOperation",
        &[
            ("authorization", &bearer),
            ("content-type", "application/grpc-web+proto"),
            ("x-grpc-web", "1"),
        ],
        Bytes::from(framed),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body[0], 0, "a data frame first");
    let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    let got = longrunning::Operation::decode(&body[5..5 + len]).unwrap();
    assert_eq!(got, cancelled);
}

#[tokio::test(flavor = "multi_thread")]
async fn imports_need_customers_write_and_operations_their_creator() {
    let app = TestApp::spawn().await;
    let reader = scoped(&["customers.read"]);

    let status = app
        .client_with(Some(&reader))
        .import_customers(futures_util::stream::iter(vec![settings(
            pb::ImportMode::CreateOnly,
            "",
            pb::ImportFormat::Unspecified,
        )]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let (status, _, _) = http_request(
        &app,
        Method::POST,
        "/v1/customers:import",
        &[("authorization", &reader), ("content-type", "text/csv")],
        Bytes::from("given_name\n"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let status = get_operation(
        &app,
        "operations/0190b2a4-0000-7000-8000-000000000000",
        &reader,
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = get_operation(
        &app,
        "operations/0190b2a4-0000-7000-8000-000000000000",
        &app.bearer(),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(app.count("customers", "").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_imports_a_csv_file_and_prints_the_rejected_rows() {
    let app = TestApp::spawn().await;
    let dir = Scratch::new("cli-import");
    let file = dir.0.join("customers.csv");
    std::fs::write(
        &file,
        "given_name,family_name,email\nCli,One,cli1@example.com\nCli,Two,not-an-email\nCli,Three,cli3@example.com\n",
    )
    .unwrap();
    let request_id = uuid::Uuid::new_v4().to_string();

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_customer-api"))
        .env_clear()
        .arg("import")
        .arg(&file)
        .args(["--server", &format!("http://{}", app.addr)])
        .args(["--token", &app.token])
        .args(["--request-id", &request_id, "--quiet"])
        .output()
        .await
        .unwrap();

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!("operations/{request_id}: 2 created, 0 updated, 0 unchanged, 1 rejected")
    );
    assert!(lines[1].starts_with("line 3: customer.email: "), "{stdout}");
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(
        app.count("customers", "family_name IN ('One', 'Three')")
            .await,
        2
    );
}

/// An operation is kept as long as its request id (REQUEST_ID_TTL): one that stopped moving
/// longer ago is forgotten by the hourly purge (which also runs as a server starts), a
/// recent one stays.
#[tokio::test(flavor = "multi_thread")]
async fn operations_older_than_the_request_id_ttl_are_forgotten() {
    let app = TestApp::spawn().await;
    let (old, recent) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    for id in [old, recent] {
        import(
            &app,
            vec![
                settings(
                    pb::ImportMode::CreateOnly,
                    &id.to_string(),
                    pb::ImportFormat::Unspecified,
                ),
                customers(numbered(1, &id.simple().to_string())),
            ],
        )
        .await
        .unwrap();
    }
    diesel::sql_query(format!(
        "UPDATE operations SET update_time = now() - interval '25 hours' WHERE id = '{old}'"
    ))
    .execute(&mut app.db().await)
    .await
    .unwrap();

    // A second server on the same database purges as it starts.
    let _second = TestApp::spawn_on(
        app.database_url.clone(),
        app.database_name.clone(),
        |_| {},
        None,
    )
    .await;
    eventually("the old operation is forgotten", || async {
        app.count("operations", "").await == 1
    })
    .await;
    assert_eq!(
        app.count("operations", &format!("id = '{recent}'")).await,
        1
    );
    let status = get_operation(&app, &format!("operations/{old}"), &app.bearer())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}
