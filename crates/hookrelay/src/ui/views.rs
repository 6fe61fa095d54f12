//! The status page's views, rendered on the server from the live configuration, the
//! store and the metrics.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use hookrelay_config::{Endpoint, Snapshot};
use hookrelay_store::{DeliveryId, DeliveryState, History, HistoryQuery};
use http::{Response, StatusCode, Uri};
use serde::Deserialize;
use serde_json::Value;

use super::board;
use super::html::{self, Frame, badge, button, chart, clock, esc, q, time_ago};
use super::{Notice, html_reply, short};
use crate::admin::Admin;
use crate::clock::now_ms;
use crate::ingest::accept::UNPARSED_ENDPOINT;
use crate::logs::with_causes;

type Shared = State<Arc<Admin>>;

/// The most characters of a response or error a list shows (the delivery shows all the
/// store kept).
const SHORT: usize = 160;

/// Rows one page of the deliveries list shows.
const PAGE: usize = 50;

/// Histories a provider filter reads for one page at most: the history has no index by
/// provider, so the filter reads pages until it has [`PAGE`] rows or this many.
const PROVIDER_SCAN: usize = 150;

/// Calls to the store's history one page of the deliveries list makes at most.
const STORE_CALLS: usize = 3;

/// The path and query of the page at `uri`, for its buttons to come back to.
fn here(uri: &Uri, default: &str) -> String {
    uri.path_and_query()
        .map_or(default, http::uri::PathAndQuery::as_str)
        .to_owned()
}

/// The warning shown in place of what the store could not give.
fn store_failed(why: &str) -> String {
    format!(
        "<p class=\"warn\">The store did not answer: {}</p>",
        esc(why)
    )
}

/// A minimal page (login, refusals): no navigation.
pub(super) fn plain(title: &str, message: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"color-scheme\" content=\"light dark\"><title>{t} · hookrelay</title>\
<link rel=\"stylesheet\" href=\"/ui/assets/style.css\"></head><body>\
<main id=\"main\" class=\"narrow\"><h1>{t}</h1><p>{m}</p></main></body></html>\n",
        t = esc(title),
        m = esc(message),
    )
}

/// The sign-in page: one field for the admin token.
pub(super) fn login(next: &str, message: Option<&str>) -> String {
    let (message, described) = message.map_or_else(Default::default, |m| {
        (
            format!(
                "<p class=\"notice\" role=\"alert\" id=\"login-message\">{}</p>",
                esc(m)
            ),
            " aria-describedby=\"login-message\"",
        )
    });
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"color-scheme\" content=\"light dark\"><title>Sign in · hookrelay</title>\
<link rel=\"stylesheet\" href=\"/ui/assets/style.css\"></head><body>\
<main id=\"main\" class=\"narrow\"><h1>hookrelay status</h1>{message}\
<form method=\"post\" action=\"/login\" class=\"login\">{next}\
<label for=\"token\">Admin token</label>\
<input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus{described}>\
<button type=\"submit\">Sign in</button></form>\
<p class=\"hint\">The token is <code>admin.token</code> of the configuration. The page keeps a \
cookie derived from it for 12 hours; a new token signs everyone out.</p></main></body></html>\n",
        next = html::hidden("next", next),
    )
}

fn frame<'a>(app: &Admin, title: &'a str, view: &'a str, notice: &'a Notice) -> Frame<'a> {
    let snapshot = app.live.snapshot();
    Frame {
        title,
        view,
        notice: notice.get(),
        signed_in: snapshot.admin_token.is_some(),
        generation: snapshot.generation,
        now_ms: now_ms(),
    }
}

/// What the page knows of an endpoint now.
struct EndpointNow {
    depth: Option<u64>,
    /// When the first delivery of the queue is due (Unix ms).
    due_ms: Option<i64>,
    paused: bool,
    last: crate::deliver::lane::Last,
    dead: Option<u64>,
}

async fn endpoint_now(app: &Admin, name: &str) -> EndpointNow {
    let depth = app.store.queue_depth(name).await.ok();
    let due_ms = match depth {
        Some(n) if n > 0 => app.store.next_due(name).await.ok().flatten(),
        _ => None,
    };
    let (paused, last) = app.lanes.state(name).unwrap_or_default();
    EndpointNow {
        depth,
        due_ms,
        paused,
        last,
        dead: app.store.dead_letter_count(name).await.ok(),
    }
}

fn figure(n: Option<u64>) -> String {
    n.map_or_else(
        || "<span title=\"the store did not answer\">?</span>".to_owned(),
        |n| n.to_string(),
    )
}

fn endpoint_pick(name: &str) -> impl Fn(&crate::metrics::Tallies) -> Option<(u64, u64)> + '_ {
    move |t| t.endpoints.get(name).copied()
}

fn route_pick(path: &str) -> impl Fn(&crate::metrics::Tallies) -> Option<(u64, u64)> + '_ {
    move |t| t.routes.get(path).copied()
}

