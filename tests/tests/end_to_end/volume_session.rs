//! `VolumeSession` with a real exported bundle (the `tiny` reference model) on a small synthetic volume:
//! embeddings come from the disk cache on a second session (no encoder run), prompts on any slice work,
//! propagation writes the annotated slice, and a correction re-decodes only the slices it influences.

use std::path::Path;

use medico_bundle::Bundle;
use medico_bundle::Provenance;
use medico_export::bundle::{export_bundle, ExportRequest};
use medico_io::intensity::Intensity;
use medico_io::volume::{GridHeader, Volume};
use medico_models::prompt::BoxPrompt;
use medico_models::SamConfig;
use medico_runtime::engines::BackendChoice;
use medico_runtime::volume::propagation::{PropagationConfig, StopRule};
use medico_runtime::volume::session::VolumeSession;
use medico_tests::{reference_dir, scratch_dir};
use ndarray::Array3;

fn tiny_bundle(dir: &Path) -> Bundle {
    let reference = reference_dir("tiny");
    let out = dir.join("bundle");
    export_bundle(&ExportRequest {
        checkpoint: &reference.join("weights.safetensors"),
        config: Some(SamConfig::from_json_file(&reference.join("config.json")).unwrap()),
        out: &out,
        force: true,
        provenance: Provenance::default(),
        overlay: None,
        semantic: None,
        propagation: None,
        interaction: None,
    })
    .unwrap();
    Bundle::open(&out).unwrap()
}

/// 40 x 30 x 7 voxels: a bright block on slices 1..=5, brighter towards the centre.
fn block_volume() -> Volume {
    let data = Array3::from_shape_fn((40, 30, 7), |(i, j, k)| {
        let inside = (10..30).contains(&i) && (8..22).contains(&j) && (1..=5).contains(&k);
        if inside {
            100.0 + 10.0 * (3.0 - (k as f32 - 3.0).abs())
        } else {
            (i + j) as f32 * 0.1
        }
    });
    Volume {
        data,
        affine: [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 2.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ],
        grid: GridHeader::Nifti1(Box::default()),
        format: "synthetic".into(),
        notes: Vec::new(),
    }
}

fn open(bundle: &Bundle, cache: &Path) -> VolumeSession {
    VolumeSession::open(
        block_volume(),
        2,
        Intensity::default(),
        bundle,
        BackendChoice::Tract,
        1,
        Some(cache),
    )
    .unwrap()
}

#[test]
fn embeddings_are_cached_and_corrections_touch_only_their_neighbourhood() {
    let dir = scratch_dir("volume-session");
    let bundle = tiny_bundle(&dir);
    let cache = dir.join("cache");
    let _ = std::fs::remove_dir_all(&cache);
    let bbox = BoxPrompt {
        x0: 10.0,
        y0: 8.0,
        x1: 30.0,
        y1: 22.0,
    };

    let mut first = open(&bundle, &cache);
    first.precompute(0..7, |_| {}).unwrap();
    assert_eq!(first.stats().encoder_runs, 7);
    let mask = first.annotate(3, &[], Some(&bbox), false).unwrap();
    assert_eq!(mask.len(), 30 * 40);

    // A second session on the same volume: everything from the cache.
    let mut second = open(&bundle, &cache);
    second.annotate(3, &[], Some(&bbox), false).unwrap();
    let result = second.propagate(box_walk()).unwrap().clone();
    assert_eq!(second.stats().encoder_runs, 0);
    assert!(second.stats().cache_hits >= 1);
    assert!(result.masks.contains_key(&3));
    assert_eq!(result.masks[&3], mask, "same mask from cached embeddings");

    // Add an annotation on slice 5, then correct it: only the gap 4 and the walk above 5 are re-decoded.
    second.annotate(5, &[], Some(&bbox), false).unwrap();
    second.propagate(box_walk()).unwrap();
    let before = second.stats().decoder_runs;
    let corrected = second
        .correct(5, &[], Some(&BoxPrompt { x0: 12.0, ..bbox }))
        .unwrap()
        .clone();
    let decoded = second.stats().decoder_runs - before;
    // 1 for the new annotation, 1 for gap slice 4, 1 for slice 6 (the walk above the highest annotation).
    assert_eq!(decoded, 3, "{corrected:?}");
    assert_eq!(second.stats().encoder_runs, 0);
}

/// Box projection, never stopping but at an empty mask (the tiny model has random weights).
fn box_walk() -> PropagationConfig {
    PropagationConfig {
        stop: StopRule::NEVER,
        projection: "box".parse().unwrap(),
        ..PropagationConfig::default()
    }
}
