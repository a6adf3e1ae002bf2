//! A training run from a JSON configuration: data from NIfTI volumes, a model from a preset, a config file
//! or a checkpoint (or random initialisation), the objective and AdamW, validation loss on held-out
//! volumes, a JSON-lines log, checkpoints that resume exactly, and at the end the SAM state dict and a bundle
//! with the run's provenance. Data-parallel: every rank builds its shard of each global batch and the
//! gradients are summed before each step, so N ranks train the model one process would; rank 0 alone writes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use medico_bundle::Provenance;
use medico_export::bundle::{export_bundle, ExportRequest};
use medico_io::IoError;
use medico_models::{load_checkpoint, Sam, SamConfig, StateDict};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use crate::backend::TchBackend;
use crate::data::{
    batch_totals, folder_samples, make_batch, make_embedding_batch, sa_med2d_samples, slice_samples, ImageFolderSource,
    SaMed2dSource, SliceSample, VolumeSource,
};
use crate::distributed::{DataParallel, DistributedError};
use crate::embeddings::{
    encoder_cache_dir, fill_share, split_embeddings, CacheReport, ImageEncoder, Share, SplitEmbeddings,
};
use crate::error::TrainError;
use crate::objective::Batch;
use crate::run_config::{DataEntry, RunConfig};
use crate::trainer::Trainer;

/// Progress of a run, for a progress bar.
pub enum Progress {
    /// The frozen encoder's embeddings being read or computed.
    Embeddings {
        /// Samples done.
        done: usize,
        /// Samples in all (training and validation).
        total: usize,
    },
    /// A training step done.
    Step {
        /// Steps done.
        step: u64,
        /// The step's loss.
        loss: f64,
        /// Images per second over the run so far.
        images_per_second: f64,
    },
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
    /// The exported bundle (written by rank 0 of a data-parallel run).
    pub bundle: PathBuf,
    /// With a frozen image encoder: how many embeddings were reused and computed.
    pub embeddings: Option<CacheReport>,
}

