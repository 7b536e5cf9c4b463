//! EraseCustomer (issue 19): after an erasure, nothing the service holds or says names the
//! person. The proof is a `pg_dump` of the whole test database and every line the server
//! logged (captured at DEBUG through the production subscriber), searched for each of the
//! person's identifiers, in clear and as the hex of the `bytea` columns; the relay publishes
//! `CustomerErased` to NATS. Also: scopes, validation (AIP-193), retries, REST and gRPC-web.

use customer_api::{config::LogFormat, pb};
use http::{Method, StatusCode};
use prost::Message;
use tonic::Code;

use crate::{
    capture::captured,
    events::{header, jetstream_context, private_stream, stream_messages},
    helpers::scoped,
    helpers::{TestApp, assert_invalid, assert_reason, labels, nats_url},
    rest, transport,
};

/// The person erased: every value is unique to this test, so a hit anywhere is theirs.
const GIVEN: &str = "Zephyrine";
const FAMILY: &str = "Quillfeather";
const EMAIL: &str = "zephyrine.quill.erase9917@example-mail.org";
const NEW_EMAIL: &str = "zq.second.erase9917@example-mail.org";
const PHONE: &str = "+4915199887766";
const STREET: &str = "Erasurestrasse 17";
const NOTE: &str = "Prefers calls after six, hummingbird-7731";
const NEW_NOTE: &str = "Moved house, kingfisher-5521";
const EXTERNAL_ID: &str = "crm-erase-99173";
const LABEL: &str = "vip-erase-4471";

/// The person's identifiers, as text: each value, the email's local part, the phone's digits.
fn identifiers() -> Vec<String> {
    let mut all: Vec<String> = [
        GIVEN,
        FAMILY,
        EMAIL,
        NEW_EMAIL,
        PHONE,
        &PHONE[1..],
        STREET,
        NOTE,
        NEW_NOTE,
        EXTERNAL_ID,
        LABEL,
    ]
    .map(str::to_owned)
    .into();
    all.push(EMAIL.split('@').next().unwrap().to_owned());
    all.push(NEW_EMAIL.split('@').next().unwrap().to_owned());
    all
}

