//! The OTLP trace exporter: each finished span is written, as it ends, straight into the
//! protobuf bytes of an `ExportTraceServiceRequest`'s spans ([`Queue::push`]); a thread of
//! its own ([`Exporter`]) sends what has queued up, over gRPC (`TraceService/Export`) or
//! HTTP/protobuf (`POST …/v1/traces`), in batches, as the SDK's batch span processor did.
//!
//! Earlier, the SDK's span became a `SpanData` that went through a channel to the batch
//! thread, which encoded it there (and before that `opentelemetry-otlp` cloned every batch,
//! converted each span into the generated message structs and let prost encode them). Here a
//! span is encoded once, by the thread that ends it, with its lengths computed first
//! ([`span_len`] and friends), so nothing is encoded twice and nothing is kept but the
//! bytes. The messages and field numbers are those of `opentelemetry-proto`
//! (`opentelemetry/proto/trace/v1/trace.proto`); the tests decode what is written here with
//! the generated types.
//!
//! The batching settings are the SDK's `OTEL_BSP_*` variables with its defaults: an export
//! every `OTEL_BSP_SCHEDULE_DELAY` ms (5000) or as soon as `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`
//! spans (512) are waiting; at most `OTEL_BSP_MAX_QUEUE_SIZE` (2048) wait, the spans beyond
//! are dropped (and counted in a warning) rather than held while a collector is away.

use std::{
    fmt,
    sync::{Arc, Condvar, Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use opentelemetry::{
    Array, KeyValue, Value,
    trace::{SpanContext, SpanId, SpanKind, Status},
};
use prost::encoding::{WireType, encoded_len_varint, key_len};

use super::span::Recording;

/// Time allowed for one export request, unless configured.
pub(super) const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest collector answer read (OTLP/HTTP).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// The gRPC method of OTLP trace export.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// The instrumentation scope of every span.
const SCOPE_NAME: &str = "customer-api";

/// Where the encoded requests go.
#[derive(Clone)]
pub(super) enum Transport {
    /// OTLP/gRPC over a (lazily connected) tonic channel.
    Grpc(tonic::transport::Channel),
    /// OTLP/HTTP with protobuf bodies, to the full `…/v1/traces` URL.
    Http {
        client: crate::http_client::HttpClient,
        url: http::Uri,
    },
}

/// How spans are batched (see the module docs).
#[derive(Debug, Clone, Copy)]
pub(super) struct Batching {
    /// Longest wait between exports.
    pub(super) delay: Duration,
    /// Spans that start an export at once.
    pub(super) batch: usize,
    /// Most spans waiting; more are dropped.
    pub(super) queue: usize,
}

impl Default for Batching {
    fn default() -> Self {
        Self {
            delay: Duration::from_secs(5),
            batch: 512,
            queue: 2048,
        }
    }
}

impl Batching {
    /// The defaults, or the `OTEL_BSP_*` variables (invalid or zero values are ignored, as
    /// the SDK ignores them).
    pub(super) fn from_env() -> Self {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
                .filter(|n| *n > 0)
        };
        let mut batching = Self::default();
        if let Some(ms) = var("OTEL_BSP_SCHEDULE_DELAY") {
            batching.delay = Duration::from_millis(ms);
        }
        if let Some(n) = var("OTEL_BSP_MAX_QUEUE_SIZE") {
            batching.queue = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = var("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") {
            batching.batch = usize::try_from(n).unwrap_or(usize::MAX);
        }
        batching.batch = batching.batch.min(batching.queue);
        batching
    }
}

/// Finished spans, encoded, until the exporter takes them.
pub(crate) struct Queue {
    /// Bytes left free at the start of each batch for the request's own fields (and the
    /// gRPC frame's prefix), written at export: the spans are sent where they were encoded.
    gap: usize,
    pending: Mutex<Pending>,
    /// Wakes the exporter (a full batch, a flush, the shutdown).
    wake: Condvar,
    /// Wakes those waiting for a flush.
    flushed: Condvar,
    batching: Batching,
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Queue")
    }
}

#[derive(Debug, Default)]
struct Pending {
    /// The gap (see [`Queue`]), then the spans, each as field 2 (`spans`) of a `ScopeSpans`.
    spans: Vec<u8>,
    count: usize,
    /// Spans dropped on a full queue since the last export.
    dropped: u64,
    /// Flushes asked for, and flushes done (the exporter's count of asks it has served).
    flush_asked: u64,
    flush_done: u64,
    shutdown: bool,
    /// The exporter thread has ended.
    stopped: bool,
}

impl Queue {
    pub(super) fn new(batching: Batching, gap: usize) -> Self {
        Self {
            gap,
            pending: Mutex::new(Pending {
                spans: vec![0; gap],
                ..Pending::default()
            }),
            wake: Condvar::new(),
            flushed: Condvar::new(),
            batching,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding the lock leaves whole spans or none: the bytes stay usable.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues the span `context` that `recording` describes, ended at `end`.
    pub(crate) fn push(&self, context: &SpanContext, recording: &Recording, end: SystemTime) {
        let span = Finished {
            context,
            recording,
            end,
        };
        let len = span_len(&span);
        let mut pending = self.lock();
        if pending.count >= self.batching.queue {
            pending.dropped += 1;
            return;
        }
        pending.spans.reserve(delimited_len(2, len));
        message(&mut pending.spans, 2, len, |buf| write_span(buf, &span));
        pending.count += 1;
        if pending.count == self.batching.batch {
            self.wake.notify_one();
        }
    }

    /// Takes the queued spans when it is time to export: a full batch, a flush asked for,
    /// the shutdown, or `deadline`.
    fn take(&self, deadline: Instant) -> Taken {
        let mut pending = self.lock();
        while !(pending.shutdown
            || pending.flush_asked > pending.flush_done
            || pending.count >= self.batching.batch)
        {
            match wait(&self.wake, pending, deadline) {
                Ok(woken) => pending = woken,
                Err(timed_out) => {
                    pending = timed_out;
                    break;
                }
            }
        }
        pending.count = 0;
        // The next batch's buffer as large as this one's: spans are not copied as it grows.
        let mut next = Vec::with_capacity(pending.spans.capacity());
        next.resize(self.gap, 0);
        Taken {
            spans: (pending.spans.len() > self.gap)
                .then(|| std::mem::replace(&mut pending.spans, next)),
            dropped: std::mem::take(&mut pending.dropped),
            flushes: pending.flush_asked,
            shutdown: pending.shutdown,
        }
    }

    /// The exporter has sent what was queued when `flushes` flushes had been asked for.
    fn done(&self, flushes: u64, stopped: bool) {
        let mut pending = self.lock();
        pending.flush_done = flushes;
        pending.stopped = stopped;
        self.flushed.notify_all();
    }

    /// Asks the exporter to send what is queued and end, without waiting.
    fn stop(&self) {
        let mut pending = self.lock();
        pending.shutdown = true;
        self.wake.notify_one();
    }

    /// Asks for an export of what is queued now and waits for it (at most `timeout`);
    /// `shutdown` also stops the exporter. Whether the exporter answered in time.
    fn flush(&self, shutdown: bool, timeout: Duration) -> bool {
        let mut pending = self.lock();
        if pending.stopped {
            return true;
        }
        pending.flush_asked += 1;
        pending.shutdown |= shutdown;
        let asked = pending.flush_asked;
        self.wake.notify_one();
        let deadline = Instant::now() + timeout;
        while pending.flush_done < asked && !pending.stopped {
            match wait(&self.flushed, pending, deadline) {
                Ok(woken) => pending = woken,
                Err(_) => {
                    tracing::warn!("traces were not exported within {timeout:?}");
                    return false;
                }
            }
        }
        true
    }
}

/// Waits on `condvar` until woken (`Ok`) or `deadline` (`Err`), with the lock held again.
fn wait<'a>(
    condvar: &Condvar,
    guard: MutexGuard<'a, Pending>,
    deadline: Instant,
) -> Result<MutexGuard<'a, Pending>, MutexGuard<'a, Pending>> {
    let Some(left) = deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
    else {
        return Err(guard);
    };
    Ok(condvar
        .wait_timeout(guard, left)
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .0)
}

/// What the exporter took from the queue.
struct Taken {
    /// The gap, then the spans (if any).
    spans: Option<Vec<u8>>,
    dropped: u64,
    flushes: u64,
    shutdown: bool,
}

/// Sends the queued spans from a thread of its own (see the module docs).
pub(super) struct Exporter {
    queue: Arc<Queue>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    timeout: Duration,
}

impl fmt::Debug for Exporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Exporter")
    }
}

