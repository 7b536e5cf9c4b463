//! Spans: the OpenTelemetry API's types, recorded by a tracer of our own.
//!
//! A span here is a [`Span`] of this module (it implements the API's
//! [`opentelemetry::trace::Span`], so the API's [`Context`] carries it): its ids, sampling
//! decision and attributes are taken when it starts, and when it ends it is written at once
//! as the protobuf bytes of an OTLP `Span` into the exporter's queue ([`super::otlp`]). The
//! SDK's span did more per span than a request's own work on it: a copy of the
//! instrumentation scope, a `SpanData` handed through a channel to the batch thread and
//! read again there, then encoded and dropped (about 7k instructions per span at 100%
//! sampling, three spans per GetCustomer, nine per CreateCustomer).
//!
//! - the request's server span ([`crate::observe`]) is started with [`start_server`], and
//!   its context (the span, and the [`Tracer`] its children use) is attached while the
//!   request's future is polled ([`Traced`]);
//! - work inside it opens child spans with [`child`] (pool checkout, registry request) or
//!   [`ChildStart`] (statements, whose attributes are known only when they finish); outside
//!   a traced operation — tracing off, a background task — there is no such context and a
//!   child costs one thread-local look;
//! - tasks spawned for a request keep its context with [`in_current`].
//!
//! Sampling follows `OTEL_TRACES_SAMPLER` as the SDK's samplers do ([`Sampler`]); a span
//! not sampled keeps valid ids (its children and outgoing requests carry them, flagged not
//! sampled) and records nothing.
//!
//! The tracer is found through the `tracing` dispatcher ([`tracer`]): [`Telemetry`] adds a
//! [`TracerLayer`] that takes no span and no event, so a subscriber built without an
//! endpoint has none, and tests can scope one to their threads as they scope logs.
//!
//! [`Telemetry`]: super::Telemetry

use std::{
    borrow::Cow,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context as TaskContext, Poll},
    time::SystemTime,
};

use bytes::Bytes;
use opentelemetry::{
    Context, KeyValue,
    trace::{
        Event, Link, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
        TraceState,
    },
};

use super::otlp::Queue;

/// Carries the tracer in a subscriber (see the module docs); takes nothing.
#[derive(Debug, Clone)]
pub(crate) struct TracerLayer {
    pub(crate) tracer: Tracer,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for TracerLayer {}

/// The tracer of the current dispatcher, when it exports traces.
pub fn tracer() -> Option<Tracer> {
    tracing::dispatcher::get_default(|dispatch| {
        dispatch
            .downcast_ref::<TracerLayer>()
            .map(|layer| layer.tracer.clone())
    })
}

/// Which traces are recorded: `OTEL_TRACES_SAMPLER`, with the decisions of the SDK's
/// samplers of the same names.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sampler {
    /// A span with a parent follows the parent's decision.
    pub(crate) parent_based: bool,
    /// The decision for a root span (or any span, when not parent-based).
    pub(crate) root: Root,
}

/// A sampler's own decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Root {
    /// Every trace.
    On,
    /// None.
    Off,
    /// Traces whose id's low 63 bits, as a fraction, fall under the ratio.
    Ratio(f64),
}

impl Sampler {
    fn sampled(&self, parent: &SpanContext, trace_id: TraceId) -> bool {
        if self.parent_based && parent.is_valid() {
            return parent.is_sampled();
        }
        match self.root {
            Root::On => true,
            Root::Off => false,
            Root::Ratio(ratio) if ratio >= 1.0 => true,
            Root::Ratio(ratio) => {
                // The SDK's `TraceIdRatioBased`: the id's last 8 bytes, shifted right once,
                // below the ratio of 2^63.
                let bound = (ratio.max(0.0) * (1_u64 << 63) as f64) as u64;
                let low =
                    u64::from_be_bytes(trace_id.to_bytes()[8..].try_into().unwrap_or([0xff; 8]));
                (low >> 1) < bound
            }
        }
    }
}

/// Starts spans and hands the finished ones to the exporter's queue.
#[derive(Debug, Clone)]
pub struct Tracer(Arc<TracerInner>);

