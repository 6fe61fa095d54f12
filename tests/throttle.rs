//! A throttled endpoint receives its configured rate, never more than its burst, while an
//! endpoint without a limit is not slowed. Real time: this test runs about 25 s.

use std::time::Duration;

use hookrelay_tests::{Sidecar, Sink, meta_signature};

const SECRET: &str = "meta-app-secret";

fn statuses(from: usize, n: usize) -> String {
    let list: Vec<serde_json::Value> = (from..from + n)
        .map(|i| serde_json::json!({"id": format!("wamid.t{i}"), "status": "sent", "timestamp": "1700000000", "recipient_id": "15551230000"}))
        .collect();
    serde_json::json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages",
        "value": {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "1555", "phone_number_id": "1"}, "statuses": list}}]}]})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_endpoint_gets_its_rate_and_an_unlimited_one_is_not_slowed() {
    let slow = Sink::start().await;
    let fast = Sink::start().await;
    let config = format!(
        r#"
listen: "{{LISTEN}}"
admin: "{{ADMIN}}"
upstream: http://127.0.0.1:9
store: {{ kind: embedded, path: "{{DATA}}" }}
callbacks:
  - path: /cb/meta
    provider: meta_whatsapp
    verify: {{ app_secret: {SECRET} }}
endpoints:
  - name: throttled
    url: {slow}
    events: {{ whatsapp: [status] }}
    rate_limit: {{ per_second: 50, burst: 5 }}
  - name: unlimited
    url: {fast}
    events: {{ whatsapp: [status] }}
"#,
        slow = slow.url("/slow"),
        fast = fast.url("/fast"),
    );
    let s = Sidecar::start(&config).await;
    let total = 1200;
    for chunk in 0..total / 100 {
        let body = statuses(chunk * 100, 100);
        let sig = meta_signature(SECRET, body.as_bytes());
        let (st, _) = s
            .post(
                "/cb/meta",
                &[
                    ("content-type", "application/json"),
                    ("x-hub-signature-256", &sig),
                ],
                body,
            )
            .await;
        assert_eq!(st, 200);
    }
    let fast_got = fast.wait_for(total).await;
    let slow_so_far = slow.received().len();
    assert!(
        slow_so_far < total / 4,
        "the unlimited endpoint got all {total} while the throttled one had {slow_so_far}"
    );
    let fast_span = fast_got[total - 1].at - fast_got[0].at;
    assert!(
        fast_span < Duration::from_secs(10),
        "unlimited endpoint took {fast_span:?}"
    );

    // 20 s of steady state after the first second.
    let got = slow.wait_for(1100).await;
    let t0 = got[0].at;
    let window = |a: Duration, b: Duration| {
        got.iter()
            .filter(|r| r.at >= t0 + a && r.at < t0 + b)
            .count()
    };
    let steady = window(Duration::from_secs(1), Duration::from_secs(21));
    let rate = steady as f64 / 20.0;
    eprintln!("throttled: {rate}/s over 20 s; unlimited: {total} in {fast_span:?}");
    assert!(
        (rate - 50.0).abs() <= 1.0,
        "delivered {rate}/s over 20 s, configured 50/s"
    );
    // Never more than the burst early: any interval of length d holds at most
    // burst + d × rate deliveries (plus one for the boundary).
    for (i, r) in got.iter().enumerate() {
        for d in [Duration::from_millis(100), Duration::from_secs(1)] {
            let n = got[i..].iter().take_while(|x| x.at < r.at + d).count();
            let bound = 5 + (d.as_secs_f64() * 50.0) as usize + 1;
            assert!(
                n <= bound,
                "{n} deliveries within {d:?} after delivery {i} (bound {bound})"
            );
        }
    }
}
