//! The outbox relay: publishes every event to NATS JetStream as a CloudEvent.
//!
//! **Lease.** Of several instances sharing the database exactly one publishes at a time: the
//! one whose relay holds the lease, a session-level advisory lock on a connection of its own
//! (see [`crate::db::relay`]). The lease is held *outside* any transaction for as long as the
//! relay leads; a standby tries to take it every second (and after every local commit), and
//! takes it over at once when the leader's session ends (process exit, lost connection) or
//! when the leader gives it up: on shutdown, and after a failed publish, so that an instance
//! that cannot reach the broker does not keep the others from publishing.
//!
//! **Chunks.** The leader reads up to [`CHUNK`] unpublished events in position (commit)
//! order, publishes them one at a time, each acknowledged by JetStream before the next, and
//! marks the acknowledged ones published in one committed statement; then the next chunk.
//! Nothing stays open while the broker is slow: each statement commits on its own. A chunk
//! stops taking events once half of the stream's duplicate window (`NATS_DUPLICATE_WINDOW`)
//! has passed since its first publish, so an event published but not yet marked is always
//! republished, if the relay dies before marking, within the window in which JetStream drops
//! the copy by its `Nats-Msg-Id` (the event id): at least once, deduplicated.
//!
//! **Order.** A failed publish ends the chunk; the acknowledged events before it are marked
//! and the failed one is the first of the next try, so a later event is never stored before
//! an earlier one that failed, across broker outages and leader changes alike (a new leader
//! starts from the first unmarked event; republished ones are dropped as duplicates).
//!
//! Writes never wait for any of this: the relay only reads the log, behind the sequencer.
//!
//! CloudEvents 1.0, binary content mode (NATS protocol binding): `ce-specversion`, `ce-id`,
//! `ce-source`, `ce-type` (`customer.v1.CustomerRegistered`, `customer.v1.NoteAdded` …),
//! `ce-subject` (the resource name: customer, company or note), `ce-time`, `ce-sequence`
//! (the per-resource sequence), `ce-partitionkey` (the customer for customer and note
//! events, the company for company events), `content-type: application/protobuf`; the body
//! is the encoded `customer.v1.CustomerEvent`; and, for events written by a traced request,
//! `ce-traceparent` (the distributed tracing extension): that request's W3C trace context,
//! stored with the event when it was written, so a consumer can link its processing to the
//! request that caused it. Headers carry no personal data.
//!
//! **Traces.** Each publish is a producer span of its own (the relay runs on its own time,
//! outside any request), linked to the span of the request that wrote the event.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use async_nats::{
    HeaderMap,
    jetstream::{self, message::PublishMessage as Publish},
};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prost::Message;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    config::EventSettings,
    convert::events::event_to_proto,
    db::{
        Pool,
        events::EventRow,
        relay::{Lease, LeaseError},
    },
    domain::event::Event,
    service::{
        Error,
        events::{EventLog, backoff, event_of},
    },
};

/// Events read, published and marked per chunk: a relay that dies between publishing and
/// marking leaves at most this many to be republished.
pub const CHUNK: i64 = 32;
/// Without a wake-up, the relay looks for work this often (events of a standby period, a
/// lease freed by a crashed instance).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// What the relay reports to health checks.
#[derive(Debug)]
pub struct RelayStatus {
    connected: AtomicBool,
    published: AtomicU64,
    leading: AtomicBool,
    /// Time from sending an event to JetStream's acknowledgement.
    publish_seconds: Histogram,
}

impl Default for RelayStatus {
    fn default() -> Self {
        Self {
            connected: AtomicBool::default(),
            published: AtomicU64::default(),
            leading: AtomicBool::default(),
            // 250 µs … ~4 s in doublings (NATS_ACK_TIMEOUT is 2 s by default).
            publish_seconds: Histogram::new(exponential_buckets(0.000_25, 2.0, 15)),
        }
    }
}

impl RelayStatus {
    /// Whether the broker connection is up.
    pub fn connected(&self) -> bool {
        AtomicBool::load(&self.connected, Ordering::Relaxed)
    }

