//! Helpers for medico's end-to-end tests (in `tests/tests/`): locating the shared test data, reading
//! reference arrays, exporting reference models to a scratch folder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use medico_export::{decoder_model, encoder_model, to_bytes, DecoderVariant};
use medico_models::checkpoint::{load_checkpoint, shapes};
use medico_models::{Sam, SamConfig};
use ndarray::ArrayD;
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
    ];
    for (file, model) in models {
        medico_export::validate::check_structure(&model).unwrap_or_else(|p| panic!("{file}: {p:?}"));
        std::fs::write(dir.join(file), to_bytes(&model)).unwrap();
    }
    (dir, sam)
}
