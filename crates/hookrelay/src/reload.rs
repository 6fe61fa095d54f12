//! The reload controller: the one place a new snapshot is applied.
//!
//! The watcher, SIGHUP and `POST /-/reload` only make [`Live`] reload; every outcome
//! comes here, in order. An applied snapshot is resolved (its upstream) and reconciled
//! (the delivery lanes, as a diff); a rejected one is logged and counted and the running
//! snapshot stays.

use std::sync::Arc;

use hookrelay_config::{Live, ReloadOutcome, Watcher};
use pingora::server::ShutdownWatch;
use tokio::sync::mpsc;

use crate::deliver::Lanes;
use crate::ingest::upstream::{REFRESH, Upstreams};
use crate::metrics::Metrics;

/// What applying a snapshot touches.
pub(crate) struct Controller {
    pub(crate) live: Arc<Live>,
    pub(crate) lanes: Arc<Lanes>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) upstream: Arc<Upstreams>,
    /// Takes the store's budget (`store.max_bytes`) and kept free space (`store.min_free`)
    /// of each applied snapshot.
    pub(crate) store: hookrelay_store::Store,
}

/// How often the files `${file:}` reads are checked for a change.
const FILES_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Outcomes, subscribed before anything can reload.
pub(crate) struct Outcomes {
    rx: mpsc::UnboundedReceiver<ReloadOutcome>,
    watcher: Option<Watcher>,
}

impl Controller {
    /// Subscribes to reload outcomes and starts the file watcher, before the first
    /// reconcile, so no outcome (admin API, SIGHUP, watcher) goes unseen.
    pub(crate) fn subscribe(&self) -> Outcomes {
        let (tx, rx) = mpsc::unbounded_channel();
        self.live.on_outcome(move |o| {
            let _ = tx.send(o.clone());
        });
        let watcher = match self.live.watch() {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::error!(error = %e, "cannot watch the config file; SIGHUP and POST /-/reload still reload it");
                None
            }
        };
        Outcomes { rx, watcher }
    }

    /// Applies the running snapshot, then every outcome until `shutdown`.
    pub(crate) async fn run(&self, mut outcomes: Outcomes, mut shutdown: ShutdownWatch) {
        let snapshot = self.live.snapshot();
        self.upstream.resolve(&snapshot.upstream).await;
        self.lanes.reconcile(&snapshot).await;
        // An edit between the first load and the watcher's start.
        // Its outcome (and any that came before it) is applied now; finding the file just
        // loaded is not a reload anyone asked for, so `unchanged` is not counted.
        self.reload_blocking(false).await;
        while let Ok(o) = outcomes.rx.try_recv() {
            self.apply(&o, false).await;
        }
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut refresh = tokio::time::interval(REFRESH);
        // `${file:}` values (a Kubernetes Secret mounted as files) are read again when
        // their files change, without a signal.
        let mut files = tokio::time::interval(FILES_EVERY);
        files.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut files_tried = None;
        refresh.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(o) = outcomes.rx.recv() => self.apply(&o, true).await,
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    self.reload_blocking(true).await;
                }
                _ = refresh.tick() => {
                    // A host-name upstream follows its DNS answers.
                    self.upstream.resolve(&self.live.snapshot().upstream).await;
                }
                _ = files.tick() => self.check_files(&mut files_tried).await,
            }
        }
        drop(outcomes.watcher);
    }

    /// Applies `outcome`; `count_unchanged` is false for the check at start.
    async fn apply(&self, outcome: &ReloadOutcome, count_unchanged: bool) {
        match outcome {
            ReloadOutcome::Applied {
                generation,
                hash,
                changes,
            } => {
                self.metrics.reload("applied");
                self.metrics.set_generation(*generation);
                let at_ms = crate::clock::now_ms();
                self.metrics.applied_at(at_ms);
                self.metrics.record_reload(crate::metrics::LastReload {
                    at_ms,
                    outcome: "applied",
                    lines: changes.clone(),
                });
                tracing::info!(generation, hash = %hash, changes = %changes.join("; "), "config applied");
                let snapshot = self.live.snapshot();
                self.metrics.prepare(&snapshot);
                for warning in &snapshot.warnings {
                    tracing::warn!("{warning}");
                }
                if let hookrelay_config::Store::Embedded { path } = &snapshot.store {
                    self.store
                        .set_max_bytes(crate::run::store_budget(path, snapshot.store_max_bytes));
                    self.store
                        .set_min_free(crate::run::min_free(snapshot.store_min_free));
                }
                self.upstream.resolve(&snapshot.upstream).await;
                self.lanes.reconcile(&snapshot).await;
            }
            ReloadOutcome::Rejected { errors } => {
                self.metrics.reload("rejected");
                self.metrics.record_reload(crate::metrics::LastReload {
                    at_ms: crate::clock::now_ms(),
                    outcome: "rejected",
                    lines: errors.to_string().lines().map(str::to_owned).collect(),
                });
                tracing::error!(errors = %errors, "config rejected; the running config stays");
            }
            ReloadOutcome::Unchanged if !count_unchanged => {}
            ReloadOutcome::Unchanged => self.metrics.reload("unchanged"),
        }
    }

    /// Reloads when a file a `${file:}` reads holds something new. Each content is
    /// tried once: a file that fails the reload (half-written, removed) or resolves to the
    /// running configuration is not reloaded again until it changes again.
    async fn check_files(&self, tried: &mut Option<Vec<String>>) {
        let live = self.live.clone();
        let seen = tried.clone();
        let checked = tokio::task::spawn_blocking(move || {
            let now = live.files_now()?;
            if seen.as_ref() != Some(&now) {
                live.reload_now();
            }
            Some(now)
        })
        .await;
        match checked {
            Ok(now) => *tried = now,
            Err(e) => tracing::error!(error = %e, "the ${{file:}} check did not finish"),
        }
    }

    /// Reloads the file (`force`), or only if it changed, on a blocking thread (it reads
    /// the file); the outcome arrives through the subscription.
    async fn reload_blocking(&self, force: bool) {
        let live = self.live.clone();
        let reload = move || {
            if force {
                live.reload_now();
            } else {
                live.reload_if_changed();
            }
        };
        if let Err(e) = tokio::task::spawn_blocking(reload).await {
            self.metrics.reload("failed");
            tracing::error!(error = %e, "the reload did not finish");
        }
    }
}
