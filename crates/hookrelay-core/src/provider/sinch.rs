//! Sinch: the SMS API (delivery reports, inbound SMS and MMS) and the Conversation API
//! (message delivery reports, submit notifications and inbound messages on WhatsApp and SMS).
//!
//! # Callback format
//!
//! `POST`, `Content-Type: application/json`, one JSON object per request. Both APIs may
//! call the same route: a body with a top-level string `type` is an SMS API callback,
//! anything else a Conversation API callback (whose bodies have no `type`; they carry
//! `app_id`, `project_id`, `accepted_time`, `event_time` and one trigger object).
//!
//! ## SMS API
//!
//! | `type` | what it is | events |
//! |---|---|---|
//! | `delivery_report_sms`, `delivery_report_mms` | a batch's report (`summary` or `full`): `batch_id`, `statuses[]` of `{code, status, count, recipients[]}`, `client_reference` | one per recipient of each status entry; a summary entry (no `recipients`) is one event with `channel_value: ""` |
//! | `recipient_delivery_report_sms`, `recipient_delivery_report_mms` | one recipient's report (`per_recipient` reports): `batch_id`, `recipient`, `code`, `status`, `at`, `operator_status_at`, `client_reference` | one |
//! | `mo_text`, `mo_binary`, `mo_media` | an inbound SMS (text, binary with `udh`) or MMS (`body {subject, message, media[]}`): `id`, `from`, `to`, `received_at`, `sent_at`, `operator_id` | one inbound message |
//! | any other `type` | | none: the body is kept as unparsed |
//!
//! - **Address** (`channel_value`): the report's `recipient` (or each of an entry's
//!   `recipients`), the sender `from` of an inbound message, as E.164 (Sinch writes
//!   MSISDNs with or without `+`; the rule of all providers applies).
//! - **Message id** (`vendor_ack_id`): `batch_id`, the id the send API (`POST /batches`)
//!   returned, as sent. An inbound message's is its `id` (also `source_message_id`).
//! - **Event time**: a recipient report's `at` (when Sinch created the report).
//!   `operator_status_at`, the time in the SMSC's delivery receipt, is not used: it comes
//!   from the carrier with minute precision (as Twilio's `RawDlrDoneDate`, see
//!   `docs/DESIGN.md` §2, "Event times"); it stays in `vendor_response`. A batch report
//!   has no time: the time of receipt. An inbound message: `received_at` (Sinch's clock;
//!   `sent_at` is the handset's, when the operator gives it).
//! - **Correlation id**: `client_reference` (set when sending the batch), under that name.
//! - **Error** of a `failed` status: `{code, message}`, the `code` (Sinch's 4xx codes or the
//!   SMPP error codes) and the name Sinch documents for a 4xx code, else the `status`.
//! - **Idempotency key**: Sinch sends no event id; a report is keyed by (`type`,
//!   `batch_id`, recipient, `code`, `status`, and `at` for a recipient report), an inbound
//!   message by its `id`.
//! - **Raw event**: the body; for a batch report, the report with `statuses` holding the
//!   event's entry alone, its `recipients` narrowed to the event's recipient (a batch can
//!   name a thousand recipients: the whole report is not copied into each event).
//!
//! An inbound `mo_binary` message has type `binary` and no text (its `body` is base64 of
//! bytes, kept in `vendor_response`). An `mo_media` message's text is `body.message` (the
//! `subject` stays in `vendor_response`), its media `body.media[]` (`url`,
//! `content_type`), and its type is the first medium's kind (`image`, `video`, `audio`,
//! else `document`), `text` without media.
//!
//! ## Conversation API
//!
//! | trigger object | events |
//! |---|---|
//! | `message_delivery_report` (`MESSAGE_DELIVERY`) | one status |
//! | `message_submit_notification` (`MESSAGE_SUBMIT`) | one status, `queued` |
//! | `message` (`MESSAGE_INBOUND`) | one inbound message |
//! | `unsupported_callback` (`UNSUPPORTED`: a channel callback Sinch could not map) | none: kept as unparsed |
//! | `event`, `event_delivery_report`, `conversation_start_notification`, `conversation_stop_notification`, `conversation_delete_notification`, `contact_create_notification`, `contact_delete_notification`, `contact_merge_notification`, `contact_update_notification`, `duplicated_identities`, `capability_notification`, `opt_in_notification`, `opt_out_notification`, `channel_event_notification`, `smart_conversation_notification`, `message_redaction`, `record_notification` | none: about no message sent or received (composing indicators, contacts, conversations, opt-in requests, AI analyses, a redacted copy of an inbound message already delivered), reported as [`Control::Ignored`] |
//! | none of these, with `app_id` | none: kept as unparsed (a trigger added later) |
//!
//! - **Channel**: `channel_identity.channel` (or the object's own `channel`, as Sinch's
//!   older examples send it): `WHATSAPP` is `whatsapp`, `SMS` and `MMS` are `sms`. Sinch
//!   carries other channels too (`RCS`, `MESSENGER`, `VIBERBM`, `INSTAGRAM`, `TELEGRAM`,
//!   …): their callbacks are kept as unparsed, the channel named in the reason, as
//!   `docs/DESIGN.md` §2 ("Channels") says of channels a provider is not mapped onto; the
//!   payload has `rcs`, `viber` and `messenger` channels, and mapping them is a change of
//!   this table only. A callback that names no channel is unparsed too.
//! - **Address**: `channel_identity.identity` (a phone number on SMS and WhatsApp: E.164;
//!   a WhatsApp business-scoped user id is kept as sent and is also `channel_user_id`),
//!   `""` when absent (the older format has no `channel_identity`). An inbound message's
//!   `to` is `sender_id` (the number or short code the contact wrote to), else `""`.
//! - **Message id**: `message_id` of a report or submit notification, the id the send API
//!   (`POST /messages:send`) returned; an inbound message's `id`.
//! - **Event time**: `event_time` (the channel's), else `accepted_time`, else (inbound) the
//!   message's `accept_time`, else the time of receipt.
//! - **Correlation ids**: `correlation_id` (the send request's) and, for reports and submit
//!   notifications, `message_metadata` (the report's `metadata`: the send request's
//!   `message_metadata`), each when non-empty.
//! - **Error** of `FAILED`: `{code: reason.code, message: reason.description}`.
//! - **Idempotency key**: (`message_id`, `status`, channel, identity, event time as sent)
//!   for a report, (`message_id`, `submit`, identity) for a submit notification, the `id`
//!   of an inbound message.
//!
//! Inbound `contact_message` kinds:
//!
//! | kind | type | content |
//! |---|---|---|
//! | `text_message` | `text` | `text` |
//! | `media_message` | `image`, `video`, `audio` or `document` by the URL's file extension | `media [{url}]` (no content type: Sinch sends none) |
//! | `media_card_message` | as `media_message` | `media [{url}]`, text = `caption` |
//! | `location_message` | `location` | `location {latitude, longitude, name: title, address: label}` |
//! | `choice_response_message` | `button` | text = `postback_data`, context id = the choice message's `message_id` |
//! | `product_response_message` | `order` | text = `text` |
//! | `channel_specific_message` (WhatsApp `nfm_reply`) | `interactive` | text = the reply's `body`, else its `response_json` |
//! | `fallback_message` | `unsupported` | text = `raw_message` |
//! | anything else | `unsupported` | none |
//!
//! `reply_to.message_id` is the reply context's id.
//!
//! # Signature
//!
//! Sinch signs Conversation API callbacks of a webhook that has a secret, and SMS API
//! callbacks when HMAC signing is set up for the service plan, the same way: headers
//! `x-sinch-webhook-signature` (base64 with padding), `x-sinch-webhook-signature-nonce`,
//! `x-sinch-webhook-signature-timestamp` (Unix seconds) and
//! `x-sinch-webhook-signature-algorithm` (`HmacSHA256`), the signature being
//! base64(HMAC-SHA256(secret, raw body + `.` + nonce + `.` + timestamp)), keyed with the
//! secret's UTF-8 bytes, over the header values as received. It is compared in constant
//! time; an algorithm header other than `HmacSHA256` is refused; the timestamp must be
//! within [`VerifyOptions::tolerance`] of the clock when one is given. The nonce is not
//! remembered: within the tolerance a replay is a duplicate, caught by the idempotency
//! key. SMS API callbacks otherwise carry the credentials of the callback URL
//! (`https://user:password@…`) as HTTP Basic.
//!
//! Which check applies is decided by the body, as the normalizer reads it, so a credential
//! for one API never admits a callback of the other:
//!
//! - a Conversation API callback (no top-level string `type`; also anything that is not
//!   JSON) must carry a valid signature: a route without `secret` refuses it;
//! - an SMS API callback must pass `basic_auth` when it is set, and must carry a valid
//!   signature when `secret` is set and either the callback is signed or `basic_auth` is
//!   not set. A signature that is present is never ignored when it can be checked.
//!
//! # Verify keys
//!
//! | key | value |
//! |---|---|
//! | `secret` | the webhook secret (Conversation API) or the service plan's callback HMAC secret (SMS API) |
//! | `basic_auth` | `user:password` of the SMS API callback URL, compared with `Authorization: Basic …` |
//!
//! At least one is required. A route that receives both APIs sets both.
//!
//! # Status mapping
//!
//! | Sinch status | status | notes |
//! |---|---|---|
//! | SMS `Queued` | `queued` | |
//! | SMS `Dispatched` | `sent` | accepted by the SMSC |
//! | SMS `Delivered` | `delivered` | |
//! | SMS `Aborted`, `Cancelled`, `Rejected`, `Deleted`, `Failed`, `Expired` | `failed` | error `{code, message}` |
//! | SMS `Unknown` | `sent` | handed to the SMSC, but no delivery receipt came (or none Sinch could read): the message reached `sent` and no further (not a failure: nothing says it was not delivered) |
//! | Conversation `QUEUED` | `queued` | Sinch documents no callback for it |
//! | Conversation `QUEUED_ON_CHANNEL` | `sent` | handed to the channel |
//! | Conversation `DELIVERED` | `delivered` | |
//! | Conversation `READ` | `seen` | |
//! | Conversation `FAILED` | `failed` | error `{reason.code, reason.description}` |
//! | Conversation `SWITCHING_CHANNEL` | `queued`, informational | failed on this channel, Sinch tries the next one in the send request's priority |
//! | Conversation submit notification | `queued` | the message was submitted to the channel |
//! | any other value | `queued`, informational | the fallback for unknown values |
//!
//! Statuses are matched case-insensitively.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::Method;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::event::{ChannelUser, idempotency_key};
use crate::limits::TopLevel;
use crate::mac::{self, Hash};
use crate::phone::{e164, is_bsuid};
use crate::provider::basic_auth::BasicAuth;
use crate::provider::{Context, Control, Normalized, Unparsed, VerifyOptions, VerifySettings};
use crate::{
    CallbackRequest, Channel, ErrorInfo, Event, EventKind, InboundMessage, Location, Media,
    NormalizeError, ReplyContext, Secret, Status, StatusUpdate, VerifyConfigError, VerifyError,
    timestamp,
};

