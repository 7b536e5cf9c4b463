//! Logging and tracing: `tracing` to stderr, as text for humans or JSON for log shippers,
//! filtered by `RUST_LOG` (default `info`); and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set,
//! OpenTelemetry traces exported over OTLP (gRPC or HTTP/protobuf).
//!
//! Every formatted line passes through [`mask_pii`] on its way out ([`Redacting`] wraps the
//! writer), so an email address or phone number that reaches a log line — as a field, inside
//! an error's text, in a filter a client sent — is written masked, whatever the format and
//! whoever logged it (this crate, the gateway, a dependency). The access line, one per
//! request, has a formatter of its own that masks each of its string values as it writes
//! them instead (`access`: the same result, at a fraction of the cost).
//!
//! **Logs are `tracing` events, spans are OpenTelemetry's.** The log layer takes events only
//! (`RUST_LOG`). Spans are the OpenTelemetry API's, recorded by our own tracer ([`span`])
//! as OTLP bytes and sent in batches by our own exporter ([`otlp`]); the subscriber only
//! carries the tracer ([`span::TracerLayer`], a layer that takes nothing). Without an
//! endpoint there is no tracer: a request pays one look for it, and no span, attribute or
//! context is made. Span attributes that carry client text (the request id, the caller, SQL)
//! go through [`mask_pii`] like log lines ([`masked`]).
//!
//! Trace context is W3C (`traceparent`, `tracestate`): [`extract`] reads it from incoming
//! headers, [`inject`] writes a span's into outgoing ones, [`traceparent`] gives the current
//! operation's as text (the outbox stores it with each event).
//!
//! [`Telemetry`] builds the subscriber over any writer, so tests can capture exactly what
//! production would write and export.

use std::{
    io::{self, Write},
    time::Duration,
};

use opentelemetry::{Context, KeyValue, propagation::TextMapPropagator};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::{Dispatch, Metadata, dispatcher::SetGlobalDefaultError};
use tracing_subscriber::{
    EnvFilter, Layer,
    filter::{FilterExt, LevelFilter, filter_fn},
    fmt::{self, MakeWriter},
    layer::SubscriberExt,
};

use crate::{
    config::{LogFormat, OtlpProtocol, TracesSampler, TracingSettings},
    redact::mask_pii,
};

mod access;
mod otlp;
pub mod span;
use access::AccessLines;

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A setting is unusable.
    #[error("tracing: {0}")]
    Config(String),
    /// A global subscriber is already installed.
    #[error(transparent)]
    Installed(#[from] SetGlobalDefaultError),
}

/// The subscriber of a process (logs, and traces when configured) and the trace exporter
/// behind it, to flush and shut down.
#[derive(Debug)]
pub struct Telemetry {
    dispatch: Dispatch,
    exporter: Option<otlp::Exporter>,
}

