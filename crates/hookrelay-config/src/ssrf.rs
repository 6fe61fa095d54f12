//! The SSRF rule of outbound deliveries, one place for validation and the running client.
//!
//! Link-local addresses (`169.254.0.0/16`, `fe80::/10`) and the cloud metadata services
//! (`169.254.169.254`, `fd00:ec2::254`, Alibaba's `100.100.100.200`) are refused unless the
//! endpoint sets `allow_link_local: true`. Loopback and private ranges are allowed: a
//! sidecar talks to internal services. `hookrelay validate` refuses an endpoint URL whose
//! host is such a literal address; the sidecar's resolver drops such addresses from every
//! DNS answer with the same function, so a name cannot lead there either.
//!
//! ```
//! use hookrelay_config::ssrf::is_guarded;
//!
//! assert!(is_guarded("169.254.169.254".parse().unwrap()));
//! assert!(is_guarded("100.100.100.200".parse().unwrap()));
//! assert!(!is_guarded("10.0.0.1".parse().unwrap()));
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// True when connecting to `ip` needs the endpoint's `allow_link_local` opt-in.
#[must_use]
pub fn is_guarded(ip: IpAddr) -> bool {
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

#[cfg(test)]
mod tests {
    use super::is_guarded;

    #[test]
    fn guards_link_local_and_metadata_only() {
        for ip in [
            "169.254.169.254",
            "169.254.1.1",
            "fe80::1",
            "fd00:ec2::254",
            "100.100.100.200",
            "::ffff:169.254.169.254",
            "::ffff:100.100.100.200",
        ] {
            assert!(is_guarded(ip.parse().expect("ip")), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "192.168.1.1",
            "172.16.0.1",
            "100.100.100.201",
            "::1",
            "8.8.8.8",
            "fd00::1",
        ] {
            assert!(!is_guarded(ip.parse().expect("ip")), "{ip}");
        }
    }
}
