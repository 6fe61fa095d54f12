use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use hookrelay_core::signing::{Signer, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP};
use http::request::Parts;
use http::{HeaderValue, Request};
use http_body::Body;
use http_body_util::Full;
use http_body_util::combinators::Collect;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::SignError;
use super::service::new_message_id;
use crate::BoxError;

pin_project! {
    /// Response future of [`Sign`](super::Sign): buffer, sign, call.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<Full<Bytes>>>,
        B: Body,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<Full<Bytes>>>,
        B: Body,
    {
        Buffering {
            #[pin]
            collect: Collect<B>,
            sign: Option<(Parts, S, Arc<Signer>, i64)>,
        },
        Signed {
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
{
    pub(super) fn new(
        collect: Collect<B>,
        parts: Parts,
        inner: S,
        signer: Arc<Signer>,
        timestamp: i64,
    ) -> Self {
        Self {
            state: State::Buffering {
                collect,
                sign: Some((parts, inner, signer, timestamp)),
            },
        }
    }
}

impl<S, B> Future for ResponseFuture<S, B>
where
    S: Service<Request<Full<Bytes>>>,
    S::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Buffering { collect, sign } => {
                    let body = ready!(collect.poll(cx))
                        .map_err(|e| SignError::Body(e.into()))?
                        .to_bytes();
                    let (mut parts, inner, signer, timestamp) =
                        sign.take().expect("polled after completion");
                    sign_parts(&mut parts, &signer, timestamp, &body);
                    let req = Request::from_parts(parts, Full::new(body));
                    this.state.set(State::Signed {
                        call: Some((inner, req)),
                    });
                }
                StateProj::Signed { call } => {
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

fn sign_parts(parts: &mut Parts, signer: &Signer, timestamp: i64, body: &[u8]) {
    let headers = &mut parts.headers;
    let kept = headers
        .get(WEBHOOK_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| !id.is_empty() && !id.contains('.'))
        .map(str::to_owned);
    let id = match kept {
        Some(id) => id,
        None => {
            let id = new_message_id();
            if let Ok(value) = HeaderValue::try_from(id.as_str()) {
                headers.insert(WEBHOOK_ID, value);
            }
            id
        }
    };
    headers.insert(WEBHOOK_TIMESTAMP, HeaderValue::from(timestamp));
    headers.remove(WEBHOOK_SIGNATURE);
    if !signer.secrets().is_empty() {
        let signature = signer.signature(&id, timestamp, body);
        if let Ok(value) = HeaderValue::try_from(signature) {
            headers.insert(WEBHOOK_SIGNATURE, value);
        }
    }
}
