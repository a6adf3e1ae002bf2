//! Parity with the official SAM implementation: runs the SAM definition on tch against the reference
//! outputs in `shared/reference/<config>/` (README there) and reports the largest deviations.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use medico_io::IoError;
use medico_models::checkpoint::{load_checkpoint, shapes};
use medico_models::prompt::{sparse_prompt, BoxPrompt, CoordinateMap, Point};
use medico_models::prompt_encoder::DensePrompt;
use medico_models::sam::PromptTensors;
use medico_models::{Sam, SamConfig};
use serde::Deserialize;
use tch::{Device, Kind, Tensor};

use crate::backend::{TchBackend, TchTensor};
use crate::error::TrainError;

/// Logits closer to 0 than this may flip between implementations (parity rule for binary masks).
pub const MASK_LOGIT_TOLERANCE: f64 = 1e-3;

/// Largest deviations for one prompt case.
#[derive(Debug, Clone)]
pub struct CaseReport {
    /// Case name, e.g. `box_points_multi`.
    pub name: String,
    /// Max |Δ| of the prompt-mapped coordinates (original pixels → input frame).
    pub coords: f64,
    /// Max |Δ| of the sparse prompt embeddings.
    pub sparse_embeddings: f64,
    /// Max |Δ| of the dense prompt embeddings, when the reference has them.
    pub dense_embeddings: Option<f64>,
    /// Max |Δ| of the low-resolution logits (decoder fed the reference embeddings).
    pub low_res_logits: f64,
    /// Max |Δ| of the IoU predictions (decoder fed the reference embeddings).
    pub iou_predictions: f64,
    /// Max |Δ| of the full-size logits, when the reference has them (single cases).
    pub mask_logits: Option<f64>,
    /// Binary mask pixels that differ, end to end (our embeddings, our post-processing).
    pub mask_pixels_differing: usize,
    /// Of those, pixels whose logit is not within [`MASK_LOGIT_TOLERANCE`] of 0.
    pub mask_pixels_differing_beyond_tolerance: usize,
}

/// Largest deviations for one reference configuration.
#[derive(Debug, Clone)]
pub struct ParityReport {
    /// Reference directory.
    pub reference: PathBuf,
    /// Max |Δ| per encoder output: `patch_embed`, `block{i}`, `image_embeddings`.
    pub encoder: Vec<(String, f64)>,
    /// Per prompt case.
    pub cases: Vec<CaseReport>,
}

impl ParityReport {
    /// Largest error over embeddings and every case's logits, IoU and prompt embeddings.
    pub fn max_error(&self) -> f64 {
        let encoder = self.encoder.iter().map(|(_, e)| *e);
        let cases = self.cases.iter().flat_map(|c| {
            [c.sparse_embeddings, c.low_res_logits, c.iou_predictions]
                .into_iter()
                .chain(c.dense_embeddings)
                .chain(c.mask_logits)
        });
        encoder.chain(cases).fold(0.0, f64::max)
    }

    /// A human-readable table.
    pub fn render(&self) -> String {
        let mut out = format!("parity against {}\n", self.reference.display());
        for (name, err) in &self.encoder {
            out.push_str(&format!("  encoder {name:<18} max|Δ| {err:.3e}\n"));
        }
        for c in &self.cases {
            out.push_str(&format!(
                "  case {:<20} low-res {:.3e}  iou {:.3e}  sparse {:.3e}  dense {}  full {}  mask px differing {} (beyond |logit|<{MASK_LOGIT_TOLERANCE:e}: {})\n",
                c.name,
                c.low_res_logits,
                c.iou_predictions,
                c.sparse_embeddings,
                c.dense_embeddings.map_or("-".into(), |e| format!("{e:.3e}")),
                c.mask_logits.map_or("-".into(), |e| format!("{e:.3e}")),
                c.mask_pixels_differing,
                c.mask_pixels_differing_beyond_tolerance
            ));
        }
        out.push_str(&format!("  overall max|Δ| {:.3e}\n", self.max_error()));
        out
    }
}

