//! Rate limit, header and signing layers under axum, with live reloads.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::routing::{get, post};
use hookrelay_core::signing::{Signer, SigningSecret, verify};
use hookrelay_tower::gcra::{ByPath, Gcra, ThrottleHandle};
use hookrelay_tower::set_headers::{HeaderSet, HeaderSetHandle};
use hookrelay_tower::sign::SignHandle;
use hookrelay_tower::{RateLimitLayer, SetRequestHeadersLayer, SignLayer};
use tower::{Layer, ServiceBuilder, ServiceExt};

fn gcra(per_second: u32, burst: u32) -> Gcra {
    Gcra::new(
        NonZeroU32::new(per_second).expect("non-zero"),
        NonZeroU32::new(burst).expect("non-zero"),
    )
}

async fn status(app: &Router, path: &str) -> (StatusCode, HeaderMap) {
    let req = Request::get(path)
        .body(Body::empty())
        .expect("valid request");
    let res = app.clone().oneshot(req).await.expect("infallible");
    (res.status(), res.headers().clone())
}

#[tokio::test(start_paused = true)]
async fn rate_limit_answers_429_with_retry_after_across_clones_and_reloads() {
    let handle = ThrottleHandle::new(gcra(2, 2));
    let app = Router::new()
        .route("/a", get(|| async { "a" }))
        .route("/b", get(|| async { "b" }))
        .layer(RateLimitLayer::new(handle.clone()));
    assert_eq!(status(&app, "/a").await.0, StatusCode::OK);
    assert_eq!(status(&app, "/b").await.0, StatusCode::OK);
    let (code, headers) = status(&app, "/a").await;
    assert_eq!(code, StatusCode::TOO_MANY_REQUESTS);
    // The next slot is 500 ms away: rounded up to whole seconds.
    assert_eq!(headers[RETRY_AFTER], "1");

    // Unchanged policy: still refused (no refill); after 500 ms: admitted.
    assert!(!handle.set(gcra(2, 2)));
    assert_eq!(status(&app, "/a").await.0, StatusCode::TOO_MANY_REQUESTS);
    tokio::time::advance(Duration::from_millis(500)).await;
    assert_eq!(status(&app, "/a").await.0, StatusCode::OK);
    assert_eq!(status(&app, "/a").await.0, StatusCode::TOO_MANY_REQUESTS);

    // A slower rate: the next request sees it (fresh bucket of 1, then 1 s apart).
    assert!(handle.set(gcra(1, 1)));
    assert_eq!(status(&app, "/a").await.0, StatusCode::OK);
    let (code, headers) = status(&app, "/a").await;
    assert_eq!(code, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers[RETRY_AFTER], "1");
}

#[tokio::test(start_paused = true)]
async fn rate_limit_per_path() {
    let app = Router::new()
        .route("/a", get(|| async { "a" }))
        .route("/b", get(|| async { "b" }))
        .layer(RateLimitLayer::new(gcra(1, 1)).key_by(ByPath));
    assert_eq!(status(&app, "/a").await.0, StatusCode::OK);
    assert_eq!(status(&app, "/b").await.0, StatusCode::OK);
    assert_eq!(status(&app, "/a").await.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(status(&app, "/b").await.0, StatusCode::TOO_MANY_REQUESTS);
}

/// What a webhook receiver saw.
#[derive(Debug, Clone)]
struct Seen {
    headers: HeaderMap,
    body: Bytes,
}

fn receiver() -> (Router, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let log = Arc::clone(&log);
            async move {
                log.lock().expect("log").push(Seen { headers, body });
                StatusCode::NO_CONTENT
            }
        }),
    );
    (app, seen)
}

fn header<'a>(seen: &'a Seen, name: &str) -> &'a str {
    seen.headers[name].to_str().expect("ascii header")
}

fn secret(s: &str) -> SigningSecret {
    s.parse().expect("valid secret")
}

