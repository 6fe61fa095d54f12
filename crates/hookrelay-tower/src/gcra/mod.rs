//! The rate policy shared by [`ThrottleLayer`](crate::ThrottleLayer) and
//! [`RateLimitLayer`](crate::RateLimitLayer): GCRA, its state, keys and the reload handle.
//!
//! The Generic Cell Rate Algorithm keeps one instant per bucket, the *theoretical arrival
//! time* (TAT). A request arriving at `now` may start at
//! `max(now, TAT - tolerance)`, where the emission interval is `1s / per_second` and the
//! tolerance is `(burst - 1)` emission intervals; starting it moves the TAT to
//! `max(TAT, now) + interval`. So `burst` requests pass at once after an idle period, and
//! after that one request per interval: a steady rate, never more than `burst` early.
//!
//! A throttle *reserves* the slot before it sleeps: concurrent waiters get distinct slots
//! in arrival order, so waiting is fair and the delivered rate is exact. A rate limiter is
//! the same reservation with a maximum wait of zero.
//!
//! The types here are plain: [`Gcra`] is the policy (compared on reload), [`GcraState`]
//! one bucket, [`Limiter`] the in-memory keyed state, all over `std::time::Instant` with
//! the current time passed in, so a Pingora adapter or a Redis backend reuses them and
//! tests control time. [`ThrottleHandle`] reads the time from tokio's clock (so
//! `tokio::time::pause` drives it) and implements [`RateLimiter`], the async interface a
//! shared backend implements to plug into the same layers: with feature `redis`,
//! `redis::RedisGcra` keeps the same algorithm in Redis, shared by every replica.
//!
//! Why not `governor`: its clock does not follow tokio's paused clock, and it cannot hand
//! out future slots to queued waiters (its `until_ready` re-polls with jitter); reserving the
//! TAT is a dozen lines and makes the throttle exact and testable.
//!
//! ```
//! use std::num::NonZeroU32;
//! use std::time::{Duration, Instant};
//! use hookrelay_tower::gcra::{Gcra, GcraState};
//!
//! let gcra = Gcra::new(NonZeroU32::new(10).unwrap(), NonZeroU32::new(2).unwrap());
//! let mut bucket = GcraState::new();
//! let t0 = Instant::now();
//! // The burst passes at once...
//! assert_eq!(bucket.reserve(&gcra, t0, Duration::ZERO).unwrap(), t0);
//! assert_eq!(bucket.reserve(&gcra, t0, Duration::ZERO).unwrap(), t0);
//! // ...the next request would wait one interval (100 ms): refused without waiting,
//! let denied = bucket.reserve(&gcra, t0, Duration::ZERO).unwrap_err();
//! assert_eq!(denied.retry_after(), Duration::from_millis(100));
//! // reserved when waiting is allowed.
//! assert_eq!(bucket.reserve(&gcra, t0, Duration::MAX).unwrap(), t0 + Duration::from_millis(100));
//! ```

mod handle;
mod key;
mod limiter;
#[cfg(feature = "redis")]
pub mod redis;

use std::error::Error;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use handle::{ThrottleHandle, ThrottleHandleFuture};
pub use key::{ByAuthority, ByHeader, ByPath, Global, Key, KeyExtractor};
pub use limiter::{DEFAULT_MAX_KEYS, Limiter};

/// A GCRA policy: a steady rate of `per_second` requests with bursts of up to `burst`.
///
/// Two policies are equal when both numbers are; a reload that sets an equal policy keeps
/// the buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Gcra {
    per_second: NonZeroU32,
    burst: NonZeroU32,
}

impl Gcra {
    /// `per_second` requests a second, with bursts of up to `burst` requests.
    #[must_use]
    pub const fn new(per_second: NonZeroU32, burst: NonZeroU32) -> Self {
        Self { per_second, burst }
    }

    /// The steady rate in requests per second.
    #[must_use]
    pub const fn per_second(&self) -> NonZeroU32 {
        self.per_second
    }

    /// The most requests that pass at once after an idle period.
    #[must_use]
    pub const fn burst(&self) -> NonZeroU32 {
        self.burst
    }

    /// The interval between two requests at the steady rate.
    #[must_use]
    pub fn interval(&self) -> Duration {
        Duration::from_secs(1) / self.per_second.get()
    }

    /// How far ahead of the steady rate a request may start: `burst - 1` intervals.
    #[must_use]
    pub fn tolerance(&self) -> Duration {
        self.interval()
            .checked_mul(self.burst.get() - 1)
            .unwrap_or(Duration::MAX)
    }
}

/// A request that would have to wait longer than allowed; nothing was reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate exceeded, next slot in {retry_after:?}")]
pub struct Exceeded {
    retry_after: Duration,
}

impl Exceeded {
    /// A refusal whose next slot is `retry_after` away.
    #[must_use]
    pub const fn new(retry_after: Duration) -> Self {
        Self { retry_after }
    }

