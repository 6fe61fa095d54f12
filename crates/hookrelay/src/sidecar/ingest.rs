//! The public listener: callback routes are verified, normalized, deduplicated, fanned out
//! and durably enqueued before the provider gets its 2xx; every other path is proxied
//! unchanged to the upstream notification service.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use hookrelay_config::{Informational, Mode, Route, Snapshot};
use hookrelay_core::payload::to_bytes;
use hookrelay_core::provider::{Context, Control, VerifyOptions};
use hookrelay_core::{CallbackRequest, Event};
use hookrelay_store::{DeliveryId, EnqueueOutcome, NewDelivery, StoreError};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};

use super::App;
use super::clock::now_ms;

/// How long a provider event id is remembered for deduplication.
pub(crate) const DEDUPE_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// What one request needs across Pingora's filters.
#[derive(Default)]
pub(crate) struct RequestCtx {
    /// The snapshot this request reads (read once).
    snapshot: Option<Arc<Snapshot>>,
    /// The body of a `tap` route, to forward to the upstream after the enqueue.
    tap_body: Option<Bytes>,
    /// What a `tap` route answers itself when the upstream fails: the callback is already
    /// durable, so the provider gets its 2xx rather than a 502 it would retry forever.
    tap_answer: Option<Answer>,
}

/// The Pingora application of the public listener.
pub(crate) struct Ingest {
    pub(crate) app: Arc<App>,
}

/// A refusal: status and the one-line reason sent as the body.
struct Refusal {
    status: u16,
    metric: &'static str,
    reason: String,
}

impl Refusal {
    fn new(status: u16, metric: &'static str, reason: impl Into<String>) -> Self {
        Self {
            status,
            metric,
            reason: reason.into(),
        }
    }
}

