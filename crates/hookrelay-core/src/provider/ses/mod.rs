//! Amazon SES notifications delivered by Amazon SNS (provider id `ses`).
//!
//! # Callback format
//!
//! SNS `POST`s one JSON envelope per request with `Content-Type: text/plain; charset=UTF-8`
//! (`application/json` and an absent content type are accepted too). Envelope keys:
//! `Type`, `MessageId`, `TopicArn`, `Subject` (optional), `Message` (a string),
//! `Timestamp`, `SignatureVersion`, `Signature`, `SigningCertURL`, `UnsubscribeURL`, and
//! `Token` / `SubscribeURL` for confirmations. The Lambda spellings `SigningCertUrl`,
//! `SubscribeUrl` and `UnsubscribeUrl` are accepted as well.
//!
//! - `Type: SubscriptionConfirmation` becomes [`Control::SnsSubscriptionConfirmation`]
//!   (fetch `SubscribeURL` to confirm) and `UnsubscribeConfirmation` becomes
//!   [`Control::SnsUnsubscribeConfirmation`]; neither carries events.
//! - `Type: Notification`: `Message` is the SES JSON document (double-encoded), either a
//!   legacy feedback notification (`notificationType`) or a configuration-set event
//!   (`eventType`). A `Message` that is not a JSON object is an error.
//! - SNS raw message delivery (header `x-amz-sns-rawdelivery: true`) posts the bare SES
//!   document with no envelope. It is normalized (a body without `Type` that carries
//!   `eventType` or `notificationType` is read the same way), but it is unsigned, so
//!   [`Verifier::verify`] always rejects it (fail closed).
//!
//! One event per recipient: `Bounce` per `bounce.bouncedRecipients[]`, `Complaint` per
//! `complaint.complainedRecipients[]`, `Delivery` per `delivery.recipients[]`,
//! `DeliveryDelay` per `deliveryDelay.delayedRecipients[]`, every other event per
//! `mail.destination[]`. Channel `email`, `channel_value` = the recipient address. (A
//! received email is one inbound message instead: see [Email receiving](#email-receiving).)
//!
//! - `vendor_ack_id` = `mail.messageId` (the SES message id);
//! - `idempotency_key` = key of (SNS `MessageId`, recipient): SNS retries reuse the
//!   `MessageId`. For raw delivery the `x-amz-sns-message-id` header is used; without it,
//!   (`mail.messageId`, event type, event timestamp, recipient);
//! - correlation = `mail.tags`, each tag name to its value (the single string when the tag
//!   array has one element, else the array);
//! - timestamp = the event's own `timestamp` (`bounce.timestamp`, `delivery.timestamp`,
//!   `open.timestamp`, …), else `mail.timestamp`, else the receive time; epoch ms;
//! - `raw` = the SES document (the parsed `Message`), not the SNS envelope.
//!
//! # Email receiving
//!
//! A `notificationType: Received` document (SES email receiving: a receipt rule's action
//! published the notification) is an email sent to the application: **one inbound
//! message** on channel `email`, type `email`, however many recipients it has.
//!
//! - `from` (and `channel_value`) = the address of the first `mail.commonHeaders.from`
//!   (the `From` header, `Jane <jane@example.com>` → `jane@example.com`), else
//!   `mail.source` (the envelope MAIL FROM, often a bounce address);
//! - `to` = `receipt.recipients` (the envelope recipients the rule matched: the
//!   application's mailboxes), else the addresses of `mail.commonHeaders.to`, else
//!   `mail.destination`; several are joined with `, `;
//! - `text` = the subject (`mail.commonHeaders.subject`, already decoded by SES) and the
//!   message's text, separated by an empty line, as for Mailgun's received mail; the
//!   subject alone when the notification carries no text. Only the SNS action's
//!   notification carries the email itself (`content`: raw MIME, or base64 when
//!   `receipt.action.encoding` is `BASE64`); the text is its first `text/plain` part that
//!   is not an attachment, decoded (`base64` / `quoted-printable`; UTF-8, US-ASCII,
//!   ISO-8859-1 or Windows-1252), line breaks as `\n`. An HTML-only email, another
//!   charset, and the notifications of the S3, Lambda, Bounce, Stop and WorkMail actions
//!   (no `content`: the email is in S3, or nowhere) give the subject alone. Attachments
//!   are not listed as `media` (they have no URL); `content` stays in `vendor_response`;
//! - `context` = `{id}` from the `In-Reply-To` header in `mail.headers`, when present;
//! - `source_message_id` and `vendor_ack_id` = `mail.messageId` (SES's id, also the S3
//!   object key of the S3 action); time = `mail.timestamp` (when SES received it), else
//!   `receipt.timestamp`, else the receive time;
//! - `idempotency_key` = key of (SNS `MessageId`, `Received`), or (`mail.messageId`,
//!   `Received`) for raw delivery without its message id header.
//!
//! # Status mapping
//!
//! | SES `eventType` / `notificationType` | status | notes |
//! |---|---|---|
//! | `Send` | `queued` | |
//! | `Delivery` | `delivered` | |
//! | `Open` | `seen` | |
//! | `Click` | `clicked` | |
//! | `Bounce`, `bounceType: Permanent` | `bounced` | error below |
//! | `Bounce`, `bounceType: Transient` / `Undetermined` / other | `failed` | SES reports a soft bounce only once it gave up retrying, so it is a terminal failure, not a deferral |
//! | `Complaint` | `complained` | |
//! | `Complaint`, `complaintFeedbackType: not-spam` | `queued`, informational | |
//! | `Reject` | `failed` | error message = `reject.reason` |
//! | `Rendering Failure` | `failed` | error message = `failure.errorMessage` |
//! | `DeliveryDelay` | `queued`, informational | |
//! | `Subscription`, `unsubscribeAll: true` or any new topic status `OPT_OUT` / `OptOut` | `unsubscribed` | |
//! | `Subscription`, otherwise | `queued`, informational | |
//! | `Received` (email receiving) | (an inbound message) | see above |
//! | anything else (unknown values, `AmazonSnsSubscriptionSucceeded`, …) | `queued`, informational | documented fallback, never an error |
//!
//! Bounce error: `code` = the recipient's `status` (enhanced status code, e.g. `5.1.1`),
//! else its `diagnosticCode`; `message` = `diagnosticCode` when `code` is the `status`,
//! else `bounceType/bounceSubType`.
//!
//! # Signature
//!
//! The SNS message signature: `SignatureVersion` `1` = RSA PKCS#1 v1.5 with SHA-1, `2` =
//! with SHA-256, `Signature` in base64, over the string-to-sign `"Key\nValue\n"` for, in
//! this order, `Message, MessageId, Subject` (only if present)`, Timestamp, TopicArn,
//! Type` (notifications) or `Message, MessageId, SubscribeURL, Timestamp, Token, TopicArn,
//! Type` (confirmations). `SigningCertURL` must be `https` on a host matching
//! `^sns\.[a-zA-Z0-9\-]{3,}\.amazonaws\.com(\.cn)?$` with a path ending in `.pem`
//! (else [`VerifyError::Certificate`]). The certificate itself is supplied offline;
//! [`signing_cert_url`] and [`verify_with_cert_pem`] let a caller fetch and cache it.
//! When a clock is given (`now_secs`), the certificate must be inside its validity
//! period; without one (recorded requests) its dates are not checked. SNS signs no
//! freshness window: replays are left to dedupe on the idempotency key.
//!
//! # Verify keys
//!
//! | key | required | meaning |
//! |---|---|---|
//! | `cert_pem` | one of these two | PEM text of the SNS signing certificate (the binary reads the `cert_file` key into it) |
//! | `fetch_cert` | one of these two | `true`: the caller fetches the certificate from the checked `SigningCertURL` (AWS rotates it) and calls [`Verifier::verify_with_cert_pem`]; [`Verifier::verify`] alone then fails closed |
//! | `topic_arn` | yes | the topic's ARN, or several separated by commas: `TopicArn` must be one of them (else [`VerifyError::Mismatch`]). SNS signs the messages of every AWS account's topics with the same certificates, so without it anyone could create a topic, subscribe the route and publish to it |
//!
//! [`Control::SnsSubscriptionConfirmation`]: crate::provider::Control::SnsSubscriptionConfirmation
//! [`Control::SnsUnsubscribeConfirmation`]: crate::provider::Control::SnsUnsubscribeConfirmation
//! [`VerifyError::Certificate`]: crate::VerifyError::Certificate
//! [`VerifyError::Mismatch`]: crate::VerifyError::Mismatch

