use std::collections::hash_map::RandomState;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Request;
use http_body::Body;
use http_body_util::{BodyExt, Full};
use tower_service::Service;

use super::{ResponseFuture, SignHandle};
use crate::BoxError;

/// Signs request bodies with Standard Webhooks; see the [module docs](crate::sign).
#[derive(Debug, Clone)]
pub struct Sign<S> {
    inner: S,
    signer: SignHandle,
    clock: fn() -> i64,
}

impl<S> Sign<S> {
    pub(crate) fn new(inner: S, signer: SignHandle, clock: fn() -> i64) -> Self {
        Self {
            inner,
            signer,
            clock,
        }
    }

    inner_service_accessors!();

    /// The reload handle.
    pub fn handle(&self) -> &SignHandle {
        &self.signer
    }
}

impl<S, B> Service<Request<B>> for Sign<S>
where
    S: Service<Request<Full<Bytes>>> + Clone,
    S::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, B>;

    /// Always ready: the inner service's readiness is awaited once the body is buffered.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (parts, body) = req.into_parts();
        ResponseFuture::new(
            body.collect(),
            parts,
            self.inner.clone(),
            self.signer.get(),
            (self.clock)(),
        )
    }
}

/// A fresh message id: `msg_` and 128 bits from per-process random SipHash keys over a
/// counter. Unique, not secret.
pub(super) fn new_message_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut id = String::with_capacity(36);
    id.push_str("msg_");
    for half in 0..2u64 {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_u64(half);
        let _ = write!(id, "{:016x}", h.finish());
    }
    id
}
