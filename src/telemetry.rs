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
//! **Two layers, each with its own filter.** The log layer takes events only (`RUST_LOG`);
//! the trace layer ([`tracing_opentelemetry`]) takes this crate's spans only, never events
//! (which may quote request data) nor dependencies' spans. Without an endpoint there is no
//! trace layer at all: no layer wants a span, so every span macro of this crate costs one
//! cached interest check, and the code that would prepare a span's attributes checks
//! [`tracing::Span::is_disabled`] first. Span attributes that carry client text (the request
//! id, the caller) go through [`mask_pii`] like log lines ([`masked`]).
//!
//! Trace context is W3C (`traceparent`, `tracestate`): [`extract`] reads it from incoming
//! headers, [`inject`] writes the current span's into outgoing ones, [`traceparent`] gives it
//! as text (the outbox stores it with each event).
//!
//! [`Telemetry`] builds the subscriber over any writer, so tests can capture exactly what
//! production would write and export.

use std::{
    io::{self, Write},
    time::Duration,
};

use opentelemetry::{
    Context, KeyValue,
    propagation::TextMapPropagator,
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{Sampler, SdkTracerProvider},
};
use tracing::{Dispatch, Metadata, dispatcher::SetGlobalDefaultError};
use tracing_opentelemetry::OpenTelemetrySpanExt;
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
use access::AccessLines;

/// A span exported as an OpenTelemetry span of `kind` (`"server"`, `"client"`,
/// `"producer"`): `otel.name` and `otel.status_code` are recorded once known, then come the
/// span's own attributes. Disabled (one interest check) when no trace layer is installed.
macro_rules! otel_span {
    (target: $target:literal, $(parent: $parent:expr,)? $name:literal, $kind:literal, $($fields:tt)*) => {
        tracing::info_span!(
            target: $target,
            $(parent: $parent,)?
            $name,
            otel.name = tracing::field::Empty,
            otel.kind = $kind,
            otel.status_code = tracing::field::Empty,
            $($fields)*
        )
    };
}
pub(crate) use otel_span;

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A setting is unusable.
    #[error("tracing: {0}")]
    Config(String),
    /// The exporter could not be built.
    #[error("tracing: OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// A global subscriber is already installed.
    #[error(transparent)]
    Installed(#[from] SetGlobalDefaultError),
}

/// The subscriber of a process (logs, and traces when configured) and the trace exporter
/// behind it, to flush and shut down.
#[derive(Debug)]
pub struct Telemetry {
    dispatch: Dispatch,
    provider: Option<SdkTracerProvider>,
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
        let provider = tracing
            .enabled()
            .then(|| tracer_provider(tracing))
            .transpose()?;
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
        // make every span look wanted.
        let dispatch = match &provider {
            None => Dispatch::new(logged),
            Some(provider) => Dispatch::new(
                logged.with(
                    tracing_opentelemetry::layer()
                        .with_tracer(provider.tracer("customer-api"))
                        .with_tracked_inactivity(false)
                        .with_threads(false)
                        .with_location(false)
                        // Neither is read: parents are found through the span tree
                        // (`span.context()` where a context is needed), so entering and
                        // leaving a span need not attach an OpenTelemetry context each time;
                        // the tracing target is no OpenTelemetry attribute.
                        .with_context_activation(false)
                        .with_target(false)
                        .with_filter(
                            filter_fn(|meta| {
                                meta.is_span()
                                    && *meta.level() <= tracing::Level::INFO
                                    && meta.target().starts_with("customer_api")
                            })
                            // This crate's spans are all INFO (`otel_span!`, `info_span!`).
                            .with_max_level_hint(LevelFilter::INFO),
                        ),
                ),
            ),
        };
        Ok(Self { dispatch, provider })
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
        if let Some(provider) = &self.provider
            && let Err(error) = provider.force_flush()
        {
            tracing::warn!(%error, "flushing traces failed");
        }
    }

    /// Exports what is left and stops the exporter (at exit).
    pub fn shutdown(&self) {
        if let Some(provider) = &self.provider
            && let Err(error) = provider.shutdown_with_timeout(Duration::from_secs(5))
        {
            tracing::warn!(%error, "shutting tracing down failed");
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

/// The tracer provider: the sampler, the resource and a batching OTLP exporter.
fn tracer_provider(settings: &TracingSettings) -> Result<SdkTracerProvider, TelemetryError> {
    let endpoint = settings.otlp_endpoint.as_deref().unwrap_or_default().trim();
    let https = endpoint.starts_with("https://");
    if !https && !endpoint.starts_with("http://") {
        return Err(TelemetryError::Config(format!(
            "OTEL_EXPORTER_OTLP_ENDPOINT must be an http:// or https:// URL, not `{endpoint}`"
        )));
    }
    let exporter = match settings.otlp_protocol {
        OtlpProtocol::Grpc => {
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint);
            if https {
                builder = builder.with_tls_config(
                    opentelemetry_otlp::tonic_types::transport::ClientTlsConfig::new()
                        .with_webpki_roots(),
                );
            }
            builder.build()?
        }
        OtlpProtocol::HttpProtobuf => {
            let client = OtlpHttpClient::new()?;
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_http_client(client)
                .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
                .build()?
        }
    };
    let ratio = settings.traces_sampler_arg.unwrap_or(1.0);
    let sampler = match settings.traces_sampler {
        TracesSampler::AlwaysOn => Sampler::AlwaysOn,
        TracesSampler::AlwaysOff => Sampler::AlwaysOff,
        TracesSampler::Traceidratio => Sampler::TraceIdRatioBased(ratio),
        TracesSampler::ParentbasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        TracesSampler::ParentbasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        TracesSampler::ParentbasedTraceidratio => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
        }
    };
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(resource(settings)?)
        .build())
}

