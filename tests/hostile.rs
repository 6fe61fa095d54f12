//! What an attacker can make the sidecar do without one valid signature: here, write log
//! lines. Refused callbacks and connections dropped mid-request are each logged at most a
//! burst and then a steady trickle per call site; every refusal is still counted.

use std::time::Instant;

use hookrelay_tests::{Sidecar, Sink};
use tokio::io::AsyncWriteExt;

const CONFIG: &str = r#"
listen: "{LISTEN}"
admin: "{ADMIN}"
upstream: http://127.0.0.1:9
store: { kind: embedded, path: "{DATA}" }
callbacks:
  - path: /wa
    provider: meta_whatsapp
    verify: { app_secret: the-real-secret }
endpoints:
  - name: crm
    url: SINK
"#;

/// The default limit of `hookrelay run`: 20 lines at once, then 1 a second, per call site.
fn allowed(elapsed_secs: f64) -> usize {
    20 + elapsed_secs.ceil() as usize + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_callbacks_and_dropped_connections_do_not_flood_the_log() {
    let sink = Sink::start().await;
    let s = Sidecar::start(&CONFIG.replace("SINK", &sink.url("/hook"))).await;
    let started = Instant::now();

    let body = r#"{"object":"whatsapp_business_account","entry":[]}"#;
    for _ in 0..300 {
        let (status, _) = s
            .post(
                "/wa",
                &[
                    ("content-type", "application/json"),
                    ("x-hub-signature-256", "sha256=00"),
                ],
                body,
            )
            .await;
        assert_eq!(status, 401);
    }
    // Connections that send half a request and go away.
    for _ in 0..300 {
        let mut c = tokio::net::TcpStream::connect(s.listen)
            .await
            .expect("connect");
        c.write_all(b"POST /wa HTTP/1.1\r\nHost: x\r\nContent-Le")
            .await
            .expect("write");
        drop(c);
    }
    // Every refusal is counted, whatever the log shows.
    let metrics = hookrelay_tests::eventually("the refusals counted", || async {
        let m = s.metrics().await;
        m.contains(r#"hookrelay_callbacks_rejected_total{provider="meta_whatsapp",reason="bad_signature"} 300"#)
            .then_some(m)
    })
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let log = s.log();
    let refused = log.matches("callback refused").count();
    assert!(
        (1..=allowed(elapsed)).contains(&refused),
        "{refused} refusal lines in {elapsed:.1} s"
    );
    let dropped = log.lines().filter(|l| l.contains("Fail to proxy")).count();
    assert!(
        dropped <= allowed(elapsed),
        "{dropped} lines for dropped connections"
    );
    let suppressed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("hookrelay_log_lines_suppressed_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the suppressed-lines counter");
    assert!(
        suppressed as usize >= 300 - allowed(elapsed),
        "{suppressed} lines suppressed"
    );
}
