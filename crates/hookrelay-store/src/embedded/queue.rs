//! What the store keeps in memory about its queue, whatever the backlog: per endpoint,
//! how many deliveries are queued and dead-lettered and where its queue starts on disk;
//! which deliveries are leased; and the endpoints' wake-up signals.
//!
//! The queue itself is the `queue` keyspace (`due` in older stores), in due order per
//! endpoint. Removing a delivery from it leaves a tombstone until compaction drops it, so
//! a queue that has moved millions of deliveries would make every scan from its start
//! step over millions of tombstones. Each endpoint's *cursor* is a key at or before every
//! delivery still in its queue: scans start there, and a scan moves it up to the first key
//! it finds. A delivery queued before the cursor (due earlier than everything left) moves
//! it back, once committed. Cursors are saved with the writer's next batch, so after an
//! open the scans start where they left off. Leased deliveries stay in `queue` (a restart
//! offers them again) and are skipped by scans; they are as many as the deliveries in
//! flight.
//!
//! A scan costs far more to start (a merge of every table's iterator) than to go on, and
//! a lane leases as attempts finish, a few at a time. So a scan reads up to [`AHEAD`]
//! more due deliveries than it leases and keeps their ids, in order, as the lane's
//! *ahead* list; the next leases take from it without a scan. The list is a prefix of the
//! lane's unleased queue as long as nothing is queued before its last key (a batch that
//! does drops the list) and nothing in it leaves the queue other than by a lease (a batch
//! that unqueues one of its ids, a released lease, an op on a whole endpoint or a reopen
//! drop every list).

use super::engine::{CURSOR, DEAD, DEPTH, Engine, due_key, lane, parse_due, read_error};
use crate::StoreError;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use tokio::sync::Notify;

/// Most due deliveries a scan reads ahead of what it leases, per endpoint.
pub(crate) const AHEAD: usize = 256;

/// One endpoint's counters and cursor.
#[derive(Debug, Default)]
pub(crate) struct Lane {
    /// Queued deliveries, leased ones included.
    pub(crate) depth: u64,
    /// Dead letters.
    pub(crate) dead: u64,
    /// No delivery of the endpoint is queued before this queue key (`None`: scan from the
    /// start of the endpoint's keys).
    cursor: Option<Vec<u8>>,
    /// The cursor moved since the writer last saved it.
    moved: bool,
    /// Due deliveries read ahead by the last scan, not leased, in due order: (due, id).
    ahead: VecDeque<(i64, u64)>,
    /// The queue key of the last entry of `ahead`.
    ahead_last: Option<Vec<u8>>,
}

impl Lane {
    fn drop_ahead(&mut self) {
        self.ahead.clear();
        self.ahead_last = None;
    }
}

/// What a committed batch changed for one endpoint.
#[derive(Debug, Default)]
pub(crate) struct LaneChange {
    pub(crate) depth: i64,
    pub(crate) dead: i64,
    /// The earliest queue key the batch wrote.
    pub(crate) lowest: Option<Vec<u8>>,
    /// Wake the endpoint's workers.
    pub(crate) wake: bool,
}

impl LaneChange {
    /// Notes that the batch wrote `key` into the endpoint's queue.
    pub(crate) fn queued(&mut self, key: &[u8]) {
        if self.lowest.as_deref().is_none_or(|low| key < low) {
            self.lowest = Some(key.to_vec());
        }
    }
}

/// What a committed batch changed in memory.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    pub(crate) lanes: HashMap<Arc<str>, LaneChange>,
    /// Leases that end (completed, rescheduled, dead-lettered).
    pub(crate) ended: Vec<u64>,
    /// Records an op on a whole endpoint changed: what their leases know is stale.
    pub(crate) stale: Vec<u64>,
    /// Deliveries taken out of their queue (delivered, rescheduled, dead-lettered).
    pub(crate) unqueued: Vec<u64>,
}

impl Changes {
    pub(crate) fn lane(&mut self, endpoint: &Arc<str>) -> &mut LaneChange {
        self.lanes.entry(Arc::clone(endpoint)).or_default()
    }
}

