//! Infobip (SMS, WhatsApp and email reports, inbound SMS and WhatsApp messages).
//!
//! # Callback format
//!
//! `POST`, `Content-Type: application/json`. Infobip posts two envelopes:
//!
//! - **`{"results": [...]}`**, a batch (up to 100 reports a request by default), for SMS,
//!   WhatsApp and email delivery reports, WhatsApp seen reports, inbound SMS and inbound
//!   WhatsApp messages (the inbound envelope adds `messageCount` and
//!   `pendingMessageCount`). Each element becomes one [`Event`], told apart by its fields:
//!   a `status` object is a **delivery report**, a `seenAt` a **seen report**, a `message`
//!   object an **inbound WhatsApp message**, `text`/`cleanText`/`receivedAt` without a
//!   `message` an **inbound SMS**. An element that is beyond the [`limits`](crate::limits),
//!   is not an object, or lacks what its event needs (a `messageId`, readable times, a
//!   sender) is kept as an [`Unparsed`] event with its JSON text (and `{"results":[element]}`
//!   as the body to replay), and the rest of the batch is normalized.
//! - **An email tracking event** (`notificationType`: `OPENED`, `CLICKED`, `COMPLAINED`,
//!   `LATE_BOUNCE`, `UNSUBSCRIBED`), one per request, not wrapped in `results`. One that
//!   cannot be normalized refuses its callback (Infobip retries it); one beyond the limits
//!   is kept whole as unparsed.
//!
//! WhatsApp notifications about no message (a template status update, `messageTemplateId`;
//! a system event such as `user_identity_changed` or a payment notification, a `content`
//! object with a `type`) are no event: the payload has no event type for them. They are
//! acknowledged and reported as [`Control::Ignored`] naming their type. Any other body (not
//! an object, or an object of none of these shapes) is a [`NormalizeError`].
//!
//! ## Channel
//!
//! A delivery report looks the same on every channel, and Infobip's SMS and WhatsApp
//! samples carry no channel marker. The channel is, in order: the element's own `channel` or
//! `integrationType` (`SMS`, `WHATSAPP`, `EMAIL`; another value, such as `VIBER`, keeps the
//! element as unparsed, naming the channel); `email` for a report whose `to` is an email
//! address or that has a `browserLink`; the `channel` query parameter of the callback URL
//! (`?channel=whatsapp`, `sms` or `email`, set on the notify URL given to Infobip; another
//! value is ignored); `sms`. Seen reports default to `whatsapp`, inbound messages to
//! `whatsapp` when they have a `message` object and to `sms` otherwise.
//!
//! ## Fields
//!
//! - `vendor_ack_id` is `messageId`, the id Infobip's send API returned for the message (an
//!   inbound message's own `messageId` for inbound messages), as a string, exact (a JSON
//!   number is taken as its integer text; one that is not a 64-bit integer is refused).
//! - The user's address (`channel_value`): the report's `to` (the recipient), the inbound
//!   message's `from` (the sender), the tracking event's `recipient`; phone numbers in E.164
//!   (`41793026727` becomes `+41793026727`), email addresses as sent; `""` when absent. An
//!   inbound message's `to` is the business number, in E.164. On WhatsApp, the `contact`'s
//!   `userId`, `parentUserId` and `username`, when sent, are the `channel_user_id`,
//!   `channel_parent_user_id` and `channel_username`; a sender without `from` is named by
//!   `contact.phoneNumber`, else the user ids.
//! - Event time: a delivery report's `doneAt` (else `sentAt`), a seen report's `seenAt`, an
//!   inbound message's `receivedAt` (`yyyy-MM-dd'T'HH:mm:ss.SSSZ`, offsets with or without
//!   a colon); absent means the receive time. An email tracking event carries none
//!   (`sendDateTime` is when the email was sent), so it has the receive time.
//! - Correlation ids, under their own names when non-empty: `callbackData` (set at send
//!   time, echoed in reports and in replies), `bulkId`, `pairedMessageId` (the outbound
//!   message an inbound one answers, as Infobip matched it), `campaignReferenceId`,
//!   `entityId` and `applicationId` (also read from a report's `platform` object).
//! - Errors of `failed` and `bounced` reports: `{code: error.name, message:
//!   error.description}`, or the status's `{name, description}` when the error is
//!   `NO_ERROR` (id 0) or absent.
//! - Idempotency keys: a delivery report by `messageId`, status name and `doneAt`; a seen
//!   report by `messageId` and `seenAt`; an inbound message by its `messageId`; a tracking
//!   event by its `eventId` (documented for deduplication), else by type, `messageId`,
//!   `recipient` and `url`. A retry of the same callback gives the same keys.
//!
//! Inbound WhatsApp message types map to the payload's: `TEXT` → `text`, `IMAGE`,
//! `DOCUMENT`, `VIDEO`, `STICKER` → the same in lower case (with `url` as a `media` entry
//! and `caption` as the text), `AUDIO` and `VOICE` → `audio`, `LOCATION` → `location`,
//! `CONTACT` → `contacts`, `BUTTON` → `button` (its `text`, else `payload`), every
//! `INTERACTIVE_…` reply → `interactive` (its `title`, else `text`), `REACTION` →
//! `reaction` (the emoji; the message reacted to is the `context`), `ORDER` → `order`,
//! `UNSUPPORTED` → `unsupported`, any other type in lower case. `message.context {id,
//! from}` is the reply context. An inbound SMS is of type `text` with its full `text` (the
//! `keyword` and `cleanText` stay in `vendor_response`).
//!
//! # Signature
//!
//! Infobip signs nothing. The sidecar checks HTTP Basic credentials: put them in the URL
//! given to Infobip (`https://user:pass@host/…`) or in the subscription's authentication
//! (basic), so that Infobip sends `Authorization: Basic …`. They are mandatory and
//! compared in constant time (on SHA-256 digests, so the length is not revealed either).
//! There is no timestamp, so no clock check.
//!
//! # Verify keys
//!
//! | key | value |
//! |---|---|
//! | `basic_auth` | `user:password`, compared with the `Authorization: Basic …` header (required) |
//!
//! # Status mapping
//!
//! | Infobip report | status | notes |
//! |---|---|---|
//! | group `PENDING` (1), `PENDING_WAITING_DELIVERY`, `PENDING_ENROUTE` | `sent` | "processed and sent to the next instance i.e. mobile operator" |
//! | group `PENDING` (1), any other status (`PENDING_ACCEPTED`, …) | `queued` | accepted, not yet handed on |
//! | group `UNDELIVERABLE` (2), email with `error.permanent: true` | `bounced` | a permanent failure of an email address |
//! | group `UNDELIVERABLE` (2), otherwise | `failed` | error as above |
//! | group `DELIVERED` (3), `DELIVERED_TO_OPERATOR` | `sent` | the operator took it; no handset confirmation |
//! | group `DELIVERED` (3), any other status (`DELIVERED_TO_HANDSET`, …) | `delivered` | |
//! | group `EXPIRED` (4) | `failed` | not delivered within its validity |
//! | group `REJECTED` (5) | `failed` | rejected by Infobip or the operator |
//! | any other group | `queued` | informational: the documented fallback for unknown values |
//! | WhatsApp seen report (`seenAt`) | `seen` | |
//! | email tracking `OPENED` | `seen` | |
//! | email tracking `CLICKED` | `clicked` | |
//! | email tracking `COMPLAINED` | `complained` | |
//! | email tracking `UNSUBSCRIBED` | `unsubscribed` | |
//! | email tracking `LATE_BOUNCE` | `bounced` | an email accepted at first and refused later |
//! | email tracking, any other `notificationType` | `queued` | informational |
//!
//! The group is read from `status.groupId`, else `status.groupName`.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::HashMap;

