//! Mailjet Event API webhooks (email delivery and engagement) and Parse API inbound email.
//!
//! # Callback format
//!
//! `POST`, `Content-Type: application/json`. Two kinds of callback reach a Mailjet route:
//!
//! - **Event API**: one event object per request (the default, "Version 1"), or, when
//!   "Group events" is checked (`eventcallbackurl` `Version: 2`), a **JSON array** of event
//!   objects, of mixed types, grouped per second. The discriminator is `event`: `sent`,
//!   `open`, `click`, `bounce`, `blocked`, `spam`, `unsub` (matched case-insensitively).
//!   An array element that is beyond the [`limits`](crate::limits), is not an object, or
//!   lacks what its event needs is kept as an [`Unparsed`] event with its JSON text (and
//!   `[element]` as the body to replay), and the rest of the batch is normalized. A single
//!   event object that cannot be normalized refuses its callback (Mailjet retries it); one
//!   beyond the limits is kept whole as unparsed.
//! - **Parse API**: an object without `event` and with the inbound email's fields
//!   (`Sender`, `Recipient`, `From`, `Subject`, `Headers`, `Parts`, `Text-part`,
//!   `Html-part`, attachments as `AttachmentN` base64 fields) is an inbound email.
//!
//! Anything else (a string, a number, invalid JSON) is a [`NormalizeError`].
//!
//! ## Event API fields
//!
//! - The recipient (`channel_value`) is `email`, as sent. Every documented event needs it;
//!   an event of an unknown type without it has `channel_value: ""`.
//! - The event time is `time` (Unix seconds); absent means the receive time.
//! - `vendor_ack_id` is `MessageID`, the id the Send API (v3 and v3.1) returns for each
//!   recipient. It exceeds 2^53, so it is read as the exact integer text of the JSON number
//!   (never through a float): a `MessageID` that is not an integer (`1.9e16`, or one too large
//!   for 64 bits, which a JSON parser can only hold as a float) is refused as invalid rather
//!   than rounded. A string `MessageID` is taken as it is. Without `MessageID`, the
//!   deprecated `mj_message_id` (the same id as a string; Mailjet's older grouped samples
//!   have only this one) is the id.
//! - Correlation ids, under their own names when non-empty: `CustomID` and `Payload` (set at
//!   send time with `Mj-CustomID` / `Mj-EventPayload`, or `CustomID` / `EventPayload` in
//!   Send API v3.1), `Message_GUID` (the `MessageUUID` the Send API v3.1 returned) and
//!   `customcampaign` (the `X-Mailjet-Campaign` header of the send). `Payload` is kept as
//!   the text Mailjet sends, not parsed.
//! - Bounce and blocked errors: `{code: error, message: comment}` (`error` is a value of
//!   Mailjet's error table, such as `user unknown`; `comment` is the raw SMTP text, on
//!   bounces). `error_related_to` stays in `vendor_response`.
//! - Idempotency key: Mailjet sends no event id, so the key is built from `event`, the
//!   message id, `email`, `time` and, for clicks, `url`: a retry of the same event has the
//!   same key.
//!
//! ## Parse API fields
//!
//! An inbound email becomes an inbound message on channel `email` with type `email`:
//! `from` (also the `channel_value`) is the address of `From` (`Pilot <pilot@mailjet.com>`
//! gives `pilot@mailjet.com`), else `Sender` (the envelope sender); `to` is `Recipient`
//! (the Parse API address the mail was sent to); text is `Text-part` (the subject and
//! `Html-part` stay in `vendor_response`); `source_message_id` and `vendor_ack_id` are the
//! `Message-ID` header without its angle brackets (`""` and none when absent). The time is
//! the `Date` header (RFC 2822, an inconsistent weekday ignored), else the receive time: the
//! top-level `Date` (`20150410T160638`) has no zone in it, and Mailjet does not document one.
//! Header values are read whether Mailjet sends them as strings or as arrays of strings.
//! Each part whose `ContentRef` is `AttachmentN` or `InlineAttachmentN` is a `media` entry
//! with its content type, file name (`Content-Disposition` `filename`, else `Content-Type`
//! `name`) and size (of its base64 content, decoded), and no URL: the bytes are posted
//! inline. `CustomID` and `Payload` (returned when the mail answers one sent with them) are
//! correlation ids. The idempotency key is the `Message-ID` with `Recipient`, else a hash of
//! the whole body.
//!
//! # Signature
//!
//! Mailjet signs nothing. Its documentation recommends HTTP Basic credentials in the
//! webhook URL (`https://user:pass@host/…`), which Mailjet sends as `Authorization: Basic …`.
//! They are mandatory here and compared in constant time (on SHA-256 digests, so the length
//! is not revealed either). There is no timestamp, so no clock check.
//!
//! # Verify keys
//!
//! | key | value |
//! |---|---|
//! | `basic_auth` | `user:password`, compared with the `Authorization: Basic …` header (required) |
//!
//! # Status mapping
//!
//! | Mailjet `event` | status | notes |
//! |---|---|---|
//! | `sent` | `delivered` | the recipient's mail server accepted the message |
//! | `open` | `seen` | |
//! | `click` | `clicked` | |
//! | `bounce`, `hard_bounce: true` | `bounced` | "true if error was permanent": the address is bad; error `{error, comment}` |
//! | `bounce`, `hard_bounce` not `true`, `error: greylisted` | `queued` | informational: Mailjet's error table says "Delivery will be re-attempted" |
//! | `bounce`, `hard_bounce` not `true`, any other `error` | `failed` | not delivered, but not a permanent verdict on the address (quota exceeded, a refusing relay, content or policy blocks, system issues); error `{error, comment}` |
//! | `blocked` | `failed` | Mailjet did not send it (preblocked, duplicate in campaign, a template error, …); error `{error}` |
//! | `spam` | `complained` | |
//! | `unsub` | `unsubscribed` | |
//! | any other `event` | `queued` | informational: the documented fallback for unknown values |

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use crate::event::{ChannelUser, idempotency_key, idempotency_key_of_value};
use crate::limits::JsonLimits;
use crate::provider::basic_auth::BasicAuth;
use crate::provider::batch_element;
use crate::provider::{Context, Normalized, Unparsed, VerifyOptions, VerifySettings};
use crate::{
    CallbackRequest, Channel, ErrorInfo, Event, EventKind, InboundMessage, Media, NormalizeError,
    Status, StatusUpdate, VerifyConfigError, VerifyError, timestamp,
};