    /// How long until a request would conform.
    #[must_use]
    pub const fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

/// Why a [`RateLimiter`] reserved nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReserveError {
    /// The slot is further away than the maximum wait.
    #[error(transparent)]
    Exceeded(#[from] Exceeded),
    /// The backend holding the buckets could not answer; the request must not pass.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

/// A shared backend (Redis) could not be asked for a slot: unreachable, timed out, or it
/// answered with an error. Whether a slot was taken is unknown; layers fail the request
/// rather than let it pass unthrottled.
///
/// Clones share the cause; two values are equal when they are clones of the same failure.
#[derive(Clone)]
pub struct Unavailable {
    source: Arc<dyn Error + Send + Sync>,
}

impl Unavailable {
    /// A failure of the backend caused by `source`.
    #[must_use]
    pub fn new(source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self {
            source: Arc::from(source.into()),
        }
    }
}

impl fmt::Debug for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Unavailable").field(&self.source).finish()
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("rate limiter backend unavailable")
    }
}

impl Error for Unavailable {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

impl PartialEq for Unavailable {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.source, &other.source)
    }
}

impl Eq for Unavailable {}

/// One GCRA bucket: its theoretical arrival time, nothing else.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcraState {
    tat: Option<Instant>,
}

impl GcraState {
    /// A fresh bucket (a full burst available).
    #[must_use]
    pub const fn new() -> Self {
        Self { tat: None }
    }

    /// Reserves the next slot for a request arriving at `now`, if it starts within
    /// `max_wait`; returns the instant the request may start (`now` when it need not wait).
    ///
    /// # Errors
    ///
    /// [`Exceeded`] when the slot is further than `max_wait` away; the bucket is unchanged.
    pub fn reserve(
        &mut self,
        gcra: &Gcra,
        now: Instant,
        max_wait: Duration,
    ) -> Result<Instant, Exceeded> {
        let tat = match self.tat {
            Some(tat) if tat > now => tat,
            _ => now,
        };
        let slot = tat
            .checked_sub(gcra.tolerance())
            .map_or(now, |start| start.max(now));
        let wait = slot.saturating_duration_since(now);
        if wait > max_wait {
            return Err(Exceeded::new(wait));
        }
        self.tat = Some(tat.checked_add(gcra.interval()).unwrap_or(tat));
        Ok(slot)
    }

    /// True when the bucket is as good as fresh at `now` (it holds no debt), so it can be
    /// dropped without changing any decision.
    #[must_use]
    pub fn is_idle(&self, now: Instant) -> bool {
        self.tat.is_none_or(|tat| tat <= now)
    }
}

/// An asynchronous source of GCRA reservations: the in-memory [`ThrottleHandle`], or a
/// shared backend (GCRA in Redis) so several processes respect one rate.
///
/// The returned future owns what it needs (`'static`), so a remote backend can await its
/// round trip inside the layer's future. A backend that cannot answer resolves to
/// [`ReserveError::Unavailable`]; the layers then fail the request (throttle) or answer
/// `503` (rate limit), never letting it through unthrottled. The in-memory handle never
/// does.
pub trait RateLimiter {
    /// The reservation in flight.
    type Future: Future<Output = Result<tokio::time::Instant, ReserveError>> + Send + 'static;

    /// Reserves the next slot for `key` (`None`: the one shared bucket) if it starts within
    /// `max_wait`, resolving to the instant the request may start.
    fn reserve(&self, key: Option<Key>, max_wait: Duration) -> Self::Future;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gcra(per_second: u32, burst: u32) -> Gcra {
        Gcra::new(
            NonZeroU32::new(per_second).expect("non-zero"),
            NonZeroU32::new(burst).expect("non-zero"),
        )
    }

    #[test]
    fn burst_then_steady_slots() {
        let g = gcra(4, 3);
        let mut b = GcraState::new();
        let t0 = Instant::now();
        let slots: Vec<_> = (0..6)
            .map(|_| b.reserve(&g, t0, Duration::MAX).expect("unbounded wait"))
            .collect();
        let ms: Vec<u128> = slots.iter().map(|s| (*s - t0).as_millis()).collect();
        assert_eq!(ms, [0, 0, 0, 250, 500, 750]);
    }

    #[test]
    fn idle_bucket_refills_to_burst_only() {
        let g = gcra(10, 2);
        let mut b = GcraState::new();
        let t0 = Instant::now();
        for _ in 0..2 {
            b.reserve(&g, t0, Duration::ZERO).expect("burst");
        }
        assert!(!b.is_idle(t0));
        let later = t0 + Duration::from_secs(60);
        assert!(b.is_idle(later));
        for _ in 0..2 {
            assert_eq!(b.reserve(&g, later, Duration::ZERO), Ok(later));
        }
        assert!(b.reserve(&g, later, Duration::ZERO).is_err());
    }

    #[test]
    fn refusal_reserves_nothing() {
        let g = gcra(1, 1);
        let mut b = GcraState::new();
        let t0 = Instant::now();
        b.reserve(&g, t0, Duration::ZERO).expect("first");
        let before = b;
        let err = b
            .reserve(&g, t0, Duration::from_millis(999))
            .expect_err("too far");
        assert_eq!(err.retry_after(), Duration::from_secs(1));
        assert_eq!(b, before);
        assert_eq!(
            b.reserve(&g, t0 + Duration::from_millis(400), Duration::ZERO),
            Err(Exceeded::new(Duration::from_millis(600)))
        );
    }

    #[test]
    fn huge_rate_never_waits() {
        let g = gcra(u32::MAX, 1);
        let mut b = GcraState::new();
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert_eq!(b.reserve(&g, t0, Duration::ZERO), Ok(t0));
        }
    }
}
