//! Built-in providers and the generic provider.
//!
//! Every provider module has the same two entry points:
//!
//! - `Verifier::from_settings(&VerifySettings)` then `Verifier::verify(&request, &options)`:
//!   checks the callback is genuine, on the raw bytes, in constant time;
//! - `normalize(&request, &context)`: turns one callback into 0..n [`Event`]s and, for
//!   handshakes, a [`Control`] message.
//!
//! [`Provider`] and [`Verifier`] dispatch to the modules by provider id.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::{CallbackRequest, Event, NormalizeError, Secret, VerifyConfigError, VerifyError};

pub mod generic;
pub mod gupshup;
pub mod mailgun;
pub mod meta_whatsapp;
pub mod plivo;
pub mod postmark;
pub mod sendgrid;
pub mod ses;
mod signed_form;
pub mod twilio;
pub mod vonage;
mod whatsapp_cloud;

/// What a normalizer needs besides the request.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// When the callback was received, epoch milliseconds. Used as the event time when a
    /// provider sends none (Twilio status callbacks).
    pub received_at_ms: i64,
}

/// A provider message that is not an event: a subscription handshake to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Control {
    /// Amazon SNS asks to confirm a subscription by fetching `subscribe_url`.
    SnsSubscriptionConfirmation {
        /// Topic.
        topic_arn: String,
        /// URL to fetch to confirm.
        subscribe_url: String,
        /// Confirmation token.
        token: String,
    },
    /// Amazon SNS reports that a subscription was removed.
    SnsUnsubscribeConfirmation {
        /// Topic.
        topic_arn: String,
        /// URL to fetch to subscribe again.
        subscribe_url: String,
    },
    /// Meta asks to verify the webhook: answer `challenge` with 200 when `verify_token`
    /// matches the configured one.
    MetaChallenge {
        /// `hub.challenge`, to echo as the response body.
        challenge: String,
        /// `hub.verify_token` as sent.
        verify_token: String,
    },
    /// A well-formed callback that carries no event for this provider (for example an SNS
    /// notification from another publisher on the topic). Answered 2xx, counted, not
    /// delivered.
    Ignored {
        /// Why it carries no event.
        reason: String,
    },
}

impl Control {
    /// A one-line description (for logs and the CLI).
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Control::SnsSubscriptionConfirmation {
                topic_arn,
                subscribe_url,
                ..
            } => format!(
                "sns SubscriptionConfirmation topic={topic_arn} subscribe_url={subscribe_url}"
            ),
            Control::SnsUnsubscribeConfirmation { topic_arn, .. } => {
                format!("sns UnsubscribeConfirmation topic={topic_arn}")
            }
            Control::MetaChallenge { challenge, .. } => {
                format!("meta hub.challenge={challenge}")
            }
            Control::Ignored { reason } => format!("ignored: {reason}"),
        }
    }

    /// The body of the answer when the provider expects the handshake itself answered
    /// (Meta's `hub.challenge`, echoed as `text/plain`); such a callback carries no event.
    #[must_use]
    pub fn reply(&self) -> Option<&str> {
        match self {
            Control::MetaChallenge { challenge, .. } => Some(challenge),
            Control::SnsSubscriptionConfirmation { .. }
            | Control::SnsUnsubscribeConfirmation { .. }
            | Control::Ignored { .. } => None,
        }
    }

    /// The URL to fetch to confirm a subscription (SNS `SubscribeURL`), when this is a
    /// subscription request: `Ok` once checked to be `https` on an Amazon SNS host
    /// (`sns.<region>.amazonaws.com`, or `.com.cn`), `Err` with the reason otherwise.
    /// Fetching it is the receiver's job: the core does no I/O.
    #[must_use]
    pub fn confirmation_url(&self) -> Option<Result<&str, String>> {
        match self {
            Control::SnsSubscriptionConfirmation { subscribe_url, .. } => {
                Some(checked_sns_url(subscribe_url).map(|()| subscribe_url.as_str()))
            }
            Control::SnsUnsubscribeConfirmation { .. }
            | Control::MetaChallenge { .. }
            | Control::Ignored { .. } => None,
        }
    }
}

fn checked_sns_url(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| format!("SubscribeURL: {e}"))?;
    let host = url.host_str().unwrap_or_default();
    let allowed = url.scheme() == "https"
        && url.username().is_empty()
        && url.port().is_none()
        && host.starts_with("sns.")
        && (host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn"));
    if allowed {
        Ok(())
    } else {
        Err(format!(
            "SubscribeURL host {host:?} is not an Amazon SNS host"
        ))
    }
}

