//! `hookrelay run`: the sidecar.
//!
//! One Pingora server with two services:
//!
//! - the public listener ([`ingest`]): callback routes are verified, normalized,
//!   deduplicated, fanned out and durably enqueued before the provider gets its 2xx; every
//!   other path is reverse-proxied unchanged to `upstream`;
//! - a background service running the delivery lanes ([`deliver`]), the admin listener
//!   ([`admin`]), the config watcher and the SIGHUP handler.

mod admin;
mod clock;
mod deliver;
mod ingest;
mod metrics;
mod replay;
mod ssrf;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use hookrelay_config::{Live, ReloadOutcome};
use hookrelay_store::{EmbeddedOptions, RedisOptions, Store};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::{BackgroundService, background_service};

use crate::EXIT_USAGE;
use deliver::Lanes;
use metrics::Metrics;

/// The outbound HTTP client (HTTP/1.1 and 2, rustls, pooled).
pub(crate) type HttpClient =
    Client<HttpsConnector<HttpConnector<ssrf::GuardedResolver>>, Full<Bytes>>;
/// The client for endpoints that opted into link-local addresses.
pub(crate) type OpenClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Arguments of `hookrelay run`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Configuration file.
    #[arg(short = 'c', long = "config")]
    config: PathBuf,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

/// What every part of the sidecar shares.
pub(crate) struct App {
    pub(crate) live: Arc<Live>,
    pub(crate) store: Store,
    /// Redis URL when the store is Redis: endpoint throttles then live in Redis too, so
    /// replicas share one rate per endpoint.
    pub(crate) redis_url: Option<hookrelay_core::Secret>,
    pub(crate) metrics: Metrics,
    pub(crate) lanes: Lanes,
    /// The runtime the delivery lanes run on, at a lower CPU priority than the listener.
    pub(crate) delivery: tokio::runtime::Handle,
    pub(crate) replay: replay::ReplayCache,
    certs: std::sync::Mutex<std::collections::HashMap<String, Arc<str>>>,
    /// Signing-certificate fetches that failed recently, so a burst of SNS callbacks
    /// during an outage of the certificate host does not fetch once per callback.
    cert_failures: std::sync::Mutex<FailureCache>,
    guarded: std::sync::OnceLock<HttpClient>,
    open: std::sync::OnceLock<OpenClient>,
}

fn tls_config() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .unwrap_or_else(|_| {
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map(|b| {
                b.with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
            })
            .unwrap_or_else(|_| unreachable!("TLS 1.3 is supported by ring"))
        })
}

/// A pooled HTTP/1.1 and HTTP/2 client over rustls on `http` (redirects are not followed).
fn build_client<R>(
    mut http: HttpConnector<R>,
) -> Client<HttpsConnector<HttpConnector<R>>, Full<Bytes>>
where
    R: tower::Service<hyper_util::client::legacy::connect::dns::Name>
        + Clone
        + Send
        + Sync
        + 'static,
    R::Response: Iterator<Item = SocketAddr>,
    R::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    R::Future: Send,
{
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config())
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).build(https)
}

impl App {
    /// The client for an endpoint (the SSRF guard unless it opted out).
    pub(crate) fn client(&self, allow_link_local: bool) -> ClientEither {
        if allow_link_local {
            ClientEither::Open(
                self.open
                    .get_or_init(|| build_client(HttpConnector::new()))
                    .clone(),
            )
        } else {
            ClientEither::Guarded(
                self.guarded
                    .get_or_init(|| {
                        build_client(HttpConnector::new_with_resolver(
                            ssrf::GuardedResolver::new(),
                        ))
                    })
                    .clone(),
            )
        }
    }

    /// Confirms an SNS subscription by fetching its SubscribeURL from an allowed AWS host.
    pub(crate) async fn confirm_sns_subscription(&self, subscribe_url: &str) -> Result<(), String> {
        let url = url::Url::parse(subscribe_url).map_err(|e| format!("SubscribeURL: {e}"))?;
        let host = url.host_str().unwrap_or_default();
        let allowed = url.scheme() == "https"
            && host.starts_with("sns.")
            && (host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn"));
        if !allowed {
            return Err(format!(
                "SubscribeURL host {host:?} is not an Amazon SNS host"
            ));
        }
        let req = http::Request::get(subscribe_url)
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let resp = match self.client(false) {
            ClientEither::Guarded(c) => {
                tokio::time::timeout(Duration::from_secs(10), c.request(req)).await
            }
            ClientEither::Open(c) => {
                tokio::time::timeout(Duration::from_secs(10), c.request(req)).await
            }
        }
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {status}"))
        }
    }

