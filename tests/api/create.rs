//! CreateCustomer: validation, defaults, uniqueness and idempotent retries.

use customer_api::pb::{self, customer::Status as CustomerStatus};
use futures_util::future::join_all;
use tonic::Code;

use crate::helpers::{TestApp, assert_invalid, assert_reason, labels, new_customer};

fn create_request(customer: pb::Customer, request_id: &str) -> pb::CreateCustomerRequest {
    pb::CreateCustomerRequest {
        duplicate_policy: 0,
        customer: Some(customer),
        request_id: request_id.into(),
    }
}

/// CreateCustomer under `request_id`, which must succeed.
async fn create(app: &TestApp, customer: pb::Customer, request_id: &str) -> pb::Customer {
    app.client
        .clone()
        .create_customer(create_request(customer, request_id))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn create_returns_the_stored_customer_with_server_fields() {
    let app = TestApp::spawn().await;
    let input = pb::Customer {
        given_name: "  Ada ".into(),
        family_name: "Lovelace".into(),
        email: "Ada@Example.com".into(),
        phone: "+442071234567".into(),
        address: Some(pb::PostalAddress {
            lines: vec!["12 St James's Square".into()],
            locality: "London".into(),
            region: String::new(),
            postal_code: "SW1Y 4JH".into(),
            country_code: "gb".into(),
        }),
        business_id: "GB-0001".into(),
        labels: labels(&[("tier", "gold")]),
        // Output-only fields are ignored.
        name: "customers/chosen-by-client".into(),
        etag: "client etag".into(),
        ..Default::default()
    };

    let created = app
        .client
        .clone()
        .create_customer(create_request(input, ""))
        .await
        .unwrap()
        .into_inner();

    let id = created.name.strip_prefix("customers/").unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().to_string(), id);
    assert_eq!(created.uid, id);
    assert_eq!(created.given_name, "Ada");
    assert_eq!(created.email, "Ada@Example.com");
    assert_eq!(created.status, CustomerStatus::Active as i32);
    assert_eq!(created.address.as_ref().unwrap().country_code, "GB");
    assert_eq!(created.labels, labels(&[("tier", "gold")]));
    assert!(!created.etag.is_empty() && created.etag != "client etag");
    assert!(created.create_time.is_some());
    assert_eq!(created.create_time, created.update_time);
    assert_eq!(created.delete_time, None);
    assert_eq!(app.count("customers", "").await, 1);

    let fetched = app.get_customer(&created.name).await.unwrap();
    assert_eq!(fetched, created);
}

#[tokio::test(flavor = "multi_thread")]
async fn create_with_invalid_fields_lists_every_violation_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let input = pb::Customer {
        given_name: " ".into(),
        family_name: "x".repeat(201),
        email: "not-an-email".into(),
        phone: "030 1234".into(),
        address: Some(pb::PostalAddress {
            country_code: "XX".into(),
            ..Default::default()
        }),
        status: 42,
        company: "acme".into(),
        labels: labels(&[("Bad Key", "v")]),
        ..Default::default()
    };

    let status = app
        .client
        .clone()
        .create_customer(create_request(input, "not-a-uuid"))
        .await
        .unwrap_err();

    assert_invalid(
        &status,
        "INVALID_FIELDS",
        &[
            "request_id",
            "customer.given_name",
            "customer.family_name",
            "customer.email",
            "customer.phone",
            "customer.address.country_code",
            "customer.status",
            "customer.company",
            "customer.labels[\"Bad Key\"]",
        ],
    );
    assert_eq!(app.count("customers", "").await, 0);
    assert_eq!(app.count("request_ids", "").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn create_without_a_customer_names_the_required_fields() {
    let app = TestApp::spawn().await;
    let status = app
        .client
        .clone()
        .create_customer(pb::CreateCustomerRequest::default())
        .await
        .unwrap_err();
    assert_invalid(
        &status,
        "INVALID_FIELDS",
        &[
            "customer.given_name",
            "customer.family_name",
            "customer.email",
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_email_among_live_customers_is_already_exists_case_insensitively() {
    let app = TestApp::spawn().await;
    let first = app.create("Grace", "Hopper").await;
    let mut again = new_customer("Other", "Person");
    again.email = first.email.to_uppercase();

    let status = app
        .client
        .clone()
        .create_customer(create_request(again, ""))
        .await
        .unwrap_err();

    assert_reason(&status, Code::AlreadyExists, "EMAIL_ALREADY_EXISTS");
    assert!(
        !status.message().contains('@'),
        "no email in messages: {}",
        status.message()
    );
    assert_eq!(app.count("customers", "").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn retried_request_id_returns_the_first_response_without_a_second_write() {
    let app = TestApp::spawn().await;
    let request_id = uuid::Uuid::new_v4().to_string();
    let customer = new_customer("Alan", "Turing");

    let first = create(&app, customer.clone(), &request_id).await;
    let retry = create(&app, customer, &request_id).await;

    assert_eq!(retry, first);
    assert_eq!(app.count("customers", "").await, 1);
}

/// A retry after its customer was deleted: the email is free again, so an insert would
/// succeed; the retry must replay and store nothing (a write path that inserts before it
/// knows the claim, as pass 11 tried, must undo that insert).
#[tokio::test(flavor = "multi_thread")]
async fn a_retry_after_the_customer_was_deleted_replays_and_stores_nothing_new() {
    let app = TestApp::spawn().await;
    let request_id = uuid::Uuid::new_v4().to_string();
    let customer = new_customer("Grace", "Hopper");
    let first = create(&app, customer.clone(), &request_id).await;
    app.delete_customer(&first.name).await.unwrap();
    let events = app.count("events", "").await;

    let retry = create(&app, customer, &request_id).await;

    assert_eq!(retry, first);
    assert_eq!(app.count("customers", "").await, 1);
    assert_eq!(app.count("customers", "delete_time IS NULL").await, 0);
    assert_eq!(app.count("events", "").await, events);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_creates_with_one_request_id_write_once_and_answer_alike() {
    let app = TestApp::spawn().await;
    let request_id = uuid::Uuid::new_v4().to_string();
    let customer = new_customer("Barbara", "Liskov");

    let responses = join_all((0..20).map(|_| {
        let mut client = app.client.clone();
        let request = create_request(customer.clone(), &request_id);
        async move {
            client
                .create_customer(request)
                .await
                .map(|r| r.into_inner())
        }
    }))
    .await;

    let first = responses[0].as_ref().unwrap();
    for response in &responses {
        assert_eq!(response.as_ref().unwrap(), first);
    }
    assert_eq!(app.count("customers", "").await, 1);
    assert_eq!(app.count("request_ids", "").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn request_id_reused_with_a_different_payload_is_rejected() {
    let app = TestApp::spawn().await;
    let request_id = uuid::Uuid::new_v4().to_string();
    app.client
        .clone()
        .create_customer(create_request(
            new_customer("Edsger", "Dijkstra"),
            &request_id,
        ))
        .await
        .unwrap();

    let status = app
        .client
        .clone()
        .create_customer(create_request(new_customer("Tony", "Hoare"), &request_id))
        .await
        .unwrap_err();

    assert_invalid(&status, "REQUEST_ID_REUSED", &["request_id"]);
    assert_eq!(app.count("customers", "").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_is_kept_when_given() {
    let app = TestApp::spawn().await;
    let mut customer = new_customer("Katherine", "Johnson");
    customer.status = CustomerStatus::Prospective as i32;
    let created = app
        .client
        .clone()
        .create_customer(create_request(customer, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.status, CustomerStatus::Prospective as i32);
}
