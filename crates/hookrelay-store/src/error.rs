//! The store's error type.

use crate::DeliveryId;
use std::error::Error as StdError;
use std::path::PathBuf;
use std::sync::Arc;

/// Why a store operation failed.
///
/// A write that fails with [`StoreError::Backend`] was not acknowledged; whether it reached
/// the disk is unknown only when the commit itself failed. Then the embedded store refuses
/// further writes with [`StoreError::Recovering`] ([`EmbeddedStore::health`](crate::EmbeddedStore::health)
/// reports it) until it has recovered by itself, which it retries with backoff. With Redis,
/// `Backend` also means "Redis unreachable or too slow" (the call timed out): whether a write
/// that timed out was applied is unknown, and the next calls work again once Redis answers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store directory could not be created.
    #[error("cannot create the store directory {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The database file could not be opened, created or repaired.
    #[error("cannot open the store {}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// The backend's error.
        #[source]
        source: Arc<dyn StdError + Send + Sync>,
    },
    /// The writer thread could not be started.
    #[error("cannot start the store writer thread")]
    Spawn {
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A read or write of the backend failed.
    #[error("store {op} failed")]
    Backend {
        /// What was being done: `begin write`, `commit`, `read`, …
        op: &'static str,
        /// The backend's error (shared by every caller of a failed group commit).
        #[source]
        source: Arc<dyn StdError + Send + Sync>,
    },
    /// A stored record could not be decoded, or a record could not be encoded.
    #[error("{table} record {key} cannot be encoded or decoded")]
    Corrupt {
        /// The table: `deliveries` or `dead_letters`.
        table: &'static str,
        /// The record's key.
        key: u64,
        /// The codec's error.
        #[source]
        source: Arc<dyn StdError + Send + Sync>,
    },
    /// No queued delivery has this id (it was completed, dead-lettered, or never existed),
    /// or, on Redis, another replica took over its lease: the outcome is that replica's to
    /// record.
    #[error("delivery {id} is not in the queue")]
    UnknownDelivery {
        /// The id asked for.
        id: DeliveryId,
    },
    /// The embedded store refuses writes: a write or sync of its database failed (a full disk, an
    /// I/O error) and it has not recovered yet. Nothing was written for this call. The store
    /// retries by itself, with backoff, and takes writes again as soon as one succeeds; a
    /// caller answers "try again later" (the sidecar: `503`, so the provider retries).
    #[error("the store refuses writes until it recovers from a failed write")]
    Recovering {
        /// The error of the write or sync that failed first.
        #[source]
        source: Arc<dyn StdError + Send + Sync>,
    },
    /// The embedded store is full: its queued deliveries, dead letters and dedupe keys
    /// take `used` bytes of a budget of `max` (`store.max_bytes`). Nothing was written; a
    /// caller answers "try again later" (the sidecar: `503`, so the provider retries).
    /// Enqueues are taken again once deliveries drain below the budget.
    #[error("the store is full: {used} bytes held of a budget of {max}")]
    Full {
        /// Bytes held.
        used: u64,
        /// The budget.
        max: u64,
    },
    /// The embedded store's file system has less free space than the store keeps
    /// ([`EmbeddedOptions::min_free`](crate::EmbeddedOptions::min_free)): nothing was
    /// written; a caller answers "try again later" (the sidecar: `503`, so the provider
    /// retries). Deliveries and their outcomes go on, and enqueues are taken again once
    /// half as much again is free.
    #[error(
        "the store's file system is nearly full: {free} bytes free, under the {min_free} it keeps free"
    )]
    DiskLow {
        /// Bytes free when last looked at.
        free: u64,
        /// What the store keeps free.
        min_free: u64,
    },
    /// The writer thread is gone; the store must be reopened.
    #[error("the store writer has stopped")]
    WriterStopped,
    /// The Redis URL is invalid, or Redis did not answer when the store was opened.
    #[error("cannot connect to redis at {target}")]
    Connect {
        /// The URL without its credentials.
        target: String,
        /// The client's error.
        #[source]
        source: Arc<dyn StdError + Send + Sync>,
    },
}

impl StoreError {
    pub(crate) fn backend(op: &'static str, source: impl StdError + Send + Sync + 'static) -> Self {
        StoreError::Backend {
            op,
            source: Arc::new(source),
        }
    }
}