/// What an export needs: where to, how, and the request's fixed parts.
struct Sender {
    transport: Transport,
    /// Runs the requests: the exporter thread is outside any runtime.
    runtime: tokio::runtime::Handle,
    /// The encoded `Resource` message (field 1 of `ResourceSpans`).
    resource: Vec<u8>,
    /// Sent with every request (gRPC metadata or HTTP headers).
    headers: http::HeaderMap,
    /// Time allowed for one export request.
    timeout: Duration,
}

impl Exporter {
    /// Starts the exporter thread; `resource` are the resource's attributes.
    pub(super) fn start(
        transport: Transport,
        runtime: tokio::runtime::Handle,
        resource: &[KeyValue],
        headers: http::HeaderMap,
        timeout: Duration,
        batching: Batching,
    ) -> std::io::Result<Self> {
        let sender = Sender {
            transport,
            runtime,
            resource: encode_resource(resource),
            headers,
            timeout,
        };
        let queue = Arc::new(Queue::new(batching, request_head_room(&sender.resource)));
        let thread = {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name("otlp-exporter".into())
                .spawn(move || run(&queue, &sender))?
        };
        Ok(Self {
            queue,
            thread: Mutex::new(Some(thread)),
            timeout,
        })
    }

    /// Where spans are queued.
    pub(super) fn queue(&self) -> Arc<Queue> {
        self.queue.clone()
    }

    /// Exports every span queued now (blocks until the collector answered).
    pub(super) fn force_flush(&self) {
        self.queue
            .flush(false, self.timeout + Duration::from_secs(1));
    }

