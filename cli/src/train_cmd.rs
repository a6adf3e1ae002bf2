//! `medico-cli train --config train.json` (feature `torch`): a training run with a progress bar showing the loss
//! and throughput; writes the log, checkpoints, the SAM state dict and a bundle into the run's `out` folder.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::Args;
use medico_bundle::{Bundle, GraphRole};
use medico_runtime::engines::{open_engine, BackendChoice, Engine};
use medico_runtime::prediction::predictor::required_graph;
use medico_train::embeddings::ImageEncoder;
use medico_train::run::Progress;
use medico_train::semantic::config::is_semantic;
use medico_train::semantic::run_semantic as run_semantic_config;
use medico_train::{select_device, DeviceChoice};
use ndarray::{ArrayD, Axis, IxDyn};

use crate::progress;
use crate::Failure;

#[derive(Args)]
pub struct TrainArgs {
    /// The run's JSON configuration (see train/README.md).
    #[arg(long)]
    config: PathBuf,
    /// Device: cpu, cuda or auto.
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// With a frozen image encoder: compute the missing embeddings with ONNX Runtime on this bundle's
    /// encoder (a model folder or an installed model's name, e.g. `litemedsam`; about twice as fast as
    /// libtorch on a CPU). Its first embedding is checked against the run's own encoder before any is kept.
    #[arg(long)]
    embed_with: Option<PathBuf>,
    /// Threads for `--embed-with`.
    #[arg(long, default_value_t = crate::common::default_threads())]
    threads: usize,
}

/// The frozen encoder's embeddings from a bundle's `encoder.onnx` on ONNX Runtime.
struct OrtEncoder {
    engine: Box<dyn Engine>,
    side: usize,
    label: String,
}

impl OrtEncoder {
    fn open(model: &Path, threads: usize) -> Result<Self, Failure> {
        let dir = crate::default_model::resolve_model(Some(model)).map_err(Failure::model)?;
        let bundle = Bundle::open(&dir).map_err(Failure::model)?;
        let graph = required_graph(&bundle, GraphRole::Encoder).map_err(crate::common::runtime_failure)?;
        let engine = open_engine(BackendChoice::Ort, &graph, threads).map_err(crate::common::runtime_failure)?;
        Ok(Self {
            engine,
            side: bundle.manifest.input_size,
            label: format!("ONNX Runtime on {}", graph.display()),
        })
    }
}

impl ImageEncoder for OrtEncoder {
    fn encode(&mut self, input: &[f32]) -> Result<ArrayD<f32>, String> {
        let image = ArrayD::from_shape_vec(IxDyn(&[1, 3, self.side, self.side]), input.to_vec())
            .map_err(|_| format!("an input of {} values is not 3 x {1} x {1}", input.len(), self.side))?;
        let mut outputs = self.engine.run(&[("images", image)]).map_err(|e| e.to_string())?;
        let embedding = outputs
            .remove("image_embeddings")
            .ok_or("the encoder has no 'image_embeddings' output")?;
        Ok(embedding.index_axis_move(Axis(0), 0))
    }

    fn name(&self) -> String {
        self.label.clone()
    }
}

/// A progress display for either kind of run: a bar for the embeddings, one for the steps.
#[derive(Default)]
struct Bars {
    embeddings: Option<indicatif::ProgressBar>,
    steps: Option<indicatif::ProgressBar>,
}

impl Bars {
    fn show(&mut self, p: &Progress) {
        match *p {
            Progress::Embeddings { done, total } => {
                let bar = self
                    .embeddings
                    .get_or_insert_with(|| progress::bar(total as u64, "embeddings"));
                bar.set_position(done as u64);
            }
            Progress::Step {
                step,
                loss,
                images_per_second,
            } => {
                let bar = self.steps.get_or_insert_with(|| progress::bar(0, "training"));
                bar.set_position(step);
                bar.set_message(format!("training: loss {loss:.4}, {images_per_second:.2} images/s"));
            }
        }
    }

    fn finish(self) {
        for bar in [self.embeddings, self.steps].into_iter().flatten() {
            bar.finish_and_clear();
        }
    }
}

/// `train` with `"objective": "semantic"`: the UNETR decoder.
fn run_semantic(args: &TrainArgs, device: tch::Device) -> Result<(), Failure> {
    let mut bars = Bars::default();
    let summary =
        run_semantic_config(&args.config, device, |p| bars.show(p)).map_err(|e| Failure::input(anyhow!(e)))?;
    bars.finish();
    if let Some(report) = summary.embeddings {
        println!(
            "frozen image encoder: {} embeddings reused from the cache, {} computed in {:.1} s",
            report.reused, report.computed, report.encoder_seconds
        );
    }
    let validation = summary
        .validation
        .map(|v| {
            let dice: Vec<String> = v
                .dice
                .iter()
                .map(|d| d.map_or("-".into(), |d| format!("{d:.3}")))
                .collect();
            format!(", validation loss {:.4}, Dice per class [{}]", v.loss, dice.join(", "))
        })
        .unwrap_or_default();
    println!(
        "trained: final loss {:.4}{validation}; decoder {}; bundle {}",
        summary.final_loss,
        summary.decoder.display(),
        summary.bundle.display()
    );
    Ok(())
}

pub fn run(args: TrainArgs) -> Result<(), Failure> {
    let device = select_device(args.device).map_err(|e| Failure::model(anyhow!(e)))?;
    let text = std::fs::read_to_string(&args.config)
        .map_err(|e| Failure::input(anyhow!("{}: cannot read: {e}", args.config.display())))?;
    if is_semantic(&text) {
        if args.embed_with.is_some() {
            return Err(Failure::usage(anyhow!(
                "--embed-with applies to interactive runs; {} is a semantic configuration",
                args.config.display()
            )));
        }
        return run_semantic(&args, device);
    }
    let mut encoder = args
        .embed_with
        .as_deref()
        .map(|model| OrtEncoder::open(model, args.threads))
        .transpose()?;
    let mut bars = Bars::default();
    let external = encoder.as_mut().map(|e| e as &mut dyn ImageEncoder);
    let summary = medico_train::run::run_with_encoder(&args.config, device, external, |p| bars.show(p))
        .map_err(|e| Failure::input(anyhow!(e)))?;
    bars.finish();
    if let Some(report) = summary.embeddings {
        println!(
            "frozen image encoder: {} embeddings reused from the cache, {} computed in {:.1} s",
            report.reused, report.computed, report.encoder_seconds
        );
    }
    println!(
        "trained: final loss {:.4}{}; bundle {}",
        summary.final_loss,
        summary
            .val_loss
            .map(|v| format!(", validation loss {v:.4}"))
            .unwrap_or_default(),
        summary.bundle.display()
    );
    Ok(())
}