impl Telemetry {
    /// Logs in `format` to `writer` (masked), filtered by `filter`; traces as `tracing` says
    /// (none unless it names an endpoint). Installs nothing.
    pub fn new<W>(
        format: LogFormat,
        filter: EnvFilter,
        writer: W,
        tracing: &TracingSettings,
    ) -> Result<Self, TelemetryError>
    where
        W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        Self::build(format, filter, writer, tracing, None)
    }

    /// [`Telemetry::new`]; `ansi` colours text lines or not (`None`: `tracing-subscriber`'s
    /// default, colours unless `NO_COLOR` is set).
    fn build<W>(
        format: LogFormat,
        filter: EnvFilter,
        writer: W,
        tracing: &TracingSettings,
        ansi: Option<bool>,
    ) -> Result<Self, TelemetryError>
    where
        W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        let traces = tracing.enabled().then(|| tracer(tracing)).transpose()?;
        let logs = fmt::layer().with_writer(Redacting::new(writer));
        let logs = match ansi {
            Some(ansi) => logs.with_ansi(ansi),
            None => logs,
        };
        // Access lines by their own formatter (`access`), every other event as
        // `tracing-subscriber` formats it.
        let logs = match format {
            LogFormat::Text => logs.event_format(AccessLines::text(fmt::format())).boxed(),
            LogFormat::Json => logs
                .json()
                .event_format(AccessLines::json(fmt::format().json().flatten_event(true)))
                .boxed(),
        };
        // The event test carries the filter's level: a per-layer filter without a maximum
        // level makes the whole subscriber's maximum TRACE, and then every `debug!`/`trace!`
        // of every dependency (h2 has several per frame) is asked for instead of being
        // skipped by the one static level comparison.
        let max = filter.max_level_hint().unwrap_or(LevelFilter::TRACE);
        let events =
            filter_fn(move |meta| meta.is_event() && *meta.level() <= max).with_max_level_hint(max);
        let logs = logs.with_filter(events.and(filter));
        let logged = tracing_subscriber::registry().with(logs);
        // Two subscriber types rather than an `Option` layer: a `None` layer would still
        // make every span look wanted. The tracer's layer wants nothing (its filter says no
        // to every span and event): it is there to be found (`span::tracer`).
        let (dispatch, exporter) = match traces {
            None => (Dispatch::new(logged), None),
            Some((tracer, exporter)) => (
                Dispatch::new(
                    logged.with(span::TracerLayer { tracer }.with_filter(filter_fn(|_| false))),
                ),
                Some(exporter),
            ),
        };
        Ok(Self { dispatch, exporter })
    }

    /// The subscriber, not installed (tests scope it to their threads).
    pub fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }

    /// Installs the subscriber for the whole process.
    pub fn install(&self) -> Result<(), TelemetryError> {
        tracing::dispatcher::set_global_default(self.dispatch.clone())?;
        Ok(())
    }

    /// Exports every finished span now (blocks until the exporter answered).
    pub fn force_flush(&self) {
        if let Some(exporter) = &self.exporter {
            exporter.force_flush();
        }
    }

    /// Exports what is left and stops the exporter (at exit).
    pub fn shutdown(&self) {
        if let Some(exporter) = &self.exporter {
            exporter.shutdown(Duration::from_secs(5));
        }
    }
}

/// Installs the process's subscriber: `RUST_LOG` (default `info`), stderr (text coloured
/// only on a terminal), and traces per `tracing`. Returns it for flushing at exit.
pub fn init(format: LogFormat, tracing: &TracingSettings) -> Result<Telemetry, TelemetryError> {
    // Colours only for a person at a terminal: escape codes in a file or a log collector's
    // pipe are noise, and styling every field name was a third of an access line's cost.
    use std::io::IsTerminal;
    let ansi =
        io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let telemetry = Telemetry::build(format, env_filter(), io::stderr, tracing, Some(ansi))?;
    telemetry.install()?;
    Ok(telemetry)
}

/// `RUST_LOG`, or `info` when it is unset or invalid.
pub fn env_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// The log subscriber over `writer` and `filter` (no traces), not installed: for tests
/// (scoped with `tracing::dispatcher::set_default`) and embedders. Every line is masked.
pub fn dispatch<W>(format: LogFormat, filter: EnvFilter, writer: W) -> Dispatch
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    match Telemetry::new(format, filter, writer, &TracingSettings::off()) {
        Ok(telemetry) => telemetry.dispatch,
        // Without an endpoint nothing can fail.
        Err(_) => Dispatch::none(),
    }
}

