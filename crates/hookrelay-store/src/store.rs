//! [`Store`]: one type over both backends, for code that runs with either.

use crate::{
    Attempt, DeadLetter, Delivery, DeliveryId, EmbeddedOptions, EmbeddedStore, EnqueueOutcome,
    History, HistoryPage, HistoryQuery, NewDelivery, RedisOptions, RedisStore, StoreError,
    StoreStats,
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

/// The durable queue, embedded or in Redis: the crate's entry point. Clones share one store.
///
/// Opened with [`Store::open`]. Its methods are the contract both backends keep, documented
/// here and tested against each of them (`tests/contract/`); all but [`Store::subscribe`]
/// are `async` and return `Result`, since with Redis any of them can fail. What a backend
/// adds or does differently is documented on its type and its methods: [`EmbeddedStore`]
/// (one process; times are the callers' `now_ms`) and [`RedisStore`] (several replicas;
/// Redis's clock, leases taken over, a poll interval).
#[derive(Clone, Debug)]
pub enum Store {
    /// One process, one database directory.
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
    /// An embedded store's directory is created if needed and its database opened before
    /// this returns (see [`EmbeddedStore::open_with`]); that happens on the calling thread, so
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

    /// Enqueues `batch` durably, with the provider event's dedupe key if there is one.
    ///
    /// The key and the deliveries are written together or not at all. If the key was
    /// recorded less than its window ago, nothing is written and the outcome is
    /// [`EnqueueOutcome::Duplicate`]; otherwise the key is recorded for its window (also for
    /// an empty batch), every delivery is queued, due no later than `now_ms`, and the
    /// endpoints' subscribers are woken. Returns once the write is durable: synced to the
    /// journal ([`EmbeddedStore::enqueue`]), or answered by Redis ([`RedisStore::enqueue`]).
    pub async fn enqueue(
        &self,
        dedupe: Option<(String, Duration)>,
        batch: Vec<NewDelivery>,
        now_ms: i64,
    ) -> Result<EnqueueOutcome, StoreError> {
        both!(self, s => s.enqueue(dedupe, batch, now_ms).await)
    }

    /// Writes `delivery` straight into the dead letters with `reason`, dead at `now_ms`, with
    /// the dedupe key of the event it holds if there is one: for what can never be
    /// delivered as it is (an event the sidecar could not normalize), so that it is kept,
    /// listed with the other dead letters, and found again by its id.
    ///
    /// The key and the letter are written together or not at all, and a key recorded less
    /// than its window ago writes nothing ([`EnqueueOutcome::Duplicate`]), as
    /// [`Store::enqueue`] does (with the same keys: one key is either an enqueue's or a
    /// dead letter's). The delivery is never queued: no worker leases it, no subscriber is
    /// woken, [`Store::endpoints`] and [`Store::queue_depth`] do not count it. Returns its
    /// id once the write is durable, as an enqueue is.
    pub async fn enqueue_dead_letter(
        &self,
        dedupe: Option<(String, Duration)>,
        delivery: NewDelivery,
        reason: impl Into<String>,
        now_ms: i64,
    ) -> Result<EnqueueOutcome, StoreError> {
        let reason = reason.into();
        both!(self, s => s.enqueue_dead_letter(dedupe, delivery, reason, now_ms).await)
    }

    /// Leases up to `max` due deliveries of `endpoint` that are not leased, in id order.
    ///
    /// A rescheduled delivery is due once `now_ms` reaches its `not_before_ms`. A leased
    /// delivery is not offered again; it stays queued (and counted by
    /// [`Store::queue_depth`]) until it is completed, rescheduled, dead-lettered or
    /// released. Leases are held by the process: after a restart every queued delivery is
    /// eligible again ([`RedisStore::lease`]: after the visibility timeout).
    pub async fn lease(
        &self,
        endpoint: &str,
        now_ms: i64,
        max: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        both!(self, s => s.lease(endpoint, now_ms, max).await)
    }

    /// When an idle worker of `endpoint` should lease again: at or before the present when a
    /// delivery that is not leased is due, the earliest due time otherwise, and `None` when
    /// nothing waits (embedded only: [`RedisStore::next_due`] is at most one poll interval
    /// away). A worker waits until then or until [`Store::subscribe`] wakes it.
    pub async fn next_due(&self, endpoint: &str) -> Result<Option<i64>, StoreError> {
        match self {
            Store::Embedded(s) => s.next_due(endpoint),
            Store::Redis(s) => s.next_due(endpoint).await,
        }
    }

    /// Removes a delivered delivery from the queue. Fails with
    /// [`StoreError::UnknownDelivery`] when it is not queued (completed, dead-lettered, or
    /// never enqueued).
    pub async fn complete(&self, id: DeliveryId) -> Result<(), StoreError> {
        both!(self, s => s.complete(id).await)
    }

    /// [`Store::complete`] after `attempt`, which the delivery's history keeps: the
    /// delivery stays readable through [`Store::history`] as `delivered` until
    /// [`Store::sweep_history`] removes it.
    pub async fn complete_with(&self, id: DeliveryId, attempt: Attempt) -> Result<(), StoreError> {
        both!(self, s => s.complete_with(id, Some(attempt)).await)
    }

    /// Puts a leased delivery back, due at `not_before_ms`, with its attempt count and the
    /// last attempt's error. Fails with [`StoreError::UnknownDelivery`] when it is not
    /// queued.
    pub async fn reschedule(
        &self,
        id: DeliveryId,
        not_before_ms: i64,
        attempts: u32,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        both!(self, s => s.reschedule(id, not_before_ms, attempts, error).await)
    }

    /// [`Store::reschedule`] after `attempt`, which the delivery's history keeps.
    pub async fn reschedule_with(
        &self,
        id: DeliveryId,
        not_before_ms: i64,
        attempts: u32,
        error: Option<String>,
        attempt: Attempt,
    ) -> Result<(), StoreError> {
        both!(self, s => s.reschedule_with(id, not_before_ms, attempts, error, Some(attempt)).await)
    }

    /// Moves a delivery to the dead letters after an attempt that gave up (counted in its
    /// `attempts`), dead at `now_ms`, with the reason and the last response (its body cut to [`MAX_RESPONSE_BYTES`](crate::MAX_RESPONSE_BYTES) at a
    /// character boundary). Fails with [`StoreError::UnknownDelivery`] when it is not
    /// queued.
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

    /// [`Store::dead_letter`] after `attempt`, which the delivery's history keeps.
    pub async fn dead_letter_with(
        &self,
        id: DeliveryId,
        reason: impl Into<String>,
        status: Option<u16>,
        response: Option<String>,
        now_ms: i64,
        attempt: Attempt,
    ) -> Result<(), StoreError> {
        let reason = reason.into();
        both!(self, s => s.dead_letter_with(id, reason, status, response, now_ms, Some(attempt)).await)
    }

    /// Delivery `id` with its history: queued, in flight, delivered (until
    /// [`Store::sweep_history`] removes it), dead or replayed; `None` when the store has no
    /// such delivery (never enqueued, swept, or a dead letter deleted).
    pub async fn history(&self, id: DeliveryId) -> Result<Option<History>, StoreError> {
        both!(self, s => s.history(id).await)
    }

    /// Every delivery the store holds with `webhook-id` `webhook_id` (the deliveries of one
    /// provider event to each of its endpoints, and of an unparsed event), newest first, at
    /// most `limit`.
    pub async fn history_of(
        &self,
        webhook_id: &str,
        limit: usize,
    ) -> Result<Vec<History>, StoreError> {
        both!(self, s => s.history_of(webhook_id, limit).await)
    }

    /// A page of the deliveries the store holds that match `query`, newest first, without
    /// their payloads (each `body` is empty: [`Store::history`] has it); at most
    /// [`HISTORY_SCAN_LIMIT`](crate::HISTORY_SCAN_LIMIT) are looked at per call, so a page
    /// may hold fewer than `limit` with a `next` to go on from.
    pub async fn histories(&self, query: &HistoryQuery) -> Result<HistoryPage, StoreError> {
        both!(self, s => s.histories(query).await)
    }

    /// Removes delivered deliveries from the history: those delivered before `cutoff_ms`,
    /// then the first delivered while the history holds more than `max_bytes` (0: no cap);
    /// returns how many it removed. Times are the store's clock (the writer's on the
    /// embedded store, Redis's on Redis). Queued deliveries and dead letters are never removed by it
    /// (dead letters have their own retention). Run it now and then (the sidecar: every
    /// minute).
    pub async fn sweep_history(&self, cutoff_ms: i64, max_bytes: u64) -> Result<u64, StoreError> {
        both!(self, s => s.sweep_history(cutoff_ms, max_bytes).await)
    }

    /// Gives a lease back unchanged (at shutdown, or when an endpoint is paused); the
    /// delivery is eligible again at once. Ids this store has not leased are ignored.
    pub async fn release(&self, id: DeliveryId) -> Result<(), StoreError> {
        both!(self, s => s.release(id).await)
    }

    /// Moves every queued delivery of `endpoint`, leased or not, to the dead letters with
    /// `reason` (`endpoint removed` after a reload dropped it); returns how many. Their
    /// leases end with them: completing one fails with [`StoreError::UnknownDelivery`].
    pub async fn dead_letter_endpoint(
        &self,
        endpoint: &str,
        reason: impl Into<String>,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let reason = reason.into();
        both!(self, s => s.dead_letter_endpoint(endpoint, reason, now_ms).await)
    }

    /// Lists up to `limit` dead letters, of one endpoint or of all, oldest delivery first.
    pub async fn dead_letters(
        &self,
        endpoint: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        both!(self, s => s.dead_letters(endpoint, limit).await)
    }

    /// [`Store::dead_letters`] with an id greater than `after`: the next page of a walk
    /// through them all, which goes on from the last id of the page before.
    pub async fn dead_letters_after(
        &self,
        endpoint: Option<&str>,
        after: Option<DeliveryId>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        both!(self, s => s.dead_letters_after(endpoint, after, limit).await)
    }

    /// The dead letter `id`, or `None` when there is none (never dead-lettered, replayed, or
    /// not yet durable).
    pub async fn find_dead_letter(&self, id: DeliveryId) -> Result<Option<DeadLetter>, StoreError> {
        both!(self, s => s.find_dead_letter(id).await)
    }

    /// Removes dead letter `id` for good (durable before it returns); false when there is
    /// no such dead letter.
    pub async fn delete_dead_letter(&self, id: DeliveryId) -> Result<bool, StoreError> {
        both!(self, s => s.delete_dead_letter(id).await)
    }

    /// Queues a dead letter again under its id, attempts reset, same `webhook_id`, due at
    /// once, queued as of `now_ms` (its `created_at_ms`, from which `max_age` counts), and
    /// wakes its endpoint's subscribers; false when there is no such dead letter.
    pub async fn replay(&self, id: DeliveryId, now_ms: i64) -> Result<bool, StoreError> {
        both!(self, s => s.replay(id, now_ms).await)
    }

    /// Replays every dead letter of `endpoint` as of `now_ms`, as [`Store::replay`] does;
    /// returns how many.
    pub async fn replay_endpoint(&self, endpoint: &str, now_ms: i64) -> Result<u64, StoreError> {
        both!(self, s => s.replay_endpoint(endpoint, now_ms).await)
    }

    /// Makes every delivery of `endpoint` that waits for a retry (rescheduled to a time after
    /// `now_ms`, not leased) due at `now_ms`, and wakes the endpoint's subscribers; returns
    /// how many. For an endpoint that answers again after an outage, so that its queued
    /// retries do not wait out their backoff. Their attempts and last errors are kept;
    /// leased deliveries (in flight) and dead letters are untouched. Durable before it
    /// returns, as an enqueue is.
    pub async fn retry_now(&self, endpoint: &str, now_ms: i64) -> Result<u64, StoreError> {
        both!(self, s => s.retry_now(endpoint, now_ms).await)
    }

    /// Records one-time token `key` (a provider's signed replay token) for `ttl`: true the
    /// first time, false when it was recorded less than `ttl` ago (by `now_ms` on the
    /// embedded store, by Redis's clock on Redis). Durable before it returns, so a token
    /// stays used across a restart, and shared by every replica on Redis; expired tokens
    /// take no room for long. Tokens and [`Store::enqueue`]'s dedupe keys are separate: the
    /// same text in both does not collide.
    pub async fn first_use(
        &self,
        key: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        both!(self, s => s.first_use(key, ttl, now_ms).await)
    }

    /// Forgets one-time token `key`, so its next [`Store::first_use`] is true again (for a
    /// callback that was not accepted after all: the provider's retry may use the token).
    /// A token not recorded is ignored.
    pub async fn forget_use(&self, key: &str) -> Result<(), StoreError> {
        both!(self, s => s.forget_use(key).await)
    }

    /// Queued deliveries of `endpoint`, leased ones included.
    pub async fn queue_depth(&self, endpoint: &str) -> Result<u64, StoreError> {
        match self {
            Store::Embedded(s) => Ok(s.queue_depth(endpoint)),
            Store::Redis(s) => s.queue_depth(endpoint).await,
        }
    }

    /// Dead letters held for `endpoint`.
    pub async fn dead_letter_count(&self, endpoint: &str) -> Result<u64, StoreError> {
        match self {
            Store::Embedded(s) => Ok(s.dead_letter_count(endpoint)),
            Store::Redis(s) => s.dead_letter_count(endpoint).await,
        }
    }

    /// Bytes the store's files take on disk (embedded; `None` on Redis, whose memory is
    /// its own).
    pub fn disk_bytes(&self) -> Option<u64> {
        match self {
            Store::Embedded(s) => Some(s.disk_bytes()),
            Store::Redis(_) => None,
        }
    }

    /// Endpoints that have queued deliveries, sorted.
    pub async fn endpoints(&self) -> Result<Vec<String>, StoreError> {
        match self {
            Store::Embedded(s) => Ok(s.endpoints()),
            Store::Redis(s) => s.endpoints().await,
        }
    }

    /// The wake-up signal of `endpoint`, notified (one permit) when this store enqueues,
    /// replays or [retries now](Store::retry_now) deliveries for it
    /// ([`RedisStore::subscribe`]: not when another replica does). A worker subscribes,
    /// leases until nothing is due, then waits on `notified()` or until
    /// [`Store::next_due`], whichever comes first; the stored permit means an enqueue
    /// between the lease and the wait is not missed.
    pub fn subscribe(&self, endpoint: &str) -> Arc<Notify> {
        both!(self, s => s.subscribe(endpoint))
    }

    /// `Ok` when the store can serve: [`EmbeddedStore::health`], [`RedisStore::health`].
    pub async fn health(&self) -> Result<(), StoreError> {
        both!(self, s => s.health().await)
    }

    /// What the store counted since it was opened, for metrics (no I/O): writes the
    /// embedded store refused while it recovered from a failed write, and how many times it
    /// started failing ([`EmbeddedStore::stats`]). Redis has no such state, its calls fail
    /// one by one while it is unreachable: all zeros.
    pub fn stats(&self) -> StoreStats {
        match self {
            Store::Embedded(s) => s.stats(),
            Store::Redis(_) => StoreStats::default(),
        }
    }

    /// On Redis, deletes the consumers of `endpoints`' groups that hold no lease and have
    /// read nothing for `idle` ([`RedisStore::prune_consumers`]); nothing on the embedded
    /// store, which has no consumer groups.
    pub async fn prune_consumers(
        &self,
        endpoints: &[String],
        idle: std::time::Duration,
    ) -> Result<u64, StoreError> {
        match self {
            Store::Embedded(_) => Ok(0),
            Store::Redis(s) => s.prune_consumers(endpoints, idle).await,
        }
    }

    /// Sets the embedded store's budget ([`EmbeddedStore::set_max_bytes`]); Redis has its
    /// own (`maxmemory`), so this does nothing there.
    pub fn set_max_bytes(&self, bytes: u64) {
        if let Store::Embedded(s) = self {
            s.set_max_bytes(bytes);
        }
    }

    /// Sets the free space the embedded store keeps on its file system
    /// ([`EmbeddedStore::set_min_free`]); nothing on Redis, whose disk is its own.
    pub fn set_min_free(&self, min_free: crate::MinFree) {
        if let Store::Embedded(s) = self {
            s.set_min_free(min_free);
        }
    }
}
