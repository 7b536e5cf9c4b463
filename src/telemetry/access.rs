//! The access line's own formatter: every request writes one (`crate::observe`), so it is
//! the one line whose cost counts per call.
//!
//! [`AccessLines`] formats events of target [`TARGET`] itself, byte for byte as
//! `tracing-subscriber`'s text (`Full`) or flattened JSON format would (tested against them),
//! and hands every other event to that formatter. The generic path asks a `dyn Visit` to
//! `Debug`-format each value through `core::fmt` and paints each field name (a no-op style
//! without colours, still a formatter call): about 20k instructions per access line, against
//! a few thousand here, where the timestamp's digits, the numbers and the plain strings are
//! written directly into one reused buffer.
//!
//! **Masking.** Every string value of the line goes through [`mask_pii`] as it is written
//! (numbers are the server's own, and so are three strings: the trace id, the transport's
//! and the gRPC code's names), and the finished line is kept in [`LINE`]: the masking
//! writer ([`super::RedactingWriter`]) passes a line identical to it on without scanning it a
//! second time. Anything else still gets the whole-line scan. Masking each value gives the
//! same result as masking the whole line: the values are quoted, and neither an email
//! address nor a phone number can run across a quote.
//!
//! Lines in colour (a terminal), events inside a span the log layer records, and fields this
//! formatter does not know how to write exactly (a `message`, an error, a `Debug` value, an
//! unusual number) go to the generic formatter.

use std::{
    cell::RefCell,
    fmt::{self, Write as _},
    time::{SystemTime, UNIX_EPOCH},
};

use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::{
    fmt::{FmtContext, FormatEvent, FormatFields, format::Writer},
    registry::LookupSpan,
};

use crate::redact::mask_pii;

/// The target of access-log events.
pub const TARGET: &str = "access";

thread_local! {
    /// The last access line formatted on this thread (already masked).
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Whether `bytes` is the access line just formatted on this thread, which needs no second
/// masking pass. A match is consumed.
pub(super) fn is_masked_line(bytes: &[u8]) -> bool {
    LINE.with(|line| {
        let Ok(mut line) = line.try_borrow_mut() else {
            return false;
        };
        let matched = !line.is_empty() && line.as_bytes() == bytes;
        if matched {
            line.clear();
        }
        matched
    })
}

/// An event formatter writing access lines itself and every other event through `inner`
/// (`tracing-subscriber`'s `Full` text format, or its JSON format with flattened fields).
#[derive(Debug)]
pub(super) struct AccessLines<F> {
    inner: F,
    json: bool,
}

impl<F> AccessLines<F> {
    /// Over the text formatter `inner`.
    pub(super) fn text(inner: F) -> Self {
        Self { inner, json: false }
    }

    /// Over the JSON formatter `inner` (with `flatten_event(true)`).
    pub(super) fn json(inner: F) -> Self {
        Self { inner, json: true }
    }
}

impl<S, N, F> FormatEvent<S, N> for AccessLines<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let own = event.metadata().target() == TARGET
            && !writer.has_ansi_escapes()
            && event.parent().is_none()
            && ctx.lookup_current().is_none();
        if own {
            let written = LINE.with(|line| {
                let Ok(mut line) = line.try_borrow_mut() else {
                    return None;
                };
                line.clear();
                if format_line(&mut line, event, self.json) {
                    Some(writer.write_str(&line))
                } else {
                    line.clear();
                    None
                }
            });
            if let Some(result) = written {
                return result;
            }
        }
        self.inner.format_event(ctx, writer, event)
    }
}

/// Writes `event` as one line into `line`; false if it has a field written only by the
/// generic formatter.
fn format_line(line: &mut String, event: &Event<'_>, json: bool) -> bool {
    let level = event.metadata().level().as_str();
    if json {
        line.push_str("{\"timestamp\":\"");
        push_timestamp(line, SystemTime::now());
        line.push_str("\",\"level\":\"");
        line.push_str(level);
        line.push('"');
    } else {
        push_timestamp(line, SystemTime::now());
        line.push(' ');
        // The text format pads the level to five characters.
        if level.len() < 5 {
            line.push(' ');
        }
        line.push_str(level);
        line.push(' ');
        line.push_str(event.metadata().target());
        line.push(':');
    }
    let mut fields = Fields {
        line,
        json,
        exact: true,
        written: 0,
    };
    event.record(&mut fields);
    if !fields.exact {
        return false;
    }
    if fields.written == 0 && !json {
        // `target: ` and no field.
        line.push(' ');
    }
    if json {
        line.push_str(",\"target\":");
        push_json_str(line, event.metadata().target());
        line.push('}');
    }
    line.push('\n');
    true
}