/// Provider id.
const PROVIDER: &str = "sinch";
/// Keys of the `verify:` block.
const KNOWN_KEYS: &[&str] = &["secret", "basic_auth"];
/// Header with the base64 HMAC-SHA256 signature.
const SIGNATURE_HEADER: &str = "x-sinch-webhook-signature";
/// Header with the signed nonce.
const NONCE_HEADER: &str = "x-sinch-webhook-signature-nonce";
/// Header with the signed Unix timestamp.
const TIMESTAMP_HEADER: &str = "x-sinch-webhook-signature-timestamp";
/// Header naming the HMAC algorithm.
const ALGORITHM_HEADER: &str = "x-sinch-webhook-signature-algorithm";
/// The one algorithm Sinch signs with.
const ALGORITHM: &str = "HmacSHA256";

/// Conversation API trigger objects that are about no message: never events.
const NOT_ABOUT_A_MESSAGE: &[&str] = &[
    "event",
    "event_delivery_report",
    "conversation_start_notification",
    "conversation_stop_notification",
    "conversation_delete_notification",
    "contact_create_notification",
    "contact_delete_notification",
    "contact_merge_notification",
    "contact_update_notification",
    "duplicated_identities",
    "capability_notification",
    "opt_in_notification",
    "opt_out_notification",
    "channel_event_notification",
    "smart_conversation_notification",
    "message_redaction",
    "record_notification",
];

/// Checks Sinch's callback signature and/or the SMS API's HTTP Basic credentials.
#[derive(Debug, Clone)]
pub struct Verifier {
    secret: Option<Secret>,
    basic_auth: Option<BasicAuth>,
}

impl Verifier {
    /// Builds the verifier from the `verify:` settings: `secret` and/or `basic_auth`
    /// (`user:password`); at least one must be set.
    pub fn from_settings(settings: &VerifySettings) -> Result<Self, VerifyConfigError> {
        settings.only(PROVIDER, KNOWN_KEYS)?;
        let basic_auth = BasicAuth::from_settings(PROVIDER, settings)?;
        let secret = settings.get("secret").cloned();
        if secret.is_none() && basic_auth.is_none() {
            return Err(VerifyConfigError::Missing {
                provider: PROVIDER,
                key: "secret` or `basic_auth",
            });
        }
        Ok(Self { secret, basic_auth })
    }

    /// Checks the callback: a Conversation API callback by its signature, an SMS API
    /// callback by its Basic credentials and/or its signature (see the module docs).
    pub fn verify(&self, req: &CallbackRequest, opts: &VerifyOptions) -> Result<(), VerifyError> {
        if !is_sms_api_body(&req.body) {
            return match &self.secret {
                Some(secret) => check_signature(secret, req, opts),
                None if req.headers.contains_key(SIGNATURE_HEADER) => {
                    // Signed, but this route has no secret to check it with: fail closed.
                    Err(VerifyError::BadCredentials)
                }
                None => Err(VerifyError::Missing("x-sinch-webhook-signature")),
            };
        }
        if let Some(basic_auth) = &self.basic_auth {
            basic_auth.check(req)?;
        }
        match &self.secret {
            Some(secret)
                if self.basic_auth.is_none() || req.headers.contains_key(SIGNATURE_HEADER) =>
            {
                check_signature(secret, req, opts)
            }
            _ => Ok(()),
        }
    }
}

/// Checks `x-sinch-webhook-signature` over the body, the nonce and the timestamp, then the
/// timestamp's age (when a clock is given).
fn check_signature(
    secret: &Secret,
    req: &CallbackRequest,
    opts: &VerifyOptions,
) -> Result<(), VerifyError> {
    let header = |name: &str, missing: &'static str| {
        req.headers
            .get(name)
            .map(http::HeaderValue::as_bytes)
            .ok_or(VerifyError::Missing(missing))
    };
    let signature = header(SIGNATURE_HEADER, "x-sinch-webhook-signature")?;
    let nonce = header(NONCE_HEADER, "x-sinch-webhook-signature-nonce")?;
    let ts = header(TIMESTAMP_HEADER, "x-sinch-webhook-signature-timestamp")?;
    if let Some(algorithm) = req.headers.get(ALGORITHM_HEADER) {
        let algorithm = algorithm.as_bytes().trim_ascii();
        if !algorithm.eq_ignore_ascii_case(ALGORITHM.as_bytes()) {
            return Err(VerifyError::Malformed(format!(
                "x-sinch-webhook-signature-algorithm is not {ALGORITHM}"
            )));
        }
    }
    let given = STANDARD
        .decode(signature.trim_ascii())
        .map_err(|_| VerifyError::Malformed("x-sinch-webhook-signature is not base64".into()))?;
    let tag = mac::hmac(
        Hash::Sha256,
        secret.expose().as_bytes(),
        &[&req.body, b".", nonce, b".", ts],
    );
    if !tag.matches(&given) {
        return Err(VerifyError::Mismatch);
    }
    let ts_secs = std::str::from_utf8(ts)
        .ok()
        .and_then(|t| t.trim().parse::<i64>().ok())
        .ok_or_else(|| {
            VerifyError::Malformed("x-sinch-webhook-signature-timestamp is not Unix seconds".into())
        })?;
    opts.check_timestamp(ts_secs)
}

/// The top-level `type` of a body, read without building the rest of it.
#[derive(Deserialize)]
struct TypeProbe {
    #[serde(rename = "type", default)]
    kind: Option<Value>,
}

/// True when the body is an SMS API callback: a JSON object whose `type` is a string. The
/// same test as [`normalize`]'s (a body that is not a JSON object is no SMS API callback;
/// one that names `type` twice is not either, where the normalizer would read the last).
fn is_sms_api_body(body: &[u8]) -> bool {
    // The probe would also read a JSON array as a struct: only an object is one.
    body.trim_ascii_start().first() == Some(&b'{')
        && serde_json::from_slice::<TypeProbe>(body)
            .ok()
            .and_then(|p| p.kind)
            .is_some_and(|k| k.is_string())
}

/// Normalizes one Sinch callback (SMS API or Conversation API) into its events.
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
    if !body.is_object() {
        return Err(NormalizeError::shape(
            "",
            "a JSON object (one Sinch callback)",
        ));
    }
    // JSON text is UTF-8: the body parsed.
    let raw = std::str::from_utf8(&req.body).map_err(|_| NormalizeError::NotUtf8)?;
    match body.get("type") {
        Some(Value::String(kind)) => {
            let kind = kind.clone();
            sms_api(&kind, body, raw, ctx)
        }
        _ => conversation(body, raw, ctx),
    }
}

/// The whole body, as received, as one unparsed event (a callback of one event that is
/// not normalized).
fn whole_body_unparsed(reason: impl std::fmt::Display, raw: &str) -> Normalized {
    Normalized::one_unparsed(Unparsed::new(reason, raw))
}

/// A non-empty string field.
fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

/// A string or number field as text (Sinch's `code` is a number, in places a string).
fn text_or_number(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A required non-empty string field.
fn required<'a>(v: &'a Value, key: &str, path: &str) -> Result<&'a str, NormalizeError> {
    match v.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            Err(NormalizeError::MissingField(format!("{path}{key}")))
        }
        Some(_) => Err(NormalizeError::invalid(
            format!("{path}{key}"),
            "not a string",
        )),
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

/// `key` as a correlation id, when it is a non-empty string.
fn correlate(map: &mut Map<String, Value>, name: &str, value: Option<&str>) {
    if let Some(v) = value.filter(|v| !v.trim().is_empty()) {
        map.insert(name.to_owned(), Value::String(v.to_owned()));
    }
}

// ---------------------------------------------------------------------------------------
// SMS API

/// An SMS API callback by its `type`.
fn sms_api(
    kind: &str,
    body: Value,
    raw: &str,
    ctx: &Context,
) -> Result<Normalized, NormalizeError> {
    match kind {
        "delivery_report_sms" | "delivery_report_mms" => batch_report(kind, &body, ctx),
        "recipient_delivery_report_sms" | "recipient_delivery_report_mms" => {
            recipient_report(kind, body, ctx).map(|e| Normalized::events(vec![e]))
        }
        "mo_text" | "mo_binary" | "mo_media" => {
            inbound_sms(kind, body, ctx).map(|e| Normalized::events(vec![e]))
        }
        _ => Ok(whole_body_unparsed(
            format!("unknown Sinch SMS API callback type {kind:?}"),
            raw,
        )),
    }
}

