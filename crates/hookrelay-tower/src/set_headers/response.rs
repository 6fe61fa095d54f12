use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::{HeaderSetHandle, ResponseFuture};

/// Applies [`SetResponseHeaders`] to a service: sets a [`HeaderSet`](super::HeaderSet) on
/// each response of the inner service.
///
/// See the [module docs](crate::set_headers) for an example.
#[derive(Debug, Clone)]
pub struct SetResponseHeadersLayer {
    headers: HeaderSetHandle,
}

impl SetResponseHeadersLayer {
    /// Sets `headers` on each response: a [`HeaderSet`](super::HeaderSet) or a
    /// [`HeaderSetHandle`] (live reload).
    #[must_use]
    pub fn new(headers: impl Into<HeaderSetHandle>) -> Self {
        Self {
            headers: headers.into(),
        }
    }
}

impl<S> Layer<S> for SetResponseHeadersLayer {
    type Service = SetResponseHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SetResponseHeaders {
            inner,
            headers: self.headers.clone(),
        }
    }
}

/// Sets a [`HeaderSet`](super::HeaderSet) on each response; see the
/// [module docs](crate::set_headers).
#[derive(Debug, Clone)]
pub struct SetResponseHeaders<S> {
    inner: S,
    headers: HeaderSetHandle,
}

impl<S> SetResponseHeaders<S> {
    /// Sets `headers` on each response of `inner`.
    #[must_use]
    pub fn new(inner: S, headers: impl Into<HeaderSetHandle>) -> Self {
        Self {
            inner,
            headers: headers.into(),
        }
    }

    inner_service_accessors!();

    /// The reload handle.
    pub fn handle(&self) -> &HeaderSetHandle {
        &self.headers
    }
}

impl<S, B, ResBody> Service<Request<B>> for SetResponseHeaders<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The set in force when the request arrived applies to its response.
        ResponseFuture::new(self.inner.call(req), self.headers.get())
    }
}
