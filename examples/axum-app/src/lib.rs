//! An axum app that reuses hookrelay's Tower layers, with a JSON config file it reloads
//! while it runs.
//!
//! `POST /events` relays the request body to the configured endpoint through the outbound
//! stack; `GET /health` answers `ok`. The whole router is rate limited per peer (`429` +
//! `Retry-After`) and its responses carry the configured response headers.
//!
//! Reload: a task polls the file; when its bytes change, the whole file is parsed and
//! validated, then every handle is set (an unchanged rate keeps its buckets). A file that
//! does not validate, or that changes `listen`, is refused and the running config stays.
//! Each layer reads its own handle, so a request that races a reload may see one layer's
//! old value and another's new one; hookrelay itself swaps one compiled snapshot.

pub mod config;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hookrelay_tower::gcra::{Global, Key, ThrottleHandle};
use hookrelay_tower::set_headers::{HeaderSetHandle, SetRequestHeaders};
use hookrelay_tower::sign::{Sign, SignHandle};
use hookrelay_tower::throttle::{Throttle, ThrottleError};
use hookrelay_tower::{
    RateLimitLayer, SetRequestHeadersLayer, SetResponseHeadersLayer, SignLayer, ThrottleLayer,
};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::{ServiceBuilder, ServiceExt};

pub use config::{Config, ConfigError};

/// How long an outbound delivery may wait for its slot before it fails with `503`.
pub const MAX_WAIT: Duration = Duration::from_secs(10);

/// How often the config file is checked for changes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// The outbound stack, top to bottom: headers, signature, throttle, HTTP client.
type Outbound = SetRequestHeaders<Sign<Throttle<HttpClient, Global, ThrottleHandle>>>;

/// The reload handles of every layer.
#[derive(Clone)]
struct Handles {
    inbound: ThrottleHandle,
    outbound: ThrottleHandle,
    headers: HeaderSetHandle,
    response_headers: HeaderSetHandle,
    signer: SignHandle,
    endpoint: Arc<ArcSwap<http::Uri>>,
}

impl Handles {
    fn new(config: &Config) -> Self {
        Self {
            inbound: ThrottleHandle::new(config.inbound),
            outbound: ThrottleHandle::new(config.outbound),
            headers: HeaderSetHandle::new(config.headers.clone()),
            response_headers: HeaderSetHandle::new(config.response_headers.clone()),
            signer: SignHandle::new(config.signer.clone()),
            endpoint: Arc::new(ArcSwap::from_pointee(config.endpoint.clone())),
        }
    }

    fn set(&self, config: Config) {
        self.inbound.set(config.inbound);
        self.outbound.set(config.outbound);
        self.headers.set(config.headers);
        self.response_headers.set(config.response_headers);
        self.signer.set(config.signer);
        self.endpoint.store(Arc::new(config.endpoint));
    }
}

#[derive(Clone)]
struct AppState {
    outbound: Outbound,
    endpoint: Arc<ArcSwap<http::Uri>>,
}

/// Counters of the reload task.
#[derive(Debug, Default)]
struct Counters {
    generation: AtomicU64,
    errors: AtomicU64,
}

/// Why the app could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The config file is not usable.
    #[error("config file {path}: {source}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: ConfigError,
    },
    /// The listen address could not be bound.
    #[error("binding {addr} failed")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A running app.
#[derive(Debug)]
pub struct Running {
    addr: SocketAddr,
    counters: Arc<Counters>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    watcher: JoinHandle<()>,
}

impl Running {
    /// The address the app listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many configs were applied: 1 after start, one more for each reload.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.counters.generation.load(Ordering::SeqCst)
    }

    /// How many changed files were refused.
    #[must_use]
    pub fn reload_errors(&self) -> u64 {
        self.counters.errors.load(Ordering::SeqCst)
    }

    /// Stops accepting connections, finishes the open ones and stops the reload task.
    ///
    /// # Errors
    ///
    /// The server's I/O error, if it failed.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.shutdown.send(true);
        self.watcher.abort();
        match self.server.await {
            Ok(result) => result,
            Err(join) => Err(std::io::Error::other(join)),
        }
    }
}

