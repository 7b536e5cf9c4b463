//! A WatchCustomerEvents client that survives its replica: it starts on one replica directly,
//! and whenever the stream ends or breaks it resumes through HAProxy (which sends it to a
//! replica that is up) with the `resume_token` of the last event it processed.

use std::{net::SocketAddr, time::Duration};

use customer_api::pb::{self, customer_service_client::CustomerServiceClient};
use tokio::sync::watch;
use tonic::transport::Endpoint;

/// What a watcher saw.
#[derive(Debug, Default)]
pub struct Watched {
    /// Event ids in the order received.
    pub event_ids: Vec<String>,
    /// How often the stream was resumed on another connection.
    pub resumes: u32,
}

/// Attempts to reopen a broken watch before the watcher gives up.
const MAX_ATTEMPTS: u32 = 50;

/// A watch ended the way a dying or draining replica ends it (worth resuming elsewhere).
fn retryable(status: &tonic::Status) -> bool {
    use tonic::Code::{Cancelled, Internal, Unavailable, Unknown};
    matches!(status.code(), Unavailable | Unknown | Internal | Cancelled)
}

async fn open(
    addr: SocketAddr,
    bearer: &str,
    start_after: &str,
) -> Result<tonic::Streaming<pb::CustomerEvent>, tonic::Status> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut request = tonic::Request::new(pb::WatchCustomerEventsRequest {
        parent: "customers/-".into(),
        start_after: start_after.into(),
    });
    request
        .metadata_mut()
        .insert("authorization", bearer.parse().expect("ascii token"));
    Ok(CustomerServiceClient::new(channel)
        .watch_customer_events(request)
        .await?
        .into_inner())
}

/// Watches every event from the first, first on `first` then through `front`, until it has
/// received `total` events (`total` is published once the load is over). `opened` is told
/// when the first stream is open (events written after that reach this watcher live).
pub async fn watcher(
    first: SocketAddr,
    front: SocketAddr,
    token: String,
    mut total: watch::Receiver<Option<usize>>,
    opened: tokio::sync::oneshot::Sender<()>,
) -> Watched {
    let bearer = format!("Bearer {token}");
    let mut watched = Watched::default();
    let mut last_token = String::new();
    let mut stream = open(first, &bearer, "")
        .await
        .expect("open the first watch");
    let _ = opened.send(());
    loop {
        let done = |watched: &Watched, total: &watch::Receiver<Option<usize>>| {
            total.borrow().is_some_and(|n| watched.event_ids.len() >= n)
        };
        if done(&watched, &total) {
            return watched;
        }
        tokio::select! {
            message = stream.message() => match message {
                Ok(Some(event)) => {
                    last_token = event.resume_token.clone();
                    watched.event_ids.push(event.event_id);
                    continue;
                }
                // The stream ended (a drained replica ends its watches) or broke (a killed
                // one): resume elsewhere after the last event processed.
                Ok(None) => {}
                Err(status) => assert!(retryable(&status), "the watch failed: {status:?}"),
            },
            changed = total.changed() => {
                assert!(changed.is_ok(), "the test ended before the watcher finished");
                continue;
            }
        }
        watched.resumes += 1;
        let mut attempts = 0;
        stream = loop {
            match open(front, &bearer, &last_token).await {
                Ok(resumed) => break resumed,
                Err(status) => {
                    assert!(retryable(&status), "resuming the watch failed: {status:?}");
                    attempts += 1;
                    assert!(
                        attempts < MAX_ATTEMPTS,
                        "the watch could not be resumed: {status:?}"
                    );
                    // Pacing between attempts while HAProxy notices the dead replica.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
    }
}
