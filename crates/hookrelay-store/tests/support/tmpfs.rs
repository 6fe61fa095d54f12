//! A small file system of a test's own, to fill up: a tmpfs mounted on a new temporary
//! directory, unmounted when dropped. Mounting needs root (or `CAP_SYS_ADMIN`), which this
//! project's CI and test machines have: a test that cannot mount one fails, it never skips.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use tempfile::TempDir;

/// A mounted tmpfs.
pub(crate) struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it: `8m`) on a new temporary
    /// directory; panics, naming what to fix, when it cannot.
    pub(crate) fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap_or_else(|e| panic!("cannot create a directory to mount a tmpfs on: {e}"));
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run `mount`: {e}"));
        assert!(
            output.status.success(),
            "cannot mount a {size} tmpfs on {}: {}. These tests fill a small file system of \
             their own: run them as root (or with CAP_SYS_ADMIN), as CI does",
            dir.path().display(),
            String::from_utf8_lossy(&output.stderr).trim(),
        );
        Tmpfs { dir }
    }

    /// The mount point.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes file `name` until the file system is full; returns its path and length.
    pub(crate) fn fill(&self, name: &str) -> io::Result<(PathBuf, u64)> {
        let path = self.path().join(name);
        let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
        let chunk = vec![0xA5u8; 64 << 10];
        loop {
            match file.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::StorageFull => break,
                Err(e) => return Err(e),
            }
        }
        let len = file.metadata()?.len();
        Ok((path, len))
    }

    /// Bytes free on the file system.
    pub(crate) fn free(&self) -> io::Result<u64> {
        let stat = rustix::fs::statvfs(self.path())?;
        Ok(stat.f_bavail * stat.f_frsize)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let path = self.dir.path();
        let unmounted = Command::new("umount")
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Still in use (a test failed with a store open): detach it now, the kernel
            // frees it once the last file is closed.
            let _ = Command::new("umount").arg("-l").arg(path).status();
        }
    }
}

/// Shrinks `path` by `bytes`, freeing that much of its file system.
pub(crate) fn shrink(path: &Path, bytes: u64) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    let len = file.metadata()?.len();
    file.set_len(len.saturating_sub(bytes))
}
