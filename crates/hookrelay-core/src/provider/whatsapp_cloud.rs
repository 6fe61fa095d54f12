//! The WhatsApp Cloud API envelope, read for Meta (`meta_whatsapp`) and for Gupshup's v3
//! callbacks, which mirror it: `{"object", "entry": [{"changes": [{"field": "messages",
//! "value": {"metadata", "statuses": [...], "messages": [...]}}]}]}` into one event per
//! status and message, in body order. The mapping is documented in the `meta_whatsapp`
//! module; a [`Flavor`] carries what a provider does differently (vendor name, status
//! vocabulary, which id is the `vendor_ack_id`).
//!
//! Two paths read the envelope and give the same events, unparsed events and errors:
//! [`from_text`], for a callback of the expected shape, which splits the envelope into each
//! status's and message's JSON text without parsing them, parses just the keys a status
//! maps and keeps its JSON text as its `raw`; and [`events_from_envelope`], over a parsed
//! document, for any other callback (and Gupshup's v3).
//!
//! A status or message that is beyond the [`limits`](crate::limits), is not an object, or
//! lacks what its event needs (an id, a recipient, a readable timestamp) is kept as an
//! [`Unparsed`] event, and the rest of the callback is normalized: only an envelope that
//! is not one (no `entry` array, a change value that is not an object, `statuses` that is
//! not an array) is a [`NormalizeError`].
//!
//! The JSON readers at the end ([`text`], [`raw_text`], [`timestamp`], [`location`], …)
//! are used by Gupshup's other formats too, which spell their fields the same way.

#[cfg(feature = "meta_whatsapp")]
use serde::{Deserialize, Deserializer};
#[cfg(feature = "meta_whatsapp")]
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::NormalizeError;
#[cfg(feature = "meta_whatsapp")]
use crate::event::Raw;
use crate::event::{
    Channel, ChannelUser, ErrorInfo, Event, EventKind, InboundMessage, Location, Media,
    ReplyContext, Status, StatusUpdate, idempotency_key,
};
use crate::limits::JsonLimits;
use crate::phone::{e164, e164_of_display_number, is_bsuid, is_parent_bsuid};
use crate::provider::{Context, Normalized, Unparsed};
use crate::timestamp::value_to_ms;

/// How a provider that mirrors Meta's envelope differs from Meta itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flavor {
    /// `vendor_name` of the events.
    pub(crate) vendor: &'static str,
    /// Maps a `statuses[].status` value to (status, informational).
    pub(crate) status: fn(&str) -> (Status, bool),
    /// Picks the `vendor_ack_id` of a status object.
    pub(crate) ack_id: fn(&dyn Fields) -> Option<String>,
}

#[cfg(feature = "meta_whatsapp")]
/// A value that was present, `null` included (`None` only when the key is absent).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

#[cfg(feature = "meta_whatsapp")]
/// A struct read from a JSON object only (serde would also read one from an array).
struct Obj<T>(T);

#[cfg(feature = "meta_whatsapp")]
impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData)).map(Obj)
    }
}

#[cfg(feature = "meta_whatsapp")]
/// The envelope of [`statuses_only`], read in one pass without building a tree of it.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    entry: Vec<Obj<Entry<'a>>>,
}

#[cfg(feature = "meta_whatsapp")]
#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(borrow, default)]
    changes: Option<Vec<Obj<Change<'a>>>>,
}

#[cfg(feature = "meta_whatsapp")]
#[derive(Deserialize)]
struct Change<'a> {
    /// Anything but a string (or null) fails this path: the general one then decides.
    #[serde(borrow, default)]
    field: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    value: Option<Obj<ChangeValue<'a>>>,
}

#[cfg(feature = "meta_whatsapp")]
#[derive(Deserialize)]
struct ChangeValue<'a> {
    #[serde(default)]
    metadata: Option<Metadata>,
    /// Parsed apart, and read as [`contacts`] reads the general path's value: contacts that
    /// do not parse (nested past serde_json's limit) only add nothing to the events.
    #[serde(borrow, default)]
    contacts: Option<&'a RawValue>,
    #[serde(borrow, default)]
    statuses: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default)]
    messages: Option<Vec<&'a RawValue>>,
}

