//! Abuse protection: per-caller rate limits and a global concurrency limit with load shedding.
//!
//! - Rate limits (GCRA via `governor`) are keyed by the authenticated caller, so one noisy
//!   client cannot starve the others; an exceeded limit answers RESOURCE_EXHAUSTED with a
//!   `RetryInfo` detail (429 with `Retry-After` on REST).
//! - The concurrency limit sheds load instead of queueing: beyond `max` calls in flight, new
//!   calls answer UNAVAILABLE at once (503), which keeps latency bounded under overload and
//!   tells clients to back off. Health checks are not behind either limit. Permits are taken
//!   only once the request message has been read (`grpc::body::BodyFirst`), so a peer that
//!   never sends its body holds none.
//! - [`CallerLimits`] gives each caller a share of that budget: beyond its share of calls in
//!   flight (`MAX_CONCURRENT_REQUESTS_PER_CALLER`, below the global limit) a caller's new
//!   calls answer RESOURCE_EXHAUSTED, so one caller cannot take every permit (nor, by
//!   saturating the server, turn its readiness off). The same type bounds each caller's open
//!   watches.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::Duration,
};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};
use http::Request;
use tokio::sync::Semaphore;
use tonic::{Code, Status};

use crate::{
    grpc::{
        middleware::{Inner, Middleware, ResponseFuture},
        status::transport_status,
    },
    service::error::reason,
};

/// Per-caller request rates.
pub struct RateLimits {
    limiter: DefaultKeyedRateLimiter<Arc<str>>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RateLimits")
    }
}

impl RateLimits {
    /// `per_second` steady rate with `burst` headroom; `None` when `per_second` is 0.
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        let rate = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
        Some(Self {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
        })
    }

    /// `Ok` when `caller` may make a call now, else how long to wait.
    pub fn check(&self, caller: &Arc<str>) -> Result<(), Duration> {
        self.limiter.check_key(caller).map_err(|not_until| {
            not_until.wait_time_from(governor::clock::DefaultClock::default().now())
        })
    }

    /// The RESOURCE_EXHAUSTED answer.
    pub fn exceeded(retry_after: Duration) -> Status {
        transport_status(
            Code::ResourceExhausted,
            reason::RATE_LIMITED,
            format!(
                "rate limit exceeded; retry in {} ms",
                retry_after.as_millis().max(1)
            ),
            Some(retry_after.max(Duration::from_millis(1))),
        )
    }
}

/// Sheds calls beyond a concurrency limit.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimit {
    permits: Arc<Semaphore>,
}

impl ConcurrencyLimit {
    /// At most `max` calls at once (at least one).
    pub fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max.max(1))),
        }
    }
}

impl ConcurrencyLimit {
    /// Whether every permit is taken (new calls are being shed).
    pub fn saturated(&self) -> bool {
        self.permits.available_permits() == 0
    }

    /// Calls holding a permit now, out of `max`.
    pub fn in_flight(&self, max: usize) -> usize {
        max.max(1).saturating_sub(self.permits.available_permits())
    }
}

/// How many things (calls in flight, open watches) each caller holds, capped per caller.
#[derive(Debug, Clone)]
pub struct CallerLimits {
    held: Arc<Mutex<HashMap<Arc<str>, usize>>>,
    max: usize,
}

/// One thing a caller holds; dropping it gives it back.
#[derive(Debug)]
pub struct CallerPermit {
    held: Arc<Mutex<HashMap<Arc<str>, usize>>>,
    caller: Arc<str>,
}

impl CallerLimits {
    /// At most `max` (at least one) per caller.
    pub fn new(max: usize) -> Self {
        Self {
            held: Arc::default(),
            max: max.max(1),
        }
    }

    /// A permit for `caller`, or `None` when it already holds `max`.
    pub fn try_acquire(&self, caller: &Arc<str>) -> Option<CallerPermit> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        // Looked up by name first: the key is shared (not copied) only when it is new.
        let count = match held.get_mut(&**caller) {
            Some(count) => count,
            None => held.entry(caller.clone()).or_default(),
        };
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(CallerPermit {
            held: self.held.clone(),
            caller: caller.clone(),
        })
    }

    /// What everyone holds now.
    pub fn total(&self) -> usize {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.values().sum()
    }

    /// The RESOURCE_EXHAUSTED answer of a caller over its share of `what`.
    pub fn exceeded(&self, what: &str) -> Status {
        transport_status(
            Code::ResourceExhausted,
            reason::CALLER_CONCURRENCY_EXCEEDED,
            format!(
                "this caller already has {} {what} in flight, its share; retry when one ends",
                self.max
            ),
            Some(Duration::from_secs(1)),
        )
    }
}

impl Drop for CallerPermit {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        // Callers without anything held are forgotten, so the map stays small.
        if let Some(count) = held.get_mut(&*self.caller) {
            *count -= 1;
            if *count == 0 {
                held.remove(&*self.caller);
            }
        }
    }
}

impl<S: Inner<B>, B> Middleware<S, B> for ConcurrencyLimit {
    fn call(&self, inner: &mut S, request: Request<B>) -> ResponseFuture<S::Error> {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            let status = transport_status(
                Code::Unavailable,
                reason::OVERLOADED,
                "the server is at capacity; retry shortly",
                Some(Duration::from_secs(1)),
            );
            return Box::pin(async move { Ok(status.into_http()) });
        };
        let call = inner.call(request);
        Box::pin(async move {
            let response = call.await;
            drop(permit);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_caller_has_its_own_budget() {
        let limits = RateLimits::new(1, 2).unwrap();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        assert!(limits.check(&a).is_ok());
        assert!(limits.check(&a).is_ok());
        let wait = limits.check(&a).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(limits.check(&b).is_ok());
        assert!(RateLimits::new(0, 10).is_none());
    }

    #[test]
    fn each_caller_holds_at_most_its_share_and_gives_it_back() {
        let limits = CallerLimits::new(2);
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let first = limits.try_acquire(&a).unwrap();
        let _second = limits.try_acquire(&a).unwrap();
        assert!(limits.try_acquire(&a).is_none());
        let _other = limits.try_acquire(&b).unwrap();
        assert_eq!(limits.total(), 3);
        drop(first);
        assert!(limits.try_acquire(&a).is_some());
        drop(_other);
        assert_eq!(limits.held.lock().unwrap().len(), 1, "b is forgotten");
    }
}
