//! `medico-cli segment` on 2D images as a user runs it: the official predictor's masks from `image.png` on
//! both engines, and every bad input rejected with a one-line message, the right exit code and no output.

use crate::common::*;

/// The reference binary mask `index` of a case file, as 0/255 bytes.
fn reference_mask(case: &str, index: usize) -> Vec<u8> {
    let bytes = std::fs::read(shared().join("reference/small/cases").join(case)).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let masks = file.tensor("masks").unwrap();
    let plane = masks.shape()[1] * masks.shape()[2];
    masks.data()[index * plane..(index + 1) * plane]
        .iter()
        .map(|&v| v * 255)
        .collect()
}

/// Number of pixels that differ (sizes must match).
fn differing(a: &[u8], b: &[u8]) -> usize {
    assert_eq!(a.len(), b.len(), "mask sizes differ");
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}

#[test]
fn segment_reproduces_the_official_predictor_on_both_engines() {
    let dir = scratch("parity");
    let bundle = export_small(&dir);
    let image = shared().join("reference/small/image.png");
    for backend in ["ort", "tract"] {
        let out = dir.join(format!("box-{backend}.png"));
        let run = medico(&[
            "segment",
            image.to_str().unwrap(),
            "--model",
            bundle.to_str().unwrap(),
            "--box",
            "60,96,210,307",
            "--backend",
            backend,
            "--json",
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(run.status.success(), "{backend}: {}", text(&run.stderr));
        let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
        assert_eq!(report["backend"], backend);
        let mask = image::open(&out).unwrap().to_luma8().into_raw();
        assert_eq!(
            differing(&mask, &reference_mask("box_single.safetensors", 0)),
            0,
            "{backend}: box mask"
        );
        assert_eq!(report["area_px"], mask.iter().filter(|&&v| v == 255).count());

        let out = dir.join(format!("points-{backend}.png"));
        let run = medico(&[
            "segment",
            image.to_str().unwrap(),
            "--model",
            bundle.to_str().unwrap(),
            "--point",
            "135,192",
            "--point",
            "90,134,1",
            "--point",
            "239,77,0",
            "--backend",
            backend,
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(run.status.success(), "{backend}: {}", text(&run.stderr));
        let mask = image::open(&out).unwrap().to_luma8().into_raw();
        assert_eq!(
            mask,
            reference_mask("points_pn_single.safetensors", 0),
            "{backend}: points mask"
        );
    }
}

/// A reference case's f32 tensor.
fn reference_f32(case: &str, name: &str) -> Vec<f32> {
    let bytes = std::fs::read(shared().join("reference/small/cases").join(case)).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensor = file.tensor(name).unwrap();
    tensor
        .data()
        .chunks(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn a_single_click_gets_the_multimask_output_with_the_best_predicted_iou() {
    let dir = scratch("single-click");
    let bundle = export_small(&dir);
    let image = shared().join("reference/small/image.png");
    let click = reference_f32("point1_multi.safetensors", "point_coords");
    let iou = reference_f32("point1_multi.safetensors", "iou_predictions");
    let best = (0..iou.len()).max_by(|&a, &b| iou[a].total_cmp(&iou[b])).unwrap();
    let out = dir.join("click.png");
    let run = medico(&[
        "segment",
        image.to_str().unwrap(),
        "--model",
        bundle.to_str().unwrap(),
        "--point",
        &format!("{},{}", click[0], click[1]),
        "--json",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(
        report["mask_index"],
        best + 1,
        "multimask output {best} of SAM's predictor"
    );
    let mask = image::open(&out).unwrap().to_luma8().into_raw();
    assert_eq!(differing(&mask, &reference_mask("point1_multi.safetensors", best)), 0);
    // Its single-mask output differs: the lone click did not take it.
    assert_ne!(mask, reference_mask("point1_single.safetensors", 0));
}

/// Arguments after `segment`, extra environment, expected exit code, expected message.
type BadCase<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, i32, String);

#[test]
fn bad_input_fails_cleanly_and_writes_nothing() {
    let dir = scratch("bad");
    let bundle = export_small(&dir);
    let image = shared().join("reference/small/image.png");
    let png = std::fs::read(&image).unwrap();
    let truncated = dir.join("truncated.png");
    std::fs::write(&truncated, &png[..png.len() / 2]).unwrap();
    let tampered = dir.join("tampered");
    std::fs::create_dir(&tampered).unwrap();
    for entry in std::fs::read_dir(&bundle).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tampered.join(entry.file_name())).unwrap();
    }
    let mut decoder = std::fs::read(tampered.join("decoder_lowres.onnx")).unwrap();
    decoder[100] ^= 0xff;
    std::fs::write(tampered.join("decoder_lowres.onnx"), decoder).unwrap();
    let input_copy = dir.join("input.png");
    std::fs::copy(&image, &input_copy).unwrap();

    let out = dir.join("mask.png");
    let (img, b, o) = (image.to_str().unwrap(), bundle.to_str().unwrap(), out.to_str().unwrap());
    let cases: Vec<BadCase> = vec![
        (
            vec![truncated.to_str().unwrap(), "--model", b, "--box", "1,1,20,20", "-o", o],
            vec![],
            3,
            format!("{}: not a readable", truncated.display()),
        ),
        (
            vec![img, "--model", b, "--point", "500,10", "-o", o],
            vec![],
            3,
            "point (500, 10) lies outside the 300x384 image".into(),
        ),
        (
            vec![img, "--model", b, "--box", "100,50,60,160", "-o", o],
            vec![],
            3,
            "is empty or inverted".into(),
        ),
        (
            vec![img, "--model", b, "--box", "10,10,10,40", "-o", o],
            vec![],
            3,
            "is empty or inverted".into(),
        ),
        (
            vec![img, "--model", b, "--box=-5,10,100,400", "-o", o],
            vec![],
            3,
            "extends outside the 300x384 image".into(),
        ),
        (
            vec![
                img,
                "--model",
                tampered.to_str().unwrap(),
                "--box",
                "1,1,20,20",
                "-o",
                o,
            ],
            vec![],
            4,
            "decoder_lowres.onnx: checksum mismatch".into(),
        ),
        (
            vec![img, "--model", b, "--box", "1,1,20,20", "--backend", "ort", "-o", o],
            vec![("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")],
            4,
            "ONNX Runtime library not found; tried /nonexistent/libonnxruntime.so".into(),
        ),
        (
            vec![
                input_copy.to_str().unwrap(),
                "--model",
                b,
                "--box",
                "1,1,20,20",
                "-o",
                input_copy.to_str().unwrap(),
            ],
            vec![],
            3,
            "would overwrite the input".into(),
        ),
        (
            vec![img, "--model", b, "--point", "1,2,7", "-o", o],
            vec![],
            2,
            "label 0 or 1".into(),
        ),
        (vec![img, "--model", b, "-o", o], vec![], 2, "give a prompt".into()),
    ];
    for (args, env, code, message) in cases {
        let mut full = vec!["segment"];
        full.extend(&args);
        let run = medico_env(&full, &env);
        let stderr = text(&run.stderr);
        assert_eq!(run.status.code(), Some(code), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
        assert!(stderr.contains(&message), "{args:?}: {stderr}");
        assert!(!out.exists(), "{args:?}: output written");
    }
    assert_eq!(std::fs::read(&input_copy).unwrap(), png, "input untouched");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".medico"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}
