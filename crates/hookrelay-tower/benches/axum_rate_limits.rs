//! Rate limiting under axum: hookrelay's `ThrottleLayer`, tower-governor's `GovernorLayer`
//! and tower's `RateLimitLayer`, each limiting one axum app to the same rate, side by side.
//!
//! `cargo bench -p hookrelay-tower --bench axum_rate_limits`
//!
//! Every app serves `GET /` with `axum::serve` on 127.0.0.1:0 and is limited to
//! [`RATE`] requests a second with bursts of [`BURST`]. [`CONNECTIONS`] HTTP/1.1 client
//! connections (hyper) each send requests back to back, the next as soon as the previous
//! answer arrived, for [`SECONDS`] seconds: more than the rate, so every layer works at its
//! limit. Requests still in flight at the deadline are awaited and counted. The layers take
//! turns for [`ROUNDS`] rounds, each round on a fresh app (full buckets), so a disturbance of
//! the machine is spread over all of them; the table adds the rounds up.
//!
//! The apps:
//! - `ThrottleLayer` (`Router::layer`): delays each request to its GCRA slot; the buckets are
//!   shared by every clone of the service.
//! - `GovernorLayer` (`Router::layer`, `GlobalKeyExtractor`): GCRA too, answers `429` over
//!   the rate.
//! - tower's `RateLimitLayer` behind a `BufferLayer` (`Router::layer`), the usual way to make
//!   it `Clone` for axum: axum builds a route's layers for each connection, so every
//!   connection gets its own `Buffer` and its own budget.
//! - the same, buffered once around the whole `Router` instead: one budget for every
//!   connection.
//!
//! tower's `Rate` is a fixed window, so it is given [`BURST`] requests per
//! `BURST / RATE` seconds: the same mean rate and burst.

#![allow(missing_docs)]

use std::io;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{BoxError, Router, ServiceExt as _};
use hookrelay_tower::ThrottleLayer;
use hookrelay_tower::gcra::Gcra;
use http::{Request, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower::ServiceBuilder;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::GlobalKeyExtractor;

/// The configured rate, requests a second.
const RATE: u32 = 100;
/// The configured burst.
const BURST: u32 = 10;
/// Concurrent client connections, each one request at a time.
const CONNECTIONS: usize = 8;
/// How long each app is loaded in one round.
const SECONDS: u64 = 3;
/// Rounds; the layers take turns in each.
const ROUNDS: usize = 3;

fn interval() -> Duration {
    Duration::from_secs(1) / RATE
}

fn routes() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

/// What a failure of the layers under `HandleErrorLayer` becomes (none is expected: the
/// throttle waits without limit, a buffer of 1024 never fills with one request a connection).
async fn unavailable(_: BoxError) -> StatusCode {
    StatusCode::SERVICE_UNAVAILABLE
}

/// The apps under test.
#[derive(Debug, Clone, Copy)]
enum App {
    Throttle,
    Governor,
    TowerPerConnection,
    TowerAroundRouter,
}

impl App {
    const ALL: [Self; 4] = [
        Self::Throttle,
        Self::Governor,
        Self::TowerPerConnection,
        Self::TowerAroundRouter,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Throttle => "hookrelay ThrottleLayer",
            Self::Governor => "tower_governor GovernorLayer",
            Self::TowerPerConnection => "tower RateLimitLayer + Buffer, Router::layer",
            Self::TowerAroundRouter => "tower RateLimitLayer + Buffer, around the Router",
        }
    }

    /// Serves the app on `listener` until the returned task is aborted.
    fn serve(self, listener: TcpListener) -> JoinHandle<io::Result<()>> {
        let per = |n| NonZeroU32::new(n).expect("non-zero");
        let window = interval() * BURST;
        match self {
            Self::Throttle => {
                let app = routes().layer(
                    ServiceBuilder::new()
                        .layer(HandleErrorLayer::new(unavailable))
                        .layer(ThrottleLayer::new(Gcra::new(per(RATE), per(BURST)))),
                );
                tokio::spawn(async move { axum::serve(listener, app).await })
            }
            Self::Governor => {
                let config = GovernorConfigBuilder::default()
                    .key_extractor(GlobalKeyExtractor)
                    .period(interval())
                    .burst_size(BURST)
                    .finish()
                    .expect("non-zero period and burst");
                let app = routes().layer(GovernorLayer::new(config));
                tokio::spawn(async move { axum::serve(listener, app).await })
            }
            Self::TowerPerConnection => {
                let app = routes().layer(
                    ServiceBuilder::new()
                        .layer(HandleErrorLayer::new(unavailable))
                        .buffer(1024)
                        .rate_limit(u64::from(BURST), window),
                );
                tokio::spawn(async move { axum::serve(listener, app).await })
            }
            Self::TowerAroundRouter => {
                let app = ServiceBuilder::new()
                    .layer(HandleErrorLayer::new(unavailable))
                    .buffer(1024)
                    .rate_limit(u64::from(BURST), window)
                    .service(routes());
                let make = app.into_make_service();
                tokio::spawn(async move { axum::serve(listener, make).await })
            }
        }
    }
}

