//! Spans built with the OpenTelemetry API directly, not through `tracing`.
//!
//! Through `tracing-opentelemetry` every span took two trips through the subscriber (a slot
//! in the registry, an extension map, a `SpanBuilder` whose attributes were visited and
//! copied into `String`s, then at close the SDK span built from it), about 5k instructions
//! per span before the SDK's own work; a GetCustomer has three spans, a CreateCustomer nine.
//! Here a span is an SDK span from the start, its attributes `KeyValue`s with `&'static str`
//! keys (and values where they are constant), and the parent is the OpenTelemetry
//! [`Context`] of the traced operation:
//!
//! - the request's server span ([`crate::observe`]) is started with [`start_server`], and
//!   its context (the span, and the [`SdkTracer`] its children use) is attached while the
//!   request's future is polled ([`Traced`]);
//! - work inside it opens child spans with [`child`] (pool checkout, registry request) or
//!   [`ChildStart`] (statements, whose attributes are known only when they finish); outside
//!   a traced operation — tracing off, a background task — there is no such context and a
//!   child costs one thread-local look;
//! - tasks spawned for a request keep its context with [`in_current`].
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
    task::{Context as TaskContext, Poll},
    time::SystemTime,
};

use opentelemetry::{
    Context, KeyValue,
    trace::{Span as _, SpanBuilder, SpanKind, Status, TraceContextExt, Tracer as _},
};
use opentelemetry_sdk::trace::{SdkTracer, Span};

/// Carries the tracer in a subscriber (see the module docs); takes nothing.
#[derive(Debug, Clone)]
pub(crate) struct TracerLayer {
    pub(crate) tracer: SdkTracer,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for TracerLayer {}

/// The tracer of the current dispatcher, when it exports traces.
pub fn tracer() -> Option<SdkTracer> {
    tracing::dispatcher::get_default(|dispatch| {
        dispatch
            .downcast_ref::<TracerLayer>()
            .map(|layer| layer.tracer.clone())
    })
}

/// The tracer of a traced operation, in its [`Context`].
#[derive(Debug, Clone)]
struct Active(SdkTracer);

/// Starts the server span of a request as a child of `parent` (the caller's context, from
/// `traceparent`, or none): the context to attach while the request runs.
pub fn start_server(
    tracer: SdkTracer,
    parent: &Context,
    name: Cow<'static, str>,
    attributes: Vec<KeyValue>,
) -> Context {
    let span = tracer.build_with_context(
        SpanBuilder::from_name(name)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes),
        parent,
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
fn with_active<T>(f: impl FnOnce(&SdkTracer, &Context) -> T) -> Option<T> {
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
    with_active(|tracer, cx| {
        tracer.build_with_context(
            SpanBuilder::from_name(name)
                .with_kind(kind)
                .with_attributes(attributes()),
            cx,
        )
    })
}

/// The context of a child `span` (to inject into an outgoing request).
pub fn context_of(span: &Span) -> Context {
    // `Context::with_remote_span_context` would do as well: only the ids travel.
    Context::new().with_remote_span_context(span.span_context().clone())
}

/// A child span whose name and attributes are known only when it finishes: the start time
/// and the parent are taken now, the span is built by [`ChildStart::finish`].
#[derive(Debug)]
pub struct ChildStart {
    tracer: SdkTracer,
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

    /// Records the span, from its start until now.
    pub fn finish(
        self,
        name: &'static str,
        kind: SpanKind,
        attributes: Vec<KeyValue>,
        failed: bool,
    ) {
        let mut span = self.tracer.build_with_context(
            SpanBuilder::from_name(name)
                .with_kind(kind)
                .with_start_time(self.start)
                .with_attributes(attributes),
            &self.parent,
        );
        if failed {
            span.set_status(Status::error(""));
        }
        span.end();
    }
}

/// A root span of `tracer` (e.g. a publish, linked to the request that caused it).
pub fn root(
    tracer: &SdkTracer,
    name: impl Into<Cow<'static, str>>,
    kind: SpanKind,
    attributes: Vec<KeyValue>,
    links: Vec<opentelemetry::trace::Link>,
) -> Span {
    tracer.build_with_context(
        SpanBuilder::from_name(name)
            .with_kind(kind)
            .with_attributes(attributes)
            .with_links(links),
        &Context::new(),
    )
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
            format!(
                "00-{}-{}-{:02x}",
                context.trace_id(),
                context.span_id(),
                context.trace_flags().to_u8()
            )
        })
    })
    .flatten()
}

/// The trace id of the span of `cx`, in 32 lower-case hex digits, if valid.
pub fn trace_id(cx: &Context) -> Option<Box<str>> {
    let span = cx.span();
    let context = span.span_context();
    context.is_valid().then(|| {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = String::with_capacity(32);
        for byte in context.trace_id().to_bytes() {
            text.push(char::from(HEX[usize::from(byte >> 4)]));
            text.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        text.into_boxed_str()
    })
}
