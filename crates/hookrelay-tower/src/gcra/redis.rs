//! GCRA in Redis: one rate shared by every replica (feature `redis`).
//!
//! [`RedisGcra`] is a [`RateLimiter`] whose buckets live in Redis, so all the processes
//! that use the same Redis and key prefix together respect `per_second` and `burst`. It
//! plugs into [`ThrottleLayer::with_limiter`](crate::ThrottleLayer::with_limiter) (and
//! [`RateLimitLayer::with_limiter`](crate::RateLimitLayer::with_limiter)) of any axum or
//! hyper app.
//!
//! # The script
//!
//! Each reservation is one `EVALSHA` of the script below (loaded again by `EVAL` after a
//! Redis restart), which runs atomically: no other command interleaves, so concurrent
//! replicas get distinct slots. It is [`GcraState::reserve`](super::GcraState::reserve)
//! step for step — the first `burst` requests pass at once, then one per interval — with
//! two differences of representation only:
//!
//! - **Clock**: `now` is Redis's own `TIME`, read inside the script, so the clock skew of
//!   the replicas does not matter. The script returns a *wait*, not an instant; the
//!   replica turns it into `tokio::time::Instant::now() + wait` on receipt (a slot is
//!   late by the reply's travel time, never early).
//! - **Units**: the TAT is stored as whole microseconds since the Unix epoch (exact in
//!   Lua's doubles). The interval is `1s / per_second` rounded *up* to a microsecond, so
//!   the rate never exceeds `per_second` (30/s runs at 29.9994/s; rates above 1 000 000/s
//!   run at 1 000 000/s). The maximum wait is rounded down, so it is never exceeded.
//!
//! The bucket is deleted by Redis (`PX`) the moment its TAT is reached: an expired key and
//! an idle bucket are the same full burst, so memory stays bounded by the active keys.
//!
//! Keys: the shared bucket is `<prefix>g`, a keyed bucket `<prefix>k:<key bytes>`. Use
//! one prefix per rate (per endpoint); replicas share a bucket when they share the prefix.
//!
//! # Reloads and restarts
//!
//! The state is in Redis, so it survives reloads, process restarts and new replicas. The
//! policy ([`set`](RedisGcra::set)) is local to the process, used from the next
//! reservation. Unlike the in-memory [`ThrottleHandle`](super::ThrottleHandle), a changed
//! policy does **not** start fresh buckets: the stored TAT is kept and read with the new
//! interval and tolerance. Slots already reserved stay reserved; a larger burst lets the
//! difference pass at once, a faster rate takes effect after the reserved backlog. So a
//! reload never refills a bucket, and replicas that reload at different moments share one
//! TAT in between instead of each getting a fresh burst.
//!
//! # Failures
//!
//! When Redis cannot answer (down, timed out, an error reply), the reservation fails with
//! [`ReserveError::Unavailable`] and the request is not sent: the throttle fails with
//! [`ThrottleError::Unavailable`](crate::throttle::ThrottleError::Unavailable), the rate
//! limiter answers `503`. Nothing passes unthrottled. The connection manager reconnects
//! in the background, and reservations succeed again once Redis is back (a restarted Redis
//! without persistence starts from full bursts).
//!
//! # Example
//!
//! ```no_run
//! use std::num::NonZeroU32;
//! use std::time::Duration;
//!
//! use axum::{BoxError, Router, error_handling::HandleErrorLayer, http::StatusCode, routing::post};
//! use hookrelay_tower::ThrottleLayer;
//! use hookrelay_tower::gcra::Gcra;
//! use hookrelay_tower::gcra::redis::RedisGcra;
//! use hookrelay_tower::throttle::ThrottleError;
//! use tower::ServiceBuilder;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), BoxError> {
//!     let per = |n| NonZeroU32::new(n).unwrap();
//!     // 30 requests a second with bursts of 3, together across every replica.
//!     let limiter = RedisGcra::open(
//!         "rediss://redis.internal:6380",
//!         "myapp:throttle:send:",
//!         Gcra::new(per(30), per(3)),
//!     )?;
//!     let app = Router::new().route("/send", post(|| async { "sent" })).layer(
//!         ServiceBuilder::new()
//!             .layer(HandleErrorLayer::new(|err: BoxError| async move {
//!                 match err.downcast_ref::<ThrottleError>() {
//!                     // Redis unreachable: refused, not sent unthrottled; retry later.
//!                     Some(ThrottleError::Unavailable { .. }) => StatusCode::SERVICE_UNAVAILABLE,
//!                     Some(_) => StatusCode::TOO_MANY_REQUESTS,
//!                     None => StatusCode::INTERNAL_SERVER_ERROR,
//!                 }
//!             }))
//!             .layer(ThrottleLayer::with_limiter(limiter.clone()).max_wait(Duration::from_secs(2))),
//!     );
//!     // A config reload sets the new policy; the buckets in Redis are kept.
//!     limiter.set(Gcra::new(per(60), per(3)));
//!
//!     let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
//!     axum::serve(listener, app).await?;
//!     Ok(())
//! }
//! ```
//!
//! The script:
//!
#![doc = concat!("```lua\n", include_str!("gcra.lua"), "```")]

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError, Script};
use tokio::time::Instant;

