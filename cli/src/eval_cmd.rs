//! `medico-cli eval interactive`: simulated interactive segmentation of one or several models on the cases of
//! a `cases.json` — 2D cases with a box or point start and correction rounds (Dice per iteration), 3D cases with
//! a central-slice start and propagation with fixed parameters (volume Dice) — as a table, CSV, JSON and a PNG
//! plot of Dice against iteration.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use medico_bundle::Bundle;
use medico_io::image2d::read_image;
use medico_io::intensity::Intensity;
use medico_io::nifti_io::read_nifti;
use medico_runtime::evaluation::interactive::{evaluate_class, EvalOptions, Start};
use medico_runtime::evaluation::volume::{evaluate_volume_object, VolumePrompt};
use medico_runtime::prediction::predictor::{BackendChoice, Predictor};
use medico_runtime::volume::propagation::PropagationConfig;
use medico_runtime::volume::session::VolumeSession;
use serde::Serialize;
use serde_json::Value;

use crate::common::{bundle_intensity, default_threads, runtime_failure, ProjectionArgs};
use crate::dice_plot::{write_dice_plot, DiceCurve};
use crate::Failure;

#[derive(Subcommand)]
pub enum EvalCommand {
    /// Simulated iterative prompting: box or point start, then correction clicks; Dice per iteration.
    Interactive(InteractiveArgs),
    /// Semantic segmentation heads on held-out volumes: Dice per class and per volume (with `--boxes`, beside
    /// the same models prompted with one box per class).
    Semantic(crate::eval_semantic::SemanticArgs),
}

#[derive(Args)]
pub struct InteractiveArgs {
    /// Model (bundle folder, `medico-tiny` or an installed model's name), optionally labelled as
    /// LABEL=MODEL; repeat to compare models side by side.
    #[arg(long, required = true)]
    model: Vec<String>,
    /// A cases.json (or the folder holding it); its `cases_2d` and `cases_3d` are evaluated.
    #[arg(long)]
    data: PathBuf,
    /// Correction rounds after the start prompt (2D cases).
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Feed the previous low-res logits back as mask prompt (2D cases).
    #[arg(long)]
    use_mask: bool,
    /// Seed of the simulated clicks.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Skip the 3D cases (they encode every slice the propagation reaches).
    #[arg(long)]
    no_3d: bool,
    /// 3D cases: how propagation derives prompts and stops (each model's own default unless given).
    #[command(flatten)]
    projection: ProjectionArgs,
    /// 3D cases: keep the walk within the object's extent along the axis, as a 3D box prompt gives it
    /// (upstream LiteMedSAM's protocol; use with `--projection lite_medsam --iou-threshold 0`).
    #[arg(long)]
    within_object_extent: bool,
    /// Folder for results.csv, results_3d.csv, results.json and dice.png.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Inference engine.
    #[arg(long, default_value = "auto")]
    backend: BackendChoice,
    /// Threads for inference.
    #[arg(long, default_value_t = default_threads())]
    threads: usize,
}

pub fn run(command: EvalCommand) -> Result<(), Failure> {
    match command {
        EvalCommand::Interactive(args) => interactive(args),
        EvalCommand::Semantic(args) => crate::eval_semantic::run(args),
    }
}

/// The evaluated cases and where their paths are relative to.
struct Cases {
    path: PathBuf,
    root: PathBuf,
    cases_2d: Vec<Value>,
    cases_3d: Vec<Value>,
}

