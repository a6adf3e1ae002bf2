//! `medico-cli eval semantic`: Dice per class and per volume of models' semantic segmentation heads on
//! held-out volumes (each slice labelled from its embedding, compared with the reference classes on the
//! slice's own grid), and, with `--boxes`, of the same models' interactive decoders given one box per class
//! on the same slices (the tight box of the class's reference pixels: the MedicoSAM paper's comparison).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use clap::Args;
use medico_io::nifti_io::read_nifti;
use medico_io::volume::Volume;
use medico_models::clicks::tight_box;
use medico_models::prompt::BoxPrompt;
use medico_runtime::prediction::predictor::BackendChoice;
use medico_runtime::volume::semantic::SemanticSegmenter;
use medico_runtime::volume::session::VolumeSession;
use serde::{Deserialize, Serialize};

use crate::common::{default_threads, runtime_failure};
use crate::eval_cmd::Model;
use crate::Failure;

#[derive(Args)]
pub struct SemanticArgs {
    /// Model with a semantic head (bundle folder or installed name), optionally LABEL=MODEL; repeatable.
    #[arg(long, required = true)]
    model: Vec<String>,
    /// The volumes: a JSON with `classes` (names after background) and `volumes` (each `image`, `labels`,
    /// `axis`, `classes`: label values per class, `slice_step`) — a semantic training configuration works
    /// too: its `val` volumes are evaluated.
    #[arg(long)]
    data: PathBuf,
    /// Also prompt each model's interactive decoder with one box per class present on each slice.
    #[arg(long)]
    boxes: bool,
    /// Folder for results_semantic.csv and results_semantic.json.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Embedding cache folder (default: medico's, shared with `segment`).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Inference engine.
    #[arg(long, default_value = "auto")]
    backend: BackendChoice,
    /// Threads for inference.
    #[arg(long, default_value_t = default_threads())]
    threads: usize,
}

/// The evaluation data (paths relative to its file).
#[derive(Deserialize)]
struct SemanticData {
    classes: Vec<String>,
    #[serde(alias = "val")]
    volumes: Vec<DataVolume>,
}

#[derive(Deserialize, Clone)]
struct DataVolume {
    image: PathBuf,
    labels: PathBuf,
    #[serde(default = "default_axis")]
    axis: usize,
    #[serde(default)]
    classes: Option<Vec<Vec<i64>>>,
    #[serde(default = "default_step")]
    slice_step: usize,
}

fn default_axis() -> usize {
    2
}

fn default_step() -> usize {
    1
}

/// One result row: a model, a method, a volume, a class.
#[derive(Serialize)]
struct Row {
    model: String,
    method: &'static str,
    volume: String,
    axis: usize,
    class: String,
    dice: Option<f64>,
    slices: usize,
}

/// Overlap counts per class (index 0 unused): pixels both give the class, pixels either gives it.
type Overlaps = Vec<(u64, u64)>;

fn add_overlaps(overlaps: &mut Overlaps, predicted: &[u8], reference: &[u8]) {
    for (&p, &r) in predicted.iter().zip(reference) {
        if p == r && p != 0 {
            overlaps[p as usize].0 += 1;
        }
        if p != 0 {
            overlaps[p as usize].1 += 1;
        }
        if r != 0 {
            overlaps[r as usize].1 += 1;
        }
    }
}

fn dice((both, sizes): (u64, u64)) -> Option<f64> {
    (sizes > 0).then(|| 2.0 * both as f64 / sizes as f64)
}

