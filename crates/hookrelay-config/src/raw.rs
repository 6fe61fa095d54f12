//! The raw model: the YAML file as written, with unknown keys rejected.
//!
//! Doc comments here are the descriptions editors show (they go into `hookrelay schema`),
//! so they speak of YAML keys. Values are checked and turned into typed values by
//! [`crate::compile`].

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The hookrelay configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    /// Public listener for provider callbacks, `IP:PORT` (default `0.0.0.0:8080`). Not
    /// reloadable: a change is refused until restart.
    #[serde(default)]
    pub(crate) listen: Option<Scalar>,
    /// Admin listener: health, metrics, reload, dead letters. `IP:PORT` (default
    /// `127.0.0.1:9090`), or `{listen, token}`. The address is not reloadable.
    #[serde(default)]
    pub(crate) admin: Option<RawAdmin>,
    /// The notification service: non-callback traffic is proxied here, `HOST:PORT` or an
    /// `http(s)://` URL.
    pub(crate) upstream: Scalar,
    /// Durable queue and dead letters (default `{kind: embedded, path: ./data}`; written
    /// out, `kind` is required). Not reloadable but for `dedupe_window`, `max_bytes` and
    /// `min_free`.
    #[serde(default)]
    pub(crate) store: Option<RawStore>,
    /// Outbound TLS of deliveries. Mozilla's root certificates are always trusted (they
    /// are compiled in), and the system's when it has them. Not reloadable.
    #[serde(default)]
    pub(crate) tls: Option<RawTls>,
    /// Bounds of the public listener, which faces the internet.
    #[serde(default)]
    pub(crate) limits: Option<RawLimits>,
    /// Dead letters: how long they are kept.
    #[serde(default)]
    pub(crate) dead_letters: Option<RawDeadLetters>,
    /// Delivery history: how long and how much of it is kept.
    #[serde(default)]
    pub(crate) history: Option<RawHistory>,
    /// OpenTelemetry traces (off unless an OTLP endpoint is set here or in
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`). Not reloadable.
    #[serde(default)]
    pub(crate) telemetry: Option<RawTelemetry>,
    /// Callback routes (type-checked here, read item by item by the compiler).
    #[serde(default)]
    #[allow(dead_code)]
    pub(crate) callbacks: Vec<de::IgnoredAny>,
    /// Endpoints (type-checked here, read item by item by the compiler).
    #[serde(default)]
    #[allow(dead_code)]
    pub(crate) endpoints: Vec<de::IgnoredAny>,
}

// The schema-only twin of `RawConfig` with typed lists (the loader reads the list items
// one by one so one bad item does not hide the others).
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "hookrelay configuration",
    description = "hookrelay: verifies provider callbacks, normalizes them and delivers them to endpoints. Strings may use ${VAR}, ${VAR:-default} and ${file:/path}."
)]
#[allow(dead_code)]
pub(crate) struct SchemaConfig {
    /// Public listener for provider callbacks, `IP:PORT` (default `0.0.0.0:8080`). Not
    /// reloadable: a change is refused until restart.
    #[serde(default)]
    listen: Option<String>,
    /// Admin listener: health, metrics, reload, dead letters. `IP:PORT` (default
    /// `127.0.0.1:9090`), or `{listen, token}`. The address is not reloadable.
    #[serde(default)]
    admin: Option<RawAdmin>,
    /// The notification service: non-callback traffic is proxied here, `HOST:PORT` or an
    /// `http(s)://` URL.
    upstream: String,
    /// Durable queue and dead letters (default `{kind: embedded, path: ./data}`; written
    /// out, `kind` is required). Not reloadable but for `dedupe_window`, `max_bytes` and
    /// `min_free`.
    #[serde(default)]
    store: Option<RawStore>,
    /// Outbound TLS of deliveries. Mozilla's root certificates are always trusted (they
    /// are compiled in), and the system's when it has them. Not reloadable.
    #[serde(default)]
    tls: Option<RawTls>,
    /// Bounds of the public listener, which faces the internet.
    #[serde(default)]
    limits: Option<RawLimits>,
    /// Dead letters: how long they are kept.
    #[serde(default)]
    dead_letters: Option<RawDeadLetters>,
    /// Delivery history: how long and how much of it is kept.
    #[serde(default)]
    history: Option<RawHistory>,
    /// OpenTelemetry traces (off unless an OTLP endpoint is set here or in
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`). Not reloadable.
    #[serde(default)]
    telemetry: Option<RawTelemetry>,
    /// Callback routes: the paths providers call.
    #[serde(default)]
    callbacks: Vec<RawCallback>,
    /// Where normalized events are delivered.
    #[serde(default)]
    endpoints: Vec<RawEndpoint>,
}

/// Bounds of the public listener. Each has a safe default; each is counted in the
/// metrics when it bites.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    /// Callback bodies held in memory before their signature is checked, all connections
    /// together (default 64MiB): a callback that would pass it is answered 503 at once,
    /// before its body is read, and its provider retries.
    pub(crate) unverified_bytes: Option<Scalar>,
    /// Time for a callback's whole body to arrive once its headers have (default 30s):
    /// a body dribbled slower is answered 408.
    pub(crate) body_timeout: Option<Scalar>,
    /// How long a keep-alive connection may stay idle between requests (default 60s).
    pub(crate) keepalive_timeout: Option<Scalar>,
    /// Time for a request's headers to arrive (default 10s), counted from the connection's
    /// start for its first request and from the first byte for the next ones: a connection
    /// dribbling its headers slower is closed.
    pub(crate) header_timeout: Option<Scalar>,
    /// Largest request head, the request line and headers (default 64KiB): a larger one
    /// is answered 431 and its connection closed. Heads being read count in
    /// `unverified_bytes`.
    pub(crate) header_bytes: Option<Scalar>,
    /// Connections open at once on the public listener (default `auto`: half the open-file
    /// limit, at most 16384); a connection over it is answered 503 and closed.
    pub(crate) max_connections: Option<Scalar>,
}

/// Outbound TLS settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    /// A PEM file of extra certificate authorities to trust (a private CA of internal
    /// endpoints). A file that cannot be read or holds no certificate is an error.
    pub(crate) ca_file: Option<String>,
}

/// Where queued deliveries and dead letters are kept.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum RawStore {
    /// An embedded store in a local directory (one sidecar).
    Embedded {
        /// Directory of the store (default `./data`, relative to the working directory).
        #[serde(default = "default_store_path")]
        path: String,
        /// How long a provider event id is remembered to drop the provider's retries of
        /// it (default `24h`; reloadable: new keys take the new window).
        #[serde(default)]
        dedupe_window: Option<Scalar>,
        /// The store's budget: once its queued deliveries, dead letters and dedupe keys
        /// take this much (`2GiB`, at least `1MiB`), callbacks are answered 503 until
        /// deliveries drain. `auto` (default): half the size of the file system holding
        /// the store. Reloadable.
        #[serde(default)]
        max_bytes: Option<Scalar>,
        /// Free space kept on the file system holding the store: below it, callbacks are
        /// answered 503 (deliveries go on) until half as much again is free, before a
        /// write can fail for want of space. `auto` (default): a sixteenth of the file
        /// system, at most 64MiB; a size such as `256MiB`; `0`: none. Reloadable.
        #[serde(default)]
        min_free: Option<Scalar>,
    },
    /// Redis (several sidecars sharing one queue and one rate limit per endpoint).
    Redis {
        /// `redis://` or `rediss://` URL (may carry a password: use `${VAR}`).
        url: String,
        /// How long a delivery taken by a replica that stopped (crashed, deleted pod)
        /// stays invisible before another replica takes it over (default `30s`).
        #[serde(default)]
        visibility_timeout: Option<Scalar>,
        /// How long a provider event id is remembered to drop the provider's retries of
        /// it (default `24h`; reloadable: new keys take the new window).
        #[serde(default)]
        dedupe_window: Option<Scalar>,
    },
}

