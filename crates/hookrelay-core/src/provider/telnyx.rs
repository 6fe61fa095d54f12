//! Telnyx messaging webhooks (API v2): delivery updates, inbound messages and link clicks,
//! on SMS, MMS and WhatsApp.
//!
//! # Callback format
//!
//! `POST`, `Content-Type: application/json`, one event per request:
//! `{"data": {"event_type", "id", "occurred_at", "payload": {…}, "record_type": "event"},
//! "meta": {"attempt", "delivered_to"}}`. By `data.event_type`:
//!
//! | event | what it is | events |
//! |---|---|---|
//! | `message.sent`, `message.finalized`, `message.read` | a delivery update of a message sent: `payload.to[]`, one `{phone_number, status}` per recipient | one status per element of `to[]` |
//! | `message.received` | an inbound SMS, MMS or WhatsApp message | one inbound message |
//! | `message.echo` | a WhatsApp Business app message mirrored to the API (sent from the app, not through the API) | none: [`Control::Ignored`] (it is no status of a message the API sent, nor a message from a user) |
//! | another `message.*` | | none: the body is kept as unparsed |
//! | a non-messaging event (`call.*`, `fax.*`, …) | | none: [`Control::Ignored`] |
//!
//! and a link-shortening click, `{"data": {"record_type": "link_clicked", "url", "to",
//! "message_id", "time_clicked"}}` (no `event_type`), is one status `clicked`.
//!
//! - **Channel**: `payload.type`: `SMS` and `MMS` are `sms`, `WHATSAPP` is `whatsapp` (a
//!   link click is `sms`; a payload without `type` too). Telnyx also sends `RCS`: such a
//!   callback is kept as unparsed, the channel named in the reason, as `docs/DESIGN.md` §2
//!   ("Channels") says of channels a provider is not mapped onto (the payload has an `rcs`
//!   channel: mapping it is a change of this table only).
//! - **Address** (`channel_value`): a delivery update's `to[].phone_number`, an inbound
//!   message's `from.phone_number` (a WhatsApp message's `body.from`, else its
//!   `body.from_user_id`, a business-scoped user id, also `channel_user_id`), a click's
//!   `to`, as E.164. An inbound message's `to` is `to[0].phone_number` (`to` is a string on
//!   WhatsApp).
//! - **Message id** (`vendor_ack_id`): `payload.id`, the `id` the send API (`POST
//!   /messages`) returned; a click's `message_id`. An inbound message's is `payload.id`
//!   (also `source_message_id`).
//! - **Event time**: `data.occurred_at`, else `payload.completed_at` or `sent_at`; an
//!   inbound message's `payload.received_at`, else `occurred_at`; a click's `time_clicked`;
//!   else the time of receipt.
//! - **Correlation ids**: `tags` (the send request's) when non-empty, `group_message_id`
//!   (a group MMS), and a WhatsApp send's `biz_opaque_callback_data`, under those names.
//! - **Error** of a `failed` recipient: the first of `payload.errors[]` whose
//!   `source.pointer` points into that recipient (`/to/<index>…`), else the first without
//!   a pointer: `{code, message: title, else detail}`.
//! - **Idempotency key**: Telnyx's event id `data.id` (the same on each retry, whose
//!   `meta.attempt` grows), with the recipient and status; an inbound message's
//!   `payload.id`; a click's (`message_id`, `to`, `url`, `time_clicked`).
//! - **Raw event**: the body as received (parsed), for each recipient's event.
//!
//! An element of `to[]` that is not a recipient (not an object, no `phone_number`) is not
//! normalized: the body is kept as unparsed (once) beside the other recipients' events.
//! `cc[]` recipients of a group MMS are not events: Telnyx sends each recipient's own
//! `message.finalized`.
//!
//! Inbound messages: an SMS is type `text` with `payload.text`; an MMS has `media
//! [{url, content_type, size}]` from `payload.media[]` and the first medium's kind as its
//! type (`image`, `video`, `audio`, else `document`), `text` without media. A WhatsApp
//! message (`payload.body`, Meta's message object) has Meta's `type`; its text is
//! `body.text` (a string, or `{body}`), a medium's `caption`, a `button`'s `text`, an
//! `interactive` reply's `title`, a `reaction`'s `emoji`; its media `{link or id,
//! mime_type, filename}` of `image`, `video`, `audio`, `document`, `sticker`; a
//! `location`'s place; `context {id, from}`; `edit` and `revoke` carry
//! `original_message_id` (an `edit`'s new content is its `message`, read as a message).
//!
//! # Signature
//!
//! Headers `telnyx-signature-ed25519` (base64 of a 64-byte Ed25519 signature) and
//! `telnyx-timestamp` (Unix seconds). The signature is Ed25519 over `{timestamp}|{raw
//! body}` (the timestamp header's bytes, `|`, the body's bytes), checked with the
//! account's public key (strict verification: non-canonical signatures and weak keys are
//! refused). The timestamp must be within [`VerifyOptions::tolerance`] of the clock when one
//! is given: 300 seconds by default, the tolerance Telnyx's SDKs apply.
//!
//! # Verify keys
//!
//! | key | value |
//! |---|---|
//! | `public_key` | the account's public key (Mission Control → Keys & Credentials → Public Key): base64 of the 32-byte Ed25519 key; base64 of its DER SubjectPublicKeyInfo (44 bytes) and PEM armour are accepted too |
//!
//! # Status mapping
//!
//! | Telnyx `to[].status` | status | notes |
//! |---|---|---|
//! | `queued`, `sending` | `queued` | at Telnyx, not yet at the carrier |
//! | `sent` | `sent` | |
//! | `delivered` | `delivered` | |
//! | `read` (`message.read`) | `seen` | |
//! | `sending_failed`, `delivery_failed`, `expired` | `failed` | error from `errors[]` |
//! | `delivery_unconfirmed`, `unknown` | `sent` | handed to the carrier, no delivery receipt (`unknown` is what group MMS recipients on other carriers get): nothing says it failed |
//! | link click (`link_clicked`) | `clicked` | |
//! | any other value | `queued`, informational | the fallback for unknown values |

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, VerifyingKey};
use http::Method;
use serde_json::{Map, Value};

use crate::event::{ChannelUser, idempotency_key};
use crate::limits::TopLevel;
use crate::phone::{e164, is_bsuid};
use crate::provider::{Context, Control, Normalized, Unparsed, VerifyOptions, VerifySettings};
use crate::{
    CallbackRequest, Channel, ErrorInfo, Event, EventKind, InboundMessage, Location, Media,
    NormalizeError, ReplyContext, Status, StatusUpdate, VerifyConfigError, VerifyError, timestamp,
};

