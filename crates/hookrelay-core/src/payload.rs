//! Rendering events as webhook payloads.
//!
//! Two formats:
//!
//! - `suprsend` (default, version `"1.0"`): the field names of the SuprSend outbound
//!   webhook, so consumers written for it work unchanged;
//! - `standard`: the same fields wrapped in the Standard Webhooks envelope
//!   `{"type": "<channel>.<event_type>.<status>", "timestamp": RFC 3339, "data": {…}}`.
//!   Inbound messages have type `<channel>.inbound_message.received`.
//!
//! ```
//! # #[cfg(feature = "postmark")] {
//! use hookrelay_core::payload::{render, Format, PayloadOptions};
//! use hookrelay_core::provider::{Context, Provider};
//! use hookrelay_core::CallbackRequest;
//!
//! let req = CallbackRequest::post(r#"{"RecordType":"Delivery","MessageID":"m-1",
//!     "Recipient":"a@example.com","DeliveredAt":"2024-01-02T03:04:05Z"}"#)
//!     .with_content_type("application/json");
//! let out = Provider::Postmark.normalize(&req, &Context { received_at_ms: 0 }).unwrap();
//! let payload = render(&out.events[0], &PayloadOptions::default());
//! assert_eq!(payload["suprsend_status"]["status"], "delivered");
//! assert_eq!(payload["suprsend_status"]["timestamp"], 1704164645000_i64);
//! assert_eq!(payload["channel_value"], "a@example.com");
//! # }
//! ```

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::event::{ChannelUser, Event, EventKind, InboundMessage, Raw, StatusUpdate, UnknownName};
use crate::timestamp::ms_to_rfc3339;

/// Payload format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// SuprSend outbound-webhook field names, version "1.0".
    #[default]
    Suprsend,
    /// Standard Webhooks envelope around the same fields.
    Standard,
}

impl FromStr for Format {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        match s {
            "suprsend" => Ok(Format::Suprsend),
            "standard" => Ok(Format::Standard),
            _ => Err(UnknownName(s.to_owned())),
        }
    }
}

/// Correlation-id names that fill `distinct_id`, `workflow_name` and `template`.
/// The first name present in an event's correlation ids wins; absent stays absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorrelationKeys {
    /// Names for `distinct_id`.
    pub distinct_id: Vec<String>,
    /// Names for `workflow_name`.
    pub workflow_name: Vec<String>,
    /// Names for `template`.
    pub template: Vec<String>,
}

impl Default for CorrelationKeys {
    fn default() -> Self {
        Self {
            distinct_id: vec!["distinct_id".into()],
            workflow_name: vec!["workflow_name".into()],
            template: vec!["template".into()],
        }
    }
}

/// How to render a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadOptions {
    /// Format.
    pub format: Format,
    /// Include `vendor_response` (the provider's own event).
    pub include_raw: bool,
    /// Correlation-id names for the user and workflow fields.
    pub correlation_keys: CorrelationKeys,
}

impl Default for PayloadOptions {
    fn default() -> Self {
        Self {
            format: Format::Suprsend,
            include_raw: true,
            correlation_keys: CorrelationKeys::default(),
        }
    }
}

/// Renders `event` as a payload JSON value.
#[must_use]
pub fn render(event: &Event, opts: &PayloadOptions) -> Value {
    let body = suprsend(event, opts);
    match opts.format {
        Format::Suprsend => body,
        Format::Standard => {
            let kind = match &event.kind {
                EventKind::Status(s) => format!("{}.status.{}", event.channel, s.status),
                EventKind::Inbound(_) => format!("{}.inbound_message.received", event.channel),
            };
            json!({
                "type": kind,
                "timestamp": ms_to_rfc3339(event.timestamp_ms()),
                "data": body,
            })
        }
    }
}

