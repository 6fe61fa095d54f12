//! Small helpers the store's test files share: a delivery to enqueue, the ids an enqueue
//! wrote, the wall clock.

use bytes::Bytes;
use hookrelay_store::{DeliveryId, EnqueueOutcome, NewDelivery};
use std::time::{SystemTime, UNIX_EPOCH};

/// A delivery to `endpoint` whose body names its `webhook_id`, created at 1 000 ms.
pub(crate) fn new(endpoint: &str, webhook_id: &str) -> NewDelivery {
    NewDelivery {
        endpoint: endpoint.into(),
        webhook_id: webhook_id.into(),
        body: Bytes::from(format!("{{\"id\":\"{webhook_id}\"}}")),
        created_at_ms: 1_000,
        trace: None,
    }
}

/// The ids an enqueue wrote (none for a duplicate).
pub(crate) fn ids(outcome: EnqueueOutcome) -> Vec<DeliveryId> {
    match outcome {
        EnqueueOutcome::Enqueued(ids) => ids,
        EnqueueOutcome::Duplicate => Vec::new(),
    }
}

/// Now, in epoch milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
