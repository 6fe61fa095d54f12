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
//!
//! An event that cannot be normalized does not always refuse its callback: an event whose
//! JSON is beyond the [`limits`](crate::limits), and an element of a batch that its
//! normalizer refuses, is kept as [`Unparsed`] in [`Normalized::unparsed`] (see there for
//! which providers keep what). [`Provider::normalize`] checks every event it returns
//! against the limits.
//!
//! Each provider is compiled in by the cargo feature of its id (`sendgrid`, …, `generic`;
//! `providers`, the default, enables them all). A provider left out has no module, no
//! [`Provider`] or [`Verifier`] variant and no [`Control`] variant of its own, and
//! [`Provider::builtin`] does not know its id.

use std::collections::BTreeMap;
use std::fmt;
#[cfg(feature = "generic")]
use std::sync::Arc;

use crate::event::{Raw, idempotency_key};
use crate::limits::JsonLimits;
use crate::{CallbackRequest, Event, NormalizeError, Secret, VerifyConfigError, VerifyError};

#[cfg(any(
    feature = "postmark",
    feature = "infobip",
    feature = "sinch",
    feature = "sparkpost",
    feature = "mailjet",
    feature = "brevo"
))]
pub(crate) mod basic_auth;
#[cfg(feature = "brevo")]
pub mod brevo;
#[cfg(feature = "generic")]
pub mod generic;
#[cfg(feature = "gupshup")]
pub mod gupshup;
#[cfg(feature = "infobip")]
pub mod infobip;
#[cfg(feature = "mailgun")]
pub mod mailgun;
#[cfg(feature = "mailjet")]
pub mod mailjet;
#[cfg(feature = "mandrill")]
pub mod mandrill;
#[cfg(feature = "messagebird")]
pub mod messagebird;
#[cfg(feature = "meta_whatsapp")]
pub mod meta_whatsapp;
#[cfg(feature = "plivo")]
pub mod plivo;
#[cfg(feature = "postmark")]
pub mod postmark;
#[cfg(feature = "resend")]
pub mod resend;
#[cfg(feature = "sendgrid")]
pub mod sendgrid;
#[cfg(feature = "ses")]
pub mod ses;
#[cfg(any(
    feature = "twilio",
    feature = "plivo",
    feature = "messagebird",
    feature = "mandrill"
))]
mod signed_form;
#[cfg(feature = "sinch")]
pub mod sinch;
#[cfg(feature = "sparkpost")]
pub mod sparkpost;
#[cfg(feature = "telnyx")]
pub mod telnyx;
#[cfg(feature = "twilio")]
pub mod twilio;
#[cfg(feature = "vonage")]
pub mod vonage;
#[cfg(any(feature = "meta_whatsapp", feature = "gupshup"))]
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
    #[cfg(feature = "ses")]
    SnsSubscriptionConfirmation {
        /// Topic.
        topic_arn: String,
        /// URL to fetch to confirm.
        subscribe_url: String,
        /// Confirmation token.
        token: String,
    },
    /// Amazon SNS reports that a subscription was removed.
    #[cfg(feature = "ses")]
    SnsUnsubscribeConfirmation {
        /// Topic.
        topic_arn: String,
        /// URL to fetch to subscribe again.
        subscribe_url: String,
    },
    /// Meta asks to verify the webhook: answer `challenge` with 200 when `verify_token`
    /// matches the configured one.
    #[cfg(feature = "meta_whatsapp")]
    MetaChallenge {
        /// `hub.challenge`, to echo as the response body.
        challenge: String,
        /// `hub.verify_token` as sent.
        verify_token: String,
    },
    /// Provider messages that are no event: a well-formed callback that carries none (an
    /// SNS notification from another publisher on the topic), or elements of a batch that
    /// are about no message (SendGrid's account events), whose other events are delivered
    /// as usual. Answered 2xx with the rest of the callback, reported (the sidecar logs
    /// it, `hookrelay normalize` prints it), not delivered.
    Ignored {
        /// What was left out and why, on one line.
        reason: String,
    },
}

impl Control {
    /// A one-line description (for logs and the CLI).
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            #[cfg(feature = "ses")]
            Control::SnsSubscriptionConfirmation {
                topic_arn,
                subscribe_url,
                ..
            } => format!(
                "sns SubscriptionConfirmation topic={topic_arn} subscribe_url={subscribe_url}"
            ),
            #[cfg(feature = "ses")]
            Control::SnsUnsubscribeConfirmation { topic_arn, .. } => {
                format!("sns UnsubscribeConfirmation topic={topic_arn}")
            }
            #[cfg(feature = "meta_whatsapp")]
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
            #[cfg(feature = "meta_whatsapp")]
            Control::MetaChallenge { challenge, .. } => Some(challenge),
            #[cfg(feature = "ses")]
            Control::SnsSubscriptionConfirmation { .. }
            | Control::SnsUnsubscribeConfirmation { .. } => None,
            Control::Ignored { .. } => None,
        }
    }

    /// The URL to fetch to confirm a subscription (SNS `SubscribeURL`), when this is a
    /// subscription request: `Ok` once checked to be `https` on an Amazon SNS host
    /// (`sns.<region>.amazonaws.com`, or `.com.cn`), `Err` with the reason otherwise.
    /// Fetching it is the receiver's job: the core does no I/O.
    #[must_use]
    pub fn confirmation_url(&self) -> Option<Result<&str, String>> {
        match self {
            #[cfg(feature = "ses")]
            Control::SnsSubscriptionConfirmation { subscribe_url, .. } => {
                Some(checked_sns_url(subscribe_url).map(|()| subscribe_url.as_str()))
            }
            #[cfg(feature = "ses")]
            Control::SnsUnsubscribeConfirmation { .. } => None,
            #[cfg(feature = "meta_whatsapp")]
            Control::MetaChallenge { .. } => None,
            Control::Ignored { .. } => None,
        }
    }
}

