//! Acceptance tests of GCRA in Redis against a real `redis-server`, started by each test on
//! a free port (set `REDIS_SERVER` to use another binary). Without redis-server the tests
//! fail; they are never skipped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::num::NonZeroU32;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::http::{Request, Response, StatusCode};
use axum::routing::post;
use axum::{BoxError, Router};
use hookrelay_tower::gcra::redis::RedisGcra;
use hookrelay_tower::gcra::{Gcra, GcraState, Key, RateLimiter, ReserveError};
use hookrelay_tower::throttle::ThrottleError;
use hookrelay_tower::{RateLimitLayer, ThrottleLayer};
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt};

/// How long a redis-server may take to answer its first PING.
const STARTUP: Duration = Duration::from_secs(10);

/// A redis-server child process without persistence, killed on drop.
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Self::start_on(port)
    }

    fn start_on(port: u16) -> Self {
        let bin = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(&bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("these tests need `{bin}` (install redis-server or set REDIS_SERVER): {e}")
            });
        let mut server = Self { child, port };
        server.wait_for_ping();
        server
    }

    fn wait_for_ping(&mut self) {
        let deadline = std::time::Instant::now() + STARTUP;
        loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                panic!("redis-server on port {} exited: {status}", self.port);
            }
            if ping(self.port) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server on port {} did not answer PING within {STARTUP:?}",
                self.port
            );
            // Polling interval of the condition, not a synchronisation.
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let timeout = Some(Duration::from_millis(500));
    let mut reply = [0; 7];
    stream.set_read_timeout(timeout).is_ok()
        && stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

fn gcra(per_second: u32, burst: u32) -> Gcra {
    Gcra::new(
        NonZeroU32::new(per_second).expect("non-zero"),
        NonZeroU32::new(burst).expect("non-zero"),
    )
}

/// A reservation as the caller saw it: the slot returned and the round trip it took. The
/// slot on Redis's clock lies within `[slot - rtt, slot]`.
#[derive(Debug, Clone, Copy)]
struct Reserved {
    slot: Instant,
    rtt: Duration,
}

async fn reserve(r: &RedisGcra, key: &str, max_wait: Duration) -> Result<Reserved, ReserveError> {
    let sent = Instant::now();
    let slot = r.reserve(Some(Key::from(key)), max_wait).await?;
    Ok(Reserved {
        slot,
        rtt: sent.elapsed(),
    })
}

