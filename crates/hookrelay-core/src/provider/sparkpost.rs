//! SparkPost event webhooks (email delivery, engagement, unsubscribes) and relay webhooks
//! (inbound email).
//!
//! # Callback format
//!
//! `POST`, `Content-Type: application/json`; the body is **always a JSON array** (a batch)
//! of `{"msys": {"<group>": {…}}}` elements, one event each. The group is
//! `message_event`, `track_event`, `gen_event`, `unsubscribe_event`, `relay_event`,
//! `ab_test_event` or `ingest_event` on an event webhook, and `relay_message` on a relay
//! webhook (a received email). Every element becomes one [`Event`], or nothing (below); a
//! JSON object (or anything else) where the array belongs is a [`NormalizeError::Shape`].
//! An element that is beyond the [`limits`](crate::limits), is not an object, has no
//! `msys` object or lacks what its event needs is kept as an [`Unparsed`] event with its
//! JSON text (its replay body is `[element]`), and the rest of the batch is normalized as
//! usual.
//!
//! An empty batch `[]`, and an element whose `msys` is empty (`[{"msys": {}}]`), is what
//! SparkPost posts when a webhook is created or validated: no event, and the callback is
//! answered with a [`Control::Ignored`] that says so.
//!
//! Per event (the object inside the group):
//!
//! - `type` is the event name (`delivery`, `bounce`, `open`, …); see the table below;
//! - the recipient (`channel_value`) is `raw_rcpt_to` ("actual recipient address used on
//!   this message's SMTP envelope"), else `rcpt_to` (its lower-cased form). Every known
//!   email event needs one; an event of an unknown type without one gets `""`;
//! - `timestamp` is Unix seconds (a string of digits, as SparkPost sends it, or a number);
//!   absent means the receive time;
//! - `transmission_id` is the `vendor_ack_id`, kept as sent: it is the `results.id` the
//!   Transmissions API returned when the message was sent. (`message_id` is SparkPost's
//!   per-recipient message id, which the sender never saw; it stays in `vendor_response`.);
//! - `event_id` ("unique event identifier", documented for duplicate detection) with the
//!   event `type` gives the idempotency key (SparkPost's own samples reuse one `event_id`
//!   across types); an event without one is keyed by a hash of its whole element;
//! - correlation ids: the entries of `rcpt_meta` (the recipient's metadata set at send
//!   time) under their own names, then `campaign_id` and `rcpt_tags` (as `tags`, an array)
//!   when not empty (`rcpt_meta` wins on a clash);
//! - `error_code` (the SMTP code) and `reason` (SparkPost's redacted text of the remote
//!   server's answer; `raw_reason` when it is absent) become the error `{code, message}` of
//!   `failed` and `bounced` events.
//!
//! `vendor_response` is the whole batch element (`{"msys": {…}}`), unmodified.
//!
//! # Bounce classes
//!
//! `bounce` and `out_of_band` events carry SparkPost's `bounce_class` ("Bounce
//! Classification Codes", support.sparkpost.com), whose categories say what to do with the
//! address: only `Hard` (and `Admin`) bounces should suppress it, "`soft`, `block` and
//! `undetermined` are usually temporary". So:
//!
//! | class | name (category) | status |
//! |---|---|---|
//! | 10 | Invalid Recipient (Hard) | `bounced` |
//! | 30 | Generic Bounce: No RCPT (Hard) | `bounced` |
//! | 90 | Unsubscribe (Hard): the reply is an unsubscribe request | `unsubscribed` |
//! | 25 | Admin Failure (Admin): failed by SparkPost's policies | `failed` |
//! | 80 | Subscribe (Admin): the reply is a subscribe request | `queued`, informational |
//! | 60 | Auto-Reply (Soft): an out-of-office reply, so the message arrived | `queued`, informational |
//! | 100 | Challenge-Response (Soft): a challenge probe, the message was not refused | `queued`, informational |
//! | 20, 21, 22, 23, 24, 40, 70 | Soft Bounce, DNS Failure, Mailbox Full, Too Large, Timeout, Generic Bounce, Transient Failure (Soft) | `failed` |
//! | 50, 51, 52, 53, 54 | Mail Block, Spam Block, Spam Content, Prohibited Attachment, Relaying Denied (Block) | `failed` |
//! | 1, absent, any other | Undetermined | `failed` |
//!
//! # Signature
//!
//! SparkPost signs nothing. An event webhook is set up with `auth_type` `none`, `basic` or
//! `oauth2`: with `basic`, SparkPost sends `Authorization: Basic …` with the configured
//! credentials (`basic_auth` here). A relay webhook offers `auth_token` instead, which
//! SparkPost sends in the `X-MessageSystems-Webhook-Token` header (event webhooks created
//! before `auth_type` existed send it too; SparkPost calls it deprecated there): that is
//! `auth_token` here. OAuth 2.0 (SparkPost fetches a bearer token from the receiver's own
//! authorization server and presents it) is left out: checking such a token needs that
//! server, which hookrelay is not. Credentials are compared in constant time (on SHA-256
//! digests, so the length is not revealed either). Every configured check must pass; there
//! is no timestamp, so no clock check.
//!
//! # Verify keys
//!
//! | key | value |
//! |---|---|
//! | `basic_auth` | `user:password`, compared with the `Authorization: Basic …` header (event webhooks, `auth_type: basic`) |
//! | `auth_token` | the webhook's `auth_token`, compared with the `X-MessageSystems-Webhook-Token` header (relay webhooks) |
//!
//! At least one is required.
//!
//! # Status mapping
//!
//! | SparkPost group / `type` | status | notes |
//! |---|---|---|
//! | `message_event` / `injection` | `queued` | SparkPost accepted the message |
//! | `message_event` / `delay` | `queued` | informational: the remote server refused for now, SparkPost retries |
//! | `message_event` / `delivery` | `delivered` | |
//! | `message_event` / `bounce`, `out_of_band` | by `bounce_class` (above) | error `{error_code, reason}` |
//! | `message_event` / `policy_rejection` | `failed` | SparkPost refused the message (suppression list, policy) |
//! | `message_event` / `spam_complaint` | `complained` | |
//! | `message_event` / `sms_status` | by `stat_state`: `Delivered` → `delivered`; `Enroute`, `Accepted` → `sent`; `Expired`, `Deleted`, `Undeliverable`, `Rejected`, `Failed` → `failed`; other → `queued`, informational | channel `sms`, address `sms_dst` (E.164 rule of the core's phone module); SparkPost's SMS (Momentum) events, no longer in its public event list |
//! | `gen_event` / `generation_failure`, `generation_rejection` | `failed` | the message could not be generated for the recipient |
//! | `track_event` / `open`, `initial_open`, `amp_open`, `amp_initial_open` | `seen` | |
//! | `track_event` / `click`, `amp_click` | `clicked` | |
//! | `unsubscribe_event` / `list_unsubscribe`, `link_unsubscribe` | `unsubscribed` | |
//! | `relay_message` | inbound message | see below |
//! | `relay_event` (`relay_injection`, `relay_rejection`, `relay_delivery`, `relay_tempfail`, `relay_permfail`) | (no event) | about relaying received mail to a relay webhook, not about a message the application sent: named in a [`Control::Ignored`] |
//! | `ab_test_event` (`ab_test_completed`, `ab_test_cancelled`), `ingest_event` (`success`, `error`) | (no event) | about an A/B test or an Ingest API batch, no message: named in a [`Control::Ignored`] |
//! | any other type, or group | `queued` | informational: the fallback for unknown values (no event, but a [`Control::Ignored`], when it names neither a recipient nor a `transmission_id`) |
//!
//! # Inbound email (relay webhooks)
//!
//! A `relay_message` becomes an inbound message on channel `email` with type `email`:
//! `from` = `friendly_from` (the address of the `From` header; the envelope `msg_from` when
//! absent), also the `channel_value`; `to` = `rcpt_to` (the envelope recipient); text =
//! `content.text` (the last `text/plain` part; the subject stays in `vendor_response`);
//! `source_message_id` (and `vendor_ack_id`) = the `Message-ID` header of
//! `content.headers`, without its angle brackets (`""` when there is none: SparkPost gives
//! a relayed message no id of its own); time = the `Date` header (RFC 2822, an
//! inconsistent weekday ignored), or the receive time when it is absent or unreadable.
//! Attachments are only inside `content.email_rfc822`, so no `media` is listed. The
//! idempotency key is the relay `webhook_id`, the `Message-ID` and `rcpt_to` together (a
//! hash of the element when there is no `Message-ID`).

