//! A full disk is an outage the sidecar recovers from by itself. On a 16 MiB tmpfs nearly
//! filled by a ballast file, callbacks are acknowledged until the store's disk is full,
//! then answered 503 (the provider retries) with `/readyz` 503; once the ballast is
//! removed, callbacks are acknowledged again and `/readyz` is 200 within seconds, with no
//! restart, and every callback that was acknowledged is delivered. SIGTERM on a full disk
//! is not held up by outcomes the store cannot write. A used-up `store.max_bytes` answers
//! 503 with its reason until the queue drains, and so does free space under
//! `store.min_free`, with no outage (the other tests set it to 0 to fill the disk).

use std::collections::HashSet;
use std::time::{Duration, Instant};

#[path = "../crates/hookrelay-store/tests/support/tmpfs.rs"]
#[expect(
    dead_code,
    reason = "the store's tests read the free space; these do not"
)]
mod tmpfs;

use hookrelay_tests::{DEADLINE, Sidecar, Sink, eventually, meta_status};
use tmpfs::{Tmpfs, shrink};

/// Fills `volume` with file `name`, then gives `leave` bytes of it back; its path.
fn ballast(volume: &Tmpfs, name: &str, leave: u64) -> std::path::PathBuf {
    let (path, _) = volume.fill(name).expect("write the ballast");
    shrink(&path, leave).expect("shrink the ballast");
    path
}

const SECRET: &str = "meta-app-secret";

/// How long the sidecar may take to acknowledge callbacks again once space is freed.
const RECOVERS_WITHIN: Duration = Duration::from_secs(10);

/// Room left next to the ballast: a few hundred callbacks.
const ROOM: u64 = 512 << 10;

/// The sidecar's config with its store in `data`; `min_free` 0, so that a full disk is an
/// outage (the tests of `store.min_free` replace it).
fn config(data: &std::path::Path, sink: &Sink) -> String {
    format!(
        r#"
listen: "{{LISTEN}}"
admin: "{{ADMIN}}"
upstream: http://127.0.0.1:9
store: {{ kind: embedded, min_free: 0, path: "{}" }}
callbacks:
  - path: /wa
    provider: meta_whatsapp
    verify: {{ app_secret: {SECRET} }}
endpoints:
  - name: crm
    url: {}
    retry: {{ max_attempts: 1000, backoff: [1s] }}
"#,
        data.display(),
        sink.url("/hook")
    )
}

async fn post(s: &Sidecar, wamid: &str) -> (u16, String) {
    let body = meta_status(wamid, "delivered", "15551234567");
    let (status, body) = s.post_meta_signed("/wa", SECRET, body).await;
    (status.as_u16(), String::from_utf8_lossy(&body).into_owned())
}

async fn ready(s: &Sidecar) -> u16 {
    s.admin("GET", "/readyz").await.0.as_u16()
}

/// Posts new callbacks until one is answered 503; returns the acknowledged ones.
async fn post_until_full(s: &Sidecar, prefix: &str) -> Vec<String> {
    let mut acknowledged = Vec::new();
    for i in 0..20_000 {
        let wamid = format!("wamid.{prefix}{i}");
        match post(s, &wamid).await {
            (200, _) => acknowledged.push(wamid),
            (503, body) => {
                assert!(body.contains("store unavailable"), "{body}");
                return acknowledged;
            }
            (status, body) => panic!("{wamid}: {status} {body}"),
        }
    }
    panic!("the store's disk never filled up");
}

/// Posts new callbacks (`wamid.after<n>`) every `pause` until one is acknowledged, failing
/// after `within`; the acknowledged one and how many were posted.
async fn post_until_taken(s: &Sidecar, within: Duration, pause: Duration) -> (String, usize) {
    let start = Instant::now();
    for again in 0.. {
        let wamid = format!("wamid.after{again}");
        match post(s, &wamid).await.0 {
            200 => return (wamid, again + 1),
            503 => {}
            status => panic!("{wamid}: {status}"),
        }
        assert!(
            start.elapsed() < within,
            "callbacks still refused after {within:?}"
        );
        tokio::time::sleep(pause).await;
    }
    unreachable!("the loop returns or fails")
}

