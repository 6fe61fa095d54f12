//! A failed write or sync, and what the writer does until writes work again.
//!
//! The writer applies each op to the state as it frames the op's records, so that later
//! ops of a batch see earlier ones; when the batch's write or sync fails, the state is
//! ahead of the file. Two designs can undo that: stage every batch against a copy (or an
//! overlay) of the state and apply it only once written, or bring the state back in line
//! with the file after a failure. The writer does the second: the log is cut back to what
//! is known to be whole, and the state is read back from the file by the same code that
//! reads it at open (`recover::read_back`), with the leases workers hold kept. Failures
//! are rare, so the path every batch takes stays one pass with no copy, and the state
//! after a failure is by construction what a reopen would read.
//!
//! Where the log is cut: after a failed write, before the failed batch (the outcomes
//! written before it are synced then); after a failed sync, at the end of the last
//! successful sync, since what a failed sync covered may not be on the disk whatever a
//! later sync says. So an outcome written but not yet synced (see [`Op::is_lazy`]) can be
//! cut off: its delivery is queued again and attempted again, with the same `webhook-id`,
//! as after a power loss. Everything else was answered only after its sync succeeded, so
//! nothing acknowledged is cut off, and no op of the failed batch is reported committed.
//!
//! Every op of the failed batch fails with [`StoreError::Backend`]. From then on, until
//! the store has recovered, every write is refused at once with
//! [`StoreError::Recovering`] (by the caller's handle, or by the writer for ops already
//! sent), and counted; nothing queues up behind the failure. `health` reports
//! [`Shared::refusal`] meanwhile.
//!
//! The writer retries by itself: at once, then after 50 ms, doubling up to 2 s. A retry
//! repairs what is still to repair (the log cut back and read back, and if that fails,
//! cut back to the last successful sync next time; or a checkpoint renamed into place
//! before its directory sync failed, removed again); when the disk or the quota was full,
//! compacts the log if that frees a quarter of it at least and a checkpoint of what is
//! live fits in the free space; then writes [`PROBE`] zeros past the end of the log and
//! syncs them. When that succeeds the store takes writes again, and the zeros are space
//! set aside for the next ones.
//!
//! One line is logged when the store starts failing (with the error), and one when it
//! recovers (how long it was down, how many writes it refused); the retries in between
//! only at debug level.
//!
//! [`Op::is_lazy`]: super::Op::is_lazy
//! [`Shared::refusal`]: super::Shared::refusal

use super::super::checkpoint::{CheckpointError, sync_dir};
use super::super::log::log_path;
use super::super::recover::read_back;
use super::super::relay;
use super::room::{free_space, is_no_space};
use super::{Sent, Writer, pending_of};
use crate::StoreError;
use std::error::Error as StdError;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The wait before the second retry; it doubles after each failed one.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// The longest wait between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Zeros a retry writes past the end of the log and syncs: writes work again once this
/// succeeds, and the zeros are kept as space set aside for the next batches.
const PROBE: u64 = 256 << 10;

/// A write, sync or encoding of the log that failed.
pub(crate) struct Failure {
    op: &'static str,
    source: Arc<dyn StdError + Send + Sync>,
    /// What makes the state and the file agree again.
    repair: Repair,
    /// The disk or the quota was full.
    no_space: bool,
}

impl Failure {
    /// I/O `op` failed with `error`; the file is known whole and synced (or about to be)
    /// up to `keep`.
    pub(crate) fn io(op: &'static str, error: io::Error, keep: u64) -> Self {
        Failure {
            op,
            no_space: is_no_space(&error),
            source: Arc::new(error),
            repair: Repair::CutBack(keep),
        }
    }

    /// The batch could not be framed: nothing was written past `end`, but the state has
    /// the batch.
    pub(crate) fn unframed(error: StoreError, end: u64) -> Self {
        Failure {
            op: "encode",
            no_space: false,
            source: Arc::new(error),
            repair: Repair::CutBack(end),
        }
    }

