//! The admin listener: health, readiness, metrics, reload and dead letters.
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/healthz` | 200 while the process runs |
//! | GET | `/readyz` | 200 when the store answers and a config is loaded, else 503 |
//! | GET | `/metrics` | Prometheus text |
//! | POST | `/-/reload` | reloads the config file; 200 applied or unchanged, 422 rejected (the errors) |
//! | GET | `/dead-letters?endpoint=&limit=` | dead letters as JSON |
//! | POST | `/dead-letters/{id}/replay` | puts one dead letter back in its queue; an unparsed event is run through its route's current normalizer and delivered (`409` with the reason when it still cannot be) |
//! | POST | `/dead-letters/replay?endpoint=` | puts every dead letter of an endpoint back; for `:unparsed`, reruns each unparsed event as above |
//! | POST | `/endpoints/{name}/resume` | resumes an endpoint paused by `410 Gone` |
//! | GET | `/deliveries?endpoint=&state=&since=&before=&limit=` | the delivery history, newest first, a page at a time (`next`) |
//! | GET | `/deliveries/{webhook-id}?endpoint=` | the deliveries with this `webhook-id` (one per endpoint), with payload and attempts; 404 when none |
//! | GET | `/events/{idempotency_key}` | every delivery of one provider event, across endpoints; 404 when none |
//! | GET | `/`, `/ui/…` | the status page ([`crate::ui`]) |

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::middleware::{self, Next};
use axum::routing::{delete, get, post};
use bytes::Bytes;
use hookrelay_config::ReloadOutcome;
use hookrelay_core::secret::ct_eq;
use hookrelay_store::{DeadLetter, DeliveryId, DeliveryState, History, HistoryQuery};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower_http::limit::RequestBodyLimitLayer;

use crate::clock::now_ms;
use crate::deliver::Lanes;
use crate::ingest::accept::{Fanout, NotReplayed, UNPARSED_ENDPOINT, replay_unparsed};
use crate::logs::with_causes;
use crate::metrics::{EndpointScrape, Metrics, Scrape};
use hookrelay_config::Live;
use hookrelay_store::Store;

/// What the admin API uses.
pub(crate) struct Admin {
    pub(crate) live: Arc<Live>,
    pub(crate) store: Store,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) lanes: Arc<Lanes>,
    pub(crate) readiness: Arc<Readiness>,
    /// The status page's readings of the counters over the last hour.
    pub(crate) board: Arc<crate::ui::board::Board>,
}

impl Admin {
    /// Whether the configuration running is the file on disk now (`None`: the file cannot
    /// be read).
    pub(crate) async fn config_current(&self) -> Option<bool> {
        let path = self.live.path().to_path_buf();
        let on_disk = tokio::task::spawn_blocking(move || std::fs::read(path))
            .await
            .ok()
            .and_then(Result::ok);
        on_disk.map(|bytes| {
            hookrelay_config::Source::new("config", bytes).hash() == self.live.file_hash()
        })
    }

    /// Prometheus text of every metric, with the figures read now.
    async fn render_metrics(&self) -> String {
        let snapshot = self.live.snapshot();
        let now = now_ms();
        let mut endpoints = Vec::with_capacity(snapshot.endpoints.len());
        for ep in &snapshot.endpoints {
            // A figure the store cannot give now is left out, not shown as 0.
            let depth = self.store.queue_depth(&ep.name).await.ok();
            let overdue_seconds = match depth {
                None => None,
                Some(0) => Some(0.0),
                Some(_) => match self.store.next_due(&ep.name).await {
                    #[allow(clippy::cast_precision_loss)] // ms to s, far below 2^53
                    Ok(due) => Some(due.map_or(0.0, |due| (now - due).max(0) as f64 / 1000.0)),
                    Err(_) => None,
                },
            };
            endpoints.push(EndpointScrape {
                name: ep.name.clone(),
                depth,
                overdue_seconds,
                dead: self.store.dead_letter_count(&ep.name).await.ok(),
                paused: self.lanes.state(&ep.name).is_some_and(|(paused, _)| paused),
            });
        }
        let scrape = Scrape {
            endpoints,
            store_up: self.store.health().await.is_ok(),
            store: self.store.stats(),
            config_current: self.config_current().await,
            store_kind: self.store.kind(),
            store_disk_bytes: self.store.disk_bytes(),
        };
        self.metrics.set_generation(snapshot.generation);
        self.metrics.render(scrape)
    }
}

pub(crate) type Resp = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Resp {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn json_reply(status: StatusCode, v: &Value) -> Resp {
    reply(status, "application/json", v.to_string())
}

/// The outcome of a reload as JSON, and its status code.
pub(crate) fn outcome_json(o: &ReloadOutcome) -> (StatusCode, Value) {
    match o {
        ReloadOutcome::Applied {
            generation,
            hash,
            changes,
        } => (
            StatusCode::OK,
            json!({"outcome": "applied", "generation": generation, "hash": hash, "changes": changes}),
        ),
        ReloadOutcome::Rejected { errors } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"outcome": "rejected", "errors": errors.to_string().lines().collect::<Vec<_>>()}),
        ),
        ReloadOutcome::Unchanged => (StatusCode::OK, json!({"outcome": "unchanged"})),
    }
}

/// The answer to `POST /-/reload`: the outcome, or 500 when the reload itself failed (it
/// panicked or was cancelled: nothing is known to be applied, and it is not "unchanged").
fn reload_reply(joined: Result<ReloadOutcome, tokio::task::JoinError>) -> (StatusCode, Value) {
    match joined {
        Ok(outcome) => outcome_json(&outcome),
        Err(e) => {
            tracing::error!(error = %e, "reload failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"outcome": "failed", "error": format!("the reload did not finish: {e}")}),
            )
        }
    }
}

pub(crate) fn dead_letter_json(d: &DeadLetter) -> Value {
    let body: Value = serde_json::from_slice(&d.delivery.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&d.delivery.body).into_owned()));
    json!({
        "id": d.delivery.id.0,
        "endpoint": d.delivery.endpoint,
        "webhook_id": d.delivery.webhook_id,
        "attempts": d.delivery.attempts,
        "created_at_ms": d.delivery.created_at_ms,
        "dead_at_ms": d.dead_at_ms,
        "reason": d.reason,
        "status": d.status,
        "response": d.response,
        "last_error": d.delivery.last_error,
        "payload": body,
    })
}

/// A delivery's history as the admin API shows it; with its payload unless `brief` (the
/// lists).
pub(crate) fn history_json(h: &History, brief: bool) -> Value {
    let d = &h.delivery;
    let mut value = json!({
        "id": d.id.0,
        "endpoint": d.endpoint,
        "webhook_id": d.webhook_id,
        "state": h.state.as_str(),
        "created_at_ms": d.created_at_ms,
        "attempts": d.attempts,
        "last_error": d.last_error,
        "history": h.attempts.iter().map(|a| json!({
            "at_ms": a.at_ms,
            "outcome": a.outcome,
            "status": a.status,
            "duration_ms": a.duration_ms,
            "error": a.error,
            "response": a.response,
        })).collect::<Vec<_>>(),
        "dead": h.dead.as_ref().map(|g| json!({
            "reason": g.reason,
            "status": g.status,
            "response": g.response,
            "dead_at_ms": g.dead_at_ms,
        })),
    });
    if !brief && let Value::Object(fields) = &mut value {
        let payload: Value = serde_json::from_slice(&d.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&d.body).into_owned()));
        fields.insert("payload".into(), payload);
    }
    value
}

/// How many unparsed events one `POST /dead-letters/replay?endpoint=:unparsed` takes up,
/// the oldest first (their bodies are in memory together): call it again for more.
const RERUN_AT_MOST: usize = 100;

/// The fan-out the admin's replay of unparsed events shares with the listener.
fn fanout(app: &Admin) -> Fanout<'_> {
    Fanout {
        store: &app.store,
        metrics: &app.metrics,
        live: &app.live,
    }
}

/// Replays one unparsed event's dead letter through its route's current normalizer.
async fn rerun_one(app: &Admin, letter: &DeadLetter) -> Resp {
    match replay_unparsed(&fanout(app), letter).await {
        Ok((events, deliveries)) => json_reply(
            StatusCode::OK,
            &json!({"replayed": 1, "events": events, "deliveries": deliveries}),
        ),
        Err(NotReplayed::Still(reason)) => {
            json_reply(StatusCode::CONFLICT, &json!({"error": reason}))
        }
        Err(NotReplayed::Store(e)) => {
            json_reply(StatusCode::SERVICE_UNAVAILABLE, &json!({"error": e}))
        }
    }
}

/// Replays every unparsed event's dead letter (at most [`RERUN_AT_MOST`]): those the
/// current normalizers take are delivered and removed, the others stay, with their count
/// and the first reasons in the answer.
async fn rerun_all(app: &Admin) -> Resp {
    let letters = match app
        .store
        .dead_letters(Some(UNPARSED_ENDPOINT), RERUN_AT_MOST)
        .await
    {
        Ok(list) => list,
        Err(e) => {
            return json_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"error": e.to_string()}),
            );
        }
    };
    let (mut replayed, mut events, mut deliveries, mut still) = (0, 0, 0, 0);
    let mut reasons = Vec::new();
    for letter in &letters {
        match replay_unparsed(&fanout(app), letter).await {
            Ok((e, d)) => {
                replayed += 1;
                events += e;
                deliveries += d;
            }
            Err(NotReplayed::Still(reason)) => {
                still += 1;
                if reasons.len() < 5 {
                    reasons.push(json!({"id": letter.delivery.id.0, "error": reason}));
                }
            }
            Err(NotReplayed::Store(e)) => {
                return json_reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"error": e, "replayed": replayed}),
                );
            }
        }
    }
    json_reply(
        StatusCode::OK,
        &json!({"replayed": replayed, "events": events, "deliveries": deliveries,
                "still_unparsed": still, "errors": reasons}),
    )
}

/// Liveness facts `/readyz` reports besides the store.
#[derive(Debug, Default)]
pub(crate) struct Readiness {
    /// The public listener answers connections.
    listening: AtomicBool,
    /// SIGTERM was received: deliveries in flight are finishing.
    draining: AtomicBool,
}

impl Readiness {
    /// The public listener is bound and answers.
    pub(crate) fn set_listening(&self) {
        self.listening.store(true, Ordering::Release);
    }

    /// The sidecar is stopping.
    pub(crate) fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Why it is not ready, if it is not (the store aside).
    fn not_ready(&self) -> Option<&'static str> {
        if self.draining.load(Ordering::Acquire) {
            Some("draining: stopping after SIGTERM")
        } else if !self.listening.load(Ordering::Acquire) {
            Some("the public listener is not bound yet")
        } else {
            None
        }
    }
}

/// Largest request body the admin API reads (its requests carry none of note).
const MAX_ADMIN_BODY: usize = 64 * 1024;

pub(crate) type Shared = State<Arc<Admin>>;

fn error_reply(status: StatusCode, error: impl std::fmt::Display) -> Resp {
    json_reply(status, &json!({"error": error.to_string()}))
}

fn unavailable(e: &hookrelay_store::StoreError) -> Resp {
    error_reply(StatusCode::SERVICE_UNAVAILABLE, with_causes(e))
}

/// The admin API's routes: `/healthz`, `/readyz` and `/metrics` open to all (probes,
/// scrapes); everything else behind the token when one is configured.
pub(crate) fn router(app: Arc<Admin>) -> Router {
    let guarded = Router::new()
        .route("/-/reload", post(reload))
        .route(
            "/dead-letters",
            get(list_dead_letters).delete(delete_dead_letters),
        )
        .route("/dead-letters/replay", post(replay_endpoint))
        .route("/dead-letters/{id}", delete(delete_dead_letter))
        .route("/dead-letters/{id}/replay", post(replay_one))
        .route("/endpoints", get(endpoints))
        .route("/endpoints/{name}/resume", post(resume))
        .route("/deliveries", get(list_deliveries))
        .route("/deliveries/{webhook_id}", get(deliveries_of))
        .route("/events/{key}", get(event_deliveries))
        .route_layer(middleware::from_fn_with_state(app.clone(), require_token));
    Router::new()
        .merge(crate::ui::router(app.clone()))
        .route(
            "/healthz",
            get(|| async { reply(StatusCode::OK, "text/plain", "ok\n") }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(guarded)
        .fallback(|| async { error_reply(StatusCode::NOT_FOUND, "no such path") })
        .layer(RequestBodyLimitLayer::new(MAX_ADMIN_BODY))
        .with_state(app)
}

/// Lets a request through when no token is configured or it carries the token.
async fn require_token(State(app): Shared, req: Request<Body>, next: Next) -> Response<Body> {
    let snapshot = app.live.snapshot();
    let Some(token) = &snapshot.admin_token else {
        // Open on loopback: still not to a web page in someone's browser there.
        if let Err(why) = crate::ui::open_admin_allows(&req) {
            return error_reply(StatusCode::FORBIDDEN, why).map(Body::new);
        }
        return next.run(req).await;
    };
    let offered = bearer(req.headers());
    match offered {
        Some(offered) if ct_eq(offered.as_bytes(), token.expose().as_bytes()) => {
            next.run(req).await
        }
        offered => {
            app.metrics.admin_unauthorized();
            let why = if offered.is_some() {
                "wrong token"
            } else {
                "this path needs the admin token: Authorization: Bearer <admin.token>"
            };
            let mut resp = error_reply(StatusCode::UNAUTHORIZED, why).map(Body::new);
            resp.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
            resp
        }
    }
}

async fn readyz(State(app): Shared) -> Resp {
    if let Some(why) = app.readiness.not_ready() {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            format!("{why}\n"),
        );
    }
    match app.store.health().await {
        Ok(()) => reply(StatusCode::OK, "text/plain", "ready\n"),
        Err(e) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            format!("store unavailable: {}\n", with_causes(&e)),
        ),
    }
}

async fn metrics(State(app): Shared) -> Resp {
    reply(
        StatusCode::OK,
        "text/plain; version=0.0.4",
        app.render_metrics().await,
    )
}

async fn reload(State(app): Shared) -> Resp {
    let live = app.live.clone();
    let (status, v) = reload_reply(tokio::task::spawn_blocking(move || live.reload_now()).await);
    json_reply(status, &v)
}

/// `?endpoint=&limit=&older_than=` of the dead-letter paths.
#[derive(Debug, Deserialize)]
struct LetterQuery {
    endpoint: Option<String>,
    limit: Option<usize>,
    older_than: Option<String>,
}

/// `DELETE /dead-letters?endpoint=&older_than=`: an endpoint's dead letters, those older
/// than a duration (since they became dead letters), or both; one at least.
async fn delete_dead_letters(State(app): Shared, Query(q): Query<LetterQuery>) -> Resp {
    let older_than = match q.older_than.as_deref().map(humantime::parse_duration) {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => {
            return error_reply(
                StatusCode::BAD_REQUEST,
                format!("older_than: {e} (e.g. 7d, 12h)"),
            );
        }
    };
    if q.endpoint.is_none() && older_than.is_none() {
        return error_reply(
            StatusCode::BAD_REQUEST,
            "give endpoint, older_than or both (every dead letter is not deleted by accident)",
        );
    }
    // Without an age, what is dead now: letters dying meanwhile do not keep it going.
    let cutoff = older_than.map_or(now_ms().saturating_add(1), |d| {
        now_ms().saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    });
    match Lanes::delete_dead_letters(&app.store, q.endpoint.as_deref(), cutoff).await {
        Ok(n) => json_reply(StatusCode::OK, &json!({"deleted": n})),
        Err(e) => unavailable(&e),
    }
}

/// Most dead letters one list returns.
const MAX_LIST: usize = 1000;

async fn list_dead_letters(State(app): Shared, Query(q): Query<LetterQuery>) -> Resp {
    let limit = q.limit.unwrap_or(100).min(MAX_LIST);
    match app.store.dead_letters(q.endpoint.as_deref(), limit).await {
        Ok(list) => json_reply(
            StatusCode::OK,
            &Value::Array(list.iter().map(dead_letter_json).collect()),
        ),
        Err(e) => unavailable(&e),
    }
}

/// Why a dead letter of `endpoint` cannot be replayed now, if it cannot: its endpoint is
/// no longer configured, so it would sit in a queue nothing delivers.
fn not_configured(app: &Admin, endpoint: &str) -> Option<Resp> {
    if endpoint == UNPARSED_ENDPOINT || app.live.snapshot().endpoint(endpoint).is_some() {
        return None;
    }
    Some(error_reply(
        StatusCode::CONFLICT,
        format!(
            "endpoint {endpoint:?} is no longer configured: add it back to replay its dead \
             letters, or delete them"
        ),
    ))
}

async fn replay_endpoint(State(app): Shared, Query(q): Query<LetterQuery>) -> Resp {
    let Some(endpoint) = q.endpoint else {
        return error_reply(StatusCode::BAD_REQUEST, "endpoint query parameter required");
    };
    replay_endpoint_named(&app, endpoint).await
}

/// Puts every dead letter of `endpoint` back in its queue (reruns them for `:unparsed`);
/// refused when the endpoint is no longer configured.
pub(crate) async fn replay_endpoint_named(app: &Admin, endpoint: String) -> Resp {
    if endpoint == UNPARSED_ENDPOINT {
        return rerun_all(app).await;
    }
    if let Some(refused) = not_configured(app, &endpoint) {
        return refused;
    }
    match app.store.replay_endpoint(&endpoint, now_ms()).await {
        Ok(n) => json_reply(StatusCode::OK, &json!({"replayed": n})),
        Err(e) => unavailable(&e),
    }
}

/// A dead letter's id from its path segment.
fn parse_id(id: &str) -> Option<DeliveryId> {
    id.parse::<u64>().ok().map(DeliveryId)
}

fn bad_id() -> Resp {
    error_reply(StatusCode::BAD_REQUEST, "id must be a number")
}

fn no_such_letter() -> Resp {
    error_reply(StatusCode::NOT_FOUND, "no such dead letter")
}

pub(crate) async fn replay_one(State(app): Shared, Path(id): Path<String>) -> Resp {
    let Some(id) = parse_id(&id) else {
        return bad_id();
    };
    match app.store.find_dead_letter(id).await {
        Ok(None) => return no_such_letter(),
        Ok(Some(letter)) if letter.delivery.endpoint == UNPARSED_ENDPOINT => {
            return rerun_one(&app, &letter).await;
        }
        Ok(Some(letter)) => {
            if let Some(refused) = not_configured(&app, &letter.delivery.endpoint) {
                return refused;
            }
        }
        Err(e) => return unavailable(&e),
    }
    match app.store.replay(id, now_ms()).await {
        Ok(true) => json_reply(StatusCode::OK, &json!({"replayed": 1})),
        // Replayed or deleted by someone else since it was found.
        Ok(false) => no_such_letter(),
        Err(e) => unavailable(&e),
    }
}

pub(crate) async fn delete_dead_letter(State(app): Shared, Path(id): Path<String>) -> Resp {
    let Some(id) = parse_id(&id) else {
        return bad_id();
    };
    match app.store.delete_dead_letter(id).await {
        Ok(true) => json_reply(StatusCode::OK, &json!({"deleted": 1})),
        Ok(false) => no_such_letter(),
        Err(e) => unavailable(&e),
    }
}

/// `GET /endpoints`: each configured endpoint with its queue and state.
async fn endpoints(State(app): Shared) -> Resp {
    let snapshot = app.live.snapshot();
    let mut list = Vec::with_capacity(snapshot.endpoints.len());
    for ep in &snapshot.endpoints {
        let depth = app.store.queue_depth(&ep.name).await.ok();
        let (paused, last) = app.lanes.state(&ep.name).unwrap_or_default();
        let events = ep.events.as_ref().map(|events| {
            let mut by_channel: BTreeMap<String, Vec<Value>> = BTreeMap::new();
            for (channel, types) in events {
                let mut types: Vec<Value> = types.iter().map(|t| json!(t)).collect();
                types.sort_by_key(Value::to_string);
                by_channel.insert(
                    json!(channel).as_str().unwrap_or_default().to_owned(),
                    types,
                );
            }
            by_channel
        });
        let statuses = ep.statuses.as_ref().map(|statuses| {
            let mut statuses: Vec<Value> = statuses.iter().map(|s| json!(s)).collect();
            statuses.sort_by_key(Value::to_string);
            statuses
        });
        list.push(json!({
            "name": ep.name,
            "url": ep.url.as_str(),
            "description": ep.description,
            "events": events,
            "statuses": statuses,
            "rate_limit": ep.rate_limit.map(|g| json!({
                "per_second": g.per_second().get(),
                "burst": g.burst().get(),
            })),
            "paused": paused,
            "queue_depth": depth,
            "last_success_ms": last.success_ms,
            "last_error": last.error.as_ref().map(|(_, e)| e),
            "last_error_ms": last.error.as_ref().map(|(at, _)| at),
        }));
    }
    json_reply(StatusCode::OK, &Value::Array(list))
}

/// Most deliveries one history list returns.
const MAX_DELIVERIES: usize = 1000;

/// Most deliveries of one `webhook-id` returned, payloads included (an event has one per
/// endpoint it went to).
const MAX_CARRYING: usize = 100;

#[derive(Deserialize)]
struct DeliveryQuery {
    endpoint: Option<String>,
    state: Option<String>,
    since: Option<String>,
    before: Option<u64>,
    limit: Option<usize>,
}

/// A point in time given as epoch milliseconds, an RFC 3339 timestamp, or a duration ago
/// (`15m`, `2h`).
fn parse_since(text: &str, now: i64) -> Result<i64, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(at) = humantime::parse_rfc3339_weak(text) {
        let ms = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        return Ok(ms);
    }
    match humantime::parse_duration(text) {
        Ok(ago) => Ok(now.saturating_sub(i64::try_from(ago.as_millis()).unwrap_or(i64::MAX))),
        Err(_) => Err(format!(
            "since: {text:?} is neither a duration (15m, 2h), an RFC 3339 time nor epoch milliseconds"
        )),
    }
}

/// `GET /deliveries?endpoint=&state=&since=&before=&limit=`: the history, newest first, a
/// page at a time (`next` is the `before` of the next page).
async fn list_deliveries(State(app): Shared, Query(q): Query<DeliveryQuery>) -> Resp {
    let state = match q.state.as_deref().map(|s| (s, DeliveryState::parse(s))) {
        None => None,
        Some((_, Some(state))) => Some(state),
        Some((name, None)) => {
            return error_reply(
                StatusCode::BAD_REQUEST,
                format!(
                    "state: {name:?} is not one of queued, in_flight, delivered, dead, replayed"
                ),
            );
        }
    };
    let since_ms = match q.since.as_deref().map(|s| parse_since(s, now_ms())) {
        None => None,
        Some(Ok(ms)) => Some(ms),
        Some(Err(e)) => return error_reply(StatusCode::BAD_REQUEST, e),
    };
    let query = HistoryQuery {
        endpoint: q.endpoint,
        state,
        since_ms,
        before: q.before.map(DeliveryId),
        limit: q.limit.unwrap_or(100).clamp(1, MAX_DELIVERIES),
    };
    match app.store.histories(&query).await {
        Ok(page) => json_reply(
            StatusCode::OK,
            &json!({
                "deliveries": page.deliveries.iter().map(|h| history_json(h, true)).collect::<Vec<_>>(),
                "next": page.next.map(|id| id.0),
            }),
        ),
        Err(e) => unavailable(&e),
    }
}

#[derive(Deserialize)]
struct OneQuery {
    endpoint: Option<String>,
}

/// The deliveries carrying `webhook_id`, of one endpoint if `endpoint` says so: 404 when
/// there are none.
async fn carrying(app: &Admin, webhook_id: &str, endpoint: Option<&str>, key: &str) -> Resp {
    match app.store.history_of(webhook_id, MAX_CARRYING).await {
        Ok(found) => {
            let found: Vec<Value> = found
                .iter()
                .filter(|h| endpoint.is_none_or(|e| h.delivery.endpoint == e))
                .map(|h| history_json(h, false))
                .collect();
            if found.is_empty() {
                return error_reply(
                    StatusCode::NOT_FOUND,
                    format!(
                        "no delivery with {key} {webhook_id:?} (never received, or past history.retention)"
                    ),
                );
            }
            json_reply(
                StatusCode::OK,
                &json!({ key: webhook_id, "deliveries": found }),
            )
        }
        Err(e) => unavailable(&e),
    }
}

/// `GET /deliveries/{webhook-id}?endpoint=`: the delivery with this `webhook-id` to each
/// endpoint (one provider event shares one), with payload and every attempt.
async fn deliveries_of(
    State(app): Shared,
    Path(webhook_id): Path<String>,
    Query(q): Query<OneQuery>,
) -> Resp {
    carrying(&app, &webhook_id, q.endpoint.as_deref(), "webhook_id").await
}

/// `GET /events/{idempotency_key}`: every delivery of one provider event, across
/// endpoints (the payload's `idempotency_key` is the deliveries' `webhook-id`).
async fn event_deliveries(State(app): Shared, Path(key): Path<String>) -> Resp {
    carrying(&app, &key, None, "idempotency_key").await
}

async fn resume(State(app): Shared, Path(name): Path<String>) -> Resp {
    if app.lanes.resume(&name) {
        json_reply(StatusCode::OK, &json!({"resumed": name}))
    } else {
        error_reply(StatusCode::NOT_FOUND, "endpoint not paused")
    }
}

/// The token of an `Authorization: Bearer <token>` header, the scheme in any case (RFC
/// 9110: schemes are case-insensitive).
pub(crate) fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// How long a connection to the admin listener is kept: then it is closed once its request
/// in progress, if any, has been answered. Probes, scrapes and the CLI make one request
/// each, and a connection held open cannot keep a place for long.
const ADMIN_CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// Longest wait for a request's headers on the admin listener.
const ADMIN_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection past its lifetime (or at shutdown) may take to finish the request
/// in progress before it is closed anyway: a client that sends its body slowly, or never
/// reads the answer, cannot hold its place longer.
const ADMIN_CLOSE_GRACE: Duration = Duration::from_secs(10);

/// How long the admin listener keeps a connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// Kept this long, then closed once its request in progress is answered.
    pub(crate) lifetime: Duration,
    /// A request's headers arrive within this.
    pub(crate) headers: Duration,
    /// Closed after this much more, whatever it is doing.
    pub(crate) grace: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            lifetime: ADMIN_CONNECTION_LIFETIME,
            headers: ADMIN_HEADER_TIMEOUT,
            grace: ADMIN_CLOSE_GRACE,
        }
    }
}

/// Serves the admin API on `listener` until `shutdown`: HTTP/1.1 only, at most
/// `max_connections` at once (a connection over it is closed at once and counted), each
/// kept for [`ADMIN_CONNECTION_LIFETIME`], its request headers within
/// [`ADMIN_HEADER_TIMEOUT`]. At the end of its lifetime, and at shutdown, a connection
/// answers the request in progress and then closes, or is closed [`ADMIN_CLOSE_GRACE`]
/// later. HTTP/2 is not served: each connection could hold 200 requests' bodies at once.
pub(crate) async fn serve(
    app: Arc<Admin>,
    listener: TcpListener,
    max_connections: usize,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let metrics = app.metrics.clone();
    serve_with(
        router(app),
        &metrics,
        listener,
        max_connections,
        shutdown,
        Timing::default(),
    )
    .await;
}

/// [`serve`] of `service`, its connections timed by `timing`.
pub(crate) async fn serve_with(
    service: Router,
    metrics: &Arc<Metrics>,
    listener: TcpListener,
    max_connections: usize,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    timing: Timing,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    use hyper_util::service::TowerToHyperService;
    let permits = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timing.headers);
    let builder = Arc::new(builder);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, most likely: wait rather than spin.
                tracing::warn!(error = %e, "admin listener cannot accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            metrics.connection_dropped("admin_connections");
            drop(stream);
            continue;
        };
        let (service, builder) = (
            TowerToHyperService::new(service.clone()),
            Arc::clone(&builder),
        );
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let deadline = tokio::time::sleep(timing.lifetime);
            tokio::pin!(deadline);
            let mut closing = false;
            loop {
                tokio::select! {
                    _ = connection.as_mut() => break,
                    () = &mut deadline => {
                        if closing {
                            // The grace is over: dropped, whatever it was doing.
                            break;
                        }
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                        deadline.as_mut().reset(tokio::time::Instant::now() + timing.grace);
                    }
                    _ = stop.wait_for(|stop| *stop), if !closing => {
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                        deadline.as_mut().reset(tokio::time::Instant::now() + timing.grace);
                    }
                }
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_read_in_any_case() {
        let with = |value: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(
                http::header::AUTHORIZATION,
                value.parse().expect("header value"),
            );
            bearer(&headers).map(str::to_owned)
        };
        for value in ["Bearer tok", "bearer tok", "BEARER  tok ", " Bearer tok"] {
            assert_eq!(with(value).as_deref(), Some("tok"), "{value:?}");
        }
        for value in ["Basic tok", "Bearertok", "tok"] {
            assert_eq!(with(value), None, "{value:?}");
        }
        assert_eq!(bearer(&http::HeaderMap::new()), None);
    }

    /// A listener serving one route that reads a body, timed by `timing`.
    async fn echo(timing: Timing) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let service = Router::new().route(
            "/echo",
            post(|body: Bytes| async move { body.len().to_string() }),
        );
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let metrics = Arc::new(Metrics::default());
            serve_with(service, &metrics, listener, 4, stopped, timing).await;
            drop(stop);
        });
        addr
    }

    /// Everything the server sends on `conn` until it closes it (within 10 s).
    async fn until_closed(conn: &mut tokio::net::TcpStream) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut got))
            .await
            .expect("the connection is closed")
            .expect("read");
        got
    }

    #[tokio::test]
    async fn a_connection_past_its_lifetime_is_closed_even_mid_request() {
        use tokio::io::AsyncWriteExt;
        let addr = echo(Timing {
            lifetime: Duration::from_millis(100),
            headers: Duration::from_secs(30),
            grace: Duration::from_millis(100),
        })
        .await;
        // A body that never comes in full keeps no place beyond the grace.
        let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
        slow.write_all(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nab")
            .await
            .expect("write");
        until_closed(&mut slow).await;
        // A request that completes is answered.
        let mut quick = tokio::net::TcpStream::connect(addr).await.expect("connect");
        quick
            .write_all(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nab")
            .await
            .expect("write");
        let answer = until_closed(&mut quick).await;
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }

    #[tokio::test]
    async fn http2_is_not_served() {
        use tokio::io::AsyncWriteExt;
        let addr = echo(Timing::default()).await;
        let mut h2 = tokio::net::TcpStream::connect(addr).await.expect("connect");
        h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .expect("write");
        let answer = until_closed(&mut h2).await;
        // No SETTINGS frame (an HTTP/2 server's first bytes): an HTTP/1 error, or nothing.
        assert!(
            answer.is_empty() || answer.starts_with(b"HTTP/1.1 "),
            "{answer:?}"
        );
    }

    #[tokio::test]
    async fn a_reload_that_panicked_is_a_failure_not_unchanged() {
        let panicked = tokio::task::spawn_blocking(|| -> ReloadOutcome {
            panic!("a reload that panicked");
        })
        .await;
        let (status, v) = reload_reply(panicked);
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(v["outcome"], "failed");

        let (status, v) = reload_reply(Ok(ReloadOutcome::Unchanged));
        assert_eq!(
            (status, v["outcome"].as_str()),
            (StatusCode::OK, Some("unchanged"))
        );
    }
}
