//! Check command (not a test): how far two bundles of the same model agree, mask for mask — e.g. a bundle
//! built from an f16 overlay against the f32 finetune it came from. For every 2D case of
//! `shared/data/cases.json`, a box (single mask) and the case's point (multimask, best by predicted IoU),
//! it prints the fraction of pixels on which the binary masks agree, the masks' IoU, and how many of the
//! disagreeing pixels have a logit within 1e-3 of the threshold in either bundle.
//!
//! `cargo run --release -p medico-tests --example mask_agreement -- BUNDLE_A BUNDLE_B`

use std::path::PathBuf;

use medico_bundle::Bundle;
use medico_io::image2d::read_image;
use medico_io::intensity::Intensity;
use medico_models::prompt::{BoxPrompt, Point};
use medico_runtime::engines::BackendChoice;
use medico_runtime::prediction::predictor::Predictor;
use medico_tests::shared_dir;
use ndarray::Array2;

/// The chosen mask's logits for a box or a point prompt.
fn logits(predictor: &mut Predictor, points: &[Point], bbox: Option<&BoxPrompt>) -> Array2<f32> {
    let multimask = bbox.is_none();
    let prediction = predictor.predict(points, bbox, None, multimask).unwrap();
    let best = if multimask { prediction.best() } else { 0 };
    prediction.logits[best].clone()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let a = Bundle::open(&PathBuf::from(args.next().expect("BUNDLE_A"))).unwrap();
    let b = Bundle::open(&PathBuf::from(args.next().expect("BUNDLE_B"))).unwrap();
    let (mut pa, mut pb) = (
        Predictor::open(&a, BackendChoice::Auto, 2).unwrap(),
        Predictor::open(&b, BackendChoice::Auto, 2).unwrap(),
    );
    let data = shared_dir().join("data");
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("cases.json")).unwrap()).unwrap();
    let intensity: Intensity = a.manifest.intensity.parse().unwrap();
    println!("| case | prompt | pixels agreeing | mask IoU | disagreeing (of them near 0) |");
    println!("|---|---|---|---|---|");
    let (mut worst, mut all_near_threshold) = (1.0f64, true);
    for case in cases["cases_2d"].as_array().unwrap() {
        let image = read_image(&data.join(case["image"].as_str().unwrap())).unwrap();
        let rgb = image.to_rgb(None, intensity).unwrap();
        pa.set_image(&rgb.pixels, rgb.hw).unwrap();
        pb.set_image(&rgb.pixels, rgb.hw).unwrap();
        let v = |key: &str| -> Vec<f64> {
            case[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        let (bx, pt) = (v("box_xyxy"), v("point_xy"));
        let bbox = BoxPrompt {
            x0: bx[0],
            y0: bx[1],
            x1: bx[2],
            y1: bx[3],
        };
        let point = Point {
            x: pt[0],
            y: pt[1],
            positive: true,
        };
        for (prompt, points, bbox) in [("box", vec![], Some(&bbox)), ("point", vec![point], None)] {
            let (la, lb) = (logits(&mut pa, &points, bbox), logits(&mut pb, &points, bbox));
            let (mut differ, mut near, mut inter, mut union) = (0usize, 0usize, 0usize, 0usize);
            for (&x, &y) in la.iter().zip(lb.iter()) {
                let (ma, mb) = (x > 0.0, y > 0.0);
                inter += usize::from(ma && mb);
                union += usize::from(ma || mb);
                if ma != mb {
                    differ += 1;
                    near += usize::from(x.abs() < 1e-3 || y.abs() < 1e-3);
                }
            }
            let agree = 1.0 - differ as f64 / la.len() as f64;
            let iou = if union == 0 { 1.0 } else { inter as f64 / union as f64 };
            worst = worst.min(agree);
            all_near_threshold &= near == differ;
            println!(
                "| {} | {prompt} | {:.5} | {iou:.4} | {differ} ({near}) |",
                case["id"].as_str().unwrap(),
                agree
            );
        }
    }
    println!("\nlowest pixel agreement {worst:.5}; every disagreement at |logit| < 1e-3: {all_near_threshold}");
}
