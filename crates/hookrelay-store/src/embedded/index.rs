//! The in-memory view of the queue: which deliveries each endpoint has, when each is due,
//! and which are leased. Rebuilt from the file at open; changed by the writer only after a
//! commit, so it never shows a delivery that is not durable.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use tokio::sync::Notify;

/// A change the writer applies after a successful commit.
#[derive(Debug)]
pub(crate) enum Effect {
    /// The delivery is queued (again), not leased; `wake` notifies the endpoint's workers.
    Queued {
        endpoint: Arc<str>,
        id: u64,
        not_before: i64,
        wake: bool,
    },
    /// The delivery left the queue (completed, dead-lettered, or about to be re-queued).
    Removed {
        endpoint: Arc<str>,
        id: u64,
        not_before: i64,
    },
    /// A delivery waiting for its retry time (`from`) is due at `to` instead, and its
    /// endpoint's workers are woken. Nothing changes when it is leased by then: the
    /// worker's outcome decides.
    Due {
        endpoint: Arc<str>,
        id: u64,
        from: i64,
        to: i64,
    },
}

#[derive(Debug, Default)]
struct Lane {
    /// Due as of an earlier lease (id → not_before), leased in id order.
    ready: BTreeMap<u64, i64>,
    /// Not yet due as of the last lease, by (not_before, id).
    delayed: BTreeSet<(i64, u64)>,
    /// How many of this endpoint's deliveries are leased.
    leased: usize,
}

impl Lane {
    fn depth(&self) -> usize {
        self.ready.len() + self.delayed.len() + self.leased
    }
}

#[derive(Debug)]
struct Lease {
    endpoint: Arc<str>,
    not_before: i64,
}

#[derive(Debug, Default)]
pub(crate) struct Index {
    lanes: HashMap<Arc<str>, Lane>,
    leases: HashMap<u64, Lease>,
    wakers: HashMap<String, Arc<Notify>>,
}

impl Index {
    /// Applies committed effects, then wakes each endpoint that got new work once.
    pub(crate) fn apply(&mut self, effects: Vec<Effect>) {
        let mut woken: Vec<Arc<str>> = Vec::new();
        for effect in effects {
            match effect {
                Effect::Queued {
                    endpoint,
                    id,
                    not_before,
                    wake,
                } => {
                    match self.lanes.get_mut(&*endpoint) {
                        Some(lane) => lane.delayed.insert((not_before, id)),
                        None => self
                            .lanes
                            .entry(Arc::clone(&endpoint))
                            .or_default()
                            .delayed
                            .insert((not_before, id)),
                    };
                    if wake && !woken.contains(&endpoint) {
                        woken.push(endpoint);
                    }
                }
                Effect::Removed {
                    endpoint,
                    id,
                    not_before,
                } => self.remove(&endpoint, id, not_before),
                Effect::Due {
                    endpoint,
                    id,
                    from,
                    to,
                } => {
                    if self.make_due(&endpoint, id, from, to) && !woken.contains(&endpoint) {
                        woken.push(endpoint);
                    }
                }
            }
        }
        for endpoint in woken {
            self.waker(&endpoint).notify_one();
        }
    }

    /// Queues a delivery found at open.
    pub(crate) fn insert(&mut self, endpoint: Arc<str>, id: u64, not_before: i64) {
        self.lanes
            .entry(endpoint)
            .or_default()
            .delayed
            .insert((not_before, id));
    }

    /// Replaces what is queued with `queued` (id, endpoint, due time), as the writer reads it
    /// back after a failed write: a delivery leased now stays leased (its worker will
    /// record its outcome), except those in `orphans` (leased while a batch that removed
    /// them was being written: nobody holds them). Subscriptions are kept, and each
    /// endpoint with deliveries is woken, since some may be due again.
    pub(crate) fn rebuild(
        &mut self,
        queued: impl IntoIterator<Item = (u64, Arc<str>, i64)>,
        orphans: &[u64],
    ) {
        let mut lanes: HashMap<Arc<str>, Lane> = HashMap::new();
        let mut leases = HashMap::new();
        for (id, endpoint, not_before) in queued {
            let lane = lanes.entry(Arc::clone(&endpoint)).or_default();
            if self.leases.contains_key(&id) && !orphans.contains(&id) {
                lane.leased += 1;
                leases.insert(
                    id,
                    Lease {
                        endpoint,
                        not_before,
                    },
                );
            } else {
                lane.delayed.insert((not_before, id));
            }
        }
        self.lanes = lanes;
        self.leases = leases;
        for endpoint in self.lanes.keys() {
            if let Some(notify) = self.wakers.get(&**endpoint) {
                notify.notify_one();
            }
        }
    }

