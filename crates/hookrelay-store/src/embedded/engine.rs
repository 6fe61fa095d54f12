//! The store's data on disk: one fjall database in `<dir>/data`, its keyspaces, and how
//! keys and records are laid out in them.
//!
//! | keyspace | key | value |
//! |---|---|---|
//! | `deliveries` | id (8 bytes, big-endian) | [`Record`]: the delivery's fields, its dead letter if it is one, then its body |
//! | `queue` (`due` in stores made before it, see [`QUEUE_L0`]) | [lane](lane) of the endpoint, due time, id | empty: the queue, in due order per endpoint |
//! | `dead` | lane of the endpoint, id | empty: the dead letters, oldest first per endpoint |
//! | `meta` | `next_id`, `bytes`, `history`, `depth`/`dead`/`cursor` + lane | counters kept with the data, so an open reads no backlog |
//! | `hooks` | lane of the `webhook-id`, id | empty: which deliveries carry a `webhook-id` |
//! | `attempts` | id, time (8 bytes), order within the millisecond (1 byte) | [`Attempt`](crate::Attempt): the delivery's history, oldest first |
//! | `done` | when delivered (8 bytes), id | the record's size: delivered records, the history sweep's order |
//!
//! A delivered delivery keeps its record (neither in `queue` nor in `dead`: that is how it
//! is told apart) until the history sweep removes it with its `hooks` and `attempts`
//! entries.
//! | `keys_<end>_<width>` | 128-bit hash of a dedupe key or a one-time token | its expiry: one keyspace per window of expiries (`dedupe`) |
//!
//! Every change of a batch is one fjall write batch: atomic, and durable once committed
//! with `SyncData` (one `fdatasync` of fjall's journal). A torn batch at the end of the
//! journal is cut off when the database is opened.

use crate::StoreError;
use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, KvSeparationOptions};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The name fjall gives its background threads (flushes and compactions).
pub(crate) const WORKER_THREADS: &str = "fjall:worker";

/// The fjall database's directory inside the store directory.
pub(crate) const DATA_DIR: &str = "data";

/// Longest endpoint name the store takes, in bytes.
pub(crate) const MAX_ENDPOINT: usize = 1024;

/// Memory for blocks read back (data, index and filter blocks), shared by every keyspace.
const CACHE_BYTES: u64 = 8 << 20;

/// The journal is flushed into tables once it is this long (fjall's smallest setting):
/// what an open replays is bounded by it, whatever the backlog.
const JOURNAL_BYTES: u64 = 64 << 20;

/// Bodies at least this long are kept apart from the keys (fjall's blob files), so that
/// compactions move a pointer rather than the body.
const SEPARATE_BODIES_FROM: u32 = 4096;

/// The write buffer (memtable) of each keyspace, before it is written out as a table.
/// fjall seals a full one and flushes it in the background; while flushes lag, up to
/// four sealed ones wait per keyspace, so these bound the store's memory more than the
/// cache does.
const DELIVERIES_MEMTABLE: u64 = 8 << 20;
const INDEX_MEMTABLE: u64 = 2 << 20;
const KEYS_MEMTABLE: u64 = 4 << 20;

/// The fewest background threads (flushes and compactions) fjall gets; its own default is
/// one per core up to four. fjall's first worker hands every compaction request back to the
/// queue (it keeps itself free for flushes) and takes it again at once for as long as no
/// other worker is free to take it: with two workers, a busy loop while the second one
/// compacts, about a twentieth of a 2-core machine under load. A third worker stops the
/// loop but runs a second merge at once, with its buffers: filling a store with a backlog,
/// the highest RSS was 6 to 7 MiB more (71 to 73 MiB against 65 to 66 MiB), over the
/// bound the backlog benchmark holds the store to, while the acknowledged rate did not
/// move. Bounded memory comes first, so two.
const MIN_WORKERS: usize = 2;

/// fjall's background threads: one per core, at least [`MIN_WORKERS`], at most four.
fn workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(MIN_WORKERS, 4)
}

