// One file, about 770 lines before the tests, a hundred of them the module docs. The
// signature check, `token` (for the caller's replay cache) and normalization all start
// from the same two steps, telling JSON from a form (URL-encoded or multipart) and finding
// the `timestamp`, `token` and `signature` fields in it, and the JSON and form formats
// share one status table; the sections below (body kind and signature fields, status
// mapping, JSON webhooks, legacy form webhooks and Routes forwards, addresses) read top to
// bottom, and a split would leave that shared reading in a third file both halves import.
// Multipart framing itself is `crate::multipart`'s.

//! Mailgun webhooks (email).
//!
//! # Callback format
//!
//! Mailgun POSTs one event per request as `application/json`:
//!
//! ```json
//! {"signature": {"timestamp": "1529006854", "token": "a8ce0edb…", "signature": "d2271d12…"},
//!  "event-data": {"event": "delivered", "id": "hK7mQVt1QtqRiOfQXta4sw",
//!                 "timestamp": 1529692199.626182, "recipient": "john@example.com",
//!                 "message": {"headers": {"message-id": "20180622182958.1.48906CB188F1A454@exmple.org"}},
//!                 "delivery-status": {"code": 250, "message": "OK", "description": ""},
//!                 "user-variables": {"order_id": "42"}, "tags": [], "campaigns": []}}
//! ```
//!
//! `event-data` is the Events API event object: `event`, `id` (unique within a day),
//! `timestamp` (seconds, float), `recipient`, `message.headers.message-id` (no angle
//! brackets), `severity` and `reason` (on `failed`), `delivery-status`
//! (`code`, `message`, `description`, …), `user-variables`, `tags`, `campaigns`.
//!
//! The legacy (pre-2018) webhooks are also accepted: an
//! `application/x-www-form-urlencoded` POST with top-level `timestamp`, `token`,
//! `signature`, `event`, `recipient`, `Message-Id` (or `message-id`), `code`, `error`,
//! `description`, `message-headers` (a JSON string of `[name, value]` pairs) and the
//! custom variables merged in as their own parameters. Mailgun Routes `forward()` posts of
//! received mail (form fields `sender`, `recipient`, `subject`, `body-plain`,
//! `stripped-text`, `Message-Id`, … and no `event`) become inbound messages. A message with
//! attachments is posted as `multipart/form-data` instead: the same fields as text parts,
//! and each attachment a file part (`attachment-1` … `attachment-N`, with
//! `attachment-count`). A body without a content type is read as JSON when it starts with
//! `{`, else as a URL-encoded form.
//!
//! # Signature
//!
//! `hex(HMAC-SHA256(key = webhook signing key, msg = timestamp || token))`, compared with
//! `signature` (hex-decoded, then compared in constant time). The three values live in the
//! body (`signature` object of the JSON body; top-level parameters of a legacy form or the
//! text parts of a multipart form, where the *last* value of each counts, because Mailgun
//! appends its own after custom variables of the same name). The signature covers only
//! timestamp and token, not the event. When a clock is given (`VerifyOptions::now_secs`),
//! the signed timestamp must be within the tolerance.
//!
//! Replay protection: a captured request stays valid for the whole tolerance window. The
//! core keeps no state; the sidecar can keep a cache of [`token`]s already seen and
//! reject a repeated one (Mailgun's recommendation).
//!
//! # Verify keys
//!
//! | key | required | meaning |
//! |---|---|---|
//! | `signing_key` | yes | the domain's HTTP webhook signing key |
//!
//! # Status mapping
//!
//! | Mailgun `event` | condition | status |
//! |---|---|---|
//! | `accepted` | | `queued` |
//! | `delivered` | | `delivered` |
//! | `opened` | | `seen` |
//! | `clicked` | | `clicked` |
//! | `unsubscribed` | | `unsubscribed` |
//! | `complained` | | `complained` |
//! | `failed` | `severity: permanent`, `reason: suppress-*` or `old` | `failed` (never reached the recipient's server: suppression list, or retries given up) |
//! | `failed` | `severity: permanent`, any other reason | `bounced` |
//! | `failed` | `severity: temporary` | `queued`, informational (Mailgun retries) |
//! | `failed` | no or unknown severity | `failed` |
//! | `rejected` | | `failed` |
//! | `bounced` (legacy) | | `bounced` |
//! | `dropped` (legacy) | | `failed` |
//! | `stored` | | no status: an inbound message (see below) |
//! | anything else | | `queued`, informational (documented fallback) |
//!
//! `error` (failed and bounced only): `code` = `delivery-status.code` as text, `message`
//! = the first non-empty of `delivery-status.description`, `delivery-status.message`,
//! `reject.reason`, `reject.description`, `reason` (legacy: `code`, and `error`,
//! `description`, `notification`, `reason`).
//!
//! # Other fields
//!
//! - `channel` is `email`; `channel_value` is `recipient` (for `rejected`, which may lack
//!   it: `envelope.targets`, then the address in `message.headers.to`).
//! - `vendor_ack_id` is `message.headers.message-id`, angle brackets removed (legacy:
//!   `Message-Id`, `message-id`, or the `Message-Id` of `message-headers`).
//! - `correlation` is `user-variables`, each key under its own name (legacy: the
//!   `X-Mailgun-Variables` of `message-headers`, else every parameter that is not a known
//!   Mailgun parameter). Tags and campaigns stay in `vendor_response`.
//! - `idempotency_key` is derived from `event-data.id` and `event` (the id is unique
//!   within a day, longer than any dedupe window); without an id, from the whole
//!   `event-data`. Legacy posts carry no event id: the signature `token` (one per post)
//!   is used.
//! - `raw` (`vendor_response`) is `event-data` (the signature block is left out); for
//!   forms, the parameters as a JSON object (of a multipart form, its text parts: the
//!   files are described in `media`, never copied into the payload).
//! - Timestamps: `event-data.timestamp` (float seconds) in ms; legacy: `timestamp`.
//!   Missing: the time the callback was received.
//!
//! # Inbound messages
//!
//! A `stored` event (Mailgun stored a received message) becomes an inbound message:
//! `from` = the address of `message.headers.from`, `to` = `recipient` (or the first of
//! `message.recipients`), `type` = `email`, `text` = the subject (the body is not in the
//! event: fetch it from `storage.url`, kept in `vendor_response`). A Routes `forward()`
//! form post becomes an inbound message with `from` = `sender`, `to` = `recipient`,
//! `text` = subject and `stripped-text` (or `body-plain`), `context` from `In-Reply-To`,
//! and, from a multipart post, one `media` entry per file part with its file `name`,
//! `content_type` and `size` in bytes (no `url`: the bytes came in the request, and
//! hookrelay does not forward them). The sidecar reads the whole body within the route's
//! `max_body` (1 MiB by default) before anything else: a route that takes attachments needs
//! a larger one, and a `tap` route cannot take more than 64 KiB.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::event::ChannelUser;
use crate::event::{idempotency_key, idempotency_key_of_value};
use crate::limits::TopLevel;
use crate::mac::{self, Hash};
use crate::multipart::{self, Part};
use crate::provider::json::{str_at, str_of};
use crate::provider::mail::{first_address, strip_angle};
use crate::provider::{Context, Normalized, VerifyOptions, VerifySettings};
use crate::request::{pairs_to_json, param_nonempty};
use crate::{
    CallbackRequest, Channel, ErrorInfo, Event, EventKind, InboundMessage, Media, NormalizeError,
    ReplyContext, Secret, Status, StatusUpdate, VerifyConfigError, VerifyError,
};

/// Provider id.
pub const PROVIDER: &str = "mailgun";

/// The `verify:` keys Mailgun knows.
pub const KNOWN_KEYS: &[&str] = &["signing_key"];

const EXPECTED_CT: &str =
    "application/json, application/x-www-form-urlencoded or multipart/form-data";

/// Mailgun signature check: HMAC-SHA256 of timestamp and token with the webhook signing
/// key.
#[derive(Debug, Clone)]
pub struct Verifier {
    signing_key: Secret,
}

