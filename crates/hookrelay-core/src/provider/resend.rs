//! Resend webhooks (email delivery, engagement and received email), signed by Svix
//! (Standard Webhooks).
//!
//! # Callback format
//!
//! `POST`, `Content-Type: application/json`, **one event per request**: a JSON object
//! `{type, created_at, data}` (an array or anything else is a [`NormalizeError::Shape`]; a
//! valid object beyond the [`limits`](crate::limits) is kept whole as [`Unparsed`](crate::provider::Unparsed)). `type`
//! is `email.sent`, `email.delivered`, …, `email.received` (see the table), or an event
//! about something other than a message (`contact.*`, `domain.*`, `suppression.*`).
//!
//! - The message id (`vendor_ack_id`) is `data.email_id`, as sent: the `id` that
//!   `POST /emails` returned. (`data.message_id` is the email's RFC `Message-ID`; it stays
//!   in `vendor_response`.) Every `email.*` event needs it.
//! - `data.to` is the "array of impacted recipient email addresses" of the event: **one
//!   event per recipient**, each with its own address as `channel_value` (the address of
//!   an entry written `Name <address>`, else the entry as sent) and its own idempotency
//!   key. Resend posts one webhook per email, not per recipient, so a bounce of a message
//!   sent to two addresses names both. An event without recipients is delivered once,
//!   with `channel_value: ""` (the email is identified by its `email_id`).
//! - The event time is the top-level `created_at` ("when the webhook event was created",
//!   ISO 8601), and for `email.clicked` the click's own `data.click.timestamp`; absent
//!   means the receive time.
//! - Correlation ids: the email's `data.tags` (set at send time) under their own names:
//!   an object of `name: value` as Resend sends it now, or the older array of
//!   `{name, value}`.
//! - Idempotency key: the Svix message id (the `svix-id` header, or `webhook-id`), which
//!   is the same on every retry of one event, with the recipient; a request without it
//!   (a recorded body) is keyed by the event's `type`, `email_id`, `created_at` and
//!   recipient.
//!
//! `vendor_response` is the whole event, unmodified (the same for each recipient of it).
//!
//! A received email (`email.received`) becomes one inbound message on channel `email` with
//! type `email`: `from` = the address of `data.from` (also the `channel_value`), `to` =
//! the addresses of `data.to` joined with `", "`, text = `data.subject` (the webhook
//! carries no body: Resend's API serves it, by `email_id`), `source_message_id` (and
//! `vendor_ack_id`) = `data.email_id`, time = `created_at`, and each of
//! `data.attachments` a `media` entry whose url is the attachment's `id` (the provider's
//! media id, for Resend's attachments API), with its `filename`, `content_type` and
//! `size` when given. Its idempotency key is the Svix message id, else the `email_id`.
//!
//! # Signature
//!
//! Resend signs with Svix, which is Standard Webhooks: headers `svix-id`,
//! `svix-timestamp` and `svix-signature` (the `webhook-id`, `webhook-timestamp` and
//! `webhook-signature` names are accepted too, each when its `svix-` twin is absent);
//! `v1,` + base64 HMAC-SHA256 of `id.timestamp.body` with the endpoint's `whsec_…`
//! secret, several space-separated signatures when Resend rotates the secret. The check
//! is hookrelay's own Standard Webhooks verifier ([`crate::signing::verify`]) on the raw
//! body, in constant time. When a clock is given ([`VerifyOptions::now_secs`]) the
//! timestamp must be within [`VerifyOptions::tolerance`] of it (five minutes by default,
//! Svix's own tolerance); recorded requests (`now_secs: None`) get no clock check.
//!
//! # Verify keys
//!
//! | key | value |
//! |---|---|
//! | `signing_secret` | the webhook's signing secret, `whsec_` + base64 (several, separated by spaces, while rotating) |
//!
//! # Status mapping
//!
//! | Resend `type` | status | notes |
//! |---|---|---|
//! | `email.scheduled` | `queued` | the email is scheduled for later |
//! | `email.sent` | `sent` | the API request succeeded; Resend will deliver it |
//! | `email.delivery_delayed` | `queued` | informational: a temporary problem, Resend retries |
//! | `email.delivered` | `delivered` | |
//! | `email.opened` | `seen` | |
//! | `email.clicked` | `clicked` | time of the click |
//! | `email.bounced`, `bounce.type` `Permanent` or absent | `bounced` | error `{bounce.subType (else type), bounce.message}` |
//! | `email.bounced`, `bounce.type` `Transient`, `Temporary` or `Undetermined` | `failed` | not a hard bounce of the address |
//! | `email.complained` | `complained` | |
//! | `email.failed` | `failed` | error `{failed.reason}` (`reached_daily_quota`, …) |
//! | `email.suppressed` | `failed` | Resend did not send to an address on its suppression list: error `{suppressed.type, suppressed.message}` |
//! | `email.received` | inbound message | see above |
//! | `contact.*`, `domain.*`, `suppression.*`, and any type outside `email.*` | (no event) | about a contact, a domain or a suppression list, not a message: a [`Control::Ignored`] names it |
//! | any other `email.*` | `queued` | informational: the fallback for unknown values |

