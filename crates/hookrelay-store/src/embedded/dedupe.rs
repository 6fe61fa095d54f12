//! Dedupe keys and one-time tokens, on disk in windows of expiry times.
//!
//! A key recorded until `expires_ms` goes into the keyspace of the window holding that
//! expiry: `keys_<end>_<width>` holds the keys expiring in `[end - width, end)`. A key
//! is live while its expiry is after the caller's `now_ms`; a lookup asks every window
//! that ends after `now_ms` (a bloom filter answers most of them without a read). Once a
//! window has ended, every key in it has expired and the whole keyspace is deleted: no
//! key is removed one by one, and no compaction rewrites expired keys.
//!
//! A window is a quarter of the keys' time to live (at least a second, at most six
//! hours), so there are about five live windows per time to live in use (the dedupe
//! window, the one-time tokens' lifetime), each a lookup (a miss, mostly, answered by
//! its bloom filters), and a key outlives its expiry by a quarter at most on disk. Once
//! writes move on to the next window, the previous one's write buffer is written out, so
//! the memory of a window that is no longer written is freed.

use super::engine::{key_options, read_error};
use crate::StoreError;
use fjall::{Database, Keyspace, OwnedWriteBatch};
use std::collections::{BTreeMap, HashMap};

/// Keys a batch writes (`Some(expiry)`) or removes (`None`), by window (end, width) and
/// hash; the last write of a key in a batch wins.
pub(crate) type KeyWrites = HashMap<(i64, i64, u128), Option<i64>>;

/// Shortest and longest window, in milliseconds.
const MIN_WIDTH: i64 = 1_000;
const MAX_WIDTH: i64 = 6 * 3_600_000;

/// Prefix of the windows' keyspace names.
const PREFIX: &str = "keys_";

/// What a stored key takes, for the store's byte count: its 16-byte hash and 8-byte
/// expiry (the tables' own overhead comes on top).
pub(crate) const KEY_BYTES: u64 = 24;

struct Window {
    keys: Keyspace,
    /// Keys written into it (approximate after an open).
    count: u64,
}

/// The live windows, owned by the writer.
#[derive(Default)]
pub(crate) struct Keys {
    /// By (end, width).
    windows: BTreeMap<(i64, i64), Window>,
    /// The window last written, per width.
    writing: HashMap<i64, i64>,
}

/// The window width for keys that live `ttl_ms`.
fn width_of(ttl_ms: i64) -> i64 {
    (ttl_ms / 4).clamp(MIN_WIDTH, MAX_WIDTH)
}

fn name_of(end: i64, width: i64) -> String {
    format!("{PREFIX}{end}_{width}")
}

fn parse_name(name: &str) -> Option<(i64, i64)> {
    let (end, width) = name.strip_prefix(PREFIX)?.rsplit_once('_')?;
    Some((end.parse().ok()?, width.parse().ok()?))
}

impl Keys {
    /// The windows found in `db`.
    pub(crate) fn open(db: &Database) -> Result<Self, fjall::Error> {
        let mut keys = Keys::default();
        for name in db.list_keyspace_names() {
            let Some((end, width)) = parse_name(&name) else {
                continue;
            };
            let ks = db.keyspace(&name, key_options)?;
            let count = ks.approximate_len() as u64;
            keys.windows
                .insert((end, width), Window { keys: ks, count });
        }
        Ok(keys)
    }

    /// Keys held (approximate after an open).
    pub(crate) fn count(&self) -> u64 {
        self.windows.values().map(|w| w.count).sum()
    }

    /// The latest expiry of `hash` among the windows that end after `now_ms`, if any.
    pub(crate) fn expiry(&self, hash: u128, now_ms: i64) -> Result<Option<i64>, StoreError> {
        let key = hash.to_be_bytes();
        let mut latest = None;
        for (&(end, _), window) in self.windows.iter().rev() {
            if end <= now_ms {
                break;
            }
            if let Some(value) = window.keys.get(key).map_err(read_error)? {
                let expires = value
                    .as_ref()
                    .try_into()
                    .map(i64::from_be_bytes)
                    .unwrap_or(i64::MIN);
                latest = latest.max(Some(expires));
            }
        }
        Ok(latest)
    }

