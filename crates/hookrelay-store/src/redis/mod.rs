//! The Redis backend: one queue shared by every sidecar replica.
//!
//! Each endpoint is a Redis stream with the consumer group `lanes`; every store instance is a
//! consumer of its own (`<HOSTNAME>-<pid>-<n>`). A lease claims the entries other consumers
//! left idle longer than the visibility timeout (a dead replica's deliveries), then reads new
//! ones. Rescheduled deliveries wait in a sorted set and a lease moves the due ones back into
//! the stream. Every multi-key operation, enqueue with its dedupe key included, is one Lua
//! script: atomic for all replicas. The key layout is documented in `scripts.rs`.
//!
//! Durability is Redis's: an enqueue returns `Ok` once Redis answered the script, which
//! with `appendonly yes` and `appendfsync always` means the AOF was fsynced first. With
//! `appendfsync everysec` (Redis's default) an acknowledged enqueue can be lost if the Redis
//! host crashes within a second; without AOF, on any Redis restart. [`RedisStore::open`]
//! warns when `appendonly` is off. Replication is asynchronous: a failover can lose the last
//! writes unless the replica setup says otherwise.
//!
//! The history: a completed delivery is not deleted but renamed (`<prefix>:h:<id>`) and kept,
//! with a list of its attempts and replays (`<prefix>:a:<id>`, the newest 32), until
//! [`RedisStore::sweep_history`] removes it; every delivery is also listed by id
//! (`<prefix>:all`) and by `webhook-id` (`<prefix>:w:<webhook id>`), so that lists and
//! lookups read their records in one script each. What a kept delivered delivery costs in
//! Redis (redis-server 7.0, jemalloc, `INFO memory` over 10,000 of them): about 1.7 KB for
//! a 504-byte payload with one short attempt, i.e. its hash (about 1.2 KB with
//! `MEMORY USAGE`: the payload and a few small fields), its attempts list (about 200 bytes
//! for one entry, and each entry's length on top: an attempt with a long error and response
//! excerpt takes up to 4.7 KB) and its three index entries (`all`, `done`, its webhook-id's
//! set: about 100 bytes each). The history's size as the sweep's `max_bytes` counts it
//! (`<prefix>:hbytes`) is the payload, the fields and the entries, without Redis's
//! overhead: about 1.1 KB less per delivery than the memory it takes.
//!
//! One file, though long, on purpose: it is the public [`RedisStore`], one method per store
//! operation (each little more than the arguments of its script and the decoding of the
//! reply), and the helpers they share (the operation timeout, recording a lease's outcome,
//! renewing leases). What is not a call of Redis is elsewhere: the scripts and the key
//! layout in `scripts.rs`, decoding the hashes they return in `record.rs`, the lease
//! book-keeping in `leases.rs`. Splitting it further would spread one type's operations
//! over files without separating a concern.

mod leases;
mod record;
mod scripts;

use crate::types::truncate;
use crate::{
    Attempt, AttemptOutcome, DeadLetter, Delivery, DeliveryId, EnqueueOutcome, HISTORY_SCAN_LIMIT,
    History, HistoryPage, HistoryQuery, MAX_RESPONSE_BYTES, NewDelivery, StoreError,
};
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, RedisResult};
use leases::Leases;
use record::{RawHistory, Record};
use scripts::Scripts;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// The idle time a released lease is given: older than any visibility timeout, so the next
/// lease of any replica claims it (and below the epoch, which Redis would clamp to 0).
const RELEASED_IDLE_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

/// Pending entries looked at by [`RedisStore::next_due`].
const NEXT_DUE_PENDING: usize = 256;

/// Delivered deliveries one history sweep script looks at (Redis is busy with it meanwhile).
const SWEEP_BATCH: usize = 1024;

/// Most delivered deliveries one [`RedisStore::sweep_history`] looks at.
const SWEEP_LIMIT: usize = 256 * 1024;

/// A delivery's trace context as a script argument: empty for none, or one too long to
/// keep ([`MAX_TRACE_BYTES`](crate::MAX_TRACE_BYTES)).
fn trace_arg(trace: Option<&str>) -> &str {
    trace
        .filter(|t| t.len() <= crate::MAX_TRACE_BYTES)
        .unwrap_or("")
}

/// Tuning of a [`RedisStore`].
#[derive(Clone, Debug)]
pub struct RedisOptions {
    prefix: String,
    visibility_timeout: Duration,
    poll_interval: Duration,
    connect_timeout: Duration,
    op_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            prefix: "hookrelay".into(),
            visibility_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(2),
            op_timeout: Duration::from_secs(5),
        }
    }
}

impl RedisOptions {
    /// Prefix of every key (default `hookrelay`). Replicas that share a queue use the same
    /// one; a hash tag such as `{hookrelay}` puts every key in one Redis Cluster slot.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a delivery leased by a replica that stopped renewing its leases stays
    /// invisible to the others (default 30 s, at least 10 ms). Live replicas renew theirs
    /// every third of it, however long an attempt takes.
    #[must_use]
    pub fn visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = timeout.max(Duration::from_millis(10));
        self
    }

    /// Longest wait [`RedisStore::next_due`] tells an idle worker (default 1 s): how soon a
    /// delivery enqueued by another replica is seen, since only local enqueues notify
    /// [`RedisStore::subscribe`].
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Timeout of one connection attempt (default 2 s).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Longest any call waits for Redis, reconnecting included (default 5 s); then it fails
    /// with [`StoreError::Backend`].
    #[must_use]
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }
}

