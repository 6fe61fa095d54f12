//! The owned values that go into and come out of a store.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest response excerpt kept in a [`DeadLetter`], in bytes; longer ones are cut at a
/// character boundary.
pub const MAX_RESPONSE_BYTES: usize = 4096;

/// Identifier of a delivery, unique within a store and allocated in increasing order.
///
/// A dead letter keeps the id of its delivery, and a replayed dead letter is queued again
/// under the same id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeliveryId(pub u64);

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A delivery to enqueue: one rendered payload for one endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDelivery {
    /// Name of the endpoint (its identity across config reloads).
    pub endpoint: String,
    /// The `webhook-id` header value, stable across retries and replays.
    pub webhook_id: String,
    /// The rendered payload, sent as the request body.
    pub body: Bytes,
    /// When the event was received, epoch milliseconds.
    pub created_at_ms: i64,
    /// The trace context of the callback that made it (W3C `traceparent`), for its
    /// attempts to join that trace; `None` when traces are off. At most
    /// [`MAX_TRACE_BYTES`]; a longer one is not kept.
    pub trace: Option<String>,
}

/// Longest trace context kept with a delivery (a `traceparent` is 55 bytes).
pub const MAX_TRACE_BYTES: usize = 255;

/// A queued delivery, as stored and as leased by a worker.
// Field order is the storage order: the open path decodes only the leading
// `id, endpoint, not_before_ms` (see `codec::Head`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The delivery's id.
    pub id: DeliveryId,
    /// Name of the endpoint.
    pub endpoint: String,
    /// Not to be attempted before this time, epoch milliseconds.
    pub not_before_ms: i64,
    /// Attempts made so far.
    pub attempts: u32,
    /// The `webhook-id` header value.
    pub webhook_id: String,
    /// When it was queued, epoch milliseconds: when the event was received, or when it was
    /// last replayed from the dead letters (a retry's `max_age` counts from it).
    pub created_at_ms: i64,
    /// Why the last attempt failed, if one did.
    pub last_error: Option<String>,
    /// The rendered payload.
    pub body: Bytes,
    /// The trace context it was enqueued with ([`NewDelivery::trace`]).
    pub trace: Option<String>,
}

/// A delivery given up on, kept with the reason until it is replayed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The delivery as it was when it was given up on.
    pub delivery: Delivery,
    /// Why: `attempts exhausted`, `endpoint removed`, …
    pub reason: String,
    /// HTTP status of the last response, if there was one.
    pub status: Option<u16>,
    /// Start of the last response body, at most [`MAX_RESPONSE_BYTES`].
    pub response: Option<String>,
    /// When it was dead-lettered, epoch milliseconds.
    pub dead_at_ms: i64,
}

/// What [`Store::enqueue`](crate::Store::enqueue) did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnqueueOutcome {
    /// The deliveries (and the dedupe key, if any) are durable; their ids in batch order.
    Enqueued(Vec<DeliveryId>),
    /// The dedupe key was seen within its window: nothing was written.
    Duplicate,
}

/// Cuts `text` to at most `max` bytes at a character boundary.
pub(crate) fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncate_keeps_char_boundaries() {
        assert_eq!(truncate("abcdef".into(), 4), "abcd");
        assert_eq!(truncate("ab".into(), 4), "ab");
        // "é" is two bytes: cutting inside it drops it whole.
        assert_eq!(truncate("aé".into(), 2), "a");
    }
}

/// What a store counted since it was opened, for metrics: [`Store::stats`](crate::Store::stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Writes refused at once with [`StoreError::Recovering`](crate::StoreError::Recovering)
    /// because the store was recovering from a failed write (embedded; always 0 on Redis).
    pub refused: u64,
    /// Times a write or sync failed and the store started refusing writes (embedded; always
    /// 0 on Redis, whose calls fail one by one while it is unreachable).
    pub outages: u64,
    /// Enqueues refused because the store was full (embedded, with a budget: see
    /// [`EmbeddedOptions::max_bytes`](crate::EmbeddedOptions::max_bytes); always 0 on
    /// Redis).
    pub full: u64,
    /// Bytes of the queued deliveries, dead letters and dedupe keys held, as the budget
    /// counts them (embedded; 0 on Redis).
    pub used_bytes: u64,
    /// The budget in bytes, 0 for none (embedded; 0 on Redis).
    pub max_bytes: u64,
    /// Dedupe keys and one-time tokens held (embedded, approximate after an open; 0 on
    /// Redis).
    pub keys: u64,
    /// Bytes of the delivered deliveries the history keeps (embedded; 0 on Redis). Not
    /// counted in `used_bytes`: the history has its own cap
    /// ([`Store::sweep_history`](crate::Store::sweep_history)).
    pub history_bytes: u64,
    /// Bytes free on the store's file system when an enqueue last looked (embedded, with
    /// [`EmbeddedOptions::min_free`](crate::EmbeddedOptions::min_free) set and at least one
    /// enqueue since the open; else 0).
    pub disk_free_bytes: u64,
    /// Enqueues refused with [`StoreError::DiskLow`](crate::StoreError::DiskLow)
    /// (embedded; always 0 on Redis).
    pub disk_low: u64,
}

