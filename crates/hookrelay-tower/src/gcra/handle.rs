//! The reload handle of a rate policy.

use std::future::{Ready, ready};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::{DEFAULT_MAX_KEYS, Exceeded, Gcra, Key, Limiter, RateLimiter, ReserveError};

/// The live rate policy of a throttle or rate limiter, with its buckets, shared by every
/// clone of the layers and services built from it.
///
/// [`set`](Self::set) swaps in a new policy atomically; the next request uses it, without
/// rebuilding any service. Setting a policy equal to the current one keeps the buckets (a
/// reload never refills them); a different rate or burst starts from fresh buckets.
/// Requests already waiting keep the slot they reserved.
///
/// ```
/// use std::num::NonZeroU32;
/// use hookrelay_tower::gcra::{Gcra, ThrottleHandle};
///
/// let per = |n| NonZeroU32::new(n).unwrap();
/// let handle = ThrottleHandle::new(Gcra::new(per(10), per(5)));
/// assert!(!handle.set(Gcra::new(per(10), per(5))), "unchanged: buckets kept");
/// assert!(handle.set(Gcra::new(per(20), per(5))), "changed: fresh buckets");
/// assert_eq!(handle.gcra().per_second().get(), 20);
/// ```
#[derive(Debug, Clone)]
pub struct ThrottleHandle {
    current: Arc<ArcSwap<Limiter>>,
}

impl ThrottleHandle {
    /// A handle with fresh buckets for `gcra`.
    #[must_use]
    pub fn new(gcra: Gcra) -> Self {
        Self::with_max_keys(gcra, DEFAULT_MAX_KEYS)
    }

    /// A handle with fresh buckets for `gcra`, keeping at most `max_keys` keyed buckets.
    #[must_use]
    pub fn with_max_keys(gcra: Gcra, max_keys: usize) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(Limiter::with_max_keys(
                gcra, max_keys,
            ))),
        }
    }

    /// The policy in force.
    #[must_use]
    pub fn gcra(&self) -> Gcra {
        *self.current.load().gcra()
    }

    /// The buckets in force (for inspection; they change when the policy does).
    #[must_use]
    pub fn limiter(&self) -> Arc<Limiter> {
        self.current.load_full()
    }

    /// Puts `gcra` in force for the next request. Returns `false` when it equals the policy
    /// in force (the buckets are kept), `true` when it replaced it (fresh buckets).
    pub fn set(&self, gcra: Gcra) -> bool {
        let mut changed = false;
        self.current.rcu(|cur| {
            changed = *cur.gcra() != gcra;
            if changed {
                Arc::new(Limiter::with_max_keys(gcra, cur.max_keys()))
            } else {
                Arc::clone(cur)
            }
        });
        changed
    }

    /// Reserves a slot now (tokio's clock, so paused time applies); see
    /// [`Limiter::reserve`].
    ///
    /// # Errors
    ///
    /// [`Exceeded`] when the slot is further than `max_wait` away.
    pub fn reserve_now(
        &self,
        key: Option<&Key>,
        max_wait: Duration,
    ) -> Result<tokio::time::Instant, Exceeded> {
        let now = tokio::time::Instant::now();
        self.current
            .load()
            .reserve(key, now.into_std(), max_wait)
            .map(tokio::time::Instant::from_std)
    }
}

impl From<Gcra> for ThrottleHandle {
    fn from(gcra: Gcra) -> Self {
        Self::new(gcra)
    }
}

/// The (already complete) reservation of a [`ThrottleHandle`]; it never fails with
/// [`ReserveError::Unavailable`].
pub type ThrottleHandleFuture = Ready<Result<tokio::time::Instant, ReserveError>>;

impl RateLimiter for ThrottleHandle {
    type Future = ThrottleHandleFuture;

    fn reserve(&self, key: Option<Key>, max_wait: Duration) -> Self::Future {
        ready(
            self.reserve_now(key.as_ref(), max_wait)
                .map_err(ReserveError::from),
        )
    }
}
