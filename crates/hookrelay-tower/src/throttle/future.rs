use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};
use tower_service::Service;

use super::ThrottleError;
use crate::BoxError;
use crate::gcra::ReserveError;

pin_project! {
    /// Response future of [`Throttle`](super::Throttle): reserve, wait, call.
    pub struct ResponseFuture<S, Req, F>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req, F>,
        max_wait: Duration,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req, F>
    where
        S: Service<Req>,
    {
        Reserving {
            #[pin]
            reservation: F,
            call: Option<(S, Req)>,
        },
        Waiting {
            sleep: Option<Pin<Box<Sleep>>>,
            call: Option<(S, Req)>,
        },
        Calling {
            #[pin]
            future: S::Future,
        },
    }
}

impl<S: Service<Req>, Req, F> ResponseFuture<S, Req, F> {
    pub(super) fn new(reservation: F, inner: S, req: Req, max_wait: Duration) -> Self {
        Self {
            state: State::Reserving {
                reservation,
                call: Some((inner, req)),
            },
            max_wait,
        }
    }
}

impl<S, Req, F> Future for ResponseFuture<S, Req, F>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    F: Future<Output = Result<Instant, ReserveError>>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Reserving { reservation, call } => {
                    let slot = match ready!(reservation.poll(cx)) {
                        Ok(slot) => slot,
                        Err(ReserveError::Exceeded(exceeded)) => {
                            return Poll::Ready(Err(ThrottleError::WaitTooLong {
                                wait: exceeded.retry_after(),
                                max_wait: *this.max_wait,
                            }
                            .into()));
                        }
                        Err(ReserveError::Unavailable(source)) => {
                            return Poll::Ready(Err(ThrottleError::Unavailable { source }.into()));
                        }
                    };
                    let sleep = (slot > Instant::now()).then(|| Box::pin(sleep_until(slot)));
                    let call = call.take();
                    this.state.set(State::Waiting { sleep, call });
                }
                StateProj::Waiting { sleep, call } => {
                    if let Some(s) = sleep {
                        ready!(s.as_mut().poll(cx));
                        *sleep = None;
                    }
                    let (inner, _) = call.as_mut().expect("polled after completion");
                    ready!(inner.poll_ready(cx)).map_err(Into::into)?;
                    let (mut inner, req) = call.take().expect("polled after completion");
                    let future = inner.call(req);
                    this.state.set(State::Calling { future });
                }
                StateProj::Calling { future } => return future.poll(cx).map_err(Into::into),
            }
        }
    }
}
