use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use bytes::{Buf, Bytes};
use hookrelay_core::CallbackRequest;
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{HeaderValue, Request, Response};
use http_body::Body;
use http_body_util::combinators::Collect;
use http_body_util::{Collected, Full, LengthLimitError, Limited};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::policy::one_line;
use super::{CallbackPolicy, Received, Refusal, ResponseBody};
use crate::BoxError;

pin_project! {
    /// Response future of [`Verify`](super::Verify): buffer, verify, then call or refuse.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<Full<Bytes>>>,
        B: Body,
        B::Error: Into<BoxError>,
    {
        #[pin]
        state: State<S, B>,
    }
}

/// What the buffering state carries to the check.
struct Pending<S> {
    parts: Parts,
    inner: S,
    policy: Arc<CallbackPolicy>,
    now: SystemTime,
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<Full<Bytes>>>,
        B: Body,
        B::Error: Into<BoxError>,
    {
        Refused {
            response: Option<Response<Full<Bytes>>>,
        },
        Buffering {
            #[pin]
            collect: Collect<Limited<B>>,
            pending: Option<Pending<S>>,
        },
        Verified {
            call: Option<(S, Request<Full<Bytes>>)>,
        },
        Calling {
            #[pin]
            future: S::Future,
        },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<Full<Bytes>>>,
    B: Body,
    B::Error: Into<BoxError>,
{
    pub(super) fn new(
        collect: Collect<Limited<B>>,
        parts: Parts,
        inner: S,
        policy: Arc<CallbackPolicy>,
        now: SystemTime,
    ) -> Self {
        Self {
            state: State::Buffering {
                collect,
                pending: Some(Pending {
                    parts,
                    inner,
                    policy,
                    now,
                }),
            },
        }
    }

    pub(super) fn refused(policy: &CallbackPolicy, refusal: &Refusal) -> Self {
        Self {
            state: State::Refused {
                response: Some(refusal_response(policy, refusal)),
            },
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>>,
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Refused { response } => {
                    let response = response.take().expect("polled after completion");
                    return Poll::Ready(Ok(response.map(ResponseBody::refusal)));
                }
                StateProj::Buffering { collect, pending } => {
                    let read = ready!(collect.poll(cx));
                    let Pending {
                        parts,
                        inner,
                        policy,
                        now,
                    } = pending.take().expect("polled after completion");
                    match verified(read, parts, &policy, now) {
                        Ok(req) => this.state.set(State::Verified {
                            call: Some((inner, req)),
                        }),
                        Err(refusal) => {
                            let response = refusal_response(&policy, &refusal);
                            return Poll::Ready(Ok(response.map(ResponseBody::refusal)));
                        }
                    }
                }
                StateProj::Verified { call } => {
                    let (inner, _) = call.as_mut().expect("polled after completion");
                    ready!(inner.poll_ready(cx))?;
                    let (mut inner, req) = call.take().expect("polled after completion");
                    let future = inner.call(req);
                    this.state.set(State::Calling { future });
                }
                StateProj::Calling { future } => {
                    let res = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(res.map(ResponseBody::inner)));
                }
            }
        }
    }
}

/// The verified request, body intact and the policy in its extensions; or why not.
fn verified<D: Buf>(
    read: Result<Collected<D>, BoxError>,
    mut parts: Parts,
    policy: &Arc<CallbackPolicy>,
    now: SystemTime,
) -> Result<Request<Full<Bytes>>, Refusal> {
    let body = match read {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            return Err(Refusal::TooLarge {
                size: None,
                limit: policy.max_body,
            });
        }
        Err(e) => return Err(Refusal::Unreadable(e)),
    };
    // The head moves into the callback and back: nothing is copied but the method.
    let req = CallbackRequest {
        method: parts.method.clone(),
        uri: mem::take(&mut parts.uri),
        headers: mem::take(&mut parts.headers),
        body,
    };
    policy.check(&req, now)?;
    let CallbackRequest {
        uri, headers, body, ..
    } = req;
    parts.uri = uri;
    parts.headers = headers;
    parts.extensions.insert(Arc::clone(policy));
    parts.extensions.insert(Received(now));
    Ok(Request::from_parts(parts, Full::new(body)))
}

/// The refusal's status with `provider: reason` as a one-line `text/plain` body.
fn refusal_response(policy: &CallbackPolicy, refusal: &Refusal) -> Response<Full<Bytes>> {
    let line = one_line(policy.provider().id(), refusal);
    let mut res = Response::new(Full::new(Bytes::from(line)));
    *res.status_mut() = refusal.status();
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}
