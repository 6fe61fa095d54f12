//! MessageBird (Bird): SMS status reports, inbound SMS and Conversations API message
//! events (SMS and WhatsApp).
//!
//! # Callback format
//!
//! One event per request, in one of three shapes:
//!
//! - **SMS status report**: a `GET` with the report in the query string (MessageBird's
//!   default), or a `POST` of the same parameters as a form
//!   (`application/x-www-form-urlencoded`) or as a JSON object. Parameters: `id` (the
//!   message id), `reference` (the sender's own reference), `recipient`, `status`,
//!   `statusReason`, `statusErrorCode`, `statusDatetime` (RFC 3339), `mccmnc`, `ported`,
//!   `price[amount]`, `price[currency]`. A report is told apart by its `status`.
//! - **Inbound SMS**: the same transports, with `originator` (the sender), `recipient`
//!   (the number or short code it was sent to), `body` (or `message`), `id` (or `mid`) and
//!   `createdDatetime`, and no `status`.
//! - **Conversations API webhook**: a `POST` of JSON `{"type", "contact", "conversation",
//!   "message"}` where `type` is `message.created`, `message.updated`,
//!   `conversation.created` or `conversation.updated`, and `message` holds `id`,
//!   `conversationId`, `channelId`, `platform` (`sms`, `whatsapp`, …), `to`, `from`,
//!   `direction` (`sent` or `received`), `status`, `type`, `content`, `createdDatetime`,
//!   `updatedDatetime`. A message the business sent (`direction: sent`) is a status; one a
//!   user sent (`direction: received`) is an inbound message, whichever of `created` and
//!   `updated` reports it (the idempotency key is the same, so a repeat is a duplicate).
//!
//! Where each field of an event comes from:
//!
//! | field | SMS status report | inbound SMS | Conversations status | Conversations inbound |
//! |---|---|---|---|---|
//! | `channel` | `sms` | `sms` | `message.platform`: `sms` or `whatsapp` | same |
//! | `channel_value` | `recipient` | `originator` | `message.to` (else `contact.msisdn`) | `message.from` |
//! | `vendor_ack_id` | `id` | `id` (or `mid`) | `message.id` | `message.id` |
//! | time | `statusDatetime` | `createdDatetime` | `message.updatedDatetime`, else `createdDatetime` | `message.createdDatetime` |
//! | idempotency key | `id`, `recipient`, `status`, `statusDatetime` | `id`, `inbound` | `message.id`, `status` | `message.id`, `inbound` |
//!
//! - `vendor_ack_id` is the id MessageBird's send API returned: the `id` of the message
//!   object of `POST /messages` (one id for every recipient of the message, so a status
//!   report is keyed by recipient too), or the `id` that `POST /send` and
//!   `POST /conversations/start` return for a Conversations message. It is kept as sent.
//! - Phone numbers follow the E.164 rule of all providers: MessageBird writes SMS numbers
//!   without `+` (`31612345678`), which gets one; Conversations numbers already have it.
//!   A number sent as a JSON number is read as its digits. A business-scoped WhatsApp user
//!   id is kept as sent and is also `channel_user_id`.
//! - A time that is absent or unreadable is the time the callback was received.
//! - Error (`failed` only): SMS `{code: statusErrorCode, message: statusReason}`;
//!   Conversations `{code: error.code, message: error.description}` when the message has
//!   an `error` object.
//! - Correlation ids: the query parameters of the callback URL (the `reportUrl` the
//!   sender gave), under their own names, and the SMS `reference` as `reference`. On a
//!   `GET` the query also holds MessageBird's own parameters, which are left out by name
//!   (the report and inbound parameters above, and the legacy `shortcode`, `keyword`,
//!   `operator`, `receive_datetime`).
//! - Inbound Conversations content: `text` gives its text; `image`, `video`, `audio`,
//!   `file` a medium (`content.<type>.url`; the caption is the text) of type `image`,
//!   `video`, `audio`, `document`; `location` a location. Any other content type is
//!   `unsupported`, with the message kept in `vendor_response`.
//! - `vendor_response` is the report's parameters as a JSON object, or the whole
//!   Conversations webhook body.
//!
//! Not events: `conversation.created` and `conversation.updated` are about a
//! conversation, not a message, and become a [`Control::Ignored`]. A Conversations
//! message on a platform the payload has no channel for (Messenger, Telegram, LINE,
//! WeChat, e-mail, …: only `sms` and `whatsapp` are read) is kept as [`Unparsed`], the
//! whole body, as is a JSON body beyond the [`limits`](crate::limits).
//!
//! # Signature
//!
//! Header `MessageBird-Signature-JWT`: a JSON Web Token signed by MessageBird with the
//! account's signing key (HMAC-SHA256, `alg: HS256`), whose claims are `iss`
//! (`MessageBird`), `nbf` and `exp` (a minute apart), `jti` (unique per request),
//! `url_hash` (hex SHA-256 of the full URL called: scheme, host, path and query) and
//! `payload_hash` (hex SHA-256 of the raw body; absent when the body is empty). The check,
//! written here rather than with a JWT library:
//!
//! 1. the token has three base64url parts; the header is a JSON object whose `alg` is
//!    exactly `HS256` (`none` and every other algorithm are refused; MessageBird's own SDKs
//!    also accept `HS384` and `HS512`, which MessageBird does not use to sign);
//! 2. HMAC-SHA256(`signing_key`, `header.claims`) equals the signature, in constant time;
//! 3. `iss` is `MessageBird`; `jti`, `nbf` and `exp` are present;
//! 4. with a clock ([`VerifyOptions::now_secs`]), `nbf` is not later than now and `exp`
//!    is later than now, each with 5 seconds of leeway (the SDKs' tolerance); recorded
//!    requests (`now_secs: None`) get no clock check;
//! 5. `url_hash` equals SHA-256 of the URL MessageBird called: `public_url` (scheme,
//!    host, port, path) with the request's own query string, exactly as received;
//! 6. `payload_hash` equals SHA-256 of the raw body; without one, the body must be empty.
//!
//! Hashes are compared as bytes in constant time. `jti` is not remembered: a replayed
//! request within its minute is a duplicate by its idempotency key.
//!
//! # Verify keys
//!
//! | key | required | meaning |
//! |---|---|---|
//! | `signing_key` | yes | the signing key of the MessageBird dashboard (Developers → Settings); not the API access key |
//! | `public_url` | no | the public URL MessageBird calls, e.g. `https://notify.example.com/callbacks/messagebird`; its scheme, host and path are hashed with the request's own query string (or, when the request has none, `public_url`'s). Without it the request target must be an absolute URL, else verification fails with "messagebird needs verify.public_url" |
//!
//! # Status mapping
//!
//! SMS status reports:
//!
//! | `status` | status | notes |
//! |---|---|---|
//! | `scheduled` | `queued` | accepted, to be sent at its scheduled time |
//! | `sent` | `sent` | handed to the carrier |
//! | `buffered` | `queued` | informational: the carrier holds it (handset unreachable) and retries |
//! | `delivered` | `delivered` | |
//! | `expired` | `failed` | not delivered within its validity; error `{statusErrorCode, statusReason}` |
//! | `delivery_failed` | `failed` | error `{statusErrorCode, statusReason}` |
//! | anything else | `queued` | informational |
//!
//! Conversations messages (`direction: sent`):
//!
//! | `message.status` | status | notes |
//! |---|---|---|
//! | `accepted`, `pending` | `queued` | |
//! | `sent` | `sent` | |
//! | `delivered` | `delivered` | |
//! | `read` | `seen` | |
//! | `failed`, `rejected` | `failed` | error from `message.error` when present |
//! | `deleted`, anything else | `queued` | informational |
//! | `received` (or `direction: received`) | (inbound message) | |

