//! A span per SQL statement (OpenTelemetry database conventions: `db.system`,
//! `db.operation`, `db.statement`), child of whatever span runs the statement.
//!
//! diesel reports each statement to the connection's [`Instrumentation`]: a span opens when
//! the statement starts and ends when it finishes. The statement is the SQL text with its
//! `$n` placeholders: the bound values (customer data) never reach the span. Connections get
//! this instrumentation only when spans are recorded at all ([`wanted`]), so without a trace
//! layer no statement pays for it.

use std::collections::VecDeque;

use diesel::connection::{Instrumentation, InstrumentationEvent};

/// Whether statement spans would be recorded (a trace layer takes this crate's spans).
pub fn wanted() -> bool {
    tracing::span_enabled!(target: "customer_api::db", tracing::Level::INFO)
}

/// The open statement spans of one connection, oldest first (pipelined statements finish in
/// order).
#[derive(Debug, Default)]
pub struct StatementSpans {
    open: VecDeque<tracing::Span>,
}

impl Instrumentation for StatementSpans {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { query, .. } => {
                let span = if wanted() {
                    // diesel writes the binds after the SQL; they stay out.
                    let text = query.to_string();
                    let sql = text.split(" -- binds: ").next().unwrap_or_default().trim();
                    statement_span(operation(sql), &crate::telemetry::masked(sql))
                } else {
                    tracing::Span::none()
                };
                self.open.push_back(span);
            }
            InstrumentationEvent::FinishQuery { error, .. } => {
                if let Some(span) = self.open.pop_front()
                    && error.is_some()
                {
                    span.record("otel.status_code", "error");
                }
            }
            _ => {}
        }
    }
}

/// The span of one statement, its attributes given at creation: each later `record` is a
/// separate trip through the trace layer.
fn statement_span(operation: &'static str, statement: &str) -> tracing::Span {
    tracing::info_span!(
        target: "customer_api::db",
        "statement",
        otel.name = operation,
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        db.system = "postgresql",
        db.operation = operation,
        db.statement = statement,
    )
}

/// The statement's first keyword (`SELECT`, `INSERT`, `WITH` …), upper case.
fn operation(sql: &str) -> &'static str {
    let word = sql
        .split(|c: char| !c.is_ascii_alphabetic())
        .find(|word| !word.is_empty())
        .unwrap_or_default();
    const KNOWN: [&str; 14] = [
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "WITH",
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "SET",
        "LISTEN",
        "CREATE",
        "ALTER",
        "DROP",
        "SAVEPOINT",
    ];
    KNOWN
        .into_iter()
        .find(|known| known.eq_ignore_ascii_case(word))
        .unwrap_or("OTHER")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operation_is_the_first_keyword() {
        for (statement, operation_name) in [
            ("SELECT \"customers\".\"id\" FROM x", "SELECT"),
            ("  insert into events", "INSERT"),
            ("WITH a AS (SELECT 1) SELECT 2", "WITH"),
            ("VACUUM", "OTHER"),
            ("", "OTHER"),
        ] {
            assert_eq!(operation(statement), operation_name, "{statement}");
        }
    }
}
