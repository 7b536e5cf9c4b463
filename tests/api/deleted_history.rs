//! What a soft-deleted customer's history shows, and to whom (issue 16, item 8): the events
//! of a soft-deleted customer and of its notes carry no personal data for callers without
//! `customers.admin`, on every read path (the customer's events, the `customers/-` feed,
//! WatchCustomerEvents, REST); an admin sees them whole, and undeleting restores them.

use customer_api::{auth::scopes, pb};
use http::{Method, StatusCode};
use prost::Message as _;

use crate::{
    helpers::{TEST_SECRET, TestApp, mint, new_customer},
    rest::call,
};

/// Personal data the history of the deleted customer holds.
const SECRETS: [&str; 5] = [
    "Gone",
    "4155550123",
    "gone.first@example.com",
    "gone.second@example.com",
    "Asked to be forgotten",
];

fn reader_token() -> String {
    let mut settings = customer_api::config::ServeSettings::for_database("unused");
    settings.auth.jwt_hs256_secret = Some(TEST_SECRET.into());
    format!("Bearer {}", mint(&settings, "reader", &[scopes::READ]))
}

/// Which of [`SECRETS`] `bytes` hold.
fn secrets_in(bytes: &[u8]) -> Vec<&'static str> {
    let text = String::from_utf8_lossy(bytes);
    SECRETS
        .into_iter()
        .filter(|secret| text.contains(secret))
        .collect()
}

/// The events of `parent` as `client` lists them (one page holds them all).
async fn events(client: &mut crate::helpers::Client, parent: &str) -> Vec<pb::CustomerEvent> {
    client
        .list_customer_events(pb::ListCustomerEventsRequest {
            parent: parent.into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events
}

/// The encoded events of `customer` among `events`.
fn bytes_of(events: &[pb::CustomerEvent], customer: &str) -> Vec<u8> {
    events
        .iter()
        .filter(|event| event.customer == customer)
        .flat_map(|event| event.encode_to_vec())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_customers_history_shows_personal_data_only_to_admins_on_every_path() {
    let app = TestApp::spawn().await;
    let mut admin = app.client.clone();
    let reader_authorization = reader_token();
    let mut reader = app.client_with(Some(&reader_authorization));
    let mut gone = new_customer("Gone", "Person");
    gone.email = "gone.first@example.com".into();
    gone.phone = "+14155550123".into();
    let gone = app.register(gone).await;
    admin
        .create_note(pb::CreateNoteRequest {
            parent: gone.name.clone(),
            note: Some(pb::Note {
                text: "Asked to be forgotten.".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    admin
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                name: gone.name.clone(),
                email: "gone.second@example.com".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["email".into()],
            }),
            request_id: String::new(),
            allow_missing: false,
        })
        .await
        .unwrap();
    let kept = app.create("Kept", "Live").await;
    // While it is live, a reader sees its history whole.
    let live = events(&mut reader, &gone.name).await;
    assert_eq!(secrets_in(&bytes_of(&live, &gone.name)), SECRETS);

    admin
        .delete_customer(pb::DeleteCustomerRequest {
            name: gone.name.clone(),
            etag: String::new(),
            request_id: String::new(),
        })
        .await
        .unwrap();

    // The customer's own events: all of them, what happened and when, without its data.
    let redacted = events(&mut reader, &gone.name).await;
    let whole = events(&mut admin, &gone.name).await;
    assert_eq!(redacted.len(), 4);
    assert_eq!(
        secrets_in(&bytes_of(&redacted, &gone.name)),
        Vec::<&str>::new()
    );
    assert_eq!(secrets_in(&bytes_of(&whole, &gone.name)), SECRETS);
    for (shown, full) in redacted.iter().zip(&whole) {
        assert_eq!(
            (
                &shown.event_id,
                shown.sequence,
                &shown.occur_time,
                &shown.actor
            ),
            (&full.event_id, full.sequence, &full.occur_time, &full.actor)
        );
        assert_eq!(
            shown.snapshot.as_ref().map(|s| (&s.name, &s.etag)),
            full.snapshot.as_ref().map(|s| (&s.name, &s.etag))
        );
    }
    let updated = redacted
        .iter()
        .find_map(|event| match &event.kind {
            Some(pb::customer_event::Kind::Updated(updated)) => Some(updated),
            _ => None,
        })
        .unwrap();
    assert_eq!(updated.changed_fields.as_ref().unwrap().paths, ["email"]);

    // The feed of every customer: the same events, redacted; another customer's untouched.
    let feed = events(&mut reader, "customers/-").await;
    assert_eq!(secrets_in(&bytes_of(&feed, &gone.name)), Vec::<&str>::new());
    assert_eq!(bytes_of(&feed, &gone.name), bytes_of(&redacted, &gone.name));
    assert_eq!(
        bytes_of(&feed, &kept.name),
        bytes_of(&events(&mut admin, "customers/-").await, &kept.name)
    );

    // A watch from the start.
    for (client, expected) in [(&mut reader, &redacted), (&mut admin, &whole)] {
        let mut watch = client
            .watch_customer_events(pb::WatchCustomerEventsRequest {
                parent: gone.name.clone(),
                start_after: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let mut watched = Vec::new();
        while watched.len() < expected.len() {
            watched.push(watch.message().await.unwrap().unwrap());
        }
        assert_eq!(
            bytes_of(&watched, &gone.name),
            bytes_of(expected, &gone.name)
        );
    }

    // REST.
    let path = format!("/v1/{}/events", gone.name);
    let headers = [("authorization", reader_authorization.as_str())];
    let (status, _, json) = call(&app, false, Method::GET, &path, None, &headers).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["events"].as_array().unwrap().len(), 4);
    assert_eq!(secrets_in(json.to_string().as_bytes()), Vec::<&str>::new());

    // Undeleted, its history is whole again for everyone.
    admin
        .undelete_customer(pb::UndeleteCustomerRequest {
            name: gone.name.clone(),
            etag: String::new(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let back = events(&mut reader, &gone.name).await;
    assert_eq!(secrets_in(&bytes_of(&back, &gone.name)), SECRETS);
}
