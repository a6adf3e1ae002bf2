//! A semantic training run from its configuration: slices with class maps from the volumes, the SAM
//! checkpoint and a fresh (or pretrained) decoder, cached embeddings when the encoder is frozen, the loop with
//! validation, ReduceLROnPlateau and a JSON-lines log, and at the end `decoder.safetensors` (torch-em's keys)
//! and a bundle whose `segmentation_decoder.onnx` and class list come from it. Data-parallel as the
//! interactive run: each rank its shard of every global batch, rank 0 alone writes.

use std::path::{Path, PathBuf};
use std::time::Instant;

use medico_bundle::Provenance;
use medico_export::bundle::{export_bundle, ExportRequest, SemanticExport};
use medico_io::IoError;
use medico_models::checkpoint::shapes;
use medico_models::unetr::UnetrConfig;
use medico_models::{load_checkpoint, load_decoder_state, Sam, SamConfig, StateDict, UnetrDecoder};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

use crate::data::{class_map, semantic_slice_samples, SemanticVolumeSource, SliceSample};
use crate::distributed::DataParallel;
use crate::embeddings::{CacheReport, SplitEmbeddings};
use crate::error::TrainError;
use crate::objective::BatchInput;
use crate::run::{
    check_batch_covers_ranks, check_ranks_agree, frozen_embeddings, model_and_output, provenance_extra, resolve,
    step_rng, GlobalBatch, Progress, RunLog,
};
use crate::semantic::config::{SemanticRunConfig, SemanticVolumeEntry};
use crate::semantic::trainer::{
    random_decoder_state, SemanticBatch, SemanticSettings, SemanticTotals, SemanticTrainer, SemanticValidation,
};
use crate::trainer::write_atomically;

/// What a finished semantic run produced.
#[derive(Debug)]
pub struct SemanticSummary {
    /// The output folder.
    pub out: PathBuf,
    /// Last training loss.
    pub final_loss: f64,
    /// The last validation, when validating.
    pub validation: Option<SemanticValidation>,
    /// The decoder's state dict (torch-em keys).
    pub decoder: PathBuf,
    /// The exported bundle (with `segmentation_decoder.onnx`; written by rank 0 of a data-parallel run).
    pub bundle: PathBuf,
    /// With a frozen encoder: embeddings reused and computed.
    pub embeddings: Option<CacheReport>,
}

/// A run being carried out.
struct Context<'a> {
    config_path: &'a Path,
    parallel: &'a DataParallel,
    run: SemanticRunConfig,
    base: PathBuf,
    sam_config: SamConfig,
    out: PathBuf,
    train: Vec<SliceSample>,
    val: Vec<SliceSample>,
    embeddings: Option<SplitEmbeddings>,
}

/// Validation slices used each time (spread evenly over the held-out samples).
const VALIDATION_SLICES: usize = 12;

/// Runs the semantic training described by the configuration at `config_path` on `device` as one rank of
/// `parallel`.
pub fn run_semantic(
    config_path: &Path,
    device: Device,
    parallel: &DataParallel,
    mut progress: impl FnMut(&Progress),
) -> Result<SemanticSummary, TrainError> {
    let mut context = prepare(config_path, parallel)?;
    let mut trainer = start(&context, device)?;
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
            (None, parallel),
            &mut progress,
        )?;
        context.embeddings = Some(embeddings);
        Some(report)
    } else {
        None
    };
    let (final_loss, validation) = train_loop(&mut trainer, &context, progress)?;
    check_ranks_agree(&trainer.backend().named_params(), trainer.iteration(), parallel)?;
    let decoder = context.out.join("decoder.safetensors");
    let bundle = match parallel.writes() {
        true => {
            write_atomically(&decoder, &trainer.decoder_tensors())?;
            export(&trainer, &context, &decoder, final_loss, validation.as_ref())?
        }
        false => context.out.join("bundle"),
    };
    Ok(SemanticSummary {
        out: context.out,
        final_loss,
        validation,
        decoder,
        bundle,
        embeddings: report,
    })
}

fn prepare<'a>(config_path: &'a Path, parallel: &'a DataParallel) -> Result<Context<'a>, TrainError> {
    let run = SemanticRunConfig::from_file(config_path)?;
    check_batch_covers_ranks(config_path, run.batch_size, parallel)?;
    let base = config_path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let (sam_config, out) = model_and_output(&base, &run.model, &run.out)?;
    let samples = |entries: &[SemanticVolumeEntry]| -> Result<Vec<SliceSample>, IoError> {
        let mut all = Vec::new();
        for entry in entries {
            let source = SemanticVolumeSource {
                image: resolve(&base, &entry.image),
                labels: resolve(&base, &entry.labels),
                axis: entry.axis,
                classes: entry.class_values(run.classes.len()),
                slice_step: entry.slice_step,
            };
            all.extend(semantic_slice_samples(&source, &sam_config, run.min_class_pixels)?);
        }
        Ok(all)
    };
    let (train, val) = (samples(&run.train)?, samples(&run.val)?);
    if train.is_empty() {
        return Err(TrainError::Config {
            path: config_path.into(),
            problem: "the training volumes hold none of the classes".into(),
        });
    }
    Ok(Context {
        config_path,
        parallel,
        run,
        base,
        sam_config,
        out,
        train,
        val,
        embeddings: None,
    })
}

