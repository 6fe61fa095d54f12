use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tower_service::Service;

use super::ResponseFuture;
use crate::gcra::{KeyExtractor, RateLimiter};

/// Answers `429` + `Retry-After` over a GCRA rate; see the [module docs](crate::rate_limit).
#[derive(Debug, Clone)]
pub struct RateLimit<S, K, R> {
    inner: S,
    limiter: R,
    key: K,
}

impl<S, K, R> RateLimit<S, K, R> {
    pub(crate) fn new(inner: S, limiter: R, key: K) -> Self {
        Self {
            inner,
            limiter,
            key,
        }
    }

    inner_service_accessors!();

    /// The reload handle or backend.
    pub fn limiter(&self) -> &R {
        &self.limiter
    }
}

impl<S, B, ResBody, K, R> Service<Request<B>> for RateLimit<S, K, R>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
    ResBody: Default,
    K: KeyExtractor<B>,
    R: RateLimiter,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, Request<B>, R::Future>;

    /// Always ready: the inner service's readiness is awaited once the request is admitted,
    /// so a refused request costs the inner service nothing.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let reservation = self.limiter.reserve(self.key.key(&req), Duration::ZERO);
        ResponseFuture::new(reservation, self.inner.clone(), req)
    }
}
