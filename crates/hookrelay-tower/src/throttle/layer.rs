use std::time::Duration;

use tower_layer::Layer;

use super::Throttle;
use crate::gcra::{Global, ThrottleHandle};

/// Applies [`Throttle`] to a service: delays requests to a steady GCRA rate.
///
/// See the [module docs](crate::throttle) for an example.
#[derive(Debug, Clone)]
pub struct ThrottleLayer<K = Global, R = ThrottleHandle> {
    limiter: R,
    key: K,
    max_wait: Duration,
}

impl ThrottleLayer {
    /// Throttles to `policy`: a [`Gcra`](crate::gcra::Gcra) (fresh buckets owned by this
    /// layer and its services) or a [`ThrottleHandle`] (shared buckets, live reload).
    #[must_use]
    pub fn new(policy: impl Into<ThrottleHandle>) -> Self {
        Self::with_limiter(policy.into())
    }
}

impl<R> ThrottleLayer<Global, R> {
    /// Throttles with any [`RateLimiter`](crate::gcra::RateLimiter) backend (for instance
    /// GCRA in Redis, shared by several processes).
    #[must_use]
    pub fn with_limiter(limiter: R) -> Self {
        Self {
            limiter,
            key: Global,
            max_wait: Duration::MAX,
        }
    }
}

impl<K, R> ThrottleLayer<K, R> {
    /// Keeps one bucket per key picked by `key` (see
    /// [`KeyExtractor`](crate::gcra::KeyExtractor)); requests without a key share one.
    #[must_use]
    pub fn key_by<K2>(self, key: K2) -> ThrottleLayer<K2, R> {
        ThrottleLayer {
            limiter: self.limiter,
            key,
            max_wait: self.max_wait,
        }
    }

    /// Fails a request with [`ThrottleError::WaitTooLong`](super::ThrottleError) when its
    /// slot is further away than `max_wait` (default: wait as long as it takes).
    #[must_use]
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }
}

impl<S, K: Clone, R: Clone> Layer<S> for ThrottleLayer<K, R> {
    type Service = Throttle<S, K, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Throttle::new(inner, self.limiter.clone(), self.key.clone(), self.max_wait)
    }
}
