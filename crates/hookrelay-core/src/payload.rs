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
//! ```

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::event::{Event, EventKind, InboundMessage, StatusUpdate, UnknownName};
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

/// Renders `event` as payload bytes (compact JSON), the exact body that is signed and sent.
#[must_use]
pub fn to_bytes(event: &Event, opts: &PayloadOptions) -> Vec<u8> {
    serde_json::to_vec(&render(event, opts)).unwrap_or_default()
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
        vr.insert(event.vendor_name.clone(), event.raw.clone());
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
    m.insert("timestamp".into(), json!(msg.timestamp_ms));
    m.insert("source_message_id".into(), json!(msg.source_message_id));
    Value::Object(m)
}
