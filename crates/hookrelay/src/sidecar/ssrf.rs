//! The SSRF guard of outbound deliveries.
//!
//! Endpoint URLs that resolve to link-local addresses (`169.254.0.0/16`, `fe80::/10`) or
//! to cloud metadata services (`169.254.169.254`, `fd00:ec2::254`, `100.100.100.200`) are
//! refused unless the endpoint sets `allow_link_local: true`. Loopback and private ranges
//! are allowed: a sidecar talks to internal services.
//!
//! The check runs inside the connector's resolver, on the addresses actually connected
//! to, so a DNS answer cannot change between the check and the connection.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use tower::Service;

/// True when connecting to `ip` needs the endpoint's `allow_link_local` opt-in.
pub(crate) fn is_guarded(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_guarded_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_guarded_v4(v4);
            }
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
        }
    }
}

fn is_guarded_v4(v4: Ipv4Addr) -> bool {
    v4.is_link_local() || v4 == Ipv4Addr::new(100, 100, 100, 200)
}

/// A resolver that drops guarded addresses, failing when none is left.
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
                    format!(
                        "{name} resolves only to link-local or metadata addresses (set allow_link_local to allow)"
                    ),
                ));
            }
            Ok(addrs.into_iter())
        })
    }
}

/// Checks a URL whose host is an IP literal (the resolver is not asked for those).
pub(crate) fn check_literal(url: &url::Url, allow_link_local: bool) -> Result<(), String> {
    if allow_link_local {
        return Ok(());
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => return Ok(()),
    };
    if is_guarded(ip) {
        return Err(format!(
            "{ip} is a link-local or metadata address (set allow_link_local to allow)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_link_local_and_metadata_only() {
        for ip in [
            "169.254.169.254",
            "169.254.1.1",
            "fe80::1",
            "fd00:ec2::254",
            "100.100.100.200",
            "::ffff:169.254.169.254",
        ] {
            assert!(is_guarded(ip.parse().expect("ip")), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "192.168.1.1",
            "172.16.0.1",
            "::1",
            "8.8.8.8",
            "fd00::1",
        ] {
            assert!(!is_guarded(ip.parse().expect("ip")), "{ip}");
        }
    }

    #[test]
    fn literal_urls_are_checked_unless_opted_in() {
        let meta = url::Url::parse("http://169.254.169.254/latest/meta-data").expect("url");
        assert!(check_literal(&meta, false).is_err());
        assert!(check_literal(&meta, true).is_ok());
        let local = url::Url::parse("http://127.0.0.1:8080/hook").expect("url");
        assert!(check_literal(&local, false).is_ok());
    }
}
