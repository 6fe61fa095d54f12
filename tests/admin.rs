//! The admin API as operators and Kubernetes use it: the token, readiness that tells the
//! truth, dead letters replayed, refused and deleted, the CLI against it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookrelay_tests::{
    Sidecar, Sink, binary, eventually, free_port, meta_status, send, signed_with,
};
use http::{Request, StatusCode};
use http_body_util::Full;

const META_SECRET: &str = "meta-app-secret";
const TOKEN: &str = "admin-token-0123456789";

fn config(sink: &Sink, endpoints: bool) -> String {
    let endpoints = if endpoints {
        format!(
            "endpoints:\n  - name: crm\n    url: {}\n    description: the CRM\n    \
             statuses: [delivered, seen]\n    rate_limit: {{ per_second: 50 }}\n",
            sink.url("/crm")
        )
    } else {
        "endpoints: []\n".to_owned()
    };
    format!(
        r#"
listen: "{{LISTEN}}"
admin: {{ listen: "{{ADMIN}}", token: "{TOKEN}" }}
upstream: http://127.0.0.1:9
store: {{ kind: embedded, path: "{{DATA}}" }}
callbacks:
  - path: /cb/meta
    provider: meta_whatsapp
    verify: {{ app_secret: {META_SECRET}, verify_token: vt }}
{endpoints}"#
    )
}

/// One admin request with an optional bearer token: status, `www-authenticate`, JSON body.
async fn admin(
    sidecar: &Sidecar,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, Option<String>, serde_json::Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", sidecar.admin));
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let (status, headers, body) = send(req.body(Full::new(Bytes::new())).expect("request")).await;
    let challenge = headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()));
    (status, challenge, body)
}

/// Runs the CLI with `args`: exit code, stdout, stderr.
fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary())
        .args(args)
        .env_remove("HOOKRELAY_ADMIN_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("run the CLI");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn dead_letter(sidecar: &Sidecar, sink: &Sink) -> u64 {
    // The sink refuses with 400: a dead letter at the first attempt.
    sink.set_status(400);
    let body = meta_status("wamid.ADMIN1", "delivered", "15550001111");
    let (status, _) = sidecar
        .post_meta_signed("/cb/meta", META_SECRET, body)
        .await;
    assert_eq!(status, 200);
    eventually("the dead letter", || async {
        let (status, _, list) = admin(sidecar, "GET", "/dead-letters", Some(TOKEN)).await;
        assert_eq!(status, 200);
        list.as_array()?.first()?["id"].as_u64()
    })
    .await
}

