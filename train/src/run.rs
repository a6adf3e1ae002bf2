//! A training run from a JSON configuration: data from NIfTI volumes, a model from a preset, a config file
//! or a checkpoint (or random initialisation), the objective and AdamW, validation loss on held-out
//! volumes, a JSON-lines log, checkpoints that resume exactly, and at the end the SAM state dict and a bundle
//! with the run's provenance.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use medico_export::bundle::{export_bundle, ExportRequest, Provenance};
use medico_models::{load_checkpoint, Sam, SamConfig, StateDict};
use rand::seq::IndexedRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use tch::{Device, Kind, Tensor};

use crate::data::{
    folder_samples, make_batch, sa_med2d_samples, slice_samples, ImageFolderSource, SaMed2dSource, SliceSample,
    VolumeSource,
};
use crate::objective::{Batch, Objective, ObjectiveConfig};
use crate::trainer::{OptimizerConfig, Trainer};

/// One data source of the configuration: a volume, a folder pair of 2D images and label maps, or an
/// SA-Med2D-style index (told apart by their fields).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DataEntry {
    /// `{"image": ..., "labels": ..., "axis": 2, "values": [...]}`.
    Volume(VolumeEntry),
    /// `{"images": "dir", "label_maps": "dir"}`.
    Folder(FolderEntry),
    /// `{"sa_med2d": "index.json"}`.
    SaMed2d(SaMed2dEntry),
}

/// 2D images with label maps of the same file names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderEntry {
    /// Folder of images (PNG/TIFF).
    pub images: PathBuf,
    /// Folder of label maps (0 = background, each other value an object).
    pub label_maps: PathBuf,
}

/// An SA-Med2D-20M style index (image → object masks).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaMed2dEntry {
    /// The JSON index; its paths are relative to its folder.
    pub sa_med2d: PathBuf,
}

/// One volume of the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeEntry {
    /// Image volume (relative paths: to the configuration file).
    pub image: PathBuf,
    /// Label volume on the same grid.
    pub labels: PathBuf,
    /// Slicing axis (default 2).
    #[serde(default = "default_axis")]
    pub axis: usize,
    /// Label values to use (default: all non-zero).
    #[serde(default)]
    pub values: Option<Vec<i64>>,
}

fn default_axis() -> usize {
    2
}

/// `train.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Architecture: a preset name (`vit_b`, …) or a path to a `config.json`.
    pub model: String,
    /// `"scratch"` or a checkpoint to start from.
    #[serde(default = "scratch")]
    pub init: String,
    /// Training data.
    pub train: Vec<DataEntry>,
    /// Validation data (held out: split by volume or image, never by slice).
    #[serde(default)]
    pub val: Vec<DataEntry>,
    /// `medicosam`, `simple` or `medsam`.
    #[serde(default = "default_objective")]
    pub objective: String,
    /// Decoding rounds.
    #[serde(default = "default_rounds")]
    pub rounds: usize,
    /// Mask feedback probability.
    #[serde(default = "default_mask_prob")]
    pub mask_prob: f64,
    /// Weight of a per-pixel BCE added to the loss (default 0: the paper's Dice + IoU MSE).
    #[serde(default)]
    pub bce_weight: f64,
    /// Optimisation steps.
    pub steps: u64,
    /// Images per batch.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Micro-batches of `batch_size` images whose gradients are summed before each update (gradient
    /// accumulation: the effective batch is `batch_size * accumulate` at one micro-batch's memory).
    #[serde(default = "default_accumulate")]
    pub accumulate: usize,
    /// Objects per image.
    #[serde(default = "default_objects")]
    pub objects_per_image: usize,
    /// Smallest object (pixels at the model's input size).
    #[serde(default = "default_min_pixels")]
    pub min_object_pixels: usize,
    /// Learning rate.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Weight decay.
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    /// Seed of initialisation, sampling and clicks.
    #[serde(default)]
    pub seed: u64,
    /// Validate every this many steps (and at the end).
    #[serde(default = "default_every")]
    pub val_every: u64,
    /// Write a checkpoint every this many steps (and at the end).
    #[serde(default = "default_every")]
    pub checkpoint_every: u64,
    /// Output folder (relative: to the configuration file).
    pub out: PathBuf,
}

fn scratch() -> String {
    "scratch".into()
}
fn default_objective() -> String {
    "medicosam".into()
}
fn default_rounds() -> usize {
    8
}
fn default_mask_prob() -> f64 {
    0.5
}
fn default_batch() -> usize {
    2
}
fn default_objects() -> usize {
    5
}
fn default_min_pixels() -> usize {
    25
}
fn default_lr() -> f64 {
    1e-4
}
fn default_weight_decay() -> f64 {
    0.01
}
fn default_accumulate() -> usize {
    1
}
fn default_every() -> u64 {
    50
}

