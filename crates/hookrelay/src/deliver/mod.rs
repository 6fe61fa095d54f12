//! Delivery: one lane per endpoint, so a slow endpoint never stalls another.
//!
//! - [`Lanes::reconcile`] applies a snapshot as a diff: lanes for new endpoints start (their
//!   stack built once, [`stack`]), changed endpoints get the new policies through the
//!   stack's reload handles, removed endpoints stop and their queues become dead letters
//!   `endpoint removed`;
//! - each lane's worker ([`lane`]) leases due deliveries and runs [`attempt`]s;
//! - what an attempt came to, and when the next is due, is [`outcome`]'s.
//!
//! 2xx done; 429, 5xx, timeouts and connection errors retried with the endpoint's backoff
//! schedule plus jitter (`Retry-After` honoured within bounds); 410 pauses the endpoint
//! (its deliveries stay queued); other 3xx/4xx are dead letters at once; exhausting
//! `max_attempts` or `max_age` makes a dead letter.

mod attempt;
pub(crate) mod lane;
mod outcome;
mod stack;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hookrelay_config::Snapshot;
use hookrelay_store::Store;
use redis::aio::ConnectionManager;

use crate::clock::now_ms;
use crate::metrics::Metrics;
use crate::net::Clients;
pub(crate) use lane::Lane;

/// What the delivery side uses.
pub(crate) struct DeliverCtx {
    pub(crate) store: Store,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) clients: Clients,
    /// The runtime the lanes run on (at a lower CPU priority than the listener).
    pub(crate) runtime: tokio::runtime::Handle,
    /// One Redis connection shared by every endpoint's rate limit, when the store is
    /// Redis (replicas then share one rate per endpoint); `None`: rates in memory.
    pub(crate) redis: Option<ConnectionManager>,
}

