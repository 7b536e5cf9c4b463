//! Upserts (issue 18): UpsertCustomer by external key, UpdateCustomer with `allow_missing`
//! (AIP-134), LookupCustomer; atomic under concurrency, retry-safe by request id.

use customer_api::pb::{self, customer_event::Kind};
use futures_util::future::join_all;
use http::{Method, StatusCode};
use prost_types::FieldMask;
use tonic::Code;

use crate::{
    events::{kind, list_all},
    external_ids::{assert_taken, with_ids},
    helpers::{TestApp, assert_invalid, assert_reason, labels, new_customer},
    rest::call,
};

fn upsert(customer: pb::Customer, request_id: &str) -> pb::UpsertCustomerRequest {
    pb::UpsertCustomerRequest {
        source: "crm".into(),
        external_id: "4711".into(),
        customer: Some(customer),
        update_mask: None,
        request_id: request_id.into(),
    }
}

async fn send(
    app: &TestApp,
    request: pb::UpsertCustomerRequest,
) -> Result<pb::Customer, tonic::Status> {
    app.client
        .clone()
        .upsert_customer(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn lookup(app: &TestApp, source: &str, id: &str) -> Result<pb::Customer, tonic::Status> {
    app.client
        .clone()
        .lookup_customer(pb::LookupCustomerRequest {
            source: source.into(),
            external_id: id.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// The kinds of every event of every customer, oldest first.
async fn kinds(app: &TestApp) -> Vec<&'static str> {
    list_all(app, "customers/-", "")
        .await
        .iter()
        .map(kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn upsert_creates_then_updates_with_the_exact_events() {
    let app = TestApp::spawn().await;
    let ada = new_customer("Ada", "Lovelace");

    let created = send(&app, upsert(ada.clone(), "")).await.unwrap();

    assert_eq!(created.external_ids, labels(&[("crm", "4711")]));
    assert_eq!(created.email, ada.email);
    assert_eq!(kinds(&app).await, ["registered"]);

    let change = pb::Customer {
        phone: "+14155550123".into(),
        ..Default::default()
    };
    let updated = send(&app, upsert(change.clone(), "")).await.unwrap();

    assert_eq!(updated.name, created.name);
    assert_eq!(updated.phone, "+14155550123");
    assert_eq!(updated.given_name, "Ada");
    assert_eq!(updated.external_ids, labels(&[("crm", "4711")]));
    let events = list_all(&app, &created.name, "").await;
    assert_eq!(
        events.iter().map(kind).collect::<Vec<_>>(),
        ["registered", "updated"]
    );
    let Some(Kind::Updated(diff)) = &events[1].kind else {
        unreachable!()
    };
    assert_eq!(diff.changed_fields.as_ref().unwrap().paths, ["phone"]);

    // The same values again: nothing changes, nothing is recorded.
    let again = send(&app, upsert(change, "")).await.unwrap();
    assert_eq!(again.etag, updated.etag);
    assert_eq!(kinds(&app).await, ["registered", "updated"]);
    assert_eq!(lookup(&app, "crm", "4711").await.unwrap(), updated);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_upserts_of_one_key_make_one_customer() {
    let app = TestApp::spawn().await;
    let ada = new_customer("Ada", "Lovelace");

    let results = join_all((0..16).map(|_| send(&app, upsert(ada.clone(), "")))).await;

    let names: std::collections::BTreeSet<String> =
        results.into_iter().map(|r| r.unwrap().name).collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert_eq!(app.count("customers", "true").await, 1);
    assert_eq!(kinds(&app).await, ["registered"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_upsert_replays_its_first_answer() {
    let app = TestApp::spawn().await;
    let request_id = uuid::Uuid::new_v4().to_string();
    let ada = new_customer("Ada", "Lovelace");
    let first = send(&app, upsert(ada.clone(), &request_id)).await.unwrap();
    // Changed since by another request.
    let changed = send(
        &app,
        upsert(
            pb::Customer {
                given_name: "Augusta".into(),
                ..Default::default()
            },
            "",
        ),
    )
    .await
    .unwrap();
    assert_ne!(changed.etag, first.etag);

    let replayed = send(&app, upsert(ada.clone(), &request_id)).await.unwrap();

    assert_eq!(replayed, first);
    assert_eq!(kinds(&app).await, ["registered", "updated"]);
    let other = pb::Customer {
        given_name: "Grace".into(),
        ..ada
    };
    let status = send(&app, upsert(other, &request_id)).await.unwrap_err();
    assert_invalid(&status, "REQUEST_ID_REUSED", &["request_id"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upsert_is_validated_like_a_create_and_keeps_its_key() {
    let app = TestApp::spawn().await;
    let mut bad = upsert(
        pb::Customer {
            given_name: "Ada".into(),
            external_ids: labels(&[("crm", "other")]),
            ..Default::default()
        },
        "",
    );
    bad.source = "CRM".into();
    bad.external_id = String::new();

    let status = send(&app, bad).await.unwrap_err();

    assert_invalid(&status, "INVALID_FIELDS", &["source", "external_id"]);
    // The customer's external ids may repeat the key, not contradict it.
    let contradicting = upsert(
        pb::Customer {
            external_ids: labels(&[("crm", "other")]),
            ..new_customer("Ada", "Lovelace")
        },
        "",
    );
    let status = send(&app, contradicting).await.unwrap_err();
    assert_invalid(
        &status,
        "INVALID_FIELDS",
        &["customer.external_ids[\"crm\"]"],
    );
    // A new customer needs what a create needs.
    let status = send(
        &app,
        upsert(
            pb::Customer {
                given_name: "Ada".into(),
                ..Default::default()
            },
            "",
        ),
    )
    .await
    .unwrap_err();
    assert_invalid(
        &status,
        "INVALID_FIELDS",
        &["customer.family_name", "customer.email"],
    );
    assert_eq!(app.count("customers", "true").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upsert_whose_other_ids_another_customer_holds_is_already_exists() {
    let app = TestApp::spawn().await;
    let holder = app.register(with_ids("Bob", &[("erp", "9")])).await;
    let ada = pb::Customer {
        external_ids: labels(&[("erp", "9")]),
        ..new_customer("Ada", "Lovelace")
    };

    let status = send(&app, upsert(ada, "")).await.unwrap_err();

    assert_taken(&status, "erp", "9", &holder.name);
}

#[tokio::test(flavor = "multi_thread")]
async fn lookup_finds_the_live_holder_only() {
    let app = TestApp::spawn().await;
    let ada = app.register(with_ids("Ada", &[("crm", "4711")])).await;
    assert_eq!(lookup(&app, "crm", "4711").await.unwrap(), ada);

    let status = lookup(&app, "crm", "4712").await.unwrap_err();
    assert_reason(&status, Code::NotFound, "RESOURCE_NOT_FOUND");
    app.delete_customer(&ada.name).await.unwrap();
    let status = lookup(&app, "crm", "4711").await.unwrap_err();
    assert_reason(&status, Code::NotFound, "RESOURCE_NOT_FOUND");
    let status = lookup(&app, "Crm", "4711").await.unwrap_err();
    assert_invalid(&status, "INVALID_FIELDS", &["source"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn over_rest_upsert_is_a_post_and_lookup_a_get() {
    let app = TestApp::spawn().await;
    let body = serde_json::json!({
        "source": "crm",
        "externalId": "4711",
        "customer": {"givenName": "Ada", "familyName": "Lovelace", "email": "ada@example.com"},
    })
    .to_string();

    let (status, _, created) = call(
        &app,
        false,
        Method::POST,
        "/v1/customers:upsert",
        Some(&body),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["externalIds"], serde_json::json!({"crm": "4711"}));

    let (status, _, found) = call(
        &app,
        false,
        Method::GET,
        "/v1/customers:lookup?source=crm&externalId=4711",
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found, created);
}

fn update_or_create(name: &str, customer: pb::Customer) -> pb::UpdateCustomerRequest {
    pb::UpdateCustomerRequest {
        customer: Some(pb::Customer {
            name: name.into(),
            ..customer
        }),
        update_mask: None,
        request_id: String::new(),
        allow_missing: true,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn update_with_allow_missing_creates_under_the_given_name_then_updates() {
    let app = TestApp::spawn().await;
    let name = format!("customers/{}", uuid::Uuid::new_v4());
    let ada = new_customer("Ada", "Lovelace");
    let status = app
        .client
        .clone()
        .update_customer(pb::UpdateCustomerRequest {
            allow_missing: false,
            ..update_or_create(&name, ada.clone())
        })
        .await
        .unwrap_err();
    assert_reason(&status, Code::NotFound, "RESOURCE_NOT_FOUND");

    let results = join_all((0..16).map(|_| {
        let mut client = app.client.clone();
        let request = update_or_create(&name, ada.clone());
        async move { client.update_customer(request).await }
    }))
    .await;

    for result in results {
        assert_eq!(result.unwrap().into_inner().name, name);
    }
    assert_eq!(kinds(&app).await, ["registered"]);
    let updated = app
        .client
        .clone()
        .update_customer(pb::UpdateCustomerRequest {
            update_mask: Some(FieldMask {
                paths: vec!["given_name".into()],
            }),
            ..update_or_create(
                &name,
                pb::Customer {
                    given_name: "Augusta".into(),
                    ..Default::default()
                },
            )
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.given_name, "Augusta");
    assert_eq!(updated.email, ada.email);
    assert_eq!(kinds(&app).await, ["registered", "updated"]);
}
