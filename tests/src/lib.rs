//! Helpers for medico's end-to-end tests (in `tests/tests/`): locating the shared test data, reading
//! reference arrays, exporting reference models to a scratch folder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use medico_export::{
    decoder_model, decoder_prepare_model, decoder_prompt_model, encoder_model, to_bytes, DecoderVariant,
};
use medico_models::checkpoint::{load_checkpoint, shapes};
use medico_models::{Sam, SamConfig};
use ndarray::{ArrayD, IxDyn};
use safetensors::{Dtype, SafeTensors};

/// The `shared/` folder beside the checkout, or `$MEDICO_SHARED`.
pub fn shared_dir() -> PathBuf {
    std::env::var_os("MEDICO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

/// `shared/reference/<name>`.
pub fn reference_dir(name: &str) -> PathBuf {
    shared_dir().join("reference").join(name)
}

/// LiteMedSAM's real checkpoint: `$MEDICO_LITEMEDSAM_CHECKPOINT` (`scripts/env.sh` sets it), else
/// `.deps/litemedsam/lite_medsam.pth` in the checkout; panics with how to get it when it is missing.
pub fn lite_medsam_checkpoint() -> PathBuf {
    let path = std::env::var_os("MEDICO_LITEMEDSAM_CHECKPOINT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.deps/litemedsam/lite_medsam.pth"));
    assert!(
        path.exists(),
        "{}: LiteMedSAM's checkpoint is missing; run `bash scripts/setup.sh`",
        path.display()
    );
    path
}

/// The feeds of the official ONNX decoder interface: embeddings, prompt points `[1, N, 2]` with labels,
/// an optional low-res mask prompt (`low x low`) and the original image size.
pub fn onnx_decoder_feeds(
    embeddings: &ArrayD<f32>,
    (coords, labels): (Vec<f32>, Vec<f32>),
    mask: Option<ArrayD<f32>>,
    low: usize,
    original_hw: (usize, usize),
) -> Vec<(&'static str, ArrayD<f32>)> {
    let n = labels.len();
    let (mask, has_mask) = match mask {
        Some(m) => (m.into_shape_with_order(IxDyn(&[1, 1, low, low])).unwrap(), 1.0),
        None => (ArrayD::zeros(IxDyn(&[1, 1, low, low])), 0.0),
    };
    vec![
        ("image_embeddings", embeddings.clone()),
        (
            "point_coords",
            ArrayD::from_shape_vec(IxDyn(&[1, n, 2]), coords).unwrap(),
        ),
        ("point_labels", ArrayD::from_shape_vec(IxDyn(&[1, n]), labels).unwrap()),
        ("mask_input", mask),
        ("has_mask_input", ArrayD::from_elem(IxDyn(&[1]), has_mask)),
        (
            "orig_im_size",
            ArrayD::from_shape_vec(IxDyn(&[2]), vec![original_hw.0 as f32, original_hw.1 as f32]).unwrap(),
        ),
    ]
}

/// The predictor's selection of decoder outputs along axis 1 (`1..` multimask, `0..1` single), batch row 0.
pub fn select_outputs(all: &ArrayD<f32>, multimask: bool) -> ArrayD<f32> {
    let m = all.shape()[1];
    let range = if multimask { 1..m } else { 0..1 };
    all.slice_axis(ndarray::Axis(1), range.into())
        .index_axis(ndarray::Axis(0), 0)
        .to_owned()
}

/// Pixels whose binary value differs from the reference mask where |logit| >= 1e-3 (the parity rule).
pub fn flipped_pixels(logits: &ArrayD<f32>, reference_masks: &ArrayD<f32>) -> usize {
    logits
        .iter()
        .zip(reference_masks)
        .filter(|(l, r)| ((**l > 0.0) != (**r > 0.5)) && l.abs() >= 1e-3)
        .count()
}

/// Every tensor of a safetensors file as f32 arrays (integers converted).
pub fn read_arrays(path: &Path) -> HashMap<String, ArrayD<f32>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            let data: Vec<f32> = match view.dtype() {
                Dtype::F32 => view
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
                Dtype::I32 => view
                    .data()
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f32)
                    .collect(),
                Dtype::I64 => view
                    .data()
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32)
                    .collect(),
                Dtype::U8 => view.data().iter().map(|&b| b as f32).collect(),
                other => panic!("{name}: unexpected dtype {other:?}"),
            };
            let array = ArrayD::from_shape_vec(view.shape().to_vec(), data).unwrap();
            (name, array)
        })
        .collect()
}

/// Largest absolute difference of two arrays of the same shape.
pub fn max_abs_diff(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f64 {
    assert_eq!(a.shape(), b.shape(), "shape mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs() as f64).fold(0.0, f64::max)
}

/// A scratch folder that is removed (with everything in it) when dropped, so a test run leaves no
/// exported bundles behind in the temporary directory.
pub struct Scratch(tempfile::TempDir);

impl std::ops::Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}

/// A new scratch folder whose name starts with `medico-tests-<name>`.
pub fn scratch_dir(name: &str) -> Scratch {
    let dir = tempfile::Builder::new()
        .prefix(&format!("medico-tests-{name}-"))
        .tempdir()
        .expect("create a scratch folder in the temporary directory");
    Scratch(dir)
}

/// Exports the reference model `name` (weights.safetensors + config.json) as encoder and decoder
/// variants into a scratch folder; returns the folder and the model.
pub fn export_reference(name: &str) -> (Scratch, Sam) {
    let reference = reference_dir(name);
    let config = SamConfig::from_json_file(&reference.join("config.json")).unwrap();
    let state = load_checkpoint(&reference.join("weights.safetensors")).unwrap();
    let sam = Sam::new(config);
    sam.param_specs().check(&shapes(&state)).unwrap();
    let dir = scratch_dir(&format!("export-{name}"));
    let models = [
        ("encoder.onnx", encoder_model(&sam, &state)),
        (
            DecoderVariant::Official.file_name(),
            decoder_model(&sam, &state, DecoderVariant::Official),
        ),
        (
            DecoderVariant::OfficialSingle.file_name(),
            decoder_model(&sam, &state, DecoderVariant::OfficialSingle),
        ),
        (
            DecoderVariant::LowRes.file_name(),
            decoder_model(&sam, &state, DecoderVariant::LowRes),
        ),
        ("decoder_prepare.onnx", decoder_prepare_model(&sam, &state)),
        ("decoder_prompt.onnx", decoder_prompt_model(&sam, &state)),
    ];
    for (file, model) in models {
        medico_export::validate::check_structure(&model).unwrap_or_else(|p| panic!("{file}: {p:?}"));
        std::fs::write(dir.join(file), to_bytes(&model)).unwrap();
    }
    (dir, sam)
}
