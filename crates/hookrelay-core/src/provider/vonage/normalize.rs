//! Vonage callbacks into events: SMS API delivery receipts and inbound SMS, Messages API
//! statuses and inbound messages (see the `vonage` module docs).

use serde_json::{Map, Value};

use super::{Fields, PROVIDER, body_is_json, read_fields};
use crate::event::ChannelUser;
use crate::event::idempotency_key;
use crate::limits::TopLevel;
use crate::phone::e164_of_channel_address;
use crate::provider::json::str_of;
use crate::provider::{Context, Normalized, Unparsed};
use crate::timestamp::{parse_str_ms, parse_yymmddhhmm_ms};
use crate::{
    CallbackRequest, Channel, ErrorInfo, Event, EventKind, InboundMessage, Location, Media,
    NormalizeError, ReplyContext, Status, StatusUpdate,
};

/// The fields as one JSON object (form and query: first value of a repeated name).
fn read_object(req: &CallbackRequest) -> Result<Map<String, Value>, NormalizeError> {
    Ok(match read_fields(req)? {
        Fields::Json(m) => m,
        Fields::Pairs(pairs) => {
            let mut m = Map::new();
            for (k, v) in pairs {
                m.entry(k).or_insert(Value::String(v));
            }
            m
        }
    })
}

/// Normalizes one Vonage callback (SMS API receipt or inbound SMS, Messages API status or
/// inbound message) into one event.
pub fn normalize(req: &CallbackRequest, ctx: &Context) -> Result<Normalized, NormalizeError> {
    if body_is_json(req)
        && let Some(unparsed) = req.beyond_limits(TopLevel::Object)
    {
        return Ok(Normalized::one_unparsed(unparsed));
    }
    let obj = read_object(req)?;
    let raw = Value::Object(obj.clone());
    let event = if obj.contains_key("message_uuid") {
        let (name, channel) = messages_channel(&raw)?;
        let Some(channel) = channel else {
            // Vonage will not send it differently: kept, rather than refused for ever.
            let text = match std::str::from_utf8(&req.body) {
                Ok(text) if body_is_json(req) => text.to_owned(),
                _ => raw.to_string(),
            };
            let reason = format!(
                "Vonage channel {name:?} has no channel in the payload (known: {})",
                Channel::NAMES.join(", ")
            );
            return Ok(Normalized::one_unparsed(Unparsed::new(reason, text)));
        };
        if obj.contains_key("status") {
            messages_status(&raw, channel, ctx)?
        } else {
            messages_inbound(&raw, channel, ctx)?
        }
    } else if obj.contains_key("msisdn") {
        if obj.contains_key("status") {
            sms_receipt(&raw, ctx)?
        } else if obj.contains_key("text") || obj.contains_key("type") {
            sms_inbound(&raw, ctx)?
        } else {
            return Err(NormalizeError::MissingField(
                "status (delivery receipt) or text/type (inbound SMS)".into(),
            ));
        }
    } else {
        return Err(NormalizeError::MissingField(
            "msisdn (SMS API) or message_uuid (Messages API)".into(),
        ));
    };
    Ok(Normalized::events(vec![event]))
}

fn required(v: &Value, key: &str) -> Result<String, NormalizeError> {
    str_of(v, key).ok_or_else(|| NormalizeError::MissingField(key.into()))
}

/// Parses a textual timestamp; non-ASCII text is never a timestamp.
fn text_ms(s: &str) -> Option<i64> {
    s.is_ascii().then(|| parse_str_ms(s)).flatten()
}

/// Maps an SMS API delivery-receipt `status` (`informational` for unknown values).
fn sms_status(value: &str) -> (Status, bool) {
    match value.trim().to_ascii_lowercase().as_str() {
        "delivered" => (Status::Delivered, false),
        "accepted" | "buffered" => (Status::Queued, false),
        "expired" | "failed" | "rejected" | "unknown" => (Status::Failed, false),
        _ => (Status::Queued, true),
    }
}

