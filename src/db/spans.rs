//! A span per SQL statement (OpenTelemetry database conventions: `db.system`,
//! `db.operation`, `db.statement`), child of the traced operation (a request) that runs it.
//!
//! diesel reports each statement to the connection's [`Instrumentation`]: the span's start
//! and parent are taken when the statement starts, and the span is recorded when it
//! finishes. The statement is the SQL text with its `$n` placeholders, taken from the
//! *finish* event: there diesel-async hands over the SQL it built to run the statement (a
//! plain string), whereas the start event's query renders the whole query again when
//! displayed (diesel's `DebugQuery`: a walk of the query's AST, ~17k instructions per
//! statement). So the bound values (customer data) are never formatted and never reach the
//! span, and nothing is rendered for the span alone; each distinct text is masked and
//! classified once per thread, and kept as a shared string the span's attribute points to.
//! Connections get this instrumentation only when traces are exported at all ([`wanted`]),
//! so without a tracer no statement pays for it; statements run outside a traced operation
//! (background tasks) make no span.

use std::collections::VecDeque;

use bytes::Bytes;
use diesel::connection::{Instrumentation, InstrumentationEvent};
use opentelemetry::{KeyValue, trace::SpanKind};

use crate::telemetry::span::{ChildStart, fixed_attributes};

/// Whether statement spans would be recorded (traces are exported).
pub fn wanted() -> bool {
    crate::telemetry::span::tracer().is_some()
}

/// The open statements of one connection, oldest first (pipelined statements finish in
/// order): each one's span start, when it runs in a traced operation.
#[derive(Debug, Default)]
pub struct StatementSpans {
    open: VecDeque<Option<ChildStart>>,
}

impl Instrumentation for StatementSpans {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { .. } => {
                // The query is not looked at here (see the module docs).
                self.open.push_back(ChildStart::now());
            }
            InstrumentationEvent::FinishQuery { query, error, .. } => {
                if let Some(Some(start)) = self.open.pop_front() {
                    let (operation, attributes) =
                        STATEMENTS.with_borrow_mut(|statements| statements.of(&query));
                    start.finish(operation, SpanKind::Client, attributes, error.is_some());
                }
            }
            _ => {}
        }
    }
}

/// What diesel's `Display` of a query writes between the SQL and its bound values.
const BINDS: &str = " -- binds: ";

thread_local! {
    /// [`BINDS`] as a prepared SIMD searcher: `str::find` (Two-Way) cost ~1.5k instructions
    /// per statement over a typical 500-byte SQL text, this ~10 times less.
    static BINDS_FINDER: memchr::memmem::Finder<'static> = memchr::memmem::Finder::new(BINDS);
}

/// Where [`BINDS`] starts in `text`, if it is there.
fn find_binds(text: &str) -> Option<usize> {
    BINDS_FINDER.with(|finder| finder.find(text.as_bytes()))
}

/// Statements seen on this thread, most with the same few texts.
const KNOWN_STATEMENTS: usize = 64;

thread_local! {
    static STATEMENTS: std::cell::RefCell<Statements> = std::cell::RefCell::default();
}

