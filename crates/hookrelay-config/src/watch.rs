//! The live configuration: one snapshot behind an atomic swap, and the file watcher.
//!
//! The watcher watches the file's **directory** (not the file), because editors save by
//! writing a new file and renaming it over the old one, and Kubernetes updates a mounted
//! ConfigMap by swapping the `..data` symlink; a watch on the file itself would be lost
//! at the first such save. Events are debounced (the reload runs once the directory has
//! been quiet for the debounce period, so a burst of writes is read once, complete), then
//! the file is read through its symlinks and compared by content hash. Events that only
//! concern other files (editors' backups, swap and lock files) are ignored. After a
//! watch error the directory is watched anew (and retried every second while it cannot
//! be), and the file is checked once more.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use notify::EventKind;

use crate::dirwatch::DirWatch;
use sha2::{Digest, Sha256};

use crate::error::{ConfigError, ConfigErrors};
use crate::interp::EnvLookup;
use crate::{Snapshot, Source};

/// The result of one reload attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new snapshot is live.
    Applied {
        /// Its generation.
        generation: u64,
        /// SHA-256 (hex) of the resolved configuration applied ([`Snapshot::hash`]).
        hash: String,
        /// What changed, one line each ([`Snapshot::changes_to`]).
        changes: Vec<String>,
    },
    /// The file was refused whole; the running snapshot stays.
    Rejected {
        /// Why.
        errors: ConfigErrors,
    },
    /// The file, with its `${VAR}` and `${file:}` values, is the configuration already
    /// running.
    Unchanged,
}

type Listener = Arc<dyn Fn(&ReloadOutcome) + Send + Sync>;

/// The running configuration: the current [`Snapshot`] and how to replace it.
///
/// Readers call [`Live::snapshot`] once per request or delivery attempt. Reloads (from
/// the watcher, [`Live::reload_now`] for SIGHUP and `POST /-/reload`) run one at a time
/// and swap the whole snapshot or nothing.
pub struct Live {
    path: PathBuf,
    env: Arc<EnvLookup>,
    current: ArcSwap<Snapshot>,
    /// SHA-256 of the file's bytes last applied or found to resolve to the running
    /// configuration: the file watcher skips a file still holding these bytes.
    file_hash: Mutex<String>,
    reload_lock: Mutex<()>,
    listeners: Mutex<Vec<Listener>>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.current.load();
        f.debug_struct("Live")
            .field("path", &self.path)
            .field("generation", &s.generation)
            .field("hash", &s.hash)
            .finish_non_exhaustive()
    }
}

impl Live {
    /// Loads `path` (generation 1), resolving `${VAR}` in the process environment.
    pub fn load(path: impl AsRef<Path>) -> Result<Arc<Live>, ConfigErrors> {
        Self::load_with_env(path, Arc::new(|k: &str| std::env::var(k).ok()))
    }

    /// Loads `path` (generation 1), resolving `${VAR}` with `env`.
    pub fn load_with_env(
        path: impl AsRef<Path>,
        env: Arc<EnvLookup>,
    ) -> Result<Arc<Live>, ConfigErrors> {
        let path = std::path::absolute(path.as_ref()).unwrap_or_else(|_| path.as_ref().into());
        let source = Source::read(&path)?.with_env(env.clone());
        let mut snapshot = Snapshot::try_from(&source)?;
        snapshot.generation = 1;
        Ok(Arc::new(Live {
            path,
            env,
            file_hash: Mutex::new(snapshot.file_hash.clone()),
            current: ArcSwap::from_pointee(snapshot),
            reload_lock: Mutex::new(()),
            listeners: Mutex::new(Vec::new()),
        }))
    }

