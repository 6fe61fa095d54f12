//! The public listener's connections: how many may be open at once, and how a request's
//! head is read before Pingora sees it.
//!
//! Pingora times each read of a request's headers, not the whole, lets them grow to 1 MiB,
//! and sets up its whole request machinery (some tens of KiB) for a connection before its
//! first byte: a client sending one byte every few seconds holds all of it for ever.
//! [`Guarded`] wraps the HTTP application and reads each request's head itself first,
//! into a buffer that starts at 1 KiB, grows to at most `limits.header_bytes` and is
//! counted in `limits.unverified_bytes`, within `limits.header_timeout` (from the
//! connection's start for its first request, from the first byte for the next ones; the
//! idle time between requests is `limits.keepalive_timeout`). Only a complete head is
//! handed on, in a [`Watched`] stream that replays it. A connection over
//! `limits.max_connections` is answered 503 and closed before anything is read.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, Bytes, BytesMut};
use hookrelay_config::{Limits, Live};
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType,
};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

use super::budget::{Budget, Claim};
use crate::metrics::Metrics;

/// The most connections `max_connections: auto` allows, whatever the open-file limit.
const AUTO_MAX: usize = 16_384;

/// A request head's buffer to start with.
const FIRST_HEAD_BYTES: usize = 1024;

/// The connection cap `max_connections: auto` stands for: half the open-file limit (each
/// proxied request also opens a connection upstream, and deliveries and the store need
/// files too), at most [`AUTO_MAX`].
pub(crate) fn auto_max_connections(open_files: u64) -> usize {
    usize::try_from(open_files / 2).map_or(AUTO_MAX, |n| n.clamp(16, AUTO_MAX))
}

/// Why a connection is closed before its request reaches Pingora.
enum Stop {
    /// The client went away, or the server is shutting down, or a kept-alive connection
    /// stayed idle: nothing to answer or count.
    Quiet,
    /// A limit bit: its name (the metric's label) and the status answered.
    Limit(&'static str, u16, &'static str),
}

/// An HTTP application whose connections are counted and capped, and whose requests'
/// heads are read (bounded in time and bytes) before it sees them.
pub(crate) struct Guarded<A> {
    inner: Arc<A>,
    live: Arc<Live>,
    metrics: Arc<Metrics>,
    budget: Arc<Budget>,
    /// What `max_connections: auto` stands for on this machine.
    auto_max: usize,
}

