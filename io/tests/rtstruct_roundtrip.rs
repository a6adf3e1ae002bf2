//! RT Structure Sets: masks written as contours read back onto the same series within a boundary voxel
//! (TotalSegmentator's liver, spleen and the T12 vertebra on the shared 20-slice CT series), a SEG of the same
//! liver beside it, the shared clinical structure set's ROIs listed and its BODY contour rasterised as an
//! independent reference (pydicom + numpy, `scripts/rtstruct_reference.py`) does, and what is refused.

use std::path::PathBuf;

use dicom_dictionary_std::tags;
use medico_io::dicom_io::read_dicom;
use medico_io::dicom_seg::{read_dicom_seg, write_dicom_seg, SegmentDescription, SourceSeries};
use medico_io::input::{open_scan, Scan};
use medico_io::rtstruct::{
    label_map, rasterise_roi, read_if_structure_set, read_structure_set, write_rtstruct, Generation, RoiMask,
};
use medico_io::volume::{labels_on_image_grid, Volume};
use ndarray::Array3;

fn shared() -> PathBuf {
    std::env::var_os("MEDICO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

fn series_dir() -> PathBuf {
    shared().join("data/body/totalseg/ct_abdomen_dicom")
}

fn open_volume(path: &std::path::Path) -> Volume {
    match open_scan(path, None).unwrap() {
        Scan::Volume(volume) => *volume,
        Scan::Image(_) => panic!("{} is not a volume", path.display()),
    }
}

/// TotalSegmentator's label map on the series' grid.
fn labels(volume: &Volume) -> Volume {
    let path = shared().join("data/body/totalseg/ct_abdomen_dicom_seg.nii.gz");
    labels_on_image_grid(open_volume(&path), volume, &path).unwrap()
}

fn mask_of(labels: &Volume, label: f32) -> Array3<u8> {
    labels.data.mapv(|v| u8::from(v == label))
}

fn dice(a: &Array3<u8>, b: &Array3<u8>) -> f64 {
    let (mut inter, mut total) = (0usize, 0usize);
    for (&x, &y) in a.iter().zip(b) {
        inter += usize::from(x != 0 && y != 0);
        total += usize::from(x != 0) + usize::from(y != 0);
    }
    2.0 * inter as f64 / total.max(1) as f64
}

/// Whether voxel `[i, j, k]` of `mask` has an in-plane 4-neighbour on the other side of its boundary.
fn on_boundary(mask: &Array3<u8>, [i, j, k]: [usize; 3]) -> bool {
    let (ni, nj, _) = mask.dim();
    let inside = mask[[i, j, k]] != 0;
    let neighbours = [(i.wrapping_sub(1), j), (i + 1, j), (i, j.wrapping_sub(1)), (i, j + 1)];
    neighbours
        .iter()
        .any(|&(a, b)| a < ni && b < nj && (mask[[a, b, k]] != 0) != inside)
}

#[test]
fn organs_written_as_contours_read_back_within_a_boundary_voxel() {
    let series = series_dir();
    let volume = read_dicom(&series).unwrap();
    let source = SourceSeries::read(&series).unwrap();
    assert!(
        source.notes.iter().any(|n| n.contains("no Series Instance UID")),
        "the anonymised series' missing UIDs are told: {:?}",
        source.notes
    );
    let labels = labels(&volume);
    let organs = [("liver", 5.0), ("spleen", 1.0), ("vertebrae_T12", 32.0)];
    let masks: Vec<Array3<u8>> = organs.iter().map(|&(_, label)| mask_of(&labels, label)).collect();
    let rois: Vec<RoiMask> = organs
        .iter()
        .zip(&masks)
        .enumerate()
        .map(|(n, (&(name, _), mask))| RoiMask {
            name: name.into(),
            color: [50 * n as u8, 200, 100],
            mask,
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("organs.dcm");
    let generation = Generation {
        algorithm_name: "medico test".into(),
    };
    write_rtstruct(&path, &volume, &source, &rois, &generation).unwrap();
    assert!(read_if_structure_set(&path).unwrap().is_some());
    let set = read_structure_set(&path).unwrap();
    let names: Vec<&str> = set.rois.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["liver", "spleen", "vertebrae_T12"]);
    assert_eq!(set.referenced_series, [source.series_instance_uid()]);
    for ((name, _), mask) in organs.iter().zip(&masks) {
        let roi = set.roi(name).unwrap();
        assert_eq!(roi.color.map(|c| c[1]), Some(200));
        let back = rasterise_roi(&set, roi, &volume, Some(&source)).unwrap();
        assert_eq!(back.contours_elsewhere, 0);
        let score = dice(&back.mask, mask);
        let differing = back.mask.iter().zip(mask).filter(|(a, b)| a != b).count();
        let voxels = mask.iter().filter(|&&v| v != 0).count();
        eprintln!("{name}: Dice {score:.6} after the round trip, {differing} of {voxels} voxels differ");
        assert!(score >= 0.98, "{name}: Dice {score:.4}");
        for ((i, j, k), &v) in back.mask.indexed_iter() {
            if (v != 0) != (mask[[i, j, k]] != 0) {
                assert!(
                    on_boundary(mask, [i, j, k]),
                    "{name}: voxel {i},{j},{k} is off the boundary"
                );
            }
        }
    }
    // All ROIs as one label map: every organ keeps its voxels (they do not overlap).
    let map = label_map(&set, &volume, Some(&source)).unwrap();
    let liver_number = set.roi("liver").unwrap().number as f32;
    assert!(dice(&map.mapv(|v| u8::from(v == liver_number)), &masks[0]) >= 0.98);
}

#[test]
fn a_seg_and_an_rtstruct_of_the_liver_on_the_anonymised_series_are_written_and_read_back() {
    let series = series_dir();
    let volume = read_dicom(&series).unwrap();
    let source = SourceSeries::read(&series).unwrap();
    let liver = mask_of(&labels(&volume), 5.0);
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join("liver_seg.dcm");
    let segment = SegmentDescription {
        label: "liver".into(),
        algorithm_name: "medico test".into(),
        algorithm_version: "0".into(),
    };
    write_dicom_seg(&seg, &volume, &source, &liver, &segment).unwrap();
    assert_eq!(read_dicom_seg(&seg, &volume).unwrap(), liver);
    // The empty SOP Class UID of every source dataset came from the file meta (CT Image Storage).
    let obj = dicom_object::open_file(&seg).unwrap();
    let referenced = obj.element(tags::REFERENCED_SERIES_SEQUENCE).unwrap().items().unwrap()[0]
        .element(tags::REFERENCED_INSTANCE_SEQUENCE)
        .unwrap()
        .items()
        .unwrap()[0]
        .element(tags::REFERENCED_SOP_CLASS_UID)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches('\0')
        .to_string();
    assert_eq!(referenced, "1.2.840.10008.5.1.4.1.1.2");
    let rt = dir.path().join("liver_rt.dcm");
    let roi = RoiMask {
        name: "liver".into(),
        color: [255, 0, 0],
        mask: &liver,
    };
    let generation = Generation {
        algorithm_name: "medico test".into(),
    };
    write_rtstruct(&rt, &volume, &source, &[roi], &generation).unwrap();
    let set = read_structure_set(&rt).unwrap();
    let back = rasterise_roi(&set, &set.rois[0], &volume, Some(&source)).unwrap();
    assert!(dice(&back.mask, &liver) >= 0.98);
    // The same contours onto the NIfTI version of the series' grid, matched by position alone.
    let nifti = shared().join("data/body/totalseg/ct_abdomen_dicom_seg.nii.gz");
    let nifti_grid = open_volume(&nifti);
    let by_position = rasterise_roi(&set, &set.rois[0], &nifti_grid, None).unwrap();
    let liver_nifti = mask_of(&nifti_grid, 5.0);
    assert!(dice(&by_position.mask, &liver_nifti) >= 0.98);
}

#[derive(serde::Deserialize)]
struct Reference {
    rows: usize,
    columns: usize,
    contours: usize,
    runs: Vec<[usize; 3]>,
}

#[test]
fn the_shared_structure_set_lists_its_rois_and_body_fills_as_the_reference_does() {
    let dir = shared().join("data/body/rtstruct");
    let set = read_structure_set(&dir.join("rtss.dcm")).unwrap();
    let names: Vec<&str> = set.rois.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "BODY",
            "Areola",
            "Borders",
            "Breast",
            "Heart",
            "Lt Lung",
            "Nodes",
            "Scar",
            "Tumor Bed",
            "Tumor Bed Block"
        ]
    );
    assert!(read_if_structure_set(&dir.join("ct.0.dcm")).unwrap().is_none());
    let ct = dir.join("ct.0.dcm");
    let volume = read_dicom(&ct).unwrap();
    let source = SourceSeries::read(&ct).unwrap();
    let body = rasterise_roi(&set, set.roi("body").unwrap(), &volume, Some(&source)).unwrap();
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/rtstruct/rtss_body_on_ct0.json"),
    )
    .unwrap();
    let reference: Reference = serde_json::from_str(&text).unwrap();
    assert_eq!(body.contours_on_volume, reference.contours);
    assert_eq!(
        body.contours_on_volume + body.contours_elsewhere,
        set.roi("BODY").unwrap().contours.len()
    );
    let mut expected = Array3::<u8>::zeros((reference.columns, reference.rows, 1));
    for [row, first, end] in reference.runs {
        for column in first..end {
            expected[[column, row, 0]] = 1;
        }
    }
    let differ = body.mask.iter().zip(&expected).filter(|(a, b)| a != b).count();
    assert_eq!(differ, 0, "pixels differing from the pydicom + numpy reference");
    assert!(expected.iter().filter(|&&v| v != 0).count() > 10_000);
    // Heart has no contour on this slice: an empty mask, its contours counted elsewhere.
    let heart = rasterise_roi(&set, set.roi("Heart").unwrap(), &volume, Some(&source)).unwrap();
    assert_eq!(
        (heart.contours_on_volume, heart.mask.iter().any(|&v| v != 0)),
        (0, false)
    );
}