use crate::event::{ChannelUser, idempotency_key};
use crate::limits::JsonLimits;
use crate::phone::e164;
use crate::provider::basic_auth::BasicAuth;
use crate::provider::batch_element;
use crate::provider::{Context, Control, Normalized, Unparsed, VerifyOptions, VerifySettings};
use crate::{
    CallbackRequest, Channel, ErrorInfo, Event, EventKind, InboundMessage, Location, Media,
    NormalizeError, ReplyContext, Status, StatusUpdate, VerifyConfigError, VerifyError, timestamp,
};

/// Provider id.
const PROVIDER: &str = "infobip";
/// Keys of the `verify:` block.
const KNOWN_KEYS: &[&str] = &["basic_auth"];
/// Correlation ids, kept under their own names when non-empty strings.
const CORRELATION: &[&str] = &[
    "callbackData",
    "bulkId",
    "pairedMessageId",
    "campaignReferenceId",
    "entityId",
    "applicationId",
];
/// Longest notification type quoted in a [`Control::Ignored`] reason, in characters.
const MAX_QUOTED: usize = 100;

/// Checks Infobip's HTTP Basic credentials (Infobip signs nothing).
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

    /// Checks the `Authorization: Basic …` header. Infobip sends no timestamp, so `opts`
    /// has nothing to check.
    pub fn verify(&self, req: &CallbackRequest, _opts: &VerifyOptions) -> Result<(), VerifyError> {
        self.basic_auth.check(req)
    }
}

