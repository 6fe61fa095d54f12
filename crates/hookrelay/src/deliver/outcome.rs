//! What an attempt came to, and when the next one is due: small pure functions.
//!
//! 2xx is delivered; `410 Gone` pauses the endpoint; 408, 429 and 5xx are retried
//! (`Retry-After` honoured up to [`RETRY_AFTER_MAX`]); other statuses are dead letters at
//! once. Errors are classified by type: the throttle's own refusal defers the attempt
//! without counting it, the SSRF guard's refusal is a dead letter, everything else
//! (timeouts, connection errors) is retried. The arithmetic saturates: no configured
//! duration can overflow it.

use std::time::{Duration, SystemTime};

use hookrelay_config::Retry;
use hookrelay_tower::throttle::ThrottleError;
use http::{HeaderMap, StatusCode};

use super::stack::TimedOut;
use crate::net::{chain, ssrf};

/// Longest honoured `Retry-After`.
pub(crate) const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);
/// How long an attempt the throttle would not start is put back for (not counted).
pub(crate) const DEFER: Duration = Duration::from_secs(1);

/// What an attempt came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Delivered,
    Retry {
        after: Option<Duration>,
        error: String,
        /// The endpoint's answer, when it answered (kept if retries run out).
        status: Option<u16>,
        response: Option<String>,
    },
    Dead {
        reason: String,
        status: Option<u16>,
        response: Option<String>,
    },
    Gone,
    /// Not attempted (the throttle's slot is too far away, or its Redis is unreachable):
    /// back in the queue for `after`, without counting an attempt.
    Defer {
        after: Duration,
        reason: String,
    },
}

/// The outcome of an answered attempt.
pub(crate) fn classify(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: Option<String>,
) -> Outcome {
    if status.is_success() {
        Outcome::Delivered
    } else if status == StatusCode::GONE {
        Outcome::Gone
    } else if status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
    {
        Outcome::Retry {
            after: retry_after,
            error: format!("HTTP {}", status.as_u16()),
            status: Some(status.as_u16()),
            response: body,
        }
    } else {
        Outcome::Dead {
            reason: format!("HTTP {}", status.as_u16()),
            status: Some(status.as_u16()),
            response: body,
        }
    }
}

/// The outcome of an attempt that got no answer, by the error's type.
pub(crate) fn classify_error(error: &(dyn std::error::Error + 'static)) -> Outcome {
    if let Some(t) = error.downcast_ref::<ThrottleError>() {
        return Outcome::Defer {
            after: DEFER,
            reason: t.to_string(),
        };
    }
    if let Some(refused) = ssrf::refusal_in(error) {
        return Outcome::Dead {
            reason: format!("refused: {refused}"),
            status: None,
            response: None,
        };
    }
    let error = match error.downcast_ref::<TimedOut>() {
        Some(t) => t.to_string(),
        None => chain(error),
    };
    Outcome::Retry {
        after: None,
        error,
        status: None,
        response: None,
    }
}

/// The `Retry-After` of a response (seconds or an HTTP date, relative to `now`), at most
/// [`RETRY_AFTER_MAX`].
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let v = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(RETRY_AFTER_MAX));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    let d = at.duration_since(now).unwrap_or(Duration::ZERO);
    Some(d.min(RETRY_AFTER_MAX))
}

/// The delay before attempt `attempt` (2 = the first retry): the schedule's step scaled by
/// `jitter` (0.8 to 1.2 in use), saturating at [`Duration::MAX`].
pub(crate) fn backoff(retry: &Retry, attempt: u32, jitter: f64) -> Duration {
    let base = retry.delay_before(attempt);
    Duration::try_from_secs_f64(base.as_secs_f64() * jitter).unwrap_or(Duration::MAX)
}

/// `now_ms` plus `delay`, saturating.
pub(crate) fn due_at(now_ms: i64, delay: Duration) -> i64 {
    now_ms.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX))
}

