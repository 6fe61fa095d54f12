// One file, about 760 lines before the tests, a hundred of them the module docs. Gupshup
// posts seven formats to the same callback URL and only the body's shape tells them apart,
// so the dispatch (`normalize`, `json_events`, `pair_events`) and the mapper of each format
// are read together; the token check is sixty lines and shares nothing with them, and
// Meta's envelope (v3) already lives in `whatsapp_cloud`.

//! Gupshup callbacks (`gupshup`): WhatsApp (Enterprise, gupshup.io v2 and v3) and email.
//!
//! # Callback formats
//!
//! Gupshup posts several formats to the same kind of callback URL; the body's shape picks
//! the parser (JSON bodies start with `{` or `[`, anything else is read as form fields; a
//! `GET` is read from its query string, without the `token` parameter).
//!
//! | shape | format | events |
//! |---|---|---|
//! | `{"event_type": "status", "response": [{…}]}` or a bare array `[{…}]` of `{externalId, eventType, eventTs, destAddr, srcAddr, channel, cause, errorCode, extra}` | Enterprise WhatsApp delivery reports (as relayed by SuprSend, and posted as an array by Gupshup Enterprise) | one status per element |
//! | a bare array `[{…}]` of `{externalId, eventType, eventTs, destAddr, srcAddr, cause, errCode, channel: "SMS", noOfFrags}` (or the form field `response` holding it) | Enterprise SMS real-time delivery reports, `POST` (set up on request) | one status per element |
//! | `GET ?externalId=…&deliveredTS=…&status=…&cause=…&phoneNo=…&errCode=…&noOfFrags=…&mask=…` | Enterprise SMS real-time delivery report, `GET` (the default: the Realtime Delivery URL of the account's settings) | one status |
//! | `{"app", "timestamp", "version": 2, "type": "message-event", "payload": {"id", "gsId", "type", "destination", "payload": {ts, code, reason}}}` | gupshup.io v2 message event | one status |
//! | `{"app", "timestamp", "version": 2, "type": "message", "payload": {"id", "source", "type", "payload": {…}, "sender": {…}, "context": {…}}}` | gupshup.io v2 inbound message | one inbound message |
//! | `{"object": "whatsapp_business_account", "gs_app_id", "entry": [{"changes": [...]}]}` | gupshup.io v3 (Meta's envelope, plus `gs_id`, ms or s timestamps) | as Meta: every status and message |
//! | `{"waNumber", "mobile", "replyId", "messageId", "timestamp", "name", "type", "text", "context"}` (JSON or form fields) | Enterprise inbound message | one inbound message |
//! | form field `response` = JSON array of `{timestamp, email, event, campaignid, link?}` | email delivery report | one status per element, channel `email` |
//!
//! Other gupshup.io v2 event types (`user-event`, `system-event`, `billing-event`,
//! `preference-event`) carry no message status and yield no events.
//!
//! Phone numbers are E.164 by the rule of all providers: `+` in front of 7 to 15 digits,
//! anything else (an email address, a masked number, a business-scoped user id) as sent.
//!
//! WhatsApp usernames: a user who adopted a username may withhold their number; Gupshup
//! then names them by their business-scoped user id (BSUID, `IN.1648738043044942`), sent
//! with every v2 event once the app has BSUIDs enabled (`payload.userId` of a message
//! event, `payload.sender.userId` of an inbound message) and in v3 as Meta sends it. The
//! BSUID is the event's `channel_user_id`, and its address (`channel_value`, `from`) when no
//! number was sent. A WhatsApp address of any format that is itself a BSUID is kept as
//! sent (no `+`) and is also the `channel_user_id`.
//!
//! Field mapping:
//!
//! - **Enterprise DLR** (WhatsApp, and SMS by `POST`): `channel_value` = `destAddr`,
//!   `vendor_ack_id` = `externalId`, timestamp = `eventTs` (ms), error (failed) = `{code:
//!   errCode, message: cause}` (the SMS reports name the code `errCode`; the WhatsApp
//!   reports SuprSend relays name it `errorCode`, read when `errCode` is absent), channel
//!   from `channel` (`WHATSAPP`, `SMS`), idempotency from (`externalId`,
//!   `eventType`, `eventTs`). `vendor_response` is the body narrowed to this element: the
//!   `{"event_type", "response": [element]}` object for the wrapped form (identical to the
//!   body for a one-element batch, as SuprSend shows it), the element for a bare array.
//! - **Enterprise SMS DLR by `GET`**: channel `sms`, `channel_value` = `phoneNo`,
//!   `vendor_ack_id` = `externalId`, timestamp = `deliveredTS` (a number: seconds or
//!   milliseconds by magnitude, the rule of all providers; absent: the time received),
//!   status from `status` (table below), error (failed) = `{code: errCode, message:
//!   cause}`; idempotency from (`externalId`, `status`, `deliveredTS`). `vendor_response`
//!   is the query parameters as an object, without `token`. Gupshup sends one report per
//!   message (`noOfFrags` says how many SMS parts it took), not one per part.
//! - **v2 message event**: `channel_value` = `destination` (else `userId`);
//!   `channel_user_id` = `userId`; `vendor_ack_id` = `gsId`
//!   when present, else `id` (`gsId` is the Gupshup message id the send API returned;
//!   `id` holds it only for `enqueued` and synchronous `failed`, and is the WhatsApp id
//!   otherwise); timestamp = `payload.ts` (Meta's time, seconds) else the top-level
//!   `timestamp` (ms); error (failed) = `{code, reason}`; idempotency from (that id,
//!   `type`, the time). `vendor_response` is the whole callback.
//! - **v2 inbound**: `from` = `source`, else `sender.phone`, else `sender.userId` (also
//!   the `channel_value`); `channel_user_id` = `sender.userId`; `to` = the digits of
//!   `phone` when the callback names the app's number, else the app name;
//!   `source_message_id` and `vendor_ack_id` = `payload.id`; timestamp = top-level
//!   `timestamp` (ms); `context.id` = the WhatsApp id of the message replied to. Types:
//!   `text` → text; `image`, `video`, `audio`, `sticker`, `file` (reported as `document`)
//!   → media `{url, contentType}` and caption; `location`; `button_reply` / `list_reply` →
//!   title; `quick_reply` → text; others by type only. `vendor_response` is the whole
//!   callback.
//! - **v3**: parsed as Meta's envelope (`statuses[]` and `messages[]`, with the
//!   business-scoped user ids and usernames of `contacts[]`, `from_user_id` and
//!   `recipient_user_id`); `vendor_ack_id` = `gs_id` when present, else `id`.
//! - **Enterprise inbound**: `from` = `mobile`, `to` = `waNumber`;
//!   `vendor_ack_id` = `replyId` (Gupshup's id of this inbound message); `source_message_id`
//!   = `messageId` (as SuprSend reads it: the message id the callback names, which for a
//!   reply is your id of the message replied to), else `replyId`; `context` (a JSON text or
//!   object `{from, id}`); timestamp = `timestamp` (ms); media fields (`image`, …) may be JSON
//!   texts with `url`, `mime_type`, `caption`. `vendor_response` is the whole callback.
//! - **Email**: `channel_value` = `email`, `vendor_ack_id` = `campaignid`, timestamp =
//!   `timestamp` (seconds, a string), error (failed, bounced) = `{code: event, message:
//!   reason}`; idempotency from (`campaignid`, `email`, `event`, `timestamp`, `link`).
//!   `vendor_response` is the array element.
//!
//! # Signature scheme
//!
//! Gupshup signs nothing. The route holds a shared token that Gupshup sends back with
//! every callback: as the query parameter `token` of the configured callback URL
//! (`https://…/callbacks/gupshup?token=…`), as `Authorization: Bearer <token>`, or as an
//! `X-Gupshup-Token` header (the v2/v3 subscription API can add custom headers). Each
//! presented value is compared with the configured token in constant time; a request
//! presenting none is [`VerifyError::Missing`], a wrong one [`VerifyError::BadCredentials`].
//! There is no timestamp to check.
//!
//! # Verify keys
//!
//! | key | required | meaning |
//! |---|---|---|
//! | `token` | yes | the shared token of the callback URL |
//!
//! # Status mapping
//!
//! WhatsApp (v2 `payload.type`, v3 `statuses[].status`, Enterprise `eventType`, any case):
//!
//! | provider value | status |
//! |---|---|
//! | `enqueued` | `queued` |
//! | `sent` | `sent` |
//! | `delivered` | `delivered` |
//! | `read`, `played` | `seen` |
//! | `failed` | `failed` (with `error`) |
//! | `deleted` (the user deleted their own message), `mismatch`, any other value | `queued`, informational |
//!
//! Enterprise SMS by `GET` (`status`, any case; Gupshup documents `SUCCESS`, `FAILURE` and
//! `UNKNOWN`, each a final status):
//!
//! | provider value | status |
//! |---|---|
//! | `SUCCESS` | `delivered` |
//! | `FAILURE`, `FAILED` | `failed` (with `error`) |
//! | `UNKNOWN` | `failed` (with `error`): the final report without an outcome, read as Vonage's `unknown` is |
//! | any other value | `queued`, informational |
//!
//! Email (`event`, any case):
//!
//! | provider value | status |
//! |---|---|
//! | `DELIVERED` | `delivered` |
//! | `SOFT_BOUNCE` | `failed` (Gupshup reports it after giving up) |
//! | `HARD_BOUNCE` | `bounced` |
//! | `OPEN` | `seen` |
//! | `CLICK` | `clicked` |
//! | `UNSUBSCRIBE` | `unsubscribed` |
//! | `SPAM`, `ABUSE` | `complained` |
//! | any other value | `queued`, informational |
//!
//! Unknown values never fail a callback: they map to `queued` marked informational (so they
//! never downgrade a later status), with Gupshup's event kept in `vendor_response`.

