//! Exporting a checkpoint into a bundle (the format is `medico-bundle`'s): the four graphs written and
//! structurally checked, `model.json` with their checksums, all in a staging folder renamed into place.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use medico_bundle::checksum::{sha256_bytes, sha256_file};
use medico_bundle::staging::{Existing, StagedDir};
use medico_bundle::{
    default_intensity, FileEntry, GraphRole, InteractionDefaults, Manifest, MaskDefaults, PropagationDefaults,
    Provenance, SemanticHead, SourceCheckpoint, FORMAT, MANIFEST,
};
use medico_models::checkpoint::{load_checkpoint, shapes};
use medico_models::{load_decoder_state, Preprocessing, Sam, SamConfig, StateDict, UnetrConfig, UnetrDecoder};

use crate::graphs::{
    decoder_model, decoder_prepare_model, decoder_prompt_model, encoder_model, segmentation_decoder_model,
    DecoderVariant, IR_VERSION, OPSET,
};

/// File name of the semantic segmentation decoder in a bundle.
pub const SEGMENTATION_DECODER_FILE: &str = "segmentation_decoder.onnx";
use crate::overlay::{apply_overlay, blended_overlay, Overlay};
use crate::pb::ModelProto;
use crate::to_bytes;

/// Why an export failed; each names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The checkpoint or configuration is unusable.
    #[error(transparent)]
    Model(#[from] medico_models::ModelError),
    /// The checkpoint does not fit the architecture.
    #[error("{}: does not fit the architecture: {problem}", path.display())]
    Mismatch {
        /// The checkpoint.
        path: PathBuf,
        /// Which parameters differ.
        problem: String,
    },
    /// An overlay that does not fit the checkpoint it is applied over.
    #[error("{}: does not fit the base checkpoint", path.display())]
    Overlay {
        /// The overlay.
        path: PathBuf,
        /// Which tensor and why.
        #[source]
        source: crate::overlay::OverlayMismatch,
    },
    /// The checkpoint cannot be read for its checksum.
    #[error("{}: cannot read", path.display())]
    Read {
        /// The checkpoint.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The output folder exists and holds files.
    #[error("{}: exists and is not empty (use --force to replace it)", path.display())]
    Exists {
        /// The output folder.
        path: PathBuf,
    },
    /// The output cannot be written.
    #[error("{}: cannot write", path.display())]
    Write {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A walk decoder blended toward a finetune was asked for without the finetune (an overlay).
    #[error("{}: propagation.decoder_blend needs an overlay (the finetune to blend the checkpoint toward)", path.display())]
    BlendWithoutOverlay {
        /// The checkpoint.
        path: PathBuf,
    },
    /// A walk decoder was given without the propagation settings it walks with.
    #[error("{file}: a walk decoder needs the propagation settings it walks with")]
    WalkWithoutPropagation {
        /// The walk decoder's overlay.
        file: String,
    },
    /// An exported graph failed the structural check (a bug of the exporter, not of the input).
    #[error("{file}: exported graph is malformed: {}", problems.join("; "))]
    Malformed {
        /// The graph file.
        file: String,
        /// Every problem found.
        problems: Vec<String>,
    },
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
    /// Tensors that replace the checkpoint's (a finetuned part shipped apart from its base checkpoint).
    pub overlay: Option<Overlay<'a>>,
    /// A semantic segmentation decoder to add as `segmentation_decoder.onnx`.
    pub semantic: Option<SemanticExport>,
    /// The propagation settings measured for this model, recorded in `model.json`.
    pub propagation: Option<PropagationDefaults>,
    /// A walk decoder trained on its own (`train`'s `walk` objective): its overlay over the checkpoint, for
    /// the `propagation_decoder_*` graphs (needs `propagation`; recorded as its `decoder_overlay`).
    pub walk_overlay: Option<WalkOverlay<'a>>,
    /// The composition of correction rounds measured for this model, recorded in `model.json`.
    pub interaction: Option<InteractionDefaults>,
    /// The treatment of binary masks measured for this model, recorded in `model.json`.
    pub masks: Option<MaskDefaults>,
}

/// The tensors of a walk decoder trained on its own, with the file they came from, for
/// [`ExportRequest::walk_overlay`].
pub struct WalkOverlay<'a> {
    /// The overlay's tensors (keys and shapes of the base checkpoint).
    pub tensors: &'a StateDict,
    /// Its file name and SHA-256, recorded in `model.json`.
    pub source: SourceCheckpoint,
}

/// A UNETR decoder state (torch-em keys) with the names of its classes, for [`ExportRequest::semantic`].
pub struct SemanticExport {
    /// The decoder's parameters.
    pub state: StateDict,
    /// Class names after background, in output-channel order.
    pub classes: Vec<String>,
    /// Where the decoder came from (file name and SHA-256), recorded in `model.json`.
    pub source: SourceCheckpoint,
}

impl SemanticExport {
    /// Reads a decoder checkpoint (flat, or a combined checkpoint's `decoder_state`) with its class names.
    pub fn from_file(path: &Path, classes: Vec<String>) -> Result<Self, ExportError> {
        let state = load_decoder_state(path)?;
        let sha256 = sha256_file(path).map_err(|source| ExportError::Read {
            path: path.into(),
            source,
        })?;
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self {
            state,
            classes,
            source: SourceCheckpoint { file, sha256 },
        })
    }
}