    /// Exports what is left and stops the exporter thread (waits at most `timeout`; a
    /// thread still sending then is left to end on its own).
    pub(super) fn shutdown(&self, timeout: Duration) {
        let stopped = self.queue.flush(true, timeout);
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if stopped && let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl Drop for Exporter {
    /// Tells the thread to send what is queued and end, without waiting for it (a
    /// [`Exporter::shutdown`] first waits).
    fn drop(&mut self) {
        self.queue.stop();
    }
}

/// The exporter thread: exports what is queued whenever [`Queue::take`] says, until shut
/// down.
fn run(queue: &Queue, sender: &Sender) {
    loop {
        let taken = queue.take(Instant::now() + queue.batching.delay);
        if taken.dropped > 0 {
            tracing::warn!(
                dropped = taken.dropped,
                "the trace export queue was full: spans were dropped"
            );
        }
        if let Some(spans) = taken.spans
            && let Err(error) = sender.export(spans, queue.gap)
        {
            tracing::warn!(%error, "exporting traces failed");
        }
        queue.done(taken.flushes, taken.shutdown);
        if taken.shutdown {
            return;
        }
    }
}

impl Sender {
    /// Sends `spans` (a gap of `gap` bytes, then spans encoded by [`Queue::push`]) as one
    /// request, and waits for the answer.
    fn export(&self, spans: Vec<u8>, gap: usize) -> Result<(), String> {
        let body = frame_request(
            spans,
            gap,
            &self.resource,
            matches!(self.transport, Transport::Grpc(_)),
        );
        let transport = self.transport.clone();
        let headers = self.headers.clone();
        let timeout = self.timeout;
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        // A runtime that has shut down drops the task, and with it `answer`.
        drop(self.runtime.spawn(async move {
            let result = match tokio::time::timeout(timeout, send(transport, headers, body)).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {timeout:?}")),
            };
            let _ = answer.send(result);
        }));
        answered
            .recv()
            .unwrap_or_else(|_| Err("the runtime has shut down".into()))
    }
}

/// Sends one encoded `ExportTraceServiceRequest`.
async fn send(
    transport: Transport,
    mut headers: http::HeaderMap,
    body: Bytes,
) -> Result<(), String> {
    match transport {
        Transport::Grpc(mut channel) => {
            // The body is a gRPC frame already (`frame_request`): sent as it is, not through
            // a codec that would copy it into a buffer of its own.
            use tower::ServiceExt;
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/grpc"),
            );
            headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
            let mut request =
                http::Request::new(tonic::body::Body::new(http_body_util::Full::new(body)));
            *request.method_mut() = http::Method::POST;
            *request.uri_mut() = http::Uri::from_static(EXPORT_PATH);
            *request.headers_mut() = headers;
            let response = (&mut channel)
                .oneshot(request)
                .await
                .map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("the collector answered {}", response.status()));
            }
            let (parts, body) = response.into_parts();
            // The status is in the trailers (or, for an immediate error, the headers).
            let trailers = if parts.headers.contains_key("grpc-status") {
                Some(parts.headers)
            } else {
                http_body_util::BodyExt::collect(http_body_util::Limited::new(
                    body,
                    MAX_RESPONSE_BYTES,
                ))
                .await
                .map_err(|e| e.to_string())?
                .trailers()
                .cloned()
            };
            let status = trailers
                .as_ref()
                .map(tonic::Status::from_header_map)
                .unwrap_or_default();
            match status {
                Some(status) if status.code() != tonic::Code::Ok => {
                    Err(format!("{}: {}", status.code(), status.message()))
                }
                Some(_) => Ok(()),
                None => Err("the collector's answer has no grpc-status".into()),
            }
        }
        Transport::Http { client, url } => {
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/x-protobuf"),
            );
            let response = client
                .send(http::Method::POST, &url, &headers, body, MAX_RESPONSE_BYTES)
                .await
                .map_err(|e| e.to_string())?;
            if response.status.is_success() {
                Ok(())
            } else {
                Err(format!("the collector answered {}", response.status))
            }
        }
    }
}

// --- protobuf encoding ---------------------------------------------------------------------
//
// Into a `Vec<u8>` with inlined writers rather than prost's generic `BufMut` ones (a call and
// a capacity check per byte of every key and length): a span's bytes are reserved at once.

