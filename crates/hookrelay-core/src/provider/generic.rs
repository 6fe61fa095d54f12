//! The generic provider: a provider described by data, not code.
//!
//! A [`Spec`] (a block of the YAML config) maps the fields of a provider's JSON callback
//! onto the event model with [JSON pointers](https://www.rfc-editor.org/rfc/rfc6901)
//! (`/status`, `/message/id`, `/items/0/to`), so a user can add a provider without
//! writing code. Generic callbacks are JSON only (`application/json`, `*/*+json`, or no
//! content type).
//!
//! # Example
//!
//! ```yaml
//! name: acme_sms                  # vendor_name; not a built-in provider id
//! channel: sms                    # or { pointer: /channel, map: { SMS: sms, WA: whatsapp }, default: sms }
//! event_type: status              # default; or inbound_message, or { pointer: /kind, map: { dlr: status, mo: inbound_message } }
//! events: /results                # optional: a batch; "" = the body is an array; absent = one event
//! fields:                         # pointers relative to each event
//!   channel_value: /to            # required for status events
//!   status: /status               # required for status events
//!   vendor_ack_id: /message_id
//!   event_id: /event_id           # idempotency; absent: a hash of the whole event
//!   timestamp: /done_at           # seconds, ms, or text; absent: the time received
//!   error_code: /error/code
//!   error_message: /error/text
//!   from: /from                   # inbound messages (channel_value defaults to it)
//!   to: /to
//!   text: /text
//!   message_type: /type           # default "text"
//!   correlation: { distinct_id: /meta/user, workflow_name: /meta/workflow }
//! status_map: { DELIVRD: delivered, UNDELIV: failed, REJECTD: failed, ACCEPTD: sent }
//! informational: [ENROUTE]        # provider values that change no status
//! signature:                      # absent: cannot be verified (see below)
//!   header: X-Acme-Signature
//!   algorithm: sha256             # sha256 (default) | sha1 | sha512
//!   encoding: hex                 # hex (default) | base64
//!   prefix: "sha256="             # optional, stripped from the header value
//!   signed: timestamp.body        # body (default) | timestamp.body
//!   timestamp_header: X-Acme-Timestamp   # required with timestamp.body
//! ```
//!
//! | key | meaning |
//! |---|---|
//! | `name` | the provider id used as `vendor_name`; lowercase letters, digits, `_`, `-`; not a built-in id (`twilio`, …) nor `generic` |
//! | `channel` | `email`, `sms` or `whatsapp`; or `{pointer, map, default}`: the value at `pointer` looked up in `map`, else taken as a channel name, else `default`, else an error |
//! | `event_type` | `status` (default) or `inbound_message`; or `{pointer, map, default}` like `channel` |
//! | `events` | where the events are: absent = the body is one event (an object); `""` = the body is an array of events; `/path` = the array at that pointer |
//! | `fields.channel_value` | the user's address: the recipient of a status event; a `whatsapp:` prefix is removed. Inbound messages use the sender (`fields.from`; `channel_value` only when `from` is not configured) |
//! | `fields.status` | the provider's status value, mapped by `status_map` |
//! | `fields.vendor_ack_id` | the provider's message id |
//! | `fields.event_id` | the provider's id of this event, for the idempotency key; when absent or missing, the key is a hash of the whole event |
//! | `fields.timestamp` | when it happened: seconds or milliseconds (by magnitude), RFC 3339, `YYYY-MM-DD HH:MM:SS` |
//! | `fields.error_code`, `fields.error_message` | error details of `failed` and `bounced` statuses |
//! | `fields.from`, `fields.to`, `fields.text`, `fields.message_type` | inbound messages |
//! | `fields.correlation` | name → pointer: correlation ids, under `reference.<name>` |
//! | `status_map` | provider value → status (`queued`, `sent`, `delivered`, `seen`, `clicked`, `failed`, `bounced`, `complained`, `unsubscribed`) |
//! | `informational` | provider values that change no status (emitted as `queued`, informational) |
//! | `signature` | how the provider signs: HMAC of the raw body (or `timestamp.body`), in a header |
//!
//! Numbers and booleans found where text is expected are used as their JSON text
//! (`0` → `"0"`), so `status_map: {"0": delivered}` works for numeric codes.
//!
//! # Status mapping
//!
//! | provider value | status |
//! |---|---|
//! | a key of `status_map` | its value |
//! | listed in `informational` | `queued`, informational |
//! | anything else | `queued`, informational (documented fallback: never an error) |
//!
//! # Signature and verify keys
//!
//! With a `signature` block the callback must carry
//! `encode(HMAC-<algorithm>(secret, signed))` in `header` (after `prefix`), where
//! `signed` is the raw body, or `<timestamp>.<raw body>` with the value of
//! `timestamp_header`. The signature is decoded and compared in constant time. With a
//! clock (`VerifyOptions::now_secs`), a signed timestamp must be within the tolerance.
//!
//! | key | required | meaning |
//! |---|---|---|
//! | `secret` | yes | the HMAC key (its UTF-8 bytes) |
//!
//! A spec without a `signature` block cannot be verified: building its verifier is an
//! error (never a skipped check). A route for such a provider must say `verify: none`
//! explicitly in the config.
//!
//! ```
//! use hookrelay_core::provider::generic::Spec;
//! use hookrelay_core::provider::Context;
//! use hookrelay_core::{CallbackRequest, Status};
//!
//! let spec: Spec = serde_json::from_value(serde_json::json!({
//!     "name": "acme_sms",
//!     "channel": "sms",
//!     "events": "/results",
//!     "fields": {"channel_value": "/to", "status": "/status", "vendor_ack_id": "/id"},
//!     "status_map": {"DELIVRD": "delivered"}
//! })).unwrap();
//! spec.validate().unwrap();
//! let req = CallbackRequest::post(r#"{"results":[{"id":"m1","to":"+15550001","status":"DELIVRD"}]}"#);
//! let out = spec.normalize(&req, &Context { received_at_ms: 0 }).unwrap();
//! assert_eq!(out.events[0].status().unwrap().status, Status::Delivered);
//! assert_eq!(out.events[0].vendor_name, "acme_sms");
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use base64::Engine as _;
use serde::Deserialize;
use serde::de::{self, Deserializer, IntoDeserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::event::{idempotency_key, idempotency_key_of_value};
use crate::mac::{self, Hash};
use crate::provider::{
    Context, Normalized, Provider, VerifyOptions, VerifySettings, strip_channel_prefix,
};
use crate::{
    CallbackRequest, Channel, ErrorInfo, Event, EventKind, EventType, InboundMessage,
    NormalizeError, Secret, Status, StatusUpdate, VerifyConfigError, VerifyError,
};

/// Provider label used in errors (the configured name is not `'static`).
const LABEL: &str = "generic";

/// The `verify:` keys of a generic provider.
pub const KNOWN_KEYS: &[&str] = &["secret"];

/// The data that defines a generic provider (a block of the YAML config).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Provider name (`vendor_name` of its events), e.g. `acme_sms`.
    pub name: String,
    /// Channel of the events: fixed (`sms`) or read from the event.
    pub channel: Selector<Channel>,
    /// Event type: fixed (`status`, the default, or `inbound_message`) or read from the
    /// event.
    #[serde(default = "default_event_type")]
    pub event_type: Selector<EventType>,
    /// Pointer to the array of events (`/results`); `""` = the body is the array;
    /// absent = the body is one event.
    #[serde(default)]
    pub events: Option<String>,
    /// Field pointers, relative to each event.
    pub fields: Fields,
    /// Provider status value → status (`DELIVRD: delivered`).
    #[serde(default)]
    pub status_map: BTreeMap<String, Status>,
    /// Provider status values that change no status (`queued`, informational).
    #[serde(default)]
    pub informational: Vec<String>,
    /// How callbacks are signed; absent = they cannot be verified.
    #[serde(default)]
    pub signature: Option<SignatureSpec>,
}

