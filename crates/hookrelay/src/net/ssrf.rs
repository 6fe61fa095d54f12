//! The SSRF guard of outbound deliveries, at the client boundary.
//!
//! Which addresses are guarded is [`hookrelay_config::ssrf::is_guarded`], the rule
//! `hookrelay validate` applies to literal addresses. Here it runs inside the connector's
//! resolver, on the addresses actually connected to, so a DNS answer cannot change between
//! the check and the connection. A refusal is a typed error ([`Refused`]), found by type
//! in the error's source chain ([`refusal_in`]), never by its message.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use hookrelay_config::ssrf::is_guarded;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use tower::Service;

/// A destination refused by the SSRF guard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{host} resolves only to link-local or metadata addresses (set allow_link_local to allow)")]
pub(crate) struct Refused {
    /// The host name or address refused.
    pub(crate) host: String,
}

/// The [`Refused`] error somewhere in `error`'s source chain, if any.
pub(crate) fn refusal_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(r) = e.downcast_ref::<Refused>() {
            return Some(r);
        }
        // The resolver's refusal travels as the payload of an `io::Error`.
        if let Some(r) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<Refused>())
        {
            return Some(r);
        }
        next = e.source();
    }
    None
}

/// A resolver that drops guarded addresses, failing with [`Refused`] when none is left.
#[derive(Clone)]
pub(crate) struct GuardedResolver {
    inner: GaiResolver,
}

impl GuardedResolver {
    pub(crate) fn new() -> Self {
        Self {
            inner: GaiResolver::new(),
        }
    }
}

/// The addresses a guarded resolution allows.
pub(crate) type Addrs = std::vec::IntoIter<SocketAddr>;

impl Service<Name> for GuardedResolver {
    type Response = Addrs;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Addrs, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let fut = self.inner.call(name.clone());
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = fut.await?.filter(|a| !is_guarded(a.ip())).collect();
            if addrs.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    Refused {
                        host: name.as_str().to_owned(),
                    },
                ));
            }
            Ok(addrs.into_iter())
        })
    }
}

/// Checks a URL whose host is an IP literal (the resolver is not asked for those).
pub(crate) fn check_literal(url: &url::Url, allow_link_local: bool) -> Result<(), Refused> {
    if allow_link_local {
        return Ok(());
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => return Ok(()),
    };
    if is_guarded(ip) {
        return Err(Refused {
            host: ip.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_urls_are_checked_unless_opted_in() {
        let meta = url::Url::parse("http://169.254.169.254/latest/meta-data").expect("url");
        assert!(check_literal(&meta, false).is_err());
        assert!(check_literal(&meta, true).is_ok());
        let alibaba = url::Url::parse("http://100.100.100.200/latest").expect("url");
        assert!(check_literal(&alibaba, false).is_err());
        let local = url::Url::parse("http://127.0.0.1:8080/hook").expect("url");
        assert!(check_literal(&local, false).is_ok());
    }

    #[tokio::test]
    async fn the_resolver_refuses_with_a_typed_error_found_through_any_chain() {
        let mut resolver = GuardedResolver::new();
        let name: Name = "169.254.169.254".parse().expect("name");
        let err = resolver.call(name).await.expect_err("refused");
        let found = refusal_in(&err).expect("typed");
        assert_eq!(found.host, "169.254.169.254");

        // Wrapped the way the client wraps a connector error, under other messages.
        #[derive(Debug, thiserror::Error)]
        #[error("client error (Connect)")]
        struct Outer(#[source] std::io::Error);
        let wrapped: Box<dyn std::error::Error + Send + Sync> = Box::new(Outer(err));
        assert_eq!(
            refusal_in(wrapped.as_ref()).map(|r| r.host.as_str()),
            Some("169.254.169.254")
        );

        // A failure with the same words that is not the guard's is not a refusal.
        let lookalike = std::io::Error::other("resolves only to link-local or metadata addresses");
        assert!(refusal_in(&lookalike).is_none());
    }
}
