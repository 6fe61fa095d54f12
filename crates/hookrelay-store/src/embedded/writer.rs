//! The writer thread: group commit onto the log, and checkpoints.
//!
//! Callers send an [`Op`] with a oneshot reply. The thread takes the first op, drains
//! whatever else is already waiting (up to `max_batch`), turns each op into records
//! (deciding its outcome against the state, which it updates as it goes, so later ops of
//! the batch see earlier ones), appends them to the log in one write, makes that durable
//! with one `fdatasync`, then updates the queue index, wakes workers and answers every
//! caller. A failed write or sync fails every op of the batch and every later one: the
//! state may be ahead of the file, so the store must be reopened (which rebuilds it from
//! the file).
//!
//! An op decides whether it can proceed before it appends anything, so an op that fails on
//! its own leaves the log clean and the other ops of the batch still commit. Each op's
//! records go into one frame, so after a crash an op is either all there or not at all.
//!
//! When the log has grown past `compact_after` and to four times what is live, the thread
//! writes a checkpoint: a new log file holding only the live state (queued deliveries with
//! their bodies, dead letters, live dedupe keys, the next id), made durable and renamed
//! into place before the old file is removed.

use super::index::{Effect, Index};
use super::log::{self, FrameBuf, Loc, MAGIC};
use super::relay::{self, Relay};
use super::state::{Entry, Grave, Rec, State};
use crate::types::truncate;
use crate::{DeliveryId, EnqueueOutcome, MAX_RESPONSE_BYTES, NewDelivery, StoreError};
use std::collections::HashMap;
use std::error::Error as StdError;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::oneshot;
use xxhash_rust::xxh3::xxh3_128;

/// The batch buffer is kept for the next batch up to this size (reusing it spares the
/// kernel zeroing fresh pages for every batch).
const KEEP_BUFFER: usize = 16 << 20;

/// A frame is closed (between two ops) once it holds this much.
const FRAME_SOFT_MAX: usize = 64 << 20;

/// A checkpoint is written out in pieces of about this size.
const CHECKPOINT_CHUNK: usize = 8 << 20;

/// Dedupe keys per `Keys` record of a checkpoint.
const KEYS_PER_RECORD: usize = 4096;

/// The log file is extended with zeros this much ahead of the writes, so that a sync
/// writes the appended data only, not the file's size as well.
const PREALLOCATE: u64 = 16 << 20;

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
    ReplayEndpoint {
        endpoint: String,
        now_ms: i64,
        reply: Reply<u64>,
    },
}

impl Op {
    /// A delivery's outcome: written at once, synced with the next durable write or
    /// within [`LAZY_SYNC`]. A crash of the process keeps it (it is in the file); only a
    /// power loss in that window can lose it, and then the delivery is attempted again
    /// (same `webhook-id`), which at-least-once delivery allows. Everything else
    /// (enqueues, replays, a removed endpoint's dead letters) is synced before it is
    /// answered.
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
}

/// State shared by the writer thread and the store handles.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) core: Mutex<Core>,
    pub(crate) commits: AtomicU64,
    pub(crate) checkpoints: AtomicU64,
    /// Set when a write failed: the store refuses writes until reopened.
    pub(crate) failed: Mutex<Option<Arc<dyn StdError + Send + Sync>>>,
}

