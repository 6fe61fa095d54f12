//! Mandrill (Mailchimp Transactional Email) webhooks: message events, inbound email,
//! and rejection and allow list sync events.
//!
//! # Callback format
//!
//! `POST`, `Content-Type: application/x-www-form-urlencoded`, with one field,
//! `mandrill_events`: a JSON array of events (a batch). Every element becomes one event,
//! or is kept as [`Unparsed`] when it is beyond the [`limits`](crate::limits), is not an
//! object, or lacks what its event needs (the array is split as JSON text first; the
//! unparsed element's replay body is the same form with that element alone). A body that
//! is not such a form (JSON, no `mandrill_events`, a repeated `mandrill_events`, a value
//! that is not a JSON array) is refused.
//!
//! - **Message events** (`event`: `send`, `deferral`, `hard_bounce`, `soft_bounce`,
//!   `open`, `click`, `spam`, `unsub`, `reject`): `msg` is the message as Mandrill stores
//!   it: `_id`, `email` (the recipient), `state`, `subject`, `sender`, `tags`,
//!   `metadata`, `smtp_events`, `opens`, `clicks`, `bounce_description`, `diag`, …;
//!   `url` is the link of a `click`; `ts` the event time (Unix seconds).
//!   - `channel_value` is `msg.email`, as sent (required);
//!   - `vendor_ack_id` is `msg._id` (else the event's own `_id`, which Mandrill sets to the
//!     same value): the `_id` that the send API (`messages/send`, `send-template`)
//!     returned for that recipient, kept as sent;
//!   - time: the event's `ts`, else the time the callback was received;
//!   - correlation ids: the entries of `msg.metadata` (set at send time) under their own
//!     names, then `msg.tags` as `tags` (an array, when not empty; metadata wins on a
//!     clash);
//!   - error (`failed` and `bounced`): `{code: msg.bounce_description, message:
//!     msg.diag}` when Mandrill gives them (`bad_mailbox` and `smtp;550 5.1.1 …` for a
//!     hard bounce);
//!   - idempotency key: `msg._id`, `event`, `ts` (as sent) and, for a click, `url`;
//!     without an `_id`, a hash of the whole event. Mandrill retries a batch as it was.
//! - **Inbound email** (`event: inbound`): `msg` holds `raw_msg`, `headers`, `text`,
//!   `html`, `from_email`, `from_name`, `to` (`[[address, name], …]`), `email` (the
//!   address the inbound route matched), `subject`, `spam_report`, `dkim`, `spf`,
//!   `attachments` and `images`. It is an inbound message on channel `email` of type
//!   `email`: `from` (and `channel_value`) is `from_email` (required), `to` is `email`
//!   (else the first `to` address), the text is `text` when not empty (the subject and
//!   the HTML stay in `vendor_response`), and each attachment and image is a `media`
//!   entry with its `name`, `type` and size (of the decoded bytes for base64 content:
//!   an attachment's `base64` flag says, images always are);
//!   its content is posted inline, so it has no URL, and stays in `vendor_response`
//!   only. `source_message_id` is the `Message-Id` header (without `<>`; empty when
//!   absent); Mandrill sends no id of its own, so there is no `vendor_ack_id`. The
//!   idempotency key is a hash of the whole event: one email sent to two inbound
//!   addresses is two events with the same `Message-Id` and time, and a retry sends an
//!   event unchanged.
//! - **Sync events** (`type: blacklist` or `whitelist`, with `action` `add`, `change` or
//!   `remove` and a `reject` or `entry` record): changes to the account's rejection deny
//!   list and allow list. They name an address but no message: not a status (a status is
//!   a message's, and a deny-list entry added by a hard bounce is already reported as
//!   that message's `hard_bounce`) nor an inbound message. So they become no event: the
//!   callback's [`Normalized::control`] is a [`Control::Ignored`] that names them, as for
//!   SendGrid's account events, and the batch's other events are delivered. So is an
//!   element of an unknown `event` that has no `msg`.
//!
//! The `vendor_response` of each event is its element of the batch, as a JSON value.
//!
//! # URL checks and test batches
//!
//! When a webhook is added, Mandrill checks its URL with a `HEAD` request, and, when that
//! is not answered 200, with a `POST` whose `mandrill_events` is an empty array `[]`,
//! signed with the generic key `test-webhook` (the webhook's own key does not exist
//! yet). Both carry no event. A `HEAD` or `GET` with an empty body passes verification
//! without a signature and is answered 200 with no event ([`Control::Ignored`]; its query
//! is never read); an empty batch is answered the same way, and passes verification
//! when signed with the webhook's key or with `test-webhook`. The "send test" batch of
//! Mandrill's dashboard is an ordinary signed batch.
//!
//! # Signature
//!
//! `X-Mandrill-Signature` = base64(HMAC-SHA1(`webhook_key`, URL + Σ name + value)), where
//! URL is the webhook URL exactly as Mandrill called it and the sum runs over the `POST`
//! parameters (form-decoded) sorted by name. The URL is `public_url` (scheme, host, path)
//! with the request's own query string; a fragment of `public_url` is tried without and
//! with it. A repeated parameter name is refused (Mandrill sends each once, and which one
//! was signed would be ambiguous). The tag is compared as bytes in constant time.
//! Mandrill signs no timestamp, so there is no freshness check; a replayed batch is
//! deduplicated by its events' keys.
//!
//! # Verify keys
//!
//! | key | required | meaning |
//! |---|---|---|
//! | `webhook_key` | yes | the key Mandrill shows for the webhook (Settings → Webhooks), not the API key |
//! | `public_url` | no | the webhook URL as entered in Mandrill, e.g. `https://notify.example.com/callbacks/mandrill`; its scheme, host and path are signed with the request's own query string (or, when the request has none, `public_url`'s). Without it the request target must be an absolute URL, else verification fails with "mandrill needs verify.public_url" |
//!
//! # Status mapping
//!
//! | Mandrill `event` | status | notes |
//! |---|---|---|
//! | `send` | `sent` | "sent successfully" to the recipient's server; Mandrill reports no separate delivery, so nothing maps to `delivered` |
//! | `deferral` | `queued` | informational: the receiving server deferred it, Mandrill retries |
//! | `hard_bounce` | `bounced` | error `{bounce_description, diag}` |
//! | `soft_bounce` | `failed` | Mandrill stops delivering after a bounce; the address is not known to be bad. Error `{bounce_description, diag}` |
//! | `open` | `seen` | |
//! | `click` | `clicked` | |
//! | `spam` | `complained` | |
//! | `unsub` | `unsubscribed` | |
//! | `reject` | `failed` | not attempted: the address is on the rejection deny list |
//! | `inbound` | (inbound message) | |
//! | sync events (`type: blacklist`, `whitelist`) | (no event) | about no message: see above |
//! | any other `event` with a `msg` | `queued` | informational |

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::Method;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::event::{
    Channel, ChannelUser, ErrorInfo, Event, EventKind, InboundMessage, Media, Status, StatusUpdate,
    idempotency_key, idempotency_key_of_value,
};
use crate::mac::{self, Hash};
use crate::provider::batch_element;
use crate::provider::signed_form::{FORM, callback_url, parse_public_url};
use crate::provider::{
    Context, Control, Normalized, Unparsed, VerifyOptions, VerifySettings, ignored_events,
};
use crate::{CallbackRequest, NormalizeError, Secret, VerifyConfigError, VerifyError, timestamp};

