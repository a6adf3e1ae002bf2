//! The model registry: published SAM and MedicoSAM checkpoints with their URLs and checksums, downloaded
//! into a user cache, verified, then exported to a bundle.
//!
//! Downloads stream into a temporary file in the cache folder while being hashed; only a complete file
//! with the right checksum is renamed into place, so an interrupted or corrupted download leaves nothing.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use crate::bundle::{export_bundle, BundleError, ExportRequest, Manifest, Provenance};

/// One downloadable checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RegistryEntry {
    /// Registry name, e.g. `vit_b_medical_imaging`.
    pub name: String,
    /// What it is.
    pub description: String,
    /// Download URL.
    pub url: String,
    /// File name in the cache.
    pub file: String,
    /// Checksum as `xxh128:<32 hex digits>` (the form micro-sam publishes).
    pub checksum: String,
    /// Official architecture (`vit_b`, ...) to export with; `None` (and no `config`) for files that are
    /// not SAM models.
    pub architecture: Option<String>,
    /// A custom architecture, instead of `architecture`.
    #[serde(default)]
    pub config: Option<medico_models::SamConfig>,
    /// Training data, for the bundle's provenance.
    pub training_data: Option<String>,
}

fn entry(
    name: &str,
    description: &str,
    url: &str,
    file: &str,
    checksum: &str,
    arch: Option<&str>,
    data: &str,
) -> RegistryEntry {
    RegistryEntry {
        name: name.into(),
        description: description.into(),
        url: url.into(),
        file: file.into(),
        checksum: checksum.into(),
        architecture: arch.map(str::to_string),
        config: None,
        training_data: Some(data.into()),
    }
}

/// The built-in registry (URLs and xxh128 checksums as published by segment-anything, micro-sam and
/// medico-sam).
pub fn builtin_registry() -> Vec<RegistryEntry> {
    const SA1B: &str = "SA-1B (natural images)";
    const SAMED: &str = "SA-Med2D-20M (medical images), finetuned from SAM vit_b";
    vec![
        entry(
            "vit_b",
            "SAM ViT-B (official)",
            "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
            "sam_vit_b_01ec64.pth",
            "xxh128:6923c33df3637b6a922d7682bfc9a86b",
            Some("vit_b"),
            SA1B,
        ),
        entry(
            "vit_l",
            "SAM ViT-L (official)",
            "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
            "sam_vit_l_0b3195.pth",
            "xxh128:a82beb3c660661e3dd38d999cc860e9a",
            Some("vit_l"),
            SA1B,
        ),
        entry(
            "vit_h",
            "SAM ViT-H (official)",
            "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
            "sam_vit_h_4b8939.pth",
            "xxh128:97698fac30bd929c2e6d8d8cc15933c2",
            Some("vit_h"),
            SA1B,
        ),
        entry(
            "vit_b_medical_imaging",
            "MedicoSAM (SAM ViT-B finetuned with iterative prompting)",
            "https://owncloud.gwdg.de/index.php/s/f5Ol4FrjPQWfjUF/download",
            "vit_b_medical_imaging.pt",
            "xxh128:40169f1e3c03a4b67bff58249c176d92",
            Some("vit_b"),
            SAMED,
        ),
        entry(
            "vit_b_medical_imaging_decoder",
            "MedicoSAM's jointly trained UNETR segmentation decoder (downloaded and verified; not a SAM bundle)",
            "https://owncloud.gwdg.de/index.php/s/ahd3ZhZl2e0RIwz/download",
            "vit_b_medical_imaging_decoder.pt",
            "xxh128:9e498b12f526f119b96c88be76e3b2ed",
            None,
            SAMED,
        ),
    ]
}

/// Reads a registry from a JSON file (a list of entries), e.g. an institution's mirror.
pub fn registry_from_file(path: &Path) -> Result<Vec<RegistryEntry>, RegistryError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| RegistryError::Registry(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| RegistryError::Registry(format!("{}: not a registry: {e}", path.display())))
}

/// The registry in use: `$MEDICO_REGISTRY` (a JSON file) if set, else the built-in one.
pub fn active_registry() -> Result<Vec<RegistryEntry>, RegistryError> {
    match std::env::var_os("MEDICO_REGISTRY") {
        Some(path) => registry_from_file(Path::new(&path)),
        None => Ok(builtin_registry()),
    }
}

/// The user cache: `$MEDICO_CACHE_DIR`, else `$XDG_CACHE_HOME/medico`, else `~/.cache/medico`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MEDICO_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("medico");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("medico")
}

