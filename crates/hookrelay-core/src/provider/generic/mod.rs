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

// The spec, its parsing and its validation are here; reading callbacks with it
// (`normalize.rs`) and checking their signature (`verify.rs`) are separate files, each with
// its tests.
mod normalize;
mod verify;

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::Deserialize;
use serde::de::{self, Deserializer, IntoDeserializer, MapAccess, Visitor};
use serde_json::Value;

use crate::{Channel, EventType, NormalizeError, Status};

pub use verify::Verifier;

/// Provider label used in errors (the configured name is not `'static`).
const LABEL: &str = "generic";

/// The ids of every built-in provider, compiled in or not: a generic provider may take
/// none of them, so a configuration means the same whichever providers a build has.
const BUILTIN_IDS: &[&str] = &[
    "sendgrid",
    "mailgun",
    "ses",
    "postmark",
    "twilio",
    "vonage",
    "plivo",
    "meta_whatsapp",
    "gupshup",
    "infobip",
    "sinch",
    "telnyx",
    "messagebird",
    "sparkpost",
    "mandrill",
    "mailjet",
    "brevo",
    "resend",
];

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
        if BUILTIN_IDS.contains(&name) || name == LABEL {
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

/// The spec the tests of every file build on.
#[cfg(test)]
mod test_support {
    use serde_json::json;

    use super::Spec;

    /// A fictional SMS provider: batches under `/results`, numeric-ish status codes.
    pub(super) fn acme() -> Spec {
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
}

#[cfg(test)]
mod tests {
    use super::test_support::acme;
    use super::*;
    use serde_json::json;

    #[test]
    fn spec_is_valid() {
        acme().validate().expect("valid");
    }

    #[test]
    fn every_builtin_id_is_reserved() {
        use crate::provider::Provider;

        for id in Provider::BUILTIN {
            assert!(BUILTIN_IDS.contains(id), "{id}");
        }
        #[cfg(feature = "providers")]
        assert_eq!(Provider::BUILTIN, BUILTIN_IDS);
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
}