    /// The PEM of an SNS signing certificate (its URL already checked), fetched once and
    /// cached.
    pub(crate) async fn signing_cert(&self, url: &str) -> Result<Arc<str>, String> {
        if let Some(pem) = self.certs.lock().ok().and_then(|c| c.get(url).cloned()) {
            return Ok(pem);
        }
        let now = std::time::Instant::now();
        if let Some(reason) = self
            .cert_failures
            .lock()
            .ok()
            .and_then(|f| f.recent(url, now))
        {
            return Err(format!("{reason} (failed less than {CERT_RETRY:?} ago)"));
        }
        let fetched = self.fetch_cert(url).await;
        match &fetched {
            Ok(pem) => {
                if let Ok(mut c) = self.certs.lock() {
                    if c.len() >= 64 {
                        c.clear();
                    }
                    c.insert(url.to_owned(), pem.clone());
                }
            }
            Err(reason) => {
                if let Ok(mut f) = self.cert_failures.lock() {
                    f.record(url, reason, now);
                }
            }
        }
        fetched
    }

    async fn fetch_cert(&self, url: &str) -> Result<Arc<str>, String> {
        let req = http::Request::get(url)
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let ClientEither::Guarded(client) = self.client(false) else {
            return Err("no client".into());
        };
        let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        let body = http_body_util::Limited::new(resp.into_body(), 64 * 1024)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let pem = String::from_utf8(body.to_vec()).map_err(|_| "not text".to_owned())?;
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err("not a PEM certificate".into());
        }
        Ok(Arc::from(pem))
    }

    /// Prometheus text of every metric.
    pub(crate) async fn render_metrics(&self) -> String {
        let snapshot = self.live.snapshot();
        let mut depth = Vec::with_capacity(snapshot.endpoints.len());
        for ep in &snapshot.endpoints {
            depth.push((
                ep.name.clone(),
                self.store.queue_depth(&ep.name).await.unwrap_or(0),
            ));
        }
        self.metrics.set_generation(snapshot.generation);
        self.metrics.render(&depth)
    }

    /// Resumes an endpoint paused by `410 Gone`.
    pub(crate) fn resume(&self, name: &str) -> bool {
        self.lanes.get(name).is_some_and(|lane| lane.resume())
    }
}

/// One of the two clients (so the Tower stack has one concrete service type).
#[derive(Clone)]
pub(crate) enum ClientEither {
    Guarded(HttpClient),
    Open(OpenClient),
}

impl tower::Service<http::Request<Full<Bytes>>> for ClientEither {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        match self {
            ClientEither::Guarded(c) => tower::Service::poll_ready(c, cx),
            ClientEither::Open(c) => tower::Service::poll_ready(c, cx),
        }
    }

    fn call(&mut self, req: http::Request<Full<Bytes>>) -> Self::Future {
        match self {
            ClientEither::Guarded(c) => Box::pin(c.request(req)),
            ClientEither::Open(c) => Box::pin(c.request(req)),
        }
    }
}

/// How long a failed signing-certificate fetch is answered from memory.
const CERT_RETRY: Duration = Duration::from_secs(10);

/// Recent failures by URL, each remembered for [`CERT_RETRY`] (at most 64 URLs).
#[derive(Default)]
struct FailureCache {
    failures: std::collections::HashMap<String, (std::time::Instant, String)>,
}

impl FailureCache {
    /// Why `url` failed, if it did less than [`CERT_RETRY`] before `now`.
    fn recent(&self, url: &str, now: std::time::Instant) -> Option<String> {
        let (at, reason) = self.failures.get(url)?;
        (now.saturating_duration_since(*at) < CERT_RETRY).then(|| reason.clone())
    }

