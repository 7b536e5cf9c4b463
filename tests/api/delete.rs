//! DeleteCustomer and UndeleteCustomer: soft delete (AIP-164).

use customer_api::pb;
use tonic::Code;

use crate::helpers::{TestApp, assert_reason, new_customer};

fn delete(name: &str, etag: &str) -> pb::DeleteCustomerRequest {
    pb::DeleteCustomerRequest {
        name: name.into(),
        etag: etag.into(),
        request_id: String::new(),
    }
}

fn undelete(name: &str, etag: &str) -> pb::UndeleteCustomerRequest {
    pb::UndeleteCustomerRequest {
        name: name.into(),
        etag: etag.into(),
        request_id: String::new(),
    }
}

async fn list(app: &TestApp, show_deleted: bool) -> Vec<String> {
    let request = pb::ListCustomersRequest {
        show_deleted,
        ..Default::default()
    };
    app.customer_names(request).await
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_is_soft_get_still_answers_and_list_hides_it() {
    let app = TestApp::spawn().await;
    let kept = app.create("Kept", "K").await;
    let gone = app.create("Gone", "G").await;

    let deleted = app
        .client
        .clone()
        .delete_customer(delete(&gone.name, &gone.etag))
        .await
        .unwrap()
        .into_inner();

    assert!(deleted.delete_time.is_some());
    assert_ne!(deleted.etag, gone.etag);
    let fetched = app.get_customer(&gone.name).await.unwrap();
    assert_eq!(fetched, deleted);
    assert_eq!(list(&app, false).await, vec![kept.name.clone()]);
    assert_eq!(list(&app, true).await, vec![kept.name, gone.name]);
    assert_eq!(app.count("customers", "").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_customers_email_is_free_for_a_new_customer() {
    let app = TestApp::spawn().await;
    let gone = app.create("Gone", "G").await;
    app.client
        .clone()
        .delete_customer(delete(&gone.name, ""))
        .await
        .unwrap();
    let mut again = new_customer("New", "N");
    again.email = gone.email.clone();

    let created = app.create_customer(again).await.unwrap();

    assert_eq!(created.email, gone.email);
    // Now the old one cannot come back with the same email.
    let status = app
        .client
        .clone()
        .undelete_customer(undelete(&gone.name, ""))
        .await
        .unwrap_err();
    assert_reason(&status, Code::AlreadyExists, "EMAIL_ALREADY_EXISTS");
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_twice_is_failed_precondition() {
    let app = TestApp::spawn().await;
    let gone = app.create("Gone", "G").await;
    app.client
        .clone()
        .delete_customer(delete(&gone.name, ""))
        .await
        .unwrap();
    let status = app
        .client
        .clone()
        .delete_customer(delete(&gone.name, ""))
        .await
        .unwrap_err();
    assert_reason(&status, Code::FailedPrecondition, "CUSTOMER_DELETED");
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_with_a_stale_etag_is_aborted() {
    let app = TestApp::spawn().await;
    let customer = app.create("Ada", "A").await;
    let status = app
        .client
        .clone()
        .delete_customer(delete(&customer.name, "W/\"999\""))
        .await
        .unwrap_err();
    assert_reason(&status, Code::Aborted, "ETAG_MISMATCH");
    assert_eq!(list(&app, false).await, vec![customer.name]);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_of_a_missing_customer_is_not_found() {
    let app = TestApp::spawn().await;
    let name = format!("customers/{}", uuid::Uuid::now_v7());
    let status = app
        .client
        .clone()
        .delete_customer(delete(&name, ""))
        .await
        .unwrap_err();
    assert_reason(&status, Code::NotFound, "RESOURCE_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread")]
async fn retried_delete_request_id_replays_the_first_response() {
    let app = TestApp::spawn().await;
    let customer = app.create("Ada", "A").await;
    let request = pb::DeleteCustomerRequest {
        name: customer.name.clone(),
        etag: customer.etag.clone(),
        request_id: uuid::Uuid::new_v4().to_string(),
    };
    let first = app
        .client
        .clone()
        .delete_customer(request.clone())
        .await
        .unwrap()
        .into_inner();
    let retry = app
        .client
        .clone()
        .delete_customer(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retry, first);
}

#[tokio::test(flavor = "multi_thread")]
async fn undelete_restores_and_undelete_of_a_live_customer_is_already_exists() {
    let app = TestApp::spawn().await;
    let customer = app.create("Ada", "A").await;
    let deleted = soft_delete(&app, &customer.name).await;

    let stale = app
        .client
        .clone()
        .undelete_customer(undelete(&customer.name, &customer.etag))
        .await
        .unwrap_err();
    assert_reason(&stale, Code::Aborted, "ETAG_MISMATCH");

    let restored = app
        .client
        .clone()
        .undelete_customer(undelete(&customer.name, &deleted.etag))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(restored.delete_time, None);
    assert_eq!(list(&app, false).await, vec![customer.name.clone()]);

    let status = app
        .client
        .clone()
        .undelete_customer(undelete(&customer.name, ""))
        .await
        .unwrap_err();
    assert_reason(&status, Code::AlreadyExists, "CUSTOMER_NOT_DELETED");
}

/// Deletes a customer without conditions; the deleted customer.
async fn soft_delete(app: &TestApp, name: &str) -> pb::Customer {
    app.client
        .clone()
        .delete_customer(delete(name, ""))
        .await
        .unwrap()
        .into_inner()
}

fn seconds(time: Option<prost_types::Timestamp>) -> (i64, i32) {
    let time = time.expect("a timestamp");
    (time.seconds, time.nanos)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_customer_shows_its_expire_time_until_undeleted() {
    // The default retention: 30 days.
    let app = TestApp::spawn().await;
    let customer = app.create("Exp", "Ire").await;
    assert_eq!(customer.expire_time, None);
    let deleted = soft_delete(&app, &customer.name).await;
    let (deleted_at, nanos) = seconds(deleted.delete_time);
    assert_eq!(
        seconds(deleted.expire_time),
        (deleted_at + 30 * 86_400, nanos)
    );
    // Every read shows it, and so does the deletion's event.
    assert_eq!(app.get_customer(&customer.name).await.unwrap(), deleted);
    let listed = app
        .client
        .clone()
        .list_customers(pb::ListCustomersRequest {
            show_deleted: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .customers;
    assert_eq!(listed, std::slice::from_ref(&deleted));
    let events = crate::events::list_all(&app, &customer.name, "").await;
    assert_eq!(events.last().unwrap().snapshot.as_ref(), Some(&deleted));

    let restored = app
        .client
        .clone()
        .undelete_customer(undelete(&customer.name, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(restored.expire_time, None);
    assert_eq!(restored.delete_time, None);

    // A server that keeps deleted customers for ever sets none.
    let forever = TestApp::spawn_with(|s| s.customer_purge_after = std::time::Duration::ZERO).await;
    let customer = forever.create("For", "Ever").await;
    let deleted = soft_delete(&forever, &customer.name).await;
    assert!(deleted.delete_time.is_some());
    assert_eq!(deleted.expire_time, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_customer_past_its_retention_is_purged_with_its_notes() {
    let app = TestApp::spawn_with(|s| {
        s.customer_purge_after = std::time::Duration::from_millis(1);
        s.customer_purge_interval = std::time::Duration::from_millis(20);
    })
    .await;
    let kept = app.create("Kept", "Live").await;
    let mut gone = new_customer("Gone", "Soon");
    gone.phone = "+14155550123".into();
    let gone = app.register(gone).await;
    app.client
        .clone()
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
    let id = gone.uid.clone();
    assert_eq!(
        app.count("notes", &format!("customer_id = '{id}'")).await,
        1
    );

    let deleted = soft_delete(&app, &gone.name).await;
    crate::helpers::eventually("the deleted customer is purged", || async {
        app.get_customer(&gone.name)
            .await
            .is_err_and(|status| status.code() == Code::NotFound)
    })
    .await;
    assert_eq!(app.count("customers", &format!("id = '{id}'")).await, 0);
    assert_eq!(
        app.count("notes", &format!("customer_id = '{id}'")).await,
        0
    );
    // The live customer is untouched.
    assert_eq!(app.get_customer(&kept.name).await.unwrap(), kept);

    // The purge is the customer's last event, and it carries no personal data.
    let events = crate::events::list_all(&app, &gone.name, "").await;
    let kinds: Vec<&str> = events.iter().map(crate::events::kind).collect();
    assert_eq!(kinds, ["registered", "note_added", "deleted", "purged"]);
    let purged = events.last().unwrap();
    assert_eq!(purged.sequence, events[2].sequence + 1);
    assert_eq!(purged.actor, "system:retention");
    assert_eq!(purged.request_id, "");
    let snapshot = purged.snapshot.clone().unwrap();
    assert_eq!(snapshot.delete_time, deleted.delete_time);
    // Nor does any earlier event of the customer or its notes any more: the history keeps
    // what happened, in order, not who it was.
    for event in &events {
        if let Some(pb::customer_event::Kind::NoteAdded(added)) = &event.kind {
            assert_eq!(added.note.as_ref().unwrap().text, "");
            continue;
        }
        let snapshot = event.snapshot.clone().unwrap();
        assert_eq!(snapshot.name, gone.name, "{event:?}");
        assert_eq!(
            (
                snapshot.given_name.as_str(),
                snapshot.family_name.as_str(),
                snapshot.email.as_str(),
                snapshot.phone.as_str(),
                snapshot.address,
            ),
            ("", "", "", "", None),
            "{event:?}"
        );
    }
    // A stored event as text, whichever encoding holds it: version 1 JSON, or the version 2
    // protobuf, whose strings `encode(…, 'escape')` leaves readable.
    let stored = "coalesce(data::text, encode(payload, 'escape'))";
    let raw = app
        .count(
            "events",
            &format!(
                "aggregate LIKE 'customers/{id}%' AND ({stored} ILIKE '%gone%' \
                 OR {stored} LIKE '%+14155550123%' OR {stored} LIKE '%forgotten%')"
            ),
        )
        .await;
    assert_eq!(
        raw, 0,
        "no stored event still holds the name, email, phone or note text"
    );
    // A control: the same kind of query does find the live customer's data.
    assert!(
        app.count("events", &format!("{stored} ILIKE '%kept%'"))
            .await
            > 0,
        "the live customer's events keep their data"
    );
}
