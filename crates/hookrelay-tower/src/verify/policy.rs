use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use hookrelay_core::{
    CallbackRequest, Provider, Verifier, VerifyConfigError, VerifyError, VerifyOptions,
    VerifySettings,
};
use http::StatusCode;

use crate::BoxError;

/// The body limit of a [`CallbackPolicy`] unless set: 1 MiB.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// How one provider's callbacks are checked: the provider, its configured
/// [`Verifier`], the largest body read and the tolerance of signed timestamps.
///
/// Built from the same provider id and `verify:` settings as a hookrelay sidecar route.
/// The check itself, [`CallbackPolicy::check`], is a plain function of the request and the
/// time; [`VerifyLayer`](super::VerifyLayer) is its Tower adapter.
///
/// ```
/// # #[cfg(feature = "twilio")] {
/// use hookrelay_core::VerifySettings;
/// use hookrelay_tower::verify::{CallbackPolicy, PolicyError};
///
/// let settings = VerifySettings::new().with("auth_token", "12345");
/// let policy = CallbackPolicy::builtin("twilio", &settings).unwrap().max_body(64 * 1024);
/// assert_eq!(policy.provider().id(), "twilio");
///
/// // Verification fails closed: no secret is an error, not a skipped check.
/// let err = CallbackPolicy::builtin("twilio", &VerifySettings::new()).unwrap_err();
/// assert!(matches!(err, PolicyError::Settings { .. }));
/// assert!(matches!(
///     CallbackPolicy::builtin("nope", &settings),
///     Err(PolicyError::UnknownProvider { .. })
/// ));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CallbackPolicy {
    provider: Provider,
    verifier: Verifier,
    pub(super) max_body: usize,
    tolerance: Option<Duration>,
}

impl CallbackPolicy {
    /// The policy of `provider` with its `verify:` settings (the keys its module documents
    /// in `hookrelay_core::provider`), a body limit of [`DEFAULT_MAX_BODY`] and the
    /// provider's default timestamp tolerance (5 minutes).
    ///
    /// # Errors
    ///
    /// [`PolicyError::Settings`] when a required secret is missing or empty, a value is
    /// invalid, or a key is unknown to the provider.
    pub fn new(provider: Provider, settings: &VerifySettings) -> Result<Self, PolicyError> {
        let verifier =
            Verifier::new(&provider, settings).map_err(|source| PolicyError::Settings {
                provider: provider.id().to_owned(),
                source,
            })?;
        Ok(Self {
            provider,
            verifier,
            max_body: DEFAULT_MAX_BODY,
            tolerance: None,
        })
    }

    /// The policy of the built-in provider `id` (`twilio`, `meta_whatsapp`, …), as
    /// [`CallbackPolicy::new`].
    ///
    /// # Errors
    ///
    /// [`PolicyError::UnknownProvider`] when `id` is not a built-in provider (or its
    /// feature is off); [`PolicyError::Settings`] as for [`CallbackPolicy::new`].
    pub fn builtin(id: &str, settings: &VerifySettings) -> Result<Self, PolicyError> {
        let provider = Provider::builtin(id)
            .ok_or_else(|| PolicyError::UnknownProvider { id: id.to_owned() })?;
        Self::new(provider, settings)
    }

    /// Refuses bodies larger than `bytes` with `413` (default [`DEFAULT_MAX_BODY`]).
    #[must_use]
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Accepts signed timestamps up to `tolerance` away from now (default: the provider's,
    /// 5 minutes). Providers that sign no timestamp (Meta, Twilio) ignore it.
    #[must_use]
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = Some(tolerance);
        self
    }

    /// The provider.
    #[must_use]
    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    /// The configured signature check.
    #[must_use]
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Checks that `req` is a genuine callback of the provider, at time `now`.
    ///
    /// # Errors
    ///
    /// [`Refusal::TooLarge`] over the body limit, [`Refusal::Signature`] when the check
    /// fails, [`Refusal::NeedsCertificate`] when the verifier needs a certificate fetched
    /// over the network (Amazon SNS with `fetch_cert`): this check does no I/O.
    pub fn check(&self, req: &CallbackRequest, now: SystemTime) -> Result<(), Refusal> {
        if req.body.len() > self.max_body {
            return Err(Refusal::TooLarge {
                size: u64::try_from(req.body.len()).ok(),
                limit: self.max_body,
            });
        }
        match self.verifier.certificate_url(req) {
            Ok(None) => {}
            Ok(Some(url)) => return Err(Refusal::NeedsCertificate { url }),
            Err(source) => return Err(Refusal::Signature(source)),
        }
        let opts = VerifyOptions {
            now_secs: Some(unix_secs(now)),
            tolerance_secs: self
                .tolerance
                .map(|t| i64::try_from(t.as_secs()).unwrap_or(i64::MAX)),
        };
        self.verifier.verify(req, &opts).map_err(Refusal::Signature)
    }
}

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// A [`CallbackPolicy`] that cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Not a built-in provider id, or the provider's feature is off.
    #[error("unknown provider {id:?}: not a built-in provider, or its feature is off")]
    UnknownProvider {
        /// The id as given.
        id: String,
    },
    /// The `verify:` settings cannot be used for the provider.
    #[error("{provider}: the verify settings cannot be used")]
    Settings {
        /// Provider id.
        provider: String,
        /// What is wrong with them.
        #[source]
        source: VerifyConfigError,
    },
}