#[derive(Debug)]
struct TracerInner {
    sampler: Sampler,
    queue: Arc<Queue>,
}

impl Tracer {
    pub(crate) fn new(sampler: Sampler, queue: Arc<Queue>) -> Self {
        Self(Arc::new(TracerInner { sampler, queue }))
    }

    /// A span started at `start`, child of the span of `parent` if it has one (else a root:
    /// a new trace).
    fn start(
        &self,
        parent: &Context,
        name: Cow<'static, str>,
        kind: SpanKind,
        start: SystemTime,
        fixed: Bytes,
        attributes: Vec<KeyValue>,
    ) -> Span {
        let parent = parent.span();
        let parent = parent.span_context();
        let (trace_id, parent_id, parent_remote, trace_state) = if parent.is_valid() {
            (
                parent.trace_id(),
                parent.span_id(),
                parent.is_remote(),
                parent.trace_state().clone(),
            )
        } else {
            (new_trace_id(), SpanId::INVALID, false, TraceState::NONE)
        };
        let sampled = self.0.sampler.sampled(parent, trace_id);
        let context = SpanContext::new(
            trace_id,
            SpanId::from(fastrand::u64(1..)),
            if sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            false,
            trace_state,
        );
        Span {
            context,
            recording: sampled.then(|| Recording {
                queue: self.0.queue.clone(),
                parent: parent_id,
                parent_remote,
                name,
                kind,
                start,
                fixed,
                attributes,
                events: Vec::new(),
                links: Vec::new(),
                status: Status::Unset,
            }),
        }
    }
}

fn new_trace_id() -> TraceId {
    TraceId::from(fastrand::u128(1..))
}

/// A span of a [`Tracer`]; recorded when it ends (or is dropped) if it was sampled.
#[derive(Debug)]
pub struct Span {
    context: SpanContext,
    /// What is recorded, while the span is sampled and not ended.
    recording: Option<Recording>,
}

/// A sampled span's data, as OTLP exports it.
#[derive(Debug)]
pub(crate) struct Recording {
    queue: Arc<Queue>,
    pub(crate) parent: SpanId,
    pub(crate) parent_remote: bool,
    pub(crate) name: Cow<'static, str>,
    pub(crate) kind: SpanKind,
    pub(crate) start: SystemTime,
    /// Attributes already encoded (constant ones, encoded once: [`fixed_attributes`]),
    /// exported before `attributes`.
    pub(crate) fixed: Bytes,
    pub(crate) attributes: Vec<KeyValue>,
    pub(crate) events: Vec<Event>,
    pub(crate) links: Vec<Link>,
    pub(crate) status: Status,
}

impl opentelemetry::trace::Span for Span {
    fn add_event_with_timestamp<T>(
        &mut self,
        name: T,
        timestamp: SystemTime,
        attributes: Vec<KeyValue>,
    ) where
        T: Into<Cow<'static, str>>,
    {
        if let Some(recording) = &mut self.recording {
            recording
                .events
                .push(Event::new(name, timestamp, attributes, 0));
        }
    }

    fn span_context(&self) -> &SpanContext {
        &self.context
    }

    fn is_recording(&self) -> bool {
        self.recording.is_some()
    }

    fn set_attribute(&mut self, attribute: KeyValue) {
        if let Some(recording) = &mut self.recording {
            recording.attributes.push(attribute);
        }
    }

    fn set_status(&mut self, status: Status) {
        // As the API specifies: Ok is final, and Unset never replaces a status.
        if let Some(recording) = &mut self.recording
            && status > recording.status
        {
            recording.status = status;
        }
    }

    fn update_name<T>(&mut self, new_name: T)
    where
        T: Into<Cow<'static, str>>,
    {
        if let Some(recording) = &mut self.recording {
            recording.name = new_name.into();
        }
    }

    fn add_link(&mut self, span_context: SpanContext, attributes: Vec<KeyValue>) {
        if let Some(recording) = &mut self.recording
            && span_context.is_valid()
        {
            recording.links.push(Link::new(span_context, attributes, 0));
        }
    }

