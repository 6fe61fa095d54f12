//! Prometheus metrics of the sidecar, on `prometheus-client`.
//!
//! Counters and histograms live in families keyed by label sets whose values are bounded
//! by the configuration (routes' providers, endpoints) and by fixed reason and outcome
//! labels, never by input. Updating one takes the family's read lock only (a write lock
//! once, when a series is new). Values that are read rather than counted (queue depths,
//! the store's figures, the process) are read when `/metrics` is scraped, by
//! [`Metrics::render`].
//!
//! Each configured route's provider and each endpoint has its series from the start
//! ([`Metrics::prepare`]): a rate over a counter that appears only with its first event
//! would miss that event.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hookrelay_config::Snapshot;
use hookrelay_store::StoreStats;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, EncodeMetric,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Upper bounds of the latency histograms, in seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Upper bounds of the end-to-end delivery latency, in seconds: queueing and retries
/// make it minutes or hours when an endpoint is down.
const END_TO_END_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0, 21600.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabels {
    provider: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    provider: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    endpoint: String,
    /// `2xx`, `3xx`, `4xx`, `5xx`, or `error` (no response: connection, timeout, TLS).
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    endpoint: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeOnly {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    /// `received` (every callback on the route) or `rejected` (answered with an error).
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

/// The outcomes of an attempt, each counted once in `hookrelay_deliveries_total`.
pub(crate) const OUTCOMES: [&str; 5] = [
    "delivered",
    "retried",
    "deferred",
    "dead_lettered",
    "paused",
];

/// The results of an attempt sent, in `hookrelay_delivery_attempts_total`.
const RESULTS: [&str; 5] = ["2xx", "3xx", "4xx", "5xx", "error"];

type Latency = Family<EndpointLabels, Histogram, fn() -> Histogram>;
type AckLatency = Family<ProviderLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

fn end_to_end_histogram() -> Histogram {
    Histogram::new(END_TO_END_BUCKETS)
}

/// What `/metrics` reads when it is scraped: per endpoint, and of the store.
#[derive(Debug, Default)]
pub(crate) struct Scrape {
    /// Per configured endpoint: name, queue depth, seconds its queue's head is overdue,
    /// dead letters, paused.
    pub(crate) endpoints: Vec<EndpointScrape>,
    /// The store's health check passed.
    pub(crate) store_up: bool,
    /// What the store counted.
    pub(crate) store: StoreStats,
    /// Whether the configuration file on disk is the one running (`None`: unreadable).
    pub(crate) config_current: Option<bool>,
    /// `embedded` or `redis`.
    pub(crate) store_kind: &'static str,
    /// Bytes the store's files take (embedded).
    pub(crate) store_disk_bytes: Option<u64>,
}

/// One endpoint's figures at a scrape.
#[derive(Debug, Default)]
///
/// A figure the store could not give (Redis unreachable) is `None`: its series is left out
/// of that scrape rather than shown as 0 (`hookrelay_store_up` says why).
pub(crate) struct EndpointScrape {
    pub(crate) name: String,
    pub(crate) depth: Option<u64>,
    pub(crate) overdue_seconds: Option<f64>,
    pub(crate) dead: Option<u64>,
    pub(crate) paused: bool,
}

/// Every metric of the sidecar.
pub(crate) struct Metrics {
    registry: Registry,
    received: Family<ProviderLabels, Counter>,
    rejected: Family<RejectLabels, Counter>,
    events: Family<EventLabels, Counter>,
    unparsed: Family<ProviderLabels, Counter>,
    attempts: Family<AttemptLabels, Counter>,
    outcomes: Family<OutcomeLabels, Counter>,
    attempt_latency: Latency,
    end_to_end: Latency,
    ack_latency: AckLatency,
    throttle_wait: Family<EndpointLabels, Counter<f64, AtomicU64>>,
    reloads: Family<OutcomeOnly, Counter>,
    admin_unauthorized: Counter,
    dead_letters_expired: Counter,
    history_swept: Counter,
    dropped: Family<LimitLabels, Counter>,
    routes: Family<RouteLabels, Counter>,
    /// The configured routes' counters by path (received, rejected), so that counting a
    /// callback takes no allocation or lock: replaced whole by [`Metrics::prepare`].
    route_counters: arc_swap::ArcSwap<std::collections::HashMap<String, [Counter; 2]>>,
    state: Arc<State>,
    rendering: Mutex<()>,
    last_reload: Mutex<Option<LastReload>>,
}

/// The last reload that applied or refused a configuration, for the status page.
#[derive(Clone, Debug)]
pub(crate) struct LastReload {
    /// When, in Unix ms.
    pub(crate) at_ms: i64,
    /// `applied` or `rejected`.
    pub(crate) outcome: &'static str,
    /// What changed (applied) or why it was refused (rejected), one line each.
    pub(crate) lines: Vec<String>,
}

/// Cumulative counts read for the status page's charts: per route (received, rejected)
/// and per endpoint (delivered, failed attempts).
#[derive(Clone, Debug, Default)]
pub(crate) struct Tallies {
    pub(crate) routes: std::collections::HashMap<String, (u64, u64)>,
    pub(crate) endpoints: std::collections::HashMap<String, (u64, u64)>,
}

use std::sync::Arc;

/// Values set as they change and read at a scrape.
#[derive(Debug, Default)]
struct State {
    generation: AtomicU64,
    /// Unix time of the last applied reload (or the start), in ms.
    last_reload_ms: AtomicI64,
    in_flight: AtomicI64,
    connections_open: AtomicUsize,
    connections_max: AtomicUsize,
    scrape: Mutex<Scrape>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let received = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "hookrelay_callbacks_received",
            "Callbacks received on callback routes, by provider",
            received.clone(),
        );
        let rejected = Family::<RejectLabels, Counter>::default();
        registry.register(
            "hookrelay_callbacks_rejected",
            "Callbacks rejected, by provider and reason",
            rejected.clone(),
        );
        let events = Family::<EventLabels, Counter>::default();
        registry.register(
            "hookrelay_events",
            "Normalized events, by outcome (enqueued, duplicate, unrouted, dropped_informational; ignored: callbacks whose events are not about a message, such as SendGrid account events)",
            events.clone(),
        );
        let unparsed = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "hookrelay_unparsed_events",
            "Provider events that could not be normalized, kept as dead letters of endpoint :unparsed",
            unparsed.clone(),
        );
        let attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "hookrelay_delivery_attempts",
            "Delivery attempts sent, by endpoint and result (2xx, 3xx, 4xx, 5xx, error: no response)",
            attempts.clone(),
        );
        let outcomes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "hookrelay_deliveries",
            "Outcomes of delivery attempts, one per attempt, by endpoint: delivered, retried (scheduled again), deferred (throttled or waiting, not counted as an attempt), dead_lettered, paused (410 Gone)",
            outcomes.clone(),
        );
        let attempt_latency: Latency = Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "hookrelay_delivery_attempt_duration",
            "Time from sending a delivery attempt to its response, by endpoint",
            Unit::Seconds,
            attempt_latency.clone(),
        );
        let end_to_end: Latency = Family::new_with_constructor(end_to_end_histogram);
        registry.register_with_unit(
            "hookrelay_delivery_end_to_end",
            "Time from receiving a callback to delivering its event, by endpoint (queueing and retries included)",
            Unit::Seconds,
            end_to_end.clone(),
        );
        let ack_latency: AckLatency = Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "hookrelay_callback_ack_duration",
            "Time from a callback's arrival to its 2xx answer (read, verified, normalized, durably enqueued), by provider",
            Unit::Seconds,
            ack_latency.clone(),
        );
        let throttle_wait = Family::<EndpointLabels, Counter<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "hookrelay_throttle_wait",
            "Time delivery attempts waited for their endpoint's rate limit",
            Unit::Seconds,
            throttle_wait.clone(),
        );
        let reloads = Family::<OutcomeOnly, Counter>::default();
        registry.register(
            "hookrelay_config_reloads",
            "Configuration reloads, by outcome (applied, rejected, unchanged, failed)",
            reloads.clone(),
        );
        let admin_unauthorized = Counter::default();
        registry.register(
            "hookrelay_admin_unauthorized",
            "Admin API requests refused for a missing or wrong token",
            admin_unauthorized.clone(),
        );
        let dead_letters_expired = Counter::default();
        registry.register(
            "hookrelay_dead_letters_expired",
            "Dead letters deleted because they were older than dead_letters.retention",
            dead_letters_expired.clone(),
        );
        let history_swept = Counter::default();
        registry.register(
            "hookrelay_history_removed",
            "Delivered deliveries removed from the history past history.retention or history.max_bytes",
            history_swept.clone(),
        );
        let dropped = Family::<LimitLabels, Counter>::default();
        registry.register(
            "hookrelay_connections_dropped",
            "Connections of the public listener refused or closed by a limit",
            dropped.clone(),
        );
        let routes = Family::<RouteLabels, Counter>::default();
        registry.register(
            "hookrelay_route_callbacks",
            "Callbacks on each route (its path), by result: received (all), rejected (answered with an error)",
            routes.clone(),
        );
        let state = Arc::new(State::default());
        registry.register_collector(Box::new(Scraped(Arc::clone(&state))));
        Metrics {
            registry,
            received,
            rejected,
            events,
            unparsed,
            attempts,
            outcomes,
            attempt_latency,
            end_to_end,
            ack_latency,
            throttle_wait,
            reloads,
            admin_unauthorized,
            dead_letters_expired,
            history_swept,
            dropped,
            routes,
            route_counters: arc_swap::ArcSwap::default(),
            state,
            rendering: Mutex::new(()),
            last_reload: Mutex::new(None),
        }
    }
}