// The SNS signature check (`verify.rs`) and the mapping of SES documents into events
// (`normalize.rs`) are separate files; what both read of an SNS delivery is here.
mod mime;
mod normalize;
mod verify;

use serde_json::{Map, Value};

use crate::CallbackRequest;

pub use normalize::normalize;
pub use verify::{Verifier, signing_cert_url, string_to_sign, verify_with_cert_pem};

const PROVIDER: &str = "ses";
const RAW_DELIVERY_HEADER: &str = "x-amz-sns-rawdelivery";

/// True when SNS posted the bare SES document (raw message delivery, never signed).
fn is_raw_delivery(req: &CallbackRequest) -> bool {
    req.header(RAW_DELIVERY_HEADER)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// The first string value among `keys`.
fn env_str<'a>(m: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| m.get(*k).and_then(Value::as_str))
}

/// Fixtures and requests used by the tests of both files.
#[cfg(test)]
mod test_support {
    use serde_json::{Map, Value, json};

    use super::Verifier;
    use crate::CallbackRequest;
    use crate::provider::{VerifyOptions, VerifySettings};

    pub(super) const SNS_CERT: &str =
        include_str!("../../../tests/fixtures/ses/sns_signing_cert.pem");
    pub(super) const V1_NO_SUBJECT: &str =
        include_str!("../../../tests/fixtures/ses/notification_v1_no_subject.json");
    pub(super) const V1_WITH_SUBJECT: &str =
        include_str!("../../../tests/fixtures/ses/notification_v1_with_subject.json");
    pub(super) const V2_NO_SUBJECT: &str =
        include_str!("../../../tests/fixtures/ses/notification_v2_no_subject.json");
    pub(super) const STS_V1_NO_SUBJECT: &str =
        include_str!("../../../tests/fixtures/ses/notification_v1_no_subject.string_to_sign.txt");
    pub(super) const STS_V1_WITH_SUBJECT: &str =
        include_str!("../../../tests/fixtures/ses/notification_v1_with_subject.string_to_sign.txt");
    pub(super) const STS_V2_NO_SUBJECT: &str =
        include_str!("../../../tests/fixtures/ses/notification_v2_no_subject.string_to_sign.txt");
    pub(super) const SELF_CONFIRMATION: &str =
        include_str!("../../../tests/fixtures/ses/selfsigned_subscription_confirmation_v2.json");
    pub(super) const VECTORS: [(&str, &str); 3] = [
        (V1_NO_SUBJECT, STS_V1_NO_SUBJECT),
        (V1_WITH_SUBJECT, STS_V1_WITH_SUBJECT),
        (V2_NO_SUBJECT, STS_V2_NO_SUBJECT),
    ];
    pub(super) fn sns(body: &str) -> CallbackRequest {
        CallbackRequest::post(body.to_owned()).with_content_type("text/plain; charset=UTF-8")
    }

