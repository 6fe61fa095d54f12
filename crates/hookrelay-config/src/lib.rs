//! hookrelay-config: the YAML configuration of hookrelay.
//!
//! What it does:
//!
//! - **Model**: the file of DESIGN.md §4 (`listen`, `admin`, `upstream`, `store`,
//!   `callbacks[]`, `endpoints[]`), read with unknown keys rejected.
//! - **Validation**: every problem at once, each with its YAML path and line
//!   ([`ConfigErrors`], printed as `FILE:LINE:COL: path: message`). `${VAR}`,
//!   `${VAR:-default}` and `${file:/path}` are resolved at load; one that does not resolve
//!   is an error. Each route's signature verifier is built at load, so a provider without
//!   the secret it needs is an error (verification fails closed; `verify: none` is the
//!   explicit, warned-about way to accept unverified callbacks).
//! - **Compilation**: `Snapshot::try_from(&Source)` builds one immutable [`Snapshot`]:
//!   parsed URLs, header maps, non-zero rates, durations, routes by path, event filters as
//!   sets.
//! - **Reload**: [`Live`] holds the current snapshot behind one atomic swap;
//!   [`Live::watch`] watches the file's directory (rename-into-place, editor backups,
//!   Kubernetes `..data` symlink swaps), debounced, and applies a changed, valid file;
//!   a bad file, or a change of `listen`, `admin` or `store`, is refused whole and the
//!   running snapshot stays. Every outcome is reported ([`ReloadOutcome`]).
//! - **Schema**: [`json_schema`] for editors.
//!
//! It does not listen, deliver or store anything: the binary does, reading snapshots.
//!
//! ```
//! use hookrelay_config::{Snapshot, Source};
//!
//! let yaml = r#"
//! upstream: 127.0.0.1:3000
//! callbacks:
//!   - path: /callbacks/twilio
//!     provider: twilio
//!     verify: { auth_token: "${TWILIO_AUTH_TOKEN:-test}", public_url: https://n.example.com/callbacks/twilio }
//! endpoints:
//!   - name: crm
//!     url: https://crm.internal/hooks
//!     events: { sms: [status] }
//!     rate_limit: { per_second: 20, burst: 5 }
//! "#;
//! let snapshot = Snapshot::try_from(&Source::new("hookrelay.yaml", yaml)).unwrap();
//! assert!(snapshot.route("/callbacks/twilio").is_some());
//! assert_eq!(snapshot.endpoint("crm").unwrap().rate_limit.unwrap().burst().get(), 5);
//!
//! let bad = "upstream: 127.0.0.1:3000\nendpoints:\n  - name: crm\n    url: ftp://x\n";
//! let errors = Snapshot::try_from(&Source::new("bad.yaml", bad)).unwrap_err();
//! assert_eq!(errors.to_string(),
//!     "bad.yaml:4:10: endpoints[0].url: scheme \"ftp\" is not allowed: only http and https");
//! ```

mod compile;
mod error;
mod interp;
mod raw;
mod snapshot;
pub mod ssrf;
mod tree;
mod watch;

pub use compile::{
    DEFAULT_ADMIN, DEFAULT_CONCURRENCY, DEFAULT_LISTEN, DEFAULT_MAX_BODY, DEFAULT_TIMEOUT,
    DEFAULT_VISIBILITY_TIMEOUT, MAX_BACKOFF, MAX_RETRY_AGE, MAX_TAP_BODY, MAX_TIMEOUT,
    MAX_VISIBILITY_TIMEOUT, Source,
};
pub use error::{ConfigError, ConfigErrors};
pub use hookrelay_tower::gcra::Gcra;
pub use interp::EnvLookup;
pub use raw::{Informational, Mode};
pub use snapshot::{Endpoint, Retry, Route, Snapshot, Store, Tls, Upstream};
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
