//! GetCustomer and BatchGetCustomers.

use customer_api::pb;
use tonic::Code;

use crate::helpers::{TestApp, assert_invalid, assert_reason, details};

#[tokio::test(flavor = "multi_thread")]
async fn get_of_a_missing_customer_is_not_found_with_resource_info() {
    let app = TestApp::spawn().await;
    let name = format!("customers/{}", uuid::Uuid::now_v7());

    let status = app.get_customer(&name).await.unwrap_err();

    assert_reason(&status, Code::NotFound, "RESOURCE_NOT_FOUND");
    let details = details(&status);
    let resource = details.resource_info().expect("ResourceInfo");
    assert_eq!(resource.resource_type, "customer.example.com/Customer");
    assert_eq!(resource.resource_name, name);
}

#[tokio::test(flavor = "multi_thread")]
async fn get_with_a_malformed_name_is_invalid_argument() {
    let app = TestApp::spawn().await;
    for name in [
        "",
        "customers/42",
        "users/0190a7b2-8c1e-7c1a-9d2e-1f2a3b4c5d6e",
    ] {
        let status = app.get_customer(name).await.unwrap_err();
        assert_invalid(&status, "INVALID_FIELDS", &["name"]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_get_returns_customers_in_request_order() {
    let app = TestApp::spawn().await;
    let a = app.create("Ada", "A").await;
    let b = app.create("Bob", "B").await;

    let response = app
        .client
        .clone()
        .batch_get_customers(pb::BatchGetCustomersRequest {
            names: vec![b.name.clone(), a.name.clone()],
        })
        .await
        .unwrap()
        .into_inner();

    assert_eq!(response.customers, vec![b, a]);
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_get_refuses_a_name_listed_twice_naming_the_repeat() {
    let app = TestApp::spawn().await;
    let a = app.create("Ada", "A").await;
    let b = app.create("Bob", "B").await;

    let status = app
        .client
        .clone()
        .batch_get_customers(pb::BatchGetCustomersRequest {
            names: vec![
                b.name.clone(),
                a.name.clone(),
                b.name.to_uppercase().replace("CUSTOMERS", "customers"),
            ],
        })
        .await
        .unwrap_err();

    assert_invalid(&status, "INVALID_FIELDS", &["names[2]"]);
    let details = crate::helpers::details(&status);
    assert_eq!(
        details.bad_request().unwrap().field_violations[0].description,
        "repeats names[0]; list each customer once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_get_fails_as_a_whole_when_one_is_missing() {
    let app = TestApp::spawn().await;
    let a = app.create("Ada", "A").await;
    let missing = format!("customers/{}", uuid::Uuid::now_v7());

    let status = app
        .client
        .clone()
        .batch_get_customers(pb::BatchGetCustomersRequest {
            names: vec![a.name, missing.clone()],
        })
        .await
        .unwrap_err();

    assert_reason(&status, Code::NotFound, "RESOURCE_NOT_FOUND");
    assert_eq!(
        details(&status).resource_info().unwrap().resource_name,
        missing
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_get_validates_every_name_and_the_size() {
    let app = TestApp::spawn().await;
    let status = app
        .client
        .clone()
        .batch_get_customers(pb::BatchGetCustomersRequest {
            names: vec![
                "bad".into(),
                format!("customers/{}", uuid::Uuid::now_v7()),
                "customers/x".into(),
            ],
        })
        .await
        .unwrap_err();
    assert_invalid(&status, "INVALID_FIELDS", &["names[0]", "names[2]"]);

    let too_many = (0..1001)
        .map(|_| format!("customers/{}", uuid::Uuid::now_v7()))
        .collect();
    let status = app
        .client
        .clone()
        .batch_get_customers(pb::BatchGetCustomersRequest { names: too_many })
        .await
        .unwrap_err();
    assert_invalid(&status, "INVALID_FIELDS", &["names"]);

    let status = app
        .client
        .clone()
        .batch_get_customers(pb::BatchGetCustomersRequest { names: vec![] })
        .await
        .unwrap_err();
    assert_invalid(&status, "INVALID_FIELDS", &["names"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_get_accepts_a_thousand_names() {
    let app = TestApp::spawn().await;
    let a = app.create("Ada", "A").await;
    // A thousand distinct names pass validation (each is then looked up: the missing ones
    // make the whole call NOT_FOUND).
    let mut names = vec![a.name.clone()];
    names.extend((1..1000).map(|_| format!("customers/{}", uuid::Uuid::now_v7())));
    let status = app
        .client
        .clone()
        .batch_get_customers(pb::BatchGetCustomersRequest { names })
        .await
        .unwrap_err();
    assert_reason(&status, Code::NotFound, "RESOURCE_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_row_is_internal_with_a_reference_and_no_detail() {
    use diesel_async::SimpleAsyncConnection;
    let app = TestApp::spawn().await;
    let customer = app.create("Ada", "A").await;
    let mut conn = app.db().await;
    // Labels must map strings to strings; this row was written behind the service's back.
    conn.batch_execute(&format!(
        "UPDATE customers SET labels = '{{\"tier\": 1}}' WHERE id = '{}'",
        customer.uid
    ))
    .await
    .unwrap();

    let status = app.get_customer(&customer.name).await.unwrap_err();

    assert_reason(&status, Code::Internal, "INTERNAL");
    let reference = details(&status).error_info().unwrap().metadata["reference"].clone();
    assert_eq!(
        status.message(),
        format!("internal error (reference {reference})")
    );
    // The server keeps serving.
    app.create("Bob", "B").await;
}
