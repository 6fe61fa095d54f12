//! Vonage (Nexmo): SMS API delivery receipts and inbound SMS, and Messages API status and
//! inbound-message webhooks (SMS, MMS, WhatsApp, RCS, Viber, Messenger).
//!
//! # Callback format
//!
//! One event per request, never a batch.
//!
//! - **SMS API** (delivery receipts and inbound SMS): flat string parameters, sent as a
//!   `GET` query string (Vonage's default; the body is empty), a `POST`
//!   `application/x-www-form-urlencoded` body, or a `POST` `application/json` object, with
//!   the same field names in all three. A `GET` (or a `POST` with an empty body) reads the
//!   query; a `POST` body is JSON when declared so (or, undeclared, when it starts with
//!   `{`/`[`), form otherwise. A JSON array is a shape error.
//!   - Delivery receipt (has `status`): `msisdn` (the **recipient**), `to` (your sender id),
//!     `messageId`, `status`, `err-code` (`"0"` = no error), `scts` (`YYMMDDHHMM`),
//!     `message-timestamp` (`YYYY-MM-DD HH:MM:SS` UTC), `client-ref`, `network-code`,
//!     `price`, `api-key`, and when signing is on `timestamp`, `nonce`, `sig`.
//!   - Inbound SMS (has `text` or `type`, no `status`): `msisdn` (the sender), `to` (your
//!     number), `messageId`, `text`, `type` (`text`, `unicode`, `binary`), `keyword`,
//!     `message-timestamp`, `concat`, `concat-ref`, `concat-total`, `concat-part`, `data`,
//!     `udh`, and the signing fields.
//! - **Messages API** (has `message_uuid`): a JSON `POST`.
//!   - Status (has `status`): `message_uuid`, `to` (the recipient), `from`, `timestamp`
//!     (ISO 8601), `status`, `error {type, title, detail, instance}`, `client_ref`,
//!     `channel`, `usage`.
//!   - Inbound message: `message_uuid`, `from` (the sender), `to`, `channel`,
//!     `message_type`, `timestamp`, and the content: `text`, `image {url, caption}`,
//!     `audio {url}`, `video {url, caption}`, `file {url, caption}`, `sticker {url}`,
//!     `vcard {url}`, `location {lat, long, name, address}`, `reply {id, title}`,
//!     `button {text, payload}`, `reaction {emoji}`, …, plus `context {message_uuid,
//!     message_from}` for replies. The older v0.1 shape (`to`/`from` as `{type, number}`
//!     objects, content under `message.content`) is read too.
//!
//! Normalization choices:
//!
//! - **E.164**: Vonage writes numbers without `+` (`447700900000`). Every phone number
//!   this module emits (`channel_value`, inbound `from`/`to`, reply `context.from`, on
//!   every channel but Messenger) gets a `+` when it is 7 to 15 ASCII digits (the rule of
//!   all providers, after a `whatsapp:` prefix is dropped); anything else (alphanumeric
//!   sender ids, short codes, values that already start with `+`) is kept as sent.
//! - **Channel**: the SMS API is `sms`. Messages API `channel` `sms` and `mms` are `sms`,
//!   `whatsapp` is `whatsapp`, `rcs` is `rcs`, `viber_service` (v0.1:
//!   `viber_service_msg`) is `viber`, `messenger` is `messenger`. RCS and Viber addresses
//!   are phone numbers (the E.164 rule above); Messenger's are page-scoped user ids, kept
//!   as sent. Any other channel (`instagram`, …) has no name in the payload: the callback
//!   verified and is Vonage's, and sending it again would not change it, so it is not
//!   refused but kept whole as unparsed (`Normalized::unparsed`, reason `Vonage channel
//!   "instagram" has no channel in the payload (known: …)`), to be looked at in the
//!   sidecar's `:unparsed` dead letters. A callback with no channel at all is still
//!   refused (missing field).
//! - **Concatenated inbound SMS**: a stateless normalizer cannot reassemble parts, so each
//!   part is its own inbound event; `concat-ref`, `concat-part` and `concat-total` are put
//!   in the correlation ids as `concat_ref`, `concat_part` and `concat_total` so a consumer
//!   can reassemble (the part's text is only that part).
//! - **Correlation**: SMS `client-ref` and Messages `client_ref` both appear as
//!   `client_ref`.
//! - **Message type**: inbound SMS `text` and `unicode` are `text`, `binary` is `binary`
//!   (the hex `data`/`udh` stay in the raw event). Messages `file` is `document`, `vcard`
//!   is `contacts`, `reply` (a list/button reply) is `interactive`; other values are kept.
//!   Media carry no content type (Vonage sends none).
//! - **Time**: receipts use `message-timestamp`, else `scts`, else the receive time;
//!   inbound SMS use `message-timestamp`, else the signed `timestamp`, else the receive
//!   time; the Messages API uses `timestamp`, else the receive time.
//! - **Errors** (failed statuses only): SMS `err-code` when it is not `"0"`, with the
//!   description from Vonage's DLR error-code table (`1` Unknown … `99` General Error);
//!   Messages `error.title` (Vonage puts the numeric code there; `error.code` in v0.1,
//!   else `error.type`) and `error.detail` (v0.1 `error.reason`).
//! - **Idempotency**: receipts `(messageId, status, err-code, concat-part)`; inbound SMS
//!   `(messageId, concat-ref, concat-part)`; Messages status `(message_uuid, status)`;
//!   Messages inbound `(message_uuid)`.
//!
//! # Signature scheme
//!
//! - **SMS API `sig`** (enabled per account): the parameters except `sig`, sorted by name
//!   (byte order), concatenated as `&name=value` where `&` and `=` inside values become
//!   `_`. `md5hash` = lower-case hex MD5(digest string + secret); `md5`, `sha1`, `sha256`,
//!   `sha512` = upper-case hex HMAC(key = secret, digest string). The comparison ignores
//!   hex case and is constant-time. The parameters are read exactly as `normalize` reads
//!   them (query, form or JSON object); a repeated parameter name is rejected. With a
//!   clock (`now_secs`), the signed `timestamp` parameter must be present and within the
//!   tolerance.
//! - **Messages API JWT**: `Authorization: Bearer <JWT>`, HS256 with the signature
//!   secret. The header must say `alg: HS256`; the HMAC over `header.payload` is checked
//!   in constant time; then the `payload_hash` claim must equal the hex SHA-256 of the raw
//!   body (constant-time). A request with a non-empty body whose token has **no**
//!   `payload_hash` is rejected (fail closed: otherwise a captured token would sign any
//!   body). With a clock, `iat` must be present and within the tolerance, and an `exp`
//!   claim must not be past.
//!
//! The JWT check is used when the request has a `Bearer` `Authorization` header and
//! `signature_method` is absent or `jwt`; otherwise the `sig` check is used. With
//! `signature_method: jwt` a request without the header is rejected as unsigned; set a
//! `sig` method explicitly if something in front of hookrelay adds its own Bearer header
//! to SMS API callbacks. For a `GET`, every query parameter counts as signed, so the
//! callback URL configured at Vonage should carry no query of its own.
//!
//! # Verify keys
//!
//! | key | required | meaning |
//! |---|---|---|
//! | `signature_secret` | yes | the account's signature secret (dashboard → settings) |
//! | `signature_method` | no | `md5hash` (default, Vonage's default), `md5`, `sha1`, `sha256`, `sha512`, or `jwt` |
//!
//! # Status mapping
//!
//! | provider value | status |
//! |---|---|
//! | SMS DLR `delivered` | `delivered` |
//! | SMS DLR `accepted`, `buffered` | `queued` |
//! | SMS DLR `expired`, `failed`, `rejected` | `failed` |
//! | SMS DLR `unknown` | `failed` (as in the research table: Vonage gives no final outcome) |
//! | Messages `submitted` | `sent` |
//! | Messages `delivered` | `delivered` |
//! | Messages `read` | `seen` |
//! | Messages `rejected`, `undeliverable` | `failed` |
//! | any other value | `queued`, informational (fallback) |
//!
//! Unknown status values never fail a callback: they become `queued` with
//! `informational = true`, so they never downgrade a later status, and the provider's
//! event is kept in `vendor_response`.