/// Maps a Messages API `status` (`informational` for unknown values).
fn messages_status_of(value: &str) -> (Status, bool) {
    match value.trim().to_ascii_lowercase().as_str() {
        "submitted" => (Status::Sent, false),
        "delivered" => (Status::Delivered, false),
        "read" => (Status::Seen, false),
        "rejected" | "undeliverable" => (Status::Failed, false),
        _ => (Status::Queued, true),
    }
}

/// Vonage's SMS delivery-receipt error codes (`err-code`).
fn dlr_error_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "1" => "Unknown",
        "2" => "Absent Subscriber - Temporary",
        "3" => "Absent Subscriber - Permanent",
        "4" => "Call Barred by User",
        "5" => "Portability Error",
        "6" => "Anti-Spam Rejection",
        "7" => "Handset Busy",
        "8" => "Network Error",
        "9" => "Illegal Number",
        "10" => "Illegal Message",
        "11" => "Unroutable",
        "12" => "Destination Unreachable",
        "13" => "Subscriber Age Restriction",
        "14" => "Number Blocked by Carrier",
        "15" => "Prepaid Insufficient Funds",
        "16" => "Gateway Quota Exceeded",
        "50" => "Entity Filter",
        "51" => "Header Filter",
        "52" => "Content Filter",
        "53" => "Consent Filter",
        "54" => "Regulation Error",
        "99" => "General Error",
        _ => return None,
    })
}

fn sms_receipt(raw: &Value, ctx: &Context) -> Result<Event, NormalizeError> {
    let msisdn = required(raw, "msisdn")?;
    let message_id = required(raw, "messageId")?;
    let status_raw = str_of(raw, "status").unwrap_or_default();
    let (status, informational) = sms_status(&status_raw);
    let err_code = str_of(raw, "err-code").map(|c| c.trim().to_owned());
    let error = match (&err_code, status) {
        (Some(code), Status::Failed) if code != "0" => {
            ErrorInfo::from_parts(Some(code.clone()), dlr_error_text(code).map(str::to_owned))
        }
        _ => None,
    };
    let timestamp_ms = str_of(raw, "message-timestamp")
        .and_then(|s| text_ms(&s))
        .or_else(|| str_of(raw, "scts").and_then(|s| parse_yymmddhhmm_ms(&s)))
        .unwrap_or(ctx.received_at_ms);
    let part = str_of(raw, "concat-part").unwrap_or_default();
    let key = idempotency_key(
        PROVIDER,
        &[
            "sms-dlr",
            &message_id,
            &status_raw,
            err_code.as_deref().unwrap_or(""),
            &part,
        ],
    );
    let mut correlation = Map::new();
    if let Some(r) = str_of(raw, "client-ref") {
        correlation.insert("client_ref".into(), Value::String(r));
    }
    Ok(Event {
        channel: Channel::Sms,
        channel_value: e164_of_channel_address(&msisdn),
        channel_user: ChannelUser::default(),
        vendor_name: PROVIDER.into(),
        vendor_ack_id: Some(message_id),
        idempotency_key: key,
        correlation,
        kind: EventKind::Status(StatusUpdate {
            status,
            timestamp_ms,
            error,
            informational,
        }),
        raw: raw.clone().into(),
    })
}

fn sms_inbound(raw: &Value, ctx: &Context) -> Result<Event, NormalizeError> {
    let from = e164_of_channel_address(&required(raw, "msisdn")?);
    let to = e164_of_channel_address(&required(raw, "to")?);
    let message_id = required(raw, "messageId")?;
    let binary = str_of(raw, "type").is_some_and(|t| t.trim().eq_ignore_ascii_case("binary"));
    let text = match raw.get("text") {
        Some(Value::String(s)) if !binary => Some(s.clone()),
        _ => None,
    };
    let timestamp_ms = str_of(raw, "message-timestamp")
        .and_then(|s| text_ms(&s))
        .or_else(|| str_of(raw, "timestamp").and_then(|s| text_ms(&s)))
        .unwrap_or(ctx.received_at_ms);
    let mut correlation = Map::new();
    for (field, name) in [
        ("concat-ref", "concat_ref"),
        ("concat-part", "concat_part"),
        ("concat-total", "concat_total"),
    ] {
        if let Some(v) = str_of(raw, field) {
            correlation.insert(name.into(), Value::String(v));
        }
    }
    if let Some(r) = str_of(raw, "client-ref") {
        correlation.insert("client_ref".into(), Value::String(r));
    }
    let key = idempotency_key(
        PROVIDER,
        &[
            "sms-inbound",
            &message_id,
            &str_of(raw, "concat-ref").unwrap_or_default(),
            &str_of(raw, "concat-part").unwrap_or_default(),
        ],
    );
    Ok(Event {
        channel: Channel::Sms,
        channel_value: from.clone(),
        channel_user: ChannelUser::default(),
        vendor_name: PROVIDER.into(),
        vendor_ack_id: Some(message_id.clone()),
        idempotency_key: key,
        correlation,
        kind: EventKind::Inbound(InboundMessage {
            from,
            to,
            message_type: if binary { "binary" } else { "text" }.into(),
            text,
            media: Vec::new(),
            location: None,
            context: None,
            timestamp_ms,
            source_message_id: message_id,
            original_message_id: None,
        }),
        raw: raw.clone().into(),
    })
}