/// Maps an SMS API delivery `status`; see the module table.
fn map_sms_status(status: &str) -> (Status, bool) {
    match status.to_ascii_lowercase().as_str() {
        "queued" => (Status::Queued, false),
        "dispatched" | "unknown" => (Status::Sent, false),
        "delivered" => (Status::Delivered, false),
        "aborted" | "cancelled" | "canceled" | "rejected" | "deleted" | "failed" | "expired" => {
            (Status::Failed, false)
        }
        _ => (Status::Queued, true),
    }
}

/// The name Sinch documents for one of its own (4xx) delivery report codes.
fn sms_code_name(code: &str) -> Option<&'static str> {
    Some(match code {
        "402" => "Message unroutable",
        "403" => "Internal error",
        "404" => "Temporary delivery failure",
        "405" => "Unmatched Parameter",
        "406" => "Internal Expiry",
        "407" => "Cancelled",
        "408" => "Internal Reject",
        "410" => "Unmatched default originator",
        "411" => "Exceeded parts limit",
        "412" => "Unprovisioned region",
        "413" => "Blocked",
        "414" => "Bad Media",
        "415" => "Delivery report Rejected",
        "416" => "Delivery report Not Supported",
        "417" => "Delivery report Unreachable",
        "418" => "Delivery report Unrecognized",
        _ => return None,
    })
}

/// The error of a failed SMS status: its code and the code's name (else the status).
fn sms_error(status: Status, code: Option<&str>, status_text: &str) -> Option<ErrorInfo> {
    (status == Status::Failed)
        .then(|| {
            let message = code
                .and_then(sms_code_name)
                .map_or_else(|| status_text.to_owned(), str::to_owned);
            ErrorInfo::from_parts(code.map(str::to_owned), Some(message))
        })
        .flatten()
}

/// A status event of the SMS API.
struct SmsStatus<'a> {
    kind: &'a str,
    batch_id: &'a str,
    recipient: &'a str,
    code: Option<String>,
    status: &'a str,
    time_text: &'a str,
    timestamp_ms: i64,
    client_reference: Option<&'a str>,
}

impl SmsStatus<'_> {
    fn into_event(self, raw: Value) -> Event {
        let (status, informational) = map_sms_status(self.status);
        let mut correlation = Map::new();
        correlate(&mut correlation, "client_reference", self.client_reference);
        let code = self.code.as_deref().unwrap_or("");
        let channel_value = e164(self.recipient);
        Event {
            channel: Channel::Sms,
            channel_user: ChannelUser::default(),
            vendor_name: PROVIDER.to_owned(),
            vendor_ack_id: Some(self.batch_id.to_owned()),
            idempotency_key: idempotency_key(
                PROVIDER,
                &[
                    self.kind,
                    self.batch_id,
                    &channel_value,
                    code,
                    self.status,
                    self.time_text,
                ],
            ),
            channel_value,
            correlation,
            kind: EventKind::Status(StatusUpdate {
                status,
                timestamp_ms: self.timestamp_ms,
                error: sms_error(status, self.code.as_deref(), self.status),
                informational,
            }),
            raw: raw.into(),
        }
    }
}

/// A batch delivery report: one event per recipient of each status entry. An entry that
/// cannot be normalized is kept as unparsed, the report holding that entry alone.
fn batch_report(kind: &str, body: &Value, ctx: &Context) -> Result<Normalized, NormalizeError> {
    let batch_id = required(body, "batch_id", "")?;
    let statuses = match body.get("statuses") {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => return Err(NormalizeError::MissingField("statuses".into())),
        Some(_) => return Err(NormalizeError::shape("statuses", "an array")),
    };
    let client_reference = text(body, "client_reference");
    // The report without its entries, to hold one entry (narrowed to one recipient).
    let mut head = body.clone();
    if let Some(map) = head.as_object_mut() {
        map.insert("statuses".into(), Value::Array(Vec::new()));
    }
    let with_entry = |entry: Value| {
        let mut report = head.clone();
        if let Some(map) = report.as_object_mut() {
            map.insert("statuses".into(), Value::Array(vec![entry]));
        }
        report
    };
    let mut out = Normalized::default();
    for (i, entry) in statuses.iter().enumerate() {
        let path = format!("statuses/{i}/");
        let parsed = entry_recipients(entry, &path);
        let (status, code, recipients) = match parsed {
            Ok(parsed) => parsed,
            Err(e) => {
                // The report holding this entry alone: a Sinch body of its own, keyed by
                // its batch (the entry alone could be any batch's).
                let report = with_entry(entry.clone()).to_string();
                out.unparsed.push(Unparsed::new(e, report));
                continue;
            }
        };
        let event = |recipient: &str, raw: Value| {
            SmsStatus {
                kind,
                batch_id,
                recipient,
                code: code.clone(),
                status,
                time_text: "",
                timestamp_ms: ctx.received_at_ms,
                client_reference,
            }
            .into_event(raw)
        };
        if recipients.is_empty() {
            // A summary report: the entry names no recipient.
            out.events.push(event("", with_entry(entry.clone())));
            continue;
        }
        for recipient in recipients {
            let mut narrowed = entry.clone();
            if let Some(map) = narrowed.as_object_mut() {
                map.insert(
                    "recipients".into(),
                    Value::Array(vec![Value::String(recipient.to_owned())]),
                );
            }
            out.events.push(event(recipient, with_entry(narrowed)));
        }
    }
    Ok(out)
}