use std::fmt;

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use crate::event::{ChannelUser, idempotency_key, idempotency_key_of_value};
use crate::phone;
use crate::provider::basic_auth::{BasicAuth, same_secret};
use crate::provider::batch_element;
use crate::provider::json::str_of;
use crate::provider::{
    Context, Control, Normalized, Unparsed, VerifyOptions, VerifySettings, ignored_events,
};
use crate::{
    CallbackRequest, Channel, ErrorInfo, Event, EventKind, InboundMessage, NormalizeError, Secret,
    Status, StatusUpdate, VerifyConfigError, VerifyError, timestamp,
};

/// Provider id.
const PROVIDER: &str = "sparkpost";
/// Keys of the `verify:` block.
const KNOWN_KEYS: &[&str] = &["basic_auth", "auth_token"];
/// The header carrying a webhook's `auth_token`.
const TOKEN_HEADER: &str = "x-messagesystems-webhook-token";

/// Checks SparkPost's HTTP Basic credentials and/or its webhook token header.
#[derive(Clone)]
pub struct Verifier {
    basic_auth: Option<BasicAuth>,
    auth_token: Option<Secret>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("basic_auth", &self.basic_auth)
            .field("auth_token", &self.auth_token)
            .finish()
    }
}

impl Verifier {
    /// Builds the verifier from the `verify:` settings: `basic_auth` (`user:password`)
    /// and/or `auth_token`; at least one must be set.
    pub fn from_settings(settings: &VerifySettings) -> Result<Self, VerifyConfigError> {
        settings.only(PROVIDER, KNOWN_KEYS)?;
        let basic_auth = BasicAuth::from_settings(PROVIDER, settings)?;
        let auth_token = settings.get("auth_token").cloned();
        if basic_auth.is_none() && auth_token.is_none() {
            return Err(VerifyConfigError::Missing {
                provider: PROVIDER,
                key: "basic_auth` or `auth_token",
            });
        }
        Ok(Self {
            basic_auth,
            auth_token,
        })
    }

    /// Checks every configured credential. SparkPost sends no timestamp, so `opts` has
    /// nothing to check.
    pub fn verify(&self, req: &CallbackRequest, _opts: &VerifyOptions) -> Result<(), VerifyError> {
        if let Some(basic_auth) = &self.basic_auth {
            basic_auth.check(req)?;
        }
        if let Some(expected) = &self.auth_token {
            let given = req
                .headers
                .get(TOKEN_HEADER)
                .ok_or(VerifyError::Missing("X-MessageSystems-Webhook-Token"))?;
            if !same_secret(given.as_bytes(), expected.expose().as_bytes()) {
                return Err(VerifyError::BadCredentials);
            }
        }
        Ok(())
    }
}

