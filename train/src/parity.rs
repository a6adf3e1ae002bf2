//! Parity with the official SAM implementation: runs the SAM definition on tch against the reference
//! outputs in `shared/reference/<config>/` (README there) and reports the largest deviations.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use medico_models::checkpoint::{load_checkpoint, shapes};
use medico_models::prompt::{sparse_prompt, BoxPrompt, CoordinateMap, Point};
use medico_models::prompt_encoder::DensePrompt;
use medico_models::sam::PromptTensors;
use medico_models::{Sam, SamConfig};
use serde::Deserialize;
use tch::{Device, Kind, Tensor};

use crate::backend::{TchBackend, TchTensor};

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
}

fn read_safetensors(path: &Path) -> Result<HashMap<String, Tensor>, String> {
    Tensor::read_safetensors(path)
        .map(|v| v.into_iter().collect())
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn get<'m>(map: &'m HashMap<String, Tensor>, key: &str, file: &str) -> Result<&'m Tensor, String> {
    map.get(key).ok_or_else(|| format!("{file}: tensor '{key}' missing"))
}

fn max_abs_diff(ours: &Tensor, reference: &Tensor) -> f64 {
    let ours = ours.to_device(Device::Cpu).to_kind(Kind::Double);
    let reference = reference.to_kind(Kind::Double);
    assert_eq!(ours.size(), reference.size(), "shape mismatch in parity comparison");
    (ours - reference).abs().max().double_value(&[])
}

/// Runs the parity check for one reference directory (`tiny` or `small`) on `device` in `kind`.
pub fn run_parity(reference: &Path, device: Device, kind: Kind) -> Result<ParityReport, String> {
    let config = SamConfig::from_json_file(&reference.join("config.json")).map_err(|e| e.to_string())?;
    let state = load_checkpoint(&reference.join("weights.safetensors")).map_err(|e| e.to_string())?;
    let sam = Sam::new(config);
    sam.param_specs().check(&shapes(&state)).map_err(|e| e.to_string())?;
    let b = TchBackend::from_state_dict(&state, device, kind);
    let _guard = tch::no_grad_guard();

    let pre = read_safetensors(&reference.join("preprocess.safetensors"))?;
    let reference_embeddings = read_safetensors(&reference.join("embeddings.safetensors"))?;
    let input = b.input(get(&pre, "input", "preprocess.safetensors")?);
    let mut encoder = Vec::new();
    let mut trace_error: Option<String> = None;
    let embeddings =
        sam.image_encoder()
            .forward_traced(&b, &input, &mut |name, t| match reference_embeddings.get(name) {
                Some(r) => encoder.push((name.to_string(), max_abs_diff(&t.0, r))),
                None => trace_error = Some(format!("embeddings.safetensors: tensor '{name}' missing")),
            });
    if let Some(e) = trace_error {
        return Err(e);
    }
    let reference_image_embeddings = get(&reference_embeddings, "image_embeddings", "embeddings.safetensors")?;
    encoder.push((
        "image_embeddings".into(),
        max_abs_diff(&embeddings.0, reference_image_embeddings),
    ));

    let list_text = std::fs::read_to_string(reference.join("cases.json"))
        .map_err(|e| format!("{}: {e}", reference.join("cases.json").display()))?;
    let list: CaseList = serde_json::from_str(&list_text).map_err(|e| format!("cases.json: {e}"))?;
    let original_hw = (list.original_size_hw[0], list.original_size_hw[1]);
    let input_hw = (list.input_size_hw[0], list.input_size_hw[1]);
    let map = CoordinateMap::new(original_hw, sam.config.img_size);
    let fed_reference_embeddings = b.input(reference_image_embeddings);
    let mut cases = Vec::new();
    for spec in &list.cases {
        let data = read_safetensors(&reference.join(&spec.file))?;
        cases.push(run_case(
            &sam,
            &b,
            spec,
            &data,
            &map,
            (input_hw, original_hw),
            &embeddings,
            &fed_reference_embeddings,
        )?);
    }
    Ok(ParityReport {
        reference: reference.to_path_buf(),
        encoder,
        cases,
    })
}

