//! The writer thread: every change to the store, group-committed.
//!
//! Callers send an [`Op`] with a oneshot reply. The thread takes the first op, drains
//! whatever else is already waiting (up to `max_batch`), decides each op against the
//! database and what the ops before it in the batch wrote ([`Tx`]), and commits the
//! batch's writes as one fjall write batch: atomic, and handed to the OS at once. Then it
//! updates the in-memory queue (counters, cursors, leases) and wakes workers. When any op
//! of the batch needs the batch durable, its answers go to the syncer thread (`syncer`),
//! which answers them after one `fdatasync` of the journal covering every batch written
//! so far, while the writer goes on with the next batches; otherwise it answers at once.
//!
//! A delivery's outcome (complete, reschedule, dead letter) is written at once without a
//! sync: the journal is handed to the OS, so a crash of the process keeps it. It is
//! synced with the next durable write or within `outcome_sync` (100 ms by default).
//!
//! Ops on a whole endpoint (dead-letter its queue, replay its dead letters, make its
//! retries due) run after the rest of their batch, in commits of at most [`CHUNK`]
//! deliveries each, so a large backlog never makes one batch that must fit in memory.
//!
//! A failed commit or sync (a full disk, an I/O error) fails every op of its batch. fjall
//! refuses every write after one has failed, so the writer closes the database and, with
//! backoff, opens it again (which cuts off a torn batch) and probes a synced write; until
//! that works every write is refused at once with [`StoreError::Recovering`].

use super::dedupe::{KEY_BYTES, KeyWrites, Keys};
use super::engine::{
    BYTES, CURSOR, DEAD, DEPTH, Engine, Grave, HISTORY, MAX_ENDPOINT, NEXT_ID, Record, attempt_key,
    dead_key, done_key, due_key, hook_key, lane, meta_key, parse_dead, parse_done, parse_due,
    read_error,
};
use super::queue::{Changes, Known, Queue};
use super::relay::{self, Relay};
use super::syncer::{Job, Syncer};
use crate::types::truncate;
use crate::{
    Attempt, AttemptOutcome, DeliveryId, EnqueueOutcome, MAX_ATTEMPTS_KEPT, MAX_RESPONSE_BYTES,
    MinFree, NewDelivery, StoreError,
};
use bytes::Bytes;
use fjall::PersistMode;
use std::collections::HashMap;
use std::error::Error as StdError;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use xxhash_rust::xxh3::{xxh3_128, xxh3_128_with_seed};

/// Seed of a one-time token's hash, so that a token and a dedupe key with the same text
/// are different keys.
const TOKEN_SEED: u64 = 0x0074_6f6b_656e;

/// Most deliveries an op on a whole endpoint moves per commit.
pub(crate) const CHUNK: usize = 4096;

/// Most delivered records one history sweep op removes (the caller sends it again for
/// more, so other ops go between).
pub(crate) const SWEEP_CHUNK: usize = 1024;

/// Longest `webhook-id` the store takes, in bytes (it is part of a key).
pub(crate) const MAX_WEBHOOK_ID: usize = 4096;

/// How long an outcome written without a sync waits for one at most, unless the options
/// say otherwise.
pub(crate) const LAZY_SYNC: Duration = Duration::from_millis(100);

/// How often an idle writer checks whether the syncer failed.
const SYNCER_CHECK: Duration = Duration::from_secs(1);

/// The wait before the second retry after a failure; it doubles after each failed one.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// The longest wait between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

pub(crate) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// An op as sent to the writer, with the relay its caller is answered through.
pub(crate) struct Sent {
    pub(crate) op: Op,
    pub(crate) relay: Option<Arc<Relay>>,
}

/// One caller's write.
pub(crate) enum Op {
    Enqueue {
        dedupe: Option<(String, Duration)>,
        batch: Vec<NewDelivery>,
        now_ms: i64,
        reply: Reply<EnqueueOutcome>,
    },
    EnqueueDeadLetter {
        dedupe: Option<(String, Duration)>,
        delivery: NewDelivery,
        reason: String,
        now_ms: i64,
        reply: Reply<EnqueueOutcome>,
    },
    Complete {
        id: u64,
        attempt: Option<Attempt>,
        reply: Reply<()>,
    },
    Reschedule {
        id: u64,
        not_before_ms: i64,
        attempts: u32,
        error: Option<String>,
        attempt: Option<Attempt>,
        reply: Reply<()>,
    },
    DeadLetter {
        id: u64,
        reason: String,
        status: Option<u16>,
        response: Option<String>,
        now_ms: i64,
        attempt: Option<Attempt>,
        reply: Reply<()>,
    },
    SweepHistory {
        cutoff_ms: i64,
        max_bytes: u64,
        reply: Reply<(u64, bool)>,
    },
    DeadLetterEndpoint {
        endpoint: String,
        reason: String,
        now_ms: i64,
        reply: Reply<u64>,
    },
    Replay {
        id: u64,
        now_ms: i64,
        reply: Reply<bool>,
    },
    DeleteDeadLetter {
        id: u64,
        reply: Reply<bool>,
    },
    ReplayEndpoint {
        endpoint: String,
        now_ms: i64,
        reply: Reply<u64>,
    },
    RetryNow {
        endpoint: String,
        now_ms: i64,
        reply: Reply<u64>,
    },
    FirstUse {
        key: String,
        ttl: Duration,
        now_ms: i64,
        reply: Reply<bool>,
    },
    ForgetUse {
        key: String,
        reply: Reply<()>,
    },
}

impl Op {
    /// A delivery's outcome: written at once, synced with the next durable write or
    /// within the lazy-sync bound. A crash of the process keeps it; only a power loss in
    /// that window can lose it, and then the delivery is attempted again (same
    /// `webhook-id`), which at-least-once delivery allows.
    fn is_lazy(&self) -> bool {
        matches!(
            self,
            Op::Complete { .. } | Op::Reschedule { .. } | Op::DeadLetter { .. }
        )
    }

    /// An op on a whole endpoint, run in commits of its own.
    fn is_wide(&self) -> bool {
        matches!(
            self,
            Op::DeadLetterEndpoint { .. }
                | Op::ReplayEndpoint { .. }
                | Op::RetryNow { .. }
                | Op::SweepHistory { .. }
        )
    }
}

/// What the writer and the readers share, under one lock.
#[derive(Debug, Default)]
pub(crate) struct Core {
    /// The open database; `None` while the writer reopens it after a failure.
    pub(crate) engine: Option<Arc<Engine>>,
    /// Counters, cursors and leases; changed by the writer only after a commit.
    pub(crate) queue: Queue,
}

/// State shared by the writer thread and the store handles.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) core: Mutex<Core>,
    pub(crate) commits: AtomicU64,
    /// Writes refused because the store was failing.
    pub(crate) refused: AtomicU64,
    /// Times the store started failing.
    pub(crate) outages: AtomicU64,
    /// Enqueues refused because the store was full.
    pub(crate) full: AtomicU64,
    /// Bytes of the records and dedupe keys held (what `max_bytes` bounds).
    pub(crate) used: AtomicU64,
    /// Dedupe keys and one-time tokens held.
    pub(crate) keys: AtomicU64,
    /// Bytes of the delivered records the history keeps.
    pub(crate) history: AtomicU64,
    /// The budget: enqueues are refused once `used` reaches it (0: none).
    pub(crate) max_bytes: AtomicU64,
    /// The free space kept ([`MinFree`]): its bytes, [`MIN_FREE_AUTO`] for `Auto`.
    min_free: AtomicU64,
    /// Bytes free on the file system when an enqueue last looked.
    pub(crate) disk_free: AtomicU64,
    /// Enqueues refused because the file system had less free space than `min_free`.
    pub(crate) disk_low: AtomicU64,
    /// True from a failed write or sync until the store has recovered.
    failing: AtomicBool,
    /// The error that started the failure, while failing.
    failure: Mutex<Option<Arc<dyn StdError + Send + Sync>>>,
    /// A sync that failed in the syncer thread (with the writer's epoch it failed in),
    /// until the writer takes it.
    sync_failure: Mutex<Option<(u64, Arc<dyn StdError + Send + Sync>)>>,
}

impl Shared {
    pub(crate) fn new(core: Core, max_bytes: u64) -> Self {
        Shared {
            core: Mutex::new(core),
            max_bytes: AtomicU64::new(max_bytes),
            ..Shared::default()
        }
    }

