//! Brevo (formerly Sendinblue) transactional email and SMS webhooks, and inbound email
//! parsing.
//!
//! # Callback format
//!
//! `POST`, `Content-Type: application/json`. Three shapes reach the same route:
//!
//! - **one event object** per request (Brevo's default): a transactional email event
//!   (`event`: `request`, `delivered`, …, see the table) or an SMS event (`msg_status`:
//!   `sent`, `delivered`, …). An object that is not an event (a missing field, a value of
//!   the wrong type) refuses the callback, as for every provider that posts one event per
//!   request;
//! - **a JSON array of such objects**, when the webhook was created with `batched: true`
//!   (Brevo gathers up to 500 events over 5 minutes). Every element becomes one event; one
//!   that cannot be normalized, or is beyond the [`limits`](crate::limits), is kept as an
//!   [`Unparsed`] event with its JSON text (its replay body is `[element]`) and the rest of
//!   the batch is delivered;
//! - **`{"items": [...]}`**, Brevo's inbound parsing webhook: each item is a received
//!   email, an inbound message (below); an item that cannot be normalized is kept as
//!   unparsed (its replay body is `{"items": [item]}`).
//!
//! A body that is not JSON, or whose top level is neither an object nor an array, is a
//! [`NormalizeError`]. A single object beyond the limits is kept whole as unparsed.
//!
//! ## Email events
//!
//! - `email` is the recipient (`channel_value`), as sent. Every known event needs it; an
//!   event of an unknown name without it gets `""`;
//! - `message-id` is the `vendor_ack_id`, as sent (angle brackets included when Brevo sends
//!   them): the `messageId` that `POST /v3/smtp/email` returned. (`id` is the webhook's id,
//!   not the event's or the message's.) Marketing events name a campaign (`camp_id`)
//!   instead and have no message id;
//! - the event time is `ts_epoch` (documented as "milliseconds UTC"; a value below 10^11
//!   is read as seconds, as Brevo's own example writes it), else `ts_event` ("seconds
//!   GMT"), else the receive time. `ts` and `date` are never read: Brevo documents `date`
//!   in the account's time zone, and live captures show `ts` off from UTC by hours;
//! - correlation ids: the `X-Mailin-custom` header set at send time, its entries under
//!   their own names when it is a JSON object, else the text as `X-Mailin-custom`; then the
//!   tags, `tags` (an array) or, when absent, `tag` (Brevo's single tag, or the template's
//!   name);
//! - errors: `{code: event, message: reason}` on `failed` and `bounced` events;
//! - Brevo sends no event id: the idempotency key is a hash of the whole event (a retry
//!   of the same event is the same JSON).
//!
//! ## SMS events
//!
//! An object with `msg_status` (or one without `email` that names a phone number in `to`)
//! is an SMS event on channel `sms`: `to` is the recipient (E.164 rule of the core's phone
//! module), `messageId` (an integer) the `vendor_ack_id`, as its decimal text, never
//! through a float: the `messageId` that `POST /v3/transactionalSMS/sms` returned; the
//! time is `ts_epoch`, else `ts_event`, else the receive time; errors `{code: msg_status,
//! message: description or reason}`. A `reply` event is the user's answer to that SMS: an
//! inbound message of type `text` from the number in `to`, its text the `reply` field, its
//! `context.id` the `messageId` replied to (Brevo gives the reply itself no id, so its
//! `source_message_id` is `""`); `to` is the `sender` field when Brevo sends one, else
//! `""`.
//!
//! ## Inbound email (inbound parsing)
//!
//! Each item of `items` becomes an inbound message on channel `email` with type `email`:
//! `from` = `From.Address` (also the `channel_value`), `to` = the `To[].Address` joined with
//! `", "`, text = `RawTextBody`, or `ExtractedMarkdownMessage` when that is empty (the
//! subject stays in `vendor_response`), `context.id` = `InReplyTo` (the `Message-ID` of the
//! message replied to, which is the `messageId` Brevo returned when that message was sent),
//! `source_message_id` (and `vendor_ack_id`) = `Uuid[0]`, Brevo's id of the received email
//! (for its inbound events API; `MessageId`, the `Message-ID` header, when there is no
//! `Uuid`), time = `SentAtDate` (RFC 2822, sender-written: an inconsistent weekday is
//! ignored; the receive time when absent or unreadable). Attachments are listed as
//! `media` with their `Name`, `ContentType` and `ContentLength`; their url is the
//! `DownloadToken` (the provider's media id: the content is fetched from Brevo's API with
//! the account's API key). The idempotency key is `Uuid[0]` (else `MessageId`, else a
//! hash of the item).
//!
//! # Signature
//!
//! Brevo signs nothing. A webhook can carry HTTP Basic credentials (in its URL,
//! `https://user:pass@host/…`) or a bearer token (`auth: {type: "bearer", token}` on the
//! webhook): checked in constant time (on SHA-256 digests, so the length is not revealed
//! either) against `basic_auth` or `token`. Both arrive in the one `Authorization`
//! header, so a route configured with both could never pass: that is refused as a config
//! error. There is no timestamp, so no clock check.
//!
//! # Verify keys
//!
//! | key | value |
//! |---|---|
//! | `basic_auth` | `user:password`, compared with the `Authorization: Basic …` header |
//! | `token` | the webhook's bearer token, compared with the `Authorization: Bearer …` header |
//!
//! Exactly one is required.
//!
//! # Status mapping (email)
//!
//! | Brevo `event` | status | notes |
//! |---|---|---|
//! | `request` (Brevo's "Sent"), `sent` | `queued` | Brevo accepted the message; it may still be `blocked` |
//! | `deferred` | `queued` | informational: the receiving server delayed it |
//! | `delivered` | `delivered` | |
//! | `opened`, `unique_opened`, `proxy_open`, `unique_proxy_open` | `seen` | a proxy open is a pixel loaded by a privacy proxy (Apple Mail) |
//! | `click` | `clicked` | |
//! | `hard_bounce`, `invalid_email` | `bounced` | error `{event, reason}` |
//! | `soft_bounce`, `blocked`, `error` | `failed` | error `{event, reason}`: not delivered, but not a hard bounce of the address |
//! | `spam`, `complaint` | `complained` | |
//! | `unsubscribed`, `unsubscribe` | `unsubscribed` | |
//! | `list_addition`, `contact_updated`, `contact_deleted` (marketing webhooks) | (no event) | about a contact, not a message: named in a [`Control::Ignored`] |
//! | any other | `queued` | informational: the fallback for unknown values (no event, but a [`Control::Ignored`], when it names neither `email` nor `message-id`) |
//!
//! The camel-case names Brevo's webhook API takes (`hardBounce`, `uniqueOpened`, …) are
//! accepted too.
//!
//! # Status mapping (SMS)
//!
//! | Brevo `msg_status` | status | notes |
//! |---|---|---|
//! | `sent`, `accepted` | `sent` | handed to, and accepted by, the carrier |
//! | `delivered` | `delivered` | |
//! | `soft_bounce`, `hard_bounce`, `rejected`, `skip`, `blacklisted`, `error` | `failed` | error `{msg_status, description}` |
//! | `unsubscribe`, `unsubscribed` | `unsubscribed` | the user answered STOP |
//! | `subscribe` | `queued` | informational: the user subscribed again |
//! | `reply` | inbound message | see above |
//! | any other | `queued` | informational |