/// Normalizes one SparkPost batch: every array element becomes one event, or nothing (a
/// test element, an event about no message), or an [`Unparsed`] one when it is beyond the
/// [`limits`](crate::limits) or cannot be normalized.
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
        return Err(NormalizeError::shape("", "a JSON array of msys events"));
    };
    let mut out = Normalized::events(Vec::with_capacity(elements.len()));
    let mut ignored = Vec::new();
    let mut pings = 0usize;
    let batch_len = elements.len();
    for (i, element) in elements.into_iter().enumerate() {
        let text = element.get();
        let normalized = batch_element(text, |item| element_of(i, item, ctx));
        match normalized {
            Ok(Element::Event(event)) => out.events.push(*event),
            Ok(Element::Ping) => pings += 1,
            Ok(Element::Ignored(what)) => ignored.push(what),
            // The event alone is a SparkPost body of its own: `[event]`.
            Err(reason) => out
                .unparsed
                .push(Unparsed::new(reason, text).with_body(format!("[{text}]"))),
        }
    }
    out.control =
        ignored_reason(batch_len, pings, &ignored).map(|reason| Control::Ignored { reason });
    Ok(out)
}

/// What one batch element becomes.
enum Element {
    /// An event about a message (boxed: a transient value, moved once).
    Event(Box<Event>),
    /// `{"msys": {}}`: SparkPost's webhook test.
    Ping,
    /// An event about no message: left out, described by this text.
    Ignored(String),
}

/// The reason of the batch's [`Control::Ignored`], if it left anything out (or was
/// SparkPost's test batch).
fn ignored_reason(batch_len: usize, pings: usize, ignored: &[String]) -> Option<String> {
    let mut parts = Vec::new();
    if batch_len == 0 {
        parts.push("an empty SparkPost batch (its webhook test), no events".to_owned());
    }
    if pings > 0 {
        let what = if pings == 1 {
            "1 empty msys element".to_owned()
        } else {
            format!("{pings} empty msys elements")
        };
        parts.push(format!("{what} (SparkPost's webhook test), no events"));
    }
    if !ignored.is_empty() {
        let (count, listed) = ignored_events(ignored, "SparkPost event");
        parts.push(format!(
            "{count} about no message sent, not delivered: {listed}"
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// `group type (event_id …)` of an event left out, each value on one line and at most
/// 100 characters.
fn describe(group: &str, event: &Value) -> String {
    let short = |v: &str| -> String {
        v.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(100)
            .collect()
    };
    let mut text = short(group);
    if let Some(kind) = str_of(event, "type") {
        text.push(' ');
        text.push_str(&short(&kind));
    }
    if let Some(id) = str_of(event, "event_id") {
        text.push_str(&format!(" (event_id {})", short(&id)));
    }
    text
}

/// Normalizes batch element `i`.
fn element_of(i: usize, item: Value, ctx: &Context) -> Result<Element, NormalizeError> {
    if !item.is_object() {
        return Err(NormalizeError::shape(format!("/{i}"), "an msys object"));
    }
    let msys = match item.get("msys") {
        Some(Value::Object(msys)) => msys,
        None | Some(Value::Null) => return Err(NormalizeError::MissingField(format!("/{i}/msys"))),
        Some(_) => {
            return Err(NormalizeError::invalid(
                format!("/{i}/msys"),
                "not an object",
            ));
        }
    };
    let mut groups = msys.iter();
    let Some((group, event)) = groups.next() else {
        return Ok(Element::Ping);
    };
    if groups.next().is_some() {
        return Err(NormalizeError::invalid(
            format!("/{i}/msys"),
            "more than one event group",
        ));
    }
    let path = format!("/{i}/msys/{group}");
    if !event.is_object() {
        return Err(NormalizeError::shape(path, "an event object"));
    }
    match group.as_str() {
        "relay_message" => inbound(&path, event, &item, ctx).map(|e| Element::Event(Box::new(e))),
        "relay_event" | "ab_test_event" | "ingest_event" => {
            Ok(Element::Ignored(describe(group, event)))
        }
        _ => status(group, &path, event, &item, ctx),
    }
}

/// What a status event means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mapping {
    status: Status,
    informational: bool,
    /// A documented type (these need their recipient).
    known: bool,
}

/// Maps a `bounce_class` onto a status; see the module's class table.
fn map_bounce_class(class: Option<u32>) -> (Status, bool) {
    match class {
        Some(10 | 30) => (Status::Bounced, false),
        Some(90) => (Status::Unsubscribed, false),
        Some(60 | 80 | 100) => (Status::Queued, true),
        _ => (Status::Failed, false),
    }
}

/// Maps an SMS `stat_state` onto a status.
fn map_sms_state(state: &str) -> (Status, bool) {
    match state.to_ascii_lowercase().as_str() {
        "delivered" => (Status::Delivered, false),
        "enroute" | "accepted" => (Status::Sent, false),
        "expired" | "deleted" | "undeliverable" | "rejected" | "failed" => (Status::Failed, false),
        _ => (Status::Queued, true),
    }
}

/// Maps a status event's `type` (with its bounce class or SMS state); see the module table.
fn map_type(kind: &str, event: &Value) -> Mapping {
    let m = |(status, informational): (Status, bool)| Mapping {
        status,
        informational,
        known: true,
    };
    match kind {
        "injection" => m((Status::Queued, false)),
        "delay" => m((Status::Queued, true)),
        "delivery" => m((Status::Delivered, false)),
        "bounce" | "out_of_band" => {
            let class = str_of(event, "bounce_class").and_then(|c| c.trim().parse().ok());
            m(map_bounce_class(class))
        }
        "policy_rejection" | "generation_failure" | "generation_rejection" => {
            m((Status::Failed, false))
        }
        "spam_complaint" => m((Status::Complained, false)),
        "sms_status" => m(map_sms_state(
            &str_of(event, "stat_state").unwrap_or_default(),
        )),
        "open" | "initial_open" | "amp_open" | "amp_initial_open" => m((Status::Seen, false)),
        "click" | "amp_click" => m((Status::Clicked, false)),
        "list_unsubscribe" | "link_unsubscribe" => m((Status::Unsubscribed, false)),
        _ => Mapping {
            status: Status::Queued,
            informational: true,
            known: false,
        },
    }
}

/// Correlation ids: `rcpt_meta` entries, then `campaign_id` and `rcpt_tags` as `tags`.
fn correlation(event: &Value) -> Map<String, Value> {
    let mut map = event
        .get("rcpt_meta")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(campaign) = str_of(event, "campaign_id") {
        map.entry("campaign_id").or_insert(Value::String(campaign));
    }
    if let Some(tags) = event
        .get("rcpt_tags")
        .filter(|t| t.as_array().is_some_and(|a| !a.is_empty()))
    {
        map.entry("tags").or_insert(tags.clone());
    }
    map
}

/// A status event of `group` (`message_event`, `track_event`, …).
fn status(
    group: &str,
    path: &str,
    event: &Value,
    item: &Value,
    ctx: &Context,
) -> Result<Element, NormalizeError> {
    let kind = match event.get("type") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(NormalizeError::MissingField(format!("{path}/type")));
        }
        Some(_) => {
            return Err(NormalizeError::invalid(
                format!("{path}/type"),
                "not a string",
            ));
        }
    };
    let mapping = map_type(&kind, event);
    let sms = kind == "sms_status";
    let address_field = if sms { "sms_dst" } else { "raw_rcpt_to" };
    let address = str_of(event, address_field).or_else(|| str_of(event, "rcpt_to"));
    let message_id = str_of(event, "transmission_id");
    if !mapping.known && address.is_none() && message_id.is_none() {
        // Names neither a recipient nor a transmission: about no message.
        return Ok(Element::Ignored(describe(group, event)));
    }
    let address = match address {
        Some(a) if sms => phone::e164(&a),
        Some(a) => a,
        None if !mapping.known => String::new(),
        None => {
            return Err(NormalizeError::MissingField(format!(
                "{path}/{}",
                if sms { "sms_dst" } else { "rcpt_to" }
            )));
        }
    };
    let timestamp_ms = match event.get("timestamp") {
        None | Some(Value::Null) => ctx.received_at_ms,
        Some(v) => timestamp::value_to_ms(v).ok_or_else(|| {
            NormalizeError::invalid(format!("{path}/timestamp"), "not a Unix timestamp")
        })?,
    };
    let error = matches!(mapping.status, Status::Failed | Status::Bounced)
        .then(|| {
            ErrorInfo::from_parts(
                str_of(event, "error_code"),
                str_of(event, "reason").or_else(|| str_of(event, "raw_reason")),
            )
        })
        .flatten();
    let idempotency_key = match str_of(event, "event_id") {
        Some(id) => idempotency_key(PROVIDER, &[&id, &kind]),
        None => idempotency_key_of_value(PROVIDER, item),
    };
    Ok(Element::Event(Box::new(Event {
        channel: if sms { Channel::Sms } else { Channel::Email },
        channel_value: address,
        channel_user: ChannelUser::default(),
        vendor_name: PROVIDER.to_owned(),
        vendor_ack_id: message_id,
        idempotency_key,
        correlation: correlation(event),
        kind: EventKind::Status(StatusUpdate {
            status: mapping.status,
            timestamp_ms,
            error,
            informational: mapping.informational,
        }),
        raw: item.clone().into(),
    })))
}

/// The value of the first header `name` (case-insensitive) in a relay message's
/// `content.headers`: an array of one-entry objects, in the message's order.
fn header<'a>(headers: Option<&'a Value>, name: &str) -> Option<&'a str> {
    headers?.as_array()?.iter().find_map(|h| {
        h.as_object()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_str())
    })
}

