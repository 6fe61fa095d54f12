//! Plivo messaging (SMS, MMS, WhatsApp): message status callbacks and inbound messages.
//!
//! # Callback format
//!
//! One message per request: form data (`application/x-www-form-urlencoded`) when the
//! callback method is `POST`, query parameters when it is `GET`.
//!
//! - **Status callback** (has `Status`): `MessageUUID`, `To` (the recipient,
//!   `channel_value`), `From`, `Type` (`sms` / `mms` → `sms`, `whatsapp` → `whatsapp`,
//!   anything else or absent → `sms`), `Status`, `ErrorCode` (failed / undelivered; an
//!   empty or all-zero code counts as absent), `Sequence`, and the times `MessageTime`,
//!   `QueuedTime`, `SentTime`, `DeliveryReportTime` (`YYYY-mm-dd HH:MM:SS[.ffffff]`, read
//!   as UTC). The event time is the first parseable of:
//!
//!   | status | times tried, in order |
//!   |---|---|
//!   | `delivered`, `seen`, `failed` | `DeliveryReportTime`, `SentTime`, `QueuedTime`, `MessageTime` |
//!   | `sent` | `SentTime`, `QueuedTime`, `MessageTime` |
//!   | `queued` | `QueuedTime`, `MessageTime` |
//!   | unknown (informational) | `DeliveryReportTime`, `SentTime`, `QueuedTime`, `MessageTime` |
//!
//!   and the time the callback was received when none is present.
//! - **Inbound message** (no `Status`, and `Text`, `Body`, `MediaCount` or `ContentType`
//!   present): `from` = `From` (`channel_value`), `to` = `To`, `text` = `Text` (SMS) or
//!   `Body` (MMS / WhatsApp). Media are the URLs in `Media<N>` (the docs number them from
//!   1, Plivo's support articles from 0: both are read) or `MediaUrl<N>`, in index order,
//!   with the WhatsApp `MimeType` as content type. Type: the WhatsApp `ContentType`
//!   (`text`; `media` → `image` / `audio` / `video` / `document` by `MimeType`; `button`;
//!   `unknown` or an unlisted value → `unsupported`); without it, media make
//!   `image`/`audio`/`video` by `MimeType`, or `document` when the type is not given (MMS),
//!   and otherwise `text`. Time: `MessageTime` if present, else the received time.
//! - **Phone numbers**: Plivo sends numbers without `+` (`14155551234`). To give E.164,
//!   the rule of all providers puts a `+` in front of every address of 7 to 15 digits, in
//!   `To` and `From` of both event kinds (shorter all-digit values are short codes and are
//!   left as they are; so are longer ones and alphanumeric sender ids). A `whatsapp:`
//!   prefix, should one appear, is stripped.
//! - **Correlation ids**: the query parameters of the callback URL (the `url` given when
//!   sending). For `GET` callbacks the query also holds Plivo's own parameters, whose names
//!   are PascalCase (plus `requester_ip`); there only the other names count.
//! - **Message id** (`vendor_ack_id`) of a status: `ParentMessageUUID`, else
//!   `MessageUUID`. Plivo splits a long SMS into parts and reports each part on its own,
//!   with its own `MessageUUID` and `PartInfo` (`1 of 2`, `2 of 2`); `ParentMessageUUID`
//!   is the same in every part and is the UUID of the first part, which is the one the
//!   send API returned (one `message_uuid` per destination). So every part's report is
//!   attributed to the message the sender knows; the part's own `MessageUUID` and
//!   `PartInfo` stay in `vendor_response`. (For a one-part message the two are equal.)
//!   An inbound message's id is its `MessageUUID` (Plivo delivers a long inbound SMS
//!   already joined).
//! - **Idempotency key**: (`MessageUUID`, `Status`, `Sequence`) for statuses, so each
//!   part's report is its own event; (`MessageUUID`, `inbound`) for inbound messages.
//! - **Raw event**: the form (or query) parameters as a JSON object.
//!
//! # Signature (V3)
//!
//! Headers `X-Plivo-Signature-V3` (one or more comma-separated base64 signatures, one per
//! active auth token; any match passes) and `X-Plivo-Signature-V3-Nonce`. The signature is
//! base64(HMAC-SHA256(`auth_token`, S + `.` + nonce)) where, with *base* =
//! `scheme://authority/path` of the URL Plivo called (no query, no fragment):
//!
//! - `GET`: S = base, then `?` and every query parameter sorted by name (values of a
//!   repeated name sorted) as `name=value` joined by `&`, when there are any;
//! - `POST`: S = base, then `?` + the sorted URL query (as for `GET`) when the URL has a
//!   query, then `.` when there are both query and body parameters (or just `?` when only
//!   body parameters exist), then the body parameters sorted by name as `namevalue` with no
//!   separators.
//!
//! Values are the percent-decoded parameters. Comparison is constant-time. Plivo signs no
//! timestamp, so there is no freshness check (the nonce and the idempotency key are the
//! only replay hooks). The legacy V2 scheme (URL and nonce only, parameters unsigned) is not
//! accepted.
//!
//! # Verify keys
//!
//! | key | required | meaning |
//! |---|---|---|
//! | `auth_token` | yes | the (sub)account Auth Token (the HMAC key) |
//! | `public_url` | no | the public URL Plivo calls; as for Twilio: its scheme, host and path with the request's own query (or `public_url`'s when the request has none). Without it the request target must be an absolute URL, else verification fails with "plivo needs verify.public_url". |
//!
//! # Status mapping
//!
//! | Plivo `Status` | status |
//! |---|---|
//! | `queued` | `queued` |
//! | `sent` | `sent` |
//! | `delivered` | `delivered` |
//! | `read` (WhatsApp) | `seen` |
//! | `failed`, `undelivered`, `rejected` | `failed` |
//! | anything else | `queued`, informational |
//!
//! Unknown values never fail a callback: they map to `queued` marked informational, with
//! Plivo's parameters kept in `vendor_response`.

