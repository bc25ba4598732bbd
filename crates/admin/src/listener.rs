//! The admin listener's accept loop. axum's own `serve` gives hyper no timer, so a
//! client that sends half a request head, dribbles a body or never reads its answer
//! would hold a connection (and a task) for ever. Here every connection is bounded:
//!
//! - at most [`ListenerLimits::max_connections`] at a time; one more is closed at once;
//! - the request head must arrive within `header_timeout` (hyper's header timer);
//! - the request body must arrive within `request_timeout` of the head ([`DeadlineBody`]);
//! - a connection on which no byte moves either way for `idle_timeout` is closed
//!   ([`IdleIo`]), which also ends idle keep-alive connections and clients that stop
//!   reading their answer.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::auth::PeerAddr;

/// Bounds on each admin connection. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// How long connections still open at shutdown may take to finish their request.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Accepts on `listener` and serves `app` on each connection within `limits`, until
/// `shutdown`; then lets open requests finish (at most [`SHUTDOWN_GRACE`]).
pub async fn serve_connections<L>(
    mut listener: L,
    app: Router,
    limits: ListenerLimits,
    mut shutdown: watch::Receiver<bool>,
) where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let last_full_warning = AtomicU64::new(0);
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            // Full: close this one rather than queue it, so the ones being served keep
            // their memory and an attacker's connections cannot starve the accept loop.
            warn_at_most_once_a_minute(&last_full_warning, peer, limits.max_connections);
            drop(io);
            continue;
        };
        let app = app.clone();
        let request_timeout = limits.request_timeout;
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let app = app.clone();
            async move {
                let mut request =
                    request.map(|body| Body::new(DeadlineBody::new(body, request_timeout)));
                request.extensions_mut().insert(ConnectInfo(PeerAddr(peer)));
                app.oneshot(request).await
            }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .keep_alive(true)
            .serve_connection(TokioIo::new(IdleIo::new(io, limits.idle_timeout)), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(%peer, "admin connection ended: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        debug!("admin connections still open after the shutdown grace; dropped");
    }
}

fn warn_at_most_once_a_minute(last: &AtomicU64, peer: SocketAddr, max: usize) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let before = last.load(Ordering::Relaxed);
    if now >= before + 60
        && last
            .compare_exchange(before, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        warn!(
            %peer,
            "admin listener full ({max} connections, [admin] max_connections): closing new ones"
        );
    } else {
        debug!(%peer, "admin listener full: connection closed");
    }
}

/// A request body that must be complete by a deadline set when the head arrived:
/// a client dribbling its body a byte at a time gets an error, not a task for ever.
pub struct DeadlineBody<B> {
    inner: B,
    deadline: Pin<Box<Sleep>>,
    limit: Duration,
}

impl<B> DeadlineBody<B> {
    pub fn new(inner: B, limit: Duration) -> Self {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            limit,
        }
    }
}

/// The error a late body ends with (axum answers the extraction with 400).
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?} ([admin] request_timeout)")]
pub struct BodyTimedOut(Duration);

impl<B> hyper::body::Body for DeadlineBody<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut(this.limit))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A stream that fails with `TimedOut` once no byte has moved in either direction
/// for `idle`: reads and writes that make progress push the deadline back.
pub struct IdleIo<S> {
    inner: S,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<S> IdleIo<S> {
    pub fn new(inner: S, idle: Duration) -> Self {
        IdleIo {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn moved(&mut self) {
        let next = Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    /// On `Pending` from the stream: time out if the deadline has passed.
    fn check(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no data moved for {:?} ([admin] idle_timeout)", self.idle),
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.moved();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.check(cx).map(Err),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, data) {
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    this.moved();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.check(cx).map(Err),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => this.check(cx).map(Err),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => this.check(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    this.moved();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.check(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn an_idle_stream_times_out_and_a_busy_one_does_not() {
        let (client, server) = tokio::io::duplex(64);
        let mut server = IdleIo::new(server, Duration::from_secs(5));
        let mut client = client;
        // Bytes every 3 s keep it alive past 5 s.
        let writer = tokio::spawn(async move {
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_secs(3)).await;
                client.write_all(b"x").await.unwrap();
            }
            client
        });
        let mut byte = [0u8; 1];
        for _ in 0..4 {
            server.read_exact(&mut byte).await.unwrap();
        }
        let _client = writer.await.unwrap();
        // Then silence: the next read fails with TimedOut.
        let error = server.read_exact(&mut byte).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_nobody_reads_times_out() {
        let (_client, server) = tokio::io::duplex(8);
        let mut server = IdleIo::new(server, Duration::from_secs(5));
        let error = server.write_all(&[0u8; 64]).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_does_not_finish_by_the_deadline_fails() {
        use http_body_util::BodyExt;
        let (mut sender, body) = http_body_util::channel::Channel::<Bytes>::new(4);
        let mut body = DeadlineBody::new(body, Duration::from_secs(5));
        sender.send_data(Bytes::from_static(b"a")).await.unwrap();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), Bytes::from_static(b"a"));
        // Nothing more: the deadline (from the start, not from the last frame) ends it.
        let error = body.frame().await.unwrap().unwrap_err();
        assert!(error.to_string().contains("request_timeout"), "{error}");
        drop(sender);
    }
}
