//! Amazon SES notifications delivered by Amazon SNS (provider id `ses`).
//!
//! # Callback format
//!
//! SNS `POST`s one JSON envelope per request with `Content-Type: text/plain; charset=UTF-8`
//! (`application/json` and an absent content type are accepted too). Envelope keys:
//! `Type`, `MessageId`, `TopicArn`, `Subject` (optional), `Message` (a string),
//! `Timestamp`, `SignatureVersion`, `Signature`, `SigningCertURL`, `UnsubscribeURL`, and
//! `Token` / `SubscribeURL` for confirmations. The Lambda spellings `SigningCertUrl`,
//! `SubscribeUrl` and `UnsubscribeUrl` are accepted as well.
//!
//! - `Type: SubscriptionConfirmation` becomes [`Control::SnsSubscriptionConfirmation`]
//!   (fetch `SubscribeURL` to confirm) and `UnsubscribeConfirmation` becomes
//!   [`Control::SnsUnsubscribeConfirmation`]; neither carries events.
//! - `Type: Notification`: `Message` is the SES JSON document (double-encoded), either a
//!   legacy feedback notification (`notificationType`) or a configuration-set event
//!   (`eventType`). A `Message` that is not a JSON object is an error.
//! - SNS raw message delivery (header `x-amz-sns-rawdelivery: true`) posts the bare SES
//!   document with no envelope. It is normalized (a body without `Type` that carries
//!   `eventType` or `notificationType` is read the same way), but it is unsigned, so
//!   [`Verifier::verify`] always rejects it (fail closed).
//!
//! One event per recipient: `Bounce` per `bounce.bouncedRecipients[]`, `Complaint` per
//! `complaint.complainedRecipients[]`, `Delivery` per `delivery.recipients[]`,
//! `DeliveryDelay` per `deliveryDelay.delayedRecipients[]`, every other event per
//! `mail.destination[]`. Channel `email`, `channel_value` = the recipient address.
//!
//! - `vendor_ack_id` = `mail.messageId` (the SES message id);
//! - `idempotency_key` = key of (SNS `MessageId`, recipient): SNS retries reuse the
//!   `MessageId`. For raw delivery the `x-amz-sns-message-id` header is used; without it,
//!   (`mail.messageId`, event type, event timestamp, recipient);
//! - correlation = `mail.tags`, each tag name to its value (the single string when the tag
//!   array has one element, else the array);
//! - timestamp = the event's own `timestamp` (`bounce.timestamp`, `delivery.timestamp`,
//!   `open.timestamp`, …), else `mail.timestamp`, else the receive time; epoch ms;
//! - `raw` = the SES document (the parsed `Message`), not the SNS envelope.
//!
//! # Status mapping
//!
//! | SES `eventType` / `notificationType` | status | notes |
//! |---|---|---|
//! | `Send` | `queued` | |
//! | `Delivery` | `delivered` | |
//! | `Open` | `seen` | |
//! | `Click` | `clicked` | |
//! | `Bounce`, `bounceType: Permanent` | `bounced` | error below |
//! | `Bounce`, `bounceType: Transient` / `Undetermined` / other | `failed` | SES reports a soft bounce only once it gave up retrying, so it is a terminal failure, not a deferral |
//! | `Complaint` | `complained` | |
//! | `Complaint`, `complaintFeedbackType: not-spam` | `queued`, informational | |
//! | `Reject` | `failed` | error message = `reject.reason` |
//! | `Rendering Failure` | `failed` | error message = `failure.errorMessage` |
//! | `DeliveryDelay` | `queued`, informational | |
//! | `Subscription`, `unsubscribeAll: true` or any new topic status `OPT_OUT` / `OptOut` | `unsubscribed` | |
//! | `Subscription`, otherwise | `queued`, informational | |
//! | anything else (unknown values, `AmazonSnsSubscriptionSucceeded`, …) | `queued`, informational | documented fallback, never an error |
//!
//! Bounce error: `code` = the recipient's `status` (enhanced status code, e.g. `5.1.1`),
//! else its `diagnosticCode`; `message` = `diagnosticCode` when `code` is the `status`,
//! else `bounceType/bounceSubType`.
//!
//! # Signature
//!
//! The SNS message signature: `SignatureVersion` `1` = RSA PKCS#1 v1.5 with SHA-1, `2` =
//! with SHA-256, `Signature` in base64, over the string-to-sign `"Key\nValue\n"` for, in
//! this order, `Message, MessageId, Subject` (only if present)`, Timestamp, TopicArn,
//! Type` (notifications) or `Message, MessageId, SubscribeURL, Timestamp, Token, TopicArn,
//! Type` (confirmations). `SigningCertURL` must be `https` on a host matching
//! `^sns\.[a-zA-Z0-9\-]{3,}\.amazonaws\.com(\.cn)?$` with a path ending in `.pem`
//! (else [`VerifyError::Certificate`]). The certificate itself is supplied offline;
//! [`signing_cert_url`] and [`verify_with_cert_pem`] let a caller fetch and cache it.
//! When a clock is given (`now_secs`), the certificate must be inside its validity
//! period; without one (recorded requests) its dates are not checked. SNS signs no
//! freshness window: replays are left to dedupe on the idempotency key.
//!
//! # Verify keys
//!
//! | key | required | meaning |
//! |---|---|---|
//! | `cert_pem` | one of these two | PEM text of the SNS signing certificate (the binary reads the `cert_file` key into it) |
//! | `fetch_cert` | one of these two | `true`: the caller fetches the certificate from the checked `SigningCertURL` (AWS rotates it) and calls [`Verifier::verify_with_cert_pem`]; [`Verifier::verify`] alone then fails closed |
//! | `topic_arn` | no | when set, `TopicArn` must equal it (else [`VerifyError::Mismatch`]) |
//!
//! [`Control::SnsSubscriptionConfirmation`]: crate::provider::Control::SnsSubscriptionConfirmation
//! [`Control::SnsUnsubscribeConfirmation`]: crate::provider::Control::SnsUnsubscribeConfirmation

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use rsa::PublicKey as RsaPublicKey;
use rsa::pkcs8::DecodePublicKey as _;
use rsa::traits::PublicKeyParts as _;
use serde_json::{Map, Value};
use sha1::Sha1;
use sha2::Sha256;
use x509_cert::Certificate;
use x509_cert::der::{DecodePem as _, Encode as _};

use crate::event::{ErrorInfo, Event, EventKind, StatusUpdate, idempotency_key};
use crate::provider::{Context, Control, Normalized, VerifyOptions, VerifySettings};
use crate::timestamp::value_to_ms;
use crate::{CallbackRequest, Channel, NormalizeError, Status, VerifyConfigError, VerifyError};

const PROVIDER: &str = "ses";
const KNOWN_KEYS: &[&str] = &["cert_pem", "fetch_cert", "topic_arn"];
const RAW_DELIVERY_HEADER: &str = "x-amz-sns-rawdelivery";
static NO_RECIPIENTS: Vec<Value> = Vec::new();

/// A parsed SNS signing certificate: its RSA public key and validity period.
#[derive(Clone)]
struct SigningCert {
    key: RsaPublicKey,
    not_before: i64,
    not_after: i64,
}

impl fmt::Debug for SigningCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningCert")
            .field("bits", &(self.key.size() * 8))
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish()
    }
}

impl SigningCert {
    fn from_pem(pem: &str) -> Result<Self, String> {
        let cert = Certificate::from_pem(pem.trim().as_bytes())
            .map_err(|e| format!("not a PEM X.509 certificate: {e}"))?;
        let tbs = cert.tbs_certificate();
        let spki = tbs
            .subject_public_key_info()
            .to_der()
            .map_err(|e| format!("cannot encode the public key: {e}"))?;
        let key = RsaPublicKey::from_public_key_der(&spki)
            .map_err(|e| format!("not an RSA public key: {e}"))?;
        let secs = |t: &x509_cert::time::Time| {
            i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
        };
        let validity = tbs.validity();
        Ok(Self {
            key,
            not_before: secs(&validity.not_before),
            not_after: secs(&validity.not_after),
        })
    }

