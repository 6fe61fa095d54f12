#![doc = include_str!("../README.md")]
//!
//! ## Where things are
//!
//! - The model is the file of DESIGN.md §4 (`listen`, `admin`, `upstream`, `store`,
//!   `callbacks[]`, `endpoints[]`). A [`Source`] is a file's name and text;
//!   `Snapshot::try_from(&Source)`, or [`load`] for a path, compiles it into a [`Snapshot`]
//!   of [`Route`]s and [`Endpoint`]s, or fails with [`ConfigErrors`].
//! - An unresolved `${VAR}` is an error. `verify: none` is the explicit, warned-about way
//!   to accept unverified callbacks.
//! - [`Live::watch`] follows rename-into-place, editor backups and Kubernetes `..data`
//!   symlink swaps, debounced. A change of `listen`, `admin` or `store` needs a restart and
//!   is refused like a bad file. [`Live::reload_now`] serves SIGHUP and `POST /-/reload`.
//! - [`json_schema`] is the JSON Schema of the file, for editors.

mod compile;
mod dirwatch;
mod error;
mod interp;
mod raw;
mod snapshot;
pub mod ssrf;
mod tree;
mod watch;

pub use compile::{
    DEFAULT_ADMIN, DEFAULT_CONCURRENCY, DEFAULT_DEDUPE_WINDOW, DEFAULT_LISTEN, DEFAULT_MAX_BODY,
    DEFAULT_TIMEOUT, DEFAULT_VISIBILITY_TIMEOUT, MAX_BACKOFF, MAX_DEDUPE_WINDOW, MAX_RETRY_AGE,
    MAX_TAP_BODY, MAX_TIMEOUT, MAX_VISIBILITY_TIMEOUT, Source,
};
pub use error::{ConfigError, ConfigErrors};
pub use hookrelay_tower::gcra::Gcra;
pub use interp::EnvLookup;
pub use raw::{Informational, Mode};
pub use snapshot::{Endpoint, Limits, Retry, Route, Snapshot, Store, Telemetry, Tls, Upstream};
pub use watch::{Live, ReloadOutcome, Watcher};

/// The JSON Schema (2020-12) of the configuration file, for editors
/// (`# yaml-language-server: $schema=…`).
#[must_use]
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(raw::SchemaConfig);
    serde_json::to_value(&schema).unwrap_or_default()
}

/// Reads, checks and compiles the file at `path` with the process environment.
pub fn load(path: &std::path::Path) -> Result<Snapshot, ConfigErrors> {
    Snapshot::try_from(&Source::read(path)?)
}
