//! The web annotator (`web/`, served by `medico-cli serve` at `/`) driven like a user in headless Chromium
//! (Debian's `chromium` through `playwright-core`, both installed by scripts/setup.sh) by
//! `web/tests/drive.mjs`: the mask the page shows after a real mouse box equals `medico-cli segment`'s on the
//! same prompt voxel for voxel, a negative click changes it exactly as on the CLI, propagation equals
//! `segment --propagate`, the downloaded NIfTI lies on the scan's grid, and a DICOM series opened in the page
//! gives the DICOM SEG the CLI writes. The page's click latency is printed beside MONAI Label's client's.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use nifti::{IntoNdArray, NiftiObject, ReaderOptions};
use serde_json::Value;

use crate::common::{export_small, medico, scratch, shared, text, zip_series};
use crate::serve_cli::Server;

/// The demo scan the README segments.
fn scan() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/mni152_t1.nii.gz")
}

/// The 1-voxels of a NIfTI mask as flat indices `i + ni * (j + nj * k)`.
fn ones_of_nifti(path: &Path) -> BTreeSet<u64> {
    let volume = ReaderOptions::new()
        .read_file(path)
        .unwrap()
        .into_volume()
        .into_ndarray::<u8>()
        .unwrap();
    let shape = volume.shape().to_vec();
    volume
        .indexed_iter()
        .filter(|(_, &v)| v == 1)
        .map(|(index, _)| (index[0] + shape[0] * (index[1] + shape[1] * index[2])) as u64)
        .collect()
}

/// The 1-voxels the page reported (drive.mjs's mask file).
fn ones_of_page(path: &Path) -> BTreeSet<u64> {
    let json: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    json["ones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

/// `medico-cli segment` of the scan on axial slice 82 with medico-tiny and `extra` arguments; its mask.
fn cli_mask(dir: &Path, name: &str, extra: &[&str]) -> BTreeSet<u64> {
    let out = dir.join(format!("{name}.nii.gz"));
    let scan = scan();
    let mut args = vec![
        "segment",
        scan.to_str().unwrap(),
        "--model",
        "medico-tiny",
        "--plane",
        "axial",
        "--slice",
        "82",
        "--box",
        "27,28,170,208",
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let run = medico(&args);
    assert!(run.status.success(), "{}", text(&run.stderr));
    ones_of_nifti(&out)
}

/// Asserts that the page's and the CLI's masks hold the same voxels (the difference's size and first voxels
/// when not).
fn same_voxels(what: &str, page: &BTreeSet<u64>, cli: &BTreeSet<u64>) {
    let only_page: Vec<_> = page.difference(cli).take(5).collect();
    let only_cli: Vec<_> = cli.difference(page).take(5).collect();
    assert!(
        only_page.is_empty() && only_cli.is_empty(),
        "{what}: the page shows {} voxels, the CLI {}; only the page's: {} (first {only_page:?}), only the CLI's: {} \
         (first {only_cli:?})",
        page.len(),
        cli.len(),
        page.difference(cli).count(),
        cli.difference(page).count()
    );
}

#[test]
fn the_annotator_in_a_browser_gives_the_masks_the_cli_gives() {
    let dir = scratch("annotator-browser");
    // medico-tiny for the MNI152 scan; the `small` reference bundle for the small CT series (medico-tiny, a
    // brain MRI model, finds nothing on it).
    let bundle = export_small(&dir);
    let server = Server::start(&["--quiet", "--model", bundle.to_str().unwrap()]);
    let driver = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../web/tests/drive.mjs");
    let out = dir.join("page");
    let series = shared().join("data/dicom/series_ct5n");
    let zip = dir.join("series.zip");
    std::fs::write(&zip, zip_series(&series)).unwrap();
    let run = Command::new("node")
        .arg(&driver)
        .arg(format!("{}/", server.url()))
        .arg(scan())
        .arg(&out)
        .arg(&zip)
        .env("MODEL", "medico-tiny")
        .env("DICOM_MODEL", "bundle")
        .output()
        .expect("node runs (scripts/setup.sh installs the annotator's packages and chromium)");
    println!("{}", text(&run.stdout));
    assert!(
        run.status.success(),
        "drive.mjs failed: {}{}",
        text(&run.stdout),
        text(&run.stderr)
    );

    let page_box = ones_of_page(&out.join("box.json"));
    assert!(!page_box.is_empty(), "the page shows an empty mask");
    same_voxels("box", &page_box, &cli_mask(&dir, "box", &[]));
    let page_negative = ones_of_page(&out.join("box_neg.json"));
    assert_ne!(page_negative, page_box, "the negative click changed nothing");
    same_voxels(
        "box + negative click",
        &page_negative,
        &cli_mask(&dir, "box_neg", &["--point", "98,60,0"]),
    );
    // The page propagates the slice's prompts (the box and the negative click).
    same_voxels(
        "propagation",
        &ones_of_page(&out.join("propagated.json")),
        &cli_mask(&dir, "propagated", &["--point", "98,60,0", "--propagate"]),
    );
    // The downloaded mask lies on the scan's grid: same dimensions and affine.
    let header = |path: &Path| ReaderOptions::new().read_file(path).unwrap().header().clone();
    let (scan_header, mask_header) = (header(&scan()), header(&out.join("download.nii.gz")));
    assert_eq!(scan_header.dim, mask_header.dim);
    assert_eq!(
        (scan_header.srow_x, scan_header.srow_y, scan_header.srow_z),
        (mask_header.srow_x, mask_header.srow_y, mask_header.srow_z)
    );
    assert_eq!(scan_header.sform_code, mask_header.sform_code);
    // A DICOM series: the page's DICOM SEG reads back onto the series as the CLI's does.
    crate::serve_cli::assert_seg_is_the_clis(&out.join("seg.dcm"), &series, &bundle, &dir);

    // The same click through MONAI Label's client, in the same run: the page adds decoding and drawing.
    let latency: Value = serde_json::from_str(&std::fs::read_to_string(out.join("latency.json")).unwrap()).unwrap();
    let client = crate::serve_cli::drive(&[
        "clicks",
        &server.url(),
        scan().to_str().unwrap(),
        dir.to_str().unwrap(),
        "20",
        "98",
        "130",
        "82",
    ]);
    println!(
        "click -> overlay in the page: median {} ms (max {}); the same click through MONAILabelClient: median {:.1} ms",
        latency["median_ms"], latency["max_ms"], client["median_ms"]
    );
    assert_eq!(latency["clicks"], 20);
    assert!(client["median_ms"].as_f64().unwrap() > 0.0);
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}
