//! medico-lite, the shipped finetune, installed as a user installs it (`models pull medico-lite` from the
//! LiteMedSAM checkpoint setup fetches, the overlay compiled in): LiteMedSAM's encoder unchanged, its own
//! prompt encoder and decoder, the provenance of both parts; and what the finetune is for, on a structure it
//! never trained on: a single positive click on the INIA19 left caudate gives a mask that overlaps it (Dice
//! 0.33 measured; the eval's correction clicks take it to 0.65, docs/medico-lite.md), where LiteMedSAM's is
//! empty (0.04).

use medico_bundle::{Bundle, GraphRole};
use medico_export::registry::{pull, MEDICO_LITE_OVERLAY_SHA256};
use medico_io::image2d::read_image;
use medico_io::intensity::Intensity;
use medico_models::prompt::Point;
use medico_runtime::evaluation::interactive::dice;
use medico_runtime::prediction::predictor::{BackendChoice, Predictor};
use medico_tests::{lite_medsam_checkpoint, scratch_dir, shared_dir};

/// Dice of the best-scored multimask output for one positive click at the case's point.
fn point_dice(bundle: &Bundle, case: &serde_json::Value) -> f64 {
    let data = shared_dir().join("data");
    let image = read_image(&data.join(case["image"].as_str().unwrap())).unwrap();
    let intensity: Intensity = bundle.manifest.intensity.parse().unwrap();
    let rgb = image.to_rgb(None, intensity).unwrap();
    let truth: Vec<bool> = read_image(&data.join(case["mask"].as_str().unwrap()))
        .unwrap()
        .gray()
        .iter()
        .map(|&v| v > 0.0)
        .collect();
    let mut predictor = Predictor::open(bundle, BackendChoice::Ort, 2).unwrap();
    predictor.set_image(&rgb.pixels, rgb.hw).unwrap();
    let point = Point {
        x: case["point_xy"][0].as_f64().unwrap(),
        y: case["point_xy"][1].as_f64().unwrap(),
        positive: true,
    };
    let prediction = predictor.predict(&[point], None, None, true).unwrap();
    let mask: Vec<bool> = prediction.logits[prediction.best()].iter().map(|&v| v > 0.0).collect();
    dice(&mask, &truth)
}

#[test]
fn medico_lite_installs_over_lite_medsam_and_segments_from_a_click() {
    let scratch = scratch_dir("medico-lite");
    let cache = scratch.join("cache");
    let checkpoint = lite_medsam_checkpoint();
    let lite = pull("litemedsam", &cache, Some(&checkpoint), false).unwrap();
    let ours = pull("medico-lite", &cache, Some(&checkpoint), false).unwrap();
    let (lite_dir, lite_manifest) = lite.bundle.unwrap();
    let (ours_dir, ours_manifest) = ours.bundle.unwrap();
    assert_eq!(ours.checkpoint, lite.checkpoint, "one base checkpoint in the cache");

    let file =
        |manifest: &medico_bundle::Manifest, role: GraphRole| manifest.files[&manifest.graphs[&role]].sha256.clone();
    assert_eq!(
        file(&ours_manifest, GraphRole::Encoder),
        file(&lite_manifest, GraphRole::Encoder),
        "the image encoder is LiteMedSAM's"
    );
    assert_ne!(
        file(&ours_manifest, GraphRole::Decoder),
        file(&lite_manifest, GraphRole::Decoder)
    );
    assert_eq!(
        ours_manifest.source_checkpoint.sha256,
        lite_manifest.source_checkpoint.sha256
    );
    let extra = &ours_manifest.provenance.extra;
    assert_eq!(extra["overlay"]["checksum"], MEDICO_LITE_OVERLAY_SHA256);
    assert_eq!(extra["base_model"], "litemedsam");
    assert_eq!(ours_manifest.preprocessing, lite_manifest.preprocessing);
    assert_eq!(ours_manifest.intensity, lite_manifest.intensity);

    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(shared_dir().join("data/cases.json")).unwrap()).unwrap();
    let caudate = cases["cases_2d"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "p2d_inia19_l_caudate_nucleus_a2")
        .unwrap();
    let (ours_dice, lite_dice) = (
        point_dice(&Bundle::open(&ours_dir).unwrap(), caudate),
        point_dice(&Bundle::open(&lite_dir).unwrap(), caudate),
    );
    println!("one click on the left caudate: medico-lite Dice {ours_dice:.3}, LiteMedSAM {lite_dice:.3}");
    assert!(ours_dice > 0.25, "medico-lite from a click: {ours_dice}");
    assert!(lite_dice < 0.1, "LiteMedSAM from a click: {lite_dice}");
}