    fn record(&mut self, url: &str, reason: &str, now: std::time::Instant) {
        self.failures
            .retain(|_, (at, _)| now.saturating_duration_since(*at) < CERT_RETRY);
        if self.failures.len() >= 64 {
            self.failures.clear();
        }
        self.failures
            .insert(url.to_owned(), (now, reason.to_owned()));
    }
}

/// The background service: lanes, admin listener, watcher, SIGHUP.
struct Background {
    app: Arc<App>,
    admin: std::sync::Mutex<Option<std::net::TcpListener>>,
}

#[async_trait]
impl BackgroundService for Background {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let app = self.app.clone();
        // Listen for reload outcomes and watch the file before anything can reload, so no
        // outcome (from the admin API, SIGHUP or the watcher) goes unseen.
        let (tx, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
        app.live.on_outcome(move |o| {
            let _ = tx.send(o.clone());
        });
        let watcher = match app.live.watch() {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::error!(error = %e, "cannot watch the config file; SIGHUP and POST /-/reload still reload it");
                None
            }
        };
        app.lanes.reconcile(&app, &app.live.snapshot()).await;
        // An edit between the first load and the watcher's start.
        {
            let live = app.live.clone();
            let _ = tokio::task::spawn_blocking(move || live.reload_if_changed()).await;
        }
        let (admin_stop, admin_rx) = tokio::sync::watch::channel(false);
        let admin = self.admin.lock().ok().and_then(|mut a| a.take());
        if let Some(listener) = admin.and_then(|l| tokio::net::TcpListener::from_std(l).ok()) {
            tokio::spawn(admin::serve(app.clone(), listener, admin_rx));
        }
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(o) = outcomes.recv() => {
                    match &o {
                        ReloadOutcome::Applied { generation, hash } => {
                            app.metrics.reload("applied");
                            app.metrics.set_generation(*generation);
                            tracing::info!(generation, hash = %hash, "config applied");
                            let snapshot = app.live.snapshot();
                            app.lanes.reconcile(&app, &snapshot).await;
                        }
                        ReloadOutcome::Rejected { errors } => {
                            app.metrics.reload("rejected");
                            tracing::error!(errors = %errors, "config rejected; the running config stays");
                        }
                        _ => app.metrics.reload("unchanged"),
                    }
                }
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    let live = app.live.clone();
                    let _ = tokio::task::spawn_blocking(move || live.reload_now()).await;
                }
            }
        }
        drop(watcher);
        app.lanes.stop_all();
        app.lanes.join(DRAIN_LIMIT).await;
        let _ = admin_stop.send(true);
    }
}

/// Shutdown on signals: SIGTERM first drains the delivery lanes (attempts in flight finish,
/// up to [`DRAIN_LIMIT`]; the rest stays queued), then stops the server; SIGINT stops at
/// once (whatever was in flight is attempted again after the restart).
struct Drain {
    app: Arc<App>,
}

/// Longest wait for delivery attempts in flight at SIGTERM.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

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
                self.app.lanes.stop_all();
                self.app.lanes.join(DRAIN_LIMIT).await;
                tracing::info!("deliveries drained, stopping");
                ShutdownSignal::GracefulTerminate
            }
            _ = int.recv() => ShutdownSignal::FastShutdown,
        }
    }
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,pingora=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

