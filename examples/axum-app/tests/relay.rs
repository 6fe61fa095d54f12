//! Drives the app over real HTTP: headers, signature, 429, and a live reload.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hookrelay_core::signing::{SigningSecret, verify};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

const SECRET_A: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SECRET_B: &str = "whsec_c2Vjb25kIHNlY3JldCBmb3Igcm90YXRpb24=";
const DEADLINE: Duration = Duration::from_secs(10);

/// A delivery the sink received.
struct Delivery {
    headers: HeaderMap,
    body: Bytes,
}

/// A webhook endpoint on 127.0.0.1:0 that reports every delivery.
async fn sink() -> (SocketAddr, mpsc::UnboundedReceiver<Delivery>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(Delivery { headers, body });
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
    let addr = listener.local_addr().expect("sink address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, rx)
}

fn config(
    sink: SocketAddr,
    inbound: (u32, u32),
    token: &str,
    secret: &str,
    served_by: &str,
) -> String {
    serde_json::json!({
        "listen": "127.0.0.1:0",
        "endpoint": format!("http://{sink}/hook"),
        "inbound_rate_limit": { "per_second": inbound.0, "burst": inbound.1 },
        "outbound_rate_limit": { "per_second": 100, "burst": 10 },
        "headers": { "authorization": format!("Bearer {token}") },
        "response_headers": { "x-served-by": served_by },
        "signing_secrets": [secret],
    })
    .to_string()
}

/// Replaces the file atomically, as a careful editor or a ConfigMap update does.
fn write_atomically(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).expect("write config");
    std::fs::rename(&tmp, path).expect("rename config");
}

fn temp_config_path() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("axum-app-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join("config.json")
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl Http {
    async fn send(&self, method: &str, path: &str, body: &'static str) -> (StatusCode, HeaderMap) {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("valid request");
        let res = timeout(DEADLINE, self.client.request(req))
            .await
            .expect("answered in time")
            .expect("HTTP exchange");
        let (parts, body) = res.into_parts();
        body.collect().await.expect("response body");
        (parts.status, parts.headers)
    }
}

async fn delivery(rx: &mut mpsc::UnboundedReceiver<Delivery>) -> Delivery {
    timeout(DEADLINE, rx.recv())
        .await
        .expect("delivered in time")
        .expect("sink running")
}

fn signed_by(d: &Delivery, secret: &str) -> bool {
    let secret: SigningSecret = secret.parse().expect("secret");
    let h = |name: &str| d.headers[name].to_str().expect("ascii").to_owned();
    verify(
        &[secret],
        &h("webhook-id"),
        &h("webhook-timestamp"),
        &h("webhook-signature"),
        &d.body,
        None,
    )
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_signed_with_headers_limits_and_reloads() {
    let (sink_addr, mut deliveries) = sink().await;
    let path = temp_config_path();
    write_atomically(&path, &config(sink_addr, (1, 3), "one", SECRET_A, "v1"));
    let app = axum_app::start(path.clone()).await.expect("app starts");
    assert_eq!(app.generation(), 1);
    let http = Http {
        client: Client::builder(TokioExecutor::new()).build_http(),
        base: format!("http://{}", app.addr()),
    };

    // A relayed event: configured header, Standard Webhooks signature over the body.
    let (status, headers) = http.send("POST", "/events", r#"{"n":1}"#).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(headers["x-served-by"], "v1");
    let d = delivery(&mut deliveries).await;
    assert_eq!(d.body, r#"{"n":1}"#);
    assert_eq!(d.headers["authorization"], "Bearer one");
    assert!(signed_by(&d, SECRET_A));

    // Inbound: 1/s with a burst of 3, one used; within the next three, one is refused.
    let mut refused = None;
    for _ in 0..3 {
        let (status, headers) = http.send("GET", "/health", "").await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(headers);
            break;
        }
        assert_eq!(status, StatusCode::OK);
    }
    let refused = refused.expect("a request over the burst is refused");
    assert_eq!(refused["retry-after"], "1");

    // Reload: a higher inbound rate, a new token, a new secret, a new response header.
    write_atomically(
        &path,
        &config(sink_addr, (1000, 100), "two", SECRET_B, "v2"),
    );
    wait_until("the reload", || app.generation() == 2).await;
    // The new rate applies at once: the old one (1/s, bucket empty) would refuse these.
    for _ in 0..10 {
        let (status, headers) = http.send("GET", "/health", "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["x-served-by"], "v2");
    }
    let (status, _) = http.send("POST", "/events", r#"{"n":2}"#).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let d = delivery(&mut deliveries).await;
    assert_eq!(d.headers["authorization"], "Bearer two");
    assert!(signed_by(&d, SECRET_B));
    assert!(!signed_by(&d, SECRET_A));

    // A broken file (CR/LF in a header value) is refused; the running config stays.
    write_atomically(
        &path,
        &config(
            sink_addr,
            (1000, 100),
            "three\r\nx-injected: 1",
            SECRET_A,
            "v3",
        ),
    );
    wait_until("the refusal", || app.reload_errors() == 1).await;
    assert_eq!(app.generation(), 2);
    let (status, headers) = http.send("POST", "/events", r#"{"n":3}"#).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(headers["x-served-by"], "v2");
    let d = delivery(&mut deliveries).await;
    assert_eq!(d.headers["authorization"], "Bearer two");
    assert!(!d.headers.contains_key("x-injected"));
    assert!(signed_by(&d, SECRET_B));

    app.shutdown().await.expect("clean shutdown");
    let _ = std::fs::remove_dir_all(path.parent().expect("temp dir"));
}

#[test]
fn the_shipped_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.json");
    axum_app::Config::load(&path).expect("examples/axum-app/config.json validates");
}
