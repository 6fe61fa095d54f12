//! Several sidecars sharing one Redis behave like one: one queue, one dedupe window, one
//! rate limit per endpoint; a killed replica's deliveries are taken over; a Redis restart
//! loses nothing acknowledged. Real processes, a real `redis-server`.

#[path = "../crates/hookrelay-store/tests/support/redis_server.rs"]
mod redis_server;

use std::collections::HashSet;
use std::time::Duration;

use hookrelay_tests::{Sidecar, Sink, eventually, mailgun_event, meta_signature};
use redis_server::RedisServer;

const SECRET: &str = "meta-app-secret";

fn config(redis: &str, sink: &Sink, extra: &str) -> String {
    format!(
        r#"
listen: "{{LISTEN}}"
admin: "{{ADMIN}}"
upstream: http://127.0.0.1:9
store: {{ kind: redis, url: "{redis}", visibility_timeout: 1s }}
callbacks:
  - path: /cb/meta
    provider: meta_whatsapp
    verify: {{ app_secret: {SECRET} }}
endpoints:
  - name: sink
    url: {url}
    events: {{ whatsapp: [status] }}
    retry: {{ max_attempts: 1000, backoff: [50ms, 100ms] }}
{extra}
"#,
        url = sink.url("/hook"),
    )
}

fn statuses(from: usize, n: usize) -> String {
    let list: Vec<serde_json::Value> = (from..from + n)
        .map(|i| serde_json::json!({"id": format!("wamid.r{i}"), "status": "delivered", "timestamp": "1700000000", "recipient_id": "15551230000"}))
        .collect();
    serde_json::json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages",
        "value": {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "1555", "phone_number_id": "1"}, "statuses": list}}]}]})
    .to_string()
}

async fn post(s: &Sidecar, body: &str) -> http::StatusCode {
    let sig = meta_signature(SECRET, body.as_bytes());
    s.post(
        "/cb/meta",
        &[
            ("content-type", "application/json"),
            ("x-hub-signature-256", &sig),
        ],
        body.to_owned(),
    )
    .await
    .0
}

async fn replicas(redis: &RedisServer, sink: &Sink, extra: &str) -> Vec<Sidecar> {
    let mut out = Vec::new();
    for _ in 0..3 {
        out.push(Sidecar::start(&config(&redis.url(), sink, extra)).await);
    }
    out
}

