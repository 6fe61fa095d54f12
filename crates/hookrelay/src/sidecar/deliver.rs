//! Delivery workers: one lane per endpoint, so a slow endpoint never stalls another.
//!
//! Each attempt reads the live snapshot once and sends through the Tower stack
//!
//! ```text
//! SetHeaders (endpoint headers) ▶ Sign (webhook-id/-timestamp/-signature)
//!   ▶ Throttle (endpoint rate, state kept across reloads) ▶ Timeout ▶ hyper client
//! ```
//!
//! and files the outcome: 2xx done; 429, 5xx, timeouts and connection errors retried with
//! the endpoint's backoff schedule plus jitter (`Retry-After` honoured within bounds);
//! 410 pauses the endpoint (its deliveries stay queued); other 3xx/4xx are dead letters at
//! once; exhausting `max_attempts` or `max_age` makes a dead letter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookrelay_config::{Endpoint, RateLimit, Snapshot};
use hookrelay_core::signing::{Signer, WEBHOOK_ID};
use hookrelay_store::{Delivery, DeliveryId};
use hookrelay_tower::gcra::redis::RedisGcra;
use hookrelay_tower::gcra::{Gcra, Key, RateLimiter, ReserveError, ThrottleHandle};
use hookrelay_tower::set_headers::{HeaderSet, Mode as HeaderMode};
use hookrelay_tower::{SetHeadersLayer, SignLayer, ThrottleLayer};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::sync::{Notify, Semaphore, watch};
use tower::{ServiceBuilder, ServiceExt};

use super::App;
use super::clock::now_ms;
use super::ssrf;

/// Longest wait for an endpoint's throttle before the attempt is put back (not counted).
const MAX_THROTTLE_WAIT: Duration = Duration::from_secs(30);
/// Bounds of an honoured `Retry-After`.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);
/// Bytes of a failed response kept with a dead letter.
const RESPONSE_KEEP: usize = 4096;

/// What an attempt came to.
enum Outcome {
    Delivered,
    Retry {
        after: Option<Duration>,
        error: String,
        /// The endpoint's answer, when it answered (kept if retries run out).
        status: Option<u16>,
        response: Option<String>,
    },
    Dead {
        reason: String,
        status: Option<u16>,
        response: Option<String>,
    },
    Gone,
    /// Not attempted (the throttle's slot is too far away, or its Redis is unreachable):
    /// back in the queue for `after`, without counting an attempt.
    Defer {
        after: Duration,
        reason: String,
    },
}

/// An endpoint's rate limit: in memory (one sidecar), or in Redis (replicas share it).
#[derive(Clone)]
enum Limit {
    Local(ThrottleHandle),
    Redis(RedisGcra),
}

impl Limit {
    fn new(app: &App, endpoint: &str, r: RateLimit) -> Option<Limit> {
        let gcra = Gcra::new(r.per_second, r.burst);
        match &app.redis_url {
            None => Some(Limit::Local(ThrottleHandle::new(gcra))),
            Some(url) => {
                match RedisGcra::open(url.expose(), format!("hookrelay:rl:{endpoint}:"), gcra) {
                    Ok(l) => Some(Limit::Redis(l)),
                    Err(e) => {
                        // Never unthrottled: fall back to this replica's own share of nothing;
                        // an in-memory limit at the configured rate is the closest safe choice.
                        tracing::error!(endpoint, error = %e, "cannot use the Redis rate limit, limiting in memory");
                        Some(Limit::Local(ThrottleHandle::new(gcra)))
                    }
                }
            }
        }
    }

    fn set(&self, r: RateLimit) {
        let gcra = Gcra::new(r.per_second, r.burst);
        match self {
            Limit::Local(h) => {
                h.set(gcra);
            }
            Limit::Redis(g) => {
                g.set(gcra);
            }
        }
    }
}

impl RateLimiter for Limit {
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<tokio::time::Instant, ReserveError>> + Send>,
    >;

