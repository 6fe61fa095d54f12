//! From file bytes to a [`Snapshot`]: parse, resolve references, read the raw model,
//! check and compile, collecting every problem with its YAML path and line.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hookrelay_core::payload::{Format, PayloadOptions};
use hookrelay_core::provider::generic::Spec;
use hookrelay_core::signing::SigningSecret;
use hookrelay_core::{
    Channel, EventType, Provider, Secret, Status, Verifier, VerifyConfigError, VerifySettings,
};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

use crate::error::{ConfigError, ConfigErrors};
use crate::interp::{self, EnvLookup};
use crate::raw::{
    Mode, OneOrMany, RawCallback, RawConfig, RawEndpoint, RawFormat, RawStore, Scalar, Verify,
};
use crate::snapshot::{Endpoint, RateLimit, Retry, Route, Snapshot, Store};
use crate::tree::{self, Index, Located, Node};

/// Default public listener.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
/// Default admin listener.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9090";
/// Default largest callback body (1 MiB).
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// Largest body of a `mode: tap` route (also its default): the body read for the enqueue
/// is replayed to the upstream from Pingora's 64 KiB retry buffer.
pub const MAX_TAP_BODY: usize = 64 * 1024;
/// Default timeout of one delivery attempt.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a dead replica's deliveries stay invisible when `store.visibility_timeout` is
/// not set.
pub const DEFAULT_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(30);
/// Delivery attempts in flight per endpoint when `concurrency` is not set.
pub const DEFAULT_CONCURRENCY: u32 = 16;
const MAX_MAX_BODY: u64 = 1024 * 1024 * 1024;

/// Headers hookrelay sets itself; an endpoint may not override them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// A configuration file's bytes and what its references resolve against.
#[derive(Clone)]
pub struct Source {
    name: String,
    bytes: Vec<u8>,
    base_dir: PathBuf,
    env: Arc<EnvLookup>,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("name", &self.name)
            .field("len", &self.bytes.len())
            .field("base_dir", &self.base_dir)
            .finish_non_exhaustive()
    }
}

impl Source {
    /// Text of a file named `name` (for messages); `${file:…}` paths are relative to the
    /// current directory; `${VAR}` reads the process environment.
    #[must_use]
    pub fn new(name: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            name: name.into(),
            bytes: bytes.into(),
            base_dir: PathBuf::from("."),
            env: Arc::new(|k: &str| std::env::var(k).ok()),
        }
    }

    /// Reads `path` (following symlinks); relative `${file:…}` paths resolve against its
    /// directory.
    pub fn read(path: &Path) -> Result<Self, ConfigErrors> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| {
            ConfigErrors::one(
                name.clone(),
                ConfigError::new("", format!("cannot read: {e}")),
            )
        })?;
        let base_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Ok(Self {
            base_dir,
            ..Self::new(name, bytes)
        })
    }

    /// Resolves `${VAR}` with `env` instead of the process environment.
    #[must_use]
    pub fn with_env(mut self, env: Arc<EnvLookup>) -> Self {
        self.env = env;
        self
    }

    /// Resolves relative `${file:…}` paths against `dir`.
    #[must_use]
    pub fn with_base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_dir = dir.into();
        self
    }

    /// The name used in messages.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// SHA-256 (hex) of the bytes.
    #[must_use]
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(&self.bytes))
    }
}

impl TryFrom<&Source> for Snapshot {
    type Error = ConfigErrors;

    /// Parses, checks and compiles the whole file. Every problem is reported; nothing
    /// panics on any input.
    fn try_from(source: &Source) -> Result<Snapshot, ConfigErrors> {
        let mut c = Compiler {
            index: Index::default(),
            errors: Vec::new(),
            warnings: Vec::new(),
            base_dir: source.base_dir.clone(),
        };
        let snapshot = c.run(source);
        if c.errors.is_empty()
            && let Some(mut s) = snapshot
        {
            s.warnings = c.warnings;
            return Ok(s);
        }
        let mut errors = ConfigErrors {
            file: source.name.clone(),
            errors: c.errors,
        };
        if errors.is_empty() {
            errors
                .errors
                .push(ConfigError::new("", "the configuration is invalid"));
        }
        errors.sort();
        Err(errors)
    }
}

struct Compiler {
    index: Index,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
    base_dir: PathBuf,
}