/// The payload of `event` as JSON bytes: the same bytes as serializing [`render`]'s value,
/// written straight from the event without building that value (no copy of `raw`).
#[must_use]
pub fn to_bytes(event: &Event, opts: &PayloadOptions) -> Vec<u8> {
    let body = View { event, opts };
    // Room for the envelope and the provider's event as received, so the buffer is not
    // grown (and copied) several times on the way to its final size.
    let raw = match &event.raw {
        Raw::Text(text) if opts.include_raw => text.get().len(),
        _ => 0,
    };
    let mut out = Vec::with_capacity(512 + raw);
    let rendered = match opts.format {
        Format::Suprsend => serde_json::to_writer(&mut out, &body),
        Format::Standard => serde_json::to_writer(&mut out, &StandardView(body)),
    };
    // Serializing plain strings, numbers and `Value`s into memory cannot fail.
    match rendered {
        Ok(()) => out,
        Err(_) => Vec::new(),
    }
}

/// `render`'s `suprsend` object, serialized in the same key order.
struct View<'a> {
    event: &'a Event,
    opts: &'a PayloadOptions,
}

/// `render`'s `standard` envelope around a [`View`].
struct StandardView<'a>(View<'a>);

impl Serialize for StandardView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let event = self.0.event;
        let mut map = serializer.serialize_map(Some(3))?;
        match &event.kind {
            EventKind::Status(s) => map.serialize_entry(
                "type",
                &format_args!("{}.status.{}", event.channel, s.status),
            )?,
            EventKind::Inbound(_) => map.serialize_entry(
                "type",
                &format_args!("{}.inbound_message.received", event.channel),
            )?,
        }
        map.serialize_entry("timestamp", &ms_to_rfc3339(event.timestamp_ms()))?;
        map.serialize_entry("data", &self.0)?;
        map.end()
    }
}

/// A correlation value as `render` puts it in `distinct_id`, `workflow_name`, `template`.
enum Correlated<'a> {
    Text(&'a str),
    Number(&'a serde_json::Number),
}

impl Serialize for Correlated<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Correlated::Text(s) => serializer.serialize_str(s),
            Correlated::Number(n) => serializer.collect_str(n),
        }
    }
}

fn correlated_ref<'a>(event: &'a Event, names: &[String]) -> Option<Correlated<'a>> {
    names.iter().find_map(|n| match event.correlation.get(n) {
        Some(Value::String(s)) if !s.is_empty() => Some(Correlated::Text(s)),
        Some(Value::Number(n)) => Some(Correlated::Number(n)),
        _ => None,
    })
}

/// `render`'s `reference` object: correlation ids, then `vendor_ack_id` and
/// `idempotency_key` (each replacing a correlation id of the same name in its place).
struct Reference<'a>(&'a Event);

impl Serialize for Reference<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let event = self.0;
        let ack = event.vendor_ack_id.as_deref();
        let mut map = serializer.serialize_map(None)?;
        for (k, v) in &event.correlation {
            match (k.as_str(), ack) {
                ("vendor_ack_id", Some(ack)) => map.serialize_entry(k, ack)?,
                ("idempotency_key", _) => map.serialize_entry(k, &event.idempotency_key)?,
                _ => map.serialize_entry(k, v)?,
            }
        }
        if let Some(ack) = ack
            && !event.correlation.contains_key("vendor_ack_id")
        {
            map.serialize_entry("vendor_ack_id", ack)?;
        }
        if !event.correlation.contains_key("idempotency_key") {
            map.serialize_entry("idempotency_key", &event.idempotency_key)?;
        }
        map.end()
    }
}

struct StatusView<'a>(&'a StatusUpdate);

impl Serialize for StatusView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let s = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("status", &s.status)?;
        map.serialize_entry("timestamp", &s.timestamp_ms)?;
        if let Some(e) = &s.error {
            map.serialize_entry("error", e)?;
        }
        map.end()
    }
}

/// A JSON object with one entry.
struct OneEntry<'a, V: ?Sized>(&'a str, &'a V);

impl<V: Serialize + ?Sized> Serialize for OneEntry<'_, V> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(self.0, self.1)?;
        map.end()
    }
}

