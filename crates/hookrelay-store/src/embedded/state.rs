//! The store's records and the state they build: what is queued, what is dead-lettered,
//! which dedupe keys are live, and the next id.
//!
//! The same [`State::apply`] runs when the writer logs a record and when a log file is
//! read back at open, so the state after a restart is the state that was acknowledged.
//! Bodies and `webhook_id`s stay in the log file: the state keeps where each delivery's
//! `Put` record lies and the fields that change after it was written, and [`decode_put`]
//! reads the rest back out of the record.

use super::log::{self, Loc};
use crate::StoreError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

/// Memory a dedupe key takes in a checkpoint, in bytes (hash and expiry).
pub(crate) const KEY_BYTES: u64 = 24;

/// The expiry of a `Dedupe` record that forgets its key.
pub(crate) const FORGOTTEN: i64 = i64::MIN;

/// One logged change.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub(crate) enum Rec<'a> {
    /// First record of a log file.
    Checkpoint,
    /// A delivery is queued; its body is the record's tail.
    Put {
        id: u64,
        #[serde(borrow)]
        endpoint: &'a str,
        not_before_ms: i64,
        attempts: u32,
        #[serde(borrow)]
        webhook_id: &'a str,
        created_at_ms: i64,
        #[serde(borrow)]
        last_error: Option<&'a str>,
    },
    /// A dedupe key or a one-time token (its 128-bit hash) is recorded until
    /// `expires_ms`; [`FORGOTTEN`] forgets it (a value older logs read as long expired).
    Dedupe { key: u128, expires_ms: i64 },
    /// Dedupe keys in bulk (checkpoints).
    Keys(Vec<(u128, i64)>),
    /// Delivered: leaves the queue.
    Complete { id: u64 },
    /// Back in the queue after a failed attempt.
    Reschedule {
        id: u64,
        not_before_ms: i64,
        attempts: u32,
        #[serde(borrow)]
        error: Option<&'a str>,
    },
    /// Moved to the dead letters.
    Bury {
        id: u64,
        #[serde(borrow)]
        reason: &'a str,
        status: Option<u16>,
        #[serde(borrow)]
        response: Option<&'a str>,
        dead_at_ms: i64,
    },
    /// A dead letter queued again as of `at_ms`: attempts reset, due at once.
    Replay { id: u64, at_ms: i64 },
    /// The next id to allocate (checkpoints; ids are never reused).
    NextId(u64),
    /// A dead letter removed for good.
    Discard { id: u64 },
}

/// A queued delivery, in memory.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) endpoint: Arc<str>,
    pub(crate) not_before_ms: i64,
    pub(crate) attempts: u32,
    pub(crate) last_error: Option<Box<str>>,
    /// When it was last replayed from the dead letters: its `created_at_ms` since.
    pub(crate) replayed_at_ms: Option<i64>,
    /// The `Put` record: `webhook_id`, `created_at_ms` and the body.
    pub(crate) put: Loc,
}

/// A dead letter, in memory.
#[derive(Clone, Debug)]
pub(crate) struct Grave {
    pub(crate) entry: Entry,
    pub(crate) reason: Box<str>,
    pub(crate) status: Option<u16>,
    pub(crate) response: Option<Box<str>>,
    pub(crate) dead_at_ms: i64,
}

/// A dedupe key's 128-bit hash as two words: 8-byte aligned, so a map entry with its
/// expiry takes 24 bytes rather than 32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key([u64; 2]);

impl Key {
    fn new(key: u128) -> Self {
        Key([key as u64, (key >> 64) as u64])
    }

    fn get(self) -> u128 {
        u128::from(self.0[0]) | (u128::from(self.0[1]) << 64)
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0[0]);
    }
}

/// The key is already a uniform hash: its low word is the map's hash.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// About how long a dead letter's `Bury` record is.
fn grave_len(reason: &str, response: Option<&str>) -> u64 {
    (32 + reason.len() + response.map_or(0, str::len)) as u64
}

