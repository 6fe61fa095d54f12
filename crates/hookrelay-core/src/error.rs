//! Errors of normalization and verification.

/// Why a callback body could not be understood. The `Display` text is a one-line reason
/// fit for an HTTP 400 body or a CLI error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NormalizeError {
    /// The body is empty where the provider always sends one.
    #[error("empty body")]
    EmptyBody,
    /// The body is not valid JSON.
    #[error("invalid JSON body: {source}")]
    InvalidJson {
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// The body is not valid UTF-8 where text is required.
    #[error("body is not valid UTF-8")]
    NotUtf8,
    /// The content type is not one the provider sends.
    #[error("unsupported content type {found:?} for {provider} (expected {expected})")]
    UnsupportedContentType {
        /// Provider id.
        provider: &'static str,
        /// The content type received.
        found: String,
        /// What the provider sends.
        expected: &'static str,
    },
    /// The HTTP method is not one the provider uses.
    #[error("unsupported method {method} for {provider}")]
    UnsupportedMethod {
        /// Provider id.
        provider: &'static str,
        /// The method received.
        method: String,
    },
    /// The JSON has the wrong shape (an array where an object belongs, …).
    #[error("unexpected shape at {path}: expected {expected}")]
    Shape {
        /// JSON pointer or field name where the mismatch is.
        path: String,
        /// What belongs there.
        expected: &'static str,
    },
    /// A required field is missing.
    #[error("missing field {0}")]
    MissingField(String),
    /// A `multipart/form-data` body that cannot be read.
    #[error("invalid multipart/form-data body: {0}")]
    Multipart(#[source] crate::multipart::MultipartError),
    /// A field is present but its value is unusable.
    #[error("invalid field {field}: {reason}")]
    InvalidField {
        /// Field name or JSON pointer.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl NormalizeError {
    /// Shorthand for [`NormalizeError::Shape`].
    #[must_use]
    pub fn shape(path: impl Into<String>, expected: &'static str) -> Self {
        Self::Shape {
            path: path.into(),
            expected,
        }
    }

    /// Shorthand for [`NormalizeError::InvalidField`].
    #[must_use]
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidField {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A short, stable label for metrics (`empty_body`, `invalid_json`, …).
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::EmptyBody => "empty_body",
            Self::InvalidJson { .. } => "invalid_json",
            Self::NotUtf8 => "not_utf8",
            Self::UnsupportedContentType { .. } => "content_type",
            Self::UnsupportedMethod { .. } => "method",
            Self::Shape { .. } => "shape",
            Self::Multipart(_) => "multipart",
            Self::MissingField(_) => "missing_field",
            Self::InvalidField { .. } => "invalid_field",
        }
    }
}

/// Why a signature check failed. The `Display` text is a one-line reason.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The header or field carrying the signature is absent.
    #[error("missing signature: {0}")]
    Missing(&'static str),
    /// The signature is present but malformed (bad base64, bad DER, …).
    #[error("malformed signature: {0}")]
    Malformed(String),
    /// The signature does not match.
    #[error("signature mismatch")]
    Mismatch,
    /// Credentials (basic auth, token) do not match.
    #[error("credentials rejected")]
    BadCredentials,
    /// The signed timestamp is outside the accepted window.
    #[error("timestamp outside tolerance ({0})")]
    Stale(String),
    /// The signing certificate is not acceptable (host not allowed, unparseable, …).
    #[error("signing certificate rejected: {0}")]
    Certificate(String),
    /// The request could not be read far enough to check it.
    #[error("cannot verify: {0}")]
    Unreadable(String),
}

impl VerifyError {
    /// A short, stable label for metrics.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Missing(_) => "missing_signature",
            Self::Malformed(_) => "malformed_signature",
            Self::Mismatch => "signature_mismatch",
            Self::BadCredentials => "bad_credentials",
            Self::Stale(_) => "stale",
            Self::Certificate(_) => "certificate",
            Self::Unreadable(_) => "unreadable",
        }
    }
}

/// A verification set-up that cannot work: a secret is missing, empty or malformed.
///
/// Verification fails closed: a provider that needs a secret and has none is this error,
/// never a skipped check.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyConfigError {
    /// A required key is missing or empty.
    #[error("{provider} verification needs `{key}`")]
    Missing {
        /// Provider id.
        provider: &'static str,
        /// The `verify:` key that is needed.
        key: &'static str,
    },
    /// A key is present but its value cannot be used.
    #[error("{provider} `{key}` is invalid: {reason}")]
    Invalid {
        /// Provider id.
        provider: &'static str,
        /// The `verify:` key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A key the provider does not know.
    #[error("{provider} verification has no key `{key}` (known: {known})")]
    Unknown {
        /// Provider id.
        provider: &'static str,
        /// The unknown key.
        key: String,
        /// The keys that are known.
        known: String,
    },
}
