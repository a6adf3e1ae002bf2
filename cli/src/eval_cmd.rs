//! `medico-cli eval interactive`: simulated interactive segmentation of one or several models on the cases of
//! a `cases.json` — 2D cases with a box or point start and correction rounds (Dice per iteration), 3D cases with
//! a central-slice start and propagation with fixed parameters (volume Dice) — as a table, CSV, JSON and a PNG
//! plot of Dice against iteration.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use medico_bundle::{Bundle, MaskDefaults, PropagationDefaults};
use medico_io::image2d::read_image;
use medico_io::input::{open_scan, Scan};
use medico_io::intensity::Intensity;
use medico_io::label_source::{read_labels_for, roi_number};
use medico_io::volume::Volume;
use medico_runtime::evaluation::interactive::{evaluate_class, EvalOptions, Start};
use medico_runtime::evaluation::volume::{trace_volume_object, VolumePrompt, VolumeScore, VolumeTrace};
use medico_runtime::prediction::interaction::{Choice, Composition};
use medico_runtime::prediction::predictor::{BackendChoice, Predictor};
use medico_runtime::volume::propagation::PropagationConfig;
use medico_runtime::volume::session::VolumeSession;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::common::{bundle_intensity, default_threads, runtime_failure, ProjectionArgs};
use crate::dice_plot::{write_dice_plot, DiceCurve};
use crate::Failure;

#[derive(Subcommand)]
pub enum EvalCommand {
    /// Simulated iterative prompting: box or point start, then correction clicks; Dice per iteration.
    Interactive(InteractiveArgs),
    /// Chooses a propagation stop rule on the walks `eval interactive --out DIR` traced (DIR/traces_3d.json).
    StopRule(crate::eval_stop_rule::StopRuleArgs),
    /// Semantic segmentation heads on held-out volumes: Dice per class and per volume (with `--boxes`, beside
    /// the same models prompted with one box per class).
    Semantic(crate::eval_semantic::SemanticArgs),
}

/// Overrides of the correction-round composition, to measure others than the shipped one.
#[derive(Args)]
pub struct CompositionArgs {
    /// Keep the start box in the correction rounds.
    #[arg(long, value_name = "BOOL")]
    keep_box: Option<bool>,
    /// Feed the previous round's low-res logits back as the mask prompt.
    #[arg(long, value_name = "BOOL")]
    feed_mask: Option<bool>,
    /// Multimask output in the correction rounds too.
    #[arg(long, value_name = "BOOL")]
    multimask_corrections: Option<bool>,
    /// How one of several outputs is chosen: iou (predicted IoU) or stability.
    #[arg(long, value_name = "RULE")]
    choose: Option<Choice>,
    /// Among several outputs keep those agreeing with the most clicks first.
    #[arg(long, value_name = "BOOL")]
    respect_clicks: Option<bool>,
    /// A correction removes only the regions of the mask it clicked.
    #[arg(long, value_name = "BOOL")]
    local_removals: Option<bool>,
    /// Fill the holes of every mask the model returns (2D rounds and 3D walks alike).
    #[arg(long, value_name = "BOOL")]
    fill_holes: Option<bool>,
    /// Close every mask with a disc of this radius (model input pixels) before its holes are filled; 0: none.
    #[arg(long, value_name = "PIXELS", value_parser = close_radius)]
    close_radius: Option<f32>,
}

/// A closing radius: 0 (none) up to the largest a bundle may declare.
fn close_radius(text: &str) -> Result<f32, String> {
    let radius: f32 = text.parse().map_err(|_| format!("'{text}' is not a number"))?;
    if (0.0..=medico_bundle::MAX_CLOSE_RADIUS).contains(&radius) {
        Ok(radius)
    } else {
        Err(format!("must be within [0, {}]", medico_bundle::MAX_CLOSE_RADIUS))
    }
}

