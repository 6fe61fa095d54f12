//! generic (not yet implemented: every call fails closed).

use crate::provider::{Context, Normalized, VerifyOptions, VerifySettings};
use crate::{CallbackRequest, NormalizeError, VerifyConfigError, VerifyError};

/// The data that defines a generic provider.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Spec {
    /// Provider name (`vendor_name`).
    pub name: String,
}

impl Spec {
    /// Normalizes one callback.
    pub fn normalize(&self, _req: &CallbackRequest, _ctx: &Context) -> Result<Normalized, NormalizeError> {
        Err(NormalizeError::EmptyBody)
    }
}

/// Signature check.
#[derive(Debug, Clone)]
pub struct Verifier {}

impl Verifier {
    /// Builds the verifier.
    pub fn from_settings(_spec: &Spec, _settings: &VerifySettings) -> Result<Self, VerifyConfigError> {
        Err(VerifyConfigError::Missing { provider: "generic", key: "secret" })
    }

    /// Checks the callback.
    pub fn verify(&self, _req: &CallbackRequest, _opts: &VerifyOptions) -> Result<(), VerifyError> {
        Err(VerifyError::Mismatch)
    }
}
