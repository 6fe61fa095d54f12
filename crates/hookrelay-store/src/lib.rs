#![doc = include_str!("../README.md")]
//!
//! ## Where things are
//!
//! - [`Store`] is the entry point: [`Store::open`] opens the backend a [`StoreConfig`]
//!   names, with its options. The methods of [`Store`] document what both backends do (and
//!   `tests/contract/` tests it on each), those of the backend types what one of them adds.
//! - [`EmbeddedStore`]: a fjall database; a single writer thread group-commits concurrent
//!   operations: every call that arrives while a write is in flight joins the next batch,
//!   committed atomically and synced with one `fdatasync`, so an acknowledged enqueue
//!   survives `kill -9` and power loss. The queue, dead letters and dedupe keys are on
//!   disk; memory holds per-endpoint counters and cursors and the leases. Leases are in
//!   memory: after a restart every queued delivery is eligible again. A byte budget
//!   refuses enqueues ([`StoreError::Full`]) until deliveries drain; after a failed write
//!   (a full disk) it refuses writes ([`StoreError::Recovering`]) until it has recovered
//!   by itself.
//! - [`RedisStore`] (DESIGN.md §7): one stream and consumer group per endpoint; leases are
//!   renewed while the process lives. Durable as far as Redis is: run it with
//!   `appendonly yes` and `appendfsync always` (or accept `everysec`'s one-second window).
//! - Plain owned types ([`NewDelivery`], [`Delivery`], [`DeadLetter`]) and one error type
//!   ([`StoreError`]); no backend type appears in the API.

mod embedded;
mod error;
mod redis;
mod store;
mod types;

pub use embedded::{EmbeddedOptions, EmbeddedStore};
pub use error::StoreError;
pub use redis::{RedisOptions, RedisStore};
pub use store::{Store, StoreConfig};
pub use types::{
    Attempt, AttemptOutcome, DeadLetter, DeadLetterInfo, Delivery, DeliveryId, DeliveryState,
    EnqueueOutcome, HISTORY_SCAN_LIMIT, History, HistoryPage, HistoryQuery,
    MAX_ATTEMPT_RESPONSE_BYTES, MAX_ATTEMPTS_KEPT, MAX_RESPONSE_BYTES, MAX_TRACE_BYTES, MinFree,
    NewDelivery, StoreStats,
};
