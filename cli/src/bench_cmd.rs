//! `medico-cli bench`: encoder and decoder latency of a bundle on every available engine, measured in one
//! run on one machine (medians after warm-up), with the ratio between engines. For notes, not tests.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::anyhow;
use clap::Args;
use medico_bundle::Bundle;
use medico_models::prompt::BoxPrompt;
use medico_runtime::engines::ort_available;
use medico_runtime::prediction::predictor::{BackendChoice, Predictor};
use serde::Serialize;

use crate::common::{default_threads, runtime_failure};
use crate::progress;
use crate::Failure;

#[derive(Args)]
pub struct BenchArgs {
    /// Model bundle folder.
    #[arg(long)]
    model: PathBuf,
    /// Engines to time (default: ort when its library loads, and tract).
    #[arg(long = "backend", value_name = "ort|tract")]
    backends: Vec<BackendChoice>,
    /// Timed encoder runs per engine (after one warm-up run).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Timed decoder runs per engine (after one warm-up run).
    #[arg(long, default_value_t = 50)]
    decoder_runs: usize,
    /// Threads per engine.
    #[arg(long, default_value_t = default_threads())]
    threads: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Median and minimum of timings in milliseconds.
#[derive(Serialize, Clone, Copy)]
struct Timing {
    median: f64,
    min: f64,
    runs: usize,
}

impl Timing {
    fn of(mut ms: Vec<f64>) -> Self {
        ms.sort_by(f64::total_cmp);
        let n = ms.len();
        let median = if n % 2 == 1 {
            ms[n / 2]
        } else {
            (ms[n / 2 - 1] + ms[n / 2]) / 2.0
        };
        Timing {
            median,
            min: ms[0],
            runs: n,
        }
    }
}

/// One engine's timings.
#[derive(Serialize)]
struct EngineRow {
    backend: &'static str,
    threads: usize,
    encoder_ms: Timing,
    decoder_ms: Timing,
    ratio_to_first: Ratios,
}

/// Median ratios to the first engine's.
#[derive(Serialize)]
struct Ratios {
    encoder: f64,
    decoder: f64,
}

/// `bench --json`.
#[derive(Serialize)]
struct BenchReport {
    model: String,
    architecture: String,
    image_size: usize,
    results: Vec<EngineRow>,
}

/// A deterministic test image with structure (smooth gradients and a bright disc), `[h, w, 3]`.
fn test_image(side: usize) -> Vec<u8> {
    let c = side as f64 / 2.0;
    (0..side * side)
        .flat_map(|i| {
            let (y, x) = ((i / side) as f64, (i % side) as f64);
            let disc = if (x - c).hypot(y - c) < side as f64 / 5.0 {
                120.0
            } else {
                0.0
            };
            let v = ((x + y) / (2.0 * side as f64) * 120.0 + disc).min(255.0) as u8;
            [v, v, v]
        })
        .collect()
}

pub fn run(args: BenchArgs) -> Result<(), Failure> {
    if args.runs == 0 || args.decoder_runs == 0 {
        return Err(Failure::usage(anyhow!("--runs and --decoder-runs must be at least 1")));
    }
    let model = crate::default_model::resolve_model(Some(&args.model)).map_err(Failure::model)?;
    let bundle = Bundle::open(&model).map_err(Failure::model)?;
    let backends = if args.backends.is_empty() {
        let mut found = Vec::new();
        if ort_available() {
            found.push(BackendChoice::Ort);
        }
        found.push(BackendChoice::Tract);
        found
    } else {
        args.backends.clone()
    };
    let mut rows = Vec::new();
    for backend in backends {
        rows.push(time_engine(&args, &bundle, backend)?);
    }
    let (first_encoder, first_decoder) = (rows[0].encoder_ms.median, rows[0].decoder_ms.median);
    for row in &mut rows {
        row.ratio_to_first = Ratios {
            encoder: row.encoder_ms.median / first_encoder,
            decoder: row.decoder_ms.median / first_decoder,
        };
    }
    let report = BenchReport {
        model: args.model.display().to_string(),
        architecture: bundle.manifest.architecture.clone(),
        image_size: bundle.manifest.config.img_size,
        results: rows,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report serializes")
        );
    } else {
        print_table(&report);
    }
    Ok(())
}

/// Times one engine: encoder runs on a test image, then decoder runs with a central box.
fn time_engine(args: &BenchArgs, bundle: &Bundle, backend: BackendChoice) -> Result<EngineRow, Failure> {
    let side = bundle.manifest.config.img_size;
    let image = test_image(side);
    let bbox = BoxPrompt {
        x0: side as f64 * 0.25,
        y0: side as f64 * 0.25,
        x1: side as f64 * 0.75,
        y1: side as f64 * 0.75,
    };
    let mut predictor = Predictor::open(bundle, backend, args.threads).map_err(runtime_failure)?;
    let name = predictor.engine_name();
    let bar = progress::bar((args.runs + args.decoder_runs + 2) as u64, name);
    let mut encoder = Vec::new();
    for run in 0..=args.runs {
        let start = Instant::now();
        predictor.set_image(&image, (side, side)).map_err(runtime_failure)?;
        if run > 0 {
            encoder.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        bar.inc(1);
    }
    let mut decoder = Vec::new();
    for run in 0..=args.decoder_runs {
        let start = Instant::now();
        predictor
            .predict(&[], Some(&bbox), None, false)
            .map_err(runtime_failure)?;
        if run > 0 {
            decoder.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(EngineRow {
        backend: name,
        threads: args.threads,
        encoder_ms: Timing::of(encoder),
        decoder_ms: Timing::of(decoder),
        ratio_to_first: Ratios {
            encoder: 1.0,
            decoder: 1.0,
        },
    })
}

fn print_table(report: &BenchReport) {
    let side = report.image_size;
    println!(
        "{} ({}, {side}x{side} input), medians after 1 warm-up run:",
        report.model, report.architecture
    );
    println!(
        "  {:<8} {:>7} {:>14} {:>14} {:>10} {:>10}",
        "engine", "threads", "encoder ms", "decoder ms", "enc ratio", "dec ratio"
    );
    for row in &report.results {
        println!(
            "  {:<8} {:>7} {:>14.1} {:>14.2} {:>10.2} {:>10.2}",
            row.backend,
            row.threads,
            row.encoder_ms.median,
            row.decoder_ms.median,
            row.ratio_to_first.encoder,
            row.ratio_to_first.decoder,
        );
    }
}
