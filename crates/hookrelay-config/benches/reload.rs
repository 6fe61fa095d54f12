//! Write-to-live latency of a configuration reload with the real watcher.
//!
//! `cargo bench -p hookrelay-config --bench reload`: writes a changed file N times into a
//! watched temporary directory and measures from the start of the write to the moment
//! the new snapshot is live (its `Applied` outcome, reported right after the swap).
//! The figure includes the debounce (100 ms by default), the goal is under 300 ms.
//! Also measures the parse + validate + compile of the example configuration alone.

use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use hookrelay_config::{EnvLookup, Live, ReloadOutcome, Snapshot, Source};

const ROUNDS: usize = 30;

fn config(i: usize) -> String {
    let mut s = String::from("upstream: 127.0.0.1:3000\ncallbacks:\n");
    s.push_str(
        "  - path: /cb/twilio\n    provider: twilio\n    verify: { auth_token: t, public_url: https://n.example.com/cb/twilio }\n",
    );
    s.push_str("endpoints:\n");
    for e in 0..20 {
        s.push_str(&format!(
            "  - name: ep{e}\n    url: https://ep{e}.example.com/hooks?v={i}\n    events: {{ sms: [status] }}\n    rate_limit: {{ per_second: 20, burst: 5 }}\n    headers: {{ X-Round: \"{i}\" }}\n"
        ));
    }
    s
}

fn wait_applied(rx: &Receiver<ReloadOutcome>) -> Option<Instant> {
    let end = Instant::now() + Duration::from_secs(10);
    while let Ok(o) = rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
        if matches!(o, ReloadOutcome::Applied { .. }) {
            return Some(Instant::now());
        }
    }
    None
}

fn stats(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let pct = |p: usize| v[(v.len() - 1) * p / 100];
    println!(
        "{name}: n={} min={:.1?} median={:.1?} p95={:.1?} max={:.1?}",
        v.len(),
        v[0],
        pct(50),
        pct(95),
        v[v.len() - 1]
    );
}

fn latency(debounce: Duration, rounds: usize) -> Vec<Duration> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("hookrelay.yaml");
    std::fs::write(&file, config(0)).expect("write");
    let env: Arc<EnvLookup> = Arc::new(|_: &str| None);
    let live = Live::load_with_env(&file, env).expect("valid");
    let rx = live.subscribe();
    let _watcher = live.watch_with(debounce).expect("watch");
    let mut out = Vec::new();
    for i in 1..=rounds {
        let text = config(i);
        let start = Instant::now();
        std::fs::write(&file, &text).expect("write");
        let live_at = wait_applied(&rx).expect("applied in time");
        out.push(live_at - start);
        assert!(
            live.snapshot().endpoints[0]
                .url
                .as_str()
                .ends_with(&format!("v={i}"))
        );
    }
    out
}

fn main() {
    // Without --bench (`cargo test --all-targets` runs benches that way): a quick smoke run.
    if !std::env::args().any(|a| a == "--bench") {
        let _ = latency(Duration::from_millis(100), 1);
        return;
    }
    let example = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/hookrelay.example.yaml"
    ))
    .expect("example");
    let env: Arc<EnvLookup> = Arc::new(|k: &str| {
        Some(if k.contains("WHSEC") {
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned()
        } else {
            "x".to_owned()
        })
    });
    let source = Source::new("example", example).with_env(env);
    let mut compile = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let s = Snapshot::try_from(&source).expect("valid");
        compile.push(t.elapsed());
        drop(s);
    }
    stats("compile example config", compile);
    stats(
        "write -> live, debounce 100ms",
        latency(Duration::from_millis(100), ROUNDS),
    );
    stats(
        "write -> live, debounce 50ms",
        latency(Duration::from_millis(50), ROUNDS),
    );
}
