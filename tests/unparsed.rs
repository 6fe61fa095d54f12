//! Provider events hookrelay cannot normalize, end to end: an event of a signed Meta batch
//! nested 100,000 deep, or holding a 100,000-digit number, is not forwarded (common JSON
//! parsers refuse it); it is kept as a dead letter of the reserved endpoint `:unparsed`,
//! counted and listed with the other dead letters, while the rest of its batch is
//! delivered and the provider gets its 200. Replaying one runs it through its route's
//! current normalizer: once that takes it (here, a generic provider's mapping extended by
//! a reload), it is delivered and its dead letter is gone.

use hookrelay_tests::{Sidecar, Sink, binary, eventually};

const SECRET: &str = "meta-app-secret";

fn config(sink: &Sink) -> String {
    format!(
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
    url: {url}
"#,
        url = sink.url("/hook")
    )
}

/// A Meta callback with these statuses (JSON texts) in one change.
fn statuses(items: &[&str]) -> String {
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550001111","phone_number_id":"42"}},"statuses":[{}]}}}}]}}]}}"#,
        items.join(",")
    )
}

fn status(wamid: &str, extra: &str) -> String {
    format!(
        r#"{{"id":"{wamid}","status":"delivered","timestamp":"1700000000","recipient_id":"15551234567"{extra}}}"#
    )
}