/// What a lease knows of its delivery once its record was read: enough to complete it
/// without reading the record again.
#[derive(Clone, Debug)]
pub(crate) struct Known {
    pub(crate) endpoint: Arc<str>,
    pub(crate) not_before_ms: i64,
    /// Length of the stored record.
    pub(crate) size: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Queue {
    lanes: HashMap<Arc<str>, Lane>,
    /// Leased ids, with their record once read.
    leases: HashMap<u64, Option<Known>>,
    /// The ids in every lane's `ahead` list.
    ahead: HashSet<u64>,
    /// Counts the commits that made some lease's knowledge stale: a record read before
    /// one is not remembered after it.
    epoch: u64,
    wakers: HashMap<String, Arc<Notify>>,
}

/// The endpoint name of a lane's bytes.
fn endpoint_of(lane: &[u8]) -> Option<&str> {
    let len = usize::from(u16::from_be_bytes(lane.get(..2)?.try_into().ok()?));
    std::str::from_utf8(lane.get(2..2 + len)?).ok()
}

impl Queue {
    /// The counters and cursors saved in `engine`.
    pub(crate) fn load(engine: &Engine) -> Result<Self, StoreError> {
        let mut queue = Queue::default();
        for kind in [DEPTH, DEAD, CURSOR] {
            let prefix = [kind, b"/"].concat();
            for guard in engine.meta.prefix(&prefix) {
                let (key, value) = guard.into_inner().map_err(read_error)?;
                let lane_bytes = &key[prefix.len()..];
                let Some(endpoint) = endpoint_of(lane_bytes) else {
                    continue;
                };
                let lane = queue.lanes.entry(Arc::from(endpoint)).or_default();
                match kind {
                    DEPTH => lane.depth = super::engine::decode_u64(&value),
                    DEAD => lane.dead = super::engine::decode_u64(&value),
                    _ => lane.cursor = Some(value.to_vec()),
                }
            }
        }
        Ok(queue)
    }

    /// Takes the counters and cursors of `loaded` (the database opened again), keeping the
    /// leases and wake-up signals.
    pub(crate) fn reload(&mut self, loaded: Queue) {
        self.lanes = loaded.lanes;
        self.ahead.clear();
    }

    /// Drops every lane's `ahead` list.
    fn drop_ahead(&mut self) {
        if self.ahead.is_empty() {
            return;
        }
        self.ahead.clear();
        for lane in self.lanes.values_mut() {
            lane.drop_ahead();
        }
    }

    /// Leases up to `max` deliveries of `endpoint` due at `now_ms` and not leased, in due
    /// order; their ids.
    pub(crate) fn lease(
        &mut self,
        engine: &Engine,
        endpoint: &str,
        now_ms: i64,
        max: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let Some(lane) = self.lanes.get(endpoint) else {
            return Ok(Vec::new());
        };
        if lane.depth == 0 || max == 0 {
            return Ok(Vec::new());
        }
        let mut ids = Vec::new();
        if let Some(lane) = self.lanes.get_mut(endpoint) {
            while ids.len() < max {
                match lane.ahead.front() {
                    Some(&(due, id)) if due <= now_ms => {
                        lane.ahead.pop_front();
                        self.ahead.remove(&id);
                        // Not leased since the scan (a lease takes from the front); a
                        // lease it had is left as it is.
                        if let Entry::Vacant(slot) = self.leases.entry(id) {
                            slot.insert(None);
                            ids.push(id);
                        }
                    }
                    _ => break,
                }
            }
            if lane.ahead.is_empty() {
                lane.ahead_last = None;
            }
            if ids.len() >= max || !lane.ahead.is_empty() {
                return Ok(ids);
            }
        }
        let Some(lane) = self.lanes.get(endpoint) else {
            return Ok(ids);
        };
        let prefix = super::engine::lane(endpoint);
        let start = lane.cursor.clone().unwrap_or_else(|| prefix.clone());
        let end = due_key(&prefix, now_ms, u64::MAX);
        let mut first = None;
        let mut ahead = VecDeque::new();
        let mut ahead_last = None;
        if start <= end {
            for guard in engine.queue.range(start..=end.clone()) {
                let key = guard.key().map_err(read_error)?;
                let Some((due, id)) = parse_due(&key) else {
                    continue;
                };
                if first.is_none() {
                    first = Some(key.to_vec());
                }
                if self.leases.contains_key(&id) {
                    continue;
                }
                if ids.len() < max {
                    self.leases.insert(id, None);
                    ids.push(id);
                    continue;
                }
                ahead.push_back((due, id));
                if ahead.len() >= AHEAD {
                    ahead_last = Some(key.to_vec());
                    break;
                }
                ahead_last = Some(key.to_vec());
            }
        }
        // Nothing before `end` is queued if nothing was found up to it.
        self.advance(endpoint, first.unwrap_or(end));
        if let Some(lane) = self.lanes.get_mut(endpoint) {
            self.ahead.extend(ahead.iter().map(|&(_, id)| id));
            lane.ahead = ahead;
            lane.ahead_last = ahead_last;
        }
        Ok(ids)
    }

