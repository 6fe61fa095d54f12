#![cfg_attr(
    all(
        feature = "throttle",
        feature = "set-headers",
        feature = "sign",
        feature = "axum",
        feature = "meta_whatsapp"
    ),
    doc = include_str!("../README.md")
)]
#![cfg_attr(
    not(all(
        feature = "throttle",
        feature = "set-headers",
        feature = "sign",
        feature = "axum",
        feature = "meta_whatsapp"
    )),
    doc = "Tower layers for webhooks: throttle, rate limit, headers and Standard Webhooks \
           signing on the way out, provider signature checks on the way in, each reloadable \
           live and usable in any axum or hyper app. (The README's quick start shows here \
           when its features are on.)"
)]
//!
//! # Layers
//!
//! | layer | does | feature |
//! |---|---|---|
//! | [`ThrottleLayer`] | delays requests to a steady GCRA rate, state shared by every clone | `throttle` |
//! | [`RateLimitLayer`] | answers `429` + `Retry-After` over the same policy | `rate-limit` |
//! | [`SetRequestHeadersLayer`], [`SetResponseHeadersLayer`] | set a validated header set on requests, or on responses | `set-headers` |
//! | [`SignLayer`] | Standard Webhooks signing of the request body | `sign` |
//! | `VerifyLayer` | checks a provider callback's signature on the raw body: `413`, `401` or the inner service | `verify` + the providers' features (not default) |
//! | `verify::Callback` | axum extractor: the verified callback normalized into events | `axum` (not default) |
//! | `gcra::redis::RedisGcra` | GCRA buckets in Redis for the throttle and rate limit, shared by every replica | `redis` (not default) |
//!
//! Each layer is built from a policy value or from its reload handle
//! ([`ThrottleHandle`](gcra::ThrottleHandle), [`HeaderSetHandle`](set_headers::HeaderSetHandle),
//! [`SignHandle`](sign::SignHandle), `verify::VerifyHandle`): setting a new policy on the
//! handle applies to the next request without rebuilding the service, and a throttle whose
//! rate and burst did not change keeps its buckets. The policies themselves
//! ([`gcra::Gcra`], [`gcra::Limiter`], [`set_headers::HeaderSet`],
//! `hookrelay_core::signing::Signer`, `verify::CallbackPolicy`) are plain types, so other
//! adapters (a Pingora filter) and backends (GCRA in Redis, through [`gcra::RateLimiter`])
//! reuse them. A backend that cannot answer fails the request (`ThrottleError::Unavailable`,
//! or `503` from the rate limit): nothing passes unthrottled.
//!
//! hookrelay's delivery stack, top to bottom:
//!
//! ```text
//! SetRequestHeaders (endpoint headers) ▶ Sign (webhook-*) ▶ Throttle (endpoint rate) ▶ Timeout ▶ client
//! ```
//!
//! Apart from the optional Redis backend, this crate does no I/O of its own; it knows
//! nothing of hookrelay's config file or of Pingora.

/// `get_ref`, `get_mut` and `into_inner` of a service whose inner service is `self.inner`
/// of type `S` (the accessors of every tower-http service). Unused when no layer's feature
/// is on.
#[allow(unused_macros)]
macro_rules! inner_service_accessors {
    () => {
        /// The inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Consumes `self`, returning the inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}

#[cfg(any(feature = "throttle", feature = "rate-limit", feature = "redis"))]
pub mod gcra;
#[cfg(feature = "rate-limit")]
pub mod rate_limit;
#[cfg(feature = "set-headers")]
pub mod set_headers;
#[cfg(feature = "sign")]
pub mod sign;
#[cfg(feature = "throttle")]
pub mod throttle;
#[cfg(feature = "verify")]
pub mod verify;

#[cfg(feature = "rate-limit")]
pub use rate_limit::RateLimitLayer;
#[cfg(feature = "set-headers")]
pub use set_headers::{SetRequestHeadersLayer, SetResponseHeadersLayer};
#[cfg(feature = "sign")]
pub use sign::SignLayer;
#[cfg(feature = "throttle")]
pub use throttle::ThrottleLayer;
#[cfg(feature = "verify")]
pub use verify::VerifyLayer;

/// The boxed error of the layers that add failures of their own (the convention of tower).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
