//! The top-level keys: listeners, the upstream, the store.

use super::routes::parse_size;
use super::*;
use crate::raw::{RawHistory, RawLimits, RawTelemetry, RawTls};
use crate::snapshot::Limits;
use crate::snapshot::{Telemetry, Tls, Upstream};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::values::{MAX_TIMEOUT, MAX_VISIBILITY_TIMEOUT};

/// How long dead letters are kept unless `dead_letters.retention` says otherwise.
pub(super) const DEFAULT_DEAD_LETTER_RETENTION: std::time::Duration =
    std::time::Duration::from_secs(30 * 86_400);

/// How long delivered deliveries are kept unless `history.retention` says otherwise.
pub(super) const DEFAULT_HISTORY_RETENTION: std::time::Duration =
    std::time::Duration::from_secs(7 * 86_400);

/// How much of them is kept unless `history.max_bytes` says otherwise.
pub(super) const DEFAULT_HISTORY_MAX_BYTES: u64 = 1 << 30;

/// Shortest admin token taken.
const MIN_ADMIN_TOKEN: usize = 16;

impl Compiler {
    pub(super) fn socket_addr(
        &mut self,
        key: &str,
        v: Option<&Scalar>,
        default: &str,
    ) -> Option<SocketAddr> {
        let text = v.map_or(default, |s| s.0.as_str()).trim();
        let text = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            format!("0.0.0.0:{text}")
        } else if let Some(port) = text.strip_prefix(':') {
            format!("0.0.0.0:{port}")
        } else {
            text.to_owned()
        };
        match text.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    key,
                    format!("{text:?} is not an address: expected IP:PORT, e.g. {default}"),
                );
                None
            }
        }
    }

    /// `admin.token`: `Some(None)` when there is none, `None` when it is invalid.
    pub(super) fn admin_token(&mut self, v: Option<&str>) -> Option<Option<Secret>> {
        let Some(token) = v else {
            return Some(None);
        };
        let token = token.trim();
        if token.chars().count() < MIN_ADMIN_TOKEN {
            self.error(
                "admin.token",
                format!(
                    "must be at least {MIN_ADMIN_TOKEN} characters (it is {})",
                    token.chars().count()
                ),
            );
            return None;
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            self.error(
                "admin.token",
                "must be printable ASCII without spaces (it is sent in an HTTP header)",
            );
            return None;
        }
        Some(Some(Secret::new(token)))
    }

    pub(super) fn upstream(&mut self, v: &Scalar) -> Option<Upstream> {
        let text = v.0.trim();
        let with_scheme = if text.contains("://") {
            text.to_owned()
        } else {
            format!("http://{text}")
        };
        let url = match Url::parse(&with_scheme) {
            Ok(u) => u,
            Err(e) => {
                self.error(
                    "upstream",
                    format!("{text:?}: {e}: expected HOST:PORT or a URL"),
                );
                return None;
            }
        };
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            other => {
                self.error(
                    "upstream",
                    format!("scheme {other:?} is not supported: use http or https"),
                );
                return None;
            }
        };
        let (host, ip) = match url.host() {
            None => {
                self.error("upstream", "needs a host: HOST:PORT or http://HOST:PORT");
                return None;
            }
            Some(url::Host::Domain(d)) => (d.to_owned(), None),
            Some(url::Host::Ipv4(a)) => (a.to_string(), Some(IpAddr::V4(a))),
            Some(url::Host::Ipv6(a)) => (a.to_string(), Some(IpAddr::V6(a))),
        };
        let port = url
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        Some(Upstream {
            url,
            host,
            port,
            tls,
            ip,
        })
    }

    pub(super) fn limits(&mut self, v: Option<&RawLimits>) -> Option<Limits> {
        let mut limits = Limits::default();
        let Some(raw) = v else {
            return Some(limits);
        };
        let before = self.errors.len();
        if let Some(size) = &raw.unverified_bytes {
            match parse_size(&size.0).and_then(|n| usize::try_from(n).ok()) {
                Some(n) if n >= 1024 => limits.unverified_bytes = n,
                Some(_) => self.error("limits.unverified_bytes", "at least 1KiB"),
                None => self.error(
                    "limits.unverified_bytes",
                    format!("{:?} is not a size: like 64MiB, 512KiB", size.0),
                ),
            }
        }
        if let Some(t) = &raw.body_timeout
            && let Some(d) = self.duration("limits.body_timeout", t, MAX_TIMEOUT)
        {
            limits.body_timeout = d;
        }
        if let Some(t) = &raw.keepalive_timeout
            && let Some(d) = self.duration("limits.keepalive_timeout", t, MAX_TIMEOUT)
        {
            if d < std::time::Duration::from_secs(1) {
                self.error("limits.keepalive_timeout", "at least 1s");
            }
            limits.keepalive_timeout = d;
        }
        if let Some(t) = &raw.header_timeout
            && let Some(d) = self.duration("limits.header_timeout", t, MAX_TIMEOUT)
        {
            if d < std::time::Duration::from_secs(1) {
                self.error("limits.header_timeout", "at least 1s");
            }
            limits.header_timeout = d;
        }
        if let Some(size) = &raw.header_bytes {
            match parse_size(&size.0).and_then(|n| usize::try_from(n).ok()) {
                Some(n) if (1024..=1024 * 1024).contains(&n) => limits.header_bytes = n,
                Some(_) => self.error("limits.header_bytes", "between 1KiB and 1MiB"),
                None => self.error(
                    "limits.header_bytes",
                    format!("{:?} is not a size: like 64KiB", size.0),
                ),
            }
        }
        if let Some(n) = &raw.max_connections {
            let text = n.0.trim();
            match text.parse::<usize>() {
                _ if text == "auto" => limits.max_connections = None,
                Ok(n) if (16..=1_000_000).contains(&n) => limits.max_connections = Some(n),
                Ok(_) => self.error("limits.max_connections", "between 16 and 1000000, or auto"),
                Err(_) => self.error(
                    "limits.max_connections",
                    format!("{text:?} is not a number of connections (or auto)"),
                ),
            }
        }
        (self.errors.len() == before).then_some(limits)
    }

    pub(super) fn tls(&mut self, v: Option<&RawTls>) -> Option<Tls> {
        let Some(path) = v.and_then(|t| t.ca_file.as_deref()) else {
            return Some(Tls::default());
        };
        let path = self.base_dir.join(path.trim());
        let pem = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                self.error(
                    "tls.ca_file",
                    format!("cannot read {}: {e}", path.display()),
                );
                return None;
            }
        };
        let certs: Result<Vec<CertificateDer<'static>>, _> =
            CertificateDer::pem_slice_iter(&pem).collect();
        match certs {
            Ok(certs) if !certs.is_empty() => Some(Tls {
                ca_file: Some(path),
                ca_certs: certs,
            }),
            Ok(_) => {
                self.error(
                    "tls.ca_file",
                    format!("{} holds no PEM certificate", path.display()),
                );
                None
            }
            Err(e) => {
                self.error(
                    "tls.ca_file",
                    format!("{}: not a PEM certificate file: {e}", path.display()),
                );
                None
            }
        }
    }

    /// `store.dedupe_window`: default 24 h, from a minute to 30 days.
    pub(super) fn dedupe_window(&mut self, v: Option<&RawStore>) -> Option<std::time::Duration> {
        let raw = match v {
            Some(
                RawStore::Embedded { dedupe_window, .. } | RawStore::Redis { dedupe_window, .. },
            ) => dedupe_window.as_ref(),
            None => None,
        };
        let Some(raw) = raw else {
            return Some(DEFAULT_DEDUPE_WINDOW);
        };
        let window = self.duration("store.dedupe_window", raw, MAX_DEDUPE_WINDOW)?;
        if window < std::time::Duration::from_secs(60) {
            self.error("store.dedupe_window", "at least 1m");
            return None;
        }
        Some(window)
    }

    /// `dead_letters.retention`: 30 days by default, at least an hour.
    pub(super) fn dead_letter_retention(
        &mut self,
        v: Option<&Scalar>,
    ) -> Option<std::time::Duration> {
        let Some(raw) = v else {
            return Some(DEFAULT_DEAD_LETTER_RETENTION);
        };
        let retention = self.duration(
            "dead_letters.retention",
            raw,
            std::time::Duration::from_secs(10 * 365 * 86_400),
        )?;
        if retention < std::time::Duration::from_secs(3600) {
            self.error("dead_letters.retention", "at least 1h");
            return None;
        }
        Some(retention)
    }

    /// `admin.max_connections`: 64 by default, 1 to 65,536.
    pub(super) fn admin_max_connections(
        &mut self,
        v: Option<&crate::raw::Scalar>,
    ) -> Option<usize> {
        let Some(raw) = v else {
            return Some(64);
        };
        match raw.0.trim().parse::<usize>() {
            Ok(n) if (1..=65_536).contains(&n) => Some(n),
            _ => {
                self.error(
                    "admin.max_connections",
                    format!("{:?}: expected a number from 1 to 65536", raw.0),
                );
                None
            }
        }
    }

    /// `history`: its retention (7 days by default, at least a minute) and size (1 GiB by
    /// default, at least 1 MiB).
    pub(super) fn history(&mut self, v: Option<&RawHistory>) -> Option<(std::time::Duration, u64)> {
        let retention = match v.and_then(|h| h.retention.as_ref()) {
            None => Some(DEFAULT_HISTORY_RETENTION),
            Some(raw) => self
                .duration(
                    "history.retention",
                    raw,
                    std::time::Duration::from_secs(10 * 365 * 86_400),
                )
                .and_then(|retention| {
                    if retention < std::time::Duration::from_secs(60) {
                        self.error("history.retention", "at least 1m");
                        None
                    } else {
                        Some(retention)
                    }
                }),
        };
        let max_bytes = match v.and_then(|h| h.max_bytes.as_ref()) {
            None => Some(DEFAULT_HISTORY_MAX_BYTES),
            Some(raw) => match super::routes::parse_size(&raw.0) {
                Some(n) if n >= 1 << 20 => Some(n),
                Some(_) => {
                    self.error("history.max_bytes", "at least 1MiB");
                    None
                }
                None => {
                    self.error(
                        "history.max_bytes",
                        format!("{:?}: expected a size such as 512MiB", raw.0),
                    );
                    None
                }
            },
        };
        Some((retention?, max_bytes?))
    }

    /// `telemetry`: an `http(s)://` endpoint, a service name, a ratio from 0 to 1.
    pub(super) fn telemetry(&mut self, v: Option<&RawTelemetry>) -> Option<Telemetry> {
        let Some(v) = v else {
            return Some(Telemetry::default());
        };
        let mut ok = true;
        let endpoint = v
            .otlp_endpoint
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty());
        if let Some(e) = endpoint {
            match url::Url::parse(e) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => {
                    self.error(
                        "telemetry.otlp_endpoint",
                        format!("{e:?}: expected an http:// or https:// URL such as http://otel-collector:4318/v1/traces"),
                    );
                    ok = false;
                }
            }
        }
        let ratio = match &v.sample_ratio {
            None => None,
            Some(raw) => match raw.0.trim().parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Some(r),
                _ => {
                    self.error(
                        "telemetry.sample_ratio",
                        format!("{:?}: expected a number from 0 to 1", raw.0),
                    );
                    ok = false;
                    None
                }
            },
        };
        ok.then(|| Telemetry {
            otlp_endpoint: endpoint.map(str::to_owned),
            service_name: v
                .service_name
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            sample_ratio: ratio,
        })
    }

    /// `store.max_bytes`: `auto` (`None`, the default) or a size of at least 1 MiB.
    pub(super) fn store_max_bytes(&mut self, v: Option<&RawStore>) -> Option<Option<u64>> {
        let raw = match v {
            Some(RawStore::Embedded { max_bytes, .. }) => max_bytes.as_ref(),
            _ => None,
        };
        self.auto_or_size(
            "store.max_bytes",
            raw,
            1 << 20,
            "`auto` or a size such as 2GiB",
        )
    }

    /// `store.min_free`: `auto` (`None`, the default) or a size (`0`: none).
    pub(super) fn store_min_free(&mut self, v: Option<&RawStore>) -> Option<Option<u64>> {
        let raw = match v {
            Some(RawStore::Embedded { min_free, .. }) => min_free.as_ref(),
            _ => None,
        };
        self.auto_or_size(
            "store.min_free",
            raw,
            0,
            "`auto`, `0` or a size such as 256MiB",
        )
    }

    /// A setting that is `auto` (`None`; also when absent) or a size of at least `min`
    /// bytes; an error at `path` naming `expected` otherwise.
    fn auto_or_size(
        &mut self,
        path: &str,
        raw: Option<&Scalar>,
        min: u64,
        expected: &str,
    ) -> Option<Option<u64>> {
        let Some(raw) = raw else {
            return Some(None);
        };
        if raw.0.trim() == "auto" {
            return Some(None);
        }
        match super::routes::parse_size(&raw.0) {
            Some(n) if n >= min => Some(Some(n)),
            Some(_) => {
                self.error(path, format!("at least {}MiB", min >> 20));
                None
            }
            None => {
                self.error(path, format!("{:?}: expected {expected}", raw.0));
                None
            }
        }
    }

    pub(super) fn store(&mut self, v: Option<&RawStore>) -> Option<Store> {
        match v {
            None => Some(Store::Embedded {
                path: PathBuf::from("./data"),
            }),
            Some(RawStore::Embedded { path, .. }) if path.trim().is_empty() => {
                self.error("store.path", "must not be empty");
                None
            }
            Some(RawStore::Embedded { path, .. }) => Some(Store::Embedded {
                path: PathBuf::from(path),
            }),
            Some(RawStore::Redis {
                url,
                visibility_timeout,
                ..
            }) => match Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "redis" | "rediss" | "redis+unix") => {
                    let visibility_timeout = match visibility_timeout {
                        Some(t) => {
                            self.duration("store.visibility_timeout", t, MAX_VISIBILITY_TIMEOUT)?
                        }
                        None => DEFAULT_VISIBILITY_TIMEOUT,
                    };
                    Some(Store::Redis {
                        url: Secret::new(url.clone()),
                        visibility_timeout,
                    })
                }
                Ok(u) => {
                    self.error(
                        "store.url",
                        format!("scheme {:?}: expected redis:// or rediss://", u.scheme()),
                    );
                    None
                }
                Err(e) => {
                    self.error("store.url", format!("not a URL: {e}"));
                    None
                }
            },
        }
    }
}