/// Normalizes one Infobip callback: a `results` batch (every element one event, or an
/// [`Unparsed`] one), an email tracking event, or a WhatsApp notification about no message
/// ([`Control::Ignored`]).
pub fn normalize(req: &CallbackRequest, ctx: &Context) -> Result<Normalized, NormalizeError> {
    req.expect_content_type(PROVIDER, &["application/json"], "application/json")?;
    // The envelope's fields as JSON text, none of them parsed yet.
    let envelope = std::str::from_utf8(&req.body)
        .ok()
        .and_then(|text| Some(text).zip(serde_json::from_str::<Envelope<'_>>(text).ok()));
    let Some((text, envelope)) = envelope else {
        // Not a JSON object: the body's own error (empty, not JSON), else its shape.
        req.json()?;
        return Err(NormalizeError::shape(
            "",
            "a JSON object (an Infobip report)",
        ));
    };
    if let Some(results) = envelope.get("results") {
        let elements = serde_json::from_str::<Vec<&RawValue>>(results.get())
            .map_err(|_| NormalizeError::shape("/results", "an array of reports"))?;
        return Ok(results_batch(&elements, query_channel(req), ctx));
    }
    if envelope.contains_key("notificationType") {
        return tracking(text, ctx);
    }
    if let Some(reason) = about_no_message(&envelope) {
        return Ok(Normalized::control(Control::Ignored { reason }));
    }
    Err(NormalizeError::shape(
        "",
        "an Infobip report: a `results` array, or an email tracking event",
    ))
}

/// A JSON object's fields as unparsed JSON text.
type Envelope<'a> = HashMap<String, &'a RawValue>;

/// The `channel` query parameter of the callback URL, when it names a channel.
fn query_channel(req: &CallbackRequest) -> Option<Channel> {
    req.query_pairs()
        .into_iter()
        .find(|(k, _)| k == "channel")
        .and_then(|(_, v)| channel_named(&v))
}

/// A channel by Infobip's name (`SMS`, `WHATSAPP`, `EMAIL`), any case.
fn channel_named(name: &str) -> Option<Channel> {
    match name.trim().to_ascii_uppercase().as_str() {
        "SMS" => Some(Channel::Sms),
        "WHATSAPP" => Some(Channel::Whatsapp),
        "EMAIL" => Some(Channel::Email),
        _ => None,
    }
}

/// The `results` batch: each element an event, or unparsed with the reason.
fn results_batch(elements: &[&RawValue], query: Option<Channel>, ctx: &Context) -> Normalized {
    let mut out = Normalized::events(Vec::with_capacity(elements.len()));
    for (i, element) in elements.iter().enumerate() {
        let text = element.get();
        let normalized = batch_element(text, |item| {
            report_of(&format!("/results/{i}"), item, query, ctx)
        });
        match normalized {
            Ok(event) => out.events.push(event),
            // Alone, the element is an Infobip body of its own: `{"results":[element]}`.
            Err(reason) => out
                .unparsed
                .push(Unparsed::new(reason, text).with_body(format!("{{\"results\":[{text}]}}"))),
        }
    }
    out
}

/// One element of `results`, by its fields: delivery report, seen report, inbound message.
fn report_of(
    path: &str,
    item: Value,
    query: Option<Channel>,
    ctx: &Context,
) -> Result<Event, NormalizeError> {
    let Some(obj) = item.as_object() else {
        return Err(NormalizeError::shape(path, "a report object"));
    };
    let has = |k: &str| obj.get(k).is_some_and(|v| !v.is_null());
    let mut event = if has("status") {
        delivery_report(path, obj, query, ctx)?
    } else if has("seenAt") {
        seen_report(path, obj, ctx)?
    } else if has("message") || has("receivedAt") || has("text") || has("cleanText") {
        inbound(path, obj, ctx)?
    } else {
        return Err(NormalizeError::MissingField(format!("{path}/status")));
    };
    event.raw = item.into();
    Ok(event)
}

/// An Infobip status group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Pending,
    Undeliverable,
    Delivered,
    Expired,
    Rejected,
}

impl Group {
    /// By `groupId`.
    fn by_id(id: u64) -> Option<Group> {
        Some(match id {
            1 => Group::Pending,
            2 => Group::Undeliverable,
            3 => Group::Delivered,
            4 => Group::Expired,
            5 => Group::Rejected,
            _ => return None,
        })
    }

    /// By `groupName`, any case.
    fn by_name(name: &str) -> Option<Group> {
        Some(match name.trim().to_ascii_uppercase().as_str() {
            "PENDING" => Group::Pending,
            "UNDELIVERABLE" => Group::Undeliverable,
            "DELIVERED" => Group::Delivered,
            "EXPIRED" => Group::Expired,
            "REJECTED" => Group::Rejected,
            _ => return None,
        })
    }
}

/// Maps a report's `status` (and, for email, `error.permanent`); see the module table.
fn map_status(
    status: &Map<String, Value>,
    channel: Channel,
    error: Option<&Map<String, Value>>,
) -> (Status, bool) {
    let group = status
        .get("groupId")
        .and_then(Value::as_u64)
        .and_then(Group::by_id)
        .or_else(|| {
            status
                .get("groupName")
                .and_then(Value::as_str)
                .and_then(Group::by_name)
        });
    let name = status
        .get("name")
        .and_then(Value::as_str)
        .map(|n| n.trim().to_ascii_uppercase())
        .unwrap_or_default();
    let permanent = error.and_then(|e| e.get("permanent")) == Some(&Value::Bool(true));
    match group {
        Some(Group::Pending)
            if matches!(
                name.as_str(),
                "PENDING_WAITING_DELIVERY" | "PENDING_ENROUTE"
            ) =>
        {
            (Status::Sent, false)
        }
        Some(Group::Pending) => (Status::Queued, false),
        Some(Group::Undeliverable) if channel == Channel::Email && permanent => {
            (Status::Bounced, false)
        }
        Some(Group::Delivered) if name == "DELIVERED_TO_OPERATOR" => (Status::Sent, false),
        Some(Group::Delivered) => (Status::Delivered, false),
        Some(Group::Undeliverable | Group::Expired | Group::Rejected) => (Status::Failed, false),
        None => (Status::Queued, true),
    }
}

/// The error of a failed report: its `error` unless that is `NO_ERROR`, else its status.
fn error_of(status: &Map<String, Value>, error: Option<&Map<String, Value>>) -> Option<ErrorInfo> {
    let no_error = |e: &Map<String, Value>| {
        e.get("id").and_then(Value::as_u64) == Some(0)
            || e.get("name").and_then(Value::as_str) == Some("NO_ERROR")
    };
    match error.filter(|e| !no_error(e)) {
        Some(e) => ErrorInfo::from_parts(
            text(e, "name").or_else(|| text(e, "id")),
            text(e, "description"),
        ),
        None => ErrorInfo::from_parts(text(status, "name"), text(status, "description")),
    }
}

/// A delivery report (SMS, WhatsApp, email).
fn delivery_report(
    path: &str,
    obj: &Map<String, Value>,
    query: Option<Channel>,
    ctx: &Context,
) -> Result<Event, NormalizeError> {
    let message_id = required_id(obj, "messageId", path)?;
    let to = text(obj, "to").unwrap_or_default();
    let looks_like_email = to.contains('@') || obj.contains_key("browserLink");
    let fallback = if looks_like_email {
        Channel::Email
    } else {
        query.unwrap_or(Channel::Sms)
    };
    let channel = channel_of(path, obj, fallback)?;
    let Some(status_obj) = obj.get("status").and_then(Value::as_object) else {
        return Err(NormalizeError::invalid(
            format!("{path}/status"),
            "not an object",
        ));
    };
    let error = obj.get("error").and_then(Value::as_object);
    let (status, informational) = map_status(status_obj, channel, error);
    let (time_text, timestamp_ms) = time_of(obj, &["doneAt", "sentAt"], path, ctx)?;
    let error = matches!(status, Status::Failed | Status::Bounced)
        .then(|| error_of(status_obj, error))
        .flatten();
    let status_name = text(status_obj, "name")
        .or_else(|| text(status_obj, "id"))
        .unwrap_or_default();
    Ok(Event {
        channel,
        channel_value: e164(&to),
        channel_user: ChannelUser::default(),
        vendor_name: PROVIDER.to_owned(),
        idempotency_key: idempotency_key(PROVIDER, &["dlr", &message_id, &status_name, &time_text]),
        vendor_ack_id: Some(message_id),
        correlation: correlation(obj),
        kind: EventKind::Status(StatusUpdate {
            status,
            timestamp_ms,
            error,
            informational,
        }),
        // Moved in by the caller.
        raw: Value::Null.into(),
    })
}

/// A WhatsApp seen report: the user (`to`) read the message.
fn seen_report(
    path: &str,
    obj: &Map<String, Value>,
    ctx: &Context,
) -> Result<Event, NormalizeError> {
    let message_id = required_id(obj, "messageId", path)?;
    let channel = channel_of(path, obj, Channel::Whatsapp)?;
    let (time_text, timestamp_ms) = time_of(obj, &["seenAt"], path, ctx)?;
    Ok(Event {
        channel,
        channel_value: e164(&text(obj, "to").unwrap_or_default()),
        channel_user: ChannelUser::default(),
        vendor_name: PROVIDER.to_owned(),
        idempotency_key: idempotency_key(PROVIDER, &["seen", &message_id, &time_text]),
        vendor_ack_id: Some(message_id),
        correlation: correlation(obj),
        kind: EventKind::Status(StatusUpdate {
            status: Status::Seen,
            timestamp_ms,
            error: None,
            informational: false,
        }),
        raw: Value::Null.into(),
    })
}

/// An inbound SMS or WhatsApp message.
fn inbound(path: &str, obj: &Map<String, Value>, ctx: &Context) -> Result<Event, NormalizeError> {
    let message_id = required_id(obj, "messageId", path)?;
    let message = obj.get("message").and_then(Value::as_object);
    let fallback = if message.is_some() {
        Channel::Whatsapp
    } else {
        Channel::Sms
    };
    let channel = channel_of(path, obj, fallback)?;
    let contact = obj.get("contact").and_then(Value::as_object);
    let contact_text = |k: &str| {
        contact
            .and_then(|c| text(c, k))
            .map(|v| v.trim().to_owned())
    };
    let user = if channel == Channel::Whatsapp {
        ChannelUser {
            user_id: contact_text("userId"),
            parent_user_id: contact_text("parentUserId"),
            username: contact_text("username"),
        }
    } else {
        ChannelUser::default()
    };
    let from = text(obj, "from")
        .or_else(|| contact_text("phoneNumber"))
        .or_else(|| user.user_id.clone())
        .or_else(|| user.parent_user_id.clone())
        .map(|f| e164(&f))
        .ok_or_else(|| NormalizeError::MissingField(format!("{path}/from")))?;
    let (_, timestamp_ms) = time_of(obj, &["receivedAt"], path, ctx)?;
    let mut msg = InboundMessage {
        from: from.clone(),
        to: text(obj, "to").map(|t| e164(&t)).unwrap_or_default(),
        message_type: "text".into(),
        timestamp_ms,
        source_message_id: message_id.clone(),
        ..InboundMessage::default()
    };
    match message {
        Some(m) => fill_whatsapp(&mut msg, m),
        None => msg.text = raw_text(obj, "text"),
    }
    Ok(Event {
        channel,
        channel_value: from,
        channel_user: user,
        vendor_name: PROVIDER.to_owned(),
        idempotency_key: idempotency_key(PROVIDER, &["mo", &message_id]),
        vendor_ack_id: Some(message_id),
        correlation: correlation(obj),
        kind: EventKind::Inbound(msg),
        raw: Value::Null.into(),
    })
}

/// The content of an inbound WhatsApp `message`; see the module docs for the types.
fn fill_whatsapp(msg: &mut InboundMessage, m: &Map<String, Value>) {
    let kind = m
        .get("type")
        .and_then(Value::as_str)
        .map(|t| t.trim().to_ascii_uppercase())
        .unwrap_or_default();
    msg.message_type = match kind.as_str() {
        "" => "unknown".to_owned(),
        "AUDIO" | "VOICE" => "audio".to_owned(),
        "CONTACT" => "contacts".to_owned(),
        k if k.starts_with("INTERACTIVE_") => "interactive".to_owned(),
        k => k.to_ascii_lowercase(),
    };
    match kind.as_str() {
        "TEXT" | "ORDER" => msg.text = raw_text(m, "text"),
        "IMAGE" | "DOCUMENT" | "VIDEO" | "AUDIO" | "VOICE" | "STICKER" => {
            msg.text = raw_text(m, "caption");
            if let Some(url) = text(m, "url") {
                msg.media.push(Media::at(url.trim(), None));
            }
        }
        "LOCATION" => msg.location = location(m),
        "BUTTON" => msg.text = raw_text(m, "text").or_else(|| raw_text(m, "payload")),
        "REACTION" => msg.text = raw_text(m, "emoji"),
        k if k.starts_with("INTERACTIVE_") => {
            msg.text = raw_text(m, "title").or_else(|| raw_text(m, "text"));
        }
        _ => {}
    }
    msg.context = m.get("context").and_then(Value::as_object).and_then(|c| {
        text(c, "id").map(|id| ReplyContext {
            id,
            from: text(c, "from").map(|f| e164(&f)),
        })
    });
}

/// A location from `latitude`/`longitude` (numbers or numeric strings), `name`, `address`.
fn location(m: &Map<String, Value>) -> Option<Location> {
    let number = |k: &str| {
        match m.get(k)? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        }
        .filter(|f| f.is_finite())
    };
    Some(Location {
        latitude: number("latitude")?,
        longitude: number("longitude")?,
        name: text(m, "name"),
        address: text(m, "address"),
    })
}