use std::collections::BTreeMap;

use http::Method;
use serde_json::{Map, Value};

use crate::event::ChannelUser;
use crate::event::{
    Channel, ErrorInfo, Event, EventKind, InboundMessage, Media, Status, StatusUpdate,
    idempotency_key,
};
use crate::mac::{self, Hash};
use crate::phone::e164_of_channel_address;
use crate::provider::signed_form::{
    ReadParams, callback_url, media_kind, parse_public_url, read_form_params,
};
use crate::provider::{Context, Normalized, VerifyOptions, VerifySettings};
use crate::request::{pairs_to_json, param, param_nonempty, parse_form};
use crate::timestamp::parse_str_ms;
use crate::{CallbackRequest, NormalizeError, Secret, VerifyConfigError, VerifyError};

const PROVIDER: &str = "plivo";
const KNOWN_KEYS: &[&str] = &["auth_token", "public_url"];
/// Inbound message types passed through from a WhatsApp `ContentType`.
const KNOWN_TYPES: &[&str] = &[
    "text",
    "image",
    "audio",
    "video",
    "document",
    "sticker",
    "location",
    "button",
    "interactive",
    "reaction",
    "contacts",
];

/// Checks the Plivo V3 signature (`X-Plivo-Signature-V3`, HMAC-SHA256 with a nonce).
#[derive(Debug, Clone)]
pub struct Verifier {
    auth_token: Secret,
    public_url: Option<String>,
}

impl Verifier {
    /// Builds the verifier from the `verify:` settings: `auth_token` (required),
    /// `public_url` (optional, an absolute `http(s)://` URL).
    pub fn from_settings(settings: &VerifySettings) -> Result<Self, VerifyConfigError> {
        settings.only(PROVIDER, KNOWN_KEYS)?;
        let auth_token = settings.require(PROVIDER, "auth_token")?.clone();
        let public_url = settings
            .get("public_url")
            .map(|u| parse_public_url(PROVIDER, u.expose()))
            .transpose()?;
        Ok(Self {
            auth_token,
            public_url,
        })
    }

    /// Checks the V3 signature on the raw URL and body. No clock check: Plivo signs no
    /// timestamp.
    pub fn verify(&self, req: &CallbackRequest, _opts: &VerifyOptions) -> Result<(), VerifyError> {
        let signatures = header(req, "x-plivo-signature-v3", "X-Plivo-Signature-V3 header")?;
        let nonce = header(
            req,
            "x-plivo-signature-v3-nonce",
            "X-Plivo-Signature-V3-Nonce header",
        )?;
        let target = callback_url(PROVIDER, self.public_url.as_deref(), req)?;
        let (url, query) = match target.url.split_once('?') {
            Some((u, q)) => (u, parse_form(q)),
            None => (target.url.as_str(), Vec::new()),
        };
        let base = base_url(url);
        let signed = if req.method == Method::GET || req.method == Method::HEAD {
            get_string(&base, &query)
        } else {
            post_string(&base, &query, &req.form_pairs())
        };
        let tag = mac::hmac(
            Hash::Sha256,
            self.auth_token.expose().as_bytes(),
            &[signed.as_bytes(), b".", nonce.as_bytes()],
        );
        // Every candidate is compared (no early exit on the first match).
        let mut ok = false;
        for candidate in signatures.split(',') {
            ok |= tag.matches_base64(candidate.trim());
        }
        if ok {
            Ok(())
        } else {
            Err(VerifyError::Mismatch)
        }
    }
}