/// The embedded store's directory when `store.path` is left out.
fn default_store_path() -> String {
    "./data".to_owned()
}

/// What hookrelay does with a verified callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// hookrelay answers the provider itself (default).
    #[default]
    Terminate,
    /// hookrelay also proxies the original request to the upstream.
    Tap,
}

/// What happens to provider events that change no status (deferrals, delivery delays).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Informational {
    /// Deliver them as status `queued` (default).
    #[default]
    Keep,
    /// Drop them.
    Drop,
}

/// Payload format of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawFormat {
    /// SuprSend outbound-webhook field names, version "1.0" (default).
    #[default]
    Suprsend,
    /// The same fields in a Standard Webhooks envelope.
    Standard,
}

/// A callback route.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCallback {
    /// Request path providers call (`/callbacks/twilio`); unique.
    pub(crate) path: String,
    /// Provider id (`sendgrid`, `mailgun`, `ses`, `postmark`, `twilio`, `vonage`, `plivo`,
    /// `meta_whatsapp`, `gupshup`, `infobip`, `sinch`, `telnyx`, `messagebird`,
    /// `sparkpost`, `mandrill`, `mailjet`, `brevo`, `resend`), or the name of a generic
    /// provider defined by a `generic:` block.
    pub(crate) provider: String,
    /// `terminate` (default): hookrelay answers; `tap`: also proxy to the upstream.
    #[serde(default)]
    pub(crate) mode: Mode,
    /// Verification settings of the provider (`{auth_token: ${TWILIO_AUTH_TOKEN}}`), or
    /// `none` to accept unverified callbacks (anyone can then inject events).
    #[serde(default)]
    pub(crate) verify: Verify,
    /// Largest accepted body: bytes, or `512KiB`, `1MiB`, `2MB` (default `1MiB`).
    #[serde(default)]
    pub(crate) max_body: Option<Scalar>,
    /// `keep` (default) or `drop` provider events that change no status.
    #[serde(default)]
    pub(crate) informational: Informational,
    /// A generic provider: JSON-pointer field mapping (see the core crate's `generic`
    /// docs). Its `name` defaults to `provider`.
    #[serde(default)]
    #[schemars(schema_with = "generic_schema")]
    pub(crate) generic: Option<Value>,
}