/// Provider id.
const PROVIDER: &str = "telnyx";
/// Keys of the `verify:` block.
const KNOWN_KEYS: &[&str] = &["public_key"];
/// Header with the base64 Ed25519 signature.
const SIGNATURE_HEADER: &str = "telnyx-signature-ed25519";
/// Header with the signed Unix timestamp.
const TIMESTAMP_HEADER: &str = "telnyx-timestamp";
/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), before the 32 key bytes.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Checks Telnyx's Ed25519 webhook signature.
#[derive(Debug, Clone)]
pub struct Verifier {
    key: VerifyingKey,
}

impl Verifier {
    /// Builds the verifier from the `verify:` settings: `public_key` is required, base64 of
    /// the 32-byte Ed25519 public key (or of its DER SubjectPublicKeyInfo).
    pub fn from_settings(settings: &VerifySettings) -> Result<Self, VerifyConfigError> {
        settings.only(PROVIDER, KNOWN_KEYS)?;
        let raw = settings.require(PROVIDER, "public_key")?;
        let invalid = |reason: String| VerifyConfigError::Invalid {
            provider: PROVIDER,
            key: "public_key",
            reason,
        };
        let bytes = decode_public_key(raw.expose()).map_err(invalid)?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| invalid("not an Ed25519 public key".into()))?;
        if key.is_weak() {
            return Err(invalid("a weak (small-order) Ed25519 key".into()));
        }
        Ok(Self { key })
    }

    /// Checks the signature over the timestamp header and the raw body, then (when a clock
    /// is given) the timestamp's age.
    pub fn verify(&self, req: &CallbackRequest, opts: &VerifyOptions) -> Result<(), VerifyError> {
        let signature = req
            .headers
            .get(SIGNATURE_HEADER)
            .ok_or(VerifyError::Missing("telnyx-signature-ed25519"))?;
        let ts = req
            .headers
            .get(TIMESTAMP_HEADER)
            .ok_or(VerifyError::Missing("telnyx-timestamp"))?;
        let ts = ts.as_bytes();
        let decoded = STANDARD
            .decode(signature.as_bytes().trim_ascii())
            .map_err(|_| VerifyError::Malformed("telnyx-signature-ed25519 is not base64".into()))?;
        let signature = Signature::from_slice(&decoded).map_err(|_| {
            VerifyError::Malformed("telnyx-signature-ed25519 is not a 64-byte signature".into())
        })?;
        let mut signed = Vec::with_capacity(ts.len() + 1 + req.body.len());
        signed.extend_from_slice(ts);
        signed.push(b'|');
        signed.extend_from_slice(&req.body);
        self.key
            .verify_strict(&signed, &signature)
            .map_err(|_| VerifyError::Mismatch)?;
        let ts_secs = std::str::from_utf8(ts)
            .ok()
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse::<i64>().ok())
            .ok_or_else(|| VerifyError::Malformed("telnyx-timestamp is not Unix seconds".into()))?;
        opts.check_timestamp(ts_secs)
    }
}

/// Decodes the configured key: base64 of the raw key or of its SubjectPublicKeyInfo,
/// optionally inside PEM armour, whitespace ignored.
fn decode_public_key(text: &str) -> Result<[u8; 32], String> {
    let b64: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("-----"))
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    if b64.is_empty() {
        return Err("empty key".into());
    }
    let der = STANDARD
        .decode(b64.as_bytes())
        .map_err(|e| format!("not base64: {e}"))?;
    let key = match der.strip_prefix(&SPKI_PREFIX[..]) {
        Some(key) if der.len() == SPKI_PREFIX.len() + 32 => key,
        _ => &der[..],
    };
    <[u8; 32]>::try_from(key).map_err(|_| {
        format!(
            "expected 32 bytes (or a 44-byte SubjectPublicKeyInfo), got {}",
            der.len()
        )
    })
}

/// Normalizes one Telnyx messaging webhook into its events.
pub fn normalize(req: &CallbackRequest, ctx: &Context) -> Result<Normalized, NormalizeError> {
    if req.method != Method::POST {
        return Err(NormalizeError::UnsupportedMethod {
            provider: PROVIDER,
            method: req.method.to_string(),
        });
    }
    req.expect_content_type(PROVIDER, &["application/json"], "application/json")?;
    if let Some(unparsed) = req.beyond_limits(TopLevel::Object) {
        return Ok(Normalized::one_unparsed(unparsed));
    }
    let body = req.json()?;
    // JSON text is UTF-8: the body parsed.
    let raw = std::str::from_utf8(&req.body).map_err(|_| NormalizeError::NotUtf8)?;
    let Some(data) = body.get("data").filter(|d| d.is_object()) else {
        return Err(NormalizeError::shape(
            "",
            "a JSON object with a `data` object (one Telnyx webhook)",
        ));
    };
    let event_type = match data.get("event_type") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        None | Some(Value::Null) if text(data, "record_type") == Some("link_clicked") => {
            return link_click(&body, ctx).map(|e| Normalized::events(vec![e]));
        }
        None | Some(Value::Null) | Some(Value::String(_)) => {
            return Err(NormalizeError::MissingField("data/event_type".into()));
        }
        Some(_) => return Err(NormalizeError::invalid("data/event_type", "not a string")),
    };
    match event_type.as_str() {
        "message.sent" | "message.finalized" | "message.read" => delivery_update(&body, raw, ctx),
        "message.received" => inbound(&body, raw, ctx).map(|out| match out {
            Ok(event) => Normalized::events(vec![event]),
            Err(unparsed) => unparsed,
        }),
        "message.echo" => Ok(Normalized::control(Control::Ignored {
            reason: format!(
                "Telnyx message.echo {}: a WhatsApp Business app message, sent from the app and not through the API, not delivered",
                text(data, "id").unwrap_or("(no id)")
            ),
        })),
        t if t.starts_with("message.") => Ok(whole_body_unparsed(
            format!("unknown Telnyx messaging event {t:?}"),
            raw,
        )),
        t => Ok(Normalized::control(Control::Ignored {
            reason: format!("Telnyx {t} event, not a messaging event, not delivered"),
        })),
    }
}

/// The whole body, as received, as one unparsed event.
fn whole_body_unparsed(reason: impl std::fmt::Display, raw: &str) -> Normalized {
    Normalized::one_unparsed(Unparsed::new(reason, raw))
}

/// A non-empty string field.
fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

/// A string or number field as text (Telnyx's error `code` is a string, in places a number).
fn text_or_number(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An ISO 8601 time field in epoch ms: `Ok(None)` when absent, an error when unreadable.
fn time_ms(v: &Value, key: &str, path: &str) -> Result<Option<i64>, NormalizeError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) if s.is_ascii() => timestamp::parse_str_ms(s)
            .map(Some)
            .ok_or_else(|| NormalizeError::invalid(format!("{path}{key}"), "not an ISO 8601 time")),
        Some(_) => Err(NormalizeError::invalid(
            format!("{path}{key}"),
            "not an ISO 8601 time",
        )),
    }
}