/// The body of the 2xx answer to an accepted callback, as its provider expects it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledgement {
    /// `Content-Type` of the answer.
    pub content_type: &'static str,
    /// The answer.
    pub body: String,
}

/// The result of normalizing one callback.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Normalized {
    /// Events, in the order the provider listed them.
    pub events: Vec<Event>,
    /// A handshake to answer, if this callback was one.
    pub control: Option<Control>,
}

impl Normalized {
    /// Events only.
    #[must_use]
    pub fn events(events: Vec<Event>) -> Self {
        Self {
            events,
            control: None,
        }
    }

    /// A control message only.
    #[must_use]
    pub fn control(control: Control) -> Self {
        Self {
            events: Vec::new(),
            control: Some(control),
        }
    }
}

/// Options of a signature check.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyOptions {
    /// The current time in epoch seconds. `None` applies no clock-based check (timestamp
    /// age, certificate validity): for recorded requests.
    pub now_secs: Option<i64>,
    /// Maximum accepted age or skew of a signed timestamp, in seconds (default 300).
    pub tolerance_secs: Option<i64>,
}

impl VerifyOptions {
    /// Tolerance of signed timestamps, default 5 minutes.
    #[must_use]
    pub fn tolerance(&self) -> i64 {
        self.tolerance_secs.unwrap_or(300)
    }

    /// Checks a signed timestamp (epoch seconds) against `now_secs`, if a clock is given.
    pub fn check_timestamp(&self, ts_secs: i64) -> Result<(), VerifyError> {
        if let Some(now) = self.now_secs {
            let skew = (now - ts_secs).abs();
            if skew > self.tolerance() {
                return Err(VerifyError::Stale(format!(
                    "{skew}s from now, tolerance {}s",
                    self.tolerance()
                )));
            }
        }
        Ok(())
    }
}

/// The `verify:` block of a route: key → value, the same names in YAML and on the CLI.
#[derive(Debug, Clone, Default)]
pub struct VerifySettings {
    entries: BTreeMap<String, Secret>,
}

impl VerifySettings {
    /// Empty settings.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a key.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Secret>) -> Self {
        self.insert(key, value);
        self
    }

    /// Adds or replaces a key.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Secret>) {
        self.entries.insert(key.into(), value.into());
    }

    /// A non-empty value.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Secret> {
        self.entries.get(key).filter(|s| !s.is_empty())
    }

    /// A required non-empty value.
    pub fn require(
        &self,
        provider: &'static str,
        key: &'static str,
    ) -> Result<&Secret, VerifyConfigError> {
        self.get(key)
            .ok_or(VerifyConfigError::Missing { provider, key })
    }

    /// True when no key is set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Rejects keys outside `known`.
    pub fn only(
        &self,
        provider: &'static str,
        known: &'static [&'static str],
    ) -> Result<(), VerifyConfigError> {
        for k in self.entries.keys() {
            if !known.contains(&k.as_str()) {
                return Err(VerifyConfigError::Unknown {
                    provider,
                    key: k.clone(),
                    known: known.join(", "),
                });
            }
        }
        Ok(())
    }
}

/// A provider: one of the built-in ones, or a generic provider defined by data.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Provider {
    /// SendGrid Event Webhook.
    Sendgrid,
    /// Mailgun webhooks.
    Mailgun,
    /// Amazon SES notifications delivered by Amazon SNS.
    Ses,
    /// Postmark webhooks.
    Postmark,
    /// Twilio Programmable Messaging (SMS and WhatsApp).
    Twilio,
    /// Vonage SMS API and Messages API.
    Vonage,
    /// Plivo messaging.
    Plivo,
    /// Meta WhatsApp Cloud API.
    MetaWhatsapp,
    /// Gupshup (WhatsApp and email).
    Gupshup,
    /// A provider described by a field mapping.
    Generic(Arc<generic::Spec>),
}

