//! Checkpoints: the log rewritten with only what is live.
//!
//! A checkpoint is a new log file (the next sequence number) holding the live state as of
//! one moment, copied out of the state into a [`Snapshot`]: each queued delivery and dead
//! letter with its body (read back from the old file), the live dedupe keys and the next
//! id. It is written under a temporary name, synced, renamed into place and the directory
//! synced; the writer then switches to it and removes the old file. At open the same code
//! starts an empty store's first log file.

use super::log::{self, FrameBuf, Loc, MAGIC, log_path};
use super::state::{Entry, Grave, Rec, State, decode_put};
use crate::StoreError;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// A checkpoint is written out in pieces of about this size.
const CHECKPOINT_CHUNK: usize = 8 << 20;

/// Dedupe keys per `Keys` record of a checkpoint.
const KEYS_PER_RECORD: usize = 4096;

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
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(test)]
    if FAIL_DIR_SYNC.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(std::io::Error::other("directory sync failed (test)"));
    }
    File::open(dir)?.sync_all()
}

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

/// Makes the next directory syncs fail, to test what follows.
#[cfg(test)]
static FAIL_DIR_SYNC: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cfg(test)]
mod tests {
    use super::FAIL_DIR_SYNC;
    use crate::{EmbeddedOptions, EmbeddedStore, EnqueueOutcome, NewDelivery, StoreError};
    use bytes::Bytes;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    fn new(webhook_id: &str) -> NewDelivery {
        NewDelivery {
            endpoint: "crm".into(),
            webhook_id: webhook_id.into(),
            body: Bytes::from_static(b"{}"),
            created_at_ms: 0,
        }
    }

    #[tokio::test]
    async fn a_checkpoint_failing_after_its_rename_refuses_writes_until_undone_and_loses_nothing()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let options = EmbeddedOptions::default().compact_after(0);
        let mut expected = vec!["kept".to_owned(), "after".to_owned()];
        {
            let store = EmbeddedStore::open_with(dir.path(), options.clone())?;
            store.enqueue(None, vec![new("kept")], 0).await?;
            FAIL_DIR_SYNC.store(true, Ordering::SeqCst);
            // Enqueue and complete until a checkpoint is tried: it renames its file, then
            // fails to sync the directory.
            let mut acknowledged = 0;
            for i in 0..100 {
                let id = format!("x{i}");
                let Ok(EnqueueOutcome::Enqueued(ids)) =
                    store.enqueue(None, vec![new(&id)], 0).await
                else {
                    break;
                };
                acknowledged += 1;
                if store.complete(ids[0]).await.is_err() {
                    expected.push(id);
                    break;
                }
                if store.health().await.is_err() {
                    break;
                }
            }
            assert!(acknowledged > 0);
            // The new file cannot be removed durably while directory syncs fail.
            assert!(matches!(
                store.health().await,
                Err(StoreError::Recovering { .. })
            ));
            assert!(matches!(
                store.enqueue(None, vec![new("refused")], 0).await,
                Err(StoreError::Recovering { .. })
            ));
            FAIL_DIR_SYNC.store(false, Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(10);
            while store.health().await.is_err() {
                assert!(Instant::now() < deadline, "the store did not recover");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            store.enqueue(None, vec![new("after")], 0).await?;
            let stats = store.stats();
            assert_eq!(stats.outages, 1);
            assert!(stats.refused >= 1);
        }
        let store = EmbeddedStore::open_with(dir.path(), options)?;
        store.health().await?;
        let leased = store.lease("crm", 0, 200).await?;
        let mut ids: Vec<String> = leased.into_iter().map(|d| d.webhook_id).collect();
        ids.sort();
        expected.sort();
        assert_eq!(
            ids, expected,
            "what was acknowledged is there, nothing else"
        );
        Ok(())
    }
}
