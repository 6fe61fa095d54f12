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

/// Which backend to open, and where.
#[derive(Clone)]
#[non_exhaustive]
pub enum StoreConfig {
    /// An [`EmbeddedStore`] in this directory.
    Embedded {
        /// The store directory.
        path: PathBuf,
    },
    /// A [`RedisStore`] at this URL.
    Redis {
        /// `redis://` or `rediss://` URL, possibly with credentials (redacted in `Debug`).
        url: String,
        /// Tuning.
        options: RedisOptions,
    },
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreConfig::Embedded { path } => {
                f.debug_struct("Embedded").field("path", path).finish()
            }
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
    /// Opens the backend `config` names.
    pub async fn open(config: StoreConfig) -> Result<Self, StoreError> {
        match config {
            StoreConfig::Embedded { path } => Self::open_embedded(path),
            StoreConfig::Redis { url, options } => Self::open_redis(&url, options).await,
        }
    }

    /// Opens an [`EmbeddedStore`] in `dir`.
    pub fn open_embedded(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        EmbeddedStore::open(dir.into()).map(Store::Embedded)
    }

    /// Opens an [`EmbeddedStore`] in `dir` with `options`.
    pub fn open_embedded_with(
        dir: impl Into<PathBuf>,
        options: EmbeddedOptions,
    ) -> Result<Self, StoreError> {
        EmbeddedStore::open_with(dir.into(), options).map(Store::Embedded)
    }

    /// Connects a [`RedisStore`] to `url`.
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