impl Provider {
    /// Ids of the built-in providers.
    pub const BUILTIN: &'static [&'static str] = &[
        "sendgrid",
        "mailgun",
        "ses",
        "postmark",
        "twilio",
        "vonage",
        "plivo",
        "meta_whatsapp",
        "gupshup",
    ];

    /// A built-in provider by id.
    #[must_use]
    pub fn builtin(id: &str) -> Option<Provider> {
        Some(match id {
            "sendgrid" => Provider::Sendgrid,
            "mailgun" => Provider::Mailgun,
            "ses" => Provider::Ses,
            "postmark" => Provider::Postmark,
            "twilio" => Provider::Twilio,
            "vonage" => Provider::Vonage,
            "plivo" => Provider::Plivo,
            "meta_whatsapp" => Provider::MetaWhatsapp,
            "gupshup" => Provider::Gupshup,
            _ => return None,
        })
    }

    /// The provider id (`vendor_name` of its events).
    #[must_use]
    pub fn id(&self) -> &str {
        match self {
            Provider::Sendgrid => "sendgrid",
            Provider::Mailgun => "mailgun",
            Provider::Ses => "ses",
            Provider::Postmark => "postmark",
            Provider::Twilio => "twilio",
            Provider::Vonage => "vonage",
            Provider::Plivo => "plivo",
            Provider::MetaWhatsapp => "meta_whatsapp",
            Provider::Gupshup => "gupshup",
            Provider::Generic(spec) => &spec.name,
        }
    }

    /// The answer to an accepted callback that carried `accepted` events, written as
    /// `enqueued` deliveries. Twilio reads the answer as TwiML, so it gets an empty
    /// `<Response/>` (no reply message is sent); every other provider gets
    /// `{"accepted":N,"enqueued":M}`.
    ///
    /// ```
    /// use hookrelay_core::Provider;
    ///
    /// assert_eq!(Provider::Sendgrid.acknowledgement(2, 3).body, r#"{"accepted":2,"enqueued":3}"#);
    /// assert_eq!(Provider::Twilio.acknowledgement(1, 1).content_type, "text/xml");
    /// ```
    #[must_use]
    pub fn acknowledgement(&self, accepted: usize, enqueued: usize) -> Acknowledgement {
        match self {
            // TwiML with no verb: Twilio sends no reply to an inbound message.
            Provider::Twilio => Acknowledgement {
                content_type: "text/xml",
                body: r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#.to_owned(),
            },
            _ => Acknowledgement {
                content_type: "application/json",
                body: format!("{{\"accepted\":{accepted},\"enqueued\":{enqueued}}}"),
            },
        }
    }

    /// The one-time token the provider's signature covers instead of the event (Mailgun
    /// signs a timestamp and a token, not the body): a receiver must refuse a token it has
    /// already accepted, or a captured signature could carry any body. `None` for
    /// providers whose signature covers the body.
    #[must_use]
    pub fn replay_token(&self, req: &CallbackRequest) -> Option<String> {
        match self {
            Provider::Mailgun => mailgun::token(req),
            _ => None,
        }
    }

    /// Normalizes one callback into events (and a control message for handshakes).
    pub fn normalize(
        &self,
        req: &CallbackRequest,
        ctx: &Context,
    ) -> Result<Normalized, NormalizeError> {
        match self {
            Provider::Sendgrid => sendgrid::normalize(req, ctx),
            Provider::Mailgun => mailgun::normalize(req, ctx),
            Provider::Ses => ses::normalize(req, ctx),
            Provider::Postmark => postmark::normalize(req, ctx),
            Provider::Twilio => twilio::normalize(req, ctx),
            Provider::Vonage => vonage::normalize(req, ctx),
            Provider::Plivo => plivo::normalize(req, ctx),
            Provider::MetaWhatsapp => meta_whatsapp::normalize(req, ctx),
            Provider::Gupshup => gupshup::normalize(req, ctx),
            Provider::Generic(spec) => spec.normalize(req, ctx),
        }
    }
}

/// A configured signature check for one provider.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Verifier {
    /// SendGrid ECDSA.
    Sendgrid(sendgrid::Verifier),
    /// Mailgun HMAC.
    Mailgun(mailgun::Verifier),
    /// SNS message signature.
    Ses(ses::Verifier),
    /// Postmark basic auth or secret header.
    Postmark(postmark::Verifier),
    /// Twilio `X-Twilio-Signature`.
    Twilio(twilio::Verifier),
    /// Vonage `sig` or JWT.
    Vonage(vonage::Verifier),
    /// Plivo V3 signature.
    Plivo(plivo::Verifier),
    /// Meta `X-Hub-Signature-256`.
    MetaWhatsapp(meta_whatsapp::Verifier),
    /// Gupshup shared token.
    Gupshup(gupshup::Verifier),
    /// Generic HMAC.
    Generic(generic::Verifier),
}