/// The first time of `keys` present on `v`, in epoch ms, with its text as sent.
fn first_time(
    candidates: &[(&Value, &str, &str)],
    ctx: &Context,
) -> Result<(String, i64), NormalizeError> {
    for (v, key, path) in candidates {
        if let Some(ms) = time_ms(v, key, path)? {
            return Ok((text(v, key).unwrap_or("").to_owned(), ms));
        }
    }
    Ok((String::new(), ctx.received_at_ms))
}

/// The channel of a payload: `Ok` with the payload's channel, `Err` with the reason it is
/// not normalized.
fn channel_of(payload: &Value) -> Result<Channel, String> {
    match payload.get("type").and_then(Value::as_str) {
        None => Ok(Channel::Sms),
        Some(t) => match t.trim().to_ascii_uppercase().as_str() {
            "SMS" | "MMS" => Ok(Channel::Sms),
            "WHATSAPP" => Ok(Channel::Whatsapp),
            _ => Err(format!(
                "Telnyx message type {t:?} is not normalized (only SMS, MMS and WHATSAPP are)"
            )),
        },
    }
}

/// Correlation ids of a payload (see the module docs).
fn correlation(payload: &Value) -> Map<String, Value> {
    let mut map = Map::new();
    if let Some(tags) = payload.get("tags").filter(|t| {
        t.as_array().is_some_and(|a| !a.is_empty()) || t.as_str().is_some_and(|s| !s.is_empty())
    }) {
        map.insert("tags".into(), tags.clone());
    }
    for key in ["group_message_id", "biz_opaque_callback_data"] {
        if let Some(v) = text(payload, key) {
            map.insert(key.into(), Value::String(v.to_owned()));
        }
    }
    map
}

/// Maps a recipient's `status`; see the module table.
fn map_status(status: &str) -> (Status, bool) {
    match status.to_ascii_lowercase().as_str() {
        "queued" | "sending" => (Status::Queued, false),
        "sent" | "delivery_unconfirmed" | "unknown" => (Status::Sent, false),
        "delivered" => (Status::Delivered, false),
        "read" => (Status::Seen, false),
        "sending_failed" | "delivery_failed" | "expired" => (Status::Failed, false),
        _ => (Status::Queued, true),
    }
}

/// The error of recipient `index`: the first error pointing into it, else the first
/// pointing nowhere.
fn error_of(payload: &Value, index: usize) -> Option<ErrorInfo> {
    let errors = payload.get("errors")?.as_array()?;
    let prefix = format!("/to/{index}");
    let points_into = |e: &Value| {
        e.pointer("/source/pointer")
            .and_then(Value::as_str)
            .map(|p| p == prefix || p.starts_with(&format!("{prefix}/")))
    };
    let chosen = errors
        .iter()
        .find(|e| points_into(e) == Some(true))
        .or_else(|| errors.iter().find(|e| points_into(e).is_none()))?;
    ErrorInfo::from_parts(
        text_or_number(chosen, "code"),
        text(chosen, "title")
            .or_else(|| text(chosen, "detail"))
            .map(str::to_owned),
    )
}

/// `message.sent`, `message.finalized`, `message.read`: one status per recipient.
fn delivery_update(body: &Value, raw: &str, ctx: &Context) -> Result<Normalized, NormalizeError> {
    let data = body.get("data").unwrap_or(&Value::Null);
    let Some(payload) = data.get("payload").filter(|p| p.is_object()) else {
        return Err(NormalizeError::MissingField("data/payload".into()));
    };
    let message_id = match payload.get("id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => return Err(NormalizeError::MissingField("data/payload/id".into())),
    };
    let channel = match channel_of(payload) {
        Ok(channel) => channel,
        Err(reason) => return Ok(whole_body_unparsed(reason, raw)),
    };
    let recipients = match payload.get("to") {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => {
            return Err(NormalizeError::MissingField("data/payload/to".into()));
        }
        Some(_) => return Err(NormalizeError::shape("data/payload/to", "an array")),
    };
    let event_id = text(data, "id").unwrap_or("");
    let event_type = text(data, "event_type").unwrap_or("");
    let (_, timestamp_ms) = first_time(
        &[
            (data, "occurred_at", "data/"),
            (payload, "completed_at", "data/payload/"),
            (payload, "sent_at", "data/payload/"),
        ],
        ctx,
    )?;
    let correlation = correlation(payload);
    let mut out = Normalized::default();
    let mut refused = Vec::new();
    for (i, to) in recipients.iter().enumerate() {
        let (Some(phone), Some(status_text)) = (text(to, "phone_number"), text(to, "status"))
        else {
            refused.push(i);
            continue;
        };
        let (status, informational) = map_status(status_text);
        let error = (status == Status::Failed)
            .then(|| error_of(payload, i))
            .flatten();
        let channel_value = e164(phone);
        out.events.push(Event {
            channel,
            channel_user: ChannelUser::default(),
            vendor_name: PROVIDER.to_owned(),
            vendor_ack_id: Some(message_id.clone()),
            idempotency_key: idempotency_key(
                PROVIDER,
                &[
                    event_id,
                    event_type,
                    &message_id,
                    &channel_value,
                    status_text,
                ],
            ),
            channel_value,
            correlation: correlation.clone(),
            kind: EventKind::Status(StatusUpdate {
                status,
                timestamp_ms,
                error,
                informational,
            }),
            raw: body.clone().into(),
        });
    }
    if !refused.is_empty() {
        let listed: Vec<String> = refused.iter().map(|i| format!("/to/{i}")).collect();
        out.unparsed.push(Unparsed::new(
            format!(
                "data/payload{}: not a recipient with phone_number and status",
                listed.join(", data/payload")
            ),
            raw,
        ));
    }
    Ok(out)
}

/// A link-shortening click.
fn link_click(body: &Value, ctx: &Context) -> Result<Event, NormalizeError> {
    let data = body.get("data").unwrap_or(&Value::Null);
    let message_id = text(data, "message_id")
        .ok_or_else(|| NormalizeError::MissingField("data/message_id".into()))?;
    let to = text(data, "to").map(e164).unwrap_or_default();
    let (time_text, timestamp_ms) = first_time(&[(data, "time_clicked", "data/")], ctx)?;
    let url = text(data, "url").unwrap_or("");
    Ok(Event {
        channel: Channel::Sms,
        channel_user: ChannelUser::default(),
        vendor_name: PROVIDER.to_owned(),
        vendor_ack_id: Some(message_id.to_owned()),
        idempotency_key: idempotency_key(
            PROVIDER,
            &["link_clicked", message_id, &to, url, &time_text],
        ),
        channel_value: to,
        correlation: Map::new(),
        kind: EventKind::Status(StatusUpdate {
            status: Status::Clicked,
            timestamp_ms,
            error: None,
            informational: false,
        }),
        raw: body.clone().into(),
    })
}

