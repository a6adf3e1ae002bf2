//! `medico-cli train --config train.json` (feature `torch`): a training run with a progress bar showing the loss
//! and throughput; writes the log, checkpoints, the SAM state dict and a bundle into the run's `out` folder.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;
use medico_train::run::Progress;
use medico_train::semantic::config::is_semantic;
use medico_train::semantic::run_semantic as run_semantic_config;
use medico_train::{select_device, DeviceChoice};

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
        return run_semantic(&args, device);
    }
    let mut bars = Bars::default();
    let summary =
        medico_train::run::run(&args.config, device, |p| bars.show(p)).map_err(|e| Failure::input(anyhow!(e)))?;
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