/// Why a callback was refused before reaching the inner service. The layer answers
/// [`Refusal::status`] with a one-line `text/plain` body: `provider: reason`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The body is larger than the policy's limit: `413`.
    #[error("body{} exceeds the limit of {limit} bytes", .size.map(|n| format!(" of {n} bytes")).unwrap_or_default())]
    TooLarge {
        /// The body's size, when known (declared by `Content-Length`, or read whole).
        size: Option<u64>,
        /// The limit.
        limit: usize,
    },
    /// The body could not be read: `400`.
    #[error("cannot read the body")]
    Unreadable(#[source] BoxError),
    /// The signature check failed: `401`.
    #[error("signature check failed")]
    Signature(#[source] VerifyError),
    /// The verifier needs the certificate at `url`, and the layer does no I/O: `500`.
    /// Configure the certificate itself (`cert_pem`) instead of `fetch_cert`.
    #[error(
        "the signature needs the certificate at {url}, which this layer does not fetch \
         (configure cert_pem instead of fetch_cert)"
    )]
    NeedsCertificate {
        /// The certificate's URL, checked to be an allowed host.
        url: String,
    },
}

impl Refusal {
    /// The HTTP status answered.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Unreadable(_) => StatusCode::BAD_REQUEST,
            Refusal::Signature(_) => StatusCode::UNAUTHORIZED,
            Refusal::NeedsCertificate { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// `prefix: error: source: …` on one line, newline-terminated: the body of a refusal.
pub(crate) fn one_line(prefix: &str, err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = format!("{prefix}: {err}");
    let mut source = err.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    let mut line = line.replace(['\r', '\n'], " ");
    line.push('\n');
    line
}

/// The live [`CallbackPolicy`] of a [`VerifyLayer`](super::VerifyLayer), shared by its
/// services; [`set`](Self::set) applies to the next request (rotate a secret by setting a
/// policy built with the new one).
#[derive(Debug, Clone)]
pub struct VerifyHandle {
    current: Arc<ArcSwap<CallbackPolicy>>,
}

impl VerifyHandle {
    /// A handle holding `policy`.
    #[must_use]
    pub fn new(policy: CallbackPolicy) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(policy)),
        }
    }

    /// Puts `policy` in force for the next request.
    pub fn set(&self, policy: CallbackPolicy) {
        self.current.store(Arc::new(policy));
    }

    /// The policy in force.
    #[must_use]
    pub fn get(&self) -> Arc<CallbackPolicy> {
        self.current.load_full()
    }
}

impl From<CallbackPolicy> for VerifyHandle {
    fn from(policy: CallbackPolicy) -> Self {
        Self::new(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_joins_the_source_chain_and_strips_line_breaks() {
        let refusal = Refusal::Signature(VerifyError::Malformed("bad\r\nbase64".into()));
        assert_eq!(
            one_line("twilio", &refusal),
            "twilio: signature check failed: malformed signature: bad  base64\n"
        );
        assert_eq!(refusal.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn too_large_says_the_size_when_known() {
        let declared = Refusal::TooLarge {
            size: Some(10),
            limit: 4,
        };
        assert_eq!(
            declared.to_string(),
            "body of 10 bytes exceeds the limit of 4 bytes"
        );
        let streamed = Refusal::TooLarge {
            size: None,
            limit: 4,
        };
        assert_eq!(streamed.to_string(), "body exceeds the limit of 4 bytes");
        assert_eq!(streamed.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[cfg(feature = "ses")]
    #[test]
    fn a_certificate_to_fetch_is_refused_as_a_server_error_naming_it() {
        let settings = VerifySettings::new()
            .with("fetch_cert", "true")
            .with("topic_arn", "arn:aws:sns:us-east-1:1:t");
        let policy = CallbackPolicy::builtin("ses", &settings).expect("ses policy");
        let url = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000.pem";
        let body = format!(
            r#"{{"Type":"Notification","MessageId":"m1","TopicArn":"arn:aws:sns:us-east-1:1:t","Message":"{{}}","Timestamp":"2024-01-01T00:00:00.000Z","SignatureVersion":"1","Signature":"AAAA","SigningCertURL":"{url}"}}"#
        );
        let req = CallbackRequest::post(body).with_content_type("text/plain; charset=UTF-8");
        let refusal = policy.check(&req, SystemTime::now()).expect_err("no I/O");
        assert!(
            matches!(&refusal, Refusal::NeedsCertificate { url: u } if u == url),
            "{refusal:?}"
        );
        assert_eq!(refusal.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(one_line("ses", &refusal).contains("cert_pem"));
    }

    #[test]
    fn times_before_the_epoch_are_negative() {
        assert_eq!(unix_secs(UNIX_EPOCH + Duration::from_secs(5)), 5);
        assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_secs(5)), -5);
    }
}
