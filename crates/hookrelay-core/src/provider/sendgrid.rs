//! SendGrid Event Webhook (email delivery and engagement events).
//!
//! # Callback format
//!
//! `POST`, `Content-Type: application/json`; the body is **always a JSON array** of event
//! objects (a batch: SendGrid posts every 30 s or at 768 kB, per server). Every element
//! becomes one [`Event`]. A JSON object (or anything else) where the array
//! belongs is a [`NormalizeError::Shape`]. An element that is beyond the
//! [`limits`](crate::limits), is not an object, or lacks what its event needs (the errors
//! below) is kept as an [`Unparsed`] event with its JSON text, and the rest of the batch
//! is normalized as usual. Per element:
//!
//! - `email` is the recipient (`channel_value`), `event` the event name (matched
//!   case-insensitively: the reserved-keys example in SendGrid's docs sends `Processed`);
//! - `timestamp` is Unix seconds, as an integer, a float or a string (all accepted; absent
//!   means the receive time);
//! - `sg_message_id` is the `vendor_ack_id`, kept **as sent**. SendGrid documents it as "a
//!   unique, internal SendGrid ID for the message" whose first half comes from the
//!   `smtp-id`, and shows this full value as "Message ID" in its Activity Feed / Email Log;
//!   the part before the first `.` equals the `X-Message-Id` of the Mail Send response,
//!   but SendGrid says the two differ, so nothing is stripped. It is absent for asynchronous
//!   bounces;
//! - `sg_event_id` (documented as unique per event, for deduplication) gives the
//!   idempotency key (with the event name); an element without one is keyed by a hash of
//!   the whole element;
//! - `reason` and `status` (an SMTP enhanced code such as `5.0.0`) become the error
//!   `{code: status, message: reason}` of `failed` and `bounced` events;
//! - `category` (a string or an array) is kept in `vendor_response` only;
//! - custom arguments (`custom_args` / `unique_args` of the send) arrive flattened into the
//!   event object. Every top-level key that is not a SendGrid field is a correlation id,
//!   kept under its own name. SendGrid fields are `email`, `timestamp`, `event`, `smtp-id`,
//!   `category`, `reason`, `status`, `response`, `attempt`, `type`, `useragent`, `ip`,
//!   `url`, `url_offset`, `asm_group_id`, `pool`, `tls`, `cert_err`,
//!   `bounce_classification`, `newsletter`, `post_type`, and every key starting with
//!   `sg_`, `marketing_campaign_`, `singlesend_` or `mc_`. (SendGrid's reserved keys win
//!   over custom arguments of the same name, so those never reach us as custom args.)
//!
//! Known message events without an `email` are malformed. An element whose `event` is not
//! a known message event is emitted with the fallback status (and `channel_value: ""`
//! when it has no `email`), unless it is about no message at all.
//!
//! # Account events
//!
//! SendGrid sorts its events into delivery, engagement and account events. An account
//! event (`account_status_change`: "your account status changed because of issues
//! related to compliance", with only `event`, `sg_event_id`, `timestamp` and a `type`
//! such as `compliance_suspend`) names no message and no recipient, and the payload has
//! no event type for it: it is not a status (the status vocabulary is about a message)
//! nor an inbound message. So it becomes no event: the callback's
//! [`Normalized::control`] is a [`Control::Ignored`] that names each one (its `type` and
//! `sg_event_id`), and the other elements of the batch are delivered as usual. The same
//! holds for an element of an unknown `event` that names neither a recipient (`email`)
//! nor a message (`sg_message_id`).
//!
//! # Signature ("Signed Event Webhook")
//!
//! Headers `X-Twilio-Email-Event-Webhook-Signature` (base64 of an ASN.1 DER ECDSA
//! signature) and `X-Twilio-Email-Event-Webhook-Timestamp`. The signature is ECDSA
//! P-256 / SHA-256 over the timestamp header bytes immediately followed by the raw body
//! bytes, verified with the account's public key. Both high-S and low-S signatures are
//! accepted (SendGrid's own test vector has a high S). SendGrid documents no timestamp
//! tolerance; when a clock is given ([`VerifyOptions::now_secs`]) the timestamp must be an
//! integer within [`VerifyOptions::tolerance`] of it, and recorded requests
//! (`now_secs: None`) get no clock check.
//!
//! # Verify keys
//!
//! | key | value |
//! |---|---|
//! | `public_key` | the "Verification Key" from SendGrid's Mail Settings: base64 of a DER SubjectPublicKeyInfo (P-256); PEM armour is tolerated |
//!
//! # Status mapping
//!
//! | SendGrid `event` | status | notes |
//! |---|---|---|
//! | `processed` | `queued` | |
//! | `deferred` | `queued` | informational (a retry, changes no status) |
//! | `delivered` | `delivered` | |
//! | `open` | `seen` | |
//! | `click` | `clicked` | |
//! | `bounce` with `type: bounce` (or no `type`) | `bounced` | error `{status, reason}` |
//! | `bounce` with `type: blocked` | `failed` | error `{status, reason}` (a block, not a hard bounce) |
//! | `dropped` | `failed` | error `{status, reason}` |
//! | `spamreport` | `complained` | |
//! | `unsubscribe`, `group_unsubscribe` | `unsubscribed` | |
//! | `group_resubscribe` | `queued` | informational |
//! | `account_status_change` | (no event) | an account event, about no message: see above |
//! | anything else | `queued` | informational: the documented fallback for unknown values (no event when the element names neither `email` nor `sg_message_id`) |

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::MultipartVerifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::event::ChannelUser;
use crate::event::{idempotency_key, idempotency_key_of_value};
use crate::provider::batch_element;
use crate::provider::json::str_of;
use crate::provider::{
    Context, Control, Normalized, Unparsed, VerifyOptions, VerifySettings, ignored_events,
    object_fields,
};
use crate::{
    CallbackRequest, Channel, ErrorInfo, Event, EventKind, NormalizeError, Status, StatusUpdate,
    VerifyConfigError, VerifyError, timestamp,
};

