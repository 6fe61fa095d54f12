//! Why a callback was refused: the one place that chooses its HTTP status and metric label.

use std::fmt;

/// A refused callback. The provider gets the status and [`Refusal`]'s `Display` as a
/// one-line body; `hookrelay_callbacks_rejected_total{reason}` counts it by [`Refusal::metric`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The body is larger than the route's `max_body` (declared or as read).
    TooLarge { declared: Option<u64>, limit: usize },
    /// The body could not be read from the connection.
    Unreadable(String),
    /// The body did not arrive within `limits.body_timeout`.
    BodyTimeout(std::time::Duration),
    /// Reading the body would pass `limits.unverified_bytes` (the provider retries).
    Busy { limit: usize },
    /// The signature check failed.
    BadSignature(String),
    /// A one-time token the signature covers was already accepted.
    ReplayedToken,
    /// The body cannot be normalized.
    BadBody(String),
    /// The certificate the signature needs could not be fetched (the provider retries).
    CertificateUnavailable { url: String, reason: String },
    /// A subscription could not be confirmed.
    ConfirmationFailed(String),
    /// The store could not make the callback durable (the provider retries).
    StoreUnavailable(String),
    /// The store's byte budget (`store.max_bytes`) is used up until deliveries drain (the
    /// provider retries).
    StoreFull(String),
}

impl Refusal {
    /// The HTTP status answered.
    pub(crate) fn status(&self) -> u16 {
        match self {
            Refusal::TooLarge { .. } => 413,
            Refusal::BodyTimeout(_) => 408,
            Refusal::Busy { .. } => 503,
            Refusal::Unreadable(_) | Refusal::BadBody(_) => 400,
            Refusal::BadSignature(_) | Refusal::ReplayedToken => 401,
            Refusal::ConfirmationFailed(_) => 502,
            Refusal::CertificateUnavailable { .. }
            | Refusal::StoreUnavailable(_)
            | Refusal::StoreFull(_) => 503,
        }
    }

    /// The `reason` label of the rejection counter.
    pub(crate) fn metric(&self) -> &'static str {
        match self {
            Refusal::TooLarge { .. } => "too_large",
            Refusal::Unreadable(_) => "unreadable",
            Refusal::BodyTimeout(_) => "body_timeout",
            Refusal::Busy { .. } => "unverified_budget",
            Refusal::BadSignature(_) => "bad_signature",
            Refusal::ReplayedToken => "replayed_token",
            Refusal::BadBody(_) => "bad_body",
            Refusal::CertificateUnavailable { .. } => "cert_unavailable",
            Refusal::ConfirmationFailed(_) => "confirm_failed",
            Refusal::StoreUnavailable(_) => "store_unavailable",
            Refusal::StoreFull(_) => "store_full",
        }
    }
}

/// Longest reason a refusal gives, in bytes: it goes into a log line and the answer, and
/// may quote what the sender sent (a JSON key, a header, a URL).
pub(crate) const MAX_REASON: usize = 300;

impl fmt::Display for Refusal {
    /// The reason on one line, at most [`MAX_REASON`] bytes (cut with `…`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut full = String::new();
        self.write_reason(&mut full)?;
        f.write_str(&hookrelay_core::provider::one_line(&full, MAX_REASON))
    }
}

impl Refusal {
    /// The whole reason, as long as its parts are.
    fn write_reason(&self, f: &mut impl fmt::Write) -> fmt::Result {
        match self {
            Refusal::TooLarge {
                declared: Some(n),
                limit,
            } => write!(f, "body of {n} bytes exceeds the route's limit of {limit}"),
            Refusal::TooLarge {
                declared: None,
                limit,
            } => write!(f, "body exceeds the route's limit of {limit} bytes"),
            Refusal::Unreadable(e) => write!(f, "cannot read body: {e}"),
            Refusal::BodyTimeout(t) => write!(f, "the body did not arrive within {t:?}"),
            Refusal::Busy { limit } => write!(
                f,
                "busy: {limit} bytes of callbacks are being checked already; retry later"
            ),
            Refusal::BadSignature(e) | Refusal::BadBody(e) => f.write_str(e),
            Refusal::ReplayedToken => f.write_str("signature token already used"),
            Refusal::CertificateUnavailable { url, reason } => {
                write!(f, "signing certificate {url}: {reason}")
            }
            Refusal::ConfirmationFailed(e) => write!(f, "subscription not confirmed: {e}"),
            Refusal::StoreUnavailable(e) => write!(f, "store unavailable: {e}"),
            Refusal::StoreFull(e) => write!(f, "{e}; retry later"),
        }
    }
}

