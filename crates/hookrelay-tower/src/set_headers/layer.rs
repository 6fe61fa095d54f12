use tower_layer::Layer;

use super::{HeaderSetHandle, SetHeaders};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Request,
    Response,
}

/// Applies [`SetHeaders`] to a service: sets a [`HeaderSet`](super::HeaderSet) on requests
/// or on responses.
///
/// See the [module docs](crate::set_headers) for an example.
#[derive(Debug, Clone)]
pub struct SetHeadersLayer {
    headers: HeaderSetHandle,
    target: Target,
}

impl SetHeadersLayer {
    /// Sets the headers on each request before the inner service sees it.
    ///
    /// `headers` is a [`HeaderSet`](super::HeaderSet) or a [`HeaderSetHandle`] (live reload).
    #[must_use]
    pub fn request(headers: impl Into<HeaderSetHandle>) -> Self {
        Self {
            headers: headers.into(),
            target: Target::Request,
        }
    }

    /// Sets the headers on each response of the inner service.
    ///
    /// `headers` is a [`HeaderSet`](super::HeaderSet) or a [`HeaderSetHandle`] (live reload).
    #[must_use]
    pub fn response(headers: impl Into<HeaderSetHandle>) -> Self {
        Self {
            headers: headers.into(),
            target: Target::Response,
        }
    }
}

impl<S> Layer<S> for SetHeadersLayer {
    type Service = SetHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SetHeaders::new(inner, self.headers.clone(), self.target)
    }
}