/// A Messages API address: a string (v1) or `{number}` / `{id}` (v0.1).
fn address(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        o @ Value::Object(_) => str_of(o, "number").or_else(|| str_of(o, "id")),
        _ => str_of(v, key),
    }
}

/// The Messages API channel: `channel` (v1) or `to.type`/`from.type` (v0.1), as named
/// and as the payload's channel (`None` for a channel the payload has no name for).
fn messages_channel(v: &Value) -> Result<(String, Option<Channel>), NormalizeError> {
    let name = str_of(v, "channel")
        .or_else(|| v.get("to").and_then(|t| str_of(t, "type")))
        .or_else(|| v.get("from").and_then(|t| str_of(t, "type")))
        .ok_or_else(|| NormalizeError::MissingField("channel".into()))?;
    let channel = match name.trim().to_ascii_lowercase().as_str() {
        "sms" | "mms" => Some(Channel::Sms),
        "whatsapp" => Some(Channel::Whatsapp),
        "rcs" => Some(Channel::Rcs),
        // `viber_service_msg` is the v0.1 name.
        "viber_service" | "viber_service_msg" => Some(Channel::Viber),
        "messenger" => Some(Channel::Messenger),
        _ => None,
    };
    Ok((name, channel))
}

/// An address on `channel`: a phone number by the E.164 rule, except on Messenger, whose
/// addresses are page-scoped user ids (digits that are not a phone number), kept as sent.
fn address_on(channel: Channel, address: &str) -> String {
    match channel {
        Channel::Messenger => address.trim().to_owned(),
        Channel::Email | Channel::Sms | Channel::Whatsapp | Channel::Rcs | Channel::Viber => {
            e164_of_channel_address(address)
        }
    }
}

fn messages_timestamp(v: &Value, ctx: &Context) -> i64 {
    str_of(v, "timestamp")
        .and_then(|s| text_ms(&s))
        .unwrap_or(ctx.received_at_ms)
}

fn messages_status(raw: &Value, channel: Channel, ctx: &Context) -> Result<Event, NormalizeError> {
    let uuid = required(raw, "message_uuid")?;
    let to = address(raw, "to").ok_or_else(|| NormalizeError::MissingField("to".into()))?;
    let status_raw = str_of(raw, "status").unwrap_or_default();
    let (status, informational) = messages_status_of(&status_raw);
    let error = match (raw.get("error"), status) {
        (Some(e @ Value::Object(_)), Status::Failed) => ErrorInfo::from_parts(
            str_of(e, "code")
                .or_else(|| str_of(e, "title"))
                .or_else(|| str_of(e, "type")),
            str_of(e, "detail").or_else(|| str_of(e, "reason")),
        ),
        _ => None,
    };
    let mut correlation = Map::new();
    if let Some(r) = str_of(raw, "client_ref") {
        correlation.insert("client_ref".into(), Value::String(r));
    }
    Ok(Event {
        channel,
        channel_value: address_on(channel, &to),
        channel_user: ChannelUser::default(),
        vendor_name: PROVIDER.into(),
        vendor_ack_id: Some(uuid.clone()),
        idempotency_key: idempotency_key(PROVIDER, &["messages-status", &uuid, &status_raw]),
        correlation,
        kind: EventKind::Status(StatusUpdate {
            status,
            timestamp_ms: messages_timestamp(raw, ctx),
            error,
            informational,
        }),
        raw: raw.clone().into(),
    })
}