impl Refusal {
    /// A store write that failed with `e`, logged (once per cause as the log limits
    /// allow): a full budget as such, a store recovering from a failed write or short of
    /// free space not again (it logged that once), anything else as an error.
    pub(crate) fn of_store(e: &hookrelay_store::StoreError) -> Self {
        use hookrelay_store::StoreError;
        match e {
            StoreError::Full { used, max } => {
                tracing::warn!(
                    used,
                    max,
                    "store full: callbacks answered 503 until deliveries drain"
                );
                Refusal::StoreFull(e.to_string())
            }
            // The store logged when it started refusing (and logs when it stops).
            StoreError::DiskLow { .. } => Refusal::StoreFull(e.to_string()),
            StoreError::Recovering { .. } => Refusal::StoreUnavailable(e.to_string()),
            _ => {
                tracing::error!(error = %e, "store unavailable");
                Refusal::StoreUnavailable(e.to_string())
            }
        }
    }

    /// The body sent: `provider: reason`, on one line.
    pub(crate) fn body(&self, provider: &str) -> String {
        let mut line = format!("{provider}: {self}").replace(['\r', '\n'], " ");
        line.push('\n');
        line
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_REASON, Refusal};

    #[test]
    fn a_reason_quoting_the_sender_is_one_short_line() {
        let key = "k".repeat(1 << 20);
        let refusal = Refusal::BadBody(format!("unexpected key {key:?}\nin the body"));
        let reason = refusal.to_string();
        assert!(reason.len() <= MAX_REASON, "{}", reason.len());
        assert!(reason.starts_with("unexpected key \"kkk"), "{reason}");
        assert!(reason.ends_with('…'), "{reason}");
        let body = refusal.body("vonage");
        assert!(
            body.len() <= "vonage: ".len() + MAX_REASON + 1,
            "{}",
            body.len()
        );
        assert_eq!(body.matches('\n').count(), 1);
        // A short reason is whole, its line breaks as spaces.
        assert_eq!(
            Refusal::BadBody("not JSON:\nat line 1".into()).to_string(),
            "not JSON: at line 1"
        );
    }

    #[test]
    fn each_refusal_has_its_status_and_label() {
        let cases = [
            (
                Refusal::TooLarge {
                    declared: Some(9),
                    limit: 4,
                },
                413,
                "too_large",
            ),
            (Refusal::Unreadable("reset".into()), 400, "unreadable"),
            (
                Refusal::BodyTimeout(std::time::Duration::from_secs(1)),
                408,
                "body_timeout",
            ),
            (Refusal::Busy { limit: 1024 }, 503, "unverified_budget"),
            (
                Refusal::BadSignature("mismatch".into()),
                401,
                "bad_signature",
            ),
            (Refusal::ReplayedToken, 401, "replayed_token"),
            (Refusal::BadBody("not JSON".into()), 400, "bad_body"),
            (
                Refusal::CertificateUnavailable {
                    url: "u".into(),
                    reason: "HTTP 503".into(),
                },
                503,
                "cert_unavailable",
            ),
            (
                Refusal::ConfirmationFailed("HTTP 403".into()),
                502,
                "confirm_failed",
            ),
            (
                Refusal::StoreUnavailable("disk full".into()),
                503,
                "store_unavailable",
            ),
        ];
        for (refusal, status, label) in cases {
            assert_eq!(
                (refusal.status(), refusal.metric()),
                (status, label),
                "{refusal}"
            );
            let body = refusal.body("p");
            assert!(body.starts_with("p: ") && body.ends_with('\n'));
            assert_eq!(body.lines().count(), 1);
        }
        assert_eq!(
            Refusal::BadBody("two\nlines".into()).body("p"),
            "p: two lines\n"
        );
    }
}