#[cfg(feature = "meta_whatsapp")]
/// The one key of `metadata` that messages read. Anything but an object (or null) fails
/// [`from_text`]: the general path then decides.
#[derive(Deserialize)]
struct Metadata {
    #[serde(default, deserialize_with = "present")]
    display_phone_number: Option<Value>,
}

#[cfg(feature = "meta_whatsapp")]
/// The keys of a status object that [`status_event`] reads; the rest (conversation,
/// pricing, …) is skipped without being built.
#[derive(Deserialize)]
struct StatusKeys {
    #[serde(default, deserialize_with = "present")]
    id: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    status: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    recipient_type: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    recipient_participant_id: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    recipient_id: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    recipient_user_id: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    recipient_parent_user_id: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    timestamp: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    errors: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    biz_opaque_callback_data: Option<Value>,
}

#[cfg(feature = "meta_whatsapp")]
impl Fields for StatusKeys {
    fn field(&self, key: &str) -> Option<&Value> {
        match key {
            "id" => self.id.as_ref(),
            "status" => self.status.as_ref(),
            "recipient_type" => self.recipient_type.as_ref(),
            "recipient_participant_id" => self.recipient_participant_id.as_ref(),
            "recipient_id" => self.recipient_id.as_ref(),
            "recipient_user_id" => self.recipient_user_id.as_ref(),
            "recipient_parent_user_id" => self.recipient_parent_user_id.as_ref(),
            "timestamp" => self.timestamp.as_ref(),
            "errors" => self.errors.as_ref(),
            "biz_opaque_callback_data" => self.biz_opaque_callback_data.as_ref(),
            _ => None,
        }
    }
}

/// A status object's fields by name: the parsed object of the general path, or the keys
/// the fast path read ([`StatusKeys`]), so both give the same event.
pub(crate) trait Fields {
    /// The value of `key`, if present (`null` included).
    fn field(&self, key: &str) -> Option<&Value>;
}

impl Fields for Map<String, Value> {
    fn field(&self, key: &str) -> Option<&Value> {
        self.get(key)
    }
}

#[cfg(feature = "meta_whatsapp")]
/// Where a status sits in the envelope, for error messages; formatted only on error.
struct StatusPath {
    entry: usize,
    change: usize,
    status: usize,
}

#[cfg(feature = "meta_whatsapp")]
impl std::fmt::Display for StatusPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "/entry/{}/changes/{}/value/statuses/{}",
            self.entry, self.change, self.status
        )
    }
}

