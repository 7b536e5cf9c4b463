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

/// Gets that arrive while every read lane is busy wait, then share one statement: each still
/// gets exactly its own customer, a deleted one as deleted, and NOT_FOUND for a missing one.
#[tokio::test(flavor = "multi_thread")]
async fn gets_queued_behind_a_busy_read_share_one_statement_and_each_gets_its_own_answer() {
    use diesel_async::SimpleAsyncConnection as _;

    let app = TestApp::spawn_with(|settings| settings.db_read_lanes = 1).await;
    let ada = app.create("Ada", "A").await;
    let bob = app.create("Bob", "B").await;
    let cy = app.create("Cy", "C").await;
    let gone = app.create("Gone", "G").await;
    let gone = app.delete_customer(&gone.name).await.unwrap();
    let missing = format!("customers/{}", uuid::Uuid::now_v7());

    // Every read of customers waits behind this lock until the transaction ends.
    let mut holder = app.db().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let get = |name: &str| {
        let (mut client, name) = (app.client.clone(), name.to_owned());
        tokio::spawn(async move {
            client
                .get_customer(pb::GetCustomerRequest {
                    name,
                    ..Default::default()
                })
                .await
                .map(tonic::Response::into_inner)
        })
    };
    // Sessions of the test database whose statement reads customers by id (`= $1`) or ids
    // (`= ANY`) and waits for the lock.
    let waiting = async |by: &str| {
        app.count(
            "pg_stat_activity",
            &format!(
                "datname = '{}' AND wait_event_type = 'Lock' \
                 AND query LIKE '%\"customers\".\"id\" {by}%'",
                app.database_name
            ),
        )
        .await
    };
    let first = get(&ada.name);
    crate::helpers::eventually("the first Get waits for the table lock", async || {
        waiting("= $1").await == 1
    })
    .await;
    let queued: Vec<_> = [&bob.name, &ada.name, &gone.name, &missing, &cy.name]
        .into_iter()
        .map(|name| get(name))
        .collect();
    crate::helpers::eventually("the other Gets queue for the lane", async || {
        let text = crate::metrics::scrape(&app).await;
        crate::metrics::sample(
            &text,
            "customer_api_db_reads_queued",
            r#"resource="customer""#,
        ) == Some(5.0)
    })
    .await;
    // Still one statement waiting: the queued Gets have not gone to the database.
    assert_eq!((waiting("= $1").await, waiting("= ANY").await), (1, 0));
    holder.batch_execute("COMMIT").await.unwrap();

    assert_eq!(first.await.unwrap().unwrap(), ada);
    let mut answers = Vec::new();
    for get in queued {
        answers.push(get.await.unwrap());
    }
    assert_eq!(answers[0].as_ref().unwrap(), &bob);
    assert_eq!(answers[1].as_ref().unwrap(), &ada);
    assert_eq!(answers[2].as_ref().unwrap(), &gone);
    assert!(gone.delete_time.is_some());
    assert_reason(
        answers[3].as_ref().unwrap_err(),
        Code::NotFound,
        "RESOURCE_NOT_FOUND",
    );
    assert_eq!(answers[4].as_ref().unwrap(), &cy);
    // The first queued Get led the other four: they were answered by its statement.
    let text = crate::metrics::scrape(&app).await;
    assert_eq!(
        crate::metrics::sample(
            &text,
            "customer_api_db_reads_shared_total",
            r#"resource="customer""#
        ),
        Some(4.0)
    );
    assert_eq!(
        crate::metrics::sample(
            &text,
            "customer_api_db_reads_queued",
            r#"resource="customer""#
        ),
        Some(0.0)
    );
}
