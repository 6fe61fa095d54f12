use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use tower_service::Service;

use super::ResponseFuture;
use crate::BoxError;
use crate::gcra::{KeyExtractor, RateLimiter};

/// Delays requests to a steady GCRA rate; see the [module docs](crate::throttle).
#[derive(Debug, Clone)]
pub struct Throttle<S, K, R> {
    inner: S,
    limiter: R,
    key: K,
    max_wait: Duration,
}

impl<S, K, R> Throttle<S, K, R> {
    pub(crate) fn new(inner: S, limiter: R, key: K, max_wait: Duration) -> Self {
        Self {
            inner,
            limiter,
            key,
            max_wait,
        }
    }

    inner_service_accessors!();

    /// The reload handle or backend.
    pub fn limiter(&self) -> &R {
        &self.limiter
    }
}

impl<S, B, K, R> Service<Request<B>> for Throttle<S, K, R>
where
    S: Service<Request<B>> + Clone,
    S::Error: Into<BoxError>,
    K: KeyExtractor<B>,
    R: RateLimiter,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Request<B>, R::Future>;

    /// Always ready: readiness of the inner service is awaited after the wait.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let reservation = self.limiter.reserve(self.key.key(&req), self.max_wait);
        ResponseFuture::new(reservation, self.inner.clone(), req, self.max_wait)
    }
}
