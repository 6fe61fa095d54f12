//! Which bucket a request counts against.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use http::header::HeaderName;
use http::{HeaderValue, Request};

/// The name of a bucket: bytes taken from the request (a path, a host, a header value, a
/// peer address).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key(Box<[u8]>);

impl Key {
    /// A key from raw bytes.
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(bytes.into())
    }

    /// The key's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:?})", String::from_utf8_lossy(&self.0))
    }
}

impl From<&str> for Key {
    fn from(s: &str) -> Self {
        Self::from_bytes(s.as_bytes())
    }
}

impl From<String> for Key {
    fn from(s: String) -> Self {
        Self(s.into_bytes().into_boxed_slice())
    }
}

impl From<&HeaderValue> for Key {
    fn from(v: &HeaderValue) -> Self {
        Self::from_bytes(v.as_bytes())
    }
}

impl From<IpAddr> for Key {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::from_bytes(&v4.octets()),
            IpAddr::V6(v6) => Self::from_bytes(&v6.octets()),
        }
    }
}

impl From<SocketAddr> for Key {
    /// The peer's IP address; the port is ignored (one client, many connections).
    fn from(addr: SocketAddr) -> Self {
        addr.ip().into()
    }
}

/// Picks the bucket of a request; `None` means the one shared bucket.
///
/// Implemented by [`Global`], [`ByPath`], [`ByAuthority`], [`ByHeader`] and by any
/// `Fn(&Request<B>) -> Option<Key>` closure, for instance a per-peer key under axum:
///
/// ```
/// use std::net::SocketAddr;
/// use axum::extract::{ConnectInfo, Request};
/// use hookrelay_tower::gcra::{Key, KeyExtractor};
///
/// let by_peer = |req: &Request| {
///     req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| Key::from(c.0))
/// };
/// let mut req = Request::new(axum::body::Body::empty());
/// req.extensions_mut().insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 1], 4000))));
/// assert_eq!(by_peer.key(&req), Some(Key::from_bytes(&[10, 0, 0, 1])));
/// ```
pub trait KeyExtractor<B> {
    /// The bucket of `req`.
    fn key(&self, req: &Request<B>) -> Option<Key>;
}

impl<B, F> KeyExtractor<B> for F
where
    F: Fn(&Request<B>) -> Option<Key>,
{
    fn key(&self, req: &Request<B>) -> Option<Key> {
        self(req)
    }
}

/// Every request counts against one shared bucket (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct Global;

impl<B> KeyExtractor<B> for Global {
    fn key(&self, _req: &Request<B>) -> Option<Key> {
        None
    }
}

/// One bucket per request path (per endpoint of an inbound API).
#[derive(Debug, Clone, Copy, Default)]
pub struct ByPath;

impl<B> KeyExtractor<B> for ByPath {
    fn key(&self, req: &Request<B>) -> Option<Key> {
        Some(req.uri().path().into())
    }
}

/// One bucket per target authority, `host[:port]` of the URI or else the `Host` header (per
/// endpoint of outbound deliveries).
#[derive(Debug, Clone, Copy, Default)]
pub struct ByAuthority;

impl<B> KeyExtractor<B> for ByAuthority {
    fn key(&self, req: &Request<B>) -> Option<Key> {
        match req.uri().authority() {
            Some(authority) => Some(authority.as_str().into()),
            None => req.headers().get(http::header::HOST).map(Key::from),
        }
    }
}

/// One bucket per value of a header (an API key, a tenant id); requests without the
/// header share the one global bucket.
#[derive(Debug, Clone)]
pub struct ByHeader(HeaderName);

impl ByHeader {
    /// Buckets by the value of header `name`.
    #[must_use]
    pub const fn new(name: HeaderName) -> Self {
        Self(name)
    }
}

impl<B> KeyExtractor<B> for ByHeader {
    fn key(&self, req: &Request<B>) -> Option<Key> {
        req.headers().get(&self.0).map(Key::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extractors() {
        let req = Request::builder()
            .uri("https://crm.internal:8443/hooks?x=1")
            .header("x-tenant", "acme")
            .body(())
            .expect("valid request");
        assert_eq!(Global.key(&req), None);
        assert_eq!(ByPath.key(&req), Some(Key::from("/hooks")));
        assert_eq!(ByAuthority.key(&req), Some(Key::from("crm.internal:8443")));
        let by_tenant = ByHeader::new(HeaderName::from_static("x-tenant"));
        assert_eq!(by_tenant.key(&req), Some(Key::from("acme")));
        let bare = Request::builder()
            .uri("/x")
            .header("host", "example.org")
            .body(())
            .expect("valid request");
        assert_eq!(ByAuthority.key(&bare), Some(Key::from("example.org")));
        assert_eq!(by_tenant.key(&bare), None);
    }
}
