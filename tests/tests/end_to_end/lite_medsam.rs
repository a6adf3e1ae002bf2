//! LiteMedSAM (TinyViT encoder, real weights) exported to a bundle reproduces LiteMedSAM's own PyTorch code
//! (`shared/reference/litemedsam`) on ONNX Runtime and tract: embeddings, low-res logits, IoU predictions
//! and masks; medico's preprocessing reproduces the upstream `cv2.INTER_AREA` + min-max input; the
//! predictor's masks from `image.png` agree with the reference masks.

use std::collections::HashMap;
use std::path::Path;

use crate::click_decoder::ClickDecoder;
use medico_bundle::{Bundle, GraphRole, Provenance};
use medico_export::{export_bundle, ExportRequest};
use medico_io::preprocess::{encoder_input, resize_rgb};
use medico_models::preprocessing::ResizeMethod;
use medico_models::prompt::{BoxPrompt, LABEL_BOX_BOTTOM_RIGHT, LABEL_BOX_TOP_LEFT, LABEL_PADDING};
use medico_models::Preprocessing;
use medico_runtime::engines::{Engine, OrtEngine, TractEngine};
use medico_runtime::prediction::postprocess::upscale_logits;
use medico_runtime::prediction::predictor::{BackendChoice, Predictor};
use medico_tests::{
    flipped_pixels, lite_medsam_checkpoint, onnx_decoder_feeds, read_arrays, reference_dir, scratch_dir,
    select_outputs, Scratch,
};
use ndarray::{ArrayD, Axis};
use serde_json::Value;

/// An encoder and a decoder on one engine.
type EnginePair = (Box<dyn Engine>, Box<dyn Engine>);

/// Deviations are scaled: `|Δ| / max(1, |reference|)`.
const TOLERANCE: f64 = 1e-4;

fn scaled_diff(ours: &ArrayD<f32>, reference: &ArrayD<f32>) -> f64 {
    assert_eq!(ours.shape(), reference.shape(), "shape mismatch");
    ours.iter()
        .zip(reference)
        .map(|(a, r)| (a - r).abs() as f64 / (r.abs() as f64).max(1.0))
        .fold(0.0, f64::max)
}

fn export() -> (Scratch, Bundle) {
    let scratch = scratch_dir("litemedsam");
    let out = scratch.join("bundle");
    let manifest = export_bundle(&ExportRequest {
        checkpoint: &lite_medsam_checkpoint(),
        config: None,
        out: &out,
        force: false,
        provenance: Provenance::default(),
        overlay: None,
        semantic: None,
        propagation: None,
        interaction: None,
        masks: None,
        walk_overlay: None,
    })
    .expect("export LiteMedSAM with the architecture inferred from the checkpoint");
    assert_eq!(manifest.architecture, "lite_medsam");
    assert_eq!(manifest.preprocessing, Preprocessing::LITE_MEDSAM);
    assert_eq!(manifest.input_size, 256);
    let bundle = Bundle::open(&out).unwrap();
    (scratch, bundle)
}

/// The reference's prompt feeds for one case, in the 256 frame, as the ONNX decoder takes them.
fn decoder_feeds(
    dir: &Path,
    name: &str,
    case: &Value,
    embeddings: &ArrayD<f32>,
    original_hw: (usize, usize),
) -> Vec<(&'static str, ArrayD<f32>)> {
    let data = read_arrays(&dir.join(format!("cases/{name}.safetensors")));
    let mut coords: Vec<f32> = data["point_coords"].iter().copied().collect();
    let mut labels: Vec<f32> = data["point_labels"].iter().copied().collect();
    if data["box"].len() == 4 {
        coords.extend(data["box"].iter().copied());
        labels.extend([LABEL_BOX_TOP_LEFT, LABEL_BOX_BOTTOM_RIGHT]);
    } else {
        coords.extend([0.0, 0.0]);
        labels.push(LABEL_PADDING);
    }
    let mask = case["mask_from"].as_str().map(|source| {
        let fed = read_arrays(&dir.join(format!("cases/{source}.safetensors")))
            .remove("low_res_logits")
            .unwrap();
        fed.index_axis(Axis(0), 0).to_owned().into_dyn()
    });
    onnx_decoder_feeds(embeddings, (coords, labels), mask, 256, original_hw)
}