    pub(crate) fn core(&self) -> MutexGuard<'_, Core> {
        // The core is consistent after every statement that holds the lock, so a panic
        // elsewhere leaves it usable.
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The open database, or the reason there is none (recovering).
    pub(crate) fn engine(&self) -> Result<Arc<Engine>, StoreError> {
        let engine = self.core().engine.clone();
        engine.ok_or_else(|| self.refusal().unwrap_or(StoreError::WriterStopped))
    }

    /// While the store is failing: the error a write is refused with (counted as refused).
    pub(crate) fn refuse(&self) -> Option<StoreError> {
        let refusal = self.refusal()?;
        self.refused.fetch_add(1, Ordering::Relaxed);
        Some(refusal)
    }

    /// While the store is failing: why.
    pub(crate) fn refusal(&self) -> Option<StoreError> {
        if !self.failing.load(Ordering::Acquire) {
            return None;
        }
        let source = self
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()?;
        Some(StoreError::Recovering { source })
    }

    fn start_failing(&self, error: Arc<dyn StdError + Send + Sync>) {
        *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
        self.failing.store(true, Ordering::Release);
        self.outages.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a failed sync for the writer to act on.
    pub(crate) fn set_sync_failure(&self, epoch: u64, error: Arc<dyn StdError + Send + Sync>) {
        *self
            .sync_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((epoch, error));
    }

    /// The failed sync not yet acted on, if any, with its epoch.
    fn take_sync_failure(&self) -> Option<(u64, Arc<dyn StdError + Send + Sync>)> {
        self.sync_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Replaces the reason given while failing.
    fn set_failure(&self, error: Arc<dyn StdError + Send + Sync>) {
        *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
    }

    pub(crate) fn set_min_free(&self, min_free: MinFree) {
        let bytes = match min_free {
            MinFree::Auto => MIN_FREE_AUTO,
            MinFree::Bytes(n) => n.min(MIN_FREE_AUTO - 1),
        };
        self.min_free.store(bytes, Ordering::Relaxed);
    }

    fn stop_failing(&self) {
        self.failing.store(false, Ordering::Release);
        *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// A caller's reply, held until the batch is durable.
#[derive(Debug)]
pub(crate) enum Pending {
    Enqueue(Reply<EnqueueOutcome>, Result<EnqueueOutcome, StoreError>),
    Unit(Reply<()>, Result<(), StoreError>),
    Count(Reply<u64>, Result<u64, StoreError>),
    Found(Reply<bool>, Result<bool, StoreError>),
    Swept(Reply<(u64, bool)>, Result<(u64, bool), StoreError>),
}

impl Pending {
    /// Sends the result to the caller.
    pub(crate) fn send(self) {
        // A caller that stopped waiting (cancelled) is not an error: its op is durable.
        match self {
            Pending::Enqueue(reply, result) => drop(reply.send(result)),
            Pending::Unit(reply, result) => drop(reply.send(result)),
            Pending::Count(reply, result) => drop(reply.send(result)),
            Pending::Found(reply, result) => drop(reply.send(result)),
            Pending::Swept(reply, result) => drop(reply.send(result)),
        }
    }

    /// The same reply, failed with `error` unless it already failed on its own.
    pub(crate) fn failed(self, error: &dyn Fn() -> StoreError) -> Self {
        match self {
            Pending::Enqueue(reply, Ok(_)) => Pending::Enqueue(reply, Err(error())),
            Pending::Unit(reply, Ok(())) => Pending::Unit(reply, Err(error())),
            Pending::Count(reply, Ok(_)) => Pending::Count(reply, Err(error())),
            Pending::Found(reply, Ok(_)) => Pending::Found(reply, Err(error())),
            Pending::Swept(reply, Ok(_)) => Pending::Swept(reply, Err(error())),
            failed => failed,
        }
    }
}

/// A record as the batch sees it, with the length of its stored value (and the value
/// itself once the batch has encoded it).
#[derive(Clone)]
struct Stored {
    record: Record,
    body: Bytes,
    size: u64,
    value: Option<Arc<Vec<u8>>>,
}

/// One batch being decided: what it writes (the last write of a key wins), and what it
/// changes in memory once committed.
#[derive(Default)]
struct Tx {
    records: HashMap<u64, Option<Stored>>,
    due: HashMap<Vec<u8>, bool>,
    dead: HashMap<Vec<u8>, bool>,
    hooks: HashMap<Vec<u8>, bool>,
    /// The `done` index: delivered records by the time they were delivered, with their
    /// sizes (`None`: removed).
    done: HashMap<Vec<u8>, Option<u64>>,
    /// History entries written (`Some`) or deleted (`None`).
    attempts: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    keys: KeyWrites,
    /// Keys recorded by this batch, so its later ops see them.
    new_keys: HashMap<u128, i64>,
    changes: Changes,
    bytes: i64,
    /// Change of the history's bytes.
    history: i64,
    key_count: i64,
    next_id: u64,
    sync: bool,
}

impl Tx {
    fn new(next_id: u64) -> Self {
        Tx {
            next_id,
            ..Tx::default()
        }
    }

    fn is_empty(&self) -> bool {
        self.records.is_empty()
            && self.due.is_empty()
            && self.dead.is_empty()
            && self.hooks.is_empty()
            && self.done.is_empty()
            && self.attempts.is_empty()
            && self.keys.is_empty()
    }

    /// Adds `attempt` to the history of `id`.
    fn attempt(&mut self, id: u64, attempt: Attempt) -> Result<(), StoreError> {
        let attempt = attempt.bounded();
        let value = postcard::to_allocvec(&attempt).map_err(|e| StoreError::Corrupt {
            table: "attempts",
            key: id,
            source: Arc::new(e),
        })?;
        self.attempts.push((attempt_key(id, &attempt), Some(value)));
        Ok(())
    }

    /// Deletes the oldest history entries of `id` so that `keep` are left (with those the
    /// batch adds after this).
    fn trim_attempts(&mut self, engine: &Engine, id: u64, keep: usize) -> Result<(), StoreError> {
        let entries = engine.attempts_of(id)?;
        let excess = entries.len().saturating_sub(keep);
        for (key, _) in entries.into_iter().take(excess) {
            self.attempts.push((key, None));
        }
        Ok(())
    }

    /// Deletes every history entry and the `hooks` key of `id` (whose record goes).
    fn forget_history(
        &mut self,
        engine: &Engine,
        id: u64,
        record: &Record,
    ) -> Result<(), StoreError> {
        self.trim_attempts(engine, id, 0)?;
        self.hooks.insert(hook_key(&record.webhook_id, id), false);
        Ok(())
    }

    fn get(&self, engine: &Engine, id: u64) -> Result<Option<Stored>, StoreError> {
        if let Some(stored) = self.records.get(&id) {
            return Ok(stored.clone());
        }
        Ok(engine.stored(id)?.map(|(record, body, size)| Stored {
            record,
            body,
            size,
            value: None,
        }))
    }

    /// A queued delivery (neither dead-lettered nor delivered), or `UnknownDelivery`.
    /// `leased`: whether it is leased, which means queued (a delivered record is only told
    /// apart from a queued one by its queue key, looked up otherwise).
    fn queued(&self, engine: &Engine, id: u64, leased: bool) -> Result<Stored, StoreError> {
        let unknown = || StoreError::UnknownDelivery { id: DeliveryId(id) };
        let stored = match self.get(engine, id)? {
            Some(stored) if stored.record.grave.is_none() => stored,
            _ => return Err(unknown()),
        };
        if leased {
            return Ok(stored);
        }
        let key = due_key(
            &lane(&stored.record.endpoint),
            stored.record.not_before_ms,
            id,
        );
        let queued = match self.due.get(&key) {
            Some(&present) => present,
            None => engine.queue.contains_key(&key).map_err(read_error)?,
        };
        if queued { Ok(stored) } else { Err(unknown()) }
    }

    /// Writes record `id` (replacing `old`, if it had one).
    fn put(
        &mut self,
        id: u64,
        record: Record,
        body: Bytes,
        old: Option<&Stored>,
    ) -> Result<(), StoreError> {
        let value = record.encode(id, &body)?;
        let size = value.len() as u64;
        self.bytes += size as i64 - old.map_or(0, |o| o.size as i64);
        let value = Some(Arc::new(value));
        self.records.insert(
            id,
            Some(Stored {
                record,
                body,
                size,
                value,
            }),
        );
        Ok(())
    }

    /// Deletes record `id`, of stored length `size`.
    fn remove(&mut self, id: u64, size: u64) {
        self.bytes -= size as i64;
        self.records.insert(id, None);
    }

    fn queue(&mut self, record: &Record, id: u64, wake: bool) {
        let key = due_key(&lane(&record.endpoint), record.not_before_ms, id);
        let change = self.changes.lane(&record.endpoint);
        change.queued(&key);
        change.wake |= wake;
        self.due.insert(key, true);
    }

    fn unqueue(&mut self, endpoint: &str, not_before_ms: i64, id: u64) {
        self.changes.unqueued.push(id);
        self.due
            .insert(due_key(&lane(endpoint), not_before_ms, id), false);
    }
}

/// The wall clock, epoch milliseconds: when a delivery was delivered, for the history's
/// retention.
fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Milliseconds of a duration, saturating.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// From a failed write until writes work again.
struct Outage {
    started: Instant,
    refused_before: u64,
    backoff: Duration,
    next_try: Instant,
    /// The error that started it.
    cause: Arc<dyn StdError + Send + Sync>,
    /// A retry found less free space than [`headroom`] (said once per outage).
    short: bool,
}

/// The most free space a retry waits for before it opens the database again.
const MAX_HEADROOM: u64 = 64 << 20;

/// [`MinFree::Auto`] as `Shared::min_free` holds it.
const MIN_FREE_AUTO: u64 = u64::MAX;

/// How long an enqueue trusts the free space the last one saw.
const DISK_CHECK: Duration = Duration::from_millis(100);

/// The file system's free space as enqueues last saw it.
#[derive(Debug, Clone, Copy)]
struct Disk {
    at: Instant,
    free: u64,
    total: u64,
    /// Enqueues are refused: free space fell under `min_free` and has not yet come back
    /// to half as much again.
    low: bool,
}

/// Free space a retry waits for on a file system of `total` bytes, and what
/// [`MinFree::Auto`] keeps: a sixteenth of it, at most [`MAX_HEADROOM`] (the journal's
/// length, what a flush of the write buffers may need). A probe's one small write fits in
/// the last few KB a failed batch left, and the next batch fails again: without a margin a
/// nearly full disk would go down and up again with every batch, each time reopening the
/// database.
fn headroom(total: u64) -> u64 {
    (total / 16).min(MAX_HEADROOM)
}

/// Bytes this process may still write and total bytes of the file system holding `dir`
/// (`None` when it cannot be read). ext4 lets root write into the blocks it reserves (5 %
/// by default), so for a process that may use them that is every free block: counting only
/// the blocks free to others, a store run as root that filled its disk would wait for the
/// reserve to be freed as well before taking writes again. Whether this process may is
/// [`may_use_reserve`], read once.
fn disk_space(dir: &Path) -> Option<(u64, u64)> {
    static RESERVE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let stat = rustix::fs::statvfs(dir).ok()?;
    let free = if *RESERVE.get_or_init(this_process_may_use_reserve) {
        stat.f_bfree
    } else {
        stat.f_bavail
    };
    Some((
        free.saturating_mul(stat.f_frsize),
        stat.f_blocks.saturating_mul(stat.f_frsize),
    ))
}

/// [`may_use_reserve`] for this process, from its effective user, `/proc/self/uid_map` and
/// `/proc/self/status`; `false` when they cannot be read.
fn this_process_may_use_reserve() -> bool {
    let (Ok(uid_map), Ok(status)) = (
        std::fs::read_to_string("/proc/self/uid_map"),
        std::fs::read_to_string("/proc/self/status"),
    ) else {
        return false;
    };
    may_use_reserve(rustix::process::geteuid().as_raw(), &uid_map, &status)
}

/// Whether a process may write into ext4's reserved blocks: the kernel lets the reserve's
/// owner (the host's root, by default) and holders of `CAP_SYS_RESOURCE` in the host's user
/// namespace use them. Root in a user namespace (a rootless container, a Kubernetes pod with
/// `hostUsers: false`) is someone else to the file system: counting the reserve there would
/// see room the kernel refuses, and a store that stopped at a full disk would reopen and
/// fail again with every batch. `euid` is the effective user id, `uid_map` is
/// `/proc/self/uid_map` (how the namespace's ids map to its parent's: every id to itself
/// in the host's), `status` is `/proc/self/status` (its `CapEff` line). A reserve given to
/// another user (`tune2fs -u`) is not looked for.
fn may_use_reserve(euid: u32, uid_map: &str, status: &str) -> bool {
    let ranges: Vec<[u64; 3]> = uid_map
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace().map(|f| f.parse::<u64>().ok());
            Some([fields.next()??, fields.next()??, fields.next()??])
        })
        .collect();
    let euid = u64::from(euid);
    let outside = ranges
        .iter()
        .find(|[inside, _, len]| (*inside..inside.saturating_add(*len)).contains(&euid))
        .map(|[inside, outside, _]| outside + (euid - inside));
    if outside == Some(0) {
        return true;
    }
    /// `CAP_SYS_RESOURCE`'s bit in the capability sets.
    const CAP_SYS_RESOURCE: u32 = 24;
    let host_namespace = ranges == [[0, 0, u64::from(u32::MAX)]];
    host_namespace
        && status
            .lines()
            .find_map(|line| line.strip_prefix("CapEff:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

/// Why a retry did not open the database: too little free space after a failure.
#[derive(Debug)]
struct ShortOfSpace {
    free: u64,
    need: u64,
    cause: Arc<dyn StdError + Send + Sync>,
}

impl std::fmt::Display for ShortOfSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes free on the store's file system, writes resume once {} are free",
            self.free, self.need
        )
    }
}

impl StdError for ShortOfSpace {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.cause)
    }
}

