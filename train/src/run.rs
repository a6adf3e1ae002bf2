//! A training run from a JSON configuration: data from NIfTI volumes, a model from a preset, a config file
//! or a checkpoint (or random initialisation), the objective and AdamW, validation loss on held-out
//! volumes, a JSON-lines log, checkpoints that resume exactly, and at the end the SAM state dict and a bundle
//! with the run's provenance.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use medico_bundle::Provenance;
use medico_export::bundle::{export_bundle, ExportRequest};
use medico_io::IoError;
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
use crate::error::TrainError;
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

/// `train.json`. Every field but `model`, `train`, `steps` and `out` has a default ([`RunConfig::default`]:
/// the paper's objective and optimizer settings).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Architecture: a preset name (`vit_b`, …) or a path to a `config.json`.
    pub model: String,
    /// `"scratch"` or a checkpoint to start from.
    pub init: String,
    /// Training data.
    pub train: Vec<DataEntry>,
    /// Validation data (held out: split by volume or image, never by slice).
    pub val: Vec<DataEntry>,
    /// `medicosam`, `simple` or `medsam`.
    pub objective: Objective,
    /// Decoding rounds.
    pub rounds: usize,
    /// Mask feedback probability.
    pub mask_prob: f64,
    /// Weight of a per-pixel BCE added to the loss (default 0: the paper's Dice + IoU MSE).
    pub bce_weight: f64,
    /// Optimisation steps.
    pub steps: u64,
    /// Images per batch.
    pub batch_size: usize,
    /// Micro-batches of `batch_size` images whose gradients are summed before each update (gradient
    /// accumulation: the effective batch is `batch_size * accumulate` at one micro-batch's memory).
    pub accumulate: usize,
    /// Objects per image.
    pub objects_per_image: usize,
    /// Smallest object (pixels at the model's input size).
    pub min_object_pixels: usize,
    /// Learning rate.
    pub lr: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Seed of initialisation, sampling and clicks.
    pub seed: u64,
    /// Validate every this many steps (and at the end).
    pub val_every: u64,
    /// Write a checkpoint every this many steps (and at the end).
    pub checkpoint_every: u64,
    /// Output folder (relative: to the configuration file).
    pub out: PathBuf,
}

impl Default for RunConfig {
    /// The objective's and the optimizer's own defaults (one source for each number); the required fields
    /// empty, which [`RunConfig::check`] refuses.
    fn default() -> Self {
        let objective = ObjectiveConfig::default();
        let optimizer = OptimizerConfig::default();
        Self {
            model: String::new(),
            init: "scratch".into(),
            train: Vec::new(),
            val: Vec::new(),
            objective: objective.objective,
            rounds: objective.rounds,
            mask_prob: objective.mask_prob,
            bce_weight: objective.bce_weight,
            steps: 0,
            batch_size: 2,
            accumulate: 1,
            objects_per_image: 5,
            min_object_pixels: 25,
            lr: optimizer.lr,
            weight_decay: optimizer.weight_decay,
            seed: 0,
            val_every: 50,
            checkpoint_every: 50,
            out: PathBuf::new(),
        }
    }
}

impl RunConfig {
    /// Reads and checks `train.json`.
    pub fn from_file(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| IoError::read(path, e))?;
        let run: RunConfig = serde_json::from_str(&text).map_err(|source| TrainError::Json {
            path: path.into(),
            what: "training configuration",
            source,
        })?;
        run.check(path)?;
        Ok(run)
    }

    /// Refuses configurations that cannot train.
    fn check(&self, path: &Path) -> Result<(), TrainError> {
        let problem = if self.model.is_empty() || self.out.as_os_str().is_empty() {
            Some("need a model and an output folder (`model`, `out`)")
        } else if self.train.is_empty() || self.steps == 0 || self.batch_size == 0 || self.accumulate == 0 {
            Some("need training volumes, steps > 0, batch_size > 0 and accumulate > 0")
        } else if self.val_every == 0 || self.checkpoint_every == 0 {
            Some("need val_every > 0 and checkpoint_every > 0")
        } else {
            None
        };
        match problem {
            Some(problem) => Err(TrainError::Config {
                path: path.into(),
                problem: problem.into(),
            }),
            None => Ok(()),
        }
    }

    fn objective_config(&self) -> ObjectiveConfig {
        ObjectiveConfig {
            objective: self.objective,
            rounds: self.rounds,
            mask_prob: self.mask_prob,
            bce_weight: self.bce_weight,
        }
    }

    fn optimizer_config(&self) -> OptimizerConfig {
        OptimizerConfig {
            lr: self.lr,
            weight_decay: self.weight_decay,
        }
    }
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