use std::fmt;

use serde_json::{Map, Value};

use crate::event::{ChannelUser, idempotency_key};
use crate::limits::TopLevel;
use crate::provider::json::str_of;
use crate::provider::{Context, Control, Normalized, VerifyOptions, VerifySettings};
use crate::signing::{self, SignatureError, SigningSecret};
use crate::{
    CallbackRequest, Channel, ErrorInfo, Event, EventKind, InboundMessage, Media, NormalizeError,
    Status, StatusUpdate, VerifyConfigError, VerifyError, timestamp,
};

/// Provider id.
const PROVIDER: &str = "resend";
/// Keys of the `verify:` block.
const KNOWN_KEYS: &[&str] = &["signing_secret"];
/// The message id header: Svix's name, then the Standard Webhooks name.
const ID_HEADERS: [&str; 2] = ["svix-id", signing::WEBHOOK_ID];
/// The timestamp header.
const TIMESTAMP_HEADERS: [&str; 2] = ["svix-timestamp", signing::WEBHOOK_TIMESTAMP];
/// The signature header.
const SIGNATURE_HEADERS: [&str; 2] = ["svix-signature", signing::WEBHOOK_SIGNATURE];

/// Checks Resend's Svix (Standard Webhooks) signatures.
#[derive(Clone)]
pub struct Verifier {
    secrets: Vec<SigningSecret>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("signing_secret", &self.secrets)
            .finish()
    }
}

impl Verifier {
    /// Builds the verifier from the `verify:` settings: `signing_secret` (`whsec_…`, or
    /// several separated by spaces) is required.
    pub fn from_settings(settings: &VerifySettings) -> Result<Self, VerifyConfigError> {
        settings.only(PROVIDER, KNOWN_KEYS)?;
        let raw = settings.require(PROVIDER, "signing_secret")?;
        let secrets = raw
            .expose()
            .split_whitespace()
            .map(str::parse::<SigningSecret>)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| VerifyConfigError::Invalid {
                provider: PROVIDER,
                key: "signing_secret",
                reason: e.to_string(),
            })?;
        if secrets.is_empty() {
            return Err(VerifyConfigError::Missing {
                provider: PROVIDER,
                key: "signing_secret",
            });
        }
        Ok(Self { secrets })
    }

    /// Checks the signature over `id.timestamp.body`, then (when a clock is given) the
    /// timestamp's age.
    pub fn verify(&self, req: &CallbackRequest, opts: &VerifyOptions) -> Result<(), VerifyError> {
        let id = header(req, ID_HEADERS)?.ok_or(VerifyError::Missing("svix-id"))?;
        let ts = header(req, TIMESTAMP_HEADERS)?.ok_or(VerifyError::Missing("svix-timestamp"))?;
        let signature =
            header(req, SIGNATURE_HEADERS)?.ok_or(VerifyError::Missing("svix-signature"))?;
        signing::verify(&self.secrets, id, ts, signature, &req.body, None).map_err(
            |e| match e {
                SignatureError::NoMatch => VerifyError::Mismatch,
                SignatureError::TooOld | SignatureError::InFuture => {
                    VerifyError::Stale(e.to_string())
                }
                other => VerifyError::Malformed(other.to_string()),
            },
        )?;
        let ts: i64 = ts
            .trim()
            .parse()
            .map_err(|_| VerifyError::Malformed("svix-timestamp is not Unix seconds".into()))?;
        opts.check_timestamp(ts)
    }
}

/// The first of `names` the request has, as text; an error when it is not visible ASCII.
fn header<'a>(req: &'a CallbackRequest, names: [&str; 2]) -> Result<Option<&'a str>, VerifyError> {
    let Some(value) = names.iter().find_map(|n| req.headers.get(*n)) else {
        return Ok(None);
    };
    value
        .to_str()
        .map(Some)
        .map_err(|_| VerifyError::Malformed("a Svix header is not visible ASCII".into()))
}

/// The Svix message id of the request (the same on every retry of an event), if any.
fn delivery_id(req: &CallbackRequest) -> Option<&str> {
    ID_HEADERS
        .iter()
        .find_map(|n| req.header(n))
        .map(str::trim)
        .filter(|id| !id.is_empty())
}