#[test]
fn lite_medsam_bundle_matches_its_own_code_on_ort_and_tract() {
    let (_scratch, bundle) = export();
    let dir = reference_dir("litemedsam");
    let list: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let hw = |v: &Value| (v[0].as_u64().unwrap() as usize, v[1].as_u64().unwrap() as usize);
    let (original_hw, input_hw) = (hw(&list["original_size"]), hw(&list["input_size"]));
    let input = read_arrays(&dir.join("preprocess.safetensors"))
        .remove("input")
        .unwrap();
    let reference_embeddings = read_arrays(&dir.join("embeddings.safetensors"))
        .remove("image_embeddings")
        .unwrap();
    let graph = |role: GraphRole| bundle.graph(role).unwrap();
    let mut engines: Vec<(&str, EnginePair)> = vec![
        (
            "ort",
            (
                Box::new(OrtEngine::open(&graph(GraphRole::Encoder), 2).unwrap()),
                Box::new(OrtEngine::open(&graph(GraphRole::Decoder), 2).unwrap()),
            ),
        ),
        (
            "tract",
            (
                Box::new(TractEngine::open(&graph(GraphRole::Encoder), 2).unwrap()),
                Box::new(TractEngine::open(&graph(GraphRole::DecoderLowres), 2).unwrap()),
            ),
        ),
    ];
    for (engine, (encoder, decoder)) in engines.iter_mut() {
        let ours = encoder
            .run(&[("images", input.clone())])
            .unwrap()
            .remove("image_embeddings")
            .unwrap();
        let embedding_err = scaled_diff(&ours, &reference_embeddings);
        println!("litemedsam/{engine}: image embeddings max scaled |Δ| {embedding_err:.3e}");
        assert!(embedding_err <= TOLERANCE, "{engine}: embeddings {embedding_err:e}");
        let cases = list["cases"].as_object().unwrap();
        assert_eq!(cases.len(), 6);
        for (name, case) in cases {
            let reference = read_arrays(&dir.join(format!("cases/{name}.safetensors")));
            let multimask = case["multimask"].as_bool().unwrap();
            let mut feeds = decoder_feeds(&dir, name, case, &reference_embeddings, original_hw);
            if *engine == "tract" {
                feeds.retain(|(n, _)| *n != "orig_im_size");
            }
            let out = decoder.run(&feeds).unwrap();
            let low = select_outputs(&out["low_res_masks"], multimask);
            let iou = select_outputs(&out["iou_predictions"], multimask);
            let low_err = scaled_diff(&low, &reference["low_res_logits"]);
            let iou_err = scaled_diff(&iou, &reference["iou_predictions"]);
            // End to end from our own embeddings: binary masks at the original size.
            feeds[0].1 = ours.clone();
            let own = select_outputs(&decoder.run(&feeds).unwrap()["low_res_masks"], multimask);
            let upscaled: Vec<ArrayD<f32>> = own
                .outer_iter()
                .map(|m| {
                    let m2 = m.into_dimensionality::<ndarray::Ix2>().unwrap();
                    upscale_logits(m2, 256, input_hw, original_hw).into_dyn()
                })
                .collect();
            let views: Vec<_> = upscaled.iter().map(|a| a.view()).collect();
            let flipped = flipped_pixels(&ndarray::stack(Axis(0), &views).unwrap(), &reference["masks"]);
            println!(
                "litemedsam/{engine}/{name:<22} low-res {low_err:.3e}  iou {iou_err:.3e}  mask pixels flipped (|logit| >= 1e-3) {flipped}"
            );
            assert!(low_err <= TOLERANCE && iou_err <= TOLERANCE, "{engine}/{name}");
            assert_eq!(flipped, 0, "{engine}/{name}: binary masks differ");
        }
    }
}

