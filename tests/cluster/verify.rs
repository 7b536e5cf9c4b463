//! The checks once the load is over: what the clients were told was written is in the database
//! exactly once, every event is in JetStream exactly once in order, and page tokens travel
//! between replicas.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
    time::Duration,
};

use async_nats::jetstream;
use customer_api::pb::{
    self, customer_event::Kind, customer_service_client::CustomerServiceClient,
};
use tonic::transport::{Channel, Endpoint};

use crate::{load::Ledger, procs::until};

/// A client of one replica (not through HAProxy).
pub async fn direct(addr: SocketAddr) -> CustomerServiceClient<Channel> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect to a replica");
    CustomerServiceClient::new(channel)
}

fn authorized<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    request
}

/// Every event, oldest first (position order), from one replica.
pub async fn all_events(addr: SocketAddr, token: &str) -> Vec<pb::CustomerEvent> {
    let mut client = direct(addr).await;
    let mut events = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_customer_events(authorized(
                pb::ListCustomerEventsRequest {
                    parent: "customers/-".into(),
                    page_size: 1000,
                    page_token,
                    filter: String::new(),
                },
                token,
            ))
            .await
            .expect("list events")
            .into_inner();
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            return events;
        }
        page_token = page.next_page_token;
    }
}

/// Every live customer, paging with `page_size`; page `i` is asked of `replicas[i % len]`.
pub async fn all_customers(
    replicas: &[SocketAddr],
    token: &str,
    page_size: i32,
) -> (Vec<pb::Customer>, usize) {
    let mut clients = Vec::new();
    for addr in replicas {
        clients.push(direct(*addr).await);
    }
    let mut customers = Vec::new();
    let mut page_token = String::new();
    for page_number in 0.. {
        let client = &mut clients[page_number % replicas.len()];
        let page = client
            .list_customers(authorized(
                pb::ListCustomersRequest {
                    page_size,
                    page_token,
                    ..Default::default()
                },
                token,
            ))
            .await
            .unwrap_or_else(|status| {
                panic!(
                    "page {page_number} from replica {}: {status:?}",
                    page_number % replicas.len()
                )
            })
            .into_inner();
        customers.extend(page.customers);
        if page.next_page_token.is_empty() {
            return (customers, page_number + 1);
        }
        page_token = page.next_page_token;
    }
    unreachable!("the loop returns")
}

/// Every acknowledged write is in the event log exactly once, nothing else is, and the
/// customers are as the clients last left them.
pub fn writes_exactly_once(
    ledgers: &[Ledger],
    events: &[pb::CustomerEvent],
    customers: &[pb::Customer],
) {
    let mut by_request: HashMap<&str, Vec<&pb::CustomerEvent>> = HashMap::new();
    for event in events {
        by_request.entry(&event.request_id).or_default().push(event);
    }
    let mut acknowledged = 0;
    for ledger in ledgers {
        for (request_id, name) in &ledger.created {
            let found = by_request
                .get(request_id.as_str())
                .map_or(&[][..], Vec::as_slice);
            assert_eq!(
                found.len(),
                1,
                "create {request_id} of {name}: one event, found {found:?}"
            );
            assert!(matches!(found[0].kind, Some(Kind::Registered(_))));
            assert_eq!(&found[0].customer, name);
            acknowledged += 1;
        }
        for (request_id, name, given) in &ledger.updated {
            let found = by_request
                .get(request_id.as_str())
                .map_or(&[][..], Vec::as_slice);
            assert_eq!(
                found.len(),
                1,
                "update {request_id} of {name}: one event, found {found:?}"
            );
            assert!(matches!(found[0].kind, Some(Kind::Updated(_))));
            assert_eq!(&found[0].customer, name);
            assert_eq!(
                found[0].snapshot.as_ref().map(|c| c.given_name.as_str()),
                Some(given.as_str())
            );
            acknowledged += 1;
        }
    }
    assert_eq!(
        events.len(),
        acknowledged,
        "one event per acknowledged write and no other"
    );

    let expected: BTreeMap<&str, &str> = ledgers
        .iter()
        .flat_map(|ledger| ledger.expected.iter())
        .map(|(name, given)| (name.as_str(), given.as_str()))
        .collect();
    let stored: BTreeMap<&str, &str> = customers
        .iter()
        .map(|c| (c.name.as_str(), c.given_name.as_str()))
        .collect();
    assert_eq!(customers.len(), stored.len(), "each customer listed once");
    assert_eq!(stored, expected, "every acknowledged write is present");
}

/// The relay published every event exactly once, in position order (so in per-customer
/// order), each resource's sequence without gaps.
pub async fn jetstream_exactly_once(nats_url: &str, stream: &str, events: &[pb::CustomerEvent]) {
    let js = jetstream::new(
        async_nats::connect(nats_url)
            .await
            .expect("connect to NATS"),
    );
    let n = events.len() as u64;
    let count = until(
        &format!("{stream} holds {n} messages"),
        Duration::from_secs(60),
        || async {
            let mut handle = js.get_stream(stream).await.ok()?;
            let count = handle.info().await.ok()?.state.messages;
            (count >= n).then_some(count)
        },
    )
    .await;
    assert_eq!(count, n, "exactly one message per event in {stream}");
    let handle = js.get_stream(stream).await.expect("stream");
    let mut messages = Vec::new();
    for sequence in 1..=n {
        messages.push(handle.get_raw_message(sequence).await.expect("message"));
    }
    let header = |message: &jetstream::message::StreamMessage, name: &str| -> String {
        message
            .headers
            .get(name)
            .unwrap_or_else(|| panic!("header {name} missing"))
            .as_str()
            .to_owned()
    };
    let published: Vec<String> = messages.iter().map(|m| header(m, "ce-id")).collect();
    let unique: HashSet<&String> = published.iter().collect();
    assert_eq!(unique.len(), published.len(), "no event published twice");
    let logged: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(
        published, logged,
        "stream order is the log's position order"
    );
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    let mut per_customer: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for message in &messages {
        let sequence: i64 = header(message, "ce-sequence").parse().expect("sequence");
        let previous = last.insert(header(message, "ce-subject"), sequence);
        assert_eq!(
            sequence,
            previous.unwrap_or(0) + 1,
            "per-resource sequence without gaps"
        );
        per_customer
            .entry(header(message, "ce-partitionkey"))
            .or_default()
            .push(header(message, "ce-id"));
    }
    let mut logged_per_customer: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for event in events {
        logged_per_customer
            .entry(event.customer.clone())
            .or_default()
            .push(event.event_id.clone());
    }
    assert_eq!(per_customer, logged_per_customer, "per-customer order");
}