    fn check_validity(&self, opts: &VerifyOptions) -> Result<(), VerifyError> {
        if let Some(now) = opts.now_secs {
            if now < self.not_before {
                return Err(VerifyError::Certificate(
                    "certificate is not valid yet".into(),
                ));
            }
            if now > self.not_after {
                return Err(VerifyError::Certificate("certificate has expired".into()));
            }
        }
        Ok(())
    }
}

/// SNS message-signature check against a signing certificate supplied offline.
///
/// Holds the parsed certificate (public data, parsed once) and the optional expected
/// topic; `Debug` prints neither key material nor settings values.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// The certificate supplied offline; `None` when the caller fetches it (`fetch_cert`).
    cert: Option<Arc<SigningCert>>,
    topic_arn: Option<String>,
}

impl Verifier {
    /// Builds the verifier from the `verify:` settings: `cert_pem` (required, parsed here)
    /// and `topic_arn` (optional).
    pub fn from_settings(settings: &VerifySettings) -> Result<Self, VerifyConfigError> {
        settings.only(PROVIDER, KNOWN_KEYS)?;
        let fetch = match settings
            .get("fetch_cert")
            .map(|v| v.expose().trim().to_owned())
        {
            None => false,
            Some(v) if v == "true" => true,
            Some(v) if v == "false" => false,
            Some(_) => {
                return Err(VerifyConfigError::Invalid {
                    provider: PROVIDER,
                    key: "fetch_cert",
                    reason: "must be true or false".into(),
                });
            }
        };
        let cert = match settings.get("cert_pem") {
            Some(pem) => Some(Arc::new(SigningCert::from_pem(pem.expose()).map_err(
                |reason| VerifyConfigError::Invalid {
                    provider: PROVIDER,
                    key: "cert_pem",
                    reason,
                },
            )?)),
            None if fetch => None,
            None => {
                return Err(VerifyConfigError::Missing {
                    provider: PROVIDER,
                    key: "cert_pem",
                });
            }
        };
        let topic_arn = settings
            .get("topic_arn")
            .map(|s| s.expose().trim().to_owned());
        Ok(Self { cert, topic_arn })
    }

    /// Checks the SNS signature of the envelope (and the topic, when configured).
    pub fn verify(&self, req: &CallbackRequest, opts: &VerifyOptions) -> Result<(), VerifyError> {
        match &self.cert {
            Some(cert) => verify_envelope(req, cert, self.topic_arn.as_deref(), opts),
            None => Err(VerifyError::Certificate(
                "no certificate supplied (fetch_cert: the caller must fetch SigningCertURL)".into(),
            )),
        }
    }

    /// True when the certificate is fetched by the caller (`fetch_cert: true` and no
    /// `cert_pem`).
    #[must_use]
    pub fn fetches_cert(&self) -> bool {
        self.cert.is_none()
    }

    /// Checks `req` with a certificate the caller fetched from [`signing_cert_url`], and
    /// the configured topic.
    pub fn verify_with_cert_pem(
        &self,
        req: &CallbackRequest,
        pem: &str,
        opts: &VerifyOptions,
    ) -> Result<(), VerifyError> {
        let cert = SigningCert::from_pem(pem).map_err(VerifyError::Certificate)?;
        verify_envelope(req, &cert, self.topic_arn.as_deref(), opts)
    }
}

/// Checks the SNS signature of `req` with the certificate `pem` (PEM text), for a caller
/// that fetched the certificate from [`signing_cert_url`] itself. No topic check.
pub fn verify_with_cert_pem(
    req: &CallbackRequest,
    pem: &str,
    opts: &VerifyOptions,
) -> Result<(), VerifyError> {
    let cert = SigningCert::from_pem(pem).map_err(VerifyError::Certificate)?;
    verify_envelope(req, &cert, None, opts)
}

/// The envelope's `SigningCertURL` (or `SigningCertUrl`), after checking it is `https`, on
/// an SNS host (`^sns\.[a-zA-Z0-9\-]{3,}\.amazonaws\.com(\.cn)?$`), with no user info or
/// non-default port, and a path ending in `.pem`.
pub fn signing_cert_url(req: &CallbackRequest) -> Result<String, VerifyError> {
    let envelope = signed_envelope(req)?;
    cert_url_of(&envelope)
}

/// The exact string SNS signed for the envelope in `body` (see the module docs).
pub fn string_to_sign(body: &[u8]) -> Result<String, VerifyError> {
    let envelope = parse_envelope_for_verify(body)?;
    string_to_sign_of(&envelope)
}

fn is_raw_delivery(req: &CallbackRequest) -> bool {
    req.header(RAW_DELIVERY_HEADER)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

fn parse_envelope_for_verify(body: &[u8]) -> Result<Map<String, Value>, VerifyError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(VerifyError::Unreadable(
            "SNS envelope is not a JSON object".into(),
        )),
        Err(e) => Err(VerifyError::Unreadable(format!(
            "SNS envelope is not JSON: {e}"
        ))),
    }
}

/// The parsed envelope of a request that claims to be signed.
fn signed_envelope(req: &CallbackRequest) -> Result<Map<String, Value>, VerifyError> {
    if is_raw_delivery(req) {
        return Err(VerifyError::Missing(
            "SNS raw message delivery carries no signature",
        ));
    }
    parse_envelope_for_verify(&req.body)
}

fn verify_envelope(
    req: &CallbackRequest,
    cert: &SigningCert,
    topic_arn: Option<&str>,
    opts: &VerifyOptions,
) -> Result<(), VerifyError> {
    let envelope = signed_envelope(req)?;
    let signature = match envelope.get("Signature") {
        None | Some(Value::Null) => return Err(VerifyError::Missing("Signature")),
        Some(Value::String(s)) if s.trim().is_empty() => {
            return Err(VerifyError::Missing("Signature"));
        }
        Some(Value::String(s)) => s.trim(),
        Some(_) => return Err(VerifyError::Malformed("Signature is not a string".into())),
    };
    let version = match envelope.get("SignatureVersion") {
        None | Some(Value::Null) => return Err(VerifyError::Missing("SignatureVersion")),
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => {
            return Err(VerifyError::Malformed(
                "SignatureVersion is not a string".into(),
            ));
        }
    };
    cert_url_of(&envelope)?;
    let sts = string_to_sign_of(&envelope)?;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .map_err(|e| VerifyError::Malformed(format!("Signature is not base64: {e}")))?;
    cert.check_validity(opts)?;
    match version.as_str() {
        "1" => rsa_pkcs1v15_verify::<Sha1>(&cert.key, sts.as_bytes(), &sig)?,
        "2" => rsa_pkcs1v15_verify::<Sha256>(&cert.key, sts.as_bytes(), &sig)?,
        other => {
            return Err(VerifyError::Malformed(format!(
                "unsupported SignatureVersion {other:?} (expected 1 or 2)"
            )));
        }
    }
    if let Some(expected) = topic_arn {
        // Topic names are not secret; the signature was already checked in full.
        if env_str(&envelope, &["TopicArn"]) != Some(expected) {
            return Err(VerifyError::Mismatch);
        }
    }
    Ok(())
}

/// RSASSA-PKCS1-v1_5 verification of `message` with the digest of SignatureVersion.
fn rsa_pkcs1v15_verify<D>(key: &RsaPublicKey, message: &[u8], sig: &[u8]) -> Result<(), VerifyError>
where
    D: sha2::Digest + rsa::pkcs8::AssociatedOid,
{
    use rsa::signature::Verifier as _;
    let sig = rsa::pkcs1v15::Signature::try_from(sig).map_err(|_| VerifyError::Mismatch)?;
    rsa::pkcs1v15::VerifyingKey::<D>::new(key.clone())
        .verify(message, &sig)
        .map_err(|_| VerifyError::Mismatch)
}

