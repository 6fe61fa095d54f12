//! Postmark webhooks (email delivery, bounce, engagement, subscription change, inbound).
//!
//! # Callback format
//!
//! `POST`, `Content-Type: application/json`, **one event per request** (a JSON object; an
//! array or anything else is a [`NormalizeError::Shape`]). The discriminator is
//! `RecordType`: `Delivery`, `Bounce`, `SpamComplaint`, `Open`, `Click`,
//! `SubscriptionChange`.
//!
//! - The recipient (`channel_value`) is `Recipient` (Delivery, Open, Click,
//!   SubscriptionChange) or `Email` (Bounce, SpamComplaint). A `Bounce` may name no
//!   address: Postmark's `Unsubscribe` bounces (`TypeCode` 16) come without `Email`. Such
//!   a bounce is delivered with `channel_value: ""` (an address the provider does not
//!   send is empty, never invented) when it has a `MessageID`, which identifies the
//!   message; without either it is refused. Every other record needs its address.
//! - The event time is `DeliveredAt`, `BouncedAt`, `ReceivedAt` (Open, Click) or
//!   `ChangedAt` (SubscriptionChange), ISO 8601 with up to 7 fractional digits; absent
//!   means the receive time.
//! - `MessageID` is the `vendor_ack_id` (it is `null` for some subscription changes).
//! - Correlation ids: the entries of `Metadata` (set at send time) under their own names,
//!   plus `Tag` as `tag` when non-empty.
//! - Idempotency key: the `X-PM-Webhook-Trace-Id` header when present (Postmark's own
//!   dedupe hint); otherwise `RecordType`, `MessageID`, recipient, event time, bounce `ID`,
//!   clicked link and `SuppressSending` together.
//! - Bounce errors: `{code: Type, message: Details (or Description)}`.
//! - A body without `RecordType` is inferred: `DeliveredAt` → Delivery and `BouncedAt` →
//!   Bounce/SpamComplaint (Postmark's legacy webhooks had no `RecordType`); otherwise a
//!   `From`/`FromFull` sender means an **inbound email** (Postmark's inbound webhook has no
//!   `RecordType`; `RecordType: "Inbound"` is accepted too).
//!
//! Inbound email becomes an inbound message on channel `email` with type `email`:
//! `from` = `FromFull.Email` or `From` (also the `channel_value`), `to` =
//! `OriginalRecipient` or `To`, text = `TextBody`, or `StrippedTextReply` when the text body
//! is empty (the subject stays in `vendor_response`), `source_message_id` = `MessageID`,
//! time = the `Date` header (RFC 2822; an inconsistent weekday is ignored because the day,
//! month and year are authoritative), or the receive time when `Date` is absent or
//! unreadable (it is sender-written text). `MailboxHash` (the `+hash` of the address) is a
//! correlation id `mailbox_hash`. Attachments carry their content inline (base64) and no
//! URL, so they are not listed as `media`; they stay in `vendor_response`.
//!
//! # Signature
//!
//! Postmark signs nothing. The sidecar checks what Postmark can send: HTTP Basic
//! credentials (put in the webhook URL as `https://user:pass@host/…`) and/or a custom
//! header configured on the webhook (`HttpHeaders`). Credentials are compared in constant
//! time (on SHA-256 digests, so the length is not revealed either). Every configured check
//! must pass. There is no timestamp, so no clock check.
//!
//! # Verify keys
//!
//! | key | value |
//! |---|---|
//! | `basic_auth` | `user:password`, compared with the `Authorization: Basic …` header |
//! | `header` | name of a secret header set on the Postmark webhook (needs `header_value`) |
//! | `header_value` | its value |
//!
//! At least `basic_auth` or `header` + `header_value` is required.
//!
//! # Status mapping
//!
//! | Postmark record | status | notes |
//! |---|---|---|
//! | `Delivery` | `delivered` | |
//! | `Open` | `seen` | |
//! | `Click` | `clicked` | |
//! | `SpamComplaint` | `complained` | |
//! | `Bounce`, `Type` `HardBounce`, `BadEmailAddress` | `bounced` | the recipient's server refused the address |
//! | `Bounce`, `Type` `Transient`, `SoftBounce`, `DnsError`, `Blocked`, `DMARCPolicy`, `SpamNotification`, `VirusNotification`, `Unknown`, `ManuallyDeactivated`, `Unconfirmed`, `SMTPApiError`, `InboundError`, `TemplateRenderingFailed` | `failed` | not delivered, but not a hard bounce of the address |
//! | `Bounce`, `Type` `SpamComplaint` | `complained` | |
//! | `Bounce`, `Type` `Unsubscribe` (`TypeCode` 16) | `unsubscribed` | the recipient's reply asked to be removed; often without `Email` (`channel_value: ""`) |
//! | `Bounce`, `Type` `AutoResponder`, `AddressChange`, `Subscribe`, `ChallengeVerification`, `OpenRelayTest` | `queued` | informational: the message was not refused (an out-of-office reply means it arrived) |
//! | `Bounce`, any other `Type` | `bounced` when `Inactive: true` (Postmark deactivated the address), else `failed` | |
//! | `SubscriptionChange`, `SuppressSending: true`, `SuppressionReason: HardBounce` | `bounced` | Broadcast streams report bounces only this way |
//! | `SubscriptionChange`, `SuppressSending: true`, `SuppressionReason: SpamComplaint` | `complained` | |
//! | `SubscriptionChange`, `SuppressSending: true`, other reason (`ManualSuppression`: an unsubscribe) | `unsubscribed` | |
//! | `SubscriptionChange`, `SuppressSending: false` | `queued` | informational (a reactivation) |
//! | any other `RecordType` | `queued` | informational: the documented fallback for unknown values |

