//! Exported graphs on ONNX Runtime and tract reproduce the official implementation: encoder embeddings,
//! low-res logits, IoU predictions and binary masks for every prompt case the ONNX interface can express,
//! and the decoder behaves as the official `SamOnnxModel` export on the same feeds.

use std::collections::HashMap;
use std::path::Path;

use crate::click_decoder::ClickDecoder;
use medico_models::prompt::{sparse_prompt, BoxPrompt, CoordinateMap, Point};
use medico_models::Sam;
use medico_runtime::engines::{multiply_adds, Engine, OrtEngine, TractEngine};
use medico_runtime::prediction::postprocess::upscale_logits;
use medico_tests::{
    export_reference, flipped_pixels, max_abs_diff, onnx_decoder_feeds, read_arrays, reference_dir, select_outputs,
};
use ndarray::{ArrayD, Axis};
use serde_json::Value;

const TOLERANCE: f64 = 1e-4;

/// One prompt case of `cases.json`, fed through the official ONNX interface.
struct Case {
    name: String,
    multimask: bool,
    feeds: Vec<(&'static str, ArrayD<f32>)>,
    reference: HashMap<String, ArrayD<f32>>,
}

fn cases(name: &str, sam: &Sam) -> (Vec<Case>, (usize, usize), (usize, usize)) {
    let dir = reference_dir(name);
    let list: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let hw = |key: &str| {
        let v = &list[key];
        (v[0].as_u64().unwrap() as usize, v[1].as_u64().unwrap() as usize)
    };
    let (original_hw, input_hw) = (hw("original_size_hw"), hw("input_size_hw"));
    let map = CoordinateMap::new(original_hw, sam.config.img_size);
    let low = sam.config.low_res_size();
    let embeddings = read_arrays(&dir.join("embeddings.safetensors"))
        .remove("image_embeddings")
        .unwrap();
    let mut out = Vec::new();
    for spec in list["cases"].as_array().unwrap() {
        let points: Vec<Point> = spec["point_coords"]
            .as_array()
            .map(|pts| {
                pts.iter()
                    .zip(spec["point_labels"].as_array().unwrap())
                    .map(|(p, l)| Point {
                        x: p[0].as_f64().unwrap(),
                        y: p[1].as_f64().unwrap(),
                        positive: l.as_i64() == Some(1),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let bbox = spec["box"].as_array().map(|b| BoxPrompt {
            x0: b[0].as_f64().unwrap(),
            y0: b[1].as_f64().unwrap(),
            x1: b[2].as_f64().unwrap(),
            y1: b[3].as_f64().unwrap(),
        });
        // A mask-only prompt cannot be expressed through the ONNX interface (see onnx_io.json).
        let Some((coords, labels)) = sparse_prompt(&points, bbox.as_ref(), &map) else {
            continue;
        };
        let reference = read_arrays(&dir.join(spec["file"].as_str().unwrap()));
        let feeds = onnx_decoder_feeds(
            &embeddings,
            (coords, labels),
            reference.get("mask_input").cloned(),
            low,
            original_hw,
        );
        out.push(Case {
            name: spec["name"].as_str().unwrap().to_string(),
            multimask: spec["multimask_output"].as_bool().unwrap(),
            feeds,
            reference,
        });
    }
    (out, input_hw, original_hw)
}

fn without(feeds: &[(&'static str, ArrayD<f32>)], skip: &str) -> Vec<(&'static str, ArrayD<f32>)> {
    feeds.iter().filter(|(n, _)| *n != skip).cloned().collect()
}

fn check_encoder(engine: &mut dyn Engine, name: &str) -> f64 {
    let dir = reference_dir(name);
    let input = read_arrays(&dir.join("preprocess.safetensors"))
        .remove("input")
        .unwrap();
    let expected = read_arrays(&dir.join("embeddings.safetensors"))
        .remove("image_embeddings")
        .unwrap();
    let out = engine.run(&[("images", input)]).unwrap();
    max_abs_diff(&out["image_embeddings"], &expected)
}

fn check_config(name: &str) {
    let (dir, sam) = export_reference(name);
    let threads = 2;
    let mut ort_encoder = OrtEngine::open(&dir.join("encoder.onnx"), threads).unwrap();
    let mut tract_encoder = TractEngine::open(&dir.join("encoder.onnx"), threads).unwrap();
    let ort_err = check_encoder(&mut ort_encoder, name);
    let tract_err = check_encoder(&mut tract_encoder, name);
    println!("{name}: encoder embeddings max|Δ| ort {ort_err:.3e}, tract {tract_err:.3e}");
    assert!(ort_err <= TOLERANCE && tract_err <= TOLERANCE);

    let mut ort_decoder = OrtEngine::open(&dir.join("decoder.onnx"), threads).unwrap();
    let mut tract_decoder = TractEngine::open(&dir.join("decoder_lowres.onnx"), threads).unwrap();
    let (cases, input_hw, original_hw) = cases(name, &sam);
    assert_eq!(cases.len(), 10, "every case but the two mask-only ones");
    for case in &cases {
        let expected_low = &case.reference["low_res_logits"];
        let expected_iou = &case.reference["iou_predictions"];
        let expected_masks = &case.reference["masks"];

        let ort = ort_decoder.run(&case.feeds).unwrap();
        let low = select_outputs(&ort["low_res_masks"], case.multimask);
        let iou = select_outputs(&ort["iou_predictions"], case.multimask);
        let masks = select_outputs(&ort["masks"], case.multimask);
        let (ort_low, ort_iou) = (max_abs_diff(&low, expected_low), max_abs_diff(&iou, expected_iou));
        let ort_flipped = flipped_pixels(&masks, expected_masks);

        let tract = tract_decoder.run(&without(&case.feeds, "orig_im_size")).unwrap();
        let low = select_outputs(&tract["low_res_masks"], case.multimask);
        let iou = select_outputs(&tract["iou_predictions"], case.multimask);
        let (tract_low, tract_iou) = (max_abs_diff(&low, expected_low), max_abs_diff(&iou, expected_iou));
        let tract_masks = upscale_all(&low, sam.config.img_size, input_hw, original_hw);
        let tract_flipped = flipped_pixels(&tract_masks, expected_masks);
        println!(
            "{name}/{:<18} ort: low-res {ort_low:.3e} iou {ort_iou:.3e} flipped {ort_flipped} | tract: low-res {tract_low:.3e} iou {tract_iou:.3e} flipped {tract_flipped}",
            case.name
        );
        for err in [ort_low, ort_iou, tract_low, tract_iou] {
            assert!(err <= TOLERANCE, "{}: max|Δ| {err:e}", case.name);
        }
        assert_eq!(ort_flipped + tract_flipped, 0, "{}: binary masks differ", case.name);
    }
    check_click_decoder(name, &dir, &cases, sam.config.img_size, (input_hw, original_hw));
}

/// Low-res logits `[M, 4E, 4E]` → masks at the original size `[M, h, w]`, as the predictor does.
fn upscale_all(
    low: &ArrayD<f32>,
    input_size: usize,
    input_hw: (usize, usize),
    original_hw: (usize, usize),
) -> ArrayD<f32> {
    let upscaled: Vec<ArrayD<f32>> = low
        .outer_iter()
        .map(|m| {
            let m2 = m.into_dimensionality::<ndarray::Ix2>().unwrap();
            upscale_logits(m2, input_size, input_hw, original_hw).into_dyn()
        })
        .collect();
    let views: Vec<_> = upscaled.iter().map(|a| a.view()).collect();
    ndarray::stack(Axis(0), &views).unwrap()
}

/// The per-click pair (`decoder_prepare` + `decoder_prompt`) reproduces the official outputs on every case
/// without a mask prompt, on both engines.
fn check_click_decoder(
    name: &str,
    dir: &Path,
    cases: &[Case],
    input_size: usize,
    (input_hw, original_hw): ((usize, usize), (usize, usize)),
) {
    for engine in ["ort", "tract"] {
        let mut click = ClickDecoder::open(dir, engine);
        let mut checked = 0;
        for case in cases {
            let Some(out) = click.run(&case.feeds) else {
                continue;
            };
            let low = select_outputs(&out["low_res_masks"], case.multimask);
            let iou = select_outputs(&out["iou_predictions"], case.multimask);
            let low_err = max_abs_diff(&low, &case.reference["low_res_logits"]);
            let iou_err = max_abs_diff(&iou, &case.reference["iou_predictions"]);
            let masks = upscale_all(&low, input_size, input_hw, original_hw);
            let flipped = flipped_pixels(&masks, &case.reference["masks"]);
            println!(
                "{name}/click/{engine}/{:<18} low-res {low_err:.3e} iou {iou_err:.3e} flipped {flipped}",
                case.name
            );
            assert!(low_err <= TOLERANCE && iou_err <= TOLERANCE, "{engine}/{}", case.name);
            assert_eq!(flipped, 0, "{engine}/{}: binary masks differ", case.name);
            checked += 1;
        }
        assert!(checked >= 5, "{engine}: only {checked} cases without a mask prompt");
    }
}

#[test]
fn tiny_graphs_match_the_official_outputs_on_ort_and_tract() {
    check_config("tiny");
}

#[test]
fn small_graphs_match_the_official_outputs_on_ort_and_tract() {
    check_config("small");
}

fn io_signature(path: &Path) -> Vec<(String, String, usize)> {
    let value: Value =
        serde_json::from_str(&std::fs::read_to_string(reference_dir("tiny").join("onnx_io.json")).unwrap()).unwrap();
    let file = path.file_name().unwrap().to_str().unwrap();
    let model = &value["models"][file];
    ["inputs", "outputs"]
        .iter()
        .flat_map(|kind| model[kind].as_array().unwrap().clone())
        .map(|v| {
            (
                v["name"].as_str().unwrap().to_string(),
                v["dtype"].as_str().unwrap().to_string(),
                v["shape"].as_array().unwrap().len(),
            )
        })
        .collect()
}

fn our_signature(path: &Path) -> Vec<(String, String, usize)> {
    use onnx_pb::*;
    let bytes = std::fs::read(path).unwrap();
    let model = decode_model(&bytes);
    let graph = model.graph.unwrap();
    graph
        .input
        .iter()
        .chain(&graph.output)
        .map(|v| {
            let Some(TypeValue::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.clone()) else {
                panic!("{}: not a tensor", v.name)
            };
            let dtype = if t.elem_type == 1 { "float" } else { "other" };
            (v.name.clone(), dtype.to_string(), t.shape.unwrap().dim.len())
        })
        .collect()
}

/// Protobuf decoding of a model, through the types the exporter writes with.
mod onnx_pb {
    pub use medico_export::pb::type_proto::Value as TypeValue;
    pub fn decode_model(bytes: &[u8]) -> medico_export::pb::ModelProto {
        medico_export::decode_model(bytes).unwrap()
    }
}

#[test]
fn decoder_speaks_the_official_onnx_interface() {
    let (dir, sam) = export_reference("tiny");
    let official_dir = reference_dir("tiny");
    for (ours, theirs) in [
        ("decoder.onnx", "decoder_official.onnx"),
        ("decoder_single.onnx", "decoder_official_single.onnx"),
    ] {
        assert_eq!(
            our_signature(&dir.join(ours)),
            io_signature(&official_dir.join(theirs)),
            "{ours}: names, dtypes and ranks"
        );
        let mut mine = OrtEngine::open(&dir.join(ours), 2).unwrap();
        let mut official = OrtEngine::open(&official_dir.join(theirs), 2).unwrap();
        // The official feed of onnx_case.safetensors, then every expressible prompt case.
        let onnx_case = read_arrays(&official_dir.join("onnx_case.safetensors"));
        let mut feeds: Vec<Vec<(&'static str, ArrayD<f32>)>> = vec![[
            "image_embeddings",
            "point_coords",
            "point_labels",
            "mask_input",
            "has_mask_input",
            "orig_im_size",
        ]
        .iter()
        .map(|&k| (k, onnx_case[k].clone()))
        .collect()];
        feeds.extend(cases("tiny", &sam).0.into_iter().map(|c| c.feeds));
        for (i, feed) in feeds.iter().enumerate() {
            let a = mine.run(feed).unwrap();
            let b = official.run(feed).unwrap();
            let low = max_abs_diff(&a["low_res_masks"], &b["low_res_masks"]);
            let iou = max_abs_diff(&a["iou_predictions"], &b["iou_predictions"]);
            let flipped = flipped_pixels(&a["masks"], &b["masks"].mapv(|v| if v > 0.0 { 1.0 } else { 0.0 }));
            println!("{ours} feed {i}: low-res {low:.3e} iou {iou:.3e} flipped {flipped}");
            assert!(low <= TOLERANCE && iou <= TOLERANCE, "{ours} feed {i}");
            assert_eq!(flipped, 0, "{ours} feed {i}: masks differ");
        }
        if ours == "decoder.onnx" {
            let out = mine.run(&feeds[0]).unwrap();
            let expected = &onnx_case["out_low_res_masks"];
            assert!(max_abs_diff(&out["low_res_masks"], expected) <= TOLERANCE);
        }
    }
}

/// tract's cost model counts a matrix product's multiply-adds exactly, and the per-click decoder does at
/// most two thirds of the multiply-adds of the full low-res decoder for the same box (the `small`
/// reference: 63 %; full-size SAM decoders: see `medico-cli bench`).
#[test]
fn the_click_decoder_does_a_third_less_work() {
    let (dir, _sam) = export_reference("small");
    let probe = dir.join("matmul_probe.onnx");
    std::fs::write(&probe, medico_export::to_bytes(&medico_export::matmul_model(24))).unwrap();
    assert_eq!(multiply_adds(&probe, &[]).unwrap(), 24 * 24 * 24);
    let points: [(&str, &[usize]); 2] = [("point_coords", &[1, 2, 2]), ("point_labels", &[1, 2])];
    let full = multiply_adds(&dir.join("decoder_lowres.onnx"), &points).unwrap();
    let click = multiply_adds(&dir.join("decoder_prompt.onnx"), &points).unwrap();
    let prepare = multiply_adds(&dir.join("decoder_prepare.onnx"), &[]).unwrap();
    println!("multiply-adds: low-res decoder {full}, per click {click}, preparation {prepare}");
    assert!(click * 3 < full * 2, "per click {click} against {full}");
    assert!(click + prepare < full, "the split must not add work");
}