/// The writer: the database, the dedupe windows, and how it is tuned.
pub(crate) struct Writer {
    dir: PathBuf,
    shared: Arc<Shared>,
    engine: Option<Arc<Engine>>,
    keys: Keys,
    next_id: u64,
    /// Bytes of the records held.
    bytes: u64,
    /// Bytes of the delivered records the history keeps.
    history: u64,
    max_batch: usize,
    /// Since when written outcomes wait for a sync, if any do.
    unsynced_since: Option<Instant>,
    lazy_sync: Duration,
    outage: Option<Outage>,
    /// Free space, for `min_free`.
    disk: Option<Disk>,
    /// The syncer thread; `None` when every batch is synced by the writer itself
    /// (`max_batch` 1, the baseline).
    syncer: Option<SyncerThread>,
    /// Reopens of the database so far.
    epoch: u64,
    /// Batches handed to the OS so far.
    written: u64,
    /// The nice value of fjall's background threads, when it is above the process's.
    background_nice: Option<i32>,
}

/// The syncer thread and its job channel.
struct SyncerThread {
    jobs: Sender<Job>,
    thread: JoinHandle<()>,
}

impl Writer {
    /// The writer of `engine`, tuned by `options`.
    pub(crate) fn new(
        dir: PathBuf,
        shared: Arc<Shared>,
        engine: Arc<Engine>,
        options: &super::EmbeddedOptions,
        background_nice: i32,
    ) -> Result<Self, StoreError> {
        let keys = Keys::open(&engine.db).map_err(|e| StoreError::backend("open", e))?;
        let next_id = engine.counter(NEXT_ID)?;
        let bytes = engine.counter(BYTES)?;
        let history = engine.counter(HISTORY)?;
        let syncer = if options.max_batch > 1 {
            let (jobs, receiver) = mpsc::channel();
            let syncer = Syncer::new(engine.path.clone(), Arc::clone(&shared));
            let thread = std::thread::Builder::new()
                .name("hookrelay-store-syncer".into())
                .spawn(move || syncer.run(receiver))
                .map_err(|source| StoreError::Spawn { source })?;
            Some(SyncerThread { jobs, thread })
        } else {
            None
        };
        let writer = Writer {
            dir,
            shared,
            engine: Some(engine),
            keys,
            next_id,
            bytes,
            history,
            max_batch: options.max_batch,
            unsynced_since: None,
            lazy_sync: options.outcome_sync,
            outage: None,
            disk: None,
            syncer,
            epoch: 0,
            written: 0,
            background_nice: (options.background_niceness > 0).then_some(background_nice),
        };
        writer.publish_usage();
        Ok(writer)
    }