fn provider(provider: &str) -> ProviderLabels {
    ProviderLabels {
        provider: provider.to_owned(),
    }
}

fn endpoint(endpoint: &str) -> EndpointLabels {
    EndpointLabels {
        endpoint: endpoint.to_owned(),
    }
}

impl Metrics {
    /// Creates the series of every route's provider and every endpoint of `snapshot`, so
    /// that they exist (at 0) before their first event.
    pub(crate) fn prepare(&self, snapshot: &Snapshot) {
        let mut counters = std::collections::HashMap::new();
        for route in snapshot.routes.values() {
            let [received, rejected] = ["received", "rejected"].map(|result| {
                self.routes
                    .get_or_create(&RouteLabels {
                        route: route.path.clone(),
                        result,
                    })
                    .clone()
            });
            counters.insert(route.path.clone(), [received, rejected]);
            let id = route.provider.id();
            let _ = self.received.get_or_create(&provider(id));
            let _ = self.events.get_or_create(&EventLabels {
                provider: id.to_owned(),
                outcome: "enqueued",
            });
        }
        for ep in &snapshot.endpoints {
            for outcome in OUTCOMES {
                let _ = self.outcomes.get_or_create(&OutcomeLabels {
                    endpoint: ep.name.clone(),
                    outcome,
                });
            }
            for result in RESULTS {
                let _ = self.attempts.get_or_create(&AttemptLabels {
                    endpoint: ep.name.clone(),
                    result,
                });
            }
        }
        for outcome in ["applied", "rejected", "unchanged", "failed"] {
            let _ = self.reloads.get_or_create(&OutcomeOnly { outcome });
        }
        self.route_counters.store(Arc::new(counters));
    }

