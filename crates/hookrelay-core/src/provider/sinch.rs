//! Sinch SMS API and Conversation API.
//!
//! Not implemented yet: every callback is refused.

use crate::provider::{Context, Normalized, VerifyOptions, VerifySettings};
use crate::{CallbackRequest, NormalizeError, VerifyConfigError, VerifyError};

/// Provider id.
const PROVIDER: &str = "sinch";

/// Checks a Sinch callback.
#[derive(Debug, Clone)]
pub struct Verifier;

impl Verifier {
    /// Builds the verifier from the `verify:` settings.
    pub fn from_settings(_settings: &VerifySettings) -> Result<Self, VerifyConfigError> {
        Err(VerifyConfigError::Missing {
            provider: PROVIDER,
            key: "(not implemented)",
        })
    }

    /// Checks the request.
    pub fn verify(&self, _req: &CallbackRequest, _opts: &VerifyOptions) -> Result<(), VerifyError> {
        Err(VerifyError::BadCredentials)
    }
}

/// Normalizes one callback.
pub fn normalize(_req: &CallbackRequest, _ctx: &Context) -> Result<Normalized, NormalizeError> {
    Err(NormalizeError::MissingField("(not implemented)".into()))
}
