//! Benchmark command (not a test): exports a full-size SAM ViT-B with random weights to a bundle and
//! times its encoder at 1024² on ONNX Runtime and tract in the same run.
//!
//! `cargo run --release -p medico-tests --example vit_b_encoder_timing -- OUT_DIR [THREADS] [RUNS]`

use std::path::PathBuf;
use std::time::Instant;

use medico_bundle::Provenance;
use medico_export::bundle::{export_bundle, ExportRequest};
use medico_models::{Sam, SamConfig};
use medico_runtime::engines::{Engine, OrtEngine, TractEngine};
use ndarray::{ArrayD, IxDyn};

/// Deterministic pseudo-random values in [-scale, scale] (xorshift; no statistics needed).
fn noise(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(
        args.next()
            .expect("usage: vit_b_encoder_timing OUT_DIR [THREADS] [RUNS]"),
    );
    let threads: usize = args.next().map(|s| s.parse().unwrap()).unwrap_or(2);
    let runs: usize = args.next().map(|s| s.parse().unwrap()).unwrap_or(3);
    std::fs::create_dir_all(&out).unwrap();

    let sam = Sam::new(SamConfig::preset("vit_b").unwrap());
    let specs = sam.param_specs();
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = specs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let n: usize = p.shape.iter().product();
            let is_norm_weight = p.name.ends_with("weight") && p.shape.len() == 1;
            let values: Vec<f32> = if is_norm_weight {
                vec![1.0; n]
            } else {
                noise(n, i as u64 + 1, 0.02)
            };
            (
                p.name.clone(),
                p.shape.clone(),
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            (
                name.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes).unwrap(),
            )
        })
        .collect();
    let checkpoint = out.join("vit_b_random.safetensors");
    safetensors::serialize_to_file(views, None, &checkpoint).unwrap();

    let bundle_dir = out.join("vit_b_random_bundle");
    let started = Instant::now();
    export_bundle(&ExportRequest {
        checkpoint: &checkpoint,
        config: Some(sam.config.clone()),
        out: &bundle_dir,
        force: true,
        provenance: Provenance {
            name: Some("vit_b random weights (benchmark)".into()),
            ..Default::default()
        },
        overlay: None,
        semantic: None,
        propagation: None,
        interaction: None,
        masks: None,
        walk_overlay: None,
    })
    .unwrap();
    println!("export: {:.1} s", started.elapsed().as_secs_f64());

    let encoder = bundle_dir.join("encoder.onnx");
    let input = ArrayD::from_shape_vec(IxDyn(&[1, 3, 1024, 1024]), noise(3 * 1024 * 1024, 7, 2.0)).unwrap();
    let mut results = Vec::new();
    for kind in ["ort", "tract"] {
        let started = Instant::now();
        let mut engine: Box<dyn Engine> = match kind {
            "ort" => Box::new(OrtEngine::open(&encoder, threads).unwrap()),
            _ => Box::new(TractEngine::open(&encoder, threads).unwrap()),
        };
        let load = started.elapsed().as_secs_f64();
        let feeds = [("images", input.clone())];
        let warm = Instant::now();
        let mut out = engine.run(&feeds).unwrap();
        let warm = warm.elapsed().as_secs_f64();
        assert_eq!(out["image_embeddings"].shape(), &[1, 256, 64, 64]);
        let mut times: Vec<f64> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                engine.run(&feeds).unwrap();
                t.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let median = times[times.len() / 2];
        println!(
            "{kind}: load {load:.1} s, first run {warm:.2} s, median of {runs} runs {median:.2} s ({threads} threads)"
        );
        results.push((kind, median, out.remove("image_embeddings").unwrap()));
    }
    let diff = results[0]
        .2
        .iter()
        .zip(results[1].2.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!(
        "tract / ort encoder time ratio {:.2}; max |ort - tract| on the embedding {diff:.3e}",
        results[1].1 / results[0].1
    );
}
