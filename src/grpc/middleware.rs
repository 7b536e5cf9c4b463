//! One shape for the middleware around the gRPC services: deadlines
//! ([`super::deadline`]), metrics ([`crate::metrics`]), load shedding and authentication
//! ([`crate::auth`]).
//!
//! A middleware says only what it does with one call ([`Middleware::call`]); [`Wrapped`] is
//! the one tower [`Service`] around them all, so readiness, service naming and the boxed
//! response future are written once. Every middleware answers errors as gRPC statuses in a
//! normal response (the inner service's error type passes through untouched).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use tonic::{Code, Status, body::Body, server::NamedService};
use tower::Service;

/// The answer of a wrapped call.
pub type ResponseFuture<E> = Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>;

/// What a middleware can wrap: a gRPC service taking requests with bodies of type `B`
/// (tonic's generated servers, and anything already wrapped around them).
pub trait Inner<B>:
    Service<Request<B>, Response = Response<Body>, Future: Send + 'static> + Clone + Send + 'static
{
}

impl<S, B> Inner<B> for S where
    S: Service<Request<B>, Response = Response<Body>, Future: Send + 'static>
        + Clone
        + Send
        + 'static
{
}

/// What happens around each call of a gRPC service `S` taking request bodies of type `B`.
pub trait Middleware<S: Service<Request<B>>, B> {
    /// Handles `request` with `inner`, which is ready: calls it and adapts its answer, or
    /// answers without calling it.
    fn call(&self, inner: &mut S, request: Request<B>) -> ResponseFuture<S::Error>;
}

/// A gRPC service behind a [`Middleware`]; keeps the inner service's name.
#[derive(Debug, Clone)]
pub struct Wrapped<M, S> {
    middleware: M,
    inner: S,
}

impl<M, S> Wrapped<M, S> {
    /// `inner` behind `middleware` (what a tower `Layer` would build).
    pub fn new(middleware: M, inner: S) -> Self {
        Self { middleware, inner }
    }
}

impl<M, S: NamedService> NamedService for Wrapped<M, S> {
    const NAME: &'static str = S::NAME;
}

impl<M: Middleware<S, B>, S: Service<Request<B>>, B> Service<Request<B>> for Wrapped<M, S> {
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.middleware.call(&mut self.inner, request)
    }
}

/// What to do once a call's status is known: see [`on_status`].
pub trait StatusHook: Send + 'static {
    /// The call ended with `code`. `metadata` is where its status travels (the trailers, or
    /// the headers of a trailers-only answer) and may be changed; `None` when the body ended
    /// without one or was dropped (then `code` is `Cancelled`).
    fn status(self, code: Code, metadata: Option<&mut HeaderMap>);
}

impl<F: FnOnce(Code, Option<&mut HeaderMap>) + Send + 'static> StatusHook for F {
    fn status(self, code: Code, metadata: Option<&mut HeaderMap>) {
        self(code, metadata)
    }
}

/// Calls `inner` with `request` and, when there is a `hook`, hands it the call's status
/// ([`on_status`]).
pub fn call_with_hook<S: Inner<B>, B>(
    inner: &mut S,
    request: Request<B>,
    hook: Option<impl StatusHook>,
) -> ResponseFuture<S::Error> {
    let call = inner.call(request);
    Box::pin(async move {
        let response = call.await?;
        Ok(match hook {
            Some(hook) => on_status(response, hook),
            None => response,
        })
    })
}

/// `response` with `hook` called once with its status: at once for a trailers-only answer,
/// else when the trailers go by the body; a body dropped first (the client went away) is
/// `Cancelled`, one that ends without trailers `Unknown` (gRPC always sends a status).
pub fn on_status(mut response: Response<Body>, hook: impl StatusHook) -> Response<Body> {
    if let Some(code) = crate::observe::status_code(response.headers()) {
        hook.status(code, Some(response.headers_mut()));
        return response;
    }
    response.map(|inner| {
        Body::new(StatusBody {
            inner,
            hook: Some(hook),
        })
    })
}

pin_project_lite::pin_project! {
    /// A response body that calls its hook when the status goes by.
    struct StatusBody<H: StatusHook> {
        #[pin]
        inner: Body,
        hook: Option<H>,
    }

    impl<H: StatusHook> PinnedDrop for StatusBody<H> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(hook) = this.project().hook.take() {
                hook.status(Code::Cancelled, None);
            }
        }
    }
}

impl<H: StatusHook> http_body::Body for StatusBody<H> {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        let this = self.project();
        let mut frame = ready!(this.inner.poll_frame(cx));
        match &mut frame {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_mut()
                    && let Some(hook) = this.hook.take()
                {
                    let code = crate::observe::status_code(trailers).unwrap_or(Code::Unknown);
                    hook.status(code, Some(trailers));
                }
            }
            Some(Err(status)) => {
                if let Some(hook) = this.hook.take() {
                    hook.status(status.code(), None);
                }
            }
            None => {
                if let Some(hook) = this.hook.take() {
                    hook.status(Code::Unknown, None);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serves the calls of a second gRPC service, `T` (those whose path is under `/{T::NAME}/`),
/// in front of the wrapped one: two services then share one stack of middleware (limits,
/// authentication, metrics) and one in-process entry for the gateway and Connect.
#[derive(Debug, Clone)]
pub struct Also<T> {
    service: T,
}

impl<T: NamedService> Also<T> {
    /// Routes `T::NAME`'s calls to `service`.
    pub fn new(service: T) -> Self {
        Self { service }
    }
}

impl<T, S, B> Middleware<S, B> for Also<T>
where
    T: Inner<B, Error = S::Error> + NamedService,
    S: Inner<B>,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    fn call(&self, inner: &mut S, request: Request<B>) -> ResponseFuture<S::Error> {
        let ours = request
            .uri()
            .path()
            .strip_prefix('/')
            .and_then(|path| path.strip_prefix(T::NAME))
            .is_some_and(|rest| rest.starts_with('/'));
        if !ours {
            return Box::pin(inner.call(request));
        }
        let mut service = self.service.clone();
        Box::pin(async move {
            std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
            service.call(request).await
        })
    }
}