impl Verifier {
    /// Builds the verifier of `provider` from its `verify:` settings. A missing or empty
    /// secret is an error: verification never silently passes.
    pub fn new(
        provider: &Provider,
        settings: &VerifySettings,
    ) -> Result<Verifier, VerifyConfigError> {
        Ok(match provider {
            Provider::Sendgrid => Verifier::Sendgrid(sendgrid::Verifier::from_settings(settings)?),
            Provider::Mailgun => Verifier::Mailgun(mailgun::Verifier::from_settings(settings)?),
            Provider::Ses => Verifier::Ses(ses::Verifier::from_settings(settings)?),
            Provider::Postmark => Verifier::Postmark(postmark::Verifier::from_settings(settings)?),
            Provider::Twilio => Verifier::Twilio(twilio::Verifier::from_settings(settings)?),
            Provider::Vonage => Verifier::Vonage(vonage::Verifier::from_settings(settings)?),
            Provider::Plivo => Verifier::Plivo(plivo::Verifier::from_settings(settings)?),
            Provider::MetaWhatsapp => {
                Verifier::MetaWhatsapp(meta_whatsapp::Verifier::from_settings(settings)?)
            }
            Provider::Gupshup => Verifier::Gupshup(gupshup::Verifier::from_settings(settings)?),
            Provider::Generic(spec) => {
                Verifier::Generic(generic::Verifier::from_settings(spec, settings)?)
            }
        })
    }

    /// The URL of the certificate this callback must be verified with, when the verifier
    /// fetches certificates rather than holding its key (SNS with `fetch_cert`: the
    /// message's `SigningCertURL`, already checked to be an Amazon SNS host). The receiver
    /// fetches it (the core does no I/O) and calls [`Verifier::verify_with_certificate`].
    /// `Ok(None)`: call [`Verifier::verify`].
    ///
    /// # Errors
    ///
    /// [`VerifyError`] when the URL is missing or not an allowed host.
    pub fn certificate_url(&self, req: &CallbackRequest) -> Result<Option<String>, VerifyError> {
        match self {
            Verifier::Ses(v) if v.fetches_cert() => ses::signing_cert_url(req).map(Some),
            _ => Ok(None),
        }
    }

    /// Checks the callback with the certificate (PEM) fetched from
    /// [`Verifier::certificate_url`]; for a verifier that fetches none, the same as
    /// [`Verifier::verify`].
    ///
    /// # Errors
    ///
    /// [`VerifyError`] when the callback is not genuine.
    pub fn verify_with_certificate(
        &self,
        req: &CallbackRequest,
        pem: &str,
        opts: &VerifyOptions,
    ) -> Result<(), VerifyError> {
        match self {
            Verifier::Ses(v) if v.fetches_cert() => v.verify_with_cert_pem(req, pem, opts),
            v => v.verify(req, opts),
        }
    }

    /// Checks the callback is genuine.
    pub fn verify(&self, req: &CallbackRequest, opts: &VerifyOptions) -> Result<(), VerifyError> {
        match self {
            Verifier::Sendgrid(v) => v.verify(req, opts),
            Verifier::Mailgun(v) => v.verify(req, opts),
            Verifier::Ses(v) => v.verify(req, opts),
            Verifier::Postmark(v) => v.verify(req, opts),
            Verifier::Twilio(v) => v.verify(req, opts),
            Verifier::Vonage(v) => v.verify(req, opts),
            Verifier::Plivo(v) => v.verify(req, opts),
            Verifier::MetaWhatsapp(v) => v.verify(req, opts),
            Verifier::Gupshup(v) => v.verify(req, opts),
            Verifier::Generic(v) => v.verify(req, opts),
        }
    }
}

/// Small JSON accessors shared by the provider modules.
pub(crate) mod json {
    use serde_json::Value;

    /// A string field, or a number rendered as text; empty strings count as absent.
    pub(crate) fn str_at(v: &Value, pointer: &str) -> Option<String> {
        match v.pointer(pointer)? {
            Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// A field by key (not a pointer), string or number.
    pub(crate) fn str_of(v: &Value, key: &str) -> Option<String> {
        match v.get(key)? {
            Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// Strips a `whatsapp:` (or other `scheme:`) prefix from an address.
#[must_use]
pub fn strip_channel_prefix(addr: &str) -> &str {
    addr.strip_prefix("whatsapp:").unwrap_or(addr)
}

/// Returns `Value::Object` fields of `v` as a correlation map, filtered by `keep`.
pub(crate) fn object_fields(
    v: &Value,
    keep: impl Fn(&str) -> bool,
) -> serde_json::Map<String, Value> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| keep(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}