// The checks (`verify.rs`) and the mapping into events (`normalize.rs`) are separate
// files; how a callback's fields are read is here, shared by both so that the `sig` check
// sees exactly the parameters the events are made of.
mod normalize;
mod verify;

use http::Method;
use serde_json::{Map, Value};

use crate::{CallbackRequest, NormalizeError};

pub use normalize::normalize;
pub use verify::Verifier;

const PROVIDER: &str = "vonage";

/// The `verify:` keys this provider knows.
pub const KNOWN_KEYS: &[&str] = &["signature_secret", "signature_method"];

const ACCEPTED_TYPES: &[&str] = &["application/json", "application/x-www-form-urlencoded"];
const EXPECTED_TYPES: &str = "a GET query, application/x-www-form-urlencoded or application/json";

/// The callback's fields, as the provider sent them.
enum Fields {
    /// Query or form parameters, in order.
    Pairs(Vec<(String, String)>),
    /// A JSON object body.
    Json(Map<String, Value>),
}

/// Reads the fields of a callback: the query for `GET` (or a `POST` with an empty body),
/// else the body as JSON or form. Shared by `verify` and `normalize` so both see the same
/// parameters.
fn read_fields(req: &CallbackRequest) -> Result<Fields, NormalizeError> {
    if req.method != Method::GET && req.method != Method::POST {
        return Err(NormalizeError::UnsupportedMethod {
            provider: PROVIDER,
            method: req.method.to_string(),
        });
    }
    let body_empty = req.body.iter().all(u8::is_ascii_whitespace);
    if req.method == Method::GET || body_empty {
        let pairs = req.query_pairs();
        if pairs.is_empty() {
            return Err(NormalizeError::EmptyBody);
        }
        return Ok(Fields::Pairs(pairs));
    }
    req.expect_content_type(PROVIDER, ACCEPTED_TYPES, EXPECTED_TYPES)?;
    if body_is_json(req) {
        return match req.json()? {
            Value::Object(m) => Ok(Fields::Json(m)),
            Value::Array(_) => Err(NormalizeError::shape(
                "/",
                "a JSON object (one Vonage callback), not an array",
            )),
            _ => Err(NormalizeError::shape(
                "/",
                "a JSON object (one Vonage callback)",
            )),
        };
    }
    let pairs = req.form_pairs();
    if pairs.is_empty() {
        return Err(NormalizeError::EmptyBody);
    }
    Ok(Fields::Pairs(pairs))
}