fn header<'a>(
    req: &'a CallbackRequest,
    name: &str,
    label: &'static str,
) -> Result<&'a str, VerifyError> {
    let value = req
        .headers
        .get(name)
        .ok_or(VerifyError::Missing(label))?
        .to_str()
        .map_err(|_| VerifyError::Malformed(format!("{label} is not visible ASCII")))?
        .trim();
    if value.is_empty() {
        return Err(VerifyError::Missing(label));
    }
    Ok(value)
}

/// `scheme://authority/path` as Plivo signs it: lower-case scheme, no `;params` on the
/// last path segment, no query or fragment.
fn base_url(url: &str) -> String {
    let url = url.split('#').next().unwrap_or(url);
    let url = url.split('?').next().unwrap_or(url);
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => return url.to_owned(),
    };
    let rest = match rest.rfind('/') {
        Some(slash) => match rest.get(slash..).and_then(|seg| seg.find(';')) {
            Some(semi) => rest.get(..slash + semi).unwrap_or(rest),
            None => rest,
        },
        None => rest,
    };
    format!("{scheme}://{rest}")
}

/// Parameters grouped by name (sorted), values of each name sorted.
fn grouped(pairs: &[(String, String)]) -> BTreeMap<&str, Vec<&str>> {
    let mut map: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in pairs {
        map.entry(k.as_str()).or_default().push(v.as_str());
    }
    for values in map.values_mut() {
        values.sort_unstable();
    }
    map
}

/// `name=value&…` sorted.
fn sorted_query(pairs: &[(String, String)]) -> String {
    let mut out = String::new();
    for (k, values) in grouped(pairs) {
        for v in values {
            if !out.is_empty() {
                out.push('&');
            }
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        }
    }
    out
}

/// The signed string of a `GET` callback.
fn get_string(base: &str, query: &[(String, String)]) -> String {
    let q = sorted_query(query);
    if q.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{q}")
    }
}

/// The signed string of a `POST` callback.
fn post_string(base: &str, query: &[(String, String)], body: &[(String, String)]) -> String {
    let q = sorted_query(query);
    let mut out = base.to_owned();
    if !q.is_empty() || !body.is_empty() {
        out.push('?');
        out.push_str(&q);
    }
    if !q.is_empty() && !body.is_empty() {
        out.push('.');
    }
    for (k, values) in grouped(body) {
        for v in values {
            out.push_str(k);
            out.push_str(v);
        }
    }
    out
}

/// Normalizes one Plivo callback (status callback or inbound message) into one event.
pub fn normalize(req: &CallbackRequest, ctx: &Context) -> Result<Normalized, NormalizeError> {
    let (params, correlation) = read_params(req)?;
    let event = to_event(&params, correlation, ctx)?;
    Ok(Normalized::events(vec![event]))
}

fn read_params(req: &CallbackRequest) -> Result<ReadParams, NormalizeError> {
    read_form_params(
        req,
        PROVIDER,
        |k| k == "requester_ip",
        "form-encoded parameters (Plivo sends form data)",
    )
}

/// The first parseable time among `names`.
fn first_time(params: &[(String, String)], names: &[&str]) -> Option<i64> {
    names
        .iter()
        .find_map(|n| param_nonempty(params, n).and_then(parse_str_ms))
}

