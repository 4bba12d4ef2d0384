//! The one error type of the runtime. Every message names the thing that is wrong (a file, a
//! layer, a tensor, an argument) and what is wrong with it, so it can be shown to a user as is.

use std::path::PathBuf;

/// Everything the runtime can refuse or fail at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A batch, label list or tensor given at run time does not fit what the network expects.
    #[error("{0}")]
    BadInput(String),

    /// A tensor name that the network does not have.
    #[error("{network} has no tensor named `{name}`{hint}")]
    UnknownTensor {
        /// The network's type name.
        network: &'static str,
        /// The name asked for.
        name: String,
        /// `"; did you mean `x`?"` for a close name, or empty.
        hint: String,
    },

    /// A layer name that the network does not have.
    #[error("{network} has no layer named `{name}`{hint}")]
    UnknownLayer {
        /// The network's type name.
        network: &'static str,
        /// The name asked for.
        name: String,
        /// `"; did you mean `x`?"` for a close name, or empty.
        hint: String,
    },

    /// A tensor whose shape differs from the network's.
    #[error("tensor `{name}`: {network} expects shape {expected:?}, got {found:?}")]
    ShapeMismatch {
        /// The network's type name.
        network: &'static str,
        /// The tensor's `state_dict` name.
        name: String,
        /// Its shape in the network.
        expected: Vec<usize>,
        /// The shape given.
        found: Vec<usize>,
    },

    /// A file that cannot be read or written, or whose contents are malformed.
    #[error("{}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// An I/O error on a file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },

    /// A backend (a GPU, its driver or its libraries) that cannot be used.
    #[error("{0}")]
    Backend(String),
}

impl Error {
    pub(crate) fn bad_input(msg: impl Into<String>) -> Self {
        Error::BadInput(msg.into())
    }

    pub(crate) fn file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::File { path: path.into(), message: message.into() }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

/// `Result` with the runtime's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