/// An entry of `statuses`: its status, code and recipients (none in a summary report).
fn entry_recipients<'a>(
    entry: &'a Value,
    path: &str,
) -> Result<(&'a str, Option<String>, Vec<&'a str>), NormalizeError> {
    if !entry.is_object() {
        return Err(NormalizeError::shape(
            path.trim_end_matches('/'),
            "an object",
        ));
    }
    let status = required(entry, "status", path)?;
    let code = text_or_number(entry, "code");
    let recipients = match entry.get("recipients") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|r| match r {
                Value::String(s) if !s.trim().is_empty() => Ok(s.as_str()),
                _ => Err(NormalizeError::invalid(
                    format!("{path}recipients"),
                    "not a list of phone numbers",
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(NormalizeError::shape(
                format!("{path}recipients"),
                "an array",
            ));
        }
    };
    Ok((status, code, recipients))
}

/// A recipient delivery report.
fn recipient_report(kind: &str, body: Value, ctx: &Context) -> Result<Event, NormalizeError> {
    let batch_id = required(&body, "batch_id", "")?;
    let recipient = required(&body, "recipient", "")?;
    let status = required(&body, "status", "")?;
    let timestamp_ms = time_ms(&body, "at", "")?.unwrap_or(ctx.received_at_ms);
    let event = SmsStatus {
        kind,
        batch_id,
        recipient,
        code: text_or_number(&body, "code"),
        status,
        time_text: text(&body, "at").unwrap_or(""),
        timestamp_ms,
        client_reference: text(&body, "client_reference"),
    }
    .into_event(Value::Null);
    Ok(Event {
        raw: body.into(),
        ..event
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

/// An inbound SMS or MMS.
fn inbound_sms(kind: &str, body: Value, ctx: &Context) -> Result<Event, NormalizeError> {
    let id = required(&body, "id", "")?.to_owned();
    let from = e164(required(&body, "from", "")?);
    let to = text(&body, "to").map(e164).unwrap_or_default();
    let timestamp_ms = time_ms(&body, "received_at", "")?.unwrap_or(ctx.received_at_ms);
    let (message_type, text_body, media) = match kind {
        "mo_text" => (
            "text".to_owned(),
            body.get("body").and_then(Value::as_str).map(str::to_owned),
            Vec::new(),
        ),
        "mo_binary" => ("binary".to_owned(), None, Vec::new()),
        _ => mms_content(&body)?,
    };
    let mut correlation = Map::new();
    correlate(
        &mut correlation,
        "client_reference",
        text(&body, "client_reference"),
    );
    Ok(Event {
        channel: Channel::Sms,
        channel_value: from.clone(),
        channel_user: ChannelUser::default(),
        vendor_name: PROVIDER.to_owned(),
        vendor_ack_id: Some(id.clone()),
        idempotency_key: idempotency_key(PROVIDER, &["inbound", &id]),
        correlation,
        kind: EventKind::Inbound(InboundMessage {
            from,
            to,
            message_type,
            text: text_body.filter(|t| !t.is_empty()),
            media,
            timestamp_ms,
            source_message_id: id,
            ..InboundMessage::default()
        }),
        raw: body.into(),
    })
}

/// The type, text and media of an `mo_media` body.
fn mms_content(body: &Value) -> Result<(String, Option<String>, Vec<Media>), NormalizeError> {
    let content = match body.get("body") {
        Some(v @ Value::Object(_)) => v,
        None | Some(Value::Null) => return Ok(("text".into(), None, Vec::new())),
        Some(_) => return Err(NormalizeError::shape("body", "an object")),
    };
    let media: Vec<Media> = match content.get("media") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|m| {
                let url = text(m, "url")?;
                Some(Media::at(url, text(m, "content_type").map(str::to_owned)))
            })
            .collect(),
        Some(_) => return Err(NormalizeError::shape("body/media", "an array")),
    };
    let message_type = match media.first() {
        Some(m) => m.content_type.as_deref().map_or("document", kind_of_mime),
        None => "text",
    };
    Ok((
        message_type.to_owned(),
        text(content, "message").map(str::to_owned),
        media,
    ))
}

// ---------------------------------------------------------------------------------------
// Conversation API

/// The channel of a Conversation API object: `Ok` with the payload's channel, `Err` with
/// the reason it is not normalized.
fn conversation_channel(item: &Value) -> Result<Channel, String> {
    let name = item
        .pointer("/channel_identity/channel")
        .and_then(Value::as_str)
        .or_else(|| item.get("channel").and_then(Value::as_str))
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| "Sinch Conversation API callback without a channel".to_owned())?;
    match name.trim().to_ascii_uppercase().as_str() {
        "WHATSAPP" => Ok(Channel::Whatsapp),
        "SMS" | "MMS" => Ok(Channel::Sms),
        _ => Err(format!(
            "Sinch Conversation API channel {name:?} is not normalized (only WHATSAPP, SMS and MMS are)"
        )),
    }
}

/// The user's address on the channel, and their business-scoped user id on WhatsApp.
fn conversation_address(item: &Value) -> (String, ChannelUser) {
    let identity = item
        .pointer("/channel_identity/identity")
        .and_then(Value::as_str)
        .map(str::trim)
        .unwrap_or("");
    let user = ChannelUser {
        user_id: is_bsuid(identity).then(|| identity.to_owned()),
        ..ChannelUser::default()
    };
    (e164(identity), user)
}

/// A Conversation API callback by its trigger object.
fn conversation(body: Value, raw: &str, ctx: &Context) -> Result<Normalized, NormalizeError> {
    let has = |key: &str| body.get(key).is_some_and(|v| !v.is_null());
    if has("message_delivery_report") {
        return conversation_status(body, "message_delivery_report", raw, ctx);
    }
    if has("message_submit_notification") {
        return conversation_status(body, "message_submit_notification", raw, ctx);
    }
    if has("message") {
        return conversation_inbound(body, raw, ctx);
    }
    if has("unsupported_callback") {
        return Ok(whole_body_unparsed(
            "Sinch Conversation API unsupported_callback (a channel callback Sinch did not map)",
            raw,
        ));
    }
    if let Some(trigger) = NOT_ABOUT_A_MESSAGE.iter().find(|k| has(k)) {
        return Ok(Normalized::control(Control::Ignored {
            reason: format!(
                "Sinch Conversation API {trigger} callback, about no message sent or received, not delivered"
            ),
        }));
    }
    if has("app_id") {
        return Ok(whole_body_unparsed(
            "Sinch Conversation API callback of an unknown trigger",
            raw,
        ));
    }
    Err(NormalizeError::shape(
        "",
        "a Sinch SMS API callback (with `type`) or Conversation API callback (with `app_id`)",
    ))
}

/// The event time of a Conversation API callback and its text as sent.
fn conversation_time(
    body: &Value,
    fallback: Option<(&Value, &str, &str)>,
    ctx: &Context,
) -> Result<(String, i64), NormalizeError> {
    for (v, key, path) in [(body, "event_time", ""), (body, "accepted_time", "")]
        .into_iter()
        .chain(fallback)
    {
        if let Some(ms) = time_ms(v, key, path)? {
            return Ok((text(v, key).unwrap_or("").to_owned(), ms));
        }
    }
    Ok((String::new(), ctx.received_at_ms))
}

/// Maps a Conversation API delivery `status`; see the module table.
fn map_conversation_status(status: &str) -> (Status, bool) {
    match status.to_ascii_uppercase().as_str() {
        "QUEUED" => (Status::Queued, false),
        "QUEUED_ON_CHANNEL" => (Status::Sent, false),
        "DELIVERED" => (Status::Delivered, false),
        "READ" => (Status::Seen, false),
        "FAILED" => (Status::Failed, false),
        _ => (Status::Queued, true),
    }
}

/// A message delivery report or submit notification (`key`).
fn conversation_status(
    body: Value,
    key: &str,
    raw: &str,
    ctx: &Context,
) -> Result<Normalized, NormalizeError> {
    let Some(item) = body.get(key).filter(|v| v.is_object()) else {
        return Err(NormalizeError::shape(key, "an object"));
    };
    let path = format!("{key}/");
    let message_id = required(item, "message_id", &path)?.to_owned();
    let channel = match conversation_channel(item) {
        Ok(channel) => channel,
        Err(reason) => return Ok(whole_body_unparsed(reason, raw)),
    };
    let (channel_value, channel_user) = conversation_address(item);
    let submit = key == "message_submit_notification";
    let status_text = if submit {
        "SUBMITTED"
    } else {
        required(item, "status", &path)?
    };
    let (status, informational) = if submit {
        (Status::Queued, false)
    } else {
        map_conversation_status(status_text)
    };
    let error = (status == Status::Failed)
        .then(|| {
            let reason = item.get("reason")?;
            ErrorInfo::from_parts(
                text(reason, "code").map(str::to_owned),
                text(reason, "description").map(str::to_owned),
            )
        })
        .flatten();
    let (time_text, timestamp_ms) = conversation_time(&body, None, ctx)?;
    let mut correlation = Map::new();
    correlate(
        &mut correlation,
        "correlation_id",
        text(&body, "correlation_id"),
    );
    correlate(
        &mut correlation,
        "message_metadata",
        text(item, "metadata").or_else(|| text(&body, "message_metadata")),
    );
    let idempotency_key = if submit {
        idempotency_key(PROVIDER, &[&message_id, "submit", &channel_value])
    } else {
        idempotency_key(
            PROVIDER,
            &[
                &message_id,
                status_text,
                &channel.to_string(),
                &channel_value,
                &time_text,
            ],
        )
    };
    Ok(Normalized::events(vec![Event {
        channel,
        channel_value,
        channel_user,
        vendor_name: PROVIDER.to_owned(),
        vendor_ack_id: Some(message_id),
        idempotency_key,
        correlation,
        kind: EventKind::Status(StatusUpdate {
            status,
            timestamp_ms,
            error,
            informational,
        }),
        raw: body.into(),
    }]))
}

/// An inbound message (`message`).
fn conversation_inbound(
    body: Value,
    raw: &str,
    ctx: &Context,
) -> Result<Normalized, NormalizeError> {
    let Some(message) = body.get("message").filter(|v| v.is_object()) else {
        return Err(NormalizeError::shape("message", "an object"));
    };
    let id = required(message, "id", "message/")?.to_owned();
    let channel = match conversation_channel(message) {
        Ok(channel) => channel,
        Err(reason) => return Ok(whole_body_unparsed(reason, raw)),
    };
    let (from, channel_user) = conversation_address(message);
    let to = text(message, "sender_id").map(e164).unwrap_or_default();
    let content = contact_message(message.get("contact_message"))?;
    let (_, timestamp_ms) =
        conversation_time(&body, Some((message, "accept_time", "message/")), ctx)?;
    let mut correlation = Map::new();
    correlate(
        &mut correlation,
        "correlation_id",
        text(&body, "correlation_id"),
    );
    let event = Event {
        channel,
        channel_value: from.clone(),
        channel_user,
        vendor_name: PROVIDER.to_owned(),
        vendor_ack_id: Some(id.clone()),
        idempotency_key: idempotency_key(PROVIDER, &["inbound", &id]),
        correlation,
        kind: EventKind::Inbound(InboundMessage {
            from,
            to,
            message_type: content.message_type.to_owned(),
            text: content.text,
            media: content.media,
            location: content.location,
            context: content.reply_to.map(|id| ReplyContext { id, from: None }),
            timestamp_ms,
            source_message_id: id,
            original_message_id: None,
        }),
        raw: Value::Null.into(),
    };
    Ok(Normalized::events(vec![Event {
        raw: body.into(),
        ..event
    }]))
}

/// What a `contact_message` holds.
struct Content {
    message_type: &'static str,
    text: Option<String>,
    media: Vec<Media>,
    location: Option<Location>,
    reply_to: Option<String>,
}

/// The message type of a media URL by its file extension (Sinch sends no MIME type).
fn kind_of_url(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" | "png" | "gif" | "webp" | "bmp" | "heic" => "image",
        "mp4" | "3gp" | "3gpp" | "mov" | "m4v" | "webm" => "video",
        "mp3" | "ogg" | "oga" | "opus" | "aac" | "amr" | "m4a" | "wav" => "audio",
        _ => "document",
    }
}