#[derive(Deserialize)]
struct CaseList {
    original_size_hw: [usize; 2],
    input_size_hw: [usize; 2],
    cases: Vec<CaseSpec>,
}

#[derive(Deserialize)]
struct CaseSpec {
    name: String,
    multimask_output: bool,
    #[serde(default)]
    point_coords: Vec<[f64; 2]>,
    #[serde(default)]
    point_labels: Vec<i64>,
    #[serde(rename = "box")]
    bbox: Option<[f64; 4]>,
    file: String,
    /// A case whose low-res logits are fed back as the mask prompt (LiteMedSAM reference).
    #[serde(default)]
    mask_from: Option<String>,
}

fn read_safetensors(path: &Path) -> Result<HashMap<String, Tensor>, TrainError> {
    Tensor::read_safetensors(path)
        .map(|v| v.into_iter().collect())
        .map_err(|source| TrainError::Tensors {
            path: path.into(),
            source,
        })
}

fn get<'m>(map: &'m HashMap<String, Tensor>, key: &str, file: &str) -> Result<&'m Tensor, TrainError> {
    map.get(key).ok_or_else(|| TrainError::MissingTensor {
        file: file.into(),
        key: key.into(),
    })
}

/// How two tensors are compared.
#[derive(Clone, Copy)]
enum Metric {
    /// `max |ours - reference|`.
    Absolute,
    /// `max |ours - reference| / max(1, |reference|)` (LiteMedSAM's real logits reach tens).
    ScaledAbove1,
}

impl Metric {
    fn diff(self, ours: &Tensor, reference: &Tensor) -> f64 {
        let ours = ours.to_device(Device::Cpu).to_kind(Kind::Double);
        let reference = reference.to_kind(Kind::Double);
        assert_eq!(ours.size(), reference.size(), "shape mismatch in parity comparison");
        let delta = (ours - &reference).abs();
        match self {
            Self::Absolute => delta.max().double_value(&[]),
            Self::ScaledAbove1 => (delta / reference.abs().clamp_min(1.0)).max().double_value(&[]),
        }
    }
}

/// Runs the parity check for one reference directory of the official implementation (`tiny` or `small`:
/// `config.json` and `weights.safetensors` inside) on `device` in `kind`.
pub fn run_parity(reference: &Path, device: Device, kind: Kind) -> Result<ParityReport, TrainError> {
    let config = SamConfig::from_json_file(&reference.join("config.json"))?;
    let state = load_checkpoint(&reference.join("weights.safetensors"))?;
    let list: CaseList = read_case_list(reference)?;
    compare(
        reference,
        Sam::new(config),
        &state,
        &list,
        (TapLayout::Whole, Metric::Absolute),
        (device, kind),
    )
}

/// Runs the parity check for a reference directory written by LiteMedSAM's own code
/// (`shared/reference/litemedsam`: prompts in original pixels, encoder taps as their first 4096 values)
/// with the real checkpoint `checkpoint`, whose architecture is inferred from its shapes. Deviations are
/// scaled: `|Δ| / max(1, |reference|)`.
pub fn run_lite_parity(
    reference: &Path,
    checkpoint: &Path,
    device: Device,
    kind: Kind,
) -> Result<ParityReport, TrainError> {
    let state = load_checkpoint(checkpoint)?;
    let config = SamConfig::infer_from_shapes(&shapes(&state), None)?;
    let lite: LiteCaseList = read_case_list(reference)?;
    compare(
        reference,
        Sam::new(config),
        &state,
        &lite.into_case_list(),
        (TapLayout::Head(LITE_TAP_VALUES), Metric::ScaledAbove1),
        (device, kind),
    )
}

/// `cases.json` of a reference directory.
fn read_case_list<T: serde::de::DeserializeOwned>(reference: &Path) -> Result<T, TrainError> {
    let path = reference.join("cases.json");
    let text = std::fs::read_to_string(&path).map_err(|e| IoError::read(&path, e))?;
    serde_json::from_str(&text).map_err(|source| TrainError::Json {
        path,
        what: "reference case list",
        source,
    })
}

