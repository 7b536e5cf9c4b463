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
    }
}

async fn list(app: &TestApp, show_deleted: bool) -> Vec<String> {
    app.client
        .clone()
        .list_customers(pb::ListCustomersRequest {
            show_deleted,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .customers
        .into_iter()
        .map(|c| c.name)
        .collect()
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
    let fetched = app
        .client
        .clone()
        .get_customer(pb::GetCustomerRequest {
            name: gone.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
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

    let created = app
        .client
        .clone()
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(again),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();

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
    let deleted = app
        .client
        .clone()
        .delete_customer(delete(&customer.name, ""))
        .await
        .unwrap()
        .into_inner();

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
