//! The public listener's connections: how many may be open at once, and how long a
//! request's headers may take to arrive.
//!
//! Pingora times each read of a request's headers, not the whole: a client sending one
//! byte every few seconds holds its connection for ever. [`Guarded`] wraps the HTTP
//! application and hands it each connection's stream wrapped in a [`Watched`], which
//! counts the connection while it is open and fails a read once the headers have taken
//! longer than `limits.header_timeout` (from the connection's start for its first request,
//! from the first byte of the next ones: the idle time between requests is the keep-alive
//! timeout's). A connection over `limits.max_connections` is answered 503 and closed before
//! anything is read from it.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use hookrelay_config::Live;
use pingora::apps::ServerApp;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType,
};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Sleep;

use crate::metrics::Metrics;

/// What a connection over the cap is answered before it is closed.
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 33\r\nretry-after: 1\r\nconnection: close\r\n\r\ntoo many connections; retry later\n";

/// The most connections `max_connections: auto` allows, whatever the open-file limit.
const AUTO_MAX: usize = 16_384;

/// The connection cap `max_connections: auto` stands for: half the open-file limit (each
/// proxied request also opens a connection upstream, and deliveries and the store need
/// files too), at most [`AUTO_MAX`].
pub(crate) fn auto_max_connections(open_files: u64) -> usize {
    usize::try_from(open_files / 2).map_or(AUTO_MAX, |n| n.clamp(16, AUTO_MAX))
}

/// An HTTP application whose connections are counted, capped and given a header deadline.
pub(crate) struct Guarded<A> {
    inner: Arc<A>,
    live: Arc<Live>,
    metrics: Arc<Metrics>,
    /// What `max_connections: auto` stands for on this machine.
    auto_max: usize,
}

impl<A> Guarded<A> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: A, live: Arc<Live>, metrics: Arc<Metrics>, auto_max: usize) -> Self {
        Self {
            inner: Arc::new(inner),
            live,
            metrics,
            auto_max,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Guarded<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let limits = self.live.snapshot().limits;
        let stream: Stream = if stream.as_any().is::<Watched>() {
            // The same connection, back for its next request: its headers' clock starts at
            // their first byte.
            let Ok(mut watched) = stream.into_any().downcast::<Watched>() else {
                return None;
            };
            watched.phase = Phase::Idle;
            watched.header_timeout = limits.header_timeout;
            watched
        } else {
            let max = limits.max_connections.unwrap_or(self.auto_max);
            let Some(slot) = Slot::take(&self.metrics, max) else {
                self.metrics.connection_dropped("max_connections");
                tracing::warn!(
                    max_connections = max,
                    "connection refused: the listener is at max_connections"
                );
                refuse(stream).await;
                return None;
            };
            Box::new(Watched {
                inner: stream,
                phase: Phase::headers(limits.header_timeout),
                header_timeout: limits.header_timeout,
                seen_newline: false,
                metrics: self.metrics.clone(),
                _slot: slot,
            })
        };
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}

/// Answers a connection over the cap, briefly, and closes it.
async fn refuse(mut stream: Stream) {
    let answer = async {
        stream.write_all(OVER_CAPACITY).await?;
        stream.flush().await
    };
    let _ = tokio::time::timeout(Duration::from_millis(200), answer).await;
    Shutdown::shutdown(&mut *stream).await;
}

/// One open connection, counted in the metrics until it is dropped.
struct Slot(Arc<Metrics>);

impl Slot {
    /// A slot if fewer than `max` connections are open.
    fn take(metrics: &Arc<Metrics>, max: usize) -> Option<Self> {
        metrics
            .connection_open(max)
            .then(|| Self(Arc::clone(metrics)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.connection_closed();
    }
}

/// Where a connection is in its current request.
enum Phase {
    /// Between requests: nothing read yet (the keep-alive timeout applies).
    Idle,
    /// Reading a request's headers, which must be complete when this fires.
    Headers(Pin<Box<Sleep>>),
    /// Headers read: the body and the answer are timed elsewhere.
    Body,
}

impl Phase {
    fn headers(timeout: Duration) -> Self {
        Self::Headers(Box::pin(tokio::time::sleep(timeout)))
    }
}

/// A connection's stream, with its slot and its header deadline.
pub(crate) struct Watched {
    inner: Stream,
    phase: Phase,
    header_timeout: Duration,
    /// The last byte of the headers read so far ended a line (`\r` aside).
    seen_newline: bool,
    metrics: Arc<Metrics>,
    _slot: Slot,
}

impl fmt::Debug for Watched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watched")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl Watched {
    /// Follows the bytes just read: the first byte of a request starts its clock, an empty
    /// line ends its headers.
    fn saw(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if matches!(self.phase, Phase::Idle) {
            self.phase = Phase::headers(self.header_timeout);
            self.seen_newline = false;
        }
        if !matches!(self.phase, Phase::Headers(_)) {
            return;
        }
        if end_of_headers(&mut self.seen_newline, bytes) {
            self.phase = Phase::Body;
        }
    }
}

/// Whether `bytes`, following bytes that ended a line when `seen_newline`, hold an empty
/// line (`\n\n` or `\r\n\r\n`, as HTTP parsers accept both); updates `seen_newline`.
fn end_of_headers(seen_newline: &mut bool, bytes: &[u8]) -> bool {
    for &b in bytes {
        match b {
            b'\n' if *seen_newline => return true,
            b'\n' => *seen_newline = true,
            b'\r' => {}
            _ => *seen_newline = false,
        }
    }
    false
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.saw(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if let Phase::Headers(deadline) = &mut this.phase
                    && deadline.as_mut().poll(cx).is_ready()
                {
                    this.phase = Phase::Body;
                    this.metrics.connection_dropped("header_timeout");
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "request headers not complete within {:?} (limits.header_timeout)",
                            this.header_timeout
                        ),
                    )));
                }
                Poll::Pending
            }
            ready => ready,
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for Watched {
    async fn shutdown(&mut self) {
        Shutdown::shutdown(&mut *self.inner).await;
    }
}

impl UniqueID for Watched {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Watched {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<pingora::protocols::ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Watched {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Watched {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for Watched {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for Watched {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::{auto_max_connections, end_of_headers};

    #[test]
    fn the_end_of_headers_is_an_empty_line_across_reads() {
        let mut nl = false;
        assert!(!end_of_headers(&mut nl, b"GET / HTTP/1.1\r\nHost: a\r"));
        assert!(!end_of_headers(&mut nl, b"\n\r"));
        assert!(end_of_headers(&mut nl, b"\nbody"));
        let mut nl = false;
        assert!(end_of_headers(&mut nl, b"GET / HTTP/1.1\nHost: a\n\n"));
        let mut nl = false;
        assert!(!end_of_headers(
            &mut nl,
            b"GET / HTTP/1.1\r\nHost: a\r\nX: \r"
        ));
        assert!(!nl);
    }

    #[test]
    fn auto_is_half_the_open_files_within_bounds() {
        assert_eq!(auto_max_connections(20_000), 10_000);
        assert_eq!(auto_max_connections(1024), 512);
        assert_eq!(auto_max_connections(1 << 20), 16_384);
        assert_eq!(auto_max_connections(10), 16);
    }
}
