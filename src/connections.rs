//! Limits on connections and on the time a peer may take, so idle or slow peers cannot hold
//! the server's sockets, descriptors or call budget.
//!
//! - [`Connections`]: at most `MAX_CONNECTIONS` open at once; the accept loop closes any
//!   connection beyond it at once (the peer reads EOF) rather than leaving it queued.
//! - [`IdleIo`]: the socket of one connection, which reads EOF (so hyper closes the
//!   connection) when the peer sent nothing at all for `HEADER_READ_TIMEOUT` after
//!   connecting, or when no call was in flight for `CONNECTION_IDLE_TIMEOUT`. hyper's own
//!   timeouts do not cover this: the protocol sniffing of its auto builder waits for the
//!   first bytes for ever, and HTTP/2 has no idle timeout (its keepalive pings are answered
//!   by an idle peer). An open stream (a watch) is a call in flight, never idle.
//! - [`Tracked`]: the service of one connection, counting its calls in flight for
//!   [`IdleIo`] (from the request until its response body is dropped) and giving each
//!   request body a deadline ([`DeadlineBody`]): a body still incomplete
//!   `REQUEST_BODY_TIMEOUT` after its headers fails with a `TimedOut` I/O error, which the
//!   gRPC stack answers DEADLINE_EXCEEDED and the REST gateway 408. The bodies of the
//!   streaming uploads ([`STREAMED_UPLOADS`]: ImportCustomers over gRPC, gRPC-web and REST)
//!   may take as long as their file takes: for them the deadline is per part, each due
//!   `REQUEST_BODY_TIMEOUT` after the one before.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http::{Request, Response};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};
use tower::Service;

/// The open connections, capped.
#[derive(Debug)]
pub struct Connections {
    open: Arc<AtomicUsize>,
    refused: AtomicU64,
    max: usize,
}

impl Connections {
    /// At most `max` connections at once (at least one).
    pub fn new(max: usize) -> Self {
        Self {
            open: Arc::new(AtomicUsize::new(0)),
            refused: AtomicU64::new(0),
            max: max.max(1),
        }
    }

    /// A slot for a new connection, held until the connection ends; `None` (and counted)
    /// when `max` connections are open.
    pub fn admit(&self) -> Option<ConnectionSlot> {
        let admitted = self
            .open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |open| {
                (open < self.max).then_some(open + 1)
            })
            .is_ok();
        if !admitted {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(ConnectionSlot {
            open: self.open.clone(),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Connections closed at once because `max` were open.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// One admitted connection; dropping it frees its slot.
#[derive(Debug)]
pub struct ConnectionSlot {
    open: Arc<AtomicUsize>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The timeouts of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For the first bytes after connecting.
    pub first_bytes: Duration,
    /// Without a call in flight.
    pub idle: Duration,
    /// For a request body, from its headers to its end.
    pub request_body: Duration,
}

/// What one connection is doing: calls in flight, and since when none is.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
    /// The connection's reader, woken when the last call in flight ends.
    reader: AtomicWaker,
}

impl Activity {
    /// A connection that has just been accepted.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            reader: AtomicWaker::new(),
        })
    }

    fn begin(self: &Arc<Self>) -> CallGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        CallGuard {
            activity: self.clone(),
        }
    }

    /// When the connection became idle; `None` while a call is in flight.
    fn idle_since(&self) -> Option<Instant> {
        let since = *self
            .idle_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (self.in_flight.load(Ordering::SeqCst) == 0).then_some(since)
    }
}

/// One call in flight; dropped with its response body.
#[derive(Debug)]
struct CallGuard {
    activity: Arc<Activity>,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        // The time first, so a reader that sees no call in flight sees when the last ended.
        *self
            .activity
            .idle_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
        if self.activity.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.activity.reader.wake();
        }
    }
}

pin_project_lite::pin_project! {
    /// A connection's transport that reads EOF once the connection is idle past its
    /// timeouts (see the module documentation).
    pub struct IdleIo<T> {
        #[pin]
        io: T,
        activity: Arc<Activity>,
        timeouts: Timeouts,
        received: bool,
        // Boxed: the transport must be `Unpin` for hyper's connections.
        timer: Pin<Box<Sleep>>,
    }
}

impl<T> IdleIo<T> {
    /// `io` of a connection doing `activity`.
    pub fn new(io: T, activity: Arc<Activity>, timeouts: Timeouts) -> Self {
        Self {
            io,
            activity,
            timeouts,
            received: false,
            timer: Box::pin(tokio::time::sleep(timeouts.first_bytes)),
        }
    }
}

