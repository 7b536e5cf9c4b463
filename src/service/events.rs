//! The change stream: reading the event log, in commit order, and following it live.
//!
//! Events are written by the customer, company and note use cases inside their transactions
//! (see `record`). This module numbers them in commit order (the *sequencer*, woken after every
//! local commit and by a slow timer for events committed by other instances), lists them
//! (ListCustomerEvents) and streams them (WatchCustomerEvents). Watchers are woken by a
//! `watch` channel holding the last known position, fed by the local sequencer and by a
//! `LISTEN` connection for positions assigned by other instances, so nobody polls in a
//! tight loop.
//!
//! Only the sequencer takes the `event_log` lock; reads never do. A list or a watch that
//! starts while committed events still wait for their position (a plain, lock-free check)
//! asks the sequencer for a run and waits, bounded, until a run that began after the request
//! has finished: that run's snapshot includes every write that returned before the read, on
//! this instance or another, so a client always sees its own writes.
//!
//! Resume tokens carry a position. Positions are assigned after commit, so "every event
//! after position p" is exact even when transactions commit out of their start order.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{
    Error, Result,
    error::reason,
    page_token::PageTokens,
    watches::{Held, WATCH_BATCH, WATCH_CHANNEL, WatchLimits},
};
use crate::{
    convert::events::event_to_proto,
    core::list::{self, Paging},
    db::{
        Pool,
        events::{self as queries, EventRow},
    },
    domain::{
        Violations,
        event::{Event, EventParent, EventType, NewEvent},
        filter::EventField,
        legacy,
        names::{CustomerName, ResourceName as _, owning_customer},
    },
    encoding::event_payload,
};

/// Events numbered per sequencer transaction.
const SEQUENCE_BATCH: i64 = 1000;
/// How often the sequencer looks for events of other instances whose own sequencer did not
/// run (crashed right after commit). Local commits wake it at once.
const SEQUENCER_SWEEP: Duration = Duration::from_millis(500);
/// Watchers re-check the log this often even without a wake-up, as a safety net for a lost
/// notification (e.g. while the LISTEN connection reconnects).
const WATCH_SAFETY_NET: Duration = Duration::from_secs(5);
/// How long a read waits for the sequencer to number what committed before it; beyond
/// that the sequencer is failing (it retries with backoff) and the read answers UNAVAILABLE
/// rather than a page that may miss the caller's own write.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a watch stays open through a database outage unless configured
/// (`WATCH_OUTAGE_TOLERANCE`).
pub const DEFAULT_WATCH_OUTAGE_TOLERANCE: Duration = Duration::from_secs(30);
/// The longest pause between two attempts of a watch to read again during an outage.
const WATCH_RETRY_MAX: Duration = Duration::from_secs(1);

/// A database outage a watch is riding out.
#[derive(Debug, Default)]
struct Outage {
    /// When its first failed read was.
    began: Option<tokio::time::Instant>,
    /// The pause before the next attempt.
    pause: Duration,
}

/// The event log: numbering, listing and watching.
#[derive(Debug, Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: Pool,
    page_tokens: PageTokens,
    /// Wakes the sequencer after a local commit or a reader's request.
    committed: Notify,
    /// Sequencer runs asked for so far (a ticket number per request).
    requested: AtomicU64,
    /// The highest ticket that a finished sequencer run covers: a run covers every ticket
    /// issued before it started.
    sequenced: watch::Sender<u64>,
    /// The last position known to be assigned (locally or by another instance).
    positions: watch::Sender<i64>,
    /// Set when the server shuts down: watches end so connections can drain.
    closing: watch::Sender<bool>,
    /// What watches may hold (`WatchLimits::default()` until configured).
    watch_limits: std::sync::OnceLock<WatchLimits>,
    /// How long a watch rides out a database outage, in milliseconds (set once at start-up).
    watch_tolerance_ms: AtomicU64,
    /// Reads watches retried during database outages (a metric).
    watch_retries: AtomicU64,
}

