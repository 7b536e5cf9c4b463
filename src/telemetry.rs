//! Logging: `tracing` to stderr, as text for humans or JSON for log shippers, filtered by
//! `RUST_LOG` (default `info`).
//!
//! Every formatted line passes through [`mask_pii`] on its way out ([`Redacting`] wraps the
//! writer), so an email address or phone number that reaches a log line — as a field, inside
//! an error's text, in a filter a client sent — is written masked, whatever the format and
//! whoever logged it (this crate, the gateway, a dependency).
//!
//! [`dispatch`] builds the subscriber over any writer, so tests can capture exactly what
//! production would write.

use std::io::{self, Write};

use tracing::{Dispatch, Metadata, dispatcher::SetGlobalDefaultError};
use tracing_subscriber::{EnvFilter, fmt, fmt::MakeWriter};

use crate::{config::LogFormat, redact::mask_pii};

/// Installs the global subscriber: `RUST_LOG` (default `info`), stderr. Safe to call more
/// than once (later calls are no-ops).
pub fn init(format: LogFormat) {
    let _ = init_with_writer(format, io::stderr);
}

/// Installs the global subscriber writing to `writer` (through [`Redacting`]), filtered by
/// `RUST_LOG` (default `info`). Fails if a global subscriber is already set.
pub fn init_with_writer<W>(format: LogFormat, writer: W) -> Result<(), SetGlobalDefaultError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing::dispatcher::set_global_default(dispatch(format, env_filter(), writer))
}

/// `RUST_LOG`, or `info` when it is unset or invalid.
pub fn env_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// The subscriber `init` installs, over `writer` and `filter`, not installed: for tests
/// (scoped with `tracing::dispatcher::set_default`) and embedders. Every line is masked.
pub fn dispatch<W>(format: LogFormat, filter: EnvFilter, writer: W) -> Dispatch
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(Redacting::new(writer));
    match format {
        LogFormat::Text => Dispatch::new(builder.finish()),
        LogFormat::Json => Dispatch::new(builder.json().flatten_event(true).finish()),
    }
}

/// A [`MakeWriter`] whose writers pass every formatted line through [`mask_pii`] before
/// handing it to the wrapped writer.
#[derive(Debug, Clone, Default)]
pub struct Redacting<M> {
    inner: M,
}

impl<M> Redacting<M> {
    /// Masks what `inner`'s writers receive.
    pub fn new(inner: M) -> Self {
        Self { inner }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter::new(self.inner.make_writer())
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        RedactingWriter::new(self.inner.make_writer_for(meta))
    }
}

/// The writer of [`Redacting`]: masks whole lines.
///
/// `tracing-subscriber` formats an event into one buffer and writes it with one `write_all`
/// to a fresh writer, so the usual case is one complete line per `write`: it is masked and
/// passed on without copying (and without allocating when there is nothing to mask). Anything
/// else is buffered until a newline, `flush` or drop, so a value split across writes is still
/// seen whole.
#[derive(Debug)]
pub struct RedactingWriter<W: Write> {
    inner: W,
    pending: Vec<u8>,
}

impl<W: Write> RedactingWriter<W> {
    /// Masks what is written before passing it to `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            pending: Vec::new(),
        }
    }

    fn emit(&mut self, bytes: &[u8]) -> io::Result<()> {
        match std::str::from_utf8(bytes) {
            Ok(text) => self.inner.write_all(mask_pii(text).as_bytes()),
            Err(_) => {
                let text = String::from_utf8_lossy(bytes);
                self.inner.write_all(mask_pii(&text).as_bytes())
            }
        }
    }

    fn emit_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        self.emit(&pending)
    }
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.pending.is_empty() && buf.ends_with(b"\n") {
            self.emit(buf)?;
        } else {
            self.pending.extend_from_slice(buf);
            if self.pending.ends_with(b"\n") {
                self.emit_pending()?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.emit_pending()?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        let _ = self.emit_pending();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// An in-memory log sink.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Capture {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn log_with(format: LogFormat, ansi: bool) -> String {
        let capture = Capture::default();
        let subscriber = fmt()
            .with_env_filter(EnvFilter::new("debug"))
            .with_ansi(ansi)
            .with_writer(Redacting::new(capture.clone()));
        let dispatch = match format {
            LogFormat::Text => Dispatch::new(subscriber.finish()),
            LogFormat::Json => Dispatch::new(subscriber.json().flatten_event(true).finish()),
        };
        tracing::dispatcher::with_default(&dispatch, || {
            let span = tracing::info_span!("create", email = "span.user@example.com");
            let _entered = span.enter();
            tracing::debug!(
                email = "jane.doe@example.com",
                phone = ?Some("+4930123456"),
                name = "customers/0190a7b2-8c1e-7c1a-9d2e-1f2a3b4c5d6e",
                "created customer for jane.doe@example.com, call 4930123456"
            );
            tracing::error!(error = %"address: invalid type: string \"x.y@example.org\"", "internal error");
        });
        capture.text()
    }

    #[test]
    fn every_format_writes_masked_lines() {
        for (format, ansi) in [
            (LogFormat::Text, false),
            (LogFormat::Text, true),
            (LogFormat::Json, false),
        ] {
            let out = log_with(format, ansi);
            for raw in [
                "jane.doe@example.com",
                "span.user@example.com",
                "x.y@example.org",
                "4930123456",
            ] {
                assert!(!out.contains(raw), "{format:?} ansi={ansi}: {raw} in {out}");
            }
            for masked in [
                "j***@example.com",
                "s***@example.com",
                "x***@example.org",
                "+*******56",
                "call *******56",
                "customers/0190a7b2-8c1e-7c1a-9d2e-1f2a3b4c5d6e",
            ] {
                assert!(
                    out.contains(masked),
                    "{format:?} ansi={ansi}: no {masked} in {out}"
                );
            }
            assert_eq!(out.lines().count(), 2, "{out}");
        }
    }

    #[test]
    fn json_lines_stay_valid_json() {
        for line in log_with(LogFormat::Json, false).lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(value.get("level").is_some(), "{line}");
        }
    }

    #[test]
    fn partial_writes_are_masked_whole() {
        let capture = Capture::default();
        {
            let mut writer = RedactingWriter::new(capture.clone());
            writer.write_all(b"to jane.d").unwrap();
            writer.write_all(b"oe@example.com and +49301").unwrap();
            writer.write_all(b"23456").unwrap();
            writer.flush().unwrap();
            writer.write_all(b"tail ada@example.org").unwrap();
        }
        assert_eq!(
            capture.text(),
            "to j***@example.com and +*******56tail a***@example.org"
        );
    }
}