/// The queue's keyspace merges its newest tables (L0) into the rest once this many have
/// been flushed, rather than fjall's 4. The queue is written at each endpoint's head
/// (tombstones of delivered deliveries) and tail (new ones), so every flushed table spans
/// every endpoint's queue and each merge rewrites the whole queue: with a backlog of
/// millions, a merge every four flushes cost more than the deliveries themselves. fjall
/// slows writes from 20 such tables and stops them at 30, so 12 leaves room for the
/// flushes made while a large merge runs.
const QUEUE_L0: u8 = 12;

/// The keyspace of the queue (a key per queued delivery: its endpoint's lane, due time, id).
const QUEUE: &str = "queue";

/// The queue's keyspace in stores made before [`QUEUE`], with fjall's default compaction.
/// An open moves its entries to [`QUEUE`] when it holds at most [`MOVE_AT_OPEN`] (an
/// open stays quick); a larger one is used as it is until an open finds it small enough.
const OLD_QUEUE: &str = "due";

/// Most entries an open moves from [`OLD_QUEUE`] to [`QUEUE`].
const MOVE_AT_OPEN: usize = 200_000;

/// A lease's ids are read with one range scan when they span at most this many ids
/// apiece (else the scan would read mostly other endpoints' deliveries).
const SCAN_SPREAD: u64 = 4;

/// A record as read: the record, its body and its size on disk.
pub(crate) type ReadRecord = (Record, Bytes, u64);