pub fn run(args: SemanticArgs) -> Result<(), Failure> {
    let text = std::fs::read_to_string(&args.data)
        .with_context(|| format!("{}: cannot read", args.data.display()))
        .map_err(Failure::input)?;
    let data: SemanticData = serde_json::from_str(&text)
        .map_err(|e| Failure::input(anyhow!("{}: not semantic evaluation data: {e}", args.data.display())))?;
    let root = args.data.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut rows = Vec::new();
    for spec in &args.model {
        let model = Model::open(spec)?;
        let mut segmenter =
            SemanticSegmenter::open(&model.bundle, args.backend, args.threads).map_err(Failure::model)?;
        if segmenter.head().classes.len() != data.classes.len() {
            return Err(Failure::usage(anyhow!(
                "{}: the model has {} classes ({}), the data {} ({})",
                model.path.display(),
                segmenter.head().classes.len(),
                segmenter.head().classes.join(", "),
                data.classes.len(),
                data.classes.join(", ")
            )));
        }
        for entry in &data.volumes {
            rows.extend(evaluate_volume(&args, &model, &mut segmenter, &data, entry, &root)?);
        }
    }
    print_table(&rows, &data.classes);
    if let Some(out) = &args.out {
        write_results(out, &rows)?;
    }
    Ok(())
}

