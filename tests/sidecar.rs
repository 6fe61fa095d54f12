//! The sidecar end to end: the real binary on free ports, real sinks, real callbacks.

use std::collections::HashSet;

use hookrelay_core::signing::{SigningSecret, verify};
use hookrelay_tests::{
    Sidecar, Sink, eventually, form, meta_signature, meta_status, twilio_signature,
};

const META_SECRET: &str = "meta-app-secret";
const TWILIO_TOKEN: &str = "twilio-auth-token";
const TWILIO_URL: &str = "https://notify.example.com/cb/twilio";
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

struct Sinks {
    wa: Sink,
    email: Sink,
    sms: Sink,
    upstream: Sink,
}

impl Sinks {
    async fn start() -> Sinks {
        Sinks {
            wa: Sink::start().await,
            email: Sink::start().await,
            sms: Sink::start().await,
            upstream: Sink::start().await,
        }
    }

    /// The test configuration, with the WhatsApp endpoint at `wa_url`.
    fn config_with(&self, wa_url: &str) -> String {
        format!(
            r#"
listen: "{{LISTEN}}"
admin: "{{ADMIN}}"
upstream: http://{upstream}
store: {{ kind: embedded, path: "{{DATA}}" }}
callbacks:
  - path: /cb/meta
    provider: meta_whatsapp
    verify: {{ app_secret: {META_SECRET}, verify_token: vt }}
  - path: /cb/twilio
    provider: twilio
    verify: {{ auth_token: {TWILIO_TOKEN}, public_url: "{TWILIO_URL}" }}
  - path: /cb/mailgun
    provider: mailgun
    verify: {{ signing_key: mailgun-key }}
  - path: /cb/postmark
    provider: postmark
    mode: tap
    verify: {{ basic_auth: "user:pass" }}
    max_body: 4KiB
endpoints:
  - name: whatsapp
    url: {wa_url}
    events: {{ whatsapp: [status, inbound_message] }}
    headers: {{ X-Team: messaging }}
    signing_secret: {WHSEC}
    retry: {{ max_attempts: 100, backoff: [20ms, 50ms] }}
  - name: email
    url: {email}
    events: {{ email: [status] }}
    statuses: [delivered, bounced]
    signing_secret: {WHSEC}
    retry: {{ max_attempts: 2, backoff: [20ms] }}
  - name: sms-delivered
    url: {sms}
    events: {{ sms: [status] }}
    statuses: [delivered]
    format: standard
"#,
            upstream = self.upstream.addr,
            email = self.email.url("/email"),
            sms = self.sms.url("/sms"),
        )
    }

    fn config(&self) -> String {
        self.config_with(&self.wa.url("/wa"))
    }
}

async fn post_meta(s: &Sidecar, body: &str) -> (http::StatusCode, bytes::Bytes) {
    let sig = meta_signature(META_SECRET, body.as_bytes());
    s.post(
        "/cb/meta",
        &[
            ("content-type", "application/json"),
            ("x-hub-signature-256", &sig),
        ],
        body.to_owned(),
    )
    .await
}

async fn post_twilio(s: &Sidecar, params: &[(&str, &str)]) -> (http::StatusCode, bytes::Bytes) {
    let sig = twilio_signature(TWILIO_TOKEN, TWILIO_URL, params);
    s.post(
        "/cb/twilio",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-twilio-signature", &sig),
        ],
        form(params),
    )
    .await
}

fn postmark(record: &str, recipient: &str, id: &str) -> String {
    serde_json::json!({
        "RecordType": record, "MessageID": id, "Recipient": recipient, "Email": recipient,
        "DeliveredAt": "2024-01-02T03:04:05Z", "BouncedAt": "2024-01-02T03:04:05Z",
        "ReceivedAt": "2024-01-02T03:04:05Z", "Type": "HardBounce", "TypeCode": 1,
        "Description": "gone", "Details": "550 no such user", "ID": 7,
        "Metadata": {"distinct_id": "user-1"}
    })
    .to_string()
}

