//! From file bytes to a [`Snapshot`]: parse, resolve references, read the raw model,
//! check and compile, collecting every problem with its YAML path and line.

mod endpoints;
mod routes;
mod top;
mod values;

pub use values::{MAX_BACKOFF, MAX_RETRY_AGE, MAX_TIMEOUT, MAX_VISIBILITY_TIMEOUT};

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
use http::{HeaderName, HeaderValue};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

use crate::error::{ConfigError, ConfigErrors};
use crate::interp::{self, EnvLookup};
use crate::raw::{
    Mode, OneOrMany, RawAdmin, RawCallback, RawConfig, RawEndpoint, RawFormat, RawStore, Scalar,
    Verify,
};
use crate::snapshot::{Endpoint, Resolved, Retry, Route, Snapshot, Store};
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
/// How long a provider event id is remembered when `store.dedupe_window` is not set.
pub const DEFAULT_DEDUPE_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Longest `store.dedupe_window`.
pub const MAX_DEDUPE_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);
/// Delivery attempts in flight per endpoint when `concurrency` is not set.
pub const DEFAULT_CONCURRENCY: u32 = 16;
const MAX_MAX_BODY: u64 = 1024 * 1024 * 1024;

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
            files: Vec::new(),
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

pub(super) struct Compiler {
    index: Index,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
    base_dir: PathBuf,
    /// The files `${file:}` read, with the hash of their content.
    files: Vec<(PathBuf, String)>,
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
        // The hash of the resolved configuration: what runs, whatever the file's comments,
        // layout and key order, and changed by a `${VAR}` or `${file:}` value as by an edit.
        let resolved_hash = hex::encode(Sha256::digest(sorted(&json).to_string().as_bytes()));
        let callbacks = take_list(&mut json, "callbacks");
        let endpoints = take_list(&mut json, "endpoints");
        let resolved = Resolved {
            top: json.as_object().cloned().unwrap_or_default(),
            routes: keyed(&callbacks, "path"),
            endpoints: keyed(&endpoints, "name"),
        };
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
        let admin = self.socket_addr(
            "admin",
            top.admin.as_ref().and_then(RawAdmin::listen),
            DEFAULT_ADMIN,
        );
        let admin_token = self.admin_token(top.admin.as_ref().and_then(RawAdmin::token));
        let admin_max_connections =
            self.admin_max_connections(top.admin.as_ref().and_then(RawAdmin::max_connections));
        if let (Some(l), Some(a)) = (listen, admin) {
            if l.port() == a.port()
                && (l.ip() == a.ip() || l.ip().is_unspecified() || a.ip().is_unspecified())
            {
                self.error("admin", format!("{a} is the same as listen ({l})"));
            }
            if !a.ip().is_loopback() && matches!(admin_token, Some(None)) {
                self.error(
                    "admin",
                    format!(
                        "the admin API ({a}) would be reachable beyond this host without \
                         authentication: set admin.token (e.g. token: \"${{ADMIN_TOKEN}}\") \
                         or listen on a loopback address"
                    ),
                );
            }
        }
        let upstream = self.upstream(&top.upstream);
        let store = self.store(top.store.as_ref());
        let dedupe_window = self.dedupe_window(top.store.as_ref());
        let store_max_bytes = self.store_max_bytes(top.store.as_ref());
        let store_min_free = self.store_min_free(top.store.as_ref());
        let tls = self.tls(top.tls.as_ref());
        let limits = self.limits(top.limits.as_ref());
        if let Some(limits) = &limits {
            // A body the listener could never hold while checking it would be answered
            // 503 at every try, and the provider's retries would never end.
            for (i, cb) in &callbacks {
                let Some(route) = routes.get(cb.path.trim()) else {
                    continue;
                };
                if route.max_body > limits.largest_body() {
                    self.error(
                        &format!("callbacks[{i}].max_body"),
                        format!(
                            "{} bytes is more than one body may hold of limits.unverified_bytes \
                             ({} bytes: half of it); lower max_body or raise \
                             limits.unverified_bytes to at least twice it",
                            route.max_body,
                            limits.largest_body()
                        ),
                    );
                }
            }
        }
        let dead_letter_retention = self
            .dead_letter_retention(top.dead_letters.as_ref().and_then(|d| d.retention.as_ref()));
        let history = self.history(top.history.as_ref());
        let telemetry = self.telemetry(top.telemetry.as_ref());
        if endpoints.is_empty() && self.errors.is_empty() {
            self.warn(
                "endpoints",
                "no endpoints: callbacks are verified and answered but nothing is delivered",
            );
        }
        let key_pos = ["listen", "admin", "store", "tls", "telemetry"]
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
            hash: resolved_hash,
            file_hash: source.hash(),
            files: std::mem::take(&mut self.files),
            resolved,
            listen: listen?,
            admin: admin?,
            admin_token: admin_token?,
            admin_max_connections: admin_max_connections?,
            upstream: upstream?,
            store: store?,
            dedupe_window: dedupe_window?,
            store_max_bytes: store_max_bytes?,
            store_min_free: store_min_free?,
            tls: tls?,
            limits: limits?,
            dead_letter_retention: dead_letter_retention?,
            history_retention: history?.0,
            history_max_bytes: history?.1,
            telemetry: telemetry?,
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
        let mut files = Vec::new();
        root.map_strings("", &mut |path, s, pos| {
            files.extend(interp::file_references(s, &base));
            match interp::resolve(s, env.as_ref(), &base) {
                Ok(v) => v,
                Err(why) => {
                    problems.push(ConfigError::new(path, why).at(Some(pos)));
                    None
                }
            }
        });
        self.errors.extend(problems);
        files.sort();
        files.dedup();
        self.files = files
            .into_iter()
            .map(|f| {
                let hash = std::fs::read(&f)
                    .map(|bytes| hex::encode(Sha256::digest(&bytes)))
                    .unwrap_or_default();
                (f, hash)
            })
            .collect();
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
}

/// Moves the list at `key` out of the root object (for item-by-item reading); a value
/// that is not a list stays, so the raw model reports its type.
/// `value` with every mapping's keys in sorted order (list order is meaning and stays).
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// The items of a resolved list by the string at `key` (routes by path, endpoints by
/// name); items without one are left out (they fail compilation anyway).
fn keyed(items: &[Value], key: &str) -> BTreeMap<String, Value> {
    items
        .iter()
        .filter_map(|item| Some((item.get(key)?.as_str()?.to_owned(), item.clone())))
        .collect()
}

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
