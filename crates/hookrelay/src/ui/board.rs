//! The figures over time the status page charts: the cumulative counts of
//! [`Metrics::tallies`] read once a minute into a ring of the last hour.
//!
//! Nothing is done per callback or per delivery beyond the counters the metrics keep: the
//! page's cost when nobody looks at it is one read of those counters a minute, and the
//! ring holds 61 readings of the configured routes and endpoints.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::metrics::{Metrics, Tallies};

/// How often the counters are read.
pub(crate) const EVERY: Duration = Duration::from_secs(60);

/// Readings kept: an hour of minutes and the one before it, so that 60 whole minutes can
/// be told apart.
const KEEP: usize = 61;

/// One reading of the counters.
#[derive(Clone, Debug)]
pub(crate) struct Reading {
    /// When it was read, Unix ms.
    pub(crate) at_ms: i64,
    /// The counts read.
    pub(crate) tallies: Tallies,
}

/// The readings of the last hour, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Board {
    readings: Mutex<VecDeque<Reading>>,
}

impl Board {
    /// Adds a reading, dropping the oldest past an hour's worth.
    pub(crate) fn push(&self, reading: Reading) {
        let mut readings = self.readings.lock().unwrap_or_else(PoisonError::into_inner);
        if readings.len() == KEEP {
            readings.pop_front();
        }
        readings.push_back(reading);
    }

    /// The readings, oldest first.
    pub(crate) fn readings(&self) -> Vec<Reading> {
        self.readings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}

/// Reads the counters of the configured routes and endpoints now.
pub(crate) fn read(
    metrics: &Metrics,
    snapshot: &hookrelay_config::Snapshot,
    at_ms: i64,
) -> Reading {
    Reading {
        at_ms,
        tallies: metrics.tallies(
            snapshot.routes.keys().map(String::as_str),
            snapshot.endpoints.iter().map(|e| e.name.as_str()),
        ),
    }
}

/// Per-interval counts of one series between consecutive readings, ending with `now`
/// (the interval in progress): `(delivered, failed)` of an endpoint or `(received,
/// rejected)` of a route. An interval whose first reading lacks the series (an endpoint
/// configured since) counts 0: its counter may have counted before (removed and added
/// back), and a difference from nothing would show all of that in one minute.
pub(crate) fn steps(
    readings: &[Reading],
    now: &Reading,
    pick: impl Fn(&Tallies) -> Option<(u64, u64)>,
) -> Vec<(u64, u64)> {
    let series: Vec<Option<(u64, u64)>> = readings
        .iter()
        .chain(std::iter::once(now))
        .map(|r| pick(&r.tallies))
        .collect();
    series
        .windows(2)
        .map(|pair| match (pair[0], pair[1]) {
            (Some(a), Some(b)) => (b.0.saturating_sub(a.0), b.1.saturating_sub(a.1)),
            _ => (0, 0),
        })
        .collect()
}

/// The counts of one series since `since_ms` (or since the oldest reading, when the
/// process has not been up so long): the latest reading at or before `since_ms` that has
/// the series (else the oldest that has it) subtracted from `now`'s.
pub(crate) fn since(
    readings: &[Reading],
    now: &Reading,
    since_ms: i64,
    pick: impl Fn(&Tallies) -> Option<(u64, u64)>,
) -> (u64, u64) {
    since_from(readings, now, since_ms, pick).0
}

/// [`since`], and the time of the reading the counts are taken from (`None` when no
/// reading has the series: nothing is measured yet).
pub(crate) fn since_from(
    readings: &[Reading],
    now: &Reading,
    since_ms: i64,
    pick: impl Fn(&Tallies) -> Option<(u64, u64)>,
) -> ((u64, u64), Option<i64>) {
    let Some(current) = pick(&now.tallies) else {
        return ((0, 0), None);
    };
    let base = readings
        .iter()
        .rev()
        .filter(|r| r.at_ms <= since_ms)
        .find_map(|r| pick(&r.tallies).map(|t| (t, r.at_ms)))
        .or_else(|| {
            readings
                .iter()
                .find_map(|r| pick(&r.tallies).map(|t| (t, r.at_ms)))
        });
    match base {
        None => ((0, 0), None),
        Some((base, at)) => (
            (
                current.0.saturating_sub(base.0),
                current.1.saturating_sub(base.1),
            ),
            Some(at),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(at_ms: i64, delivered: u64, failed: u64) -> Reading {
        let mut tallies = Tallies::default();
        tallies
            .endpoints
            .insert("crm".to_owned(), (delivered, failed));
        Reading { at_ms, tallies }
    }

    fn crm(t: &Tallies) -> Option<(u64, u64)> {
        t.endpoints.get("crm").copied()
    }

    #[test]
    fn steps_are_the_differences_of_consecutive_readings_ending_with_now() {
        let readings = vec![
            reading(0, 0, 0),
            reading(60_000, 5, 1),
            reading(120_000, 5, 3),
        ];
        let now = reading(150_000, 9, 3);
        assert_eq!(steps(&readings, &now, crm), vec![(5, 1), (0, 2), (4, 0)]);
    }

    #[test]
    fn since_subtracts_the_reading_at_or_before_the_time() {
        let readings = vec![
            reading(0, 1, 0),
            reading(60_000, 5, 1),
            reading(120_000, 7, 3),
        ];
        let now = reading(150_000, 9, 3);
        assert_eq!(since(&readings, &now, 60_000, crm), (4, 2));
        assert_eq!(since(&readings, &now, 90_000, crm), (4, 2));
        assert_eq!(
            since_from(&readings, &now, 90_000, crm),
            ((4, 2), Some(60_000))
        );
        // Not up so long: since the first reading.
        assert_eq!(since(&readings, &now, -300_000, crm), (8, 3));
        // A series no reading has yet counts nothing: what its counter held before (an
        // endpoint removed and added back) is no spike.
        let mut later = reading(150_000, 0, 0);
        later.tallies.endpoints.clear();
        later.tallies.endpoints.insert("new".into(), (2, 0));
        let new = |t: &Tallies| t.endpoints.get("new").copied();
        assert_eq!(since(&readings, &later, 60_000, new), (0, 0));
        // Nor is there a step from a reading without the series.
        let mut back = readings.clone();
        back[1].tallies.endpoints.clear();
        assert_eq!(steps(&back, &now, crm), vec![(0, 0), (0, 0), (2, 0)]);
    }

    #[test]
    fn the_ring_keeps_an_hour() {
        let board = Board::default();
        for minute in 0..100 {
            board.push(reading(minute * 60_000, 0, 0));
        }
        let readings = board.readings();
        assert_eq!(readings.len(), KEEP);
        assert_eq!(readings[0].at_ms, 39 * 60_000);
    }
}
