//! Per-request overhead of each layer against the bare service, and throttle accuracy.
//!
//! `cargo bench -p hookrelay-tower -- --warm-up-time 1 --measurement-time 3`
//!
//! The accuracy part runs the throttle in real time (tokio's timer, 1 ms resolution) at
//! 10, 100 and 1000 requests a second and prints the delivered rate, its error, the largest
//! group of requests released together, and how far ahead of the GCRA schedule the
//! throttle ever got (0 means never early). It also prints the whole stack's overhead as a
//! ratio to the bare service.

#![allow(missing_docs)]

use std::convert::Infallible;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use hookrelay_core::signing::{Signer, SigningSecret};
use hookrelay_tower::gcra::Gcra;
use hookrelay_tower::set_headers::HeaderSet;
use hookrelay_tower::{RateLimitLayer, SetRequestHeadersLayer, SignLayer, ThrottleLayer};
use http::{Request, Response};
use http_body_util::Full;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};

const BODY: &str = r#"{"version":"1.0","event_type":"status","channel":"email","channel_value":"user@example.com","vendor_name":"sendgrid","reference":{"vendor_ack_id":"abc123","idempotency_key":"evt_1"},"suprsend_status":{"status":"delivered","timestamp":1700000000000}}"#;

fn request() -> Request<Full<Bytes>> {
    Request::post("http://crm.internal/hooks")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(BODY.as_bytes())))
        .expect("valid request")
}

fn bare() -> impl Service<Request<Full<Bytes>>, Response = Response<()>, Error = Infallible> + Clone
{
    service_fn(|req: Request<Full<Bytes>>| async move {
        black_box(req);
        Ok::<_, Infallible>(Response::new(()))
    })
}

fn gcra(per_second: u32, burst: u32) -> Gcra {
    Gcra::new(
        NonZeroU32::new(per_second).expect("non-zero"),
        NonZeroU32::new(burst).expect("non-zero"),
    )
}

/// A policy that never makes a request wait (the interval rounds to zero).
fn no_wait() -> Gcra {
    gcra(u32::MAX, 1)
}

fn headers() -> HeaderSet {
    HeaderSet::new()
        .overriding("authorization", "Bearer 0123456789abcdef")
        .and_then(|s| s.if_absent("user-agent", "hookrelay"))
        .and_then(|s| s.overriding("x-endpoint", "crm"))
        .expect("valid headers")
}

fn signer() -> Signer {
    let secret: SigningSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        .parse()
        .expect("secret");
    Signer::new(vec![secret])
}

fn bench_service<S>(c: &mut Criterion, rt: &tokio::runtime::Runtime, name: &str, svc: S)
where
    S: Service<Request<Full<Bytes>>> + Clone,
    S::Error: std::fmt::Debug,
{
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let res = svc.clone().oneshot(request()).await.expect("served");
                    black_box(res);
                }
                start.elapsed()
            })
        });
    });
}

fn overhead(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    bench_service(c, &rt, "bare", bare());
    bench_service(
        c,
        &rt,
        "set_headers",
        ServiceBuilder::new()
            .layer(SetRequestHeadersLayer::new(headers()))
            .service(bare()),
    );
    bench_service(
        c,
        &rt,
        "sign",
        ServiceBuilder::new()
            .layer(SignLayer::new(signer()))
            .service(bare()),
    );
    bench_service(
        c,
        &rt,
        "throttle_no_wait",
        ServiceBuilder::new()
            .layer(ThrottleLayer::new(no_wait()))
            .service(bare()),
    );
    bench_service(
        c,
        &rt,
        "rate_limit_admit",
        ServiceBuilder::new()
            .layer(RateLimitLayer::new(no_wait()))
            .service(bare()),
    );
    bench_service(
        c,
        &rt,
        "stack_headers_sign_throttle",
        ServiceBuilder::new()
            .layer(SetRequestHeadersLayer::new(headers()))
            .layer(SignLayer::new(signer()))
            .layer(ThrottleLayer::new(no_wait()))
            .service(bare()),
    );
}

/// Real-time accuracy of the throttle at one rate.
fn accuracy_at(rt: &tokio::runtime::Runtime, per_second: u32, burst: u32, secs: u32) {
    let g = gcra(per_second, burst);
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&log);
    let svc = ServiceBuilder::new()
        .layer(ThrottleLayer::new(g))
        .service(service_fn(move |_: Request<()>| {
            seen.lock().expect("log").push(Instant::now());
            async { Ok::<_, BoxError>(()) }
        }));
    let n = burst + per_second * secs;
    let start = rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..n)
            .map(|_| tokio::spawn(svc.clone().oneshot(Request::new(()))))
            .collect();
        for t in tasks {
            t.await.expect("task").expect("served");
        }
        start
    });
    let mut times = log.lock().expect("log").clone();
    times.sort();
    let interval = g.interval();
    let last = times.last().copied().unwrap_or(start);
    let delivered = f64::from(n - burst) / (last - start).as_secs_f64();
    let error = (delivered - f64::from(per_second)) / f64::from(per_second) * 100.0;
    // The largest group released together (within 100 µs of its first request).
    let together = Duration::from_micros(100);
    let mut max_burst = 0;
    let mut lo = 0;
    for hi in 0..times.len() {
        while times[hi] - times[lo] > together {
            lo += 1;
        }
        max_burst = max_burst.max(hi - lo + 1);
    }
    // How many deliveries ahead of the schedule "burst at 0, then one per interval".
    let ahead = times
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let allowed = burst as usize + ((*t - start).as_nanos() / interval.as_nanos()) as usize;
            (i + 1).saturating_sub(allowed)
        })
        .max()
        .unwrap_or(0);
    println!(
        "throttle accuracy {per_second:>5}/s burst {burst}: {n} requests, delivered {delivered:.2}/s \
         ({error:+.3} %), max burst {max_burst} (released within 100 µs), max {ahead} ahead of schedule"
    );
}

fn accuracy() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    for per_second in [10, 100, 1000] {
        accuracy_at(&rt, per_second, 5, 3);
    }
}

async fn per_request<S>(svc: &S, n: u32) -> Duration
where
    S: Service<Request<Full<Bytes>>> + Clone,
    S::Error: std::fmt::Debug,
{
    let start = Instant::now();
    for _ in 0..n {
        black_box(svc.clone().oneshot(request()).await.expect("served"));
    }
    start.elapsed() / n
}

/// The whole stack's cost as a ratio to the bare service: interleaved rounds, best of each
/// (the least disturbed by other load on the machine).
fn overhead_ratio() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let stack = ServiceBuilder::new()
        .layer(SetRequestHeadersLayer::new(headers()))
        .layer(SignLayer::new(signer()))
        .layer(ThrottleLayer::new(no_wait()))
        .service(bare());
    let (mut best_bare, mut best_stack) = (Duration::MAX, Duration::MAX);
    rt.block_on(async {
        for _ in 0..10 {
            best_bare = best_bare.min(per_request(&bare(), 100_000).await);
            best_stack = best_stack.min(per_request(&stack, 100_000).await);
        }
    });
    println!(
        "stack overhead (headers + sign + throttle, no wait): bare {best_bare:?}/request, \
         stack {best_stack:?}/request, ratio {:.2}, added {:?}/request",
        best_stack.as_secs_f64() / best_bare.as_secs_f64(),
        best_stack.saturating_sub(best_bare)
    );
}

criterion_group!(benches, overhead);
criterion_main!(benches, overhead_ratio, accuracy);