    /// A callback received on a route (before verification).
    pub(crate) fn received(&self, id: &str) {
        self.received.get_or_create(&provider(id)).inc();
    }

    /// A callback received on the route of `path`.
    pub(crate) fn route_received(&self, path: &str) {
        self.route(path, 0, "received");
    }

    /// A callback on the route of `path` answered with an error.
    pub(crate) fn route_rejected(&self, path: &str) {
        self.route(path, 1, "rejected");
    }

    fn route(&self, path: &str, index: usize, result: &'static str) {
        if let Some(counters) = self.route_counters.load().get(path) {
            counters[index].inc();
            return;
        }
        // A route of a snapshot not prepared yet.
        self.routes
            .get_or_create(&RouteLabels {
                route: path.to_owned(),
                result,
            })
            .inc();
    }

    /// Records the outcome of a reload that applied or refused a configuration.
    pub(crate) fn record_reload(&self, record: LastReload) {
        *self
            .last_reload
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(record);
    }

    /// The last reload that applied or refused a configuration, if any.
    pub(crate) fn last_reload(&self) -> Option<LastReload> {
        self.last_reload
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The cumulative counts of `routes` (paths) and `endpoints` now.
    pub(crate) fn tallies<'a>(
        &self,
        routes: impl Iterator<Item = &'a str>,
        endpoints: impl Iterator<Item = &'a str>,
    ) -> Tallies {
        let route_count = |route: &str, result| {
            self.routes
                .get_or_create(&RouteLabels {
                    route: route.to_owned(),
                    result,
                })
                .get()
        };
        let outcome = |name: &str, outcome| {
            self.outcomes
                .get_or_create(&OutcomeLabels {
                    endpoint: name.to_owned(),
                    outcome,
                })
                .get()
        };
        Tallies {
            routes: routes
                .map(|r| {
                    (
                        r.to_owned(),
                        (route_count(r, "received"), route_count(r, "rejected")),
                    )
                })
                .collect(),
            endpoints: endpoints
                .map(|e| {
                    let failed =
                        outcome(e, "retried") + outcome(e, "dead_lettered") + outcome(e, "paused");
                    (e.to_owned(), (outcome(e, "delivered"), failed))
                })
                .collect(),
        }
    }