/// The `verify:` block.
#[derive(Debug, Clone)]
pub(crate) enum Verify {
    /// `verify: none`: explicitly unverified.
    None,
    /// Key → value.
    Settings(BTreeMap<String, Scalar>),
}

impl Default for Verify {
    fn default() -> Self {
        Verify::Settings(BTreeMap::new())
    }
}

impl<'de> Deserialize<'de> for Verify {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) if s == "none" => Ok(Verify::None),
            Value::Null => Ok(Verify::Settings(BTreeMap::new())),
            Value::Object(m) => m
                .into_iter()
                .map(|(k, v)| {
                    Scalar::from_value(v)
                        .map(|s| (k.clone(), s))
                        .map_err(|why| de::Error::custom(format!("`{k}`: {why}")))
                })
                .collect::<Result<_, _>>()
                .map(Verify::Settings),
            other => Err(de::Error::custom(format!(
                "expected a mapping of settings or `none`, found {}",
                kind(&other)
            ))),
        }
    }
}

impl JsonSchema for Verify {
    fn schema_name() -> Cow<'static, str> {
        "Verify".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Verification settings of the provider, or `none` to accept unverified callbacks.",
            "oneOf": [
                {"const": "none", "description": "Accept callbacks without any signature check. Anyone who can reach the path can inject events."},
                {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}}
            ]
        })
    }
}

