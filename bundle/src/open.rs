//! Opening a bundle: the manifest read, its file names checked, every graph's checksum verified.

use std::path::{Component, Path, PathBuf};

use crate::checksum::sha256_file;
use crate::manifest::{GraphRole, Manifest, PropagationDefaults, FORMAT, MANIFEST};
use medico_models::Problem;

/// Why a bundle cannot be trusted; each names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A file of the bundle cannot be read.
    #[error("{}: cannot read", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `model.json` is not a bundle manifest.
    #[error("{}: not a medico bundle manifest", path.display())]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A manifest of another format.
    #[error("{}: unsupported bundle format '{found}' (expected {FORMAT})", path.display())]
    Format {
        /// The manifest.
        path: PathBuf,
        /// Its `format`.
        found: String,
    },
    /// A configuration whose numbers do not fit together.
    #[error("{}: the model configuration is inconsistent", path.display())]
    Config {
        /// The manifest.
        path: PathBuf,
        /// The broken rule.
        #[source]
        source: medico_models::Problem,
    },
    /// A listed file name that is not a plain name inside the bundle folder.
    #[error("{}: '{file}' is not a file name inside the bundle", path.display())]
    FileName {
        /// The manifest.
        path: PathBuf,
        /// The name.
        file: String,
    },
    /// A graph whose checksum does not match the manifest.
    #[error(
        "{}: checksum mismatch (model.json says {expected}, file has {actual}): the bundle was modified or damaged",
        path.display()
    )]
    Checksum {
        /// The graph file.
        path: PathBuf,
        /// The manifest's checksum.
        expected: String,
        /// The file's.
        actual: String,
    },
    /// A graph the manifest lists without a checksum.
    #[error("{}: graph '{role}' ({file}) has no checksum", path.display())]
    Unverified {
        /// The manifest.
        path: PathBuf,
        /// The graph's role.
        role: GraphRole,
        /// Its file name.
        file: String,
    },
}

/// A bundle on disk whose manifest was read and whose graph checksums were verified.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle folder.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
}

impl Bundle {
    /// Reads `model.json` and verifies the SHA-256 of every graph it lists.
    pub fn open(dir: &Path) -> Result<Self, BundleError> {
        let manifest_path = dir.join(MANIFEST);
        let manifest = read_manifest(&manifest_path)?;
        check_file_names(&manifest, &manifest_path)?;
        verify_checksums(&manifest, dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    /// Path of the graph with `role`, when the bundle has one.
    pub fn graph(&self, role: GraphRole) -> Option<PathBuf> {
        self.manifest.graphs.get(&role).map(|f| self.dir.join(f))
    }
}

fn read_manifest(path: &Path) -> Result<Manifest, BundleError> {
    let text = std::fs::read_to_string(path).map_err(|source| BundleError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|source| BundleError::Manifest {
        path: path.to_path_buf(),
        source,
    })?;
    if manifest.format != FORMAT {
        return Err(BundleError::Format {
            path: path.to_path_buf(),
            found: manifest.format,
        });
    }
    manifest.config.validate().map_err(|source| BundleError::Config {
        path: path.to_path_buf(),
        source,
    })?;
    if let Some(head) = &manifest.semantic {
        head.validate().map_err(|source| BundleError::Config {
            path: path.to_path_buf(),
            source,
        })?;
    }
    if let Some(propagation) = &manifest.propagation {
        propagation
            .validate()
            .and_then(|()| walk_decoder_present(&manifest, propagation))
            .map_err(|source| BundleError::Config {
                path: path.to_path_buf(),
                source,
            })?;
    }
    if let Some(masks) = &manifest.masks {
        masks.validate().map_err(|source| BundleError::Config {
            path: path.to_path_buf(),
            source,
        })?;
    }
    if let Some(interaction) = &manifest.interaction {
        interaction.validate().map_err(|source| BundleError::Config {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(manifest)
}

/// A declared walk decoder needs its low-res graph (the per-click pair is optional, as for the interactive
/// decoder).
fn walk_decoder_present(manifest: &Manifest, propagation: &PropagationDefaults) -> Result<(), Problem> {
    let has_graph = manifest.graphs.contains_key(&GraphRole::PropagationDecoderLowres);
    match propagation.walk_decoder() {
        Some(walk) if !has_graph => Err(format!(
            "propagation declares a {walk} but the bundle has no '{}' graph",
            GraphRole::PropagationDecoderLowres
        )
        .into()),
        _ => Ok(()),
    }
}

/// Every file the manifest names must be a plain name in the bundle folder (no `..`, no absolute path), so a
/// crafted manifest cannot make medico read elsewhere.
fn check_file_names(manifest: &Manifest, manifest_path: &Path) -> Result<(), BundleError> {
    let names = manifest.files.keys().chain(manifest.graphs.values());
    for file in names {
        let mut components = Path::new(file).components();
        let plain = matches!(components.next(), Some(Component::Normal(_))) && components.next().is_none();
        if !plain {
            return Err(BundleError::FileName {
                path: manifest_path.to_path_buf(),
                file: file.clone(),
            });
        }
    }
    Ok(())
}

fn verify_checksums(manifest: &Manifest, dir: &Path) -> Result<(), BundleError> {
    for (file, entry) in &manifest.files {
        let path = dir.join(file);
        let actual = sha256_file(&path).map_err(|source| BundleError::Read {
            path: path.clone(),
            source,
        })?;
        if actual != entry.sha256 {
            return Err(BundleError::Checksum {
                path,
                expected: entry.sha256.clone(),
                actual,
            });
        }
    }
    for (role, file) in &manifest.graphs {
        if !manifest.files.contains_key(file) {
            return Err(BundleError::Unverified {
                path: dir.join(MANIFEST),
                role: *role,
                file: file.clone(),
            });
        }
    }
    Ok(())
}
