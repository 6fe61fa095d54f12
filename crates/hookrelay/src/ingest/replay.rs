//! A bounded cache of one-time signature tokens already accepted (some providers sign a
//! timestamp and a token, not the event: a token seen before is a replay, even with a
//! different body). See `Provider::replay_token`. It answers a burst of replays without
//! a store round trip; the store (`Store::first_use`) is what survives restarts and is
//! shared by replicas.
//!
//! A lock poisoned by a panic elsewhere is recovered, never read as "not seen": replay
//! protection must not fail open.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Tokens older than this are forgotten: the signed timestamp is only accepted within
/// 5 minutes either way, so a token cannot come back later than 10 minutes.
pub(crate) const TTL: std::time::Duration = std::time::Duration::from_secs(10 * 60);
const TTL_MS: i64 = 10 * 60 * 1000;
/// At most this many tokens are kept; past it, expired ones are purged, then new tokens
/// still go in (the oldest are evicted first).
const CAPACITY: usize = 100_000;

/// Seen tokens with their expiry.
#[derive(Default)]
pub(crate) struct ReplayCache {
    seen: Mutex<HashMap<String, i64>>,
}

impl ReplayCache {
    /// Records `token`; false when it was already seen and has not expired.
    pub(crate) fn first_use(&self, token: &str, now_ms: i64) -> bool {
        let mut seen = self.seen();
        if seen.get(token).is_some_and(|exp| *exp > now_ms) {
            return false;
        }
        if seen.len() >= CAPACITY {
            seen.retain(|_, exp| *exp > now_ms);
            if seen.len() >= CAPACITY {
                let mut by_age: Vec<(i64, String)> =
                    seen.iter().map(|(k, v)| (*v, k.clone())).collect();
                by_age.sort_unstable();
                for (_, k) in by_age.into_iter().take(CAPACITY / 10) {
                    seen.remove(&k);
                }
            }
        }
        seen.insert(token.to_owned(), now_ms + TTL_MS);
        true
    }

    /// Forgets `token` (its callback was not accepted after all).
    pub(crate) fn forget(&self, token: &str) {
        self.seen().remove(token);
    }

    /// The map; its content stays valid whatever panicked while holding the lock (each
    /// change is one insert or remove).
    fn seen(&self) -> MutexGuard<'_, HashMap<String, i64>> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_accepted_once_within_its_ttl() {
        let c = ReplayCache::default();
        assert!(c.first_use("t", 0));
        assert!(!c.first_use("t", 1000));
        assert!(c.first_use("t", TTL_MS + 1));
        c.forget("t");
        assert!(c.first_use("t", TTL_MS + 2));
    }

    #[test]
    fn a_poisoned_lock_does_not_make_a_replay_look_new() {
        let c = std::sync::Arc::new(ReplayCache::default());
        assert!(c.first_use("t", 0));
        let holder = c.clone();
        let poisoned = std::thread::spawn(move || {
            let _guard = holder.seen.lock();
            panic!("a panic while holding the lock");
        })
        .join();
        assert!(poisoned.is_err());
        assert!(c.seen.is_poisoned());
        assert!(
            !c.first_use("t", 1000),
            "a replay after the poison is still a replay"
        );
        assert!(c.first_use("u", 1000));
    }
}
