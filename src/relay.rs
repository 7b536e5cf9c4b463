//! The outbox relay: publishes every event to NATS JetStream as a CloudEvent.
//!
//! Events are read from the log in position (commit) order and published one at a time,
//! each acknowledged by JetStream before the next, so a customer's events reach the stream
//! in order even across broker outages (a later event is never stored before an earlier one
//! that failed). Only acknowledged events are marked published, in the same database
//! transaction that holds the relay lease: a transaction-scoped advisory lock, so of several
//! instances sharing the database exactly one publishes at a time and the others stand by.
//! If the process dies between publishing and marking, the next relay publishes again with
//! the same `Nats-Msg-Id` (the event id) and JetStream drops the duplicate within its window.
//!
//! Writes never wait for any of this: the relay only reads the log, behind the sequencer.
//!
//! CloudEvents 1.0, binary content mode (NATS protocol binding): `ce-specversion`, `ce-id`,
//! `ce-source`, `ce-type` (`customer.v1.CustomerRegistered`, `customer.v1.NoteAdded` …),
//! `ce-subject` (the resource name: customer, company or note), `ce-time`, `ce-sequence`
//! (the per-resource sequence), `ce-partitionkey` (the customer for customer and note
//! events, the company for company events), `content-type: application/protobuf`; the body
//! is the encoded `customer.v1.CustomerEvent`. Headers carry no personal data.

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
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use prost::Message;

use crate::{
    config::EventSettings,
    db::{
        Pool,
        events::{self as queries, EventRow},
    },
    domain::event::Event,
    grpc::events::event_to_proto,
    service::{
        Error,
        events::{EventLog, backoff, event_of},
    },
};

/// Advisory lock key of the relay lease (`cust-rly` in ASCII).
const RELAY_LOCK: i64 = 0x6375_7374_2d72_6c79;
/// Events published per lease transaction.
const BATCH: i64 = 256;
/// Without a wake-up, the relay looks for work this often (events of a standby period, a
/// lease freed by a crashed instance).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// What the relay reports to health checks.
#[derive(Debug, Default)]
pub struct RelayStatus {
    connected: AtomicBool,
    published: AtomicU64,
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
}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("database: {0}")]
    Database(#[from] Error),
    #[error("JetStream: {0}")]
    Broker(String),
}

impl From<diesel::result::Error> for RelayError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Database(error.into())
    }
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
    /// the task is aborted.
    pub async fn run(self) {
        let Some(url) = self.settings.nats_url.clone() else {
            return;
        };
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
                tracing::error!(%error, "NATS_URL is not usable; the relay is off");
                return;
            }
        };
        let mut jetstream = jetstream::new(client);
        jetstream.set_timeout(self.settings.nats_ack_timeout);
        let mut positions = self.events.positions();
        let mut failures = 0_u32;
        let mut stream_ready = false;
        loop {
            if !stream_ready {
                match self.ensure_stream(&jetstream).await {
                    Ok(()) => stream_ready = true,
                    Err(error) => {
                        failures = failures.saturating_add(1);
                        tracing::warn!(%error, failures, "cannot set up the JetStream stream; retrying");
                        tokio::time::sleep(backoff(failures)).await;
                        continue;
                    }
                }
            }
            positions.borrow_and_update();
            match self.publish_batch(&jetstream).await {
                Ok(count) if count as i64 == BATCH => {
                    failures = 0;
                    continue;
                }
                Ok(_) => failures = 0,
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(%error, failures, "publishing events failed; retrying");
                    tokio::time::sleep(backoff(failures).min(Duration::from_secs(1))).await;
                    continue;
                }
            }
            tokio::select! {
                _ = positions.changed() => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
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

    /// Under the relay lease, publishes up to [`BATCH`] unpublished events in order and marks
    /// the acknowledged ones. Returns how many were published (0 when another instance holds
    /// the lease or nothing is waiting).
    async fn publish_batch(&self, jetstream: &jetstream::Context) -> Result<usize, RelayError> {
        let mut conn = self.pool.get().await.map_err(Error::from)?;
        let (published, failure) = conn
            .transaction(async |conn| {
                let outcome = self.publish_locked(conn, jetstream).await?;
                Ok::<_, RelayError>(outcome)
            })
            .await?;
        self.status
            .published
            .fetch_add(published as u64, Ordering::Relaxed);
        match failure {
            Some(error) => Err(error),
            None => Ok(published),
        }
    }

    async fn publish_locked(
        &self,
        conn: &mut AsyncPgConnection,
        jetstream: &jetstream::Context,
    ) -> Result<(usize, Option<RelayError>), RelayError> {
        // Publishing may take longer than the pool's idle-in-transaction bound allows.
        diesel::sql_query("SET LOCAL idle_in_transaction_session_timeout = '5min'")
            .execute(conn)
            .await?;
        #[derive(diesel::QueryableByName)]
        struct Lease {
            #[diesel(sql_type = diesel::sql_types::Bool)]
            held: bool,
        }
        let lease: Lease = diesel::sql_query("SELECT pg_try_advisory_xact_lock($1) AS held")
            .bind::<diesel::sql_types::BigInt, _>(RELAY_LOCK)
            .get_result(conn)
            .await?;
        if !lease.held {
            return Ok((0, None));
        }
        let rows = queries::unpublished(conn, BATCH).await?;
        let mut acked = Vec::with_capacity(rows.len());
        let mut failure = None;
        for row in rows {
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
            queries::mark_published(conn, &acked).await?;
        }
        Ok((acked.len(), failure))
    }

    async fn publish(
        &self,
        jetstream: &jetstream::Context,
        row: EventRow,
    ) -> Result<(), RelayError> {
        let event = event_of(row)?;
        let (subject, message) = cloud_event(&self.settings, event);
        let ack = jetstream
            .send_publish(subject, message)
            .await
            .map_err(|e| RelayError::Broker(e.to_string()))?
            .await
            .map_err(|e| RelayError::Broker(e.to_string()))?;
        if ack.duplicate {
            tracing::debug!(
                sequence = ack.sequence,
                "JetStream dropped a republished event"
            );
        }
        Ok(())
    }
}

/// The subject and CloudEvents message of an event.
pub fn cloud_event(settings: &EventSettings, event: Event) -> (String, Publish) {
    let subject = format!(
        "{}.{}",
        settings.nats_subject_prefix,
        event.event_type.subject_token()
    );
    let mut headers = HeaderMap::new();
    headers.insert("ce-specversion", "1.0");
    headers.insert("ce-id", event.event_id.to_string().as_str());
    headers.insert("ce-source", settings.event_source.as_str());
    headers.insert(
        "ce-type",
        format!("customer.v1.{}", event.event_type.as_str()).as_str(),
    );
    headers.insert("ce-subject", event.resource.as_str());
    headers.insert(
        "ce-time",
        event
            .occur_time
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            .as_str(),
    );
    headers.insert("ce-sequence", event.sequence.to_string().as_str());
    // A customer's events and its notes' share a partition; a company is its own.
    let partition = if event.customer.is_empty() {
        &event.resource
    } else {
        &event.customer
    };
    headers.insert("ce-partitionkey", partition.as_str());
    headers.insert("content-type", "application/protobuf");
    let id = event.event_id.to_string();
    let body = event_to_proto(event, false).encode_to_vec();
    let message = Publish::build()
        .headers(headers)
        .message_id(id)
        .payload(body.into());
    (subject, message)
}
