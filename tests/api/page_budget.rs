//! Responses bounded by bytes as well as rows (issue 16, item 3): a page of large items stops
//! at `MAX_RESPONSE_PAGE_BYTES` with a next page token (AIP-158 allows a short page), paging
//! through sees every item once, a BatchGet that would pass the budget is refused before it
//! is built, and REST never answers 500 for an answer over the message limit.

use std::collections::{BTreeMap, BTreeSet};

use customer_api::pb;
use http::{Method, StatusCode};
use prost::Message as _;
use tonic::Code;

use crate::{
    companies::create_company,
    helpers::{TestApp, assert_reason, new_customer},
    notes::create_note,
    rest::call,
};

/// The budget of these tests' servers.
const BUDGET: usize = 256 * 1024;

/// `labels` label values of 1020 bytes each (255 four-byte characters).
fn large_labels(labels: usize) -> BTreeMap<String, String> {
    let value: String = std::iter::repeat_n('\u{1D11E}', 255).collect();
    (0..labels)
        .map(|i| (format!("label{i}"), value.clone()))
        .collect()
}

/// A valid customer with `labels` KiB of labels.
fn large_customer(n: usize, labels: usize) -> pb::Customer {
    pb::Customer {
        labels: large_labels(labels).into_iter().collect(),
        ..new_customer("Large", &format!("Customer{n}"))
    }
}

/// A server whose pages hold at most [`BUDGET`] bytes of items.
async fn budgeted() -> TestApp {
    TestApp::spawn_with(|settings| settings.limits.max_response_page_bytes = BUDGET).await
}

/// Pages through a listing with `page_size` 1000, `next` fetching one page (its items' names,
/// their encoded bytes and the next token) from a token: the names in order and the number
/// of rows of each page. Every page but the last must be short and within the budget.
async fn page_through<F, Fut>(mut next: F) -> (Vec<String>, Vec<usize>)
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = (Vec<String>, usize, String)>,
{
    let (mut names, mut pages, mut token) = (Vec::new(), Vec::new(), String::new());
    loop {
        let (page, bytes, following) = next(token).await;
        assert!(!page.is_empty(), "a page holds at least one row");
        assert!(
            page.len() == 1 || bytes <= BUDGET,
            "{bytes} bytes in {} rows",
            page.len()
        );
        pages.push(page.len());
        names.extend(page);
        if following.is_empty() {
            return (names, pages);
        }
        token = following;
    }
}

/// Asserts `names` are `expected` in some order, each exactly once, over several pages.
fn assert_each_once(names: &[String], expected: &BTreeSet<String>, pages: &[usize]) {
    assert!(pages.len() > 1, "short pages: {pages:?}");
    assert_eq!(names.len(), expected.len(), "{pages:?}");
    assert_eq!(&names.iter().cloned().collect::<BTreeSet<_>>(), expected);
}

