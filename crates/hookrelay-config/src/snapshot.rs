//! The compiled configuration: one immutable snapshot, swapped whole on reload.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use hookrelay_core::payload::PayloadOptions;
use hookrelay_core::signing::Signer;
use hookrelay_core::{Channel, Event, EventType, Provider, Secret, Status, Verifier};
use hookrelay_tower::gcra::Gcra;
use hookrelay_tower::set_headers::HeaderSet;
use rustls_pki_types::CertificateDer;
use url::Url;

use crate::error::{ConfigError, Pos};
use crate::raw::{Informational, Mode};

/// One whole, valid configuration. Immutable: a reload builds a new one.
///
/// Each request and each delivery attempt reads the snapshot once (an `Arc<Snapshot>`
/// from [`crate::Live::snapshot`]) and uses it to the end.
#[derive(Debug)]
#[non_exhaustive]
pub struct Snapshot {
    /// 1 for the first snapshot of a process, then +1 per applied reload.
    pub generation: u64,
    /// SHA-256 (hex) of the file's bytes.
    pub hash: String,
    /// Public listener (not reloadable).
    pub listen: SocketAddr,
    /// Admin listener (not reloadable).
    pub admin: SocketAddr,
    /// The bearer token of the admin API (`admin.token`), if set: needed by every admin
    /// path except `/healthz`, `/readyz` and `/metrics` (reloadable).
    pub admin_token: Option<Secret>,
    /// Connections the admin listener holds at once (`admin.max_connections`; read at
    /// start).
    pub admin_max_connections: usize,
    /// The notification service, for non-callback traffic.
    pub upstream: Upstream,
    /// Durable store (not reloadable).
    pub store: Store,
    /// How long a provider event id is remembered to drop its retries (`store.dedupe_window`;
    /// read per callback: a reload applies it to new keys).
    pub dedupe_window: Duration,
    /// The embedded store's budget in bytes (`store.max_bytes`), `None` for `auto` (half
    /// the file system holding it); read at start and applied again by a reload.
    pub store_max_bytes: Option<u64>,
    /// Free space the embedded store keeps on its file system in bytes (`store.min_free`),
    /// `None` for `auto` (a sixteenth of it, at most 64 MiB); read at start and applied
    /// again by a reload.
    pub store_min_free: Option<u64>,
    /// Outbound TLS: the certificate authorities deliveries trust (not reloadable).
    pub tls: Tls,
    /// Bounds of the public listener (read per request: a reload applies them).
    pub limits: Limits,
    /// Dead letters older than this are deleted (`dead_letters.retention`).
    pub dead_letter_retention: Duration,
    /// Deliveries delivered longer ago than this leave the history
    /// (`history.retention`).
    pub history_retention: Duration,
    /// The most bytes the history of delivered deliveries keeps (`history.max_bytes`).
    pub history_max_bytes: u64,
    /// OpenTelemetry traces (`telemetry`; not reloadable).
    pub telemetry: Telemetry,
    /// Callback routes by request path.
    pub routes: BTreeMap<String, Route>,
    /// Endpoints, in file order.
    pub endpoints: Vec<Endpoint>,
    /// Things that are valid but deserve attention (`verify: none`, an admin listener on a
    /// public address, …).
    pub warnings: Vec<ConfigError>,
    pub(crate) by_name: HashMap<String, usize>,
    pub(crate) key_pos: BTreeMap<&'static str, Pos>,
    /// The files `${file:…}` read, with the SHA-256 (hex) of what they held: a change
    /// of one is a change of the configuration.
    pub files: Vec<(PathBuf, String)>,
    /// SHA-256 (hex) of the file's bytes (the resolved configuration is [`Self::hash`]).
    pub file_hash: String,
    /// The resolved top-level keys, routes by path and endpoints by name, to tell what a
    /// reload changes (by key name: values may be secrets and are never shown).
    pub(crate) resolved: Resolved,
}