fn media_of(content: &Value, key: &str) -> Vec<Media> {
    content
        .get(key)
        .and_then(|m| str_of(m, "url"))
        .map(|url| vec![Media::at(url, None)])
        .unwrap_or_default()
}

fn coordinate(v: &Value, keys: &[&str]) -> Option<f64> {
    keys.iter()
        .find_map(|k| match v.get(*k)? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        })
        .filter(|f| f.is_finite())
}

fn messages_inbound(raw: &Value, channel: Channel, ctx: &Context) -> Result<Event, NormalizeError> {
    let uuid = required(raw, "message_uuid")?;
    let from = address_on(
        channel,
        &address(raw, "from").ok_or_else(|| NormalizeError::MissingField("from".into()))?,
    );
    let to = address_on(
        channel,
        &address(raw, "to").ok_or_else(|| NormalizeError::MissingField("to".into()))?,
    );
    // v1 puts the content at the top level; v0.1 under `message.content`.
    let (content, vonage_type) = match str_of(raw, "message_type") {
        Some(t) => (raw, t),
        None => match raw.pointer("/message/content") {
            Some(c @ Value::Object(_)) => (
                c,
                str_of(c, "type")
                    .ok_or_else(|| NormalizeError::MissingField("message.content.type".into()))?,
            ),
            _ if raw.get("text").is_some() => (raw, "text".to_owned()),
            _ => return Err(NormalizeError::MissingField("message_type".into())),
        },
    };
    let vonage_type = vonage_type.trim().to_ascii_lowercase();
    let caption = |key: &str| content.get(key).and_then(|m| str_of(m, "caption"));
    let mut msg = InboundMessage {
        from: from.clone(),
        to,
        message_type: vonage_type.clone(),
        timestamp_ms: messages_timestamp(raw, ctx),
        source_message_id: uuid.clone(),
        ..InboundMessage::default()
    };
    match vonage_type.as_str() {
        "text" => {
            msg.text = match content.get("text") {
                Some(Value::String(s)) => Some(s.clone()),
                _ => None,
            };
        }
        "image" | "video" | "audio" | "sticker" => {
            msg.media = media_of(content, &vonage_type);
            msg.text = caption(&vonage_type);
        }
        "file" => {
            msg.message_type = "document".into();
            msg.media = media_of(content, "file");
            msg.text = caption("file");
        }
        "vcard" => {
            msg.message_type = "contacts".into();
            msg.media = media_of(content, "vcard");
        }
        "location" => {
            msg.location = content.get("location").and_then(|l| {
                Some(Location {
                    latitude: coordinate(l, &["lat", "latitude"])?,
                    longitude: coordinate(l, &["long", "longitude"])?,
                    name: str_of(l, "name"),
                    address: str_of(l, "address"),
                })
            });
        }
        "reply" => {
            msg.message_type = "interactive".into();
            msg.text = content.get("reply").and_then(|r| str_of(r, "title"));
        }
        "button" => {
            msg.text = content.get("button").and_then(|b| str_of(b, "text"));
        }
        "reaction" => {
            msg.text = content.get("reaction").and_then(|r| str_of(r, "emoji"));
        }
        _ => {}
    }
    msg.context = raw.get("context").and_then(|c| {
        Some(ReplyContext {
            id: str_of(c, "message_uuid")?,
            from: str_of(c, "message_from").map(|f| address_on(channel, &f)),
        })
    });
    let mut correlation = Map::new();
    if let Some(r) = str_of(raw, "client_ref") {
        correlation.insert("client_ref".into(), Value::String(r));
    }
    Ok(Event {
        channel,
        channel_value: from,
        channel_user: ChannelUser::default(),
        vendor_name: PROVIDER.into(),
        vendor_ack_id: Some(uuid.clone()),
        idempotency_key: idempotency_key(PROVIDER, &["messages-inbound", &uuid]),
        correlation,
        kind: EventKind::Inbound(msg),
        raw: raw.clone().into(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use http::Method;
    use serde_json::json;

    const DOC_EXAMPLE: &str =
        include_str!("../../../tests/fixtures/vonage/sms_inbound_doc_example.json");

    fn one(req: &CallbackRequest) -> Event {
        let mut out = normalize(req, &CTX).expect("normalizes");
        assert_eq!(out.events.len(), 1);
        out.events.remove(0)
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn dlr(status: &str, err: &str) -> Vec<(String, String)> {
        pairs(&[
            ("msisdn", "447700900000"),
            ("to", "AcmeInc"),
            ("network-code", "12345"),
            ("messageId", "0A0000001234567B"),
            ("price", "0.03330000"),
            ("status", status),
            ("scts", "2001011400"),
            ("err-code", err),
            ("api-key", "abcd1234"),
            ("client-ref", "order-42"),
            ("message-timestamp", "2020-01-01 12:00:00"),
        ])
    }

    #[test]
    fn sms_receipt_status_mapping_and_fallback() {
        for (value, status, informational) in [
            ("delivered", Status::Delivered, false),
            ("accepted", Status::Queued, false),
            ("buffered", Status::Queued, false),
            ("expired", Status::Failed, false),
            ("failed", Status::Failed, false),
            ("rejected", Status::Failed, false),
            ("unknown", Status::Failed, false),
            ("teleported", Status::Queued, true),
        ] {
            let e = one(&get(&dlr(value, "0")));
            let s = e.status().expect("status");
            assert_eq!(
                (s.status, s.informational),
                (status, informational),
                "{value}"
            );
            assert_eq!(e.channel, Channel::Sms);
            assert_eq!(e.channel_value, "+447700900000");
            assert_eq!(e.vendor_ack_id.as_deref(), Some("0A0000001234567B"));
            assert_eq!(e.correlation["client_ref"], "order-42");
            assert_eq!(s.timestamp_ms, 1_577_880_000_000);
            assert!(s.error.is_none());
        }
        let e = one(&form(&dlr("failed", "6")));
        let err = e.status().and_then(|s| s.error.clone()).expect("error");
        assert_eq!(err.code.as_deref(), Some("6"));
        assert_eq!(err.message.as_deref(), Some("Anti-Spam Rejection"));
        let e = one(&json_req(&dlr("rejected", "77")));
        let err = e.status().and_then(|s| s.error.clone()).expect("error");
        assert_eq!((err.code.as_deref(), err.message), (Some("77"), None));
        // scts when message-timestamp is absent; receive time when neither parses.
        let p: Vec<_> = dlr("delivered", "0")
            .into_iter()
            .filter(|(k, _)| k != "message-timestamp")
            .collect();
        assert_eq!(one(&get(&p)).timestamp_ms(), 1_577_887_200_000);
        let p = with(
            &with(&p, "scts", "garbage"),
            "message-timestamp",
            "2020-01-01 12:00:0é",
        );
        assert_eq!(one(&get(&p)).timestamp_ms(), CTX.received_at_ms);
        // Keys differ by status and error, and are equal across retries.
        let a = one(&get(&dlr("delivered", "0"))).idempotency_key;
        assert_eq!(a, one(&form(&dlr("delivered", "0"))).idempotency_key);
        assert_ne!(a, one(&get(&dlr("failed", "0"))).idempotency_key);
        assert_ne!(a, one(&get(&dlr("delivered", "1"))).idempotency_key);
    }

    #[test]
    fn messages_status_mapping_and_fallback() {
        for (value, status, informational) in [
            ("submitted", Status::Sent, false),
            ("delivered", Status::Delivered, false),
            ("read", Status::Seen, false),
            ("rejected", Status::Failed, false),
            ("undeliverable", Status::Failed, false),
            ("paused", Status::Queued, true),
        ] {
            let body = json!({
                "message_uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
                "to": "447700900000", "from": "447700900001",
                "timestamp": "2020-01-01T14:00:00.000Z", "status": value,
                "channel": "whatsapp", "client_ref": "abc",
                "error": {"type": "https://developer.nexmo.com/api-errors/messages-olympus#1250",
                          "title": "1250", "detail": "Unroutable"}
            });
            let e =
                one(&CallbackRequest::post(body.to_string()).with_content_type("application/json"));
            let s = e.status().expect("status");
            assert_eq!(
                (s.status, s.informational),
                (status, informational),
                "{value}"
            );
            assert_eq!(e.channel, Channel::Whatsapp);
            assert_eq!(e.channel_value, "+447700900000");
            assert_eq!(s.timestamp_ms, 1_577_887_200_000);
            assert_eq!(e.correlation["client_ref"], "abc");
            if status == Status::Failed {
                let err = s.error.clone().expect("error");
                assert_eq!(
                    (err.code.as_deref(), err.message.as_deref()),
                    (Some("1250"), Some("Unroutable"))
                );
            } else {
                assert!(s.error.is_none());
            }
        }
    }

    #[test]
    fn messages_channels() {
        let mk = |channel: &str| {
            let body = json!({"message_uuid": "u", "to": "447700900000", "status": "delivered", "channel": channel});
            normalize(
                &CallbackRequest::post(body.to_string()).with_content_type("application/json"),
                &CTX,
            )
        };
        assert_eq!(mk("sms").expect("sms").events[0].channel, Channel::Sms);
        assert_eq!(mk("mms").expect("mms").events[0].channel, Channel::Sms);
        for (name, channel, address) in [
            ("rcs", Channel::Rcs, "+447700900000"),
            ("viber_service", Channel::Viber, "+447700900000"),
            ("messenger", Channel::Messenger, "447700900000"),
        ] {
            let out = mk(name).expect(name);
            assert!(out.unparsed.is_empty());
            let e = &out.events[0];
            assert_eq!(
                (e.channel, e.channel_value.as_str()),
                (channel, address),
                "{name}"
            );
            assert_eq!(e.status().map(|s| s.status), Some(Status::Delivered));
        }
        // A channel the payload has no name for is kept whole, not refused.
        for other in ["instagram", "carrier_pigeon"] {
            let out = mk(other).expect("kept");
            assert!(out.events.is_empty());
            assert_eq!(out.unparsed.len(), 1);
            assert!(
                out.unparsed[0].reason.contains(&format!("{other:?}")),
                "{}",
                out.unparsed[0].reason
            );
            let raw: Value = serde_json::from_str(&out.unparsed[0].raw).expect("the body");
            assert_eq!(raw["channel"], other);
        }
        // Exactly the body as sent.
        let body = "{ \"message_uuid\": \"u\", \"to\": \"1\", \"status\": \"read\", \"channel\": \"instagram\" }";
        let out = normalize(
            &CallbackRequest::post(body).with_content_type("application/json"),
            &CTX,
        )
        .expect("kept");
        assert_eq!(out.unparsed[0].raw, body);
        // No channel at all is still a refusal: it is not a Messages API callback.
        let body = json!({"message_uuid": "u", "to": "447700900000", "status": "delivered"});
        assert!(
            normalize(
                &CallbackRequest::post(body.to_string()).with_content_type("application/json"),
                &CTX
            )
            .is_err()
        );
        // v0.1 addresses.
        let body = json!({"message_uuid": "u", "to": {"type": "sms", "number": "447700900000"},
                          "from": {"type": "sms", "number": "Acme"}, "status": "delivered"});
        let e = one(&CallbackRequest::post(body.to_string()).with_content_type("application/json"));
        assert_eq!(
            (e.channel, e.channel_value.as_str()),
            (Channel::Sms, "+447700900000")
        );
    }

    #[test]
    fn messenger_inbound_keeps_page_scoped_ids() {
        let body = json!({"message_uuid": "m-1", "channel": "messenger", "message_type": "text",
            "from": "1234567890", "to": "0987654321", "text": "hi",
            "timestamp": "2024-01-01T00:00:00Z",
            "context": {"message_uuid": "m-0", "message_from": "0987654321"}});
        let e = one(&CallbackRequest::post(body.to_string()).with_content_type("application/json"));
        assert_eq!(
            (e.channel, e.channel_value.as_str()),
            (Channel::Messenger, "1234567890")
        );
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound expected")
        };
        assert_eq!(
            (m.from.as_str(), m.to.as_str()),
            ("1234567890", "0987654321")
        );
        assert_eq!(
            m.context.as_ref().and_then(|c| c.from.as_deref()),
            Some("0987654321")
        );
        // v0.1 names Viber `viber_service_msg`, on the address objects.
        let body = json!({"message_uuid": "v", "status": "read",
            "to": {"type": "viber_service_msg", "number": "447700900000"},
            "from": {"type": "viber_service_msg", "id": "12345"}});
        let e = one(&CallbackRequest::post(body.to_string()).with_content_type("application/json"));
        assert_eq!(
            (e.channel, e.channel_value.as_str()),
            (Channel::Viber, "+447700900000")
        );
    }

    #[test]
    fn messages_inbound_content_types() {
        let base = json!({"message_uuid": "u-1", "from": "447700900001", "to": "447700900000",
                          "channel": "whatsapp", "timestamp": "2020-01-01T14:00:00Z"});
        let mk = |extra: Value| {
            let mut b = base.clone();
            for (k, v) in extra.as_object().expect("object") {
                b[k] = v.clone();
            }
            let e =
                one(&CallbackRequest::post(b.to_string()).with_content_type("application/json"));
            match e.kind {
                EventKind::Inbound(m) => m,
                EventKind::Status(_) => panic!("inbound expected"),
            }
        };
        let m =
            mk(json!({"message_type": "file", "file": {"url": "https://x/f.pdf", "caption": "c"}}));
        assert_eq!(
            (
                m.message_type.as_str(),
                m.media[0].url.as_str(),
                m.text.as_deref()
            ),
            ("document", "https://x/f.pdf", Some("c"))
        );
        let m = mk(
            json!({"message_type": "location", "location": {"lat": 51.5, "long": "-0.12", "name": "N"}}),
        );
        let l = m.location.expect("location");
        assert_eq!(
            (l.latitude, l.longitude, l.name.as_deref()),
            (51.5, -0.12, Some("N"))
        );
        let m = mk(json!({"message_type": "location", "location": {"lat": "x"}}));
        assert!(m.location.is_none());
        let m = mk(json!({"message_type": "reply", "reply": {"id": "r1", "title": "Yes"}}));
        assert_eq!(
            (m.message_type.as_str(), m.text.as_deref()),
            ("interactive", Some("Yes"))
        );
        let m = mk(json!({"message_type": "button", "button": {"text": "Stop", "payload": {}}}));
        assert_eq!(
            (m.message_type.as_str(), m.text.as_deref()),
            ("button", Some("Stop"))
        );
        let m = mk(json!({"message_type": "audio", "audio": {"url": "https://x/a.ogg"}}));
        assert_eq!(m.media.len(), 1);
        let m = mk(json!({"message_type": "text", "text": "hi",
                          "context": {"message_uuid": "prev", "message_from": "447700900000"}}));
        let c = m.context.expect("context");
        assert_eq!(
            (c.id.as_str(), c.from.as_deref()),
            ("prev", Some("+447700900000"))
        );
        assert_eq!(
            (m.from.as_str(), m.to.as_str()),
            ("+447700900001", "+447700900000")
        );
        // v0.1 content.
        let m = mk(json!({"message": {"content": {"type": "text", "text": "old"}}}));
        assert_eq!(m.text.as_deref(), Some("old"));
        let m = mk(json!({"message_type": "unsupported"}));
        assert_eq!(m.message_type, "unsupported");
    }

    #[test]
    fn inbound_sms_doc_example_and_binary() {
        let e = one(&CallbackRequest::post(DOC_EXAMPLE).with_content_type("application/json"));
        assert_eq!(e.channel_value, "+447700900001");
        assert_eq!(e.correlation["concat_part"], "2");
        assert_eq!(e.correlation["concat_total"], "3");
        assert_eq!(e.timestamp_ms(), 1_577_880_000_000);
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound")
        };
        assert_eq!(
            (m.message_type.as_str(), m.text.as_deref()),
            ("text", Some("Hello world"))
        );
        assert_eq!(m.to, "+447700900000");
        let p = pairs(&[
            ("msisdn", "447700900001"),
            ("to", "12345"),
            ("messageId", "m"),
            ("type", "binary"),
            ("data", "00ff"),
            ("udh", "050003"),
        ]);
        let EventKind::Inbound(m) = one(&get(&p)).kind else {
            panic!("inbound")
        };
        assert_eq!(
            (m.message_type.as_str(), m.text, m.to.as_str()),
            ("binary", None, "12345")
        );
        // Non-ASCII survives from a percent-encoded query.
        let p = pairs(&[
            ("msisdn", "447700900001"),
            ("to", "447700900000"),
            ("messageId", "m"),
            ("type", "unicode"),
            ("text", "Grüße 👋 ✓"),
        ]);
        let EventKind::Inbound(m) = one(&get(&p)).kind else {
            panic!("inbound")
        };
        assert_eq!(
            (m.message_type.as_str(), m.text.as_deref()),
            ("text", Some("Grüße 👋 ✓"))
        );
    }

    #[test]
    fn malformed_inputs_are_errors_not_panics() {
        let cases: Vec<CallbackRequest> = vec![
            CallbackRequest::post("{\"msisdn\": \"1").with_content_type("application/json"),
            CallbackRequest::post(""),
            CallbackRequest::post("   ").with_content_type("application/json"),
            CallbackRequest::post("<xml/>").with_content_type("text/xml"),
            CallbackRequest::post("[{\"msisdn\":\"1\"}]").with_content_type("application/json"),
            CallbackRequest::post("[{\"msisdn\":\"1\"}]"),
            CallbackRequest::post("\"str\"").with_content_type("application/json"),
            CallbackRequest::post("garbage&&=="),
            CallbackRequest::post(vec![0xff, 0xfe, b'=', 0x80])
                .with_content_type("application/x-www-form-urlencoded"),
            CallbackRequest::post(
                "{\"message_uuid\":\"u\",\"status\":\"read\",\"channel\":\"whatsapp\"}",
            )
            .with_content_type("application/json"),
            CallbackRequest::post(
                "{\"message_uuid\":\"u\",\"from\":\"1\",\"to\":\"2\",\"channel\":\"sms\"}",
            )
            .with_content_type("application/json"),
            CallbackRequest::post("{\"msisdn\":\"1\",\"status\":\"delivered\"}")
                .with_content_type("application/json"),
            CallbackRequest::post("{\"msisdn\":\"1\"}").with_content_type("application/json"),
            CallbackRequest::post("{\"msisdn\":[],\"status\":\"delivered\",\"messageId\":\"x\"}")
                .with_content_type("application/json"),
            get(&[]),
        ];
        for (i, req) in cases.iter().enumerate() {
            assert!(normalize(req, &CTX).is_err(), "case {i} should fail");
        }
        let mut put = CallbackRequest::post("msisdn=1");
        put.method = Method::PUT;
        assert!(matches!(
            normalize(&put, &CTX),
            Err(NormalizeError::UnsupportedMethod { .. })
        ));
        let arr = CallbackRequest::post("[]").with_content_type("application/json");
        assert!(matches!(
            normalize(&arr, &CTX),
            Err(NormalizeError::Shape { .. })
        ));
        let xml = CallbackRequest::post("<a/>").with_content_type("text/xml");
        assert!(matches!(
            normalize(&xml, &CTX),
            Err(NormalizeError::UnsupportedContentType { .. })
        ));

        let start = std::time::Instant::now();
        let garbage: Vec<u8> = (0..10_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        assert!(normalize(&CallbackRequest::post(garbage.clone()), &CTX).is_err());
        assert!(
            normalize(
                &CallbackRequest::post(garbage.clone()).with_content_type("application/json"),
                &CTX
            )
            .is_err()
        );
        assert!(
            verifier("s", None)
                .verify(&CallbackRequest::post(garbage), &NO_CLOCK)
                .is_err()
        );
        assert!(
            start.elapsed().as_secs() < 10,
            "garbage took {:?}",
            start.elapsed()
        );
    }
}
