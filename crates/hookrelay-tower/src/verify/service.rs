use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use tower_service::Service;

use super::{Refusal, ResponseBody, ResponseFuture, VerifyHandle};
use crate::BoxError;

/// Verifies provider callbacks on the raw body; see the [module docs](crate::verify).
#[derive(Debug, Clone)]
pub struct Verify<S> {
    inner: S,
    policy: VerifyHandle,
    clock: fn() -> SystemTime,
}

impl<S> Verify<S> {
    /// Verifies the requests to `inner` with `policy`: a
    /// [`CallbackPolicy`](super::CallbackPolicy) or a [`VerifyHandle`] (live reload).
    #[must_use]
    pub fn new(inner: S, policy: impl Into<VerifyHandle>) -> Self {
        Self {
            inner,
            policy: policy.into(),
            clock: SystemTime::now,
        }
    }

    /// Reads the current time from `clock` (see [`VerifyLayer::clock`](super::VerifyLayer::clock)).
    #[must_use]
    pub fn clock(mut self, clock: fn() -> SystemTime) -> Self {
        self.clock = clock;
        self
    }

    inner_service_accessors!();

    /// The reload handle.
    pub fn handle(&self) -> &VerifyHandle {
        &self.policy
    }
}

impl<S, B, ResBody> Service<Request<B>> for Verify<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone,
    B: Body,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    /// Always ready: the inner service's readiness is awaited once the callback is
    /// verified, so a refused callback costs the inner service nothing.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let policy = self.policy.get();
        let now = (self.clock)();
        let (parts, body) = req.into_parts();
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
        let limit = policy.max_body;
        if let Some(size) = declared.filter(|&n| n > u64::try_from(limit).unwrap_or(u64::MAX)) {
            // Refused before reading a byte of it.
            let refusal = Refusal::TooLarge {
                size: Some(size),
                limit,
            };
            return ResponseFuture::refused(&policy, &refusal);
        }
        let collect = Limited::new(body, limit).collect();
        ResponseFuture::new(collect, parts, self.inner.clone(), policy, now)
    }
}