#[test]
fn lite_medsam_click_decoder_matches_its_own_code_on_ort_and_tract() {
    let (_scratch, bundle) = export();
    let dir = reference_dir("litemedsam");
    let list: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let original_hw = (
        list["original_size"][0].as_u64().unwrap() as usize,
        list["original_size"][1].as_u64().unwrap() as usize,
    );
    let embeddings = read_arrays(&dir.join("embeddings.safetensors"))
        .remove("image_embeddings")
        .unwrap();
    for engine in ["ort", "tract"] {
        let mut click = ClickDecoder::open(&bundle.dir, engine);
        let mut checked = 0;
        for (name, case) in list["cases"].as_object().unwrap() {
            let feeds = decoder_feeds(&dir, name, case, &embeddings, original_hw);
            let Some(out) = click.run(&feeds) else {
                continue;
            };
            let reference = read_arrays(&dir.join(format!("cases/{name}.safetensors")));
            let multimask = case["multimask"].as_bool().unwrap();
            let low = select_outputs(&out["low_res_masks"], multimask);
            let iou = select_outputs(&out["iou_predictions"], multimask);
            let low_err = scaled_diff(&low, &reference["low_res_logits"]);
            let iou_err = scaled_diff(&iou, &reference["iou_predictions"]);
            println!("litemedsam/click/{engine}/{name:<22} low-res {low_err:.3e}  iou {iou_err:.3e}");
            assert!(low_err <= TOLERANCE && iou_err <= TOLERANCE, "{engine}/{name}");
            checked += 1;
        }
        assert!(checked >= 4, "{engine}: only {checked} cases without a mask prompt");
    }
}

#[test]
fn lite_medsam_preprocessing_reproduces_cv2_inter_area_and_min_max() {
    let dir = reference_dir("litemedsam");
    let pre = read_arrays(&dir.join("preprocess.safetensors"));
    let image = image::open(dir.join("image.png")).unwrap().to_luma8();
    let (w, h) = image.dimensions();
    let rgb: Vec<u8> = image.pixels().flat_map(|p| [p.0[0]; 3]).collect();
    let original_hw = (h as usize, w as usize);
    let resized = resize_rgb(&rgb, original_hw, ResizeMethod::Cv2Area, (256, 216));
    let expected: Vec<u8> = pre["resized_image"].iter().map(|&v| v as u8).collect();
    let differing = resized.iter().zip(&expected).filter(|(a, b)| a != b).count();
    println!(
        "litemedsam: resized_image bytes differing from cv2.INTER_AREA: {differing} of {}",
        expected.len()
    );
    assert_eq!(differing, 0);
    let (input, resized_hw) = encoder_input(
        &rgb,
        original_hw,
        256,
        &Preprocessing::LITE_MEDSAM,
        ([0.0; 3], [1.0; 3]),
    );
    assert_eq!(resized_hw, (256, 216));
    let err = scaled_diff(&input.into_dyn(), &pre["input"]);
    println!("litemedsam: encoder input max |Δ| {err:.3e}");
    assert!(err <= 1e-7, "encoder input {err:e}");
}

#[test]
fn lite_medsam_predictor_masks_from_the_image_agree_with_the_reference() {
    let (_scratch, bundle) = export();
    let dir = reference_dir("litemedsam");
    let image = image::open(dir.join("image.png")).unwrap().to_luma8();
    let (w, h) = image.dimensions();
    let rgb: Vec<u8> = image.pixels().flat_map(|p| [p.0[0]; 3]).collect();
    let list: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let b = &list["cases"]["box_single"]["box"];
    let bbox = BoxPrompt {
        x0: b[0].as_f64().unwrap(),
        y0: b[1].as_f64().unwrap(),
        x1: b[2].as_f64().unwrap(),
        y1: b[3].as_f64().unwrap(),
    };
    let reference: HashMap<String, ArrayD<f32>> = read_arrays(&dir.join("cases/box_single.safetensors"));
    for backend in [BackendChoice::Ort, BackendChoice::Tract] {
        let mut predictor = Predictor::open(&bundle, backend, 2).unwrap();
        predictor.set_image(&rgb, (h as usize, w as usize)).unwrap();
        let prediction = predictor.predict(&[], Some(&bbox), None, false).unwrap();
        let ours = &prediction.logits[0];
        let agree = ours
            .iter()
            .zip(reference["masks"].iter())
            .filter(|(l, r)| (**l > 0.0) == (**r > 0.5))
            .count();
        let fraction = agree as f64 / ours.len() as f64;
        println!(
            "litemedsam/{backend:?}: box_single mask agreement from image.png {:.4} %",
            100.0 * fraction
        );
        assert!(fraction >= 0.995, "{backend:?}: {fraction}");
    }
}