/// Everything the log says, as of its last record.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// By id. Ids are allocated in order, so a queue that grows appends at the right edge
    /// of the tree: no table to rehash and copy as it doubles (which, with a backlog of
    /// hundreds of thousands, cost the writer more than the inserts themselves), and a
    /// drained backlog gives its nodes back as it drains.
    pub(crate) queued: BTreeMap<u64, Entry>,
    pub(crate) dead: BTreeMap<u64, Grave>,
    dedupe: HashMap<Key, i64, BuildHasherDefault<KeyHasher>>,
    /// When expired keys were last forgotten, and how many keys were left then.
    purged: Option<(i64, usize)>,
    pub(crate) next_id: u64,
    names: HashSet<Arc<str>>,
    /// Bytes of the `Put` records of queued deliveries and dead letters.
    record_bytes: u64,
    /// Bytes of the dead letters' `Bury` records (reason and response).
    grave_bytes: u64,
}

impl State {
    /// Applies one record found at `loc`.
    pub(crate) fn apply(&mut self, rec: &Rec<'_>, loc: Loc) {
        match *rec {
            Rec::Checkpoint => {}
            Rec::Put {
                id,
                endpoint,
                not_before_ms,
                attempts,
                last_error,
                ..
            } => {
                let entry = Entry {
                    endpoint: self.intern(endpoint),
                    not_before_ms,
                    attempts,
                    last_error: last_error.map(Box::from),
                    replayed_at_ms: None,
                    put: loc,
                };
                self.record_bytes += u64::from(loc.len);
                if let Some(old) = self.queued.insert(id, entry) {
                    self.record_bytes -= u64::from(old.put.len);
                }
                if let Some(old) = self.dead.remove(&id) {
                    self.record_bytes -= u64::from(old.entry.put.len);
                }
                self.next_id = self.next_id.max(id.saturating_add(1));
            }
            Rec::Dedupe { key, expires_ms } => self.remember(key, expires_ms),
            Rec::Keys(ref keys) => {
                for &(key, expires_ms) in keys {
                    self.remember(key, expires_ms);
                }
            }
            Rec::Complete { id } => {
                if let Some(old) = self.queued.remove(&id) {
                    self.record_bytes -= u64::from(old.put.len);
                }
            }
            Rec::Reschedule {
                id,
                not_before_ms,
                attempts,
                error,
            } => {
                if let Some(entry) = self.queued.get_mut(&id) {
                    entry.not_before_ms = not_before_ms;
                    entry.attempts = attempts;
                    entry.last_error = error.map(Box::from);
                }
            }
            Rec::Bury {
                id,
                reason,
                status,
                response,
                dead_at_ms,
            } => {
                if let Some(entry) = self.queued.remove(&id) {
                    self.grave_bytes += grave_len(reason, response);
                    self.dead.insert(
                        id,
                        Grave {
                            entry,
                            reason: reason.into(),
                            status,
                            response: response.map(Box::from),
                            dead_at_ms,
                        },
                    );
                }
            }
            Rec::Replay { id, at_ms } => {
                if let Some(grave) = self.dead.remove(&id) {
                    self.grave_bytes -= grave_len(&grave.reason, grave.response.as_deref());
                    let entry = Entry {
                        not_before_ms: 0,
                        attempts: 0,
                        last_error: None,
                        replayed_at_ms: Some(at_ms),
                        ..grave.entry
                    };
                    self.queued.insert(id, entry);
                }
            }
            Rec::NextId(next) => self.next_id = self.next_id.max(next),
            Rec::Discard { id } => {
                if let Some(grave) = self.dead.remove(&id) {
                    self.grave_bytes -= grave_len(&grave.reason, grave.response.as_deref());
                }
            }
        }
    }

    fn remember(&mut self, key: u128, expires_ms: i64) {
        if expires_ms == FORGOTTEN {
            self.dedupe.remove(&Key::new(key));
        } else {
            self.dedupe.insert(Key::new(key), expires_ms);
        }
    }

