//! Enqueue throughput (events/s) with 1, 16 and 128 concurrent callers: group commit
//! against the fsync-per-request baseline (`max_batch(1)`: every enqueue its own durable
//! transaction), and the Redis store (a local `redis-server` started here, with
//! `appendonly yes` and `appendfsync always`; one script per enqueue, pipelined on one
//! multiplexed connection). Each event is one 1 KiB delivery plus its dedupe key, as the
//! sidecar writes them.
//!
//! `cargo bench -p hookrelay-store -- --warm-up-time 1 --measurement-time 3`

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hookrelay_store::{EmbeddedOptions, EmbeddedStore, NewDelivery, RedisStore, Store};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

// The test harness: start, stop and restart a real redis-server.
#[allow(dead_code)]
#[path = "../tests/support/redis_server.rs"]
mod redis_server;

fn enqueue(c: &mut Criterion) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => panic!("tokio runtime: {e}"),
    };
    let body = Bytes::from(vec![b'x'; 1024]);
    let mut group = c.benchmark_group("enqueue");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    for (mode, options) in [
        ("group_commit", EmbeddedOptions::default()),
        ("fsync_per_request", EmbeddedOptions::default().max_batch(1)),
    ] {
        let dir = match tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")) {
            Ok(dir) => dir,
            Err(e) => panic!("temp dir: {e}"),
        };
        let store = match EmbeddedStore::open_with(dir.path(), options) {
            Ok(store) => Store::Embedded(store),
            Err(e) => panic!("open store: {e}"),
        };
        let events = Arc::new(AtomicU64::new(0));
        for callers in [1_u64, 16, 128] {
            group.bench_with_input(BenchmarkId::new(mode, callers), &callers, |b, &callers| {
                b.iter_custom(|iters| {
                    runtime.block_on(run(&store, &events, &body, callers, iters))
                });
            });
        }
    }

    let server = match redis_server::RedisServer::start() {
        Ok(server) => server,
        Err(e) => panic!("redis-server: {e}"),
    };
    let store = match runtime.block_on(RedisStore::open(&server.url())) {
        Ok(store) => Store::Redis(store),
        Err(e) => panic!("open redis store: {e}"),
    };
    let events = Arc::new(AtomicU64::new(0));
    for callers in [1_u64, 16, 128] {
        group.bench_with_input(
            BenchmarkId::new("redis", callers),
            &callers,
            |b, &callers| {
                b.iter_custom(|iters| {
                    runtime.block_on(run(&store, &events, &body, callers, iters))
                });
            },
        );
    }
    group.finish();
}

/// `iters` enqueues spread over `callers` concurrent tasks; the wall time of all of them.
async fn run(
    store: &Store,
    events: &Arc<AtomicU64>,
    body: &Bytes,
    callers: u64,
    iters: u64,
) -> Duration {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..callers {
        let share = iters / callers + u64::from(caller < iters % callers);
        let (store, events, body) = (store.clone(), Arc::clone(events), body.clone());
        tasks.spawn(async move {
            for _ in 0..share {
                let n = events.fetch_add(1, Ordering::Relaxed);
                let key = Some((format!("evt{n}"), Duration::from_secs(3600)));
                let delivery = NewDelivery {
                    endpoint: "crm".into(),
                    webhook_id: format!("msg{n}"),
                    body: body.clone(),
                    created_at_ms: 0,
                    trace: None,
                };
                if let Err(e) = store.enqueue(key, vec![delivery], 0).await {
                    panic!("enqueue: {e}");
                }
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined {
            panic!("caller: {e}");
        }
    }
    start.elapsed()
}

criterion_group!(benches, enqueue);
criterion_main!(benches);
