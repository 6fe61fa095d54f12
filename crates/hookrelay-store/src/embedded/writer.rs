//! The writer thread: group commit.
//!
//! Callers send an [`Op`] with a oneshot reply. The thread takes the first op, drains
//! whatever else is already waiting (up to `max_batch`), applies them all in one write
//! transaction, commits it durably (fsync), applies the in-memory effects, wakes workers,
//! and only then answers every caller. A failed commit fails every op of the batch.
//!
//! An op decides whether it can proceed (record present and decodable, values encodable)
//! before it writes anything, so an op that fails on its own leaves the transaction clean
//! and the other ops of the batch still commit.

use super::index::{Effect, Index};
use super::tables::{
    DEAD_BY_ENDPOINT, DEAD_LETTERS, DEAD_LETTERS_NAME, DEDUPE, DEDUPE_EXPIRY, DELIVERIES,
    DELIVERIES_NAME, META, NEXT_ID, QUEUE_BY_ENDPOINT,
};
use crate::codec::{decode, encode};
use crate::types::truncate;
use crate::{
    DeadLetter, Delivery, DeliveryId, EnqueueOutcome, MAX_RESPONSE_BYTES, NewDelivery, StoreError,
};
use redb::{Database, ReadableTable, Table, WriteTransaction};
use std::error::Error as StdError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::oneshot;

/// At most this many expired dedupe keys are removed per commit.
const PURGE_PER_COMMIT: usize = 256;

pub(crate) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One caller's write.
pub(crate) enum Op {
    Enqueue {
        dedupe: Option<(String, Duration)>,
        batch: Vec<NewDelivery>,
        now_ms: i64,
        reply: Reply<EnqueueOutcome>,
    },
    Complete {
        id: u64,
        reply: Reply<()>,
    },
    Reschedule {
        id: u64,
        not_before_ms: i64,
        attempts: u32,
        error: Option<String>,
        reply: Reply<()>,
    },
    DeadLetter {
        id: u64,
        reason: String,
        status: Option<u16>,
        response: Option<String>,
        now_ms: i64,
        reply: Reply<()>,
    },
    DeadLetterEndpoint {
        endpoint: String,
        reason: String,
        now_ms: i64,
        reply: Reply<u64>,
    },
    Replay {
        id: u64,
        reply: Reply<bool>,
    },
    ReplayEndpoint {
        endpoint: String,
        reply: Reply<u64>,
    },
}

/// State shared by the writer thread and the store handles.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) index: Mutex<Index>,
    pub(crate) commits: AtomicU64,
    /// Set when a commit failed: the database refuses writes until reopened.
    pub(crate) failed: Mutex<Option<Arc<dyn StdError + Send + Sync>>>,
}

impl Shared {
    pub(crate) fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        // The index is consistent after every statement that holds the lock, so a panic
        // elsewhere leaves it usable.
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn failure(&self) -> Option<Arc<dyn StdError + Send + Sync>> {
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Why applying an op stopped.
enum Stop {
    /// This op cannot proceed; nothing of it was written.
    Op(StoreError),
    /// The transaction is unusable: the whole batch fails.
    Fatal(StoreError),
}

impl From<redb::StorageError> for Stop {
    fn from(e: redb::StorageError) -> Self {
        Stop::Fatal(StoreError::backend("write", e))
    }
}

/// A caller's reply, held until the batch commits.
enum Pending {
    Enqueue(Reply<EnqueueOutcome>, Result<EnqueueOutcome, StoreError>),
    Unit(Reply<()>, Result<(), StoreError>),
    Count(Reply<u64>, Result<u64, StoreError>),
    Found(Reply<bool>, Result<bool, StoreError>),
}

impl Pending {
    fn send(self) {
        // A caller that stopped waiting (cancelled) is not an error: its op is durable.
        match self {
            Pending::Enqueue(reply, result) => drop(reply.send(result)),
            Pending::Unit(reply, result) => drop(reply.send(result)),
            Pending::Count(reply, result) => drop(reply.send(result)),
            Pending::Found(reply, result) => drop(reply.send(result)),
        }
    }

    fn fail(self, error: &dyn Fn() -> StoreError) {
        match self {
            Pending::Enqueue(reply, _) => drop(reply.send(Err(error()))),
            Pending::Unit(reply, _) => drop(reply.send(Err(error()))),
            Pending::Count(reply, _) => drop(reply.send(Err(error()))),
            Pending::Found(reply, _) => drop(reply.send(Err(error()))),
        }
    }
}

struct Tables<'txn> {
    deliveries: Table<'txn, u64, &'static [u8]>,
    queue_by_endpoint: Table<'txn, (&'static str, u64), ()>,
    dead_letters: Table<'txn, u64, &'static [u8]>,
    dead_by_endpoint: Table<'txn, (&'static str, u64), ()>,
    dedupe: Table<'txn, &'static str, i64>,
    dedupe_expiry: Table<'txn, (i64, &'static str), ()>,
}

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Self, redb::TableError> {
        Ok(Tables {
            deliveries: txn.open_table(DELIVERIES)?,
            queue_by_endpoint: txn.open_table(QUEUE_BY_ENDPOINT)?,
            dead_letters: txn.open_table(DEAD_LETTERS)?,
            dead_by_endpoint: txn.open_table(DEAD_BY_ENDPOINT)?,
            dedupe: txn.open_table(DEDUPE)?,
            dedupe_expiry: txn.open_table(DEDUPE_EXPIRY)?,
        })
    }
}