#[tokio::test]
async fn headers_then_signature_on_outgoing_requests_with_reloads() {
    let (receiver, seen) = receiver();
    let old = secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    let new = secret("whsec_c2Vjb25kIHNlY3JldCBmb3Igcm90YXRpb24=");
    let headers = HeaderSetHandle::new(
        HeaderSet::new()
            .overriding("authorization", "Bearer one")
            .and_then(|s| s.if_absent("x-source", "hookrelay"))
            .expect("valid headers"),
    );
    let signer = SignHandle::new(Signer::new(vec![old.clone()]));
    // The delivery stack: headers, then signing, then the endpoint.
    let client = ServiceBuilder::new()
        .layer(SetRequestHeadersLayer::new(headers.clone()))
        .layer(SignLayer::new(signer.clone()).clock(|| 1_700_000_000))
        .service(receiver);
    let send = |body: &'static str, id: Option<&'static str>| {
        let mut req = Request::post("/hook")
            .header("x-source", "app")
            .header("webhook-signature", "v1,stale");
        if let Some(id) = id {
            req = req.header("webhook-id", id);
        }
        client
            .clone()
            .oneshot(req.body(Body::from(body)).expect("valid request"))
    };

    let res = send(r#"{"n":1}"#, None).await.expect("sent");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let first = seen.lock().expect("log")[0].clone();
    assert_eq!(first.body, r#"{"n":1}"#);
    assert_eq!(header(&first, "authorization"), "Bearer one");
    assert_eq!(
        header(&first, "x-source"),
        "app",
        "if-absent keeps the request's own"
    );
    assert_eq!(header(&first, "webhook-timestamp"), "1700000000");
    let id = header(&first, "webhook-id");
    assert!(id.starts_with("msg_") && id.len() == 36, "{id}");
    let sig = header(&first, "webhook-signature");
    assert_eq!(sig.split(' ').count(), 1, "the stale signature is replaced");
    verify(
        std::slice::from_ref(&old),
        id,
        "1700000000",
        sig,
        &first.body,
        None,
    )
    .expect("valid signature");

    // A retry keeps its id; two fresh messages get distinct ids.
    send(r#"{"n":1}"#, Some("msg_retry")).await.expect("sent");
    send(r#"{"n":2}"#, None).await.expect("sent");
    {
        let log = seen.lock().expect("log");
        assert_eq!(header(&log[1], "webhook-id"), "msg_retry");
        assert_ne!(header(&log[2], "webhook-id"), header(&log[0], "webhook-id"));
    }

    // Reload: new header value, rotation to two secrets.
    headers.set(
        HeaderSet::new()
            .overriding("authorization", "Bearer two")
            .expect("valid"),
    );
    signer.set(Signer::new(vec![new.clone(), old.clone()]));
    send(r#"{"n":3}"#, None).await.expect("sent");
    let last = seen.lock().expect("log")[3].clone();
    assert_eq!(header(&last, "authorization"), "Bearer two");
    assert_eq!(header(&last, "x-source"), "app");
    let (id, sig) = (
        header(&last, "webhook-id"),
        header(&last, "webhook-signature"),
    );
    assert_eq!(sig.split(' ').count(), 2);
    verify(
        std::slice::from_ref(&new),
        id,
        "1700000000",
        sig,
        &last.body,
        None,
    )
    .expect("new secret");
    verify(&[old], id, "1700000000", sig, &last.body, None).expect("old secret");

    // No secret: id and timestamp, no signature.
    signer.set(Signer::new(vec![]));
    send("{}", None).await.expect("sent");
    let unsigned = seen.lock().expect("log")[4].clone();
    assert!(unsigned.headers.contains_key("webhook-id"));
    assert!(!unsigned.headers.contains_key("webhook-signature"));
}

/// A request body whose connection breaks.
struct FailingBody;

impl http_body::Body for FailingBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        std::task::Poll::Ready(Some(Err(std::io::Error::other("connection reset"))))
    }
}

#[tokio::test]
async fn sign_reports_a_failing_body_as_a_typed_error() {
    let (receiver, seen) = receiver();
    let secret = secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    let client = SignLayer::new(Signer::new(vec![secret])).layer(receiver);
    let req = Request::post("/hook")
        .body(FailingBody)
        .expect("valid request");
    let err = client.oneshot(req).await.expect_err("body error");
    assert!(
        err.downcast_ref::<hookrelay_tower::sign::SignError>()
            .is_some(),
        "{err}"
    );
    assert!(seen.lock().expect("log").is_empty(), "nothing sent");
}
