//! The verify layer and the `Callback` extractor behind a real axum server on a loopback
//! socket, spoken to in raw HTTP/1.1: signed callbacks reach the handler as events, forged
//! and oversized ones never do, and a reload applies to the next request.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use axum::Router;
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use hookrelay_core::{EventKind, Normalized, Status, VerifySettings};
use hookrelay_tower::VerifyLayer;
use hookrelay_tower::verify::{Callback, CallbackPolicy, VerifyHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const META_BODY: &str = include_str!("fixtures/meta_whatsapp/inbound_text_basic.json");
const TWILIO_BODY: &str = include_str!("fixtures/twilio/whatsapp_status_delivered.txt");
const TWILIO_URL: &str = "https://hooks.example.com/callbacks/twilio";
/// How long any one exchange may take before the test fails (a deadline, not a wait).
const DEADLINE: Duration = Duration::from_secs(10);

/// What reached the handler.
type Log = Arc<Mutex<Vec<Normalized>>>;

fn seen(log: &Log) -> Vec<Normalized> {
    log.lock().expect("log").clone()
}

/// A handler that logs the normalized callback and answers as the provider expects.
fn recording(log: &Log) -> impl Fn(Callback) -> std::future::Ready<Response> + Clone + use<> {
    let log = Arc::clone(log);
    move |callback: Callback| {
        log.lock().expect("log").push(callback.normalized.clone());
        std::future::ready(callback.answer())
    }
}

async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    addr
}

/// An HTTP/1.1 answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Writes `raw` on a fresh connection and reads the answer until the server closes it.
async fn exchange(addr: SocketAddr, raw: &[u8]) -> Reply {
    let io = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(raw).await.expect("write");
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await.expect("read");
        bytes
    };
    let bytes = tokio::time::timeout(DEADLINE, io)
        .await
        .expect("answered in time");
    let text = String::from_utf8(bytes).expect("utf-8 answer");
    let (head, rest) = text.split_once("\r\n\r\n").expect("a head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let mut reply = Reply {
        status,
        head: head.to_owned(),
        body: rest.to_owned(),
    };
    if reply
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        reply.body = dechunk(rest);
    }
    reply
}

fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if size == 0 {
            break;
        }
        body.push_str(&tail[..size]);
        rest = &tail[size + 2..];
    }
    body
}

/// A request with `Connection: close`, a `Content-Length` and the body.
fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut raw = format!("{method} {target} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n");
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    raw.into_bytes()
}