/// `GET /`: the configuration, the last reload, callbacks per route in the last five
/// minutes and each endpoint's last hour.
pub(super) async fn overview(
    State(app): Shared,
    Extension(n): Extension<Notice>,
) -> Response<Body> {
    let snapshot = app.live.snapshot();
    let now = now_ms();
    let readings = app.board.readings();
    let current = board::read(&app.metrics, &snapshot, now);
    let mut out = String::new();

    // The configuration.
    let on_disk = app.config_current().await;
    let _ = write!(
        out,
        "<section aria-labelledby=\"config-h\"><h2 id=\"config-h\">Configuration</h2><div id=\"config\" data-live><dl class=\"facts\">\
<dt>File</dt><dd><code>{path}</code></dd>\
<dt>Generation</dt><dd>{generation}</dd>\
<dt>Hash</dt><dd><code title=\"{hash}\">{hash_short}</code></dd>\
<dt>Running the file on disk</dt><dd>{current}</dd>\
<dt>Store</dt><dd>{store} {store_state}</dd>",
        path = esc(&app.live.path().display().to_string()),
        generation = snapshot.generation,
        hash = esc(&snapshot.hash),
        hash_short = esc(&short(&snapshot.hash, 12)),
        current = match on_disk {
            Some(true) => badge("yes"),
            Some(false) => format!(
                "{} <span class=\"hint\">the file changed and was not applied: see the last reload</span>",
                badge("no")
            ),
            None => badge("unreadable"),
        },
        store = esc(app.store.kind()),
        store_state = if app.store.health().await.is_ok() {
            badge("up")
        } else {
            badge("down")
        },
    );
    match app.metrics.last_reload() {
        None => out.push_str("<dt>Last reload</dt><dd>none since the start</dd></dl>"),
        Some(r) => {
            let _ = write!(
                out,
                "<dt>Last reload</dt><dd>{} {}</dd></dl>",
                badge(r.outcome),
                time_ago(r.at_ms, now)
            );
            if !r.lines.is_empty() {
                let what = if r.outcome == "rejected" {
                    "Why it was refused (the running configuration stayed)"
                } else {
                    "What changed"
                };
                let _ = write!(out, "<p>{what}:</p><ul class=\"lines\">");
                for line in r.lines.iter().take(50) {
                    let _ = write!(out, "<li><code>{}</code></li>", esc(line));
                }
                out.push_str("</ul>");
            }
        }
    }
    out.push_str("</div></section>");

    // Callbacks per route.
    let five_ago = now - 5 * 60_000;
    let _ = write!(
        out,
        "<section aria-labelledby=\"routes-h\"><h2 id=\"routes-h\">Callbacks, last 5 minutes</h2>\
<div id=\"routes\" data-live><table><thead><tr><th scope=\"col\">Route</th><th scope=\"col\">Provider</th>\
<th scope=\"col\" class=\"num\">Received</th><th scope=\"col\" class=\"num\">Rejected</th></tr></thead><tbody>"
    );
    for (path, route) in &snapshot.routes {
        let (received, rejected) = board::since(&readings, &current, five_ago, route_pick(path));
        let rejected_cell = if rejected > 0 {
            format!("<span class=\"badge bad\">{rejected}</span>")
        } else {
            "0".to_owned()
        };
        let _ = write!(
            out,
            "<tr><th scope=\"row\"><code>{}</code></th><td>{}</td><td class=\"num\">{received}</td><td class=\"num\">{rejected_cell}</td></tr>",
            esc(path),
            esc(route.provider.id()),
        );
    }
    if snapshot.routes.is_empty() {
        out.push_str("<tr><td colspan=\"4\">No routes configured.</td></tr>");
    }
    out.push_str("</tbody></table></div></section>");

    // Endpoints, the last hour.
    let _ = write!(
        out,
        "<section aria-labelledby=\"eps-h\"><h2 id=\"eps-h\">Endpoints, last hour</h2>\
<p class=\"hint\">Attempts per minute: <span class=\"key d\">delivered</span> <span class=\"key f\">failed</span>.</p>\
<div id=\"endpoint-charts\" data-live><table><thead><tr><th scope=\"col\">Endpoint</th><th scope=\"col\">Per minute</th>\
<th scope=\"col\" class=\"num\">Delivered</th><th scope=\"col\" class=\"num\">Failed</th><th scope=\"col\" class=\"num\">Queued</th>\
<th scope=\"col\">State</th></tr></thead><tbody>"
    );
    for ep in &snapshot.endpoints {
        let state = endpoint_now(&app, &ep.name).await;
        let steps = board::steps(&readings, &current, endpoint_pick(&ep.name));
        // The hour the chart shows.
        let steps = &steps[steps.len().saturating_sub(60)..];
        let (delivered, failed) = steps.iter().fold((0, 0), |(d, f), (a, b)| (d + a, f + b));
        let _ = write!(
            out,
            "<tr><th scope=\"row\"><a href=\"/ui/deliveries?endpoint={qn}\">{name}</a></th><td>{chart}</td>\
<td class=\"num\">{delivered}</td><td class=\"num\">{failed}</td><td class=\"num\">{depth}</td><td>{state}</td></tr>",
            qn = q(&ep.name),
            name = esc(&ep.name),
            chart = chart(&ep.name, steps),
            depth = figure(state.depth),
            state = if state.paused {
                badge("paused")
            } else {
                badge("active")
            },
        );
    }
    out.push_str("</tbody></table></div></section>");
    let f = frame(&app, "Overview", "/", &n);
    html_reply(StatusCode::OK, html::page(&f, &out))
}