fn generic_schema(_: &mut SchemaGenerator) -> Schema {
    let selector = json!({
        "oneOf": [
            {"type": "string"},
            {"type": "object", "additionalProperties": false, "required": ["pointer"],
             "properties": {"pointer": {"type": "string"}, "map": {"type": "object", "additionalProperties": {"type": "string"}}, "default": {"type": "string"}}}
        ]
    });
    let ptr = json!({"type": "string", "description": "JSON pointer, e.g. /status"});
    let fields: serde_json::Map<String, Value> = [
        "channel_value",
        "vendor_ack_id",
        "event_id",
        "status",
        "timestamp",
        "error_code",
        "error_message",
        "from",
        "to",
        "text",
        "message_type",
    ]
    .iter()
    .map(|k| ((*k).to_owned(), ptr.clone()))
    .chain([(
        "correlation".to_owned(),
        json!({"type": "object", "additionalProperties": {"type": "string"}}),
    )])
    .collect();
    let statuses = json!({"enum": hookrelay_core::Status::NAMES});
    json_schema!({
        "description": "A generic provider: maps the fields of its JSON callbacks with JSON pointers.",
        "type": "object",
        "additionalProperties": false,
        "required": ["channel", "fields"],
        "properties": {
            "name": {"type": "string", "description": "vendor_name of the events; defaults to the route's provider"},
            "channel": selector,
            "event_type": selector,
            "events": {"type": "string", "description": "pointer to the array of events; \"\" = the body is the array"},
            "fields": {"type": "object", "additionalProperties": false, "properties": fields},
            "status_map": {"type": "object", "additionalProperties": statuses},
            "informational": {"type": "array", "items": {"type": "string"}},
            "signature": {
                "type": "object", "additionalProperties": false, "required": ["header"],
                "properties": {
                    "header": {"type": "string"},
                    "algorithm": {"enum": ["sha256", "sha1", "sha512"]},
                    "encoding": {"enum": ["hex", "base64"]},
                    "prefix": {"type": "string"},
                    "signed": {"enum": ["body", "timestamp.body"]},
                    "timestamp_header": {"type": "string"}
                }
            }
        }
    })
}

use serde_json::json;

/// A delivery endpoint.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEndpoint {
    /// The endpoint's identity across reloads (letters, digits, `_`, `-`, `.`); unique.
    pub(crate) name: String,
    /// Where payloads are POSTed: an `http://` or `https://` URL.
    pub(crate) url: String,
    /// Free text for people and the admin API.
    #[serde(default)]
    pub(crate) description: Option<String>,
    /// Event types per channel: `{email: [status], whatsapp: [status, inbound_message]}`.
    /// Absent: every event of every channel.
    #[serde(default)]
    #[schemars(schema_with = "events_schema")]
    pub(crate) events: Option<BTreeMap<String, OneOrMany>>,
    /// Only these statuses of status events (`[delivered, failed]`). Absent: all.
    #[serde(default)]
    #[schemars(schema_with = "statuses_schema")]
    pub(crate) statuses: Option<OneOrMany>,
    /// Throttle deliveries (delayed, never dropped). Absent: unlimited.
    #[serde(default)]
    pub(crate) rate_limit: Option<RawRateLimit>,
    /// Extra request headers (`Authorization: "Bearer ${TOKEN}"`).
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, Scalar>,
    /// Standard Webhooks signing secret(s), `whsec_…`; a list during a key rotation.
    #[serde(default)]
    pub(crate) signing_secret: Option<OneOrMany>,
    /// Payload format: `suprsend` (default) or `standard`.
    #[serde(default)]
    pub(crate) format: RawFormat,
    /// Include the provider's own event as `vendor_response` (default true).
    #[serde(default)]
    pub(crate) include_raw: Option<bool>,
    /// Retries of failed deliveries (429, 5xx, timeouts).
    #[serde(default)]
    pub(crate) retry: Option<RawRetry>,
    /// Timeout of one delivery attempt (default `10s`).
    #[serde(default)]
    pub(crate) timeout: Option<Scalar>,
    /// Allow a link-local URL (169.254.0.0/16, fe80::/10: cloud metadata services).
    /// Default false (SSRF protection).
    #[serde(default)]
    pub(crate) allow_link_local: bool,
    /// Delivery attempts in flight at once for this endpoint (default 16).
    #[serde(default)]
    pub(crate) concurrency: Option<i64>,
}

