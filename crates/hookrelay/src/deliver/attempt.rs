//! One delivery attempt: send through the lane's stack, classify, record the outcome.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use hookrelay_store::{
    Attempt, AttemptOutcome, Delivery, DeliveryId, MAX_ATTEMPT_RESPONSE_BYTES, StoreError,
};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::DeliverCtx;
use super::lane::Lane;
use super::outcome::{self, Outcome};
use super::stack;
use crate::clock::now_ms;

/// Longest wait for the body of a 2xx response (its first bytes are kept in the history).
const SUCCESS_BODY_WAIT: Duration = Duration::from_secs(1);

/// Bytes of a failed response kept with a dead letter.
const RESPONSE_KEEP: usize = 4096;
/// Longest time an outcome is retried against an unavailable store before the delivery
/// is left to the store's own recovery (a restart, or another replica's takeover).
const RECORD_PATIENCE: Duration = Duration::from_secs(600);

/// What the store is told about an attempt.
enum Record {
    Complete(Option<Attempt>),
    Reschedule {
        at: i64,
        attempts: u32,
        error: String,
        entry: Option<Attempt>,
    },
    DeadLetter {
        reason: String,
        status: Option<u16>,
        response: Option<String>,
        entry: Option<Attempt>,
    },
    Release,
}

/// What an attempt saw of its response, for its log line and the delivery's history.
#[derive(Debug, Default)]
struct Seen {
    /// When the request was made (none when nothing was sent), epoch milliseconds.
    at_ms: Option<i64>,
    status: Option<u16>,
    latency: Option<Duration>,
    /// The first bytes of the response body.
    response: Option<String>,
}

impl Seen {
    /// The history entry of this attempt, ended by `outcome` with `error`; `None` when
    /// nothing was sent (a deferral).
    fn entry(&self, outcome: AttemptOutcome, error: Option<String>) -> Option<Attempt> {
        Some(Attempt {
            at_ms: self.at_ms?,
            outcome,
            status: self.status,
            duration_ms: self
                .latency
                .map_or(0, |l| u32::try_from(l.as_millis()).unwrap_or(u32::MAX)),
            error,
            response: self.response.clone(),
        })
    }
}

/// Sends `d` through the lane's stack and classifies what came back.
async fn send(
    ctx: &DeliverCtx,
    lane: &Lane,
    target: &std::sync::Arc<stack::Target>,
    d: &Delivery,
    seen: &mut Seen,
    span: &tracing::Span,
) -> Outcome {
    seen.at_ms = Some(now_ms());
    if let Err(refused) = crate::net::ssrf::check_literal(&target.url, target.allow_link_local) {
        return Outcome::Dead {
            reason: format!("refused: {refused}"),
            status: None,
            response: None,
        };
    }
    let (req, reached) = match stack::request(target, &d.webhook_id, d.body.clone()) {
        Ok((mut req, reached)) => {
            crate::telemetry::inject(span, req.headers_mut());
            (req, reached)
        }
        Err(e) => {
            return Outcome::Dead {
                reason: format!("cannot build request: {e}"),
                status: None,
                response: None,
            };
        }
    };
    let started = Instant::now();
    match lane.stack.clone().oneshot(req).await {
        Ok(resp) => {
            let status = resp.status();
            let sent_at = reached.0.get().copied().unwrap_or(started);
            ctx.metrics
                .throttle_wait(&lane.name, sent_at.saturating_duration_since(started));
            let latency = sent_at.elapsed();
            let ra = outcome::retry_after(resp.headers(), SystemTime::now());
            // The first bytes of the response, for the history and a dead letter, read
            // within the attempt's timeout (a stalled body never holds the lane).
            // A 2xx is done: its body (kept for the history) gets a second at most, so an
            // endpoint that holds it open does not hold the lane.
            let (keep, within) = if status.is_success() {
                (
                    MAX_ATTEMPT_RESPONSE_BYTES,
                    target.timeout.min(SUCCESS_BODY_WAIT),
                )
            } else {
                (RESPONSE_KEEP, target.timeout)
            };
            let text = read_prefix(resp.into_body(), keep, within).await;
            ctx.metrics
                .attempt(&lane.name, Some(status.as_u16()), Some(latency));
            seen.status = Some(status.as_u16());
            seen.latency = Some(latency);
            seen.response = (!text.is_empty()).then(|| text.clone());
            outcome::classify(status, ra, (!status.is_success()).then_some(text))
        }
        Err(e) => {
            let outcome = outcome::classify_error(e.as_ref());
            // A deferral (throttle unavailable) sent nothing.
            if matches!(outcome, Outcome::Defer { .. }) {
                seen.at_ms = None;
            } else {
                ctx.metrics.attempt(&lane.name, None, None);
                seen.latency = Some(started.elapsed());
            }
            outcome
        }
    }
}

