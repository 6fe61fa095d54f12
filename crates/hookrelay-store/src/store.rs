//! [`Store`]: one type over both backends, for code that runs with either.

use crate::{
    DeadLetter, Delivery, DeliveryId, EmbeddedOptions, EmbeddedStore, EnqueueOutcome, NewDelivery,
    RedisOptions, RedisStore, StoreError,
};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Which backend [`Store::open`] opens, where, and with which options.
///
/// Made with [`StoreConfig::embedded`] or [`StoreConfig::redis`] (default options), or
/// [`StoreConfig::embedded_with`] or [`StoreConfig::redis_with`]. `Debug` leaves the Redis
/// URL out, since it can hold a password:
///
/// ```
/// use hookrelay_store::{RedisOptions, StoreConfig};
///
/// let options = RedisOptions::default().prefix("{hookrelay}");
/// let config = StoreConfig::redis_with("redis://app:s3cret@redis:6379", options);
/// assert!(!format!("{config:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub enum StoreConfig {
    /// An [`EmbeddedStore`] in this directory.
    Embedded {
        /// The store directory.
        path: PathBuf,
        /// Tuning.
        options: EmbeddedOptions,
    },
    /// A [`RedisStore`] at this URL.
    Redis {
        /// `redis://` or `rediss://` URL, possibly with credentials (redacted in `Debug`).
        url: String,
        /// Tuning.
        options: RedisOptions,
    },
}

impl StoreConfig {
    /// An [`EmbeddedStore`] in directory `path`, with default options.
    pub fn embedded(path: impl Into<PathBuf>) -> Self {
        Self::embedded_with(path, EmbeddedOptions::default())
    }

    /// An [`EmbeddedStore`] in directory `path`, with `options`.
    pub fn embedded_with(path: impl Into<PathBuf>, options: EmbeddedOptions) -> Self {
        StoreConfig::Embedded {
            path: path.into(),
            options,
        }
    }

    /// A [`RedisStore`] at `url` (see [`RedisStore::open`]), with default options.
    pub fn redis(url: impl Into<String>) -> Self {
        Self::redis_with(url, RedisOptions::default())
    }

    /// A [`RedisStore`] at `url`, with `options`.
    pub fn redis_with(url: impl Into<String>, options: RedisOptions) -> Self {
        StoreConfig::Redis {
            url: url.into(),
            options,
        }
    }
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreConfig::Embedded { path, options } => f
                .debug_struct("Embedded")
                .field("path", path)
                .field("options", options)
                .finish(),
            StoreConfig::Redis { options, .. } => f
                .debug_struct("Redis")
                .field("url", &"<redacted>")
                .field("options", options)
                .finish(),
        }
    }
}

/// The durable queue, embedded or in Redis. Clones share one store.
///
/// Every method has the name and arguments of [`EmbeddedStore`]'s; all but
/// [`Store::subscribe`] are `async` and return `Result`, since with Redis any of them can
/// fail. Backend differences are documented on [`RedisStore`].
#[derive(Clone, Debug)]
pub enum Store {
    /// One process, one log directory.
    Embedded(EmbeddedStore),
    /// Several processes sharing one Redis.
    Redis(RedisStore),
}

impl From<EmbeddedStore> for Store {
    fn from(store: EmbeddedStore) -> Self {
        Store::Embedded(store)
    }
}

impl From<RedisStore> for Store {
    fn from(store: RedisStore) -> Self {
        Store::Redis(store)
    }
}

/// Calls the same method on whichever backend.
macro_rules! both {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Store::Embedded($store) => $call,
            Store::Redis($store) => $call,
        }
    };
}

