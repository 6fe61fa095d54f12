//! Provider events hookrelay cannot normalize, end to end: an event of a signed Meta batch
//! nested 100,000 deep, or holding a 100,000-digit number, is not forwarded (common JSON
//! parsers refuse it); it is kept as a dead letter of the reserved endpoint `:unparsed`,
//! counted, listed with the other dead letters and never replayed to an endpoint, while
//! the rest of its batch is delivered and the provider gets its 200.

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

    // Replaying an unparsed event to an endpoint is refused with the reason, by id and by
    // endpoint, and the letters stay.
    let id = letters[0]["id"].as_u64().expect("id");
    let (code, v) = s.admin("POST", &format!("/dead-letters/{id}/replay")).await;
    assert_eq!(code, 409, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains(":unparsed")),
        "{v}"
    );
    let (code, _) = s
        .admin("POST", "/dead-letters/replay?endpoint=:unparsed")
        .await;
    assert_eq!(code, 409);
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