use http::Method;
use serde_json::{Map, Value};

use crate::event::{
    Channel, ChannelUser, ErrorInfo, Event, EventKind, InboundMessage, Media, ReplyContext, Status,
    StatusUpdate, idempotency_key, idempotency_key_of_value,
};
use crate::limits::TopLevel;
use crate::phone::{e164, e164_of_display_number, is_bsuid};
use crate::provider::whatsapp_cloud::{
    self, Fields, Flavor, interactive_text, location, raw_text, text, text_of, timestamp,
    value_text,
};
use crate::provider::{Context, Normalized, VerifyOptions, VerifySettings};
use crate::request::{pairs_to_json, param};
use crate::secret::ct_eq;
use crate::timestamp::value_to_ms;
use crate::{CallbackRequest, NormalizeError, Secret, VerifyConfigError, VerifyError};

const PROVIDER: &str = "gupshup";
const KNOWN_KEYS: &[&str] = &["token"];
const TOKEN_HEADER: &str = "x-gupshup-token";
const ACCEPTED: &[&str] = &[
    "application/json",
    "application/x-www-form-urlencoded",
    "text/plain",
];

/// Gupshup v3 events: Meta's envelope, Gupshup's ids and status values.
const V3: Flavor = Flavor {
    vendor: PROVIDER,
    status: map_whatsapp_status,
    ack_id: v3_ack_id,
};

/// Checks the shared callback token.
#[derive(Debug, Clone)]
pub struct Verifier {
    token: Secret,
}

impl Verifier {
    /// Builds the verifier from the `verify:` settings: `token` (required).
    pub fn from_settings(settings: &VerifySettings) -> Result<Self, VerifyConfigError> {
        settings.only(PROVIDER, KNOWN_KEYS)?;
        let token = settings.require(PROVIDER, "token")?.clone();
        Ok(Self { token })
    }

    /// Checks that the callback presents the token (query `token`, `Authorization:
    /// Bearer`, or `X-Gupshup-Token`). Gupshup signs no timestamp, so `opts` has nothing
    /// to check.
    pub fn verify(&self, req: &CallbackRequest, _opts: &VerifyOptions) -> Result<(), VerifyError> {
        let mut presented: Vec<String> = req
            .query_pairs()
            .into_iter()
            .filter(|(k, _)| k == "token")
            .map(|(_, v)| v)
            .collect();
        for value in req.headers.get_all(http::header::AUTHORIZATION) {
            if let Some(token) = value.to_str().ok().and_then(bearer) {
                presented.push(token.to_owned());
            }
        }
        for value in req.headers.get_all(TOKEN_HEADER) {
            if let Ok(token) = value.to_str() {
                presented.push(token.trim().to_owned());
            }
        }
        if presented.is_empty() {
            return Err(VerifyError::Missing(
                "token (query parameter, Authorization: Bearer, or X-Gupshup-Token)",
            ));
        }
        let expected = self.token.expose().as_bytes();
        // Every presented value is compared (no early exit on the first match).
        let matched = presented
            .iter()
            .fold(false, |acc, t| ct_eq(t.as_bytes(), expected) | acc);
        if matched {
            Ok(())
        } else {
            Err(VerifyError::BadCredentials)
        }
    }
}

/// The token of an `Authorization: Bearer <token>` value (scheme in any case).
fn bearer(value: &str) -> Option<&str> {
    let value = value.trim();
    let scheme = value.get(..7)?;
    scheme
        .eq_ignore_ascii_case("bearer ")
        .then(|| value.get(7..))
        .flatten()
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Normalizes one callback into its events (see the module docs for the formats).
pub fn normalize(req: &CallbackRequest, ctx: &Context) -> Result<Normalized, NormalizeError> {
    if req.method == Method::GET {
        let pairs: Vec<(String, String)> = req
            .query_pairs()
            .into_iter()
            .filter(|(k, _)| k != "token")
            .collect();
        return pair_events(&pairs, ctx).map(Normalized::events);
    }
    if req.method != Method::POST {
        return Err(NormalizeError::UnsupportedMethod {
            provider: PROVIDER,
            method: req.method.to_string(),
        });
    }
    req.expect_content_type(
        PROVIDER,
        ACCEPTED,
        "application/json or application/x-www-form-urlencoded",
    )?;
    let first = req.body.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        None => Err(NormalizeError::EmptyBody),
        Some(b'{' | b'[') => match req.beyond_limits(TopLevel::ObjectOrArray) {
            Some(unparsed) => Ok(Normalized::one_unparsed(unparsed)),
            None => json_events(&req.json()?, ctx),
        },
        Some(_) => pair_events(&req.form_pairs(), ctx).map(Normalized::events),
    }
}

/// Form fields (or query parameters): the email DLR `response` field, an Enterprise
/// inbound message, or an Enterprise SMS delivery report (`GET`).
fn pair_events(pairs: &[(String, String)], ctx: &Context) -> Result<Vec<Event>, NormalizeError> {
    if let Some(response) = param(pairs, "response") {
        let inner: Value = serde_json::from_str(response)
            .map_err(|source| NormalizeError::InvalidJson { source })?;
        return match inner {
            Value::Array(items) => array_events(&items, None, ctx),
            Value::Object(_) => array_events(std::slice::from_ref(&inner), None, ctx),
            _ => Err(NormalizeError::shape("response", "a JSON array")),
        };
    }
    if param(pairs, "mobile").is_some() || param(pairs, "waNumber").is_some() {
        let raw = pairs_to_json(pairs);
        return match &raw {
            Value::Object(o) => Ok(vec![enterprise_inbound(o, &raw, ctx)?]),
            _ => Err(NormalizeError::shape("/", "form fields")),
        };
    }
    if param(pairs, "externalId").is_some() {
        return Ok(vec![sms_dlr_query(pairs, ctx)?]);
    }
    if pairs.is_empty() {
        return Err(NormalizeError::EmptyBody);
    }
    Err(NormalizeError::shape(
        "/",
        "form fields `response` (email report), `mobile`/`waNumber` (inbound message) or \
         `externalId` (SMS delivery report)",
    ))
}