    /// A callback rejected with `reason` (`bad_signature`, `bad_body`, `too_large`, …).
    pub(crate) fn rejected(&self, provider: &str, reason: &str) {
        self.rejected
            .get_or_create(&RejectLabels {
                provider: provider.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// A callback answered 2xx `took` after it arrived.
    pub(crate) fn acknowledged(&self, id: &str, took: Duration) {
        self.ack_latency
            .get_or_create(&provider(id))
            .observe(took.as_secs_f64());
    }

    /// Events accepted (durably enqueued) or dropped as duplicates.
    pub(crate) fn events(&self, provider: &str, outcome: &'static str, n: u64) {
        self.events
            .get_or_create(&EventLabels {
                provider: provider.to_owned(),
                outcome,
            })
            .inc_by(n);
    }

    /// Events of accepted callbacks that could not be normalized, kept as dead letters of
    /// `:unparsed` (a provider's retry of one is counted again, though written once).
    pub(crate) fn unparsed(&self, id: &str, n: u64) {
        self.unparsed.get_or_create(&provider(id)).inc_by(n);
    }

    /// An attempt sent to `endpoint`: its response's status (`None`: no response) and,
    /// with a response, how long it took.
    pub(crate) fn attempt(&self, name: &str, status: Option<u16>, latency: Option<Duration>) {
        let result = match status {
            Some(200..=299) => "2xx",
            Some(300..=399) => "3xx",
            Some(400..=499) => "4xx",
            Some(500..=599) => "5xx",
            _ => "error",
        };
        self.attempts
            .get_or_create(&AttemptLabels {
                endpoint: name.to_owned(),
                result,
            })
            .inc();
        if let Some(latency) = latency {
            self.attempt_latency
                .get_or_create(&endpoint(name))
                .observe(latency.as_secs_f64());
        }
    }

    /// The outcome of an attempt (one of [`OUTCOMES`]).
    pub(crate) fn outcome(&self, name: &str, outcome: &'static str) {
        self.outcomes
            .get_or_create(&OutcomeLabels {
                endpoint: name.to_owned(),
                outcome,
            })
            .inc();
    }

    /// A delivery delivered `took` after its callback arrived.
    pub(crate) fn delivered_after(&self, name: &str, took: Duration) {
        self.end_to_end
            .get_or_create(&endpoint(name))
            .observe(took.as_secs_f64());
    }

    /// Time spent waiting for the throttle of `endpoint`.
    pub(crate) fn throttle_wait(&self, name: &str, wait: Duration) {
        if !wait.is_zero() {
            self.throttle_wait
                .get_or_create(&endpoint(name))
                .inc_by(wait.as_secs_f64());
        }
    }

    /// A config reload outcome (`applied`, `rejected`, `unchanged`, `failed`).
    pub(crate) fn reload(&self, outcome: &'static str) {
        self.reloads.get_or_create(&OutcomeOnly { outcome }).inc();
    }

    /// The configuration running now was applied at `at_ms` (Unix ms).
    pub(crate) fn applied_at(&self, at_ms: i64) {
        self.state.last_reload_ms.store(at_ms, Ordering::Relaxed);
    }

    /// Delivered deliveries removed from the history by its sweep.
    pub(crate) fn history_swept(&self, n: u64) {
        self.history_swept.inc_by(n);
    }

    /// Dead letters deleted past `dead_letters.retention`.
    pub(crate) fn dead_letters_expired(&self, n: u64) {
        self.dead_letters_expired.inc_by(n);
    }

    /// An admin request refused for a missing or wrong token.
    pub(crate) fn admin_unauthorized(&self) {
        self.admin_unauthorized.inc();
    }

    /// Sets the generation of the live configuration.
    pub(crate) fn set_generation(&self, generation: u64) {
        self.state.generation.store(generation, Ordering::Relaxed);
    }

    /// Tracks attempts in flight.
    pub(crate) fn in_flight(&self, delta: i64) {
        self.state.in_flight.fetch_add(delta, Ordering::Relaxed);
    }

    /// Counts an accepted connection; false when `max` are already open (the caller
    /// refuses it).
    pub(crate) fn connection_open(&self, max: usize) -> bool {
        let open = &self.state.connections_open;
        let previous = open.fetch_add(1, Ordering::AcqRel);
        if previous >= max {
            open.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Sets the connection limit shown.
    pub(crate) fn connections_max(&self, max: usize) {
        self.state.connections_max.store(max, Ordering::Relaxed);
    }

    /// A counted connection closed.
    pub(crate) fn connection_closed(&self) {
        self.state.connections_open.fetch_sub(1, Ordering::AcqRel);
    }

    /// A connection refused or closed by `limit`.
    pub(crate) fn connection_dropped(&self, limit: &'static str) {
        self.dropped.get_or_create(&LimitLabels { limit }).inc();
    }

    /// Renders every metric in the Prometheus text format, with `scrape`'s figures.
    pub(crate) fn render(&self, scrape: Scrape) -> String {
        // One render at a time: the collector reads the figures set here.
        let _rendering = self
            .rendering
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *self
            .state
            .scrape
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = scrape;
        let mut out = String::new();
        // Writing into a String does not fail; a collector's error would be a bug.
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::error!(error = %e, "cannot render the metrics");
        }
        out
    }
}

/// The values read at a scrape, as a collector of the registry.
#[derive(Debug)]
struct Scraped(Arc<State>);

fn gauge<N: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: N,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, unit, g.metric_type())?)
}

fn counter<N: EncodeCounterValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: N,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(value);
    c.encode(encoder.encode_descriptor(name, help, unit, c.metric_type())?)
}