#[test]
fn another_series_or_frame_of_reference_is_refused_naming_the_file() {
    let rtss = shared().join("data/body/rtstruct/rtss.dcm");
    let set = read_structure_set(&rtss).unwrap();
    let series = series_dir();
    let volume = read_dicom(&series).unwrap();
    let source = SourceSeries::read(&series).unwrap();
    let error = rasterise_roi(&set, set.roi("BODY").unwrap(), &volume, Some(&source))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("rtss.dcm") && error.contains("frame of reference"),
        "{error}"
    );
    let not_rtss =
        read_structure_set(&series.join(std::fs::read_dir(&series).unwrap().next().unwrap().unwrap().file_name()));
    assert!(not_rtss.unwrap_err().to_string().contains("not an RT Structure Set"));
    let mut missing = set.clone();
    missing.rois.truncate(1);
    assert!(missing.roi("Heart").unwrap_err().to_string().contains("BODY"));
}

#[test]
fn contours_that_are_not_closed_planar_are_refused() {
    let ct = shared().join("data/body/rtstruct/ct.0.dcm");
    let rtss = shared().join("data/body/rtstruct/rtss.dcm");
    let volume = read_dicom(&ct).unwrap();
    let source = SourceSeries::read(&ct).unwrap();
    let mut set = read_structure_set(&rtss).unwrap();
    let roi = set.rois.iter_mut().find(|r| r.name == "BODY").unwrap();
    roi.contours[0].geometric_type = "OPEN_PLANAR".into();
    let error = rasterise_roi(&set, &set.rois[0], &volume, Some(&source))
        .unwrap_err()
        .to_string();
    assert!(error.contains("not CLOSED_PLANAR") && error.contains("BODY"), "{error}");
    let roi = &mut set.rois[0];
    roi.contours[0].geometric_type = "CLOSED_PLANAR".into();
    let z = roi.contours[0].points[0][2];
    roi.contours[0].points[0][2] = z + 25.0;
    let error = rasterise_roi(&set, &set.rois[0], &volume, Some(&source))
        .unwrap_err()
        .to_string();
    assert!(error.contains("not planar"), "{error}");
}

#[test]
fn nothing_is_written_for_an_invalid_roi_name() {
    let series = series_dir();
    let volume = read_dicom(&series).unwrap();
    let source = SourceSeries::read(&series).unwrap();
    let mask = Array3::<u8>::zeros(volume.data.dim());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.dcm");
    let roi = RoiMask {
        name: "a\\b".into(),
        color: [1, 2, 3],
        mask: &mask,
    };
    let generation = Generation {
        algorithm_name: "medico test".into(),
    };
    assert!(write_rtstruct(&path, &volume, &source, &[roi], &generation).is_err());
    assert!(!path.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no temporary file is left"
    );
}