    /// The shared copy of endpoint name `name`.
    pub(crate) fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(known) = self.names.get(name) {
            return Arc::clone(known);
        }
        let name: Arc<str> = Arc::from(name);
        self.names.insert(Arc::clone(&name));
        name
    }

    /// When `key` expires, if it is recorded.
    pub(crate) fn dedupe_expiry(&self, key: u128) -> Option<i64> {
        self.dedupe.get(&Key::new(key)).copied()
    }

    /// Forgets the keys that expired at or before `now_ms`, when a minute has passed since
    /// the last time or the number of keys has doubled since: one pass over the keys,
    /// amortized over the enqueues in between, and no second structure to keep. Returns
    /// how many were forgotten.
    pub(crate) fn purge(&mut self, now_ms: i64) -> usize {
        const EVERY_MS: i64 = 60_000;
        let due = match self.purged {
            None => true,
            Some((at, left)) => {
                now_ms.saturating_sub(at) >= EVERY_MS || self.dedupe.len() >= (left * 2).max(1024)
            }
        };
        if !due {
            return 0;
        }
        let before = self.dedupe.len();
        self.dedupe.retain(|_, &mut expires| expires > now_ms);
        self.purged = Some((now_ms, self.dedupe.len()));
        before - self.dedupe.len()
    }

    /// Live dedupe keys, for a checkpoint.
    pub(crate) fn keys(&self) -> Vec<(u128, i64)> {
        self.dedupe.iter().map(|(&k, &e)| (k.get(), e)).collect()
    }

    /// Recorded dedupe keys (expired ones not yet purged included).
    pub(crate) fn key_count(&self) -> usize {
        self.dedupe.len()
    }

    /// About how many bytes a checkpoint of this state would take.
    pub(crate) fn live_bytes(&self) -> u64 {
        self.record_bytes + self.grave_bytes + self.dedupe.len() as u64 * KEY_BYTES
    }

    /// Points every delivery's `Put` at its copy in a new log file.
    pub(crate) fn relocate(&mut self, moved: &[(u64, Loc)]) {
        for &(id, loc) in moved {
            if let Some(entry) = self.queued.get_mut(&id) {
                self.record_bytes =
                    self.record_bytes + u64::from(loc.len) - u64::from(entry.put.len);
                entry.put = loc;
            } else if let Some(grave) = self.dead.get_mut(&id) {
                self.record_bytes =
                    self.record_bytes + u64::from(loc.len) - u64::from(grave.entry.put.len);
                grave.entry.put = loc;
            }
        }
    }
}

/// The fields of a `Put` record that stay in the file.
pub(crate) struct Put<'a> {
    pub(crate) webhook_id: &'a str,
    pub(crate) created_at_ms: i64,
    pub(crate) body: &'a [u8],
}