#[cfg(feature = "meta_whatsapp")]
/// A callback of the expected shape, read without parsing the document into a `Value`
/// tree: the envelope is split into each status's and message's JSON text, each is
/// checked against the limits, a status keeps its JSON text as [`Raw::Text`] and has only
/// the keys [`status_event`] reads parsed, a message is parsed whole. `None` for anything
/// else (an unexpected shape, invalid JSON, a repeated key): then the general path
/// decides, errors included, so both paths give the same events, unparsed events and
/// errors.
pub(crate) fn from_text(body: &[u8], ctx: &Context, flavor: &Flavor) -> Option<Normalized> {
    // Checked whole first: serde_json does not check the strings it skips, and the general
    // path refuses a body that is not UTF-8 anywhere.
    let text = std::str::from_utf8(body).ok()?;
    let Obj(envelope): Obj<Envelope<'_>> = serde_json::from_str(text).ok()?;
    let limits = JsonLimits::default();
    let mut out = Normalized::default();
    for (i, Obj(entry)) in envelope.entry.iter().enumerate() {
        for (j, Obj(change)) in entry.changes.iter().flatten().enumerate() {
            if change.field.as_deref() != Some("messages") {
                continue;
            }
            let Obj(value) = change.value.as_ref()?;
            let contacts_value = value
                .contacts
                .and_then(|c| serde_json::from_str::<Value>(c.get()).ok());
            let contacts = contacts(contacts_value.as_ref());
            let number = value
                .metadata
                .as_ref()
                .and_then(|m| m.display_phone_number.as_ref());
            let alone =
                |list: &str, raw: &str| change_of_one(number, contacts_value.as_ref(), list, raw);
            for (k, status) in value.statuses.iter().flatten().enumerate() {
                let path = StatusPath {
                    entry: i,
                    change: j,
                    status: k,
                };
                if let Err(e) = limits.check(status.get().as_bytes()) {
                    out.unparsed.push(
                        Unparsed::new(format!("{path}: {e}"), status.get())
                            .with_body(alone("statuses", status.get())),
                    );
                    continue;
                }
                if !status.get().starts_with('{') {
                    out.unparsed.push(
                        not_an_object(&path, status.get())
                            .with_body(alone("statuses", status.get())),
                    );
                    continue;
                }
                let Obj(keys): Obj<StatusKeys> = serde_json::from_str(status.get()).ok()?;
                match status_event(&keys, &contacts, &path, ctx, flavor) {
                    Ok(mut event) => {
                        event.raw = status_raw(status);
                        out.events.push(event);
                    }
                    Err(e) => out.unparsed.push(
                        Unparsed::new(e, status.get()).with_body(alone("statuses", status.get())),
                    ),
                }
            }
            let business = business_number(
                value
                    .metadata
                    .as_ref()
                    .and_then(|m| m.display_phone_number.as_ref()),
            );
            for (k, message) in value.messages.iter().flatten().enumerate() {
                let path = format!("/entry/{i}/changes/{j}/value/messages/{k}");
                if let Err(e) = limits.check(message.get().as_bytes()) {
                    out.unparsed.push(
                        Unparsed::new(format!("{path}: {e}"), message.get())
                            .with_body(alone("messages", message.get())),
                    );
                    continue;
                }
                let fields = match serde_json::from_str(message.get()) {
                    Ok(Value::Object(fields)) => fields,
                    Ok(_) => {
                        out.unparsed.push(
                            not_an_object(&path, message.get())
                                .with_body(alone("messages", message.get())),
                        );
                        continue;
                    }
                    Err(_) => return None,
                };
                match message_event(&fields, &business, &contacts, &path, ctx, flavor.vendor) {
                    Ok(mut event) => {
                        event.raw = Value::Object(fields).into();
                        out.events.push(event);
                    }
                    Err(e) => out.unparsed.push(
                        Unparsed::new(e, message.get()).with_body(alone("messages", message.get())),
                    ),
                }
            }
        }
    }
    Some(out)
}

/// The item `raw` of a change's `list` (`statuses` or `messages`) alone in a callback of its
/// own, with what its change says of the business's number and of the users: a body to
/// normalize again on a replay. The item is spliced in as text (it may be beyond what a
/// parser takes); the rest is built, the same on either path.
fn change_of_one(
    number: Option<&Value>,
    contacts: Option<&Value>,
    list: &str,
    raw: &str,
) -> String {
    let mut value = Map::new();
    value.insert("messaging_product".into(), "whatsapp".into());
    if let Some(number) = number {
        let mut metadata = Map::new();
        metadata.insert("display_phone_number".into(), number.clone());
        value.insert("metadata".into(), Value::Object(metadata));
    }
    if let Some(contacts) = contacts {
        value.insert("contacts".into(), contacts.clone());
    }
    let head = Value::Object(value).to_string();
    let head = head.strip_suffix('}').unwrap_or(&head);
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"changes":[{{"field":"messages","value":{head},"{list}":[{raw}]}}}}]}}]}}"#
    )
}

#[cfg(feature = "meta_whatsapp")]
/// An item of `statuses` or `messages` that is not an object, as the general path reports it.
fn not_an_object(path: &impl std::fmt::Display, text: &str) -> Unparsed {
    Unparsed::new(NormalizeError::shape(path.to_string(), "an object"), text)
}

#[cfg(feature = "meta_whatsapp")]
/// A status's JSON text as its `raw`, unless it spans lines (a pretty-printed body): a
/// payload stays one line.
fn status_raw(status: &RawValue) -> Raw {
    let text = status.get();
    if text.contains(['\n', '\r']) {
        return serde_json::from_str::<Value>(text).map_or_else(|_| Raw::default(), Raw::Value);
    }
    Raw::Text(status.to_owned())
}