/// What a handled callback answers.
#[derive(Clone)]
struct Answer {
    status: u16,
    content_type: &'static str,
    body: Bytes,
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

impl Ingest {
    /// Reads the body, at most `limit` bytes.
    async fn read_body(session: &mut Session, limit: usize) -> std::result::Result<Bytes, Refusal> {
        if let Some(len) = session
            .req_header()
            .headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            && len > limit as u64
        {
            return Err(Refusal::new(
                413,
                "too_large",
                format!("body of {len} bytes exceeds the route's limit of {limit}"),
            ));
        }
        // A body that arrives in one chunk (the usual case) is kept as it is, not copied.
        let mut first: Option<Bytes> = None;
        let mut buf = BytesMut::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    let held = first.as_ref().map_or(0, Bytes::len) + buf.len();
                    if held + chunk.len() > limit {
                        return Err(Refusal::new(
                            413,
                            "too_large",
                            format!("body exceeds the route's limit of {limit} bytes"),
                        ));
                    }
                    if first.is_none() && buf.is_empty() {
                        first = Some(chunk);
                    } else {
                        if let Some(earlier) = first.take() {
                            buf.extend_from_slice(&earlier);
                        }
                        buf.extend_from_slice(&chunk);
                    }
                }
                Ok(None) => return Ok(first.unwrap_or_else(|| buf.freeze())),
                Err(e) => {
                    return Err(Refusal::new(
                        400,
                        "unreadable",
                        format!("cannot read body: {e}"),
                    ));
                }
            }
        }
    }

    /// Verify → normalize → dedupe → fan out → durable enqueue.
    async fn handle(
        &self,
        route: &Route,
        snapshot: &Snapshot,
        req: CallbackRequest,
    ) -> std::result::Result<Answer, Refusal> {
        let provider = route.provider.id();
        if let Some(verifier) = &route.verifier {
            let opts = VerifyOptions {
                now_secs: Some(now_ms() / 1000),
                tolerance_secs: None,
            };
            let checked = match verifier {
                // SNS: the signing certificate comes from the checked SigningCertURL, cached.
                hookrelay_core::Verifier::Ses(v) if v.fetches_cert() => {
                    let url =
                        hookrelay_core::provider::ses::signing_cert_url(&req).map_err(|e| {
                            Refusal::new(401, "bad_signature", format!("{provider}: {e}"))
                        })?;
                    let pem = self.app.signing_cert(&url).await.map_err(|e| {
                        Refusal::new(
                            503,
                            "cert_unavailable",
                            format!("{provider}: signing certificate {url}: {e}"),
                        )
                    })?;
                    v.verify_with_cert_pem(&req, &pem, &opts)
                }
                v => v.verify(&req, &opts),
            };
            checked.map_err(|e| Refusal::new(401, "bad_signature", format!("{provider}: {e}")))?;
        }
        // Mailgun's signature covers a token, not the event: a token seen before is a replay.
        let replay_token = match &route.provider {
            hookrelay_core::Provider::Mailgun => hookrelay_core::provider::mailgun::token(&req),
            _ => None,
        };
        if let Some(token) = &replay_token
            && !self.app.replay.first_use(token, now_ms())
        {
            return Err(Refusal::new(
                401,
                "replayed_token",
                format!("{provider}: signature token already used"),
            ));
        }
        let result = self.accept(route, snapshot, provider, req).await;
        if result.is_err()
            && let Some(token) = &replay_token
        {
            // Not accepted: the provider's retry must be able to use the token again.
            self.app.replay.forget(token);
        }
        result
    }

    /// Normalize → answer handshakes → enqueue.
    async fn accept(
        &self,
        route: &Route,
        snapshot: &Snapshot,
        provider: &str,
        req: CallbackRequest,
    ) -> std::result::Result<Answer, Refusal> {
        let out = route
            .provider
            .normalize(
                &req,
                &Context {
                    received_at_ms: now_ms(),
                },
            )
            .map_err(|e| Refusal::new(400, "bad_body", format!("{provider}: {e}")))?;
        match out.control {
            Some(Control::MetaChallenge { challenge, .. }) => {
                return Ok(Answer {
                    status: 200,
                    content_type: "text/plain",
                    body: Bytes::from(challenge),
                });
            }
            Some(Control::SnsSubscriptionConfirmation {
                subscribe_url,
                topic_arn,
                ..
            }) => {
                self.app
                    .confirm_sns_subscription(&subscribe_url)
                    .await
                    .map_err(|e| {
                        Refusal::new(
                            502,
                            "sns_confirm_failed",
                            format!("confirming {topic_arn}: {e}"),
                        )
                    })?;
                tracing::info!(topic = %topic_arn, "SNS subscription confirmed");
            }
            Some(Control::SnsUnsubscribeConfirmation { topic_arn, .. }) => {
                tracing::warn!(topic = %topic_arn, "SNS subscription removed");
            }
            Some(Control::Ignored { reason }) => {
                tracing::info!(provider = %provider, reason = %reason, "callback carries no event");
            }
            Some(other) => {
                tracing::info!(provider = %provider, control = %other.describe(), "control message");
            }
            None => {}
        }
        let enqueued = self.enqueue(route, snapshot, provider, &out.events).await?;
        let status = 200;
        if provider == "twilio" {
            return Ok(Answer {
                status,
                content_type: "text/xml",
                body: Bytes::from_static(
                    b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>",
                ),
            });
        }
        Ok(Answer {
            status,
            content_type: "application/json",
            body: Bytes::from(format!(
                "{{\"accepted\":{},\"enqueued\":{enqueued}}}",
                out.events.len()
            )),
        })
    }

    /// Enqueues one delivery per matching endpoint of each event, every event under its
    /// own dedupe key; returns the number of deliveries written. Fails (503) unless every
    /// write is durable.
    async fn enqueue(
        &self,
        route: &Route,
        snapshot: &Snapshot,
        provider: &str,
        events: &[Event],
    ) -> std::result::Result<usize, Refusal> {
        let now = now_ms();
        let mut writes = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            if route.informational == Informational::Drop
                && event.status().is_some_and(|s| s.informational)
            {
                self.app
                    .metrics
                    .events(provider, "dropped_informational", 1);
                continue;
            }
            let batch: Vec<NewDelivery> = snapshot
                .matching(event)
                .map(|endpoint| NewDelivery {
                    endpoint: endpoint.name.clone(),
                    webhook_id: event.idempotency_key.clone(),
                    body: Bytes::from(to_bytes(event, endpoint.payload_options())),
                    created_at_ms: now,
                })
                .collect();
            if batch.is_empty() {
                self.app.metrics.events(provider, "unrouted", 1);
            }
            let key = format!("{}:{}", event.vendor_name, event.idempotency_key);
            let write = self
                .app
                .store
                .enqueue(Some((key, DEDUPE_WINDOW)), batch, now);
            // Each result names its event (`dead_letter_removed` needs to know which).
            writes.push(async move { (i, write.await) });
        }
        // One event per callback is the common case: no join for it.
        let results = match writes.len() {
            1 => match writes.pop() {
                Some(write) => vec![write.await],
                None => Vec::new(),
            },
            _ => futures_util::future::join_all(writes).await,
        };
        // Read after every write is durable (see `dead_letter_removed`).
        let reloaded = self.app.live.generation() != snapshot.generation;
        let mut committed = Vec::new();
        let mut written = 0;
        let mut failure = None;
        for (event, result) in results {
            match result {
                Ok(EnqueueOutcome::Enqueued(ids)) => {
                    written += ids.len();
                    self.app.metrics.events(provider, "enqueued", 1);
                    if reloaded {
                        committed.push((event, ids));
                    }
                }
                Ok(EnqueueOutcome::Duplicate) => self.app.metrics.events(provider, "duplicate", 1),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        // Also when another write of this callback failed: what did commit stays committed.
        if !committed.is_empty() {
            self.dead_letter_removed(snapshot, events, &committed).await;
        }
        if let Some(e) = failure {
            tracing::error!(error = %e, "store unavailable");
            return Err(Refusal::new(
                503,
                "store_unavailable",
                format!("store unavailable: {e}"),
            ));
        }
        Ok(written)
    }

    /// A reload applied while this callback was being enqueued may have removed an
    /// endpoint it was routed to, and dead-lettered that endpoint's queue before this
    /// enqueue committed: with no lane left, such a delivery would wait unseen. So the
    /// deliveries this callback wrote for endpoints the current snapshot lacks become dead
    /// letters `endpoint removed`, now that they are durable: those deliveries only, not the
    /// endpoint's whole queue (on Redis another replica may still have the endpoint, and a
    /// later reload may have added it back). A reload applied after the generation was
    /// read is safe: its own dead-lettering comes after these writes, through the same
    /// store. `committed` pairs an index into `events` with the ids written for it.
    async fn dead_letter_removed(
        &self,
        routed: &Snapshot,
        events: &[Event],
        committed: &[(usize, Vec<DeliveryId>)],
    ) {
        let current = self.app.live.snapshot();
        for (endpoint, id) in removed_deliveries(routed, &current, events, committed) {
            let outcome = self
                .app
                .store
                .dead_letter(id, "endpoint removed", None, None, now_ms())
                .await;
            match outcome {
                Ok(()) => {
                    tracing::info!(endpoint = %endpoint, id = id.0, "delivery to an endpoint removed during its callback dead-lettered");
                }
                // The old lane delivered or buried it before it stopped: nothing left to do.
                Err(StoreError::UnknownDelivery { .. }) => {}
                Err(e) => {
                    tracing::error!(endpoint = %endpoint, id = id.0, error = %e, "cannot dead-letter a delivery to a removed endpoint");
                }
            }
        }
    }
}

