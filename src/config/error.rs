//! Located configuration errors: `FILE:LINE:COL: key: what was expected`.

use std::fmt;

/// What was wrong with one key or value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Io(String),
    /// The text is not TOML.
    #[error("TOML syntax: {0}")]
    Syntax(String),
    /// A key this section does not have.
    #[error("unknown key (expected one of: {0})")]
    UnknownKey(String),
    /// A Kamailio parameter or option sipdisp deliberately does not support.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// The value has the wrong TOML type.
    #[error("expected {expected}, got {got}")]
    WrongType {
        /// What was expected, e.g. `an integer`.
        expected: &'static str,
        /// The TOML type found.
        got: &'static str,
    },
    /// The value has the right type but is not acceptable.
    #[error("expected {expected}, got {got}")]
    BadValue {
        /// What was expected.
        expected: String,
        /// What was written.
        got: String,
    },
    /// Keys that are fine alone but not together (or one missing because of another).
    #[error("{0}")]
    Conflict(String),
}

/// One problem, located in the configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file as given to [`super::Config::load`].
    pub file: String,
    /// 1-based line; 0 when the problem concerns the file as a whole (cannot be read).
    pub line: u32,
    /// 1-based column (characters); 0 with `line` 0.
    pub col: u32,
    /// Dotted key path, e.g. `server.listen` or `route[2].select`; empty for file-level problems.
    pub key: String,
    /// What was wrong.
    pub kind: ErrorKind,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.file)?;
        if self.line > 0 {
            write!(f, "{}:{}:", self.line, self.col)?;
        }
        if !self.key.is_empty() {
            write!(f, " {}:", self.key)?;
        }
        write!(f, " {}", self.kind)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one configuration file (never empty), in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// 1-based line and column (in characters) of byte offset `at` in `text`.
pub(crate) fn position(text: &str, at: usize) -> (u32, u32) {
    let at = at.min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(col).unwrap_or(u32::MAX),
    )
}
