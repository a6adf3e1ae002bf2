//! RT Structure Sets on the command line: `info` lists a structure set's ROIs, `rtstruct` rasterises one onto
//! its series, `segment --format rtstruct` writes one for a DICOM series (and refuses it for other input),
//! a structure set serves as ground truth in `eval interactive` and as the mask `segment --from` continues.

use crate::common::*;

use std::path::Path;

use nifti::{IntoNdArray, NiftiObject, ReaderOptions};

fn nonzero_voxels(path: &Path) -> usize {
    let object = ReaderOptions::new().read_file(path).unwrap();
    let array = object.into_volume().into_ndarray::<f32>().unwrap();
    array.iter().filter(|&&v| v != 0.0).count()
}

fn json(args: &[&str]) -> serde_json::Value {
    let run = medico(args);
    assert!(run.status.success(), "{args:?}: {}", text(&run.stderr));
    serde_json::from_slice(&run.stdout).unwrap()
}

#[test]
fn info_lists_the_rois_and_rtstruct_rasterises_one_onto_the_ct_slice() {
    let dir = scratch("rtstruct-shared");
    let rtss = shared().join("data/body/rtstruct/rtss.dcm");
    let ct = shared().join("data/body/rtstruct/ct.0.dcm");
    let info = json(&["info", rtss.to_str().unwrap(), "--json"]);
    let rois = info["structure_set"]["rois"].as_array().unwrap();
    assert_eq!(rois.len(), 10);
    assert_eq!(rois[0]["name"], "BODY");
    assert_eq!(rois[0]["interpreted_type"], "EXTERNAL");
    let body = dir.join("body.nii.gz");
    let report = json(&[
        "rtstruct",
        rtss.to_str().unwrap(),
        "--series",
        ct.to_str().unwrap(),
        "--roi",
        "BODY",
        "-o",
        body.to_str().unwrap(),
        "--json",
    ]);
    // The pydicom + numpy reference (io/tests/data/rtstruct/rtss_body_on_ct0.json) fills 40396 pixels.
    assert_eq!(report["voxels"], 40396);
    assert_eq!(nonzero_voxels(&body), 40396);
    assert_eq!(report["contours_on_series"], 4);
    let missing = medico(&[
        "rtstruct",
        rtss.to_str().unwrap(),
        "--series",
        ct.to_str().unwrap(),
        "--roi",
        "Liver",
        "-o",
        dir.join("x.nii.gz").to_str().unwrap(),
    ]);
    assert_eq!(missing.status.code(), Some(3));
    let error = text(&missing.stderr);
    assert!(
        error.contains("rtss.dcm") && error.contains("no ROI named 'Liver'") && error.contains("Heart"),
        "{error}"
    );
    assert!(!dir.join("x.nii.gz").exists());
}

#[test]
fn segment_writes_a_structure_set_that_reads_back_and_grounds_an_evaluation() {
    let dir = scratch("rtstruct-segment");
    let bundle = export_small(&dir);
    let series = shared().join("data/body/totalseg/ct_abdomen_dicom");
    let contours = dir.join("liver.dcm");
    let segment = json(&[
        "segment",
        series.to_str().unwrap(),
        "--model",
        bundle.to_str().unwrap(),
        "--box",
        "200,150,420,350",
        "--slice",
        "10",
        "--intensity",
        "ct-abdomen",
        "--format",
        "rtstruct",
        "--label",
        "liver",
        "-o",
        contours.to_str().unwrap(),
        "--json",
    ]);
    let area = segment["area_px"].as_u64().unwrap();
    assert!(area > 0);
    let info = json(&["info", contours.to_str().unwrap(), "--json"]);
    assert_eq!(info["structure_set"]["rois"][0]["name"], "liver");
    let back = dir.join("liver.nii.gz");
    let report = json(&[
        "rtstruct",
        contours.to_str().unwrap(),
        "--series",
        series.to_str().unwrap(),
        "--roi",
        "liver",
        "-o",
        back.to_str().unwrap(),
        "--json",
    ]);
    let voxels = report["voxels"].as_u64().unwrap();
    assert!(
        voxels.abs_diff(area) * 50 <= area,
        "{voxels} voxels read back of {area} written"
    );
    // The structure set as ground truth: a 2D case on slice 10 whose label is the ROI named "liver".
    let cases = dir.join("cases.json");
    let case = serde_json::json!({"cases_2d": [{
        "id": "liver_from_rtstruct", "image": series, "labels": contours, "roi": "liver",
        "axis": 2, "central_slice": 10
    }]});
    std::fs::write(&cases, case.to_string()).unwrap();
    let out = dir.join("eval");
    let run = medico(&[
        "eval",
        "interactive",
        "--model",
        bundle.to_str().unwrap(),
        "--data",
        cases.to_str().unwrap(),
        "--no-3d",
        "--rounds",
        "1",
        "--threads",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(
        csv.lines().filter(|l| l.contains("liver_from_rtstruct")).count(),
        4,
        "{csv}"
    );
}

#[test]
fn a_structure_set_for_input_that_is_not_dicom_is_refused_before_any_work() {
    let dir = scratch("rtstruct-refused");
    let out = dir.join("contours.dcm");
    let run = medico(&[
        "segment",
        shared().join("data/volumes/mni152_t1.nii.gz").to_str().unwrap(),
        "--model",
        "medico-tiny",
        "--box",
        "10,10,50,50",
        "--format",
        "rtstruct",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(2));
    assert!(text(&run.stderr).contains("RT Structure Set"), "{}", text(&run.stderr));
    assert!(!out.exists());
}
