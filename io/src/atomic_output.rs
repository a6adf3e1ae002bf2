//! Outputs written atomically: a temporary file in the destination folder, renamed into place once
//! complete, so a failed or interrupted write never leaves a partial file under the final name.

use std::path::Path;

use tempfile::NamedTempFile;

use crate::IoError;

/// A hidden temporary file beside `path` (same folder, so the rename cannot cross file systems), created
/// with the permissions of an ordinary new file (0666 less the umask), not the private 0600 of temporary
/// files, since it becomes the user's output.
pub fn temp_beside(path: &Path, suffix: &str) -> Result<NamedTempFile, IoError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".medico-").suffix(suffix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir).map_err(|e| IoError::write(path, e))
}

/// Writes `bytes` to `path` through a temporary file beside it and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    let mut temp = temp_beside(path, ".tmp")?;
    std::io::Write::write_all(temp.as_file_mut(), bytes).map_err(|e| IoError::write(path, e))?;
    persist(temp, path)
}

/// Renames the finished temporary file to `path`.
pub fn persist(temp: NamedTempFile, path: &Path) -> Result<(), IoError> {
    temp.persist(path).map_err(|e| IoError::write(path, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn outputs_get_the_permissions_of_ordinary_new_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ordinary = dir.path().join("ordinary");
        std::fs::File::create(&ordinary).unwrap();
        let out = dir.path().join("mask.png");
        write_atomically(&out, b"data").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&out), mode(&ordinary));
        assert_eq!(std::fs::read(&out).unwrap(), b"data");
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 2, "no temporary file left");
    }
}