impl Compiler {
    fn error(&mut self, path: &str, message: impl Into<String>) {
        let e = ConfigError::new(path, message).at(self.index.value(path));
        self.errors.push(e);
    }

    fn key_error(&mut self, path: &str, message: impl Into<String>) {
        let e = ConfigError::new(path, message).at(self.index.key(path));
        self.errors.push(e);
    }

    fn warn(&mut self, path: &str, message: impl Into<String>) {
        let e = ConfigError::new(path, message).at(self.index.value(path));
        self.warnings.push(e);
    }

    fn run(&mut self, source: &Source) -> Option<Snapshot> {
        let Ok(text) = std::str::from_utf8(&source.bytes) else {
            self.error("", "the file is not valid UTF-8");
            return None;
        };
        let mut root = match tree::parse(text) {
            Ok(r) => r,
            Err(e) => {
                self.errors.push(e);
                return None;
            }
        };
        if !matches!(root.node, Node::Map(_)) {
            self.errors.push(
                ConfigError::new(
                    "",
                    "the file must be a YAML mapping (listen:, callbacks:, …)",
                )
                .at(Some(root.pos)),
            );
            return None;
        }
        self.index = Index::build(&root);
        self.resolve_references(&mut root, &source.env);

        let mut json = root.to_json();
        let callbacks = take_list(&mut json, "callbacks");
        let endpoints = take_list(&mut json, "endpoints");
        let top: Option<RawConfig> = self.deserialize("", json);

        let callbacks: Vec<(usize, RawCallback)> = callbacks
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| Some((i, self.deserialize(&format!("callbacks[{i}]"), v)?)))
            .collect();
        let endpoints: Vec<(usize, RawEndpoint)> = endpoints
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| Some((i, self.deserialize(&format!("endpoints[{i}]"), v)?)))
            .collect();

        let routes = self.routes(&callbacks);
        let endpoints = self.endpoints(&endpoints);
        let top = top?;

        let listen = self.socket_addr("listen", top.listen.as_ref(), DEFAULT_LISTEN);
        let admin = self.socket_addr("admin", top.admin.as_ref(), DEFAULT_ADMIN);
        if let (Some(l), Some(a)) = (listen, admin) {
            if l.port() == a.port()
                && (l.ip() == a.ip() || l.ip().is_unspecified() || a.ip().is_unspecified())
            {
                self.error("admin", format!("{a} is the same as listen ({l})"));
            }
            if !a.ip().is_loopback() {
                self.warn(
                    "admin",
                    format!(
                        "the admin API ({a}) is reachable beyond this host and has no \
                         authentication"
                    ),
                );
            }
        }
        let upstream = self.upstream(&top.upstream);
        let store = self.store(top.store.as_ref());
        if endpoints.is_empty() && self.errors.is_empty() {
            self.warn(
                "endpoints",
                "no endpoints: callbacks are verified and answered but nothing is delivered",
            );
        }
        let key_pos = ["listen", "admin", "store"]
            .into_iter()
            .filter_map(|k| Some((k, self.index.value(k)?)))
            .collect();
        let by_name = endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        Some(Snapshot {
            generation: 1,
            hash: source.hash(),
            listen: listen?,
            admin: admin?,
            upstream: upstream?,
            store: store?,
            routes,
            endpoints,
            warnings: Vec::new(),
            by_name,
            key_pos,
        })
    }

    fn resolve_references(&mut self, root: &mut Located, env: &Arc<EnvLookup>) {
        let base = self.base_dir.clone();
        let mut problems = Vec::new();
        root.map_strings(
            "",
            &mut |path, s, pos| match interp::resolve(s, env.as_ref(), &base) {
                Ok(v) => v,
                Err(why) => {
                    problems.push(ConfigError::new(path, why).at(Some(pos)));
                    None
                }
            },
        );
        self.errors.extend(problems);
    }

    /// Reads a raw value, reporting a type or key problem at its exact path.
    ///
    /// Serde stops at the first problem, so after one the offending key is set aside and
    /// the value read again, to report the problems of the other keys too. `None` when
    /// the value cannot be read even without its bad keys.
    fn deserialize<T: DeserializeOwned>(&mut self, prefix: &str, mut value: Value) -> Option<T> {
        let mut set_aside: Vec<String> = Vec::new();
        loop {
            let e = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
                Ok(t) => return Some(t),
                Err(e) => e,
            };
            let mut keys: Vec<String> = Vec::new();
            let mut path = prefix.to_owned();
            for seg in e.path().iter() {
                match seg {
                    serde_path_to_error::Segment::Seq { index } => {
                        path.push_str(&format!("[{index}]"));
                    }
                    serde_path_to_error::Segment::Map { key }
                    | serde_path_to_error::Segment::Enum { variant: key } => {
                        path = tree::join(&path, key);
                        keys.push(key.clone());
                    }
                    serde_path_to_error::Segment::Unknown => {}
                }
            }
            let message = e.into_inner().to_string();
            if let Some(field) = message
                .strip_prefix("unknown field `")
                .and_then(|m| m.split('`').next())
            {
                if keys.last().map(String::as_str) != Some(field) {
                    path = tree::join(&path, field);
                    keys.push(field.to_owned());
                }
                let message = message.replacen("unknown field", "unknown key", 1);
                self.key_error(&path, message);
            } else if keys.is_empty()
                && message
                    .strip_prefix("missing field `")
                    .and_then(|m| m.split('`').next())
                    .is_some_and(|f| set_aside.iter().any(|k| k == f))
            {
                // The required key was set aside: its problem is already reported.
                return None;
            } else {
                let message = message.replacen("missing field", "missing key", 1);
                self.error(&path, message);
            }
            // Set the top key of the problem aside and try again.
            let top = keys.into_iter().next()?;
            let removed = value.as_object_mut().and_then(|m| m.remove(&top));
            if removed.is_none() || set_aside.len() >= 32 {
                return None;
            }
            set_aside.push(top);
        }
    }

    fn socket_addr(&mut self, key: &str, v: Option<&Scalar>, default: &str) -> Option<SocketAddr> {
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

    fn upstream(&mut self, v: &Scalar) -> Option<Url> {
        let text = v.0.trim();
        let with_scheme = if text.contains("://") {
            text.to_owned()
        } else {
            format!("http://{text}")
        };
        match Url::parse(&with_scheme) {
            Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                self.error(
                    "upstream",
                    format!(
                        "scheme {:?} is not supported: use http or https",
                        u.scheme()
                    ),
                );
                None
            }
            Ok(u) if u.host().is_none() => {
                self.error("upstream", "needs a host: HOST:PORT or http://HOST:PORT");
                None
            }
            Ok(u) => Some(u),
            Err(e) => {
                self.error(
                    "upstream",
                    format!("{text:?}: {e}: expected HOST:PORT or a URL"),
                );
                None
            }
        }
    }

    fn store(&mut self, v: Option<&RawStore>) -> Option<Store> {
        match v {
            None => Some(Store::Embedded {
                path: PathBuf::from("./data"),
            }),
            Some(RawStore::Embedded { path }) if path.trim().is_empty() => {
                self.error("store.path", "must not be empty");
                None
            }
            Some(RawStore::Embedded { path }) => Some(Store::Embedded {
                path: PathBuf::from(path),
            }),
            Some(RawStore::Redis {
                url,
                visibility_timeout,
            }) => match Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "redis" | "rediss" | "redis+unix") => {
                    let visibility_timeout = match visibility_timeout {
                        Some(t) => self.duration("store.visibility_timeout", t)?,
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

    // ------------------------------------------------------------------------------
    // Callbacks

    fn routes(&mut self, callbacks: &[(usize, RawCallback)]) -> BTreeMap<String, Route> {
        // Generic providers defined anywhere in the file, by name, for routes that refer
        // to one by name only.
        let mut generic: HashMap<String, Arc<Spec>> = HashMap::new();
        let mut specs: HashMap<usize, Option<Arc<Spec>>> = HashMap::new();
        for (i, cb) in callbacks {
            if let Some(value) = &cb.generic {
                let spec = self.generic_spec(*i, cb, value.clone());
                if let Some(spec) = &spec {
                    if generic.contains_key(&spec.name) {
                        self.error(
                            &format!("callbacks[{i}].generic.name"),
                            format!(
                                "generic provider {:?} is defined twice: define it once and \
                                 refer to it by name",
                                spec.name
                            ),
                        );
                    } else {
                        generic.insert(spec.name.clone(), spec.clone());
                    }
                }
                specs.insert(*i, spec);
            }
        }
        let mut routes = BTreeMap::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, cb) in callbacks {
            let p = format!("callbacks[{i}]");
            let path = cb.path.trim();
            if let Some(why) = path_problem(path) {
                self.error(&format!("{p}.path"), why);
            } else if let Some(first) = seen.get(path) {
                let line = self.line_note(&format!("callbacks[{first}].path"));
                self.error(
                    &format!("{p}.path"),
                    format!("duplicate callback path {path} (first at callbacks[{first}]{line})"),
                );
            } else {
                seen.insert(path.to_owned(), *i);
            }
            let provider = match (Provider::builtin(&cb.provider), specs.get(i)) {
                (Some(_), Some(_)) => {
                    self.error(
                        &format!("{p}.generic"),
                        format!(
                            "{} is a built-in provider: `generic:` is only for providers \
                             defined by a mapping",
                            cb.provider
                        ),
                    );
                    None
                }
                (Some(b), None) => Some(b),
                (None, Some(spec)) => spec.clone().map(Provider::Generic),
                (None, None) => match generic.get(&cb.provider) {
                    Some(spec) => Some(Provider::Generic(spec.clone())),
                    None if cb.provider == "generic" => {
                        self.error(
                            &format!("{p}.provider"),
                            "provider generic needs a `generic:` block describing it",
                        );
                        None
                    }
                    None => {
                        self.error(
                            &format!("{p}.provider"),
                            format!(
                                "unknown provider {:?} (built-in: {}; or define it with a \
                                 `generic:` block)",
                                cb.provider,
                                Provider::BUILTIN.join(", ")
                            ),
                        );
                        None
                    }
                },
            };
            let verifier = provider
                .as_ref()
                .and_then(|prov| self.verifier(&p, cb, prov));
            let max_body = self.max_body(&p, cb.max_body.as_ref(), cb.mode);
            if let (Some(provider), Some(verifier), Some(max_body)) = (provider, verifier, max_body)
            {
                routes.insert(
                    path.to_owned(),
                    Route {
                        path: path.to_owned(),
                        provider,
                        mode: cb.mode,
                        verifier,
                        max_body,
                        informational: cb.informational,
                    },
                );
            }
        }
        routes
    }

    fn line_note(&self, path: &str) -> String {
        self.index
            .value(path)
            .map(|p| format!(", line {}", p.line))
            .unwrap_or_default()
    }

    fn generic_spec(&mut self, i: usize, cb: &RawCallback, mut value: Value) -> Option<Arc<Spec>> {
        let p = format!("callbacks[{i}].generic");
        let Value::Object(map) = &mut value else {
            self.error(&p, "expected a mapping describing the provider");
            return None;
        };
        match map.get("name") {
            None if cb.provider != "generic" => {
                map.insert("name".into(), Value::String(cb.provider.clone()));
            }
            Some(Value::String(n)) if cb.provider != "generic" && *n != cb.provider => {
                self.error(
                    &format!("{p}.name"),
                    format!(
                        "{n:?} differs from the route's provider {:?}: make them equal, or \
                         omit name",
                        cb.provider
                    ),
                );
                return None;
            }
            _ => {}
        }
        let spec: Spec = self.deserialize(&p, value)?;
        let problems = spec.problems();
        for problem in &problems {
            match problem.split_once(": ") {
                Some((key, why)) if !key.contains(' ') => {
                    self.error(&format!("{p}.{key}"), why.to_owned());
                }
                _ => self.error(&p, problem.clone()),
            }
        }
        problems.is_empty().then(|| Arc::new(spec))
    }

    /// `Some(None)` for an explicit `verify: none`.
    fn verifier(
        &mut self,
        p: &str,
        cb: &RawCallback,
        provider: &Provider,
    ) -> Option<Option<Verifier>> {
        let entries = match &cb.verify {
            Verify::None => {
                self.warn(
                    &format!("{p}.verify"),
                    format!(
                        "verify: none: callbacks on {} are accepted WITHOUT any signature \
                         check; anyone who can reach it can inject events",
                        cb.path
                    ),
                );
                return Some(None);
            }
            Verify::Settings(entries) => entries,
        };
        let mut settings = VerifySettings::new();
        let mut ok = true;
        for (key, value) in entries {
            if key == "cert_file" && matches!(provider, Provider::Ses) {
                let path = self.base_dir.join(&value.0);
                match std::fs::read_to_string(&path) {
                    Ok(pem) => settings.insert("cert_pem", pem),
                    Err(e) => {
                        self.error(
                            &format!("{p}.verify.cert_file"),
                            format!("cannot read {}: {e}", path.display()),
                        );
                        ok = false;
                    }
                }
            } else {
                settings.insert(key.clone(), value.0.clone());
            }
        }
        if !ok {
            return None;
        }
        match Verifier::new(provider, &settings) {
            Ok(v) => Some(Some(v)),
            Err(e) => {
                let key = match &e {
                    VerifyConfigError::Missing { .. } => None,
                    VerifyConfigError::Invalid { key, .. } => Some((*key).to_owned()),
                    VerifyConfigError::Unknown { key, .. } => Some(key.clone()),
                    _ => None,
                };
                let key = key.map(|k| {
                    if k == "cert_pem" && entries.contains_key("cert_file") {
                        "cert_file".to_owned()
                    } else {
                        k
                    }
                });
                let mut message = e.to_string();
                if matches!(provider, Provider::Ses) {
                    message = message.replace(
                        "needs `cert_pem`",
                        "needs `cert_file` (the SNS signing certificate, PEM)",
                    );
                }
                if matches!(e, VerifyConfigError::Missing { .. }) {
                    message.push_str(
                        " under verify: (verification fails closed; write `verify: none` to \
                         accept unverified callbacks)",
                    );
                }
                match key {
                    Some(k) if k == "signature" && cb.generic.is_some() => {
                        self.error(&format!("{p}.generic.signature"), message);
                    }
                    Some(k) if k == "signature" => self.error(&format!("{p}.provider"), message),
                    Some(k) => self.key_error(&format!("{p}.verify.{k}"), message),
                    None => self.error(&format!("{p}.verify"), message),
                }
                None
            }
        }
    }

    fn max_body(&mut self, p: &str, v: Option<&Scalar>, mode: Mode) -> Option<usize> {
        let Some(v) = v else {
            return Some(match mode {
                Mode::Tap => MAX_TAP_BODY,
                _ => DEFAULT_MAX_BODY,
            });
        };
        let path = format!("{p}.max_body");
        match parse_size(&v.0) {
            Some(0) => {
                self.error(&path, "must be greater than zero");
                None
            }
            Some(n) if mode == Mode::Tap && n > MAX_TAP_BODY as u64 => {
                self.error(
                    &path,
                    format!(
                        "{} is more than a tap route can forward: the body is replayed to \
                         the upstream from a 64KiB buffer (at most 64KiB)",
                        v.0
                    ),
                );
                None
            }
            Some(n) if n > MAX_MAX_BODY => {
                self.error(&path, format!("{} is more than the limit of 1GiB", v.0));
                None
            }
            Some(n) => usize::try_from(n).ok(),
            None => {
                self.error(
                    &path,
                    format!("{:?} is not a size: bytes, or like 512KiB, 1MiB, 2MB", v.0),
                );
                None
            }
        }
    }

    // ------------------------------------------------------------------------------
    // Endpoints

    fn endpoints(&mut self, raws: &[(usize, RawEndpoint)]) -> Vec<Endpoint> {
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
                Some(RateLimit {
                    per_second: per_second?,
                    burst: burst?,
                })
            });
            let headers = self.headers(&p, &raw.headers);
            let signing_secrets = self.signing_secrets(&p, raw.signing_secret.as_ref());
            let retry = self.retry(&p, raw);
            let timeout = match &raw.timeout {
                Some(t) => self.duration(&format!("{p}.timeout"), t),
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
                signing_secrets,
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

    fn endpoint_url(&mut self, p: &str, text: &str, allow_link_local: bool) -> Option<Url> {
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
            && is_link_local(ip)
            && !allow_link_local
        {
            self.error(
                &path,
                format!(
                    "{ip} is link-local (cloud metadata services live there); set \
                     allow_link_local: true if this is intended"
                ),
            );
            return None;
        }
        Some(url)
    }

    fn names<T: std::str::FromStr + Eq + std::hash::Hash>(
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
    fn events(
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

    fn positive(&mut self, path: &str, v: i64) -> Option<NonZeroU32> {
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

    fn headers(&mut self, p: &str, raw: &BTreeMap<String, Scalar>) -> HeaderMap {
        let mut out = HeaderMap::new();
        for (name, value) in raw {
            let path = format!("{p}.headers.{name}");
            let Ok(hname) = HeaderName::from_bytes(name.trim().as_bytes()) else {
                self.key_error(&path, format!("{name:?} is not a valid header name"));
                continue;
            };
            if RESERVED_HEADERS.contains(&hname.as_str()) {
                self.key_error(
                    &path,
                    format!("{hname} is set by hookrelay itself and cannot be configured"),
                );
                continue;
            }
            if out.contains_key(&hname) {
                self.key_error(&path, format!("header {hname} is listed twice"));
                continue;
            }
            match HeaderValue::from_str(&value.0) {
                Ok(mut v) => {
                    if matches!(
                        hname.as_str(),
                        "authorization" | "proxy-authorization" | "cookie"
                    ) || hname.as_str().contains("key")
                        || hname.as_str().contains("token")
                        || hname.as_str().contains("secret")
                    {
                        v.set_sensitive(true);
                    }
                    out.insert(hname, v);
                }
                Err(_) => self.error(
                    &path,
                    "invalid header value: only visible ASCII, spaces and tabs (no line breaks)",
                ),
            }
        }
        out
    }

    fn signing_secrets(&mut self, p: &str, v: Option<&OneOrMany>) -> Vec<SigningSecret> {
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

    fn retry(&mut self, p: &str, raw: &RawEndpoint) -> Retry {
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
            && let Some(d) = self.duration(&format!("{p}.max_age"), a)
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
                .filter_map(|(j, d)| self.duration(&format!("{p}.backoff[{j}]"), d))
                .collect();
            if !parsed.is_empty() {
                retry.backoff = parsed;
            }
        }
        retry
    }

    fn duration(&mut self, path: &str, v: &Scalar) -> Option<Duration> {
        let text = v.0.trim();
        let parsed = if text.bytes().all(|b| b.is_ascii_digit()) && !text.is_empty() {
            text.parse::<u64>().ok().map(Duration::from_secs)
        } else {
            humantime::parse_duration(text).ok()
        };
        match parsed {
            Some(d) if d.is_zero() => {
                self.error(path, "must be greater than zero");
                None
            }
            Some(d) => Some(d),
            None => {
                self.error(
                    path,
                    format!("{text:?} is not a duration: like 500ms, 10s, 2m, 24h"),
                );
                None
            }
        }
    }
}

/// Moves the list at `key` out of the root object (for item-by-item reading); a value
/// that is not a list stays, so the raw model reports its type.
fn take_list(root: &mut Value, key: &str) -> Vec<Value> {
    match root.get_mut(key) {
        Some(Value::Array(items)) => std::mem::take(items),
        _ => Vec::new(),
    }
}

fn path_problem(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return Some(format!("{path:?} must start with /"));
    }
    if path.contains(['?', '#']) {
        return Some(format!("{path:?}: a path only, without query or fragment"));
    }
    if path.parse::<http::uri::PathAndQuery>().is_err() || path.contains(char::is_whitespace) {
        return Some(format!("{path:?} is not a valid request path"));
    }
    None
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => {
            (a.segments()[0] & 0xffc0) == 0xfe80
                || a.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local())
        }
    }
}

/// `1048576`, `512KiB`, `1MiB`, `2MB`, `1.5MiB` → bytes.
fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1024,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1024 * 1024,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1024 * 1024 * 1024,
        _ => return None,
    };
    if num.contains('.') {
        let f: f64 = num.parse().ok()?;
        let bytes = f * mult as f64;
        (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
    } else {
        num.parse::<u64>().ok()?.checked_mul(mult)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MiB"), Some(1024 * 1024));
        assert_eq!(parse_size("512 KiB"), Some(512 * 1024));
        assert_eq!(parse_size("2MB"), Some(2_000_000));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("1.5kib"), Some(1536));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("-1"), None);
    }

    #[test]
    fn link_local() {
        assert!(is_link_local("169.254.169.254".parse().expect("ip")));
        assert!(is_link_local("fe80::1".parse().expect("ip")));
        assert!(!is_link_local("10.0.0.1".parse().expect("ip")));
    }
}
