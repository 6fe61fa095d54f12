//! Configuration errors: every problem, each with its YAML path and position.

use std::fmt;

/// A position in the YAML file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub(crate) line: usize,
    pub(crate) column: usize,
}

impl From<serde_saphyr::Location> for Pos {
    fn from(l: serde_saphyr::Location) -> Self {
        Pos {
            line: usize::try_from(l.line()).unwrap_or(usize::MAX),
            column: usize::try_from(l.column()).unwrap_or(usize::MAX),
        }
    }
}

/// One problem of a configuration file.
///
/// `Display` is `LINE:COL: path: message` (without the file name; see [`ConfigErrors`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigError {
    /// YAML path of the offending value: `endpoints[1].url`; empty for the whole file.
    pub path: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong, and where useful what is expected.
    pub message: String,
}

impl ConfigError {
    /// A problem at `path`, position not yet known.
    #[must_use]
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    pub(crate) fn at(mut self, pos: Option<Pos>) -> Self {
        if let Some(p) = pos.filter(|p| p.line > 0) {
            self.line = Some(p.line);
            self.column = Some(p.column.max(1));
        }
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{l}:{c}: ")?,
            (Some(l), None) => write!(f, "{l}: ")?,
            _ => {}
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one configuration file, in file order.
///
/// `Display` prints one problem per line as `FILE:LINE:COL: path: message`, the format
/// editors and CI annotate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The file the problems are in, as given (for messages).
    pub file: String,
    /// The problems (never empty when returned as an error).
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// A single problem of `file`.
    #[must_use]
    pub fn one(file: impl Into<String>, error: ConfigError) -> Self {
        Self {
            file: file.into(),
            errors: vec![error],
        }
    }

    /// Number of problems.
    #[must_use]
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// True when there is no problem.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The problems.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.errors.iter()
    }

    pub(crate) fn sort(&mut self) {
        self.errors
            .sort_by_key(|e| (e.line.unwrap_or(usize::MAX), e.column.unwrap_or(0)));
        self.errors.dedup();
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            if e.line.is_some() {
                write!(f, "{}:{e}", self.file)?;
            } else {
                write!(f, "{}: {e}", self.file)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}