#[cfg(feature = "ses")]
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
    /// A handshake to answer, if this callback was one; or what the callback holds that
    /// is no event ([`Control::Ignored`]).
    pub control: Option<Control>,
    /// The provider's events that could not be normalized, kept as they came, in the
    /// order they were found:
    ///
    /// - an event whose JSON is beyond the [`limits`](crate::limits): SendGrid and Meta
    ///   WhatsApp keep just that event (their batches are split as JSON text first), every
    ///   other provider keeps its whole body (a body that is JSON but not the provider's
    ///   top-level object, or array for SendGrid, Gupshup and generic batches, is still a
    ///   [`NormalizeError`]);
    /// - an element of a batch that its normalizer refuses (a missing field, a value of the
    ///   wrong type, not an object): a SendGrid array element, a Meta (or Gupshup v3)
    ///   `statuses[]` or `messages[]` item, an element of a generic provider's `events`.
    ///   A provider that posts one event per callback refuses the callback instead, as
    ///   before.
    pub unparsed: Vec<Unparsed>,
}

impl Normalized {
    /// Events only.
    #[must_use]
    pub fn events(events: Vec<Event>) -> Self {
        Self {
            events,
            ..Self::default()
        }
    }

    /// A control message only.
    #[must_use]
    pub fn control(control: Control) -> Self {
        Self {
            control: Some(control),
            ..Self::default()
        }
    }

    /// One unparsed event only (for a provider whose body is one event: the whole body).
    #[must_use]
    pub fn one_unparsed(unparsed: Unparsed) -> Self {
        Self {
            unparsed: vec![unparsed],
            ..Self::default()
        }
    }

    /// Moves every event whose JSON is beyond `limits` (its `raw`, or a correlation id,
    /// which providers may parse from a JSON text of their own: Mailgun's
    /// `X-Mailgun-Variables`) to [`Normalized::unparsed`], with its raw text (once per
    /// distinct raw: SES emits one event per recipient of one document).
    /// Each keeps `body`, the callback's whole body, to normalize again on a replay (its
    /// other events are then duplicates), when that body is text.
    fn hold_to(&mut self, limits: &JsonLimits, body: &[u8]) {
        if self.events.iter().all(|e| beyond(limits, e).is_none()) {
            return;
        }
        let whole = std::str::from_utf8(body).ok();
        for event in std::mem::take(&mut self.events) {
            let Some(reason) = beyond(limits, &event) else {
                self.events.push(event);
                continue;
            };
            let raw = match &event.raw {
                Raw::Text(text) => text.get().to_owned(),
                Raw::Value(value) => value.to_string(),
            };
            if !self.unparsed.iter().any(|u| u.raw == raw) {
                let held = Unparsed::new(reason, raw);
                self.unparsed.push(match whole {
                    Some(whole) => held.with_body(whole.to_owned()),
                    None => held,
                });
            }
        }
    }
}

/// Why `event` is beyond `limits`, if it is.
fn beyond(limits: &JsonLimits, event: &Event) -> Option<String> {
    let raw = match &event.raw {
        Raw::Text(text) => limits.check(text.get().as_bytes()),
        Raw::Value(value) => limits.check_value(value),
    };
    if let Err(e) = raw {
        return Some(e.to_string());
    }
    event.correlation.iter().find_map(|(name, value)| {
        let e = limits.check_value(value).err()?;
        Some(format!("correlation id {name}: {e}"))
    })
}

/// Longest [`Unparsed::reason`], in bytes.
pub const MAX_UNPARSED_REASON: usize = 200;

/// A provider event that could not be normalized, kept as it came: nothing a provider was
/// answered 2xx for is dropped (see [`Normalized::unparsed`] for when an event is kept
/// this way).
///
/// ```
/// use hookrelay_core::Unparsed;
///
/// let u = Unparsed::new("missing field\n/0/email", r#"{"event":"delivered"}"#);
/// assert_eq!(u.reason, "missing field /0/email");
/// // The same event, sent again, has the same key.
/// let again = Unparsed::new("other words", r#"{"event":"delivered"}"#);
/// assert_eq!(u.idempotency_key("sendgrid"), again.idempotency_key("sendgrid"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unparsed {
    /// Why it was not normalized: one line, at most [`MAX_UNPARSED_REASON`] bytes.
    pub reason: String,
    /// The event's JSON text as the provider sent it (a batch element), or the whole body
    /// for a provider that posts one event per callback. Never parsed again by hookrelay:
    /// it may be beyond the limits.
    pub raw: String,
    /// A body of the provider's format holding this event alone, to run it through the
    /// normalizer again later (after an upgrade, or a changed generic mapping); `None` when
    /// `raw` is such a body already (a provider that posts one event per callback), or
    /// when the provider cannot make one.
    pub body: Option<String>,
}

