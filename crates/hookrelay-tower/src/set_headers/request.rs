use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use super::HeaderSetHandle;

/// Applies [`SetRequestHeaders`] to a service: sets a [`HeaderSet`](super::HeaderSet) on
/// each request before the inner service sees it.
///
/// See the [module docs](crate::set_headers) for an example.
#[derive(Debug, Clone)]
pub struct SetRequestHeadersLayer {
    headers: HeaderSetHandle,
}

impl SetRequestHeadersLayer {
    /// Sets `headers` on each request: a [`HeaderSet`](super::HeaderSet) or a
    /// [`HeaderSetHandle`] (live reload).
    #[must_use]
    pub fn new(headers: impl Into<HeaderSetHandle>) -> Self {
        Self {
            headers: headers.into(),
        }
    }
}

impl<S> Layer<S> for SetRequestHeadersLayer {
    type Service = SetRequestHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SetRequestHeaders {
            inner,
            headers: self.headers.clone(),
        }
    }
}

/// Sets a [`HeaderSet`](super::HeaderSet) on each request; see the
/// [module docs](crate::set_headers).
#[derive(Debug, Clone)]
pub struct SetRequestHeaders<S> {
    inner: S,
    headers: HeaderSetHandle,
}

impl<S> SetRequestHeaders<S> {
    /// Sets `headers` on each request to `inner`.
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

impl<S, B> Service<Request<B>> for SetRequestHeaders<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        self.headers.apply(req.headers_mut());
        self.inner.call(req)
    }
}