/// Gupshup's Enterprise SMS `GET` report status (any case); see the module docs.
pub(crate) fn map_sms_report_status(value: &str) -> (Status, bool) {
    match value.trim().to_ascii_uppercase().as_str() {
        "SUCCESS" => (Status::Delivered, false),
        "FAILURE" | "FAILED" | "UNKNOWN" => (Status::Failed, false),
        _ => (Status::Queued, true),
    }
}

/// An Enterprise SMS real-time delivery report sent as query parameters.
fn sms_dlr_query(pairs: &[(String, String)], ctx: &Context) -> Result<Event, NormalizeError> {
    let raw = pairs_to_json(pairs);
    let Value::Object(o) = &raw else {
        return Err(NormalizeError::shape("/", "query parameters"));
    };
    let external_id = require(o, "externalId", "")?;
    let status_value = require(o, "status", "")?;
    let phone = require(o, "phoneNo", "")?;
    let (status, informational) = map_sms_report_status(&status_value);
    let delivered = o.get("deliveredTS").filter(|v| text_of(Some(v)).is_some());
    let timestamp_ms = match delivered {
        None => ctx.received_at_ms,
        Some(v) => value_to_ms(v)
            .ok_or_else(|| NormalizeError::invalid("deliveredTS", "not a Unix timestamp"))?,
    };
    let error = (status == Status::Failed)
        .then(|| ErrorInfo::from_parts(text(o, "errCode"), raw_text(o, "cause")))
        .flatten();
    let ts_part = delivered.map(value_text).unwrap_or_default();
    Ok(status_event(
        Channel::Sms,
        e164(&phone),
        Some(external_id.clone()),
        &["sms-dlr", &external_id, &status_value, &ts_part],
        StatusUpdate {
            status,
            timestamp_ms,
            error,
            informational,
        },
        raw,
    ))
}

fn json_events(doc: &Value, ctx: &Context) -> Result<Normalized, NormalizeError> {
    if let Value::Object(o) = doc
        && o.contains_key("entry")
    {
        return whatsapp_cloud::events_from_envelope(&mut doc.clone(), ctx, &V3);
    }
    json_format_events(doc, ctx).map(Normalized::events)
}

/// The JSON formats other than v3's envelope.
fn json_format_events(doc: &Value, ctx: &Context) -> Result<Vec<Event>, NormalizeError> {
    let o = match doc {
        Value::Array(items) => return array_events(items, None, ctx),
        Value::Object(o) => o,
        _ => return Err(NormalizeError::shape("/", "a JSON object or array")),
    };
    if let Some(response) = o.get("response") {
        return match response {
            Value::Array(items) => array_events(items, Some(o), ctx),
            Value::String(s) => match serde_json::from_str::<Value>(s) {
                Ok(Value::Array(items)) => array_events(&items, None, ctx),
                Ok(_) => Err(NormalizeError::shape("/response", "a JSON array")),
                Err(source) => Err(NormalizeError::InvalidJson { source }),
            },
            _ => Err(NormalizeError::shape("/response", "an array")),
        };
    }
    let kind = o.get("type").and_then(Value::as_str);
    let payload = o.get("payload");
    match (kind, payload) {
        (Some("message-event"), Some(Value::Object(p))) => {
            return Ok(vec![v2_status(o, p, doc, ctx)?]);
        }
        (Some("message"), Some(Value::Object(p))) => return Ok(vec![v2_inbound(o, p, doc, ctx)?]),
        (Some("message-event" | "message"), _) => {
            return Err(NormalizeError::shape("/payload", "an object"));
        }
        _ => {}
    }
    if o.contains_key("mobile") || o.contains_key("waNumber") {
        return Ok(vec![enterprise_inbound(o, doc, ctx)?]);
    }
    if o.contains_key("eventType") && (o.contains_key("externalId") || o.contains_key("destAddr")) {
        return Ok(vec![enterprise_dlr(o, None, ctx)?]);
    }
    if kind.is_some() && payload.is_some() {
        // user-event, system-event, billing-event, preference-event: no message status.
        return Ok(Vec::new());
    }
    Err(NormalizeError::shape(
        "/",
        "a Gupshup callback (message-event, message, v3 entry, Enterprise report or inbound)",
    ))
}

/// A batch: Enterprise DLR elements or email DLR elements, told apart by their fields.
fn array_events(
    items: &[Value],
    wrapper: Option<&Map<String, Value>>,
    ctx: &Context,
) -> Result<Vec<Event>, NormalizeError> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let el = item
                .as_object()
                .ok_or_else(|| NormalizeError::shape(format!("/{i}"), "an object"))?;
            if el.contains_key("email") {
                email_event(el, i, ctx)
            } else if el.contains_key("eventType") || el.contains_key("externalId") {
                enterprise_dlr(el, wrapper, ctx)
            } else {
                Err(NormalizeError::shape(
                    format!("/{i}"),
                    "an Enterprise report (eventType, externalId) or email report (email, event)",
                ))
            }
        })
        .collect()
}

/// Gupshup's WhatsApp status vocabulary (any case); see the module docs.
pub(crate) fn map_whatsapp_status(value: &str) -> (Status, bool) {
    match value.trim().to_ascii_lowercase().as_str() {
        "enqueued" => (Status::Queued, false),
        "sent" => (Status::Sent, false),
        "delivered" => (Status::Delivered, false),
        "read" | "played" => (Status::Seen, false),
        "failed" => (Status::Failed, false),
        _ => (Status::Queued, true),
    }
}

/// Gupshup's email event vocabulary (any case); see the module docs.
pub(crate) fn map_email_event(value: &str) -> (Status, bool) {
    match value.trim().to_ascii_uppercase().as_str() {
        "DELIVERED" => (Status::Delivered, false),
        "SOFT_BOUNCE" => (Status::Failed, false),
        "HARD_BOUNCE" => (Status::Bounced, false),
        "OPEN" => (Status::Seen, false),
        "CLICK" => (Status::Clicked, false),
        "UNSUBSCRIBE" => (Status::Unsubscribed, false),
        "SPAM" | "ABUSE" => (Status::Complained, false),
        _ => (Status::Queued, true),
    }
}

fn v3_ack_id(status: &dyn Fields) -> Option<String> {
    text_of(status.field("gs_id")).or_else(|| text_of(status.field("id")))
}

fn status_event(
    channel: Channel,
    channel_value: String,
    vendor_ack_id: Option<String>,
    idempotency: &[&str],
    update: StatusUpdate,
    raw: Value,
) -> Event {
    Event {
        channel,
        channel_user: if channel == Channel::Whatsapp {
            user_of(None, &channel_value)
        } else {
            ChannelUser::default()
        },
        channel_value,
        vendor_name: PROVIDER.to_owned(),
        vendor_ack_id,
        idempotency_key: idempotency_key(PROVIDER, idempotency),
        correlation: Map::new(),
        kind: EventKind::Status(update),
        raw: raw.into(),
    }
}