impl Shared {
    pub(crate) fn core(&self) -> MutexGuard<'_, Core> {
        // The core is consistent after every statement that holds the lock, so a panic
        // elsewhere leaves it usable.
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn failure(&self) -> Option<Arc<dyn StdError + Send + Sync>> {
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn fail(&self, error: Arc<dyn StdError + Send + Sync>) {
        *self.failed.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
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

/// One batch being turned into records.
struct Batch<'a> {
    state: &'a mut State,
    frames: &'a mut FrameBuf,
    effects: &'a mut Vec<Effect>,
}

impl Batch<'_> {
    /// Appends `recs` (with their tails) as one op: all of them or, on error, none. Applies
    /// them to the state once all are encoded.
    fn log(&mut self, recs: &[(Rec<'_>, &[u8])]) -> Result<(), StoreError> {
        self.frames.begin();
        let mark = self.frames.mark();
        let mut locs = Vec::with_capacity(recs.len());
        for (rec, tail) in recs {
            match self.frames.push(rec, tail) {
                Ok(loc) => locs.push(loc),
                Err(e) => {
                    self.frames.rollback(mark);
                    return Err(e);
                }
            }
        }
        if self.frames.frame_len() > u32::MAX as usize {
            self.frames.rollback(mark);
            return Err(StoreError::backend(
                "encode",
                std::io::Error::other("one operation longer than 4 GiB"),
            ));
        }
        for ((rec, _), loc) in recs.iter().zip(locs) {
            self.state.apply(rec, loc);
        }
        if self.frames.frame_len() > FRAME_SOFT_MAX {
            // Cannot fail: the frame was checked to fit above.
            self.frames.end()?;
        }
        Ok(())
    }

    fn enqueue(
        &mut self,
        dedupe: Option<(String, Duration)>,
        batch: &[NewDelivery],
        now_ms: i64,
    ) -> Result<EnqueueOutcome, StoreError> {
        let key = dedupe.as_ref().map(|(key, window)| {
            let window = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
            (xxh3_128(key.as_bytes()), now_ms.saturating_add(window))
        });
        if let Some((hash, _)) = key
            && self.state.dedupe_expiry(hash).is_some_and(|e| e > now_ms)
        {
            return Ok(EnqueueOutcome::Duplicate);
        }
        let first = self.state.next_id;
        let exhausted = || {
            StoreError::backend(
                "allocate id",
                std::io::Error::other("delivery ids exhausted"),
            )
        };
        first
            .checked_add(batch.len() as u64)
            .ok_or_else(exhausted)?;
        let mut recs = Vec::with_capacity(batch.len() + 1);
        for (n, new) in batch.iter().enumerate() {
            recs.push((
                Rec::Put {
                    id: first + n as u64,
                    endpoint: &new.endpoint,
                    not_before_ms: now_ms,
                    attempts: 0,
                    webhook_id: &new.webhook_id,
                    created_at_ms: new.created_at_ms,
                    last_error: None,
                },
                &new.body[..],
            ));
        }
        if let Some((hash, expires_ms)) = key {
            recs.push((
                Rec::Dedupe {
                    key: hash,
                    expires_ms,
                },
                &[][..],
            ));
        }
        self.log(&recs)?;
        let ids: Vec<DeliveryId> = (0..batch.len() as u64)
            .map(|n| DeliveryId(first + n))
            .collect();
        for (new, id) in batch.iter().zip(&ids) {
            self.effects.push(Effect::Queued {
                endpoint: self.state.intern(&new.endpoint),
                id: id.0,
                not_before: now_ms,
                wake: true,
            });
        }
        Ok(EnqueueOutcome::Enqueued(ids))
    }

    /// The queued delivery `id`: its endpoint and when it was due.
    fn queued(&self, id: u64) -> Result<(Arc<str>, i64), StoreError> {
        self.state
            .queued
            .get(&id)
            .map(|entry| (Arc::clone(&entry.endpoint), entry.not_before_ms))
            .ok_or(StoreError::UnknownDelivery { id: DeliveryId(id) })
    }

    fn complete(&mut self, id: u64) -> Result<(), StoreError> {
        let (endpoint, not_before) = self.queued(id)?;
        self.log(&[(Rec::Complete { id }, &[])])?;
        self.effects.push(Effect::Removed {
            endpoint,
            id,
            not_before,
        });
        Ok(())
    }

    fn reschedule(
        &mut self,
        id: u64,
        not_before_ms: i64,
        attempts: u32,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let (endpoint, not_before) = self.queued(id)?;
        let rec = Rec::Reschedule {
            id,
            not_before_ms,
            attempts,
            error,
        };
        self.log(&[(rec, &[])])?;
        self.effects.push(Effect::Removed {
            endpoint: endpoint.clone(),
            id,
            not_before,
        });
        self.effects.push(Effect::Queued {
            endpoint,
            id,
            not_before: not_before_ms,
            wake: false,
        });
        Ok(())
    }

    fn bury(
        &mut self,
        ids: &[u64],
        reason: &str,
        status: Option<u16>,
        response: Option<&str>,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let mut removed = Vec::with_capacity(ids.len());
        for &id in ids {
            removed.push((id, self.queued(id)?));
        }
        let recs: Vec<(Rec<'_>, &[u8])> = ids
            .iter()
            .map(|&id| {
                let rec = Rec::Bury {
                    id,
                    reason,
                    status,
                    response,
                    dead_at_ms: now_ms,
                };
                (rec, &[][..])
            })
            .collect();
        self.log(&recs)?;
        for (id, (endpoint, not_before)) in removed {
            self.effects.push(Effect::Removed {
                endpoint,
                id,
                not_before,
            });
        }
        Ok(ids.len() as u64)
    }

    fn replay(&mut self, ids: &[u64], at_ms: i64) -> Result<u64, StoreError> {
        let found: Vec<(u64, Arc<str>)> = ids
            .iter()
            .filter_map(|id| {
                let grave = self.state.dead.get(id)?;
                Some((*id, Arc::clone(&grave.entry.endpoint)))
            })
            .collect();
        let recs: Vec<(Rec<'_>, &[u8])> = found
            .iter()
            .map(|&(id, _)| (Rec::Replay { id, at_ms }, &[][..]))
            .collect();
        self.log(&recs)?;
        let count = found.len() as u64;
        for (id, endpoint) in found {
            self.effects.push(Effect::Queued {
                endpoint,
                id,
                not_before: 0,
                wake: true,
            });
        }
        Ok(count)
    }
}

/// Where the log lives and how it is tuned.
pub(crate) struct Writer {
    pub(crate) dir: PathBuf,
    pub(crate) shared: Arc<Shared>,
    /// The log file appended to.
    pub(crate) file: Arc<File>,
    pub(crate) seq: u64,
    /// Where the next frame goes.
    pub(crate) end: u64,
    pub(crate) max_batch: usize,
    /// No checkpoint before the log is this long.
    pub(crate) compact_after: u64,
    /// Since when written outcomes wait for a sync, if any do.
    pub(crate) unsynced_since: Option<std::time::Instant>,
    /// How long they may wait.
    pub(crate) lazy_sync: Duration,
    /// No checkpoint before the log reaches this length (after a checkpoint: twice its
    /// length; after a failed one: `compact_after` more).
    pub(crate) next_checkpoint_at: u64,
    /// The file's length: zeros from `end` to here.
    pub(crate) allocated: u64,
    /// The last batch's buffer, reused.
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn run(mut self, ops: Receiver<Sent>) {
        loop {
            let next = match self.unsynced_since {
                None => ops.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(since) => ops.recv_timeout(self.lazy_sync.saturating_sub(since.elapsed())),
            };
            let first = match next {
                Ok(op) => op,
                Err(RecvTimeoutError::Timeout) => {
                    self.sync_lazy();
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
            self.commit(batch);
            self.maybe_checkpoint();
        }
        self.sync_lazy();
    }

    /// Syncs outcomes written without a sync.
    fn sync_lazy(&mut self) {
        if self.unsynced_since.take().is_none() {
            return;
        }
        // Also after a failed write: the outcomes written before it were acknowledged.
        match self.file.sync_data() {
            Ok(()) => {
                self.shared.commits.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) if self.shared.failure().is_none() => {
                tracing::error!(error = %e, "store sync failed; the store refuses writes until reopened");
                self.shared.fail(Arc::new(e));
            }
            Err(_) => {}
        }
    }

    fn commit(&mut self, sent: Vec<Sent>) {
        let size = sent.len();
        let (batch, relays): (Vec<Op>, Vec<Option<Arc<Relay>>>) =
            sent.into_iter().map(|s| (s.op, s.relay)).unzip();
        let mut pending = Vec::with_capacity(size);
        if let Some(source) = self.shared.failure() {
            for op in batch {
                pending.push(pending_of(op));
            }
            let make = || StoreError::Backend {
                op: "write",
                source: Arc::clone(&source),
            };
            relay::answer(pending.into_iter().map(|p| p.failed(&make)).zip(relays));
            return;
        }
        let sync = batch.iter().any(|op| !op.is_lazy())
            || self
                .unsynced_since
                .is_some_and(|since| since.elapsed() >= self.lazy_sync);
        let mut frames = FrameBuf::reusing(std::mem::take(&mut self.buf), self.seq, self.end);
        let mut effects = Vec::new();
        let mut fatal = None;
        {
            let mut core = self.shared.core();
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
                });
            }
            if let Some(now_ms) = purge_at {
                b.state.purge(now_ms);
            }
            if let Err(e) = frames.end() {
                fatal = Some(e);
            }
        }
        let written = match fatal {
            Some(e) => Err(e),
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
                        self.shared.commits.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.unsynced_since
                            .get_or_insert_with(std::time::Instant::now);
                    }
                    tracing::trace!(ops = size, sync, "store group commit");
                }
                {
                    let mut core = self.shared.core();
                    core.committed = (self.seq, self.end);
                    core.index.apply(effects);
                }
                relay::answer(pending.into_iter().zip(relays));
            }
            Err(error) => {
                tracing::error!(ops = size, error = %error, "store write failed; the store refuses writes until reopened");
                let source: Arc<dyn StdError + Send + Sync> = match &error {
                    StoreError::Backend { source, .. } => Arc::clone(source),
                    other => Arc::new(std::io::Error::other(other.to_string())),
                };
                self.shared.fail(Arc::clone(&source));
                let make = || StoreError::Backend {
                    op: "commit",
                    source: Arc::clone(&source),
                };
                relay::answer(pending.into_iter().map(|p| p.failed(&make)).zip(relays));
            }
        }
    }

    /// Writes the frames and, when `sync`, syncs the file (and with it every earlier
    /// write); false when there was nothing to write.
    fn append(&mut self, frames: &FrameBuf, sync: bool) -> Result<bool, StoreError> {
        let bytes = frames.bytes();
        if bytes.is_empty() {
            return Ok(false);
        }
        let needed = self.end + bytes.len() as u64;
        if needed > self.allocated {
            // Written before the frames and synced with them: the file grows once per
            // PREALLOCATE, and the syncs in between only write data.
            let target = needed + PREALLOCATE;
            let zeros = vec![0; 1 << 20];
            let mut at = self.allocated.max(self.end);
            while at < target {
                let n =
                    usize::try_from(target - at).map_or(zeros.len(), |left| left.min(zeros.len()));
                if let Err(e) = self.file.write_all_at(&zeros[..n], at) {
                    // Not needed for the frames themselves (the disk may be nearly full):
                    // write them without the space set aside.
                    tracing::warn!(error = %e, "cannot set space aside in the store log");
                    break;
                }
                at += n as u64;
            }
            self.allocated = at;
        }
        self.file
            .write_all_at(bytes, self.end)
            .map_err(|e| StoreError::backend("write", e))?;
        if sync {
            self.file
                .sync_data()
                .map_err(|e| StoreError::backend("sync", e))?;
        }
        Ok(true)
    }

    fn maybe_checkpoint(&mut self) {
        if self.end < self.compact_after.max(self.next_checkpoint_at)
            || self.shared.failure().is_some()
        {
            return;
        }
        let live = self.shared.core().state.live_bytes();
        if self.end < live.saturating_mul(4) {
            return;
        }
        let before = self.end;
        match self.checkpoint() {
            Ok(()) => {
                self.shared.checkpoints.fetch_add(1, Ordering::Relaxed);
                // However wrong the estimate of what is live, the log at least doubles
                // between two checkpoints.
                self.next_checkpoint_at = self.end.saturating_mul(2);
                tracing::debug!(before, after = self.end, "store log compacted");
            }
            Err(CheckpointError { error, renamed }) => {
                if renamed {
                    // The new file is in place and the old one still in use: the next open
                    // would take the new one and miss what was written since. Stop.
                    tracing::error!(error = %error, "store checkpoint failed after its rename; the store refuses writes until reopened");
                    let source: Arc<dyn StdError + Send + Sync> =
                        Arc::new(std::io::Error::other(error.to_string()));
                    self.shared.fail(source);
                } else {
                    // The old file stays in use: nothing is lost, the log keeps growing
                    // until it is tried again.
                    tracing::error!(error = %error, "store checkpoint failed");
                    self.next_checkpoint_at =
                        self.end.saturating_add(self.compact_after.max(PREALLOCATE));
                }
            }
        }
    }

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
        self.allocated = written.end;
        // The checkpoint holds (synced) everything the old file said.
        self.unsynced_since = None;
        if let Err(e) = std::fs::remove_file(&old.1) {
            tracing::warn!(path = %old.1.display(), error = %e, "cannot remove the old store log");
        }
        Ok(())
    }
}

