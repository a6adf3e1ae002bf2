//! Outputs written atomically: a temporary file in the destination folder, renamed into place once
//! complete, so a failed or interrupted write never leaves a partial file under the final name.

use std::path::Path;

use tempfile::NamedTempFile;

use crate::RuntimeError;

/// An output error naming `path`.
pub fn output_error(path: &Path, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Output {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// A hidden temporary file beside `path` (same folder, so the rename cannot cross file systems).
pub fn temp_beside(path: &Path, suffix: &str) -> Result<NamedTempFile, RuntimeError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    tempfile::Builder::new()
        .prefix(".medico-")
        .suffix(suffix)
        .tempfile_in(dir)
        .map_err(|e| output_error(path, e))
}

/// Renames the finished temporary file to `path`.
pub fn persist(temp: NamedTempFile, path: &Path) -> Result<(), RuntimeError> {
    temp.persist(path).map_err(|e| output_error(path, e.error))?;
    Ok(())
}