impl CompositionArgs {
    /// `model` with its declared treatment of masks overridden as asked.
    fn with_masks(&self, mut model: Model) -> Model {
        if self.fill_holes.is_none() && self.close_radius.is_none() {
            return model;
        }
        let mut masks: MaskDefaults = model.bundle.manifest.masks.take().unwrap_or_default();
        if let Some(fill_holes) = self.fill_holes {
            masks.fill_holes = fill_holes;
        }
        if let Some(radius) = self.close_radius {
            masks.close_radius = (radius > 0.0).then_some(radius);
        }
        model.bundle.manifest.masks = Some(masks);
        model
    }

    /// A model's own composition with the given overrides.
    fn resolve(&self, shipped: Composition) -> Composition {
        Composition {
            keep_box: self.keep_box.unwrap_or(shipped.keep_box),
            feed_mask: self.feed_mask.unwrap_or(shipped.feed_mask),
            multimask_corrections: self.multimask_corrections.unwrap_or(shipped.multimask_corrections),
            choice: self.choose.unwrap_or(shipped.choice),
            respect_clicks: self.respect_clicks.unwrap_or(shipped.respect_clicks),
            local_removals: self.local_removals.unwrap_or(shipped.local_removals),
        }
    }
}

#[derive(Args)]
pub struct InteractiveArgs {
    /// Model (bundle folder, `medico-tiny` or an installed model's name), optionally labelled as
    /// LABEL=MODEL; repeat to compare models side by side.
    #[arg(long, required = true)]
    model: Vec<String>,
    /// A cases.json (or the folder holding it); its `cases_2d` and `cases_3d` are evaluated. Repeat to
    /// evaluate several sets in one run (e.g. shared/data and shared/data/body/cases_body.json).
    #[arg(long, required = true)]
    data: Vec<PathBuf>,
    /// Correction rounds after the start prompt (2D cases).
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// How correction rounds are composed (2D cases); each model's shipped composition unless overridden.
    #[command(flatten)]
    composition: CompositionArgs,
    /// Seed of the simulated clicks.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Skip the 3D cases (they encode every slice the propagation reaches).
    #[arg(long)]
    no_3d: bool,
    /// 3D cases: how propagation derives prompts and stops (each model's own default unless given). Every
    /// object is reported twice: as a user meets it (no extent: the stop rule ends the walk) and with the
    /// walk kept within the object's extent, as a 3D box prompt gives it.
    #[command(flatten)]
    projection: ProjectionArgs,
    /// 3D cases: keep slice embeddings in this folder between runs (default: a temporary folder, removed).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Folder for results.csv, results_3d.csv, results.json, traces_3d.json and dice.png.
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
        EvalCommand::StopRule(args) => crate::eval_stop_rule::run(args),
    }
}

/// One set of evaluated cases and where their paths are relative to.
struct Cases {
    path: PathBuf,
    /// Its `set` field, else the file's name: how its cases are grouped in the results.
    name: String,
    root: PathBuf,
    cases_2d: Vec<Value>,
    cases_3d: Vec<Value>,
}

