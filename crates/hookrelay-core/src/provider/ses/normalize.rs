//! SES documents into events, and SNS confirmations into control messages (see the `ses`
//! module docs).

use serde_json::{Map, Value};

use super::{PROVIDER, env_str, is_raw_delivery, mime};
use crate::event::{
    ChannelUser, ErrorInfo, Event, EventKind, InboundMessage, ReplyContext, StatusUpdate,
    idempotency_key,
};
use crate::limits::{JsonLimits, TopLevel};
use crate::provider::mail::{first_address, strip_angle};
use crate::provider::{Context, Control, Normalized, Unparsed};
use crate::timestamp::value_to_ms;
use crate::{CallbackRequest, Channel, NormalizeError, Status};

static NO_RECIPIENTS: Vec<Value> = Vec::new();

fn required_env_str(
    m: &Map<String, Value>,
    keys: &[&'static str],
) -> Result<String, NormalizeError> {
    env_str(m, keys)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned)
        .ok_or_else(|| NormalizeError::MissingField(keys.first().copied().unwrap_or("").into()))
}

/// Normalizes one SNS delivery: a control message for confirmations, one event per
/// recipient for SES notifications.
pub fn normalize(req: &CallbackRequest, ctx: &Context) -> Result<Normalized, NormalizeError> {
    req.expect_content_type(
        PROVIDER,
        &["text/plain", "application/json"],
        "text/plain or application/json",
    )?;
    let body = match req.json()? {
        Value::Object(m) => m,
        _ => return Err(NormalizeError::shape("/", "an SNS envelope object")),
    };
    let header_id = req
        .header("x-amz-sns-message-id")
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let looks_raw = !body.contains_key("Type")
        && (body.contains_key("eventType") || body.contains_key("notificationType"));
    if is_raw_delivery(req) || looks_raw {
        let doc = Value::Object(body);
        return ses_events(&doc, header_id, ctx).map(Normalized::events);
    }
    let ty = required_env_str(&body, &["Type"])?;
    match ty.as_str() {
        "SubscriptionConfirmation" => {
            Ok(Normalized::control(Control::SnsSubscriptionConfirmation {
                topic_arn: required_env_str(&body, &["TopicArn"])?,
                subscribe_url: required_env_str(&body, &["SubscribeURL", "SubscribeUrl"])?,
                token: required_env_str(&body, &["Token"])?,
            }))
        }
        "UnsubscribeConfirmation" => Ok(Normalized::control(Control::SnsUnsubscribeConfirmation {
            topic_arn: required_env_str(&body, &["TopicArn"])?,
            subscribe_url: required_env_str(&body, &["SubscribeURL", "SubscribeUrl"])?,
        })),
        "Notification" => {
            let message_id = required_env_str(&body, &["MessageId"])?;
            let message = match body.get("Message") {
                Some(Value::String(s)) => s,
                Some(_) => return Err(NormalizeError::shape("/Message", "a string")),
                None => return Err(NormalizeError::MissingField("Message".into())),
            };
            // The SES event is the Message: one beyond the limits cannot be normalized, and
            // is kept with the whole body (which the signature covers it in).
            if let Some(e) = JsonLimits::default().exceeded_by_json(message, TopLevel::Object) {
                let body = String::from_utf8_lossy(&req.body).into_owned();
                return Ok(Normalized::one_unparsed(Unparsed::new(
                    format!("Message: {e}"),
                    body,
                )));
            }
            // A topic can carry other publishers' messages too: a well-formed SNS
            // notification whose Message is not JSON holds no SES event. It is reported,
            // not rejected, so SNS does not retry it for nothing.
            let Ok(doc) = serde_json::from_str::<Value>(message) else {
                return Ok(Normalized::control(Control::Ignored {
                    reason: format!(
                        "SNS notification {message_id} carries no SES event (Message is not JSON)"
                    ),
                }));
            };
            if !doc.is_object() {
                return Err(NormalizeError::shape("/Message", "an SES JSON object"));
            }
            ses_events(&doc, Some(&message_id), ctx).map(Normalized::events)
        }
        other => Err(NormalizeError::invalid(
            "Type",
            format!("unknown SNS message type {other:?}"),
        )),
    }
}

