//! ListCustomers: page sizes, keyset pagination, tokens, filters and ordering.

use std::collections::HashSet;

use customer_api::pb::{self, customer::Status as CustomerStatus};
use tonic::Code;

use crate::helpers::{TestApp, assert_invalid, assert_reason, labels, new_customer};

fn request(
    filter: &str,
    order_by: &str,
    page_size: i32,
    page_token: &str,
) -> pb::ListCustomersRequest {
    pb::ListCustomersRequest {
        page_size,
        page_token: page_token.into(),
        filter: filter.into(),
        order_by: order_by.into(),
        show_deleted: false,
        parent: String::new(),
    }
}

async fn names(app: &TestApp, filter: &str, order_by: &str) -> Vec<String> {
    app.client
        .clone()
        .list_customers(request(filter, order_by, 1000, ""))
        .await
        .unwrap_or_else(|s| panic!("{filter:?}: {s:?}"))
        .into_inner()
        .customers
        .into_iter()
        .map(|c| format!("{} {}", c.given_name, c.family_name))
        .collect()
}

/// Walks every page and returns the names in order.
async fn walk(app: &TestApp, filter: &str, order_by: &str, page_size: i32) -> (Vec<String>, usize) {
    let mut token = String::new();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = app
            .client
            .clone()
            .list_customers(request(filter, order_by, page_size, &token))
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.customers.len() <= page_size as usize);
        seen.extend(page.customers.into_iter().map(|c| c.name));
        if page.next_page_token.is_empty() {
            return (seen, pages);
        }
        token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn default_page_is_fifty_in_creation_order_and_large_sizes_are_capped() {
    let app = TestApp::spawn().await;
    let mut created = Vec::new();
    for i in 0..60 {
        created.push(app.create(&format!("N{i:02}"), "Same").await.name);
    }

    let first = app
        .client
        .clone()
        .list_customers(request("", "", 0, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.customers.len(), 50);
    assert_eq!(
        first
            .customers
            .iter()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>(),
        created[..50]
    );
    assert!(!first.next_page_token.is_empty());

    let all = app
        .client
        .clone()
        .list_customers(request("", "", 5000, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.customers.len(), 60);
    assert!(all.next_page_token.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn negative_page_size_and_bad_filter_and_order_are_listed_together() {
    let app = TestApp::spawn().await;
    let status = app
        .client
        .clone()
        .list_customers(request("nickname = \"x\"", "shoe_size", -1, ""))
        .await
        .unwrap_err();
    assert_invalid(
        &status,
        "INVALID_FIELDS",
        &["page_size", "filter", "order_by"],
    );
    let violations = crate::helpers::details(&status)
        .bad_request()
        .unwrap()
        .field_violations
        .clone();
    assert!(
        violations[1].description.contains("position 0"),
        "{violations:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn filter_syntax_errors_name_the_position() {
    let app = TestApp::spawn().await;
    let status = app
        .client
        .clone()
        .list_customers(request(
            "status = ACTIVE AND (given_name = \"x\"",
            "",
            0,
            "",
        ))
        .await
        .unwrap_err();
    assert_invalid(&status, "INVALID_FIELDS", &["filter"]);
    assert!(
        status.message().contains("position"),
        "{}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn walking_all_pages_returns_every_customer_once_in_order() {
    let app = TestApp::spawn().await;
    let mut expected = Vec::new();
    for i in 0..23 {
        expected.push(app.create(&format!("W{i:02}"), "Walk").await.name);
    }

    let (seen, pages) = walk(&app, "", "", 5).await;

    assert_eq!(seen, expected);
    assert_eq!(pages, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn walking_by_family_name_descending_with_ties_is_complete() {
    let app = TestApp::spawn().await;
    for i in 0..12 {
        // Few distinct family names: many ties broken by id.
        app.create(&format!("G{i}"), ["Alpha", "Beta", "Gamma"][i % 3])
            .await;
    }
    let (seen, _) = walk(&app, "", "family_name desc", 4).await;
    let all = names(&app, "", "family_name desc").await;
    assert_eq!(seen.len(), 12);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 12);
    let families: Vec<&str> = all.iter().map(|n| n.split(' ').nth(1).unwrap()).collect();
    assert_eq!(families[..4], ["Gamma"; 4]);
    assert_eq!(families[8..], ["Alpha"; 4]);

    // Mixed directions take the expanded keyset form and must agree with the full list.
    let (mixed, _) = walk(&app, "", "family_name desc, given_name", 5).await;
    let full = app
        .customer_names(request("", "family_name desc, given_name", 100, ""))
        .await;
    assert_eq!(mixed, full);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_walk_during_concurrent_inserts_never_repeats_a_customer() {
    let app = TestApp::spawn().await;
    for i in 0..30 {
        app.create(&format!("Before{i}"), "Walk").await;
    }
    let inserter = {
        let client = app.client.clone();
        tokio::spawn(async move {
            for i in 0..40 {
                let mut client = client.clone();
                client
                    .create_customer(pb::CreateCustomerRequest {
                        duplicate_policy: 0,
                        customer: Some(new_customer(&format!("During{i}"), "Walk")),
                        request_id: String::new(),
                    })
                    .await
                    .unwrap();
            }
        })
    };

    let (seen, _) = walk(&app, "", "", 3).await;
    inserter.await.unwrap();

    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a customer appeared twice");
    assert!(seen.len() >= 30);
}

#[tokio::test(flavor = "multi_thread")]
async fn page_tokens_are_bound_to_their_query_and_tamper_evident() {
    let app = TestApp::spawn().await;
    for i in 0..3 {
        app.create(&format!("T{i}"), "Token").await;
    }
    let first = app
        .client
        .clone()
        .list_customers(request("family_name = \"Token\"", "", 1, ""))
        .await
        .unwrap()
        .into_inner();
    let token = first.next_page_token;

    let changed = app
        .client
        .clone()
        .list_customers(request("family_name = \"Other\"", "", 1, &token))
        .await
        .unwrap_err();
    assert_invalid(&changed, "INVALID_PAGE_TOKEN", &["page_token"]);

    let reordered = app
        .client
        .clone()
        .list_customers(request("family_name = \"Token\"", "email", 1, &token))
        .await
        .unwrap_err();
    assert_invalid(&reordered, "INVALID_PAGE_TOKEN", &["page_token"]);

    let mut tampered = token.clone().into_bytes();
    tampered[2] = if tampered[2] == b'A' { b'B' } else { b'A' };
    let status = app
        .client
        .clone()
        .list_customers(request(
            "family_name = \"Token\"",
            "",
            1,
            &String::from_utf8(tampered).unwrap(),
        ))
        .await
        .unwrap_err();
    assert_invalid(&status, "INVALID_PAGE_TOKEN", &["page_token"]);

    let status = app
        .client
        .clone()
        .list_customers(request("", "", 1, "garbage"))
        .await
        .unwrap_err();
    assert_reason(&status, Code::InvalidArgument, "INVALID_PAGE_TOKEN");

    // The page size may change between pages.
    let rest = app
        .client
        .clone()
        .list_customers(request("family_name = \"Token\"", "", 10, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.customers.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_select_by_every_field_kind() {
    let app = TestApp::spawn().await;
    let mut ann = new_customer("Ann", "Smith");
    ann.email = "ann.smith@corp.example".into();
    ann.phone = "+4930123456".into();
    ann.labels = labels(&[("env", "prod"), ("team", "a")]);
    ann.business_id = "DE-1".into();
    app.register(ann).await;
    let mut bob = new_customer("Bob", "Smithers");
    bob.status = CustomerStatus::Prospective as i32;
    bob.labels = labels(&[("env", "dev")]);
    app.register(bob).await;
    // A customer's company must exist.
    let company = app
        .client
        .clone()
        .create_company(customer_api::pb::CreateCompanyRequest {
            duplicate_policy: 0,
            company: Some(customer_api::pb::Company {
                display_name: "Jones & Co".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut cid = new_customer("Cid", "Jones");
    cid.status = CustomerStatus::Inactive as i32;
    cid.company = company.name.clone();
    app.register(cid).await;
    let by_company = format!("company = \"{}\"", company.name);

    let cases: &[(&str, &[&str])] = &[
        ("family_name = \"Smith\"", &["Ann Smith"]),
        ("family_name:\"SMITH\"", &["Ann Smith", "Bob Smithers"]),
        ("given_name:\"o\"", &["Bob Smithers"]),
        ("email = \"ANN.SMITH@corp.example\"", &["Ann Smith"]),
        ("email:\"corp\"", &["Ann Smith"]),
        ("status = PROSPECTIVE", &["Bob Smithers"]),
        ("status != ACTIVE", &["Bob Smithers", "Cid Jones"]),
        ("phone = \"+4930123456\"", &["Ann Smith"]),
        ("phone != \"+4930123456\"", &["Bob Smithers", "Cid Jones"]),
        ("business_id = \"DE-1\"", &["Ann Smith"]),
        (by_company.as_str(), &["Cid Jones"]),
        ("labels.env = \"prod\"", &["Ann Smith"]),
        ("labels.env != \"prod\"", &["Bob Smithers", "Cid Jones"]),
        ("labels.team:*", &["Ann Smith"]),
        ("labels.env:\"de\"", &["Bob Smithers"]),
        ("NOT status = ACTIVE", &["Bob Smithers", "Cid Jones"]),
        ("-family_name:\"smith\"", &["Cid Jones"]),
        (
            "status = ACTIVE OR status = INACTIVE",
            &["Ann Smith", "Cid Jones"],
        ),
        (
            "family_name:\"smith\" status = PROSPECTIVE",
            &["Bob Smithers"],
        ),
        (
            "(status = PROSPECTIVE OR status = INACTIVE) AND family_name:\"s\"",
            &["Bob Smithers", "Cid Jones"],
        ),
        ("given_name:\"%\"", &[]),
        (
            "create_time > 2000-01-01T00:00:00Z",
            &["Ann Smith", "Bob Smithers", "Cid Jones"],
        ),
        ("create_time < \"2000-01-01T00:00:00+02:00\"", &[]),
        (
            "update_time >= 2000-01-01T00:00:00Z AND given_name < \"B\"",
            &["Ann Smith"],
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(names(&app, filter, "").await, *expected, "filter {filter}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_select_by_name_uid_and_address() {
    let app = TestApp::spawn().await;
    let address = |locality: &str, region: &str, postal_code: &str, country_code: &str| {
        Some(pb::PostalAddress {
            lines: vec!["1 Main Street".into()],
            locality: locality.into(),
            region: region.into(),
            postal_code: postal_code.into(),
            country_code: country_code.into(),
        })
    };
    let mut ann = new_customer("Ann", "Berlin");
    ann.address = address("Berlin", "", "10115", "de");
    let ann = app.register(ann).await;
    let mut bob = new_customer("Bob", "Francisco");
    bob.address = address("San Francisco", "CA", "94103", "US");
    let bob = app.register(bob).await;
    let mut cid = new_customer("Cid", "Oakland");
    cid.address = address("Oakland", "CA", "94607", "US");
    let cid = app.register(cid).await;
    // No address at all.
    app.register(new_customer("Dee", "Nowhere")).await;

    let bob_or_cid = format!(r#"name = "{}" OR name = "{}""#, bob.name, cid.name);
    let not_ann = format!("uid != {}", ann.uid);
    let by_uid = format!("uid = \"{}\"", cid.uid);
    let cases: &[(&str, &[&str])] = &[
        (bob_or_cid.as_str(), &["Bob Francisco", "Cid Oakland"]),
        (
            not_ann.as_str(),
            &["Bob Francisco", "Cid Oakland", "Dee Nowhere"],
        ),
        (by_uid.as_str(), &["Cid Oakland"]),
        (r#"address.locality = "Berlin""#, &["Ann Berlin"]),
        (r#"address.locality:"fran""#, &["Bob Francisco"]),
        ("address.region = CA", &["Bob Francisco", "Cid Oakland"]),
        // Stored upper case; matched whatever case the filter uses.
        (
            "address.country_code = us",
            &["Bob Francisco", "Cid Oakland"],
        ),
        ("address.country_code = DE", &["Ann Berlin"]),
        // A customer without an address has none of its parts.
        ("address.country_code != US", &["Ann Berlin", "Dee Nowhere"]),
        (
            r#"address.postal_code >= "94" AND address.postal_code < "945""#,
            &["Bob Francisco"],
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(names(&app, filter, "").await, *expected, "filter {filter}");
    }

    // REST: the same filter as a query parameter.
    let query = format!(
        "/v1/customers?filter=address.region%3DCA%20AND%20uid%20!%3D%20{}",
        bob.uid
    );
    let (status, _, page) =
        crate::rest::call(&app, false, http::Method::GET, &query, None, &[]).await;
    assert_eq!(status, http::StatusCode::OK, "{page}");
    assert_eq!(page["customers"][0]["name"], cid.name.as_str());
    assert_eq!(page["customers"].as_array().unwrap().len(), 1);

    for (filter, position) in [
        ("uid = 42", 6),
        (
            r#"name = "companies/0190a0b4-0000-7000-8000-000000000001""#,
            7,
        ),
        ("uid < 0190a0b4-0000-7000-8000-000000000001", 4),
        ("address.street = x", 0),
    ] {
        let status = app
            .client
            .clone()
            .list_customers(request(filter, "", 10, ""))
            .await
            .unwrap_err();
        assert_invalid(&status, "INVALID_FIELDS", &["filter"]);
        let violation = crate::helpers::details(&status)
            .bad_request()
            .unwrap()
            .field_violations[0]
            .clone();
        assert!(
            violation
                .description
                .contains(&format!("position {position}")),
            "{filter}: {violation:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn order_by_sorts_ascending_and_descending() {
    let app = TestApp::spawn().await;
    for (given, family) in [("Bea", "Young"), ("Al", "Zed"), ("Cy", "Adams")] {
        app.create(given, family).await;
    }
    assert_eq!(
        names(&app, "", "family_name").await,
        ["Cy Adams", "Bea Young", "Al Zed"]
    );
    assert_eq!(
        names(&app, "", "given_name desc").await,
        ["Cy Adams", "Bea Young", "Al Zed"]
    );
    assert_eq!(
        names(&app, "", "create_time desc").await,
        ["Cy Adams", "Al Zed", "Bea Young"]
    );
    assert_eq!(
        names(&app, "", "update_time").await,
        ["Bea Young", "Al Zed", "Cy Adams"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_pages_are_index_range_scans_not_offsets() {
    use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
    let app = TestApp::spawn().await;
    let mut conn = app.db().await;
    conn.batch_execute(
        "INSERT INTO customers (id, given_name, family_name, email, status, create_time) \
         SELECT gen_random_uuid(), 'G' || i, 'F' || i, 'c' || i || '@example.com', 1, \
                now() - i * interval '1 second' \
         FROM generate_series(1, 20000) AS i; ANALYZE customers",
    )
    .await
    .unwrap();
    #[derive(diesel::QueryableByName)]
    struct Plan {
        #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
        line: String,
    }

    // The statement shape `db::customers::list` generates for a page after a cursor deep
    // in the table (row-value keyset condition, id tie-breaker, LIMIT page + 1).
    let plan: Vec<Plan> = diesel::sql_query(
        "EXPLAIN SELECT * FROM customers WHERE delete_time IS NULL \
         AND (\"create_time\", \"id\") > (now() - interval '5000 seconds', '00000000-0000-0000-0000-000000000000') \
         ORDER BY create_time, id LIMIT 51",
    )
    .load(&mut conn)
    .await
    .unwrap();

    let plan: Vec<String> = plan.into_iter().map(|p| p.line).collect();
    assert!(
        plan[1].contains("Index Scan using customers_create_time_idx"),
        "{plan:#?}"
    );
    assert!(
        plan.iter()
            .any(|l| l.contains("Index Cond: (ROW(create_time, id) > ROW(")),
        "{plan:#?}"
    );
    assert!(!plan.iter().any(|l| l.contains("Sort")), "{plan:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn substring_searches_page_alike_whether_their_matches_are_dense_or_rare() {
    use diesel_async::SimpleAsyncConnection;
    let app = TestApp::spawn().await;
    // 3000 customers, one create_time for all (the id breaks every tie): every other one a
    // "Common…" (dense), every 150th a "Medium…" (3 among the first 500 probed rows), and
    // the 1200th, 2400th and 2999th a "Rare…" (none among the first 500).
    app.db()
        .await
        .batch_execute(
            "INSERT INTO customers (id, given_name, family_name, email, status, create_time) \
             SELECT gen_random_uuid(), 'G' || i, \
                    CASE WHEN i IN (1200, 2400, 2999) THEN 'Rarefield' \
                         WHEN i % 150 = 0 THEN 'Mediumson' \
                         WHEN i % 2 = 0 THEN 'Commonley' ELSE 'Other' END, \
                    's' || i || '@example.com', 1, '2026-01-01T00:00:00Z' \
             FROM generate_series(1, 3000) AS i; ANALYZE customers",
        )
        .await
        .unwrap();

    for (term, expected) in [("ommonl", 1480), ("mediums", 18), ("AREFIEL", 3)] {
        let filter = format!("family_name:\"{term}\"");
        // Every customer of the term, in list order, from PostgreSQL itself.
        let mut conn = app.db().await;
        #[derive(diesel::QueryableByName)]
        struct Name {
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            id: uuid::Uuid,
        }
        let expected_names: Vec<String> = diesel_async::RunQueryDsl::load::<Name>(
            diesel::sql_query(
                "SELECT id FROM customers WHERE family_name ILIKE $1 ORDER BY create_time, id",
            )
            .bind::<diesel::sql_types::Text, _>(format!("%{term}%")),
            &mut conn,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|row| format!("customers/{}", row.id))
        .collect();
        assert_eq!(expected_names.len(), expected, "{term}");

        for page_size in [2, 50, 1000] {
            let (names, _) = walk(&app, &filter, "", page_size).await;
            assert_eq!(names, expected_names, "{term}, pages of {page_size}");
        }
        let (names, _) = walk(&app, &format!("{filter} OR given_name = G1"), "", 9).await;
        assert_eq!(names.len(), expected + 1, "{term} OR");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rare_substring_searches_page_by_time_alike_in_both_directions_across_tied_times() {
    use diesel_async::SimpleAsyncConnection;
    let app = TestApp::spawn().await;
    // 3000 customers, four per create_time (the id breaking ties): 80 "Rarefield"s, none
    // among the 500 oldest or newest rows (a first page's probe finds none either way), in
    // pairs sharing a time; every other row a "Commonley".
    app.db()
        .await
        .batch_execute(
            "INSERT INTO customers (id, given_name, family_name, email, status, create_time) \
             SELECT gen_random_uuid(), 'G' || i, \
                    CASE WHEN i BETWEEN 600 AND 2400 AND i % 45 IN (0, 1) THEN 'Rarefield' \
                         WHEN i % 2 = 0 THEN 'Commonley' ELSE 'Other' END, \
                    's' || i || '@example.com', 1, \
                    '2026-01-01T00:00:00Z'::timestamptz + (i / 4) * interval '1 second' \
             FROM generate_series(1, 3000) AS i; ANALYZE customers",
        )
        .await
        .unwrap();

    for (order_by, sql_order) in [
        ("", "create_time, id"),
        ("create_time desc", "create_time DESC, id DESC"),
    ] {
        let mut conn = app.db().await;
        #[derive(diesel::QueryableByName)]
        struct Name {
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            id: uuid::Uuid,
        }
        let expected_names: Vec<String> = diesel_async::RunQueryDsl::load::<Name>(
            diesel::sql_query(format!(
                "SELECT id FROM customers WHERE family_name ILIKE '%arefiel%' ORDER BY {sql_order}"
            )),
            &mut conn,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|row| format!("customers/{}", row.id))
        .collect();
        assert_eq!(expected_names.len(), 80, "{order_by}");

        for page_size in [1, 3, 50, 1000] {
            let (names, _) = walk(&app, "family_name:\"arefiel\"", order_by, page_size).await;
            assert_eq!(names, expected_names, "{order_by}, pages of {page_size}");
        }
    }
}
