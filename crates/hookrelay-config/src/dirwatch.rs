//! The watch on the configuration file's directory.
//!
//! On Linux it is inotify with a narrow mask: entries created, deleted, renamed, closed
//! after writing or given new attributes, and the directory itself removed. Not opens,
//! reads or single writes: `notify`'s own inotify watch asks for those too, so every
//! write to any file in the directory (a log written next to the configuration, say)
//! woke its thread and then ours, a few microseconds each, thousands of times a second.
//! A file changed in place is seen when its writer closes it, as editors and
//! `kubectl`/the kubelet do. Elsewhere it is `notify`'s recommended watcher.

use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;

use super::watch::Msg;

/// The directory watch, sending what it sees to the watcher's thread.
pub(crate) enum DirWatch {
    /// `notify`'s recommended watcher (every platform but Linux).
    #[cfg_attr(target_os = "linux", allow(dead_code))]
    Notify(notify::RecommendedWatcher),
    /// inotify with the narrow mask.
    #[cfg(target_os = "linux")]
    Inotify(narrow::Watch),
}

impl DirWatch {
    /// A watch that sends its events to `tx`, not yet watching anything.
    pub(crate) fn new(tx: Sender<Msg>) -> Result<Self, notify::Error> {
        #[cfg(target_os = "linux")]
        {
            narrow::Watch::new(tx).map(DirWatch::Inotify)
        }
        #[cfg(not(target_os = "linux"))]
        {
            notify::recommended_watcher(move |res| {
                let _ = tx.send(Msg::Fs(res));
            })
            .map(DirWatch::Notify)
        }
    }

    /// Watches `dir` (not its subdirectories).
    pub(crate) fn watch(&mut self, dir: &Path) -> Result<(), notify::Error> {
        match self {
            DirWatch::Notify(w) => {
                notify::Watcher::watch(w, dir, notify::RecursiveMode::NonRecursive)
            }
            #[cfg(target_os = "linux")]
            DirWatch::Inotify(w) => w.watch(dir),
        }
    }

    /// Stops watching `dir`.
    pub(crate) fn unwatch(&mut self, dir: &Path) {
        match self {
            DirWatch::Notify(w) => {
                let _ = notify::Watcher::unwatch(w, dir);
            }
            #[cfg(target_os = "linux")]
            DirWatch::Inotify(w) => w.unwatch(),
        }
    }
}

