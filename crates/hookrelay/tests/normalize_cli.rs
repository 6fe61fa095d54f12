//! `hookrelay normalize` end to end: the real binary, real recorded callbacks on stdin.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

fn core_tests() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../hookrelay-core/tests")
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(core_tests().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn fixture_json(rel: &str) -> Value {
    serde_json::from_slice(&read(rel)).expect("fixture JSON")
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn payloads(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
            .collect()
    }
}

fn normalize(args: &[&str], body: &[u8]) -> Out {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .arg("normalize")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hookrelay");
    let mut stdin = child.stdin.take().expect("stdin");
    let body = body.to_vec();
    // Write from a thread: the binary may exit before reading everything.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let out = child.wait_with_output().expect("wait");
    let _ = writer.join();
    Out {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

#[test]
fn a_batch_prints_one_payload_per_event() {
    let body = read("golden/sendgrid/event_batch_all_types.body");
    let n = serde_json::from_slice::<Vec<Value>>(&body)
        .expect("array")
        .len();
    let out = normalize(&["--provider", "sendgrid"], &body);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let payloads = out.payloads();
    assert_eq!(payloads.len(), n);
    for p in &payloads {
        assert_eq!(p["version"], "1.0");
        assert_eq!(p["channel"], "email");
        assert!(
            p["reference"]["idempotency_key"]
                .as_str()
                .is_some_and(|k| k.starts_with("evt_"))
        );
        assert!(p["vendor_response"]["sendgrid"].is_object());
    }
}

#[test]
fn events_that_cannot_be_normalized_are_reported_and_the_rest_printed() {
    let body = read("golden/sendgrid/batch_with_unparsed_element.body");
    let out = normalize(&["--provider", "sendgrid"], &body);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.payloads().len(), 2);
    assert_eq!(
        out.stderr.trim_end(),
        "hookrelay normalize: unparsed: missing field /1/email"
    );
    let deep = format!(
        r#"[{{"event":"open","email":"a@b.c","x":{}{}}}]"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let out = normalize(&["--provider", "sendgrid"], deep.as_bytes());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.is_empty());
    assert!(
        out.stderr
            .starts_with("hookrelay normalize: unparsed: nested deeper than 64 levels"),
        "{}",
        out.stderr
    );
}

#[test]
fn sns_wrapped_ses_and_confirmations() {
    let out = normalize(
        &[
            "--provider",
            "ses",
            "--content-type",
            "text/plain; charset=UTF-8",
        ],
        &read("golden/ses/notification_bounce_without_dsn.body"),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.payloads().is_empty());
    assert!(
        out.payloads()
            .iter()
            .all(|p| p["suprsend_status"]["status"] == "bounced")
    );

    let out = normalize(
        &["--provider", "ses"],
        &read("fixtures/ses/doc_subscription_confirmation.json"),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.is_empty(), "a handshake is not an event");
    assert!(out.stderr.contains("SubscriptionConfirmation"));
}

#[test]
fn meta_entries_with_several_messages_and_the_handshake() {
    let body = read("golden/meta_whatsapp/two_changes_each_with_messages.body");
    let v: Value = serde_json::from_slice(&body).expect("json");
    let expected: usize = v["entry"]
        .as_array()
        .expect("entry")
        .iter()
        .flat_map(|e| e["changes"].as_array().expect("changes"))
        .map(|c| c["value"]["messages"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(expected >= 2);
    let out = normalize(&["--provider", "meta_whatsapp"], &body);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.payloads().len(), expected);
    assert!(
        out.payloads()
            .iter()
            .all(|p| p["event_type"] == "inbound_message")
    );

    let out = normalize(
        &[
            "--provider",
            "meta_whatsapp",
            "--method",
            "GET",
            "--url",
            "https://example.com/cb?hub.mode=subscribe&hub.verify_token=vt&hub.challenge=1158201444",
            "--verify",
            "app_secret=x",
            "--verify",
            "verify_token=vt",
        ],
        b"",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("1158201444"));
}

#[test]
fn form_bodies_with_empty_fields_percent_encoding_and_non_ascii() {
    let body = "MessageSid=SM1&SmsStatus=received&Body=Ol%C3%A1+%F0%9F%98%80+%E2%82%AC&NumMedia=0\
                &ErrorCode=&From=%2B14155550100&To=%2B14155550199&AccountSid=AC1";
    let out = normalize(
        &[
            "--provider",
            "twilio",
            "--content-type",
            "application/x-www-form-urlencoded",
        ],
        body.as_bytes(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let p = &out.payloads()[0];
    assert_eq!(p["event_type"], "inbound_message");
    assert_eq!(p["channel"], "sms");
    assert_eq!(p["channel_value"], "+14155550100");
    assert_eq!(p["suprsend_inbound_message"]["text"]["body"], "Olá 😀 €");
}

#[test]
fn string_and_float_timestamps_become_milliseconds() {
    let body = br#"[{"email":"a@example.com","timestamp":"1600112502","event":"delivered","sg_event_id":"e1","sg_message_id":"m1"},
                    {"email":"b@example.com","timestamp":1600112502.5,"event":"open","sg_event_id":"e2","sg_message_id":"m2"}]"#;
    let out = normalize(&["--provider", "sendgrid"], body);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let p = out.payloads();
    assert_eq!(p[0]["suprsend_status"]["timestamp"], 1_600_112_502_000_i64);
    assert_eq!(p[1]["suprsend_status"]["timestamp"], 1_600_112_502_500_i64);
    assert_eq!(p[1]["suprsend_status"]["status"], "seen");
}

#[test]
fn standard_format_wraps_the_payload() {
    let out = normalize(
        &["--provider", "postmark", "--format", "standard"],
        &read("fixtures/postmark/delivery.json"),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let p = &out.payloads()[0];
    assert_eq!(p["type"], "email.status.delivered");
    assert!(p["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert_eq!(p["data"]["suprsend_status"]["status"], "delivered");
}

#[test]
fn malformed_input_exits_2_with_one_line_reason() {
    let garbage: Vec<u8> = (0..10 * 1024 * 1024_u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let cases: Vec<(&str, Vec<&str>, Vec<u8>)> = vec![
        (
            "truncated JSON",
            vec!["--provider", "postmark"],
            br#"{"RecordType":"Deliv"#.to_vec(),
        ),
        ("empty body", vec!["--provider", "sendgrid"], Vec::new()),
        (
            "wrong content type",
            vec![
                "--provider",
                "sendgrid",
                "--content-type",
                "application/x-www-form-urlencoded",
            ],
            b"[]".to_vec(),
        ),
        (
            "array where an object belongs",
            vec!["--provider", "postmark"],
            b"[{\"RecordType\":\"Delivery\"}]".to_vec(),
        ),
        (
            "array where an object belongs",
            vec!["--provider", "mailgun"],
            b"[1,2]".to_vec(),
        ),
        (
            "10 MB of garbage",
            vec!["--provider", "meta_whatsapp"],
            garbage.clone(),
        ),
        ("10 MB of garbage", vec!["--provider", "twilio"], garbage),
    ];
    for (what, args, body) in cases {
        let out = normalize(&args, &body);
        assert_eq!(out.code, 2, "{what}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{what}");
        assert_eq!(
            out.stderr.trim_end().lines().count(),
            1,
            "{what}: {}",
            out.stderr
        );
    }
}

#[test]
fn verify_passes_on_vectors_and_exits_3_on_tampered_copies() {
    // SendGrid ECDSA.
    let v = fixture_json("fixtures/sendgrid/signed_single_vector.json");
    let body = read("fixtures/sendgrid/signed_single_payload.txt");
    let key = format!(
        "public_key={}",
        v["public_key_base64_der"].as_str().expect("key")
    );
    let sig = format!(
        "X-Twilio-Email-Event-Webhook-Signature: {}",
        v["header_X-Twilio-Email-Event-Webhook-Signature"]
            .as_str()
            .expect("sig")
    );
    let ts = format!(
        "X-Twilio-Email-Event-Webhook-Timestamp: {}",
        v["header_X-Twilio-Email-Event-Webhook-Timestamp"]
            .as_str()
            .expect("ts")
    );
    let args = [
        "--provider",
        "sendgrid",
        "--verify",
        &key,
        "--header",
        &sig,
        "--header",
        &ts,
    ];
    let ok = normalize(&args, &body);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    let bad = normalize(&args, &tampered);
    assert_eq!(bad.code, 3, "{}", bad.stderr);
    assert!(bad.stdout.is_empty());

    // Meta X-Hub-Signature-256.
    let v = fixture_json("fixtures/meta_whatsapp/xhub_signature_vector.json");
    let body = read("fixtures/meta_whatsapp/xhub_signature_vector_body.txt");
    let secret = format!("app_secret={}", v["app_secret"].as_str().expect("secret"));
    let header = format!(
        "X-Hub-Signature-256: {}",
        v["header_X-Hub-Signature-256"].as_str().expect("sig")
    );
    let args = [
        "--provider",
        "meta_whatsapp",
        "--verify",
        &secret,
        "--header",
        &header,
    ];
    assert_eq!(normalize(&args, &body).code, 0);
    let mut tampered = body.clone();
    tampered[5] ^= 1;
    assert_eq!(normalize(&args, &tampered).code, 3);

    // SNS with the signing certificate supplied offline.
    let cert = core_tests().join("fixtures/ses/sns_signing_cert.pem");
    let cert = format!("cert_file={}", cert.display());
    let body = read("fixtures/ses/notification_v2_no_subject.json");
    let args = ["--provider", "ses", "--verify", &cert];
    let ok = normalize(&args, &body);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let tampered = String::from_utf8(body)
        .expect("utf-8")
        .replacen("Hello", "Jello", 1);
    assert_eq!(normalize(&args, tampered.as_bytes()).code, 3);
}

#[test]
fn usage_errors_exit_64() {
    assert_eq!(normalize(&["--provider", "nope"], b"{}").code, 64);
    assert_eq!(
        normalize(&["--provider", "twilio", "--verify", "wrong_key=1"], b"").code,
        64
    );
    assert_eq!(
        normalize(&["--provider", "mailgun", "--verify", "signing_key="], b"").code,
        64
    );
    assert_eq!(normalize(&[], b"").code, 64);
}