/// Every set given.
fn read_case_sets(paths: &[PathBuf]) -> Result<Vec<Cases>, Failure> {
    paths.iter().map(|p| Cases::read(p)).collect()
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
        let name = json["set"]
            .as_str()
            .map(str::to_string)
            .or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "cases".into());
        Ok(Self {
            path,
            name,
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
    /// The case's set and modality (e.g. "public-body CT"): results are reported per group too.
    group: String,
    start: &'static str,
    dice: Vec<f64>,
}

/// One 3D case's traced walk and its volume Dice as a user meets it (free) and within the object's extent.
struct Row3d {
    case: String,
    modality: String,
    start: &'static str,
    trace: VolumeTrace,
    free: VolumeScore,
    extent: VolumeScore,
}

const STARTS: [(&str, Start); 2] = [("box", Start::Box), ("point", Start::Point)];

fn read_mask(path: &Path) -> Result<(Vec<bool>, (usize, usize)), Failure> {
    let image = read_image(path).map_err(runtime_failure)?;
    Ok((image.gray().iter().map(|&v| v > 127.0).collect(), image.hw))
}

/// The 2D rows of `model`, the engine that ran it and the composition its rounds had.
fn evaluate_2d(
    args: &InteractiveArgs,
    sets: &[Cases],
    model: &Model,
) -> Result<(Vec<Row2d>, &'static str, Composition), Failure> {
    let mut predictor = Predictor::open(&model.bundle, args.backend, args.threads).map_err(runtime_failure)?;
    let options = EvalOptions {
        rounds: args.rounds,
        composition: args.composition.resolve(predictor.composition()),
        seed: args.seed,
    };
    let mut rows = Vec::new();
    let mut source_modalities = HashMap::new();
    for (cases, case) in sets.iter().flat_map(|set| set.cases_2d.iter().map(move |c| (set, c))) {
        let id = case["id"].as_str().unwrap_or("?").to_string();
        let Some(Case2dInput {
            rgb,
            truth: gt,
            hw,
            modality,
        }) = case_2d_input(cases, case, model, &mut source_modalities)?
        else {
            continue;
        };
        let group = format!("{} {modality}", cases.name);
        predictor.set_image(&rgb.pixels, rgb.hw).map_err(runtime_failure)?;
        for (start, how) in STARTS {
            if let Some(dice) = evaluate_class(&mut predictor, &gt, hw, how, options).map_err(runtime_failure)? {
                rows.push(Row2d {
                    case: id.clone(),
                    group: group.clone(),
                    start,
                    dice,
                });
            }
        }
    }
    Ok((rows, predictor.engine_name(), options.composition))
}

/// A 2D case ready for the predictor: the RGB image the model sees, the truth mask and their size.
struct Case2dInput {
    rgb: medico_io::image2d::RgbImage,
    truth: Vec<bool>,
    hw: (usize, usize),
    /// Its `modality` field, else CT or MR as its volume's values say (a PNG/TIFF case's `from_volume`), else
    /// "image".
    modality: String,
}

/// A 2D case's RGB image and truth: a PNG/TIFF pair (`image`, `mask`), or a slice of a volume (`image`,
/// `labels`, `label`, `axis`, `central_slice`, as the body cases give them). `None` for a volume case
/// without its label on that slice. `source_modalities` keeps the modality of the volumes PNG/TIFF cases were
/// cut from, each read once.
fn case_2d_input(
    cases: &Cases,
    case: &Value,
    model: &Model,
    source_modalities: &mut HashMap<PathBuf, String>,
) -> Result<Option<Case2dInput>, Failure> {
    let id = case["id"].as_str().unwrap_or("?");
    if case.get("mask").is_some() {
        let image = read_image(&cases.file(case, "image")?).map_err(runtime_failure)?;
        let (gt, hw) = read_mask(&cases.file(case, "mask")?)?;
        if hw != image.hw {
            return Err(Failure::input(anyhow!("case {id}: mask and image sizes differ")));
        }
        let rgb = image
            .to_rgb(None, model.intensity)
            .map_err(|e| Failure::input(anyhow!("case {id}: {e}")))?;
        let modality = image_case_modality(cases, case, source_modalities)?;
        return Ok(Some(Case2dInput {
            rgb,
            truth: gt,
            hw,
            modality,
        }));
    }
    let object = VolumeCase::read(cases, case)?;
    let (image, labels) = object.volumes()?;
    let Some(index) = object.slice else {
        return Err(Failure::input(anyhow!(
            "case {id}: a 2D case of a volume needs 'central_slice'"
        )));
    };
    if index >= image.slices(object.axis) {
        return Err(Failure::input(anyhow!(
            "case {id}: central_slice {index} is outside the volume"
        )));
    }
    let (values, hw) = image.slice(object.axis, index);
    let gt: Vec<bool> = labels
        .slice(object.axis, index)
        .0
        .iter()
        .map(|&v| v == object.label)
        .collect();
    let rgb = medico_io::image2d::RgbImage::from_gray(&values, hw, model.intensity);
    let modality = modality(case, &image);
    Ok(gt.contains(&true).then_some(Case2dInput {
        rgb,
        truth: gt,
        hw,
        modality,
    }))
}

/// The modality of a PNG/TIFF case: its `modality` field, else that of the volume it was cut from
/// (`from_volume.image`, read once and remembered in `known`), else "image".
fn image_case_modality(cases: &Cases, case: &Value, known: &mut HashMap<PathBuf, String>) -> Result<String, Failure> {
    if let Some(m) = case["modality"].as_str() {
        return Ok(m.to_string());
    }
    let Some(source) = case["from_volume"]["image"].as_str() else {
        return Ok("image".into());
    };
    let path = cases.root.join(source);
    if let Some(m) = known.get(&path) {
        return Ok(m.clone());
    }
    let found = match open_scan(&path, None).map_err(runtime_failure)? {
        Scan::Volume(volume) => modality(case, &volume),
        Scan::Image(_) => "image".into(),
    };
    known.insert(path, found.clone());
    Ok(found)
}

/// A 3D case (or a 2D case cut from a volume): its files, label, axis and prompted slice.
struct VolumeCase {
    id: String,
    image: PathBuf,
    labels: PathBuf,
    label: f32,
    axis: usize,
    slice: Option<usize>,
}

impl VolumeCase {
    fn read(cases: &Cases, case: &Value) -> Result<Self, Failure> {
        let id = case["id"].as_str().unwrap_or("?").to_string();
        let labels = cases.file(case, "labels")?;
        let label = match (case["label"].as_f64(), case["roi"].as_str()) {
            (Some(label), _) => label,
            // An RT Structure Set's ROI by name.
            (None, Some(roi)) => roi_number(&labels, roi)
                .map_err(|e| Failure::input(anyhow::Error::new(e).context(format!("case {id}"))))?
                as f64,
            (None, None) => {
                return Err(Failure::input(anyhow!(
                    "case {id}: no numeric 'label' (or 'roi' naming an RT Structure Set's ROI)"
                )))
            }
        };
        let axis = case["axis"].as_u64().unwrap_or(2) as usize;
        if axis > 2 {
            return Err(Failure::input(anyhow!("case {id}: axis {axis} is not 0, 1 or 2")));
        }
        Ok(Self {
            image: cases.file(case, "image")?,
            labels,
            label: label as f32,
            axis,
            // The case's prompting slice when it names one, else the middle of the object's extent.
            slice: case["central_slice"].as_u64().map(|k| k as usize),
            id,
        })
    }

    /// The image and label volumes (NIfTI, NRRD or DICOM), the labels on the image's grid (reindexed when
    /// stored in another orientation).
    fn volumes(&self) -> Result<(Volume, Volume), Failure> {
        let open = |path: &Path| match open_scan(path, None).map_err(runtime_failure)? {
            Scan::Volume(volume) => Ok(*volume),
            Scan::Image(_) => Err(Failure::input(anyhow!(
                "case {}: {} is not a volume",
                self.id,
                path.display()
            ))),
        };
        let image = open(&self.image)?;
        let labels = read_labels_for(&self.labels, &image, &self.image)
            .map_err(|e| Failure::input(anyhow::Error::new(e).context(format!("case {}", self.id))))?;
        Ok((image, labels))
    }
}

/// The modality of a case: its `modality` field, else CT when the image holds Hounsfield-like values
/// (below -500 somewhere), else MR (every shared volume is one or the other).
fn modality(case: &Value, image: &Volume) -> String {
    if let Some(m) = case["modality"].as_str() {
        return m.to_string();
    }
    let ct = image.data.iter().any(|&v| v < -500.0);
    if ct { "CT" } else { "MR" }.to_string()
}

fn evaluate_3d(
    args: &InteractiveArgs,
    sets: &[Cases],
    model: &Model,
    config: &PropagationConfig,
    cache: &Path,
) -> Result<Vec<Row3d>, Failure> {
    let mut rows = Vec::new();
    for (cases, case) in sets.iter().flat_map(|set| set.cases_3d.iter().map(move |c| (set, c))) {
        let object = VolumeCase::read(cases, case)?;
        let (volume, labels) = object.volumes()?;
        let modality = modality(case, &volume);
        let mut session = VolumeSession::open(
            volume,
            object.axis,
            model.intensity,
            &model.bundle,
            args.backend,
            args.threads,
            Some(cache),
        )
        .map_err(runtime_failure)?;
        for (index, (start, how)) in STARTS.into_iter().enumerate() {
            let prompt = VolumePrompt {
                slice: object.slice,
                start: how,
                seed: args.seed.wrapping_add(index as u64),
            };
            let trace = trace_volume_object(&mut session, &labels, object.label, prompt, config)
                .map_err(|e| Failure::input(anyhow::Error::new(e).context(format!("case {}", object.id))))?;
            if let Some(trace) = trace {
                rows.push(Row3d {
                    case: object.id.clone(),
                    modality: modality.clone(),
                    start,
                    free: trace.score(&config.stop, false),
                    extent: trace.score(&config.stop, true),
                    trace,
                });
            }
        }
    }
    Ok(rows)
}

fn mean_per_iteration<'r>(rows: impl IntoIterator<Item = &'r Row2d>, start: &str, iterations: usize) -> Vec<f64> {
    let picked: Vec<&Row2d> = rows.into_iter().filter(|r| r.start == start).collect();
    (0..iterations)
        .map(|i| picked.iter().map(|r| r.dice[i]).sum::<f64>() / picked.len().max(1) as f64)
        .collect()
}

