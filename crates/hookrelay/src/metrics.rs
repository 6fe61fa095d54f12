//! Prometheus metrics of the sidecar, rendered in the text exposition format.
//!
//! Counters are keyed by their label values; the set of label values is bounded by the
//! configuration (routes, providers, endpoints) and by fixed reason labels, never by input.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hookrelay_store::StoreStats;

/// Upper bounds of the delivery latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Label names and values of one series, as given by a caller.
type Labels<'a> = &'a [(&'static str, &'a str)];

#[derive(Default)]
struct Family {
    help: &'static str,
    series: BTreeMap<Vec<(&'static str, String)>, u64>,
}

/// What `/metrics` shows of the store, read when it is scraped.
pub(crate) struct StoreState {
    /// Its health check passed.
    pub(crate) up: bool,
    /// What it counted.
    pub(crate) stats: StoreStats,
}

/// Every metric of the sidecar.
#[derive(Default)]
pub(crate) struct Metrics {
    counters: Mutex<BTreeMap<&'static str, Family>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    generation: AtomicU64,
    in_flight: AtomicI64,
    connections_open: AtomicUsize,
    connections_max: AtomicUsize,
}

impl Metrics {
    /// Adds `n` to counter `name` with `labels`.
    pub(crate) fn add(&self, name: &'static str, help: &'static str, labels: Labels<'_>, n: u64) {
        if let Ok(mut map) = self.counters.lock() {
            let family = map.entry(name).or_insert_with(|| Family {
                help,
                series: BTreeMap::new(),
            });
            // A family has a handful of series: found without building a key, which is
            // only made for a new series.
            let found = family.series.iter_mut().find(|(key, _)| {
                key.len() == labels.len()
                    && key
                        .iter()
                        .zip(labels)
                        .all(|((kn, kv), (ln, lv))| kn == ln && kv == lv)
            });
            match found {
                Some((_, count)) => *count += n,
                None => {
                    let key = labels.iter().map(|&(k, v)| (k, v.to_owned())).collect();
                    family.series.insert(key, n);
                }
            }
        }
    }

    /// A callback received on a route (before verification).
    pub(crate) fn received(&self, provider: &str) {
        self.add(
            "hookrelay_callbacks_received_total",
            "Callbacks received on callback routes.",
            &[("provider", provider)],
            1,
        );
    }

    /// A callback rejected with `reason` (`bad_signature`, `bad_body`, `too_large`, …).
    pub(crate) fn rejected(&self, provider: &str, reason: &str) {
        self.add(
            "hookrelay_callbacks_rejected_total",
            "Callbacks rejected, by reason.",
            &[("provider", provider), ("reason", reason)],
            1,
        );
    }

    /// Events accepted (durably enqueued) or dropped as duplicates.
    pub(crate) fn events(&self, provider: &str, outcome: &'static str, n: u64) {
        self.add(
            "hookrelay_events_total",
            "Normalized events, by outcome (enqueued, duplicate, unrouted, dropped_informational; ignored: callbacks whose events are not about a message, such as SendGrid account events).",
            &[("provider", provider), ("outcome", outcome)],
            n,
        );
    }

    /// Events of accepted callbacks that could not be normalized, kept as dead letters of
    /// `:unparsed` (a provider's retry of one is counted again, though written once).
    pub(crate) fn unparsed(&self, provider: &str, n: u64) {
        self.add(
            "hookrelay_unparsed_events_total",
            "Provider events that could not be normalized, kept as dead letters of endpoint :unparsed.",
            &[("provider", provider)],
            n,
        );
    }