fn pending_of(op: Op) -> Pending {
    // The results are replaced by the failure before they are sent.
    match op {
        Op::Enqueue { reply, .. } => Pending::Enqueue(reply, Err(StoreError::WriterStopped)),
        Op::Complete { reply, .. }
        | Op::Reschedule { reply, .. }
        | Op::DeadLetter { reply, .. } => Pending::Unit(reply, Err(StoreError::WriterStopped)),
        Op::DeadLetterEndpoint { reply, .. } | Op::ReplayEndpoint { reply, .. } => {
            Pending::Count(reply, Err(StoreError::WriterStopped))
        }
        Op::Replay { reply, .. } => Pending::Found(reply, Err(StoreError::WriterStopped)),
    }
}

/// The log file with sequence number `seq`.
pub(crate) fn log_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.log"))
}

/// What a checkpoint writes, copied out of the state.
pub(crate) struct Snapshot {
    queued: Vec<(u64, Entry)>,
    dead: Vec<(u64, Grave)>,
    keys: Vec<(u128, i64)>,
    next_id: u64,
}

impl Snapshot {
    pub(crate) fn of(state: &State) -> Self {
        let mut queued: Vec<(u64, Entry)> = state
            .queued
            .iter()
            .map(|(&id, e)| (id, e.clone()))
            .collect();
        queued.sort_unstable_by_key(|(id, _)| *id);
        Snapshot {
            queued,
            dead: state.dead.iter().map(|(&id, g)| (id, g.clone())).collect(),
            keys: state.keys(),
            next_id: state.next_id,
        }
    }
}