/// The two ways a 3D object is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extent {
    /// As a user meets it: nothing but the stop rule ends the walk.
    Free,
    /// Kept within the object's extent, as a 3D box prompt gives it.
    Given,
}

impl Extent {
    const BOTH: [Extent; 2] = [Extent::Free, Extent::Given];

    fn name(self) -> &'static str {
        match self {
            Extent::Free => "free",
            Extent::Given => "extent",
        }
    }

    fn of(self, row: &Row3d) -> &VolumeScore {
        match self {
            Extent::Free => &row.free,
            Extent::Given => &row.extent,
        }
    }
}

/// Mean 3D Dice of one start and variant, over the rows whose modality passes `keep`.
fn mean_3d(rows: &[Row3d], start: &str, extent: Extent, keep: impl Fn(&str) -> bool) -> Option<f64> {
    let picked: Vec<f64> = rows
        .iter()
        .filter(|r| r.start == start && keep(&r.modality))
        .map(|r| extent.of(r).dice)
        .collect();
    (!picked.is_empty()).then(|| picked.iter().sum::<f64>() / picked.len() as f64)
}

/// The modalities of the rows, in first-seen order.
fn modalities(rows: &[Row3d]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for row in rows {
        if !seen.contains(&row.modality) {
            seen.push(row.modality.clone());
        }
    }
    seen
}