/// One request as the client saw it.
#[derive(Debug, Clone)]
struct Sample {
    /// `None`: the connection failed before an answer.
    status: Option<StatusCode>,
    latency: Duration,
    retry_after: Option<String>,
}

/// One connection's requests, back to back until `deadline`.
async fn connection(addr: SocketAddr, deadline: Instant) -> Vec<Sample> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut samples = Vec::new();
    while Instant::now() < deadline {
        let req = Request::get("/")
            .header(header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())
            .expect("valid request");
        let start = Instant::now();
        let answer = match sender.ready().await {
            Ok(()) => sender.send_request(req).await,
            Err(err) => Err(err),
        };
        let sample = match answer {
            Ok(res) => {
                let status = res.status();
                let retry_after = res
                    .headers()
                    .get(header::RETRY_AFTER)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                let body = res.into_body().collect().await;
                Sample {
                    status: body.is_ok().then_some(status),
                    latency: start.elapsed(),
                    retry_after,
                }
            }
            Err(_) => Sample {
                status: None,
                latency: start.elapsed(),
                retry_after: None,
            },
        };
        let failed = sample.status.is_none();
        samples.push(sample);
        if failed {
            break;
        }
    }
    samples
}

/// All rounds of one app, added up.
#[derive(Debug, Default)]
struct Tally {
    samples: Vec<Sample>,
    elapsed: Duration,
}

/// Loads a fresh `app` for [`SECONDS`]; the samples and the time from the first request to
/// the last answer.
async fn round(app: App) -> (Vec<Sample>, Duration) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let server = app.serve(listener);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(SECONDS);
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| tokio::spawn(connection(addr, deadline)))
        .collect();
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.expect("client task"));
    }
    server.abort();
    (samples, start.elapsed())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank.
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn report(app: App, tally: &Tally) {
    let sent = tally.samples.len();
    let ok = tally
        .samples
        .iter()
        .filter(|s| s.status.is_some_and(|s| s.is_success()))
        .count();
    let too_many = tally
        .samples
        .iter()
        .filter(|s| s.status == Some(StatusCode::TOO_MANY_REQUESTS))
        .count();
    let other = sent - ok - too_many;
    let ok_rate = ok as f64 / tally.elapsed.as_secs_f64();
    let mut latencies: Vec<_> = tally.samples.iter().map(|s| s.latency).collect();
    latencies.sort();
    let mut retry_after: Vec<_> = tally
        .samples
        .iter()
        .filter_map(|s| s.retry_after.as_deref())
        .collect();
    retry_after.sort_unstable();
    retry_after.dedup();
    let retry_after = if retry_after.is_empty() {
        "-".to_owned()
    } else {
        retry_after.join(", ")
    };
    println!(
        "| {} | {sent} | {ok} | {too_many} / {other} | {ok_rate:.1}/s | {:.2} | {} | {} | {retry_after} |",
        app.name(),
        ok_rate / f64::from(RATE),
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; this binary takes no options.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut tallies: Vec<Tally> = App::ALL.iter().map(|_| Tally::default()).collect();
    rt.block_on(async {
        for _ in 0..ROUNDS {
            for (app, tally) in App::ALL.into_iter().zip(&mut tallies) {
                let (samples, elapsed) = round(app).await;
                tally.samples.extend(samples);
                tally.elapsed += elapsed;
            }
        }
    });
    println!(
        "{RATE}/s, burst {BURST}; {CONNECTIONS} connections sending back to back, \
         {ROUNDS} rounds of {SECONDS} s per layer\n"
    );
    println!(
        "| layer | sent | 2xx | 429 / other | 2xx rate | 2xx rate / {RATE} | p50 | p99 | Retry-After |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (app, tally) in App::ALL.into_iter().zip(&tallies) {
        report(app, tally);
    }
}
