use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use super::HeaderSet;

pin_project! {
    /// Response future of [`SetResponseHeaders`](super::SetResponseHeaders).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        headers: Arc<HeaderSet>,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, headers: Arc<HeaderSet>) -> Self {
        Self { inner, headers }
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = ready!(this.inner.poll(cx))?;
        this.headers.apply(res.headers_mut());
        Poll::Ready(Ok(res))
    }
}