/// Reads a `contact_message` (see the module table).
fn contact_message(cm: Option<&Value>) -> Result<Content, NormalizeError> {
    let mut content = Content {
        message_type: "unsupported",
        text: None,
        media: Vec::new(),
        location: None,
        reply_to: None,
    };
    let Some(cm) = cm.filter(|v| !v.is_null()) else {
        return Err(NormalizeError::MissingField(
            "message/contact_message".into(),
        ));
    };
    if !cm.is_object() {
        return Err(NormalizeError::shape(
            "message/contact_message",
            "an object",
        ));
    }
    let own = |s: Option<&str>| s.map(str::to_owned);
    if let Some(t) = cm.get("text_message") {
        content.message_type = "text";
        content.text = own(t.get("text").and_then(Value::as_str));
    } else if let Some(m) = cm.get("media_message") {
        let url = text(m, "url").unwrap_or("");
        content.message_type = kind_of_url(url);
        if !url.is_empty() {
            content.media.push(Media::at(url, None));
        }
    } else if let Some(m) = cm.get("media_card_message") {
        let url = text(m, "url").unwrap_or("");
        content.message_type = kind_of_url(url);
        if !url.is_empty() {
            content.media.push(Media::at(url, None));
        }
        content.text = own(text(m, "caption"));
    } else if let Some(l) = cm.get("location_message") {
        content.message_type = "location";
        let coordinate = |key: &str| {
            l.pointer(&format!("/coordinates/{key}"))
                .and_then(Value::as_f64)
        };
        content.location = match (coordinate("latitude"), coordinate("longitude")) {
            (Some(latitude), Some(longitude)) => Some(Location {
                latitude,
                longitude,
                name: own(text(l, "title")),
                address: own(text(l, "label")),
            }),
            _ => {
                return Err(NormalizeError::invalid(
                    "message/contact_message/location_message/coordinates",
                    "no latitude and longitude",
                ));
            }
        };
    } else if let Some(c) = cm.get("choice_response_message") {
        content.message_type = "button";
        content.text = own(text(c, "postback_data"));
        content.reply_to = own(text(c, "message_id"));
    } else if let Some(p) = cm.get("product_response_message") {
        content.message_type = "order";
        content.text = own(text(p, "text"));
    } else if let Some(s) = cm.get("channel_specific_message") {
        content.message_type = "interactive";
        let reply = s.pointer("/message/nfm_reply");
        content.text =
            reply.and_then(|r| own(text(r, "body")).or_else(|| own(text(r, "response_json"))));
    } else if let Some(f) = cm.get("fallback_message") {
        content.text = own(text(f, "raw_message"));
    }
    if let Some(id) = cm.pointer("/reply_to/message_id").and_then(Value::as_str)
        && !id.trim().is_empty()
    {
        content.reply_to = Some(id.to_owned());
    }
    content.text = content.text.filter(|t| !t.is_empty());
    Ok(content)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};
    use serde_json::json;

    const CTX: Context = Context {
        received_at_ms: 1_700_000_000_000,
    };

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/sinch/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// A signature vector of the SDKs: secret, headers, payload.
    struct Vector {
        secret: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    fn vector(name: &str) -> Vector {
        let v: Value = serde_json::from_slice(&fixture(name)).expect("vector json");
        let headers = v["headers"]
            .as_object()
            .expect("headers")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("header").to_owned()))
            .collect();
        Vector {
            secret: v["secret"].as_str().expect("secret").to_owned(),
            headers,
            body: fixture(v["payload_file"].as_str().expect("payload")),
        }
    }

    fn request(body: &[u8], headers: &[(&str, &str)]) -> CallbackRequest {
        let mut req = CallbackRequest::post(body.to_vec()).with_content_type("application/json");
        for (name, value) in headers {
            req.headers.insert(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        req
    }

    fn signed(v: &Vector) -> CallbackRequest {
        let headers: Vec<(&str, &str)> = v
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        request(&v.body, &headers)
    }

    fn with_header(mut req: CallbackRequest, name: &'static str, value: &str) -> CallbackRequest {
        req.headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(value).expect("value"),
        );
        req
    }

    fn verifier(pairs: &[(&str, &str)]) -> Verifier {
        let mut settings = VerifySettings::new();
        for (k, v) in pairs {
            settings.insert(*k, *v);
        }
        Verifier::from_settings(&settings).expect("verifier")
    }

    fn basic(credentials: &str) -> String {
        format!("Basic {}", STANDARD.encode(credentials))
    }

    fn sign(secret: &str, body: &[u8], nonce: &str, ts: &str) -> String {
        mac::hmac(
            Hash::Sha256,
            secret.as_bytes(),
            &[body, b".", nonce.as_bytes(), b".", ts.as_bytes()],
        )
        .to_base64()
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

    fn events(name: &str) -> Vec<Event> {
        let out = run(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(out.unparsed.is_empty(), "{name}: {:?}", out.unparsed);
        assert!(out.control.is_none(), "{name}");
        out.events
    }

    fn one(name: &str) -> Event {
        let mut events = events(name);
        assert_eq!(events.len(), 1, "{name}");
        events.remove(0)
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

    // --- signature -----------------------------------------------------------------------

    #[test]
    fn the_sdk_vectors_verify() {
        let conv = vector("conv_signed_vector.json");
        verifier(&[("secret", &conv.secret)])
            .verify(&signed(&conv), &NO_CLOCK)
            .expect("Conversation API vector (Python and Java SDKs)");
        let sms = vector("sms_signed_vector.json");
        verifier(&[("secret", &sms.secret)])
            .verify(&signed(&sms), &NO_CLOCK)
            .expect("SMS API vector (Node and Java SDKs)");
        // The vectors' own timestamps, against a clock just after them.
        verifier(&[("secret", &conv.secret)])
            .verify(&signed(&conv), &at(1_634_579_353 + 60))
            .expect("fresh");
        verifier(&[("secret", &sms.secret)])
            .verify(&signed(&sms), &at(1_736_760_161 - 60))
            .expect("fresh");
    }

    #[test]
    fn tampered_body_signature_nonce_or_timestamp_fails() {
        let v = vector("conv_signed_vector.json");
        let ver = verifier(&[("secret", &v.secret)]);
        let mismatch = |req: &CallbackRequest| {
            matches!(ver.verify(req, &NO_CLOCK), Err(VerifyError::Mismatch))
        };
        let mut body = v.body.clone();
        body.push(b' ');
        let req = Vector {
            body,
            ..vector("conv_signed_vector.json")
        };
        assert!(mismatch(&signed(&req)));
        let mut body = v.body.clone();
        body[10] ^= 1;
        let req = Vector {
            body,
            ..vector("conv_signed_vector.json")
        };
        assert!(mismatch(&signed(&req)));
        for (name, value) in [
            (NONCE_HEADER, "01FJA8B4A7BM43YGWSG9GBV068"),
            (TIMESTAMP_HEADER, "1634579354"),
            (
                SIGNATURE_HEADER,
                "Yc+3R1pIS78xLASybulhs8BsSo9BPB3Pr92QCUoczfg=",
            ),
            (SIGNATURE_HEADER, "YWJj"),
        ] {
            assert!(mismatch(&with_header(signed(&v), name, value)), "{name}");
        }
        // Another secret.
        assert!(matches!(
            verifier(&[("secret", "foo_secret1235")]).verify(&signed(&v), &NO_CLOCK),
            Err(VerifyError::Mismatch)
        ));
    }

    #[test]
    fn stale_and_future_timestamps_fail() {
        let v = vector("conv_signed_vector.json");
        let ver = verifier(&[("secret", &v.secret)]);
        let ts = 1_634_579_353;
        for now in [ts + 301, ts - 301, ts + 86_400] {
            assert!(
                matches!(
                    ver.verify(&signed(&v), &at(now)),
                    Err(VerifyError::Stale(_))
                ),
                "{now}"
            );
        }
        ver.verify(&signed(&v), &at(ts + 300)).expect("at the edge");
        let tolerant = VerifyOptions {
            now_secs: Some(ts + 3600),
            tolerance_secs: Some(7200),
        };
        ver.verify(&signed(&v), &tolerant)
            .expect("configured tolerance");
    }

    #[test]
    fn missing_and_malformed_headers_fail() {
        let v = vector("sms_signed_vector.json");
        let ver = verifier(&[("secret", &v.secret)]);
        for name in [SIGNATURE_HEADER, NONCE_HEADER, TIMESTAMP_HEADER] {
            let mut req = signed(&v);
            req.headers.remove(name);
            assert!(
                matches!(ver.verify(&req, &NO_CLOCK), Err(VerifyError::Missing(_))),
                "{name}"
            );
        }
        // The algorithm header is optional (the Python SDK's vector has none), but when
        // present it must be HmacSHA256.
        let mut req = signed(&v);
        req.headers.remove(ALGORITHM_HEADER);
        ver.verify(&req, &NO_CLOCK).expect("no algorithm header");
        let req = with_header(signed(&v), ALGORITHM_HEADER, "hmacsha256");
        ver.verify(&req, &NO_CLOCK).expect("any case");
        for (name, value) in [
            (ALGORITHM_HEADER, "HmacSHA1"),
            (SIGNATURE_HEADER, "%%% not base64"),
        ] {
            assert!(
                matches!(
                    ver.verify(&with_header(signed(&v), name, value), &NO_CLOCK),
                    Err(VerifyError::Malformed(_))
                ),
                "{value}"
            );
        }
        // A timestamp that is not Unix seconds, signed as such: refused.
        let body = &v.body;
        let sig = sign(&v.secret, body, "n", "yesterday");
        let req = request(
            body,
            &[
                (SIGNATURE_HEADER, &sig),
                (NONCE_HEADER, "n"),
                (TIMESTAMP_HEADER, "yesterday"),
            ],
        );
        assert!(matches!(
            ver.verify(&req, &NO_CLOCK),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn settings_fail_closed() {
        let settings = |pairs: &[(&str, &str)]| {
            let mut s = VerifySettings::new();
            for (k, v) in pairs {
                s.insert(*k, *v);
            }
            Verifier::from_settings(&s)
        };
        for pairs in [
            &[][..],
            &[("secret", "")][..],
            &[("secret", "  "), ("basic_auth", "")][..],
        ] {
            assert!(
                matches!(settings(pairs), Err(VerifyConfigError::Missing { .. })),
                "{pairs:?}"
            );
        }
        assert!(matches!(
            settings(&[("basic_auth", "no-colon")]),
            Err(VerifyConfigError::Invalid { .. })
        ));
        assert!(matches!(
            settings(&[("secret", "s"), ("app_secret", "x")]),
            Err(VerifyConfigError::Unknown { .. })
        ));
        let v = settings(&[("secret", "hunter2"), ("basic_auth", "user:sekrit")]).expect("both");
        let debug = format!("{v:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("sekrit"),
            "{debug}"
        );
    }

    #[test]
    fn a_conversation_callback_needs_its_signature_whatever_else_is_set() {
        let v = vector("conv_signed_vector.json");
        // A route for the SMS API only: Conversation API callbacks cannot pass, signed or
        // not, even with the right Basic credentials.
        let sms_only = verifier(&[("basic_auth", "user:pass")]);
        let with_basic = with_header(signed(&v), "authorization", &basic("user:pass"));
        assert!(matches!(
            sms_only.verify(&with_basic, &NO_CLOCK),
            Err(VerifyError::BadCredentials)
        ));
        let mut unsigned = with_basic.clone();
        unsigned.headers.remove(SIGNATURE_HEADER);
        assert!(matches!(
            sms_only.verify(&unsigned, &NO_CLOCK),
            Err(VerifyError::Missing(_))
        ));
        // Both set: Basic credentials do not stand in for the signature.
        let both = verifier(&[("secret", &v.secret), ("basic_auth", "user:pass")]);
        both.verify(&signed(&v), &NO_CLOCK).expect("signed");
        assert!(matches!(
            both.verify(&unsigned, &NO_CLOCK),
            Err(VerifyError::Missing(_))
        ));
        // A body that is not JSON is checked as a Conversation API callback.
        let garbage = request(b"not json", &[("authorization", &basic("user:pass"))]);
        assert!(both.verify(&garbage, &NO_CLOCK).is_err());
        assert!(sms_only.verify(&garbage, &NO_CLOCK).is_err());
        // A `type` that is not a string, or not at the top of an object, does not make an
        // SMS API callback.
        for body in [
            &br#"{"type":1,"batch_id":"b","recipient":"123","status":"Delivered"}"#[..],
            br#"["mo_text","1","46700000000"]"#,
            br#"{"message":{"type":"mo_text"}}"#,
        ] {
            let req = request(body, &[("authorization", &basic("user:pass"))]);
            assert!(sms_only.verify(&req, &NO_CLOCK).is_err());
        }
    }

    #[test]
    fn an_sms_callback_passes_every_configured_check_that_applies() {
        let v = vector("sms_signed_vector.json");
        let auth = basic("user:pass");
        let unsigned = |auth: Option<&str>| {
            let mut req = signed(&v);
            for name in [
                SIGNATURE_HEADER,
                NONCE_HEADER,
                TIMESTAMP_HEADER,
                ALGORITHM_HEADER,
            ] {
                req.headers.remove(name);
            }
            match auth {
                Some(a) => with_header(req, "authorization", a),
                None => req,
            }
        };
        // basic_auth only.
        let basic_only = verifier(&[("basic_auth", "user:pass")]);
        basic_only
            .verify(&unsigned(Some(&auth)), &NO_CLOCK)
            .expect("credentials");
        assert!(matches!(
            basic_only.verify(&unsigned(None), &NO_CLOCK),
            Err(VerifyError::Missing(_))
        ));
        assert!(matches!(
            basic_only.verify(&unsigned(Some(&basic("user:nope"))), &NO_CLOCK),
            Err(VerifyError::BadCredentials)
        ));
        // Signed and carrying credentials, on a route that has no secret: the credentials.
        basic_only
            .verify(&with_header(signed(&v), "authorization", &auth), &NO_CLOCK)
            .expect("signature not checkable here, credentials are");
        // secret only: the signature is required.
        let secret_only = verifier(&[("secret", &v.secret)]);
        assert!(matches!(
            secret_only.verify(&unsigned(Some(&auth)), &NO_CLOCK),
            Err(VerifyError::Missing(_))
        ));
        // Both: the credentials always, the signature when the callback is signed.
        let both = verifier(&[("secret", &v.secret), ("basic_auth", "user:pass")]);
        both.verify(&unsigned(Some(&auth)), &NO_CLOCK)
            .expect("unsigned, credentials");
        both.verify(&with_header(signed(&v), "authorization", &auth), &NO_CLOCK)
            .expect("signed and credentials");
        assert!(matches!(
            both.verify(&signed(&v), &NO_CLOCK),
            Err(VerifyError::Missing(_))
        ));
        let tampered = with_header(
            with_header(signed(&v), "authorization", &auth),
            NONCE_HEADER,
            "other",
        );
        assert!(matches!(
            both.verify(&tampered, &NO_CLOCK),
            Err(VerifyError::Mismatch)
        ));
    }

    // --- SMS API ---------------------------------------------------------------------------

    #[test]
    fn batch_reports_become_one_event_per_recipient() {
        let out = run(&fixture("sms_batch_report_full.json")).expect("normalize");
        let got: Vec<(&str, Status)> = out
            .events
            .iter()
            .map(|e| (e.channel_value.as_str(), status(e).status))
            .collect();
        assert_eq!(
            got,
            [
                ("+123456789", Status::Queued),
                ("+987654321", Status::Delivered),
                ("+123459876", Status::Delivered),
            ]
        );
        for e in &out.events {
            assert_eq!(e.channel, Channel::Sms);
            assert_eq!(e.vendor_ack_id.as_deref(), Some("{batch_id}"));
            assert_eq!(status(e).timestamp_ms, CTX.received_at_ms);
            assert!(status(e).error.is_none());
            // The report narrowed to the event's entry and recipient.
            let raw = e.raw.to_value();
            assert_eq!(raw["type"], "delivery_report_sms");
            assert_eq!(raw["total_message_count"], 3);
            assert_eq!(raw["statuses"].as_array().map(Vec::len), Some(1));
            assert_eq!(
                raw["statuses"][0]["recipients"],
                json!([e.channel_value.trim_start_matches('+')])
            );
        }
        assert_eq!(out.events[1].raw.to_value()["statuses"][0]["count"], 2);
        let keys: std::collections::BTreeSet<_> =
            out.events.iter().map(|e| &e.idempotency_key).collect();
        assert_eq!(keys.len(), 3);
        // Each event of a summary report (no recipients) has no address.
        let out = run(&fixture("sms_batch_report_summary.json")).expect("normalize");
        let got: Vec<(&str, Status)> = out
            .events
            .iter()
            .map(|e| (e.channel_value.as_str(), status(e).status))
            .collect();
        assert_eq!(got, [("", Status::Queued), ("", Status::Delivered)]);
    }

    #[test]
    fn sdk_reports_and_inbound_messages_map() {
        for name in ["sms_batch_report_sms.json", "sms_batch_report_mms.json"] {
            let e = one(name);
            assert_eq!(e.channel_value, "+44231235674");
            assert_eq!(
                e.vendor_ack_id.as_deref(),
                Some("01FC66621XXXXX119Z8PMV1QPQ")
            );
            assert_eq!(status(&e).status, Status::Delivered);
            assert_eq!(e.correlation["client_reference"], "a client reference");
        }
        for name in [
            "sms_recipient_report_sms.json",
            "sms_recipient_report_mms.json",
        ] {
            let e = one(name);
            assert_eq!(e.channel, Channel::Sms);
            assert_eq!(e.channel_value, "+44231235674");
            let s = status(&e);
            assert_eq!((s.status, s.informational), (Status::Sent, false));
            assert_eq!(s.timestamp_ms, 1_661_847_368_930, "`at`");
            assert!(s.error.is_none());
            assert_eq!(e.correlation["client_reference"], "client reference");
        }
        let e = one("sms_recipient_report_docs.json");
        assert_eq!(e.channel_value, "+123456789");
        assert_eq!(status(&e).status, Status::Delivered);
        assert_eq!(status(&e).timestamp_ms, 1_475_400_858_542);
        assert!(e.correlation.is_empty());

        let e = one("sms_mo_text.json");
        let m = inbound(&e);
        assert_eq!(
            (m.from.as_str(), m.to.as_str()),
            ("+11203494390", "+11203453453")
        );
        assert_eq!(e.channel_value, "+11203494390");
        assert_eq!(
            (m.message_type.as_str(), m.text.as_deref()),
            ("text", Some("a body"))
        );
        assert_eq!(m.timestamp_ms, 1_566_656_242_000, "received_at");
        assert_eq!(m.source_message_id, "01FC66621XXXXX119Z8PMV1QPA");
        assert_eq!(
            e.vendor_ack_id.as_deref(),
            Some("01FC66621XXXXX119Z8PMV1QPA")
        );
        let m = inbound(&one("sms_mo_binary.json")).clone();
        assert_eq!((m.message_type.as_str(), m.text), ("binary", None));
        let e = one("sms_mo_media.json");
        let m = inbound(&e);
        assert_eq!(m.message_type, "document", "content/type is no known kind");
        assert_eq!(m.text.as_deref(), Some("my message"));
        assert_eq!(
            m.media,
            [Media::at("https://foo.url", Some("content/type".into()))]
        );
        let e = one("sms_mo_text_docs.json");
        let m = inbound(&e);
        assert_eq!((m.from.as_str(), m.to.as_str()), ("+123456789", "12345"));
        assert_eq!(m.text.as_deref(), Some("Help"));
        assert_eq!(m.timestamp_ms, 1_468_933_742_972);
    }

    #[test]
    fn every_sms_status_maps() {
        let cases = [
            ("Queued", 400, Status::Queued),
            ("Dispatched", 401, Status::Sent),
            ("Delivered", 0, Status::Delivered),
            ("Unknown", 0, Status::Sent),
            ("Aborted", 412, Status::Failed),
            ("Cancelled", 407, Status::Failed),
            ("Rejected", 402, Status::Failed),
            ("Deleted", 63, Status::Failed),
            ("Failed", 403, Status::Failed),
            ("Expired", 406, Status::Failed),
        ];
        for (name, code, want) in cases {
            let body = json!({"type":"recipient_delivery_report_sms","batch_id":"01B",
                "recipient":"46700000000","code":code,"status":name,"at":"2024-01-01T00:00:00Z"});
            let e = run(body.to_string().as_bytes())
                .expect("normalize")
                .events
                .remove(0);
            let s = status(&e);
            assert_eq!((s.status, s.informational), (want, false), "{name}");
            assert_eq!(s.error.is_some(), want == Status::Failed, "{name}");
        }
        let failed = |code: Value| {
            let body = json!({"type":"recipient_delivery_report_sms","batch_id":"01B",
                "recipient":"46700000000","code":code,"status":"Aborted"});
            run(body.to_string().as_bytes())
                .expect("normalize")
                .events
                .remove(0)
                .status()
                .and_then(|s| s.error.clone())
        };
        assert_eq!(
            failed(json!(412)),
            Some(ErrorInfo {
                code: Some("412".into()),
                message: Some("Unprovisioned region".into())
            })
        );
        assert_eq!(
            failed(json!("63")),
            Some(ErrorInfo {
                code: Some("63".into()),
                message: Some("Aborted".into())
            })
        );
        assert_eq!(
            failed(Value::Null),
            Some(ErrorInfo {
                code: None,
                message: Some("Aborted".into())
            })
        );
        let e = run(br#"{"type":"recipient_delivery_report_sms","batch_id":"b","recipient":"46700000000","status":"Teleported"}"#)
            .expect("normalize")
            .events
            .remove(0);
        assert_eq!(
            (status(&e).status, status(&e).informational),
            (Status::Queued, true)
        );
        assert_eq!(status(&e).timestamp_ms, CTX.received_at_ms, "no `at`");
    }

    #[test]
    fn batch_entries_that_cannot_be_normalized_are_kept_and_the_rest_delivered() {
        let body = json!({"type":"delivery_report_sms","batch_id":"01B","statuses":[
            {"code":0,"status":"Delivered","count":1,"recipients":["46700000001"]},
            "not an entry",
            {"code":0,"count":1,"recipients":["46700000002"]},
            {"code":0,"status":"Delivered","count":1,"recipients":[7]},
            {"code":412,"status":"Aborted","count":1,"recipients":["46700000003"]}
        ]});
        let out = run(body.to_string().as_bytes()).expect("normalize");
        let got: Vec<(&str, Status)> = out
            .events
            .iter()
            .map(|e| (e.channel_value.as_str(), status(e).status))
            .collect();
        assert_eq!(
            got,
            [
                ("+46700000001", Status::Delivered),
                ("+46700000003", Status::Failed)
            ]
        );
        assert_eq!(out.unparsed.len(), 3);
        for u in &out.unparsed {
            assert!(u.reason.contains("statuses/"), "{}", u.reason);
            // Alone, it is a Sinch report the normalizer still cannot take.
            let again = run(u.replay_body().as_bytes()).expect("a Sinch body");
            assert_eq!((again.events.len(), again.unparsed.len()), (0, 1));
        }
        for bad in [
            json!({"type":"delivery_report_sms","statuses":[]}),
            json!({"type":"delivery_report_sms","batch_id":"b"}),
            json!({"type":"delivery_report_sms","batch_id":"b","statuses":{}}),
        ] {
            assert!(run(bad.to_string().as_bytes()).is_err(), "{bad}");
        }
        let empty = run(br#"{"type":"delivery_report_sms","batch_id":"b","statuses":[]}"#)
            .expect("an empty report");
        assert!(empty.events.is_empty() && empty.unparsed.is_empty());
    }

    #[test]
    fn an_unknown_sms_type_is_kept_whole() {
        let body = br#"{"type":"delivery_report_rcs","batch_id":"b"}"#;
        let out = run(body).expect("kept");
        assert!(out.events.is_empty());
        assert_eq!(out.unparsed.len(), 1);
        assert!(out.unparsed[0].reason.contains("delivery_report_rcs"));
    }

    // --- Conversation API --------------------------------------------------------------------

    #[test]
    fn conversation_delivery_reports_map() {
        let e = one("conv_delivery_failed_whatsapp.json");
        assert_eq!(e.channel, Channel::Whatsapp);
        assert_eq!(e.channel_value, "+12345678910");
        assert_eq!(
            e.vendor_ack_id.as_deref(),
            Some("01EQBF0BT63J7S1FEKJZ0Z08VD")
        );
        let s = status(&e);
        assert_eq!(s.status, Status::Failed);
        assert_eq!(s.timestamp_ms, 1_605_628_867_000, "event_time");
        assert_eq!(
            s.error.as_ref().and_then(|e| e.code.as_deref()),
            Some("OUTSIDE_ALLOWED_SENDING_WINDOW")
        );
        assert!(
            s.error
                .as_ref()
                .and_then(|e| e.message.as_deref())
                .is_some_and(|m| m.starts_with("The underlying channel reported"))
        );
        assert!(e.correlation.is_empty(), "empty metadata is absent");

        let e = one("conv_whatsapp_delivery_read.json");
        assert_eq!(e.channel_value, "+46702471483");
        assert_eq!(status(&e).status, Status::Seen);
        assert_eq!(status(&e).timestamp_ms, 1_592_823_953_910, "accepted_time");

        // The older format: `channel` on the report, no identity, `reason: ""`.
        let e = one("conv_sms_delivery_delivered.json");
        assert_eq!((e.channel, e.channel_value.as_str()), (Channel::Sms, ""));
        assert_eq!(status(&e).status, Status::Delivered);
        assert_eq!(
            e.vendor_ack_id.as_deref(),
            Some("01E6K7CMXY3KHH0AGCTY6D04F2")
        );

        let v = vector("conv_signed_vector.json");
        let out = run(&v.body).expect("normalize");
        assert_eq!(out.events.len(), 0, "no channel in the SDK's sample body");
        assert_eq!(out.unparsed.len(), 1);
    }

    #[test]
    fn every_conversation_status_maps() {
        let cases = [
            ("QUEUED", Status::Queued, false),
            ("QUEUED_ON_CHANNEL", Status::Sent, false),
            ("DELIVERED", Status::Delivered, false),
            ("read", Status::Seen, false),
            ("FAILED", Status::Failed, false),
            ("SWITCHING_CHANNEL", Status::Queued, true),
            ("SOMETHING_NEW", Status::Queued, true),
        ];
        for (name, want, informational) in cases {
            let body = json!({"app_id":"A","correlation_id":"order-7",
                "message_delivery_report":{"message_id":"M1","status":name,"metadata":"meta-1",
                "channel_identity":{"channel":"SMS","identity":"46700000000"},
                "reason":{"code":"RECIPIENT_NOT_REACHABLE","description":"gone"}}});
            let e = run(body.to_string().as_bytes())
                .expect("normalize")
                .events
                .remove(0);
            let s = status(&e);
            assert_eq!((s.status, s.informational), (want, informational), "{name}");
            assert_eq!(s.error.is_some(), want == Status::Failed, "{name}");
            assert_eq!(e.correlation["correlation_id"], "order-7");
            assert_eq!(e.correlation["message_metadata"], "meta-1");
        }
    }

    #[test]
    fn submit_notifications_are_queued() {
        let body = json!({"app_id":"A","accepted_time":"2020-11-17T16:05:51.724083Z",
            "message_submit_notification":{"message_id":"M1","channel_identity":
            {"channel":"WHATSAPP","identity":"US.13491208655302741918"},
            "submitted_message":{"text_message":{"text":"hi"}}}});
        let e = run(body.to_string().as_bytes())
            .expect("normalize")
            .events
            .remove(0);
        let s = status(&e);
        assert_eq!((s.status, s.informational), (Status::Queued, false));
        // A business-scoped user id is kept as sent, and is the user id too.
        assert_eq!(e.channel_value, "US.13491208655302741918");
        assert_eq!(
            e.channel_user.user_id.as_deref(),
            Some("US.13491208655302741918")
        );
        // The SDK's sample is on MESSENGER: kept as unparsed, the channel named.
        let out = run(&fixture("conv_submit_messenger.json")).expect("normalize");
        assert!(out.events.is_empty());
        assert!(
            out.unparsed[0].reason.contains("MESSENGER"),
            "{}",
            out.unparsed[0].reason
        );
    }

    #[test]
    fn whatsapp_and_sms_inbound_messages_map() {
        let e = one("conv_whatsapp_inbound_text.json");
        let m = inbound(&e);
        assert_eq!(e.channel, Channel::Whatsapp);
        assert_eq!((m.from.as_str(), m.to.as_str()), ("+46712312312", ""));
        assert_eq!(
            (m.message_type.as_str(), m.text.as_deref()),
            ("text", Some("Hi from contact"))
        );
        assert_eq!(m.source_message_id, "01EBDTPPG3Q3EH14H7DY8X09MG");
        assert_eq!(m.timestamp_ms, 1_592_823_339_534, "accepted_time");

        let e = one("conv_whatsapp_inbound_media.json");
        let m = inbound(&e);
        assert_eq!(m.message_type, "image", ".png");
        assert_eq!(m.media.len(), 1);
        assert!(m.media[0].url.ends_with("Sinch-logo-Events.png"));
        assert_eq!(m.timestamp_ms, 1_601_554_253_991, "event_time");

        let m = inbound(&one("conv_whatsapp_inbound_media_card.json")).clone();
        assert_eq!(
            (m.message_type.as_str(), m.text.as_deref()),
            ("image", Some("caption text"))
        );

        let m = inbound(&one("conv_whatsapp_inbound_location.json")).clone();
        assert_eq!(m.message_type, "location");
        assert_eq!(
            m.location,
            Some(Location {
                latitude: 55.727802,
                longitude: 13.175061,
                name: Some("ICA Jägaren".into()),
                address: None,
            })
        );

        let m = inbound(&one("conv_whatsapp_inbound_choice.json")).clone();
        assert_eq!(
            (m.message_type.as_str(), m.text.as_deref()),
            ("button", Some("email_postback"))
        );
        assert_eq!(
            m.context.map(|c| c.id).as_deref(),
            Some("01EBDTZ9SN8HTW092K56PH1GDS")
        );

        // The older SMS format names no contact identity: empty addresses.
        for name in ["conv_sms_inbound_text.json", "conv_sms_inbound_choice.json"] {
            let e = one(name);
            assert_eq!((e.channel, e.channel_value.as_str()), (Channel::Sms, ""));
            assert_eq!(inbound(&e).from, "");
        }
    }

    #[test]
    fn every_contact_message_kind_maps() {
        let inbound_of = |cm: Value| {
            let body = json!({"app_id":"A","event_time":"2024-06-06T14:42:42.379863404Z",
                "message":{"id":"M","direction":"TO_APP","contact_message":cm,"sender_id":"12015555555",
                "channel_identity":{"channel":"MMS","identity":"12017777777"}}});
            let mut out = run(body.to_string().as_bytes()).expect("normalize");
            assert_eq!(out.events.len(), 1, "{body}");
            out.events.remove(0)
        };
        let e = inbound_of(
            json!({"text_message":{"text":"Grüße 👋 日本語"},"reply_to":{"message_id":"R1"}}),
        );
        let m = inbound(&e);
        assert_eq!(e.channel, Channel::Sms, "MMS is sms");
        assert_eq!(
            (m.from.as_str(), m.to.as_str()),
            ("+12017777777", "+12015555555")
        );
        assert_eq!(m.text.as_deref(), Some("Grüße 👋 日本語"));
        assert_eq!(m.context.as_ref().map(|c| c.id.as_str()), Some("R1"));
        assert_eq!(m.timestamp_ms, 1_717_684_962_379, "nanoseconds");
        let cases = [
            (
                json!({"media_message":{"url":"https://x/v.MP4?sig=1"}}),
                "video",
                None,
            ),
            (
                json!({"media_message":{"url":"https://x/a.ogg"}}),
                "audio",
                None,
            ),
            (
                json!({"media_message":{"url":"https://x/file"}}),
                "document",
                None,
            ),
            (
                json!({"product_response_message":{"products":[],"text":"these"}}),
                "order",
                Some("these"),
            ),
            (
                json!({"channel_specific_message":{"message_type":"nfm_reply","message":{"type":"nfm_reply",
                "nfm_reply":{"name":"flow","response_json":"{\"a\":1}"}}}}),
                "interactive",
                Some("{\"a\":1}"),
            ),
            (
                json!({"fallback_message":{"raw_message":"???","reason":{"code":"UNKNOWN"}}}),
                "unsupported",
                Some("???"),
            ),
            (json!({"something_new":{}}), "unsupported", None),
        ];
        for (cm, kind, text) in cases {
            let e = inbound_of(cm.clone());
            let m = inbound(&e);
            assert_eq!(
                (m.message_type.as_str(), m.text.as_deref()),
                (kind, text),
                "{cm}"
            );
        }
        let body = json!({"app_id":"A","message":{"id":"M","contact_message":
            {"location_message":{"title":"x"}},"channel_identity":{"channel":"SMS","identity":"1"}}});
        assert!(
            run(body.to_string().as_bytes()).is_err(),
            "a location without coordinates"
        );
        let body = json!({"app_id":"A","message":{"id":"M",
            "channel_identity":{"channel":"SMS","identity":"1"}}});
        assert!(
            run(body.to_string().as_bytes()).is_err(),
            "no contact_message"
        );
    }

    #[test]
    fn other_channels_and_triggers_are_not_events() {
        for name in [
            "conv_inbound_text_messenger.json",
            "conv_delivery_queued_on_channel_messenger.json",
            "conv_delivery_delivered_messenger.json",
        ] {
            let out = run(&fixture(name)).expect("normalize");
            assert!(out.events.is_empty(), "{name}");
            assert_eq!(out.unparsed.len(), 1, "{name}");
            assert!(out.unparsed[0].reason.contains("MESSENGER"), "{name}");
            // The body exactly as received.
            assert_eq!(out.unparsed[0].raw.as_bytes(), fixture(name), "{name}");
        }
        let out = run(&fixture("conv_unsupported_callback.json")).expect("normalize");
        assert_eq!((out.events.len(), out.unparsed.len()), (0, 1));
        for (name, trigger) in [
            ("conv_inbound_event_composing_rcs.json", "event"),
            ("conv_event_delivery_report.json", "event_delivery_report"),
            (
                "conv_conversation_start.json",
                "conversation_start_notification",
            ),
            ("conv_contact_create.json", "contact_create_notification"),
            ("conv_capability.json", "capability_notification"),
            ("conv_opt_out.json", "opt_out_notification"),
        ] {
            let out = run(&fixture(name)).expect("normalize");
            assert!(out.events.is_empty() && out.unparsed.is_empty(), "{name}");
            let Some(Control::Ignored { reason }) = out.control else {
                panic!("{name}: ignored expected")
            };
            assert!(reason.contains(&format!(" {trigger} ")), "{reason}");
        }
        let out = run(br#"{"app_id":"A","brand_new_notification":{}}"#).expect("kept");
        assert_eq!(out.unparsed.len(), 1);
        for body in [
            &br#"{"message_delivery_report":{"message_id":"M","status":"DELIVERED"},"app_id":"A"}"#[..],
            br#"{"app_id":"A","message":{"id":"M","contact_message":{"text_message":{"text":"x"}},"channel_identity":{"channel":"TELEGRAM","identity":"1"}}}"#,
        ] {
            let out = run(body).expect("kept");
            assert_eq!((out.events.len(), out.unparsed.len()), (0, 1));
        }
    }

    #[test]
    fn idempotency_keys_are_stable_and_distinct() {
        let key = |name: &str| one(name).idempotency_key;
        assert_eq!(
            key("conv_whatsapp_delivery_read.json"),
            key("conv_whatsapp_delivery_read.json")
        );
        let names = [
            "conv_whatsapp_delivery_read.json",
            "conv_delivery_failed_whatsapp.json",
            "conv_whatsapp_inbound_text.json",
            "conv_whatsapp_inbound_location.json",
            "sms_recipient_report_sms.json",
            "sms_recipient_report_mms.json",
            "sms_mo_text.json",
        ];
        let keys: std::collections::BTreeSet<_> = names.iter().map(|n| key(n)).collect();
        assert_eq!(keys.len(), names.len());
        // A report's key follows its status, not the callback's bytes.
        let report = |status: &str, spaces: &str| {
            let body = format!(
                r#"{{"type":"recipient_delivery_report_sms",{spaces}"batch_id":"B","recipient":"46700000000","code":0,"status":"{status}","at":"2024-01-01T00:00:00Z"}}"#
            );
            run(body.as_bytes())
                .expect("normalize")
                .events
                .remove(0)
                .idempotency_key
        };
        assert_eq!(report("Delivered", ""), report("Delivered", "  "));
        assert_ne!(report("Delivered", ""), report("Dispatched", ""));
    }

    // --- bodies that are not Sinch's ---------------------------------------------------------

    #[test]
    fn malformed_input_is_an_error() {
        let cases: &[&[u8]] = &[
            b"",
            b"  ",
            b"{\"type\":\"mo_text\"",
            b"[]",
            b"\"mo_text\"",
            b"{}",
            b"{\"type\":\"mo_text\"}",
            b"{\"type\":\"mo_text\",\"id\":\"1\"}",
            b"{\"type\":\"mo_text\",\"id\":\"1\",\"from\":\"4670\",\"received_at\":\"soon\"}",
            b"{\"type\":\"mo_text\",\"id\":\"1\",\"from\":\"4670\",\"received_at\":\"x\xc3\xa9aaaa\"}",
            b"{\"type\":\"mo_media\",\"id\":\"1\",\"from\":\"4670\",\"body\":\"text\"}",
            b"{\"type\":\"recipient_delivery_report_sms\",\"batch_id\":\"b\",\"recipient\":5,\"status\":\"Delivered\"}",
            b"{\"type\":\"recipient_delivery_report_sms\",\"batch_id\":\"b\",\"recipient\":\"1\",\"status\":\"Delivered\",\"at\":12}",
            b"{\"app_id\":\"A\",\"message_delivery_report\":\"text\"}",
            b"{\"app_id\":\"A\",\"message_delivery_report\":{\"status\":\"DELIVERED\"}}",
            b"{\"app_id\":\"A\",\"event_time\":\"never\",\"message_delivery_report\":{\"message_id\":\"M\",\"status\":\"READ\",\"channel\":\"SMS\"}}",
            b"{\"app_id\":\"A\",\"message\":{\"contact_message\":{}}}",
            b"\xff\xfe\x00garbage",
        ];
        for body in cases {
            assert!(run(body).is_err(), "{:?}", String::from_utf8_lossy(body));
        }
        let good = fixture("sms_mo_text.json");
        let form = CallbackRequest::post(good.clone())
            .with_content_type("application/x-www-form-urlencoded");
        assert!(matches!(
            normalize(&form, &CTX),
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
        let garbage = vec![b'{'; 10 * 1024 * 1024];
        assert!(run(&garbage).is_err());
    }

    #[test]
    fn a_body_beyond_the_limits_is_kept_whole() {
        let deep = format!(
            r#"{{"type":"mo_text","id":"1","from":"46700000000","x":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let long = format!(
            r#"{{"app_id":"A","message":{{"id":"1","n":{}}}}}"#,
            "9".repeat(100_000)
        );
        for body in [&deep, &long] {
            let out = run(body.as_bytes()).expect("kept");
            assert!(out.events.is_empty());
            assert_eq!(out.unparsed.len(), 1);
            assert_eq!(out.unparsed[0].raw, *body);
        }
        let array = format!("[{}{}]", "[".repeat(100_000), "]".repeat(100_000));
        assert!(run(array.as_bytes()).is_err());
        assert!(run(&deep.as_bytes()[..deep.len() - 1]).is_err());
    }

    #[test]
    fn mutated_bodies_never_panic() {
        // Every fixture, cut and with bytes replaced (a fixed pseudo-random sequence), through
        // the normalizer and a verifier of each kind: errors are fine, panics are not.
        let dir = format!("{}/tests/fixtures/sinch", env!("CARGO_MANIFEST_DIR"));
        let mut bodies: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .expect("fixtures")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json" || x == "txt"))
            .filter(|p| !p.to_string_lossy().ends_with(".source.txt"))
            .map(|p| std::fs::read(p).expect("read"))
            .collect();
        bodies.sort();
        let verifiers = [
            verifier(&[("secret", "s")]),
            verifier(&[("basic_auth", "u:p")]),
            verifier(&[("secret", "s"), ("basic_auth", "u:p")]),
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let specials = b"{}[]\",:0-9eE.\\ \x00\xff";
        for body in &bodies {
            for round in 0..200 {
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
                let req = request(
                    &m,
                    &[
                        (SIGNATURE_HEADER, "YWJj"),
                        (NONCE_HEADER, "n"),
                        (TIMESTAMP_HEADER, "1700000000"),
                        ("authorization", "Basic dTpw"),
                    ],
                );
                let _ = normalize(&req, &CTX);
                for v in &verifiers {
                    let _ = v.verify(&req, &at(1_700_000_000));
                }
            }
        }
    }
}