    fn reserve(&self, key: Option<Key>, max_wait: Duration) -> Self::Future {
        match self {
            Limit::Local(h) => Box::pin(h.reserve(key, max_wait)),
            Limit::Redis(g) => g.reserve(key, max_wait),
        }
    }
}

/// One endpoint's lane.
pub(crate) struct Lane {
    pub(crate) name: String,
    /// One permit per attempt in flight; `limit` permits in all.
    permits: Arc<Semaphore>,
    limit: std::sync::atomic::AtomicUsize,
    throttle: Mutex<Option<Limit>>,
    pub(crate) paused: AtomicBool,
    /// Times the lane was resumed (by the admin API or a reload): a `410` answered to an
    /// attempt sent before the last resume does not pause the lane again.
    resumes: std::sync::atomic::AtomicU64,
    pub(crate) wake: Arc<Notify>,
    stop: watch::Sender<bool>,
}

impl Lane {
    fn new(
        app: &App,
        name: String,
        rate: Option<RateLimit>,
        concurrency: usize,
        wake: Arc<Notify>,
    ) -> Arc<Self> {
        let (stop, _) = watch::channel(false);
        let throttle = rate.and_then(|r| Limit::new(app, &name, r));
        Arc::new(Self {
            name,
            permits: Arc::new(Semaphore::new(concurrency)),
            limit: std::sync::atomic::AtomicUsize::new(concurrency),
            throttle: Mutex::new(throttle),
            paused: AtomicBool::new(false),
            resumes: std::sync::atomic::AtomicU64::new(0),
            wake,
            stop,
        })
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

    /// Applies a (possibly) changed rate limit: an unchanged rate keeps its buckets.
    fn set_rate(&self, app: &App, rate: Option<RateLimit>) {
        if let Ok(mut t) = self.throttle.lock() {
            match (t.as_ref(), rate) {
                (Some(limit), Some(r)) => limit.set(r),
                (None, Some(r)) => *t = Limit::new(app, &self.name, r),
                (_, None) => *t = None,
            }
        }
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

    fn throttle(&self) -> Option<Limit> {
        self.throttle.lock().ok().and_then(|t| t.clone())
    }
}

/// The lanes of every configured endpoint.
#[derive(Default)]
pub(crate) struct Lanes {
    lanes: Mutex<HashMap<String, Arc<Lane>>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Lanes {
    /// Lane by endpoint name.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Lane>> {
        self.lanes.lock().ok().and_then(|l| l.get(name).cloned())
    }

    /// Brings the lanes in line with `snapshot`: starts new endpoints, stops removed ones
    /// (their queued deliveries become dead letters `endpoint removed`), updates rates.
    pub(crate) async fn reconcile(&self, app: &Arc<App>, snapshot: &Snapshot) {
        let mut started = Vec::new();
        let mut removed = Vec::new();
        if let Ok(mut lanes) = self.lanes.lock() {
            for ep in &snapshot.endpoints {
                match lanes.get(&ep.name) {
                    Some(lane) => {
                        lane.set_rate(app, ep.rate_limit);
                        lane.set_concurrency(concurrency(ep));
                        // A reload is the operator's answer to a 410: resume.
                        lane.resume();
                    }
                    None => {
                        let lane = Lane::new(
                            app,
                            ep.name.clone(),
                            ep.rate_limit,
                            concurrency(ep),
                            app.store.subscribe(&ep.name),
                        );
                        lanes.insert(ep.name.clone(), lane.clone());
                        started.push(lane);
                    }
                }
            }
            let names: Vec<String> = lanes.keys().cloned().collect();
            for name in names {
                if snapshot.endpoint(&name).is_none()
                    && let Some(lane) = lanes.remove(&name)
                {
                    let _ = lane.stop.send(true);
                    removed.push(name);
                }
            }
        }
        for lane in started {
            let task = app.delivery.spawn(run_lane(app.clone(), lane));
            if let Ok(mut tasks) = self.tasks.lock() {
                tasks.retain(|t| !t.is_finished());
                tasks.push(task);
            }
        }
        for name in removed {
            match app
                .store
                .dead_letter_endpoint(&name, "endpoint removed", now_ms())
                .await
            {
                Ok(n) => tracing::info!(endpoint = %name, dead_lettered = n, "endpoint removed"),
                Err(e) => {
                    tracing::error!(endpoint = %name, error = %e, "cannot dead-letter a removed endpoint's queue")
                }
            }
        }
        // Deliveries of endpoints no longer configured (removed while this sidecar was
        // stopped). Only with the embedded store, which this process alone owns: on Redis
        // another replica may run a newer config that has those endpoints.
        if app.redis_url.is_none() {
            for name in app.store.endpoints().await.unwrap_or_default() {
                if snapshot.endpoint(&name).is_none() {
                    let _ = app
                        .store
                        .dead_letter_endpoint(&name, "endpoint removed", now_ms())
                        .await;
                }
            }
        }
    }

    /// Waits up to `limit` for every lane to finish its attempts in flight.
    pub(crate) async fn join(&self, limit: Duration) {
        let tasks: Vec<_> = self
            .tasks
            .lock()
            .map(|mut t| t.drain(..).collect())
            .unwrap_or_default();
        let _ = tokio::time::timeout(limit, futures_util::future::join_all(tasks)).await;
    }

    /// Asks every lane to stop taking new work.
    pub(crate) fn stop_all(&self) {
        if let Ok(lanes) = self.lanes.lock() {
            for lane in lanes.values() {
                let _ = lane.stop.send(true);
            }
        }
    }
}

fn concurrency(ep: &Endpoint) -> usize {
    usize::try_from(ep.concurrency.get()).unwrap_or(usize::MAX)
}

async fn run_lane(app: Arc<App>, lane: Arc<Lane>) {
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
        let batch = match app.store.lease(&lane.name, now_ms(), free).await {
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
            let wait = match app.store.next_due(&lane.name).await.ok().flatten() {
                Some(at) => Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0).max(1)),
                None => Duration::from_secs(3600),
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
                let _ = app.store.release(d.id).await;
                continue;
            }
            let app = app.clone();
            let lane = lane.clone();
            tokio::spawn(async move {
                app.metrics.in_flight(1);
                attempt(&app, &lane, d).await;
                app.metrics.in_flight(-1);
                drop(permit);
            });
        }
    }
    // Graceful stop: let the attempts in flight finish; the rest stays queued.
    let all = u32::try_from(lane.limit.load(Ordering::Relaxed)).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
    tracing::debug!(endpoint = %lane.name, "lane stopped");
}

