use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::header::RETRY_AFTER;
use http::{HeaderValue, Response, StatusCode};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_service::Service;

use crate::gcra::ReserveError;

pin_project! {
    /// Response future of [`RateLimit`](super::RateLimit): decide, then call or refuse.
    pub struct ResponseFuture<S, Req, F>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req, F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req, F>
    where
        S: Service<Req>,
    {
        Deciding {
            #[pin]
            reservation: F,
            call: Option<(S, Req)>,
        },
        Admitted {
            call: Option<(S, Req)>,
        },
        Calling {
            #[pin]
            future: S::Future,
        },
    }
}

impl<S: Service<Req>, Req, F> ResponseFuture<S, Req, F> {
    pub(super) fn new(reservation: F, inner: S, req: Req) -> Self {
        Self {
            state: State::Deciding {
                reservation,
                call: Some((inner, req)),
            },
        }
    }
}

impl<S, Req, F, ResBody> Future for ResponseFuture<S, Req, F>
where
    S: Service<Req, Response = Response<ResBody>>,
    ResBody: Default,
    F: Future<Output = Result<Instant, ReserveError>>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Deciding { reservation, call } => {
                    match ready!(reservation.poll(cx)) {
                        Ok(_) => {}
                        Err(ReserveError::Exceeded(exceeded)) => {
                            return Poll::Ready(Ok(too_many_requests(exceeded.retry_after())));
                        }
                        Err(ReserveError::Unavailable(_)) => {
                            return Poll::Ready(Ok(status_only(StatusCode::SERVICE_UNAVAILABLE)));
                        }
                    }
                    let call = call.take();
                    this.state.set(State::Admitted { call });
                }
                StateProj::Admitted { call } => {
                    let (inner, _) = call.as_mut().expect("polled after completion");
                    ready!(inner.poll_ready(cx))?;
                    let (mut inner, req) = call.take().expect("polled after completion");
                    let future = inner.call(req);
                    this.state.set(State::Calling { future });
                }
                StateProj::Calling { future } => return future.poll(cx),
            }
        }
    }
}

fn too_many_requests<B: Default>(retry_after: Duration) -> Response<B> {
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let mut res = status_only(StatusCode::TOO_MANY_REQUESTS);
    res.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
    res
}

fn status_only<B: Default>(status: StatusCode) -> Response<B> {
    let mut res = Response::new(B::default());
    *res.status_mut() = status;
    res
}