impl Unparsed {
    /// An unparsed event: `reason` made one line (control characters become spaces) and
    /// cut to [`MAX_UNPARSED_REASON`] bytes at a character boundary.
    #[must_use]
    pub fn new(reason: impl fmt::Display, raw: impl Into<String>) -> Self {
        Self {
            reason: one_line(&reason.to_string(), MAX_UNPARSED_REASON),
            raw: raw.into(),
            body: None,
        }
    }

    /// The same, with `body`: the event alone in the provider's envelope (see
    /// [`Unparsed::body`]).
    #[must_use]
    pub fn with_body(mut self, body: String) -> Self {
        self.body = Some(body);
        self
    }

    /// What to normalize again: [`Unparsed::body`], else the raw event.
    #[must_use]
    pub fn replay_body(&self) -> &str {
        self.body.as_deref().unwrap_or(&self.raw)
    }

    /// A stable id of this event for `vendor`, derived from its raw text (`evt_` and 32
    /// hex digits, as [`Event::idempotency_key`]): a provider's retry of the same event
    /// has the same key, and it never equals a normalized event's key.
    #[must_use]
    pub fn idempotency_key(&self, vendor: &str) -> String {
        idempotency_key(vendor, &["unparsed", &self.raw])
    }
}

/// One element of a batch, as its JSON text: checked against the default
/// [`JsonLimits`], parsed, then normalized by `each`; a failure of any step as its
/// reason, and the element is then kept as [`Unparsed`] while the rest of the batch goes on.
#[cfg(any(
    feature = "sendgrid",
    feature = "brevo",
    feature = "infobip",
    feature = "mailjet",
    feature = "mandrill",
    feature = "sparkpost"
))]
pub(crate) fn batch_element<D: serde::de::DeserializeOwned, T>(
    text: &str,
    each: impl FnOnce(D) -> Result<T, NormalizeError>,
) -> Result<T, String> {
    JsonLimits::default()
        .check(text.as_bytes())
        .map_err(|e| e.to_string())?;
    let item = serde_json::from_str(text).map_err(|e| e.to_string())?;
    each(item).map_err(|e| e.to_string())
}

/// How many events a [`Control::Ignored`] reason names before `and N more`.
#[cfg(any(
    feature = "sendgrid",
    feature = "brevo",
    feature = "mandrill",
    feature = "sparkpost"
))]
const NAMED_IGNORED: usize = 5;

/// The two parts of a [`Control::Ignored`] reason that names the events a batch left out:
/// their count (`1 Brevo event`, `3 Brevo events`, from `kind` in the singular) and the
/// first few of `names` (`a; b; c; d; e and 2 more`).
#[cfg(any(
    feature = "sendgrid",
    feature = "brevo",
    feature = "mandrill",
    feature = "sparkpost"
))]
pub(crate) fn ignored_events(names: &[String], kind: &str) -> (String, String) {
    let mut listed = names
        .iter()
        .take(NAMED_IGNORED)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("; ");
    let more = names.len().saturating_sub(NAMED_IGNORED);
    if more > 0 {
        listed.push_str(&format!(" and {more} more"));
    }
    let count = match names.len() {
        1 => format!("1 {kind}"),
        n => format!("{n} {kind}s"),
    };
    (count, listed)
}

