//! The public listener: callback routes are read ([`body`]), accepted ([`accept`]: verify,
//! normalize, fan out, durable enqueue) and answered before the provider gets its 2xx;
//! every other path is proxied unchanged to the upstream notification service
//! ([`upstream`]).
//!
//! This module is the Pingora adapter only: what a refusal answers is [`refusal::Refusal`]'s, what
//! differs between providers is the provider's.

pub(crate) mod accept;
mod body;
pub(crate) mod budget;
pub(crate) mod certs;
pub(crate) mod conn;
mod refusal;
pub(crate) mod replay;
pub(crate) mod upstream;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use hookrelay_config::{Live, Mode, Snapshot};
use hookrelay_core::CallbackRequest;
use hookrelay_store::Store;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};

use crate::metrics::Metrics;
use accept::Answer;
use certs::Certificates;
use refusal::Refusal;
use replay::ReplayCache;
use upstream::Upstreams;

/// What the listener uses: the live config, the store, metrics, and its own caches.
pub(crate) struct Ingest {
    pub(crate) live: Arc<Live>,
    pub(crate) store: Store,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) certs: Certificates,
    pub(crate) replay: ReplayCache,
    pub(crate) upstream: Arc<Upstreams>,
    /// Bytes held before their signature is checked, all connections together.
    pub(crate) budget: Arc<budget::Budget>,
}

/// What one request needs across Pingora's filters.
#[derive(Default)]
pub(crate) struct RequestCtx {
    /// The snapshot this request reads (read once), kept when the request is proxied.
    snapshot: Option<Arc<Snapshot>>,
    /// The body of a `tap` route, to forward to the upstream after the enqueue.
    tap_body: Option<Bytes>,
    /// What a `tap` route answers itself when the upstream fails: the callback is already
    /// durable, so the provider gets its 2xx rather than a 502 it would retry forever.
    tap_answer: Option<Answer>,
}

async fn respond(
    session: &mut Session,
    status: u16,
    content_type: &str,
    body: Bytes,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(3))?;
    resp.insert_header("content-type", content_type)?;
    resp.insert_header("content-length", body.len().to_string())?;
    resp.insert_header("cache-control", "no-store")?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}

#[async_trait]
impl ProxyHttp for Ingest {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let snapshot = self.live.snapshot();
        // An idle keep-alive connection is closed after this (checked between requests).
        session.set_keepalive(Some(snapshot.limits.keepalive_timeout.as_secs().max(1)));
        let Some(route) = snapshot.route(session.req_header().uri.path()) else {
            // Not a callback: proxied unchanged, to this snapshot's upstream.
            ctx.snapshot = Some(snapshot);
            return Ok(false);
        };
        let provider = route.provider.id();
        let arrived = std::time::Instant::now();
        self.metrics.received(provider);
        self.metrics.route_received(&route.path);
        if route.mode == Mode::Tap {
            ctx.snapshot = Some(snapshot.clone());
            session.as_downstream_mut().enable_retry_buffering();
        }
        let limits = snapshot.limits;
        let declared = body::declared_length(session);
        let want = declared
            .and_then(|n| usize::try_from(n).ok())
            .map_or(route.max_body, |n| n.min(route.max_body));
        // Held while the callback is read, verified and enqueued: its bytes are in memory.
        let claim = self.budget.claim(want, limits.unverified_bytes);
        let read = match claim {
            None => Err(Refusal::Busy {
                limit: limits.unverified_bytes,
            }),
            Some(_) => tokio::time::timeout(
                limits.body_timeout,
                body::read(session, declared, route.max_body),
            )
            .await
            .unwrap_or(Err(Refusal::BodyTimeout(limits.body_timeout))),
        };
        let result = match read {
            Ok(body) => {
                let head = session.req_header();
                let req = CallbackRequest {
                    method: head.method.clone(),
                    uri: head.uri.clone(),
                    headers: head.headers.clone(),
                    body: body.clone(),
                };
                let r = self.handle(route, &snapshot, req).await;
                if let (Ok(answer), Mode::Tap) = (&r, route.mode) {
                    ctx.tap_body = Some(body);
                    ctx.tap_answer = Some(answer.clone());
                }
                r
            }
            Err(e) => Err(e),
        };
        drop(claim);
        match result {
            Ok(_) if route.mode == Mode::Tap => Ok(false), // enqueued: now proxy the original
            Ok(answer) => {
                let status = answer.status;
                respond(session, status, answer.content_type, answer.body).await?;
                if (200..300).contains(&status) {
                    self.metrics.acknowledged(provider, arrived.elapsed());
                }
                Ok(true)
            }
            Err(refusal) => {
                self.metrics.rejected(provider, refusal.metric());
                self.metrics.route_rejected(&route.path);
                tracing::warn!(provider = %provider, status = refusal.status(), reason = %refusal, "callback refused");
                respond(
                    session,
                    refusal.status(),
                    "text/plain; charset=utf-8",
                    Bytes::from(refusal.body(provider)),
                )
                .await?;
                Ok(true)
            }
        }
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // A tap route read the whole body before proxying: send it as it was received.
        if let Some(saved) = ctx.tap_body.take() {
            *body = Some(saved);
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &pingora::Error,
        ctx: &mut RequestCtx,
    ) -> pingora::proxy::FailToProxy {
        if let Some(answer) = ctx.tap_answer.take() {
            tracing::warn!(error = %e, "tap: the upstream failed; the callback is enqueued and acknowledged");
            let sent = respond(session, answer.status, answer.content_type, answer.body)
                .await
                .is_ok();
            return pingora::proxy::FailToProxy {
                error_code: if sent { answer.status } else { 0 },
                can_reuse_downstream: false,
            };
        }
        use pingora::{ErrorSource, ErrorType};
        // Our own refusal to proxy (an upstream that does not resolve): its reason.
        if let (ErrorType::HTTPStatus(code), Some(reason)) = (e.etype(), e.context.as_ref()) {
            let body = Bytes::from(format!("{}\n", reason.as_str().replace(['\r', '\n'], " ")));
            let sent = respond(session, *code, "text/plain; charset=utf-8", body)
                .await
                .is_ok();
            return pingora::proxy::FailToProxy {
                error_code: if sent { *code } else { 0 },
                can_reuse_downstream: false,
            };
        }
        // Pingora's own answer for everything else.
        let code = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                _ => 500,
            },
        };
        if code > 0 {
            let _ = session.respond_error(code).await;
        }
        pingora::proxy::FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut pingora::http::RequestHeader,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        // A browser sends the status page's cookies to every port of its host: they are
        // not the upstream's to see.
        let cookies = upstream_request.headers.get_all(http::header::COOKIE);
        if let Some(kept) = crate::ui::without_page_cookies(cookies.iter()) {
            upstream_request.remove_header(&http::header::COOKIE);
            if !kept.is_empty() {
                upstream_request.insert_header(http::header::COOKIE, kept)?;
            }
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let snapshot = ctx.snapshot.clone().unwrap_or_else(|| self.live.snapshot());
        match self.upstream.peer(&snapshot.upstream) {
            Ok(peer) => Ok(Box::new(peer)),
            Err(reason) => Err(pingora::Error::explain(
                pingora::ErrorType::HTTPStatus(502),
                reason,
            )),
        }
    }
}
