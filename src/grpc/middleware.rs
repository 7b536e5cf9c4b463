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
    task::{Context, Poll},
};

use http::{Request, Response};
use tonic::{body::Body, server::NamedService};
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
