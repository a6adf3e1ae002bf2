//! Benchmark command (not a test): 3D propagation on the `cases_3d` of `shared/data/cases.json` — a box on the
//! central slice, then propagation with each projection mode — printing Dice against the label volume and the
//! time split (encoder vs everything else). Embeddings are cached, so modes after the first reuse them.
//!
//! `cargo run --release -p medico-tests --example propagation_dice -- BUNDLE CACHE_DIR [IOU] [HALF_RANGE] [THREADS]`
//!
//! IOU (default 0.5) is the stop threshold (the `lite_medsam` mode always uses 0, upstream's stop on an empty
//! mask); HALF_RANGE (default: the whole volume) limits the walk to that many slices on each side of the
//! central slice (with IOU 0 this times a fixed number of slices). Intensity: the bundle's.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use medico_bundle::Bundle;
use medico_io::intensity::Intensity;
use medico_io::nifti_io::read_nifti;
use medico_models::prompt::BoxPrompt;
use medico_runtime::engines::BackendChoice;
use medico_runtime::volume::propagation::PropagationConfig;
use medico_runtime::volume::session::VolumeSession;
use medico_tests::shared_dir;

fn main() {
    let mut args = std::env::args().skip(1);
    let bundle = PathBuf::from(args.next().expect("BUNDLE"));
    let cache = PathBuf::from(args.next().expect("CACHE_DIR"));
    let iou: f64 = args.next().map(|s| s.parse().unwrap()).unwrap_or(0.5);
    let half_range: Option<usize> = args.next().map(|s| s.parse().unwrap());
    let threads: usize = args.next().map(|s| s.parse().unwrap()).unwrap_or(2);
    let bundle = Bundle::open(&bundle).unwrap();
    let data = shared_dir().join("data");
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("cases.json")).unwrap()).unwrap();
    println!("| case | projection | Dice | slices | encoder s (slices) | propagation s without encoder |");
    println!("|---|---|---|---|---|---|");
    for case in cases["cases_3d"].as_array().unwrap() {
        let id = case["id"].as_str().unwrap();
        let image = read_nifti(&data.join(case["image"].as_str().unwrap()), None).unwrap();
        let labels = read_nifti(&data.join(case["labels"].as_str().unwrap()), None).unwrap();
        let label = case["label"].as_f64().unwrap() as f32;
        let truth: Vec<bool> = labels.data.iter().map(|&v| v == label).collect();
        let axis = case["axis"].as_u64().unwrap() as usize;
        let extent = object_extent(&labels, label, axis);
        let centre = case["central_slice"].as_u64().unwrap() as usize;
        let b: Vec<f64> = case["box_xyxy"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let bbox = BoxPrompt {
            x0: b[0],
            y0: b[1],
            x1: b[2] + 1.0,
            y1: b[3] + 1.0,
        };
        let intensity: Intensity = bundle.manifest.intensity.parse().unwrap();
        let mut session = VolumeSession::open(
            image,
            axis,
            intensity,
            &bundle,
            BackendChoice::Auto,
            threads,
            Some(&cache),
        )
        .unwrap();
        for mode in [
            "single_point",
            "mask",
            "box",
            "points",
            "points_and_mask",
            "lite_medsam",
        ] {
            let before = session.stats();
            let start = Instant::now();
            session.annotate(centre, &[], Some(&bbox), false).unwrap();
            // Upstream LiteMedSAM's protocol: a 3D box, so the walk stays within the object's extent.
            let upstream = mode == "lite_medsam";
            let config = PropagationConfig {
                projection: mode.parse().unwrap(),
                iou_threshold: if upstream { 0.0 } else { iou },
                lower_limit: if upstream {
                    Some(extent.0)
                } else {
                    half_range.map(|h| centre.saturating_sub(h))
                },
                upper_limit: if upstream {
                    Some(extent.1)
                } else {
                    half_range.map(|h| centre + h)
                },
                ..PropagationConfig::default()
            };
            let masks: BTreeMap<usize, Vec<bool>> = session.propagate(config).unwrap().masks.clone();
            let wall = start.elapsed().as_secs_f64();
            let after = session.stats();
            let encoder = (after.encoder_time - before.encoder_time).as_secs_f64();
            let volume = session.volume().mask_from_slices(
                axis,
                masks.iter().map(|(&z, m)| (z, m.as_slice())),
                session.volume().slice_hw(axis),
            );
            let (mut inter, mut sum) = (0usize, 0usize);
            for (&p, &t) in volume.iter().zip(&truth) {
                inter += usize::from(p != 0 && t);
                sum += usize::from(p != 0) + usize::from(t);
            }
            let dice = if sum == 0 { 1.0 } else { 2.0 * inter as f64 / sum as f64 };
            println!(
                "| {id} | {mode} | {dice:.3} | {} | {encoder:.1} ({}) | {:.2} |",
                masks.len(),
                after.encoder_runs - before.encoder_runs,
                wall - encoder
            );
        }
    }
}

/// First and last slice along `axis` holding the label.
fn object_extent(labels: &medico_io::volume::Volume, label: f32, axis: usize) -> (usize, usize) {
    let slices: Vec<usize> = (0..labels.shape()[axis])
        .filter(|&k| labels.slice(axis, k).0.contains(&label))
        .collect();
    (slices[0], *slices.last().unwrap())
}