/// Turns a Meta-style `{object, entry[{changes[{field, value}]}]}` document into events,
/// and the statuses and messages it cannot normalize into unparsed events.
///
/// Each status and message object is moved out of `doc` into its event's `raw`.
pub(crate) fn events_from_envelope(
    doc: &mut Value,
    ctx: &Context,
    flavor: &Flavor,
) -> Result<Normalized, NormalizeError> {
    let root = doc
        .as_object_mut()
        .ok_or_else(|| NormalizeError::shape("/", "a JSON object"))?;
    let entries = root
        .get_mut("entry")
        .ok_or_else(|| NormalizeError::MissingField("entry".into()))?
        .as_array_mut()
        .ok_or_else(|| NormalizeError::shape("/entry", "an array"))?;
    let mut out = Normalized::default();
    for (i, entry) in entries.iter_mut().enumerate() {
        let entry = entry
            .as_object_mut()
            .ok_or_else(|| NormalizeError::shape(format!("/entry/{i}"), "an object"))?;
        let changes = match entry.get_mut("changes") {
            None | Some(Value::Null) => continue,
            Some(Value::Array(c)) => c,
            Some(_) => {
                return Err(NormalizeError::shape(
                    format!("/entry/{i}/changes"),
                    "an array",
                ));
            }
        };
        for (j, change) in changes.iter_mut().enumerate() {
            let path = format!("/entry/{i}/changes/{j}");
            let change = change
                .as_object_mut()
                .ok_or_else(|| NormalizeError::shape(path.clone(), "an object"))?;
            if change.get("field").and_then(Value::as_str) != Some("messages") {
                continue;
            }
            let value = change
                .get_mut("value")
                .and_then(Value::as_object_mut)
                .ok_or_else(|| NormalizeError::shape(format!("{path}/value"), "an object"))?;
            value_events(value, &path, ctx, flavor, &mut out)?;
        }
    }
    Ok(out)
}

fn value_events(
    value: &mut Map<String, Value>,
    path: &str,
    ctx: &Context,
    flavor: &Flavor,
    out: &mut Normalized,
) -> Result<(), NormalizeError> {
    let business = business_number(
        value
            .get("metadata")
            .and_then(|m| m.get("display_phone_number")),
    );
    let contacts = contacts(value.get("contacts"));
    // For an unparsed item's body of its own (see [`change_of_one`]).
    let number = value
        .get("metadata")
        .and_then(|m| m.get("display_phone_number"))
        .cloned();
    let contacts_value = value.get("contacts").cloned();
    let alone =
        |list: &str, raw: &str| change_of_one(number.as_ref(), contacts_value.as_ref(), list, raw);
    let limits = JsonLimits::default();
    for (k, status) in array_at(value, "statuses", path)?.iter_mut().enumerate() {
        let p = format!("{path}/value/statuses/{k}");
        let event = match limits.check_value(status) {
            Err(e) => Err(format!("{p}: {e}")),
            Ok(()) => match status.as_object() {
                None => Err(NormalizeError::shape(p.clone(), "an object").to_string()),
                Some(fields) => {
                    status_event(fields, &contacts, &p, ctx, flavor).map_err(|e| e.to_string())
                }
            },
        };
        match event {
            Ok(mut event) => {
                event.raw = std::mem::take(status).into();
                out.events.push(event);
            }
            Err(reason) => {
                let raw = status.to_string();
                let body = alone("statuses", &raw);
                out.unparsed
                    .push(Unparsed::new(reason, raw).with_body(body));
            }
        }
    }
    for (k, message) in array_at(value, "messages", path)?.iter_mut().enumerate() {
        let p = format!("{path}/value/messages/{k}");
        let event = match limits.check_value(message) {
            Err(e) => Err(format!("{p}: {e}")),
            Ok(()) => match message.as_object() {
                None => Err(NormalizeError::shape(p.clone(), "an object").to_string()),
                Some(fields) => message_event(fields, &business, &contacts, &p, ctx, flavor.vendor)
                    .map_err(|e| e.to_string()),
            },
        };
        match event {
            Ok(mut event) => {
                event.raw = std::mem::take(message).into();
                out.events.push(event);
            }
            Err(reason) => {
                let raw = message.to_string();
                let body = alone("messages", &raw);
                out.unparsed
                    .push(Unparsed::new(reason, raw).with_body(body));
            }
        }
    }
    Ok(())
}

/// The business's number of a change (`metadata.display_phone_number`, text or number)
/// as E.164; empty when absent.
fn business_number(display: Option<&Value>) -> String {
    display
        .and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .map(|s| e164_of_display_number(&s))
        .unwrap_or_default()
}

fn array_at<'a>(
    value: &'a mut Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a mut [Value], NormalizeError> {
    match value.get_mut(key) {
        None | Some(Value::Null) => Ok(&mut []),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(NormalizeError::shape(
            format!("{path}/value/{key}"),
            "an array",
        )),
    }
}