/// A checkpoint made durable and renamed into place.
pub(crate) struct Written {
    pub(crate) file: Arc<File>,
    pub(crate) end: u64,
    /// Each delivery's `Put` in the new file.
    pub(crate) moved: Vec<(u64, Loc)>,
}

/// Syncs directory `dir` (a rename in it is durable after this).
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(test)]
    if FAIL_DIR_SYNC.load(Ordering::SeqCst) {
        return Err(std::io::Error::other("directory sync failed (test)"));
    }
    File::open(dir)?.sync_all()
}

/// Makes the next directory syncs fail, to test what follows.
#[cfg(test)]
pub(crate) static FAIL_DIR_SYNC: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// A checkpoint that failed, and whether its file was already renamed into place.
pub(crate) struct CheckpointError {
    pub(crate) error: StoreError,
    pub(crate) renamed: bool,
}

/// Writes log file `seq` holding `snapshot`, reading bodies from `old` (sequence number and
/// file), syncs it and renames it into place; the caller removes the old file.
pub(crate) fn write_checkpoint(
    dir: &Path,
    seq: u64,
    snapshot: &Snapshot,
    old: Option<(u64, &File)>,
) -> Result<Written, CheckpointError> {
    let path = log_path(dir, seq);
    let tmp = path.with_extension("log.tmp");
    let before = |error| CheckpointError {
        error,
        renamed: false,
    };
    let written = match write_checkpoint_file(&tmp, seq, snapshot, old) {
        Ok(written) => written,
        Err(error) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(before(error));
        }
    };
    if let Err(e) = std::fs::rename(&tmp, &path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(before(StoreError::backend("checkpoint rename", e)));
    }
    sync_dir(dir).map_err(|e| CheckpointError {
        error: StoreError::backend("checkpoint sync directory", e),
        renamed: true,
    })?;
    Ok(written)
}

