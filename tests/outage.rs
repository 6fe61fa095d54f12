//! An endpoint's outage and recovery: when it answers again, its queued retries are due at
//! once (still paced by its rate limit), not each after the rest of its backoff.

use std::collections::HashSet;

use hookrelay_tests::{Sidecar, Sink, eventually, meta_status};

const SECRET: &str = "meta-app-secret";

async fn post(s: &Sidecar, wamid: &str) -> u16 {
    let body = meta_status(wamid, "delivered", "15551234567");
    s.post_meta_signed("/wa", SECRET, body).await.0.as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_retries_are_due_as_soon_as_the_endpoint_answers_again() {
    let sink = Sink::start().await;
    sink.set_status(503);
    let config = format!(
        r#"
listen: "{{LISTEN}}"
admin: "{{ADMIN}}"
upstream: http://127.0.0.1:9
store: {{ kind: embedded, path: "{{DATA}}" }}
callbacks:
  - path: /wa
    provider: meta_whatsapp
    verify: {{ app_secret: {SECRET} }}
endpoints:
  - name: crm
    url: {}
    retry: {{ max_attempts: 10, backoff: [1h] }}
"#,
        sink.url("/hook")
    );
    let s = Sidecar::start(&config).await;
    for i in 0..5 {
        assert_eq!(post(&s, &format!("wamid.out{i}")).await, 200);
    }
    // Each failed once and now waits an hour.
    eventually("five retries scheduled", || async {
        let m = s.metrics().await;
        m.lines()
            .any(|l| {
                l.starts_with("hookrelay_deliveries_total")
                    && l.contains(r#"outcome="retried""#)
                    && l.ends_with(" 5")
            })
            .then_some(())
    })
    .await;
    // The endpoint is back; the next callback goes through, and with it the five.
    sink.set_status(200);
    assert_eq!(post(&s, "wamid.back").await, 200);
    let got = sink.wait_for(6).await;
    let ids: HashSet<String> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(
        ids.len(),
        6,
        "every event once, well before its hour of backoff"
    );
}