/// The user identifiers of one entry of a change's `contacts` (whom its messages and
/// statuses are about).
#[derive(Debug)]
struct Contact {
    wa_id: Option<String>,
    user_id: Option<String>,
    parent_user_id: Option<String>,
    username: Option<String>,
}

/// A change's `contacts`: `wa_id`, `user_id`, `parent_user_id` and `profile.username` of
/// each entry (a `wa_id` holding a BSUID counts as the BSUID). Read leniently, as they only
/// add to events: a value of another shape, or an entry that is not an object, counts as
/// absent.
fn contacts(value: Option<&Value>) -> Vec<Contact> {
    let Some(Value::Array(entries)) = value else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(Value::as_object)
        .map(|c| {
            let mut contact = Contact {
                wa_id: text(c, "wa_id"),
                user_id: text(c, "user_id"),
                parent_user_id: text(c, "parent_user_id"),
                username: c
                    .get("profile")
                    .and_then(Value::as_object)
                    .and_then(|p| text(p, "username")),
            };
            match contact.wa_id.take() {
                Some(w) if is_parent_bsuid(&w) => {
                    contact.parent_user_id.get_or_insert(w);
                }
                Some(w) if is_bsuid(&w) => {
                    contact.user_id.get_or_insert(w);
                }
                other => contact.wa_id = other,
            }
            contact
        })
        .collect()
}

/// The user an event is about, as its message or status names them.
#[derive(Debug, Default)]
struct UserFields {
    /// `from` or `recipient_id`: the user's number, or a business-scoped user id.
    address: Option<String>,
    /// `from_user_id` or `recipient_user_id`.
    user_id: Option<String>,
    /// `from_parent_user_id` or `recipient_parent_user_id`.
    parent_user_id: Option<String>,
}

/// The user's address (`channel_value`) and identifiers, from the fields of a message or a
/// status and the contact of its change that names the same user (by number, BSUID or
/// parent BSUID): the number as E.164 when one was sent, else the BSUID, else the parent
/// BSUID, unprefixed. An address field holding a BSUID is read as one, never as a number.
/// `None` when nothing names the user.
fn resolve_user(fields: UserFields, contacts: &[Contact]) -> Option<(String, ChannelUser)> {
    let UserFields {
        address,
        mut user_id,
        mut parent_user_id,
    } = fields;
    let mut phone = None;
    match address.map(|a| a.trim().to_owned()) {
        Some(a) if is_parent_bsuid(&a) => parent_user_id = parent_user_id.or(Some(a)),
        Some(a) if is_bsuid(&a) => user_id = user_id.or(Some(a)),
        other => phone = other,
    }
    let same = |mine: &Option<String>, theirs: &Option<String>| matches!((mine, theirs), (Some(a), Some(b)) if a.trim() == b.trim());
    let contact = contacts.iter().find(|c| {
        same(&phone, &c.wa_id)
            || same(&user_id, &c.user_id)
            || same(&parent_user_id, &c.parent_user_id)
    });
    let mut username = None;
    if let Some(c) = contact {
        user_id = user_id.or_else(|| c.user_id.clone());
        parent_user_id = parent_user_id.or_else(|| c.parent_user_id.clone());
        username = c.username.clone();
        if phone.is_none() {
            phone = c.wa_id.clone();
        }
    }
    let user = ChannelUser {
        user_id: user_id.map(|u| u.trim().to_owned()),
        parent_user_id: parent_user_id.map(|u| u.trim().to_owned()),
        username,
    };
    let address = phone
        .map(|p| e164(&p))
        .or_else(|| user.user_id.clone())
        .or_else(|| user.parent_user_id.clone())?;
    Some((address, user))
}

