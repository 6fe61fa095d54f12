//! Logs an attacker cannot flood: each call site may write `burst` lines at once and then
//! `per_second` on average; what is over is dropped, counted
//! (`hookrelay_log_lines_suppressed_total`) and summed up in one line per interval.
//!
//! Every refused callback and every dropped connection is an attacker's action: without
//! this, one line each (a WARN per bad signature, Pingora's ERROR per connection closed
//! early) lets anyone fill a disk or drown the lines that matter. The metrics still count
//! every refusal.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::callsite::Identifier;
use tracing::{Event, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterExt as _, LevelFilter};
use tracing_subscriber::layer::{Context, Filter};

/// Lines dropped since the start (for the metric).
static SUPPRESSED_TOTAL: AtomicU64 = AtomicU64::new(0);
/// Lines dropped since the last summary.
static SUPPRESSED_SINCE: AtomicU64 = AtomicU64::new(0);

/// The log writer's count of lines it dropped because its queue was full.
static WRITER_ERRORS: std::sync::OnceLock<tracing_appender::non_blocking::ErrorCounter> =
    std::sync::OnceLock::new();

/// Counts what the log writer drops along with the per-call-site limit's lines.
pub(crate) fn set_writer_errors(counter: tracing_appender::non_blocking::ErrorCounter) {
    let _ = WRITER_ERRORS.set(counter);
}

/// Lines dropped since the process started: over the per-call-site limit, or with the
/// log writer's queue full.
pub(crate) fn suppressed_total() -> u64 {
    let writer = WRITER_ERRORS.get().map_or(0, |c| c.dropped_lines() as u64);
    SUPPRESSED_TOTAL.load(Ordering::Relaxed) + writer
}

/// Lines dropped since the last call (for the periodic summary line).
pub(crate) fn take_suppressed() -> u64 {
    SUPPRESSED_SINCE.swap(0, Ordering::Relaxed)
}

/// A token bucket per call site.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The filter of every log line: the level directives first, then the per-call-site
/// limit, so only lines that would be written are counted against it. Its maximum level
/// is the directives' own, so that call sites below it cost one comparison.
pub(crate) fn filter<S>(directives: EnvFilter, burst: u32, per_second: f64) -> impl Filter<S> {
    directives.and(RateLimit::new(burst, per_second))
}

/// The per-call-site limit, as a `tracing-subscriber` filter.
pub(crate) struct RateLimit {
    burst: f64,
    per_second: f64,
    buckets: Mutex<HashMap<Identifier, Bucket>>,
}

impl RateLimit {
    /// At most `burst` lines at once and `per_second` on average, per call site.
    pub(crate) fn new(burst: u32, per_second: f64) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            per_second: per_second.max(0.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `site` at `now`; false (and counted) when there is none.
    fn allow(&self, site: Identifier, now: Instant) -> bool {
        // The map holds one entry per call site: bounded by the program, not by input.
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let b = buckets.entry(site).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_second).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            SUPPRESSED_TOTAL.fetch_add(1, Ordering::Relaxed);
            SUPPRESSED_SINCE.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

impl<S> Filter<S> for RateLimit {
    fn enabled(&self, _meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        true
    }

    // No level is filtered out here. Without a hint, a filter combined with this one has
    // none either, the subscriber's maximum level becomes TRACE, and every `log::trace!`
    // of Pingora and fjall goes through the dispatcher to be dropped there (measured:
    // several percent of the CPU under load).
    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::TRACE)
    }

    fn event_enabled(&self, event: &Event<'_>, _cx: &Context<'_, S>) -> bool {
        // The summary line itself is never dropped (it is written once per interval), nor
        // the per-event lines, which have their own sampling (`--event-logs`).
        let target = event.metadata().target();
        if target == SUMMARY_TARGET || target == EVENTS_TARGET {
            return true;
        }
        self.allow(event.metadata().callsite(), Instant::now())
    }
}

/// The target of the lines written per accepted callback and per delivered delivery.
pub(crate) const EVENTS_TARGET: &str = "hookrelay::events";

/// The fraction of per-event lines written, as `f64` bits (1: all).
static EVENT_SAMPLE: AtomicU64 = AtomicU64::new(0x3FF0_0000_0000_0000);

/// Writes `ratio` (0 to 1) of the per-event lines: 1 writes all, 0 none.
pub(crate) fn set_event_sample(ratio: f64) {
    let ratio = if ratio.is_nan() {
        1.0
    } else {
        ratio.clamp(0.0, 1.0)
    };
    EVENT_SAMPLE.store(ratio.to_bits(), Ordering::Relaxed);
}

/// Whether this event's line is written.
pub(crate) fn sample_event() -> bool {
    let ratio = f64::from_bits(EVENT_SAMPLE.load(Ordering::Relaxed));
    ratio >= 1.0 || (ratio > 0.0 && fastrand::f64() < ratio)
}

/// The target of the summary line.
pub(crate) const SUMMARY_TARGET: &str = "hookrelay::logs";
/// How often dropped lines are summed up.
pub(crate) const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// Writes one line with the number of lines dropped since the last one, if any.
pub(crate) fn summarize() {
    let n = take_suppressed();
    if n > 0 {
        tracing::warn!(target: "hookrelay::logs", suppressed = n, interval = ?SUMMARY_EVERY, "log lines over the per-call-site limit were dropped");
    }
}

/// `error` and its causes, `: `-separated ("client error (Connect): tcp connect error:
/// Connection refused").
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any static call site will do as a key.
    fn site() -> Identifier {
        struct Site;
        static SITE: Site = Site;
        impl tracing::callsite::Callsite for Site {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unreachable!("never asked")
            }
        }
        Identifier(&SITE)
    }

    #[test]
    fn the_filter_keeps_the_directives_maximum_level() {
        let f = filter::<tracing_subscriber::Registry>(
            EnvFilter::new("info,pingora=warn,fjall=warn"),
            10,
            1.0,
        );
        assert_eq!(f.max_level_hint(), Some(LevelFilter::INFO));
        let f =
            filter::<tracing_subscriber::Registry>(EnvFilter::new("warn,hookrelay=debug"), 10, 1.0);
        assert_eq!(f.max_level_hint(), Some(LevelFilter::DEBUG));
    }

    #[test]
    fn a_call_site_gets_its_burst_then_its_rate() {
        let limit = RateLimit::new(3, 2.0);
        let t0 = Instant::now();
        let before = suppressed_total();
        let allowed = (0..10).filter(|_| limit.allow(site(), t0)).count();
        assert_eq!(allowed, 3, "the burst");
        assert!(suppressed_total() - before >= 7);
        // Half a second later: one more (2 a second).
        assert!(limit.allow(site(), t0 + Duration::from_millis(500)));
        assert!(!limit.allow(site(), t0 + Duration::from_millis(500)));
        // Long idle: back to the burst, not more.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!((0..10).filter(|_| limit.allow(site(), later)).count(), 3);
    }
}
