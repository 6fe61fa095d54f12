//! The syncer thread: makes the journal durable while the writer goes on writing.
//!
//! The writer hands every batch to the OS at once (fjall's `Buffer` mode) and sends the
//! answers of a batch that must be durable to this thread. The syncer takes every job
//! waiting, syncs the journal once for all of them and then answers them: a group commit
//! whose `fdatasync` runs while the writer decides and writes the next batches, instead of
//! holding them up.
//!
//! fjall holds its journal's lock through a sync it does itself, which would stop the
//! writer's next commit, so the syncer syncs the journal file through a handle of its own:
//! the newest `<n>.jnl` in the database's directory, the one fjall writes to. fjall syncs a
//! journal in full before it rotates to the next one (`SyncAll`, then the directory), so
//! after a batch was written, syncing the newest journal file covers the batch: it is in
//! that file, or in one synced before it was created.
//!
//! A failed sync fails its jobs and every later job of the same epoch (the writer's count
//! of reopens): what was written after a failed sync cannot be trusted to reach the disk.
//! The writer learns of the failure through [`Shared::take_sync_failure`] and reopens the
//! database, which starts the next epoch.

use super::relay::{self, Relay};
use super::writer::{Pending, Shared};
use crate::StoreError;
use std::error::Error as StdError;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;

/// Answers held until the journal is synced.
pub(crate) type Answers = Vec<(Pending, Option<Arc<Relay>>)>;

/// What the writer asks of the syncer.
pub(crate) struct Job {
    /// The writer's reopen count when the batch was written.
    pub(crate) epoch: u64,
    /// The writer's count of batches handed to the OS, this one included: the sync covers
    /// every batch up to it.
    pub(crate) written: u64,
    /// Answered once it is synced.
    pub(crate) answers: Answers,
}

/// The syncer thread's state.
pub(crate) struct Syncer {
    /// The database's directory, which holds its journals.
    dir: PathBuf,
    shared: Arc<Shared>,
    /// The journal file synced last: its number and a handle of it.
    journal: Option<(u64, File)>,
    /// The epoch whose journal was found.
    epoch: u64,
    /// Every batch up to this count is synced.
    synced: u64,
    /// The latest epoch a sync failed in, with the error: its later jobs fail too.
    failed: Option<(u64, Arc<dyn StdError + Send + Sync>)>,
}

impl Syncer {
    /// A syncer of the journals in `dir` (fjall's database directory).
    pub(crate) fn new(dir: PathBuf, shared: Arc<Shared>) -> Self {
        Syncer {
            dir,
            shared,
            journal: None,
            epoch: 0,
            synced: 0,
            failed: None,
        }
    }

    /// Runs until the writer drops its end of `jobs`, having answered every job.
    pub(crate) fn run(mut self, jobs: Receiver<Job>) {
        while let Ok(first) = jobs.recv() {
            let mut taken = vec![first];
            taken.extend(jobs.try_iter());
            self.serve(taken);
        }
    }

