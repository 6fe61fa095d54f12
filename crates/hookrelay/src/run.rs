//! `hookrelay run`: starts the sidecar and stops it.
//!
//! One Pingora server with two services: the public listener ([`crate::ingest`]) and a
//! background service running the reload controller ([`crate::reload`]), which starts the
//! delivery lanes ([`crate::deliver`]), and the admin listener ([`crate::admin`]). This
//! module only wires them: it loads the config, opens the store, builds the clients and
//! runtimes, and hands each stage the narrow context it uses.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hookrelay_config::Live;
use hookrelay_store::{EmbeddedOptions, RedisOptions, Store, StoreConfig};
use pingora::listeners::{DEFAULT_L4_WRITE_BUFFER_SIZE, L4BufferSettings, ListenerConfig};
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::{BackgroundService, background_service};

use crate::EXIT_USAGE;
use crate::admin::{self, Admin, Readiness};
use crate::deliver::{DeliverCtx, Lanes};
use crate::ingest::budget::Budget;
use crate::ingest::certs::Certificates;
use crate::ingest::replay::ReplayCache;
use crate::ingest::upstream::Upstreams;
use crate::ingest::{Ingest, conn};
use crate::logs;
use crate::metrics::Metrics;
use crate::net::{self, Clients};
use crate::reload::Controller;

/// Arguments of `hookrelay run`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Configuration file.
    #[arg(short = 'c', long = "config")]
    config: PathBuf,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Log lines each call site may write at once (refused callbacks, dropped
    /// connections): past it, lines are dropped, counted and summed up every 10 s.
    #[arg(long, default_value_t = 20)]
    log_burst: u32,
    /// Log lines per second each call site may write on average once its burst is spent.
    #[arg(long, default_value_t = 1.0)]
    log_per_second: f64,
    /// The fraction of accepted callbacks and delivered deliveries that get an INFO line
    /// (target `hookrelay::events`): 1 all, 0.01 one in a hundred, 0 none.
    #[arg(long, default_value_t = 1.0)]
    event_logs: f64,
    /// Log lines waiting for the log thread at most; past it, lines are dropped and
    /// counted (`hookrelay_log_lines_suppressed_total`) rather than slow the listener.
    #[arg(long, default_value_t = 65_536)]
    log_queue_lines: usize,
}

/// Longest wait for delivery attempts in flight at SIGTERM.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// How much nicer the embedded store's writer thread runs than the listener: when the
/// listener keeps the CPUs busy, the writer wakes to bigger batches, so fewer syncs are
/// shared by more callbacks (4 to 9 % more acknowledged per second at 256 connections,
/// with lower p50 and p99, measured side by side with scripts/load's harness); with a CPU
/// to spare it changes nothing (8 and 32 connections measured the same).
const STORE_WRITER_NICENESS: i32 = 5;

/// How much nicer the store's background threads (fjall's flushes and compactions) run
/// than the listener: with the CPU short, answering providers comes first.
const STORE_BACKGROUND_NICENESS: i32 = 10;

/// Nice value of the delivery threads: under CPU contention the listener, which must
/// answer providers within their timeouts, runs first; what it acknowledged is durable and
/// is delivered as soon as there is CPU to spare. Without contention it makes no difference.
const DELIVERY_NICE: i32 = 10;

/// The background service: the reload controller (and through it the lanes) and the
/// admin listener.
struct Background {
    controller: Controller,
    admin: Arc<Admin>,
    admin_listener: Mutex<Option<std::net::TcpListener>>,
    /// The public listener's address, probed until it answers.
    listen: std::net::SocketAddr,
}

/// How often dead letters past `dead_letters.retention` are deleted.
const RETENTION_EVERY: Duration = Duration::from_secs(60);

/// Dead letters past their retention are looked for every this many [`RETENTION_EVERY`]
/// ticks: finding them reads every dead letter, and the retention is counted in hours.
const DEAD_LETTER_EXPIRY_TICKS: u64 = 10;

/// Deletes delivered deliveries past the history's retention or size every
/// [`RETENTION_EVERY`], and dead letters past theirs every [`DEAD_LETTER_EXPIRY_TICKS`] of
/// them (at start first).
/// A Redis consumer that holds no lease and has read nothing for this long is deleted from
/// its group (a replica that stopped; a live one reads far more often, and is made again
/// by its next read if not).
const CONSUMER_IDLE: Duration = Duration::from_secs(3600);

