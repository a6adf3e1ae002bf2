//! The UNETR decoder, written once in `medico-models`, reproduces torch-em's own `UNETR` (reference vectors of
//! `scripts/gen_unetr_vectors.py`, committed in `tests/data/unetr`) on libtorch, and its exported graph does on
//! ONNX Runtime and tract — for both upsamplers, BatchNorm statistics away from identity, the centre-cropped
//! skip channels and the resize to the encoder's input side.

use std::path::PathBuf;

use medico_export::{segmentation_decoder_model, to_bytes};
use medico_models::checkpoint::shapes;
use medico_models::unetr::Upsampler;
use medico_models::{load_decoder_state, UnetrConfig, UnetrDecoder};
use medico_runtime::engines::{Engine, OrtEngine, TractEngine};
use medico_tests::{max_abs_diff, read_arrays, scratch_dir};
use medico_train::TchBackend;
use ndarray::{ArrayD, IxDyn};

const TOLERANCE: f64 = 1e-4;
/// The reference's embedding grid and encoder input side (see the generator script).
const GRID: usize = 8;
const IMAGE_SIZE: usize = 64;

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/unetr")
}

/// The decoder of a reference variant, its state dict, its input and torch-em's output.
fn reference(variant: &str) -> (UnetrDecoder, medico_models::StateDict, ArrayD<f32>, ArrayD<f32>) {
    let state = load_decoder_state(&data_dir().join(format!("{variant}_decoder.safetensors"))).unwrap();
    let config = UnetrConfig::infer_from_shapes(&shapes(&state)).unwrap();
    let decoder = UnetrDecoder::new(config);
    decoder.param_specs().check(&shapes(&state)).unwrap();
    let mut io = read_arrays(&data_dir().join(format!("{variant}_io.safetensors")));
    let embeddings = io.remove("embeddings").unwrap();
    let probabilities = io.remove("probabilities").unwrap();
    (decoder, state, embeddings, probabilities)
}

fn tch_output(decoder: &UnetrDecoder, state: &medico_models::StateDict, embeddings: &ArrayD<f32>) -> ArrayD<f32> {
    let backend = TchBackend::from_state_dict(state, tch::Device::Cpu, tch::Kind::Float);
    let shape: Vec<i64> = embeddings.shape().iter().map(|&d| d as i64).collect();
    let input = medico_train::TchTensor(tch::Tensor::from_slice(embeddings.as_slice().unwrap()).reshape(&shape));
    let out = tch::no_grad(|| decoder.forward_at_input_size(&backend, &input, GRID, IMAGE_SIZE).0);
    let dims: Vec<usize> = out.size().iter().map(|&d| d as usize).collect();
    let values = Vec::<f32>::try_from(out.flatten(0, -1)).unwrap();
    ArrayD::from_shape_vec(IxDyn(&dims), values).unwrap()
}

fn check_variant(variant: &str, upsampler: Upsampler, embed_dim: usize) {
    let (decoder, state, embeddings, expected) = reference(variant);
    assert_eq!(
        decoder.config.upsampler, upsampler,
        "{variant}: upsampler read from the keys"
    );
    assert_eq!(decoder.config.embed_dim, embed_dim);
    assert_eq!(decoder.config.out_channels, 3);
    assert_eq!(expected.shape(), &[1, 3, IMAGE_SIZE, IMAGE_SIZE]);

    let on_tch = tch_output(&decoder, &state, &embeddings);
    let error = max_abs_diff(&on_tch, &expected);
    eprintln!("{variant} on tch: max abs error {error:.2e}");
    assert!(error < TOLERANCE, "{variant} on tch: max abs error {error:e}");

    let scratch = scratch_dir("unetr");
    let path = scratch.join("segmentation_decoder.onnx");
    std::fs::write(
        &path,
        to_bytes(&segmentation_decoder_model(&decoder, &state, GRID, IMAGE_SIZE)),
    )
    .unwrap();
    let engines: Vec<Box<dyn Engine>> = vec![
        Box::new(OrtEngine::open(&path, 2).unwrap()),
        Box::new(TractEngine::open(&path, 2).unwrap()),
    ];
    for mut engine in engines {
        let out = engine.run(&[("image_embeddings", embeddings.clone())]).unwrap();
        let error = max_abs_diff(&out["probabilities"], &expected);
        eprintln!("{variant} on {}: max abs error {error:.2e}", engine.name());
        assert!(
            error < TOLERANCE,
            "{variant} on {}: max abs error {error:e}",
            engine.name()
        );
    }
}

#[test]
fn bilinear_unetr_decoder_matches_torch_em_on_tch_ort_and_tract() {
    check_variant("bilinear", Upsampler::Bilinear, 256);
}

#[test]
fn conv_transpose_unetr_decoder_matches_torch_em_on_tch_ort_and_tract() {
    check_variant("conv_transpose", Upsampler::ConvTranspose, 64);
}

#[test]
fn a_decoder_with_a_missing_layer_is_refused_by_name() {
    let (decoder, mut state, _, _) = reference("conv_transpose");
    state.remove("decoder.blocks.1.block.4.weight");
    let error = decoder.param_specs().check(&shapes(&state)).unwrap_err().to_string();
    assert!(error.contains("decoder.blocks.1.block.4.weight"), "{error}");
}