/// The samples of every entry, paths relative to `base`.
fn samples_of(
    entries: &[DataEntry],
    base: &Path,
    config: &SamConfig,
    min_pixels: usize,
) -> Result<Vec<SliceSample>, IoError> {
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

/// A run being carried out: its configuration, where it lives, its data.
struct RunContext<'a> {
    config_path: &'a Path,
    run: RunConfig,
    base: PathBuf,
    sam_config: SamConfig,
    out: PathBuf,
    train: Vec<SliceSample>,
    val: Vec<SliceSample>,
}

/// Runs the training described by the configuration file at `config_path` on `device`.
pub fn run(config_path: &Path, device: Device, progress: impl FnMut(&Progress)) -> Result<RunSummary, TrainError> {
    let context = prepare(config_path)?;
    let mut trainer = start_trainer(&context, device)?;
    let (final_loss, val_loss) = train_loop(&mut trainer, &context, progress)?;
    let bundle = export_result(&trainer, &context, final_loss, val_loss)?;
    Ok(RunSummary {
        out: context.out,
        final_loss,
        val_loss,
        bundle,
    })
}

/// The configuration read and checked, the architecture resolved, the output folder made, the data loaded.
fn prepare(config_path: &Path) -> Result<RunContext<'_>, TrainError> {
    let run = RunConfig::from_file(config_path)?;
    let base = config_path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let sam_config = match SamConfig::preset(&run.model) {
        Ok(c) => c,
        Err(_) => SamConfig::from_json_file(&resolve(&base, Path::new(&run.model)))?,
    };
    let out = resolve(&base, &run.out);
    std::fs::create_dir_all(&out).map_err(|e| IoError::write(&out, e))?;
    let train = samples_of(&run.train, &base, &sam_config, run.min_object_pixels)?;
    let val = samples_of(&run.val, &base, &sam_config, run.min_object_pixels)?;
    if train.is_empty() {
        return Err(TrainError::Config {
            path: config_path.into(),
            problem: "the training volumes hold no objects".into(),
        });
    }
    Ok(RunContext {
        config_path,
        run,
        base,
        sam_config,
        out,
        train,
        val,
    })
}

fn checkpoint_path(context: &RunContext<'_>) -> PathBuf {
    context.out.join("checkpoint.safetensors")
}

/// A trainer resumed from the run's checkpoint, or started from `init` (a checkpoint or `scratch`).
fn start_trainer(context: &RunContext<'_>, device: Device) -> Result<Trainer, TrainError> {
    let run = &context.run;
    let sam = || Sam::new(context.sam_config.clone());
    let checkpoint = checkpoint_path(context);
    if checkpoint.exists() {
        return Trainer::resume(
            sam(),
            &checkpoint,
            device,
            run.objective_config(),
            run.optimizer_config(),
        );
    }
    let state = if run.init == "scratch" {
        random_state(&sam(), run.seed)
    } else {
        load_checkpoint(&resolve(&context.base, Path::new(&run.init)))?
    };
    sam().param_specs().check(&medico_models::checkpoint::shapes(&state))?;
    Ok(Trainer::new(
        sam(),
        &state,
        device,
        run.objective_config(),
        run.optimizer_config(),
        run.seed,
    ))
}

/// The micro-batches of step `step`, drawn from (seed, step) so that a resumed run sees the same batches.
fn batches_for_step(context: &RunContext<'_>, step: u64) -> Vec<Batch> {
    let run = &context.run;
    let mut rng = ChaCha8Rng::seed_from_u64(run.seed.wrapping_add(step.wrapping_mul(0xD1B5_4A32_D192_ED03)));
    (0..run.accumulate)
        .map(|_| {
            let chosen: Vec<&SliceSample> = context.train.choose_multiple(&mut rng, run.batch_size).collect();
            make_batch(&chosen, context.sam_config.img_size, run.objects_per_image, &mut rng)
        })
        .collect()
}

