//! Callbacks into events with a [`Spec`] (see the `generic` module docs).

use serde_json::{Map, Value};

use super::{LABEL, Spec, text_at};
use crate::event::ChannelUser;
use crate::event::{idempotency_key, idempotency_key_of_value};
use crate::limits::TopLevel;
use crate::provider::{Context, Normalized, Unparsed, strip_channel_prefix};
use crate::{
    CallbackRequest, ErrorInfo, Event, EventKind, EventType, InboundMessage, NormalizeError,
    Status, StatusUpdate,
};

/// A body holding the event `raw` alone in a batch at pointer `at` (`""`: the body is the
/// array): `[raw]`, or `{"results":[raw]}` for `/results`, nested for deeper pointers.
fn batch_of_one(at: &str, raw: &str) -> String {
    let tokens: Vec<String> = at
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let mut body = format!("[{raw}]");
    for token in tokens.iter().rev() {
        body = format!("{{{}:{body}}}", Value::String(token.clone()));
    }
    body
}

#[cfg(test)]
#[test]
fn a_batch_of_one_is_built_at_any_pointer() {
    assert_eq!(batch_of_one("", "{}"), "[{}]");
    assert_eq!(batch_of_one("/a/b~1c", "1"), r#"{"a":{"b/c":[1]}}"#);
}

impl Spec {
    /// Normalizes one callback: each event of the body (or the body itself) becomes one
    /// [`Event`].
    pub fn normalize(
        &self,
        req: &CallbackRequest,
        ctx: &Context,
    ) -> Result<Normalized, NormalizeError> {
        req.expect_content_type(LABEL, &["application/json"], "application/json")?;
        let top = match self.events.as_deref() {
            Some("") => TopLevel::ObjectOrArray,
            _ => TopLevel::Object,
        };
        if let Some(unparsed) = req.beyond_limits(top) {
            return Ok(Normalized::one_unparsed(unparsed));
        }
        let body = req.json()?;
        let mut out = Normalized::default();
        match self.events.as_deref() {
            None => {
                if !body.is_object() {
                    return Err(NormalizeError::shape(
                        "/",
                        "a JSON object (set `events` for a batch)",
                    ));
                }
                out.events.push(self.event(&body, ctx, "")?);
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
                // An element that is not an object or cannot be normalized is kept as
                // unparsed; the rest of the batch is normalized.
                for (i, item) in items.iter().enumerate() {
                    let here = format!("{at}/{i}");
                    let event = if item.is_object() {
                        self.event(item, ctx, &here)
                    } else {
                        Err(NormalizeError::shape(here, "an object"))
                    };
                    match event {
                        Ok(event) => out.events.push(event),
                        Err(e) => {
                            let raw = item.to_string();
                            let alone = batch_of_one(at, &raw);
                            out.unparsed.push(Unparsed::new(e, raw).with_body(alone));
                        }
                    }
                }
            }
        }
        Ok(out)
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
            channel_user: ChannelUser::default(),
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

/// Address cleanup: trimmed, without a `whatsapp:` prefix.
fn address(s: String) -> String {
    strip_channel_prefix(s.trim()).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::acme;
    use super::*;
    use crate::Channel;
    use serde_json::json;

    fn ctx() -> Context {
        Context {
            received_at_ms: 1_700_000_000_000,
        }
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

    /// An element of a batch that cannot be normalized is kept, with the error as its
    /// reason; a body that is not the batch is refused with it.
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
            let out = spec.normalize(&request(&body), &ctx());
            if msg.contains("/results/0") {
                let out = out.expect("the batch is accepted");
                assert!(out.events.is_empty(), "{body}");
                assert_eq!(out.unparsed[0].reason, msg, "{body}");
                assert_eq!(out.unparsed[0].raw, body["results"][0].to_string());
            } else {
                assert_eq!(out.expect_err("must fail").to_string(), msg, "{body}");
            }
        }
        // The rest of the batch is normalized.
        let mixed = json!({"results": [
            {"kind": "dlr", "to": "+1", "status": {"name": "DELIVRD"}},
            {"kind": "dlr", "status": {"name": "DELIVRD"}}
        ]});
        let out = spec.normalize(&request(&mixed), &ctx()).expect("accepted");
        assert_eq!((out.events.len(), out.unparsed.len()), (1, 1));
        // The unparsed one, alone in the same envelope, is a body to normalize again.
        let alone = out.unparsed[0].replay_body();
        assert_eq!(
            alone,
            r#"{"results":[{"kind":"dlr","status":{"name":"DELIVRD"}}]}"#
        );
        let again = spec
            .normalize(
                &request(&serde_json::from_str(alone).expect("json")),
                &ctx(),
            )
            .expect("accepted");
        assert_eq!((again.events.len(), again.unparsed.len()), (0, 1));
        // A body that is one event is still refused when it cannot be normalized.
        let single: Spec = serde_json::from_value(json!({
            "name": "one",
            "channel": "sms",
            "fields": {"channel_value": "/to", "status": "/s"}
        }))
        .expect("spec");
        assert!(
            single
                .normalize(&request(&json!({"s": "x"})), &ctx())
                .is_err()
        );
    }

    #[test]
    fn a_body_beyond_the_limits_is_kept_whole() {
        let spec = acme();
        let deep = format!(
            r#"{{"results":[{{"kind":"dlr","to":"+1","x":{}{}}}]}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let req = CallbackRequest::post(deep.clone()).with_content_type("application/json");
        let out = spec.normalize(&req, &ctx()).expect("kept");
        assert!(out.events.is_empty());
        assert_eq!(out.unparsed.len(), 1);
        assert_eq!(out.unparsed[0].raw, deep);
        assert!(
            out.unparsed[0]
                .reason
                .starts_with("nested deeper than 64 levels")
        );
        // Not an object where one belongs: refused.
        let array = format!("[{}{}]", "[".repeat(100_000), "]".repeat(100_000));
        let req = CallbackRequest::post(array).with_content_type("application/json");
        assert!(spec.normalize(&req, &ctx()).is_err());
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
}
