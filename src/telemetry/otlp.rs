//! The OTLP trace exporter: finished spans encoded straight into the protobuf bytes of an
//! `ExportTraceServiceRequest`, sent over gRPC (`TraceService/Export`) or HTTP/protobuf
//! (`POST …/v1/traces`).
//!
//! `opentelemetry-otlp`'s exporter did the same work at about five times the cost per span:
//! it cloned every batch (for its retries), converted each span into the generated message
//! structs (a `String` per attribute key and value, a `Vec` per id), grouped them through a
//! `HashMap` keyed by instrumentation scope, and only then let prost encode the result. Here
//! each span is written once, from the SDK's `SpanData`, into one buffer: lengths are computed
//! first ([`span_len`] and friends), so nothing is encoded twice and nothing is copied but the
//! bytes themselves. The messages and field numbers are those of `opentelemetry-proto`
//! (`opentelemetry/proto/trace/v1/trace.proto`); the tests decode what is written here with
//! the generated types.

use std::{fmt, time::Duration};

use bytes::{BufMut, Bytes};
use opentelemetry::{
    Array, InstrumentationScope, KeyValue, Value,
    trace::{SpanId, SpanKind, Status},
};
use opentelemetry_sdk::{
    Resource,
    error::{OTelSdkError, OTelSdkResult},
    trace::{SpanData, SpanExporter},
};
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

/// Time allowed for one export request, unless configured.
pub(super) const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest collector answer read (OTLP/HTTP).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// The gRPC method of OTLP trace export.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

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

/// A [`SpanExporter`] that encodes spans itself (see the module docs).
pub(super) struct OtlpExporter {
    transport: Transport,
    /// Runs the requests: the batch processor calls `export` from a thread of its own,
    /// outside any runtime.
    runtime: tokio::runtime::Handle,
    /// The encoded `Resource` message (field 1 of `ResourceSpans`).
    resource: Vec<u8>,
    /// Sent with every request (gRPC metadata or HTTP headers).
    headers: http::HeaderMap,
    /// Time allowed for one export request.
    timeout: Duration,
}

impl fmt::Debug for OtlpExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.transport {
            Transport::Grpc(_) => "OtlpExporter(grpc)",
            Transport::Http { .. } => "OtlpExporter(http/protobuf)",
        })
    }
}

impl OtlpExporter {
    pub(super) fn new(transport: Transport, runtime: tokio::runtime::Handle) -> Self {
        Self {
            transport,
            runtime,
            resource: Vec::new(),
            headers: http::HeaderMap::new(),
            timeout: TIMEOUT,
        }
    }

    /// Sends `headers` with every export.
    pub(super) fn with_headers(mut self, headers: http::HeaderMap) -> Self {
        self.headers = headers;
        self
    }

    /// Gives up on an export after `timeout`.
    pub(super) fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl SpanExporter for OtlpExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if batch.is_empty() {
            return Ok(());
        }
        let body = Bytes::from(encode_request(&self.resource, &batch));
        drop(batch);
        let transport = self.transport.clone();
        let headers = self.headers.clone();
        let timeout = self.timeout;
        let sent = self.runtime.spawn(async move {
            match tokio::time::timeout(timeout, send(transport, headers, body)).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {timeout:?}")),
            }
        });
        match sent.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(OTelSdkError::InternalFailure(error)),
            Err(error) => Err(OTelSdkError::InternalFailure(error.to_string())),
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        let mut encoded = Vec::new();
        for (key, value) in resource.iter() {
            message(&mut encoded, 1, key_value_len(key.as_str(), value), |buf| {
                key_value(buf, key.as_str(), value);
            });
        }
        self.resource = encoded;
    }
}