/// Writes each field as `tracing-subscriber`'s format would: ` name=value` (strings quoted
/// as by `Debug`) or `,"name":value`.
struct Fields<'a> {
    line: &'a mut String,
    json: bool,
    /// False once a field came that only the generic formatter writes exactly.
    exact: bool,
    /// Fields written so far.
    written: usize,
}

impl Fields<'_> {
    /// The separator and the field's name; false (and not exact) for a name the generic
    /// formatter treats specially.
    fn name(&mut self, field: &Field) -> bool {
        let name = field.name();
        if name == "message" || name.starts_with("r#") || name.starts_with("log.") {
            self.exact = false;
        }
        if !self.exact {
            return false;
        }
        if self.json {
            self.line.push(',');
            push_json_str(self.line, name);
            self.line.push(':');
        } else {
            self.line.push(' ');
            self.line.push_str(name);
            self.line.push('=');
        }
        self.written += 1;
        true
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.name(field) {
            // A trace id is 32 hex digits, checked or made here: nothing in it to mask (one of
            // decimal digits only would be masked as a phone number), so it is not scanned;
            // nor are the transport's and the gRPC code's names, the server's own words.
            let value = if matches!(field.name(), "trace_id" | "transport" | "grpc_code") {
                std::borrow::Cow::Borrowed(value)
            } else {
                mask_pii(value)
            };
            if self.json {
                push_json_str(self.line, &value);
            } else {
                push_debug_str(self.line, &value);
            }
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.name(field) {
            push_u64(self.line, value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.name(field) {
            if value < 0 {
                self.line.push('-');
            }
            push_u64(self.line, value.unsigned_abs());
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.name(field) {
            self.line.push_str(if value { "true" } else { "false" });
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // Only what the access line records, a duration in milliseconds with whole
        // microseconds, is written here.
        let thousandths = (value * 1e3).round();
        if value.is_sign_negative()
            || !(0.0..1e12).contains(&thousandths)
            || thousandths / 1e3 != value
        {
            self.exact = false;
        }
        if self.name(field) {
            push_thousandths(self.line, thousandths as u64);
        }
    }

    fn record_error(&mut self, _: &Field, _: &(dyn std::error::Error + 'static)) {
        self.exact = false;
    }

    fn record_debug(&mut self, _: &Field, _: &dyn fmt::Debug) {
        self.exact = false;
    }
}

/// `value` as decimal digits.
fn push_u64(line: &mut String, value: u64) {
    line.push_str(itoa::Buffer::new().format(value));
}

/// `thousandths / 1000` as the shortest decimal that reads back as the same `f64`, which is
/// what `Debug` and `serde_json` print for such a number below 10⁹: `12.0`, `0.5`, `1.234`.
fn push_thousandths(line: &mut String, thousandths: u64) {
    push_u64(line, thousandths / 1000);
    line.push('.');
    let mut fraction = thousandths % 1000;
    if fraction == 0 {
        line.push('0');
        return;
    }
    let mut width = 3;
    while fraction.is_multiple_of(10) {
        fraction /= 10;
        width -= 1;
    }
    let digits = [
        b'0' + (fraction / 100 % 10) as u8,
        b'0' + (fraction / 10 % 10) as u8,
        b'0' + (fraction % 10) as u8,
    ];
    line.push_str(std::str::from_utf8(&digits[3 - width..]).unwrap_or_default());
}

/// `value` quoted as `Debug` quotes a string: plain printable ASCII as is, anything else
/// through `Debug` itself.
fn push_debug_str(line: &mut String, value: &str) {
    // Plain JSON text is printable ASCII but for DEL, which `Debug` escapes.
    if gateway::json::is_plain(value.as_bytes()) && !value.as_bytes().contains(&0x7f) {
        line.push('"');
        line.push_str(value);
        line.push('"');
    } else {
        let _ = write!(line, "{value:?}");
    }
}

/// `value` as a JSON string, escaped as `serde_json` escapes it.
fn push_json_str(line: &mut String, value: &str) {
    if !gateway::json::needs_escape(value.as_bytes()) {
        line.push('"');
        line.push_str(value);
        line.push('"');
    } else {
        line.push_str(&serde_json::Value::from(value).to_string());
    }
}

/// `now` as `tracing-subscriber` writes times: RFC 3339 in UTC with microseconds,
/// `2026-12-06T01:45:23.083231Z`.
fn push_timestamp(line: &mut String, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs();
    let days = i64::try_from(seconds / 86_400).unwrap_or_default();
    let (year, month, day) = gateway::json::civil_from_days(days);
    let of_day = seconds % 86_400;
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut value: u64| {
        for i in (at..at + width).rev() {
            text[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    for (at, width, value) in [(0, 4, year), (5, 2, month), (8, 2, day)] {
        put(at, width, u64::try_from(value).unwrap_or_default());
    }
    put(11, 2, of_day / 3600);
    put(14, 2, of_day / 60 % 60);
    put(17, 2, of_day % 60);
    put(20, 6, u64::from(since.subsec_micros()));
    line.push_str(std::str::from_utf8(&text).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::LogFormat,
        telemetry::{MemoryLog, Redacting},
    };
    use tracing::Dispatch;
    use tracing_subscriber::{fmt, layer::SubscriberExt};

    /// What `log` writes with this formatter and with `tracing-subscriber`'s own (then
    /// masked), timestamps cut off.
    fn both(format: LogFormat, log: impl Fn()) -> (String, String) {
        let own = MemoryLog::default();
        let generic = MemoryLog::default();
        let layer = fmt::layer().with_ansi(false);
        let (own_dispatch, generic_dispatch) = match format {
            LogFormat::Text => (
                Dispatch::new(
                    tracing_subscriber::registry().with(
                        layer
                            .with_writer(Redacting::new(own.clone()))
                            .event_format(AccessLines::text(fmt::format())),
                    ),
                ),
                Dispatch::new(
                    tracing_subscriber::registry().with(
                        fmt::layer()
                            .with_ansi(false)
                            .with_writer(Redacting::new(generic.clone())),
                    ),
                ),
            ),
            LogFormat::Json => (
                Dispatch::new(
                    tracing_subscriber::registry().with(
                        layer
                            .json()
                            .with_writer(Redacting::new(own.clone()))
                            .event_format(AccessLines::json(
                                fmt::format().json().flatten_event(true),
                            )),
                    ),
                ),
                Dispatch::new(
                    tracing_subscriber::registry().with(
                        fmt::layer()
                            .json()
                            .flatten_event(true)
                            .with_writer(Redacting::new(generic.clone())),
                    ),
                ),
            ),
        };
        tracing::dispatcher::with_default(&own_dispatch, &log);
        tracing::dispatcher::with_default(&generic_dispatch, &log);
        // The timestamps differ: cut out (27 characters, after `{"timestamp":"` in JSON).
        let at = match format {
            LogFormat::Text => 0,
            LogFormat::Json => 14,
        };
        let cut = |text: String| -> String {
            text.lines()
                .map(|line| format!("{}{}", &line[..at], &line[at + 27..]))
                .collect::<Vec<_>>()
                .join("\n")
        };
        (cut(own.text()), cut(generic.text()))
    }

    #[test]
    fn the_trace_id_is_written_as_it_is_and_client_text_masked() {
        // Valid, and of decimal digits only.
        let trace_id = "40123456789012345678901234567890";
        for format in [LogFormat::Text, LogFormat::Json] {
            let (own, generic) = both(format, || {
                tracing::info!(
                    target: "access",
                    transport = "grpc",
                    request_id = "4930123456",
                    trace_id = Some(trace_id),
                );
            });
            assert!(own.contains(trace_id), "{own}");
            assert!(!own.contains("4930123456"), "{own}");
            // Masking the whole line takes an id of decimal digits only for a phone number.
            assert!(!generic.contains(trace_id), "{generic}");
        }
    }

    fn access_events() {
        for (caller, request_id, duration) in [
            (
                Some("bench"),
                "01a24906-f165-775e-b7e7-49a1969785f7",
                1573.793,
            ),
            (Some("jane.doe@example.com"), "4930123456", 0.5),
            (None, "a\"b\\c", 12.0),
            (Some("tab\there é ünï"), "+49 30 1234567", 0.001),
            (Some("x"), "y", 0.0),
            (Some("x"), "y", 123_456.78),
            // DEL (escaped by `Debug`, not by JSON), a control character, a long value.
            (Some("del\u{7f}"), "bell\u{7}", 2.0),
            (
                Some("a caller name longer than sixteen bytes"),
                "tail\u{7f}",
                3.0,
            ),
        ] {
            tracing::info!(
                target: "access",
                transport = "grpc",
                method = "POST",
                rpc = "/customer.v1.CustomerService/GetCustomer",
                grpc_code = "OK",
                http_status = 200_u16,
                duration_ms = duration,
                request_id,
                caller,
                bytes_in = 166_u64,
                bytes_out = 249_u64,
                trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736"),
            );
            tracing::warn!(
                target: "access",
                transport = "rest",
                method = "GET",
                route = "/v1/{name=customers/*}",
                http_status = 503_u16,
                duration_ms = duration,
                request_id,
                bytes_in = 0_u64,
                negative = -3_i64,
                flag = true,
            );
        }
        // Written by the generic formatter: a message, a Debug value, an odd number.
        tracing::debug!(target: "access", request_id = "m", "a message for jane@example.com");
        tracing::info!(target: "access", list = ?vec![1, 2], duration_ms = 1.0 / 3.0);
        tracing::info!(target: "customer_api", caller = "ada@example.org", "not an access line");
    }

    #[test]
    fn access_lines_are_written_as_the_generic_formats_write_them() {
        for format in [LogFormat::Text, LogFormat::Json] {
            let (own, generic) = both(format, access_events);
            assert_eq!(own.lines().count(), 19, "{own}");
            for (own, generic) in own.lines().zip(generic.lines()) {
                assert_eq!(own, generic, "{format:?}");
            }
            assert!(!own.contains("jane.doe@example.com"), "{own}");
            assert!(!own.contains("4930123456"), "{own}");
            assert!(own.contains("j***@example.com"), "{own}");
        }
    }

    #[test]
    fn timestamps_are_rfc_3339_with_microseconds() {
        for seconds in [
            0_u64,
            951_782_400,
            1_700_000_000,
            1_796_515_200,
            4_102_444_799,
        ] {
            for micros in [0_u32, 1, 999_999] {
                let time = UNIX_EPOCH
                    + std::time::Duration::from_secs(seconds)
                    + std::time::Duration::from_micros(u64::from(micros));
                let mut line = String::new();
                push_timestamp(&mut line, time);
                let expected = chrono::DateTime::<chrono::Utc>::from(time)
                    .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                    .to_string();
                assert_eq!(line, expected);
            }
        }
    }

    #[test]
    fn durations_print_as_debug_and_serde_json_print_them() {
        for micros in (0..20_000_u64).chain([999_999, 1_000_000, 123_456_789, 999_999_999_999]) {
            let value = micros as f64 / 1e3;
            let mut fields = String::new();
            push_thousandths(&mut fields, micros);
            assert_eq!(fields, format!("{value:?}"), "{micros}");
            assert_eq!(fields, serde_json::to_string(&value).unwrap(), "{micros}");
        }
    }

    #[test]
    fn the_masking_writer_skips_only_the_line_just_formatted() {
        LINE.with_borrow_mut(|line| {
            line.clear();
            line.push_str("line\n");
        });
        assert!(!is_masked_line(b"other\n"));
        assert!(is_masked_line(b"line\n"));
        // Consumed.
        assert!(!is_masked_line(b"line\n"));
    }
}