/// The id of a `deliveries` key.
fn id_of(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

/// The open database and its long-lived keyspaces.
pub(crate) struct Engine {
    pub(crate) db: Database,
    pub(crate) deliveries: Keyspace,
    pub(crate) queue: Keyspace,
    pub(crate) dead: Keyspace,
    pub(crate) meta: Keyspace,
    pub(crate) hooks: Keyspace,
    pub(crate) attempts: Keyspace,
    pub(crate) done: Keyspace,
    pub(crate) path: PathBuf,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// `options` with every table's index and filter in partitions: a table keeps only its
/// top-level index in memory (one entry per 4 KiB partition), and lookups read the
/// partitions they need through the block cache. Unpartitioned, a table's whole index
/// stays in memory, and a queue written in id order makes a table per flush (compaction
/// moves them down whole): memory would grow with the backlog.
fn partitioned(options: KeyspaceCreateOptions) -> KeyspaceCreateOptions {
    use fjall::config::{PartitioningPolicy, PinningPolicy};
    options
        .filter_block_partitioning_policy(PartitioningPolicy::all(true))
        .index_block_partitioning_policy(PartitioningPolicy::all(true))
        .index_block_pinning_policy(PinningPolicy::all(false))
        .filter_block_pinning_policy(PinningPolicy::all(false))
}

/// Options of a dedupe keyspace: point lookups, mostly misses, in many tables.
pub(crate) fn key_options() -> KeyspaceCreateOptions {
    partitioned(KeyspaceCreateOptions::default()).max_memtable_size(KEYS_MEMTABLE)
}

/// The queue's keyspace: [`QUEUE`], made with [`QUEUE_L0`]; in a store made before it,
/// [`OLD_QUEUE`] until it is small enough to move at an open. A move is one write batch per
/// chunk, synced before the old keyspace is deleted; one cut short by a crash is made
/// again from the start at the next open, since the old keyspace is still there.
fn open_queue(
    db: &Database,
    index: impl Fn() -> KeyspaceCreateOptions,
    move_at_open: usize,
) -> Result<Keyspace, fjall::Error> {
    let options = || {
        index().compaction_strategy(Arc::new(
            fjall::compaction::Leveled::default().with_l0_threshold(QUEUE_L0),
        ))
    };
    if !db.keyspace_exists(OLD_QUEUE) {
        return db.keyspace(QUEUE, options);
    }
    let old = db.keyspace(OLD_QUEUE, &index)?;
    if old.approximate_len() > move_at_open {
        return Ok(old);
    }
    if db.keyspace_exists(QUEUE) {
        // A move cut short: made again from the start.
        let partial = db.keyspace(QUEUE, options)?;
        db.delete_keyspace(partial)?;
    }
    let queue = db.keyspace(QUEUE, options)?;
    let mut batch = db.batch();
    let mut staged = 0;
    for guard in old.iter() {
        let (key, value) = guard.into_inner()?;
        batch.insert(&queue, key, value);
        staged += 1;
        if staged == 10_000 {
            batch.commit()?;
            batch = db.batch();
            staged = 0;
        }
    }
    batch.commit()?;
    db.persist(fjall::PersistMode::SyncAll)?;
    db.delete_keyspace(old)?;
    Ok(queue)
}

impl Engine {
    /// Opens (or creates) the database under `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Self, fjall::Error> {
        let path = dir.join(DATA_DIR);
        let db = Database::builder(&path)
            .cache_size(CACHE_BYTES)
            .max_journaling_size(JOURNAL_BYTES)
            .worker_threads(workers())
            .open()?;
        let deliveries = db.keyspace("deliveries", || {
            partitioned(KeyspaceCreateOptions::default())
                .max_memtable_size(DELIVERIES_MEMTABLE)
                .with_kv_separation(Some(
                    KvSeparationOptions::default().separation_threshold(SEPARATE_BODIES_FROM),
                ))
        })?;
        let index =
            || partitioned(KeyspaceCreateOptions::default()).max_memtable_size(INDEX_MEMTABLE);
        let queue = open_queue(&db, index, MOVE_AT_OPEN)?;
        let dead = db.keyspace("dead", index)?;
        let meta = db.keyspace("meta", index)?;
        let hooks = db.keyspace("hooks", index)?;
        let attempts = db.keyspace("attempts", index)?;
        let done = db.keyspace("done", index)?;
        Ok(Engine {
            db,
            deliveries,
            queue,
            dead,
            meta,
            hooks,
            attempts,
            done,
            path,
        })
    }

    /// The record of delivery `id`, if there is one.
    pub(crate) fn record(&self, id: u64) -> Result<Option<(Record, Bytes)>, StoreError> {
        self.stored(id)
            .map(|found| found.map(|(record, body, _)| (record, body)))
    }

    /// The record of delivery `id` with its body and the length of its stored value.
    pub(crate) fn stored(&self, id: u64) -> Result<Option<(Record, Bytes, u64)>, StoreError> {
        let value = match self.deliveries.get(id.to_be_bytes()) {
            Ok(Some(value)) => value,
            Ok(None) => return Ok(None),
            // A damaged block or blob: this record cannot be read, the others can.
            Err(e @ (fjall::Error::Storage(_) | fjall::Error::Decompress(_))) if !is_io(&e) => {
                return Err(StoreError::Corrupt {
                    table: "deliveries",
                    key: id,
                    source: Arc::new(e),
                });
            }
            Err(e) => return Err(read_error(e)),
        };
        let size = value.len() as u64;
        Record::decode(id, Bytes::from(value)).map(|(record, body)| Some((record, body, size)))
    }

    /// The records of `ids`, in their order (as [`Engine::stored`] each). Ids close
    /// together, as a lease of one endpoint's fresh deliveries is, are read with one range
    /// scan rather than one lookup each; the rest, and any after a failed scan, are looked
    /// up one by one, so an error is classified as for a single read.
    pub(crate) fn stored_many(&self, ids: &[u64]) -> Vec<Result<Option<ReadRecord>, StoreError>> {
        let mut found: Vec<Option<Result<Option<ReadRecord>, StoreError>>> =
            ids.iter().map(|_| None).collect();
        if let (Some(&lo), Some(&hi)) = (ids.iter().min(), ids.iter().max())
            && ids.len() > 1
            && hi - lo < (ids.len() as u64).saturating_mul(SCAN_SPREAD)
        {
            let wanted: std::collections::HashMap<u64, usize> =
                ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
            let mut seen = 0;
            let mut scanned = true;
            for guard in self.deliveries.range(lo.to_be_bytes()..=hi.to_be_bytes()) {
                let Ok((key, value)) = guard
                    .into_inner_if(|key| id_of(key).is_some_and(|id| wanted.contains_key(&id)))
                else {
                    scanned = false;
                    break;
                };
                let (Some(value), Some(&i)) = (value, id_of(&key).and_then(|id| wanted.get(&id)))
                else {
                    continue;
                };
                let size = value.len() as u64;
                found[i] = Some(
                    Record::decode(ids[i], Bytes::from(value))
                        .map(|(record, body)| Some((record, body, size))),
                );
                seen += 1;
                if seen == ids.len() {
                    break;
                }
            }
            if scanned {
                // Not met by a whole scan: not stored.
                for slot in found.iter_mut().filter(|slot| slot.is_none()) {
                    *slot = Some(Ok(None));
                }
            }
        }
        ids.iter()
            .zip(found)
            .map(|(&id, slot)| slot.unwrap_or_else(|| self.stored(id)))
            .collect()
    }

    /// A counter of `meta`, 0 when absent.
    pub(crate) fn counter(&self, key: &[u8]) -> Result<u64, StoreError> {
        let value = self.meta.get(key).map_err(read_error)?;
        Ok(value.map_or(0, |v| decode_u64(&v)))
    }
}

impl Engine {
    /// Whether `record` of `id` is in the queue (its key in `queue` is there).
    pub(crate) fn is_queued(&self, id: u64, record: &Record) -> Result<bool, StoreError> {
        let key = due_key(&lane(&record.endpoint), record.not_before_ms, id);
        self.queue.contains_key(key).map_err(read_error)
    }

    /// The history entries of delivery `id`, oldest first, with their keys.
    pub(crate) fn attempts_of(
        &self,
        id: u64,
    ) -> Result<Vec<(Vec<u8>, crate::Attempt)>, StoreError> {
        let mut found = Vec::new();
        for guard in self.attempts.prefix(id.to_be_bytes()) {
            let (key, value) = guard.into_inner().map_err(read_error)?;
            match postcard::from_bytes::<crate::Attempt>(&value) {
                Ok(attempt) => found.push((key.to_vec(), attempt)),
                Err(e) => tracing::error!(id, error = %e, "unreadable history entry left out"),
            }
        }
        Ok(found)
    }

    /// The ids of the deliveries with `webhook-id` `webhook_id`.
    pub(crate) fn hooked(&self, webhook_id: &str) -> Result<Vec<u64>, StoreError> {
        let prefix = lane(webhook_id);
        let mut ids = Vec::new();
        for guard in self.hooks.prefix(&prefix) {
            let key = guard.key().map_err(read_error)?;
            // Another webhook-id's lane never starts with this one (lanes carry lengths).
            if key.len() == prefix.len() + 8
                && let Some(id) = parse_dead(&key)
            {
                ids.push(id);
            }
        }
        Ok(ids)
    }
}

/// The key of delivery `id` in `hooks`, under its `webhook-id`.
pub(crate) fn hook_key(webhook_id: &str, id: u64) -> Vec<u8> {
    dead_key(&lane(webhook_id), id)
}

/// The key of delivered delivery `id` in `done`: when it was delivered, then the id.
pub(crate) fn done_key(done_ms: i64, id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(16);
    key.extend_from_slice(&due_bytes(done_ms));
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// The time and id of a `done` key.
pub(crate) fn parse_done(key: &[u8]) -> Option<(i64, u64)> {
    if key.len() != 16 {
        return None;
    }
    parse_due(key)
}

/// The key of a history entry of delivery `id`: the id, the entry's time, then a byte that
/// orders entries of the same millisecond as they happen: a replay before the attempt it
/// leads to, a retried attempt before the one after it. (Keys written before this order
/// end in the outcome's own number, 0 to 3; these end in 4 to 7, so the two never
/// collide.)
pub(crate) fn attempt_key(id: u64, attempt: &crate::Attempt) -> Vec<u8> {
    use crate::AttemptOutcome;
    let order = match attempt.outcome {
        AttemptOutcome::Replayed => 4,
        AttemptOutcome::Retrying => 5,
        AttemptOutcome::Dead => 6,
        AttemptOutcome::Delivered => 7,
    };
    let mut key = Vec::with_capacity(17);
    key.extend_from_slice(&id.to_be_bytes());
    key.extend_from_slice(&due_bytes(attempt.at_ms));
    key.push(order);
    key
}

/// Whether `e` is an I/O error (rather than damaged data).
fn is_io(e: &fjall::Error) -> bool {
    matches!(
        e,
        fjall::Error::Io(_) | fjall::Error::Storage(fjall::LsmError::Io(_))
    )
}

/// A read of the database failed.
pub(crate) fn read_error(e: fjall::Error) -> StoreError {
    StoreError::backend("read", e)
}

/// A big-endian `u64`, 0 when the value is not 8 bytes long.
pub(crate) fn decode_u64(value: &[u8]) -> u64 {
    value.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

/// An endpoint's lane: its name's length (2 bytes) and the name. Every key of the
/// endpoint in `queue` and `dead` starts with it, and no lane is the start of another.
pub(crate) fn lane(endpoint: &str) -> Vec<u8> {
    let name = endpoint.as_bytes();
    let mut key = Vec::with_capacity(2 + name.len() + 16);
    // Names are checked against MAX_ENDPOINT before they are written.
    key.extend_from_slice(&(name.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    key.extend_from_slice(name);
    key
}

/// Due times sort as unsigned bytes: the sign bit flipped.
fn due_bytes(due_ms: i64) -> [u8; 8] {
    ((due_ms as u64) ^ (1 << 63)).to_be_bytes()
}

/// The key of delivery `id` of `lane`, due at `due_ms`, in `queue`.
pub(crate) fn due_key(lane: &[u8], due_ms: i64, id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(lane.len() + 16);
    key.extend_from_slice(lane);
    key.extend_from_slice(&due_bytes(due_ms));
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// The due time and id at the end of a queue key.
pub(crate) fn parse_due(key: &[u8]) -> Option<(i64, u64)> {
    let tail = key.len().checked_sub(16).map(|at| &key[at..])?;
    let due = u64::from_be_bytes(tail[..8].try_into().ok()?) ^ (1 << 63);
    let id = u64::from_be_bytes(tail[8..].try_into().ok()?);
    Some((due as i64, id))
}

/// The key of dead letter `id` of `lane` in `dead`.
pub(crate) fn dead_key(lane: &[u8], id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(lane.len() + 8);
    key.extend_from_slice(lane);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// The id at the end of a `dead` key.
pub(crate) fn parse_dead(key: &[u8]) -> Option<u64> {
    let at = key.len().checked_sub(8)?;
    Some(u64::from_be_bytes(key[at..].try_into().ok()?))
}

/// The `meta` key of counter `kind` (`depth`, `dead`, `cursor`) of `lane`.
pub(crate) fn meta_key(kind: &[u8], lane: &[u8]) -> Vec<u8> {
    [kind, b"/", lane].concat()
}

/// `meta`: the next id to hand out.
pub(crate) const NEXT_ID: &[u8] = b"next_id";
/// `meta`: bytes of every record (queued deliveries and dead letters).
pub(crate) const BYTES: &[u8] = b"bytes";
/// `meta`: bytes of the delivered records the history keeps.
pub(crate) const HISTORY: &[u8] = b"history";
/// `meta` kinds.
pub(crate) const DEPTH: &[u8] = b"depth";
pub(crate) const DEAD: &[u8] = b"dead";
pub(crate) const CURSOR: &[u8] = b"cursor";

/// Why a delivery was given up on: present when the record is a dead letter.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Grave {
    pub(crate) reason: String,
    pub(crate) status: Option<u16>,
    pub(crate) response: Option<String>,
    pub(crate) dead_at_ms: i64,
}

/// A delivery's record in `deliveries`, without its body.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) endpoint: Arc<str>,
    pub(crate) webhook_id: String,
    pub(crate) created_at_ms: i64,
    pub(crate) not_before_ms: i64,
    pub(crate) attempts: u32,
    pub(crate) last_error: Option<String>,
    pub(crate) grave: Option<Grave>,
    /// The trace context, stored after the head (not in it: records written before it
    /// existed read the same).
    #[serde(skip)]
    pub(crate) trace: Option<String>,
}

/// The high bit of a stored head length: a trace context follows the head.
const TRACED: u32 = 1 << 31;

impl Record {
    /// The value stored: the head's length (4 bytes, the high bit set when a trace context
    /// follows), the head, the trace context (its length in 1 byte, then it), the body.
    pub(crate) fn encode(&self, id: u64, body: &[u8]) -> Result<Vec<u8>, StoreError> {
        let head = postcard::to_allocvec(self).map_err(|e| StoreError::Corrupt {
            table: "deliveries",
            key: id,
            source: Arc::new(e),
        })?;
        let trace = self
            .trace
            .as_deref()
            .filter(|t| t.len() <= usize::from(u8::MAX));
        let mut value = Vec::with_capacity(5 + head.len() + trace.map_or(0, str::len) + body.len());
        let flag = if trace.is_some() { TRACED } else { 0 };
        value.extend_from_slice(&(head.len() as u32 | flag).to_be_bytes());
        value.extend_from_slice(&head);
        if let Some(trace) = trace {
            value.push(trace.len() as u8);
            value.extend_from_slice(trace.as_bytes());
        }
        value.extend_from_slice(body);
        Ok(value)
    }

    /// Record `id` and its body, from the stored value.
    pub(crate) fn decode(id: u64, value: Bytes) -> Result<(Record, Bytes), StoreError> {
        let corrupt = |source: Arc<dyn std::error::Error + Send + Sync>| StoreError::Corrupt {
            table: "deliveries",
            key: id,
            source,
        };
        let cut = || corrupt(Arc::new(std::io::Error::other("record cut short")));
        let word = value
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
            .ok_or_else(cut)?;
        let head_len = (word & !TRACED) as usize;
        if 4 + head_len > value.len() {
            return Err(cut());
        }
        let mut record: Record =
            postcard::from_bytes(&value[4..4 + head_len]).map_err(|e| corrupt(Arc::new(e)))?;
        let mut at = 4 + head_len;
        if word & TRACED != 0 {
            let len = usize::from(*value.get(at).ok_or_else(cut)?);
            let text = value.get(at + 1..at + 1 + len).ok_or_else(cut)?;
            record.trace = Some(String::from_utf8_lossy(text).into_owned());
            at += 1 + len;
        }
        Ok((record, value.slice(at..)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_keys_sort_by_time_then_id_and_parse_back() {
        let lane = lane("crm");
        let early = due_key(&lane, -5, 9);
        let now = due_key(&lane, 1_700_000_000_000, 2);
        let later = due_key(&lane, 1_700_000_000_000, 3);
        assert!(early < now && now < later);
        assert_eq!(parse_due(&now), Some((1_700_000_000_000, 2)));
        assert_eq!(parse_due(&early), Some((-5, 9)));
        assert!(!due_key(&super::lane("crm2"), 0, 0).starts_with(&lane));
    }

    /// The keys and values of `keyspace`.
    fn entries(keyspace: &Keyspace) -> Vec<(Vec<u8>, Vec<u8>)> {
        keyspace
            .iter()
            .filter_map(|guard| guard.into_inner().ok())
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()
    }

    #[test]
    fn a_queue_made_before_its_compaction_setting_moves_once_small_enough()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(DATA_DIR);
        let index = || KeyspaceCreateOptions::default();
        let keys: Vec<(Vec<u8>, Vec<u8>)> = (0..50u64)
            .map(|id| (due_key(&lane("crm"), 1_000, id), Vec::new()))
            .collect();
        {
            let db = Database::builder(&path).open()?;
            let old = db.keyspace(OLD_QUEUE, index)?;
            for (key, value) in &keys {
                old.insert(key, value)?;
            }
            // A move cut short by a crash: part of it in the new keyspace.
            db.keyspace(QUEUE, index)?
                .insert(due_key(&lane("crm"), 1, 999), b"partial")?;
            db.persist(fjall::PersistMode::SyncAll)?;
        }
        {
            // Too large to move at this open: used as it is.
            let db = Database::builder(&path).open()?;
            let queue = open_queue(&db, index, 10)?;
            assert_eq!(queue.name().as_ref(), OLD_QUEUE);
            assert_eq!(entries(&queue), keys);
        }
        {
            let db = Database::builder(&path).open()?;
            let queue = open_queue(&db, index, 100)?;
            assert_eq!(queue.name().as_ref(), QUEUE);
            assert_eq!(
                entries(&queue),
                keys,
                "moved whole, the partial move replaced"
            );
            assert!(!db.keyspace_exists(OLD_QUEUE));
        }
        let db = Database::builder(&path).open()?;
        assert!(
            !db.keyspace_exists(OLD_QUEUE),
            "the old keyspace stays deleted"
        );
        let queue = open_queue(&db, index, 100)?;
        assert_eq!(entries(&queue), keys);
        Ok(())
    }

    #[test]
    fn records_round_trip_with_their_bodies() -> Result<(), StoreError> {
        let record = Record {
            endpoint: "crm".into(),
            webhook_id: "msg_1".into(),
            created_at_ms: 1,
            not_before_ms: 2,
            attempts: 3,
            last_error: Some("503".into()),
            grave: None,
            trace: None,
        };
        let value = record.encode(7, b"{}")?;
        let value = Bytes::from(value);
        let (back, body) = Record::decode(7, value.clone())?;
        assert_eq!(back, record);
        assert_eq!(&body[..], b"{}");
        assert!(Record::decode(7, value.slice(..3)).is_err());
        // With a trace context: read back; a record without one reads as before.
        let traced = Record {
            trace: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            ..record.clone()
        };
        let value = Bytes::from(traced.encode(7, b"{\"a\":1}")?);
        let (back, body) = Record::decode(7, value.clone())?;
        assert_eq!(back, traced);
        assert_eq!(&body[..], b"{\"a\":1}");
        assert!(Record::decode(7, value.slice(..value.len() - 60)).is_err());
        Ok(())
    }

    #[test]
    fn many_records_read_by_scan_or_lookup_match_single_reads()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let engine = Engine::open(dir.path())?;
        let record = |n: u64| Record {
            endpoint: if n.is_multiple_of(2) {
                "a".into()
            } else {
                "b".into()
            },
            webhook_id: format!("msg_{n}"),
            created_at_ms: 0,
            not_before_ms: 0,
            attempts: 0,
            last_error: None,
            grave: None,
            trace: None,
        };
        // Ids 1..=40 stored but 7 and 8, and one far away.
        for n in (1..=40_u64).chain([10_000]).filter(|n| *n != 7 && *n != 8) {
            let body = format!("body {n}");
            engine
                .deliveries
                .insert(n.to_be_bytes(), record(n).encode(n, body.as_bytes())?)?;
        }
        let cases: [&[u64]; 5] = [
            &[5, 6, 7, 8, 9],      // close together: one scan, two not stored
            &[12, 3, 10, 6],       // close enough, in any order
            &[1, 10_000],          // far apart: lookups
            &[2, 4, 6, 8, 10, 12], // every other id (one endpoint of two)
            &[41, 42],             // none stored
        ];
        for ids in cases {
            let many = engine.stored_many(ids);
            assert_eq!(many.len(), ids.len());
            for (&id, got) in ids.iter().zip(many) {
                let got = got?.map(|(r, b, size)| (r, b.to_vec(), size));
                let one = engine.stored(id)?.map(|(r, b, size)| (r, b.to_vec(), size));
                assert_eq!(got, one, "id {id} of {ids:?}");
            }
        }
        Ok(())
    }
}