async fn expire_dead_letters(admin: Arc<Admin>) {
    let mut every = tokio::time::interval(RETENTION_EVERY);
    for tick in 0u64.. {
        every.tick().await;
        if tick % DEAD_LETTER_EXPIRY_TICKS == 0 {
            let retention = admin.live.snapshot().dead_letter_retention;
            let cutoff = crate::clock::now_ms()
                .saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
            match Lanes::delete_dead_letters(&admin.store, None, cutoff).await {
                Ok(0) => {}
                Ok(n) => {
                    admin.metrics.dead_letters_expired(n);
                    tracing::info!(deleted = n, retention = ?retention, "dead letters past their retention deleted");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot delete dead letters past their retention")
                }
            }
            // Redis: consumers of restarted replicas, idle and holding nothing.
            let endpoints: Vec<String> = admin
                .live
                .snapshot()
                .endpoints
                .iter()
                .map(|e| e.name.clone())
                .collect();
            match admin.store.prune_consumers(&endpoints, CONSUMER_IDLE).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(deleted = n, "idle consumers of stopped replicas deleted"),
                Err(e) => tracing::warn!(error = %e, "cannot delete idle consumers"),
            }
        }
        let snapshot = admin.live.snapshot();
        let cutoff = crate::clock::now_ms().saturating_sub(
            i64::try_from(snapshot.history_retention.as_millis()).unwrap_or(i64::MAX),
        );
        // On a store with a budget, the history takes at most half as much again, so that
        // the two together stay within the room the budget was sized for.
        let budget = admin.store.stats().max_bytes;
        let max_bytes = match budget {
            0 => snapshot.history_max_bytes,
            budget => snapshot.history_max_bytes.min(budget / 2),
        };
        match admin.store.sweep_history(cutoff, max_bytes).await {
            Ok(0) => {}
            Ok(n) => {
                admin.metrics.history_swept(n);
                tracing::debug!(
                    removed = n,
                    "delivered deliveries past the history's retention or size removed"
                );
            }
            Err(e) => tracing::warn!(error = %e, "cannot remove old deliveries from the history"),
        }
    }
}

/// Reads the counters the status page charts once a minute, the first time at the start.
async fn read_counters(admin: Arc<Admin>) {
    let mut every = tokio::time::interval(crate::ui::board::EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let snapshot = admin.live.snapshot();
        admin.board.push(crate::ui::board::read(
            &admin.metrics,
            &snapshot,
            crate::clock::now_ms(),
        ));
    }
}

/// How long the public listener may take to be bound before `run` gives up.
const BIND_LIMIT: Duration = Duration::from_secs(10);

/// Connects to the public listener until it answers, then marks the sidecar ready; exits
/// the process with the reason when it does not within [`BIND_LIMIT`] (Pingora itself
/// would retry the bind forever).
async fn await_listener(listen: std::net::SocketAddr, readiness: Arc<Readiness>) {
    let v4 = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, listen.port()));
    let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, listen.port()));
    // An unspecified address answers on loopback; `[::]` on either family (IPv6 may be
    // off on loopback while the dual-stack listener works).
    let targets = match listen.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => vec![v4],
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => vec![v6, v4],
        _ => vec![listen],
    };
    let started = tokio::time::Instant::now();
    let mut last_error = None;
    while started.elapsed() < BIND_LIMIT {
        for target in &targets {
            match tokio::net::TcpStream::connect(target).await {
                Ok(_) => {
                    readiness.set_listening();
                    tracing::info!(listen = %listen, "public listener answering");
                    return;
                }
                Err(e) => last_error = Some(e),
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let why = last_error.map_or_else(|| "no answer".to_owned(), |e| e.to_string());
    tracing::error!(listen = %listen, error = %why, "the public listener was not bound within 10 s");
    eprintln!("hookrelay run: cannot listen on {listen}: not bound within 10 s ({why})");
    std::process::exit(1);
}

#[async_trait]
impl BackgroundService for Background {
    async fn start(&self, shutdown: ShutdownWatch) {
        let outcomes = self.controller.subscribe();
        let summaries = tokio::spawn(async {
            let mut every = tokio::time::interval(logs::SUMMARY_EVERY);
            loop {
                every.tick().await;
                logs::summarize();
            }
        });
        tokio::spawn(await_listener(self.listen, self.admin.readiness.clone()));
        let retention = tokio::spawn(expire_dead_letters(self.admin.clone()));
        let board = tokio::spawn(read_counters(self.admin.clone()));
        let (admin_stop, admin_rx) = tokio::sync::watch::channel(false);
        let listener = self
            .admin_listener
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match listener.map(tokio::net::TcpListener::from_std) {
            Some(Ok(l)) => {
                let max = self.admin.live.snapshot().admin_max_connections;
                tokio::spawn(admin::serve(self.admin.clone(), l, max, admin_rx));
            }
            Some(Err(e)) => tracing::error!(error = %e, "cannot serve the admin API"),
            None => {}
        }
        self.controller.run(outcomes, shutdown).await;
        self.controller.lanes.stop_all();
        self.controller.lanes.join(DRAIN_LIMIT).await;
        let _ = admin_stop.send(true);
        summaries.abort();
        retention.abort();
        board.abort();
        logs::summarize();
    }
}

/// Shutdown on signals: SIGTERM first drains the delivery lanes (attempts in flight finish,
/// up to [`DRAIN_LIMIT`]; the rest stays queued), then stops the server; SIGINT stops at
/// once (whatever was in flight is attempted again after the restart).
struct Drain {
    lanes: Arc<Lanes>,
    readiness: Arc<Readiness>,
}

#[async_trait]
impl ShutdownSignalWatch for Drain {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM: finishing deliveries in flight");
                self.readiness.set_draining();
                self.lanes.stop_all();
                self.lanes.join(DRAIN_LIMIT).await;
                tracing::info!("deliveries drained, stopping");
                ShutdownSignal::GracefulTerminate
            }
            _ = int.recv() => ShutdownSignal::FastShutdown,
        }
    }
}

