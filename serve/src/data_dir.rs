//! `serve --data DIR`: a folder of scans on the server that the web annotator lists, opens as sessions and
//! saves masks next to. Paths never leave the folder: a client names a scan by its path relative to it,
//! which may not be absolute, hold `..`, or resolve (through a link) outside it; masks are written to a new
//! file beside the scan (a temporary file renamed into place, never replacing an existing file).

use std::path::{Component, Path, PathBuf};

use crate::error::ApiError;

/// Scan files listed and opened by name.
const SCAN_EXTENSIONS: [&str; 3] = [".nii", ".nii.gz", ".nrrd"];
/// How deep the listing looks below the folder.
const MAX_DEPTH: usize = 3;
/// Most entries listed.
const MAX_SCANS: usize = 1000;

/// The folder, resolved once at start.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The folder at `path` (it must exist).
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let root = path.canonicalize()?;
        if !root.is_dir() {
            return Err(std::io::Error::other(format!("{} is not a folder", path.display())));
        }
        Ok(Self { root })
    }

    /// The scans under the folder, relative and `/`-separated, sorted: NIfTI and NRRD files, and folders
    /// holding DICOM files (a series). Hidden entries and links are skipped.
    pub fn list(&self) -> Vec<String> {
        let mut scans = Vec::new();
        collect(&self.root, &self.root, 0, &mut scans);
        scans.sort();
        scans
    }

    /// The path of the scan `relative` names, checked to lie inside the folder (a 404 when it does not
    /// exist or is not a scan, a 400 when the name tries to leave the folder).
    pub fn resolve(&self, relative: &str) -> Result<PathBuf, ApiError> {
        let name = Path::new(relative);
        let plain = !relative.is_empty()
            && name
                .components()
                .all(|c| matches!(c, Component::Normal(part) if !part.to_string_lossy().starts_with('.')));
        if !plain {
            return Err(ApiError::bad_request(format!(
                "scan '{relative}': give a path relative to the server's data folder, without '..' or hidden parts"
            )));
        }
        let missing = || ApiError::not_found(format!("scan '{relative}' is not in the server's data folder"));
        let path = self.root.join(name).canonicalize().map_err(|_| missing())?;
        if !path.starts_with(&self.root) || !is_scan(&path) {
            return Err(missing());
        }
        Ok(path)
    }

    /// Writes `bytes` as a new file beside the scan `relative` (already resolved to `scan`), named
    /// `{scan}_{label}.nii.gz` (`-2`, `-3`, ... when taken); its path relative to the folder.
    pub fn save_beside(&self, scan: &Path, label: &str, bytes: &[u8]) -> Result<String, ApiError> {
        let folder = scan.parent().unwrap_or(&self.root);
        let stem = scan_stem(scan);
        let label = safe_label(label);
        let failed = |e: std::io::Error| ApiError::internal(format!("saving beside {}: {e}", scan.display()));
        let mut file = tempfile::Builder::new()
            .prefix(".medico-")
            .suffix(".part")
            .tempfile_in(folder)
            .map_err(failed)?;
        std::io::Write::write_all(&mut file, bytes).map_err(failed)?;
        file.as_file().sync_all().map_err(failed)?;
        for attempt in 1..1000 {
            let suffix = if attempt == 1 {
                String::new()
            } else {
                format!("-{attempt}")
            };
            let target = folder.join(format!("{stem}_{label}{suffix}.nii.gz"));
            match file.persist_noclobber(&target) {
                Ok(_) => return Ok(relative_name(&self.root, &target)),
                Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => file = e.file,
                Err(e) => return Err(failed(e.error)),
            }
        }
        Err(ApiError::unprocessable(format!(
            "{stem}_{label}: 999 masks of that name are saved already; choose another label"
        )))
    }
}