fn events_schema(_: &mut SchemaGenerator) -> Schema {
    let types = json!({"enum": hookrelay_core::EventType::NAMES});
    let list = json!({"oneOf": [types, {"type": "array", "items": types}]});
    let props: serde_json::Map<String, Value> = hookrelay_core::Channel::NAMES
        .iter()
        .map(|c| ((*c).to_owned(), list.clone()))
        .collect();
    json_schema!({
        "description": "Event types per channel. Absent: every event of every channel.",
        "type": "object",
        "additionalProperties": false,
        "properties": props
    })
}

fn statuses_schema(_: &mut SchemaGenerator) -> Schema {
    let s = json!({"enum": hookrelay_core::Status::NAMES});
    json_schema!({
        "description": "Only these statuses of status events. Absent: all.",
        "oneOf": [s, {"type": "array", "items": s}]
    })
}

/// `rate_limit:`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimit {
    /// Sustained deliveries per second (at least 1).
    pub(crate) per_second: i64,
    /// Deliveries allowed at once above the sustained rate (default: `per_second`).
    #[serde(default)]
    pub(crate) burst: Option<i64>,
}

/// `retry:`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetry {
    /// Attempts in all, the first included (default 12).
    #[serde(default)]
    pub(crate) max_attempts: Option<i64>,
    /// Give up (dead letter) once the first attempt is older than this (default `24h`).
    #[serde(default)]
    pub(crate) max_age: Option<Scalar>,
    /// Delays between attempts (`[1s, 5s, 30s, 2m, 10m, 1h]`, the default); the last one
    /// repeats. Jitter is added; a `Retry-After` answer is honoured.
    #[serde(default)]
    pub(crate) backoff: Option<Vec<Scalar>>,
}

/// What is kept of dead letters.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDeadLetters {
    /// Dead letters older than this (since they became dead letters) are deleted, checked
    /// every 10 minutes (default `30d`; at least `1h`). Reloadable.
    #[serde(default)]
    pub(crate) retention: Option<Scalar>,
}

/// What is kept of delivered deliveries (queued ones and dead letters are always kept).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHistory {
    /// Deliveries delivered longer ago than this are deleted with their attempts,
    /// checked every minute (default `7d`; at least `1m`). Reloadable.
    #[serde(default)]
    pub(crate) retention: Option<Scalar>,
    /// The most the delivered deliveries kept may take, a size such as `512MiB` (default
    /// `1GiB`; at least `1MiB`): past it the oldest go first, whatever their age.
    /// Reloadable.
    #[serde(default)]
    pub(crate) max_bytes: Option<Scalar>,
}

/// OpenTelemetry traces: a span per callback and per delivery attempt, sent over OTLP
/// (HTTP, protobuf).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTelemetry {
    /// Where spans are sent, the full URL of the collector's traces path (e.g.
    /// `http://otel-collector:4318/v1/traces`). Without it, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
    /// or `OTEL_EXPORTER_OTLP_ENDPOINT` (to which `/v1/traces` is added); without any,
    /// tracing is off.
    #[serde(default)]
    pub(crate) otlp_endpoint: Option<String>,
    /// The `service.name` of the spans (default `OTEL_SERVICE_NAME`, else `hookrelay`).
    #[serde(default)]
    pub(crate) service_name: Option<String>,
    /// The share of new traces kept, 0 to 1 (default `OTEL_TRACES_SAMPLER_ARG`, else 1).
    #[serde(default)]
    pub(crate) sample_ratio: Option<Scalar>,
}