use std::fmt;

use http::HeaderName;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use crate::event::ChannelUser;
use crate::event::idempotency_key;
use crate::limits::TopLevel;
use crate::provider::basic_auth::{BasicAuth, same_secret};
use crate::provider::json::str_of;
use crate::provider::{Context, Normalized, VerifyOptions, VerifySettings};
use crate::{
    CallbackRequest, Channel, ErrorInfo, Event, EventKind, InboundMessage, NormalizeError, Secret,
    Status, StatusUpdate, VerifyConfigError, VerifyError, timestamp,
};

/// Provider id.
const PROVIDER: &str = "postmark";
/// Keys of the `verify:` block.
const KNOWN_KEYS: &[&str] = &["basic_auth", "header", "header_value"];
/// Postmark's per-delivery trace id, stable across its retries.
const TRACE_HEADER: &str = "x-pm-webhook-trace-id";

/// Checks Postmark's HTTP Basic credentials and/or a secret header.
#[derive(Clone)]
pub struct Verifier {
    basic_auth: Option<BasicAuth>,
    header: Option<(HeaderName, Secret)>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("basic_auth", &self.basic_auth)
            .field(
                "header",
                &self.header.as_ref().map(|(n, v)| (n.as_str(), v)),
            )
            .finish()
    }
}

impl Verifier {
    /// Builds the verifier from the `verify:` settings: `basic_auth` (`user:password`)
    /// and/or `header` + `header_value`; at least one must be set.
    pub fn from_settings(settings: &VerifySettings) -> Result<Self, VerifyConfigError> {
        settings.only(PROVIDER, KNOWN_KEYS)?;
        let basic_auth = BasicAuth::from_settings(PROVIDER, settings)?;
        let header = match (settings.get("header"), settings.get("header_value")) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(VerifyConfigError::Missing {
                    provider: PROVIDER,
                    key: "header_value",
                });
            }
            (None, Some(_)) => {
                return Err(VerifyConfigError::Missing {
                    provider: PROVIDER,
                    key: "header",
                });
            }
            (Some(name), Some(value)) => {
                let name =
                    HeaderName::from_bytes(name.expose().trim().as_bytes()).map_err(|_| {
                        VerifyConfigError::Invalid {
                            provider: PROVIDER,
                            key: "header",
                            reason: "not a valid HTTP header name".into(),
                        }
                    })?;
                Some((name, value.clone()))
            }
        };
        if basic_auth.is_none() && header.is_none() {
            return Err(VerifyConfigError::Missing {
                provider: PROVIDER,
                key: "basic_auth` or `header` + `header_value",
            });
        }
        Ok(Self { basic_auth, header })
    }

    /// Checks every configured credential. Postmark sends no timestamp, so `opts` has
    /// nothing to check.
    pub fn verify(&self, req: &CallbackRequest, _opts: &VerifyOptions) -> Result<(), VerifyError> {
        if let Some(basic_auth) = &self.basic_auth {
            basic_auth.check(req)?;
        }
        if let Some((name, expected)) = &self.header {
            let value = req
                .headers
                .get(name)
                .ok_or(VerifyError::Missing("secret header"))?;
            if !same_secret(value.as_bytes(), expected.expose().as_bytes()) {
                return Err(VerifyError::BadCredentials);
            }
        }
        Ok(())
    }
}

/// Normalizes one Postmark webhook request into one event.
pub fn normalize(req: &CallbackRequest, ctx: &Context) -> Result<Normalized, NormalizeError> {
    req.expect_content_type(PROVIDER, &["application/json"], "application/json")?;
    if let Some(unparsed) = req.beyond_limits(TopLevel::Object) {
        return Ok(Normalized::one_unparsed(unparsed));
    }
    let body = req.json()?;
    if !body.is_object() {
        return Err(NormalizeError::shape(
            "",
            "a JSON object (one Postmark event)",
        ));
    }
    let trace_id = req.header(TRACE_HEADER).filter(|t| !t.trim().is_empty());
    let record_type = match body.get("RecordType") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        None | Some(Value::Null) | Some(Value::String(_)) => infer_record_type(&body)?,
        Some(_) => return Err(NormalizeError::invalid("RecordType", "not a string")),
    };
    let event = if record_type == "Inbound" {
        inbound(body, trace_id, ctx)?
    } else {
        status(body, &record_type, trace_id, ctx)?
    };
    Ok(Normalized::events(vec![event]))
}

