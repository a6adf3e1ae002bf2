//! `medico-cli train --config train.json` (feature `torch`): a training run with a progress bar showing the loss
//! and throughput; writes the log, checkpoints, the SAM state dict and a bundle into the run's `out` folder.
//! Started N times by `torchrun --no-python` or `srun`, the processes are the ranks of one data-parallel run
//! (libtorch's c10d Gloo process group): rank 0 shows the progress and writes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use medico_bundle::{Bundle, GraphRole};
use medico_runtime::engines::{open_engine, BackendChoice, Engine};
use medico_runtime::prediction::predictor::required_graph;
use medico_train::distributed::{DataParallel, Launch, ProcessGroup};
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
    /// Under torchrun or srun: seconds a rank waits for the others (to join, and at each step) before it stops
    /// with an error.
    #[arg(long, default_value_t = 1800)]
    rank_timeout: u64,
}

/// This process's part: a rank of the run the launcher's environment describes (joined), or the only one.
fn join_ranks(launch: Option<&Launch>, timeout: Duration) -> Result<DataParallel, Failure> {
    let Some(launch) = launch else {
        return Ok(DataParallel::Single);
    };
    let group = ProcessGroup::join(launch, timeout).map_err(|e| {
        Failure::input(anyhow!(
            "rank {} of {}: cannot join the run at {}:{}: {e}",
            launch.rank,
            launch.world_size,
            launch.master_addr,
            launch.master_port
        ))
    })?;
    Ok(DataParallel::Group(group))
}

/// The device of this rank: a CUDA device is the one its local rank names.
fn rank_device(choice: DeviceChoice, launch: Option<&Launch>) -> Result<tch::Device, Failure> {
    let device = select_device(choice).map_err(|e| Failure::model(anyhow!(e)))?;
    match (device, launch) {
        (tch::Device::Cuda(_), Some(launch)) => {
            let visible = tch::Cuda::device_count() as usize;
            if launch.local_rank >= visible {
                return Err(Failure::model(anyhow!(
                    "local rank {} but {visible} CUDA device(s) visible: start at most {visible} ranks per node",
                    launch.local_rank
                )));
            }
            Ok(tch::Device::Cuda(launch.local_rank))
        }
        (device, _) => Ok(device),
    }
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

/// A progress display for either kind of run: a bar for the embeddings, one for the steps; on rank 0 only.
struct Bars {
    shown: bool,
    embeddings: Option<indicatif::ProgressBar>,
    steps: Option<indicatif::ProgressBar>,
}

impl Bars {
    fn new(parallel: &DataParallel) -> Self {
        Self {
            shown: parallel.writes(),
            embeddings: None,
            steps: None,
        }
    }

    fn show(&mut self, p: &Progress) {
        if !self.shown {
            return;
        }
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

/// Which rank failed, for the error of a data-parallel run.
fn rank_failure(parallel: &DataParallel, error: medico_train::TrainError) -> Failure {
    match parallel {
        DataParallel::Single => Failure::input(anyhow!(error)),
        DataParallel::Group(_) => {
            Failure::input(anyhow!(error).context(format!("rank {} of {}", parallel.rank(), parallel.world_size())))
        }
    }
}

/// `train` with `"objective": "semantic"`: the UNETR decoder.
fn run_semantic(args: &TrainArgs, device: tch::Device, parallel: &DataParallel) -> Result<(), Failure> {
    let mut bars = Bars::new(parallel);
    let summary =
        run_semantic_config(&args.config, device, parallel, |p| bars.show(p)).map_err(|e| rank_failure(parallel, e))?;
    bars.finish();
    if !parallel.writes() {
        return Ok(());
    }
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
    let launch = Launch::from_env().map_err(|e| Failure::usage(anyhow!(e)))?;
    let device = rank_device(args.device, launch.as_ref())?;
    let text = std::fs::read_to_string(&args.config)
        .map_err(|e| Failure::input(anyhow!("{}: cannot read: {e}", args.config.display())))?;
    let parallel = join_ranks(launch.as_ref(), Duration::from_secs(args.rank_timeout))?;
    if is_semantic(&text) {
        if args.embed_with.is_some() {
            return Err(Failure::usage(anyhow!(
                "--embed-with applies to interactive runs; {} is a semantic configuration",
                args.config.display()
            )));
        }
        return run_semantic(&args, device, &parallel);
    }
    let mut encoder = args
        .embed_with
        .as_deref()
        .map(|model| OrtEncoder::open(model, args.threads))
        .transpose()?;
    let mut bars = Bars::new(&parallel);
    let external = encoder.as_mut().map(|e| e as &mut dyn ImageEncoder);
    let summary = medico_train::run::run_with_encoder(&args.config, device, external, &parallel, |p| bars.show(p))
        .map_err(|e| rank_failure(&parallel, e))?;
    bars.finish();
    if !parallel.writes() {
        return Ok(());
    }
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
