//! The writer thread: group commit onto the log, and when to checkpoint.
//!
//! Callers send an [`Op`] with a oneshot reply. The thread takes the first op, drains
//! whatever else is already waiting (up to `max_batch`), turns each op into records
//! (deciding its outcome against the state, which it updates as it goes, so later ops of
//! the batch see earlier ones), appends them to the log in one write, makes that durable
//! with one `fdatasync`, then updates the queue index, wakes workers and answers every
//! caller. A failed write or sync fails every op of the batch; until the writer has
//! brought its state back in line with the file and a write works again, every later op
//! is refused at once (`outage`).
//!
//! An op decides whether it can proceed before it appends anything, so an op that fails on
//! its own leaves the log clean and the other ops of the batch still commit. Each op's
//! records go into one frame, so after a crash an op is either all there or not at all.
//!
//! What each op writes, and what it changes in the index once committed, is decided in
//! `batch`; this module takes the ops in, writes and syncs, and answers. How far ahead of
//! its writes the file grows, and how full the file system is, is `room`'s.
//!
//! When the log has grown past `compact_after` and to four times what is live, the thread
//! writes a checkpoint (`checkpoint`): a new log file holding only the live state (queued
//! deliveries with their bodies, dead letters, live dedupe keys, the next id), made durable
//! and renamed into place before the old file is removed. When the file system is short of
//! space (`room`), it does so whatever the log's length, once the log is twice what is live.

mod outage;
mod room;

use super::batch::Batch;
use super::checkpoint::{CheckpointError, Snapshot, write_checkpoint};
use super::index::Index;
use super::log::{FrameBuf, log_path};
use super::relay::{self, Relay};
use super::state::State;
use crate::types::truncate;
use crate::{EnqueueOutcome, MAX_RESPONSE_BYTES, NewDelivery, StoreError};
use std::collections::HashMap;
use std::error::Error as StdError;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The batch buffer is kept for the next batch up to this size (reusing it spares the
/// kernel zeroing fresh pages for every batch).
const KEEP_BUFFER: usize = 16 << 20;

/// The log file is extended with zeros this much ahead of the writes, so that a sync
/// writes the appended data only, not the file's size as well (when the file system has
/// room to spare: `room`).
const PREALLOCATE: u64 = 16 << 20;

/// On a file system short of space the log is compacted past this length (or past
/// `compact_after`, if less), and a failed checkpoint is tried again this much later at
/// the least.
const SHORT_COMPACT_FLOOR: u64 = 1 << 20;

/// How long an outcome written without a sync (see [`Op::is_lazy`]) waits for one at most,
/// unless the options say otherwise.
pub(crate) const LAZY_SYNC: Duration = Duration::from_millis(100);

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
        reply: Reply<()>,
    },
    Reschedule {
        id: u64,
        not_before_ms: i64,
        attempts: u32,
        error: Option<String>,
        reply: Reply<()>,
    },
    DeadLetter {
        id: u64,
        reason: String,
        status: Option<u16>,
        response: Option<String>,
        now_ms: i64,
        reply: Reply<()>,
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
    /// within [`LAZY_SYNC`]. A crash of the process keeps it (it is in the file); only a
    /// power loss in that window can lose it, and then the delivery is attempted again
    /// (same `webhook-id`), which at-least-once delivery allows. Everything else
    /// (enqueues, dead letters written as such, replays, a removed endpoint's dead letters,
    /// retries made due, one-time tokens) is synced before it is answered.
    fn is_lazy(&self) -> bool {
        matches!(
            self,
            Op::Complete { .. } | Op::Reschedule { .. } | Op::DeadLetter { .. }
        )
    }
}

