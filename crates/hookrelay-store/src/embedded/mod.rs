//! The embedded backend: a fjall database in one directory, one writer thread, bounded
//! memory whatever the backlog.
//!
//! - `engine`: the database, its keyspaces, and how keys and records are laid out;
//! - `queue`: what stays in memory: per-endpoint counters and queue cursors, leases,
//!   wake-up signals;
//! - `dedupe`: dedupe keys and one-time tokens in windows of expiry times, dropped whole;
//! - `writer`: the writer thread (group commit, lazy sync of outcomes, ops on a whole
//!   endpoint in chunks, reopening after a failed write);
//! - `syncer`: the thread that syncs the journal while the writer goes on, and answers
//!   what waited for the sync;
//! - `relay`: how the writer answers callers on current-thread runtimes, once per batch;
//! - this module: the public [`EmbeddedStore`].
//!
//! Why fjall rather than a log of its own: `docs/DESIGN.md` §5.

mod dedupe;
mod engine;
mod queue;
mod relay;
mod syncer;
mod writer;

use crate::{
    Attempt, AttemptOutcome, DeadLetter, DeadLetterInfo, Delivery, DeliveryId, DeliveryState,
    EnqueueOutcome, History, HistoryPage, HistoryQuery, MinFree, NewDelivery, StoreError,
    StoreStats,
};
use engine::{Engine, Record, lane, parse_dead};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{Notify, oneshot};
use writer::{Core, Op, Reply, Sent, Shared, Writer};

/// The lock file inside the store directory: one process at a time.
const LOCK_FILE: &str = "lock";

/// A store directory of the older redb format holds this file.
const REDB_FILE: &str = "hookrelay.redb";

/// Tuning of an [`EmbeddedStore`].
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    max_batch: usize,
    outcome_sync: Duration,
    writer_niceness: i32,
    background_niceness: i32,
    max_bytes: u64,
    min_free: MinFree,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            max_batch: 1024,
            outcome_sync: writer::LAZY_SYNC,
            writer_niceness: 0,
            background_niceness: 0,
            max_bytes: 0,
            min_free: MinFree::Bytes(0),
        }
    }
}

impl EmbeddedOptions {
    /// Most operations committed in one write (default 1024, at least 1).
    ///
    /// `1` commits every operation on its own, one fsync each: the baseline that group
    /// commit is measured against.
    #[must_use]
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch.max(1);
        self
    }

    /// Longest time a delivery's outcome (complete, reschedule, dead letter) waits for a
    /// sync when no durable write comes first (default 100 ms).
    #[must_use]
    pub fn outcome_sync_within(mut self, within: Duration) -> Self {
        self.outcome_sync = within;
        self
    }

    /// How much nicer than the rest of the process the writer thread runs (default 0, at
    /// most 19; Linux keeps a nice value per thread).
    ///
    /// Group commit syncs whatever arrived while the previous sync ran. When callers
    /// compete with the writer for the CPU, a writer that yields to them wakes to a
    /// bigger batch, so each sync is shared by more callers exactly when the CPU is
    /// short. With a CPU to spare it runs as soon as it is woken: the setting only
    /// matters under contention.
    #[must_use]
    pub fn writer_niceness(mut self, niceness: i32) -> Self {
        self.writer_niceness = niceness.clamp(0, 19);
        self
    }

    /// How much nicer than the rest of the process fjall's background threads run, which
    /// flush write buffers to tables and compact them (default 0, at most 19): with the
    /// CPU short, they yield to the callers and catch up once it is free, as the writer
    /// does ([`EmbeddedOptions::writer_niceness`]). fjall slows writes down by itself if
    /// its tables pile up.
    #[must_use]
    pub fn background_niceness(mut self, niceness: i32) -> Self {
        self.background_niceness = niceness.clamp(0, 19);
        self
    }

    /// The budget (default 0: none): once the records of the queued deliveries and dead
    /// letters, with the dedupe keys, take this many bytes, enqueues fail with
    /// [`StoreError::Full`] until deliveries drain. See [`EmbeddedStore::set_max_bytes`].
    #[must_use]
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// The free space kept on the store's file system (default `MinFree::Bytes(0)`: none).
    /// Below it, enqueues fail with [`StoreError::DiskLow`] (looked at most every 100 ms),
    /// before a write can fail for want of space and stop every write until a retry
    /// succeeds; deliveries and their outcomes go on. Enqueues are taken again once half as
    /// much again is free. See [`EmbeddedStore::set_min_free`].
    #[must_use]
    pub fn min_free(mut self, min_free: MinFree) -> Self {
        self.min_free = min_free;
        self
    }
}