pub(crate) fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// Serializes the draws from libtorch's global random generator.
static GLOBAL_GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A random initial state: truncated-normal-like linear/conv weights (σ 0.02), unit norms (BatchNorm: unit
/// weight and running variance, zero running mean), zero biases and position tables, standard-normal
/// embeddings — the usual ViT/SAM initialisation.
pub fn random_state(sam: &Sam, seed: u64) -> StateDict {
    // libtorch's global generator (medico-tiny's bit-for-bit reproduction depends on its stream), held for
    // the whole draw so that runs in one process (parallel tests) cannot interleave their draws with these.
    let _generator = GLOBAL_GENERATOR.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    tch::manual_seed(seed as i64);
    sam.param_specs()
        .iter()
        .map(|spec| {
            let shape: Vec<i64> = spec.shape.iter().map(|&d| d as i64).collect();
            let name = spec.name.as_str();
            let is_norm = name.contains("norm") || name.contains(".bn.");
            let tensor = if name.ends_with(".bias")
                || name.ends_with(".running_mean")
                || name.contains("pos_embed")
                || name.contains("rel_pos")
            {
                Tensor::zeros(&shape, (Kind::Float, Device::Cpu))
            } else if name.ends_with(".running_var") || (is_norm && name.ends_with(".weight")) {
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

/// The samples of every entry, paths relative to `base`, and each sample's drawing weight (its entry's);
/// propagation objects carry their neighbour's mask prompt when `mask_prompts`.
fn samples_of(
    entries: &[DataEntry],
    base: &Path,
    config: &SamConfig,
    (min_pixels, mask_prompts): (usize, bool),
) -> Result<(Vec<SliceSample>, Vec<f64>), IoError> {
    let (mut all, mut weights) = (Vec::new(), Vec::new());
    for entry in entries {
        let weight = match entry {
            DataEntry::Volume(e) => e.weight,
            DataEntry::Folder(_) | DataEntry::SaMed2d(_) => 1.0,
        };
        let samples = match entry {
            DataEntry::Volume(e) => {
                let source = VolumeSource {
                    image: resolve(base, &e.image),
                    labels: resolve(base, &e.labels),
                    axis: e.axis,
                    values: e.values.clone(),
                    exclude: e.exclude.clone(),
                    slice_step: e.slice_step,
                    groups: e.groups.clone(),
                    objects: e.objects,
                    propagation: e.propagation,
                    mask_prompts: e.propagation && mask_prompts,
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
        weights.extend(std::iter::repeat_n(weight, samples.len()));
        all.extend(samples);
    }
    Ok((all, weights))
}

/// A short description of a data entry for the bundle's provenance.
fn describe(entry: &DataEntry) -> String {
    match entry {
        DataEntry::Volume(e) => format!("{} (labels {}, axis {})", e.image.display(), e.labels.display(), e.axis),
        DataEntry::Folder(e) => format!("{} (label maps {})", e.images.display(), e.label_maps.display()),
        DataEntry::SaMed2d(e) => format!("SA-Med2D index {}", e.sa_med2d.display()),
    }
}

/// A run being carried out: its configuration, where it lives, its data, its ranks.
struct RunContext<'a> {
    config_path: &'a Path,
    parallel: &'a DataParallel,
    run: RunConfig,
    base: PathBuf,
    sam_config: SamConfig,
    out: PathBuf,
    train: Vec<SliceSample>,
    /// Each training sample's drawing weight, when the entries weigh differently (else uniform).
    train_weights: Option<Vec<f64>>,
    val: Vec<SliceSample>,
    /// The frozen encoder's embeddings of `train` and `val`, in order (frozen encoder only).
    embeddings: Option<SplitEmbeddings>,
}

/// Runs the training described by the configuration file at `config_path` on `device`, in one process.
pub fn run(config_path: &Path, device: Device, progress: impl FnMut(&Progress)) -> Result<RunSummary, TrainError> {
    run_with_encoder(config_path, device, None, &DataParallel::Single, progress)
}

/// [`run`] as one rank of `parallel`, with the frozen encoder's missing embeddings computed by `encoder`
/// when given (see [`ImageEncoder`]).
pub fn run_with_encoder(
    config_path: &Path,
    device: Device,
    encoder: Option<&mut (dyn ImageEncoder + '_)>,
    parallel: &DataParallel,
    mut progress: impl FnMut(&Progress),
) -> Result<RunSummary, TrainError> {
    let mut context = prepare(config_path, parallel)?;
    let mut trainer = start_trainer(&context, device)?;
    check_ranks_agree(&trainer.backend().named_params(), trainer.iteration(), parallel)?;
    let report = if context.run.freeze_image_encoder {
        let cache = (
            context.base.as_path(),
            context.run.embedding_cache.as_deref(),
            context.out.as_path(),
        );
        let samples = (context.train.as_slice(), context.val.as_slice());
        let (embeddings, report) = frozen_embeddings(
            trainer.backend(),
            &context.sam_config,
            cache,
            samples,
            (encoder, parallel),
            &mut progress,
        )?;
        context.embeddings = Some(embeddings);
        Some(report)
    } else {
        None
    };
    let (final_loss, val_loss) = train_loop(&mut trainer, &context, progress)?;
    check_ranks_agree(&trainer.backend().named_params(), trainer.iteration(), parallel)?;
    let bundle = match parallel.writes() {
        true => export_result(&trainer, &context, final_loss, val_loss)?,
        false => context.out.join("bundle"),
    };
    Ok(RunSummary {
        out: context.out,
        final_loss,
        val_loss,
        bundle,
        embeddings: report,
    })
}

/// The frozen encoder's embeddings of a run's training and validation samples, from the cache folder its
/// configuration names (relative to `base`; default `out/embeddings`) or computed and stored there; the
/// ranks of a data-parallel run each compute their share of the missing ones, wait for each other, then
/// read them all.
pub(crate) fn frozen_embeddings(
    backend: &TchBackend,
    sam_config: &SamConfig,
    (base, configured, out): (&Path, Option<&Path>, &Path),
    samples: (&[SliceSample], &[SliceSample]),
    (encoder, parallel): (Option<&mut (dyn ImageEncoder + '_)>, &DataParallel),
    progress: &mut impl FnMut(&Progress),
) -> Result<(SplitEmbeddings, CacheReport), TrainError> {
    let root = match configured {
        Some(path) => resolve(base, path),
        None => out.join("embeddings"),
    };
    let sam = Sam::new(sam_config.clone());
    let mut encoder = encoder;
    let started = Instant::now();
    let mut shared = 0;
    if parallel.world_size() > 1 {
        let share = Share {
            rank: parallel.rank(),
            of: parallel.world_size(),
        };
        let dir = encoder_cache_dir(&root, backend);
        for part in [samples.0, samples.1] {
            shared += fill_share(&sam, backend, part, (&dir, share), encoder.as_deref_mut())?;
        }
        parallel.barrier()?;
    }
    let share_seconds = started.elapsed().as_secs_f64();
    let (embeddings, report) = split_embeddings(&sam, backend, samples, &root, encoder, |done, total| {
        progress(&Progress::Embeddings { done, total })
    })?;
    let report = CacheReport {
        reused: report.reused - shared.min(report.reused),
        computed: report.computed + shared,
        encoder_seconds: report.encoder_seconds + share_seconds,
    };
    Ok((embeddings, report))
}

/// Fails unless every rank holds the same iteration and weights — at the start (not: one read a stale
/// checkpoint, or another initialisation) and at the end (not: the ranks diverged): a checksum of the
/// parameters compared over the ranks.
pub(crate) fn check_ranks_agree(
    parameters: &[(String, Tensor)],
    iteration: u64,
    parallel: &DataParallel,
) -> Result<(), DistributedError> {
    if parallel.world_size() == 1 {
        return Ok(());
    }
    let (sum, absolute) = tch::no_grad(|| {
        parameters.iter().fold((0.0, 0.0), |(sum, absolute), (_, p)| {
            let p = p.to_kind(Kind::Double);
            (
                sum + p.sum(Kind::Double).double_value(&[]),
                absolute + p.abs().sum(Kind::Double).double_value(&[]),
            )
        })
    });
    parallel.check_same("iteration and weights", &[iteration as f64, sum, absolute])
}

/// A run's `log.jsonl` in its output folder, appended to (a resumed run continues it), one JSON object per line.
pub(crate) struct RunLog {
    path: PathBuf,
    file: std::fs::File,
}

impl RunLog {
    /// Opens (or creates) `out/log.jsonl`.
    pub(crate) fn open(out: &Path) -> Result<Self, IoError> {
        let path = out.join("log.jsonl");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| IoError::write(&path, e))?;
        Ok(Self { path, file })
    }

    /// Appends one entry as a line.
    pub(crate) fn append(&mut self, entry: &impl serde::Serialize) -> Result<(), IoError> {
        let line = serde_json::to_string(entry).expect("a log entry serializes");
        writeln!(self.file, "{line}").map_err(|e| IoError::write(&self.path, e))
    }
}

/// The provenance every trained bundle records: the run's configuration, the command, the steps and the last
/// training loss.
pub(crate) fn provenance_extra(
    config_path: &Path,
    steps: u64,
    final_loss: f64,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    let config_text = std::fs::read_to_string(config_path).unwrap_or_default();
    let mut extra = std::collections::BTreeMap::new();
    extra.insert("config".into(), serde_json::from_str(&config_text).unwrap_or_default());
    extra.insert(
        "command".into(),
        serde_json::json!(format!("medico-cli train --config {}", config_path.display())),
    );
    extra.insert("steps".into(), serde_json::json!(steps));
    extra.insert("final_loss".into(), serde_json::json!(final_loss));
    extra
}

/// A run's architecture (a preset name or a `config.json` relative to `base`) and its output folder, created.
pub(crate) fn model_and_output(base: &Path, model: &str, out: &Path) -> Result<(SamConfig, PathBuf), TrainError> {
    let config = match SamConfig::preset(model) {
        Ok(c) => c,
        Err(_) => SamConfig::from_json_file(&resolve(base, Path::new(model)))?,
    };
    let out = resolve(base, out);
    std::fs::create_dir_all(&out).map_err(|e| IoError::write(&out, e))?;
    Ok((config, out))
}

/// Refuses a global batch with fewer images than ranks (a rank with nothing to do each step).
pub(crate) fn check_batch_covers_ranks(
    config_path: &Path,
    batch_size: usize,
    parallel: &DataParallel,
) -> Result<(), TrainError> {
    match batch_size >= parallel.world_size() {
        true => Ok(()),
        false => Err(TrainError::Config {
            path: config_path.into(),
            problem: format!(
                "batch_size {batch_size} is the global batch and cannot be shared by {} ranks: at least one image each",
                parallel.world_size()
            ),
        }),
    }
}

/// The configuration read and checked, the architecture resolved, the output folder made, the data loaded.
fn prepare<'a>(config_path: &'a Path, parallel: &'a DataParallel) -> Result<RunContext<'a>, TrainError> {
    let run = RunConfig::from_file(config_path)?;
    check_batch_covers_ranks(config_path, run.batch_size, parallel)?;
    let base = config_path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let (sam_config, out) = model_and_output(&base, &run.model, &run.out)?;
    let sampling = (run.min_object_pixels, run.propagation_mask_prompt);
    let (train, weights) = samples_of(&run.train, &base, &sam_config, sampling)?;
    let (val, _) = samples_of(&run.val, &base, &sam_config, sampling)?;
    let train_weights = weights.iter().any(|&w| w != 1.0).then_some(weights);
    if train.is_empty() {
        return Err(TrainError::Config {
            path: config_path.into(),
            problem: "the training volumes hold no objects".into(),
        });
    }
    Ok(RunContext {
        config_path,
        parallel,
        run,
        base,
        sam_config,
        out,
        train,
        train_weights,
        val,
        embeddings: None,
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
    let mut state = if run.init == "scratch" {
        random_state(&sam(), run.seed)
    } else {
        load_checkpoint(&resolve(&context.base, Path::new(&run.init)))?
    };
    if let Some(overlay) = &run.init_overlay {
        let path = resolve(&context.base, overlay);
        let tensors = load_checkpoint(&path)?;
        let problem = |e: medico_export::overlay::OverlayMismatch| TrainError::Config {
            path: path.clone(),
            problem: e.to_string(),
        };
        let start = medico_export::overlay::blended_overlay(&state, &tensors, run.init_overlay_blend as f32)
            .map_err(problem)?;
        medico_export::overlay::apply_overlay(&mut state, &start).map_err(problem)?;
    }
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

/// The generator of step `step`'s global batches in a run seeded with `seed`: which images, and their keys.
pub(crate) fn step_rng(seed: u64, step: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed.wrapping_add(step.wrapping_mul(0xD1B5_4A32_D192_ED03)))
}

/// A global batch: the images chosen (indices into the samples) and the key of each, which seeds its
/// objects and their clicks.
pub(crate) struct GlobalBatch {
    pub(crate) chosen: Vec<usize>,
    pub(crate) keys: Vec<u64>,
}

impl GlobalBatch {
    /// `size` of `count` samples drawn from `rng` without replacement — uniformly, or in proportion to
    /// `weights` — with their keys.
    pub(crate) fn draw(count: usize, size: usize, weights: Option<&[f64]>, rng: &mut ChaCha8Rng) -> Self {
        let indices: Vec<usize> = (0..count).collect();
        let weighted = weights.and_then(|w| indices.choose_multiple_weighted(rng, size, |&i| w[i]).ok());
        let chosen: Vec<usize> = match weighted {
            Some(picked) => picked.copied().collect(),
            None => indices.choose_multiple(rng, size).copied().collect(),
        };
        let keys = chosen.iter().map(|_| rng.random()).collect();
        Self { chosen, keys }
    }
}

/// This rank's shards of the micro-batches of step `step`, drawn from (seed, step) so that a resumed run
/// — and every rank — sees the same global batches.
fn batches_for_step(context: &RunContext<'_>, step: u64) -> Vec<Batch> {
    let run = &context.run;
    let mut rng = step_rng(run.seed, step);
    (0..run.accumulate)
        .map(|_| {
            let weights = context.train_weights.as_deref();
            let global = GlobalBatch::draw(context.train.len(), run.batch_size, weights, &mut rng);
            let shard = context.parallel.shard(global.chosen.len());
            let embeddings = context.embeddings.as_ref().map(|e| &e.train);
            let mut batch = batch_of(
                &context.train,
                embeddings,
                (&global.chosen[shard.clone()], &global.keys[shard]),
                context,
            );
            let all: Vec<&SliceSample> = global.chosen.iter().map(|&i| &context.train[i]).collect();
            batch.totals = batch_totals(&all, run.objects_per_image);
            batch
        })
        .collect()
}

/// The batch of samples `chosen` (indices into `samples`, with their keys): their images, or their
/// embeddings when given.
fn batch_of(
    samples: &[SliceSample],
    embeddings: Option<&Vec<Tensor>>,
    (chosen, keys): (&[usize], &[u64]),
    context: &RunContext<'_>,
) -> Batch {
    let refs: Vec<&SliceSample> = chosen.iter().map(|&i| &samples[i]).collect();
    let max_objects = context.run.objects_per_image;
    match embeddings {
        Some(all) => {
            let tensors: Vec<&Tensor> = chosen.iter().map(|&i| &all[i]).collect();
            make_embedding_batch(&refs, &tensors, keys, max_objects)
        }
        None => make_batch(&refs, keys, context.sam_config.img_size, max_objects),
    }
}

/// Validation batches evaluated each time.
const VALIDATION_BATCHES: usize = 8;

/// Mean loss over validation batches spread over the held-out samples, each with its own fixed clicks; the
/// ranks of a data-parallel run share the batches out and sum their losses.
fn validation_loss(trainer: &Trainer, context: &RunContext<'_>) -> Result<f64, DistributedError> {
    let run = &context.run;
    // Evenly spread over the validation samples, so that every held-out volume and axis counts.
    let n = context.val.len();
    let wanted = (VALIDATION_BATCHES * run.batch_size).min(n);
    let indices: Vec<usize> = (0..wanted).map(|k| k * n / wanted).collect();
    let embeddings = context.embeddings.as_ref().map(|e| &e.val);
    let chunks: Vec<&[usize]> = indices.chunks(run.batch_size).take(VALIDATION_BATCHES).collect();
    let parallel = context.parallel;
    let mut total = [chunks
        .iter()
        .enumerate()
        .filter(|(i, _)| i % parallel.world_size() == parallel.rank())
        .map(|(i, chunk)| {
            let keys: Vec<u64> = chunk.iter().map(|&k| k as u64).collect();
            let batch = batch_of(&context.val, embeddings, (chunk, &keys), context);
            trainer.evaluate(&batch, i as u64)
        })
        .sum::<f64>()];
    parallel.sum_values(&mut total)?;
    Ok(total[0] / chunks.len() as f64)
}

/// One line of `log.jsonl`.
#[derive(serde::Serialize)]
struct LogEntry<'a> {
    step: u64,
    loss: f64,
    round_losses: &'a [f64],
    #[serde(skip_serializing_if = "Option::is_none")]
    propagation_loss: Option<f64>,
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
    let parallel = context.parallel;
    let mut log = parallel.writes().then(|| RunLog::open(&context.out)).transpose()?;
    let started = Instant::now();
    let first = trainer.iteration();
    let (mut final_loss, mut val_loss) = (f64::NAN, None);
    while trainer.iteration() < run.steps {
        let report = trainer.step_accumulated(&batches_for_step(context, trainer.iteration()), parallel)?;
        final_loss = report.loss;
        let done = trainer.iteration();
        let validate = !context.val.is_empty() && (done.is_multiple_of(run.val_every) || done == run.steps);
        let step_val_loss = validate.then(|| validation_loss(trainer, context)).transpose()?;
        val_loss = step_val_loss.or(val_loss);
        let entry = LogEntry {
            step: done,
            loss: report.loss,
            round_losses: &report.round_losses,
            propagation_loss: report.propagation_loss,
            seconds: started.elapsed().as_secs_f64(),
            val_loss: step_val_loss,
        };
        let Some(log) = log.as_mut() else {
            continue;
        };
        log.append(&entry)?;
        if done.is_multiple_of(run.checkpoint_every) || done == run.steps {
            trainer.save_checkpoint(&checkpoint_path(context))?;
        }
        let elapsed = started.elapsed().as_secs_f64().max(1e-9);
        progress(&Progress::Step {
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
    let mut extra = provenance_extra(context.config_path, trainer.iteration(), final_loss);
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
        overlay: None,
        semantic: None,
        propagation: None,
        interaction: None,
        masks: None,
        walk_overlay: None,
    })?;
    Ok(bundle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_batches_are_drawn_uniformly_or_by_weight() {
        let weights = [1.0, 1.0, 1000.0, 1.0];
        let heavy = (0..200)
            .filter(|&seed| {
                let mut rng = step_rng(seed, 0);
                GlobalBatch::draw(4, 1, Some(&weights), &mut rng).chosen == [2]
            })
            .count();
        assert!(heavy > 190, "the heavy sample drawn {heavy} times of 200");
        let uniform = (0..200)
            .filter(|&seed| GlobalBatch::draw(4, 1, None, &mut step_rng(seed, 0)).chosen == [2])
            .count();
        assert!((25..80).contains(&uniform), "{uniform} of 200");
        // Without replacement, a key per image.
        let batch = GlobalBatch::draw(4, 4, Some(&weights), &mut step_rng(1, 0));
        let mut chosen = batch.chosen.clone();
        chosen.sort_unstable();
        assert_eq!((chosen, batch.keys.len()), (vec![0, 1, 2, 3], 4));
    }
}