/// `<id@host>` → `id@host`.
fn strip_angle(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(s)
        .trim()
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

/// A `relay_message`: an inbound email.
fn inbound(
    path: &str,
    event: &Value,
    item: &Value,
    ctx: &Context,
) -> Result<Event, NormalizeError> {
    let from = str_of(event, "friendly_from")
        .or_else(|| str_of(event, "msg_from"))
        .ok_or_else(|| NormalizeError::MissingField(format!("{path}/friendly_from")))?;
    let to = str_of(event, "rcpt_to").unwrap_or_default();
    let content = event.get("content");
    let text = content
        .and_then(|c| c.get("text"))
        .and_then(Value::as_str)
        .filter(|t| !t.trim().is_empty())
        .map(str::to_owned);
    let headers = content.and_then(|c| c.get("headers"));
    let message_id = header(headers, "Message-ID")
        .map(strip_angle)
        .unwrap_or_default()
        .to_owned();
    let timestamp_ms = header(headers, "Date")
        .and_then(mail_date_ms)
        .unwrap_or(ctx.received_at_ms);
    let idempotency_key = if message_id.is_empty() {
        idempotency_key_of_value(PROVIDER, item)
    } else {
        let webhook = str_of(event, "webhook_id").unwrap_or_default();
        idempotency_key(PROVIDER, &["relay", &webhook, &message_id, &to])
    };
    Ok(Event {
        channel: Channel::Email,
        channel_value: from.clone(),
        channel_user: ChannelUser::default(),
        vendor_name: PROVIDER.to_owned(),
        vendor_ack_id: (!message_id.is_empty()).then(|| message_id.clone()),
        idempotency_key,
        correlation: Map::new(),
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
        raw: item.clone().into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use http::{HeaderName, HeaderValue};
    use serde_json::json;

    const SAMPLE_EVENTS: &[u8] =
        include_bytes!("../../tests/fixtures/sparkpost/sample_events.json");
    const WEBHOOK_BATCH: &[u8] =
        include_bytes!("../../tests/fixtures/sparkpost/webhook_batch.json");
    const VALIDATION: &[u8] =
        include_bytes!("../../tests/fixtures/sparkpost/validation_batch.json");
    const RELAY: &[u8] = include_bytes!("../../tests/fixtures/sparkpost/relay_message.json");

    const CTX: Context = Context {
        received_at_ms: 1_700_000_000_000,
    };

    fn run(body: &[u8]) -> Result<Normalized, NormalizeError> {
        normalize(
            &CallbackRequest::post(body.to_vec()).with_content_type("application/json"),
            &CTX,
        )
    }

    fn status_of(e: &Event) -> &StatusUpdate {
        e.status().expect("status event")
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

    /// One event of a batch of one: `{"msys": {group: event}}`.
    fn one(group: &str, event: Value) -> Event {
        let body = json!([{ "msys": { group: event } }]).to_string();
        let mut out = run(body.as_bytes()).expect("normalize");
        assert!(out.unparsed.is_empty(), "{:?}", out.unparsed);
        assert_eq!(out.events.len(), 1, "{body}");
        out.events.remove(0)
    }

    #[test]
    fn basic_auth_verifies() {
        let v = Verifier::from_settings(&settings(&[("basic_auth", "basicauthuser:mypassword")]))
            .expect("verifier");
        let opts = VerifyOptions::default();
        let ok = with_header(
            CallbackRequest::post(SAMPLE_EVENTS.to_vec()),
            "authorization",
            basic("basicauthuser:mypassword").as_bytes(),
        );
        v.verify(&ok, &opts).expect("valid credentials");
        for wrong in [
            "basicauthuser:mypassworD",
            "basicauthuser:",
            "other:mypassword",
        ] {
            let req = with_header(
                CallbackRequest::post(SAMPLE_EVENTS.to_vec()),
                "authorization",
                basic(wrong).as_bytes(),
            );
            assert!(
                matches!(v.verify(&req, &opts), Err(VerifyError::BadCredentials)),
                "{wrong}"
            );
        }
        assert!(matches!(
            v.verify(&CallbackRequest::post(SAMPLE_EVENTS.to_vec()), &opts),
            Err(VerifyError::Missing(_))
        ));
        for bad in ["Bearer abc", "Basic", "Basic !!!"] {
            let req = with_header(
                CallbackRequest::post(SAMPLE_EVENTS.to_vec()),
                "authorization",
                bad.as_bytes(),
            );
            assert!(v.verify(&req, &opts).is_err(), "{bad}");
        }
        // The token header is no substitute for the credentials.
        let token_only = with_header(
            CallbackRequest::post(SAMPLE_EVENTS.to_vec()),
            "x-messagesystems-webhook-token",
            b"basicauthuser:mypassword",
        );
        assert!(v.verify(&token_only, &opts).is_err());
    }

    #[test]
    fn auth_token_verifies() {
        // The relay webhook sample's token.
        let v = Verifier::from_settings(&settings(&[(
            "auth_token",
            "5ebe2294ecd0e0f08eab7690d2a6ee69",
        )]))
        .expect("verifier");
        let opts = VerifyOptions::default();
        let req = |token: &[u8]| {
            with_header(
                CallbackRequest::post(RELAY.to_vec()),
                "x-messagesystems-webhook-token",
                token,
            )
        };
        v.verify(&req(b"5ebe2294ecd0e0f08eab7690d2a6ee69"), &opts)
            .expect("valid token");
        for wrong in [
            &b"5ebe2294ecd0e0f08eab7690d2a6ee6"[..],
            b"5ebe2294ecd0e0f08eab7690d2a6ee690",
            b"",
        ] {
            assert!(
                matches!(
                    v.verify(&req(wrong), &opts),
                    Err(VerifyError::BadCredentials)
                ),
                "{wrong:?}"
            );
        }
        assert!(matches!(
            v.verify(&CallbackRequest::post(RELAY.to_vec()), &opts),
            Err(VerifyError::Missing(_))
        ));
        // Both configured: both must pass.
        let both =
            Verifier::from_settings(&settings(&[("basic_auth", "u:p"), ("auth_token", "t")]))
                .expect("verifier");
        let token_only = req(b"t");
        assert!(both.verify(&token_only, &opts).is_err());
        let all = with_header(token_only, "authorization", basic("u:p").as_bytes());
        both.verify(&all, &opts).expect("both present");
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
        assert!(missing(&settings(&[("auth_token", "  ")])));
        assert!(matches!(
            Verifier::from_settings(&settings(&[("basic_auth", "no-colon")])),
            Err(VerifyConfigError::Invalid { .. })
        ));
        assert!(matches!(
            Verifier::from_settings(&settings(&[("basic_auth", "u:p"), ("token", "x")])),
            Err(VerifyConfigError::Unknown { .. })
        ));
        let v = Verifier::from_settings(&settings(&[
            ("basic_auth", "user:hunter2"),
            ("auth_token", "sekrit"),
        ]))
        .expect("verifier");
        let dbg = format!("{v:?}");
        assert!(!dbg.contains("hunter2") && !dbg.contains("sekrit"), "{dbg}");
    }

    #[test]
    fn every_sample_event_maps() {
        let out = run(SAMPLE_EVENTS).expect("normalize");
        assert!(out.unparsed.is_empty(), "{:?}", out.unparsed);
        let got: Vec<(Channel, Status, bool)> = out
            .events
            .iter()
            .map(|e| (e.channel, status_of(e).status, status_of(e).informational))
            .collect();
        assert_eq!(
            got,
            vec![
                (Channel::Email, Status::Failed, false),    // bounce, class 1
                (Channel::Email, Status::Delivered, false), // delivery
                (Channel::Email, Status::Queued, false),    // injection
                (Channel::Sms, Status::Delivered, false),   // sms_status Delivered
                (Channel::Email, Status::Complained, false), // spam_complaint
                (Channel::Email, Status::Failed, false),    // out_of_band, class 1
                (Channel::Email, Status::Failed, false),    // policy_rejection
                (Channel::Email, Status::Queued, true),     // delay
                (Channel::Email, Status::Clicked, false),   // click
                (Channel::Email, Status::Seen, false),      // open
                (Channel::Email, Status::Failed, false),    // generation_failure
                (Channel::Email, Status::Failed, false),    // generation_rejection
                (Channel::Email, Status::Unsubscribed, false), // list_unsubscribe
                (Channel::Email, Status::Unsubscribed, false), // link_unsubscribe
            ]
        );
        // The five relay events are about relaying received mail: left out, named.
        let Some(Control::Ignored { reason }) = &out.control else {
            panic!("ignored expected")
        };
        assert!(
            reason.starts_with("5 SparkPost events about no message sent"),
            "{reason}"
        );
        assert!(reason.contains("relay_event relay_injection (event_id 92356927693813856)"));
        assert!(reason.ends_with("relay_event relay_permfail (event_id 92356927693813856)"));
        assert!(!reason.contains('\n'));
        let bounce = &out.events[0];
        assert_eq!(bounce.channel_value, "recipient@example.com");
        assert_eq!(bounce.vendor_ack_id.as_deref(), Some("65832150921904138"));
        assert_eq!(status_of(bounce).timestamp_ms, 1_454_442_600_000);
        assert_eq!(
            status_of(bounce).error,
            Some(ErrorInfo {
                code: Some("554".into()),
                message: Some("MAIL REFUSED - IP (a.b.c.d) is in black list".into()),
            })
        );
        assert_eq!(
            Value::Object(bounce.correlation.clone()),
            json!({"customKey": "customValue", "campaign_id": "Example Campaign Name",
                   "tags": ["male", "US"]})
        );
        let sms = &out.events[3];
        assert_eq!(sms.channel_value, "+7876712656");
        assert_eq!(sms.vendor_ack_id, None);
        // The out-of-band sample names no transmission: no message id, still delivered.
        assert_eq!(out.events[5].vendor_ack_id, None);
        // Samples reuse one event_id across types: the type is part of the key.
        let keys: std::collections::BTreeSet<&str> = out
            .events
            .iter()
            .map(|e| e.idempotency_key.as_str())
            .collect();
        assert_eq!(keys.len(), out.events.len());
        for e in &out.events {
            assert_eq!(
                e.raw.to_value().get("msys").map(Value::is_object),
                Some(true)
            );
        }
    }

    #[test]
    fn a_real_batch_maps_with_string_timestamps() {
        let out = run(WEBHOOK_BATCH).expect("normalize");
        assert_eq!(out.events.len(), 11);
        assert_eq!(out.control, None);
        let statuses: Vec<Status> = out.events.iter().map(|e| status_of(e).status).collect();
        assert_eq!(
            statuses,
            [
                Status::Delivered,
                Status::Seen,
                Status::Delivered,
                Status::Seen,
                Status::Queued,
                Status::Queued,
                Status::Clicked,
                Status::Seen,
                Status::Bounced,
                Status::Queued,
                Status::Delivered,
            ]
        );
        // A real class-10 bounce (Gmail's "NoSuchUser").
        assert_eq!(
            status_of(&out.events[8])
                .error
                .as_ref()
                .and_then(|e| e.code.as_deref()),
            Some("550")
        );
        let first = &out.events[0];
        assert_eq!(first.vendor_ack_id.as_deref(), Some("120632847835523516"));
        assert_eq!(status_of(first).timestamp_ms, 1_496_154_610_000);
        assert_eq!(
            Value::Object(first.correlation.clone()),
            json!({"campaign_id": "test"})
        );
    }

    #[test]
    fn bounce_classes_map() {
        let bounce = |class: Value| {
            let e = one(
                "message_event",
                json!({"type": "bounce", "bounce_class": class, "rcpt_to": "a@b.c",
                    "transmission_id": "t1", "error_code": "550", "reason": "550 no such user"}),
            );
            status_of(&e).clone()
        };
        for class in ["10", "30"] {
            let s = bounce(json!(class));
            assert_eq!(s.status, Status::Bounced, "{class}");
            assert_eq!(
                s.error.and_then(|e| e.code),
                Some("550".to_owned()),
                "{class}"
            );
        }
        assert_eq!(bounce(json!(10)).status, Status::Bounced, "a number");
        assert_eq!(bounce(json!("90")).status, Status::Unsubscribed);
        for class in ["60", "80", "100"] {
            let s = bounce(json!(class));
            assert_eq!(
                (s.status, s.informational),
                (Status::Queued, true),
                "{class}"
            );
            assert!(s.error.is_none());
        }
        for class in [
            "1", "20", "21", "22", "23", "24", "25", "40", "50", "51", "52", "53", "54", "70",
            "999", "x",
        ] {
            let s = bounce(json!(class));
            assert_eq!(
                (s.status, s.informational),
                (Status::Failed, false),
                "{class}"
            );
        }
        assert_eq!(bounce(Value::Null).status, Status::Failed);
        // Out-of-band bounces follow the same classes.
        let oob = one(
            "message_event",
            json!({"type": "out_of_band", "bounce_class": "10", "rcpt_to": "a@b.c"}),
        );
        assert_eq!(status_of(&oob).status, Status::Bounced);
    }

    #[test]
    fn engagement_and_newer_types_map() {
        // Sample values of SparkPost's event documentation (initial_open, amp_*).
        let track = |kind: &str| {
            let e = one(
                "track_event",
                json!({"type": kind, "event_id": "92356927693813856",
                    "raw_rcpt_to": "Recipient@Example.com", "rcpt_to": "recipient@example.com",
                    "transmission_id": "65832150921904138", "timestamp": "1460989507",
                    "target_link_url": "http://example.com", "rcpt_meta": {"customKey": "customValue"},
                    "rcpt_tags": ["male", "US"], "campaign_id": "Example Campaign Name"}),
            );
            assert_eq!(e.channel_value, "Recipient@Example.com", "as sent");
            assert_eq!(status_of(&e).timestamp_ms, 1_460_989_507_000);
            status_of(&e).status
        };
        for kind in ["open", "initial_open", "amp_open", "amp_initial_open"] {
            assert_eq!(track(kind), Status::Seen, "{kind}");
        }
        for kind in ["click", "amp_click"] {
            assert_eq!(track(kind), Status::Clicked, "{kind}");
        }
        let unknown = one(
            "track_event",
            json!({"type": "amp_teleport", "transmission_id": "t1"}),
        );
        let s = status_of(&unknown);
        assert_eq!((s.status, s.informational), (Status::Queued, true));
        assert_eq!(unknown.channel_value, "");
        let sms = |state: &str| {
            let e = one(
                "message_event",
                json!({"type": "sms_status", "sms_dst": "14155550100", "stat_state": state}),
            );
            assert_eq!(e.channel, Channel::Sms);
            assert_eq!(e.channel_value, "+14155550100");
            let s = status_of(&e);
            (s.status, s.informational)
        };
        assert_eq!(sms("Delivered"), (Status::Delivered, false));
        assert_eq!(sms("ENROUTE"), (Status::Sent, false));
        assert_eq!(sms("Undeliverable"), (Status::Failed, false));
        assert_eq!(sms("Whatever"), (Status::Queued, true));
    }

    #[test]
    fn events_about_no_message_are_left_out() {
        // Sample values of SparkPost's event documentation.
        let body = json!([
            {"msys": {"ab_test_event": {"type": "ab_test_completed", "event_id":
                "0e5cf1fc-cb36-4c39-b695-3651b6ea6563", "customer_id": "1", "subaccount_id": "101",
                "timestamp": "1460989507", "ab_test": {"id": "password-reset", "version": 1}}}},
            {"msys": {"ingest_event": {"type": "error", "event_id":
                "0e5cf1fc-cb36-4c39-b695-3651b6ea6563", "batch_id": "96500f4d-d4f4-4f1b-8080-02f4682184bb",
                "error_type": "validation", "number_failed": "50", "timestamp": "1460989507"}}},
            {"msys": {"track_event": {"type": "brand_new", "event_id": "e\nx"}}},
            {"msys": {"message_event": {"type": "delivery", "rcpt_to": "a@b.c", "event_id": "e1",
                "transmission_id": "t1", "timestamp": 1460989507}}},
        ]);
        let out = run(body.to_string().as_bytes()).expect("normalize");
        assert_eq!(out.events.len(), 1);
        assert!(out.unparsed.is_empty());
        assert_eq!(
            out.control,
            Some(Control::Ignored {
                reason: "3 SparkPost events about no message sent, not delivered: \
                    ab_test_event ab_test_completed (event_id 0e5cf1fc-cb36-4c39-b695-3651b6ea6563); \
                    ingest_event error (event_id 0e5cf1fc-cb36-4c39-b695-3651b6ea6563); \
                    track_event brand_new (event_id e x)"
                    .into()
            })
        );
    }

    #[test]
    fn the_webhook_test_batch_has_no_events() {
        for body in [VALIDATION, b"[]", b" [ ] "] {
            let out = run(body).expect("normalize");
            assert!(out.events.is_empty() && out.unparsed.is_empty());
            let Some(Control::Ignored { reason }) = out.control else {
                panic!("ignored expected")
            };
            assert!(reason.contains("webhook test"), "{reason}");
        }
    }

    #[test]
    fn relay_message_is_an_inbound_email() {
        let out = run(RELAY).expect("normalize");
        assert_eq!(out.events.len(), 1);
        let e = &out.events[0];
        assert_eq!(e.channel, Channel::Email);
        assert_eq!(e.channel_value, "me@here.com");
        assert_eq!(
            e.vendor_ack_id.as_deref(),
            Some("484810298443-112311-xqxbby@mail.there.com")
        );
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound expected")
        };
        assert_eq!(m.from, "me@here.com");
        assert_eq!(m.to, "you@there.com");
        assert_eq!(m.message_type, "email");
        assert_eq!(m.text.as_deref(), Some("Hi there SparkPostians."));
        // "Mon, 4 Jul 2016 15:53:14 +0100"
        assert_eq!(m.timestamp_ms, 1_467_643_994_000);
        assert_eq!(
            m.source_message_id,
            "484810298443-112311-xqxbby@mail.there.com"
        );
        // Without headers and text: the envelope sender, no id, the receive time.
        let bare = one(
            "relay_message",
            json!({"msg_from": "zoë@bücher.de", "rcpt_to": "in@example.com",
                "content": {"subject": "Grüße 👋", "headers": [{"Date": "irgendwann"}]}}),
        );
        assert_eq!(bare.channel_value, "zoë@bücher.de");
        assert_eq!(bare.vendor_ack_id, None);
        let EventKind::Inbound(m) = &bare.kind else {
            panic!("inbound expected")
        };
        assert_eq!(
            (m.text.as_deref(), m.timestamp_ms),
            (None, CTX.received_at_ms)
        );
        assert_eq!(
            bare.raw.to_value()["msys"]["relay_message"]["content"]["subject"],
            "Grüße 👋"
        );
        // An inconsistent weekday does not lose the date.
        assert_eq!(
            mail_date_ms("Sat, 4 Jul 2016 15:53:14 +0100"),
            Some(1_467_643_994_000)
        );
    }

    #[test]
    fn idempotency_keys() {
        let key = |event: Value| one("message_event", event).idempotency_key;
        let a = key(json!({"type": "delivery", "rcpt_to": "a@b.c", "event_id": "E1"}));
        assert_eq!(
            a,
            key(json!({"type": "delivery", "rcpt_to": "a@b.c", "event_id": "E1", "x": 1}))
        );
        assert_ne!(
            a,
            key(json!({"type": "delivery", "rcpt_to": "a@b.c", "event_id": "E2"}))
        );
        assert_ne!(
            a,
            key(json!({"type": "bounce", "rcpt_to": "a@b.c", "event_id": "E1"}))
        );
        // Without an event id: the element's hash.
        let b = key(json!({"type": "delivery", "rcpt_to": "a@b.c", "timestamp": 1}));
        assert_eq!(
            b,
            key(json!({"type": "delivery", "rcpt_to": "a@b.c", "timestamp": 1}))
        );
        assert_ne!(
            b,
            key(json!({"type": "delivery", "rcpt_to": "a@b.c", "timestamp": 2}))
        );
    }

    #[test]
    fn non_ascii_survives() {
        let e = one(
            "track_event",
            json!({"type": "click", "raw_rcpt_to": "zoë@例え.jp", "event_id": "e",
                "rcpt_meta": {"kunde": "Müller ☃"}, "target_link_name": "日本語"}),
        );
        assert_eq!(e.channel_value, "zoë@例え.jp");
        assert_eq!(e.correlation["kunde"], "Müller ☃");
        assert_eq!(
            e.raw.to_value()["msys"]["track_event"]["target_link_name"],
            "日本語"
        );
    }

    #[test]
    fn malformed_input_is_an_error() {
        let cases: &[&[u8]] = &[
            b"",
            b"   ",
            b"[{\"msys\":{}}",
            b"{\"msys\":{}}",
            b"\"text\"",
            b"\xff\xfe\x00garbage",
        ];
        for body in cases {
            assert!(run(body).is_err(), "{:?}", String::from_utf8_lossy(body));
        }
        assert!(matches!(
            run(b"{\"msys\":{}}"),
            Err(NormalizeError::Shape { .. })
        ));
        let wrong_ct = CallbackRequest::post(SAMPLE_EVENTS.to_vec())
            .with_content_type("application/x-www-form-urlencoded");
        assert!(matches!(
            normalize(&wrong_ct, &CTX),
            Err(NormalizeError::UnsupportedContentType { .. })
        ));
        assert!(normalize(&CallbackRequest::post(SAMPLE_EVENTS.to_vec()), &CTX).is_ok());
        let garbage = vec![b'['; 10 * 1024 * 1024];
        assert!(run(&garbage).is_err());
    }

    #[test]
    fn elements_that_cannot_be_normalized_are_kept_and_the_rest_delivered() {
        let bad: &[&str] = &[
            "1",
            r#"{"nope":{}}"#,
            r#"{"msys":[]}"#,
            r#"{"msys":{"message_event":5}}"#,
            r#"{"msys":{"message_event":{"type":"delivery"}},"x":1}"#,
            r#"{"msys":{"message_event":{"rcpt_to":"a@b.c"}}}"#,
            r#"{"msys":{"message_event":{"type":7,"rcpt_to":"a@b.c"}}}"#,
            r#"{"msys":{"message_event":{"type":"delivery","rcpt_to":"a@b.c","timestamp":"soon"}}}"#,
            r#"{"msys":{"message_event":{"type":"delivery","rcpt_to":"a@b.c","timestamp":"xéaaaa"}}}"#,
            r#"{"msys":{"message_event":{"type":"delivery","rcpt_to":"a@b.c"},"track_event":{}}}"#,
            r#"{"msys":{"relay_message":{"rcpt_to":"a@b.c"}}}"#,
        ];
        let good = r#"{"msys":{"message_event":{"type":"delivery","rcpt_to":"a@b.c","event_id":"e1","timestamp":"1700000000"}}}"#;
        for element in bad {
            let body = format!("[{good}, {element}]");
            let out = run(body.as_bytes()).expect("the batch is accepted");
            assert_eq!(out.events.len(), 1, "{element}");
            assert_eq!(out.unparsed.len(), 1, "{element}");
            assert_eq!(out.unparsed[0].raw, *element);
            assert!(
                out.unparsed[0].reason.contains("/1"),
                "{}",
                out.unparsed[0].reason
            );
            let again = run(out.unparsed[0].replay_body().as_bytes()).expect("a SparkPost body");
            assert_eq!((again.events.len(), again.unparsed.len()), (0, 1));
        }
        // Beyond the limits: kept as text, never parsed.
        let deep = format!(
            r#"{{"msys":{{"message_event":{{"type":"delivery","rcpt_to":"a@b.c","rcpt_meta":{{"x":{}{}}}}}}}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let body = format!("[{good},{deep}]");
        let out = run(body.as_bytes()).expect("accepted");
        assert_eq!((out.events.len(), out.unparsed.len()), (1, 1));
        assert_eq!(out.unparsed[0].raw, deep);
    }

    #[test]
    fn mutated_bodies_never_panic() {
        // Truncations and one-byte replacements of real bodies (at about 400 places each):
        // errors or events, never a panic.
        for body in [SAMPLE_EVENTS, RELAY] {
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