impl Store {
    /// Opens the backend `config` names, with its options: the one way to open either.
    ///
    /// An embedded store's directory is created if needed and its log read back before this
    /// returns (see [`EmbeddedStore::open_with`]); that happens on the calling thread, so
    /// open the store before serving. A Redis store is connected and answered a `PING`
    /// (see [`RedisStore::open_with`]); that must run within a Tokio runtime with I/O and
    /// timers enabled, which renews its leases for as long as the store lives.
    ///
    /// ```
    /// use hookrelay_store::{EmbeddedOptions, Store, StoreConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), hookrelay_store::StoreError> {
    /// # let dir = tempfile::tempdir().map_err(|e| hookrelay_store::StoreError::CreateDir {
    /// #     path: std::env::temp_dir(), source: e })?;
    /// let options = EmbeddedOptions::default().writer_niceness(5);
    /// let store = Store::open(StoreConfig::embedded_with(dir.path(), options)).await?;
    /// assert_eq!(store.kind(), "embedded");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn open(config: StoreConfig) -> Result<Self, StoreError> {
        match config {
            StoreConfig::Embedded { path, options } => Self::open_embedded_with(path, options),
            StoreConfig::Redis { url, options } => Self::open_redis(&url, options).await,
        }
    }

    /// Opens an [`EmbeddedStore`] in `dir` with default options: [`Store::open`] of
    /// [`StoreConfig::embedded`], without `async`.
    pub fn open_embedded(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        Self::open_embedded_with(dir, EmbeddedOptions::default())
    }

    /// Opens an [`EmbeddedStore`] in `dir` with `options`: [`Store::open`] of
    /// [`StoreConfig::embedded_with`], without `async`.
    pub fn open_embedded_with(
        dir: impl Into<PathBuf>,
        options: EmbeddedOptions,
    ) -> Result<Self, StoreError> {
        EmbeddedStore::open_with(dir.into(), options).map(Store::Embedded)
    }

    /// Connects a [`RedisStore`] to `url` with `options`: [`Store::open`] of
    /// [`StoreConfig::redis_with`].
    pub async fn open_redis(url: &str, options: RedisOptions) -> Result<Self, StoreError> {
        RedisStore::open_with(url, options).await.map(Store::Redis)
    }

    /// `embedded` or `redis`, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Embedded(_) => "embedded",
            Store::Redis(_) => "redis",
        }
    }

    /// See [`EmbeddedStore::enqueue`] and [`RedisStore::enqueue`].
    pub async fn enqueue(
        &self,
        dedupe: Option<(String, Duration)>,
        batch: Vec<NewDelivery>,
        now_ms: i64,
    ) -> Result<EnqueueOutcome, StoreError> {
        both!(self, s => s.enqueue(dedupe, batch, now_ms).await)
    }

    /// See [`EmbeddedStore::lease`] and [`RedisStore::lease`].
    pub async fn lease(
        &self,
        endpoint: &str,
        now_ms: i64,
        max: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        both!(self, s => s.lease(endpoint, now_ms, max).await)
    }

    /// See [`EmbeddedStore::next_due`] and [`RedisStore::next_due`] (never `None` with
    /// Redis: at most one poll interval away).
    pub async fn next_due(&self, endpoint: &str) -> Result<Option<i64>, StoreError> {
        match self {
            Store::Embedded(s) => Ok(s.next_due(endpoint)),
            Store::Redis(s) => s.next_due(endpoint).await,
        }
    }

    /// See [`EmbeddedStore::complete`].
    pub async fn complete(&self, id: DeliveryId) -> Result<(), StoreError> {
        both!(self, s => s.complete(id).await)
    }

    /// See [`EmbeddedStore::reschedule`].
    pub async fn reschedule(
        &self,
        id: DeliveryId,
        not_before_ms: i64,
        attempts: u32,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        both!(self, s => s.reschedule(id, not_before_ms, attempts, error).await)
    }

    /// See [`EmbeddedStore::dead_letter`].
    pub async fn dead_letter(
        &self,
        id: DeliveryId,
        reason: impl Into<String>,
        status: Option<u16>,
        response: Option<String>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let reason = reason.into();
        both!(self, s => s.dead_letter(id, reason, status, response, now_ms).await)
    }

    /// See [`EmbeddedStore::release`] and [`RedisStore::release`].
    pub async fn release(&self, id: DeliveryId) -> Result<(), StoreError> {
        both!(self, s => s.release(id).await)
    }

    /// See [`EmbeddedStore::dead_letter_endpoint`].
    pub async fn dead_letter_endpoint(
        &self,
        endpoint: &str,
        reason: impl Into<String>,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let reason = reason.into();
        both!(self, s => s.dead_letter_endpoint(endpoint, reason, now_ms).await)
    }

    /// See [`EmbeddedStore::dead_letters`].
    pub async fn dead_letters(
        &self,
        endpoint: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        both!(self, s => s.dead_letters(endpoint, limit).await)
    }

    /// See [`EmbeddedStore::replay`].
    pub async fn replay(&self, id: DeliveryId, now_ms: i64) -> Result<bool, StoreError> {
        both!(self, s => s.replay(id, now_ms).await)
    }

    /// See [`EmbeddedStore::replay_endpoint`].
    pub async fn replay_endpoint(&self, endpoint: &str, now_ms: i64) -> Result<u64, StoreError> {
        both!(self, s => s.replay_endpoint(endpoint, now_ms).await)
    }

    /// See [`EmbeddedStore::queue_depth`] and [`RedisStore::queue_depth`].
    pub async fn queue_depth(&self, endpoint: &str) -> Result<u64, StoreError> {
        match self {
            Store::Embedded(s) => Ok(s.queue_depth(endpoint)),
            Store::Redis(s) => s.queue_depth(endpoint).await,
        }
    }

    /// See [`EmbeddedStore::endpoints`] and [`RedisStore::endpoints`].
    pub async fn endpoints(&self) -> Result<Vec<String>, StoreError> {
        match self {
            Store::Embedded(s) => Ok(s.endpoints()),
            Store::Redis(s) => s.endpoints().await,
        }
    }

    /// See [`EmbeddedStore::subscribe`] and [`RedisStore::subscribe`].
    pub fn subscribe(&self, endpoint: &str) -> Arc<Notify> {
        both!(self, s => s.subscribe(endpoint))
    }

    /// See [`EmbeddedStore::health`] and [`RedisStore::health`].
    pub async fn health(&self) -> Result<(), StoreError> {
        both!(self, s => s.health().await)
    }
}