use std::fmt;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use crate::event::{ChannelUser, idempotency_key, idempotency_key_of_value};
use crate::limits::{JsonLimits, TopLevel};
use crate::phone;
use crate::provider::basic_auth::{BasicAuth, same_secret};
use crate::provider::batch_element;
use crate::provider::json::str_of;
use crate::provider::{
    Context, Control, Normalized, Unparsed, VerifyOptions, VerifySettings, ignored_events,
};
use crate::{
    CallbackRequest, Channel, ErrorInfo, Event, EventKind, InboundMessage, Media, NormalizeError,
    ReplyContext, Secret, Status, StatusUpdate, VerifyConfigError, VerifyError, timestamp,
};

/// Provider id.
const PROVIDER: &str = "brevo";
/// Keys of the `verify:` block.
const KNOWN_KEYS: &[&str] = &["basic_auth", "token"];

/// Checks Brevo's HTTP Basic credentials or its bearer token.
#[derive(Clone)]
pub struct Verifier {
    check: Check,
}

/// The one credential a route checks.
#[derive(Clone)]
enum Check {
    Basic(BasicAuth),
    Bearer(Secret),
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.check {
            Check::Basic(b) => f.debug_struct("Verifier").field("basic_auth", b).finish(),
            Check::Bearer(t) => f.debug_struct("Verifier").field("token", t).finish(),
        }
    }
}

impl Verifier {
    /// Builds the verifier from the `verify:` settings: `basic_auth` (`user:password`) or
    /// `token` (a bearer token). Exactly one must be set: both travel in the
    /// `Authorization` header, so a request can never carry both.
    pub fn from_settings(settings: &VerifySettings) -> Result<Self, VerifyConfigError> {
        settings.only(PROVIDER, KNOWN_KEYS)?;
        let basic_auth = BasicAuth::from_settings(PROVIDER, settings)?;
        let token = settings.get("token").cloned();
        let check = match (basic_auth, token) {
            (Some(_), Some(_)) => {
                return Err(VerifyConfigError::Invalid {
                    provider: PROVIDER,
                    key: "token",
                    reason: "`basic_auth` and `token` both arrive in the Authorization \
                             header, so no request could pass both: configure one"
                        .into(),
                });
            }
            (Some(basic), None) => Check::Basic(basic),
            (None, Some(token)) => Check::Bearer(token),
            (None, None) => {
                return Err(VerifyConfigError::Missing {
                    provider: PROVIDER,
                    key: "basic_auth` or `token",
                });
            }
        };
        Ok(Self { check })
    }

    /// Checks the configured credential. Brevo sends no timestamp, so `opts` has nothing
    /// to check.
    pub fn verify(&self, req: &CallbackRequest, _opts: &VerifyOptions) -> Result<(), VerifyError> {
        match &self.check {
            Check::Basic(basic) => basic.check(req),
            Check::Bearer(expected) => {
                let value = req
                    .headers
                    .get(http::header::AUTHORIZATION)
                    .ok_or(VerifyError::Missing("Authorization"))?;
                let given = bearer_token(value.as_bytes())?;
                if same_secret(given, expected.expose().as_bytes()) {
                    Ok(())
                } else {
                    Err(VerifyError::BadCredentials)
                }
            }
        }
    }
}

/// The token of an `Authorization: Bearer …` header value.
fn bearer_token(value: &[u8]) -> Result<&[u8], VerifyError> {
    let value = value.trim_ascii();
    let not_bearer = || VerifyError::Malformed("Authorization is not Bearer".into());
    let split = value
        .iter()
        .position(|b| *b == b' ')
        .ok_or_else(not_bearer)?;
    let (scheme, token) = value.split_at(split);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(not_bearer());
    }
    Ok(token.trim_ascii())
}

/// Brevo's inbound parsing envelope, its items kept as JSON text.
#[derive(Deserialize)]
struct Items<'a> {
    #[serde(borrow)]
    items: Vec<&'a RawValue>,
}