/// An endpoint's filter in words.
fn filter_text(ep: &Endpoint) -> String {
    let mut out = String::new();
    match &ep.events {
        None => out.push_str("every event"),
        Some(events) => {
            let mut parts: Vec<String> = events
                .iter()
                .map(|(channel, types)| {
                    let mut types: Vec<String> = types
                        .iter()
                        .map(|t| serde_json::json!(t).as_str().unwrap_or_default().to_owned())
                        .collect();
                    types.sort();
                    format!(
                        "{}: {}",
                        serde_json::json!(channel).as_str().unwrap_or_default(),
                        types.join(", ")
                    )
                })
                .collect();
            parts.sort();
            out.push_str(&parts.join("; "));
        }
    }
    if let Some(statuses) = &ep.statuses {
        let mut statuses: Vec<String> = statuses
            .iter()
            .map(|s| serde_json::json!(s).as_str().unwrap_or_default().to_owned())
            .collect();
        statuses.sort();
        let _ = write!(out, " (statuses: {})", statuses.join(", "));
    }
    out
}

/// `GET /ui/endpoints`: every endpoint, with its queue and state.
pub(super) async fn endpoints(
    State(app): Shared,
    Extension(n): Extension<Notice>,
) -> Response<Body> {
    let snapshot = app.live.snapshot();
    let now = now_ms();
    let readings = app.board.readings();
    let current = board::read(&app.metrics, &snapshot, now);
    let mut out = String::from("<div id=\"endpoints\" data-live class=\"cards\">");
    for (index, ep) in snapshot.endpoints.iter().enumerate() {
        let state = endpoint_now(&app, &ep.name).await;
        let ((delivered, _), from_ms) = board::since_from(
            &readings,
            &current,
            now - 5 * 60_000,
            endpoint_pick(&ep.name),
        );
        let span_s = from_ms.map_or(0, |from| (now - from).max(0) / 1000);
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let rate = if span_s > 0 {
            let over = if span_s < 120 {
                format!("{span_s} s")
            } else {
                format!("{} min", span_s / 60)
            };
            format!(
                "{:.2}/s over the last {over}",
                delivered as f64 / span_s as f64
            )
        } else {
            "not measured yet".to_owned()
        };
        let id = format!("ep-{index}");
        let _ = write!(
            out,
            "<section class=\"card\" aria-labelledby=\"{id}\"><h2 id=\"{id}\">{name} {paused}</h2>",
            name = esc(&ep.name),
            paused = if state.paused {
                badge("paused")
            } else {
                badge("active")
            },
        );
        if state.paused {
            let _ = write!(
                out,
                "<p class=\"warn\">Paused: the endpoint answered 410 Gone. Deliveries wait in its queue until it is resumed. {}</p>",
                button(
                    &format!("/ui/endpoints/{}/resume", seg(&ep.name)),
                    "/ui/endpoints",
                    &format!("Resume {}", ep.name),
                    None
                )
            );
        }
        let _ = write!(
            out,
            "<dl class=\"facts\"><dt>URL</dt><dd><code>{url}</code></dd>\
<dt>Description</dt><dd>{description}</dd>\
<dt>Events</dt><dd>{filter}</dd>\
<dt>Rate limit</dt><dd>{limit}</dd>\
<dt>Delivered</dt><dd>{rate}</dd>\
<dt>Queued</dt><dd>{depth}{overdue}</dd>\
<dt>Dead letters</dt><dd><a href=\"/ui/dead-letters?endpoint={qn}\">{dead}</a></dd>\
<dt>Last success</dt><dd>{success}</dd>\
<dt>Last error</dt><dd>{error}</dd></dl>\
<p><a href=\"/ui/deliveries?endpoint={qn}\">Deliveries to {name}</a></p></section>",
            url = esc(&shown_url(&ep.url)),
            description = ep
                .description
                .as_deref()
                .map_or_else(|| "—".to_owned(), esc),
            filter = esc(&filter_text(ep)),
            limit = ep.rate_limit.map_or_else(
                || "none".to_owned(),
                |g| format!("{}/s, bursts of {}", g.per_second().get(), g.burst().get())
            ),
            depth = figure(state.depth),
            overdue = state
                .due_ms
                .map(|due| if due <= now {
                    format!(", the first due {} ago", html::ago(due, now))
                } else {
                    format!(", the next attempt in {}", html::ago(now, due))
                })
                .unwrap_or_default(),
            qn = q(&ep.name),
            dead = figure(state.dead),
            name = esc(&ep.name),
            success = state
                .last
                .success_ms
                .map_or_else(|| "none yet".to_owned(), |ms| time_ago(ms, now)),
            error = state.last.error.as_ref().map_or_else(
                || "none".to_owned(),
                |(at, e)| format!(
                    "{} <code>{}</code>",
                    time_ago(*at, now),
                    esc(&short(e, SHORT))
                )
            ),
        );
    }
    if snapshot.endpoints.is_empty() {
        out.push_str("<p>No endpoints configured.</p>");
    }
    out.push_str("</div>");
    let f = frame(&app, "Endpoints", "/ui/endpoints", &n);
    html_reply(StatusCode::OK, html::page(&f, &out))
}

