//! Upgrading across stored encodings: events and idempotent replays written as version 1
//! JSON by the release before the versioned encodings (the samples in
//! `tests/fixtures/encoding/v1/` are that release's output) are still served, replayed and
//! scrubbed after the upgrade, next to version 2 rows.

use customer_api::pb::{self, customer_event::Kind};
use diesel::{
    sql_query,
    sql_types::{Bytea, Jsonb, Text, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::RunQueryDsl;
use prost_types::{FieldMask, Timestamp};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::helpers::{TestApp, eventually, fixture, labels, new_customer};

const CUSTOMER: &str = "customers/0190a7b2-8c1e-7c1a-9d2e-1f2a3b4c5d6e";
const COMPANY: &str = "companies/0190a7b2-8c1e-7c1a-9d2e-2a3b4c5d6e7f";
const NOTE: &str =
    "customers/0190a7b2-8c1e-7c1a-9d2e-1f2a3b4c5d6e/notes/0190a7b2-8c1e-7c1a-9d2e-3b4c5d6e7f80";

fn v1_sample(name: &str) -> serde_json::Value {
    let text =
        std::fs::read_to_string(fixture(&format!("encoding/v1/{name}.json"))).expect("v1 sample");
    serde_json::from_str(&text).expect("v1 sample is JSON")
}

fn at(text: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

fn timestamp(text: &str) -> Option<Timestamp> {
    let time = at(text);
    Some(Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    })
}

/// A server that keeps the events these tests write with fixed dates in the past: under the
/// default 30-day retention its pruner (first run at start-up, racing the test's inserts)
/// would delete them once they are numbered.
async fn spawn_keeping_history(
    configure: impl FnOnce(&mut customer_api::config::ServeSettings),
) -> TestApp {
    TestApp::spawn_with(|settings| {
        settings.events.event_retention = std::time::Duration::from_secs(100 * 365 * 86_400);
        configure(settings);
    })
    .await
}

/// An event row as the version 1 release wrote it: JSON in `data`, no `payload`.
async fn insert_v1_event(
    app: &TestApp,
    aggregate: &str,
    sequence: i64,
    event_type: &str,
    data: serde_json::Value,
) -> Uuid {
    let event_id = Uuid::now_v7();
    sql_query(
        "INSERT INTO events (event_id, aggregate, sequence, event_type, data, actor, occur_time) \
         VALUES ($1, $2, $3, $4, $5, 'user:alice', $6)",
    )
    .bind::<SqlUuid, _>(event_id)
    .bind::<Text, _>(aggregate)
    .bind::<diesel::sql_types::BigInt, _>(sequence)
    .bind::<Text, _>(event_type)
    .bind::<Jsonb, _>(data)
    .bind::<Timestamptz, _>(at("2026-01-02T03:04:05.123456Z"))
    .execute(&mut app.db().await)
    .await
    .unwrap();
    event_id
}

/// A request id row as the version 1 release left it: the fingerprint it computed and the
/// response as JSON in `response`.
async fn insert_v1_request_id(
    app: &TestApp,
    request_id: Uuid,
    fingerprint: &[u8],
    response: serde_json::Value,
) {
    sql_query("INSERT INTO request_ids (request_id, fingerprint, response) VALUES ($1, $2, $3)")
        .bind::<SqlUuid, _>(request_id)
        .bind::<Bytea, _>(fingerprint)
        .bind::<Jsonb, _>(response)
        .execute(&mut app.db().await)
        .await
        .unwrap();
}

/// The request fingerprint of the version 1 release (`service::fingerprint`): SHA-256 over
/// the method name and length-prefixed parts. Spelled out so that this test keeps proving
/// that rows written then are honoured, whatever computes fingerprints now.
fn v1_fingerprint(method: &str, parts: &[&str]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().to_vec()
}

/// `customers/0190…` after its update (`event_customer_updated.json`), as served.
fn updated_customer() -> pb::Customer {
    pb::Customer {
        name: CUSTOMER.into(),
        uid: CUSTOMER.trim_start_matches("customers/").into(),
        given_name: "Ada".into(),
        family_name: "King".into(),
        email: "ada@example.com".into(),
        phone: String::new(),
        address: Some(pb::PostalAddress {
            lines: vec!["12 St James's Square".into()],
            locality: "Ockham".into(),
            region: String::new(),
            postal_code: "GU23 6NW".into(),
            country_code: "GB".into(),
        }),
        status: pb::customer::Status::Prospective as i32,
        company: COMPANY.into(),
        business_id: "GB-123456".into(),
        labels: labels(&[("tier", "gold")]),
        external_ids: Default::default(),
        etag: "W/\"2\"".into(),
        create_time: timestamp("2026-01-01T00:00:00Z"),
        update_time: timestamp("2026-01-02T03:04:05.123456Z"),
        delete_time: None,
        expire_time: None,
        business_info: None,
        merged_into: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn events_stored_as_version_1_json_are_listed_as_before() {
    let app = spawn_keeping_history(|_| {}).await;
    let registered = insert_v1_event(
        &app,
        CUSTOMER,
        1,
        "CustomerRegistered",
        v1_sample("event_customer_registered"),
    )
    .await;
    let updated = insert_v1_event(
        &app,
        CUSTOMER,
        2,
        "CustomerUpdated",
        v1_sample("event_customer_updated"),
    )
    .await;
    let note_deleted = insert_v1_event(
        &app,
        NOTE,
        4,
        "NoteDeleted",
        v1_sample("event_note_deleted"),
    )
    .await;
    let purged = insert_v1_event(
        &app,
        CUSTOMER,
        4,
        "CustomerPurged",
        v1_sample("event_customer_purged"),
    )
    .await;
    let company_updated = insert_v1_event(
        &app,
        COMPANY,
        2,
        "CompanyUpdated",
        v1_sample("event_company_updated"),
    )
    .await;

    let events = crate::events::list_all(&app, "customers/-", "").await;

    let ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(
        ids,
        [registered, updated, note_deleted, purged, company_updated].map(|id| id.to_string())
    );
    // The update, whole: snapshot, changed fields, and previous values of exactly those.
    let update = &events[1];
    assert!(!update.resume_token.is_empty());
    assert_eq!(
        *update,
        pb::CustomerEvent {
            event_id: updated.to_string(),
            customer: CUSTOMER.into(),
            sequence: 2,
            snapshot: Some(updated_customer()),
            actor: "user:alice".into(),
            request_id: String::new(),
            occur_time: timestamp("2026-01-02T03:04:05.123456Z"),
            resume_token: update.resume_token.clone(),
            resource: CUSTOMER.into(),
            kind: Some(Kind::Updated(pb::CustomerUpdated {
                changed_fields: Some(FieldMask {
                    paths: [
                        "family_name",
                        "phone",
                        "address.locality",
                        "address.postal_code",
                        "status",
                        "labels",
                    ]
                    .map(String::from)
                    .to_vec(),
                }),
                previous: Some(pb::Customer {
                    family_name: "Lovelace".into(),
                    phone: "+442071234567".into(),
                    address: Some(pb::PostalAddress {
                        locality: "London".into(),
                        postal_code: "SW1Y 4JH".into(),
                        ..Default::default()
                    }),
                    status: pb::customer::Status::Active as i32,
                    labels: labels(&[("source", "web"), ("tier", "gold")]),
                    ..Default::default()
                }),
            })),
        }
    );
    let snapshot = events[0].snapshot.as_ref().unwrap();
    assert_eq!(
        (
            crate::events::kind(&events[0]),
            snapshot.family_name.as_str(),
            snapshot.phone.as_str(),
            snapshot.etag.as_str(),
        ),
        ("registered", "Lovelace", "+442071234567", "W/\"1\"")
    );
    let Some(Kind::NoteDeleted(pb::NoteDeleted { note: Some(note) })) = &events[2].kind else {
        panic!("a note deletion: {:?}", events[2]);
    };
    assert_eq!(
        *note,
        pb::Note {
            name: NOTE.into(),
            text: "Prefers email.\nCall after 10:00.".into(),
            author: "user:alice".into(),
            etag: "W/\"3\"".into(),
            create_time: timestamp("2026-01-01T00:00:00Z"),
            update_time: timestamp("2026-01-02T03:04:05.123456Z"),
        }
    );
    assert_eq!(
        (events[2].customer.as_str(), events[2].sequence),
        (CUSTOMER, 4)
    );
    let purged = events[3].snapshot.as_ref().unwrap();
    assert_eq!(crate::events::kind(&events[3]), "purged");
    assert_eq!(
        (
            purged.given_name.as_str(),
            purged.email.as_str(),
            purged.address.as_ref(),
            purged.etag.as_str(),
            purged.delete_time,
            purged.expire_time,
        ),
        (
            "",
            "",
            None,
            "W/\"4\"",
            timestamp("2026-01-03T00:00:00Z"),
            timestamp("2026-02-02T00:00:00Z")
        )
    );
    let Some(Kind::CompanyUpdated(company)) = &events[4].kind else {
        panic!("a company update: {:?}", events[4]);
    };
    assert_eq!(events[4].customer, "");
    assert_eq!(
        company.company.as_ref().unwrap().display_name,
        "Analytical Engines Ltd"
    );
    assert_eq!(
        company.changed_fields.as_ref().unwrap().paths,
        ["display_name", "domain", "labels"]
    );
    assert_eq!(
        company.previous,
        Some(pb::Company {
            display_name: "Analytical Engines".into(),
            ..Default::default()
        })
    );
    // One customer's stream and the filter read them too.
    let own = crate::events::list_all(&app, CUSTOMER, "").await;
    assert_eq!(own.len(), 4);
    let filtered = crate::events::list_all(&app, CUSTOMER, "type = CustomerUpdated").await;
    assert_eq!(filtered, std::slice::from_ref(update));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_of_a_request_answered_before_the_upgrade_replays_that_answer() {
    let app = TestApp::spawn().await;
    // CreateCustomer: the fingerprint covers the JSON of the input.
    let create_id = Uuid::new_v4();
    let input = r#"{"given_name":"Ada","family_name":"Lovelace","email":"ada@example.com","phone":"+442071234567","address":{"lines":["12 St James's Square"],"locality":"London","region":"","postal_code":"SW1Y 4JH","country_code":"GB"},"status":1,"company":"companies/0190a7b2-8c1e-7c1a-9d2e-2a3b4c5d6e7f","business_id":"GB-123456","labels":{"source":"web","tier":"gold"}}"#;
    let registered = v1_sample("event_customer_registered")["snapshot"].clone();
    insert_v1_request_id(
        &app,
        create_id,
        &v1_fingerprint("CreateCustomer", &["test-user", input]),
        registered,
    )
    .await;
    // DeleteCustomer: a response with every time set.
    let delete_id = Uuid::new_v4();
    insert_v1_request_id(
        &app,
        delete_id,
        &v1_fingerprint("DeleteCustomer", &["test-user", CUSTOMER, "W/\"2\""]),
        v1_sample("replay_customer"),
    )
    .await;

    let created = app
        .client
        .clone()
        .create_customer(pb::CreateCustomerRequest {
            duplicate_policy: 0,
            customer: Some(pb::Customer {
                given_name: "Ada".into(),
                family_name: "Lovelace".into(),
                email: "ada@example.com".into(),
                phone: "+442071234567".into(),
                address: Some(pb::PostalAddress {
                    lines: vec!["12 St James's Square".into()],
                    locality: "London".into(),
                    region: String::new(),
                    postal_code: "SW1Y 4JH".into(),
                    country_code: "GB".into(),
                }),
                status: pb::customer::Status::Active as i32,
                company: COMPANY.into(),
                business_id: "GB-123456".into(),
                labels: labels(&[("source", "web"), ("tier", "gold")]),
                ..Default::default()
            }),
            request_id: create_id.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    let deleted = app
        .client
        .clone()
        .delete_customer(pb::DeleteCustomerRequest {
            name: CUSTOMER.into(),
            etag: "W/\"2\"".into(),
            request_id: delete_id.to_string(),
        })
        .await
        .unwrap()
        .into_inner();

    assert_eq!(
        created,
        pb::Customer {
            family_name: "Lovelace".into(),
            phone: "+442071234567".into(),
            address: Some(pb::PostalAddress {
                lines: vec!["12 St James's Square".into()],
                locality: "London".into(),
                region: String::new(),
                postal_code: "SW1Y 4JH".into(),
                country_code: "GB".into(),
            }),
            status: pb::customer::Status::Active as i32,
            labels: labels(&[("source", "web"), ("tier", "gold")]),
            etag: "W/\"1\"".into(),
            update_time: timestamp("2026-01-01T00:00:00Z"),
            ..updated_customer()
        }
    );
    assert_eq!(
        deleted,
        pb::Customer {
            etag: "W/\"3\"".into(),
            update_time: timestamp("2026-01-03T00:00:00Z"),
            delete_time: timestamp("2026-01-03T00:00:00Z"),
            expire_time: timestamp("2026-02-02T00:00:00Z"),
            ..updated_customer()
        }
    );
    // Replayed, not written: no customer (the delete would have been NOT_FOUND), no event.
    assert_eq!(app.count("customers", "").await, 0);
    assert_eq!(app.count("events", "").await, 0);
    // A different request under a used id is still refused.
    let status = app
        .client
        .clone()
        .delete_customer(pb::DeleteCustomerRequest {
            name: CUSTOMER.into(),
            etag: String::new(),
            request_id: delete_id.to_string(),
        })
        .await
        .unwrap_err();
    crate::helpers::assert_reason(&status, tonic::Code::InvalidArgument, "REQUEST_ID_REUSED");

    // New answers are stored in version 2 only.
    let fresh = Uuid::new_v4();
    app.client
        .clone()
        .create_customer(pb::CreateCustomerRequest {
            duplicate_policy: 0,
            customer: Some(new_customer("New", "Encoding")),
            request_id: fresh.to_string(),
        })
        .await
        .unwrap();
    assert_eq!(
        app.count(
            "request_ids",
            &format!(
                "request_id = '{fresh}' AND response IS NULL AND get_byte(response_pb, 0) = 2"
            ),
        )
        .await,
        1
    );
    assert_eq!(
        app.count(
            "events",
            "data IS NULL AND get_byte(payload, 0) = 2 AND event_type = 'CustomerRegistered'"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purge_scrubs_the_history_in_both_encodings_and_keeps_each_in_its_own() {
    let app = spawn_keeping_history(|s| {
        s.customer_purge_after = std::time::Duration::from_millis(1);
        s.customer_purge_interval = std::time::Duration::from_millis(20);
    })
    .await;
    let mut gone = new_customer("Mixed", "Versions");
    gone.phone = "+14155550123".into();
    let gone = app.register(gone).await;
    let note = app
        .client
        .clone()
        .create_note(pb::CreateNoteRequest {
            parent: gone.name.clone(),
            note: Some(pb::Note {
                text: "Written in version two.".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    // History from before the upgrade, in version 1 (its content is another customer's, which
    // the scrub does not look at: it goes by aggregate).
    insert_v1_event(
        &app,
        &gone.name,
        100,
        "CustomerUpdated",
        v1_sample("event_customer_updated"),
    )
    .await;
    insert_v1_event(
        &app,
        &note.name,
        100,
        "NoteDeleted",
        v1_sample("event_note_deleted"),
    )
    .await;
    let id = gone.uid.clone();
    let stored = "coalesce(data::text, encode(payload, 'escape'))";
    let personal = format!(
        "aggregate LIKE 'customers/{id}%' AND ({stored} ILIKE '%versions%' \
         OR {stored} LIKE '%+14155550123%' OR {stored} LIKE '%version two%' \
         OR {stored} LIKE '%Lovelace%' OR {stored} LIKE '%ada@example.com%' \
         OR {stored} LIKE '%+442071234567%' OR {stored} LIKE '%Prefers email%')"
    );
    // A control: before the purge the query finds each of the four events.
    assert_eq!(app.count("events", &personal).await, 4);

    app.delete_customer(&gone.name).await.unwrap();
    eventually("the deleted customer is purged", || async {
        app.count("events", "event_type = 'CustomerPurged'").await == 1
    })
    .await;

    assert_eq!(app.count("events", &personal).await, 0);
    // Each row kept its encoding: the two version 1 rows are still JSON.
    let aggregate = format!("aggregate LIKE 'customers/{id}%'");
    assert_eq!(
        app.count(
            "events",
            &format!("{aggregate} AND data IS NOT NULL AND payload IS NULL")
        )
        .await,
        2
    );
    assert_eq!(
        app.count(
            "events",
            &format!("{aggregate} AND data IS NULL AND payload IS NOT NULL")
        )
        .await,
        4
    );
    let events = crate::events::list_all(&app, &gone.name, "").await;
    let kinds: Vec<&str> = events.iter().map(crate::events::kind).collect();
    assert_eq!(
        kinds,
        [
            "registered",
            "note_added",
            "updated",
            "note_deleted",
            "deleted",
            "purged"
        ]
    );
    let purged_snapshot = events[5].snapshot.clone().unwrap();
    assert_eq!(purged_snapshot.given_name, "");
    for event in &events {
        match &event.kind {
            Some(Kind::NoteAdded(pb::NoteAdded { note: Some(note) }))
            | Some(Kind::NoteDeleted(pb::NoteDeleted { note: Some(note) })) => {
                assert_eq!(note.text, "", "{event:?}");
            }
            Some(Kind::Updated(updated)) => {
                // What changed is kept, not the values.
                assert_eq!(updated.previous, None);
                assert_eq!(updated.changed_fields.as_ref().unwrap().paths.len(), 6);
                assert_eq!(event.snapshot.as_ref(), Some(&purged_snapshot));
            }
            _ => assert_eq!(event.snapshot.as_ref(), Some(&purged_snapshot), "{event:?}"),
        }
    }
}