impl Verifier {
    /// Builds the verifier from the `verify:` settings (`signing_key`, required).
    pub fn from_settings(settings: &VerifySettings) -> Result<Self, VerifyConfigError> {
        settings.only(PROVIDER, KNOWN_KEYS)?;
        let signing_key = settings.require(PROVIDER, "signing_key")?.clone();
        Ok(Self { signing_key })
    }

    /// Checks the `signature` of a JSON webhook, or of a form post (URL-encoded or
    /// multipart).
    pub fn verify(&self, req: &CallbackRequest, opts: &VerifyOptions) -> Result<(), VerifyError> {
        let kind = body_kind(req).map_err(|e| VerifyError::Unreadable(e.to_string()))?;
        let fields = match kind {
            BodyKind::Json => json_signature(req)?,
            BodyKind::Form | BodyKind::Multipart => {
                let form =
                    read_form(req, kind).map_err(|e| VerifyError::Unreadable(e.to_string()))?;
                form_signature(&form.pairs)
            }
        };
        let timestamp = fields.timestamp.ok_or(VerifyError::Missing("timestamp"))?;
        let token = fields.token.ok_or(VerifyError::Missing("token"))?;
        let signature = fields.signature.ok_or(VerifyError::Missing("signature"))?;
        let expected = hex::decode(signature.trim())
            .map_err(|_| VerifyError::Malformed("signature is not hexadecimal".into()))?;
        let tag = mac::hmac(
            Hash::Sha256,
            self.signing_key.expose().as_bytes(),
            &[timestamp.as_bytes(), token.as_bytes()],
        );
        if !tag.matches(&expected) {
            return Err(VerifyError::Mismatch);
        }
        if opts.now_secs.is_some() {
            let ts = parse_epoch_secs(&timestamp).ok_or_else(|| {
                VerifyError::Malformed(format!("timestamp {timestamp:?} is not epoch seconds"))
            })?;
            opts.check_timestamp(ts)?;
        }
        Ok(())
    }
}

/// The signature `token` of a callback (JSON `signature.token`, or the last `token`
/// parameter of a form), for a replay cache kept by the caller: Mailgun recommends
/// refusing a token seen before. The core itself keeps no state.
#[must_use]
pub fn token(req: &CallbackRequest) -> Option<String> {
    match body_kind(req).ok()? {
        BodyKind::Json => json_signature(req).ok()?.token,
        kind @ (BodyKind::Form | BodyKind::Multipart) => {
            form_signature(&read_form(req, kind).ok()?.pairs).token
        }
    }
}

/// Normalizes one Mailgun callback (JSON webhook, legacy form webhook, or Routes forward)
/// into one event.
pub fn normalize(req: &CallbackRequest, ctx: &Context) -> Result<Normalized, NormalizeError> {
    match body_kind(req)? {
        BodyKind::Json => normalize_json(req, ctx),
        kind @ (BodyKind::Form | BodyKind::Multipart) => {
            normalize_form(&read_form(req, kind)?, ctx)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Body kind and signature fields

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
    /// `multipart/form-data` (a Routes forward with attachments).
    Multipart,
}

fn body_kind(req: &CallbackRequest) -> Result<BodyKind, NormalizeError> {
    match req.media_type() {
        None => {
            let first = req.body.iter().find(|b| !b.is_ascii_whitespace());
            match first {
                None => Err(NormalizeError::EmptyBody),
                Some(b'{') | Some(b'[') => Ok(BodyKind::Json),
                Some(_) => Ok(BodyKind::Form),
            }
        }
        Some(m) if m == "application/json" || m.ends_with("+json") => Ok(BodyKind::Json),
        Some(m) if m == "application/x-www-form-urlencoded" => Ok(BodyKind::Form),
        Some(m) if m == "multipart/form-data" => Ok(BodyKind::Multipart),
        Some(found) => Err(NormalizeError::UnsupportedContentType {
            provider: PROVIDER,
            found,
            expected: EXPECTED_CT,
        }),
    }
}

#[derive(Debug, Default)]
struct SignatureFields {
    timestamp: Option<String>,
    token: Option<String>,
    signature: Option<String>,
}

/// Only the `signature` block is read; the rest of the body is skipped by the parser.
#[derive(serde::Deserialize)]
struct Envelope {
    signature: Option<Value>,
}

fn json_signature(req: &CallbackRequest) -> Result<SignatureFields, VerifyError> {
    // Read before the signature is known to be good: bounded as a body parsed whole is.
    if !crate::limits::values_at_most(&req.body, crate::limits::MAX_JSON_VALUES) {
        return Err(VerifyError::Unreadable(
            "a callback of more than 100000 JSON values".into(),
        ));
    }
    let env: Envelope = serde_json::from_slice(&req.body)
        .map_err(|e| VerifyError::Unreadable(format!("body is not a JSON object: {e}")))?;
    let block = match env.signature {
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(VerifyError::Malformed(
                "`signature` is not an object".into(),
            ));
        }
        None => return Err(VerifyError::Missing("signature block")),
    };
    let text = |k: &str| match block.get(k) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    Ok(SignatureFields {
        timestamp: text("timestamp"),
        token: text("token"),
        signature: text("signature"),
    })
}

/// A form's fields: the parameters of a URL-encoded body, or the text parts of a
/// multipart one (in order), and its files (multipart only).
struct Form {
    pairs: Vec<(String, String)>,
    files: Vec<Part>,
}

/// Reads a form body of `kind` (`Form` or `Multipart`).
fn read_form(req: &CallbackRequest, kind: BodyKind) -> Result<Form, NormalizeError> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Err(NormalizeError::EmptyBody);
    }
    if kind != BodyKind::Multipart {
        return Ok(Form {
            pairs: req.form_pairs(),
            files: Vec::new(),
        });
    }
    let content_type = req.header("content-type").unwrap_or_default();
    let parts = multipart::boundary(content_type)
        .and_then(|b| multipart::parse(&req.body, &b))
        .map_err(NormalizeError::Multipart)?;
    let (files, fields): (Vec<Part>, Vec<Part>) = parts.into_iter().partition(Part::is_file);
    Ok(Form {
        pairs: fields
            .iter()
            .map(|p| (p.name.clone(), p.text().into_owned()))
            .collect(),
        files,
    })
}

fn form_signature(pairs: &[(String, String)]) -> SignatureFields {
    SignatureFields {
        timestamp: last(pairs, "timestamp").map(str::to_owned),
        token: last(pairs, "token").map(str::to_owned),
        signature: last(pairs, "signature").map(str::to_owned),
    }
}

/// Epoch seconds from `1403645220` (or `1403645220.5`, truncated).
fn parse_epoch_secs(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    let f = s.parse::<f64>().ok().filter(|f| f.is_finite())?;
    #[allow(clippy::cast_possible_truncation)]
    let n = f.trunc() as i64;
    Some(n)
}

// ---------------------------------------------------------------------------------------
// Status mapping

/// Maps a Mailgun event name (plus `severity` and `reason` of `failed`) to a status and
/// whether it is informational. See the table in the module docs.
fn map_status(event: &str, severity: Option<&str>, reason: Option<&str>) -> (Status, bool) {
    match event {
        "accepted" => (Status::Queued, false),
        "delivered" => (Status::Delivered, false),
        "opened" => (Status::Seen, false),
        "clicked" => (Status::Clicked, false),
        "unsubscribed" => (Status::Unsubscribed, false),
        "complained" => (Status::Complained, false),
        "rejected" | "dropped" => (Status::Failed, false),
        "bounced" => (Status::Bounced, false),
        "failed" => match severity.map(str::trim) {
            Some(s) if s.eq_ignore_ascii_case("temporary") => (Status::Queued, true),
            Some(s) if s.eq_ignore_ascii_case("permanent") => {
                let reason = reason.unwrap_or("").trim();
                if reason.starts_with("suppress-") || reason == "old" {
                    (Status::Failed, false)
                } else {
                    (Status::Bounced, false)
                }
            }
            _ => (Status::Failed, false),
        },
        _ => (Status::Queued, true),
    }
}

// ---------------------------------------------------------------------------------------
// JSON webhooks