/// One model's results.
struct ModelResult<'m> {
    model: &'m Model,
    engine: &'static str,
    /// How its correction rounds were composed.
    composition: Composition,
    rows: Vec<Row2d>,
    rows_3d: Vec<Row3d>,
    config: PropagationConfig,
}

/// `results.json`.
#[derive(Serialize)]
struct Summary {
    cases: Vec<String>,
    rounds: usize,
    seed: u64,
    models: Vec<ModelSummary>,
}

/// One model in `results.json`.
#[derive(Serialize)]
struct ModelSummary {
    label: String,
    model: String,
    backend: &'static str,
    /// How its correction rounds were composed.
    composition: String,
    /// Whether its masks' holes were filled.
    fill_holes: bool,
    mean_dice_2d: MeanDice2d,
    /// The same per group of cases (set and modality).
    mean_dice_2d_by_group: std::collections::BTreeMap<String, MeanDice2d>,
    mean_dice_3d: Vec<MeanDice3d>,
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

/// Mean 3D Dice of one group of objects (all, or one modality) and one variant.
#[derive(Serialize)]
struct MeanDice3d {
    modality: String,
    extent: &'static str,
    objects: usize,
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
    modality: String,
    start: &'static str,
    central_slice: usize,
    object_range: (usize, usize),
    dice_free: f64,
    segmented_range_free: (usize, usize),
    dice_extent: f64,
}

/// The propagation settings a model's 3D cases ran with.
#[derive(Serialize)]
struct Propagation3d {
    #[serde(flatten)]
    settings: PropagationDefaults,
    note: &'static str,
}

/// `traces_3d.json`: every model's traced walks, for `eval stop-rule`.
#[derive(Serialize, Deserialize)]
pub(crate) struct TraceFile {
    pub(crate) models: Vec<ModelTraces>,
}

/// One model's traced walks.
#[derive(Serialize, Deserialize)]
pub(crate) struct ModelTraces {
    pub(crate) label: String,
    /// The projection and stop rule the model ran with.
    pub(crate) propagation: PropagationDefaults,
    pub(crate) objects: Vec<TracedObject>,
}

/// One object's traced walk.
#[derive(Serialize, Deserialize)]
pub(crate) struct TracedObject {
    pub(crate) case: String,
    pub(crate) modality: String,
    pub(crate) start: String,
    pub(crate) trace: VolumeTrace,
}

impl ModelResult<'_> {
    fn mean_dice_3d(&self) -> Vec<MeanDice3d> {
        let rows = &self.rows_3d;
        let mut groups: Vec<Option<String>> = vec![None];
        groups.extend(modalities(rows).into_iter().map(Some));
        let mut means = Vec::new();
        for extent in Extent::BOTH {
            for group in &groups {
                let keep = |m: &str| group.as_deref().is_none_or(|g| g == m);
                means.push(MeanDice3d {
                    modality: group.clone().unwrap_or_else(|| "all".into()),
                    extent: extent.name(),
                    objects: rows.iter().filter(|r| r.start == "box" && keep(&r.modality)).count(),
                    bbox: mean_3d(rows, "box", extent, keep),
                    point: mean_3d(rows, "point", extent, keep),
                });
            }
        }
        means
    }