    /// Events this process published since it started.
    pub fn published(&self) -> u64 {
        AtomicU64::load(&self.published, Ordering::Relaxed)
    }

    /// Whether this process holds the relay lease (publishes for every instance).
    pub fn leading(&self) -> bool {
        AtomicBool::load(&self.leading, Ordering::Relaxed)
    }

    /// The histogram of publish latencies (send to acknowledgement, acknowledged ones).
    pub fn publish_histogram(&self) -> Histogram {
        self.publish_seconds.clone()
    }
}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("database: {0}")]
    Database(#[from] Error),
    #[error("{0}")]
    Lease(#[from] LeaseError),
    #[error("JetStream: {0}")]
    Broker(String),
}

/// What a chunk left to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// More events may be waiting: go on at once.
    More,
    /// Nothing waits, or another instance leads: wait for a wake-up.
    Idle,
}

/// The relay: started by the server when `NATS_URL` is set.
pub struct Relay {
    pool: Pool,
    events: EventLog,
    settings: EventSettings,
    status: Arc<RelayStatus>,
}

impl Relay {
    /// A relay publishing the events of `events` with `settings`.
    pub fn new(pool: Pool, events: EventLog, settings: EventSettings) -> Self {
        Self {
            pool,
            events,
            settings,
            status: Arc::default(),
        }
    }

    /// The shared status for health reporting.
    pub fn status(&self) -> Arc<RelayStatus> {
        self.status.clone()
    }

