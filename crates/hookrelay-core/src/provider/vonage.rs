//! Vonage (Nexmo): SMS API delivery receipts and inbound SMS, and Messages API status and
//! inbound-message webhooks (SMS, MMS, WhatsApp).
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
//!   this module emits (`channel_value`, inbound `from`/`to`, reply `context.from`) gets a
//!   `+` when it is 7 to 15 ASCII digits (the rule of all providers, after a `whatsapp:`
//!   prefix is dropped); anything else (alphanumeric sender ids, short codes, values that
//!   already start with `+`) is kept as sent.
//! - **Channel**: the SMS API is `sms`. Messages API `channel` `sms` and `mms` are `sms`,
//!   `whatsapp` is `whatsapp`; any other channel (`viber_service`, `messenger`, `rcs`,
//!   `instagram`, …) is **rejected** with an `invalid field channel` error, because the
//!   channel vocabulary has no place for it and its addresses are not phone numbers.
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

use http::Method;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::event::idempotency_key;
use crate::mac::{self, Hash};
use crate::phone::e164_of_channel_address;
use crate::provider::json::str_of;
use crate::provider::{Context, Normalized, VerifyOptions, VerifySettings};
use crate::secret::ct_eq;
use crate::timestamp::{parse_str_ms, parse_yymmddhhmm_ms};
use crate::{
    CallbackRequest, Channel, ErrorInfo, Event, EventKind, InboundMessage, Location, Media,
    NormalizeError, ReplyContext, Secret, Status, StatusUpdate, VerifyConfigError, VerifyError,
};

const PROVIDER: &str = "vonage";

/// The `verify:` keys this provider knows.
pub const KNOWN_KEYS: &[&str] = &["signature_secret", "signature_method"];

const ACCEPTED_TYPES: &[&str] = &["application/json", "application/x-www-form-urlencoded"];
const EXPECTED_TYPES: &str = "a GET query, application/x-www-form-urlencoded or application/json";

/// How an SMS API `sig` is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SigAlg {
    /// Lower-case hex MD5(digest string + secret).
    Md5Hash,
    /// Upper-case hex HMAC-MD5.
    Md5,
    /// Upper-case hex HMAC-SHA1.
    Sha1,
    /// Upper-case hex HMAC-SHA256.
    Sha256,
    /// Upper-case hex HMAC-SHA512.
    Sha512,
}

/// Which check a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// `signature_method` absent: JWT when a Bearer header is present, else `md5hash` `sig`.
    Auto,
    /// Always the `sig` check with this algorithm.
    Sig(SigAlg),
    /// Always the Messages API JWT check.
    Jwt,
}

/// Signature check for Vonage callbacks (SMS API `sig` or Messages API JWT).
///
/// `Debug` never prints the secret.
#[derive(Debug, Clone)]
pub struct Verifier {
    secret: Secret,
    method: Check,
}

impl Verifier {
    /// Builds the verifier from the `verify:` settings: `signature_secret` (required) and
    /// `signature_method` (optional, `md5hash` by default).
    pub fn from_settings(settings: &VerifySettings) -> Result<Self, VerifyConfigError> {
        settings.only(PROVIDER, KNOWN_KEYS)?;
        let secret = settings.require(PROVIDER, "signature_secret")?.clone();
        let method = match settings.get("signature_method") {
            None => Check::Auto,
            Some(m) => match m.expose().trim().to_ascii_lowercase().as_str() {
                "md5hash" => Check::Sig(SigAlg::Md5Hash),
                "md5" => Check::Sig(SigAlg::Md5),
                "sha1" => Check::Sig(SigAlg::Sha1),
                "sha256" => Check::Sig(SigAlg::Sha256),
                "sha512" => Check::Sig(SigAlg::Sha512),
                "jwt" => Check::Jwt,
                other => {
                    return Err(VerifyConfigError::Invalid {
                        provider: PROVIDER,
                        key: "signature_method",
                        reason: format!(
                            "{other:?} is not one of md5hash, md5, sha1, sha256, sha512, jwt"
                        ),
                    });
                }
            },
        };
        Ok(Self { secret, method })
    }