/// Provider id.
const PROVIDER: &str = "mailjet";
/// Keys of the `verify:` block.
const KNOWN_KEYS: &[&str] = &["basic_auth"];
/// Correlation ids of an event, kept under their own names when non-empty.
const EVENT_CORRELATION: &[&str] = &["CustomID", "Payload", "Message_GUID", "customcampaign"];
/// Correlation ids of an inbound email.
const INBOUND_CORRELATION: &[&str] = &["CustomID", "Payload"];
/// Fields that make an object without `event` a Parse API inbound email.
const INBOUND_FIELDS: &[&str] = &[
    "Sender",
    "Recipient",
    "From",
    "Headers",
    "Parts",
    "Text-part",
];

/// Checks Mailjet's HTTP Basic credentials (Mailjet signs nothing).
#[derive(Debug, Clone)]
pub struct Verifier {
    basic_auth: BasicAuth,
}

impl Verifier {
    /// Builds the verifier from the `verify:` settings: `basic_auth` (`user:password`) is
    /// required, and no other key is known.
    pub fn from_settings(settings: &VerifySettings) -> Result<Self, VerifyConfigError> {
        settings.only(PROVIDER, KNOWN_KEYS)?;
        Ok(Self {
            basic_auth: BasicAuth::required(PROVIDER, settings)?,
        })
    }

    /// Checks the `Authorization: Basic …` header. Mailjet sends no timestamp, so `opts`
    /// has nothing to check.
    pub fn verify(&self, req: &CallbackRequest, _opts: &VerifyOptions) -> Result<(), VerifyError> {
        self.basic_auth.check(req)
    }
}

/// Normalizes one Mailjet callback: an event, a batch of events (every element one event,
/// or an [`Unparsed`] one), or a Parse API inbound email.
pub fn normalize(req: &CallbackRequest, ctx: &Context) -> Result<Normalized, NormalizeError> {
    req.expect_content_type(PROVIDER, &["application/json"], "application/json")?;
    let text = std::str::from_utf8(&req.body).ok();
    let first = text.and_then(|t| {
        t.trim_start_matches([' ', '\t', '\n', '\r'])
            .as_bytes()
            .first()
            .copied()
    });
    match (text, first) {
        (Some(text), Some(b'[')) => {
            if let Ok(elements) = serde_json::from_str::<Vec<&RawValue>>(text) {
                return Ok(batch(&elements, ctx));
            }
        }
        (Some(text), Some(b'{')) => return single(text, ctx),
        _ => {}
    }
    // Not an array or an object: the body's own error (empty, not JSON), else its shape.
    req.json()?;
    Err(NormalizeError::shape(
        "",
        "a Mailjet event object, an array of events, or a Parse API email",
    ))
}

/// A grouped batch: each element an event, or unparsed with the reason.
fn batch(elements: &[&RawValue], ctx: &Context) -> Normalized {
    let mut out = Normalized::events(Vec::with_capacity(elements.len()));
    for (i, element) in elements.iter().enumerate() {
        let text = element.get();
        let normalized = batch_element(text, |item| event_of(&format!("/{i}"), item, ctx));
        match normalized {
            Ok(event) => out.events.push(event),
            // Alone, the element is a grouped Mailjet body of its own: `[element]`.
            Err(reason) => out
                .unparsed
                .push(Unparsed::new(reason, text).with_body(format!("[{text}]"))),
        }
    }
    out
}

/// One object: an event or an inbound email (kept whole when beyond the limits).
fn single(text: &str, ctx: &Context) -> Result<Normalized, NormalizeError> {
    if let Err(exceeded) = JsonLimits::default().check(text.as_bytes()) {
        // Validated without being built: serde_json's skipping parser has no depth limit.
        if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
            return Ok(Normalized::one_unparsed(Unparsed::new(exceeded, text)));
        }
    }
    let body: Value =
        serde_json::from_str(text).map_err(|source| NormalizeError::InvalidJson { source })?;
    let Some(obj) = body.as_object() else {
        return Err(NormalizeError::shape("", "a JSON object"));
    };
    if obj.contains_key("event") {
        return Ok(Normalized::events(vec![event_of("", body, ctx)?]));
    }
    if INBOUND_FIELDS.iter().any(|k| obj.contains_key(*k)) {
        return Ok(Normalized::events(vec![inbound(body, ctx)?]));
    }
    Err(NormalizeError::MissingField("event".into()))
}

/// What a Mailjet `event` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mapping {
    status: Status,
    informational: bool,
    /// A documented event (these require `email`).
    known: bool,
}