/// Normalizes one Resend webhook: a status per recipient, a received email, or nothing
/// (an event about no message).
pub fn normalize(req: &CallbackRequest, ctx: &Context) -> Result<Normalized, NormalizeError> {
    req.expect_content_type(PROVIDER, &["application/json"], "application/json")?;
    if let Some(unparsed) = req.beyond_limits(TopLevel::Object) {
        return Ok(Normalized::one_unparsed(unparsed));
    }
    let body = req.json()?;
    if !body.is_object() {
        return Err(NormalizeError::shape(
            "",
            "a JSON object (one Resend event)",
        ));
    }
    let kind = match body.get("type") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(NormalizeError::MissingField("type".into()));
        }
        Some(_) => return Err(NormalizeError::invalid("type", "not a string")),
    };
    let delivery = delivery_id(req);
    if !kind.starts_with("email.") {
        return Ok(Normalized::control(Control::Ignored {
            reason: describe(&kind, &body, delivery),
        }));
    }
    let data = match body.get("data") {
        Some(data @ Value::Object(_)) => data,
        None | Some(Value::Null) => return Err(NormalizeError::MissingField("data".into())),
        Some(_) => return Err(NormalizeError::shape("data", "an object")),
    };
    let email_id = str_of(data, "email_id")
        .ok_or_else(|| NormalizeError::MissingField("data.email_id".into()))?;
    let created_ms = match body.get("created_at") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            iso_ms(v)
                .ok_or_else(|| NormalizeError::invalid("created_at", "not an ISO 8601 time"))?,
        ),
    };
    if kind == "email.received" {
        let event = inbound(&body, data, email_id, created_ms, delivery, ctx)?;
        return Ok(Normalized::events(vec![event]));
    }
    statuses(&kind, &body, data, email_id, created_ms, delivery, ctx).map(Normalized::events)
}

/// `type (data.id …, svix-id …)` of an event about no message, on one line.
fn describe(kind: &str, body: &Value, delivery: Option<&str>) -> String {
    let short = |v: &str| -> String {
        v.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(100)
            .collect()
    };
    let mut details = Vec::new();
    if let Some(id) = body.get("data").and_then(|d| str_of(d, "id")) {
        details.push(format!("data.id {}", short(&id)));
    }
    if let Some(id) = delivery {
        details.push(format!("svix-id {}", short(id)));
    }
    let what = if details.is_empty() {
        short(kind)
    } else {
        format!("{} ({})", short(kind), details.join(", "))
    };
    format!("1 Resend event about no message, not delivered: {what}")
}

/// An ISO 8601 time (ASCII only: the text parsers expect it) in epoch ms.
fn iso_ms(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) if s.is_ascii() => timestamp::parse_str_ms(s),
        _ => None,
    }
}

/// The address of an entry written `Name <address>`, else the entry, trimmed.
fn address(entry: &str) -> String {
    let entry = entry.trim();
    match (entry.rfind('<'), entry.rfind('>')) {
        (Some(l), Some(r)) if l < r => entry.get(l + 1..r).unwrap_or(entry).trim().to_owned(),
        _ => entry.to_owned(),
    }
}

/// The addresses of `data.to`: an array of strings (or one string).
fn recipients(data: &Value) -> Result<Vec<String>, NormalizeError> {
    match data.get("to") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![address(s)]),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| {
                v.as_str()
                    .map(address)
                    .ok_or_else(|| NormalizeError::invalid("data.to", "not an array of strings"))
            })
            .filter(|a| !matches!(a, Ok(a) if a.is_empty()))
            .collect(),
        Some(_) => Err(NormalizeError::invalid(
            "data.to",
            "not an array of strings",
        )),
    }
}

/// Correlation ids: `data.tags`, an object of `name: value` or an array of `{name, value}`.
fn correlation(data: &Value) -> Map<String, Value> {
    match data.get("tags") {
        Some(Value::Object(tags)) => tags.clone(),
        Some(Value::Array(tags)) => tags
            .iter()
            .filter_map(|t| {
                let name = t.get("name")?.as_str()?;
                Some((
                    name.to_owned(),
                    t.get("value").cloned().unwrap_or(Value::Null),
                ))
            })
            .collect(),
        _ => Map::new(),
    }
}

/// What a status `type` means: status, informational flag, error.
type Mapped = (Status, bool, Option<ErrorInfo>);

/// Maps an `email.*` status type (with its bounce, failure or suppression details).
fn map_type(kind: &str, data: &Value) -> Mapped {
    let part = |obj: &str, key: &str| data.get(obj).and_then(|o| str_of(o, key));
    match kind {
        "email.scheduled" => (Status::Queued, false, None),
        "email.sent" => (Status::Sent, false, None),
        "email.delivery_delayed" => (Status::Queued, true, None),
        "email.delivered" => (Status::Delivered, false, None),
        "email.opened" => (Status::Seen, false, None),
        "email.clicked" => (Status::Clicked, false, None),
        "email.complained" => (Status::Complained, false, None),
        "email.bounced" => {
            let bounce_type = part("bounce", "type");
            let status = match bounce_type.as_deref() {
                Some("Transient" | "Temporary" | "Undetermined") => Status::Failed,
                _ => Status::Bounced,
            };
            let code = part("bounce", "subType").or(bounce_type);
            (
                status,
                false,
                ErrorInfo::from_parts(code, part("bounce", "message")),
            )
        }
        "email.failed" => (
            Status::Failed,
            false,
            ErrorInfo::from_parts(part("failed", "reason"), None),
        ),
        "email.suppressed" => (
            Status::Failed,
            false,
            ErrorInfo::from_parts(part("suppressed", "type"), part("suppressed", "message")),
        ),
        _ => (Status::Queued, true, None),
    }
}