fn normalize_json(req: &CallbackRequest, ctx: &Context) -> Result<Normalized, NormalizeError> {
    if let Some(unparsed) = req.beyond_limits(TopLevel::Object) {
        return Ok(Normalized::one_unparsed(unparsed));
    }
    let body = req.json()?;
    let obj = body.as_object().ok_or_else(|| {
        NormalizeError::shape("/", "a JSON object {\"signature\", \"event-data\"}")
    })?;
    // A bare Events API object (as Mailgun's event log and docs show it) is accepted
    // too: it normalizes the same, and cannot verify (it has no signature block).
    let data = match obj.get("event-data") {
        Some(d) => d,
        None if obj.contains_key("event") => &body,
        None => return Err(NormalizeError::MissingField("event-data".into())),
    };
    if !data.is_object() {
        return Err(NormalizeError::shape("/event-data", "an object"));
    }
    let event_name = str_of(data, "event")
        .ok_or_else(|| NormalizeError::MissingField("event-data.event".into()))?;
    let vendor_ack_id = str_at(data, "/message/headers/message-id").map(|m| strip_angle(&m));
    let timestamp_ms = event_time(data, ctx)?;
    let correlation = user_variables(data);
    let idempotency_key = match str_of(data, "id") {
        Some(id) => idempotency_key(PROVIDER, &[&id, &event_name]),
        None => idempotency_key_of_value(PROVIDER, data),
    };

    if event_name == "stored" {
        let from = str_at(data, "/message/headers/from")
            .and_then(|f| first_address(&f))
            .or_else(|| str_at(data, "/envelope/sender"))
            .ok_or_else(|| {
                NormalizeError::MissingField("event-data.message.headers.from".into())
            })?;
        let to = str_of(data, "recipient")
            .or_else(|| str_at(data, "/message/recipients/0"))
            .or_else(|| str_at(data, "/message/headers/to").and_then(|t| first_address(&t)))
            .unwrap_or_default();
        let msg = InboundMessage {
            from: from.clone(),
            to,
            message_type: "email".into(),
            text: str_at(data, "/message/headers/subject"),
            timestamp_ms,
            source_message_id: vendor_ack_id.clone().unwrap_or_default(),
            ..InboundMessage::default()
        };
        return Ok(Normalized::events(vec![Event {
            channel: Channel::Email,
            channel_value: from,
            channel_user: ChannelUser::default(),
            vendor_name: PROVIDER.into(),
            vendor_ack_id,
            idempotency_key,
            correlation,
            kind: EventKind::Inbound(msg),
            raw: data.clone().into(),
        }]));
    }

    let severity = str_of(data, "severity");
    let reason = str_of(data, "reason");
    let (status, informational) = map_status(&event_name, severity.as_deref(), reason.as_deref());
    let channel_value = str_of(data, "recipient")
        .or_else(|| str_at(data, "/envelope/targets").and_then(|t| first_address(&t)))
        .or_else(|| str_at(data, "/message/headers/to").and_then(|t| first_address(&t)))
        .ok_or_else(|| NormalizeError::MissingField("event-data.recipient".into()))?;
    let error = if matches!(status, Status::Failed | Status::Bounced) {
        let message = str_at(data, "/delivery-status/description")
            .or_else(|| str_at(data, "/delivery-status/message"))
            .or_else(|| str_at(data, "/reject/reason"))
            .or_else(|| str_at(data, "/reject/description"))
            .or(reason);
        ErrorInfo::from_parts(str_at(data, "/delivery-status/code"), message)
    } else {
        None
    };
    Ok(Normalized::events(vec![Event {
        channel: Channel::Email,
        channel_value,
        channel_user: ChannelUser::default(),
        vendor_name: PROVIDER.into(),
        vendor_ack_id,
        idempotency_key,
        correlation,
        kind: EventKind::Status(StatusUpdate {
            status,
            timestamp_ms,
            error,
            informational,
        }),
        raw: data.clone().into(),
    }]))
}

fn event_time(data: &Value, ctx: &Context) -> Result<i64, NormalizeError> {
    match data.get("timestamp") {
        None | Some(Value::Null) => Ok(ctx.received_at_ms),
        Some(v) => crate::timestamp::value_to_ms(v)
            .ok_or_else(|| NormalizeError::invalid("event-data.timestamp", "not epoch seconds")),
    }
}

fn user_variables(data: &Value) -> Map<String, Value> {
    match data.get("user-variables") {
        Some(Value::Object(m)) => m
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        _ => Map::new(),
    }
}

// ---------------------------------------------------------------------------------------
// Legacy form webhooks and Routes forwards

/// Parameters Mailgun itself sends in legacy webhooks; any other parameter is a custom
/// variable.
const LEGACY_KNOWN: &[&str] = &[
    "event",
    "recipient",
    "domain",
    "ip",
    "country",
    "region",
    "city",
    "user-agent",
    "device-type",
    "client-type",
    "client-name",
    "client-os",
    "campaign-id",
    "campaign-name",
    "tag",
    "X-Mailgun-Tag",
    "X-Mailgun-Sid",
    "mailing-list",
    "timestamp",
    "token",
    "signature",
    "body-plain",
    "h",
    "message-id",
    "Message-Id",
    "message-headers",
    "url",
    "code",
    "error",
    "notification",
    "reason",
    "description",
    "attachment-count",
];

/// Signature parameters: on a name clash, Mailgun's value comes last (the custom
/// variable first); for every other parameter Mailgun's value comes first.
const LEGACY_SIGNATURE_PARAMS: &[&str] = &["timestamp", "token", "signature"];

fn last<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, v)| k == name && !v.trim().is_empty())
        .map(|(_, v)| v.as_str())
}

fn normalize_form(form: &Form, ctx: &Context) -> Result<Normalized, NormalizeError> {
    let pairs = &form.pairs;
    if pairs.is_empty() {
        return Err(NormalizeError::EmptyBody);
    }
    let raw = pairs_to_json(pairs);
    let timestamp_ms = match last(pairs, "timestamp") {
        None => ctx.received_at_ms,
        Some(t) => crate::timestamp::parse_str_ms(t)
            .ok_or_else(|| NormalizeError::invalid("timestamp", "not epoch seconds"))?,
    };
    let headers = message_headers(pairs);
    let message_id = param_nonempty(pairs, "Message-Id")
        .or_else(|| param_nonempty(pairs, "message-id"))
        .map(strip_angle)
        .or_else(|| header_value(&headers, "Message-Id").map(|m| strip_angle(&m)));
    let token = last(pairs, "token");

    let Some(event_name) = param_nonempty(pairs, "event") else {
        if param_nonempty(pairs, "sender").is_some()
            || param_nonempty(pairs, "body-plain").is_some()
        {
            let media = form.files.iter().map(attachment).collect();
            return route_forward(pairs, raw, media, message_id, timestamp_ms, token);
        }
        return Err(NormalizeError::MissingField("event".into()));
    };
    let (status, informational) = map_status(
        event_name,
        param_nonempty(pairs, "severity"),
        param_nonempty(pairs, "reason"),
    );
    let channel_value = param_nonempty(pairs, "recipient")
        .map(str::to_owned)
        .ok_or_else(|| NormalizeError::MissingField("recipient".into()))?;
    let error = if matches!(status, Status::Failed | Status::Bounced) {
        let message = ["error", "description", "notification", "reason"]
            .iter()
            .find_map(|k| param_nonempty(pairs, k))
            .map(str::to_owned);
        ErrorInfo::from_parts(param_nonempty(pairs, "code").map(str::to_owned), message)
    } else {
        None
    };
    let idempotency_key = match token {
        Some(t) => idempotency_key(PROVIDER, &["legacy", t]),
        None => idempotency_key_of_value(PROVIDER, &raw),
    };
    Ok(Normalized::events(vec![Event {
        channel: Channel::Email,
        channel_value,
        channel_user: ChannelUser::default(),
        vendor_name: PROVIDER.into(),
        vendor_ack_id: message_id,
        idempotency_key,
        correlation: legacy_variables(pairs, &headers),
        kind: EventKind::Status(StatusUpdate {
            status,
            timestamp_ms,
            error,
            informational,
        }),
        raw: raw.into(),
    }]))
}

/// A file part as a medium: its name, type and size, never its bytes.
fn attachment(part: &Part) -> Media {
    Media {
        url: String::new(),
        content_type: part.content_type.clone(),
        name: part.filename.clone().filter(|n| !n.is_empty()),
        size: u64::try_from(part.data.len()).ok(),
    }
}