/// A gauge per endpoint.
fn per_endpoint<N: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    rows: &[EndpointScrape],
    value: impl Fn(&EndpointScrape) -> Option<N>,
) -> Result<(), std::fmt::Error> {
    let mut family =
        encoder.encode_descriptor(name, help, unit, ConstGauge::new(0i64).metric_type())?;
    for row in rows {
        let Some(value) = value(row) else { continue };
        let labels = endpoint(&row.name);
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

#[allow(clippy::cast_precision_loss)] // counts shown as floats lose nothing below 2^53
impl Collector for Scraped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let state = &self.0;
        let scrape = state.scrape.lock().unwrap_or_else(PoisonError::into_inner);
        let e = &mut encoder;
        let build = prometheus_client::metrics::info::Info::new(vec![
            ("version", env!("CARGO_PKG_VERSION")),
            ("store", scrape.store_kind),
        ]);
        build.encode(e.encode_descriptor(
            "hookrelay_build",
            "The running build",
            None,
            build.metric_type(),
        )?)?;
        gauge(
            e,
            "hookrelay_config_generation",
            "Generation of the live configuration: 1 at start, +1 per applied reload",
            None,
            state.generation.load(Ordering::Relaxed),
        )?;
        gauge(
            e,
            "hookrelay_config_last_reload_success_timestamp",
            "When the running configuration was applied (the start or the last applied reload), Unix time",
            Some(&Unit::Seconds),
            state.last_reload_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        )?;
        if let Some(current) = scrape.config_current {
            gauge(
                e,
                "hookrelay_config_file_matches",
                "1 when the configuration file on disk is the running one, 0 when it differs (a reload was refused or has not happened yet)",
                None,
                u32::from(current),
            )?;
        }
        per_endpoint(
            e,
            "hookrelay_queue_depth",
            "Deliveries queued per endpoint",
            None,
            &scrape.endpoints,
            |r| r.depth,
        )?;
        per_endpoint(
            e,
            "hookrelay_queue_overdue",
            "How long the first due delivery of an endpoint's queue has waited past its due time: 0 when the endpoint keeps up",
            Some(&Unit::Seconds),
            &scrape.endpoints,
            |r| r.overdue_seconds,
        )?;
        per_endpoint(
            e,
            "hookrelay_dead_letters",
            "Dead letters held per endpoint",
            None,
            &scrape.endpoints,
            |r| r.dead,
        )?;
        per_endpoint(
            e,
            "hookrelay_endpoint_paused",
            "1 while an endpoint is paused by a 410 Gone (until a reload or resume)",
            None,
            &scrape.endpoints,
            |r| Some(u32::from(r.paused)),
        )?;
        gauge(
            e,
            "hookrelay_deliveries_in_flight",
            "Delivery attempts in flight",
            None,
            state.in_flight.load(Ordering::Relaxed),
        )?;
        gauge(
            e,
            "hookrelay_connections_open",
            "Connections open on the public listener",
            None,
            state.connections_open.load(Ordering::Relaxed),
        )?;
        gauge(
            e,
            "hookrelay_connections_max",
            "The public listener's limits.max_connections",
            None,
            state.connections_max.load(Ordering::Relaxed),
        )?;
        let store = &scrape.store;
        gauge(
            e,
            "hookrelay_store_up",
            "Whether the store takes writes: 0 while it is unreachable or recovers from a failed write",
            None,
            u32::from(scrape.store_up),
        )?;
        // The embedded store's own figures: Redis has none of them (its memory, disk and
        // keys are its own, read with its tools), so they are left out rather than shown
        // as 0.
        if scrape.store_kind == "embedded" {
            counter(
                e,
                "hookrelay_store_refused",
                "Writes the embedded store refused at once while it recovered from a failed write (a full disk): callbacks answered 503, outcomes tried again",
                None,
                store.refused,
            )?;
            counter(
                e,
                "hookrelay_store_outages",
                "Times a write or sync of the embedded store failed and it started refusing writes until it recovered",
                None,
                store.outages,
            )?;
            counter(
                e,
                "hookrelay_store_full",
                "Callbacks the embedded store refused because its budget (store.max_bytes) was used up: answered 503 until deliveries drain",
                None,
                store.full,
            )?;
            counter(
                e,
                "hookrelay_store_disk_low",
                "Callbacks the embedded store refused because its file system had less free space than store.min_free: answered 503 until more is free",
                None,
                store.disk_low,
            )?;
            gauge(
                e,
                "hookrelay_store_disk_free",
                "Bytes free on the embedded store's file system when a callback was last enqueued (0 with store.min_free at 0)",
                Some(&Unit::Bytes),
                store.disk_free_bytes,
            )?;
            gauge(
                e,
                "hookrelay_store_used",
                "Bytes of queued deliveries, dead letters and dedupe keys the embedded store holds, as its budget counts them",
                Some(&Unit::Bytes),
                store.used_bytes,
            )?;
            gauge(
                e,
                "hookrelay_store_max",
                "The embedded store's budget (store.max_bytes), 0 for none",
                Some(&Unit::Bytes),
                store.max_bytes,
            )?;
            if let Some(disk) = scrape.store_disk_bytes {
                gauge(
                    e,
                    "hookrelay_store_disk",
                    "Bytes the embedded store's files take on disk",
                    Some(&Unit::Bytes),
                    disk,
                )?;
            }
            gauge(
                e,
                "hookrelay_history",
                "Bytes of the delivered deliveries the embedded store keeps as history (bounded by history.max_bytes)",
                Some(&Unit::Bytes),
                store.history_bytes,
            )?;
            gauge(
                e,
                "hookrelay_store_dedupe_keys",
                "Dedupe keys and one-time tokens the embedded store holds",
                None,
                store.keys,
            )?;
        }
        counter(
            e,
            "hookrelay_log_lines_suppressed",
            "Log lines dropped by the per-call-site limit",
            None,
            crate::logs::suppressed_total(),
        )?;
        process(e)
    }
}

