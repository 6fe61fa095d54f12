//! An endpoint's delivery stack, built once when its lane starts.
//!
//! ```text
//! SetHeaders ▶ Sign ▶ SetSensitive ▶ Throttle ▶ Outbound (timeout, SSRF-guarded client)
//! ```
//!
//! The policies come compiled from the config ([`hookrelay_config::Endpoint`]); a reload
//! reaches the built stack through the layers' own reload handles ([`Policy::apply`]): new
//! headers, secrets or rate apply to the next attempt, and an unchanged rate keeps its
//! buckets. Nothing is derived per attempt.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use hookrelay_config::{Endpoint, Gcra, Retry};
use hookrelay_tower::gcra::redis::RedisGcra;
use hookrelay_tower::gcra::{Key, RateLimiter, ReserveError, ThrottleHandle};
use hookrelay_tower::set_headers::HeaderSetHandle;
use hookrelay_tower::sign::SignHandle;
use hookrelay_tower::{BoxError, SetRequestHeadersLayer, SignLayer, ThrottleLayer};
use http_body_util::Full;
use redis::aio::ConnectionManager;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use url::Url;

use crate::net::{self, Clients};

/// Longest wait for an endpoint's throttle before the attempt is put back (not counted).
pub(crate) const MAX_THROTTLE_WAIT: Duration = Duration::from_secs(30);

/// The built stack of one lane.
pub(crate) type Stack = BoxCloneSyncService<net::Request, net::Response, BoxError>;

/// Where and how an attempt is sent; read once per attempt, travels with its request.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) url: Url,
    pub(crate) allow_link_local: bool,
    pub(crate) timeout: Duration,
    pub(crate) retry: Retry,
}

impl Target {
    pub(crate) fn of(ep: &Endpoint) -> Self {
        Self {
            url: ep.url.clone(),
            allow_link_local: ep.allow_link_local,
            timeout: ep.timeout,
            retry: ep.retry.clone(),
        }
    }
}

/// When the request reached the client (the throttle's wait ends there); set by
/// [`Outbound`], read by the attempt.
#[derive(Clone, Default)]
pub(crate) struct Reached(pub(crate) Arc<OnceLock<Instant>>);

/// The reload handles of a lane's stack.
pub(crate) struct Policy {
    headers: HeaderSetHandle,
    signer: SignHandle,
    limit: Limit,
}

impl Policy {
    /// The handles for `ep`'s compiled policies; rates live in Redis when `redis` is set.
    pub(crate) fn new(ep: &Endpoint, redis: Option<ConnectionManager>) -> Self {
        let limit = Limit {
            current: Arc::new(ArcSwapOption::empty()),
            name: ep.name.clone(),
            redis,
        };
        limit.set(ep.rate_limit);
        Self {
            headers: HeaderSetHandle::new(ep.headers.clone()),
            signer: SignHandle::new(ep.signer.clone()),
            limit,
        }
    }

    /// Puts `ep`'s policies in force for the next attempt, without rebuilding the stack.
    pub(crate) fn apply(&self, ep: &Endpoint) {
        self.headers.set(ep.headers.clone());
        self.signer.set(ep.signer.clone());
        self.limit.set(ep.rate_limit);
    }

    /// The stack over these handles and `clients`, top to bottom.
    pub(crate) fn build(&self, clients: Clients) -> Stack {
        let stack = ServiceBuilder::new()
            // The endpoint's configured headers (validated when the config was compiled).
            .layer(SetRequestHeadersLayer::new(self.headers.clone()))
            // Standard Webhooks: webhook-timestamp and webhook-signature over the body.
            .layer(SignLayer::new(self.signer.clone()))
            // Credentials are marked sensitive: no log or trace of the request prints them.
            .layer(SetSensitiveRequestHeadersLayer::new([
                http::header::AUTHORIZATION,
                http::header::PROXY_AUTHORIZATION,
                http::header::COOKIE,
                http::HeaderName::from_static("webhook-signature"),
            ]))
            // The endpoint's rate: waits for a slot (state kept across reloads), or puts
            // the attempt back when the slot is too far away.
            .layer(ThrottleLayer::with_limiter(self.limit.clone()).max_wait(MAX_THROTTLE_WAIT))
            // The attempt's timeout and the SSRF-guarded client.
            .service(Outbound { clients });
        BoxCloneSyncService::new(stack)
    }
}