/// The tracer (the sampler) and the OTLP exporter its spans are queued for
/// ([`otlp::Exporter`]; its requests run on the current Tokio runtime).
fn tracer(settings: &TracingSettings) -> Result<(span::Tracer, otlp::Exporter), TelemetryError> {
    let endpoint = settings.otlp_endpoint.as_deref().unwrap_or_default().trim();
    let https = endpoint.starts_with("https://");
    if !https && !endpoint.starts_with("http://") {
        return Err(TelemetryError::Config(format!(
            "OTEL_EXPORTER_OTLP_ENDPOINT must be an http:// or https:// URL, not `{endpoint}`"
        )));
    }
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| TelemetryError::Config("the OTLP exporter needs a Tokio runtime".into()))?;
    let invalid = |e: &dyn std::fmt::Display| {
        TelemetryError::Config(format!("OTEL_EXPORTER_OTLP_ENDPOINT `{endpoint}`: {e}"))
    };
    let transport = match settings.otlp_protocol {
        OtlpProtocol::Grpc => {
            let mut channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
                .map_err(|e| invalid(&e))?;
            if https {
                channel = channel
                    .tls_config(tonic::transport::ClientTlsConfig::new().with_webpki_roots())
                    .map_err(|e| invalid(&e))?;
            }
            otlp::Transport::Grpc(channel.connect_lazy())
        }
        OtlpProtocol::HttpProtobuf => otlp::Transport::Http {
            client: crate::http_client::HttpClient::new()
                .map_err(|e| TelemetryError::Config(e.to_string()))?,
            url: format!("{}/v1/traces", endpoint.trim_end_matches('/'))
                .parse()
                .map_err(|e| invalid(&e))?,
        },
    };
    let exporter = otlp::Exporter::start(
        transport,
        runtime,
        &resource(settings)?,
        otlp_headers()?,
        otlp_timeout()?,
        otlp::Batching::from_env(),
    )
    .map_err(|e| TelemetryError::Config(format!("starting the trace exporter: {e}")))?;
    let ratio = settings.traces_sampler_arg.unwrap_or(1.0);
    let (parent_based, root) = match settings.traces_sampler {
        TracesSampler::AlwaysOn => (false, span::Root::On),
        TracesSampler::AlwaysOff => (false, span::Root::Off),
        TracesSampler::Traceidratio => (false, span::Root::Ratio(ratio)),
        TracesSampler::ParentbasedAlwaysOn => (true, span::Root::On),
        TracesSampler::ParentbasedAlwaysOff => (true, span::Root::Off),
        TracesSampler::ParentbasedTraceidratio => (true, span::Root::Ratio(ratio)),
    };
    let tracer = span::Tracer::new(span::Sampler { parent_based, root }, exporter.queue());
    Ok((tracer, exporter))
}

/// The headers sent with every export (a collector's API key, a tenant):
/// `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, else `OTEL_EXPORTER_OTLP_HEADERS`, as the OTLP
/// exporter specification has them (`key=value,…`, values percent-decoded). Read from the
/// environment like the SDK's own variables, never logged.
fn otlp_headers() -> Result<http::HeaderMap, TelemetryError> {
    let text = std::env::var("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_HEADERS"))
        .unwrap_or_default();
    parse_otlp_headers(&text)
}

fn parse_otlp_headers(text: &str) -> Result<http::HeaderMap, TelemetryError> {
    let mut headers = http::HeaderMap::new();
    for pair in text
        .split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
    {
        let invalid = || {
            // The value may be a secret: only the key is named.
            let key = pair.split_once('=').map_or("", |(key, _)| key.trim());
            TelemetryError::Config(format!(
                "OTEL_EXPORTER_OTLP_HEADERS: `{key}` is not a valid key=value header"
            ))
        };
        let (key, value) = pair.split_once('=').ok_or_else(invalid)?;
        let value = percent_encoding::percent_decode_str(value.trim()).decode_utf8_lossy();
        let name = http::HeaderName::from_bytes(key.trim().to_ascii_lowercase().as_bytes())
            .map_err(|_| invalid())?;
        let mut value = http::HeaderValue::from_str(&value).map_err(|_| invalid())?;
        value.set_sensitive(true);
        headers.append(name, value);
    }
    Ok(headers)
}

/// The time allowed for one export: `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else
/// `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds), else 10 s.
fn otlp_timeout() -> Result<Duration, TelemetryError> {
    let Ok(text) = std::env::var("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_TIMEOUT"))
    else {
        return Ok(otlp::TIMEOUT);
    };
    text.trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| {
            TelemetryError::Config(format!(
                "OTEL_EXPORTER_OTLP_TIMEOUT: `{text}` is not a number of milliseconds"
            ))
        })
}

