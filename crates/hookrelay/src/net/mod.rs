//! Outbound HTTP: the clients deliveries and certificate fetches use, their TLS roots and
//! the SSRF guard.
//!
//! Two pooled clients (HTTP/1.1 and 2 over rustls, redirects not followed) are built once
//! at start: the guarded one, whose resolver drops link-local and metadata addresses, and
//! the open one for endpoints that set `allow_link_local`.

pub(crate) mod ssrf;
pub(crate) mod tls;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The response of an outbound request.
pub(crate) type Response = http::Response<hyper::body::Incoming>;
/// An outbound request.
pub(crate) type Request = http::Request<Full<Bytes>>;
/// The error of an outbound request.
pub(crate) type Error = hyper_util::client::legacy::Error;

type Guarded = Client<HttpsConnector<HttpConnector<ssrf::GuardedResolver>>, Full<Bytes>>;
type Open = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The outbound clients; clones share their connection pools.
#[derive(Clone)]
pub(crate) struct Clients {
    guarded: Guarded,
    open: Open,
}

impl Clients {
    /// Both clients over the same TLS configuration.
    pub(crate) fn new(tls: &rustls::ClientConfig) -> Self {
        Self {
            guarded: build(
                HttpConnector::new_with_resolver(ssrf::GuardedResolver::new()),
                tls.clone(),
            ),
            open: build(HttpConnector::new(), tls.clone()),
        }
    }

    /// Sends `req`, through the SSRF guard unless `allow_link_local`.
    pub(crate) fn send(
        &self,
        req: Request,
        allow_link_local: bool,
    ) -> impl Future<Output = Result<Response, Error>> + Send + 'static {
        let fut = if allow_link_local {
            self.open.request(req)
        } else {
            self.guarded.request(req)
        };
        // Both are `ResponseFuture`s of the same type.
        fut
    }

    /// `GET url` through the SSRF guard: its status and at most `limit` bytes of its body,
    /// within `timeout` in all.
    pub(crate) async fn get(
        &self,
        url: &str,
        limit: usize,
        timeout: Duration,
    ) -> Result<(http::StatusCode, Bytes), String> {
        let req = http::Request::get(url)
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let guarded = self.guarded.clone();
        let exchange = async move {
            let resp = guarded.request(req).await.map_err(|e| chain(&e))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), limit)
                .collect()
                .await
                .map_err(|e| format!("reading the body: {e}"))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("timed out after {timeout:?}"))?
    }
}

/// An error and its causes on one line.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let text = inner.to_string();
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = inner.source();
    }
    s
}

fn build<R>(
    mut http: HttpConnector<R>,
    tls: rustls::ClientConfig,
) -> Client<HttpsConnector<HttpConnector<R>>, Full<Bytes>>
where
    R: tower::Service<hyper_util::client::legacy::connect::dns::Name>
        + Clone
        + Send
        + Sync
        + 'static,
    R::Response: Iterator<Item = SocketAddr>,
    R::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    R::Future: Send,
{
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).build(https)
}