impl Cases {
    fn read(data: &Path) -> Result<Self, Failure> {
        let path = if data.is_dir() {
            data.join("cases.json")
        } else {
            data.to_path_buf()
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: cannot read", path.display()))
            .map_err(Failure::input)?;
        let json: Value =
            serde_json::from_str(&text).map_err(|e| Failure::input(anyhow!("{}: not JSON: {e}", path.display())))?;
        let list = |key: &str| json[key].as_array().cloned().unwrap_or_default();
        let (cases_2d, cases_3d) = (list("cases_2d"), list("cases_3d"));
        if cases_2d.is_empty() && cases_3d.is_empty() {
            return Err(Failure::input(anyhow!("{}: no cases_2d or cases_3d", path.display())));
        }
        let root = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Ok(Self {
            path,
            root,
            cases_2d,
            cases_3d,
        })
    }

    /// The path field `key` of `case`, resolved against the cases' folder.
    fn file(&self, case: &Value, key: &str) -> Result<PathBuf, Failure> {
        case[key]
            .as_str()
            .map(|s| self.root.join(s))
            .ok_or_else(|| Failure::input(anyhow!("{}: a case lacks '{key}'", self.path.display())))
    }
}

/// A model under evaluation.
pub(crate) struct Model {
    pub(crate) label: String,
    pub(crate) path: PathBuf,
    pub(crate) bundle: Bundle,
    pub(crate) intensity: Intensity,
}

impl Model {
    /// `LABEL=DIR` or `DIR` (labelled by the folder's name).
    pub(crate) fn open(spec: &str) -> Result<Self, Failure> {
        let (label, path) = match spec.split_once('=') {
            Some((label, path)) if !label.is_empty() && !Path::new(spec).exists() => {
                (label.to_string(), PathBuf::from(path))
            }
            _ => {
                let path = PathBuf::from(spec);
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                (name.unwrap_or_else(|| spec.to_string()), path)
            }
        };
        let path = crate::default_model::resolve_model(Some(&path)).map_err(Failure::model)?;
        let bundle = Bundle::open(&path).map_err(Failure::model)?;
        let intensity = bundle_intensity(&bundle)?;
        Ok(Self {
            label,
            path,
            bundle,
            intensity,
        })
    }
}

/// One 2D case's Dice per iteration.
struct Row2d {
    case: String,
    start: &'static str,
    dice: Vec<f64>,
}

/// One 3D case's volume Dice.
struct Row3d {
    case: String,
    start: &'static str,
    central_slice: usize,
    slices_segmented: usize,
    dice: f64,
}

const STARTS: [(&str, Start); 2] = [("box", Start::Box), ("point", Start::Point)];

fn read_mask(path: &Path) -> Result<(Vec<bool>, (usize, usize)), Failure> {
    let image = read_image(path).map_err(runtime_failure)?;
    Ok((image.gray().iter().map(|&v| v > 127.0).collect(), image.hw))
}

fn evaluate_2d(args: &InteractiveArgs, cases: &Cases, model: &Model) -> Result<(Vec<Row2d>, &'static str), Failure> {
    let mut predictor = Predictor::open(&model.bundle, args.backend, args.threads).map_err(runtime_failure)?;
    let options = EvalOptions {
        rounds: args.rounds,
        use_mask: args.use_mask,
        seed: args.seed,
    };
    let mut rows = Vec::new();
    for case in &cases.cases_2d {
        let id = case["id"].as_str().unwrap_or("?").to_string();
        let image = read_image(&cases.file(case, "image")?).map_err(runtime_failure)?;
        let (gt, hw) = read_mask(&cases.file(case, "mask")?)?;
        if hw != image.hw {
            return Err(Failure::input(anyhow!("case {id}: mask and image sizes differ")));
        }
        let rgb = image
            .to_rgb(None, model.intensity)
            .map_err(|e| Failure::input(anyhow!("case {id}: {e}")))?;
        predictor.set_image(&rgb.pixels, rgb.hw).map_err(runtime_failure)?;
        for (start, how) in STARTS {
            if let Some(dice) = evaluate_class(&mut predictor, &gt, hw, how, options).map_err(runtime_failure)? {
                rows.push(Row2d {
                    case: id.clone(),
                    start,
                    dice,
                });
            }
        }
    }
    Ok((rows, predictor.engine_name()))
}

fn evaluate_3d(
    args: &InteractiveArgs,
    cases: &Cases,
    model: &Model,
    config: &PropagationConfig,
    cache: &Path,
) -> Result<Vec<Row3d>, Failure> {
    let mut rows = Vec::new();
    for case in &cases.cases_3d {
        let id = case["id"].as_str().unwrap_or("?").to_string();
        let image_path = cases.file(case, "image")?;
        let labels_path = cases.file(case, "labels")?;
        let label = case["label"]
            .as_f64()
            .ok_or_else(|| Failure::input(anyhow!("case {id}: no numeric 'label'")))?;
        let axis = case["axis"].as_u64().unwrap_or(2) as usize;
        // The case's prompting slice when it names one, else the middle of the object's extent.
        let prompt_slice = case["central_slice"].as_u64().map(|k| k as usize);
        if axis > 2 {
            return Err(Failure::input(anyhow!("case {id}: axis {axis} is not 0, 1 or 2")));
        }
        let volume = read_nifti(&image_path, None).map_err(runtime_failure)?;
        let labels = read_nifti(&labels_path, None).map_err(runtime_failure)?;
        let mut session = VolumeSession::open(
            volume,
            axis,
            model.intensity,
            &model.bundle,
            args.backend,
            args.threads,
            Some(cache),
        )
        .map_err(runtime_failure)?;
        for (index, (start, how)) in STARTS.into_iter().enumerate() {
            let seed = args.seed.wrapping_add(index as u64);
            let prompt = VolumePrompt {
                slice: prompt_slice,
                start: how,
                seed,
                within_object_extent: args.within_object_extent,
            };
            let result = evaluate_volume_object(&mut session, &labels, label as f32, prompt, config)
                .map_err(|e| Failure::input(anyhow::Error::new(e).context(format!("case {id}"))))?;
            if let Some(result) = result {
                rows.push(Row3d {
                    case: id.clone(),
                    start,
                    central_slice: result.central_slice,
                    slices_segmented: result.slices_segmented,
                    dice: result.dice,
                });
            }
        }
    }
    Ok(rows)
}

fn mean_per_iteration(rows: &[Row2d], start: &str, iterations: usize) -> Vec<f64> {
    let picked: Vec<&Row2d> = rows.iter().filter(|r| r.start == start).collect();
    (0..iterations)
        .map(|i| picked.iter().map(|r| r.dice[i]).sum::<f64>() / picked.len().max(1) as f64)
        .collect()
}

fn mean_3d(rows: &[Row3d], start: &str) -> Option<f64> {
    let picked: Vec<f64> = rows.iter().filter(|r| r.start == start).map(|r| r.dice).collect();
    (!picked.is_empty()).then(|| picked.iter().sum::<f64>() / picked.len() as f64)
}

/// One model's results.
struct ModelResult<'m> {
    model: &'m Model,
    engine: &'static str,
    rows: Vec<Row2d>,
    rows_3d: Vec<Row3d>,
    config: PropagationConfig,
}