/// A varint.
#[inline]
fn encode_varint(mut value: u64, buf: &mut Vec<u8>) {
    while value >= 0x80 {
        buf.push((value as u8) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

/// A field's key.
#[inline]
fn encode_key(tag: u32, wire_type: WireType, buf: &mut Vec<u8>) {
    encode_varint((u64::from(tag) << 3) | wire_type as u64, buf);
}

/// Length of a length-delimited field `tag` whose content is `len` bytes.
fn delimited_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// Writes field `tag` as a message of `len` bytes written by `body`.
fn message(buf: &mut Vec<u8>, tag: u32, len: usize, body: impl FnOnce(&mut Vec<u8>)) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
    let start = buf.len();
    body(buf);
    debug_assert_eq!(buf.len() - start, len, "field {tag}");
}

/// Writes field `tag` as bytes (or a string), unless empty (proto3 default).
fn bytes_field(buf: &mut Vec<u8>, tag: u32, value: &[u8]) {
    if !value.is_empty() {
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(value.len() as u64, buf);
        buf.extend_from_slice(value);
    }
}

fn bytes_field_len(tag: u32, value: &[u8]) -> usize {
    if value.is_empty() {
        0
    } else {
        delimited_len(tag, value.len())
    }
}

/// Writes field `tag` as a varint, unless zero.
fn varint_field(buf: &mut Vec<u8>, tag: u32, value: u64) {
    if value != 0 {
        encode_key(tag, WireType::Varint, buf);
        encode_varint(value, buf);
    }
}

fn varint_field_len(tag: u32, value: u64) -> usize {
    if value == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(value)
    }
}

fn fixed64_field(buf: &mut Vec<u8>, tag: u32, value: u64) {
    if value != 0 {
        encode_key(tag, WireType::SixtyFourBit, buf);
        buf.extend_from_slice(&value.to_le_bytes());
    }
}

fn fixed64_field_len(tag: u32, value: u64) -> usize {
    if value == 0 { 0 } else { key_len(tag) + 8 }
}

fn fixed32_field(buf: &mut Vec<u8>, tag: u32, value: u32) {
    if value != 0 {
        encode_key(tag, WireType::ThirtyTwoBit, buf);
        buf.extend_from_slice(&value.to_le_bytes());
    }
}

fn fixed32_field_len(tag: u32, value: u32) -> usize {
    if value == 0 { 0 } else { key_len(tag) + 4 }
}

/// `attributes` as the repeated `attributes` field of a `Span`.
pub(super) fn span_attributes(attributes: &[KeyValue]) -> Vec<u8> {
    repeated_attributes(9, attributes)
}

/// The `Resource` message of these attributes.
fn encode_resource(attributes: &[KeyValue]) -> Vec<u8> {
    repeated_attributes(1, attributes)
}

/// `attributes` as the repeated field `tag`.
fn repeated_attributes(tag: u32, attributes: &[KeyValue]) -> Vec<u8> {
    let mut encoded = Vec::with_capacity(attributes_len(tag, attributes));
    write_attributes(&mut encoded, tag, attributes);
    encoded
}

/// The fields of an `ExportTraceServiceRequest` before its spans (`spans_len` bytes, each
/// already field 2 of a `ScopeSpans`): one `ResourceSpans` (the exporter's resource) with one
/// `ScopeSpans`, whose `scope` is written here.
fn request_head(resource: &[u8], spans_len: usize) -> Vec<u8> {
    let scope_len = bytes_field_len(1, SCOPE_NAME.as_bytes());
    let scope_spans_len = delimited_len(1, scope_len) + spans_len;
    let resource_spans_len = delimited_len(1, resource.len()) + delimited_len(2, scope_spans_len);
    let mut head = Vec::with_capacity(request_head_room(resource));
    encode_key(1, WireType::LengthDelimited, &mut head);
    encode_varint(resource_spans_len as u64, &mut head);
    message(&mut head, 1, resource.len(), |buf| {
        buf.extend_from_slice(resource)
    });
    encode_key(2, WireType::LengthDelimited, &mut head);
    encode_varint(scope_spans_len as u64, &mut head);
    message(&mut head, 1, scope_len, |buf| {
        bytes_field(buf, 1, SCOPE_NAME.as_bytes());
    });
    head
}

/// The most bytes [`request_head`] writes, and a gRPC frame's 5-byte prefix.
fn request_head_room(resource: &[u8]) -> usize {
    5 + delimited_len(1, 0)
        + 10
        + delimited_len(1, resource.len())
        + delimited_len(2, 0)
        + 10
        + delimited_len(1, bytes_field_len(1, SCOPE_NAME.as_bytes()))
}

/// The request body: the spans after `gap` in `buf`, preceded (in the gap) by the request's
/// head and, for gRPC, the frame's prefix (uncompressed, length).
fn frame_request(mut buf: Vec<u8>, gap: usize, resource: &[u8], grpc: bool) -> Bytes {
    let spans_len = buf.len() - gap;
    let head = request_head(resource, spans_len);
    let mut start = gap - head.len();
    buf[start..gap].copy_from_slice(&head);
    if grpc {
        let len = u32::try_from(head.len() + spans_len).unwrap_or(u32::MAX);
        start -= 5;
        buf[start] = 0;
        buf[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
    }
    Bytes::from(buf).slice(start..)
}

/// An `ExportTraceServiceRequest` of `spans` (for tests).
#[cfg(test)]
fn encode_request(resource: &[u8], spans: &[u8]) -> Vec<u8> {
    let mut request = request_head(resource, spans.len());
    request.extend_from_slice(spans);
    request
}

/// A span as it is encoded.
struct Finished<'a> {
    context: &'a SpanContext,
    recording: &'a Recording,
    end: SystemTime,
}

/// Span flags: the W3C trace flags, and whether the parent is remote (OTLP's
/// `SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK` 0x100, `SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK` 0x200).
fn span_flags(remote: bool, trace_flags: u8) -> u32 {
    u32::from(trace_flags) | 0x100 | if remote { 0x200 } else { 0 }
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn kind(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

/// `Span`: trace_id 1, span_id 2, trace_state 3, parent_span_id 4, name 5, kind 6,
/// start 7, end 8, attributes 9, dropped attributes 10, events 11, dropped events 12,
/// links 13, dropped links 14, status 15, flags 16.
fn span_len(span: &Finished<'_>) -> usize {
    let Finished {
        context,
        recording,
        end,
    } = span;
    let trace_state = context.trace_state().header();
    delimited_len(1, 16)
        + delimited_len(2, 8)
        + bytes_field_len(3, trace_state.as_bytes())
        + if recording.parent == SpanId::INVALID {
            0
        } else {
            delimited_len(4, 8)
        }
        + bytes_field_len(5, recording.name.as_bytes())
        + varint_field_len(6, kind(&recording.kind))
        + fixed64_field_len(7, nanos(recording.start))
        + fixed64_field_len(8, nanos(*end))
        + recording.fixed.len()
        + attributes_len(9, &recording.attributes)
        + recording
            .events
            .iter()
            .map(|event| delimited_len(11, event_len(event)))
            .sum::<usize>()
        + recording
            .links
            .iter()
            .map(|link| delimited_len(13, link_len(link)))
            .sum::<usize>()
        + delimited_len(15, status_len(&recording.status))
        + fixed32_field_len(
            16,
            span_flags(recording.parent_remote, context.trace_flags().to_u8()),
        )
}

fn write_span(buf: &mut Vec<u8>, span: &Finished<'_>) {
    let Finished {
        context,
        recording,
        end,
    } = span;
    bytes_field(buf, 1, &context.trace_id().to_bytes());
    bytes_field(buf, 2, &context.span_id().to_bytes());
    bytes_field(buf, 3, context.trace_state().header().as_bytes());
    if recording.parent != SpanId::INVALID {
        bytes_field(buf, 4, &recording.parent.to_bytes());
    }
    bytes_field(buf, 5, recording.name.as_bytes());
    varint_field(buf, 6, kind(&recording.kind));
    fixed64_field(buf, 7, nanos(recording.start));
    fixed64_field(buf, 8, nanos(*end));
    buf.extend_from_slice(&recording.fixed);
    write_attributes(buf, 9, &recording.attributes);
    for event in &recording.events {
        message(buf, 11, event_len(event), |buf| {
            fixed64_field(buf, 1, nanos(event.timestamp));
            bytes_field(buf, 2, event.name.as_bytes());
            write_attributes(buf, 3, &event.attributes);
            varint_field(buf, 4, u64::from(event.dropped_attributes_count));
        });
    }
    for link in &recording.links {
        message(buf, 13, link_len(link), |buf| {
            let context = &link.span_context;
            bytes_field(buf, 1, &context.trace_id().to_bytes());
            bytes_field(buf, 2, &context.span_id().to_bytes());
            bytes_field(buf, 3, context.trace_state().header().as_bytes());
            write_attributes(buf, 4, &link.attributes);
            varint_field(buf, 5, u64::from(link.dropped_attributes_count));
            fixed32_field(
                buf,
                6,
                span_flags(context.is_remote(), context.trace_flags().to_u8()),
            );
        });
    }
    message(buf, 15, status_len(&recording.status), |buf| {
        write_status(buf, &recording.status);
    });
    fixed32_field(
        buf,
        16,
        span_flags(recording.parent_remote, context.trace_flags().to_u8()),
    );
}

/// `Span.Event`: time 1, name 2, attributes 3, dropped attributes 4.
fn event_len(event: &opentelemetry::trace::Event) -> usize {
    fixed64_field_len(1, nanos(event.timestamp))
        + bytes_field_len(2, event.name.as_bytes())
        + attributes_len(3, &event.attributes)
        + varint_field_len(4, u64::from(event.dropped_attributes_count))
}

/// `Span.Link`: trace_id 1, span_id 2, trace_state 3, attributes 4, dropped attributes 5,
/// flags 6.
fn link_len(link: &opentelemetry::trace::Link) -> usize {
    let context = &link.span_context;
    delimited_len(1, 16)
        + delimited_len(2, 8)
        + bytes_field_len(3, context.trace_state().header().as_bytes())
        + attributes_len(4, &link.attributes)
        + varint_field_len(5, u64::from(link.dropped_attributes_count))
        + fixed32_field_len(
            6,
            span_flags(context.is_remote(), context.trace_flags().to_u8()),
        )
}

/// `Status`: message 2, code 3 (unset 0, ok 1, error 2).
fn status_parts(status: &Status) -> (&str, u64) {
    match status {
        Status::Unset => ("", 0),
        Status::Ok => ("", 1),
        Status::Error { description } => (description, 2),
    }
}

fn status_len(status: &Status) -> usize {
    let (message, code) = status_parts(status);
    bytes_field_len(2, message.as_bytes()) + varint_field_len(3, code)
}

fn write_status(buf: &mut Vec<u8>, status: &Status) {
    let (message, code) = status_parts(status);
    bytes_field(buf, 2, message.as_bytes());
    varint_field(buf, 3, code);
}

/// Repeated `KeyValue` field `tag`.
fn attributes_len<'a>(tag: u32, attributes: impl IntoIterator<Item = &'a KeyValue>) -> usize {
    attributes
        .into_iter()
        .map(|kv| delimited_len(tag, key_value_len(kv.key.as_str(), &kv.value)))
        .sum()
}

fn write_attributes<'a>(
    buf: &mut Vec<u8>,
    tag: u32,
    attributes: impl IntoIterator<Item = &'a KeyValue>,
) {
    for kv in attributes {
        let key = kv.key.as_str();
        message(buf, tag, key_value_len(key, &kv.value), |buf| {
            key_value(buf, key, &kv.value);
        });
    }
}

/// `KeyValue`: key 1, value 2 (`AnyValue`).
fn key_value_len(key: &str, value: &Value) -> usize {
    bytes_field_len(1, key.as_bytes()) + delimited_len(2, any_value_len(value))
}

fn key_value(buf: &mut Vec<u8>, key: &str, value: &Value) {
    bytes_field(buf, 1, key.as_bytes());
    message(buf, 2, any_value_len(value), |buf| {
        write_any_value(buf, value)
    });
}

/// The one field of an `AnyValue` (a oneof: written even when zero or empty): string 1,
/// bool 2, int 3, double 4, array 5 (`ArrayValue`: values 1).
enum Scalar<'a> {
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
}