    fn publish_usage(&self) {
        let keys = self.keys.count();
        self.shared.keys.store(keys, Ordering::Relaxed);
        self.shared.history.store(self.history, Ordering::Relaxed);
        self.shared
            .used
            .store(self.bytes + keys * KEY_BYTES, Ordering::Relaxed);
    }

    pub(crate) fn run(mut self, ops: Receiver<Sent>) {
        loop {
            if self
                .outage
                .as_ref()
                .is_some_and(|o| Instant::now() >= o.next_try)
            {
                self.retry();
                continue;
            }
            self.check_syncer();
            let wait = match (&self.outage, self.unsynced_since) {
                (Some(outage), _) => {
                    Some(outage.next_try.saturating_duration_since(Instant::now()))
                }
                (None, Some(since)) => Some(self.lazy_sync.saturating_sub(since.elapsed())),
                // Idle, it still looks at the syncer now and then: a sync that failed
                // while nothing else came starts the outage (and `/readyz` says so).
                (None, None) if self.syncer.is_some() => Some(SYNCER_CHECK),
                (None, None) => None,
            };
            let next = match wait {
                None => ops.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(wait) => ops.recv_timeout(wait),
            };
            let first = match next {
                Ok(op) => op,
                Err(RecvTimeoutError::Timeout) => {
                    if self.outage.is_none() {
                        self.sync_lazy();
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut batch = vec![first];
            while batch.len() < self.max_batch {
                match ops.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            self.check_syncer();
            if self.outage.is_some() {
                self.refuse(batch);
                continue;
            }
            self.commit(batch);
        }
        if self.outage.is_none() {
            self.sync_lazy();
        }
        // The syncer answers what it holds and ends once its channel closes.
        if let Some(SyncerThread { jobs, thread }) = self.syncer.take() {
            drop(jobs);
            if thread.join().is_err() {
                tracing::error!("store syncer thread panicked");
            }
        }
    }

    /// Starts an outage if the syncer failed a sync of the database as it is open now.
    fn check_syncer(&mut self) {
        if let Some((epoch, error)) = self.shared.take_sync_failure()
            && epoch == self.epoch
            && self.outage.is_none()
        {
            self.fail(error);
        }
    }

    /// Answers `answers` once every batch written so far is durable: through the syncer,
    /// or at once when the writer synced the batch itself.
    fn when_synced(&mut self, answers: Vec<(Pending, Option<Arc<Relay>>)>) {
        let Some(syncer) = &self.syncer else {
            relay::answer(answers);
            return;
        };
        let job = Job {
            epoch: self.epoch,
            written: self.written,
            answers,
        };
        if let Err(mpsc::SendError(job)) = syncer.jobs.send(job) {
            // The syncer is gone (it panicked): fail rather than answer unsynced.
            let error: Arc<dyn StdError + Send + Sync> =
                Arc::new(std::io::Error::other("the store's syncer thread stopped"));
            let make = || StoreError::Backend {
                op: "sync",
                source: Arc::clone(&error),
            };
            relay::answer(
                job.answers
                    .into_iter()
                    .map(|(pending, relay)| (pending.failed(&make), relay)),
            );
            self.fail(error);
        }
    }

    /// Refuses ops sent before the failure was seen.
    fn refuse(&self, batch: Vec<Sent>) {
        let refusal = || self.shared.refusal().unwrap_or(StoreError::WriterStopped);
        self.shared
            .refused
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        relay::answer(
            batch
                .into_iter()
                .map(|s| (pending_of(s.op).failed(&refusal), s.relay)),
        );
    }

    /// Syncs outcomes written without a sync.
    fn sync_lazy(&mut self) {
        if self.unsynced_since.take().is_none() {
            return;
        }
        if self.syncer.is_some() {
            self.when_synced(Vec::new());
            return;
        }
        let Some(engine) = self.engine.clone() else {
            return;
        };
        match engine.db.persist(PersistMode::SyncData) {
            Ok(()) => {
                self.shared.commits.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.fail(Arc::new(e)),
        }
    }

    fn commit(&mut self, sent: Vec<Sent>) {
        let Some(engine) = self.engine.clone() else {
            self.refuse(sent);
            return;
        };
        let mut tx = Tx::new(self.next_id);
        tx.sync = self
            .unsynced_since
            .is_some_and(|since| since.elapsed() >= self.lazy_sync);
        // Windows that ended by the latest time of the batch go first: no op of the batch
        // can find a live key in them, nor write one into them.
        let latest_now = sent
            .iter()
            .filter_map(|s| match &s.op {
                Op::Enqueue { now_ms, .. }
                | Op::EnqueueDeadLetter { now_ms, .. }
                | Op::FirstUse { now_ms, .. } => Some(*now_ms),
                _ => None,
            })
            .max();
        if let Some(now_ms) = latest_now
            && self.keys.drop_expired(&engine.db, now_ms) > 0
        {
            self.publish_usage();
        }
        let mut pending = Vec::with_capacity(sent.len());
        let mut wide = Vec::new();
        for Sent { op, relay } in sent {
            if op.is_wide() {
                wide.push(Sent { op, relay });
                continue;
            }
            if !op.is_lazy() {
                tx.sync = true;
            }
            pending.push((self.decide(&engine, &mut tx, op), relay));
        }
        if self.write(&engine, tx, pending) {
            for Sent { op, relay } in wide {
                let answer = self.wide(&engine, op);
                // Its chunks were handed to the OS: answered once they are synced.
                self.when_synced(vec![(answer, relay)]);
            }
        } else {
            self.refuse(wide);
        }
    }

    /// Commits `tx` and answers `pending`; false when the commit failed.
    fn write(
        &mut self,
        engine: &Engine,
        tx: Tx,
        pending: Vec<(Pending, Option<Arc<Relay>>)>,
    ) -> bool {
        let sync = tx.sync;
        let empty = tx.is_empty();
        let result = if empty {
            Ok(Changes::default())
        } else {
            self.stage_and_commit(engine, tx)
        };
        match result {
            Ok(changes) => {
                if !empty {
                    self.written += 1;
                    if !sync {
                        self.unsynced_since.get_or_insert_with(Instant::now);
                    } else if self.syncer.is_none() {
                        self.shared.commits.fetch_add(1, Ordering::Relaxed);
                    }
                }
                self.shared.core().queue.apply(changes);
                self.publish_usage();
                if sync {
                    // Even a batch that wrote nothing (a duplicate) waits: what it
                    // answered from may be a batch still being synced.
                    self.unsynced_since = None;
                    self.when_synced(pending);
                } else {
                    relay::answer(pending);
                }
                true
            }
            Err(error) => {
                let make = {
                    let error = Arc::clone(&error);
                    move || StoreError::Backend {
                        op: "commit",
                        source: Arc::clone(&error),
                    }
                };
                self.fail(error);
                relay::answer(pending.into_iter().map(|(p, r)| (p.failed(&make), r)));
                false
            }
        }
    }

    /// Builds the fjall batch of `tx` (with the counters it changes) and commits it.
    fn stage_and_commit(
        &mut self,
        engine: &Engine,
        tx: Tx,
    ) -> Result<Changes, Arc<dyn StdError + Send + Sync>> {
        let Tx {
            records,
            due,
            dead,
            hooks,
            done,
            attempts,
            keys,
            changes,
            bytes,
            history,
            next_id,
            sync,
            ..
        } = tx;
        let mut batch = engine.db.batch();
        for (id, stored) in records {
            match stored.and_then(|s| s.value) {
                Some(value) => {
                    let value = Arc::try_unwrap(value).unwrap_or_else(|shared| (*shared).clone());
                    batch.insert(&engine.deliveries, id.to_be_bytes(), value);
                }
                None => batch.remove(&engine.deliveries, id.to_be_bytes()),
            }
        }
        for (key, present) in due {
            if present {
                batch.insert(&engine.queue, key, []);
            } else {
                batch.remove(&engine.queue, key);
            }
        }
        for (key, present) in dead {
            if present {
                batch.insert(&engine.dead, key, []);
            } else {
                batch.remove(&engine.dead, key);
            }
        }
        for (key, present) in hooks {
            if present {
                batch.insert(&engine.hooks, key, []);
            } else {
                batch.remove(&engine.hooks, key);
            }
        }
        for (key, size) in done {
            match size {
                Some(size) => batch.insert(&engine.done, key, size.to_be_bytes()),
                None => batch.remove(&engine.done, key),
            }
        }
        for (key, value) in attempts {
            match value {
                Some(value) => batch.insert(&engine.attempts, key, value),
                None => batch.remove(&engine.attempts, key),
            }
        }
        self.keys.stage(&mut batch, keys);
        if next_id != self.next_id {
            batch.insert(&engine.meta, NEXT_ID, next_id.to_be_bytes());
        }
        let new_bytes = self.bytes.saturating_add_signed(bytes);
        if bytes != 0 {
            batch.insert(&engine.meta, BYTES, new_bytes.to_be_bytes());
        }
        let new_history = self.history.saturating_add_signed(history);
        if history != 0 {
            batch.insert(&engine.meta, HISTORY, new_history.to_be_bytes());
        }
        {
            let mut core = self.shared.core();
            core.queue.forget_ahead(&changes);
            for (name, change) in &changes.lanes {
                let lane_bytes = lane(name);
                if change.depth != 0 {
                    let depth = core.queue.depth(name).saturating_add_signed(change.depth);
                    let key = meta_key(DEPTH, &lane_bytes);
                    if depth == 0 {
                        batch.remove(&engine.meta, key);
                    } else {
                        batch.insert(&engine.meta, key, depth.to_be_bytes());
                    }
                }
                if change.dead != 0 {
                    let count = core.queue.dead(name).saturating_add_signed(change.dead);
                    let key = meta_key(DEAD, &lane_bytes);
                    if count == 0 {
                        batch.remove(&engine.meta, key);
                    } else {
                        batch.insert(&engine.meta, key, count.to_be_bytes());
                    }
                }
            }
            for (lane_bytes, cursor) in core.queue.cursors_to_save(&changes) {
                batch.insert(&engine.meta, meta_key(CURSOR, &lane_bytes), cursor);
            }
        }
        // Without a sync, the batch is still handed to the OS at once (`Buffer`): fjall
        // otherwise keeps up to 8 KiB of its journal in its own buffer, which a `kill -9`
        // loses (a delivered delivery would be delivered again after the restart).
        let batch = batch.durability(Some(if sync && self.syncer.is_none() {
            PersistMode::SyncData
        } else {
            PersistMode::Buffer
        }));
        batch
            .commit()
            .map_err(|e| Arc::new(e) as Arc<dyn StdError + Send + Sync>)?;
        self.next_id = next_id;
        self.bytes = new_bytes;
        self.history = new_history;
        Ok(changes)
    }

    /// Is `hash` recorded until after `now_ms`, by the batch or the database?
    fn is_live(&self, tx: &Tx, hash: u128, now_ms: i64) -> Result<bool, StoreError> {
        if tx.new_keys.get(&hash).is_some_and(|&e| e > now_ms) {
            return Ok(true);
        }
        Ok(self.keys.expiry(hash, now_ms)?.is_some_and(|e| e > now_ms))
    }

    fn record_key(
        &mut self,
        engine: &Engine,
        tx: &mut Tx,
        hash: u128,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let expires = now_ms.saturating_add(ttl_ms);
        self.keys
            .insert(&engine.db, &mut tx.keys, hash, ttl_ms, expires)
            .map_err(|e| StoreError::backend("create a dedupe window", e))?;
        tx.new_keys.insert(hash, expires);
        tx.key_count += 1;
        Ok(())
    }

    /// Whether `incoming` more bytes would pass the budget, and the file system has the
    /// free space the store keeps.
    fn check_room(&mut self, tx: &Tx, incoming: u64) -> Result<(), StoreError> {
        let max = self.shared.max_bytes.load(Ordering::Relaxed);
        if max > 0 {
            let used = self.bytes.saturating_add_signed(tx.bytes).saturating_add(
                (self.keys.count() as i64 + tx.key_count).max(0) as u64 * KEY_BYTES,
            );
            if used.saturating_add(incoming) > max {
                self.shared.full.fetch_add(1, Ordering::Relaxed);
                return Err(StoreError::Full { used, max });
            }
        }
        self.check_disk()
    }

    /// Whether the file system has the free space the store keeps (`min_free`), looked at
    /// most every [`DISK_CHECK`]. Once under it, enqueues are refused until half as much
    /// again is free, so that a disk at the line does not take and refuse callbacks by
    /// turns; one log line when that starts and one when it ends.
    fn check_disk(&mut self) -> Result<(), StoreError> {
        let setting = self.shared.min_free.load(Ordering::Relaxed);
        if setting == 0 {
            if self.disk.take().is_some_and(|d| d.low) {
                tracing::info!("store.min_free is 0: enqueues taken again whatever the free space");
            }
            return Ok(());
        }
        let now = Instant::now();
        let stale = self
            .disk
            .is_none_or(|d| now.duration_since(d.at) >= DISK_CHECK);
        if stale {
            let Some((free, total)) = disk_space(&self.dir) else {
                // Cannot be read: no floor rather than no callbacks.
                return Ok(());
            };
            let low = self.disk.is_some_and(|d| d.low);
            self.disk = Some(Disk {
                at: now,
                free,
                total,
                low,
            });
            self.shared.disk_free.store(free, Ordering::Relaxed);
        }
        let Some(disk) = self.disk.as_mut() else {
            return Ok(());
        };
        let min_free = if setting == MIN_FREE_AUTO {
            headroom(disk.total)
        } else {
            setting
        };
        if disk.low && disk.free >= min_free.saturating_add(min_free / 2) {
            disk.low = false;
            tracing::info!(
                free = disk.free,
                min_free,
                "store's file system has room again: callbacks taken again"
            );
        } else if !disk.low && disk.free < min_free {
            disk.low = true;
            tracing::warn!(
                free = disk.free,
                min_free,
                "store's file system nearly full: callbacks answered 503 until more is free"
            );
        }
        if disk.low {
            self.shared.disk_low.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::DiskLow {
                free: disk.free,
                min_free,
            });
        }
        Ok(())
    }

    fn allocate(tx: &mut Tx, n: u64) -> Result<u64, StoreError> {
        let first = tx.next_id;
        tx.next_id = first.checked_add(n).ok_or_else(|| {
            StoreError::backend(
                "allocate id",
                std::io::Error::other("delivery ids exhausted"),
            )
        })?;
        Ok(first)
    }

    /// A delivery's endpoint name and `webhook-id` fit in the keys they are part of.
    fn check_endpoint(endpoint: &str, webhook_id: &str) -> Result<(), StoreError> {
        if endpoint.len() > MAX_ENDPOINT {
            return Err(StoreError::backend(
                "enqueue",
                std::io::Error::other(format!("endpoint name longer than {MAX_ENDPOINT} bytes")),
            ));
        }
        if webhook_id.len() > MAX_WEBHOOK_ID {
            return Err(StoreError::backend(
                "enqueue",
                std::io::Error::other(format!("webhook-id longer than {MAX_WEBHOOK_ID} bytes")),
            ));
        }
        Ok(())
    }

    /// Decides `op` against the database and the batch so far.
    fn decide(&mut self, engine: &Engine, tx: &mut Tx, op: Op) -> Pending {
        match op {
            Op::Enqueue {
                dedupe,
                batch,
                now_ms,
                reply,
            } => Pending::Enqueue(reply, self.enqueue(engine, tx, dedupe, batch, now_ms)),
            Op::EnqueueDeadLetter {
                dedupe,
                delivery,
                reason,
                now_ms,
                reply,
            } => Pending::Enqueue(
                reply,
                self.enqueue_dead_letter(engine, tx, dedupe, delivery, reason, now_ms),
            ),
            Op::Complete { id, attempt, reply } => {
                let known = self.shared.core().queue.known(id);
                Pending::Unit(reply, complete(engine, tx, id, known, attempt))
            }
            Op::Reschedule {
                id,
                not_before_ms,
                attempts,
                error,
                attempt,
                reply,
            } => {
                let leased = self.shared.core().queue.is_leased(id);
                Pending::Unit(
                    reply,
                    reschedule(
                        engine,
                        tx,
                        id,
                        leased,
                        not_before_ms,
                        attempts,
                        error,
                        attempt,
                    ),
                )
            }
            Op::DeadLetter {
                id,
                reason,
                status,
                response,
                now_ms,
                attempt,
                reply,
            } => {
                let leased = self.shared.core().queue.is_leased(id);
                let grave = Grave {
                    reason,
                    status,
                    response: response.map(|text| truncate(text, MAX_RESPONSE_BYTES)),
                    dead_at_ms: now_ms,
                };
                Pending::Unit(
                    reply,
                    bury_attempted(engine, tx, id, leased, grave, attempt),
                )
            }
            Op::Replay { id, now_ms, reply } => {
                Pending::Found(reply, replay(engine, tx, id, now_ms))
            }
            Op::DeleteDeadLetter { id, reply } => Pending::Found(reply, discard(engine, tx, id)),
            Op::FirstUse {
                key,
                ttl,
                now_ms,
                reply,
            } => {
                let hash = xxh3_128_with_seed(key.as_bytes(), TOKEN_SEED);
                let result = match self.is_live(tx, hash, now_ms) {
                    Ok(true) => Ok(false),
                    Ok(false) => self
                        .record_key(engine, tx, hash, millis(ttl), now_ms)
                        .map(|()| true),
                    Err(e) => Err(e),
                };
                Pending::Found(reply, result)
            }
            Op::ForgetUse { key, reply } => {
                let hash = xxh3_128_with_seed(key.as_bytes(), TOKEN_SEED);
                tx.new_keys.remove(&hash);
                // Any window that has not ended by the latest time seen may hold it.
                let result = self.keys.forget(&mut tx.keys, hash, i64::MIN);
                Pending::Unit(reply, result)
            }
            wide => pending_of(wide),
        }
    }

    fn enqueue(
        &mut self,
        engine: &Engine,
        tx: &mut Tx,
        dedupe: Option<(String, Duration)>,
        batch: Vec<NewDelivery>,
        now_ms: i64,
    ) -> Result<EnqueueOutcome, StoreError> {
        let key = dedupe.map(|(key, window)| (xxh3_128(key.as_bytes()), millis(window)));
        if let Some((hash, _)) = key
            && self.is_live(tx, hash, now_ms)?
        {
            return Ok(EnqueueOutcome::Duplicate);
        }
        for new in &batch {
            Self::check_endpoint(&new.endpoint, &new.webhook_id)?;
        }
        let incoming: u64 = batch
            .iter()
            .map(|n| (n.body.len() + n.webhook_id.len() + n.endpoint.len() + 32) as u64)
            .sum();
        self.check_room(tx, incoming)?;
        let first = Self::allocate(tx, batch.len() as u64)?;
        let mut ids = Vec::with_capacity(batch.len());
        for (n, new) in batch.into_iter().enumerate() {
            let id = first + n as u64;
            let record = Record {
                endpoint: Arc::from(new.endpoint),
                webhook_id: new.webhook_id,
                created_at_ms: new.created_at_ms,
                not_before_ms: now_ms,
                attempts: 0,
                last_error: None,
                grave: None,
                trace: new.trace,
            };
            tx.queue(&record, id, true);
            tx.changes.lane(&record.endpoint).depth += 1;
            tx.hooks.insert(hook_key(&record.webhook_id, id), true);
            tx.put(id, record, new.body, None)?;
            ids.push(DeliveryId(id));
        }
        if let Some((hash, window)) = key {
            self.record_key(engine, tx, hash, window, now_ms)?;
        }
        Ok(EnqueueOutcome::Enqueued(ids))
    }

    fn enqueue_dead_letter(
        &mut self,
        engine: &Engine,
        tx: &mut Tx,
        dedupe: Option<(String, Duration)>,
        new: NewDelivery,
        reason: String,
        now_ms: i64,
    ) -> Result<EnqueueOutcome, StoreError> {
        let key = dedupe.map(|(key, window)| (xxh3_128(key.as_bytes()), millis(window)));
        if let Some((hash, _)) = key
            && self.is_live(tx, hash, now_ms)?
        {
            return Ok(EnqueueOutcome::Duplicate);
        }
        Self::check_endpoint(&new.endpoint, &new.webhook_id)?;
        self.check_room(tx, (new.body.len() + reason.len() + 64) as u64)?;
        let id = Self::allocate(tx, 1)?;
        let record = Record {
            endpoint: Arc::from(new.endpoint),
            webhook_id: new.webhook_id,
            created_at_ms: new.created_at_ms,
            not_before_ms: now_ms,
            attempts: 0,
            last_error: None,
            grave: Some(Grave {
                reason,
                status: None,
                response: None,
                dead_at_ms: now_ms,
            }),
            trace: new.trace,
        };
        tx.dead.insert(dead_key(&lane(&record.endpoint), id), true);
        tx.changes.lane(&record.endpoint).dead += 1;
        tx.hooks.insert(hook_key(&record.webhook_id, id), true);
        tx.put(id, record, new.body, None)?;
        if let Some((hash, window)) = key {
            self.record_key(engine, tx, hash, window, now_ms)?;
        }
        Ok(EnqueueOutcome::Enqueued(vec![DeliveryId(id)]))
    }

    /// Runs an op on a whole endpoint, in commits of at most [`CHUNK`] deliveries.
    fn wide(&mut self, engine: &Engine, op: Op) -> Pending {
        match op {
            Op::DeadLetterEndpoint {
                endpoint,
                reason,
                now_ms,
                reply,
            } => {
                let result = self.chunked(engine, &endpoint, Scan::Queued, |tx, id, stored| {
                    tx.changes.ended.push(id);
                    let grave = Grave {
                        reason: reason.clone(),
                        status: None,
                        response: None,
                        dead_at_ms: now_ms,
                    };
                    bury_stored(tx, id, stored, grave)
                });
                Pending::Count(reply, result)
            }
            Op::ReplayEndpoint {
                endpoint,
                now_ms,
                reply,
            } => {
                let result = self.chunked(engine, &endpoint, Scan::Dead, |tx, id, stored| {
                    replay_stored(engine, tx, id, stored, now_ms)
                });
                Pending::Count(reply, result)
            }
            Op::RetryNow {
                endpoint,
                now_ms,
                reply,
            } => {
                let result = self.chunked(
                    engine,
                    &endpoint,
                    Scan::WaitingAfter(now_ms),
                    |tx, id, stored| {
                        let mut record = stored.record.clone();
                        tx.unqueue(&record.endpoint, record.not_before_ms, id);
                        record.not_before_ms = now_ms;
                        tx.queue(&record, id, true);
                        tx.put(id, record, stored.body.clone(), Some(&stored))?;
                        Ok(true)
                    },
                );
                Pending::Count(reply, result)
            }
            Op::SweepHistory {
                cutoff_ms,
                max_bytes,
                reply,
            } => Pending::Swept(reply, self.sweep_history(engine, cutoff_ms, max_bytes)),
            other => pending_of(other),
        }
    }

    /// Removes up to [`SWEEP_CHUNK`] delivered records, oldest delivered first (the `done`
    /// index): those delivered before `cutoff_ms`, then any while the history holds more
    /// than `max_bytes` (0: no cap), each with its `hooks` and `attempts` entries, in one
    /// commit. Returns how many it removed and whether there may be more: the caller sends
    /// it again, so other ops go between chunks.
    fn sweep_history(
        &mut self,
        engine: &Engine,
        cutoff_ms: i64,
        max_bytes: u64,
    ) -> Result<(u64, bool), StoreError> {
        let mut tx = Tx::new(self.next_id);
        let mut removed = 0u64;
        let mut more = false;
        for guard in engine.done.iter() {
            let (key, value) = guard.into_inner().map_err(read_error)?;
            let Some((done_ms, id)) = parse_done(&key) else {
                tx.done.insert(key.to_vec(), None);
                continue;
            };
            let over = max_bytes > 0 && self.history.saturating_add_signed(tx.history) > max_bytes;
            if done_ms >= cutoff_ms && !over {
                break;
            }
            if removed as usize >= SWEEP_CHUNK {
                more = true;
                break;
            }
            tx.done.insert(key.to_vec(), None);
            let size = super::engine::decode_u64(&value);
            match engine.record(id) {
                // Still delivered (a delivered record never changes state).
                Ok(Some((record, _))) if record.grave.is_none() => {
                    tx.forget_history(engine, id, &record)?;
                    tx.records.insert(id, None);
                }
                Ok(_) => {}
                Err(error @ StoreError::Corrupt { .. }) => {
                    tracing::error!(id, error = %error, "unreadable delivered record removed");
                    tx.trim_attempts(engine, id, 0)?;
                    tx.records.insert(id, None);
                }
                Err(error) => return Err(error),
            }
            tx.history -= size as i64;
            removed += 1;
        }
        if !self.write(engine, tx, Vec::new()) {
            return Err(self.shared.refusal().unwrap_or(StoreError::WriterStopped));
        }
        Ok((removed, more))
    }

    /// Applies `each` to the deliveries of `endpoint` that `scan` selects, committing every
    /// [`CHUNK`] of them (synced); how many `each` counted.
    fn chunked(
        &mut self,
        engine: &Engine,
        endpoint: &str,
        scan: Scan,
        mut each: impl FnMut(&mut Tx, u64, Stored) -> Result<bool, StoreError>,
    ) -> Result<u64, StoreError> {
        let prefix = lane(endpoint);
        let mut after: Option<Vec<u8>> = None;
        let mut count = 0u64;
        loop {
            let mut tx = Tx::new(self.next_id);
            tx.sync = true;
            let mut seen = 0usize;
            let (space, start) = match scan {
                Scan::Queued => (&engine.queue, prefix.clone()),
                Scan::Dead => (&engine.dead, prefix.clone()),
                Scan::WaitingAfter(now_ms) => {
                    (&engine.queue, due_key(&prefix, now_ms.saturating_add(1), 0))
                }
            };
            let start = after.clone().map_or(start, |mut a| {
                a.push(0);
                a
            });
            let mut ids = Vec::new();
            for guard in space.range(start..) {
                let key = guard.key().map_err(read_error)?;
                if !key.starts_with(&prefix) {
                    break;
                }
                let id = match scan {
                    Scan::Dead => parse_dead(&key),
                    _ => parse_due(&key).map(|(_, id)| id),
                };
                after = Some(key.to_vec());
                let Some(id) = id else { continue };
                ids.push(id);
                seen += 1;
                if seen >= CHUNK {
                    break;
                }
            }
            let leased: Vec<bool> = {
                let core = self.shared.core();
                ids.iter().map(|&id| core.queue.is_leased(id)).collect()
            };
            for (id, leased) in ids.iter().zip(leased) {
                if leased && matches!(scan, Scan::WaitingAfter(_)) {
                    continue;
                }
                let Some(stored) = tx.get(engine, *id)? else {
                    continue;
                };
                let wanted = match scan {
                    Scan::Dead => stored.record.grave.is_some(),
                    _ => stored.record.grave.is_none(),
                };
                if wanted && each(&mut tx, *id, stored)? {
                    tx.changes.stale.push(*id);
                    count += 1;
                }
            }
            if !self.write(engine, tx, Vec::new()) {
                return Err(self.shared.refusal().unwrap_or(StoreError::WriterStopped));
            }
            if seen < CHUNK {
                return Ok(count);
            }
        }
    }

    /// Starts an outage with `error`.
    fn fail(&mut self, error: Arc<dyn StdError + Send + Sync>) {
        tracing::error!(
            error = %error,
            "store write failed: writes are refused until a retry succeeds"
        );
        self.shared.start_failing(Arc::clone(&error));
        self.unsynced_since = None;
        self.outage = Some(Outage {
            started: Instant::now(),
            refused_before: self.shared.refused.load(Ordering::Relaxed),
            backoff: FIRST_BACKOFF,
            next_try: Instant::now(),
            cause: error,
            short: false,
        });
    }

    /// Closes the database, opens it again and probes a synced write.
    fn retry(&mut self) {
        let Some(outage) = self.outage.as_mut() else {
            return;
        };
        outage.next_try = Instant::now() + outage.backoff;
        outage.backoff = (outage.backoff * 2).min(MAX_BACKOFF);
        if let Some((free, total)) = disk_space(&self.dir)
            && free < headroom(total)
        {
            let need = headroom(total);
            if !outage.short {
                outage.short = true;
                tracing::warn!(
                    free,
                    need,
                    "store's file system nearly full: writes resume once more is free"
                );
            }
            self.shared.set_failure(Arc::new(ShortOfSpace {
                free,
                need,
                cause: Arc::clone(&outage.cause),
            }));
            return;
        }
        match self.reopen() {
            Ok(()) => {
                let outage = self.outage.take();
                self.shared.stop_failing();
                if let Some(outage) = outage {
                    let refused =
                        self.shared.refused.load(Ordering::Relaxed) - outage.refused_before;
                    tracing::info!(
                        down = ?outage.started.elapsed(),
                        refused,
                        "store writes work again"
                    );
                }
            }
            Err(e) => tracing::debug!(error = %e, "store still failing"),
        }
    }

    fn reopen(&mut self) -> Result<(), StoreError> {
        // Every handle of the failed database goes first: fjall takes writes again only
        // once it is opened anew.
        self.keys = Keys::default();
        let taken = self.shared.core().engine.take();
        drop(taken);
        if let Some(engine) = self.engine.take() {
            let mut engine = engine;
            // Readers hold a handle for one call at most.
            let deadline = Instant::now() + Duration::from_millis(200);
            loop {
                match Arc::try_unwrap(engine) {
                    Ok(inner) => {
                        drop(inner);
                        break;
                    }
                    Err(shared) if Instant::now() < deadline => {
                        engine = shared;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(shared) => {
                        self.engine = Some(shared);
                        return Err(StoreError::backend(
                            "reopen",
                            std::io::Error::other("the database is still in use"),
                        ));
                    }
                }
            }
        }
        let engine = Engine::open(&self.dir).map_err(|e| StoreError::backend("reopen", e))?;
        if let Some(nice) = self.background_nice {
            renice_threads(super::engine::WORKER_THREADS, nice);
        }
        engine
            .meta
            .insert(b"probe", [])
            .and_then(|()| engine.db.persist(PersistMode::SyncData))
            .map_err(|e| StoreError::backend("probe", e))?;
        let queue = Queue::load(&engine)?;
        self.keys = Keys::open(&engine.db).map_err(|e| StoreError::backend("reopen", e))?;
        self.next_id = engine.counter(NEXT_ID)?;
        self.bytes = engine.counter(BYTES)?;
        self.history = engine.counter(HISTORY)?;
        let engine = Arc::new(engine);
        {
            let mut core = self.shared.core();
            core.queue.reload(queue);
            core.engine = Some(Arc::clone(&engine));
        }
        self.engine = Some(engine);
        self.epoch += 1;
        self.publish_usage();
        Ok(())
    }
}

/// Which of an endpoint's keys an op on the whole endpoint goes through.
#[derive(Clone, Copy)]
enum Scan {
    /// Its queue.
    Queued,
    /// Its dead letters.
    Dead,
    /// Its queue after `now_ms` (deliveries waiting for a retry).
    WaitingAfter(i64),
}

/// Completes `id`; `known` is what its lease read of its record, which spares reading it
/// again unless the batch itself changed it.
///
/// The record stays, out of the queue, as the history of a delivered delivery: its bytes
/// move from the budget's count to the history's, until the history sweep removes it.
fn complete(
    engine: &Engine,
    tx: &mut Tx,
    id: u64,
    known: Option<Known>,
    attempt: Option<Attempt>,
) -> Result<(), StoreError> {
    let (endpoint, not_before_ms, size) = match known {
        Some(known) if !tx.records.contains_key(&id) => {
            (known.endpoint, known.not_before_ms, known.size)
        }
        known => {
            let stored = tx.queued(engine, id, known.is_some())?;
            (
                stored.record.endpoint,
                stored.record.not_before_ms,
                stored.size,
            )
        }
    };
    tx.unqueue(&endpoint, not_before_ms, id);
    tx.changes.lane(&endpoint).depth -= 1;
    tx.changes.ended.push(id);
    tx.bytes -= size as i64;
    tx.history += size as i64;
    tx.done.insert(done_key(wall_ms(), id), Some(size));
    if let Some(attempt) = attempt {
        tx.attempt(id, attempt)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn reschedule(
    engine: &Engine,
    tx: &mut Tx,
    id: u64,
    leased: bool,
    not_before_ms: i64,
    attempts: u32,
    error: Option<String>,
    attempt: Option<Attempt>,
) -> Result<(), StoreError> {
    let stored = tx.queued(engine, id, leased)?;
    if let Some(attempt) = attempt {
        if attempts as usize >= MAX_ATTEMPTS_KEPT {
            tx.trim_attempts(engine, id, MAX_ATTEMPTS_KEPT - 1)?;
        }
        tx.attempt(id, attempt)?;
    }
    let mut record = stored.record.clone();
    tx.unqueue(&record.endpoint, record.not_before_ms, id);
    record.not_before_ms = not_before_ms;
    record.attempts = attempts;
    record.last_error = error;
    tx.queue(&record, id, false);
    tx.changes.ended.push(id);
    tx.put(id, record, stored.body.clone(), Some(&stored))
}

/// Dead-letters `id` after an attempt that gave up: that attempt counts in `attempts`
/// (a delivery never leased, dead-lettered as it was enqueued, had none).
fn bury_attempted(
    engine: &Engine,
    tx: &mut Tx,
    id: u64,
    leased: bool,
    grave: Grave,
    attempt: Option<Attempt>,
) -> Result<(), StoreError> {
    let mut stored = tx.queued(engine, id, leased)?;
    if let Some(attempt) = attempt {
        tx.attempt(id, attempt)?;
    }
    tx.changes.ended.push(id);
    if leased {
        stored.record.attempts = stored.record.attempts.saturating_add(1);
    }
    bury_stored(tx, id, stored, grave).map(drop)
}

fn bury_stored(tx: &mut Tx, id: u64, stored: Stored, grave: Grave) -> Result<bool, StoreError> {
    let mut record = stored.record.clone();
    tx.unqueue(&record.endpoint, record.not_before_ms, id);
    let change = tx.changes.lane(&record.endpoint);
    change.depth -= 1;
    change.dead += 1;
    tx.dead.insert(dead_key(&lane(&record.endpoint), id), true);
    record.grave = Some(grave);
    tx.put(id, record, stored.body.clone(), Some(&stored))?;
    Ok(true)
}

fn replay(engine: &Engine, tx: &mut Tx, id: u64, now_ms: i64) -> Result<bool, StoreError> {
    match tx.get(engine, id)? {
        Some(stored) if stored.record.grave.is_some() => {
            replay_stored(engine, tx, id, stored, now_ms)
        }
        _ => Ok(false),
    }
}

fn replay_stored(
    engine: &Engine,
    tx: &mut Tx,
    id: u64,
    stored: Stored,
    now_ms: i64,
) -> Result<bool, StoreError> {
    tx.trim_attempts(engine, id, MAX_ATTEMPTS_KEPT - 1)?;
    tx.attempt(
        id,
        Attempt {
            at_ms: now_ms,
            outcome: AttemptOutcome::Replayed,
            status: None,
            duration_ms: 0,
            error: None,
            response: None,
        },
    )?;
    let mut record = stored.record.clone();
    tx.dead.insert(dead_key(&lane(&record.endpoint), id), false);
    record.grave = None;
    record.attempts = 0;
    record.last_error = None;
    // Due at once, whatever the clock of the worker that leases it.
    record.not_before_ms = 0;
    record.created_at_ms = now_ms;
    let change = tx.changes.lane(&record.endpoint);
    change.dead -= 1;
    change.depth += 1;
    tx.queue(&record, id, true);
    tx.put(id, record, stored.body.clone(), Some(&stored))?;
    Ok(true)
}

fn discard(engine: &Engine, tx: &mut Tx, id: u64) -> Result<bool, StoreError> {
    match tx.get(engine, id)? {
        Some(stored) if stored.record.grave.is_some() => {
            tx.dead
                .insert(dead_key(&lane(&stored.record.endpoint), id), false);
            tx.changes.lane(&stored.record.endpoint).dead -= 1;
            tx.forget_history(engine, id, &stored.record)?;
            tx.remove(id, stored.size);
            Ok(true)
        }
        _ => Ok(false),
    }
}

fn pending_of(op: Op) -> Pending {
    // The results are replaced by the failure before they are sent.
    match op {
        Op::Enqueue { reply, .. } | Op::EnqueueDeadLetter { reply, .. } => {
            Pending::Enqueue(reply, Ok(EnqueueOutcome::Duplicate))
        }
        Op::Complete { reply, .. }
        | Op::Reschedule { reply, .. }
        | Op::DeadLetter { reply, .. }
        | Op::ForgetUse { reply, .. } => Pending::Unit(reply, Ok(())),
        Op::DeadLetterEndpoint { reply, .. }
        | Op::ReplayEndpoint { reply, .. }
        | Op::RetryNow { reply, .. } => Pending::Count(reply, Ok(0)),
        Op::SweepHistory { reply, .. } => Pending::Swept(reply, Ok((0, false))),
        Op::Replay { reply, .. }
        | Op::DeleteDeadLetter { reply, .. }
        | Op::FirstUse { reply, .. } => Pending::Found(reply, Ok(false)),
    }
}

/// Sets the nice value of this process's threads whose name starts with `prefix` to
/// `nice`, those that are less nice (Linux keeps a nice value per thread). For fjall's
/// workers, which flush and compact in the background: they yield to the callers the way
/// the writer does, and catch up when the CPU is free.
pub(crate) fn renice_threads(prefix: &str, nice: i32) {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<i32>().ok())
            .and_then(rustix::process::Pid::from_raw)
        else {
            continue;
        };
        let named = std::fs::read_to_string(task.path().join("comm"))
            .is_ok_and(|comm| comm.starts_with(prefix));
        if !named {
            continue;
        }
        let result = rustix::process::getpriority_process(Some(tid)).and_then(|now| {
            if now < nice {
                rustix::process::setpriority_process(Some(tid), nice.min(19))
            } else {
                Ok(())
            }
        });
        if let Err(e) = result {
            tracing::debug!(error = %e, "cannot lower the priority of the store's background threads");
        }
    }
}

/// Makes the calling thread `by` nicer than it is (a no-op for 0).
pub(crate) fn renice_current_thread(by: i32) {
    if by == 0 {
        return;
    }
    // On Linux this reads and sets the calling thread's nice value, not the process's.
    let result = rustix::process::getpriority_process(None)
        .and_then(|now| rustix::process::setpriority_process(None, (now + by).min(19)));
    if let Err(e) = result {
        tracing::debug!(error = %e, "cannot lower the store writer's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::may_use_reserve;

    const HOST: &str = "         0          0 4294967295\n";
    const ROOTLESS: &str = "         0       1000          1\n         1     100000      65536\n";
    const NO_CAPS: &str = "Name:\thookrelay\nCapEff:\t0000000000000000\n";
    const ROOT_CAPS: &str = "Name:\thookrelay\nCapEff:\t000001ffffffffff\n";
    const SYS_RESOURCE: &str = "Name:\thookrelay\nCapEff:\t0000000001000000\n";

    #[test]
    fn root_of_the_host_may_use_the_reserve() {
        assert!(may_use_reserve(0, HOST, ROOT_CAPS));
        // The reserve belongs to root by user id, whatever its capabilities.
        assert!(may_use_reserve(0, HOST, NO_CAPS));
        // A namespace whose root is the host's root (`unshare -U -r` run by root).
        assert!(may_use_reserve(
            0,
            "         0          0          1\n",
            NO_CAPS
        ));
    }

    #[test]
    fn another_user_may_only_with_cap_sys_resource_of_the_host() {
        assert!(!may_use_reserve(65532, HOST, NO_CAPS));
        assert!(may_use_reserve(65532, HOST, SYS_RESOURCE));
        assert!(!may_use_reserve(1, ROOTLESS, SYS_RESOURCE));
    }

    #[test]
    fn root_in_a_user_namespace_may_not() {
        assert!(!may_use_reserve(0, ROOTLESS, ROOT_CAPS));
        // Root of the namespace is the host's user 100000.
        assert!(!may_use_reserve(
            0,
            "         0     100000      65536\n",
            ROOT_CAPS
        ));
        // A map that cannot be read counts as another namespace.
        assert!(!may_use_reserve(0, "", ROOT_CAPS));
        assert!(!may_use_reserve(0, "0 x 1\n", ROOT_CAPS));
    }
}