/// Checks GCRA conformance: any `k` reservations span at least `k - burst` intervals, less
/// the largest round trip (the uncertainty of where a returned slot lies on Redis's clock).
fn assert_conforms(reserved: &[Reserved], g: Gcra) {
    let mut slots: Vec<Instant> = reserved.iter().map(|r| r.slot).collect();
    slots.sort();
    let slack = reserved.iter().map(|r| r.rtt).max().unwrap_or_default();
    let burst = g.burst().get() as usize;
    for (i, ti) in slots.iter().enumerate() {
        for (j, tj) in slots.iter().enumerate().skip(i + burst) {
            let needed = g.interval() * u32::try_from(j - i + 1 - burst).expect("small");
            assert!(
                *tj - *ti + slack >= needed,
                "slots {i}..={j} within {:?}, need {needed:?} (slack {slack:?})",
                *tj - *ti
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_together_hold_the_rate_within_three_percent() {
    let redis = RedisServer::start();
    let g = gcra(30, 3);
    let window = Duration::from_secs(3);
    // Three replicas: each its own connection, the same prefix and key.
    let replicas: Vec<RedisGcra> = (0..3)
        .map(|_| RedisGcra::open(&redis.url(), "hookrelay:throttle:", g).expect("valid URL"))
        .collect();
    for r in &replicas {
        r.ping().await.expect("connected");
    }
    // Reserve past the window, count within it.
    let end = Instant::now() + window + Duration::from_millis(500);
    // Four concurrent senders a replica, each reserving its next slot as soon as it is
    // due, far over the rate. Slots are counted as scheduled, not as observed.
    let senders: Vec<_> = replicas
        .iter()
        .flat_map(|r| std::iter::repeat_n(r, 4))
        .map(|r| {
            let r = r.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = reserve(&r, "crm.internal", Duration::MAX)
                        .await
                        .expect("Redis is up");
                    if got.slot > end {
                        return mine;
                    }
                    mine.push(got);
                    tokio::time::sleep_until(got.slot).await;
                }
            })
        })
        .collect();
    let mut reserved = Vec::new();
    for s in senders {
        reserved.extend(s.await.expect("sender"));
    }
    let first = reserved.iter().map(|r| r.slot).min().expect("slots");
    let in_window = reserved.iter().filter(|r| r.slot <= first + window).count();
    let burst = g.burst().get() as usize;
    let steady = (in_window - burst) as f64 / window.as_secs_f64();
    let error = (steady - 30.0).abs() / 30.0;
    let max_rtt = reserved.iter().map(|r| r.rtt).max().unwrap_or_default();
    println!(
        "3 replicas at 30/s burst 3: {in_window} slots in {window:?}, {steady:.2}/s steady, \
         error {:.2}%, max round trip {max_rtt:?}",
        error * 100.0
    );
    assert!(error < 0.03, "delivered {steady}/s instead of 30/s");
    // Never more than `burst` early, at the start or later.
    assert_conforms(&reserved, g);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_slots_as_the_in_memory_gcra_and_a_refusal_reserves_nothing() {
    let redis = RedisServer::start();
    let g = gcra(1, 3);
    let r = RedisGcra::open(&redis.url(), "t:", g).expect("valid URL");
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(reserve(&r, "k", Duration::MAX).await.expect("Redis is up"));
    }
    // The in-memory bucket, asked at one instant: 0, 0, 0, 1 s, 2 s, 3 s.
    let t0 = std::time::Instant::now();
    let mut memory = GcraState::new();
    let expected: Vec<Duration> = (0..6)
        .map(|_| memory.reserve(&g, t0, Duration::MAX).expect("unbounded") - t0)
        .collect();
    let slack: Duration = got.iter().map(|r| r.rtt).sum();
    for (i, (r, e)) in got.iter().zip(&expected).enumerate() {
        let offset = r.slot.saturating_duration_since(got[0].slot);
        assert!(
            offset.abs_diff(*e) <= slack,
            "slot {i} at {offset:?}, in memory {e:?} (slack {slack:?})"
        );
    }
    // The next slot is 4 s after the first: refused within 3.5 s...
    let refused = reserve(&r, "k", Duration::from_millis(3500)).await;
    let Err(ReserveError::Exceeded(exceeded)) = refused else {
        panic!("expected a refusal, got {refused:?}");
    };
    let retry_after = exceeded.retry_after();
    assert!(
        retry_after > Duration::from_millis(3500) && retry_after <= Duration::from_secs(4),
        "retry after {retry_after:?}"
    );
    // ...and the refusal took nothing: that same slot is the next one.
    let next = reserve(&r, "k", Duration::MAX).await.expect("Redis is up");
    let offset = next.slot.saturating_duration_since(got[0].slot);
    assert!(
        offset.abs_diff(Duration::from_secs(4)) <= got[0].rtt + next.rtt,
        "next slot {offset:?} after the first, expected 4 s"
    );
    // Another key has its own bucket.
    let other = reserve(&r, "other", Duration::ZERO).await;
    assert!(other.is_ok(), "{other:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_and_restarts_keep_the_stored_tat() {
    let redis = RedisServer::start();
    let started = Instant::now();
    let r = RedisGcra::open(&redis.url(), "t:", gcra(1, 3)).expect("valid URL");
    let now = |r: &RedisGcra| {
        let r = r.clone();
        async move { reserve(&r, "k", Duration::ZERO).await.map(|_| ()) }
    };
    for _ in 0..3 {
        now(&r).await.expect("the burst passes");
    }
    assert!(now(&r).await.is_err(), "burst spent");
    // A reload that changes nothing keeps the state...
    assert!(!r.set(gcra(1, 3)));
    assert!(now(&r).await.is_err(), "no refill by an unchanged reload");
    // ...so does a process restart: a new limiter on the same prefix.
    let restarted = RedisGcra::open(&redis.url(), "t:", gcra(1, 3)).expect("valid URL");
    assert!(now(&restarted).await.is_err(), "no refill by a restart");
    // A changed policy reads the same TAT: burst 5 lets exactly 2 more pass, no refill.
    assert!(restarted.set(gcra(1, 5)));
    now(&restarted).await.expect("4th within burst 5");
    now(&restarted).await.expect("5th within burst 5");
    assert!(
        now(&restarted).await.is_err(),
        "burst of 5 spent, not refilled"
    );
    // At 1/s nothing refills within a second; the assertions above hold only if fast.
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "test too slow"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_requests_with_a_typed_error_and_redis_back_resumes() {
    let redis = RedisServer::start();
    let port = redis.port;
    let limiter = RedisGcra::open(&redis.url(), "t:", gcra(100, 10)).expect("valid URL");
    let reached = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&reached);
    // An axum app throttled by the Redis backend, as the module docs show.
    let app = Router::new()
        .route(
            "/send",
            post(move || {
                seen.fetch_add(1, Ordering::SeqCst);
                async { "sent" }
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|err: BoxError| async move {
                    match err.downcast_ref::<ThrottleError>() {
                        Some(ThrottleError::Unavailable { .. }) => StatusCode::SERVICE_UNAVAILABLE,
                        Some(_) => StatusCode::TOO_MANY_REQUESTS,
                        None => StatusCode::INTERNAL_SERVER_ERROR,
                    }
                }))
                .layer(ThrottleLayer::with_limiter(limiter.clone())),
        );
    let send = || {
        let app = app.clone();
        async move {
            let req = Request::post("/send")
                .body(Body::empty())
                .expect("valid request");
            let res = tokio::time::timeout(Duration::from_secs(5), app.oneshot(req)).await;
            res.expect("an outage pauses, it does not hang")
                .expect("infallible")
                .status()
        }
    };
    assert_eq!(send().await, StatusCode::OK);
    assert_eq!(reached.load(Ordering::SeqCst), 1);

    drop(redis);
    assert_eq!(send().await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        reached.load(Ordering::SeqCst),
        1,
        "nothing passed unthrottled"
    );
    // The error itself, without axum.
    let svc = ServiceBuilder::new()
        .layer(ThrottleLayer::with_limiter(limiter.clone()))
        .service_fn(|_: Request<()>| async { Ok::<_, BoxError>(Response::new(())) });
    let err = svc
        .oneshot(Request::new(()))
        .await
        .expect_err("Redis is down");
    assert!(
        matches!(
            err.downcast_ref::<ThrottleError>(),
            Some(ThrottleError::Unavailable { .. })
        ),
        "{err:?}"
    );
    // The rate limiter fails closed too.
    let limited = ServiceBuilder::new()
        .layer(RateLimitLayer::with_limiter(limiter.clone()))
        .service_fn(|_: Request<()>| async { Ok::<_, BoxError>(Response::new(())) });
    let res = limited.oneshot(Request::new(())).await.expect("a response");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(limiter.ping().await.is_err());

    // Redis back on the same address: the connection manager reconnects.
    let _redis = RedisServer::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match send().await {
            StatusCode::OK => break,
            StatusCode::SERVICE_UNAVAILABLE if Instant::now() < deadline => {
                // Polling interval of the condition, not a synchronisation.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("not resumed within 10 s: {other}"),
        }
    }
    assert_eq!(
        reached.load(Ordering::SeqCst),
        2,
        "only admitted requests passed"
    );
    limiter.ping().await.expect("Redis is back");
}