use super::{Exceeded, Gcra, Key, RateLimiter, ReserveError, Unavailable};

/// The Lua source of the reservation (explained in the [module docs](self)).
pub const GCRA_SCRIPT: &str = include_str!("gcra.lua");

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(GCRA_SCRIPT));

/// The largest integer Lua's doubles hold exactly; arguments are clamped to it.
const LUA_EXACT: u64 = (1 << 53) - 1;

/// GCRA buckets in Redis, shared by every replica using the same prefix; a
/// [`RateLimiter`] for the throttle and rate-limit layers. See the [module docs](self).
///
/// Clones share the connection and the policy (a [`set`](Self::set) on one applies to
/// all), like clones of a [`ThrottleHandle`](super::ThrottleHandle).
#[derive(Clone)]
pub struct RedisGcra {
    connection: ConnectionManager,
    prefix: Arc<[u8]>,
    gcra: Arc<ArcSwap<Gcra>>,
}

/// Why [`RedisGcra::open`] could not build a limiter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The URL is not a Redis URL (`redis://`, `rediss://`, `redis+unix://`).
    #[error("invalid Redis URL")]
    Url(#[source] RedisError),
    /// Called outside a Tokio runtime, which the connection's background task needs.
    #[error("RedisGcra::open needs a Tokio runtime")]
    NoRuntime,
}

impl RedisGcra {
    /// A limiter over `connection` (which may be shared with other limiters and other
    /// uses), keeping its buckets under `prefix`, with policy `gcra`.
    ///
    /// The connection's configuration decides how fast an outage is noticed: a
    /// reservation fails after the response timeout or the reconnection attempts.
    #[must_use]
    pub fn new(connection: ConnectionManager, prefix: impl Into<Vec<u8>>, gcra: Gcra) -> Self {
        Self {
            connection,
            prefix: prefix.into().into(),
            gcra: Arc::new(ArcSwap::from_pointee(gcra)),
        }
    }

    /// A limiter connecting to `url` (`redis://` or, over rustls, `rediss://`), keeping
    /// its buckets under `prefix`, with policy `gcra`.
    ///
    /// Connects lazily, so it succeeds while Redis is down (reservations fail until it is
    /// up). Responses time out after 500 ms, connecting after 1 s, and a reservation
    /// tries to reconnect twice (100 ms, 200 ms) before it fails: an outage pauses the
    /// requests within about a second. Use [`new`](Self::new) for other settings.
    ///
    /// # Errors
    ///
    /// [`OpenError`] when `url` is invalid or no Tokio runtime is running.
    pub fn open(url: &str, prefix: impl Into<Vec<u8>>, gcra: Gcra) -> Result<Self, OpenError> {
        let client = Client::open(url).map_err(OpenError::Url)?;
        tokio::runtime::Handle::try_current().map_err(|_| OpenError::NoRuntime)?;
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let connection =
            ConnectionManager::new_lazy_with_config(client, config).map_err(OpenError::Url)?;
        Ok(Self::new(connection, prefix, gcra))
    }

    /// The policy in force.
    #[must_use]
    pub fn gcra(&self) -> Gcra {
        **self.gcra.load()
    }

    /// Puts `gcra` in force for the next reservation of this process. Returns `false`
    /// when it equals the policy in force. Either way the buckets in Redis are kept (see
    /// [Reloads and restarts](self#reloads-and-restarts)).
    pub fn set(&self, gcra: Gcra) -> bool {
        *self.gcra.swap(Arc::new(gcra)) != gcra
    }

    /// The key prefix of the buckets.
    #[must_use]
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The Redis connection (to share it with other limiters).
    #[must_use]
    pub fn connection(&self) -> &ConnectionManager {
        &self.connection
    }

    /// Checks that Redis answers (`PING`), for a readiness probe.
    ///
    /// # Errors
    ///
    /// [`Unavailable`] when it does not.
    pub async fn ping(&self) -> Result<(), Unavailable> {
        let mut conn = self.connection.clone();
        redis::cmd("PING")
            .query_async::<()>(&mut conn)
            .await
            .map_err(Unavailable::new)
    }