fn write_checkpoint_file(
    tmp: &Path,
    seq: u64,
    snapshot: &Snapshot,
    old: Option<(u64, &File)>,
) -> Result<Written, StoreError> {
    let io = |op| move |e: std::io::Error| StoreError::backend(op, e);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)
        .map_err(io("checkpoint create"))?;
    file.write_all_at(MAGIC, 0)
        .map_err(io("checkpoint write"))?;
    let mut frames = FrameBuf::new(seq, MAGIC.len() as u64);
    let mut moved = Vec::with_capacity(snapshot.queued.len() + snapshot.dead.len());
    let flush = |frames: &mut FrameBuf, force: bool| -> Result<(), StoreError> {
        if force || frames.bytes().len() >= CHECKPOINT_CHUNK {
            frames.end()?;
            file.write_all_at(
                frames.bytes(),
                frames.end_offset() - frames.bytes().len() as u64,
            )
            .map_err(io("checkpoint write"))?;
            frames.advance();
        }
        if !force {
            frames.begin();
        }
        Ok(())
    };
    frames.begin();
    frames.push(&Rec::Checkpoint, &[])?;
    let copy = |frames: &mut FrameBuf, id: u64, entry: &Entry| -> Result<Loc, StoreError> {
        let Some((old_seq, old_file)) = old.filter(|(s, _)| *s == entry.put.seq) else {
            return Err(StoreError::backend(
                "checkpoint",
                std::io::Error::other(format!("delivery {id} is in no open log file")),
            ));
        };
        let record = log::read(old_file, entry.put).map_err(io("checkpoint read"))?;
        let put = decode_put(old_seq, entry.put, &record)?;
        frames.push(
            &Rec::Put {
                id,
                endpoint: &entry.endpoint,
                not_before_ms: entry.not_before_ms,
                attempts: entry.attempts,
                webhook_id: put.webhook_id,
                created_at_ms: entry.replayed_at_ms.unwrap_or(put.created_at_ms),
                last_error: entry.last_error.as_deref(),
            },
            put.body,
        )
    };
    for (id, entry) in &snapshot.queued {
        moved.push((*id, copy(&mut frames, *id, entry)?));
        flush(&mut frames, false)?;
    }
    for (id, grave) in &snapshot.dead {
        moved.push((*id, copy(&mut frames, *id, &grave.entry)?));
        let bury = Rec::Bury {
            id: *id,
            reason: &grave.reason,
            status: grave.status,
            response: grave.response.as_deref(),
            dead_at_ms: grave.dead_at_ms,
        };
        frames.push(&bury, &[])?;
        flush(&mut frames, false)?;
    }
    for keys in snapshot.keys.chunks(KEYS_PER_RECORD) {
        frames.push(&Rec::Keys(keys.to_vec()), &[])?;
        flush(&mut frames, false)?;
    }
    frames.push(&Rec::NextId(snapshot.next_id), &[])?;
    flush(&mut frames, true)?;
    let end = frames.end_offset();
    file.sync_data().map_err(io("checkpoint sync"))?;
    Ok(Written {
        file: Arc::new(file),
        end,
        moved,
    })
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

/// Rebuilds the index from the state at open: every queued delivery, none leased.
pub(crate) fn index_of(state: &State) -> Index {
    let mut index = Index::default();
    for (&id, entry) in &state.queued {
        index.insert(Arc::clone(&entry.endpoint), id, entry.not_before_ms);
    }
    index
}