/// What the writer and the readers share, under one lock.
#[derive(Debug, Default)]
pub(crate) struct Core {
    /// Which deliveries are due and leased; changed only after a commit.
    pub(crate) index: Index,
    /// What the log says (ahead of `index` while a batch is being written).
    pub(crate) state: State,
    /// The open log files by sequence number, for reading records back.
    pub(crate) files: HashMap<u64, Arc<File>>,
    /// The log file being written and how much of it is written: a record past that
    /// belongs to a batch still being written.
    pub(crate) committed: (u64, u64),
    /// Deliveries leased while the batch being written removed them from the state: its
    /// commit drops their leases, and if it fails they are given back (nobody holds them).
    pub(crate) orphans: Vec<u64>,
}

/// State shared by the writer thread and the store handles.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) core: Mutex<Core>,
    pub(crate) commits: AtomicU64,
    pub(crate) checkpoints: AtomicU64,
    /// Writes refused because the store was failing.
    pub(crate) refused: AtomicU64,
    /// Times the store started failing.
    pub(crate) outages: AtomicU64,
    /// True from a failed write or sync until the store has recovered.
    failing: AtomicBool,
    /// The error that started the failure, while failing.
    failure: Mutex<Option<Arc<dyn StdError + Send + Sync>>>,
}

impl Shared {
    /// Shared state starting from `core`.
    pub(crate) fn new(core: Core) -> Self {
        Shared {
            core: Mutex::new(core),
            ..Shared::default()
        }
    }

    pub(crate) fn core(&self) -> MutexGuard<'_, Core> {
        // The core is consistent after every statement that holds the lock, so a panic
        // elsewhere leaves it usable.
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
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
        }
    }

    /// The same reply, failed with `error`.
    fn failed(self, error: &dyn Fn() -> StoreError) -> Self {
        match self {
            Pending::Enqueue(reply, _) => Pending::Enqueue(reply, Err(error())),
            Pending::Unit(reply, _) => Pending::Unit(reply, Err(error())),
            Pending::Count(reply, _) => Pending::Count(reply, Err(error())),
            Pending::Found(reply, _) => Pending::Found(reply, Err(error())),
        }
    }
}

/// Where the log lives and how it is tuned.
pub(crate) struct Writer {
    dir: PathBuf,
    shared: Arc<Shared>,
    /// The log file appended to.
    file: Arc<File>,
    seq: u64,
    /// Where the next frame goes.
    end: u64,
    /// How much of the file the last successful sync covers.
    synced_end: u64,
    max_batch: usize,
    /// No checkpoint before the log is this long (unless the file system is short).
    compact_after: u64,
    /// Since when written outcomes wait for a sync, if any do.
    unsynced_since: Option<Instant>,
    /// How long they may wait.
    lazy_sync: Duration,
    /// No checkpoint before the log reaches this length (after a checkpoint: twice its
    /// length; after a failed one: `compact_after` more, or a quarter more when short).
    next_checkpoint_at: u64,
    /// The file's length: zeros from `end` to here.
    allocated: u64,
    /// Whether the file is extended ahead of its writes, as last seen.
    ahead: room::Ahead,
    /// Whether the file system had less than [`room::ROOMY`] free when last asked.
    short: bool,
    /// Set from a failed write or sync until writes work again.
    outage: Option<outage::Outage>,
    /// The last batch's buffer, reused.
    buf: Vec<u8>,
}

impl Writer {
    /// The writer of log file `seq`, whole up to `end` and `allocated` long, with the
    /// tuning of `options`.
    pub(crate) fn new(
        dir: PathBuf,
        shared: Arc<Shared>,
        (seq, file): (u64, Arc<File>),
        (end, allocated): (u64, u64),
        options: &super::EmbeddedOptions,
    ) -> Self {
        Writer {
            dir,
            shared,
            file,
            seq,
            end,
            synced_end: end,
            max_batch: options.max_batch,
            compact_after: options.compact_after,
            unsynced_since: None,
            lazy_sync: options.outcome_sync,
            next_checkpoint_at: 0,
            allocated,
            ahead: room::Ahead::SetAside,
            short: false,
            outage: None,
            buf: Vec::new(),
        }
    }