/// Decodes a `Put` record read back from `loc`.
pub(crate) fn decode_put(seq: u64, loc: Loc, record: &[u8]) -> Result<Put<'_>, StoreError> {
    let bad = |what: &str| StoreError::Corrupt {
        table: "log",
        key: seq,
        source: Arc::new(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{what} at offset {}", loc.off),
        )),
    };
    let (head, body) = log::split(record).ok_or_else(|| bad("malformed record"))?;
    match postcard::from_bytes::<Rec<'_>>(head) {
        Ok(Rec::Put {
            webhook_id,
            created_at_ms,
            ..
        }) => Ok(Put {
            webhook_id,
            created_at_ms,
            body,
        }),
        _ => Err(bad("expected a delivery record")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(off: u64) -> Loc {
        Loc {
            seq: 1,
            off,
            len: 100,
        }
    }

    fn put(id: u64) -> Rec<'static> {
        Rec::Put {
            id,
            endpoint: "crm",
            not_before_ms: 5,
            attempts: 0,
            webhook_id: "w",
            created_at_ms: 1,
            last_error: None,
        }
    }

    #[test]
    fn a_delivery_moves_through_its_records() {
        let mut state = State::default();
        state.apply(&put(7), loc(8));
        assert_eq!(state.next_id, 8);
        state.apply(
            &Rec::Reschedule {
                id: 7,
                not_before_ms: 50,
                attempts: 1,
                error: Some("503"),
            },
            loc(200),
        );
        assert_eq!(state.queued[&7].attempts, 1);
        state.apply(
            &Rec::Bury {
                id: 7,
                reason: "gone",
                status: Some(410),
                response: None,
                dead_at_ms: 60,
            },
            loc(300),
        );
        assert!(state.queued.is_empty());
        assert_eq!(&*state.dead[&7].reason, "gone");
        state.apply(&Rec::Replay { id: 7, at_ms: 70 }, loc(400));
        let entry = &state.queued[&7];
        assert_eq!((entry.attempts, entry.not_before_ms), (0, 0));
        assert_eq!(entry.replayed_at_ms, Some(70));
        assert_eq!(entry.put, loc(8), "the body is where it was");
        state.apply(&Rec::Complete { id: 7 }, loc(500));
        assert!(state.queued.is_empty() && state.dead.is_empty());
        assert_eq!(state.live_bytes(), 0);
    }

    #[test]
    fn keys_keep_all_128_bits() {
        for key in [
            0,
            1,
            u128::MAX,
            1 << 64,
            (1 << 64) - 1,
            0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
        ] {
            assert_eq!(Key::new(key).get(), key);
        }
        let mut state = State::default();
        state.apply(
            &Rec::Dedupe {
                key: 1,
                expires_ms: 5,
            },
            loc(0),
        );
        state.apply(
            &Rec::Dedupe {
                key: 1 | (1 << 64),
                expires_ms: 6,
            },
            loc(0),
        );
        assert_eq!(state.key_count(), 2, "same low word, different keys");
        assert_eq!(state.dedupe_expiry(1 | (1 << 64)), Some(6));
        assert_eq!(state.dedupe_expiry(2 << 64), None);
    }

    #[test]
    fn a_forgotten_key_takes_no_memory() {
        let mut state = State::default();
        state.apply(
            &Rec::Dedupe {
                key: 7,
                expires_ms: 100,
            },
            loc(0),
        );
        state.apply(
            &Rec::Dedupe {
                key: 7,
                expires_ms: FORGOTTEN,
            },
            loc(0),
        );
        assert_eq!(state.dedupe_expiry(7), None);
        assert_eq!(state.key_count(), 0);
    }

    #[test]
    fn purge_forgets_expired_keys_but_not_renewed_ones() {
        let mut state = State::default();
        for key in 0..10u128 {
            state.apply(
                &Rec::Dedupe {
                    key,
                    expires_ms: 100,
                },
                loc(0),
            );
        }
        // Key 3 renewed until 1000.
        state.apply(
            &Rec::Dedupe {
                key: 3,
                expires_ms: 1000,
            },
            loc(0),
        );
        assert_eq!(state.purge(100), 9);
        assert_eq!(state.dedupe_expiry(3), Some(1000));
        // Not again within the minute, unless the keys doubled.
        assert_eq!(state.purge(1000), 0);
        assert_eq!(state.key_count(), 1);
        assert_eq!(state.purge(60_100), 1);
        assert_eq!(state.key_count(), 0);
        for key in 0..1024u128 {
            state.apply(&Rec::Dedupe { key, expires_ms: 0 }, loc(0));
        }
        assert_eq!(state.purge(60_101), 1024, "the keys grew past 1024");
    }

    #[test]
    fn records_round_trip_through_postcard() -> Result<(), postcard::Error> {
        let recs = [
            Rec::Checkpoint,
            put(1),
            Rec::Dedupe {
                key: u128::MAX,
                expires_ms: -1,
            },
            Rec::Keys(vec![(1, 2), (3, 4)]),
            Rec::Complete { id: 9 },
            Rec::Bury {
                id: 2,
                reason: "r",
                status: None,
                response: Some("é"),
                dead_at_ms: 3,
            },
            Rec::NextId(u64::MAX),
        ];
        for rec in recs {
            let bytes = postcard::to_allocvec(&rec)?;
            assert_eq!(postcard::from_bytes::<Rec<'_>>(&bytes)?, rec);
        }
        Ok(())
    }
}