/// The value of a counter series in the metrics text, 0 when absent.
async fn counter(s: &Sidecar, series: &str) -> u64 {
    s.metrics()
        .await
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

const UNPARSED_TOTAL: &str = r#"hookrelay_unparsed_events_total{provider="meta_whatsapp"}"#;

#[tokio::test]
async fn events_beyond_the_json_limits_become_unparsed_dead_letters_and_the_rest_is_delivered() {
    let sink = Sink::start().await;
    let s = Sidecar::start(&config(&sink)).await;

    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let digits = "9".repeat(100_000);
    let good = status("wamid.GOOD", "");
    let too_deep = status("wamid.DEEP", &format!(r#","pricing":{deep}"#));
    let too_long = status(
        "wamid.LONG",
        &format!(r#","pricing":{{"billable":{digits}}}"#),
    );
    let body = statuses(&[&good, &too_deep, &too_long]);

    let (code, answer) = s.post_meta_signed("/wa", SECRET, body.clone()).await;
    assert_eq!(code, 200, "{answer:?}");
    // Before the limits: {"accepted":3,"enqueued":3}, all three forwarded.
    assert_eq!(
        String::from_utf8_lossy(&answer),
        r#"{"accepted":1,"enqueued":1}"#
    );

    // The good status is delivered.
    let got = sink.wait_for(1).await;
    assert_eq!(got[0].json()["reference"]["vendor_ack_id"], "wamid.GOOD");

    // The other two are dead letters of `:unparsed`, durable before the 200 (listed at
    // once), with the reason and the event as sent, as a string.
    let (code, letters) = s.admin("GET", "/dead-letters?endpoint=:unparsed").await;
    assert_eq!(code, 200);
    let letters = letters.as_array().expect("a list").clone();
    assert_eq!(letters.len(), 2, "{letters:?}");
    for (letter, raw, why) in [
        (&letters[0], &too_deep, "nested deeper than 64 levels"),
        (
            &letters[1],
            &too_long,
            "a number longer than 100 characters",
        ),
    ] {
        assert_eq!(letter["endpoint"], ":unparsed");
        let reason = letter["reason"].as_str().expect("reason");
        assert!(
            reason.starts_with("unparsed: /entry/0/changes/0/value/statuses/")
                && reason.contains(why),
            "{reason}"
        );
        let payload = &letter["payload"];
        assert_eq!(payload["provider"], "meta_whatsapp");
        assert_eq!(payload["route"], "/wa");
        assert!(
            payload["received_at"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
        assert_eq!(payload["event"].as_str(), Some(raw.as_str()));
    }
    // Also in the list of every dead letter.
    let (_, all) = s.admin("GET", "/dead-letters").await;
    assert_eq!(all.as_array().map(Vec::len), Some(2));
    assert_eq!(counter(&s, UNPARSED_TOTAL).await, 2);

    // Meta retries the same batch: answered, nothing written twice.
    let (code, _) = s.post_meta_signed("/wa", SECRET, body).await;
    assert_eq!(code, 200);
    let (_, again) = s.admin("GET", "/dead-letters?endpoint=:unparsed").await;
    assert_eq!(again.as_array().map(Vec::len), Some(2));
    let duplicates = r#"hookrelay_events_total{provider="meta_whatsapp",outcome="duplicate"}"#;
    assert_eq!(counter(&s, duplicates).await, 1);

    // A batch in which every event is unparsed is still answered 200.
    let only_bad = statuses(&[&status("wamid.DEEP2", &format!(r#","x":{deep}"#))]);
    let (code, answer) = s.post_meta_signed("/wa", SECRET, only_bad).await;
    assert_eq!(code, 200);
    assert_eq!(
        String::from_utf8_lossy(&answer),
        r#"{"accepted":0,"enqueued":0}"#
    );
    assert_eq!(counter(&s, UNPARSED_TOTAL).await, 5);

    // A body that is deeply nested at the top, not Meta's envelope, is refused as before.
    let (code, _) = s.post_meta_signed("/wa", SECRET, deep.clone()).await;
    assert_eq!(code, 400);

    // Replaying runs them through the normalizer again, which still cannot take them: a
    // 409 with the reason by id, a count by endpoint, and the letters stay.
    let id = letters[0]["id"].as_u64().expect("id");
    let (code, v) = s.admin("POST", &format!("/dead-letters/{id}/replay")).await;
    assert_eq!(code, 409, "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("still not normalized")),
        "{v}"
    );
    let (code, v) = s
        .admin("POST", "/dead-letters/replay?endpoint=:unparsed")
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (v["replayed"].as_u64(), v["still_unparsed"].as_u64()),
        (Some(0), Some(3)),
        "{v}"
    );
    let (_, kept) = s.admin("GET", "/dead-letters?endpoint=:unparsed").await;
    assert_eq!(kept.as_array().map(Vec::len), Some(3));

    // The command line lists them and refuses the replay too.
    let admin = s.admin.to_string();
    let cli = |args: &[&str]| {
        std::process::Command::new(binary())
            .args(["dead-letters", "--admin", &admin])
            .args(args)
            .output()
            .expect("run hookrelay dead-letters")
    };
    let list = cli(&["list", "--endpoint", ":unparsed"]);
    assert!(list.status.success());
    assert_eq!(String::from_utf8_lossy(&list.stdout).lines().count(), 3);
    let replay = cli(&["replay", &id.to_string()]);
    assert!(!replay.status.success());
    assert!(String::from_utf8_lossy(&replay.stderr).contains("409"));

    // Nothing of the unparsed events ever reached the endpoint: after a later status is
    // delivered, the sink holds the good one and that one only.
    let later = statuses(&[&status("wamid.LATER", "")]);
    assert_eq!(s.post_meta_signed("/wa", SECRET, later).await.0, 200);
    let got = eventually("the later status", || async {
        let got = sink.received();
        got.iter()
            .any(|r| r.json()["reference"]["vendor_ack_id"] == "wamid.LATER")
            .then_some(got)
    })
    .await;
    let ids: Vec<String> = got
        .iter()
        .map(|r| r.json()["reference"]["vendor_ack_id"].to_string())
        .collect();
    assert_eq!(ids, [r#""wamid.GOOD""#, r#""wamid.LATER""#]);
}

/// A generic provider whose channel map lacks `WA`: such an event cannot be normalized.
fn generic_config(sink: &Sink, channels: &str) -> String {
    format!(
        r#"
listen: "{{LISTEN}}"
admin: "{{ADMIN}}"
upstream: http://127.0.0.1:9
store: {{ kind: embedded, path: "{{DATA}}" }}
callbacks:
  - path: /acme
    provider: acme
    verify: none
    generic:
      channel: {{ pointer: /kind, map: {{ {channels} }} }}
      events: /results
      fields: {{ channel_value: /to, status: /status, vendor_ack_id: /id, event_id: /id }}
      status_map: {{ DELIVRD: delivered }}
endpoints:
  - name: crm
    url: {url}
"#,
        url = sink.url("/hook")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unparsed_event_is_delivered_by_a_replay_once_the_normalizer_takes_it() {
    let sink = Sink::start().await;
    let mut s = Sidecar::start(&generic_config(&sink, "SMS: sms")).await;
    let body = r#"{"results":[{"id":"m1","kind":"SMS","to":"+15550001","status":"DELIVRD"},{"id":"m2","kind":"WA","to":"+15550002","status":"DELIVRD"}]}"#;
    let ct = [("content-type", "application/json")];
    let (code, _) = s.post("/acme", &ct, body).await;
    assert_eq!(code, 200, "the provider gets its 2xx");
    // The good event is delivered; the other is a dead letter with its raw JSON.
    let got = sink.wait_for(1).await;
    assert_eq!(got[0].json()["reference"]["vendor_ack_id"], "m1");
    let (_, letters) = s.admin("GET", "/dead-letters?endpoint=:unparsed").await;
    let letters = letters.as_array().expect("list").clone();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let id = letters[0]["id"].as_u64().expect("id");
    assert!(
        letters[0]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("unparsed: "))
    );
    let payload = &letters[0]["payload"];
    let raw = payload["event"].as_str().unwrap_or_default();
    assert!(
        raw.contains(r#""id":"m2""#),
        "the raw event is kept: {payload}"
    );
    assert_eq!(payload["provider"], "acme");
    // Not yet: the same normalizer still refuses it, and the letter stays.
    let (code, v) = s.admin("POST", &format!("/dead-letters/{id}/replay")).await;
    assert_eq!(code, 409, "{v}");
    // The mapping learns WA; a replay now delivers it, and the letter is gone.
    s.rewrite(&generic_config(&sink, "SMS: sms, WA: whatsapp"));
    eventually("the reload", || async {
        let (code, v) = s.admin("POST", &format!("/dead-letters/{id}/replay")).await;
        (code == 200).then_some(v)
    })
    .await;
    let got = sink.wait_for(2).await;
    let second = got[1].json();
    assert_eq!(second["reference"]["vendor_ack_id"], "m2");
    assert_eq!(second["channel"], "whatsapp");
    let (_, left) = s.admin("GET", "/dead-letters?endpoint=:unparsed").await;
    assert_eq!(left.as_array().map(Vec::len), Some(0));
    // A second replay of the same id finds nothing; a provider retry of the batch writes
    // nothing new (both events were seen).
    let (code, _) = s.admin("POST", &format!("/dead-letters/{id}/replay")).await;
    assert_eq!(code, 404);
    assert_eq!(s.post("/acme", &ct, body).await.0, 200);
    assert_eq!(
        counter(
            &s,
            r#"hookrelay_events_total{provider="acme",outcome="duplicate"}"#
        )
        .await,
        2,
        "both events of the retried batch are duplicates"
    );
    assert_eq!(
        counter(&s, r#"hookrelay_unparsed_events_total{provider="acme"}"#).await,
        1,
        "and nothing is kept unparsed again"
    );
    // Both deliveries are recorded done (the queue is empty) before the kill: a done
    // delivery is written at once, so the restart does not deliver it again.
    eventually("both outcomes recorded", || async {
        (counter(&s, r#"hookrelay_queue_depth{endpoint="crm"}"#).await == 0).then_some(())
    })
    .await;
    s.kill9();
    s.spawn().await;
    let (_, left) = s.admin("GET", "/dead-letters?endpoint=:unparsed").await;
    assert_eq!(
        left.as_array().map(Vec::len),
        Some(0),
        "the removal is durable"
    );
    assert_eq!(sink.received().len(), 2);
}