    fn summary(&self, iterations: usize) -> ModelSummary {
        let (rows, rows_3d) = (&self.rows, &self.rows_3d);
        ModelSummary {
            label: self.model.label.clone(),
            model: self.model.path.display().to_string(),
            backend: self.engine,
            composition: format!("{:?}", self.composition),
            fill_holes: self.fills_holes(),
            mean_dice_2d: MeanDice2d {
                bbox: mean_per_iteration(rows, "box", iterations),
                point: mean_per_iteration(rows, "point", iterations),
            },
            mean_dice_2d_by_group: groups(std::slice::from_ref(self))
                .into_iter()
                .map(|group| {
                    let picked = || rows.iter().filter(|r| r.group == group);
                    let mean = MeanDice2d {
                        bbox: mean_per_iteration(picked(), "box", iterations),
                        point: mean_per_iteration(picked(), "point", iterations),
                    };
                    (group, mean)
                })
                .collect(),
            mean_dice_3d: self.mean_dice_3d(),
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
                    modality: r.modality.clone(),
                    start: r.start,
                    central_slice: r.trace.central_slice,
                    object_range: r.trace.object_range,
                    dice_free: r.free.dice,
                    segmented_range_free: r.free.segmented_range,
                    dice_extent: r.extent.dice,
                })
                .collect(),
            propagation_3d: Propagation3d {
                settings: self.declared_propagation(),
                note: "fixed for every volume (the reference reports the best of a per-volume grid search)",
            },
        }
    }

    /// Whether the model's masks had their holes filled.
    fn fills_holes(&self) -> bool {
        self.model.bundle.manifest.masks.as_ref().is_some_and(|m| m.fill_holes)
    }

    /// The propagation the walks ran with, the bundle's walk decoder named.
    fn declared_propagation(&self) -> PropagationDefaults {
        let manifest = &self.model.bundle.manifest;
        let declared = manifest.propagation.as_ref();
        PropagationDefaults {
            decoder_blend: declared.and_then(|p| p.decoder_blend),
            decoder_overlay: declared.and_then(|p| p.decoder_overlay.clone()),
            ..self.config.declared()
        }
    }

    fn traces(&self) -> ModelTraces {
        ModelTraces {
            label: self.model.label.clone(),
            propagation: self.declared_propagation(),
            objects: self
                .rows_3d
                .iter()
                .map(|r| TracedObject {
                    case: r.case.clone(),
                    modality: r.modality.clone(),
                    start: r.start.to_string(),
                    trace: r.trace.clone(),
                })
                .collect(),
        }
    }

    /// Lines of `results.csv` (2D) and `results_3d.csv`.
    fn csv_lines(&self, csv_2d: &mut String, csv_3d: &mut String) {
        let label = &self.model.label;
        for row in &self.rows {
            for (i, d) in row.dice.iter().enumerate() {
                csv_2d.push_str(&format!("{label},{},{},{},{i},{d}\n", row.case, row.group, row.start));
            }
        }
        for row in &self.rows_3d {
            for extent in Extent::BOTH {
                let score = extent.of(row);
                let (first, last) = row.trace.object_range;
                csv_3d.push_str(&format!(
                    "{label},{},{},{},{},{},{first},{last},{},{},{},{}\n",
                    row.case,
                    row.modality,
                    row.start,
                    extent.name(),
                    row.trace.central_slice,
                    score.slices_segmented,
                    score.segmented_range.0,
                    score.segmented_range.1,
                    score.dice
                ));
            }
        }
    }
}