/// Mean loss over the first 8 validation batches, each with its own fixed clicks.
fn validation_loss(trainer: &Trainer, context: &RunContext<'_>) -> f64 {
    let run = &context.run;
    let losses: Vec<f64> = context
        .val
        .chunks(run.batch_size)
        .take(8)
        .enumerate()
        .map(|(i, chunk)| {
            let refs: Vec<&SliceSample> = chunk.iter().collect();
            let mut rng = ChaCha8Rng::seed_from_u64(i as u64);
            let batch = make_batch(&refs, context.sam_config.img_size, run.objects_per_image, &mut rng);
            trainer.evaluate(&batch, i as u64)
        })
        .collect();
    losses.iter().sum::<f64>() / losses.len() as f64
}

/// One line of `log.jsonl`.
#[derive(serde::Serialize)]
struct LogEntry<'a> {
    step: u64,
    loss: f64,
    round_losses: &'a [f64],
    seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    val_loss: Option<f64>,
}

/// Steps until `steps`, validating, logging and checkpointing on schedule; the last loss and validation
/// loss.
fn train_loop(
    trainer: &mut Trainer,
    context: &RunContext<'_>,
    mut progress: impl FnMut(&Progress),
) -> Result<(f64, Option<f64>), TrainError> {
    let run = &context.run;
    let log_path = context.out.join("log.jsonl");
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| IoError::write(&log_path, e))?;
    let started = Instant::now();
    let first = trainer.iteration();
    let (mut final_loss, mut val_loss) = (f64::NAN, None);
    while trainer.iteration() < run.steps {
        let report = trainer.step_accumulated(&batches_for_step(context, trainer.iteration()));
        final_loss = report.loss;
        let done = trainer.iteration();
        let validate = !context.val.is_empty() && (done.is_multiple_of(run.val_every) || done == run.steps);
        let step_val_loss = validate.then(|| validation_loss(trainer, context));
        val_loss = step_val_loss.or(val_loss);
        let entry = LogEntry {
            step: done,
            loss: report.loss,
            round_losses: &report.round_losses,
            seconds: started.elapsed().as_secs_f64(),
            val_loss: step_val_loss,
        };
        let line = serde_json::to_string(&entry).expect("a log entry serializes");
        writeln!(log, "{line}").map_err(|e| IoError::write(&log_path, e))?;
        if done.is_multiple_of(run.checkpoint_every) || done == run.steps {
            trainer.save_checkpoint(&checkpoint_path(context))?;
        }
        let elapsed = started.elapsed().as_secs_f64().max(1e-9);
        progress(&Progress {
            step: done,
            loss: report.loss,
            images_per_second: ((done - first) as f64 * (run.batch_size * run.accumulate) as f64) / elapsed,
        });
    }
    Ok((final_loss, val_loss))
}

/// The SAM state dict and a bundle exported from it, with the run's provenance.
fn export_result(
    trainer: &Trainer,
    context: &RunContext<'_>,
    final_loss: f64,
    val_loss: Option<f64>,
) -> Result<PathBuf, TrainError> {
    let run = &context.run;
    let state_dict = context.out.join("sam.safetensors");
    trainer.export_state_dict(&state_dict)?;
    let bundle = context.out.join("bundle");
    let config_text = std::fs::read_to_string(context.config_path).unwrap_or_default();
    let mut extra = std::collections::BTreeMap::new();
    extra.insert("config".into(), serde_json::from_str(&config_text).unwrap_or_default());
    extra.insert(
        "command".into(),
        serde_json::json!(format!("medico-cli train --config {}", context.config_path.display())),
    );
    extra.insert("steps".into(), serde_json::json!(trainer.iteration()));
    extra.insert("final_loss".into(), serde_json::json!(final_loss));
    extra.insert("val_loss".into(), serde_json::json!(val_loss));
    export_bundle(&ExportRequest {
        checkpoint: &state_dict,
        config: Some(context.sam_config.clone()),
        out: &bundle,
        force: true,
        provenance: Provenance {
            name: Some(format!("medico {} model", run.objective)),
            url: None,
            training_data: Some(run.train.iter().map(describe).collect::<Vec<_>>().join("; ")),
            extra,
        },
    })?;
    Ok(bundle)
}
