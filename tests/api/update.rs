//! UpdateCustomer: masks (AIP-134), etags (AIP-154), validation, idempotency.

use customer_api::pb::{self, customer::Status as CustomerStatus};
use futures_util::future::join_all;
use prost_types::FieldMask;
use tonic::Code;

use crate::helpers::{TestApp, assert_invalid, assert_reason, details, labels};

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

fn update(customer: pb::Customer, update_mask: Option<FieldMask>) -> pb::UpdateCustomerRequest {
    pb::UpdateCustomerRequest {
        customer: Some(customer),
        update_mask,
        request_id: String::new(),
        allow_missing: false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn update_with_a_mask_changes_only_the_masked_fields_and_the_etag() {
    let app = TestApp::spawn().await;
    let created = app.create("Ada", "Lovelace").await;
    let change = pb::Customer {
        name: created.name.clone(),
        given_name: "Augusta".into(),
        family_name: "ignored: not in the mask".into(),
        labels: labels(&[("tier", "gold")]),
        ..Default::default()
    };

    let updated = app
        .client
        .clone()
        .update_customer(update(change, mask(&["given_name", "labels"])))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(updated.given_name, "Augusta");
    assert_eq!(updated.family_name, "Lovelace");
    assert_eq!(updated.email, created.email);
    assert_eq!(updated.labels, labels(&[("tier", "gold")]));
    assert_ne!(updated.etag, created.etag);
    assert_eq!(updated.create_time, created.create_time);
    let time = |t: &Option<prost_types::Timestamp>| t.as_ref().map(|t| (t.seconds, t.nanos));
    assert!(time(&updated.update_time) > time(&created.update_time));
}

#[tokio::test(flavor = "multi_thread")]
async fn update_without_a_mask_changes_the_fields_that_are_set() {
    let app = TestApp::spawn().await;
    let created = app.create("Ada", "Lovelace").await;
    let change = pb::Customer {
        name: created.name.clone(),
        phone: "+14155550123".into(),
        status: CustomerStatus::Inactive as i32,
        ..Default::default()
    };

    let updated = app
        .client
        .clone()
        .update_customer(update(change, None))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(updated.phone, "+14155550123");
    assert_eq!(updated.status, CustomerStatus::Inactive as i32);
    assert_eq!(updated.given_name, "Ada");
}

#[tokio::test(flavor = "multi_thread")]
async fn star_mask_replaces_every_mutable_field() {
    let app = TestApp::spawn().await;
    let mut customer = crate::helpers::new_customer("Ada", "Lovelace");
    customer.phone = "+14155550123".into();
    customer.labels = labels(&[("a", "1")]);
    let created = app.create_customer(customer).await.unwrap();
    let replacement = pb::Customer {
        name: created.name.clone(),
        given_name: "Grace".into(),
        family_name: "Hopper".into(),
        email: "grace@example.com".into(),
        ..Default::default()
    };

    let replaced = app
        .client
        .clone()
        .update_customer(update(replacement, mask(&["*"])))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(replaced.given_name, "Grace");
    assert_eq!(replaced.phone, "");
    assert!(replaced.labels.is_empty());
    assert_eq!(replaced.status, CustomerStatus::Active as i32);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_and_output_only_mask_paths_are_rejected() {
    let app = TestApp::spawn().await;
    let created = app.create("Ada", "Lovelace").await;
    let change = pb::Customer {
        name: created.name.clone(),
        ..Default::default()
    };

    let status = app
        .client
        .clone()
        .update_customer(update(
            change,
            mask(&["given_name", "create_time", "nickname", "name", "etag"]),
        ))
        .await
        .unwrap_err();

    assert_invalid(
        &status,
        "INVALID_FIELDS",
        &[
            "update_mask.paths[1]",
            "update_mask.paths[2]",
            "update_mask.paths[3]",
            "customer.given_name",
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_values_are_rejected_and_nothing_changes() {
    let app = TestApp::spawn().await;
    let created = app.create("Ada", "Lovelace").await;
    let change = pb::Customer {
        name: created.name.clone(),
        email: "nope".into(),
        phone: "12".into(),
        ..Default::default()
    };

    let status = app
        .client
        .clone()
        .update_customer(update(change, None))
        .await
        .unwrap_err();

    assert_invalid(
        &status,
        "INVALID_FIELDS",
        &["customer.email", "customer.phone"],
    );
    let unchanged = app.get_customer(&created.name).await.unwrap();
    assert_eq!(unchanged.etag, created.etag);
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_etag_is_aborted_with_etag_mismatch() {
    let app = TestApp::spawn().await;
    let created = app.create("Ada", "Lovelace").await;
    let first = pb::Customer {
        name: created.name.clone(),
        given_name: "One".into(),
        etag: created.etag.clone(),
        ..Default::default()
    };
    app.client
        .clone()
        .update_customer(update(first, None))
        .await
        .unwrap();

    let second = pb::Customer {
        name: created.name.clone(),
        given_name: "Two".into(),
        etag: created.etag.clone(),
        ..Default::default()
    };
    let status = app
        .client
        .clone()
        .update_customer(update(second, None))
        .await
        .unwrap_err();

    assert_reason(&status, Code::Aborted, "ETAG_MISMATCH");
    assert_eq!(
        details(&status).resource_info().unwrap().resource_name,
        created.name
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_updates_with_one_etag_let_exactly_one_through() {
    let app = TestApp::spawn().await;
    let created = app.create("Ada", "Lovelace").await;

    let results = join_all((0..50).map(|i| {
        let mut client = app.client.clone();
        let change = pb::Customer {
            name: created.name.clone(),
            given_name: format!("Writer {i}"),
            etag: created.etag.clone(),
            ..Default::default()
        };
        async move { client.update_customer(update(change, None)).await }
    }))
    .await;

    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1);
    for result in &results {
        if let Err(status) = result {
            assert_reason(status, Code::Aborted, "ETAG_MISMATCH");
        }
    }
    let stored = app.get_customer(&created.name).await.unwrap();
    assert_eq!(&stored, winners[0].get_ref());
}

#[tokio::test(flavor = "multi_thread")]
async fn update_of_a_missing_customer_is_not_found() {
    let app = TestApp::spawn().await;
    let change = pb::Customer {
        name: format!("customers/{}", uuid::Uuid::now_v7()),
        given_name: "X".into(),
        ..Default::default()
    };
    let status = app
        .client
        .clone()
        .update_customer(update(change, None))
        .await
        .unwrap_err();
    assert_reason(&status, Code::NotFound, "RESOURCE_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread")]
async fn update_of_a_deleted_customer_is_failed_precondition() {
    let app = TestApp::spawn().await;
    let created = app.create("Ada", "Lovelace").await;
    app.delete_customer(&created.name).await.unwrap();
    let change = pb::Customer {
        name: created.name.clone(),
        given_name: "X".into(),
        ..Default::default()
    };

    let status = app
        .client
        .clone()
        .update_customer(update(change, None))
        .await
        .unwrap_err();

    assert_reason(&status, Code::FailedPrecondition, "CUSTOMER_DELETED");
    let details = details(&status);
    let violation = &details.precondition_failure().unwrap().violations[0];
    assert_eq!(violation.subject, created.name);
}

#[tokio::test(flavor = "multi_thread")]
async fn update_to_an_email_in_use_is_already_exists() {
    let app = TestApp::spawn().await;
    let a = app.create("Ada", "A").await;
    let b = app.create("Bob", "B").await;
    let change = pb::Customer {
        name: b.name.clone(),
        email: a.email.to_uppercase(),
        ..Default::default()
    };
    let status = app
        .client
        .clone()
        .update_customer(update(change, None))
        .await
        .unwrap_err();
    assert_reason(&status, Code::AlreadyExists, "EMAIL_ALREADY_EXISTS");
}

#[tokio::test(flavor = "multi_thread")]
async fn retried_update_request_id_replays_the_first_response() {
    let app = TestApp::spawn().await;
    let created = app.create("Ada", "Lovelace").await;
    let request = rename_once(&created, &created.etag);

    let first = update_ok(&app, request.clone()).await;
    // The retry carries the now-stale etag: it must be recognised as a retry, not re-run.
    let retry = update_ok(&app, request).await;

    assert_eq!(retry, first);
}

/// An update of `created`'s given name to "Once" under a fresh request id, checking `etag`.
fn rename_once(created: &pb::Customer, etag: &str) -> pb::UpdateCustomerRequest {
    pb::UpdateCustomerRequest {
        customer: Some(pb::Customer {
            name: created.name.clone(),
            given_name: "Once".into(),
            etag: etag.to_owned(),
            ..Default::default()
        }),
        update_mask: None,
        request_id: uuid::Uuid::new_v4().to_string(),
        allow_missing: false,
    }
}

/// Sends `request`, which must succeed.
async fn update_ok(app: &TestApp, request: pb::UpdateCustomerRequest) -> pb::Customer {
    app.client
        .clone()
        .update_customer(request)
        .await
        .unwrap()
        .into_inner()
}

/// A retry whose own run would now fail (its customer was deleted since) still gets the
/// first answer: the write path that claims the request id last must take the failure for
/// a possible retry and ask the claim, not report it.
#[tokio::test(flavor = "multi_thread")]
async fn a_retried_update_of_a_since_deleted_customer_replays_the_first_response() {
    let app = TestApp::spawn().await;
    let created = app.create("Ada", "Lovelace").await;
    let request = rename_once(&created, "");
    let first = update_ok(&app, request.clone()).await;
    app.delete_customer(&created.name).await.unwrap();
    let events = app.count("events", "").await;

    let retry = update_ok(&app, request).await;

    assert_eq!(retry, first);
    assert_eq!(app.count("events", "").await, events);
    assert_eq!(app.count("request_ids", "").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn label_paths_set_and_remove_single_labels() {
    let app = TestApp::spawn().await;
    let created = app.create("Ada", "Lovelace").await;
    let with_labels = pb::Customer {
        name: created.name.clone(),
        labels: labels(&[("keep", "1"), ("drop", "2")]),
        ..Default::default()
    };
    app.client
        .clone()
        .update_customer(update(with_labels, None))
        .await
        .unwrap();

    let change = pb::Customer {
        name: created.name.clone(),
        labels: labels(&[("add", "3")]),
        ..Default::default()
    };
    let updated = app
        .client
        .clone()
        .update_customer(update(change, mask(&["labels.add", "labels.drop"])))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(updated.labels, labels(&[("add", "3"), ("keep", "1")]));
}