/// `service.name` and `service.version`, and `OTEL_RESOURCE_ATTRIBUTES` (built here, not by
/// the SDK's environment detectors, so the settings alone decide).
fn resource(settings: &TracingSettings) -> Result<Resource, TelemetryError> {
    let mut attributes = Vec::new();
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
        attributes.push(KeyValue::new(key.trim().to_owned(), value));
    }
    Ok(Resource::builder_empty()
        .with_attributes(attributes)
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .with_service_name(settings.service_name.clone())
        .build())
}

/// OTLP/HTTP over [`crate::http_client::HttpClient`] (TLS with Mozilla's roots). The batch
/// exporter runs on a thread of its own, outside the runtime; each request is run on the
/// runtime that built the client.
#[derive(Debug, Clone)]
struct OtlpHttpClient {
    http: crate::http_client::HttpClient,
    runtime: tokio::runtime::Handle,
}

/// Largest collector answer read.
const MAX_OTLP_RESPONSE_BYTES: usize = 1024 * 1024;
/// Time allowed for one export request.
const OTLP_TIMEOUT: Duration = Duration::from_secs(10);

impl OtlpHttpClient {
    fn new() -> Result<Self, TelemetryError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            TelemetryError::Config("the OTLP/HTTP exporter needs a Tokio runtime".into())
        })?;
        let http = crate::http_client::HttpClient::new()
            .map_err(|e| TelemetryError::Config(e.to_string()))?;
        Ok(Self { http, runtime })
    }
}

#[tonic::async_trait]
impl opentelemetry_http::HttpClient for OtlpHttpClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let http = self.http.clone();
        let (parts, body) = request.into_parts();
        let sent = self.runtime.spawn(async move {
            tokio::time::timeout(
                OTLP_TIMEOUT,
                http.send(
                    parts.method,
                    &parts.uri,
                    &parts.headers,
                    body,
                    MAX_OTLP_RESPONSE_BYTES,
                ),
            )
            .await
        });
        let response = sent
            .await?
            .map_err(|_| format!("no answer within {OTLP_TIMEOUT:?}"))??;
        let mut answer = http::Response::new(response.body);
        *answer.status_mut() = response.status;
        Ok(answer)
    }
}

/// The W3C trace context of `headers` (`traceparent`, `tracestate`): the caller's span,
/// to continue its trace.
pub fn extract(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Writes the trace context of `span` into `headers` (`traceparent`, `tracestate`).
pub fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
    TraceContextPropagator::new().inject_context(&span.context(), &mut HeaderInjector(headers));
}

/// The current span's `traceparent`, when it is being recorded.
pub fn traceparent() -> Option<String> {
    let span = tracing::Span::current();
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

/// The trace id of `span`, when it is recorded (32 lower-case hex digits).
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = String::with_capacity(32);
        for byte in span_context.trace_id().to_bytes() {
            text.push(char::from(HEX[usize::from(byte >> 4)]));
            text.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        text
    })
}

/// Renames `span` once it is started (recording `otel.name` works only before).
pub fn rename(span: &tracing::Span, name: String) {
    if !span.is_disabled() {
        span.context().span().update_name(name);
    }
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
