//! A span per SQL statement (OpenTelemetry database conventions: `db.system`,
//! `db.operation`, `db.statement`), child of whatever span runs the statement.
//!
//! diesel reports each statement to the connection's [`Instrumentation`]: a span opens when
//! the statement starts and ends when it finishes. The statement is the SQL text with its
//! `$n` placeholders: the bound values (customer data) are not even formatted, and never reach
//! the span; each distinct text is masked and classified once per thread. Connections get
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
                    STATEMENTS.with_borrow_mut(|statements| {
                        let (operation, masked) = statements.of(&query);
                        statement_span(operation, masked)
                    })
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

/// What diesel's `Display` of a query writes between the SQL and its bound values.
const BINDS: &str = " -- binds: ";

/// Statements seen on this thread, most with the same few texts.
const KNOWN_STATEMENTS: usize = 64;

thread_local! {
    static STATEMENTS: std::cell::RefCell<Statements> = std::cell::RefCell::default();
}

/// The statements a thread has seen (at most [`KNOWN_STATEMENTS`]: forgotten all at once
/// beyond), each with its operation and its masked text, so that a statement run again is
/// masked and classified once, not per run.
#[derive(Debug, Default)]
struct Statements {
    /// Rendered SQL (reused buffer).
    sql: String,
    known: Vec<(Box<str>, &'static str, Box<str>)>,
}

impl Statements {
    /// The operation and masked text of `query`.
    fn of(&mut self, query: &dyn std::fmt::Display) -> (&'static str, &str) {
        render_sql(query, &mut self.sql);
        let sql = self.sql.trim();
        let found = self.known.iter().position(|(known, ..)| **known == *sql);
        let index = match found {
            Some(index) => index,
            None => {
                if self.known.len() >= KNOWN_STATEMENTS {
                    self.known.clear();
                }
                self.known.push((
                    sql.into(),
                    operation(sql),
                    crate::telemetry::masked(sql).into(),
                ));
                self.known.len() - 1
            }
        };
        let (_, operation, masked) = &self.known[index];
        (operation, masked)
    }
}

/// The SQL of `query` into `sql`, without the bound values (customer data) that diesel's
/// `Display` writes after it: the writer refuses everything from [`BINDS`] on, so they are
/// not even formatted.
fn render_sql(query: &dyn std::fmt::Display, sql: &mut String) {
    struct UntilBinds<'a>(&'a mut String);
    impl std::fmt::Write for UntilBinds<'_> {
        fn write_str(&mut self, text: &str) -> std::fmt::Result {
            if let Some(at) = text.find(BINDS) {
                self.0.push_str(&text[..at]);
                return Err(std::fmt::Error);
            }
            self.0.push_str(text);
            Ok(())
        }
    }
    sql.clear();
    let _ = std::fmt::write(&mut UntilBinds(sql), format_args!("{query}"));
    // Had the marker come in pieces, it is cut off here.
    if let Some(at) = sql.find(BINDS) {
        sql.truncate(at);
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

    /// Displays as diesel's `DebugQuery` does.
    struct Query(&'static str);
    impl std::fmt::Display for Query {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                f,
                "{}{BINDS}{:?}",
                self.0,
                ["jane@example.com", "+4930123456"]
            )
        }
    }

    #[test]
    fn statements_are_rendered_without_their_binds_and_masked_once() {
        let mut statements = Statements::default();
        let select = "SELECT \"customers\".\"id\" FROM \"customers\" WHERE \"id\" = $1";
        assert_eq!(statements.of(&Query(select)), ("SELECT", select));
        assert_eq!(statements.of(&Query(" BEGIN ")), ("BEGIN", "BEGIN"));
        assert_eq!(statements.of(&Query(select)), ("SELECT", select));
        assert_eq!(statements.known.len(), 2);
        // Text in the SQL itself is masked.
        assert_eq!(
            statements.of(&Query("SELECT 'jane.doe@example.com'")),
            ("SELECT", "SELECT 'j***@example.com'")
        );
        for n in 0..KNOWN_STATEMENTS {
            statements.of(&Query(Box::leak(format!("SELECT {n}").into_boxed_str())));
        }
        assert!(statements.known.len() <= KNOWN_STATEMENTS);
    }

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
