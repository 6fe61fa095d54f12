use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue};

/// How a configured header meets one already on the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mode {
    /// Replace every value the message has for the name.
    Override,
    /// Leave the message alone when it has the name.
    IfAbsent,
}

/// A configured header that cannot be set. The value is never part of the error (it may
/// be a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// Not a valid header name.
    #[error("invalid header name {name:?}")]
    InvalidName {
        /// The name as given.
        name: String,
    },
    /// The value has a CR, LF or another forbidden byte.
    #[error("invalid value for header {name} (control characters such as CR/LF are not allowed)")]
    InvalidValue {
        /// The header name.
        name: HeaderName,
    },
    /// A header that frames the message (`content-length`, `transfer-encoding`, `host`,
    /// hop-by-hop headers) or that request signing sets.
    #[error("header {name} is managed by the HTTP stack and cannot be configured")]
    Reserved {
        /// The header name.
        name: HeaderName,
    },
}

#[derive(Clone)]
struct Entry {
    name: HeaderName,
    values: Vec<HeaderValue>,
    mode: Mode,
}

/// Validated headers to set on a message; see the [module docs](crate::set_headers).
///
/// Several values for one name are all set (in order); the mode of the first one counts.
#[derive(Clone, Default)]
pub struct HeaderSet {
    entries: Vec<Entry>,
}

impl HeaderSet {
    /// An empty set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `name: value`, replacing the message's own values for `name`.
    ///
    /// # Errors
    ///
    /// [`HeaderError`] for an invalid or reserved name or an invalid value.
    pub fn overriding(self, name: &str, value: &str) -> Result<Self, HeaderError> {
        self.parsed(name, value, Mode::Override)
    }

    /// Adds `name: value` unless the message already has `name`.
    ///
    /// # Errors
    ///
    /// [`HeaderError`] for an invalid or reserved name or an invalid value.
    pub fn if_absent(self, name: &str, value: &str) -> Result<Self, HeaderError> {
        self.parsed(name, value, Mode::IfAbsent)
    }

    /// A set from `(name, value)` pairs, all with `mode` (a config file's header map).
    ///
    /// # Errors
    ///
    /// The first [`HeaderError`].
    pub fn from_pairs<I, N, V>(pairs: I, mode: Mode) -> Result<Self, HeaderError>
    where
        I: IntoIterator<Item = (N, V)>,
        N: AsRef<str>,
        V: AsRef<str>,
    {
        pairs.into_iter().try_fold(Self::new(), |set, (n, v)| {
            set.parsed(n.as_ref(), v.as_ref(), mode)
        })
    }

    /// Adds an already typed header.
    ///
    /// # Errors
    ///
    /// [`HeaderError::Reserved`] for a framing or signing header.
    pub fn with(
        mut self,
        name: HeaderName,
        mut value: HeaderValue,
        mode: Mode,
    ) -> Result<Self, HeaderError> {
        if is_reserved(&name) {
            return Err(HeaderError::Reserved { name });
        }
        if looks_secret(&name) {
            value.set_sensitive(true);
        }
        match self.entries.iter_mut().find(|e| e.name == name) {
            Some(entry) => entry.values.push(value),
            None => self.entries.push(Entry {
                name,
                values: vec![value],
                mode,
            }),
        }
        Ok(self)
    }

    fn parsed(self, name: &str, value: &str, mode: Mode) -> Result<Self, HeaderError> {
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
            HeaderError::InvalidName {
                name: name.to_owned(),
            }
        })?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| HeaderError::InvalidValue { name: name.clone() })?;
        self.with(name, value, mode)
    }

    /// True when the set has no header.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sets the headers on `headers`.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for entry in &self.entries {
            match entry.mode {
                Mode::Override => {
                    headers.remove(&entry.name);
                }
                Mode::IfAbsent if headers.contains_key(&entry.name) => continue,
                Mode::IfAbsent => {}
            }
            for value in &entry.values {
                headers.append(entry.name.clone(), value.clone());
            }
        }
    }
}

impl fmt::Debug for HeaderSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for entry in &self.entries {
            for value in &entry.values {
                let shown: &dyn fmt::Debug = if value.is_sensitive() { &"***" } else { value };
                map.entry(&format_args!("{} ({:?})", entry.name, entry.mode), shown);
            }
        }
        map.finish()
    }
}