/// Runs the sidecar until SIGTERM (graceful) or SIGINT (fast).
pub(crate) fn run(args: &Args) -> ExitCode {
    init_tracing(&args.log_format);
    let live = match Live::load(&args.config) {
        Ok(l) => l,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let snapshot = live.snapshot();
    // The store's connections and background tasks live on a runtime of their own, for
    // the life of the process (Pingora's services each run their own runtimes).
    let store_rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("hookrelay-store-io")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hookrelay run: cannot start the store runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let (store, redis_url) = match &snapshot.store {
        hookrelay_config::Store::Embedded { path } => match Store::open_embedded_with(
            path,
            EmbeddedOptions::default().writer_niceness(STORE_WRITER_NICENESS),
        ) {
            Ok(s) => (s, None),
            Err(e) => {
                eprintln!(
                    "hookrelay run: cannot open the store at {}: {e}",
                    path.display()
                );
                return ExitCode::from(1);
            }
        },
        hookrelay_config::Store::Redis {
            url,
            visibility_timeout,
        } => {
            let options = RedisOptions::default().visibility_timeout(*visibility_timeout);
            match store_rt.block_on(Store::open_redis(url.expose(), options)) {
                Ok(s) => (s, Some(url.clone())),
                Err(e) => {
                    eprintln!("hookrelay run: cannot open the Redis store: {e}");
                    return ExitCode::from(1);
                }
            }
        }
        _ => {
            eprintln!("hookrelay run: unsupported store kind");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let delivery_rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("hookrelay-deliver")
        .on_thread_start(lower_priority)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hookrelay run: cannot start the delivery runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let admin = match std::net::TcpListener::bind(snapshot.admin).and_then(|l| {
        l.set_nonblocking(true)?;
        Ok(l)
    }) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "hookrelay run: cannot listen on admin {}: {e}",
                snapshot.admin
            );
            return ExitCode::from(1);
        }
    };
    let app = Arc::new(App {
        live,
        store,
        redis_url,
        metrics: Metrics::default(),
        lanes: Lanes::default(),
        delivery: delivery_rt.handle().clone(),
        replay: replay::ReplayCache::default(),
        certs: std::sync::Mutex::new(std::collections::HashMap::new()),
        cert_failures: std::sync::Mutex::new(FailureCache::default()),
        guarded: std::sync::OnceLock::new(),
        open: std::sync::OnceLock::new(),
    });
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
    let mut proxy = pingora::proxy::http_proxy_service(
        &server.configuration,
        ingest::Ingest { app: app.clone() },
    );
    proxy.add_tcp(&listen_addr(snapshot.listen));
    server.add_service(proxy);
    server.add_service(background_service(
        "hookrelay",
        Background {
            app: app.clone(),
            admin: std::sync::Mutex::new(Some(admin)),
        },
    ));
    tracing::info!(listen = %snapshot.listen, admin = %snapshot.admin, "hookrelay running");
    server.run(RunArgs {
        shutdown_signal: Box::new(Drain { app }),
    });
    delivery_rt.shutdown_timeout(Duration::from_secs(1));
    store_rt.shutdown_timeout(Duration::from_secs(1));
    ExitCode::SUCCESS
}

/// How much nicer the embedded store's writer thread runs than the listener: when the
/// listener keeps the CPUs busy, the writer wakes to bigger batches, so fewer syncs are
/// shared by more callbacks (4 to 9 % more acknowledged per second at 256 connections,
/// with lower p50 and p99, measured side by side with scripts/load's harness); with a CPU
/// to spare it changes nothing (8 and 32 connections measured the same).
const STORE_WRITER_NICENESS: i32 = 5;

/// Nice value of the delivery threads: under CPU contention the listener, which must
/// answer providers within their timeouts, runs first; what it acknowledged is durable and
/// is delivered as soon as there is CPU to spare. Without contention it makes no difference.
const DELIVERY_NICE: i32 = 10;

fn lower_priority() {
    // Linux keeps the nice value per thread: this lowers the calling thread only.
    if let Err(e) = rustix::process::setpriority_process(None, DELIVERY_NICE) {
        tracing::debug!(error = %e, "cannot lower the delivery threads' priority");
    }
}

fn listen_addr(a: SocketAddr) -> String {
    a.to_string()
}

#[cfg(test)]
mod tests {
    use super::{CERT_RETRY, FailureCache};
    use std::time::{Duration, Instant};

    #[test]
    fn a_failed_fetch_is_remembered_for_a_while() {
        let mut cache = FailureCache::default();
        let t0 = Instant::now();
        let url = "https://sns.eu-west-1.amazonaws.com/cert.pem";
        assert_eq!(cache.recent(url, t0), None);
        cache.record(url, "HTTP 503", t0);
        assert_eq!(
            cache.recent(url, t0 + Duration::from_secs(1)).as_deref(),
            Some("HTTP 503")
        );
        assert_eq!(cache.recent("https://other", t0), None);
        assert_eq!(
            cache.recent(url, t0 + CERT_RETRY),
            None,
            "tried again after"
        );
        // Old entries go when a new one is recorded.
        cache.record("https://other", "timed out", t0 + CERT_RETRY);
        assert_eq!(cache.failures.len(), 1);
    }
}