/// The Redis store: the same queue and dead letters as [`EmbeddedStore`](crate::EmbeddedStore),
/// shared by several sidecar processes (clones share one connection and one set of leases).
///
/// Usually used through [`Store`](crate::Store), whose methods document what every backend
/// does; this type's methods say what the Redis store adds.
///
/// Differences from the embedded store:
/// - A new delivery is due as soon as it is enqueued (`now_ms` of [`RedisStore::lease`]
///   only applies to rescheduled deliveries), and dedupe windows expire by Redis's clock.
/// - A lease lasts while this instance renews it; a delivery leased by an instance that is
///   gone is offered again after the visibility timeout (at-least-once: consumers dedupe on
///   `webhook-id`).
/// - [`RedisStore::next_due`] is at most one poll interval away, so idle workers notice
///   deliveries enqueued by other replicas.
/// - Every call can fail when Redis is unreachable; it fails within the operation timeout,
///   and calls work again once Redis is back (the connection is re-established in the
///   background with backoff).
/// - A delivery's history says `in_flight` while any replica holds its lease (within the
///   visibility timeout); the history's size for [`RedisStore::sweep_history`] leaves
///   Redis's own overhead out (see *The history* in the crate docs), and
///   [`Store::stats`](crate::Store::stats) does not report it.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
    _renewal: Arc<Renewal>,
}

struct Inner {
    conn: ConnectionManager,
    target: String,
    consumer: String,
    options: RedisOptions,
    scripts: Scripts,
    leases: Mutex<Leases>,
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
}

/// Stops the lease renewal task when the last handle of the store is dropped.
struct Renewal(AbortHandle);