/// `results.json`.
#[derive(Serialize)]
struct Summary {
    cases: String,
    rounds: usize,
    use_mask: bool,
    seed: u64,
    within_object_extent: bool,
    models: Vec<ModelSummary>,
}

/// One model in `results.json`.
#[derive(Serialize)]
struct ModelSummary {
    label: String,
    model: String,
    backend: &'static str,
    mean_dice_2d: MeanDice2d,
    mean_dice_3d: MeanDice3d,
    per_case_2d: Vec<Case2d>,
    per_case_3d: Vec<Case3d>,
    propagation_3d: Propagation3d,
}

#[derive(Serialize)]
struct MeanDice2d {
    #[serde(rename = "box")]
    bbox: Vec<f64>,
    point: Vec<f64>,
}

#[derive(Serialize)]
struct MeanDice3d {
    #[serde(rename = "box")]
    bbox: Option<f64>,
    point: Option<f64>,
}

#[derive(Serialize)]
struct Case2d {
    case: String,
    start: &'static str,
    dice: Vec<f64>,
}

#[derive(Serialize)]
struct Case3d {
    case: String,
    start: &'static str,
    central_slice: usize,
    slices_segmented: usize,
    dice: f64,
}

/// The propagation settings a model's 3D cases ran with.
#[derive(Serialize)]
struct Propagation3d {
    projection: String,
    iou_threshold: f64,
    box_extension: f64,
    note: &'static str,
}

impl ModelResult<'_> {
    fn summary(&self, iterations: usize) -> ModelSummary {
        let (rows, rows_3d) = (&self.rows, &self.rows_3d);
        ModelSummary {
            label: self.model.label.clone(),
            model: self.model.path.display().to_string(),
            backend: self.engine,
            mean_dice_2d: MeanDice2d {
                bbox: mean_per_iteration(rows, "box", iterations),
                point: mean_per_iteration(rows, "point", iterations),
            },
            mean_dice_3d: MeanDice3d {
                bbox: mean_3d(rows_3d, "box"),
                point: mean_3d(rows_3d, "point"),
            },
            per_case_2d: rows
                .iter()
                .map(|r| Case2d {
                    case: r.case.clone(),
                    start: r.start,
                    dice: r.dice.clone(),
                })
                .collect(),
            per_case_3d: rows_3d
                .iter()
                .map(|r| Case3d {
                    case: r.case.clone(),
                    start: r.start,
                    central_slice: r.central_slice,
                    slices_segmented: r.slices_segmented,
                    dice: r.dice,
                })
                .collect(),
            propagation_3d: Propagation3d {
                projection: self.config.projection.to_string(),
                iou_threshold: self.config.iou_threshold,
                box_extension: self.config.box_extension,
                note: "fixed for every volume (the reference reports the best of a per-volume grid search)",
            },
        }
    }

    /// Lines of `results.csv` (2D) and `results_3d.csv`.
    fn csv_lines(&self, csv_2d: &mut String, csv_3d: &mut String) {
        let label = &self.model.label;
        for row in &self.rows {
            for (i, d) in row.dice.iter().enumerate() {
                csv_2d.push_str(&format!("{label},{},{},{i},{d}\n", row.case, row.start));
            }
        }
        for row in &self.rows_3d {
            csv_3d.push_str(&format!(
                "{label},{},{},{},{},{}\n",
                row.case, row.start, row.central_slice, row.slices_segmented, row.dice
            ));
        }
    }
}

