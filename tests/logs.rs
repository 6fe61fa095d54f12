//! What the log says, as an operator reads it: a line per accepted callback and per
//! delivery, the config's warnings at start, no colour codes in a file, flat JSON.

use hookrelay_tests::{Sidecar, Sink, eventually, meta_status};

const META_SECRET: &str = "meta-app-secret";

fn config(sink: &Sink) -> String {
    format!(
        r#"
listen: "{{LISTEN}}"
admin: "{{ADMIN}}"
upstream: http://127.0.0.1:9
store: {{ kind: embedded, path: "{{DATA}}" }}
callbacks:
  - path: /cb/meta
    provider: meta_whatsapp
    verify: {{ app_secret: {META_SECRET}, verify_token: vt }}
  - path: /cb/open
    provider: meta_whatsapp
    verify: none
endpoints:
  - name: crm
    url: {}
"#,
        sink.url("/crm")
    )
}

async fn one_delivery(sidecar: &Sidecar, sink: &Sink, wamid: &str) {
    let body = meta_status(wamid, "delivered", "15550001111");
    let (status, _) = sidecar
        .post_meta_signed("/cb/meta", META_SECRET, body)
        .await;
    assert_eq!(status, 200);
    sink.wait_for(1).await;
}

#[tokio::test]
async fn text_logs_say_what_was_accepted_and_delivered_without_colour_codes() {
    let sink = Sink::start().await;
    let sidecar = Sidecar::start(&config(&sink)).await;
    one_delivery(&sidecar, &sink, "wamid.LOG1").await;
    let log = eventually("the delivery's line", || async {
        let log = sidecar.log();
        log.contains("delivered").then_some(log)
    })
    .await;
    assert!(!log.contains('\u{1b}'), "colour codes in a file:\n{log}");
    let accepted = log
        .lines()
        .find(|l| l.contains("hookrelay::events: callback accepted "))
        .unwrap_or_else(|| panic!("no accepted line:\n{log}"));
    for field in [
        "route=/cb/meta",
        "provider=\"meta_whatsapp\"",
        "events=1",
        "deliveries=1",
    ] {
        assert!(accepted.contains(field), "{field} in {accepted}");
    }
    let delivered = log
        .lines()
        .find(|l| l.contains("hookrelay::events: delivered "))
        .unwrap_or_else(|| panic!("no delivered line:\n{log}"));
    for field in ["endpoint=crm", "status=200", "attempts=1", "webhook_id="] {
        assert!(delivered.contains(field), "{field} in {delivered}");
    }
    // The config's warning (an unverified route) is said at start, as `validate` does.
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("callbacks[1]") && l.contains("verify")),
        "{log}"
    );
}

#[tokio::test]
async fn json_logs_are_flat_and_event_lines_can_be_silenced() {
    let sink = Sink::start().await;
    let sidecar = Sidecar::start_with(
        &[],
        &["--log-format", "json", "--event-logs", "0"],
        &config(&sink),
    )
    .await;
    one_delivery(&sidecar, &sink, "wamid.LOG2").await;
    // The outcome is recorded after the sink answered: wait for the metric.
    eventually("the outcome", || async {
        sidecar
            .metrics()
            .await
            .contains("hookrelay_deliveries_total{endpoint=\"crm\",outcome=\"delivered\"} 1")
            .then_some(())
    })
    .await;
    let log = sidecar.log();
    let mut lines = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: not JSON: {line}"));
        assert!(v.get("fields").is_none(), "nested fields: {line}");
        assert!(v["message"].is_string() && v["level"].is_string(), "{line}");
        lines += 1;
    }
    assert!(lines > 0, "no log lines");
    // Flat: the fields of the start line sit next to its message.
    assert!(
        log.lines()
            .any(|l| l.contains("\"message\":\"hookrelay running\"") && l.contains("\"listen\":")),
        "{log}"
    );
    assert!(!log.contains("callback accepted"), "{log}");
    assert!(!log.contains("\"message\":\"delivered\""), "{log}");
}