/// Provider id.
const PROVIDER: &str = "sendgrid";
/// Keys of the `verify:` block.
const KNOWN_KEYS: &[&str] = &["public_key"];
/// Header with the base64 DER ECDSA signature.
const SIGNATURE_HEADER: &str = "x-twilio-email-event-webhook-signature";
/// Header with the signed timestamp.
const TIMESTAMP_HEADER: &str = "x-twilio-email-event-webhook-timestamp";

/// Top-level event keys that SendGrid sets (never custom arguments).
const RESERVED: &[&str] = &[
    "email",
    "timestamp",
    "event",
    "smtp-id",
    "category",
    "reason",
    "status",
    "response",
    "attempt",
    "type",
    "useragent",
    "ip",
    "url",
    "url_offset",
    "asm_group_id",
    "pool",
    "tls",
    "cert_err",
    "bounce_classification",
    "newsletter",
    "post_type",
];
/// Prefixes of SendGrid-set keys (`sg_event_id`, `marketing_campaign_name`, …).
const RESERVED_PREFIXES: &[&str] = &["sg_", "marketing_campaign_", "singlesend_", "mc_"];
/// SendGrid's account event (a compliance action on the account, no message).
const ACCOUNT_STATUS_CHANGE: &str = "account_status_change";

/// Checks the ECDSA signature of the Signed Event Webhook.
#[derive(Clone)]
pub struct Verifier {
    key: VerifyingKey,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("public_key", &"P-256")
            .finish()
    }
}

impl Verifier {
    /// Builds the verifier from the `verify:` settings: `public_key` is required and must be
    /// a base64 DER SubjectPublicKeyInfo of a P-256 key.
    pub fn from_settings(settings: &VerifySettings) -> Result<Self, VerifyConfigError> {
        settings.only(PROVIDER, KNOWN_KEYS)?;
        let raw = settings.require(PROVIDER, "public_key")?;
        let invalid = |reason: String| VerifyConfigError::Invalid {
            provider: PROVIDER,
            key: "public_key",
            reason,
        };
        let der = decode_public_key(raw.expose()).map_err(invalid)?;
        let key = VerifyingKey::from_public_key_der(&der)
            .map_err(|e| invalid(format!("not a P-256 SubjectPublicKeyInfo: {e}")))?;
        Ok(Self { key })
    }

    /// Checks the signature over the timestamp header and the raw body, then (when a clock
    /// is given) the timestamp's age.
    pub fn verify(&self, req: &CallbackRequest, opts: &VerifyOptions) -> Result<(), VerifyError> {
        let sig_header = req
            .headers
            .get(SIGNATURE_HEADER)
            .ok_or(VerifyError::Missing(
                "X-Twilio-Email-Event-Webhook-Signature",
            ))?;
        let ts_header = req
            .headers
            .get(TIMESTAMP_HEADER)
            .ok_or(VerifyError::Missing(
                "X-Twilio-Email-Event-Webhook-Timestamp",
            ))?;
        let sig_der = STANDARD
            .decode(sig_header.as_bytes().trim_ascii())
            .map_err(|e| VerifyError::Malformed(format!("signature is not base64: {e}")))?;
        let sig = Signature::from_der(&sig_der).map_err(|_| {
            VerifyError::Malformed("signature is not a DER ECDSA P-256 signature".into())
        })?;
        self.key
            .multipart_verify(&[ts_header.as_bytes(), &req.body], &sig)
            .map_err(|_| VerifyError::Mismatch)?;
        if opts.now_secs.is_some() {
            let ts = ts_header
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(|| {
                    VerifyError::Malformed("timestamp header is not Unix seconds".into())
                })?;
            opts.check_timestamp(ts)?;
        }
        Ok(())
    }
}