fn checkpoint_path(context: &Context<'_>) -> PathBuf {
    context.out.join("checkpoint.safetensors")
}

/// The SAM checkpoint and a decoder (random, or `init_decoder` without its `out_conv`), checked; or the
/// run's own checkpoint, continued exactly.
fn start(context: &Context<'_>, device: Device) -> Result<SemanticTrainer, TrainError> {
    let run = &context.run;
    let sam = Sam::new(context.sam_config.clone());
    let mut state: StateDict = load_checkpoint(&resolve(&context.base, Path::new(&run.init)))?;
    sam.param_specs().check(&shapes(&state))?;
    let decoder = UnetrDecoder::new(UnetrConfig {
        embed_dim: context.sam_config.prompt_embed_dim,
        initial_features: run.initial_features,
        out_channels: run.classes.len() + 1,
        upsampler: run.upsampler,
    });
    let settings = SemanticSettings {
        lr: run.lr,
        weight_decay: run.weight_decay,
        train_encoder: !run.freeze_image_encoder,
        joint: run.joint.then(|| (run.interactive_objective(), run.interactive_lr)),
        plateau: (run.plateau_factor, run.plateau_patience),
    };
    let checkpoint = checkpoint_path(context);
    if checkpoint.exists() {
        return SemanticTrainer::resume(sam, decoder, state, &checkpoint, device, settings);
    }
    let mut decoder_state = random_decoder_state(&decoder, run.seed);
    if let Some(path) = &run.init_decoder {
        let mut kept = load_decoder_state(&resolve(&context.base, path))?;
        kept.retain(|k, _| !k.starts_with("out_conv."));
        kept.extend(
            decoder_state
                .iter()
                .filter(|(k, _)| k.starts_with("out_conv."))
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        decoder.param_specs().check(&shapes(&kept))?;
        decoder_state = kept;
    }
    state.extend(decoder_state);
    Ok(SemanticTrainer::new(sam, decoder, &state, device, settings, run.seed))
}

/// The joint mode's candidate objects of a sample: its classes large enough to click on.
fn clickable<'s>(sample: &'s SliceSample, context: &Context<'_>) -> Vec<&'s Vec<bool>> {
    match context.run.joint {
        true => sample
            .objects
            .iter()
            .filter(|m| m.iter().filter(|&&v| v).count() >= context.run.min_class_pixels)
            .collect(),
        false => Vec::new(),
    }
}

/// The size of the global batch of samples `chosen`.
fn totals_of(samples: &[SliceSample], chosen: &[usize], context: &Context<'_>) -> SemanticTotals {
    SemanticTotals {
        images: chosen.len(),
        objects: chosen
            .iter()
            .map(|&i| clickable(&samples[i], context).len().min(context.run.objects_per_image))
            .sum(),
    }
}

/// The batch of samples `chosen` (with their keys): embeddings (frozen encoder) or images, class maps, and
/// for the joint mode up to `objects_per_image` classes large enough to click on, picked (and their clicks
/// seeded) by each sample's key. Its totals are its own; a shard's are set by the caller.
fn batch_of(
    samples: &[SliceSample],
    embeddings: Option<&Vec<Tensor>>,
    (chosen, keys): (&[usize], &[u64]),
    context: &Context<'_>,
) -> SemanticBatch {
    let side = context.sam_config.img_size as i64;
    let n = chosen.len() as i64;
    let input = match embeddings {
        Some(all) => BatchInput::Embeddings(Tensor::stack(&chosen.iter().map(|&i| &all[i]).collect::<Vec<_>>(), 0)),
        None => {
            let pixels: Vec<f32> = chosen.iter().flat_map(|&i| samples[i].input.iter().copied()).collect();
            BatchInput::Images(Tensor::from_slice(&pixels).reshape([n, 3, side, side]))
        }
    };
    let maps: Vec<i64> = chosen.iter().flat_map(|&i| class_map(&samples[i])).collect();
    let (mut objects, mut object_seeds) = (Vec::new(), Vec::new());
    for (b, (&i, &key)) in chosen.iter().zip(keys).enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(key);
        let mut present = clickable(&samples[i], context);
        present.shuffle(&mut rng);
        for mask in present.into_iter().take(context.run.objects_per_image) {
            objects.push((b, mask.clone()));
            object_seeds.push(rng.random());
        }
    }
    SemanticBatch {
        input,
        target: Tensor::from_slice(&maps).reshape([n, side, side]),
        objects,
        object_seeds,
        totals: totals_of(samples, chosen, context),
    }
}