fn is_reserved(name: &HeaderName) -> bool {
    const SIGNING: [&str; 3] = ["webhook-id", "webhook-timestamp", "webhook-signature"];
    [
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::HOST,
        header::CONNECTION,
        header::UPGRADE,
        header::TE,
        header::TRAILER,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
        || SIGNING.contains(&name.as_str())
}

fn looks_secret(name: &HeaderName) -> bool {
    const HINTS: [&str; 7] = [
        "auth",
        "cookie",
        "token",
        "secret",
        "key",
        "password",
        "signature",
    ];
    let name = name.as_str();
    HINTS.iter().any(|hint| name.contains(hint))
}

/// The live [`HeaderSet`] of a [`SetRequestHeadersLayer`](super::SetRequestHeadersLayer) or
/// [`SetResponseHeadersLayer`](super::SetResponseHeadersLayer), shared by its
/// services; [`set`](Self::set) applies to the next message.
#[derive(Debug, Clone)]
pub struct HeaderSetHandle {
    current: Arc<ArcSwap<HeaderSet>>,
}

impl HeaderSetHandle {
    /// A handle holding `set`.
    #[must_use]
    pub fn new(set: HeaderSet) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(set)),
        }
    }

    /// Puts `set` in force for the next message.
    pub fn set(&self, set: HeaderSet) {
        self.current.store(Arc::new(set));
    }

    /// The set in force.
    #[must_use]
    pub fn get(&self) -> Arc<HeaderSet> {
        self.current.load_full()
    }

    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        self.current.load().apply(headers);
    }
}

impl From<HeaderSet> for HeaderSetHandle {
    fn from(set: HeaderSet) -> Self {
        Self::new(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_replaces_every_value_if_absent_keeps() {
        let set = HeaderSet::new()
            .overriding("x-a", "1")
            .and_then(|s| s.overriding("X-A", "2"))
            .and_then(|s| s.if_absent("x-b", "new"))
            .and_then(|s| s.if_absent("x-c", "new"))
            .expect("valid headers");
        let mut headers = HeaderMap::new();
        headers.append("x-a", HeaderValue::from_static("old1"));
        headers.append("x-a", HeaderValue::from_static("old2"));
        headers.insert("x-b", HeaderValue::from_static("old"));
        set.apply(&mut headers);
        let a: Vec<_> = headers.get_all("x-a").iter().collect();
        assert_eq!(a, ["1", "2"]);
        assert_eq!(headers["x-b"], "old");
        assert_eq!(headers["x-c"], "new");
    }

    #[test]
    fn invalid_and_reserved_headers_are_refused_without_the_value() {
        let err = HeaderSet::new()
            .overriding("x-a", "ok\nInjected: secret")
            .expect_err("LF");
        assert!(matches!(err, HeaderError::InvalidValue { .. }));
        assert!(!err.to_string().contains("secret"));
        assert!(HeaderSet::new().overriding("x-a", "ok\r").is_err());
        assert!(matches!(
            HeaderSet::new().overriding("bad name", "v"),
            Err(HeaderError::InvalidName { .. })
        ));
        assert!(matches!(
            HeaderSet::new().overriding("Content-Length", "1"),
            Err(HeaderError::Reserved { .. })
        ));
        assert!(
            HeaderSet::new()
                .overriding("webhook-signature", "v1,x")
                .is_err()
        );
        assert!(HeaderSet::from_pairs([("x-a", "1"), ("x b", "2")], Mode::Override).is_err());
    }

    #[test]
    fn secrets_are_redacted_and_sensitive() {
        let set = HeaderSet::from_pairs(
            [
                ("Authorization", "Bearer abc123"),
                ("x-api-key", "k-987"),
                ("x-team", "blue"),
            ],
            Mode::Override,
        )
        .expect("valid headers");
        let debug = format!("{set:?}");
        assert!(
            !debug.contains("abc123") && !debug.contains("k-987"),
            "{debug}"
        );
        assert!(debug.contains("blue"), "{debug}");
        let mut headers = HeaderMap::new();
        set.apply(&mut headers);
        assert!(headers["authorization"].is_sensitive());
        assert!(!headers["x-team"].is_sensitive());
    }
}
