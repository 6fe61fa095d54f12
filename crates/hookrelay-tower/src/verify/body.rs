use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;

pin_project! {
    /// Response body of [`Verify`](super::Verify): the inner service's body, or the
    /// one-line reason of a refusal.
    pub struct ResponseBody<B> {
        #[pin]
        inner: Inner<B>,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<B> {
        Refusal {
            #[pin]
            body: Full<Bytes>,
        },
        Inner {
            #[pin]
            body: B,
        },
    }
}

impl<B> ResponseBody<B> {
    pub(super) fn refusal(body: Full<Bytes>) -> Self {
        Self {
            inner: Inner::Refusal { body },
        }
    }

    pub(super) fn inner(body: B) -> Self {
        Self {
            inner: Inner::Inner { body },
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().inner.project() {
            InnerProj::Refusal { body } => body.poll_frame(cx).map_err(|never| match never {}),
            InnerProj::Inner { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Refusal { body } => body.is_end_stream(),
            Inner::Inner { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Refusal { body } => body.size_hint(),
            Inner::Inner { body } => body.size_hint(),
        }
    }
}
