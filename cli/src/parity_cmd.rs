//! `medico-cli parity`: the SAM definition on tch against the official implementation's outputs, or against
//! LiteMedSAM's own code with its real checkpoint.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;
use medico_train::device::{select_device, DeviceChoice};
use medico_train::parity::{run_lite_parity, run_parity};
use tch::Kind;

use crate::Failure;

/// Largest deviation accepted in float32.
const F32_TOLERANCE: f64 = 1e-4;

#[derive(Args)]
pub struct ParityArgs {
    /// Reference directories (e.g. ../shared/reference/tiny); each holds config.json, weights and outputs,
    /// or (../shared/reference/litemedsam) outputs of LiteMedSAM's code, checked with --lite-checkpoint.
    #[arg(long = "reference", required = true)]
    references: Vec<PathBuf>,
    /// LiteMedSAM's checkpoint (lite_medsam.pth), for reference directories without config.json.
    #[arg(long, value_name = "FILE")]
    lite_checkpoint: Option<PathBuf>,
    /// cpu, cuda or auto (CUDA when libtorch's CUDA backend loads and a GPU is visible).
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// Computation dtype: f32 (checked against 1e-4) or bf16 (reported only).
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16"])]
    dtype: String,
}

pub fn run(args: ParityArgs) -> Result<(), Failure> {
    let device = select_device(args.device).map_err(|e| Failure::model(anyhow!(e)))?;
    let kind = if args.dtype == "bf16" {
        Kind::BFloat16
    } else {
        Kind::Float
    };
    println!("device {device:?}, dtype {}", args.dtype);
    let mut worst: f64 = 0.0;
    for reference in &args.references {
        let report = if reference.join("config.json").exists() {
            run_parity(reference, device, kind)
        } else {
            let checkpoint = args.lite_checkpoint.as_ref().ok_or_else(|| {
                Failure::usage(anyhow!(
                    "{}: a LiteMedSAM reference (no config.json) needs --lite-checkpoint lite_medsam.pth",
                    reference.display()
                ))
            })?;
            run_lite_parity(reference, checkpoint, device, kind)
        }
        .map_err(|e| Failure::input(anyhow!(e)))?;
        print!("{}", report.render());
        worst = worst.max(report.max_error());
        let flipped: usize = report
            .cases
            .iter()
            .map(|c| c.mask_pixels_differing_beyond_tolerance)
            .sum();
        if kind == Kind::Float && flipped > 0 {
            return Err(Failure::model(anyhow!(
                "{flipped} mask pixels differ from the reference where |logit| >= 1e-3"
            )));
        }
    }
    if kind == Kind::Float && worst > F32_TOLERANCE {
        return Err(Failure::model(anyhow!(
            "max deviation {worst:.3e} exceeds the float32 tolerance {F32_TOLERANCE:e}"
        )));
    }
    println!("parity OK (max |Δ| {worst:.3e})");
    Ok(())
}