    /// A delivery attempt's outcome for `endpoint`.
    pub(crate) fn attempt(&self, endpoint: &str, outcome: &'static str, latency: Option<Duration>) {
        self.add(
            "hookrelay_deliveries_total",
            "Delivery attempts, by endpoint and outcome (delivered, retried, dead_lettered).",
            &[("endpoint", endpoint), ("outcome", outcome)],
            1,
        );
        if let Some(latency) = latency
            && let Ok(mut map) = self.latency.lock()
        {
            if !map.contains_key(endpoint) {
                map.insert(endpoint.to_owned(), Histogram::default());
            }
            let Some(h) = map.get_mut(endpoint) else {
                return;
            };
            let secs = latency.as_secs_f64();
            for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
                if secs <= *bound {
                    h.buckets[i] += 1;
                }
            }
            h.count += 1;
            h.sum += secs;
        }
    }

    /// Time spent waiting for the throttle of `endpoint`.
    pub(crate) fn throttle_wait(&self, endpoint: &str, wait: Duration) {
        self.add(
            "hookrelay_throttle_wait_microseconds_total",
            "Time delivery attempts waited for their endpoint's rate limit.",
            &[("endpoint", endpoint)],
            u64::try_from(wait.as_micros()).unwrap_or(u64::MAX),
        );
    }

    /// A config reload outcome (`applied`, `rejected`, `unchanged`).
    pub(crate) fn reload(&self, outcome: &'static str) {
        self.add(
            "hookrelay_config_reloads_total",
            "Configuration reloads, by outcome.",
            &[("outcome", outcome)],
            1,
        );
    }

    /// An admin request refused for a missing or wrong token.
    pub(crate) fn admin_unauthorized(&self) {
        self.add(
            "hookrelay_admin_unauthorized_total",
            "Admin API requests refused for a missing or wrong token.",
            &[],
            1,
        );
    }

    /// Sets the generation of the live configuration.
    pub(crate) fn set_generation(&self, generation: u64) {
        self.generation.store(generation, Ordering::Relaxed);
    }

    /// Tracks attempts in flight.
    pub(crate) fn in_flight(&self, delta: i64) {
        self.in_flight.fetch_add(delta, Ordering::Relaxed);
    }

