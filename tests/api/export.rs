//! ExportCustomers (issue 18): the customers of a filter from one snapshot, over gRPC (a
//! server stream) and REST (newline-delimited JSON), equal to paging ListCustomers.

use customer_api::pb;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

use crate::helpers::{TestApp, assert_invalid, labels, new_customer};

/// Every customer of `filter` through ListCustomers, in pages of 4.
async fn list_all(app: &TestApp, filter: &str, show_deleted: bool) -> Vec<pb::Customer> {
    let mut customers = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .client
            .clone()
            .list_customers(pb::ListCustomersRequest {
                filter: filter.into(),
                show_deleted,
                page_size: 4,
                page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        customers.extend(page.customers);
        if page.next_page_token.is_empty() {
            return customers;
        }
        page_token = page.next_page_token;
    }
}

async fn export(
    app: &TestApp,
    filter: &str,
    show_deleted: bool,
) -> Result<Vec<pb::Customer>, tonic::Status> {
    let mut stream = app
        .client
        .clone()
        .export_customers(pb::ExportCustomersRequest {
            filter: filter.into(),
            show_deleted,
        })
        .await?
        .into_inner();
    let mut customers = Vec::new();
    while let Some(customer) = stream.next().await {
        customers.push(customer?);
    }
    Ok(customers)
}

/// Eleven customers, six of them gold (one of those deleted), and one more deleted.
async fn seed(app: &TestApp) {
    for i in 0..11 {
        let tier = if i % 2 == 0 { "gold" } else { "silver" };
        let customer = app
            .register(pb::Customer {
                labels: labels(&[("tier", tier)]),
                ..new_customer(&format!("N{i}"), "Export")
            })
            .await;
        if i == 4 || i == 5 {
            app.delete_customer(&customer.name).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn export_of_a_filtered_set_equals_list_paging_and_honours_show_deleted() {
    let app = TestApp::spawn().await;
    seed(&app).await;

    for (filter, show_deleted, expected) in [
        (r#"labels.tier = "gold""#, false, 5),
        (r#"labels.tier = "gold""#, true, 6),
        ("", false, 9),
        ("", true, 11),
        ("given_name = nobody", false, 0),
    ] {
        let exported = export(&app, filter, show_deleted).await.unwrap();
        assert_eq!(exported.len(), expected, "{filter} {show_deleted}");
        assert_eq!(
            exported,
            list_all(&app, filter, show_deleted).await,
            "{filter} {show_deleted}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn export_over_rest_is_one_json_customer_per_line() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let request = http::Request::get(format!(
        "http://{}/v1/customers:export?filter=labels.tier%20%3D%20gold&showDeleted=true",
        app.addr
    ))
    .header("authorization", app.bearer())
    .body(Empty::new())
    .unwrap();

    let response = client.request(request).await.unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let names: Vec<String> = std::str::from_utf8(&body)
        .unwrap()
        .lines()
        .map(|line| {
            let json: serde_json::Value = serde_json::from_str(line).unwrap();
            let customer = json.get("result").unwrap_or(&json);
            customer["name"].as_str().unwrap().to_owned()
        })
        .collect();
    let listed: Vec<String> = list_all(&app, "labels.tier = gold", true)
        .await
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, listed);
    assert_eq!(names.len(), 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_filter_fails_before_anything_is_streamed() {
    let app = TestApp::spawn().await;

    let status = export(&app, "nickname = x", false).await.unwrap_err();

    assert_invalid(&status, "INVALID_FIELDS", &["filter"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_larger_than_a_batch_equals_list_paging() {
    use diesel_async::RunQueryDsl;
    let app = TestApp::spawn().await;
    // More rows than one batch (500), all with one create_time: the id breaks every tie.
    diesel::sql_query(
        "INSERT INTO customers (id, given_name, family_name, email, status) \
         SELECT gen_random_uuid(), 'G' || i, 'Bulk', 'bulk' || i || '@example.com', 1 \
         FROM generate_series(1, 1100) AS i",
    )
    .execute(&mut app.db().await)
    .await
    .unwrap();

    let exported = export(&app, "family_name = Bulk", false).await.unwrap();

    assert_eq!(exported.len(), 1100);
    let mut listed = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .client
            .clone()
            .list_customers(pb::ListCustomersRequest {
                filter: "family_name = Bulk".into(),
                page_size: 1000,
                page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        listed.extend(page.customers);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(exported, listed);
}