/// Where the recipients of an event are listed.
enum Recipients {
    /// An array of objects with `emailAddress` under the event object.
    Objects(&'static str),
    /// An array of strings under the event object.
    Strings(&'static str),
    /// `mail.destination`.
    Destination,
}

/// The events of one SES document.
fn ses_events(
    doc: &Value,
    sns_message_id: Option<&str>,
    ctx: &Context,
) -> Result<Vec<Event>, NormalizeError> {
    let kind = match (doc.get("eventType"), doc.get("notificationType")) {
        (Some(Value::String(s)), _) | (None, Some(Value::String(s))) => s.as_str(),
        (Some(_), _) => return Err(NormalizeError::shape("/eventType", "a string")),
        (None, Some(_)) => return Err(NormalizeError::shape("/notificationType", "a string")),
        (None, None) => {
            return Err(NormalizeError::MissingField(
                "eventType or notificationType".into(),
            ));
        }
    };
    let mail = match doc.get("mail") {
        None | Some(Value::Null) => None,
        Some(m @ Value::Object(_)) => Some(m),
        Some(_) => return Err(NormalizeError::shape("/mail", "an object")),
    };
    if kind == "Received" {
        return received(doc, mail, sns_message_id, ctx).map(|e| vec![e]);
    }
    let (object_key, recipients, known) = match kind {
        "Bounce" => ("bounce", Recipients::Objects("bouncedRecipients"), true),
        "Complaint" => (
            "complaint",
            Recipients::Objects("complainedRecipients"),
            true,
        ),
        "Delivery" => ("delivery", Recipients::Strings("recipients"), true),
        "DeliveryDelay" => (
            "deliveryDelay",
            Recipients::Objects("delayedRecipients"),
            true,
        ),
        "Send" => ("send", Recipients::Destination, true),
        "Reject" => ("reject", Recipients::Destination, true),
        "Open" => ("open", Recipients::Destination, true),
        "Click" => ("click", Recipients::Destination, true),
        "Rendering Failure" => ("failure", Recipients::Destination, true),
        "Subscription" => ("subscription", Recipients::Destination, true),
        _ => ("", Recipients::Destination, false),
    };
    let detail = match doc.get(object_key) {
        Some(v @ Value::Object(_)) => Some(v),
        None | Some(Value::Null) => None,
        Some(_) => return Err(NormalizeError::shape(format!("/{object_key}"), "an object")),
    };
    let list = |key: &str| detail.and_then(|d| d.get(key));
    let destination = mail.and_then(|m| m.get("destination"));
    // (recipient address, the recipient's own object, if any)
    let mut targets: Vec<(String, Option<&Value>)> = Vec::new();
    match recipients {
        Recipients::Objects(key) => {
            let arr = match (list(key), kind) {
                (Some(Value::Array(a)), _) => a,
                // A delay without its list applies to every destination.
                (None, "DeliveryDelay") => {
                    collect_destination(destination, true, &mut targets)?;
                    &NO_RECIPIENTS
                }
                (None, _) => {
                    return Err(NormalizeError::MissingField(format!("{object_key}.{key}")));
                }
                (Some(_), _) => {
                    return Err(NormalizeError::shape(
                        format!("/{object_key}/{key}"),
                        "an array",
                    ));
                }
            };
            for (i, r) in arr.iter().enumerate() {
                let addr = r
                    .get("emailAddress")
                    .and_then(Value::as_str)
                    .filter(|s| !s.trim().is_empty())
                    .ok_or_else(|| {
                        NormalizeError::MissingField(format!(
                            "{object_key}.{key}[{i}].emailAddress"
                        ))
                    })?;
                targets.push((addr.trim().to_owned(), Some(r)));
            }
        }
        Recipients::Strings(key) => match list(key) {
            Some(Value::Array(a)) => {
                for (i, r) in a.iter().enumerate() {
                    let addr = r.as_str().filter(|s| !s.trim().is_empty()).ok_or_else(|| {
                        NormalizeError::shape(format!("/{object_key}/{key}/{i}"), "an address")
                    })?;
                    targets.push((addr.trim().to_owned(), None));
                }
            }
            None => return Err(NormalizeError::MissingField(format!("{object_key}.{key}"))),
            Some(_) => {
                return Err(NormalizeError::shape(
                    format!("/{object_key}/{key}"),
                    "an array",
                ));
            }
        },
        Recipients::Destination => collect_destination(destination, known, &mut targets)?,
    }

    let mail_ts = mail.and_then(|m| m.get("timestamp")).and_then(value_to_ms);
    let timestamp_ms = detail
        .and_then(|d| d.get("timestamp"))
        .and_then(value_to_ms)
        .or(mail_ts)
        .unwrap_or(ctx.received_at_ms);
    let vendor_ack_id = mail
        .and_then(|m| m.get("messageId"))
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned);
    let correlation = mail
        .and_then(|m| m.get("tags"))
        .map(tags_to_correlation)
        .unwrap_or_default();

    let mut events = Vec::with_capacity(targets.len());
    for (recipient, own) in targets {
        let (status, informational, error) = map_status(kind, detail, own);
        let idempotency = match sns_message_id {
            Some(id) => idempotency_key(PROVIDER, &[id, &recipient]),
            None => idempotency_key(
                PROVIDER,
                &[
                    vendor_ack_id.as_deref().unwrap_or(""),
                    kind,
                    &timestamp_ms.to_string(),
                    &recipient,
                ],
            ),
        };
        events.push(Event {
            channel: Channel::Email,
            channel_value: recipient,
            channel_user: ChannelUser::default(),
            vendor_name: PROVIDER.to_owned(),
            vendor_ack_id: vendor_ack_id.clone(),
            idempotency_key: idempotency,
            correlation: correlation.clone(),
            kind: EventKind::Status(StatusUpdate {
                status,
                timestamp_ms,
                error,
                informational,
            }),
            raw: doc.clone().into(),
        });
    }
    Ok(events)
}

/// An email SES received (`notificationType: Received`): one inbound message from its
/// sender (see the module docs).
fn received(
    doc: &Value,
    mail: Option<&Value>,
    sns_message_id: Option<&str>,
    ctx: &Context,
) -> Result<Event, NormalizeError> {
    let mail = mail.ok_or_else(|| NormalizeError::MissingField("mail".into()))?;
    let common = mail.get("commonHeaders");
    let receipt = doc.get("receipt");
    let message_id = text(Some(mail), "messageId")
        .ok_or_else(|| NormalizeError::MissingField("mail.messageId".into()))?;
    let from = strings(common, "from")
        .iter()
        .find_map(|f| first_address(f))
        .or_else(|| text(Some(mail), "source"))
        .ok_or_else(|| NormalizeError::MissingField("mail.source".into()))?;
    // The envelope recipients the receipt rule matched: the application's own mailboxes.
    let mut to = strings(receipt, "recipients");
    if to.is_empty() {
        to = strings(common, "to")
            .iter()
            .filter_map(|t| first_address(t))
            .collect();
    }
    if to.is_empty() {
        to = strings(Some(mail), "destination");
    }
    let subject = text(common, "subject");
    let body = content_text(doc);
    let text = match (subject, body) {
        (Some(s), Some(b)) => Some(format!("{s}\n\n{b}")),
        (s, b) => s.or(b),
    };
    let context = header(mail, "in-reply-to")
        .map(|id| strip_angle(&id))
        .filter(|id| !id.is_empty())
        .map(|id| ReplyContext { id, from: None });
    let timestamp_ms = mail
        .get("timestamp")
        .and_then(value_to_ms)
        .or_else(|| {
            receipt
                .and_then(|r| r.get("timestamp"))
                .and_then(value_to_ms)
        })
        .unwrap_or(ctx.received_at_ms);
    let idempotency = match sns_message_id {
        Some(id) => idempotency_key(PROVIDER, &[id, "Received"]),
        None => idempotency_key(PROVIDER, &[&message_id, "Received"]),
    };
    Ok(Event {
        channel: Channel::Email,
        channel_value: from.clone(),
        channel_user: ChannelUser::default(),
        vendor_name: PROVIDER.to_owned(),
        vendor_ack_id: Some(message_id.clone()),
        idempotency_key: idempotency,
        correlation: mail
            .get("tags")
            .map(tags_to_correlation)
            .unwrap_or_default(),
        kind: EventKind::Inbound(InboundMessage {
            from,
            to: to.join(", "),
            message_type: "email".into(),
            text,
            context,
            timestamp_ms,
            source_message_id: message_id,
            ..InboundMessage::default()
        }),
        raw: doc.clone().into(),
    })
}

/// The text of a Received notification's `content` (the raw email, present only when an
/// SNS action published it): raw MIME text, or base64 when the action's `encoding` says
/// so. A `content` whose first line is no header field (MIME text always starts with one;
/// base64 has no `:`) is read as base64 too.
fn content_text(doc: &Value) -> Option<String> {
    let content = doc.get("content")?.as_str()?;
    let declared = doc
        .pointer("/receipt/action/encoding")
        .and_then(Value::as_str)
        .is_some_and(|e| e.trim().eq_ignore_ascii_case("base64"));
    let headless = !content
        .trim_start()
        .lines()
        .next()
        .is_some_and(|line| line.contains(':'));
    if declared || headless {
        mime::plain_text(&mime::decode_base64(content.as_bytes())?)
    } else {
        mime::plain_text(content.as_bytes())
    }
}

/// The non-empty strings of the array `key` of `v`, trimmed.
fn strings(v: Option<&Value>, key: &str) -> Vec<String> {
    v.and_then(|v| v.get(key))
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The first `mail.headers[]` field of this name (case-insensitive).
fn header(mail: &Value, name: &str) -> Option<String> {
    mail.get("headers")?
        .as_array()?
        .iter()
        .find(|h| {
            h.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.trim().eq_ignore_ascii_case(name))
        })
        .and_then(|h| h.get("value"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Adds `mail.destination[]` to `targets`. A missing list is an error for known event
/// types and means "no events" for unknown ones (e.g. `AmazonSnsSubscriptionSucceeded`).
fn collect_destination(
    destination: Option<&Value>,
    required: bool,
    targets: &mut Vec<(String, Option<&Value>)>,
) -> Result<(), NormalizeError> {
    match destination {
        Some(Value::Array(a)) => {
            for (i, r) in a.iter().enumerate() {
                let addr = r.as_str().filter(|s| !s.trim().is_empty()).ok_or_else(|| {
                    NormalizeError::shape(format!("/mail/destination/{i}"), "an address")
                })?;
                targets.push((addr.trim().to_owned(), None));
            }
            Ok(())
        }
        None | Some(Value::Null) if !required => Ok(()),
        None | Some(Value::Null) => Err(NormalizeError::MissingField("mail.destination".into())),
        Some(_) => Err(NormalizeError::shape("/mail/destination", "an array")),
    }
}

/// `mail.tags`: each tag name to its single value, or to the array when it has zero or
/// several values (non-array values are kept as they are).
fn tags_to_correlation(tags: &Value) -> Map<String, Value> {
    let Some(obj) = tags.as_object() else {
        return Map::new();
    };
    obj.iter()
        .map(|(k, v)| {
            let v = match v {
                Value::Array(a) if a.len() == 1 => a.first().cloned().unwrap_or(Value::Null),
                other => other.clone(),
            };
            (k.clone(), v)
        })
        .collect()
}

fn text(v: Option<&Value>, key: &str) -> Option<String> {
    v.and_then(|v| v.get(key))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Status, informational flag and error of one recipient's event.
fn map_status(
    kind: &str,
    detail: Option<&Value>,
    recipient: Option<&Value>,
) -> (Status, bool, Option<ErrorInfo>) {
    match kind {
        "Send" => (Status::Queued, false, None),
        "Delivery" => (Status::Delivered, false, None),
        "Open" => (Status::Seen, false, None),
        "Click" => (Status::Clicked, false, None),
        "Bounce" => {
            let bounce_type = text(detail, "bounceType");
            let status = if bounce_type.as_deref() == Some("Permanent") {
                Status::Bounced
            } else {
                Status::Failed
            };
            let types = match (bounce_type, text(detail, "bounceSubType")) {
                (Some(t), Some(s)) => Some(format!("{t}/{s}")),
                (t, s) => t.or(s),
            };
            let smtp_status = text(recipient, "status");
            let diagnostic = text(recipient, "diagnosticCode");
            let error = if smtp_status.is_some() {
                ErrorInfo::from_parts(smtp_status, diagnostic.or(types))
            } else {
                ErrorInfo::from_parts(diagnostic, types)
            };
            (status, false, error)
        }
        "Complaint" => {
            if text(detail, "complaintFeedbackType").as_deref() == Some("not-spam") {
                (Status::Queued, true, None)
            } else {
                (Status::Complained, false, None)
            }
        }
        "Reject" => (
            Status::Failed,
            false,
            ErrorInfo::from_parts(None, text(detail, "reason")),
        ),
        "Rendering Failure" => (
            Status::Failed,
            false,
            ErrorInfo::from_parts(None, text(detail, "errorMessage")),
        ),
        "Subscription" => {
            if unsubscribed(detail) {
                (Status::Unsubscribed, false, None)
            } else {
                (Status::Queued, true, None)
            }
        }
        // DeliveryDelay and every unknown value: changes no status.
        _ => (Status::Queued, true, None),
    }
}

/// `newTopicPreferences.unsubscribeAll` is true, or any new topic status is an opt-out
/// (`OPT_OUT` in the API, `OptOut` in the published example).
fn unsubscribed(detail: Option<&Value>) -> bool {
    let Some(prefs) = detail.and_then(|d| d.get("newTopicPreferences")) else {
        return false;
    };
    if prefs.get("unsubscribeAll").and_then(Value::as_bool) == Some(true) {
        return true;
    }
    prefs
        .get("topicSubscriptionStatus")
        .and_then(Value::as_array)
        .is_some_and(|topics| {
            topics.iter().any(|t| {
                t.get("subscriptionStatus")
                    .and_then(Value::as_str)
                    .is_some_and(|s| {
                        let norm: String = s
                            .chars()
                            .filter(char::is_ascii_alphanumeric)
                            .collect::<String>()
                            .to_ascii_uppercase();
                        norm == "OPTOUT"
                    })
            })
        })
}

#[cfg(test)]
mod tests {
    use super::super::RAW_DELIVERY_HEADER;
    use super::super::test_support::*;
    use super::*;
    use serde_json::json;

    const DOC_NOTIFICATION: &str =
        include_str!("../../../tests/fixtures/ses/doc_notification.json");
    const DOC_SUBSCRIPTION: &str =
        include_str!("../../../tests/fixtures/ses/doc_subscription_confirmation.json");
    const DOC_UNSUBSCRIBE: &str =
        include_str!("../../../tests/fixtures/ses/doc_unsubscribe_confirmation.json");
    const RECEIVED_SNS: &str =
        include_str!("../../../tests/fixtures/ses/receiving_sns_action.json");
    const RECEIVED_SNS_BASE64: &str =
        include_str!("../../../tests/fixtures/ses/receiving_sns_action_base64.json");
    const RECEIVED_S3: &str = include_str!("../../../tests/fixtures/ses/receiving_s3_action.json");
    const RECEIVED_LAMBDA_RECORD: &str =
        include_str!("../../../tests/fixtures/ses/receiving_lambda_action_record.json");

    const CTX: Context = Context {
        received_at_ms: 1_700_000_000_000,
    };

    /// An SNS Notification envelope around an SES document.
    fn envelope(doc: &Value, message_id: &str) -> CallbackRequest {
        sns(&json!({
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-events",
            "Message": doc.to_string(),
            "Timestamp": "2024-01-01T00:00:00.000Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLE",
            "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem",
        })
        .to_string())
    }

    fn events(doc: &Value) -> Vec<Event> {
        normalize(&envelope(doc, "sns-1"), &CTX)
            .expect("normalize")
            .events
    }

    fn status_of(e: &Event) -> &StatusUpdate {
        e.status().expect("status event")
    }

    #[test]
    fn confirmations_are_control_messages() {
        let out = normalize(&sns(DOC_SUBSCRIPTION), &CTX).expect("ok");
        assert!(out.events.is_empty());
        assert_eq!(
            out.control,
            Some(Control::SnsSubscriptionConfirmation {
                topic_arn: "arn:aws:sns:us-west-2:123456789012:MyTopic".into(),
                subscribe_url: "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-west-2:123456789012:MyTopic&Token=2336412f37...".into(),
                token: "2336412f37...".into(),
            })
        );
        let out = normalize(&sns(DOC_UNSUBSCRIBE), &CTX).expect("ok");
        assert!(out.events.is_empty());
        assert!(matches!(
            out.control,
            Some(Control::SnsUnsubscribeConfirmation { .. })
        ));
        let lambda = edit(SELF_CONFIRMATION, |m| {
            let url = m.remove("SubscribeURL").expect("url");
            m.insert("SubscribeUrl".into(), url);
        });
        let out = normalize(&sns(&lambda), &CTX).expect("ok");
        assert!(matches!(
            out.control,
            Some(Control::SnsSubscriptionConfirmation { ref subscribe_url, .. })
                if subscribe_url.starts_with("https://sns.eu-west-1.amazonaws.com/")
        ));
        let no_token = edit(DOC_SUBSCRIPTION, |m| {
            m.remove("Token");
        });
        assert!(matches!(
            normalize(&sns(&no_token), &CTX),
            Err(NormalizeError::MissingField(_))
        ));
    }

    #[test]
    fn notification_whose_message_is_not_ses_json_is_ignored_or_an_error() {
        // The SNS guide's example: Message "Hello world!" is no SES event.
        let out = normalize(&sns(DOC_NOTIFICATION), &CTX).expect("well-formed SNS");
        assert!(out.events.is_empty());
        assert!(matches!(out.control, Some(Control::Ignored { .. })));
        // The signature vectors carry "Hello world" too.
        for (body, _) in VECTORS {
            let out = normalize(&sns(body), &CTX).expect("well-formed SNS");
            assert!(out.events.is_empty() && out.control.is_some());
        }
        // JSON that is not an SES document is malformed.
        for message in [json!("[1,2]"), json!("42"), json!(7), json!({"a": 1})] {
            let body = edit(DOC_NOTIFICATION, |m| {
                m.insert("Message".into(), message.clone());
            });
            assert!(normalize(&sns(&body), &CTX).is_err(), "{message}");
        }
        let body = edit(DOC_NOTIFICATION, |m| {
            m.insert("Message".into(), json!("{\"mail\":{}}"));
        });
        assert!(matches!(
            normalize(&sns(&body), &CTX),
            Err(NormalizeError::MissingField(_))
        ));
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        let bad: Vec<CallbackRequest> = vec![
            sns(""),
            sns("   "),
            sns("{\"Type\": \"Notif"),
            sns("[]"),
            sns("[{\"Type\":\"Notification\"}]"),
            sns("\"text\""),
            sns("{}"),
            sns("{\"Type\": 5}"),
            sns("{\"Type\": \"Notification\"}"),
            sns("{\"Type\": \"Notification\", \"MessageId\": \"m\"}"),
            sns("{\"Type\": \"Bogus\", \"MessageId\": \"m\", \"Message\": \"{}\"}"),
            sns("\u{feff}{}"),
            CallbackRequest::post(vec![0xff, 0xfe, 0x00]),
            CallbackRequest::post(DOC_SUBSCRIPTION)
                .with_content_type("application/x-www-form-urlencoded"),
            CallbackRequest::post(DOC_SUBSCRIPTION)
                .with_content_type("multipart/form-data; boundary=x"),
        ];
        for req in &bad {
            assert!(normalize(req, &CTX).is_err(), "{:?}", req.body);
        }
        let garbage = vec![b'\x07'; 10 * 1024 * 1024];
        let start = std::time::Instant::now();
        assert!(normalize(&CallbackRequest::post(garbage.clone()), &CTX).is_err());
        assert!(
            verifier(SNS_CERT)
                .verify(&CallbackRequest::post(garbage), &recorded())
                .is_err()
        );
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        // Accepted content types.
        for ct in [
            "application/json",
            "text/plain",
            "Text/Plain; charset=UTF-8",
        ] {
            let req = CallbackRequest::post(DOC_SUBSCRIPTION).with_content_type(ct);
            assert!(normalize(&req, &CTX).is_ok(), "{ct}");
        }
        assert!(normalize(&CallbackRequest::post(DOC_SUBSCRIPTION), &CTX).is_ok());
    }

    #[test]
    fn malformed_ses_documents_are_errors() {
        for doc in [
            json!({"eventType": "Bounce", "mail": mail()}),
            json!({"eventType": "Bounce", "mail": mail(), "bounce": {"bounceType": "Permanent"}}),
            json!({"eventType": "Bounce", "mail": mail(), "bounce": {"bouncedRecipients": {}}}),
            json!({"eventType": "Bounce", "mail": mail(), "bounce": {"bouncedRecipients": [{}]}}),
            json!({"eventType": "Bounce", "mail": mail(), "bounce": []}),
            json!({"eventType": "Delivery", "mail": mail(), "delivery": {"recipients": [5]}}),
            json!({"eventType": "Delivery", "mail": mail(), "delivery": {}}),
            json!({"eventType": "Send", "mail": {"messageId": "m"}}),
            json!({"eventType": "Send", "mail": {"destination": "a@example.com"}}),
            json!({"eventType": "Send", "mail": []}),
            json!({"eventType": 3, "mail": mail()}),
            json!({"mail": mail()}),
        ] {
            assert!(normalize(&envelope(&doc, "m"), &CTX).is_err(), "{doc}");
        }
    }

    // ---- normalize: SES documents ----

    #[test]
    fn status_mapping() {
        let cases: Vec<(Value, Status, bool)> = vec![
            (
                json!({"eventType": "Send", "send": {}}),
                Status::Queued,
                false,
            ),
            (
                json!({"eventType": "Delivery", "delivery": {"recipients": ["a@example.com"]}}),
                Status::Delivered,
                false,
            ),
            (
                json!({"notificationType": "Delivery", "delivery": {"recipients": ["a@example.com"]}}),
                Status::Delivered,
                false,
            ),
            (
                json!({"eventType": "Open", "open": {}}),
                Status::Seen,
                false,
            ),
            (
                json!({"eventType": "Click", "click": {}}),
                Status::Clicked,
                false,
            ),
            (
                json!({"eventType": "Bounce", "bounce": {"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": "a@example.com"}]}}),
                Status::Bounced,
                false,
            ),
            (
                json!({"eventType": "Bounce", "bounce": {"bounceType": "Transient", "bouncedRecipients": [{"emailAddress": "a@example.com"}]}}),
                Status::Failed,
                false,
            ),
            (
                json!({"notificationType": "Bounce", "bounce": {"bounceType": "Undetermined", "bouncedRecipients": [{"emailAddress": "a@example.com"}]}}),
                Status::Failed,
                false,
            ),
            (
                json!({"eventType": "Complaint", "complaint": {"complaintFeedbackType": "abuse", "complainedRecipients": [{"emailAddress": "a@example.com"}]}}),
                Status::Complained,
                false,
            ),
            (
                json!({"notificationType": "Complaint", "complaint": {"complainedRecipients": [{"emailAddress": "a@example.com"}]}}),
                Status::Complained,
                false,
            ),
            (
                json!({"eventType": "Complaint", "complaint": {"complaintFeedbackType": "not-spam", "complainedRecipients": [{"emailAddress": "a@example.com"}]}}),
                Status::Queued,
                true,
            ),
            (
                json!({"eventType": "Reject", "reject": {"reason": "Bad content"}}),
                Status::Failed,
                false,
            ),
            (
                json!({"eventType": "Rendering Failure", "failure": {"errorMessage": "Attribute 'x' is not present", "templateName": "t"}}),
                Status::Failed,
                false,
            ),
            (
                json!({"eventType": "DeliveryDelay", "deliveryDelay": {"delayedRecipients": [{"emailAddress": "a@example.com"}]}}),
                Status::Queued,
                true,
            ),
            (
                json!({"eventType": "DeliveryDelay", "deliveryDelay": {}}),
                Status::Queued,
                true,
            ),
            (
                json!({"eventType": "Subscription", "subscription": {"newTopicPreferences": {"unsubscribeAll": true}}}),
                Status::Unsubscribed,
                false,
            ),
            (
                json!({"eventType": "Subscription", "subscription": {"newTopicPreferences": {"unsubscribeAll": false, "topicSubscriptionStatus": [{"topicName": "a", "subscriptionStatus": "OPT_IN"}, {"topicName": "b", "subscriptionStatus": "OPT_OUT"}]}}}),
                Status::Unsubscribed,
                false,
            ),
            (
                json!({"eventType": "Subscription", "subscription": {"newTopicPreferences": {"unsubscribeAll": false, "topicSubscriptionStatus": [{"topicName": "a", "subscriptionStatus": "OptIn"}]}}}),
                Status::Queued,
                true,
            ),
            (
                json!({"eventType": "Subscription", "subscription": {}}),
                Status::Queued,
                true,
            ),
            (
                json!({"eventType": "SomethingNew", "somethingNew": {}}),
                Status::Queued,
                true,
            ),
        ];
        for (mut doc, status, informational) in cases {
            doc["mail"] = mail();
            let evs = events(&doc);
            assert!(!evs.is_empty(), "{doc}");
            for e in &evs {
                let s = status_of(e);
                assert_eq!(
                    (s.status, s.informational),
                    (status, informational),
                    "{doc}"
                );
                assert_eq!(e.raw, doc);
                assert_eq!(e.vendor_ack_id.as_deref(), Some("ses-msg-1"));
                assert_eq!(e.vendor_name, "ses");
                assert_eq!(e.channel, Channel::Email);
            }
        }
    }

    fn inbound_of(doc: &Value) -> (Event, InboundMessage) {
        let mut evs = events(doc);
        assert_eq!(evs.len(), 1, "one inbound message per received email");
        let e = evs.remove(0);
        let EventKind::Inbound(m) = e.kind.clone() else {
            panic!("inbound expected: {e:?}")
        };
        (e, m)
    }

    fn doc_of(text: &str) -> Value {
        serde_json::from_str(text).expect("fixture")
    }

    #[test]
    fn received_email_with_its_content_is_an_inbound_message() {
        let doc = doc_of(RECEIVED_SNS);
        let (e, m) = inbound_of(&doc);
        assert_eq!(e.channel, Channel::Email);
        assert_eq!(e.channel_value, "sender@example.com");
        assert_eq!(
            e.vendor_ack_id.as_deref(),
            Some("d6iitobk75ur44p8kdnnp7g2n800")
        );
        assert_eq!(
            e.idempotency_key,
            idempotency_key("ses", &["sns-1", "Received"])
        );
        assert_eq!(e.raw, doc);
        assert_eq!(m.from, "sender@example.com");
        assert_eq!(m.to, "recipient@example.com");
        assert_eq!(m.message_type, "email");
        assert_eq!(
            m.text.as_deref(),
            Some("Example subject\n\nExample content")
        );
        assert_eq!(m.source_message_id, "d6iitobk75ur44p8kdnnp7g2n800");
        // mail.timestamp, 2015-09-11T20:32:33.936Z.
        assert_eq!(m.timestamp_ms, 1_442_003_553_936);
        assert_eq!(m.context, None);
        assert!(m.media.is_empty());

        // Base64 (receipt.action.encoding BASE64), multipart/alternative: the plain part.
        let (_, m) = inbound_of(&doc_of(RECEIVED_SNS_BASE64));
        assert_eq!(
            m.text.as_deref(),
            Some("Amazon SES Test\n\nAmazon SES Test\nThis email was sent with Amazon SES.")
        );
        assert_eq!(m.from, "sender@example.com");
    }

    #[test]
    fn received_email_without_content_carries_its_subject() {
        // The S3 action's alert: the sender is the From header, not the envelope source (an
        // amazonses.com bounce address); the text is the subject alone.
        let (e, m) = inbound_of(&doc_of(RECEIVED_S3));
        assert_eq!(e.channel_value, "sender@example.com");
        assert_eq!(m.text.as_deref(), Some("Example subject"));
        // A reply from "\"Doe, John\" <sender@example.com>": the address, and In-Reply-To.
        let mut doc = doc_of(RECEIVED_LAMBDA_RECORD);
        doc["notificationType"] = json!("Received");
        let (e, m) = inbound_of(&doc);
        assert_eq!(e.channel_value, "sender@example.com");
        assert_eq!(m.to, "recipient@example.com");
        assert_eq!(m.text.as_deref(), Some("This is a test"));
        assert_eq!(
            m.context,
            Some(ReplyContext {
                id: "1FCED16B-F6B0-4506-A6F0-594DFexample@example.com".into(),
                from: None
            })
        );
    }

    #[test]
    fn received_email_fallbacks_and_errors() {
        let message = "From: a@example.com\r\nContent-Type: text/plain; charset=ISO-8859-1\r\n\r\ncaf\u{e9}\r\n";
        let latin1: Vec<u8> = message
            .chars()
            .map(|c| u8::try_from(u32::from(c)).expect("latin1"))
            .collect();
        let base = || {
            json!({
                "notificationType": "Received",
                "mail": {"timestamp": "2024-05-06T07:08:09.100Z", "messageId": "m-in",
                         "source": "bounce@relay.example.net",
                         "destination": ["x@app.example.com", "y@app.example.com"]},
                "receipt": {"timestamp": "2024-05-06T07:08:10Z",
                            "action": {"type": "SNS", "encoding": "Base64"}},
                "content": base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD, &latin1)
            })
        };
        // No From header: the envelope source; no receipt recipients nor To: the
        // destination, joined; no subject: the text alone.
        let (e, m) = inbound_of(&base());
        assert_eq!(e.channel_value, "bounce@relay.example.net");
        assert_eq!(m.to, "x@app.example.com, y@app.example.com");
        assert_eq!(m.text.as_deref(), Some("café"));
        // Base64 content without the encoding field is recognized (no header line).
        let mut doc = base();
        doc["receipt"]["action"] = json!({"type": "SNS"});
        assert_eq!(inbound_of(&doc).1.text.as_deref(), Some("café"));
        // Content that is neither MIME nor base64, and no subject: no text.
        let mut doc = base();
        doc["content"] = json!("not base64 !!!");
        assert_eq!(inbound_of(&doc).1.text, None);
        // Raw delivery without a message id header: keyed by the SES message id.
        let mut req = CallbackRequest::post(base().to_string());
        req.headers
            .insert(RAW_DELIVERY_HEADER, http::HeaderValue::from_static("true"));
        let evs = normalize(&req, &CTX).expect("ok").events;
        assert_eq!(
            evs[0].idempotency_key,
            idempotency_key("ses", &["m-in", "Received"])
        );
        // Without a message id, or without any sender: refused.
        for pointer in ["/mail/messageId", "/mail/source"] {
            let mut doc = base();
            let (parent, key) = pointer.rsplit_once('/').expect("pointer");
            doc.pointer_mut(parent)
                .and_then(Value::as_object_mut)
                .map(|o| o.remove(key));
            assert!(
                matches!(
                    normalize(&envelope(&doc, "sns-x"), &CTX),
                    Err(NormalizeError::MissingField(_))
                ),
                "{pointer}"
            );
        }
        let no_mail = json!({"notificationType": "Received", "receipt": {}});
        assert!(normalize(&envelope(&no_mail, "sns-y"), &CTX).is_err());
    }

    #[test]
    fn one_event_per_recipient_with_errors() {
        let doc = json!({
            "eventType": "Bounce",
            "mail": mail(),
            "bounce": {
                "bounceType": "Permanent", "bounceSubType": "General",
                "timestamp": "2024-05-06T07:09:00.250Z",
                "bouncedRecipients": [
                    {"emailAddress": "a@example.com", "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown"},
                    {"emailAddress": "b@example.com", "diagnosticCode": "smtp; 550 no such user"},
                    {"emailAddress": "c@example.com"}
                ]
            }
        });
        let evs = events(&doc);
        assert_eq!(evs.len(), 3);
        let errors: Vec<_> = evs.iter().map(|e| status_of(e).error.clone()).collect();
        assert_eq!(
            errors,
            vec![
                ErrorInfo::from_parts(
                    Some("5.1.1".into()),
                    Some("smtp; 550 5.1.1 user unknown".into())
                ),
                ErrorInfo::from_parts(
                    Some("smtp; 550 no such user".into()),
                    Some("Permanent/General".into())
                ),
                ErrorInfo::from_parts(None, Some("Permanent/General".into())),
            ]
        );
        assert!(
            evs.iter()
                .all(|e| status_of(e).timestamp_ms == 1_714_979_340_250)
        );
        assert_eq!(status_of(&evs[0]).timestamp_ms, 1_714_979_340_250);
        let keys: std::collections::BTreeSet<_> =
            evs.iter().map(|e| e.idempotency_key.clone()).collect();
        assert_eq!(keys.len(), 3);
        assert_eq!(
            evs[0].idempotency_key,
            idempotency_key("ses", &["sns-1", "a@example.com"])
        );
        // SNS retries reuse the MessageId: same keys.
        let again = normalize(&envelope(&doc, "sns-1"), &CTX)
            .expect("ok")
            .events;
        assert_eq!(again[2].idempotency_key, evs[2].idempotency_key);

        let reject = events(
            &json!({"eventType": "Reject", "mail": mail(), "reject": {"reason": "Bad content"}}),
        );
        assert_eq!(reject.len(), 2);
        assert_eq!(
            status_of(&reject[1]).error,
            ErrorInfo::from_parts(None, Some("Bad content".into()))
        );
        assert_eq!(reject[1].channel_value, "b@example.com");
        // No event timestamp: mail.timestamp.
        assert_eq!(status_of(&reject[0]).timestamp_ms, 1_714_979_289_100);
        let failure = events(
            &json!({"eventType": "Rendering Failure", "mail": mail(), "failure": {"errorMessage": "boom"}}),
        );
        assert_eq!(
            status_of(&failure[0])
                .error
                .as_ref()
                .and_then(|e| e.message.as_deref()),
            Some("boom")
        );
        let delivered = events(
            &json!({"eventType": "Delivery", "mail": mail(), "delivery": {"recipients": ["a@example.com"]}}),
        );
        assert_eq!(delivered.len(), 1);
        assert_eq!(status_of(&delivered[0]).error, None);
    }

    #[test]
    fn correlation_comes_from_mail_tags() {
        let evs = events(&json!({"eventType": "Send", "mail": mail(), "send": {}}));
        let c = &evs[0].correlation;
        assert_eq!(c["distinct_id"], json!("user-1"));
        assert_eq!(c["multi"], json!(["x", "y"]));
        assert_eq!(c["empty"], json!([]));
        let no_tags =
            events(&json!({"eventType": "Send", "mail": {"destination": ["a@example.com"]}}));
        assert!(no_tags[0].correlation.is_empty());
        assert_eq!(no_tags[0].vendor_ack_id, None);
        assert_eq!(status_of(&no_tags[0]).timestamp_ms, CTX.received_at_ms);
    }

    #[test]
    fn non_ascii_survives() {
        let doc = json!({
            "eventType": "Delivery",
            "mail": {"messageId": "m", "destination": ["józef@exämple.com"], "tags": {"campaña": ["naïve ✓"]}},
            "delivery": {"recipients": ["józef@exämple.com"], "timestamp": "2024-01-01T00:00:00Z"}
        });
        let evs = events(&doc);
        assert_eq!(evs[0].channel_value, "józef@exämple.com");
        assert_eq!(evs[0].correlation["campaña"], json!("naïve ✓"));
    }

    #[test]
    fn raw_message_delivery_normalizes() {
        let doc = json!({"eventType": "Open", "mail": mail(), "open": {"timestamp": "2024-05-06T08:00:00Z"}});
        let mut req = CallbackRequest::post(doc.to_string());
        req.headers
            .insert(RAW_DELIVERY_HEADER, http::HeaderValue::from_static("true"));
        req.headers.insert(
            "x-amz-sns-message-id",
            http::HeaderValue::from_static("sns-raw"),
        );
        let evs = normalize(&req, &CTX).expect("ok").events;
        assert_eq!(evs.len(), 2);
        assert_eq!(
            evs[0].idempotency_key,
            idempotency_key("ses", &["sns-raw", "a@example.com"])
        );
        assert_eq!(status_of(&evs[0]).status, Status::Seen);
        assert_eq!(status_of(&evs[0]).timestamp_ms, 1_714_982_400_000);
        assert_eq!(evs[0].raw, doc);
        // Without the header (or its message id) the document is still recognised.
        let evs2 = normalize(&sns(&doc.to_string()), &CTX).expect("ok").events;
        assert_eq!(evs2.len(), 2);
        assert_ne!(evs2[0].idempotency_key, evs[0].idempotency_key);
        assert_eq!(
            evs2[0].idempotency_key,
            normalize(&sns(&doc.to_string()), &CTX).expect("ok").events[0].idempotency_key
        );
        // A raw body that is not an SES document.
        let mut bad = CallbackRequest::post("{\"hello\": 1}");
        bad.headers
            .insert(RAW_DELIVERY_HEADER, http::HeaderValue::from_static("true"));
        assert!(normalize(&bad, &CTX).is_err());
    }

    #[test]
    fn ses_subscription_succeeded_notice_has_no_events() {
        let doc = json!({"notificationType": "AmazonSnsSubscriptionSucceeded", "message": "You have successfully subscribed"});
        assert!(events(&doc).is_empty());
    }

    #[test]
    fn a_message_beyond_the_limits_is_kept_with_the_whole_body() {
        let deep = |depth: usize| {
            format!(
                r#"{{"eventType":"Delivery","mail":{},"delivery":{{"timestamp":"2024-01-01T00:00:00Z","x":{}{}}}}}"#,
                mail(),
                "[".repeat(depth),
                "]".repeat(depth)
            )
        };
        // Past serde_json's own limit, and under it (which it would parse).
        for depth in [100_000, 100] {
            let req = envelope_text(&deep(depth), "sns-deep");
            let out = normalize(&req, &CTX).expect("kept, not refused");
            assert!(out.events.is_empty() && out.control.is_none());
            assert_eq!(out.unparsed.len(), 1, "{depth}");
            assert_eq!(out.unparsed[0].raw.as_bytes(), &req.body[..]);
            assert!(
                out.unparsed[0]
                    .reason
                    .starts_with("Message: nested deeper than 64 levels"),
                "{}",
                out.unparsed[0].reason
            );
        }
        let long = format!(
            r#"{{"eventType":"Open","mail":{},"open":{{"timestamp":{}}}}}"#,
            mail(),
            "1".repeat(100_000)
        );
        let out = normalize(&envelope_text(&long, "sns-long"), &CTX).expect("kept");
        assert_eq!(out.unparsed.len(), 1);
        // A Message that is not JSON is another publisher's: ignored as before, even with
        // long digit runs or brackets in it.
        let text = format!("order {} [[[[", "1".repeat(500));
        let out = normalize(&envelope_text(&text, "sns-text"), &CTX).expect("ignored");
        assert!(out.unparsed.is_empty());
        assert!(matches!(out.control, Some(Control::Ignored { .. })));
    }

    /// An SNS Notification envelope around a Message text.
    fn envelope_text(message: &str, message_id: &str) -> CallbackRequest {
        sns(&json!({
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-events",
            "Message": message,
            "Timestamp": "2024-01-01T00:00:00.000Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLE",
            "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem",
        })
        .to_string())
    }

    #[test]
    fn one_document_beyond_the_limits_is_one_unparsed_event_not_one_per_recipient() {
        // Raw delivery, 100 levels: serde_json parses it, the limits hold it back.
        let doc = format!(
            r#"{{"eventType":"Send","mail":{},"x":{}{}}}"#,
            mail(),
            "[".repeat(100),
            "]".repeat(100)
        );
        let mut req = CallbackRequest::post(doc.clone());
        req.headers
            .insert(RAW_DELIVERY_HEADER, http::HeaderValue::from_static("true"));
        let out = crate::Provider::Ses.normalize(&req, &CTX).expect("kept");
        assert!(out.events.is_empty());
        assert_eq!(out.unparsed.len(), 1);
    }
}