/// The embedded store: a durable queue of deliveries and their dead letters in a fjall
/// database in one directory, safe to share (clones share one database and one writer).
///
/// Usually used through [`Store`](crate::Store), whose methods document what every backend
/// does; this type's methods say what the embedded store adds. Times are the callers':
/// a delivery is due, and a dedupe window ends, by the `now_ms` passed in.
///
/// Every method that writes returns after its write is durable, except a leased
/// delivery's outcome ([`complete`](EmbeddedStore::complete),
/// [`reschedule`](EmbeddedStore::reschedule), [`dead_letter`](EmbeddedStore::dead_letter)):
/// that returns once it is written to the journal, which a crash of the process keeps,
/// and is synced with the next durable write or within 100 ms; a power loss in that window
/// can only make a delivery be attempted again, with the same `webhook-id`. Writes from
/// concurrent callers are committed together and synced once (group commit), see
/// [`EmbeddedStore::commits`]. A call whose future is dropped before it completes may
/// still be applied.
///
/// The queue, the dead letters, the dedupe keys and the one-time tokens (as 128-bit
/// hashes) are on disk. Memory holds a bounded block cache and write buffers, per
/// endpoint its counters and where its queue starts, and the leases (the deliveries in
/// flight): an open reads no backlog, and RSS does not grow with it. Dedupe keys are kept
/// in windows of expiry times, each deleted whole once every key in it has expired.
/// Leases are kept in memory: after [`EmbeddedStore::open`] every queued delivery is
/// eligible again.
///
/// A failed write or sync (a full disk, an I/O error) fails the ops of its batch; from
/// then on every write fails at once with [`StoreError::Recovering`] and
/// [`health`](EmbeddedStore::health) reports it, while the store recovers by itself: it
/// closes and reopens its database (cutting off a torn batch) and probes a synced write,
/// at once, then after 50 ms doubling to 2 s. As soon as one succeeds it takes writes
/// again. Nothing acknowledged is lost; an outcome written but not yet synced when a sync
/// fails may be, and its delivery is then attempted again. [`EmbeddedStore::stats`] counts
/// the refusals.
#[derive(Clone, Debug)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    shared: Arc<Shared>,
    ops: Option<Sender<Sent>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Held (and locked) while the store is open.
    _lock: File,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the writer after its current batch; joining it means the
        // database is closed (and the directory can be reopened) once the last handle is
        // gone.
        drop(self.ops.take());
        let handle = self
            .writer
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::error!("store writer thread panicked");
        }
        self.shared.core().engine = None;
    }
}

/// Whether `dir` holds a store of the log format this one replaced.
fn holds_old_log(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.len() == 24
                && name.ends_with(".log")
                && name[..20].bytes().all(|b| b.is_ascii_digit())
        })
    })
}