/// How `embeddings.safetensors` stores the encoder's intermediate outputs.
#[derive(Clone, Copy)]
enum TapLayout {
    /// Whole tensors under the tap's name.
    Whole,
    /// The first N values (row-major) under `<tap>_head`.
    Head(usize),
}

/// Values of each encoder tap in the LiteMedSAM reference.
const LITE_TAP_VALUES: usize = 4096;

fn compare(
    reference: &Path,
    sam: Sam,
    state: &medico_models::StateDict,
    list: &CaseList,
    (taps, metric): (TapLayout, Metric),
    (device, kind): (Device, Kind),
) -> Result<ParityReport, TrainError> {
    sam.param_specs().check(&shapes(state))?;
    let b = TchBackend::from_state_dict(state, device, kind);
    let _guard = tch::no_grad_guard();

    let pre = read_safetensors(&reference.join("preprocess.safetensors"))?;
    let reference_embeddings = read_safetensors(&reference.join("embeddings.safetensors"))?;
    let input = b.input(get(&pre, "input", "preprocess.safetensors")?);
    let mut encoder = Vec::new();
    let mut missing_tap: Option<String> = None;
    let embeddings = sam.image_encoder().forward_traced(&b, &input, &mut |name, t| {
        let compared = match taps {
            TapLayout::Whole => reference_embeddings.get(name).map(|r| metric.diff(&t.0, r)),
            TapLayout::Head(n) => reference_embeddings
                .get(&format!("{name}_head"))
                .map(|r| metric.diff(&t.0.flatten(0, -1).narrow(0, 0, n as i64), r)),
        };
        match compared {
            Some(err) => encoder.push((name.to_string(), err)),
            None => missing_tap = Some(name.to_string()),
        }
    });
    if let Some(name) = missing_tap {
        return Err(TrainError::MissingTensor {
            file: "embeddings.safetensors".into(),
            key: name,
        });
    }
    let reference_image_embeddings = get(&reference_embeddings, "image_embeddings", "embeddings.safetensors")?;
    encoder.push((
        "image_embeddings".into(),
        metric.diff(&embeddings.0, reference_image_embeddings),
    ));

    let original_hw = (list.original_size_hw[0], list.original_size_hw[1]);
    let input_hw = (list.input_size_hw[0], list.input_size_hw[1]);
    let map = CoordinateMap::new(original_hw, sam.config.img_size);
    let fed_reference_embeddings = b.input(reference_image_embeddings);
    let mut cases = Vec::new();
    for spec in &list.cases {
        let mut data = read_safetensors(&reference.join(&spec.file))?;
        if let Some(source) = &spec.mask_from {
            let fed = mask_fed_back(reference, source)?;
            data.insert("mask_input".into(), fed);
        }
        let case = Case {
            sam: &sam,
            b: &b,
            metric,
            spec,
            data: &data,
            sizes: (input_hw, original_hw),
        };
        cases.push(run_case(&case, &map, &embeddings, &fed_reference_embeddings)?);
    }
    Ok(ParityReport {
        reference: reference.to_path_buf(),
        encoder,
        cases,
    })
}

/// The low-res logits of case `source` as LiteMedSAM's reference fed them back (its first mask,
/// `[1, 256, 256]`).
fn mask_fed_back(reference: &Path, source: &str) -> Result<Tensor, TrainError> {
    let data = read_safetensors(&reference.join("cases").join(format!("{source}.safetensors")))?;
    Ok(get(&data, "low_res_logits", source)?.narrow(0, 0, 1))
}

/// `cases.json` of the LiteMedSAM reference.
#[derive(Deserialize)]
struct LiteCaseList {
    original_size: [usize; 2],
    input_size: [usize; 2],
    cases: std::collections::BTreeMap<String, LiteCase>,
}

#[derive(Deserialize)]
struct LiteCase {
    #[serde(rename = "box")]
    bbox: Option<[f64; 4]>,
    points: Option<Vec<[f64; 3]>>,
    multimask: bool,
    mask_from: Option<String>,
}

