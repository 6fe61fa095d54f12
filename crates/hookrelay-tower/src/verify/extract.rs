use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum_core::extract::{FromRequest, Request};
use axum_core::response::{IntoResponse, Response};
use hookrelay_core::{
    Acknowledgement, CallbackRequest, Context, Control, NormalizeError, Normalized,
};
use http::header::CONTENT_TYPE;
use http::{HeaderValue, StatusCode};
use http_body_util::BodyExt;

use super::policy::one_line;
use super::{CallbackPolicy, Received};

/// Extractor of a callback verified by [`VerifyLayer`](super::VerifyLayer), normalized by
/// its provider into events (and, for a handshake, a control message).
///
/// It reads the body the layer buffered and takes the [`CallbackPolicy`] the layer put in
/// the request's extensions; the event times default to when the layer received the
/// callback (its clock). Without the layer in front of the route, it rejects the request
/// with `500` and the reason; a body the provider's normalizer cannot read is `400` with
/// its one-line reason (see [`CallbackRejection`]).
///
/// A handshake carries no events: answer it with [`Callback::reply`] (Meta's
/// `hub.challenge`), or simply [`Callback::answer`], which answers handshakes and event
/// callbacks alike. Meta's handshake is a `GET`, so route `get` and `post` to the handler.
///
/// ```
/// # #[cfg(feature = "meta_whatsapp")]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use axum::{Router, body::Body, http::{Request, StatusCode}, response::Response, routing::get};
/// use hookrelay_core::VerifySettings;
/// use hookrelay_tower::VerifyLayer;
/// use hookrelay_tower::verify::{Callback, CallbackPolicy};
/// use tower::ServiceExt;
///
/// async fn whatsapp(callback: Callback) -> Response {
///     for event in &callback.normalized.events {
///         println!("{}", event.idempotency_key);
///     }
///     callback.answer()
/// }
///
/// let settings = VerifySettings::new().with("app_secret", "s3cret").with("verify_token", "tok");
/// let policy = CallbackPolicy::builtin("meta_whatsapp", &settings).unwrap();
/// let app = Router::new()
///     .route("/whatsapp", get(whatsapp).post(whatsapp))
///     .route_layer(VerifyLayer::new(policy));
///
/// // Meta's handshake: the challenge comes back when the token matches.
/// let uri = "/whatsapp?hub.mode=subscribe&hub.verify_token=tok&hub.challenge=1158201444";
/// let res = app.clone().oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(res.status(), StatusCode::OK);
/// assert_eq!(axum::body::to_bytes(res.into_body(), 64).await.unwrap(), "1158201444");
///
/// let uri = "/whatsapp?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1";
/// let res = app.oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
/// # }
/// # #[cfg(not(feature = "meta_whatsapp"))]
/// # fn main() {}
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Callback {
    /// The events, in the provider's order, and the handshake to answer, if any; the
    /// events that could not be normalized (beyond the JSON limits, or a batch element its
    /// normalizer refuses) are in `normalized.unparsed`, for the application to keep.
    pub normalized: Normalized,
    /// The one-time token the provider's signature covers instead of the body (Mailgun):
    /// refuse a token already accepted, or a captured signature could carry any body.
    /// The layer keeps no memory of tokens; `None` for providers that sign the body.
    pub replay_token: Option<String>,
    /// The policy that verified the callback (its provider).
    pub policy: Arc<CallbackPolicy>,
}

impl Callback {
    /// The body of the answer when the callback is a handshake the provider expects
    /// answered itself (Meta's `hub.challenge`, to echo as `text/plain`).
    #[must_use]
    pub fn reply(&self) -> Option<&str> {
        self.normalized.control.as_ref().and_then(Control::reply)
    }

    /// What the provider expects back: the handshake's reply, else the provider's
    /// acknowledgement of every event (empty TwiML for Twilio, which would otherwise read
    /// the answer as a reply message; `{"accepted":N,"enqueued":N}` for the others).
    #[must_use]
    pub fn acknowledgement(&self) -> Acknowledgement {
        match self.reply() {
            Some(reply) => Acknowledgement {
                content_type: "text/plain",
                body: reply.to_owned(),
            },
            None => {
                let n = self.normalized.events.len();
                self.policy.provider().acknowledgement(n, n)
            }
        }
    }

    /// [`Callback::acknowledgement`] as a `200` response.
    #[must_use]
    pub fn answer(&self) -> Response {
        let Acknowledgement { content_type, body } = self.acknowledgement();
        let mut res = body.into_response();
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        res
    }
}

impl<S: Send + Sync> FromRequest<S> for Callback {
    type Rejection = CallbackRejection;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let policy = parts
            .extensions
            .get::<Arc<CallbackPolicy>>()
            .cloned()
            .ok_or(CallbackRejection::MissingLayer)?;
        let received = parts
            .extensions
            .get::<Received>()
            .map_or_else(SystemTime::now, |r| r.0);
        let body = body
            .collect()
            .await
            .map_err(CallbackRejection::Body)?
            .to_bytes();
        let req = CallbackRequest {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            body,
        };
        let ctx = Context {
            received_at_ms: unix_ms(received),
        };
        let normalized = policy.provider().normalize(&req, &ctx).map_err(|source| {
            CallbackRejection::Normalize {
                provider: policy.provider().id().to_owned(),
                source,
            }
        })?;
        Ok(Self {
            normalized,
            replay_token: policy.provider().replay_token(&req),
            policy,
        })
    }
}

fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// Why [`Callback`] could not be extracted; answered with [`CallbackRejection::status`] and
/// a one-line `text/plain` reason.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallbackRejection {
    /// No [`VerifyLayer`](super::VerifyLayer) in front of the route: `500`.
    #[error("no verified callback: put hookrelay_tower::VerifyLayer in front of this route")]
    MissingLayer,
    /// The body could not be read: `400`.
    #[error("cannot read the body")]
    Body(#[source] axum_core::Error),
    /// The provider's normalizer cannot read the body: `400`.
    #[error("cannot normalize the callback")]
    Normalize {
        /// Provider id.
        provider: String,
        /// Why.
        #[source]
        source: NormalizeError,
    },
}

impl CallbackRejection {
    /// The HTTP status answered.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            CallbackRejection::MissingLayer => StatusCode::INTERNAL_SERVER_ERROR,
            CallbackRejection::Body(_) | CallbackRejection::Normalize { .. } => {
                StatusCode::BAD_REQUEST
            }
        }
    }
}

impl IntoResponse for CallbackRejection {
    fn into_response(self) -> Response {
        let prefix = match &self {
            CallbackRejection::Normalize { provider, .. } => provider.as_str(),
            CallbackRejection::MissingLayer | CallbackRejection::Body(_) => "callback",
        };
        let line = one_line(prefix, &self);
        let mut res = (self.status(), line).into_response();
        res.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        res
    }
}
