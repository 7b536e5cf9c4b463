//! Supervised background tasks: one set, one cancellation token, restarts with backoff.
//!
//! Each task is named and made by a factory called once per run with the set's
//! [`CancellationToken`]; a task is expected to run until the token is cancelled. A run
//! that ends before that, by returning or by panicking, is a failure: it is logged at error
//! level with the task's name (and the panic message), counted in [`Restarts`] (exported as
//! `customer_api_background_task_restarts_total{task}`), and the task is started again after
//! a backoff that grows with consecutive failures (100 ms … 5 s; a run that lasted a minute
//! starts the count afresh). A panicking relay or purger is therefore visible and comes back
//! on its own instead of silently leaving the process half-working.
//!
//! [`Supervisor::shutdown`] cancels the token and waits for every task: each gets the
//! supervisor's grace period to end on its own (finish the statement or publish in hand,
//! release a lease) before it is aborted, so shutdown is bounded even if a task hangs.
//!
//! Runs are spawned on tasks of their own (tracked by a `TaskTracker`) so a panic surfaces
//! as a `JoinError` instead of unwinding through the supervisor.

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::time::Instant;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::service::events::backoff;

/// A run that lasted this long was healthy: the next failure backs off from the start.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// How often each supervised task was restarted, by name (shared with the metrics scrape).
#[derive(Debug, Clone, Default)]
pub struct Restarts(Arc<Mutex<BTreeMap<&'static str, u64>>>);

impl Restarts {
    /// Every supervised task with its restart count, by name.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        self.lock().iter().map(|(name, n)| (*name, *n)).collect()
    }

    /// The restart count of `task` (0 for a task never started).
    pub fn of(&self, task: &str) -> u64 {
        self.lock().get(task).copied().unwrap_or(0)
    }

    fn register(&self, task: &'static str) {
        self.lock().entry(task).or_insert(0);
    }

    fn record(&self, task: &'static str) {
        *self.lock().entry(task).or_insert(0) += 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, u64>> {
        // A poisoned map still holds valid counts (no invariant spans the lock).
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The set of background tasks of one server.
#[derive(Debug)]
pub struct Supervisor {
    tracker: TaskTracker,
    stop: CancellationToken,
    restarts: Restarts,
    grace: Duration,
}

impl Supervisor {
    /// An empty set whose tasks get `grace` to end after cancellation before being aborted.
    pub fn new(grace: Duration) -> Self {
        Self {
            tracker: TaskTracker::new(),
            stop: CancellationToken::new(),
            restarts: Restarts::default(),
            grace,
        }
    }

    /// Another set with its own cancellation, counting restarts in the same [`Restarts`]:
    /// for tasks that must outlive the others during shutdown.
    pub fn sibling(&self) -> Self {
        Self {
            tracker: TaskTracker::new(),
            stop: CancellationToken::new(),
            restarts: self.restarts.clone(),
            grace: self.grace,
        }
    }

    /// The restart counts of this set's tasks.
    pub fn restarts(&self) -> Restarts {
        self.restarts.clone()
    }

    /// Starts task `name`: `task(token)` makes one run, which should return only once
    /// `token` is cancelled. Any other end of a run is logged and the task restarted.
    pub fn spawn<F, Fut>(&self, name: &'static str, mut task: F)
    where
        F: FnMut(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.restarts.register(name);
        let stop = self.stop.clone();
        let restarts = self.restarts.clone();
        let grace = self.grace;
        self.tracker.spawn(async move {
            let mut failures = 0_u32;
            loop {
                let started = Instant::now();
                let mut run = tokio::spawn(task(stop.clone()));
                let outcome = tokio::select! {
                    outcome = &mut run => outcome,
                    () = stop.cancelled() => {
                        stop_within(name, run, grace).await;
                        return;
                    }
                };
                if stop.is_cancelled() {
                    // It saw the cancellation before the supervisor did: a normal end.
                    return;
                }
                match outcome {
                    Ok(()) => {
                        tracing::error!(task = name, "background task ended unexpectedly; restarting");
                    }
                    Err(error) if error.is_panic() => {
                        let panic = panic_message(error.into_panic());
                        tracing::error!(task = name, %panic, "background task panicked; restarting");
                    }
                    Err(error) => {
                        tracing::error!(task = name, %error, "background task was cancelled; restarting");
                    }
                }
                restarts.record(name);
                if started.elapsed() >= HEALTHY_RUN {
                    failures = 0;
                }
                let delay = backoff(failures);
                failures = failures.saturating_add(1);
                if stop
                    .run_until_cancelled(tokio::time::sleep(delay))
                    .await
                    .is_none()
                {
                    return;
                }
            }
        });
    }

    /// Cancels every task (without waiting).
    pub fn cancel(&self) {
        self.stop.cancel();
    }

    /// Cancels every task and waits until all have ended (each within the grace period, or
    /// aborted).
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Waits up to `grace` for a cancelled run to end, then aborts it.
async fn stop_within(name: &'static str, mut run: tokio::task::JoinHandle<()>, grace: Duration) {
    match tokio::time::timeout(grace, &mut run).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) if error.is_panic() => {
            let panic = panic_message(error.into_panic());
            tracing::error!(task = name, %panic, "background task panicked while stopping");
        }
        Ok(Err(_)) => {}
        Err(_) => {
            tracing::warn!(
                task = name,
                ?grace,
                "background task did not stop in time; aborting it"
            );
            run.abort();
            let _ = run.await;
        }
    }
}

/// The text of a panic payload (`panic!` with a literal or a formatted message).
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(text) => (*text).to_owned(),
            Err(_) => "(not a string)".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::BTreeSet,
        sync::atomic::{AtomicU32, Ordering},
    };

    use tokio::sync::mpsc;

    use super::*;

    /// A task that fails its first run (`fail`), then reports `(name, run)` when started and
    /// again when it observed cancellation.
    fn flaky(
        name: &'static str,
        fail: fn(),
        started: mpsc::UnboundedSender<(&'static str, u32)>,
        stopped: mpsc::UnboundedSender<(&'static str, u32)>,
    ) -> impl FnMut(CancellationToken) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        let runs = Arc::new(AtomicU32::new(0));
        move |stop| {
            let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
            let (started, stopped) = (started.clone(), stopped.clone());
            Box::pin(async move {
                if run == 1 {
                    fail();
                    return;
                }
                started.send((name, run)).expect("test listens");
                stop.cancelled().await;
                stopped.send((name, run)).expect("test listens");
            })
        }
    }

    #[tokio::test]
    async fn a_task_that_panics_or_returns_is_restarted_and_cancellation_stops_every_task() {
        let supervisor = Supervisor::new(Duration::from_secs(30));
        let (started_tx, mut started) = mpsc::unbounded_channel();
        let (stopped_tx, mut stopped) = mpsc::unbounded_channel();
        supervisor.spawn(
            "panics-once",
            flaky(
                "panics-once",
                || panic!("first run fails"),
                started_tx.clone(),
                stopped_tx.clone(),
            ),
        );
        supervisor.spawn(
            "returns-once",
            flaky(
                "returns-once",
                || {},
                started_tx.clone(),
                stopped_tx.clone(),
            ),
        );
        let steady_started = started_tx.clone();
        let steady_stopped = stopped_tx.clone();
        supervisor.spawn("steady", move |stop: CancellationToken| {
            let (started, stopped) = (steady_started.clone(), steady_stopped.clone());
            async move {
                started.send(("steady", 1)).expect("test listens");
                stop.cancelled().await;
                stopped.send(("steady", 1)).expect("test listens");
            }
        });
        drop((started_tx, stopped_tx));

        let mut running = BTreeSet::new();
        for _ in 0..3 {
            running.insert(started.recv().await.expect("a run starts"));
        }
        assert_eq!(
            running,
            BTreeSet::from([("panics-once", 2), ("returns-once", 2), ("steady", 1)])
        );
        assert_eq!(
            supervisor.restarts().snapshot(),
            vec![("panics-once", 1), ("returns-once", 1), ("steady", 0)]
        );

        supervisor.shutdown().await;

        let mut ended = BTreeSet::new();
        for _ in 0..3 {
            ended.insert(stopped.recv().await.expect("a run ends"));
        }
        assert_eq!(ended, running, "every run saw the cancellation and ended");
        assert!(
            started.try_recv().is_err(),
            "nothing restarts after shutdown"
        );
        assert_eq!(supervisor.restarts().of("panics-once"), 1);
    }

    #[tokio::test]
    async fn a_task_that_ignores_cancellation_is_aborted_after_the_grace_period() {
        let supervisor = Supervisor::new(Duration::from_millis(20));
        let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
        let (dropped_tx, mut dropped) = mpsc::unbounded_channel::<()>();
        /// Reports its drop: an aborted future is dropped.
        struct Guard(mpsc::UnboundedSender<()>);
        impl Drop for Guard {
            fn drop(&mut self) {
                let _ = self.0.send(());
            }
        }
        supervisor.spawn("stubborn", move |_stop| {
            let guard = Guard(dropped_tx.clone());
            let started = started_tx.clone();
            async move {
                let _guard = guard;
                started.send(()).expect("test listens");
                std::future::pending::<()>().await;
            }
        });
        started.recv().await.expect("the task starts");

        supervisor.shutdown().await;

        assert_eq!(dropped.recv().await, Some(()), "the run was aborted");
        assert_eq!(supervisor.restarts().of("stubborn"), 0);
    }
}