/// Provider id.
const PROVIDER: &str = "mandrill";
/// Keys of the `verify:` block.
const KNOWN_KEYS: &[&str] = &["webhook_key", "public_url"];
/// Header with the base64 HMAC-SHA1.
const SIGNATURE_HEADER: &str = "x-mandrill-signature";
/// The form field holding the batch.
const EVENTS_FIELD: &str = "mandrill_events";
/// The generic key of Mandrill's URL check (an empty batch).
const TEST_KEY: &[u8] = b"test-webhook";

/// Checks `X-Mandrill-Signature` (HMAC-SHA1 over the webhook URL and the sorted form).
#[derive(Debug, Clone)]
pub struct Verifier {
    webhook_key: Secret,
    public_url: Option<String>,
}

impl Verifier {
    /// Builds the verifier from the `verify:` settings: `webhook_key` (required),
    /// `public_url` (optional, an absolute `http(s)://` URL).
    pub fn from_settings(settings: &VerifySettings) -> Result<Self, VerifyConfigError> {
        settings.only(PROVIDER, KNOWN_KEYS)?;
        let webhook_key = settings.require(PROVIDER, "webhook_key")?.clone();
        let public_url = settings
            .get("public_url")
            .map(|u| parse_public_url(PROVIDER, u.expose()))
            .transpose()?;
        Ok(Self {
            webhook_key,
            public_url,
        })
    }

    /// Checks the callback's `X-Mandrill-Signature` on the URL and the form parameters.
    /// A `HEAD` or `GET` with an empty body (Mandrill's URL check, which carries nothing
    /// and is normalized into no event) passes unsigned. No clock check: Mandrill signs no
    /// timestamp.
    pub fn verify(&self, req: &CallbackRequest, _opts: &VerifyOptions) -> Result<(), VerifyError> {
        if (req.method == Method::HEAD || req.method == Method::GET) && req.body.is_empty() {
            return Ok(());
        }
        let provided = req
            .headers
            .get(SIGNATURE_HEADER)
            .ok_or(VerifyError::Missing("X-Mandrill-Signature header"))?
            .to_str()
            .map_err(|_| {
                VerifyError::Malformed("X-Mandrill-Signature is not visible ASCII".into())
            })?
            .trim();
        if provided.is_empty() {
            return Err(VerifyError::Missing("X-Mandrill-Signature header"));
        }
        let tag = STANDARD
            .decode(provided)
            .map_err(|e| VerifyError::Malformed(format!("signature is not base64: {e}")))?;
        let target = callback_url(PROVIDER, self.public_url.as_deref(), req)?;
        let mut pairs = req.form_pairs();
        pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if pairs.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(VerifyError::Malformed(
                "a form parameter is repeated".into(),
            ));
        }
        let mut data = Vec::with_capacity(req.body.len());
        for (k, v) in &pairs {
            data.extend_from_slice(k.as_bytes());
            data.extend_from_slice(v.as_bytes());
        }
        let mut urls = vec![target.url.clone()];
        if let Some(f) = &target.fragment {
            urls.push(format!("{}#{f}", target.url));
        }
        let signed_with = |key: &[u8]| {
            urls.iter()
                .any(|url| mac::hmac(Hash::Sha1, key, &[url.as_bytes(), &data]).matches(&tag))
        };
        if signed_with(self.webhook_key.expose().as_bytes())
            || (is_empty_batch(&pairs) && signed_with(TEST_KEY))
        {
            Ok(())
        } else {
            Err(VerifyError::Mismatch)
        }
    }
}

/// True when the form is `mandrill_events=[]` alone (Mandrill's URL check).
fn is_empty_batch(pairs: &[(String, String)]) -> bool {
    matches!(pairs, [(k, v)] if k == EVENTS_FIELD
        && serde_json::from_str::<Vec<serde::de::IgnoredAny>>(v).is_ok_and(|e| e.is_empty()))
}

/// Normalizes one Mandrill callback: every element of the `mandrill_events` batch becomes
/// an event, an unparsed event, or (sync events) part of a [`Control::Ignored`]; a
/// `HEAD` or `GET` (Mandrill's URL check) becomes a [`Control::Ignored`] alone.
pub fn normalize(req: &CallbackRequest, ctx: &Context) -> Result<Normalized, NormalizeError> {
    if req.method == Method::HEAD || req.method == Method::GET {
        return Ok(Normalized::control(Control::Ignored {
            reason: format!("Mandrill webhook URL check ({}), no events", req.method),
        }));
    }
    if req.method != Method::POST {
        return Err(NormalizeError::UnsupportedMethod {
            provider: PROVIDER,
            method: req.method.to_string(),
        });
    }
    req.expect_content_type(PROVIDER, &[FORM], FORM)?;
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Err(NormalizeError::EmptyBody);
    }
    if matches!(
        req.body.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    ) {
        return Err(NormalizeError::shape(
            "body",
            "a form with mandrill_events (Mandrill posts form data, not JSON)",
        ));
    }
    let pairs = req.form_pairs();
    let mut values = pairs.iter().filter(|(k, _)| k == EVENTS_FIELD);
    let events = match (values.next(), values.next()) {
        (Some((_, v)), None) => v,
        (None, _) => return Err(NormalizeError::MissingField(EVENTS_FIELD.into())),
        (Some(_), Some(_)) => {
            return Err(NormalizeError::invalid(EVENTS_FIELD, "repeated"));
        }
    };
    batch(events, ctx)
}