/// The rows of one model on one volume entry.
fn evaluate_volume(
    args: &SemanticArgs,
    model: &Model,
    segmenter: &mut SemanticSegmenter,
    data: &SemanticData,
    entry: &DataVolume,
    root: &Path,
) -> Result<Vec<Row>, Failure> {
    let (image_path, label_path) = (root.join(&entry.image), root.join(&entry.labels));
    let image = read_nifti(&image_path, None).map_err(runtime_failure)?;
    let labels = read_nifti(&label_path, None).map_err(runtime_failure)?;
    if image.shape() != labels.shape() || entry.axis > 2 || entry.slice_step == 0 {
        return Err(Failure::input(anyhow!(
            "{}: grid {:?} vs image {:?}, axis {}, slice_step {}: need the image's grid, axis 0-2, step >= 1",
            label_path.display(),
            labels.shape(),
            image.shape(),
            entry.axis,
            entry.slice_step
        )));
    }
    let class_of = class_lookup(entry, data.classes.len());
    let channels = data.classes.len() + 1;
    let cache = args
        .cache_dir
        .clone()
        .unwrap_or_else(|| medico_bundle::cache::default_cache_dir().join("embeddings"));
    let axis = entry.axis;
    let hw = image.slice_hw(axis);
    let mut session = VolumeSession::open(
        image,
        axis,
        model.intensity,
        &model.bundle,
        args.backend,
        args.threads,
        Some(&cache),
    )
    .map_err(runtime_failure)?;
    let (mut semantic, mut boxed) = (vec![(0, 0); channels], vec![(0, 0); channels]);
    let mut slices = 0;
    for index in (0..session.slices()).step_by(entry.slice_step) {
        let reference = reference_classes(&labels, axis, index, &class_of);
        if reference.iter().all(|&c| c == 0) {
            continue;
        }
        slices += 1;
        session.load_slice(index).map_err(runtime_failure)?;
        let embedding = session.embedding().expect("a loaded slice has an embedding");
        let predicted = segmenter.label_slice(embedding, hw).map_err(runtime_failure)?;
        add_overlaps(&mut semantic, predicted.as_slice().expect("contiguous"), &reference);
        if args.boxes {
            let predicted = box_per_class(&mut session, index, &reference, hw, channels)?;
            add_overlaps(&mut boxed, &predicted, &reference);
        }
    }
    let volume = image_path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut rows = Vec::new();
    let methods: &[(&'static str, &Overlaps)] = if args.boxes {
        &[("semantic", &semantic), ("box per class", &boxed)]
    } else {
        &[("semantic", &semantic)]
    };
    for &(method, overlaps) in methods {
        for (k, name) in data.classes.iter().enumerate() {
            rows.push(Row {
                model: model.label.clone(),
                method,
                volume: volume.clone(),
                axis,
                class: name.clone(),
                dice: dice(overlaps[k + 1]),
                slices,
            });
        }
    }
    Ok(rows)
}

/// Label value → class (1-based) of a volume entry: its lists, or value `k` for class `k`.
fn class_lookup(entry: &DataVolume, count: usize) -> HashMap<i64, u8> {
    let lists = entry
        .classes
        .clone()
        .unwrap_or_else(|| (1..=count as i64).map(|k| vec![k]).collect());
    let mut lookup = HashMap::new();
    for (k, values) in lists.iter().enumerate() {
        for &v in values {
            lookup.insert(v, k as u8 + 1);
        }
    }
    lookup
}

/// The reference class of every pixel of slice `index` (`[h, w]` row-major).
fn reference_classes(labels: &Volume, axis: usize, index: usize, class_of: &HashMap<i64, u8>) -> Vec<u8> {
    let (values, _) = labels.slice(axis, index);
    values
        .iter()
        .map(|&v| class_of.get(&(v.round() as i64)).copied().unwrap_or(0))
        .collect()
}

/// The label map the interactive decoder gives with one box per class present (the tight box of its
/// reference pixels); where masks overlap, the one with the higher predicted IoU wins.
fn box_per_class(
    session: &mut VolumeSession,
    index: usize,
    reference: &[u8],
    (h, w): (usize, usize),
    channels: usize,
) -> Result<Vec<u8>, Failure> {
    let mut labels = vec![0u8; h * w];
    let mut scores = vec![f32::NEG_INFINITY; h * w];
    for class in 1..channels as u8 {
        let mask: Vec<bool> = reference.iter().map(|&c| c == class).collect();
        let Some([x0, y0, x1, y1]) = tight_box(&mask, w) else {
            continue;
        };
        let bbox = BoxPrompt {
            x0: x0 as f64,
            y0: y0 as f64,
            x1: x1 as f64,
            y1: y1 as f64,
        };
        let prediction = session
            .segment_slice(index, &[], Some(&bbox), None, false)
            .map_err(runtime_failure)?;
        let best = prediction.best();
        let score = prediction.iou[best];
        for (i, &logit) in prediction.logits[best].iter().enumerate() {
            if logit > 0.0 && score > scores[i] {
                labels[i] = class;
                scores[i] = score;
            }
        }
    }
    Ok(labels)
}

fn print_table(rows: &[Row], classes: &[String]) {
    println!(
        "{:<18} {:<14} {:<28} {:>4} {:<16} {:>6} {:>6}",
        "model", "method", "volume", "axis", "class", "dice", "slices"
    );
    for r in rows {
        let dice = r.dice.map_or("-".into(), |d| format!("{d:.3}"));
        println!(
            "{:<20} {:<14} {:<28} {:>4} {:<16} {:>6} {:>6}",
            r.model, r.method, r.volume, r.axis, r.class, dice, r.slices
        );
    }
    let mut groups: Vec<(&str, &str)> = Vec::new();
    for group in rows.iter().map(|r| (r.model.as_str(), r.method)) {
        if !groups.contains(&group) {
            groups.push(group);
        }
    }
    for (model, method) in groups {
        let means: Vec<String> = classes
            .iter()
            .map(|class| {
                let values: Vec<f64> = rows
                    .iter()
                    .filter(|r| r.model == model && r.method == method && &r.class == class)
                    .filter_map(|r| r.dice)
                    .collect();
                let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
                format!("{class} {mean:.3}")
            })
            .collect();
        println!("mean over volumes: {model}, {method}: {}", means.join(", "));
    }
}

fn write_results(out: &Path, rows: &[Row]) -> Result<(), Failure> {
    std::fs::create_dir_all(out)
        .with_context(|| format!("{}: cannot create", out.display()))
        .map_err(Failure::input)?;
    let mut csv = String::from("model,method,volume,axis,class,dice,slices\n");
    for r in rows {
        let dice = r.dice.map_or(String::new(), |d| format!("{d:.4}"));
        csv.push_str(&format!(
            "{},{},{},{},{},{dice},{}\n",
            r.model, r.method, r.volume, r.axis, r.class, r.slices
        ));
    }
    let json = serde_json::to_string_pretty(rows).expect("rows serialize");
    for (name, text) in [("results_semantic.csv", csv), ("results_semantic.json", json)] {
        let path = out.join(name);
        medico_io::atomic_output::write_atomically(&path, text.as_bytes()).map_err(runtime_failure)?;
    }
    Ok(())
}