/// Maps `event` (and a bounce's `hard_bounce` and `error`); see the module table.
fn map_event(name: &str, obj: &Map<String, Value>) -> Mapping {
    let m = |status, informational| Mapping {
        status,
        informational,
        known: true,
    };
    match name.to_ascii_lowercase().as_str() {
        "sent" => m(Status::Delivered, false),
        "open" => m(Status::Seen, false),
        "click" => m(Status::Clicked, false),
        "bounce" => {
            let greylisted = obj
                .get("error")
                .and_then(Value::as_str)
                .is_some_and(|e| e.trim().eq_ignore_ascii_case("greylisted"));
            if obj.get("hard_bounce") == Some(&Value::Bool(true)) {
                m(Status::Bounced, false)
            } else if greylisted {
                m(Status::Queued, true)
            } else {
                m(Status::Failed, false)
            }
        }
        "blocked" => m(Status::Failed, false),
        "spam" => m(Status::Complained, false),
        "unsub" => m(Status::Unsubscribed, false),
        _ => Mapping {
            status: Status::Queued,
            informational: true,
            known: false,
        },
    }
}

/// Normalizes one Event API event; `path` locates it in its body (`/3`, or `` alone).
fn event_of(path: &str, item: Value, ctx: &Context) -> Result<Event, NormalizeError> {
    let Some(obj) = item.as_object() else {
        return Err(NormalizeError::shape(path, "an event object"));
    };
    let name = match obj.get("event") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            return Err(NormalizeError::MissingField(format!("{path}/event")));
        }
        Some(_) => {
            return Err(NormalizeError::invalid(
                format!("{path}/event"),
                "not a string",
            ));
        }
    };
    let mapping = map_event(&name, obj);
    let email = match obj.get("email") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
        None | Some(Value::Null) | Some(Value::String(_)) if !mapping.known => String::new(),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            return Err(NormalizeError::MissingField(format!("{path}/email")));
        }
        Some(_) => {
            return Err(NormalizeError::invalid(
                format!("{path}/email"),
                "not a string",
            ));
        }
    };
    let (time_text, timestamp_ms) = match obj.get("time") {
        None | Some(Value::Null) => (String::new(), ctx.received_at_ms),
        Some(v) => {
            let ms = unix_time_ms(v).ok_or_else(|| {
                NormalizeError::invalid(format!("{path}/time"), "not a Unix timestamp")
            })?;
            (ms.to_string(), ms)
        }
    };
    let message_id = message_id(obj, path)?;
    let error = matches!(mapping.status, Status::Failed | Status::Bounced)
        .then(|| ErrorInfo::from_parts(text(obj, "error"), text(obj, "comment")))
        .flatten();
    let key = idempotency_key(
        PROVIDER,
        &[
            &name.to_ascii_lowercase(),
            message_id.as_deref().unwrap_or(""),
            &email,
            &time_text,
            &text(obj, "url").unwrap_or_default(),
        ],
    );
    Ok(Event {
        channel: Channel::Email,
        channel_value: email,
        channel_user: ChannelUser::default(),
        vendor_name: PROVIDER.to_owned(),
        vendor_ack_id: message_id,
        idempotency_key: key,
        correlation: correlation(obj, EVENT_CORRELATION),
        kind: EventKind::Status(StatusUpdate {
            status: mapping.status,
            timestamp_ms,
            error,
            informational: mapping.informational,
        }),
        raw: item.into(),
    })
}

/// The message id: `MessageID` as its exact integer text (or as sent, when a string),
/// else `mj_message_id`. A `MessageID` the parser could only hold as a float is refused.
fn message_id(obj: &Map<String, Value>, path: &str) -> Result<Option<String>, NormalizeError> {
    match obj.get("MessageID") {
        // serde_json keeps an integer that fits 64 bits as one: its text is exact.
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(Some(n.to_string())),
        Some(Value::Number(_)) => Err(NormalizeError::invalid(
            format!("{path}/MessageID"),
            "not a 64-bit integer (its digits would be lost)",
        )),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_owned())),
        None | Some(Value::Null) | Some(Value::String(_)) => Ok(text(obj, "mj_message_id")),
        Some(_) => Err(NormalizeError::invalid(
            format!("{path}/MessageID"),
            "not a number",
        )),
    }
}

/// Unix seconds (a number or a string of digits) in epoch ms.
fn unix_time_ms(v: &Value) -> Option<i64> {
    match v {
        Value::Number(_) => timestamp::value_to_ms(v),
        // Timestamps are ASCII; anything else is rejected before the text parsers see it.
        Value::String(s) if s.is_ascii() => timestamp::parse_str_ms(s),
        _ => None,
    }
}

/// A Parse API inbound email.
fn inbound(body: Value, ctx: &Context) -> Result<Event, NormalizeError> {
    let Some(obj) = body.as_object() else {
        return Err(NormalizeError::shape("", "a JSON object"));
    };
    let headers = obj.get("Headers").and_then(Value::as_object);
    let from = text(obj, "From")
        .or_else(|| header(headers, "From"))
        .and_then(|f| first_address(&f))
        .or_else(|| text(obj, "Sender").and_then(|s| first_address(&s)))
        .ok_or_else(|| NormalizeError::MissingField("From".into()))?;
    let to = text(obj, "Recipient")
        .map(|r| r.trim().to_owned())
        .unwrap_or_default();
    let message_id = header(headers, "Message-ID")
        .map(|m| strip_angle(&m))
        .filter(|m| !m.is_empty());
    let timestamp_ms = header(headers, "Date")
        .and_then(|d| mail_date_ms(&d))
        .unwrap_or(ctx.received_at_ms);
    let key = match &message_id {
        Some(id) => idempotency_key(PROVIDER, &["inbound", id, &to]),
        None => idempotency_key_of_value(PROVIDER, &body),
    };
    let message = InboundMessage {
        from: from.clone(),
        to,
        message_type: "email".into(),
        text: raw_text(obj, "Text-part"),
        media: attachments(obj),
        location: None,
        context: None,
        timestamp_ms,
        source_message_id: message_id.clone().unwrap_or_default(),
        original_message_id: None,
    };
    Ok(Event {
        channel: Channel::Email,
        channel_value: from,
        channel_user: ChannelUser::default(),
        vendor_name: PROVIDER.to_owned(),
        vendor_ack_id: message_id,
        idempotency_key: key,
        correlation: correlation(obj, INBOUND_CORRELATION),
        kind: EventKind::Inbound(message),
        raw: body.into(),
    })
}