/// An email tracking event (one per request).
fn tracking(text_body: &str, ctx: &Context) -> Result<Normalized, NormalizeError> {
    if let Err(exceeded) = JsonLimits::default().check(text_body.as_bytes()) {
        // The envelope parsed, so this is an object: kept whole.
        return Ok(Normalized::one_unparsed(Unparsed::new(exceeded, text_body)));
    }
    let body: Value =
        serde_json::from_str(text_body).map_err(|source| NormalizeError::InvalidJson { source })?;
    let Some(obj) = body.as_object() else {
        return Err(NormalizeError::shape("", "a JSON object"));
    };
    let kind = match obj.get("notificationType") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_ascii_uppercase(),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            return Err(NormalizeError::MissingField("notificationType".into()));
        }
        Some(_) => return Err(NormalizeError::invalid("notificationType", "not a string")),
    };
    let (status, informational) = match kind.as_str() {
        "OPENED" => (Status::Seen, false),
        "CLICKED" => (Status::Clicked, false),
        "COMPLAINED" => (Status::Complained, false),
        "UNSUBSCRIBED" => (Status::Unsubscribed, false),
        "LATE_BOUNCE" => (Status::Bounced, false),
        _ => (Status::Queued, true),
    };
    let recipient = text(obj, "recipient")
        .map(|r| r.trim().to_owned())
        .unwrap_or_default();
    let message_id = id_text(obj, "messageId", "")?;
    if recipient.is_empty() && message_id.is_none() {
        return Err(NormalizeError::MissingField("recipient".into()));
    }
    let key = match text(obj, "eventId") {
        Some(id) => idempotency_key(PROVIDER, &["track", &id]),
        None => idempotency_key(
            PROVIDER,
            &[
                "track",
                &kind,
                message_id.as_deref().unwrap_or(""),
                &recipient,
                &text(obj, "url").unwrap_or_default(),
            ],
        ),
    };
    let event = Event {
        channel: Channel::Email,
        channel_value: recipient,
        channel_user: ChannelUser::default(),
        vendor_name: PROVIDER.to_owned(),
        vendor_ack_id: message_id,
        idempotency_key: key,
        correlation: correlation(obj),
        kind: EventKind::Status(StatusUpdate {
            status,
            // `sendDateTime` is when the email was sent, not when this happened.
            timestamp_ms: ctx.received_at_ms,
            error: None,
            informational,
        }),
        raw: body.into(),
    };
    Ok(Normalized::events(vec![event]))
}

/// The type of a WhatsApp notification's `content` (other fields skipped unparsed).
#[derive(Deserialize)]
struct ContentType {
    #[serde(rename = "type")]
    kind: String,
}

/// Why a body is a WhatsApp notification about no message (a template update, a system
/// event, a payment notification), if it is one.
fn about_no_message(envelope: &Envelope<'_>) -> Option<String> {
    let what = if envelope.contains_key("messageTemplateId") {
        "template update".to_owned()
    } else {
        let content = envelope.get("content")?;
        let kind = serde_json::from_str::<ContentType>(content.get())
            .ok()?
            .kind;
        let kind: String = kind
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(MAX_QUOTED)
            .collect();
        format!("notification of type {kind}")
    };
    Some(format!(
        "1 Infobip WhatsApp {what}, about no message, not delivered"
    ))
}

/// The channel of an element: its `channel` or `integrationType`, else `fallback`.
fn channel_of(
    path: &str,
    obj: &Map<String, Value>,
    fallback: Channel,
) -> Result<Channel, NormalizeError> {
    for key in ["channel", "integrationType"] {
        if let Some(name) = obj
            .get(key)
            .and_then(Value::as_str)
            .filter(|n| !n.trim().is_empty())
        {
            return channel_named(name).ok_or_else(|| {
                NormalizeError::invalid(
                    format!("{path}/{key}"),
                    format!(
                        "channel {name:?} is not one this provider maps (sms, whatsapp, email)"
                    ),
                )
            });
        }
    }
    Ok(fallback)
}

/// The first of `fields` present, in ms: as text for idempotency keys (the same instant
/// written with another offset gives the same key), and as a number; none of them means the
/// receive time (and an empty key part, so that a retry has the same key).
fn time_of(
    obj: &Map<String, Value>,
    fields: &[&str],
    path: &str,
    ctx: &Context,
) -> Result<(String, i64), NormalizeError> {
    let Some((field, value)) = fields
        .iter()
        .find_map(|f| obj.get(*f).filter(|v| !v.is_null()).map(|v| (*f, v)))
    else {
        return Ok((String::new(), ctx.received_at_ms));
    };
    let ms = match value {
        // Timestamps are ASCII; anything else is rejected before the text parsers see it.
        Value::String(s) if s.is_ascii() => timestamp::parse_str_ms(s),
        _ => None,
    }
    .ok_or_else(|| NormalizeError::invalid(format!("{path}/{field}"), "not a timestamp"))?;
    Ok((ms.to_string(), ms))
}

/// An id field as exact text: a string as sent (trimmed), an integer as its digits.
fn id_text(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<String>, NormalizeError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
        // serde_json keeps an integer that fits 64 bits as one: its text is exact.
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(Some(n.to_string())),
        Some(_) => Err(NormalizeError::invalid(
            format!("{path}/{key}"),
            "not a string or a 64-bit integer",
        )),
    }
}

/// [`id_text`] of a field that must be present.
fn required_id(obj: &Map<String, Value>, key: &str, path: &str) -> Result<String, NormalizeError> {
    id_text(obj, key, path)?.ok_or_else(|| NormalizeError::MissingField(format!("{path}/{key}")))
}

/// The correlation ids of an element (see the module docs), under their own names.
fn correlation(obj: &Map<String, Value>) -> Map<String, Value> {
    let platform = obj.get("platform").and_then(Value::as_object);
    CORRELATION
        .iter()
        .filter_map(|k| {
            let value = obj
                .get(*k)
                .and_then(non_empty_string)
                .or_else(|| platform.and_then(|p| p.get(*k)).and_then(non_empty_string))?;
            Some(((*k).to_owned(), Value::String(value)))
        })
        .collect()
}

