//! Twilio Programmable Messaging: SMS and WhatsApp status callbacks and inbound messages.
//!
//! # Callback format
//!
//! One message per request, `application/x-www-form-urlencoded` `POST` (an inbound-message
//! webhook may also be configured as `GET`, with the same parameters in the query string).
//! Twilio's JSON-bodied callbacks (other products) are rejected by [`normalize`] with a
//! content-type error.
//!
//! - **Status callback**: `MessageStatus` (and its legacy twin `SmsStatus`) holds a status
//!   other than `received`. The event is a status of the message `MessageSid` (or `SmsSid`)
//!   sent to `To` (`channel_value`). Time: the time the callback was received. Twilio
//!   sends no event time: no timestamp parameter and no timestamp header. Its
//!   `RawDlrDoneDate` (`YYMMDDhhmm`, on `delivered` and `undelivered` SMS/MMS statuses
//!   only) is the carrier's delivery-receipt "done date" passed through: minute
//!   precision and **no time zone** (Twilio: "the timezone offset varies between carrier
//!   partners and even within the same carrier"). Read as UTC it can put a `delivered`
//!   hours before its own `sent`, so it never becomes the status time; it stays, as sent,
//!   in `vendor_response`.
//!   Error: `ErrorCode` (an empty value or `0` counts as absent) and `ErrorMessage` when
//!   present, on any status.
//! - **Inbound message**: `SmsStatus=received` (or no status but a `Body` / `NumMedia`
//!   parameter). `from` = `From`, `to` = `To`, `channel_value` = `from`. Type: `location`
//!   when `Latitude`/`Longitude` parse (with `Label` and `Address`), else `image` / `audio`
//!   / `video` / `document` by `MediaContentType0` when `NumMedia` > 0 (media are
//!   `MediaUrl{N}` / `MediaContentType{N}`), else `button` when `ButtonPayload` or
//!   `ButtonText` is set, else `text`. `text` = `Body` when non-empty (for buttons, else
//!   `ButtonText`). A reply carries `context` from `OriginalRepliedMessageSid` /
//!   `OriginalRepliedMessageSender`. Time: the time the callback was received.
//! - **Channel**: `whatsapp` when `From` or `To` starts with `whatsapp:` (or
//!   `ChannelPrefix=whatsapp`), else `sms`. The `whatsapp:` prefix is stripped from every
//!   address, which then follows the E.164 rule of all providers (Twilio already sends the
//!   `+`; 7 to 15 digits without it get one, anything else is kept as sent).
//! - **WhatsApp usernames**: for a user who adopted a WhatsApp username and withholds their
//!   number, Twilio writes the user's business-scoped user id (BSUID) where the number
//!   would be (`From=whatsapp:US.13491208655302741918`; `To` of a status), and sends it as
//!   `ExternalUserId` (with its `whatsapp:` prefix) whether or not the number is known, and
//!   a parent BSUID as `ParentExternalUserId`. The address (`channel_value`, `from`) is then
//!   the BSUID, unprefixed and without a `+`; the BSUID and parent BSUID go to
//!   `channel_user_id` and `channel_parent_user_id` (from those parameters, else from the
//!   address when it is a BSUID). A callback without `From` takes its sender from
//!   `ExternalUserId`. Read on WhatsApp only.
//! - **Correlation ids**: the query parameters of the callback URL (the sending application
//!   attaches them to the `StatusCallback` URL, e.g. `?distinct_id=u1&workflow_name=w`),
//!   except `bodySHA256`. For a `GET` callback the query also holds Twilio's own parameters,
//!   whose names are all PascalCase; there only names that do not start with an ASCII
//!   capital letter count as correlation ids.
//! - **Idempotency key**: (`MessageSid`, `MessageStatus`) for statuses, stable across
//!   retries; (`MessageSid`, `inbound`) for inbound messages.
//! - **Raw event**: the form (or, for `GET`, query) parameters as a JSON object.
//!
//! # Signature
//!
//! `X-Twilio-Signature` = base64(HMAC-SHA1(`auth_token`, URL + Σ name+value)), where the
//! URL is the one Twilio called (scheme, user info, host, path and query, exactly as sent)
//! and the sum runs over the `POST` form parameters sorted by name, then value (identical
//! pairs counted once). For `GET`, the parameters are in the URL and nothing is appended.
//! When the URL carries `bodySHA256` (JSON bodies), hex(SHA-256(body)) must equal it and
//! only the URL is signed; a JSON body without `bodySHA256` is rejected. As Twilio's own
//! libraries do, the URL is tried both without its port and with the scheme's default
//! port (`:443` / `:80`) added; a fragment in `public_url` is tried without and with it.
//! Comparison is constant-time. Twilio signs no timestamp, so there is no freshness check
//! (replays are caught only by the idempotency key).
//!
//! # Verify keys
//!
//! | key | required | meaning |
//! |---|---|---|
//! | `auth_token` | yes | the account's Auth Token (the HMAC key) |
//! | `public_url` | no | the public URL Twilio calls, e.g. `https://notify.example.com/callbacks/twilio`. Its scheme, host and path are signed with the request's own query string (or, when the request has none, `public_url`'s). Without it the request target must be an absolute URL, else verification fails with "twilio needs verify.public_url". |
//!
//! # Status mapping
//!
//! | Twilio `MessageStatus` | status |
//! |---|---|
//! | `accepted`, `scheduled`, `queued`, `sending` | `queued` |
//! | `sent` | `sent` |
//! | `delivered` | `delivered` |
//! | `partially_delivered` | `delivered` (delivered to the recipient in part; the error, if any, is kept) |
//! | `read` | `seen` |
//! | `failed`, `undelivered`, `canceled` | `failed` |
//! | `receiving`, `received` | (inbound message, not a status) |
//! | anything else | `queued`, informational |
//!
//! Unknown values never fail a callback: they map to `queued` marked informational, with
//! Twilio's parameters kept in `vendor_response`.