/// `text` as one path segment: every byte but ASCII letters, digits, `-`, `_` and `~`
/// percent-encoded (a `.` too, so `.` and `..` stay names).
fn seg(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An endpoint URL as the page shows it: a password and the query's values, which may
/// be credentials, redacted.
fn shown_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    if !shown.username().is_empty() {
        let _ = shown.set_username("redacted");
    }
    if shown.password().is_some() {
        let _ = shown.set_password(Some("redacted"));
    }
    if shown.query().is_some() {
        // A key without a value may be the secret itself.
        let keys: Vec<String> = shown
            .query_pairs()
            .map(|(k, v)| {
                if v.is_empty() {
                    "redacted".to_owned()
                } else {
                    k.into_owned()
                }
            })
            .collect();
        shown
            .query_pairs_mut()
            .clear()
            .extend_pairs(keys.iter().map(|k| (k.as_str(), "redacted")));
    }
    shown.set_fragment(None);
    shown.to_string()
}

/// The fields of a payload a list shows: vendor, channel, event and status.
struct Summary {
    vendor: String,
    channel: String,
    event: String,
}

fn summary(body: &[u8]) -> Summary {
    let whole: Value = serde_json::from_slice(body).unwrap_or_default();
    // `format: standard` wraps the fields as `{"type", "timestamp", "data": {…}}`.
    let v = if whole["type"].is_string() && whole["data"].is_object() {
        &whole["data"]
    } else {
        &whole
    };
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let status = text(&v["suprsend_status"]["status"]);
    let event = match text(&v["event_type"]) {
        e if status.is_empty() => e,
        e => format!("{e}: {status}"),
    };
    Summary {
        vendor: text(&v["vendor_name"]),
        channel: text(&v["channel"]),
        event,
    }
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    endpoint: Option<String>,
    state: Option<String>,
    provider: Option<String>,
    before: Option<u64>,
}

fn select(id: &str, label: &str, current: Option<&str>, options: &[String]) -> String {
    let mut out = format!(
        "<div class=\"field\"><label for=\"{id}\">{label}</label><select id=\"{id}\" name=\"{id}\"><option value=\"\">all</option>"
    );
    for o in options {
        let selected = if current == Some(o.as_str()) {
            " selected"
        } else {
            ""
        };
        let _ = write!(out, "<option{selected}>{}</option>", esc(o));
    }
    out.push_str("</select></div>");
    out
}