impl Drop for Renewal {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.inner.target)
            .field("prefix", &self.inner.options.prefix)
            .field("consumer", &self.inner.consumer)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to `url` (`redis://[user:password@]host[:port][/db]`, or `rediss://` for
    /// TLS with the system's root certificates) with default options.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, RedisOptions::default()).await
    }

    /// Connects to `url` with `options`; fails when the URL is invalid or Redis does not
    /// answer a `PING` within the connect timeout. Must be called within a Tokio runtime with
    /// I/O and timers enabled (a task renews this instance's leases).
    pub async fn open_with(url: &str, options: RedisOptions) -> Result<Self, StoreError> {
        let target = redact(url);
        let connect_error =
            |source: Arc<dyn std::error::Error + Send + Sync>| StoreError::Connect {
                target: target.clone(),
                source,
            };
        if url.starts_with("rediss:") {
            // rustls needs a crypto provider; ring unless the process already chose one.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = Client::open(url).map_err(|e| connect_error(Arc::new(e)))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.op_timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1));
        let connect = async {
            let mut conn = ConnectionManager::new_with_config(client, config).await?;
            ::redis::cmd("PING")
                .query_async::<()>(&mut conn)
                .await
                .map(|()| conn)
        };
        let conn = match tokio::time::timeout(options.connect_timeout, connect).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(connect_error(Arc::new(e))),
            Err(e) => return Err(connect_error(Arc::new(e))),
        };
        warn_unless_durable(&mut conn.clone(), &target).await;

        let inner = Arc::new(Inner {
            conn,
            target,
            consumer: consumer_name(),
            scripts: Scripts::new(),
            leases: Mutex::new(Leases::default()),
            wakers: Mutex::new(HashMap::new()),
            options,
        });
        let renewal = tokio::spawn(renew_leases(Arc::downgrade(&inner)));
        tracing::info!(target = %inner.target, consumer = %inner.consumer, "redis store opened");
        Ok(RedisStore {
            inner,
            _renewal: Arc::new(Renewal(renewal.abort_handle())),
        })
    }

    /// This instance's consumer name in every endpoint's consumer group.
    pub fn consumer(&self) -> &str {
        &self.inner.consumer
    }

    /// [`Store::enqueue`](crate::Store::enqueue), in one script: a duplicate is a key live
    /// in Redis (set by any replica less than its window ago, by Redis's clock), and the
    /// deliveries are due at once. Returns after Redis answered, so the write is as durable
    /// as Redis's `appendfsync` makes it.
    pub async fn enqueue(
        &self,
        dedupe: Option<(String, Duration)>,
        batch: Vec<NewDelivery>,
        now_ms: i64,
    ) -> Result<EnqueueOutcome, StoreError> {
        if dedupe.is_none() && batch.is_empty() {
            return Ok(EnqueueOutcome::Enqueued(Vec::new()));
        }
        let mut call = self.inner.scripts.enqueue.prepare_invoke();
        call.arg(&self.inner.options.prefix);
        match &dedupe {
            Some((key, window)) => {
                let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
                call.arg("1")
                    .arg(key)
                    .arg(window_ms.clamp(1, RELEASED_IDLE_MS))
            }
            None => call.arg("0").arg("").arg(0),
        };
        call.arg(now_ms).arg(batch.len());
        for d in &batch {
            call.arg(&d.endpoint)
                .arg(&d.webhook_id)
                .arg(d.body.as_ref())
                .arg(d.created_at_ms)
                .arg(trace_arg(d.trace.as_deref()));
        }
        let ids: Option<Vec<u64>> = self
            .inner
            .timed("enqueue", call.invoke_async(&mut self.inner.conn.clone()))
            .await?;
        let Some(ids) = ids else {
            return Ok(EnqueueOutcome::Duplicate);
        };
        let mut woken: Vec<&str> = Vec::new();
        for d in &batch {
            if !woken.contains(&d.endpoint.as_str()) {
                woken.push(&d.endpoint);
                self.inner.wake(&d.endpoint);
            }
        }
        Ok(EnqueueOutcome::Enqueued(
            ids.into_iter().map(DeliveryId).collect(),
        ))
    }

    /// [`Store::enqueue_dead_letter`](crate::Store::enqueue_dead_letter), in one script:
    /// the key, the id and the letter are written together, and nothing is put in a stream
    /// (no replica leases it, no subscriber is woken).
    pub async fn enqueue_dead_letter(
        &self,
        dedupe: Option<(String, Duration)>,
        delivery: NewDelivery,
        reason: impl Into<String>,
        now_ms: i64,
    ) -> Result<EnqueueOutcome, StoreError> {
        let mut call = self.inner.scripts.enqueue_dead_letter.prepare_invoke();
        call.arg(&self.inner.options.prefix);
        match &dedupe {
            Some((key, window)) => {
                let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
                call.arg("1")
                    .arg(key)
                    .arg(window_ms.clamp(1, RELEASED_IDLE_MS))
            }
            None => call.arg("0").arg("").arg(0),
        };
        call.arg(now_ms)
            .arg(&delivery.endpoint)
            .arg(&delivery.webhook_id)
            .arg(delivery.body.as_ref())
            .arg(delivery.created_at_ms)
            .arg(reason.into())
            .arg(trace_arg(delivery.trace.as_deref()));
        let id: Option<u64> = self
            .inner
            .timed(
                "enqueue dead letter",
                call.invoke_async(&mut self.inner.conn.clone()),
            )
            .await?;
        Ok(match id {
            Some(id) => EnqueueOutcome::Enqueued(vec![DeliveryId(id)]),
            None => EnqueueOutcome::Duplicate,
        })
    }

    /// [`Store::lease`](crate::Store::lease): first those idle in other consumers for longer
    /// than the visibility timeout (or released), then new ones, after moving the
    /// rescheduled ones due at `now_ms` back into the stream. Never blocks.
    pub async fn lease(
        &self,
        endpoint: &str,
        now_ms: i64,
        max: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let inner = &self.inner;
        let visibility = millis(inner.options.visibility_timeout);
        let mut call = inner.scripts.lease.prepare_invoke();
        call.arg(&inner.options.prefix)
            .arg(&inner.consumer)
            .arg(endpoint)
            .arg(now_ms)
            .arg(max)
            .arg(visibility);
        let raw: Vec<Vec<Vec<u8>>> = inner
            .timed("lease", call.invoke_async(&mut inner.conn.clone()))
            .await?;
        let mut leased = Vec::with_capacity(raw.len());
        let mut leases = inner.leases();
        for flat in raw {
            let record = match Record::parse("deliveries", flat) {
                Ok(record) => record,
                Err(error) => {
                    tracing::error!(endpoint, error = %error, "undecodable stream entry skipped");
                    continue;
                }
            };
            let Some(sid) = record.stream_id() else {
                continue;
            };
            let id = record.id;
            // Already leased here (a renewal was late): in flight, not offered twice.
            if !leases.hold(id, endpoint, sid) {
                continue;
            }
            match record.into_delivery() {
                Ok(delivery) => leased.push(delivery),
                // Stays leased here, so it is not offered again while this instance lives.
                Err(error) => {
                    tracing::error!(id, error = %error, "undecodable delivery left leased")
                }
            }
        }
        leased.sort_by_key(|d| d.id);
        Ok(leased)
    }

    /// [`Store::next_due`](crate::Store::next_due): the earliest of a rescheduled
    /// delivery's due time, "now" when unread or released deliveries wait, the moment
    /// another consumer's lease expires, and now + the poll interval (so deliveries enqueued
    /// by other replicas are seen). Never `None`.
    pub async fn next_due(&self, endpoint: &str) -> Result<Option<i64>, StoreError> {
        let inner = &self.inner;
        let mut call = inner.scripts.next_due.prepare_invoke();
        call.arg(&inner.options.prefix)
            .arg(endpoint)
            .arg(NEXT_DUE_PENDING);
        type Reply = (Option<String>, Option<String>, Vec<(String, String, i64)>);
        let (delayed, unread, pending): Reply = inner
            .timed("next due", call.invoke_async(&mut inner.conn.clone()))
            .await?;
        let now = now_ms();
        let mut due = now.saturating_add(millis(inner.options.poll_interval));
        if let Some(at) = delayed.as_deref().and_then(parse_ms) {
            due = due.min(at);
        }
        if let Some(at) = unread.as_deref().and_then(parse_ms) {
            due = due.min(at.min(now));
        }
        let visibility = millis(inner.options.visibility_timeout);
        let leases = inner.leases();
        for (sid, consumer, idle) in pending {
            if consumer == inner.consumer && leases.holds(endpoint, &sid) {
                continue;
            }
            let left = visibility.saturating_sub(idle).max(0);
            due = due.min(now.saturating_add(left));
        }
        Ok(Some(due))
    }

    /// [`Store::complete`](crate::Store::complete), whichever replica leased it: the
    /// delivery is kept as history (see [`RedisStore::complete_with`]).
    pub async fn complete(&self, id: DeliveryId) -> Result<(), StoreError> {
        self.complete_with(id, None).await
    }

    /// [`Store::complete_with`](crate::Store::complete_with), whichever replica leased it,
    /// in one script: the delivery leaves its stream (or retry set) and its hash is renamed
    /// `<prefix>:h:<id>`, kept with its history entries until
    /// [`RedisStore::sweep_history`] removes it.
    pub async fn complete_with(
        &self,
        id: DeliveryId,
        attempt: Option<Attempt>,
    ) -> Result<(), StoreError> {
        let inner = &self.inner;
        let entry = attempt.map(|a| record::entry(id, a)).transpose()?;
        let mut call = inner.scripts.complete.prepare_invoke();
        call.arg(&inner.options.prefix).arg(id.0);
        with_entry(&mut call, entry.as_deref());
        inner.record_outcome("complete", id, call).await
    }

    /// [`Store::reschedule`](crate::Store::reschedule), whichever replica leased it.
    pub async fn reschedule(
        &self,
        id: DeliveryId,
        not_before_ms: i64,
        attempts: u32,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        self.reschedule_with(id, not_before_ms, attempts, error, None)
            .await
    }

    /// [`Store::reschedule_with`](crate::Store::reschedule_with), whichever replica leased
    /// it, in one script.
    pub async fn reschedule_with(
        &self,
        id: DeliveryId,
        not_before_ms: i64,
        attempts: u32,
        error: Option<String>,
        attempt: Option<Attempt>,
    ) -> Result<(), StoreError> {
        let inner = &self.inner;
        let entry = attempt.map(|a| record::entry(id, a)).transpose()?;
        let mut call = inner.scripts.reschedule.prepare_invoke();
        call.arg(&inner.options.prefix)
            .arg(id.0)
            .arg(not_before_ms)
            .arg(attempts)
            .arg(if error.is_some() { "1" } else { "0" })
            .arg(error.unwrap_or_default());
        with_entry(&mut call, entry.as_deref());
        inner.record_outcome("reschedule", id, call).await
    }

    /// [`Store::dead_letter`](crate::Store::dead_letter), whichever replica leased it.
    pub async fn dead_letter(
        &self,
        id: DeliveryId,
        reason: impl Into<String>,
        status: Option<u16>,
        response: Option<String>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.dead_letter_with(id, reason, status, response, now_ms, None)
            .await
    }

    /// [`Store::dead_letter_with`](crate::Store::dead_letter_with), whichever replica
    /// leased it, in one script.
    pub async fn dead_letter_with(
        &self,
        id: DeliveryId,
        reason: impl Into<String>,
        status: Option<u16>,
        response: Option<String>,
        now_ms: i64,
        attempt: Option<Attempt>,
    ) -> Result<(), StoreError> {
        let inner = &self.inner;
        let entry = attempt.map(|a| record::entry(id, a)).transpose()?;
        let mut call = inner.scripts.dead_letter.prepare_invoke();
        call.arg(&inner.options.prefix)
            .arg(id.0)
            .arg(reason.into())
            .arg(status.map(|s| s.to_string()).unwrap_or_default())
            .arg(if response.is_some() { "1" } else { "0" })
            .arg(response.map_or_else(String::new, |r| truncate(r, MAX_RESPONSE_BYTES)))
            .arg(now_ms);
        with_entry(&mut call, entry.as_deref());
        inner.record_outcome("dead letter", id, call).await
    }

    /// [`Store::history`](crate::Store::history), in one script. A queued delivery is
    /// `in_flight` while a replica holds its lease: its stream entry is pending in the
    /// consumer group and was renewed within the visibility timeout (a released lease, or
    /// one a dead replica left, is `queued` again).
    pub async fn history(&self, id: DeliveryId) -> Result<Option<History>, StoreError> {
        let inner = &self.inner;
        let mut call = inner.scripts.history.prepare_invoke();
        call.arg(&inner.options.prefix)
            .arg(millis(inner.options.visibility_timeout))
            .arg(id.0);
        let raw: Vec<RawHistory> = inner
            .timed("history", call.invoke_async(&mut inner.conn.clone()))
            .await?;
        raw.into_iter().next().map(record::history).transpose()
    }

    /// [`Store::history_of`](crate::Store::history_of), in one script (from the sorted set
    /// `<prefix>:w:<webhook id>`). Undecodable records are left out (and logged).
    pub async fn history_of(
        &self,
        webhook_id: &str,
        limit: usize,
    ) -> Result<Vec<History>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let inner = &self.inner;
        let last = u64::try_from(limit - 1)
            .unwrap_or(u64::MAX)
            .min(i64::MAX as u64);
        let mut call = inner.scripts.history_of.prepare_invoke();
        call.arg(&inner.options.prefix)
            .arg(millis(inner.options.visibility_timeout))
            .arg(webhook_id)
            .arg(last);
        let raw: Vec<RawHistory> = inner
            .timed("history of", call.invoke_async(&mut inner.conn.clone()))
            .await?;
        Ok(decoded(raw))
    }

    /// [`Store::histories`](crate::Store::histories), in one script that walks the sorted
    /// set of every delivery (`<prefix>:all`) from the newest down and answers the matching
    /// records with their history entries. Undecodable records are left out (and logged).
    pub async fn histories(&self, query: &HistoryQuery) -> Result<HistoryPage, StoreError> {
        let inner = &self.inner;
        let limit = u64::try_from(query.limit.max(1)).unwrap_or(u64::MAX);
        let highest = query
            .before
            .map_or_else(|| "+inf".to_owned(), |before| format!("({}", before.0));
        let mut call = inner.scripts.histories.prepare_invoke();
        call.arg(&inner.options.prefix)
            .arg(millis(inner.options.visibility_timeout))
            .arg(highest)
            .arg(if query.endpoint.is_some() { "1" } else { "0" })
            .arg(query.endpoint.as_deref().unwrap_or_default())
            .arg(query.state.map_or("", |state| state.as_str()))
            .arg(if query.since_ms.is_some() { "1" } else { "0" })
            .arg(query.since_ms.unwrap_or_default())
            .arg(limit)
            .arg(HISTORY_SCAN_LIMIT);
        let (next, raw): (Option<u64>, Vec<RawHistory>) = inner
            .timed("histories", call.invoke_async(&mut inner.conn.clone()))
            .await?;
        let mut deliveries = decoded(raw);
        for history in &mut deliveries {
            history.delivery.body = bytes::Bytes::new();
        }
        Ok(HistoryPage {
            deliveries,
            next: next.map(DeliveryId),
        })
    }

    /// [`Store::sweep_history`](crate::Store::sweep_history), in scripts of at most 1,024
    /// delivered deliveries looked at each (oldest first, from `<prefix>:done`), and at
    /// most 262,144 per call. The history's size is `<prefix>:hbytes`: for each delivered
    /// delivery kept, the length of its hash's field names and values (the body, the
    /// `webhook-id`, …) and of its history entries, counted when it is completed.
    pub async fn sweep_history(&self, cutoff_ms: i64, max_bytes: u64) -> Result<u64, StoreError> {
        let inner = &self.inner;
        let mut removed = 0u64;
        let mut looked = 0usize;
        loop {
            let mut call = inner.scripts.sweep_history.prepare_invoke();
            call.arg(&inner.options.prefix)
                .arg(cutoff_ms)
                .arg(max_bytes)
                .arg(SWEEP_BATCH);
            let (swept, more): (u64, u8) = inner
                .timed("sweep history", call.invoke_async(&mut inner.conn.clone()))
                .await?;
            removed += swept;
            looked += SWEEP_BATCH;
            if more == 0 || looked >= SWEEP_LIMIT {
                return Ok(removed);
            }
        }
    }

    /// Deletes, from the consumer groups of `endpoints`, the consumers (other than this
    /// instance) that hold no lease and have read nothing for `idle`: each start of a
    /// replica joins every group under a new name, and Redis keeps every name a group ever
    /// had. Returns how many were deleted.
    pub async fn prune_consumers(
        &self,
        endpoints: &[String],
        idle: Duration,
    ) -> Result<u64, StoreError> {
        if endpoints.is_empty() {
            return Ok(0);
        }
        let inner = &self.inner;
        let mut call = inner.scripts.prune_consumers.prepare_invoke();
        call.arg(&inner.options.prefix)
            .arg(millis(idle))
            .arg(&inner.consumer)
            .arg(endpoints);
        inner
            .timed(
                "prune consumers",
                call.invoke_async(&mut inner.conn.clone()),
            )
            .await
    }

    /// [`Store::release`](crate::Store::release): any replica can lease it again at once.
    /// Ids not leased by this instance are ignored.
    pub async fn release(&self, id: DeliveryId) -> Result<(), StoreError> {
        let Some((endpoint, sid)) = self.inner.leases().remove(id.0) else {
            return Ok(());
        };
        self.inner
            .touch(&endpoint, &[sid], RELEASED_IDLE_MS)
            .await
            .map(drop)
    }

    /// [`Store::dead_letter_endpoint`](crate::Store::dead_letter_endpoint), leased by any
    /// replica or not. One script: Redis is busy with it for the time it takes to move the
    /// whole queue.
    pub async fn dead_letter_endpoint(
        &self,
        endpoint: &str,
        reason: impl Into<String>,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let inner = &self.inner;
        let mut call = inner.scripts.dead_letter_endpoint.prepare_invoke();
        call.arg(&inner.options.prefix)
            .arg(endpoint)
            .arg(reason.into())
            .arg(now_ms);
        let moved: u64 = inner
            .timed(
                "dead letter endpoint",
                call.invoke_async(&mut inner.conn.clone()),
            )
            .await?;
        inner.leases().forget_endpoint(endpoint);
        Ok(moved)
    }

    /// [`Store::dead_letters`](crate::Store::dead_letters), of every replica.
    pub async fn dead_letters(
        &self,
        endpoint: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        self.dead_letters_after(endpoint, None, limit).await
    }

    /// [`Store::dead_letters_after`](crate::Store::dead_letters_after).
    pub async fn dead_letters_after(
        &self,
        endpoint: Option<&str>,
        after: Option<DeliveryId>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let inner = &self.inner;
        let mut call = inner.scripts.dead_letters.prepare_invoke();
        call.arg(&inner.options.prefix)
            .arg(if endpoint.is_some() { "1" } else { "0" })
            .arg(endpoint.unwrap_or_default())
            .arg(limit)
            .arg(after.map(|a| a.0.to_string()).unwrap_or_default());
        let raw: Vec<Vec<Vec<u8>>> = inner
            .timed("dead letters", call.invoke_async(&mut inner.conn.clone()))
            .await?;
        raw.into_iter()
            .map(|flat| Record::parse("dead_letters", flat)?.into_dead_letter())
            .collect()
    }

    /// [`Store::find_dead_letter`](crate::Store::find_dead_letter).
    pub async fn find_dead_letter(&self, id: DeliveryId) -> Result<Option<DeadLetter>, StoreError> {
        let inner = &self.inner;
        let mut call = inner.scripts.dead_letter_by_id.prepare_invoke();
        call.arg(&inner.options.prefix).arg(id.0);
        let raw: Option<Vec<Vec<u8>>> = inner
            .timed("dead letter", call.invoke_async(&mut inner.conn.clone()))
            .await?;
        raw.map(|flat| Record::parse("dead_letters", flat)?.into_dead_letter())
            .transpose()
    }

    /// [`Store::delete_dead_letter`](crate::Store::delete_dead_letter), in one script.
    pub async fn delete_dead_letter(&self, id: DeliveryId) -> Result<bool, StoreError> {
        let inner = &self.inner;
        let mut call = inner.scripts.delete_dead_letter.prepare_invoke();
        call.arg(&inner.options.prefix).arg(id.0);
        let endpoint: Option<String> = inner
            .timed(
                "delete dead letter",
                call.invoke_async(&mut inner.conn.clone()),
            )
            .await?;
        Ok(endpoint.is_some())
    }

    /// [`Store::replay`](crate::Store::replay), whichever replica dead-lettered it; wakes
    /// this instance's subscribers only.
    pub async fn replay(&self, id: DeliveryId, now_ms: i64) -> Result<bool, StoreError> {
        let inner = &self.inner;
        let entry = record::entry(id, replay_entry(now_ms))?;
        let mut call = inner.scripts.replay.prepare_invoke();
        call.arg(&inner.options.prefix)
            .arg(id.0)
            .arg(now_ms)
            .arg(entry);
        let endpoint: Option<String> = inner
            .timed("replay", call.invoke_async(&mut inner.conn.clone()))
            .await?;
        if let Some(endpoint) = &endpoint {
            inner.wake(endpoint);
        }
        Ok(endpoint.is_some())
    }

    /// [`Store::replay_endpoint`](crate::Store::replay_endpoint), in one script.
    pub async fn replay_endpoint(&self, endpoint: &str, now_ms: i64) -> Result<u64, StoreError> {
        let inner = &self.inner;
        let entry = record::entry(DeliveryId(0), replay_entry(now_ms))?;
        let mut call = inner.scripts.replay_endpoint.prepare_invoke();
        call.arg(&inner.options.prefix)
            .arg(endpoint)
            .arg(now_ms)
            .arg(entry);
        let replayed: u64 = inner
            .timed(
                "replay endpoint",
                call.invoke_async(&mut inner.conn.clone()),
            )
            .await?;
        if replayed > 0 {
            inner.wake(endpoint);
        }
        Ok(replayed)
    }

    /// [`Store::retry_now`](crate::Store::retry_now), in one script: the deliveries leave
    /// the sorted set of rescheduled ones for the endpoint's stream, due at `now_ms`, so the
    /// next lease of any replica takes them at once. Wakes this instance's subscribers only.
    pub async fn retry_now(&self, endpoint: &str, now_ms: i64) -> Result<u64, StoreError> {
        let inner = &self.inner;
        let mut call = inner.scripts.retry_now.prepare_invoke();
        call.arg(&inner.options.prefix).arg(endpoint).arg(now_ms);
        let moved: u64 = inner
            .timed("retry now", call.invoke_async(&mut inner.conn.clone()))
            .await?;
        if moved > 0 {
            inner.wake(endpoint);
        }
        Ok(moved)
    }

    /// [`Store::first_use`](crate::Store::first_use), by Redis's clock (`now_ms` is not
    /// used): `SET <prefix>:use:<key> 1 NX PX <ttl>`, so every replica sees the token used.
    /// A TTL under a millisecond counts as one.
    pub async fn first_use(
        &self,
        key: &str,
        ttl: Duration,
        _now_ms: i64,
    ) -> Result<bool, StoreError> {
        let inner = &self.inner;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(format!("{}:use:{key}", inner.options.prefix))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms.clamp(1, RELEASED_IDLE_MS));
        let set: Option<String> = inner
            .timed("first use", cmd.query_async(&mut inner.conn.clone()))
            .await?;
        Ok(set.is_some())
    }

    /// [`Store::forget_use`](crate::Store::forget_use): `DEL <prefix>:use:<key>`.
    pub async fn forget_use(&self, key: &str) -> Result<(), StoreError> {
        let inner = &self.inner;
        let mut cmd = ::redis::cmd("DEL");
        cmd.arg(format!("{}:use:{key}", inner.options.prefix));
        inner
            .timed(
                "forget use",
                cmd.query_async::<u64>(&mut inner.conn.clone()),
            )
            .await
            .map(drop)
    }

    /// [`Store::dead_letter_count`](crate::Store::dead_letter_count), of every replica.
    pub async fn dead_letter_count(&self, endpoint: &str) -> Result<u64, StoreError> {
        let inner = &self.inner;
        let key = format!("{}:dead:{endpoint}", inner.options.prefix);
        inner
            .timed(
                "dead letter count",
                ::redis::cmd("ZCARD")
                    .arg(key)
                    .query_async(&mut inner.conn.clone()),
            )
            .await
    }

    /// [`Store::queue_depth`](crate::Store::queue_depth), leased ones by any replica
    /// included.
    pub async fn queue_depth(&self, endpoint: &str) -> Result<u64, StoreError> {
        let inner = &self.inner;
        let prefix = &inner.options.prefix;
        let mut pipe = ::redis::pipe();
        pipe.cmd("XLEN")
            .arg(format!("{prefix}:q:{endpoint}"))
            .cmd("ZCARD")
            .arg(format!("{prefix}:z:{endpoint}"));
        let (streamed, delayed): (u64, u64) = inner
            .timed("queue depth", pipe.query_async(&mut inner.conn.clone()))
            .await?;
        Ok(streamed + delayed)
    }

    /// [`Store::endpoints`](crate::Store::endpoints), of every replica.
    pub async fn endpoints(&self) -> Result<Vec<String>, StoreError> {
        let inner = &self.inner;
        let mut cmd = ::redis::cmd("SMEMBERS");
        cmd.arg(format!("{}:endpoints", inner.options.prefix));
        let mut names: Vec<String> = inner
            .timed("endpoints", cmd.query_async(&mut inner.conn.clone()))
            .await?;
        names.sort_unstable();
        Ok(names)
    }

    /// [`Store::subscribe`](crate::Store::subscribe): notified when this instance enqueues,
    /// replays or [retries now](RedisStore::retry_now) deliveries for `endpoint`. Other
    /// replicas' writes notify nothing here: a worker also wakes at
    /// [`RedisStore::next_due`], at most one poll interval away.
    pub fn subscribe(&self, endpoint: &str) -> Arc<Notify> {
        self.inner.waker(endpoint)
    }

    /// [`Store::health`](crate::Store::health): ready when Redis answers a `PING` within
    /// the operation timeout.
    pub async fn health(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        inner
            .timed(
                "ping",
                ::redis::cmd("PING").query_async::<()>(&mut inner.conn.clone()),
            )
            .await
    }
}