/// The message type of a medium by its MIME type.
fn kind_of_mime(mime: &str) -> &'static str {
    let mime = mime.trim().to_ascii_lowercase();
    if mime.starts_with("image/") {
        "image"
    } else if mime.starts_with("video/") {
        "video"
    } else if mime.starts_with("audio/") {
        "audio"
    } else {
        "document"
    }
}

/// `message.received`: an inbound message, or (`Err`) the body kept as unparsed.
fn inbound(
    body: &Value,
    raw: &str,
    ctx: &Context,
) -> Result<Result<Event, Normalized>, NormalizeError> {
    let data = body.get("data").unwrap_or(&Value::Null);
    let Some(payload) = data.get("payload").filter(|p| p.is_object()) else {
        return Err(NormalizeError::MissingField("data/payload".into()));
    };
    let id = text(payload, "id")
        .ok_or_else(|| NormalizeError::MissingField("data/payload/id".into()))?
        .to_owned();
    let channel = match channel_of(payload) {
        Ok(channel) => channel,
        Err(reason) => return Ok(Err(whole_body_unparsed(reason, raw))),
    };
    let wa = payload.get("body").filter(|b| b.is_object());
    let from_number = payload
        .pointer("/from/phone_number")
        .and_then(Value::as_str)
        .or_else(|| wa.and_then(|b| text(b, "from")))
        .filter(|s| !s.trim().is_empty());
    let user_id = wa
        .and_then(|b| text(b, "from_user_id"))
        .or(from_number.filter(|n| is_bsuid(n)));
    let from = from_number
        .or(user_id)
        .map(e164)
        .ok_or_else(|| NormalizeError::MissingField("data/payload/from/phone_number".into()))?;
    let to = match payload.get("to") {
        Some(Value::String(s)) => e164(s),
        Some(Value::Array(items)) => items
            .first()
            .and_then(|t| text(t, "phone_number"))
            .map(e164)
            .unwrap_or_default(),
        _ => String::new(),
    };
    let (_, timestamp_ms) = first_time(
        &[
            (payload, "received_at", "data/payload/"),
            (data, "occurred_at", "data/"),
        ],
        ctx,
    )?;
    let mut message = InboundMessage {
        from: from.clone(),
        to,
        timestamp_ms,
        source_message_id: id.clone(),
        ..InboundMessage::default()
    };
    match (channel, wa) {
        (Channel::Whatsapp, Some(wa)) => whatsapp_content(wa, &mut message),
        _ => sms_content(payload, &mut message),
    }
    Ok(Ok(Event {
        channel,
        channel_value: from,
        channel_user: ChannelUser {
            user_id: user_id.map(str::to_owned),
            ..ChannelUser::default()
        },
        vendor_name: PROVIDER.to_owned(),
        vendor_ack_id: Some(id.clone()),
        idempotency_key: idempotency_key(PROVIDER, &["inbound", &id]),
        correlation: correlation(payload),
        kind: EventKind::Inbound(message),
        raw: body.clone().into(),
    }))
}

/// An SMS or MMS: `text` and `media[]`.
fn sms_content(payload: &Value, message: &mut InboundMessage) {
    message.text = text(payload, "text").map(str::to_owned);
    message.media = payload
        .get("media")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|m| {
                    let url = text(m, "url")?;
                    let mut media = Media::at(url, text(m, "content_type").map(str::to_owned));
                    media.size = m.get("size").and_then(Value::as_u64);
                    Some(media)
                })
                .collect()
        })
        .unwrap_or_default();
    message.message_type = match message.media.first() {
        Some(m) => m.content_type.as_deref().map_or("document", kind_of_mime),
        None => "text",
    }
    .to_owned();
}