/// The record type of a body without `RecordType` (legacy webhooks, inbound email).
fn infer_record_type(body: &Value) -> Result<String, NormalizeError> {
    let has = |k: &str| body.get(k).is_some_and(|v| !v.is_null());
    Ok(if has("DeliveredAt") {
        "Delivery".into()
    } else if has("BouncedAt") {
        if body.get("Type").and_then(Value::as_str) == Some("SpamComplaint") {
            "SpamComplaint".into()
        } else {
            "Bounce".into()
        }
    } else if str_of(body, "From").is_some() || body.pointer("/FromFull/Email").is_some() {
        "Inbound".into()
    } else {
        return Err(NormalizeError::MissingField("RecordType".into()));
    })
}

/// What a record means: status, informational flag, error.
type Mapped = (Status, bool, Option<ErrorInfo>);

/// Maps a `Bounce` record by its `Type`; see the module table.
fn map_bounce(body: &Value) -> Mapped {
    let kind = body.get("Type").and_then(Value::as_str).unwrap_or("");
    let error = || {
        ErrorInfo::from_parts(
            str_of(body, "Type"),
            str_of(body, "Details").or_else(|| str_of(body, "Description")),
        )
    };
    let status = match kind {
        "HardBounce" | "BadEmailAddress" => Status::Bounced,
        "Transient"
        | "SoftBounce"
        | "DnsError"
        | "Blocked"
        | "DMARCPolicy"
        | "SpamNotification"
        | "VirusNotification"
        | "Unknown"
        | "ManuallyDeactivated"
        | "Unconfirmed"
        | "SMTPApiError"
        | "InboundError"
        | "TemplateRenderingFailed" => Status::Failed,
        "SpamComplaint" => return (Status::Complained, false, None),
        "Unsubscribe" => return (Status::Unsubscribed, false, None),
        "AutoResponder"
        | "AddressChange"
        | "Subscribe"
        | "ChallengeVerification"
        | "OpenRelayTest" => return (Status::Queued, true, None),
        _ if body.get("Inactive") == Some(&Value::Bool(true)) => Status::Bounced,
        _ => Status::Failed,
    };
    (status, false, error())
}

/// Maps a `SubscriptionChange` record; see the module table.
fn map_subscription_change(body: &Value) -> Mapped {
    if body.get("SuppressSending") != Some(&Value::Bool(true)) {
        return (Status::Queued, true, None);
    }
    match body.get("SuppressionReason").and_then(Value::as_str) {
        Some("HardBounce") => (
            Status::Bounced,
            false,
            ErrorInfo::from_parts(Some("HardBounce".into()), None),
        ),
        Some("SpamComplaint") => (Status::Complained, false, None),
        _ => (Status::Unsubscribed, false, None),
    }
}

/// Maps any record type (unknown ones to the informational fallback).
fn map_record(record_type: &str, body: &Value) -> Mapped {
    match record_type {
        "Delivery" => (Status::Delivered, false, None),
        "Open" => (Status::Seen, false, None),
        "Click" => (Status::Clicked, false, None),
        "SpamComplaint" => (Status::Complained, false, None),
        "Bounce" => map_bounce(body),
        "SubscriptionChange" => map_subscription_change(body),
        _ => (Status::Queued, true, None),
    }
}

/// The field holding the event time of each record type (unknown types: the first present).
fn time_field<'a>(record_type: &str, body: &'a Value) -> Option<(&'static str, &'a Value)> {
    let fields: &[&'static str] = match record_type {
        "Delivery" => &["DeliveredAt"],
        "Bounce" | "SpamComplaint" => &["BouncedAt"],
        "Open" | "Click" => &["ReceivedAt"],
        "SubscriptionChange" => &["ChangedAt"],
        _ => &["DeliveredAt", "BouncedAt", "ReceivedAt", "ChangedAt"],
    };
    fields
        .iter()
        .find_map(|f| body.get(*f).filter(|v| !v.is_null()).map(|v| (*f, v)))
}

/// Parses an ISO 8601 JSON timestamp (ASCII only: the text parsers expect it).
fn iso_ms(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) if s.is_ascii() => timestamp::parse_str_ms(s),
        _ => None,
    }
}

/// Correlation ids: `Metadata` entries, then `Tag` as `tag` (Metadata wins on a clash).
fn correlation(body: &Value) -> Map<String, Value> {
    let mut map = body
        .get("Metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(tag) = str_of(body, "Tag") {
        map.entry("tag").or_insert(Value::String(tag));
    }
    map
}