/// A status event: one [`Event`] per recipient.
fn statuses(
    kind: &str,
    body: &Value,
    data: &Value,
    email_id: String,
    created_ms: Option<i64>,
    delivery: Option<&str>,
    ctx: &Context,
) -> Result<Vec<Event>, NormalizeError> {
    let (status, informational, error) = map_type(kind, data);
    let clicked_ms = match data.pointer("/click/timestamp") {
        Some(v) if kind == "email.clicked" && !v.is_null() => Some(iso_ms(v).ok_or_else(|| {
            NormalizeError::invalid("data.click.timestamp", "not an ISO 8601 time")
        })?),
        _ => None,
    };
    let timestamp_ms = clicked_ms.or(created_ms).unwrap_or(ctx.received_at_ms);
    let mut to = recipients(data)?;
    if to.is_empty() {
        to.push(String::new());
    }
    let created = body
        .get("created_at")
        .map(Value::to_string)
        .unwrap_or_default();
    let correlation = correlation(data);
    Ok(to
        .into_iter()
        .map(|recipient| {
            let idempotency_key = match delivery {
                Some(id) => idempotency_key(PROVIDER, &["svix", id, &recipient]),
                None => idempotency_key(PROVIDER, &[kind, &email_id, &created, &recipient]),
            };
            Event {
                channel: Channel::Email,
                channel_value: recipient,
                channel_user: ChannelUser::default(),
                vendor_name: PROVIDER.to_owned(),
                vendor_ack_id: Some(email_id.clone()),
                idempotency_key,
                correlation: correlation.clone(),
                kind: EventKind::Status(StatusUpdate {
                    status,
                    timestamp_ms,
                    error: error.clone(),
                    informational,
                }),
                raw: body.clone().into(),
            }
        })
        .collect())
}