use http::Method;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::event::{
    Channel, ChannelUser, ErrorInfo, Event, EventKind, InboundMessage, Location, Media, Status,
    StatusUpdate, idempotency_key, idempotency_key_of_value,
};
use crate::limits::TopLevel;
use crate::mac::{self, Hash};
use crate::phone::{e164, is_bsuid};
use crate::provider::signed_form::{FORM, callback_url, parse_public_url};
use crate::provider::{Context, Control, Normalized, Unparsed, VerifyOptions, VerifySettings};
use crate::request::pairs_to_json;
use crate::secret::ct_eq;
use crate::{CallbackRequest, NormalizeError, Secret, VerifyConfigError, VerifyError, timestamp};

/// Provider id.
const PROVIDER: &str = "messagebird";
/// Keys of the `verify:` block.
const KNOWN_KEYS: &[&str] = &["signing_key", "public_url"];
/// Header with the signed JWT.
const SIGNATURE_HEADER: &str = "messagebird-signature-jwt";
/// The only issuer MessageBird's tokens name.
const ISSUER: &str = "MessageBird";
/// Leeway of the `nbf` and `exp` checks, as MessageBird's SDKs allow.
const LEEWAY_SECS: i64 = 5;
/// Longest token read; MessageBird's are about 400 characters.
const MAX_TOKEN_LEN: usize = 8 * 1024;
/// MessageBird's own parameters of a `GET` report or inbound SMS (never correlation ids).
const OWN_PARAMS: &[&str] = &[
    "id",
    "mid",
    "reference",
    "recipient",
    "originator",
    "status",
    "statusReason",
    "statusErrorCode",
    "statusDatetime",
    "mccmnc",
    "ported",
    "price[amount]",
    "price[currency]",
    "body",
    "message",
    "createdDatetime",
    "shortcode",
    "keyword",
    "operator",
    "receive_datetime",
];

/// Checks the `MessageBird-Signature-JWT` header (HS256, URL and body hashes, validity).
#[derive(Debug, Clone)]
pub struct Verifier {
    signing_key: Secret,
    public_url: Option<String>,
}

impl Verifier {
    /// Builds the verifier from the `verify:` settings: `signing_key` (required),
    /// `public_url` (optional, an absolute `http(s)://` URL).
    pub fn from_settings(settings: &VerifySettings) -> Result<Self, VerifyConfigError> {
        settings.only(PROVIDER, KNOWN_KEYS)?;
        let signing_key = settings.require(PROVIDER, "signing_key")?.clone();
        let public_url = settings
            .get("public_url")
            .map(|u| parse_public_url(PROVIDER, u.expose()))
            .transpose()?;
        Ok(Self {
            signing_key,
            public_url,
        })
    }

    /// Checks the token's signature, its claims, and the URL and body hashes it signs
    /// (see the module docs); `nbf` and `exp` only when `opts` has a clock.
    pub fn verify(&self, req: &CallbackRequest, opts: &VerifyOptions) -> Result<(), VerifyError> {
        let token = req
            .headers
            .get(SIGNATURE_HEADER)
            .ok_or(VerifyError::Missing("MessageBird-Signature-JWT header"))?
            .to_str()
            .map_err(|_| {
                VerifyError::Malformed("MessageBird-Signature-JWT is not visible ASCII".into())
            })?
            .trim();
        if token.is_empty() {
            return Err(VerifyError::Missing("MessageBird-Signature-JWT header"));
        }
        let claims = verify_hs256(token, self.signing_key.expose().as_bytes())?;
        match claims.get("iss") {
            Some(Value::String(iss)) if iss == ISSUER => {}
            _ => {
                return Err(VerifyError::Malformed(format!("JWT iss is not {ISSUER:?}")));
            }
        }
        if !matches!(claims.get("jti"), Some(Value::String(j)) if !j.is_empty()) {
            return Err(VerifyError::Malformed("JWT has no jti claim".into()));
        }
        let nbf = time_claim(&claims, "nbf")?;
        let exp = time_claim(&claims, "exp")?;
        if let Some(now) = opts.now_secs {
            if now.saturating_add(LEEWAY_SECS) < nbf {
                return Err(VerifyError::Stale(format!(
                    "JWT not valid for {}s more (nbf)",
                    nbf.saturating_sub(now)
                )));
            }
            if now.saturating_sub(LEEWAY_SECS) >= exp {
                return Err(VerifyError::Stale(format!(
                    "JWT expired {}s ago (exp)",
                    now.saturating_sub(exp)
                )));
            }
        }
        let url = callback_url(PROVIDER, self.public_url.as_deref(), req)?.url;
        let url_hash = match claims.get("url_hash") {
            Some(Value::String(h)) => h,
            _ => return Err(VerifyError::Malformed("JWT has no url_hash claim".into())),
        };
        if !hash_matches(url_hash, url.as_bytes()) {
            return Err(VerifyError::Mismatch);
        }
        match claims.get("payload_hash") {
            Some(Value::String(h)) if hash_matches(h, &req.body) => Ok(()),
            Some(Value::String(_)) => Err(VerifyError::Mismatch),
            Some(_) => Err(VerifyError::Malformed(
                "JWT payload_hash is not a string".into(),
            )),
            // No payload_hash: MessageBird signed an empty body.
            None if req.body.is_empty() => Ok(()),
            None => Err(VerifyError::Mismatch),
        }
    }
}

/// Constant-time: `hex_text` is the SHA-256 of `data` in hexadecimal (either case).
fn hash_matches(hex_text: &str, data: &[u8]) -> bool {
    let mut claimed = [0u8; 32];
    hex_text.len() == 64
        && hex::decode_to_slice(hex_text, &mut claimed).is_ok()
        && ct_eq(&claimed, Sha256::digest(data).as_slice())
}

/// A required JWT time claim (`nbf`, `exp`) as whole seconds.
fn time_claim(claims: &Map<String, Value>, name: &'static str) -> Result<i64, VerifyError> {
    let secs = match claims.get(name) {
        Some(Value::Number(n)) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && f.abs() < 1e15)
                .map(|f| {
                    #[allow(clippy::cast_possible_truncation)]
                    let s = f.trunc() as i64;
                    s
                })
        }),
        _ => None,
    };
    secs.ok_or_else(|| VerifyError::Malformed(format!("JWT has no numeric {name} claim")))
}

/// Decodes one base64url part of a token (no padding, as JWTs are written).
fn b64url(part: &str, what: &str) -> Result<Vec<u8>, VerifyError> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| VerifyError::Malformed(format!("JWT {what} is not base64url: {e}")))
}