fn providers(snapshot: &Snapshot) -> Vec<String> {
    snapshot
        .routes
        .values()
        .map(|r| r.provider.id().to_owned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// `GET /ui/deliveries`: the history, newest first, filtered by endpoint, state and
/// provider.
pub(super) async fn deliveries(
    State(app): Shared,
    Query(lq): Query<ListQuery>,
    Extension(n): Extension<Notice>,
) -> Response<Body> {
    let snapshot = app.live.snapshot();
    let now = now_ms();
    let nonempty = |s: &Option<String>| s.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
    let (endpoint, state_name, provider) = (
        nonempty(&lq.endpoint),
        nonempty(&lq.state),
        nonempty(&lq.provider),
    );
    let state = state_name.as_deref().and_then(DeliveryState::parse);
    let mut out = String::from(
        "<form method=\"get\" action=\"/ui/deliveries\" class=\"filters\" aria-label=\"Filter deliveries\">",
    );
    let endpoints: Vec<String> = snapshot.endpoints.iter().map(|e| e.name.clone()).collect();
    let states: Vec<String> = ["queued", "in_flight", "delivered", "dead", "replayed"]
        .map(str::to_owned)
        .to_vec();
    out.push_str(&select(
        "endpoint",
        "Endpoint",
        endpoint.as_deref(),
        &endpoints,
    ));
    out.push_str(&select("state", "State", state_name.as_deref(), &states));
    out.push_str(&select(
        "provider",
        "Provider",
        provider.as_deref(),
        &providers(&snapshot),
    ));
    out.push_str("<button type=\"submit\">Show</button></form>");
    if state_name.is_some() && state.is_none() {
        out.push_str("<p class=\"warn\">Unknown state: showing every state.</p>");
    }

    // Pages of the history until a page's worth matches, for at most [`STORE_CALLS`] calls
    // to the store and [`PROVIDER_SCAN`] deliveries read (each call looks at a bounded
    // number of deliveries itself). The lists of the history carry no payloads: each row's
    // is read by its id. `cursor` is the last delivery looked at: the next page starts
    // below it.
    let mut rows: Vec<(History, Summary)> = Vec::new();
    let mut cursor = lq.before.map(DeliveryId);
    let mut looked = 0;
    let mut more = false;
    let mut error = None;
    let mut calls = 0;
    for _ in 0..STORE_CALLS {
        calls += 1;
        let query = HistoryQuery {
            endpoint: endpoint.clone(),
            state,
            since_ms: None,
            before: cursor,
            limit: if provider.is_some() {
                PAGE
            } else {
                PAGE - rows.len()
            },
        };
        let page = match app.store.histories(&query).await {
            Ok(page) => page,
            Err(e) => {
                error = Some(with_causes(&e));
                break;
            }
        };
        let mut cut = false;
        for h in page.deliveries {
            if rows.len() == PAGE {
                cut = true;
                break;
            }
            cursor = Some(h.delivery.id);
            looked += 1;
            let body = match app.store.history(h.delivery.id).await {
                Ok(Some(full)) => full.delivery.body,
                _ => bytes::Bytes::new(),
            };
            let s = summary(&body);
            if provider.as_deref().is_none_or(|p| s.vendor == p) {
                rows.push((h, s));
            }
        }
        // The store stops at its own scan limit with a `next` even when it found none.
        if let Some(next) = page.next
            && !cut
        {
            cursor = Some(next);
        }
        more = cut || page.next.is_some();
        if !more || rows.len() == PAGE || looked >= PROVIDER_SCAN {
            break;
        }
    }
    // A list that took more than one read of the history is not read again every few
    // seconds: the refresh would repeat that work while someone looks.
    let live = if calls == 1 { " data-live" } else { "" };
    let _ = write!(
        out,
        "<div id=\"deliveries\"{live}><table><caption class=\"sr-only\">Deliveries, newest first</caption><thead><tr>\
<th scope=\"col\">Received</th><th scope=\"col\">Endpoint</th><th scope=\"col\">Provider</th><th scope=\"col\" class=\"wide\">Channel</th>\
<th scope=\"col\">Event</th><th scope=\"col\">State</th><th scope=\"col\" class=\"num wide\">Attempts</th><th scope=\"col\">Delivery</th></tr></thead><tbody>"
    );
    for (h, s) in &rows {
        let _ = write!(
            out,
            "<tr><td>{at}</td><td>{ep}</td><td>{vendor}</td><td class=\"wide\">{channel}</td><td>{event}</td><td>{state}</td>\
<td class=\"num wide\">{attempts}</td><td><a href=\"/ui/deliveries/{qid}?endpoint={qep}\"><code>{id}</code></a></td></tr>",
            at = time_ago(h.delivery.created_at_ms, now),
            ep = esc(&h.delivery.endpoint),
            vendor = esc(&s.vendor),
            channel = esc(&s.channel),
            event = esc(&s.event),
            state = badge(h.state.as_str()),
            attempts = h.attempts.len(),
            qid = seg(&h.delivery.webhook_id),
            qep = q(&h.delivery.endpoint),
            id = esc(&short(&h.delivery.webhook_id, 40)),
        );
    }
    if rows.is_empty() {
        out.push_str("<tr><td colspan=\"8\">No deliveries match.</td></tr>");
    }
    out.push_str("</tbody></table>");
    if let Some(e) = &error {
        out.push_str(&store_failed(e));
    }
    // The pager is part of what refreshes: its cursor always follows the rows shown.
    if let (Some(cursor), true, None) = (cursor, more, &error) {
        if rows.len() < PAGE {
            let _ = write!(
                out,
                "<p class=\"hint\">{looked} deliveries looked at for this page; there are older ones.</p>"
            );
        }
        let mut link = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("endpoint", &endpoint),
            ("state", &state_name),
            ("provider", &provider),
        ] {
            if let Some(v) = v {
                link.append_pair(k, v);
            }
        }
        link.append_pair("before", &cursor.0.to_string());
        let _ = write!(
            out,
            "<p><a href=\"/ui/deliveries?{}\">Older deliveries</a></p>",
            esc(&link.finish())
        );
    }
    out.push_str("</div>");
    let f = frame(&app, "Deliveries", "/ui/deliveries", &n);
    html_reply(StatusCode::OK, html::page(&f, &out))
}

#[derive(Deserialize)]
pub(super) struct OneQuery {
    endpoint: Option<String>,
}

/// Configured header values this long or longer are redacted whatever their name.
const SHOWN_HEADER: usize = 16;

/// Whether a header's value is a secret whatever the configuration says.
fn secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "authorization",
        "cookie",
        "token",
        "secret",
        "key",
        "signature",
        "password",
        "auth",
    ]
    .iter()
    .any(|s| name.contains(s))
}