/// Decodes the configured key: base64 DER, optionally inside PEM armour, whitespace ignored.
fn decode_public_key(text: &str) -> Result<Vec<u8>, String> {
    let b64: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("-----"))
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    if b64.is_empty() {
        return Err("empty key".into());
    }
    STANDARD
        .decode(b64.as_bytes())
        .map_err(|e| format!("not base64: {e}"))
}

/// Normalizes one Event Webhook batch: every array element becomes one event, or an
/// [`Unparsed`] one when it is beyond the [`limits`](crate::limits) or cannot be
/// normalized.
///
/// The array is split into its elements' JSON text first, without parsing them; each
/// element within the limits is then parsed and normalized on its own.
pub fn normalize(req: &CallbackRequest, ctx: &Context) -> Result<Normalized, NormalizeError> {
    req.expect_content_type(PROVIDER, &["application/json"], "application/json")?;
    let elements = std::str::from_utf8(&req.body)
        .ok()
        .and_then(|text| serde_json::from_str::<Vec<&RawValue>>(text).ok());
    let Some(elements) = elements else {
        // Not a JSON array: the body's own error (empty, not JSON), else its shape.
        req.json()?;
        return Err(NormalizeError::shape("", "a JSON array of events"));
    };
    let mut out = Normalized::events(Vec::with_capacity(elements.len()));
    let mut account_events = Vec::new();
    for (i, element) in elements.into_iter().enumerate() {
        let text = element.get();
        let normalized = batch_element(text, |item| element_of(i, item, ctx));
        match normalized {
            Ok(Element::Event(event)) => out.events.push(event),
            Ok(Element::Account(name)) => account_events.push(name),
            // The event alone is a SendGrid body of its own: `[event]`.
            Err(reason) => out
                .unparsed
                .push(Unparsed::new(reason, text).with_body(format!("[{text}]"))),
        }
    }
    if !account_events.is_empty() {
        out.control = Some(Control::Ignored {
            reason: account_events_reason(&account_events),
        });
    }
    Ok(out)
}

/// What one batch element becomes.
// Built and taken apart at once, one element at a time: boxing the event would cost an
// allocation per event to save stack space nobody holds.
#[expect(
    clippy::large_enum_variant,
    reason = "a transient result, never stored"
)]
enum Element {
    /// An event about a message.
    Event(Event),
    /// An account event, about no message: left out, described by this text.
    Account(String),
}

/// The reason of the [`Control::Ignored`] of a batch's account events: one line, naming
/// the first few.
fn account_events_reason(names: &[String]) -> String {
    let (count, listed) = ignored_events(names, "SendGrid account event");
    format!("{count}, about no message, not delivered: {listed}")
}

/// `event (type …, sg_event_id …)` of an account event, each value on one line and at
/// most 100 characters.
fn describe_account_event(name: &str, item: &Value) -> String {
    let short = |v: String| -> String {
        v.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(100)
            .collect()
    };
    let details: Vec<String> = ["type", "sg_event_id"]
        .iter()
        .filter_map(|k| str_of(item, k).map(|v| format!("{k} {}", short(v))))
        .collect();
    let name = short(name.to_owned());
    if details.is_empty() {
        name
    } else {
        format!("{name} ({})", details.join(", "))
    }
}

/// What a SendGrid `event` value means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mapping {
    status: Status,
    informational: bool,
    /// A known message event (these require `email`).
    known: bool,
}

/// Maps `event` (and the bounce `type`) onto the status vocabulary; see the module table.
fn map_event(event: &str, bounce_type: Option<&str>) -> Mapping {
    let m = |status, informational| Mapping {
        status,
        informational,
        known: true,
    };
    match event.to_ascii_lowercase().as_str() {
        "processed" => m(Status::Queued, false),
        "deferred" => m(Status::Queued, true),
        "delivered" => m(Status::Delivered, false),
        "open" => m(Status::Seen, false),
        "click" => m(Status::Clicked, false),
        "bounce" => {
            if bounce_type.is_some_and(|t| t.eq_ignore_ascii_case("blocked")) {
                m(Status::Failed, false)
            } else {
                m(Status::Bounced, false)
            }
        }
        "dropped" => m(Status::Failed, false),
        "spamreport" => m(Status::Complained, false),
        "unsubscribe" | "group_unsubscribe" => m(Status::Unsubscribed, false),
        "group_resubscribe" => m(Status::Queued, true),
        _ => Mapping {
            status: Status::Queued,
            informational: true,
            known: false,
        },
    }
}

/// True for keys SendGrid sets itself (everything else is a custom argument).
fn is_reserved(key: &str) -> bool {
    RESERVED.contains(&key) || RESERVED_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// A JSON timestamp (Unix seconds as integer, float or string) in epoch ms.
fn timestamp_ms(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_f64().and_then(timestamp::number_to_ms),
        // Timestamps are ASCII; anything else is rejected before the text parsers see it.
        Value::String(s) if s.is_ascii() => timestamp::parse_str_ms(s),
        _ => None,
    }
}