/// Checks an HS256 JWT against `key` and returns its claims. The header must be a JSON
/// object whose `alg` is exactly `HS256`; the signature is compared in constant time
/// before the claims are read.
fn verify_hs256(token: &str, key: &[u8]) -> Result<Map<String, Value>, VerifyError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(VerifyError::Malformed(format!(
            "JWT longer than {MAX_TOKEN_LEN} characters"
        )));
    }
    let mut parts = token.split('.');
    let (Some(h64), Some(c64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VerifyError::Malformed(
            "JWT does not have three parts".into(),
        ));
    };
    let header: Value = serde_json::from_slice(&b64url(h64, "header")?)
        .map_err(|e| VerifyError::Malformed(format!("JWT header is not JSON: {e}")))?;
    match header.get("alg") {
        Some(Value::String(a)) if a == "HS256" => {}
        Some(Value::String(a)) => {
            return Err(VerifyError::Malformed(format!(
                "JWT alg {a:?}, expected HS256"
            )));
        }
        _ => return Err(VerifyError::Malformed("JWT header has no alg".into())),
    }
    let sig = b64url(s64, "signature")?;
    if !mac::hmac(Hash::Sha256, key, &[h64.as_bytes(), b".", c64.as_bytes()]).matches(&sig) {
        return Err(VerifyError::Mismatch);
    }
    match serde_json::from_slice::<Value>(&b64url(c64, "claims")?) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(VerifyError::Malformed(
            "JWT claims are not a JSON object".into(),
        )),
        Err(e) => Err(VerifyError::Malformed(format!(
            "JWT claims are not JSON: {e}"
        ))),
    }
}

/// Normalizes one MessageBird callback: an SMS status report or inbound SMS (`GET` query,
/// `POST` form or JSON), or a Conversations API webhook (`POST` JSON).
pub fn normalize(req: &CallbackRequest, ctx: &Context) -> Result<Normalized, NormalizeError> {
    if req.method == Method::GET {
        let pairs = req.query_pairs();
        if pairs.is_empty() {
            return Err(NormalizeError::MissingField(
                "query parameters (GET callback)".into(),
            ));
        }
        let correlation = query_correlation(&pairs, true);
        let Value::Object(params) = pairs_to_json(&pairs) else {
            return Err(NormalizeError::shape("query", "parameters"));
        };
        return sms(params, correlation, ctx).map(|e| Normalized::events(vec![e]));
    }
    if req.method != Method::POST {
        return Err(NormalizeError::UnsupportedMethod {
            provider: PROVIDER,
            method: req.method.to_string(),
        });
    }
    req.expect_content_type(
        PROVIDER,
        &["application/json", FORM],
        "application/json or application/x-www-form-urlencoded",
    )?;
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Err(NormalizeError::EmptyBody);
    }
    let correlation = query_correlation(&req.query_pairs(), false);
    let json = req.is_json() || (!req.is_form() && starts_like_json(&req.body));
    if !json {
        let pairs = req.form_pairs();
        let Value::Object(params) = pairs_to_json(&pairs) else {
            return Err(NormalizeError::shape("body", "form parameters"));
        };
        return sms(params, correlation, ctx).map(|e| Normalized::events(vec![e]));
    }
    if let Some(held) = req.beyond_limits(TopLevel::Object) {
        return Ok(Normalized::one_unparsed(held));
    }
    let doc = req.json()?;
    let Value::Object(params) = doc else {
        return Err(NormalizeError::shape("", "a JSON object"));
    };
    if is_conversations(&params) {
        return conversations(params, correlation, &req.body, ctx);
    }
    sms(params, correlation, ctx).map(|e| Normalized::events(vec![e]))
}

/// True when the body starts (after whitespace) with `{` or `[`.
fn starts_like_json(body: &[u8]) -> bool {
    matches!(
        body.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    )
}

/// The callback URL's query parameters as correlation ids (first value of a repeated
/// name); on a `GET`, without MessageBird's own parameters.
fn query_correlation(pairs: &[(String, String)], get: bool) -> Map<String, Value> {
    let mut map = Map::new();
    for (k, v) in pairs {
        if get && OWN_PARAMS.contains(&k.as_str()) {
            continue;
        }
        map.entry(k.clone())
            .or_insert_with(|| Value::String(v.clone()));
    }
    map
}

