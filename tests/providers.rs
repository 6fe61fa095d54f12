//! The nine providers added last, end to end: a real sidecar with one route each and a real
//! sink. Each provider's recorded callback (a golden case of the core crate, the provider's
//! own documented body) is sent with credentials or a signature made at the time of the
//! test, and must reach the sink as the payloads the golden case expects; the same callback
//! with a wrong credential or signature is refused with `401` and reaches nobody.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use hookrelay_core::signing::{Signer, SigningSecret};
use hookrelay_tests::{Sidecar, Sink, eventually, send};
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The public base URL the URL-signing providers are told they call.
const PUBLIC: &str = "https://notify.example.com";
/// `user:password` of the providers that sign nothing.
const BASIC: &str = "hook:s3cret-pass";
const SINCH_SECRET: &str = "sinch-callback-secret";
const MESSAGEBIRD_KEY: &str = "messagebird-signing-key";
const MANDRILL_KEY: &str = "mandrill-webhook-key";
const RESEND_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// RFC 8032's first test key pair: the secret seed (hex) and the public key (base64).
const ED25519_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const ED25519_PUBLIC: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

/// A golden case of the core crate: its body, request line and expected payloads.
struct Case {
    provider: &'static str,
    method: http::Method,
    /// The route's path with the case's query string.
    path_and_query: String,
    content_type: Option<String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    payloads: Vec<Value>,
}