fn default_event_type() -> Selector<EventType> {
    Selector::Fixed(EventType::Status)
}

/// JSON pointers to the fields of one event (each starts with `/`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fields {
    /// The user's address (`/to`): recipient of a status, sender of an inbound message.
    #[serde(default)]
    pub channel_value: Option<String>,
    /// The provider's message id (`/message_id`).
    #[serde(default)]
    pub vendor_ack_id: Option<String>,
    /// The provider's id of this event (`/event_id`), for idempotency.
    #[serde(default)]
    pub event_id: Option<String>,
    /// The provider's status value (`/status`).
    #[serde(default)]
    pub status: Option<String>,
    /// When it happened (`/timestamp`).
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Error code of a failed or bounced status (`/error/code`).
    #[serde(default)]
    pub error_code: Option<String>,
    /// Error message of a failed or bounced status (`/error/message`).
    #[serde(default)]
    pub error_message: Option<String>,
    /// Sender of an inbound message (`/from`).
    #[serde(default)]
    pub from: Option<String>,
    /// Recipient of an inbound message (`/to`).
    #[serde(default)]
    pub to: Option<String>,
    /// Text of an inbound message (`/text`).
    #[serde(default)]
    pub text: Option<String>,
    /// Type of an inbound message (`/type`); default `text`.
    #[serde(default)]
    pub message_type: Option<String>,
    /// Correlation ids: name → pointer (`distinct_id: /meta/user`).
    #[serde(default)]
    pub correlation: BTreeMap<String, String>,
}

/// A value that is either fixed in the spec or read from each event.
///
/// In YAML: a plain name (`sms`), or `{pointer: /kind, map: {SMS: sms}, default: sms}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector<T> {
    /// The same value for every event.
    Fixed(T),
    /// Read from the event.
    Pointer {
        /// Where the provider's value is.
        pointer: String,
        /// Provider value → value. A provider value that is not a key but is itself a
        /// valid name (`sms`) is used as is.
        map: BTreeMap<String, T>,
        /// Used when the value is missing or unknown; without it, that is an error.
        default: Option<T>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PointerRepr<T> {
    pointer: String,
    #[serde(default = "BTreeMap::new")]
    map: BTreeMap<String, T>,
    #[serde(default = "Option::default")]
    default: Option<T>,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Selector<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SelectorVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for SelectorVisitor<T> {
            type Value = Selector<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a name, or a map {pointer, map, default}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::deserialize(v.into_deserializer()).map(Selector::Fixed)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let repr =
                    PointerRepr::<T>::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Selector::Pointer {
                    pointer: repr.pointer,
                    map: repr.map,
                    default: repr.default,
                })
            }
        }
        deserializer.deserialize_any(SelectorVisitor(PhantomData))
    }
}

impl<T: Copy + FromStr> Selector<T> {
    fn select(&self, event: &Value, key: &str) -> Result<T, NormalizeError> {
        let (pointer, map, default) = match self {
            Selector::Fixed(t) => return Ok(*t),
            Selector::Pointer {
                pointer,
                map,
                default,
            } => (pointer, map, default),
        };
        match text_at(event, pointer)? {
            Some(v) => map
                .get(&v)
                .copied()
                .or_else(|| v.parse().ok())
                .or(*default)
                .ok_or_else(|| {
                    NormalizeError::invalid(
                        pointer.as_str(),
                        format!("{v:?} is not in the {key} map"),
                    )
                }),
            None => {
                default.ok_or_else(|| NormalizeError::MissingField(format!("{pointer} ({key})")))
            }
        }
    }

    fn pointer(&self) -> Option<&str> {
        match self {
            Selector::Fixed(_) => None,
            Selector::Pointer { pointer, .. } => Some(pointer),
        }
    }
}

/// How a provider signs its callbacks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureSpec {
    /// Header carrying the signature (`X-Acme-Signature`).
    pub header: String,
    /// HMAC hash function (default `sha256`).
    #[serde(default)]
    pub algorithm: Algorithm,
    /// Encoding of the signature (default `hex`).
    #[serde(default)]
    pub encoding: Encoding,
    /// A prefix to strip from the header value (`sha256=`).
    #[serde(default)]
    pub prefix: Option<String>,
    /// What is signed (default `body`).
    #[serde(default)]
    pub signed: Signed,
    /// Header carrying the signed timestamp (required with `signed: timestamp.body`).
    #[serde(default)]
    pub timestamp_header: Option<String>,
}