    /// Syncs once for `jobs` and answers them.
    fn serve(&mut self, jobs: Vec<Job>) {
        let (stale, live): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|job| {
            self.failed
                .as_ref()
                .is_some_and(|(failed, _)| job.epoch <= *failed)
        });
        if let Some((_, error)) = &self.failed {
            fail(stale, &|| sync_error(error));
        }
        // Jobs of an epoch before a reopen are synced through the journal handle of their
        // epoch, before the handle of the next is opened (a handle opened after a failed
        // write-back would not report it).
        let mut live = live;
        live.sort_by_key(|job| job.epoch);
        while !live.is_empty() {
            let epoch = live[0].epoch;
            let split = live
                .iter()
                .position(|job| job.epoch != epoch)
                .unwrap_or(live.len());
            let rest = live.split_off(split);
            self.serve_epoch(epoch, live);
            live = rest;
        }
    }

    /// Syncs once for `jobs`, all of `epoch`, and answers them.
    fn serve_epoch(&mut self, epoch: u64, live: Vec<Job>) {
        if self
            .failed
            .as_ref()
            .is_some_and(|(failed, _)| epoch <= *failed)
        {
            if let Some((_, error)) = &self.failed {
                fail(live, &|| sync_error(error));
            }
            return;
        }
        let written = live.iter().map(|job| job.written).max().unwrap_or(0);
        if epoch != self.epoch {
            // The database was reopened: its journal is found anew.
            self.epoch = epoch;
            self.journal = None;
            self.synced = 0;
        }
        if written > self.synced {
            if let Err(error) = self.sync() {
                let error: Arc<dyn StdError + Send + Sync> = Arc::new(error);
                tracing::error!(error = %error, "store journal sync failed");
                self.shared.set_sync_failure(epoch, Arc::clone(&error));
                fail(live, &|| sync_error(&error));
                self.failed = Some((epoch, error));
                return;
            }
            self.synced = written;
            self.shared.commits.fetch_add(1, Ordering::Relaxed);
        }
        relay::answer(live.into_iter().flat_map(|job| job.answers));
    }

    /// `fdatasync` of the newest journal file.
    fn sync(&mut self) -> std::io::Result<()> {
        let file = self.newest()?;
        file.sync_data()
    }

    /// The newest journal file, following fjall's rotations since the last sync.
    fn newest(&mut self) -> std::io::Result<&File> {
        let mut number = match &self.journal {
            Some((number, _)) if journal_path(&self.dir, *number).exists() => *number,
            _ => {
                let number = newest_journal(&self.dir)?;
                self.journal = Some((number, File::open(journal_path(&self.dir, number))?));
                number
            }
        };
        while journal_path(&self.dir, number + 1).exists() {
            number += 1;
            self.journal = Some((number, File::open(journal_path(&self.dir, number))?));
        }
        match &self.journal {
            Some((_, file)) => Ok(file),
            None => Err(std::io::Error::other("no journal file")),
        }
    }
}

/// Fails every answer of `jobs` with `error` (unless it failed on its own).
fn fail(jobs: Vec<Job>, error: &dyn Fn() -> StoreError) {
    relay::answer(
        jobs.into_iter()
            .flat_map(|job| job.answers)
            .map(|(pending, relay)| (pending.failed(error), relay)),
    );
}

/// The error a job fails with after a failed sync.
fn sync_error(error: &Arc<dyn StdError + Send + Sync>) -> StoreError {
    StoreError::Backend {
        op: "sync",
        source: Arc::clone(error),
    }
}

/// The path of journal `number` in `dir`.
fn journal_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number}.jnl"))
}

/// The number of the newest journal in `dir`: the one fjall writes to.
pub(crate) fn newest_journal(dir: &Path) -> std::io::Result<u64> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let number = name
            .to_str()
            .and_then(|name| name.strip_suffix(".jnl"))
            .and_then(|number| number.parse::<u64>().ok());
        newest = newest.max(number);
    }
    newest.ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no journal in {}", dir.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::engine::Engine;
    use fjall::PersistMode;

    /// The syncer follows fjall's journal rotations: after a batch, the file it syncs is
    /// the newest journal, which holds that batch.
    #[test]
    fn the_synced_journal_is_the_newest_after_rotations() -> Result<(), Box<dyn StdError>> {
        let dir = tempfile::tempdir()?;
        let engine = Engine::open(dir.path())?;
        let mut syncer = Syncer::new(engine.path.clone(), Arc::new(Shared::default()));
        let first = newest_journal(&engine.path)?;
        syncer.sync()?;
        assert_eq!(syncer.journal.as_ref().map(|(n, _)| *n), Some(first));
        // fjall rotates its journal at a flush once the journal is past 64 MB.
        // Values that do not compress (the journal compresses).
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut noise = || {
            (0..1 << 17)
                .flat_map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state.to_le_bytes()
                })
                .collect::<Vec<u8>>()
        };
        for id in 0u64..80 {
            let mut batch = engine.db.batch();
            batch.insert(&engine.meta, id.to_be_bytes(), noise());
            batch.durability(Some(PersistMode::Buffer)).commit()?;
            if id % 8 == 7 {
                engine.meta.rotate_memtable_and_wait()?;
                syncer.sync()?;
                let newest = newest_journal(&engine.path)?;
                assert_eq!(syncer.journal.as_ref().map(|(n, _)| *n), Some(newest));
            }
        }
        assert!(
            newest_journal(&engine.path)? > first,
            "the journal was not rotated"
        );
        Ok(())
    }
}
