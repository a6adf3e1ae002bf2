//! `medico-cli train --config train.json` (feature `torch`): a training run with a progress bar showing the loss
//! and throughput; writes the log, checkpoints, the SAM state dict and a bundle into the run's `out` folder.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;
use medico_train::run::Progress;
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

pub fn run(args: TrainArgs) -> Result<(), Failure> {
    let device = select_device(args.device).map_err(|e| Failure::model(anyhow!(e)))?;
    let (mut embedding_bar, mut step_bar) = (None, None);
    let summary = medico_train::run::run(&args.config, device, |p| match *p {
        Progress::Embeddings { done, total } => {
            let bar = embedding_bar.get_or_insert_with(|| progress::bar(total as u64, "embeddings"));
            bar.set_position(done as u64);
        }
        Progress::Step {
            step,
            loss,
            images_per_second,
        } => {
            let bar = step_bar.get_or_insert_with(|| progress::bar(0, "training"));
            bar.set_position(step);
            bar.set_message(format!("training: loss {loss:.4}, {images_per_second:.2} images/s"));
        }
    })
    .map_err(|e| Failure::input(anyhow!(e)))?;
    for bar in [embedding_bar, step_bar].into_iter().flatten() {
        bar.finish_and_clear();
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
