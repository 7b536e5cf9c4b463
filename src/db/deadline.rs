//! Statement budgets from the caller's deadline.
//!
//! Every connection's `statement_timeout` is `DB_STATEMENT_TIMEOUT`. A call whose client
//! sent a deadline gets less: each transaction it begins sets `SET LOCAL statement_timeout`
//! to the smaller of the time left and that setting, in the same round trip as its `BEGIN`
//! ([`begin_sql`]). A write whose client has given up therefore stops waiting (for a lock, a
//! slow table) and rolls back instead of committing long after the client was told
//! DEADLINE_EXCEEDED. Reads outside a transaction need no such statement: the deadline drops
//! the call, and the dropped [`Checkout`](super::checkout::Checkout) cancels its query.

use std::time::Duration;

use tokio::time::Instant;

/// The smallest budget set: `statement_timeout = 0` would mean "no limit".
const AT_LEAST: Duration = Duration::from_millis(1);

/// The statement budget of a transaction begun now: the time left before `deadline`, at most
/// `limit` (none: `limit`).
pub fn budget(limit: Duration, deadline: Option<Instant>) -> Duration {
    match deadline {
        None => limit,
        Some(deadline) => deadline
            .saturating_duration_since(Instant::now())
            .min(limit)
            .max(AT_LEAST),
    }
}

/// The statements that begin a transaction bounded by `deadline`, or `None` when the
/// connection's own `statement_timeout` (`limit`) is already the bound.
pub fn begin_sql(limit: Duration, deadline: Option<Instant>) -> Option<String> {
    let budget = budget(limit, deadline);
    (budget < limit).then(|| {
        // Every write with a deadline begins so: spelled without the formatting machinery.
        let mut millis = itoa::Buffer::new();
        let millis = millis.format(budget.as_millis().max(1));
        ["BEGIN; SET LOCAL statement_timeout = ", millis].concat()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_deadline_the_setting_is_the_budget() {
        let limit = Duration::from_secs(5);
        assert_eq!(budget(limit, None), limit);
        assert_eq!(begin_sql(limit, None), None);
    }

    #[test]
    fn a_far_deadline_keeps_the_setting() {
        let limit = Duration::from_secs(5);
        let far = Instant::now() + Duration::from_secs(60);
        assert_eq!(budget(limit, Some(far)), limit);
        assert_eq!(begin_sql(limit, Some(far)), None);
    }

    #[test]
    fn a_near_deadline_is_the_budget_and_a_passed_one_is_a_millisecond() {
        let limit = Duration::from_secs(5);
        let near = Instant::now() + Duration::from_millis(300);
        let budget = budget(limit, Some(near));
        assert!(budget <= Duration::from_millis(300) && budget > Duration::ZERO);
        let sql = begin_sql(limit, Some(Instant::now())).unwrap();
        assert_eq!(sql, "BEGIN; SET LOCAL statement_timeout = 1");
    }
}