/// What a batch element becomes.
// Built and taken apart at once, one element at a time.
#[expect(
    clippy::large_enum_variant,
    reason = "a transient result, never stored"
)]
enum Element {
    /// An event.
    Event(Event),
    /// About no message: left out, described by this text.
    Ignored(String),
}

/// Normalizes the `mandrill_events` JSON text.
fn batch(text: &str, ctx: &Context) -> Result<Normalized, NormalizeError> {
    let Ok(elements) = serde_json::from_str::<Vec<&RawValue>>(text) else {
        // Not a JSON array: its own error when it is not JSON, else its shape.
        serde_json::from_str::<serde::de::IgnoredAny>(text)
            .map_err(|source| NormalizeError::InvalidJson { source })?;
        return Err(NormalizeError::shape(
            EVENTS_FIELD,
            "a JSON array of events",
        ));
    };
    if elements.is_empty() {
        return Ok(Normalized::control(Control::Ignored {
            reason: "an empty Mandrill batch (Mandrill's URL check), no events".to_owned(),
        }));
    }
    let mut out = Normalized::events(Vec::with_capacity(elements.len()));
    let mut ignored = Vec::new();
    for (i, element) in elements.into_iter().enumerate() {
        let text = element.get();
        let normalized = batch_element(text, |item| element_of(i, item, ctx));
        match normalized {
            Ok(Element::Event(event)) => out.events.push(event),
            Ok(Element::Ignored(what)) => ignored.push(what),
            Err(reason) => out
                .unparsed
                .push(Unparsed::new(reason, text).with_body(alone(text))),
        }
    }
    if !ignored.is_empty() {
        out.control = Some(Control::Ignored {
            reason: ignored_reason(&ignored),
        });
    }
    Ok(out)
}

/// A Mandrill body holding the event `text` alone: `mandrill_events=[text]`.
fn alone(text: &str) -> String {
    let batch = format!("[{text}]");
    let mut body = format!("{EVENTS_FIELD}=");
    body.extend(form_urlencoded::byte_serialize(batch.as_bytes()));
    body
}

/// The reason of the [`Control::Ignored`] of a batch: one line, naming the first few.
fn ignored_reason(what: &[String]) -> String {
    let (count, listed) = ignored_events(what, "Mandrill event");
    format!("{count} about no message, not delivered: {listed}")
}

/// `text` on one line, at most 100 characters (for reasons).
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(100)
        .collect()
}

/// A string field (empty counts as absent).
fn str_field(v: &Map<String, Value>, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// What a Mandrill `event` value means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mapping {
    status: Status,
    informational: bool,
    /// A documented message event (these require `msg.email`).
    known: bool,
}

/// Maps `event` onto the status vocabulary; see the module table.
fn map_event(event: &str) -> Mapping {
    let m = |status, informational| Mapping {
        status,
        informational,
        known: true,
    };
    match event {
        "send" => m(Status::Sent, false),
        "deferral" => m(Status::Queued, true),
        "hard_bounce" => m(Status::Bounced, false),
        "soft_bounce" | "reject" => m(Status::Failed, false),
        "open" => m(Status::Seen, false),
        "click" => m(Status::Clicked, false),
        "spam" => m(Status::Complained, false),
        "unsub" => m(Status::Unsubscribed, false),
        _ => Mapping {
            status: Status::Queued,
            informational: true,
            known: false,
        },
    }
}

/// The event time: `ts` (Unix seconds), else the receive time.
fn time_of(item: &Map<String, Value>, i: usize, ctx: &Context) -> Result<i64, NormalizeError> {
    match item.get("ts") {
        None | Some(Value::Null) => Ok(ctx.received_at_ms),
        Some(Value::Number(n)) => n
            .as_f64()
            .and_then(timestamp::number_to_ms)
            .ok_or_else(|| NormalizeError::invalid(format!("/{i}/ts"), "not a Unix timestamp")),
        Some(Value::String(s)) if s.is_ascii() => timestamp::parse_str_ms(s)
            .ok_or_else(|| NormalizeError::invalid(format!("/{i}/ts"), "not a Unix timestamp")),
        Some(_) => Err(NormalizeError::invalid(
            format!("/{i}/ts"),
            "not a Unix timestamp",
        )),
    }
}

/// Normalizes batch element `i`.
fn element_of(i: usize, item: Value, ctx: &Context) -> Result<Element, NormalizeError> {
    let Value::Object(obj) = &item else {
        return Err(NormalizeError::shape(format!("/{i}"), "an event object"));
    };
    let name = match obj.get("event") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        None | Some(Value::Null) if obj.get("type").is_some_and(Value::is_string) => {
            return Ok(Element::Ignored(describe_sync(obj)));
        }
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(NormalizeError::MissingField(format!("/{i}/event")));
        }
        Some(_) => {
            return Err(NormalizeError::invalid(
                format!("/{i}/event"),
                "not a string",
            ));
        }
    };
    let timestamp_ms = time_of(obj, i, ctx)?;
    let msg = match obj.get("msg") {
        Some(Value::Object(m)) => Some(m),
        None | Some(Value::Null) => None,
        Some(_) => {
            return Err(NormalizeError::invalid(
                format!("/{i}/msg"),
                "not an object",
            ));
        }
    };
    if name == "inbound" {
        let msg = msg.ok_or_else(|| NormalizeError::MissingField(format!("/{i}/msg")))?;
        let event = inbound(i, msg, timestamp_ms, &item)?;
        return Ok(Element::Event(Event {
            raw: item.into(),
            ..event
        }));
    }
    let mapping = map_event(&name);
    let Some(msg) = msg else {
        if mapping.known {
            return Err(NormalizeError::MissingField(format!("/{i}/msg")));
        }
        return Ok(Element::Ignored(format!("event {}", one_line(&name))));
    };
    let email = match msg.get("email") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) if !mapping.known => String::new(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(NormalizeError::MissingField(format!("/{i}/msg/email")));
        }
        Some(_) => {
            return Err(NormalizeError::invalid(
                format!("/{i}/msg/email"),
                "not a string",
            ));
        }
    };
    let id = str_field(msg, "_id").or_else(|| str_field(obj, "_id"));
    let error = matches!(mapping.status, Status::Failed | Status::Bounced)
        .then(|| {
            ErrorInfo::from_parts(str_field(msg, "bounce_description"), str_field(msg, "diag"))
        })
        .flatten();
    let idempotency_key = match &id {
        Some(id) => {
            let ts = obj.get("ts").map(Value::to_string).unwrap_or_default();
            let url = if name == "click" {
                str_field(obj, "url").unwrap_or_default()
            } else {
                String::new()
            };
            idempotency_key(PROVIDER, &[id, &name, &ts, &url])
        }
        None => idempotency_key_of_value(PROVIDER, &item),
    };
    let correlation = correlation_of(msg);
    Ok(Element::Event(Event {
        channel: Channel::Email,
        channel_value: email,
        channel_user: ChannelUser::default(),
        vendor_name: PROVIDER.to_owned(),
        vendor_ack_id: id,
        idempotency_key,
        correlation,
        kind: EventKind::Status(StatusUpdate {
            status: mapping.status,
            timestamp_ms,
            error,
            informational: mapping.informational,
        }),
        raw: item.into(),
    }))
}

