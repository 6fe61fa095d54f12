//! The embedded backend: an append-only log file, one writer thread, the queue in memory.
//!
//! - `log`: the file format (checksummed frames of records), the files' names, and reading
//!   it back;
//! - `state`: the records and the state they build (queued deliveries, dead letters,
//!   dedupe keys), applied the same way when written and when read back at open;
//! - `writer`: the writer thread (group commit, lazy sync of outcomes, when to checkpoint),
//!   how far ahead of its writes the log takes space (`writer::room`), and what it does
//!   from a failed write until writes work again (`writer::outage`);
//! - `batch`: what each op of a batch writes, decided against the state, and its effects on
//!   the index;
//! - `checkpoint`: a new log file of only what is live, written and renamed into place;
//! - `recover`: the newest log file read back at open, its torn tail cut off;
//! - `index`: which deliveries are due and leased, per endpoint;
//! - `relay`: how the writer answers callers on current-thread runtimes, once per batch;
//! - this module: the public [`EmbeddedStore`]: opening the directory, starting the
//!   writer, and reading deliveries back from the log.
//!
//! Why a log of its own rather than a KV crate: `docs/DESIGN.md` §5.

mod batch;
mod checkpoint;
mod index;
mod log;
mod recover;
mod relay;
mod state;
mod writer;

use crate::{
    DeadLetter, Delivery, DeliveryId, EnqueueOutcome, NewDelivery, StoreError, StoreStats,
};
use bytes::Bytes;
use recover::{index_of, recover};
use state as writer_state;
use state::decode_put;
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
    compact_after: u64,
    outcome_sync: Duration,
    writer_niceness: i32,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            max_batch: 1024,
            compact_after: 64 << 20,
            outcome_sync: writer::LAZY_SYNC,
            writer_niceness: 0,
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

    /// Log length in bytes below which the log is not compacted (default 64 MiB). Past
    /// it, the log is compacted once it is four times the size of what is still live.
    ///
    /// On a file system short of space (less than 64 MiB free) the log is compacted
    /// whatever its length (past 1 MiB, or this if less), once it is twice what is live.
    #[must_use]
    pub fn compact_after(mut self, bytes: u64) -> Self {
        self.compact_after = bytes;
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
    /// bigger batch, so each sync (two I/O waits, a few context switches) is shared by
    /// more callers exactly when the CPU is short. With a CPU to spare it runs as soon as
    /// it is woken, as before: the setting only matters under contention.
    #[must_use]
    pub fn writer_niceness(mut self, niceness: i32) -> Self {
        self.writer_niceness = niceness.clamp(0, 19);
        self
    }
}

/// The embedded store: a durable queue of deliveries and their dead letters in an
/// append-only log in one directory, safe to share (clones share one log and one writer).
///
/// Usually used through [`Store`](crate::Store), whose methods document what every backend
/// does; this type's methods say what the embedded store adds. Times are the callers':
/// a delivery is due, and a dedupe window ends, by the `now_ms` passed in.
///
/// Every method that writes returns after its write is durable, except a leased
/// delivery's outcome ([`complete`](EmbeddedStore::complete),
/// [`reschedule`](EmbeddedStore::reschedule), [`dead_letter`](EmbeddedStore::dead_letter)):
/// that returns once it is written to the file, which a crash of the process keeps, and is
/// synced with the next durable write or within 100 ms; a power loss in that window can
/// only make a delivery be attempted again, with the same `webhook-id`. Writes from
/// concurrent callers are appended together and synced once (group commit), see
/// [`EmbeddedStore::commits`]. A call whose future is dropped before it completes may
/// still be applied.
///
/// The queue, the dead letters, the dedupe keys and the one-time tokens (as 128-bit
/// hashes) are kept in memory; bodies stay in the log and are read back when leased or
/// listed. When the log has grown to four times what is still live (and past
/// [`EmbeddedOptions::compact_after`]), it is rewritten with only the live records. Leases are kept in memory: after
/// [`EmbeddedStore::open`] every queued delivery is eligible again.
///
/// A failed write or sync (a full disk, an I/O error) fails the ops of its batch; from
/// then on every write fails at once with [`StoreError::Recovering`] and
/// [`health`](EmbeddedStore::health) reports it, while the store recovers by itself: it
/// cuts its log back to what is known to be whole, reads its state back from it,
/// compacts the log if the disk was full and that makes room, and retries a write with
/// backoff (at once, then 50 ms doubling to 2 s). As soon as one succeeds it takes writes
/// again. Nothing acknowledged is lost; an outcome written but not yet synced when a sync
/// fails may be, and its delivery is then attempted again. [`EmbeddedStore::stats`] counts
/// the refusals. The log is extended ahead of its writes only while the file system has
/// room to spare.
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
        // log is closed (and the directory can be reopened) once the last handle is gone.
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
    }
}

