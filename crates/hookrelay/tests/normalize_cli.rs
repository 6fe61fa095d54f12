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
    let topic = "topic_arn=arn:aws:sns:us-east-2:295079676684:publish-and-verify-62674b1d-4295-426b-88e7-5fb75652a04e";
    let args = ["--provider", "ses", "--verify", &cert, "--verify", topic];
    let ok = normalize(&args, &body);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    // Another account's topic, signed by SNS all the same, is refused.
    let other = "topic_arn=arn:aws:sns:us-east-2:111111111111:someone-elses";
    let theirs = ["--provider", "ses", "--verify", &cert, "--verify", other];
    assert_eq!(normalize(&theirs, &body).code, 3);
    // And a check without the topic is a usage error, not a pass.
    assert_eq!(
        normalize(&["--provider", "ses", "--verify", &cert], &body).code,
        64
    );
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

/// A signed request for `normalize`: its arguments (beside `--provider`) and body.
struct Signed {
    provider: &'static str,
    args: Vec<String>,
    body: Vec<u8>,
}

impl Signed {
    fn run(&self, body: &[u8]) -> Out {
        let mut args = vec!["--provider", self.provider];
        args.extend(self.args.iter().map(String::as_str));
        normalize(&args, body)
    }
}

fn header(name: &str, value: &str) -> [String; 2] {
    ["--header".into(), format!("{name}: {value}")]
}

/// A basic-auth provider's golden body, with the credentials `given` and the route's `user:pass`.
fn basic(provider: &'static str, case: &str, given: &str) -> Signed {
    use base64::Engine as _;
    let mut args = vec!["--verify".to_owned(), "basic_auth=hook:s3cret".to_owned()];
    args.extend(header(
        "Authorization",
        &format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(given)
        ),
    ));
    args.extend(["--content-type".into(), "application/json".into()]);
    Signed {
        provider,
        args,
        body: read(&format!("golden/{provider}/{case}.body")),
    }
}

#[test]
fn the_nine_newer_providers_verify_vectors_and_refuse_tampered_copies() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::{Digest, Sha256};

    // Signature vectors: the provider's own where it publishes one (Sinch's SDK tests,
    // Mandrill's recorded request); Telnyx publishes none (RFC 8032's key, see its source).
    let mut signed = Vec::new();
    let v = fixture_json("fixtures/sinch/sms_signed_vector.json");
    let mut args = vec![
        "--verify".to_owned(),
        format!("secret={}", v["secret"].as_str().expect("secret")),
        "--content-type".into(),
        "application/json".into(),
    ];
    for (k, h) in v["headers"].as_object().expect("headers") {
        args.extend(header(k, h.as_str().expect("header")));
    }
    signed.push(Signed {
        provider: "sinch",
        args,
        body: read("fixtures/sinch/sms_signed_payload.txt"),
    });

    let v = fixture_json("fixtures/telnyx/signed_vector.json");
    let mut args = vec![
        "--verify".to_owned(),
        format!(
            "public_key={}",
            v["public_key_base64"].as_str().expect("key")
        ),
        "--content-type".into(),
        "application/json".into(),
    ];
    for (k, h) in v["headers"].as_object().expect("headers") {
        args.extend(header(k, h.as_str().expect("header")));
    }
    signed.push(Signed {
        provider: "telnyx",
        args,
        body: read("fixtures/telnyx/message_finalized_delivered.json"),
    });

    let v = &fixture_json("fixtures/mandrill/click_with_signature.json")[0];
    let mut args = vec![
        "--verify".to_owned(),
        format!("webhook_key={}", v["private_key"].as_str().expect("key")),
        "--verify".into(),
        format!("public_url={}", v["original_url"].as_str().expect("url")),
        "--content-type".into(),
        "application/x-www-form-urlencoded".into(),
    ];
    args.extend(header(
        "X-Mandrill-Signature",
        v["headers"]["X-Mandrill-Signature"].as_str().expect("sig"),
    ));
    signed.push(Signed {
        provider: "mandrill",
        args,
        body: format!(
            "mandrill_events={}",
            v["raw_params"]["mandrill_events"].as_str().expect("events")
        )
        .into_bytes(),
    });

    // MessageBird's published tokens sign bodies that are no MessageBird event (its core
    // tests use them): here a token is made for a recorded status report, the same way.
    let body = read("golden/messagebird/conversations_whatsapp_message_updated_delivered.body");
    let url = "https://notify.example.com/cb/messagebird";
    let claims = serde_json::json!({
        "iss": "MessageBird", "nbf": 1_700_000_000, "exp": 1_700_000_060, "jti": "j-1",
        "url_hash": hex::encode(Sha256::digest(url)),
        "payload_hash": hex::encode(Sha256::digest(&body)),
    });
    let signing = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(b"mb-key").expect("key");
    mac.update(signing.as_bytes());
    let token = format!(
        "{signing}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    );
    let mut args = vec![
        "--verify".to_owned(),
        "signing_key=mb-key".into(),
        "--verify".into(),
        format!("public_url={url}"),
        "--content-type".into(),
        "application/json".into(),
    ];
    args.extend(header("MessageBird-Signature-JWT", &token));
    signed.push(Signed {
        provider: "messagebird",
        args,
        body,
    });

    // Resend signs with Svix (Standard Webhooks): hookrelay's own signer makes the header.
    let body = read("golden/resend/email_delivered.body");
    let secret: hookrelay_core::signing::SigningSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        .parse()
        .expect("secret");
    let sig = hookrelay_core::signing::Signer::new(vec![secret]).signature(
        "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
        1_708_645_272,
        &body,
    );
    let mut args = vec![
        "--verify".to_owned(),
        "signing_secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        "--content-type".into(),
        "application/json".into(),
    ];
    args.extend(header("svix-id", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"));
    args.extend(header("svix-timestamp", "1708645272"));
    args.extend(header("svix-signature", &sig));
    signed.push(Signed {
        provider: "resend",
        args,
        body,
    });

    for s in &signed {
        let ok = s.run(&s.body);
        assert_eq!(ok.code, 0, "{}: {}", s.provider, ok.stderr);
        assert!(!ok.payloads().is_empty(), "{}: no payload", s.provider);
        assert!(
            ok.payloads().iter().all(|p| p["vendor_name"] == s.provider),
            "{}",
            s.provider
        );
        // One byte changed in the middle of the body.
        let mut tampered = s.body.clone();
        let at = tampered.len() / 2;
        tampered[at] = if tampered[at] == b'a' { b'b' } else { b'a' };
        let bad = s.run(&tampered);
        assert_eq!(bad.code, 3, "{}: {}", s.provider, bad.stderr);
        assert!(bad.stdout.is_empty(), "{}", s.provider);
    }

    // The providers that sign nothing: the right credentials pass, any others exit 3.
    for (provider, case) in [
        ("infobip", "sms_delivery_report"),
        ("mailjet", "sent"),
        ("sparkpost", "webhook_batch"),
        ("brevo", "email_delivered"),
    ] {
        let ok = basic(provider, case, "hook:s3cret");
        let out = ok.run(&ok.body);
        assert_eq!(out.code, 0, "{provider}: {}", out.stderr);
        assert!(!out.payloads().is_empty(), "{provider}");
        let bad = basic(provider, case, "hook:s3creT");
        let out = bad.run(&bad.body);
        assert_eq!(out.code, 3, "{provider}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{provider}");
    }
}