    /// Connects (retrying in the background while the broker is down) and publishes until
    /// `stop` is cancelled; then gives the lease up. Returns early only when the broker
    /// client cannot be created at all.
    pub async fn run(&self, stop: CancellationToken) {
        let Some(url) = self.settings.nats_url.clone() else {
            return;
        };
        // A restarted run starts with a new client: nothing is known about it yet.
        self.status.connected.store(false, Ordering::Relaxed);
        let status = self.status.clone();
        let connect = async_nats::ConnectOptions::new()
            .name("customer-api relay")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((attempts as u64 * 100).min(1_000))
            })
            .event_callback(move |event| {
                let status = status.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            status.connected.store(true, Ordering::Relaxed);
                            tracing::info!("relay connected to NATS");
                        }
                        async_nats::Event::Disconnected => {
                            status.connected.store(false, Ordering::Relaxed);
                            tracing::warn!(
                                "relay disconnected from NATS; events wait in the outbox"
                            );
                        }
                        other => tracing::debug!(event = %other, "NATS client event"),
                    }
                }
            })
            .connect(url.as_str())
            .await;
        let client = match connect {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "cannot create the NATS client; the relay stops");
                return;
            }
        };
        let mut jetstream = jetstream::new(client);
        jetstream.set_timeout(self.settings.nats_ack_timeout);
        let mut lease = Lease::new();
        self.publish_until(&jetstream, &mut lease, &stop).await;
        lease.release().await;
        self.status.leading.store(false, Ordering::Relaxed);
    }

    async fn publish_until(
        &self,
        jetstream: &jetstream::Context,
        lease: &mut Lease,
        stop: &CancellationToken,
    ) {
        let mut positions = self.events.positions();
        let mut failures = 0_u32;
        let mut stream_ready = false;
        while !stop.is_cancelled() {
            if !stream_ready {
                match self.ensure_stream(jetstream).await {
                    Ok(()) => stream_ready = true,
                    Err(error) => {
                        failures = failures.saturating_add(1);
                        tracing::warn!(%error, failures, "cannot set up the JetStream stream; retrying");
                        stop.run_until_cancelled(tokio::time::sleep(backoff(failures)))
                            .await;
                        continue;
                    }
                }
            }
            positions.borrow_and_update();
            let outcome = self.publish_chunk(jetstream, lease, stop).await;
            self.status
                .leading
                .store(lease.is_held(), Ordering::Relaxed);
            match outcome {
                Ok(Progress::More) => {
                    failures = 0;
                    continue;
                }
                Ok(Progress::Idle) => failures = 0,
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(%error, failures, "publishing events failed; retrying");
                    // Let an instance that can publish take over while this one backs off.
                    lease.release().await;
                    self.status.leading.store(false, Ordering::Relaxed);
                    stop.run_until_cancelled(tokio::time::sleep(
                        backoff(failures).min(Duration::from_secs(1)),
                    ))
                    .await;
                    continue;
                }
            }
            tokio::select! {
                _ = positions.changed() => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
                () = stop.cancelled() => {}
            }
        }
    }

    async fn ensure_stream(&self, jetstream: &jetstream::Context) -> Result<(), RelayError> {
        jetstream
            .get_or_create_stream(jetstream::stream::Config {
                name: self.settings.nats_stream.clone(),
                subjects: vec![format!("{}.>", self.settings.nats_subject_prefix)],
                duplicate_window: self.settings.nats_duplicate_window,
                ..Default::default()
            })
            .await
            .map_err(|e| RelayError::Broker(e.to_string()))?;
        Ok(())
    }

    /// Under the lease (taken here if free), publishes up to [`CHUNK`] unpublished events in
    /// order and marks the acknowledged ones. A chunk takes no new event once half the
    /// duplicate window has passed since its first publish, nor once `stop` is cancelled.
    async fn publish_chunk(
        &self,
        jetstream: &jetstream::Context,
        lease: &mut Lease,
        stop: &CancellationToken,
    ) -> Result<Progress, RelayError> {
        // A relay that cannot reach the broker leaves the lease to one that can.
        if !lease.is_held() && !self.status.connected() {
            return Ok(Progress::Idle);
        }
        if !lease.try_acquire(&self.pool).await? {
            return Ok(Progress::Idle);
        }
        let rows = lease.unpublished(CHUNK).await?;
        let full = rows.len() as i64 == CHUNK;
        let budget = chunk_budget(self.settings.nats_duplicate_window);
        let started = Instant::now();
        let mut acked = Vec::with_capacity(rows.len());
        let mut failure = None;
        let mut cut_short = false;
        for row in rows {
            let on_time = may_publish(started, Instant::now(), acked.len(), budget);
            if !on_time || stop.is_cancelled() {
                cut_short = true;
                break;
            }
            let id = row.id;
            match self.publish(jetstream, row).await {
                Ok(()) => acked.push(id),
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        if !acked.is_empty() {
            lease.mark_published(&acked).await?;
            self.status
                .published
                .fetch_add(acked.len() as u64, Ordering::Relaxed);
        }
        match failure {
            Some(error) => Err(error),
            None if full || cut_short => Ok(Progress::More),
            None => Ok(Progress::Idle),
        }
    }

    async fn publish(
        &self,
        jetstream: &jetstream::Context,
        row: EventRow,
    ) -> Result<(), RelayError> {
        let traceparent = row.traceparent.clone();
        let event = event_of(row)?;
        let (subject, message) = cloud_event(&self.settings, event, traceparent.as_deref());
        let mut span = publish_span(&subject, traceparent.as_deref());
        let sent = Instant::now();
        let ack = async {
            jetstream
                .send_publish(subject, message)
                .await
                .map_err(|e| RelayError::Broker(e.to_string()))?
                .await
                .map_err(|e| RelayError::Broker(e.to_string()))
        }
        .await
        .inspect_err(|_| {
            if let Some(span) = &mut span {
                opentelemetry::trace::Span::set_status(
                    span,
                    opentelemetry::trace::Status::error(""),
                );
            }
        })?;
        // The span ends here, when dropped (or above, with the error).
        drop(span);
        self.status
            .publish_seconds
            .observe(sent.elapsed().as_secs_f64());
        if ack.duplicate {
            tracing::debug!(
                sequence = ack.sequence,
                "JetStream dropped a republished event"
            );
        }
        Ok(())
    }
}

/// How long a chunk may keep taking events after its first publish: half the duplicate
/// window, so that whatever it published is still deduplicated if it must be republished.
fn chunk_budget(duplicate_window: Duration) -> Duration {
    duplicate_window / 2
}

/// Whether a chunk whose first publish started at `started`, with `acked` events published,
/// may publish one more at `now`. The first event always goes (a tiny window must not stall
/// the relay).
fn may_publish(started: Instant, now: Instant, acked: usize, budget: Duration) -> bool {
    acked == 0 || now.saturating_duration_since(started) < budget
}

/// The producer span of one publish to `subject`, linked to the request that wrote the
/// event (`traceparent`): a trace of its own (the relay publishes long after the request),
/// when traces are exported.
fn publish_span(subject: &str, traceparent: Option<&str>) -> Option<crate::telemetry::span::Span> {
    use opentelemetry::KeyValue;
    let tracer = crate::telemetry::span::tracer()?;
    let mut links = Vec::new();
    if let Some(traceparent) = traceparent {
        let mut headers = http::HeaderMap::new();
        if let Ok(value) = http::HeaderValue::from_str(traceparent) {
            headers.insert("traceparent", value);
        }
        let cause = crate::telemetry::extract(&headers);
        let cause = opentelemetry::trace::TraceContextExt::span(&cause)
            .span_context()
            .clone();
        if cause.is_valid() {
            links.push(opentelemetry::trace::Link::with_context(cause));
        }
    }
    Some(crate::telemetry::span::root(
        &tracer,
        format!("send {subject}"),
        opentelemetry::trace::SpanKind::Producer,
        vec![
            KeyValue::new("messaging.system", "nats"),
            KeyValue::new("messaging.operation.type", "send"),
            KeyValue::new("messaging.destination.name", subject.to_owned()),
        ],
        links,
    ))
}

/// The subject and CloudEvents message of an event written by a request with trace context
/// `traceparent` (if it was traced).
pub fn cloud_event(
    settings: &EventSettings,
    event: Event,
    traceparent: Option<&str>,
) -> (String, Publish) {
    let subject = format!(
        "{}.{}",
        settings.nats_subject_prefix,
        event.recorded.event_type.subject_token()
    );
    let mut headers = HeaderMap::new();
    headers.insert("ce-specversion", "1.0");
    headers.insert("ce-id", event.event_id.to_string().as_str());
    headers.insert("ce-source", settings.event_source.as_str());
    headers.insert(
        "ce-type",
        format!("customer.v1.{}", event.recorded.event_type.as_str()).as_str(),
    );
    headers.insert("ce-subject", event.recorded.resource.as_str());
    headers.insert(
        "ce-time",
        event
            .occur_time
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            .as_str(),
    );
    headers.insert("ce-sequence", event.recorded.sequence.to_string().as_str());
    // A customer's events and its notes' share a partition; a company is its own.
    let partition = if event.customer.is_empty() {
        &event.recorded.resource
    } else {
        &event.customer
    };
    headers.insert("ce-partitionkey", partition.as_str());
    headers.insert("content-type", "application/protobuf");
    if let Some(traceparent) = traceparent {
        headers.insert("ce-traceparent", traceparent);
    }
    let id = event.event_id.to_string();
    let body = event_to_proto(event, false).encode_to_vec();
    let message = Publish::build()
        .headers(headers)
        .message_id(id)
        .payload(body.into());
    (subject, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_stops_taking_events_at_half_the_duplicate_window() {
        let window = Duration::from_secs(120);
        let budget = chunk_budget(window);
        assert_eq!(budget, Duration::from_secs(60));
        let started = Instant::now();
        assert!(may_publish(started, started, 0, budget));
        assert!(may_publish(started, started, 5, budget));
        let just_before = started + budget - Duration::from_millis(1);
        assert!(may_publish(started, just_before, 31, budget));
        assert!(!may_publish(started, started + budget, 1, budget));
        assert!(!may_publish(started, started + window, 1, budget));
        // The first event of a chunk always goes, however late.
        assert!(may_publish(started, started + window, 0, budget));
        assert!(may_publish(
            started,
            started,
            0,
            chunk_budget(Duration::ZERO)
        ));
        assert!(!may_publish(
            started,
            started,
            1,
            chunk_budget(Duration::ZERO)
        ));
    }
}