fn evaluate_model<'m>(
    args: &InteractiveArgs,
    sets: &[Cases],
    model: &'m Model,
    cache: &Path,
) -> Result<ModelResult<'m>, Failure> {
    let config = args.projection.config(&model.bundle)?;
    let (rows, engine, composition) = evaluate_2d(args, sets, model)?;
    let rows_3d = if args.no_3d {
        Vec::new()
    } else {
        evaluate_3d(args, sets, model, &config, cache)?
    };
    Ok(ModelResult {
        model,
        engine,
        composition,
        rows,
        rows_3d,
        config,
    })
}

fn interactive(args: InteractiveArgs) -> Result<(), Failure> {
    let sets = read_case_sets(&args.data)?;
    let models = args
        .model
        .iter()
        .map(|m| Model::open(m).map(|model| args.composition.with_masks(model)))
        .collect::<Result<Vec<_>, _>>()?;
    let temporary = tempfile::Builder::new()
        .prefix("medico-eval-embeddings-")
        .tempdir()
        .context("cannot create a temporary embedding cache")
        .map_err(Failure::input)?;
    let cache = args.cache_dir.as_deref().unwrap_or(temporary.path());
    let iterations = args.rounds + 1;
    let mut results = Vec::new();
    for model in &models {
        let result = evaluate_model(&args, &sets, model, cache)?;
        print_model(&result, iterations);
        results.push(result);
    }
    if let Some(out) = &args.out {
        write_results(out, &args, &sets, &results)?;
    }
    Ok(())
}

