//! The receiver over real HTTP: signed callbacks reach the handler as normalized events,
//! forged ones get 401 and never reach it, and a reload applies to the next request.

use std::net::SocketAddr;

use axum_receiver::{Provider, Receiver, Settings};
use bytes::Bytes;
use hookrelay_core::{Channel, Event};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;

const TWILIO_URL: &str = "https://notify.example.com/callbacks/twilio";

fn provider(pairs: &[(&str, &str)]) -> Provider {
    Provider(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

fn settings(meta_secret: &str) -> Settings {
    Settings {
        listen: "127.0.0.1:0".into(),
        twilio: provider(&[("auth_token", "twilio-token"), ("public_url", TWILIO_URL)]),
        meta_whatsapp: provider(&[("app_secret", meta_secret), ("verify_token", "vt")]),
    }
}

async fn serve(receiver: &Receiver) -> (SocketAddr, mpsc::UnboundedReceiver<Event>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = receiver.router(tx);
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, rx)
}

async fn send(req: http::Request<Full<Bytes>>) -> (u16, String) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let resp = client.request(req).await.expect("response");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn meta_status(wamid: &str) -> String {
    serde_json::json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "statuses": [{"id": wamid, "status": "delivered", "timestamp": "1700000000", "recipient_id": "15551234567"}]
    }}]}]})
    .to_string()
}

fn meta_signature(secret: &str, body: &str) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn post_meta(addr: SocketAddr, body: &str, signature: &str) -> (u16, String) {
    let req = http::Request::post(format!("http://{addr}/callbacks/whatsapp"))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", signature)
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    send(req).await
}

fn twilio_signature(token: &str, params: &[(&str, &str)]) -> String {
    use base64::Engine;
    use hmac::{Hmac, KeyInit, Mac};
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut data = TWILIO_URL.to_owned();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(token.as_bytes()).expect("key");
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

async fn post_twilio(addr: SocketAddr, params: &[(&str, &str)], signature: &str) -> (u16, String) {
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        form.append_pair(k, v);
    }
    let req = http::Request::post(format!("http://{addr}/callbacks/twilio"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", signature)
        .body(Full::new(Bytes::from(form.finish())))
        .expect("request");
    send(req).await
}

const TWILIO_STATUS: &[(&str, &str)] = &[
    ("AccountSid", "AC0000000000000000000000000000000"),
    ("MessageSid", "SM1"),
    ("MessageStatus", "delivered"),
    ("To", "+15558675310"),
    ("From", "+15017122661"),
];

#[tokio::test]
async fn signed_callbacks_reach_the_handler_as_normalized_events() {
    let receiver = Receiver::new(&settings("app-secret")).expect("policies");
    let (addr, mut events) = serve(&receiver).await;

    let body = meta_status("wamid.1");
    let (status, answer) = post_meta(addr, &body, &meta_signature("app-secret", &body)).await;
    assert_eq!(status, 200, "{answer}");
    let event = events.recv().await.expect("an event");
    assert_eq!(event.channel, Channel::Whatsapp);
    assert_eq!(event.channel_value, "+15551234567");

    let (status, answer) = post_twilio(
        addr,
        TWILIO_STATUS,
        &twilio_signature("twilio-token", TWILIO_STATUS),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("<Response>"), "Twilio gets TwiML: {answer}");
    let event = events.recv().await.expect("an event");
    assert_eq!(event.channel, Channel::Sms);
    assert_eq!(event.channel_value, "+15558675310");

    // Meta's subscription handshake is answered with the challenge.
    let req = http::Request::get(format!(
        "http://{addr}/callbacks/whatsapp?hub.mode=subscribe&hub.verify_token=vt&hub.challenge=42"
    ))
    .body(Full::new(Bytes::new()))
    .expect("request");
    assert_eq!(send(req).await, (200, "42".to_owned()));
    assert!(events.try_recv().is_err(), "a handshake carries no event");
}

#[tokio::test]
async fn forged_callbacks_get_401_and_never_reach_the_handler() {
    let receiver = Receiver::new(&settings("app-secret")).expect("policies");
    let (addr, mut events) = serve(&receiver).await;

    let body = meta_status("wamid.forged");
    let (status, reason) = post_meta(addr, &body, &meta_signature("guessed", &body)).await;
    assert_eq!(status, 401);
    assert_eq!(reason.lines().count(), 1, "one line: {reason}");
    let (status, _) = post_meta(addr, &body, "").await;
    assert_eq!(status, 401, "no signature at all");

    let mut tampered = TWILIO_STATUS.to_vec();
    let signature = twilio_signature("twilio-token", &tampered);
    tampered[2] = ("MessageStatus", "failed");
    let (status, _) = post_twilio(addr, &tampered, &signature).await;
    assert_eq!(status, 401, "a changed field breaks the signature");

    // Every refusal answered before anything reached the handler.
    assert!(events.try_recv().is_err());
}

#[tokio::test]
async fn a_reload_of_the_secret_applies_to_the_next_request() {
    let receiver = Receiver::new(&settings("old-secret")).expect("policies");
    let (addr, mut events) = serve(&receiver).await;
    let body = meta_status("wamid.r");
    assert_eq!(
        post_meta(addr, &body, &meta_signature("old-secret", &body))
            .await
            .0,
        200
    );
    assert!(events.recv().await.is_some());

    receiver.reload(&settings("new-secret")).expect("reload");
    assert_eq!(
        post_meta(addr, &body, &meta_signature("old-secret", &body))
            .await
            .0,
        401
    );
    assert_eq!(
        post_meta(addr, &body, &meta_signature("new-secret", &body))
            .await
            .0,
        200
    );
    assert!(events.recv().await.is_some());

    // Settings without the secret are refused; the running ones stay.
    let mut broken = settings("");
    broken.meta_whatsapp = provider(&[("verify_token", "vt")]);
    assert!(receiver.reload(&broken).is_err());
    assert_eq!(
        post_meta(addr, &body, &meta_signature("new-secret", &body))
            .await
            .0,
        200
    );
}