use http::Method;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::event::{
    Channel, ChannelUser, ErrorInfo, Event, EventKind, InboundMessage, Location, Media,
    ReplyContext, Status, StatusUpdate, idempotency_key,
};
use crate::mac::{self, Hash};
use crate::phone::{e164_of_channel_address, is_bsuid, is_parent_bsuid};
use crate::provider::signed_form::{
    CallbackUrl, ReadParams, callback_url, media_kind, parse_public_url, read_form_params,
};
use crate::provider::{Context, Normalized, VerifyOptions, VerifySettings};
use crate::request::{pairs_to_json, param, param_nonempty, parse_form};
use crate::secret::ct_eq;
use crate::{CallbackRequest, NormalizeError, Secret, VerifyConfigError, VerifyError};

const PROVIDER: &str = "twilio";
const KNOWN_KEYS: &[&str] = &["auth_token", "public_url"];
/// Twilio sends at most 10 media; a larger `NumMedia` is read up to this bound.
const MAX_MEDIA: usize = 100;

/// Checks `X-Twilio-Signature` (HMAC-SHA1 over the public URL and the sorted parameters).
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

    /// Checks the callback's `X-Twilio-Signature` on the raw URL and body. No clock check:
    /// Twilio signs no timestamp.
    pub fn verify(&self, req: &CallbackRequest, _opts: &VerifyOptions) -> Result<(), VerifyError> {
        let provided = req
            .headers
            .get("x-twilio-signature")
            .ok_or(VerifyError::Missing("X-Twilio-Signature header"))?
            .to_str()
            .map_err(|_| VerifyError::Malformed("X-Twilio-Signature is not visible ASCII".into()))?
            .trim();
        if provided.is_empty() {
            return Err(VerifyError::Missing("X-Twilio-Signature header"));
        }
        let target = callback_url(PROVIDER, self.public_url.as_deref(), req)?;
        let query = target
            .url
            .split_once('?')
            .map(|(_, q)| parse_form(q))
            .unwrap_or_default();
        let params = if let Some(expected_hash) = param(&query, "bodySHA256") {
            let actual = hex::encode(Sha256::digest(&req.body));
            let expected = expected_hash.trim().to_ascii_lowercase();
            if !ct_eq(actual.as_bytes(), expected.as_bytes()) {
                return Err(VerifyError::Mismatch);
            }
            Vec::new()
        } else if req.method == Method::GET || req.method == Method::HEAD {
            Vec::new()
        } else if req.is_json() {
            return Err(VerifyError::Missing(
                "bodySHA256 query parameter (Twilio signs JSON bodies through it)",
            ));
        } else {
            req.form_pairs()
        };
        let data = sorted_params(&params);
        let key = self.auth_token.expose().as_bytes();
        for candidate in candidates(&target) {
            let tag = mac::hmac(Hash::Sha1, key, &[candidate.as_bytes(), data.as_bytes()]);
            if tag.matches_base64(provided) {
                return Ok(());
            }
        }
        Err(VerifyError::Mismatch)
    }
}

/// The URLs to try for Twilio: each with and without the default port, and with and
/// without the fragment of `public_url`.
fn candidates(target: &CallbackUrl) -> Vec<String> {
    let mut out = port_variants(&target.url);
    if let Some(f) = &target.fragment {
        let with_fragment: Vec<String> = out.iter().map(|u| format!("{u}#{f}")).collect();
        out.extend(with_fragment);
    }
    out
}