pub(crate) struct Writer {
    pub(crate) db: Arc<Database>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) next_id: u64,
    pub(crate) max_batch: usize,
}

impl Writer {
    pub(crate) fn run(mut self, ops: Receiver<Op>) {
        while let Ok(first) = ops.recv() {
            let mut batch = vec![first];
            while batch.len() < self.max_batch {
                match ops.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            self.commit(batch);
        }
    }

    fn commit(&mut self, batch: Vec<Op>) {
        let size = batch.len();
        let first_id = self.next_id;
        let mut pending = Vec::with_capacity(size);
        let mut effects = Vec::new();
        let outcome = self.write(batch, &mut pending, &mut effects);
        match outcome {
            Ok(()) => {
                self.shared.commits.fetch_add(1, Ordering::Relaxed);
                tracing::trace!(ops = size, "store group commit");
                self.shared.index().apply(effects);
                pending.into_iter().for_each(Pending::send);
            }
            Err(error) => {
                // Ids handed out in the failed transaction are not reused: harmless gaps.
                tracing::error!(ops = size, first_id, error = %error, "store commit failed");
                let source = match &error {
                    StoreError::Backend { source, .. } => Arc::clone(source),
                    other => Arc::new(std::io::Error::other(other.to_string())),
                };
                let op = match &error {
                    StoreError::Backend { op, .. } => *op,
                    _ => "write",
                };
                let make = || StoreError::Backend {
                    op,
                    source: Arc::clone(&source),
                };
                pending.into_iter().for_each(|p| p.fail(&make));
            }
        }
    }

    /// Applies the batch in one transaction and commits it. On `Err` nothing was
    /// acknowledged; `pending` holds every caller's reply either way.
    fn write(
        &mut self,
        batch: Vec<Op>,
        pending: &mut Vec<Pending>,
        effects: &mut Vec<Effect>,
    ) -> Result<(), StoreError> {
        let mut fatal: Option<StoreError> = None;
        let txn = match self.db.begin_write() {
            Ok(txn) => Some(txn),
            Err(e) => {
                fatal = Some(StoreError::backend("begin write", e));
                None
            }
        };
        let mut tables = match txn.as_ref().map(Tables::open) {
            Some(Ok(tables)) => Some(tables),
            Some(Err(e)) => {
                fatal = Some(StoreError::backend("open tables", e));
                None
            }
            None => None,
        };
        let next_id_before = self.next_id;
        let mut purge_at: Option<i64> = None;
        for op in batch {
            // After a fatal error the remaining ops are only collected, to be failed.
            let live = match (&fatal, tables.as_mut()) {
                (None, Some(tables)) => Some(tables),
                _ => None,
            };
            pending.push(match op {
                Op::Enqueue {
                    dedupe,
                    batch,
                    now_ms,
                    reply,
                } => {
                    purge_at = Some(purge_at.map_or(now_ms, |at| at.max(now_ms)));
                    let result = self.apply(live, &mut fatal, |t, next_id| {
                        enqueue(t, next_id, dedupe, batch, now_ms, effects)
                    });
                    Pending::Enqueue(reply, result)
                }
                Op::Complete { id, reply } => {
                    let result = self.apply(live, &mut fatal, |t, _| complete(t, id, effects));
                    Pending::Unit(reply, result)
                }
                Op::Reschedule {
                    id,
                    not_before_ms,
                    attempts,
                    error,
                    reply,
                } => {
                    let result = self.apply(live, &mut fatal, |t, _| {
                        reschedule(t, id, not_before_ms, attempts, error, effects)
                    });
                    Pending::Unit(reply, result)
                }
                Op::DeadLetter {
                    id,
                    reason,
                    status,
                    response,
                    now_ms,
                    reply,
                } => {
                    let result = self.apply(live, &mut fatal, |t, _| {
                        bury(t, id, reason, status, response, now_ms, effects)
                    });
                    Pending::Unit(reply, result)
                }
                Op::DeadLetterEndpoint {
                    endpoint,
                    reason,
                    now_ms,
                    reply,
                } => {
                    let result = self.apply(live, &mut fatal, |t, _| {
                        bury_endpoint(t, &endpoint, &reason, now_ms, effects)
                    });
                    Pending::Count(reply, result)
                }
                Op::Replay { id, reply } => {
                    let result = self.apply(live, &mut fatal, |t, _| replay(t, id, effects));
                    Pending::Found(reply, result)
                }
                Op::ReplayEndpoint { endpoint, reply } => {
                    let result = self.apply(live, &mut fatal, |t, _| {
                        replay_endpoint(t, &endpoint, effects)
                    });
                    Pending::Count(reply, result)
                }
            });
        }
        if fatal.is_none()
            && let (Some(tables), Some(now_ms)) = (tables.as_mut(), purge_at)
            && let Err(e) = purge_dedupe(tables, now_ms)
        {
            fatal = Some(StoreError::backend("purge dedupe keys", e));
        }
        drop(tables);
        if let Some(error) = fatal {
            // Dropping the transaction aborts it.
            return Err(error);
        }
        let Some(txn) = txn else {
            return Err(StoreError::WriterStopped);
        };
        if self.next_id != next_id_before {
            let stored = txn.open_table(META).and_then(|mut meta| {
                meta.insert(NEXT_ID, self.next_id)?;
                Ok(())
            });
            if let Err(e) = stored {
                return Err(StoreError::backend("write", e));
            }
        }
        txn.commit().map_err(|e| {
            let error: Arc<dyn StdError + Send + Sync> = Arc::new(e);
            *self
                .shared
                .failed
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&error));
            StoreError::Backend {
                op: "commit",
                source: error,
            }
        })
    }

    fn apply<T>(
        &mut self,
        tables: Option<&mut Tables<'_>>,
        fatal: &mut Option<StoreError>,
        f: impl FnOnce(&mut Tables<'_>, &mut u64) -> Result<T, Stop>,
    ) -> Result<T, StoreError> {
        let Some(tables) = tables else {
            // Replaced by the batch's error before it is sent.
            return Err(StoreError::WriterStopped);
        };
        match f(tables, &mut self.next_id) {
            Ok(value) => Ok(value),
            Err(Stop::Op(e)) => Err(e),
            Err(Stop::Fatal(e)) => {
                *fatal = Some(e);
                Err(StoreError::WriterStopped)
            }
        }
    }
}

