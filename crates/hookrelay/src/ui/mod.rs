//! The status page: server-rendered HTML on the admin listener, behind the admin token.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/` | overview: configuration, last reload, callbacks per route, a chart per endpoint |
//! | GET | `/ui/endpoints` | each endpoint: URL, filter, rate, queue, paused (with resume), last success and error |
//! | GET | `/ui/deliveries?endpoint=&state=&provider=&before=` | the delivery history, newest first |
//! | GET | `/ui/deliveries/{webhook-id}?endpoint=` | one delivery: headers (secrets redacted), attempts, payload |
//! | GET | `/ui/dead-letters?endpoint=` | dead letters: reason, response, payload; replay, delete |
//! | POST | `/ui/…` | the buttons' actions, each answered by a redirect back to its view |
//! | GET, POST | `/login`, POST `/logout` | the token, kept in a cookie |
//!
//! A browser cannot send a bearer token when it follows a link, so the page takes the
//! token once in a form (`/login`) and keeps a cookie derived from it: its issue time and
//! an HMAC of it under the token, `HttpOnly`, `SameSite=Strict`, refused past 12 hours,
//! after a sign-out, or once the token changes. A request with the bearer token is let in
//! too. A request that changes something
//! must come from the page itself: one a browser marks as cross-site (`Sec-Fetch-Site`,
//! `Origin`) is refused. Without a token (loopback only: `validate` refuses anything
//! else) the page and the admin API answer only under an IP address or `localhost`, so a
//! web site cannot reach them through a DNS name of its own pointed at 127.0.0.1, and
//! refuse cross-site requests that change something ([`open_admin_allows`]).
//!
//! Nothing here runs unless a page is asked for, except [`board`]'s reading of the
//! counters once a minute.

pub(crate) mod board;
mod html;
mod views;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::middleware::{self, Next};
use axum::routing::{get, post};
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use hookrelay_core::secret::ct_eq;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde::Deserialize;
use sha2::Sha256;

use crate::admin::Admin;
#[cfg(test)]
use html::{esc, hidden};

type Shared = State<Arc<Admin>>;

/// The session cookie's name.
const COOKIE: &str = "hookrelay_session";

/// The cookie that carries an action's outcome to the page it redirects to, once.
const NOTICE: &str = "hookrelay_notice";

/// What an action did, shown once by the next page.
#[derive(Clone, Debug, Default)]
pub(crate) struct Notice(pub(crate) Option<(bool, String)>);

impl Notice {
    /// The text, and whether it reports a failure.
    pub(crate) fn get(&self) -> Option<(bool, &str)> {
        self.0
            .as_ref()
            .map(|(failed, text)| (*failed, text.as_str()))
    }
}

/// How long a sign-in lasts, in seconds.
const SESSION_SECONDS: u32 = 12 * 3600;

/// Sessions issued at or before this time (Unix ms) are refused: the last sign-out.
static SIGNED_OUT_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// The stylesheet, embedded.
const STYLE: &str = include_str!("assets/style.css");
/// The script that refreshes the live parts and asks before deleting.
const SCRIPT: &str = include_str!("assets/live.js");