/// Normalizes one Brevo callback: an event object, a batch of them, or an inbound parsing
/// post (see the module docs).
pub fn normalize(req: &CallbackRequest, ctx: &Context) -> Result<Normalized, NormalizeError> {
    req.expect_content_type(PROVIDER, &["application/json"], "application/json")?;
    let Ok(text) = std::str::from_utf8(&req.body) else {
        req.json()?;
        return Err(NormalizeError::NotUtf8);
    };
    let first = text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .as_bytes()
        .first();
    match first {
        Some(b'[') => match serde_json::from_str::<Vec<&RawValue>>(text) {
            Ok(elements) => Ok(batch(
                elements,
                ctx,
                |t| format!("[{t}]"),
                |i, item, ctx| element_of(&format!("/{i}"), item, ctx),
            )),
            Err(_) => {
                req.json()?;
                Err(NormalizeError::shape("", "a JSON array of Brevo events"))
            }
        },
        Some(b'{') => {
            if let Ok(Items { items }) = serde_json::from_str::<Items>(text) {
                return Ok(batch(
                    items,
                    ctx,
                    |t| format!(r#"{{"items":[{t}]}}"#),
                    |i, item, ctx| {
                        inbound_email(&format!("/items/{i}"), item, ctx)
                            .map(|e| Outcome::Event(Box::new(e)))
                    },
                ));
            }
            if let Some(unparsed) = beyond_limits(text) {
                return Ok(Normalized::one_unparsed(unparsed));
            }
            let item = req.json()?;
            Ok(match element_of("", item, ctx)? {
                Outcome::Event(event) => Normalized::events(vec![*event]),
                Outcome::Ignored(what) => Normalized::control(Control::Ignored {
                    reason: ignored_reason(&[what]),
                }),
            })
        }
        _ => {
            req.json()?;
            Err(NormalizeError::shape(
                "",
                "a JSON object (a Brevo event) or an array of them",
            ))
        }
    }
}

/// The whole body as one [`Unparsed`] event, when it is a valid JSON object beyond the
/// limits.
fn beyond_limits(text: &str) -> Option<Unparsed> {
    let exceeded = JsonLimits::default().exceeded_by_json(text, TopLevel::ObjectOrArray)?;
    Some(Unparsed::new(exceeded, text))
}

/// Normalizes each element of a batch (events, or inbound items): an element beyond the
/// limits or that `each` refuses is kept as [`Unparsed`], with `envelope` making its
/// replay body.
fn batch(
    elements: Vec<&RawValue>,
    ctx: &Context,
    envelope: impl Fn(&str) -> String,
    each: impl Fn(usize, Value, &Context) -> Result<Outcome, NormalizeError>,
) -> Normalized {
    let mut out = Normalized::events(Vec::with_capacity(elements.len()));
    let mut ignored = Vec::new();
    for (i, element) in elements.into_iter().enumerate() {
        let text = element.get();
        let normalized = batch_element(text, |item| each(i, item, ctx));
        match normalized {
            Ok(Outcome::Event(event)) => out.events.push(*event),
            Ok(Outcome::Ignored(what)) => ignored.push(what),
            Err(reason) => out
                .unparsed
                .push(Unparsed::new(reason, text).with_body(envelope(text))),
        }
    }
    if !ignored.is_empty() {
        out.control = Some(Control::Ignored {
            reason: ignored_reason(&ignored),
        });
    }
    out
}

/// What one Brevo object becomes.
enum Outcome {
    /// An event (boxed: a transient value, moved once).
    Event(Box<Event>),
    /// An event about no message: left out, described by this text.
    Ignored(String),
}

/// The reason of a [`Control::Ignored`] naming the events left out.
fn ignored_reason(ignored: &[String]) -> String {
    let (count, listed) = ignored_events(ignored, "Brevo event");
    format!("{count} about no message, not delivered: {listed}")
}

/// `event (email …)` of an event left out, each value on one line and at most 100
/// characters.
fn describe(name: &str, item: &Value) -> String {
    let short = |v: &str| -> String {
        v.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(100)
            .collect()
    };
    match str_of(item, "email") {
        Some(email) => format!("{} (email {})", short(name), short(&email)),
        None => short(name),
    }
}

/// The event time: `ts_epoch`, else `ts_event`, else the receive time.
fn event_time(path: &str, item: &Value, ctx: &Context) -> Result<i64, NormalizeError> {
    for field in ["ts_epoch", "ts_event"] {
        match item.get(field) {
            None | Some(Value::Null) => continue,
            Some(v) => {
                return timestamp::value_to_ms(v).ok_or_else(|| {
                    NormalizeError::invalid(format!("{path}/{field}"), "not a Unix timestamp")
                });
            }
        }
    }
    Ok(ctx.received_at_ms)
}

/// A required string field of `item`.
fn required_str(path: &str, item: &Value, key: &str) -> Result<String, NormalizeError> {
    match item.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            Err(NormalizeError::MissingField(format!("{path}/{key}")))
        }
        Some(_) => Err(NormalizeError::invalid(
            format!("{path}/{key}"),
            "not a string",
        )),
    }
}

/// Normalizes one event object (email or SMS).
fn element_of(path: &str, item: Value, ctx: &Context) -> Result<Outcome, NormalizeError> {
    if !item.is_object() {
        return Err(NormalizeError::shape(
            path.to_owned(),
            "a Brevo event object",
        ));
    }
    let sms = item.get("msg_status").is_some()
        || (item.get("email").is_none() && item.get("to").is_some());
    if sms {
        sms_event(path, item, ctx)
    } else {
        email_event(path, item, ctx)
    }
}

/// What an email event means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EmailMapping {
    /// A status about a message.
    Status {
        status: Status,
        informational: bool,
        /// A documented event (these need their recipient).
        known: bool,
    },
    /// About a contact, not a message.
    Contact,
}

/// Maps an email `event` name; see the module table.
fn map_email(name: &str) -> EmailMapping {
    let s = |status, informational| EmailMapping::Status {
        status,
        informational,
        known: true,
    };
    match name {
        "request" | "sent" => s(Status::Queued, false),
        "deferred" => s(Status::Queued, true),
        "delivered" => s(Status::Delivered, false),
        "opened" | "unique_opened" | "uniqueOpened" | "proxy_open" | "unique_proxy_open" => {
            s(Status::Seen, false)
        }
        "click" => s(Status::Clicked, false),
        "hard_bounce" | "hardBounce" | "invalid_email" | "invalid" => s(Status::Bounced, false),
        "soft_bounce" | "softBounce" | "blocked" | "error" => s(Status::Failed, false),
        "spam" | "complaint" => s(Status::Complained, false),
        "unsubscribed" | "unsubscribe" => s(Status::Unsubscribed, false),
        "list_addition" | "listAddition" | "contact_updated" | "contactUpdated"
        | "contact_deleted" | "contactDeleted" => EmailMapping::Contact,
        _ => EmailMapping::Status {
            status: Status::Queued,
            informational: true,
            known: false,
        },
    }
}