/// One line of `log.jsonl`.
#[derive(serde::Serialize)]
struct LogEntry {
    step: u64,
    loss: f64,
    dice_loss: f64,
    cross_entropy: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    interactive_loss: Option<f64>,
    seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    val_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    val_dice: Option<Vec<Option<f64>>>,
    lr: f64,
}

fn validation_batches(context: &Context<'_>) -> Vec<SemanticBatch> {
    let n = context.val.len();
    let wanted = VALIDATION_SLICES.min(n);
    let indices: Vec<usize> = (0..wanted).map(|k| k * n / wanted).collect();
    let embeddings = context.embeddings.as_ref().map(|e| &e.val);
    indices
        .chunks(context.run.batch_size)
        .map(|chunk| {
            let keys: Vec<u64> = chunk.iter().map(|&k| k as u64).collect();
            batch_of(&context.val, embeddings, (chunk, &keys), context)
        })
        .collect()
}

fn train_loop(
    trainer: &mut SemanticTrainer,
    context: &Context<'_>,
    mut progress: impl FnMut(&Progress),
) -> Result<(f64, Option<SemanticValidation>), TrainError> {
    let run = &context.run;
    let parallel = context.parallel;
    let mut log = parallel.writes().then(|| RunLog::open(&context.out)).transpose()?;
    let validation = validation_batches(context);
    let embeddings = context.embeddings.as_ref().map(|e| &e.train);
    let started = Instant::now();
    let first = trainer.iteration();
    let (mut final_loss, mut last) = (f64::NAN, None);
    while trainer.iteration() < run.steps {
        let mut rng = step_rng(run.seed, trainer.iteration());
        let global = GlobalBatch::draw(context.train.len(), run.batch_size, None, &mut rng);
        let shard = parallel.shard(global.chosen.len());
        let mut batch = batch_of(
            &context.train,
            embeddings,
            (&global.chosen[shard.clone()], &global.keys[shard]),
            context,
        );
        batch.totals = totals_of(&context.train, &global.chosen, context);
        let report = trainer.step_sharded(&batch, parallel)?;
        final_loss = report.loss;
        let done = trainer.iteration();
        let validate = !validation.is_empty() && (done.is_multiple_of(run.val_every) || done == run.steps);
        let checked = validate.then(|| trainer.validate(&validation, parallel)).transpose()?;
        let entry = LogEntry {
            step: done,
            loss: report.loss,
            dice_loss: report.dice,
            cross_entropy: report.cross_entropy,
            interactive_loss: report.interactive_loss,
            seconds: started.elapsed().as_secs_f64(),
            val_loss: checked.as_ref().map(|v| v.loss),
            val_dice: checked.as_ref().map(|v| v.dice.clone()),
            lr: trainer.lr(),
        };
        last = checked.or(last);
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
            images_per_second: (done - first) as f64 * run.batch_size as f64 / elapsed,
        });
    }
    Ok((final_loss, last))
}

/// The bundle: the SAM checkpoint (or, when the encoder was trained, the trained SAM) with the decoder.
fn export(
    trainer: &SemanticTrainer,
    context: &Context<'_>,
    decoder: &Path,
    final_loss: f64,
    validation: Option<&SemanticValidation>,
) -> Result<PathBuf, TrainError> {
    let run = &context.run;
    let checkpoint = if run.freeze_image_encoder {
        resolve(&context.base, Path::new(&run.init))
    } else {
        let path = context.out.join("sam.safetensors");
        write_atomically(&path, &trainer.sam_tensors())?;
        path
    };
    let mut extra = provenance_extra(context.config_path, trainer.iteration(), final_loss);
    if let Some(v) = validation {
        extra.insert("val_loss".into(), serde_json::json!(v.loss));
        extra.insert("val_dice".into(), serde_json::json!(v.dice));
    }
    let bundle = context.out.join("bundle");
    let training_data: Vec<String> = run.train.iter().map(|e| e.image.display().to_string()).collect();
    export_bundle(&ExportRequest {
        checkpoint: &checkpoint,
        config: Some(context.sam_config.clone()),
        out: &bundle,
        force: true,
        provenance: Provenance {
            name: Some("medico semantic model".into()),
            url: None,
            training_data: Some(training_data.join("; ")),
            extra,
        },
        overlay: None,
        semantic: Some(SemanticExport::from_file(decoder, run.classes.clone())?),
        propagation: None,
        interaction: None,
        masks: None,
        walk_overlay: None,
    })?;
    Ok(bundle)
}
