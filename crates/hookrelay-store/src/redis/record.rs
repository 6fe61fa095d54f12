//! Decoding the hashes the scripts return (`id, field, value, …`) into the crate's types.

use crate::{
    Attempt, DeadLetter, DeadLetterInfo, Delivery, DeliveryId, DeliveryState, History, StoreError,
};
use bytes::Bytes;
use std::sync::Arc;

/// Why a stored hash cannot be decoded.
#[derive(Debug, thiserror::Error)]
enum BadRecord {
    #[error("missing delivery id")]
    NoId,
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    #[error("field `{0}` is not valid")]
    Invalid(&'static str),
    #[error("unknown state `{0}`")]
    State(String),
}

/// One delivery as the history scripts answer it: the name of its state, its hash as a
/// flat array (`id, field, value, …`) and its history entries, oldest first.
pub(super) type RawHistory = (String, Vec<Vec<u8>>, Vec<Vec<u8>>);

/// `attempt` as a history entry is stored (`P:a:<id>`): cut to its bounds, postcard-encoded.
pub(super) fn entry(id: DeliveryId, attempt: Attempt) -> Result<Vec<u8>, StoreError> {
    postcard::to_allocvec(&attempt.bounded()).map_err(|e| StoreError::Corrupt {
        table: "attempts",
        key: id.0,
        source: Arc::new(e),
    })
}

/// Decodes a delivery a history script answered. Undecodable history entries are left out
/// (and logged); an undecodable record is [`StoreError::Corrupt`].
pub(super) fn history((state, flat, entries): RawHistory) -> Result<History, StoreError> {
    let parsed = DeliveryState::parse(&state);
    let table = match parsed {
        Some(DeliveryState::Dead) => "dead_letters",
        Some(DeliveryState::Delivered) => "history",
        _ => "deliveries",
    };
    let record = Record::parse(table, flat)?;
    let Some(state) = parsed else {
        return Err(record.bad(BadRecord::State(state)));
    };
    let (delivery, dead) = if state == DeliveryState::Dead {
        let letter = record.into_dead_letter()?;
        let info = DeadLetterInfo {
            reason: letter.reason,
            status: letter.status,
            response: letter.response,
            dead_at_ms: letter.dead_at_ms,
        };
        (letter.delivery, Some(info))
    } else {
        (record.into_delivery()?, None)
    };
    let mut delivery = delivery;
    if state == DeliveryState::Delivered {
        // The attempt that delivered it is not counted in the record.
        delivery.attempts = delivery.attempts.saturating_add(1);
    }
    let id = delivery.id.0;
    let attempts = entries
        .iter()
        .filter_map(|raw| match postcard::from_bytes::<Attempt>(raw) {
            Ok(attempt) => Some(attempt),
            Err(error) => {
                tracing::error!(id, error = %error, "unreadable history entry left out");
                None
            }
        })
        .collect();
    Ok(History {
        delivery,
        state,
        attempts,
        dead,
    })
}

/// One stored hash, fields by name.
pub(super) struct Record {
    pub(super) id: u64,
    fields: Vec<(Vec<u8>, Vec<u8>)>,
    table: &'static str,
}

impl Record {
    /// Splits a script's flat array: the id, then field/value pairs.
    pub(super) fn parse(table: &'static str, flat: Vec<Vec<u8>>) -> Result<Self, StoreError> {
        let mut items = flat.into_iter();
        let id = items
            .next()
            .and_then(|raw| std::str::from_utf8(&raw).ok()?.parse().ok())
            .ok_or_else(|| corrupt(table, 0, BadRecord::NoId))?;
        let mut fields = Vec::with_capacity(items.len() / 2);
        while let (Some(name), Some(value)) = (items.next(), items.next()) {
            fields.push((name, value));
        }
        Ok(Record { id, fields, table })
    }