/// Sends one encoded `ExportTraceServiceRequest`.
async fn send(
    transport: Transport,
    mut headers: http::HeaderMap,
    body: Bytes,
) -> Result<(), String> {
    match transport {
        Transport::Grpc(channel) => {
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready().await.map_err(|e| e.to_string())?;
            let mut request = tonic::Request::new(body);
            *request.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers);
            grpc.unary(
                request,
                http::uri::PathAndQuery::from_static(EXPORT_PATH),
                RawCodec,
            )
            .await
            .map(drop)
            .map_err(|status| format!("{}: {}", status.code(), status.message()))
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

/// A gRPC codec for bodies already encoded (requests) or not looked at (answers: an
/// `ExportTraceServiceResponse` only reports partial success).
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ();
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = ();
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<()>, tonic::Status> {
        use bytes::Buf;
        let remaining = src.remaining();
        src.advance(remaining);
        Ok(Some(()))
    }
}

// --- protobuf encoding ---------------------------------------------------------------------

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
        buf.put_slice(value);
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
        buf.put_u64_le(value);
    }
}

fn fixed64_field_len(tag: u32, value: u64) -> usize {
    if value == 0 { 0 } else { key_len(tag) + 8 }
}

fn fixed32_field(buf: &mut Vec<u8>, tag: u32, value: u32) {
    if value != 0 {
        encode_key(tag, WireType::ThirtyTwoBit, buf);
        buf.put_u32_le(value);
    }
}

fn fixed32_field_len(tag: u32, value: u32) -> usize {
    if value == 0 { 0 } else { key_len(tag) + 4 }
}

/// An `ExportTraceServiceRequest` of `spans`: one `ResourceSpans` (the exporter's resource),
/// one `ScopeSpans` per instrumentation scope, in order of first appearance.
pub(super) fn encode_request(resource: &[u8], spans: &[SpanData]) -> Vec<u8> {
    // Scopes in order of first appearance (this process has one or two).
    let mut scopes: Vec<(&InstrumentationScope, usize)> = Vec::new();
    let mut lens = Vec::with_capacity(spans.len());
    for span in spans {
        let len = span_len(span);
        lens.push(len);
        let scope = &span.instrumentation_scope;
        match scopes.iter_mut().find(|(known, _)| *known == scope) {
            Some((_, total)) => *total += delimited_len(2, len),
            None => scopes.push((scope, delimited_len(2, len))),
        }
    }
    let scope_spans_len = |scope: &InstrumentationScope, spans_len: usize| {
        delimited_len(1, scope_len(scope))
            + spans_len
            + bytes_field_len(3, scope.schema_url().unwrap_or_default().as_bytes())
    };
    let resource_spans_len = delimited_len(1, resource.len())
        + scopes
            .iter()
            .map(|(scope, spans_len)| delimited_len(2, scope_spans_len(scope, *spans_len)))
            .sum::<usize>();
    let mut buf = Vec::with_capacity(delimited_len(1, resource_spans_len));
    message(&mut buf, 1, resource_spans_len, |buf| {
        message(buf, 1, resource.len(), |buf| buf.put_slice(resource));
        for (scope, spans_len) in &scopes {
            message(buf, 2, scope_spans_len(scope, *spans_len), |buf| {
                message(buf, 1, scope_len(scope), |buf| write_scope(buf, scope));
                for (span, len) in spans.iter().zip(&lens) {
                    if span.instrumentation_scope == **scope {
                        message(buf, 2, *len, |buf| write_span(buf, span));
                    }
                }
                bytes_field(buf, 3, scope.schema_url().unwrap_or_default().as_bytes());
            });
        }
    });
    buf
}

/// `InstrumentationScope`: name 1, version 2, attributes 3.
fn scope_len(scope: &InstrumentationScope) -> usize {
    bytes_field_len(1, scope.name().as_bytes())
        + bytes_field_len(2, scope.version().unwrap_or_default().as_bytes())
        + attributes_len(3, scope.attributes())
}

fn write_scope(buf: &mut Vec<u8>, scope: &InstrumentationScope) {
    bytes_field(buf, 1, scope.name().as_bytes());
    bytes_field(buf, 2, scope.version().unwrap_or_default().as_bytes());
    write_attributes(buf, 3, scope.attributes());
}