/// The process's own figures, from `/proc/self` (Linux): CPU, memory, files, start.
fn process(e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let Some(stat) = ProcessStat::read() else {
        return Ok(());
    };
    counter(
        e,
        "process_cpu",
        "Total user and system CPU time spent",
        Some(&Unit::Seconds),
        stat.cpu_seconds,
    )?;
    gauge(
        e,
        "process_resident_memory",
        "Resident memory size",
        Some(&Unit::Bytes),
        stat.rss_bytes,
    )?;
    gauge(
        e,
        "process_virtual_memory",
        "Virtual memory size",
        Some(&Unit::Bytes),
        stat.vsize_bytes,
    )?;
    gauge(
        e,
        "process_start_time",
        "Start time of the process since the Unix epoch",
        Some(&Unit::Seconds),
        stat.start_time_seconds,
    )?;
    if let Some(fds) = stat.open_fds {
        gauge(e, "process_open_fds", "Open file descriptors", None, fds)?;
    }
    if let Some(max) = stat.max_fds {
        gauge(
            e,
            "process_max_fds",
            "The soft limit of open file descriptors",
            None,
            max,
        )?;
    }
    gauge(
        e,
        "process_threads",
        "Threads of the process",
        None,
        stat.threads,
    )?;
    Ok(())
}

