//! Recovery at open: the newest log file read back into the state and the index.
//!
//! The newest log file is the one in use: an older one is what a checkpoint replaced and
//! did not remove before a crash, and a `.log.tmp` an unfinished checkpoint; both are
//! removed. The records are applied in order; a damaged frame that intact frames follow is
//! skipped and reported, and a torn tail (a write the crash interrupted, never
//! acknowledged) is cut off. Leases are not logged, so none is held after recovery. The
//! writer reads its log back the same way when a write failed (see `writer`).

use super::checkpoint::{Snapshot, write_checkpoint};
use super::index::Index;
use super::log::{self, log_path};
use super::state;
use crate::StoreError;
use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::Arc;

/// Finds the newest log file, reads it back and cuts off a torn tail; starts a new log
/// when there is none. Older log files (a checkpoint that was not cleaned up) and
/// unfinished checkpoints are removed.
pub(crate) fn recover(dir: &Path) -> Result<(u64, Arc<File>, u64, state::State), StoreError> {
    let open_error = |e: std::io::Error| StoreError::Open {
        path: dir.to_owned(),
        source: Arc::new(e),
    };
    let mut logs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(open_error)? {
        let entry = entry.map_err(open_error)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".log.tmp") {
            std::fs::remove_file(entry.path()).map_err(open_error)?;
        } else if let Some(seq) = name
            .strip_suffix(".log")
            .and_then(|n| n.parse::<u64>().ok())
        {
            logs.push(seq);
        }
    }
    logs.sort_unstable();
    let Some(&seq) = logs.last() else {
        let empty = state::State::default();
        let written = write_checkpoint(dir, 1, &Snapshot::of(&empty), None).map_err(|e| e.error)?;
        return Ok((1, written.file, written.end, empty));
    };
    let path = log_path(dir, seq);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(open_error)?;
    let (state, scanned) = read_back(&path, &file, seq)?;
    // Zeros after the last frame are space the writer set aside, not a torn write.
    if scanned.torn > 0 && !log::zeros(&file, scanned.valid_end).map_err(open_error)? {
        tracing::warn!(
            path = %path.display(),
            bytes = scanned.torn,
            "cutting off an unfinished write at the end of the store log"
        );
        file.set_len(scanned.valid_end).map_err(open_error)?;
        file.sync_all().map_err(open_error)?;
    }
    for &older in &logs[..logs.len() - 1] {
        std::fs::remove_file(log_path(dir, older)).map_err(open_error)?;
    }
    Ok((seq, Arc::new(file), scanned.valid_end, state))
}

/// Reads log file `seq` (at `path`) back into a state, as far as its last whole frame: at
/// open, and when the writer rebuilds its state after a failed write. A damaged frame that
/// intact frames follow is skipped and logged, and the ids it may have used are not handed
/// out again.
pub(crate) fn read_back(
    path: &Path,
    file: &File,
    seq: u64,
) -> Result<(state::State, log::Scanned), StoreError> {
    let mut state = state::State::default();
    let scanned = log::scan(path, file, seq, |loc, head, _tail| {
        let rec: state::Rec<'_> = postcard::from_bytes(head).map_err(|e| StoreError::Corrupt {
            table: "log",
            key: seq,
            source: Arc::new(e),
        })?;
        state.apply(&rec, loc);
        Ok(())
    })?;
    for &(offset, len) in &scanned.skipped {
        tracing::error!(
            path = %path.display(),
            offset,
            bytes = len,
            "skipped a damaged frame of the store log that intact frames follow: the operations written in it (enqueues and delivery outcomes of one group commit) are lost, unless a crash tore the frame before they were acknowledged"
        );
        // The ids the frame's enqueues took are unknown: ids handed out from now on start
        // past the most it can have held, so no id names two deliveries.
        state.next_id = state.next_id.saturating_add(log::most_records(len));
    }
    Ok((state, scanned))
}

/// Rebuilds the index from the state at open: every queued delivery, none leased.
pub(crate) fn index_of(state: &state::State) -> Index {
    let mut index = Index::default();
    for (&id, entry) in &state.queued {
        index.insert(Arc::clone(&entry.endpoint), id, entry.not_before_ms);
    }
    index
}
