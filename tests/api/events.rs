//! Domain events: the transactional outbox, the change stream (list + watch, resumable in
//! commit order) and delivery to a real NATS JetStream as CloudEvents.

use std::{
    collections::{BTreeMap, HashSet},
    time::Duration,
};

use async_nats::jetstream::{self, stream::Config as StreamConfig};
use customer_api::pb::{self, customer_event::Kind};
use diesel_async::SimpleAsyncConnection;
use prost::Message;
use prost_types::FieldMask;
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{
    Proxy, TestApp, assert_invalid, assert_reason, eventually, nats_url, new_customer,
    sessions_waiting_for_locks,
};

/// Every event of `parent`, through every page.
pub(crate) async fn list_all(app: &TestApp, parent: &str, filter: &str) -> Vec<pb::CustomerEvent> {
    let mut events = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .client
            .clone()
            .list_customer_events(pb::ListCustomerEventsRequest {
                parent: parent.into(),
                page_size: 7,
                page_token,
                filter: filter.into(),
            })
            .await
            .unwrap()
            .into_inner();
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            return events;
        }
        page_token = page.next_page_token;
    }
}

pub(crate) fn kind(event: &pb::CustomerEvent) -> &'static str {
    match event.kind {
        Some(Kind::Registered(_)) => "registered",
        Some(Kind::Updated(_)) => "updated",
        Some(Kind::Deleted(_)) => "deleted",
        Some(Kind::Undeleted(_)) => "undeleted",
        Some(Kind::Purged(_)) => "purged",
        Some(Kind::Erased(_)) => "erased",
        Some(Kind::Merged(_)) => "merged",
        Some(Kind::Unmerged(_)) => "unmerged",
        Some(Kind::CompanyCreated(_)) => "company_created",
        Some(Kind::CompanyUpdated(_)) => "company_updated",
        Some(Kind::CompanyDeleted(_)) => "company_deleted",
        Some(Kind::CompanyUndeleted(_)) => "company_undeleted",
        Some(Kind::NoteAdded(_)) => "note_added",
        Some(Kind::NoteUpdated(_)) => "note_updated",
        Some(Kind::NoteDeleted(_)) => "note_deleted",
        None => "none",
    }
}