    /// When the earliest delivery of `endpoint` that is not leased is due.
    pub(crate) fn next_due(
        &mut self,
        engine: &Engine,
        endpoint: &str,
    ) -> Result<Option<i64>, StoreError> {
        let Some(lane) = self.lanes.get(endpoint) else {
            return Ok(None);
        };
        if lane.depth == 0 {
            return Ok(None);
        }
        let prefix = super::engine::lane(endpoint);
        let start = lane.cursor.clone().unwrap_or_else(|| prefix.clone());
        let mut first = None;
        let mut due = None;
        for guard in engine.queue.range(start..) {
            let key = guard.key().map_err(read_error)?;
            if !key.starts_with(&prefix) {
                break;
            }
            let Some((at, id)) = parse_due(&key) else {
                continue;
            };
            if first.is_none() {
                first = Some(key.to_vec());
            }
            if !self.leases.contains_key(&id) {
                due = Some(at);
                break;
            }
        }
        if let Some(first) = first {
            self.advance(endpoint, first);
        }
        Ok(due)
    }

    /// Moves the cursor of `endpoint` up to `key` (never back).
    fn advance(&mut self, endpoint: &str, key: Vec<u8>) {
        if let Some(lane) = self.lanes.get_mut(endpoint)
            && lane.cursor.as_ref().is_none_or(|cursor| *cursor < key)
        {
            lane.cursor = Some(key);
            lane.moved = true;
        }
    }

    /// Is `id` leased?
    pub(crate) fn is_leased(&self, id: u64) -> bool {
        self.leases.contains_key(&id)
    }

    /// The current epoch: read before reading the records of new leases.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Notes what lease `id` knows of its record (if it is still leased), read at `epoch`:
    /// not when a commit since may have changed it.
    pub(crate) fn know(&mut self, id: u64, known: Known, epoch: u64) {
        if epoch != self.epoch {
            return;
        }
        if let Some(slot) = self.leases.get_mut(&id) {
            *slot = Some(known);
        }
    }

    /// What lease `id` knows of its record, if it is leased and the record was read.
    pub(crate) fn known(&self, id: u64) -> Option<Known> {
        self.leases.get(&id).cloned().flatten()
    }

    /// Ends the lease of `id`; false when it had none.
    pub(crate) fn release(&mut self, id: u64) -> bool {
        let had = self.leases.remove(&id).is_some();
        if had {
            // Queued again, before every `ahead` list's ids.
            self.drop_ahead();
        }
        had
    }

    /// Queued deliveries of `endpoint`.
    pub(crate) fn depth(&self, endpoint: &str) -> u64 {
        self.lanes.get(endpoint).map_or(0, |lane| lane.depth)
    }

    /// Dead letters of `endpoint`.
    pub(crate) fn dead(&self, endpoint: &str) -> u64 {
        self.lanes.get(endpoint).map_or(0, |lane| lane.dead)
    }

    /// Endpoints with queued deliveries, sorted.
    pub(crate) fn endpoints(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .lanes
            .iter()
            .filter(|(_, lane)| lane.depth > 0)
            .map(|(name, _)| name.to_string())
            .collect();
        names.sort_unstable();
        names
    }