/// A string value that is not blank.
fn non_empty_string(v: &Value) -> Option<String> {
    v.as_str()
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned)
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
    use http::{HeaderName, HeaderValue, Uri};
    use serde_json::json;

    macro_rules! fixture {
        ($name:literal) => {
            include_bytes!(concat!("../../tests/fixtures/infobip/", $name, ".json"))
        };
    }

    const SMS_DLR: &[u8] = fixture!("sms_delivery_report");
    const SMS_DLR_V3: &[u8] = fixture!("sms_delivery_report_sender_platform");
    const SMS_INBOUND: &[u8] = fixture!("sms_inbound");
    const EMAIL_DLR: &[u8] = fixture!("email_delivery_report");
    const EMAIL_OPENED: &[u8] = fixture!("email_tracking_opened");
    const EMAIL_OPENED_NUMERIC: &[u8] = fixture!("email_tracking_opened_numeric_id");
    const WA_DLR: &[u8] = fixture!("whatsapp_delivery_report");
    const WA_DLR_DOCS: &[u8] = fixture!("whatsapp_delivery_report_docs");
    const WA_SEEN: &[u8] = fixture!("whatsapp_seen_report");
    const WA_SEEN_DOCS: &[u8] = fixture!("whatsapp_seen_report_docs");
    const WA_TEXT: &[u8] = fixture!("whatsapp_inbound_text");
    const WA_TEXT_NULLS: &[u8] = fixture!("whatsapp_inbound_text_no_contact");
    const WA_IMAGE: &[u8] = fixture!("whatsapp_inbound_image");
    const WA_LOCATION: &[u8] = fixture!("whatsapp_inbound_location");
    const WA_IDENTITY: &[u8] = fixture!("whatsapp_identity_changed");
    const WA_TEMPLATE: &[u8] = fixture!("whatsapp_template_update");
    const WA_PAYMENT: &[u8] = fixture!("whatsapp_payment_notification");

    const CTX: Context = Context {
        received_at_ms: 1_700_000_000_000,
    };

    fn request(body: &[u8]) -> CallbackRequest {
        CallbackRequest::post(body.to_vec()).with_content_type("application/json")
    }

    fn run(body: &[u8]) -> Result<Normalized, NormalizeError> {
        normalize(&request(body), &CTX)
    }

    fn events(body: &[u8]) -> Vec<Event> {
        let out = run(body).expect("normalize");
        assert!(out.unparsed.is_empty(), "{:?}", out.unparsed);
        assert_eq!(out.control, None);
        out.events
    }

    fn one(body: &[u8]) -> Event {
        let mut all = events(body);
        assert_eq!(all.len(), 1);
        all.remove(0)
    }

    fn status(e: &Event) -> &StatusUpdate {
        e.status().expect("status event")
    }

    fn inbound_of(e: &Event) -> &InboundMessage {
        match &e.kind {
            EventKind::Inbound(m) => m,
            EventKind::Status(_) => panic!("inbound expected"),
        }
    }

    /// One report element in its envelope.
    fn report(element: Value) -> Vec<u8> {
        json!({ "results": [element] }).to_string().into_bytes()
    }

    fn settings(pairs: &[(&str, &str)]) -> VerifySettings {
        pairs
            .iter()
            .fold(VerifySettings::new(), |s, (k, v)| s.with(*k, *v))
    }

    fn with_auth(value: &[u8]) -> CallbackRequest {
        let mut req = request(SMS_DLR);
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
            Verifier::from_settings(&settings(&[("basic_auth", "ib:s3cr:et")])).expect("verifier");
        let opts = VerifyOptions::default();
        v.verify(&with_auth(basic("ib:s3cr:et").as_bytes()), &opts)
            .expect("valid credentials");
        v.verify(
            &with_auth(format!("basic {}", STANDARD.encode("ib:s3cr:et")).as_bytes()),
            &opts,
        )
        .expect("the scheme is case-insensitive");
        for wrong in ["ib:s3cr:eT", "ib:", "ib:s3cr:et ", "IB:s3cr:et"] {
            assert!(
                matches!(
                    v.verify(&with_auth(basic(wrong).as_bytes()), &opts),
                    Err(VerifyError::BadCredentials)
                ),
                "{wrong}"
            );
        }
        assert!(matches!(
            v.verify(&request(SMS_DLR), &opts),
            Err(VerifyError::Missing(_))
        ));
        for bad in [
            "Bearer abc",
            "App 003026abc",
            "Basic !!!",
            "aWI6czNjcjpldA==",
        ] {
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
        for s in [VerifySettings::new(), settings(&[("basic_auth", " ")])] {
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
        assert!(matches!(
            Verifier::from_settings(&settings(&[("basic_auth", "u:p"), ("api_key", "x")])),
            Err(VerifyConfigError::Unknown { .. })
        ));
        let v = Verifier::from_settings(&settings(&[("basic_auth", "user:hunter2")]))
            .expect("verifier");
        assert!(!format!("{v:?}").contains("hunter2"));
    }

    #[test]
    fn sms_delivery_reports() {
        let all = events(SMS_DLR);
        assert_eq!(all.len(), 2);
        let e = &all[0];
        assert_eq!(e.channel, Channel::Sms);
        assert_eq!(e.channel_value, "+41793026727");
        assert_eq!(e.vendor_ack_id.as_deref(), Some("MESSAGE-ID-123-xyz"));
        assert_eq!(e.correlation["bulkId"], "BULK-ID-123-xyz");
        let s = status(e);
        assert_eq!((s.status, s.informational), (Status::Delivered, false));
        // "2019-11-09T16:00:00.000+0000".
        assert_eq!(s.timestamp_ms, 1_573_315_200_000);
        assert!(s.error.is_none());
        assert_eq!(all[1].channel_value, "+41793026834");
        assert_ne!(all[0].idempotency_key, all[1].idempotency_key);

        let all = events(SMS_DLR_V3);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].correlation["entityId"], "promotional-traffic-entity");
        assert_eq!(
            all[0].correlation["applicationId"],
            "marketing-automation-application"
        );
        // "2019-11-09T16:00:00.000+01:00".
        assert_eq!(status(&all[0]).timestamp_ms, 1_573_311_600_000);
    }

    #[test]
    fn status_groups_map() {
        let dlr = |group: Value, name: &str, channel: &str, error: Value| {
            let body = report(
                json!({"messageId":"m-1","to":"41793026727","channel":channel,
                "doneAt":"2019-11-09T16:00:00.000+0000",
                "status":{"groupId":group,"name":name,"description":"d"},"error":error}),
            );
            status(&one(&body)).clone()
        };
        let no_error = json!({"id":0,"name":"NO_ERROR","description":"No Error","groupId":0,
            "groupName":"OK","permanent":false});
        let cases = [
            (json!(1), "PENDING_WAITING_DELIVERY", Status::Sent),
            (json!(1), "PENDING_ENROUTE", Status::Sent),
            (json!(1), "PENDING_ACCEPTED", Status::Queued),
            (json!(2), "UNDELIVERABLE_NOT_DELIVERED", Status::Failed),
            (json!(3), "DELIVERED_TO_OPERATOR", Status::Sent),
            (json!(3), "DELIVERED_TO_HANDSET", Status::Delivered),
            (json!(4), "EXPIRED_EXPIRED", Status::Failed),
            (json!(5), "REJECTED_NETWORK", Status::Failed),
        ];
        for (group, name, want) in cases {
            let s = dlr(group, name, "SMS", no_error.clone());
            assert_eq!((s.status, s.informational), (want, false), "{name}");
        }
        let unknown = dlr(json!(9), "SOMETHING_NEW", "SMS", no_error.clone());
        assert_eq!(
            (unknown.status, unknown.informational),
            (Status::Queued, true)
        );
        // By name when the id is absent or unknown.
        let by_name = one(&report(json!({"messageId":"m","to":"1",
            "status":{"groupName":"rejected","name":"REJECTED_DESTINATION"}})));
        assert_eq!(status(&by_name).status, Status::Failed);
        // A failure's error: the error object, else the status.
        let failed = dlr(
            json!(2),
            "UNDELIVERABLE_REJECTED_OPERATOR",
            "SMS",
            json!({"id":1,"name":"EC_UNKNOWN_SUBSCRIBER","description":"Unknown subscriber",
                "groupId":1,"groupName":"HANDSET_ERRORS","permanent":true}),
        );
        assert_eq!(
            failed.error,
            Some(ErrorInfo {
                code: Some("EC_UNKNOWN_SUBSCRIBER".into()),
                message: Some("Unknown subscriber".into()),
            })
        );
        let expired = dlr(json!(4), "EXPIRED_EXPIRED", "SMS", no_error);
        assert_eq!(
            expired.error,
            Some(ErrorInfo {
                code: Some("EXPIRED_EXPIRED".into()),
                message: Some("d".into()),
            })
        );
        // Email: a permanent undeliverable error is a bounce.
        let hard = dlr(
            json!(2),
            "UNDELIVERABLE_NOT_DELIVERED",
            "EMAIL",
            json!({"id":4000,"name":"HARD_BOUNCE","description":"Mailbox does not exist","permanent":true}),
        );
        assert_eq!(hard.status, Status::Bounced);
        let soft = dlr(
            json!(2),
            "UNDELIVERABLE_NOT_DELIVERED",
            "EMAIL",
            json!({"id":4001,"name":"SOFT_BOUNCE","permanent":false}),
        );
        assert_eq!(soft.status, Status::Failed);
    }

    #[test]
    fn whatsapp_reports() {
        for (body, query) in [
            (WA_DLR, "?channel=whatsapp"),
            (WA_DLR_DOCS, "?channel=WhatsApp"),
        ] {
            let mut req = request(body);
            req.uri = format!("/callbacks/infobip{query}")
                .parse::<Uri>()
                .expect("uri");
            let out = normalize(&req, &CTX).expect("normalize");
            let e = &out.events[0];
            assert_eq!(e.channel, Channel::Whatsapp);
            assert_eq!(e.channel_value, "+41793026731");
            assert_eq!(
                e.vendor_ack_id.as_deref(),
                Some("fb469d73-d362-463f-b30f-1e959b53badc")
            );
            assert!(!e.correlation.contains_key("bulkId"), "empty bulkId");
            // "2019-04-09T16:01:56.494-0300", with or without the colon.
            assert_eq!(status(e).timestamp_ms, 1_554_836_516_494);
            assert_eq!(status(e).status, Status::Delivered);
        }
        // Without a marker or a query, a report is SMS.
        assert_eq!(one(WA_DLR).channel, Channel::Sms);
        // The element's own channel wins over the query.
        let mut req = request(&report(
            json!({"messageId":"m","to":"41793026731","channel":"SMS",
            "status":{"groupId":3,"name":"DELIVERED_TO_HANDSET"}}),
        ));
        req.uri = Uri::from_static("/cb?channel=whatsapp");
        assert_eq!(
            normalize(&req, &CTX).expect("normalize").events[0].channel,
            Channel::Sms
        );
        // An unknown query value is ignored.
        let mut req = request(WA_DLR);
        req.uri = Uri::from_static("/cb?channel=pigeon");
        assert_eq!(
            normalize(&req, &CTX).expect("normalize").events[0].channel,
            Channel::Sms
        );

        for body in [WA_SEEN, WA_SEEN_DOCS] {
            let e = one(body);
            assert_eq!(e.channel, Channel::Whatsapp);
            assert_eq!(e.channel_value, "+41793026731");
            assert_eq!(
                e.vendor_ack_id.as_deref(),
                Some("1215f543ab19-345f-adbd-12ad31451ed25f35")
            );
            assert_eq!(e.correlation["applicationId"], "example-application-id");
            let s = status(&e);
            assert_eq!((s.status, s.informational), (Status::Seen, false));
            assert_eq!(s.timestamp_ms, 1_544_613_718_251);
        }
        assert_eq!(
            one(WA_SEEN).idempotency_key,
            one(WA_SEEN_DOCS).idempotency_key
        );
    }

    #[test]
    fn email_reports() {
        let e = one(EMAIL_DLR);
        assert_eq!(e.channel, Channel::Email);
        assert_eq!(e.channel_value, "john.doe@gmail.com");
        assert_eq!(e.vendor_ack_id.as_deref(), Some("hgtesn8bcmc71pujp92d"));
        assert_eq!(e.correlation["callbackData"], "something you want back");
        assert_eq!(status(&e).status, Status::Delivered);
        assert_eq!(status(&e).timestamp_ms, 1_599_542_879_256);

        let e = one(EMAIL_OPENED);
        assert_eq!(e.channel, Channel::Email);
        assert_eq!(e.channel_value, "john.doe@somedomain.com");
        assert_eq!(e.vendor_ack_id.as_deref(), Some("14b734recsf69n8zkao5"));
        assert_eq!(e.correlation["bulkId"], "ikzzmbhu6223bxkhmyrj");
        let s = status(&e);
        assert_eq!((s.status, s.informational), (Status::Seen, false));
        assert_eq!(
            s.timestamp_ms, CTX.received_at_ms,
            "sendDateTime is not the event time"
        );
        // A numeric messageId is its exact digits.
        let e = one(EMAIL_OPENED_NUMERIC);
        assert_eq!(e.vendor_ack_id.as_deref(), Some("1599542877689"));

        let track = |kind: &str, extra: Value| {
            let mut body = json!({"notificationType":kind,"domain":"mydomain.com",
                "recipient":"john.doe@somedomain.com","sendDateTime":1599542877689_u64,
                "messageId":"14b734recsf69n8zkao5","bulkId":"ikzzmbhu6223bxkhmyrj"});
            if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
                b.extend(e.clone());
            }
            one(body.to_string().as_bytes())
        };
        for (kind, want) in [
            ("OPENED", Status::Seen),
            ("CLICKED", Status::Clicked),
            ("COMPLAINED", Status::Complained),
            ("UNSUBSCRIBED", Status::Unsubscribed),
            ("LATE_BOUNCE", Status::Bounced),
        ] {
            let s = status(&track(kind, json!({}))).clone();
            assert_eq!((s.status, s.informational), (want, false), "{kind}");
        }
        let s = status(&track("FORWARDED", json!({}))).clone();
        assert_eq!((s.status, s.informational), (Status::Queued, true));
        // eventId keys the event; else the click's url tells clicks apart.
        let a = track("OPENED", json!({"eventId":"ev-1"}));
        let b = track("CLICKED", json!({"eventId":"ev-1"}));
        assert_eq!(a.idempotency_key, b.idempotency_key);
        assert_ne!(
            track("CLICKED", json!({"url":"https://a"})).idempotency_key,
            track("CLICKED", json!({"url":"https://b"})).idempotency_key
        );
        assert!(matches!(
            run(br#"{"notificationType":"OPENED"}"#),
            Err(NormalizeError::MissingField(_))
        ));
        assert!(matches!(
            run(br#"{"notificationType":"OPENED","recipient":"a@b.c","messageId":1.5}"#),
            Err(NormalizeError::InvalidField { .. })
        ));
        assert!(matches!(
            run(br#"{"notificationType":7,"recipient":"a@b.c"}"#),
            Err(NormalizeError::InvalidField { .. })
        ));
    }

    #[test]
    fn inbound_sms() {
        let e = one(SMS_INBOUND);
        assert_eq!(e.channel, Channel::Sms);
        assert_eq!(e.channel_value, "+385916242493");
        assert_eq!(e.vendor_ack_id.as_deref(), Some("817790313235066447"));
        assert_eq!(e.correlation["callbackData"], "callbackData");
        let m = inbound_of(&e);
        assert_eq!(m.from, "+385916242493");
        assert_eq!(m.to, "+385921004026");
        assert_eq!(m.message_type, "text");
        assert_eq!(m.text.as_deref(), Some("QUIZ Correct answer is Paris"));
        assert_eq!(m.timestamp_ms, 1_475_746_119_220);
        assert_eq!(m.source_message_id, "817790313235066447");
        assert!(e.channel_user.is_empty());
    }

    #[test]
    fn inbound_whatsapp() {
        for body in [WA_TEXT, WA_TEXT_NULLS] {
            let e = one(body);
            assert_eq!(e.channel, Channel::Whatsapp);
            assert_eq!(e.channel_value, "+385919998888");
            let m = inbound_of(&e);
            assert_eq!(m.message_type, "text");
            assert_eq!(m.text.as_deref(), Some("Support hello"));
            assert!(e.correlation.is_empty(), "{:?}", e.correlation);
        }
        let m = inbound_of(&one(WA_TEXT_NULLS)).clone();
        assert_eq!(m.to, "1234", "a short code stays as sent");
        assert_eq!(m.timestamp_ms, 1_563_535_287_861);

        let e = one(WA_IMAGE);
        let m = inbound_of(&e);
        assert_eq!(m.message_type, "image");
        assert_eq!(m.text.as_deref(), Some("Image Caption"));
        assert_eq!(
            m.media,
            vec![Media::at(
                "https://{base_url}/whatsapp/1/senders/447796344125/media/f1b96d31-9ab9-4513-808b-50ab37360fbe",
                None
            )]
        );
        assert_eq!(m.to, "+41793026731");
        assert_eq!(e.correlation["callbackData"], "callbackData");

        let e = one(WA_LOCATION);
        let m = inbound_of(&e);
        assert_eq!(m.message_type, "location");
        assert_eq!(
            m.location,
            Some(Location {
                latitude: 40.748433333333,
                longitude: -73.985655555556,
                name: Some("Empire State Building".into()),
                address: Some("350 5th Ave, New York, NY".into()),
            })
        );
        assert_eq!(m.timestamp_ms, 1_735_726_200_000);
    }

    #[test]
    fn inbound_whatsapp_types_and_context() {
        let mo = |message: Value| {
            let body = report(json!({"from":"385919998888","to":"41793026731",
                "integrationType":"WHATSAPP","receivedAt":"2025-01-01T10:10:00.000+0000",
                "messageId":"wamid.1","message":message}));
            inbound_of(&one(&body)).clone()
        };
        let reply = mo(json!({"id":"consultar_saldo","title":"consultar saldo",
            "context":{"from":"447860064956","id":"64a47cb5","groupId":null},
            "type":"INTERACTIVE_LIST_REPLY"}));
        assert_eq!(reply.message_type, "interactive");
        assert_eq!(reply.text.as_deref(), Some("consultar saldo"));
        assert_eq!(
            reply.context,
            Some(ReplyContext {
                id: "64a47cb5".into(),
                from: Some("+447860064956".into()),
            })
        );
        let cases = [
            (
                json!({"type":"BUTTON","text":"Yes","payload":"p"}),
                "button",
                Some("Yes"),
            ),
            (json!({"type":"BUTTON","payload":"p"}), "button", Some("p")),
            (json!({"type":"VOICE","url":"https://x/v"}), "audio", None),
            (json!({"type":"AUDIO","url":"https://x/a"}), "audio", None),
            (
                json!({"type":"DOCUMENT","url":"https://x/d","caption":"c"}),
                "document",
                Some("c"),
            ),
            (
                json!({"type":"STICKER","url":"https://x/s"}),
                "sticker",
                None,
            ),
            (
                json!({"type":"VIDEO","url":"https://x/v","caption":"v"}),
                "video",
                Some("v"),
            ),
            (json!({"type":"CONTACT","contacts":[]}), "contacts", None),
            (
                json!({"type":"REACTION","emoji":"👍","context":{"id":"wamid.0"}}),
                "reaction",
                Some("👍"),
            ),
            (
                json!({"type":"ORDER","text":"order text","catalogId":"c"}),
                "order",
                Some("order text"),
            ),
            (
                json!({"type":"INTERACTIVE_FLOW_REPLY","text":"Sent","response":"{}"}),
                "interactive",
                Some("Sent"),
            ),
            (json!({"type":"UNSUPPORTED"}), "unsupported", None),
            (json!({"type":"INFECTED_CONTENT"}), "infected_content", None),
            (json!({"text":"no type"}), "unknown", None),
        ];
        for (message, kind, text) in cases {
            let m = mo(message.clone());
            assert_eq!(m.message_type, kind, "{message}");
            assert_eq!(m.text.as_deref(), text, "{message}");
        }
        assert_eq!(
            mo(json!({"type":"VOICE","url":"https://x/v"})).media.len(),
            1
        );
        assert_eq!(
            mo(json!({"type":"REACTION","emoji":"👍","context":{"id":"wamid.0"}}))
                .context
                .map(|c| c.id),
            Some("wamid.0".into())
        );
    }

    #[test]
    fn whatsapp_users_without_a_number() {
        let mo = |from: Value, contact: Value| {
            let body = report(
                json!({"from":from,"to":"41793026731","integrationType":"WHATSAPP",
                "receivedAt":"2025-01-01T10:10:00.000+0000","messageId":"wamid.2",
                "message":{"text":"hi","type":"TEXT"},"contact":contact}),
            );
            one(&body)
        };
        let e = mo(
            json!("9999999999"),
            json!({"name":"Frank","phoneNumber":"9999999999","userId":"HR.123123123",
                "parentUserId":"HR.ENT.456456456","username":"Frank"}),
        );
        assert_eq!(e.channel_value, "+9999999999");
        assert_eq!(
            e.channel_user,
            ChannelUser {
                user_id: Some("HR.123123123".into()),
                parent_user_id: Some("HR.ENT.456456456".into()),
                username: Some("Frank".into()),
            }
        );
        // The number withheld: the BSUID is the address, never given a `+`.
        let e = mo(Value::Null, json!({"userId":"US.13491208655302741918"}));
        assert_eq!(e.channel_value, "US.13491208655302741918");
        assert_eq!(inbound_of(&e).from, "US.13491208655302741918");
        let e = mo(json!("US.1234567"), json!({}));
        assert_eq!(e.channel_value, "US.1234567");
        // Nobody named: unparsed.
        let body = report(json!({"messageId":"wamid.3","message":{"type":"TEXT","text":"x"}}));
        let out = run(&body).expect("accepted");
        assert_eq!((out.events.len(), out.unparsed.len()), (0, 1));
        assert!(out.unparsed[0].reason.contains("/results/0/from"));
    }

    #[test]
    fn notifications_about_no_message_are_ignored() {
        for (body, what) in [
            (WA_TEMPLATE, "template update"),
            (WA_IDENTITY, "notification of type user_identity_changed"),
            (WA_PAYMENT, "notification of type payment"),
        ] {
            let out = run(body).expect("accepted");
            assert!(out.events.is_empty() && out.unparsed.is_empty());
            assert_eq!(
                out.control,
                Some(Control::Ignored {
                    reason: format!("1 Infobip WhatsApp {what}, about no message, not delivered")
                })
            );
        }
        let long = format!(r#"{{"content":{{"type":"{}\n"}}}}"#, "x".repeat(500));
        let Some(Control::Ignored { reason }) = run(long.as_bytes()).expect("ok").control else {
            panic!("ignored expected")
        };
        assert!(reason.len() < 200 && !reason.contains('\n'), "{reason}");
    }

    #[test]
    fn batch_elements_that_cannot_be_normalized_are_kept() {
        let good = r#"{"messageId":"m-1","to":"41793026727","status":{"groupId":3,"name":"DELIVERED_TO_HANDSET"}}"#;
        let bad: &[&str] = &[
            "1",
            r#"{"to":"41793026727"}"#,
            r#"{"to":"41793026727","status":{"groupId":3}}"#,
            r#"{"messageId":1.5,"status":{"groupId":3}}"#,
            r#"{"messageId":"m","status":"DELIVERED"}"#,
            r#"{"messageId":"m","status":{"groupId":3},"doneAt":"soon"}"#,
            r#"{"messageId":"m","status":{"groupId":3},"doneAt":"x\u00e9aaaa"}"#,
            r#"{"messageId":"m","status":{"groupId":3},"doneAt":17}"#,
            r#"{"messageId":"m","status":{"groupId":3},"channel":"VIBER"}"#,
            r#"{"messageId":"m","seenAt":"later"}"#,
            r#"{"messageId":"m","from":"1","integrationType":"RCS","message":{"type":"TEXT"}}"#,
        ];
        for element in bad {
            let body = format!(r#"{{"results":[{good},{element}]}}"#);
            let out = run(body.as_bytes()).expect("the batch is accepted");
            assert_eq!(out.events.len(), 1, "{element}");
            assert_eq!(out.unparsed.len(), 1, "{element}");
            assert_eq!(out.unparsed[0].raw, *element);
            assert!(
                out.unparsed[0].reason.contains("/results/1"),
                "{}",
                out.unparsed[0].reason
            );
            let again = run(out.unparsed[0].replay_body().as_bytes()).expect("an Infobip body");
            assert_eq!(
                (again.events.len(), again.unparsed.len()),
                (0, 1),
                "{element}"
            );
        }
        let deep = format!(
            r#"{{"messageId":"m","status":{{"groupId":3}},"x":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let long = format!(
            r#"{{"messageId":"m","status":{{"groupId":3}},"x":{}}}"#,
            "7".repeat(500)
        );
        let out =
            run(format!(r#"{{"results":[{good},{deep},{long}]}}"#).as_bytes()).expect("accepted");
        assert_eq!(out.events.len(), 1);
        let raws: Vec<&str> = out.unparsed.iter().map(|u| u.raw.as_str()).collect();
        assert_eq!(raws, [deep.as_str(), long.as_str()]);
        assert_eq!(run(br#"{"results":[]}"#).expect("empty").events.len(), 0);
    }

    #[test]
    fn a_tracking_event_beyond_the_limits_is_kept_whole() {
        let deep = format!(
            r#"{{"notificationType":"OPENED","recipient":"a@b.c","x":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let out = run(deep.as_bytes()).expect("kept");
        assert!(out.events.is_empty());
        assert_eq!(out.unparsed.len(), 1);
        assert_eq!(out.unparsed[0].raw, deep);
    }

    #[test]
    fn ids_stay_exact() {
        let body = report(
            json!({"messageId": 18446744073709551615_u64, "to": "41793026727",
            "status": {"groupId": 3, "name": "DELIVERED_TO_HANDSET"}}),
        );
        assert_eq!(
            one(&body).vendor_ack_id.as_deref(),
            Some("18446744073709551615")
        );
    }

    #[test]
    fn non_ascii_survives() {
        let body = report(
            json!({"messageId":"m-ü","from":"385916242493","to":"385921004026",
            "text":"Grüße 👋 日本語","receivedAt":"2016-10-06T09:28:39.220+0000",
            "callbackData":"Müller ☃"}),
        );
        let e = one(&body);
        assert_eq!(inbound_of(&e).text.as_deref(), Some("Grüße 👋 日本語"));
        assert_eq!(e.correlation["callbackData"], "Müller ☃");
        assert_eq!(e.vendor_ack_id.as_deref(), Some("m-ü"));
        let e = one(&report(json!({"messageId":"m","to":"zoë@例え.jp",
            "status":{"groupId":3,"name":"DELIVERED_TO_HANDSET"}})));
        assert_eq!(e.channel, Channel::Email);
        assert_eq!(e.channel_value, "zoë@例え.jp");
    }

    #[test]
    fn idempotency_keys() {
        assert_eq!(
            events(SMS_DLR)[0].idempotency_key,
            events(SMS_DLR)[0].idempotency_key
        );
        let dlr = |name: &str, done: &str| {
            one(&report(json!({"messageId":"m","to":"1","doneAt":done,
                "status":{"groupId":1,"name":name}})))
            .idempotency_key
        };
        let t = "2019-11-09T16:00:00.000+0000";
        assert_ne!(dlr("PENDING_ENROUTE", t), dlr("PENDING_ACCEPTED", t));
        assert_ne!(
            dlr("PENDING_ENROUTE", t),
            dlr("PENDING_ENROUTE", "2019-11-09T16:00:01.000+0000")
        );
        assert_ne!(one(WA_SEEN).idempotency_key, one(WA_TEXT).idempotency_key);
        assert_eq!(
            one(WA_IMAGE).idempotency_key,
            one(WA_LOCATION).idempotency_key,
            "same messageId"
        );
    }

    #[test]
    fn malformed_input_is_an_error() {
        let cases: &[&[u8]] = &[
            b"",
            b"  ",
            b"{\"results\":[",
            b"[]",
            b"\"results\"",
            b"{}",
            b"{\"messageCount\":1}",
            b"{\"results\":{}}",
            b"{\"results\":null}",
            b"{\"content\":{\"kind\":\"x\"}}",
            b"\xff\xfe\x00garbage",
        ];
        for body in cases {
            assert!(run(body).is_err(), "{:?}", String::from_utf8_lossy(body));
        }
        let form = CallbackRequest::post(SMS_DLR.to_vec())
            .with_content_type("application/x-www-form-urlencoded");
        assert!(matches!(
            normalize(&form, &CTX),
            Err(NormalizeError::UnsupportedContentType { .. })
        ));
        assert!(normalize(&CallbackRequest::post(SMS_DLR.to_vec()), &CTX).is_ok());
        let charset = CallbackRequest::post(SMS_DLR.to_vec())
            .with_content_type("application/json; charset=UTF-8");
        assert!(normalize(&charset, &CTX).is_ok());
        let garbage = vec![b'{'; 1024 * 1024];
        assert!(run(&garbage).is_err());
        let deep = format!(r#"{{"x":{}{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
        assert!(run(deep.as_bytes()).is_err(), "not an Infobip report");
    }

    #[test]
    fn mutated_bodies_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for base in [
            SMS_DLR,
            SMS_INBOUND,
            WA_LOCATION,
            WA_SEEN,
            EMAIL_OPENED,
            WA_PAYMENT,
        ] {
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