    /// Records `hash` until `expires_ms` (a key of time to live `ttl_ms`) in `writes`,
    /// creating its window if needed.
    pub(crate) fn insert(
        &mut self,
        db: &Database,
        writes: &mut KeyWrites,
        hash: u128,
        ttl_ms: i64,
        expires_ms: i64,
    ) -> Result<(), fjall::Error> {
        let width = width_of(ttl_ms);
        let end = expires_ms
            .div_euclid(width)
            .saturating_add(1)
            .saturating_mul(width);
        if let std::collections::btree_map::Entry::Vacant(slot) = self.windows.entry((end, width)) {
            let keys = db.keyspace(&name_of(end, width), key_options)?;
            slot.insert(Window { keys, count: 0 });
        }
        if let Some(previous) = self.writing.insert(width, end)
            && previous != end
            && let Some(old) = self.windows.get(&(previous, width))
        {
            // Written out now rather than when the journal fills: its memory is freed.
            old.keys.rotate_memtable()?;
        }
        writes.insert((end, width, hash), Some(expires_ms));
        Ok(())
    }

    /// Removes `hash` from every window that ends after `now_ms` and holds it, in
    /// `writes`.
    pub(crate) fn forget(
        &mut self,
        writes: &mut KeyWrites,
        hash: u128,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let key = hash.to_be_bytes();
        for (&(end, width), window) in self.windows.iter().rev() {
            if end <= now_ms {
                break;
            }
            if window.keys.contains_key(key).map_err(read_error)? {
                writes.insert((end, width, hash), None);
            }
        }
        for ((_, _, written), value) in writes.iter_mut() {
            if *written == hash {
                *value = None;
            }
        }
        Ok(())
    }

    /// Adds `writes` to `batch`, and counts them.
    pub(crate) fn stage(&mut self, batch: &mut OwnedWriteBatch, writes: KeyWrites) {
        for ((end, width, hash), value) in writes {
            let Some(window) = self.windows.get_mut(&(end, width)) else {
                continue;
            };
            match value {
                Some(expires) => {
                    batch.insert(&window.keys, hash.to_be_bytes(), expires.to_be_bytes());
                    window.count += 1;
                }
                None => {
                    batch.remove(&window.keys, hash.to_be_bytes());
                    window.count = window.count.saturating_sub(1);
                }
            }
        }
    }

    /// Deletes every window that ended at or before `now_ms`, whole; how many keys they
    /// held.
    pub(crate) fn drop_expired(&mut self, db: &Database, now_ms: i64) -> u64 {
        let mut dropped = 0;
        while let Some(entry) = self.windows.first_entry() {
            if entry.key().0 > now_ms {
                break;
            }
            let ((end, width), window) = entry.remove_entry();
            dropped += window.count;
            if self.writing.get(&width) == Some(&end) {
                self.writing.remove(&width);
            }
            if let Err(e) = db.delete_keyspace(window.keys) {
                tracing::warn!(error = %e, end, "cannot delete an expired dedupe window");
            }
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        assert_eq!(
            parse_name(&name_of(1_700_000_000_000, 5_400_000)),
            Some((1_700_000_000_000, 5_400_000))
        );
        assert_eq!(parse_name(&name_of(-2_000, 1_000)), Some((-2_000, 1_000)));
        assert_eq!(parse_name("deliveries"), None);
    }

    #[test]
    fn a_day_is_five_windows_of_six_hours() {
        assert_eq!(width_of(86_400_000), 21_600_000);
        assert_eq!(width_of(10), MIN_WIDTH);
        assert_eq!(width_of(30 * 86_400_000), MAX_WIDTH);
    }
}