fn status_event(
    s: &dyn Fields,
    contacts: &[Contact],
    path: &(impl std::fmt::Display + ?Sized),
    ctx: &Context,
    flavor: &Flavor,
) -> Result<Event, NormalizeError> {
    let id = text_of(s.field("id")).ok_or_else(|| missing(path, "id"))?;
    let status_value = text_of(s.field("status")).ok_or_else(|| missing(path, "status"))?;
    let (status, informational) = (flavor.status)(&status_value);
    let (recipient, user) = recipient(s, contacts).ok_or_else(|| missing(path, "recipient_id"))?;
    let timestamp_ms = timestamp(s.field("timestamp"), ctx, path)?;
    let error = (status == Status::Failed)
        .then(|| first_error(s.field("errors")))
        .flatten();
    let mut correlation = Map::new();
    if let Some(v) = s.field("biz_opaque_callback_data").filter(|v| !v.is_null()) {
        correlation.insert("biz_opaque_callback_data".into(), v.clone());
    }
    let ts_part = s.field("timestamp").map(value_text).unwrap_or_default();
    Ok(Event {
        channel: Channel::Whatsapp,
        channel_value: recipient,
        channel_user: user,
        vendor_name: flavor.vendor.to_owned(),
        vendor_ack_id: (flavor.ack_id)(s).or(Some(id.clone())),
        idempotency_key: idempotency_key(flavor.vendor, &[&id, &status_value, &ts_part]),
        correlation,
        kind: EventKind::Status(StatusUpdate {
            status,
            timestamp_ms,
            error,
            informational,
        }),
        // Moved in by the caller.
        raw: Value::Null.into(),
    })
}

/// The user a status is about and their identifiers: for a group message the participant
/// (else the group id as given), else the user [`resolve_user`] finds from
/// `recipient_id`, `recipient_user_id`, `recipient_parent_user_id` and the contacts.
fn recipient(s: &dyn Fields, contacts: &[Contact]) -> Option<(String, ChannelUser)> {
    let ids = UserFields {
        address: text_of(s.field("recipient_id")),
        user_id: text_of(s.field("recipient_user_id")),
        parent_user_id: text_of(s.field("recipient_parent_user_id")),
    };
    let is_group = s.field("recipient_type").and_then(Value::as_str) == Some("group");
    if is_group {
        let user = ChannelUser {
            user_id: ids.user_id,
            parent_user_id: ids.parent_user_id,
            username: None,
        };
        return text_of(s.field("recipient_participant_id"))
            .map(|p| e164(&p))
            .or(ids.address)
            .map(|r| (r, user));
    }
    resolve_user(ids, contacts)
}

/// `errors[0]` as `{code, message}`: message from `message`, `title` or `error_data.details`.
pub(crate) fn first_error(errors: Option<&Value>) -> Option<ErrorInfo> {
    let e = errors?.as_array()?.first()?.as_object()?;
    let details = e
        .get("error_data")
        .and_then(Value::as_object)
        .and_then(|d| text(d, "details"));
    let message = text(e, "message").or_else(|| text(e, "title")).or(details);
    ErrorInfo::from_parts(text(e, "code"), message)
}

fn message_event(
    m: &Map<String, Value>,
    business: &str,
    contacts: &[Contact],
    path: &str,
    ctx: &Context,
    vendor: &str,
) -> Result<Event, NormalizeError> {
    let id = require(m, "id", path)?;
    let sender = UserFields {
        address: text(m, "from"),
        user_id: text(m, "from_user_id"),
        parent_user_id: text(m, "from_parent_user_id"),
    };
    let (from, user) = resolve_user(sender, contacts).ok_or_else(|| missing(path, "from"))?;
    let message_type = text(m, "type").unwrap_or_else(|| "unknown".to_owned());
    let timestamp_ms = timestamp(m.get("timestamp"), ctx, path)?;
    let body = m.get(&message_type).and_then(Value::as_object);
    let mut msg = InboundMessage {
        from: from.clone(),
        to: business.to_owned(),
        message_type: message_type.clone(),
        timestamp_ms,
        source_message_id: id.clone(),
        ..InboundMessage::default()
    };
    match (message_type.as_str(), body) {
        ("edit", Some(b)) => {
            // The message as edited is a message of its own type, without an id.
            msg.original_message_id = text(b, "original_message_id");
            if let Some(edited) = b.get("message").and_then(Value::as_object) {
                let kind = text(edited, "type").unwrap_or_default();
                let edited_body = edited.get(&kind).and_then(Value::as_object);
                fill_content(&mut msg, &kind, edited_body);
                msg.context = msg.context.take().or_else(|| reply_context(edited));
            }
        }
        ("revoke", Some(b)) => msg.original_message_id = text(b, "original_message_id"),
        (kind, body) => fill_content(&mut msg, kind, body),
    }
    if msg.context.is_none() {
        msg.context = reply_context(m);
    }
    Ok(Event {
        channel: Channel::Whatsapp,
        channel_value: from,
        channel_user: user,
        vendor_name: vendor.to_owned(),
        vendor_ack_id: Some(id.clone()),
        idempotency_key: idempotency_key(vendor, &[&id]),
        correlation: Map::new(),
        kind: EventKind::Inbound(msg),
        // Moved in by the caller.
        raw: Value::Null.into(),
    })
}