/// `OTEL_RESOURCE_ATTRIBUTES`, `service.version` and `service.name` (built here, not by
/// environment detectors, so the settings alone decide); a key given twice keeps its last
/// value, and `service.name` is the setting's.
fn resource(settings: &TracingSettings) -> Result<Vec<KeyValue>, TelemetryError> {
    let mut attributes: Vec<KeyValue> = Vec::new();
    let mut set = |attribute: KeyValue| {
        attributes.retain(|known| known.key != attribute.key);
        attributes.push(attribute);
    };
    for pair in settings
        .resource_attributes
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
    {
        let (key, value) = pair.split_once('=').ok_or_else(|| {
            TelemetryError::Config(format!(
                "OTEL_RESOURCE_ATTRIBUTES: `{pair}` is not a key=value pair"
            ))
        })?;
        let value = percent_encoding::percent_decode_str(value.trim())
            .decode_utf8_lossy()
            .into_owned();
        set(KeyValue::new(key.trim().to_owned(), value));
    }
    set(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    set(KeyValue::new("service.name", settings.service_name.clone()));
    Ok(attributes)
}

/// The W3C trace context of `headers` (`traceparent`, `tracestate`): the caller's span,
/// to continue its trace.
pub fn extract(headers: &http::HeaderMap) -> Context {
    // Most calls carry none: a constant name is looked up without parsing it, and there is
    // then no caller's context to copy.
    const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
    if !headers.contains_key(TRACEPARENT) {
        return Context::new();
    }
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Writes the trace context of `cx` into `headers` (`traceparent`, `tracestate`).
pub fn inject(cx: &Context, headers: &mut http::HeaderMap) {
    TraceContextPropagator::new().inject_context(cx, &mut HeaderInjector(headers));
}

/// The `traceparent` of the current traced operation (a request's server span), if any.
pub fn traceparent() -> Option<String> {
    span::traceparent()
}

/// Client text as a span attribute: masked like log lines.
pub fn masked(text: &str) -> String {
    mask_pii(text).into_owned()
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
            if access::is_masked_line(buf) {
                // An access line, its values masked as it was formatted.
                self.inner.write_all(buf)?;
            } else {
                self.emit(buf)?;
            }
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

/// An in-memory log sink shared by every thread: what [`dispatch`] writes, kept for the tests
/// (this crate's and the integration tests') to read back exactly as production writes it.
#[derive(Clone, Default)]
pub struct MemoryLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl MemoryLog {
    /// Everything written so far.
    pub fn text(&self) -> String {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Write for MemoryLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for MemoryLog {
    type Writer = MemoryLog;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(format: LogFormat, ansi: bool) -> String {
        let capture = MemoryLog::default();
        let subscriber = fmt::fmt()
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
    fn without_an_endpoint_no_span_is_recorded() {
        // Other tests' subscribers want every span, and tracing caches a callsite's interest
        // across the dispatchers alive: one that wants nothing keeps it at "ask the default"
        // (as in tests/api/capture.rs).
        let _pinned = Dispatch::new(tracing::subscriber::NoSubscriber::default());
        let dispatch = dispatch(
            LogFormat::Json,
            EnvFilter::new("trace"),
            MemoryLog::default(),
        );
        tracing::dispatcher::with_default(&dispatch, || {
            let span = tracing::info_span!(target: "customer_api::observe", "request");
            assert!(span.is_disabled());
            assert!(span::tracer().is_none());
            assert!(!span::active());
            assert!(span::child("x", opentelemetry::trace::SpanKind::Internal, Vec::new).is_none());
            assert_eq!(traceparent(), None);
            // Logs still flow.
            assert!(tracing::event_enabled!(target: "customer_api", tracing::Level::INFO));
        });
    }

    #[test]
    fn json_lines_stay_valid_json() {
        for line in log_with(LogFormat::Json, false).lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(value.get("level").is_some(), "{line}");
        }
    }

    #[test]
    fn otlp_headers_are_key_value_pairs_with_percent_encoded_values() {
        let headers =
            parse_otlp_headers(" api-key = secret%20one ,X-Tenant=acme,x-tenant=b%2Cc ").unwrap();
        assert_eq!(headers["api-key"], "secret one");
        assert!(headers["api-key"].is_sensitive());
        let tenants: Vec<_> = headers.get_all("x-tenant").iter().collect();
        assert_eq!(tenants, ["acme", "b,c"]);
        assert!(parse_otlp_headers("").unwrap().is_empty());
        for bad in ["novalue", "bad key=x", "k=line%0Abreak"] {
            let error = parse_otlp_headers(bad).unwrap_err().to_string();
            assert!(!error.contains("break"), "{error}");
        }
    }

    #[test]
    fn partial_writes_are_masked_whole() {
        let capture = MemoryLog::default();
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