/// Starts the log: lines are formatted where they happen and written to stderr by a
/// thread of their own, so a callback's answer never waits on a write (one `write` per
/// line cost the listener about a quarter of its throughput in `scripts/load`). The
/// guard flushes what is queued when dropped.
///
/// With traces on (see [`crate::telemetry`]), the OpenTelemetry layer sees only the spans
/// made for it, and the log leaves them out.
fn init_tracing(
    args: &Args,
    telemetry: &hookrelay_config::Telemetry,
) -> (
    tracing_appender::non_blocking::WorkerGuard,
    Option<crate::telemetry::Tracing>,
) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{EnvFilter, Layer as _, fmt};
    let mut directives = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,pingora=warn,fjall=warn,lsm_tree=warn"));
    if let Ok(off) = format!("{}=off", crate::telemetry::TARGET).parse() {
        directives = directives.add_directive(off);
    }
    // Started before the subscriber, so a failure is said once the log is up.
    let (otel, tracing, otel_error) = match crate::telemetry::start(telemetry) {
        Ok(Some((layer, tracing))) => (Some(layer), Some(tracing), None),
        Ok(None) => (None, None, None),
        Err(e) => (None, None, Some(e)),
    };
    let otel = otel.map(|layer| {
        layer.with_filter(
            tracing_subscriber::filter::Targets::new()
                .with_target(crate::telemetry::TARGET, tracing::Level::INFO),
        )
    });
    let filter = logs::filter(directives, args.log_burst, args.log_per_second);
    logs::set_event_sample(args.event_logs);
    let (stderr, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(args.log_queue_lines.max(1))
        .lossy(true)
        .thread_name("hookrelay-log")
        // The log thread writes what is queued, then flushes once the queue is empty:
        // one write for a burst of lines, not one each.
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    logs::set_writer_errors(stderr.error_counter());
    let registry = tracing_subscriber::registry().with(otel);
    if args.log_format == "json" {
        // One flat object a line: the fields next to `message`, not nested.
        let layer = fmt::layer().json().flatten_event(true).with_writer(stderr);
        let _ = registry.with(layer.with_filter(filter)).try_init();
    } else {
        // Colour codes only for a person at a terminal, not in a collected log.
        let layer = fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(stderr);
        let _ = registry.with(layer.with_filter(filter)).try_init();
    }
    if let Some(e) = otel_error {
        tracing::error!("{e}: traces are off");
    } else if tracing.is_some() {
        tracing::info!("traces sent over OTLP");
    }
    (guard, tracing)
}

fn lower_priority() {
    // Linux keeps the nice value per thread: this lowers the calling thread only.
    if let Err(e) = rustix::process::setpriority_process(None, DELIVERY_NICE) {
        tracing::debug!(error = %e, "cannot lower the delivery threads' priority");
    }
}

/// A start-up failure: the message, and the exit code.
struct Fail(String, u8);

fn fail(what: impl std::fmt::Display) -> Fail {
    Fail(format!("hookrelay run: {what}"), 1)
}

fn runtime(
    name: &str,
    threads: usize,
    on_start: Option<fn()>,
) -> Result<tokio::runtime::Runtime, Fail> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.worker_threads(threads).thread_name(name).enable_all();
    if let Some(f) = on_start {
        b.on_thread_start(f);
    }
    b.build()
        .map_err(|e| fail(format!("cannot start the {name} runtime: {e}")))
}

