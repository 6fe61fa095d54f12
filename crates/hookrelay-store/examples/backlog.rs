//! Fills an embedded store with a backlog and a full dedupe window, sampling the
//! process's memory as it grows, then reopens it and times the open.
//!
//! ```text
//! backlog <dir> [deliveries] [endpoints] [keys_per_s] [window_s] [body_bytes]
//! ```
//!
//! Defaults: 10,000,000 deliveries across 10 endpoints (`e0` … `e9`), a dedupe key per
//! event at 1,000 events/s over a 24 h window (86.4 million keys, written with simulated
//! timestamps: the window ends now), 504-byte bodies. One event in `keys_per_s * window_s
//! / deliveries` also queues a delivery. Written through the public API, with 256
//! concurrent callers (group commit), as the sidecar writes.
//!
//! Prints tab-separated samples (`events deliveries keys rss_mib used_mib disk_mib
//! seconds`) every 2 % of the way, then `idle_rss_mib`, `max_rss_mib`, `reopen_ms` and
//! `reopen_rss_mib` lines. `scripts/backlog` runs it and then the sidecar on the store.

use bytes::Bytes;
use hookrelay_store::{EmbeddedOptions, EmbeddedStore, NewDelivery};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The sidecar's allocator, so that the memory measured is the sidecar's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Concurrent callers.
const CALLERS: u64 = 256;

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// The process's resident memory, in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A rendered payload of `len` bytes for event `n` (the SuprSend webhook shape, padded).
fn body(n: u64, len: usize) -> Bytes {
    let mut text = format!(
        r#"{{"$schema":"2024-01-01","event":{{"type":"message.delivered","channel":"whatsapp","vendor":"meta_whatsapp","idempotency_key":"wamid.{n:020}","vendor_ack_id":"wamid.{n:020}","channel_value":"+16505551234","status":"delivered","occurred_at":"2025-02-12T00:43:44Z"}},"pad":""#
    );
    while text.len() + 2 < len {
        text.push('x');
    }
    text.push_str("\"}");
    Bytes::from(text)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or(
        "usage: backlog <dir> [deliveries] [endpoints] [keys_per_s] [window_s] [body_bytes]",
    )?;
    let deliveries = arg(2, 10_000_000);
    let endpoints = arg(3, 10).max(1);
    let per_s = arg(4, 1_000).max(1);
    let window_s = arg(5, 86_400);
    let body_len = arg(6, 504) as usize;
    let events = per_s * window_s;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let start_ms = now - (window_s * 1000) as i64;
    let step_ms = 1000.0 / per_s as f64;
    let window = Duration::from_secs(window_s);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let store = EmbeddedStore::open_with(&dir, EmbeddedOptions::default().max_batch(4096))?;
    let idle = rss_mib();
    println!("events\tdeliveries\tkeys\trss_mib\tused_mib\tdisk_mib\tseconds");
    let done = Arc::new(AtomicU64::new(0));
    let queued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut max_rss = idle;
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for caller in 0..CALLERS {
            let store = store.clone();
            let (done, queued) = (Arc::clone(&done), Arc::clone(&queued));
            tasks.spawn(async move {
                let mut i = caller;
                while i < events {
                    let at = start_ms + (i as f64 * step_ms) as i64;
                    // Event i queues a delivery when the share of deliveries passes an
                    // integer: `deliveries` of the `events` in all, evenly spread.
                    let batch = if (i + 1) * deliveries / events > i * deliveries / events {
                        let n = i * deliveries / events;
                        vec![NewDelivery {
                            endpoint: format!("e{}", n % endpoints),
                            webhook_id: format!("msg_{n:012}"),
                            body: body(n, body_len),
                            created_at_ms: at,
                            trace: None,
                        }]
                    } else {
                        Vec::new()
                    };
                    let with = !batch.is_empty();
                    store
                        .enqueue(
                            Some((format!("meta_whatsapp:wamid.{i:020}"), window)),
                            batch,
                            at,
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    if with {
                        queued.fetch_add(1, Ordering::Relaxed);
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    i += CALLERS;
                }
                Ok::<(), String>(())
            });
        }
        let every = (events / 50).max(1);
        let mut next = every;
        let mut sampler = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                finished = tasks.join_next() => match finished {
                    None => break,
                    Some(Ok(Ok(()))) => {}
                    Some(Ok(Err(e))) => return Err(e),
                    Some(Err(e)) => return Err(e.to_string()),
                },
                _ = sampler.tick() => {
                    let rss = rss_mib();
                    max_rss = max_rss.max(rss);
                    let n = done.load(Ordering::Relaxed);
                    if n >= next {
                        next = n + every;
                        let stats = store.stats();
                        println!(
                            "{n}\t{}\t{}\t{rss:.1}\t{:.0}\t{:.0}\t{:.1}",
                            queued.load(Ordering::Relaxed),
                            stats.keys,
                            stats.used_bytes as f64 / 1048576.0,
                            store.disk_bytes() as f64 / 1048576.0,
                            started.elapsed().as_secs_f64()
                        );
                    }
                }
            }
        }
        Ok(())
    })?;
    let stats = store.stats();
    println!(
        "{}\t{}\t{}\t{:.1}\t{:.0}\t{:.0}\t{:.1}",
        done.load(Ordering::Relaxed),
        queued.load(Ordering::Relaxed),
        stats.keys,
        rss_mib(),
        stats.used_bytes as f64 / 1048576.0,
        store.disk_bytes() as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );
    let depth: u64 = (0..endpoints)
        .map(|e| store.queue_depth(&format!("e{e}")))
        .sum();
    drop(store);
    let opened = Instant::now();
    let store = EmbeddedStore::open(&dir)?;
    let reopen = opened.elapsed();
    let reopened_depth: u64 = (0..endpoints)
        .map(|e| store.queue_depth(&format!("e{e}")))
        .sum();
    println!("idle_rss_mib\t{idle:.1}");
    println!("max_rss_mib\t{max_rss:.1}");
    println!("queued\t{depth}");
    println!("reopen_ms\t{}", reopen.as_millis());
    println!("reopen_rss_mib\t{:.1}", rss_mib());
    println!("reopened_queued\t{reopened_depth}");
    Ok(())
}
