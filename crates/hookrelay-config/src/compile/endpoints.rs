//! Endpoints: URL, filters, rate, headers, signing, retry.

use super::*;

use super::values::{MAX_BACKOFF, MAX_RETRY_AGE, MAX_TIMEOUT};
use crate::ssrf;
use hookrelay_core::signing::Signer;
use hookrelay_tower::gcra::Gcra;
use hookrelay_tower::set_headers::{HeaderError, HeaderSet, Mode as HeaderMode};

impl Compiler {
    pub(super) fn endpoints(&mut self, raws: &[(usize, RawEndpoint)]) -> Vec<Endpoint> {
        let mut out = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, raw) in raws {
            let p = format!("endpoints[{i}]");
            let name = raw.name.trim().to_owned();
            let errors_before = self.errors.len();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            {
                self.error(
                    &format!("{p}.name"),
                    format!("{name:?}: use letters, digits, `_`, `-`, `.` (it names metrics)"),
                );
            } else if let Some(first) = seen.get(&name) {
                let line = self.line_note(&format!("endpoints[{first}].name"));
                self.error(
                    &format!("{p}.name"),
                    format!("duplicate endpoint name {name:?} (first at endpoints[{first}]{line})"),
                );
            } else {
                seen.insert(name.clone(), *i);
            }
            let url = self.endpoint_url(&p, &raw.url, raw.allow_link_local);
            let events = self.events(&p, raw.events.as_ref());
            let statuses = raw.statuses.as_ref().map(|s| {
                self.names::<Status>(&format!("{p}.statuses"), s, "status", Status::NAMES)
            });
            let rate_limit = raw.rate_limit.as_ref().and_then(|r| {
                let per_second = self.positive(&format!("{p}.rate_limit.per_second"), r.per_second);
                let burst = match r.burst {
                    Some(b) => self.positive(&format!("{p}.rate_limit.burst"), b),
                    None => per_second,
                };
                Some(Gcra::new(per_second?, burst?))
            });
            let headers = self.headers(&p, &raw.headers);
            let signing_secrets = self.signing_secrets(&p, raw.signing_secret.as_ref());
            let retry = self.retry(&p, raw);
            let timeout = match &raw.timeout {
                Some(t) => self.duration(&format!("{p}.timeout"), t, MAX_TIMEOUT),
                None => Some(DEFAULT_TIMEOUT),
            };
            let concurrency = match raw.concurrency {
                Some(c) => self.positive(&format!("{p}.concurrency"), c),
                None => NonZeroU32::new(DEFAULT_CONCURRENCY),
            };
            if self.errors.len() > errors_before {
                continue;
            }
            let (Some(url), Some(events), Some(timeout), Some(concurrency)) =
                (url, events, timeout, concurrency)
            else {
                continue;
            };
            out.push(Endpoint {
                name,
                url,
                description: raw.description.clone(),
                events,
                statuses,
                rate_limit,
                headers,
                signer: Signer::new(signing_secrets),
                payload: PayloadOptions {
                    format: match raw.format {
                        RawFormat::Suprsend => Format::Suprsend,
                        RawFormat::Standard => Format::Standard,
                    },
                    include_raw: raw.include_raw.unwrap_or(true),
                    ..PayloadOptions::default()
                },
                retry,
                timeout,
                allow_link_local: raw.allow_link_local,
                concurrency,
            });
        }
        out
    }

    pub(super) fn endpoint_url(
        &mut self,
        p: &str,
        text: &str,
        allow_link_local: bool,
    ) -> Option<Url> {
        let path = format!("{p}.url");
        let url = match Url::parse(text.trim()) {
            Ok(u) => u,
            Err(e) => {
                self.error(&path, format!("{text:?} is not a URL: {e}"));
                return None;
            }
        };
        if !matches!(url.scheme(), "http" | "https") {
            self.error(
                &path,
                format!(
                    "scheme {:?} is not allowed: only http and https",
                    url.scheme()
                ),
            );
            return None;
        }
        let ip = match url.host() {
            None => {
                self.error(&path, "needs a host");
                return None;
            }
            Some(url::Host::Ipv4(a)) => Some(IpAddr::V4(a)),
            Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
            Some(url::Host::Domain(_)) => None,
        };
        if let Some(ip) = ip
            && ssrf::is_guarded(ip)
            && !allow_link_local
        {
            self.error(
                &path,
                format!(
                    "{ip} is a link-local or cloud metadata address; set \
                     allow_link_local: true if this is intended"
                ),
            );
            return None;
        }
        Some(url)
    }

    pub(super) fn names<T: std::str::FromStr + Eq + std::hash::Hash>(
        &mut self,
        path: &str,
        list: &OneOrMany,
        what: &str,
        known: &[&str],
    ) -> HashSet<T> {
        let mut out = HashSet::new();
        for (j, name) in list.0.iter().enumerate() {
            match name.trim().parse::<T>() {
                Ok(v) => {
                    out.insert(v);
                }
                Err(_) => self.error(
                    &format!("{path}[{j}]"),
                    format!("unknown {what} {name:?} (known: {})", known.join(", ")),
                ),
            }
        }
        out
    }

    #[allow(clippy::type_complexity)]
    pub(super) fn events(
        &mut self,
        p: &str,
        v: Option<&BTreeMap<String, OneOrMany>>,
    ) -> Option<Option<HashMap<Channel, HashSet<EventType>>>> {
        let Some(map) = v else {
            return Some(None);
        };
        let path = format!("{p}.events");
        if map.is_empty() {
            self.error(
                &path,
                "empty: the endpoint would receive nothing (omit `events` to receive everything)",
            );
            return None;
        }
        let mut out = HashMap::new();
        for (channel, types) in map {
            let cpath = format!("{path}.{channel}");
            let set = self.names::<EventType>(&cpath, types, "event type", EventType::NAMES);
            match channel.parse::<Channel>() {
                Ok(c) => {
                    out.insert(c, set);
                }
                Err(_) => self.key_error(
                    &cpath,
                    format!(
                        "unknown channel {channel:?} (known: {})",
                        Channel::NAMES.join(", ")
                    ),
                ),
            }
        }
        Some(Some(out))
    }

    pub(super) fn positive(&mut self, path: &str, v: i64) -> Option<NonZeroU32> {
        match u32::try_from(v).ok().and_then(NonZeroU32::new) {
            Some(n) => Some(n),
            None if v <= 0 => {
                self.error(path, format!("must be at least 1 (found {v})"));
                None
            }
            None => {
                self.error(path, format!("{v} is too large (at most {})", u32::MAX));
                None
            }
        }
    }

    /// The endpoint's headers as the delivery stack will set them: the rule of which
    /// headers may be configured is the stack's own ([`HeaderSet::with`]), so what
    /// validates is what is sent.
    pub(super) fn headers(&mut self, p: &str, raw: &BTreeMap<String, Scalar>) -> HeaderSet {
        let mut out = HeaderSet::new();
        let mut seen = HashSet::new();
        for (name, value) in raw {
            let path = format!("{p}.headers.{name}");
            let Ok(hname) = HeaderName::from_bytes(name.trim().as_bytes()) else {
                self.key_error(&path, format!("{name:?} is not a valid header name"));
                continue;
            };
            if !seen.insert(hname.clone()) {
                self.key_error(&path, format!("header {hname} is listed twice"));
                continue;
            }
            let Ok(hvalue) = HeaderValue::from_str(&value.0) else {
                self.error(
                    &path,
                    "invalid header value: only visible ASCII, spaces and tabs (no line breaks)",
                );
                continue;
            };
            match out.clone().with(hname, hvalue, HeaderMode::Override) {
                Ok(set) => out = set,
                Err(HeaderError::Reserved { name }) => self.key_error(
                    &path,
                    format!(
                        "{name} is set by hookrelay or the HTTP stack itself (framing, \
                         hop-by-hop or signing header) and cannot be configured"
                    ),
                ),
                Err(e) => self.key_error(&path, e.to_string()),
            }
        }
        out
    }

    pub(super) fn signing_secrets(&mut self, p: &str, v: Option<&OneOrMany>) -> Vec<SigningSecret> {
        let Some(list) = v else {
            return Vec::new();
        };
        let path = format!("{p}.signing_secret");
        if list.0.is_empty() {
            self.error(
                &path,
                "empty list: omit signing_secret to send unsigned payloads",
            );
        }
        let mut out = Vec::new();
        for (j, s) in list.0.iter().enumerate() {
            match s.parse::<SigningSecret>() {
                Ok(secret) => out.push(secret),
                Err(e) => self.error(
                    &format!("{path}[{j}]"),
                    format!("{e} (expected whsec_<base64>)"),
                ),
            }
        }
        out
    }

    pub(super) fn retry(&mut self, p: &str, raw: &RawEndpoint) -> Retry {
        let mut retry = Retry::default();
        let Some(r) = &raw.retry else {
            return retry;
        };
        let p = format!("{p}.retry");
        if let Some(n) = r.max_attempts
            && let Some(n) = self.positive(&format!("{p}.max_attempts"), n)
        {
            retry.max_attempts = n;
        }
        if let Some(a) = &r.max_age
            && let Some(d) = self.duration(&format!("{p}.max_age"), a, MAX_RETRY_AGE)
        {
            retry.max_age = d;
        }
        if let Some(list) = &r.backoff {
            if list.is_empty() {
                self.error(
                    &format!("{p}.backoff"),
                    "empty: omit it for the default schedule",
                );
            }
            let parsed: Vec<_> = list
                .iter()
                .enumerate()
                .filter_map(|(j, d)| self.duration(&format!("{p}.backoff[{j}]"), d, MAX_BACKOFF))
                .collect();
            if !parsed.is_empty() {
                retry.backoff = parsed;
            }
        }
        retry
    }
}
