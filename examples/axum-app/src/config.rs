//! The app's config file (JSON): raw model, then compiled policy values.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::Path;

use hookrelay_core::signing::{SecretError, Signer, SigningSecret};
use hookrelay_tower::gcra::Gcra;
use hookrelay_tower::set_headers::{HeaderError, HeaderSet, Mode};
use http::Uri;
use serde::Deserialize;

/// The file as written. No `Debug`: it holds secrets in clear.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: SocketAddr,
    endpoint: String,
    inbound_rate_limit: RawRate,
    outbound_rate_limit: RawRate,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    response_headers: BTreeMap<String, String>,
    #[serde(default)]
    signing_secrets: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    per_second: NonZeroU32,
    burst: NonZeroU32,
}

impl From<RawRate> for Gcra {
    fn from(raw: RawRate) -> Self {
        Gcra::new(raw.per_second, raw.burst)
    }
}

/// A validated config: every policy value the layers need.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the app listens (not reloadable).
    pub listen: SocketAddr,
    /// Where `POST /events` relays to.
    pub endpoint: Uri,
    /// The limit on inbound requests, per peer (`429` above it).
    pub inbound: Gcra,
    /// The steady rate of outbound deliveries (delayed above it).
    pub outbound: Gcra,
    /// Headers set on outbound deliveries (override).
    pub headers: HeaderSet,
    /// Headers set on the app's responses (override).
    pub response_headers: HeaderSet,
    /// Signs outbound deliveries; the first secret is the current one.
    pub signer: Signer,
}

/// A config file that cannot be used; the path in the file is named, secrets are not.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading the config file failed")]
    Read(#[source] std::io::Error),
    /// Not JSON of the expected shape (unknown keys included).
    #[error("config is not valid: {0}")]
    Json(#[source] serde_json::Error),
    /// `endpoint` is not an absolute `http://` URL.
    #[error("endpoint: not an absolute http:// URL")]
    Endpoint,
    /// A header name or value is invalid.
    #[error("{field}: {source}")]
    Header {
        /// `headers` or `response_headers`.
        field: &'static str,
        /// What is wrong with it.
        #[source]
        source: HeaderError,
    },
    /// A signing secret is not `whsec_` + base64.
    #[error("signing_secrets[{index}]: {source}")]
    Secret {
        /// Index in the list.
        index: usize,
        /// What is wrong with it.
        #[source]
        source: SecretError,
    },
}

impl Config {
    /// Reads and validates the file at `path`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first problem.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let bytes = std::fs::read(path).map_err(ConfigError::Read)?;
        Self::parse(&bytes)
    }

    /// Validates the file's contents.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first problem.
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        let raw: RawConfig = serde_json::from_slice(bytes).map_err(ConfigError::Json)?;
        let endpoint: Uri = raw.endpoint.parse().map_err(|_| ConfigError::Endpoint)?;
        if endpoint.scheme_str() != Some("http") || endpoint.authority().is_none() {
            return Err(ConfigError::Endpoint);
        }
        let headers = HeaderSet::from_pairs(&raw.headers, Mode::Override).map_err(|source| {
            ConfigError::Header {
                field: "headers",
                source,
            }
        })?;
        let response_headers = HeaderSet::from_pairs(&raw.response_headers, Mode::Override)
            .map_err(|source| ConfigError::Header {
                field: "response_headers",
                source,
            })?;
        let secrets = raw
            .signing_secrets
            .iter()
            .enumerate()
            .map(|(index, s)| {
                s.parse::<SigningSecret>()
                    .map_err(|source| ConfigError::Secret { index, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            listen: raw.listen,
            endpoint,
            inbound: raw.inbound_rate_limit.into(),
            outbound: raw.outbound_rate_limit.into(),
            headers,
            response_headers,
            signer: Signer::new(secrets),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
        "listen": "127.0.0.1:0",
        "endpoint": "http://127.0.0.1:9/hook",
        "inbound_rate_limit": {"per_second": 5, "burst": 10},
        "outbound_rate_limit": {"per_second": 50, "burst": 5},
        "headers": {"authorization": "Bearer s3cr3t"},
        "signing_secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
    }"#;

    #[test]
    fn parses_and_redacts() {
        let config = Config::parse(GOOD.as_bytes()).expect("valid config");
        assert_eq!(config.inbound.per_second().get(), 5);
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("s3cr3t") && !debug.contains("MfKQ9r8"),
            "{debug}"
        );
    }

    #[test]
    fn refuses_bad_files() {
        let bad = |from: &str, to: &str| Config::parse(GOOD.replace(from, to).as_bytes());
        assert!(matches!(
            bad("\"listen\"", "\"lisen\""),
            Err(ConfigError::Json(_))
        ));
        assert!(matches!(
            bad("\"per_second\": 5", "\"per_second\": 0"),
            Err(ConfigError::Json(_))
        ));
        assert!(matches!(
            bad("http://127", "ftp://127"),
            Err(ConfigError::Endpoint)
        ));
        assert!(matches!(
            bad("Bearer s3cr3t", "a\\r\\nx-injected: 1"),
            Err(ConfigError::Header {
                field: "headers",
                ..
            })
        ));
        assert!(matches!(
            bad("whsec_MfKQ", "whsec_!!"),
            Err(ConfigError::Secret { index: 0, .. })
        ));
    }
}
