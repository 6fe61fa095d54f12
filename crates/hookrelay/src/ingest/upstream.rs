//! The upstream notification service as a ready Pingora peer.
//!
//! The peer is built when a snapshot is applied, not per request. An IP literal needs no
//! resolution. A host name is resolved asynchronously (by the reload controller, at start,
//! on each applied snapshot and every [`REFRESH`]), never with a blocking lookup on a
//! listener thread; while it does not resolve, proxied requests get `502` with the reason.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use hookrelay_config::Upstream;
use pingora::upstreams::peer::{HttpPeer, Peer};

/// How often a host-name upstream is resolved again (DNS answers change).
pub(crate) const REFRESH: Duration = Duration::from_secs(30);

struct Resolved {
    upstream: Upstream,
    peer: Result<HttpPeer, String>,
}

/// The current upstream peer.
#[derive(Default)]
pub(crate) struct Upstreams {
    current: ArcSwapOption<Resolved>,
}

fn peer(upstream: &Upstream, addr: SocketAddr) -> HttpPeer {
    HttpPeer::new(addr, upstream.tls, upstream.host.clone())
}

impl Upstreams {
    /// The peer of `upstream` (the request's snapshot's), cloned from the resolved one.
    pub(crate) fn peer(&self, upstream: &Upstream) -> Result<HttpPeer, String> {
        if let Some(resolved) = self.current.load().as_ref()
            && resolved.upstream == *upstream
        {
            return resolved.peer.clone();
        }
        // A snapshot applied a moment ago whose upstream is not resolved yet.
        match upstream.ip {
            Some(ip) => Ok(peer(upstream, SocketAddr::new(ip, upstream.port))),
            None => Err(format!(
                "upstream {} is not resolved yet",
                upstream.authority()
            )),
        }
    }

    /// Resolves `upstream` (a host name through the system resolver, off this thread) and
    /// makes it current. A failure is kept as the answer and logged when it is new.
    pub(crate) async fn resolve(&self, upstream: &Upstream) {
        let peer = match upstream.ip {
            Some(ip) => Ok(peer(upstream, SocketAddr::new(ip, upstream.port))),
            None => match tokio::net::lookup_host((upstream.host.as_str(), upstream.port)).await {
                Ok(mut addrs) => addrs
                    .next()
                    .map(|a| peer(upstream, a))
                    .ok_or_else(|| format!("upstream {} resolves to no address", upstream.host)),
                Err(e) => Err(format!("upstream {} does not resolve: {e}", upstream.host)),
            },
        };
        let previous = self.current.load();
        let was_failing = previous
            .as_ref()
            .is_some_and(|r| r.upstream == *upstream && r.peer.is_err());
        match &peer {
            Err(reason) if !was_failing => tracing::warn!(reason = %reason, "upstream unavailable"),
            Ok(p) if was_failing => {
                tracing::info!(upstream = %upstream.authority(), address = %p.address(), "upstream resolved")
            }
            _ => {}
        }
        self.current.store(Some(Arc::new(Resolved {
            upstream: upstream.clone(),
            peer,
        })));
    }
}

#[cfg(test)]
mod tests {
    use super::Upstreams;
    use hookrelay_config::{Snapshot, Source};
    use pingora::upstreams::peer::Peer;

    fn upstream(text: &str) -> hookrelay_config::Upstream {
        let yaml = format!("upstream: \"{text}\"\n");
        Snapshot::try_from(&Source::new("t.yaml", yaml))
            .expect("valid")
            .upstream
            .clone()
    }

    #[tokio::test]
    async fn ipv6_literals_and_names_become_peers_without_panicking() {
        let ups = Upstreams::default();
        let v6 = upstream("http://[::1]:3000");
        // Usable before any resolution: an IP literal needs none.
        let p = ups.peer(&v6).expect("peer");
        assert_eq!(p.address().to_string(), "[::1]:3000");
        ups.resolve(&v6).await;
        assert_eq!(
            ups.peer(&v6).expect("peer").address().to_string(),
            "[::1]:3000"
        );

        let name = upstream("http://localhost:3000");
        assert!(ups.peer(&name).is_err(), "not resolved yet");
        ups.resolve(&name).await;
        let p = ups.peer(&name).expect("localhost resolves");
        assert_eq!(p.address().as_inet().map(|a| a.port()), Some(3000));

        let nowhere = upstream("http://nowhere.invalid:3000");
        ups.resolve(&nowhere).await;
        let reason = ups.peer(&nowhere).expect_err("does not resolve");
        assert!(reason.contains("nowhere.invalid"), "{reason}");
    }
}
