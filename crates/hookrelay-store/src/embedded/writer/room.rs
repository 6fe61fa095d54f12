//! How far ahead of its writes the log takes space, and how full its file system is.
//!
//! The log file is extended with zeros [`PREALLOCATE`] ahead of its writes, so that most
//! syncs write data only, not the file's new length. That space is taken only when the
//! file system has room to spare: as much again as [`SPARE`] left free after it. Below
//! [`ROOMY`] free the file system is short: the log grows with its writes, and is compacted
//! whatever its length (`Writer::maybe_checkpoint`). A failed extension is not an error:
//! what it took is given back and the frames are written without it. Whether space is set
//! aside is logged when it changes, not per batch.

use super::{PREALLOCATE, Writer};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Free space below which the file system is short of space.
pub(crate) const ROOMY: u64 = 4 * PREALLOCATE;

/// Space the file system keeps free after the log set space aside.
const SPARE: u64 = 3 * PREALLOCATE;

/// Bytes available to unprivileged writers on `file`'s file system; `None` when that
/// cannot be told.
pub(crate) fn free_space(file: &File) -> Option<u64> {
    let stat = rustix::fs::fstatvfs(file).ok()?;
    let unit = if stat.f_frsize > 0 {
        stat.f_frsize
    } else {
        stat.f_bsize
    };
    Some(stat.f_bavail.saturating_mul(unit))
}

/// Whether `error` says the disk or the quota is full.
pub(crate) fn is_no_space(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// Whether a file `length` bytes long may grow to `target` ahead of its writes, with
/// `free` bytes free on its file system (unknown: no).
fn may_set_aside(length: u64, target: u64, free: Option<u64>) -> bool {
    free.is_some_and(|free| free >= target.saturating_sub(length).saturating_add(SPARE))
}

/// Whether the log file is extended ahead of its writes, as last seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ahead {
    /// Yes.
    SetAside,
    /// No: the file system has no room to spare.
    Short,
    /// No: extending the file failed.
    Failed,
}

impl Writer {
    /// Before frames that end at `needed` are written past the space set aside: extends the
    /// file with zeros to [`PREALLOCATE`] past them when the file system has room to spare,
    /// and notes whether it is short of space.
    pub(super) fn set_aside(&mut self, needed: u64) {
        let length = self.allocated.max(self.end);
        let target = needed.saturating_add(PREALLOCATE);
        let free = free_space(&self.file);
        self.short = free.is_some_and(|free| free < ROOMY);
        if !may_set_aside(length, target, free) {
            self.ahead(Ahead::Short, free, None);
            return;
        }
        let zeros = vec![0; 1 << 20];
        let mut at = length;
        while at < target {
            let n = usize::try_from(target - at).map_or(zeros.len(), |left| left.min(zeros.len()));
            if let Err(e) = self.file.write_all_at(&zeros[..n], at) {
                // Not needed for the frames themselves: what it took is given back (the
                // disk may be nearly full), and they are written without it.
                self.allocated = if self.file.set_len(length).is_ok() {
                    length
                } else {
                    at
                };
                self.ahead(Ahead::Failed, free, Some(&e));
                return;
            }
            at += n as u64;
        }
        self.allocated = target;
        self.ahead(Ahead::SetAside, free, None);
    }

    /// Logs a change of whether space is set aside.
    fn ahead(&mut self, now: Ahead, free: Option<u64>, error: Option<&io::Error>) {
        if now == self.ahead {
            return;
        }
        self.ahead = now;
        match (now, error) {
            (Ahead::SetAside, _) => {
                tracing::info!(
                    free,
                    "the store log sets space aside ahead of its writes again"
                );
            }
            (Ahead::Short, _) => tracing::warn!(
                free,
                "the store's file system is short of space: its log sets no space aside and is compacted whatever its length"
            ),
            (Ahead::Failed, Some(error)) => tracing::warn!(
                free,
                error = %error,
                "cannot set space aside in the store log: it grows with its writes"
            ),
            (Ahead::Failed, None) => tracing::warn!(
                free,
                "cannot set space aside in the store log: it grows with its writes"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn space_is_set_aside_only_with_room_to_spare() {
        let grow = PREALLOCATE + MIB;
        assert!(may_set_aside(10 * MIB, 10 * MIB + grow, Some(grow + SPARE)));
        assert!(!may_set_aside(
            10 * MIB,
            10 * MIB + grow,
            Some(grow + SPARE - 1)
        ));
        assert!(!may_set_aside(0, grow, None), "unknown free space: no");
        assert!(!may_set_aside(0, grow, Some(0)));
        // A large batch needs as much more.
        assert!(!may_set_aside(0, 200 * MIB, Some(ROOMY)));
        // Already that long: only the spare is needed.
        assert!(may_set_aside(grow, grow, Some(SPARE)));
    }

    #[test]
    fn a_full_disk_or_quota_is_no_space_and_other_errors_are_not() {
        let no_space = rustix::io::Errno::NOSPC.raw_os_error();
        let quota = rustix::io::Errno::DQUOT.raw_os_error();
        assert!(is_no_space(&io::Error::from_raw_os_error(no_space)));
        assert!(is_no_space(&io::Error::from_raw_os_error(quota)));
        let eio = rustix::io::Errno::IO.raw_os_error();
        assert!(!is_no_space(&io::Error::from_raw_os_error(eio)));
        assert!(
            !is_no_space(&io::Error::other("disk full")),
            "by kind, not by text"
        );
    }

    #[test]
    fn free_space_of_a_real_file_system_is_known() -> Result<(), Box<dyn std::error::Error>> {
        let file = tempfile::tempfile()?;
        assert!(free_space(&file).is_some());
        Ok(())
    }
}
