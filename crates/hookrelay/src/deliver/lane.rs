//! One endpoint's lane: its built stack, its settings, and the worker that leases its
//! queue and runs attempts, at most `concurrency` at once.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use hookrelay_config::Endpoint;
use tokio::sync::{Notify, Semaphore, watch};

use super::DeliverCtx;
use super::attempt::attempt;
use super::stack::{Policy, Stack, Target};
use crate::clock::now_ms;

/// One endpoint's lane.
pub(crate) struct Lane {
    pub(crate) name: String,
    /// The reload handles of `stack`.
    policy: Policy,
    /// Built once, when the lane started.
    pub(crate) stack: Stack,
    /// URL, timeout, SSRF opt-in and retry policy, read once per attempt.
    target: ArcSwap<Target>,
    /// One permit per attempt in flight; `limit` permits in all.
    permits: Arc<Semaphore>,
    limit: AtomicUsize,
    pub(crate) paused: AtomicBool,
    /// Times the lane was resumed (by the admin API or a reload): a `410` answered to an
    /// attempt sent before the last resume does not pause the lane again.
    pub(crate) resumes: AtomicU64,
    /// True once an attempt failed and was rescheduled: the next success makes the
    /// endpoint's waiting retries due at once (it is answering again).
    pub(crate) failing: AtomicBool,
    pub(crate) wake: Arc<Notify>,
    stop: watch::Sender<bool>,
    /// The last success and the last failure, for the admin API.
    last: Mutex<Last>,
}

/// When the lane last delivered, and its last failure.
#[derive(Debug, Clone, Default)]
pub(crate) struct Last {
    /// Time of the last delivered attempt (ms since the epoch).
    pub(crate) success_ms: Option<i64>,
    /// Time and text of the last failed attempt.
    pub(crate) error: Option<(i64, String)>,
}

fn concurrency(ep: &Endpoint) -> usize {
    usize::try_from(ep.concurrency.get()).unwrap_or(usize::MAX)
}

impl Lane {
    /// A lane for `ep`, its stack built now.
    pub(crate) fn new(ctx: &DeliverCtx, ep: &Endpoint, wake: Arc<Notify>) -> Arc<Self> {
        let policy = Policy::new(ep, ctx.redis.clone());
        let stack = policy.build(ctx.clients.clone());
        let (stop, _) = watch::channel(false);
        Arc::new(Self {
            name: ep.name.clone(),
            policy,
            stack,
            target: ArcSwap::from_pointee(Target::of(ep)),
            permits: Arc::new(Semaphore::new(concurrency(ep))),
            limit: AtomicUsize::new(concurrency(ep)),
            paused: AtomicBool::new(false),
            resumes: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            wake,
            stop,
            last: Mutex::new(Last::default()),
        })
    }

    /// Applies a reloaded `ep` to the running lane: its stack's policies through their
    /// handles, its target and its concurrency. The stack is not rebuilt.
    pub(crate) fn apply(&self, ep: &Endpoint) {
        self.policy.apply(ep);
        self.target.store(Arc::new(Target::of(ep)));
        self.set_concurrency(concurrency(ep));
    }

    /// The reload handles of the lane's stack.
    #[cfg(test)]
    pub(crate) fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The settings the next attempt uses.
    pub(crate) fn target(&self) -> Arc<Target> {
        self.target.load_full()
    }

    /// Resumes a paused lane; false when it was not paused.
    pub(crate) fn resume(&self) -> bool {
        let was = self.paused.swap(false, Ordering::SeqCst);
        if was {
            self.resumes.fetch_add(1, Ordering::SeqCst);
        }
        self.wake.notify_one();
        was
    }

    /// Records a delivered attempt at `now_ms`.
    pub(crate) fn succeeded(&self, now_ms: i64) {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .success_ms = Some(now_ms);
    }

    /// Records a failed attempt at `now_ms`.
    pub(crate) fn failed(&self, now_ms: i64, error: &str) {
        // A response's text is bounded where it is read; the error line is kept short.
        let error: String = error.chars().take(512).collect();
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .error = Some((now_ms, error));
    }

    /// The last success and failure.
    pub(crate) fn last(&self) -> Last {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Asks the worker to stop taking new work.
    pub(crate) fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Whether the lane was asked to stop, as a watch (`changed` when it is).
    pub(crate) fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Applies a (possibly) changed concurrency: more permits at once, fewer as attempts
    /// in flight finish.
    fn set_concurrency(&self, limit: usize) {
        let old = self.limit.swap(limit, Ordering::Relaxed);
        if limit > old {
            self.permits.add_permits(limit - old);
        } else if limit < old {
            let permits = self.permits.clone();
            let fewer = u32::try_from(old - limit).unwrap_or(u32::MAX);
            tokio::spawn(async move {
                if let Ok(p) = permits.acquire_many(fewer).await {
                    p.forget();
                }
            });
        }
    }
}

/// The worker of a lane: leases due deliveries while permits are free, runs each attempt
/// on its own task, sleeps until the next is due or an enqueue wakes it.
pub(crate) async fn run(ctx: Arc<DeliverCtx>, lane: Arc<Lane>) {
    let permits = lane.permits.clone();
    let mut stop = lane.stop.subscribe();
    tracing::debug!(endpoint = %lane.name, "lane started");
    loop {
        if *stop.borrow() {
            break;
        }
        if lane.paused.load(Ordering::Relaxed) {
            tokio::select! {
                _ = lane.wake.notified() => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let Ok(first) = permits.clone().acquire_owned().await else {
            break;
        };
        if *stop.borrow() {
            break;
        }
        let free = permits.available_permits() + 1;
        let batch = match ctx.store.lease(&lane.name, now_ms(), free).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(endpoint = %lane.name, error = %e, "store unavailable, delivery paused");
                drop(first);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
        };
        if batch.is_empty() {
            drop(first);
            let wait = match ctx.store.next_due(&lane.name).await {
                Ok(Some(at)) => Duration::from_millis(
                    u64::try_from(at.saturating_sub(now_ms()))
                        .unwrap_or(0)
                        .max(1),
                ),
                // Nothing queued: an enqueue wakes the lane.
                Ok(None) => Duration::from_secs(3600),
                // Unknown: ask again soon, as after a failed lease. Waiting as if nothing
                // were queued would hold its retries, and another replica's deliveries to
                // take over, until the next enqueue.
                Err(e) => {
                    tracing::warn!(endpoint = %lane.name, error = %e, "store unavailable, delivery paused");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = lane.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let mut first = Some(first);
        for d in batch {
            let permit = match first.take() {
                Some(p) => p,
                None => match permits.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            if *stop.borrow() {
                // Stopping: what is not in flight yet stays queued.
                let _ = ctx.store.release(d.id).await;
                continue;
            }
            let ctx = ctx.clone();
            let lane = lane.clone();
            tokio::spawn(async move {
                ctx.metrics.in_flight(1);
                attempt(&ctx, &lane, d).await;
                ctx.metrics.in_flight(-1);
                drop(permit);
            });
        }
    }
    // Graceful stop: let the attempts in flight finish; the rest stays queued.
    let all = u32::try_from(lane.limit.load(Ordering::Relaxed)).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
    tracing::debug!(endpoint = %lane.name, "lane stopped");
}