/// A fetcher of pages for [`page_through`]: the gRPC List method `$method` of `$app`'s client
/// with `$request` (its `page_token` set per page), its items in `$items`, each named by
/// field `$name`.
macro_rules! grpc_pages {
    ($app:expr, $method:ident($request:expr) => $items:ident . $name:ident) => {
        |page_token: String| {
            let mut client = $app.client.clone();
            let request = $request;
            async move {
                let page = client
                    .$method(request(page_token))
                    .await
                    .unwrap()
                    .into_inner();
                let bytes = page.$items.iter().map(|item| item.encoded_len() + 4).sum();
                let names = page.$items.into_iter().map(|item| item.$name).collect();
                (names, bytes, page.next_page_token)
            }
        }
    };
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_of_large_customers_and_their_events_are_short_and_page_through_on_grpc_and_rest() {
    let app = budgeted().await;
    // 30 customers of about 20 KiB: 600 KiB in all, more than two budgets.
    let mut created = BTreeSet::new();
    for n in 0..30 {
        created.insert(app.register(large_customer(n, 20)).await.name);
    }

    let (names, pages) = page_through(grpc_pages!(app, list_customers(
        |page_token| pb::ListCustomersRequest { page_size: 1000, page_token, ..Default::default() }
    ) => customers.name))
    .await;
    assert_each_once(&names, &created, &pages);
    assert!(pages[0] >= 10 && pages[0] < 30, "{pages:?}");

    // REST: GET /v1/customers.
    let (names, pages) = page_through(|page_token| {
        let app = &app;
        async move {
            let path = format!("/v1/customers?pageSize=1000&pageToken={page_token}");
            let (status, _, json) = call(app, false, Method::GET, &path, None, &[]).await;
            assert_eq!(status, StatusCode::OK, "{json}");
            let items = json["customers"].as_array().unwrap();
            let names = items
                .iter()
                .map(|c| c["name"].as_str().unwrap().to_owned())
                .collect();
            let token = json["nextPageToken"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            // Bytes are checked on gRPC; the JSON of a row is larger than its protobuf.
            (names, 0, token)
        }
    })
    .await;
    assert_each_once(&names, &created, &pages);

    // The event log of all customers: each registration event carries the customer.
    let (names, pages) = page_through(grpc_pages!(app, list_customer_events(
        |page_token| pb::ListCustomerEventsRequest {
            parent: "customers/-".into(), page_size: 1000, page_token, ..Default::default()
        }
    ) => events.customer))
    .await;
    assert_each_once(&names, &created, &pages);
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_of_large_notes_and_companies_are_short_and_page_through() {
    let app = budgeted().await;
    let customer = app.create("Noted", "Customer").await;
    // Notes of 40,000 bytes (10,000 four-byte characters): 12 of them pass the budget.
    let text: String = std::iter::repeat_n('\u{1D11E}', 10_000).collect();
    let (mut notes, mut companies) = (BTreeSet::new(), BTreeSet::new());
    for n in 0..12 {
        let note = create_note(&app, &customer.name, &text).await.unwrap();
        notes.insert(note.name);
        let company = pb::Company {
            display_name: format!("Large Company {n}"),
            labels: large_labels(40).into_iter().collect(),
            ..Default::default()
        };
        companies.insert(create_company(&app, company).await.unwrap().name);
    }

    let parent = customer.name.clone();
    let (names, pages) = page_through(grpc_pages!(app, list_notes(
        |page_token| pb::ListNotesRequest { parent: parent.clone(), page_size: 1000, page_token }
    ) => notes.name))
    .await;
    assert_each_once(&names, &notes, &pages);

    let (names, pages) = page_through(grpc_pages!(app, list_companies(
        |page_token| pb::ListCompaniesRequest { page_size: 1000, page_token, ..Default::default() }
    ) => companies.name))
    .await;
    assert_each_once(&names, &companies, &pages);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_get_past_the_budget_is_refused_and_one_within_it_is_served() {
    let app = budgeted().await;
    let mut names = Vec::new();
    for n in 0..16 {
        names.push(app.register(large_customer(n, 20)).await.name);
    }
    let mut client = app.client.clone();

    let within = client
        .batch_get_customers(pb::BatchGetCustomersRequest {
            names: names[..8].to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    let served: Vec<String> = within.customers.into_iter().map(|c| c.name).collect();
    assert_eq!(served, names[..8]);

    let status = client
        .batch_get_customers(pb::BatchGetCustomersRequest {
            names: names.clone(),
        })
        .await
        .unwrap_err();
    assert_reason(&status, Code::InvalidArgument, "RESPONSE_TOO_LARGE");
    let violations = crate::helpers::details(&status)
        .bad_request()
        .unwrap()
        .field_violations
        .clone();
    assert_eq!(violations[0].field, "names");

    let query: Vec<String> = names.iter().map(|name| format!("names={name}")).collect();
    let path = format!("/v1/customers:batchGet?{}", query.join("&"));
    let (status, _, json) = call(&app, false, Method::GET, &path, None, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert_eq!(crate::rest::error_reason(&json), "RESPONSE_TOO_LARGE");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_over_the_message_limit_is_out_of_range_on_rest_never_500() {
    // A budget past the 16 MiB message limit (a misconfiguration) lets a page exceed it.
    let app =
        TestApp::spawn_with(|settings| settings.limits.max_response_page_bytes = 64 << 20).await;
    // 270 customers of about 65 KiB: 17 MiB.
    for n in 0..270 {
        app.register(large_customer(n, 64)).await;
    }

    let (status, _, json) = call(
        &app,
        false,
        Method::GET,
        "/v1/customers?pageSize=1000",
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert_eq!(json["error"]["status"], "OUT_OF_RANGE", "{json}");
    let status = app
        .client
        .clone()
        .list_customers(pb::ListCustomersRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
}