    fn raw(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(n, _)| n == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    fn take(&mut self, name: &'static str) -> Option<Vec<u8>> {
        let at = self.fields.iter().position(|(n, _)| n == name.as_bytes())?;
        Some(self.fields.swap_remove(at).1)
    }

    fn text(&mut self, name: &'static str) -> Result<Option<String>, StoreError> {
        self.take(name)
            .map(|raw| String::from_utf8(raw).map_err(|_| self.bad(BadRecord::Invalid(name))))
            .transpose()
    }

    fn required_text(&mut self, name: &'static str) -> Result<String, StoreError> {
        self.text(name)?
            .ok_or_else(|| self.bad(BadRecord::Missing(name)))
    }

    fn number<T: std::str::FromStr>(&self, name: &'static str) -> Result<Option<T>, StoreError> {
        self.raw(name)
            .map(|raw| {
                std::str::from_utf8(raw)
                    .ok()
                    // Scores come back as doubles ("61000" or "6.1e4").
                    .and_then(|s| s.parse().ok().or_else(|| parse_float(s)))
                    .ok_or_else(|| self.bad(BadRecord::Invalid(name)))
            })
            .transpose()
    }

    fn required_number<T: std::str::FromStr>(&self, name: &'static str) -> Result<T, StoreError> {
        self.number(name)?
            .ok_or_else(|| self.bad(BadRecord::Missing(name)))
    }

    /// The stream entry id of a queued delivery, when it is in the stream.
    pub(super) fn stream_id(&self) -> Option<String> {
        self.raw("sid")
            .and_then(|raw| String::from_utf8(raw.to_vec()).ok())
    }

    /// A queued delivery (`P:d:<id>`).
    pub(super) fn into_delivery(mut self) -> Result<Delivery, StoreError> {
        Ok(Delivery {
            id: DeliveryId(self.id),
            endpoint: self.required_text("ep")?,
            not_before_ms: self.required_number("nb")?,
            attempts: self.required_number("att")?,
            webhook_id: self.required_text("wid")?,
            created_at_ms: self.required_number("ca")?,
            last_error: self.text("err")?,
            body: Bytes::from(self.take("body").unwrap_or_default()),
            trace: self.text("tp")?,
        })
    }

    /// A dead letter (`P:dl:<id>`).
    pub(super) fn into_dead_letter(mut self) -> Result<DeadLetter, StoreError> {
        let reason = self.required_text("reason")?;
        let status = self.number("status")?;
        let response = self.text("resp")?;
        let dead_at_ms = self.required_number("dead")?;
        Ok(DeadLetter {
            delivery: self.into_delivery()?,
            reason,
            status,
            response,
            dead_at_ms,
        })
    }

    fn bad(&self, why: BadRecord) -> StoreError {
        corrupt(self.table, self.id, why)
    }
}

/// `"6.1e4"` → 61000, for integer fields stored as Redis scores.
fn parse_float<T: std::str::FromStr>(s: &str) -> Option<T> {
    let value: f64 = s.parse().ok()?;
    if !value.is_finite() || value.fract() != 0.0 {
        return None;
    }
    format!("{value:.0}").parse().ok()
}

fn corrupt(table: &'static str, key: u64, why: BadRecord) -> StoreError {
    StoreError::Corrupt {
        table,
        key,
        source: Arc::new(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(items: &[&str]) -> Vec<Vec<u8>> {
        items.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn delivery_and_dead_letter_decode() -> Result<(), StoreError> {
        let fields = [
            "7", "ep", "crm", "wid", "msg_1", "body", "{}", "ca", "5", "att", "2", "nb", "61000",
            "err", "503", "sid", "1-0",
        ];
        let record = Record::parse("deliveries", flat(&fields))?;
        assert_eq!(record.stream_id().as_deref(), Some("1-0"));
        let d = record.into_delivery()?;
        assert_eq!(
            (d.id, d.attempts, d.not_before_ms),
            (DeliveryId(7), 2, 61_000)
        );
        assert_eq!(
            (d.webhook_id.as_str(), d.last_error.as_deref()),
            ("msg_1", Some("503"))
        );

        let mut dead = fields[..13].to_vec();
        dead.extend(["reason", "gone", "status", "410", "dead", "9"]);
        let letter = Record::parse("dead_letters", flat(&dead))?.into_dead_letter()?;
        assert_eq!((letter.status, letter.dead_at_ms), (Some(410), 9));
        assert_eq!((letter.response, letter.delivery.last_error), (None, None));
        Ok(())
    }

    #[test]
    fn histories_decode() -> Result<(), StoreError> {
        use crate::AttemptOutcome;
        let attempt = Attempt {
            at_ms: 1_700_000_000_000,
            outcome: AttemptOutcome::Retrying,
            status: Some(503),
            duration_ms: 40,
            error: Some("HTTP 503".into()),
            // 'é' is two bytes: the cut falls inside one and drops it.
            response: Some(format!(
                "a{}",
                "é".repeat(crate::MAX_ATTEMPT_RESPONSE_BYTES)
            )),
        };
        let stored = entry(DeliveryId(7), attempt.clone())?;
        let queued = flat(&[
            "7", "ep", "crm", "wid", "msg_1", "body", "{}", "ca", "5", "att", "1", "nb", "6",
        ]);
        let h = history((
            "replayed".into(),
            queued.clone(),
            vec![stored, b"\xff".to_vec()],
        ))?;
        assert_eq!((h.state, h.dead), (DeliveryState::Replayed, None));
        assert_eq!(h.attempts.len(), 1, "the bad entry is left out");
        let kept = &h.attempts[0];
        assert_eq!((kept.at_ms, kept.status), (attempt.at_ms, Some(503)));
        let cut = kept.response.as_ref().map_or(0, String::len);
        assert_eq!(
            cut,
            crate::MAX_ATTEMPT_RESPONSE_BYTES - 1,
            "cut at a char boundary"
        );

        let mut dead = queued.clone();
        dead.extend(flat(&["reason", "gone", "dead", "9"]));
        let h = history(("dead".into(), dead, Vec::new()))?;
        let info = h
            .dead
            .ok_or(StoreError::UnknownDelivery { id: DeliveryId(7) })?;
        assert_eq!((info.reason.as_str(), info.dead_at_ms), ("gone", 9));
        let bad = history(("lost".into(), queued, Vec::new()));
        assert!(matches!(bad, Err(StoreError::Corrupt { key: 7, .. })));
        Ok(())
    }

    #[test]
    fn missing_or_bad_fields_are_corrupt() {
        let no_id = Record::parse("deliveries", flat(&["x"]));
        assert!(matches!(no_id, Err(StoreError::Corrupt { .. })));
        let missing =
            Record::parse("deliveries", flat(&["3", "ep", "crm"])).and_then(Record::into_delivery);
        assert!(matches!(missing, Err(StoreError::Corrupt { key: 3, .. })));
        assert_eq!(parse_float::<i64>("6.1e4"), Some(61_000));
        assert_eq!(parse_float::<i64>("0.5"), None);
    }
}