impl EmbeddedStore {
    /// Opens the store in directory `dir`, creating the directory and the log if needed,
    /// with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(dir, EmbeddedOptions::default())
    }

    /// Opens the store in directory `dir` with `options`.
    ///
    /// The log is read back: a frame a killed process left half-written is cut off (it was
    /// never acknowledged), and the queue is rebuilt with none of it leased. Fails when
    /// another process has the directory open.
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
        let (seq, file, end, state) = recover(dir)?;
        // Zeros the writer set aside before are kept and written over.
        let allocated = file.metadata().map_or(end, |m| m.len().max(end));
        let index = index_of(&state);
        tracing::info!(
            queued = state.queued.len(),
            dead = state.dead.len(),
            keys = state.key_count(),
            next_id = state.next_id,
            log_bytes = end,
            "store opened"
        );
        let mut core = Core {
            index,
            state,
            ..Core::default()
        };
        core.files.insert(seq, Arc::clone(&file));
        core.committed = (seq, end);
        let shared = Arc::new(Shared::new(core));
        let (ops, receiver) = mpsc::channel();
        let niceness = options.writer_niceness;
        let writer = Writer::new(
            dir.to_owned(),
            Arc::clone(&shared),
            (seq, file),
            (end, allocated),
            &options,
        );
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

    /// [`Store::enqueue`](crate::Store::enqueue), in one log write: the key is recorded
    /// until `now_ms + window` (an enqueue with an earlier `now_ms` is a duplicate), the
    /// deliveries are due at `now_ms`, and the call returns once the log is synced. Expired
    /// keys are purged a bounded number per commit.
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

    /// [`Store::enqueue_dead_letter`](crate::Store::enqueue_dead_letter), in one log write
    /// synced before it returns, keyed as [`enqueue`](EmbeddedStore::enqueue) keys.
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

    /// [`Store::lease`](crate::Store::lease): the deliveries due at `now_ms`, new ones
    /// included. Leases are kept in memory; a delivery whose body cannot be read back stays
    /// leased (and logged) until the store is reopened.
    pub async fn lease(
        &self,
        endpoint: &str,
        now_ms: i64,
        max: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let found = {
            let mut core = self.inner.shared.core();
            let ids = core.index.lease(endpoint, now_ms, max);
            let mut found = Vec::with_capacity(ids.len());
            for id in ids {
                // Absent: removed by the batch being written, whose commit drops the
                // lease (and whose failure gives it back).
                let Some(entry) = core.state.queued.get(&id) else {
                    core.orphans.push(id);
                    continue;
                };
                let Some(file) = core.files.get(&entry.put.seq) else {
                    // Every entry points into an open log file; left leased if not.
                    tracing::error!(id, seq = entry.put.seq, "delivery in no open log file");
                    continue;
                };
                found.push((id, entry.clone(), Arc::clone(file)));
            }
            found
        };
        let mut deliveries = Vec::with_capacity(found.len());
        let mut failed = None;
        for (id, entry, file) in found {
            if failed.is_some() {
                self.inner.shared.core().index.release(id);
                continue;
            }
            match read_delivery(id, &entry, &file) {
                Ok(delivery) => deliveries.push(delivery),
                Err(error @ StoreError::Corrupt { .. }) => {
                    // Stays leased, so it is not offered again before a restart; still
                    // counted in the queue depth.
                    tracing::error!(id, error = %error, "unreadable delivery left leased");
                }
                Err(error) => {
                    self.inner.shared.core().index.release(id);
                    failed = Some(error);
                }
            }
        }
        match failed {
            Some(error) => {
                let mut core = self.inner.shared.core();
                for delivery in deliveries {
                    core.index.release(delivery.id.0);
                }
                Err(error)
            }
            None => Ok(deliveries),
        }
    }

    /// [`Store::next_due`](crate::Store::next_due), from memory: the earliest time a
    /// delivery of `endpoint` that is not leased is due, or `None` when it has none.
    pub fn next_due(&self, endpoint: &str) -> Option<i64> {
        self.inner.shared.core().index.next_due(endpoint)
    }

    /// [`Store::complete`](crate::Store::complete); durable as outcomes are (see the type).
    pub async fn complete(&self, id: DeliveryId) -> Result<(), StoreError> {
        self.call(|reply| Op::Complete { id: id.0, reply }).await
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
        self.call(|reply| Op::Reschedule {
            id: id.0,
            not_before_ms,
            attempts,
            error,
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
        let reason = reason.into();
        self.call(|reply| Op::DeadLetter {
            id: id.0,
            reason,
            status,
            response,
            now_ms,
            reply,
        })
        .await
    }

    /// [`Store::release`](crate::Store::release), in memory.
    pub async fn release(&self, id: DeliveryId) -> Result<(), StoreError> {
        self.inner.shared.core().index.release(id.0);
        Ok(())
    }

    /// [`Store::dead_letter_endpoint`](crate::Store::dead_letter_endpoint), in one log write.
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

    /// [`Store::dead_letters`](crate::Store::dead_letters); a letter whose body cannot be
    /// read back is left out (and logged).
    pub async fn dead_letters(
        &self,
        endpoint: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let found: Vec<(u64, writer_state::Grave, Arc<File>)> = {
            let core = self.inner.shared.core();
            core.state
                .dead
                .iter()
                .filter(|(_, grave)| endpoint.is_none_or(|name| *grave.entry.endpoint == *name))
                .filter_map(|(&id, grave)| written_grave(&core, id, grave))
                .take(limit)
                .collect()
        };
        let mut letters = Vec::with_capacity(found.len());
        for (id, grave, file) in found {
            match read_letter(id, grave, &file) {
                Ok(letter) => letters.push(letter),
                Err(error @ StoreError::Corrupt { .. }) => {
                    // One damaged letter does not hide the others.
                    tracing::error!(id, error = %error, "unreadable dead letter left out");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(letters)
    }

    /// [`Store::find_dead_letter`](crate::Store::find_dead_letter), its body read back from
    /// the log.
    pub async fn find_dead_letter(&self, id: DeliveryId) -> Result<Option<DeadLetter>, StoreError> {
        let found = {
            let core = self.inner.shared.core();
            core.state
                .dead
                .get(&id.0)
                .and_then(|grave| written_grave(&core, id.0, grave))
        };
        match found {
            Some((id, grave, file)) => read_letter(id, grave, &file).map(Some),
            None => Ok(None),
        }
    }

    /// [`Store::delete_dead_letter`](crate::Store::delete_dead_letter), in one log write.
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

    /// [`Store::replay_endpoint`](crate::Store::replay_endpoint), in one log write.
    pub async fn replay_endpoint(&self, endpoint: &str, now_ms: i64) -> Result<u64, StoreError> {
        let endpoint = endpoint.to_owned();
        self.call(|reply| Op::ReplayEndpoint {
            endpoint,
            now_ms,
            reply,
        })
        .await
    }

    /// [`Store::retry_now`](crate::Store::retry_now), in one log write synced before it
    /// returns: a `Reschedule` record per delivery, due at `now_ms` with its attempts and
    /// last error, so a reopen sees the new due times.
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
    /// with the same text): synced before it returns, kept by checkpoints while it is live,
    /// and purged once expired as dedupe keys are.
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
        self.inner.shared.core().index.depth(endpoint)
    }

    /// [`Store::endpoints`](crate::Store::endpoints), from memory (no I/O, no `async`).
    pub fn endpoints(&self) -> Vec<String> {
        self.inner.shared.core().index.endpoints()
    }

    /// [`Store::subscribe`](crate::Store::subscribe): every enqueue, replay and
    /// [`retry_now`](EmbeddedStore::retry_now) of the store wakes it, since one process holds
    /// the store.
    pub fn subscribe(&self, endpoint: &str) -> Arc<Notify> {
        self.inner.shared.core().index.waker(endpoint)
    }

    /// Syncs of the log since open, each covering a group commit (and the outcomes
    /// written before it): with group commit, far fewer than the writes made under
    /// concurrency.
    pub fn commits(&self) -> u64 {
        self.inner.shared.commits.load(Ordering::Relaxed)
    }

    /// Times the log was compacted since open.
    pub fn checkpoints(&self) -> u64 {
        self.inner.shared.checkpoints.load(Ordering::Relaxed)
    }

    /// [`Store::stats`](crate::Store::stats): writes refused while the store was failing,
    /// and how many times it started failing, since open.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            refused: self.inner.shared.refused.load(Ordering::Relaxed),
            outages: self.inner.shared.outages.load(Ordering::Relaxed),
        }
    }

    /// [`Store::health`](crate::Store::health): ready when the writer runs, takes writes
    /// (a failed write makes it [`StoreError::Recovering`] until a retry succeeds), and the
    /// log file is there.
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
        let files: Vec<Arc<File>> = self.inner.shared.core().files.values().cloned().collect();
        for file in files {
            file.metadata()
                .map_err(|e| StoreError::backend("read", e))?;
        }
        Ok(())
    }
}

