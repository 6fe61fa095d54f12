use tower_layer::Layer;

use super::RateLimit;
use crate::gcra::{Global, ThrottleHandle};

/// Applies [`RateLimit`] to a service: `429` + `Retry-After` over a GCRA rate.
///
/// See the [module docs](crate::rate_limit) for an example.
#[derive(Debug, Clone)]
pub struct RateLimitLayer<K = Global, R = ThrottleHandle> {
    limiter: R,
    key: K,
}

impl RateLimitLayer {
    /// Limits to `policy`: a [`Gcra`](crate::gcra::Gcra) (fresh buckets owned by this
    /// layer and its services) or a [`ThrottleHandle`] (shared buckets, live reload).
    #[must_use]
    pub fn new(policy: impl Into<ThrottleHandle>) -> Self {
        Self::with_limiter(policy.into())
    }
}

impl<R> RateLimitLayer<Global, R> {
    /// Limits with any [`RateLimiter`](crate::gcra::RateLimiter) backend.
    #[must_use]
    pub fn with_limiter(limiter: R) -> Self {
        Self {
            limiter,
            key: Global,
        }
    }
}

impl<K, R> RateLimitLayer<K, R> {
    /// Keeps one bucket per key picked by `key` (see
    /// [`KeyExtractor`](crate::gcra::KeyExtractor)); requests without a key share one.
    #[must_use]
    pub fn key_by<K2>(self, key: K2) -> RateLimitLayer<K2, R> {
        RateLimitLayer {
            limiter: self.limiter,
            key,
        }
    }
}

impl<S, K: Clone, R: Clone> Layer<S> for RateLimitLayer<K, R> {
    type Service = RateLimit<S, K, R>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.limiter.clone(), self.key.clone())
    }
}
