//! The server's lifecycle and its background tasks: every task runs in the supervised set
//! (visible in `/metrics`), and reads of the event log wait for the sequencer instead of
//! taking its lock.

use std::time::Duration;

use bytes::Bytes;
use customer_api::pb;
use diesel_async::SimpleAsyncConnection;
use http_body_util::{BodyExt, Empty};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use prost_types::FieldMask;

use crate::{
    events::{kind, list_all},
    helpers::{TestApp, eventually, sessions_waiting_for_locks},
};

async fn metrics_text(app: &TestApp) -> String {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = client
        .get(format!("http://{}/metrics", app.addr).parse().unwrap())
        .await
        .unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn every_background_task_is_supervised_and_a_healthy_server_restarts_none() {
    let app = TestApp::spawn().await;
    app.create("Task", "Watcher").await;

    let text = metrics_text(&app).await;

    let mut restarts: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("customer_api_background_task_restarts_total{"))
        .collect();
    restarts.sort_unstable();
    assert_eq!(
        restarts,
        [
            r#"customer_api_background_task_restarts_total{task="api-key-listener"} 0"#,
            r#"customer_api_background_task_restarts_total{task="customer-purger"} 0"#,
            r#"customer_api_background_task_restarts_total{task="event-listener"} 0"#,
            r#"customer_api_background_task_restarts_total{task="event-pruner"} 0"#,
            r#"customer_api_background_task_restarts_total{task="event-sequencer"} 0"#,
            r#"customer_api_background_task_restarts_total{task="health-probe"} 0"#,
            r#"customer_api_background_task_restarts_total{task="request-id-purger"} 0"#,
        ],
        "{text}"
    );
}

#[tokio::test]
async fn reads_of_the_event_log_take_no_lock_and_still_see_a_write_that_returned_on_another_instance()
 {
    let a = TestApp::spawn().await;
    let b = TestApp::spawn_on(
        a.database_url.clone(),
        a.database_name.clone(),
        |_| {},
        None,
    )
    .await;
    let created = b.create("Cross", "Instance").await;
    assert_eq!(list_all(&a, &created.name, "").await.len(), 1);

    // Hold the event log's lock, as a sequencer in the middle of a run would.
    let mut gate = a.db().await;
    gate.batch_execute("BEGIN; SELECT 1 FROM event_log FOR UPDATE")
        .await
        .unwrap();
    // Every event has its position: a list answers without touching the lock.
    let listed = tokio::time::timeout(Duration::from_secs(10), list_all(&a, &created.name, ""))
        .await
        .expect("a list does not wait for the event_log lock");
    assert_eq!(listed.len(), 1);

    // A write returns on the other instance while no sequencer can number its event.
    b.client
        .clone()
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                name: created.name.clone(),
                given_name: "Crossed".into(),
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
    let pending = {
        let mut client = a.client.clone();
        let parent = created.name.clone();
        tokio::spawn(async move {
            client
                .list_customer_events(pb::ListCustomerEventsRequest {
                    parent,
                    ..Default::default()
                })
                .await
        })
    };
    eventually("both instances' sequencers wait for the lock", || async {
        sessions_waiting_for_locks(&a).await == 2
    })
    .await;
    assert!(
        !pending.is_finished(),
        "the list waits until the write's event is numbered"
    );

    gate.batch_execute("COMMIT").await.unwrap();
    let page = pending.await.unwrap().unwrap().into_inner();
    let kinds: Vec<&str> = page.events.iter().map(kind).collect();
    assert_eq!(kinds, ["registered", "updated"]);
    assert_eq!(
        page.events[1].snapshot.as_ref().unwrap().given_name,
        "Crossed"
    );
}

#[tokio::test]
async fn an_unusable_nats_url_stops_start_up_without_echoing_it() {
    let database = crate::helpers::fresh_database().await;
    let (database_url, _) = database.parts();
    let mut settings = customer_api::config::ServeSettings::for_database(database_url);
    settings.events.nats_url = Some("http://relay:s3cret@127.0.0.1:4222".into());

    let error = customer_api::app::App::build(settings).await.unwrap_err();

    assert_eq!(
        error.to_string(),
        "invalid configuration: NATS_URL: invalid scheme for NATS server URL: http"
    );
}
