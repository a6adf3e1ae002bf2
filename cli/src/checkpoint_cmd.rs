//! `medico-cli checkpoint info`: what a checkpoint holds and whether it is a valid SAM.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use medico_export::overlay::{apply_overlay, changed_tensors, largest_rounding, write_overlay, OverlayPrecision};
use medico_models::checkpoint::{load_checkpoint, shapes};
use medico_models::{EncoderConfig, Sam, SamConfig};

use crate::Failure;

#[derive(Subcommand)]
pub enum CheckpointCommand {
    /// Reads a checkpoint, infers (or takes) its architecture and checks every key and shape.
    Info {
        /// .safetensors, .pth/.pt (zip or legacy torch.save), flat or nested training checkpoint.
        file: PathBuf,
        /// Architecture JSON (fields of the reference config.json) instead of inference from shapes.
        #[arg(long, conflicts_with = "arch")]
        config: Option<PathBuf>,
        /// Preset architecture: vit_b, vit_l, vit_h or lite_medsam.
        #[arg(long)]
        arch: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Writes what a finetune changed as an overlay: the tensors of FINETUNED that differ from BASE, which
    /// `export`'s `--overlay` and the registry apply back over BASE.
    Diff {
        /// The checkpoint the finetune started from.
        base: PathBuf,
        /// The finetuned checkpoint (same keys and shapes).
        finetuned: PathBuf,
        /// Storage of the overlay's values.
        #[arg(long, value_enum, default_value = "f16")]
        precision: Precision,
        /// The overlay file (.safetensors).
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Applies an overlay (what `checkpoint diff` wrote) over BASE and writes the whole checkpoint: the
    /// starting point for finetuning a shipped model further (e.g. medico-lite from LiteMedSAM's checkpoint
    /// and `models/medico-lite/finetuned.safetensors`).
    Apply {
        /// The checkpoint the overlay was taken against.
        base: PathBuf,
        /// The overlay (.safetensors; same keys and shapes as in BASE).
        overlay: PathBuf,
        /// Storage of the values.
        #[arg(long, value_enum, default_value = "f32")]
        precision: Precision,
        /// The output file (.safetensors).
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Writes every tensor of a flat state dict (a SAM checkpoint, a decoder) as safetensors at the given
    /// precision, reporting the largest rounding (how medico-lite's semantic decoder is shipped in f16).
    Convert {
        /// The checkpoint (any format `checkpoint info` reads).
        file: PathBuf,
        /// Storage of the values.
        #[arg(long, value_enum, default_value = "f16")]
        precision: Precision,
        /// The output file (.safetensors).
        #[arg(short, long)]
        out: PathBuf,
    },
}

/// How `checkpoint diff` stores values.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Precision {
    /// Half precision.
    F16,
    /// Single precision.
    F32,
}

impl From<Precision> for OverlayPrecision {
    fn from(p: Precision) -> Self {
        match p {
            Precision::F16 => OverlayPrecision::F16,
            Precision::F32 => OverlayPrecision::F32,
        }
    }
}

pub fn run(command: CheckpointCommand) -> Result<(), Failure> {
    match command {
        CheckpointCommand::Info {
            file,
            config,
            arch,
            json,
        } => info(file, config, arch, json),
        CheckpointCommand::Diff {
            base,
            finetuned,
            precision,
            out,
        } => diff(&base, &finetuned, precision.into(), &out),
        CheckpointCommand::Apply {
            base,
            overlay,
            precision,
            out,
        } => apply(&base, &overlay, precision.into(), &out),
        CheckpointCommand::Convert { file, precision, out } => convert(&file, precision.into(), &out),
    }
}

/// `checkpoint convert`: every tensor at `precision`.
fn convert(file: &Path, precision: OverlayPrecision, out: &Path) -> Result<(), Failure> {
    let state = load_checkpoint(file).map_err(Failure::model)?;
    let largest_rounding = largest_rounding(&state, precision);
    write_overlay(&state, precision, out).map_err(Failure::input)?;
    println!(
        "{}: {} tensors, largest rounding {largest_rounding:.3e}",
        out.display(),
        state.len()
    );
    Ok(())
}

/// `checkpoint apply`: BASE with OVERLAY's tensors, written whole.
fn apply(base: &Path, overlay: &Path, precision: OverlayPrecision, out: &Path) -> Result<(), Failure> {
    let mut state = load_checkpoint(base).map_err(Failure::model)?;
    let changes = load_checkpoint(overlay).map_err(Failure::model)?;
    apply_overlay(&mut state, &changes)
        .map_err(|problem| Failure::model(anyhow::anyhow!("{}: {problem}", overlay.display())))?;
    write_overlay(&state, precision, out).map_err(Failure::input)?;
    println!(
        "{}: {} tensors, {} of them from {}",
        out.display(),
        state.len(),
        changes.len(),
        overlay.display()
    );
    Ok(())
}

/// `checkpoint diff`: the changed tensors written as an overlay, with the rounding the precision costs.
fn diff(base: &Path, finetuned: &Path, precision: OverlayPrecision, out: &Path) -> Result<(), Failure> {
    let base_state = load_checkpoint(base).map_err(Failure::model)?;
    let finetuned_state = load_checkpoint(finetuned).map_err(Failure::model)?;
    let changed = changed_tensors(&base_state, &finetuned_state)
        .map_err(|problem| Failure::model(anyhow::anyhow!("{}: {problem}", finetuned.display())))?;
    let largest_rounding = largest_rounding(&changed, precision);
    write_overlay(&changed, precision, out).map_err(Failure::input)?;
    let values: usize = changed.values().map(|t| t.data.len()).sum();
    println!(
        "{}: {} of {} tensors changed ({values} values), largest rounding {largest_rounding:.3e}",
        out.display(),
        changed.len(),
        finetuned_state.len()
    );
    Ok(())
}

/// `checkpoint info`.
fn info(file: PathBuf, config: Option<PathBuf>, arch: Option<String>, json: bool) -> Result<(), Failure> {
    let state = load_checkpoint(&file).map_err(Failure::model)?;
    let found = shapes(&state);
    let (config, source) = match (config, arch) {
        (Some(path), _) => (SamConfig::from_json_file(&path).map_err(Failure::model)?, "config file"),
        (None, Some(name)) => (SamConfig::preset(&name).map_err(Failure::model)?, "--arch"),
        (None, None) => (
            SamConfig::infer_from_shapes(&found, None)
                .with_context(|| format!("{}: cannot infer the architecture", file.display()))
                .map_err(Failure::model)?,
            "inferred from shapes",
        ),
    };
    let sam = Sam::new(config);
    sam.param_specs()
        .check(&found)
        .with_context(|| format!("{}", file.display()))
        .map_err(Failure::model)?;
    let parameters: usize = state.values().map(|t| t.data.len()).sum();
    let c = &sam.config;
    if json {
        let report = CheckpointReport {
            file: file.display().to_string(),
            architecture: c.architecture_name(),
            config_source: source,
            tensors: state.len(),
            values: parameters,
            config: c,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report serializes")
        );
    } else {
        println!("{}: valid SAM checkpoint", file.display());
        println!("  architecture  {} ({source})", c.architecture_name());
        println!("  tensors       {} ({parameters} values)", state.len());
        println!("  encoder       {}", describe_encoder(&c.encoder));
        println!(
            "  input         {0}x{0}, embedding {1}x{2}x{2}",
            c.img_size,
            c.prompt_embed_dim,
            c.embedding_size()
        );
    }
    Ok(())
}

/// One line on the image encoder's numbers.
fn describe_encoder(encoder: &EncoderConfig) -> String {
    match encoder {
        EncoderConfig::Vit(v) => format!(
            "ViT, {} wide, {} blocks, {} heads, global blocks {:?}, window {}",
            v.encoder_embed_dim,
            v.encoder_depth,
            v.encoder_num_heads,
            v.encoder_global_attn_indexes,
            v.encoder_window_size
        ),
        EncoderConfig::TinyVit { tiny_vit: t } => format!(
            "TinyViT ({:?} stem), widths {:?}, depths {:?}, heads {:?}, windows {:?}",
            t.stem, t.embed_dims, t.depths, t.num_heads, t.window_sizes
        ),
    }
}

/// `checkpoint info --json`.
#[derive(serde::Serialize)]
struct CheckpointReport<'a> {
    file: String,
    architecture: &'a str,
    config_source: &'a str,
    tensors: usize,
    values: usize,
    config: &'a medico_models::SamConfig,
}