impl EventLog {
    /// The log over `pool`, signing page tokens with `page_tokens`.
    pub fn new(pool: Pool, page_tokens: PageTokens) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                page_tokens,
                committed: Notify::new(),
                requested: AtomicU64::new(0),
                sequenced: watch::Sender::new(0),
                positions: watch::Sender::new(0),
                closing: watch::Sender::new(false),
                watch_limits: std::sync::OnceLock::new(),
                watch_retries: AtomicU64::new(0),
                watch_tolerance_ms: AtomicU64::new(
                    DEFAULT_WATCH_OUTAGE_TOLERANCE.as_millis() as u64
                ),
            }),
        }
    }

    /// Sets what watches may hold (once, before serving).
    pub fn configure_watches(&self, limits: WatchLimits) {
        let _ = self.inner.watch_limits.set(limits);
    }

    /// What watches may hold, and what they hold now.
    pub fn watch_limits(&self) -> &WatchLimits {
        self.inner.watch_limits.get_or_init(WatchLimits::default)
    }

    /// Sets how long a watch stays open through a database outage before it ends with
    /// UNAVAILABLE (zero: at the first failure).
    pub fn set_watch_outage_tolerance(&self, tolerance: Duration) {
        let ms = u64::try_from(tolerance.as_millis()).unwrap_or(u64::MAX);
        self.inner.watch_tolerance_ms.store(ms, Ordering::Relaxed);
    }

    /// Reads watches retried because the database was unavailable, since start-up.
    pub fn watch_outage_retries(&self) -> u64 {
        self.inner.watch_retries.load(Ordering::Relaxed)
    }

    fn watch_outage_tolerance(&self) -> Duration {
        Duration::from_millis(self.inner.watch_tolerance_ms.load(Ordering::Relaxed))
    }

    /// Tells the sequencer that a transaction with events committed.
    pub fn committed(&self) {
        self.request_run();
    }

    /// Asks the sequencer for a run; returns the ticket that run will cover.
    fn request_run(&self) -> u64 {
        let ticket = self.inner.requested.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.committed.notify_one();
        ticket
    }

    /// Returns once every event committed before the call has a position: at once when none
    /// is waiting (one lock-free read), else after a sequencer run that started later.
    async fn catch_up(&self) -> Result<()> {
        let pending = self
            .inner
            .pool
            .run(async |conn| Ok::<_, Error>(queries::has_unsequenced(conn).await?))
            .await?;
        if !pending {
            return Ok(());
        }
        let ticket = self.request_run();
        let mut finished = self.inner.sequenced.subscribe();
        match tokio::time::timeout(CATCH_UP_TIMEOUT, finished.wait_for(|run| *run >= ticket)).await
        {
            Ok(Ok(_)) => Ok(()),
            _ => {
                tracing::warn!(
                    timeout = ?CATCH_UP_TIMEOUT,
                    "the event sequencer did not catch up; answering UNAVAILABLE"
                );
                Err(Error::database_unavailable())
            }
        }
    }

    /// A receiver of the last assigned position, changed whenever events are numbered.
    pub fn positions(&self) -> watch::Receiver<i64> {
        self.inner.positions.subscribe()
    }

    /// Ends every watch (server shutdown).
    pub fn close(&self) {
        self.inner.closing.send_replace(true);
    }

    fn advance(&self, position: i64) {
        self.inner.positions.send_if_modified(|known| {
            let newer = position > *known;
            if newer {
                *known = position;
            }
            newer
        });
    }

    /// Numbers every committed, unnumbered event. Returns the last position assigned.
    /// Takes the global `event_log` lock: only the sequencer task calls it.
    pub async fn sequence(&self) -> Result<Option<i64>> {
        let mut last = None;
        loop {
            let assigned = self
                .inner
                .pool
                .run(async |conn| {
                    Ok::<_, Error>(queries::assign_positions(conn, SEQUENCE_BATCH).await?)
                })
                .await?;
            match assigned {
                Some(position) => {
                    self.advance(position);
                    last = Some(position);
                }
                None => return Ok(last),
            }
        }
    }

    /// Runs the sequencer until `stop` is cancelled: after every local commit or reader's
    /// request, and every `SEQUENCER_SWEEP` for events committed by instances that did not
    /// number them. Each successful run reports the tickets it covers to waiting readers.
    pub async fn run_sequencer(self, stop: CancellationToken) {
        let mut failures = 0_u32;
        loop {
            tokio::select! {
                () = self.inner.committed.notified() => {}
                () = tokio::time::sleep(SEQUENCER_SWEEP) => {}
                () = stop.cancelled() => return,
            }
            // Read before the run: the run's snapshot includes every commit made before any
            // ticket up to this one was issued.
            let ticket = self.inner.requested.load(Ordering::SeqCst);
            match self.sequence().await {
                Ok(_) => {
                    failures = 0;
                    self.inner.sequenced.send_if_modified(|covered| {
                        let newer = ticket > *covered;
                        if newer {
                            *covered = ticket;
                        }
                        newer
                    });
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(%error, failures, "numbering events failed; retrying");
                    if !backed_off(&stop, failures).await {
                        return;
                    }
                }
            }
        }
    }

    /// Follows positions assigned by any instance through `LISTEN` on a dedicated
    /// connection, reconnecting with backoff, until `stop` is cancelled.
    pub async fn run_listener(self, stop: CancellationToken) {
        let mut failures = 0_u32;
        loop {
            match stop.run_until_cancelled(self.listen()).await {
                None => return,
                Some(Ok(())) => failures = 0,
                Some(Err(error)) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(%error, failures, "event notifications lost; reconnecting");
                }
            }
            if !backed_off(&stop, failures).await {
                return;
            }
        }
    }

    async fn listen(&self) -> Result<()> {
        let (mut listener, last) =
            queries::Listener::start(&self.inner.pool)
                .await
                .map_err(|error| Error::Unavailable {
                    message: error.to_string(),
                    reason: super::error::reason::DATABASE_UNAVAILABLE,
                    retry_after: Duration::from_secs(1),
                })?;
        // Anything numbered while we were not listening.
        self.advance(last);
        let mut positions = std::pin::pin!(listener.positions());
        while let Some(position) = positions.next().await {
            if let Some(position) = position? {
                self.advance(position);
            }
        }
        Ok(())
    }

    /// One page of a customer's (or every customer's) events, oldest first.
    pub async fn list(&self, request: &list::ListRequest) -> Result<list::Page<Event>> {
        let mut violations = Violations::new();
        let parent = match EventParent::parse("parent", &request.parent) {
            Ok(parent) => Some(parent),
            Err(violation) => {
                violations.extend(violation.into());
                None
            }
        };
        let page_size = list::page_size(&mut violations, request.page_size);
        let filter = list::filter::<EventField>(&mut violations, &request.filter);
        let Some(parent) = violations.into_result(parent)? else {
            return Err(Error::internal(&super::Unreachable(
                "validated event list without parent",
            )));
        };
        // The v1 fingerprint text (the previous version's `Debug` output), so tokens it issued
        // stay valid.
        let query = PageTokens::query_fingerprint(&[
            "events",
            &request.parent,
            &legacy::legacy_debug_event_filter(&filter),
        ]);
        let paging: Paging<i64> = list::paging(
            &self.inner.page_tokens,
            page_size,
            &request.page_token,
            query,
        )?;
        // Wait until what has committed so far is numbered, so a client listing right after
        // its own write sees that write's event.
        self.catch_up().await?;
        let customer = parent.resource();
        let (after, limit) = (paging.after.unwrap_or(0), paging.limit());
        let privileged = request.privileged;
        let (rows, deleted) = self
            .inner
            .pool
            .run(async |conn| {
                let rows =
                    queries::list(conn, customer.as_deref(), filter.as_ref(), after, limit).await?;
                let deleted = deleted_customers(conn, &rows, privileged).await?;
                Ok::<_, Error>((rows, deleted))
            })
            .await?;
        let events = rows
            .into_iter()
            .map(|row| event_of(row).map(|event| redact_if_deleted(event, &deleted)))
            .collect::<Result<_>>()?;
        let (items, next_page_token) = list::page(
            events,
            &paging,
            &self.inner.page_tokens,
            |last: &Event| last.position,
            |event| list::entry_bytes(&event_to_proto(event.clone(), true)),
        );
        Ok(list::Page {
            items,
            next_page_token,
        })
    }

    /// Streams the events of `parent` after `start_after`: first what is stored, then new
    /// events as they are numbered. Invalid input fails before the stream starts; a token
    /// whose successors were removed by retention is OUT_OF_RANGE.
    pub async fn watch(&self, parent: &str, start_after: &str, privileged: bool) -> Result<Watch> {
        let mut violations = Violations::new();
        let parent = match EventParent::parse("parent", parent) {
            Ok(parent) => Some(parent),
            Err(violation) => {
                violations.extend(violation.into());
                None
            }
        };
        // `None` inside: start with the oldest retained event.
        let after = match start_after {
            "" => Some(None),
            token => match parse_resume_token(token) {
                Some(position) => Some(Some(position)),
                None => {
                    violations.add(
                        "start_after",
                        "is not a resume token of this service; pass the resume_token of an event",
                    );
                    None
                }
            },
        };
        let (Some(parent), Some(after)) = violations.into_result((parent, after))? else {
            return Err(Error::internal(&super::Unreachable(
                "validated watch without parts",
            )));
        };
        let (_, pruned_through) = self
            .inner
            .pool
            .run(async |conn| Ok::<_, Error>(queries::log_state(conn).await?))
            .await?;
        let after = after.unwrap_or(pruned_through);
        if after < pruned_through {
            return Err(Error::OutOfRange {
                message: "events after this resume token were removed by retention; \
                          list the events again (ListCustomerEvents) and watch from there"
                    .into(),
                reason: reason::RESUME_TOKEN_EXPIRED,
                field: "start_after",
            });
        }
        let (sender, receiver) = mpsc::channel(WATCH_CHANNEL);
        let slow = Arc::new(std::sync::Mutex::new(None));
        tokio::spawn(self.clone().follow(
            parent.resource(),
            after,
            privileged,
            sender,
            slow.clone(),
        ));
        Ok(Watch { receiver, slow })
    }

    async fn follow(
        self,
        customer: Option<String>,
        mut after: i64,
        privileged: bool,
        sender: mpsc::Sender<(Result<Event>, Option<Held>)>,
        slow: Arc<std::sync::Mutex<Option<i64>>>,
    ) {
        let limits = self.watch_limits().clone();
        // What the client was sent last: where it resumes if it is dropped for not reading.
        let mut sent = after;
        let mut positions = self.positions();
        let mut closing = self.inner.closing.subscribe();
        // Wait until anything committed before the watch started is numbered.
        let mut outage = Outage::default();
        loop {
            match self.catch_up().await {
                Ok(()) => break,
                Err(error) => {
                    if !self
                        .ride_out(&mut outage, error, after, &sender, &mut closing)
                        .await
                    {
                        return;
                    }
                }
            }
        }
        loop {
            // Mark the current position as seen before querying: a numbering that lands
            // after the query wakes the wait below instead of being missed.
            positions.borrow_and_update();
            let (rows, deleted) = match self.read(customer.as_deref(), after, privileged).await {
                Ok(read) => {
                    outage = Outage::default();
                    read
                }
                Err(error) => {
                    if self
                        .ride_out(&mut outage, error, after, &sender, &mut closing)
                        .await
                    {
                        continue;
                    }
                    return;
                }
            };
            let full = rows.len() as i64 == WATCH_BATCH;
            // Counted from the moment they are read until the response takes them.
            let rows: Vec<(EventRow, Held)> = rows
                .into_iter()
                .map(|row| {
                    let held = limits.hold(&row);
                    (row, held)
                })
                .collect();
            for (row, held) in rows {
                after = row.position.unwrap_or(after);
                let event = event_of(row).map(|event| redact_if_deleted(event, &deleted));
                let failed = event.is_err();
                match sender
                    .send_timeout((event, Some(held)), limits.slow_consumer_timeout)
                    .await
                {
                    Ok(()) => sent = after,
                    Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                        // The client stopped reading: let go of the batch; the stream ends
                        // with the resume token of what it was sent once it reads again.
                        tracing::info!(sent, "watch ended: the client does not read");
                        limits.dropped_one();
                        *slow.lock().unwrap_or_else(|e| e.into_inner()) = Some(sent);
                        return;
                    }
                    Err(mpsc::error::SendTimeoutError::Closed(_)) => return,
                }
                if failed {
                    return;
                }
            }
            if full {
                continue;
            }
            let shutting_down = tokio::select! {
                changed = positions.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    false
                }
                () = tokio::time::sleep(WATCH_SAFETY_NET) => false,
                () = sender.closed() => return,
                _ = closing.wait_for(|closing| *closing) => true,
            };
            if shutting_down {
                say_shutting_down(&sender).await;
                return;
            }
        }
    }

    /// A watch's read failed with `error`. A database outage (UNAVAILABLE, a timed-out
    /// statement) is ridden out: the watch pauses (backing off up to a second) and returns
    /// `true` to read again, until the outage has lasted the configured tolerance; then, or
    /// for any other error, the stream ends with the error — an outage's UNAVAILABLE naming
    /// the resume token to watch again from — and `false` is returned. Shutdown and a
    /// client that went away end the wait at once.
    async fn ride_out(
        &self,
        outage: &mut Outage,
        error: Error,
        after: i64,
        sender: &mpsc::Sender<(Result<Event>, Option<Held>)>,
        closing: &mut watch::Receiver<bool>,
    ) -> bool {
        let transient = matches!(
            error,
            Error::Unavailable { .. } | Error::DeadlineExceeded { .. }
        );
        let began = *outage.began.get_or_insert_with(tokio::time::Instant::now);
        if !transient || began.elapsed() >= self.watch_outage_tolerance() {
            let error = if transient {
                tracing::warn!(
                    tolerance = ?self.watch_outage_tolerance(),
                    "a watch gave up on the database"
                );
                Error::Unavailable {
                    message: format!(
                        "the database has been unavailable for {:?}; watch again with \
                         start_after = \"{}\"",
                        self.watch_outage_tolerance(),
                        resume_token(after)
                    ),
                    reason: reason::DATABASE_UNAVAILABLE,
                    retry_after: Duration::from_secs(1),
                }
            } else {
                error
            };
            let _ = sender.send((Err(error), None)).await;
            return false;
        }
        self.inner.watch_retries.fetch_add(1, Ordering::Relaxed);
        outage.pause = (outage.pause * 2).clamp(Duration::from_millis(50), WATCH_RETRY_MAX);
        let shutting_down = tokio::select! {
            () = tokio::time::sleep(outage.pause) => return true,
            () = sender.closed() => return false,
            _ = closing.wait_for(|closing| *closing) => true,
        };
        if shutting_down {
            say_shutting_down(sender).await;
        }
        false
    }

    /// The next batch of a watch, and which of its customers the caller sees redacted.
    async fn read(
        &self,
        customer: Option<&str>,
        after: i64,
        privileged: bool,
    ) -> Result<(Vec<EventRow>, HashSet<String>)> {
        self.inner
            .pool
            .run(async |conn| {
                let rows = queries::list(conn, customer, None, after, WATCH_BATCH).await?;
                let deleted = deleted_customers(conn, &rows, privileged).await?;
                Ok((rows, deleted))
            })
            .await
    }

    /// Events not yet published and the time of the oldest.
    pub async fn unpublished_lag(&self) -> Result<(i64, Option<DateTime<Utc>>)> {
        self.inner
            .pool
            .run(async |conn| Ok(queries::unpublished_lag(conn).await?))
            .await
    }

    /// Removes events older than `retention` (published ones only, unless
    /// `include_unpublished` because no broker is configured).
    pub async fn prune(&self, retention: Duration, include_unpublished: bool) -> Result<i64> {
        let cutoff = Utc::now()
            - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(36500));
        self.inner
            .pool
            .run(async |conn| Ok(queries::prune(conn, cutoff, include_unpublished).await?))
            .await
    }
}