/// The deliveries in `committed` (an index into `events`, and the ids written for that
/// event, in the order `routed` matched its endpoints) whose endpoint `current` lacks.
fn removed_deliveries(
    routed: &Snapshot,
    current: &Snapshot,
    events: &[Event],
    committed: &[(usize, Vec<DeliveryId>)],
) -> Vec<(String, DeliveryId)> {
    let mut removed = Vec::new();
    for (event, ids) in committed {
        let Some(event) = events.get(*event) else {
            continue;
        };
        for (endpoint, &id) in routed.matching(event).zip(ids) {
            if current.endpoint(&endpoint.name).is_none() {
                removed.push((endpoint.name.clone(), id));
            }
        }
    }
    removed
}

#[async_trait]
impl ProxyHttp for Ingest {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let snapshot = self.app.live.snapshot();
        let Some(route) = snapshot.route(session.req_header().uri.path()) else {
            // Not a callback: proxied unchanged, to this snapshot's upstream.
            ctx.snapshot = Some(snapshot);
            return Ok(false);
        };
        let provider = route.provider.id();
        self.app.metrics.received(provider);
        if route.mode == Mode::Tap {
            ctx.snapshot = Some(snapshot.clone());
            session.as_downstream_mut().enable_retry_buffering();
        }
        let result = match Self::read_body(session, route.max_body).await {
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
        match result {
            Ok(_) if route.mode == Mode::Tap => Ok(false), // enqueued: now proxy the original
            Ok(answer) => {
                respond(session, answer.status, answer.content_type, answer.body).await?;
                Ok(true)
            }
            Err(refusal) => {
                self.app.metrics.rejected(provider, refusal.metric);
                tracing::warn!(provider = %provider, status = refusal.status, reason = %refusal.reason, "callback refused");
                let mut body = refusal.reason.replace(['\r', '\n'], " ");
                body.push('\n');
                respond(
                    session,
                    refusal.status,
                    "text/plain; charset=utf-8",
                    Bytes::from(body),
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
        // Pingora's own answer for everything else.
        use pingora::{ErrorSource, ErrorType};
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

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let snapshot = ctx
            .snapshot
            .clone()
            .unwrap_or_else(|| self.app.live.snapshot());
        let up = &snapshot.upstream;
        let tls = up.scheme() == "https";
        let host = up.host_str().unwrap_or("127.0.0.1").to_owned();
        let port = up
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(Box::new(HttpPeer::new(addr, tls, host)))
    }
}

#[cfg(test)]
mod tests {
    use super::removed_deliveries;
    use hookrelay_config::{Snapshot, Source};
    use hookrelay_core::provider::{Context, Provider};
    use hookrelay_core::{CallbackRequest, Event};
    use hookrelay_store::DeliveryId;

    fn snapshot(endpoints: &str) -> Snapshot {
        let yaml = format!(
            "listen: 127.0.0.1:0\nadmin: 127.0.0.2:0\nupstream: http://127.0.0.1:9\n\
             store: {{ kind: embedded, path: ./store }}\n\
             callbacks:\n  - {{ path: /wa, provider: meta_whatsapp, verify: {{ app_secret: s }} }}\n\
             endpoints:\n{endpoints}"
        );
        Snapshot::try_from(&Source::new("test.yaml", yaml)).expect("valid config")
    }

    fn delivered_status() -> Vec<Event> {
        let body = r#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"statuses":[{"id":"wamid.1","status":"delivered","timestamp":"1700000000","recipient_id":"15551234567"}]}}]}]}"#;
        let req = CallbackRequest::post(body).with_content_type("application/json");
        Provider::MetaWhatsapp
            .normalize(&req, &Context { received_at_ms: 0 })
            .expect("normalized")
            .events
    }

    #[test]
    fn only_deliveries_to_endpoints_that_a_reload_removed_are_named() {
        let routed = snapshot(
            "  - { name: crm, url: http://127.0.0.1:1/a }\n\
             \x20 - { name: email_only, url: http://127.0.0.1:1/c, events: { email: [status] } }\n\
             \x20 - { name: audit, url: http://127.0.0.1:1/b }\n",
        );
        let mut events = delivered_status();
        events.extend(delivered_status());
        // Two events, each written to crm and audit (email_only takes no WhatsApp event).
        let committed = vec![
            (0, vec![DeliveryId(10), DeliveryId(11)]),
            (1, vec![DeliveryId(12), DeliveryId(13)]),
        ];
        // Nothing removed: nothing named.
        assert!(removed_deliveries(&routed, &routed, &events, &committed).is_empty());
        // `audit` and `email_only` removed, `crm` kept: audit's deliveries only.
        let current = snapshot("  - { name: crm, url: http://127.0.0.1:1/a }\n");
        assert_eq!(
            removed_deliveries(&routed, &current, &events, &committed),
            vec![
                ("audit".to_owned(), DeliveryId(11)),
                ("audit".to_owned(), DeliveryId(13))
            ]
        );
        // Only what was committed: an event whose write failed is not there.
        assert_eq!(
            removed_deliveries(&routed, &current, &events, &committed[1..]),
            vec![("audit".to_owned(), DeliveryId(13))]
        );
    }
}