/// Normalizes batch element `i`: an event, or an account event left out.
fn element_of(i: usize, item: Value, ctx: &Context) -> Result<Element, NormalizeError> {
    if !item.is_object() {
        return Err(NormalizeError::shape(format!("/{i}"), "an event object"));
    }
    let name = match item.get("event") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(NormalizeError::MissingField(format!("/{i}/event")));
        }
        Some(_) => {
            return Err(NormalizeError::invalid(
                format!("/{i}/event"),
                "not a string",
            ));
        }
    };
    let mapping = map_event(&name, item.get("type").and_then(Value::as_str));
    let names_no_message = || {
        str_of(&item, "email").is_none()
            && str_of(&item, "sg_message_id").is_none()
            && !matches!(item.get("email"), Some(v) if !v.is_string() && !v.is_null())
    };
    if name.eq_ignore_ascii_case(ACCOUNT_STATUS_CHANGE) || (!mapping.known && names_no_message()) {
        return Ok(Element::Account(describe_account_event(&name, &item)));
    }
    let email = match item.get("email") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) if !mapping.known => String::new(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(NormalizeError::MissingField(format!("/{i}/email")));
        }
        Some(_) => {
            return Err(NormalizeError::invalid(
                format!("/{i}/email"),
                "not a string",
            ));
        }
    };
    let timestamp_ms = match item.get("timestamp") {
        None | Some(Value::Null) => ctx.received_at_ms,
        Some(v) => timestamp_ms(v).ok_or_else(|| {
            NormalizeError::invalid(format!("/{i}/timestamp"), "not a Unix timestamp")
        })?,
    };
    let error = matches!(mapping.status, Status::Failed | Status::Bounced)
        .then(|| ErrorInfo::from_parts(str_of(&item, "status"), str_of(&item, "reason")))
        .flatten();
    let idempotency_key = match str_of(&item, "sg_event_id") {
        Some(id) => idempotency_key(PROVIDER, &[&id, &name]),
        None => idempotency_key_of_value(PROVIDER, &item),
    };
    Ok(Element::Event(Event {
        channel: Channel::Email,
        channel_value: email,
        channel_user: ChannelUser::default(),
        vendor_name: PROVIDER.to_owned(),
        vendor_ack_id: str_of(&item, "sg_message_id"),
        idempotency_key,
        correlation: object_fields(&item, |k| !is_reserved(k)),
        kind: EventKind::Status(StatusUpdate {
            status: mapping.status,
            timestamp_ms,
            error,
            informational: mapping.informational,
        }),
        raw: item.into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};
    use serde_json::json;

    const SINGLE_VECTOR: &str =
        include_str!("../../tests/fixtures/sendgrid/signed_single_vector.json");
    const SINGLE_PAYLOAD: &[u8] =
        include_bytes!("../../tests/fixtures/sendgrid/signed_single_payload.txt");
    const LEGACY_VECTOR: &str =
        include_str!("../../tests/fixtures/sendgrid/signed_legacy_vector.json");
    const ALL_TYPES: &[u8] =
        include_bytes!("../../tests/fixtures/sendgrid/event_batch_all_types.json");
    const BLOCKED: &[u8] = include_bytes!("../../tests/fixtures/sendgrid/bounce_type_blocked.json");
    const RESERVED_KEYS: &[u8] =
        include_bytes!("../../tests/fixtures/sendgrid/reserved_keys_unique_args.json");
    const CLICK: &[u8] =
        include_bytes!("../../tests/fixtures/sendgrid/click_with_url_offset_newsletter.json");

    const CTX: Context = Context {
        received_at_ms: 1_700_000_000_000,
    };

    /// A signature vector: key, signature, timestamp, body.
    struct Vector {
        key: String,
        sig: String,
        ts: String,
        body: Vec<u8>,
        negative: Value,
    }

    fn vector(text: &str, payload: Option<&[u8]>) -> Vector {
        let v: Value = serde_json::from_str(text).expect("vector json");
        let body = match payload {
            Some(p) => p.to_vec(),
            None => v["payload"].as_str().expect("payload").as_bytes().to_vec(),
        };
        Vector {
            key: v["public_key_base64_der"].as_str().expect("key").to_owned(),
            sig: v["header_X-Twilio-Email-Event-Webhook-Signature"]
                .as_str()
                .expect("sig")
                .to_owned(),
            ts: v["header_X-Twilio-Email-Event-Webhook-Timestamp"]
                .as_str()
                .expect("ts")
                .to_owned(),
            body,
            negative: v["negative_cases"].clone(),
        }
    }

    fn vectors() -> Vec<Vector> {
        vec![
            vector(SINGLE_VECTOR, Some(SINGLE_PAYLOAD)),
            vector(LEGACY_VECTOR, None),
        ]
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

    fn run(body: &[u8]) -> Result<Normalized, NormalizeError> {
        normalize(
            &CallbackRequest::post(body.to_vec()).with_content_type("application/json"),
            &CTX,
        )
    }

    fn status(e: &Event) -> &StatusUpdate {
        e.status().expect("status event")
    }

    #[test]
    fn every_vector_verifies() {
        for v in vectors() {
            let req = signed(&v.body, &v.sig, &v.ts);
            verifier(&v.key)
                .verify(&req, &VerifyOptions::default())
                .expect("valid vector");
        }
    }

    #[test]
    fn tampered_body_fails() {
        for v in vectors() {
            let mut body = v.body.clone();
            body.push(b' ');
            let req = signed(&body, &v.sig, &v.ts);
            assert!(matches!(
                verifier(&v.key).verify(&req, &VerifyOptions::default()),
                Err(VerifyError::Mismatch)
            ));
            let mut body = v.body.clone();
            body[2] ^= 0x01;
            let req = signed(&body, &v.sig, &v.ts);
            assert!(
                verifier(&v.key)
                    .verify(&req, &VerifyOptions::default())
                    .is_err()
            );
        }
    }

    #[test]
    fn tampered_signature_fails() {
        for v in vectors() {
            let mut der = STANDARD.decode(&v.sig).expect("b64");
            let last = der.len() - 1;
            der[last] ^= 0x01;
            let req = signed(&v.body, &STANDARD.encode(&der), &v.ts);
            assert!(matches!(
                verifier(&v.key).verify(&req, &VerifyOptions::default()),
                Err(VerifyError::Mismatch)
            ));
        }
        // The published negative case: a valid-looking signature of something else.
        let v = vector(SINGLE_VECTOR, Some(SINGLE_PAYLOAD));
        let wrong = v.negative["wrong_signature"].as_str().expect("neg");
        let req = signed(&v.body, wrong, &v.ts);
        assert!(
            verifier(&v.key)
                .verify(&req, &VerifyOptions::default())
                .is_err()
        );
    }

    #[test]
    fn wrong_key_timestamp_and_payload_fail() {
        let v = vector(SINGLE_VECTOR, Some(SINGLE_PAYLOAD));
        let wrong_key = v.negative["wrong_public_key"].as_str().expect("neg");
        let req = signed(&v.body, &v.sig, &v.ts);
        assert!(matches!(
            verifier(wrong_key).verify(&req, &VerifyOptions::default()),
            Err(VerifyError::Mismatch)
        ));
        let wrong_ts = v.negative["wrong_timestamp"].as_str().expect("neg");
        let req = signed(&v.body, &v.sig, wrong_ts);
        assert!(
            verifier(&v.key)
                .verify(&req, &VerifyOptions::default())
                .is_err()
        );
        let wrong_payload = v.negative["wrong_payload"].as_str().expect("neg");
        let req = signed(wrong_payload.as_bytes(), &v.sig, &v.ts);
        assert!(
            verifier(&v.key)
                .verify(&req, &VerifyOptions::default())
                .is_err()
        );
        // The legacy vector's key does not verify the single vector.
        let legacy = vector(LEGACY_VECTOR, None);
        assert!(
            verifier(&legacy.key)
                .verify(&req, &VerifyOptions::default())
                .is_err()
        );
    }

    #[test]
    fn missing_and_malformed_headers() {
        let v = vector(SINGLE_VECTOR, Some(SINGLE_PAYLOAD));
        let ver = verifier(&v.key);
        let mut req = signed(&v.body, &v.sig, &v.ts);
        req.headers.remove(SIGNATURE_HEADER);
        assert!(matches!(
            ver.verify(&req, &VerifyOptions::default()),
            Err(VerifyError::Missing(_))
        ));
        let mut req = signed(&v.body, &v.sig, &v.ts);
        req.headers.remove(TIMESTAMP_HEADER);
        assert!(matches!(
            ver.verify(&req, &VerifyOptions::default()),
            Err(VerifyError::Missing(_))
        ));
        for bad in ["%%%not base64", "AAAA", ""] {
            let req = signed(&v.body, bad, &v.ts);
            assert!(matches!(
                ver.verify(&req, &VerifyOptions::default()),
                Err(VerifyError::Malformed(_))
            ));
        }
    }

    #[test]
    fn timestamp_tolerance_applies_only_with_a_clock() {
        let v = vector(SINGLE_VECTOR, Some(SINGLE_PAYLOAD));
        let ver = verifier(&v.key);
        let req = signed(&v.body, &v.sig, &v.ts);
        let ts: i64 = v.ts.parse().expect("ts");
        let at = |now: i64| VerifyOptions {
            now_secs: Some(now),
            tolerance_secs: None,
        };
        ver.verify(&req, &at(ts + 60)).expect("fresh");
        assert!(matches!(
            ver.verify(&req, &at(ts + 3600)),
            Err(VerifyError::Stale(_))
        ));
        assert!(matches!(
            ver.verify(&req, &at(ts - 3600)),
            Err(VerifyError::Stale(_))
        ));
        ver.verify(&req, &VerifyOptions::default())
            .expect("recorded request: no clock check");
    }

    #[test]
    fn settings_fail_closed() {
        assert!(matches!(
            Verifier::from_settings(&VerifySettings::new()),
            Err(VerifyConfigError::Missing { .. })
        ));
        assert!(matches!(
            Verifier::from_settings(&VerifySettings::new().with("public_key", "  ")),
            Err(VerifyConfigError::Missing { .. })
        ));
        for bad in [
            "not base64!",
            "AAAA",
            "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE",
        ] {
            assert!(matches!(
                Verifier::from_settings(&VerifySettings::new().with("public_key", bad)),
                Err(VerifyConfigError::Invalid { .. })
            ));
        }
        let v = vector(SINGLE_VECTOR, Some(SINGLE_PAYLOAD));
        assert!(matches!(
            Verifier::from_settings(
                &VerifySettings::new()
                    .with("public_key", v.key.as_str())
                    .with("secret", "x")
            ),
            Err(VerifyConfigError::Unknown { .. })
        ));
        // PEM armour and line breaks are tolerated.
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n{}\n-----END PUBLIC KEY-----\n",
            &v.key[..40],
            &v.key[40..]
        );
        let req = signed(&v.body, &v.sig, &v.ts);
        verifier(&pem)
            .verify(&req, &VerifyOptions::default())
            .expect("pem key");
        assert!(!format!("{:?}", verifier(&v.key)).contains(&v.key));
    }

    #[test]
    fn every_event_type_maps() {
        let out = run(ALL_TYPES).expect("normalize");
        let got: Vec<(Status, bool)> = out
            .events
            .iter()
            .map(|e| (status(e).status, status(e).informational))
            .collect();
        assert_eq!(
            got,
            vec![
                (Status::Queued, false),
                (Status::Queued, true),
                (Status::Delivered, false),
                (Status::Seen, false),
                (Status::Clicked, false),
                (Status::Bounced, false),
                (Status::Failed, false),
                (Status::Complained, false),
                (Status::Unsubscribed, false),
                (Status::Unsubscribed, false),
                (Status::Queued, true),
            ]
        );
        for e in &out.events {
            assert_eq!(e.channel, Channel::Email);
            assert_eq!(e.channel_value, "example@test.com");
            assert_eq!(e.vendor_ack_id.as_deref(), Some("sg_message_id"));
            assert_eq!(status(e).timestamp_ms, 1_513_299_569_000);
            assert!(e.correlation.is_empty(), "{:?}", e.correlation);
        }
        let bounce = status(&out.events[5]);
        assert_eq!(
            bounce.error,
            Some(ErrorInfo {
                code: Some("5.0.0".into()),
                message: Some("500 unknown recipient".into())
            })
        );
        let dropped = status(&out.events[6]);
        assert_eq!(
            dropped.error.as_ref().and_then(|e| e.message.as_deref()),
            Some("Bounced Address")
        );
        assert!(
            status(&out.events[1]).error.is_none(),
            "deferred has no error"
        );
    }

    #[test]
    fn blocked_bounce_is_failed() {
        let out = run(BLOCKED).expect("normalize");
        let s = status(&out.events[0]);
        assert_eq!(s.status, Status::Failed);
        assert_eq!(
            s.error.as_ref().and_then(|e| e.code.as_deref()),
            Some("5.0.0")
        );
        assert_eq!(
            out.events[0].vendor_ack_id.as_deref(),
            Some("14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0")
        );
    }

    #[test]
    fn unknown_event_falls_back_to_informational_queued() {
        let out = run(br#"[{"event":"brand_new_thing","email":"a@b.c","timestamp":1}]"#)
            .expect("normalize");
        let s = status(&out.events[0]);
        assert_eq!((s.status, s.informational), (Status::Queued, true));
        // An unknown event about a message but without a recipient: an empty address.
        let out = run(br#"[{"event":"brand_new_thing","sg_message_id":"m.1","timestamp":1}]"#)
            .expect("normalize");
        assert_eq!(out.events[0].channel_value, "");
        assert_eq!(out.events[0].vendor_ack_id.as_deref(), Some("m.1"));
        assert_eq!(out.control, None);
        assert_eq!(map_event("BOUNCE", Some("Blocked")).status, Status::Failed);
        assert_eq!(map_event("bounce", None).status, Status::Bounced);
    }

    #[test]
    fn account_events_are_left_out_and_named() {
        // SendGrid's documented example, between two message events.
        let body = br#"[
            {"email":"a@b.c","event":"delivered","sg_event_id":"e1","sg_message_id":"m.1","timestamp":1709142420},
            {"event":"account_status_change","sg_event_id":"MjEzNTg5OTcyOC10ZXJtaW5hdGUtMTcwNzg1MTUzMQ","timestamp":1709142428,"type":"compliance_suspend"},
            {"email":"a@b.c","event":"open","sg_event_id":"e2","sg_message_id":"m.1","timestamp":1709142430}
        ]"#;
        let out = run(body).expect("normalize");
        let statuses: Vec<_> = out.events.iter().map(|e| status(e).status).collect();
        assert_eq!(statuses, [Status::Delivered, Status::Seen]);
        assert!(out.unparsed.is_empty());
        assert_eq!(
            out.control,
            Some(Control::Ignored {
                reason: "1 SendGrid account event, about no message, not delivered: \
                    account_status_change (type compliance_suspend, \
                    sg_event_id MjEzNTg5OTcyOC10ZXJtaW5hdGUtMTcwNzg1MTUzMQ)"
                    .into()
            })
        );
        // Matched case-insensitively; an unknown event naming no message is one too; the
        // reason names five and counts the rest, on one line.
        let many: Vec<Value> = (0..7)
            .map(|i| json!({"event": "Account_Status_Change", "type": format!("t{i}\nx")}))
            .chain([json!({"event": "billing_thing", "timestamp": 1})])
            .collect();
        let out = run(Value::Array(many).to_string().as_bytes()).expect("normalize");
        assert!(out.events.is_empty() && out.unparsed.is_empty());
        let Some(Control::Ignored { reason }) = out.control else {
            panic!("ignored expected")
        };
        assert!(reason.starts_with("8 SendGrid account events"), "{reason}");
        assert!(
            reason.ends_with("Account_Status_Change (type t4 x) and 3 more"),
            "{reason}"
        );
        assert!(!reason.contains('\n'));
        // A batch without account events has no control message.
        assert_eq!(run(CLICK).expect("normalize").control, None);
    }

    #[test]
    fn reserved_keys_and_custom_args() {
        let out = run(RESERVED_KEYS).expect("normalize");
        let e = &out.events[0];
        assert_eq!(status(e).status, Status::Queued, "`Processed` is processed");
        assert_eq!(status(e).timestamp_ms, 123_456_789_000, "string timestamp");
        assert_eq!(e.channel_value, "john.doe@sendgrid.com");
        assert_eq!(
            Value::Object(e.correlation.clone()),
            json!({"customerAccountNumber": "55555", "activationAttempt": "1", "New Argument 1": "New Value 1"})
        );
        let out = run(CLICK).expect("normalize");
        assert_eq!(
            Value::Object(out.events[0].correlation.clone()),
            json!({"unique_arg_key": "unique_arg_value"})
        );
    }

    #[test]
    fn idempotency_keys() {
        let a = run(br#"[{"event":"delivered","email":"a@b.c","sg_event_id":"E1"},{"event":"delivered","email":"a@b.c","sg_event_id":"E1"},{"event":"delivered","email":"a@b.c","sg_event_id":"E2"}]"#)
            .expect("normalize");
        assert_eq!(a.events[0].idempotency_key, a.events[1].idempotency_key);
        assert_ne!(a.events[0].idempotency_key, a.events[2].idempotency_key);
        let b = run(br#"[{"event":"open","email":"a@b.c","timestamp":1},{"event":"open","email":"a@b.c","timestamp":2}]"#)
            .expect("normalize");
        assert_ne!(b.events[0].idempotency_key, b.events[1].idempotency_key);
        let c = run(br#"[{"event":"open","email":"a@b.c","timestamp":1}]"#).expect("normalize");
        assert_eq!(c.events[0].idempotency_key, b.events[0].idempotency_key);
    }

    #[test]
    fn timestamps_in_every_shape() {
        let out = run(br#"[{"event":"open","email":"a@b.c","timestamp":"1513299569"},{"event":"open","email":"a@b.c","timestamp":1513299569.25},{"event":"open","email":"a@b.c"}]"#)
            .expect("normalize");
        let ts: Vec<i64> = out.events.iter().map(|e| status(e).timestamp_ms).collect();
        assert_eq!(
            ts,
            vec![1_513_299_569_000, 1_513_299_569_250, CTX.received_at_ms]
        );
    }

    #[test]
    fn non_ascii_survives() {
        let out = run("[{\"event\":\"click\",\"email\":\"zoë@例え.jp\",\"kunde\":\"Müller ☃\",\"category\":[\"größe\",\"新\"]}]".as_bytes())
            .expect("normalize");
        let e = &out.events[0];
        assert_eq!(e.channel_value, "zoë@例え.jp");
        assert_eq!(e.correlation["kunde"], "Müller ☃");
        assert_eq!(e.raw.to_value()["category"][1], "新");
    }

    #[test]
    fn malformed_input_is_an_error() {
        let cases: &[&[u8]] = &[
            b"",
            b"   ",
            b"[{\"event\":\"open\"",
            b"{\"event\":\"open\",\"email\":\"a@b.c\"}",
            b"\"text\"",
            b"\xff\xfe\x00garbage",
            b"[{\"event\":\"open\",\"email\":\"\xff\"}]",
        ];
        for body in cases {
            assert!(run(body).is_err(), "{:?}", String::from_utf8_lossy(body));
        }
        assert!(matches!(
            run(b"{\"event\":\"open\"}"),
            Err(NormalizeError::Shape { .. })
        ));
        let wrong_ct = CallbackRequest::post(ALL_TYPES.to_vec()).with_content_type("text/plain");
        assert!(matches!(
            normalize(&wrong_ct, &CTX),
            Err(NormalizeError::UnsupportedContentType { .. })
        ));
        // No content type: SendGrid's JSON is assumed.
        assert!(normalize(&CallbackRequest::post(ALL_TYPES.to_vec()), &CTX).is_ok());
        let garbage = vec![b'x'; 10 * 1024 * 1024];
        assert!(run(&garbage).is_err());
        let deep = "[".repeat(100_000);
        assert!(run(deep.as_bytes()).is_err());
        assert_eq!(run(b"[]").expect("empty batch").events.len(), 0);
    }

    #[test]
    fn elements_that_cannot_be_normalized_are_kept_and_the_rest_delivered() {
        let bad: &[&str] = &[
            "1",
            r#"{"email":"a@b.c"}"#,
            r#"{"event":"delivered"}"#,
            r#"{"event":"delivered","email":42}"#,
            r#"{"event":7,"email":"a@b.c"}"#,
            r#"{"event":"open","email":"a@b.c","timestamp":"yesterday"}"#,
            r#"{"event":"open","email":"a@b.c","timestamp":-5}"#,
            r#"{"event":"open","email":"a@b.c","timestamp":"xéaaaa"}"#,
            r#"{"event":"open","email":"a@b.c","timestamp":{}}"#,
        ];
        let good =
            r#"{"event":"delivered","email":"a@b.c","timestamp":1700000000,"sg_event_id":"e1"}"#;
        for element in bad {
            let body = format!("[{good}, {element}]");
            let out = run(body.as_bytes()).expect("the batch is accepted");
            assert_eq!(out.events.len(), 1, "{element}");
            assert_eq!(out.events[0].channel_value, "a@b.c");
            assert_eq!(out.unparsed.len(), 1, "{element}");
            // The element's text as sent, and a one-line reason naming it.
            assert_eq!(out.unparsed[0].raw, *element);
            // Alone, it is a SendGrid body that the normalizer still cannot take.
            let again = run(out.unparsed[0].replay_body().as_bytes()).expect("a SendGrid body");
            assert_eq!((again.events.len(), again.unparsed.len()), (0, 1));
            assert!(
                out.unparsed[0].reason.contains("/1"),
                "{}",
                out.unparsed[0].reason
            );
        }
    }

    #[test]
    fn elements_beyond_the_limits_are_kept_as_text_and_never_parsed() {
        let good =
            r#"{"event":"delivered","email":"a@b.c","timestamp":1700000000,"sg_event_id":"e1"}"#;
        let deep = format!(
            r#"{{"event":"open","email":"a@b.c","x":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let long = format!(
            r#"{{"event":"open","email":"a@b.c","x":{}}}"#,
            "7".repeat(100_000)
        );
        // Deep enough for serde_json to parse (under its 128), still beyond 64.
        let deepish = format!(
            r#"{{"event":"open","email":"a@b.c","x":{}{}}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        let body = format!("[{good},{deep},{long},{deepish}]");
        let out = run(body.as_bytes()).expect("the batch is accepted");
        assert_eq!(out.events.len(), 1);
        let raws: Vec<&str> = out.unparsed.iter().map(|u| u.raw.as_str()).collect();
        assert_eq!(raws, [&deep, &long, &deepish]);
        assert_eq!(
            out.unparsed[0].reason,
            "nested deeper than 64 levels (at byte 99)"
        );
        assert_eq!(
            out.unparsed[1].reason,
            "a number longer than 100 characters (at byte 36)"
        );
        // A top-level array of arrays is SendGrid's envelope holding one element that is
        // not an event: kept, not refused.
        let nested = format!("[{}{}]", "[".repeat(100_000), "]".repeat(100_000));
        let out = run(nested.as_bytes()).expect("an array");
        assert!(out.events.is_empty());
        assert_eq!(out.unparsed.len(), 1);
        // A deep object where the array belongs is not SendGrid's format at all.
        let object = format!(r#"{{"a":{}{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
        assert!(run(object.as_bytes()).is_err());
    }
}
