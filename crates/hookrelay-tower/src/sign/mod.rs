//! Sign request bodies with Standard Webhooks, with secrets reloadable live.
//!
//! [`SignLayer`] buffers the request body once, then sets `webhook-id` (kept when the
//! request already has a valid one, so it stays stable across retries; otherwise a fresh
//! `msg_…` id), `webhook-timestamp` (Unix seconds of this attempt) and, when the
//! [`Signer`] has secrets, `webhook-signature` (one `v1,…`
//! per secret, for rotation), replacing any stale signature. The inner service receives the
//! buffered body as [`Full<Bytes>`](http_body_util::Full), ready to be sent or retried.
//!
//! The secrets come from a [`SignHandle`]; [`SignHandle::set`] applies to the next request.
//! The timestamp comes from an injectable clock ([`SignLayer::clock`]).
//!
//! # Example
//!
//! On an axum `Router`, the handler sees the signed request (the layer's own errors, a
//! body that cannot be read, go through axum's `HandleErrorLayer`). In a client stack the
//! layer wraps the HTTP client instead.
//!
//! ```
//! use axum::{BoxError, Router, body::{Body, Bytes}, error_handling::HandleErrorLayer};
//! use axum::http::{HeaderMap, Request, StatusCode};
//! use axum::routing::post;
//! use hookrelay_core::signing::{Signer, SigningSecret, verify};
//! use hookrelay_tower::SignLayer;
//! use hookrelay_tower::sign::SignHandle;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let old: SigningSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
//! let new: SigningSecret = "whsec_c2Vjb25kIHNlY3JldCBmb3Igcm90YXRpb24=".parse().unwrap();
//! let handle = SignHandle::new(Signer::new(vec![old.clone()]));
//! // Answers 204 when the request is signed with `old`.
//! let app = Router::new()
//!     .route("/hook", post(move |headers: HeaderMap, body: Bytes| async move {
//!         let h = |name: &str| headers[name].to_str().unwrap().to_owned();
//!         match verify(&[old], &h("webhook-id"), &h("webhook-timestamp"),
//!                      &h("webhook-signature"), &body, None) {
//!             Ok(()) => StatusCode::NO_CONTENT,
//!             Err(_) => StatusCode::UNAUTHORIZED,
//!         }
//!     }))
//!     .layer(
//!         ServiceBuilder::new()
//!             .layer(HandleErrorLayer::new(|_: BoxError| async { StatusCode::BAD_REQUEST }))
//!             .layer(SignLayer::new(handle.clone())),
//!     );
//! let send = || {
//!     let req = Request::post("/hook").body(Body::from(r#"{"event":"delivered"}"#)).unwrap();
//!     app.clone().oneshot(req)
//! };
//!
//! assert_eq!(send().await.unwrap().status(), StatusCode::NO_CONTENT);
//! // A new secret applies to the next request.
//! handle.set(Signer::new(vec![new]));
//! assert_eq!(send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
//! # }
//! ```

mod future;
mod layer;
mod service;

use std::sync::Arc;

use arc_swap::ArcSwap;
use hookrelay_core::signing::Signer;

pub use future::ResponseFuture;
pub use layer::SignLayer;
pub use service::Sign;

use crate::BoxError;

/// Why a request could not be signed (the inner service's errors pass through).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// Reading the request body failed.
    #[error("reading the request body to sign it failed")]
    Body(#[source] BoxError),
}

/// The live [`Signer`] of a [`SignLayer`], shared by its services; [`set`](Self::set)
/// applies to the next request (rotate by setting a signer with both secrets first).
#[derive(Debug, Clone)]
pub struct SignHandle {
    current: Arc<ArcSwap<Signer>>,
}

impl SignHandle {
    /// A handle holding `signer`.
    #[must_use]
    pub fn new(signer: Signer) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(signer)),
        }
    }

    /// Puts `signer` in force for the next request.
    pub fn set(&self, signer: Signer) {
        self.current.store(Arc::new(signer));
    }

    /// The signer in force.
    #[must_use]
    pub fn get(&self) -> Arc<Signer> {
        self.current.load_full()
    }
}

impl From<Signer> for SignHandle {
    fn from(signer: Signer) -> Self {
        Self::new(signer)
    }
}
