//! Model bundles: a folder with the exported graphs and `model.json` (architecture, preprocessing,
//! intensity normalization, SHA-256 of every graph and of the source checkpoint, exporter, opset,
//! provenance). Bundles are written atomically and verified on load.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use medico_models::checkpoint::{load_checkpoint, shapes};
use medico_models::{Preprocessing, Sam, SamConfig, StateDict};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::graphs::{decoder_model, encoder_model, DecoderVariant, IR_VERSION, OPSET};
use crate::to_bytes;

/// Name of the manifest inside a bundle.
pub const MANIFEST: &str = "model.json";
/// Bundle format identifier.
pub const FORMAT: &str = "medico-bundle/1";
/// The intensity normalization MedicoSAM was trained with (per-slice 1st–99th percentile to 0–255).
pub const DEFAULT_INTENSITY: &str = "percentile:1,99";

/// MedSAM's (and so LiteMedSAM's) intensity rule for non-CT images: 0.5–99.5 percentile of the non-zero
/// values to 0–255.
pub const LITE_MEDSAM_INTENSITY: &str = "nonzero-percentile:0.5,99.5";

/// The intensity normalization a model with this preprocessing was trained with.
pub fn default_intensity(preprocessing: &Preprocessing) -> &'static str {
    if *preprocessing == Preprocessing::LITE_MEDSAM {
        LITE_MEDSAM_INTENSITY
    } else {
        DEFAULT_INTENSITY
    }
}

/// Where a bundle's weights came from.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Provenance {
    /// Registry or model name, e.g. `vit_b_medical_imaging`.
    pub name: Option<String>,
    /// Download URL, when the checkpoint came from a registry.
    pub url: Option<String>,
    /// Training data, when known.
    pub training_data: Option<String>,
    /// Anything else worth keeping (command, seed, steps, metrics).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// A file of the bundle with its checksum.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    /// Lower-case hex SHA-256.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// `model.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// `vit_b`, `vit_l`, `vit_h` or `custom`.
    pub architecture: String,
    /// Every architecture number, pixel mean/std and mask threshold.
    pub config: SamConfig,
    /// Side of the square encoder input.
    pub input_size: usize,
    /// Resize and normalization of the encoder input (bundles without it: SAM's).
    #[serde(default)]
    pub preprocessing: Preprocessing,
    /// Intensity normalization the model expects for medical images (see the runtime's `--intensity`).
    pub intensity: String,
    /// Role → file name: `encoder`, `decoder`, `decoder_single`, `decoder_lowres`.
    pub graphs: BTreeMap<String, String>,
    /// File name → checksum, for every graph.
    pub files: BTreeMap<String, FileEntry>,
    /// The checkpoint the bundle was exported from.
    pub source_checkpoint: SourceCheckpoint,
    /// Who wrote the bundle.
    pub exporter: String,
    /// ONNX opset of the graphs.
    pub opset: i64,
    /// ONNX IR version of the graphs.
    pub ir_version: i64,
    /// Where the weights came from.
    pub provenance: Provenance,
}

/// The source checkpoint of a bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceCheckpoint {
    /// File name (no directories).
    pub file: String,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
}

