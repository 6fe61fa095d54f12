use tower_layer::Layer;

use super::{Sign, SignHandle};

/// Applies [`Sign`] to a service: Standard Webhooks signing of the request body.
///
/// See the [module docs](crate::sign) for an example.
#[derive(Debug, Clone)]
pub struct SignLayer {
    signer: SignHandle,
    clock: fn() -> i64,
}

impl SignLayer {
    /// Signs with `signer`: a [`Signer`](hookrelay_core::signing::Signer) or a
    /// [`SignHandle`] (live reload).
    #[must_use]
    pub fn new(signer: impl Into<SignHandle>) -> Self {
        Self {
            signer: signer.into(),
            clock: unix_now,
        }
    }

    /// Reads the `webhook-timestamp` (Unix seconds) from `clock` instead of the system
    /// clock.
    #[must_use]
    pub fn clock(mut self, clock: fn() -> i64) -> Self {
        self.clock = clock;
        self
    }
}

impl<S> Layer<S> for SignLayer {
    type Service = Sign<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Sign::new(inner, self.signer.clone(), self.clock)
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