/// The resolved configuration, in parts. Its values may be secrets: `Debug` shows the
/// names only.
#[derive(Default)]
pub(crate) struct Resolved {
    pub(crate) top: serde_json::Map<String, serde_json::Value>,
    pub(crate) routes: BTreeMap<String, serde_json::Value>,
    pub(crate) endpoints: BTreeMap<String, serde_json::Value>,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("top", &self.top.keys().collect::<Vec<_>>())
            .field("routes", &self.routes.keys().collect::<Vec<_>>())
            .field("endpoints", &self.endpoints.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The keys whose values differ between `a` and `b` (objects), sorted.
fn changed_keys(a: &serde_json::Value, b: &serde_json::Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let a = a.as_object().unwrap_or(&empty);
    let b = b.as_object().unwrap_or(&empty);
    let mut keys: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

impl Snapshot {
    /// What `next` changes of this configuration, one line each: routes and endpoints
    /// added and removed, the keys changed in each, the top-level keys changed. Names of
    /// keys only, never their values (they may be secrets).
    #[must_use]
    pub fn changes_to(&self, next: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        let (a, b) = (&self.resolved, &next.resolved);
        let top = changed_keys(
            &serde_json::Value::Object(a.top.clone()),
            &serde_json::Value::Object(b.top.clone()),
        );
        if !top.is_empty() {
            out.push(format!("changed: {}", top.join(", ")));
        }
        for (what, old, new) in [
            ("route", &a.routes, &b.routes),
            ("endpoint", &a.endpoints, &b.endpoints),
        ] {
            for (name, value) in new {
                match old.get(name) {
                    None => out.push(format!("{what} {name} added")),
                    Some(before) if before != value => out.push(format!(
                        "{what} {name}: {} changed",
                        changed_keys(before, value).join(", ")
                    )),
                    Some(_) => {}
                }
            }
            for name in old.keys().filter(|n| !new.contains_key(*n)) {
                out.push(format!("{what} {name} removed"));
            }
        }
        if out.is_empty() && self.files != next.files {
            out.push("a ${file:} value changed".to_owned());
        }
        out
    }

    /// The route of a request path.
    #[must_use]
    pub fn route(&self, path: &str) -> Option<&Route> {
        self.routes.get(path)
    }

    /// An endpoint by name.
    #[must_use]
    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.by_name.get(name).and_then(|&i| self.endpoints.get(i))
    }

    /// The endpoints that accept `event`, in file order.
    pub fn matching<'a>(&'a self, event: &'a Event) -> impl Iterator<Item = &'a Endpoint> + 'a {
        self.endpoints.iter().filter(move |e| e.accepts(event))
    }
}

/// The notification service, compiled once: where a proxied request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Upstream {
    /// The URL as configured (`HOST:PORT` gets `http://`).
    pub url: Url,
    /// The host without IPv6 brackets: a name or an IP literal.
    pub host: String,
    /// The port (the scheme's default when the URL has none).
    pub port: u16,
    /// True for `https`.
    pub tls: bool,
    /// The address, when the host is an IP literal (nothing to resolve).
    pub ip: Option<IpAddr>,
}

impl Upstream {
    /// `HOST:PORT`, with IPv6 literals in brackets (`[::1]:3000`).
    #[must_use]
    pub fn authority(&self) -> String {
        match self.ip {
            Some(IpAddr::V6(v6)) => format!("[{v6}]:{}", self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }
}

/// Outbound TLS settings: Mozilla's roots are always trusted (compiled into the binary,
/// so a container image needs no CA bundle), the system's when it has them, and the
/// certificates of `tls.ca_file` for a private CA.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Tls {
    /// The PEM file of `tls.ca_file`, if set.
    pub ca_file: Option<PathBuf>,
    /// Its certificates, read and parsed when the file was loaded (never empty when
    /// `ca_file` is set).
    pub ca_certs: Vec<CertificateDer<'static>>,
}

/// OpenTelemetry settings as the file gives them (`telemetry`); what is not given falls
/// back to the standard `OTEL_*` variables when tracing starts.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Telemetry {
    /// `telemetry.otlp_endpoint`: the collector's traces URL.
    pub otlp_endpoint: Option<String>,
    /// `telemetry.service_name`.
    pub service_name: Option<String>,
    /// `telemetry.sample_ratio`, 0 to 1.
    pub sample_ratio: Option<f64>,
}

/// Bounds of the public listener, which faces the internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Callback bodies held before their signature is checked, all connections together.
    pub unverified_bytes: usize,
    /// Time for a callback's whole body to arrive.
    pub body_timeout: Duration,
    /// Idle time of a keep-alive connection between requests.
    pub keepalive_timeout: Duration,
    /// Time for a request's headers to arrive: from the connection's start for its first
    /// request, from the first byte for the next ones.
    pub header_timeout: Duration,
    /// Largest request head (request line and headers) read, in bytes; counted in
    /// `unverified_bytes` while it is read.
    pub header_bytes: usize,
    /// Connections open at once on the public listener; `None` derives it from the
    /// open-file limit at start.
    pub max_connections: Option<usize>,
}

impl Limits {
    /// Bodies of at most this many bytes may hold the whole of `unverified_bytes` while
    /// their signature is checked; larger ones share [`Limits::LARGE_BODIES_SHARE`] of it.
    pub const SMALL_BODY: usize = 64 * 1024;
    /// The part of `unverified_bytes` bodies over [`Limits::SMALL_BODY`] may hold together:
    /// (numerator, denominator).
    pub const LARGE_BODIES_SHARE: (usize, usize) = (1, 2);

