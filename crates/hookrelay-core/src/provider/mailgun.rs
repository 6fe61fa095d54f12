//! mailgun (not yet implemented: every call fails closed).

use crate::provider::{Context, Normalized, VerifyOptions, VerifySettings};
use crate::{CallbackRequest, NormalizeError, VerifyConfigError, VerifyError};

/// Signature check.
#[derive(Debug, Clone)]
pub struct Verifier {}

impl Verifier {
    /// Builds the verifier from the `verify:` settings.
    pub fn from_settings(_settings: &VerifySettings) -> Result<Self, VerifyConfigError> {
        Err(VerifyConfigError::Missing { provider: "mailgun", key: "secret" })
    }

    /// Checks the callback.
    pub fn verify(&self, _req: &CallbackRequest, _opts: &VerifyOptions) -> Result<(), VerifyError> {
        Err(VerifyError::Mismatch)
    }
}

/// Normalizes one callback.
pub fn normalize(_req: &CallbackRequest, _ctx: &Context) -> Result<Normalized, NormalizeError> {
    Err(NormalizeError::EmptyBody)
}
