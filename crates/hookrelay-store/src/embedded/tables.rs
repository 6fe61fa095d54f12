//! The redb tables of the embedded store.
//!
//! Values are `codec` records; the `*_by_endpoint` tables are indexes with empty values.

use redb::TableDefinition;

pub(crate) const DELIVERIES_NAME: &str = "deliveries";
pub(crate) const DEAD_LETTERS_NAME: &str = "dead_letters";

/// Queued deliveries by id.
pub(crate) const DELIVERIES: TableDefinition<u64, &[u8]> = TableDefinition::new(DELIVERIES_NAME);
/// Queued delivery ids by endpoint.
pub(crate) const QUEUE_BY_ENDPOINT: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("queue_by_endpoint");
/// Dead letters by delivery id.
pub(crate) const DEAD_LETTERS: TableDefinition<u64, &[u8]> =
    TableDefinition::new(DEAD_LETTERS_NAME);
/// Dead-letter ids by endpoint.
pub(crate) const DEAD_BY_ENDPOINT: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("dead_by_endpoint");
/// Dedupe keys and when each expires, epoch ms.
pub(crate) const DEDUPE: TableDefinition<&str, i64> = TableDefinition::new("dedupe");
/// Dedupe keys by expiry, for the bounded purge.
pub(crate) const DEDUPE_EXPIRY: TableDefinition<(i64, &str), ()> =
    TableDefinition::new("dedupe_expiry");
/// Counters: `next_id`.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

pub(crate) const NEXT_ID: &str = "next_id";