/// `text` on one line (control characters as spaces), at most `max` bytes, cut at a
/// character boundary with `…` when it was longer: for reasons that may quote what a
/// sender sent, written to logs and answers.
///
/// ```
/// use hookrelay_core::provider::one_line;
///
/// assert_eq!(one_line("bad key\n\"kkkkkk\"", 12), "bad key \"…");
/// assert_eq!(one_line("short", 12), "short");
/// ```
#[must_use]
pub fn one_line(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > max {
            while out.len() + '…'.len_utf8() > max {
                out.pop();
            }
            out.push('…');
            break;
        }
        out.push(c);
    }
    out
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
    #[cfg(feature = "sendgrid")]
    Sendgrid,
    /// Mailgun webhooks.
    #[cfg(feature = "mailgun")]
    Mailgun,
    /// Amazon SES notifications delivered by Amazon SNS.
    #[cfg(feature = "ses")]
    Ses,
    /// Postmark webhooks.
    #[cfg(feature = "postmark")]
    Postmark,
    /// Twilio Programmable Messaging (SMS and WhatsApp).
    #[cfg(feature = "twilio")]
    Twilio,
    /// Vonage SMS API and Messages API.
    #[cfg(feature = "vonage")]
    Vonage,
    /// Plivo messaging.
    #[cfg(feature = "plivo")]
    Plivo,
    /// Meta WhatsApp Cloud API.
    #[cfg(feature = "meta_whatsapp")]
    MetaWhatsapp,
    /// Gupshup (WhatsApp and email).
    #[cfg(feature = "gupshup")]
    Gupshup,
    /// Infobip (SMS, WhatsApp and email reports, inbound messages).
    #[cfg(feature = "infobip")]
    Infobip,
    /// Sinch SMS API and Conversation API.
    #[cfg(feature = "sinch")]
    Sinch,
    /// Telnyx messaging webhooks.
    #[cfg(feature = "telnyx")]
    Telnyx,
    /// MessageBird (Bird) SMS status reports, inbound SMS and Conversations API events.
    #[cfg(feature = "messagebird")]
    Messagebird,
    /// SparkPost event webhooks and relay (inbound) webhooks.
    #[cfg(feature = "sparkpost")]
    Sparkpost,
    /// Mandrill (Mailchimp Transactional) webhooks.
    #[cfg(feature = "mandrill")]
    Mandrill,
    /// Mailjet event webhooks and Parse API inbound email.
    #[cfg(feature = "mailjet")]
    Mailjet,
    /// Brevo transactional email and SMS webhooks, inbound parsing.
    #[cfg(feature = "brevo")]
    Brevo,
    /// Resend webhooks (Standard Webhooks signatures).
    #[cfg(feature = "resend")]
    Resend,
    /// A provider described by a field mapping.
    #[cfg(feature = "generic")]
    Generic(Arc<generic::Spec>),
}