async fn update(
    app: &TestApp,
    customer: pb::Customer,
    paths: &[&str],
) -> Result<pb::Customer, tonic::Status> {
    app.client
        .clone()
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(customer),
            update_mask: Some(FieldMask {
                paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            }),
            request_id: String::new(),
            allow_missing: false,
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn every_change_records_exactly_one_event_of_its_type_with_sequence_and_diff() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    let request_id = Uuid::new_v4().to_string();
    let mut customer = new_customer("Ada", "Lovelace");
    customer.address = Some(pb::PostalAddress {
        locality: "London".into(),
        country_code: "GB".into(),
        ..Default::default()
    });
    let create = pb::CreateCustomerRequest {
        duplicate_policy: 0,
        customer: Some(customer),
        request_id: request_id.clone(),
    };
    let created = client
        .create_customer(create.clone())
        .await
        .unwrap()
        .into_inner();
    // A retried create replays the first answer and records nothing more.
    client.create_customer(create).await.unwrap();

    let change = pb::Customer {
        name: created.name.clone(),
        family_name: "Byron".into(),
        address: Some(pb::PostalAddress {
            locality: "Paris".into(),
            country_code: "GB".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let paths = ["family_name", "address.locality"];
    let updated = update(&app, change.clone(), &paths).await.unwrap();
    // The same values again change nothing: no event.
    update(&app, change, &paths).await.unwrap();
    // A stale etag fails: no event.
    let stale = pb::Customer {
        name: created.name.clone(),
        etag: created.etag.clone(),
        given_name: "Augusta".into(),
        ..Default::default()
    };
    let status = update(&app, stale, &["given_name"]).await.unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    let deleted = client
        .delete_customer(pb::DeleteCustomerRequest {
            name: created.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let undeleted = client
        .undelete_customer(pb::UndeleteCustomerRequest {
            name: created.name.clone(),
            etag: String::new(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();

    let events = list_all(&app, &created.name, "").await;
    assert_eq!(
        events.iter().map(kind).collect::<Vec<_>>(),
        ["registered", "updated", "deleted", "undeleted"]
    );
    assert_eq!(
        events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    for event in &events {
        assert_eq!(event.customer, created.name);
        assert_eq!(event.resource, created.name);
        assert_eq!(event.actor, "test-user");
        assert!(Uuid::parse_str(&event.event_id).is_ok());
        assert!(!event.resume_token.is_empty());
        assert!(event.occur_time.is_some());
    }
    assert_eq!(events[0].request_id, request_id);
    assert_eq!(events[0].snapshot.as_ref(), Some(&created));
    assert_eq!(events[1].snapshot.as_ref(), Some(&updated));
    assert_eq!(events[2].snapshot.as_ref(), Some(&deleted));
    assert!(deleted.delete_time.is_some());
    assert_eq!(events[3].snapshot.as_ref(), Some(&undeleted));
    let Some(Kind::Updated(diff)) = &events[1].kind else {
        panic!("second event is an update: {:?}", events[1]);
    };
    assert_eq!(
        diff.changed_fields.as_ref().unwrap().paths,
        ["family_name", "address.locality"]
    );
    let previous = diff.previous.as_ref().unwrap();
    assert_eq!(previous.family_name, "Lovelace");
    assert_eq!(previous.address.as_ref().unwrap().locality, "London");
    // Only the changed fields carry their previous values.
    assert_eq!(previous.given_name, "");
    assert_eq!(previous.email, "");
    assert_eq!(previous.address.as_ref().unwrap().country_code, "");
    assert_eq!(app.count("events", "").await, 4);
}

#[tokio::test]
async fn a_rolled_back_write_leaves_neither_change_nor_event() {
    let app = TestApp::spawn().await;
    let request_id = Uuid::new_v4();
    // Fail every write of this request id's record. A create claims its id last, so its
    // last statement fails, after the customer and its event were inserted: the transaction
    // must roll back whole (and the claiming path it then takes fails at its claim).
    app.db()
        .await
        .batch_execute(&format!(
            "CREATE FUNCTION fail_last_step() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$; \
             CREATE TRIGGER fail_last_step BEFORE INSERT OR UPDATE ON request_ids FOR EACH ROW \
             WHEN (NEW.request_id = '{request_id}') EXECUTE FUNCTION fail_last_step();"
        ))
        .await
        .unwrap();
    let status = app
        .client
        .clone()
        .create_customer(pb::CreateCustomerRequest {
            duplicate_policy: 0,
            customer: Some(new_customer("Roll", "Back")),
            request_id: request_id.to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Internal);
    assert_eq!(app.count("customers", "").await, 0);
    assert_eq!(app.count("events", "").await, 0);
    // Invalid input and conflicts record nothing either.
    let status = app
        .client
        .clone()
        .create_customer(pb::CreateCustomerRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let first = app.create("Only", "One").await;
    let mut duplicate = new_customer("Other", "Person");
    duplicate.email = first.email.clone();
    let status = app.create_customer(duplicate).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(app.count("events", "").await, 1);
}

#[tokio::test]
async fn listing_every_customers_events_pages_in_commit_order_and_filters() {
    let app = TestApp::spawn().await;
    let a = app.create("Ann", "Able").await;
    let b = app.create("Ben", "Baker").await;
    let a2 = update(
        &app,
        pb::Customer {
            name: a.name.clone(),
            given_name: "Anne".into(),
            ..Default::default()
        },
        &["given_name"],
    )
    .await
    .unwrap();
    let c = app.create("Cat", "Cole").await;
    update(
        &app,
        pb::Customer {
            name: a2.name.clone(),
            given_name: "Annie".into(),
            ..Default::default()
        },
        &["given_name"],
    )
    .await
    .unwrap();
    for _ in 0..4 {
        app.create("Filler", "Row").await;
    }

    let all = list_all(&app, "customers/-", "").await;
    assert_eq!(all.len(), 9);
    let head: Vec<(&str, i64)> = all[..5]
        .iter()
        .map(|e| (e.customer.as_str(), e.sequence))
        .collect();
    assert_eq!(
        head,
        [
            (a.name.as_str(), 1),
            (b.name.as_str(), 1),
            (a.name.as_str(), 2),
            (c.name.as_str(), 1),
            (a.name.as_str(), 3)
        ]
    );
    let updates = list_all(&app, "customers/-", "type = CustomerUpdated").await;
    assert_eq!(
        updates.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [2, 3]
    );
    let none = list_all(
        &app,
        "customers/-",
        r#"actor != "test-user" AND occur_time >= "2000-01-01T00:00:00Z""#,
    )
    .await;
    assert!(none.is_empty());

    let status = app
        .client
        .clone()
        .list_customer_events(pb::ListCustomerEventsRequest {
            parent: "customers/nope".into(),
            page_size: -1,
            page_token: String::new(),
            filter: "color = red".into(),
        })
        .await
        .unwrap_err();
    assert_invalid(
        &status,
        "INVALID_FIELDS",
        &["parent", "page_size", "filter"],
    );

    let first = app
        .client
        .clone()
        .list_customer_events(pb::ListCustomerEventsRequest {
            parent: "customers/-".into(),
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let status = app
        .client
        .clone()
        .list_customer_events(pb::ListCustomerEventsRequest {
            parent: "customers/-".into(),
            page_size: 2,
            page_token: first.next_page_token,
            filter: "type = CustomerUpdated".into(),
        })
        .await
        .unwrap_err();
    assert_invalid(&status, "INVALID_PAGE_TOKEN", &["page_token"]);
}

#[tokio::test]
async fn the_events_filter_is_the_whole_filter_language() {
    let app = TestApp::spawn().await;
    let customers = [
        app.create("Ann", "Or").await,
        app.create("Ben", "Or").await,
        app.create("Cat", "Or").await,
        app.create("Dan", "Or").await,
        app.create("Eve", "Or").await,
        app.create("Fay", "Or").await,
    ];
    update(
        &app,
        pb::Customer {
            name: customers[0].name.clone(),
            given_name: "Anne".into(),
            ..Default::default()
        },
        &["given_name"],
    )
    .await
    .unwrap();
    for deleted in [&customers[1], &customers[4]] {
        app.client
            .clone()
            .delete_customer(pb::DeleteCustomerRequest {
                name: deleted.name.clone(),
                etag: String::new(),
                request_id: String::new(),
            })
            .await
            .unwrap();
    }
    let summary = |events: &[pb::CustomerEvent]| -> Vec<(String, &'static str, i64)> {
        events
            .iter()
            .map(|e| (e.customer.clone(), kind(e), e.sequence))
            .collect()
    };
    let name = |i: usize| customers[i].name.clone();

    // OR with one double- and one single-quoted value: 8 events, so two pages of 7 whose
    // token is bound to this filter.
    let either = r#"type = "CustomerRegistered" OR type = 'CustomerDeleted'"#;
    let picked = list_all(&app, "customers/-", either).await;
    let mut want: Vec<_> = (0..6).map(|i| (name(i), "registered", 1)).collect();
    want.extend([(name(1), "deleted", 2), (name(4), "deleted", 2)]);
    assert_eq!(summary(&picked), want);

    // NOT and parentheses.
    let rest = list_all(
        &app,
        "customers/-",
        "NOT (type = CustomerRegistered OR event_type = 'CustomerDeleted')",
    )
    .await;
    assert_eq!(summary(&rest), [(name(0), "updated", 2)]);
    let one = list_all(
        &app,
        &customers[1].name,
        "-type = CustomerRegistered (actor = 'test-user' OR actor = nobody)",
    )
    .await;
    assert_eq!(summary(&one), [(name(1), "deleted", 2)]);

    // The same over REST.
    let (status, _, page) = crate::rest::call(
        &app,
        false,
        http::Method::GET,
        "/v1/customers/-/events?filter=type%20%3D%20%22CustomerRegistered%22%20OR%20type%20%3D%20%27CustomerDeleted%27&pageSize=20",
        None,
        &[],
    )
    .await;
    assert_eq!(status, http::StatusCode::OK, "{page}");
    let over_rest: Vec<(String, String)> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let kind = if e.get("deleted").is_some() {
                "deleted"
            } else {
                "registered"
            };
            (e["customer"].as_str().unwrap().to_owned(), kind.to_owned())
        })
        .collect();
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(customer, kind, _)| (customer.clone(), (*kind).to_owned()))
        .collect();
    assert_eq!(over_rest, want);

    // A page token of one OR filter is refused for another.
    let first = app
        .client
        .clone()
        .list_customer_events(pb::ListCustomerEventsRequest {
            parent: "customers/-".into(),
            page_size: 2,
            page_token: String::new(),
            filter: either.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let status = app
        .client
        .clone()
        .list_customer_events(pb::ListCustomerEventsRequest {
            parent: "customers/-".into(),
            page_size: 2,
            page_token: first.next_page_token,
            filter: "type = CustomerRegistered OR type = CustomerUpdated".into(),
        })
        .await
        .unwrap_err();
    assert_invalid(&status, "INVALID_PAGE_TOKEN", &["page_token"]);

    // Errors still name the filter.
    let status = app
        .client
        .clone()
        .list_customer_events(pb::ListCustomerEventsRequest {
            parent: "customers/-".into(),
            filter: "type = CustomerRegistered OR".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(&status, "INVALID_FIELDS", &["filter"]);
}

/// Reads `n` events from a watch stream.
pub(crate) async fn take(
    stream: &mut tonic::Streaming<pb::CustomerEvent>,
    n: usize,
) -> Vec<pb::CustomerEvent> {
    let mut events = Vec::with_capacity(n);
    while events.len() < n {
        let event = tokio::time::timeout(Duration::from_secs(20), stream.message())
            .await
            .unwrap_or_else(|_| panic!("timed out after {} of {n} events", events.len()))
            .unwrap()
            .expect("the stream stays open");
        events.push(event);
    }
    events
}

#[tokio::test]
async fn watchers_resuming_from_any_token_see_every_event_once_in_order_under_concurrent_writers() {
    const TASKS: usize = 4;
    const CUSTOMERS: usize = 3;
    const UPDATES: usize = 4;
    const TOTAL: usize = TASKS * CUSTOMERS * (1 + UPDATES);
    let app = TestApp::spawn().await;
    let mut stream = app.watch("customers/-", "").await.unwrap();

    let writers: Vec<_> = (0..TASKS)
        .map(|task| {
            let client = app.client.clone();
            tokio::spawn(async move {
                for n in 0..CUSTOMERS {
                    let mut client = client.clone();
                    let created = client
                        .create_customer(pb::CreateCustomerRequest {
                            duplicate_policy: 0,
                            customer: Some(new_customer("Writer", &format!("T{task}n{n}"))),
                            request_id: String::new(),
                        })
                        .await
                        .unwrap()
                        .into_inner();
                    for u in 0..UPDATES {
                        client
                            .update_customer(pb::UpdateCustomerRequest {
                                customer: Some(pb::Customer {
                                    name: created.name.clone(),
                                    given_name: format!("W{u}"),
                                    ..Default::default()
                                }),
                                update_mask: Some(FieldMask {
                                    paths: vec!["given_name".into()],
                                }),
                                request_id: String::new(),
                                allow_missing: false,
                            })
                            .await
                            .unwrap();
                    }
                }
            })
        })
        .collect();

    // Disconnect part-way and resume with the last token, while the writers run.
    let mut seen = take(&mut stream, TOTAL / 3).await;
    drop(stream);
    let mut stream = app
        .watch("customers/-", &seen.last().unwrap().resume_token)
        .await
        .unwrap();
    seen.extend(take(&mut stream, TOTAL - seen.len()).await);
    for writer in writers {
        writer.await.unwrap();
    }

    let ids: Vec<&str> = seen.iter().map(|e| e.event_id.as_str()).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), TOTAL, "no event twice");
    let stored = list_all(&app, "customers/-", "").await;
    assert_eq!(stored.len(), TOTAL);
    assert_eq!(
        stored
            .iter()
            .map(|e| e.event_id.as_str())
            .collect::<Vec<_>>(),
        ids,
        "the watch saw exactly the log, in the log's order"
    );
    let mut per_customer: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for event in &seen {
        per_customer
            .entry(&event.customer)
            .or_default()
            .push(event.sequence);
    }
    assert_eq!(per_customer.len(), TASKS * CUSTOMERS);
    for sequences in per_customer.values() {
        assert_eq!(*sequences, (1..=(1 + UPDATES) as i64).collect::<Vec<_>>());
    }
    // Resuming from any token yields exactly the rest of the log.
    for k in [0, 7, TOTAL / 2, TOTAL - 2] {
        let mut resumed = app
            .watch("customers/-", &seen[k].resume_token)
            .await
            .unwrap();
        let rest = take(&mut resumed, TOTAL - k - 1).await;
        assert_eq!(
            rest.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(),
            ids[k + 1..]
        );
    }
    // One customer's stream holds only that customer's events.
    let one = &seen[0].customer;
    let mut mine = app.watch(one, "").await.unwrap();
    let events = take(&mut mine, 1 + UPDATES).await;
    assert!(events.iter().all(|e| &e.customer == one));
}

#[tokio::test]
async fn a_write_that_commits_late_is_not_skipped_by_watchers_or_resumes() {
    let app = TestApp::spawn().await;
    let slow = app.create("Slow", "Writer").await;
    let mut stream = app.watch("customers/-", "").await.unwrap();
    let registered = take(&mut stream, 1).await;

    // Hold the slow customer's update right after its event row is inserted (its insertion
    // id is now taken), until this test lets go of an advisory lock.
    let mut gate = app.db().await;
    gate.batch_execute(
        "CREATE FUNCTION hold_event() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_advisory_xact_lock_shared(4242); RETURN NEW; END $$; \
         CREATE TRIGGER hold_event AFTER INSERT ON events FOR EACH ROW \
         WHEN (NEW.event_type = 'CustomerUpdated') EXECUTE FUNCTION hold_event(); \
         SELECT pg_advisory_lock(4242);",
    )
    .await
    .unwrap();
    let slow_update = {
        let app_client = app.client.clone();
        let name = slow.name.clone();
        tokio::spawn(async move {
            let mut client = app_client;
            client
                .update_customer(pb::UpdateCustomerRequest {
                    customer: Some(pb::Customer {
                        name,
                        given_name: "Late".into(),
                        ..Default::default()
                    }),
                    update_mask: Some(FieldMask {
                        paths: vec!["given_name".into()],
                    }),
                    request_id: String::new(),
                    allow_missing: false,
                })
                .await
                .unwrap()
        })
    };
    eventually("the slow update waits on the gate", || async {
        sessions_waiting_for_locks(&app).await == 1
    })
    .await;
    // Later writes commit first.
    for n in 0..3 {
        app.create("Quick", &format!("Q{n}")).await;
    }
    let quick = take(&mut stream, 3).await;
    assert!(quick.iter().all(|e| kind(e) == "registered"));
    let token_before_late_commit = quick.last().unwrap().resume_token.clone();

    gate.batch_execute("SELECT pg_advisory_unlock(4242)")
        .await
        .unwrap();
    slow_update.await.unwrap();
    let late = take(&mut stream, 1).await;
    assert_eq!(late[0].customer, slow.name);
    assert_eq!(kind(&late[0]), "updated");
    assert_eq!(late[0].sequence, 2);
    // A consumer that stopped just before the late commit finds it on resume.
    let mut resumed = app
        .watch("customers/-", &token_before_late_commit)
        .await
        .unwrap();
    assert_eq!(take(&mut resumed, 1).await[0].event_id, late[0].event_id);
    assert_eq!(registered[0].customer, slow.name);
}

#[tokio::test]
async fn watch_refuses_bad_input_and_tokens_older_than_retention() {
    let app = TestApp::spawn_with(|settings| {
        settings.events.event_prune_interval = Duration::from_millis(50);
    })
    .await;
    let customer = app.create("Old", "Timer").await;
    for given in ["Newer", "Newest"] {
        update(
            &app,
            pb::Customer {
                name: customer.name.clone(),
                given_name: given.into(),
                ..Default::default()
            },
            &["given_name"],
        )
        .await
        .unwrap();
    }
    let events = list_all(&app, &customer.name, "").await;
    assert_eq!(events.len(), 3);

    let status = app.watch("customers/nope", "garbage").await.unwrap_err();
    assert_invalid(&status, "INVALID_FIELDS", &["parent", "start_after"]);

    // Age the first two events past the 30-day retention; the pruner removes them.
    app.db()
        .await
        .batch_execute(
            "UPDATE events SET occur_time = now() - interval '31 days' WHERE sequence <= 2",
        )
        .await
        .unwrap();
    eventually("the old events are pruned", || async {
        app.count("events", "").await == 1
    })
    .await;
    // The first token's successor is gone: resuming from it would skip an event.
    let status = app
        .watch("customers/-", &events[0].resume_token)
        .await
        .unwrap_err();
    assert_reason(&status, Code::OutOfRange, "RESUME_TOKEN_EXPIRED");
    // The token of the last pruned event still resumes (nothing after it is missing); an
    // empty one starts with the oldest retained event.
    let mut resumed = app
        .watch("customers/-", &events[1].resume_token)
        .await
        .unwrap();
    assert_eq!(take(&mut resumed, 1).await[0].event_id, events[2].event_id);
    let mut from_start = app.watch("customers/-", "").await.unwrap();
    assert_eq!(
        take(&mut from_start, 1).await[0].event_id,
        events[2].event_id
    );
}

#[tokio::test]
async fn rest_lists_events_and_streams_the_watch_as_ndjson() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};

    let app = TestApp::spawn().await;
    let customer = app.create("Rest", "Stream").await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let request = |path: String| {
        http::Request::get(format!("http://{}{path}", app.addr))
            .header("authorization", app.bearer())
            .body(Empty::new())
            .unwrap()
    };
    let response = client
        .request(request(format!("/v1/{}/events", customer.name)))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let event = &json["events"][0];
    assert_eq!(event["customer"], customer.name.as_str());
    assert_eq!(event["sequence"], "1");
    assert_eq!(event["registered"], serde_json::json!({}));
    assert_eq!(event["snapshot"]["email"], customer.email.as_str());

    let response = client
        .request(request("/v1/customers/-/events:watch".into()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut text = String::new();
    while !text.contains('\n') {
        let frame = tokio::time::timeout(Duration::from_secs(20), body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let streamed = line.get("result").unwrap_or(&line);
    assert_eq!(streamed["customer"], customer.name.as_str());
    assert_eq!(streamed["eventId"], event["eventId"]);
}

// ---------------------------------------------------------------------------------------
// NATS JetStream

/// A stream name and subject prefix of this test's own, so parallel tests never mix.
pub(crate) fn private_stream() -> (String, String) {
    let id = Uuid::new_v4().simple().to_string();
    (format!("TEST_EVENTS_{id}"), format!("test.{id}.events"))
}

pub(crate) async fn jetstream_context(url: &str) -> jetstream::Context {
    jetstream::new(async_nats::connect(url).await.expect("connect to NATS"))
}

/// Waits until `stream` holds `n` messages and returns them in stream order.
pub(crate) async fn stream_messages(
    js: &jetstream::Context,
    stream: &str,
    n: u64,
) -> Vec<jetstream::message::StreamMessage> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let count = match js.get_stream(stream).await {
            Ok(mut handle) => handle.info().await.map_or(0, |info| info.state.messages),
            Err(_) => 0,
        };
        if count >= n {
            assert_eq!(count, n, "exactly {n} messages in {stream}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{stream} holds {count} of {n} messages"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let handle = js.get_stream(stream).await.unwrap();
    let mut messages = Vec::new();
    for sequence in 1..=n {
        messages.push(handle.get_raw_message(sequence).await.unwrap());
    }
    messages
}

pub(crate) fn header<'a>(message: &'a jetstream::message::StreamMessage, name: &str) -> &'a str {
    message
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("header {name} missing"))
        .as_str()
}

/// Asserts the messages are each stored event exactly once, in per-customer order.
pub(crate) fn assert_exactly_once_in_order(
    messages: &[jetstream::message::StreamMessage],
    stored: &[pb::CustomerEvent],
) {
    let ids: Vec<&str> = messages.iter().map(|m| header(m, "ce-id")).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "no duplicates");
    let expected: HashSet<&str> = stored.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(unique, expected);
    let mut last: BTreeMap<&str, i64> = BTreeMap::new();
    for message in messages {
        let sequence: i64 = header(message, "ce-sequence").parse().unwrap();
        let previous = last.insert(header(message, "ce-subject"), sequence);
        assert_eq!(sequence, previous.unwrap_or(0) + 1, "per-customer order");
    }
}

#[tokio::test]
async fn the_relay_publishes_cloudevents_to_the_customer_events_stream() {
    // The contract's names are the defaults: stream CUSTOMER_EVENTS, subjects
    // customer.v1.events.<type>. The test publishes to a private stream and prefix of its
    // own, never into the CUSTOMER_EVENTS of whatever broker it is given.
    let defaults = customer_api::config::ServeSettings::for_database("unused").events;
    assert_eq!(defaults.nats_stream, "CUSTOMER_EVENTS");
    assert_eq!(defaults.nats_subject_prefix, "customer.v1.events");
    let url = nats_url();
    let (stream_name, prefix) = private_stream();
    let app = TestApp::spawn_with(|settings| {
        settings.events.nats_url = Some(url.clone());
        settings.events.nats_stream = stream_name.clone();
        settings.events.nats_subject_prefix = prefix.clone();
    })
    .await;
    let js = jetstream_context(&url).await;
    let created = app.create("Cloud", "Events").await;
    update(
        &app,
        pb::Customer {
            name: created.name.clone(),
            given_name: "Claude".into(),
            ..Default::default()
        },
        &["given_name"],
    )
    .await
    .unwrap();
    let mut client = app.client.clone();
    client
        .delete_customer(pb::DeleteCustomerRequest {
            name: created.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    client
        .undelete_customer(pb::UndeleteCustomerRequest {
            name: created.name.clone(),
            etag: String::new(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let stored = list_all(&app, &created.name, "").await;
    eventually("every event is marked published", || async {
        app.count("events", "publish_time IS NULL").await == 0
    })
    .await;

    let stream = js.get_stream(&stream_name).await.unwrap();
    for (event, token) in stored
        .iter()
        .zip(["registered", "updated", "deleted", "undeleted"])
    {
        let message = stream
            .get_last_raw_message_by_subject(&format!("{prefix}.{token}"))
            .await
            .unwrap();
        assert_eq!(header(&message, "ce-specversion"), "1.0");
        assert_eq!(header(&message, "ce-id"), event.event_id);
        assert_eq!(header(&message, "Nats-Msg-Id"), event.event_id);
        assert_eq!(
            header(&message, "ce-source"),
            "//customer.example.com/customer-api"
        );
        let kind = match token {
            "registered" => "CustomerRegistered",
            "updated" => "CustomerUpdated",
            "deleted" => "CustomerDeleted",
            _ => "CustomerUndeleted",
        };
        assert_eq!(header(&message, "ce-type"), format!("customer.v1.{kind}"));
        assert_eq!(header(&message, "ce-subject"), created.name);
        assert_eq!(header(&message, "ce-partitionkey"), created.name);
        assert_eq!(header(&message, "ce-sequence"), event.sequence.to_string());
        assert_eq!(header(&message, "content-type"), "application/protobuf");
        let time = chrono::DateTime::parse_from_rfc3339(header(&message, "ce-time")).unwrap();
        let occur = event.occur_time.unwrap();
        assert_eq!(time.timestamp(), occur.seconds);
        assert_eq!(time.timestamp_subsec_micros() * 1000, occur.nanos as u32);
        // No personal data in headers.
        for (_, values) in message.headers.iter() {
            for value in values {
                assert!(!value.as_str().contains(&created.email));
                assert!(!value.as_str().contains("Cloud"));
            }
        }
        let body = pb::CustomerEvent::decode(message.payload.clone()).unwrap();
        assert_eq!(
            body,
            pb::CustomerEvent {
                resume_token: String::new(),
                ..event.clone()
            }
        );
    }
    let health = reqwest_json(&app, "/healthz/events").await;
    assert_eq!(health["unpublished"], 0);
    assert_eq!(health["relay"]["enabled"], true);
    assert_eq!(health["relay"]["connected"], true);
    js.delete_stream(&stream_name).await.unwrap();
}

/// GET a plain JSON endpoint.
pub(crate) async fn reqwest_json(app: &TestApp, path: &str) -> serde_json::Value {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let response = client
        .get(format!("http://{}{path}", app.addr).parse().unwrap())
        .await
        .unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn a_broker_outage_delays_events_but_loses_none_and_writes_keep_succeeding() {
    let url = nats_url();
    let (stream, prefix) = private_stream();
    let proxy = Proxy::start(crate::helpers::authority(&url).as_str()).await;
    let routed = format!("nats://{}", proxy.addr);
    let app = TestApp::spawn_with(|settings| {
        settings.events.nats_url = Some(routed.clone());
        settings.events.nats_stream = stream.clone();
        settings.events.nats_subject_prefix = prefix.clone();
    })
    .await;
    let js = jetstream_context(&url).await;
    app.create("Before", "Outage").await;
    stream_messages(&js, &stream, 1).await;
    eventually("the first event is marked published", || async {
        app.count("events", "publish_time IS NULL").await == 0
    })
    .await;

    let (addr, upstream) = proxy.cut().await;
    let writers: Vec<_> = (0..10)
        .map(|task| {
            let client = app.client.clone();
            tokio::spawn(async move {
                for n in 0..5 {
                    let mut client = client.clone();
                    let created = client
                        .create_customer(pb::CreateCustomerRequest {
                            duplicate_policy: 0,
                            customer: Some(new_customer("During", &format!("T{task}n{n}"))),
                            request_id: String::new(),
                        })
                        .await
                        .expect("writes succeed while the broker is down")
                        .into_inner();
                    for u in 0..9 {
                        client
                            .update_customer(pb::UpdateCustomerRequest {
                                customer: Some(pb::Customer {
                                    name: created.name.clone(),
                                    given_name: format!("U{u}"),
                                    ..Default::default()
                                }),
                                update_mask: Some(FieldMask {
                                    paths: vec!["given_name".into()],
                                }),
                                request_id: String::new(),
                                allow_missing: false,
                            })
                            .await
                            .expect("writes succeed while the broker is down");
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    assert_eq!(app.count("events", "").await, 501);
    assert_eq!(app.count("events", "publish_time IS NULL").await, 500);
    let health = reqwest_json(&app, "/healthz/events").await;
    assert_eq!(health["unpublished"], 500);
    assert!(health["oldestUnpublishedAgeSeconds"].as_f64().unwrap() >= 0.0);

    let _proxy = Proxy::start_at(addr, &upstream).await;
    let messages = stream_messages(&js, &stream, 501).await;
    eventually("every event is marked published", || async {
        app.count("events", "publish_time IS NULL").await == 0
    })
    .await;
    let stored = list_all(&app, "customers/-", "").await;
    assert_exactly_once_in_order(&messages, &stored);
    assert_eq!(
        js.get_stream(&stream)
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .messages,
        501,
        "nothing was published twice"
    );
    js.delete_stream(&stream).await.unwrap();
}

#[tokio::test]
async fn a_republish_after_a_crash_between_publish_and_mark_is_deduplicated() {
    let url = nats_url();
    let (stream, prefix) = private_stream();
    // An instance without a broker records an event that nobody has published yet.
    let mut first = TestApp::spawn().await;
    let customer = first.create("Crash", "Test").await;
    first.stop().await;

    // What a relay that crashed after publishing (before marking) left behind: the event in
    // JetStream, and the row still unpublished.
    let js = jetstream_context(&url).await;
    js.get_or_create_stream(StreamConfig {
        name: stream.clone(),
        subjects: vec![format!("{prefix}.>")],
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut settings = customer_api::config::ServeSettings::for_database(&first.database_url);
    settings.events.nats_subject_prefix = prefix.clone();
    let mut conn = first.db().await;
    let rows = customer_api::db::events::unpublished(&mut conn, 10).await;
    let rows = match rows {
        Ok(rows) if !rows.is_empty() => rows,
        _ => {
            // Not numbered yet (the first instance stopped right after the write): number it.
            customer_api::db::events::assign_positions(&mut conn, 10)
                .await
                .unwrap();
            customer_api::db::events::unpublished(&mut conn, 10)
                .await
                .unwrap()
        }
    };
    assert_eq!(rows.len(), 1);
    let event = customer_api::service::events::event_of(rows[0].clone()).unwrap();
    let traceparent = rows[0].traceparent.clone();
    let (subject, message) =
        customer_api::relay::cloud_event(&settings.events, event, traceparent.as_deref());
    js.send_publish(subject, message)
        .await
        .unwrap()
        .await
        .unwrap();

    // The restarted relay publishes it again; JetStream drops the duplicate.
    let second = TestApp::spawn_on(
        first.database_url.clone(),
        first.database_name.clone(),
        |settings| {
            settings.events.nats_url = Some(url.clone());
            settings.events.nats_stream = stream.clone();
            settings.events.nats_subject_prefix = prefix.clone();
        },
        None,
    )
    .await;
    eventually("the relay marks the event published", || async {
        second.count("events", "publish_time IS NULL").await == 0
    })
    .await;
    let messages = stream_messages(&js, &stream, 1).await;
    assert_eq!(header(&messages[0], "ce-subject"), customer.name);
    js.delete_stream(&stream).await.unwrap();
}

#[tokio::test]
async fn company_and_note_events_are_published_with_their_own_types_and_subjects() {
    let url = nats_url();
    let (stream, prefix) = private_stream();
    let app = TestApp::spawn_with(|settings| {
        settings.events.nats_url = Some(url.clone());
        settings.events.nats_stream = stream.clone();
        settings.events.nats_subject_prefix = prefix.clone();
    })
    .await;
    let js = jetstream_context(&url).await;
    let mut client = app.client.clone();
    let company = client
        .create_company(pb::CreateCompanyRequest {
            duplicate_policy: 0,
            company: Some(pb::Company {
                display_name: "Acme".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let customer = app.create("Nora", "Notes").await;
    let note = client
        .create_note(pb::CreateNoteRequest {
            parent: customer.name.clone(),
            note: Some(pb::Note {
                text: "First contact.".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let stored = list_all(&app, "customers/-", "").await;
    let messages = stream_messages(&js, &stream, 3).await;
    let seen: Vec<(String, &str, &str, &str)> = messages
        .iter()
        .map(|m| {
            (
                m.subject.to_string(),
                header(m, "ce-type"),
                header(m, "ce-subject"),
                header(m, "ce-partitionkey"),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                format!("{prefix}.company_created"),
                "customer.v1.CompanyCreated",
                company.name.as_str(),
                company.name.as_str()
            ),
            (
                format!("{prefix}.registered"),
                "customer.v1.CustomerRegistered",
                customer.name.as_str(),
                customer.name.as_str()
            ),
            (
                format!("{prefix}.note_added"),
                "customer.v1.NoteAdded",
                note.name.as_str(),
                customer.name.as_str()
            ),
        ]
    );
    for (message, event) in messages.iter().zip(&stored) {
        assert_eq!(header(message, "ce-id"), event.event_id);
        assert_eq!(header(message, "ce-sequence"), "1");
        let body = pb::CustomerEvent::decode(message.payload.clone()).unwrap();
        assert_eq!(
            body,
            pb::CustomerEvent {
                resume_token: String::new(),
                ..event.clone()
            }
        );
    }
    js.delete_stream(&stream).await.unwrap();
}

#[tokio::test]
async fn two_instances_on_one_database_deliver_each_event_once_in_order() {
    let url = nats_url();
    let (stream, prefix) = private_stream();
    let configure = |settings: &mut customer_api::config::ServeSettings| {
        settings.events.nats_url = Some(url.clone());
        settings.events.nats_stream = stream.clone();
        settings.events.nats_subject_prefix = prefix.clone();
    };
    let a = TestApp::spawn_with(configure).await;
    let b = TestApp::spawn_on(
        a.database_url.clone(),
        a.database_name.clone(),
        configure,
        None,
    )
    .await;
    let clients = [a.client.clone(), b.client.clone()];
    let writers: Vec<_> = (0..6)
        .map(|task| {
            let clients = clients.clone();
            tokio::spawn(async move {
                for n in 0..3 {
                    let created = clients[(task + n) % 2]
                        .clone()
                        .create_customer(pb::CreateCustomerRequest {
                            duplicate_policy: 0,
                            customer: Some(new_customer("Twin", &format!("T{task}n{n}"))),
                            request_id: String::new(),
                        })
                        .await
                        .unwrap()
                        .into_inner();
                    for u in 0..5 {
                        clients[(task + n + u + 1) % 2]
                            .clone()
                            .update_customer(pb::UpdateCustomerRequest {
                                customer: Some(pb::Customer {
                                    name: created.name.clone(),
                                    given_name: format!("U{u}"),
                                    ..Default::default()
                                }),
                                update_mask: Some(FieldMask {
                                    paths: vec!["given_name".into()],
                                }),
                                request_id: String::new(),
                                allow_missing: false,
                            })
                            .await
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let total = 6 * 3 * 6;
    assert_eq!(a.count("events", "").await, total);
    let js = jetstream_context(&url).await;
    let messages = stream_messages(&js, &stream, total as u64).await;
    eventually("every event is marked published", || async {
        a.count("events", "publish_time IS NULL").await == 0
    })
    .await;
    let stored = list_all(&a, "customers/-", "").await;
    assert_exactly_once_in_order(&messages, &stored);
    js.delete_stream(&stream).await.unwrap();
}
