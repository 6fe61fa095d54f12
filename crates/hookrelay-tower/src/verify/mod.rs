//! Verify provider callbacks on the raw body, with secrets reloadable live.
//!
//! [`VerifyLayer`] puts hookrelay's ingest check in front of any axum or hyper route: built
//! from the same provider id and `verify:` settings as a sidecar route
//! ([`CallbackPolicy::builtin`], or [`CallbackPolicy::new`] with a
//! [`Provider`](hookrelay_core::Provider)), it
//!
//! 1. buffers the request body up to the policy's limit ([`CallbackPolicy::max_body`],
//!    default [`DEFAULT_MAX_BODY`], 1 MiB); a larger body, declared by `Content-Length` or
//!    found while reading, is answered `413` without reaching the inner service;
//! 2. checks the provider's signature on the raw bytes, in constant time, with the time
//!    from the layer's clock ([`VerifyLayer::clock`]) for signed timestamps; a callback
//!    that fails is answered `401`;
//! 3. calls the inner service with the body intact, as [`Full<Bytes>`](http_body_util::Full),
//!    with the [`CallbackPolicy`] (an `Arc`) and the time it was [`Received`] in the
//!    request's extensions, where the `Callback` extractor (feature `axum`) finds them to
//!    normalize the body into events (any other handler can do the same with
//!    `Provider::normalize`).
//!
//! Every refusal is answered by the layer itself, with a one-line `text/plain` body
//! `provider: reason` (see [`Refusal`]); the inner service's errors pass through unchanged,
//! so the layer fits an axum `Router` directly. Verification fails closed: a policy
//! without the provider's secret cannot be built ([`PolicyError::Settings`]).
//!
//! The policy comes from a [`VerifyHandle`]; [`VerifyHandle::set`] applies to the next
//! request (a rotated secret, a new body limit). Each request reads the policy once.
//!
//! # What the layer does not do
//!
//! - **No I/O.** A verifier that needs a certificate fetched over the network (Amazon SNS
//!   with `fetch_cert: true`, whose [`Verifier::certificate_url`](hookrelay_core::Verifier::certificate_url)
//!   names one) is refused with `500` ([`Refusal::NeedsCertificate`]): configure the
//!   certificate itself (`cert_pem`), or verify those callbacks yourself.
//! - **No replay memory.** Mailgun signs a one-time token, not the body; the extractor
//!   hands it over (`Callback::replay_token`) for the application to refuse a second use.
//!   Providers that sign no timestamp (Meta, Twilio) are deduplicated by the events'
//!   idempotency keys.
//! - **The URL as the provider called it.** Twilio signs the full public URL; behind a
//!   proxy or a nested router the request's own URI differs, so set `public_url` in the
//!   settings (the request's query string is still the one signed).
//!
//! Put the layer on the callback routes only (`Router::route_layer`, or
//! `MethodRouter::layer` on one route), one policy per provider route: on
//! `Router::layer` it also answers the fallback's requests.
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "meta_whatsapp")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use axum::{Router, body::{Body, Bytes}, http::{Request, StatusCode}, routing::post};
//! use hookrelay_core::VerifySettings;
//! use hookrelay_tower::VerifyLayer;
//! use hookrelay_tower::verify::{CallbackPolicy, VerifyHandle};
//! use tower::ServiceExt;
//!
//! let policy = |secret: &str| {
//!     let settings = VerifySettings::new().with("app_secret", secret);
//!     CallbackPolicy::builtin("meta_whatsapp", &settings).unwrap().max_body(4096)
//! };
//! let handle = VerifyHandle::new(policy("s3cret"));
//! // The handler only ever sees genuine callbacks, body intact.
//! let app = Router::new()
//!     .route("/whatsapp", post(|body: Bytes| async move { format!("{} bytes", body.len()) }))
//!     .route_layer(VerifyLayer::new(handle.clone()));
//! let send = |signature: &str, body: &'static str| {
//!     let req = Request::post("/whatsapp")
//!         .header("x-hub-signature-256", signature)
//!         .body(Body::from(body))
//!         .unwrap();
//!     app.clone().oneshot(req)
//! };
//! // sha256= + hex HMAC-SHA256("s3cret", body), as Meta signs.
//! let signed = "sha256=55e94cedb4167d0e4e8c20f779a70292819e38da2afea51bf02dc6ecc52542ba";
//!
//! assert_eq!(send(signed, r#"{"entry":[]}"#).await.unwrap().status(), StatusCode::OK);
//! let forged = send("sha256=00", r#"{"entry":[]}"#).await.unwrap();
//! assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
//! let reason = axum::body::to_bytes(forged.into_body(), 1024).await.unwrap();
//! assert!(reason.starts_with(b"meta_whatsapp: signature check failed"));
//!
//! let huge = "x".repeat(5000).leak();
//! assert_eq!(send(signed, huge).await.unwrap().status(), StatusCode::PAYLOAD_TOO_LARGE);
//!
//! // A rotated secret applies to the next request.
//! handle.set(policy("n3w"));
//! assert_eq!(send(signed, r#"{"entry":[]}"#).await.unwrap().status(), StatusCode::UNAUTHORIZED);
//! # }
//! # #[cfg(not(feature = "meta_whatsapp"))]
//! # fn main() {}
//! ```

mod body;
#[cfg(feature = "axum")]
mod extract;
mod future;
mod layer;
mod policy;
mod service;

use std::time::SystemTime;

pub use body::ResponseBody;
#[cfg(feature = "axum")]
pub use extract::{Callback, CallbackRejection};
pub use future::ResponseFuture;
pub use layer::VerifyLayer;
pub use policy::{CallbackPolicy, DEFAULT_MAX_BODY, PolicyError, Refusal, VerifyHandle};
pub use service::Verify;

/// When [`Verify`] received a callback it passed on (read from its clock): in the request's
/// extensions beside the `Arc<`[`CallbackPolicy`]`>`, the receive time to normalize with
/// (`hookrelay_core::Context::received_at_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received(pub SystemTime);
