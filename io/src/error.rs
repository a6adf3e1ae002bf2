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
    /// A file whose header declares more voxels, or more voxel data, than the caller's
    /// [`ReadLimits`](crate::input::ReadLimits) allow: refused before its data was inflated, read or decoded
    /// (a server's 413).
    #[error(
        "{}: declares {declared}; this reader takes at most {max_voxels} voxels ({} as float32) and {} of voxel data",
        path.display(),
        human_bytes(max_voxels.saturating_mul(4)),
        human_bytes(max_voxels.saturating_mul(4))
    )]
    TooLarge {
        /// The file (or series folder).
        path: PathBuf,
        /// What it declares, in words: "1073741824 voxels (uint8, 1024x1024x1024, 1 GiB)" (the voxel data's
        /// type, sizes and bytes), or "a deflated DICOM dataset of more than 576 MiB".
        declared: String,
        /// The voxels it declares (every volume of a 4D file, every file of a DICOM series); `None` for a
        /// deflated DICOM dataset refused by its inflated size before its attributes could be read.
        voxels: Option<u64>,
        /// The limit: voxels of the decoded volume (as float32, 4 bytes each); the file's voxel data may
        /// hold at most 4 bytes per voxel of it.
        max_voxels: u64,
    },
    /// A text that cannot be written as the DICOM value it would be (e.g. a segment label over 64
    /// characters, or with a backslash or a line break): refused before anything is written (a server's 422).
    #[error("{}: {problem}", path.display())]
    InvalidText {
        /// The output.
        path: PathBuf,
        /// What is wrong with the text.
        problem: crate::dicom_seg::TextError,
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

/// A byte count for people: `512 MiB`, `1.5 GiB`, `900 B`.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.1}");
    format!("{} {}", text.strip_suffix(".0").unwrap_or(&text), UNITS[unit])
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

    #[test]
    fn too_large_names_the_file_what_it_declares_and_the_limit() {
        let error = IoError::TooLarge {
            path: "x.nrrd".into(),
            declared: "1073741824 voxels (uint8, 1024x1024x1024, 1 GiB)".into(),
            voxels: Some(1 << 30),
            max_voxels: 1 << 27,
        };
        assert_eq!(
            error.to_string(),
            "x.nrrd: declares 1073741824 voxels (uint8, 1024x1024x1024, 1 GiB); this reader takes at most \
             134217728 voxels (512 MiB as float32) and 512 MiB of voxel data"
        );
        assert_eq!(human_bytes(900), "900 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(u64::MAX), "16 EiB");
    }
}