/// The headers a delivery to `ep` carries, secrets redacted.
fn headers_table(h: &History, ep: Option<&Endpoint>) -> String {
    let mut rows: Vec<(String, String)> = vec![
        ("content-type".into(), "application/json".into()),
        (
            "user-agent".into(),
            concat!("hookrelay/", env!("CARGO_PKG_VERSION")).into(),
        ),
        ("webhook-id".into(), h.delivery.webhook_id.clone()),
    ];
    let mut note = String::new();
    match ep {
        Some(ep) => {
            if !ep.signer.secrets().is_empty() {
                rows.push(("webhook-timestamp".into(), "the time of each attempt".into()));
                rows.push(("webhook-signature".into(), "redacted (made per attempt)".into()));
            }
            let mut configured = http::HeaderMap::new();
            ep.headers.apply(&mut configured);
            for (name, value) in &configured {
                // A value of 16 bytes or more may be a credential under any name.
                let shown = if value.is_sensitive()
                    || secret_name(name.as_str())
                    || value.len() >= SHOWN_HEADER
                {
                    format!("redacted ({} bytes)", value.len())
                } else {
                    String::from_utf8_lossy(value.as_bytes()).into_owned()
                };
                rows.push((name.as_str().to_owned(), shown));
            }
        }
        None => note.push_str(
            "<p class=\"hint\">The endpoint is no longer configured: its own headers are not known.</p>",
        ),
    }
    if let Some(trace) = &h.delivery.trace {
        rows.push((
            "traceparent".into(),
            format!("a child of {trace} per attempt"),
        ));
    }
    let mut out = String::from(
        "<table class=\"kv\"><caption>Request headers</caption><thead><tr><th scope=\"col\">Header</th><th scope=\"col\">Value</th></tr></thead><tbody>",
    );
    for (name, value) in rows {
        let _ = write!(
            out,
            "<tr><th scope=\"row\"><code>{}</code></th><td><code>{}</code></td></tr>",
            esc(&name),
            esc(&value)
        );
    }
    out.push_str("</tbody></table>");
    out.push_str(&note);
    out
}

/// The most bytes of a payload the dead-letter list shows each (the delivery's own view
/// shows all of it): a page of 100 letters stays small whatever `max_body` allows.
const LIST_PAYLOAD: usize = 16 * 1024;

/// `body` pretty, or its first [`LIST_PAYLOAD`] bytes as sent when it is longer.
fn pretty_capped(body: &[u8]) -> String {
    if body.len() <= LIST_PAYLOAD {
        return pretty(body);
    }
    format!(
        "{}…\n({} bytes: the delivery's page shows all of it)",
        String::from_utf8_lossy(&body[..LIST_PAYLOAD]),
        body.len()
    )
}