/// HMAC hash function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// HMAC-SHA256.
    #[default]
    Sha256,
    /// HMAC-SHA1.
    Sha1,
    /// HMAC-SHA512.
    Sha512,
}

/// Signature encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// Hexadecimal, either case.
    #[default]
    Hex,
    /// Standard base64 (padding optional).
    Base64,
}

/// What the HMAC covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum Signed {
    /// The raw body.
    #[default]
    #[serde(rename = "body")]
    Body,
    /// The timestamp header value, `.`, then the raw body.
    #[serde(rename = "timestamp.body")]
    TimestampBody,
}

// ---------------------------------------------------------------------------------------
// Validation

impl Spec {
    /// Checks the spec; `Err` lists every problem (`; `-separated), each prefixed by its
    /// key (`fields.status: …`). Status names, channels and event types are already
    /// checked by deserialization (unknown names do not parse).
    pub fn validate(&self) -> Result<(), String> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// Every problem of the spec, each prefixed by its key; empty when it is valid.
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let name = self.name.as_str();
        if name.is_empty() {
            out.push("name: must not be empty".to_owned());
        } else if !name.starts_with(|c: char| c.is_ascii_lowercase())
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        {
            out.push(format!(
                "name: {name:?} must start with a lowercase letter and use only a-z, 0-9, `_`, `-`"
            ));
        }
        if Provider::BUILTIN.contains(&name) || name == LABEL {
            out.push(format!(
                "name: {name:?} is a built-in provider id; choose another name"
            ));
        }
        let mut pointer = |key: String, p: &str| {
            if let Some(why) = pointer_problem(p) {
                out.push(format!("{key}: {p:?} {why}"));
            }
        };
        if let Some(p) = self.channel.pointer() {
            pointer("channel.pointer".into(), p);
        }
        if let Some(p) = self.event_type.pointer() {
            pointer("event_type.pointer".into(), p);
        }
        if let Some(p) = &self.events
            && !p.is_empty()
        {
            pointer("events".into(), p);
        }
        let f = &self.fields;
        for (key, p) in [
            ("channel_value", &f.channel_value),
            ("vendor_ack_id", &f.vendor_ack_id),
            ("event_id", &f.event_id),
            ("status", &f.status),
            ("timestamp", &f.timestamp),
            ("error_code", &f.error_code),
            ("error_message", &f.error_message),
            ("from", &f.from),
            ("to", &f.to),
            ("text", &f.text),
            ("message_type", &f.message_type),
        ] {
            if let Some(p) = p {
                pointer(format!("fields.{key}"), p);
            }
        }
        for (name, p) in &f.correlation {
            pointer(format!("fields.correlation.{name}"), p);
        }
        for name in f.correlation.keys() {
            if name.trim().is_empty() || name == "vendor_ack_id" || name == "idempotency_key" {
                out.push(format!("fields.correlation: {name:?} is not a usable name"));
            }
        }
        let status_possible = self.event_type != Selector::Fixed(EventType::InboundMessage);
        let inbound_possible = self.event_type != Selector::Fixed(EventType::Status);
        if status_possible {
            if f.channel_value.is_none() {
                out.push("fields.channel_value: required for status events".to_owned());
            }
            if f.status.is_none() {
                out.push("fields.status: required for status events".to_owned());
            }
        }
        if inbound_possible && f.from.is_none() && f.channel_value.is_none() {
            out.push(
                "fields.from: required for inbound messages (or fields.channel_value)".to_owned(),
            );
        }
        for v in &self.informational {
            if self.status_map.contains_key(v) {
                out.push(format!("informational: {v:?} is also a key of status_map"));
            }
        }
        if let Some(sig) = &self.signature {
            out.extend(
                signature_problems(sig)
                    .into_iter()
                    .map(|p| format!("signature.{p}")),
            );
        }
        out
    }

    /// Normalizes one callback: each event of the body (or the body itself) becomes one
    /// [`Event`].
    pub fn normalize(
        &self,
        req: &CallbackRequest,
        ctx: &Context,
    ) -> Result<Normalized, NormalizeError> {
        req.expect_content_type(LABEL, &["application/json"], "application/json")?;
        let body = req.json()?;
        let mut events = Vec::new();
        match self.events.as_deref() {
            None => {
                if !body.is_object() {
                    return Err(NormalizeError::shape(
                        "/",
                        "a JSON object (set `events` for a batch)",
                    ));
                }
                events.push(self.event(&body, ctx, "")?);
            }
            Some(at) => {
                let list = if at.is_empty() {
                    &body
                } else {
                    body.pointer(at)
                        .ok_or_else(|| NormalizeError::MissingField(format!("{at} (events)")))?
                };
                let items = list.as_array().ok_or_else(|| {
                    NormalizeError::shape(
                        if at.is_empty() { "/" } else { at },
                        "an array of events",
                    )
                })?;
                for (i, item) in items.iter().enumerate() {
                    let here = format!("{at}/{i}");
                    if !item.is_object() {
                        return Err(NormalizeError::shape(here, "an object"));
                    }
                    events.push(self.event(item, ctx, &here)?);
                }
            }
        }
        Ok(Normalized::events(events))
    }

    fn event(&self, item: &Value, ctx: &Context, here: &str) -> Result<Event, NormalizeError> {
        self.event_inner(item, ctx).map_err(|e| locate(e, here))
    }

    fn event_inner(&self, item: &Value, ctx: &Context) -> Result<Event, NormalizeError> {
        let f = &self.fields;
        let event_type = self.event_type.select(item, "event_type")?;
        let channel = self.channel.select(item, "channel")?;
        let opt = |p: &Option<String>| -> Result<Option<String>, NormalizeError> {
            match p {
                Some(p) => text_at(item, p),
                None => Ok(None),
            }
        };
        let req = |key: &str, p: &Option<String>| -> Result<String, NormalizeError> {
            let p = p.as_deref().ok_or_else(|| {
                NormalizeError::MissingField(format!("fields.{key} (not configured)"))
            })?;
            text_at(item, p)?
                .ok_or_else(|| NormalizeError::MissingField(format!("{p} (fields.{key})")))
        };
        let timestamp_ms = match f.timestamp.as_deref().and_then(|p| item.pointer(p)) {
            None | Some(Value::Null) => ctx.received_at_ms,
            Some(v) => crate::timestamp::value_to_ms(v).ok_or_else(|| {
                NormalizeError::invalid(f.timestamp.clone().unwrap_or_default(), "not a timestamp")
            })?,
        };
        let vendor_ack_id = opt(&f.vendor_ack_id)?;
        let event_id = opt(&f.event_id)?;
        let idempotency_key = match &event_id {
            Some(id) => idempotency_key(&self.name, &[id]),
            None => idempotency_key_of_value(&self.name, item),
        };
        let mut correlation = Map::new();
        for (name, p) in &f.correlation {
            match item.pointer(p) {
                None | Some(Value::Null) => {}
                Some(v) => {
                    correlation.insert(name.clone(), v.clone());
                }
            }
        }
        let (channel_value, kind) = match event_type {
            EventType::Status => {
                let channel_value = address(req("channel_value", &f.channel_value)?);
                let raw_status = req("status", &f.status)?;
                let (status, informational) = self.map_status(&raw_status);
                let error = if matches!(status, Status::Failed | Status::Bounced) {
                    ErrorInfo::from_parts(opt(&f.error_code)?, opt(&f.error_message)?)
                } else {
                    None
                };
                let update = StatusUpdate {
                    status,
                    timestamp_ms,
                    error,
                    informational,
                };
                (channel_value, EventKind::Status(update))
            }
            EventType::InboundMessage => {
                let from = match opt(&f.from)? {
                    Some(v) => v,
                    None if f.from.is_some() => {
                        return Err(NormalizeError::MissingField(format!(
                            "{} (fields.from)",
                            f.from.as_deref().unwrap_or_default()
                        )));
                    }
                    None => req("channel_value", &f.channel_value)?,
                };
                let from = address(from);
                let channel_value = from.clone();
                let msg = InboundMessage {
                    from,
                    to: opt(&f.to)?.map(address).unwrap_or_default(),
                    message_type: opt(&f.message_type)?.unwrap_or_else(|| "text".to_owned()),
                    text: match f.text.as_deref().and_then(|p| item.pointer(p)) {
                        Some(Value::String(s)) => Some(s.clone()),
                        Some(Value::Number(n)) => Some(n.to_string()),
                        _ => None,
                    },
                    timestamp_ms,
                    source_message_id: vendor_ack_id.clone().or(event_id).unwrap_or_default(),
                    ..InboundMessage::default()
                };
                (channel_value, EventKind::Inbound(msg))
            }
        };
        Ok(Event {
            channel,
            channel_value,
            vendor_name: self.name.clone(),
            vendor_ack_id,
            idempotency_key,
            correlation,
            kind,
            raw: item.clone().into(),
        })
    }

    /// Maps a provider status value: `status_map`, else `queued` informational.
    fn map_status(&self, value: &str) -> (Status, bool) {
        if self.informational.iter().any(|v| v == value) {
            return (Status::Queued, true);
        }
        match self.status_map.get(value) {
            Some(s) => (*s, false),
            None => (Status::Queued, true),
        }
    }
}