struct InboundView<'a>(&'a InboundMessage);

impl Serialize for InboundView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let msg = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("from", &msg.from)?;
        map.serialize_entry("to", &msg.to)?;
        map.serialize_entry("type", &msg.message_type)?;
        if let Some(t) = &msg.text {
            map.serialize_entry("text", &OneEntry("body", t.as_str()))?;
        }
        if !msg.media.is_empty() {
            map.serialize_entry("media", &msg.media)?;
        }
        if let Some(l) = &msg.location {
            map.serialize_entry("location", l)?;
        }
        if let Some(c) = &msg.context {
            map.serialize_entry("context", c)?;
        }
        if let Some(id) = &msg.original_message_id {
            map.serialize_entry("original_message_id", id)?;
        }
        map.serialize_entry("timestamp", &msg.timestamp_ms)?;
        map.serialize_entry("source_message_id", &msg.source_message_id)?;
        map.end()
    }
}

impl Serialize for View<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let (event, opts) = (self.event, self.opts);
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("version", "1.0")?;
        map.serialize_entry("event_type", &event.event_type())?;
        map.serialize_entry("channel", &event.channel)?;
        map.serialize_entry("channel_value", &event.channel_value)?;
        for (field, value) in channel_user_fields(&event.channel_user) {
            map.serialize_entry(field, value)?;
        }
        map.serialize_entry("vendor_name", &event.vendor_name)?;
        let keys = &opts.correlation_keys;
        for (field, names) in [
            ("distinct_id", &keys.distinct_id),
            ("workflow_name", &keys.workflow_name),
            ("template", &keys.template),
        ] {
            if let Some(v) = correlated_ref(event, names) {
                map.serialize_entry(field, &v)?;
            }
        }
        map.serialize_entry("reference", &Reference(event))?;
        match &event.kind {
            EventKind::Status(s) => map.serialize_entry("suprsend_status", &StatusView(s))?,
            EventKind::Inbound(msg) => {
                map.serialize_entry("suprsend_inbound_message", &InboundView(msg))?;
            }
        }
        if opts.include_raw {
            map.serialize_entry(
                "vendor_response",
                &OneEntry(event.vendor_name.as_str(), &event.raw),
            )?;
        }
        map.end()
    }
}

/// The user's channel identifiers that are known, in payload order, under their payload
/// names (`channel_user_id`, `channel_parent_user_id`, `channel_username`).
fn channel_user_fields(user: &ChannelUser) -> impl Iterator<Item = (&'static str, &str)> {
    [
        ("channel_user_id", &user.user_id),
        ("channel_parent_user_id", &user.parent_user_id),
        ("channel_username", &user.username),
    ]
    .into_iter()
    .filter_map(|(field, value)| value.as_deref().map(|v| (field, v)))
}

fn correlated(event: &Event, names: &[String]) -> Option<Value> {
    names.iter().find_map(|n| match event.correlation.get(n) {
        Some(Value::String(s)) if !s.is_empty() => Some(Value::String(s.clone())),
        Some(Value::Number(n)) => Some(Value::String(n.to_string())),
        _ => None,
    })
}