impl EmbeddedStore {
    /// Opens the store in directory `dir`, creating the directory and the database if
    /// needed, with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(dir, EmbeddedOptions::default())
    }

    /// Opens the store in directory `dir` with `options`.
    ///
    /// A batch a killed process left half-written is cut off (it was never
    /// acknowledged), and none of the queue is leased. What the open reads is bounded by
    /// the journal (64 MiB at most) and the number of endpoints, not by the backlog.
    /// Fails when another process has the directory open.
    pub fn open_with(dir: impl AsRef<Path>, options: EmbeddedOptions) -> Result<Self, StoreError> {
        let dir = dir.as_ref();
        let existed = dir.is_dir();
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        if !existed
            && let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty())
            && let Err(e) = File::open(parent).and_then(|d| d.sync_all())
        {
            // The new directory's entry may not survive a power loss before the next sync.
            tracing::warn!(path = %parent.display(), error = %e, "cannot sync the store's parent directory");
        }
        let open_error = |source: Arc<dyn std::error::Error + Send + Sync>| StoreError::Open {
            path: dir.to_owned(),
            source,
        };
        let io_error = |e: std::io::Error| open_error(Arc::new(e));
        if dir.join(REDB_FILE).exists() {
            return Err(io_error(std::io::Error::other(format!(
                "the directory holds a store in the older redb format ({REDB_FILE}); deliver or \
                 move it away first"
            ))));
        }
        if holds_old_log(dir) {
            return Err(io_error(std::io::Error::other(
                "the directory holds a store in the older log format (*.log files); deliver \
                 it with the release that wrote it, or move it away first",
            )));
        }
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(io_error)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(io_error(std::io::Error::other(
                    "another process has this store open",
                )));
            }
            Err(TryLockError::Error(e)) => return Err(io_error(e)),
        }
        let engine = Arc::new(Engine::open(dir).map_err(|e| open_error(Arc::new(e)))?);
        // fjall's workers are started by the open, at this thread's priority.
        let background_nice = rustix::process::getpriority_process(None)
            .unwrap_or(0)
            .saturating_add(options.background_niceness);
        if options.background_niceness > 0 {
            writer::renice_threads(engine::WORKER_THREADS, background_nice);
        }
        let queue = queue::Queue::load(&engine)?;
        let (queued, dead) = queue.totals();
        let core = Core {
            engine: Some(Arc::clone(&engine)),
            queue,
        };
        let shared = Arc::new(Shared::new(core, options.max_bytes));
        shared.set_min_free(options.min_free);
        let writer = Writer::new(
            dir.to_owned(),
            Arc::clone(&shared),
            engine,
            &options,
            background_nice,
        )?;
        tracing::info!(
            queued,
            dead,
            keys = shared.keys.load(Ordering::Relaxed),
            bytes = shared.used.load(Ordering::Relaxed),
            "store opened"
        );
        let (ops, receiver) = mpsc::channel();
        let niceness = options.writer_niceness;
        let handle = std::thread::Builder::new()
            .name("hookrelay-store-writer".into())
            .spawn(move || {
                writer::renice_current_thread(niceness);
                writer.run(receiver);
            })
            .map_err(|source| StoreError::Spawn { source })?;
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                shared,
                ops: Some(ops),
                writer: Mutex::new(Some(handle)),
                _lock: lock,
            }),
        })
    }

    /// The store directory.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// Sets the budget ([`EmbeddedOptions::max_bytes`]; 0: none), from the next enqueue on.
    pub fn set_max_bytes(&self, bytes: u64) {
        self.inner.shared.max_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Sets the free space kept ([`EmbeddedOptions::min_free`]), from the next enqueue on.
    pub fn set_min_free(&self, min_free: MinFree) {
        self.inner.shared.set_min_free(min_free);
    }

    /// Sends `op` to the writer and waits for its answer; refused at once while the store
    /// is failing.
    async fn call<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, StoreError> {
        if let Some(refused) = self.inner.shared.refuse() {
            return Err(refused);
        }
        let (reply, answer) = oneshot::channel();
        let ops = self.inner.ops.as_ref().ok_or(StoreError::WriterStopped)?;
        let sent = Sent {
            op: op(reply),
            relay: relay::current(),
        };
        ops.send(sent).map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// [`Store::enqueue`](crate::Store::enqueue), in one commit: the key is recorded
    /// until `now_ms + window` (an enqueue with an earlier `now_ms` is a duplicate), the
    /// deliveries are due at `now_ms`, and the call returns once the journal is synced.
    /// Fails with [`StoreError::Full`] when the budget ([`EmbeddedOptions::max_bytes`]) is
    /// reached; a duplicate is answered even then.
    pub async fn enqueue(
        &self,
        dedupe: Option<(String, Duration)>,
        batch: Vec<NewDelivery>,
        now_ms: i64,
    ) -> Result<EnqueueOutcome, StoreError> {
        if dedupe.is_none() && batch.is_empty() {
            return Ok(EnqueueOutcome::Enqueued(Vec::new()));
        }
        self.call(|reply| Op::Enqueue {
            dedupe,
            batch,
            now_ms,
            reply,
        })
        .await
    }

    /// [`Store::enqueue_dead_letter`](crate::Store::enqueue_dead_letter), in one commit
    /// synced before it returns, keyed as [`enqueue`](EmbeddedStore::enqueue) keys, and
    /// refused as it is when the store is full.
    pub async fn enqueue_dead_letter(
        &self,
        dedupe: Option<(String, Duration)>,
        delivery: NewDelivery,
        reason: impl Into<String>,
        now_ms: i64,
    ) -> Result<EnqueueOutcome, StoreError> {
        let reason = reason.into();
        self.call(|reply| Op::EnqueueDeadLetter {
            dedupe,
            delivery,
            reason,
            now_ms,
            reply,
        })
        .await
    }

    /// [`Store::lease`](crate::Store::lease): the deliveries due at `now_ms`, in due order
    /// (then id order), new ones included. Leases are kept in memory; a delivery whose
    /// record cannot be read back stays leased (and logged) until the store is reopened.
    pub async fn lease(
        &self,
        endpoint: &str,
        now_ms: i64,
        max: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let engine = self.inner.shared.engine()?;
        let (ids, epoch) = {
            let mut core = self.inner.shared.core();
            let epoch = core.queue.epoch();
            (core.queue.lease(&engine, endpoint, now_ms, max)?, epoch)
        };
        let mut deliveries = Vec::with_capacity(ids.len());
        let mut known = Vec::with_capacity(ids.len());
        let mut failed = None;
        let read = engine.stored_many(&ids);
        for (id, read) in ids.into_iter().zip(read) {
            if failed.is_some() {
                self.inner.shared.core().queue.release(id);
                continue;
            }
            match read {
                Ok(Some((record, body, size))) if record.grave.is_none() => {
                    known.push((
                        id,
                        queue::Known {
                            endpoint: Arc::clone(&record.endpoint),
                            not_before_ms: record.not_before_ms,
                            size,
                        },
                    ));
                    deliveries.push(delivery_of(id, record, body));
                }
                Ok(_) => {
                    // Moved (dead-lettered) by a commit since the scan: not queued.
                    self.inner.shared.core().queue.release(id);
                }
                Err(error @ StoreError::Corrupt { .. }) => {
                    // Stays leased, so it is not offered again before a restart; still
                    // counted in the queue depth.
                    tracing::error!(id, error = %error, "unreadable delivery left leased");
                }
                Err(error) => {
                    self.inner.shared.core().queue.release(id);
                    failed = Some(error);
                }
            }
        }
        match failed {
            Some(error) => {
                let mut core = self.inner.shared.core();
                for delivery in deliveries {
                    core.queue.release(delivery.id.0);
                }
                Err(error)
            }
            None => {
                let mut core = self.inner.shared.core();
                for (id, known) in known {
                    core.queue.know(id, known, epoch);
                }
                Ok(deliveries)
            }
        }
    }

    /// [`Store::next_due`](crate::Store::next_due): the earliest time a delivery of
    /// `endpoint` that is not leased is due, or `None` when it has none. Fails while the
    /// store recovers from a failed write, or when it cannot read its queue.
    pub fn next_due(&self, endpoint: &str) -> Result<Option<i64>, StoreError> {
        let engine = self.inner.shared.engine()?;
        self.inner.shared.core().queue.next_due(&engine, endpoint)
    }

    /// [`Store::complete`](crate::Store::complete); durable as outcomes are (see the type).
    pub async fn complete(&self, id: DeliveryId) -> Result<(), StoreError> {
        self.complete_with(id, None).await
    }

    /// [`Store::complete_with`](crate::Store::complete_with): the record stays, as the
    /// history of a delivered delivery, with `attempt` in it.
    pub async fn complete_with(
        &self,
        id: DeliveryId,
        attempt: Option<Attempt>,
    ) -> Result<(), StoreError> {
        self.call(|reply| Op::Complete {
            id: id.0,
            attempt,
            reply,
        })
        .await
    }

    /// [`Store::reschedule`](crate::Store::reschedule); durable as outcomes are (see the
    /// type).
    pub async fn reschedule(
        &self,
        id: DeliveryId,
        not_before_ms: i64,
        attempts: u32,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        self.reschedule_with(id, not_before_ms, attempts, error, None)
            .await
    }

    /// [`Store::reschedule_with`](crate::Store::reschedule_with).
    pub async fn reschedule_with(
        &self,
        id: DeliveryId,
        not_before_ms: i64,
        attempts: u32,
        error: Option<String>,
        attempt: Option<Attempt>,
    ) -> Result<(), StoreError> {
        self.call(|reply| Op::Reschedule {
            id: id.0,
            not_before_ms,
            attempts,
            error,
            attempt,
            reply,
        })
        .await
    }

    /// [`Store::dead_letter`](crate::Store::dead_letter); durable as outcomes are (see the
    /// type).
    pub async fn dead_letter(
        &self,
        id: DeliveryId,
        reason: impl Into<String>,
        status: Option<u16>,
        response: Option<String>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.dead_letter_with(id, reason, status, response, now_ms, None)
            .await
    }

    /// [`Store::dead_letter_with`](crate::Store::dead_letter_with).
    pub async fn dead_letter_with(
        &self,
        id: DeliveryId,
        reason: impl Into<String>,
        status: Option<u16>,
        response: Option<String>,
        now_ms: i64,
        attempt: Option<Attempt>,
    ) -> Result<(), StoreError> {
        let reason = reason.into();
        self.call(|reply| Op::DeadLetter {
            id: id.0,
            reason,
            status,
            response,
            now_ms,
            attempt,
            reply,
        })
        .await
    }

    /// [`Store::history`](crate::Store::history), read from disk.
    pub async fn history(&self, id: DeliveryId) -> Result<Option<History>, StoreError> {
        let engine = self.inner.shared.engine()?;
        let Some((record, body)) = engine.record(id.0)? else {
            return Ok(None);
        };
        self.history_from(&engine, id.0, record, body).map(Some)
    }

    /// The history of `id` from its record.
    fn history_from(
        &self,
        engine: &Engine,
        id: u64,
        mut record: Record,
        body: bytes::Bytes,
    ) -> Result<History, StoreError> {
        let mut attempts: Vec<Attempt> = engine
            .attempts_of(id)?
            .into_iter()
            .map(|(_, attempt)| attempt)
            .collect();
        // Trimmed as it grows, but loosely (a replay starts the count again): the newest.
        let excess = attempts.len().saturating_sub(crate::MAX_ATTEMPTS_KEPT);
        attempts.drain(..excess);
        let grave = record.grave.take();
        let state = if grave.is_some() {
            DeliveryState::Dead
        } else if engine.is_queued(id, &record)? {
            if self.inner.shared.core().queue.is_leased(id) {
                DeliveryState::InFlight
            } else if attempts
                .last()
                .is_some_and(|a| a.outcome == AttemptOutcome::Replayed)
            {
                DeliveryState::Replayed
            } else {
                DeliveryState::Queued
            }
        } else {
            DeliveryState::Delivered
        };
        let mut delivery = delivery_of(id, record, body);
        if state == DeliveryState::Delivered {
            // The attempt that delivered it is not counted in the record.
            delivery.attempts = delivery.attempts.saturating_add(1);
        }
        Ok(History {
            delivery,
            state,
            attempts,
            dead: grave.map(|g| DeadLetterInfo {
                reason: g.reason,
                status: g.status,
                response: g.response,
                dead_at_ms: g.dead_at_ms,
            }),
        })
    }

    /// [`Store::history_of`](crate::Store::history_of), read from disk.
    pub async fn history_of(
        &self,
        webhook_id: &str,
        limit: usize,
    ) -> Result<Vec<History>, StoreError> {
        let engine = self.inner.shared.engine()?;
        let mut ids = engine.hooked(webhook_id)?;
        ids.sort_unstable_by(|a, b| b.cmp(a));
        let mut found = Vec::new();
        for id in ids {
            if found.len() >= limit {
                break;
            }
            match engine.record(id) {
                Ok(Some((record, body))) if record.webhook_id == webhook_id => {
                    found.push(self.history_from(&engine, id, record, body)?);
                }
                Ok(_) => {}
                Err(error @ StoreError::Corrupt { .. }) => {
                    tracing::error!(id, error = %error, "unreadable delivery left out");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(found)
    }

    /// [`Store::histories`](crate::Store::histories): a scan of the records from the
    /// newest down, read from disk.
    pub async fn histories(&self, query: &HistoryQuery) -> Result<HistoryPage, StoreError> {
        let engine = self.inner.shared.engine()?;
        let limit = query.limit.max(1);
        let end = query.before.map_or(u64::MAX, |b| b.0);
        let mut page = HistoryPage::default();
        let mut looked = 0usize;
        for guard in engine.deliveries.range(..end.to_be_bytes()).rev() {
            let (key, value) = guard.into_inner().map_err(engine::read_error)?;
            let Some(id) = key.as_ref().try_into().ok().map(u64::from_be_bytes) else {
                continue;
            };
            looked += 1;
            if looked > crate::HISTORY_SCAN_LIMIT {
                page.next = Some(DeliveryId(id.saturating_add(1)));
                return Ok(page);
            }
            let (record, body) = match Record::decode(id, bytes::Bytes::from(value)) {
                Ok(found) => found,
                Err(error) => {
                    tracing::error!(id, error = %error, "unreadable delivery left out");
                    continue;
                }
            };
            if let Some(since) = query.since_ms
                && record.created_at_ms < since
            {
                // Received in id order: past a delivered one received before `since`,
                // every older one was received before too. Queued and dead ones may be
                // replayed dead letters (queued again later, under their old ids): passed
                // over, not an end.
                if record.grave.is_none() && !engine.is_queued(id, &record)? {
                    return Ok(page);
                }
                continue;
            }
            let endpoint_matches = query
                .endpoint
                .as_deref()
                .is_none_or(|name| *record.endpoint == *name);
            if endpoint_matches {
                drop(body);
                let history = self.history_from(&engine, id, record, bytes::Bytes::new())?;
                if query.state.is_none_or(|state| state == history.state) {
                    page.deliveries.push(history);
                    if page.deliveries.len() >= limit {
                        page.next = Some(DeliveryId(id));
                        return Ok(page);
                    }
                }
            }
        }
        Ok(page)
    }

    /// [`Store::sweep_history`](crate::Store::sweep_history), by the time each delivery
    /// was delivered (the writer's clock), in commits of at most 1,024 records each with
    /// other writes free to go between them.
    pub async fn sweep_history(&self, cutoff_ms: i64, max_bytes: u64) -> Result<u64, StoreError> {
        let mut removed = 0;
        loop {
            let (swept, more) = self
                .call(|reply| Op::SweepHistory {
                    cutoff_ms,
                    max_bytes,
                    reply,
                })
                .await?;
            removed += swept;
            if !more {
                return Ok(removed);
            }
        }
    }

    /// [`Store::release`](crate::Store::release), in memory.
    pub async fn release(&self, id: DeliveryId) -> Result<(), StoreError> {
        self.inner.shared.core().queue.release(id.0);
        Ok(())
    }

    /// [`Store::dead_letter_endpoint`](crate::Store::dead_letter_endpoint), in commits of
    /// at most 4,096 deliveries each (a crash in between leaves the rest queued).
    pub async fn dead_letter_endpoint(
        &self,
        endpoint: &str,
        reason: impl Into<String>,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let endpoint = endpoint.to_owned();
        let reason = reason.into();
        self.call(|reply| Op::DeadLetterEndpoint {
            endpoint,
            reason,
            now_ms,
            reply,
        })
        .await
    }

    /// [`Store::dead_letters`](crate::Store::dead_letters): read from disk, `limit` per
    /// endpoint at most; a letter whose record cannot be read back is left out (and
    /// logged).
    pub async fn dead_letters(
        &self,
        endpoint: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        self.dead_letters_after(endpoint, None, limit).await
    }

    /// [`Store::dead_letters_after`](crate::Store::dead_letters_after), read from disk as
    /// [`dead_letters`](EmbeddedStore::dead_letters) is.
    pub async fn dead_letters_after(
        &self,
        endpoint: Option<&str>,
        after: Option<DeliveryId>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let engine = self.inner.shared.engine()?;
        let endpoints: Vec<Arc<str>> = match endpoint {
            Some(name) => vec![Arc::from(name)],
            None => self.inner.shared.core().queue.dead_endpoints(),
        };
        let mut ids = Vec::new();
        for name in endpoints {
            let prefix = lane(&name);
            let start = match after {
                Some(after) => engine::dead_key(&prefix, after.0.saturating_add(1)),
                None => prefix.clone(),
            };
            let mut taken = 0;
            for guard in engine.dead.range(start..) {
                let key = guard.key().map_err(engine::read_error)?;
                if !key.starts_with(&prefix) || taken >= limit {
                    break;
                }
                if let Some(id) = parse_dead(&key) {
                    ids.push(id);
                    taken += 1;
                }
            }
        }
        ids.sort_unstable();
        ids.truncate(limit);
        let mut letters = Vec::with_capacity(ids.len());
        for id in ids {
            match engine.record(id) {
                Ok(Some((record, body))) => {
                    if let Some(letter) = letter_of(id, record, body) {
                        letters.push(letter);
                    }
                }
                Ok(None) => {}
                Err(error @ StoreError::Corrupt { .. }) => {
                    // One damaged letter does not hide the others.
                    tracing::error!(id, error = %error, "unreadable dead letter left out");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(letters)
    }

    /// [`Store::find_dead_letter`](crate::Store::find_dead_letter), read from disk.
    pub async fn find_dead_letter(&self, id: DeliveryId) -> Result<Option<DeadLetter>, StoreError> {
        let engine = self.inner.shared.engine()?;
        Ok(engine
            .record(id.0)?
            .and_then(|(record, body)| letter_of(id.0, record, body)))
    }

    /// [`Store::delete_dead_letter`](crate::Store::delete_dead_letter), in one commit.
    pub async fn delete_dead_letter(&self, id: DeliveryId) -> Result<bool, StoreError> {
        self.call(|reply| Op::DeleteDeadLetter { id: id.0, reply })
            .await
    }

    /// [`Store::replay`](crate::Store::replay).
    pub async fn replay(&self, id: DeliveryId, now_ms: i64) -> Result<bool, StoreError> {
        self.call(|reply| Op::Replay {
            id: id.0,
            now_ms,
            reply,
        })
        .await
    }

    /// [`Store::replay_endpoint`](crate::Store::replay_endpoint), in commits of at most
    /// 4,096 letters each.
    pub async fn replay_endpoint(&self, endpoint: &str, now_ms: i64) -> Result<u64, StoreError> {
        let endpoint = endpoint.to_owned();
        self.call(|reply| Op::ReplayEndpoint {
            endpoint,
            now_ms,
            reply,
        })
        .await
    }

    /// [`Store::retry_now`](crate::Store::retry_now), in commits of at most 4,096
    /// deliveries each, synced before it returns.
    pub async fn retry_now(&self, endpoint: &str, now_ms: i64) -> Result<u64, StoreError> {
        let endpoint = endpoint.to_owned();
        self.call(|reply| Op::RetryNow {
            endpoint,
            now_ms,
            reply,
        })
        .await
    }

    /// [`Store::first_use`](crate::Store::first_use), by the caller's clock: the token is
    /// recorded until `now_ms + ttl` (a call with an earlier `now_ms` finds it used), with
    /// the dedupe keys (as a 128-bit hash of its own, so a token never matches a dedupe key
    /// with the same text), synced before it returns.
    pub async fn first_use(
        &self,
        key: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let key = key.to_owned();
        self.call(|reply| Op::FirstUse {
            key,
            ttl,
            now_ms,
            reply,
        })
        .await
    }

    /// [`Store::forget_use`](crate::Store::forget_use), synced before it returns.
    pub async fn forget_use(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.call(|reply| Op::ForgetUse { key, reply }).await
    }

    /// [`Store::queue_depth`](crate::Store::queue_depth), from memory (no I/O, no `async`).
    pub fn queue_depth(&self, endpoint: &str) -> u64 {
        self.inner.shared.core().queue.depth(endpoint)
    }

    /// [`Store::dead_letter_count`](crate::Store::dead_letter_count), from memory.
    pub fn dead_letter_count(&self, endpoint: &str) -> u64 {
        self.inner.shared.core().queue.dead(endpoint)
    }

    /// [`Store::endpoints`](crate::Store::endpoints), from memory (no I/O, no `async`).
    pub fn endpoints(&self) -> Vec<String> {
        self.inner.shared.core().queue.endpoints()
    }

    /// [`Store::subscribe`](crate::Store::subscribe): every enqueue, replay and
    /// [`retry_now`](EmbeddedStore::retry_now) of the store wakes it, since one process holds
    /// the store.
    pub fn subscribe(&self, endpoint: &str) -> Arc<Notify> {
        self.inner.shared.core().queue.waker(endpoint)
    }

    /// Syncs of the journal since open, each covering a group commit (and the outcomes
    /// written before it): with group commit, far fewer than the writes made under
    /// concurrency.
    pub fn commits(&self) -> u64 {
        self.inner.shared.commits.load(Ordering::Relaxed)
    }

    /// Bytes the database takes on disk (its journal and tables), or 0 while it is being
    /// reopened.
    pub fn disk_bytes(&self) -> u64 {
        self.inner
            .shared
            .engine()
            .ok()
            .and_then(|engine| engine.db.disk_space().ok())
            .unwrap_or(0)
    }

    /// [`Store::stats`](crate::Store::stats): writes refused while the store was failing
    /// or full, how many times it started failing, and what it holds, since open.
    pub fn stats(&self) -> StoreStats {
        let shared = &self.inner.shared;
        StoreStats {
            refused: shared.refused.load(Ordering::Relaxed),
            outages: shared.outages.load(Ordering::Relaxed),
            full: shared.full.load(Ordering::Relaxed),
            used_bytes: shared.used.load(Ordering::Relaxed),
            max_bytes: shared.max_bytes.load(Ordering::Relaxed),
            keys: shared.keys.load(Ordering::Relaxed),
            history_bytes: shared.history.load(Ordering::Relaxed),
            disk_free_bytes: shared.disk_free.load(Ordering::Relaxed),
            disk_low: shared.disk_low.load(Ordering::Relaxed),
        }
    }

    /// [`Store::health`](crate::Store::health): ready when the writer runs and takes
    /// writes (a failed write makes it [`StoreError::Recovering`] until a retry
    /// succeeds).
    pub async fn health(&self) -> Result<(), StoreError> {
        if let Some(refusal) = self.inner.shared.refusal() {
            return Err(refusal);
        }
        let stopped = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_none_or(JoinHandle::is_finished);
        if stopped {
            return Err(StoreError::WriterStopped);
        }
        self.inner.shared.engine().map(drop)
    }
}

/// A queued delivery from its record.
fn delivery_of(id: u64, record: Record, body: bytes::Bytes) -> Delivery {
    Delivery {
        id: DeliveryId(id),
        endpoint: record.endpoint.to_string(),
        not_before_ms: record.not_before_ms,
        attempts: record.attempts,
        webhook_id: record.webhook_id,
        created_at_ms: record.created_at_ms,
        last_error: record.last_error,
        body,
        trace: record.trace,
    }
}

/// A dead letter from its record, if the record is one.
fn letter_of(id: u64, mut record: Record, body: bytes::Bytes) -> Option<DeadLetter> {
    let grave = record.grave.take()?;
    Some(DeadLetter {
        delivery: delivery_of(id, record, body),
        reason: grave.reason,
        status: grave.status,
        response: grave.response,
        dead_at_ms: grave.dead_at_ms,
    })
}
