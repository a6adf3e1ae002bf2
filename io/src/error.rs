//! The errors of medical I/O: each names the file and keeps its cause as the error's source, so a caller
//! that prints the chain (`anyhow`'s `{:#}`) shows the whole story on one line.

use std::path::{Path, PathBuf};

/// A third-party decoder's error, kept as the source of an [`IoError`].
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why a file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// Nothing at the path.
    #[error("{}: no such file or folder", path.display())]
    NotFound {
        /// The path.
        path: PathBuf,
    },
    /// The file system refused to give the bytes.
    #[error("{}: cannot read", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a readable file of the format (a decoder or a guard refused them).
    #[error("{}: {what}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What could not be done, e.g. "not a readable NIfTI file (truncated or corrupt?)".
        what: String,
        /// The decoder's or guard's error.
        #[source]
        source: Cause,
    },
    /// A readable file medico cannot use as it is (unsupported layout, inconsistent geometry, a wrong
    /// option for this file).
    #[error("{}: {problem}", path.display())]
    Unusable {
        /// The file.
        path: PathBuf,
        /// What is wrong, in a user's words.
        problem: String,
    },
    /// An output that cannot be written.
    #[error("{}: cannot write", path.display())]
    Write {
        /// The output.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Cause,
    },
}

impl IoError {
    /// A read failure of `path`.
    pub fn read(path: &Path, source: std::io::Error) -> Self {
        IoError::Read {
            path: path.into(),
            source,
        }
    }

    /// `path` refused by a decoder or guard.
    pub fn corrupt(path: &Path, what: impl Into<String>, source: impl Into<Cause>) -> Self {
        IoError::Corrupt {
            path: path.into(),
            what: what.into(),
            source: source.into(),
        }
    }

    /// `path` readable but unusable.
    pub fn unusable(path: &Path, problem: impl std::fmt::Display) -> Self {
        IoError::Unusable {
            path: path.into(),
            problem: problem.to_string(),
        }
    }

    /// A write failure of `path`.
    pub fn write(path: &Path, source: impl Into<Cause>) -> Self {
        IoError::Write {
            path: path.into(),
            source: source.into(),
        }
    }
}

/// The error and its sources on one line, `outer: inner: innermost`, for reports that hold errors as text.
pub fn chain_text(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_reads_outer_to_inner() {
        let inner = std::io::Error::other("disk on fire");
        let error = IoError::read(Path::new("/scan.nii"), inner);
        assert_eq!(chain_text(&error), "/scan.nii: cannot read: disk on fire");
    }
}