impl Inner {
    /// Runs `call` within the operation timeout.
    async fn timed<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.options.op_timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(StoreError::backend(op, error)),
            Err(elapsed) => Err(StoreError::backend(op, elapsed)),
        }
    }

    fn leases(&self) -> MutexGuard<'_, Leases> {
        self.leases.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `call`, the script that records leased delivery `id`'s outcome. While it runs
    /// the lease is marked closing (a renewal that finds it gone is not a loss); once Redis
    /// has the outcome the lease is gone, and if the call failed it is still held (and
    /// renewed) here.
    async fn record_outcome(
        &self,
        op: &'static str,
        id: DeliveryId,
        call: ::redis::ScriptInvocation<'_>,
    ) -> Result<(), StoreError> {
        // The lease it is recorded under: a replica whose lease was taken over records
        // nothing (the scripts' `may_record`).
        let sid = {
            let mut leases = self.leases();
            leases.set_closing(id.0, true);
            leases.sid(id.0).unwrap_or_default()
        };
        let mut call = call;
        call.arg(sid)
            .arg(&self.consumer)
            .arg(millis(self.options.visibility_timeout));
        let found = self
            .timed(op, call.invoke_async::<i64>(&mut self.conn.clone()))
            .await;
        {
            let mut leases = self.leases();
            if found.is_ok() {
                leases.remove(id.0);
            } else {
                leases.set_closing(id.0, false);
            }
        }
        known(found?, id)
    }

    fn waker(&self, endpoint: &str) -> Arc<Notify> {
        let mut wakers = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(wakers.entry(endpoint.to_owned()).or_default())
    }

    fn wake(&self, endpoint: &str) {
        self.waker(endpoint).notify_one();
    }

    /// Sets the idle time of the stream entries `sids` of `endpoint` that this consumer
    /// still owns; returns those it does not.
    async fn touch(
        &self,
        endpoint: &str,
        sids: &[String],
        idle_ms: u64,
    ) -> Result<Vec<String>, StoreError> {
        let mut call = self.scripts.touch.prepare_invoke();
        call.arg(&self.options.prefix)
            .arg(&self.consumer)
            .arg(endpoint)
            .arg(idle_ms)
            .arg(sids);
        self.timed("renew leases", call.invoke_async(&mut self.conn.clone()))
            .await
    }

    /// Resets the idle time of every lease held here; forgets those taken over.
    async fn renew(&self) {
        let held = self.leases().by_endpoint();
        for (endpoint, sids) in held {
            match self.touch(&endpoint, &sids, 0).await {
                Ok(lost) => {
                    // A delivery completed (or released) while the touch was in flight is
                    // no longer held here, or is having its outcome recorded: it was not
                    // lost, only finished.
                    let lost: Vec<String> = {
                        let leases = self.leases();
                        lost.into_iter()
                            .filter(|sid| leases.holds_open(&endpoint, sid))
                            .collect()
                    };
                    if lost.is_empty() {
                        continue;
                    }
                    tracing::warn!(
                        endpoint = %endpoint,
                        lost = lost.len(),
                        "leases no longer held (completed, removed or claimed by another replica)"
                    );
                    self.leases().forget(&endpoint, &lost);
                }
                Err(error) => {
                    tracing::warn!(endpoint = %endpoint, error = %error, "cannot renew leases");
                }
            }
        }
    }
}