/// Loads the config at `path`, binds its `listen` address and serves until
/// [`Running::shutdown`], reloading the file when it changes.
///
/// # Errors
///
/// [`StartError`] when the config is not usable or the address cannot be bound.
pub async fn start(path: PathBuf) -> Result<Running, StartError> {
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| StartError::Config {
            path: path.clone(),
            source: ConfigError::Read(e),
        })?;
    let config = Config::parse(&bytes).map_err(|source| StartError::Config {
        path: path.clone(),
        source,
    })?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let handles = Handles::new(&config);
    let counters = Arc::new(Counters::default());
    counters.generation.store(1, Ordering::SeqCst);

    let app = router(&handles).into_make_service_with_connect_info::<SocketAddr>();
    let (shutdown, mut stop) = watch::channel(false);
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            })
            .await
    });
    let watcher = tokio::spawn(watch_file(
        path,
        bytes,
        config,
        handles,
        Arc::clone(&counters),
    ));
    Ok(Running {
        addr,
        counters,
        shutdown,
        server,
        watcher,
    })
}

fn router(handles: &Handles) -> Router {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    // Outbound deliveries, one comment a layer:
    let outbound = ServiceBuilder::new()
        // the endpoint's custom headers
        .layer(SetRequestHeadersLayer::new(handles.headers.clone()))
        // webhook-id, webhook-timestamp, webhook-signature over the body
        .layer(SignLayer::new(handles.signer.clone()))
        // the endpoint's steady rate, waiting at most MAX_WAIT
        .layer(ThrottleLayer::new(handles.outbound.clone()).max_wait(MAX_WAIT))
        .service(client);
    let state = AppState {
        outbound,
        endpoint: Arc::clone(&handles.endpoint),
    };
    Router::new()
        .route("/events", post(relay))
        .route("/health", get(|| async { "ok" }))
        .with_state(state)
        // the app's own response headers
        .layer(SetResponseHeadersLayer::new(
            handles.response_headers.clone(),
        ))
        // inbound requests per peer: 429 + Retry-After over the rate
        .layer(RateLimitLayer::new(handles.inbound.clone()).key_by(peer))
}

fn peer(req: &Request) -> Option<Key> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| Key::from(*addr))
}

async fn relay(State(state): State<AppState>, body: Bytes) -> Response {
    let endpoint = state.endpoint.load_full();
    let req = match http::Request::post(endpoint.as_ref())
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(body))
    {
        Ok(req) => req,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    match state.outbound.oneshot(req).await {
        Ok(res) if res.status().is_success() => StatusCode::ACCEPTED.into_response(),
        Ok(res) => (
            StatusCode::BAD_GATEWAY,
            format!("endpoint answered {}", res.status()),
        )
            .into_response(),
        Err(err) => match err.downcast_ref::<ThrottleError>() {
            Some(ThrottleError::WaitTooLong { wait, .. }) => {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                let mut res =
                    (StatusCode::SERVICE_UNAVAILABLE, "endpoint rate exceeded").into_response();
                res.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
                res
            }
            _ => (StatusCode::BAD_GATEWAY, "delivery failed").into_response(),
        },
    }
}

async fn watch_file(
    path: PathBuf,
    mut last: Vec<u8>,
    mut running: Config,
    handles: Handles,
    counters: Arc<Counters>,
) {
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Ok(bytes) = tokio::fs::read(&path).await else {
            // Missing for a moment (an editor's rename): try again next tick.
            continue;
        };
        if bytes == last {
            continue;
        }
        last = bytes;
        match Config::parse(&last) {
            Ok(config) if config.listen != running.listen => {
                counters.errors.fetch_add(1, Ordering::SeqCst);
                eprintln!(
                    "config reload refused: listen cannot change while running ({} -> {})",
                    running.listen, config.listen
                );
            }
            Ok(config) => {
                handles.set(config.clone());
                running = config;
                counters.generation.fetch_add(1, Ordering::SeqCst);
            }
            Err(err) => {
                counters.errors.fetch_add(1, Ordering::SeqCst);
                eprintln!("config reload refused, running config kept: {err}");
            }
        }
    }
}
