//! Abuse protection: per-caller rate limits and a global concurrency limit with load shedding.
//!
//! - Rate limits (GCRA via `governor`) are keyed by the authenticated caller, so one noisy
//!   client cannot starve the others; an exceeded limit answers RESOURCE_EXHAUSTED with a
//!   `RetryInfo` detail (429 with `Retry-After` on REST).
//! - The concurrency limit sheds load instead of queueing: beyond `max` calls in flight, new
//!   calls answer UNAVAILABLE at once (503), which keeps latency bounded under overload and
//!   tells clients to back off. Health checks are not behind either limit.

use std::{num::NonZeroU32, sync::Arc, time::Duration};

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
    limiter: DefaultKeyedRateLimiter<String>,
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
    pub fn check(&self, caller: &str) -> Result<(), Duration> {
        self.limiter
            .check_key(&caller.to_owned())
            .map_err(|not_until| {
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
        assert!(limits.check("a").is_ok());
        assert!(limits.check("a").is_ok());
        let wait = limits.check("a").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(limits.check("b").is_ok());
        assert!(RateLimits::new(0, 10).is_none());
    }
}