/// An open watch: its events in order, then how it ended if it ended for not reading.
#[derive(Debug)]
pub struct Watch {
    receiver: mpsc::Receiver<(Result<Event>, Option<Held>)>,
    slow: Arc<std::sync::Mutex<Option<i64>>>,
}

/// What a watch yields.
#[derive(Debug)]
pub enum WatchItem {
    /// The next event, or the error that ends the watch.
    Event(Result<Event>),
    /// The watch was ended because its client did not read; it was sent every event up to
    /// `resume_after` (a position: [`resume_token`] makes the token to watch again from).
    SlowConsumer {
        /// The last position the client was sent (or the watch's starting point).
        resume_after: i64,
    },
}

impl Watch {
    /// The next item; `None` once the watch is over.
    pub async fn next(&mut self) -> Option<WatchItem> {
        match self.receiver.recv().await {
            // The event leaves the watch's count as the response takes it.
            Some((event, _held)) => Some(WatchItem::Event(event)),
            None => self
                .slow
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .map(|resume_after| WatchItem::SlowConsumer { resume_after }),
        }
    }
}

/// Ends a watch because the server is shutting down: the client watches again (elsewhere)
/// from the last resume token it was sent.
async fn say_shutting_down(sender: &mpsc::Sender<(Result<Event>, Option<Held>)>) {
    let _ = sender
        .send((
            Err(Error::Unavailable {
                message: "the server is shutting down; watch again with the last resume_token"
                    .into(),
                reason: super::error::reason::SHUTTING_DOWN,
                retry_after: Duration::from_secs(1),
            }),
            None,
        ))
        .await;
}

