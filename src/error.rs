//! The library's error type and its single mapping to exit codes.
//!
//! Every fallible function where input flows returns [`Result`]. Errors carry the context a
//! user needs to act (a path, a case ID, a line and column) and, where we can give one, a
//! hint. Printing is the CLI's job: see [`Error::render`].

use std::path::PathBuf;

use crate::diag::Diagnostic;
use crate::exit;

/// Shorthand used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop a medgate command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// One or more problems in user input, each located (file:line:column) where possible.
    #[error("{}", render_diagnostics(.0))]
    Invalid(Vec<Diagnostic>),
    /// Bad input that is not tied to a position in a file.
    #[error("{message}")]
    Input {
        /// What is wrong.
        message: String,
        /// How to fix it, if we know.
        hint: Option<String>,
    },
    /// The model, a server or the environment failed; not the user's input.
    #[error("{message}")]
    Infrastructure {
        /// What failed.
        message: String,
    },
    /// A bug in medgate.
    #[error("internal error: {0}")]
    Internal(String),
}

fn render_diagnostics(d: &[Diagnostic]) -> String {
    d.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

impl Error {
    /// The process exit status for this error (the one mapping; see [`crate::exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Io { .. } | Error::Invalid(_) | Error::Input { .. } => exit::INPUT,
            Error::Infrastructure { .. } | Error::Internal(_) => exit::INTERNAL,
        }
    }

    /// Builds an [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Builds an [`Error::Input`] without a hint.
    pub fn input(message: impl Into<String>) -> Self {
        Error::Input {
            message: message.into(),
            hint: None,
        }
    }

    /// Builds an [`Error::Input`] with a hint on how to fix it.
    pub fn input_hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Input {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// Builds an [`Error::Infrastructure`].
    pub fn infra(message: impl Into<String>) -> Self {
        Error::Infrastructure {
            message: message.into(),
        }
    }

    /// The error as the CLI prints it: a headline, then `(hint: ...)` lines.
    pub fn render(&self) -> String {
        match self {
            Error::Input {
                message,
                hint: Some(h),
            } => format!("error: {message}\n  (hint: {h})"),
            Error::Invalid(_) => self.to_string(),
            other => format!("error: {other}"),
        }
    }
}