    fn end_with_timestamp(&mut self, timestamp: SystemTime) {
        if let Some(recording) = self.recording.take() {
            recording.queue.push(&self.context, &recording, timestamp);
        }
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        opentelemetry::trace::Span::end(self);
    }
}

/// The tracer of a traced operation, in its [`Context`].
#[derive(Debug, Clone)]
struct Active(Tracer);

/// Starts the server span of a request as a child of `parent` (the caller's context, from
/// `traceparent`, or none), with the attributes `fixed` (see [`fixed_attributes`]) and
/// `attributes`: the context to attach while the request runs.
pub fn start_server(
    tracer: Tracer,
    parent: &Context,
    name: Cow<'static, str>,
    fixed: Bytes,
    attributes: Vec<KeyValue>,
) -> Context {
    let span = tracer.start(
        parent,
        name,
        SpanKind::Server,
        SystemTime::now(),
        fixed,
        attributes,
    );
    parent.with_span(span).with_value(Active(tracer))
}

/// Ends the span of `cx` (see [`start_server`]) with these last attributes; an error when
/// `failed`.
pub fn end(cx: &Context, attributes: Vec<KeyValue>, failed: bool) {
    let span = cx.span();
    span.set_attributes(attributes);
    if failed {
        span.set_status(Status::error(""));
    }
    span.end();
}

/// Runs `f` with the tracer and context of the traced operation the current task is in, if
/// any.
fn with_active<T>(f: impl FnOnce(&Tracer, &Context) -> T) -> Option<T> {
    Context::map_current(|cx| cx.get::<Active>().map(|Active(tracer)| f(tracer, cx)))
}

/// Whether the current task is inside a traced operation (its children are recorded).
pub fn active() -> bool {
    Context::map_current(|cx| cx.get::<Active>().is_some())
}

/// A child span of the current traced operation, started now, if there is one; it ends when
/// dropped (or with [`opentelemetry::trace::Span::end`]).
pub fn child(
    name: &'static str,
    kind: SpanKind,
    attributes: impl FnOnce() -> Vec<KeyValue>,
) -> Option<Span> {
    child_with(name, kind, || (Bytes::new(), attributes()))
}

/// [`child`] with constant attributes, encoded once by [`fixed_attributes`].
pub fn child_fixed(name: &'static str, kind: SpanKind, fixed: &Bytes) -> Option<Span> {
    child_with(name, kind, || (fixed.clone(), Vec::new()))
}

fn child_with(
    name: &'static str,
    kind: SpanKind,
    attributes: impl FnOnce() -> (Bytes, Vec<KeyValue>),
) -> Option<Span> {
    with_active(|tracer, cx| {
        let (fixed, attributes) = attributes();
        tracer.start(cx, name.into(), kind, SystemTime::now(), fixed, attributes)
    })
}

/// `attributes` as they are exported: for spans that always carry the same ones
/// ([`child_fixed`], [`ChildStart::finish`]), so they are encoded once, not per span.
pub fn fixed_attributes(attributes: &[KeyValue]) -> Bytes {
    super::otlp::span_attributes(attributes).into()
}

/// The context of a child `span` (to inject into an outgoing request).
pub fn context_of(span: &Span) -> Context {
    // Only the ids travel.
    Context::new().with_remote_span_context(span.context.clone())
}

/// A child span whose name and attributes are known only when it finishes: the start time
/// and the parent are taken now, the span is built by [`ChildStart::finish`].
#[derive(Debug)]
pub struct ChildStart {
    tracer: Tracer,
    parent: Context,
    start: SystemTime,
}

impl ChildStart {
    /// Now, inside the current traced operation, if there is one.
    pub fn now() -> Option<Self> {
        with_active(|tracer, cx| Self {
            tracer: tracer.clone(),
            parent: cx.clone(),
            start: SystemTime::now(),
        })
    }