/// `blacklist add (email …)` of a sync event, on one line.
fn describe_sync(obj: &Map<String, Value>) -> String {
    let kind = str_field(obj, "type").unwrap_or_default();
    let action = str_field(obj, "action").unwrap_or_default();
    let email = ["reject", "entry"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_object))
        .and_then(|r| str_field(r, "email"));
    let mut out = format!("{} {}", one_line(&kind), one_line(&action));
    if let Some(email) = email {
        out.push_str(&format!(" ({})", one_line(&email)));
    }
    out.trim().to_owned()
}

/// Correlation ids: `msg.metadata` entries, then `msg.tags` as `tags` (metadata wins).
fn correlation_of(msg: &Map<String, Value>) -> Map<String, Value> {
    let mut map = msg
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(tags) = msg
        .get("tags")
        .filter(|t| t.as_array().is_some_and(|a| !a.is_empty()))
    {
        map.entry("tags").or_insert_with(|| tags.clone());
    }
    map
}

/// An inbound email (its `raw` is set by the caller).
fn inbound(
    i: usize,
    msg: &Map<String, Value>,
    timestamp_ms: i64,
    item: &Value,
) -> Result<Event, NormalizeError> {
    let from = str_field(msg, "from_email")
        .map(|f| f.trim().to_owned())
        .ok_or_else(|| NormalizeError::MissingField(format!("/{i}/msg/from_email")))?;
    let to = str_field(msg, "email")
        .or_else(|| {
            msg.get("to")
                .and_then(|t| t.get(0))
                .and_then(|first| first.get(0))
                .and_then(Value::as_str)
                .filter(|s| !s.trim().is_empty())
                .map(str::to_owned)
        })
        .map(|t| t.trim().to_owned())
        .unwrap_or_default();
    let text = match msg.get("text") {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        _ => None,
    };
    let mut media = Vec::new();
    // Images are always base64; an attachment says whether it is.
    for (field, base64) in [("attachments", false), ("images", true)] {
        if let Some(files) = msg.get(field).and_then(Value::as_object) {
            media.extend(files.iter().map(|(key, file)| medium(key, file, base64)));
        }
    }
    let message_id = header(msg, "message-id")
        .map(|id| strip_angle(&id))
        .filter(|id| !id.is_empty());
    Ok(Event {
        channel: Channel::Email,
        channel_value: from.clone(),
        channel_user: ChannelUser::default(),
        vendor_name: PROVIDER.to_owned(),
        vendor_ack_id: None,
        // One email reaches every inbound address it names as its own event, with the
        // same Message-Id: the whole event is the key (a retry sends it unchanged).
        idempotency_key: idempotency_key_of_value(PROVIDER, item),
        correlation: Map::new(),
        kind: EventKind::Inbound(InboundMessage {
            from,
            to,
            message_type: "email".to_owned(),
            text,
            media,
            location: None,
            context: None,
            timestamp_ms,
            source_message_id: message_id.unwrap_or_default(),
            original_message_id: None,
        }),
        raw: Value::Null.into(),
    })
}

/// An attachment or image of an inbound email: its name, type and decoded size; no URL
/// (the content is posted inline). `base64` is assumed when the file does not say.
fn medium(key: &str, file: &Value, base64: bool) -> Media {
    let obj = file.as_object();
    let field = |name: &str| obj.and_then(|o| str_field(o, name));
    let base64 = obj
        .and_then(|o| o.get("base64"))
        .and_then(Value::as_bool)
        .unwrap_or(base64);
    let size = obj
        .and_then(|o| o.get("content"))
        .and_then(Value::as_str)
        .map(|content| {
            if base64 {
                decoded_len(content)
            } else {
                u64::try_from(content.len()).unwrap_or(u64::MAX)
            }
        });
    Media {
        url: String::new(),
        content_type: field("type"),
        name: field("name").or_else(|| (!key.is_empty()).then(|| key.to_owned())),
        size,
    }
}

/// The number of bytes base64 `text` decodes to (whitespace and padding ignored; not
/// validated).
fn decoded_len(text: &str) -> u64 {
    let chars = text
        .bytes()
        .filter(|&b| b != b'=' && !b.is_ascii_whitespace())
        .fold(0u64, |n, _| n.saturating_add(1));
    // Every 4 characters carry 3 bytes; 2 or 3 leftover ones (unpadded) carry 1 or 2.
    let whole = (chars / 4) * 3;
    let rest = match chars % 4 {
        2 => 1,
        3 => 2,
        _ => 0,
    };
    whole + rest
}