/// The URL as given and, for `http`/`https`, the variant without any port and the variant
/// with the scheme's default port (when no port is given), as Twilio's libraries try.
fn port_variants(url: &str) -> Vec<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return vec![url.to_owned()];
    };
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        "443"
    } else if scheme.eq_ignore_ascii_case("http") {
        "80"
    } else {
        return vec![url.to_owned()];
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => authority.split_at(i + 1),
        None => ("", authority),
    };
    let (host, port) = match hostport.rfind(':') {
        Some(i) => {
            let (h, p) = hostport.split_at(i);
            let p = p.get(1..).unwrap_or("");
            if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
                (h, Some(p))
            } else {
                (hostport, None)
            }
        }
        None => (hostport, None),
    };
    let without = format!("{scheme}://{userinfo}{host}{tail}");
    let with = match port {
        Some(_) => url.to_owned(),
        None => format!("{scheme}://{userinfo}{host}:{default_port}{tail}"),
    };
    if without == with {
        vec![without]
    } else {
        vec![without, with]
    }
}

/// Parameters sorted by name then value, identical pairs once, as `name+value…`.
fn sorted_params(pairs: &[(String, String)]) -> String {
    let mut sorted: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    for (k, v) in sorted {
        out.push_str(k);
        out.push_str(v);
    }
    out
}

/// Normalizes one Twilio callback (status callback or inbound message) into one event.
pub fn normalize(req: &CallbackRequest, ctx: &Context) -> Result<Normalized, NormalizeError> {
    let (params, correlation) = read_params(req)?;
    let event = to_event(&params, correlation, ctx)?;
    Ok(Normalized::events(vec![event]))
}

/// The callback's parameters (form body, or query for `GET`) and its correlation ids.
fn read_params(req: &CallbackRequest) -> Result<ReadParams, NormalizeError> {
    read_form_params(
        req,
        PROVIDER,
        |k| k == "bodySHA256",
        "form-encoded parameters (Twilio JSON callbacks are not supported)",
    )
}

fn to_event(
    params: &[(String, String)],
    correlation: Map<String, Value>,
    ctx: &Context,
) -> Result<Event, NormalizeError> {
    let sid = param_nonempty(params, "MessageSid")
        .or_else(|| param_nonempty(params, "SmsSid"))
        .or_else(|| param_nonempty(params, "SmsMessageSid"))
        .map(str::trim)
        .ok_or_else(|| NormalizeError::MissingField("MessageSid".into()))?;
    let from = param_nonempty(params, "From").map(str::trim);
    let to = param_nonempty(params, "To").map(str::trim);
    let whatsapp = [from, to]
        .iter()
        .flatten()
        .any(|a| a.starts_with("whatsapp:"))
        || param(params, "ChannelPrefix")
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("whatsapp"));
    let channel = if whatsapp {
        Channel::Whatsapp
    } else {
        Channel::Sms
    };
    let status_value = param_nonempty(params, "MessageStatus")
        .or_else(|| param_nonempty(params, "SmsStatus"))
        .map(str::trim);
    let inbound = match status_value {
        Some(s) => s.eq_ignore_ascii_case("received") || s.eq_ignore_ascii_case("receiving"),
        None if param(params, "Body").is_some() || param(params, "NumMedia").is_some() => true,
        None => return Err(NormalizeError::MissingField("MessageStatus".into())),
    };
    let raw = pairs_to_json(params);
    if !inbound {
        let status_value = status_value.unwrap_or_default();
        let (status, informational) = map_status(status_value);
        let recipient = to
            .or_else(|| param_nonempty(params, "ChannelToAddress").map(str::trim))
            .ok_or_else(|| NormalizeError::MissingField("To".into()))?;
        let code = param_nonempty(params, "ErrorCode")
            .map(str::trim)
            .filter(|c| *c != "0")
            .map(str::to_owned);
        let message = param_nonempty(params, "ErrorMessage").map(str::to_owned);
        // Not `RawDlrDoneDate`: it has no time zone (see the module docs).
        let timestamp_ms = ctx.received_at_ms;
        let recipient = e164_of_channel_address(recipient);
        return Ok(Event {
            channel,
            channel_user: channel_user(channel, params, &recipient),
            channel_value: recipient,
            vendor_name: PROVIDER.to_owned(),
            vendor_ack_id: Some(sid.to_owned()),
            idempotency_key: idempotency_key(PROVIDER, &[sid, status_value]),
            correlation,
            kind: EventKind::Status(StatusUpdate {
                status,
                timestamp_ms,
                error: ErrorInfo::from_parts(code, message),
                informational,
            }),
            raw: raw.into(),
        });
    }

    let sender = from
        .or_else(|| external_user_id(channel, params, "ExternalUserId"))
        .map(e164_of_channel_address)
        .ok_or_else(|| NormalizeError::MissingField("From".into()))?;
    let recipient = to.map(e164_of_channel_address).unwrap_or_default();
    let num_media = param(params, "NumMedia")
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_MEDIA);
    let media: Vec<Media> = (0..num_media)
        .filter_map(|i| {
            let url = param_nonempty(params, &format!("MediaUrl{i}"))?;
            Some(Media::at(
                url.trim(),
                param_nonempty(params, &format!("MediaContentType{i}"))
                    .map(|c| c.trim().to_owned()),
            ))
        })
        .collect();
    let location = location_of(params);
    let button = param_nonempty(params, "ButtonPayload").is_some()
        || param_nonempty(params, "ButtonText").is_some();
    let message_type = if location.is_some() {
        "location"
    } else if let Some(first) = media.first() {
        media_kind(first.content_type.as_deref())
    } else if button {
        "button"
    } else {
        "text"
    };
    let mut text = param_nonempty(params, "Body").map(str::to_owned);
    if text.is_none() && message_type == "button" {
        text = param_nonempty(params, "ButtonText").map(str::to_owned);
    }
    let context = param_nonempty(params, "OriginalRepliedMessageSid").map(|id| ReplyContext {
        id: id.trim().to_owned(),
        from: param_nonempty(params, "OriginalRepliedMessageSender").map(e164_of_channel_address),
    });
    Ok(Event {
        channel,
        channel_user: channel_user(channel, params, &sender),
        channel_value: sender.clone(),
        vendor_name: PROVIDER.to_owned(),
        vendor_ack_id: Some(sid.to_owned()),
        idempotency_key: idempotency_key(PROVIDER, &[sid, "inbound"]),
        correlation,
        kind: EventKind::Inbound(InboundMessage {
            from: sender,
            to: recipient,
            message_type: message_type.to_owned(),
            text,
            media,
            location,
            context,
            timestamp_ms: ctx.received_at_ms,
            source_message_id: sid.to_owned(),
            original_message_id: None,
        }),
        raw: raw.into(),
    })
}

