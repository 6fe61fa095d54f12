//! Standard Webhooks signing and verification.
//!
//! Every delivery carries `webhook-id` (stable across retries), `webhook-timestamp` (Unix
//! seconds of the attempt) and `webhook-signature`: a space-separated list of
//! `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, one entry per active secret
//! so a consumer can rotate keys without downtime. Secrets are `whsec_` + base64 of the key.
//!
//! ```
//! use hookrelay_core::signing::{Signer, SigningSecret, verify};
//!
//! let secret: SigningSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
//! let signer = Signer::new(vec![secret.clone()]);
//! let sig = signer.signature("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
//! assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
//! verify(&[secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", &sig,
//!        br#"{"test": 2432232314}"#, Some(1614265330)).unwrap();
//! ```

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::mac::{self, Hash, Tag};

/// Header carrying the message id.
pub const WEBHOOK_ID: &str = "webhook-id";
/// Header carrying the attempt's Unix timestamp in seconds.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// Header carrying the signatures.
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";
/// Accepted timestamp skew when verifying, both directions.
pub const TOLERANCE_SECS: i64 = 5 * 60;

/// A symmetric signing secret (`whsec_…`). `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret {
    key: Vec<u8>,
}

impl SigningSecret {
    /// A secret from raw key bytes; empty keys are refused.
    pub fn from_bytes(key: impl Into<Vec<u8>>) -> Result<Self, SecretError> {
        let key = key.into();
        if key.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Self { key })
    }

    /// The key as `whsec_` + base64.
    #[must_use]
    pub fn to_whsec(&self) -> String {
        format!("whsec_{}", STANDARD.encode(&self.key))
    }

    /// HMAC-SHA256 of `{id}.{timestamp}.{body}`.
    fn sign_raw(&self, id: &str, timestamp: &str, body: &[u8]) -> Tag {
        mac::hmac(
            Hash::Sha256,
            &self.key,
            &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
        )
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(\"whsec_***\")")
    }
}

impl FromStr for SigningSecret {
    type Err = SecretError;

    /// Parses `whsec_<base64>` (the prefix is optional).
    fn from_str(s: &str) -> Result<Self, SecretError> {
        let b64 = s.trim().strip_prefix("whsec_").unwrap_or(s.trim());
        if b64.is_empty() {
            return Err(SecretError::Empty);
        }
        let key = STANDARD.decode(b64).map_err(|_| SecretError::NotBase64)?;
        Self::from_bytes(key)
    }
}

/// A signing secret that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The secret is empty (`""` or `"whsec_"`).
    #[error("signing secret is empty")]
    Empty,
    /// The part after `whsec_` is not base64.
    #[error("signing secret is not whsec_ followed by base64")]
    NotBase64,
}

/// Signs bodies with one or more secrets (several during a key rotation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    secrets: Vec<SigningSecret>,
}

impl Signer {
    /// A signer with the given secrets; the first is the current one.
    #[must_use]
    pub fn new(secrets: Vec<SigningSecret>) -> Self {
        Self { secrets }
    }

    /// The secrets.
    #[must_use]
    pub fn secrets(&self) -> &[SigningSecret] {
        &self.secrets
    }

    /// The `webhook-signature` value: one `v1,<base64>` per secret, space-separated.
    #[must_use]
    pub fn signature(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let ts = timestamp.to_string();
        let mut out = String::new();
        for s in &self.secrets {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str("v1,");
            out.push_str(&s.sign_raw(id, &ts, body).to_base64());
        }
        out
    }
}

/// Why a Standard Webhooks signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// No secret to check against.
    #[error("no signing secret configured")]
    NoSecret,
    /// The id contains a `.` or is empty.
    #[error("invalid webhook-id")]
    InvalidId,
    /// The timestamp is not an integer.
    #[error("invalid webhook-timestamp")]
    InvalidTimestamp,
    /// The timestamp is more than the tolerance in the past.
    #[error("webhook-timestamp too old")]
    TooOld,
    /// The timestamp is more than the tolerance in the future.
    #[error("webhook-timestamp in the future")]
    InFuture,
    /// No `v1` signature matched.
    #[error("no matching signature")]
    NoMatch,
}

/// Verifies a `webhook-signature` header value against `secrets`.
///
/// Entries with versions other than `v1` are ignored; any matching `v1` entry for any
/// secret passes. `now_secs` checks the timestamp within [`TOLERANCE_SECS`]; `None` skips
/// the clock check (recorded requests). Comparison is constant-time.
pub fn verify(
    secrets: &[SigningSecret],
    id: &str,
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
    now_secs: Option<i64>,
) -> Result<(), SignatureError> {
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    if id.is_empty() || id.contains('.') {
        return Err(SignatureError::InvalidId);
    }
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::InvalidTimestamp)?;
    if let Some(now) = now_secs {
        if now - ts > TOLERANCE_SECS {
            return Err(SignatureError::TooOld);
        }
        if ts - now > TOLERANCE_SECS {
            return Err(SignatureError::InFuture);
        }
    }
    let ts = timestamp.trim();
    // Each secret's tag is computed once, whatever the header holds: the header is the
    // sender's, and a tag per entry would let one request hash its body thousands of times.
    let tags: Vec<_> = secrets
        .iter()
        .map(|secret| secret.sign_raw(id, ts, body))
        .collect();
    let mut sig = [0u8; 48];
    for entry in signature_header.split(' ').take(MAX_SIGNATURES) {
        let Some(("v1", sig_b64)) = entry.split_once(',') else {
            continue;
        };
        // A SHA-256 tag is 32 bytes, 44 characters of base64 with padding.
        if sig_b64.len() != 44 || STANDARD.decode_slice(sig_b64, &mut sig).ok() != Some(32) {
            continue;
        }
        if tags.iter().any(|tag| tag.matches(&sig[..32])) {
            return Ok(());
        }
    }
    Err(SignatureError::NoMatch)
}

/// The most entries of a signature header looked at: one per secret the sender signs with
/// (two while it rotates them), with room to spare.
const MAX_SIGNATURES: usize = 32;