fn metric_sum(text: &str, prefix: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_deliver_every_callback_exactly_once() {
    let redis =
        RedisServer::start().expect("redis-server (install it: apt-get install redis-server)");
    let sink = Sink::start().await;
    let rs = replicas(&redis, &sink, "").await;
    let n = 60;
    for i in 0..n {
        let body = statuses(i, 1);
        // Each callback lands on one replica, and the provider's duplicate on another.
        assert_eq!(post(&rs[i % 3], &body).await, 200);
        assert_eq!(post(&rs[(i + 1) % 3], &body).await, 200);
    }
    sink.wait_for(n).await;
    // Every replica's queue is empty and the delivered count adds up: nothing else comes.
    eventually("all deliveries accounted for", || async {
        let mut delivered = 0;
        for r in &rs {
            let m = r.metrics().await;
            delivered += metric_sum(
                &m,
                "hookrelay_deliveries_total{endpoint=\"sink\",outcome=\"delivered\"}",
            );
            if !m.contains("hookrelay_queue_depth{endpoint=\"sink\"} 0") {
                return None;
            }
        }
        (delivered == n as u64).then_some(())
    })
    .await;
    let got = sink.received();
    let ids: HashSet<String> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!((got.len(), ids.len()), (n, n), "exactly once");
    let duplicates: u64 = {
        let mut d = 0;
        for r in &rs {
            d += metric_sum(
                &r.metrics().await,
                "hookrelay_events_total{provider=\"meta_whatsapp\",outcome=\"duplicate\"}",
            );
        }
        d
    };
    assert_eq!(
        duplicates, n as u64,
        "every second copy was recognised across replicas"
    );
    // The embedded store's figures are not shown as zeros on Redis.
    let m = rs[0].metrics().await;
    assert!(m.contains("hookrelay_store_up 1"), "{m}");
    for family in [
        "hookrelay_store_used",
        "hookrelay_store_max",
        "hookrelay_store_full",
        "hookrelay_store_disk",
        "hookrelay_store_dedupe_keys",
        "hookrelay_store_refused",
        "hookrelay_store_outages",
        "hookrelay_history_bytes",
    ] {
        assert!(!m.contains(family), "{family} on Redis: {m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replicas_deliveries_are_taken_over() {
    let redis =
        RedisServer::start().expect("redis-server (install it: apt-get install redis-server)");
    let sink = Sink::start().await;
    sink.set_delay_ms(1500);
    let mut rs = replicas(&redis, &sink, "").await;
    let n = 30;
    for i in 0..n {
        assert_eq!(post(&rs[i % 3], &statuses(i, 1)).await, 200);
    }
    eventually("attempts in flight on the first replica", || async {
        let m = rs[0].metrics().await;
        (metric_sum(&m, "hookrelay_deliveries_in_flight") > 0).then_some(())
    })
    .await;
    rs[0].kill9();
    sink.set_delay_ms(0);
    let got = eventually("every callback delivered", || async {
        let got = sink.received();
        let ids: HashSet<String> = got.iter().map(|r| r.header("webhook-id")).collect();
        (ids.len() == n).then_some(got)
    })
    .await;
    let unique: HashSet<String> = got.iter().map(|r| r.header("webhook-id")).collect();
    eprintln!(
        "{} deliveries for {n} callbacks ({} duplicates, same webhook-id)",
        got.len(),
        got.len() - unique.len()
    );
    assert!(got.len() >= n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_one_rate_limit() {
    let redis =
        RedisServer::start().expect("redis-server (install it: apt-get install redis-server)");
    let sink = Sink::start().await;
    let cfg = config(&redis.url(), &sink, "").replace(
        "    retry: { max_attempts: 1000, backoff: [50ms, 100ms] }",
        "    retry: { max_attempts: 1000, backoff: [50ms, 100ms] }\n    rate_limit: { per_second: 30, burst: 3 }",
    );
    let mut rs = Vec::new();
    for _ in 0..3 {
        rs.push(Sidecar::start(&cfg).await);
    }
    for (k, r) in rs.iter().enumerate() {
        assert_eq!(post(r, &statuses(k * 200, 200)).await, 200);
    }
    let got = sink.wait_for(360).await;
    let t0 = got[0].at;
    let steady = got
        .iter()
        .filter(|r| r.at >= t0 + Duration::from_secs(1) && r.at < t0 + Duration::from_secs(11))
        .count();
    let rate = steady as f64 / 10.0;
    eprintln!("three replicas together: {rate}/s (limit 30/s)");
    assert!(
        (rate - 30.0).abs() <= 0.9,
        "{rate}/s delivered by three replicas, limit 30/s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_loses_nothing_acknowledged() {
    let mut redis =
        RedisServer::start().expect("redis-server (install it: apt-get install redis-server)");
    let sink = Sink::start().await;
    sink.set_status(503);
    let rs = replicas(&redis, &sink, "").await;
    let n = 30;
    for i in 0..n {
        assert_eq!(post(&rs[i % 3], &statuses(i, 1)).await, 200);
    }
    redis.kill().expect("kill redis");
    // Without Redis nothing is acknowledged: the provider is told to retry.
    assert_eq!(post(&rs[0], &statuses(1000, 1)).await, 503);
    // The metrics say the store is down and show no made-up queue figures.
    let down = rs[0].metrics().await;
    assert!(down.contains("hookrelay_store_up 0"), "{down}");
    for family in ["hookrelay_queue_depth{", "hookrelay_dead_letters{"] {
        assert!(
            !down.contains(family),
            "{family} shown while Redis is down: {down}"
        );
    }
    redis.restart().expect("restart redis");
    sink.set_status(200);

    let got = eventually("every acknowledged callback delivered", || async {
        let got = sink.received();
        let ids: HashSet<String> = got.iter().map(|r| r.header("webhook-id")).collect();
        (ids.len() >= n).then_some(ids)
    })
    .await;
    assert_eq!(got.len(), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailgun_token_used_on_one_replica_is_refused_on_another() {
    let redis =
        RedisServer::start().expect("redis-server (install it: apt-get install redis-server)");
    let sink = Sink::start().await;
    let yaml = config(&redis.url(), &sink, "").replace(
        "callbacks:\n",
        "callbacks:\n  - path: /cb/mailgun\n    provider: mailgun\n    verify: { signing_key: mg-key }\n",
    );
    let (a, b) = (Sidecar::start(&yaml).await, Sidecar::start(&yaml).await);
    let ct = [("content-type", "application/json")];
    let first = a
        .post("/cb/mailgun", &ct, mailgun_event("mg-key", "tok-1", "ev-1"))
        .await;
    assert_eq!(first.0, 200);
    // The captured signature block on a forged event, sent to the other replica.
    let (status, reason) = b
        .post("/cb/mailgun", &ct, mailgun_event("mg-key", "tok-1", "ev-2"))
        .await;
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&reason));
    assert_eq!(
        b.post("/cb/mailgun", &ct, mailgun_event("mg-key", "tok-2", "ev-3"))
            .await
            .0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_removed_while_redis_is_down_becomes_dead_letters_once_it_is_back() {
    let mut redis =
        RedisServer::start().expect("redis-server (install it: apt-get install redis-server)");
    let (sink, down) = (Sink::start().await, Sink::start().await);
    down.set_status(503);
    let gone = format!(
        "  - name: gone\n    url: {}\n    events: {{ whatsapp: [status] }}\n    retry: {{ max_attempts: 1000, backoff: [50ms, 100ms] }}\n",
        down.url("/hook")
    );
    let s = Sidecar::start(&config(&redis.url(), &sink, &gone)).await;
    let n = 5;
    for i in 0..n {
        assert_eq!(post(&s, &statuses(i, 1)).await, 200);
    }
    sink.wait_for(n).await;
    redis.kill().expect("kill redis");
    // `gone` is removed while its queue cannot be dead-lettered.
    s.rewrite(&config(&redis.url(), &sink, ""));
    eventually("the failed dead-lettering logged", || async {
        s.log()
            .contains("cannot dead-letter a removed endpoint's queue; trying again")
            .then_some(())
    })
    .await;
    redis.restart().expect("restart redis");
    // Its deliveries become dead letters without another reload or restart.
    let letters = eventually("the removed endpoint's queue dead-lettered", || async {
        let (status, v) = s.admin("GET", "/dead-letters?endpoint=gone").await;
        let letters = v.as_array().cloned().unwrap_or_default();
        (status == 200 && letters.len() == n).then_some(letters)
    })
    .await;
    for letter in letters {
        assert_eq!(letter["reason"], "endpoint removed", "{letter}");
    }
    assert!(s.log().contains("endpoint removed"), "{}", s.log());
}