/// True when a `POST` body with content is read as JSON: declared so, or undeclared and
/// starting with `{` or `[`.
fn body_is_json(req: &CallbackRequest) -> bool {
    let first = req.body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    req.method == Method::POST
        && first.is_some()
        && (req.is_json() || (req.media_type().is_none() && matches!(first, Some(b'{' | b'['))))
}

/// Requests and settings built by the tests of both files.
#[cfg(test)]
mod test_support {
    use bytes::Bytes;
    use http::{HeaderMap, Method, Uri};
    use serde_json::{Map, Value};

    use super::Verifier;
    use crate::CallbackRequest;
    use crate::provider::{Context, VerifyOptions, VerifySettings};

    pub(super) const CTX: Context = Context {
        received_at_ms: 1_700_000_000_000,
    };

    pub(super) fn settings(secret: &str, method: Option<&str>) -> VerifySettings {
        let s = VerifySettings::new().with("signature_secret", secret);
        match method {
            Some(m) => s.with("signature_method", m),
            None => s,
        }
    }

    pub(super) fn verifier(secret: &str, method: Option<&str>) -> Verifier {
        Verifier::from_settings(&settings(secret, method)).expect("valid settings")
    }

    pub(super) fn query(params: &[(String, String)]) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in params {
            s.append_pair(k, v);
        }
        s.finish()
    }

    pub(super) fn get(params: &[(String, String)]) -> CallbackRequest {
        CallbackRequest {
            method: Method::GET,
            uri: format!("/callbacks/vonage?{}", query(params))
                .parse::<Uri>()
                .expect("uri"),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    pub(super) fn form(params: &[(String, String)]) -> CallbackRequest {
        CallbackRequest::post(query(params)).with_content_type("application/x-www-form-urlencoded")
    }

    pub(super) fn json_req(params: &[(String, String)]) -> CallbackRequest {
        let m: Map<String, Value> = params
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        CallbackRequest::post(serde_json::to_vec(&m).expect("json"))
            .with_content_type("application/json")
    }

    pub(super) fn with(
        params: &[(String, String)],
        key: &str,
        value: &str,
    ) -> Vec<(String, String)> {
        let mut p: Vec<_> = params.iter().filter(|(k, _)| k != key).cloned().collect();
        p.push((key.into(), value.into()));
        p
    }

    pub(super) const NO_CLOCK: VerifyOptions = VerifyOptions {
        now_secs: None,
        tolerance_secs: None,
    };
}