/// Prefixes the event location to a field error of a batch element.
fn locate(e: NormalizeError, here: &str) -> NormalizeError {
    if here.is_empty() {
        return e;
    }
    match e {
        NormalizeError::MissingField(f) => {
            NormalizeError::MissingField(format!("{f} in event {here}"))
        }
        NormalizeError::InvalidField { field, reason } => NormalizeError::InvalidField {
            field: format!("{field} in event {here}"),
            reason,
        },
        other => other,
    }
}

/// Text at a pointer: a non-empty string, or a number or boolean as its JSON text.
/// Absent or null is `None`; an object or array is an error.
fn text_at(v: &Value, pointer: &str) -> Result<Option<String>, NormalizeError> {
    match v.pointer(pointer) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok((!s.trim().is_empty()).then(|| s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(_) => Err(NormalizeError::invalid(
            pointer,
            "expected text, found an object or array",
        )),
    }
}

/// Address cleanup: trimmed, without a `whatsapp:` prefix.
fn address(s: String) -> String {
    strip_channel_prefix(s.trim()).trim().to_owned()
}

/// Why `p` is not a usable JSON pointer, if it is not.
fn pointer_problem(p: &str) -> Option<&'static str> {
    if !p.starts_with('/') {
        return Some("must be a JSON pointer starting with `/`");
    }
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Some("has `~` not followed by 0 or 1 (write `~0` for `~`, `~1` for `/`)");
        }
    }
    None
}

fn signature_problems(sig: &SignatureSpec) -> Vec<String> {
    let mut out = Vec::new();
    if http::HeaderName::from_bytes(sig.header.as_bytes()).is_err() {
        out.push(format!(
            "header: {:?} is not a valid header name",
            sig.header
        ));
    }
    if sig.prefix.as_deref().is_some_and(str::is_empty) {
        out.push("prefix: must not be empty (leave it out instead)".to_owned());
    }
    match (sig.signed, &sig.timestamp_header) {
        (Signed::TimestampBody, None) => {
            out.push("timestamp_header: required with `signed: timestamp.body`".to_owned());
        }
        (Signed::TimestampBody, Some(h)) if http::HeaderName::from_bytes(h.as_bytes()).is_err() => {
            out.push(format!(
                "timestamp_header: {h:?} is not a valid header name"
            ));
        }
        (Signed::Body, Some(_)) => {
            out.push("timestamp_header: only used with `signed: timestamp.body`".to_owned());
        }
        _ => {}
    }
    out
}

// ---------------------------------------------------------------------------------------
// Verification

/// Generic HMAC signature check.
#[derive(Debug, Clone)]
pub struct Verifier {
    secret: Secret,
    signature: SignatureSpec,
}