/// The attachments (`AttachmentN`, `InlineAttachmentN` parts) as media without a URL.
fn attachments(obj: &Map<String, Value>) -> Vec<Media> {
    let Some(parts) = obj.get("Parts").and_then(Value::as_array) else {
        return Vec::new();
    };
    parts
        .iter()
        .filter_map(|part| {
            let part = part.as_object()?;
            let content_ref = part.get("ContentRef")?.as_str()?;
            if !(content_ref.starts_with("Attachment")
                || content_ref.starts_with("InlineAttachment"))
            {
                return None;
            }
            let headers = part.get("Headers").and_then(Value::as_object);
            let content_type = header(headers, "Content-Type");
            let disposition = header(headers, "Content-Disposition");
            let name = disposition
                .as_deref()
                .and_then(|d| header_param(d, "filename"))
                .or_else(|| {
                    content_type
                        .as_deref()
                        .and_then(|c| header_param(c, "name"))
                });
            let content_type = content_type
                .as_deref()
                .and_then(|c| c.split(';').next())
                .map(|c| c.trim().to_ascii_lowercase())
                .filter(|c| !c.is_empty());
            let size = obj
                .get(content_ref)
                .and_then(Value::as_str)
                .and_then(base64_decoded_len);
            Some(Media {
                url: String::new(),
                content_type,
                name,
                size,
            })
        })
        .collect()
}

/// A header of a `Headers` object, found case-insensitively: a string, or the first string
/// of an array (Mailjet sends most headers as arrays of their lines).
fn header(headers: Option<&Map<String, Value>>, name: &str) -> Option<String> {
    let value = headers?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)?;
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => items.iter().find_map(|v| v.as_str().map(str::to_owned)),
        _ => None,
    }
    .filter(|s| !s.trim().is_empty())
}

/// A parameter of a header value (`attachment; filename="a.txt"` → `a.txt`).
fn header_param(value: &str, name: &str) -> Option<String> {
    value
        .split(';')
        .skip(1)
        .find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim().eq_ignore_ascii_case(name).then(|| {
                v.trim()
                    .trim_start_matches('"')
                    .trim_end_matches('"')
                    .to_owned()
            })
        })
        .filter(|v| !v.is_empty())
}

/// The decoded length of base64 text (whitespace ignored); `None` when it is not base64.
fn base64_decoded_len(text: &str) -> Option<u64> {
    let mut chars = 0u64;
    let mut padding = 0u64;
    for b in text.bytes().filter(|b| !b.is_ascii_whitespace()) {
        match b {
            b'=' => padding += 1,
            _ if padding > 0 => return None,
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' => chars += 1,
            _ => return None,
        }
    }
    let total = chars + padding;
    if padding > 2 || !total.is_multiple_of(4) {
        return None;
    }
    Some(total / 4 * 3 - padding)
}

/// `<id@host>` → `id@host`.
fn strip_angle(s: &str) -> String {
    let s = s.trim();
    s.strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(s)
        .trim()
        .to_owned()
}

/// The first address of a header value: `Pilot <pilot@mailjet.com>, …` →
/// `pilot@mailjet.com`.
fn first_address(s: &str) -> Option<String> {
    let s = s.trim();
    let addr = match (s.find('<'), s.find('>')) {
        (Some(l), Some(r)) if l < r => s.get(l + 1..r).unwrap_or(""),
        _ => s.split(',').next().unwrap_or(""),
    };
    let addr = addr.trim();
    (!addr.is_empty()).then(|| addr.to_owned())
}

/// Parses an email `Date` header (RFC 2822), ignoring an inconsistent weekday.
fn mail_date_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    if !text.is_ascii() {
        return None;
    }
    if let Some(ms) = timestamp::parse_str_ms(text) {
        return Some(ms);
    }
    let (_weekday, rest) = text.split_once(',')?;
    OffsetDateTime::parse(rest.trim(), &Rfc2822)
        .ok()
        .map(timestamp::to_ms)
}

/// The non-empty string fields `keys` of `obj`, under their own names.
fn correlation(obj: &Map<String, Value>, keys: &[&str]) -> Map<String, Value> {
    keys.iter()
        .filter_map(|k| match obj.get(*k) {
            Some(Value::String(s)) if !s.trim().is_empty() => {
                Some(((*k).to_owned(), Value::String(s.clone())))
            }
            _ => None,
        })
        .collect()
}