    /// The current snapshot. Hold it for one request or one delivery attempt.
    #[must_use]
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The current snapshot's generation, read without taking a reference to the snapshot:
    /// the cheap way to ask whether a snapshot held for a while is still the current one.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.current.load().generation
    }

    /// The configuration file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Calls `f` with the outcome of every reload attempt (from any thread).
    pub fn on_outcome(&self, f: impl Fn(&ReloadOutcome) + Send + Sync + 'static) {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::new(f));
    }

    /// A channel receiving the outcome of every reload attempt from now on.
    #[must_use]
    pub fn subscribe(&self) -> mpsc::Receiver<ReloadOutcome> {
        let (tx, rx) = mpsc::channel();
        self.on_outcome(move |o| {
            let _ = tx.send(o.clone());
        });
        rx
    }

    /// Re-reads and applies the file now, even when its bytes are unchanged (so
    /// `${VAR}` and `${file:…}` values are read again): the path of SIGHUP and
    /// `POST /-/reload`.
    pub fn reload_now(&self) -> ReloadOutcome {
        self.reload(true)
    }

    /// Re-reads the file and applies it if its content changed and it is valid.
    pub fn reload_if_changed(&self) -> ReloadOutcome {
        self.reload(false)
    }

    fn reload(&self, force: bool) -> ReloadOutcome {
        let outcome = {
            let _one_at_a_time = self
                .reload_lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.try_reload(force)
        };
        // Called without the lock held, so a listener may itself reload or subscribe.
        let listeners = self
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for f in listeners {
            f(&outcome);
        }
        outcome
    }

    /// SHA-256 (hex) of the file's bytes last applied, or last found to resolve to the
    /// running configuration (a comment edited).
    #[must_use]
    pub fn file_hash(&self) -> String {
        self.file_hash
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether a file a `${file:}` of the running configuration reads now holds something
    /// else (or cannot be read): a rotated secret, to be applied with [`Live::reload_now`].
    #[must_use]
    pub fn files_changed(&self) -> bool {
        self.files_now().is_some()
    }

    /// What the files a `${file:}` of the running configuration reads hold now (SHA-256
    /// hex each, empty when unreadable), when that differs from what they held when it
    /// was applied; `None` when nothing changed.
    #[must_use]
    pub fn files_now(&self) -> Option<Vec<String>> {
        let current = self.current.load();
        let now: Vec<String> = current
            .files
            .iter()
            .map(|(path, _)| {
                std::fs::read(path)
                    .map(|bytes| hex::encode(Sha256::digest(&bytes)))
                    .unwrap_or_default()
            })
            .collect();
        let changed = current
            .files
            .iter()
            .zip(&now)
            .any(|((_, then), now)| then != now);
        changed.then_some(now)
    }

    fn try_reload(&self, force: bool) -> ReloadOutcome {
        let source = match Source::read(&self.path) {
            Ok(s) => s.with_env(self.env.clone()),
            Err(errors) => return ReloadOutcome::Rejected { errors },
        };
        let current = self.current.load();
        let file_hash = source.hash();
        if !force && file_hash == self.file_hash() {
            return ReloadOutcome::Unchanged;
        }
        let mut next = match Snapshot::try_from(&source) {
            Ok(s) => s,
            Err(errors) => return ReloadOutcome::Rejected { errors },
        };
        if next.hash == current.hash {
            // Comments or layout only, or values read again that did not change.
            *self
                .file_hash
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = file_hash;
            return ReloadOutcome::Unchanged;
        }
        let refused = not_reloadable(&current, &next);
        if !refused.is_empty() {
            return ReloadOutcome::Rejected {
                errors: ConfigErrors {
                    file: source.name().to_owned(),
                    errors: refused,
                },
            };
        }
        next.generation = current.generation + 1;
        let generation = next.generation;
        let hash = next.hash.clone();
        let changes = current.changes_to(&next);
        self.current.store(Arc::new(next));
        *self
            .file_hash
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = file_hash;
        ReloadOutcome::Applied {
            generation,
            hash,
            changes,
        }
    }

    /// Starts watching the file's directory with a 100 ms debounce.
    pub fn watch(self: &Arc<Self>) -> Result<Watcher, notify::Error> {
        self.watch_with(Duration::from_millis(100))
    }

    /// Starts watching the file's directory; a reload runs once the directory has been
    /// quiet for `debounce` (and at the latest 10 × `debounce` after the first event).
    /// Stops when the returned [`Watcher`] is dropped.
    pub fn watch_with(self: &Arc<Self>, debounce: Duration) -> Result<Watcher, notify::Error> {
        let dir = self
            .path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let (tx, rx) = mpsc::channel::<Msg>();
        let mut watcher = DirWatch::new(tx.clone())?;
        watcher.watch(&dir)?;
        let live = Arc::clone(self);
        let thread = std::thread::Builder::new()
            .name("hookrelay-config-watch".into())
            .spawn(move || run(&live, watcher, &dir, &rx, debounce))
            .map_err(notify::Error::io)?;
        Ok(Watcher {
            stop: tx,
            thread: Some(thread),
        })
    }
}

/// Problems of a new snapshot that changes what cannot change while running.
fn not_reloadable(current: &Snapshot, next: &Snapshot) -> Vec<ConfigError> {
    let mut out = Vec::new();
    let mut refuse = |key: &'static str, what: String| {
        let pos = next.key_pos.get(key).copied();
        out.push(
            ConfigError::new(
                key,
                format!(
                    "{what}, but `{key}` is not reloadable: restart hookrelay to apply it \
                     (nothing of this file was applied; the running configuration stays)"
                ),
            )
            .at(pos),
        );
    };
    if current.listen != next.listen {
        refuse(
            "listen",
            format!("changed from {} to {}", current.listen, next.listen),
        );
    }
    if current.admin != next.admin {
        refuse(
            "admin",
            format!("changed from {} to {}", current.admin, next.admin),
        );
    }
    if current.store != next.store {
        refuse("store", "changed".to_owned());
    }
    if current.tls != next.tls {
        refuse("tls", "changed".to_owned());
    }
    if current.telemetry != next.telemetry {
        refuse("telemetry", "changed".to_owned());
    }
    if current.admin_max_connections != next.admin_max_connections {
        refuse(
            "admin",
            format!(
                "max_connections changed from {} to {}",
                current.admin_max_connections, next.admin_max_connections
            ),
        );
    }
    out
}