/// The lanes of every configured endpoint.
pub(crate) struct Lanes {
    ctx: Arc<DeliverCtx>,
    lanes: Arc<Mutex<HashMap<String, Arc<Lane>>>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// The guarded value, whatever panicked while holding the lock: every change under these
/// locks is one insert, remove or swap, so the content is always whole.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Dead-letters removed endpoint `name`'s queue once the store takes it, trying again
/// (after 1 s, doubling up to a minute) until it does or the endpoint is configured again.
/// Without it, a store unavailable at the reload would leave that queue in the store, never
/// delivered and never a dead letter: on Redis no replica ever looks at it again.
async fn bury_later(
    ctx: Arc<DeliverCtx>,
    lanes: Arc<Mutex<HashMap<String, Arc<Lane>>>>,
    name: String,
) {
    let mut wait = Duration::from_secs(1);
    loop {
        tokio::time::sleep(wait).await;
        if lock(&lanes).contains_key(&name) {
            return;
        }
        match ctx
            .store
            .dead_letter_endpoint(&name, "endpoint removed", now_ms())
            .await
        {
            Ok(n) => {
                tracing::info!(endpoint = %name, dead_lettered = n, "endpoint removed");
                return;
            }
            Err(e) => {
                tracing::warn!(endpoint = %name, error = %e, "cannot dead-letter a removed endpoint's queue; trying again");
                wait = (wait * 2).min(Duration::from_secs(60));
            }
        }
    }
}

impl Lanes {
    pub(crate) fn new(ctx: DeliverCtx) -> Self {
        Self {
            ctx: Arc::new(ctx),
            lanes: Arc::new(Mutex::new(HashMap::new())),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// Lane by endpoint name.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Lane>> {
        lock(&self.lanes).get(name).cloned()
    }

    /// Brings the lanes in line with `snapshot`: starts new endpoints, applies changed
    /// policies to running lanes (and resumes them: a reload is the operator's answer to a
    /// 410), stops removed ones (their queued deliveries become dead letters `endpoint
    /// removed`).
    pub(crate) async fn reconcile(&self, snapshot: &Snapshot) {
        let mut started = Vec::new();
        let mut removed = Vec::new();
        {
            let mut lanes = lock(&self.lanes);
            for ep in &snapshot.endpoints {
                match lanes.get(&ep.name) {
                    Some(lane) => {
                        lane.apply(ep);
                        lane.resume();
                    }
                    None => {
                        let _runtime = self.ctx.runtime.enter();
                        let lane = Lane::new(&self.ctx, ep, self.ctx.store.subscribe(&ep.name));
                        lanes.insert(ep.name.clone(), lane.clone());
                        started.push(lane);
                    }
                }
            }
            lanes.retain(|name, lane| {
                let keep = snapshot.endpoint(name).is_some();
                if !keep {
                    lane.stop();
                    removed.push(name.clone());
                }
                keep
            });
        }
        for lane in started {
            let task = self.ctx.runtime.spawn(lane::run(self.ctx.clone(), lane));
            let mut tasks = lock(&self.tasks);
            tasks.retain(|t| !t.is_finished());
            tasks.push(task);
        }
        let store = &self.ctx.store;
        for name in removed {
            match store
                .dead_letter_endpoint(&name, "endpoint removed", now_ms())
                .await
            {
                Ok(n) => tracing::info!(endpoint = %name, dead_lettered = n, "endpoint removed"),
                Err(e) => {
                    tracing::error!(endpoint = %name, error = %e, "cannot dead-letter a removed endpoint's queue; trying again");
                    self.ctx.runtime.spawn(bury_later(
                        self.ctx.clone(),
                        Arc::clone(&self.lanes),
                        name,
                    ));
                }
            }
        }
        // Deliveries of endpoints no longer configured (removed while this sidecar was
        // stopped). Only with the embedded store, which this process alone owns: on Redis
        // another replica may run a newer config that has those endpoints.
        if matches!(store, Store::Embedded(_)) {
            for name in store.endpoints().await.unwrap_or_default() {
                if snapshot.endpoint(&name).is_none() {
                    let _ = store
                        .dead_letter_endpoint(&name, "endpoint removed", now_ms())
                        .await;
                }
            }
        }
    }

    /// Whether an endpoint's lane is paused, and its last success and failure; `None`
    /// when it has no lane.
    pub(crate) fn state(&self, name: &str) -> Option<(bool, lane::Last)> {
        self.get(name).map(|lane| {
            (
                lane.paused.load(std::sync::atomic::Ordering::SeqCst),
                lane.last(),
            )
        })
    }

    /// Deletes the dead letters that became dead letters before `cutoff_ms`, of `endpoint`
    /// or of all: how many. Pages through the oldest first; a page in which nothing was
    /// old enough ends it (dead letters are listed by delivery, so one replayed and dead
    /// again later may hold its place at the head until it expires too).
    pub(crate) async fn delete_dead_letters(
        store: &Store,
        endpoint: Option<&str>,
        cutoff_ms: i64,
    ) -> Result<u64, hookrelay_store::StoreError> {
        const PAGE: usize = 500;
        let mut deleted = 0;
        let mut after = None;
        loop {
            let page = store.dead_letters_after(endpoint, after, PAGE).await?;
            for letter in page.iter().filter(|l| l.dead_at_ms < cutoff_ms) {
                if store.delete_dead_letter(letter.delivery.id).await? {
                    deleted += 1;
                }
            }
            // Pages go on by id, past letters too young to delete, to the end.
            match page.last() {
                Some(last) if page.len() == PAGE => after = Some(last.delivery.id),
                _ => return Ok(deleted),
            }
        }
    }

    /// Resumes an endpoint paused by `410 Gone`; false when it was not paused.
    pub(crate) fn resume(&self, name: &str) -> bool {
        self.get(name).is_some_and(|lane| lane.resume())
    }

    /// Waits up to `limit` for every lane to finish its attempts in flight.
    pub(crate) async fn join(&self, limit: Duration) {
        let tasks: Vec<_> = lock(&self.tasks).drain(..).collect();
        let _ = tokio::time::timeout(limit, futures_util::future::join_all(tasks)).await;
    }

    /// Asks every lane to stop taking new work.
    pub(crate) fn stop_all(&self) {
        for lane in lock(&self.lanes).values() {
            lane.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use hookrelay_config::{Snapshot, Source};
    use hookrelay_core::signing::{SigningSecret, verify};
    use hookrelay_store::{NewDelivery, Store};
    use http_body_util::{BodyExt, Full};
    use tokio::sync::mpsc;

    use super::{DeliverCtx, Lanes};
    use crate::metrics::Metrics;
    use crate::net::{Clients, tls};

    const SECRET_A: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SECRET_B: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

    /// A sink that passes each request's headers and body to the test.
    async fn sink() -> (
        std::net::SocketAddr,
        mpsc::UnboundedReceiver<(http::HeaderMap, Bytes)>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let tx = tx.clone();
                            async move {
                                let headers = req.headers().clone();
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let _ = tx.send((headers, body));
                                Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                    Bytes::new(),
                                )))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (addr, rx)
    }

    fn snapshot(url: &str, tenant: &str, secret: &str, per_second: u32) -> Snapshot {
        let yaml = format!(
            "upstream: 127.0.0.1:9\nendpoints:\n  - name: crm\n    url: {url}\n    \
             headers: {{ X-Tenant: {tenant} }}\n    signing_secret: \"{secret}\"\n    \
             rate_limit: {{ per_second: {per_second}, burst: 1 }}\n"
        );
        Snapshot::try_from(&Source::new("t.yaml", yaml)).expect("valid")
    }

    fn lanes(store: &Store) -> Lanes {
        let (roots, _) = tls::roots(Vec::new(), &[]).expect("roots");
        Lanes::new(DeliverCtx {
            store: store.clone(),
            metrics: Arc::new(Metrics::default()),
            clients: Clients::new(&tls::client_config(roots).expect("tls")),
            runtime: tokio::runtime::Handle::current(),
            redis: None,
        })
    }

    async fn deliver_one(store: &Store, id: &str) {
        let new = NewDelivery {
            endpoint: "crm".into(),
            webhook_id: id.into(),
            body: Bytes::from(format!("{{\"id\":\"{id}\"}}")),
            created_at_ms: 0,
            trace: None,
        };
        store.enqueue(None, vec![new], 0).await.expect("enqueued");
    }

    fn signed_by(headers: &http::HeaderMap, body: &[u8], secret: &str) -> bool {
        let secret: SigningSecret = secret.parse().expect("secret");
        let h = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        verify(
            &[secret],
            &h("webhook-id"),
            &h("webhook-timestamp"),
            &h("webhook-signature"),
            body,
            None,
        )
        .is_ok()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reload_of_headers_secret_and_rate_reaches_the_built_stack() {
        let (addr, mut received) = sink().await;
        let url = format!("http://{addr}/hooks");
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open_embedded(dir.path()).expect("store");
        let lanes = lanes(&store);

        lanes.reconcile(&snapshot(&url, "a", SECRET_A, 5)).await;
        let lane = lanes.get("crm").expect("lane");
        deliver_one(&store, "evt_1").await;
        let (headers, body) = received.recv().await.expect("first delivery");
        assert_eq!(headers["x-tenant"], "a");
        assert!(signed_by(&headers, &body, SECRET_A));

        lanes.reconcile(&snapshot(&url, "b", SECRET_B, 50)).await;
        let after = lanes.get("crm").expect("lane");
        assert!(
            Arc::ptr_eq(&lane, &after),
            "the lane and its stack were not rebuilt"
        );
        assert_eq!(
            after.policy().rate().map(|g| g.per_second().get()),
            Some(50)
        );

        deliver_one(&store, "evt_2").await;
        let (headers, body) = received.recv().await.expect("second delivery");
        assert_eq!(headers["x-tenant"], "b");
        assert!(signed_by(&headers, &body, SECRET_B));
        assert!(
            !signed_by(&headers, &body, SECRET_A),
            "the old secret is gone"
        );
        lanes.stop_all();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_poisoned_lock_does_not_stop_reconcile() {
        let (addr, mut received) = sink().await;
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open_embedded(dir.path()).expect("store");
        let lanes = Arc::new(lanes(&store));
        let holder = lanes.clone();
        let poisoned = std::thread::spawn(move || {
            let _guard = holder.lanes.lock();
            panic!("a panic while holding the lanes");
        })
        .join();
        assert!(poisoned.is_err() && lanes.lanes.is_poisoned());

        lanes
            .reconcile(&snapshot(&format!("http://{addr}/"), "a", SECRET_A, 5))
            .await;
        assert!(lanes.get("crm").is_some(), "the lane started");
        deliver_one(&store, "evt_1").await;
        assert!(received.recv().await.is_some(), "and delivers");
        lanes.stop_all();
    }
}
