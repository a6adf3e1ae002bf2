//! `medico-cli`: medico's command line.

mod batch_cmd;
mod bench_cmd;
mod bench_compare;
mod checkpoint_cmd;
mod common;
mod default_model;
mod dice_plot;
mod eval_cmd;
mod eval_semantic;
mod eval_stop_rule;
mod export_cmd;
mod info_cmd;
mod mask_output;
#[cfg(feature = "torch")]
mod parity_cmd;
mod progress;
mod prompt_args;
mod propagate_cmd;
mod rtstruct_cmd;
mod segment_cmd;
mod semantic_cmd;
mod serve_cmd;
mod slicer_cmd;
#[cfg(feature = "torch")]
mod train_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for usage errors (as clap's).
pub const EXIT_USAGE: u8 = 2;
/// Exit code for bad input files or prompts.
pub const EXIT_INPUT: u8 = 3;
/// Exit code for model and checkpoint problems.
pub const EXIT_MODEL: u8 = 4;

/// Segment Anything for medical images: checkpoints, parity, export and inference.
#[derive(Parser)]
#[command(name = "medico-cli", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect SAM checkpoints (any format medico reads).
    Checkpoint {
        #[command(subcommand)]
        command: checkpoint_cmd::CheckpointCommand,
    },
    /// Segment an image or a slice of a volume with a box and/or points.
    Segment(Box<segment_cmd::SegmentArgs>),
    /// Describe a scan: format, grid, spacing, orientation, value range, slices per plane (an RT Structure
    /// Set: its ROIs).
    Info(info_cmd::InfoArgs),
    /// Segment a cohort: the items of a manifest (one `segment` each), as a shard of a Slurm job array or of
    /// RANK/WORLD_SIZE, resuming where a killed job stopped.
    Batch(batch_cmd::BatchArgs),
    /// Rasterise an RT Structure Set's ROI (or all of them) onto the grid of the series it was drawn on.
    Rtstruct(rtstruct_cmd::RtstructArgs),
    /// Time a bundle's encoder and decoder on each available engine.
    Bench(bench_cmd::BenchArgs),
    /// Evaluate a bundle by simulated prompting.
    Eval {
        #[command(subcommand)]
        command: eval_cmd::EvalCommand,
    },
    /// Export a checkpoint to a bundle (encoder.onnx, decoder graphs, model.json).
    Export(export_cmd::ExportArgs),
    /// The model registry: list and pull published checkpoints.
    Models {
        #[command(subcommand)]
        command: export_cmd::ModelsCommand,
    },
    /// Serve models over HTTP with MONAI Label's API (3D Slicer, OHIF, ... connect to it).
    Serve(serve_cmd::ServeArgs),
    /// Print the 3D Slicer CLI-module description (ModuleDescription XML) of `slicer-segment`.
    SlicerXml,
    /// Segment as a 3D Slicer CLI module: the arguments Slicer passes (`slicer-xml` describes them).
    SlicerSegment(slicer_cmd::SlicerSegmentArgs),
    /// Check the SAM definition against official reference outputs (needs the `torch` feature).
    #[cfg(feature = "torch")]
    Parity(parity_cmd::ParityArgs),
    /// Finetune or train SAM with the MedicoSAM objective (needs the `torch` feature).
    #[cfg(feature = "torch")]
    Train(train_cmd::TrainArgs),
}

/// A failure with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    /// Process exit code.
    pub code: u8,
    /// The error, printed on one line.
    pub error: anyhow::Error,
}

impl Failure {
    /// A model or checkpoint failure (exit code 4).
    pub fn model(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: EXIT_MODEL,
            error: error.into(),
        }
    }

    /// A usage failure (exit code 2).
    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: EXIT_USAGE,
            error: error.into(),
        }
    }

    /// An input failure (exit code 3).
    pub fn input(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: EXIT_INPUT,
            error: error.into(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Checkpoint { command } => checkpoint_cmd::run(command),
        Command::Segment(args) => segment_cmd::run(*args),
        Command::Info(args) => info_cmd::run(args),
        Command::Rtstruct(args) => rtstruct_cmd::run(args),
        Command::Batch(args) => batch_cmd::run(args),
        Command::Bench(args) => bench_cmd::run(args),
        Command::Eval { command } => eval_cmd::run(command),
        Command::Export(args) => export_cmd::run_export(args),
        Command::Models { command } => export_cmd::run_models(command),
        Command::Serve(args) => serve_cmd::run(args),
        Command::SlicerXml => slicer_cmd::print_xml(),
        Command::SlicerSegment(args) => slicer_cmd::run(args),
        #[cfg(feature = "torch")]
        Command::Parity(args) => parity_cmd::run(args),
        #[cfg(feature = "torch")]
        Command::Train(args) => train_cmd::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {:#}", failure.error);
            ExitCode::from(failure.code)
        }
    }
}
