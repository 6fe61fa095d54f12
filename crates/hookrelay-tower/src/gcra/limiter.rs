//! The in-memory keyed GCRA state.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{Exceeded, Gcra, GcraState, Key};

/// How many keyed buckets a [`Limiter`] keeps by default.
pub const DEFAULT_MAX_KEYS: usize = 10_000;

/// The buckets of one [`Gcra`] policy: one shared bucket plus one per [`Key`].
///
/// Keyed state is bounded: when a new key would exceed `max_keys`, idle buckets (those
/// with no debt, which behave exactly like fresh ones) are dropped; if every bucket still
/// holds debt, the one closest to idle is dropped. Memory stays bounded and no decision of
/// an idle key changes.
#[derive(Debug)]
pub struct Limiter {
    gcra: Gcra,
    max_keys: usize,
    global: Mutex<GcraState>,
    keyed: Mutex<HashMap<Key, GcraState>>,
}

impl Limiter {
    /// Fresh buckets for `gcra`, keeping up to [`DEFAULT_MAX_KEYS`] keyed buckets.
    #[must_use]
    pub fn new(gcra: Gcra) -> Self {
        Self::with_max_keys(gcra, DEFAULT_MAX_KEYS)
    }

    /// Fresh buckets for `gcra`, keeping up to `max_keys` keyed buckets (at least one).
    #[must_use]
    pub fn with_max_keys(gcra: Gcra, max_keys: usize) -> Self {
        Self {
            gcra,
            max_keys: max_keys.max(1),
            global: Mutex::new(GcraState::new()),
            keyed: Mutex::new(HashMap::new()),
        }
    }

    /// The policy.
    #[must_use]
    pub const fn gcra(&self) -> &Gcra {
        &self.gcra
    }

    /// The bound on keyed buckets.
    #[must_use]
    pub const fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// How many keyed buckets are held now.
    #[must_use]
    pub fn keys(&self) -> usize {
        lock(&self.keyed).len()
    }

    /// Reserves the next slot of `key`'s bucket (`None`: the shared one) for a request
    /// arriving at `now`; see [`GcraState::reserve`].
    ///
    /// # Errors
    ///
    /// [`Exceeded`] when the slot is further than `max_wait` away.
    pub fn reserve(
        &self,
        key: Option<&Key>,
        now: Instant,
        max_wait: Duration,
    ) -> Result<Instant, Exceeded> {
        let Some(key) = key else {
            return lock(&self.global).reserve(&self.gcra, now, max_wait);
        };
        let mut keyed = lock(&self.keyed);
        if let Some(bucket) = keyed.get_mut(key) {
            return bucket.reserve(&self.gcra, now, max_wait);
        }
        if keyed.len() >= self.max_keys {
            keyed.retain(|_, bucket| !bucket.is_idle(now));
            if keyed.len() >= self.max_keys {
                let closest = keyed
                    .iter()
                    .min_by_key(|(_, bucket)| bucket.tat)
                    .map(|(k, _)| k.clone());
                if let Some(k) = closest {
                    keyed.remove(&k);
                }
            }
        }
        let mut bucket = GcraState::new();
        let slot = bucket.reserve(&self.gcra, now, max_wait);
        keyed.insert(key.clone(), bucket);
        slot
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values are plain data, valid after any panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn one_per_second() -> Gcra {
        Gcra::new(NonZeroU32::MIN, NonZeroU32::MIN)
    }

    #[test]
    fn keys_are_independent_of_each_other_and_of_global() {
        let l = Limiter::new(one_per_second());
        let t0 = Instant::now();
        let (a, b) = (Key::from("a"), Key::from("b"));
        assert!(l.reserve(Some(&a), t0, Duration::ZERO).is_ok());
        assert!(l.reserve(Some(&a), t0, Duration::ZERO).is_err());
        assert!(l.reserve(Some(&b), t0, Duration::ZERO).is_ok());
        assert!(l.reserve(None, t0, Duration::ZERO).is_ok());
        assert!(l.reserve(None, t0, Duration::ZERO).is_err());
        assert_eq!(l.keys(), 2);
    }

    #[test]
    fn key_state_is_bounded_and_idle_keys_are_dropped_first() {
        let l = Limiter::with_max_keys(one_per_second(), 3);
        let t0 = Instant::now();
        for k in ["a", "b", "c"] {
            l.reserve(Some(&k.into()), t0, Duration::ZERO)
                .expect("fresh key");
        }
        assert_eq!(l.keys(), 3);
        // Later, a and b are idle again; c got a second request and is in debt.
        let t1 = t0 + Duration::from_millis(1500);
        l.reserve(Some(&"c".into()), t1, Duration::ZERO)
            .expect("c refilled");
        l.reserve(Some(&"d".into()), t1, Duration::ZERO)
            .expect("fresh key");
        assert_eq!(l.keys(), 2, "idle a and b dropped, c and d kept");
        // c kept its debt: still refused.
        assert!(l.reserve(Some(&"c".into()), t1, Duration::ZERO).is_err());
        // With every bucket in debt, the bound still holds.
        for k in ["e", "f", "g", "h"] {
            l.reserve(Some(&k.into()), t1, Duration::ZERO)
                .expect("fresh key");
            assert!(l.keys() <= 3);
        }
    }
}