fn window_ms(window: Duration) -> i64 {
    i64::try_from(window.as_millis()).unwrap_or(i64::MAX)
}

fn enqueue(
    t: &mut Tables<'_>,
    next_id: &mut u64,
    dedupe: Option<(String, Duration)>,
    batch: Vec<NewDelivery>,
    now_ms: i64,
    effects: &mut Vec<Effect>,
) -> Result<EnqueueOutcome, Stop> {
    let mut stale_expiry = None;
    if let Some((key, _)) = &dedupe
        && let Some(expires) = t.dedupe.get(key.as_str())?.map(|guard| guard.value())
    {
        if expires > now_ms {
            return Ok(EnqueueOutcome::Duplicate);
        }
        stale_expiry = Some(expires);
    }
    // Decide everything before writing anything.
    let mut records = Vec::with_capacity(batch.len());
    let mut id = *next_id;
    for new in batch {
        let delivery = Delivery {
            id: DeliveryId(id),
            endpoint: new.endpoint,
            not_before_ms: now_ms,
            attempts: 0,
            webhook_id: new.webhook_id,
            created_at_ms: new.created_at_ms,
            last_error: None,
            body: new.body,
        };
        let bytes = encode(DELIVERIES_NAME, id, &delivery).map_err(Stop::Op)?;
        records.push((id, delivery.endpoint, bytes));
        id = id.checked_add(1).ok_or_else(|| {
            Stop::Op(StoreError::backend(
                "allocate id",
                std::io::Error::other("delivery ids exhausted"),
            ))
        })?;
    }
    if let Some((key, window)) = &dedupe {
        if let Some(expires) = stale_expiry {
            t.dedupe_expiry.remove((expires, key.as_str()))?;
        }
        let expires = now_ms.saturating_add(window_ms(*window));
        t.dedupe.insert(key.as_str(), expires)?;
        t.dedupe_expiry.insert((expires, key.as_str()), ())?;
    }
    let mut ids = Vec::with_capacity(records.len());
    for (id, endpoint, bytes) in records {
        t.deliveries.insert(id, bytes.as_slice())?;
        t.queue_by_endpoint.insert((endpoint.as_str(), id), ())?;
        effects.push(Effect::Queued {
            endpoint,
            id,
            not_before: now_ms,
            wake: true,
        });
        ids.push(DeliveryId(id));
    }
    *next_id = id;
    Ok(EnqueueOutcome::Enqueued(ids))
}

