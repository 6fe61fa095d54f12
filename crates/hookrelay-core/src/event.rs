//! The normalized event model: what every provider's callback becomes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The channel a message travelled on.
///
/// `email`, `sms` and `whatsapp` are SuprSend's own; `rcs`, `viber` and `messenger` were
/// added for providers that carry those too (Vonage's Messages API), each with its own
/// name so that a consumer filtering on a channel never gets another's messages (an RCS
/// message is not an SMS, though both go to a phone number). See `docs/DESIGN.md` §2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Email.
    Email,
    /// SMS (and MMS).
    Sms,
    /// WhatsApp.
    Whatsapp,
    /// RCS business messaging (the address is a phone number).
    Rcs,
    /// Viber business messages (the address is a phone number).
    Viber,
    /// Facebook Messenger (the address is a page-scoped user id, not a phone number).
    Messenger,
}

/// What kind of event this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// A delivery status of a message the application sent.
    Status,
    /// A message a user sent to the application.
    InboundMessage,
}

/// The status vocabulary. No other values exist; each provider maps its own onto these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Accepted by the provider, not yet handed on (also: informational events).
    Queued,
    /// Handed to the carrier or mail server.
    Sent,
    /// Delivered to the recipient.
    Delivered,
    /// Opened or read.
    Seen,
    /// A link was clicked.
    Clicked,
    /// Not delivered (rejected, dropped, undeliverable, expired).
    Failed,
    /// Bounced by the recipient's mail server.
    Bounced,
    /// Marked as spam by the recipient.
    Complained,
    /// The recipient unsubscribed.
    Unsubscribed,
}

impl Status {
    /// Every status, in vocabulary order.
    pub const ALL: [Status; 9] = [
        Status::Queued,
        Status::Sent,
        Status::Delivered,
        Status::Seen,
        Status::Clicked,
        Status::Failed,
        Status::Bounced,
        Status::Complained,
        Status::Unsubscribed,
    ];

    /// The wire name (`delivered`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Sent => "sent",
            Status::Delivered => "delivered",
            Status::Seen => "seen",
            Status::Clicked => "clicked",
            Status::Failed => "failed",
            Status::Bounced => "bounced",
            Status::Complained => "complained",
            Status::Unsubscribed => "unsubscribed",
        }
    }

    /// Progress rank used to never downgrade a message's status: a later event with a
    /// lower rank than the one already seen does not change the current status.
    /// Terminal outcomes (failed, bounced, complained, unsubscribed) rank above progress.
    #[must_use]
    pub fn rank(self) -> u8 {
        match self {
            Status::Queued => 0,
            Status::Sent => 1,
            Status::Delivered => 2,
            Status::Seen => 3,
            Status::Clicked => 4,
            Status::Failed | Status::Bounced => 5,
            Status::Complained | Status::Unsubscribed => 6,
        }
    }
}

macro_rules! wire_enum {
    ($ty:ty, $($variant:path => $name:literal),+ $(,)?) => {
        impl $ty {
            /// Every value's wire name.
            pub const NAMES: &'static [&'static str] = &[$($name),+];
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $($variant => $name),+ })
            }
        }
        impl FromStr for $ty {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s { $($name => Ok($variant),)+ _ => Err(UnknownName(s.to_owned())) }
            }
        }
    };
}

wire_enum!(Channel,
    Channel::Email => "email", Channel::Sms => "sms", Channel::Whatsapp => "whatsapp",
    Channel::Rcs => "rcs", Channel::Viber => "viber", Channel::Messenger => "messenger");
wire_enum!(EventType, EventType::Status => "status", EventType::InboundMessage => "inbound_message");
wire_enum!(Status,
    Status::Queued => "queued", Status::Sent => "sent", Status::Delivered => "delivered",
    Status::Seen => "seen", Status::Clicked => "clicked", Status::Failed => "failed",
    Status::Bounced => "bounced", Status::Complained => "complained",
    Status::Unsubscribed => "unsubscribed");

/// A name that is not part of a vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown name {0:?}")]
pub struct UnknownName(pub String);

/// A provider error attached to a failed or bounced status.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// The provider's error or SMTP code, as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// A human-readable reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ErrorInfo {
    /// An error from optional code and message; `None` when both are absent or empty.
    #[must_use]
    pub fn from_parts(code: Option<String>, message: Option<String>) -> Option<Self> {
        let code = code.filter(|c| !c.trim().is_empty());
        let message = message.filter(|m| !m.trim().is_empty());
        (code.is_some() || message.is_some()).then_some(Self { code, message })
    }
}