async fn post_postmark(s: &Sidecar, body: String) -> (http::StatusCode, bytes::Bytes) {
    s.post(
        "/cb/postmark",
        &[
            ("content-type", "application/json"),
            ("authorization", "Basic dXNlcjpwYXNz"),
        ],
        body,
    )
    .await
}

fn assert_signed(r: &hookrelay_tests::Received) {
    let secret: SigningSecret = WHSEC.parse().expect("secret");
    verify(
        &[secret],
        &r.header("webhook-id"),
        &r.header("webhook-timestamp"),
        &r.header("webhook-signature"),
        &r.body,
        Some(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_secs() as i64,
        ),
    )
    .expect("a valid Standard Webhooks signature");
    assert!(r.header("webhook-id").starts_with("evt_"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_reach_the_right_endpoints_filtered_signed_and_with_headers() {
    let sinks = Sinks::start().await;
    let s = Sidecar::start(&sinks.config()).await;

    // WhatsApp: a status and an inbound message, both to the whatsapp endpoint only.
    let (st, _) = post_meta(&s, &meta_status("wamid.A", "delivered", "15551230000")).await;
    assert_eq!(st, 200);
    let inbound = serde_json::json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550001111", "phone_number_id": "42"},
        "contacts": [{"profile": {"name": "Zoë"}, "wa_id": "15551230000"}],
        "messages": [{"from": "15551230000", "id": "wamid.B", "timestamp": "1700000001", "type": "text", "text": {"body": "olá 👋"}}]}}]}]}).to_string();
    assert_eq!(post_meta(&s, &inbound).await.0, 200);

    // SMS through Twilio: delivered goes to sms-delivered, sent is filtered out.
    let base = [
        ("MessageSid", "SM1"),
        ("AccountSid", "AC1"),
        ("From", "+15550001111"),
        ("To", "+15557654321"),
    ];
    let mut delivered = base.to_vec();
    delivered.push(("MessageStatus", "delivered"));
    let (st, body) = post_twilio(&s, &delivered).await;
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("<Response>"));
    let mut sent = base.to_vec();
    sent.push(("MessageStatus", "sent"));
    sent[0] = ("MessageSid", "SM2");
    assert_eq!(post_twilio(&s, &sent).await.0, 200);

    // Email through Postmark: delivered and bounced pass the status filter, open does not.
    assert_eq!(
        post_postmark(&s, postmark("Delivery", "a@example.com", "m1"))
            .await
            .0,
        200
    );
    assert_eq!(
        post_postmark(&s, postmark("Bounce", "b@example.com", "m2"))
            .await
            .0,
        200
    );
    assert_eq!(
        post_postmark(&s, postmark("Open", "c@example.com", "m3"))
            .await
            .0,
        200
    );

    let wa = sinks.wa.wait_for(2).await;
    let email = sinks.email.wait_for(2).await;
    let sms = sinks.sms.wait_for(1).await;

    let wa_types: HashSet<String> = wa
        .iter()
        .map(|r| r.json()["event_type"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        wa_types,
        HashSet::from(["status".to_owned(), "inbound_message".to_owned()])
    );
    for r in &wa {
        assert_eq!(r.json()["channel"], "whatsapp");
        assert_eq!(r.header("x-team"), "messaging");
        assert_eq!(r.header("content-type"), "application/json");
        assert_signed(r);
    }
    let text = wa
        .iter()
        .find(|r| r.json()["event_type"] == "inbound_message")
        .expect("inbound");
    assert_eq!(
        text.json()["suprsend_inbound_message"]["text"]["body"],
        "olá 👋"
    );
    assert_eq!(text.json()["channel_value"], "+15551230000");

    let statuses: HashSet<String> = email
        .iter()
        .map(|r| {
            r.json()["suprsend_status"]["status"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(
        statuses,
        HashSet::from(["delivered".to_owned(), "bounced".to_owned()])
    );
    for r in &email {
        assert_signed(r);
        assert_eq!(r.json()["distinct_id"], "user-1");
    }
    // The standard format, unsigned (no secret on that endpoint) but with an id.
    assert_eq!(sms[0].json()["type"], "sms.status.delivered");
    assert!(sms[0].header("webhook-signature").is_empty());
    assert!(!sms[0].header("webhook-id").is_empty());

    // Tap: the Postmark callbacks also reached the upstream, unchanged.
    let up = sinks.upstream.wait_for(3).await;
    assert!(up.iter().all(|r| r.path == "/cb/postmark"));
    assert!(
        up.iter()
            .any(|r| r.body.as_ref() == postmark("Bounce", "b@example.com", "m2").as_bytes())
    );

    // Give stray deliveries a chance to show up, then check nothing leaked across.
    let m = eventually("metrics to count the deliveries", || async {
        let m = s.metrics().await;
        m.contains("outcome=\"delivered\"").then_some(m)
    })
    .await;
    assert!(m.contains("hookrelay_callbacks_received_total"));
    assert_eq!(sinks.email.received().len(), 2);
    assert_eq!(sinks.sms.received().len(), 1);
    assert_eq!(sinks.wa.received().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_other_paths_are_proxied() {
    let sinks = Sinks::start().await;
    let s = Sidecar::start(&sinks.config()).await;
    let body = meta_status("wamid.X", "read", "15551230000");

    let (st, reason) = s
        .post(
            "/cb/meta",
            &[("x-hub-signature-256", "sha256=00")],
            body.clone(),
        )
        .await;
    assert_eq!(st, 401);
    assert!(String::from_utf8_lossy(&reason).contains("meta_whatsapp"));
    let bad = "{\"object\": ";
    assert_eq!(post_meta(&s, bad).await.0, 400);
    let (st, _) = post_postmark(&s, "x".repeat(8 * 1024)).await;
    assert_eq!(st, 413);
    let (st, _) = s
        .post(
            "/cb/postmark",
            &[("authorization", "Basic d3Jvbmc6d3Jvbmc=")],
            postmark("Delivery", "a@b.c", "m"),
        )
        .await;
    assert_eq!(st, 401);

    // The Meta GET handshake.
    let req = http::Request::get(format!(
        "http://{}/cb/meta?hub.mode=subscribe&hub.verify_token=vt&hub.challenge=8899",
        s.listen
    ))
    .body(http_body_util::Full::new(bytes::Bytes::new()))
    .expect("req");
    let (st, _, b) = hookrelay_tests::send(req).await;
    assert_eq!((st.as_u16(), b.as_ref()), (200, b"8899".as_ref()));

    // Any other path goes to the upstream unchanged.
    let (st, _) = s.post("/api/send?x=1", &[("x-custom", "1")], "hello").await;
    assert_eq!(st, 200);
    let up = sinks.upstream.wait_for(1).await;
    assert_eq!(up[0].path, "/api/send?x=1");
    assert_eq!(up[0].body.as_ref(), b"hello");
    assert_eq!(up[0].header("x-custom"), "1");

    let m = s.metrics().await;
    for reason in ["bad_signature", "bad_body", "too_large"] {
        assert!(
            m.contains(&format!("reason=\"{reason}\"")),
            "{reason} counted:\n{m}"
        );
    }
    assert!(sinks.wa.received().is_empty());
}

/// Sends `head` (request line and headers, without the blank line) with `body` in chunked
/// encoding, `pieces` chunks, on a fresh connection; returns the status and the body.
async fn post_chunked(s: &Sidecar, head: &str, body: &[u8], pieces: usize) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(s.listen)
        .await
        .expect("connect");
    let mut req =
        format!("{head}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").into_bytes();
    for piece in body.chunks(body.len().div_ceil(pieces).max(1)) {
        req.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        req.extend_from_slice(piece);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    conn.write_all(&req).await.expect("write");
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await.expect("read");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

/// A body in several chunks is read whole (and still held to the route's limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_in_several_chunks_is_read_whole_and_limited() {
    let sinks = Sinks::start().await;
    let s = Sidecar::start(&sinks.config()).await;
    let body = meta_status("wamid.CHUNKED", "delivered", "15551230000");
    let sig = meta_signature(META_SECRET, body.as_bytes());
    let head = format!(
        "POST /cb/meta HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Hub-Signature-256: {sig}"
    );
    let (status, answer) = post_chunked(&s, &head, body.as_bytes(), 3).await;
    assert_eq!(
        (status, answer.as_str()),
        (200, "{\"accepted\":1,\"enqueued\":1}")
    );
    let got = sinks.wa.wait_for(1).await;
    assert!(
        got[0].body.windows(13).any(|w| w == b"wamid.CHUNKED"),
        "the whole event arrived"
    );

    // Over the postmark route's 4 KiB limit, only once the chunks are put together.
    let big = postmark(
        "Delivery",
        &format!("{}@example.com", "a".repeat(5000)),
        "m9",
    );
    let head = "POST /cb/postmark HTTP/1.1\r\nHost: x\r\nContent-Type: application/json";
    let (status, answer) = post_chunked(&s, head, big.as_bytes(), 4).await;
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("limit"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_down_for_a_while_gets_everything_once_it_is_up() {
    let sinks = Sinks::start().await;
    sinks.wa.set_status(503);
    let s = Sidecar::start(&sinks.config()).await;
    for i in 0..20 {
        assert_eq!(
            post_meta(
                &s,
                &meta_status(&format!("wamid.{i}"), "sent", "15551230000")
            )
            .await
            .0,
            200
        );
    }
    // A duplicate of an acknowledged callback is acknowledged and not delivered again.
    assert_eq!(
        post_meta(&s, &meta_status("wamid.0", "sent", "15551230000"))
            .await
            .0,
        200
    );
    eventually("retries to happen", || async {
        s.metrics()
            .await
            .contains("outcome=\"retried\"")
            .then_some(())
    })
    .await;
    sinks.wa.set_status(200);
    let got = sinks.wa.wait_for(20).await;
    let ids: HashSet<String> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), 20, "every event once, by webhook-id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_from_a_400_replay_once_the_sink_is_fixed() {
    let sinks = Sinks::start().await;
    let s = Sidecar::start(&sinks.config()).await;
    sinks.email.set_status(400);
    assert_eq!(
        post_postmark(&s, postmark("Delivery", "d@example.com", "m9"))
            .await
            .0,
        200
    );
    let dead = eventually("a dead letter", || async {
        let (_, v) = s.admin("GET", "/dead-letters?endpoint=email").await;
        v.as_array().filter(|a| !a.is_empty()).cloned()
    })
    .await;
    assert_eq!(dead[0]["status"], 400);
    assert_eq!(dead[0]["response"], "sink says no");
    assert_eq!(dead[0]["payload"]["channel_value"], "d@example.com");
    sinks.email.set_status(200);
    let (st, v) = s.admin("POST", "/dead-letters/replay?endpoint=email").await;
    assert_eq!((st.as_u16(), v["replayed"].as_u64()), (200, Some(1)));
    let got = sinks.email.wait_for(1).await;
    assert_eq!(
        got[0].header("webhook-id"),
        dead[0]["webhook_id"].as_str().unwrap_or_default()
    );
    let (_, v) = s.admin("GET", "/dead-letters?endpoint=email").await;
    assert_eq!(v.as_array().map(Vec::len), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_reroutes_and_an_invalid_reload_keeps_routing() {
    let sinks = Sinks::start().await;
    let other = Sink::start().await;
    let s = Sidecar::start(&sinks.config()).await;
    assert_eq!(
        post_meta(&s, &meta_status("wamid.r1", "sent", "15551230000"))
            .await
            .0,
        200
    );
    sinks.wa.wait_for(1).await;

    s.rewrite(&sinks.config_with(&other.url("/moved")));
    eventually("the new URL to be live", || async {
        s.metrics()
            .await
            .contains("hookrelay_config_generation 2")
            .then_some(())
    })
    .await;
    assert_eq!(
        post_meta(&s, &meta_status("wamid.r2", "sent", "15551230000"))
            .await
            .0,
        200
    );
    let moved = other.wait_for(1).await;
    assert_eq!(moved[0].path, "/moved");

    // An invalid file is refused whole; routing goes on with the running config.
    s.rewrite("endpoints: [ this is not valid");
    eventually("the rejection to be counted", || async {
        s.metrics()
            .await
            .contains("outcome=\"rejected\"")
            .then_some(())
    })
    .await;
    let (st, v) = s.admin("POST", "/-/reload").await;
    assert_eq!(st, 422);
    assert_eq!(v["outcome"], "rejected");
    assert_eq!(
        post_meta(&s, &meta_status("wamid.r3", "sent", "15551230000"))
            .await
            .0,
        200
    );
    other.wait_for(2).await;
    assert_eq!(sinks.wa.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_delivery_loses_nothing_acknowledged() {
    let sinks = Sinks::start().await;
    sinks.wa.set_status(503);
    let mut s = Sidecar::start(&sinks.config()).await;
    let n = 50;
    for i in 0..n {
        let (st, _) = post_meta(
            &s,
            &meta_status(&format!("wamid.k{i}"), "delivered", "15551230000"),
        )
        .await;
        assert_eq!(st, 200);
    }
    s.kill9();
    sinks.wa.set_status(200);
    s.spawn().await;
    let got = sinks.wa.wait_for(n).await;
    let ids: HashSet<String> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(
        ids.len(),
        n,
        "every acknowledged callback delivered after the restart"
    );
}

fn mailgun(token: &str, event_id: &str) -> String {
    hookrelay_tests::mailgun_event("mailgun-key", token, event_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_mailgun_token_is_refused() {
    let sinks = Sinks::start().await;
    let s = Sidecar::start(&sinks.config()).await;
    let ct = [("content-type", "application/json")];
    assert_eq!(
        s.post("/cb/mailgun", &ct, mailgun("token-1", "ev-1"))
            .await
            .0,
        200
    );
    // Same token, another event: the signature still verifies (it does not cover the
    // event), the token cache refuses it.
    let (st, reason) = s.post("/cb/mailgun", &ct, mailgun("token-1", "ev-2")).await;
    assert_eq!(st, 401, "{}", String::from_utf8_lossy(&reason));
    assert_eq!(
        s.post("/cb/mailgun", &ct, mailgun("token-2", "ev-3"))
            .await
            .0,
        200
    );
    let got = sinks.email.wait_for(2).await;
    assert_eq!(got.len(), 2);

    // The used tokens are in the store: a restart does not forget them.
    let mut s = s;
    s.kill9();
    s.spawn().await;
    let (st, reason) = s.post("/cb/mailgun", &ct, mailgun("token-1", "ev-4")).await;
    assert_eq!(
        st,
        401,
        "after a restart: {}",
        String::from_utf8_lossy(&reason)
    );
    assert_eq!(
        s.post("/cb/mailgun", &ct, mailgun("token-4", "ev-5"))
            .await
            .0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_pauses_the_endpoint_and_keeps_its_queue_and_sighup_reloads() {
    let sinks = Sinks::start().await;
    let s = Sidecar::start(&sinks.config()).await;
    sinks.wa.set_status(410);
    assert_eq!(
        post_meta(&s, &meta_status("wamid.g1", "sent", "15551230000"))
            .await
            .0,
        200
    );
    assert_eq!(
        post_meta(&s, &meta_status("wamid.g2", "sent", "15551230000"))
            .await
            .0,
        200
    );
    eventually("the endpoint to pause", || async {
        s.metrics()
            .await
            .contains("hookrelay_endpoint_paused{endpoint=\"whatsapp\"} 1")
            .then_some(())
    })
    .await;
    let m = s.metrics().await;
    assert!(
        m.contains("hookrelay_queue_depth{endpoint=\"whatsapp\"} 2"),
        "{m}"
    );
    sinks.wa.set_status(200);
    let (st, _) = s.admin("POST", "/endpoints/whatsapp/resume").await;
    assert_eq!(st, 200);
    sinks.wa.wait_for(2).await;

    // SIGHUP reloads (the file is the running configuration: unchanged, counted).
    let pid = s.child.as_ref().expect("running").id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    eventually("SIGHUP to reload", || async {
        s.metrics()
            .await
            .contains("hookrelay_config_reloads_total{outcome=\"unchanged\"} 1")
            .then_some(())
    })
    .await;
    assert!(s.metrics().await.contains("hookrelay_config_generation 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_attempts_in_flight_and_leaves_the_rest_queued() {
    let sinks = Sinks::start().await;
    sinks.wa.set_delay_ms(600);
    let mut s = Sidecar::start(&sinks.config()).await;
    let n = 40;
    for i in 0..n {
        assert_eq!(
            post_meta(
                &s,
                &meta_status(&format!("wamid.s{i}"), "sent", "15551230000")
            )
            .await
            .0,
            200
        );
    }
    // Attempts are in flight at the sink (it answers after 600 ms)...
    eventually("attempts in flight", || async {
        s.metrics()
            .await
            .contains("hookrelay_deliveries_in_flight 16")
            .then_some(())
    })
    .await;
    let status = s.terminate();
    assert!(status.success(), "{status:?}\n{}", s.log());
    // ...they finished before the exit, and not everything was attempted.
    let before = sinks.wa.received();
    assert!(
        before.len() >= 16 && before.len() < n,
        "{} delivered before the exit",
        before.len()
    );
    sinks.wa.set_delay_ms(0);
    s.spawn().await;
    let all = sinks.wa.wait_for(n).await;
    let ids: HashSet<String> = all.iter().map(|r| r.header("webhook-id")).collect();
    // n arrivals carrying n distinct ids: nothing finished before the exit came again.
    assert_eq!(
        (ids.len(), all.len()),
        (n, n),
        "no duplicates after a graceful stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_retry_is_not_left_waiting_for_new_traffic() {
    let sinks = Sinks::start().await;
    sinks.wa.set_status(503);
    let s = Sidecar::start(&sinks.config()).await;
    assert_eq!(
        post_meta(&s, &meta_status("wamid.one", "sent", "15551230000"))
            .await
            .0,
        200
    );
    eventually("a retry", || async {
        s.metrics()
            .await
            .contains("outcome=\"retried\"")
            .then_some(())
    })
    .await;
    sinks.wa.set_status(200);
    // Nothing else arrives to wake the lane: the retry must come on its own schedule.
    sinks.wa.wait_for(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_answers_the_provider_itself_when_the_upstream_is_down() {
    let sinks = Sinks::start().await;
    let dead_upstream = format!("http://127.0.0.1:{}", hookrelay_tests::free_port());
    let config = sinks.config().replace(
        &format!("upstream: http://{}", sinks.upstream.addr),
        &format!("upstream: {dead_upstream}"),
    );
    let s = Sidecar::start(&config).await;
    let (st, _) = post_postmark(&s, postmark("Delivery", "t@example.com", "m-tap")).await;
    assert_eq!(
        st, 200,
        "the callback is durable, so the provider gets its 2xx"
    );
    sinks.email.wait_for(1).await;
    // Other paths still report the upstream's failure.
    assert_eq!(s.post("/api/x", &[], "x").await.0, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_never_has_more_attempts_in_flight_than_its_concurrency() {
    let sinks = Sinks::start().await;
    sinks.wa.hold();
    let config = sinks.config().replace(
        &format!("url: {}\n", sinks.wa.url("/wa")),
        &format!("url: {}\n    concurrency: 2\n", sinks.wa.url("/wa")),
    );
    assert!(config.contains("concurrency: 2"), "{config}");
    let s = Sidecar::start(&config).await;
    for i in 0..8 {
        let body = meta_status(&format!("wamid.c{i}"), "delivered", "15551230000");
        assert_eq!(post_meta(&s, &body).await.0, 200);
    }
    // All 8 are queued; the sink answers none of them: exactly 2 may be waiting there.
    eventually("exactly two attempts held at the sink", || async {
        (sinks.wa.in_flight() == 2).then_some(())
    })
    .await;
    sinks.wa.release();
    sinks.wa.wait_for(8).await;
    assert_eq!(sinks.wa.most_in_flight(), 2);
}