/// A dead letter with the log file its delivery is in, unless that delivery is in a batch
/// still being written (it is not listed before it is durable).
fn written_grave(
    core: &Core,
    id: u64,
    grave: &writer_state::Grave,
) -> Option<(u64, writer_state::Grave, Arc<File>)> {
    let (seq, written) = core.committed;
    let put = grave.entry.put;
    if put.seq == seq && put.off + u64::from(put.len) > written {
        return None;
    }
    let file = core.files.get(&put.seq)?;
    Some((id, grave.clone(), Arc::clone(file)))
}

/// Reads a dead letter's delivery back from the log.
fn read_letter(id: u64, grave: writer_state::Grave, file: &File) -> Result<DeadLetter, StoreError> {
    let delivery = read_delivery(id, &grave.entry, file)?;
    Ok(DeadLetter {
        delivery,
        reason: grave.reason.into(),
        status: grave.status,
        response: grave.response.map(String::from),
        dead_at_ms: grave.dead_at_ms,
    })
}

/// Reads a delivery's `Put` record back and combines it with what changed since.
fn read_delivery(id: u64, entry: &state::Entry, file: &File) -> Result<Delivery, StoreError> {
    let record = log::read(file, entry.put).map_err(|e| StoreError::backend("read", e))?;
    let (webhook_id, created_at_ms, body_range) = {
        let put = decode_put(entry.put.seq, entry.put, &record)?;
        let start = put.body.as_ptr() as usize - record.as_ptr() as usize;
        (
            put.webhook_id.to_owned(),
            entry.replayed_at_ms.unwrap_or(put.created_at_ms),
            start..start + put.body.len(),
        )
    };
    Ok(Delivery {
        id: DeliveryId(id),
        endpoint: entry.endpoint.to_string(),
        not_before_ms: entry.not_before_ms,
        attempts: entry.attempts,
        webhook_id,
        created_at_ms,
        last_error: entry.last_error.as_deref().map(String::from),
        body: Bytes::from(record).slice(body_range),
    })
}