impl Verifier {
    /// Builds the verifier from the spec's `signature` block and the `verify:` settings
    /// (`secret`, required). A spec without a `signature` block cannot be verified: that
    /// is an error, and the route must declare `verify: none` instead.
    pub fn from_settings(
        spec: &Spec,
        settings: &VerifySettings,
    ) -> Result<Self, VerifyConfigError> {
        settings.only(LABEL, KNOWN_KEYS)?;
        let Some(signature) = spec.signature.clone() else {
            return Err(VerifyConfigError::Invalid {
                provider: LABEL,
                key: "signature",
                reason: format!(
                    "provider {:?} has no `signature` block, so its callbacks cannot be verified; \
                     add one, or declare `verify: none` on the route",
                    spec.name
                ),
            });
        };
        if let Some(problem) = signature_problems(&signature).into_iter().next() {
            return Err(VerifyConfigError::Invalid {
                provider: LABEL,
                key: "signature",
                reason: problem,
            });
        }
        let secret = settings.require(LABEL, "secret")?.clone();
        Ok(Self { secret, signature })
    }

    /// Checks the HMAC signature header against the raw body.
    pub fn verify(&self, req: &CallbackRequest, opts: &VerifyOptions) -> Result<(), VerifyError> {
        let sig = &self.signature;
        let value = req
            .header(&sig.header)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or(VerifyError::Missing("signature header"))?;
        let value = match &sig.prefix {
            Some(p) => value.strip_prefix(p.as_str()).ok_or_else(|| {
                VerifyError::Malformed(format!("signature does not start with {p:?}"))
            })?,
            None => value,
        };
        let expected = decode(sig.encoding, value.trim())?;
        let timestamp = match sig.signed {
            Signed::Body => None,
            Signed::TimestampBody => {
                let name = sig.timestamp_header.as_deref().unwrap_or_default();
                let ts = req
                    .header(name)
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .ok_or(VerifyError::Missing("timestamp header"))?;
                Some(ts)
            }
        };
        let parts: Vec<&[u8]> = match timestamp {
            None => vec![&req.body],
            Some(ts) => vec![ts.as_bytes(), b".", &req.body],
        };
        let hash = match sig.algorithm {
            Algorithm::Sha256 => Hash::Sha256,
            Algorithm::Sha1 => Hash::Sha1,
            Algorithm::Sha512 => Hash::Sha512,
        };
        if !mac::hmac(hash, self.secret.expose().as_bytes(), &parts).matches(&expected) {
            return Err(VerifyError::Mismatch);
        }
        if let (Some(ts), Some(_)) = (timestamp, opts.now_secs) {
            let ms = crate::timestamp::parse_str_ms(ts).ok_or_else(|| {
                VerifyError::Malformed(format!("timestamp {ts:?} is not epoch seconds"))
            })?;
            opts.check_timestamp(ms.div_euclid(1000))?;
        }
        Ok(())
    }
}

