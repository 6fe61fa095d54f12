//! Accepting a callback: verify → normalize → fan out → durable enqueue.
//!
//! Nothing here names a provider: what differs between providers (a certificate fetched by
//! URL, a one-time token, a handshake to answer, the acknowledgement's body) is asked of
//! the provider and its verifier.
//!
//! An event the provider's normalizer kept as unparsed (beyond the JSON limits, or an
//! element of a batch it could not normalize) is written as a dead letter of the reserved
//! endpoint [`UNPARSED_ENDPOINT`], durably and deduplicated like an event, before the
//! provider gets its 2xx: the callback verified and is the provider's format, so it is
//! answered, and what could not be normalized is kept to be looked at.

use bytes::Bytes;
use hookrelay_config::Live;
use hookrelay_config::{Informational, Route, Snapshot};
use hookrelay_core::payload::to_bytes;
use hookrelay_core::provider::{Context, Control, VerifyOptions};
use hookrelay_core::timestamp::ms_to_rfc3339;
use hookrelay_core::{CallbackRequest, Event, Unparsed};
use hookrelay_store::{DeliveryId, EnqueueOutcome, NewDelivery, Store, StoreError};

use crate::metrics::Metrics;

use super::refusal::Refusal;
use super::{Ingest, replay};
use crate::clock::now_ms;

/// The endpoint of the dead letters that hold unparsed events. Endpoint names in the config
/// are letters, digits, `_`, `-` and `.`, so no configured endpoint can have this name, and
/// no lane ever leases its deliveries (it has none: they are written as dead letters).
pub(crate) const UNPARSED_ENDPOINT: &str = ":unparsed";

/// What an accepted callback answers.
#[derive(Clone)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) body: Bytes,
}

