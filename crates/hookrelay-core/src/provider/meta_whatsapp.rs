//! Meta WhatsApp Cloud API webhooks (`meta_whatsapp`).
//!
//! # Callback format
//!
//! - **Handshake**: when a callback URL is configured, Meta calls it with
//!   `GET ?hub.mode=subscribe&hub.verify_token=<yours>&hub.challenge=<n>` and an empty body.
//!   [`normalize`] turns it into [`Control::MetaChallenge`] (no events): answer `200` with
//!   the challenge as the body once [`Verifier::verify`] accepted the token. A `hub.mode`
//!   other than `subscribe`, or no `hub.challenge`, is a [`NormalizeError`].
//! - **Events**: `POST`, `application/json`:
//!   `{"object": "whatsapp_business_account", "entry": [{"id": <WABA id>, "changes":
//!   [{"field": "messages", "value": {"messaging_product": "whatsapp", "metadata":
//!   {"display_phone_number", "phone_number_id"}, "contacts": [...], "messages": [...],
//!   "statuses": [...], "errors": [...]}}]}]}`. Batching happens at three levels; every entry
//!   × change × message/status becomes one event, in body order. Changes whose `field` is
//!   not `messages` (template, account, group updates…) carry no message events and are
//!   skipped without error, as are value-level `errors[]` (webhook-level failures that are
//!   not about one message), and entries without `changes` (Messenger `object: page`).
//!
//! ## Users without a phone number (business-scoped user ids)
//!
//! Meta names every user by a business-scoped user id (BSUID: a two-letter country code, a
//! dot and up to 128 letters and digits, `US.13491208655302741918`; a parent BSUID, shared
//! by a business's portfolios, has `ENT.` after the dot), and a user who adopted a WhatsApp
//! username may have their number withheld. A message then has `from_user_id` (and
//! `from_parent_user_id`) and no `from`; a status `recipient_user_id` (and
//! `recipient_parent_user_id`) and no `recipient_id`; a change's `contacts[]` entries have
//! `user_id`, `parent_user_id` and `profile.username`, and `wa_id` only when the number is
//! known. So for every message and status:
//!
//! - the user's **address** (`channel_value`, an inbound message's `from`) is their number
//!   as E.164 when one was sent (`from` / `recipient_id`, else the matching contact's
//!   `wa_id`), else the BSUID, else the parent BSUID, unprefixed and without `+`: it is what
//!   the business replies to. A `from`, `recipient_id` or `wa_id` holding a BSUID is read
//!   as one, never as a number.
//! - `channel_user_id` and `channel_parent_user_id` are the BSUIDs, from the message or
//!   status, else from the contact that names the same user (same `wa_id`, `user_id` or
//!   `parent_user_id`); `channel_username` is that contact's `profile.username`. Each is
//!   absent when not sent.
//! - a message or status naming no user at all (no number, BSUID or parent BSUID) is
//!   unparsed, as before (reason: missing `from` / `recipient_id`).
//!
//! ## Status events (`statuses[]`)
//!
//! channel `whatsapp`; `channel_value` = the user's address (above: `recipient_id` as
//! E.164, else the BSUID; WhatsApp ids are the user's number without `+`, which the E.164
//! rule of all providers adds to 7 to 15 digits, keeping anything else as sent; for a
//! group message `recipient_participant_id` is used when present, else the group id is
//! kept as given, and only the status's own BSUIDs are read); `vendor_ack_id` = `id` (the `wamid.…`
//! of your message); timestamp = `timestamp` (Unix seconds as a string) in ms; on `failed`,
//! the error is `errors[0]`: `code` as text and `message`, else `title`, else
//! `error_data.details`. The correlation id the sending app attached,
//! `biz_opaque_callback_data`, is passed under that name exactly as given (a JSON text stays
//! a string). `conversation` and `pricing` stay only in `vendor_response`. The idempotency
//! key is derived from (`id`, `status`, `timestamp`). `vendor_response` is the status object
//! itself.
//!
//! ## Inbound messages (`messages[]`)
//!
//! `from` = the sender's address (above: `from` as E.164, else `from_user_id`; also the
//! `channel_value`); `to` = the digits of
//! `metadata.display_phone_number` as E.164; `type` = Meta's `type` as given;
//! `source_message_id` and `vendor_ack_id` = `id`; timestamp = `timestamp` in ms;
//! `context {from, id}` of a reply becomes the reply context (`from` as E.164). Per type:
//!
//! | `type` | normalized content |
//! |---|---|
//! | `text` | `text.body` |
//! | `image`, `video`, `audio`, `document`, `sticker` | `media [{url: url or media id, content_type: mime_type}]`, text = `caption` (a document's `filename` stays in `vendor_response`) |
//! | `location` | `location {latitude, longitude, name, address}` |
//! | `button` (template quick reply) | text = `button.text` (else `payload`) |
//! | `interactive` | text = `button_reply.title` / `list_reply.title` / `nfm_reply.body` |
//! | `reaction` | text = `emoji` (absent when the reaction was removed), context id = `reaction.message_id` |
//! | `order` / `system` | text = `order.text` / `system.body` |
//! | `edit` (the user edited a message; WhatsApp Business app numbers) | `original_message_id` = `edit.original_message_id`; text, media and reply context from `edit.message`, read as a message of its own `type` (`text.body`, or a media `caption` and the media) |
//! | `revoke` (the user deleted a message; WhatsApp Business app numbers) | `original_message_id` = `revoke.original_message_id` |
//! | `contacts`, `request_welcome`, `unsupported`, `referral`, others | type only |
//!
//! The sender's profile name (`contacts[].profile.name`) is not carried (their username
//! is, as `channel_username`). The idempotency key is derived from the message `id`.
//! `vendor_response` is the message object itself.
//!
//! # Signature scheme
//!
//! `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app_secret, raw body)>` on every `POST`
//! (header name and hex digits case-insensitive), compared in constant time. Meta signs
//! no timestamp, so there is no freshness check (dedupe on the idempotency key instead).
//! A `GET` handshake is checked by comparing `hub.verify_token` with the configured
//! `verify_token` in constant time; with no `verify_token` configured every handshake is
//! rejected ([`VerifyError::BadCredentials`]: fail closed, never a skipped check).
//!
//! # Verify keys
//!
//! | key | required | meaning |
//! |---|---|---|
//! | `app_secret` | yes | the Meta app secret (App settings → Basic) |
//! | `verify_token` | no | the token you entered with the callback URL; needed to answer handshakes |
//!
//! # Status mapping
//!
//! | `statuses[].status` | status |
//! |---|---|
//! | `sent` | `sent` |
//! | `delivered` | `delivered` |
//! | `read` | `seen` |
//! | `played` (voice message played) | `seen` |
//! | `failed` | `failed` (with `error`) |
//! | `deleted`, `warning`, any other value | `queued`, informational |
//!
//! Unknown values never fail a callback: they map to `queued` marked informational (so they
//! never downgrade a later status), with Meta's status object kept in `vendor_response`.

use http::Method;

use crate::event::Status;
use crate::mac::{self, Hash};
use crate::provider::whatsapp_cloud::{Fields, Flavor, events_from_envelope, from_text, text_of};
use crate::provider::{Context, Control, Normalized, VerifyOptions, VerifySettings};
use crate::secret::ct_eq;
use crate::{CallbackRequest, NormalizeError, Secret, VerifyConfigError, VerifyError};

