//! Values used across the file: durations.

use super::*;

impl Compiler {
    /// A duration of at most `max`: `10s`, `2m`, `24h`, or plain seconds.
    pub(super) fn duration(&mut self, path: &str, v: &Scalar, max: Duration) -> Option<Duration> {
        let text = v.0.trim();
        let parsed = if text.bytes().all(|b| b.is_ascii_digit()) && !text.is_empty() {
            text.parse::<u64>().ok().map(Duration::from_secs)
        } else {
            humantime::parse_duration(text).ok()
        };
        match parsed {
            Some(d) if d.is_zero() => {
                self.error(path, "must be greater than zero");
                None
            }
            Some(d) if d > max => {
                self.error(
                    path,
                    format!(
                        "{text} is too long: at most {}",
                        humantime::format_duration(max)
                    ),
                );
                None
            }
            Some(d) => Some(d),
            None => {
                self.error(
                    path,
                    format!("{text:?} is not a duration: like 500ms, 10s, 2m, 24h"),
                );
                None
            }
        }
    }
}

/// Longest `timeout` of one delivery attempt.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// Longest delay of one `retry.backoff` step.
pub const MAX_BACKOFF: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest `retry.max_age`.
pub const MAX_RETRY_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Longest `store.visibility_timeout`.
pub const MAX_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