/// Reads a queued delivery; `UnknownDelivery` when there is none.
fn load(t: &Tables<'_>, id: u64) -> Result<Delivery, Stop> {
    let Some(guard) = t.deliveries.get(id)? else {
        return Err(Stop::Op(StoreError::UnknownDelivery { id: DeliveryId(id) }));
    };
    decode(DELIVERIES_NAME, id, guard.value()).map_err(Stop::Op)
}

/// Removes a queued delivery (already loaded) from the queue tables.
fn unqueue(t: &mut Tables<'_>, delivery: &Delivery) -> Result<(), Stop> {
    let id = delivery.id.0;
    t.deliveries.remove(id)?;
    t.queue_by_endpoint
        .remove((delivery.endpoint.as_str(), id))?;
    Ok(())
}

fn removed(delivery: &Delivery) -> Effect {
    Effect::Removed {
        endpoint: delivery.endpoint.clone(),
        id: delivery.id.0,
        not_before: delivery.not_before_ms,
    }
}

fn complete(t: &mut Tables<'_>, id: u64, effects: &mut Vec<Effect>) -> Result<(), Stop> {
    let delivery = load(t, id)?;
    unqueue(t, &delivery)?;
    effects.push(removed(&delivery));
    Ok(())
}

fn reschedule(
    t: &mut Tables<'_>,
    id: u64,
    not_before_ms: i64,
    attempts: u32,
    error: Option<String>,
    effects: &mut Vec<Effect>,
) -> Result<(), Stop> {
    let delivery = load(t, id)?;
    let before = removed(&delivery);
    let delivery = Delivery {
        not_before_ms,
        attempts,
        last_error: error,
        ..delivery
    };
    let bytes = encode(DELIVERIES_NAME, id, &delivery).map_err(Stop::Op)?;
    t.deliveries.insert(id, bytes.as_slice())?;
    effects.push(before);
    effects.push(Effect::Queued {
        endpoint: delivery.endpoint,
        id,
        not_before: not_before_ms,
        wake: false,
    });
    Ok(())
}

fn bury(
    t: &mut Tables<'_>,
    id: u64,
    reason: String,
    status: Option<u16>,
    response: Option<String>,
    now_ms: i64,
    effects: &mut Vec<Effect>,
) -> Result<(), Stop> {
    let delivery = load(t, id)?;
    let dead = DeadLetter {
        delivery,
        reason,
        status,
        response: response.map(|text| truncate(text, MAX_RESPONSE_BYTES)),
        dead_at_ms: now_ms,
    };
    let bytes = encode(DEAD_LETTERS_NAME, id, &dead).map_err(Stop::Op)?;
    unqueue(t, &dead.delivery)?;
    t.dead_letters.insert(id, bytes.as_slice())?;
    t.dead_by_endpoint
        .insert((dead.delivery.endpoint.as_str(), id), ())?;
    effects.push(removed(&dead.delivery));
    Ok(())
}

fn ids_of(table: &Table<'_, (&'static str, u64), ()>, endpoint: &str) -> Result<Vec<u64>, Stop> {
    let mut ids = Vec::new();
    for entry in table.range((endpoint, 0)..=(endpoint, u64::MAX))? {
        let (key, _) = entry?;
        ids.push(key.value().1);
    }
    Ok(ids)
}

