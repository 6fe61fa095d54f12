//! The embedded backend: one redb file, one writer thread, an in-memory queue index.

mod index;
mod tables;
mod writer;

use crate::codec::{Head, decode, decode_prefix};
use crate::{DeadLetter, Delivery, DeliveryId, EnqueueOutcome, NewDelivery, StoreError};
use index::Index;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use tables::{
    DEAD_BY_ENDPOINT, DEAD_LETTERS, DEAD_LETTERS_NAME, DEDUPE, DEDUPE_EXPIRY, DELIVERIES,
    DELIVERIES_NAME, META, NEXT_ID, QUEUE_BY_ENDPOINT,
};
use tokio::sync::{Notify, oneshot};
use writer::{Op, Reply, Shared, Writer};

/// Page cache of the database file.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

/// The database file inside the store directory.
const FILE_NAME: &str = "hookrelay.redb";

/// Tuning of an [`EmbeddedStore`].
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    max_batch: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions { max_batch: 1024 }
    }
}

impl EmbeddedOptions {
    /// Most operations committed in one write transaction (default 1024, at least 1).
    ///
    /// `1` commits every operation on its own, one fsync each: the baseline that group
    /// commit is measured against.
    #[must_use]
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch.max(1);
        self
    }
}

/// The embedded store: a durable queue of deliveries and their dead letters in one redb
/// file, safe to share (clones share one database and one writer).
///
/// Every method that writes returns after its write is durable. Writes from concurrent
/// callers are committed together (group commit), see [`EmbeddedStore::commits`]. A call
/// whose future is dropped before it completes may still be applied.
///
/// Leases are kept in memory: after [`EmbeddedStore::open`] every queued delivery is
/// eligible again.
#[derive(Clone, Debug)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    db: Arc<Database>,
    shared: Arc<Shared>,
    ops: Option<Sender<Op>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the writer after its current batch; joining it means the
        // file is closed (and can be reopened) once the last handle is gone.
        drop(self.ops.take());
        let handle = self
            .writer
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::error!("store writer thread panicked");
        }
    }
}