fn evaluate_model<'m>(
    args: &InteractiveArgs,
    cases: &Cases,
    model: &'m Model,
    cache: &Path,
) -> Result<ModelResult<'m>, Failure> {
    let config = args.projection.config(&model.bundle)?;
    let (rows, engine) = evaluate_2d(args, cases, model)?;
    let rows_3d = if args.no_3d {
        Vec::new()
    } else {
        evaluate_3d(args, cases, model, &config, cache)?
    };
    Ok(ModelResult {
        model,
        engine,
        rows,
        rows_3d,
        config,
    })
}

fn interactive(args: InteractiveArgs) -> Result<(), Failure> {
    let cases = Cases::read(&args.data)?;
    let models = args
        .model
        .iter()
        .map(|m| Model::open(m))
        .collect::<Result<Vec<_>, _>>()?;
    let cache = tempfile::Builder::new()
        .prefix("medico-eval-embeddings-")
        .tempdir()
        .context("cannot create a temporary embedding cache")
        .map_err(Failure::input)?;
    let iterations = args.rounds + 1;
    let mut results = Vec::new();
    for model in &models {
        let result = evaluate_model(&args, &cases, model, cache.path())?;
        print_model(model, result.engine, &result.rows, &result.rows_3d, iterations);
        results.push(result);
    }
    if let Some(out) = &args.out {
        write_results(out, &args, &cases, &results)?;
    }
    Ok(())
}

/// `results.csv`, `results_3d.csv`, `results.json` and `dice.png` in `out`.
fn write_results(
    out: &Path,
    args: &InteractiveArgs,
    cases: &Cases,
    results: &[ModelResult<'_>],
) -> Result<(), Failure> {
    let iterations = args.rounds + 1;
    let mut csv_2d = String::from("model,case,start,iteration,dice\n");
    let mut csv_3d = String::from("model,case,start,central_slice,slices_segmented,dice\n");
    let mut curves = Vec::new();
    for result in results {
        result.csv_lines(&mut csv_2d, &mut csv_3d);
        if !result.rows.is_empty() {
            for (start, _) in STARTS {
                curves.push(DiceCurve {
                    model: result.model.label.clone(),
                    start,
                    dice: mean_per_iteration(&result.rows, start, iterations),
                });
            }
        }
    }
    let summary = Summary {
        cases: cases.path.display().to_string(),
        rounds: args.rounds,
        use_mask: args.use_mask,
        seed: args.seed,
        within_object_extent: args.within_object_extent,
        models: results.iter().map(|r| r.summary(iterations)).collect(),
    };
    std::fs::create_dir_all(out)
        .with_context(|| format!("{}: cannot create", out.display()))
        .map_err(Failure::input)?;
    write_atomically(&out.join("results.csv"), csv_2d.as_bytes())?;
    if !args.no_3d {
        write_atomically(&out.join("results_3d.csv"), csv_3d.as_bytes())?;
    }
    let json = serde_json::to_string_pretty(&summary).expect("a summary serializes") + "\n";
    write_atomically(&out.join("results.json"), json.as_bytes())?;
    if !curves.is_empty() {
        let title = format!("Simulated interactive segmentation, {} 2D cases", cases.cases_2d.len());
        write_dice_plot(&out.join("dice.png"), &title, &curves).map_err(Failure::input)?;
    }
    Ok(())
}

fn print_model(model: &Model, engine: &str, rows: &[Row2d], rows_3d: &[Row3d], iterations: usize) {
    println!("{} ({}, {engine}):", model.label, model.path.display());
    if !rows.is_empty() {
        let header: Vec<String> = (0..iterations).map(|i| format!("{:>6}", format!("it{i}"))).collect();
        println!("  2D mean Dice over {} cases", rows.len() / STARTS.len());
        println!("  start  {}", header.join(" "));
        for (start, _) in STARTS {
            let values: Vec<String> = mean_per_iteration(rows, start, iterations)
                .iter()
                .map(|d| format!("{d:>6.3}"))
                .collect();
            println!("  {start:<6} {}", values.join(" "));
        }
    }
    for (start, _) in STARTS {
        if let Some(mean) = mean_3d(rows_3d, start) {
            let count = rows_3d.iter().filter(|r| r.start == start).count();
            println!("  3D {start} start, propagated: mean Dice {mean:.3} over {count} objects");
        }
    }
}

/// Writes an output file atomically.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    medico_io::atomic_output::write_atomically(path, bytes).map_err(runtime_failure)
}