fn scalar_len(scalar: &Scalar<'_>) -> usize {
    match scalar {
        Scalar::Str(text) => delimited_len(1, text.len()),
        Scalar::Bool(_) => key_len(2) + 1,
        Scalar::Int(n) => key_len(3) + encoded_len_varint(*n as u64),
        Scalar::Double(_) => key_len(4) + 8,
    }
}

fn write_scalar(buf: &mut Vec<u8>, scalar: &Scalar<'_>) {
    match scalar {
        Scalar::Str(text) => {
            encode_key(1, WireType::LengthDelimited, buf);
            encode_varint(text.len() as u64, buf);
            buf.extend_from_slice(text.as_bytes());
        }
        Scalar::Bool(b) => {
            encode_key(2, WireType::Varint, buf);
            encode_varint(u64::from(*b), buf);
        }
        Scalar::Int(n) => {
            encode_key(3, WireType::Varint, buf);
            encode_varint(*n as u64, buf);
        }
        Scalar::Double(x) => {
            encode_key(4, WireType::SixtyFourBit, buf);
            buf.extend_from_slice(&x.to_le_bytes());
        }
    }
}

/// The elements of an array value, as scalars.
fn elements(array: &Array) -> Box<dyn Iterator<Item = Scalar<'_>> + '_> {
    match array {
        Array::Bool(values) => Box::new(values.iter().map(|b| Scalar::Bool(*b))),
        Array::I64(values) => Box::new(values.iter().map(|n| Scalar::Int(*n))),
        Array::F64(values) => Box::new(values.iter().map(|x| Scalar::Double(*x))),
        Array::String(values) => Box::new(values.iter().map(|s| Scalar::Str(s.as_str()))),
        _ => Box::new(std::iter::empty()),
    }
}