/// The first `limit` bytes of `body` (lossy UTF-8), read for at most `deadline`.
async fn read_prefix(mut body: hyper::body::Incoming, limit: usize, deadline: Duration) -> String {
    let mut buf = Vec::new();
    let read = async {
        while buf.len() < limit {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        let take = data.len().min(limit - buf.len());
                        buf.extend_from_slice(&data[..take]);
                    }
                }
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(deadline, read).await;
    String::from_utf8_lossy(&buf).into_owned()
}

async fn apply(ctx: &DeliverCtx, id: DeliveryId, r: &Record, now: i64) -> Result<(), StoreError> {
    match r {
        Record::Complete(None) => ctx.store.complete(id).await,
        Record::Complete(Some(entry)) => ctx.store.complete_with(id, entry.clone()).await,
        Record::Reschedule {
            at,
            attempts,
            error,
            entry: None,
        } => {
            ctx.store
                .reschedule(id, *at, *attempts, Some(error.clone()))
                .await
        }
        Record::Reschedule {
            at,
            attempts,
            error,
            entry: Some(entry),
        } => {
            ctx.store
                .reschedule_with(id, *at, *attempts, Some(error.clone()), entry.clone())
                .await
        }
        Record::DeadLetter {
            reason,
            status,
            response,
            entry: None,
        } => {
            ctx.store
                .dead_letter(id, reason.clone(), *status, response.clone(), now)
                .await
        }
        Record::DeadLetter {
            reason,
            status,
            response,
            entry: Some(entry),
        } => {
            ctx.store
                .dead_letter_with(
                    id,
                    reason.clone(),
                    *status,
                    response.clone(),
                    now,
                    entry.clone(),
                )
                .await
        }
        Record::Release => ctx.store.release(id).await,
    }
}

/// The endpoint answered again after failures: its waiting retries are due now (still
/// paced by its rate limit), instead of each waiting out its backoff.
async fn recovered(ctx: &DeliverCtx, lane: &Lane, now: i64) {
    match ctx.store.retry_now(&lane.name, now).await {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(endpoint = %lane.name, retries = n, "endpoint answering again: its waiting retries are due now");
            lane.wake.notify_one();
        }
        Err(e) => {
            tracing::warn!(endpoint = %lane.name, error = %e, "cannot make waiting retries due; they keep their schedule")
        }
    }
}

