//! Parity of the SAM definition on tch (CPU, f32) with the official implementation's reference outputs.

use std::path::PathBuf;

use medico_train::parity::{run_lite_parity, run_parity, ParityReport};
use tch::{Device, Kind};

/// `shared/reference`, beside the checkout (or `$MEDICO_SHARED/reference`).
fn reference_dir(name: &str) -> PathBuf {
    let shared = std::env::var_os("MEDICO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    shared.join("reference").join(name)
}

const TOLERANCE: f64 = 1e-4;

fn check(report: &ParityReport, cases: usize) {
    println!("{}", report.render());
    for (name, err) in &report.encoder {
        assert!(
            *err <= TOLERANCE,
            "encoder output {name}: max|Δ| {err:e} > {TOLERANCE:e}"
        );
    }
    for c in &report.cases {
        assert!(c.coords <= 1e-4, "{}: prompt coordinates off by {:e}", c.name, c.coords);
        for (what, err) in [
            ("sparse embeddings", Some(c.sparse_embeddings)),
            ("dense embeddings", c.dense_embeddings),
            ("low-res logits", Some(c.low_res_logits)),
            ("IoU predictions", Some(c.iou_predictions)),
            ("full-size logits", c.mask_logits),
        ] {
            if let Some(err) = err {
                assert!(err <= TOLERANCE, "{}: {what} max|Δ| {err:e} > {TOLERANCE:e}", c.name);
            }
        }
        assert_eq!(
            c.mask_pixels_differing_beyond_tolerance, 0,
            "{}: {} mask pixels differ where |logit| >= 1e-3",
            c.name, c.mask_pixels_differing_beyond_tolerance
        );
    }
    assert_eq!(report.cases.len(), cases, "every prompt case, multimask and single");
}

#[test]
fn tiny_matches_the_official_implementation() {
    check(
        &run_parity(&reference_dir("tiny"), Device::Cpu, Kind::Float).expect("parity run"),
        12,
    );
}

#[test]
fn small_matches_the_official_implementation() {
    check(
        &run_parity(&reference_dir("small"), Device::Cpu, Kind::Float).expect("parity run"),
        12,
    );
}

/// The TinyViT encoder and SAM's decoder with LiteMedSAM's real weights against its own PyTorch code:
/// embeddings, every stage, logits and IoU within 1e-4 of max(1, |reference|), masks identical except
/// where |logit| < 1e-3.
#[test]
fn lite_medsam_matches_its_own_code() {
    let report = run_lite_parity(
        &reference_dir("litemedsam"),
        &medico_tests::lite_medsam_checkpoint(),
        Device::Cpu,
        Kind::Float,
    )
    .expect("parity run");
    let stages: Vec<&str> = report.encoder.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        stages,
        [
            "patch_embed",
            "layer0",
            "layer1",
            "layer2",
            "layer3",
            "image_embeddings"
        ]
    );
    check(&report, 6);
}
