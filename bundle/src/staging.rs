//! Folders that appear complete or not at all: written into a hidden sibling of the destination (same
//! file system, so the final rename is atomic), then renamed into place; dropped unfinished, the staging
//! folder is removed.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// What to do when the destination already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Replace it only if it is an empty folder.
    KeepUnlessEmpty,
    /// Replace it whatever it holds.
    Replace,
}

/// A folder being written beside its destination.
#[derive(Debug)]
pub struct StagedDir {
    temp: TempDir,
    dest: PathBuf,
}

impl StagedDir {
    /// Creates the staging folder beside `dest`, creating missing parent folders like `mkdir -p`. The
    /// folder gets the permissions of an ordinary new folder (0777 less the umask), not the private 0700 of
    /// temporary folders, since it becomes the user's.
    pub fn beside(dest: &Path) -> std::io::Result<Self> {
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent)?;
        let stem = dest
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let prefix = format!(".{stem}.partial-");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o777));
        }
        let temp = builder.tempdir_in(&parent)?;
        Ok(Self {
            temp,
            dest: dest.to_path_buf(),
        })
    }

    /// The staging folder, to write into.
    pub fn path(&self) -> &Path {
        self.temp.path()
    }

    /// Renames the staging folder to the destination. An existing destination is replaced as `existing`
    /// says: moved aside, the new folder renamed in, the old one removed.
    pub fn commit(self, existing: Existing) -> std::io::Result<PathBuf> {
        let staged = self.temp.keep();
        let result = replace(&staged, &self.dest, existing);
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&staged);
        }
        result.map(|()| self.dest)
    }
}

fn replace(staged: &Path, dest: &Path, existing: Existing) -> std::io::Result<()> {
    if !dest.exists() {
        return std::fs::rename(staged, dest);
    }
    if existing == Existing::KeepUnlessEmpty && std::fs::read_dir(dest)?.next().is_some() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "exists and is not empty",
        ));
    }
    let old = dest.with_extension(format!("old-{}", std::process::id()));
    std::fs::rename(dest, &old)?;
    std::fs::rename(staged, dest)?;
    std::fs::remove_dir_all(&old)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn appears_complete_and_leaves_nothing_behind() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("a/b/bundle");
        let staged = StagedDir::beside(&dest).unwrap();
        std::fs::write(staged.path().join("model.json"), "{}").unwrap();
        assert!(!dest.exists(), "nothing under the final name before commit");
        staged.commit(Existing::KeepUnlessEmpty).unwrap();
        assert_eq!(listing(&dest), ["model.json"]);
        assert_eq!(listing(&root.path().join("a/b")), ["bundle"]);
    }

    #[test]
    fn a_non_empty_destination_is_kept_unless_replacing() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("bundle");
        std::fs::create_dir(&dest).unwrap();
        std::fs::write(dest.join("old"), "x").unwrap();
        let staged = StagedDir::beside(&dest).unwrap();
        std::fs::write(staged.path().join("new"), "y").unwrap();
        let err = staged.commit(Existing::KeepUnlessEmpty).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(listing(&dest), ["old"]);
        assert_eq!(listing(root.path()), ["bundle"], "the staging folder is removed");
        let staged = StagedDir::beside(&dest).unwrap();
        std::fs::write(staged.path().join("new"), "y").unwrap();
        staged.commit(Existing::Replace).unwrap();
        assert_eq!(listing(&dest), ["new"]);
        assert_eq!(listing(root.path()), ["bundle"]);
    }

    #[test]
    fn dropped_unfinished_it_is_removed() {
        let root = tempfile::tempdir().unwrap();
        let staged = StagedDir::beside(&root.path().join("bundle")).unwrap();
        std::fs::write(staged.path().join("half"), "z").unwrap();
        drop(staged);
        assert!(listing(root.path()).is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn gets_the_permissions_of_an_ordinary_folder() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let ordinary = root.path().join("ordinary");
        std::fs::create_dir(&ordinary).unwrap();
        let dest = root.path().join("bundle");
        StagedDir::beside(&dest).unwrap().commit(Existing::Replace).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dest), mode(&ordinary));
    }
}
