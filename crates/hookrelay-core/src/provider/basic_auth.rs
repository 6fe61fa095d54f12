//! HTTP Basic credentials, for the providers that sign nothing and call a URL with
//! `user:password` in it (Postmark, Infobip, Sinch's SMS API, SparkPost, Mailjet, Brevo):
//! the `basic_auth` setting, checked in constant time against the `Authorization` header.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use crate::provider::VerifySettings;
use crate::secret::ct_eq;
use crate::{CallbackRequest, Secret, VerifyConfigError, VerifyError};

/// The `user:password` a provider must send as `Authorization: Basic …`.
#[derive(Clone)]
pub(crate) struct BasicAuth(Secret);

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BasicAuth").field(&self.0).finish()
    }
}

impl BasicAuth {
    /// The `basic_auth` setting of `provider`, if set: `user:password`, where the user
    /// name has no `:` (RFC 7617) and neither part is empty.
    pub(crate) fn from_settings(
        provider: &'static str,
        settings: &VerifySettings,
    ) -> Result<Option<Self>, VerifyConfigError> {
        let Some(secret) = settings.get("basic_auth") else {
            return Ok(None);
        };
        match secret.expose().split_once(':') {
            Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                Ok(Some(Self(secret.clone())))
            }
            _ => Err(VerifyConfigError::Invalid {
                provider,
                key: "basic_auth",
                reason: "expected `user:password`".into(),
            }),
        }
    }

    /// The `basic_auth` setting of a provider that signs nothing and offers no other
    /// check: required, so a route without it is a configuration error.
    #[cfg(any(feature = "infobip", feature = "mailjet"))]
    pub(crate) fn required(
        provider: &'static str,
        settings: &VerifySettings,
    ) -> Result<Self, VerifyConfigError> {
        Self::from_settings(provider, settings)?.ok_or(VerifyConfigError::Missing {
            provider,
            key: "basic_auth",
        })
    }

    /// Checks the request's `Authorization: Basic …` header against the credentials.
    pub(crate) fn check(&self, req: &CallbackRequest) -> Result<(), VerifyError> {
        let value = req
            .headers
            .get(http::header::AUTHORIZATION)
            .ok_or(VerifyError::Missing("Authorization"))?;
        let given = basic_credentials(value.as_bytes())?;
        if same_secret(&given, self.0.expose().as_bytes()) {
            Ok(())
        } else {
            Err(VerifyError::BadCredentials)
        }
    }
}

/// The decoded `user:password` of an `Authorization: Basic …` header value.
fn basic_credentials(value: &[u8]) -> Result<Vec<u8>, VerifyError> {
    let value = value.trim_ascii();
    let (scheme, rest) = value
        .iter()
        .position(|b| *b == b' ')
        .map(|i| value.split_at(i))
        .ok_or_else(|| VerifyError::Malformed("Authorization is not Basic".into()))?;
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return Err(VerifyError::Malformed("Authorization is not Basic".into()));
    }
    STANDARD
        .decode(rest.trim_ascii())
        .map_err(|_| VerifyError::Malformed("Basic credentials are not base64".into()))
}

/// Constant-time equality that also hides the lengths (compares SHA-256 digests).
pub(crate) fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    ct_eq(&Sha256::digest(given), &Sha256::digest(expected))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue, Method, Uri};

    fn req(auth: Option<&str>) -> CallbackRequest {
        let mut headers = HeaderMap::new();
        if let Some(a) = auth {
            headers.insert(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(a).expect("header"),
            );
        }
        CallbackRequest {
            method: Method::POST,
            uri: Uri::from_static("/cb"),
            headers,
            body: Bytes::new(),
        }
    }

    fn auth(value: &str) -> BasicAuth {
        BasicAuth::from_settings("test", &VerifySettings::new().with("basic_auth", value))
            .expect("valid")
            .expect("set")
    }

    #[test]
    fn credentials_pass_and_others_fail() {
        let a = auth("hook:s3cr:et");
        let good = format!("Basic {}", STANDARD.encode("hook:s3cr:et"));
        assert!(a.check(&req(Some(&good))).is_ok());
        assert!(
            a.check(&req(Some(&good.to_lowercase().replace("basic", "BASIC"))))
                .is_err()
        );
        let bad = format!("Basic {}", STANDARD.encode("hook:s3cr:eT"));
        assert!(matches!(
            a.check(&req(Some(&bad))),
            Err(VerifyError::BadCredentials)
        ));
        assert!(matches!(a.check(&req(None)), Err(VerifyError::Missing(_))));
        assert!(matches!(
            a.check(&req(Some("Bearer abc"))),
            Err(VerifyError::Malformed(_))
        ));
        assert!(matches!(
            a.check(&req(Some("Basic !!!"))),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn settings_must_be_user_and_password() {
        let s = |v: &str| {
            BasicAuth::from_settings("test", &VerifySettings::new().with("basic_auth", v))
        };
        assert!(s("no-colon").is_err());
        assert!(s(":pass").is_err());
        assert!(s("user:").is_err());
        assert!(matches!(s(""), Ok(None)));
        assert!(matches!(
            BasicAuth::from_settings("test", &VerifySettings::new()),
            Ok(None)
        ));
    }
}