const PROVIDER: &str = "meta_whatsapp";
const KNOWN_KEYS: &[&str] = &["app_secret", "verify_token"];
const SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// Longest `hub.challenge` echoed back (Meta sends a short number).
const MAX_CHALLENGE_LEN: usize = 256;

/// Checks `X-Hub-Signature-256` on event callbacks and `hub.verify_token` on handshakes.
#[derive(Debug, Clone)]
pub struct Verifier {
    app_secret: Secret,
    verify_token: Option<Secret>,
}

impl Verifier {
    /// Builds the verifier from the `verify:` settings: `app_secret` (required) and
    /// `verify_token` (optional; without it every `GET` handshake is rejected).
    pub fn from_settings(settings: &VerifySettings) -> Result<Self, VerifyConfigError> {
        settings.only(PROVIDER, KNOWN_KEYS)?;
        let app_secret = settings.require(PROVIDER, "app_secret")?.clone();
        let verify_token = settings.get("verify_token").cloned();
        Ok(Self {
            app_secret,
            verify_token,
        })
    }

    /// Checks the callback: a `GET` handshake by its `hub.verify_token`, anything else by
    /// its `X-Hub-Signature-256` over the raw body. Meta signs no timestamp, so `opts`
    /// has nothing to check.
    pub fn verify(&self, req: &CallbackRequest, _opts: &VerifyOptions) -> Result<(), VerifyError> {
        if req.method == Method::GET {
            return self.verify_handshake(req);
        }
        let header = req
            .headers
            .get(SIGNATURE_HEADER)
            .ok_or(VerifyError::Missing("X-Hub-Signature-256"))?;
        let value = header
            .to_str()
            .map_err(|_| VerifyError::Malformed("X-Hub-Signature-256 is not visible ASCII".into()))?
            .trim();
        let tag = parse_signature(value)?;
        let key = self.app_secret.expose().as_bytes();
        if mac::hmac(Hash::Sha256, key, &[&req.body]).matches(&tag) {
            Ok(())
        } else {
            Err(VerifyError::Mismatch)
        }
    }

    fn verify_handshake(&self, req: &CallbackRequest) -> Result<(), VerifyError> {
        let pairs = req.query_pairs();
        let sent = crate::request::param(&pairs, "hub.verify_token")
            .ok_or(VerifyError::Missing("hub.verify_token"))?;
        let Some(expected) = &self.verify_token else {
            // No token configured: a handshake can never be accepted (fail closed).
            return Err(VerifyError::BadCredentials);
        };
        if ct_eq(sent.as_bytes(), expected.expose().as_bytes()) {
            Ok(())
        } else {
            Err(VerifyError::BadCredentials)
        }
    }
}

/// Decodes `sha256=<hex>` (prefix and hex digits in any case) into the tag bytes.
fn parse_signature(value: &str) -> Result<Vec<u8>, VerifyError> {
    let hex_part = value
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("sha256="))
        .and_then(|_| value.get(7..))
        .ok_or_else(|| VerifyError::Malformed("expected sha256=<hex>".into()))?;
    let hex_part = hex_part.trim();
    let not_hex = || VerifyError::Malformed("signature is not hexadecimal".into());
    if hex_part.len() % 2 != 0 {
        return Err(not_hex());
    }
    // Into a buffer of the right size: `hex::decode` grows its vector from empty.
    let mut tag = vec![0; hex_part.len() / 2];
    hex::decode_to_slice(hex_part, &mut tag).map_err(|_| not_hex())?;
    Ok(tag)
}

/// Normalizes one callback: a `GET` handshake into [`Control::MetaChallenge`], a `POST`
/// into one event per status and message, in body order.
pub fn normalize(req: &CallbackRequest, ctx: &Context) -> Result<Normalized, NormalizeError> {
    if req.method == Method::GET {
        return handshake(req).map(Normalized::control);
    }
    if req.method != Method::POST {
        return Err(NormalizeError::UnsupportedMethod {
            provider: PROVIDER,
            method: req.method.to_string(),
        });
    }
    req.expect_content_type(PROVIDER, &["application/json"], "application/json")?;
    if let Some(out) = from_text(&req.body, ctx, &META) {
        return Ok(out);
    }
    let mut doc = req.json()?;
    events_from_envelope(&mut doc, ctx, &META)
}

fn handshake(req: &CallbackRequest) -> Result<Control, NormalizeError> {
    let pairs = req.query_pairs();
    let mode = crate::request::param(&pairs, "hub.mode")
        .ok_or_else(|| NormalizeError::MissingField("hub.mode".into()))?;
    if mode != "subscribe" {
        return Err(NormalizeError::invalid(
            "hub.mode",
            format!("expected \"subscribe\", got {mode:?}"),
        ));
    }
    let challenge = crate::request::param_nonempty(&pairs, "hub.challenge")
        .ok_or_else(|| NormalizeError::MissingField("hub.challenge".into()))?;
    if challenge.len() > MAX_CHALLENGE_LEN || challenge.chars().any(char::is_control) {
        return Err(NormalizeError::invalid(
            "hub.challenge",
            "longer than 256 bytes or contains control characters",
        ));
    }
    let verify_token = crate::request::param(&pairs, "hub.verify_token").unwrap_or("");
    Ok(Control::MetaChallenge {
        challenge: challenge.to_owned(),
        verify_token: verify_token.to_owned(),
    })
}

/// Meta itself.
const META: Flavor = Flavor {
    vendor: PROVIDER,
    status: map_status,
    ack_id: status_id,
};

/// Meta's status mapping (see the module docs).
fn map_status(value: &str) -> (Status, bool) {
    match value {
        "sent" => (Status::Sent, false),
        "delivered" => (Status::Delivered, false),
        "read" | "played" => (Status::Seen, false),
        "failed" => (Status::Failed, false),
        _ => (Status::Queued, true),
    }
}