/// A field by key, a string or a number as its text; empty strings count as absent.
fn text_of(v: &Map<String, Value>, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A time field in epoch ms, when present and readable.
fn time_of(v: &Map<String, Value>, key: &str) -> Option<i64> {
    match v.get(key)? {
        // Times are ASCII; anything else is left to the receive time.
        Value::String(s) if s.is_ascii() => timestamp::parse_str_ms(s),
        _ => None,
    }
}

/// An SMS status report (has `status`) or inbound SMS (has `originator`).
fn sms(
    params: Map<String, Value>,
    mut correlation: Map<String, Value>,
    ctx: &Context,
) -> Result<Event, NormalizeError> {
    if let Some(reference) = text_of(&params, "reference") {
        correlation
            .entry("reference")
            .or_insert(Value::String(reference));
    }
    if params.contains_key("status") {
        return sms_status(params, correlation, ctx);
    }
    if params.contains_key("originator") {
        return sms_inbound(params, correlation, ctx);
    }
    Err(NormalizeError::MissingField(
        "status (a status report) or originator (an inbound SMS)".into(),
    ))
}

/// What an SMS `status` means: the status and whether it is informational.
fn map_sms_status(status: &str) -> (Status, bool) {
    match status.to_ascii_lowercase().as_str() {
        "scheduled" => (Status::Queued, false),
        "sent" => (Status::Sent, false),
        "buffered" => (Status::Queued, true),
        "delivered" => (Status::Delivered, false),
        "expired" | "delivery_failed" => (Status::Failed, false),
        _ => (Status::Queued, true),
    }
}

fn sms_status(
    params: Map<String, Value>,
    correlation: Map<String, Value>,
    ctx: &Context,
) -> Result<Event, NormalizeError> {
    let id = text_of(&params, "id").ok_or_else(|| NormalizeError::MissingField("id".into()))?;
    let recipient = text_of(&params, "recipient")
        .ok_or_else(|| NormalizeError::MissingField("recipient".into()))?;
    let status_value =
        text_of(&params, "status").ok_or_else(|| NormalizeError::MissingField("status".into()))?;
    let (status, informational) = map_sms_status(&status_value);
    let at = text_of(&params, "statusDatetime").unwrap_or_default();
    let error = (status == Status::Failed)
        .then(|| {
            ErrorInfo::from_parts(
                text_of(&params, "statusErrorCode"),
                text_of(&params, "statusReason"),
            )
        })
        .flatten();
    let timestamp_ms = time_of(&params, "statusDatetime").unwrap_or(ctx.received_at_ms);
    let channel_value = e164(&recipient);
    Ok(Event {
        channel: Channel::Sms,
        channel_value,
        channel_user: ChannelUser::default(),
        vendor_name: PROVIDER.to_owned(),
        idempotency_key: idempotency_key(PROVIDER, &[&id, &recipient, &status_value, &at]),
        vendor_ack_id: Some(id),
        correlation,
        kind: EventKind::Status(StatusUpdate {
            status,
            timestamp_ms,
            error,
            informational,
        }),
        raw: Value::Object(params).into(),
    })
}

fn sms_inbound(
    params: Map<String, Value>,
    correlation: Map<String, Value>,
    ctx: &Context,
) -> Result<Event, NormalizeError> {
    let from = text_of(&params, "originator")
        .map(|o| e164(&o))
        .ok_or_else(|| NormalizeError::MissingField("originator".into()))?;
    let to = text_of(&params, "recipient")
        .map(|r| e164(&r))
        .unwrap_or_default();
    let text = match params.get("body").or_else(|| params.get("message")) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    let id = text_of(&params, "id").or_else(|| text_of(&params, "mid"));
    let timestamp_ms = time_of(&params, "createdDatetime").unwrap_or(ctx.received_at_ms);
    let raw = Value::Object(params);
    let idempotency_key = match &id {
        Some(id) => idempotency_key(PROVIDER, &[id, "inbound"]),
        None => idempotency_key_of_value(PROVIDER, &raw),
    };
    Ok(Event {
        channel: Channel::Sms,
        channel_value: from.clone(),
        channel_user: ChannelUser::default(),
        vendor_name: PROVIDER.to_owned(),
        vendor_ack_id: id.clone(),
        idempotency_key,
        correlation,
        kind: EventKind::Inbound(InboundMessage {
            from,
            to,
            message_type: "text".to_owned(),
            text,
            media: Vec::new(),
            location: None,
            context: None,
            timestamp_ms,
            source_message_id: id.unwrap_or_default(),
            original_message_id: None,
        }),
        raw: raw.into(),
    })
}

/// True for a Conversations API webhook: a `type` naming a message or conversation event,
/// or a `message` object beside a `type`.
fn is_conversations(doc: &Map<String, Value>) -> bool {
    match doc.get("type") {
        Some(Value::String(t)) => {
            t.starts_with("message.")
                || t.starts_with("conversation.")
                || doc.get("message").is_some_and(Value::is_object)
        }
        _ => false,
    }
}

/// What a Conversations `message.status` means: the status and whether it is
/// informational.
fn map_conversation_status(status: &str) -> (Status, bool) {
    match status.to_ascii_lowercase().as_str() {
        "accepted" | "pending" => (Status::Queued, false),
        "sent" => (Status::Sent, false),
        "delivered" => (Status::Delivered, false),
        "read" => (Status::Seen, false),
        "failed" | "rejected" => (Status::Failed, false),
        _ => (Status::Queued, true),
    }
}

/// A Conversations API webhook: a message event, or a conversation event left out.
fn conversations(
    doc: Map<String, Value>,
    correlation: Map<String, Value>,
    body: &[u8],
    ctx: &Context,
) -> Result<Normalized, NormalizeError> {
    let kind = match doc.get("type") {
        Some(Value::String(t)) => t.clone(),
        _ => return Err(NormalizeError::MissingField("type".into())),
    };
    if kind.starts_with("conversation.") {
        let id = doc
            .get("conversation")
            .and_then(Value::as_object)
            .and_then(|c| text_of(c, "id"))
            .unwrap_or_default();
        return Ok(Normalized::control(Control::Ignored {
            reason: format!(
                "MessageBird {} (conversation {}), about no message, not delivered",
                one_line(&kind),
                one_line(&id)
            ),
        }));
    }
    let message = match doc.get("message") {
        Some(Value::Object(m)) => m,
        Some(_) => return Err(NormalizeError::shape("/message", "an object")),
        None => return Err(NormalizeError::MissingField("/message".into())),
    };
    let platform = text_of(message, "platform")
        .ok_or_else(|| NormalizeError::MissingField("/message/platform".into()))?;
    let channel = match platform.to_ascii_lowercase().as_str() {
        "sms" => Channel::Sms,
        "whatsapp" => Channel::Whatsapp,
        _ => {
            // No retry fixes it: kept whole, as Vonage's unknown channels are.
            let text = String::from_utf8_lossy(body).into_owned();
            return Ok(Normalized::one_unparsed(Unparsed::new(
                format!(
                    "MessageBird platform {:?} has no channel in the payload",
                    one_line(&platform)
                ),
                text,
            )));
        }
    };
    let id =
        text_of(message, "id").ok_or_else(|| NormalizeError::MissingField("/message/id".into()))?;
    let status_value = text_of(message, "status");
    let inbound = match text_of(message, "direction") {
        Some(d) => d.eq_ignore_ascii_case("received"),
        None => status_value
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("received")),
    };
    let mut event = if inbound {
        conversation_inbound(message, channel, id, correlation, ctx)?
    } else {
        let status_value =
            status_value.ok_or_else(|| NormalizeError::MissingField("/message/status".into()))?;
        conversation_status(&doc, message, channel, id, status_value, correlation, ctx)
    };
    // The provider's own event is the whole webhook body.
    event.raw = Value::Object(doc).into();
    Ok(Normalized::events(vec![event]))
}

/// `text` on one line, at most 100 characters (for reasons).
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(100)
        .collect()
}

/// The user's identifiers besides the address: a WhatsApp business-scoped user id
/// written where the number would be.
fn channel_user(channel: Channel, address: &str) -> ChannelUser {
    let mut user = ChannelUser::default();
    if channel == Channel::Whatsapp && is_bsuid(address) {
        user.user_id = Some(address.trim().to_owned());
    }
    user
}

fn conversation_status(
    doc: &Map<String, Value>,
    message: &Map<String, Value>,
    channel: Channel,
    id: String,
    status_value: String,
    correlation: Map<String, Value>,
    ctx: &Context,
) -> Event {
    let (status, informational) = map_conversation_status(&status_value);
    let recipient = text_of(message, "to")
        .or_else(|| {
            doc.get("contact")
                .and_then(Value::as_object)
                .and_then(|c| text_of(c, "msisdn"))
        })
        .map(|to| e164(&to))
        .unwrap_or_default();
    let error = (status == Status::Failed)
        .then(|| {
            let e = message.get("error").and_then(Value::as_object)?;
            ErrorInfo::from_parts(text_of(e, "code"), text_of(e, "description"))
        })
        .flatten();
    let timestamp_ms = time_of(message, "updatedDatetime")
        .or_else(|| time_of(message, "createdDatetime"))
        .unwrap_or(ctx.received_at_ms);
    Event {
        channel,
        channel_user: channel_user(channel, &recipient),
        channel_value: recipient,
        vendor_name: PROVIDER.to_owned(),
        idempotency_key: idempotency_key(PROVIDER, &[&id, &status_value]),
        vendor_ack_id: Some(id),
        correlation,
        kind: EventKind::Status(StatusUpdate {
            status,
            timestamp_ms,
            error,
            informational,
        }),
        raw: Value::Null.into(),
    }
}

/// The inbound content of a Conversations message: type, text, media, location.
fn content_of(
    message: &Map<String, Value>,
) -> (&'static str, Option<String>, Vec<Media>, Option<Location>) {
    let kind = text_of(message, "type").unwrap_or_default();
    let content = message.get("content").and_then(Value::as_object);
    let field = |name: &str| content.and_then(|c| c.get(name)).and_then(Value::as_object);
    let text_field =
        |obj: Option<&Map<String, Value>>, name: &str| match obj.and_then(|o| o.get(name)) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
    match kind.as_str() {
        "text" => ("text", text_field(content, "text"), Vec::new(), None),
        "image" | "video" | "audio" | "file" => {
            let media_type = match kind.as_str() {
                "image" => "image",
                "video" => "video",
                "audio" => "audio",
                _ => "document",
            };
            let obj = field(&kind);
            let media = text_field(obj, "url")
                .map(|url| vec![Media::at(url, None)])
                .unwrap_or_default();
            (media_type, text_field(obj, "caption"), media, None)
        }
        "location" => {
            let location = field("location").and_then(|l| {
                Some(Location {
                    latitude: l.get("latitude")?.as_f64()?,
                    longitude: l.get("longitude")?.as_f64()?,
                    name: None,
                    address: None,
                })
            });
            ("location", None, Vec::new(), location)
        }
        _ => ("unsupported", None, Vec::new(), None),
    }
}