/// True when a delivery created at `created_at_ms` that has had `attempts` attempts may
/// not be tried again.
pub(crate) fn exhausted(retry: &Retry, attempts: u32, created_at_ms: i64, now_ms: i64) -> bool {
    let age =
        Duration::from_millis(u64::try_from(now_ms.saturating_sub(created_at_ms)).unwrap_or(0));
    attempts >= retry.max_attempts.get() || age >= retry.max_age
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn retry(backoff: &[u64], max_attempts: u32) -> Retry {
        let mut r = Retry::default();
        r.backoff = backoff.iter().copied().map(Duration::from_secs).collect();
        r.max_attempts = NonZeroU32::new(max_attempts).expect("non-zero");
        r
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify(StatusCode::OK, None, None), Outcome::Delivered);
        assert_eq!(
            classify(StatusCode::NO_CONTENT, None, None),
            Outcome::Delivered
        );
        assert_eq!(classify(StatusCode::GONE, None, None), Outcome::Gone);
        for s in [408, 429, 500, 502, 503, 504] {
            let status = StatusCode::from_u16(s).expect("status");
            assert!(
                matches!(classify(status, None, None), Outcome::Retry { status: Some(x), .. } if x == s),
                "{s}"
            );
        }
        for s in [301, 400, 401, 403, 404, 413, 422] {
            let status = StatusCode::from_u16(s).expect("status");
            assert!(
                matches!(classify(status, None, Some("no".into())), Outcome::Dead { status: Some(x), response: Some(_), .. } if x == s),
                "{s}"
            );
        }
    }

    #[test]
    fn a_retry_keeps_retry_after_and_the_answer() {
        let out = classify(
            StatusCode::TOO_MANY_REQUESTS,
            Some(Duration::from_secs(7)),
            Some("slow down".into()),
        );
        assert_eq!(
            out,
            Outcome::Retry {
                after: Some(Duration::from_secs(7)),
                error: "HTTP 429".into(),
                status: Some(429),
                response: Some("slow down".into()),
            }
        );
    }

    #[test]
    fn retry_after_seconds_dates_and_bounds() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, now), None);
        h.insert(http::header::RETRY_AFTER, "120".parse().expect("value"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(120)));
        h.insert(
            http::header::RETRY_AFTER,
            "99999999".parse().expect("value"),
        );
        assert_eq!(retry_after(&h, now), Some(RETRY_AFTER_MAX));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        h.insert(http::header::RETRY_AFTER, later.parse().expect("value"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(90)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        h.insert(http::header::RETRY_AFTER, past.parse().expect("value"));
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
        h.insert(http::header::RETRY_AFTER, "soon".parse().expect("value"));
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn backoff_follows_the_schedule_with_jitter_and_repeats_the_last_step() {
        let r = retry(&[1, 5, 30], 10);
        assert_eq!(backoff(&r, 2, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(&r, 3, 1.0), Duration::from_secs(5));
        assert_eq!(backoff(&r, 4, 0.8), Duration::from_secs(24));
        assert_eq!(backoff(&r, 40, 1.2), Duration::from_secs(36));
    }

    #[test]
    fn backoff_and_due_times_saturate_instead_of_panicking() {
        // What `backoff: [500000000000y]` used to reach before durations were bounded.
        let mut r = Retry::default();
        r.backoff = vec![Duration::from_secs(500_000_000_000 * 365 * 86_400)];
        let d = backoff(&r, 2, 1.2);
        assert!(d >= Duration::from_secs(u64::MAX / 2), "{d:?}");
        assert_eq!(due_at(1_700_000_000_000, d), i64::MAX);
        assert_eq!(due_at(i64::MAX - 1, Duration::from_secs(1)), i64::MAX);
        assert_eq!(due_at(1_000, Duration::from_millis(500)), 1_500);
    }

    #[test]
    fn retries_run_out_by_count_or_by_age() {
        let mut r = retry(&[1], 3);
        r.max_age = Duration::from_secs(60);
        assert!(!exhausted(&r, 2, 0, 1_000));
        assert!(exhausted(&r, 3, 0, 1_000));
        assert!(exhausted(&r, 1, 0, 60_000));
        // A clock that went backwards is an age of zero, not a panic.
        assert!(!exhausted(&r, 1, 10_000, 0));
    }

    #[test]
    fn errors_are_classified_by_type_not_by_message() {
        let throttled = ThrottleError::WaitTooLong {
            wait: Duration::from_secs(60),
            max_wait: Duration::from_secs(30),
        };
        assert!(
            matches!(classify_error(&throttled), Outcome::Defer { after, .. } if after == DEFER)
        );

        let refused = std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            ssrf::Refused {
                host: "metadata.internal".into(),
            },
        );
        assert!(
            matches!(classify_error(&refused), Outcome::Dead { ref reason, .. } if reason.contains("metadata.internal"))
        );

        // The same words from anything else are an ordinary failure, retried.
        let lookalike = std::io::Error::other("resolves only to link-local or metadata addresses");
        assert!(matches!(classify_error(&lookalike), Outcome::Retry { .. }));

        let timed_out = TimedOut(Duration::from_secs(10));
        assert_eq!(
            classify_error(&timed_out),
            Outcome::Retry {
                after: None,
                error: "timed out after 10s".into(),
                status: None,
                response: None
            }
        );
    }
}