    /// The topics of the fixtures: AWS's SDK test vectors, its documentation's examples
    /// and the self-signed confirmation.
    pub(super) const TOPICS: &str = "\
        arn:aws:sns:us-east-2:295079676684:publish-and-verify-892f85fe-4836-424d-8188-ab85bef0f362,\
        arn:aws:sns:us-east-2:295079676684:publish-and-verify-6e11fed2-fcdf-4c52-9dc4-36ef43f37f84,\
        arn:aws:sns:us-east-2:295079676684:publish-and-verify-62674b1d-4295-426b-88e7-5fb75652a04e,\
        arn:aws:sns:us-west-2:123456789012:MyTopic,\
        arn:aws:sns:eu-west-1:123456789012:ses-events";

    pub(super) fn verifier(pem: &str) -> Verifier {
        Verifier::from_settings(
            &VerifySettings::new()
                .with("cert_pem", pem)
                .with("topic_arn", TOPICS),
        )
        .expect("verifier")
    }

    pub(super) fn recorded() -> VerifyOptions {
        VerifyOptions::default()
    }

    pub(super) fn edit(body: &str, f: impl FnOnce(&mut Map<String, Value>)) -> String {
        let mut v: Value = serde_json::from_str(body).expect("json");
        f(v.as_object_mut().expect("object"));
        serde_json::to_string(&v).expect("json")
    }

    pub(super) fn mail() -> Value {
        json!({
            "timestamp": "2024-05-06T07:08:09.100Z",
            "messageId": "ses-msg-1",
            "destination": ["a@example.com", "b@example.com"],
            "tags": {"distinct_id": ["user-1"], "multi": ["x", "y"], "empty": []}
        })
    }
}
