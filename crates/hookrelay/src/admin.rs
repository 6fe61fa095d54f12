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

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hookrelay_config::ReloadOutcome;
use hookrelay_store::{DeadLetter, DeliveryId};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::clock::now_ms;
use crate::deliver::Lanes;
use crate::ingest::accept::{Fanout, NotReplayed, UNPARSED_ENDPOINT, replay_unparsed};
use crate::metrics::{Metrics, StoreState};
use hookrelay_config::Live;
use hookrelay_store::Store;

/// What the admin API uses.
pub(crate) struct Admin {
    pub(crate) live: Arc<Live>,
    pub(crate) store: Store,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) lanes: Arc<Lanes>,
}

impl Admin {
    /// Prometheus text of every metric.
    async fn render_metrics(&self) -> String {
        let snapshot = self.live.snapshot();
        let mut depth = Vec::with_capacity(snapshot.endpoints.len());
        for ep in &snapshot.endpoints {
            depth.push((
                ep.name.clone(),
                self.store.queue_depth(&ep.name).await.unwrap_or(0),
            ));
        }
        let store = StoreState {
            up: self.store.health().await.is_ok(),
            stats: self.store.stats(),
        };
        self.metrics.set_generation(snapshot.generation);
        self.metrics.render(&depth, &store)
    }
}

type Resp = Response<Full<Bytes>>;

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
        ReloadOutcome::Applied { generation, hash } => (
            StatusCode::OK,
            json!({"outcome": "applied", "generation": generation, "hash": hash}),
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

/// `error` and its causes, `: `-separated (a full disk says so).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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

fn query_param(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    })
}

async fn route(app: Arc<Admin>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method(), segments.as_slice()) {
        (&Method::GET, ["healthz"]) => reply(StatusCode::OK, "text/plain", "ok\n"),
        (&Method::GET, ["readyz"]) => match app.store.health().await {
            Ok(()) => reply(StatusCode::OK, "text/plain", "ready\n"),
            Err(e) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("store unavailable: {}\n", with_causes(&e)),
            ),
        },
        (&Method::GET, ["metrics"]) => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            app.render_metrics().await,
        ),
        (&Method::POST, ["-", "reload"]) => {
            let live = app.live.clone();
            let (status, v) =
                reload_reply(tokio::task::spawn_blocking(move || live.reload_now()).await);
            json_reply(status, &v)
        }
        (&Method::GET, ["dead-letters"]) => {
            let endpoint = query_param(&req, "endpoint");
            let limit = query_param(&req, "limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(100);
            match app.store.dead_letters(endpoint.as_deref(), limit).await {
                Ok(list) => json_reply(
                    StatusCode::OK,
                    &Value::Array(list.iter().map(dead_letter_json).collect()),
                ),
                Err(e) => json_reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"error": e.to_string()}),
                ),
            }
        }
        (&Method::POST, ["dead-letters", "replay"]) => {
            let Some(endpoint) = query_param(&req, "endpoint") else {
                return json_reply(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "endpoint query parameter required"}),
                );
            };
            if endpoint == UNPARSED_ENDPOINT {
                return rerun_all(&app).await;
            }
            match app.store.replay_endpoint(&endpoint, now_ms()).await {
                Ok(n) => json_reply(StatusCode::OK, &json!({"replayed": n})),
                Err(e) => json_reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"error": e.to_string()}),
                ),
            }
        }
        (&Method::POST, ["dead-letters", id, "replay"]) => {
            let Ok(id) = id.parse::<u64>() else {
                return json_reply(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "id must be a number"}),
                );
            };
            let unavailable = |e: hookrelay_store::StoreError| {
                json_reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"error": e.to_string()}),
                )
            };
            let not_found = || {
                json_reply(
                    StatusCode::NOT_FOUND,
                    &json!({"error": "no such dead letter"}),
                )
            };
            match app.store.find_dead_letter(DeliveryId(id)).await {
                Ok(None) => return not_found(),
                Ok(Some(letter)) if letter.delivery.endpoint == UNPARSED_ENDPOINT => {
                    return rerun_one(&app, &letter).await;
                }
                Ok(Some(_)) => {}
                Err(e) => return unavailable(e),
            }
            match app.store.replay(DeliveryId(id), now_ms()).await {
                Ok(true) => json_reply(StatusCode::OK, &json!({"replayed": 1})),
                // Replayed by someone else since it was found.
                Ok(false) => not_found(),
                Err(e) => unavailable(e),
            }
        }
        (&Method::POST, ["endpoints", name, "resume"]) => {
            if app.lanes.resume(name) {
                json_reply(StatusCode::OK, &json!({"resumed": name}))
            } else {
                json_reply(
                    StatusCode::NOT_FOUND,
                    &json!({"error": "endpoint not paused"}),
                )
            }
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

/// Serves the admin API on `listener` until `shutdown` turns true.
pub(crate) async fn serve(
    app: Arc<Admin>,
    listener: TcpListener,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (stream, _peer): (_, SocketAddr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(route(app, req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