/// Waits until the sink has received every callback of `acknowledged`; the Meta message
/// ids it received.
async fn all_delivered(sink: &Sink, acknowledged: &[String]) -> HashSet<String> {
    let expected: HashSet<&str> = acknowledged.iter().map(String::as_str).collect();
    eventually("every acknowledged callback delivered", || async {
        let got: HashSet<String> = sink
            .received()
            .iter()
            .map(|r| {
                r.json()["reference"]["vendor_ack_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        expected.iter().all(|w| got.contains(*w)).then_some(got)
    })
    .await
}

/// The value of the unlabelled metric `name`.
fn metric(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_until_space_is_freed_and_loses_nothing_acknowledged() {
    let volume = Tmpfs::mount("16m");
    let ballast = ballast(&volume, "ballast", ROOM);
    let sink = Sink::start().await;
    // The endpoint is down: deliveries queue, and each failed attempt writes its outcome.
    sink.set_status(503);
    let mut s = Sidecar::start(&config(&volume.path().join("data"), &sink)).await;

    let mut acknowledged = post_until_full(&s, "before").await;
    assert!(!acknowledged.is_empty());
    // Whatever space is still free goes to a second ballast. The store's retries wait for
    // a sixteenth of the disk (1 MiB) to be free before they reopen it: it stays down, in
    // one outage, and says what it waits for after the cause (a retry's probe that found
    // a few KB used to end the outage, and the next writes started a second one).
    let (squeeze, _) = volume.fill("squeeze").expect("write the second ballast");
    eventually(
        "not ready while the disk is full, with the cause and what it waits for",
        || async {
            let (status, body) = s.admin("GET", "/readyz").await;
            let body = body.as_str().unwrap_or_default().to_owned();
            (status == 503
                && body.contains("No space left on device")
                && body.contains("writes resume once 1048576 are free"))
            .then_some(())
        },
    )
    .await;
    // Refused, not queued: answered 503 and never delivered.
    let refused = "wamid.refused".to_owned();
    assert_eq!(post(&s, &refused).await.0, 503);
    let m = s.metrics().await;
    assert_eq!(metric(&m, "hookrelay_store_up"), 0);
    assert!(metric(&m, "hookrelay_store_refused_total") >= 1);
    assert_eq!(metric(&m, "hookrelay_store_outages_total"), 1);

    std::fs::remove_file(&squeeze).expect("remove the second ballast");
    std::fs::remove_file(&ballast).expect("remove the ballast");
    let freed = Instant::now();
    let (wamid, again) = post_until_taken(&s, RECOVERS_WITHIN, Duration::from_millis(20)).await;
    acknowledged.push(wamid);
    let took = freed.elapsed();
    while ready(&s).await != 200 {
        assert!(freed.elapsed() < RECOVERS_WITHIN, "/readyz still 503");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "callbacks acknowledged again {took:?} after the space was freed ({again} posts), ready after {:?}",
        freed.elapsed()
    );
    assert_eq!(metric(&s.metrics().await, "hookrelay_store_up"), 1);

    // The endpoint is back: everything acknowledged is delivered, once the retries come.
    sink.set_status(200);
    let delivered = all_delivered(&sink, &acknowledged).await;
    assert!(
        !delivered.contains(&refused),
        "a refused callback was not written"
    );

    // One outage in all, and one line when it started, one while it waited for room and
    // one when it ended.
    assert_eq!(
        metric(&s.metrics().await, "hookrelay_store_outages_total"),
        1,
        "no outage once space was freed"
    );
    let log = s.log();
    for line in [
        "writes are refused until a retry succeeds",
        "writes resume once more is free",
        "store writes work again",
    ] {
        assert_eq!(log.matches(line).count(), 1, "{line}\n{log}");
    }
    assert!(s.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_a_full_disk_does_not_wait_for_outcomes() {
    let volume = Tmpfs::mount("16m");
    let _ballast = ballast(&volume, "ballast", ROOM);
    let sink = Sink::start().await;
    sink.set_status(503);
    let mut s = Sidecar::start(&config(&volume.path().join("data"), &sink)).await;
    post_until_full(&s, "before").await;
    // Attempts keep failing and their outcomes are refused: wait for some of those.
    eventually("outcomes refused", || async {
        let m = s.metrics().await;
        (metric(&m, "hookrelay_store_refused_total") > 10).then_some(())
    })
    .await;
    let start = Instant::now();
    let exit = tokio::task::spawn_blocking(move || s.terminate())
        .await
        .expect("terminate");
    let took = start.elapsed();
    eprintln!("SIGTERM on a full disk: exited in {took:?}");
    assert!(exit.success());
    assert!(took < DEADLINE.min(Duration::from_secs(5)), "{took:?}");
}

/// `store.max_bytes` used up: callbacks are answered 503 with the reason, counted, and
/// the store is up (this is not an outage); once the endpoint answers again and the
/// queue drains, callbacks are acknowledged again, and every one acknowledged is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_up_store_budget_answers_503_until_deliveries_drain() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sink = Sink::start().await;
    sink.set_status(503);
    let yaml = config(&dir.path().join("data"), &sink).replace(
        "store: { kind: embedded, min_free: 0, path: ",
        "store: { kind: embedded, min_free: 0, max_bytes: 1MiB, path: ",
    );
    assert!(yaml.contains("max_bytes: 1MiB"), "{yaml}");
    let mut s = Sidecar::start(&yaml).await;

    let mut acknowledged = Vec::new();
    let body = loop {
        let wamid = format!("wamid.budget{}", acknowledged.len());
        match post(&s, &wamid).await {
            (200, _) => acknowledged.push(wamid),
            (503, body) => break body,
            (status, body) => panic!("{wamid}: {status} {body}"),
        }
        assert!(acknowledged.len() < 20_000, "the budget never bit");
    };
    assert!(body.contains("the store is full"), "{body}");
    // About a thousand records of the payload's size fit in 1 MiB.
    assert!(
        acknowledged.len() > 500,
        "{} acknowledged",
        acknowledged.len()
    );
    let m = s.metrics().await;
    assert!(metric(&m, "hookrelay_store_full_total") >= 1);
    assert_eq!(metric(&m, "hookrelay_store_max_bytes"), 1 << 20);
    assert_eq!(metric(&m, "hookrelay_store_up"), 1, "full is not an outage");
    assert!(
        m.contains("reason=\"store_full\""),
        "the rejection is counted by its reason"
    );
    assert_eq!(ready(&s).await, 200);

    // The endpoint answers again: the queue drains, and callbacks are taken again.
    sink.set_status(200);
    let (wamid, _) = post_until_taken(&s, DEADLINE, Duration::from_millis(50)).await;
    acknowledged.push(wamid);
    all_delivered(&sink, &acknowledged).await;
    assert!(s.terminate().success());
}

/// `store.min_free` reached: callbacks are answered 503 with the reason and counted, the
/// store stays up (no outage) and deliveries go on; once space is freed callbacks are taken
/// again, and every one acknowledged is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_min_free_callbacks_get_503_with_no_outage_until_space_is_freed() {
    let volume = Tmpfs::mount("16m");
    let sink = Sink::start().await;
    // `auto` on 16 MiB keeps 1 MiB free; 512 KiB is left next to the ballast.
    let yaml = config(&volume.path().join("data"), &sink).replace("min_free: 0", "min_free: auto");
    assert!(yaml.contains("min_free: auto"), "{yaml}");
    let mut s = Sidecar::start(&yaml).await;
    let (status, body) = post(&s, "wamid.first").await;
    assert_eq!(status, 200, "{body}");
    let mut acknowledged = vec!["wamid.first".to_owned()];
    let ballast = ballast(&volume, "ballast", ROOM);

    let body = loop {
        let wamid = format!("wamid.low{}", acknowledged.len());
        match post(&s, &wamid).await {
            (200, _) => acknowledged.push(wamid),
            (503, body) => break body,
            (status, body) => panic!("{wamid}: {status} {body}"),
        }
        assert!(acknowledged.len() < 20_000, "min_free never bit");
    };
    assert!(body.contains("nearly full"), "{body}");
    let m = s.metrics().await;
    assert!(metric(&m, "hookrelay_store_disk_low_total") >= 1);
    assert!(metric(&m, "hookrelay_store_disk_free_bytes") < 1 << 20);
    assert_eq!(metric(&m, "hookrelay_store_outages_total"), 0);
    assert_eq!(metric(&m, "hookrelay_store_up"), 1, "not an outage");
    assert!(m.contains("reason=\"store_full\""));
    assert_eq!(ready(&s).await, 200);
    // Deliveries went on meanwhile.
    all_delivered(&sink, &acknowledged).await;

    std::fs::remove_file(&ballast).expect("remove the ballast");
    let (wamid, _) = post_until_taken(&s, RECOVERS_WITHIN, Duration::from_millis(20)).await;
    acknowledged.push(wamid);
    all_delivered(&sink, &acknowledged).await;
    assert_eq!(
        metric(&s.metrics().await, "hookrelay_store_outages_total"),
        0
    );
    // One line when it started refusing, one when it stopped (written by the log's
    // thread, so waited for).
    let log = eventually("the log line of the end", || async {
        let log = s.log();
        log.contains("has room again").then_some(log)
    })
    .await;
    assert_eq!(
        log.matches("nearly full: callbacks answered 503").count(),
        1,
        "{log}"
    );
    assert_eq!(log.matches("has room again").count(), 1, "{log}");
    assert!(s.terminate().success());
}