    /// Whether delivery `id` is leased.
    pub(crate) fn is_leased(&self, id: u64) -> bool {
        self.leases.contains_key(&id)
    }

    /// Moves unleased delivery `id` from due at `from` to due at `to`; false when it is
    /// leased or not queued.
    fn make_due(&mut self, endpoint: &str, id: u64, from: i64, to: i64) -> bool {
        if self.leases.contains_key(&id) {
            return false;
        }
        let Some(lane) = self.lanes.get_mut(endpoint) else {
            return false;
        };
        if lane.ready.remove(&id).is_none() && !lane.delayed.remove(&(from, id)) {
            return false;
        }
        lane.delayed.insert((to, id));
        true
    }

    fn remove(&mut self, endpoint: &str, id: u64, not_before: i64) {
        let Some(lane) = self.lanes.get_mut(endpoint) else {
            return;
        };
        if self.leases.remove(&id).is_some() {
            lane.leased = lane.leased.saturating_sub(1);
        } else if lane.ready.remove(&id).is_none() && !lane.delayed.remove(&(not_before, id)) {
            // Not where the stored not_before says: look everywhere rather than keep a ghost.
            lane.delayed.retain(|&(_, queued)| queued != id);
        }
        if lane.depth() == 0 {
            self.lanes.remove(endpoint);
        }
    }

    /// Leases up to `max` due deliveries of `endpoint`, in id order.
    pub(crate) fn lease(&mut self, endpoint: &str, now_ms: i64, max: usize) -> Vec<u64> {
        let Some(name) = self
            .lanes
            .get_key_value(endpoint)
            .map(|(name, _)| Arc::clone(name))
        else {
            return Vec::new();
        };
        let Some(lane) = self.lanes.get_mut(endpoint) else {
            return Vec::new();
        };
        while let Some(&(not_before, id)) = lane.delayed.first() {
            if not_before > now_ms {
                break;
            }
            lane.delayed.pop_first();
            lane.ready.insert(id, not_before);
        }
        // Entries in `ready` are due unless the caller's clock went backwards.
        let picked: Vec<(u64, i64)> = lane
            .ready
            .iter()
            .filter(|&(_, &not_before)| not_before <= now_ms)
            .take(max)
            .map(|(&id, &not_before)| (id, not_before))
            .collect();
        for &(id, not_before) in &picked {
            lane.ready.remove(&id);
            lane.leased += 1;
            self.leases.insert(
                id,
                Lease {
                    endpoint: Arc::clone(&name),
                    not_before,
                },
            );
        }
        picked.into_iter().map(|(id, _)| id).collect()
    }

    /// Gives a lease back unchanged; false when `id` is not leased.
    pub(crate) fn release(&mut self, id: u64) -> bool {
        let Some(lease) = self.leases.remove(&id) else {
            return false;
        };
        let lane = self.lanes.entry(lease.endpoint).or_default();
        lane.leased = lane.leased.saturating_sub(1);
        lane.delayed.insert((lease.not_before, id));
        true
    }