impl LiteCaseList {
    fn into_case_list(self) -> CaseList {
        let cases = self
            .cases
            .into_iter()
            .map(|(name, c)| {
                let points = c.points.unwrap_or_default();
                CaseSpec {
                    file: format!("cases/{name}.safetensors"),
                    name,
                    multimask_output: c.multimask,
                    point_coords: points.iter().map(|p| [p[0], p[1]]).collect(),
                    point_labels: points.iter().map(|p| p[2] as i64).collect(),
                    bbox: c.bbox,
                    mask_from: c.mask_from,
                }
            })
            .collect();
        CaseList {
            original_size_hw: self.original_size,
            input_size_hw: self.input_size,
            cases,
        }
    }
}

/// What every step of one case's comparison needs.
struct Case<'a> {
    sam: &'a Sam,
    b: &'a TchBackend,
    metric: Metric,
    spec: &'a CaseSpec,
    data: &'a HashMap<String, Tensor>,
    /// Input size (after resize) and original size, `(h, w)`.
    sizes: ((usize, usize), (usize, usize)),
}

/// The case's prompt as decoder inputs: sparse tokens (points and box) and the fed-back mask.
struct CaseInputs {
    sparse: Option<(TchTensor, TchTensor)>,
    mask: Option<TchTensor>,
}

impl CaseInputs {
    fn prompts(&self) -> PromptTensors<'_, TchTensor> {
        PromptTensors {
            sparse: self.sparse.as_ref().map(|(c, l)| (c, l)),
            dense: match &self.mask {
                Some(m) => DensePrompt::Mask(m),
                None => DensePrompt::None,
            },
        }
    }
}

/// Compares one prompt case: coordinate mapping, prompt encoder, decoder on the reference embeddings, and
/// binary masks end to end on ours.
fn run_case(
    case: &Case<'_>,
    map: &CoordinateMap,
    our_embeddings: &TchTensor,
    reference_embeddings: &TchTensor,
) -> Result<CaseReport, TrainError> {
    let spec = case.spec;
    let points: Vec<Point> = spec
        .point_coords
        .iter()
        .zip(&spec.point_labels)
        .map(|(&[x, y], &label)| Point {
            x,
            y,
            positive: label == 1,
        })
        .collect();
    let bbox = spec.bbox.map(|[x0, y0, x1, y1]| BoxPrompt { x0, y0, x1, y1 });
    let sparse = sparse_prompt(&points, bbox.as_ref(), map);
    let coords = coords_error(case, sparse.as_ref().map(|(c, _)| c.as_slice()));
    let inputs = CaseInputs {
        sparse: sparse.as_ref().map(|(coords, labels)| {
            let n = labels.len() as i64;
            (
                case.b.input(&Tensor::from_slice(coords).reshape([1, n, 2])),
                case.b.input(&Tensor::from_slice(labels).reshape([1, n])),
            )
        }),
        mask: case.data.get("mask_input").map(|m| case.b.input(&m.unsqueeze(0))),
    };
    let (sparse_embeddings, dense_embeddings) = prompt_encoder_errors(case, &inputs)?;
    let (low_res_logits, iou_predictions, mask_logits) = decoder_errors(case, &inputs, reference_embeddings)?;
    let (differing, beyond) = differing_mask_pixels(case, &inputs, our_embeddings)?;
    Ok(CaseReport {
        name: spec.name.clone(),
        coords,
        sparse_embeddings,
        dense_embeddings,
        low_res_logits,
        iou_predictions,
        mask_logits,
        mask_pixels_differing: differing,
        mask_pixels_differing_beyond_tolerance: beyond,
    })
}

/// Our coordinate transform (original pixels to the input frame) against the predictor's own.
fn coords_error(case: &Case<'_>, coords: Option<&[f32]>) -> f64 {
    let Some(coords) = coords else {
        return 0.0;
    };
    let ours = Tensor::from_slice(coords).reshape([-1, 2]);
    let mut error: f64 = 0.0;
    if let Some(r) = case.data.get("point_coords_input") {
        error = error.max(case.metric.diff(&ours.narrow(0, 0, r.size()[0]), r));
    }
    if let Some(r) = case.data.get("box_input") {
        let n = ours.size()[0];
        error = error.max(case.metric.diff(&ours.narrow(0, n - 2, 2).reshape([4]), r));
    }
    error
}