/// Backoff before retry number `attempts` (1-based), with ±20 % jitter.
fn backoff(ep: &Endpoint, attempts: u32) -> Duration {
    let base = ep.retry.delay_before(attempts);
    let jitter = 0.8 + 0.4 * fastrand::f64();
    base.mul_f64(jitter)
}

fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(RETRY_AFTER_MAX));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    let d = at
        .duration_since(std::time::SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Some(d.min(RETRY_AFTER_MAX))
}

async fn send(app: &App, lane: &Lane, ep: &Endpoint, d: &Delivery) -> Outcome {
    if let Err(e) = ssrf::check_literal(&ep.url, ep.allow_link_local) {
        return Outcome::Dead {
            reason: format!("refused: {e}"),
            status: None,
            response: None,
        };
    }
    let mut req = match Request::post(ep.url.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("hookrelay/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(d.body.clone()))
    {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Dead {
                reason: format!("cannot build request: {e}"),
                status: None,
                response: None,
            };
        }
    };
    if let Ok(id) = HeaderValue::from_str(&d.webhook_id) {
        req.headers_mut().insert(WEBHOOK_ID, id);
    }
    let headers = HeaderSet::from_pairs(
        ep.headers.iter().map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        }),
        HeaderMode::Override,
    )
    .unwrap_or_default();
    // When the request reaches the client: the throttle's wait ends there.
    let reached = Arc::new(std::sync::OnceLock::<Instant>::new());
    let mark = reached.clone();
    let client = ServiceBuilder::new()
        .map_request(move |req| {
            let _ = mark.set(Instant::now());
            req
        })
        .service(app.client(ep.allow_link_local));
    // SetHeaders ▶ Sign ▶ Throttle ▶ Timeout ▶ client
    let svc = ServiceBuilder::new()
        .layer(SetHeadersLayer::request(headers))
        .layer(SignLayer::new(Signer::new(ep.signing_secrets.clone())))
        .option_layer(
            lane.throttle()
                .map(|l| ThrottleLayer::with_limiter(l).max_wait(MAX_THROTTLE_WAIT)),
        )
        .timeout(ep.timeout)
        .service(client);
    let started = Instant::now();
    match svc.oneshot(req).await {
        Ok(resp) => {
            let status = resp.status();
            let sent_at = reached.get().copied().unwrap_or(started);
            app.metrics
                .throttle_wait(&lane.name, sent_at.saturating_duration_since(started));
            let latency = sent_at.elapsed();
            let ra = retry_after(resp.headers());
            // The response body matters only for a dead letter: its first bytes, read
            // within the attempt's timeout (a stalled body never holds the lane).
            let body = if status.is_success() {
                None
            } else {
                Some(read_prefix(resp.into_body(), RESPONSE_KEEP, ep.timeout).await)
            };
            app.metrics.attempt(&lane.name, "sent", Some(latency));
            classify(status, ra, body)
        }
        Err(e) => {
            if let Some(t) = e.downcast_ref::<hookrelay_tower::throttle::ThrottleError>() {
                return Outcome::Defer {
                    after: Duration::from_secs(1),
                    reason: t.to_string(),
                };
            }
            let text = if e.is::<tower::timeout::error::Elapsed>() {
                format!("timed out after {:?}", ep.timeout)
            } else {
                let mut s = e.to_string();
                let mut src = e.source();
                while let Some(inner) = src {
                    s.push_str(": ");
                    s.push_str(&inner.to_string());
                    src = inner.source();
                }
                s
            };
            if text.contains("link-local or metadata") {
                return Outcome::Dead {
                    reason: format!("refused: {text}"),
                    status: None,
                    response: None,
                };
            }
            Outcome::Retry {
                after: None,
                error: text,
                status: None,
                response: None,
            }
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

fn classify(status: StatusCode, retry_after: Option<Duration>, body: Option<String>) -> Outcome {
    if status.is_success() {
        Outcome::Delivered
    } else if status == StatusCode::GONE {
        Outcome::Gone
    } else if status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
    {
        Outcome::Retry {
            after: retry_after,
            error: format!("HTTP {}", status.as_u16()),
            status: Some(status.as_u16()),
            response: body,
        }
    } else {
        Outcome::Dead {
            reason: format!("HTTP {}", status.as_u16()),
            status: Some(status.as_u16()),
            response: body,
        }
    }
}

/// What the store is told about an attempt.
enum Record {
    Complete,
    Reschedule {
        at: i64,
        attempts: u32,
        error: String,
    },
    DeadLetter {
        reason: String,
        status: Option<u16>,
        response: Option<String>,
    },
    Release,
}

async fn apply(
    app: &App,
    id: DeliveryId,
    r: &Record,
    now: i64,
) -> Result<(), hookrelay_store::StoreError> {
    match r {
        Record::Complete => app.store.complete(id).await,
        Record::Reschedule {
            at,
            attempts,
            error,
        } => {
            app.store
                .reschedule(id, *at, *attempts, Some(error.clone()))
                .await
        }
        Record::DeadLetter {
            reason,
            status,
            response,
        } => {
            app.store
                .dead_letter(id, reason.clone(), *status, response.clone(), now)
                .await
        }
        Record::Release => app.store.release(id).await,
    }
}

/// Longest time an outcome is retried against an unavailable store before the delivery
/// is left to the store's own recovery (a restart, or another replica's takeover).
const RECORD_PATIENCE: Duration = Duration::from_secs(600);

async fn attempt(app: &Arc<App>, lane: &Arc<Lane>, d: Delivery) {
    let snapshot = app.live.snapshot();
    let Some(ep) = snapshot.endpoint(&lane.name) else {
        let _ = app.store.release(d.id).await;
        return;
    };
    let resumes = lane.resumes.load(Ordering::SeqCst);
    let outcome = send(app, lane, ep, &d).await;
    let now = now_ms();
    let attempts = d.attempts + 1;
    let record = match outcome {
        Outcome::Delivered => {
            app.metrics.attempt(&lane.name, "delivered", None);
            Record::Complete
        }
        Outcome::Defer { after, reason } => {
            tracing::debug!(endpoint = %lane.name, reason = %reason, "attempt deferred");
            let at = now + i64::try_from(after.as_millis()).unwrap_or(1000);
            Record::Reschedule {
                at,
                attempts: d.attempts,
                error: reason,
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
            app.metrics.attempt(&lane.name, "paused", None);
            Record::Release
        }
        Outcome::Dead {
            reason,
            status,
            response,
        } => {
            app.metrics.attempt(&lane.name, "dead_lettered", None);
            tracing::warn!(endpoint = %lane.name, webhook_id = %d.webhook_id, reason = %reason, "dead letter");
            Record::DeadLetter {
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
            let age = Duration::from_millis(u64::try_from(now - d.created_at_ms).unwrap_or(0));
            if attempts >= ep.retry.max_attempts.get() || age >= ep.retry.max_age {
                app.metrics.attempt(&lane.name, "dead_lettered", None);
                let reason = format!("retries exhausted after {attempts} attempts: {error}");
                tracing::warn!(endpoint = %lane.name, webhook_id = %d.webhook_id, reason = %reason, "dead letter");
                Record::DeadLetter {
                    reason,
                    status,
                    response,
                }
            } else {
                // `attempts` were made; the next one is attempt `attempts + 1`.
                let delay = backoff(ep, attempts + 1).max(after.unwrap_or(Duration::ZERO));
                app.metrics.attempt(&lane.name, "retried", None);
                tracing::info!(endpoint = %lane.name, webhook_id = %d.webhook_id, error = %error, retry_in = ?delay, "retry");
                let at = now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
                Record::Reschedule {
                    at,
                    attempts,
                    error,
                }
            }
        }
    };
    // The outcome must reach the store: while it is unavailable, keep trying (the
    // delivery stays leased here meanwhile, so it is neither lost nor sent twice by us).
    let started = Instant::now();
    let mut wait = Duration::from_millis(100);
    loop {
        match apply(app, d.id, &record, now).await {
            Ok(()) => {
                // A rescheduled or released delivery may be due before anything else
                // wakes the lane (the store only signals enqueues and replays).
                if matches!(record, Record::Reschedule { .. } | Record::Release) {
                    lane.wake.notify_one();
                }
                break;
            }
            Err(hookrelay_store::StoreError::UnknownDelivery { .. }) => break,
            Err(e) if started.elapsed() < RECORD_PATIENCE => {
                tracing::warn!(endpoint = %lane.name, error = %e, retry_in = ?wait, "cannot record a delivery outcome yet");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::error!(endpoint = %lane.name, error = %e, "gave up recording a delivery outcome");
                // Give the lease back so the delivery is attempted again, not held forever.
                let _ = app.store.release(d.id).await;
                break;
            }
        }
    }
}