fn suprsend(event: &Event, opts: &PayloadOptions) -> Value {
    let mut m = Map::new();
    m.insert("version".into(), json!("1.0"));
    m.insert("event_type".into(), json!(event.event_type()));
    m.insert("channel".into(), json!(event.channel));
    m.insert("channel_value".into(), json!(event.channel_value));
    for (field, value) in channel_user_fields(&event.channel_user) {
        m.insert(field.into(), json!(value));
    }
    m.insert("vendor_name".into(), json!(event.vendor_name));
    let keys = &opts.correlation_keys;
    for (field, names) in [
        ("distinct_id", &keys.distinct_id),
        ("workflow_name", &keys.workflow_name),
        ("template", &keys.template),
    ] {
        if let Some(v) = correlated(event, names) {
            m.insert(field.into(), v);
        }
    }
    let mut reference = Map::new();
    for (k, v) in &event.correlation {
        reference.insert(k.clone(), v.clone());
    }
    if let Some(ack) = &event.vendor_ack_id {
        reference.insert("vendor_ack_id".into(), json!(ack));
    }
    reference.insert("idempotency_key".into(), json!(event.idempotency_key));
    m.insert("reference".into(), Value::Object(reference));
    match &event.kind {
        EventKind::Status(s) => {
            m.insert("suprsend_status".into(), status(s));
        }
        EventKind::Inbound(msg) => {
            m.insert("suprsend_inbound_message".into(), inbound(msg));
        }
    }
    if opts.include_raw {
        let mut vr = Map::new();
        vr.insert(event.vendor_name.clone(), event.raw.to_value());
        m.insert("vendor_response".into(), Value::Object(vr));
    }
    Value::Object(m)
}

fn status(s: &StatusUpdate) -> Value {
    let mut m = Map::new();
    m.insert("status".into(), json!(s.status));
    m.insert("timestamp".into(), json!(s.timestamp_ms));
    if let Some(e) = &s.error {
        m.insert("error".into(), json!(e));
    }
    Value::Object(m)
}

fn inbound(msg: &InboundMessage) -> Value {
    let mut m = Map::new();
    m.insert("from".into(), json!(msg.from));
    m.insert("to".into(), json!(msg.to));
    m.insert("type".into(), json!(msg.message_type));
    if let Some(t) = &msg.text {
        m.insert("text".into(), json!({ "body": t }));
    }
    if !msg.media.is_empty() {
        m.insert("media".into(), json!(msg.media));
    }
    if let Some(l) = &msg.location {
        m.insert("location".into(), json!(l));
    }
    if let Some(c) = &msg.context {
        m.insert("context".into(), json!(c));
    }
    if let Some(id) = &msg.original_message_id {
        m.insert("original_message_id".into(), json!(id));
    }
    m.insert("timestamp".into(), json!(msg.timestamp_ms));
    m.insert("source_message_id".into(), json!(msg.source_message_id));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Channel, ChannelUser, ErrorInfo, Status};

    /// An event whose correlation ids collide with the reference's own fields.
    fn colliding() -> Event {
        let mut correlation = Map::new();
        correlation.insert("idempotency_key".into(), json!("from-the-provider"));
        correlation.insert("distinct_id".into(), json!(42));
        correlation.insert("vendor_ack_id".into(), json!("ack-from-args"));
        correlation.insert("template".into(), json!(""));
        correlation.insert("workflow_name".into(), json!({"nested": [1, 2.5, null]}));
        Event {
            channel: Channel::Sms,
            channel_value: "+15550001111".into(),
            channel_user: ChannelUser::default(),
            vendor_name: "twilio".into(),
            vendor_ack_id: Some("SM1".into()),
            idempotency_key: "key-1".into(),
            correlation,
            kind: EventKind::Status(StatusUpdate {
                status: Status::Failed,
                timestamp_ms: 1_700_000_000_123,
                error: Some(ErrorInfo {
                    code: Some("30003".into()),
                    message: Some("Unreachable \"handset\"\n".into()),
                }),
                informational: false,
            }),
            raw: json!({"z": 1, "a": "é\u{1}"}).into(),
        }
    }

    #[test]
    fn to_bytes_matches_render_when_correlation_ids_collide() {
        let mut event = colliding();
        for ack in [Some("SM1".to_owned()), None] {
            event.vendor_ack_id = ack;
            for format in [Format::Suprsend, Format::Standard] {
                let opts = PayloadOptions {
                    format,
                    ..PayloadOptions::default()
                };
                let via_value = serde_json::to_vec(&render(&event, &opts)).unwrap_or_default();
                assert!(!via_value.is_empty());
                assert_eq!(
                    String::from_utf8_lossy(&to_bytes(&event, &opts)),
                    String::from_utf8_lossy(&via_value)
                );
            }
        }
    }
}