/// Reads, checks and exports a checkpoint into a bundle folder. The folder appears complete or not at
/// all: everything is written to a staging folder that is renamed into place at the end.
pub fn export_bundle(request: &ExportRequest<'_>) -> Result<Manifest, ExportError> {
    let out = request.out;
    if !request.force && is_non_empty_dir(out) {
        return Err(ExportError::Exists { path: out.into() });
    }
    let (sam, state, walk_state) = load_model(request)?;
    let semantic = request
        .semantic
        .as_ref()
        .map(|semantic| semantic_head(&sam, semantic))
        .transpose()?;
    let checkpoint_sha = sha256_file(request.checkpoint).map_err(|source| ExportError::Read {
        path: request.checkpoint.into(),
        source,
    })?;
    let write_error = |source| ExportError::Write {
        path: out.into(),
        source,
    };
    let staging = StagedDir::beside(out).map_err(write_error)?;
    let states = States {
        interactive: &state,
        walk: walk_state.as_ref(),
    };
    let manifest = write_bundle(&sam, states, semantic, staging.path(), request, checkpoint_sha)?;
    let existing = if request.force {
        Existing::Replace
    } else {
        Existing::KeepUnlessEmpty
    };
    staging.commit(existing).map_err(write_error)?;
    Ok(manifest)
}

fn is_non_empty_dir(path: &Path) -> bool {
    path.exists() && std::fs::read_dir(path).map(|mut d| d.next().is_some()).unwrap_or(true)
}

/// The checkpoint read and checked against its architecture (given, or inferred from its shapes), with the
/// overlay applied; and the walk decoder's state when the request has one ([`walk_state`]).
fn load_model(request: &ExportRequest<'_>) -> Result<(Sam, StateDict, Option<StateDict>), ExportError> {
    let base = load_checkpoint(request.checkpoint)?;
    let overlay_error = |origin: &Path, source| ExportError::Overlay {
        path: origin.into(),
        source,
    };
    let walk_state = walk_state(&base, request)?;
    let mut state = base;
    if let Some(overlay) = &request.overlay {
        apply_overlay(&mut state, overlay.tensors).map_err(|e| overlay_error(overlay.origin, e))?;
    }
    let config = match &request.config {
        Some(c) => c.clone(),
        None => SamConfig::infer_from_shapes(&shapes(&state), None)?,
    };
    let sam = Sam::new(config);
    sam.param_specs()
        .check(&shapes(&state))
        .map_err(|e| ExportError::Mismatch {
            path: request.checkpoint.into(),
            problem: e.to_string(),
        })?;
    Ok((sam, state, walk_state))
}

/// The walk decoder's parameters: the base checkpoint with the walk decoder's own overlay applied (moved
/// `decoder_blend` of the way to it when declared), or moved `decoder_blend` of the way to the interactive
/// overlay; `None` when the request declares neither.
fn walk_state(base: &StateDict, request: &ExportRequest<'_>) -> Result<Option<StateDict>, ExportError> {
    let blend = request.propagation.as_ref().and_then(|p| p.decoder_blend);
    let (origin, toward) = match (&request.walk_overlay, &request.overlay) {
        (Some(walk), _) if request.propagation.is_none() => {
            return Err(ExportError::WalkWithoutPropagation {
                file: walk.source.file.clone(),
            })
        }
        (Some(walk), _) => (PathBuf::from(&walk.source.file), walk.tensors),
        (None, _) if blend.is_none() => return Ok(None),
        (None, Some(overlay)) => (overlay.origin.to_path_buf(), overlay.tensors),
        (None, None) => {
            return Err(ExportError::BlendWithoutOverlay {
                path: request.checkpoint.into(),
            })
        }
    };
    let overlay_error = |source| ExportError::Overlay {
        path: origin.clone(),
        source,
    };
    let moved = blended_overlay(base, toward, blend.unwrap_or(1.0) as f32).map_err(overlay_error)?;
    let mut walk = base.clone();
    apply_overlay(&mut walk, &moved).map_err(overlay_error)?;
    Ok(Some(walk))
}

