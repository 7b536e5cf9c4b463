//! The caller's deadline, carried with the call.
//!
//! A transport that learns a client deadline (`grpc-timeout`, `Connect-Timeout-Ms`) runs the
//! call [`within`] it; whatever the call does below — in particular the database, which
//! bounds each transaction's statements by what is left of it ([`crate::db::deadline`]) —
//! reads it with [`current`]. A task-local rather than a parameter of every use case: the
//! deadline is a property of the call, like its trace span, and most code never needs it.
//! Work moved onto another task (writes run on spawned tasks) takes [`current`] along.

use std::future::Future;

use tokio::time::Instant;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `call` with `deadline` as its deadline (none: unbounded).
pub async fn within<F: Future>(deadline: Option<Instant>, call: F) -> F::Output {
    match deadline {
        Some(deadline) => DEADLINE.scope(deadline, call).await,
        None => call.await,
    }
}

/// The deadline of the call being served, if its client sent one.
pub fn current() -> Option<Instant> {
    DEADLINE.try_with(|deadline| *deadline).ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn the_deadline_is_seen_inside_the_call_only() {
        let deadline = Instant::now() + Duration::from_secs(3);
        assert_eq!(current(), None);
        assert_eq!(
            within(Some(deadline), async { current() }).await,
            Some(deadline)
        );
        assert_eq!(within(None, async { current() }).await, None);
        assert_eq!(current(), None);
    }
}