/// Opens the configured store (on `rt`, where its connections and tasks live).
/// The embedded store's budget: `store.max_bytes`, or half the size of the file system
/// holding `path` for `auto` (none when that cannot be read: logged).
pub(crate) fn store_budget(path: &std::path::Path, configured: Option<u64>) -> u64 {
    if let Some(bytes) = configured {
        return bytes;
    }
    // The directory may not exist yet: its nearest ancestor is on the same file system.
    let existing = path.ancestors().find(|p| p.exists()).unwrap_or(path);
    match rustix::fs::statvfs(existing) {
        Ok(stat) => stat.f_blocks.saturating_mul(stat.f_frsize) / 2,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot size the store's file system; store.max_bytes: auto sets no budget");
            0
        }
    }
}

/// `store.min_free` as the store takes it (`None`: `auto`).
pub(crate) fn min_free(configured: Option<u64>) -> hookrelay_store::MinFree {
    configured.map_or(
        hookrelay_store::MinFree::Auto,
        hookrelay_store::MinFree::Bytes,
    )
}

fn open_store(
    config: &hookrelay_config::Store,
    max_bytes: Option<u64>,
    min_free_bytes: Option<u64>,
    rt: &tokio::runtime::Runtime,
) -> Result<Store, Fail> {
    let at = match config {
        hookrelay_config::Store::Embedded { path } => format!(" at {}", path.display()),
        hookrelay_config::Store::Redis { .. } => " (Redis)".to_owned(),
    };
    let config = match config {
        hookrelay_config::Store::Embedded { path } => StoreConfig::embedded_with(
            path,
            EmbeddedOptions::default()
                .writer_niceness(STORE_WRITER_NICENESS)
                .background_niceness(STORE_BACKGROUND_NICENESS)
                .max_bytes(store_budget(path, max_bytes))
                .min_free(min_free(min_free_bytes)),
        ),
        hookrelay_config::Store::Redis {
            url,
            visibility_timeout,
        } => StoreConfig::redis_with(
            url.expose(),
            RedisOptions::default().visibility_timeout(*visibility_timeout),
        ),
    };
    rt.block_on(Store::open(config)).map_err(|e| {
        let causes = logs::with_causes(&e);
        // The embedded store's own message names its directory already.
        if causes.starts_with("cannot open the store") {
            fail(causes)
        } else {
            fail(format!("cannot open the store{at}: {causes}"))
        }
    })
}

/// The one Redis connection every endpoint's rate limit shares (store `redis` only).
fn rate_connection(
    config: &hookrelay_config::Store,
    rt: &tokio::runtime::Runtime,
) -> Result<Option<redis::aio::ConnectionManager>, Fail> {
    let hookrelay_config::Store::Redis { url, .. } = config else {
        return Ok(None);
    };
    let client = redis::Client::open(url.expose())
        .map_err(|e| fail(format!("Redis URL for the rate limits: {e}")))?;
    // As `RedisGcra::open`: an outage pauses throttled deliveries within about a second.
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(1));
    let _guard = rt.enter();
    redis::aio::ConnectionManager::new_lazy_with_config(client, config)
        .map(Some)
        .map_err(|e| fail(format!("Redis connection for the rate limits: {e}")))
}

/// Runs the sidecar until SIGTERM (graceful) or SIGINT (fast).
pub(crate) fn run(args: &Args) -> ExitCode {
    // Read once before the log starts, for its trace settings; `start` reads it again
    // and reports what is wrong with it.
    let telemetry = hookrelay_config::load(&args.config)
        .map(|s| s.telemetry.clone())
        .unwrap_or_default();
    let (_flush_at_exit, _traces) = init_tracing(args, &telemetry);
    match start(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(message, code)) => {
            if args.log_format == "json" {
                tracing::error!(exit_code = code, "{message}");
            } else {
                eprintln!("{message}");
            }
            ExitCode::from(code)
        }
    }
}

/// Raises the soft limit of open files to the hard one: each connection is a file, and a
/// default soft limit of 1024 lets a thousand idle connections starve genuine callbacks.
/// Returns the soft limit then in force, if it is finite.
fn raise_open_files() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => {
                tracing::info!(open_files = ?limit.maximum, "open-file limit raised to the hard limit")
            }
            Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
        }
    }
    getrlimit(Resource::Nofile).current
}