/// How much free space the embedded store keeps on its file system: below it, enqueues are
/// refused with [`StoreError::DiskLow`](crate::StoreError::DiskLow) before a write can fail
/// for want of space (see [`EmbeddedOptions::min_free`](crate::EmbeddedOptions::min_free)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinFree {
    /// A sixteenth of the file system, at most 64 MiB (the journal's length: what a flush
    /// of the write buffers may need).
    Auto,
    /// This many bytes; `0`: none kept.
    Bytes(u64),
}

/// Longest response excerpt kept with an [`Attempt`] in the history, in bytes (cut at a
/// character boundary).
pub const MAX_ATTEMPT_RESPONSE_BYTES: usize = 512;

/// Most entries a delivery's history keeps: the newest ones (a delivery retried for days
/// keeps its last attempts, not a list without end).
pub const MAX_ATTEMPTS_KEPT: usize = 32;

/// How an [`Attempt`] ended, or `Replayed` for a replay from the dead letters (an entry of
/// the history that is not an attempt).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The endpoint took it (2xx).
    Delivered,
    /// It failed and is tried again later.
    Retrying,
    /// It failed and was given up on: the delivery is a dead letter.
    Dead,
    /// Queued again from the dead letters (no request was made).
    Replayed,
}

/// One entry of a delivery's history: an attempt to deliver it, or a replay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// When the attempt started (a replay: when it was replayed), epoch milliseconds.
    pub at_ms: i64,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// HTTP status of the response, if there was one.
    pub status: Option<u16>,
    /// How long the request took, in milliseconds (0 for a replay).
    pub duration_ms: u32,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// Start of the response body, at most [`MAX_ATTEMPT_RESPONSE_BYTES`].
    pub response: Option<String>,
}

impl Attempt {
    /// The entry as stored: the response cut to [`MAX_ATTEMPT_RESPONSE_BYTES`].
    pub(crate) fn bounded(mut self) -> Self {
        self.response = self
            .response
            .map(|text| truncate(text, MAX_ATTEMPT_RESPONSE_BYTES));
        self.error = self.error.map(|text| truncate(text, MAX_RESPONSE_BYTES));
        self
    }
}

/// Where a delivery is, as its history tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting to be attempted (new, or waiting for a retry).
    Queued,
    /// Leased by a worker: an attempt is under way.
    InFlight,
    /// The endpoint took it.
    Delivered,
    /// Given up on: a dead letter.
    Dead,
    /// Queued again from the dead letters and not attempted since.
    Replayed,
}

impl DeliveryState {
    /// Its name in the API: `queued`, `in_flight`, `delivered`, `dead`, `replayed`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Queued => "queued",
            DeliveryState::InFlight => "in_flight",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
            DeliveryState::Replayed => "replayed",
        }
    }

    /// The state named `name` (as [`DeliveryState::as_str`] writes it).
    pub fn parse(name: &str) -> Option<Self> {
        [
            DeliveryState::Queued,
            DeliveryState::InFlight,
            DeliveryState::Delivered,
            DeliveryState::Dead,
            DeliveryState::Replayed,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

/// A delivery with its history: what [`Store::history`](crate::Store::history) answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History {
    /// The delivery: its payload, endpoint, `webhook-id`, attempts so far (reset by a
    /// replay; a delivered delivery's count includes the attempt that delivered it) and
    /// last error.
    pub delivery: Delivery,
    /// Where it is now.
    pub state: DeliveryState,
    /// Its attempts and replays, oldest first (the newest [`MAX_ATTEMPTS_KEPT`]).
    pub attempts: Vec<Attempt>,
    /// Why it was given up on, while it is a dead letter.
    pub dead: Option<DeadLetterInfo>,
}

/// Why a delivery is a dead letter, as its [`History`] shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterInfo {
    /// `attempts exhausted`, `endpoint removed`, …
    pub reason: String,
    /// HTTP status of the last response, if there was one.
    pub status: Option<u16>,
    /// Start of the last response body, at most [`MAX_RESPONSE_BYTES`].
    pub response: Option<String>,
    /// When it was dead-lettered, epoch milliseconds.
    pub dead_at_ms: i64,
}

/// Which histories [`Store::histories`](crate::Store::histories) lists: newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Only this endpoint's deliveries.
    pub endpoint: Option<String>,
    /// Only deliveries in this state.
    pub state: Option<DeliveryState>,
    /// Only deliveries received (or replayed) at or after this time, epoch milliseconds.
    pub since_ms: Option<i64>,
    /// Only deliveries with a smaller id: the `next` of the page before.
    pub before: Option<DeliveryId>,
    /// Most deliveries in the page (at least 1).
    pub limit: usize,
}

/// A page of [`Store::histories`](crate::Store::histories).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryPage {
    /// The deliveries, newest (highest id) first, without their payloads.
    pub deliveries: Vec<History>,
    /// Where the next page starts (its [`HistoryQuery::before`]), or `None` when there is
    /// nothing older to look at.
    pub next: Option<DeliveryId>,
}

/// Most records one [`Store::histories`](crate::Store::histories) call looks at before it
/// answers with what it found and a `next` to go on from: a filter that matches little
/// does not make one request read the whole history.
pub const HISTORY_SCAN_LIMIT: usize = 10_000;
