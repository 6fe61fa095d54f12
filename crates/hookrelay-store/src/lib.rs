//! Durable delivery queue and dead letters for hookrelay.
//!
//! Between "the provider's callback was verified and normalized" and "a worker delivers the
//! payload to an endpoint" sits this crate: one [`Delivery`] per matching endpoint is written
//! durably, together with the provider event's dedupe key, before the provider is answered.
//! Workers lease due deliveries per endpoint, then complete, reschedule or dead-letter them;
//! dead letters are listed and replayed.
//!
//! What it is:
//! - [`EmbeddedStore`]: the default backend, an append-only log in a directory. A single
//!   writer thread group-commits concurrent operations: every call that arrives while a
//!   write is in flight joins the next one, appended in one write and synced with one
//!   `fdatasync`. A call returns `Ok` only after its records are durable, so an acknowledged
//!   enqueue survives `kill -9` and power loss. The queue is kept in memory and bodies are
//!   read back from the log; the log is compacted into a checkpoint of what is live.
//! - [`RedisStore`]: the same queue in Redis, shared by several sidecar replicas (DESIGN.md
//!   §7): one stream and consumer group per endpoint, a dedupe window shared by all
//!   replicas, and a dead replica's leased deliveries taken over after a visibility
//!   timeout. Durable as far as Redis is: run it with `appendonly yes` and
//!   `appendfsync always` (or accept `everysec`'s one-second window).
//! - [`Store`]: the entry point, either backend behind one type. [`Store::open`] opens the
//!   backend a [`StoreConfig`] names, with its options; the methods of [`Store`] document
//!   what both backends do (and `tests/contract/` tests it on each), those of the backend
//!   types what one of them adds.
//! - Plain owned types ([`NewDelivery`], [`Delivery`], [`DeadLetter`]) and one error type
//!   ([`StoreError`]); no backend type appears in the API.
//!
//! What it is not: it does not render payloads, decide retries or backoff, or talk HTTP.
//! Leases are held by the process that took them (in memory, or renewed in Redis while the
//! process lives): after a restart every queued delivery is eligible again, so delivery is
//! at-least-once and consumers dedupe on `webhook-id`.
//!
//! ```
//! use hookrelay_store::{EnqueueOutcome, NewDelivery, Store, StoreConfig};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), hookrelay_store::StoreError> {
//! # let dir = tempfile::tempdir().map_err(|e| hookrelay_store::StoreError::CreateDir {
//! #     path: std::env::temp_dir(), source: e })?;
//! let store = Store::open(StoreConfig::embedded(dir.path())).await?;
//! let delivery = NewDelivery {
//!     endpoint: "crm".into(),
//!     webhook_id: "msg_1".into(),
//!     body: bytes::Bytes::from_static(b"{}"),
//!     created_at_ms: 1_000,
//! };
//! let key = Some(("twilio:SM123".to_owned(), Duration::from_secs(3600)));
//! let outcome = store.enqueue(key.clone(), vec![delivery.clone()], 1_000).await?;
//! assert!(matches!(outcome, EnqueueOutcome::Enqueued(ref ids) if ids.len() == 1));
//! // The provider retried: same event id within the window.
//! assert_eq!(store.enqueue(key, vec![delivery], 2_000).await?, EnqueueOutcome::Duplicate);
//!
//! let leased = store.lease("crm", 1_000, 10).await?;
//! assert_eq!(leased.len(), 1);
//! store.complete(leased[0].id).await?;
//! assert_eq!(store.queue_depth("crm").await?, 0);
//! # Ok(())
//! # }
//! ```
//!

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
    DeadLetter, Delivery, DeliveryId, EnqueueOutcome, MAX_RESPONSE_BYTES, NewDelivery,
};