/// A semantic decoder checked against the SAM model it runs on and its class list: its head for
/// `model.json` and the decoder.
fn semantic_head(sam: &Sam, semantic: &SemanticExport) -> Result<(SemanticHead, UnetrDecoder), ExportError> {
    let mismatch = |problem: String| ExportError::Mismatch {
        path: semantic.source.file.clone().into(),
        problem,
    };
    let found = shapes(&semantic.state);
    let config = UnetrConfig::infer_from_shapes(&found)?;
    let decoder = UnetrDecoder::new(config);
    decoder
        .param_specs()
        .check(&found)
        .map_err(|e| mismatch(e.to_string()))?;
    if config.embed_dim != sam.config.prompt_embed_dim {
        return Err(mismatch(format!(
            "the segmentation decoder reads {}-channel embeddings, the image encoder writes {}",
            config.embed_dim, sam.config.prompt_embed_dim
        )));
    }
    let head = SemanticHead {
        decoder: config,
        classes: semantic.classes.clone(),
        source_checkpoint: semantic.source.clone(),
    };
    head.validate().map_err(|problem| mismatch(problem.0))?;
    Ok((head, decoder))
}

/// The parameters a bundle's graphs are exported from.
#[derive(Clone, Copy)]
struct States<'a> {
    /// The model's: encoder and the interactive decoder.
    interactive: &'a StateDict,
    /// The walk decoder's, when the bundle has one.
    walk: Option<&'a StateDict>,
}

/// A graph of the bundle: its role, file name and model.
type BundleGraph = (GraphRole, &'static str, ModelProto);

/// The graphs of a bundle, by role, with their file names.
fn bundle_graphs(sam: &Sam, states: States<'_>) -> Vec<BundleGraph> {
    let state = states.interactive;
    let mut graphs = vec![(GraphRole::Encoder, "encoder.onnx", encoder_model(sam, state))];
    for (role, variant) in [
        (GraphRole::Decoder, DecoderVariant::Official),
        (GraphRole::DecoderSingle, DecoderVariant::OfficialSingle),
    ] {
        graphs.push((role, variant.file_name(), decoder_model(sam, state, variant)));
    }
    graphs.extend(prompt_decoder_graphs(
        sam,
        state,
        [
            (GraphRole::DecoderLowres, DecoderVariant::LowRes.file_name()),
            (GraphRole::DecoderPrepare, "decoder_prepare.onnx"),
            (GraphRole::DecoderPrompt, "decoder_prompt.onnx"),
        ],
    ));
    if let Some(walk) = states.walk {
        graphs.extend(prompt_decoder_graphs(
            sam,
            walk,
            [
                (GraphRole::PropagationDecoderLowres, "propagation_decoder_lowres.onnx"),
                (GraphRole::PropagationDecoderPrepare, "propagation_decoder_prepare.onnx"),
                (GraphRole::PropagationDecoderPrompt, "propagation_decoder_prompt.onnx"),
            ],
        ));
    }
    graphs
}

/// The graphs the runtime prompts one decoder with: low-res logits for every prompt, and the per-click pair
/// (image-only part, per-prompt part), under `names` in that order.
fn prompt_decoder_graphs(sam: &Sam, state: &StateDict, names: [(GraphRole, &'static str); 3]) -> [BundleGraph; 3] {
    let [(lowres, lowres_file), (prepare, prepare_file), (prompt, prompt_file)] = names;
    [
        (lowres, lowres_file, decoder_model(sam, state, DecoderVariant::LowRes)),
        (prepare, prepare_file, decoder_prepare_model(sam, state)),
        (prompt, prompt_file, decoder_prompt_model(sam, state)),
    ]
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    std::fs::write(path, bytes).map_err(|source| ExportError::Write {
        path: path.into(),
        source,
    })
}

fn write_bundle(
    sam: &Sam,
    states: States<'_>,
    semantic: Option<(SemanticHead, UnetrDecoder)>,
    dir: &Path,
    request: &ExportRequest<'_>,
    checkpoint_sha: String,
) -> Result<Manifest, ExportError> {
    let mut graphs = BTreeMap::new();
    let mut files = BTreeMap::new();
    let mut models = bundle_graphs(sam, states);
    if let (Some((_, decoder)), Some(export)) = (&semantic, &request.semantic) {
        let model =
            segmentation_decoder_model(decoder, &export.state, sam.config.embedding_size(), sam.config.img_size);
        models.push((GraphRole::SegmentationDecoder, SEGMENTATION_DECODER_FILE, model));
    }
    for (role, file, model) in models {
        crate::validate::check_structure(&model).map_err(|problems| ExportError::Malformed {
            file: file.into(),
            problems,
        })?;
        let bytes = to_bytes(&model);
        write_file(&dir.join(file), &bytes)?;
        let entry = FileEntry {
            sha256: sha256_bytes(&bytes),
            bytes: bytes.len() as u64,
        };
        files.insert(file.to_string(), entry);
        graphs.insert(role, file.to_string());
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
        semantic: semantic.map(|(head, _)| head),
        propagation: request.propagation.clone().map(|declared| PropagationDefaults {
            decoder_overlay: request.walk_overlay.as_ref().map(|walk| walk.source.clone()),
            ..declared
        }),
        interaction: request.interaction.clone(),
        masks: request.masks.clone(),
    };
    let text = serde_json::to_string_pretty(&manifest).expect("manifest serializes");
    write_file(&dir.join(MANIFEST), text.as_bytes())?;
    Ok(manifest)
}