impl Provider {
    /// Ids of the built-in providers compiled in (each has a cargo feature of its name).
    pub const BUILTIN: &'static [&'static str] = &[
        #[cfg(feature = "sendgrid")]
        "sendgrid",
        #[cfg(feature = "mailgun")]
        "mailgun",
        #[cfg(feature = "ses")]
        "ses",
        #[cfg(feature = "postmark")]
        "postmark",
        #[cfg(feature = "twilio")]
        "twilio",
        #[cfg(feature = "vonage")]
        "vonage",
        #[cfg(feature = "plivo")]
        "plivo",
        #[cfg(feature = "meta_whatsapp")]
        "meta_whatsapp",
        #[cfg(feature = "gupshup")]
        "gupshup",
        #[cfg(feature = "infobip")]
        "infobip",
        #[cfg(feature = "sinch")]
        "sinch",
        #[cfg(feature = "telnyx")]
        "telnyx",
        #[cfg(feature = "messagebird")]
        "messagebird",
        #[cfg(feature = "sparkpost")]
        "sparkpost",
        #[cfg(feature = "mandrill")]
        "mandrill",
        #[cfg(feature = "mailjet")]
        "mailjet",
        #[cfg(feature = "brevo")]
        "brevo",
        #[cfg(feature = "resend")]
        "resend",
    ];

    /// A built-in provider by id; `None` for an unknown id or a provider whose feature is
    /// not enabled.
    #[must_use]
    pub fn builtin(id: &str) -> Option<Provider> {
        match id {
            #[cfg(feature = "sendgrid")]
            "sendgrid" => Some(Provider::Sendgrid),
            #[cfg(feature = "mailgun")]
            "mailgun" => Some(Provider::Mailgun),
            #[cfg(feature = "ses")]
            "ses" => Some(Provider::Ses),
            #[cfg(feature = "postmark")]
            "postmark" => Some(Provider::Postmark),
            #[cfg(feature = "twilio")]
            "twilio" => Some(Provider::Twilio),
            #[cfg(feature = "vonage")]
            "vonage" => Some(Provider::Vonage),
            #[cfg(feature = "plivo")]
            "plivo" => Some(Provider::Plivo),
            #[cfg(feature = "meta_whatsapp")]
            "meta_whatsapp" => Some(Provider::MetaWhatsapp),
            #[cfg(feature = "gupshup")]
            "gupshup" => Some(Provider::Gupshup),
            #[cfg(feature = "infobip")]
            "infobip" => Some(Provider::Infobip),
            #[cfg(feature = "sinch")]
            "sinch" => Some(Provider::Sinch),
            #[cfg(feature = "telnyx")]
            "telnyx" => Some(Provider::Telnyx),
            #[cfg(feature = "messagebird")]
            "messagebird" => Some(Provider::Messagebird),
            #[cfg(feature = "sparkpost")]
            "sparkpost" => Some(Provider::Sparkpost),
            #[cfg(feature = "mandrill")]
            "mandrill" => Some(Provider::Mandrill),
            #[cfg(feature = "mailjet")]
            "mailjet" => Some(Provider::Mailjet),
            #[cfg(feature = "brevo")]
            "brevo" => Some(Provider::Brevo),
            #[cfg(feature = "resend")]
            "resend" => Some(Provider::Resend),
            _ => None,
        }
    }

    /// The provider id (`vendor_name` of its events).
    #[must_use]
    pub fn id(&self) -> &str {
        match *self {
            #[cfg(feature = "sendgrid")]
            Provider::Sendgrid => "sendgrid",
            #[cfg(feature = "mailgun")]
            Provider::Mailgun => "mailgun",
            #[cfg(feature = "ses")]
            Provider::Ses => "ses",
            #[cfg(feature = "postmark")]
            Provider::Postmark => "postmark",
            #[cfg(feature = "twilio")]
            Provider::Twilio => "twilio",
            #[cfg(feature = "vonage")]
            Provider::Vonage => "vonage",
            #[cfg(feature = "plivo")]
            Provider::Plivo => "plivo",
            #[cfg(feature = "meta_whatsapp")]
            Provider::MetaWhatsapp => "meta_whatsapp",
            #[cfg(feature = "gupshup")]
            Provider::Gupshup => "gupshup",
            #[cfg(feature = "infobip")]
            Provider::Infobip => "infobip",
            #[cfg(feature = "sinch")]
            Provider::Sinch => "sinch",
            #[cfg(feature = "telnyx")]
            Provider::Telnyx => "telnyx",
            #[cfg(feature = "messagebird")]
            Provider::Messagebird => "messagebird",
            #[cfg(feature = "sparkpost")]
            Provider::Sparkpost => "sparkpost",
            #[cfg(feature = "mandrill")]
            Provider::Mandrill => "mandrill",
            #[cfg(feature = "mailjet")]
            Provider::Mailjet => "mailjet",
            #[cfg(feature = "brevo")]
            Provider::Brevo => "brevo",
            #[cfg(feature = "resend")]
            Provider::Resend => "resend",
            #[cfg(feature = "generic")]
            Provider::Generic(ref spec) => &spec.name,
        }
    }

    /// The answer to an accepted callback that carried `accepted` events, written as
    /// `enqueued` deliveries. Twilio reads the answer as TwiML, so it gets an empty
    /// `<Response/>` (no reply message is sent); every other provider gets
    /// `{"accepted":N,"enqueued":M}`.
    ///
    /// ```
    /// # #[cfg(all(feature = "sendgrid", feature = "twilio"))] {
    /// use hookrelay_core::Provider;
    ///
    /// assert_eq!(Provider::Sendgrid.acknowledgement(2, 3).body, r#"{"accepted":2,"enqueued":3}"#);
    /// assert_eq!(Provider::Twilio.acknowledgement(1, 1).content_type, "text/xml");
    /// # }
    /// ```
    #[must_use]
    pub fn acknowledgement(&self, accepted: usize, enqueued: usize) -> Acknowledgement {
        match self {
            // TwiML with no verb: Twilio sends no reply to an inbound message.
            #[cfg(feature = "twilio")]
            Provider::Twilio => Acknowledgement {
                content_type: "text/xml",
                body: r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#.to_owned(),
            },
            #[allow(
                unreachable_patterns,
                reason = "Twilio may be the only provider compiled in"
            )]
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
    #[cfg_attr(
        not(feature = "mailgun"),
        expect(unused_variables, reason = "only Mailgun signs a token")
    )]
    pub fn replay_token(&self, req: &CallbackRequest) -> Option<String> {
        match self {
            #[cfg(feature = "mailgun")]
            Provider::Mailgun => mailgun::token(req),
            #[allow(
                unreachable_patterns,
                reason = "Mailgun may be the only provider compiled in"
            )]
            _ => None,
        }
    }

    /// Normalizes one callback into events (and a control message for handshakes), and
    /// keeps the events it cannot normalize as [`Normalized::unparsed`]. Every event
    /// returned is within the default [`JsonLimits`]; an event beyond them is moved to
    /// [`Normalized::unparsed`] with its raw text, whichever provider built it.
    ///
    /// # Errors
    ///
    /// [`NormalizeError`] when the callback is not the provider's format at all: not its
    /// content type or method, not JSON (or form fields) where it sends them, not its
    /// envelope, or (for a provider that posts one event per callback) an event it cannot
    /// normalize.
    pub fn normalize(
        &self,
        req: &CallbackRequest,
        ctx: &Context,
    ) -> Result<Normalized, NormalizeError> {
        let mut out = self.normalize_by_provider(req, ctx)?;
        out.hold_to(&JsonLimits::default(), &req.body);
        Ok(out)
    }

    /// The provider module's own normalizer.
    #[cfg_attr(
        not(any(
            feature = "sendgrid",
            feature = "mailgun",
            feature = "ses",
            feature = "postmark",
            feature = "twilio",
            feature = "vonage",
            feature = "plivo",
            feature = "meta_whatsapp",
            feature = "gupshup",
            feature = "infobip",
            feature = "sinch",
            feature = "telnyx",
            feature = "messagebird",
            feature = "sparkpost",
            feature = "mandrill",
            feature = "mailjet",
            feature = "brevo",
            feature = "resend",
            feature = "generic"
        )),
        expect(unused_variables, reason = "no provider is compiled in")
    )]
    fn normalize_by_provider(
        &self,
        req: &CallbackRequest,
        ctx: &Context,
    ) -> Result<Normalized, NormalizeError> {
        match *self {
            #[cfg(feature = "sendgrid")]
            Provider::Sendgrid => sendgrid::normalize(req, ctx),
            #[cfg(feature = "mailgun")]
            Provider::Mailgun => mailgun::normalize(req, ctx),
            #[cfg(feature = "ses")]
            Provider::Ses => ses::normalize(req, ctx),
            #[cfg(feature = "postmark")]
            Provider::Postmark => postmark::normalize(req, ctx),
            #[cfg(feature = "twilio")]
            Provider::Twilio => twilio::normalize(req, ctx),
            #[cfg(feature = "vonage")]
            Provider::Vonage => vonage::normalize(req, ctx),
            #[cfg(feature = "plivo")]
            Provider::Plivo => plivo::normalize(req, ctx),
            #[cfg(feature = "meta_whatsapp")]
            Provider::MetaWhatsapp => meta_whatsapp::normalize(req, ctx),
            #[cfg(feature = "gupshup")]
            Provider::Gupshup => gupshup::normalize(req, ctx),
            #[cfg(feature = "infobip")]
            Provider::Infobip => infobip::normalize(req, ctx),
            #[cfg(feature = "sinch")]
            Provider::Sinch => sinch::normalize(req, ctx),
            #[cfg(feature = "telnyx")]
            Provider::Telnyx => telnyx::normalize(req, ctx),
            #[cfg(feature = "messagebird")]
            Provider::Messagebird => messagebird::normalize(req, ctx),
            #[cfg(feature = "sparkpost")]
            Provider::Sparkpost => sparkpost::normalize(req, ctx),
            #[cfg(feature = "mandrill")]
            Provider::Mandrill => mandrill::normalize(req, ctx),
            #[cfg(feature = "mailjet")]
            Provider::Mailjet => mailjet::normalize(req, ctx),
            #[cfg(feature = "brevo")]
            Provider::Brevo => brevo::normalize(req, ctx),
            #[cfg(feature = "resend")]
            Provider::Resend => resend::normalize(req, ctx),
            #[cfg(feature = "generic")]
            Provider::Generic(ref spec) => spec.normalize(req, ctx),
        }
    }
}