    pub(crate) fn run(mut self, ops: Receiver<Sent>) {
        loop {
            if self.outage.as_ref().is_some_and(outage::Outage::due) {
                self.retry();
                continue;
            }
            let wait = match (&self.outage, self.unsynced_since) {
                (Some(outage), _) => Some(outage.until_retry()),
                (None, Some(since)) => Some(self.lazy_sync.saturating_sub(since.elapsed())),
                (None, None) => None,
            };
            let next = match wait {
                None => ops.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(wait) => ops.recv_timeout(wait),
            };
            let first = match next {
                Ok(op) => op,
                Err(RecvTimeoutError::Timeout) => {
                    // While failing, the loop's next turn retries.
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
            if self.outage.is_some() {
                self.refuse(batch);
                continue;
            }
            self.commit(batch);
            self.maybe_checkpoint();
        }
        // Closing. A failing store gives up at once: an outcome it did not write only
        // means that delivery is attempted again after the restart.
        if self.outage.is_none() {
            self.sync_lazy();
        }
    }

    /// Syncs outcomes written without a sync.
    fn sync_lazy(&mut self) {
        if self.unsynced_since.take().is_none() {
            return;
        }
        match self.file.sync_data() {
            Ok(()) => {
                self.synced_end = self.end;
                self.shared.commits.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.fail(outage::Failure::io("sync", e, self.synced_end)),
        }
    }

    fn commit(&mut self, sent: Vec<Sent>) {
        let size = sent.len();
        let (batch, relays): (Vec<Op>, Vec<Option<Arc<Relay>>>) =
            sent.into_iter().map(|s| (s.op, s.relay)).unzip();
        let mut pending = Vec::with_capacity(size);
        let sync = batch.iter().any(|op| !op.is_lazy())
            || self
                .unsynced_since
                .is_some_and(|since| since.elapsed() >= self.lazy_sync);
        let mut frames = FrameBuf::reusing(std::mem::take(&mut self.buf), self.seq, self.end);
        let mut effects = Vec::new();
        let mut unframed = None;
        {
            let mut guard = self.shared.core();
            let core = &mut *guard;
            let mut b = Batch {
                state: &mut core.state,
                frames: &mut frames,
                effects: &mut effects,
            };
            let mut purge_at: Option<i64> = None;
            for op in batch {
                pending.push(match op {
                    Op::Enqueue {
                        dedupe,
                        batch,
                        now_ms,
                        reply,
                    } => {
                        purge_at = Some(purge_at.map_or(now_ms, |at| at.max(now_ms)));
                        Pending::Enqueue(reply, b.enqueue(dedupe, &batch, now_ms))
                    }
                    Op::EnqueueDeadLetter {
                        dedupe,
                        delivery,
                        reason,
                        now_ms,
                        reply,
                    } => {
                        purge_at = Some(purge_at.map_or(now_ms, |at| at.max(now_ms)));
                        let result = b.enqueue_dead_letter(dedupe, &delivery, &reason, now_ms);
                        Pending::Enqueue(reply, result)
                    }
                    Op::Complete { id, reply } => Pending::Unit(reply, b.complete(id)),
                    Op::Reschedule {
                        id,
                        not_before_ms,
                        attempts,
                        error,
                        reply,
                    } => Pending::Unit(
                        reply,
                        b.reschedule(id, not_before_ms, attempts, error.as_deref()),
                    ),
                    Op::DeadLetter {
                        id,
                        reason,
                        status,
                        response,
                        now_ms,
                        reply,
                    } => {
                        let response = response.map(|text| truncate(text, MAX_RESPONSE_BYTES));
                        let result = b
                            .bury(&[id], &reason, status, response.as_deref(), now_ms)
                            .map(drop);
                        Pending::Unit(reply, result)
                    }
                    Op::DeadLetterEndpoint {
                        endpoint,
                        reason,
                        now_ms,
                        reply,
                    } => {
                        let mut ids: Vec<u64> = b
                            .state
                            .queued
                            .iter()
                            .filter(|(_, entry)| *entry.endpoint == *endpoint)
                            .map(|(&id, _)| id)
                            .collect();
                        ids.sort_unstable();
                        Pending::Count(reply, b.bury(&ids, &reason, None, None, now_ms))
                    }
                    Op::Replay { id, now_ms, reply } => {
                        Pending::Found(reply, b.replay(&[id], now_ms).map(|n| n > 0))
                    }
                    Op::DeleteDeadLetter { id, reply } => {
                        Pending::Found(reply, b.discard(&[id]).map(|n| n > 0))
                    }
                    Op::ReplayEndpoint {
                        endpoint,
                        now_ms,
                        reply,
                    } => {
                        let ids: Vec<u64> = b
                            .state
                            .dead
                            .iter()
                            .filter(|(_, grave)| *grave.entry.endpoint == *endpoint)
                            .map(|(&id, _)| id)
                            .collect();
                        Pending::Count(reply, b.replay(&ids, now_ms))
                    }
                    Op::RetryNow {
                        endpoint,
                        now_ms,
                        reply,
                    } => Pending::Count(reply, b.retry_now(&endpoint, now_ms, &core.index)),
                    Op::FirstUse {
                        key,
                        ttl,
                        now_ms,
                        reply,
                    } => {
                        purge_at = Some(purge_at.map_or(now_ms, |at| at.max(now_ms)));
                        Pending::Found(reply, b.first_use(&key, ttl, now_ms))
                    }
                    Op::ForgetUse { key, reply } => Pending::Unit(reply, b.forget_use(&key)),
                });
            }
            if let Some(now_ms) = purge_at {
                b.state.purge(now_ms);
            }
            if let Err(e) = frames.end() {
                unframed = Some(e);
            }
        }
        let written = match unframed {
            // Nothing written, but the state has the batch: it is read back all the same.
            Some(e) => Err(outage::Failure::unframed(e, self.end)),
            None => self.append(&frames, sync),
        };
        let end = frames.end_offset();
        self.buf = frames.into_buf();
        if self.buf.capacity() > KEEP_BUFFER {
            // One unusually large batch does not pin its memory.
            self.buf = Vec::new();
        }
        match written {
            Ok(wrote) => {
                if wrote {
                    self.end = end;
                    if sync {
                        self.unsynced_since = None;
                        self.synced_end = end;
                        self.shared.commits.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.unsynced_since.get_or_insert_with(Instant::now);
                    }
                    tracing::trace!(ops = size, sync, "store group commit");
                }
                {
                    let mut core = self.shared.core();
                    core.committed = (self.seq, self.end);
                    core.index.apply(effects);
                    core.orphans.clear();
                }
                relay::answer(pending.into_iter().zip(relays));
            }
            Err(failure) => {
                // Failing before the callers hear of it: a caller that checks the store's
                // health once answered finds it failing.
                let make = failure.answers();
                self.fail(failure);
                relay::answer(pending.into_iter().map(|p| p.failed(&make)).zip(relays));
            }
        }
    }

    /// Writes the frames and, when `sync`, syncs the file (and with it every earlier
    /// write); false when there was nothing to write.
    fn append(&mut self, frames: &FrameBuf, sync: bool) -> Result<bool, outage::Failure> {
        let bytes = frames.bytes();
        if bytes.is_empty() {
            return Ok(false);
        }
        let needed = self.end + bytes.len() as u64;
        if needed > self.allocated {
            // Written before the frames and synced with them: the file grows once per
            // PREALLOCATE, and the syncs in between only write data.
            self.set_aside(needed);
        }
        self.file
            .write_all_at(bytes, self.end)
            .map_err(|e| outage::Failure::io("write", e, self.end))?;
        if sync {
            self.file
                .sync_data()
                .map_err(|e| outage::Failure::io("sync", e, self.synced_end))?;
        }
        Ok(true)
    }

    fn maybe_checkpoint(&mut self) {
        if self.outage.is_some() {
            return;
        }
        // On a file system short of space, whatever the log's length (but not for the
        // first few bytes), and once it is twice what is live rather than four times.
        let (floor, times) = if self.short {
            (self.compact_after.min(SHORT_COMPACT_FLOOR), 2)
        } else {
            (self.compact_after, 4)
        };
        if self.end < floor.max(self.next_checkpoint_at) {
            return;
        }
        let live = self.shared.core().state.live_bytes();
        if self.end < live.saturating_mul(times) {
            return;
        }
        let before = self.end;
        match self.checkpoint() {
            Ok(()) => {
                tracing::debug!(before, after = self.end, "store log compacted");
            }
            Err(CheckpointError {
                error,
                renamed: true,
            }) => {
                // The new file is in place and the old one still in use: the next open
                // would take the new one and miss what is written from now on. Until the
                // new file is removed again, nothing is written.
                let path = log_path(&self.dir, self.seq + 1);
                self.fail(outage::Failure::renamed(error, path));
            }
            Err(CheckpointError { error, .. }) => {
                // The old file stays in use: nothing is lost, the log keeps growing until
                // it is tried again.
                tracing::warn!(error = %error, "store checkpoint failed; the log grows until the next try");
                let more = if self.short {
                    (self.end / 4).max(SHORT_COMPACT_FLOOR)
                } else {
                    self.compact_after.max(PREALLOCATE)
                };
                self.next_checkpoint_at = self.end.saturating_add(more);
            }
        }
    }

    /// Rewrites the log with what is live, and switches to it.
    fn checkpoint(&mut self) -> Result<(), CheckpointError> {
        let snapshot = Snapshot::of(&self.shared.core().state);
        let seq = self.seq + 1;
        let written = write_checkpoint(&self.dir, seq, &snapshot, Some((self.seq, &self.file)))?;
        let old = (self.seq, log_path(&self.dir, self.seq));
        {
            let mut core = self.shared.core();
            core.state.relocate(&written.moved);
            core.committed = (seq, written.end);
            core.files.insert(seq, Arc::clone(&written.file));
            // Readers holding the old file keep reading it: it is only unlinked.
            core.files.remove(&old.0);
        }
        self.file = written.file;
        self.seq = seq;
        self.end = written.end;
        self.synced_end = written.end;
        self.allocated = written.end;
        // The checkpoint holds (synced) everything the old file said.
        self.unsynced_since = None;
        if let Err(e) = std::fs::remove_file(&old.1) {
            tracing::warn!(path = %old.1.display(), error = %e, "cannot remove the old store log");
        }
        self.shared.checkpoints.fetch_add(1, Ordering::Relaxed);
        // However wrong the estimate of what is live, the log at least doubles between
        // two checkpoints.
        self.next_checkpoint_at = self.end.saturating_mul(2);
        Ok(())
    }
}

fn pending_of(op: Op) -> Pending {
    // The results are replaced by the failure before they are sent.
    match op {
        Op::Enqueue { reply, .. } | Op::EnqueueDeadLetter { reply, .. } => {
            Pending::Enqueue(reply, Err(StoreError::WriterStopped))
        }
        Op::Complete { reply, .. }
        | Op::Reschedule { reply, .. }
        | Op::DeadLetter { reply, .. }
        | Op::ForgetUse { reply, .. } => Pending::Unit(reply, Err(StoreError::WriterStopped)),
        Op::DeadLetterEndpoint { reply, .. }
        | Op::ReplayEndpoint { reply, .. }
        | Op::RetryNow { reply, .. } => Pending::Count(reply, Err(StoreError::WriterStopped)),
        Op::Replay { reply, .. }
        | Op::DeleteDeadLetter { reply, .. }
        | Op::FirstUse { reply, .. } => Pending::Found(reply, Err(StoreError::WriterStopped)),
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