/// The admin listener: its address alone, or its settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub(crate) enum RawAdmin {
    /// `IP:PORT`: no token, so only a loopback address is allowed.
    Address(Scalar),
    /// The address and the token.
    Settings(RawAdminSettings),
}

/// The admin listener's settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdminSettings {
    /// `IP:PORT` (default `127.0.0.1:9090`). Not reloadable.
    #[serde(default)]
    pub(crate) listen: Option<Scalar>,
    /// Bearer token (`Authorization: Bearer <token>`) every admin path needs except
    /// `/healthz`, `/readyz` and `/metrics`; at least 16 characters. Use `${VAR}` or
    /// `${file:/path}`. Required when `listen` is not a loopback address. Reloadable.
    #[serde(default)]
    pub(crate) token: Option<String>,
    /// Connections the admin listener holds at once (default 64; over it a new one is
    /// closed at once, counted as `hookrelay_connections_dropped_total{limit="admin_connections"}`);
    /// each lives at most a minute. Read at start.
    #[serde(default)]
    pub(crate) max_connections: Option<Scalar>,
}

impl<'de> Deserialize<'de> for RawAdmin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Object(map) => serde_json::from_value(Value::Object(map))
                .map(RawAdmin::Settings)
                .map_err(de::Error::custom),
            other => Scalar::from_value(other)
                .map(RawAdmin::Address)
                .map_err(|why| {
                    de::Error::custom(format!("{why}: expected IP:PORT or {{listen, token}}"))
                }),
        }
    }
}

impl RawAdmin {
    /// The address as written, if any.
    pub(crate) fn listen(&self) -> Option<&Scalar> {
        match self {
            RawAdmin::Address(address) => Some(address),
            RawAdmin::Settings(settings) => settings.listen.as_ref(),
        }
    }

    /// The token as written (after `${…}`), if any.
    pub(crate) fn token(&self) -> Option<&str> {
        match self {
            RawAdmin::Address(_) => None,
            RawAdmin::Settings(settings) => settings.token.as_deref(),
        }
    }

    pub(crate) fn max_connections(&self) -> Option<&Scalar> {
        match self {
            RawAdmin::Address(_) => None,
            RawAdmin::Settings(settings) => settings.max_connections.as_ref(),
        }
    }
}

/// A plain value read as text: strings, and numbers or booleans as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scalar(pub(crate) String);

impl Serialize for Scalar {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl Scalar {
    fn from_value(v: Value) -> Result<Self, String> {
        match v {
            Value::String(s) => Ok(Scalar(s)),
            Value::Number(n) => Ok(Scalar(n.to_string())),
            Value::Bool(b) => Ok(Scalar(b.to_string())),
            other => Err(format!("expected a plain value, found {}", kind(&other))),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Scalar::from_value(Value::deserialize(d)?).map_err(de::Error::custom)
    }
}

impl JsonSchema for Scalar {
    fn schema_name() -> Cow<'static, str> {
        "Scalar".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": ["string", "number", "boolean"]})
    }
}

/// One value or a list of values (strings).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct OneOrMany(pub(crate) Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Array(items) => items
                .into_iter()
                .map(|v| Scalar::from_value(v).map(|s| s.0))
                .collect::<Result<_, _>>()
                .map(OneOrMany)
                .map_err(de::Error::custom),
            v => Scalar::from_value(v)
                .map(|s| OneOrMany(vec![s.0]))
                .map_err(|_| de::Error::custom("expected a value or a list of values")),
        }
    }
}

impl JsonSchema for OneOrMany {
    fn schema_name() -> Cow<'static, str> {
        "OneOrMany".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]})
    }
}

/// "a mapping", "a list", … for messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}