fn route_forward(
    pairs: &[(String, String)],
    raw: Value,
    media: Vec<Media>,
    message_id: Option<String>,
    timestamp_ms: i64,
    token: Option<&str>,
) -> Result<Normalized, NormalizeError> {
    let from = param_nonempty(pairs, "sender")
        .map(str::to_owned)
        .or_else(|| param_nonempty(pairs, "from").and_then(first_address))
        .ok_or_else(|| NormalizeError::MissingField("sender".into()))?;
    let to = param_nonempty(pairs, "recipient")
        .unwrap_or_default()
        .to_owned();
    let subject = param_nonempty(pairs, "subject");
    let body =
        param_nonempty(pairs, "stripped-text").or_else(|| param_nonempty(pairs, "body-plain"));
    let text = match (subject, body) {
        (Some(s), Some(b)) => Some(format!("{s}\n\n{b}")),
        (Some(s), None) => Some(s.to_owned()),
        (None, Some(b)) => Some(b.to_owned()),
        (None, None) => None,
    };
    let context = param_nonempty(pairs, "In-Reply-To").map(|id| ReplyContext {
        id: strip_angle(id),
        from: None,
    });
    let idempotency_key = match (&message_id, token) {
        (Some(m), _) => idempotency_key(PROVIDER, &["inbound", m, &to]),
        (None, Some(t)) => idempotency_key(PROVIDER, &["legacy", t]),
        (None, None) => idempotency_key_of_value(PROVIDER, &raw),
    };
    let msg = InboundMessage {
        from: from.clone(),
        to,
        message_type: "email".into(),
        text,
        media,
        context,
        timestamp_ms,
        source_message_id: message_id.clone().unwrap_or_default(),
        ..InboundMessage::default()
    };
    Ok(Normalized::events(vec![Event {
        channel: Channel::Email,
        channel_value: from,
        channel_user: ChannelUser::default(),
        vendor_name: PROVIDER.into(),
        vendor_ack_id: message_id,
        idempotency_key,
        correlation: Map::new(),
        kind: EventKind::Inbound(msg),
        raw: raw.into(),
    }]))
}

/// The `message-headers` parameter: a JSON list of `[name, value]` pairs.
fn message_headers(pairs: &[(String, String)]) -> Vec<(String, Value)> {
    let Some(text) = param_nonempty(pairs, "message-headers") else {
        return Vec::new();
    };
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(text) else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| match item {
            Value::Array(mut pair) if pair.len() == 2 => {
                let value = pair.pop()?;
                let name = pair.pop()?.as_str()?.to_owned();
                Some((name, value))
            }
            _ => None,
        })
        .collect()
}

fn header_value(headers: &[(String, Value)], name: &str) -> Option<String> {
    headers.iter().find_map(|(k, v)| match v {
        Value::String(s) if k.eq_ignore_ascii_case(name) && !s.trim().is_empty() => Some(s.clone()),
        _ => None,
    })
}