fn decode(encoding: Encoding, value: &str) -> Result<Vec<u8>, VerifyError> {
    match encoding {
        Encoding::Hex => hex::decode(value)
            .map_err(|_| VerifyError::Malformed("signature is not hexadecimal".into())),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT
            .decode(value)
            .map_err(|_| VerifyError::Malformed("signature is not base64".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, KeyInit, Mac};
    use serde_json::json;
    use sha1::Sha1;
    use sha2::{Sha256, Sha512};

    fn ctx() -> Context {
        Context {
            received_at_ms: 1_700_000_000_000,
        }
    }

    /// A fictional SMS provider: batches under `/results`, numeric-ish status codes.
    fn acme() -> Spec {
        serde_json::from_value(json!({
            "name": "acme_sms",
            "channel": {"pointer": "/channel", "map": {"SMS": "sms", "WA": "whatsapp"}, "default": "sms"},
            "event_type": {"pointer": "/kind", "map": {"dlr": "status", "mo": "inbound_message"}},
            "events": "/results",
            "fields": {
                "channel_value": "/to",
                "vendor_ack_id": "/message_id",
                "event_id": "/event_id",
                "status": "/status/name",
                "timestamp": "/done_at",
                "error_code": "/error/code",
                "error_message": "/error/text",
                "from": "/from",
                "to": "/to",
                "text": "/text",
                "message_type": "/type",
                "correlation": {"distinct_id": "/meta/user", "workflow_name": "/meta/wf"}
            },
            "status_map": {"DELIVRD": "delivered", "UNDELIV": "failed", "ACCEPTD": "sent", "0": "delivered"},
            "informational": ["ENROUTE"],
            "signature": {"header": "X-Acme-Signature", "algorithm": "sha256", "encoding": "hex", "prefix": "sha256="}
        }))
        .expect("spec parses")
    }

    fn body() -> Value {
        json!({"results": [
            {"kind": "dlr", "event_id": "e1", "message_id": "m1", "to": "whatsapp:+15550001",
             "channel": "WA", "status": {"name": "DELIVRD"}, "done_at": "2024-01-02T03:04:05Z",
             "meta": {"user": "u-ü", "wf": "welcome"}},
            {"kind": "dlr", "event_id": "e2", "message_id": "m2", "to": "+15550002",
             "status": {"name": "UNDELIV"}, "done_at": 1_704_164_645,
             "error": {"code": 30003, "text": "Unreachable handset"}},
            {"kind": "dlr", "message_id": "m3", "to": "+15550003", "status": {"name": "ENROUTE"}},
            {"kind": "dlr", "message_id": "m4", "to": "+15550004", "status": {"name": "WEIRD"}},
            {"kind": "dlr", "message_id": "m5", "to": "+15550005", "status": {"name": 0}},
            {"kind": "mo", "message_id": "m6", "from": "+15550006", "to": "+15559999",
             "channel": "sms", "text": "Привет 👋", "type": "text", "done_at": 1_704_164_645_123_i64}
        ]})
    }

    fn request(body: &Value) -> CallbackRequest {
        CallbackRequest::post(serde_json::to_vec(body).expect("json"))
            .with_content_type("application/json")
    }

    #[test]
    fn spec_is_valid() {
        acme().validate().expect("valid");
    }

    #[test]
    fn normalizes_a_batch() {
        let out = acme()
            .normalize(&request(&body()), &ctx())
            .expect("normalizes");
        assert_eq!(out.events.len(), 6);
        let e = &out.events[0];
        assert_eq!(e.vendor_name, "acme_sms");
        assert_eq!(e.channel, Channel::Whatsapp);
        assert_eq!(e.channel_value, "+15550001");
        assert_eq!(e.vendor_ack_id.as_deref(), Some("m1"));
        assert_eq!(e.idempotency_key, idempotency_key("acme_sms", &["e1"]));
        assert_eq!(e.correlation.get("distinct_id"), Some(&json!("u-ü")));
        assert_eq!(e.correlation.get("workflow_name"), Some(&json!("welcome")));
        assert_eq!(e.raw, body()["results"][0]);
        let s = e.status().expect("status");
        assert_eq!(
            (s.status, s.informational, s.timestamp_ms),
            (Status::Delivered, false, 1_704_164_645_000)
        );
        assert!(s.error.is_none());

        let s = out.events[1].status().expect("status");
        assert_eq!(out.events[1].channel, Channel::Sms, "default channel");
        assert_eq!(s.status, Status::Failed);
        assert_eq!(
            s.error,
            Some(ErrorInfo {
                code: Some("30003".into()),
                message: Some("Unreachable handset".into())
            })
        );
        assert_eq!(s.timestamp_ms, 1_704_164_645_000);

        let s = out.events[2].status().expect("status");
        assert_eq!(
            (s.status, s.informational, s.timestamp_ms),
            (Status::Queued, true, 1_700_000_000_000)
        );
        // No event id: the key is a hash of the element, stable and distinct.
        assert_eq!(
            out.events[2].idempotency_key,
            idempotency_key_of_value("acme_sms", &body()["results"][2])
        );
        assert_ne!(out.events[2].idempotency_key, out.events[3].idempotency_key);

        let s = out.events[3].status().expect("status");
        assert_eq!(
            (s.status, s.informational),
            (Status::Queued, true),
            "unmapped value"
        );
        let s = out.events[4].status().expect("status");
        assert_eq!(
            s.status,
            Status::Delivered,
            "numeric value mapped by its text"
        );

        let e = &out.events[5];
        assert_eq!(e.channel, Channel::Sms, "a channel name is used as is");
        assert_eq!(e.channel_value, "+15550006");
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound expected")
        };
        assert_eq!((m.from.as_str(), m.to.as_str()), ("+15550006", "+15559999"));
        assert_eq!(m.text.as_deref(), Some("Привет 👋"));
        assert_eq!(m.message_type, "text");
        assert_eq!(m.timestamp_ms, 1_704_164_645_123);
        assert_eq!(m.source_message_id, "m6");
    }

    #[test]
    fn single_event_and_bare_array_bodies() {
        let mut spec = acme();
        spec.events = None;
        let one = body()["results"][0].clone();
        let out = spec.normalize(&request(&one), &ctx()).expect("one event");
        assert_eq!(out.events.len(), 1);
        assert!(matches!(
            spec.normalize(&request(&json!([one])), &ctx()),
            Err(NormalizeError::Shape { .. })
        ));
        spec.events = Some(String::new());
        let out = spec
            .normalize(&request(&body()["results"]), &ctx())
            .expect("array body");
        assert_eq!(out.events.len(), 6);
        assert!(matches!(
            spec.normalize(&request(&one), &ctx()),
            Err(NormalizeError::Shape { .. })
        ));
        let out = spec
            .normalize(&request(&json!([])), &ctx())
            .expect("empty batch");
        assert!(out.events.is_empty());
    }

    #[test]
    fn missing_fields_give_clear_errors() {
        let spec = acme();
        let cases = [
            (
                json!({"results": [{"kind": "dlr", "status": {"name": "DELIVRD"}}]}),
                "missing field /to (fields.channel_value) in event /results/0",
            ),
            (
                json!({"results": [{"kind": "dlr", "to": "+1"}, {"kind": "dlr", "to": "+1", "status": {}}]}),
                "missing field /status/name (fields.status) in event /results/0",
            ),
            (
                json!({"results": [{"kind": "dlr", "to": "+1", "status": {"name": {"x": 1}}}]}),
                "invalid field /status/name in event /results/0: expected text, found an object or array",
            ),
            (
                json!({"results": [{"to": "+1", "status": {"name": "DELIVRD"}}]}),
                "missing field /kind (event_type) in event /results/0",
            ),
            (
                json!({"results": [{"kind": "weird", "to": "+1"}]}),
                "invalid field /kind in event /results/0: \"weird\" is not in the event_type map",
            ),
            (
                json!({"results": [{"kind": "mo", "to": "+1"}]}),
                "missing field /from (fields.from) in event /results/0",
            ),
            (
                json!({"results": [{"kind": "dlr", "to": "+1", "status": {"name": "DELIVRD"}, "done_at": "soon"}]}),
                "invalid field /done_at in event /results/0: not a timestamp",
            ),
            (
                json!({"results": [1]}),
                "unexpected shape at /results/0: expected an object",
            ),
            (
                json!({"results": {"a": 1}}),
                "unexpected shape at /results: expected an array of events",
            ),
            (json!({"other": []}), "missing field /results (events)"),
            (json!([]), "missing field /results (events)"),
        ];
        for (body, msg) in cases {
            let err = spec
                .normalize(&request(&body), &ctx())
                .expect_err("must fail");
            assert_eq!(err.to_string(), msg, "{body}");
        }
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let spec = acme();
        let cases: Vec<(CallbackRequest, &str)> = vec![
            (CallbackRequest::post(""), "empty_body"),
            (
                CallbackRequest::post("{\"results\": [").with_content_type("application/json"),
                "invalid_json",
            ),
            (
                CallbackRequest::post("a=b").with_content_type("application/x-www-form-urlencoded"),
                "content_type",
            ),
            (
                CallbackRequest::post(vec![0xff, 0xfe, 0x00]),
                "invalid_json",
            ),
        ];
        for (req, kind) in cases {
            let err = spec.normalize(&req, &ctx()).expect_err("must fail");
            assert_eq!(err.kind(), kind, "{err}");
        }
        let big = vec![b'['; 10 * 1024 * 1024];
        assert!(spec.normalize(&CallbackRequest::post(big), &ctx()).is_err());
    }

    #[test]
    fn status_mapping_with_fixed_type() {
        let spec: Spec = serde_json::from_value(json!({
            "name": "mini",
            "channel": "email",
            "fields": {"channel_value": "/rcpt", "status": "/s"},
            "status_map": {"bounce": "bounced", "open": "seen"},
            "informational": ["deferred"]
        }))
        .expect("spec");
        spec.validate().expect("valid");
        for (value, status, info) in [
            ("bounce", Status::Bounced, false),
            ("open", Status::Seen, false),
            ("deferred", Status::Queued, true),
            ("delivered", Status::Queued, true),
            ("", Status::Queued, true),
        ] {
            assert_eq!(spec.map_status(value), (status, info), "{value}");
        }
        let out = spec
            .normalize(
                &CallbackRequest::post(r#"{"rcpt":" a@example.com ","s":"bounce"}"#),
                &ctx(),
            )
            .expect("normalizes");
        assert_eq!(out.events[0].channel_value, "a@example.com");
        assert_eq!(out.events[0].channel, Channel::Email);
        assert!(
            out.events[0].status().expect("status").error.is_none(),
            "no error fields configured"
        );
    }

    #[test]
    fn spec_parse_errors_are_clear() {
        let err = |v: Value| {
            serde_json::from_value::<Spec>(v)
                .expect_err("must fail")
                .to_string()
        };
        let base = || json!({"name": "x", "channel": "sms", "fields": {"channel_value": "/a", "status": "/b"}});
        let mut v = base();
        v["channel"] = json!("fax");
        assert!(err(v).contains("unknown variant `fax`"));
        let mut v = base();
        v["status_map"] = json!({"X": "read"});
        assert!(err(v).contains("unknown variant `read`"));
        let mut v = base();
        v["fields"]["colour"] = json!("/c");
        assert!(err(v).contains("unknown field `colour`"));
        let mut v = base();
        v["channel"] = json!({"pointer": "/c", "mapping": {}});
        assert!(err(v).contains("unknown field `mapping`"));
        let mut v = base();
        v["surprise"] = json!(1);
        assert!(err(v).contains("unknown field `surprise`"));
        let mut v = base();
        v["signature"] = json!({"header": "X-Sig", "algorithm": "md5"});
        assert!(err(v).contains("unknown variant `md5`"));
        let mut v = base();
        v["signature"] =
            json!({"header": "X-Sig", "signed": "timestamp.body", "timestamp_header": "X-Ts"});
        let spec: Spec = serde_json::from_value(v).expect("timestamp.body parses");
        assert_eq!(
            spec.signature.map(|s| s.signed),
            Some(Signed::TimestampBody)
        );
    }

    #[test]
    fn validation_lists_every_problem() {
        let spec: Spec = serde_json::from_value(json!({
            "name": "twilio",
            "channel": {"pointer": "channel"},
            "events": "results",
            "event_type": {"pointer": "/kind"},
            "fields": {"vendor_ack_id": "id", "correlation": {"idempotency_key": "/k", "ok": "/a~2b"}},
            "status_map": {"X": "sent"},
            "informational": ["X"],
            "signature": {"header": "bad header", "prefix": "", "timestamp_header": "X-Ts"}
        }))
        .expect("parses");
        let problems = spec.problems();
        let text = problems.join("\n");
        for needle in [
            "name: \"twilio\" is a built-in provider id",
            "channel.pointer: \"channel\" must be a JSON pointer",
            "events: \"results\" must be a JSON pointer",
            "fields.vendor_ack_id: \"id\" must be a JSON pointer",
            "fields.correlation.ok: \"/a~2b\" has `~`",
            "fields.correlation: \"idempotency_key\" is not a usable name",
            "fields.channel_value: required for status events",
            "fields.status: required for status events",
            "fields.from: required for inbound messages",
            "informational: \"X\" is also a key of status_map",
            "signature.header: \"bad header\" is not a valid header name",
            "signature.prefix: must not be empty",
            "signature.timestamp_header: only used with `signed: timestamp.body`",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert!(spec.validate().is_err());
        for bad in ["", "Acme", "1acme", "ac me", "generic", "mailgun"] {
            let mut s = acme();
            s.name = bad.into();
            assert!(s.validate().is_err(), "{bad:?} accepted");
        }
    }

    // --- signatures --------------------------------------------------------------------

    fn mac_hex(key: &str, msg: &[u8]) -> String {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes()).expect("key");
        m.update(msg);
        hex::encode(m.finalize().into_bytes())
    }

    fn signed(body: &str, header: &str, value: &str) -> CallbackRequest {
        let mut r = CallbackRequest::post(body.to_owned()).with_content_type("application/json");
        r.headers.insert(
            http::HeaderName::from_bytes(header.as_bytes()).expect("name"),
            http::HeaderValue::from_str(value).expect("value"),
        );
        r
    }

    fn verifier(spec: &Spec, secret: &str) -> Verifier {
        Verifier::from_settings(spec, &VerifySettings::new().with("secret", secret))
            .expect("verifier")
    }

    #[test]
    fn hex_with_prefix_passes_and_tampering_fails() {
        let spec = acme();
        let body = r#"{"results":[]}"#;
        let sig = format!("sha256={}", mac_hex("s3cret", body.as_bytes()));
        let opts = VerifyOptions::default();
        verifier(&spec, "s3cret")
            .verify(&signed(body, "X-Acme-Signature", &sig), &opts)
            .expect("valid");
        // Upper-case hex is the same signature.
        let upper = format!(
            "sha256={}",
            mac_hex("s3cret", body.as_bytes()).to_uppercase()
        );
        verifier(&spec, "s3cret")
            .verify(&signed(body, "x-acme-signature", &upper), &opts)
            .expect("valid");
        // Tampered body, tampered signature, wrong secret.
        let tampered_body = r#"{"results":[1]}"#;
        assert!(matches!(
            verifier(&spec, "s3cret")
                .verify(&signed(tampered_body, "X-Acme-Signature", &sig), &opts),
            Err(VerifyError::Mismatch)
        ));
        let mut bad = sig.clone();
        let last = if bad.ends_with('0') { '1' } else { '0' };
        bad.pop();
        bad.push(last);
        assert!(matches!(
            verifier(&spec, "s3cret").verify(&signed(body, "X-Acme-Signature", &bad), &opts),
            Err(VerifyError::Mismatch)
        ));
        assert!(matches!(
            verifier(&spec, "other").verify(&signed(body, "X-Acme-Signature", &sig), &opts),
            Err(VerifyError::Mismatch)
        ));
        // Prefix missing, not hex, header missing.
        let bare = mac_hex("s3cret", body.as_bytes());
        assert!(matches!(
            verifier(&spec, "s3cret").verify(&signed(body, "X-Acme-Signature", &bare), &opts),
            Err(VerifyError::Malformed(_))
        ));
        assert!(matches!(
            verifier(&spec, "s3cret")
                .verify(&signed(body, "X-Acme-Signature", "sha256=xyz"), &opts),
            Err(VerifyError::Malformed(_))
        ));
        assert!(matches!(
            verifier(&spec, "s3cret").verify(&CallbackRequest::post(body), &opts),
            Err(VerifyError::Missing(_))
        ));
    }

    #[test]
    fn base64_sha1_and_sha512() {
        use base64::engine::general_purpose::STANDARD;
        let body = "{\"ok\":\"✓\"}";
        for (alg, sig) in [
            (Algorithm::Sha1, {
                let mut m = <Hmac<Sha1> as KeyInit>::new_from_slice(b"k").expect("key");
                m.update(body.as_bytes());
                STANDARD.encode(m.finalize().into_bytes())
            }),
            (Algorithm::Sha512, {
                let mut m = <Hmac<Sha512> as KeyInit>::new_from_slice(b"k").expect("key");
                m.update(body.as_bytes());
                STANDARD.encode(m.finalize().into_bytes())
            }),
        ] {
            let mut spec = acme();
            spec.signature = Some(SignatureSpec {
                header: "X-Sig".into(),
                algorithm: alg,
                encoding: Encoding::Base64,
                prefix: None,
                signed: Signed::Body,
                timestamp_header: None,
            });
            let opts = VerifyOptions::default();
            verifier(&spec, "k")
                .verify(&signed(body, "X-Sig", &sig), &opts)
                .expect("valid");
            // Without padding is accepted too.
            verifier(&spec, "k")
                .verify(&signed(body, "X-Sig", sig.trim_end_matches('=')), &opts)
                .expect("valid");
            assert!(matches!(
                verifier(&spec, "k").verify(&signed("{\"ok\":\"x\"}", "X-Sig", &sig), &opts),
                Err(VerifyError::Mismatch)
            ));
            assert!(matches!(
                verifier(&spec, "k2").verify(&signed(body, "X-Sig", &sig), &opts),
                Err(VerifyError::Mismatch)
            ));
            assert!(matches!(
                verifier(&spec, "k").verify(&signed(body, "X-Sig", "!!notbase64!!"), &opts),
                Err(VerifyError::Malformed(_))
            ));
            // A hex spec does not accept the base64 value.
            spec.signature.as_mut().expect("sig").encoding = Encoding::Hex;
            assert!(
                verifier(&spec, "k")
                    .verify(&signed(body, "X-Sig", &sig), &opts)
                    .is_err()
            );
        }
    }

    #[test]
    fn timestamp_body_signature_and_freshness() {
        let mut spec = acme();
        spec.signature = Some(SignatureSpec {
            header: "X-Sig".into(),
            algorithm: Algorithm::Sha256,
            encoding: Encoding::Hex,
            prefix: Some("v1=".into()),
            signed: Signed::TimestampBody,
            timestamp_header: Some("X-Ts".into()),
        });
        spec.validate().expect("valid");
        let body = r#"{"results":[]}"#;
        let sig = format!(
            "v1={}",
            mac_hex("k", format!("1700000000.{body}").as_bytes())
        );
        let mut req = signed(body, "X-Sig", &sig);
        req.headers
            .insert("x-ts", http::HeaderValue::from_static("1700000000"));
        let v = verifier(&spec, "k");
        v.verify(&req, &VerifyOptions::default())
            .expect("valid, no clock");
        let fresh = VerifyOptions {
            now_secs: Some(1_700_000_100),
            tolerance_secs: None,
        };
        v.verify(&req, &fresh).expect("fresh");
        let stale = VerifyOptions {
            now_secs: Some(1_700_000_301),
            tolerance_secs: None,
        };
        assert!(matches!(v.verify(&req, &stale), Err(VerifyError::Stale(_))));
        // Another timestamp breaks the signature.
        req.headers
            .insert("x-ts", http::HeaderValue::from_static("1700000001"));
        assert!(matches!(
            v.verify(&req, &VerifyOptions::default()),
            Err(VerifyError::Mismatch)
        ));
        req.headers.remove("x-ts");
        assert!(matches!(
            v.verify(&req, &VerifyOptions::default()),
            Err(VerifyError::Missing(_))
        ));
    }

    #[test]
    fn verifier_fails_closed() {
        let spec = acme();
        assert!(matches!(
            Verifier::from_settings(&spec, &VerifySettings::new()),
            Err(VerifyConfigError::Missing { key: "secret", .. })
        ));
        assert!(Verifier::from_settings(&spec, &VerifySettings::new().with("secret", "")).is_err());
        assert!(matches!(
            Verifier::from_settings(
                &spec,
                &VerifySettings::new().with("secret", "k").with("token", "t")
            ),
            Err(VerifyConfigError::Unknown { .. })
        ));
        let mut unsigned = acme();
        unsigned.signature = None;
        let err = Verifier::from_settings(&unsigned, &VerifySettings::new().with("secret", "k"))
            .expect_err("no signature block");
        assert!(err.to_string().contains("verify: none"), "{err}");
        let mut bad = acme();
        bad.signature = Some(SignatureSpec {
            header: "X-Sig".into(),
            algorithm: Algorithm::Sha256,
            encoding: Encoding::Hex,
            prefix: None,
            signed: Signed::TimestampBody,
            timestamp_header: None,
        });
        assert!(Verifier::from_settings(&bad, &VerifySettings::new().with("secret", "k")).is_err());
        let v = verifier(&spec, "hunter2-secret");
        assert!(!format!("{v:?}").contains("hunter2"));
        // Through the dispatching enum.
        let provider = Provider::Generic(std::sync::Arc::new(spec));
        assert_eq!(provider.id(), "acme_sms");
        assert!(crate::Verifier::new(&provider, &VerifySettings::new()).is_err());
    }
}
