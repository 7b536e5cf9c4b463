//! What open watches (WatchCustomerEvents) may hold: how many per caller and in all, how
//! many events each buffers, how long a client that does not read is waited for, and the
//! gauges that show it.
//!
//! A watch reads at most [`WATCH_BATCH`] events per query and hands them one by one to a
//! channel of [`WATCH_CHANNEL`] that the response stream drains only as HTTP/2 flow control
//! lets it send: a client that stops reading stops the reads (back-pressure), so one watch
//! holds at most `WATCH_BATCH` events. A watch whose next event waited
//! `WATCH_SLOW_CONSUMER_TIMEOUT` for room is ended: its reader lets go of its batch, and the
//! client, once it reads again, gets what was already in the channel and then UNAVAILABLE
//! (reason `SLOW_CONSUMER`) whose `ErrorInfo.metadata.resumeToken` is the last event it was
//! sent: watching again from there misses nothing.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{
    auth::limits::{CallerLimits, CallerPermit},
    db::events::EventRow,
};

/// Events read per watch query: the most one watch buffers.
pub const WATCH_BATCH: i64 = 32;
/// Events waiting between a watch's reader and its response stream.
pub const WATCH_CHANNEL: usize = 8;

/// The limits and gauges of every watch of this server.
#[derive(Debug, Clone)]
pub struct WatchLimits {
    per_caller: CallerLimits,
    total: Arc<Semaphore>,
    /// How long a watch waits for room for its next event before it ends.
    pub slow_consumer_timeout: Duration,
    gauges: Arc<Gauges>,
}

/// What the watches hold now, and how many were ended for not reading.
#[derive(Debug, Default)]
pub struct Gauges {
    events: AtomicUsize,
    bytes: AtomicUsize,
    dropped: AtomicU64,
}

impl Default for WatchLimits {
    fn default() -> Self {
        Self::new(16, 1024, Duration::from_secs(30))
    }
}

impl WatchLimits {
    /// `per_caller` watches per caller, `total` in all, slow consumers ended after
    /// `slow_consumer_timeout`.
    pub fn new(per_caller: usize, total: usize, slow_consumer_timeout: Duration) -> Self {
        Self {
            per_caller: CallerLimits::new(per_caller),
            total: Arc::new(Semaphore::new(total.max(1))),
            slow_consumer_timeout,
            gauges: Arc::default(),
        }
    }

    /// A place for one more watch of `caller`, or the RESOURCE_EXHAUSTED status to answer.
    pub fn admit(&self, caller: &Arc<str>) -> Result<WatchPermit, tonic::Status> {
        let caller = self
            .per_caller
            .try_acquire(caller)
            .ok_or_else(|| self.per_caller.exceeded("watches"))?;
        let total = self.total.clone().try_acquire_owned().map_err(|_| {
            crate::grpc::status::transport_status(
                tonic::Code::ResourceExhausted,
                super::error::reason::CALLER_CONCURRENCY_EXCEEDED,
                "the server has its maximum of open watches (MAX_WATCHES); retry shortly",
                Some(Duration::from_secs(1)),
            )
        })?;
        Ok(WatchPermit {
            _caller: caller,
            _total: total,
        })
    }

    /// Counts `row` as held by a watch until the returned guard is dropped.
    pub fn hold(&self, row: &EventRow) -> Held {
        // What the row keeps on the heap, near enough: its content and its strings.
        let bytes = row.payload.as_ref().map_or(0, Vec::len)
            + row.data.as_ref().map_or(0, |data| data.to_string().len())
            + row.aggregate.len()
            + row.event_type.len()
            + row.actor.len()
            + row.traceparent.as_ref().map_or(0, String::len)
            + std::mem::size_of::<EventRow>();
        self.gauges.events.fetch_add(1, Ordering::SeqCst);
        self.gauges.bytes.fetch_add(bytes, Ordering::SeqCst);
        Held {
            gauges: self.gauges.clone(),
            bytes,
        }
    }

    /// Counts a watch ended for not reading.
    pub fn dropped_one(&self) {
        self.gauges.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Open watches, events and bytes they hold, and watches ended for not reading.
    pub fn snapshot(&self) -> (usize, usize, usize, u64) {
        (
            self.per_caller.total(),
            self.gauges.events.load(Ordering::SeqCst),
            self.gauges.bytes.load(Ordering::SeqCst),
            self.gauges.dropped.load(Ordering::Relaxed),
        )
    }
}

/// One open watch's place (per caller and in all), given back when its stream is dropped.
#[derive(Debug)]
pub struct WatchPermit {
    _caller: CallerPermit,
    _total: OwnedSemaphorePermit,
}

/// One event held by a watch (read, not yet handed to the response).
#[derive(Debug)]
pub struct Held {
    gauges: Arc<Gauges>,
    bytes: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gauges.events.fetch_sub(1, Ordering::SeqCst);
        self.gauges.bytes.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}