/// Sparse and dense prompt embeddings against the reference's.
fn prompt_encoder_errors(case: &Case<'_>, inputs: &CaseInputs) -> Result<(f64, Option<f64>), TrainError> {
    let file = case.spec.file.as_str();
    let prompt_encoder = case.sam.prompt_encoder();
    let reference_sparse = get(case.data, "sparse_embeddings", file)?;
    // LiteMedSAM's reference keeps the batch row only (`[N, C]`).
    let reference_sparse = &match reference_sparse.dim() {
        2 => reference_sparse.unsqueeze(0),
        _ => reference_sparse.shallow_clone(),
    };
    let sparse = match &inputs.sparse {
        Some((c, l)) => case
            .metric
            .diff(&prompt_encoder.embed_points(case.b, c, l).0, reference_sparse),
        None if reference_sparse.size()[1] != 0 => {
            return Err(TrainError::Reference {
                file: file.into(),
                problem: "reference has sparse tokens for a mask-only prompt".into(),
            })
        }
        None => 0.0,
    };
    let dense = case.data.get("dense_embeddings").map(|r| {
        let dense = prompt_encoder.embed_dense(case.b, inputs.prompts().dense);
        case.metric.diff(&dense.0.expand(r.size(), false), r)
    });
    Ok((sparse, dense))
}

/// The decoder fed the reference embeddings: low-res logits, IoU predictions and (single cases) full-size
/// logits against the reference's.
fn decoder_errors(
    case: &Case<'_>,
    inputs: &CaseInputs,
    reference_embeddings: &TchTensor,
) -> Result<(f64, f64, Option<f64>), TrainError> {
    let (file, (input_hw, original_hw)) = (case.spec.file.as_str(), case.sizes);
    let decoded = case.sam.decode(case.b, reference_embeddings, inputs.prompts());
    let selected = case.sam.select_outputs(case.b, &decoded, case.spec.multimask_output);
    let low_res = case.metric.diff(
        &selected.masks.0.squeeze_dim(0),
        get(case.data, "low_res_logits", file)?,
    );
    let iou = case.metric.diff(
        &selected.iou_predictions.0.squeeze_dim(0),
        get(case.data, "iou_predictions", file)?,
    );
    let mask_logits = case.data.get("mask_logits").map(|r| {
        let full = case
            .sam
            .postprocess_masks(case.b, &selected.masks, input_hw, original_hw);
        // A multimask reference may keep only its first full-size mask.
        case.metric.diff(&full.0.squeeze_dim(0).narrow(0, 0, r.size()[0]), r)
    });
    Ok((low_res, iou, mask_logits))
}

/// End to end (our embeddings, our post-processing): binary mask pixels that differ from the reference's,
/// and those of them whose logit is not within [`MASK_LOGIT_TOLERANCE`] of 0.
fn differing_mask_pixels(
    case: &Case<'_>,
    inputs: &CaseInputs,
    our_embeddings: &TchTensor,
) -> Result<(usize, usize), TrainError> {
    let (input_hw, original_hw) = case.sizes;
    let decoded = case.sam.decode(case.b, our_embeddings, inputs.prompts());
    let selected = case.sam.select_outputs(case.b, &decoded, case.spec.multimask_output);
    let logits = case
        .sam
        .postprocess_masks(case.b, &selected.masks, input_hw, original_hw)
        .0
        .squeeze_dim(0)
        .to_device(Device::Cpu)
        .to_kind(Kind::Float);
    let ours = logits.gt(case.sam.config.mask_threshold);
    let reference_masks = get(case.data, "masks", &case.spec.file)?.to_kind(Kind::Bool);
    let differing = ours.logical_xor(&reference_masks);
    let beyond = differing.logical_and(&logits.abs().ge(MASK_LOGIT_TOLERANCE));
    let count = |t: &Tensor| t.sum(Kind::Int64).int64_value(&[]) as usize;
    Ok((count(&differing), count(&beyond)))
}