/// What the watcher's thread is sent: a file system event, or stop.
pub(crate) enum Msg {
    Fs(notify::Result<notify::Event>),
    Stop,
}

/// A running watcher; dropping it stops the watch.
#[derive(Debug)]
pub struct Watcher {
    stop: mpsc::Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.stop.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Fs(e) => write!(f, "Fs({e:?})"),
            Msg::Stop => f.write_str("Stop"),
        }
    }
}

/// What a batch of events asks for.
#[derive(Default)]
struct Batch {
    reload: bool,
    rearm: bool,
}

impl Batch {
    fn add(&mut self, res: &notify::Result<notify::Event>, file: &Path, dir: &Path) {
        match res {
            Err(_) => {
                self.rearm = true;
                self.reload = true;
            }
            Ok(event) => {
                if event.need_rescan() || event.paths.is_empty() {
                    self.reload = true;
                }
                if event.paths.iter().any(|p| p == dir)
                    && matches!(event.kind, EventKind::Remove(_) | EventKind::Other)
                {
                    self.rearm = true;
                    self.reload = true;
                }
                if event.paths.iter().any(|p| concerns(p, file)) && !only_reads(&event.kind) {
                    self.reload = true;
                }
            }
        }
    }
}

/// True for an event that only opens or reads a file: a reload's own read of the file is
/// one, and reloading on it would reload again at every debounce, for ever. Closing a
/// file that was open for writing is a change (an editor's save ends with it).
fn only_reads(kind: &EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    matches!(kind, EventKind::Access(access) if *access != AccessKind::Close(AccessMode::Write))
}

/// True when an event on `p` may change what `file` reads: the file itself, the file a
/// symlink of it points to in the same directory, or Kubernetes' `..data` entries.
fn concerns(p: &Path, file: &Path) -> bool {
    let Some(name) = p.file_name() else {
        return true;
    };
    if Some(name) == file.file_name() || name.to_string_lossy().starts_with("..") {
        return true;
    }
    std::fs::read_link(file)
        .ok()
        .and_then(|target| target.file_name().map(|t| t == name))
        .unwrap_or(false)
}

fn run(
    live: &Live,
    mut watcher: DirWatch,
    dir: &Path,
    rx: &mpsc::Receiver<Msg>,
    debounce: Duration,
) {
    let mut armed = true;
    loop {
        // Wait for a first event (or, while disarmed, retry the watch every second).
        let first = if armed {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(Duration::from_secs(1))
        };
        let mut batch = Batch::default();
        match first {
            Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Ok(Msg::Fs(res)) => batch.add(&res, &live.path, dir),
            Err(RecvTimeoutError::Timeout) => batch.rearm = true,
        }
        // Debounce: wait until the directory has been quiet for `debounce`.
        let cap = Instant::now() + debounce * 10;
        loop {
            let now = Instant::now();
            if now >= cap {
                break;
            }
            match rx.recv_timeout(debounce.min(cap - now)) {
                Ok(Msg::Fs(res)) => batch.add(&res, &live.path, dir),
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => break,
            }
        }
        if batch.rearm || !armed {
            watcher.unwatch(dir);
            armed = watcher.watch(dir).is_ok();
            // Whatever happened while the watch was down, look at the file now.
            batch.reload |= armed;
        }
        if batch.reload {
            live.reload_if_changed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Batch;
    use notify::event::{AccessKind, AccessMode, CreateKind, DataChange, ModifyKind};
    use notify::{Event, EventKind};
    use std::path::Path;

    fn reloads(kind: EventKind) -> bool {
        let dir = Path::new("/etc/hookrelay");
        let file = dir.join("hookrelay.yaml");
        let mut batch = Batch::default();
        batch.add(&Ok(Event::new(kind).add_path(file.clone())), &file, dir);
        batch.reload
    }

    #[test]
    fn reading_the_file_is_no_reason_to_reload_it() {
        for access in [
            AccessKind::Open(AccessMode::Any),
            AccessKind::Read,
            AccessKind::Close(AccessMode::Read),
            AccessKind::Any,
        ] {
            assert!(!reloads(EventKind::Access(access)), "{access:?}");
        }
    }

    #[test]
    fn writing_the_file_is() {
        assert!(reloads(EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(reloads(EventKind::Modify(ModifyKind::Data(
            DataChange::Any
        ))));
        assert!(reloads(EventKind::Create(CreateKind::File)));
        assert!(reloads(EventKind::Any));
    }
}