/// What `/proc/self/stat` and friends say.
#[derive(Debug, Default)]
struct ProcessStat {
    cpu_seconds: f64,
    rss_bytes: f64,
    vsize_bytes: f64,
    start_time_seconds: f64,
    threads: u64,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
}

#[allow(clippy::cast_precision_loss)]
impl ProcessStat {
    fn read() -> Option<Self> {
        let text = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name is in parentheses and may hold spaces: fields follow the last ')'.
        let rest = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Numbered as in proc(5) from field 3 (state) = index 0.
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let page = rustix::param::page_size() as f64;
        let boot = boot_time()?;
        let stat = ProcessStat {
            cpu_seconds: (field(14)? + field(15)?) / ticks,
            threads: fields.get(17).and_then(|v| v.parse().ok())?,
            start_time_seconds: boot + field(22)? / ticks,
            vsize_bytes: field(23)?,
            rss_bytes: field(24)? * page,
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as u64),
            max_fds: {
                let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
                limit.current
            },
        };
        Some(stat)
    }
}

/// Boot time, Unix seconds (`btime` of `/proc/stat`).
fn boot_time() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// `# HELP`/`# TYPE` pairs and samples of `text`, for tests: the value of the sample
/// `name` (with its labels as written), if present.
#[cfg(test)]
pub(crate) fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_delivery_is_one_attempt_and_one_outcome() {
        let m = Metrics::default();
        m.attempt("crm", Some(200), Some(Duration::from_millis(3)));
        m.outcome("crm", "delivered");
        m.throttle_wait("crm", Duration::from_millis(250));
        let text = m.render(Scrape::default());
        assert_eq!(
            sample(
                &text,
                "hookrelay_delivery_attempts_total{endpoint=\"crm\",result=\"2xx\"}"
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                "hookrelay_deliveries_total{endpoint=\"crm\",outcome=\"delivered\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "hookrelay_throttle_wait_seconds_total{endpoint=\"crm\"}"
            ),
            Some(0.25)
        );
        assert_eq!(
            sample(
                &text,
                "hookrelay_delivery_attempt_duration_seconds_count{endpoint=\"crm\"}"
            ),
            Some(1.0)
        );
        // Nothing counted twice under another name.
        assert!(!text.contains("outcome=\"sent\""), "{text}");
    }

    #[test]
    fn process_figures_are_read() {
        let text = Metrics::default().render(Scrape::default());
        // A fresh test process may not have used a clock tick of CPU yet.
        assert!(
            sample(&text, "process_cpu_seconds_total").is_some(),
            "{text}"
        );
        for name in [
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert!(
                sample(&text, name).is_some_and(|v| v > 0.0),
                "{name}: {text}"
            );
        }
        assert!(text.contains("hookrelay_build_info{"), "{text}");
    }
}