/// A configured signature check for one provider.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Verifier {
    /// SendGrid ECDSA.
    #[cfg(feature = "sendgrid")]
    Sendgrid(sendgrid::Verifier),
    /// Mailgun HMAC.
    #[cfg(feature = "mailgun")]
    Mailgun(mailgun::Verifier),
    /// SNS message signature.
    #[cfg(feature = "ses")]
    Ses(ses::Verifier),
    /// Postmark basic auth or secret header.
    #[cfg(feature = "postmark")]
    Postmark(postmark::Verifier),
    /// Twilio `X-Twilio-Signature`.
    #[cfg(feature = "twilio")]
    Twilio(twilio::Verifier),
    /// Vonage `sig` or JWT.
    #[cfg(feature = "vonage")]
    Vonage(vonage::Verifier),
    /// Plivo V3 signature.
    #[cfg(feature = "plivo")]
    Plivo(plivo::Verifier),
    /// Meta `X-Hub-Signature-256`.
    #[cfg(feature = "meta_whatsapp")]
    MetaWhatsapp(meta_whatsapp::Verifier),
    /// Gupshup shared token.
    #[cfg(feature = "gupshup")]
    Gupshup(gupshup::Verifier),
    /// Infobip.
    #[cfg(feature = "infobip")]
    Infobip(infobip::Verifier),
    /// Sinch.
    #[cfg(feature = "sinch")]
    Sinch(sinch::Verifier),
    /// Telnyx.
    #[cfg(feature = "telnyx")]
    Telnyx(telnyx::Verifier),
    /// Messagebird.
    #[cfg(feature = "messagebird")]
    Messagebird(messagebird::Verifier),
    /// Sparkpost.
    #[cfg(feature = "sparkpost")]
    Sparkpost(sparkpost::Verifier),
    /// Mandrill.
    #[cfg(feature = "mandrill")]
    Mandrill(mandrill::Verifier),
    /// Mailjet.
    #[cfg(feature = "mailjet")]
    Mailjet(mailjet::Verifier),
    /// Brevo.
    #[cfg(feature = "brevo")]
    Brevo(brevo::Verifier),
    /// Resend.
    #[cfg(feature = "resend")]
    Resend(resend::Verifier),
    /// Generic HMAC.
    #[cfg(feature = "generic")]
    Generic(generic::Verifier),
}