/// Renews the leases of the store every third of the visibility timeout while it exists.
async fn renew_leases(inner: Weak<Inner>) {
    let period = match inner.upgrade() {
        Some(inner) => inner.options.visibility_timeout / 3,
        None => return,
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.renew().await;
    }
}

/// Logs a warning when Redis does not fsync its append-only file (best effort: managed
/// services often refuse `CONFIG`).
async fn warn_unless_durable(conn: &mut ConnectionManager, target: &str) {
    let reply: RedisResult<HashMap<String, String>> = ::redis::cmd("CONFIG")
        .arg("GET")
        .arg("append*")
        .query_async(conn)
        .await;
    let Ok(config) = reply else {
        return;
    };
    let aof = config.get("appendonly").map(String::as_str);
    let fsync = config.get("appendfsync").map(String::as_str);
    if aof != Some("yes") {
        tracing::warn!(
            target,
            "redis runs without appendonly: acknowledged deliveries are lost if it restarts"
        );
    } else if fsync != Some("always") {
        tracing::warn!(
            target,
            appendfsync = fsync.unwrap_or("?"),
            "redis does not fsync every write: a crash can lose the last second of deliveries"
        );
    }
}

/// Adds a history entry's arguments to `call`: has entry ('1'/'0'), the entry.
fn with_entry(call: &mut ::redis::ScriptInvocation<'_>, entry: Option<&[u8]>) {
    match entry {
        Some(entry) => call.arg("1").arg(entry),
        None => call.arg("0").arg(""),
    };
}