fn golden(provider: &'static str, case: &str) -> Case {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/hookrelay-core/tests/golden")
        .join(provider);
    let body = std::fs::read(dir.join(format!("{case}.body"))).expect("golden body");
    let meta: Value = std::fs::read(dir.join(format!("{case}.meta.json")))
        .map(|b| serde_json::from_slice(&b).expect("meta json"))
        .unwrap_or_else(|_| json!({}));
    let expected: Value = serde_json::from_slice(
        &std::fs::read(dir.join(format!("{case}.expected.json"))).expect("expected"),
    )
    .expect("expected json");
    let url = meta["url"].as_str().unwrap_or("/");
    let query = url.split_once('?').map(|(_, q)| format!("?{q}"));
    let headers = meta["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .map(|(k, v)| (k.clone(), v.as_str().expect("header").to_owned()))
                .collect()
        })
        .unwrap_or_default();
    Case {
        provider,
        method: meta["method"]
            .as_str()
            .unwrap_or("POST")
            .parse()
            .expect("method"),
        path_and_query: format!("/cb/{provider}{}", query.unwrap_or_default()),
        content_type: meta["content_type"].as_str().map(str::to_owned),
        headers,
        body,
        payloads: expected["payloads"].as_array().expect("payloads").clone(),
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The credentials or signature headers of `case`, made now; `wrong` makes them with the
/// wrong secret.
fn authenticate(case: &Case, wrong: bool) -> Vec<(String, String)> {
    let public_url = format!("{PUBLIC}{}", case.path_and_query);
    let pick = |right: &str| {
        if wrong {
            format!("{right}-not")
        } else {
            right.to_owned()
        }
    };
    match case.provider {
        "infobip" | "mailjet" | "sparkpost" | "brevo" => {
            let user_pass = if wrong { "hook:s3cret-pasS" } else { BASIC };
            vec![(
                "authorization".into(),
                format!("Basic {}", STANDARD.encode(user_pass)),
            )]
        }
        "messagebird" => {
            let now = now_secs();
            let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
            let mut claims = json!({
                "iss": "MessageBird", "nbf": now, "exp": now + 60,
                "jti": format!("jti-{now}-{}", case.body.len()),
                "url_hash": sha256_hex(public_url.as_bytes()),
            });
            if !case.body.is_empty() {
                claims["payload_hash"] = json!(sha256_hex(&case.body));
            }
            let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
            let signed = format!("{header}.{claims}");
            let mut mac =
                Hmac::<Sha256>::new_from_slice(pick(MESSAGEBIRD_KEY).as_bytes()).expect("key");
            mac.update(signed.as_bytes());
            let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
            vec![(
                "messagebird-signature-jwt".into(),
                format!("{signed}.{sig}"),
            )]
        }
        "mandrill" => {
            let mut pairs: Vec<(String, String)> = form_urlencoded::parse(&case.body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            pairs.sort();
            let mut mac =
                Hmac::<sha1::Sha1>::new_from_slice(pick(MANDRILL_KEY).as_bytes()).expect("key");
            mac.update(public_url.as_bytes());
            for (k, v) in &pairs {
                mac.update(k.as_bytes());
                mac.update(v.as_bytes());
            }
            vec![(
                "x-mandrill-signature".into(),
                STANDARD.encode(mac.finalize().into_bytes()),
            )]
        }
        "sinch" => {
            let timestamp = now_secs().to_string();
            let nonce = format!("nonce-{timestamp}");
            let mut mac =
                Hmac::<Sha256>::new_from_slice(pick(SINCH_SECRET).as_bytes()).expect("key");
            mac.update(&case.body);
            mac.update(b".");
            mac.update(nonce.as_bytes());
            mac.update(b".");
            mac.update(timestamp.as_bytes());
            vec![
                (
                    "x-sinch-webhook-signature".into(),
                    STANDARD.encode(mac.finalize().into_bytes()),
                ),
                ("x-sinch-webhook-signature-timestamp".into(), timestamp),
                ("x-sinch-webhook-signature-nonce".into(), nonce),
                (
                    "x-sinch-webhook-signature-algorithm".into(),
                    "HmacSHA256".into(),
                ),
            ]
        }
        "telnyx" => {
            use ed25519_dalek::{Signer as _, SigningKey};
            let mut seed = [0u8; 32];
            hex::decode_to_slice(ED25519_SEED, &mut seed).expect("seed");
            if wrong {
                seed[0] ^= 1;
            }
            let key = SigningKey::from_bytes(&seed);
            let timestamp = now_secs().to_string();
            let mut signed = format!("{timestamp}|").into_bytes();
            signed.extend_from_slice(&case.body);
            let sig = key.sign(&signed);
            vec![
                (
                    "telnyx-signature-ed25519".into(),
                    STANDARD.encode(sig.to_bytes()),
                ),
                ("telnyx-timestamp".into(), timestamp),
            ]
        }
        "resend" => {
            let secret: SigningSecret = if wrong {
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSX"
                    .parse()
                    .expect("secret")
            } else {
                RESEND_SECRET.parse().expect("secret")
            };
            // The message id names the event (its idempotency key): the recorded one.
            let id = case
                .headers
                .iter()
                .find(|(k, _)| k == "svix-id")
                .map(|(_, v)| v.clone())
                .expect("a recorded svix-id");
            let timestamp = now_secs();
            let sig = Signer::new(vec![secret]).signature(&id, timestamp, &case.body);
            vec![
                ("svix-id".into(), id),
                ("svix-timestamp".into(), timestamp.to_string()),
                ("svix-signature".into(), sig),
            ]
        }
        other => panic!("no credentials for {other}"),
    }
}

async fn deliver(sidecar: &Sidecar, case: &Case, wrong: bool) -> (StatusCode, Bytes) {
    let mut req = Request::builder()
        .method(case.method.clone())
        .uri(format!("http://{}{}", sidecar.listen, case.path_and_query));
    if let Some(ct) = &case.content_type {
        req = req.header("content-type", ct);
    }
    // The recorded signature headers are replaced by ones made now.
    let auth = authenticate(case, wrong);
    let recorded = case
        .headers
        .iter()
        .filter(|(k, _)| !auth.iter().any(|(a, _)| a.eq_ignore_ascii_case(k)));
    for (k, v) in recorded.chain(&auth) {
        req = req.header(k, v);
    }
    let (status, _, body) = send(
        req.body(Full::new(Bytes::from(case.body.clone())))
            .expect("request"),
    )
    .await;
    (status, body)
}

/// The fields a consumer keys on, which must be the same as the golden case's: the event
/// times may differ (an event without one has the time it was received).
fn identity(p: &Value) -> Value {
    json!({
        "vendor_name": p["vendor_name"], "event_type": p["event_type"],
        "channel": p["channel"], "channel_value": p["channel_value"],
        "vendor_ack_id": p["reference"]["vendor_ack_id"],
        "idempotency_key": p["reference"]["idempotency_key"],
        "status": p["suprsend_status"]["status"],
        "from": p["suprsend_inbound_message"]["from"],
    })
}

fn config(sink: &Sink) -> String {
    format!(
        r#"
listen: "{{LISTEN}}"
admin: "{{ADMIN}}"
upstream: 127.0.0.1:9
store: {{ kind: embedded, path: "{{DATA}}" }}
callbacks:
  - path: /cb/infobip
    provider: infobip
    verify: {{ basic_auth: "{BASIC}" }}
  - path: /cb/mailjet
    provider: mailjet
    verify: {{ basic_auth: "{BASIC}" }}
  - path: /cb/sparkpost
    provider: sparkpost
    verify: {{ basic_auth: "{BASIC}" }}
  - path: /cb/brevo
    provider: brevo
    verify: {{ basic_auth: "{BASIC}" }}
  - path: /cb/messagebird
    provider: messagebird
    verify: {{ signing_key: {MESSAGEBIRD_KEY}, public_url: "{PUBLIC}/cb/messagebird" }}
  - path: /cb/mandrill
    provider: mandrill
    verify: {{ webhook_key: {MANDRILL_KEY}, public_url: "{PUBLIC}/cb/mandrill" }}
  - path: /cb/sinch
    provider: sinch
    verify: {{ secret: {SINCH_SECRET} }}
  - path: /cb/telnyx
    provider: telnyx
    verify: {{ public_key: "{ED25519_PUBLIC}" }}
  - path: /cb/resend
    provider: resend
    verify: {{ signing_secret: {RESEND_SECRET} }}
endpoints:
  - name: all
    url: {url}
"#,
        url = sink.url("/all"),
    )
}

#[tokio::test]
async fn every_new_provider_is_verified_normalized_and_delivered() {
    let sink = Sink::start().await;
    let sidecar = Sidecar::start(&config(&sink)).await;
    let cases = [
        golden("infobip", "sms_delivery_report"),
        golden("infobip", "whatsapp_inbound_text"),
        golden("mailjet", "batch_grouped"),
        golden("messagebird", "sms_status_delivered_get"),
        golden(
            "messagebird",
            "conversations_whatsapp_message_updated_delivered",
        ),
        golden("mandrill", "sample_batch_all_types"),
        golden("sinch", "sms_recipient_report_dispatched"),
        golden("sinch", "conv_inbound_whatsapp_text"),
        golden("telnyx", "message_finalized_delivered_signed"),
        golden("telnyx", "message_received_sms"),
        golden("sparkpost", "webhook_batch"),
        golden("brevo", "email_delivered"),
        golden("brevo", "sms_sent"),
        golden("brevo", "inbound_items"),
        golden("resend", "email_sent_two_recipients"),
        golden("resend", "email_received"),
    ];
    let mut expected = 0;
    for case in &cases {
        assert!(
            !case.payloads.is_empty(),
            "{}: a case with events",
            case.provider
        );
        let (status, body) = deliver(&sidecar, case, true).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{}: {}",
            case.provider,
            String::from_utf8_lossy(&body)
        );
        let (status, body) = deliver(&sidecar, case, false).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{}: {}",
            case.provider,
            String::from_utf8_lossy(&body)
        );
        expected += case.payloads.len();
        let received = sink.wait_for(expected).await;
        let mut got: Vec<Value> = received[expected - case.payloads.len()..]
            .iter()
            .map(|r| identity(&r.json()))
            .collect();
        let mut want: Vec<Value> = case.payloads.iter().map(identity).collect();
        let key = |v: &Value| v.to_string();
        got.sort_by_key(key);
        want.sort_by_key(key);
        assert_eq!(got, want, "{}", case.provider);
    }
    // Nothing more arrives: the refused callbacks reached nobody.
    let metrics = sidecar.metrics().await;
    for case in &cases {
        let provider = format!("provider=\"{}\"", case.provider);
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("hookrelay_callbacks_rejected_total{")
                    && l.contains(&provider)
                    && l.contains("reason=\"bad_signature\"")
                    && !l.ends_with(" 0")),
            "{provider}: a refused callback counted in\n{metrics}"
        );
    }
    // Handshakes answered without an event: Mandrill checks a new webhook's URL with a
    // `HEAD` (and refuses to add it unless that is answered 200); SparkPost's webhook test
    // posts a batch with an empty event.
    let head = Request::head(format!("http://{}/cb/mandrill", sidecar.listen))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let (status, _, _) = send(head).await;
    assert_eq!(status, StatusCode::OK, "Mandrill's URL check");
    let ping = Request::post(format!("http://{}/cb/sparkpost", sidecar.listen))
        .header("content-type", "application/json")
        .header("authorization", format!("Basic {}", STANDARD.encode(BASIC)))
        .body(Full::new(Bytes::from_static(br#"[{"msys":{}}]"#)))
        .expect("request");
    let (status, _, body) = send(ping).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "SparkPost's test: {}",
        String::from_utf8_lossy(&body)
    );
    let all = eventually("the sink to have every payload", || async {
        let r = sink.received();
        (r.len() == expected).then_some(r)
    })
    .await;
    assert_eq!(all.len(), expected);
}