/// `path` relative to `root`, `/`-separated.
fn relative_name(root: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(root).unwrap_or(path);
    relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Adds the scans under `dir` (at `depth` below `root`) to `scans`.
fn collect(root: &Path, dir: &Path, depth: usize, scans: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        if scans.len() >= MAX_SCANS {
            return;
        }
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        let Ok(kind) = entry.file_type() else { continue };
        if hidden || kind.is_symlink() {
            continue;
        }
        let path = entry.path();
        if is_scan(&path) {
            scans.push(relative_name(root, &path));
        }
        if kind.is_dir() && depth + 1 < MAX_DEPTH {
            collect(root, &path, depth + 1, scans);
        }
    }
}

/// A NIfTI or NRRD file, or a folder directly holding DICOM files.
fn is_scan(path: &Path) -> bool {
    if path.is_file() {
        let name = path.file_name().unwrap_or_default().to_string_lossy().to_lowercase();
        return SCAN_EXTENSIONS.iter().any(|e| name.ends_with(e));
    }
    std::fs::read_dir(path).is_ok_and(|entries| {
        entries
            .flatten()
            .take(64)
            .any(|e| e.path().is_file() && medico_io::dicom_io::looks_like_dicom(&e.path()))
    })
}

/// A scan's name without its format's extension.
fn scan_stem(scan: &Path) -> String {
    let name = scan.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let lower = name.to_lowercase();
    SCAN_EXTENSIONS
        .iter()
        .rev()
        .find(|e| lower.ends_with(*e))
        .map_or(name.clone(), |e| name[..name.len() - e.len()].to_string())
}

/// A label made safe as part of a file name (letters, digits, `-`, `_`; others `_`; at most 64).
fn safe_label(label: &str) -> String {
    let safe: String = label
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if safe.is_empty() {
        "mask".into()
    } else {
        safe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder() -> (tempfile::TempDir, DataDir) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("brain.nii.gz"), b"x").unwrap();
        std::fs::create_dir_all(dir.path().join("sub/series")).unwrap();
        std::fs::write(dir.path().join("sub/ct.nrrd"), b"x").unwrap();
        std::fs::write(dir.path().join("sub/series/1.dcm"), b"x").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        std::fs::write(dir.path().join(".hidden.nii"), b"x").unwrap();
        let data = DataDir::open(dir.path()).unwrap();
        (dir, data)
    }

    #[test]
    fn scans_are_listed_by_relative_name() {
        let (_dir, data) = folder();
        assert_eq!(data.list(), ["brain.nii.gz", "sub/ct.nrrd", "sub/series"]);
    }

    #[test]
    fn names_cannot_leave_the_folder() {
        let (dir, data) = folder();
        assert!(data.resolve("sub/ct.nrrd").is_ok());
        for bad in ["../x.nii", "/etc/passwd", "sub/../../x", ".hidden.nii", ""] {
            assert_eq!(data.resolve(bad).unwrap_err().status, 400, "{bad}");
        }
        assert_eq!(data.resolve("notes.txt").unwrap_err().status, 404);
        assert_eq!(data.resolve("missing.nii").unwrap_err().status, 404);
        // A link that points outside is not followed out.
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.nii"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.nii"), dir.path().join("link.nii")).unwrap();
        assert_eq!(data.resolve("link.nii").unwrap_err().status, 404);
        assert!(!data.list().contains(&"link.nii".to_string()));
    }

    #[test]
    fn masks_are_saved_beside_the_scan_without_replacing_anything() {
        let (dir, data) = folder();
        let scan = data.resolve("brain.nii.gz").unwrap();
        assert_eq!(
            data.save_beside(&scan, "left hippocampus", b"1").unwrap(),
            "brain_left_hippocampus.nii.gz"
        );
        assert_eq!(
            data.save_beside(&scan, "left hippocampus", b"2").unwrap(),
            "brain_left_hippocampus-2.nii.gz"
        );
        assert_eq!(
            std::fs::read(dir.path().join("brain_left_hippocampus.nii.gz")).unwrap(),
            b"1"
        );
        assert_eq!(std::fs::read(dir.path().join("brain.nii.gz")).unwrap(), b"x");
        let series = data.resolve("sub/series").unwrap();
        assert_eq!(data.save_beside(&series, "", b"3").unwrap(), "sub/series_mask.nii.gz");
        let leftovers = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".part"));
        assert_eq!(leftovers.count(), 0);
    }
}
