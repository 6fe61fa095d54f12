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
//! An axum app that checks signatures, called through the layer:
//!
//! ```
//! use axum::{Router, body::{Body, Bytes}, http::{HeaderMap, Request, StatusCode}, routing::post};
//! use hookrelay_core::signing::{Signer, SigningSecret, verify};
//! use hookrelay_tower::SignLayer;
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let secret: SigningSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
//! let expected = secret.clone();
//! let receiver = Router::new().route("/hook", post(move |headers: HeaderMap, body: Bytes| async move {
//!     let h = |name: &str| headers[name].to_str().unwrap().to_owned();
//!     match verify(&[expected], &h("webhook-id"), &h("webhook-timestamp"),
//!                  &h("webhook-signature"), &body, None) {
//!         Ok(()) => StatusCode::NO_CONTENT,
//!         Err(_) => StatusCode::UNAUTHORIZED,
//!     }
//! }));
//! let client = SignLayer::new(Signer::new(vec![secret])).layer(receiver);
//!
//! let req = Request::post("/hook").body(Body::from(r#"{"event":"delivered"}"#)).unwrap();
//! assert_eq!(client.oneshot(req).await.unwrap().status(), StatusCode::NO_CONTENT);
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