/// A string or number field as text; empty strings count as absent.
fn text(obj: &Map<String, Value>, key: &str) -> Option<String> {
    match obj.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A string field as given (user text is kept verbatim; only the empty string is absent).
fn raw_text(obj: &Map<String, Value>, key: &str) -> Option<String> {
    match obj.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use http::{HeaderName, HeaderValue};
    use serde_json::json;

    const SENT: &[u8] = include_bytes!("../../tests/fixtures/mailjet/sent.json");
    const OPEN: &[u8] = include_bytes!("../../tests/fixtures/mailjet/open.json");
    const CLICK: &[u8] = include_bytes!("../../tests/fixtures/mailjet/click.json");
    const BOUNCE: &[u8] = include_bytes!("../../tests/fixtures/mailjet/bounce.json");
    const BLOCKED: &[u8] = include_bytes!("../../tests/fixtures/mailjet/blocked.json");
    const SPAM: &[u8] = include_bytes!("../../tests/fixtures/mailjet/spam.json");
    const UNSUB: &[u8] = include_bytes!("../../tests/fixtures/mailjet/unsub.json");
    const BATCH: &[u8] = include_bytes!("../../tests/fixtures/mailjet/batch_grouped.json");
    const BATCH_LEGACY: &[u8] =
        include_bytes!("../../tests/fixtures/mailjet/batch_grouped_legacy.json");
    const PARSE: &[u8] = include_bytes!("../../tests/fixtures/mailjet/parse_inbound.json");
    const PARSE_ARRAYS: &[u8] =
        include_bytes!("../../tests/fixtures/mailjet/parse_inbound_header_arrays.json");
    const PARSE_ATTACHMENTS: &[u8] =
        include_bytes!("../../tests/fixtures/mailjet/parse_attachments_fragment.json");

    const CTX: Context = Context {
        received_at_ms: 1_700_000_000_000,
    };

    fn run(body: &[u8]) -> Result<Normalized, NormalizeError> {
        normalize(
            &CallbackRequest::post(body.to_vec()).with_content_type("application/json"),
            &CTX,
        )
    }

    fn one(body: &[u8]) -> Event {
        let mut out = run(body).expect("normalize");
        assert_eq!(out.events.len(), 1, "{out:?}");
        assert!(out.unparsed.is_empty());
        out.events.remove(0)
    }

    fn status(e: &Event) -> &StatusUpdate {
        e.status().expect("status event")
    }

    fn settings(pairs: &[(&str, &str)]) -> VerifySettings {
        pairs
            .iter()
            .fold(VerifySettings::new(), |s, (k, v)| s.with(*k, *v))
    }

    fn with_auth(value: &[u8]) -> CallbackRequest {
        let mut req = CallbackRequest::post(SENT.to_vec()).with_content_type("application/json");
        req.headers.insert(
            HeaderName::from_static("authorization"),
            HeaderValue::from_bytes(value).expect("header"),
        );
        req
    }

    fn basic(user_pass: &str) -> String {
        format!("Basic {}", STANDARD.encode(user_pass))
    }

    #[test]
    fn basic_auth_verifies() {
        let v =
            Verifier::from_settings(&settings(&[("basic_auth", "mj:s3cr:et")])).expect("verifier");
        let opts = VerifyOptions::default();
        v.verify(&with_auth(basic("mj:s3cr:et").as_bytes()), &opts)
            .expect("valid credentials");
        for wrong in ["mj:s3cr:eT", "mj:", "mj:s3cr:et ", "other:s3cr:et"] {
            assert!(
                matches!(
                    v.verify(&with_auth(basic(wrong).as_bytes()), &opts),
                    Err(VerifyError::BadCredentials)
                ),
                "{wrong}"
            );
        }
        let missing = CallbackRequest::post(SENT.to_vec());
        assert!(matches!(
            v.verify(&missing, &opts),
            Err(VerifyError::Missing(_))
        ));
        for bad in ["Bearer abc", "Basic !!!", "bWo6czNjcjpldA=="] {
            assert!(
                matches!(
                    v.verify(&with_auth(bad.as_bytes()), &opts),
                    Err(VerifyError::Malformed(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn settings_fail_closed() {
        for s in [VerifySettings::new(), settings(&[("basic_auth", "")])] {
            assert!(matches!(
                Verifier::from_settings(&s),
                Err(VerifyConfigError::Missing {
                    key: "basic_auth",
                    ..
                })
            ));
        }
        for bad in ["no-colon", ":pass", "user:"] {
            assert!(matches!(
                Verifier::from_settings(&settings(&[("basic_auth", bad)])),
                Err(VerifyConfigError::Invalid { .. })
            ));
        }
        for extra in ["header", "secret", "public_key"] {
            assert!(matches!(
                Verifier::from_settings(&settings(&[("basic_auth", "u:p"), (extra, "x")])),
                Err(VerifyConfigError::Unknown { .. })
            ));
        }
        let v = Verifier::from_settings(&settings(&[("basic_auth", "user:hunter2")]))
            .expect("verifier");
        let dbg = format!("{v:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
    }

    #[test]
    fn every_documented_event_maps() {
        let cases: [(&[u8], Status, &str, &str, i64); 7] = [
            (
                SENT,
                Status::Delivered,
                "api@mailjet.com",
                "19421777835146490",
                1_433_333_949_000,
            ),
            (
                OPEN,
                Status::Seen,
                "api@mailjet.com",
                "19421777396190490",
                1_433_103_519_000,
            ),
            (
                CLICK,
                Status::Clicked,
                "api@mailjet.com",
                "19421777836302490",
                1_433_334_653_000,
            ),
            (
                BOUNCE,
                Status::Bounced,
                "bounce@mailjet.com",
                "13792286917004336",
                1_430_812_195_000,
            ),
            (
                BLOCKED,
                Status::Failed,
                "bounce@mailjet.com",
                "13792286917004336",
                1_430_812_195_000,
            ),
            (
                SPAM,
                Status::Complained,
                "bounce@mailjet.com",
                "13792286917004336",
                1_430_812_195_000,
            ),
            (
                UNSUB,
                Status::Unsubscribed,
                "api@mailjet.com",
                "20547674933128000",
                1_433_334_941_000,
            ),
        ];
        for (body, want, email, id, ms) in cases {
            let e = one(body);
            let s = status(&e);
            assert_eq!((s.status, s.informational), (want, false), "{want:?}");
            assert_eq!(s.timestamp_ms, ms);
            assert_eq!(e.channel, Channel::Email);
            assert_eq!(e.channel_value, email);
            assert_eq!(e.vendor_ack_id.as_deref(), Some(id));
            assert_eq!(e.vendor_name, "mailjet");
            assert_eq!(e.correlation["CustomID"], "helloworld");
            assert_eq!(
                e.correlation["Message_GUID"],
                "1ab23cd4-e567-8901-2345-6789f0gh1i2j"
            );
            assert!(!e.correlation.contains_key("Payload"), "empty Payload");
            assert!(!e.correlation.contains_key("customcampaign"));
        }
        assert_eq!(
            status(&one(BOUNCE)).error,
            Some(ErrorInfo {
                code: Some("user unknown".into()),
                message: Some(
                    "Host or domain name not found. Name service error for \
                     name=lbjsnrftlsiuvbsren.com type=A: Host not found"
                        .into()
                ),
            })
        );
        assert_eq!(
            status(&one(BLOCKED)).error,
            Some(ErrorInfo {
                code: Some("user unknown".into()),
                message: None,
            })
        );
        assert!(status(&one(SENT)).error.is_none());
    }

    #[test]
    fn message_ids_beyond_two_to_the_53_stay_exact() {
        // 2^53 + 1 and the largest u64: both would change through an f64.
        for id in [
            "9007199254740993",
            "18446744073709551615",
            "19421777835146491",
        ] {
            let body = format!(r#"{{"event":"sent","email":"a@b.c","MessageID":{id}}}"#);
            let e = one(body.as_bytes());
            assert_eq!(e.vendor_ack_id.as_deref(), Some(id));
            // vendor_response carries the same digits.
            let raw = serde_json::to_string(&e.raw).expect("raw");
            assert!(raw.contains(id), "{raw}");
        }
        // Not an integer, or too large for 64 bits: refused, never rounded.
        for id in [
            "1.9421777835146491e16",
            "19421777835146491.0",
            "184467440737095516150",
        ] {
            let body = format!(r#"{{"event":"sent","email":"a@b.c","MessageID":{id}}}"#);
            assert!(
                matches!(
                    run(body.as_bytes()),
                    Err(NormalizeError::InvalidField { .. })
                ),
                "{id}"
            );
        }
        // A string id is kept as sent; without MessageID, mj_message_id is the id.
        let e = one(br#"{"event":"sent","email":"a@b.c","MessageID":"123"}"#);
        assert_eq!(e.vendor_ack_id.as_deref(), Some("123"));
        let e = one(br#"{"event":"sent","email":"a@b.c","mj_message_id":"18858825588804172"}"#);
        assert_eq!(e.vendor_ack_id.as_deref(), Some("18858825588804172"));
        let e = one(br#"{"event":"sent","email":"a@b.c"}"#);
        assert_eq!(e.vendor_ack_id, None);
    }

    #[test]
    fn bounces_by_permanence() {
        let bounce = |hard: Value, error: &str| {
            let body = json!({"event":"bounce","time":1,"MessageID":1,"email":"a@b.c",
                "blocked":false,"hard_bounce":hard,"error_related_to":"domain","error":error});
            status(&one(body.to_string().as_bytes())).clone()
        };
        let hard = bounce(json!(true), "user unknown");
        assert_eq!(hard.status, Status::Bounced);
        let soft = bounce(json!(false), "quota exceeded");
        assert_eq!((soft.status, soft.informational), (Status::Failed, false));
        assert_eq!(
            soft.error.and_then(|e| e.code).as_deref(),
            Some("quota exceeded")
        );
        let grey = bounce(json!(false), "greylisted");
        assert_eq!((grey.status, grey.informational), (Status::Queued, true));
        assert!(grey.error.is_none());
        // Anything but `true` is not a permanent error.
        assert_eq!(bounce(json!("true"), "x").status, Status::Failed);
        assert_eq!(bounce(Value::Null, "x").status, Status::Failed);
    }

    #[test]
    fn unknown_events_fall_back_to_informational_queued() {
        let e = one(br#"{"event":"teleported","time":1433334941,"MessageID":5}"#);
        let s = status(&e);
        assert_eq!((s.status, s.informational), (Status::Queued, true));
        assert_eq!(e.channel_value, "");
        let e = one(br#"{"event":"SENT","email":"a@b.c"}"#);
        assert_eq!(status(&e).status, Status::Delivered, "case-insensitive");
        assert_eq!(status(&e).timestamp_ms, CTX.received_at_ms);
    }

    #[test]
    fn grouped_batches() {
        let out = run(BATCH).expect("normalize");
        assert!(out.unparsed.is_empty());
        let ids: Vec<_> = out
            .events
            .iter()
            .map(|e| e.vendor_ack_id.as_deref().unwrap_or(""))
            .collect();
        assert_eq!(ids, ["19421777835146490", "19421777835146491"]);
        assert_ne!(out.events[0].idempotency_key, out.events[1].idempotency_key);
        let out = run(BATCH_LEGACY).expect("normalize");
        assert_eq!(out.events.len(), 4);
        assert_eq!(
            out.events[0].vendor_ack_id.as_deref(),
            Some("18858825588804172")
        );
        assert_eq!(out.events[0].correlation["customcampaign"], "test");
        assert_eq!(run(b"[]").expect("empty").events.len(), 0);
    }

    #[test]
    fn batch_elements_that_cannot_be_normalized_are_kept() {
        let good = r#"{"event":"open","email":"a@b.c","time":1433103519,"MessageID":1}"#;
        let bad: &[&str] = &[
            "1",
            r#"{"email":"a@b.c"}"#,
            r#"{"event":"open"}"#,
            r#"{"event":"open","email":7}"#,
            r#"{"event":["open"],"email":"a@b.c"}"#,
            r#"{"event":"open","email":"a@b.c","time":"yesterday"}"#,
            r#"{"event":"open","email":"a@b.c","time":-5}"#,
            r#"{"event":"open","email":"a@b.c","MessageID":1.5}"#,
            r#"{"event":"open","email":"a@b.c","MessageID":{}}"#,
        ];
        for element in bad {
            let body = format!("[{good},{element}]");
            let out = run(body.as_bytes()).expect("the batch is accepted");
            assert_eq!(out.events.len(), 1, "{element}");
            assert_eq!(out.unparsed.len(), 1, "{element}");
            assert_eq!(out.unparsed[0].raw, *element);
            assert!(
                out.unparsed[0].reason.contains("/1"),
                "{}",
                out.unparsed[0].reason
            );
            let again = run(out.unparsed[0].replay_body().as_bytes()).expect("a Mailjet body");
            assert_eq!((again.events.len(), again.unparsed.len()), (0, 1));
        }
        // Beyond the limits: kept as text, never parsed.
        let deep = format!(
            r#"{{"event":"open","email":"a@b.c","x":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let long = format!(
            r#"{{"event":"open","email":"a@b.c","x":{}}}"#,
            "7".repeat(500)
        );
        let out = run(format!("[{good},{deep},{long}]").as_bytes()).expect("accepted");
        assert_eq!(out.events.len(), 1);
        let raws: Vec<&str> = out.unparsed.iter().map(|u| u.raw.as_str()).collect();
        assert_eq!(raws, [deep.as_str(), long.as_str()]);
    }

    #[test]
    fn a_single_event_beyond_the_limits_is_kept_whole() {
        let deep = format!(
            r#"{{"event":"open","email":"a@b.c","x":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let out = run(deep.as_bytes()).expect("kept, not refused");
        assert!(out.events.is_empty());
        assert_eq!(out.unparsed.len(), 1);
        assert_eq!(out.unparsed[0].raw, deep);
        // Truncated: not JSON, refused.
        assert!(run(&deep.as_bytes()[..deep.len() - 3]).is_err());
    }

    #[test]
    fn parse_api_inbound_email() {
        let e = one(PARSE);
        assert_eq!(e.channel, Channel::Email);
        assert_eq!(e.channel_value, "pilot@mailjet.com");
        assert_eq!(
            e.vendor_ack_id.as_deref(),
            Some("CAE5Zh0ZpHZ6G5DC+He5426a4RkVab7uWaTDwiMcHzOR=YB3urA@mail.gmail.com")
        );
        assert_eq!(e.correlation["CustomID"], "helloworld");
        assert_eq!(e.correlation["Payload"], "{'message': 'helloworld'}");
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound expected")
        };
        assert_eq!(m.from, "pilot@mailjet.com");
        assert_eq!(m.to, "passenger@mailjet.com");
        assert_eq!(m.message_type, "email");
        assert!(
            m.text
                .as_deref()
                .is_some_and(|t| t.starts_with("Hi,\n\nImportant notice"))
        );
        // "Fri, 10 Apr 2015 18:06:38 +0200".
        assert_eq!(m.timestamp_ms, 1_428_681_998_000);
        assert!(m.media.is_empty());
        assert_eq!(
            m.source_message_id,
            "CAE5Zh0ZpHZ6G5DC+He5426a4RkVab7uWaTDwiMcHzOR=YB3urA@mail.gmail.com"
        );

        let e = one(PARSE_ARRAYS);
        assert_eq!(e.channel_value, "from+test@example.org");
        assert!(e.correlation.is_empty());
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound expected")
        };
        assert_eq!(m.to, "test@inbound.example.com");
        assert_eq!(m.text.as_deref(), Some("Test body plain"));
        // "Wed, 11 Oct 2017 18:31:04 -0700".
        assert_eq!(m.timestamp_ms, 1_507_771_864_000);
        assert_eq!(m.source_message_id, "CAEPk3R+4Zr@mail.example.org");
    }

    #[test]
    fn parse_api_attachments_are_media_without_a_url() {
        let mut body: Value = serde_json::from_slice(PARSE).expect("json");
        let fragment: Value = serde_json::from_slice(PARSE_ATTACHMENTS).expect("json");
        let (Some(b), Some(f)) = (body.as_object_mut(), fragment.as_object()) else {
            panic!("objects expected")
        };
        let mut parts = b["Parts"].as_array().cloned().unwrap_or_default();
        parts.extend(f["Parts"].as_array().cloned().unwrap_or_default());
        parts.push(
            json!({"Headers":{"Content-Type":["image/png; name=\"dot.png\""],
            "Content-Disposition":["inline"]},"ContentRef":"InlineAttachment1"}),
        );
        b.insert("Parts".into(), Value::Array(parts));
        b.insert("Attachment1".into(), f["Attachment1"].clone());
        b.insert("InlineAttachment1".into(), json!("iVBORw0KGgo="));
        let e = one(body.to_string().as_bytes());
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound expected")
        };
        assert_eq!(
            m.media,
            vec![
                Media {
                    url: String::new(),
                    content_type: Some("text/plain".into()),
                    name: Some("helloworld.txt".into()),
                    size: Some(12),
                },
                Media {
                    url: String::new(),
                    content_type: Some("image/png".into()),
                    name: Some("dot.png".into()),
                    size: Some(8),
                },
            ]
        );
        // The fragment alone names no sender: refused.
        assert!(matches!(
            run(PARSE_ATTACHMENTS),
            Err(NormalizeError::MissingField(_))
        ));
    }

    #[test]
    fn inbound_edge_cases() {
        // Only the envelope sender; no Message-ID; no Date header: the receive time.
        let e = one(br#"{"Sender":"bounce+x@example.org","Recipient":"in@parse.example.com","Text-part":""}"#);
        assert_eq!(e.channel_value, "bounce+x@example.org");
        assert_eq!(e.vendor_ack_id, None);
        assert_eq!(e.timestamp_ms(), CTX.received_at_ms);
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound expected")
        };
        assert_eq!(m.text, None);
        assert_eq!(m.source_message_id, "");
        // The same body twice has the same key; another body another.
        let again = one(br#"{"Sender":"bounce+x@example.org","Recipient":"in@parse.example.com","Text-part":""}"#);
        assert_eq!(e.idempotency_key, again.idempotency_key);
        assert_ne!(e.idempotency_key, one(PARSE).idempotency_key);
        // An unreadable Date header is not the event time.
        let e = one(br#"{"From":"a@b.c","Headers":{"Date":"gestern"}}"#);
        assert_eq!(e.timestamp_ms(), CTX.received_at_ms);
        for (text, want) in [
            ("SGVsbG8gV29ybGQh", Some(12)),
            ("SGVsbG8=", Some(5)),
            ("SGVs\nbG8=", Some(5)),
            ("", Some(0)),
            ("SGVsbG8", None),
            ("SGV=sbG8", None),
            ("SGVs bG8gV29y!GQh", None),
        ] {
            assert_eq!(base64_decoded_len(text), want, "{text:?}");
        }
        assert_eq!(
            header_param("attachment; FILENAME=\"a b.txt\"", "filename").as_deref(),
            Some("a b.txt")
        );
        assert_eq!(header_param("attachment", "filename"), None);
    }

    #[test]
    fn non_ascii_survives() {
        let e = one(
            "{\"event\":\"click\",\"email\":\"zoë@例え.jp\",\"url\":\"https://例え.jp/ü\",\"CustomID\":\"Müller ☃\",\"MessageID\":1}"
                .as_bytes(),
        );
        assert_eq!(e.channel_value, "zoë@例え.jp");
        assert_eq!(e.correlation["CustomID"], "Müller ☃");
        let e = one(
            "{\"From\":\"Jörg <jörg@bücher.de>\",\"Recipient\":\"in@example.com\",\"Subject\":\"Größe\",\"Text-part\":\"Grüße 👋 日本語\"}"
                .as_bytes(),
        );
        assert_eq!(e.channel_value, "jörg@bücher.de");
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound expected")
        };
        assert_eq!(m.text.as_deref(), Some("Grüße 👋 日本語"));
    }

    #[test]
    fn idempotency_keys() {
        assert_eq!(one(SENT).idempotency_key, one(SENT).idempotency_key);
        let keys: Vec<String> = [SENT, OPEN, CLICK, BOUNCE, BLOCKED, SPAM, UNSUB]
            .iter()
            .map(|b| one(b).idempotency_key)
            .collect();
        let mut unique = keys.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), keys.len());
        let click = |url: &str| {
            one(
                json!({"event":"click","email":"a@b.c","time":1,"MessageID":1,"url":url})
                    .to_string()
                    .as_bytes(),
            )
            .idempotency_key
        };
        assert_ne!(click("https://a"), click("https://b"));
    }

    #[test]
    fn malformed_input_is_an_error() {
        let cases: &[&[u8]] = &[
            b"",
            b" \n",
            b"{\"event\":\"sent\"",
            b"\"sent\"",
            b"42",
            b"null",
            b"{}",
            b"{\"email\":\"a@b.c\"}",
            b"{\"event\":\"sent\"}",
            b"{\"event\":5,\"email\":\"a@b.c\"}",
            b"{\"event\":\"sent\",\"email\":\"a@b.c\",\"time\":{}}",
            b"{\"event\":\"sent\",\"email\":\"a@b.c\",\"time\":\"x\xc3\xa9aaaa\"}",
            b"{\"Subject\":\"no sender\",\"Parts\":[]}",
            b"[{\"event\":\"sent\"",
            b"\xff\xfe\x00garbage",
            b"[\xff]",
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
        // No content type: Mailjet's JSON is assumed.
        assert!(normalize(&CallbackRequest::post(SENT.to_vec()), &CTX).is_ok());
        let garbage = vec![b'{'; 1024 * 1024];
        assert!(run(&garbage).is_err());
        let nested = format!("[{}{}]", "[".repeat(100_000), "]".repeat(100_000));
        let out = run(nested.as_bytes()).expect("an array holding one non-event");
        assert_eq!((out.events.len(), out.unparsed.len()), (0, 1));
    }

    #[test]
    fn mutated_bodies_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for base in [SENT, BOUNCE, BATCH, PARSE, PARSE_ARRAYS] {
            for _ in 0..400 {
                let mut body = base.to_vec();
                for _ in 0..(next() % 4 + 1) {
                    let len = body.len().max(1) as u64;
                    let i = usize::try_from(next() % len).unwrap_or(0);
                    let byte = b"{}[]\",:0123456789.eE-tnfx\\ \xff"
                        [usize::try_from(next() % 28).unwrap_or(0)];
                    match next() % 3 {
                        0 if i < body.len() => body[i] = byte,
                        1 if i < body.len() => {
                            body.remove(i);
                        }
                        _ => body.insert(i.min(body.len()), byte),
                    }
                }
                let _ = run(&body);
            }
        }
    }
}