    /// Checks the callback: the Messages API JWT when a Bearer token is present (and the
    /// method is not a `sig` method), else the SMS API `sig` parameter.
    pub fn verify(&self, req: &CallbackRequest, opts: &VerifyOptions) -> Result<(), VerifyError> {
        let bearer = bearer_token(req);
        match (self.method, bearer) {
            (Check::Jwt, None) => Err(VerifyError::Missing("Authorization: Bearer <JWT>")),
            (Check::Jwt | Check::Auto, Some(token)) => self.verify_jwt(token, req, opts),
            (Check::Auto, None) => self.verify_sig(req, SigAlg::Md5Hash, opts),
            (Check::Sig(alg), _) => self.verify_sig(req, alg, opts),
        }
    }

    fn verify_sig(
        &self,
        req: &CallbackRequest,
        alg: SigAlg,
        opts: &VerifyOptions,
    ) -> Result<(), VerifyError> {
        let fields = read_fields(req).map_err(|e| VerifyError::Unreadable(e.to_string()))?;
        let mut params: Vec<(String, String)> = match fields {
            Fields::Pairs(p) => p,
            Fields::Json(m) => {
                let mut out = Vec::with_capacity(m.len());
                for (k, v) in m {
                    let v = match v {
                        Value::String(s) => s,
                        Value::Number(n) => n.to_string(),
                        _ => {
                            return Err(VerifyError::Unreadable(format!(
                                "parameter {k:?} is not a string or number"
                            )));
                        }
                    };
                    out.push((k, v));
                }
                out
            }
        };
        params.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        if let Some(w) = params.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(VerifyError::Malformed(format!(
                "parameter {:?} appears more than once",
                w[0].0
            )));
        }
        let sig = params
            .iter()
            .find(|(k, _)| k == "sig")
            .map(|(_, v)| v.trim().to_owned())
            .ok_or(VerifyError::Missing("sig parameter"))?;
        let digest = digest_string(params.iter().filter(|(k, _)| k != "sig"));
        let secret = self.secret.expose().as_bytes();
        let hmac = |hash| mac::hmac(hash, secret, &[digest.as_bytes()]).matches_hex(&sig);
        let ok = match alg {
            SigAlg::Md5Hash => {
                // Not an HMAC: MD5 of the digest string followed by the secret.
                let mut h = md5::Md5::new();
                h.update(digest.as_bytes());
                h.update(secret);
                let want = hex::encode(h.finalize());
                ct_eq(sig.to_ascii_lowercase().as_bytes(), want.as_bytes())
            }
            SigAlg::Md5 => hmac(Hash::Md5),
            SigAlg::Sha1 => hmac(Hash::Sha1),
            SigAlg::Sha256 => hmac(Hash::Sha256),
            SigAlg::Sha512 => hmac(Hash::Sha512),
        };
        if !ok {
            return Err(VerifyError::Mismatch);
        }
        if opts.now_secs.is_some() {
            let ts = params
                .iter()
                .find(|(k, _)| k == "timestamp")
                .map(|(_, v)| v.trim())
                .ok_or_else(|| {
                    VerifyError::Malformed("signed request has no `timestamp` parameter".into())
                })?;
            let ts: i64 = ts.parse().map_err(|_| {
                VerifyError::Malformed(format!("`timestamp` {ts:?} is not an integer"))
            })?;
            opts.check_timestamp(ts)?;
        }
        Ok(())
    }

    fn verify_jwt(
        &self,
        token: &str,
        req: &CallbackRequest,
        opts: &VerifyOptions,
    ) -> Result<(), VerifyError> {
        let claims = verify_hs256(token, self.secret.expose().as_bytes())?;
        match claims.get("payload_hash") {
            Some(Value::String(h)) => {
                let want = hex::encode(Sha256::digest(&req.body));
                if !ct_eq(h.trim().to_ascii_lowercase().as_bytes(), want.as_bytes()) {
                    return Err(VerifyError::Mismatch);
                }
            }
            Some(_) => {
                return Err(VerifyError::Malformed(
                    "JWT payload_hash is not a string".into(),
                ));
            }
            None if !req.body.is_empty() => {
                return Err(VerifyError::Malformed(
                    "JWT has no payload_hash claim, so the body is not signed".into(),
                ));
            }
            None => {}
        }
        if let Some(now) = opts.now_secs {
            let iat = claims
                .get("iat")
                .and_then(claim_secs)
                .ok_or_else(|| VerifyError::Malformed("JWT has no numeric iat claim".into()))?;
            opts.check_timestamp(iat)?;
            if let Some(exp) = claims.get("exp") {
                let exp = claim_secs(exp)
                    .ok_or_else(|| VerifyError::Malformed("JWT exp is not a number".into()))?;
                if now > exp {
                    return Err(VerifyError::Stale(format!(
                        "JWT expired {}s ago",
                        now - exp
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer_token(req: &CallbackRequest) -> Option<&str> {
    let v = req.header("authorization")?.trim();
    let (scheme, rest) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// The SMS API digest string: `&name=value` per parameter in the given order, with `&`
/// and `=` in values replaced by `_`.
fn digest_string<'a>(params: impl Iterator<Item = &'a (String, String)>) -> String {
    let mut out = String::new();
    for (k, v) in params {
        out.push('&');
        out.push_str(k);
        out.push('=');
        out.extend(
            v.chars()
                .map(|c| if c == '&' || c == '=' { '_' } else { c }),
        );
    }
    out
}

/// A JWT time claim as whole seconds.
fn claim_secs(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && f.abs() < 1e15)
                .map(|f| {
                    #[allow(clippy::cast_possible_truncation)]
                    let s = f.trunc() as i64;
                    s
                })
        }),
        _ => None,
    }
}

fn b64url(part: &str, what: &str) -> Result<Vec<u8>, VerifyError> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| VerifyError::Malformed(format!("JWT {what} is not base64url: {e}")))
}

/// Checks an HS256 JWT against `key` and returns its claims. The header must be a JSON
/// object with `alg: HS256`; the signature is checked in constant time before the claims
/// are parsed.
fn verify_hs256(token: &str, key: &[u8]) -> Result<Map<String, Value>, VerifyError> {
    let mut parts = token.split('.');
    let (Some(h64), Some(c64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VerifyError::Malformed(
            "JWT does not have three parts".into(),
        ));
    };
    let header: Value = serde_json::from_slice(&b64url(h64, "header")?)
        .map_err(|e| VerifyError::Malformed(format!("JWT header is not JSON: {e}")))?;
    match header.get("alg") {
        Some(Value::String(a)) if a == "HS256" => {}
        Some(Value::String(a)) => {
            return Err(VerifyError::Malformed(format!(
                "JWT alg {a:?}, expected HS256"
            )));
        }
        _ => return Err(VerifyError::Malformed("JWT header has no alg".into())),
    }
    let sig = b64url(s64, "signature")?;
    if !mac::hmac(Hash::Sha256, key, &[h64.as_bytes(), b".", c64.as_bytes()]).matches(&sig) {
        return Err(VerifyError::Mismatch);
    }
    match serde_json::from_slice::<Value>(&b64url(c64, "claims")?) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(VerifyError::Malformed(
            "JWT claims are not a JSON object".into(),
        )),
        Err(e) => Err(VerifyError::Malformed(format!(
            "JWT claims are not JSON: {e}"
        ))),
    }
}

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
    let first = req.body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    let json = req.is_json() || (req.media_type().is_none() && matches!(first, Some(b'{' | b'[')));
    if json {
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
    let obj = read_object(req)?;
    let raw = Value::Object(obj.clone());
    let event = if obj.contains_key("message_uuid") {
        if obj.contains_key("status") {
            messages_status(&raw, ctx)?
        } else {
            messages_inbound(&raw, ctx)?
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

/// The Messages API channel: `channel` (v1) or `to.type`/`from.type` (v0.1).
fn messages_channel(v: &Value) -> Result<Channel, NormalizeError> {
    let name = str_of(v, "channel")
        .or_else(|| v.get("to").and_then(|t| str_of(t, "type")))
        .or_else(|| v.get("from").and_then(|t| str_of(t, "type")))
        .ok_or_else(|| NormalizeError::MissingField("channel".into()))?;
    match name.trim().to_ascii_lowercase().as_str() {
        "sms" | "mms" => Ok(Channel::Sms),
        "whatsapp" => Ok(Channel::Whatsapp),
        other => Err(NormalizeError::invalid(
            "channel",
            format!("Vonage channel {other:?} is not supported (sms, mms and whatsapp are)"),
        )),
    }
}

fn messages_timestamp(v: &Value, ctx: &Context) -> i64 {
    str_of(v, "timestamp")
        .and_then(|s| text_ms(&s))
        .unwrap_or(ctx.received_at_ms)
}

fn messages_status(raw: &Value, ctx: &Context) -> Result<Event, NormalizeError> {
    let uuid = required(raw, "message_uuid")?;
    let channel = messages_channel(raw)?;
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
        channel_value: e164_of_channel_address(&to),
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
        .map(|url| {
            vec![Media {
                url,
                content_type: None,
            }]
        })
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

fn messages_inbound(raw: &Value, ctx: &Context) -> Result<Event, NormalizeError> {
    let uuid = required(raw, "message_uuid")?;
    let channel = messages_channel(raw)?;
    let from = e164_of_channel_address(
        &address(raw, "from").ok_or_else(|| NormalizeError::MissingField("from".into()))?,
    );
    let to = e164_of_channel_address(
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
            from: str_of(c, "message_from").map(|f| e164_of_channel_address(&f)),
        })
    });
    let mut correlation = Map::new();
    if let Some(r) = str_of(raw, "client_ref") {
        correlation.insert("client_ref".into(), Value::String(r));
    }
    Ok(Event {
        channel,
        channel_value: from,
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
    use super::*;
    use bytes::Bytes;
    use hmac::{Hmac, KeyInit, Mac};
    use http::{HeaderMap, HeaderValue, Uri};
    use serde_json::json;

    const SIG_VECTORS: &str =
        include_str!("../../tests/fixtures/vonage/sms_signature_vectors.json");
    const JWT_VECTOR: &str = include_str!("../../tests/fixtures/vonage/messages_jwt_vector.json");
    const SIGNED_PARAMS: &str =
        include_str!("../../tests/fixtures/vonage/sms_inbound_signed_params.json");
    const DOC_EXAMPLE: &str =
        include_str!("../../tests/fixtures/vonage/sms_inbound_doc_example.json");

    const CTX: Context = Context {
        received_at_ms: 1_700_000_000_000,
    };

    fn settings(secret: &str, method: Option<&str>) -> VerifySettings {
        let s = VerifySettings::new().with("signature_secret", secret);
        match method {
            Some(m) => s.with("signature_method", m),
            None => s,
        }
    }

    fn verifier(secret: &str, method: Option<&str>) -> Verifier {
        Verifier::from_settings(&settings(secret, method)).expect("valid settings")
    }

    fn query(params: &[(String, String)]) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in params {
            s.append_pair(k, v);
        }
        s.finish()
    }

    fn get(params: &[(String, String)]) -> CallbackRequest {
        CallbackRequest {
            method: Method::GET,
            uri: format!("/callbacks/vonage?{}", query(params))
                .parse::<Uri>()
                .expect("uri"),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    fn form(params: &[(String, String)]) -> CallbackRequest {
        CallbackRequest::post(query(params)).with_content_type("application/x-www-form-urlencoded")
    }

    fn json_req(params: &[(String, String)]) -> CallbackRequest {
        let m: Map<String, Value> = params
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        CallbackRequest::post(serde_json::to_vec(&m).expect("json"))
            .with_content_type("application/json")
    }

    fn all_encodings(params: &[(String, String)]) -> [CallbackRequest; 3] {
        [get(params), form(params), json_req(params)]
    }

    fn obj_params(v: &Value) -> Vec<(String, String)> {
        v.as_object()
            .expect("object")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("string").to_owned()))
            .collect()
    }

    fn with(params: &[(String, String)], key: &str, value: &str) -> Vec<(String, String)> {
        let mut p: Vec<_> = params.iter().filter(|(k, _)| k != key).cloned().collect();
        p.push((key.into(), value.into()));
        p
    }

    const NO_CLOCK: VerifyOptions = VerifyOptions {
        now_secs: None,
        tolerance_secs: None,
    };

    // ---- settings ----

    #[test]
    fn settings_fail_closed() {
        assert!(Verifier::from_settings(&VerifySettings::new()).is_err());
        assert!(Verifier::from_settings(&settings("  ", None)).is_err());
        assert!(
            Verifier::from_settings(&VerifySettings::new().with("signature_method", "md5"))
                .is_err()
        );
        assert!(Verifier::from_settings(&settings("s", Some("crc32"))).is_err());
        assert!(
            Verifier::from_settings(&settings("s", None).with("secret", "x")).is_err(),
            "unknown key"
        );
        for m in ["md5hash", "MD5", "sha1", "sha256", "sha512", "jwt"] {
            assert!(
                Verifier::from_settings(&settings("s", Some(m))).is_ok(),
                "{m}"
            );
        }
        let dbg = format!("{:?}", verifier("hunter2-secret", None));
        assert!(!dbg.contains("hunter2"), "{dbg}");
    }

    // ---- SMS API `sig` ----

    #[test]
    fn sms_signature_vectors_pass_every_method_and_encoding() {
        let v: Value = serde_json::from_str(SIG_VECTORS).expect("vectors");
        let case = &v["cases"][0];
        let secret = case["signature_secret"].as_str().expect("secret");
        let params = obj_params(&case["params"]);
        // The digest string is built exactly as published.
        let mut sorted = params.clone();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            digest_string(sorted.iter()),
            case["digest_string"].as_str().expect("digest")
        );
        for (method, expected) in case["expected"].as_object().expect("expected") {
            let expected = expected.as_str().expect("sig");
            let good = verifier(secret, Some(method));
            let signed = with(&params, "sig", expected);
            for req in all_encodings(&signed) {
                good.verify(&req, &NO_CLOCK)
                    .unwrap_or_else(|e| panic!("{method}: {e}"));
            }
            // Hex case does not matter.
            let flipped = if expected.bytes().any(|b| b.is_ascii_lowercase()) {
                expected.to_ascii_uppercase()
            } else {
                expected.to_ascii_lowercase()
            };
            good.verify(&get(&with(&params, "sig", &flipped)), &NO_CLOCK)
                .unwrap_or_else(|e| panic!("{method} case-insensitive: {e}"));
            // Tampered parameter, tampered signature, wrong secret, published invalid sig.
            let tampered = with(&signed, "text", "Test again!");
            for req in all_encodings(&tampered) {
                assert!(
                    matches!(good.verify(&req, &NO_CLOCK), Err(VerifyError::Mismatch)),
                    "{method}"
                );
            }
            let mut bad_sig = expected.to_owned();
            bad_sig.replace_range(0..1, if expected.starts_with('0') { "1" } else { "0" });
            assert!(matches!(
                good.verify(&get(&with(&params, "sig", &bad_sig)), &NO_CLOCK),
                Err(VerifyError::Mismatch)
            ));
            assert!(matches!(
                verifier("not-the-secret", Some(method)).verify(&get(&signed), &NO_CLOCK),
                Err(VerifyError::Mismatch)
            ));
            let invalid = case["invalid_sig"].as_str().expect("invalid");
            assert!(matches!(
                good.verify(&get(&with(&params, "sig", invalid)), &NO_CLOCK),
                Err(VerifyError::Mismatch)
            ));
        }
    }

    #[test]
    fn sms_signature_value_sanitisation_vector() {
        let v: Value = serde_json::from_str(SIG_VECTORS).expect("vectors");
        let case = &v["cases"][1];
        let good = verifier(
            case["signature_secret"].as_str().expect("s"),
            Some("md5hash"),
        );
        let expected = case["expected"].as_str().expect("sig");
        for variant in case["params_variants"].as_array().expect("variants") {
            let signed = with(&obj_params(variant), "sig", expected);
            for req in all_encodings(&signed) {
                good.verify(&req, &NO_CLOCK)
                    .expect("sanitised variant verifies");
            }
        }
        let other = vec![
            ("k".to_owned(), "x".to_owned()),
            ("sig".to_owned(), expected.to_owned()),
        ];
        assert!(matches!(
            good.verify(&get(&other), &NO_CLOCK),
            Err(VerifyError::Mismatch)
        ));
    }

    #[test]
    fn sms_signature_sdk_vector_and_timestamp_tolerance() {
        let v: Value = serde_json::from_str(SIG_VECTORS).expect("vectors");
        let case = &v["cases"][2];
        let params = obj_params(&case["params"]);
        let signed = with(&params, "sig", case["expected"].as_str().expect("sig"));
        let good = verifier(case["signature_secret"].as_str().expect("s"), None);
        good.verify(&get(&signed), &NO_CLOCK).expect("no clock");
        let near = VerifyOptions {
            now_secs: Some(1_461_605_396 + 60),
            tolerance_secs: None,
        };
        good.verify(&get(&signed), &near).expect("within tolerance");
        let far = VerifyOptions {
            now_secs: Some(1_461_605_396 + 3600),
            tolerance_secs: None,
        };
        assert!(matches!(
            good.verify(&get(&signed), &far),
            Err(VerifyError::Stale(_))
        ));
        assert!(matches!(
            verifier("wrong", None).verify(&get(&signed), &NO_CLOCK),
            Err(VerifyError::Mismatch)
        ));
        assert!(matches!(
            good.verify(&get(&with(&signed, "b", "3")), &NO_CLOCK),
            Err(VerifyError::Mismatch)
        ));
    }

    #[test]
    fn signed_request_without_timestamp_fails_only_with_a_clock() {
        let v: Value = serde_json::from_str(SIG_VECTORS).expect("vectors");
        let case = &v["cases"][1];
        let good = verifier("my_secret_key_for_testing", None);
        let signed = with(
            &obj_params(&case["params_variants"][0]),
            "sig",
            case["expected"].as_str().expect("s"),
        );
        good.verify(&get(&signed), &NO_CLOCK).expect("no clock");
        let clock = VerifyOptions {
            now_secs: Some(1_700_000_000),
            tolerance_secs: None,
        };
        assert!(matches!(
            good.verify(&get(&signed), &clock),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn signed_inbound_params_verify_as_query_form_and_json() {
        let secret = "my_secret_key_for_testing";
        let v: Value = serde_json::from_str(SIGNED_PARAMS).expect("fixture");
        let params = obj_params(&v);
        for method in [None, Some("md5hash")] {
            let good = verifier(secret, method);
            for req in all_encodings(&params) {
                good.verify(&req, &NO_CLOCK)
                    .expect("signed fixture verifies");
            }
            // The fixture file itself, verbatim, as a JSON body.
            let raw = CallbackRequest::post(SIGNED_PARAMS).with_content_type("application/json");
            good.verify(&raw, &NO_CLOCK).expect("verbatim JSON body");
            let tampered = CallbackRequest::post(SIGNED_PARAMS.replace("Test again", "Test agaim"))
                .with_content_type("application/json");
            assert!(matches!(
                good.verify(&tampered, &NO_CLOCK),
                Err(VerifyError::Mismatch)
            ));
            assert!(matches!(
                good.verify(
                    &get(&with(&params, "sig", "d2e7b1dc968737c5998ad624e02f90b8")),
                    &NO_CLOCK
                ),
                Err(VerifyError::Mismatch)
            ));
        }
        assert!(matches!(
            verifier("wrong_secret", None).verify(&get(&params), &NO_CLOCK),
            Err(VerifyError::Mismatch)
        ));
        // Stale with a clock: the fixture was signed in 2013.
        let clock = VerifyOptions {
            now_secs: Some(1_700_000_000),
            tolerance_secs: None,
        };
        assert!(matches!(
            verifier(secret, None).verify(&get(&params), &clock),
            Err(VerifyError::Stale(_))
        ));
        // Missing sig.
        let unsigned: Vec<_> = params.iter().filter(|(k, _)| k != "sig").cloned().collect();
        assert!(matches!(
            verifier(secret, None).verify(&get(&unsigned), &NO_CLOCK),
            Err(VerifyError::Missing(_))
        ));
        // A repeated parameter is rejected rather than guessed.
        let mut dup = params.clone();
        dup.push(("text".into(), "other".into()));
        assert!(matches!(
            verifier(secret, None).verify(&get(&dup), &NO_CLOCK),
            Err(VerifyError::Malformed(_))
        ));
        // Unreadable bodies.
        for req in [
            CallbackRequest::post("{\"a\":").with_content_type("application/json"),
            CallbackRequest::post("[]").with_content_type("application/json"),
            CallbackRequest::post("{\"sig\":{}}").with_content_type("application/json"),
            CallbackRequest::post(""),
        ] {
            assert!(matches!(
                verifier(secret, None).verify(&req, &NO_CLOCK),
                Err(VerifyError::Unreadable(_))
            ));
        }
    }

    // ---- Messages API JWT ----

    fn b64(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Signs `header.claims` (already base64url) with HS256: the test's own token minter.
    fn sign(h64: &str, c64: &str, secret: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(format!("{h64}.{c64}").as_bytes());
        format!("{h64}.{c64}.{}", b64(&mac.finalize().into_bytes()))
    }

    fn mint(claims: &Value, secret: &str) -> String {
        let h64 = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
        sign(&h64, &b64(claims.to_string().as_bytes()), secret)
    }

    fn bearer(body: &str, token: &str) -> CallbackRequest {
        let mut r = CallbackRequest::post(body.to_owned()).with_content_type("application/json");
        r.headers.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
        );
        r
    }

    #[test]
    fn jwt_vector_signature_verifies_and_tampering_fails() {
        let v: Value = serde_json::from_str(JWT_VECTOR).expect("vector");
        let jwt = v["jwt"].as_str().expect("jwt");
        let good = v["valid_signature_secret"].as_str().expect("secret");
        let bad = v["invalid_signature_secret"].as_str().expect("secret");
        // Vonage's published token verifies with the valid secret and yields its claims.
        let claims = verify_hs256(jwt, good.as_bytes()).expect("published token verifies");
        assert_eq!(Value::Object(claims), v["decoded_claims"]);
        assert!(matches!(
            verify_hs256(jwt, bad.as_bytes()),
            Err(VerifyError::Mismatch)
        ));
        // Our minter reproduces Vonage's signature bit for bit, so minted tokens below
        // exercise the same algorithm.
        let (signing_input, _) = jwt.rsplit_once('.').expect("three parts");
        let (h64, c64) = signing_input.split_once('.').expect("parts");
        assert_eq!(sign(h64, c64, good), jwt);
        // Tampered claims (same signature), tampered signature, alg swap.
        let mut claims = v["decoded_claims"].clone();
        claims["iat"] = json!(1_587_494_963);
        let forged = format!(
            "{h64}.{}.{}",
            b64(claims.to_string().as_bytes()),
            jwt.rsplit('.').next().expect("sig")
        );
        assert!(matches!(
            verify_hs256(&forged, good.as_bytes()),
            Err(VerifyError::Mismatch)
        ));
        let mut bad_sig = jwt.to_owned();
        let last = bad_sig.pop().expect("char");
        bad_sig.push(if last == 'A' { 'B' } else { 'A' });
        assert!(verify_hs256(&bad_sig, good.as_bytes()).is_err());
        let none = format!("{}.{c64}.", b64(br#"{"alg":"none"}"#));
        assert!(matches!(
            verify_hs256(&none, good.as_bytes()),
            Err(VerifyError::Malformed(_))
        ));
        assert!(matches!(
            verify_hs256("abc", good.as_bytes()),
            Err(VerifyError::Malformed(_))
        ));
        assert!(matches!(
            verify_hs256("a.b.c.d", good.as_bytes()),
            Err(VerifyError::Malformed(_))
        ));
        // The body behind payload_hash is not published: the full check of this token
        // against any body we can build must fail closed on the body binding.
        let ver = verifier(good, None);
        assert!(matches!(
            ver.verify(&bearer("{}", jwt), &NO_CLOCK),
            Err(VerifyError::Mismatch)
        ));
    }

    #[test]
    fn jwt_binds_the_body_and_checks_freshness() {
        let secret = "ZYtdTtGV3BCFN7tWmOWr1md66XsquMggr4W2cTtXtcPgfnI0Xw";
        let body = r#"{"message_uuid":"aaaaaaaa-bbbb-cccc-dddd-0123456789ab","status":"read"}"#;
        let hash = hex::encode(Sha256::digest(body.as_bytes()));
        let token = mint(
            &json!({"iat": 1_700_000_000, "iss": "Vonage", "payload_hash": hash}),
            secret,
        );
        for method in [None, Some("jwt")] {
            let ver = verifier(secret, method);
            ver.verify(&bearer(body, &token), &NO_CLOCK)
                .expect("minted token verifies");
            assert!(matches!(
                ver.verify(&bearer(&body.replace("read", "sent"), &token), &NO_CLOCK),
                Err(VerifyError::Mismatch)
            ));
            let fresh = VerifyOptions {
                now_secs: Some(1_700_000_100),
                tolerance_secs: None,
            };
            ver.verify(&bearer(body, &token), &fresh).expect("fresh");
            let stale = VerifyOptions {
                now_secs: Some(1_700_010_000),
                tolerance_secs: None,
            };
            assert!(matches!(
                ver.verify(&bearer(body, &token), &stale),
                Err(VerifyError::Stale(_))
            ));
        }
        assert!(matches!(
            verifier("another-secret", None).verify(&bearer(body, &token), &NO_CLOCK),
            Err(VerifyError::Mismatch)
        ));
        // No payload_hash while there is a body: rejected.
        let unbound = mint(&json!({"iat": 1_700_000_000}), secret);
        assert!(matches!(
            verifier(secret, None).verify(&bearer(body, &unbound), &NO_CLOCK),
            Err(VerifyError::Malformed(_))
        ));
        // No iat with a clock: rejected; expired: rejected.
        let no_iat = mint(&json!({"payload_hash": hash}), secret);
        let clock = VerifyOptions {
            now_secs: Some(1_700_000_000),
            tolerance_secs: None,
        };
        assert!(
            verifier(secret, None)
                .verify(&bearer(body, &no_iat), &clock)
                .is_err()
        );
        let expired = mint(
            &json!({"iat": 1_700_000_000, "exp": 1_699_999_990, "payload_hash": hash}),
            secret,
        );
        assert!(matches!(
            verifier(secret, None).verify(&bearer(body, &expired), &clock),
            Err(VerifyError::Stale(_))
        ));
        // signature_method jwt without the header: unsigned.
        let plain = CallbackRequest::post(body).with_content_type("application/json");
        assert!(matches!(
            verifier(secret, Some("jwt")).verify(&plain, &NO_CLOCK),
            Err(VerifyError::Missing(_))
        ));
        // An explicit sig method ignores the Bearer header and wants `sig`.
        assert!(matches!(
            verifier(secret, Some("sha256")).verify(&bearer(body, &token), &NO_CLOCK),
            Err(VerifyError::Missing(_))
        ));
        // Non-Bearer Authorization is not a token.
        let mut basic = plain.clone();
        basic.headers.insert(
            "authorization",
            HeaderValue::from_static("Basic dXNlcjpwYXNz"),
        );
        assert!(matches!(
            verifier(secret, Some("jwt")).verify(&basic, &NO_CLOCK),
            Err(VerifyError::Missing(_))
        ));
    }

    // ---- normalize ----

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
        for other in ["viber_service", "messenger", "rcs"] {
            let err = mk(other).expect_err("rejected");
            assert!(err.to_string().contains("channel"), "{err}");
        }
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
