//! Answer `429 Too Many Requests` with `Retry-After` to requests over a GCRA rate.
//!
//! [`RateLimitLayer`] is the inbound twin of [`ThrottleLayer`](crate::ThrottleLayer): the
//! same [`Gcra`](crate::gcra::Gcra) policy and the same shared, reloadable
//! [`ThrottleHandle`](crate::gcra::ThrottleHandle), but a request over the rate is answered
//! at once with `429` and `Retry-After` (whole seconds, rounded up) instead of waiting,
//! and never reaches the inner service. The buckets are shared by every clone, so the
//! limit holds under axum. Buckets can be per key ([`RateLimitLayer::key_by`]), for instance
//! per peer or per API key.
//!
//! The service's errors are the inner service's, so it fits an axum `Router` directly.
//! With a shared backend ([`RateLimitLayer::with_limiter`], e.g. GCRA in Redis) that cannot
//! be reached, requests are answered `503 Service Unavailable`: the limit fails closed.
//!
//! # Example
//!
//! ```
//! use std::num::NonZeroU32;
//!
//! use axum::{Router, body::Body, routing::get};
//! use axum::http::{Request, StatusCode, header::RETRY_AFTER};
//! use hookrelay_tower::RateLimitLayer;
//! use hookrelay_tower::gcra::{ByHeader, Gcra, ThrottleHandle};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let per = |n| NonZeroU32::new(n).unwrap();
//! let handle = ThrottleHandle::new(Gcra::new(per(1), per(2)));
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(RateLimitLayer::new(handle.clone()).key_by(ByHeader::new("x-api-key".parse().unwrap())));
//! let get = |key: &'static str| {
//!     app.clone().oneshot(Request::get("/").header("x-api-key", key).body(Body::empty()).unwrap())
//! };
//!
//! assert_eq!(get("alice").await.unwrap().status(), StatusCode::OK);
//! assert_eq!(get("alice").await.unwrap().status(), StatusCode::OK);
//! let refused = get("alice").await.unwrap();
//! assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(refused.headers()[RETRY_AFTER], "1");
//! // Another key has its own bucket.
//! assert_eq!(get("bob").await.unwrap().status(), StatusCode::OK);
//! // A new rate applies to the next request.
//! handle.set(Gcra::new(per(100), per(10)));
//! assert_eq!(get("alice").await.unwrap().status(), StatusCode::OK);
//! # }
//! ```

mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::RateLimitLayer;
pub use service::RateLimit;