fn start(args: &Args) -> Result<(), Fail> {
    let open_files = raise_open_files();
    let auto_max = open_files.map_or(16_384, conn::auto_max_connections);
    let live = Live::load(&args.config).map_err(|errors| Fail(errors.to_string(), EXIT_USAGE))?;
    let snapshot = live.snapshot();
    // What `validate` warns about, said at run time too.
    for warning in &snapshot.warnings {
        tracing::warn!(config = %args.config.display(), "{warning}");
    }
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    // The store's connections and background tasks live on a runtime of their own, for
    // the life of the process (Pingora's services each run their own runtimes).
    let store_rt = runtime("hookrelay-store-io", 1, None)?;
    let delivery_rt = runtime("hookrelay-deliver", threads, Some(lower_priority))?;
    let store = open_store(
        &snapshot.store,
        snapshot.store_max_bytes,
        snapshot.store_min_free,
        &store_rt,
    )?;
    let redis = rate_connection(&snapshot.store, &delivery_rt)?;

    let (roots, count) = net::tls::roots(net::tls::system_certs(), &snapshot.tls.ca_certs)
        .map_err(|e| fail(format!("tls.ca_file: {e}")))?;
    tracing::info!(
        mozilla = count.mozilla,
        system = count.system,
        ca_file = count.ca_file,
        "trusted root certificates"
    );
    let tls = net::tls::client_config(roots).map_err(|e| fail(format!("TLS: {e}")))?;
    let clients = Clients::new(&tls);

    let admin_listener = std::net::TcpListener::bind(snapshot.admin)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| fail(format!("cannot listen on admin {}: {e}", snapshot.admin)))?;
    // The public port is tried at once, so that a port another process holds is a clear
    // error now (Pingora binds it later and retries forever); the probe in the background
    // service covers a port taken in between.
    drop(
        std::net::TcpListener::bind(snapshot.listen)
            .map_err(|e| fail(format!("cannot listen on {}: {e}", snapshot.listen)))?,
    );

    let metrics = Arc::new(Metrics::default());
    let readiness = Arc::new(Readiness::default());
    metrics.prepare(&snapshot);
    metrics.applied_at(crate::clock::now_ms());
    let upstream = Arc::new(Upstreams::default());
    let lanes = Arc::new(Lanes::new(DeliverCtx {
        store: store.clone(),
        metrics: metrics.clone(),
        clients: clients.clone(),
        runtime: delivery_rt.handle().clone(),
        redis,
    }));
    metrics.connections_max(snapshot.limits.max_connections.unwrap_or(auto_max));
    let budget = Arc::new(Budget::default());
    let (listener_live, listener_metrics, listener_budget) =
        (live.clone(), metrics.clone(), budget.clone());
    let ingest = Ingest {
        live: live.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        certs: Certificates::new(clients),
        replay: ReplayCache::default(),
        upstream: upstream.clone(),
        budget,
    };
    let background = Background {
        controller: Controller {
            live: live.clone(),
            lanes: lanes.clone(),
            metrics: metrics.clone(),
            upstream,
            store: store.clone(),
        },
        admin: Arc::new(Admin {
            live,
            store,
            metrics,
            lanes: lanes.clone(),
            readiness: readiness.clone(),
            board: Arc::default(),
        }),
        admin_listener: Mutex::new(Some(admin_listener)),
        listen: snapshot.listen,
    };

    let conf = ServerConf {
        // Callbacks being answered when the drain ends get a second to finish.
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(15),
        threads,
        // One runtime per thread: a connection stays on the thread that accepted it, with
        // no work-stealing queues between them (about 10 % less CPU per callback, measured
        // with scripts/load).
        work_stealing: false,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let app = conn::Guarded::new(
        pingora::proxy::http_proxy(&server.configuration, ingest),
        listener_live,
        listener_metrics,
        listener_budget,
        auto_max,
    );
    let mut proxy = pingora::services::listening::Service::new("hookrelay".to_owned(), app);
    // No read buffer under Pingora's own: a 64 KiB one per connection would make each idle
    // or dribbling connection cost that much (headers are read into a 4 KiB buffer, bodies
    // in chunks, so it saves few reads).
    proxy.add_listener(
        ListenerConfig::tcp(snapshot.listen.to_string())
            .l4_buffer(L4BufferSettings::new(0, DEFAULT_L4_WRITE_BUFFER_SIZE)),
    );
    server.add_service(proxy);
    server.add_service(background_service("hookrelay", background));
    tracing::info!(listen = %snapshot.listen, admin = %snapshot.admin, "hookrelay running");
    server.run(RunArgs {
        shutdown_signal: Box::new(Drain { lanes, readiness }),
    });
    delivery_rt.shutdown_timeout(Duration::from_secs(1));
    store_rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