/// `email.received`: an inbound email.
fn inbound(
    body: &Value,
    data: &Value,
    email_id: String,
    created_ms: Option<i64>,
    delivery: Option<&str>,
    ctx: &Context,
) -> Result<Event, NormalizeError> {
    let from = str_of(data, "from")
        .map(|f| address(&f))
        .filter(|f| !f.is_empty())
        .ok_or_else(|| NormalizeError::MissingField("data.from".into()))?;
    let to = recipients(data)?.join(", ");
    let media = data
        .get("attachments")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter(|a| a.is_object())
                .map(|a| Media {
                    url: str_of(a, "id").unwrap_or_default(),
                    content_type: str_of(a, "content_type"),
                    name: str_of(a, "filename"),
                    size: a.get("size").and_then(Value::as_u64),
                })
                .collect()
        })
        .unwrap_or_default();
    let idempotency_key = match delivery {
        Some(id) => idempotency_key(PROVIDER, &["svix", id]),
        None => idempotency_key(PROVIDER, &["email.received", &email_id]),
    };
    Ok(Event {
        channel: Channel::Email,
        channel_value: from.clone(),
        channel_user: ChannelUser::default(),
        vendor_name: PROVIDER.to_owned(),
        vendor_ack_id: Some(email_id.clone()),
        idempotency_key,
        correlation: correlation(data),
        kind: EventKind::Inbound(InboundMessage {
            from,
            to,
            message_type: "email".into(),
            text: str_of(data, "subject"),
            media,
            location: None,
            context: None,
            timestamp_ms: created_ms.unwrap_or(ctx.received_at_ms),
            source_message_id: email_id,
            original_message_id: None,
        }),
        raw: body.clone().into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};
    use serde_json::json;

    const SVIX_VECTOR: &str = include_str!("../../tests/fixtures/resend/svix_vector.json");
    const SW_VECTOR: &str =
        include_str!("../../tests/fixtures/standard-webhooks/sign_vector_1.json");
    const SENT: &[u8] = include_bytes!("../../tests/fixtures/resend/email_sent.json");
    const SENT_TWO: &[u8] =
        include_bytes!("../../tests/fixtures/resend/email_sent_two_recipients.json");
    const SCHEDULED: &[u8] = include_bytes!("../../tests/fixtures/resend/email_scheduled.json");
    const DELIVERED: &[u8] = include_bytes!("../../tests/fixtures/resend/email_delivered.json");
    const DELAYED: &[u8] =
        include_bytes!("../../tests/fixtures/resend/email_delivery_delayed.json");
    const COMPLAINED: &[u8] = include_bytes!("../../tests/fixtures/resend/email_complained.json");
    const BOUNCED: &[u8] = include_bytes!("../../tests/fixtures/resend/email_bounced.json");
    const OPENED: &[u8] = include_bytes!("../../tests/fixtures/resend/email_opened.json");
    const CLICKED: &[u8] = include_bytes!("../../tests/fixtures/resend/email_clicked.json");
    const FAILED: &[u8] = include_bytes!("../../tests/fixtures/resend/email_failed.json");
    const SUPPRESSED: &[u8] = include_bytes!("../../tests/fixtures/resend/email_suppressed.json");
    const RECEIVED: &[u8] = include_bytes!("../../tests/fixtures/resend/email_received.json");
    const CONTACT: &[u8] = include_bytes!("../../tests/fixtures/resend/contact_created.json");

    const CTX: Context = Context {
        received_at_ms: 1_700_000_000_000,
    };

    /// A signed request: `(secret, id, timestamp, signature, body)` of a vector.
    struct Vector {
        secret: String,
        id: String,
        ts: String,
        sig: String,
        body: Vec<u8>,
    }

    fn svix_vector() -> Vector {
        let v: Value = serde_json::from_str(SVIX_VECTOR).expect("vector");
        let s = |k: &str| v[k].as_str().expect(k).to_owned();
        Vector {
            secret: s("secret"),
            id: s("svix-id"),
            ts: s("svix-timestamp"),
            sig: s("svix-signature"),
            body: s("payload").into_bytes(),
        }
    }

    fn request(names: [&'static str; 3], v: &Vector) -> CallbackRequest {
        let mut req = CallbackRequest::post(v.body.clone()).with_content_type("application/json");
        for (name, value) in names.into_iter().zip([&v.id, &v.ts, &v.sig]) {
            req.headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(value).expect("header"),
            );
        }
        req
    }

    const SVIX: [&str; 3] = ["svix-id", "svix-timestamp", "svix-signature"];
    const STANDARD: [&str; 3] = ["webhook-id", "webhook-timestamp", "webhook-signature"];

    fn verifier(secret: &str) -> Verifier {
        Verifier::from_settings(&VerifySettings::new().with("signing_secret", secret))
            .expect("verifier")
    }

    fn at(now: i64) -> VerifyOptions {
        VerifyOptions {
            now_secs: Some(now),
            tolerance_secs: None,
        }
    }

    fn run(body: &[u8]) -> Result<Normalized, NormalizeError> {
        normalize(
            &CallbackRequest::post(body.to_vec()).with_content_type("application/json"),
            &CTX,
        )
    }

    fn one(body: &[u8]) -> Event {
        let mut out = run(body).expect("normalize");
        assert!(out.unparsed.is_empty() && out.control.is_none());
        assert_eq!(out.events.len(), 1);
        out.events.remove(0)
    }

    fn status_of(e: &Event) -> &StatusUpdate {
        e.status().expect("status event")
    }

    #[test]
    fn the_svix_vector_verifies() {
        let v = svix_vector();
        let ts: i64 = v.ts.parse().expect("ts");
        let ver = verifier(&v.secret);
        ver.verify(&request(SVIX, &v), &VerifyOptions::default())
            .expect("recorded: no clock check");
        ver.verify(&request(SVIX, &v), &at(ts)).expect("fresh");
        ver.verify(&request(SVIX, &v), &at(ts + 299))
            .expect("within 5 minutes");
        // Standard Webhooks header names carry the same signature.
        ver.verify(&request(STANDARD, &v), &at(ts))
            .expect("webhook-* headers");
        // The Standard Webhooks vector (the same one, from that spec's libraries).
        let sw: Value = serde_json::from_str(SW_VECTOR).expect("vector");
        let s = |k: &str| sw[k].as_str().expect(k).to_owned();
        let sw = Vector {
            secret: s("secret"),
            id: s("webhook_id"),
            ts: sw["webhook_timestamp"].to_string(),
            sig: s("expected_signature"),
            body: s("payload").into_bytes(),
        };
        verifier(&sw.secret)
            .verify(&request(STANDARD, &sw), &VerifyOptions::default())
            .expect("standard webhooks vector");
    }

    #[test]
    fn stale_and_future_timestamps_fail_with_a_clock() {
        let v = svix_vector();
        let ts: i64 = v.ts.parse().expect("ts");
        let ver = verifier(&v.secret);
        for now in [ts + 301, ts - 301, ts + 86_400] {
            assert!(
                matches!(
                    ver.verify(&request(SVIX, &v), &at(now)),
                    Err(VerifyError::Stale(_))
                ),
                "{now}"
            );
        }
        let wide = VerifyOptions {
            now_secs: Some(ts + 600),
            tolerance_secs: Some(900),
        };
        ver.verify(&request(SVIX, &v), &wide)
            .expect("the route's tolerance applies");
    }

    #[test]
    fn tampering_fails() {
        let v = svix_vector();
        let ver = verifier(&v.secret);
        let opts = VerifyOptions::default();
        let mut body = svix_vector();
        body.body.push(b' ');
        assert!(matches!(
            ver.verify(&request(SVIX, &body), &opts),
            Err(VerifyError::Mismatch)
        ));
        let mut id = svix_vector();
        id.id.push('x');
        assert!(matches!(
            ver.verify(&request(SVIX, &id), &opts),
            Err(VerifyError::Mismatch)
        ));
        let mut ts = svix_vector();
        ts.ts = "1614265331".into();
        assert!(matches!(
            ver.verify(&request(SVIX, &ts), &opts),
            Err(VerifyError::Mismatch)
        ));
        // The Standard Webhooks libraries' negative cases: one character changed, a
        // partial signature, an unknown version, garbage.
        for sig in [
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1O",
            "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "v1,dawfeoifkpqwoekfpqoekf",
            "",
        ] {
            let mut bad = svix_vector();
            bad.sig = sig.into();
            assert!(
                matches!(
                    ver.verify(&request(SVIX, &bad), &opts),
                    Err(VerifyError::Mismatch)
                ),
                "{sig}"
            );
        }
        // Another secret does not verify it; a rotation list with the right one does.
        let other = "whsec_dGhpcyBpcyBub3QgdGhlIHNlY3JldA==";
        assert!(matches!(
            verifier(other).verify(&request(SVIX, &v), &opts),
            Err(VerifyError::Mismatch)
        ));
        verifier(&format!("{other} {}", v.secret))
            .verify(&request(SVIX, &v), &opts)
            .expect("rotation");
        // Several signatures, one of them valid.
        let mut multi = svix_vector();
        multi.sig = format!("v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {}", v.sig);
        ver.verify(&request(SVIX, &multi), &opts)
            .expect("one matches");
    }

    #[test]
    fn missing_and_malformed_headers_fail() {
        let v = svix_vector();
        let ver = verifier(&v.secret);
        let opts = VerifyOptions::default();
        for name in SVIX {
            let mut req = request(SVIX, &v);
            req.headers.remove(name);
            assert!(
                matches!(ver.verify(&req, &opts), Err(VerifyError::Missing(_))),
                "{name}"
            );
        }
        let mut bad_ts = svix_vector();
        bad_ts.ts = "yesterday".into();
        assert!(matches!(
            ver.verify(&request(SVIX, &bad_ts), &opts),
            Err(VerifyError::Malformed(_))
        ));
        let mut dotted = svix_vector();
        dotted.id = "msg.1".into();
        assert!(matches!(
            ver.verify(&request(SVIX, &dotted), &opts),
            Err(VerifyError::Malformed(_))
        ));
        let mut req = request(SVIX, &v);
        req.headers.insert(
            HeaderName::from_static("svix-signature"),
            HeaderValue::from_bytes(b"v1,\xff").expect("header"),
        );
        assert!(matches!(
            ver.verify(&req, &opts),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn settings_fail_closed() {
        assert!(matches!(
            Verifier::from_settings(&VerifySettings::new()),
            Err(VerifyConfigError::Missing { .. })
        ));
        assert!(matches!(
            Verifier::from_settings(&VerifySettings::new().with("signing_secret", "  ")),
            Err(VerifyConfigError::Missing { .. })
        ));
        for bad in [
            "whsec_",
            "whsec_!!!not base64",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw x!",
        ] {
            assert!(
                matches!(
                    Verifier::from_settings(&VerifySettings::new().with("signing_secret", bad)),
                    Err(VerifyConfigError::Invalid { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            Verifier::from_settings(
                &VerifySettings::new()
                    .with("signing_secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
                    .with("secret", "x")
            ),
            Err(VerifyConfigError::Unknown { .. })
        ));
        let dbg = format!("{:?}", verifier("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
        assert!(!dbg.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "{dbg}");
    }

    #[test]
    fn a_signed_resend_event_verifies_and_normalizes() {
        // Resend's documented event, signed as Svix signs it (Svix's test secret).
        let v = svix_vector();
        let secret: SigningSecret = v.secret.parse().expect("secret");
        let ts = 1_708_645_272;
        let sig = signing::Signer::new(vec![secret]).signature(
            "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
            ts,
            DELIVERED,
        );
        let signed = Vector {
            secret: v.secret.clone(),
            id: "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W".into(),
            ts: ts.to_string(),
            sig,
            body: DELIVERED.to_vec(),
        };
        let req = request(SVIX, &signed);
        verifier(&v.secret).verify(&req, &at(ts)).expect("signed");
        let out = normalize(&req, &CTX).expect("normalize");
        assert_eq!(out.events.len(), 1);
        assert_eq!(
            out.events[0].idempotency_key,
            idempotency_key(
                PROVIDER,
                &[
                    "svix",
                    "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
                    "delivered@resend.dev"
                ]
            )
        );
    }

    #[test]
    fn every_documented_type_maps() {
        let cases: [(&[u8], Status, bool); 11] = [
            (SCHEDULED, Status::Queued, false),
            (SENT, Status::Sent, false),
            (DELAYED, Status::Queued, true),
            (DELIVERED, Status::Delivered, false),
            (OPENED, Status::Seen, false),
            (CLICKED, Status::Clicked, false),
            (BOUNCED, Status::Bounced, false),
            (COMPLAINED, Status::Complained, false),
            (FAILED, Status::Failed, false),
            (SUPPRESSED, Status::Failed, false),
            (SENT_TWO, Status::Sent, false),
        ];
        for (body, want, informational) in cases {
            let out = run(body).expect("normalize");
            for e in &out.events {
                let s = status_of(e);
                assert_eq!((s.status, s.informational), (want, informational));
                assert_eq!(e.channel, Channel::Email);
                assert!(e.vendor_ack_id.is_some());
                assert_eq!(
                    s.error.is_some(),
                    matches!(want, Status::Failed | Status::Bounced)
                );
            }
        }
        let delivered = one(DELIVERED);
        assert_eq!(delivered.channel_value, "delivered@resend.dev");
        assert_eq!(
            delivered.vendor_ack_id.as_deref(),
            Some("56761188-7520-42d8-8898-ff6fc54ce618")
        );
        // "2026-02-22T23:41:12.126Z"
        assert_eq!(status_of(&delivered).timestamp_ms, 1_771_803_672_126);
        assert_eq!(
            Value::Object(delivered.correlation.clone()),
            json!({"category": "confirm_email"})
        );
        assert_eq!(
            status_of(&one(BOUNCED)).error,
            Some(ErrorInfo {
                code: Some("Suppressed".into()),
                message: Some(
                    "The recipient's email address is on the suppression list because it has a recent history of producing hard bounces."
                        .into()
                ),
            })
        );
        assert_eq!(
            status_of(&one(FAILED)).error,
            Some(ErrorInfo {
                code: Some("reached_daily_quota".into()),
                message: None
            })
        );
        assert_eq!(
            status_of(&one(SUPPRESSED))
                .error
                .clone()
                .and_then(|e| e.code),
            Some("OnAccountSuppressionList".into())
        );
        // The click's own time: "2024-11-24T05:00:57.163Z".
        assert_eq!(status_of(&one(CLICKED)).timestamp_ms, 1_732_424_457_163);
    }

    #[test]
    fn one_event_per_recipient() {
        let out = run(SENT_TWO).expect("normalize");
        let to: Vec<&str> = out
            .events
            .iter()
            .map(|e| e.channel_value.as_str())
            .collect();
        assert_eq!(to, ["to@example.org", "to2@example.org"]);
        assert_ne!(out.events[0].idempotency_key, out.events[1].idempotency_key);
        assert_eq!(
            Value::Object(out.events[0].correlation.clone()),
            json!({"tag1": "Tag_1_value", "tag2": "Tag_2_value"})
        );
        // No recipients: one event, no address.
        let e = one(br#"{"type":"email.delivered","created_at":"2024-02-22T23:41:12.126Z","data":{"email_id":"e-1"}}"#);
        assert_eq!(e.channel_value, "");
        // The older array of tag objects.
        let e = one(br#"{"type":"email.sent","data":{"email_id":"e-1","to":["a@b.c"],"tags":[{"name":"category","value":"confirm_email"}]}}"#);
        assert_eq!(
            Value::Object(e.correlation.clone()),
            json!({"category": "confirm_email"})
        );
        assert_eq!(status_of(&e).timestamp_ms, CTX.received_at_ms);
    }

    #[test]
    fn bounce_types_map() {
        let bounce = |t: &str| {
            let body = json!({"type": "email.bounced", "data": {"email_id": "e", "to": ["a@b.c"],
                "bounce": {"type": t, "subType": "General", "message": "no"}}});
            status_of(&one(body.to_string().as_bytes())).status
        };
        assert_eq!(bounce("Permanent"), Status::Bounced);
        for t in ["Transient", "Temporary", "Undetermined"] {
            assert_eq!(bounce(t), Status::Failed, "{t}");
        }
        let unknown = one(br#"{"type":"email.teleported","data":{"email_id":"e","to":["a@b.c"]}}"#);
        let s = status_of(&unknown);
        assert_eq!((s.status, s.informational), (Status::Queued, true));
    }

    #[test]
    fn a_received_email_is_an_inbound_message() {
        let e = one(RECEIVED);
        assert_eq!(e.channel, Channel::Email);
        assert_eq!(e.channel_value, "onboarding@resend.dev");
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound expected")
        };
        assert_eq!(m.from, "onboarding@resend.dev");
        assert_eq!(m.to, "delivered@resend.dev");
        assert_eq!(m.message_type, "email");
        assert_eq!(m.text.as_deref(), Some("Sending this example"));
        assert_eq!(m.source_message_id, "56761188-7520-42d8-8898-ff6fc54ce618");
        assert_eq!(m.timestamp_ms, 1_771_803_672_126);
        assert_eq!(
            m.media,
            vec![Media {
                url: "2a0c9ce0-3112-4728-976e-47ddcd16a318".into(),
                content_type: Some("image/png".into()),
                name: Some("avatar.png".into()),
                size: None,
            }]
        );
        // The older form: a display name in `from`, non-ASCII.
        let body = json!({"type": "email.received", "created_at": "2024-02-22T23:41:12.126Z",
            "data": {"email_id": "e-ü", "from": "Zoë <zoë@bücher.de>", "to": ["a@x.dev", "b@x.dev"],
                "subject": "Grüße 👋", "attachments": []}});
        let e = one(body.to_string().as_bytes());
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound expected")
        };
        assert_eq!(m.from, "zoë@bücher.de");
        assert_eq!(m.to, "a@x.dev, b@x.dev");
        assert_eq!(m.text.as_deref(), Some("Grüße 👋"));
    }

    #[test]
    fn events_about_no_message_are_left_out() {
        let out = run(CONTACT).expect("normalize");
        assert!(out.events.is_empty() && out.unparsed.is_empty());
        assert_eq!(
            out.control,
            Some(Control::Ignored {
                reason: "1 Resend event about no message, not delivered: contact.created \
                    (data.id e169aa45-1ecf-4183-9955-b1499d5701d3)"
                    .into()
            })
        );
        for kind in ["domain.updated", "suppression.added", "something.new"] {
            let body = json!({"type": kind, "created_at": "2024-02-22T23:41:12.126Z", "data": {}});
            let out = run(body.to_string().as_bytes()).expect("normalize");
            assert!(out.events.is_empty(), "{kind}");
            assert!(
                matches!(out.control, Some(Control::Ignored { .. })),
                "{kind}"
            );
        }
    }

    #[test]
    fn idempotency_keys_follow_the_svix_id() {
        let with_id = |id: &str, body: &[u8]| {
            let mut req =
                CallbackRequest::post(body.to_vec()).with_content_type("application/json");
            req.headers.insert(
                HeaderName::from_static("svix-id"),
                HeaderValue::from_str(id).expect("header"),
            );
            normalize(&req, &CTX)
                .expect("normalize")
                .events
                .remove(0)
                .idempotency_key
        };
        assert_eq!(with_id("msg_1", DELIVERED), with_id("msg_1", DELIVERED));
        assert_ne!(with_id("msg_1", DELIVERED), with_id("msg_2", DELIVERED));
        assert_ne!(with_id("msg_1", DELIVERED), one(DELIVERED).idempotency_key);
        assert_eq!(
            one(DELIVERED).idempotency_key,
            one(DELIVERED).idempotency_key
        );
        assert_ne!(one(DELIVERED).idempotency_key, one(OPENED).idempotency_key);
        assert_ne!(
            one(RECEIVED).idempotency_key,
            one(DELIVERED).idempotency_key
        );
    }

    #[test]
    fn malformed_input_is_an_error() {
        let cases: &[&[u8]] = &[
            b"",
            b" ",
            b"{\"type\":\"email.sent\"",
            b"[{\"type\":\"email.sent\"}]",
            b"\"email.sent\"",
            b"{\"type\":5}",
            b"{\"data\":{}}",
            b"{\"type\":\"email.sent\"}",
            b"{\"type\":\"email.sent\",\"data\":[]}",
            b"{\"type\":\"email.sent\",\"data\":{}}",
            b"{\"type\":\"email.sent\",\"data\":{\"email_id\":\"e\",\"to\":[5]}}",
            b"{\"type\":\"email.sent\",\"data\":{\"email_id\":\"e\",\"to\":5}}",
            b"{\"type\":\"email.sent\",\"created_at\":\"soon\",\"data\":{\"email_id\":\"e\"}}",
            b"{\"type\":\"email.sent\",\"created_at\":\"x\xc3\xa9aaaa\",\"data\":{\"email_id\":\"e\"}}",
            b"{\"type\":\"email.clicked\",\"data\":{\"email_id\":\"e\",\"click\":{\"timestamp\":7}}}",
            b"{\"type\":\"email.received\",\"data\":{\"email_id\":\"e\"}}",
            b"\xff\xfe\x00garbage",
        ];
        for body in cases {
            assert!(run(body).is_err(), "{:?}", String::from_utf8_lossy(body));
        }
        let form = CallbackRequest::post(SENT.to_vec())
            .with_content_type("application/x-www-form-urlencoded");
        assert!(matches!(
            normalize(&form, &CTX),
            Err(NormalizeError::UnsupportedContentType { .. })
        ));
        assert!(normalize(&CallbackRequest::post(SENT.to_vec()), &CTX).is_ok());
        let garbage = vec![b'{'; 10 * 1024 * 1024];
        assert!(run(&garbage).is_err());
        let deep = format!(
            r#"{{"type":"email.sent","data":{{"email_id":"e","x":{}{}}}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let out = run(deep.as_bytes()).expect("kept, not refused");
        assert_eq!((out.events.len(), out.unparsed.len()), (0, 1));
        assert_eq!(out.unparsed[0].raw, deep);
    }

    #[test]
    fn mutated_bodies_never_panic() {
        // Truncations and one-byte replacements of real bodies (at about 400 places each):
        // errors or events, never a panic.
        for body in [CLICKED, RECEIVED] {
            let step = (body.len() / 400).max(1);
            for cut in (0..body.len()).step_by(step) {
                let _ = run(&body[..cut]);
            }
            for i in (0..body.len()).step_by(step) {
                for b in [b'"', b'{', b']', b'0', b'\\', 0xff] {
                    let mut m = body.to_vec();
                    m[i] = b;
                    let _ = run(&m);
                }
            }
        }
    }
}