fn bury_endpoint(
    t: &mut Tables<'_>,
    endpoint: &str,
    reason: &str,
    now_ms: i64,
    effects: &mut Vec<Effect>,
) -> Result<u64, Stop> {
    let ids = ids_of(&t.queue_by_endpoint, endpoint)?;
    // Every record is read and encoded before the first write.
    let mut buried = Vec::with_capacity(ids.len());
    for id in ids {
        let dead = DeadLetter {
            delivery: load(t, id)?,
            reason: reason.to_owned(),
            status: None,
            response: None,
            dead_at_ms: now_ms,
        };
        let bytes = encode(DEAD_LETTERS_NAME, id, &dead).map_err(Stop::Op)?;
        buried.push((dead.delivery, bytes));
    }
    for (delivery, bytes) in &buried {
        let id = delivery.id.0;
        unqueue(t, delivery)?;
        t.dead_letters.insert(id, bytes.as_slice())?;
        t.dead_by_endpoint.insert((endpoint, id), ())?;
        effects.push(removed(delivery));
    }
    Ok(buried.len() as u64)
}

/// Reads a dead letter and makes the delivery it becomes when replayed.
fn revive(t: &Tables<'_>, id: u64) -> Result<Option<(Delivery, Vec<u8>)>, Stop> {
    let Some(guard) = t.dead_letters.get(id)? else {
        return Ok(None);
    };
    let dead: DeadLetter = decode(DEAD_LETTERS_NAME, id, guard.value()).map_err(Stop::Op)?;
    let delivery = Delivery {
        attempts: 0,
        not_before_ms: 0,
        last_error: None,
        ..dead.delivery
    };
    let bytes = encode(DELIVERIES_NAME, id, &delivery).map_err(Stop::Op)?;
    Ok(Some((delivery, bytes)))
}

fn requeue(
    t: &mut Tables<'_>,
    delivery: Delivery,
    bytes: &[u8],
    effects: &mut Vec<Effect>,
) -> Result<(), Stop> {
    let id = delivery.id.0;
    t.dead_letters.remove(id)?;
    t.dead_by_endpoint
        .remove((delivery.endpoint.as_str(), id))?;
    t.deliveries.insert(id, bytes)?;
    t.queue_by_endpoint
        .insert((delivery.endpoint.as_str(), id), ())?;
    effects.push(Effect::Queued {
        endpoint: delivery.endpoint,
        id,
        not_before: delivery.not_before_ms,
        wake: true,
    });
    Ok(())
}

fn replay(t: &mut Tables<'_>, id: u64, effects: &mut Vec<Effect>) -> Result<bool, Stop> {
    let Some((delivery, bytes)) = revive(t, id)? else {
        return Ok(false);
    };
    requeue(t, delivery, &bytes, effects)?;
    Ok(true)
}

fn replay_endpoint(
    t: &mut Tables<'_>,
    endpoint: &str,
    effects: &mut Vec<Effect>,
) -> Result<u64, Stop> {
    let ids = ids_of(&t.dead_by_endpoint, endpoint)?;
    let mut revived = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(found) = revive(t, id)? {
            revived.push(found);
        }
    }
    let count = revived.len() as u64;
    for (delivery, bytes) in revived {
        requeue(t, delivery, &bytes, effects)?;
    }
    Ok(count)
}

/// Removes up to [`PURGE_PER_COMMIT`] dedupe keys that expired at or before `now_ms`.
fn purge_dedupe(t: &mut Tables<'_>, now_ms: i64) -> Result<(), redb::StorageError> {
    let mut expired: Vec<(i64, String)> = Vec::new();
    for entry in t
        .dedupe_expiry
        .range(..(now_ms.saturating_add(1), ""))?
        .take(PURGE_PER_COMMIT)
    {
        let (key, _) = entry?;
        let (expires, name) = key.value();
        expired.push((expires, name.to_owned()));
    }
    for (expires, name) in expired {
        t.dedupe_expiry.remove((expires, name.as_str()))?;
        // The key may have been renewed with a later expiry; then it stays.
        let current = t.dedupe.get(name.as_str())?.map(|guard| guard.value());
        if current == Some(expires) {
            t.dedupe.remove(name.as_str())?;
        }
    }
    Ok(())
}