impl EmbeddedStore {
    /// Opens the store in directory `dir`, creating the directory and the database file
    /// (`hookrelay.redb`) if needed, with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(dir, EmbeddedOptions::default())
    }

    /// Opens the store in directory `dir` with `options`.
    ///
    /// A file left by a killed process is repaired first. The in-memory index is rebuilt
    /// from every queued delivery, none of them leased.
    pub fn open_with(dir: impl AsRef<Path>, options: EmbeddedOptions) -> Result<Self, StoreError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let open_error = |source: Arc<dyn std::error::Error + Send + Sync>| StoreError::Open {
            path: path.clone(),
            source,
        };
        // A bounded page cache: redb's default grows to a gigabyte, and under sustained
        // ingest every new cache page is a fresh, zeroed page of memory.
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| open_error(Arc::new(e)))?;
        create_tables(&db).map_err(|e| open_error(Arc::new(e)))?;
        let (index, next_id) = load_index(&db)?;

        let db = Arc::new(db);
        let shared = Arc::new(Shared {
            index: Mutex::new(index),
            ..Shared::default()
        });
        let (ops, receiver) = mpsc::channel();
        let writer = Writer {
            db: Arc::clone(&db),
            shared: Arc::clone(&shared),
            next_id,
            max_batch: options.max_batch,
        };
        let handle = std::thread::Builder::new()
            .name("hookrelay-store-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|source| StoreError::Spawn { source })?;
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                path,
                db,
                shared,
                ops: Some(ops),
                writer: Mutex::new(Some(handle)),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn call<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let ops = self.inner.ops.as_ref().ok_or(StoreError::WriterStopped)?;
        ops.send(op(reply)).map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// Enqueues `batch` durably, with the provider event's dedupe key if there is one.
    ///
    /// The key and the deliveries are written in one transaction. If the key was recorded
    /// less than its window ago (by `now_ms`), nothing is written and the outcome is
    /// [`EnqueueOutcome::Duplicate`]; otherwise the key is recorded until `now_ms + window`
    /// (also for an empty batch) and every delivery is queued, due at `now_ms`. Expired keys
    /// are purged a bounded number per commit.
    pub async fn enqueue(
        &self,
        dedupe: Option<(String, Duration)>,
        batch: Vec<NewDelivery>,
        now_ms: i64,
    ) -> Result<EnqueueOutcome, StoreError> {
        if dedupe.is_none() && batch.is_empty() {
            return Ok(EnqueueOutcome::Enqueued(Vec::new()));
        }
        self.call(|reply| Op::Enqueue {
            dedupe,
            batch,
            now_ms,
            reply,
        })
        .await
    }

    /// Leases up to `max` deliveries of `endpoint` that are due at `now_ms` and not leased,
    /// in id order. A leased delivery stays queued until it is completed, rescheduled,
    /// dead-lettered or released.
    pub async fn lease(
        &self,
        endpoint: &str,
        now_ms: i64,
        max: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let ids = self.inner.shared.index().lease(endpoint, now_ms, max);
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        match self.read_leased(&ids) {
            Ok(deliveries) => Ok(deliveries),
            Err(error) => {
                let mut index = self.inner.shared.index();
                for id in ids {
                    index.release(id);
                }
                Err(error)
            }
        }
    }

    fn read_leased(&self, ids: &[u64]) -> Result<Vec<Delivery>, StoreError> {
        let txn = self
            .inner
            .db
            .begin_read()
            .map_err(|e| StoreError::backend("read", e))?;
        let table = txn
            .open_table(DELIVERIES)
            .map_err(|e| StoreError::backend("read", e))?;
        let mut deliveries = Vec::with_capacity(ids.len());
        for &id in ids {
            // Missing: removed by a commit whose index update is just being applied.
            let Some(guard) = table.get(id).map_err(|e| StoreError::backend("read", e))? else {
                continue;
            };
            match decode(DELIVERIES_NAME, id, guard.value()) {
                Ok(delivery) => deliveries.push(delivery),
                // Stays leased, so it is not offered again before a restart; still counted
                // in the queue depth.
                Err(error) => {
                    tracing::error!(id, error = %error, "undecodable delivery left leased")
                }
            }
        }
        Ok(deliveries)
    }

    /// The earliest time an unleased delivery of `endpoint` is due (at or before the
    /// present when one is due now), or `None` when it has none: how long an idle worker
    /// may sleep, unless [`EmbeddedStore::subscribe`] wakes it first.
    pub fn next_due(&self, endpoint: &str) -> Option<i64> {
        self.inner.shared.index().next_due(endpoint)
    }

    /// Removes a delivered delivery from the queue.
    pub async fn complete(&self, id: DeliveryId) -> Result<(), StoreError> {
        self.call(|reply| Op::Complete { id: id.0, reply }).await
    }

    /// Puts a leased delivery back, due at `not_before_ms`, with its attempt count and the
    /// last attempt's error.
    pub async fn reschedule(
        &self,
        id: DeliveryId,
        not_before_ms: i64,
        attempts: u32,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        self.call(|reply| Op::Reschedule {
            id: id.0,
            not_before_ms,
            attempts,
            error,
            reply,
        })
        .await
    }

    /// Moves a delivery to the dead letters with the reason and the last response (its
    /// body cut to [`MAX_RESPONSE_BYTES`](crate::MAX_RESPONSE_BYTES)).
    pub async fn dead_letter(
        &self,
        id: DeliveryId,
        reason: impl Into<String>,
        status: Option<u16>,
        response: Option<String>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let reason = reason.into();
        self.call(|reply| Op::DeadLetter {
            id: id.0,
            reason,
            status,
            response,
            now_ms,
            reply,
        })
        .await
    }

    /// Gives a lease back unchanged (at shutdown, or when an endpoint is paused); the
    /// delivery is eligible again at once. Unknown or unleased ids are ignored.
    pub async fn release(&self, id: DeliveryId) -> Result<(), StoreError> {
        self.inner.shared.index().release(id.0);
        Ok(())
    }

    /// Moves every queued delivery of `endpoint`, leased or not, to the dead letters with
    /// `reason` (`endpoint removed` after a reload dropped it); returns how many.
    pub async fn dead_letter_endpoint(
        &self,
        endpoint: &str,
        reason: impl Into<String>,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let endpoint = endpoint.to_owned();
        let reason = reason.into();
        self.call(|reply| Op::DeadLetterEndpoint {
            endpoint,
            reason,
            now_ms,
            reply,
        })
        .await
    }

    /// Lists up to `limit` dead letters, of one endpoint or of all, oldest delivery first.
    pub async fn dead_letters(
        &self,
        endpoint: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let read = |e: redb::Error| StoreError::backend("read", e);
        let txn = self.inner.db.begin_read().map_err(|e| read(e.into()))?;
        let dead = txn.open_table(DEAD_LETTERS).map_err(|e| read(e.into()))?;
        let ids: Vec<u64> = match endpoint {
            Some(endpoint) => {
                let index = txn
                    .open_table(DEAD_BY_ENDPOINT)
                    .map_err(|e| read(e.into()))?;
                let range = index
                    .range((endpoint, 0)..=(endpoint, u64::MAX))
                    .map_err(|e| read(e.into()))?;
                let mut ids = Vec::new();
                for entry in range.take(limit) {
                    let (key, _) = entry.map_err(|e| read(e.into()))?;
                    ids.push(key.value().1);
                }
                ids
            }
            None => {
                let mut ids = Vec::new();
                for entry in dead.iter().map_err(|e| read(e.into()))?.take(limit) {
                    let (key, _) = entry.map_err(|e| read(e.into()))?;
                    ids.push(key.value());
                }
                ids
            }
        };
        let mut letters = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(guard) = dead.get(id).map_err(|e| read(e.into()))? {
                letters.push(decode(DEAD_LETTERS_NAME, id, guard.value())?);
            }
        }
        Ok(letters)
    }

    /// Queues a dead letter again under its id, attempts reset, same `webhook_id`, due at
    /// once; false when there is no such dead letter.
    pub async fn replay(&self, id: DeliveryId) -> Result<bool, StoreError> {
        self.call(|reply| Op::Replay { id: id.0, reply }).await
    }

    /// Replays every dead letter of `endpoint`; returns how many.
    pub async fn replay_endpoint(&self, endpoint: &str) -> Result<u64, StoreError> {
        let endpoint = endpoint.to_owned();
        self.call(|reply| Op::ReplayEndpoint { endpoint, reply })
            .await
    }

    /// Queued deliveries of `endpoint`, leased ones included (from memory, no I/O).
    pub fn queue_depth(&self, endpoint: &str) -> u64 {
        self.inner.shared.index().depth(endpoint)
    }

    /// Endpoints that have queued deliveries, sorted (from memory, no I/O).
    pub fn endpoints(&self) -> Vec<String> {
        self.inner.shared.index().endpoints()
    }

    /// The wake-up signal of `endpoint`, notified (one permit) when deliveries are enqueued
    /// or replayed for it. A worker subscribes, leases until nothing is due, then waits on
    /// `notified()` or until [`EmbeddedStore::next_due`], whichever comes first; the stored
    /// permit means an enqueue between the lease and the wait is not missed.
    pub fn subscribe(&self, endpoint: &str) -> Arc<Notify> {
        self.inner.shared.index().waker(endpoint)
    }

    /// Write transactions committed since open (each one fsync): with group commit, far
    /// fewer than the writes made under concurrency.
    pub fn commits(&self) -> u64 {
        self.inner.shared.commits.load(Ordering::Relaxed)
    }

    /// Ready when the writer runs, no commit has failed, and the file can be read.
    pub async fn health(&self) -> Result<(), StoreError> {
        if let Some(source) = self.inner.shared.failure() {
            return Err(StoreError::Backend {
                op: "commit",
                source,
            });
        }
        let stopped = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_none_or(JoinHandle::is_finished);
        if stopped {
            return Err(StoreError::WriterStopped);
        }
        let txn = self
            .inner
            .db
            .begin_read()
            .map_err(|e| StoreError::backend("read", e))?;
        txn.open_table(META)
            .map_err(|e| StoreError::backend("read", e))?;
        Ok(())
    }
}

