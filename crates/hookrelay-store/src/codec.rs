//! Record encoding: one format byte, then postcard.
//!
//! Postcard is compact and not self-describing, so the leading format byte is what lets a
//! later version change the layout and still read old files.

use crate::{DeliveryId, StoreError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

const FORMAT_V1: u8 = 1;

/// The leading fields of a stored [`Delivery`](crate::Delivery), decoded without copying
/// the body.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Head {
    pub(crate) id: DeliveryId,
    pub(crate) endpoint: String,
    pub(crate) not_before_ms: i64,
}

#[derive(Debug, thiserror::Error)]
#[error("unknown record format {0}")]
struct UnknownFormat(u8);

#[derive(Debug, thiserror::Error)]
#[error("empty record")]
struct Empty;

pub(crate) fn encode<T: Serialize>(
    table: &'static str,
    key: u64,
    value: &T,
) -> Result<Vec<u8>, StoreError> {
    postcard::to_extend(value, vec![FORMAT_V1]).map_err(|e| corrupt(table, key, e))
}

pub(crate) fn decode<T: DeserializeOwned>(
    table: &'static str,
    key: u64,
    bytes: &[u8],
) -> Result<T, StoreError> {
    let rest = payload(table, key, bytes)?;
    postcard::from_bytes(rest).map_err(|e| corrupt(table, key, e))
}

/// Decodes a leading part of a record, ignoring what follows.
pub(crate) fn decode_prefix<T: DeserializeOwned>(
    table: &'static str,
    key: u64,
    bytes: &[u8],
) -> Result<T, StoreError> {
    let rest = payload(table, key, bytes)?;
    postcard::take_from_bytes(rest)
        .map(|(value, _)| value)
        .map_err(|e| corrupt(table, key, e))
}

fn payload<'a>(table: &'static str, key: u64, bytes: &'a [u8]) -> Result<&'a [u8], StoreError> {
    match bytes.split_first() {
        Some((&FORMAT_V1, rest)) => Ok(rest),
        Some((&other, _)) => Err(corrupt(table, key, UnknownFormat(other))),
        None => Err(corrupt(table, key, Empty)),
    }
}

fn corrupt(
    table: &'static str,
    key: u64,
    source: impl std::error::Error + Send + Sync + 'static,
) -> StoreError {
    StoreError::Corrupt {
        table,
        key,
        source: Arc::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeadLetter, Delivery};
    use bytes::Bytes;

    fn delivery() -> Delivery {
        Delivery {
            id: DeliveryId(42),
            endpoint: "crm".into(),
            not_before_ms: 7,
            attempts: 3,
            webhook_id: "msg_1".into(),
            created_at_ms: 5,
            last_error: Some("503".into()),
            body: Bytes::from_static(b"{\"a\":1}"),
        }
    }

    #[test]
    fn round_trip_and_head() -> Result<(), StoreError> {
        let d = delivery();
        let bytes = encode("deliveries", 42, &d)?;
        assert_eq!(decode::<Delivery>("deliveries", 42, &bytes)?, d);
        let head: Head = decode_prefix("deliveries", 42, &bytes)?;
        assert_eq!(
            (head.id, head.endpoint.as_str(), head.not_before_ms),
            (d.id, "crm", 7)
        );

        let dead = DeadLetter {
            delivery: d,
            reason: "attempts exhausted".into(),
            status: Some(500),
            response: None,
            dead_at_ms: 9,
        };
        let bytes = encode("dead_letters", 42, &dead)?;
        assert_eq!(decode::<DeadLetter>("dead_letters", 42, &bytes)?, dead);
        Ok(())
    }

    #[test]
    fn unknown_format_and_garbage_are_errors() {
        let unknown = decode::<Delivery>("deliveries", 1, &[9, 0, 0]);
        assert!(matches!(unknown, Err(StoreError::Corrupt { key: 1, .. })));
        assert!(decode::<Delivery>("deliveries", 1, &[]).is_err());
        assert!(decode::<Delivery>("deliveries", 1, &[FORMAT_V1, 0xff]).is_err());
    }
}