/// The status page's routes, merged into the admin API's.
pub(crate) fn router(app: Arc<Admin>) -> Router<Arc<Admin>> {
    let guarded = Router::new()
        .route("/", get(views::overview))
        .route("/ui/endpoints", get(views::endpoints))
        .route("/ui/deliveries", get(views::deliveries))
        .route("/ui/deliveries/{webhook_id}", get(views::delivery))
        .route("/ui/dead-letters", get(views::dead_letters))
        .route("/ui/endpoints/{name}/resume", post(resume))
        .route("/ui/dead-letters/replay", post(replay_endpoint))
        .route("/ui/dead-letters/{id}/replay", post(replay_one))
        .route("/ui/dead-letters/{id}/delete", post(delete_one))
        .route("/logout", post(logout))
        .route_layer(middleware::from_fn_with_state(app, guard));
    Router::new()
        .route("/login", get(login_form).post(login))
        .route(
            "/ui/assets/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/ui/assets/live.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .merge(guarded)
}

fn asset(content_type: &'static str, text: &'static str) -> Response<Body> {
    let mut resp = Response::new(Body::from(text));
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// An HTML answer with the headers every page carries: no caching, no framing, no
/// script or style but the page's own.
pub(crate) fn html_reply(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    resp
}

/// The cookie value that proves the token was given at `issued` (Unix ms):
/// `issued.HMAC-SHA256(token, fixed text, issued)` in hex. It holds no part of the token,
/// is checked for its age on every request, and a new token makes every one invalid.
fn session_value(token: &str, issued: i64) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(token.as_bytes())
        .unwrap_or_else(|_| unreachable_hmac());
    mac.update(b"hookrelay status page session, v2|");
    mac.update(issued.to_string().as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{issued}.{hex}")
}

/// True when `value` is a session cookie made under `token` and not older than
/// [`SESSION_SECONDS`] at `now` (Unix ms), nor issued before the last sign-out.
fn valid_session(value: &str, token: &str, now: i64) -> bool {
    let Some(issued) = value
        .split_once('.')
        .and_then(|(issued, _)| issued.parse::<i64>().ok())
    else {
        return false;
    };
    let fresh = now
        .checked_sub(issued)
        .is_some_and(|age| (-60_000..=i64::from(SESSION_SECONDS) * 1000).contains(&age))
        && issued > SIGNED_OUT_MS.load(std::sync::atomic::Ordering::Acquire);
    fresh && ct_eq(value.as_bytes(), session_value(token, issued).as_bytes())
}

/// HMAC takes a key of any length; this is never reached.
fn unreachable_hmac() -> Hmac<Sha256> {
    <Hmac<Sha256> as KeyInit>::new_from_slice(b"-").unwrap_or_else(|_| unreachable!())
}

/// The value of cookie `name` in `headers`, if sent.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// True when `headers` carry the token: the session cookie or `Authorization: Bearer`.
fn carries(headers: &HeaderMap, token: &str) -> bool {
    let bearer = crate::admin::bearer(headers)
        .is_some_and(|offered| ct_eq(offered.as_bytes(), token.as_bytes()));
    let now = crate::clock::now_ms();
    let session = cookie(headers, COOKIE).is_some_and(|v| valid_session(v, token, now));
    bearer || session
}

/// False for a request a browser says comes from another site (`Sec-Fetch-Site`, or an
/// `Origin` that is not this host); a client that is no browser sends neither.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return matches!(site, "same-origin" | "none");
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = host_of(headers, None);
    let origin_host = origin.to_str().ok().and_then(|o| {
        o.strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
    });
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// The host a request was sent to: its `Host` header, else the authority of its URI (an
/// HTTP/2 request carries it there).
fn host_of<'a>(headers: &'a HeaderMap, uri: Option<&'a http::Uri>) -> Option<&'a str> {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            uri.and_then(http::Uri::authority)
                .map(http::uri::Authority::as_str)
        })
}

/// True when the `Host` a request was sent to is an IP address or `localhost`.
fn host_is_address(headers: &HeaderMap, uri: Option<&http::Uri>) -> bool {
    let Some(host) = host_of(headers, uri) else {
        return true; // HTTP/1.0 without Host: no browser
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

/// Whether the admin listener, run without a token, takes `req`: only at an IP address or
/// `localhost`, and what changes something only from the same origin. A web page cannot
/// then read or act through the browser of someone on the machine (by a DNS name of its
/// own pointed at 127.0.0.1, or by a cross-site form).
pub(crate) fn open_admin_allows(req: &Request<Body>) -> Result<(), &'static str> {
    if !host_is_address(req.headers(), Some(req.uri())) {
        return Err(
            "without admin.token the admin listener answers only at an IP address or localhost; set admin.token to use a host name",
        );
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) && !same_origin(req.headers()) {
        return Err("a request from another site cannot change anything here");
    }
    Ok(())
}

/// The `Cookie` header without the status page's cookies, when `values` hold one of them
/// (`None`: nothing to take out). The public listener proxies requests to the upstream,
/// and a browser sends the page's cookies to every port of its host.
pub(crate) fn without_page_cookies<'a>(
    values: impl Iterator<Item = &'a HeaderValue>,
) -> Option<String> {
    let values: Vec<&[u8]> = values.map(HeaderValue::as_bytes).collect();
    if !values
        .iter()
        .any(|v| v.windows(10).any(|w| w == b"hookrelay_"))
    {
        return None;
    }
    let kept: Vec<&str> = values
        .iter()
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(name, _)| name);
            !pair.is_empty() && name != COOKIE && name != NOTICE
        })
        .collect();
    Some(kept.join("; "))
}