/// The customers of `rows` that are soft-deleted now, whose history a caller without
/// `customers.admin` (`privileged`) sees without personal data (docs/operations.md,
/// "Security"); none for a privileged caller.
async fn deleted_customers(
    conn: &mut crate::db::Conn,
    rows: &[EventRow],
    privileged: bool,
) -> Result<HashSet<String>> {
    if privileged {
        return Ok(HashSet::new());
    }
    let mut ids: Vec<uuid::Uuid> = rows
        .iter()
        .filter_map(|row| owning_customer(&row.aggregate))
        .filter_map(|customer| CustomerName::parse("customer", customer).ok())
        .map(|name| name.id())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let deleted = crate::db::customers::deleted_among(conn, &ids).await?;
    Ok(deleted
        .into_iter()
        .map(|id| CustomerName(id).to_string())
        .collect())
}

/// `event`, without personal data when its customer is among `deleted`.
fn redact_if_deleted(mut event: Event, deleted: &HashSet<String>) -> Event {
    if deleted.contains(&event.customer) {
        event.recorded.data = event.recorded.data.redacted();
    }
    event
}

/// Converts a stored row into a domain event; a row this service could not have written is
/// an internal error, not a panic.
pub fn event_of(row: EventRow) -> Result<Event> {
    let corrupt = |what: &str| {
        Error::internal(&super::Unreachable(match what {
            "type" => "event row with an unknown type",
            "data" => "event row with unreadable data",
            _ => "event row without a position",
        }))
    };
    let event_type = EventType::parse(&row.event_type).ok_or_else(|| corrupt("type"))?;
    let data = event_payload::decode_stored(event_type, row.payload.as_deref(), row.data)
        .map_err(|_| corrupt("data"))?;
    let position = row.position.ok_or_else(|| corrupt("position"))?;
    Ok(Event {
        event_id: row.event_id,
        customer: owning_customer(&row.aggregate)
            .unwrap_or_default()
            .to_owned(),
        recorded: NewEvent {
            event_type,
            resource: row.aggregate,
            sequence: row.sequence,
            data,
            actor: row.actor,
            request_id: row.request_id,
        },
        occur_time: row.occur_time,
        position,
    })
}

