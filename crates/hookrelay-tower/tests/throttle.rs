//! Acceptance tests of the throttle under axum, in paused time.

use std::convert::Infallible;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::http::{Request, Response, StatusCode};
use axum::routing::post;
use axum::{BoxError, Router};
use hookrelay_tower::ThrottleLayer;
use hookrelay_tower::gcra::{ByHeader, Gcra, KeyExtractor, ThrottleHandle};
use hookrelay_tower::throttle::ThrottleError;
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt};

fn gcra(per_second: u32, burst: u32) -> Gcra {
    Gcra::new(
        NonZeroU32::new(per_second).expect("non-zero"),
        NonZeroU32::new(burst).expect("non-zero"),
    )
}

/// Times at which requests reached the handler, in arrival order.
type Log = Arc<Mutex<Vec<Instant>>>;

/// An axum app whose handler logs when each request reaches it, behind a throttle.
fn app<K>(layer: ThrottleLayer<K>) -> (Router, Log)
where
    K: KeyExtractor<Body> + Clone + Send + Sync + 'static,
{
    let log = Log::default();
    let seen = Arc::clone(&log);
    let app = Router::new()
        .route(
            "/send",
            post(move || {
                let seen = Arc::clone(&seen);
                async move {
                    seen.lock().expect("log").push(Instant::now());
                    "sent"
                }
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|err: BoxError| async move {
                    if err.downcast_ref::<ThrottleError>().is_some() {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::INTERNAL_SERVER_ERROR
                    }
                }))
                .layer(layer),
        );
    (app, log)
}

async fn send(app: &Router) -> StatusCode {
    send_as(app, "default").await
}

async fn send_as(app: &Router, tenant: &str) -> StatusCode {
    let req = Request::post("/send")
        .header("x-tenant", tenant)
        .body(Body::empty())
        .expect("valid request");
    // What axum does for every connection and request: call a fresh clone.
    app.clone().oneshot(req).await.expect("infallible").status()
}

fn offsets(log: &Log, start: Instant) -> Vec<Duration> {
    log.lock()
        .expect("log")
        .iter()
        .map(|t| *t - start)
        .collect()
}