    /// The earliest time an unleased delivery of `endpoint` is due; at or before the
    /// present when one is due now.
    pub(crate) fn next_due(&self, endpoint: &str) -> Option<i64> {
        let lane = self.lanes.get(endpoint)?;
        let ready = lane.ready.values().next().copied();
        let delayed = lane.delayed.first().map(|&(not_before, _)| not_before);
        match (ready, delayed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn depth(&self, endpoint: &str) -> u64 {
        self.lanes
            .get(endpoint)
            .map_or(0, |lane| lane.depth() as u64)
    }

    pub(crate) fn endpoints(&self) -> Vec<String> {
        let mut names: Vec<String> = self.lanes.keys().map(|name| name.to_string()).collect();
        names.sort_unstable();
        names
    }

    pub(crate) fn waker(&mut self, endpoint: &str) -> Arc<Notify> {
        if let Some(notify) = self.wakers.get(endpoint) {
            return Arc::clone(notify);
        }
        let notify = Arc::new(Notify::new());
        self.wakers.insert(endpoint.to_owned(), Arc::clone(&notify));
        notify
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(endpoint: &str, id: u64, not_before: i64) -> Effect {
        Effect::Queued {
            endpoint: endpoint.into(),
            id,
            not_before,
            wake: true,
        }
    }

    #[test]
    fn leases_due_in_id_order_and_counts_depth() {
        let mut index = Index::default();
        index.apply(vec![
            queued("a", 3, 0),
            queued("a", 1, 50),
            queued("a", 2, 10),
            queued("b", 4, 0),
        ]);
        assert_eq!(index.depth("a"), 3);
        assert_eq!(index.lease("a", 20, 10), vec![2, 3]);
        assert_eq!(index.lease("a", 20, 10), Vec::<u64>::new());
        assert_eq!(index.next_due("a"), Some(50));
        assert_eq!(index.depth("a"), 3);
        assert_eq!(index.lease("a", 60, 1), vec![1]);
        assert!(index.release(2));
        assert!(!index.release(2));
        assert_eq!(index.lease("a", 60, 10), vec![2]);
        index.apply(vec![Effect::Removed {
            endpoint: "a".into(),
            id: 2,
            not_before: 10,
        }]);
        assert_eq!(index.depth("a"), 2);
        assert_eq!(index.endpoints(), vec!["a".to_owned(), "b".to_owned()]);
    }

    #[test]
    fn empty_lanes_disappear_and_clock_going_back_is_respected() {
        let mut index = Index::default();
        index.apply(vec![queued("a", 1, 100)]);
        assert_eq!(index.lease("a", 100, 1), vec![1]);
        assert!(index.release(1));
        // Promoted to ready at 100, but a caller asking at 50 does not get it.
        assert!(index.lease("a", 50, 1).is_empty());
        index.apply(vec![Effect::Removed {
            endpoint: "a".into(),
            id: 1,
            not_before: 100,
        }]);
        assert_eq!(index.depth("a"), 0);
        assert!(index.endpoints().is_empty());
        assert_eq!(index.next_due("a"), None);
    }

    #[test]
    fn a_waiting_delivery_is_made_due_but_a_leased_one_is_not() {
        let mut index = Index::default();
        index.apply(vec![queued("a", 1, 500), queued("a", 2, 500)]);
        assert_eq!(index.lease("a", 500, 1), vec![1]);
        let notify = index.waker("a");
        index.apply(vec![
            Effect::Due {
                endpoint: "a".into(),
                id: 1,
                from: 500,
                to: 10,
            },
            Effect::Due {
                endpoint: "a".into(),
                id: 2,
                from: 500,
                to: 10,
            },
        ]);
        let mut waited = std::pin::pin!(notify.notified());
        assert!(waited.as_mut().enable(), "made due wakes the endpoint");
        assert!(index.is_leased(1) && !index.is_leased(2));
        assert_eq!(index.next_due("a"), Some(10));
        assert_eq!(index.lease("a", 10, 10), vec![2]);
        assert_eq!(index.depth("a"), 2);
    }

    #[test]
    fn a_rebuild_keeps_leases_and_subscriptions_but_not_orphans() {
        let mut index = Index::default();
        index.apply(vec![
            queued("a", 1, 0),
            queued("a", 2, 0),
            queued("a", 3, 0),
        ]);
        assert_eq!(index.lease("a", 0, 2), vec![1, 2]);
        let notify = index.waker("a");
        // 3 was completed by an outcome that a failed sync took back; 4 came back too; 2
        // was leased while a failed batch removed it.
        index.rebuild(
            [
                (1, "a".into(), 0),
                (2, "a".into(), 0),
                (3, "a".into(), 0),
                (4, "a".into(), 5),
            ],
            &[2],
        );
        assert!(index.is_leased(1) && !index.is_leased(2));
        assert_eq!(index.depth("a"), 4);
        let mut waited = std::pin::pin!(notify.notified());
        assert!(waited.as_mut().enable(), "the endpoint is woken");
        assert_eq!(index.lease("a", 10, 10), vec![2, 3, 4]);
        assert!(index.release(1));
        assert_eq!(index.lease("a", 10, 10), vec![1]);
    }

    #[test]
    fn enqueue_leaves_a_permit_for_a_later_waiter() {
        let mut index = Index::default();
        let notify = index.waker("a");
        index.apply(vec![queued("a", 1, 0)]);
        // notify_one stores a permit: a worker that checks the queue and then waits
        // cannot miss an enqueue that landed in between.
        let mut waited = std::pin::pin!(notify.notified());
        assert!(waited.as_mut().enable());
    }
}