fn to_event(
    params: &[(String, String)],
    correlation: Map<String, Value>,
    ctx: &Context,
) -> Result<Event, NormalizeError> {
    let uuid = param_nonempty(params, "MessageUUID")
        .map(str::trim)
        .ok_or_else(|| NormalizeError::MissingField("MessageUUID".into()))?;
    let channel = match param(params, "Type").map(|t| t.trim().to_ascii_lowercase()) {
        Some(t) if t == "whatsapp" => Channel::Whatsapp,
        _ => Channel::Sms,
    };
    let raw = pairs_to_json(params);

    if let Some(status_value) = param_nonempty(params, "Status").map(str::trim) {
        let (status, informational) = map_status(status_value);
        let to = param_nonempty(params, "To")
            .ok_or_else(|| NormalizeError::MissingField("To".into()))?;
        let code = param_nonempty(params, "ErrorCode")
            .map(str::trim)
            .filter(|c| !c.bytes().all(|b| b == b'0'))
            .map(str::to_owned);
        let times: &[&str] = match (status, informational) {
            (Status::Queued, false) => &["QueuedTime", "MessageTime"],
            (Status::Sent, _) => &["SentTime", "QueuedTime", "MessageTime"],
            _ => &[
                "DeliveryReportTime",
                "SentTime",
                "QueuedTime",
                "MessageTime",
            ],
        };
        let timestamp_ms = first_time(params, times).unwrap_or(ctx.received_at_ms);
        let sequence = param(params, "Sequence").map_or("", str::trim);
        let message = param_nonempty(params, "ParentMessageUUID").map_or(uuid, str::trim);
        return Ok(Event {
            channel,
            channel_value: e164_of_channel_address(to),
            channel_user: ChannelUser::default(),
            vendor_name: PROVIDER.to_owned(),
            vendor_ack_id: Some(message.to_owned()),
            idempotency_key: idempotency_key(PROVIDER, &[uuid, status_value, sequence]),
            correlation,
            kind: EventKind::Status(StatusUpdate {
                status,
                timestamp_ms,
                error: ErrorInfo::from_parts(code, None),
                informational,
            }),
            raw: raw.into(),
        });
    }

    let inbound = ["Text", "Body", "MediaCount", "ContentType"]
        .iter()
        .any(|n| param(params, n).is_some());
    if !inbound {
        return Err(NormalizeError::MissingField("Status".into()));
    }
    let from = e164_of_channel_address(
        param_nonempty(params, "From")
            .ok_or_else(|| NormalizeError::MissingField("From".into()))?,
    );
    let to = param(params, "To")
        .map(e164_of_channel_address)
        .unwrap_or_default();
    let text = param_nonempty(params, "Text")
        .or_else(|| param_nonempty(params, "Body"))
        .map(str::to_owned);
    let mime = param_nonempty(params, "MimeType").map(|m| m.trim().to_owned());
    let media = media_of(params, mime.as_deref());
    let content_type = param_nonempty(params, "ContentType").map(|c| c.trim().to_ascii_lowercase());
    let message_type = match content_type.as_deref() {
        Some("media") => mime.as_deref().map_or("document", |m| media_kind(Some(m))),
        Some("unknown") => "unsupported",
        Some(t) => KNOWN_TYPES
            .iter()
            .find(|k| **k == t)
            .copied()
            .unwrap_or("unsupported"),
        None if !media.is_empty() => mime.as_deref().map_or("document", |m| media_kind(Some(m))),
        None => "text",
    };
    Ok(Event {
        channel,
        channel_value: from.clone(),
        channel_user: ChannelUser::default(),
        vendor_name: PROVIDER.to_owned(),
        vendor_ack_id: Some(uuid.to_owned()),
        idempotency_key: idempotency_key(PROVIDER, &[uuid, "inbound"]),
        correlation,
        kind: EventKind::Inbound(InboundMessage {
            from,
            to,
            message_type: message_type.to_owned(),
            text,
            media,
            location: None,
            context: None,
            timestamp_ms: first_time(params, &["MessageTime"]).unwrap_or(ctx.received_at_ms),
            source_message_id: uuid.to_owned(),
            original_message_id: None,
        }),
        raw: raw.into(),
    })
}

/// Media URLs from `Media<N>` / `MediaUrl<N>` parameters, in index order, each URL once.
fn media_of(params: &[(String, String)], mime: Option<&str>) -> Vec<Media> {
    let mut indexed: Vec<(u64, &str)> = params
        .iter()
        .filter_map(|(k, v)| {
            let digits = k
                .strip_prefix("MediaUrl")
                .or_else(|| k.strip_prefix("Media"))?;
            if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            let v = v.trim();
            (!v.is_empty()).then_some((digits.parse().ok()?, v))
        })
        .collect();
    indexed.sort_by_key(|(i, _)| *i);
    let mut media: Vec<Media> = Vec::new();
    for (_, url) in indexed {
        if !media.iter().any(|m| m.url == url) {
            media.push(Media::at(url, mime.map(str::to_owned)));
        }
    }
    media
}