/// A status record.
fn status(
    body: Value,
    record_type: &str,
    trace_id: Option<&str>,
    ctx: &Context,
) -> Result<Event, NormalizeError> {
    let recipient = match str_of(&body, "Recipient").or_else(|| str_of(&body, "Email")) {
        Some(address) => address,
        // Postmark's `Unsubscribe` bounces (TypeCode 16) come without `Email`: the
        // message id identifies the message, and the address is empty (DESIGN §2).
        None if record_type == "Bounce" && str_of(&body, "MessageID").is_some() => String::new(),
        None => return Err(NormalizeError::MissingField("Recipient".into())),
    };
    let (status, informational, error) = map_record(record_type, &body);
    let (time_text, timestamp_ms) = match time_field(record_type, &body) {
        None => (String::new(), ctx.received_at_ms),
        Some((field, v)) => {
            let ms = iso_ms(v)
                .ok_or_else(|| NormalizeError::invalid(field, "not an ISO 8601 timestamp"))?;
            (v.as_str().unwrap_or_default().to_owned(), ms)
        }
    };
    let message_id = str_of(&body, "MessageID");
    let idempotency_key = match trace_id {
        Some(t) => idempotency_key(PROVIDER, &["trace", t]),
        None => {
            let suppress = body.get("SuppressSending").map(Value::to_string);
            idempotency_key(
                PROVIDER,
                &[
                    record_type,
                    message_id.as_deref().unwrap_or(""),
                    &recipient,
                    &time_text,
                    &str_of(&body, "ID").unwrap_or_default(),
                    &str_of(&body, "OriginalLink").unwrap_or_default(),
                    suppress.as_deref().unwrap_or(""),
                ],
            )
        }
    };
    Ok(Event {
        channel: Channel::Email,
        channel_value: recipient,
        channel_user: ChannelUser::default(),
        vendor_name: PROVIDER.to_owned(),
        vendor_ack_id: message_id,
        idempotency_key,
        correlation: correlation(&body),
        kind: EventKind::Status(StatusUpdate {
            status,
            timestamp_ms,
            error,
            informational,
        }),
        raw: body.into(),
    })
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

/// An inbound email.
fn inbound(body: Value, trace_id: Option<&str>, ctx: &Context) -> Result<Event, NormalizeError> {
    let from = body
        .pointer("/FromFull/Email")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned)
        .or_else(|| str_of(&body, "From"))
        .ok_or_else(|| NormalizeError::MissingField("From".into()))?;
    let to = str_of(&body, "OriginalRecipient")
        .or_else(|| str_of(&body, "To"))
        .unwrap_or_default();
    let message_id = str_of(&body, "MessageID")
        .ok_or_else(|| NormalizeError::MissingField("MessageID".into()))?;
    let text = str_of(&body, "TextBody").or_else(|| str_of(&body, "StrippedTextReply"));
    let timestamp_ms = body
        .get("Date")
        .and_then(Value::as_str)
        .and_then(mail_date_ms)
        .unwrap_or(ctx.received_at_ms);
    let mut correlation = correlation(&body);
    if let Some(hash) = str_of(&body, "MailboxHash") {
        correlation
            .entry("mailbox_hash")
            .or_insert(Value::String(hash));
    }
    let idempotency_key = match trace_id {
        Some(t) => idempotency_key(PROVIDER, &["trace", t]),
        None => idempotency_key(PROVIDER, &["Inbound", &message_id]),
    };
    Ok(Event {
        channel: Channel::Email,
        channel_value: from.clone(),
        channel_user: ChannelUser::default(),
        vendor_name: PROVIDER.to_owned(),
        vendor_ack_id: Some(message_id.clone()),
        idempotency_key,
        correlation,
        kind: EventKind::Inbound(InboundMessage {
            from,
            to,
            message_type: "email".into(),
            text,
            media: Vec::new(),
            location: None,
            context: None,
            timestamp_ms,
            source_message_id: message_id,
            original_message_id: None,
        }),
        raw: body.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use http::HeaderValue;
    use serde_json::json;

    const BOUNCE_HARD: &[u8] = include_bytes!("../../tests/fixtures/postmark/bounce_hard.json");
    const CLICK: &[u8] = include_bytes!("../../tests/fixtures/postmark/click.json");
    const DELIVERY: &[u8] = include_bytes!("../../tests/fixtures/postmark/delivery.json");
    const INBOUND: &[u8] = include_bytes!("../../tests/fixtures/postmark/inbound.json");
    const OPEN: &[u8] = include_bytes!("../../tests/fixtures/postmark/open.json");
    const SPAM: &[u8] = include_bytes!("../../tests/fixtures/postmark/spam_complaint.json");
    const SUBSCRIPTION: &[u8] =
        include_bytes!("../../tests/fixtures/postmark/subscription_change.json");

    const CTX: Context = Context {
        received_at_ms: 1_700_000_000_000,
    };
    /// `2025-04-05T16:33:54.9070259Z` in ms.
    const FIXTURE_MS: i64 = 1_743_870_834_907;

    fn run(body: &[u8]) -> Result<Normalized, NormalizeError> {
        normalize(
            &CallbackRequest::post(body.to_vec()).with_content_type("application/json"),
            &CTX,
        )
    }

    fn one(body: &[u8]) -> Event {
        let mut out = run(body).expect("normalize");
        assert_eq!(out.events.len(), 1);
        out.events.remove(0)
    }

    fn with_status(body: Value) -> StatusUpdate {
        one(body.to_string().as_bytes())
            .status()
            .expect("status")
            .clone()
    }

    fn settings(pairs: &[(&str, &str)]) -> VerifySettings {
        pairs
            .iter()
            .fold(VerifySettings::new(), |s, (k, v)| s.with(*k, *v))
    }

    fn with_header(mut req: CallbackRequest, name: &'static str, value: &[u8]) -> CallbackRequest {
        req.headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_bytes(value).expect("header"),
        );
        req
    }

    fn basic(user_pass: &str) -> String {
        format!("Basic {}", STANDARD.encode(user_pass))
    }

    #[test]
    fn basic_auth_verifies() {
        let v = Verifier::from_settings(&settings(&[("basic_auth", "hook:s3cr:et")]))
            .expect("verifier");
        let opts = VerifyOptions::default();
        let ok = with_header(
            CallbackRequest::post(DELIVERY.to_vec()),
            "authorization",
            basic("hook:s3cr:et").as_bytes(),
        );
        v.verify(&ok, &opts).expect("valid credentials");
        let lower = with_header(
            CallbackRequest::post(DELIVERY.to_vec()),
            "authorization",
            format!("basic  {}", STANDARD.encode("hook:s3cr:et")).as_bytes(),
        );
        v.verify(&lower, &opts).expect("scheme is case-insensitive");
        for wrong in ["hook:s3cr:eT", "hook:", "hook:s3cr:et "] {
            let req = with_header(
                CallbackRequest::post(DELIVERY.to_vec()),
                "authorization",
                basic(wrong).as_bytes(),
            );
            assert!(
                matches!(v.verify(&req, &opts), Err(VerifyError::BadCredentials)),
                "{wrong}"
            );
        }
        let wrong_secret =
            Verifier::from_settings(&settings(&[("basic_auth", "hook:other")])).expect("verifier");
        assert!(matches!(
            wrong_secret.verify(&ok, &opts),
            Err(VerifyError::BadCredentials)
        ));
        assert!(matches!(
            v.verify(&CallbackRequest::post(DELIVERY.to_vec()), &opts),
            Err(VerifyError::Missing(_))
        ));
        for bad in ["Bearer abc", "Basic", "Basic !!!", "aGVsbG8="] {
            let req = with_header(
                CallbackRequest::post(DELIVERY.to_vec()),
                "authorization",
                bad.as_bytes(),
            );
            assert!(v.verify(&req, &opts).is_err(), "{bad}");
        }
    }

    #[test]
    fn secret_header_verifies() {
        let v = Verifier::from_settings(&settings(&[
            ("header", "X-Hook-Token"),
            ("header_value", "t0k€n"),
        ]))
        .expect("verifier");
        let opts = VerifyOptions::default();
        let ok = with_header(
            CallbackRequest::post(DELIVERY.to_vec()),
            "x-hook-token",
            "t0k€n".as_bytes(),
        );
        v.verify(&ok, &opts).expect("valid header");
        let wrong = with_header(
            CallbackRequest::post(DELIVERY.to_vec()),
            "x-hook-token",
            b"t0ken",
        );
        assert!(matches!(
            v.verify(&wrong, &opts),
            Err(VerifyError::BadCredentials)
        ));
        assert!(matches!(
            v.verify(&CallbackRequest::post(DELIVERY.to_vec()), &opts),
            Err(VerifyError::Missing(_))
        ));
    }

    #[test]
    fn both_checks_must_pass_when_both_are_configured() {
        let v = Verifier::from_settings(&settings(&[
            ("basic_auth", "u:p"),
            ("header", "x-hook-token"),
            ("header_value", "abc"),
        ]))
        .expect("verifier");
        let opts = VerifyOptions::default();
        let auth_only = with_header(
            CallbackRequest::post(DELIVERY.to_vec()),
            "authorization",
            basic("u:p").as_bytes(),
        );
        assert!(v.verify(&auth_only, &opts).is_err());
        let both = with_header(auth_only, "x-hook-token", b"abc");
        v.verify(&both, &opts).expect("both present");
    }

    #[test]
    fn settings_fail_closed() {
        let missing = |s: &VerifySettings| {
            matches!(
                Verifier::from_settings(s),
                Err(VerifyConfigError::Missing { .. })
            )
        };
        assert!(missing(&VerifySettings::new()));
        assert!(missing(&settings(&[("basic_auth", "")])));
        assert!(missing(&settings(&[("header", "x-token")])));
        assert!(missing(&settings(&[("header_value", "abc")])));
        assert!(missing(&settings(&[
            ("header", "x-token"),
            ("header_value", " ")
        ])));
        assert!(matches!(
            Verifier::from_settings(&settings(&[("basic_auth", "no-colon")])),
            Err(VerifyConfigError::Invalid { .. })
        ));
        assert!(matches!(
            Verifier::from_settings(&settings(&[("header", "bad name"), ("header_value", "x")])),
            Err(VerifyConfigError::Invalid { .. })
        ));
        assert!(matches!(
            Verifier::from_settings(&settings(&[("basic_auth", "u:p"), ("token", "x")])),
            Err(VerifyConfigError::Unknown { .. })
        ));
        let v = Verifier::from_settings(&settings(&[
            ("basic_auth", "user:hunter2"),
            ("header", "x-token"),
            ("header_value", "sekrit"),
        ]))
        .expect("verifier");
        let dbg = format!("{v:?}");
        assert!(!dbg.contains("hunter2") && !dbg.contains("sekrit"), "{dbg}");
    }

    #[test]
    fn fixtures_map() {
        let cases: [(&[u8], Status, &str); 6] = [
            (DELIVERY, Status::Delivered, "john@example.com"),
            (BOUNCE_HARD, Status::Bounced, "john@example.com"),
            (SPAM, Status::Complained, "john@example.com"),
            (OPEN, Status::Seen, "john@example.com"),
            (CLICK, Status::Clicked, "john@example.com"),
            (SUBSCRIPTION, Status::Unsubscribed, "john@example.com"),
        ];
        for (body, want, recipient) in cases {
            let e = one(body);
            let s = e.status().expect("status");
            assert_eq!(s.status, want);
            assert!(!s.informational);
            assert_eq!(s.timestamp_ms, FIXTURE_MS);
            assert_eq!(e.channel, Channel::Email);
            assert_eq!(e.channel_value, recipient);
            assert_eq!(
                e.vendor_ack_id.as_deref(),
                Some("883953f4-6105-42a2-a16a-77a8eac79483")
            );
            assert_eq!(e.correlation["customer_id"], "12345");
            assert!(e.correlation.contains_key("tag"));
        }
        let bounce = one(BOUNCE_HARD);
        assert_eq!(
            bounce.status().and_then(|s| s.error.clone()),
            Some(ErrorInfo {
                code: Some("HardBounce".into()),
                message: Some(
                    "smtp;550 5.1.1 The email account that you tried to reach does not exist."
                        .into()
                ),
            })
        );
    }

    #[test]
    fn bounce_types_map() {
        let b = |t: &str| {
            with_status(
                json!({"RecordType":"Bounce","Type":t,"Email":"a@b.c","ID":1,
                "Description":"desc","BouncedAt":"2025-04-05T16:33:54Z"}),
            )
        };
        for t in ["HardBounce", "BadEmailAddress"] {
            assert_eq!(b(t).status, Status::Bounced, "{t}");
        }
        for t in [
            "Transient",
            "SoftBounce",
            "DnsError",
            "Blocked",
            "DMARCPolicy",
            "ManuallyDeactivated",
        ] {
            let s = b(t);
            assert_eq!((s.status, s.informational), (Status::Failed, false), "{t}");
            assert_eq!(
                s.error,
                Some(ErrorInfo {
                    code: Some(t.into()),
                    message: Some("desc".into())
                })
            );
        }
        for t in [
            "AutoResponder",
            "AddressChange",
            "Subscribe",
            "ChallengeVerification",
        ] {
            let s = b(t);
            assert_eq!((s.status, s.informational), (Status::Queued, true), "{t}");
            assert!(s.error.is_none());
        }
        assert_eq!(b("SpamComplaint").status, Status::Complained);
        assert_eq!(b("Unsubscribe").status, Status::Unsubscribed);
        assert_eq!(b("SomethingNew").status, Status::Failed);
        let inactive = with_status(json!({"RecordType":"Bounce","Type":"SomethingNew",
            "Email":"a@b.c","Inactive":true}));
        assert_eq!(inactive.status, Status::Bounced);
    }

    #[test]
    fn a_bounce_without_an_address_is_delivered_by_its_message_id() {
        let unsubscribe = |extra: Value| {
            let mut body = json!({"RecordType":"Bounce","ID":7,"Type":"Unsubscribe",
                "TypeCode":16,"MessageID":"m-16","BouncedAt":"2025-04-05T16:33:54Z",
                "Description":"Unsubscribe or Remove request."});
            if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
                b.extend(e.clone());
            }
            run(body.to_string().as_bytes())
        };
        for extra in [json!({}), json!({"Email": ""}), json!({"Email": null})] {
            let mut out = unsubscribe(extra.clone()).expect("delivered");
            let e = out.events.remove(0);
            assert_eq!(e.channel_value, "", "{extra}");
            assert_eq!(e.vendor_ack_id.as_deref(), Some("m-16"));
            let s = e.status().expect("status");
            assert_eq!((s.status, s.informational), (Status::Unsubscribed, false));
        }
        // Without a message id there is nothing to identify: refused, as before.
        let no_id = json!({"RecordType":"Bounce","Type":"Unsubscribe","TypeCode":16});
        assert!(matches!(
            run(no_id.to_string().as_bytes()),
            Err(NormalizeError::MissingField(_))
        ));
        // Other records still need their address.
        for record in [
            "Delivery",
            "Open",
            "Click",
            "SpamComplaint",
            "SubscriptionChange",
        ] {
            let body = json!({"RecordType": record, "MessageID": "m-16"});
            assert!(
                matches!(
                    run(body.to_string().as_bytes()),
                    Err(NormalizeError::MissingField(_))
                ),
                "{record}"
            );
        }
    }

    #[test]
    fn subscription_changes_map() {
        let sc = |suppress: Value, reason: Value| {
            with_status(
                json!({"RecordType":"SubscriptionChange","Recipient":"a@b.c",
                "SuppressSending":suppress,"SuppressionReason":reason,
                "ChangedAt":"2020-02-01T10:53:34.416071Z","MessageID":null,"Metadata":{}}),
            )
        };
        let s = sc(json!(true), json!("HardBounce"));
        assert_eq!(s.status, Status::Bounced);
        assert_eq!(
            sc(json!(true), json!("SpamComplaint")).status,
            Status::Complained
        );
        assert_eq!(
            sc(json!(true), json!("ManualSuppression")).status,
            Status::Unsubscribed
        );
        let s = sc(json!(false), Value::Null);
        assert_eq!((s.status, s.informational), (Status::Queued, true));
        assert_eq!(s.timestamp_ms, 1_580_554_414_416);
    }

    #[test]
    fn unknown_record_type_falls_back() {
        let e = one(br#"{"RecordType":"Teleport","Recipient":"a@b.c","MessageID":"m"}"#);
        let s = e.status().expect("status");
        assert_eq!((s.status, s.informational), (Status::Queued, true));
        assert_eq!(s.timestamp_ms, CTX.received_at_ms);
    }

    #[test]
    fn records_without_record_type_are_inferred() {
        let legacy_delivery = br#"{"ServerID":23,"MessageID":"m-1","Recipient":"john@example.com","Tag":"welcome","DeliveredAt":"2014-08-01T13:28:10.2735393-04:00","Details":"Test delivery webhook details"}"#;
        let e = one(legacy_delivery);
        assert_eq!(e.status().map(|s| s.status), Some(Status::Delivered));
        assert_eq!(e.status().map(|s| s.timestamp_ms), Some(1_406_914_090_273));
        let legacy_bounce = br#"{"ID":42,"Type":"HardBounce","TypeCode":1,"MessageID":"m-1","Email":"jim@test.com","From":"","BouncedAt":"2014-08-01T13:28:10.2735393-04:00","Inactive":true}"#;
        assert_eq!(
            one(legacy_bounce).status().map(|s| s.status),
            Some(Status::Bounced)
        );
        assert!(matches!(
            run(br#"{"MessageID":"m-1"}"#),
            Err(NormalizeError::MissingField(_))
        ));
    }

    #[test]
    fn inbound_email() {
        let e = one(INBOUND);
        assert_eq!(e.channel, Channel::Email);
        assert_eq!(e.channel_value, "john@example.com");
        assert_eq!(
            e.vendor_ack_id.as_deref(),
            Some("73e6d360-66eb-11e1-8e72-a8206ea7d3ea")
        );
        assert_eq!(e.correlation["mailbox_hash"], "ticket-456");
        assert!(!e.correlation.contains_key("tag"), "empty Tag is absent");
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound expected")
        };
        assert_eq!(m.from, "john@example.com");
        assert_eq!(m.to, "support+ticket-456@yourdomain.com");
        assert_eq!(m.message_type, "email");
        assert_eq!(
            m.text.as_deref(),
            Some("I still haven't received my order.")
        );
        assert!(m.media.is_empty());
        // "Thu, 5 Apr 2025 16:59:01 +0200": the 5th was a Saturday; the date wins.
        assert_eq!(m.timestamp_ms, 1_743_865_141_000);
        assert_eq!(m.source_message_id, "73e6d360-66eb-11e1-8e72-a8206ea7d3ea");
    }

    #[test]
    fn inbound_dates() {
        assert_eq!(
            mail_date_ms("Sat, 5 Apr 2025 16:59:01 +0200"),
            Some(1_743_865_141_000)
        );
        assert_eq!(
            mail_date_ms("5 Apr 2025 14:59:01 GMT"),
            Some(1_743_865_141_000)
        );
        assert_eq!(
            mail_date_ms("Thu, 5 Apr 2025 16:59:01 +0200 (CEST)"),
            Some(1_743_865_141_000)
        );
        assert_eq!(mail_date_ms("gestern, irgendwann"), None);
        assert_eq!(mail_date_ms("Dï, 5 Apr 2025 16:59:01 +0200"), None);
        let e =
            one(r#"{"From":"a@b.c","MessageID":"m","Date":"nonsense","TextBody":""}"#.as_bytes());
        assert_eq!(e.timestamp_ms(), CTX.received_at_ms);
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound expected")
        };
        assert_eq!(m.text, None);
        assert_eq!(m.to, "");
    }

    #[test]
    fn non_ascii_survives() {
        let body = json!({"From":"jörg@bücher.de","FromFull":{"Email":"jörg@bücher.de","Name":"Jörg"},
            "To":"support@example.com","Subject":"Größe → 日本語","MessageID":"m-ü",
            "TextBody":"","StrippedTextReply":"Grüße 👋 日本語","Date":"Sat, 5 Apr 2025 16:59:01 +0200"});
        let e = one(body.to_string().as_bytes());
        assert_eq!(e.channel_value, "jörg@bücher.de");
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound expected")
        };
        assert_eq!(m.text.as_deref(), Some("Grüße 👋 日本語"));
        assert_eq!(e.raw.to_value()["Subject"], "Größe → 日本語");
    }

    #[test]
    fn idempotency_keys() {
        let a = one(DELIVERY);
        assert_eq!(a.idempotency_key, one(DELIVERY).idempotency_key);
        assert_ne!(a.idempotency_key, one(OPEN).idempotency_key);
        let traced = |id: &[u8]| {
            let req = with_header(
                CallbackRequest::post(DELIVERY.to_vec()).with_content_type("application/json"),
                "x-pm-webhook-trace-id",
                id,
            );
            normalize(&req, &CTX)
                .expect("normalize")
                .events
                .remove(0)
                .idempotency_key
        };
        assert_eq!(traced(b"t-1"), traced(b"t-1"));
        assert_ne!(traced(b"t-1"), traced(b"t-2"));
        assert_ne!(traced(b"t-1"), a.idempotency_key);
        assert_ne!(
            one(INBOUND).idempotency_key,
            one(br#"{"From":"a@b.c","MessageID":"other"}"#).idempotency_key
        );
    }

    #[test]
    fn malformed_input_is_an_error() {
        let cases: &[&[u8]] = &[
            b"",
            b" \n",
            b"{\"RecordType\":\"Delivery\"",
            b"[{\"RecordType\":\"Delivery\",\"Recipient\":\"a@b.c\"}]",
            b"\"Delivery\"",
            b"{\"RecordType\":5,\"Recipient\":\"a@b.c\"}",
            b"{\"RecordType\":\"Delivery\"}",
            b"{\"RecordType\":\"Delivery\",\"Recipient\":\"a@b.c\",\"DeliveredAt\":\"soon\"}",
            b"{\"RecordType\":\"Delivery\",\"Recipient\":\"a@b.c\",\"DeliveredAt\":12}",
            b"{\"RecordType\":\"Delivery\",\"Recipient\":\"a@b.c\",\"DeliveredAt\":\"x\xc3\xa9aaaa\"}",
            b"{\"From\":\"a@b.c\"}",
            b"{}",
            b"\xff\xfe\x00garbage",
        ];
        for body in cases {
            assert!(run(body).is_err(), "{:?}", String::from_utf8_lossy(body));
        }
        assert!(matches!(
            run(b"[{\"RecordType\":\"Delivery\"}]"),
            Err(NormalizeError::Shape { .. })
        ));
        let form = CallbackRequest::post(DELIVERY.to_vec())
            .with_content_type("application/x-www-form-urlencoded");
        assert!(matches!(
            normalize(&form, &CTX),
            Err(NormalizeError::UnsupportedContentType { .. })
        ));
        assert!(normalize(&CallbackRequest::post(DELIVERY.to_vec()), &CTX).is_ok());
        let garbage = vec![b'{'; 10 * 1024 * 1024];
        assert!(run(&garbage).is_err());
    }

    #[test]
    fn a_body_beyond_the_limits_is_kept_whole_and_other_shapes_refused() {
        let deep = format!(
            r#"{{"RecordType":"Delivery","MessageID":"m","Recipient":"a@b.c","Metadata":{{"x":{}{}}}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let long = format!(
            r#"{{"RecordType":"Delivery","MessageID":"m","Recipient":"a@b.c","ServerID":{}}}"#,
            "4".repeat(100_000)
        );
        for body in [&deep, &long] {
            let out = run(body.as_bytes()).expect("kept, not refused");
            assert!(out.events.is_empty());
            assert_eq!(out.unparsed.len(), 1);
            assert_eq!(out.unparsed[0].raw, *body);
        }
        // Not Postmark's object: refused as before.
        let array = format!("[{}{}]", "[".repeat(100_000), "]".repeat(100_000));
        let truncated = &deep[..deep.len() - 10];
        for body in [array.as_str(), truncated] {
            assert!(run(body.as_bytes()).is_err());
        }
    }
}