    /// The largest body a callback can have its signature checked with: over it, the
    /// listener could never hold the body and would answer 503 to every try.
    #[must_use]
    pub fn largest_body(&self) -> usize {
        let (num, den) = Self::LARGE_BODIES_SHARE;
        (self.unverified_bytes / den * num).max(Self::SMALL_BODY)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            unverified_bytes: 64 * 1024 * 1024,
            body_timeout: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            header_bytes: 64 * 1024,
            max_connections: None,
        }
    }
}

/// Where the durable queue lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// An embedded store in a directory.
    Embedded {
        /// Directory.
        path: PathBuf,
    },
    /// Redis.
    Redis {
        /// `redis://` or `rediss://` URL (may carry a password, hence redacted).
        url: Secret,
        /// How long a stopped replica's deliveries stay invisible to the others.
        visibility_timeout: Duration,
    },
}

/// A compiled callback route.
#[derive(Debug)]
#[non_exhaustive]
pub struct Route {
    /// Request path.
    pub path: String,
    /// The provider that calls it.
    pub provider: Provider,
    /// Answer, or also proxy to upstream.
    pub mode: Mode,
    /// The signature check. `None` only when the file says `verify: none` explicitly.
    pub verifier: Option<Verifier>,
    /// Largest accepted body in bytes.
    pub max_body: usize,
    /// Keep or drop informational events.
    pub informational: Informational,
}

/// Retry policy of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retry {
    /// Attempts in all, the first included.
    pub max_attempts: NonZeroU32,
    /// Dead-letter once the first attempt is older than this.
    pub max_age: Duration,
    /// Delays between attempts; the last repeats. Never empty.
    pub backoff: Vec<Duration>,
}

impl Retry {
    /// The delay before attempt `attempt` (2 = the first retry), before jitter.
    #[must_use]
    pub fn delay_before(&self, attempt: u32) -> Duration {
        let i = usize::try_from(attempt.saturating_sub(2)).unwrap_or(usize::MAX);
        self.backoff
            .get(i)
            .or(self.backoff.last())
            .copied()
            .unwrap_or(Duration::from_secs(1))
    }
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            max_attempts: NonZeroU32::new(12).unwrap_or(NonZeroU32::MIN),
            max_age: Duration::from_secs(24 * 3600),
            backoff: [1, 5, 30, 120, 600, 3600]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
        }
    }
}

/// A compiled delivery endpoint.
#[derive(Debug)]
#[non_exhaustive]
pub struct Endpoint {
    /// Identity across reloads.
    pub name: String,
    /// Where payloads go.
    pub url: Url,
    /// Free text.
    pub description: Option<String>,
    /// Event types per channel; `None` accepts every event.
    pub events: Option<HashMap<Channel, HashSet<EventType>>>,
    /// Statuses of status events; `None` accepts all.
    pub statuses: Option<HashSet<Status>>,
    /// Throttle (GCRA: a steady `per_second` with bursts of `burst`); `None` is unlimited.
    pub rate_limit: Option<Gcra>,
    /// Extra request headers, validated by the same rule the delivery stack applies
    /// (framing, hop-by-hop and signing headers are refused); secret-looking values are
    /// marked sensitive.
    pub headers: HeaderSet,
    /// Standard Webhooks signing (`webhook-signature`); unsigned when it has no secret.
    pub signer: Signer,
    /// How payloads are rendered: `format`, `include_raw` (`vendor_response`) and the
    /// correlation-id names (the defaults), made once when the config is compiled.
    pub payload: PayloadOptions,
    /// Retry policy.
    pub retry: Retry,
    /// Timeout of one attempt.
    pub timeout: Duration,
    /// Link-local URLs allowed (SSRF opt-in).
    pub allow_link_local: bool,
    /// Delivery attempts in flight at once.
    pub concurrency: NonZeroU32,
}

impl Endpoint {
    /// True when the endpoint's filters accept `event`: its channel and event type are
    /// listed under `events` (or `events` is absent), and for a status event its status is
    /// listed under `statuses` (or `statuses` is absent).
    #[must_use]
    pub fn accepts(&self, event: &Event) -> bool {
        if let Some(events) = &self.events {
            let listed = events
                .get(&event.channel)
                .is_some_and(|types| types.contains(&event.event_type()));
            if !listed {
                return false;
            }
        }
        match (&self.statuses, event.status()) {
            (Some(statuses), Some(s)) => statuses.contains(&s.status),
            _ => true,
        }
    }

    /// How to render this endpoint's payloads.
    #[must_use]
    pub fn payload_options(&self) -> &PayloadOptions {
        &self.payload
    }
}