/// A WhatsApp message object (Meta's shape, as Telnyx relays it in `payload.body`).
fn whatsapp_content(wa: &Value, message: &mut InboundMessage) {
    let kind = text(wa, "type").unwrap_or("unsupported");
    message.message_type = kind.to_owned();
    if let Some(ctx) = wa.get("context").filter(|c| c.is_object())
        && let Some(id) = text(ctx, "id")
    {
        message.context = Some(ReplyContext {
            id: id.to_owned(),
            from: text(ctx, "from").map(e164),
        });
    }
    match kind {
        "edit" => {
            let edit = wa.get("edit").unwrap_or(&Value::Null);
            message.original_message_id = text(edit, "original_message_id").map(str::to_owned);
            if let Some(inner) = edit.get("message").filter(|m| m.is_object()) {
                let mut content = InboundMessage::default();
                whatsapp_content(inner, &mut content);
                message.text = content.text;
                message.media = content.media;
                message.location = content.location;
                if message.context.is_none() {
                    message.context = content.context;
                }
            }
        }
        "revoke" => {
            message.original_message_id = wa
                .pointer("/revoke/original_message_id")
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        _ => whatsapp_body(kind, wa, message),
    }
}

/// The content of a WhatsApp message of `kind` (not an edit or a revoke).
fn whatsapp_body(kind: &str, wa: &Value, message: &mut InboundMessage) {
    let part = wa.get(kind).unwrap_or(&Value::Null);
    let own = |s: Option<&str>| s.map(str::to_owned);
    match kind {
        "text" => {
            message.text = match wa.get("text") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(t) => own(text(t, "body")),
                None => None,
            };
        }
        "image" | "video" | "audio" | "document" | "sticker" => {
            if let Some(url) = text(part, "link")
                .or_else(|| text(part, "url"))
                .or_else(|| text(part, "id"))
            {
                let mut media = Media::at(url, own(text(part, "mime_type")));
                media.name = own(text(part, "filename"));
                message.media.push(media);
            }
            message.text = own(text(part, "caption"));
        }
        "location" => {
            let lat = part.get("latitude").and_then(Value::as_f64);
            let lon = part.get("longitude").and_then(Value::as_f64);
            if let (Some(latitude), Some(longitude)) = (lat, lon) {
                message.location = Some(Location {
                    latitude,
                    longitude,
                    name: own(text(part, "name")),
                    address: own(text(part, "address")),
                });
            }
        }
        "button" => message.text = own(text(part, "text").or_else(|| text(part, "payload"))),
        "interactive" => {
            message.text = own(part
                .pointer("/button_reply/title")
                .or_else(|| part.pointer("/list_reply/title"))
                .or_else(|| part.pointer("/nfm_reply/body"))
                .and_then(Value::as_str));
        }
        "reaction" => {
            message.text = own(text(part, "emoji"));
            if let Some(id) = text(part, "message_id") {
                message.context = Some(ReplyContext {
                    id: id.to_owned(),
                    from: None,
                });
            }
        }
        _ => {}
    }
    message.text = message.text.take().filter(|t| !t.is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};
    use http::{HeaderName, HeaderValue};
    use serde_json::json;

    const CTX: Context = Context {
        received_at_ms: 1_700_000_000_000,
    };

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/telnyx/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The generated vector (see its `.source.txt`): key, headers, body.
    struct Vector {
        seed: [u8; 32],
        key: String,
        spki: String,
        ts: String,
        sig: String,
        body: Vec<u8>,
    }

    fn vector() -> Vector {
        let v: Value = serde_json::from_slice(&fixture("signed_vector.json")).expect("json");
        let s = |p: &str| v.pointer(p).and_then(Value::as_str).expect(p).to_owned();
        let mut seed = [0; 32];
        hex::decode_to_slice(s("/private_key_seed_hex"), &mut seed).expect("seed");
        Vector {
            seed,
            key: s("/public_key_base64"),
            spki: s("/public_key_spki_base64"),
            ts: s("/headers/telnyx-timestamp"),
            sig: s("/headers/telnyx-signature-ed25519"),
            body: fixture(&s("/payload_file")),
        }
    }

    fn verifier(key: &str) -> Verifier {
        Verifier::from_settings(&VerifySettings::new().with("public_key", key)).expect("verifier")
    }

    fn signed(body: &[u8], sig: &str, ts: &str) -> CallbackRequest {
        let mut req = CallbackRequest::post(body.to_vec()).with_content_type("application/json");
        for (name, value) in [(SIGNATURE_HEADER, sig), (TIMESTAMP_HEADER, ts)] {
            req.headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(value).expect("header"),
            );
        }
        req
    }

    /// Signs `ts|body` with the vector's key (ed25519-dalek, the verifier's own library:
    /// the vector itself was made with another implementation).
    fn sign(v: &Vector, body: &[u8], ts: &str) -> String {
        let key = SigningKey::from_bytes(&v.seed);
        let mut message = ts.as_bytes().to_vec();
        message.push(b'|');
        message.extend_from_slice(body);
        STANDARD.encode(key.sign(&message).to_bytes())
    }

    fn at(now: i64) -> VerifyOptions {
        VerifyOptions {
            now_secs: Some(now),
            tolerance_secs: None,
        }
    }

    const NO_CLOCK: VerifyOptions = VerifyOptions {
        now_secs: None,
        tolerance_secs: None,
    };

    fn run(body: &[u8]) -> Result<Normalized, NormalizeError> {
        normalize(
            &CallbackRequest::post(body.to_vec()).with_content_type("application/json"),
            &CTX,
        )
    }

    fn one(name: &str) -> Event {
        let out = run(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(out.unparsed.is_empty() && out.control.is_none(), "{name}");
        assert_eq!(out.events.len(), 1, "{name}");
        out.events.into_iter().next().expect("one event")
    }

    fn status(e: &Event) -> &StatusUpdate {
        e.status().expect("status event")
    }

    fn inbound(e: &Event) -> &InboundMessage {
        match &e.kind {
            EventKind::Inbound(m) => m,
            EventKind::Status(_) => panic!("inbound expected"),
        }
    }

    /// A delivery update of `to` recipients (a real body's fields, recipients replaced).
    fn update(event_type: &str, to: Value, errors: Value) -> Vec<u8> {
        let mut body: Value =
            serde_json::from_slice(&fixture("message_finalized_delivered.json")).expect("json");
        body["data"]["event_type"] = json!(event_type);
        body["data"]["payload"]["to"] = to;
        body["data"]["payload"]["errors"] = errors;
        body.to_string().into_bytes()
    }

    // --- signature -----------------------------------------------------------------------

    #[test]
    fn the_vector_verifies() {
        let v = vector();
        let req = signed(&v.body, &v.sig, &v.ts);
        verifier(&v.key).verify(&req, &NO_CLOCK).expect("raw key");
        verifier(&v.spki).verify(&req, &NO_CLOCK).expect("SPKI key");
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            v.spki
        );
        verifier(&pem).verify(&req, &NO_CLOCK).expect("PEM key");
        let ts: i64 = v.ts.parse().expect("ts");
        verifier(&v.key)
            .verify(&req, &at(ts + 299))
            .expect("within Telnyx's 300 s");
        // This library's signature of the same bytes is the same (Ed25519 is deterministic).
        assert_eq!(sign(&v, &v.body, &v.ts), v.sig);
    }

    #[test]
    fn tampered_body_signature_or_timestamp_fails() {
        let v = vector();
        let ver = verifier(&v.key);
        let mismatch = |req: &CallbackRequest| {
            matches!(ver.verify(req, &NO_CLOCK), Err(VerifyError::Mismatch))
        };
        let mut body = v.body.clone();
        body.push(b'\n');
        assert!(mismatch(&signed(&body, &v.sig, &v.ts)));
        let mut body = v.body.clone();
        body[20] ^= 1;
        assert!(mismatch(&signed(&body, &v.sig, &v.ts)));
        let mut sig = STANDARD.decode(&v.sig).expect("b64");
        sig[0] ^= 1;
        assert!(mismatch(&signed(&v.body, &STANDARD.encode(&sig), &v.ts)));
        // The timestamp is signed: another one (even a fresh one) does not match.
        assert!(mismatch(&signed(&v.body, &v.sig, "1705354336")));
        // Another key.
        let other = STANDARD.encode(SigningKey::from_bytes(&[7; 32]).verifying_key().to_bytes());
        assert!(matches!(
            verifier(&other).verify(&signed(&v.body, &v.sig, &v.ts), &NO_CLOCK),
            Err(VerifyError::Mismatch)
        ));
        // A signature of the body alone, or with another separator, is not Telnyx's.
        let key = SigningKey::from_bytes(&v.seed);
        let bare = STANDARD.encode(key.sign(&v.body).to_bytes());
        assert!(mismatch(&signed(&v.body, &bare, &v.ts)));
        let mut dotted = v.ts.as_bytes().to_vec();
        dotted.push(b'.');
        dotted.extend_from_slice(&v.body);
        let dotted = STANDARD.encode(key.sign(&dotted).to_bytes());
        assert!(mismatch(&signed(&v.body, &dotted, &v.ts)));
    }

    #[test]
    fn stale_and_future_timestamps_fail() {
        let v = vector();
        let ver = verifier(&v.key);
        let ts: i64 = v.ts.parse().expect("ts");
        let req = signed(&v.body, &v.sig, &v.ts);
        for now in [ts + 301, ts - 301, ts + 86_400] {
            assert!(
                matches!(ver.verify(&req, &at(now)), Err(VerifyError::Stale(_))),
                "{now}"
            );
        }
        ver.verify(&req, &at(ts - 300)).expect("at the edge");
        // A fresh timestamp, signed: passes against a clock now.
        let fresh = "1800000000";
        let req = signed(&v.body, &sign(&v, &v.body, fresh), fresh);
        ver.verify(&req, &at(1_800_000_010)).expect("fresh");
        // A timestamp that is not Unix seconds, signed as such: refused.
        for bad in ["yesterday", "-5", "1.5", " 1705354335"] {
            let req = signed(&v.body, &sign(&v, &v.body, bad), bad);
            assert!(
                matches!(ver.verify(&req, &NO_CLOCK), Err(VerifyError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn missing_and_malformed_headers_fail() {
        let v = vector();
        let ver = verifier(&v.key);
        for name in [SIGNATURE_HEADER, TIMESTAMP_HEADER] {
            let mut req = signed(&v.body, &v.sig, &v.ts);
            req.headers.remove(name);
            assert!(
                matches!(ver.verify(&req, &NO_CLOCK), Err(VerifyError::Missing(_))),
                "{name}"
            );
        }
        let short = STANDARD.encode([1u8; 63]);
        for bad in ["%%%", "", short.as_str()] {
            assert!(
                matches!(
                    ver.verify(&signed(&v.body, bad, &v.ts), &NO_CLOCK),
                    Err(VerifyError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
        // A non-canonical signature (S above the group order) never verifies.
        let mut sig = STANDARD.decode(&v.sig).expect("b64");
        sig[63] |= 0xf0;
        assert!(
            ver.verify(&signed(&v.body, &STANDARD.encode(&sig), &v.ts), &NO_CLOCK)
                .is_err()
        );
    }

    #[test]
    fn settings_fail_closed() {
        let v = vector();
        let build =
            |key: &str| Verifier::from_settings(&VerifySettings::new().with("public_key", key));
        assert!(matches!(
            Verifier::from_settings(&VerifySettings::new()),
            Err(VerifyConfigError::Missing { .. })
        ));
        assert!(matches!(
            build("  "),
            Err(VerifyConfigError::Missing { .. })
        ));
        let weak = STANDARD.encode([0u8; 32]);
        let long = STANDARD.encode([1u8; 33]);
        for bad in ["not base64!", "AAAA", long.as_str(), weak.as_str()] {
            assert!(
                matches!(build(bad), Err(VerifyConfigError::Invalid { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            Verifier::from_settings(
                &VerifySettings::new()
                    .with("public_key", v.key.as_str())
                    .with("secret", "x")
            ),
            Err(VerifyConfigError::Unknown { .. })
        ));
    }

    // --- events --------------------------------------------------------------------------

    #[test]
    fn delivery_updates_map() {
        let e = one("message_sent.json");
        assert_eq!(e.channel, Channel::Sms);
        assert_eq!(e.channel_value, "+13125550002");
        assert_eq!(
            e.vendor_ack_id.as_deref(),
            Some("ac012cbf-5e09-46af-a69a-7c0e2d90993c")
        );
        assert_eq!(status(&e).status, Status::Sent);
        assert_eq!(status(&e).timestamp_ms, 1_705_354_333_596, "occurred_at");
        assert!(e.correlation.is_empty());

        let e = one("message_finalized_delivered.json");
        assert_eq!(status(&e).status, Status::Delivered);
        assert_eq!(status(&e).timestamp_ms, 1_705_354_334_148);
        assert_eq!(e.correlation["tags"], json!(["tag-a", "tag-b"]));
        assert_eq!(e.raw.to_value()["meta"]["attempt"], 1, "the body as sent");

        let e = one("group_mms_finalized.json");
        assert_eq!(e.channel_value, "+15559876543");
        assert_eq!(status(&e).status, Status::Delivered);
        assert_eq!(
            e.correlation["group_message_id"],
            "403189d4-b1d6-4993-b263-6470e5224430"
        );
    }

    #[test]
    fn every_status_maps() {
        let cases = [
            ("queued", Status::Queued, false),
            ("sending", Status::Queued, false),
            ("sent", Status::Sent, false),
            ("delivered", Status::Delivered, false),
            ("read", Status::Seen, false),
            ("sending_failed", Status::Failed, false),
            ("delivery_failed", Status::Failed, false),
            ("expired", Status::Failed, false),
            ("delivery_unconfirmed", Status::Sent, false),
            ("unknown", Status::Sent, false),
            ("webhook_delivered", Status::Queued, true),
            ("teleported", Status::Queued, true),
        ];
        for (name, want, informational) in cases {
            let body = update(
                "message.finalized",
                json!([{"phone_number": "+13125550002", "status": name}]),
                json!([]),
            );
            let out = run(&body).expect("normalize");
            let s = status(&out.events[0]);
            assert_eq!((s.status, s.informational), (want, informational), "{name}");
        }
    }

    #[test]
    fn one_event_per_recipient_with_its_own_error() {
        let body = update(
            "message.finalized",
            json!([
                {"phone_number": "+13125550002", "status": "delivered"},
                {"phone_number": "+13125550003", "status": "delivery_failed"},
                {"phone_number": "+13125550004", "status": "sending_failed"},
                "not a recipient",
                {"phone_number": "+13125550005"}
            ]),
            json!([
                {"code": "40300", "title": "Destination number unreachable",
                 "detail": "The destination number is not reachable on the carrier network.",
                 "source": {"pointer": "/to/1/phone_number"}},
                {"code": 40008, "detail": "Message filtered by carrier"}
            ]),
        );
        let out = run(&body).expect("normalize");
        let got: Vec<(&str, Status, Option<ErrorInfo>)> = out
            .events
            .iter()
            .map(|e| {
                (
                    e.channel_value.as_str(),
                    status(e).status,
                    status(e).error.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("+13125550002", Status::Delivered, None),
                (
                    "+13125550003",
                    Status::Failed,
                    Some(ErrorInfo {
                        code: Some("40300".into()),
                        message: Some("Destination number unreachable".into())
                    })
                ),
                (
                    "+13125550004",
                    Status::Failed,
                    Some(ErrorInfo {
                        code: Some("40008".into()),
                        message: Some("Message filtered by carrier".into())
                    })
                ),
            ]
        );
        let keys: std::collections::BTreeSet<_> =
            out.events.iter().map(|e| &e.idempotency_key).collect();
        assert_eq!(keys.len(), 3);
        // The two elements that are no recipients: the body kept once, naming both.
        assert_eq!(out.unparsed.len(), 1);
        assert!(
            out.unparsed[0].reason.contains("/to/3"),
            "{}",
            out.unparsed[0].reason
        );
        assert!(
            out.unparsed[0].reason.contains("/to/4"),
            "{}",
            out.unparsed[0].reason
        );
        // `/to/10` does not point into `/to/1`.
        let body = update(
            "message.finalized",
            json!([{"phone_number": "+1", "status": "x"}, {"phone_number": "+13125550003", "status": "delivery_failed"}]),
            json!([{"code": "1", "title": "for ten", "source": {"pointer": "/to/10"}}]),
        );
        let out = run(&body).expect("normalize");
        assert_eq!(status(&out.events[1]).error, None);
    }

    #[test]
    fn retries_keep_their_keys() {
        let body = fixture("message_finalized_delivered.json");
        let mut retry: Value = serde_json::from_slice(&body).expect("json");
        retry["meta"]["attempt"] = json!(2);
        let first = run(&body).expect("normalize").events.remove(0);
        let second = run(retry.to_string().as_bytes())
            .expect("normalize")
            .events
            .remove(0);
        assert_eq!(first.idempotency_key, second.idempotency_key);
        assert_ne!(
            first.idempotency_key,
            one("message_sent.json").idempotency_key,
            "the same message's other event"
        );
        assert_ne!(
            one("message_received_sms.json").idempotency_key,
            one("message_received_mms.json").idempotency_key
        );
    }

    #[test]
    fn inbound_messages_map() {
        let e = one("message_received_sms.json");
        let m = inbound(&e);
        assert_eq!(e.channel, Channel::Sms);
        assert_eq!(
            (m.from.as_str(), m.to.as_str()),
            ("+13125550001", "+17735550002")
        );
        assert_eq!(e.channel_value, "+13125550001");
        assert_eq!(
            (m.message_type.as_str(), m.text.as_deref()),
            ("text", Some("Hello from Telnyx!"))
        );
        assert_eq!(m.timestamp_ms, 1_705_349_767_503, "received_at");
        assert_eq!(m.source_message_id, "84cca175-9755-4859-b67f-4730d7f58aa3");
        assert_eq!(
            e.vendor_ack_id.as_deref(),
            Some("84cca175-9755-4859-b67f-4730d7f58aa3")
        );

        let m = inbound(&one("message_received_mms.json")).clone();
        assert_eq!(m.message_type, "image");
        assert_eq!(m.text.as_deref(), Some("Check out this photo!"));
        let mut want = Media::at(
            "https://media.telnyx.com/example-image.png",
            Some("image/png".into()),
        );
        want.size = Some(102_400);
        assert_eq!(m.media, [want]);

        let e = one("group_mms_received.json");
        let m = inbound(&e);
        assert_eq!(
            (m.from.as_str(), m.to.as_str()),
            ("+15559876543", "+15551234567")
        );
        assert_eq!(m.text.as_deref(), Some("Sounds good, see you at noon!"));
        assert_eq!(
            m.timestamp_ms, 1_691_499_785_129,
            "occurred_at: no received_at"
        );
    }

    #[test]
    fn link_clicks_are_clicked() {
        let e = one("link_clicked.json");
        assert_eq!(
            (e.channel, e.channel_value.as_str()),
            (Channel::Sms, "+18445550001")
        );
        assert_eq!(
            e.vendor_ack_id.as_deref(),
            Some("7ee4241c-f127-47e5-9c34-3aac291f8058")
        );
        assert_eq!(status(&e).status, Status::Clicked);
        assert_eq!(status(&e).timestamp_ms, 1_554_129_945_450);
        assert!(run(br#"{"data":{"record_type":"link_clicked","to":"1"}}"#).is_err());
    }

    #[test]
    fn whatsapp_messages_map() {
        // Shapes of the SDK's types (npm telnyx@7.24.0 resources/messages/messages.d.ts,
        // MessagingInboundMessagePayload: `type: WHATSAPP`, `to` a string, `body` Meta's
        // message object); Telnyx publishes no WhatsApp webhook example.
        let inbound_of = |body: Value| {
            let doc = json!({"data": {"event_type": "message.received", "id": "E1",
                "occurred_at": "2025-05-01T10:00:00.000+00:00",
                "payload": {"id": "P1", "direction": "inbound", "type": "WHATSAPP",
                "from": {"phone_number": "+15557654321"}, "to": "+15551234567", "body": body},
                "record_type": "event"}});
            let mut out = run(doc.to_string().as_bytes()).expect("normalize");
            assert_eq!(out.events.len(), 1, "{doc}");
            out.events.remove(0)
        };
        let e = inbound_of(
            json!({"type": "text", "text": {"body": "¿Qué tal? 日本語 🙂"},
            "foreign_id": "wamid.X", "context": {"id": "wamid.Y", "from": "15551234567"}}),
        );
        let m = inbound(&e);
        assert_eq!(e.channel, Channel::Whatsapp);
        assert_eq!(
            (m.from.as_str(), m.to.as_str()),
            ("+15557654321", "+15551234567")
        );
        assert_eq!(m.text.as_deref(), Some("¿Qué tal? 日本語 🙂"));
        assert_eq!(
            m.context,
            Some(ReplyContext {
                id: "wamid.Y".into(),
                from: Some("+15551234567".into())
            })
        );
        let e = inbound_of(json!({"type": "image", "image": {"id": "MEDIA1",
            "mime_type": "image/jpeg", "caption": "look"}}));
        let m = inbound(&e);
        assert_eq!(
            (m.message_type.as_str(), m.text.as_deref()),
            ("image", Some("look"))
        );
        assert_eq!(m.media, [Media::at("MEDIA1", Some("image/jpeg".into()))]);
        let e = inbound_of(json!({"type": "location", "location": {"latitude": 1.5,
            "longitude": -2.25, "name": "Café"}}));
        assert_eq!(inbound(&e).location.as_ref().map(|l| l.latitude), Some(1.5));
        let e = inbound_of(json!({"type": "edit", "edit": {"original_message_id": "P0",
            "message": {"type": "text", "text": {"body": "fixed"}}}}));
        let m = inbound(&e);
        assert_eq!(
            (
                m.message_type.as_str(),
                m.text.as_deref(),
                m.original_message_id.as_deref()
            ),
            ("edit", Some("fixed"), Some("P0"))
        );
        let e = inbound_of(json!({"type": "revoke", "revoke": {"original_message_id": "P0"}}));
        let m = inbound(&e);
        assert_eq!(
            (m.text.as_deref(), m.original_message_id.as_deref()),
            (None, Some("P0"))
        );
        for (body, kind, text) in [
            (
                json!({"type": "button", "button": {"text": "Yes", "payload": "y"}}),
                "button",
                Some("Yes"),
            ),
            (
                json!({"type": "interactive", "interactive": {"type": "list_reply",
                "list_reply": {"id": "1", "title": "Two"}}}),
                "interactive",
                Some("Two"),
            ),
            (
                json!({"type": "reaction", "reaction": {"emoji": "👍", "message_id": "P9"}}),
                "reaction",
                Some("👍"),
            ),
            (
                json!({"type": "text", "text": "plain"}),
                "text",
                Some("plain"),
            ),
            (
                json!({"type": "contacts", "contacts": []}),
                "contacts",
                None,
            ),
            (json!({}), "unsupported", None),
        ] {
            let e = inbound_of(body.clone());
            let m = inbound(&e);
            assert_eq!(
                (m.message_type.as_str(), m.text.as_deref()),
                (kind, text),
                "{body}"
            );
        }
        // A user known only by a business-scoped user id.
        let doc = json!({"data": {"event_type": "message.received", "payload": {"id": "P2",
            "type": "WHATSAPP", "to": "+15551234567",
            "body": {"type": "text", "text": {"body": "hi"}, "from_user_id": "US.13491208655302741918"}}}});
        let e = run(doc.to_string().as_bytes())
            .expect("normalize")
            .events
            .remove(0);
        assert_eq!(e.channel_value, "US.13491208655302741918");
        assert_eq!(
            e.channel_user.user_id.as_deref(),
            Some("US.13491208655302741918")
        );
        // A WhatsApp delivery update.
        let mut body: Value = serde_json::from_slice(&fixture("message_sent.json")).expect("json");
        body["data"]["event_type"] = json!("message.read");
        body["data"]["payload"]["type"] = json!("WHATSAPP");
        body["data"]["payload"]["to"][0]["status"] = json!("read");
        body["data"]["payload"]["biz_opaque_callback_data"] = json!("order_12345_confirmation");
        let e = run(body.to_string().as_bytes())
            .expect("normalize")
            .events
            .remove(0);
        assert_eq!(
            (e.channel, status(&e).status),
            (Channel::Whatsapp, Status::Seen)
        );
        assert_eq!(
            e.correlation["biz_opaque_callback_data"],
            "order_12345_confirmation"
        );
    }

    #[test]
    fn other_events_and_channels_are_not_delivered() {
        for name in ["rcs_finalized.json", "rcs_read.json"] {
            let out = run(&fixture(name)).expect("normalize");
            assert!(out.events.is_empty(), "{name}");
            assert_eq!(out.unparsed.len(), 1);
            assert!(
                out.unparsed[0].reason.contains("RCS"),
                "{}",
                out.unparsed[0].reason
            );
            assert_eq!(out.unparsed[0].raw.as_bytes(), fixture(name), "{name}");
        }
        let call = br#"{"data":{"event_type":"call.initiated","id":"c1","payload":{"call_control_id":"v3:x"},"record_type":"event"}}"#;
        let out = run(call).expect("normalize");
        assert!(out.events.is_empty() && out.unparsed.is_empty());
        assert!(matches!(out.control, Some(Control::Ignored { .. })));
        let echo = br#"{"data":{"event_type":"message.echo","id":"e1","payload":{"id":"m","type":"WHATSAPP","to":"+1555"},"record_type":"event"}}"#;
        let out = run(echo).expect("normalize");
        let Some(Control::Ignored { reason }) = out.control else {
            panic!("ignored expected")
        };
        assert!(reason.contains("message.echo e1"), "{reason}");
        let future = br#"{"data":{"event_type":"message.teleported","id":"e1","payload":{}}}"#;
        let out = run(future).expect("kept");
        assert_eq!((out.events.len(), out.unparsed.len()), (0, 1));
    }

    #[test]
    fn malformed_input_is_an_error() {
        let cases: &[&[u8]] = &[
            b"",
            b" ",
            b"{\"data\":",
            b"[]",
            b"{}",
            b"{\"data\":[]}",
            b"{\"data\":{}}",
            b"{\"data\":{\"event_type\":7}}",
            b"{\"data\":{\"event_type\":\"message.sent\"}}",
            b"{\"data\":{\"event_type\":\"message.sent\",\"payload\":{\"to\":[]}}}",
            b"{\"data\":{\"event_type\":\"message.sent\",\"payload\":{\"id\":\"m\"}}}",
            b"{\"data\":{\"event_type\":\"message.sent\",\"payload\":{\"id\":\"m\",\"to\":\"+1\"}}}",
            b"{\"data\":{\"event_type\":\"message.sent\",\"occurred_at\":\"soon\",\"payload\":{\"id\":\"m\",\"to\":[]}}}",
            b"{\"data\":{\"event_type\":\"message.received\",\"payload\":{\"id\":\"m\"}}}",
            b"{\"data\":{\"event_type\":\"message.received\",\"payload\":{\"from\":{\"phone_number\":\"+1\"}}}}",
            b"\xff\xfe\x00garbage",
        ];
        for body in cases {
            assert!(run(body).is_err(), "{:?}", String::from_utf8_lossy(body));
        }
        let good = fixture("message_sent.json");
        let text = CallbackRequest::post(good.clone()).with_content_type("text/plain");
        assert!(matches!(
            normalize(&text, &CTX),
            Err(NormalizeError::UnsupportedContentType { .. })
        ));
        let mut get = CallbackRequest::post(good.clone());
        get.method = Method::GET;
        assert!(matches!(
            normalize(&get, &CTX),
            Err(NormalizeError::UnsupportedMethod { .. })
        ));
        assert!(
            normalize(&CallbackRequest::post(good), &CTX).is_ok(),
            "no content type"
        );
        assert!(run(&vec![b'{'; 10 * 1024 * 1024]).is_err());
    }

    #[test]
    fn a_body_beyond_the_limits_is_kept_whole() {
        let deep = format!(
            r#"{{"data":{{"event_type":"message.sent","x":{}{}}}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let out = run(deep.as_bytes()).expect("kept");
        assert!(out.events.is_empty());
        assert_eq!(out.unparsed.len(), 1);
        assert_eq!(out.unparsed[0].raw, deep);
        assert!(run(&deep.as_bytes()[..deep.len() - 2]).is_err());
    }

    #[test]
    fn mutated_bodies_never_panic() {
        // Every fixture, cut and with bytes replaced (a fixed pseudo-random sequence), through
        // the normalizer and a verifier of each kind: errors are fine, panics are not.
        let dir = format!("{}/tests/fixtures/telnyx", env!("CARGO_MANIFEST_DIR"));
        let mut bodies: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .expect("fixtures")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json" || x == "txt"))
            .filter(|p| !p.to_string_lossy().ends_with(".source.txt"))
            .map(|p| std::fs::read(p).expect("read"))
            .collect();
        bodies.sort();
        let v = vector();
        let verifiers = [verifier(&v.key)];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let specials = b"{}[]\",:0-9eE.\\ \x00\xff";
        for body in &bodies {
            // Ed25519 checks are slow in debug builds: fewer rounds than other providers.
            for round in 0..40 {
                let mut m = body.clone();
                let len = m.len().max(1);
                match round % 3 {
                    0 => m.truncate(usize::try_from(next()).unwrap_or(0) % len),
                    _ => {
                        for _ in 0..=(round % 5) {
                            let at = usize::try_from(next()).unwrap_or(0) % len;
                            let pick = usize::try_from(next()).unwrap_or(0) % specials.len();
                            if let Some(b) = m.get_mut(at) {
                                *b = specials[pick];
                            }
                        }
                    }
                }
                let req = signed(&m, &v.sig, "1700000000");
                let _ = normalize(&req, &CTX);
                for v in &verifiers {
                    let _ = v.verify(&req, &at(1_700_000_000));
                }
            }
        }
    }
}