/// Attempts `d` once and records the outcome.
pub(crate) async fn attempt(ctx: &DeliverCtx, lane: &Lane, d: Delivery) {
    let target = lane.target();
    let resumes = lane.resumes.load(Ordering::SeqCst);
    let mut seen = Seen::default();
    let attempts = d.attempts.saturating_add(1);
    let span =
        crate::telemetry::attempt_span(&lane.name, &d.webhook_id, attempts, d.trace.as_deref());
    let outcome = if span.is_none() {
        send(ctx, lane, &target, &d, &mut seen, &span).await
    } else {
        let outcome = tracing::Instrument::instrument(
            send(ctx, lane, &target, &d, &mut seen, &span),
            span.clone(),
        )
        .await;
        if let Some(status) = seen.status {
            span.record("http.response.status_code", status);
        }
        let (name, failed) = match &outcome {
            Outcome::Delivered => ("delivered", false),
            Outcome::Defer { .. } => ("deferred", false),
            Outcome::Gone => ("gone", true),
            Outcome::Dead { .. } => ("dead", true),
            Outcome::Retry { .. } => ("retry", true),
        };
        span.record("outcome", name);
        if failed {
            span.record("otel.status_code", "ERROR");
        }
        outcome
    };
    let now = now_ms();
    let record = match outcome {
        Outcome::Delivered => {
            ctx.metrics.outcome(&lane.name, "delivered");
            ctx.metrics.delivered_after(
                &lane.name,
                Duration::from_millis(u64::try_from(now - d.created_at_ms).unwrap_or(0)),
            );
            lane.succeeded(now);
            if crate::logs::sample_event() {
                tracing::info!(
                    target: crate::logs::EVENTS_TARGET,
                    endpoint = %lane.name,
                    webhook_id = %d.webhook_id,
                    status = seen.status,
                    attempts,
                    latency_ms = seen.latency.map(|l| l.as_secs_f64() * 1000.0),
                    "delivered"
                );
            }
            if lane.failing.swap(false, Ordering::SeqCst) {
                recovered(ctx, lane, now).await;
            }
            Record::Complete(seen.entry(AttemptOutcome::Delivered, None))
        }
        Outcome::Defer { after, reason } => {
            tracing::debug!(endpoint = %lane.name, reason = %reason, "attempt deferred");
            ctx.metrics.outcome(&lane.name, "deferred");
            Record::Reschedule {
                at: outcome::due_at(now, after),
                attempts: d.attempts,
                error: reason,
                entry: None,
            }
        }
        Outcome::Gone if lane.resumes.load(Ordering::SeqCst) != resumes => {
            // Sent before the operator resumed the lane: their resume stands, and the
            // delivery is attempted again at once.
            tracing::info!(endpoint = %lane.name, "410 Gone to an attempt sent before the endpoint was resumed");
            Record::Release
        }
        Outcome::Gone => {
            tracing::warn!(endpoint = %lane.name, "410 Gone: endpoint paused until a reload or resume");
            lane.paused.store(true, Ordering::SeqCst);
            lane.failed(now, "410 Gone: paused");
            ctx.metrics.outcome(&lane.name, "paused");
            Record::Release
        }
        Outcome::Dead {
            reason,
            status,
            response,
        } => {
            ctx.metrics.outcome(&lane.name, "dead_lettered");
            lane.failed(now, &reason);
            tracing::warn!(endpoint = %lane.name, webhook_id = %d.webhook_id, reason = %reason, "dead letter");
            Record::DeadLetter {
                entry: seen.entry(AttemptOutcome::Dead, Some(reason.clone())),
                reason,
                status,
                response,
            }
        }
        Outcome::Retry {
            after,
            error,
            status,
            response,
        } => {
            lane.failed(now, &error);
            if outcome::exhausted(&target.retry, attempts, d.created_at_ms, now) {
                ctx.metrics.outcome(&lane.name, "dead_lettered");
                let reason = format!("retries exhausted after {attempts} attempts: {error}");
                tracing::warn!(endpoint = %lane.name, webhook_id = %d.webhook_id, reason = %reason, "dead letter");
                Record::DeadLetter {
                    entry: seen.entry(AttemptOutcome::Dead, Some(error)),
                    reason,
                    status,
                    response,
                }
            } else {
                // `attempts` were made; the next one is attempt `attempts + 1`.
                let jitter = 0.8 + 0.4 * fastrand::f64();
                let delay = outcome::backoff(&target.retry, attempts.saturating_add(1), jitter)
                    .max(after.unwrap_or(Duration::ZERO));
                ctx.metrics.outcome(&lane.name, "retried");
                lane.failing.store(true, Ordering::SeqCst);
                tracing::info!(endpoint = %lane.name, webhook_id = %d.webhook_id, error = %error, retry_in = ?delay, "retry");
                Record::Reschedule {
                    at: outcome::due_at(now, delay),
                    attempts,
                    entry: seen.entry(AttemptOutcome::Retrying, Some(error.clone())),
                    error,
                }
            }
        }
    };
    // The outcome must reach the store: while it is unavailable, keep trying (the
    // delivery stays leased here meanwhile, so it is neither lost nor sent twice by us).
    // Until the lane stops: shutdown does not wait for a store that refuses writes, and an
    // outcome not recorded only means the delivery is attempted again after the restart.
    let started = Instant::now();
    let mut wait = Duration::from_millis(100);
    let mut stopping = lane.stopping();
    loop {
        match apply(ctx, d.id, &record, now).await {
            Ok(()) => {
                // A rescheduled or released delivery may be due before anything else
                // wakes the lane (the store only signals enqueues and replays).
                if matches!(record, Record::Reschedule { .. } | Record::Release) {
                    lane.wake.notify_one();
                }
                break;
            }
            Err(StoreError::UnknownDelivery { .. }) => {
                // Finished elsewhere (a replay, a deletion), or, on Redis, taken over by a
                // replica after this one stopped renewing its lease: that one's to record.
                tracing::info!(endpoint = %lane.name, id = d.id.0, "delivery outcome not recorded: the delivery is no longer queued here");
                break;
            }
            Err(e) if started.elapsed() < RECORD_PATIENCE && !*stopping.borrow() => {
                if matches!(e, StoreError::Recovering { .. }) {
                    // The store logged its failure once; this is one of its refusals.
                    tracing::debug!(endpoint = %lane.name, error = %e, retry_in = ?wait, "cannot record a delivery outcome yet");
                } else {
                    tracing::warn!(endpoint = %lane.name, error = %e, retry_in = ?wait, "cannot record a delivery outcome yet");
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stopping.changed() => {}
                }
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                if *stopping.borrow() {
                    tracing::info!(endpoint = %lane.name, error = %e, "stopping without recording a delivery outcome: the delivery is attempted again after the restart");
                } else {
                    tracing::error!(endpoint = %lane.name, error = %e, "gave up recording a delivery outcome");
                }
                // Give the lease back so the delivery is attempted again, not held forever.
                let _ = ctx.store.release(d.id).await;
                break;
            }
        }
    }
}
