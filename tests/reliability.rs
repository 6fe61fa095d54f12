//! The reliability suite, scaled to run in CI in a few minutes: while signed callbacks
//! arrive without a pause, the sidecar is killed with `kill -9` again and again (on the
//! embedded store and on Redis), reloaded again and again, and stopped with SIGTERM, and
//! every callback it acknowledged is delivered. `scripts/soak` runs the same tests at full
//! length (`RELIABILITY_ROUNDS`, `RELIABILITY_PER_ROUND`).

#[path = "../crates/hookrelay-store/tests/support/redis_server.rs"]
#[expect(dead_code, reason = "restarting Redis is for the replica tests")]
mod redis_server;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hookrelay_tests::{Sidecar, Sink, client, eventually, meta_signature, meta_status};
use http::Request;
use http_body_util::Full;
use redis_server::RedisServer;

const SECRET: &str = "reliability-secret";

/// Kills, reloads or stops per test (`RELIABILITY_ROUNDS`, default 5).
fn rounds() -> usize {
    env_or("RELIABILITY_ROUNDS", 5)
}

/// Callbacks acknowledged between two of them (`RELIABILITY_PER_ROUND`, default 100).
fn per_round() -> usize {
    env_or("RELIABILITY_PER_ROUND", 100)
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(store: &str, sink: &Sink, header: &str) -> String {
    format!(
        r#"
listen: "{{LISTEN}}"
admin: "{{ADMIN}}"
upstream: http://127.0.0.1:9
store: {store}
callbacks:
  - path: /wa
    provider: meta_whatsapp
    verify: {{ app_secret: {SECRET} }}
endpoints:
  - name: crm
    url: {url}
    headers: {{ x-config: "{header}" }}
    retry: {{ max_attempts: 1000, backoff: [50ms, 200ms] }}
"#,
        url = sink.url("/hook"),
    )
}

/// Signed callbacks posted without a pause by a few clients; what was acknowledged.
struct Load {
    acknowledged: Arc<Mutex<Vec<String>>>,
    count: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(listen: SocketAddr, clients: usize) -> Load {
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|c| {
                let (acknowledged, count, stop) =
                    (acknowledged.clone(), count.clone(), stop.clone());
                tokio::spawn(async move {
                    let client = client();
                    let mut i = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let wamid = format!("wamid.c{c}n{i}");
                        let body = meta_status(&wamid, "delivered", "15551234567");
                        let sig = meta_signature(SECRET, body.as_bytes());
                        let req = Request::post(format!("http://{listen}/wa"))
                            .header("content-type", "application/json")
                            .header("x-hub-signature-256", sig)
                            .body(Full::new(Bytes::from(body)))
                            .expect("request");
                        // A refused or failed request is not acknowledged: nothing is owed.
                        let answer = client.request(req).await;
                        if answer.is_ok_and(|r| r.status().is_success()) {
                            acknowledged.lock().expect("lock").push(wamid);
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        Load {
            acknowledged,
            count,
            stop,
            tasks,
        }
    }

    /// Waits until `more` callbacks have been acknowledged since `since`; the new total.
    async fn wait_for(&self, since: usize, more: usize) -> usize {
        eventually("callbacks acknowledged", || async {
            let n = self.count.load(Ordering::Relaxed);
            (n >= since + more).then_some(n)
        })
        .await
    }

    async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        self.acknowledged.lock().expect("lock").clone()
    }
}

/// Every acknowledged callback reached the sink (at least once).
async fn all_delivered(sink: &Sink, acknowledged: &[String], what: &str) {
    let want: HashSet<&str> = acknowledged.iter().map(String::as_str).collect();
    let got = Mutex::new((0usize, HashSet::<String>::new()));
    eventually("every acknowledged callback delivered", || async {
        let mut got = got.lock().expect("lock");
        let (seen, ids) = &mut *got;
        let new = sink.received_since(*seen);
        *seen += new.len();
        ids.extend(new.iter().filter_map(|r| {
            r.json()["reference"]["vendor_ack_id"]
                .as_str()
                .map(str::to_owned)
        }));
        want.iter().all(|id| ids.contains(*id)).then_some(())
    })
    .await;
    let (deliveries, ids) = got.into_inner().expect("lock");
    let lost = want.iter().filter(|id| !ids.contains(**id)).count();
    eprintln!(
        "{what}: {} acknowledged, {} delivered, {lost} lost, {deliveries} deliveries in all",
        want.len(),
        ids.len(),
    );
    assert_eq!(lost, 0);
}

async fn kill_9_under_load(store: &str, what: &str) {
    let sink = Sink::start().await;
    let mut s = Sidecar::start(&config(store, &sink, "a")).await;
    let load = Load::start(s.listen, 4);
    let mut seen = 0;
    for _ in 0..rounds() {
        seen = load.wait_for(seen, per_round()).await;
        s.kill9();
        s.spawn().await;
    }
    load.wait_for(seen, per_round()).await;
    let acknowledged = load.stop().await;
    all_delivered(&sink, &acknowledged, what).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_acknowledged_embedded() {
    kill_9_under_load(r#"{ kind: embedded, path: "{DATA}" }"#, "kill -9, embedded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_acknowledged_redis() {
    let redis =
        RedisServer::start().expect("redis-server (install it: apt-get install redis-server)");
    kill_9_under_load(
        &format!(
            r#"{{ kind: redis, url: "{}", visibility_timeout: 1s }}"#,
            redis.url()
        ),
        "kill -9, redis",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_lose_nothing_and_take_effect() {
    let sink = Sink::start().await;
    let store = r#"{ kind: embedded, path: "{DATA}" }"#;
    let s = Sidecar::start(&config(store, &sink, "r0")).await;
    let load = Load::start(s.listen, 4);
    let mut seen = 0;
    for round in 1..=rounds() * 2 {
        seen = load.wait_for(seen, per_round() / 2).await;
        s.rewrite(&config(store, &sink, &format!("r{round}")));
        let want = format!("r{round}");
        eventually("the reload to take effect", || async {
            sink.last()
                .is_some_and(|r| r.header("x-config") == want)
                .then_some(())
        })
        .await;
    }
    let acknowledged = load.stop().await;
    all_delivered(&sink, &acknowledged, "reloads").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_nothing_acknowledged() {
    let sink = Sink::start().await;
    let store = r#"{ kind: embedded, path: "{DATA}" }"#;
    let mut s = Sidecar::start(&config(store, &sink, "a")).await;
    let load = Load::start(s.listen, 4);
    let mut seen = 0;
    for _ in 0..rounds() {
        seen = load.wait_for(seen, per_round()).await;
        let status = s.terminate();
        assert!(status.success(), "SIGTERM exits cleanly: {status}");
        s.spawn().await;
    }
    let acknowledged = load.stop().await;
    all_delivered(&sink, &acknowledged, "SIGTERM").await;
}