    /// Counts a new connection on the public listener if fewer than `max` are open.
    pub(crate) fn connection_open(&self, max: usize) -> bool {
        self.connections_max.store(max, Ordering::Relaxed);
        self.connections_open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < max).then_some(open + 1)
            })
            .is_ok()
    }

    /// The connection cap in force, for the gauge (also set by each new connection).
    pub(crate) fn connections_max(&self, max: usize) {
        self.connections_max.store(max, Ordering::Relaxed);
    }

    /// A connection counted by [`Self::connection_open`] closed.
    pub(crate) fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::AcqRel);
    }

    /// A connection closed by a listener limit (`max_connections`, `header_timeout`).
    pub(crate) fn connection_dropped(&self, limit: &'static str) {
        self.add(
            "hookrelay_connections_dropped_total",
            "Connections closed by a limit of the public listener, by limit (max_connections, header_timeout).",
            &[("limit", limit)],
            1,
        );
    }

    /// Renders every metric; `queue_depth` gives the gauge per endpoint, `store` the
    /// store's.
    pub(crate) fn render(&self, queue_depth: &[(String, u64)], store: &StoreState) -> String {
        let mut out = String::new();
        if let Ok(map) = self.counters.lock() {
            for (name, family) in map.iter() {
                let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} counter", family.help);
                for (labels, v) in &family.series {
                    let _ = writeln!(out, "{name}{} {v}", render_labels(labels, None));
                }
            }
        }
        let _ = writeln!(
            out,
            "# HELP hookrelay_delivery_latency_seconds Time from sending a delivery to its response.\n# TYPE hookrelay_delivery_latency_seconds histogram"
        );
        if let Ok(map) = self.latency.lock() {
            for (endpoint, h) in map.iter() {
                let labels = vec![("endpoint", endpoint.clone())];
                for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "hookrelay_delivery_latency_seconds_bucket{} {}",
                        render_labels(&labels, Some(&bound.to_string())),
                        h.buckets[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "hookrelay_delivery_latency_seconds_bucket{} {}",
                    render_labels(&labels, Some("+Inf")),
                    h.count
                );
                let _ = writeln!(
                    out,
                    "hookrelay_delivery_latency_seconds_sum{} {}",
                    render_labels(&labels, None),
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "hookrelay_delivery_latency_seconds_count{} {}",
                    render_labels(&labels, None),
                    h.count
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP hookrelay_queue_depth Deliveries queued per endpoint.\n# TYPE hookrelay_queue_depth gauge"
        );
        for (endpoint, depth) in queue_depth {
            let _ = writeln!(
                out,
                "hookrelay_queue_depth{{endpoint=\"{}\"}} {depth}",
                escape(endpoint)
            );
        }
        let _ = writeln!(
            out,
            "# HELP hookrelay_config_generation Generation of the live configuration.\n# TYPE hookrelay_config_generation gauge\nhookrelay_config_generation {}",
            self.generation.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP hookrelay_deliveries_in_flight Delivery attempts in flight.\n# TYPE hookrelay_deliveries_in_flight gauge\nhookrelay_deliveries_in_flight {}",
            self.in_flight.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP hookrelay_connections_open Connections open on the public listener.\n# TYPE hookrelay_connections_open gauge\nhookrelay_connections_open {}",
            self.connections_open.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP hookrelay_connections_max The public listener's limits.max_connections.\n# TYPE hookrelay_connections_max gauge\nhookrelay_connections_max {}",
            self.connections_max.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP hookrelay_store_up Whether the store takes writes: 0 while it is unreachable or recovers from a failed write.\n# TYPE hookrelay_store_up gauge\nhookrelay_store_up {}",
            u8::from(store.up)
        );
        let _ = writeln!(
            out,
            "# HELP hookrelay_store_refused_total Writes the embedded store refused at once while it recovered from a failed write (a full disk): callbacks answered 503, outcomes tried again.\n# TYPE hookrelay_store_refused_total counter\nhookrelay_store_refused_total {}",
            store.stats.refused
        );
        let _ = writeln!(
            out,
            "# HELP hookrelay_store_outages_total Times a write or sync of the embedded store failed and it started refusing writes until it recovered.\n# TYPE hookrelay_store_outages_total counter\nhookrelay_store_outages_total {}",
            store.stats.outages
        );
        let _ = writeln!(
            out,
            "# HELP hookrelay_store_full_total Callbacks the embedded store refused because its budget (store.max_bytes) was used up: answered 503 until deliveries drain.\n# TYPE hookrelay_store_full_total counter\nhookrelay_store_full_total {}",
            store.stats.full
        );
        let _ = writeln!(
            out,
            "# HELP hookrelay_store_used_bytes Bytes of queued deliveries, dead letters and dedupe keys the embedded store holds, as its budget counts them.\n# TYPE hookrelay_store_used_bytes gauge\nhookrelay_store_used_bytes {}",
            store.stats.used_bytes
        );
        let _ = writeln!(
            out,
            "# HELP hookrelay_store_max_bytes The embedded store's budget (store.max_bytes), 0 for none.\n# TYPE hookrelay_store_max_bytes gauge\nhookrelay_store_max_bytes {}",
            store.stats.max_bytes
        );
        let _ = writeln!(
            out,
            "# HELP hookrelay_store_dedupe_keys Dedupe keys and one-time tokens the embedded store holds.\n# TYPE hookrelay_store_dedupe_keys gauge\nhookrelay_store_dedupe_keys {}",
            store.stats.keys
        );
        let _ = writeln!(
            out,
            "# HELP hookrelay_log_lines_suppressed_total Log lines dropped by the per-call-site limit.\n# TYPE hookrelay_log_lines_suppressed_total counter\nhookrelay_log_lines_suppressed_total {}",
            crate::logs::suppressed_total()
        );
        out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn render_labels(labels: &[(&'static str, String)], le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}