impl Ingest {
    /// The enqueue this listener shares with the admin's replay.
    fn fanout(&self) -> Fanout<'_> {
        Fanout {
            store: &self.store,
            metrics: &self.metrics,
            live: &self.live,
        }
    }

    /// Verify → (replay check) → accept; a token is forgotten again when the callback is
    /// not accepted, so the provider's retry can use it.
    ///
    /// With traces on, the callback has a span (route, provider, events, deliveries,
    /// outcome), the parent of its deliveries' attempts.
    pub(crate) async fn handle(
        &self,
        route: &Route,
        snapshot: &Snapshot,
        req: CallbackRequest,
    ) -> Result<Answer, Refusal> {
        let span = crate::telemetry::callback_span(&route.path, route.provider.id());
        if span.is_none() {
            return self.handle_traced(route, snapshot, req, None).await;
        }
        let trace = crate::telemetry::traceparent(&span);
        let result = tracing::Instrument::instrument(
            self.handle_traced(route, snapshot, req, trace.as_deref()),
            span.clone(),
        )
        .await;
        match &result {
            Ok(_) => span.record("outcome", "accepted"),
            Err(refusal) => {
                span.record("outcome", refusal.metric());
                span.record("otel.status_code", "ERROR")
            }
        };
        result
    }

    /// [`Ingest::handle`], with the trace context to store with the deliveries.
    async fn handle_traced(
        &self,
        route: &Route,
        snapshot: &Snapshot,
        req: CallbackRequest,
        trace: Option<&str>,
    ) -> Result<Answer, Refusal> {
        self.verify(route, &req).await?;
        let token = route
            .provider
            .replay_token(&req)
            .map(|t| format!("{}:{t}", route.provider.id()));
        if let Some(token) = &token {
            self.first_use(token).await?;
        }
        let result = self.accept(route, snapshot, req, trace).await;
        if result.is_err()
            && let Some(token) = &token
        {
            self.replay.forget(token);
            if let Err(e) = self.store.forget_use(token).await {
                tracing::warn!(error = %e, "cannot forget a replay token; the provider's retry will be refused until it expires");
            }
        }
        result
    }

    /// Records a one-time token: in this process's cache first (a burst of replays costs
    /// no store round trip), then in the store, which survives restarts and is shared by
    /// replicas.
    async fn first_use(&self, token: &str) -> Result<(), Refusal> {
        let now = now_ms();
        if !self.replay.first_use(token, now) {
            return Err(Refusal::ReplayedToken);
        }
        match self.store.first_use(token, replay::TTL, now).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Refusal::ReplayedToken),
            Err(e) => {
                self.replay.forget(token);
                Err(Refusal::StoreUnavailable(e.to_string()))
            }
        }
    }

    /// The route's signature check, with a fetched certificate when its verifier needs one.
    async fn verify(&self, route: &Route, req: &CallbackRequest) -> Result<(), Refusal> {
        let Some(verifier) = &route.verifier else {
            return Ok(());
        };
        let opts = VerifyOptions {
            now_secs: Some(now_ms() / 1000),
            tolerance_secs: None,
        };
        let checked = match verifier
            .certificate_url(req)
            .map_err(|e| Refusal::BadSignature(e.to_string()))?
        {
            Some(url) => {
                let pem = self.certs.get(&url).await.map_err(|reason| {
                    Refusal::CertificateUnavailable {
                        url: url.clone(),
                        reason,
                    }
                })?;
                verifier.verify_with_certificate(req, &pem, &opts)
            }
            None => verifier.verify(req, &opts),
        };
        checked.map_err(|e| Refusal::BadSignature(e.to_string()))
    }

    /// Normalize → answer handshakes → enqueue.
    async fn accept(
        &self,
        route: &Route,
        snapshot: &Snapshot,
        req: CallbackRequest,
        trace: Option<&str>,
    ) -> Result<Answer, Refusal> {
        let provider = route.provider.id();
        let received_at_ms = now_ms();
        let out = route
            .provider
            .normalize(&req, &Context { received_at_ms })
            .map_err(|e| Refusal::BadBody(e.to_string()))?;
        if let Some(control) = &out.control {
            if let Some(reply) = control.reply() {
                return Ok(Answer {
                    status: 200,
                    content_type: "text/plain",
                    body: Bytes::copy_from_slice(reply.as_bytes()),
                });
            }
            if let Some(url) = control.confirmation_url() {
                let url = url.map_err(Refusal::ConfirmationFailed)?;
                self.certs
                    .confirm(url)
                    .await
                    .map_err(Refusal::ConfirmationFailed)?;
                tracing::info!(provider = %provider, control = %control.describe(), "subscription confirmed");
            } else {
                if matches!(control, Control::Ignored { .. }) {
                    // Not about a message (SendGrid's account events): counted, not sent.
                    self.metrics.events(provider, "ignored", 1);
                }
                tracing::info!(provider = %provider, control = %control.describe(), "control message");
            }
        }
        let enqueued = self
            .fanout()
            .enqueue(route, snapshot, provider, &out.events, trace)
            .await?;
        if trace.is_some() {
            let span = tracing::Span::current();
            span.record("events", out.events.len());
            span.record("deliveries", enqueued);
        }
        let content_type = req
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        self.keep_unparsed(route, snapshot, &out.unparsed, received_at_ms, content_type)
            .await?;
        if crate::logs::sample_event() {
            tracing::info!(
                target: crate::logs::EVENTS_TARGET,
                route = %route.path,
                provider,
                events = out.events.len(),
                deliveries = enqueued,
                unparsed = out.unparsed.len(),
                "callback accepted"
            );
        }
        let ack = route.provider.acknowledgement(out.events.len(), enqueued);
        Ok(Answer {
            status: 200,
            content_type: ack.content_type,
            body: Bytes::from(ack.body),
        })
    }

    /// Writes each unparsed event as a dead letter of [`UNPARSED_ENDPOINT`], reason
    /// `unparsed: <why>`, under its own dedupe key (`<provider>:<key of its raw text>`, the
    /// window of events): a provider's retry of the same event writes nothing new. Fails
    /// (503) unless every write is durable; what did commit stays, and the retry finds it a
    /// duplicate.
    async fn keep_unparsed(
        &self,
        route: &Route,
        snapshot: &Snapshot,
        unparsed: &[Unparsed],
        received_at_ms: i64,
        content_type: Option<&str>,
    ) -> Result<(), Refusal> {
        if unparsed.is_empty() {
            return Ok(());
        }
        let provider = route.provider.id();
        let now = now_ms();
        let writes = unparsed.iter().map(|u| {
            let key = u.idempotency_key(provider);
            tracing::warn!(provider = %provider, route = %route.path, webhook_id = %key, reason = %u.reason, "event kept unparsed");
            let delivery = NewDelivery {
                endpoint: UNPARSED_ENDPOINT.to_owned(),
                body: unparsed_body(provider, &route.path, received_at_ms, content_type, u),
                webhook_id: key.clone(),
                created_at_ms: received_at_ms,
                trace: None,
            };
            let dedupe = Some((format!("{provider}:{key}"), snapshot.dedupe_window));
            self.store.enqueue_dead_letter(
                dedupe,
                delivery,
                format!("unparsed: {}", u.reason),
                now,
            )
        });
        let mut kept = 0;
        let mut failure = None;
        for result in futures_util::future::join_all(writes).await {
            match result {
                Ok(_) => kept += 1,
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        self.metrics.unparsed(provider, kept);
        match failure {
            Some(e) => Err(Refusal::of_store(&e)),
            None => Ok(()),
        }
    }
}

/// What fanning events out to their endpoints needs: the listener's accepted callbacks and
/// the admin's replay of unparsed events go through the same enqueue.
pub(crate) struct Fanout<'a> {
    pub(crate) store: &'a Store,
    pub(crate) metrics: &'a Metrics,
    pub(crate) live: &'a Live,
}