#[allow(clippy::too_many_arguments)]
fn run_case(
    sam: &Sam,
    b: &TchBackend,
    spec: &CaseSpec,
    data: &HashMap<String, Tensor>,
    map: &CoordinateMap,
    (input_hw, original_hw): ((usize, usize), (usize, usize)),
    our_embeddings: &TchTensor,
    reference_embeddings: &TchTensor,
) -> Result<CaseReport, String> {
    let file = spec.file.as_str();
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

    // The coordinate transform against the predictor's own.
    let mut coords_error: f64 = 0.0;
    if let Some((coords, _)) = &sparse {
        let ours = Tensor::from_slice(coords).reshape([-1, 2]);
        if let Some(r) = data.get("point_coords_input") {
            coords_error = coords_error.max(max_abs_diff(&ours.narrow(0, 0, r.size()[0]), r));
        }
        if let Some(r) = data.get("box_input") {
            let n = ours.size()[0];
            coords_error = coords_error.max(max_abs_diff(&ours.narrow(0, n - 2, 2).reshape([4]), r));
        }
    }

    let sparse_tensors = sparse.as_ref().map(|(coords, labels)| {
        let n = labels.len() as i64;
        (
            b.input(&Tensor::from_slice(coords).reshape([1, n, 2])),
            b.input(&Tensor::from_slice(labels).reshape([1, n])),
        )
    });
    let mask_input = data.get("mask_input").map(|m| b.input(&m.unsqueeze(0)));
    let prompts = || PromptTensors {
        sparse: sparse_tensors.as_ref().map(|(c, l)| (c, l)),
        dense: match &mask_input {
            Some(m) => DensePrompt::Mask(m),
            None => DensePrompt::None,
        },
    };

    // Prompt encoder outputs.
    let prompt_encoder = sam.prompt_encoder();
    let reference_sparse = get(data, "sparse_embeddings", file)?;
    let sparse_embeddings = match &sparse_tensors {
        Some((c, l)) => max_abs_diff(&prompt_encoder.embed_points(b, c, l).0, reference_sparse),
        None => {
            if reference_sparse.size()[1] != 0 {
                return Err(format!("{file}: reference has sparse tokens for a mask-only prompt"));
            }
            0.0
        }
    };
    let dense_embeddings = data.get("dense_embeddings").map(|r| {
        let dense = prompt_encoder.embed_dense(b, prompts().dense);
        max_abs_diff(&dense.0.expand(r.size(), false), r)
    });

    // Decoder from the reference embeddings.
    let decoded = sam.decode(b, reference_embeddings, prompts());
    let selected = sam.select_outputs(b, &decoded, spec.multimask_output);
    let low_res_logits = max_abs_diff(&selected.masks.0.squeeze_dim(0), get(data, "low_res_logits", file)?);
    let iou_predictions = max_abs_diff(
        &selected.iou_predictions.0.squeeze_dim(0),
        get(data, "iou_predictions", file)?,
    );
    let mask_logits = data.get("mask_logits").map(|r| {
        let full = sam.postprocess_masks(b, &selected.masks, input_hw, original_hw);
        max_abs_diff(&full.0.squeeze_dim(0), r)
    });

    // End to end: our embeddings, our post-processing, binary masks.
    let decoded = sam.decode(b, our_embeddings, prompts());
    let selected = sam.select_outputs(b, &decoded, spec.multimask_output);
    let logits = sam
        .postprocess_masks(b, &selected.masks, input_hw, original_hw)
        .0
        .squeeze_dim(0)
        .to_device(Device::Cpu)
        .to_kind(Kind::Float);
    let ours = logits.gt(sam.config.mask_threshold);
    let reference_masks = get(data, "masks", file)?.to_kind(Kind::Bool);
    let differing = ours.logical_xor(&reference_masks);
    let beyond = differing.logical_and(&logits.abs().ge(MASK_LOGIT_TOLERANCE));
    Ok(CaseReport {
        name: spec.name.clone(),
        coords: coords_error,
        sparse_embeddings,
        dense_embeddings,
        low_res_logits,
        iou_predictions,
        mask_logits,
        mask_pixels_differing: differing.sum(Kind::Int64).int64_value(&[]) as usize,
        mask_pixels_differing_beyond_tolerance: beyond.sum(Kind::Int64).int64_value(&[]) as usize,
    })
}