/// Checks GCRA conformance: any `k` consecutive deliveries span at least `k - burst`
/// intervals, so no window ever holds more than `burst` plus its length in intervals.
fn assert_conforms(times: &[Instant], g: Gcra) {
    let interval = g.interval();
    let burst = g.burst().get() as usize;
    for (i, ti) in times.iter().enumerate() {
        for (j, tj) in times.iter().enumerate().skip(i + burst) {
            let needed = interval * u32::try_from(j - i + 1 - burst).expect("small");
            assert!(
                *tj - *ti >= needed,
                "deliveries {i}..={j} within {:?}, need {needed:?}",
                *tj - *ti
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn limits_across_axum_clones() {
    // Every request goes through a fresh clone of the router, as axum serves them;
    // a limiter with state per clone would let all five through at once.
    // Ours: shared state, one request a second.
    let (app, log) = app(ThrottleLayer::new(gcra(1, 1)));
    let start = Instant::now();
    for _ in 0..5 {
        assert_eq!(send(&app).await, StatusCode::OK);
    }
    let secs: Vec<u64> = offsets(&log, start).iter().map(Duration::as_secs).collect();
    assert_eq!(secs, [0, 1, 2, 3, 4]);
}

#[tokio::test(start_paused = true)]
async fn holds_the_rate_within_one_percent_over_ten_seconds_and_never_bursts_above_burst() {
    for (per_second, burst) in [(100, 10), (7, 3), (1000, 1)] {
        let g = gcra(per_second, burst);
        let (app, log) = app(ThrottleLayer::new(g));
        let start = Instant::now();
        let end = start + Duration::from_secs(10);
        // 32 concurrent senders, each through its own clones, far over the rate.
        let senders: Vec<_> = (0..32)
            .map(|_| {
                let app = app.clone();
                tokio::spawn(async move {
                    while Instant::now() < end {
                        assert_eq!(send(&app).await, StatusCode::OK);
                    }
                })
            })
            .collect();
        for s in senders {
            s.await.expect("sender");
        }
        let times: Vec<Instant> = log.lock().expect("log").clone();
        let in_window = times.iter().filter(|t| **t <= end).count();
        let steady = (in_window - burst as usize) as f64 / 10.0;
        let error = (steady - f64::from(per_second)).abs() / f64::from(per_second);
        assert!(error < 0.01, "{per_second}/s: delivered {steady}/s");
        let at_start = times.iter().filter(|t| **t == start).count();
        assert_eq!(at_start, burst as usize, "{per_second}/s: early burst");
        assert_conforms(&times, g);
    }
}

#[tokio::test(start_paused = true)]
async fn concurrent_waiters_get_distinct_slots() {
    let (app, log) = app(ThrottleLayer::new(gcra(10, 2)));
    let start = Instant::now();
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { send(&app).await })
        })
        .collect();
    for c in calls {
        assert_eq!(c.await.expect("call"), StatusCode::OK);
    }
    let ms: Vec<u128> = offsets(&log, start)
        .iter()
        .map(Duration::as_millis)
        .collect();
    assert_eq!(ms, [0, 0, 100, 200, 300, 400]);
}

#[tokio::test(start_paused = true)]
async fn a_reload_that_changes_nothing_keeps_the_buckets() {
    let handle = ThrottleHandle::new(gcra(1, 3));
    let (app, log) = app(ThrottleLayer::new(handle.clone()));
    let start = Instant::now();
    for _ in 0..3 {
        send(&app).await;
    }
    // Same rate and burst, as a config reload of an unchanged endpoint would set it.
    assert!(!handle.set(gcra(1, 3)));
    send(&app).await;
    let secs: Vec<u64> = offsets(&log, start).iter().map(Duration::as_secs).collect();
    assert_eq!(secs, [0, 0, 0, 1], "no refilled bucket after the reload");
}

#[tokio::test(start_paused = true)]
async fn a_rate_change_applies_to_the_next_request() {
    let handle = ThrottleHandle::new(gcra(1, 1));
    let (app, log) = app(ThrottleLayer::new(handle.clone()));
    let start = Instant::now();
    send(&app).await;
    send(&app).await; // waits 1 s at the old rate
    assert!(handle.set(gcra(10, 1)));
    send(&app).await; // new policy, fresh bucket: at once
    send(&app).await; // then at the new rate: 100 ms
    let ms: Vec<u128> = offsets(&log, start)
        .iter()
        .map(Duration::as_millis)
        .collect();
    assert_eq!(ms, [0, 1000, 1000, 1100]);
}

#[tokio::test(start_paused = true)]
async fn over_the_maximum_wait_fails_with_a_typed_error_and_reserves_nothing() {
    let handle = ThrottleHandle::new(gcra(2, 1));
    let layer = ThrottleLayer::new(handle.clone()).max_wait(Duration::from_millis(700));
    let (app, log) = app(layer);
    let start = Instant::now();
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { send(&app).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for c in calls {
        statuses.push(c.await.expect("call"));
    }
    // Slots at 0 and 500 ms fit; 1000 ms is over 700 ms.
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::SERVICE_UNAVAILABLE
        ]
    );
    // The refused ones reserved nothing: the next slot is 1000 ms, not 2000 ms.
    assert_eq!(send(&app).await, StatusCode::OK);
    let ms: Vec<u128> = offsets(&log, start)
        .iter()
        .map(Duration::as_millis)
        .collect();
    assert_eq!(ms, [0, 500, 1000]);

    // The error itself, without axum.
    let svc = ServiceBuilder::new()
        .layer(ThrottleLayer::new(gcra(1, 1)).max_wait(Duration::ZERO))
        .service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    let req = || Request::new(());
    svc.clone().oneshot(req()).await.expect("first passes");
    let err = svc.oneshot(req()).await.expect_err("second refused");
    assert_eq!(
        err.downcast_ref::<ThrottleError>(),
        Some(&ThrottleError::WaitTooLong {
            wait: Duration::from_secs(1),
            max_wait: Duration::ZERO
        })
    );
}

#[tokio::test(start_paused = true)]
async fn keyed_buckets_are_independent() {
    let layer = ThrottleLayer::new(gcra(1, 1))
        .key_by(ByHeader::new("x-tenant".parse().expect("valid name")));
    let (app, log) = app(layer);
    let start = Instant::now();
    send_as(&app, "a").await;
    send_as(&app, "b").await;
    send_as(&app, "a").await;
    let secs: Vec<u64> = offsets(&log, start).iter().map(Duration::as_secs).collect();
    assert_eq!(secs, [0, 0, 1]);
}
