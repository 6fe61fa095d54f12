//! Delay requests to a steady rate: GCRA with state shared by every clone.
//!
//! [`ThrottleLayer`] reserves each request's slot in a [`Gcra`](crate::gcra::Gcra) bucket
//! and sleeps until it: `burst` requests pass at once, then one per interval, never more.
//! The buckets live behind an `Arc` in a [`ThrottleHandle`](crate::gcra::ThrottleHandle)
//! shared by every clone of the service, so one limit holds under axum, which clones the
//! service per connection and per request (tower's own `RateLimit` keeps its state per
//! clone: under `Router::layer` each connection gets a budget of its own). The handle also
//! reloads the policy live.
//!
//! A request whose slot is further away than [`ThrottleLayer::max_wait`] fails at once
//! with [`ThrottleError::WaitTooLong`], reserving nothing, instead of queueing forever.
//! With a shared backend ([`ThrottleLayer::with_limiter`], e.g. GCRA in Redis) a request
//! whose slot cannot be reserved fails with [`ThrottleError::Unavailable`]: the throttle
//! fails closed, it never lets a request through unthrottled.
//! Buckets can be per key ([`ThrottleLayer::key_by`]): per endpoint, per header, per peer.
//!
//! The service is always ready: it clones the inner service for each request and polls
//! that clone's readiness after the wait, so a waiting request holds no capacity of the
//! inner service (no concurrency permit is held while sleeping). A slot is reserved when
//! the request is called; a caller that gives up while waiting leaves its slot unused.
//!
//! # Example
//!
//! ```
//! use std::num::NonZeroU32;
//! use std::time::Duration;
//!
//! use axum::{BoxError, Router, body::Body, error_handling::HandleErrorLayer, routing::post};
//! use axum::http::{Request, StatusCode};
//! use hookrelay_tower::ThrottleLayer;
//! use hookrelay_tower::gcra::{Gcra, ThrottleHandle};
//! use hookrelay_tower::throttle::ThrottleError;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let per = |n| NonZeroU32::new(n).unwrap();
//! // 2 requests a second, no burst; keep the handle to reload the rate.
//! let handle = ThrottleHandle::new(Gcra::new(per(2), per(1)));
//! let app = Router::new().route("/send", post(|| async { "sent" })).layer(
//!     ServiceBuilder::new()
//!         .layer(HandleErrorLayer::new(|err: BoxError| async move {
//!             match err.downcast_ref::<ThrottleError>() {
//!                 Some(_) => StatusCode::SERVICE_UNAVAILABLE,
//!                 None => StatusCode::INTERNAL_SERVER_ERROR,
//!             }
//!         }))
//!         .layer(ThrottleLayer::new(handle.clone()).max_wait(Duration::from_secs(1))),
//! );
//! let send = || app.clone().oneshot(Request::post("/send").body(Body::empty()).unwrap());
//!
//! let start = tokio::time::Instant::now();
//! for _ in 0..3 {
//!     assert_eq!(send().await.unwrap().status(), StatusCode::OK);
//! }
//! // Delayed, not refused: slots at 0, 0.5 s and 1 s, across axum's clones.
//! assert_eq!(start.elapsed(), Duration::from_secs(1));
//!
//! // A faster rate applies to the next request, without rebuilding the router.
//! handle.set(Gcra::new(per(100), per(10)));
//! let start = tokio::time::Instant::now();
//! for _ in 0..10 {
//!     assert_eq!(send().await.unwrap().status(), StatusCode::OK);
//! }
//! assert_eq!(start.elapsed(), Duration::ZERO);
//! # }
//! ```

mod future;
mod layer;
mod service;

use std::time::Duration;

pub use future::ResponseFuture;
pub use layer::ThrottleLayer;
pub use service::Throttle;

use crate::gcra::Unavailable;

/// Why a throttle refused a request itself (the inner service's errors pass through).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ThrottleError {
    /// The request's slot was further away than the maximum wait; nothing was reserved.
    #[error("throttled request would wait {wait:?}, more than the maximum of {max_wait:?}")]
    WaitTooLong {
        /// How long the request would have waited.
        wait: Duration,
        /// The configured maximum wait.
        max_wait: Duration,
    },
    /// The shared backend of the buckets (Redis) could not be asked for a slot; the
    /// request was not sent. Retry it later: nothing passes unthrottled.
    #[error("throttle backend unavailable; request not sent")]
    Unavailable {
        /// What failed.
        #[source]
        source: Unavailable,
    },
}