/// Errors of bundle export and loading; each names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The checkpoint or configuration is unusable.
    #[error(transparent)]
    Model(#[from] medico_models::ModelError),
    /// The output cannot be written (exists, not writable, ...).
    #[error("{path}: {message}")]
    Output {
        /// The path.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A bundle that cannot be trusted (missing files, bad manifest, checksum mismatch).
    #[error("{path}: {message}")]
    Invalid {
        /// The path.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Lower-case hex SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What to export.
pub struct ExportRequest<'a> {
    /// Checkpoint of any format `load_checkpoint` reads.
    pub checkpoint: &'a Path,
    /// Architecture; `None` infers it from the checkpoint's shapes.
    pub config: Option<SamConfig>,
    /// Output folder (created; must not exist or be empty unless `force`).
    pub out: &'a Path,
    /// Replace an existing non-empty output folder.
    pub force: bool,
    /// Provenance to record.
    pub provenance: Provenance,
}

/// Reads, checks and exports a checkpoint into a bundle folder. The folder appears complete or not at
/// all: everything is written to a temporary sibling folder that is renamed into place at the end.
pub fn export_bundle(request: &ExportRequest<'_>) -> Result<Manifest, BundleError> {
    let out = request.out;
    let out_text = out.display().to_string();
    if out.exists() && !request.force {
        let non_empty = std::fs::read_dir(out).map(|mut d| d.next().is_some()).unwrap_or(true);
        if non_empty {
            return Err(BundleError::Output {
                path: out_text,
                message: "exists and is not empty (use --force to replace it)".into(),
            });
        }
    }
    let state = load_checkpoint(request.checkpoint)?;
    let config = match &request.config {
        Some(c) => c.clone(),
        None => SamConfig::infer_from_shapes(&shapes(&state), None)?,
    };
    let sam = Sam::new(config);
    sam.param_specs()
        .check(&shapes(&state))
        .map_err(|e| BundleError::Invalid {
            path: request.checkpoint.display().to_string(),
            message: e.to_string(),
        })?;
    let checkpoint_sha = sha256_file(request.checkpoint).map_err(|e| BundleError::Invalid {
        path: request.checkpoint.display().to_string(),
        message: format!("cannot read: {e}"),
    })?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let output_error = |e: std::io::Error| BundleError::Output {
        path: out_text.clone(),
        message: e.to_string(),
    };
    // Like `mkdir -p`: missing parent folders are created (a file in the way is still an error).
    std::fs::create_dir_all(&parent).map_err(output_error)?;
    let staging = tempfile_dir(&parent, out).map_err(output_error)?;
    let result = write_bundle(&sam, &state, staging.path(), request, checkpoint_sha).and_then(|manifest| {
        replace_dir(staging.path(), out, request.force).map_err(output_error)?;
        Ok(manifest)
    });
    // On success the staging folder was renamed into place; on failure dropping it removes it.
    drop(staging);
    result
}

/// A temporary folder next to `out` (same file system, so the final rename is atomic); removed when
/// dropped unless it was renamed into place.
fn tempfile_dir(parent: &Path, out: &Path) -> std::io::Result<tempfile::TempDir> {
    let stem = out
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    tempfile::Builder::new()
        .prefix(&format!(".{stem}.partial-"))
        .tempdir_in(parent)
}

fn replace_dir(staging: &Path, out: &Path, force: bool) -> std::io::Result<()> {
    if out.exists() {
        if !force && std::fs::read_dir(out)?.next().is_some() {
            return Err(std::io::Error::other("appeared while exporting and is not empty"));
        }
        let old = out.with_extension(format!("old-{}", std::process::id()));
        std::fs::rename(out, &old)?;
        std::fs::rename(staging, out)?;
        std::fs::remove_dir_all(&old)
    } else {
        std::fs::rename(staging, out)
    }
}

fn write_bundle(
    sam: &Sam,
    state: &StateDict,
    dir: &Path,
    request: &ExportRequest<'_>,
    checkpoint_sha: String,
) -> Result<Manifest, BundleError> {
    let mut graphs = BTreeMap::new();
    let mut files = BTreeMap::new();
    let mut models = vec![("encoder", "encoder.onnx", encoder_model(sam, state))];
    for (role, variant) in [
        ("decoder", DecoderVariant::Official),
        ("decoder_single", DecoderVariant::OfficialSingle),
        ("decoder_lowres", DecoderVariant::LowRes),
    ] {
        models.push((role, variant.file_name(), decoder_model(sam, state, variant)));
    }
    for (role, file, model) in models {
        crate::validate::check_structure(&model).map_err(|problems| BundleError::Invalid {
            path: file.into(),
            message: format!("exported graph is malformed: {}", problems.join("; ")),
        })?;
        let bytes = to_bytes(&model);
        let path = dir.join(file);
        std::fs::write(&path, &bytes).map_err(|e| BundleError::Output {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        files.insert(
            file.to_string(),
            FileEntry {
                sha256: hex(&Sha256::digest(&bytes)),
                bytes: bytes.len() as u64,
            },
        );
        graphs.insert(role.to_string(), file.to_string());
    }
    let preprocessing = Preprocessing::for_architecture(&sam.config);
    let manifest = Manifest {
        format: FORMAT.into(),
        architecture: sam.config.architecture_name().into(),
        config: sam.config.clone(),
        input_size: sam.config.img_size,
        preprocessing,
        intensity: default_intensity(&preprocessing).into(),
        graphs,
        files,
        source_checkpoint: SourceCheckpoint {
            file: request
                .checkpoint
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            sha256: checkpoint_sha,
        },
        exporter: format!("medico-export {}", env!("CARGO_PKG_VERSION")),
        opset: OPSET,
        ir_version: IR_VERSION,
        provenance: request.provenance.clone(),
    };
    let text = serde_json::to_string_pretty(&manifest).expect("manifest serializes");
    let path = dir.join(MANIFEST);
    std::fs::write(&path, text).map_err(|e| BundleError::Output {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    Ok(manifest)
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
        let invalid = |path: &Path, message: String| BundleError::Invalid {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(&manifest_path)
            .map_err(|e| invalid(&manifest_path, format!("cannot read the bundle manifest: {e}")))?;
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| invalid(&manifest_path, format!("not a medico bundle manifest: {e}")))?;
        if manifest.format != FORMAT {
            return Err(invalid(
                &manifest_path,
                format!("unsupported bundle format '{}' (expected {FORMAT})", manifest.format),
            ));
        }
        for (file, entry) in &manifest.files {
            let path = dir.join(file);
            let actual = sha256_file(&path).map_err(|e| invalid(&path, format!("cannot read: {e}")))?;
            if actual != entry.sha256 {
                return Err(invalid(
                    &path,
                    format!(
                        "checksum mismatch (model.json says {}, file has {actual}): the bundle was modified or damaged",
                        entry.sha256
                    ),
                ));
            }
        }
        for (role, file) in &manifest.graphs {
            if !manifest.files.contains_key(file) {
                return Err(invalid(
                    &manifest_path,
                    format!("graph '{role}' ({file}) has no checksum"),
                ));
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    /// Path of the graph with `role` (`encoder`, `decoder`, `decoder_single`, `decoder_lowres`).
    pub fn graph(&self, role: &str) -> Option<PathBuf> {
        self.manifest.graphs.get(role).map(|f| self.dir.join(f))
    }
}