fn create_tables(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(DELIVERIES)?;
    txn.open_table(QUEUE_BY_ENDPOINT)?;
    txn.open_table(DEAD_LETTERS)?;
    txn.open_table(DEAD_BY_ENDPOINT)?;
    txn.open_table(DEDUPE)?;
    txn.open_table(DEDUPE_EXPIRY)?;
    txn.open_table(META)?;
    txn.commit()?;
    Ok(())
}

/// Rebuilds the queue index and finds the next id to allocate.
fn load_index(db: &Database) -> Result<(Index, u64), StoreError> {
    let read = |e: redb::Error| StoreError::backend("read at open", e);
    let txn = db.begin_read().map_err(|e| read(e.into()))?;
    let deliveries = txn.open_table(DELIVERIES).map_err(|e| read(e.into()))?;
    let dead = txn.open_table(DEAD_LETTERS).map_err(|e| read(e.into()))?;
    let meta = txn.open_table(META).map_err(|e| read(e.into()))?;

    let mut next_id = meta
        .get(NEXT_ID)
        .map_err(|e| read(e.into()))?
        .map_or(0, |guard| guard.value());
    for table in [&deliveries, &dead] {
        if let Some((last, _)) = table.last().map_err(|e| read(e.into()))? {
            next_id = next_id.max(last.value().saturating_add(1));
        }
    }

    let mut index = Index::default();
    let queued = deliveries.len().map_err(|e| read(e.into()))?;
    for entry in deliveries.iter().map_err(|e| read(e.into()))? {
        let (key, value) = entry.map_err(|e| read(e.into()))?;
        let head: Head = decode_prefix(DELIVERIES_NAME, key.value(), value.value())?;
        index.insert(head.endpoint, head.id.0, head.not_before_ms);
    }
    tracing::info!(queued, next_id, "store opened");
    Ok((index, next_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dedupe_rows(store: &EmbeddedStore) -> Result<(u64, u64), redb::Error> {
        let txn = store.inner.db.begin_read()?;
        let keys = txn.open_table(DEDUPE)?.len()?;
        let expiry = txn.open_table(DEDUPE_EXPIRY)?.len()?;
        Ok((keys, expiry))
    }

    #[tokio::test]
    async fn expired_dedupe_keys_are_purged_a_bounded_number_per_commit()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = EmbeddedStore::open(dir.path())?;
        for i in 0..300 {
            let key = Some((format!("k{i}"), Duration::from_millis(1)));
            store.enqueue(key, Vec::new(), 0).await?;
        }
        assert_eq!(dedupe_rows(&store)?, (300, 300));
        // Renewing expired k0 at 1 commits with a purge of 256 of the other 299.
        let renewed = Some(("k0".to_owned(), Duration::from_secs(60)));
        store.enqueue(renewed, Vec::new(), 1).await?;
        assert_eq!(dedupe_rows(&store)?, (44, 44));
        let fresh = Some(("a".to_owned(), Duration::from_secs(60)));
        store.enqueue(fresh, Vec::new(), 10).await?;
        assert_eq!(
            dedupe_rows(&store)?,
            (2, 2),
            "only the live k0 and a are left"
        );
        Ok(())
    }
}