/// A local path to come back to: `next` when it is one, else `/`.
fn local(next: Option<&str>) -> String {
    match next {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && !p.chars().any(char::is_control) =>
        {
            p.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// Refuses what is not the page's own, and asks for the token when one is configured.
async fn guard(State(app): Shared, mut req: Request<Body>, next: Next) -> Response<Body> {
    let headers = req.headers();
    if !matches!(*req.method(), Method::GET | Method::HEAD) && !same_origin(headers) {
        return html_reply(
            StatusCode::FORBIDDEN,
            views::plain(
                "Refused",
                "A request from another site cannot change anything here.",
            ),
        );
    }
    let snapshot = app.live.snapshot();
    match &snapshot.admin_token {
        None if !host_is_address(headers, Some(req.uri())) => html_reply(
            StatusCode::FORBIDDEN,
            views::plain(
                "Refused",
                "Without admin.token the status page answers only at an IP address or \
                 localhost. Set admin.token to open it under a host name.",
            ),
        ),
        Some(token) if !carries(headers, token.expose()) => {
            // Opening the page signed out is no failed attempt; a credential refused is.
            if headers.contains_key(header::AUTHORIZATION) || cookie(headers, COOKIE).is_some() {
                app.metrics.admin_unauthorized();
            }
            let here = req
                .uri()
                .path_and_query()
                .map_or("/", http::uri::PathAndQuery::as_str);
            let next = if req.method() == Method::GET {
                here
            } else {
                "/"
            };
            let mut resp = html_reply(
                StatusCode::UNAUTHORIZED,
                views::login(next, Some("Sign in with the admin token to see this page.")),
            );
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            resp
        }
        _ => {
            let shown = req.method() == Method::GET;
            let notice = cookie(req.headers(), NOTICE)
                .filter(|_| shown)
                .and_then(|v| {
                    let text: String = form_urlencoded::parse(format!("n={v}").as_bytes())
                        .next()
                        .map(|(_, v)| v.into_owned())?;
                    let (kind, text) = text.split_once(':')?;
                    Some((kind == "err", text.chars().take(500).collect::<String>()))
                });
            let had = notice.is_some();
            req.extensions_mut().insert(Notice(notice));
            let mut resp = next.run(req).await;
            let sets_one = resp
                .headers()
                .get_all(header::SET_COOKIE)
                .iter()
                .any(|v| v.as_bytes().starts_with(NOTICE.as_bytes()));
            if had && !sets_one {
                // Shown once: the next page (and the live refresh) no longer has it.
                resp.headers_mut().append(
                    header::SET_COOKIE,
                    HeaderValue::from_static(
                        "hookrelay_notice=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
                    ),
                );
            }
            resp
        }
    }
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn login_form(Query(q): Query<NextQuery>) -> Response<Body> {
    html_reply(
        StatusCode::OK,
        views::login(&local(q.next.as_deref()), None),
    )
}

/// The fields of a form body.
fn fields(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn see_other(location: &str) -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn login(State(app): Shared, headers: HeaderMap, body: Bytes) -> Response<Body> {
    if !same_origin(&headers) {
        return html_reply(
            StatusCode::FORBIDDEN,
            views::plain("Refused", "A sign-in from another site is refused."),
        );
    }
    let form = fields(&body);
    let next = local(field(&form, "next"));
    let snapshot = app.live.snapshot();
    let Some(token) = &snapshot.admin_token else {
        return see_other(&next);
    };
    let offered = field(&form, "token").unwrap_or_default().trim();
    if !ct_eq(offered.as_bytes(), token.expose().as_bytes()) {
        app.metrics.admin_unauthorized();
        return html_reply(
            StatusCode::UNAUTHORIZED,
            views::login(&next, Some("Wrong token.")),
        );
    }
    let mut resp = see_other(&next);
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}",
        session_value(token.expose(), crate::clock::now_ms())
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// Signs out: the browser's cookie is cleared and every session issued until now is
/// refused (the server keeps no list of sessions, so all of them end).
async fn logout() -> Response<Body> {
    SIGNED_OUT_MS.fetch_max(crate::clock::now_ms(), std::sync::atomic::Ordering::AcqRel);
    let mut resp = see_other("/login");
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "hookrelay_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    resp
}

/// Back to `back` (a local path), where `notice` is shown once: it travels in a
/// short-lived cookie, so no link from elsewhere can put words in the page's mouth.
fn back_with(back: Option<&str>, failed: bool, notice: &str) -> Response<Body> {
    let mut resp = see_other(&local(back));
    let kind = if failed { "err" } else { "ok" };
    let value: String =
        form_urlencoded::byte_serialize(format!("{kind}:{notice}").as_bytes()).collect();
    let cookie = format!("{NOTICE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=60");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// What an admin API answer says, as a sentence: its `error`, or `ok` filled in with
/// the answer's figures.
async fn said(
    resp: Response<http_body_util::Full<Bytes>>,
    ok: impl Fn(&serde_json::Value) -> String,
) -> (bool, String) {
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if status.is_success() {
        (false, ok(&value))
    } else {
        let why = value["error"].as_str().map_or_else(
            || format!("refused ({status})"),
            |e| format!("Not done: {e}"),
        );
        (true, why)
    }
}

async fn resume(State(app): Shared, Path(name): Path<String>, body: Bytes) -> Response<Body> {
    let form = fields(&body);
    let (failed, notice) = if app.lanes.resume(&name) {
        (false, format!("Endpoint {name} resumed."))
    } else {
        (true, format!("Endpoint {name} was not paused."))
    };
    back_with(field(&form, "back"), failed, &notice)
}

async fn replay_one(State(app): Shared, Path(id): Path<String>, body: Bytes) -> Response<Body> {
    let form = fields(&body);
    let resp = crate::admin::replay_one(State(app), Path(id.clone())).await;
    let (failed, notice) = said(resp, |_| {
        format!("Dead letter {id} replayed: it is queued again.")
    })
    .await;
    back_with(field(&form, "back"), failed, &notice)
}

async fn delete_one(State(app): Shared, Path(id): Path<String>, body: Bytes) -> Response<Body> {
    let form = fields(&body);
    let resp = crate::admin::delete_dead_letter(State(app), Path(id.clone())).await;
    let (failed, notice) = said(resp, |_| format!("Dead letter {id} deleted.")).await;
    back_with(field(&form, "back"), failed, &notice)
}

async fn replay_endpoint(State(app): Shared, body: Bytes) -> Response<Body> {
    let form = fields(&body);
    let Some(endpoint) = field(&form, "endpoint").map(str::to_owned) else {
        return back_with(field(&form, "back"), true, "Choose an endpoint to replay.");
    };
    let resp = crate::admin::replay_endpoint_named(&app, endpoint.clone()).await;
    let (failed, notice) = said(resp, |v| {
        format!(
            "{} dead letters of {endpoint} replayed.",
            v["replayed"].as_u64().unwrap_or(0)
        )
    })
    .await;
    back_with(field(&form, "back"), failed, &notice)
}

/// `text` shortened to `max` characters, with an ellipsis when cut.
fn short(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn the_session_cookie_proves_the_token_and_no_other() {
        let token = "s3cret-token";
        let now = crate::clock::now_ms();
        let good = format!("a=1; {COOKIE}={}", session_value(token, now));
        assert!(carries(&headers(&[("cookie", &good)]), token));
        assert!(!carries(&headers(&[("cookie", &good)]), "another-token"));
        assert!(!carries(
            &headers(&[("cookie", "hookrelay_session=00")]),
            token
        ));
        assert!(carries(
            &headers(&[("authorization", "Bearer s3cret-token")]),
            token
        ));
        assert!(!carries(
            &headers(&[("authorization", "Bearer s3cret")]),
            token
        ));
        assert!(!carries(&HeaderMap::new(), token));
        // The cookie is not the token.
        assert!(!session_value(token, now).contains(token));
        // Too old, from the future, its time changed, or absurd: refused, no panic.
        let old = now - i64::from(SESSION_SECONDS) * 1000 - 1;
        assert!(!valid_session(&session_value(token, old), token, now));
        assert!(!valid_session(
            &session_value(token, now + 3_600_000),
            token,
            now
        ));
        let earlier = now - 10_000;
        let forged =
            session_value(token, earlier).replacen(&earlier.to_string(), &now.to_string(), 1);
        assert!(!valid_session(&forged, token, now));
        assert!(!valid_session(&format!("{}.00", i64::MIN), token, now));
        assert!(!valid_session(&format!("{}.00", i64::MAX), token, now));
        assert!(valid_session(&session_value(token, earlier), token, now));
    }

    #[test]
    fn the_page_cookies_are_not_proxied() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(without_page_cookies([v("a=1; b=2")].iter()), None);
        assert_eq!(
            without_page_cookies(
                [
                    v("a=1; hookrelay_session=123.ab; b=2"),
                    v("hookrelay_notice=x")
                ]
                .iter()
            ),
            Some("a=1; b=2".to_owned())
        );
        assert_eq!(
            without_page_cookies([v("hookrelay_session=1.a")].iter()),
            Some(String::new())
        );
        // Another cookie whose name merely starts the same way stays.
        assert_eq!(
            without_page_cookies([v("hookrelay_app=1")].iter()),
            Some("hookrelay_app=1".to_owned())
        );
    }

    #[test]
    fn cross_site_requests_are_told_apart() {
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(same_origin(&headers(&[
            ("origin", "http://127.0.0.1:9090"),
            ("host", "127.0.0.1:9090")
        ])));
        assert!(!same_origin(&headers(&[
            ("origin", "http://evil.example"),
            ("host", "127.0.0.1:9090")
        ])));
        assert!(!same_origin(&headers(&[("origin", "null"), ("host", "a")])));
        assert!(same_origin(&HeaderMap::new()));
    }

    #[test]
    fn without_a_token_only_addresses_are_served() {
        for ok in ["127.0.0.1:9090", "localhost:9090", "[::1]:9090", "10.0.0.7"] {
            assert!(host_is_address(&headers(&[("host", ok)]), None), "{ok}");
        }
        for refused in ["rebind.evil.example:9090", "hookrelay.internal"] {
            assert!(
                !host_is_address(&headers(&[("host", refused)]), None),
                "{refused}"
            );
        }
    }

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(
            local(Some("/ui/deliveries?state=dead")),
            "/ui/deliveries?state=dead"
        );
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "x",
            "",
        ] {
            assert_eq!(local(Some(bad)), "/", "{bad}");
        }
        assert_eq!(local(None), "/");
    }

    #[test]
    fn a_notice_travels_in_a_cookie_not_the_url() {
        let resp = back_with(
            Some("/ui/dead-letters?endpoint=crm"),
            true,
            "Not done: a; b",
        );
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            resp.headers()[header::LOCATION],
            "/ui/dead-letters?endpoint=crm"
        );
        let cookie = resp.headers()[header::SET_COOKIE].to_str().expect("cookie");
        assert!(
            cookie.starts_with("hookrelay_notice=err%3ANot+done%3A+a%3B+b;"),
            "{cookie}"
        );
    }

    #[test]
    fn shortening_cuts_at_characters() {
        assert_eq!(short("héllo wörld", 5), "héllo…");
        assert_eq!(short("short", 10), "short");
    }

    #[test]
    fn escaped_fields_stay_fields() {
        assert_eq!(
            hidden("back", "/x?a=\"><script>"),
            "<input type=\"hidden\" name=\"back\" value=\"/x?a=&quot;&gt;&lt;script&gt;\">"
        );
        assert_eq!(esc("a"), "a");
    }
}
