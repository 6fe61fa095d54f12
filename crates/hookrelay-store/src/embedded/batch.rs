//! One batch of ops turned into records: what each op writes, and what it changes in the
//! index once committed.
//!
//! An op is checked against the state before anything is appended (an unknown id, ids run
//! out), and its records are rolled back if they cannot be encoded, so an op that fails
//! leaves the frame as it was. Its records are appended as one unit and applied to the
//! state together, so later ops of the batch see earlier ones; its effects on the index
//! (queued, removed, whether to wake a worker) are collected for the writer to apply once
//! the batch is durable.

use super::index::{Effect, Index};
use super::log::FrameBuf;
use super::state::{Entry, FORGOTTEN, Rec, State};
use crate::{DeliveryId, EnqueueOutcome, NewDelivery, StoreError};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use xxhash_rust::xxh3::{xxh3_128, xxh3_128_with_seed};

/// Seed of a one-time token's hash, so that a token and a dedupe key with the same text
/// are different keys.
const TOKEN_SEED: u64 = 0x0074_6f6b_656e;

/// A frame is closed (between two ops) once it holds this much.
const FRAME_SOFT_MAX: usize = 64 << 20;

/// One batch being turned into records.
pub(crate) struct Batch<'a> {
    pub(crate) state: &'a mut State,
    pub(crate) frames: &'a mut FrameBuf,
    pub(crate) effects: &'a mut Vec<Effect>,
}