/// `results.csv`, `results_3d.csv`, `results.json`, `traces_3d.json` and `dice.png` in `out`.
fn write_results(
    out: &Path,
    args: &InteractiveArgs,
    sets: &[Cases],
    results: &[ModelResult<'_>],
) -> Result<(), Failure> {
    let iterations = args.rounds + 1;
    let mut csv_2d = String::from("model,case,group,start,iteration,dice\n");
    let mut csv_3d = String::from(
        "model,case,modality,start,extent,central_slice,object_first,object_last,slices_segmented,first_segmented,last_segmented,dice\n",
    );
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
        cases: sets.iter().map(|c| c.path.display().to_string()).collect(),
        rounds: args.rounds,
        seed: args.seed,
        models: results.iter().map(|r| r.summary(iterations)).collect(),
    };
    std::fs::create_dir_all(out)
        .with_context(|| format!("{}: cannot create", out.display()))
        .map_err(Failure::input)?;
    write_atomically(&out.join("results.csv"), csv_2d.as_bytes())?;
    if !args.no_3d {
        write_atomically(&out.join("results_3d.csv"), csv_3d.as_bytes())?;
        let traces = TraceFile {
            models: results.iter().map(ModelResult::traces).collect(),
        };
        let json = serde_json::to_string(&traces).expect("traces serialize") + "\n";
        write_atomically(&out.join("traces_3d.json"), json.as_bytes())?;
    }
    let json = serde_json::to_string_pretty(&summary).expect("a summary serializes") + "\n";
    write_atomically(&out.join("results.json"), json.as_bytes())?;
    if !curves.is_empty() {
        let count: usize = sets.iter().map(|c| c.cases_2d.len()).sum();
        let title = format!("Simulated interactive segmentation, {count} 2D cases");
        write_dice_plot(&out.join("dice.png"), &title, &curves).map_err(Failure::input)?;
        for (n, group) in groups(results).iter().enumerate() {
            let mut group_curves = Vec::new();
            let mut cases = 0;
            for result in results {
                let rows: Vec<&Row2d> = result.rows.iter().filter(|r| &r.group == group).collect();
                cases = rows.len() / STARTS.len();
                for (start, _) in STARTS {
                    group_curves.push(DiceCurve {
                        model: result.model.label.clone(),
                        start,
                        dice: mean_per_iteration(rows.iter().copied(), start, iterations),
                    });
                }
            }
            let title = format!("{group}: {cases} 2D cases");
            write_dice_plot(&out.join(format!("dice_group{}.png", n + 1)), &title, &group_curves)
                .map_err(Failure::input)?;
        }
    }
    Ok(())
}

fn print_model(result: &ModelResult<'_>, iterations: usize) {
    let (model, rows) = (result.model, &result.rows);
    println!("{} ({}, {}):", model.label, model.path.display(), result.engine);
    println!("  corrections: {:?}", result.composition);
    println!(
        "  masks: holes {}",
        if result.fills_holes() { "filled" } else { "kept" }
    );
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
        println!(
            "  per group: box it0 -> it{last} / point it0 -> it{last}",
            last = iterations - 1
        );
        for group in groups(std::slice::from_ref(result)) {
            let picked: Vec<&Row2d> = rows.iter().filter(|r| r.group == group).collect();
            let ends = |start: &str| {
                let mean = mean_per_iteration(picked.iter().copied(), start, iterations);
                format!("{:.3} -> {:.3}", mean[0], mean[iterations - 1])
            };
            println!(
                "    {group:<24} ({:>2} cases): {} / {}",
                picked.len() / STARTS.len(),
                ends("box"),
                ends("point")
            );
        }
    }
    if !result.rows_3d.is_empty() {
        let walker = result
            .declared_propagation()
            .walk_decoder()
            .unwrap_or_else(|| "the interactive decoder".to_string());
        println!(
            "  3D, propagated ({}, {walker}, stop: {}): mean Dice box / point",
            result.config.projection, result.config.stop
        );
        for mean in result.mean_dice_3d() {
            let show = |v: Option<f64>| v.map_or("-".to_string(), |d| format!("{d:.3}"));
            println!(
                "    {:<7} {:<4} ({} objects): {} / {}",
                mean.extent,
                mean.modality,
                mean.objects,
                show(mean.bbox),
                show(mean.point)
            );
        }
    }
}

/// The 2D case groups of the results, in the order first met.
fn groups(results: &[ModelResult<'_>]) -> Vec<String> {
    let mut groups: Vec<String> = Vec::new();
    for row in results.iter().flat_map(|r| &r.rows) {
        if !groups.contains(&row.group) {
            groups.push(row.group.clone());
        }
    }
    groups
}

/// Writes an output file atomically.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    medico_io::atomic_output::write_atomically(path, bytes).map_err(runtime_failure)
}
