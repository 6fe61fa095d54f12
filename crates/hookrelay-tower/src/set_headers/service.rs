use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::layer::Target;
use super::{HeaderSetHandle, ResponseFuture};

/// Sets a [`HeaderSet`](super::HeaderSet) on requests or responses; see the
/// [module docs](crate::set_headers).
#[derive(Debug, Clone)]
pub struct SetHeaders<S> {
    inner: S,
    headers: HeaderSetHandle,
    target: Target,
}

impl<S> SetHeaders<S> {
    pub(crate) fn new(inner: S, headers: HeaderSetHandle, target: Target) -> Self {
        Self {
            inner,
            headers,
            target,
        }
    }

    inner_service_accessors!();

    /// The reload handle.
    pub fn handle(&self) -> &HeaderSetHandle {
        &self.headers
    }
}

impl<S, B, ResBody> Service<Request<B>> for SetHeaders<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        match self.target {
            Target::Request => {
                self.headers.apply(req.headers_mut());
                ResponseFuture::new(self.inner.call(req), None)
            }
            Target::Response => ResponseFuture::new(self.inner.call(req), Some(self.headers.get())),
        }
    }
}