#[cfg(target_os = "linux")]
pub(crate) mod narrow {
    use super::*;
    use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
    use notify::event::{
        AccessKind, AccessMode, CreateKind, EventKind, Flag, MetadataKind, ModifyKind, RemoveKind,
        RenameMode,
    };
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex, PoisonError};

    /// What is asked of inotify.
    fn mask() -> WatchMask {
        WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::ATTRIB
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF
            | WatchMask::ONLYDIR
    }

    /// The inotify instance's watches, and the directory watched now.
    pub(crate) struct Watch {
        watches: Watches,
        current: Arc<Mutex<Option<(WatchDescriptor, PathBuf)>>>,
        /// Set when the watch is dropped: the reading thread ends at its next event.
        stopped: Arc<AtomicBool>,
    }

    impl Watch {
        /// Starts the thread that reads the events. It ends at the first event after the
        /// watch is dropped (dropping it removes the watch, which sends one) or once `tx`'s
        /// receiver is gone.
        pub(crate) fn new(tx: Sender<Msg>) -> Result<Self, notify::Error> {
            let inotify = Inotify::init().map_err(notify::Error::io)?;
            let watches = inotify.watches();
            let current: Arc<Mutex<Option<(WatchDescriptor, PathBuf)>>> = Arc::default();
            let stopped = Arc::new(AtomicBool::new(false));
            let (seen, stop) = (Arc::clone(&current), Arc::clone(&stopped));
            std::thread::Builder::new()
                .name("hookrelay-config-inotify".into())
                .spawn(move || read(inotify, &seen, &stop, &tx))
                .map_err(notify::Error::io)?;
            Ok(Watch {
                watches,
                current,
                stopped,
            })
        }

        pub(crate) fn watch(&mut self, dir: &Path) -> Result<(), notify::Error> {
            let wd = self
                .watches
                .add(dir, mask())
                .map_err(|e| notify::Error::io(e).add_path(dir.to_path_buf()))?;
            *self.current.lock().unwrap_or_else(PoisonError::into_inner) =
                Some((wd, dir.to_path_buf()));
            Ok(())
        }

        pub(crate) fn unwatch(&mut self) {
            let taken = self
                .current
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some((wd, _)) = taken {
                let _ = self.watches.remove(wd);
            }
        }
    }

    impl Drop for Watch {
        fn drop(&mut self) {
            self.stopped.store(true, Ordering::Release);
            self.unwatch();
        }
    }

    /// Reads events until the receiver is gone or the instance fails.
    fn read(
        mut inotify: Inotify,
        current: &Mutex<Option<(WatchDescriptor, PathBuf)>>,
        stopped: &AtomicBool,
        tx: &Sender<Msg>,
    ) {
        let mut buffer = [0u8; 4096];
        loop {
            if stopped.load(Ordering::Acquire) {
                return;
            }
            let events = match inotify.read_events_blocking(&mut buffer) {
                Ok(events) => events,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = tx.send(Msg::Fs(Err(notify::Error::io(e))));
                    return;
                }
            };
            if stopped.load(Ordering::Acquire) {
                return;
            }
            for event in events {
                let dir = current
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .as_ref()
                    .filter(|(wd, _)| *wd == event.wd)
                    .map(|(_, dir)| dir.clone());
                let converted = convert(event.mask, event.name, dir.as_deref());
                if let Some(converted) = converted
                    && tx.send(Msg::Fs(Ok(converted))).is_err()
                {
                    return;
                }
            }
        }
    }

    /// The `notify` event of an inotify event of the watch on `dir` (`None`: a watch
    /// removed since); `None` for what does not matter.
    pub(crate) fn convert(
        mask: EventMask,
        name: Option<&std::ffi::OsStr>,
        dir: Option<&Path>,
    ) -> Option<notify::Event> {
        if mask.contains(EventMask::Q_OVERFLOW) {
            // Events were lost: look at the file again.
            return Some(notify::Event::new(EventKind::Other).set_flag(Flag::Rescan));
        }
        let dir = dir?;
        if mask.intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::IGNORED) {
            return Some(
                notify::Event::new(EventKind::Remove(RemoveKind::Folder))
                    .add_path(dir.to_path_buf()),
            );
        }
        let kind = if mask.contains(EventMask::CREATE) {
            EventKind::Create(CreateKind::Any)
        } else if mask.contains(EventMask::DELETE) {
            EventKind::Remove(RemoveKind::Any)
        } else if mask.contains(EventMask::CLOSE_WRITE) {
            EventKind::Access(AccessKind::Close(AccessMode::Write))
        } else if mask.contains(EventMask::MOVED_FROM) {
            EventKind::Modify(ModifyKind::Name(RenameMode::From))
        } else if mask.contains(EventMask::MOVED_TO) {
            EventKind::Modify(ModifyKind::Name(RenameMode::To))
        } else if mask.contains(EventMask::ATTRIB) {
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any))
        } else {
            return None;
        };
        let path = name.map_or_else(|| dir.to_path_buf(), |n| dir.join(n));
        Some(notify::Event::new(kind).add_path(path))
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::sync::mpsc;
    use std::time::Duration;

    /// The next event's paths and kind.
    fn next(rx: &mpsc::Receiver<Msg>) -> (Vec<PathBuf>, notify::EventKind) {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Msg::Fs(Ok(event))) => (event.paths, event.kind),
            Ok(Msg::Fs(Err(e))) => panic!("watch error: {e}"),
            Ok(Msg::Stop) => panic!("stop"),
            Err(e) => panic!("no event: {e}"),
        }
    }

    #[test]
    fn writes_to_an_open_file_wake_nothing_and_a_save_is_seen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, rx) = mpsc::channel();
        let mut watch = DirWatch::new(tx).expect("watch");
        watch.watch(dir.path()).expect("watch the directory");
        let log = dir.path().join("hookrelay.log");
        let mut file = std::fs::File::create(&log).expect("create");
        assert_eq!(next(&rx).0, [log], "its creation is seen");
        // A log appended to line by line, never closed: no event at all. Events come in
        // order, so the marker's creation being next proves none came for the writes.
        for n in 0..1000 {
            writeln!(file, "line {n}").expect("write");
        }
        let marker = dir.path().join("marker");
        std::fs::write(&marker, "x").expect("marker");
        let (paths, kind) = next(&rx);
        assert_eq!(paths, std::slice::from_ref(&marker));
        assert!(matches!(kind, notify::EventKind::Create(_)), "{kind:?}");
        // Written and closed: seen.
        let (paths, kind) = next(&rx);
        assert_eq!(paths, [marker]);
        assert!(
            matches!(
                kind,
                notify::EventKind::Access(notify::event::AccessKind::Close(
                    notify::event::AccessMode::Write
                ))
            ),
            "{kind:?}"
        );
        // A rename over the config (an editor's save, the kubelet's swap) is seen.
        let config = dir.path().join("hookrelay.yaml");
        let staged = dir.path().join(".hookrelay.yaml.tmp");
        std::fs::write(&staged, "a: 1").expect("stage");
        let _ = (next(&rx), next(&rx)); // its create and close
        std::fs::rename(&staged, &config).expect("rename");
        assert_eq!(next(&rx).0, [staged]);
        assert_eq!(next(&rx).0, [config]);
        drop(file);
    }
}