/// A WhatsApp user's business-scoped user id parameter (`ExternalUserId`,
/// `ParentExternalUserId`), with or without its `whatsapp:` prefix; never on SMS.
fn external_user_id<'a>(
    channel: Channel,
    params: &'a [(String, String)],
    name: &str,
) -> Option<&'a str> {
    (channel == Channel::Whatsapp)
        .then(|| param_nonempty(params, name))
        .flatten()
        .map(str::trim)
}

/// The WhatsApp user's business-scoped user ids: `ExternalUserId` and
/// `ParentExternalUserId`, else the user's address itself when it is one (Twilio writes a
/// user whose number is withheld as `whatsapp:US.…`). No username is read: no documented
/// Twilio parameter for one was found.
fn channel_user(channel: Channel, params: &[(String, String)], address: &str) -> ChannelUser {
    if channel != Channel::Whatsapp {
        return ChannelUser::default();
    }
    let id = |name| external_user_id(channel, params, name).map(e164_of_channel_address);
    let mut user = ChannelUser {
        user_id: id("ExternalUserId"),
        parent_user_id: id("ParentExternalUserId"),
        username: None,
    };
    if is_parent_bsuid(address) {
        user.parent_user_id
            .get_or_insert_with(|| address.to_owned());
    } else if is_bsuid(address) {
        user.user_id.get_or_insert_with(|| address.to_owned());
    }
    user
}

/// A shared location, when `Latitude` and `Longitude` are present and numeric.
fn location_of(params: &[(String, String)]) -> Option<Location> {
    let coord = |name: &str| {
        param_nonempty(params, name)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|f| f.is_finite())
    };
    Some(Location {
        latitude: coord("Latitude")?,
        longitude: coord("Longitude")?,
        name: param_nonempty(params, "Label").map(str::to_owned),
        address: param_nonempty(params, "Address").map(str::to_owned),
    })
}