fn conversation_inbound(
    message: &Map<String, Value>,
    channel: Channel,
    id: String,
    correlation: Map<String, Value>,
    ctx: &Context,
) -> Result<Event, NormalizeError> {
    let from = text_of(message, "from")
        .map(|f| e164(&f))
        .ok_or_else(|| NormalizeError::MissingField("/message/from".into()))?;
    let to = text_of(message, "to").map(|t| e164(&t)).unwrap_or_default();
    let (message_type, text, media, location) = content_of(message);
    let timestamp_ms = time_of(message, "createdDatetime").unwrap_or(ctx.received_at_ms);
    Ok(Event {
        channel,
        channel_user: channel_user(channel, &from),
        channel_value: from.clone(),
        vendor_name: PROVIDER.to_owned(),
        vendor_ack_id: Some(id.clone()),
        idempotency_key: idempotency_key(PROVIDER, &[&id, "inbound"]),
        correlation,
        kind: EventKind::Inbound(InboundMessage {
            from,
            to,
            message_type: message_type.to_owned(),
            text,
            media,
            location,
            context: None,
            timestamp_ms,
            source_message_id: id,
            original_message_id: None,
        }),
        raw: Value::Null.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue, Uri};
    use serde_json::json;

    use crate::event::EventKind;

    const REFERENCE: &str =
        include_str!("../../tests/fixtures/messagebird/webhook_signature_jwt_reference.json");
    const SMS_DELIVERED_QUERY: &str =
        include_str!("../../tests/fixtures/messagebird/sms_status_delivered_query.txt");
    const WA_CREATED_PENDING: &str = include_str!(
        "../../tests/fixtures/messagebird/conversations_whatsapp_message_created_pending.json"
    );
    const WA_INBOUND_TEXT: &str =
        include_str!("../../tests/fixtures/messagebird/conversations_whatsapp_inbound_text.json");

    const CTX: Context = Context {
        received_at_ms: 1_700_000_000_000,
    };
    const KEY: &str = "36efdd1aace2e26cd490f0d951138253bef2f7c6d34d18981da781555cc4cebb";
    const PUBLIC_URL: &str = "https://notify.example.com/callbacks/messagebird";
    /// Inside the reference tokens' minute (`nbf` 1625479200, `exp` 1625479260).
    const NOW: i64 = 1_625_479_200;

    fn verifier(key: &str, public_url: Option<&str>) -> Verifier {
        let mut s = VerifySettings::new().with("signing_key", key);
        if let Some(u) = public_url {
            s.insert("public_url", u);
        }
        Verifier::from_settings(&s).expect("verifier")
    }

    fn clock(now: i64) -> VerifyOptions {
        VerifyOptions {
            now_secs: Some(now),
            tolerance_secs: None,
        }
    }

    fn request(method: Method, uri: &str, body: &[u8], token: Option<&str>) -> CallbackRequest {
        let mut headers = HeaderMap::new();
        if let Some(t) = token {
            headers.insert(SIGNATURE_HEADER, HeaderValue::from_str(t).expect("token"));
        }
        CallbackRequest {
            method,
            uri: uri.parse::<Uri>().expect("uri"),
            headers,
            body: Bytes::copy_from_slice(body),
        }
    }

    /// A token over `header` and `claims`, signed with `key`.
    fn token(header: &Value, claims: &Value, key: &str) -> String {
        let h64 = URL_SAFE_NO_PAD.encode(header.to_string());
        let c64 = URL_SAFE_NO_PAD.encode(claims.to_string());
        let tag = mac::hmac(
            Hash::Sha256,
            key.as_bytes(),
            &[h64.as_bytes(), b".", c64.as_bytes()],
        );
        format!("{h64}.{c64}.{}", URL_SAFE_NO_PAD.encode(tag.as_bytes()))
    }

    fn sha256_hex(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    /// Claims MessageBird would sign for `url` and `body` at `NOW`.
    fn claims(url: &str, body: &[u8]) -> Value {
        let mut c = json!({
            "iss": "MessageBird", "nbf": NOW, "exp": NOW + 60,
            "jti": "59a244dc-e9ad-4e23-9778-371faa238f72", "url_hash": sha256_hex(url.as_bytes()),
        });
        if !body.is_empty() {
            c["payload_hash"] = json!(sha256_hex(body));
        }
        c
    }

    fn hs256() -> Value {
        json!({"alg": "HS256", "typ": "JWT"})
    }

    #[test]
    fn the_sdk_reference_cases() {
        let cases: Vec<Value> = serde_json::from_str(REFERENCE).expect("reference json");
        assert_eq!(cases.len(), 44);
        for case in &cases {
            let name = case["name"].as_str().expect("name");
            let url = case["url"].as_str().expect("url");
            let (base, _) = url.split_once('?').unwrap_or((url, ""));
            let target = url
                .split_once("://")
                .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
                .expect("path");
            let method = Method::from_bytes(case["method"].as_str().expect("method").as_bytes())
                .expect("method");
            let body = case["payload"].as_str().unwrap_or("").as_bytes();
            let now = timestamp::parse_str_ms(case["timestamp"].as_str().expect("timestamp"))
                .expect("time")
                / 1000;
            let key = case["secret"].as_str().unwrap_or("unused key");
            let req = request(method, target, body, case["token"].as_str());
            let result = verifier(key, Some(base)).verify(&req, &clock(now));
            let valid = case["valid"].as_bool().expect("valid");
            let refused_alg = name.starts_with("HS384") || name.starts_with("HS512");
            match (&result, case["reason"].as_str()) {
                (Ok(()), _) => assert!(valid && !refused_alg, "{name}: passed"),
                (Err(VerifyError::Malformed(m)), _) if refused_alg => {
                    assert!(m.contains("expected HS256"), "{name}: {m}");
                }
                (Err(e), Some(reason)) => {
                    assert!(!valid, "{name}: {e}");
                    let expected = match reason {
                        r if r.contains("nbf") || r.contains("exp") => "stale",
                        r if r.contains("none") => "malformed_signature",
                        _ => "signature_mismatch",
                    };
                    assert_eq!(e.kind(), expected, "{name}: {e}");
                }
                (Err(e), None) => panic!("{name}: refused: {e}"),
            }
        }
    }

    #[test]
    fn a_token_binds_the_url_the_body_and_the_key() {
        let body = br#"{"type":"message.created"}"#;
        let url = format!("{PUBLIC_URL}?tenant=t1");
        let t = token(&hs256(), &claims(&url, body), KEY);
        let v = verifier(KEY, Some(PUBLIC_URL));
        let ok = request(
            Method::POST,
            "/callbacks/messagebird?tenant=t1",
            body,
            Some(&t),
        );
        v.verify(&ok, &clock(NOW)).expect("valid");
        v.verify(&ok, &VerifyOptions::default())
            .expect("no clock, no time check");
        // Tampered body.
        let tampered = request(
            Method::POST,
            "/callbacks/messagebird?tenant=t1",
            br#"{"type":"message.updated"}"#,
            Some(&t),
        );
        assert!(matches!(
            v.verify(&tampered, &clock(NOW)),
            Err(VerifyError::Mismatch)
        ));
        // Tampered query, and another public URL.
        let moved = request(
            Method::POST,
            "/callbacks/messagebird?tenant=t2",
            body,
            Some(&t),
        );
        assert!(matches!(
            v.verify(&moved, &clock(NOW)),
            Err(VerifyError::Mismatch)
        ));
        let elsewhere = verifier(KEY, Some("https://other.example.com/callbacks/messagebird"));
        assert!(elsewhere.verify(&ok, &clock(NOW)).is_err());
        // Another key.
        assert!(matches!(
            verifier("another key", Some(PUBLIC_URL)).verify(&ok, &clock(NOW)),
            Err(VerifyError::Mismatch)
        ));
        // A flipped signature character.
        let mut flipped = t.clone();
        let last = if flipped.ends_with('A') { 'B' } else { 'A' };
        flipped.pop();
        flipped.push(last);
        let req = request(
            Method::POST,
            "/callbacks/messagebird?tenant=t1",
            body,
            Some(&flipped),
        );
        assert!(v.verify(&req, &clock(NOW)).is_err());
        // The body removed in transit.
        let empty = request(
            Method::POST,
            "/callbacks/messagebird?tenant=t1",
            b"",
            Some(&t),
        );
        assert!(matches!(
            v.verify(&empty, &clock(NOW)),
            Err(VerifyError::Mismatch)
        ));
    }

    #[test]
    fn an_unsigned_body_is_refused() {
        // No payload_hash: only an empty body was signed.
        let url = PUBLIC_URL.to_owned();
        let t = token(&hs256(), &claims(&url, b""), KEY);
        let v = verifier(KEY, Some(PUBLIC_URL));
        v.verify(
            &request(Method::GET, "/callbacks/messagebird", b"", Some(&t)),
            &clock(NOW),
        )
        .expect("empty body");
        let added = request(Method::POST, "/callbacks/messagebird", b"id=1", Some(&t));
        assert!(matches!(
            v.verify(&added, &clock(NOW)),
            Err(VerifyError::Mismatch)
        ));
    }

    #[test]
    fn validity_window_with_leeway() {
        let url = PUBLIC_URL.to_owned();
        let t = token(&hs256(), &claims(&url, b""), KEY);
        let v = verifier(KEY, Some(PUBLIC_URL));
        let req = request(Method::GET, "/callbacks/messagebird", b"", Some(&t));
        for (now, ok) in [
            (NOW - 6, false),
            (NOW - 5, true),
            (NOW, true),
            (NOW + 60 + 4, true),
            (NOW + 60 + 5, false),
            (NOW + 3600, false),
        ] {
            let result = v.verify(&req, &clock(now));
            assert_eq!(result.is_ok(), ok, "now {now}: {result:?}");
            if !ok {
                assert!(matches!(result, Err(VerifyError::Stale(_))), "{result:?}");
            }
        }
    }

    #[test]
    fn claims_and_algorithms_are_checked() {
        let url = PUBLIC_URL.to_owned();
        let v = verifier(KEY, Some(PUBLIC_URL));
        let check = |header: Value, claims: Value| {
            let t = token(&header, &claims, KEY);
            v.verify(
                &request(Method::GET, "/callbacks/messagebird", b"", Some(&t)),
                &clock(NOW),
            )
        };
        let good = claims(&url, b"");
        check(hs256(), good.clone()).expect("good");
        for alg in ["none", "HS384", "HS512", "RS256", "hs256", ""] {
            let e = check(json!({"alg": alg, "typ": "JWT"}), good.clone()).expect_err(alg);
            assert!(matches!(e, VerifyError::Malformed(_)), "{alg}: {e}");
        }
        assert!(check(json!({"typ": "JWT"}), good.clone()).is_err());
        for drop in ["iss", "jti", "nbf", "exp", "url_hash"] {
            let mut c = good.clone();
            c.as_object_mut().expect("object").remove(drop);
            assert!(check(hs256(), c).is_err(), "without {drop}");
        }
        let mut other_issuer = good.clone();
        other_issuer["iss"] = json!("Bird");
        assert!(check(hs256(), other_issuer).is_err());
        let mut text_exp = good.clone();
        text_exp["exp"] = json!("1625479260");
        assert!(check(hs256(), text_exp).is_err());
        let mut upper = good.clone();
        upper["url_hash"] = json!(sha256_hex(url.as_bytes()).to_ascii_uppercase());
        check(hs256(), upper).expect("hex digits in either case");
        let mut short = good;
        short["url_hash"] = json!("00");
        assert!(check(hs256(), short).is_err());
    }

    #[test]
    fn alg_none_without_a_signature_is_refused() {
        let h64 = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let c64 = URL_SAFE_NO_PAD.encode(claims(PUBLIC_URL, b"").to_string());
        let v = verifier(KEY, Some(PUBLIC_URL));
        for t in [format!("{h64}.{c64}."), format!("{h64}.{c64}")] {
            let req = request(Method::GET, "/callbacks/messagebird", b"", Some(&t));
            assert!(v.verify(&req, &clock(NOW)).is_err(), "{t}");
        }
    }

    #[test]
    fn missing_or_malformed_headers() {
        let v = verifier(KEY, Some(PUBLIC_URL));
        let none = request(Method::GET, "/callbacks/messagebird", b"", None);
        assert!(matches!(
            v.verify(&none, &clock(NOW)),
            Err(VerifyError::Missing(_))
        ));
        let blank = request(Method::GET, "/callbacks/messagebird", b"", Some(" "));
        assert!(matches!(
            v.verify(&blank, &clock(NOW)),
            Err(VerifyError::Missing(_))
        ));
        for t in [
            "a.b",
            "a.b.c.d",
            "!!!.e30.e30",
            "e30.e30.e30",
            &"a".repeat(10_000),
        ] {
            let req = request(Method::GET, "/callbacks/messagebird", b"", Some(t));
            assert!(v.verify(&req, &clock(NOW)).is_err(), "{t}");
        }
        // Without public_url, a relative target cannot be hashed.
        let t = token(&hs256(), &claims(PUBLIC_URL, b""), KEY);
        let relative = request(Method::GET, "/callbacks/messagebird", b"", Some(&t));
        let e = verifier(KEY, None)
            .verify(&relative, &clock(NOW))
            .expect_err("no public_url");
        assert!(
            e.to_string()
                .contains("messagebird needs verify.public_url"),
            "{e}"
        );
        // An absolute target needs none.
        let absolute = request(Method::GET, PUBLIC_URL, b"", Some(&t));
        verifier(KEY, None)
            .verify(&absolute, &clock(NOW))
            .expect("absolute target");
    }

    #[test]
    fn settings_fail_closed() {
        assert!(Verifier::from_settings(&VerifySettings::new()).is_err());
        assert!(Verifier::from_settings(&VerifySettings::new().with("signing_key", " ")).is_err());
        assert!(
            Verifier::from_settings(
                &VerifySettings::new()
                    .with("signing_key", "k")
                    .with("access_key", "x")
            )
            .is_err()
        );
        assert!(
            Verifier::from_settings(
                &VerifySettings::new()
                    .with("signing_key", "k")
                    .with("public_url", "notify.example.com/cb")
            )
            .is_err()
        );
        let v = verifier("hunter2", Some(PUBLIC_URL));
        assert!(!format!("{v:?}").contains("hunter2"));
    }

    fn one(req: &CallbackRequest) -> Event {
        let out = normalize(req, &CTX).expect("normalize");
        assert!(out.unparsed.is_empty() && out.control.is_none(), "{out:?}");
        assert_eq!(out.events.len(), 1);
        out.events.into_iter().next().expect("event")
    }

    fn get(query: &str) -> CallbackRequest {
        request(
            Method::GET,
            &format!("/callbacks/messagebird?{query}"),
            b"",
            None,
        )
    }

    fn post(uri: &str, body: &str, content_type: &str) -> CallbackRequest {
        let mut r = request(Method::POST, uri, body.as_bytes(), None);
        if !content_type.is_empty() {
            r.headers.insert(
                "content-type",
                HeaderValue::from_str(content_type).expect("ct"),
            );
        }
        r
    }

    fn status(e: &Event) -> &StatusUpdate {
        e.status().expect("status")
    }

    #[test]
    fn sms_status_report_by_get() {
        let e = one(&get(SMS_DELIVERED_QUERY));
        assert_eq!(e.channel, Channel::Sms);
        assert_eq!(e.channel_value, "+31612345678");
        assert_eq!(
            e.vendor_ack_id.as_deref(),
            Some("e8077d803532c0b5937c639b60216938")
        );
        let s = status(&e);
        assert_eq!((s.status, s.informational), (Status::Delivered, false));
        assert_eq!(s.timestamp_ms, 1_462_265_890_000);
        assert_eq!(s.error, None);
        assert_eq!(
            e.correlation,
            json!({"reference": "YouReference123"})
                .as_object()
                .cloned()
                .expect("obj")
        );
        assert_eq!(
            e.raw.to_value()["statusDatetime"],
            "2016-05-03T08:58:10+00:00"
        );
        // A retry has the same key; another status of the message another.
        assert_eq!(
            one(&get(SMS_DELIVERED_QUERY)).idempotency_key,
            e.idempotency_key
        );
        let sent = one(&get(&SMS_DELIVERED_QUERY.replace("=delivered", "=sent")));
        assert_ne!(sent.idempotency_key, e.idempotency_key);
        // The app's own query parameters are correlation ids, MessageBird's are not.
        let e = one(&get(&format!(
            "distinct_id=u1&{SMS_DELIVERED_QUERY}&mccmnc=20408"
        )));
        assert_eq!(e.correlation.get("distinct_id"), Some(&json!("u1")));
        assert!(!e.correlation.contains_key("mccmnc"));
        assert!(!e.correlation.contains_key("status"));
    }

    #[test]
    fn sms_status_mapping() {
        for (value, s, info) in [
            ("scheduled", Status::Queued, false),
            ("sent", Status::Sent, false),
            ("buffered", Status::Queued, true),
            ("delivered", Status::Delivered, false),
            ("expired", Status::Failed, false),
            ("delivery_failed", Status::Failed, false),
            ("DELIVERED", Status::Delivered, false),
            ("teleported", Status::Queued, true),
        ] {
            assert_eq!(map_sms_status(value), (s, info), "{value}");
        }
        for (value, s, info) in [
            ("accepted", Status::Queued, false),
            ("pending", Status::Queued, false),
            ("sent", Status::Sent, false),
            ("delivered", Status::Delivered, false),
            ("read", Status::Seen, false),
            ("failed", Status::Failed, false),
            ("rejected", Status::Failed, false),
            ("deleted", Status::Queued, true),
            ("unknown", Status::Queued, true),
        ] {
            assert_eq!(map_conversation_status(value), (s, info), "{value}");
        }
    }

    #[test]
    fn sms_status_report_by_post_form_and_json() {
        let form = "id=e8077d803532c0b5937c639b60216938&reference=r-1&recipient=31612345678\
            &status=delivery_failed&statusReason=unknown+subscriber&statusErrorCode=1\
            &statusDatetime=2016-05-03T08%3A58%3A10%2B00%3A00&mccmnc=20408&ported=0\
            &price%5Bamount%5D=0.07&price%5Bcurrency%5D=EUR";
        let e = one(&post("/cb?workflow_name=w&id=own", form, FORM));
        let s = status(&e);
        assert_eq!(s.status, Status::Failed);
        assert_eq!(
            s.error,
            Some(ErrorInfo {
                code: Some("1".into()),
                message: Some("unknown subscriber".into())
            })
        );
        // POST: every query parameter is the app's.
        assert_eq!(e.correlation.get("workflow_name"), Some(&json!("w")));
        assert_eq!(e.correlation.get("id"), Some(&json!("own")));
        assert_eq!(e.correlation.get("reference"), Some(&json!("r-1")));
        assert_eq!(e.raw.to_value()["price[currency]"], "EUR");
        // No content type: a form.
        assert_eq!(
            one(&post("/cb", form, "")).idempotency_key,
            e.idempotency_key
        );

        let json_body = r#"{"id":"e8077d803532c0b5937c639b60216938","recipient":31612345678,
            "status":"buffered","statusDatetime":"2016-05-03T08:58:10+00:00",
            "price":{"amount":0.07,"currency":"EUR"}}"#;
        for ct in ["application/json", ""] {
            let e = one(&post("/cb", json_body, ct));
            assert_eq!(e.channel_value, "+31612345678");
            let s = status(&e);
            assert!(s.informational && s.status == Status::Queued);
            assert_eq!(s.error, None);
        }
        // An unreadable time is the receive time.
        let e = one(&post(
            "/cb",
            &form.replace("2016-05-03T08%3A58%3A10%2B00%3A00", "soon"),
            FORM,
        ));
        assert_eq!(status(&e).timestamp_ms, CTX.received_at_ms);
    }

    #[test]
    fn inbound_sms() {
        let e = one(&get(
            "id=3ee0a7a0e3f44b12b4ca4e1e5d4a4d30&recipient=3197010260000&originator=31612345678\
             &body=Caf%C3%A9+%F0%9F%98%80&createdDatetime=2016-05-03T14%3A26%3A57%2B00%3A00",
        ));
        assert_eq!(e.channel, Channel::Sms);
        assert_eq!(e.channel_value, "+31612345678");
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound")
        };
        assert_eq!(
            (m.from.as_str(), m.to.as_str()),
            ("+31612345678", "+3197010260000")
        );
        assert_eq!(m.text.as_deref(), Some("Café 😀"));
        assert_eq!(m.message_type, "text");
        assert_eq!(m.timestamp_ms, 1_462_285_617_000);
        assert_eq!(m.source_message_id, "3ee0a7a0e3f44b12b4ca4e1e5d4a4d30");
        assert_eq!(
            e.idempotency_key,
            idempotency_key(PROVIDER, &["3ee0a7a0e3f44b12b4ca4e1e5d4a4d30", "inbound"])
        );
        // The legacy `message` parameter, a short code, no id.
        let e = one(&get("originator=31612345678&recipient=1008&message=STOP"));
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound")
        };
        assert_eq!((m.to.as_str(), m.text.as_deref()), ("1008", Some("STOP")));
        assert_eq!(m.timestamp_ms, CTX.received_at_ms);
        assert_eq!(e.vendor_ack_id, None);
    }

    #[test]
    fn conversations_status_events() {
        let e = one(&post("/cb", WA_CREATED_PENDING, "application/json"));
        assert_eq!(e.channel, Channel::Whatsapp);
        assert_eq!(e.channel_value, "+393383342437");
        assert_eq!(
            e.vendor_ack_id.as_deref(),
            Some("20c2f1bf12654e49bd06af8f61e301f3")
        );
        let s = status(&e);
        assert_eq!((s.status, s.informational), (Status::Queued, false));
        assert_eq!(s.timestamp_ms, 1_591_724_293_447);
        assert_eq!(e.raw.to_value()["type"], "message.created");
        assert!(e.channel_user.is_empty());

        let mut doc: Value = serde_json::from_str(WA_CREATED_PENDING).expect("json");
        doc["type"] = json!("message.updated");
        doc["message"]["status"] = json!("failed");
        doc["message"]["error"] = json!({"code": 470, "description": "Message failed to send"});
        let e = one(&post(
            "/cb?distinct_id=u7",
            &doc.to_string(),
            "application/json",
        ));
        let s = status(&e);
        assert_eq!(s.status, Status::Failed);
        assert_eq!(
            s.error,
            Some(ErrorInfo {
                code: Some("470".into()),
                message: Some("Message failed to send".into())
            })
        );
        assert_eq!(e.correlation.get("distinct_id"), Some(&json!("u7")));

        // No `to`: the contact's number; a read receipt.
        doc["message"]["status"] = json!("read");
        doc["message"].as_object_mut().expect("obj").remove("to");
        let e = one(&post("/cb", &doc.to_string(), "application/json"));
        assert_eq!(e.channel_value, "+393383342437");
        assert_eq!(status(&e).status, Status::Seen);
        assert_eq!(status(&e).error, None);
    }

    #[test]
    fn conversations_inbound_messages() {
        let e = one(&post("/cb", WA_INBOUND_TEXT, "application/json"));
        assert_eq!(e.channel, Channel::Whatsapp);
        assert_eq!(e.channel_value, "+37065272274");
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound")
        };
        assert_eq!(
            (m.from.as_str(), m.to.as_str()),
            ("+37065272274", "+447418310508")
        );
        assert_eq!(m.text.as_deref(), Some("Gggg"));
        assert_eq!(m.source_message_id, "4587a9c901d7426ba66eb2ec153c68dd");
        assert_eq!(m.timestamp_ms, 1_635_397_633_000);

        let mut doc: Value = serde_json::from_str(WA_INBOUND_TEXT).expect("json");
        doc["message"]["type"] = json!("image");
        doc["message"]["content"] = json!({"image": {"url": "https://media.messagebird.com/v1/media/1", "caption": "Zdravo 👋"}});
        let e = one(&post("/cb", &doc.to_string(), "application/json"));
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound")
        };
        assert_eq!(m.message_type, "image");
        assert_eq!(m.text.as_deref(), Some("Zdravo 👋"));
        assert_eq!(
            m.media,
            vec![Media::at("https://media.messagebird.com/v1/media/1", None)]
        );

        doc["message"]["type"] = json!("location");
        doc["message"]["content"] = json!({"location": {"latitude": 52.37, "longitude": 4.89}});
        let e = one(&post("/cb", &doc.to_string(), "application/json"));
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound")
        };
        assert_eq!(m.message_type, "location");
        let l = m.location.as_ref().expect("location");
        assert_eq!((l.latitude, l.longitude), (52.37, 4.89));

        doc["message"]["type"] = json!("hsm");
        let e = one(&post("/cb", &doc.to_string(), "application/json"));
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound")
        };
        assert_eq!(m.message_type, "unsupported");

        // A business-scoped WhatsApp user id where the number would be.
        doc["message"]["from"] = json!("US.13491208655302741918");
        let e = one(&post("/cb", &doc.to_string(), "application/json"));
        assert_eq!(e.channel_value, "US.13491208655302741918");
        assert_eq!(
            e.channel_user.user_id.as_deref(),
            Some("US.13491208655302741918")
        );
    }

    #[test]
    fn conversation_events_and_other_platforms_are_no_events() {
        let mut doc: Value = serde_json::from_str(WA_INBOUND_TEXT).expect("json");
        doc["type"] = json!("conversation.updated");
        let out =
            normalize(&post("/cb", &doc.to_string(), "application/json"), &CTX).expect("normalize");
        assert!(out.events.is_empty() && out.unparsed.is_empty());
        let reason = out.control.expect("ignored").describe();
        assert!(
            reason.contains("conversation.updated")
                && reason.contains("2386ce6e75af4286a5617f7900c498dd"),
            "{reason}"
        );

        doc["type"] = json!("message.created");
        doc["message"]["platform"] = json!("telegram");
        let body = doc.to_string();
        let out = normalize(&post("/cb", &body, "application/json"), &CTX).expect("normalize");
        assert!(out.events.is_empty());
        assert_eq!(out.unparsed.len(), 1);
        assert_eq!(out.unparsed[0].raw, body);
        assert!(out.unparsed[0].reason.contains("telegram"));
    }

    #[test]
    fn a_body_beyond_the_limits_is_kept_whole() {
        let deep = format!(
            r#"{{"type":"message.created","message":{}{}}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        let out = normalize(&post("/cb", &deep, "application/json"), &CTX).expect("normalize");
        assert!(out.events.is_empty());
        assert_eq!(out.unparsed.len(), 1);
        assert_eq!(out.unparsed[0].raw, deep);
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let json_ct = "application/json";
        let cases = vec![
            post("/cb", "", FORM),
            post("/cb", "  ", json_ct),
            post("/cb", "[1,2]", json_ct),
            post("/cb", "\"text\"", json_ct),
            post("/cb", "{\"id\":", json_ct),
            post("/cb", "{}", json_ct),
            post("/cb", "id=1&recipient=3161", FORM),
            post("/cb", "recipient=3161&status=sent", FORM),
            post("/cb", "id=1&status=sent", FORM),
            post("/cb", "recipient=1008&body=hi", FORM),
            post("/cb", "%%%&&&===", FORM),
            post("/cb", r#"{"type":"message.created"}"#, json_ct),
            post(
                "/cb",
                r#"{"type":"message.created","message":"x"}"#,
                json_ct,
            ),
            post(
                "/cb",
                r#"{"type":"message.created","message":{"id":"1","status":"sent"}}"#,
                json_ct,
            ),
            post(
                "/cb",
                r#"{"type":"message.created","message":{"platform":"sms","status":"sent"}}"#,
                json_ct,
            ),
            post(
                "/cb",
                r#"{"type":"message.created","message":{"id":"1","platform":"sms","direction":"sent"}}"#,
                json_ct,
            ),
            post(
                "/cb",
                r#"{"type":"message.created","message":{"id":"1","platform":"sms","direction":"received"}}"#,
                json_ct,
            ),
            get(""),
        ];
        for r in &cases {
            assert!(normalize(r, &CTX).is_err(), "{:?} {:?}", r.uri, r.body);
        }
        let typed = post("/cb", "id=1&recipient=3161&status=sent", "text/plain");
        assert_eq!(
            normalize(&typed, &CTX).expect_err("type").kind(),
            "content_type"
        );
        let mut put = post("/cb", "id=1&recipient=3161&status=sent", FORM);
        put.method = Method::PUT;
        assert_eq!(normalize(&put, &CTX).expect_err("method").kind(), "method");
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u32 = 11;
        let mut next = || {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 16) as u8
        };
        let alphabet = br#"{}[]":,=&%?.+ abcdefghijklmnopqrstuvwxyz0123456789"#;
        let v = verifier(KEY, Some(PUBLIC_URL));
        for round in 0..2_000 {
            let len = usize::from(next()) % 200;
            let body: Vec<u8> = (0..len)
                .map(|_| {
                    let b = next();
                    alphabet[usize::from(b) % alphabet.len()]
                })
                .collect();
            let ct = ["application/json", FORM, ""][round % 3];
            let mut r = post("/cb", "", ct);
            r.body = Bytes::from(body.clone());
            let _ = normalize(&r, &CTX);
            if let Ok(q) = String::from_utf8(body)
                && let Ok(uri) = format!("/cb?{q}").parse::<Uri>()
            {
                r.uri = uri;
                r.method = Method::GET;
                let _ = normalize(&r, &CTX);
            }
            let t = token(&hs256(), &claims(PUBLIC_URL, &r.body), KEY);
            r.headers
                .insert(SIGNATURE_HEADER, HeaderValue::from_str(&t).expect("token"));
            let _ = v.verify(&r, &clock(NOW));
        }
    }
}