fn status_id(status: &dyn Fields) -> Option<String> {
    text_of(status.field("id"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, EventKind, InboundMessage};
    use crate::payload::{PayloadOptions, render};
    use crate::provider::whatsapp_cloud::first_error;
    use bytes::Bytes;
    use http::{HeaderValue, Uri};
    use serde_json::{Value, json};

    const CTX: Context = Context {
        received_at_ms: 1_700_000_000_000,
    };

    const VECTOR: &str =
        include_str!("../../tests/fixtures/meta_whatsapp/xhub_signature_vector.json");
    const VECTOR_BODY: &[u8] =
        include_bytes!("../../tests/fixtures/meta_whatsapp/xhub_signature_vector_body.txt");
    const VECTOR_MINIMAL: &str =
        include_str!("../../tests/fixtures/meta_whatsapp/xhub_signature_vector_minimal.json");
    const OWN_VECTOR: &str =
        include_str!("../../tests/fixtures/meta_whatsapp/own_signature_vector.json");
    const INBOUND_TEXT: &str =
        include_str!("../../tests/fixtures/meta_whatsapp/inbound_text_basic.json");
    const REPLY: &str =
        include_str!("../../tests/fixtures/meta_whatsapp/inbound_text_reply_with_context.json");
    const NO_MESSAGES: &str =
        include_str!("../../tests/fixtures/meta_whatsapp/messages_field_without_messages.json");
    const HANDSHAKE: &str =
        include_str!("../../tests/fixtures/meta_whatsapp/verify_handshake.json");

    /// The general path's answer for `body`: events and unparsed events, or the error's text.
    fn general(body: &[u8]) -> Result<Normalized, String> {
        let mut doc: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        events_from_envelope(&mut doc, &CTX, &META).map_err(|e| e.to_string())
    }

    /// Bodies the fast path must agree on with the general path: every golden body, and
    /// edge cases of shape, types, nulls, repeats and layout.
    fn agreement_bodies() -> Vec<Vec<u8>> {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/meta_whatsapp");
        let mut bodies: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .expect("golden dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "body"))
            .map(|p| std::fs::read(p).expect("body"))
            .collect();
        assert!(bodies.len() >= 10, "golden bodies found: {}", bodies.len());
        let status = |s: &str| {
            format!(
                r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"statuses":[{s}]}}}}]}}]}}"#
            )
        };
        let ok = r#"{"id":"wamid.1","status":"delivered","timestamp":"1700000000","recipient_id":"15551234567"}"#;
        for s in [
            ok.to_owned(),
            format!("{ok},{ok}"),
            r#"{"id":"wamid.2","status":"failed","timestamp":1700000000,"recipient_id":"15551234567","errors":[{"code":131026,"title":"Undeliverable"}],"biz_opaque_callback_data":"tracker"}"#.to_owned(),
            r#"{"id":"wamid.3","status":"read","timestamp":"1700000000","recipient_type":"group","recipient_participant_id":"15550000000","recipient_id":"G1"}"#.to_owned(),
            r#"{"id":"wamid.4","status":"sent","timestamp":null,"recipient_id":"15551234567","biz_opaque_callback_data":null}"#.to_owned(),
            r#"{"id":"wamid.5","status":"deleted","timestamp":"x","recipient_id":"1"}"#.to_owned(),
            r#"{"id":7,"status":"delivered","timestamp":"1700000000","recipient_id":15551234567}"#.to_owned(),
            r#"{"status":"delivered","timestamp":"1700000000","recipient_id":"1"}"#.to_owned(),
            r#"{"id":"wamid.6","timestamp":"1700000000","recipient_id":"1"}"#.to_owned(),
            r#"{"id":"wamid.7","status":"delivered","timestamp":"1700000000"}"#.to_owned(),
            r#"{"id":"a","id":"b","status":"delivered","timestamp":"1700000000","recipient_id":"1"}"#.to_owned(),
            r#""not an object""#.to_owned(),
            "null".to_owned(),
            "{\n  \"id\": \"wamid.8\",\n  \"status\": \"delivered\",\n  \"timestamp\": \"1700000000\",\n  \"recipient_id\": \"1\"\n}".to_owned(),
            r#"{"id":"wamid.9","status":"delivered","timestamp":"1700000000","recipient_id":"1","conversation":{"id":"c","origin":{"type":"utility"}},"pricing":{"billable":true}}"#.to_owned(),
            r#"{"id":"wamid.10","status":"read","timestamp":"1700000000","recipient_user_id":"US.1234"}"#.to_owned(),
            r#"{"id":"wamid.11","status":"read","timestamp":"1700000000","recipient_parent_user_id":"US.ENT.5678"}"#.to_owned(),
            r#"{"id":"wamid.12","status":"read","timestamp":"1700000000","recipient_id":"US.1234","recipient_user_id":null}"#.to_owned(),
            r#"{"id":"wamid.13","status":"read","timestamp":"1700000000","recipient_user_id":7,"recipient_parent_user_id":{}}"#.to_owned(),
        ] {
            bodies.push(status(&s).into_bytes());
        }
        // Contacts of every shape beside statuses that name their user in different ways.
        let statuses = r#"[{"id":"wamid.C1","status":"delivered","timestamp":"1","recipient_user_id":"US.1234"},{"id":"wamid.C2","status":"read","timestamp":"1","recipient_id":"16505551234"},{"id":"wamid.C3","status":"sent","timestamp":"1","recipient_parent_user_id":"US.ENT.5678"}]"#;
        for contacts in [
            r#"[{"profile":{"username":"a"},"user_id":"US.1234"},{"wa_id":"16505551234","user_id":"US.99"},{"parent_user_id":"US.ENT.5678","user_id":"US.77","profile":{"username":"p"}}]"#,
            r#"[7,null,"x",{"profile":"name","user_id":["US.1234"],"wa_id":16505551234}]"#,
            r#"{"user_id":"US.1234"}"#,
            "null",
            r#""contacts""#,
        ] {
            bodies.push(
                format!(
                    r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"contacts":{contacts},"statuses":{statuses}}}}}]}}]}}"#
                )
                .into_bytes(),
            );
        }
        let message = |m: &str| {
            format!(
                r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"metadata":{{"display_phone_number":"15550783881"}},"messages":[{m}]}}}}]}}]}}"#
            )
        };
        let text = r#"{"from":"16505551234","id":"wamid.M","timestamp":"1739321024","type":"text","text":{"body":"hi"}}"#;
        for m in [
            text.to_owned(),
            format!("{text},{ok_message}", ok_message = text.replace("wamid.M", "wamid.N")),
            r#"{"from":"16505551234","id":"wamid.I","timestamp":"1739321024","type":"image","image":{"id":"media1","mime_type":"image/jpeg","caption":"c"}}"#.to_owned(),
            r#"{"id":"wamid.X","timestamp":"1739321024","type":"text"}"#.to_owned(),
            r#"{"from":"1","id":"wamid.Y","timestamp":"soon","type":"text"}"#.to_owned(),
            r#"{"from_user_id":"US.1234","from_parent_user_id":"US.ENT.5678","id":"wamid.U","timestamp":"1739321024","type":"text","text":{"body":"hi"}}"#.to_owned(),
            r#"{"from":"US.1234","id":"wamid.V","timestamp":"1739321024","type":"revoke","revoke":{"original_message_id":"wamid.M"}}"#.to_owned(),
            r#"{"from":"16505551234","id":"wamid.W","timestamp":"1739321024","type":"edit","edit":{"original_message_id":"wamid.M","message":{"type":"text","text":{"body":"hi!"}}}}"#.to_owned(),
            format!("{text},7"),
            "null".to_owned(),
        ] {
            bodies.push(message(&m).into_bytes());
        }
        bodies.push(
            message(text)
                .replace(
                    r#""display_phone_number":"15550783881""#,
                    r#""display_phone_number":15550783881"#,
                )
                .into_bytes(),
        );
        bodies.push(
            message(text)
                .replace(r#"{"display_phone_number":"15550783881"}"#, "[]")
                .into_bytes(),
        );
        bodies.push(
            message(text)
                .replace(r#""messages":["#, r#""statuses":[{"id":"wamid.S","status":"read","timestamp":"1","recipient_id":"1"},{"id":"wamid.T"}],"messages":["#)
                .into_bytes(),
        );
        for body in [
            r#"{"entry":[{"changes":null}]}"#,
            r#"{"entry":[{"changes":[{"field":"messages","value":{"statuses":null}}]}]}"#,
            r#"{"entry":[{"changes":[{"field":"messages","value":{"statuses":{}}}]}]}"#,
            r#"{"entry":[{"changes":[{"field":"messages","value":[]}]}]}"#,
            r#"{"entry":[{"changes":[{"field":"messages"}]}]}"#,
            r#"{"entry":[{"changes":[{"field":"statuses","value":7}]}]}"#,
            r#"{"entry":[{"changes":[{"field":7,"value":7}]}]}"#,
            r#"{"entry":[{"changes":[{"field":"messages","value":{"statuses":[],"messages":null}}]}]}"#,
            r#"{"entry":{}}"#,
            r#"{"entry":[7]}"#,
            r#"{"object":"page"}"#,
            r#"[]"#,
            r#"{"entry":[],"entry":[]}"#,
        ] {
            bodies.push(body.as_bytes().to_vec());
        }
        // Not UTF-8, in a part the fast path skips.
        let mut not_utf8 = status(ok).into_bytes();
        let object = not_utf8
            .windows(b"\"1\"".len())
            .position(|w| w == b"\"1\"")
            .expect("the entry id");
        not_utf8[object + 1] = 0xff;
        bodies.push(not_utf8);
        bodies
    }

    #[test]
    fn an_unparsed_item_keeps_a_callback_of_its_own_to_normalize_again() {
        let body = r#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001111","phone_number_id":"42"},"contacts":[{"profile":{"name":"Ann"},"wa_id":"15551234567"}],"statuses":[{"id":"wamid.A","status":"delivered","timestamp":"1700000000","recipient_id":"15551234567"},{"id":"wamid.B","status":"delivered","timestamp":"1700000000"}],"messages":[{"id":"wamid.C","timestamp":"1700000000","type":"text","text":{"body":"hi"}}]}}]}]}"#;
        let out = from_text(body.as_bytes(), &CTX, &META).expect("the fast path takes it");
        assert_eq!((out.events.len(), out.unparsed.len()), (1, 2));
        for u in &out.unparsed {
            let alone = u.replay_body();
            assert!(
                alone.contains(r#""display_phone_number":"15550001111""#),
                "{alone}"
            );
            assert!(alone.contains(r#""name":"Ann""#), "{alone}");
            // A Meta callback holding that item alone: the same item, as unparsed again.
            let again = from_text(alone.as_bytes(), &CTX, &META).expect("a Meta body");
            assert_eq!(again.events.len(), 0, "{alone}");
            assert_eq!(again.unparsed.len(), 1, "{alone}");
            assert_eq!(again.unparsed[0].raw, u.raw);
            assert_eq!(Ok(again), general(alone.as_bytes()));
        }
    }

    #[test]
    fn the_fast_path_agrees_with_the_general_path() {
        let mut fast_taken = 0;
        for body in agreement_bodies() {
            let text = String::from_utf8_lossy(&body).into_owned();
            let Some(fast) = from_text(&body, &CTX, &META) else {
                continue;
            };
            fast_taken += 1;
            assert_eq!(Ok(fast.clone()), general(&body), "{text}");
            // The payload is the same JSON, and one line.
            for event in &fast.events {
                let bytes = crate::payload::to_bytes(event, &PayloadOptions::default());
                let value: Value = serde_json::from_slice(&bytes).expect("payload is JSON");
                assert_eq!(value, render(event, &PayloadOptions::default()), "{text}");
                assert!(!bytes.contains(&b'\n'), "one line: {text}");
            }
        }
        assert!(
            fast_taken >= 25,
            "the fast path was taken {fast_taken} times"
        );
    }

    fn verifier(secret: &str) -> Verifier {
        Verifier::from_settings(&VerifySettings::new().with("app_secret", secret))
            .expect("verifier")
    }

    fn signed(body: impl Into<Bytes>, header: &str) -> CallbackRequest {
        let mut req = CallbackRequest::post(body).with_content_type("application/json");
        req.headers.insert(
            "X-Hub-Signature-256",
            HeaderValue::from_str(header).expect("header"),
        );
        req
    }

    fn get(uri: &str) -> CallbackRequest {
        let mut req = CallbackRequest::post(Bytes::new());
        req.method = Method::GET;
        req.uri = uri.parse::<Uri>().expect("uri");
        req
    }

    fn post_json(body: &str) -> CallbackRequest {
        CallbackRequest::post(body.to_owned()).with_content_type("application/json")
    }

    fn events(body: &str) -> Vec<Event> {
        normalize(&post_json(body), &CTX)
            .expect("normalizes")
            .events
    }

    fn vectors() -> Vec<(String, Vec<u8>, String)> {
        let v: Value = serde_json::from_str(VECTOR).expect("json");
        let m: Value = serde_json::from_str(VECTOR_MINIMAL).expect("json");
        let o: Value = serde_json::from_str(OWN_VECTOR).expect("json");
        vec![
            (
                v["app_secret"].as_str().expect("secret").to_owned(),
                VECTOR_BODY.to_vec(),
                v["header_X-Hub-Signature-256"]
                    .as_str()
                    .expect("sig")
                    .to_owned(),
            ),
            (
                m["app_secret"].as_str().expect("secret").to_owned(),
                m["body"].as_str().expect("body").as_bytes().to_vec(),
                m["expected_header"].as_str().expect("sig").to_owned(),
            ),
            (
                o["app_secret"].as_str().expect("secret").to_owned(),
                o["body"].as_str().expect("body").as_bytes().to_vec(),
                o["header"].as_str().expect("sig").to_owned(),
            ),
        ]
    }

    #[test]
    fn every_signature_vector_passes_and_tampering_fails() {
        let opts = VerifyOptions::default();
        for (secret, body, header) in vectors() {
            let v = verifier(&secret);
            v.verify(&signed(body.clone(), &header), &opts)
                .expect("valid vector");
            // Header value in upper case (prefix and hex digits) still verifies.
            v.verify(&signed(body.clone(), &header.to_ascii_uppercase()), &opts)
                .expect("case-insensitive hex");
            // Tampered body.
            let mut tampered = body.clone();
            tampered.push(b' ');
            assert!(matches!(
                v.verify(&signed(tampered, &header), &opts),
                Err(VerifyError::Mismatch)
            ));
            // Tampered signature (last hex digit flipped).
            let mut sig = header.clone();
            let last = if sig.ends_with('0') { '1' } else { '0' };
            sig.pop();
            sig.push(last);
            assert!(matches!(
                v.verify(&signed(body.clone(), &sig), &opts),
                Err(VerifyError::Mismatch)
            ));
            // Wrong secret.
            assert!(matches!(
                verifier("not-the-secret").verify(&signed(body.clone(), &header), &opts),
                Err(VerifyError::Mismatch)
            ));
        }
    }

    #[test]
    fn header_name_is_case_insensitive_and_missing_header_is_missing() {
        let (secret, body, header) = vectors().remove(1);
        let mut req = CallbackRequest::post(body.clone());
        req.headers.insert(
            http::HeaderName::from_static("x-hub-signature-256"),
            HeaderValue::from_str(&header).expect("h"),
        );
        verifier(&secret)
            .verify(&req, &VerifyOptions::default())
            .expect("lower-case header name");
        assert!(matches!(
            verifier(&secret).verify(&CallbackRequest::post(body), &VerifyOptions::default()),
            Err(VerifyError::Missing(_))
        ));
    }

    #[test]
    fn malformed_signatures_are_rejected() {
        let v = verifier("TEST_APP_SECRET");
        let opts = VerifyOptions::default();
        // CP4M's "invalid signature" header: no sha256= prefix.
        assert!(matches!(
            v.verify(&signed("test", "abcdef0123456789"), &opts),
            Err(VerifyError::Malformed(_))
        ));
        assert!(matches!(
            v.verify(&signed("test", "sha256=zz"), &opts),
            Err(VerifyError::Malformed(_))
        ));
        assert!(matches!(
            v.verify(&signed("test", "sha256=abcd"), &opts),
            Err(VerifyError::Mismatch)
        ));
        // An odd number of digits, or a non-digit past a valid start.
        for bad in ["sha256=abc", "sha256=ab0g"] {
            assert!(
                matches!(
                    v.verify(&signed("test", bad), &opts),
                    Err(VerifyError::Malformed(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            v.verify(&signed("test", "sha1=0c61947b"), &opts),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn settings_fail_closed() {
        assert!(Verifier::from_settings(&VerifySettings::new()).is_err());
        assert!(Verifier::from_settings(&VerifySettings::new().with("app_secret", "  ")).is_err());
        assert!(Verifier::from_settings(&VerifySettings::new().with("verify_token", "t")).is_err());
        assert!(
            Verifier::from_settings(
                &VerifySettings::new()
                    .with("app_secret", "s")
                    .with("secret", "x")
            )
            .is_err()
        );
        let v = verifier("s3cr3t-value");
        assert!(!format!("{v:?}").contains("s3cr3t-value"));
    }

    #[test]
    fn handshake_fixture_normalizes_and_verifies() {
        let fx: Value = serde_json::from_str(HANDSHAKE).expect("json");
        let request_line = fx["request"].as_str().expect("request");
        let target = request_line.strip_prefix("GET ").expect("GET line");
        let token = fx["configured_verify_token"].as_str().expect("token");
        let req = get(target);
        let out = normalize(&req, &CTX).expect("handshake");
        assert!(out.events.is_empty());
        assert_eq!(
            out.control,
            Some(Control::MetaChallenge {
                challenge: fx["expected_body"].as_str().expect("body").to_owned(),
                verify_token: token.to_owned(),
            })
        );
        let opts = VerifyOptions::default();
        let with_token = Verifier::from_settings(
            &VerifySettings::new()
                .with("app_secret", "s")
                .with("verify_token", token),
        )
        .expect("verifier");
        with_token.verify(&req, &opts).expect("token matches");
        let other = Verifier::from_settings(
            &VerifySettings::new()
                .with("app_secret", "s")
                .with("verify_token", "other-token"),
        )
        .expect("verifier");
        assert!(matches!(
            other.verify(&req, &opts),
            Err(VerifyError::BadCredentials)
        ));
        // No verify_token configured: fail closed.
        assert!(matches!(
            verifier("s").verify(&req, &opts),
            Err(VerifyError::BadCredentials)
        ));
        // No hub.verify_token sent.
        assert!(matches!(
            with_token.verify(&get("/cb?hub.mode=subscribe&hub.challenge=1"), &opts),
            Err(VerifyError::Missing(_))
        ));
    }

    #[test]
    fn bad_handshakes_are_errors() {
        for uri in [
            "/cb?hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=t",
            "/cb?hub.mode=subscribe&hub.verify_token=t",
            "/cb?hub.mode=subscribe&hub.challenge=&hub.verify_token=t",
            "/cb?hub.challenge=1",
            "/cb",
            "/cb?hub.mode=subscribe&hub.challenge=%0A1&hub.verify_token=t",
        ] {
            assert!(normalize(&get(uri), &CTX).is_err(), "{uri}");
        }
    }

    #[test]
    fn inbound_text_fixture() {
        let ev = events(INBOUND_TEXT);
        assert_eq!(ev.len(), 1);
        let e = &ev[0];
        assert_eq!(e.channel_value, "+16315551181");
        assert_eq!(e.vendor_ack_id.as_deref(), Some("ABGGFlA5Fpa"));
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound expected")
        };
        assert_eq!(m.from, "+16315551181");
        assert_eq!(m.to, "+16505551111");
        assert_eq!(m.message_type, "text");
        assert_eq!(m.text.as_deref(), Some("this is a text message"));
        assert_eq!(m.timestamp_ms, 1_504_902_988_000);
        assert_eq!(m.source_message_id, "ABGGFlA5Fpa");
        assert_eq!(e.raw.to_value()["text"]["body"], "this is a text message");
    }

    #[test]
    fn reply_context_fixture() {
        let ev = events(REPLY);
        let EventKind::Inbound(m) = &ev[0].kind else {
            panic!("inbound expected")
        };
        let c = m.context.as_ref().expect("context");
        assert_eq!(c.from.as_deref(), Some("+13137829971"));
        assert_eq!(
            c.id,
            "wamid.HBgLMrIwqjczMzA4MjQVAgarGBjcRjg3QkEwRjZGRTY5MERBMTUA"
        );
    }

    /// A callback with `statuses` and `messages` given as JSON text, in one change.
    fn batch(statuses: &[&str], messages: &[&str]) -> String {
        format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550783881","phone_number_id":"1"}},"statuses":[{}],"messages":[{}]}}}}]}}]}}"#,
            statuses.join(","),
            messages.join(",")
        )
    }

    const GOOD_STATUS: &str = r#"{"id":"wamid.OK","status":"delivered","timestamp":"1739321024","recipient_id":"16505551234"}"#;
    const GOOD_MESSAGE: &str = r#"{"from":"16505551234","id":"wamid.IN","timestamp":"1739321024","type":"text","text":{"body":"hi"}}"#;

    fn normalized(body: &str) -> Normalized {
        crate::Provider::MetaWhatsapp
            .normalize(&post_json(body), &CTX)
            .expect("the callback is accepted")
    }

    #[test]
    fn a_batch_with_a_too_deep_event_yields_one_event_and_one_unparsed() {
        let deep = |prefix: &str| {
            format!(
                r#"{prefix},"pricing":{}{}}}"#,
                "[".repeat(100_000),
                "]".repeat(100_000)
            )
        };
        let deep_status =
            deep(r#"{"id":"wamid.D","status":"read","timestamp":"1739321024","recipient_id":"1""#);
        let deep_message =
            deep(r#"{"from":"1","id":"wamid.E","timestamp":"1739321024","type":"text""#);
        for (statuses, messages, bad) in [
            (vec![GOOD_STATUS, &deep_status], vec![], &deep_status),
            (
                vec![GOOD_STATUS],
                vec![deep_message.as_str()],
                &deep_message,
            ),
        ] {
            let out = normalized(&batch(&statuses, &messages));
            assert_eq!(out.events.len(), 1);
            assert_eq!(out.events[0].vendor_ack_id.as_deref(), Some("wamid.OK"));
            assert_eq!(out.unparsed.len(), 1);
            // Kept byte for byte, never parsed.
            assert_eq!(out.unparsed[0].raw, *bad);
            let reason = &out.unparsed[0].reason;
            // The 64th `[` opens the 65th level (the event's own brace is the first).
            let offset = bad.find('[').expect("brackets") + 63;
            assert!(reason.starts_with("/entry/0/changes/0/value/"), "{reason}");
            assert!(
                reason.ends_with(&format!("nested deeper than 64 levels (at byte {offset})")),
                "{reason}"
            );
        }
    }

    #[test]
    fn a_batch_with_a_huge_number_yields_one_event_and_one_unparsed() {
        let digits = "9".repeat(100_000);
        let long_status = format!(
            r#"{{"id":"wamid.L","status":"read","timestamp":"1739321024","recipient_id":"1","pricing":{{"billable":{digits}}}}}"#
        );
        // In a key the status reads, too: its parser would refuse it.
        let long_timestamp = format!(
            r#"{{"id":"wamid.T","status":"read","timestamp":{digits},"recipient_id":"1"}}"#
        );
        let long_message = format!(
            r#"{{"from":"1","id":"wamid.N","timestamp":"1739321024","type":"location","location":{{"latitude":{digits},"longitude":1}}}}"#
        );
        let body = batch(
            &[&long_status, GOOD_STATUS, &long_timestamp],
            &[&long_message, GOOD_MESSAGE],
        );
        let out = normalized(&body);
        let ids: Vec<_> = out
            .events
            .iter()
            .map(|e| e.vendor_ack_id.as_deref())
            .collect();
        assert_eq!(ids, [Some("wamid.OK"), Some("wamid.IN")]);
        let raws: Vec<&str> = out.unparsed.iter().map(|u| u.raw.as_str()).collect();
        assert_eq!(raws, [&long_status, &long_timestamp, &long_message]);
        for u in &out.unparsed {
            assert!(
                u.reason.contains("a number longer than 100 characters"),
                "{}",
                u.reason
            );
            assert!(u.reason.len() <= crate::provider::MAX_UNPARSED_REASON);
        }
    }

    #[test]
    fn items_that_cannot_be_normalized_are_kept_and_the_rest_delivered() {
        for (statuses, messages) in [
            (vec!["1"], vec![]),
            (vec![r#"{"id":"x"}"#], vec![]),
            (
                vec![r#"{"id":"x","status":"sent","recipient_id":"1","timestamp":"soon"}"#],
                vec![],
            ),
            (vec![], vec![r#"{"id":"x"}"#]),
            (vec![], vec![r#"{"id":"x","from":"1","timestamp":"soon"}"#]),
            (vec![], vec!["[]"]),
        ] {
            let mut with_good: Vec<&str> = statuses.clone();
            with_good.push(GOOD_STATUS);
            let mut messages_good: Vec<&str> = messages.clone();
            messages_good.push(GOOD_MESSAGE);
            let out = normalized(&batch(&with_good, &messages_good));
            assert_eq!(out.events.len(), 2, "{statuses:?} {messages:?}");
            assert_eq!(out.unparsed.len(), 1, "{statuses:?} {messages:?}");
            let bad = statuses.first().or(messages.first()).expect("one bad item");
            assert_eq!(out.unparsed[0].raw, *bad);
            assert!(out.unparsed[0].reason.contains("/entry/0/changes/0/value/"));
        }
    }

    #[test]
    fn items_that_are_not_objects_beside_a_deep_one_are_kept_too() {
        // The general path cannot parse this body (too deep for serde_json): the fast path
        // keeps every item that is not an event itself.
        let deep = format!(
            r#"{{"id":"wamid.D","x":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let out = normalized(&batch(&[GOOD_STATUS, "7", &deep], &["null", GOOD_MESSAGE]));
        assert_eq!(out.events.len(), 2);
        let reasons: Vec<&str> = out.unparsed.iter().map(|u| u.reason.as_str()).collect();
        assert_eq!(
            reasons[..2],
            [
                "unexpected shape at /entry/0/changes/0/value/statuses/1: expected an object",
                "/entry/0/changes/0/value/statuses/2: nested deeper than 64 levels (at byte 83)",
            ]
        );
        assert_eq!(
            reasons[2],
            "unexpected shape at /entry/0/changes/0/value/messages/0: expected an object"
        );
    }

    #[test]
    fn an_envelope_that_is_not_one_is_still_refused() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let deep_object = format!(r#"{{"entry":{}}}"#, deep);
        let deep_metadata = batch(&[], &[GOOD_MESSAGE]).replace(
            r#""display_phone_number":"15550783881""#,
            &format!(r#""display_phone_number":{deep}"#),
        );
        for body in [deep.as_str(), &deep_object, &deep_metadata] {
            assert!(
                crate::Provider::MetaWhatsapp
                    .normalize(&post_json(body), &CTX)
                    .is_err(),
                "{}",
                &body[..40]
            );
        }
        // Deep data outside every event (the entry's own fields) is never forwarded: the
        // events are normalized as usual.
        let outside = batch(&[GOOD_STATUS], &[]).replace(
            r#""id":"1","changes""#,
            &format!(r#""id":"1","junk":{deep},"changes""#),
        );
        let out = normalized(&outside);
        assert_eq!((out.events.len(), out.unparsed.len()), (1, 0));
    }

    #[test]
    fn an_event_the_general_path_parsed_is_still_held_to_the_limits() {
        // A repeated key sends the callback down the general path; 100 levels parse there.
        let deepish = format!(
            r#"{{"id":"wamid.D","status":"read","timestamp":"1","recipient_id":"1","x":{}{}}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        let body = batch(&[GOOD_STATUS, &deepish], &[]).replace(
            r#"{"object":"whatsapp_business_account","entry":"#,
            r#"{"object":"whatsapp_business_account","entry":[],"entry":"#,
        );
        assert!(from_text(body.as_bytes(), &CTX, &META).is_none());
        let out = normalized(&body);
        assert_eq!((out.events.len(), out.unparsed.len()), (1, 1));
        assert!(
            out.unparsed[0]
                .reason
                .contains("nested deeper than 64 levels")
        );
    }

    #[test]
    fn messages_field_without_messages_yields_nothing() {
        assert!(events(NO_MESSAGES).is_empty());
    }

    fn envelope(field: &str, value: &Value) -> String {
        json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
            {"field": field, "value": value}
        ]}]})
        .to_string()
    }

    fn status_body(status: &str) -> String {
        envelope(
            "messages",
            &json!({"messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550783881", "phone_number_id": "1"},
                "statuses": [{"id": "wamid.X", "status": status, "timestamp": "1739321024",
                    "recipient_id": "16505551234"}]}),
        )
    }

    #[test]
    fn status_mapping_including_unknown_fallback() {
        for (value, expected, informational) in [
            ("sent", Status::Sent, false),
            ("delivered", Status::Delivered, false),
            ("read", Status::Seen, false),
            ("played", Status::Seen, false),
            ("failed", Status::Failed, false),
            ("deleted", Status::Queued, true),
            ("warning", Status::Queued, true),
            ("brand_new_status", Status::Queued, true),
        ] {
            let ev = events(&status_body(value));
            let s = ev[0].status().expect("status");
            assert_eq!(
                (s.status, s.informational),
                (expected, informational),
                "{value}"
            );
            assert_eq!(s.timestamp_ms, 1_739_321_024_000);
            assert_eq!(ev[0].channel_value, "+16505551234");
        }
    }

    #[test]
    fn failed_status_carries_error_and_correlation() {
        let body = envelope(
            "messages",
            &json!({"statuses": [{"id": "wamid.F", "status": "failed", "timestamp": "1739321024",
                "recipient_id": "16505551234",
                "biz_opaque_callback_data": "{\"distinct_id\":\"u1\"}",
                "errors": [{"code": 131050, "title": "T", "error_data": {"details": "D"}}]}]}),
        );
        let ev = events(&body);
        let s = ev[0].status().expect("status");
        let err = s.error.as_ref().expect("error");
        assert_eq!(err.code.as_deref(), Some("131050"));
        assert_eq!(err.message.as_deref(), Some("T"));
        assert_eq!(
            ev[0].correlation["biz_opaque_callback_data"],
            json!("{\"distinct_id\":\"u1\"}")
        );
        let payload = render(&ev[0], &PayloadOptions::default());
        assert_eq!(
            payload["reference"]["biz_opaque_callback_data"],
            "{\"distinct_id\":\"u1\"}"
        );
        // Only details: message falls back to error_data.details.
        let e = first_error(Some(&json!([{"code": 1, "error_data": {"details": "D"}}])))
            .expect("error");
        assert_eq!(e.message.as_deref(), Some("D"));
    }

    #[test]
    fn idempotency_keys_differ_per_status_and_are_stable() {
        let a = events(&status_body("sent"));
        let b = events(&status_body("delivered"));
        assert_ne!(a[0].idempotency_key, b[0].idempotency_key);
        assert_eq!(
            a[0].idempotency_key,
            events(&status_body("sent"))[0].idempotency_key
        );
    }

    #[test]
    fn non_ascii_text_survives() {
        let body = envelope(
            "messages",
            &json!({"metadata": {"display_phone_number": "1 555-078-3881"},
                "messages": [{"from": "16505551234", "id": "wamid.E", "timestamp": "1739321024",
                "type": "text", "text": {"body": "Olá 👋🏽 Привет 日本語"}}]}),
        );
        let ev = events(&body);
        let EventKind::Inbound(m) = &ev[0].kind else {
            panic!("inbound expected")
        };
        assert_eq!(m.text.as_deref(), Some("Olá 👋🏽 Привет 日本語"));
        assert_eq!(m.to, "+15550783881");
    }

    #[test]
    fn other_fields_and_value_errors_yield_no_events() {
        let body = envelope(
            "message_template_status_update",
            &json!({"event": "APPROVED", "message_template_id": 1}),
        );
        assert!(events(&body).is_empty());
        let body = envelope(
            "messages",
            &json!({"errors": [{"code": 130429, "title": "Rate limit hit"}]}),
        );
        assert!(events(&body).is_empty());
        assert!(events(r#"{"object":"page","entry":[{"id":"1","messaging":[]}]}"#).is_empty());
    }

    #[test]
    fn malformed_inputs_are_errors_not_panics() {
        let bad: &[&str] = &[
            "",
            "   ",
            "{\"object\":\"whatsapp_business_account\",\"entry\":[",
            "[]",
            "[{\"entry\":[]}]",
            "{}",
            "{\"entry\":{}}",
            "{\"entry\":[1]}",
            "{\"entry\":[{\"changes\":{}}]}",
            "{\"entry\":[{\"changes\":[{\"field\":\"messages\",\"value\":[]}]}]}",
            "{\"entry\":[{\"changes\":[{\"field\":\"messages\",\"value\":{\"statuses\":{}}}]}]}",
            "{\"entry\":[{\"changes\":[{\"field\":\"messages\",\"value\":{\"messages\":7}}]}]}",
            "\u{0}\u{1}garbage",
        ];
        for body in bad {
            assert!(normalize(&post_json(body), &CTX).is_err(), "{body:?}");
        }
        let wrong_ct = CallbackRequest::post(INBOUND_TEXT).with_content_type("text/html");
        assert!(matches!(
            normalize(&wrong_ct, &CTX),
            Err(NormalizeError::UnsupportedContentType { .. })
        ));
        let mut put = post_json(INBOUND_TEXT);
        put.method = Method::PUT;
        assert!(normalize(&put, &CTX).is_err());
        let garbage = vec![b'{'; 10 * 1024 * 1024];
        assert!(
            normalize(
                &post_json(&String::from_utf8(garbage).expect("ascii")),
                &CTX
            )
            .is_err()
        );
        let huge: Vec<u8> = (0..10 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        assert!(normalize(&CallbackRequest::post(huge), &CTX).is_err());
    }

    /// A change with `contacts` and one `statuses` item, as JSON text.
    fn statuses_with_contacts(contacts: &str, status: &str) -> String {
        format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"contacts":{contacts},"statuses":[{status}]}}}}]}}]}}"#
        )
    }

    /// The address and user identifiers of the one event of `body`.
    fn user_of(body: &str) -> (String, crate::ChannelUser) {
        let out = normalized(body);
        assert_eq!(out.unparsed, [], "{body}");
        let [event] = out.events.as_slice() else {
            panic!("one event expected: {body}")
        };
        (event.channel_value.clone(), event.channel_user.clone())
    }

    fn ids(
        user_id: Option<&str>,
        parent: Option<&str>,
        username: Option<&str>,
    ) -> crate::ChannelUser {
        crate::ChannelUser {
            user_id: user_id.map(str::to_owned),
            parent_user_id: parent.map(str::to_owned),
            username: username.map(str::to_owned),
        }
    }

    #[test]
    fn a_status_names_its_user_by_number_else_bsuid_else_parent_bsuid() {
        let contacts = r#"[{"profile":{"username":"sheena"},"user_id":"US.1234","parent_user_id":"US.ENT.5678"},{"wa_id":"16505551234","user_id":"US.99"},{"wa_id":"US.55","profile":{"username":"wa"}}]"#;
        for (status, address, user) in [
            (
                r#"{"id":"w","status":"read","timestamp":"1","recipient_user_id":"US.1234"}"#,
                "US.1234",
                ids(Some("US.1234"), Some("US.ENT.5678"), Some("sheena")),
            ),
            (
                // Sent to the parent BSUID: the contact adds the BSUID, the better address.
                r#"{"id":"w","status":"read","timestamp":"1","recipient_parent_user_id":"US.ENT.5678"}"#,
                "US.1234",
                ids(Some("US.1234"), Some("US.ENT.5678"), Some("sheena")),
            ),
            (
                r#"{"id":"w","status":"read","timestamp":"1","recipient_parent_user_id":"US.ENT.9"}"#,
                "US.ENT.9",
                ids(None, Some("US.ENT.9"), None),
            ),
            // The contact with the same number adds its BSUID.
            (
                r#"{"id":"w","status":"read","timestamp":"1","recipient_id":"16505551234"}"#,
                "+16505551234",
                ids(Some("US.99"), None, None),
            ),
            // No contact names this user: only the status's own ids.
            (
                r#"{"id":"w","status":"read","timestamp":"1","recipient_user_id":" US.4321 "}"#,
                "US.4321",
                ids(Some("US.4321"), None, None),
            ),
            // A recipient_id holding a BSUID (or a parent BSUID) is one.
            (
                r#"{"id":"w","status":"read","timestamp":"1","recipient_id":"US.4321"}"#,
                "US.4321",
                ids(Some("US.4321"), None, None),
            ),
            (
                r#"{"id":"w","status":"read","timestamp":"1","recipient_id":"US.ENT.4321"}"#,
                "US.ENT.4321",
                ids(None, Some("US.ENT.4321"), None),
            ),
            // A contact whose wa_id is the BSUID names the same user.
            (
                r#"{"id":"w","status":"read","timestamp":"1","recipient_id":"US.55"}"#,
                "US.55",
                ids(Some("US.55"), None, Some("wa")),
            ),
            // A group status keeps its participant and only its own ids.
            (
                r#"{"id":"w","status":"read","timestamp":"1","recipient_type":"group","recipient_id":"G1","recipient_participant_id":"16505551234","recipient_user_id":"US.1234"}"#,
                "+16505551234",
                ids(Some("US.1234"), None, None),
            ),
        ] {
            let body = statuses_with_contacts(contacts, status);
            assert_eq!(user_of(&body), (address.to_owned(), user), "{status}");
        }
    }

    #[test]
    fn a_message_names_its_sender_by_number_else_bsuid() {
        let message = |fields: &str| {
            batch(
                &[],
                &[&format!(
                    r#"{{{fields},"id":"wamid.B","timestamp":"1739321024","type":"text","text":{{"body":"hi"}}}}"#
                )],
            )
        };
        for (fields, address, user) in [
            (
                r#""from_user_id":"US.1234""#,
                "US.1234",
                ids(Some("US.1234"), None, None),
            ),
            (
                r#""from_parent_user_id":"US.ENT.5678""#,
                "US.ENT.5678",
                ids(None, Some("US.ENT.5678"), None),
            ),
            (
                r#""from":"16505551234","from_user_id":"US.1234""#,
                "+16505551234",
                ids(Some("US.1234"), None, None),
            ),
            (
                r#""from":"US.1234""#,
                "US.1234",
                ids(Some("US.1234"), None, None),
            ),
            (
                r#""from":"16505551234""#,
                "+16505551234",
                ids(None, None, None),
            ),
        ] {
            let out = normalized(&message(fields));
            let EventKind::Inbound(m) = &out.events[0].kind else {
                panic!("inbound expected")
            };
            assert_eq!(m.from, address, "{fields}");
            assert_eq!(out.events[0].channel_value, address, "{fields}");
            assert_eq!(out.events[0].channel_user, user, "{fields}");
        }
    }

    #[test]
    fn an_item_naming_no_user_is_unparsed_and_the_rest_delivered() {
        let nobody_status =
            r#"{"id":"wamid.Z","status":"read","timestamp":"1","recipient_user_id":null}"#;
        let nobody_message = r#"{"id":"wamid.Y","timestamp":"1","type":"text","from_user_id":"","text":{"body":"x"}}"#;
        let bsuid_status =
            r#"{"id":"wamid.OK2","status":"read","timestamp":"1","recipient_user_id":"US.1234"}"#;
        let out = normalized(&batch(
            &[nobody_status, bsuid_status, GOOD_STATUS],
            &[nobody_message, GOOD_MESSAGE],
        ));
        let acks: Vec<_> = out
            .events
            .iter()
            .map(|e| e.vendor_ack_id.as_deref())
            .collect();
        assert_eq!(
            acks,
            [Some("wamid.OK2"), Some("wamid.OK"), Some("wamid.IN")]
        );
        let reasons: Vec<&str> = out.unparsed.iter().map(|u| u.reason.as_str()).collect();
        assert_eq!(reasons.len(), 2);
        assert!(
            reasons[0].ends_with("/statuses/0/recipient_id"),
            "{reasons:?}"
        );
        assert!(reasons[1].ends_with("/messages/0/from"), "{reasons:?}");
    }

    #[test]
    fn contacts_too_deep_to_parse_only_add_nothing() {
        let deep = format!("[{}{}]", "[".repeat(100_000), "]".repeat(100_000));
        let body = statuses_with_contacts(
            &deep,
            r#"{"id":"w","status":"read","timestamp":"1","recipient_user_id":"US.1234"}"#,
        );
        assert_eq!(
            user_of(&body),
            ("US.1234".to_owned(), ids(Some("US.1234"), None, None))
        );
    }

    #[test]
    fn edits_and_revokes_carry_the_original_message() {
        let edit = r#"{"from":"16505551234","id":"wamid.E","timestamp":"1739321024","type":"edit","edit":{"original_message_id":"wamid.O","message":{"type":"video","video":{"id":"m1","mime_type":"video/mp4","caption":"new caption"}}}}"#;
        let bare_edit = r#"{"from":"16505551234","id":"wamid.F","timestamp":"1739321024","type":"edit","edit":{"message":"x"}}"#;
        let revoke = r#"{"from":"16505551234","id":"wamid.R","timestamp":"1739321024","type":"revoke","revoke":{"original_message_id":"wamid.O"}}"#;
        let out = normalized(&batch(&[], &[edit, bare_edit, revoke]));
        assert_eq!(out.unparsed, []);
        let messages: Vec<&InboundMessage> = out
            .events
            .iter()
            .map(|e| match &e.kind {
                EventKind::Inbound(m) => m,
                EventKind::Status(_) => panic!("inbound expected"),
            })
            .collect();
        let [edited, bare, revoked] = messages.as_slice() else {
            panic!("three messages expected")
        };
        assert_eq!(edited.message_type, "edit");
        assert_eq!(edited.original_message_id.as_deref(), Some("wamid.O"));
        assert_eq!(edited.text.as_deref(), Some("new caption"));
        assert_eq!(edited.media.len(), 1);
        assert_eq!(edited.media[0].content_type.as_deref(), Some("video/mp4"));
        assert_eq!(edited.context, None);
        // Whatever an edit lacks, it is still delivered, as an edit.
        assert_eq!(
            (bare.message_type.as_str(), bare.text.as_deref()),
            ("edit", None)
        );
        assert_eq!(bare.original_message_id, None);
        assert_eq!(revoked.message_type, "revoke");
        assert_eq!(revoked.original_message_id.as_deref(), Some("wamid.O"));
        assert_eq!(revoked.text, None);
        let payload = render(&out.events[2], &PayloadOptions::default());
        assert_eq!(
            payload["suprsend_inbound_message"]["original_message_id"],
            "wamid.O"
        );
    }

    #[test]
    fn both_formats_carry_the_users_identifiers() {
        let body = statuses_with_contacts(
            r#"[{"profile":{"username":"sheena"},"user_id":"US.1234","parent_user_id":"US.ENT.5678"}]"#,
            r#"{"id":"w","status":"delivered","timestamp":"1","recipient_user_id":"US.1234"}"#,
        );
        let event = &normalized(&body).events[0];
        let suprsend = render(event, &PayloadOptions::default());
        let standard = render(
            event,
            &PayloadOptions {
                format: crate::payload::Format::Standard,
                ..PayloadOptions::default()
            },
        );
        for payload in [&suprsend, &standard["data"]] {
            assert_eq!(payload["channel_value"], "US.1234");
            assert_eq!(payload["channel_user_id"], "US.1234");
            assert_eq!(payload["channel_parent_user_id"], "US.ENT.5678");
            assert_eq!(payload["channel_username"], "sheena");
        }
        // Absent identifiers are absent, not null.
        let plain = render(&events(&status_body("sent"))[0], &PayloadOptions::default());
        for field in [
            "channel_user_id",
            "channel_parent_user_id",
            "channel_username",
        ] {
            assert!(plain.get(field).is_none(), "{field}");
        }
    }
}
