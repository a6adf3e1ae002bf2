//! `medico-cli eval interactive`: simulated interactive segmentation on the 2D cases of a `cases.json`
//! (box start and point start, then correction rounds), Dice per iteration as a table, CSV and JSON.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use medico_export::Bundle;
use medico_runtime::image2d::read_image;
use medico_runtime::interactive_eval::{evaluate_class, EvalOptions, Start};
use medico_runtime::predictor::{BackendChoice, Predictor};
use serde_json::json;

use crate::segment_cmd::{default_threads, runtime_failure};
use crate::Failure;

#[derive(Subcommand)]
pub enum EvalCommand {
    /// Simulated iterative prompting: box or point start, then correction clicks; Dice per iteration.
    Interactive(InteractiveArgs),
}

#[derive(Args)]
pub struct InteractiveArgs {
    /// Model bundle folder.
    #[arg(long)]
    model: PathBuf,
    /// A cases.json (or the folder holding it); its `cases_2d` are evaluated.
    #[arg(long)]
    data: PathBuf,
    /// Correction rounds after the start prompt.
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Feed the previous low-res logits back as mask prompt.
    #[arg(long)]
    use_mask: bool,
    /// Seed of the simulated clicks.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Folder for results.csv and results.json.
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

fn read_mask(path: &Path) -> Result<(Vec<bool>, (usize, usize)), Failure> {
    let image = read_image(path).map_err(runtime_failure)?;
    Ok((image.gray().iter().map(|&v| v > 127.0).collect(), image.hw))
}

fn interactive(args: InteractiveArgs) -> Result<(), Failure> {
    let cases_path = if args.data.is_dir() {
        args.data.join("cases.json")
    } else {
        args.data.clone()
    };
    let root = cases_path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let text = std::fs::read_to_string(&cases_path)
        .with_context(|| format!("{}: cannot read", cases_path.display()))
        .map_err(Failure::input)?;
    let cases: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Failure::input(anyhow!("{}: not JSON: {e}", cases_path.display())))?;
    let list = cases["cases_2d"]
        .as_array()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| Failure::input(anyhow!("{}: no cases_2d", cases_path.display())))?;
    let bundle = Bundle::open(&args.model).map_err(Failure::model)?;
    let default_intensity = bundle
        .manifest
        .intensity
        .parse()
        .map_err(|e: String| Failure::model(anyhow!(e)))?;
    let mut predictor = Predictor::open(&bundle, args.backend, args.threads).map_err(runtime_failure)?;
    let options = EvalOptions {
        rounds: args.rounds,
        use_mask: args.use_mask,
        seed: args.seed,
    };
    let mut rows = Vec::new();
    for case in list {
        let field = |key: &str| {
            case[key]
                .as_str()
                .map(|s| root.join(s))
                .ok_or_else(|| Failure::input(anyhow!("{}: a case lacks '{key}'", cases_path.display())))
        };
        let id = case["id"].as_str().unwrap_or("?").to_string();
        let image = read_image(&field("image")?).map_err(runtime_failure)?;
        let (gt, hw) = read_mask(&field("mask")?)?;
        if hw != image.hw {
            return Err(Failure::input(anyhow!("case {id}: mask and image sizes differ")));
        }
        let rgb = image
            .to_rgb(None, default_intensity)
            .map_err(|e| Failure::input(anyhow!("case {id}: {e}")))?;
        predictor.set_image(&rgb.pixels, rgb.hw).map_err(runtime_failure)?;
        for (name, start) in [("box", Start::Box), ("point", Start::Point)] {
            if let Some(dice) = evaluate_class(&mut predictor, &gt, hw, start, options).map_err(runtime_failure)? {
                rows.push((id.clone(), name, dice));
            }
        }
    }
    let mean = |start: &str| -> Vec<f64> {
        let picked: Vec<&Vec<f64>> = rows.iter().filter(|(_, s, _)| *s == start).map(|(_, _, d)| d).collect();
        (0..=args.rounds)
            .map(|i| picked.iter().map(|d| d[i]).sum::<f64>() / picked.len().max(1) as f64)
            .collect()
    };
    let summary = json!({
        "model": args.model.display().to_string(),
        "cases": cases_path.display().to_string(),
        "rounds": args.rounds,
        "use_mask": args.use_mask,
        "seed": args.seed,
        "backend": predictor.engine_name(),
        "mean_dice": {"box": mean("box"), "point": mean("point")},
        "per_case": rows.iter().map(|(id, s, d)| json!({"case": id, "start": s, "dice": d})).collect::<Vec<_>>(),
    });
    let header: Vec<String> = (0..=args.rounds).map(|i| format!("{:>6}", format!("it{i}"))).collect();
    println!("mean Dice over {} cases ({}):", rows.len() / 2, predictor.engine_name());
    println!("  start  {}", header.join(" "));
    for start in ["box", "point"] {
        let values: Vec<String> = mean(start).iter().map(|d| format!("{d:>6.3}")).collect();
        println!("  {start:<6} {}", values.join(" "));
    }
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out)
            .with_context(|| format!("{}: cannot create", out.display()))
            .map_err(Failure::input)?;
        let mut csv = String::from("case,start,iteration,dice\n");
        for (id, start, dice) in &rows {
            for (i, d) in dice.iter().enumerate() {
                csv.push_str(&format!("{id},{start},{i},{d}\n"));
            }
        }
        write_atomically(&out.join("results.csv"), csv.as_bytes())?;
        write_atomically(&out.join("results.json"), format!("{summary:#}\n").as_bytes())?;
    }
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let mut temp = medico_runtime::atomic_output::temp_beside(path, ".tmp").map_err(runtime_failure)?;
    temp.as_file_mut()
        .write_all(bytes)
        .with_context(|| format!("{}: cannot write", path.display()))
        .map_err(Failure::input)?;
    medico_runtime::atomic_output::persist(temp, path).map_err(runtime_failure)
}