    /// Endpoints with dead letters.
    pub(crate) fn dead_endpoints(&self) -> Vec<Arc<str>> {
        self.lanes
            .iter()
            .filter(|(_, lane)| lane.dead > 0)
            .map(|(name, _)| Arc::clone(name))
            .collect()
    }

    /// Queued deliveries and dead letters in all.
    pub(crate) fn totals(&self) -> (u64, u64) {
        self.lanes
            .values()
            .fold((0, 0), |(q, d), lane| (q + lane.depth, d + lane.dead))
    }

    pub(crate) fn waker(&mut self, endpoint: &str) -> Arc<Notify> {
        Arc::clone(self.wakers.entry(endpoint.to_owned()).or_default())
    }

    /// The cursors to save with a batch that makes `changes`: those that moved, and those
    /// the batch moves back. Marks them saved.
    pub(crate) fn cursors_to_save(&mut self, changes: &Changes) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for (name, change) in &changes.lanes {
            let Some(lowest) = &change.lowest else {
                continue;
            };
            let current = self.lanes.get(&**name).and_then(|lane| lane.cursor.clone());
            let key = match current {
                Some(cursor) if cursor < *lowest => cursor,
                // The queue starts no later than what the batch writes.
                Some(_) => lowest.clone(),
                // Scanned from the start: nothing to save.
                None => continue,
            };
            if let Some(lane) = self.lanes.get_mut(&**name) {
                lane.moved = false;
            }
            seen.insert(Arc::clone(name));
            out.push((lane(name), key));
        }
        for (name, state) in &mut self.lanes {
            if state.moved && !seen.contains(name) {
                state.moved = false;
                if let Some(cursor) = &state.cursor {
                    out.push((lane(name), cursor.clone()));
                }
            }
        }
        out
    }

    /// Drops the `ahead` lists that a batch making `changes` leaves out of date: every list
    /// when it takes an id of one out of the queue or changes records of a whole endpoint,
    /// and an endpoint's list when it queues a delivery before the list's last key. The
    /// writer calls it when it stages the batch, under the same lock as leases, so no
    /// lease takes from a list the commit makes stale; and again when the batch is
    /// applied, for a scan made between the two.
    pub(crate) fn forget_ahead(&mut self, changes: &Changes) {
        if self.ahead.is_empty() {
            return;
        }
        if !changes.stale.is_empty() || changes.unqueued.iter().any(|id| self.ahead.contains(id)) {
            self.drop_ahead();
            return;
        }
        for (name, change) in &changes.lanes {
            let Some(lowest) = &change.lowest else {
                continue;
            };
            if let Some(lane) = self.lanes.get_mut(&**name)
                && lane.ahead_last.as_ref().is_some_and(|last| lowest < last)
            {
                // Queued before the end of the list: the list is no longer a prefix.
                for (_, id) in lane.ahead.drain(..) {
                    self.ahead.remove(&id);
                }
                lane.ahead_last = None;
            }
        }
    }

    /// Applies a committed batch's changes, then wakes the endpoints it queued for.
    pub(crate) fn apply(&mut self, changes: Changes) {
        self.forget_ahead(&changes);
        for id in changes.ended {
            self.leases.remove(&id);
        }
        if !changes.stale.is_empty() {
            self.epoch += 1;
            for id in changes.stale {
                if let Some(slot) = self.leases.get_mut(&id) {
                    *slot = None;
                }
            }
        }
        for (name, change) in changes.lanes {
            let lane = self.lanes.entry(Arc::clone(&name)).or_default();
            lane.depth = lane.depth.saturating_add_signed(change.depth);
            lane.dead = lane.dead.saturating_add_signed(change.dead);
            if let Some(lowest) = change.lowest
                && lane.cursor.as_ref().is_some_and(|cursor| lowest < *cursor)
            {
                lane.cursor = Some(lowest);
            }
            if change.wake
                && let Some(waker) = self.wakers.get(&*name)
            {
                waker.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::endpoint_of;

    #[test]
    fn lanes_name_their_endpoint() {
        let lane = super::lane("crm");
        assert_eq!(endpoint_of(&lane), Some("crm"));
        assert_eq!(endpoint_of(&lane[..3]), None);
    }
}