fn require(m: &Map<String, Value>, key: &str, path: &str) -> Result<String, NormalizeError> {
    text(m, key).ok_or_else(|| NormalizeError::MissingField(format!("{path}/{key}")))
}

fn enterprise_dlr(
    el: &Map<String, Value>,
    wrapper: Option<&Map<String, Value>>,
    ctx: &Context,
) -> Result<Event, NormalizeError> {
    let external_id = require(el, "externalId", "response")?;
    let event_type = require(el, "eventType", "response")?;
    let dest = require(el, "destAddr", "response")?;
    let (status, informational) = map_whatsapp_status(&event_type);
    let timestamp_ms = timestamp(el.get("eventTs"), ctx, "response")?;
    let code = text(el, "errCode").or_else(|| text(el, "errorCode"));
    let error = (status == Status::Failed)
        .then(|| ErrorInfo::from_parts(code, raw_text(el, "cause")))
        .flatten();
    let channel = match text(el, "channel")
        .map(|c| c.to_ascii_lowercase())
        .as_deref()
    {
        Some("sms") => Channel::Sms,
        Some("email") => Channel::Email,
        _ => Channel::Whatsapp,
    };
    let raw = match wrapper {
        Some(w) => {
            let mut narrowed = w.clone();
            narrowed.insert(
                "response".into(),
                Value::Array(vec![Value::Object(el.clone())]),
            );
            Value::Object(narrowed)
        }
        None => Value::Object(el.clone()),
    };
    let ts_part = el.get("eventTs").map(value_text).unwrap_or_default();
    let channel_value = if channel == Channel::Email {
        dest
    } else {
        e164(&dest)
    };
    Ok(status_event(
        channel,
        channel_value,
        Some(external_id.clone()),
        &[&external_id, &event_type, &ts_part],
        StatusUpdate {
            status,
            timestamp_ms,
            error,
            informational,
        },
        raw,
    ))
}

fn email_event(
    el: &Map<String, Value>,
    index: usize,
    ctx: &Context,
) -> Result<Event, NormalizeError> {
    let path = format!("response/{index}");
    let email = require(el, "email", &path)?;
    let event = require(el, "event", &path)?;
    let (status, informational) = map_email_event(&event);
    let timestamp_ms = timestamp(el.get("timestamp"), ctx, &path)?;
    let error = matches!(status, Status::Failed | Status::Bounced)
        .then(|| {
            let code = text(el, "errorCode")
                .or_else(|| text(el, "code"))
                .or_else(|| Some(event.clone()));
            let message = raw_text(el, "reason").or_else(|| raw_text(el, "description"));
            ErrorInfo::from_parts(code, message)
        })
        .flatten();
    let campaign = text(el, "campaignid");
    let ts_part = el.get("timestamp").map(value_text).unwrap_or_default();
    let link = text(el, "link").unwrap_or_default();
    Ok(status_event(
        Channel::Email,
        email.trim().to_owned(),
        campaign.clone(),
        &[
            campaign.as_deref().unwrap_or(""),
            &email,
            &event,
            &ts_part,
            &link,
        ],
        StatusUpdate {
            status,
            timestamp_ms,
            error,
            informational,
        },
        Value::Object(el.clone()),
    ))
}

fn v2_status(
    o: &Map<String, Value>,
    p: &Map<String, Value>,
    doc: &Value,
    ctx: &Context,
) -> Result<Event, NormalizeError> {
    let event_type = require(p, "type", "payload")?;
    let ack = text(p, "gsId")
        .or_else(|| text(p, "id"))
        .ok_or_else(|| NormalizeError::MissingField("payload/id".into()))?;
    let inner = p.get("payload").and_then(Value::as_object);
    // `mismatch` events name the user in their inner payload (`phone`, `wa_id`); a user
    // whose number is withheld is named by their business-scoped user id (`userId`).
    let user_id = text(p, "userId");
    let destination = text(p, "destination")
        .or_else(|| inner.and_then(|i| text(i, "phone").or_else(|| text(i, "wa_id"))))
        .or_else(|| user_id.clone())
        .ok_or_else(|| NormalizeError::MissingField("payload/destination".into()))?;
    let (status, informational) = map_whatsapp_status(&event_type);
    let (ts_value, ts_field) = match inner.and_then(|i| i.get("ts")).filter(|v| !v.is_null()) {
        Some(ts) => (Some(ts), "payload/payload/ts"),
        None => (o.get("timestamp"), "timestamp"),
    };
    let timestamp_ms = match ts_value {
        None | Some(Value::Null) => ctx.received_at_ms,
        Some(v) => value_to_ms(v)
            .ok_or_else(|| NormalizeError::invalid(ts_field, "not a Unix timestamp"))?,
    };
    let error = (status == Status::Failed)
        .then(|| inner.and_then(|i| ErrorInfo::from_parts(text(i, "code"), raw_text(i, "reason"))))
        .flatten();
    let ts_part = ts_value.map(value_text).unwrap_or_default();
    let destination = e164(&destination);
    let mut event = status_event(
        Channel::Whatsapp,
        destination.clone(),
        Some(ack.clone()),
        &[&ack, &event_type, &ts_part],
        StatusUpdate {
            status,
            timestamp_ms,
            error,
            informational,
        },
        doc.clone(),
    );
    event.channel_user = user_of(user_id, &destination);
    Ok(event)
}

/// A WhatsApp user's business-scoped user id: v2's `userId`, else the address itself when
/// it is one. Gupshup's own formats carry no parent BSUID and no username (v3 relays
/// Meta's, read by `whatsapp_cloud`).
fn user_of(user_id: Option<String>, address: &str) -> ChannelUser {
    let user_id = user_id
        .map(|u| u.trim().to_owned())
        .or_else(|| is_bsuid(address).then(|| address.to_owned()));
    ChannelUser {
        user_id,
        ..ChannelUser::default()
    }
}

fn v2_inbound(
    o: &Map<String, Value>,
    p: &Map<String, Value>,
    doc: &Value,
    ctx: &Context,
) -> Result<Event, NormalizeError> {
    let id = require(p, "id", "payload")?;
    let sender = p.get("sender").and_then(Value::as_object);
    let user_id = sender.and_then(|s| text(s, "userId"));
    let from = text(p, "source")
        .or_else(|| sender.and_then(|s| text(s, "phone")))
        .or_else(|| user_id.clone())
        .map(|s| e164(&s))
        .ok_or_else(|| NormalizeError::MissingField("payload/source".into()))?;
    let to = text(o, "phone")
        .map(|s| e164_of_display_number(&s))
        .filter(|s| !s.is_empty())
        .or_else(|| text(o, "app"))
        .unwrap_or_default();
    let gs_type = text(p, "type").unwrap_or_else(|| "unknown".to_owned());
    let inner = p.get("payload").and_then(Value::as_object);
    let message_type = if gs_type == "file" {
        "document".to_owned()
    } else {
        gs_type.clone()
    };
    let mut msg = InboundMessage {
        from: from.clone(),
        to,
        message_type,
        timestamp_ms: timestamp(o.get("timestamp"), ctx, "")?,
        source_message_id: id.clone(),
        ..InboundMessage::default()
    };
    if let Some(b) = inner {
        match gs_type.as_str() {
            "text" | "quick_reply" => msg.text = raw_text(b, "text"),
            "image" | "video" | "audio" | "sticker" | "file" => {
                msg.text = raw_text(b, "caption");
                if let Some(url) = text(b, "url") {
                    msg.media.push(Media::at(
                        url,
                        text(b, "contentType").or_else(|| text(b, "mime_type")),
                    ));
                }
            }
            "location" => msg.location = location(b),
            "button_reply" | "list_reply" => {
                msg.text = raw_text(b, "title").or_else(|| raw_text(b, "reply"));
            }
            _ => {}
        }
    }
    msg.context = p
        .get("context")
        .and_then(Value::as_object)
        .and_then(|c| text(c, "id"))
        .map(|id| ReplyContext { id, from: None });
    Ok(Event {
        channel: Channel::Whatsapp,
        channel_user: user_of(user_id, &from),
        channel_value: from,
        vendor_name: PROVIDER.to_owned(),
        vendor_ack_id: Some(id.clone()),
        idempotency_key: idempotency_key(PROVIDER, &[&id]),
        correlation: Map::new(),
        kind: EventKind::Inbound(msg),
        raw: doc.clone().into(),
    })
}