impl Batch<'_> {
    /// Appends `recs` (with their tails) as one op: all of them or, on error, none. Applies
    /// them to the state once all are encoded.
    fn log(&mut self, recs: &[(Rec<'_>, &[u8])]) -> Result<(), StoreError> {
        self.frames.begin();
        let mark = self.frames.mark();
        let mut locs = Vec::with_capacity(recs.len());
        for (rec, tail) in recs {
            match self.frames.push(rec, tail) {
                Ok(loc) => locs.push(loc),
                Err(e) => {
                    self.frames.rollback(mark);
                    return Err(e);
                }
            }
        }
        if self.frames.frame_len() > u32::MAX as usize {
            self.frames.rollback(mark);
            return Err(StoreError::backend(
                "encode",
                std::io::Error::other("one operation longer than 4 GiB"),
            ));
        }
        for ((rec, _), loc) in recs.iter().zip(locs) {
            self.state.apply(rec, loc);
        }
        if self.frames.frame_len() > FRAME_SOFT_MAX {
            // Cannot fail: the frame was checked to fit above.
            self.frames.end()?;
        }
        Ok(())
    }

    /// A dedupe key's hash and expiry, and whether it is recorded until later than
    /// `now_ms` (a duplicate).
    fn dedupe_key(
        &self,
        dedupe: Option<&(String, Duration)>,
        now_ms: i64,
    ) -> (Option<(u128, i64)>, bool) {
        let key = dedupe.map(|(key, window)| {
            let window = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
            (xxh3_128(key.as_bytes()), now_ms.saturating_add(window))
        });
        let duplicate =
            key.is_some_and(|(hash, _)| self.state.dedupe_expiry(hash).is_some_and(|e| e > now_ms));
        (key, duplicate)
    }

    /// The first of `n` new ids, checked not to run out.
    fn allocate(&self, n: u64) -> Result<u64, StoreError> {
        let first = self.state.next_id;
        first.checked_add(n).ok_or_else(|| {
            StoreError::backend(
                "allocate id",
                std::io::Error::other("delivery ids exhausted"),
            )
        })?;
        Ok(first)
    }

    pub(crate) fn enqueue(
        &mut self,
        dedupe: Option<(String, Duration)>,
        batch: &[NewDelivery],
        now_ms: i64,
    ) -> Result<EnqueueOutcome, StoreError> {
        let (key, duplicate) = self.dedupe_key(dedupe.as_ref(), now_ms);
        if duplicate {
            return Ok(EnqueueOutcome::Duplicate);
        }
        let first = self.allocate(batch.len() as u64)?;
        let mut recs = Vec::with_capacity(batch.len() + 1);
        for (n, new) in batch.iter().enumerate() {
            recs.push((
                Rec::Put {
                    id: first + n as u64,
                    endpoint: &new.endpoint,
                    not_before_ms: now_ms,
                    attempts: 0,
                    webhook_id: &new.webhook_id,
                    created_at_ms: new.created_at_ms,
                    last_error: None,
                },
                &new.body[..],
            ));
        }
        if let Some((hash, expires_ms)) = key {
            recs.push((
                Rec::Dedupe {
                    key: hash,
                    expires_ms,
                },
                &[][..],
            ));
        }
        self.log(&recs)?;
        let ids: Vec<DeliveryId> = (0..batch.len() as u64)
            .map(|n| DeliveryId(first + n))
            .collect();
        for (new, id) in batch.iter().zip(&ids) {
            self.effects.push(Effect::Queued {
                endpoint: self.state.intern(&new.endpoint),
                id: id.0,
                not_before: now_ms,
                wake: true,
            });
        }
        Ok(EnqueueOutcome::Enqueued(ids))
    }

    /// Writes `new` straight into the dead letters with `reason`, dead at `now_ms`, and
    /// records its dedupe key: a `Put`, a `Bury` and a `Dedupe` record in one op. It is
    /// never queued, so nothing changes in the index.
    pub(crate) fn enqueue_dead_letter(
        &mut self,
        dedupe: Option<(String, Duration)>,
        new: &NewDelivery,
        reason: &str,
        now_ms: i64,
    ) -> Result<EnqueueOutcome, StoreError> {
        let (key, duplicate) = self.dedupe_key(dedupe.as_ref(), now_ms);
        if duplicate {
            return Ok(EnqueueOutcome::Duplicate);
        }
        let id = self.allocate(1)?;
        let mut recs = vec![
            (
                Rec::Put {
                    id,
                    endpoint: &new.endpoint,
                    not_before_ms: now_ms,
                    attempts: 0,
                    webhook_id: &new.webhook_id,
                    created_at_ms: new.created_at_ms,
                    last_error: None,
                },
                &new.body[..],
            ),
            (
                Rec::Bury {
                    id,
                    reason,
                    status: None,
                    response: None,
                    dead_at_ms: now_ms,
                },
                &[][..],
            ),
        ];
        if let Some((hash, expires_ms)) = key {
            recs.push((
                Rec::Dedupe {
                    key: hash,
                    expires_ms,
                },
                &[][..],
            ));
        }
        self.log(&recs)?;
        Ok(EnqueueOutcome::Enqueued(vec![DeliveryId(id)]))
    }

    /// The queued delivery `id`: its endpoint and when it was due.
    fn queued(&self, id: u64) -> Result<(Arc<str>, i64), StoreError> {
        self.state
            .queued
            .get(&id)
            .map(|entry| (Arc::clone(&entry.endpoint), entry.not_before_ms))
            .ok_or(StoreError::UnknownDelivery { id: DeliveryId(id) })
    }

    pub(crate) fn complete(&mut self, id: u64) -> Result<(), StoreError> {
        let (endpoint, not_before) = self.queued(id)?;
        self.log(&[(Rec::Complete { id }, &[])])?;
        self.effects.push(Effect::Removed {
            endpoint,
            id,
            not_before,
        });
        Ok(())
    }

    pub(crate) fn reschedule(
        &mut self,
        id: u64,
        not_before_ms: i64,
        attempts: u32,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let (endpoint, not_before) = self.queued(id)?;
        let rec = Rec::Reschedule {
            id,
            not_before_ms,
            attempts,
            error,
        };
        self.log(&[(rec, &[])])?;
        self.effects.push(Effect::Removed {
            endpoint: endpoint.clone(),
            id,
            not_before,
        });
        self.effects.push(Effect::Queued {
            endpoint,
            id,
            not_before: not_before_ms,
            wake: false,
        });
        Ok(())
    }

    pub(crate) fn bury(
        &mut self,
        ids: &[u64],
        reason: &str,
        status: Option<u16>,
        response: Option<&str>,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let mut removed = Vec::with_capacity(ids.len());
        for &id in ids {
            removed.push((id, self.queued(id)?));
        }
        let recs: Vec<(Rec<'_>, &[u8])> = ids
            .iter()
            .map(|&id| {
                let rec = Rec::Bury {
                    id,
                    reason,
                    status,
                    response,
                    dead_at_ms: now_ms,
                };
                (rec, &[][..])
            })
            .collect();
        self.log(&recs)?;
        for (id, (endpoint, not_before)) in removed {
            self.effects.push(Effect::Removed {
                endpoint,
                id,
                not_before,
            });
        }
        Ok(ids.len() as u64)
    }

    pub(crate) fn replay(&mut self, ids: &[u64], at_ms: i64) -> Result<u64, StoreError> {
        let found: Vec<(u64, Arc<str>)> = ids
            .iter()
            .filter_map(|id| {
                let grave = self.state.dead.get(id)?;
                Some((*id, Arc::clone(&grave.entry.endpoint)))
            })
            .collect();
        let recs: Vec<(Rec<'_>, &[u8])> = found
            .iter()
            .map(|&(id, _)| (Rec::Replay { id, at_ms }, &[][..]))
            .collect();
        self.log(&recs)?;
        let count = found.len() as u64;
        for (id, endpoint) in found {
            self.effects.push(Effect::Queued {
                endpoint,
                id,
                not_before: 0,
                wake: true,
            });
        }
        Ok(count)
    }

    /// Removes the dead letters `ids` (those that are dead letters) for good.
    pub(crate) fn discard(&mut self, ids: &[u64]) -> Result<u64, StoreError> {
        let found: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| self.state.dead.contains_key(id))
            .collect();
        let recs: Vec<(Rec<'_>, &[u8])> = found
            .iter()
            .map(|&id| (Rec::Discard { id }, &[][..]))
            .collect();
        self.log(&recs)?;
        Ok(found.len() as u64)
    }

    /// Makes every delivery of `endpoint` waiting for a retry after `now_ms` due at
    /// `now_ms`: one `Reschedule` record each, attempts and last error kept. A delivery
    /// `index` shows leased is left alone, unless an earlier op of this batch put it back.
    pub(crate) fn retry_now(
        &mut self,
        endpoint: &str,
        now_ms: i64,
        index: &Index,
    ) -> Result<u64, StoreError> {
        let requeued: HashSet<u64> = self
            .effects
            .iter()
            .filter_map(|effect| match *effect {
                Effect::Queued { id, .. } => Some(id),
                _ => None,
            })
            .collect();
        let waiting: Vec<(u64, Entry)> = self
            .state
            .queued
            .iter()
            .filter(|(id, entry)| {
                *entry.endpoint == *endpoint
                    && entry.not_before_ms > now_ms
                    && (!index.is_leased(**id) || requeued.contains(*id))
            })
            .map(|(&id, entry)| (id, entry.clone()))
            .collect();
        if waiting.is_empty() {
            return Ok(0);
        }
        let recs: Vec<(Rec<'_>, &[u8])> = waiting
            .iter()
            .map(|(id, entry)| {
                let rec = Rec::Reschedule {
                    id: *id,
                    not_before_ms: now_ms,
                    attempts: entry.attempts,
                    error: entry.last_error.as_deref(),
                };
                (rec, &[][..])
            })
            .collect();
        self.log(&recs)?;
        let count = waiting.len() as u64;
        for (id, entry) in waiting {
            self.effects.push(Effect::Due {
                endpoint: entry.endpoint,
                id,
                from: entry.not_before_ms,
                to: now_ms,
            });
        }
        Ok(count)
    }

    /// Records one-time token `key` until `now_ms + ttl`: true, or false (nothing written)
    /// when it is recorded until later than `now_ms`.
    pub(crate) fn first_use(
        &mut self,
        key: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let hash = xxh3_128_with_seed(key.as_bytes(), TOKEN_SEED);
        if self.state.dedupe_expiry(hash).is_some_and(|e| e > now_ms) {
            return Ok(false);
        }
        let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let rec = Rec::Dedupe {
            key: hash,
            expires_ms: now_ms.saturating_add(ttl),
        };
        self.log(&[(rec, &[])])?;
        Ok(true)
    }

    /// Forgets one-time token `key` (nothing written when it is not recorded).
    pub(crate) fn forget_use(&mut self, key: &str) -> Result<(), StoreError> {
        let hash = xxh3_128_with_seed(key.as_bytes(), TOKEN_SEED);
        if self.state.dedupe_expiry(hash).is_none() {
            return Ok(());
        }
        let rec = Rec::Dedupe {
            key: hash,
            expires_ms: FORGOTTEN,
        };
        self.log(&[(rec, &[])])
    }
}
