use std::time::SystemTime;

use tower_layer::Layer;

use super::{Verify, VerifyHandle};

/// Applies [`Verify`] to a service: buffers the body, checks the provider's signature on
/// the raw bytes, and passes only genuine callbacks on.
///
/// See the [module docs](crate::verify) for an example.
#[derive(Debug, Clone)]
pub struct VerifyLayer {
    policy: VerifyHandle,
    clock: fn() -> SystemTime,
}

impl VerifyLayer {
    /// Verifies with `policy`: a [`CallbackPolicy`](super::CallbackPolicy) or a
    /// [`VerifyHandle`] (live reload).
    #[must_use]
    pub fn new(policy: impl Into<VerifyHandle>) -> Self {
        Self {
            policy: policy.into(),
            clock: SystemTime::now,
        }
    }

    /// Reads the current time from `clock` instead of the system clock: the time signed
    /// timestamps are checked against, and the receive time of the events.
    #[must_use]
    pub fn clock(mut self, clock: fn() -> SystemTime) -> Self {
        self.clock = clock;
        self
    }
}

impl<S> Layer<S> for VerifyLayer {
    type Service = Verify<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Verify::new(inner, self.policy.clone()).clock(self.clock)
    }
}
