//! A consecutive-failure circuit breaker.
//!
//! Hand-written rather than taken from a crate: the whole state machine is ~100 lines, it
//! must share the injectable [`Clock`] with the cache, and the crates that offer one
//! (`failsafe`, `tower`'s retry/limit layers, `recloser`) either bring a `Service` stack
//! this client does not use or their own time source.
//!
//! - **Closed**: calls go through; `threshold` consecutive failures open the breaker.
//! - **Open**: calls are refused at once (no request) until `cooldown` has passed.
//! - **Half-open**: the first call after the cool-down is let through as a probe, every other
//!   call is still refused. A successful probe closes the breaker; a failed one opens it for
//!   another cool-down. A probe abandoned mid-way (its caller was cancelled) lets the next
//!   call probe.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use super::clock::Clock;

/// What the breaker is doing, for health reporting and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused without contacting the registry.
    Open,
    /// One probe is in flight; other calls are refused.
    HalfOpen,
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// The breaker. Shared by every lookup of one client.
pub(crate) struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

/// Permission for one call; report its outcome with [`Permit::success`] or
/// [`Permit::failure`].
pub(crate) struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    probe: bool,
    settled: bool,
}

impl CircuitBreaker {
    /// A closed breaker that opens after `threshold` (at least 1) consecutive failures.
    pub(crate) fn new(threshold: u32, cooldown: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            clock,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A permit for one call, or how long the caller should wait before trying again.
    pub(crate) fn acquire(&self) -> Result<Permit<'_>, Duration> {
        let mut state = self.lock();
        let probe = match *state {
            State::Closed { .. } => false,
            State::Open { until } => {
                let now = self.clock.now();
                if now < until {
                    return Err(until - now);
                }
                *state = State::HalfOpen;
                tracing::info!("business registry circuit half-open: probing");
                true
            }
            // The probe takes at most one timeout; a second is a fair hint.
            State::HalfOpen => return Err(self.cooldown.min(Duration::from_secs(1))),
        };
        Ok(Permit {
            breaker: self,
            probe,
            settled: false,
        })
    }

    /// The current state.
    pub(crate) fn state(&self) -> BreakerState {
        match *self.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen => BreakerState::HalfOpen,
        }
    }

    fn on_success(&self) {
        let mut state = self.lock();
        if !matches!(*state, State::Closed { .. }) {
            tracing::info!("business registry circuit closed: the registry answers again");
        }
        *state = State::Closed { failures: 0 };
    }

    fn on_failure(&self, probe: bool) {
        let mut state = self.lock();
        let open = match *state {
            State::Closed { failures } => {
                let failures = failures.saturating_add(1);
                *state = State::Closed { failures };
                failures >= self.threshold
            }
            State::HalfOpen => probe,
            // A call admitted before the breaker opened: it stays open as it is.
            State::Open { .. } => false,
        };
        if open {
            tracing::warn!(
                cooldown = ?self.cooldown,
                "business registry circuit open: calls are refused until the cool-down ends"
            );
            *state = State::Open {
                until: self.clock.now() + self.cooldown,
            };
        }
    }

    fn on_abandoned_probe(&self) {
        let mut state = self.lock();
        if matches!(*state, State::HalfOpen) {
            // Open, but already past the cool-down: the next call probes.
            *state = State::Open {
                until: self.clock.now(),
            };
        }
    }
}

impl Permit<'_> {
    /// The registry answered (a result, or a definite "no such business").
    pub(crate) fn success(mut self) {
        self.settled = true;
        self.breaker.on_success();
    }

    /// The registry failed (timeout, connection, 5xx, 429, unreadable response).
    pub(crate) fn failure(mut self) {
        self.settled = true;
        self.breaker.on_failure(self.probe);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.settled && self.probe {
            self.breaker.on_abandoned_probe();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::clock::ManualClock;

    fn breaker(threshold: u32) -> (CircuitBreaker, ManualClock) {
        let clock = ManualClock::new();
        let breaker =
            CircuitBreaker::new(threshold, Duration::from_secs(30), Arc::new(clock.clone()));
        (breaker, clock)
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let (breaker, _clock) = breaker(3);
        for outcome in [false, false, true, false, false] {
            let permit = breaker.acquire().expect("closed");
            if outcome {
                permit.success();
            } else {
                permit.failure();
            }
        }
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "a success resets the count"
        );
        breaker.acquire().expect("closed").failure();
        assert_eq!(breaker.state(), BreakerState::Open);
        let wait = breaker.acquire().err().expect("refused while open");
        assert_eq!(wait, Duration::from_secs(30));
    }

    #[test]
    fn one_probe_after_the_cooldown_decides() {
        let (breaker, clock) = breaker(1);
        breaker.acquire().expect("closed").failure();
        clock.advance(Duration::from_secs(29));
        assert_eq!(breaker.acquire().err(), Some(Duration::from_secs(1)));
        clock.advance(Duration::from_secs(1));
        let probe = breaker.acquire().expect("probe after the cool-down");
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(breaker.acquire().is_err(), "only one probe at a time");
        probe.failure();
        assert_eq!(
            breaker.state(),
            BreakerState::Open,
            "a failed probe reopens"
        );
        clock.advance(Duration::from_secs(30));
        breaker.acquire().expect("second probe").success();
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_call_probe() {
        let (breaker, clock) = breaker(1);
        breaker.acquire().expect("closed").failure();
        clock.advance(Duration::from_secs(30));
        drop(breaker.acquire().expect("probe"));
        assert!(breaker.acquire().is_ok(), "the next call probes at once");
    }
}