/// Span flags: the W3C trace flags, and whether the parent is remote (OTLP's
/// `SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK` 0x100, `SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK` 0x200).
fn span_flags(remote: bool, trace_flags: u8) -> u32 {
    u32::from(trace_flags) | 0x100 | if remote { 0x200 } else { 0 }
}

fn nanos(time: std::time::SystemTime) -> u64 {
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

fn parent_id(span: &SpanData) -> [u8; 8] {
    if span.parent_span_id == SpanId::INVALID {
        [0; 8]
    } else {
        span.parent_span_id.to_bytes()
    }
}

/// `Span`: trace_id 1, span_id 2, trace_state 3, parent_span_id 4, name 5, kind 6,
/// start 7, end 8, attributes 9, dropped attributes 10, events 11, dropped events 12,
/// links 13, dropped links 14, status 15, flags 16.
fn span_len(span: &SpanData) -> usize {
    let context = &span.span_context;
    let trace_state = context.trace_state().header();
    let parent = parent_id(span);
    delimited_len(1, 16)
        + delimited_len(2, 8)
        + bytes_field_len(3, trace_state.as_bytes())
        + if parent == [0; 8] {
            0
        } else {
            delimited_len(4, 8)
        }
        + bytes_field_len(5, span.name.as_bytes())
        + varint_field_len(6, kind(&span.span_kind))
        + fixed64_field_len(7, nanos(span.start_time))
        + fixed64_field_len(8, nanos(span.end_time))
        + attributes_len(9, &span.attributes)
        + varint_field_len(10, u64::from(span.dropped_attributes_count))
        + span
            .events
            .iter()
            .map(|event| delimited_len(11, event_len(event)))
            .sum::<usize>()
        + varint_field_len(12, u64::from(span.events.dropped_count))
        + span
            .links
            .iter()
            .map(|link| delimited_len(13, link_len(link)))
            .sum::<usize>()
        + varint_field_len(14, u64::from(span.links.dropped_count))
        + delimited_len(15, status_len(&span.status))
        + fixed32_field_len(
            16,
            span_flags(span.parent_span_is_remote, context.trace_flags().to_u8()),
        )
}

fn write_span(buf: &mut Vec<u8>, span: &SpanData) {
    let context = &span.span_context;
    bytes_field(buf, 1, &context.trace_id().to_bytes());
    bytes_field(buf, 2, &context.span_id().to_bytes());
    bytes_field(buf, 3, context.trace_state().header().as_bytes());
    let parent = parent_id(span);
    if parent != [0; 8] {
        bytes_field(buf, 4, &parent);
    }
    bytes_field(buf, 5, span.name.as_bytes());
    varint_field(buf, 6, kind(&span.span_kind));
    fixed64_field(buf, 7, nanos(span.start_time));
    fixed64_field(buf, 8, nanos(span.end_time));
    write_attributes(buf, 9, &span.attributes);
    varint_field(buf, 10, u64::from(span.dropped_attributes_count));
    for event in span.events.iter() {
        message(buf, 11, event_len(event), |buf| {
            fixed64_field(buf, 1, nanos(event.timestamp));
            bytes_field(buf, 2, event.name.as_bytes());
            write_attributes(buf, 3, &event.attributes);
            varint_field(buf, 4, u64::from(event.dropped_attributes_count));
        });
    }
    varint_field(buf, 12, u64::from(span.events.dropped_count));
    for link in span.links.iter() {
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
    varint_field(buf, 14, u64::from(span.links.dropped_count));
    message(buf, 15, status_len(&span.status), |buf| {
        write_status(buf, &span.status);
    });
    fixed32_field(
        buf,
        16,
        span_flags(span.parent_span_is_remote, context.trace_flags().to_u8()),
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
            buf.put_slice(text.as_bytes());
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
            buf.put_f64_le(*x);
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
    use std::{
        borrow::Cow,
        time::{Duration, SystemTime},
    };

    use opentelemetry::{
        InstrumentationScope, KeyValue,
        trace::{Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState},
    };
    use opentelemetry_proto::tonic::{
        collector::trace::v1::ExportTraceServiceRequest, common::v1::any_value::Value as AnyValue,
    };
    use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
    use prost::Message;

    use super::*;

    fn span(name: &'static str, parent: u64, remote: bool) -> SpanData {
        let mut links = SpanLinks::default();
        links.links.push(Link::with_context(SpanContext::new(
            TraceId::from(7),
            SpanId::from(8),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        )));
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(0x0123_4567_89ab_cdef_0011_2233_4455_6677),
                SpanId::from(0x1122_3344_5566_7788),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::from(parent),
            parent_span_is_remote: remote,
            span_kind: SpanKind::Client,
            name: Cow::Borrowed(name),
            start_time: SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_001),
            end_time: SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_500_000),
            attributes: vec![
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
            ],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links,
            status: if parent == 0 {
                Status::Unset
            } else {
                Status::error("boom")
            },
            instrumentation_scope: InstrumentationScope::builder("customer-api").build(),
        }
    }

    #[test]
    fn what_is_encoded_decodes_as_the_otlp_messages() {
        let mut exporter = OtlpExporter::new(
            Transport::Http {
                client: crate::http_client::HttpClient::new().unwrap(),
                url: http::Uri::from_static("http://127.0.0.1:1/v1/traces"),
            },
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .handle()
                .clone(),
        );
        exporter.set_resource(
            &Resource::builder_empty()
                .with_service_name("svc")
                .with_attribute(KeyValue::new("deployment.environment.name", "test"))
                .build(),
        );
        let mut other_scope = span("other", 0, false);
        other_scope.instrumentation_scope = InstrumentationScope::builder("other")
            .with_version("1.2")
            .build();
        let spans = vec![
            span("SELECT", 0x99, false),
            other_scope,
            span("server", 0, false),
            span("remote child", 0x42, true),
        ];
        let encoded = encode_request(&exporter.resource, &spans);
        let request = ExportTraceServiceRequest::decode(&encoded[..]).unwrap();

        assert_eq!(request.resource_spans.len(), 1);
        let resource_spans = &request.resource_spans[0];
        let resource = resource_spans.resource.as_ref().unwrap();
        let mut resource_attributes: Vec<(String, String)> = resource
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
        resource_attributes.sort();
        assert_eq!(
            resource_attributes,
            [
                ("deployment.environment.name".to_owned(), "test".to_owned()),
                ("service.name".to_owned(), "svc".to_owned())
            ]
        );
        let scopes: Vec<(&str, &str, Vec<&str>)> = resource_spans
            .scope_spans
            .iter()
            .map(|scope_spans| {
                let scope = scope_spans.scope.as_ref().unwrap();
                (
                    scope.name.as_str(),
                    scope.version.as_str(),
                    scope_spans.spans.iter().map(|s| s.name.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            scopes,
            [
                ("customer-api", "", vec!["SELECT", "server", "remote child"]),
                ("other", "1.2", vec!["other"]),
            ]
        );

        let select = &resource_spans.scope_spans[0].spans[0];
        assert_eq!(
            select.trace_id,
            0x0123_4567_89ab_cdef_0011_2233_4455_6677_u128.to_be_bytes()
        );
        assert_eq!(select.span_id, 0x1122_3344_5566_7788_u64.to_be_bytes());
        assert_eq!(select.parent_span_id, 0x99_u64.to_be_bytes());
        assert_eq!(select.kind, 3);
        assert_eq!(select.start_time_unix_nano, 1_700_000_000_000_000_001);
        assert_eq!(select.end_time_unix_nano, 1_700_000_000_000_500_000);
        assert_eq!(select.flags, 0x101);
        assert_eq!(select.trace_state, "");
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

        let server = &resource_spans.scope_spans[0].spans[1];
        assert!(server.parent_span_id.is_empty());
        // An unset status is still sent, as the SDK's exporter did.
        assert_eq!(server.status.as_ref().map(|s| s.code), Some(0));
        let remote = &resource_spans.scope_spans[0].spans[2];
        assert_eq!(remote.flags, 0x301);
    }
}