/// A header of the inbound email (name matched case-insensitively; the first value of a
/// repeated header).
fn header(msg: &Map<String, Value>, name: &str) -> Option<String> {
    let headers = msg.get("headers")?.as_object()?;
    let (_, value) = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name))?;
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Array(values) => values.first()?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// `<id@host>` → `id@host`.
fn strip_angle(s: &str) -> String {
    let s = s.trim();
    s.strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(s)
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue, Uri};
    use serde_json::json;

    use crate::event::EventKind;

    const CLICK_SIGNED: &str =
        include_str!("../../tests/fixtures/mandrill/click_with_signature.json");
    const ALL_TYPES: &str =
        include_str!("../../tests/fixtures/mandrill/sample_batch_all_types.json");
    const INBOUND: &str = include_str!("../../tests/fixtures/mandrill/inbound.json");
    const INBOUND_IMAGE: &str =
        include_str!("../../tests/fixtures/mandrill/inbound_with_image.json");
    const INBOUND_TXT: &str =
        include_str!("../../tests/fixtures/mandrill/inbound_with_txt_attachment.json");
    const INBOUND_WITHOUT_MSG: &str =
        include_str!("../../tests/fixtures/mandrill/inbound_without_msg.json");
    const SEND: &str = include_str!("../../tests/fixtures/mandrill/send.json");
    const OPEN: &str = include_str!("../../tests/fixtures/mandrill/open.json");
    const CLICK: &str = include_str!("../../tests/fixtures/mandrill/click.json");

    const CTX: Context = Context {
        received_at_ms: 1_700_000_000_000,
    };
    const PUBLIC_URL: &str = "https://notify.example.com/callbacks/mandrill";

    /// The recorded request: key, URL, signature, raw body.
    struct Recorded {
        key: String,
        url: String,
        signature: String,
        body: String,
    }

    fn recorded() -> Recorded {
        let v: Value = serde_json::from_str(CLICK_SIGNED).expect("fixture");
        let v = &v[0];
        Recorded {
            key: v["private_key"].as_str().expect("key").to_owned(),
            url: v["original_url"].as_str().expect("url").to_owned(),
            signature: v["headers"]["X-Mandrill-Signature"]
                .as_str()
                .expect("sig")
                .to_owned(),
            body: format!(
                "mandrill_events={}",
                v["raw_params"]["mandrill_events"].as_str().expect("raw")
            ),
        }
    }

    fn verifier(key: &str, public_url: Option<&str>) -> Verifier {
        let mut s = VerifySettings::new().with("webhook_key", key);
        if let Some(u) = public_url {
            s.insert("public_url", u);
        }
        Verifier::from_settings(&s).expect("verifier")
    }

    fn request(method: Method, uri: &str, body: &str, signature: Option<&str>) -> CallbackRequest {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static(FORM));
        if let Some(s) = signature {
            headers.insert(SIGNATURE_HEADER, HeaderValue::from_str(s).expect("sig"));
        }
        CallbackRequest {
            method,
            uri: uri.parse::<Uri>().expect("uri"),
            headers,
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    fn sign(key: &str, url: &str, pairs: &[(&str, &str)]) -> String {
        let mut sorted = pairs.to_vec();
        sorted.sort_unstable();
        let mut data = url.to_owned();
        for (k, v) in sorted {
            data.push_str(k);
            data.push_str(v);
        }
        mac::hmac(Hash::Sha1, key.as_bytes(), &[data.as_bytes()]).to_base64()
    }

    /// `mandrill_events=<events>` as Mandrill posts it.
    fn form(events: &str) -> String {
        form_urlencoded::Serializer::new(String::new())
            .append_pair(EVENTS_FIELD, events)
            .finish()
    }

    fn run(events: &str) -> Normalized {
        normalize(&request(Method::POST, "/cb", &form(events), None), &CTX).expect("normalize")
    }

    fn status(e: &Event) -> &StatusUpdate {
        e.status().expect("status")
    }

    #[test]
    fn the_recorded_request_verifies() {
        let r = recorded();
        let (base, path) = r.url.split_at(r.url.rfind('/').expect("path"));
        let req = request(Method::POST, path, &r.body, Some(&r.signature));
        verifier(&r.key, Some(&r.url))
            .verify(&req, &VerifyOptions::default())
            .expect("recorded signature");
        // The absolute target serves as the URL without public_url.
        let absolute = request(Method::POST, &r.url, &r.body, Some(&r.signature));
        verifier(&r.key, None)
            .verify(&absolute, &VerifyOptions::default())
            .expect("absolute target");
        // Another key, URL, body or signature fails.
        assert!(matches!(
            verifier("bogative", Some(&r.url)).verify(&req, &VerifyOptions::default()),
            Err(VerifyError::Mismatch)
        ));
        let moved = verifier(&r.key, Some(&format!("{base}/other")));
        assert!(moved.verify(&req, &VerifyOptions::default()).is_err());
        let query = request(
            Method::POST,
            &format!("{path}?x=1"),
            &r.body,
            Some(&r.signature),
        );
        assert!(
            verifier(&r.key, Some(&r.url))
                .verify(&query, &VerifyOptions::default())
                .is_err()
        );
        let tampered = request(
            Method::POST,
            path,
            &r.body.replace("Oklahoma", "Nebraska"),
            Some(&r.signature),
        );
        assert!(matches!(
            verifier(&r.key, Some(&r.url)).verify(&tampered, &VerifyOptions::default()),
            Err(VerifyError::Mismatch)
        ));
        let flipped = r.signature.replacen('7', "8", 1);
        let req = request(Method::POST, path, &r.body, Some(&flipped));
        assert!(
            verifier(&r.key, Some(&r.url))
                .verify(&req, &VerifyOptions::default())
                .is_err()
        );
        // And the recorded batch normalizes: two clicks of one message.
        let out = normalize(&request(Method::POST, path, &r.body, None), &CTX).expect("ok");
        assert_eq!(out.events.len(), 2);
        assert_eq!(out.events[0].idempotency_key, out.events[1].idempotency_key);
        assert_eq!(out.events[0].correlation.get("user_id"), Some(&json!(111)));
        assert_eq!(
            out.events[0].correlation.get("tags"),
            Some(&json!(["webhook-example"]))
        );
    }

    #[test]
    fn signatures_cover_the_url_query_and_every_parameter() {
        let events = r#"[{"event":"send","msg":{"_id":"a1","email":"ü@example.com"},"ts":1}]"#;
        let url = format!("{PUBLIC_URL}?tenant=t1");
        let pairs = [("mandrill_events", events), ("extra", "x y")];
        let sig = sign("k3y", &url, &pairs);
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        let v = verifier("k3y", Some(PUBLIC_URL));
        let req = request(
            Method::POST,
            "/callbacks/mandrill?tenant=t1",
            &body,
            Some(&sig),
        );
        v.verify(&req, &VerifyOptions::default()).expect("valid");
        // Parameter order in the body does not matter; repeats are refused.
        let reordered = format!("extra=x+y&{}", form(events));
        let req = request(
            Method::POST,
            "/callbacks/mandrill?tenant=t1",
            &reordered,
            Some(&sig),
        );
        v.verify(&req, &VerifyOptions::default())
            .expect("reordered");
        let repeated = format!("{reordered}&extra=x+y");
        let req = request(
            Method::POST,
            "/callbacks/mandrill?tenant=t1",
            &repeated,
            Some(&sig),
        );
        assert!(matches!(
            v.verify(&req, &VerifyOptions::default()),
            Err(VerifyError::Malformed(_))
        ));
        // A fragment of public_url is tried with and without.
        let with_fragment = verifier("k3y", Some(&format!("{PUBLIC_URL}#hook")));
        let req = request(
            Method::POST,
            "/callbacks/mandrill?tenant=t1",
            &body,
            Some(&sig),
        );
        with_fragment
            .verify(&req, &VerifyOptions::default())
            .expect("without the fragment");
        let sig = sign("k3y", &format!("{url}#hook"), &pairs);
        let req = request(
            Method::POST,
            "/callbacks/mandrill?tenant=t1",
            &body,
            Some(&sig),
        );
        with_fragment
            .verify(&req, &VerifyOptions::default())
            .expect("with the fragment");
    }

    #[test]
    fn url_checks_and_empty_batches() {
        let v = verifier("k3y", Some(PUBLIC_URL));
        for method in [Method::HEAD, Method::GET] {
            let req = request(method.clone(), "/callbacks/mandrill", "", None);
            v.verify(&req, &VerifyOptions::default())
                .expect("url check");
            let out = normalize(&req, &CTX).expect("normalize");
            assert!(out.events.is_empty() && out.unparsed.is_empty());
            assert!(
                out.control
                    .expect("control")
                    .describe()
                    .contains("URL check")
            );
            // A GET's query is never read.
            let q = format!("/callbacks/mandrill?{}", form(SEND));
            let out = normalize(&request(method.clone(), &q, "", None), &CTX).expect("ok");
            assert!(out.events.is_empty());
            // With a body, a signature is needed.
            let with_body = request(method, "/callbacks/mandrill", &form(SEND), None);
            assert!(matches!(
                v.verify(&with_body, &VerifyOptions::default()),
                Err(VerifyError::Missing(_))
            ));
        }
        // The fallback POST: an empty batch signed with `test-webhook`.
        let sig = sign("test-webhook", PUBLIC_URL, &[("mandrill_events", "[]")]);
        let req = request(Method::POST, "/callbacks/mandrill", &form("[]"), Some(&sig));
        v.verify(&req, &VerifyOptions::default())
            .expect("test key, empty batch");
        let out = normalize(&req, &CTX).expect("normalize");
        assert!(out.events.is_empty());
        assert!(out.control.is_some());
        // `test-webhook` signs nothing else.
        let sig = sign("test-webhook", PUBLIC_URL, &[("mandrill_events", SEND)]);
        let req = request(Method::POST, "/callbacks/mandrill", &form(SEND), Some(&sig));
        assert!(v.verify(&req, &VerifyOptions::default()).is_err());
        let pairs = [("mandrill_events", "[]"), ("x", "1")];
        let sig = sign("test-webhook", PUBLIC_URL, &pairs);
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        let req = request(Method::POST, "/callbacks/mandrill", &body, Some(&sig));
        assert!(v.verify(&req, &VerifyOptions::default()).is_err());
    }

    #[test]
    fn missing_and_malformed_signatures() {
        let v = verifier("k3y", Some(PUBLIC_URL));
        let body = form(SEND);
        let none = request(Method::POST, "/callbacks/mandrill", &body, None);
        assert!(matches!(
            v.verify(&none, &VerifyOptions::default()),
            Err(VerifyError::Missing(_))
        ));
        let blank = request(Method::POST, "/callbacks/mandrill", &body, Some(" "));
        assert!(matches!(
            v.verify(&blank, &VerifyOptions::default()),
            Err(VerifyError::Missing(_))
        ));
        for bad in ["not base64!", "AAAA", "7rUa4lNJitlb178MgGOcHO6T4Bg"] {
            let req = request(Method::POST, "/callbacks/mandrill", &body, Some(bad));
            assert!(v.verify(&req, &VerifyOptions::default()).is_err(), "{bad}");
        }
        let sig = sign("k3y", PUBLIC_URL, &[("mandrill_events", SEND)]);
        let relative = request(Method::POST, "/callbacks/mandrill", &body, Some(&sig));
        let e = verifier("k3y", None)
            .verify(&relative, &VerifyOptions::default())
            .expect_err("no public_url");
        assert!(
            e.to_string().contains("mandrill needs verify.public_url"),
            "{e}"
        );
    }

    #[test]
    fn settings_fail_closed() {
        assert!(Verifier::from_settings(&VerifySettings::new()).is_err());
        assert!(Verifier::from_settings(&VerifySettings::new().with("webhook_key", "")).is_err());
        assert!(
            Verifier::from_settings(
                &VerifySettings::new()
                    .with("webhook_key", "k")
                    .with("api_key", "x")
            )
            .is_err()
        );
        assert!(
            Verifier::from_settings(
                &VerifySettings::new()
                    .with("webhook_key", "k")
                    .with("public_url", "ftp://notify.example.com/cb")
            )
            .is_err()
        );
        let v = verifier("hunter2", None);
        assert!(!format!("{v:?}").contains("hunter2"));
    }

    #[test]
    fn every_event_type_of_the_sample_batch() {
        let out = run(ALL_TYPES);
        assert!(out.unparsed.is_empty(), "{:?}", out.unparsed);
        let got: Vec<(Status, bool)> = out
            .events
            .iter()
            .map(|e| (status(e).status, status(e).informational))
            .collect();
        assert_eq!(
            got,
            vec![
                (Status::Sent, false),
                (Status::Queued, true),
                (Status::Bounced, false),
                (Status::Failed, false),
                (Status::Seen, false),
                (Status::Clicked, false),
                (Status::Complained, false),
                (Status::Unsubscribed, false),
                (Status::Failed, false),
            ]
        );
        for e in &out.events {
            assert_eq!(e.channel, Channel::Email);
            assert_eq!(e.channel_value, "example.webhook@mandrillapp.com");
            assert_eq!(
                e.vendor_ack_id.as_deref(),
                Some("fa239ebedd0a4831a3eefa59e880d8b2")
            );
            assert_eq!(e.timestamp_ms(), 1_420_303_407_000);
            assert_eq!(e.correlation.get("user_id"), Some(&json!(111)));
        }
        let keys: std::collections::BTreeSet<_> = out
            .events
            .iter()
            .map(|e| e.idempotency_key.clone())
            .collect();
        assert_eq!(keys.len(), out.events.len(), "one key per event");
        assert_eq!(
            status(&out.events[2]).error,
            Some(ErrorInfo {
                code: Some("bad_mailbox".into()),
                message: Some(
                    "smtp;550 5.1.1 The email account that you tried to reach does not exist. \
                     Please try double-checking the recipient's email address for typos or \
                     unnecessary spaces."
                        .into()
                ),
            })
        );
        assert_eq!(
            status(&out.events[3]).error,
            Some(ErrorInfo {
                code: Some("mailbox_full".into()),
                message: Some("smtp;552 5.2.2 Over Quota".into()),
            })
        );
        assert_eq!(
            status(&out.events[1]).error,
            None,
            "a deferral has no error"
        );
        assert_eq!(
            status(&out.events[8]).error,
            None,
            "a reject names no cause"
        );
        let reason = out.control.expect("sync events").describe();
        assert!(
            reason.contains("5 Mandrill events about no message"),
            "{reason}"
        );
        assert!(
            reason.contains("blacklist add (example.webhook@mandrillapp.com)"),
            "{reason}"
        );
        assert!(reason.contains("whitelist remove"), "{reason}");
        // A retry of the batch has the same keys.
        let again = run(ALL_TYPES);
        assert_eq!(
            again
                .events
                .iter()
                .map(|e| &e.idempotency_key)
                .collect::<Vec<_>>(),
            out.events
                .iter()
                .map(|e| &e.idempotency_key)
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn the_legacy_samples() {
        let send = run(SEND).events.into_iter().next().expect("send");
        assert_eq!(send.channel_value, "to@example.com");
        assert_eq!(
            send.vendor_ack_id.as_deref(),
            Some("9a32184309ad4d5e9bfd20368d9d7981")
        );
        assert!(send.correlation.is_empty(), "no metadata, no tags");
        let open = run(OPEN).events.into_iter().next().expect("open");
        assert_eq!(
            open.vendor_ack_id.as_deref(),
            Some("12847763.9a32184309ad4d5e9bfd20368d9d7981")
        );
        assert_eq!(status(&open).status, Status::Seen);
        assert_eq!(open.timestamp_ms(), 1_350_693_075_000);
        let click = run(CLICK).events.into_iter().next().expect("click");
        assert_eq!(status(&click).status, Status::Clicked);
        // Another link of the same message, at the same second, is another event.
        let other = CLICK.replace(
            "\"url\": \"http://feedproxy.google.com/~r/readwriteweb/~3/op1uGAwjnFo",
            "\"url\": \"http://feedproxy.google.com/~r/readwriteweb/~3/other",
        );
        assert_ne!(other, CLICK);
        let other = run(&other).events.into_iter().next().expect("click");
        assert_ne!(other.idempotency_key, click.idempotency_key);
    }

    #[test]
    fn inbound_email() {
        let e = run(INBOUND).events.into_iter().next().expect("inbound");
        assert_eq!(e.channel, Channel::Email);
        assert_eq!(e.channel_value, "example.sender@mandrillapp.com");
        assert_eq!(e.vendor_ack_id, None);
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound")
        };
        assert_eq!(m.from, "example.sender@mandrillapp.com");
        assert_eq!(m.to, "test@inbound.example.com");
        assert_eq!(m.message_type, "email");
        assert_eq!(
            m.text.as_deref(),
            Some("This is an example inbound message.\n")
        );
        assert_eq!(
            m.source_message_id,
            "999.20130510192820.aaaaaaaaaaaaaa.aaaaaaaa@mail115.us4.mandrillapp.com"
        );
        assert_eq!(m.timestamp_ms, 1_368_214_102_000);
        assert!(m.media.is_empty());
        // The sample's second email has the same Message-Id and time, and attachments:
        // another event.
        let both = run(INBOUND).events;
        assert_eq!(both.len(), 2);
        assert_ne!(both[0].idempotency_key, both[1].idempotency_key);
        assert_eq!(
            run(INBOUND).events[1].idempotency_key,
            both[1].idempotency_key
        );

        let e = run(INBOUND_TXT).events.into_iter().next().expect("inbound");
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound")
        };
        assert_eq!(
            m.media,
            vec![Media {
                url: String::new(),
                content_type: Some("text/plain".into()),
                name: Some("sample.txt".into()),
                size: Some(28),
            }]
        );

        let e = run(INBOUND_IMAGE)
            .events
            .into_iter()
            .next()
            .expect("inbound");
        let EventKind::Inbound(m) = &e.kind else {
            panic!("inbound")
        };
        let doc: Value = serde_json::from_str(INBOUND_IMAGE).expect("json");
        let images = doc[0]["msg"]["images"].as_object().expect("images");
        assert_eq!(m.media.len(), images.len());
        for (medium, (_, image)) in m.media.iter().zip(images) {
            use base64::Engine as _;
            let content: String = image["content"]
                .as_str()
                .expect("content")
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            let bytes = STANDARD.decode(content).expect("base64");
            assert_eq!(medium.size, Some(bytes.len() as u64));
            assert!(medium.url.is_empty());
        }

        // An inbound event without its message is unparsed; the rest of its batch is not.
        let out = run(INBOUND_WITHOUT_MSG);
        assert!(out.events.is_empty());
        assert_eq!(out.unparsed.len(), 1);
        assert!(
            out.unparsed[0].reason.contains("/0/msg"),
            "{}",
            out.unparsed[0].reason
        );
        assert_eq!(
            out.unparsed[0].body.as_deref(),
            Some(form(&format!("[{}]", out.unparsed[0].raw)).as_str())
        );
        let replayed = normalize(
            &request(
                Method::POST,
                "/cb",
                out.unparsed[0].body.as_deref().expect("body"),
                None,
            ),
            &CTX,
        )
        .expect("replay body is a Mandrill body");
        assert_eq!(replayed.unparsed.len(), 1);
    }

    #[test]
    fn decoded_sizes() {
        for (text, n) in [
            ("", 0),
            ("QQ==", 1),
            ("QUI=", 2),
            ("QUJD", 3),
            ("QUJD\nRA==", 4),
            ("QQ", 1),
            ("=", 0),
            ("Q", 0),
        ] {
            assert_eq!(decoded_len(text), n, "{text:?}");
        }
    }

    #[test]
    fn batches_keep_what_they_cannot_normalize() {
        let events = json!([
            {"event": "send", "msg": {"_id": "m1", "email": "a@example.com",
                "metadata": {"distinct_id": "ユーザー-7", "tags": "from-metadata"},
                "tags": ["tag-1"], "subject": "Grüße 👋"}, "ts": 1_700_000_001},
            "not an event",
            {"event": "open", "ts": 1},
            {"event": "click", "msg": {"_id": "m1"}, "ts": 1},
            {"event": "click", "msg": {"_id": "m1", "email": 7}, "ts": 1},
            {"event": "send", "msg": {"_id": "m1", "email": "a@example.com"}, "ts": "soon"},
            {"event": "send", "msg": "m1"},
            {"event": 5},
            {"msg": {"_id": "m1", "email": "a@example.com"}},
            {"event": "whitelisted", "ts": 1},
            {"event": "new_event", "msg": {"_id": "m2"}, "ts": 1},
            {"event": "open", "msg": {"email": "b@example.com"}, "ts": 2}
        ]);
        let out = run(&events.to_string());
        assert_eq!(out.events.len(), 3, "{:?}", out.unparsed);
        assert_eq!(out.unparsed.len(), 8);
        let first = &out.events[0];
        assert_eq!(
            first.correlation.get("distinct_id"),
            Some(&json!("ユーザー-7"))
        );
        assert_eq!(
            first.correlation.get("tags"),
            Some(&json!("from-metadata")),
            "metadata wins"
        );
        assert_eq!(first.raw.to_value()["msg"]["subject"], "Grüße 👋");
        let unknown = &out.events[1];
        assert_eq!(unknown.channel_value, "");
        assert!(status(unknown).informational);
        let no_id = &out.events[2];
        assert_eq!(no_id.vendor_ack_id, None);
        assert_eq!(
            no_id.idempotency_key,
            idempotency_key_of_value(PROVIDER, &events[11])
        );
        let reason = out.control.expect("ignored").describe();
        assert!(reason.contains("event whitelisted"), "{reason}");
        for u in &out.unparsed {
            let body = u.body.as_deref().expect("body");
            assert!(body.starts_with("mandrill_events="), "{body}");
        }
        // Beyond the limits: that event only.
        let deep = format!(
            r#"[{{"event":"send","msg":{{"_id":"m","email":"a@example.com","metadata":{{"x":{}{}}}}}}},{}]"#,
            "[".repeat(70),
            "]".repeat(70),
            r#"{"event":"send","msg":{"_id":"n","email":"b@example.com"}}"#
        );
        let out = run(&deep);
        assert_eq!(out.events.len(), 1);
        assert_eq!(out.unparsed.len(), 1);
        assert!(out.unparsed[0].reason.contains("deeper than 64"));
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let post = |body: &str, ct: Option<&str>| {
            let mut r = request(Method::POST, "/cb", body, None);
            r.headers.remove("content-type");
            if let Some(ct) = ct {
                r.headers
                    .insert("content-type", HeaderValue::from_str(ct).expect("ct"));
            }
            r
        };
        for (r, kind) in [
            (post("", Some(FORM)), "empty_body"),
            (post(" \n", Some(FORM)), "empty_body"),
            (post(SEND, Some(FORM)), "shape"),
            (post(SEND, None), "shape"),
            (post(&form(SEND), Some("application/json")), "content_type"),
            (post("events=%5B%5D", Some(FORM)), "missing_field"),
            (
                post(&format!("{}&{}", form("[]"), form("[]")), Some(FORM)),
                "invalid_field",
            ),
            (post(&form("{\"event\":\"send\"}"), Some(FORM)), "shape"),
            (post(&form("[{\"event\":"), Some(FORM)), "invalid_json"),
            (post(&form("not json"), Some(FORM)), "invalid_json"),
            (post("%%%&&&===", Some(FORM)), "missing_field"),
        ] {
            let e = normalize(&r, &CTX).expect_err("refused");
            assert_eq!(e.kind(), kind, "{:?}: {e}", r.body);
        }
        let mut put = request(Method::PUT, "/cb", &form(SEND), None);
        put.method = Method::PUT;
        assert_eq!(normalize(&put, &CTX).expect_err("method").kind(), "method");
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u32 = 5;
        let mut next = || {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 16) as u8
        };
        let alphabet = br#"{}[]":,=&%+ abcdefghijklmnopqrstuvwxyz0123456789_"#;
        let v = verifier("k3y", Some(PUBLIC_URL));
        for _ in 0..2_000 {
            let len = usize::from(next()) % 200;
            let junk: String = (0..len)
                .map(|_| char::from(alphabet[usize::from(next()) % alphabet.len()]))
                .collect();
            for body in [junk.clone(), form(&junk), form(&format!("[{junk}]"))] {
                let r = request(Method::POST, "/callbacks/mandrill", &body, Some("AAAA"));
                let _ = normalize(&r, &CTX);
                let _ = v.verify(&r, &VerifyOptions::default());
            }
        }
    }
}