/// The history entry of a replay at `now_ms`.
fn replay_entry(now_ms: i64) -> Attempt {
    Attempt {
        at_ms: now_ms,
        outcome: AttemptOutcome::Replayed,
        status: None,
        duration_ms: 0,
        error: None,
        response: None,
    }
}

/// The deliveries a history script answered, those that cannot be decoded left out.
fn decoded(raw: Vec<RawHistory>) -> Vec<History> {
    raw.into_iter()
        .filter_map(|item| match record::history(item) {
            Ok(history) => Some(history),
            Err(error) => {
                tracing::error!(error = %error, "unreadable delivery left out");
                None
            }
        })
        .collect()
}

fn known(found: i64, id: DeliveryId) -> Result<(), StoreError> {
    if found == 0 {
        Err(StoreError::UnknownDelivery { id })
    } else {
        Ok(())
    }
}

/// A consumer name unique to this store instance: `<HOSTNAME>-<pid>-<n>`.
fn consumer_name() -> String {
    static INSTANCES: AtomicU64 = AtomicU64::new(0);
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "hookrelay".into());
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let n = INSTANCES.fetch_add(1, Ordering::Relaxed);
    format!("{host}-{}-{started:x}-{n}", std::process::id())
}

/// The URL without user, password and query.
fn redact(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(end);
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            format!("{scheme}://{host}{path}")
        }
        None => "<not a URL>".into(),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A score or not-before as Redis returns it ("61000", "6.1e4").
fn parse_ms(text: &str) -> Option<i64> {
    text.parse().ok().or_else(|| {
        let value: f64 = text.parse().ok()?;
        // Scores are integers well within f64's exact range.
        #[allow(clippy::cast_possible_truncation)]
        value.is_finite().then_some(value as i64)
    })
}

#[cfg(test)]
mod tests {
    use super::{parse_ms, redact};

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact("rediss://user:s3cret@redis.internal:6380/2?x=1"),
            "rediss://redis.internal:6380/2"
        );
        assert_eq!(redact("redis://127.0.0.1"), "redis://127.0.0.1");
        assert_eq!(redact("garbage"), "<not a URL>");
    }

    #[test]
    fn scores_parse() {
        assert_eq!(parse_ms("61000"), Some(61_000));
        assert_eq!(parse_ms("6.1e4"), Some(61_000));
        assert_eq!(parse_ms("x"), None);
    }
}