/// The statements a thread has seen (at most [`KNOWN_STATEMENTS`]: forgotten all at once
/// beyond), each with its operation and its span attributes (`db.system`, `db.operation`,
/// the masked text as `db.statement`), encoded: a statement run again is masked, classified
/// and encoded once, not per run.
#[derive(Debug, Default)]
struct Statements {
    /// Rendered SQL (reused buffer).
    sql: String,
    known: Vec<(Box<str>, &'static str, Bytes)>,
}

impl Statements {
    /// The operation and encoded span attributes of `query`.
    fn of(&mut self, query: &dyn std::fmt::Display) -> (&'static str, Bytes) {
        render_sql(query, &mut self.sql);
        let sql = self.sql.trim();
        let found = self.known.iter().position(|(known, ..)| **known == *sql);
        let index = match found {
            Some(index) => index,
            None => {
                if self.known.len() >= KNOWN_STATEMENTS {
                    self.known.clear();
                }
                let operation = operation(sql);
                let attributes = fixed_attributes(&[
                    KeyValue::new("db.system", "postgresql"),
                    KeyValue::new("db.operation", operation),
                    KeyValue::new("db.statement", crate::telemetry::masked(sql)),
                ]);
                self.known.push((sql.into(), operation, attributes));
                self.known.len() - 1
            }
        };
        let (_, operation, attributes) = &self.known[index];
        (operation, attributes.clone())
    }
}

/// The SQL of `query` into `sql`, without the bound values (customer data) that diesel's
/// `Display` writes after it: the writer refuses everything from [`BINDS`] on, so they are
/// not even formatted.
fn render_sql(query: &dyn std::fmt::Display, sql: &mut String) {
    /// The text so far, and how many pieces it came in.
    struct UntilBinds<'a>(&'a mut String, usize);
    impl std::fmt::Write for UntilBinds<'_> {
        fn write_str(&mut self, text: &str) -> std::fmt::Result {
            self.1 += 1;
            if let Some(at) = find_binds(text) {
                self.0.push_str(&text[..at]);
                return Err(std::fmt::Error);
            }
            self.0.push_str(text);
            Ok(())
        }
    }
    sql.clear();
    let mut writer = UntilBinds(sql, 0);
    let _ = std::fmt::write(&mut writer, format_args!("{query}"));
    // Had the marker come in pieces, it is cut off here. The SQL a statement finishes with
    // (diesel-async's) comes in one piece: nothing to look at again.
    if writer.1 > 1
        && let Some(at) = find_binds(sql)
    {
        sql.truncate(at);
    }
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
        let mut of = |query| {
            let (operation, attributes) = statements.of(&Query(query));
            // The attributes as a span's repeated field: (db.system, db.operation,
            // db.statement).
            use prost::Message;
            let span = opentelemetry_proto::tonic::trace::v1::Span::decode(attributes).unwrap();
            let values: Vec<(String, String)> = span
                .attributes
                .into_iter()
                .map(|kv| {
                    let Some(
                        opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(text),
                    ) = kv.value.and_then(|v| v.value)
                    else {
                        panic!("{}", kv.key)
                    };
                    (kv.key, text)
                })
                .collect();
            assert_eq!(values[0], ("db.system".into(), "postgresql".into()));
            assert_eq!(values[1], ("db.operation".into(), operation.into()));
            assert_eq!(values[2].0, "db.statement");
            (operation, values[2].1.clone())
        };
        assert_eq!(of(select), ("SELECT", select.to_owned()));
        assert_eq!(of(" BEGIN "), ("BEGIN", "BEGIN".to_owned()));
        assert_eq!(of(select), ("SELECT", select.to_owned()));
        // Text in the SQL itself is masked.
        assert_eq!(
            of("SELECT 'jane.doe@example.com'"),
            ("SELECT", "SELECT 'j***@example.com'".to_owned())
        );
        assert_eq!(statements.known.len(), 3);
        for n in 0..KNOWN_STATEMENTS {
            statements.of(&Query(Box::leak(format!("SELECT {n}").into_boxed_str())));
        }
        assert!(statements.known.len() <= KNOWN_STATEMENTS);
    }

    /// Displays its SQL, then the binds marker in two pieces, then the values.
    struct Split(&'static str);
    impl std::fmt::Display for Split {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)?;
            f.write_str(&BINDS[..5])?;
            f.write_str(&BINDS[5..])?;
            f.write_str("[\"jane@example.com\"]")
        }
    }

    #[test]
    fn binds_are_cut_off_in_one_piece_or_several() {
        let mut sql = String::new();
        for query in [
            &Query("SELECT $1") as &dyn std::fmt::Display,
            &Split("SELECT $1"),
            &"SELECT $1",
        ] {
            render_sql(query, &mut sql);
            assert_eq!(sql, "SELECT $1");
        }
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