/// `sha256=` + hex HMAC-SHA256(app_secret, body): Meta's `X-Hub-Signature-256`.
fn meta_signature(app_secret: &str, body: &str) -> String {
    let mut mac =
        <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(app_secret.as_bytes()).expect("key");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// base64 HMAC-SHA1(auth_token, url + the form's name+value pairs sorted): Twilio's
/// `X-Twilio-Signature`.
fn twilio_signature(auth_token: &str, url: &str, form: &str) -> String {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(form.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.sort();
    let mut mac =
        <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(auth_token.as_bytes()).expect("key");
    mac.update(url.as_bytes());
    for (k, v) in &pairs {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    STANDARD.encode(mac.finalize().into_bytes())
}

fn meta_policy(app_secret: &str) -> CallbackPolicy {
    let settings = VerifySettings::new()
        .with("app_secret", app_secret)
        .with("verify_token", "subscribe-me");
    CallbackPolicy::builtin("meta_whatsapp", &settings)
        .expect("meta policy")
        .max_body(4096)
}

fn twilio_policy(auth_token: &str) -> CallbackPolicy {
    let settings = VerifySettings::new()
        .with("auth_token", auth_token)
        .with("public_url", TWILIO_URL);
    CallbackPolicy::builtin("twilio", &settings).expect("twilio policy")
}

/// Meta's route: `GET` handshakes and `POST` events, the layer on the route only.
async fn meta_server(handle: &VerifyHandle) -> (SocketAddr, Log) {
    let log = Log::default();
    let handler = recording(&log);
    let app = Router::new()
        .route("/callbacks/meta", get(handler.clone()).post(handler))
        .route_layer(VerifyLayer::new(handle.clone()));
    (serve(app).await, log)
}

async fn meta_post(addr: SocketAddr, signature: &str, body: &str) -> Reply {
    let headers = [
        ("content-type", "application/json"),
        ("x-hub-signature-256", signature),
    ];
    exchange(addr, &request("POST", "/callbacks/meta", &headers, body)).await
}

#[tokio::test]
async fn meta_signed_callback_reaches_the_handler_as_events_forged_never_does() {
    let handle = VerifyHandle::new(meta_policy("app-secret"));
    let (addr, log) = meta_server(&handle).await;

    let reply = meta_post(addr, &meta_signature("app-secret", META_BODY), META_BODY).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, r#"{"accepted":1,"enqueued":1}"#);
    let got = seen(&log);
    assert_eq!(got.len(), 1);
    let [event] = got[0].events.as_slice() else {
        panic!("one event: {:?}", got[0]);
    };
    assert_eq!(event.vendor_name, "meta_whatsapp");
    let EventKind::Inbound(message) = &event.kind else {
        panic!("an inbound message: {event:?}");
    };
    assert_eq!(message.from, "+16315551181");
    assert_eq!(message.text.as_deref(), Some("this is a text message"));

    // Signed with another secret, a body changed after signing, no signature: 401 with
    // the reason, and the handler never runs.
    let tampered = META_BODY.replace("this is a text message", "pay 1000 to mallory");
    for (signature, body) in [
        (meta_signature("not-the-secret", META_BODY), META_BODY),
        (meta_signature("app-secret", META_BODY), tampered.as_str()),
    ] {
        let reply = meta_post(addr, &signature, body).await;
        assert_eq!(reply.status, 401, "{reply:?}");
        assert_eq!(
            reply.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(
            reply.body,
            "meta_whatsapp: signature check failed: signature mismatch\n"
        );
    }
    let unsigned = [("content-type", "application/json")];
    let reply = exchange(
        addr,
        &request("POST", "/callbacks/meta", &unsigned, META_BODY),
    )
    .await;
    assert_eq!(reply.status, 401, "{reply:?}");
    assert!(
        reply
            .body
            .starts_with("meta_whatsapp: signature check failed: missing signature"),
        "{reply:?}"
    );
    assert_eq!(
        seen(&log).len(),
        1,
        "no forged callback reached the handler"
    );
}

#[tokio::test]
async fn meta_handshake_is_answered_with_the_challenge_when_the_token_matches() {
    let handle = VerifyHandle::new(meta_policy("app-secret"));
    let (addr, log) = meta_server(&handle).await;
    let get = |token: &str| {
        let target = format!(
            "/callbacks/meta?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444"
        );
        request("GET", &target, &[], "")
    };

    let reply = exchange(addr, &get("subscribe-me")).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, "1158201444");
    assert_eq!(reply.header("content-type"), Some("text/plain"));
    let got = seen(&log);
    assert!(got[0].events.is_empty());
    assert_eq!(
        got[0].control.as_ref().and_then(|c| c.reply()),
        Some("1158201444")
    );

    let reply = exchange(addr, &get("guessed")).await;
    assert_eq!(reply.status, 401, "{reply:?}");
    assert_eq!(seen(&log).len(), 1);
}

#[tokio::test]
async fn oversized_bodies_get_413_declared_or_streamed() {
    let handle = VerifyHandle::new(meta_policy("app-secret"));
    let (addr, log) = meta_server(&handle).await;

    // Declared too large: refused on the head alone (the body is never sent).
    let head = "POST /callbacks/meta HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\
                x-hub-signature-256: sha256=00\r\ncontent-length: 5000000\r\n\r\n";
    let reply = exchange(addr, head.as_bytes()).await;
    assert_eq!(reply.status, 413, "{reply:?}");
    assert_eq!(
        reply.body,
        "meta_whatsapp: body of 5000000 bytes exceeds the limit of 4096 bytes\n"
    );

    // Streamed without a length: refused once the limit is passed. The chunk is one byte
    // over the limit and nothing follows it, so the server has read all that was sent.
    let big = "x".repeat(4097);
    let raw = format!(
        "POST /callbacks/meta HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\
         x-hub-signature-256: {}\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{big}",
        meta_signature("app-secret", &big),
        big.len(),
    );
    let reply = exchange(addr, raw.as_bytes()).await;
    assert_eq!(reply.status, 413, "{reply:?}");
    assert_eq!(
        reply.body,
        "meta_whatsapp: body exceeds the limit of 4096 bytes\n"
    );
    assert!(seen(&log).is_empty(), "nothing reached the handler");
}

#[tokio::test]
async fn a_reloaded_secret_applies_to_the_next_request() {
    let handle = VerifyHandle::new(meta_policy("old-secret"));
    let (addr, log) = meta_server(&handle).await;
    let signed = |secret| meta_signature(secret, META_BODY);

    assert_eq!(
        meta_post(addr, &signed("old-secret"), META_BODY)
            .await
            .status,
        200
    );
    handle.set(meta_policy("new-secret"));
    assert_eq!(
        meta_post(addr, &signed("old-secret"), META_BODY)
            .await
            .status,
        401
    );
    assert_eq!(
        meta_post(addr, &signed("new-secret"), META_BODY)
            .await
            .status,
        200
    );
    assert_eq!(seen(&log).len(), 2);
}

#[tokio::test]
async fn twilio_signed_status_reaches_the_handler_forged_never_does_reload_applies() {
    let handle = VerifyHandle::new(twilio_policy("auth-token"));
    let log = Log::default();
    let app = Router::new()
        .route("/callbacks/twilio", post(recording(&log)))
        .layer(
            VerifyLayer::new(handle.clone())
                .clock(|| UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        );
    let addr = serve(app).await;
    // The sending app's correlation id rides in the query, which Twilio signs too.
    let target = "/callbacks/twilio?distinct_id=u1";
    let signed_url = format!("{TWILIO_URL}?distinct_id=u1");
    let send = |signature: String, body: &str| {
        let headers = [
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-twilio-signature", signature.as_str()),
        ];
        let raw = request("POST", target, &headers, body);
        async move { exchange(addr, &raw).await }
    };

    let reply = send(
        twilio_signature("auth-token", &signed_url, TWILIO_BODY),
        TWILIO_BODY,
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("content-type"), Some("text/xml"));
    assert!(reply.body.contains("<Response></Response>"), "{reply:?}");
    let got = seen(&log);
    let [event] = got[0].events.as_slice() else {
        panic!("one event: {:?}", got[0]);
    };
    assert_eq!(event.channel_value, "+31612345678");
    assert_eq!(event.correlation["distinct_id"], "u1");
    let EventKind::Status(update) = &event.kind else {
        panic!("a status: {event:?}");
    };
    assert_eq!(update.status, Status::Delivered);
    // Twilio sends no event time: the layer's clock is the receive time.
    assert_eq!(update.timestamp_ms, 1_700_000_000_000);

    // The status changed after signing; signed for another URL; another token.
    let forged = TWILIO_BODY.replace("MessageStatus=delivered", "MessageStatus=read");
    let cases = [
        (
            twilio_signature("auth-token", &signed_url, TWILIO_BODY),
            forged.as_str(),
        ),
        (
            twilio_signature("auth-token", "https://evil.example.com/x", TWILIO_BODY),
            TWILIO_BODY,
        ),
        (
            twilio_signature("guessed", &signed_url, TWILIO_BODY),
            TWILIO_BODY,
        ),
    ];
    for (signature, body) in cases {
        let reply = send(signature, body).await;
        assert_eq!(reply.status, 401, "{reply:?}");
        assert_eq!(
            reply.body,
            "twilio: signature check failed: signature mismatch\n"
        );
    }
    assert_eq!(
        seen(&log).len(),
        1,
        "no forged callback reached the handler"
    );

    // A rotated auth token applies to the next request.
    handle.set(twilio_policy("rotated-token"));
    let old = send(
        twilio_signature("auth-token", &signed_url, TWILIO_BODY),
        TWILIO_BODY,
    )
    .await;
    assert_eq!(old.status, 401, "{old:?}");
    let new = send(
        twilio_signature("rotated-token", &signed_url, TWILIO_BODY),
        TWILIO_BODY,
    )
    .await;
    assert_eq!(new.status, 200, "{new:?}");
    assert_eq!(seen(&log).len(), 2);
}

#[tokio::test]
async fn a_genuine_body_the_provider_cannot_read_is_400_with_the_reason() {
    let handle = VerifyHandle::new(meta_policy("app-secret"));
    let (addr, log) = meta_server(&handle).await;
    let body = "not json";
    let reply = meta_post(addr, &meta_signature("app-secret", body), body).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(
        reply
            .body
            .starts_with("meta_whatsapp: cannot normalize the callback: invalid JSON body"),
        "{reply:?}"
    );
    assert_eq!(reply.body.lines().count(), 1);
    assert!(seen(&log).is_empty());
}

#[tokio::test]
async fn the_extractor_without_the_layer_is_500_with_the_reason() {
    let log = Log::default();
    let app = Router::new().route("/callbacks/meta", post(recording(&log)));
    let addr = serve(app).await;
    let reply = meta_post(addr, &meta_signature("app-secret", META_BODY), META_BODY).await;
    assert_eq!(reply.status, 500, "{reply:?}");
    assert_eq!(
        reply.body,
        "callback: no verified callback: put hookrelay_tower::VerifyLayer in front of this route\n"
    );
    assert!(seen(&log).is_empty());
}
