//! `medico-cli eval interactive`: simulated interactive segmentation of one or several models on the cases of
//! a `cases.json` — 2D cases with a box or point start and correction rounds (Dice per iteration), 3D cases with
//! a central-slice start and propagation with fixed parameters (volume Dice) — as a table, CSV, JSON and a PNG
//! plot of Dice against iteration.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use medico_export::Bundle;
use medico_runtime::image2d::read_image;
use medico_runtime::intensity::Intensity;
use medico_runtime::interactive_eval::{evaluate_class, EvalOptions, Start};
use medico_runtime::mask_prompts::Projection;
use medico_runtime::nifti_io::read_nifti;
use medico_runtime::predictor::{BackendChoice, Predictor};
use medico_runtime::propagation::PropagationConfig;
use medico_runtime::volume_eval::{evaluate_volume_object, VolumePrompt};
use medico_runtime::volume_session::VolumeSession;
use serde_json::{json, Value};

use crate::dice_plot::{write_dice_plot, DiceCurve};
use crate::segment_cmd::{bundle_intensity, default_threads, runtime_failure};
use crate::Failure;

#[derive(Subcommand)]
pub enum EvalCommand {
    /// Simulated iterative prompting: box or point start, then correction clicks; Dice per iteration.
    Interactive(InteractiveArgs),
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
    /// 3D cases: prompts derived from each slice's mask for the next (fixed for every volume; the reference
    /// grid-searches it per volume).
    #[arg(long, default_value = "single_point")]
    projection: Projection,
    /// 3D cases: stop when the IoU between consecutive slices' masks falls below this.
    #[arg(long, default_value_t = 0.5)]
    iou_threshold: f64,
    /// 3D cases: box growth, a fraction of the side (< 1) or pixels (>= 1).
    #[arg(long, default_value_t = 0.05)]
    box_extension: f64,
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
struct Model {
    label: String,
    path: PathBuf,
    bundle: Bundle,
    intensity: Intensity,
}

impl Model {
    /// `LABEL=DIR` or `DIR` (labelled by the folder's name).
    fn open(spec: &str) -> Result<Self, Failure> {
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
                .map_err(|e| Failure::input(anyhow!("case {id}: {e}")))?;
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

fn interactive(args: InteractiveArgs) -> Result<(), Failure> {
    let cases = Cases::read(&args.data)?;
    let models = args
        .model
        .iter()
        .map(|m| Model::open(m))
        .collect::<Result<Vec<_>, _>>()?;
    if !(0.0..=1.0).contains(&args.iou_threshold) {
        return Err(Failure::usage(anyhow!("--iou-threshold must lie in 0..1")));
    }
    if !(args.box_extension >= 0.0 && args.box_extension.is_finite()) {
        return Err(Failure::usage(anyhow!("--box-extension must be a non-negative number")));
    }
    let config = PropagationConfig {
        projection: args.projection,
        iou_threshold: args.iou_threshold,
        box_extension: args.box_extension,
        lower_limit: None,
        upper_limit: None,
    };
    let cache = tempfile::Builder::new()
        .prefix("medico-eval-embeddings-")
        .tempdir()
        .context("cannot create a temporary embedding cache")
        .map_err(Failure::input)?;
    let iterations = args.rounds + 1;
    let mut summaries = Vec::new();
    let mut curves = Vec::new();
    let mut csv_2d = String::from("model,case,start,iteration,dice\n");
    let mut csv_3d = String::from("model,case,start,central_slice,slices_segmented,dice\n");
    for model in &models {
        let (rows, engine) = evaluate_2d(&args, &cases, model)?;
        let rows_3d = if args.no_3d {
            Vec::new()
        } else {
            evaluate_3d(&args, &cases, model, &config, cache.path())?
        };
        print_model(model, engine, &rows, &rows_3d, iterations);
        for row in &rows {
            for (i, d) in row.dice.iter().enumerate() {
                csv_2d.push_str(&format!("{},{},{},{i},{d}\n", model.label, row.case, row.start));
            }
        }
        for row in &rows_3d {
            csv_3d.push_str(&format!(
                "{},{},{},{},{},{}\n",
                model.label, row.case, row.start, row.central_slice, row.slices_segmented, row.dice
            ));
        }
        if !rows.is_empty() {
            for (start, _) in STARTS {
                curves.push(DiceCurve {
                    model: model.label.clone(),
                    start,
                    dice: mean_per_iteration(&rows, start, iterations),
                });
            }
        }
        summaries.push(json!({
            "label": model.label,
            "model": model.path.display().to_string(),
            "backend": engine,
            "mean_dice_2d": {
                "box": mean_per_iteration(&rows, "box", iterations),
                "point": mean_per_iteration(&rows, "point", iterations),
            },
            "mean_dice_3d": {"box": mean_3d(&rows_3d, "box"), "point": mean_3d(&rows_3d, "point")},
            "per_case_2d": rows.iter().map(|r| json!({"case": r.case, "start": r.start, "dice": r.dice})).collect::<Vec<_>>(),
            "per_case_3d": rows_3d.iter().map(|r| json!({
                "case": r.case, "start": r.start, "central_slice": r.central_slice,
                "slices_segmented": r.slices_segmented, "dice": r.dice,
            })).collect::<Vec<_>>(),
        }));
    }
    let summary = json!({
        "cases": cases.path.display().to_string(),
        "rounds": args.rounds,
        "use_mask": args.use_mask,
        "seed": args.seed,
        "propagation_3d": {
            "projection": config.projection.to_string(),
            "iou_threshold": config.iou_threshold,
            "box_extension": config.box_extension,
            "within_object_extent": args.within_object_extent,
            "note": "fixed for every volume (the reference reports the best of a per-volume grid search)",
        },
        "models": summaries,
    });
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out)
            .with_context(|| format!("{}: cannot create", out.display()))
            .map_err(Failure::input)?;
        write_atomically(&out.join("results.csv"), csv_2d.as_bytes())?;
        if !args.no_3d {
            write_atomically(&out.join("results_3d.csv"), csv_3d.as_bytes())?;
        }
        write_atomically(&out.join("results.json"), format!("{summary:#}\n").as_bytes())?;
        if !curves.is_empty() {
            let title = format!("Simulated interactive segmentation, {} 2D cases", cases.cases_2d.len());
            write_dice_plot(&out.join("dice.png"), &title, &curves).map_err(Failure::input)?;
        }
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
    medico_runtime::atomic_output::write_atomically(path, bytes).map_err(runtime_failure)
}