impl Verifier {
    /// Builds the verifier of `provider` from its `verify:` settings. A missing or empty
    /// secret is an error: verification never silently passes.
    #[cfg_attr(
        not(any(
            feature = "sendgrid",
            feature = "mailgun",
            feature = "ses",
            feature = "postmark",
            feature = "twilio",
            feature = "vonage",
            feature = "plivo",
            feature = "meta_whatsapp",
            feature = "gupshup",
            feature = "infobip",
            feature = "sinch",
            feature = "telnyx",
            feature = "messagebird",
            feature = "sparkpost",
            feature = "mandrill",
            feature = "mailjet",
            feature = "brevo",
            feature = "resend",
            feature = "generic"
        )),
        expect(unused_variables, reason = "no provider is compiled in")
    )]
    pub fn new(
        provider: &Provider,
        settings: &VerifySettings,
    ) -> Result<Verifier, VerifyConfigError> {
        match *provider {
            #[cfg(feature = "sendgrid")]
            Provider::Sendgrid => {
                sendgrid::Verifier::from_settings(settings).map(Verifier::Sendgrid)
            }
            #[cfg(feature = "mailgun")]
            Provider::Mailgun => mailgun::Verifier::from_settings(settings).map(Verifier::Mailgun),
            #[cfg(feature = "ses")]
            Provider::Ses => ses::Verifier::from_settings(settings).map(Verifier::Ses),
            #[cfg(feature = "postmark")]
            Provider::Postmark => {
                postmark::Verifier::from_settings(settings).map(Verifier::Postmark)
            }
            #[cfg(feature = "twilio")]
            Provider::Twilio => twilio::Verifier::from_settings(settings).map(Verifier::Twilio),
            #[cfg(feature = "vonage")]
            Provider::Vonage => vonage::Verifier::from_settings(settings).map(Verifier::Vonage),
            #[cfg(feature = "plivo")]
            Provider::Plivo => plivo::Verifier::from_settings(settings).map(Verifier::Plivo),
            #[cfg(feature = "meta_whatsapp")]
            Provider::MetaWhatsapp => {
                meta_whatsapp::Verifier::from_settings(settings).map(Verifier::MetaWhatsapp)
            }
            #[cfg(feature = "gupshup")]
            Provider::Gupshup => gupshup::Verifier::from_settings(settings).map(Verifier::Gupshup),
            #[cfg(feature = "infobip")]
            Provider::Infobip => infobip::Verifier::from_settings(settings).map(Verifier::Infobip),
            #[cfg(feature = "sinch")]
            Provider::Sinch => sinch::Verifier::from_settings(settings).map(Verifier::Sinch),
            #[cfg(feature = "telnyx")]
            Provider::Telnyx => telnyx::Verifier::from_settings(settings).map(Verifier::Telnyx),
            #[cfg(feature = "messagebird")]
            Provider::Messagebird => {
                messagebird::Verifier::from_settings(settings).map(Verifier::Messagebird)
            }
            #[cfg(feature = "sparkpost")]
            Provider::Sparkpost => {
                sparkpost::Verifier::from_settings(settings).map(Verifier::Sparkpost)
            }
            #[cfg(feature = "mandrill")]
            Provider::Mandrill => {
                mandrill::Verifier::from_settings(settings).map(Verifier::Mandrill)
            }
            #[cfg(feature = "mailjet")]
            Provider::Mailjet => mailjet::Verifier::from_settings(settings).map(Verifier::Mailjet),
            #[cfg(feature = "brevo")]
            Provider::Brevo => brevo::Verifier::from_settings(settings).map(Verifier::Brevo),
            #[cfg(feature = "resend")]
            Provider::Resend => resend::Verifier::from_settings(settings).map(Verifier::Resend),
            #[cfg(feature = "generic")]
            Provider::Generic(ref spec) => {
                generic::Verifier::from_settings(spec, settings).map(Verifier::Generic)
            }
        }
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
    #[cfg_attr(
        not(feature = "ses"),
        expect(unused_variables, reason = "only SNS fetches certificates")
    )]
    pub fn certificate_url(&self, req: &CallbackRequest) -> Result<Option<String>, VerifyError> {
        match self {
            #[cfg(feature = "ses")]
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
    #[cfg_attr(
        not(feature = "ses"),
        expect(unused_variables, reason = "only SNS fetches certificates")
    )]
    pub fn verify_with_certificate(
        &self,
        req: &CallbackRequest,
        pem: &str,
        opts: &VerifyOptions,
    ) -> Result<(), VerifyError> {
        match self {
            #[cfg(feature = "ses")]
            Verifier::Ses(v) if v.fetches_cert() => v.verify_with_cert_pem(req, pem, opts),
            v => v.verify(req, opts),
        }
    }

    /// Checks the callback is genuine.
    #[cfg_attr(
        not(any(
            feature = "sendgrid",
            feature = "mailgun",
            feature = "ses",
            feature = "postmark",
            feature = "twilio",
            feature = "vonage",
            feature = "plivo",
            feature = "meta_whatsapp",
            feature = "gupshup",
            feature = "infobip",
            feature = "sinch",
            feature = "telnyx",
            feature = "messagebird",
            feature = "sparkpost",
            feature = "mandrill",
            feature = "mailjet",
            feature = "brevo",
            feature = "resend",
            feature = "generic"
        )),
        expect(unused_variables, reason = "no provider is compiled in")
    )]
    pub fn verify(&self, req: &CallbackRequest, opts: &VerifyOptions) -> Result<(), VerifyError> {
        match *self {
            #[cfg(feature = "sendgrid")]
            Verifier::Sendgrid(ref v) => v.verify(req, opts),
            #[cfg(feature = "mailgun")]
            Verifier::Mailgun(ref v) => v.verify(req, opts),
            #[cfg(feature = "ses")]
            Verifier::Ses(ref v) => v.verify(req, opts),
            #[cfg(feature = "postmark")]
            Verifier::Postmark(ref v) => v.verify(req, opts),
            #[cfg(feature = "twilio")]
            Verifier::Twilio(ref v) => v.verify(req, opts),
            #[cfg(feature = "vonage")]
            Verifier::Vonage(ref v) => v.verify(req, opts),
            #[cfg(feature = "plivo")]
            Verifier::Plivo(ref v) => v.verify(req, opts),
            #[cfg(feature = "meta_whatsapp")]
            Verifier::MetaWhatsapp(ref v) => v.verify(req, opts),
            #[cfg(feature = "gupshup")]
            Verifier::Gupshup(ref v) => v.verify(req, opts),
            #[cfg(feature = "infobip")]
            Verifier::Infobip(ref v) => v.verify(req, opts),
            #[cfg(feature = "sinch")]
            Verifier::Sinch(ref v) => v.verify(req, opts),
            #[cfg(feature = "telnyx")]
            Verifier::Telnyx(ref v) => v.verify(req, opts),
            #[cfg(feature = "messagebird")]
            Verifier::Messagebird(ref v) => v.verify(req, opts),
            #[cfg(feature = "sparkpost")]
            Verifier::Sparkpost(ref v) => v.verify(req, opts),
            #[cfg(feature = "mandrill")]
            Verifier::Mandrill(ref v) => v.verify(req, opts),
            #[cfg(feature = "mailjet")]
            Verifier::Mailjet(ref v) => v.verify(req, opts),
            #[cfg(feature = "brevo")]
            Verifier::Brevo(ref v) => v.verify(req, opts),
            #[cfg(feature = "resend")]
            Verifier::Resend(ref v) => v.verify(req, opts),
            #[cfg(feature = "generic")]
            Verifier::Generic(ref v) => v.verify(req, opts),
        }
    }
}