/// Correlation ids: `X-Mailin-custom` (its entries when it is a JSON object), then `tags`
/// or `tag`.
fn correlation(item: &Value) -> Map<String, Value> {
    let mut map = Map::new();
    if let Some(custom) = item.get("X-Mailin-custom").and_then(Value::as_str) {
        match serde_json::from_str::<Value>(custom) {
            Ok(Value::Object(entries)) => map = entries,
            _ if !custom.trim().is_empty() => {
                map.insert("X-Mailin-custom".into(), Value::String(custom.to_owned()));
            }
            _ => {}
        }
    }
    let tags = item
        .get("tags")
        .filter(|t| t.as_array().is_some_and(|a| !a.is_empty()));
    if let Some(tags) = tags {
        map.entry("tags").or_insert(tags.clone());
    } else if let Some(tag) = item.get("tag").filter(|t| match t {
        Value::String(s) => !s.trim().is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }) {
        map.entry("tag").or_insert(tag.clone());
    }
    map
}

/// A transactional (or marketing) email event.
fn email_event(path: &str, item: Value, ctx: &Context) -> Result<Outcome, NormalizeError> {
    let name = required_str(path, &item, "event")?;
    let (status, informational, known) = match map_email(&name) {
        EmailMapping::Contact => return Ok(Outcome::Ignored(describe(&name, &item))),
        EmailMapping::Status {
            status,
            informational,
            known,
        } => (status, informational, known),
    };
    let message_id = str_of(&item, "message-id");
    let email = match item.get("email") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) if !known => {
            if message_id.is_none() {
                // Names neither a recipient nor a message.
                return Ok(Outcome::Ignored(describe(&name, &item)));
            }
            String::new()
        }
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(NormalizeError::MissingField(format!("{path}/email")));
        }
        Some(_) => {
            return Err(NormalizeError::invalid(
                format!("{path}/email"),
                "not a string",
            ));
        }
    };
    let timestamp_ms = event_time(path, &item, ctx)?;
    let error = matches!(status, Status::Failed | Status::Bounced)
        .then(|| {
            ErrorInfo::from_parts(
                Some(name.clone()),
                str_of(&item, "reason").map(|r| r.trim().to_owned()),
            )
        })
        .flatten();
    Ok(Outcome::Event(Box::new(Event {
        channel: Channel::Email,
        channel_value: email,
        channel_user: ChannelUser::default(),
        vendor_name: PROVIDER.to_owned(),
        vendor_ack_id: message_id,
        idempotency_key: idempotency_key_of_value(PROVIDER, &item),
        correlation: correlation(&item),
        kind: EventKind::Status(StatusUpdate {
            status,
            timestamp_ms,
            error,
            informational,
        }),
        raw: item.into(),
    })))
}

/// What an SMS status means: a status, or the user's reply.
enum SmsMapping {
    Status(Status, bool),
    Reply,
}

