//! `medico-cli bench`: encoder and decoder latency of a bundle on every available engine, measured in one
//! run on one machine (medians after warm-up), with the ratio between engines. For notes, not tests.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::anyhow;
use clap::Args;
use medico_export::Bundle;
use medico_models::prompt::BoxPrompt;
use medico_runtime::engine::ort_available;
use medico_runtime::predictor::{BackendChoice, Predictor};
use serde_json::json;

use crate::progress;
use crate::segment_cmd::{default_threads, runtime_failure};
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
fn summary(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    let median = if n % 2 == 1 {
        ms[n / 2]
    } else {
        (ms[n / 2 - 1] + ms[n / 2]) / 2.0
    };
    (median, ms[0])
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
    let side = bundle.manifest.config.img_size;
    let image = test_image(side);
    let bbox = BoxPrompt {
        x0: side as f64 * 0.25,
        y0: side as f64 * 0.25,
        x1: side as f64 * 0.75,
        y1: side as f64 * 0.75,
    };
    let mut rows = Vec::new();
    for backend in backends {
        let mut predictor = Predictor::open(&bundle, backend, args.threads).map_err(runtime_failure)?;
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
        let (enc_median, enc_min) = summary(encoder);
        let (dec_median, dec_min) = summary(decoder);
        rows.push(json!({
            "backend": name,
            "threads": args.threads,
            "encoder_ms": {"median": enc_median, "min": enc_min, "runs": args.runs},
            "decoder_ms": {"median": dec_median, "min": dec_min, "runs": args.decoder_runs},
        }));
    }
    let reference = rows[0].clone();
    for row in rows.iter_mut() {
        let ratio = |key: &str| {
            row[key]["median"].as_f64().unwrap_or(f64::NAN) / reference[key]["median"].as_f64().unwrap_or(f64::NAN)
        };
        let (enc, dec) = (ratio("encoder_ms"), ratio("decoder_ms"));
        row["ratio_to_first"] = json!({"encoder": enc, "decoder": dec});
    }
    let report = json!({
        "model": args.model.display().to_string(),
        "architecture": bundle.manifest.architecture,
        "image_size": side,
        "results": rows,
    });
    if args.json {
        println!("{report:#}");
        return Ok(());
    }
    println!(
        "{} ({}, {side}x{side} input), medians after 1 warm-up run:",
        args.model.display(),
        bundle.manifest.architecture
    );
    println!(
        "  {:<8} {:>7} {:>14} {:>14} {:>10} {:>10}",
        "engine", "threads", "encoder ms", "decoder ms", "enc ratio", "dec ratio"
    );
    for row in report["results"].as_array().into_iter().flatten() {
        println!(
            "  {:<8} {:>7} {:>14.1} {:>14.2} {:>10.2} {:>10.2}",
            row["backend"].as_str().unwrap_or_default(),
            row["threads"],
            row["encoder_ms"]["median"].as_f64().unwrap_or(f64::NAN),
            row["decoder_ms"]["median"].as_f64().unwrap_or(f64::NAN),
            row["ratio_to_first"]["encoder"].as_f64().unwrap_or(f64::NAN),
            row["ratio_to_first"]["decoder"].as_f64().unwrap_or(f64::NAN),
        );
    }
    Ok(())
}
