//! `VolumeSession` with a real exported bundle (the `tiny` reference model) on a small synthetic volume:
//! embeddings come from the disk cache on a second session (no encoder run), prompts on any slice work,
//! propagation writes the annotated slice, and a correction re-decodes only the slices it influences.

use std::path::Path;

use medico_bundle::Bundle;
use medico_bundle::{PropagationDefaults, Provenance};
use medico_export::bundle::{export_bundle, ExportError, ExportRequest};
use medico_export::overlay::Overlay;
use medico_io::intensity::Intensity;
use medico_io::volume::{GridHeader, Volume};
use medico_models::prompt::BoxPrompt;
use medico_models::{load_checkpoint, SamConfig, StateDict};
use medico_runtime::engines::BackendChoice;
use medico_runtime::prediction::predictor::{DecoderUse, Predictor};
use medico_runtime::volume::mask_prompts::SlicePrompt;
use medico_runtime::volume::propagation::{PropagationConfig, SliceSegmenter, StopRule};
use medico_runtime::volume::session::VolumeSession;
use medico_tests::{reference_dir, scratch_dir};
use ndarray::Array3;

fn tiny_bundle(dir: &Path) -> Bundle {
    tiny_bundle_with(&dir.join("bundle"), None, None)
}

/// The `tiny` reference model exported to `out`, with `overlay` applied and propagation declared.
fn tiny_bundle_with(out: &Path, overlay: Option<&StateDict>, propagation: Option<PropagationDefaults>) -> Bundle {
    let reference = reference_dir("tiny");
    export_bundle(&ExportRequest {
        checkpoint: &reference.join("weights.safetensors"),
        config: Some(SamConfig::from_json_file(&reference.join("config.json")).unwrap()),
        out,
        force: true,
        provenance: Provenance::default(),
        overlay: overlay.map(|tensors| Overlay {
            origin: Path::new("flipped.safetensors"),
            tensors,
        }),
        semantic: None,
        propagation,
        interaction: None,
        masks: None,
        walk_overlay: None,
    })
    .unwrap();
    Bundle::open(out).unwrap()
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

/// A finetune of the tiny model that visibly differs: its mask decoder's hypernetworks negated, so every mask's
/// logits change sign.
fn flipped_decoder() -> StateDict {
    let weights = load_checkpoint(&reference_dir("tiny").join("weights.safetensors")).unwrap();
    let flipped: StateDict = weights
        .into_iter()
        .filter(|(key, _)| key.starts_with("mask_decoder.output_hypernetworks_mlps.") && key.contains(".layers.2."))
        .map(|(key, mut tensor)| {
            tensor.data.iter_mut().for_each(|v| *v = -*v);
            (key, tensor)
        })
        .collect();
    assert!(!flipped.is_empty(), "the tiny model has hypernetworks");
    flipped
}

#[test]
fn a_walk_decoder_answers_propagated_prompts_and_only_those() {
    let dir = scratch_dir("walk-decoder");
    let flipped = flipped_decoder();
    let walk = |blend| PropagationDefaults {
        decoder_blend: Some(blend),
        ..box_walk().declared()
    };
    let base = tiny_bundle_with(&dir.join("base"), None, None);
    let finetuned = tiny_bundle_with(&dir.join("finetuned"), Some(&flipped), None);
    // The finetune for clicks, the base checkpoint's decoder (blend 0) for walks.
    let split = tiny_bundle_with(&dir.join("split"), Some(&flipped), Some(walk(0.0)));
    assert!(split.manifest.files.contains_key("propagation_decoder_prompt.onnx"));

    let bbox = BoxPrompt {
        x0: 10.0,
        y0: 8.0,
        x1: 30.0,
        y1: 22.0,
    };
    let logits = |bundle: &Bundle, usage| {
        let mut predictor = Predictor::open(bundle, BackendChoice::Tract, 1).unwrap();
        let image = vec![90u8; 30 * 40 * 3];
        predictor.set_image(&image, (30, 40)).unwrap();
        predictor
            .predict_with(usage, &[], Some(&bbox), None, false)
            .unwrap()
            .logits[0]
            .clone()
    };
    let interactive = logits(&split, DecoderUse::Interactive);
    assert_eq!(
        interactive,
        logits(&finetuned, DecoderUse::Interactive),
        "clicks: the finetune"
    );
    assert_eq!(
        logits(&split, DecoderUse::Propagation),
        logits(&base, DecoderUse::Interactive),
        "walks: the base checkpoint's decoder"
    );
    assert_ne!(
        interactive,
        logits(&base, DecoderUse::Interactive),
        "the two decoders differ"
    );
    assert_eq!(
        logits(&finetuned, DecoderUse::Propagation),
        interactive,
        "no walk decoder: walks use the interactive one"
    );

    // In a session: annotations from the interactive decoder, propagated slices from the walk decoder.
    let cache = dir.join("cache");
    let mut split_session = open(&split, &cache);
    let mut base_session = open(&base, &cache);
    let mut finetuned_session = open(&finetuned, &cache);
    assert_eq!(
        split_session.annotate(3, &[], Some(&bbox), false).unwrap(),
        finetuned_session.annotate(3, &[], Some(&bbox), false).unwrap()
    );
    let derived = SlicePrompt {
        points: Vec::new(),
        bbox: Some(bbox),
        mask_logits: None,
    };
    let propagated = split_session.segment(4, &derived).unwrap();
    assert_eq!(propagated.mask, base_session.segment(4, &derived).unwrap().mask);
    assert_ne!(propagated.mask, finetuned_session.segment(4, &derived).unwrap().mask);

    // A blend needs the finetune it blends toward.
    let reference = reference_dir("tiny");
    let refused = export_bundle(&ExportRequest {
        checkpoint: &reference.join("weights.safetensors"),
        config: Some(SamConfig::from_json_file(&reference.join("config.json")).unwrap()),
        out: &dir.join("refused"),
        force: true,
        provenance: Provenance::default(),
        overlay: None,
        semantic: None,
        propagation: Some(walk(0.5)),
        interaction: None,
        masks: None,
        walk_overlay: None,
    })
    .unwrap_err();
    assert!(matches!(refused, ExportError::BlendWithoutOverlay { .. }), "{refused}");
}