fn array_len(array: &Array) -> usize {
    elements(array)
        .map(|scalar| delimited_len(1, scalar_len(&scalar)))
        .sum()
}

fn any_value_len(value: &Value) -> usize {
    match value {
        Value::Bool(b) => scalar_len(&Scalar::Bool(*b)),
        Value::I64(n) => scalar_len(&Scalar::Int(*n)),
        Value::F64(x) => scalar_len(&Scalar::Double(*x)),
        Value::String(text) => scalar_len(&Scalar::Str(text.as_str())),
        Value::Array(array) => delimited_len(5, array_len(array)),
        other => scalar_len(&Scalar::Str(&other.as_str())),
    }
}

fn write_any_value(buf: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Bool(b) => write_scalar(buf, &Scalar::Bool(*b)),
        Value::I64(n) => write_scalar(buf, &Scalar::Int(*n)),
        Value::F64(x) => write_scalar(buf, &Scalar::Double(*x)),
        Value::String(text) => write_scalar(buf, &Scalar::Str(text.as_str())),
        Value::Array(array) => message(buf, 5, array_len(array), |buf| {
            for scalar in elements(array) {
                message(buf, 1, scalar_len(&scalar), |buf| {
                    write_scalar(buf, &scalar)
                });
            }
        }),
        other => write_scalar(buf, &Scalar::Str(&other.as_str())),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use opentelemetry::{
        Context, KeyValue,
        trace::{
            Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
            TraceState,
        },
    };
    use opentelemetry_proto::tonic::{
        collector::trace::v1::ExportTraceServiceRequest, common::v1::any_value::Value as AnyValue,
    };
    use prost::Message;

    use super::*;
    use crate::telemetry::span::{Root, Sampler, Tracer};

    fn at(nanos: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos)
    }

    fn attributes() -> Vec<KeyValue> {
        vec![
            KeyValue::new("db.system", "postgresql"),
            KeyValue::new("db.statement", String::from("SELECT 1 — é")),
            KeyValue::new("http.response.status_code", 200_i64),
            KeyValue::new("negative", -3_i64),
            KeyValue::new("zero", 0_i64),
            KeyValue::new("flag", false),
            KeyValue::new("ratio", 0.25),
            KeyValue::new(
                "list",
                opentelemetry::Value::Array(opentelemetry::Array::String(vec![
                    "a".into(),
                    "b".into(),
                ])),
            ),
        ]
    }

    #[test]
    fn what_is_queued_decodes_as_the_otlp_messages() {
        let queue = Arc::new(Queue::new(Batching::default(), 0));
        let tracer = Tracer::new(
            Sampler {
                parent_based: true,
                root: Root::On,
            },
            queue.clone(),
        );
        // A remote caller's span, sampled, with a trace state.
        let caller = SpanContext::new(
            TraceId::from(0x0123_4567_89ab_cdef_0011_2233_4455_6677),
            SpanId::from(0x99),
            TraceFlags::SAMPLED,
            true,
            TraceState::from_key_value([("vendor", "x")]).unwrap(),
        );
        let cx = crate::telemetry::span::start_server(
            tracer.clone(),
            &Context::new().with_remote_span_context(caller),
            "server".into(),
            crate::telemetry::span::fixed_attributes(&[KeyValue::new("rpc.system", "grpc")]),
            vec![KeyValue::new("rpc.method", "Get")],
        );
        let server_id = cx.span().span_context().span_id();
        let child = {
            let _attached = cx.clone().attach();
            crate::telemetry::span::child("SELECT", SpanKind::Client, attributes)
        };
        let mut child = child.unwrap();
        child.add_link(
            SpanContext::new(
                TraceId::from(7),
                SpanId::from(8),
                TraceFlags::SAMPLED,
                true,
                TraceState::default(),
            ),
            vec![],
        );
        child.set_status(Status::error("boom"));
        // Unset never replaces a status.
        child.set_status(Status::Unset);
        child.end_with_timestamp(at(1_700_000_000_000_500_000));
        crate::telemetry::span::end(
            &cx,
            vec![KeyValue::new("rpc.grpc.status_code", 0_i64)],
            false,
        );
        // A root span of a trace not sampled records nothing.
        let off = Tracer::new(
            Sampler {
                parent_based: false,
                root: Root::Off,
            },
            queue.clone(),
        );
        let root =
            crate::telemetry::span::root(&off, "publish", SpanKind::Producer, vec![], vec![]);
        assert!(!root.is_recording());
        assert!(root.span_context().is_valid());
        drop(root);

        let spans = queue.take(Instant::now());
        let spans = spans.spans.unwrap();
        let encoded = encode_request(
            &encode_resource(&[
                KeyValue::new("deployment.environment.name", "test"),
                KeyValue::new("service.name", "svc"),
            ]),
            &spans,
        );
        let request = ExportTraceServiceRequest::decode(&encoded[..]).unwrap();

        assert_eq!(request.resource_spans.len(), 1);
        let resource_spans = &request.resource_spans[0];
        let resource = resource_spans.resource.as_ref().unwrap();
        let resource_attributes: Vec<(String, String)> = resource
            .attributes
            .iter()
            .map(|kv| {
                let Some(AnyValue::StringValue(text)) =
                    kv.value.as_ref().and_then(|v| v.value.clone())
                else {
                    panic!("{kv:?}")
                };
                (kv.key.clone(), text)
            })
            .collect();
        assert_eq!(
            resource_attributes,
            [
                ("deployment.environment.name".to_owned(), "test".to_owned()),
                ("service.name".to_owned(), "svc".to_owned())
            ]
        );
        assert_eq!(resource_spans.scope_spans.len(), 1);
        let scope_spans = &resource_spans.scope_spans[0];
        assert_eq!(scope_spans.scope.as_ref().unwrap().name, "customer-api");
        let names: Vec<&str> = scope_spans.spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["SELECT", "server"]);

        let select = &scope_spans.spans[0];
        assert_eq!(
            select.trace_id,
            0x0123_4567_89ab_cdef_0011_2233_4455_6677_u128.to_be_bytes()
        );
        assert_eq!(select.parent_span_id, server_id.to_bytes());
        assert_eq!(select.kind, 3);
        assert!(select.start_time_unix_nano > 1_700_000_000_000_500_000);
        assert_eq!(select.end_time_unix_nano, 1_700_000_000_000_500_000);
        // Sampled, the parent (the server span) local.
        assert_eq!(select.flags, 0x101);
        assert_eq!(select.trace_state, "vendor=x");
        let status = select.status.as_ref().unwrap();
        assert_eq!((status.code, status.message.as_str()), (2, "boom"));
        let attributes: Vec<(&str, Option<AnyValue>)> = select
            .attributes
            .iter()
            .map(|kv| {
                (
                    kv.key.as_str(),
                    kv.value.as_ref().and_then(|v| v.value.clone()),
                )
            })
            .collect();
        assert_eq!(attributes.len(), 8);
        assert_eq!(
            attributes[..7],
            [
                (
                    "db.system",
                    Some(AnyValue::StringValue("postgresql".into()))
                ),
                (
                    "db.statement",
                    Some(AnyValue::StringValue("SELECT 1 — é".into()))
                ),
                ("http.response.status_code", Some(AnyValue::IntValue(200))),
                ("negative", Some(AnyValue::IntValue(-3))),
                ("zero", Some(AnyValue::IntValue(0))),
                ("flag", Some(AnyValue::BoolValue(false))),
                ("ratio", Some(AnyValue::DoubleValue(0.25))),
            ]
        );
        let Some(AnyValue::ArrayValue(list)) = &attributes[7].1 else {
            panic!("{:?}", attributes[7])
        };
        let list: Vec<_> = list.values.iter().map(|v| v.value.clone()).collect();
        assert_eq!(
            list,
            [
                Some(AnyValue::StringValue("a".into())),
                Some(AnyValue::StringValue("b".into()))
            ]
        );
        assert_eq!(select.links.len(), 1);
        let link = &select.links[0];
        assert_eq!(link.trace_id, 7_u128.to_be_bytes());
        assert_eq!(link.span_id, 8_u64.to_be_bytes());
        assert_eq!(link.flags, 0x301);

        let server = &scope_spans.spans[1];
        assert_eq!(server.span_id, server_id.to_bytes());
        assert_eq!(server.parent_span_id, 0x99_u64.to_be_bytes());
        assert_eq!(server.kind, 2);
        // The caller is remote.
        assert_eq!(server.flags, 0x301);
        // An unset status is still sent, as the SDK's exporter did.
        assert_eq!(server.status.as_ref().map(|s| s.code), Some(0));
        let keys: Vec<&str> = server.attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["rpc.system", "rpc.method", "rpc.grpc.status_code"]);
    }

    /// A tracer that records every span into `queue`, and `n` root spans ended.
    fn record_roots(queue: &Arc<Queue>, n: usize) {
        let tracer = Tracer::new(
            Sampler {
                parent_based: false,
                root: Root::On,
            },
            queue.clone(),
        );
        for _ in 0..n {
            drop(crate::telemetry::span::root(
                &tracer,
                "x",
                SpanKind::Internal,
                vec![],
                vec![],
            ));
        }
    }

    #[test]
    fn a_dropped_exporter_ends_its_thread() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let exporter = Exporter::start(
            Transport::Http {
                client: crate::http_client::HttpClient::new().unwrap(),
                url: http::Uri::from_static("http://127.0.0.1:1/v1/traces"),
            },
            runtime.handle().clone(),
            &[],
            http::HeaderMap::new(),
            Duration::from_secs(1),
            Batching::default(),
        )
        .unwrap();
        let thread = exporter.thread.lock().unwrap().take().unwrap();
        drop(exporter);
        // Joined: the thread saw the shutdown (nothing was queued, nothing to send).
        thread.join().unwrap();
    }

    #[test]
    fn a_full_queue_drops_spans_and_counts_them() {
        let queue = Arc::new(Queue::new(
            Batching {
                delay: Duration::from_secs(60),
                batch: 2,
                queue: 2,
            },
            0,
        ));
        record_roots(&queue, 3);
        let taken = queue.take(Instant::now());
        assert_eq!((taken.dropped, queue.lock().count), (1, 0));
        let request = ExportTraceServiceRequest::decode(
            &encode_request(&encode_resource(&[]), &taken.spans.unwrap())[..],
        )
        .unwrap();
        assert_eq!(request.resource_spans[0].scope_spans[0].spans.len(), 2);
        // Nothing queued since: nothing to send.
        assert!(queue.take(Instant::now()).spans.is_none());
    }

    #[test]
    fn a_batch_is_sent_from_where_its_spans_were_encoded() {
        let resource = encode_resource(&[KeyValue::new("service.name", "svc")]);
        let gap = request_head_room(&resource);
        let queue = Arc::new(Queue::new(
            Batching {
                delay: Duration::from_secs(60),
                batch: 3,
                queue: 10,
            },
            gap,
        ));
        record_roots(&queue, 3);
        let spans = queue.take(Instant::now()).spans.unwrap();
        let expected = encode_request(&resource, &spans[gap..]);
        // OTLP/HTTP: the request alone.
        let body = frame_request(spans.clone(), gap, &resource, false);
        assert_eq!(&body[..], &expected[..]);
        // OTLP/gRPC: a frame, uncompressed, of the request's length.
        let body = frame_request(spans, gap, &resource, true);
        assert_eq!(body[0], 0);
        assert_eq!(
            u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize,
            expected.len()
        );
        assert_eq!(&body[5..], &expected[..]);
        let request = ExportTraceServiceRequest::decode(&body[5..]).unwrap();
        assert_eq!(request.resource_spans[0].scope_spans[0].spans.len(), 3);
    }
}