    /// A checkpoint was renamed into place at `path`, then the directory sync failed.
    pub(crate) fn renamed(error: StoreError, path: PathBuf) -> Self {
        Failure {
            op: "checkpoint",
            no_space: false,
            source: Arc::new(error),
            repair: Repair::Unrename(path),
        }
    }

    /// What each op of the failed batch is answered.
    pub(crate) fn answers(&self) -> impl Fn() -> StoreError + use<> {
        let (op, source) = (self.op, Arc::clone(&self.source));
        move || StoreError::Backend {
            op,
            source: Arc::clone(&source),
        }
    }
}

/// What makes the state and the file agree again after a failure.
#[derive(Debug)]
enum Repair {
    /// Cut the log back to this length and read the state back from it.
    CutBack(u64),
    /// Remove the checkpoint renamed into place here (its directory sync failed): the
    /// log in use is the old one, and the next open must find it the newest.
    Unrename(PathBuf),
}

/// The store is failing: since when, and what the next retry does.
pub(crate) struct Outage {
    since: Instant,
    source: Arc<dyn StdError + Send + Sync>,
    /// The refused count when it started.
    refused_before: u64,
    backoff: Duration,
    next_try: Instant,
    repair: Option<Repair>,
    no_space: bool,
}

impl Outage {
    /// Whether the next retry is due.
    pub(crate) fn due(&self) -> bool {
        Instant::now() >= self.next_try
    }

    /// How long until the next retry.
    pub(crate) fn until_retry(&self) -> Duration {
        self.next_try.saturating_duration_since(Instant::now())
    }
}

impl Writer {
    /// Starts refusing writes after `failure`; the first retry (which repairs the log and
    /// the state) is due at once.
    pub(super) fn fail(&mut self, failure: Failure) {
        // What was written and waits for a sync is the repair's to keep or cut.
        self.unsynced_since = None;
        tracing::error!(
            op = failure.op,
            error = %failure.source,
            "store write failed: writes are refused until a retry succeeds"
        );
        self.shared.start_failing(Arc::clone(&failure.source));
        let now = Instant::now();
        self.outage = Some(Outage {
            since: now,
            source: failure.source,
            refused_before: self.shared.refused.load(Ordering::Relaxed),
            backoff: FIRST_BACKOFF,
            next_try: now,
            repair: Some(failure.repair),
            no_space: failure.no_space,
        });
    }

    /// Answers every op of `sent` with [`StoreError::Recovering`], counted as refused.
    pub(super) fn refuse(&self, sent: Vec<Sent>) {
        let Some(outage) = &self.outage else {
            return;
        };
        self.shared
            .refused
            .fetch_add(sent.len() as u64, Ordering::Relaxed);
        let make = || StoreError::Recovering {
            source: Arc::clone(&outage.source),
        };
        relay::answer(
            sent.into_iter()
                .map(|s| (pending_of(s.op).failed(&make), s.relay)),
        );
    }

    /// One retry; writes are taken again when it succeeds.
    pub(super) fn retry(&mut self) {
        let Some(mut outage) = self.outage.take() else {
            return;
        };
        match self.recover(&mut outage) {
            Ok(()) => {
                self.shared.stop_failing();
                let refused = self
                    .shared
                    .refused
                    .load(Ordering::Relaxed)
                    .saturating_sub(outage.refused_before);
                tracing::info!(
                    down = ?outage.since.elapsed(),
                    refused,
                    "store writes work again"
                );
            }
            Err(error) => {
                tracing::debug!(error = %error, retry_in = ?outage.backoff, "store still failing");
                outage.next_try = Instant::now() + outage.backoff;
                outage.backoff = (outage.backoff * 2).min(MAX_BACKOFF);
                self.outage = Some(outage);
            }
        }
    }

    /// Repairs, makes room, probes.
    fn recover(&mut self, outage: &mut Outage) -> Result<(), StoreError> {
        if let Some(repair) = outage.repair.take()
            && let Err((error, again)) = self.repair(repair)
        {
            outage.repair = Some(again);
            return Err(error);
        }
        if outage.no_space {
            self.compact_for_room(outage)?;
        }
        self.probe(outage)
    }