/// Small JSON accessors shared by the provider modules.
#[cfg(any(
    feature = "mailgun",
    feature = "postmark",
    feature = "sendgrid",
    feature = "vonage",
    feature = "brevo",
    feature = "resend",
    feature = "sparkpost"
))]
pub(crate) mod json {
    use serde_json::Value;

    /// A string field, or a number rendered as text; empty strings count as absent.
    #[cfg(feature = "mailgun")]
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

/// Email addresses in header values, shared by the providers that read mail headers.
#[cfg(any(feature = "mailgun", feature = "ses"))]
pub(crate) mod mail {
    /// `<id@host>` → `id@host`.
    pub(crate) fn strip_angle(s: &str) -> String {
        let s = s.trim();
        s.strip_prefix('<')
            .and_then(|s| s.strip_suffix('>'))
            .unwrap_or(s)
            .trim()
            .to_owned()
    }

    /// The first address of a header value: `John <john@example.com>, …` →
    /// `john@example.com`.
    pub(crate) fn first_address(s: &str) -> Option<String> {
        let s = s.trim();
        let addr = match (s.find('<'), s.find('>')) {
            (Some(l), Some(r)) if l < r => s.get(l + 1..r).unwrap_or(""),
            _ => s.split(',').next().unwrap_or(""),
        };
        let addr = addr.trim();
        (!addr.is_empty()).then(|| addr.to_owned())
    }
}

/// Strips a `whatsapp:` (or other `scheme:`) prefix from an address.
#[must_use]
pub fn strip_channel_prefix(addr: &str) -> &str {
    addr.strip_prefix("whatsapp:").unwrap_or(addr)
}

/// Returns `Value::Object` fields of `v` as a correlation map, filtered by `keep`.
#[cfg(feature = "sendgrid")]
pub(crate) fn object_fields(
    v: &serde_json::Value,
    keep: impl Fn(&str) -> bool,
) -> serde_json::Map<String, serde_json::Value> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| keep(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_one_bounded_line() {
        let u = Unparsed::new("a\nb\r\tc\u{0}d", "{}");
        assert_eq!(u.reason, "a b  c d");
        let long = "é".repeat(500);
        let u = Unparsed::new(&long, "{}");
        assert!(u.reason.len() <= MAX_UNPARSED_REASON, "{}", u.reason.len());
        assert!(u.reason.ends_with('…'));
        assert!(u.reason.starts_with("éé"));
        let exact = "x".repeat(MAX_UNPARSED_REASON);
        assert_eq!(Unparsed::new(&exact, "{}").reason, exact);
    }

    #[test]
    fn keys_follow_the_raw_text_and_differ_from_event_keys() {
        let a = Unparsed::new("r", r#"{"a":1}"#);
        assert_eq!(
            a.idempotency_key("sendgrid"),
            Unparsed::new("other", r#"{"a":1}"#).idempotency_key("sendgrid")
        );
        assert_ne!(
            a.idempotency_key("sendgrid"),
            Unparsed::new("r", r#"{"a":2}"#).idempotency_key("sendgrid")
        );
        assert_ne!(
            a.idempotency_key("sendgrid"),
            a.idempotency_key("meta_whatsapp")
        );
        assert_ne!(
            a.idempotency_key("sendgrid"),
            idempotency_key("sendgrid", &[r#"{"a":1}"#])
        );
    }
}