#[tokio::test]
async fn the_token_guards_everything_but_probes_and_metrics() {
    let sink = Sink::start().await;
    let sidecar = Sidecar::start(&config(&sink, true)).await;

    for path in ["/healthz", "/readyz", "/metrics"] {
        let (status, _, _) = admin(&sidecar, "GET", path, None).await;
        assert_eq!(status, 200, "{path} without a token");
    }
    for (method, path) in [
        ("GET", "/dead-letters"),
        ("GET", "/endpoints"),
        ("POST", "/-/reload"),
        ("POST", "/dead-letters/1/replay"),
        ("DELETE", "/dead-letters/1"),
        ("POST", "/endpoints/crm/resume"),
    ] {
        let (status, challenge, body) = admin(&sidecar, method, path, None).await;
        assert_eq!(status, 401, "{method} {path} without a token: {body}");
        assert_eq!(challenge.as_deref(), Some("Bearer"));
        let (status, _, _) = admin(&sidecar, method, path, Some("wrong-token-0123456789")).await;
        assert_eq!(status, 401, "{method} {path} with a wrong token");
    }
    let (status, _, list) = admin(&sidecar, "GET", "/dead-letters", Some(TOKEN)).await;
    assert_eq!((status, list), (StatusCode::OK, serde_json::json!([])));
    let (status, _, body) = admin(&sidecar, "POST", "/-/reload", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");

    // Unknown paths and wrong methods say so.
    let (status, _, _) = admin(&sidecar, "GET", "/no-such-path", Some(TOKEN)).await;
    assert_eq!(status, 404);
    let (status, _, _) = admin(&sidecar, "GET", "/-/reload", Some(TOKEN)).await;
    assert_eq!(status, 405);
    let (status, _, _) = admin(&sidecar, "DELETE", "/metrics", None).await;
    assert_eq!(status, 405);

    // Each refusal is counted.
    assert!(
        sidecar
            .metrics()
            .await
            .contains("hookrelay_admin_unauthorized_total 12"),
        "{}",
        sidecar.metrics().await
    );

    // The endpoints with their settings and state.
    let (status, _, list) = admin(&sidecar, "GET", "/endpoints", Some(TOKEN)).await;
    assert_eq!(status, 200);
    let crm = &list[0];
    assert_eq!(crm["name"], "crm");
    assert_eq!(crm["url"], sink.url("/crm"));
    assert_eq!(crm["description"], "the CRM");
    assert_eq!(crm["statuses"], serde_json::json!(["delivered", "seen"]));
    assert_eq!(crm["rate_limit"]["per_second"], 50);
    assert_eq!(crm["paused"], false);
    assert_eq!(crm["queue_depth"], 0);
    assert!(crm["last_success_ms"].is_null());

    // The CLI takes the token from the configuration, or from --token.
    let config = sidecar.config.display().to_string();
    let (code, out, err) = cli(&["dead-letters", "-c", &config, "list"]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    let (code, _, err) = cli(&[
        "dead-letters",
        "-c",
        &config,
        "--token",
        "wrong-token-0123456789",
        "list",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("401"), "{err}");
}

#[tokio::test]
async fn a_dead_letter_of_a_removed_endpoint_is_not_replayed_and_can_be_deleted() {
    let sink = Sink::start().await;
    let sidecar = Sidecar::start(&config(&sink, true)).await;
    let id = dead_letter(&sidecar, &sink).await;

    // The one attempt made counts.
    let (_, _, list) = admin(&sidecar, "GET", "/dead-letters", Some(TOKEN)).await;
    assert_eq!(list[0]["attempts"], 1, "{list}");
    // The endpoint's last error shows.
    let (_, _, list) = admin(&sidecar, "GET", "/endpoints", Some(TOKEN)).await;
    assert!(
        list[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("400")),
        "{list}"
    );

    // The endpoint is removed from the file: its dead letters stay, but replaying them
    // would queue them where nothing delivers.
    sidecar.rewrite(&config(&sink, false));
    eventually("the reload without crm", || async {
        let (_, _, list) = admin(&sidecar, "GET", "/endpoints", Some(TOKEN)).await;
        (list == serde_json::json!([])).then_some(())
    })
    .await;
    let (status, _, body) = admin(
        &sidecar,
        "POST",
        &format!("/dead-letters/{id}/replay"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("no longer configured")),
        "{body}"
    );
    let (status, _, body) = admin(
        &sidecar,
        "POST",
        "/dead-letters/replay?endpoint=crm",
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let (_, _, list) = admin(&sidecar, "GET", "/dead-letters", Some(TOKEN)).await;
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(1),
        "still a dead letter"
    );

    // Deleted through the CLI, then gone.
    let config = sidecar.config.display().to_string();
    let (code, out, err) = cli(&["dead-letters", "-c", &config, "delete", &id.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"deleted\":1"), "{out}");
    let (status, _, _) = admin(
        &sidecar,
        "DELETE",
        &format!("/dead-letters/{id}"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 404);
    let (_, _, list) = admin(&sidecar, "GET", "/dead-letters", Some(TOKEN)).await;
    assert_eq!(list, serde_json::json!([]));
    let (status, _, _) = admin(&sidecar, "DELETE", "/dead-letters/x", Some(TOKEN)).await;
    assert_eq!(status, 400);
}

// Multi-threaded: the sink answers while the test waits for the process to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_draining_after_sigterm() {
    let sink = Sink::start().await;
    // The delivery in flight holds the drain open for two seconds.
    sink.set_delay_ms(2_000);
    let mut sidecar = Sidecar::start(&config(&sink, true)).await;
    let body = meta_status("wamid.DRAIN1", "delivered", "15550001111");
    let (status, _) = sidecar
        .post_meta_signed("/cb/meta", META_SECRET, body)
        .await;
    assert_eq!(status, 200);
    eventually("the attempt in flight", || async {
        sidecar
            .metrics()
            .await
            .contains("hookrelay_deliveries_in_flight 1")
            .then_some(())
    })
    .await;
    let child = sidecar.child.as_ref().expect("running");
    let pid = child.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    eventually("readyz 503", || async {
        let (status, _, body) = admin(&sidecar, "GET", "/readyz", None).await;
        (status == 503 && body.as_str().is_some_and(|b| b.contains("draining"))).then_some(())
    })
    .await;
    let status = sidecar.child.take().expect("running").wait().expect("wait");
    assert!(status.success(), "{status}");
    assert_eq!(sink.received().len(), 1, "the attempt in flight finished");
}

#[tokio::test]
async fn a_taken_public_port_stops_run_with_the_reason() {
    let taken = std::net::TcpListener::bind(("127.0.0.1", free_port())).expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("hookrelay.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\nadmin: 127.0.0.1:{}\nupstream: http://127.0.0.1:9\n\
             store: {{ kind: embedded, path: \"{}\" }}\n",
            free_port(),
            dir.path().join("data").display()
        ),
    )
    .expect("write");
    let started = Instant::now();
    let mut child = Command::new(binary())
        .args(["run", "-c"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "run did not exit while its port was taken"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("read");
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")) && err.contains("in use"),
        "{err}"
    );
    drop(taken);
}

/// The value of the sample `name` (labels as rendered) in `metrics`.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn metrics_pass_promtool_and_count_one_delivery_once() {
    let sink = Sink::start().await;
    let sidecar = Sidecar::start(&config(&sink, true)).await;
    let crm = |outcome: &str| {
        format!("hookrelay_deliveries_total{{endpoint=\"crm\",outcome=\"{outcome}\"}}")
    };

    // Every configured endpoint and provider has its series before its first event.
    let before = sidecar.metrics().await;
    for outcome in ["delivered", "retried", "dead_lettered", "paused"] {
        assert_eq!(
            sample(&before, &crm(outcome)),
            Some(0.0),
            "{outcome}: {before}"
        );
    }
    assert_eq!(
        sample(
            &before,
            "hookrelay_callbacks_received_total{provider=\"meta_whatsapp\"}"
        ),
        Some(0.0)
    );
    assert_eq!(sample(&before, "hookrelay_config_file_matches"), Some(1.0));

    let body = meta_status("wamid.METRICS1", "delivered", "15550001111");
    let (status, _) = sidecar
        .post_meta_signed("/cb/meta", META_SECRET, body)
        .await;
    assert_eq!(status, 200);
    sink.wait_for(1).await;
    // The acknowledgement's latency is recorded once the answer is written, which the
    // delivery does not wait for; the outcome is counted before the store records it.
    let after = eventually(
        "the outcome recorded and the acknowledgement counted",
        || async {
            let m = sidecar.metrics().await;
            let acked = "hookrelay_callback_ack_duration_seconds_count{provider=\"meta_whatsapp\"}";
            let depth = "hookrelay_queue_depth{endpoint=\"crm\"}";
            (sample(&m, &crm("delivered")) == Some(1.0)
                && sample(&m, acked).is_some_and(|n| n > 0.0)
                && sample(&m, depth) == Some(0.0))
            .then_some(m)
        },
    )
    .await;
    // One attempt, one outcome: not also counted as another outcome.
    assert_eq!(
        sample(
            &after,
            "hookrelay_delivery_attempts_total{endpoint=\"crm\",result=\"2xx\"}"
        ),
        Some(1.0)
    );
    for outcome in ["retried", "dead_lettered", "paused", "deferred"] {
        assert_eq!(sample(&after, &crm(outcome)), Some(0.0), "{outcome}");
    }
    for histogram in [
        "hookrelay_callback_ack_duration_seconds_count{provider=\"meta_whatsapp\"}",
        "hookrelay_delivery_end_to_end_seconds_count{endpoint=\"crm\"}",
        "hookrelay_delivery_attempt_duration_seconds_count{endpoint=\"crm\"}",
    ] {
        assert_eq!(sample(&after, histogram), Some(1.0), "{histogram}: {after}");
    }
    assert_eq!(
        sample(&after, "hookrelay_queue_depth{endpoint=\"crm\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&after, "hookrelay_endpoint_paused{endpoint=\"crm\"}"),
        Some(0.0)
    );
    // An event no endpoint takes (crm takes delivered and seen) is unrouted, not also
    // enqueued.
    let body = meta_status("wamid.METRICS2", "sent", "15550001111");
    let (status, _) = sidecar
        .post_meta_signed("/cb/meta", META_SECRET, body)
        .await;
    assert_eq!(status, 200);
    let after = sidecar.metrics().await;
    let events = |outcome: &str| {
        format!("hookrelay_events_total{{provider=\"meta_whatsapp\",outcome=\"{outcome}\"}}")
    };
    assert_eq!(sample(&after, &events("enqueued")), Some(1.0), "{after}");
    assert_eq!(sample(&after, &events("unrouted")), Some(1.0), "{after}");
    assert!(sample(&after, "process_resident_memory_bytes").is_some_and(|v| v > 0.0));
    assert!(after.contains("hookrelay_build_info{version=\""), "{after}");
    // The embedded store's own figures are there (a Redis sidecar has none: replicas.rs).
    for family in [
        "hookrelay_store_used_bytes",
        "hookrelay_store_dedupe_keys",
        "hookrelay_store_disk_free_bytes",
        "hookrelay_history_bytes",
    ] {
        assert!(sample(&after, family).is_some(), "{family}: {after}");
    }

    // Prometheus's own linter takes the whole output.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/test installs it)");
    std::io::Write::write_all(&mut promtool.stdin.take().expect("stdin"), after.as_bytes())
        .expect("write");
    let out = promtool.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A file that differs from the running config (refused here) shows.
    std::fs::write(&sidecar.config, "upstream: [").expect("write");
    eventually("the file no longer matching", || async {
        let m = sidecar.metrics().await;
        (sample(&m, "hookrelay_config_file_matches") == Some(0.0)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_rotated_file_secret_applies_without_a_signal_and_reloads_say_what_changed() {
    const OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const NEW: &str = "whsec_QmFzZTY0RW5jb2RlZFNlY3JldEtleTEyMzQ=";
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("signing-secret");
    std::fs::write(&secret, format!("{OLD}\n")).expect("write");
    let yaml = format!(
        "{}    signing_secret: \"${{file:{}}}\"\n",
        config(&sink, true),
        secret.display()
    );
    let sidecar = Sidecar::start(&yaml).await;
    // The check at start is not a reload anyone asked for.
    let m = sidecar.metrics().await;
    assert_eq!(
        sample(&m, "hookrelay_config_reloads_total{outcome=\"unchanged\"}"),
        Some(0.0),
        "{m}"
    );
    // A forced reload of the same configuration changes nothing.
    let (status, _, body) = admin(&sidecar, "POST", "/-/reload", Some(TOKEN)).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (StatusCode::OK, Some("unchanged"))
    );

    let body = meta_status("wamid.ROT1", "delivered", "15550001111");
    sidecar
        .post_meta_signed("/cb/meta", META_SECRET, body)
        .await;
    let first = sink.wait_for(1).await;
    assert!(signed_with(&first[0], OLD));

    // The secret's file is rotated (as kubelet does with a Secret): applied, no signal.
    std::fs::write(&secret, format!("{NEW}\n")).expect("write");
    eventually("generation 2", || async {
        let m = sidecar.metrics().await;
        (sample(&m, "hookrelay_config_generation") == Some(2.0)).then_some(())
    })
    .await;
    let body = meta_status("wamid.ROT2", "delivered", "15550001111");
    sidecar
        .post_meta_signed("/cb/meta", META_SECRET, body)
        .await;
    let both = sink.wait_for(2).await;
    assert!(signed_with(&both[1], NEW) && !signed_with(&both[1], OLD));
    // The log says what changed, by name, never the secret.
    let log = sidecar.log();
    let applied = log
        .lines()
        .find(|l| l.contains("config applied"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        applied.contains("endpoint crm: signing_secret changed"),
        "{applied}"
    );
    assert!(!log.contains(NEW), "{log}");
}

#[tokio::test]
async fn dead_letters_are_deleted_by_endpoint_and_age_and_expire_after_their_retention() {
    let sink = Sink::start().await;
    // A dead letter written two days ago, into the store before the sidecar opens it.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    {
        let store = hookrelay_store::Store::open_embedded(&data).expect("open");
        let two_days_ago = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as i64
            - 2 * 86_400_000;
        store
            .enqueue_dead_letter(
                None,
                hookrelay_store::NewDelivery {
                    endpoint: "crm".into(),
                    webhook_id: "evt_old".into(),
                    body: bytes::Bytes::from_static(b"{}"),
                    created_at_ms: two_days_ago,
                    trace: None,
                },
                "an old one",
                two_days_ago,
            )
            .await
            .expect("write");
    }
    let yaml = config(&sink, true)
        .replace("{DATA}", &data.display().to_string())
        .replace("callbacks:", "dead_letters: { retention: 1d }\ncallbacks:");
    let sidecar = Sidecar::start(&yaml).await;
    // The retention runs at start: the two-day-old dead letter goes.
    eventually("the old dead letter to expire", || async {
        let m = sidecar.metrics().await;
        (sample(&m, "hookrelay_dead_letters_expired_total") == Some(1.0)).then_some(())
    })
    .await;
    let (_, _, list) = admin(&sidecar, "GET", "/dead-letters", Some(TOKEN)).await;
    assert_eq!(list, serde_json::json!([]));

    // Two new dead letters.
    sink.set_status(400);
    for wamid in ["wamid.DEL1", "wamid.DEL2"] {
        let body = meta_status(wamid, "delivered", "15550001111");
        sidecar
            .post_meta_signed("/cb/meta", META_SECRET, body)
            .await;
    }
    eventually("two dead letters", || async {
        let (_, _, list) = admin(&sidecar, "GET", "/dead-letters", Some(TOKEN)).await;
        (list.as_array().map(Vec::len) == Some(2)).then_some(())
    })
    .await;
    // Nothing says which: refused. A bad duration: refused.
    let (status, _, _) = admin(&sidecar, "DELETE", "/dead-letters", Some(TOKEN)).await;
    assert_eq!(status, 400);
    let (status, _, _) = admin(
        &sidecar,
        "DELETE",
        "/dead-letters?older_than=soon",
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 400);
    // Not old enough: none deleted.
    let config = sidecar.config.display().to_string();
    let (code, out, err) = cli(&[
        "dead-letters",
        "-c",
        &config,
        "delete",
        "--endpoint",
        "crm",
        "--older-than",
        "1h",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"deleted\":0"), "{out}");
    // The endpoint's: both.
    let (status, _, body) = admin(
        &sidecar,
        "DELETE",
        "/dead-letters?endpoint=crm",
        Some(TOKEN),
    )
    .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, serde_json::json!({"deleted": 2}))
    );
    let m = sidecar.metrics().await;
    assert_eq!(
        sample(&m, "hookrelay_dead_letters{endpoint=\"crm\"}"),
        Some(0.0)
    );
}

#[tokio::test]
async fn a_start_up_error_names_its_cause() {
    let sink = Sink::start().await;
    let sidecar = Sidecar::start(&config(&sink, true)).await;
    // A second sidecar on the same store: refused, and the message says why.
    let yaml = std::fs::read_to_string(&sidecar.config)
        .expect("read")
        .replace(
            &sidecar.listen.to_string(),
            &format!("127.0.0.1:{}", free_port()),
        )
        .replace(
            &sidecar.admin.to_string(),
            &format!("127.0.0.1:{}", free_port()),
        );
    let second = sidecar.dir.path().join("second.yaml");
    std::fs::write(&second, yaml).expect("write");
    let out = Command::new(binary())
        .args(["run", "-c"])
        .arg(&second)
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("another process has this store open"), "{err}");
}

/// The JSON lines a CLI command printed.
fn lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[tokio::test]
async fn where_did_my_event_go_delivered_retried_and_dead_through_the_api_and_the_cli() {
    let crm_sink = Sink::start().await;
    let ops_sink = Sink::start().await;
    let yaml = format!(
        r#"
listen: "{{LISTEN}}"
admin: {{ listen: "{{ADMIN}}", token: "{TOKEN}" }}
upstream: http://127.0.0.1:9
store: {{ kind: embedded, path: "{{DATA}}" }}
callbacks:
  - path: /cb/meta
    provider: meta_whatsapp
    verify: {{ app_secret: {META_SECRET}, verify_token: vt }}
endpoints:
  - name: crm
    url: {}
  - name: ops
    url: {}
    retry: {{ max_attempts: 5, backoff: [300ms] }}
"#,
        crm_sink.url("/crm"),
        ops_sink.url("/ops")
    );
    let sidecar = Sidecar::start(&yaml).await;
    let get = |path: String| {
        let sidecar = &sidecar;
        async move { admin(sidecar, "GET", &path, Some(TOKEN)).await }
    };

    // Event 1: crm takes it at once; ops answers 503 until it has been tried, then 200.
    ops_sink.set_status(503);
    let (status, _) = sidecar
        .post_meta_signed(
            "/cb/meta",
            META_SECRET,
            meta_status("wamid.HIST1", "delivered", "15550001111"),
        )
        .await;
    assert_eq!(status, 200);
    let first = crm_sink.wait_for(1).await;
    let hook1 = first[0].header("webhook-id");
    eventually("a failed attempt in the history", || async {
        let (status, _, body) = get(format!("/deliveries/{hook1}?endpoint=ops")).await;
        (status == 200 && body["deliveries"][0]["history"][0]["outcome"] == "retrying")
            .then_some(())
    })
    .await;
    ops_sink.set_status(200);
    ops_sink.wait_for(1).await;

    // Event 2: ops refuses it with 400: a dead letter at once.
    ops_sink.set_status(400);
    let (status, _) = sidecar
        .post_meta_signed(
            "/cb/meta",
            META_SECRET,
            meta_status("wamid.HIST2", "delivered", "15550001111"),
        )
        .await;
    assert_eq!(status, 200);
    let second = crm_sink.wait_for(2).await;
    let hook2 = second[1].header("webhook-id");
    assert_ne!(hook1, hook2);

    // The retried delivery: every attempt, in order, then delivered, with its payload.
    let (status, _, one) = eventually("the retried delivery delivered", || async {
        let answer = get(format!("/deliveries/{hook1}?endpoint=ops")).await;
        (answer.2["deliveries"][0]["state"] == "delivered").then_some(answer)
    })
    .await;
    assert_eq!(status, 200);
    let ops1 = &one["deliveries"][0];
    assert_eq!(ops1["endpoint"], "ops");
    assert_eq!(ops1["webhook_id"], hook1.as_str());
    let history = ops1["history"].as_array().expect("history");
    let (last, failed) = history.split_last().expect("attempts");
    assert!(!failed.is_empty(), "{ops1}");
    for attempt in failed {
        assert_eq!(attempt["outcome"], "retrying", "{ops1}");
        assert_eq!(attempt["status"], 503, "{ops1}");
        assert_eq!(attempt["response"], "sink says no", "{ops1}");
        assert!(attempt["at_ms"].as_i64().is_some_and(|t| t > 0));
    }
    assert_eq!(last["outcome"], "delivered");
    assert_eq!(last["status"], 200);
    assert_eq!(ops1["attempts"].as_u64(), Some(history.len() as u64));
    assert_eq!(
        ops1["payload"]["reference"]["idempotency_key"].as_str(),
        Some(hook1.as_str()),
        "{ops1}"
    );

    // One event, every endpoint: crm delivered at the first attempt.
    let (status, _, event) = get(format!("/events/{hook1}")).await;
    assert_eq!(status, 200);
    let mut endpoints: Vec<&str> = event["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .map(|d| d["endpoint"].as_str().expect("endpoint"))
        .collect();
    endpoints.sort_unstable();
    assert_eq!(endpoints, ["crm", "ops"]);
    let crm1 = event["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .find(|d| d["endpoint"] == "crm")
        .expect("crm");
    assert_eq!(crm1["state"], "delivered");
    assert_eq!(crm1["history"].as_array().map(Vec::len), Some(1));

    // The dead letter, found by state and by endpoint; lists carry no payloads.
    let (_, _, dead) = eventually("the dead letter in the history", || async {
        let answer = get("/deliveries?state=dead".into()).await;
        (answer.2["deliveries"].as_array()?.len() == 1).then_some(answer)
    })
    .await;
    let ops2 = &dead["deliveries"][0];
    assert_eq!(ops2["webhook_id"], hook2.as_str());
    assert_eq!(ops2["dead"]["status"], 400);
    assert_eq!(ops2["history"][0]["outcome"], "dead");
    assert_eq!(ops2["attempts"], 1);
    assert!(ops2.get("payload").is_none());
    let (_, _, of_ops) = get("/deliveries?endpoint=ops".into()).await;
    let states: Vec<&str> = of_ops["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .map(|d| d["state"].as_str().expect("state"))
        .collect();
    assert_eq!(states, ["dead", "delivered"], "newest first");
    let (_, _, paged) = get("/deliveries?limit=1".into()).await;
    assert_eq!(paged["deliveries"].as_array().map(Vec::len), Some(1));
    let next = paged["next"].as_u64().expect("a next page");
    let (_, _, rest) = get(format!("/deliveries?limit=10&before={next}")).await;
    assert_eq!(rest["deliveries"].as_array().map(Vec::len), Some(3));

    // Bad requests and strangers.
    let (status, _, body) = get("/deliveries?state=lost".into()).await;
    assert_eq!(status, 400, "{body}");
    let (status, _, _) = get("/deliveries/never-seen".into()).await;
    assert_eq!(status, 404);
    let (status, _, _) = admin(&sidecar, "GET", "/deliveries", None).await;
    assert_eq!(status, 401);
    let (status, _, _) = admin(&sidecar, "GET", &format!("/events/{hook1}"), None).await;
    assert_eq!(status, 401);

    // The same from the CLI.
    let addr = sidecar.admin.to_string();
    let base = ["deliveries", "--admin", &addr, "--token", TOKEN];
    let run = |extra: &[&str]| cli(&[&base[..], extra].concat());
    let (code, out, err) = run(&["show", &hook1, "--endpoint", "ops"]);
    assert_eq!(code, 0, "{err}");
    let shown = lines(&out);
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0]["state"], "delivered");
    assert_eq!(shown[0]["history"], ops1["history"]);
    let (code, out, err) = run(&["list", "--state", "dead"]);
    assert_eq!(code, 0, "{err}");
    let listed = lines(&out);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["webhook_id"], hook2.as_str());
    let (code, out, err) = run(&["event", &hook2]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines(&out).len(), 2);
    let (code, out, err) = run(&["list", "--limit", "1"]);
    assert_eq!((code, lines(&out).len()), (0, 1), "{err}");
    assert!(err.contains("--before"), "{err}");
    let (code, _, err) = run(&["show", "never-seen"]);
    assert_eq!(code, 1);
    assert!(err.contains("404"), "{err}");
    let (code, _, err) = cli(&["deliveries", "--admin", &addr, "list"]);
    assert_eq!(code, 1);
    assert!(err.contains("401"), "{err}");
}

#[tokio::test]
async fn the_admin_listener_holds_a_bounded_number_of_connections() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let sink = Sink::start().await;
    let yaml = config(&sink, true).replace(
        &format!("admin: {{ listen: \"{{ADMIN}}\", token: \"{TOKEN}\" }}"),
        &format!("admin: {{ listen: \"{{ADMIN}}\", token: \"{TOKEN}\", max_connections: 2 }}"),
    );
    assert!(yaml.contains("max_connections: 2"), "{yaml}");
    let sidecar = Sidecar::start(&yaml).await;
    // Two idle connections take both places (accepted in the order they were made).
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(
            tokio::net::TcpStream::connect(sidecar.admin)
                .await
                .expect("connect"),
        );
    }
    // A third is closed at once, without an answer.
    let mut third = tokio::net::TcpStream::connect(sidecar.admin)
        .await
        .expect("connect");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("closed well before the held ones time out");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // Once they are let go, requests are served again, and the refusal was counted.
    drop(held);
    let metrics = eventually("the admin API answering again", || async {
        let mut stream = tokio::net::TcpStream::connect(sidecar.admin).await.ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await.ok()?;
        text.starts_with("HTTP/1.1 200").then_some(text)
    })
    .await;
    let dropped = metrics
        .lines()
        .find(|l| l.starts_with("hookrelay_connections_dropped_total{limit=\"admin_connections\"}"))
        .expect("the refusal counted");
    assert!(!dropped.ends_with(" 0"), "{dropped}");
}

/// One request to the admin listener with `headers` and a form `body`: status, headers,
/// body as text.
async fn page(
    sidecar: &Sidecar,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, http::HeaderMap, String) {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", sidecar.admin));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let (status, headers, body) = send(
        req.body(Full::new(Bytes::from(body.to_owned())))
            .expect("request"),
    )
    .await;
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn the_status_page_takes_the_token_once_and_refuses_what_is_not_its_own() {
    let sink = Sink::start().await;
    let sidecar = Sidecar::start(&config(&sink, true)).await;
    let bearer = format!("Bearer {TOKEN}");

    // Without the token: 401, the sign-in form and nothing else, on every view.
    for path in [
        "/",
        "/ui/endpoints",
        "/ui/deliveries",
        "/ui/dead-letters",
        "/ui/deliveries/x",
    ] {
        let (status, headers, body) = page(&sidecar, "GET", path, &[], "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(
            body.contains("Admin token") && !body.contains("crm"),
            "{path}: {body}"
        );
        assert!(
            headers["content-security-policy"]
                .to_str()
                .expect("csp")
                .contains("script-src 'self'")
        );
    }
    // The assets carry nothing secret and need no token.
    let (status, _, css) = page(&sidecar, "GET", "/ui/assets/style.css", &[], "").await;
    assert!(status == StatusCode::OK && css.contains("prefers-color-scheme: dark"));

    // A wrong token is refused and counted; the right one sets a cookie that is not the
    // token and opens every view.
    let (status, _, body) = page(
        &sidecar,
        "POST",
        "/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        "token=wrong-token-0123456789&next=/",
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("Wrong token."));
    let (status, headers, _) = page(
        &sidecar,
        "POST",
        "/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        &format!("token={TOKEN}&next=%2Fui%2Fendpoints"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/ui/endpoints");
    let set_cookie = headers["set-cookie"].to_str().expect("cookie").to_owned();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    assert!(!set_cookie.contains(TOKEN), "the cookie holds the token");
    let cookie = set_cookie.split(';').next().expect("pair").to_owned();
    for path in ["/", "/ui/endpoints", "/ui/deliveries", "/ui/dead-letters"] {
        let (status, _, body) = page(&sidecar, "GET", path, &[("cookie", &cookie)], "").await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(body.contains("crm") && !body.contains(TOKEN), "{path}");
    }
    // A login elsewhere cannot send the browser off the page.
    let (_, headers, _) = page(
        &sidecar,
        "POST",
        "/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        &format!("token={TOKEN}&next=%2F%2Fevil.example%2F"),
    )
    .await;
    assert_eq!(headers["location"], "/");

    // The bearer token works too; an action from another site does not, with either.
    let (status, _, _) = page(&sidecar, "GET", "/", &[("authorization", &bearer)], "").await;
    assert_eq!(status, StatusCode::OK);
    for (name, value) in [
        ("sec-fetch-site", "cross-site"),
        ("origin", "http://evil.example"),
    ] {
        let (status, _, _) = page(
            &sidecar,
            "POST",
            "/ui/endpoints/crm/resume",
            &[
                ("cookie", &cookie),
                (name, value),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            "back=/ui/endpoints",
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name}: {value}");
    }
    // From the page itself: done, and back to the view with a notice.
    let (status, headers, _) = page(
        &sidecar,
        "POST",
        "/ui/endpoints/crm/resume",
        &[
            ("cookie", &cookie),
            ("sec-fetch-site", "same-origin"),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        "back=/ui/endpoints",
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/ui/endpoints");
    // Its outcome travels in a cookie shown once by the next page, not in the URL.
    let notice = headers["set-cookie"].to_str().expect("notice").to_owned();
    assert!(
        notice.starts_with("hookrelay_notice=err%3AEndpoint+crm+was+not+paused."),
        "{notice}"
    );
    let flash = notice.split(';').next().expect("pair").to_owned();
    let both = format!("{cookie}; {flash}");
    let (status, headers, body) =
        page(&sidecar, "GET", "/ui/endpoints", &[("cookie", &both)], "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("role=\"alert\">Endpoint crm was not paused."),
        "{body}"
    );
    assert!(
        headers["set-cookie"]
            .to_str()
            .expect("clear")
            .contains("Max-Age=0")
    );
    // A notice in a link is no notice.
    let (_, _, body) = page(
        &sidecar,
        "GET",
        "/ui/endpoints?notice=Call+this+number",
        &[("cookie", &cookie)],
        "",
    )
    .await;
    assert!(!body.contains("Call this number"));
    // Replaying a dead letter that does not exist says so.
    let (_, headers, _) = page(
        &sidecar,
        "POST",
        "/ui/dead-letters/999/replay",
        &[("cookie", &cookie)],
        "back=/ui/dead-letters",
    )
    .await;
    assert_eq!(headers["location"], "/ui/dead-letters");
    assert!(
        headers["set-cookie"]
            .to_str()
            .expect("notice")
            .contains("no+such+dead+letter")
    );

    // Signing out clears the cookie.
    let (status, headers, _) = page(&sidecar, "POST", "/logout", &[("cookie", &cookie)], "").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        headers["set-cookie"]
            .to_str()
            .expect("cookie")
            .contains("Max-Age=0")
    );

    let metrics = sidecar.metrics().await;
    assert!(
        metrics
            .contains("hookrelay_route_callbacks_total{route=\"/cb/meta\",result=\"received\"} 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn without_a_token_the_status_page_answers_only_at_an_address() {
    let sink = Sink::start().await;
    let yaml = config(&sink, true).replace(
        &format!("admin: {{ listen: \"{{ADMIN}}\", token: \"{TOKEN}\" }}"),
        "admin: \"{ADMIN}\"",
    );
    assert!(!yaml.contains(TOKEN));
    let sidecar = Sidecar::start(&yaml).await;
    let (status, _, body) = page(&sidecar, "GET", "/", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("crm") && !body.contains("Sign out"));
    let (status, _, body) = page(
        &sidecar,
        "GET",
        "/",
        &[("host", "rebind.evil.example:9090")],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("admin.token"));
    // The same for the admin API beside it: a web page in a browser on this machine can
    // neither read it through a DNS name of its own nor change anything cross-site.
    let rebind = [("host", "rebind.evil.example:9090")];
    let (status, _, _) = page(&sidecar, "GET", "/dead-letters", &rebind, "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = page(&sidecar, "GET", "/dead-letters", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = page(
        &sidecar,
        "POST",
        "/-/reload",
        &[("origin", "http://evil.example")],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = page(&sidecar, "POST", "/-/reload", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    // Probes and scrapes answer whatever the host.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (status, _, _) = page(&sidecar, "GET", path, &rebind, "").await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
}
