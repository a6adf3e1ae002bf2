//! Check command (not a test): how a bundle answers one click. For every 2D case of
//! `shared/data/cases.json` and the case's point, the Dice, predicted IoU and area of the single-mask output
//! and of each multimask output, and which multimask output the predicted IoU picks — so a low point-start
//! Dice can be told apart as bad masks or a bad choice among good ones (docs/medico-lite.md).
//!
//! `cargo run --release -p medico-tests --example point_outputs -- BUNDLE`
use std::path::PathBuf;

use medico_bundle::Bundle;
use medico_io::image2d::read_image;
use medico_io::intensity::Intensity;
use medico_models::prompt::Point;
use medico_runtime::engines::BackendChoice;
use medico_runtime::evaluation::interactive::dice;
use medico_runtime::prediction::predictor::Predictor;
use medico_tests::shared_dir;

fn main() {
    let bundle = Bundle::open(&PathBuf::from(std::env::args().nth(1).unwrap())).unwrap();
    let mut p = Predictor::open(&bundle, BackendChoice::Auto, 2).unwrap();
    let data = shared_dir().join("data");
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("cases.json")).unwrap()).unwrap();
    let intensity: Intensity = bundle.manifest.intensity.parse().unwrap();
    for case in cases["cases_2d"].as_array().unwrap() {
        let image = read_image(&data.join(case["image"].as_str().unwrap())).unwrap();
        let rgb = image.to_rgb(None, intensity).unwrap();
        p.set_image(&rgb.pixels, rgb.hw).unwrap();
        let gt = read_image(&data.join(case["mask"].as_str().unwrap())).unwrap();
        let gt = gt.to_rgb(None, Intensity::MinMax).unwrap();
        let gt: Vec<bool> = gt.pixels.chunks(3).map(|c| c[0] > 127).collect();
        let pt = case["point_xy"].as_array().unwrap();
        let point = Point {
            x: pt[0].as_f64().unwrap(),
            y: pt[1].as_f64().unwrap(),
            positive: true,
        };
        let mut line = format!("{:40}", case["id"].as_str().unwrap());
        for multimask in [false, true] {
            let pred = p.predict(&[point], None, None, multimask).unwrap();
            for (k, l) in pred.logits.iter().enumerate() {
                let m: Vec<bool> = l.iter().map(|&v| v > 0.0).collect();
                let area = m.iter().filter(|&&v| v).count();
                line += &format!(" | d{:.3} iou{:.2} a{}", dice(&m, &gt), pred.iou[k], area);
            }
            if multimask {
                line += &format!(" best={}", pred.best());
            }
        }
        println!("{line} gt_area={}", gt.iter().filter(|&&v| v).count());
    }
}