/// Progress of a run, for a progress bar.
pub struct Progress {
    /// Steps done.
    pub step: u64,
    /// The step's loss.
    pub loss: f64,
    /// Images per second over the run so far.
    pub images_per_second: f64,
}

/// What a finished run produced.
#[derive(Debug)]
pub struct RunSummary {
    /// The output folder.
    pub out: PathBuf,
    /// Last training loss.
    pub final_loss: f64,
    /// Last validation loss, when validating.
    pub val_loss: Option<f64>,
    /// The exported bundle.
    pub bundle: PathBuf,
}

fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// A random initial state: truncated-normal-like linear/conv weights (σ 0.02), unit norms, zero biases and
/// position tables, standard-normal embeddings — the usual ViT/SAM initialisation.
pub fn random_state(sam: &Sam, seed: u64) -> StateDict {
    tch::manual_seed(seed as i64);
    sam.param_specs()
        .iter()
        .map(|spec| {
            let shape: Vec<i64> = spec.shape.iter().map(|&d| d as i64).collect();
            let name = spec.name.as_str();
            let tensor = if name.ends_with(".bias") || name.contains("pos_embed") || name.contains("rel_pos") {
                Tensor::zeros(&shape, (Kind::Float, Device::Cpu))
            } else if name.contains("norm") && name.ends_with(".weight") {
                Tensor::ones(&shape, (Kind::Float, Device::Cpu))
            } else if name.contains("embed") || name.contains("token") || name.contains("gaussian_matrix") {
                Tensor::randn(&shape, (Kind::Float, Device::Cpu))
            } else {
                (Tensor::randn(&shape, (Kind::Float, Device::Cpu)) * 0.02).clamp(-0.04, 0.04)
            };
            let data = Vec::<f32>::try_from(tensor.flatten(0, -1)).unwrap_or_default();
            (
                spec.name.clone(),
                medico_models::HostTensor {
                    shape: spec.shape.clone(),
                    data,
                },
            )
        })
        .collect()
}

fn samples_of(
    entries: &[DataEntry],
    base: &Path,
    config: &SamConfig,
    min_pixels: usize,
) -> Result<Vec<SliceSample>, String> {
    let mut all = Vec::new();
    for entry in entries {
        let samples = match entry {
            DataEntry::Volume(e) => {
                let source = VolumeSource {
                    image: resolve(base, &e.image),
                    labels: resolve(base, &e.labels),
                    axis: e.axis,
                    values: e.values.clone(),
                };
                slice_samples(&source, config, min_pixels)?
            }
            DataEntry::Folder(e) => {
                let source = ImageFolderSource {
                    images: resolve(base, &e.images),
                    labels: resolve(base, &e.label_maps),
                };
                folder_samples(&source, config, min_pixels)?
            }
            DataEntry::SaMed2d(e) => {
                let source = SaMed2dSource {
                    index: resolve(base, &e.sa_med2d),
                };
                sa_med2d_samples(&source, config, min_pixels)?
            }
        };
        all.extend(samples);
    }
    Ok(all)
}

/// A short description of a data entry for the bundle's provenance.
fn describe(entry: &DataEntry) -> String {
    match entry {
        DataEntry::Volume(e) => format!("{} (labels {}, axis {})", e.image.display(), e.labels.display(), e.axis),
        DataEntry::Folder(e) => format!("{} (label maps {})", e.images.display(), e.label_maps.display()),
        DataEntry::SaMed2d(e) => format!("SA-Med2D index {}", e.sa_med2d.display()),
    }
}