/// Version byte of resume tokens, so their format can change.
const RESUME_TOKEN_VERSION: u8 = 1;

/// The resume token of the event at `position`. Not signed: it only says where to resume,
/// reveals nothing, and must survive restarts and key changes.
pub fn resume_token(position: i64) -> String {
    let mut bytes = [0_u8; 9];
    bytes[0] = RESUME_TOKEN_VERSION;
    bytes[1..].copy_from_slice(&position.to_be_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The position in a resume token.
pub fn parse_resume_token(token: &str) -> Option<i64> {
    if token.len() > 32 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    match bytes.as_slice() {
        [RESUME_TOKEN_VERSION, rest @ ..] => {
            let position = i64::from_be_bytes(rest.try_into().ok()?);
            (position >= 0).then_some(position)
        }
        _ => None,
    }
}

/// Waits out the backoff after `failures`; false when `stop` was cancelled meanwhile.
async fn backed_off(stop: &CancellationToken, failures: u32) -> bool {
    stop.run_until_cancelled(tokio::time::sleep(backoff(failures)))
        .await
        .is_some()
}

/// Exponential backoff from 100 ms up to 5 s.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100_u64.saturating_mul(1 << failures.min(6)).min(5_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_tokens_round_trip_and_reject_garbage() {
        for position in [0, 1, 42, i64::MAX] {
            assert_eq!(parse_resume_token(&resume_token(position)), Some(position));
        }
        for garbage in ["", "x", "AAAA", &"A".repeat(100), "AgAAAAAAAAAB"] {
            assert_eq!(parse_resume_token(garbage), None, "{garbage}");
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(30), Duration::from_secs(5));
    }
}