    /// Records the span, from its start until now, with the attributes `fixed` (see
    /// [`fixed_attributes`]).
    pub fn finish(self, name: &'static str, kind: SpanKind, fixed: Bytes, failed: bool) {
        let mut span = self.tracer.start(
            &self.parent,
            name.into(),
            kind,
            self.start,
            fixed,
            Vec::new(),
        );
        if failed && let Some(recording) = &mut span.recording {
            recording.status = Status::error("");
        }
        // Ended (recorded) as it drops.
    }
}

/// A root span of `tracer` (e.g. a publish, linked to the request that caused it).
pub fn root(
    tracer: &Tracer,
    name: impl Into<Cow<'static, str>>,
    kind: SpanKind,
    attributes: Vec<KeyValue>,
    links: Vec<Link>,
) -> Span {
    let mut span = tracer.start(
        &Context::new(),
        name.into(),
        kind,
        SystemTime::now(),
        Bytes::new(),
        attributes,
    );
    if let Some(recording) = &mut span.recording {
        recording.links = links;
    }
    span
}

pin_project_lite::pin_project! {
    /// A future that runs in a traced operation's [`Context`] (attached at each poll).
    pub struct Traced<F> {
        #[pin]
        inner: F,
        cx: Option<Context>,
    }
}

impl<F> Traced<F> {
    /// `inner`, run in `cx` when there is one.
    pub fn new(inner: F, cx: Option<Context>) -> Self {
        Self { inner, cx }
    }
}

impl<F: Future> Future for Traced<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, task: &mut TaskContext<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _attached = this.cx.as_ref().map(|cx| cx.clone().attach());
        this.inner.poll(task)
    }
}

/// `inner`, in the current traced operation (if any): for a task spawned on its behalf.
pub fn in_current<F>(inner: F) -> Traced<F> {
    let cx = Context::map_current(|cx| cx.get::<Active>().is_some().then(|| cx.clone()));
    Traced::new(inner, cx)
}

/// The `traceparent` of the current traced operation's span.
pub fn traceparent() -> Option<String> {
    with_active(|_, cx| {
        let span = cx.span();
        let context = span.span_context();
        context.is_valid().then(|| {
            let mut text = String::with_capacity(55);
            text.push_str("00-");
            push_hex(&mut text, &context.trace_id().to_bytes());
            text.push('-');
            push_hex(&mut text, &context.span_id().to_bytes());
            text.push('-');
            push_hex(&mut text, &[context.trace_flags().to_u8()]);
            text
        })
    })
    .flatten()
}

/// `bytes` in lower-case hex digits (as W3C trace context writes ids).
fn push_hex(text: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
}

/// The trace id of the span of `cx`, in 32 lower-case hex digits, if valid.
pub fn trace_id(cx: &Context) -> Option<Box<str>> {
    let span = cx.span();
    let context = span.span_context();
    context.is_valid().then(|| {
        let mut text = String::with_capacity(32);
        push_hex(&mut text, &context.trace_id().to_bytes());
        text.into_boxed_str()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_sampling_decides_by_the_trace_ids_low_bits_as_the_sdk_does() {
        let ratio = |ratio, parent_based| Sampler {
            parent_based,
            root: Root::Ratio(ratio),
        };
        let none = SpanContext::NONE;
        // Low 8 bytes 0x00…: under any positive ratio; 0xff…: over any ratio below 1.
        let low = TraceId::from(0x1234_0000_0000_0000_0000_0000_0000_0001);
        let high = TraceId::from(0x1234_0000_0000_0000_ffff_ffff_ffff_fff0);
        assert!(ratio(0.5, false).sampled(&none, low));
        assert!(!ratio(0.5, false).sampled(&none, high));
        assert!(ratio(1.0, false).sampled(&none, high));
        assert!(!ratio(0.0, false).sampled(&none, low));
        // Parent-based: a valid parent decides, whatever the ratio says.
        let parent = |flags| SpanContext::new(high, SpanId::from(9), flags, true, TraceState::NONE);
        assert!(ratio(0.0, true).sampled(&parent(TraceFlags::SAMPLED), low));
        assert!(!ratio(1.0, true).sampled(&parent(TraceFlags::default()), low));
        // Not parent-based: the ratio alone.
        assert!(ratio(1.0, false).sampled(&parent(TraceFlags::default()), high));
    }
}
