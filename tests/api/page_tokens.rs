//! Page tokens across replicas and restarts, and what a token reveals (nothing).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use customer_api::pb;

use crate::helpers::{TestApp, fresh_database};

fn request(order_by: &str, page_size: i32, page_token: &str) -> pb::ListCustomersRequest {
    pb::ListCustomersRequest {
        page_size,
        page_token: page_token.into(),
        filter: "family_name = \"Replica\"".into(),
        order_by: order_by.into(),
        show_deleted: false,
        parent: String::new(),
    }
}

async fn page(app: &TestApp, order_by: &str, page_size: i32, token: &str) -> (Vec<String>, String) {
    let page = app
        .client
        .clone()
        .list_customers(request(order_by, page_size, token))
        .await
        .unwrap()
        .into_inner();
    let names = page.customers.into_iter().map(|c| c.given_name).collect();
    (names, page.next_page_token)
}

/// Two instances without PAGE_TOKEN_KEY, started at the same moment over one database (so
/// both race to store the key), and a third started after one of them stopped.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_from_one_instance_continues_the_listing_on_another_without_a_configured_key() {
    let database = fresh_database().await;
    let (url, name) = database.parts();
    let unconfigured = |settings: &mut customer_api::config::ServeSettings| {
        settings.page_token_key = None;
    };
    let (mut a, b) = tokio::join!(
        TestApp::spawn_on(url.clone(), name.clone(), unconfigured, None),
        TestApp::spawn_on(url.clone(), name.clone(), unconfigured, None),
    );
    for given in ["Ann", "Ben", "Cid", "Dee", "Eve"] {
        a.create(given, "Replica").await;
    }
    let (everyone, _) = page(&a, "given_name", 100, "").await;
    assert_eq!(everyone, ["Ann", "Ben", "Cid", "Dee", "Eve"]);

    let (first, token) = page(&a, "given_name", 2, "").await;
    let (second, token) = page(&b, "given_name", 2, &token).await;
    let (third, last) = page(&a, "given_name", 2, &token).await;
    assert_eq!(first, ["Ann", "Ben"]);
    assert_eq!(second, ["Cid", "Dee"]);
    assert_eq!(third, ["Eve"]);
    assert_eq!(last, "");
    assert_eq!(a.count("service_keys", "").await, 1);

    // A token outlives the instance that issued it.
    let (_, from_a) = page(&a, "given_name", 3, "").await;
    a.stop().await;
    let c = TestApp::spawn_on(url, name, unconfigured, None).await;
    let (rest, last) = page(&c, "given_name", 3, &from_a).await;
    assert_eq!(rest, ["Dee", "Eve"]);
    assert_eq!(last, "");
    assert_eq!(c.count("service_keys", "").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_ordered_by_email_does_not_contain_the_email() {
    let app = TestApp::spawn().await;
    for given in ["Ann", "Ben", "Cid"] {
        app.create(given, "Replica").await;
    }
    let listed = app
        .client
        .clone()
        .list_customers(request("email", 2, ""))
        .await
        .unwrap()
        .into_inner();
    let last = &listed.customers[1].email;
    assert!(last.starts_with("ben.replica."), "{last}");

    let token = &listed.next_page_token;
    let bytes = URL_SAFE_NO_PAD.decode(token).unwrap();
    for text in [last.as_str(), "ben.replica", "example.com"] {
        assert!(
            !bytes
                .windows(text.len())
                .any(|window| window == text.as_bytes()),
            "the token {token} contains {text}"
        );
        assert!(!token.contains(text), "the token {token} contains {text}");
    }
    // A configured PAGE_TOKEN_KEY (the harness sets one) stores no key.
    assert_eq!(app.count("service_keys", "").await, 0);

    let (rest, _) = page(&app, "email", 2, token).await;
    assert_eq!(rest, ["Cid"]);
}