/// Maps an SMS `msg_status` (underscores and case ignored); see the module table.
fn map_sms(name: &str) -> SmsMapping {
    let folded: String = name
        .chars()
        .filter(|c| *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    match folded.as_str() {
        "sent" | "accepted" => SmsMapping::Status(Status::Sent, false),
        "delivered" => SmsMapping::Status(Status::Delivered, false),
        "softbounce" | "hardbounce" | "rejected" | "skip" | "skipped" | "blacklisted" | "error" => {
            SmsMapping::Status(Status::Failed, false)
        }
        "unsubscribe" | "unsubscribed" => SmsMapping::Status(Status::Unsubscribed, false),
        "reply" | "replied" => SmsMapping::Reply,
        _ => SmsMapping::Status(Status::Queued, true),
    }
}

/// An SMS event: a status, or a reply (an inbound message).
fn sms_event(path: &str, item: Value, ctx: &Context) -> Result<Outcome, NormalizeError> {
    let name = match item.get("msg_status") {
        Some(_) => required_str(path, &item, "msg_status")?,
        None => required_str(path, &item, "event")?,
    };
    let number = str_of(&item, "to")
        .map(|n| phone::e164(&n))
        .ok_or_else(|| NormalizeError::MissingField(format!("{path}/to")))?;
    let message_id = str_of(&item, "messageId");
    let timestamp_ms = event_time(path, &item, ctx)?;
    let idempotency_key = idempotency_key_of_value(PROVIDER, &item);
    let mut correlation = Map::new();
    for key in ["tag", "tags"] {
        if let Some(v) = item.get(key).filter(|v| match v {
            Value::String(s) => !s.trim().is_empty(),
            Value::Array(a) => !a.is_empty(),
            _ => false,
        }) {
            correlation.insert(key.to_owned(), v.clone());
        }
    }
    let kind = match map_sms(&name) {
        SmsMapping::Status(status, informational) => EventKind::Status(StatusUpdate {
            status,
            timestamp_ms,
            error: (status == Status::Failed)
                .then(|| {
                    ErrorInfo::from_parts(
                        Some(name.clone()),
                        str_of(&item, "description").or_else(|| str_of(&item, "reason")),
                    )
                })
                .flatten(),
            informational,
        }),
        SmsMapping::Reply => EventKind::Inbound(InboundMessage {
            from: number.clone(),
            to: str_of(&item, "sender").unwrap_or_default(),
            message_type: "text".into(),
            text: str_of(&item, "reply"),
            media: Vec::new(),
            location: None,
            context: message_id.clone().map(|id| ReplyContext { id, from: None }),
            timestamp_ms,
            source_message_id: String::new(),
            original_message_id: None,
        }),
    };
    Ok(Outcome::Event(Box::new(Event {
        channel: Channel::Sms,
        channel_value: number,
        channel_user: ChannelUser::default(),
        vendor_name: PROVIDER.to_owned(),
        vendor_ack_id: message_id,
        idempotency_key,
        correlation,
        kind,
        raw: item.into(),
    })))
}

/// Parses an email date (RFC 2822), ignoring an inconsistent weekday.
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

/// An item of Brevo's inbound parsing webhook: a received email.
fn inbound_email(path: &str, item: Value, ctx: &Context) -> Result<Event, NormalizeError> {
    if !item.is_object() {
        return Err(NormalizeError::shape(
            path.to_owned(),
            "an inbound email object",
        ));
    }
    let from = item
        .pointer("/From/Address")
        .and_then(Value::as_str)
        .filter(|a| !a.trim().is_empty())
        .map(str::to_owned)
        .ok_or_else(|| NormalizeError::MissingField(format!("{path}/From/Address")))?;
    let to = item
        .get("To")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|r| r.get("Address").and_then(Value::as_str))
                .filter(|a| !a.trim().is_empty())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let text = str_of(&item, "RawTextBody").or_else(|| str_of(&item, "ExtractedMarkdownMessage"));
    let uuid = item
        .pointer("/Uuid/0")
        .and_then(Value::as_str)
        .filter(|u| !u.trim().is_empty())
        .map(str::to_owned);
    let header_id = str_of(&item, "MessageId");
    let source_message_id = uuid
        .clone()
        .or_else(|| header_id.clone())
        .unwrap_or_default();
    let media = item
        .get("Attachments")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter(|a| a.is_object())
                .map(|a| Media {
                    url: str_of(a, "DownloadToken").unwrap_or_default(),
                    content_type: str_of(a, "ContentType"),
                    name: str_of(a, "Name"),
                    size: a.get("ContentLength").and_then(Value::as_u64),
                })
                .collect()
        })
        .unwrap_or_default();
    let timestamp_ms = item
        .get("SentAtDate")
        .and_then(Value::as_str)
        .and_then(mail_date_ms)
        .unwrap_or(ctx.received_at_ms);
    let idempotency_key = match uuid.as_deref().or(header_id.as_deref()) {
        Some(id) => idempotency_key(PROVIDER, &["inbound", id]),
        None => idempotency_key_of_value(PROVIDER, &item),
    };
    Ok(Event {
        channel: Channel::Email,
        channel_value: from.clone(),
        channel_user: ChannelUser::default(),
        vendor_name: PROVIDER.to_owned(),
        vendor_ack_id: (!source_message_id.is_empty()).then(|| source_message_id.clone()),
        idempotency_key,
        correlation: Map::new(),
        kind: EventKind::Inbound(InboundMessage {
            from,
            to,
            message_type: "email".into(),
            text,
            media,
            location: None,
            context: str_of(&item, "InReplyTo").map(|id| ReplyContext { id, from: None }),
            timestamp_ms,
            source_message_id,
            original_message_id: None,
        }),
        raw: item.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use http::{HeaderName, HeaderValue};
    use serde_json::json;

    const REQUEST: &[u8] = include_bytes!("../../tests/fixtures/brevo/email_request.json");
    const DELIVERED: &[u8] = include_bytes!("../../tests/fixtures/brevo/email_delivered.json");
    const HARD_BOUNCE: &[u8] = include_bytes!("../../tests/fixtures/brevo/email_hard_bounce.json");
    const SOFT_BOUNCE: &[u8] = include_bytes!("../../tests/fixtures/brevo/email_soft_bounce.json");
    const BLOCKED: &[u8] = include_bytes!("../../tests/fixtures/brevo/email_blocked.json");
    const DEFERRED: &[u8] = include_bytes!("../../tests/fixtures/brevo/email_deferred.json");
    const OPENED: &[u8] = include_bytes!("../../tests/fixtures/brevo/email_opened.json");
    const UNIQUE_OPENED: &[u8] =
        include_bytes!("../../tests/fixtures/brevo/email_unique_opened.json");
    const PROXY_OPEN: &[u8] = include_bytes!("../../tests/fixtures/brevo/email_proxy_open.json");
    const CLICK: &[u8] = include_bytes!("../../tests/fixtures/brevo/email_click.json");
    const ERROR: &[u8] = include_bytes!("../../tests/fixtures/brevo/email_error.json");
    const COMPLAINT: &[u8] = include_bytes!("../../tests/fixtures/brevo/email_complaint.json");
    const INBOUND: &[u8] = include_bytes!("../../tests/fixtures/brevo/inbound_items.json");
    const SMS_SENT: &[u8] = include_bytes!("../../tests/fixtures/brevo/sms_sent.json");

    const CTX: Context = Context {
        received_at_ms: 1_700_000_000_000,
    };
    /// `ts_epoch` of the live captures: 2018-03-06 19:10:23 UTC.
    const LIVE_MS: i64 = 1_520_363_423_000;

    fn run(body: &[u8]) -> Result<Normalized, NormalizeError> {
        normalize(
            &CallbackRequest::post(body.to_vec()).with_content_type("application/json"),
            &CTX,
        )
    }

    fn one(body: &[u8]) -> Event {
        let mut out = run(body).expect("normalize");
        assert!(out.unparsed.is_empty(), "{:?}", out.unparsed);
        assert_eq!(out.events.len(), 1);
        out.events.remove(0)
    }

    fn one_json(v: Value) -> Event {
        one(v.to_string().as_bytes())
    }

    fn status_of(e: &Event) -> &StatusUpdate {
        e.status().expect("status event")
    }

    fn settings(pairs: &[(&str, &str)]) -> VerifySettings {
        pairs
            .iter()
            .fold(VerifySettings::new(), |s, (k, v)| s.with(*k, *v))
    }

    fn authorized(value: &str) -> CallbackRequest {
        let mut req = CallbackRequest::post(DELIVERED.to_vec());
        req.headers.insert(
            HeaderName::from_static("authorization"),
            HeaderValue::from_str(value).expect("header"),
        );
        req
    }

    #[test]
    fn basic_auth_verifies() {
        let v = Verifier::from_settings(&settings(&[("basic_auth", "username:password")]))
            .expect("verifier");
        let opts = VerifyOptions::default();
        let good = format!("Basic {}", STANDARD.encode("username:password"));
        v.verify(&authorized(&good), &opts)
            .expect("valid credentials");
        let bad = format!("Basic {}", STANDARD.encode("username:passworD"));
        assert!(matches!(
            v.verify(&authorized(&bad), &opts),
            Err(VerifyError::BadCredentials)
        ));
        assert!(
            v.verify(&authorized("Bearer username:password"), &opts)
                .is_err()
        );
        assert!(matches!(
            v.verify(&CallbackRequest::post(DELIVERED.to_vec()), &opts),
            Err(VerifyError::Missing(_))
        ));
    }

    #[test]
    fn bearer_token_verifies() {
        let v = Verifier::from_settings(&settings(&[("token", "your-secret-token")]))
            .expect("verifier");
        let opts = VerifyOptions::default();
        v.verify(&authorized("Bearer your-secret-token"), &opts)
            .expect("valid token");
        v.verify(&authorized("bearer   your-secret-token "), &opts)
            .expect("scheme is case-insensitive, spaces ignored");
        for wrong in [
            "Bearer your-secret-tokeN",
            "Bearer your-secret-token2",
            "Bearer your-secret-toke",
        ] {
            assert!(
                matches!(
                    v.verify(&authorized(wrong), &opts),
                    Err(VerifyError::BadCredentials)
                ),
                "{wrong}"
            );
        }
        for malformed in [
            "your-secret-token",
            "Basic eW91ci1zZWNyZXQtdG9rZW4=",
            "Bearer",
        ] {
            assert!(
                matches!(
                    v.verify(&authorized(malformed), &opts),
                    Err(VerifyError::Malformed(_))
                ),
                "{malformed}"
            );
        }
        assert!(matches!(
            v.verify(&authorized("Bearer "), &opts),
            Err(VerifyError::Malformed(_) | VerifyError::BadCredentials)
        ));
        assert!(matches!(
            v.verify(&CallbackRequest::post(DELIVERED.to_vec()), &opts),
            Err(VerifyError::Missing(_))
        ));
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
        assert!(missing(&settings(&[("token", " ")])));
        assert!(matches!(
            Verifier::from_settings(&settings(&[("basic_auth", "no-colon")])),
            Err(VerifyConfigError::Invalid { .. })
        ));
        // Both keys use the Authorization header: never satisfiable, refused.
        let both = Verifier::from_settings(&settings(&[("basic_auth", "u:p"), ("token", "t")]));
        let Err(VerifyConfigError::Invalid { key, reason, .. }) = both else {
            panic!("both keys must be refused")
        };
        assert_eq!(key, "token");
        assert!(reason.contains("Authorization"), "{reason}");
        assert!(matches!(
            Verifier::from_settings(&settings(&[("token", "t"), ("secret", "x")])),
            Err(VerifyConfigError::Unknown { .. })
        ));
        for v in [
            Verifier::from_settings(&settings(&[("basic_auth", "user:hunter2")])),
            Verifier::from_settings(&settings(&[("token", "sekrit")])),
        ] {
            let dbg = format!("{:?}", v.expect("verifier"));
            assert!(!dbg.contains("hunter2") && !dbg.contains("sekrit"), "{dbg}");
        }
    }

    #[test]
    fn every_email_fixture_maps() {
        let cases: [(&[u8], Status, bool); 12] = [
            (REQUEST, Status::Queued, false),
            (DELIVERED, Status::Delivered, false),
            (HARD_BOUNCE, Status::Bounced, false),
            (SOFT_BOUNCE, Status::Failed, false),
            (BLOCKED, Status::Failed, false),
            (DEFERRED, Status::Queued, true),
            (OPENED, Status::Seen, false),
            (UNIQUE_OPENED, Status::Seen, false),
            (PROXY_OPEN, Status::Seen, false),
            (CLICK, Status::Clicked, false),
            (ERROR, Status::Failed, false),
            (COMPLAINT, Status::Complained, false),
        ];
        for (body, want, informational) in cases {
            let e = one(body);
            let s = status_of(&e);
            let name = e.raw.to_value()["event"].clone();
            assert_eq!((s.status, s.informational), (want, informational), "{name}");
            assert_eq!(e.channel, Channel::Email);
            assert!(e.channel_value.contains('@'), "{name}");
            assert!(e.vendor_ack_id.is_some(), "{name}");
            assert_eq!(
                s.error.is_some(),
                matches!(want, Status::Failed | Status::Bounced)
            );
        }
        let request = one(REQUEST);
        assert_eq!(request.channel_value, "recipient@example.com");
        assert_eq!(
            request.vendor_ack_id.as_deref(),
            Some("<201803062010.27287306012@smtp-relay.mailin.fr>")
        );
        // ts_epoch (ms, UTC) wins over ts and ts_event.
        assert_eq!(status_of(&request).timestamp_ms, LIVE_MS);
        assert_eq!(
            Value::Object(request.correlation.clone()),
            json!({"meta": "data", "tags": ["tag1", "tag2"]})
        );
        assert_eq!(
            status_of(&one(HARD_BOUNCE)).error,
            Some(ErrorInfo {
                code: Some("hard_bounce".into()),
                message: Some(
                    "RecipientError: 550 5.5.0 Requested action not taken: mailbox unavailable."
                        .into()
                ),
            })
        );
        assert_eq!(
            Value::Object(one(HARD_BOUNCE).correlation),
            json!({"tag": "header-tag"})
        );
        // Brevo's documented example writes ts_epoch in seconds.
        assert_eq!(status_of(&one(ERROR)).timestamp_ms, 1_604_933_623_000);
        // No ts_epoch nor ts_event: the receive time.
        assert_eq!(status_of(&one(PROXY_OPEN)).timestamp_ms, CTX.received_at_ms);
        assert_eq!(
            Value::Object(one(PROXY_OPEN).correlation),
            json!({"tag": ["transactionalTag"]})
        );
    }

    #[test]
    fn names_map() {
        let status = |event: &str| {
            let e = one_json(
                json!({"event": event, "email": "a@b.c", "message-id": "<m@x>",
                "ts_event": 1604933654, "reason": " why "}),
            );
            let s = status_of(&e).clone();
            (s.status, s.informational)
        };
        for (name, want) in [
            ("sent", (Status::Queued, false)),
            ("invalid_email", (Status::Bounced, false)),
            ("invalid", (Status::Bounced, false)),
            ("hardBounce", (Status::Bounced, false)),
            ("softBounce", (Status::Failed, false)),
            ("uniqueOpened", (Status::Seen, false)),
            ("unique_proxy_open", (Status::Seen, false)),
            ("spam", (Status::Complained, false)),
            ("unsubscribed", (Status::Unsubscribed, false)),
            ("unsubscribe", (Status::Unsubscribed, false)),
            ("something_new", (Status::Queued, true)),
        ] {
            assert_eq!(status(name), want, "{name}");
        }
        let e = one_json(json!({"event": "invalid_email", "email": "a@b.c", "reason": " why "}));
        assert_eq!(
            status_of(&e).error,
            Some(ErrorInfo {
                code: Some("invalid_email".into()),
                message: Some("why".into())
            })
        );
        assert_eq!(status_of(&e).timestamp_ms, CTX.received_at_ms);
        // An unknown event with a message id but no recipient: an empty address.
        let e = one_json(json!({"event": "something_new", "message-id": "<m@x>"}));
        assert_eq!(e.channel_value, "");
        // A custom header that is not a JSON object is kept as text.
        let e = one_json(json!({"event": "delivered", "email": "a@b.c",
            "X-Mailin-custom": "some_custom_header"}));
        assert_eq!(
            Value::Object(e.correlation),
            json!({"X-Mailin-custom": "some_custom_header"})
        );
    }

    #[test]
    fn contact_events_are_left_out() {
        let out = run(
            json!({"event": "list_addition", "email": "a@b.c", "list_id": [3]})
                .to_string()
                .as_bytes(),
        )
        .expect("normalize");
        assert!(out.events.is_empty() && out.unparsed.is_empty());
        assert_eq!(
            out.control,
            Some(Control::Ignored {
                reason:
                    "1 Brevo event about no message, not delivered: list_addition (email a@b.c)"
                        .into()
            })
        );
        let out = run(br#"{"event": "billing_thing"}"#).expect("normalize");
        assert!(out.events.is_empty());
        assert!(matches!(out.control, Some(Control::Ignored { .. })));
    }

    #[test]
    fn batched_webhooks_are_split() {
        let body = format!(
            "[{}, {}, {}, 7, {}]",
            std::str::from_utf8(DELIVERED).expect("utf8"),
            std::str::from_utf8(CLICK).expect("utf8"),
            r#"{"event":"contact_deleted","email":"x@y.z"}"#,
            r#"{"event":"delivered"}"#
        );
        let out = run(body.as_bytes()).expect("normalize");
        let statuses: Vec<Status> = out.events.iter().map(|e| status_of(e).status).collect();
        assert_eq!(statuses, [Status::Delivered, Status::Clicked]);
        assert_eq!(out.unparsed.len(), 2);
        assert_eq!(out.unparsed[0].raw, "7");
        assert_eq!(out.unparsed[1].raw, r#"{"event":"delivered"}"#);
        assert!(
            out.unparsed[1].reason.contains("/4/email"),
            "{}",
            out.unparsed[1].reason
        );
        let again = run(out.unparsed[1].replay_body().as_bytes()).expect("a Brevo body");
        assert_eq!((again.events.len(), again.unparsed.len()), (0, 1));
        assert!(matches!(out.control, Some(Control::Ignored { .. })));
        assert_eq!(run(b"[]").expect("empty batch"), Normalized::default());
    }

    #[test]
    fn sms_events_map() {
        let e = one(SMS_SENT);
        assert_eq!(e.channel, Channel::Sms);
        assert_eq!(e.channel_value, "+918076001713");
        assert_eq!(e.vendor_ack_id.as_deref(), Some("123"));
        let s = status_of(&e);
        assert_eq!((s.status, s.informational), (Status::Sent, false));
        assert_eq!(s.timestamp_ms, CTX.received_at_ms);
        let sms = |status: &str| {
            let e = one_json(json!({"id": 26527, "status": "OK", "msg_status": status,
                "description": "delivered", "to": "919102600071", "ts_event": 1728459617,
                "date": "2024-10-09 13:10:17", "messageId": 123,
                "reference": {"1": "1hi8srff049z0qzvgt3f"}, "tag": ["tag1name"],
                "type": "transactional"}));
            assert_eq!(e.channel_value, "+919102600071");
            assert_eq!(e.correlation["tag"], json!(["tag1name"]));
            assert_eq!(e.timestamp_ms(), 1_728_459_617_000);
            e
        };
        for (name, want) in [
            ("delivered", (Status::Delivered, false)),
            ("accepted", (Status::Sent, false)),
            ("soft_bounce", (Status::Failed, false)),
            ("hardBounce", (Status::Failed, false)),
            ("rejected", (Status::Failed, false)),
            ("blacklisted", (Status::Failed, false)),
            ("unsubscribe", (Status::Unsubscribed, false)),
            ("subscribe", (Status::Queued, true)),
            ("whatever", (Status::Queued, true)),
        ] {
            let e = sms(name);
            let s = status_of(&e);
            assert_eq!((s.status, s.informational), want, "{name}");
        }
        assert_eq!(
            status_of(&sms("hard_bounce")).error,
            Some(ErrorInfo {
                code: Some("hard_bounce".into()),
                message: Some("delivered".into())
            })
        );
        // A message id beyond 2^53 stays exact.
        let big = one(br#"{"msg_status":"sent","to":"14155550100","messageId":9007199254740993}"#);
        assert_eq!(big.vendor_ack_id.as_deref(), Some("9007199254740993"));
    }

    #[test]
    fn an_sms_reply_is_an_inbound_message() {
        let e = one_json(
            json!({"msg_status": "reply", "to": "33612345678", "messageId": 123,
            "reply": "Oui, merci ! 👍", "ts_event": 1728459617}),
        );
        assert_eq!(e.channel, Channel::Sms);
        assert_eq!(e.channel_value, "+33612345678");
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound expected")
        };
        assert_eq!(m.from, "+33612345678");
        assert_eq!(m.message_type, "text");
        assert_eq!(m.text.as_deref(), Some("Oui, merci ! 👍"));
        assert_eq!(m.context.as_ref().map(|c| c.id.as_str()), Some("123"));
        assert_eq!(m.source_message_id, "");
        assert_eq!(m.timestamp_ms, 1_728_459_617_000);
    }

    #[test]
    fn inbound_parsing_items() {
        let e = one(INBOUND);
        assert_eq!(e.channel, Channel::Email);
        assert_eq!(e.channel_value, "from@example.com");
        assert_eq!(
            e.vendor_ack_id.as_deref(),
            Some("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")
        );
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound expected")
        };
        assert_eq!(m.from, "from@example.com");
        assert_eq!(m.to, "test@anymail.dev");
        assert_eq!(m.message_type, "email");
        assert_eq!(
            m.text.as_deref(),
            Some("This is a *test message*.\r\n\n- Sender\r\n")
        );
        assert!(m.media.is_empty());
        assert_eq!(m.context, None);
        // "Mon, 17 Jul 2023 11:11:22 -0700"
        assert_eq!(m.timestamp_ms, 1_689_617_482_000);
        assert_eq!(m.source_message_id, "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee");
        // Attachments, a reply, several recipients, non-ASCII.
        let body = json!({"items": [{
        "MessageId": "<x@y>", "InReplyTo": "<201798300811.5787683@relay.domain.com>",
        "From": {"Name": "Zoë", "Address": "zoë@bücher.de"},
        "To": [{"Name": null, "Address": "a@example.com"}, {"Name": "B", "Address": "b@example.com"}],
        "Subject": "Grüße", "RawTextBody": "", "ExtractedMarkdownMessage": "Danke 👋",
        "SentAtDate": "Fri, 17 Jul 2023 11:11:22 -0700",
        "Attachments": [
            {"Name": "test.txt", "ContentType": "text/plain", "ContentLength": 16,
             "ContentID": null, "DownloadToken": "download-token-text"},
            {"Name": "", "ContentType": "message/rfc822", "ContentLength": 300,
             "ContentID": null, "DownloadToken": "download-token-email"}
        ]}]});
        let e = one_json(body);
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound expected")
        };
        assert_eq!(e.channel_value, "zoë@bücher.de");
        assert_eq!(m.to, "a@example.com, b@example.com");
        assert_eq!(m.text.as_deref(), Some("Danke 👋"));
        assert_eq!(m.source_message_id, "<x@y>");
        assert_eq!(
            m.context,
            Some(ReplyContext {
                id: "<201798300811.5787683@relay.domain.com>".into(),
                from: None
            })
        );
        assert_eq!(m.timestamp_ms, 1_689_617_482_000, "the weekday is ignored");
        assert_eq!(
            m.media,
            vec![
                Media {
                    url: "download-token-text".into(),
                    content_type: Some("text/plain".into()),
                    name: Some("test.txt".into()),
                    size: Some(16),
                },
                Media {
                    url: "download-token-email".into(),
                    content_type: Some("message/rfc822".into()),
                    name: None,
                    size: Some(300),
                },
            ]
        );
        // An item without a sender is kept as unparsed; the others are delivered.
        let body = format!(
            r#"{{"items": [{{"Uuid": ["u-1"]}}, {}]}}"#,
            serde_json::to_string(&json!({"From": {"Address": "a@b.c"}, "Uuid": ["u-2"]}))
                .expect("json")
        );
        let out = run(body.as_bytes()).expect("normalize");
        assert_eq!((out.events.len(), out.unparsed.len()), (1, 1));
        assert_eq!(
            out.unparsed[0].replay_body(),
            r#"{"items":[{"Uuid": ["u-1"]}]}"#
        );
        assert!(run(br#"{"items": []}"#).expect("empty").events.is_empty());
    }

    #[test]
    fn idempotency_keys() {
        let a = one(DELIVERED).idempotency_key;
        assert_eq!(a, one(DELIVERED).idempotency_key);
        assert_ne!(a, one(OPENED).idempotency_key);
        assert_ne!(
            one(INBOUND).idempotency_key,
            one_json(json!({"items": [{"From": {"Address": "a@b.c"}, "Uuid": ["other"]}]}))
                .idempotency_key
        );
    }

    #[test]
    fn malformed_input_is_an_error() {
        let cases: &[&[u8]] = &[
            b"",
            b" \n",
            b"{\"event\":\"delivered\"",
            b"\"delivered\"",
            b"5",
            b"{\"event\":5,\"email\":\"a@b.c\"}",
            b"{\"event\":\"delivered\"}",
            b"{\"email\":\"a@b.c\"}",
            b"{\"event\":\"delivered\",\"email\":7}",
            b"{\"event\":\"delivered\",\"email\":\"a@b.c\",\"ts_epoch\":\"soon\"}",
            b"{\"event\":\"delivered\",\"email\":\"a@b.c\",\"ts_epoch\":\"x\xc3\xa9aaaa\"}",
            b"{\"msg_status\":\"sent\"}",
            b"{\"msg_status\":5,\"to\":\"14155550100\"}",
            b"[{\"event\":\"delivered\"}",
            b"\xff\xfe\x00garbage",
        ];
        for body in cases {
            assert!(run(body).is_err(), "{:?}", String::from_utf8_lossy(body));
        }
        let form = CallbackRequest::post(DELIVERED.to_vec()).with_content_type("text/plain");
        assert!(matches!(
            normalize(&form, &CTX),
            Err(NormalizeError::UnsupportedContentType { .. })
        ));
        assert!(normalize(&CallbackRequest::post(DELIVERED.to_vec()), &CTX).is_ok());
        let garbage = vec![b'{'; 10 * 1024 * 1024];
        assert!(run(&garbage).is_err());
    }

    #[test]
    fn a_body_beyond_the_limits_is_kept_whole() {
        let deep = format!(
            r#"{{"event":"delivered","email":"a@b.c","x":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let out = run(deep.as_bytes()).expect("kept, not refused");
        assert!(out.events.is_empty());
        assert_eq!(out.unparsed.len(), 1);
        assert_eq!(out.unparsed[0].raw, deep);
        let truncated = &deep[..deep.len() - 10];
        assert!(run(truncated.as_bytes()).is_err());
    }

    #[test]
    fn mutated_bodies_never_panic() {
        // Truncations and one-byte replacements of real bodies (at about 400 places each):
        // errors or events, never a panic.
        for body in [REQUEST, INBOUND, SMS_SENT] {
            let step = (body.len() / 400).max(1);
            for cut in (0..body.len()).step_by(step) {
                let _ = run(&body[..cut]);
            }
            for i in (0..body.len()).step_by(step) {
                for b in [b'"', b'{', b']', b'0', b'\\', 0xff] {
                    let mut m = body.to_vec();
                    m[i] = b;
                    let _ = run(&m);
                }
            }
        }
    }
}