/// Custom variables of a legacy post: from `X-Mailgun-Variables` headers when the post
/// carries `message-headers`, else every parameter Mailgun does not define (and the
/// second value of a Mailgun parameter that a custom variable of the same name repeats).
fn legacy_variables(pairs: &[(String, String)], headers: &[(String, Value)]) -> Map<String, Value> {
    let mut out = Map::new();
    let mut from_headers = false;
    for (name, value) in headers {
        if !name.eq_ignore_ascii_case("X-Mailgun-Variables") {
            continue;
        }
        if let Some(Ok(Value::Object(vars))) = value.as_str().map(serde_json::from_str::<Value>) {
            from_headers = true;
            out.extend(vars);
        }
    }
    if from_headers {
        return out;
    }
    // One pass: the values of each name, names in order of first appearance.
    let mut order: Vec<&str> = Vec::new();
    let mut values: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in pairs {
        let entry = values.entry(k.as_str()).or_default();
        if entry.is_empty() {
            order.push(k.as_str());
        }
        entry.push(v.as_str());
    }
    for k in order {
        let Some(vals) = values.get(k) else { continue };
        if k.starts_with("attachment-") {
            continue;
        }
        let value = if !LEGACY_KNOWN.contains(&k) {
            vals.last()
        } else if k == "tag" || k == "X-Mailgun-Tag" || vals.len() < 2 {
            None
        } else if LEGACY_SIGNATURE_PARAMS.contains(&k) {
            vals.first()
        } else {
            vals.last()
        };
        if let Some(v) = value {
            out.insert(k.to_owned(), Value::String((*v).to_owned()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Provider;
    use hmac::{Hmac, KeyInit, Mac};
    use serde_json::json;
    use sha2::Sha256;

    const VECTOR: &str = include_str!("../../tests/fixtures/mailgun/signature_vector.json");

    #[test]
    fn a_bare_event_data_object_normalizes_like_the_envelope() {
        let bare: Value = serde_json::from_str(DELIVERED).expect("fixture");
        let wrapped = json!({"signature": {"timestamp": "1", "token": "t", "signature": "00"},
                             "event-data": bare});
        let ctx = Context { received_at_ms: 0 };
        let a = normalize(&CallbackRequest::post(DELIVERED.to_owned()), &ctx).expect("bare");
        let b = normalize(&CallbackRequest::post(wrapped.to_string()), &ctx).expect("wrapped");
        assert_eq!(a.events.len(), 1);
        assert_eq!(a, b);
        let v =
            Verifier::from_settings(&VerifySettings::new().with("signing_key", "k")).expect("v");
        assert!(
            v.verify(
                &CallbackRequest::post(DELIVERED.to_owned()),
                &VerifyOptions::default()
            )
            .is_err()
        );
    }
    const DELIVERED: &str = include_str!("../../tests/fixtures/mailgun/event_data_delivered.json");
    const FAILED_PERMANENT: &str =
        include_str!("../../tests/fixtures/mailgun/event_data_failed_permanent.json");
    const ACCEPTED: &str = include_str!("../../tests/fixtures/mailgun/event_data_accepted.json");
    const LEGACY_DELIVERED: &str =
        include_str!("../../tests/golden/mailgun/legacy_form_delivered.body");
    const LEGACY_KEY: &str = "TEST_WEBHOOK_SIGNING_KEY";

    fn ctx() -> Context {
        Context {
            received_at_ms: 1_700_000_000_000,
        }
    }

    fn vector() -> Value {
        serde_json::from_str(VECTOR).expect("vector")
    }

    fn verifier(key: &str) -> Verifier {
        Verifier::from_settings(&VerifySettings::new().with("signing_key", key)).expect("verifier")
    }

    fn sign(key: &str, ts: &str, token: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes()).expect("key");
        mac.update(ts.as_bytes());
        mac.update(token.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    fn webhook(ts: &Value, token: &str, signature: &str, data: Value) -> CallbackRequest {
        let body = json!({
            "signature": {"timestamp": ts, "token": token, "signature": signature},
            "event-data": data,
        });
        CallbackRequest::post(serde_json::to_vec(&body).expect("json"))
            .with_content_type("application/json")
    }

    fn vector_request(token: &str, signature: &str) -> CallbackRequest {
        let v = vector();
        let data: Value = serde_json::from_str(DELIVERED).expect("fixture");
        webhook(&json!(v["timestamp"].to_string()), token, signature, data)
    }

    fn one(req: &CallbackRequest) -> Event {
        let out = normalize(req, &ctx()).expect("normalizes");
        assert_eq!(out.events.len(), 1);
        assert!(out.control.is_none());
        out.events.into_iter().next().expect("one event")
    }

    fn status_of(e: &Event) -> &StatusUpdate {
        e.status().expect("status event")
    }

    fn data_request(data: Value) -> CallbackRequest {
        webhook(&json!("1529692199"), "tok", "00", data)
    }

    // --- signature --------------------------------------------------------------------

    #[test]
    fn official_vector_passes() {
        let v = vector();
        let key = v["webhook_signing_key"].as_str().expect("key");
        let token = v["token"].as_str().expect("token");
        let sig = v["signature"].as_str().expect("sig");
        assert_eq!(sign(key, &v["timestamp"].to_string(), token), sig);
        let req = vector_request(token, sig);
        verifier(key)
            .verify(&req, &VerifyOptions::default())
            .expect("valid");
        // Also through the dispatching enum.
        let dispatch = crate::Verifier::new(
            &Provider::Mailgun,
            &VerifySettings::new().with("signing_key", key),
        )
        .expect("verifier");
        dispatch
            .verify(&req, &VerifyOptions::default())
            .expect("valid");
        assert_eq!(token_of(&req).as_deref(), Some(token));
    }

    #[test]
    fn a_signature_block_of_many_values_is_refused_before_it_is_parsed() {
        let body = format!(r#"{{"signature":[{}0]}}"#, "0,".repeat(200_000));
        let req = CallbackRequest::post(body).with_content_type("application/json");
        assert!(matches!(
            verifier("k").verify(&req, &VerifyOptions::default()),
            Err(VerifyError::Unreadable(reason)) if reason.contains("100000")
        ));
    }

    fn token_of(req: &CallbackRequest) -> Option<String> {
        token(req)
    }

    #[test]
    fn golden_json_bodies_carry_the_official_signature() {
        let v = vector();
        let key = v["webhook_signing_key"].as_str().expect("key");
        for body in [
            include_str!("../../tests/golden/mailgun/delivered.body"),
            include_str!("../../tests/golden/mailgun/clicked_user_variables.body"),
            include_str!("../../tests/golden/mailgun/failed_permanent_bounce.body"),
        ] {
            let req = CallbackRequest::post(body).with_content_type("application/json");
            verifier(key)
                .verify(&req, &VerifyOptions::default())
                .expect("valid");
            assert!(matches!(
                verifier("key-other").verify(&req, &VerifyOptions::default()),
                Err(VerifyError::Mismatch)
            ));
        }
    }

    #[test]
    fn official_vector_with_numeric_timestamp_passes() {
        let v = vector();
        let data: Value = serde_json::from_str(DELIVERED).expect("fixture");
        let req = webhook(
            &v["timestamp"],
            v["token"].as_str().expect("token"),
            v["signature"].as_str().expect("sig"),
            data,
        );
        verifier(v["webhook_signing_key"].as_str().expect("key"))
            .verify(&req, &VerifyOptions::default())
            .expect("valid");
    }

    #[test]
    fn official_negative_case_fails() {
        let v = vector();
        let other = v["negative_case_same_signature_other_token"]
            .as_str()
            .expect("token");
        let req = vector_request(other, v["signature"].as_str().expect("sig"));
        assert!(matches!(
            verifier(v["webhook_signing_key"].as_str().expect("key"))
                .verify(&req, &VerifyOptions::default()),
            Err(VerifyError::Mismatch)
        ));
    }

    #[test]
    fn tampered_signature_timestamp_and_wrong_key_fail() {
        let v = vector();
        let key = v["webhook_signing_key"].as_str().expect("key");
        let token = v["token"].as_str().expect("token");
        let sig = v["signature"].as_str().expect("sig");
        let opts = VerifyOptions::default();
        // Tampered signature (last hex digit changed).
        let mut bad = sig.to_owned();
        bad.pop();
        bad.push('4');
        assert!(matches!(
            verifier(key).verify(&vector_request(token, &bad), &opts),
            Err(VerifyError::Mismatch)
        ));
        // Tampered signed content: timestamp.
        let data: Value = serde_json::from_str(DELIVERED).expect("fixture");
        let req = webhook(&json!("1403645221"), token, sig, data);
        assert!(matches!(
            verifier(key).verify(&req, &opts),
            Err(VerifyError::Mismatch)
        ));
        // Wrong key.
        assert!(matches!(
            verifier("key-wrong").verify(&vector_request(token, sig), &opts),
            Err(VerifyError::Mismatch)
        ));
        // Not hex.
        assert!(matches!(
            verifier(key).verify(&vector_request(token, "zz"), &opts),
            Err(VerifyError::Malformed(_))
        ));
        // Truncated signature.
        assert!(matches!(
            verifier(key).verify(&vector_request(token, &sig[..32]), &opts),
            Err(VerifyError::Mismatch)
        ));
    }

    #[test]
    fn tampered_body_outside_the_signature_still_verifies_as_documented() {
        // Mailgun signs only timestamp + token: a changed event-data keeps a valid
        // signature. This documents the scheme; the token replay cache is the defence.
        let v = vector();
        let data = json!({"event": "failed", "recipient": "x@example.com"});
        let req = webhook(
            &json!(v["timestamp"].to_string()),
            v["token"].as_str().expect("token"),
            v["signature"].as_str().expect("sig"),
            data,
        );
        verifier(v["webhook_signing_key"].as_str().expect("key"))
            .verify(&req, &VerifyOptions::default())
            .expect("scheme covers timestamp and token only");
    }

    #[test]
    fn freshness_is_checked_only_with_a_clock() {
        let v = vector();
        let key = v["webhook_signing_key"].as_str().expect("key");
        let req = vector_request(
            v["token"].as_str().expect("token"),
            v["signature"].as_str().expect("sig"),
        );
        let ts = v["timestamp"].as_i64().expect("ts");
        let near = VerifyOptions {
            now_secs: Some(ts + 10),
            tolerance_secs: None,
        };
        verifier(key).verify(&req, &near).expect("fresh");
        let late = VerifyOptions {
            now_secs: Some(ts + 301),
            tolerance_secs: None,
        };
        assert!(matches!(
            verifier(key).verify(&req, &late),
            Err(VerifyError::Stale(_))
        ));
        let tight = VerifyOptions {
            now_secs: Some(ts + 16),
            tolerance_secs: Some(15),
        };
        assert!(matches!(
            verifier(key).verify(&req, &tight),
            Err(VerifyError::Stale(_))
        ));
    }

    #[test]
    fn missing_signature_parts() {
        let v = verifier("k");
        let opts = VerifyOptions::default();
        let no_block = CallbackRequest::post(r#"{"event-data":{"event":"delivered"}}"#)
            .with_content_type("application/json");
        assert!(matches!(
            v.verify(&no_block, &opts),
            Err(VerifyError::Missing(_))
        ));
        let no_token = CallbackRequest::post(r#"{"signature":{"timestamp":"1","signature":"00"}}"#)
            .with_content_type("application/json");
        assert!(matches!(
            v.verify(&no_token, &opts),
            Err(VerifyError::Missing("token"))
        ));
        let no_sig = CallbackRequest::post(r#"{"signature":{"timestamp":"1","token":"t"}}"#)
            .with_content_type("application/json");
        assert!(matches!(
            v.verify(&no_sig, &opts),
            Err(VerifyError::Missing("signature"))
        ));
        let garbage = CallbackRequest::post("{not json").with_content_type("application/json");
        assert!(matches!(
            v.verify(&garbage, &opts),
            Err(VerifyError::Unreadable(_))
        ));
        let array = CallbackRequest::post("[]").with_content_type("application/json");
        assert!(v.verify(&array, &opts).is_err());
        let xml = CallbackRequest::post("<x/>").with_content_type("text/xml");
        assert!(matches!(
            v.verify(&xml, &opts),
            Err(VerifyError::Unreadable(_))
        ));
        let empty = CallbackRequest::post("");
        assert!(v.verify(&empty, &opts).is_err());
    }

    #[test]
    fn settings_fail_closed() {
        assert!(matches!(
            Verifier::from_settings(&VerifySettings::new()),
            Err(VerifyConfigError::Missing {
                key: "signing_key",
                ..
            })
        ));
        assert!(Verifier::from_settings(&VerifySettings::new().with("signing_key", "  ")).is_err());
        assert!(matches!(
            Verifier::from_settings(
                &VerifySettings::new()
                    .with("signing_key", "k")
                    .with("api_key", "x")
            ),
            Err(VerifyConfigError::Unknown { .. })
        ));
        let v = verifier("key-supersecret");
        assert!(!format!("{v:?}").contains("supersecret"));
    }

    #[test]
    fn legacy_form_signature_uses_last_values() {
        let req = CallbackRequest::post(LEGACY_DELIVERED)
            .with_content_type("application/x-www-form-urlencoded");
        let opts = VerifyOptions::default();
        verifier(LEGACY_KEY)
            .verify(&req, &opts)
            .expect("valid legacy signature");
        assert!(matches!(
            verifier("other").verify(&req, &opts),
            Err(VerifyError::Mismatch)
        ));
        // Without a content type the form is still recognised.
        verifier(LEGACY_KEY)
            .verify(&CallbackRequest::post(LEGACY_DELIVERED), &opts)
            .expect("sniffed form");
        // A custom variable named `token` comes first; Mailgun's own value last.
        let ts = "1461261330";
        let tok = "actual-token";
        let sig = sign(LEGACY_KEY, ts, tok);
        let body = format!(
            "token=metadata-token&event=clicked&recipient=a%40example.com&timestamp={ts}&token={tok}&signature={sig}"
        );
        let req =
            CallbackRequest::post(body).with_content_type("application/x-www-form-urlencoded");
        verifier(LEGACY_KEY)
            .verify(&req, &opts)
            .expect("last token counts");
        assert_eq!(token(&req).as_deref(), Some(tok));
        let e = one(&req);
        assert_eq!(e.correlation.get("token"), Some(&json!("metadata-token")));
        assert_eq!(status_of(&e).status, Status::Clicked);
        // Tampered legacy body: another token.
        let tampered = LEGACY_DELIVERED.replace("token=06c9", "token=16c9");
        let req =
            CallbackRequest::post(tampered).with_content_type("application/x-www-form-urlencoded");
        assert!(matches!(
            verifier(LEGACY_KEY).verify(&req, &opts),
            Err(VerifyError::Mismatch)
        ));
        let missing = CallbackRequest::post("event=delivered&recipient=a%40b.c")
            .with_content_type("application/x-www-form-urlencoded");
        assert!(matches!(
            verifier(LEGACY_KEY).verify(&missing, &opts),
            Err(VerifyError::Missing("timestamp"))
        ));
    }

    // --- normalization ----------------------------------------------------------------

    #[test]
    fn status_table() {
        let cases = [
            ("accepted", None, None, Status::Queued, false),
            ("delivered", None, None, Status::Delivered, false),
            ("opened", None, None, Status::Seen, false),
            ("clicked", None, None, Status::Clicked, false),
            ("unsubscribed", None, None, Status::Unsubscribed, false),
            ("complained", None, None, Status::Complained, false),
            ("rejected", None, None, Status::Failed, false),
            (
                "failed",
                Some("permanent"),
                Some("bounce"),
                Status::Bounced,
                false,
            ),
            (
                "failed",
                Some("permanent"),
                Some("generic"),
                Status::Bounced,
                false,
            ),
            ("failed", Some("permanent"), None, Status::Bounced, false),
            (
                "failed",
                Some("permanent"),
                Some("suppress-bounce"),
                Status::Failed,
                false,
            ),
            (
                "failed",
                Some("permanent"),
                Some("suppress-unsubscribe"),
                Status::Failed,
                false,
            ),
            (
                "failed",
                Some("permanent"),
                Some("suppress-complaint"),
                Status::Failed,
                false,
            ),
            (
                "failed",
                Some("permanent"),
                Some("old"),
                Status::Failed,
                false,
            ),
            (
                "failed",
                Some("temporary"),
                Some("generic"),
                Status::Queued,
                true,
            ),
            ("failed", None, None, Status::Failed, false),
            ("bounced", None, None, Status::Bounced, false),
            ("dropped", None, None, Status::Failed, false),
            ("list_member_uploaded", None, None, Status::Queued, true),
            ("", None, None, Status::Queued, true),
        ];
        for (event, sev, reason, status, info) in cases {
            assert_eq!(
                map_status(event, sev, reason),
                (status, info),
                "{event} {sev:?} {reason:?}"
            );
        }
    }

    #[test]
    fn delivered_fixture() {
        let data: Value = serde_json::from_str(DELIVERED).expect("fixture");
        let e = one(&data_request(data.clone()));
        assert_eq!(e.channel, Channel::Email);
        assert_eq!(e.channel_value, "john@example.com");
        assert_eq!(e.vendor_name, "mailgun");
        assert_eq!(
            e.vendor_ack_id.as_deref(),
            Some("20180622182958.1.48906CB188F1A454@exmple.org")
        );
        assert_eq!(
            e.idempotency_key,
            idempotency_key("mailgun", &["hK7mQVt1QtqRiOfQXta4sw", "delivered"])
        );
        let s = status_of(&e);
        assert_eq!(
            (s.status, s.informational, s.timestamp_ms),
            (Status::Delivered, false, 1_529_692_199_626)
        );
        assert!(s.error.is_none());
        assert_eq!(e.raw, data);
    }

    #[test]
    fn suppressed_failure_is_failed_with_error() {
        let data: Value = serde_json::from_str(FAILED_PERMANENT).expect("fixture");
        let e = one(&data_request(data));
        let s = status_of(&e);
        assert_eq!(s.status, Status::Failed);
        let err = s.error.as_ref().expect("error");
        assert_eq!(err.code.as_deref(), Some("605"));
        assert_eq!(
            err.message.as_deref(),
            Some("Not delivering to previously bounced address")
        );
        assert_eq!(e.channel_value, "slava@mailgun.com");
    }

    #[test]
    fn accepted_is_queued_not_informational() {
        let data: Value = serde_json::from_str(ACCEPTED).expect("fixture");
        let s = one(&data_request(data)).status().cloned().expect("status");
        assert_eq!((s.status, s.informational), (Status::Queued, false));
    }

    #[test]
    fn user_variables_are_correlation_and_non_ascii_survives() {
        let data = json!({
            "event": "clicked", "id": "x1", "timestamp": 1_377_075_564.094_891_f64,
            "recipient": "zoë@example.com",
            "user-variables": {"distinct_id": "ユーザー-7", "order": 42, "nothing": null},
        });
        let e = one(&data_request(data));
        assert_eq!(e.channel_value, "zoë@example.com");
        assert_eq!(e.correlation.get("distinct_id"), Some(&json!("ユーザー-7")));
        assert_eq!(e.correlation.get("order"), Some(&json!(42)));
        assert!(!e.correlation.contains_key("nothing"));
        assert_eq!(status_of(&e).timestamp_ms, 1_377_075_564_095);
    }

    #[test]
    fn unknown_event_is_informational_and_missing_time_uses_received_at() {
        let e = one(&data_request(
            json!({"event": "brand-new", "recipient": "a@example.com"}),
        ));
        let s = status_of(&e);
        assert_eq!(
            (s.status, s.informational, s.timestamp_ms),
            (Status::Queued, true, 1_700_000_000_000)
        );
        // No id: the key is derived from the whole event, stably.
        let again = one(&data_request(
            json!({"event": "brand-new", "recipient": "a@example.com"}),
        ));
        assert_eq!(e.idempotency_key, again.idempotency_key);
    }

    #[test]
    fn rejected_without_recipient_uses_the_to_header() {
        let data = json!({
            "event": "rejected", "timestamp": 1_529_704_976.104_692_f64,
            "reject": {"reason": "Sandbox subdomains are for test purposes only.", "description": ""},
            "message": {"headers": {"to": "Recipient Name <recipient@example.org>",
                "message-id": "20180622220256.1.B31A451A2E5422BB@sandbox55887.mailgun.org"}},
        });
        let e = one(&data_request(data));
        assert_eq!(e.channel_value, "recipient@example.org");
        let s = status_of(&e);
        assert_eq!(s.status, Status::Failed);
        assert_eq!(
            s.error.as_ref().and_then(|e| e.message.as_deref()),
            Some("Sandbox subdomains are for test purposes only.")
        );
    }

    #[test]
    fn stored_is_an_inbound_message() {
        let data = json!({
            "event": "stored", "id": "s1", "timestamp": 1_378_335_036.859_382_f64,
            "message": {"headers": {"to": "satshabad <satshabad@mailgun.com>",
                "message-id": "CAC8xyJx@mail.gmail.com", "from": "Someone <someone@example.com>",
                "subject": "Re: A TEST"}, "recipients": ["satshabad@mailgun.com"]},
            "storage": {"url": "https://api.mailgun.net/v2/domains/x/messages/K", "key": "K"},
        });
        let e = one(&data_request(data));
        assert_eq!(e.channel_value, "someone@example.com");
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound expected")
        };
        assert_eq!(m.from, "someone@example.com");
        assert_eq!(m.to, "satshabad@mailgun.com");
        assert_eq!(m.text.as_deref(), Some("Re: A TEST"));
        assert_eq!(m.message_type, "email");
        assert_eq!(m.source_message_id, "CAC8xyJx@mail.gmail.com");
    }

    #[test]
    fn legacy_delivered() {
        let req = CallbackRequest::post(LEGACY_DELIVERED)
            .with_content_type("application/x-www-form-urlencoded");
        let e = one(&req);
        assert_eq!(e.channel_value, "recipient@example.com");
        assert_eq!(
            e.vendor_ack_id.as_deref(),
            Some("20160421175529.19495.89030.B3AE3728@example.com")
        );
        let s = status_of(&e);
        assert_eq!(
            (s.status, s.timestamp_ms),
            (Status::Delivered, 1_461_261_330_000)
        );
        assert!(e.correlation.is_empty(), "{:?}", e.correlation);
        assert_eq!(e.raw.to_value()["event"], "delivered");
    }

    #[test]
    fn legacy_variables_from_headers_and_fields() {
        let headers =
            json!([["X-Mailgun-Variables", "{\"custom1\": \"värde\", \"n\": 1}"]]).to_string();
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("event", "bounced")
            .append_pair("recipient", "a@example.com")
            .append_pair("code", "550")
            .append_pair("error", "5.1.1 no such user")
            .append_pair("message-headers", &headers)
            .append_pair("custom1", "värde")
            .finish();
        let e = one(
            &CallbackRequest::post(body).with_content_type("application/x-www-form-urlencoded")
        );
        assert_eq!(e.correlation.get("custom1"), Some(&json!("värde")));
        assert_eq!(e.correlation.get("n"), Some(&json!(1)));
        let s = status_of(&e);
        assert_eq!(s.status, Status::Bounced);
        assert_eq!(
            s.error,
            Some(ErrorInfo {
                code: Some("550".into()),
                message: Some("5.1.1 no such user".into())
            })
        );

        let body = "event=opened&recipient=a%40example.com&tag=t1&tag=t2&event=my-event&custom=%E2%9C%93&attachment-1=x";
        let e = one(
            &CallbackRequest::post(body).with_content_type("application/x-www-form-urlencoded")
        );
        assert_eq!(status_of(&e).status, Status::Seen);
        assert_eq!(e.correlation.get("custom"), Some(&json!("✓")));
        assert_eq!(e.correlation.get("event"), Some(&json!("my-event")));
        assert!(!e.correlation.contains_key("tag"));
        assert!(!e.correlation.contains_key("attachment-1"));
    }

    #[test]
    fn variables_beyond_the_limits_keep_the_event_unparsed() {
        // JSON inside a form field: serde_json parses 100 levels, the limits hold it back.
        let deep = format!(r#"{{"custom1":{}{}}}"#, "[".repeat(100), "]".repeat(100));
        let headers = json!([["X-Mailgun-Variables", deep]]).to_string();
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("event", "delivered")
            .append_pair("recipient", "a@example.com")
            .append_pair("message-headers", &headers)
            .finish();
        let req = CallbackRequest::post(body.clone())
            .with_content_type("application/x-www-form-urlencoded");
        let out = crate::Provider::Mailgun
            .normalize(&req, &ctx())
            .expect("kept, not refused");
        assert!(out.events.is_empty());
        assert_eq!(out.unparsed.len(), 1);
        // What a replay normalizes again: the callback's whole body, as it came.
        assert_eq!(out.unparsed[0].replay_body(), body);
        assert_eq!(
            out.unparsed[0].reason,
            "correlation id custom1: nested deeper than 64 levels"
        );
        // The event's own fields, as the provider's raw event.
        let raw: Value = serde_json::from_str(&out.unparsed[0].raw).expect("JSON");
        assert_eq!(raw["event"], "delivered");
    }

    #[test]
    fn legacy_dropped_is_failed() {
        let body = "code=605&description=Not+delivering+to+previously+bounced+address&reason=hardfail\
                    &event=dropped&recipient=bounce%40example.com&timestamp=1461261330&token=abc";
        let e = one(
            &CallbackRequest::post(body).with_content_type("application/x-www-form-urlencoded")
        );
        let s = status_of(&e);
        assert_eq!(s.status, Status::Failed);
        assert_eq!(
            s.error.as_ref().and_then(|e| e.message.as_deref()),
            Some("Not delivering to previously bounced address")
        );
        assert_eq!(
            e.idempotency_key,
            idempotency_key("mailgun", &["legacy", "abc"])
        );
    }

    const MULTIPART: &[u8] =
        include_bytes!("../../tests/golden/mailgun/routes_forward_multipart_attachments.body");
    const MULTIPART_CT: &str = "multipart/form-data; boundary=BoUnDaRyStRiNg";

    fn multipart_request(body: impl Into<bytes::Bytes>) -> CallbackRequest {
        CallbackRequest::post(body).with_content_type(MULTIPART_CT)
    }

    #[test]
    fn multipart_forward_verifies_with_the_official_vector() {
        let v = vector();
        let key = v["webhook_signing_key"].as_str().expect("key");
        let req = multipart_request(MULTIPART);
        verifier(key)
            .verify(&req, &VerifyOptions::default())
            .expect("valid");
        assert_eq!(token(&req).as_deref(), v["token"].as_str());
        assert!(matches!(
            verifier("key-other").verify(&req, &VerifyOptions::default()),
            Err(VerifyError::Mismatch)
        ));
        // The signature covers timestamp and token: another token fails.
        let other = v["negative_case_same_signature_other_token"]
            .as_str()
            .expect("token");
        let mine = v["token"].as_str().expect("token").as_bytes();
        let at = MULTIPART
            .windows(mine.len())
            .position(|w| w == mine)
            .expect("token in the body");
        let mut body = MULTIPART.to_vec();
        body.splice(at..at + mine.len(), other.bytes());
        assert!(matches!(
            verifier(key).verify(&multipart_request(body), &VerifyOptions::default()),
            Err(VerifyError::Mismatch)
        ));
        // A file named like a signature field is not one.
        let files_only = "--b\r\nContent-Disposition: form-data; name=\"token\"; filename=\"t\"\r\n\r\nx\r\n--b--";
        let req =
            CallbackRequest::post(files_only).with_content_type("multipart/form-data; boundary=b");
        assert!(matches!(
            verifier(key).verify(&req, &VerifyOptions::default()),
            Err(VerifyError::Missing(_))
        ));
        assert_eq!(token(&req), None);
        // Unreadable multipart: refused before any HMAC.
        let req =
            CallbackRequest::post("--b\r\n").with_content_type("multipart/form-data; boundary=b");
        assert!(matches!(
            verifier(key).verify(&req, &VerifyOptions::default()),
            Err(VerifyError::Unreadable(_))
        ));
    }

    #[test]
    fn multipart_forward_lists_attachments_without_their_bytes() {
        let e = one(&multipart_request(MULTIPART));
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound expected")
        };
        assert_eq!(m.from, "envelope-from@example.org");
        assert_eq!(m.source_message_id, "CAEPk3R+4Zr@mail.example.org");
        let listed: Vec<_> = m
            .media
            .iter()
            .map(|a| {
                (
                    a.name.as_deref(),
                    a.content_type.as_deref(),
                    a.size,
                    a.url.as_str(),
                )
            })
            .collect();
        assert_eq!(
            listed,
            [
                (Some("test.txt"), Some("text/plain"), Some(15), ""),
                (Some("image.png"), Some("image/png"), Some(70), "")
            ]
        );
        for format in [
            crate::payload::Format::Suprsend,
            crate::payload::Format::Standard,
        ] {
            let opts = crate::payload::PayloadOptions {
                format,
                ..crate::payload::PayloadOptions::default()
            };
            let payload = crate::payload::to_bytes(&e, &opts);
            let text = String::from_utf8_lossy(&payload);
            for leak in ["test attachment", "PNG", "IHDR", "IEND"] {
                assert!(!text.contains(leak), "{leak} in {text}");
            }
            assert!(!payload.windows(4).any(|w| w == b"\x89PNG"));
            assert!(text.contains("\"name\":\"image.png\""), "{text}");
            assert!(!text.contains("\"url\""), "{text}");
        }
        // Without attachments, a multipart forward is the URL-encoded one.
        let plain = "--b\r\nContent-Disposition: form-data; name=\"sender\"\r\n\r\nbob@example.com\r\n\
                     --b\r\nContent-Disposition: form-data; name=\"subject\"\r\n\r\nHej \u{e5}\r\n--b--\r\n";
        let e =
            one(&CallbackRequest::post(plain).with_content_type("multipart/form-data; boundary=b"));
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound expected")
        };
        assert_eq!((m.text.as_deref(), m.media.len()), (Some("Hej \u{e5}"), 0));
        // A legacy event webhook sent as multipart reads like the URL-encoded one.
        let legacy = "--b\r\nContent-Disposition: form-data; name=\"event\"\r\n\r\ndelivered\r\n\
                      --b\r\nContent-Disposition: form-data; name=\"recipient\"\r\n\r\na@example.com\r\n--b--";
        let e = one(
            &CallbackRequest::post(legacy).with_content_type("multipart/form-data; boundary=b")
        );
        assert_eq!(status_of(&e).status, Status::Delivered);
    }

    /// Thousands of mutations of the golden multipart body through normalize, verify and
    /// token: errors or events, never a panic.
    #[test]
    fn mutated_multipart_bodies_never_panic() {
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut rand = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            usize::try_from(state % (n.max(1) as u64)).unwrap_or(0)
        };
        let v = verifier("key-3ax6xnjp29jd6fds4gc373sgvjxteol0");
        for i in 0..3_000 {
            let mut body = MULTIPART.to_vec();
            for _ in 0..=rand(4) {
                let at = rand(body.len());
                match rand(3) {
                    0 => body[at] = u8::try_from(rand(256)).unwrap_or(0),
                    1 => {
                        let n = rand(16).min(body.len() - at);
                        body.drain(at..at + n);
                    }
                    _ => {
                        let piece: &[u8] =
                            [&b"\r\n--BoUnDaRyStRiNg"[..], b"--", b"\r\n\r\n", b"\""][rand(4)];
                        body.splice(at..at, piece.iter().copied());
                    }
                }
            }
            let ct = if i % 7 == 0 {
                "multipart/form-data; boundary=\"BoUnDaRyStRiNg\"; charset=utf-8"
            } else {
                MULTIPART_CT
            };
            let req = CallbackRequest::post(body).with_content_type(ct);
            let _ = normalize(&req, &ctx());
            let _ = v.verify(&req, &VerifyOptions::default());
            let _ = token(&req);
        }
    }

    #[test]
    fn route_forward_is_inbound() {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("recipient", "support@example.org")
            .append_pair("sender", "bob@example.com")
            .append_pair("from", "Bob <bob@example.com>")
            .append_pair("subject", "Re: Привет")
            .append_pair("body-plain", "Да, спасибо!\n> quoted")
            .append_pair("stripped-text", "Да, спасибо!")
            .append_pair("Message-Id", "<abc@mail.example.com>")
            .append_pair("In-Reply-To", "<orig@example.org>")
            .append_pair("timestamp", "1461261330")
            .append_pair("token", "t")
            .append_pair("signature", "s")
            .finish();
        let e = one(
            &CallbackRequest::post(body).with_content_type("application/x-www-form-urlencoded")
        );
        assert_eq!(e.channel_value, "bob@example.com");
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound expected")
        };
        assert_eq!(m.to, "support@example.org");
        assert_eq!(m.text.as_deref(), Some("Re: Привет\n\nДа, спасибо!"));
        assert_eq!(m.source_message_id, "abc@mail.example.com");
        assert_eq!(
            m.context.as_ref().map(|c| c.id.as_str()),
            Some("orig@example.org")
        );
        assert_eq!(m.timestamp_ms, 1_461_261_330_000);
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let json_ct =
            |b: &'static str| CallbackRequest::post(b).with_content_type("application/json");
        let form_ct = |b: &'static str| {
            CallbackRequest::post(b).with_content_type("application/x-www-form-urlencoded")
        };
        let cases: Vec<(CallbackRequest, &str)> = vec![
            (json_ct(""), "empty_body"),
            (json_ct("   "), "empty_body"),
            (CallbackRequest::post(""), "empty_body"),
            (form_ct(""), "empty_body"),
            (
                json_ct(r#"{"signature": {"timestamp": "1", "tok"#),
                "invalid_json",
            ),
            (json_ct("[]"), "shape"),
            (
                json_ct(r#"[{"event-data": {"event": "delivered"}}]"#),
                "shape",
            ),
            (json_ct(r#""text""#), "shape"),
            (json_ct(r#"{"signature": {}}"#), "missing_field"),
            (json_ct(r#"{"event-data": []}"#), "shape"),
            (
                json_ct(r#"{"event-data": {"recipient": "a@b.c"}}"#),
                "missing_field",
            ),
            (
                json_ct(r#"{"event-data": {"event": "delivered"}}"#),
                "missing_field",
            ),
            (
                json_ct(
                    r#"{"event-data": {"event": "delivered", "recipient": "a@b.c", "timestamp": "soon"}}"#,
                ),
                "invalid_field",
            ),
            (
                json_ct(
                    r#"{"event-data": {"event": "delivered", "recipient": "a@b.c", "timestamp": -5}}"#,
                ),
                "invalid_field",
            ),
            (
                json_ct(r#"{"event-data": {"event": "stored", "message": {"headers": {}}}}"#),
                "missing_field",
            ),
            (form_ct("foo=bar"), "missing_field"),
            (form_ct("event=delivered"), "missing_field"),
            (
                form_ct("event=delivered&recipient=a%40b.c&timestamp=yesterday"),
                "invalid_field",
            ),
            (
                CallbackRequest::post("--b\r\n")
                    .with_content_type("multipart/form-data; boundary=b"),
                "multipart",
            ),
            (
                CallbackRequest::post("--b\r\n\r\n--b--").with_content_type("multipart/form-data"),
                "multipart",
            ),
            (
                CallbackRequest::post("<xml/>").with_content_type("text/xml"),
                "content_type",
            ),
        ];
        for (req, kind) in cases {
            match normalize(&req, &ctx()) {
                Err(e) => assert_eq!(e.kind(), kind, "{:?}: {e}", req.body),
                Ok(n) => panic!("{:?} normalized to {n:?}", req.body),
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        // Many distinct parameters: handled in one pass, not one scan per name.
        let mut many = String::from("event=clicked&recipient=a%40b.c");
        for i in 0..200_000 {
            many.push_str(&format!("&k{i}=v"));
        }
        let e = one(
            &CallbackRequest::post(many).with_content_type("application/x-www-form-urlencoded")
        );
        // Every field read is kept (the first 100,000, event and recipient among them).
        assert_eq!(e.correlation.len(), crate::request::MAX_FORM_FIELDS - 2);
        let big = vec![b'{'; 10 * 1024 * 1024];
        assert!(
            normalize(
                &CallbackRequest::post(big.clone()).with_content_type("application/json"),
                &ctx()
            )
            .is_err()
        );
        assert!(normalize(&CallbackRequest::post(big), &ctx()).is_err());
        let junk: Vec<u8> = (0..100_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let _ = normalize(&CallbackRequest::post(junk.clone()), &ctx());
        let _ = normalize(
            &CallbackRequest::post(junk.clone())
                .with_content_type("application/x-www-form-urlencoded"),
            &ctx(),
        );
        let _ = verifier("k").verify(&CallbackRequest::post(junk), &VerifyOptions::default());
        for s in ["<", ">", "<>", "a<b", "é<x>", " , ", "\u{1F600} <😀@x>"] {
            let _ = first_address(s);
            let _ = strip_angle(s);
        }
        assert_eq!(first_address("é <😀@x>").as_deref(), Some("😀@x"));
    }
}