/// A delivery status update.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusUpdate {
    /// The normalized status.
    pub status: Status,
    /// When the provider says it happened, epoch milliseconds; when it says nothing
    /// unambiguous (no time, or one whose time zone is unknown), when the callback was
    /// received.
    pub timestamp_ms: i64,
    /// Error details (failed and bounced statuses).
    pub error: Option<ErrorInfo>,
    /// True for provider events that change no status (deferrals, delivery delays,
    /// temporary failures). They are emitted as `queued` and may be dropped by a route.
    pub informational: bool,
}

/// A media attachment of an inbound message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Media {
    /// Where to fetch it (or the provider's media id when no URL is given). Empty, and then
    /// left out of the payload, for an attachment the provider posted inline (Mailgun
    /// Routes), whose bytes are not forwarded: there is nothing to fetch it from.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// MIME type, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// File name, when the provider gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Size in bytes, when the provider gives it (or posted the bytes inline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

impl Media {
    /// A medium to fetch from `url` (or the provider's media id), with its MIME type when
    /// known.
    #[must_use]
    pub fn at(url: impl Into<String>, content_type: Option<String>) -> Self {
        Self {
            url: url.into(),
            content_type,
            name: None,
            size: None,
        }
    }
}

/// A shared location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Location {
    /// Latitude in degrees.
    pub latitude: f64,
    /// Longitude in degrees.
    pub longitude: f64,
    /// Place name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// The message an inbound message replies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyContext {
    /// Provider id of the message replied to.
    pub id: String,
    /// Sender of the message replied to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// A message a user sent.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InboundMessage {
    /// Sender address (E.164 for phones, no `whatsapp:` prefix; a WhatsApp user whose number
    /// is withheld by their business-scoped user id).
    pub from: String,
    /// Recipient address (the application's number or mailbox).
    pub to: String,
    /// `text`, `image`, `audio`, `video`, `document`, `sticker`, `location`, `button`,
    /// `interactive`, `reaction`, `edit`, `revoke`, `contacts`, `order`, `system`, `unsupported`,
    /// `email`, …
    pub message_type: String,
    /// Text body (or caption, or subject + text for email).
    pub text: Option<String>,
    /// Attachments.
    pub media: Vec<Media>,
    /// Shared location.
    pub location: Option<Location>,
    /// The message this one replies to.
    pub context: Option<ReplyContext>,
    /// When it was sent, epoch milliseconds.
    pub timestamp_ms: i64,
    /// The provider's id of this message.
    pub source_message_id: String,
    /// For an `edit` or a `revoke`: the provider's id of the message edited or deleted.
    pub original_message_id: Option<String>,
}

/// How the channel identifies the user besides their address ([`Event::channel_value`]):
/// WhatsApp's business-scoped user ids and username. All absent on other channels, and
/// whenever the provider sent none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelUser {
    /// The user's business-scoped user id (BSUID, `US.13491208655302741918`): stable for
    /// one business, and an address the business can send to.
    pub user_id: Option<String>,
    /// The user's parent BSUID (`US.ENT.…`), shared by a business's portfolios, when the
    /// business has enabled them.
    pub parent_user_id: Option<String>,
    /// The username the user adopted (may change; not an identifier).
    pub username: Option<String>,
}

impl ChannelUser {
    /// True when no identifier is known.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.user_id.is_none() && self.parent_user_id.is_none() && self.username.is_none()
    }
}

/// Status update or inbound message.
// An event is built once per provider event and moved, never copied in bulk: boxing the
// larger variant would cost an allocation per inbound message and save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// A delivery status.
    Status(StatusUpdate),
    /// An inbound message.
    Inbound(InboundMessage),
}

/// One normalized event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Channel.
    pub channel: Channel,
    /// The user's address: the recipient of a status, the sender of an inbound message.
    /// On WhatsApp, the user's phone number when the provider sent it, else their
    /// business-scoped user id. Empty when the provider does not send it (never invented:
    /// the event is then identified by [`Event::vendor_ack_id`]).
    pub channel_value: String,
    /// The user's other identifiers on the channel (WhatsApp's business-scoped user ids and
    /// username).
    pub channel_user: ChannelUser,
    /// Provider id (`twilio`, or a configured generic provider's name).
    pub vendor_name: String,
    /// The provider's message id.
    pub vendor_ack_id: Option<String>,
    /// Stable id of this event: equal across provider retries of the same callback, used as
    /// the `webhook-id` of every delivery and as the dedupe key.
    pub idempotency_key: String,
    /// Correlation ids the sending application attached (custom args, user variables,
    /// tags, callback URL query, …), under their own names.
    pub correlation: Map<String, Value>,
    /// Status or inbound message.
    pub kind: EventKind,
    /// The provider's own event, unmodified.
    pub raw: Raw,
}

/// The provider's own event, as the payload carries it under `vendor_response`.
///
/// Either a JSON value the normalizer built or parsed, or the JSON text of the event
/// exactly as the provider sent it: never parsed into a tree, and written out byte for
/// byte. The two compare equal when they hold the same JSON value.
#[derive(Debug, Clone)]
pub enum Raw {
    /// A JSON value.
    Value(Value),
    /// JSON text as received.
    Text(Box<serde_json::value::RawValue>),
}