/// Runs the training described by the configuration file at `config_path` on `device`.
pub fn run(config_path: &Path, device: Device, mut progress: impl FnMut(&Progress)) -> Result<RunSummary, String> {
    let text = std::fs::read_to_string(config_path).map_err(|e| format!("{}: {e}", config_path.display()))?;
    let run: RunConfig = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", config_path.display()))?;
    let base = config_path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let sam_config = match SamConfig::preset(&run.model) {
        Ok(c) => c,
        Err(_) => SamConfig::from_json_file(&resolve(&base, Path::new(&run.model))).map_err(|e| e.to_string())?,
    };
    let objective: Objective = run.objective.parse()?;
    if run.train.is_empty() || run.steps == 0 || run.batch_size == 0 || run.accumulate == 0 {
        return Err(format!(
            "{}: need training volumes, steps > 0, batch_size > 0 and accumulate > 0",
            config_path.display()
        ));
    }
    let sam = Sam::new(sam_config.clone());
    let out = resolve(&base, &run.out);
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let train = samples_of(&run.train, &base, &sam_config, run.min_object_pixels)?;
    let val = samples_of(&run.val, &base, &sam_config, run.min_object_pixels)?;
    if train.is_empty() {
        return Err(format!(
            "{}: the training volumes hold no objects",
            config_path.display()
        ));
    }
    let objective_config = ObjectiveConfig {
        objective,
        rounds: run.rounds,
        mask_prob: run.mask_prob,
        bce_weight: run.bce_weight,
    };
    let optimizer = OptimizerConfig {
        lr: run.lr,
        weight_decay: run.weight_decay,
    };
    let checkpoint = out.join("checkpoint.safetensors");
    let mut trainer = if checkpoint.exists() {
        Trainer::resume(
            Sam::new(sam_config.clone()),
            &checkpoint,
            device,
            objective_config,
            optimizer,
        )
        .map_err(|e| e.to_string())?
    } else {
        let state = if run.init == "scratch" {
            random_state(&sam, run.seed)
        } else {
            load_checkpoint(&resolve(&base, Path::new(&run.init))).map_err(|e| e.to_string())?
        };
        sam.param_specs()
            .check(&medico_models::checkpoint::shapes(&state))
            .map_err(|e| e.to_string())?;
        Trainer::new(
            Sam::new(sam_config.clone()),
            &state,
            device,
            objective_config,
            optimizer,
            run.seed,
        )
    };
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out.join("log.jsonl"))
        .map_err(|e| format!("{}: {e}", out.display()))?;
    let side = sam_config.img_size;
    let started = Instant::now();
    let first = trainer.iteration();
    let (mut final_loss, mut val_loss) = (f64::NAN, None);
    while trainer.iteration() < run.steps {
        // Batch order from (seed, step): a resumed run sees the same batches.
        let step = trainer.iteration();
        let mut rng = ChaCha8Rng::seed_from_u64(run.seed.wrapping_add(step.wrapping_mul(0xD1B5_4A32_D192_ED03)));
        let batches: Vec<Batch> = (0..run.accumulate)
            .map(|_| {
                let chosen: Vec<&SliceSample> = train.choose_multiple(&mut rng, run.batch_size).collect();
                make_batch(&chosen, side, run.objects_per_image, &mut rng)
            })
            .collect();
        let report = trainer.step_accumulated(&batches);
        final_loss = report.loss;
        let done = trainer.iteration();
        let mut entry = serde_json::json!({"step": done, "loss": report.loss, "round_losses": report.round_losses,
            "seconds": started.elapsed().as_secs_f64()});
        if !val.is_empty() && (done % run.val_every == 0 || done == run.steps) {
            let losses: Vec<f64> = val
                .chunks(run.batch_size)
                .take(8)
                .enumerate()
                .map(|(i, chunk)| {
                    let refs: Vec<&SliceSample> = chunk.iter().collect();
                    let mut rng = ChaCha8Rng::seed_from_u64(i as u64);
                    trainer.evaluate(&make_batch(&refs, side, run.objects_per_image, &mut rng), i as u64)
                })
                .collect();
            let mean = losses.iter().sum::<f64>() / losses.len() as f64;
            val_loss = Some(mean);
            entry["val_loss"] = serde_json::json!(mean);
        }
        writeln!(log, "{entry}").map_err(|e| e.to_string())?;
        if done % run.checkpoint_every == 0 || done == run.steps {
            trainer.save_checkpoint(&checkpoint).map_err(|e| e.to_string())?;
        }
        let elapsed = started.elapsed().as_secs_f64().max(1e-9);
        progress(&Progress {
            step: done,
            loss: report.loss,
            images_per_second: ((done - first) as f64 * (run.batch_size * run.accumulate) as f64) / elapsed,
        });
    }
    let state_dict = out.join("sam.safetensors");
    trainer.export_state_dict(&state_dict).map_err(|e| e.to_string())?;
    let bundle = out.join("bundle");
    let mut extra = std::collections::BTreeMap::new();
    extra.insert("config".into(), serde_json::from_str(&text).unwrap_or_default());
    extra.insert(
        "command".into(),
        serde_json::json!(format!("medico-cli train --config {}", config_path.display())),
    );
    extra.insert("steps".into(), serde_json::json!(trainer.iteration()));
    extra.insert("final_loss".into(), serde_json::json!(final_loss));
    extra.insert("val_loss".into(), serde_json::json!(val_loss));
    export_bundle(&ExportRequest {
        checkpoint: &state_dict,
        config: Some(sam_config),
        out: &bundle,
        force: true,
        provenance: Provenance {
            name: Some(format!("medico {} model", run.objective)),
            url: None,
            training_data: Some(run.train.iter().map(describe).collect::<Vec<_>>().join("; ")),
            extra,
        },
    })
    .map_err(|e| e.to_string())?;
    Ok(RunSummary {
        out,
        final_loss,
        val_loss,
        bundle,
    })
}
