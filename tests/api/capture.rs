//! What the server logs, captured through the production subscriber (`telemetry::dispatch`)
//! without a global one.
//!
//! The capturing dispatcher is the default of every thread of a runtime built for the test
//! (`on_thread_start`), which is where the server, its spawned write transactions and its
//! blocking tasks run. Other tests in this binary, running in parallel, are neither captured
//! nor slowed down.

use std::{cell::RefCell, future::Future};

use customer_api::{config::LogFormat, telemetry};
use tracing::dispatcher::{DefaultGuard, Dispatch};
use tracing_subscriber::EnvFilter;

/// The in-memory log sink of the production subscriber.
pub use telemetry::MemoryLog as Capture;

thread_local! {
    /// The capturing dispatcher of a runtime thread, for the thread's lifetime.
    static CAPTURING: RefCell<Option<DefaultGuard>> = const { RefCell::new(None) };
}

/// Runs `scenario` on a runtime whose every thread (and the calling one) dispatches to
/// `dispatch`; returns once the runtime's threads are joined, so every line is written.
pub fn run_with<T>(dispatch: &Dispatch, scenario: impl Future<Output = T>) -> T {
    // tracing caches each callsite's interest process-wide when the callsite is first hit.
    // While exactly one dispatcher is registered, tracing-core (0.1.36) computes it from the
    // default of the thread that hits it first (tokio-rs/tracing#3611): a sibling test's
    // thread, which has none, would cache "never" and silence the line for this capture too
    // (seen once under the full suite). A second dispatcher registered for the life of the
    // process makes tracing ask every registered one instead; this one wants nothing.
    static PINNED: std::sync::OnceLock<Dispatch> = std::sync::OnceLock::new();
    PINNED.get_or_init(|| Dispatch::new(tracing::subscriber::NoSubscriber::default()));
    let on_start = dispatch.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            CAPTURING.set(Some(tracing::dispatcher::set_default(&on_start)));
        })
        .on_thread_stop(|| drop(CAPTURING.take()))
        .build()
        .unwrap();
    let output = {
        let _test_thread = tracing::dispatcher::set_default(dispatch);
        runtime.block_on(scenario)
    };
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));
    output
}

/// Runs `scenario` with every line of the production subscriber in `format`, filtered by
/// `filter` (`RUST_LOG` syntax), captured: returns the text and the scenario's output.
pub fn captured<T>(
    format: LogFormat,
    filter: &str,
    scenario: impl Future<Output = T>,
) -> (String, T) {
    let capture = Capture::default();
    let dispatch = telemetry::dispatch(format, EnvFilter::new(filter), capture.clone());
    let output = run_with(&dispatch, scenario);
    (capture.text(), output)
}