impl Fanout<'_> {
    /// Enqueues one delivery per matching endpoint of each event, every event under its
    /// own dedupe key, with the callback's trace context; returns the number of deliveries
    /// written. Fails (503) unless every write is durable.
    pub(crate) async fn enqueue(
        &self,
        route: &Route,
        snapshot: &Snapshot,
        provider: &str,
        events: &[Event],
        trace: Option<&str>,
    ) -> Result<usize, Refusal> {
        let now = now_ms();
        let mut writes = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            if route.informational == Informational::Drop
                && event.status().is_some_and(|s| s.informational)
            {
                self.metrics.events(provider, "dropped_informational", 1);
                continue;
            }
            let batch: Vec<NewDelivery> = snapshot
                .matching(event)
                .map(|endpoint| NewDelivery {
                    endpoint: endpoint.name.clone(),
                    webhook_id: event.idempotency_key.clone(),
                    body: Bytes::from(to_bytes(event, endpoint.payload_options())),
                    created_at_ms: now,
                    trace: trace.map(str::to_owned),
                })
                .collect();
            let key = format!("{}:{}", event.vendor_name, event.idempotency_key);
            let write = self
                .store
                .enqueue(Some((key, snapshot.dedupe_window)), batch, now);
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
        let reloaded = self.live.generation() != snapshot.generation;
        let mut committed = Vec::new();
        let mut written = 0;
        let mut failure = None;
        for (event, result) in results {
            match result {
                // No endpoint takes it: only its dedupe key was written.
                Ok(EnqueueOutcome::Enqueued(ids)) if ids.is_empty() => {
                    self.metrics.events(provider, "unrouted", 1);
                }
                Ok(EnqueueOutcome::Enqueued(ids)) => {
                    written += ids.len();
                    self.metrics.events(provider, "enqueued", 1);
                    if reloaded {
                        committed.push((event, ids));
                    }
                }
                Ok(EnqueueOutcome::Duplicate) => self.metrics.events(provider, "duplicate", 1),
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
            return Err(Refusal::of_store(&e));
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
        let current = self.live.snapshot();
        for (endpoint, id) in removed_deliveries(routed, &current, events, committed) {
            let outcome = self
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

/// The body of an unparsed event's dead letter: where it came from, the event as the
/// provider sent it, and the body to normalize it again (the event alone in the provider's
/// envelope, when that is not the event itself), as JSON strings (never parsed again here:
/// they may be beyond the limits that every JSON parser reading the dead letters can take).
fn unparsed_body(
    provider: &str,
    route: &str,
    received_at_ms: i64,
    content_type: Option<&str>,
    unparsed: &Unparsed,
) -> Bytes {
    let mut body = serde_json::json!({
        "provider": provider,
        "route": route,
        "received_at": ms_to_rfc3339(received_at_ms),
        "received_at_ms": received_at_ms,
        "event": unparsed.raw,
    });
    if let Some(ct) = content_type {
        body["content_type"] = ct.into();
    }
    if let Some(alone) = &unparsed.body {
        body["body"] = alone.as_str().into();
    }
    Bytes::from(body.to_string())
}

/// An unparsed event's dead letter, as [`unparsed_body`] wrote it.
struct Kept {
    provider: String,
    route: String,
    /// Absent in letters written before it was kept.
    received_at_ms: Option<i64>,
    content_type: Option<String>,
    event: String,
    body: Option<String>,
}

impl Kept {
    fn read(body: &[u8]) -> Result<Self, String> {
        let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let text = |k: &str| {
            v.get(k)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let need = |k: &str| text(k).ok_or_else(|| format!("no {k}"));
        Ok(Self {
            provider: need("provider")?,
            route: need("route")?,
            received_at_ms: v.get("received_at_ms").and_then(serde_json::Value::as_i64),
            content_type: text("content_type"),
            event: need("event")?,
            body: text("body"),
        })
    }
}

/// Why an unparsed event was not replayed.
pub(crate) enum NotReplayed {
    /// The event still cannot be delivered as it is (`409`): the reason.
    Still(String),
    /// The store could not take the deliveries (`503`).
    Store(String),
}

/// Runs an unparsed event's dead letter through its route's current normalizer; what comes
/// out is fanned out to the endpoints (deduplicated like any event) and the dead letter is
/// removed. Returns how many events and deliveries were written.
pub(crate) async fn replay_unparsed(
    fanout: &Fanout<'_>,
    letter: &hookrelay_store::DeadLetter,
) -> Result<(usize, usize), NotReplayed> {
    let kept = Kept::read(&letter.delivery.body)
        .map_err(|e| NotReplayed::Still(format!("not an unparsed event's dead letter: {e}")))?;
    let snapshot = fanout.live.snapshot();
    let route = snapshot.route(&kept.route).ok_or_else(|| {
        NotReplayed::Still(format!("route {} is no longer configured", kept.route))
    })?;
    let provider = route.provider.id();
    if provider != kept.provider {
        return Err(NotReplayed::Still(format!(
            "route {} is now provider {provider}; the event came from {}",
            kept.route, kept.provider
        )));
    }
    let mut req = http::Request::post(kept.route.as_str());
    if let Some(ct) = &kept.content_type {
        req = req.header(http::header::CONTENT_TYPE, ct.as_str());
    }
    let head = req
        .body(())
        .map_err(|e| NotReplayed::Still(format!("cannot rebuild the request: {e}")))?;
    let (parts, ()) = head.into_parts();
    let request = CallbackRequest {
        method: parts.method,
        uri: parts.uri,
        headers: parts.headers,
        body: Bytes::from(kept.body.unwrap_or(kept.event)),
    };
    let ctx = Context {
        received_at_ms: kept.received_at_ms.unwrap_or(letter.delivery.created_at_ms),
    };
    let out = route
        .provider
        .normalize(&request, &ctx)
        .map_err(|e| NotReplayed::Still(format!("still not normalized: {e}")))?;
    if let Some(u) = out.unparsed.first() {
        return Err(NotReplayed::Still(format!(
            "still not normalized: {}",
            u.reason
        )));
    }
    let written = fanout
        .enqueue(route, &snapshot, provider, &out.events, None)
        .await
        .map_err(|e| NotReplayed::Store(e.to_string()))?;
    // Written (or found to be duplicates): the letter has done its work. Were this
    // removal lost, a second replay would find every event a duplicate.
    fanout
        .store
        .delete_dead_letter(letter.delivery.id)
        .await
        .map_err(|e| NotReplayed::Store(e.to_string()))?;
    Ok((out.events.len(), written))
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