impl<A> Guarded<A> {
    /// Wraps `inner`; request heads are counted in `budget`.
    pub(crate) fn new(
        inner: A,
        live: Arc<Live>,
        metrics: Arc<Metrics>,
        budget: Arc<Budget>,
        auto_max: usize,
    ) -> Self {
        Self {
            inner: Arc::new(inner),
            live,
            metrics,
            budget,
            auto_max,
        }
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for Guarded<A> {
    /// One connection: counted and capped, then each of its requests' heads read here
    /// before Pingora's HTTP/1.1 session gets them. This is Pingora's own keep-alive loop
    /// (`ServerApp for HttpServerApp`, which runs every request of a connection in one
    /// call), with the head of every request, not just the first, read by
    /// [`Watched::read_head`]. The listener speaks HTTP/1.1 only (no TLS, no h2c).
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let limits = self.live.snapshot().limits;
        let max = limits.max_connections.unwrap_or(self.auto_max);
        let Some(slot) = Slot::take(&self.metrics, max) else {
            self.metrics.connection_dropped("max_connections");
            tracing::warn!(
                max_connections = max,
                "connection refused: the listener is at max_connections"
            );
            answer_and_close(stream, 503, "too many connections; retry later").await;
            return None;
        };
        let mut watched = Box::new(Watched {
            inner: stream,
            head: Bytes::new(),
            head_claim: None,
            _slot: slot,
        });
        let mut settings = None;
        let mut fresh = true;
        loop {
            // Each request reads the limits in force when it starts.
            let limits = self.live.snapshot().limits;
            match watched
                .read_head(&self.budget, &limits, fresh, shutdown)
                .await
            {
                Ok(()) => {}
                Err(Stop::Quiet) => return None,
                Err(Stop::Limit(limit, status, reason)) => {
                    self.metrics.connection_dropped(limit);
                    tracing::warn!(limit, status, "connection closed: {reason}");
                    answer_and_close(watched.inner, status, reason).await;
                    return None;
                }
            }
            let mut session = ServerSession::new_http1(watched);
            match settings.take() {
                Some(settings) => HttpPersistentSettings::apply_to_session(settings, &mut session),
                None => {
                    // As Pingora's own loop starts a connection.
                    session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
                    session.set_keepalive_reuses_remaining(
                        self.inner
                            .server_options()
                            .and_then(|o| o.keepalive_request_limit),
                    );
                }
            }
            let reused = self.inner.process_new_http(session, shutdown).await?;
            let (stream, persistent) = reused.consume();
            settings = persistent;
            let Ok(next) = stream.into_any().downcast::<Watched>() else {
                return None;
            };
            watched = next;
            fresh = false;
        }
    }

    async fn cleanup(&self) {
        self.inner.http_cleanup().await;
    }
}

/// Answers `status` with `reason` (briefly: a client that does not read is not waited
/// for) and closes the connection.
async fn answer_and_close(mut stream: Stream, status: u16, reason: &str) {
    let text = match status {
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let answer = format!(
        "HTTP/1.1 {status} {text}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{reason}\n",
        reason.len() + 1
    );
    let write = async {
        stream.write_all(answer.as_bytes()).await?;
        stream.flush().await
    };
    let _ = tokio::time::timeout(Duration::from_millis(200), write).await;
    Shutdown::shutdown(&mut *stream).await;
    // What the client sent meanwhile is read and dropped (briefly, and at most 64 KiB):
    // closing with unread bytes would reset the connection, and the client might see the
    // reset instead of the answer.
    let drain = async {
        let mut scratch = [0u8; 4096];
        let mut drained = 0;
        while drained < 64 * 1024 {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(200), drain).await;
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

/// A connection's stream, with its slot and the head read ahead of Pingora.
pub(crate) struct Watched {
    inner: Stream,
    /// Bytes read ahead (the head, and whatever came with it), not yet handed on.
    head: Bytes,
    /// Their part of the unverified-bytes budget, given back once they are handed on.
    head_claim: Option<Claim>,
    _slot: Slot,
}

impl fmt::Debug for Watched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watched")
            .field("inner", &self.inner)
            .field("head", &self.head.len())
            .finish_non_exhaustive()
    }
}

impl Watched {
    /// Reads a request's head, up to its empty line, within the limits.
    async fn read_head(
        &mut self,
        budget: &Arc<Budget>,
        limits: &Limits,
        fresh: bool,
        shutdown: &ShutdownWatch,
    ) -> Result<(), Stop> {
        const BUSY: Stop = Stop::Limit(
            "unverified_bytes",
            503,
            "busy: too many requests are being read; retry later",
        );
        let mut claim = budget
            .claim_head(FIRST_HEAD_BYTES, limits.unverified_bytes)
            .ok_or(BUSY)?;
        let mut buf = BytesMut::with_capacity(FIRST_HEAD_BYTES);
        // A new connection's first request is timed from the start; a kept-alive one's
        // next request from its first byte, after at most the keep-alive timeout.
        let mut deadline = Instant::now()
            + if fresh {
                limits.header_timeout
            } else {
                limits.keepalive_timeout
            };
        let mut waiting_first_byte = !fresh;
        let mut scan = HeadScan::default();
        let mut shutdown = shutdown.clone();
        loop {
            if buf.len() == buf.capacity() {
                buf.reserve(buf.capacity());
                // What the buffer holds now, reserved by the allocator's rounding too.
                let more = buf.capacity().saturating_sub(claim.bytes());
                if !claim.grow(more, limits.unverified_bytes) {
                    return Err(BUSY);
                }
            }
            let before = buf.len();
            let read = tokio::select! {
                read = tokio::time::timeout_at(deadline, self.inner.read_buf(&mut buf)) => read,
                _ = shutdown.changed() => return Err(Stop::Quiet),
            };
            match read {
                Err(_) if waiting_first_byte => return Err(Stop::Quiet),
                Err(_) => {
                    return Err(Stop::Limit(
                        "header_timeout",
                        408,
                        "request headers not complete within limits.header_timeout",
                    ));
                }
                Ok(Ok(0) | Err(_)) => return Err(Stop::Quiet),
                Ok(Ok(_)) => {}
            }
            if waiting_first_byte {
                waiting_first_byte = false;
                deadline = Instant::now() + limits.header_timeout;
            }
            match scan.end(&buf[before..]) {
                Some(end) if before + end <= limits.header_bytes => {
                    self.head = buf.freeze();
                    self.head_claim = Some(claim);
                    return Ok(());
                }
                None if buf.len() < limits.header_bytes => {}
                _ => {
                    return Err(Stop::Limit(
                        "header_bytes",
                        431,
                        "request headers larger than limits.header_bytes",
                    ));
                }
            }
        }
    }
}

/// Where a request head ends, read as it arrives: at its first empty line (`\n\n` or
/// `\r\n\r\n`, as HTTP parsers accept both), not counting empty lines before the request
/// line, which parsers skip.
#[derive(Debug, Default)]
struct HeadScan {
    /// A byte other than CR and LF has been seen: the request line has started.
    started: bool,
    /// The last byte read ended a line (CR aside).
    seen_newline: bool,
}

impl HeadScan {
    /// The length within `bytes` up to the end of the head, if it ends in them.
    fn end(&mut self, bytes: &[u8]) -> Option<usize> {
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'\n' if self.started && self.seen_newline => return Some(i + 1),
                b'\n' => self.seen_newline = true,
                b'\r' => {}
                _ => {
                    self.started = true;
                    self.seen_newline = false;
                }
            }
        }
        None
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.head.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let n = this.head.len().min(buf.remaining());
        buf.put_slice(&this.head[..n]);
        this.head.advance(n);
        if this.head.is_empty() {
            this.head = Bytes::new();
            this.head_claim = None;
        }
        Poll::Ready(Ok(()))
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
        if self.head.is_empty() {
            return self.inner.try_peek(buf).await;
        }
        let n = self.head.len().min(buf.len());
        buf[..n].copy_from_slice(&self.head[..n]);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::{HeadScan, auto_max_connections};

    #[test]
    fn the_end_of_the_head_is_its_first_empty_line_across_reads() {
        let mut scan = HeadScan::default();
        assert_eq!(scan.end(b"GET / HTTP/1.1\r\nHost: a\r"), None);
        assert_eq!(scan.end(b"\n\r"), None);
        assert_eq!(scan.end(b"\nbody"), Some(1));
        let mut scan = HeadScan::default();
        assert_eq!(scan.end(b"GET / HTTP/1.1\nHost: a\n\nrest"), Some(24));
        let mut scan = HeadScan::default();
        assert_eq!(scan.end(b"GET / HTTP/1.1\r\nHost: a\r\nX: \r"), None);
        // Empty lines before the request line are skipped, as parsers skip them.
        let mut scan = HeadScan::default();
        assert_eq!(scan.end(b"\r\n\r\n\n"), None);
        assert_eq!(scan.end(b"GET / HTTP/1.1\r\n\r\n"), Some(18));
    }

    #[test]
    fn auto_is_half_the_open_files_within_bounds() {
        assert_eq!(auto_max_connections(20_000), 10_000);
        assert_eq!(auto_max_connections(1024), 512);
        assert_eq!(auto_max_connections(1 << 20), 16_384);
        assert_eq!(auto_max_connections(10), 16);
    }
}