fn cert_url_of(envelope: &Map<String, Value>) -> Result<String, VerifyError> {
    let raw = env_str(envelope, &["SigningCertURL", "SigningCertUrl"])
        .ok_or(VerifyError::Missing("SigningCertURL"))?;
    let url = url::Url::parse(raw.trim())
        .map_err(|e| VerifyError::Certificate(format!("SigningCertURL is not a URL: {e}")))?;
    if url.scheme() != "https" {
        return Err(VerifyError::Certificate(
            "SigningCertURL is not https".into(),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() || url.port().is_some() {
        return Err(VerifyError::Certificate(
            "SigningCertURL has user info or a port".into(),
        ));
    }
    let host = url.host_str().unwrap_or_default();
    if !is_sns_host(host) {
        return Err(VerifyError::Certificate(format!(
            "SigningCertURL host {host:?} is not an SNS host"
        )));
    }
    if !url.path().ends_with(".pem") {
        return Err(VerifyError::Certificate(
            "SigningCertURL path does not end in .pem".into(),
        ));
    }
    Ok(url.to_string())
}

/// `^sns\.[a-zA-Z0-9\-]{3,}\.amazonaws\.com(\.cn)?$`
fn is_sns_host(host: &str) -> bool {
    let Some(rest) = host.strip_prefix("sns.") else {
        return false;
    };
    let middle = rest
        .strip_suffix(".amazonaws.com.cn")
        .or_else(|| rest.strip_suffix(".amazonaws.com"));
    middle
        .is_some_and(|m| m.len() >= 3 && m.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

fn string_to_sign_of(envelope: &Map<String, Value>) -> Result<String, VerifyError> {
    // (name in the string-to-sign, accepted spellings, required)
    type Field = (&'static str, &'static [&'static str], bool);
    const NOTIFICATION: &[Field] = &[
        ("Message", &["Message"], true),
        ("MessageId", &["MessageId"], true),
        ("Subject", &["Subject"], false),
        ("Timestamp", &["Timestamp"], true),
        ("TopicArn", &["TopicArn"], true),
        ("Type", &["Type"], true),
    ];
    const CONFIRMATION: &[Field] = &[
        ("Message", &["Message"], true),
        ("MessageId", &["MessageId"], true),
        ("SubscribeURL", &["SubscribeURL", "SubscribeUrl"], true),
        ("Timestamp", &["Timestamp"], true),
        ("Token", &["Token"], true),
        ("TopicArn", &["TopicArn"], true),
        ("Type", &["Type"], true),
    ];
    let ty = match envelope.get("Type") {
        Some(Value::String(s)) => s.as_str(),
        _ => return Err(VerifyError::Unreadable("SNS envelope has no Type".into())),
    };
    let fields = match ty {
        "Notification" => NOTIFICATION,
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => CONFIRMATION,
        other => {
            return Err(VerifyError::Unreadable(format!(
                "unknown SNS message Type {other:?}"
            )));
        }
    };
    let mut out = String::new();
    for (name, spellings, required) in fields {
        let value = spellings
            .iter()
            .find_map(|k| envelope.get(*k).filter(|v| !v.is_null()));
        match value {
            Some(Value::String(s)) => {
                out.push_str(name);
                out.push('\n');
                out.push_str(s);
                out.push('\n');
            }
            Some(_) => {
                return Err(VerifyError::Unreadable(format!("{name} is not a string")));
            }
            None if *required => {
                return Err(VerifyError::Unreadable(format!(
                    "SNS envelope has no {name}"
                )));
            }
            None => {}
        }
    }
    Ok(out)
}

/// The first string value among `keys`.
fn env_str<'a>(m: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| m.get(*k).and_then(Value::as_str))
}

fn required_env_str(
    m: &Map<String, Value>,
    keys: &[&'static str],
) -> Result<String, NormalizeError> {
    env_str(m, keys)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned)
        .ok_or_else(|| NormalizeError::MissingField(keys.first().copied().unwrap_or("").into()))
}

/// Normalizes one SNS delivery: a control message for confirmations, one event per
/// recipient for SES notifications.
pub fn normalize(req: &CallbackRequest, ctx: &Context) -> Result<Normalized, NormalizeError> {
    req.expect_content_type(
        PROVIDER,
        &["text/plain", "application/json"],
        "text/plain or application/json",
    )?;
    let body = match req.json()? {
        Value::Object(m) => m,
        _ => return Err(NormalizeError::shape("/", "an SNS envelope object")),
    };
    let header_id = req
        .header("x-amz-sns-message-id")
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let looks_raw = !body.contains_key("Type")
        && (body.contains_key("eventType") || body.contains_key("notificationType"));
    if is_raw_delivery(req) || looks_raw {
        let doc = Value::Object(body);
        return ses_events(&doc, header_id, ctx).map(Normalized::events);
    }
    let ty = required_env_str(&body, &["Type"])?;
    match ty.as_str() {
        "SubscriptionConfirmation" => {
            Ok(Normalized::control(Control::SnsSubscriptionConfirmation {
                topic_arn: required_env_str(&body, &["TopicArn"])?,
                subscribe_url: required_env_str(&body, &["SubscribeURL", "SubscribeUrl"])?,
                token: required_env_str(&body, &["Token"])?,
            }))
        }
        "UnsubscribeConfirmation" => Ok(Normalized::control(Control::SnsUnsubscribeConfirmation {
            topic_arn: required_env_str(&body, &["TopicArn"])?,
            subscribe_url: required_env_str(&body, &["SubscribeURL", "SubscribeUrl"])?,
        })),
        "Notification" => {
            let message_id = required_env_str(&body, &["MessageId"])?;
            let message = match body.get("Message") {
                Some(Value::String(s)) => s,
                Some(_) => return Err(NormalizeError::shape("/Message", "a string")),
                None => return Err(NormalizeError::MissingField("Message".into())),
            };
            // A topic can carry other publishers' messages too: a well-formed SNS
            // notification whose Message is not JSON holds no SES event. It is reported,
            // not rejected, so SNS does not retry it for nothing.
            let Ok(doc) = serde_json::from_str::<Value>(message) else {
                return Ok(Normalized::control(Control::Ignored {
                    reason: format!(
                        "SNS notification {message_id} carries no SES event (Message is not JSON)"
                    ),
                }));
            };
            if !doc.is_object() {
                return Err(NormalizeError::shape("/Message", "an SES JSON object"));
            }
            ses_events(&doc, Some(&message_id), ctx).map(Normalized::events)
        }
        other => Err(NormalizeError::invalid(
            "Type",
            format!("unknown SNS message type {other:?}"),
        )),
    }
}

/// Where the recipients of an event are listed.
enum Recipients {
    /// An array of objects with `emailAddress` under the event object.
    Objects(&'static str),
    /// An array of strings under the event object.
    Strings(&'static str),
    /// `mail.destination`.
    Destination,
}

/// The events of one SES document.
fn ses_events(
    doc: &Value,
    sns_message_id: Option<&str>,
    ctx: &Context,
) -> Result<Vec<Event>, NormalizeError> {
    let kind = match (doc.get("eventType"), doc.get("notificationType")) {
        (Some(Value::String(s)), _) | (None, Some(Value::String(s))) => s.as_str(),
        (Some(_), _) => return Err(NormalizeError::shape("/eventType", "a string")),
        (None, Some(_)) => return Err(NormalizeError::shape("/notificationType", "a string")),
        (None, None) => {
            return Err(NormalizeError::MissingField(
                "eventType or notificationType".into(),
            ));
        }
    };
    let mail = match doc.get("mail") {
        None | Some(Value::Null) => None,
        Some(m @ Value::Object(_)) => Some(m),
        Some(_) => return Err(NormalizeError::shape("/mail", "an object")),
    };
    let (object_key, recipients, known) = match kind {
        "Bounce" => ("bounce", Recipients::Objects("bouncedRecipients"), true),
        "Complaint" => (
            "complaint",
            Recipients::Objects("complainedRecipients"),
            true,
        ),
        "Delivery" => ("delivery", Recipients::Strings("recipients"), true),
        "DeliveryDelay" => (
            "deliveryDelay",
            Recipients::Objects("delayedRecipients"),
            true,
        ),
        "Send" => ("send", Recipients::Destination, true),
        "Reject" => ("reject", Recipients::Destination, true),
        "Open" => ("open", Recipients::Destination, true),
        "Click" => ("click", Recipients::Destination, true),
        "Rendering Failure" => ("failure", Recipients::Destination, true),
        "Subscription" => ("subscription", Recipients::Destination, true),
        _ => ("", Recipients::Destination, false),
    };
    let detail = match doc.get(object_key) {
        Some(v @ Value::Object(_)) => Some(v),
        None | Some(Value::Null) => None,
        Some(_) => return Err(NormalizeError::shape(format!("/{object_key}"), "an object")),
    };
    let list = |key: &str| detail.and_then(|d| d.get(key));
    let destination = mail.and_then(|m| m.get("destination"));
    // (recipient address, the recipient's own object, if any)
    let mut targets: Vec<(String, Option<&Value>)> = Vec::new();
    match recipients {
        Recipients::Objects(key) => {
            let arr = match (list(key), kind) {
                (Some(Value::Array(a)), _) => a,
                // A delay without its list applies to every destination.
                (None, "DeliveryDelay") => {
                    collect_destination(destination, true, &mut targets)?;
                    &NO_RECIPIENTS
                }
                (None, _) => {
                    return Err(NormalizeError::MissingField(format!("{object_key}.{key}")));
                }
                (Some(_), _) => {
                    return Err(NormalizeError::shape(
                        format!("/{object_key}/{key}"),
                        "an array",
                    ));
                }
            };
            for (i, r) in arr.iter().enumerate() {
                let addr = r
                    .get("emailAddress")
                    .and_then(Value::as_str)
                    .filter(|s| !s.trim().is_empty())
                    .ok_or_else(|| {
                        NormalizeError::MissingField(format!(
                            "{object_key}.{key}[{i}].emailAddress"
                        ))
                    })?;
                targets.push((addr.trim().to_owned(), Some(r)));
            }
        }
        Recipients::Strings(key) => match list(key) {
            Some(Value::Array(a)) => {
                for (i, r) in a.iter().enumerate() {
                    let addr = r.as_str().filter(|s| !s.trim().is_empty()).ok_or_else(|| {
                        NormalizeError::shape(format!("/{object_key}/{key}/{i}"), "an address")
                    })?;
                    targets.push((addr.trim().to_owned(), None));
                }
            }
            None => return Err(NormalizeError::MissingField(format!("{object_key}.{key}"))),
            Some(_) => {
                return Err(NormalizeError::shape(
                    format!("/{object_key}/{key}"),
                    "an array",
                ));
            }
        },
        Recipients::Destination => collect_destination(destination, known, &mut targets)?,
    }

    let mail_ts = mail.and_then(|m| m.get("timestamp")).and_then(value_to_ms);
    let timestamp_ms = detail
        .and_then(|d| d.get("timestamp"))
        .and_then(value_to_ms)
        .or(mail_ts)
        .unwrap_or(ctx.received_at_ms);
    let vendor_ack_id = mail
        .and_then(|m| m.get("messageId"))
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned);
    let correlation = mail
        .and_then(|m| m.get("tags"))
        .map(tags_to_correlation)
        .unwrap_or_default();

    let mut events = Vec::with_capacity(targets.len());
    for (recipient, own) in targets {
        let (status, informational, error) = map_status(kind, detail, own);
        let idempotency = match sns_message_id {
            Some(id) => idempotency_key(PROVIDER, &[id, &recipient]),
            None => idempotency_key(
                PROVIDER,
                &[
                    vendor_ack_id.as_deref().unwrap_or(""),
                    kind,
                    &timestamp_ms.to_string(),
                    &recipient,
                ],
            ),
        };
        events.push(Event {
            channel: Channel::Email,
            channel_value: recipient,
            vendor_name: PROVIDER.to_owned(),
            vendor_ack_id: vendor_ack_id.clone(),
            idempotency_key: idempotency,
            correlation: correlation.clone(),
            kind: EventKind::Status(StatusUpdate {
                status,
                timestamp_ms,
                error,
                informational,
            }),
            raw: doc.clone().into(),
        });
    }
    Ok(events)
}

/// Adds `mail.destination[]` to `targets`. A missing list is an error for known event
/// types and means "no events" for unknown ones (e.g. `AmazonSnsSubscriptionSucceeded`).
fn collect_destination(
    destination: Option<&Value>,
    required: bool,
    targets: &mut Vec<(String, Option<&Value>)>,
) -> Result<(), NormalizeError> {
    match destination {
        Some(Value::Array(a)) => {
            for (i, r) in a.iter().enumerate() {
                let addr = r.as_str().filter(|s| !s.trim().is_empty()).ok_or_else(|| {
                    NormalizeError::shape(format!("/mail/destination/{i}"), "an address")
                })?;
                targets.push((addr.trim().to_owned(), None));
            }
            Ok(())
        }
        None | Some(Value::Null) if !required => Ok(()),
        None | Some(Value::Null) => Err(NormalizeError::MissingField("mail.destination".into())),
        Some(_) => Err(NormalizeError::shape("/mail/destination", "an array")),
    }
}

/// `mail.tags`: each tag name to its single value, or to the array when it has zero or
/// several values (non-array values are kept as they are).
fn tags_to_correlation(tags: &Value) -> Map<String, Value> {
    let Some(obj) = tags.as_object() else {
        return Map::new();
    };
    obj.iter()
        .map(|(k, v)| {
            let v = match v {
                Value::Array(a) if a.len() == 1 => a.first().cloned().unwrap_or(Value::Null),
                other => other.clone(),
            };
            (k.clone(), v)
        })
        .collect()
}

fn text(v: Option<&Value>, key: &str) -> Option<String> {
    v.and_then(|v| v.get(key))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Status, informational flag and error of one recipient's event.
fn map_status(
    kind: &str,
    detail: Option<&Value>,
    recipient: Option<&Value>,
) -> (Status, bool, Option<ErrorInfo>) {
    match kind {
        "Send" => (Status::Queued, false, None),
        "Delivery" => (Status::Delivered, false, None),
        "Open" => (Status::Seen, false, None),
        "Click" => (Status::Clicked, false, None),
        "Bounce" => {
            let bounce_type = text(detail, "bounceType");
            let status = if bounce_type.as_deref() == Some("Permanent") {
                Status::Bounced
            } else {
                Status::Failed
            };
            let types = match (bounce_type, text(detail, "bounceSubType")) {
                (Some(t), Some(s)) => Some(format!("{t}/{s}")),
                (t, s) => t.or(s),
            };
            let smtp_status = text(recipient, "status");
            let diagnostic = text(recipient, "diagnosticCode");
            let error = if smtp_status.is_some() {
                ErrorInfo::from_parts(smtp_status, diagnostic.or(types))
            } else {
                ErrorInfo::from_parts(diagnostic, types)
            };
            (status, false, error)
        }
        "Complaint" => {
            if text(detail, "complaintFeedbackType").as_deref() == Some("not-spam") {
                (Status::Queued, true, None)
            } else {
                (Status::Complained, false, None)
            }
        }
        "Reject" => (
            Status::Failed,
            false,
            ErrorInfo::from_parts(None, text(detail, "reason")),
        ),
        "Rendering Failure" => (
            Status::Failed,
            false,
            ErrorInfo::from_parts(None, text(detail, "errorMessage")),
        ),
        "Subscription" => {
            if unsubscribed(detail) {
                (Status::Unsubscribed, false, None)
            } else {
                (Status::Queued, true, None)
            }
        }
        // DeliveryDelay and every unknown value: changes no status.
        _ => (Status::Queued, true, None),
    }
}

/// `newTopicPreferences.unsubscribeAll` is true, or any new topic status is an opt-out
/// (`OPT_OUT` in the API, `OptOut` in the published example).
fn unsubscribed(detail: Option<&Value>) -> bool {
    let Some(prefs) = detail.and_then(|d| d.get("newTopicPreferences")) else {
        return false;
    };
    if prefs.get("unsubscribeAll").and_then(Value::as_bool) == Some(true) {
        return true;
    }
    prefs
        .get("topicSubscriptionStatus")
        .and_then(Value::as_array)
        .is_some_and(|topics| {
            topics.iter().any(|t| {
                t.get("subscriptionStatus")
                    .and_then(Value::as_str)
                    .is_some_and(|s| {
                        let norm: String = s
                            .chars()
                            .filter(char::is_ascii_alphanumeric)
                            .collect::<String>()
                            .to_ascii_uppercase();
                        norm == "OPTOUT"
                    })
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SNS_CERT: &str = include_str!("../../tests/fixtures/ses/sns_signing_cert.pem");
    const OTHER_CERT: &str = include_str!("../../tests/fixtures/ses/other_cert.pem");
    const V1_NO_SUBJECT: &str =
        include_str!("../../tests/fixtures/ses/notification_v1_no_subject.json");
    const V1_WITH_SUBJECT: &str =
        include_str!("../../tests/fixtures/ses/notification_v1_with_subject.json");
    const V2_NO_SUBJECT: &str =
        include_str!("../../tests/fixtures/ses/notification_v2_no_subject.json");
    const STS_V1_NO_SUBJECT: &str =
        include_str!("../../tests/fixtures/ses/notification_v1_no_subject.string_to_sign.txt");
    const STS_V1_WITH_SUBJECT: &str =
        include_str!("../../tests/fixtures/ses/notification_v1_with_subject.string_to_sign.txt");
    const STS_V2_NO_SUBJECT: &str =
        include_str!("../../tests/fixtures/ses/notification_v2_no_subject.string_to_sign.txt");
    const SELF_CONFIRMATION: &str =
        include_str!("../../tests/fixtures/ses/selfsigned_subscription_confirmation_v2.json");
    const STS_SELF_CONFIRMATION: &str = include_str!(
        "../../tests/fixtures/ses/selfsigned_subscription_confirmation_v2.string_to_sign.txt"
    );
    const DOC_NOTIFICATION: &str = include_str!("../../tests/fixtures/ses/doc_notification.json");
    const DOC_SUBSCRIPTION: &str =
        include_str!("../../tests/fixtures/ses/doc_subscription_confirmation.json");
    const DOC_UNSUBSCRIBE: &str =
        include_str!("../../tests/fixtures/ses/doc_unsubscribe_confirmation.json");

    const VECTORS: [(&str, &str); 3] = [
        (V1_NO_SUBJECT, STS_V1_NO_SUBJECT),
        (V1_WITH_SUBJECT, STS_V1_WITH_SUBJECT),
        (V2_NO_SUBJECT, STS_V2_NO_SUBJECT),
    ];
    /// 2022-07-29T00:00:00Z, inside the SNS certificate's validity.
    const IN_2022: i64 = 1_659_052_800;
    /// 2030-01-01T00:00:00Z: the SNS certificate has expired, `other_cert.pem` is valid.
    const IN_2030: i64 = 1_893_456_000;
    const CTX: Context = Context {
        received_at_ms: 1_700_000_000_000,
    };

    fn sns(body: &str) -> CallbackRequest {
        CallbackRequest::post(body.to_owned()).with_content_type("text/plain; charset=UTF-8")
    }

    fn verifier(pem: &str) -> Verifier {
        Verifier::from_settings(&VerifySettings::new().with("cert_pem", pem)).expect("verifier")
    }

    fn recorded() -> VerifyOptions {
        VerifyOptions::default()
    }

    fn at(now: i64) -> VerifyOptions {
        VerifyOptions {
            now_secs: Some(now),
            tolerance_secs: None,
        }
    }

    fn edit(body: &str, f: impl FnOnce(&mut Map<String, Value>)) -> String {
        let mut v: Value = serde_json::from_str(body).expect("json");
        f(v.as_object_mut().expect("object"));
        serde_json::to_string(&v).expect("json")
    }

    /// An SNS Notification envelope around an SES document.
    fn envelope(doc: &Value, message_id: &str) -> CallbackRequest {
        sns(&json!({
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-events",
            "Message": doc.to_string(),
            "Timestamp": "2024-01-01T00:00:00.000Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLE",
            "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem",
        })
        .to_string())
    }

    fn events(doc: &Value) -> Vec<Event> {
        normalize(&envelope(doc, "sns-1"), &CTX)
            .expect("normalize")
            .events
    }

    fn status_of(e: &Event) -> &StatusUpdate {
        e.status().expect("status event")
    }

    fn mail() -> Value {
        json!({
            "timestamp": "2024-05-06T07:08:09.100Z",
            "messageId": "ses-msg-1",
            "destination": ["a@example.com", "b@example.com"],
            "tags": {"distinct_id": ["user-1"], "multi": ["x", "y"], "empty": []}
        })
    }

    // ---- signature vectors ----

    #[test]
    fn string_to_sign_matches_the_vectors_byte_for_byte() {
        for (body, sts) in VECTORS {
            assert_eq!(string_to_sign(body.as_bytes()).expect("sts"), sts);
        }
        assert_eq!(
            string_to_sign(SELF_CONFIRMATION.as_bytes()).expect("sts"),
            STS_SELF_CONFIRMATION
        );
    }

    #[test]
    fn real_sns_vectors_verify() {
        let v = verifier(SNS_CERT);
        for (body, _) in VECTORS {
            v.verify(&sns(body), &recorded())
                .expect("recorded vector verifies");
            v.verify(&sns(body), &at(IN_2022))
                .expect("verifies inside validity");
            verify_with_cert_pem(&sns(body), SNS_CERT, &recorded()).expect("with pem");
        }
    }

    #[test]
    fn fetch_mode_fails_closed_alone_and_verifies_with_the_fetched_cert() {
        assert!(Verifier::from_settings(&VerifySettings::new()).is_err());
        assert!(
            Verifier::from_settings(&VerifySettings::new().with("fetch_cert", "maybe")).is_err()
        );
        assert!(
            Verifier::from_settings(&VerifySettings::new().with("fetch_cert", "false")).is_err()
        );
        let v = Verifier::from_settings(&VerifySettings::new().with("fetch_cert", "true"))
            .expect("fetch mode");
        assert!(v.fetches_cert());
        assert!(!verifier(SNS_CERT).fetches_cert());
        for (body, _) in VECTORS {
            assert!(matches!(
                v.verify(&sns(body), &recorded()),
                Err(VerifyError::Certificate(_))
            ));
            v.verify_with_cert_pem(&sns(body), SNS_CERT, &recorded())
                .expect("verifies with the fetched certificate");
            let mut tampered = body.to_string();
            tampered = tampered.replacen("Hello", "Jello", 1);
            assert!(
                v.verify_with_cert_pem(&sns(&tampered), SNS_CERT, &recorded())
                    .is_err()
            );
        }
    }

    #[test]
    fn expired_certificate_fails_only_with_a_clock() {
        let v = verifier(SNS_CERT);
        for (body, _) in VECTORS {
            assert!(matches!(
                v.verify(&sns(body), &at(IN_2030)),
                Err(VerifyError::Certificate(_))
            ));
            assert!(matches!(
                v.verify(&sns(body), &at(1_500_000_000)),
                Err(VerifyError::Certificate(_))
            ));
        }
    }

    #[test]
    fn tampered_body_fails() {
        let v = verifier(SNS_CERT);
        for (body, _) in VECTORS {
            for key in ["Message", "MessageId", "Timestamp", "TopicArn"] {
                let t = edit(body, |m| {
                    let old = m[key].as_str().expect("str").to_owned();
                    m.insert(key.into(), Value::String(format!("{old}x")));
                });
                assert!(
                    matches!(v.verify(&sns(&t), &recorded()), Err(VerifyError::Mismatch)),
                    "{key}"
                );
            }
            // Adding a Subject changes the string-to-sign.
            let t = edit(body, |m| {
                m.insert("Subject".into(), json!("injected"));
            });
            assert!(matches!(
                v.verify(&sns(&t), &recorded()),
                Err(VerifyError::Mismatch)
            ));
            // The other hash algorithm.
            let t = edit(body, |m| {
                let other = if m["SignatureVersion"] == "1" {
                    "2"
                } else {
                    "1"
                };
                m.insert("SignatureVersion".into(), json!(other));
            });
            assert!(matches!(
                v.verify(&sns(&t), &recorded()),
                Err(VerifyError::Mismatch)
            ));
        }
    }

    #[test]
    fn tampered_signature_fails() {
        let v = verifier(SNS_CERT);
        let b64 = base64::engine::general_purpose::STANDARD;
        for (body, _) in VECTORS {
            let t = edit(body, |m| {
                let mut sig = b64
                    .decode(m["Signature"].as_str().expect("sig"))
                    .expect("b64");
                sig[10] ^= 0x01;
                m.insert("Signature".into(), json!(b64.encode(&sig)));
            });
            assert!(matches!(
                v.verify(&sns(&t), &recorded()),
                Err(VerifyError::Mismatch)
            ));
            // Truncated signature, signature >= n, not base64.
            let t = edit(body, |m| {
                let sig = b64
                    .decode(m["Signature"].as_str().expect("sig"))
                    .expect("b64");
                m.insert("Signature".into(), json!(b64.encode(&sig[1..])));
            });
            assert!(matches!(
                v.verify(&sns(&t), &recorded()),
                Err(VerifyError::Mismatch)
            ));
            let t = edit(body, |m| {
                m.insert("Signature".into(), json!(b64.encode([0xffu8; 256])));
            });
            assert!(matches!(
                v.verify(&sns(&t), &recorded()),
                Err(VerifyError::Mismatch)
            ));
            let t = edit(body, |m| {
                m.insert("Signature".into(), json!("!!not base64!!"));
            });
            assert!(matches!(
                v.verify(&sns(&t), &recorded()),
                Err(VerifyError::Malformed(_))
            ));
            let t = edit(body, |m| {
                m.insert("SignatureVersion".into(), json!("3"));
            });
            assert!(matches!(
                v.verify(&sns(&t), &recorded()),
                Err(VerifyError::Malformed(_))
            ));
        }
    }

    #[test]
    fn wrong_certificate_fails() {
        let v = verifier(OTHER_CERT);
        for (body, _) in VECTORS {
            assert!(matches!(
                v.verify(&sns(body), &recorded()),
                Err(VerifyError::Mismatch)
            ));
        }
        let v = verifier(SNS_CERT);
        assert!(matches!(
            v.verify(&sns(SELF_CONFIRMATION), &recorded()),
            Err(VerifyError::Mismatch)
        ));
    }

    #[test]
    fn signed_confirmation_verifies_with_a_valid_certificate() {
        let v = verifier(OTHER_CERT);
        v.verify(&sns(SELF_CONFIRMATION), &at(IN_2030))
            .expect("valid");
        v.verify(&sns(SELF_CONFIRMATION), &recorded())
            .expect("valid");
        assert!(matches!(
            v.verify(&sns(SELF_CONFIRMATION), &at(1_600_000_000)),
            Err(VerifyError::Certificate(_))
        ));
        // Lambda spellings are signed under the canonical names.
        let lambda = edit(SELF_CONFIRMATION, |m| {
            let url = m.remove("SubscribeURL").expect("url");
            m.insert("SubscribeUrl".into(), url);
            let cert = m.remove("SigningCertURL").expect("cert");
            m.insert("SigningCertUrl".into(), cert);
        });
        v.verify(&sns(&lambda), &at(IN_2030))
            .expect("lambda spelling");
        let t = edit(SELF_CONFIRMATION, |m| {
            m.insert("Token".into(), json!("stolen"));
        });
        assert!(matches!(
            v.verify(&sns(&t), &recorded()),
            Err(VerifyError::Mismatch)
        ));
    }

    #[test]
    fn topic_arn_must_match_when_configured() {
        let settings = |topic: &str| {
            VerifySettings::new()
                .with("cert_pem", OTHER_CERT)
                .with("topic_arn", topic)
        };
        let ok =
            Verifier::from_settings(&settings("arn:aws:sns:eu-west-1:123456789012:ses-events"))
                .expect("v");
        ok.verify(&sns(SELF_CONFIRMATION), &recorded())
            .expect("topic matches");
        let other = Verifier::from_settings(&settings("arn:aws:sns:eu-west-1:123456789012:other"))
            .expect("v");
        assert!(matches!(
            other.verify(&sns(SELF_CONFIRMATION), &recorded()),
            Err(VerifyError::Mismatch)
        ));
    }

    #[test]
    fn missing_or_unsigned_fails_closed() {
        let v = verifier(SNS_CERT);
        let t = edit(V1_NO_SUBJECT, |m| {
            m.remove("Signature");
        });
        assert!(matches!(
            v.verify(&sns(&t), &recorded()),
            Err(VerifyError::Missing(_))
        ));
        let t = edit(V1_NO_SUBJECT, |m| {
            m.insert("Signature".into(), json!(""));
        });
        assert!(matches!(
            v.verify(&sns(&t), &recorded()),
            Err(VerifyError::Missing(_))
        ));
        let t = edit(V1_NO_SUBJECT, |m| {
            m.remove("SigningCertURL");
        });
        assert!(matches!(
            v.verify(&sns(&t), &recorded()),
            Err(VerifyError::Missing(_))
        ));
        // Raw message delivery: unsigned, even when the body is a signed envelope.
        let mut raw = sns(V1_NO_SUBJECT);
        raw.headers
            .insert(RAW_DELIVERY_HEADER, http::HeaderValue::from_static("true"));
        assert!(matches!(
            v.verify(&raw, &recorded()),
            Err(VerifyError::Missing(_))
        ));
        let bare = sns(&json!({"eventType": "Send", "mail": mail(), "send": {}}).to_string());
        assert!(matches!(
            v.verify(&bare, &recorded()),
            Err(VerifyError::Missing(_))
        ));
        for body in ["", "not json", "[]", "{\"Type\":"] {
            assert!(v.verify(&sns(body), &recorded()).is_err(), "{body:?}");
        }
        let t = edit(V1_NO_SUBJECT, |m| {
            m.insert("Type".into(), json!("Other"));
        });
        assert!(matches!(
            v.verify(&sns(&t), &recorded()),
            Err(VerifyError::Unreadable(_))
        ));
    }

    #[test]
    fn signing_cert_url_is_validated() {
        let url = signing_cert_url(&sns(V1_NO_SUBJECT)).expect("url");
        assert_eq!(
            url,
            "https://sns.us-east-2.amazonaws.com/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem"
        );
        let with = |u: &str| {
            let body = edit(V1_NO_SUBJECT, |m| {
                m.insert("SigningCertURL".into(), json!(u));
            });
            signing_cert_url(&sns(&body))
        };
        assert!(with("https://sns.cn-north-1.amazonaws.com.cn/cert.pem").is_ok());
        assert!(with("https://sns.us-gov-west-1.amazonaws.com/cert.pem").is_ok());
        for bad in [
            "http://sns.us-east-2.amazonaws.com/cert.pem",
            "https://evil.example.com/cert.pem",
            "https://sns.us-east-2.amazonaws.com.evil.com/cert.pem",
            "https://sns.ab.amazonaws.com/cert.pem",
            "https://sns.us_east.amazonaws.com/cert.pem",
            "https://xsns.us-east-2.amazonaws.com/cert.pem",
            "https://sns.us-east-2.amazonaws.com/cert.txt",
            "https://sns.us-east-2.amazonaws.com:8443/cert.pem",
            "https://user@sns.us-east-2.amazonaws.com/cert.pem",
            "https://sns.evil.com/x.amazonaws.com/cert.pem",
            "not a url",
        ] {
            assert!(
                matches!(with(bad), Err(VerifyError::Certificate(_))),
                "{bad}"
            );
        }
        // A bad URL fails verification even though the signature is right.
        let body = edit(V1_NO_SUBJECT, |m| {
            m.insert(
                "SigningCertURL".into(),
                json!("https://evil.example.com/c.pem"),
            );
        });
        assert!(matches!(
            verifier(SNS_CERT).verify(&sns(&body), &recorded()),
            Err(VerifyError::Certificate(_))
        ));
    }

    #[test]
    fn settings_fail_closed() {
        assert!(matches!(
            Verifier::from_settings(&VerifySettings::new()),
            Err(VerifyConfigError::Missing {
                key: "cert_pem",
                ..
            })
        ));
        assert!(matches!(
            Verifier::from_settings(&VerifySettings::new().with("cert_pem", "  ")),
            Err(VerifyConfigError::Missing { .. })
        ));
        assert!(matches!(
            Verifier::from_settings(&VerifySettings::new().with("cert_pem", "garbage")),
            Err(VerifyConfigError::Invalid { .. })
        ));
        assert!(matches!(
            Verifier::from_settings(
                &VerifySettings::new()
                    .with("cert_pem", SNS_CERT)
                    .with("cert_file", "/x.pem")
            ),
            Err(VerifyConfigError::Unknown { .. })
        ));
        assert!(matches!(
            verify_with_cert_pem(&sns(V1_NO_SUBJECT), "garbage", &recorded()),
            Err(VerifyError::Certificate(_))
        ));
        let debug = format!("{:?}", verifier(SNS_CERT));
        assert!(!debug.contains("MIIF"), "{debug}");
    }

    // ---- normalize: envelopes ----

    #[test]
    fn confirmations_are_control_messages() {
        let out = normalize(&sns(DOC_SUBSCRIPTION), &CTX).expect("ok");
        assert!(out.events.is_empty());
        assert_eq!(
            out.control,
            Some(Control::SnsSubscriptionConfirmation {
                topic_arn: "arn:aws:sns:us-west-2:123456789012:MyTopic".into(),
                subscribe_url: "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-west-2:123456789012:MyTopic&Token=2336412f37...".into(),
                token: "2336412f37...".into(),
            })
        );
        let out = normalize(&sns(DOC_UNSUBSCRIBE), &CTX).expect("ok");
        assert!(out.events.is_empty());
        assert!(matches!(
            out.control,
            Some(Control::SnsUnsubscribeConfirmation { .. })
        ));
        let lambda = edit(SELF_CONFIRMATION, |m| {
            let url = m.remove("SubscribeURL").expect("url");
            m.insert("SubscribeUrl".into(), url);
        });
        let out = normalize(&sns(&lambda), &CTX).expect("ok");
        assert!(matches!(
            out.control,
            Some(Control::SnsSubscriptionConfirmation { ref subscribe_url, .. })
                if subscribe_url.starts_with("https://sns.eu-west-1.amazonaws.com/")
        ));
        let no_token = edit(DOC_SUBSCRIPTION, |m| {
            m.remove("Token");
        });
        assert!(matches!(
            normalize(&sns(&no_token), &CTX),
            Err(NormalizeError::MissingField(_))
        ));
    }

    #[test]
    fn notification_whose_message_is_not_ses_json_is_ignored_or_an_error() {
        // The SNS guide's example: Message "Hello world!" is no SES event.
        let out = normalize(&sns(DOC_NOTIFICATION), &CTX).expect("well-formed SNS");
        assert!(out.events.is_empty());
        assert!(matches!(out.control, Some(Control::Ignored { .. })));
        // The signature vectors carry "Hello world" too.
        for (body, _) in VECTORS {
            let out = normalize(&sns(body), &CTX).expect("well-formed SNS");
            assert!(out.events.is_empty() && out.control.is_some());
        }
        // JSON that is not an SES document is malformed.
        for message in [json!("[1,2]"), json!("42"), json!(7), json!({"a": 1})] {
            let body = edit(DOC_NOTIFICATION, |m| {
                m.insert("Message".into(), message.clone());
            });
            assert!(normalize(&sns(&body), &CTX).is_err(), "{message}");
        }
        let body = edit(DOC_NOTIFICATION, |m| {
            m.insert("Message".into(), json!("{\"mail\":{}}"));
        });
        assert!(matches!(
            normalize(&sns(&body), &CTX),
            Err(NormalizeError::MissingField(_))
        ));
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        let bad: Vec<CallbackRequest> = vec![
            sns(""),
            sns("   "),
            sns("{\"Type\": \"Notif"),
            sns("[]"),
            sns("[{\"Type\":\"Notification\"}]"),
            sns("\"text\""),
            sns("{}"),
            sns("{\"Type\": 5}"),
            sns("{\"Type\": \"Notification\"}"),
            sns("{\"Type\": \"Notification\", \"MessageId\": \"m\"}"),
            sns("{\"Type\": \"Bogus\", \"MessageId\": \"m\", \"Message\": \"{}\"}"),
            sns("\u{feff}{}"),
            CallbackRequest::post(vec![0xff, 0xfe, 0x00]),
            CallbackRequest::post(DOC_SUBSCRIPTION)
                .with_content_type("application/x-www-form-urlencoded"),
            CallbackRequest::post(DOC_SUBSCRIPTION)
                .with_content_type("multipart/form-data; boundary=x"),
        ];
        for req in &bad {
            assert!(normalize(req, &CTX).is_err(), "{:?}", req.body);
        }
        let garbage = vec![b'\x07'; 10 * 1024 * 1024];
        let start = std::time::Instant::now();
        assert!(normalize(&CallbackRequest::post(garbage.clone()), &CTX).is_err());
        assert!(
            verifier(SNS_CERT)
                .verify(&CallbackRequest::post(garbage), &recorded())
                .is_err()
        );
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        // Accepted content types.
        for ct in [
            "application/json",
            "text/plain",
            "Text/Plain; charset=UTF-8",
        ] {
            let req = CallbackRequest::post(DOC_SUBSCRIPTION).with_content_type(ct);
            assert!(normalize(&req, &CTX).is_ok(), "{ct}");
        }
        assert!(normalize(&CallbackRequest::post(DOC_SUBSCRIPTION), &CTX).is_ok());
    }

    #[test]
    fn malformed_ses_documents_are_errors() {
        for doc in [
            json!({"eventType": "Bounce", "mail": mail()}),
            json!({"eventType": "Bounce", "mail": mail(), "bounce": {"bounceType": "Permanent"}}),
            json!({"eventType": "Bounce", "mail": mail(), "bounce": {"bouncedRecipients": {}}}),
            json!({"eventType": "Bounce", "mail": mail(), "bounce": {"bouncedRecipients": [{}]}}),
            json!({"eventType": "Bounce", "mail": mail(), "bounce": []}),
            json!({"eventType": "Delivery", "mail": mail(), "delivery": {"recipients": [5]}}),
            json!({"eventType": "Delivery", "mail": mail(), "delivery": {}}),
            json!({"eventType": "Send", "mail": {"messageId": "m"}}),
            json!({"eventType": "Send", "mail": {"destination": "a@example.com"}}),
            json!({"eventType": "Send", "mail": []}),
            json!({"eventType": 3, "mail": mail()}),
            json!({"mail": mail()}),
        ] {
            assert!(normalize(&envelope(&doc, "m"), &CTX).is_err(), "{doc}");
        }
    }

    // ---- normalize: SES documents ----

    #[test]
    fn status_mapping() {
        let cases: Vec<(Value, Status, bool)> = vec![
            (
                json!({"eventType": "Send", "send": {}}),
                Status::Queued,
                false,
            ),
            (
                json!({"eventType": "Delivery", "delivery": {"recipients": ["a@example.com"]}}),
                Status::Delivered,
                false,
            ),
            (
                json!({"notificationType": "Delivery", "delivery": {"recipients": ["a@example.com"]}}),
                Status::Delivered,
                false,
            ),
            (
                json!({"eventType": "Open", "open": {}}),
                Status::Seen,
                false,
            ),
            (
                json!({"eventType": "Click", "click": {}}),
                Status::Clicked,
                false,
            ),
            (
                json!({"eventType": "Bounce", "bounce": {"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": "a@example.com"}]}}),
                Status::Bounced,
                false,
            ),
            (
                json!({"eventType": "Bounce", "bounce": {"bounceType": "Transient", "bouncedRecipients": [{"emailAddress": "a@example.com"}]}}),
                Status::Failed,
                false,
            ),
            (
                json!({"notificationType": "Bounce", "bounce": {"bounceType": "Undetermined", "bouncedRecipients": [{"emailAddress": "a@example.com"}]}}),
                Status::Failed,
                false,
            ),
            (
                json!({"eventType": "Complaint", "complaint": {"complaintFeedbackType": "abuse", "complainedRecipients": [{"emailAddress": "a@example.com"}]}}),
                Status::Complained,
                false,
            ),
            (
                json!({"notificationType": "Complaint", "complaint": {"complainedRecipients": [{"emailAddress": "a@example.com"}]}}),
                Status::Complained,
                false,
            ),
            (
                json!({"eventType": "Complaint", "complaint": {"complaintFeedbackType": "not-spam", "complainedRecipients": [{"emailAddress": "a@example.com"}]}}),
                Status::Queued,
                true,
            ),
            (
                json!({"eventType": "Reject", "reject": {"reason": "Bad content"}}),
                Status::Failed,
                false,
            ),
            (
                json!({"eventType": "Rendering Failure", "failure": {"errorMessage": "Attribute 'x' is not present", "templateName": "t"}}),
                Status::Failed,
                false,
            ),
            (
                json!({"eventType": "DeliveryDelay", "deliveryDelay": {"delayedRecipients": [{"emailAddress": "a@example.com"}]}}),
                Status::Queued,
                true,
            ),
            (
                json!({"eventType": "DeliveryDelay", "deliveryDelay": {}}),
                Status::Queued,
                true,
            ),
            (
                json!({"eventType": "Subscription", "subscription": {"newTopicPreferences": {"unsubscribeAll": true}}}),
                Status::Unsubscribed,
                false,
            ),
            (
                json!({"eventType": "Subscription", "subscription": {"newTopicPreferences": {"unsubscribeAll": false, "topicSubscriptionStatus": [{"topicName": "a", "subscriptionStatus": "OPT_IN"}, {"topicName": "b", "subscriptionStatus": "OPT_OUT"}]}}}),
                Status::Unsubscribed,
                false,
            ),
            (
                json!({"eventType": "Subscription", "subscription": {"newTopicPreferences": {"unsubscribeAll": false, "topicSubscriptionStatus": [{"topicName": "a", "subscriptionStatus": "OptIn"}]}}}),
                Status::Queued,
                true,
            ),
            (
                json!({"eventType": "Subscription", "subscription": {}}),
                Status::Queued,
                true,
            ),
            (
                json!({"eventType": "SomethingNew", "somethingNew": {}}),
                Status::Queued,
                true,
            ),
            (
                json!({"notificationType": "Received", "receipt": {}}),
                Status::Queued,
                true,
            ),
        ];
        for (mut doc, status, informational) in cases {
            doc["mail"] = mail();
            let evs = events(&doc);
            assert!(!evs.is_empty(), "{doc}");
            for e in &evs {
                let s = status_of(e);
                assert_eq!(
                    (s.status, s.informational),
                    (status, informational),
                    "{doc}"
                );
                assert_eq!(e.raw, doc);
                assert_eq!(e.vendor_ack_id.as_deref(), Some("ses-msg-1"));
                assert_eq!(e.vendor_name, "ses");
                assert_eq!(e.channel, Channel::Email);
            }
        }
    }

    #[test]
    fn one_event_per_recipient_with_errors() {
        let doc = json!({
            "eventType": "Bounce",
            "mail": mail(),
            "bounce": {
                "bounceType": "Permanent", "bounceSubType": "General",
                "timestamp": "2024-05-06T07:09:00.250Z",
                "bouncedRecipients": [
                    {"emailAddress": "a@example.com", "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown"},
                    {"emailAddress": "b@example.com", "diagnosticCode": "smtp; 550 no such user"},
                    {"emailAddress": "c@example.com"}
                ]
            }
        });
        let evs = events(&doc);
        assert_eq!(evs.len(), 3);
        let errors: Vec<_> = evs.iter().map(|e| status_of(e).error.clone()).collect();
        assert_eq!(
            errors,
            vec![
                ErrorInfo::from_parts(
                    Some("5.1.1".into()),
                    Some("smtp; 550 5.1.1 user unknown".into())
                ),
                ErrorInfo::from_parts(
                    Some("smtp; 550 no such user".into()),
                    Some("Permanent/General".into())
                ),
                ErrorInfo::from_parts(None, Some("Permanent/General".into())),
            ]
        );
        assert!(
            evs.iter()
                .all(|e| status_of(e).timestamp_ms == 1_714_979_340_250)
        );
        assert_eq!(status_of(&evs[0]).timestamp_ms, 1_714_979_340_250);
        let keys: std::collections::BTreeSet<_> =
            evs.iter().map(|e| e.idempotency_key.clone()).collect();
        assert_eq!(keys.len(), 3);
        assert_eq!(
            evs[0].idempotency_key,
            idempotency_key("ses", &["sns-1", "a@example.com"])
        );
        // SNS retries reuse the MessageId: same keys.
        let again = normalize(&envelope(&doc, "sns-1"), &CTX)
            .expect("ok")
            .events;
        assert_eq!(again[2].idempotency_key, evs[2].idempotency_key);

        let reject = events(
            &json!({"eventType": "Reject", "mail": mail(), "reject": {"reason": "Bad content"}}),
        );
        assert_eq!(reject.len(), 2);
        assert_eq!(
            status_of(&reject[1]).error,
            ErrorInfo::from_parts(None, Some("Bad content".into()))
        );
        assert_eq!(reject[1].channel_value, "b@example.com");
        // No event timestamp: mail.timestamp.
        assert_eq!(status_of(&reject[0]).timestamp_ms, 1_714_979_289_100);
        let failure = events(
            &json!({"eventType": "Rendering Failure", "mail": mail(), "failure": {"errorMessage": "boom"}}),
        );
        assert_eq!(
            status_of(&failure[0])
                .error
                .as_ref()
                .and_then(|e| e.message.as_deref()),
            Some("boom")
        );
        let delivered = events(
            &json!({"eventType": "Delivery", "mail": mail(), "delivery": {"recipients": ["a@example.com"]}}),
        );
        assert_eq!(delivered.len(), 1);
        assert_eq!(status_of(&delivered[0]).error, None);
    }

    #[test]
    fn correlation_comes_from_mail_tags() {
        let evs = events(&json!({"eventType": "Send", "mail": mail(), "send": {}}));
        let c = &evs[0].correlation;
        assert_eq!(c["distinct_id"], json!("user-1"));
        assert_eq!(c["multi"], json!(["x", "y"]));
        assert_eq!(c["empty"], json!([]));
        let no_tags =
            events(&json!({"eventType": "Send", "mail": {"destination": ["a@example.com"]}}));
        assert!(no_tags[0].correlation.is_empty());
        assert_eq!(no_tags[0].vendor_ack_id, None);
        assert_eq!(status_of(&no_tags[0]).timestamp_ms, CTX.received_at_ms);
    }

    #[test]
    fn non_ascii_survives() {
        let doc = json!({
            "eventType": "Delivery",
            "mail": {"messageId": "m", "destination": ["józef@exämple.com"], "tags": {"campaña": ["naïve ✓"]}},
            "delivery": {"recipients": ["józef@exämple.com"], "timestamp": "2024-01-01T00:00:00Z"}
        });
        let evs = events(&doc);
        assert_eq!(evs[0].channel_value, "józef@exämple.com");
        assert_eq!(evs[0].correlation["campaña"], json!("naïve ✓"));
    }

    #[test]
    fn raw_message_delivery_normalizes() {
        let doc = json!({"eventType": "Open", "mail": mail(), "open": {"timestamp": "2024-05-06T08:00:00Z"}});
        let mut req = CallbackRequest::post(doc.to_string());
        req.headers
            .insert(RAW_DELIVERY_HEADER, http::HeaderValue::from_static("true"));
        req.headers.insert(
            "x-amz-sns-message-id",
            http::HeaderValue::from_static("sns-raw"),
        );
        let evs = normalize(&req, &CTX).expect("ok").events;
        assert_eq!(evs.len(), 2);
        assert_eq!(
            evs[0].idempotency_key,
            idempotency_key("ses", &["sns-raw", "a@example.com"])
        );
        assert_eq!(status_of(&evs[0]).status, Status::Seen);
        assert_eq!(status_of(&evs[0]).timestamp_ms, 1_714_982_400_000);
        assert_eq!(evs[0].raw, doc);
        // Without the header (or its message id) the document is still recognised.
        let evs2 = normalize(&sns(&doc.to_string()), &CTX).expect("ok").events;
        assert_eq!(evs2.len(), 2);
        assert_ne!(evs2[0].idempotency_key, evs[0].idempotency_key);
        assert_eq!(
            evs2[0].idempotency_key,
            normalize(&sns(&doc.to_string()), &CTX).expect("ok").events[0].idempotency_key
        );
        // A raw body that is not an SES document.
        let mut bad = CallbackRequest::post("{\"hello\": 1}");
        bad.headers
            .insert(RAW_DELIVERY_HEADER, http::HeaderValue::from_static("true"));
        assert!(normalize(&bad, &CTX).is_err());
    }

    #[test]
    fn ses_subscription_succeeded_notice_has_no_events() {
        let doc = json!({"notificationType": "AmazonSnsSubscriptionSucceeded", "message": "You have successfully subscribed"});
        assert!(events(&doc).is_empty());
    }
}
