//! What the pod runtime and the lab controllers fail with.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{command}: {reason}")]
    Command { command: String, reason: String },
    #[error(transparent)]
    Lab(#[from] lab::LabError),
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { what, path: path.into(), source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