/// The content of a message of type `kind` (the same-named object `body`): text, media,
/// location, and for a reaction the message reacted to (see the `meta_whatsapp` table).
fn fill_content(msg: &mut InboundMessage, kind: &str, body: Option<&Map<String, Value>>) {
    let Some(b) = body else {
        return;
    };
    match kind {
        "text" => msg.text = raw_text(b, "body"),
        "image" | "video" | "audio" | "document" | "sticker" => {
            msg.text = raw_text(b, "caption");
            if let Some(url) = text(b, "url").or_else(|| text(b, "id")) {
                msg.media.push(Media::at(url, text(b, "mime_type")));
            }
        }
        "location" => msg.location = location(b),
        "button" => msg.text = raw_text(b, "text").or_else(|| raw_text(b, "payload")),
        "interactive" => msg.text = interactive_text(b),
        "reaction" => {
            msg.text = raw_text(b, "emoji");
            msg.context = text(b, "message_id").map(|id| ReplyContext { id, from: None });
        }
        "order" => msg.text = raw_text(b, "text"),
        "system" => msg.text = raw_text(b, "body"),
        _ => {}
    }
}

/// The `context {id, from}` of a message that replies to another (`from` as E.164).
fn reply_context(m: &Map<String, Value>) -> Option<ReplyContext> {
    m.get("context").and_then(Value::as_object).and_then(|c| {
        text(c, "id").map(|id| ReplyContext {
            id,
            from: text(c, "from").map(|f| e164(&f)),
        })
    })
}

/// The title of an interactive reply (`button_reply`, `list_reply`) or an `nfm_reply` body.
pub(crate) fn interactive_text(b: &Map<String, Value>) -> Option<String> {
    ["button_reply", "list_reply"]
        .iter()
        .find_map(|k| {
            b.get(*k)
                .and_then(Value::as_object)
                .and_then(|r| raw_text(r, "title"))
        })
        .or_else(|| {
            b.get("nfm_reply")
                .and_then(Value::as_object)
                .and_then(|r| raw_text(r, "body"))
        })
}

/// A location from `latitude`/`longitude` (numbers or numeric strings), `name`, `address`.
pub(crate) fn location(b: &Map<String, Value>) -> Option<Location> {
    Some(Location {
        latitude: number(b.get("latitude")?)?,
        longitude: number(b.get("longitude")?)?,
        name: text(b, "name"),
        address: text(b, "address"),
    })
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|f| f.is_finite())
}

/// Epoch ms of a timestamp field; absent means "now" (`received_at_ms`).
pub(crate) fn timestamp(
    v: Option<&Value>,
    ctx: &Context,
    path: &(impl std::fmt::Display + ?Sized),
) -> Result<i64, NormalizeError> {
    match v {
        None | Some(Value::Null) => Ok(ctx.received_at_ms),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(ctx.received_at_ms),
        Some(v) => value_to_ms(v).ok_or_else(|| {
            NormalizeError::invalid(format!("{path}/timestamp"), "not a Unix timestamp")
        }),
    }
}

/// A string or number field as text; empty strings count as absent.
pub(crate) fn text(m: &Map<String, Value>, key: &str) -> Option<String> {
    text_of(m.get(key))
}

/// [`text`] of a value that may be absent.
pub(crate) fn text_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A string field as given (user text is kept verbatim; only the empty string is absent).
pub(crate) fn raw_text(m: &Map<String, Value>, key: &str) -> Option<String> {
    match m.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn require(m: &Map<String, Value>, key: &str, path: &str) -> Result<String, NormalizeError> {
    text(m, key).ok_or_else(|| missing(path, key))
}

fn missing(path: &(impl std::fmt::Display + ?Sized), key: &str) -> NormalizeError {
    NormalizeError::MissingField(format!("{path}/{key}"))
}

/// The text of a scalar JSON value (for idempotency key parts).
pub(crate) fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