/// Maps a Twilio `MessageStatus` to a status and the informational flag (see the table in
/// the module docs).
#[must_use]
pub fn map_status(value: &str) -> (Status, bool) {
    match value.trim().to_ascii_lowercase().as_str() {
        "accepted" | "scheduled" | "queued" | "sending" => (Status::Queued, false),
        "sent" => (Status::Sent, false),
        "delivered" | "partially_delivered" => (Status::Delivered, false),
        "read" => (Status::Seen, false),
        "failed" | "undelivered" | "canceled" => (Status::Failed, false),
        _ => (Status::Queued, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::signed_form::FORM;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use bytes::Bytes;
    use hmac::{Hmac, KeyInit, Mac};
    use http::{HeaderMap, HeaderValue, Uri};
    use serde_json::json;
    use sha1::Sha1;

    const VECTORS: &str = include_str!("../../tests/fixtures/twilio/signature_vectors.json");
    const WA_INBOUND_TEXT: &str =
        include_str!("../../tests/fixtures/twilio/whatsapp_inbound_text.txt");
    const WA_INBOUND_IMAGE: &str =
        include_str!("../../tests/fixtures/twilio/whatsapp_inbound_image_media.txt");
    const WA_STATUS_DELIVERED: &str =
        include_str!("../../tests/fixtures/twilio/whatsapp_status_delivered.txt");
    const WA_STATUS_SENT: &str =
        include_str!("../../tests/fixtures/twilio/whatsapp_status_sent.txt");

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

    fn request(
        method: Method,
        uri: &str,
        body: impl Into<Bytes>,
        ct: &str,
        sig: &str,
    ) -> CallbackRequest {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_str(ct).expect("ct"));
        headers.insert(
            "x-twilio-signature",
            HeaderValue::from_str(sig).expect("sig"),
        );
        CallbackRequest {
            method,
            uri: uri.parse::<Uri>().expect("uri"),
            headers,
            body: body.into(),
        }
    }

    struct Case {
        name: String,
        url: String,
        params: Vec<(String, String)>,
        raw_body: Option<String>,
        expected: String,
        valid: bool,
    }

    fn cases() -> (String, Vec<Case>) {
        let v: Value = serde_json::from_str(VECTORS).expect("vectors");
        let token = v["auth_token"].as_str().expect("token").to_owned();
        let cases = v["cases"]
            .as_array()
            .expect("cases")
            .iter()
            .map(|c| Case {
                name: c["name"].as_str().expect("name").to_owned(),
                url: c["url"].as_str().expect("url").to_owned(),
                params: c["params"]
                    .as_array()
                    .expect("params")
                    .iter()
                    .map(|p| {
                        (
                            p[0].as_str().expect("k").to_owned(),
                            p[1].as_str().expect("v").to_owned(),
                        )
                    })
                    .collect(),
                raw_body: c["raw_body"].as_str().map(str::to_owned),
                expected: c["expected"].as_str().expect("expected").to_owned(),
                valid: c["valid"].as_bool().expect("valid"),
            })
            .collect();
        (token, cases)
    }

    /// The request of a vector: JSON body (with `bodySHA256` in the URL) or form body.
    fn vector_request(c: &Case, uri: &str, sig: &str) -> CallbackRequest {
        match &c.raw_body {
            Some(b) => request(Method::POST, uri, b.clone(), "application/json", sig),
            None => request(Method::POST, uri, encode(&c.params), FORM, sig),
        }
    }

    fn path_and_query(url: &str) -> String {
        let rest = url.split_once("://").expect("abs").1;
        let i = rest.find('/').expect("path");
        rest[i..].to_owned()
    }

    fn without_query(url: &str) -> &str {
        url.split_once('?').map_or(url, |(b, _)| b)
    }

    #[test]
    fn official_vectors() {
        let (token, cases) = cases();
        assert_eq!(cases.len(), 13);
        for c in &cases {
            // Absolute request target, no public_url.
            let v = verifier(&token, None);
            let r = v.verify(
                &vector_request(c, &c.url, &c.expected),
                &VerifyOptions::default(),
            );
            assert_eq!(r.is_ok(), c.valid, "{} (absolute uri): {r:?}", c.name);
            // Relative target, public_url = the URL without its query.
            let v = verifier(&token, Some(without_query(&c.url)));
            let r = v.verify(
                &vector_request(c, &path_and_query(&c.url), &c.expected),
                &VerifyOptions::default(),
            );
            assert_eq!(r.is_ok(), c.valid, "{} (public_url): {r:?}", c.name);
        }
    }

    #[test]
    fn tampered_vectors_fail() {
        let (token, cases) = cases();
        for c in cases.iter().filter(|c| c.valid) {
            let v = verifier(&token, None);
            let opts = VerifyOptions::default();
            // Tampered body.
            let mut tampered = vector_request(c, &c.url, &c.expected);
            tampered.body = match &c.raw_body {
                Some(b) => Bytes::from(b.replace('}', ",\"x\":1}")),
                None => {
                    let mut p = c.params.clone();
                    p.push(("Injected".into(), "1".into()));
                    Bytes::from(encode(&p))
                }
            };
            assert!(
                v.verify(&tampered, &opts).is_err(),
                "{} tampered body",
                c.name
            );
            // Tampered URL (query).
            let url = if c.url.contains('?') {
                c.url.replacen("foo=1", "foo=2", 1)
            } else {
                format!("{}?x=1", c.url)
            };
            if url != c.url {
                let r = vector_request(c, &url, &c.expected);
                assert!(v.verify(&r, &opts).is_err(), "{} tampered url", c.name);
            }
            // Tampered signature.
            let mut sig = c.expected.clone().into_bytes();
            sig[0] = if sig[0] == b'A' { b'B' } else { b'A' };
            let sig = String::from_utf8(sig).expect("ascii");
            let r = vector_request(c, &c.url, &sig);
            assert!(
                matches!(v.verify(&r, &opts), Err(VerifyError::Mismatch)),
                "{} sig",
                c.name
            );
            // Wrong secret.
            let wrong = verifier("54321", None);
            let r = vector_request(c, &c.url, &c.expected);
            assert!(wrong.verify(&r, &opts).is_err(), "{} wrong secret", c.name);
        }
    }

    #[test]
    fn missing_header_and_relative_uri() {
        let v = verifier("12345", None);
        let mut r = request(Method::POST, "/cb", "a=1", FORM, "x");
        r.headers.remove("x-twilio-signature");
        assert!(matches!(
            v.verify(&r, &VerifyOptions::default()),
            Err(VerifyError::Missing(_))
        ));
        let r = request(Method::POST, "/cb", "a=1", FORM, "x");
        let e = v
            .verify(&r, &VerifyOptions::default())
            .expect_err("relative");
        assert!(
            e.to_string().contains("twilio needs verify.public_url"),
            "{e}"
        );
    }

    #[test]
    fn json_body_without_body_hash_is_rejected() {
        let v = verifier("12345", None);
        let r = request(
            Method::POST,
            "https://x.example/cb",
            "{}",
            "application/json",
            "abc=",
        );
        assert!(matches!(
            v.verify(&r, &VerifyOptions::default()),
            Err(VerifyError::Missing(_))
        ));
    }

    fn sign(token: &str, data: &str) -> String {
        let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(token.as_bytes()).expect("key");
        mac.update(data.as_bytes());
        STANDARD.encode(mac.finalize().into_bytes())
    }

    #[test]
    fn get_signs_the_url_only_and_uses_the_request_query() {
        let url = "https://notify.example.com/callbacks/twilio?From=%2B15551234567&Body=hi&MessageSid=SM1";
        let sig = sign("tok", url);
        let v = verifier("tok", Some("https://notify.example.com/callbacks/twilio"));
        let r = request(Method::GET, &path_and_query(url), "", FORM, &sig);
        v.verify(&r, &VerifyOptions::default()).expect("valid GET");
        let tampered = request(
            Method::GET,
            &path_and_query(&url.replace("hi", "ho")),
            "",
            FORM,
            &sig,
        );
        assert!(v.verify(&tampered, &VerifyOptions::default()).is_err());
    }

    #[test]
    fn public_url_fragment_and_port() {
        let v = verifier("tok", Some("https://notify.example.com/cb#rc=3"));
        // Signed without the fragment, with the default port.
        let sig = sign("tok", "https://notify.example.com:443/cb?x=1a1");
        let r = request(Method::POST, "/cb?x=1", "a=1", FORM, &sig);
        v.verify(&r, &VerifyOptions::default())
            .expect("port variant");
        // Signed with the fragment.
        let sig = sign("tok", "https://notify.example.com/cb?x=1#rc=3a1");
        let r = request(Method::POST, "/cb?x=1", "a=1", FORM, &sig);
        v.verify(&r, &VerifyOptions::default())
            .expect("fragment variant");
    }

    #[test]
    fn settings_fail_closed() {
        assert!(Verifier::from_settings(&VerifySettings::new()).is_err());
        assert!(Verifier::from_settings(&VerifySettings::new().with("auth_token", "  ")).is_err());
        assert!(
            Verifier::from_settings(
                &VerifySettings::new()
                    .with("auth_token", "t")
                    .with("secret", "x")
            )
            .is_err()
        );
        assert!(
            Verifier::from_settings(
                &VerifySettings::new()
                    .with("auth_token", "t")
                    .with("public_url", "notify.example.com/cb")
            )
            .is_err()
        );
        let v = verifier("hunter2", Some("https://notify.example.com/cb"));
        assert!(!format!("{v:?}").contains("hunter2"));
    }

    #[test]
    fn status_mapping() {
        for (v, s, info) in [
            ("accepted", Status::Queued, false),
            ("scheduled", Status::Queued, false),
            ("queued", Status::Queued, false),
            ("sending", Status::Queued, false),
            ("sent", Status::Sent, false),
            ("delivered", Status::Delivered, false),
            ("partially_delivered", Status::Delivered, false),
            ("read", Status::Seen, false),
            ("failed", Status::Failed, false),
            ("undelivered", Status::Failed, false),
            ("canceled", Status::Failed, false),
            ("DELIVERED", Status::Delivered, false),
            ("teleported", Status::Queued, true),
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
    fn whatsapp_users_without_a_number_are_named_by_their_bsuid() {
        let inbound = "MessageSid=SM1&SmsStatus=received&Body=hi&To=whatsapp%3A%2B14123456789\
            &From=whatsapp%3AUS.1234&ExternalUserId=whatsapp%3AUS.1234";
        let e = one(&form(inbound));
        assert_eq!(e.channel, Channel::Whatsapp);
        assert_eq!(e.channel_value, "US.1234");
        assert_eq!(e.channel_user.user_id.as_deref(), Some("US.1234"));
        // No `From`: the sender is `ExternalUserId`.
        let e = one(&form(
            "MessageSid=SM2&SmsStatus=received&Body=hi&To=whatsapp%3A%2B14123456789\
             &ExternalUserId=US.4321&ParentExternalUserId=whatsapp%3AUS.ENT.9",
        ));
        assert_eq!(e.channel_value, "US.4321");
        assert_eq!(e.channel_user.user_id.as_deref(), Some("US.4321"));
        assert_eq!(e.channel_user.parent_user_id.as_deref(), Some("US.ENT.9"));
        // A status to a parent BSUID.
        let e = one(&form(
            "MessageSid=SM3&MessageStatus=read&From=whatsapp%3A%2B14123456789\
             &To=whatsapp%3AUS.ENT.9",
        ));
        assert_eq!(e.channel_value, "US.ENT.9");
        assert_eq!(e.channel_user.parent_user_id.as_deref(), Some("US.ENT.9"));
        assert_eq!(e.channel_user.user_id, None);
        // SMS has no user ids, whatever the parameters say.
        let e = one(&form(
            "MessageSid=SM4&SmsStatus=received&Body=hi&To=%2B14123456789&From=%2B31612345678\
             &ExternalUserId=US.1234",
        ));
        assert_eq!(e.channel, Channel::Sms);
        assert!(e.channel_user.is_empty());
    }

    #[test]
    fn whatsapp_fixtures() {
        let e = one(&form(WA_STATUS_DELIVERED));
        assert_eq!(e.channel, Channel::Whatsapp);
        assert_eq!(e.channel_value, "+31612345678");
        assert_eq!(e.status().map(|s| s.status), Some(Status::Delivered));
        assert_eq!(
            e.vendor_ack_id.as_deref(),
            Some("SMdf55df64a2ff4920bb0748193cfbb640")
        );
        assert_eq!(e.timestamp_ms(), 1_700_000_000_000);
        let sent = one(&form(WA_STATUS_SENT));
        assert_eq!(sent.status().map(|s| s.status), Some(Status::Sent));
        assert_ne!(sent.idempotency_key, e.idempotency_key);

        let t = one(&form(WA_INBOUND_TEXT));
        let EventKind::Inbound(m) = &t.kind else {
            panic!("inbound")
        };
        assert_eq!(
            (m.from.as_str(), m.to.as_str()),
            ("+31612345678", "+14123456789")
        );
        assert_eq!(m.text.as_deref(), Some("test"));
        assert_eq!(m.message_type, "text");
        assert_eq!(t.channel_value, "+31612345678");

        let i = one(&form(WA_INBOUND_IMAGE));
        let EventKind::Inbound(m) = &i.kind else {
            panic!("inbound")
        };
        assert_eq!(m.message_type, "image");
        assert_eq!(m.text, None);
        assert_eq!(m.media.len(), 1);
        assert_eq!(m.media[0].content_type.as_deref(), Some("image/jpeg"));
    }

    #[test]
    fn status_details() {
        let body = "MessageSid=SM1&MessageStatus=undelivered&ErrorCode=30003&To=%2B15550001111&From=%2B15552223333&RawDlrDoneDate=2401021530";
        let mut r = form(body);
        r.uri = "/cb?distinct_id=u1&workflow_name=w&bodySHA256=x"
            .parse()
            .expect("uri");
        let e = one(&r);
        let s = e.status().expect("status");
        assert_eq!(s.status, Status::Failed);
        // The receive time, not RawDlrDoneDate (no time zone); that stays in the raw event.
        assert_eq!(s.timestamp_ms, ctx().received_at_ms);
        assert_eq!(e.raw.to_value()["RawDlrDoneDate"], "2401021530");
        assert_eq!(
            s.error,
            Some(ErrorInfo {
                code: Some("30003".into()),
                message: None
            })
        );
        assert_eq!(e.channel, Channel::Sms);
        assert_eq!(
            e.correlation,
            json!({"distinct_id": "u1", "workflow_name": "w"})
                .as_object()
                .cloned()
                .expect("obj")
        );
        assert_eq!(
            e.idempotency_key,
            idempotency_key("twilio", &["SM1", "undelivered"])
        );
        // Retried callback: same key.
        assert_eq!(one(&r).idempotency_key, e.idempotency_key);
        // Empty / zero error code is absent.
        for code in ["", "0"] {
            let e = one(&form(&format!(
                "MessageSid=SM1&MessageStatus=delivered&ErrorCode={code}&To=%2B1555"
            )));
            assert_eq!(e.status().expect("status").error, None);
        }
        let e = one(&form("MessageSid=SM1&MessageStatus=mystery&To=%2B1555"));
        let s = e.status().expect("status");
        assert!(s.informational && s.status == Status::Queued);
    }

    #[test]
    fn a_delivered_never_sorts_before_its_sent() {
        // Sent received at 15:30:40Z; delivered received at 15:30:55Z with a carrier done
        // date in the carrier's local time (10:30, US Eastern), which read as UTC would be
        // five hours earlier than the sent.
        let at = |ms: i64, body: &str| {
            let out = normalize(&form(body), &Context { received_at_ms: ms }).expect("ok");
            out.events[0].status().expect("status").timestamp_ms
        };
        let sent = at(
            1_704_209_440_000,
            "MessageSid=SM9&MessageStatus=sent&To=%2B15550001111",
        );
        let delivered = at(
            1_704_209_455_000,
            "MessageSid=SM9&MessageStatus=delivered&To=%2B15550001111&RawDlrDoneDate=2401021030",
        );
        assert_eq!((sent, delivered), (1_704_209_440_000, 1_704_209_455_000));
        assert!(delivered > sent);
    }

    #[test]
    fn inbound_details() {
        let e = one(&form(
            "MessageSid=SM2&SmsStatus=received&From=whatsapp%3A%2B1555&To=whatsapp%3A%2B1666&Body=Caf%C3%A9+%F0%9F%98%80&OriginalRepliedMessageSid=SM1&OriginalRepliedMessageSender=whatsapp%3A%2B1666",
        ));
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound")
        };
        assert_eq!(m.text.as_deref(), Some("Café 😀"));
        assert_eq!(
            m.context,
            Some(ReplyContext {
                id: "SM1".into(),
                from: Some("+1666".into())
            })
        );
        let e = one(&form(
            "MessageSid=SM3&From=whatsapp%3A%2B1555&To=whatsapp%3A%2B1666&Body=&NumMedia=0&Latitude=52.37&Longitude=4.89&Label=Dam&Address=Amsterdam",
        ));
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound")
        };
        assert_eq!(m.message_type, "location");
        let l = m.location.as_ref().expect("location");
        assert_eq!((l.latitude, l.longitude), (52.37, 4.89));
        let e = one(&form(
            "MessageSid=SM4&SmsStatus=received&From=%2B1555&To=%2B1666&Body=Yes&ButtonPayload=yes-1",
        ));
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound")
        };
        assert_eq!(m.message_type, "button");
        // A huge NumMedia is bounded.
        let e = one(&form(
            "MessageSid=SM5&SmsStatus=received&From=%2B1555&NumMedia=99999999999&MediaUrl0=https%3A%2F%2Fm&MediaContentType0=audio%2Fogg",
        ));
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound")
        };
        assert_eq!(m.message_type, "audio");
    }

    #[test]
    fn get_inbound_reads_the_query() {
        let r = CallbackRequest {
            method: Method::GET,
            uri: "/cb?tenant=t1&MessageSid=SM9&SmsStatus=received&From=%2B1555&To=%2B1666&Body=hi"
                .parse()
                .expect("uri"),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        };
        let e = one(&r);
        assert_eq!(
            e.correlation,
            json!({"tenant": "t1"}).as_object().cloned().expect("obj")
        );
        assert_eq!(e.raw.to_value()["Body"], "hi");
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let cases: Vec<CallbackRequest> = vec![
            form(""),
            form("   "),
            CallbackRequest::post("{\"MessageSid\":\"SM1\"}").with_content_type("application/json"),
            CallbackRequest::post("{\"MessageSid\":"),
            CallbackRequest::post("[1,2]"),
            form("MessageStatus=sent&To=%2B1"),
            form("MessageSid=SM1&To=%2B1"),
            form("MessageSid=SM1&MessageStatus=sent"),
            form("MessageSid=SM1&SmsStatus=received&To=%2B1"),
            form("%%%&&&==="),
            CallbackRequest::post("a=1").with_content_type("text/plain"),
        ];
        for r in &cases {
            assert!(normalize(r, &ctx()).is_err(), "{:?}", r.body);
        }
        let mut put = form("MessageSid=SM1&MessageStatus=sent&To=%2B1");
        put.method = Method::PUT;
        assert!(matches!(
            normalize(&put, &ctx()),
            Err(NormalizeError::UnsupportedMethod { .. })
        ));
        let get = CallbackRequest {
            method: Method::GET,
            uri: Uri::from_static("/cb"),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        };
        assert!(normalize(&get, &ctx()).is_err());
        let e = normalize(
            &CallbackRequest::post("{}").with_content_type("application/json"),
            &ctx(),
        )
        .expect_err("json");
        assert_eq!(e.kind(), "content_type");
    }

    #[test]
    fn garbage_is_rejected_quickly() {
        let mut junk = Vec::with_capacity(10 << 20);
        let mut x: u32 = 7;
        while junk.len() < 10 << 20 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            junk.push((x >> 16) as u8);
        }
        let started = std::time::Instant::now();
        let r = CallbackRequest::post(junk.clone()).with_content_type(FORM);
        assert!(normalize(&r, &ctx()).is_err());
        let v = verifier("tok", Some("https://x.example/cb"));
        let mut r = r;
        r.headers
            .insert("x-twilio-signature", HeaderValue::from_static("abc="));
        assert!(v.verify(&r, &VerifyOptions::default()).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn port_variants_cover_the_library_forms() {
        assert_eq!(
            port_variants("https://a.example/x?y=1"),
            vec!["https://a.example/x?y=1", "https://a.example:443/x?y=1"]
        );
        assert_eq!(
            port_variants("http://u:p@a.example:1234/x"),
            vec!["http://u:p@a.example/x", "http://u:p@a.example:1234/x"]
        );
        assert_eq!(
            port_variants("https://[::1]/x"),
            vec!["https://[::1]/x", "https://[::1]:443/x"]
        );
        assert_eq!(port_variants("not a url"), vec!["not a url"]);
        assert_eq!(port_variants("https://é.example:é/x").len(), 2);
    }
}