fn pretty(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

/// `GET /ui/deliveries/{webhook-id}?endpoint=`: one delivery (one per endpoint without
/// `endpoint`), with headers, attempts and payload.
pub(super) async fn delivery(
    State(app): Shared,
    Path(webhook_id): Path<String>,
    Query(oq): Query<OneQuery>,
    Extension(n): Extension<Notice>,
    uri: Uri,
) -> Response<Body> {
    let snapshot = app.live.snapshot();
    let now = now_ms();
    let back = here(&uri, "/ui/deliveries");
    let found = match app.store.history_of(&webhook_id, 100).await {
        Ok(found) => found,
        Err(e) => {
            let none = Notice::default();
            let f = frame(&app, "Delivery", "/ui/deliveries", &none);
            let body = store_failed(&with_causes(&e));
            return html_reply(StatusCode::SERVICE_UNAVAILABLE, html::page(&f, &body));
        }
    };
    let endpoint = oq.endpoint.as_deref().filter(|e| !e.is_empty());
    let found: Vec<&History> = found
        .iter()
        .filter(|h| endpoint.is_none_or(|e| h.delivery.endpoint == e))
        .collect();
    let title = format!("Delivery {}", short(&webhook_id, 40));
    let f = frame(&app, &title, "/ui/deliveries", &n);
    if found.is_empty() {
        let body = format!(
            "<p>No delivery with webhook-id <code>{}</code>: never received, or past <code>history.retention</code>.</p>\
<p><a href=\"/ui/deliveries\">All deliveries</a></p>",
            esc(&webhook_id)
        );
        return html_reply(StatusCode::NOT_FOUND, html::page(&f, &body));
    }
    let mut out = String::from("<div id=\"delivery\" data-live>");
    for h in found {
        let d = &h.delivery;
        let s = summary(&d.body);
        let _ = write!(
            out,
            "<section class=\"card\" aria-label=\"Delivery to {ep}\"><h2>To {ep} {state}</h2><dl class=\"facts\">\
<dt>webhook-id</dt><dd><code>{id}</code></dd><dt>Provider</dt><dd>{vendor}</dd><dt>Event</dt><dd>{channel} {event}</dd>\
<dt>Received</dt><dd>{created} ({exact})</dd><dt>Attempts</dt><dd>{attempts}</dd>{last_error}</dl>",
            ep = esc(&d.endpoint),
            state = badge(h.state.as_str()),
            id = esc(&d.webhook_id),
            vendor = esc(&s.vendor),
            channel = esc(&s.channel),
            event = esc(&s.event),
            created = time_ago(d.created_at_ms, now),
            exact = esc(&clock(d.created_at_ms)),
            attempts = h.attempts.len(),
            last_error = d
                .last_error
                .as_ref()
                .map(|e| format!("<dt>Last error</dt><dd><code>{}</code></dd>", esc(e)))
                .unwrap_or_default(),
        );
        if let Some(dead) = &h.dead {
            let _ = write!(
                out,
                "<p class=\"warn\">Dead letter {}: {}{}</p>{}",
                time_ago(dead.dead_at_ms, now),
                esc(&dead.reason),
                dead.status
                    .map(|s| format!(" (HTTP {s})"))
                    .unwrap_or_default(),
                button(
                    &format!("/ui/dead-letters/{}/replay", d.id.0),
                    &back,
                    "Replay this dead letter",
                    None
                ),
            );
        }
        out.push_str(&headers_table(h, snapshot.endpoint(&d.endpoint)));
        out.push_str("<table><caption>Attempts</caption><thead><tr><th scope=\"col\">#</th><th scope=\"col\">At</th><th scope=\"col\">Outcome</th>\
<th scope=\"col\" class=\"num\">Status</th><th scope=\"col\" class=\"num\">Took</th><th scope=\"col\">Error</th><th scope=\"col\">Response</th></tr></thead><tbody>");
        for (i, a) in h.attempts.iter().enumerate() {
            let _ = write!(
                out,
                "<tr><td>{n}</td><td>{at}</td><td>{outcome}</td><td class=\"num\">{status}</td><td class=\"num\">{ms} ms</td><td>{error}</td><td><code>{response}</code></td></tr>",
                n = i + 1,
                at = time_ago(a.at_ms, now),
                outcome = badge(serde_json::json!(a.outcome).as_str().unwrap_or_default()),
                status = a.status.map_or_else(|| "—".to_owned(), |s| s.to_string()),
                ms = a.duration_ms,
                error = esc(a.error.as_deref().unwrap_or("")),
                response = esc(a.response.as_deref().unwrap_or("")),
            );
        }
        if h.attempts.is_empty() {
            out.push_str("<tr><td colspan=\"7\">No attempt yet.</td></tr>");
        }
        let _ = write!(
            out,
            "</tbody></table><h3>Payload</h3><pre class=\"payload\" tabindex=\"0\" aria-label=\"Payload\">{}</pre></section>",
            esc(&pretty(&d.body))
        );
    }
    out.push_str("</div><p><a href=\"/ui/deliveries\">All deliveries</a></p>");
    html_reply(StatusCode::OK, html::page(&f, &out))
}

#[derive(Deserialize)]
pub(super) struct LetterQuery {
    endpoint: Option<String>,
}

/// Dead letters one page of the view shows.
const LETTERS: usize = 100;

/// `GET /ui/dead-letters?endpoint=`: dead letters with reason, response and payload, and
/// the buttons to replay or delete them.
pub(super) async fn dead_letters(
    State(app): Shared,
    Query(lq): Query<LetterQuery>,
    Extension(n): Extension<Notice>,
    uri: Uri,
) -> Response<Body> {
    let snapshot = app.live.snapshot();
    let now = now_ms();
    let back = here(&uri, "/ui/dead-letters");
    let endpoint = lq.endpoint.filter(|e| !e.is_empty());
    let mut names: Vec<String> = snapshot.endpoints.iter().map(|e| e.name.clone()).collect();
    names.push(UNPARSED_ENDPOINT.to_owned());
    let mut out = String::from(
        "<form method=\"get\" action=\"/ui/dead-letters\" class=\"filters\" aria-label=\"Filter dead letters\">",
    );
    out.push_str(&select("endpoint", "Endpoint", endpoint.as_deref(), &names));
    out.push_str("<button type=\"submit\">Show</button></form>");
    if let Some(ep) = &endpoint {
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/ui/dead-letters/replay\" class=\"inline\">{}{}<button type=\"submit\">Replay every dead letter of {}</button></form>",
            html::hidden("endpoint", ep),
            html::hidden("back", &back),
            esc(ep)
        );
    }
    out.push_str("<div id=\"letters\" data-live>");
    match app.store.dead_letters(endpoint.as_deref(), LETTERS).await {
        Err(e) => {
            out.push_str(&store_failed(&with_causes(&e)));
        }
        Ok(letters) if letters.is_empty() => out.push_str("<p>No dead letters.</p>"),
        Ok(letters) => {
            out.push_str("<div class=\"cards\">");
            for l in &letters {
                let d = &l.delivery;
                let s = summary(&d.body);
                let id = d.id.0;
                let _ = write!(
                    out,
                    "<section class=\"card\" aria-labelledby=\"dl-{id}\"><h2 id=\"dl-{id}\">Dead letter {id} <span class=\"hint\">to {ep}</span></h2>\
<dl class=\"facts\"><dt>Died</dt><dd>{died}</dd><dt>Reason</dt><dd>{reason}</dd><dt>Status</dt><dd>{status}</dd>\
<dt>Response</dt><dd><code>{response}</code></dd><dt>Attempts</dt><dd>{attempts}</dd><dt>Event</dt><dd>{vendor} {channel} {event}</dd>\
<dt>Delivery</dt><dd><a href=\"/ui/deliveries/{qid}?endpoint={qep}\"><code>{wid}</code></a></dd></dl>\
<details><summary>Payload</summary><pre class=\"payload\" tabindex=\"0\">{payload}</pre></details><p class=\"actions\">{replay} {delete}</p></section>",
                    ep = esc(&d.endpoint),
                    died = time_ago(l.dead_at_ms, now),
                    reason = esc(&l.reason),
                    status = l
                        .status
                        .map_or_else(|| "no response".to_owned(), |s| s.to_string()),
                    response = esc(&short(l.response.as_deref().unwrap_or(""), SHORT * 4)),
                    attempts = d.attempts,
                    vendor = esc(&s.vendor),
                    channel = esc(&s.channel),
                    event = esc(&s.event),
                    qid = seg(&d.webhook_id),
                    qep = q(&d.endpoint),
                    wid = esc(&short(&d.webhook_id, 40)),
                    payload = esc(&pretty_capped(&d.body)),
                    replay = button(
                        &format!("/ui/dead-letters/{id}/replay"),
                        &back,
                        &format!("Replay {id}"),
                        None
                    ),
                    delete = button(
                        &format!("/ui/dead-letters/{id}/delete"),
                        &back,
                        &format!("Delete {id}"),
                        Some("Delete this dead letter? It cannot be replayed afterwards.")
                    ),
                );
            }
            out.push_str("</div>");
            if letters.len() == LETTERS {
                let _ = write!(
                    out,
                    "<p class=\"hint\">The oldest {LETTERS} are shown; replay or delete them to see more.</p>"
                );
            }
        }
    }
    out.push_str("</div>");
    let f = frame(&app, "Dead letters", "/ui/dead-letters", &n);
    html_reply(StatusCode::OK, html::page(&f, &out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_reads_the_payload_fields() {
        let s = summary(
            br#"{"vendor_name":"postmark","channel":"email","event_type":"status","suprsend_status":{"status":"delivered"}}"#,
        );
        assert_eq!(
            (s.vendor.as_str(), s.channel.as_str()),
            ("postmark", "email")
        );
        assert_eq!(s.event, "status: delivered");
        let s = summary(
            br#"{"type":"message.status","timestamp":"2026-01-01T00:00:00Z","data":{"vendor_name":"twilio","channel":"sms","event_type":"status","suprsend_status":{"status":"sent"}}}"#,
        );
        assert_eq!(
            (s.vendor.as_str(), s.event.as_str()),
            ("twilio", "status: sent")
        );
        let s = summary(b"not json");
        assert_eq!(s.vendor, "");
    }

    #[test]
    fn a_long_payload_is_cut_in_lists() {
        let long = format!("{{\"a\":\"{}\"}}", "é".repeat(LIST_PAYLOAD));
        let shown = pretty_capped(long.as_bytes());
        assert!(shown.len() < LIST_PAYLOAD + 100, "{}", shown.len());
        assert!(shown.ends_with(&format!(
            "({} bytes: the delivery's page shows all of it)",
            long.len()
        )));
        assert_eq!(pretty_capped(b"{\"a\":1}"), "{\n  \"a\": 1\n}");
    }

    #[test]
    fn urls_and_segments_keep_their_secrets_and_shape() {
        let url: url::Url = "https://user:pw@crm.example/hook?key=abc&x=1#frag"
            .parse()
            .expect("url");
        let shown = shown_url(&url);
        assert_eq!(
            shown,
            "https://redacted:redacted@crm.example/hook?key=redacted&x=redacted"
        );
        let url: url::Url = "https://tok3n@hooks.example/T1?S3CRET"
            .parse()
            .expect("url");
        let shown = shown_url(&url);
        assert!(
            !shown.contains("tok3n") && !shown.contains("S3CRET"),
            "{shown}"
        );
        assert_eq!(seg("a b/../é.x"), "a%20b%2F%2E%2E%2F%C3%A9%2Ex");
        assert_eq!(seg("evt_Ab-9~"), "evt_Ab-9~");
    }

    #[test]
    fn header_names_that_hold_secrets_are_known() {
        for name in [
            "Authorization",
            "x-api-key",
            "X-Auth-Token",
            "x-client-secret",
        ] {
            assert!(secret_name(name), "{name}");
        }
        assert!(!secret_name("x-team"));
    }

    #[test]
    fn the_login_page_labels_its_field() {
        let page = login("/ui/deliveries?state=dead", Some("Wrong token."));
        assert!(page.contains("<label for=\"token\">Admin token</label>"));
        assert!(page.contains("value=\"/ui/deliveries?state=dead\""));
        assert!(page.contains("role=\"alert\""));
    }
}
