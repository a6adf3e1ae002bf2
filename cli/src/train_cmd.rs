//! `medico-cli train --config train.json` (feature `torch`): a training run with a progress bar showing the loss
//! and throughput; writes the log, checkpoints, the SAM state dict and a bundle into the run's `out` folder.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;
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
    let mut bar = None;
    let summary = medico_train::run::run(&args.config, device, |p| {
        let bar = bar.get_or_insert_with(|| progress::bar(0, "training"));
        bar.set_position(p.step);
        bar.set_message(format!(
            "training: loss {:.4}, {:.2} images/s",
            p.loss, p.images_per_second
        ));
    })
    .map_err(|e| Failure::input(anyhow!(e)))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
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