/// Errors of registry operations.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Unknown name or unreadable registry.
    #[error("{0}")]
    Registry(String),
    /// A download that failed; nothing was left in the cache.
    #[error("{url}: {message}")]
    Download {
        /// The URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// Cache folder problems.
    #[error("{path}: {message}")]
    Cache {
        /// The path.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// Export of the downloaded checkpoint failed.
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

/// Streaming checksum of the form `xxh128:<hex>`.
struct Checksum(Xxh3);

impl Checksum {
    fn new(expected: &str) -> Result<Self, RegistryError> {
        match expected.split_once(':') {
            Some(("xxh128", hex)) if hex.len() == 32 => Ok(Self(Xxh3::new())),
            _ => Err(RegistryError::Registry(format!(
                "unsupported checksum '{expected}' (expected xxh128:<32 hex digits>)"
            ))),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> String {
        format!("xxh128:{:032x}", self.0.digest128())
    }
}

/// Checksum of a file already on disk, in the form of `expected`.
fn file_checksum(path: &Path, expected: &str) -> Result<String, RegistryError> {
    let mut sum = Checksum::new(expected)?;
    let mut file = std::fs::File::open(path).map_err(|e| cache_error(path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| cache_error(path, e))?;
        if n == 0 {
            return Ok(sum.finish());
        }
        sum.update(&buf[..n]);
    }
}

fn cache_error(path: &Path, e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Cache {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Downloads `entry` into `cache/checkpoints/` unless a verified copy is already there; returns its path.
/// `progress` shows a progress bar on standard error.
pub fn fetch_checkpoint(entry: &RegistryEntry, cache: &Path, progress: bool) -> Result<PathBuf, RegistryError> {
    let dir = cache.join("checkpoints");
    std::fs::create_dir_all(&dir).map_err(|e| cache_error(&dir, e))?;
    let target = dir.join(&entry.file);
    if target.exists() && file_checksum(&target, &entry.checksum)? == entry.checksum {
        return Ok(target);
    }
    let download_error = |message: String| RegistryError::Download {
        url: entry.url.clone(),
        message,
    };
    let mut response = ureq::get(&entry.url)
        .call()
        .map_err(|e| download_error(format!("request failed: {e}")))?;
    let total: Option<u64> = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{}.partial-", entry.file))
        .tempfile_in(&dir)
        .map_err(|e| cache_error(&dir, e))?;
    let bar = if progress {
        let bar = indicatif::ProgressBar::new(total.unwrap_or(0));
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} {bar:40} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}")
                .expect("valid template"),
        );
        bar.set_message(entry.name.clone());
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut sum = Checksum::new(&entry.checksum)?;
    let mut reader = response.body_mut().as_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut received: u64 = 0;
    loop {
        let n = reader.read(&mut buf).map_err(|e| {
            download_error(format!(
                "download interrupted after {received} bytes: {e} (nothing was kept)"
            ))
        })?;
        if n == 0 {
            break;
        }
        sum.update(&buf[..n]);
        temp.write_all(&buf[..n]).map_err(|e| cache_error(temp.path(), e))?;
        received += n as u64;
        bar.set_position(received);
    }
    bar.finish_and_clear();
    if let Some(total) = total.filter(|&t| t != received) {
        return Err(download_error(format!(
            "download interrupted: received {received} of {total} bytes (nothing was kept)"
        )));
    }
    let actual = sum.finish();
    if actual != entry.checksum {
        return Err(download_error(format!(
            "checksum mismatch: expected {}, got {actual} (the file was discarded)",
            entry.checksum
        )));
    }
    temp.as_file().sync_all().map_err(|e| cache_error(temp.path(), e))?;
    temp.persist(&target).map_err(|e| cache_error(&target, e.error))?;
    Ok(target)
}

/// Result of [`pull`].
pub struct Pulled {
    /// The verified checkpoint in the cache.
    pub checkpoint: PathBuf,
    /// The bundle exported from it, when the entry is a SAM model.
    pub bundle: Option<(PathBuf, Manifest)>,
}

/// Downloads (or reuses) a registry entry's checkpoint and exports it to `cache/bundles/<name>`.
pub fn pull(name: &str, cache: &Path, progress: bool) -> Result<Pulled, RegistryError> {
    let registry = active_registry()?;
    let entry = registry.iter().find(|e| e.name == name).ok_or_else(|| {
        let names: Vec<&str> = registry.iter().map(|e| e.name.as_str()).collect();
        RegistryError::Registry(format!("unknown model '{name}' (known: {})", names.join(", ")))
    })?;
    let checkpoint = fetch_checkpoint(entry, cache, progress)?;
    let config = match (&entry.config, &entry.architecture) {
        (Some(config), _) => config.clone(),
        (None, Some(arch)) => medico_models::SamConfig::preset(arch).map_err(BundleError::from)?,
        (None, None) => {
            return Ok(Pulled {
                checkpoint,
                bundle: None,
            })
        }
    };
    let out = cache.join("bundles").join(&entry.name);
    std::fs::create_dir_all(cache.join("bundles")).map_err(|e| cache_error(&cache.join("bundles"), e))?;
    let manifest = export_bundle(&ExportRequest {
        checkpoint: &checkpoint,
        config: Some(config),
        out: &out,
        force: true,
        provenance: Provenance {
            name: Some(entry.name.clone()),
            url: Some(entry.url.clone()),
            training_data: entry.training_data.clone(),
            ..Default::default()
        },
    })?;
    Ok(Pulled {
        checkpoint,
        bundle: Some((out, manifest)),
    })
}