/// An object field, or a JSON text holding an object (Enterprise sends both).
fn object_field(o: &Map<String, Value>, key: &str) -> Option<Map<String, Value>> {
    match o.get(key)? {
        Value::Object(m) => Some(m.clone()),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        },
        _ => None,
    }
}

fn enterprise_inbound(
    o: &Map<String, Value>,
    raw: &Value,
    ctx: &Context,
) -> Result<Event, NormalizeError> {
    let from = text(o, "mobile")
        .map(|m| e164(&m))
        .ok_or_else(|| NormalizeError::MissingField("mobile".into()))?;
    let to = text(o, "waNumber").map(|w| e164(&w)).unwrap_or_default();
    let message_type = text(o, "type").unwrap_or_else(|| "text".to_owned());
    let reply_id = text(o, "replyId");
    let message_id = text(o, "messageId");
    let mut msg = InboundMessage {
        from: from.clone(),
        to,
        message_type: message_type.clone(),
        timestamp_ms: timestamp(o.get("timestamp"), ctx, "")?,
        source_message_id: message_id
            .clone()
            .or_else(|| reply_id.clone())
            .unwrap_or_default(),
        ..InboundMessage::default()
    };
    match message_type.as_str() {
        "text" => msg.text = raw_text(o, "text"),
        "image" | "video" | "audio" | "voice" | "document" | "sticker" | "file" => {
            if let Some(b) = object_field(o, &message_type) {
                msg.text = raw_text(&b, "caption");
                if let Some(url) = text(&b, "url").or_else(|| text(&b, "id")) {
                    msg.media.push(Media::at(
                        url,
                        text(&b, "mime_type").or_else(|| text(&b, "contentType")),
                    ));
                }
            }
        }
        "location" => msg.location = object_field(o, "location").and_then(|b| location(&b)),
        "button" => {
            msg.text = object_field(o, "button")
                .and_then(|b| raw_text(&b, "text").or_else(|| raw_text(&b, "payload")));
        }
        "interactive" => {
            msg.text = object_field(o, "interactive").and_then(|b| interactive_text(&b));
        }
        _ => msg.text = raw_text(o, "text"),
    }
    msg.context = object_field(o, "context").and_then(|c| {
        text(&c, "id").map(|id| ReplyContext {
            id,
            from: text(&c, "from").map(|f| e164(&f)),
        })
    });
    let idempotency = match reply_id.as_ref().or(message_id.as_ref()) {
        Some(id) => idempotency_key(PROVIDER, &[id]),
        None => idempotency_key_of_value(PROVIDER, raw),
    };
    Ok(Event {
        channel: Channel::Whatsapp,
        channel_user: user_of(None, &from),
        channel_value: from,
        vendor_name: PROVIDER.to_owned(),
        vendor_ack_id: reply_id.or(message_id),
        idempotency_key: idempotency,
        correlation: Map::new(),
        kind: EventKind::Inbound(msg),
        raw: raw.clone().into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{PayloadOptions, render};
    use bytes::Bytes;
    use http::{HeaderValue, Uri};
    use serde_json::json;

    const CTX: Context = Context {
        received_at_ms: 1_700_000_000_000,
    };
    const SUPRSEND_STATUS: &str = include_str!(
        "../../tests/fixtures/gupshup/suprsend_whatsapp_status_delivered_gupshup.json"
    );
    const SUPRSEND_INBOUND: &str =
        include_str!("../../tests/fixtures/gupshup/suprsend_whatsapp_inbound_message_gupshup.json");
    const EMAIL_SINGLE: &str =
        include_str!("../../tests/fixtures/gupshup/email_dlr_single.response_param.json");

    fn post_json(body: &str) -> CallbackRequest {
        CallbackRequest::post(body.to_owned()).with_content_type("application/json")
    }

    fn events(body: &str) -> Vec<Event> {
        normalize(&post_json(body), &CTX)
            .expect("normalizes")
            .events
    }

    fn form(json: &str) -> CallbackRequest {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("response", json)
            .finish();
        CallbackRequest::post(body)
            .with_content_type("application/x-www-form-urlencoded;charset=utf-8")
    }

    fn verifier() -> Verifier {
        Verifier::from_settings(&VerifySettings::new().with("token", "s3cr3t-tok")).expect("v")
    }

    fn with_uri(mut req: CallbackRequest, uri: &str) -> CallbackRequest {
        req.uri = uri.parse::<Uri>().expect("uri");
        req
    }

    fn with_header(mut req: CallbackRequest, name: &'static str, value: &str) -> CallbackRequest {
        req.headers
            .append(name, HeaderValue::from_str(value).expect("header"));
        req
    }

    #[test]
    fn token_is_accepted_from_query_bearer_or_header() {
        let v = verifier();
        let opts = VerifyOptions::default();
        let base = || post_json("{}");
        v.verify(&with_uri(base(), "/cb?token=s3cr3t-tok"), &opts)
            .expect("query");
        v.verify(
            &with_header(base(), "authorization", "Bearer s3cr3t-tok"),
            &opts,
        )
        .expect("bearer");
        v.verify(
            &with_header(base(), "authorization", "bearer  s3cr3t-tok "),
            &opts,
        )
        .expect("bearer, any case");
        v.verify(&with_header(base(), "x-gupshup-token", "s3cr3t-tok"), &opts)
            .expect("header");
        // Token with reserved characters, percent-encoded in the URL.
        let odd =
            Verifier::from_settings(&VerifySettings::new().with("token", "a+b/c=d&é")).expect("v");
        odd.verify(&with_uri(base(), "/cb?token=a%2Bb%2Fc%3Dd%26%C3%A9"), &opts)
            .expect("percent-encoded token");
    }

    #[test]
    fn wrong_or_missing_token_is_rejected() {
        let v = verifier();
        let opts = VerifyOptions::default();
        let base = || post_json("{}");
        assert!(matches!(
            v.verify(&base(), &opts),
            Err(VerifyError::Missing(_))
        ));
        assert!(matches!(
            v.verify(
                &with_header(base(), "authorization", "Basic czNjcjN0LXRvaw=="),
                &opts
            ),
            Err(VerifyError::Missing(_))
        ));
        for uri in ["/cb?token=s3cr3t-to", "/cb?token=s3cr3t-tok2", "/cb?token="] {
            assert!(matches!(
                v.verify(&with_uri(base(), uri), &opts),
                Err(VerifyError::BadCredentials)
            ));
        }
        assert!(matches!(
            v.verify(&with_header(base(), "x-gupshup-token", "nope"), &opts),
            Err(VerifyError::BadCredentials)
        ));
        // A different configured token rejects the original one.
        let other =
            Verifier::from_settings(&VerifySettings::new().with("token", "other")).expect("v");
        assert!(matches!(
            other.verify(&with_uri(base(), "/cb?token=s3cr3t-tok"), &opts),
            Err(VerifyError::BadCredentials)
        ));
    }

    #[test]
    fn settings_fail_closed() {
        assert!(Verifier::from_settings(&VerifySettings::new()).is_err());
        assert!(Verifier::from_settings(&VerifySettings::new().with("token", "")).is_err());
        assert!(
            Verifier::from_settings(&VerifySettings::new().with("token", "t").with("secret", "x"))
                .is_err()
        );
        assert!(!format!("{:?}", verifier()).contains("s3cr3t-tok"));
    }

    fn vendor_body(suprsend: &str) -> (Value, String) {
        let s: Value = serde_json::from_str(suprsend).expect("json");
        let body = serde_json::to_string(&s["vendor_response"]["gupshup"]).expect("body");
        (s, body)
    }

    /// The `vendor_response.gupshup` of SuprSend's published examples is a real Gupshup
    /// callback; our payload must agree with SuprSend's normalized fields.
    #[test]
    fn agrees_with_suprsend_status_example() {
        let (s, body) = vendor_body(SUPRSEND_STATUS);
        let ev = events(&body);
        assert_eq!(ev.len(), 1);
        let p = render(&ev[0], &PayloadOptions::default());
        for field in [
            "channel",
            "channel_value",
            "event_type",
            "vendor_name",
            "version",
        ] {
            assert_eq!(p[field], s[field], "{field}");
        }
        assert_eq!(p["suprsend_status"], s["suprsend_status"]);
        assert_eq!(
            p["reference"]["vendor_ack_id"],
            s["reference"]["vendor_ack_id"]
        );
        assert_eq!(p["vendor_response"], s["vendor_response"]);
    }

    #[test]
    fn agrees_with_suprsend_inbound_example() {
        let (s, body) = vendor_body(SUPRSEND_INBOUND);
        let ev = events(&body);
        assert_eq!(ev.len(), 1);
        let p = render(&ev[0], &PayloadOptions::default());
        for field in [
            "channel",
            "channel_value",
            "event_type",
            "vendor_name",
            "version",
        ] {
            assert_eq!(p[field], s[field], "{field}");
        }
        let (ours, theirs) = (
            &p["suprsend_inbound_message"],
            &s["suprsend_inbound_message"],
        );
        for field in [
            "from",
            "to",
            "type",
            "text",
            "context",
            "timestamp",
            "source_message_id",
        ] {
            assert_eq!(
                ours[field], theirs[field],
                "suprsend_inbound_message.{field}"
            );
        }
        assert_eq!(p["vendor_response"], s["vendor_response"]);
        // SuprSend's own vendor_ack_id is a composite starting with Gupshup's replyId.
        let ack = p["reference"]["vendor_ack_id"].as_str().expect("ack");
        assert!(
            s["reference"]["vendor_ack_id"]
                .as_str()
                .expect("suprsend ack")
                .starts_with(ack)
        );
    }

    #[test]
    fn whatsapp_status_mapping_including_unknown_fallback() {
        for (value, expected, informational) in [
            ("enqueued", Status::Queued, false),
            ("sent", Status::Sent, false),
            ("delivered", Status::Delivered, false),
            ("read", Status::Seen, false),
            ("failed", Status::Failed, false),
            ("deleted", Status::Queued, true),
            ("mismatch", Status::Queued, true),
            ("something-new", Status::Queued, true),
            ("DELIVERED", Status::Delivered, false),
            ("READ", Status::Seen, false),
        ] {
            assert_eq!(
                map_whatsapp_status(value),
                (expected, informational),
                "{value}"
            );
            let body = json!({"app": "DemoAPI", "timestamp": 1_585_344_476_683_i64, "version": 2,
                "type": "message-event", "payload": {"id": "gBEG", "gsId": "ee4a", "type": value,
                "destination": "918x98xx21x4", "payload": {"ts": 1_585_344_476}}});
            let ev = events(&body.to_string());
            let s = ev[0].status().expect("status");
            assert_eq!(
                (s.status, s.informational),
                (expected, informational),
                "{value}"
            );
            assert_eq!(s.timestamp_ms, 1_585_344_476_000);
            assert_eq!(ev[0].vendor_ack_id.as_deref(), Some("ee4a"));
        }
    }

    #[test]
    fn email_mapping_including_unknown_fallback() {
        for (value, expected, informational) in [
            ("DELIVERED", Status::Delivered, false),
            ("SOFT_BOUNCE", Status::Failed, false),
            ("HARD_BOUNCE", Status::Bounced, false),
            ("OPEN", Status::Seen, false),
            ("CLICK", Status::Clicked, false),
            ("UNSUBSCRIBE", Status::Unsubscribed, false),
            ("SPAM", Status::Complained, false),
            ("ABUSE", Status::Complained, false),
            ("DEFERRED", Status::Queued, true),
        ] {
            assert_eq!(map_email_event(value), (expected, informational), "{value}");
        }
    }

    #[test]
    fn email_single_fixture_as_form_body() {
        let out = normalize(&form(EMAIL_SINGLE), &CTX).expect("form");
        assert_eq!(out.events.len(), 1);
        let e = &out.events[0];
        assert_eq!(e.channel, Channel::Email);
        assert_eq!(e.channel_value, "[email protected]");
        assert_eq!(e.vendor_ack_id.as_deref(), Some("3319237025400370211"));
        let s = e.status().expect("status");
        assert_eq!(s.status, Status::Delivered);
        assert_eq!(s.timestamp_ms, 1_493_577_000_000);
    }

    #[test]
    fn email_bounce_carries_error() {
        let json = r#"[{"timestamp":"1493577000","email":"a@example.com","event":"HARD_BOUNCE","campaignid":"1"}]"#;
        let out = normalize(&form(json), &CTX).expect("form");
        let s = out.events[0].status().expect("status");
        assert_eq!(s.status, Status::Bounced);
        assert_eq!(
            s.error.as_ref().and_then(|e| e.code.as_deref()),
            Some("HARD_BOUNCE")
        );
    }

    #[test]
    fn failed_v2_event_carries_code_and_reason() {
        let body = json!({"app": "DemoAPI", "timestamp": 1_580_311_136_040_i64, "version": 2,
            "type": "message-event", "payload": {"id": "ee4a68a0", "type": "failed",
            "destination": "918x98xx21x4",
            "payload": {"code": 1008, "reason": "User is not Opted in and Inactive"}}});
        let ev = events(&body.to_string());
        let s = ev[0].status().expect("status");
        assert_eq!(s.status, Status::Failed);
        assert_eq!(s.timestamp_ms, 1_580_311_136_040);
        let e = s.error.as_ref().expect("error");
        assert_eq!(e.code.as_deref(), Some("1008"));
        assert_eq!(
            e.message.as_deref(),
            Some("User is not Opted in and Inactive")
        );
        assert_eq!(ev[0].vendor_ack_id.as_deref(), Some("ee4a68a0"));
    }

    #[test]
    fn whatsapp_users_without_a_number_are_named_by_their_bsuid() {
        // A v2 message event for a user whose number is withheld: only `userId`.
        let body = json!({"app": "DemoAPI", "timestamp": 1_776_944_128_172_i64, "version": 2,
            "type": "message-event", "payload": {"id": "cc36", "gsId": "793d", "type": "read",
            "payload": {"ts": 1_776_944_126}, "userId": "IN.1648738043044942"}});
        let ev = events(&body.to_string());
        assert_eq!(ev[0].channel_value, "IN.1648738043044942");
        assert_eq!(
            ev[0].channel_user.user_id.as_deref(),
            Some("IN.1648738043044942")
        );
        // A `destination` or `mobile` holding a BSUID is kept as sent, and is the user id.
        let body = json!({"app": "DemoAPI", "timestamp": 1_776_944_128_172_i64, "version": 2,
            "type": "message-event", "payload": {"id": "cc36", "type": "sent",
            "destination": "IN.1648738043044942", "payload": {"ts": 1_776_944_126}}});
        let ev = events(&body.to_string());
        assert_eq!(ev[0].channel_value, "IN.1648738043044942");
        assert_eq!(
            ev[0].channel_user.user_id.as_deref(),
            Some("IN.1648738043044942")
        );
        let body = json!({"waNumber": "919999999999", "mobile": "IN.1234567",
            "replyId": "r1", "timestamp": 1_776_944_128_172_i64, "type": "text", "text": "hi"});
        let ev = events(&body.to_string());
        assert_eq!(ev[0].channel_value, "IN.1234567");
        assert_eq!(ev[0].channel_user.user_id.as_deref(), Some("IN.1234567"));
        // A number is never a user id.
        let body = json!({"waNumber": "919999999999", "mobile": "919876543210",
            "replyId": "r2", "timestamp": 1_776_944_128_172_i64, "type": "text", "text": "hi"});
        let ev = events(&body.to_string());
        assert_eq!(ev[0].channel_value, "+919876543210");
        assert!(ev[0].channel_user.is_empty());
    }

    #[test]
    fn v2_inbound_text_keeps_non_ascii() {
        let body = json!({"app": "docdeck", "timestamp": 1_718_007_189_549_i64, "version": 2,
            "type": "message", "payload": {"id": "ABEG", "source": "919999999999", "type": "text",
            "payload": {"text": "नमस्ते 🙏 ok"},
            "sender": {"phone": "919999999999", "name": "SJ", "country_code": "91",
            "dial_code": "9999999999"}}});
        let ev = events(&body.to_string());
        let EventKind::Inbound(m) = &ev[0].kind else {
            panic!("inbound expected")
        };
        assert_eq!(m.text.as_deref(), Some("नमस्ते 🙏 ok"));
        assert_eq!(m.from, "+919999999999");
        assert_eq!(m.to, "docdeck");
        assert_eq!(m.timestamp_ms, 1_718_007_189_549);
    }

    #[test]
    fn v3_envelope_uses_meta_parser_with_gupshup_ids() {
        let body = json!({"entry": [{"changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp", "statuses": [{"gs_id": "2baf", "id": "wamid.H",
            "recipient_id": "919163805873", "status": "enqueued", "timestamp": 1_710_941_393_420_i64}]}}]}],
            "gs_app_id": "82ed", "object": "whatsapp_business_account"});
        let ev = events(&body.to_string());
        assert_eq!(ev[0].vendor_name, "gupshup");
        assert_eq!(ev[0].vendor_ack_id.as_deref(), Some("2baf"));
        let s = ev[0].status().expect("status");
        assert_eq!((s.status, s.informational), (Status::Queued, false));
        assert_eq!(s.timestamp_ms, 1_710_941_393_420);
        assert_eq!(ev[0].channel_value, "+919163805873");
    }

    #[test]
    fn enterprise_bare_array_and_failed_element() {
        let body = r#"[{"cause":"SUCCESS","channel":"WHATSAPP","destAddr":"15555555555","errorCode":"000","eventTs":1672310923000,"eventType":"READ","externalId":"a","extra":"","srcAddr":"TESTSM"},
            {"cause":"UNKNOWN_SUBSCRIBER","channel":"WHATSAPP","destAddr":"15555555556","errorCode":"1002","eventTs":1672310924000,"eventType":"FAILED","externalId":"b","extra":"","srcAddr":"TESTSM"}]"#;
        let ev = events(body);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].status().expect("s").status, Status::Seen);
        assert_eq!(ev[0].raw.to_value()["externalId"], "a");
        let s = ev[1].status().expect("s");
        assert_eq!(s.status, Status::Failed);
        let e = s.error.as_ref().expect("error");
        assert_eq!(
            (e.code.as_deref(), e.message.as_deref()),
            (Some("1002"), Some("UNKNOWN_SUBSCRIBER"))
        );
        assert_eq!(ev[1].channel_value, "+15555555556");
    }

    #[test]
    fn mismatch_event_without_destination_uses_inner_phone() {
        let body = r#"{"app":"DemoAPI","timestamp":1580546677791,"version":2,"type":"message-event","payload":{"id":"59f8","type":"mismatch","payload":{"wa_id":"918x98xx21x4","phone":"918x98xx21x5"}}}"#;
        let ev = events(body);
        // Gupshup's documented example masks digits; masked, it is not a number to prefix.
        assert_eq!(ev[0].channel_value, "918x98xx21x5");
        let s = ev[0].status().expect("status");
        assert_eq!((s.status, s.informational), (Status::Queued, true));
    }

    #[test]
    fn other_v2_event_types_yield_nothing() {
        let body = r#"{"app":"DemoApp","timestamp":1580227766370,"version":2,"type":"user-event","payload":{"phone":"918x98xx21x4","type":"opted-out"}}"#;
        assert!(events(body).is_empty());
    }

    #[test]
    fn get_query_inbound_never_keeps_the_token() {
        let mut req = CallbackRequest::post(Bytes::new());
        req.method = Method::GET;
        req.uri = "/cb?token=s3cr3t&waNumber=14444444444&mobile=15555555555&replyId=1&messageId=2&timestamp=1683898377000&type=text&text=Hi%20%F0%9F%91%8B"
            .parse::<Uri>()
            .expect("uri");
        let out = normalize(&req, &CTX).expect("get");
        let e = &out.events[0];
        assert!(e.raw.to_value().get("token").is_none());
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound expected")
        };
        assert_eq!(m.text.as_deref(), Some("Hi 👋"));
        assert_eq!(m.to, "+14444444444");
    }

    fn get(query: &str) -> CallbackRequest {
        let mut req = CallbackRequest::post(Bytes::new());
        req.method = Method::GET;
        req.uri = format!("/callbacks/gupshup?{query}")
            .parse::<Uri>()
            .expect("uri");
        req
    }

    #[test]
    fn sms_report_by_get() {
        let ok = "token=s3cr3t&externalId=3562707498794989059-328736121207676738\
                  &deliveredTS=1526347800000&status=SUCCESS&cause=SUCCESS&phoneNo=919892488888\
                  &errCode=000&noOfFrags=1&mask=TESTIN";
        let out = normalize(&get(ok), &CTX).expect("get report");
        assert_eq!(out.events.len(), 1);
        let e = &out.events[0];
        assert_eq!(
            (e.channel, e.channel_value.as_str()),
            (Channel::Sms, "+919892488888")
        );
        assert_eq!(
            e.vendor_ack_id.as_deref(),
            Some("3562707498794989059-328736121207676738")
        );
        let s = e.status().expect("status");
        assert_eq!(
            (s.status, s.informational, s.timestamp_ms, s.error.clone()),
            (Status::Delivered, false, 1_526_347_800_000, None)
        );
        assert!(e.raw.to_value().get("token").is_none());
        assert_eq!(e.raw.to_value()["noOfFrags"], "1");

        // A failure keeps Gupshup's code and cause; seconds are read as seconds.
        let failed = "externalId=3798318073013708082-252169030017029882&deliveredTS=1526347800\
                      &status=FAILURE&cause=UNKNOWN_SUBSCRIBER&phoneNo=91989237777&errCode=003";
        let e = &normalize(&get(failed), &CTX).expect("failed").events[0];
        let s = e.status().expect("status");
        assert_eq!(
            (s.status, s.timestamp_ms),
            (Status::Failed, 1_526_347_800_000)
        );
        assert_eq!(
            s.error,
            Some(ErrorInfo {
                code: Some("003".into()),
                message: Some("UNKNOWN_SUBSCRIBER".into())
            })
        );
        for (value, status, informational) in [
            ("success", Status::Delivered, false),
            ("Failure", Status::Failed, false),
            ("UNKNOWN", Status::Failed, false),
            ("PENDING", Status::Queued, true),
        ] {
            assert_eq!(
                map_sms_report_status(value),
                (status, informational),
                "{value}"
            );
        }
        // No time: the time received. Keys differ by status and time, equal on a retry.
        let e = &normalize(
            &get("externalId=a&status=SUCCESS&phoneNo=15555550100"),
            &CTX,
        )
        .expect("minimal")
        .events[0];
        assert_eq!(e.timestamp_ms(), CTX.received_at_ms);
        let key = |q: &str| {
            normalize(&get(q), &CTX).expect("report").events[0]
                .idempotency_key
                .clone()
        };
        let a = key("externalId=a&status=SUCCESS&phoneNo=1&deliveredTS=1526347800000");
        assert_eq!(
            a,
            key("externalId=a&status=SUCCESS&phoneNo=1&deliveredTS=1526347800000&token=x")
        );
        assert_ne!(
            a,
            key("externalId=a&status=FAILURE&phoneNo=1&deliveredTS=1526347800000")
        );
        assert_ne!(
            a,
            key("externalId=a&status=SUCCESS&phoneNo=1&deliveredTS=1526347800001")
        );
        // What a report needs.
        for bad in [
            "externalId=a&status=SUCCESS",
            "externalId=a&phoneNo=1",
            "externalId=&status=SUCCESS&phoneNo=1",
            "externalId=a&status=SUCCESS&phoneNo=1&deliveredTS=yesterday",
            "token=only",
            "",
        ] {
            assert!(normalize(&get(bad), &CTX).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sms_report_by_post_reads_err_code() {
        let body = r#"[{"externalId":"3798318073013708082-252169030017029882","eventType":"FAILED","eventTs":1526347800000,"destAddr":91989237777,"srcAddr":"ABCDEF","cause":"UNKNOWN_SUBSCRIBER","errCode":"003","channel":"SMS","noOfFrags":1}]"#;
        let ev = events(body);
        let s = ev[0].status().expect("status");
        assert_eq!((ev[0].channel, s.status), (Channel::Sms, Status::Failed));
        assert_eq!(
            s.error.as_ref().and_then(|e| e.code.as_deref()),
            Some("003")
        );
        // Also as the form field `response`.
        let out = normalize(&form(body), &CTX).expect("form");
        assert_eq!(out.events[0].status(), Some(s));
        // `errCode` wins over `errorCode` when both are there.
        let both = body.replace(
            r#""errCode":"003""#,
            r#""errCode":"003","errorCode":"1002""#,
        );
        let s = events(&both)[0].status().cloned().expect("status");
        assert_eq!(s.error.and_then(|e| e.code).as_deref(), Some("003"));
    }

    /// Thousands of mutated report queries through normalize and verify: errors or
    /// events, never a panic.
    #[test]
    fn mutated_get_queries_never_panic() {
        let seed = "token=s3cr3t-tok&externalId=3798318073013708082-252169030017029882\
                    &deliveredTS=1526347800000&status=FAILURE&cause=UNKNOWN_SUBSCRIBER\
                    &phoneNo=91989237777&errCode=003&noOfFrags=1&mask=ABCDEF";
        let alphabet: &[u8] = b"=&%+;?#/0123456789abcdefABCDEF-_.~ \x7f\xc3\xa9\xff";
        let mut state: u64 = 0x853C_49E6_748F_EA9B;
        let mut rand = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            usize::try_from(state % (n.max(1) as u64)).unwrap_or(0)
        };
        let v = verifier();
        let mut accepted = 0;
        for _ in 0..4_000 {
            let mut q = seed.as_bytes().to_vec();
            for _ in 0..=rand(5) {
                let at = rand(q.len());
                match rand(3) {
                    0 => q[at] = alphabet[rand(alphabet.len())],
                    1 => {
                        let n = rand(12).min(q.len() - at);
                        q.drain(at..at + n);
                    }
                    _ => q.insert(at, alphabet[rand(alphabet.len())]),
                }
            }
            // The sidecar hands on any URI http accepts; others never reach the provider.
            let text = String::from_utf8_lossy(&q).into_owned();
            let Ok(uri) = format!("/callbacks/gupshup?{text}").parse::<Uri>() else {
                continue;
            };
            let mut req = get("");
            req.uri = uri;
            if normalize(&req, &CTX).is_ok() {
                accepted += 1;
            }
            let _ = v.verify(&req, &VerifyOptions::default());
        }
        assert!(accepted > 0, "some mutations keep a valid report");
    }

    #[test]
    fn malformed_inputs_are_errors_not_panics() {
        let bad: &[&str] = &[
            "",
            "  \n",
            "{\"app\":\"DemoAPI\",\"type\":\"message-event\",\"payload\":{",
            "{}",
            "1",
            "\"text\"",
            "[1]",
            "[{\"foo\":1}]",
            "{\"type\":\"message-event\",\"payload\":[]}",
            "{\"type\":\"message-event\",\"payload\":{\"type\":\"sent\"}}",
            "{\"type\":\"message\",\"payload\":{\"id\":\"x\"}}",
            "{\"event_type\":\"status\",\"response\":{}}",
            "{\"event_type\":\"status\",\"response\":[{\"eventType\":\"SENT\"}]}",
            "{\"entry\":{}}",
            "{\"type\":\"message-event\",\"timestamp\":\"yesterday\",\"payload\":{\"id\":\"a\",\"type\":\"sent\",\"destination\":\"1\"}}",
            "just some text",
            "response=not-json",
            "response=%5B%7B%22email%22%3A%22a%40b%22%7D%5D",
        ];
        for body in bad {
            let r = normalize(&CallbackRequest::post(body.to_string()), &CTX);
            assert!(r.is_err(), "{body:?} gave {r:?}");
        }
        let wrong_ct = CallbackRequest::post("{}").with_content_type("image/png");
        assert!(matches!(
            normalize(&wrong_ct, &CTX),
            Err(NormalizeError::UnsupportedContentType { .. })
        ));
        let mut put = post_json("[]");
        put.method = Method::PUT;
        assert!(normalize(&put, &CTX).is_err());
        let garbage = vec![b'['; 10 * 1024 * 1024];
        assert!(normalize(&CallbackRequest::post(garbage), &CTX).is_err());
        let noise: Vec<u8> = (0..10 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        assert!(normalize(&CallbackRequest::post(noise), &CTX).is_err());
    }

    #[test]
    fn events_beyond_the_limits_are_kept() {
        // A JSON body: kept whole.
        let deep = format!(
            r#"{{"app":"a","timestamp":1,"version":2,"type":"message-event","payload":{{"id":"x","x":{}{}}}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let out = normalize(&post_json(&deep), &CTX).expect("kept");
        assert_eq!((out.events.len(), out.unparsed.len()), (0, 1));
        assert_eq!(out.unparsed[0].raw, deep);
        // An email report is JSON inside a form field: an element past the limits (which
        // serde_json parsed, at 100 levels) is held back by the provider's check of every
        // event, and the other element is delivered.
        let report = format!(
            r#"[{{"email":"a@b.c","event":"DELIVERED","timestamp":"1700000000","campaignid":"c"}},{{"email":"d@e.f","event":"OPEN","timestamp":"1700000000","x":{}{}}}]"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        let out = crate::Provider::Gupshup
            .normalize(&form(&report), &CTX)
            .expect("accepted");
        assert_eq!((out.events.len(), out.unparsed.len()), (1, 1));
        assert!(out.unparsed[0].raw.starts_with(r#"{"email":"d@e.f""#));
    }
}