impl<T: AsyncRead> AsyncRead for IdleIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        if let Poll::Ready(result) = this.io.poll_read(cx, buf) {
            *this.received |= buf.filled().len() > before;
            return Poll::Ready(result);
        }
        this.activity.reader.register(cx.waker());
        loop {
            // Busy: the last call's end wakes this reader again.
            let Some(since) = this.activity.idle_since() else {
                return Poll::Pending;
            };
            let deadline = since
                + if *this.received {
                    this.timeouts.idle
                } else {
                    this.timeouts.first_bytes
                };
            if Instant::now() >= deadline {
                tracing::debug!("closing an idle connection");
                return Poll::Ready(Ok(()));
            }
            if this.timer.deadline() != deadline {
                this.timer.as_mut().reset(deadline);
            }
            if this.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl<T: AsyncWrite> AsyncWrite for IdleIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The service of one connection: counts its calls in flight and puts a deadline on each
/// request body.
#[derive(Debug, Clone)]
pub struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
    body_timeout: Duration,
}

impl<S> Tracked<S> {
    /// `inner` serving a connection doing `activity`; request bodies get `body_timeout`.
    pub fn new(inner: S, activity: Arc<Activity>, body_timeout: Duration) -> Self {
        Self {
            inner,
            activity,
            body_timeout,
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request paths whose bodies are uploads of any length: their deadline is per part.
pub const STREAMED_UPLOADS: &[&str] = &[
    "/customer.v1.CustomerService/ImportCustomers",
    "/v1/customers:import",
];

impl<S, B, RB> Service<Request<B>> for Tracked<S>
where
    S: Service<Request<DeadlineBody<B>>, Response = Response<RB>>,
    S::Future: Send + 'static,
    RB: http_body::Body,
{
    type Response = Response<GuardedBody<RB>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let guard = self.activity.begin();
        let timeout = self.body_timeout;
        let per_part = STREAMED_UPLOADS.contains(&request.uri().path());
        let mut request = request.map(|body| DeadlineBody::new(body, timeout).per_part(per_part));
        // For layers that see the body through others that lose the error's cause.
        request
            .extensions_mut()
            .insert(BodyDeadline(Instant::now() + timeout));
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await?;
            Ok(response.map(|body| GuardedBody {
                inner: body,
                _guard: guard,
            }))
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its call counted as in flight until it is dropped.
    pub struct GuardedBody<B> {
        #[pin]
        inner: B,
        _guard: CallGuard,
    }
}

impl<B: http_body::Body> http_body::Body for GuardedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A request body that fails with a `TimedOut` I/O error ([`BodyTimedOut`] inside) when
    /// it has not ended by its deadline.
    pub struct DeadlineBody<B> {
        #[pin]
        inner: B,
        #[pin]
        deadline: Sleep,
        timeout: Duration,
        expired: bool,
        per_part: bool,
    }
}

impl<B> DeadlineBody<B> {
    /// `inner`, due within `timeout` from now.
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: tokio::time::sleep(timeout),
            timeout,
            expired: false,
            per_part: false,
        }
    }

    /// With `per_part`, each part of the body is due within the timeout of the one before
    /// (an upload of any length), rather than the whole body within the timeout.
    pub fn per_part(mut self, per_part: bool) -> Self {
        self.per_part = per_part;
        self
    }
}

/// When a request's body is due (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline(pub Instant);

/// The request body did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} ms", .0.as_millis())]
pub struct BodyTimedOut(Duration);

impl<B> http_body::Body for DeadlineBody<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if *this.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            if *this.per_part {
                this.deadline.reset(Instant::now() + *this.timeout);
            }
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        if this.deadline.poll(cx).is_ready() {
            *this.expired = true;
            let error = io::Error::new(io::ErrorKind::TimedOut, BodyTimedOut(*this.timeout));
            return Poll::Ready(Some(Err(Box::new(error))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.expired || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_beyond_the_cap_are_refused_and_slots_come_back() {
        let connections = Connections::new(2);
        let first = connections.admit().expect("first");
        let _second = connections.admit().expect("second");
        assert!(connections.admit().is_none());
        assert_eq!((connections.open(), connections.refused()), (2, 1));
        drop(first);
        assert!(connections.admit().is_some());
        assert_eq!(connections.open(), 1);
    }
}