/// Maps a Plivo `Status` to a status and the informational flag (see the table in the
/// module docs).
#[must_use]
pub fn map_status(value: &str) -> (Status, bool) {
    match value.trim().to_ascii_lowercase().as_str() {
        "queued" => (Status::Queued, false),
        "sent" => (Status::Sent, false),
        "delivered" => (Status::Delivered, false),
        "read" => (Status::Seen, false),
        "failed" | "undelivered" | "rejected" => (Status::Failed, false),
        _ => (Status::Queued, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::signed_form::FORM;
    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue, Uri};
    use serde_json::json;

    /// Copied from /work/shared/fixtures/plivo/signature_vectors.json. The V3 cases are
    /// Plivo's own test vectors: GitHub plivo/plivo-go `utils_test.go`
    /// `TestValidateSignatureV3Pass1..4` (commit bb6d824e04c9b585a51d2107b2d4df1f3c7b6f0c,
    /// read with the search tool; same auth token, nonce, params and signatures). Plivo's
    /// Python tests (`plivo/plivo-python` `tests/resources/test_signature.py`) only hold V2
    /// vectors, which this module does not accept (V2 leaves the parameters unsigned).
    const VECTORS: &str = include_str!("../../tests/fixtures/plivo/signature_vectors.json");

    fn ctx() -> Context {
        Context {
            received_at_ms: 1_700_000_000_000,
        }
    }

    fn verifier(token: &str, public_url: Option<&str>) -> Verifier {
        let mut s = VerifySettings::new().with("auth_token", token);
        if let Some(u) = public_url {
            s.insert("public_url", u);
        }
        Verifier::from_settings(&s).expect("verifier")
    }

    fn encode(pairs: &[(String, String)]) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            s.append_pair(k, v);
        }
        s.finish()
    }

    struct Vectors {
        token: String,
        nonce: String,
        params: Vec<(String, String)>,
        cases: Vec<(String, String, String)>,
    }

    fn vectors() -> Vectors {
        let v: Value = serde_json::from_str(VECTORS).expect("vectors");
        let v3 = &v["v3"];
        Vectors {
            token: v3["auth_token"].as_str().expect("token").to_owned(),
            nonce: v3["nonce"].as_str().expect("nonce").to_owned(),
            params: v3["params"]
                .as_object()
                .expect("params")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().expect("str").to_owned()))
                .collect(),
            cases: v3["cases"]
                .as_array()
                .expect("cases")
                .iter()
                .map(|c| {
                    assert_eq!(c["valid"], true);
                    (
                        c["method"].as_str().expect("m").to_owned(),
                        c["url"].as_str().expect("u").to_owned(),
                        c["signature"].as_str().expect("s").to_owned(),
                    )
                })
                .collect(),
        }
    }

    /// The request Plivo makes for a vector: GET puts the params in the query, POST in
    /// the form body.
    fn vector_request(
        method: &str,
        url: &str,
        params: &[(String, String)],
        sig: &str,
        nonce: &str,
    ) -> CallbackRequest {
        let (uri, body) = if method == "GET" {
            let sep = if url.contains('?') { '&' } else { '?' };
            (format!("{url}{sep}{}", encode(params)), String::new())
        } else {
            (url.to_owned(), encode(params))
        };
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static(FORM));
        headers.insert(
            "x-plivo-signature-v3",
            HeaderValue::from_str(sig).expect("sig"),
        );
        headers.insert(
            "x-plivo-signature-v3-nonce",
            HeaderValue::from_str(nonce).expect("nonce"),
        );
        CallbackRequest {
            method: method.parse().expect("method"),
            uri: uri.parse::<Uri>().expect("uri"),
            headers,
            body: Bytes::from(body),
        }
    }

    #[test]
    fn official_v3_vectors() {
        let v = vectors();
        assert_eq!(v.cases.len(), 4);
        let opts = VerifyOptions::default();
        for (method, url, sig) in &v.cases {
            let r = vector_request(method, url, &v.params, sig, &v.nonce);
            verifier(&v.token, None)
                .verify(&r, &opts)
                .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
            // Several signatures (token rotation): any match passes.
            let r = vector_request(
                method,
                url,
                &v.params,
                &format!("bm90IGl0=, {sig}"),
                &v.nonce,
            );
            verifier(&v.token, None)
                .verify(&r, &opts)
                .expect("rotation");
            // Relative target with public_url.
            let mut r = vector_request(method, url, &v.params, sig, &v.nonce);
            let public = url.split_once('?').map_or(url.as_str(), |(b, _)| b);
            let pq = r.uri.path_and_query().expect("pq").as_str().to_owned();
            r.uri = pq.parse().expect("relative");
            verifier(&v.token, Some(public))
                .verify(&r, &opts)
                .unwrap_or_else(|e| panic!("{method} {url} (public_url): {e}"));
        }
    }

    #[test]
    fn tampered_v3_vectors_fail() {
        let v = vectors();
        let opts = VerifyOptions::default();
        for (method, url, sig) in &v.cases {
            // Tampered parameter.
            let mut params = v.params.clone();
            params[0].1.push('x');
            let r = vector_request(method, url, &params, sig, &v.nonce);
            assert!(
                verifier(&v.token, None).verify(&r, &opts).is_err(),
                "{method} {url} params"
            );
            // Tampered URL.
            let r = vector_request(
                method,
                &url.replace("signature03", "signature04"),
                &v.params,
                sig,
                &v.nonce,
            );
            assert!(
                verifier(&v.token, None).verify(&r, &opts).is_err(),
                "{method} {url} url"
            );
            // Tampered nonce.
            let r = vector_request(method, url, &v.params, sig, "31627761595286130199");
            assert!(
                verifier(&v.token, None).verify(&r, &opts).is_err(),
                "{method} {url} nonce"
            );
            // Tampered signature.
            let bad = sig.replacen(|c: char| c.is_ascii_alphabetic(), "Z", 1);
            let bad = if bad == *sig {
                sig.replacen('Z', "Y", 1)
            } else {
                bad
            };
            let r = vector_request(method, url, &v.params, &bad, &v.nonce);
            assert!(
                matches!(
                    verifier(&v.token, None).verify(&r, &opts),
                    Err(VerifyError::Mismatch)
                ),
                "{method} {url} sig"
            );
            // Wrong secret.
            let r = vector_request(method, url, &v.params, sig, &v.nonce);
            assert!(
                verifier("wrong", None).verify(&r, &opts).is_err(),
                "{method} {url} secret"
            );
        }
    }

    #[test]
    fn signed_strings_follow_plivos_construction() {
        let q = vec![
            ("c".to_owned(), "d".to_owned()),
            ("a".to_owned(), "b".to_owned()),
        ];
        let body = vec![
            ("Z".to_owned(), "1".to_owned()),
            ("B".to_owned(), "2".to_owned()),
        ];
        assert_eq!(get_string("https://h/p", &[]), "https://h/p");
        assert_eq!(get_string("https://h/p", &q), "https://h/p?a=b&c=d");
        assert_eq!(post_string("https://h/p", &[], &[]), "https://h/p");
        assert_eq!(post_string("https://h/p", &q, &[]), "https://h/p?a=b&c=d");
        assert_eq!(post_string("https://h/p", &[], &body), "https://h/p?B2Z1");
        assert_eq!(
            post_string("https://h/p", &q, &body),
            "https://h/p?a=b&c=d.B2Z1"
        );
        assert_eq!(base_url("HTTPS://h/a;x/b;y?q#f"), "https://h/a;x/b");
        assert_eq!(base_url("https://é/ü"), "https://é/ü");
    }

    #[test]
    fn missing_headers_and_relative_uri() {
        let v = vectors();
        let (method, url, sig) = &v.cases[0];
        let mut r = vector_request(method, url, &v.params, sig, &v.nonce);
        r.headers.remove("x-plivo-signature-v3");
        assert!(matches!(
            verifier(&v.token, None).verify(&r, &VerifyOptions::default()),
            Err(VerifyError::Missing(_))
        ));
        let mut r = vector_request(method, url, &v.params, sig, &v.nonce);
        r.headers.remove("x-plivo-signature-v3-nonce");
        assert!(matches!(
            verifier(&v.token, None).verify(&r, &VerifyOptions::default()),
            Err(VerifyError::Missing(_))
        ));
        let mut r = vector_request(method, url, &v.params, sig, &v.nonce);
        r.uri = Uri::from_static("/cb");
        let e = verifier(&v.token, None)
            .verify(&r, &VerifyOptions::default())
            .expect_err("relative");
        assert!(
            e.to_string().contains("plivo needs verify.public_url"),
            "{e}"
        );
    }

    #[test]
    fn settings_fail_closed() {
        assert!(Verifier::from_settings(&VerifySettings::new()).is_err());
        assert!(Verifier::from_settings(&VerifySettings::new().with("auth_token", "")).is_err());
        assert!(
            Verifier::from_settings(
                &VerifySettings::new()
                    .with("auth_token", "t")
                    .with("auth_id", "x")
            )
            .is_err()
        );
        assert!(
            Verifier::from_settings(
                &VerifySettings::new()
                    .with("auth_token", "t")
                    .with("public_url", "/cb")
            )
            .is_err()
        );
        let v = verifier("hunter2", None);
        assert!(!format!("{v:?}").contains("hunter2"));
    }

    #[test]
    fn status_mapping() {
        for (v, s, info) in [
            ("queued", Status::Queued, false),
            ("sent", Status::Sent, false),
            ("delivered", Status::Delivered, false),
            ("read", Status::Seen, false),
            ("failed", Status::Failed, false),
            ("undelivered", Status::Failed, false),
            ("rejected", Status::Failed, false),
            ("Delivered", Status::Delivered, false),
            ("exploded", Status::Queued, true),
        ] {
            assert_eq!(map_status(v), (s, info), "{v}");
        }
    }

    fn form(body: &str) -> CallbackRequest {
        CallbackRequest::post(body.to_owned()).with_content_type(FORM)
    }

    fn one(req: &CallbackRequest) -> Event {
        let out = normalize(req, &ctx()).expect("normalize");
        assert_eq!(out.events.len(), 1);
        out.events.into_iter().next().expect("event")
    }

    #[test]
    fn status_details() {
        let body = "MessageUUID=u-1&To=14155551234&From=14155550000&Type=sms&Status=delivered&Sequence=2\
            &MessageTime=2024-01-02+03%3A04%3A00&SentTime=2024-01-02+03%3A04%3A05.123456\
            &DeliveryReportTime=2024-01-02+03%3A04%3A09.500000&ErrorCode=";
        let mut r = form(body);
        r.uri = "/cb/plivo?distinct_id=u1".parse().expect("uri");
        let e = one(&r);
        let s = e.status().expect("status");
        assert_eq!(s.status, Status::Delivered);
        assert_eq!(s.timestamp_ms, 1_704_164_649_500);
        assert_eq!(s.error, None);
        assert_eq!(e.channel_value, "+14155551234");
        assert_eq!(e.channel, Channel::Sms);
        assert_eq!(
            e.correlation,
            json!({"distinct_id": "u1"})
                .as_object()
                .cloned()
                .expect("obj")
        );
        assert_eq!(
            e.idempotency_key,
            idempotency_key("plivo", &["u-1", "delivered", "2"])
        );

        let e = one(&form(
            "MessageUUID=u-1&To=14155551234&Status=sent&SentTime=2024-01-02+03%3A04%3A05&DeliveryReportTime=2024-01-02+03%3A05%3A00",
        ));
        assert_eq!(e.timestamp_ms(), 1_704_164_645_000);
        let e = one(&form(
            "MessageUUID=u-1&To=14155551234&Status=undelivered&ErrorCode=50",
        ));
        let s = e.status().expect("status");
        assert_eq!(
            (s.status, s.timestamp_ms),
            (Status::Failed, 1_700_000_000_000)
        );
        assert_eq!(s.error.as_ref().and_then(|e| e.code.as_deref()), Some("50"));
        let e = one(&form(
            "MessageUUID=u-1&To=14155551234&Status=read&Type=whatsapp",
        ));
        assert_eq!(
            (e.channel, e.status().map(|s| s.status)),
            (Channel::Whatsapp, Some(Status::Seen))
        );
        let e = one(&form(
            "MessageUUID=u-1&To=14155551234&Status=weird&Type=mms",
        ));
        let s = e.status().expect("status");
        assert!(s.informational && s.status == Status::Queued && e.channel == Channel::Sms);
    }

    #[test]
    fn every_part_of_a_split_sms_is_reported_under_the_first_parts_uuid() {
        let part = |n: u8| {
            let body = match n {
                1 => include_str!(
                    "../../tests/golden/plivo/sms_status_two_part_part1_delivered.body"
                ),
                _ => include_str!(
                    "../../tests/golden/plivo/sms_status_two_part_part2_delivered.body"
                ),
            };
            one(&form(body))
        };
        let (first, second) = (part(1), part(2));
        let parent = "7c1f3a52-a7b6-11ee-9b1e-0242ac110002";
        assert_eq!(first.vendor_ack_id.as_deref(), Some(parent));
        assert_eq!(second.vendor_ack_id.as_deref(), Some(parent));
        assert_eq!(
            second.raw.to_value()["MessageUUID"],
            "7c1f4b9e-a7b6-11ee-9b1e-0242ac110002"
        );
        assert_eq!(second.raw.to_value()["PartInfo"], "2 of 2");
        // Two reports, two events: neither is taken for a retry of the other.
        assert_ne!(first.idempotency_key, second.idempotency_key);
        for e in [&first, &second] {
            assert_eq!(e.status().map(|s| s.status), Some(Status::Delivered));
        }
        // Without a ParentMessageUUID (or an empty one), the message is the MessageUUID.
        for extra in ["", "&ParentMessageUUID=", "&ParentMessageUUID=+"] {
            let e = one(&form(&format!(
                "MessageUUID=m-1&Status=sent&To=14155551234{extra}"
            )));
            assert_eq!(e.vendor_ack_id.as_deref(), Some("m-1"), "{extra:?}");
        }
        // Inbound messages keep their own MessageUUID.
        let e = one(&form(
            "MessageUUID=in-1&ParentMessageUUID=p-1&From=14155551234&To=14155550000&Text=hi",
        ));
        assert_eq!(e.vendor_ack_id.as_deref(), Some("in-1"));
    }

    #[test]
    fn inbound_details() {
        let e = one(&form(
            "MessageUUID=u-2&From=919999999999&To=14155550000&Type=sms&Text=na%C3%AFve+%F0%9F%91%8B",
        ));
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound")
        };
        assert_eq!(m.text.as_deref(), Some("naïve 👋"));
        assert_eq!(
            (m.from.as_str(), m.to.as_str()),
            ("+919999999999", "+14155550000")
        );
        assert_eq!(e.channel_value, "+919999999999");
        assert_eq!(m.message_type, "text");
        let e = one(&form(
            "MessageUUID=u-3&From=14155551234&To=55555&Type=mms&Body=&MediaCount=2&Media1=https%3A%2F%2Fm%2F1&Media2=https%3A%2F%2Fm%2F2",
        ));
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound")
        };
        assert_eq!(m.to, "55555");
        assert_eq!(m.message_type, "document");
        assert_eq!(
            m.media.iter().map(|m| m.url.as_str()).collect::<Vec<_>>(),
            ["https://m/1", "https://m/2"]
        );
        let e = one(&form(
            "MessageUUID=u-4&From=14155551234&To=14155550000&Type=whatsapp&ContentType=media&MimeType=video%2Fmp4&Media0=https%3A%2F%2Fm%2F0",
        ));
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound")
        };
        assert_eq!(
            (m.message_type.as_str(), e.channel),
            ("video", Channel::Whatsapp)
        );
        assert_eq!(m.media[0].content_type.as_deref(), Some("video/mp4"));
        let e = one(&form(
            "MessageUUID=u-5&From=14155551234&Type=whatsapp&ContentType=unknown&Body=",
        ));
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound")
        };
        assert_eq!(m.message_type, "unsupported");
    }

    #[test]
    fn get_status_reads_the_query() {
        let r = CallbackRequest {
            method: Method::GET,
            uri: "/cb?workflow_name=w&MessageUUID=u-9&To=14155551234&Status=queued&requester_ip=1.2.3.4&QueuedTime=2024-01-02+03%3A04%3A05"
                .parse()
                .expect("uri"),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        };
        let e = one(&r);
        assert_eq!(
            e.correlation,
            json!({"workflow_name": "w"})
                .as_object()
                .cloned()
                .expect("obj")
        );
        assert_eq!(e.timestamp_ms(), 1_704_164_645_000);
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let cases: Vec<CallbackRequest> = vec![
            form(""),
            form(" \n"),
            CallbackRequest::post("{\"MessageUUID\":\"u\"}").with_content_type("application/json"),
            CallbackRequest::post("{\"MessageUUID\":"),
            CallbackRequest::post("[1]"),
            form("Status=sent&To=1"),
            form("MessageUUID=u&To=1"),
            form("MessageUUID=u&Status=sent"),
            form("MessageUUID=u&Text=hi"),
            form("=&=&%ZZ"),
            CallbackRequest::post("a=1").with_content_type("multipart/form-data"),
        ];
        for r in &cases {
            assert!(normalize(r, &ctx()).is_err(), "{:?}", r.body);
        }
        let mut del = form("MessageUUID=u&Status=sent&To=1");
        del.method = Method::DELETE;
        assert!(normalize(&del, &ctx()).is_err());
    }

    #[test]
    fn garbage_is_rejected_quickly() {
        let mut junk = Vec::with_capacity(10 << 20);
        let mut x: u32 = 11;
        while junk.len() < 10 << 20 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            junk.push((x >> 16) as u8);
        }
        let started = std::time::Instant::now();
        let mut r = CallbackRequest::post(junk).with_content_type(FORM);
        assert!(normalize(&r, &ctx()).is_err());
        r.uri = "https://x.example/cb".parse().expect("uri");
        r.headers
            .insert("x-plivo-signature-v3", HeaderValue::from_static("abc="));
        r.headers
            .insert("x-plivo-signature-v3-nonce", HeaderValue::from_static("1"));
        assert!(
            verifier("tok", None)
                .verify(&r, &VerifyOptions::default())
                .is_err()
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }
}