impl Raw {
    /// The event as a JSON value (parsed, for [`Raw::Text`]).
    #[must_use]
    pub fn to_value(&self) -> Value {
        match self {
            Raw::Value(v) => v.clone(),
            // The text was valid JSON when it was captured.
            Raw::Text(t) => serde_json::from_str(t.get()).unwrap_or(Value::Null),
        }
    }
}

impl Default for Raw {
    fn default() -> Self {
        Raw::Value(Value::Null)
    }
}

impl From<Value> for Raw {
    fn from(value: Value) -> Self {
        Raw::Value(value)
    }
}

impl PartialEq for Raw {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Raw::Value(a), Raw::Value(b)) => a == b,
            (Raw::Text(a), Raw::Text(b)) if a.get() == b.get() => true,
            _ => self.to_value() == other.to_value(),
        }
    }
}

impl PartialEq<Value> for Raw {
    fn eq(&self, other: &Value) -> bool {
        match self {
            Raw::Value(v) => v == other,
            Raw::Text(_) => self.to_value() == *other,
        }
    }
}

impl Serialize for Raw {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Raw::Value(v) => v.serialize(serializer),
            Raw::Text(t) => t.serialize(serializer),
        }
    }
}

impl Event {
    /// The event type.
    #[must_use]
    pub fn event_type(&self) -> EventType {
        match self.kind {
            EventKind::Status(_) => EventType::Status,
            EventKind::Inbound(_) => EventType::InboundMessage,
        }
    }

    /// The status, for status events.
    #[must_use]
    pub fn status(&self) -> Option<&StatusUpdate> {
        match &self.kind {
            EventKind::Status(s) => Some(s),
            EventKind::Inbound(_) => None,
        }
    }

    /// When the event happened, epoch milliseconds.
    #[must_use]
    pub fn timestamp_ms(&self) -> i64 {
        match &self.kind {
            EventKind::Status(s) => s.timestamp_ms,
            EventKind::Inbound(m) => m.timestamp_ms,
        }
    }
}

/// Derives a stable idempotency key from the provider id and the parts that identify one
/// event (for example the provider's event id, or message id plus status).
///
/// The key is `evt_` followed by 32 hex digits of SHA-256, so it is safe as a
/// Standard Webhooks `webhook-id` (no `.`), and equal whenever the parts are equal.
#[must_use]
pub fn idempotency_key(vendor: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(vendor.as_bytes());
    for p in parts {
        h.update([0u8]);
        h.update(p.as_bytes());
    }
    let digest = h.finalize();
    let mut hex = [0u8; 32];
    let mut key = String::with_capacity(4 + hex.len());
    key.push_str("evt_");
    // 16 bytes always fit 32 hex digits.
    if hex::encode_to_slice(&digest[..16], &mut hex).is_ok() {
        key.extend(hex.iter().map(|&b| char::from(b)));
    }
    key
}

/// Derives an idempotency key from the provider's whole event, for providers that give
/// no event id. Equal JSON gives an equal key.
#[must_use]
pub fn idempotency_key_of_value(vendor: &str, raw: &Value) -> String {
    idempotency_key(vendor, &[&raw.to_string()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>(), Ok(s));
            assert_eq!(s.to_string(), s.as_str());
        }
        assert!("read".parse::<Status>().is_err());
        assert_eq!("whatsapp".parse::<Channel>(), Ok(Channel::Whatsapp));
        for name in Channel::NAMES {
            let c: Channel = name.parse().expect("a channel");
            assert_eq!(c.to_string(), *name);
            assert_eq!(
                serde_json::to_value(c).ok(),
                Some(Value::String((*name).into()))
            );
        }
        assert!("viber_service".parse::<Channel>().is_err());
        assert_eq!(
            "inbound_message".parse::<EventType>(),
            Ok(EventType::InboundMessage)
        );
    }

    #[test]
    fn idempotency_key_is_stable_and_distinct() {
        let a = idempotency_key("twilio", &["SM1", "delivered"]);
        assert_eq!(a, idempotency_key("twilio", &["SM1", "delivered"]));
        assert_ne!(a, idempotency_key("twilio", &["SM1", "sent"]));
        assert_ne!(a, idempotency_key("twilio", &["SM1delivered"]));
        assert!(a.starts_with("evt_") && a.len() == 36 && !a.contains('.'));
    }

    #[test]
    fn rank_never_lets_progress_undo_an_outcome() {
        assert!(Status::Seen.rank() > Status::Delivered.rank());
        assert!(Status::Failed.rank() > Status::Clicked.rank());
    }
}