    /// Makes the state and the file agree again; on failure, what to repair next time.
    fn repair(&mut self, repair: Repair) -> Result<(), (StoreError, Repair)> {
        match repair {
            Repair::CutBack(keep) => self.cut_back(keep).map_err(|error| {
                // Whatever failed (the sync included), the next try trusts only what a
                // sync covered.
                (error, Repair::CutBack(keep.min(self.synced_end)))
            }),
            Repair::Unrename(path) => {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err((
                            StoreError::backend("remove a checkpoint", e),
                            Repair::Unrename(path),
                        ));
                    }
                }
                sync_dir(&self.dir).map_err(|e| {
                    (
                        StoreError::backend("sync the store directory", e),
                        Repair::Unrename(path),
                    )
                })
            }
        }
    }

    /// Cuts the log back to `keep`, syncs it, and reads the state back from it.
    fn cut_back(&mut self, keep: u64) -> Result<(), StoreError> {
        self.file
            .set_len(keep)
            .map_err(|e| StoreError::backend("cut back", e))?;
        self.allocated = keep;
        self.file
            .sync_data()
            .map_err(|e| StoreError::backend("sync", e))?;
        let path = log_path(&self.dir, self.seq);
        let (mut state, scanned) = read_back(&path, &self.file, self.seq)?;
        let end = scanned.valid_end;
        {
            let mut guard = self.shared.core();
            let core = &mut *guard;
            // Ids are never handed out twice, not even those of a batch that failed.
            state.next_id = state.next_id.max(core.state.next_id);
            let orphans = std::mem::take(&mut core.orphans);
            let queued = state
                .queued
                .iter()
                .map(|(&id, entry)| (id, Arc::clone(&entry.endpoint), entry.not_before_ms));
            core.index.rebuild(queued, &orphans);
            core.state = state;
            core.committed = (self.seq, end);
        }
        self.end = end;
        self.synced_end = end;
        Ok(())
    }

    /// After the disk or the quota filled up: a checkpoint when what is live is at most
    /// three quarters of the log and fits in the free space, so the log shrinks. One that
    /// does not fit is not tried (it would only be written and removed again).
    fn compact_for_room(&mut self, outage: &mut Outage) -> Result<(), StoreError> {
        let live = self.shared.core().state.live_bytes();
        if live.saturating_mul(4) > self.end.saturating_mul(3) {
            return Ok(());
        }
        let needs = live.saturating_add(live / 8).saturating_add(64 << 10);
        if free_space(&self.file).is_some_and(|free| free < needs) {
            return Ok(());
        }
        let before = self.end;
        match self.checkpoint() {
            Ok(()) => {
                tracing::info!(before, after = self.end, "store log compacted to make room");
                Ok(())
            }
            Err(CheckpointError {
                error,
                renamed: true,
            }) => {
                outage.repair = Some(Repair::Unrename(log_path(&self.dir, self.seq + 1)));
                Err(error)
            }
            Err(CheckpointError { error, .. }) => {
                tracing::debug!(error = %error, "no room for a checkpoint yet");
                Ok(())
            }
        }
    }

    /// Writes [`PROBE`] zeros past the end of the log and syncs them.
    fn probe(&mut self, outage: &mut Outage) -> Result<(), StoreError> {
        let length = self.allocated.max(self.end);
        let zeros = vec![0; PROBE as usize];
        if let Err(e) = self.file.write_all_at(&zeros, self.end) {
            outage.no_space |= is_no_space(&e);
            // Whatever it took is given back.
            if self.file.set_len(length).is_ok() {
                self.allocated = length;
            }
            return Err(StoreError::backend("write", e));
        }
        self.allocated = length.max(self.end + PROBE);
        if let Err(e) = self.file.sync_data() {
            outage.no_space |= is_no_space(&e);
            // What this sync covered may not be on the disk, outcomes written before the
            // failure included: only what an earlier sync covered is kept.
            outage.repair = Some(Repair::CutBack(self.synced_end));
            return Err(StoreError::backend("sync", e));
        }
        self.synced_end = self.end;
        Ok(())
    }
}