    /// The Redis key of `key`'s bucket (`None`: the shared one).
    fn bucket(&self, key: Option<&Key>) -> Vec<u8> {
        let mut name = self.prefix.to_vec();
        match key {
            None => name.push(b'g'),
            Some(key) => {
                name.extend_from_slice(b"k:");
                name.extend_from_slice(key.as_bytes());
            }
        }
        name
    }
}

impl fmt::Debug for RedisGcra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisGcra")
            .field("prefix", &String::from_utf8_lossy(&self.prefix))
            .field("gcra", &self.gcra())
            .finish_non_exhaustive()
    }
}

/// The script's arguments for `gcra`: interval and tolerance in microseconds.
fn micros(gcra: &Gcra) -> (u64, u64) {
    let interval = gcra.interval().as_nanos().div_ceil(1000).max(1);
    let interval = u64::try_from(interval).unwrap_or(LUA_EXACT).min(LUA_EXACT);
    let tolerance = interval
        .saturating_mul(u64::from(gcra.burst().get() - 1))
        .min(LUA_EXACT);
    (interval, tolerance)
}

/// `max_wait` in whole microseconds, rounded down, at most [`LUA_EXACT`].
fn max_wait_micros(max_wait: Duration) -> u64 {
    u64::try_from(max_wait.as_micros())
        .unwrap_or(LUA_EXACT)
        .min(LUA_EXACT)
}

/// A reservation in flight: one script round trip.
pub type RedisGcraFuture =
    Pin<Box<dyn Future<Output = Result<Instant, ReserveError>> + Send + 'static>>;

impl RateLimiter for RedisGcra {
    type Future = RedisGcraFuture;

    fn reserve(&self, key: Option<Key>, max_wait: Duration) -> Self::Future {
        let (interval, tolerance) = micros(&self.gcra());
        let bucket = self.bucket(key.as_ref());
        let mut conn = self.connection.clone();
        Box::pin(async move {
            let (reserved, wait): (bool, u64) = SCRIPT
                .key(bucket)
                .arg(interval)
                .arg(tolerance)
                .arg(max_wait_micros(max_wait))
                .invoke_async(&mut conn)
                .await
                .map_err(Unavailable::new)?;
            let wait = Duration::from_micros(wait);
            if !reserved {
                return Err(Exceeded::new(wait).into());
            }
            // A slot beyond what an `Instant` holds is as good as never.
            Instant::now()
                .checked_add(wait)
                .ok_or_else(|| Exceeded::new(wait).into())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn gcra(per_second: u32, burst: u32) -> Gcra {
        Gcra::new(
            NonZeroU32::new(per_second).expect("non-zero"),
            NonZeroU32::new(burst).expect("non-zero"),
        )
    }

    #[test]
    fn arguments_round_the_interval_up_and_the_wait_down() {
        assert_eq!(micros(&gcra(1, 1)), (1_000_000, 0));
        assert_eq!(micros(&gcra(30, 3)), (33_334, 66_668));
        assert_eq!(micros(&gcra(4, 3)), (250_000, 500_000));
        assert_eq!(micros(&gcra(u32::MAX, 1)), (1, 0));
        assert_eq!(
            micros(&gcra(1, u32::MAX)).1,
            1_000_000 * u64::from(u32::MAX - 1)
        );
        assert_eq!(max_wait_micros(Duration::from_nanos(1_999)), 1);
        assert_eq!(max_wait_micros(Duration::MAX), LUA_EXACT);
    }

    #[tokio::test]
    async fn bucket_keys_do_not_collide() {
        let r = RedisGcra::open("redis://127.0.0.1:1", "t:", gcra(1, 1)).expect("valid URL");
        assert_eq!(r.bucket(None), b"t:g");
        assert_eq!(r.bucket(Some(&Key::from("g"))), b"t:k:g");
        assert_eq!(r.bucket(Some(&Key::from(""))), b"t:k:");
    }

    #[test]
    fn open_outside_a_runtime_is_an_error() {
        let err = RedisGcra::open("redis://127.0.0.1:1", "t:", gcra(1, 1)).expect_err("no runtime");
        assert!(matches!(err, OpenError::NoRuntime));
        let err = RedisGcra::open("http://x", "t:", gcra(1, 1)).expect_err("bad URL");
        assert!(matches!(err, OpenError::Url(_)));
    }

    #[test]
    fn set_reports_a_change_and_clones_share_it() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _guard = rt.enter();
        let r = RedisGcra::open("redis://127.0.0.1:1", "t:", gcra(1, 1)).expect("valid URL");
        let clone = r.clone();
        assert!(!r.set(gcra(1, 1)));
        assert!(r.set(gcra(2, 1)));
        assert_eq!(clone.gcra(), gcra(2, 1));
    }
}
