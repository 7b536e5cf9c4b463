//! The relay lease and chunked publishing, against a real PostgreSQL and NATS JetStream.
//!
//! The lease is a session-level advisory lock: these tests read it from `pg_locks` and check
//! that its session holds no transaction open, that a standby takes it when the leader
//! stops, and that a leader whose session is killed takes it again, with every event
//! published exactly once, in position order, in chunks of [`CHUNK`] events or fewer.

use std::time::Duration;

use customer_api::{config::ServeSettings, db::relay::RELAY_LOCK, relay::CHUNK};
use diesel::{
    OptionalExtension, QueryableByName,
    sql_types::{Bool, Integer, Text},
};
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};

use crate::{
    events::{
        assert_exactly_once_in_order, header, jetstream_context, list_all, private_stream,
        reqwest_json, stream_messages,
    },
    helpers::{TestApp, eventually, nats_url},
};

/// The session holding the relay lease of a test database.
#[derive(Debug, QueryableByName)]
struct Holder {
    #[diesel(sql_type = Integer)]
    pid: i32,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Bool)]
    in_transaction: bool,
}

async fn lease_holder(app: &TestApp) -> Option<Holder> {
    // A bigint advisory key shows as classid (high half) and objid (low half), objsubid 1.
    let query = format!(
        "SELECT a.pid, coalesce(a.state, '') AS state, a.xact_start IS NOT NULL AS in_transaction \
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
           AND l.classid = {} AND l.objid = {} \
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        RELAY_LOCK >> 32,
        RELAY_LOCK & 0xffff_ffff
    );
    let mut conn = app.db().await;
    diesel::sql_query(query)
        .get_result(&mut conn)
        .await
        .optional()
        .unwrap()
}

/// Waits until the lease is held by a session (other than `other_than`) that is idle outside
/// any transaction, and returns that session's pid.
async fn idle_leader(app: &TestApp, other_than: Option<i32>) -> i32 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let holder = lease_holder(app).await;
        if let Some(holder) = &holder
            && holder.state == "idle"
            && !holder.in_transaction
            && Some(holder.pid) != other_than
        {
            return holder.pid;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no idle session outside a transaction took the lease: {holder:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn create_many(app: &TestApp, family: &str, n: usize) {
    for i in 0..n {
        app.create("Chunk", &format!("{family}{i}")).await;
    }
}

/// The event ids of `messages` in stream order equal those of the log in position order.
fn assert_in_position_order(
    messages: &[async_nats::jetstream::message::StreamMessage],
    stored: &[customer_api::pb::CustomerEvent],
) {
    assert_exactly_once_in_order(messages, stored);
    let published: Vec<&str> = messages.iter().map(|m| header(m, "ce-id")).collect();
    let positioned: Vec<&str> = stored.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(published, positioned, "stream order is position order");
}

#[tokio::test]
async fn the_lease_is_held_outside_any_transaction_and_passes_to_the_standby_when_the_leader_stops()
{
    let url = nats_url();
    let (stream, prefix) = private_stream();
    let configure = |settings: &mut ServeSettings| {
        settings.events.nats_url = Some(url.clone());
        settings.events.nats_stream = stream.clone();
        settings.events.nats_subject_prefix = prefix.clone();
    };
    let mut leader = TestApp::spawn_with(configure).await;
    let js = jetstream_context(&url).await;
    leader.create("First", "Event").await;
    stream_messages(&js, &stream, 1).await;
    let leader_session = idle_leader(&leader, None).await;

    // Written through the standby, more than two chunks: the leader publishes them.
    let standby = TestApp::spawn_on(
        leader.database_url.clone(),
        leader.database_name.clone(),
        configure,
        None,
    )
    .await;
    let before_handover = 2 * CHUNK as usize + 6;
    create_many(&standby, "Before", before_handover).await;
    stream_messages(&js, &stream, 1 + before_handover as u64).await;
    assert_eq!(
        lease_holder(&standby).await.map(|h| h.pid),
        Some(leader_session),
        "the standby never published while the leader held the lease"
    );
    assert_eq!(
        reqwest_json(&leader, "/healthz/events").await["relay"]["leading"],
        true
    );
    assert_eq!(
        reqwest_json(&standby, "/healthz/events").await["relay"]["leading"],
        false
    );

    leader.stop().await;
    let new_leader = idle_leader(&standby, Some(leader_session)).await;
    assert_ne!(new_leader, leader_session);
    eventually("the standby reports that it leads", || async {
        reqwest_json(&standby, "/healthz/events").await["relay"]["leading"] == true
    })
    .await;
    let after_handover = CHUNK as usize + 3;
    create_many(&standby, "After", after_handover).await;
    let total = 1 + before_handover + after_handover;
    let messages = stream_messages(&js, &stream, total as u64).await;
    eventually("every event is marked published", || async {
        standby.count("events", "publish_time IS NULL").await == 0
    })
    .await;
    let stored = list_all(&standby, "customers/-", "").await;
    assert_eq!(stored.len(), total);
    assert_in_position_order(&messages, &stored);
    js.delete_stream(&stream).await.unwrap();
}

#[tokio::test]
async fn a_leader_whose_lease_session_is_killed_takes_the_lease_again_and_loses_no_event() {
    let url = nats_url();
    let (stream, prefix) = private_stream();
    let app = TestApp::spawn_with(|settings| {
        settings.events.nats_url = Some(url.clone());
        settings.events.nats_stream = stream.clone();
        settings.events.nats_subject_prefix = prefix.clone();
    })
    .await;
    let js = jetstream_context(&url).await;
    app.create("Before", "Kill").await;
    stream_messages(&js, &stream, 1).await;
    let killed = idle_leader(&app, None).await;

    let mut admin = app.db().await;
    admin
        .batch_execute(&format!("SELECT pg_terminate_backend({killed}, 10000)"))
        .await
        .unwrap();
    let after = CHUNK as usize + 8;
    create_many(&app, "After", after).await;

    let messages = stream_messages(&js, &stream, 1 + after as u64).await;
    eventually("every event is marked published", || async {
        app.count("events", "publish_time IS NULL").await == 0
    })
    .await;
    let stored = list_all(&app, "customers/-", "").await;
    assert_in_position_order(&messages, &stored);
    let retaken = idle_leader(&app, Some(killed)).await;
    assert_ne!(retaken, killed);
    js.delete_stream(&stream).await.unwrap();
}