/// An endpoint's rate limit, reloadable from none to some and back: in memory (one
/// sidecar), or in Redis over the one shared connection (replicas share the rate).
#[derive(Clone)]
pub(crate) struct Limit {
    current: Arc<ArcSwapOption<Backend>>,
    name: String,
    redis: Option<ConnectionManager>,
}

enum Backend {
    Local(ThrottleHandle),
    Redis(RedisGcra),
}

impl Limit {
    /// Puts `rate` in force; an unchanged rate keeps its buckets.
    fn set(&self, rate: Option<Gcra>) {
        match (self.current.load().as_deref(), rate) {
            (Some(Backend::Local(h)), Some(g)) => {
                h.set(g);
            }
            (Some(Backend::Redis(r)), Some(g)) => {
                r.set(g);
            }
            (None, Some(g)) => {
                let backend = match &self.redis {
                    None => Backend::Local(ThrottleHandle::new(g)),
                    Some(conn) => Backend::Redis(RedisGcra::new(
                        conn.clone(),
                        format!("hookrelay:rl:{}:", self.name),
                        g,
                    )),
                };
                self.current.store(Some(Arc::new(backend)));
            }
            (_, None) => self.current.store(None),
        }
    }
}

#[cfg(test)]
impl Policy {
    /// The rate in force.
    pub(crate) fn rate(&self) -> Option<Gcra> {
        self.limit.current.load().as_deref().map(|b| match b {
            Backend::Local(h) => h.gcra(),
            Backend::Redis(r) => r.gcra(),
        })
    }
}

impl RateLimiter for Limit {
    type Future = Pin<Box<dyn Future<Output = Result<tokio::time::Instant, ReserveError>> + Send>>;

    fn reserve(&self, key: Option<Key>, max_wait: Duration) -> Self::Future {
        match self.current.load_full() {
            None => Box::pin(std::future::ready(Ok(tokio::time::Instant::now()))),
            Some(backend) => match &*backend {
                Backend::Local(h) => Box::pin(h.reserve(key, max_wait)),
                Backend::Redis(r) => r.reserve(key, max_wait),
            },
        }
    }
}

/// An attempt that got no answer within its endpoint's `timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timed out after {0:?}")]
pub(crate) struct TimedOut(pub(crate) Duration);

/// The bottom of the stack: sends with the attempt's [`Target`] (its timeout, and the
/// SSRF guard unless the endpoint opted out), and marks when the request left.
#[derive(Clone)]
struct Outbound {
    clients: Clients,
}

impl Service<net::Request> for Outbound {
    type Response = net::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<net::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: net::Request) -> Self::Future {
        if let Some(reached) = req.extensions().get::<Reached>() {
            let _ = reached.0.set(Instant::now());
        }
        let (allow_link_local, timeout) = req
            .extensions()
            .get::<Arc<Target>>()
            .map_or((false, hookrelay_config::DEFAULT_TIMEOUT), |t| {
                (t.allow_link_local, t.timeout)
            });
        let sent = self.clients.send(req, allow_link_local);
        Box::pin(async move {
            match tokio::time::timeout(timeout, sent).await {
                Ok(result) => result.map_err(BoxError::from),
                Err(_) => Err(Box::new(TimedOut(timeout)) as BoxError),
            }
        })
    }
}

/// A request for `target` with `body`.
pub(crate) fn request(
    target: &Arc<Target>,
    webhook_id: &str,
    body: Bytes,
) -> Result<(net::Request, Reached), http::Error> {
    let mut req = http::Request::post(target.url.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("hookrelay/", env!("CARGO_PKG_VERSION")),
        )
        .header(hookrelay_core::signing::WEBHOOK_ID, webhook_id)
        .body(Full::new(body))?;
    let reached = Reached::default();
    req.extensions_mut().insert(target.clone());
    req.extensions_mut().insert(reached.clone());
    Ok((req, reached))
}