/// `text` as pg_dump writes a `bytea` holding it: lowercase hex.
fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The whole test database as `pg_dump` (PostgreSQL 15's, plain SQL) writes it.
async fn dump(app: &TestApp) -> String {
    let pg_dump = std::path::Path::new("/usr/lib/postgresql/15/bin/pg_dump");
    assert!(
        pg_dump.exists(),
        "{} is missing: install PostgreSQL 15's client tools",
        pg_dump.display()
    );
    let output = tokio::process::Command::new(pg_dump)
        .arg("--no-password")
        .arg(format!("--dbname={}", app.database_url))
        .env_clear()
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn erase_request(name: &str, request_id: &str) -> pb::EraseCustomerRequest {
    pb::EraseCustomerRequest {
        name: name.to_owned(),
        reason: pb::ErasureReason::DataSubjectRequest as i32,
        reference: "DSR-2026-0042".into(),
        request_id: request_id.to_owned(),
    }
}

/// What the scenario hands back for the checks made outside the capture.
struct Traces {
    dump: String,
    control_email: String,
    erased_message: Vec<u8>,
}

/// The person's whole life, with request ids on every write, a relay to a private stream,
/// then the erasure and every way to read them back.
async fn life_and_erasure() -> Traces {
    let url = nats_url();
    let (stream, prefix) = private_stream();
    let mut app = TestApp::spawn_with(|settings| {
        settings.events.nats_url = Some(url.clone());
        settings.events.nats_stream = stream.clone();
        settings.events.nats_subject_prefix = prefix.clone();
    })
    .await;
    let mut client = app.client.clone();
    let control = app.create("Aaron", "Control").await;
    let create_id = uuid();
    let create = pb::CreateCustomerRequest {
        duplicate_policy: 0,
        customer: Some(pb::Customer {
            given_name: GIVEN.into(),
            family_name: FAMILY.into(),
            email: EMAIL.into(),
            phone: PHONE.into(),
            address: Some(pb::PostalAddress {
                lines: vec![STREET.into()],
                locality: "Berlin".into(),
                postal_code: "10115".into(),
                country_code: "DE".into(),
                ..Default::default()
            }),
            labels: labels(&[("tier", LABEL)]),
            external_ids: labels(&[("crm", EXTERNAL_ID)]),
            ..Default::default()
        }),
        request_id: create_id.clone(),
    };
    let person = client
        .create_customer(create.clone())
        .await
        .unwrap()
        .into_inner();
    let name = person.name.clone();
    let update = |email: &str, request_id: String| pb::UpdateCustomerRequest {
        customer: Some(pb::Customer {
            name: name.clone(),
            email: email.into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["email".into()],
        }),
        request_id,
        allow_missing: false,
    };
    client
        .update_customer(update(NEW_EMAIL, uuid()))
        .await
        .unwrap();
    // A write that changes nothing records no event, only its stored response.
    client
        .update_customer(update(NEW_EMAIL, uuid()))
        .await
        .unwrap();
    let note = client
        .create_note(pb::CreateNoteRequest {
            parent: name.clone(),
            note: Some(pb::Note {
                text: NOTE.into(),
                ..Default::default()
            }),
            request_id: uuid(),
        })
        .await
        .unwrap()
        .into_inner();
    client
        .update_note(pb::UpdateNoteRequest {
            note: Some(pb::Note {
                name: note.name.clone(),
                text: NEW_NOTE.into(),
                ..Default::default()
            }),
            update_mask: None,
            request_id: uuid(),
        })
        .await
        .unwrap();
    // A listing by email: the person is on the second page.
    let first_page = client
        .list_customers(pb::ListCustomersRequest {
            page_size: 1,
            order_by: "email".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first_page.customers[0].name, control.name);
    let js = jetstream_context(&url).await;
    // The control's and the person's events; the update that changed nothing has none.
    stream_messages(&js, &stream, 5).await;

    let erase_id = uuid();
    let erasure = client
        .erase_customer(erase_request(&name, &erase_id))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(erasure.customer, name);
    assert_eq!(erasure.reason, pb::ErasureReason::DataSubjectRequest as i32);
    assert_eq!(erasure.reference, "DSR-2026-0042");
    assert_eq!(erasure.actor, "test-user");
    assert_eq!(erasure.notes_erased, 1);
    // Registered, updated, note added, note updated.
    assert_eq!(erasure.events_scrubbed, 4);
    // Create, two updates, the note's create and update.
    assert_eq!(erasure.replays_erased, 5);
    // A retry answers the first response; so does an erasure of the erased customer.
    let retried = client
        .erase_customer(erase_request(&name, &erase_id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried, erasure);
    let again = client
        .erase_customer(erase_request(&name, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, erasure);

    // Nothing reads the person back.
    let missing = client
        .get_customer(pb::GetCustomerRequest {
            name: name.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    let missing = client
        .get_note(pb::GetNoteRequest {
            name: note.name.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    let lookup = client
        .lookup_customer(pb::LookupCustomerRequest {
            source: "crm".into(),
            external_id: EXTERNAL_ID.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(lookup.code(), Code::NotFound, "{lookup:?}");
    let rest_of_listing = client
        .list_customers(pb::ListCustomersRequest {
            page_size: 1,
            order_by: "email".into(),
            page_token: first_page.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest_of_listing.customers, vec![]);
    // A retry of the create is refused, not run again: the person does not come back.
    let replay = client.create_customer(create).await.unwrap_err();
    assert_reason(&replay, Code::FailedPrecondition, "REQUEST_ERASED");
    assert_eq!(app.count("customers", "").await, 1);
    assert_eq!(
        app.count(
            "request_ids",
            &format!(
                "request_id = '{}' AND forgotten_reason = 'erased' AND response IS NULL \
                 AND response_pb IS NULL",
                create_id
            )
        )
        .await,
        1
    );
    // The history keeps what happened, in order, and not who it was.
    let history = crate::events::list_all(&app, &name, "").await;
    let kinds: Vec<&str> = history.iter().map(crate::events::kind).collect();
    assert_eq!(
        kinds,
        [
            "registered",
            "updated",
            "note_added",
            "note_updated",
            "erased"
        ]
    );
    let erased_event = history.last().unwrap();
    let snapshot = erased_event.snapshot.clone().unwrap();
    assert_eq!(
        (snapshot.name.as_str(), snapshot.email.as_str()),
        (name.as_str(), "")
    );
    assert_eq!(erased_event.request_id, erase_id);
    assert_eq!(app.count("erasure_log", "").await, 1);

    // The relay publishes the erasure: downstream systems erase their copies.
    let messages = stream_messages(&js, &stream, 6).await;
    let erased = messages.last().unwrap();
    assert_eq!(header(erased, "ce-type"), "customer.v1.CustomerErased");
    assert_eq!(header(erased, "ce-subject"), name);
    assert_eq!(erased.subject.as_str(), format!("{prefix}.erased"));
    let erased_message = erased.payload.to_vec();
    js.delete_stream(&stream).await.unwrap();

    app.stop().await;
    Traces {
        dump: dump(&app).await,
        control_email: control.email,
        erased_message,
    }
}

#[test]
fn after_an_erasure_neither_the_database_nor_the_log_nor_nats_names_the_person() {
    let (logs, traces) = captured(LogFormat::Text, "debug", life_and_erasure());

    // The dump and the capture work: the control customer and the erasure are in them.
    assert!(
        traces.dump.contains(&traces.control_email),
        "no data dumped"
    );
    assert!(traces.dump.contains("DSR-2026-0042"), "no erasure log row");
    assert!(
        logs.contains("erased customer"),
        "no erasure log line:\n{logs}"
    );
    assert!(
        logs.contains("creating customer"),
        "capture is empty:\n{logs}"
    );
    for identifier in identifiers() {
        assert!(
            !traces.dump.contains(&identifier),
            "the dump contains {identifier}"
        );
        assert!(
            !traces.dump.contains(&hex(&identifier)),
            "the dump contains {identifier} as bytea"
        );
        assert!(!logs.contains(&identifier), "the log contains {identifier}");
        let body = String::from_utf8_lossy(&traces.erased_message);
        assert!(
            !body.contains(&identifier),
            "CustomerErased carries {identifier}"
        );
    }
    let event = pb::CustomerEvent::decode(traces.erased_message.as_slice()).unwrap();
    assert!(matches!(
        event.kind,
        Some(pb::customer_event::Kind::Erased(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn erasure_needs_the_privacy_scope_or_admin() {
    let app = TestApp::spawn().await;
    let first = app.create("Scope", "One").await;
    let second = app.create("Scope", "Two").await;
    let read_write = scoped(&["customers.read", "customers.write"]);

    let denied = app
        .client_with(Some(&read_write))
        .erase_customer(erase_request(&first.name, ""))
        .await
        .unwrap_err();

    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("customers.privacy"), "{denied:?}");
    assert_eq!(app.count("customers", "").await, 2);
    for (token, customer) in [
        (scoped(&["customers.privacy"]), &first),
        (scoped(&["customers.admin"]), &second),
    ] {
        let erased = app
            .client_with(Some(&token))
            .erase_customer(erase_request(&customer.name, ""))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(erased.actor, "scoped");
    }
    assert_eq!(app.count("customers", "").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_erasure_names_every_bad_field_and_erases_nothing() {
    let app = TestApp::spawn().await;
    let customer = app.create("Invalid", "Erase").await;
    let mut client = app.client.clone();

    let invalid = client
        .erase_customer(pb::EraseCustomerRequest {
            name: "customers/nope".into(),
            reason: 0,
            reference: "ann@example.com".into(),
            request_id: "not-a-uuid".into(),
        })
        .await
        .unwrap_err();
    assert_invalid(
        &invalid,
        "INVALID_FIELDS",
        &["name", "reason", "reference", "request_id"],
    );
    assert!(!invalid.message().contains("ann@"), "{invalid:?}");
    let unknown_reason = client
        .erase_customer(pb::EraseCustomerRequest {
            reason: 99,
            ..erase_request(&customer.name, "")
        })
        .await
        .unwrap_err();
    assert_invalid(&unknown_reason, "INVALID_FIELDS", &["reason"]);
    let missing = client
        .erase_customer(erase_request(
            &format!("customers/{}", uuid::Uuid::now_v7()),
            "",
        ))
        .await
        .unwrap_err();
    assert_reason(&missing, Code::NotFound, "RESOURCE_NOT_FOUND");
    // A request id reused for another erasure is refused.
    let request_id = uuid();
    client
        .erase_customer(erase_request(&customer.name, &request_id))
        .await
        .unwrap();
    let other = app.create("Other", "Erase").await;
    let reused = client
        .erase_customer(erase_request(&other.name, &request_id))
        .await
        .unwrap_err();
    assert_invalid(&reused, "REQUEST_ID_REUSED", &["request_id"]);
    assert_eq!(app.count("customers", "").await, 1);
    assert_eq!(app.count("erasure_log", "").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn erasure_over_rest_and_grpc_web_erases_soft_deleted_customers_too() {
    let app = TestApp::spawn().await;
    let over_rest = app.create("Rest", "Erase").await;
    let over_web = app.create("Web", "Erase").await;
    app.client
        .clone()
        .delete_customer(pb::DeleteCustomerRequest {
            name: over_rest.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap();

    let body = r#"{"reason": "CONSENT_WITHDRAWN", "reference": "case:17"}"#;
    let path = format!("/v1/{}:erase", over_rest.name);
    let (status, _, json) = rest::call(&app, false, Method::POST, &path, Some(body), &[]).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["customer"], over_rest.name.as_str());
    assert_eq!(json["reason"], "CONSENT_WITHDRAWN");
    assert_eq!(json["reference"], "case:17");
    let (status, _, json) = rest::call(
        &app,
        false,
        Method::POST,
        &path,
        Some(r#"{"reference": "has spaces"}"#),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert_eq!(rest::error_reason(&json), "INVALID_FIELDS");
    assert_eq!(rest::violations(&json), ["reason", "reference"]);

    let (parts, body) = transport::grpc_web(
        &app,
        "EraseCustomer",
        transport::frame(&erase_request(&over_web.name, "")),
        "application/grpc-web+proto",
    )
    .await;
    assert_eq!(parts.status, 200);
    let (data, trailers) = transport::unframe(&body);
    assert_eq!(transport::trailer(&trailers, "grpc-status"), Some("0"));
    let erased = pb::CustomerErasure::decode(data[0].as_slice()).unwrap();
    assert_eq!(erased.customer, over_web.name);
    assert_eq!(app.count("customers", "").await, 0);
    assert_eq!(app.count("erasure_log", "").await, 2);
}
