//! DICOM SEG written by medico reads back onto the same grid, references its source series, and carries
//! the attributes a PACS needs (checked here with dicom-rs; `scripts/check_dicom_seg.sh` runs dciodvfy and
//! highdicom on the same kind of file).

use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use medico_io::dicom_io::read_dicom;
use medico_io::dicom_seg::{read_dicom_seg, write_dicom_seg, SegmentDescription, SourceSeries};
use ndarray::Array3;

fn shared() -> PathBuf {
    std::env::var_os("MEDICO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

fn segment() -> SegmentDescription {
    SegmentDescription {
        label: "lesion".into(),
        algorithm_name: "medico test".into(),
        algorithm_version: "0".into(),
    }
}

fn text(obj: &dicom_object::InMemDicomObject, tag: dicom_object::Tag) -> String {
    obj.element(tag)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches(['\0', ' '])
        .to_string()
}

/// A mask with a block on some slices, written, read back, compared; returns the SEG's path.
fn round_trip(source: &Path, dir: &Path, slices: &[usize]) -> (PathBuf, Array3<u8>) {
    let volume = read_dicom(source).unwrap();
    let [ni, nj, nk] = volume.shape();
    let mut mask = Array3::<u8>::zeros((ni, nj, nk));
    for &k in slices {
        for i in ni / 4..ni / 2 {
            for j in nj / 3..(2 * nj / 3) {
                mask[[i, j, k]] = 1;
            }
        }
    }
    let series = SourceSeries::read(source).unwrap();
    let out = dir.join("seg.dcm");
    write_dicom_seg(&out, &volume, &series, &mask, &segment()).unwrap();
    let back = read_dicom_seg(&out, &volume).unwrap();
    assert_eq!(
        back,
        mask,
        "{}: the SEG does not read back onto the grid",
        source.display()
    );
    (out, mask)
}

#[test]
fn a_series_mask_round_trips_and_references_every_source_slice() {
    let dir = tempfile::tempdir().unwrap();
    let source = shared().join("data/dicom/series_ct5n");
    let (seg, _) = round_trip(&source, dir.path(), &[1, 3]);
    let obj = dicom_object::open_file(&seg).unwrap();
    assert_eq!(text(&obj, tags::SOP_CLASS_UID), "1.2.840.10008.5.1.4.1.1.66.4");
    assert_eq!(
        obj.meta().transfer_syntax().trim_end_matches('\0'),
        "1.2.840.10008.1.2.1"
    );
    assert_eq!(text(&obj, tags::MODALITY), "SEG");
    assert_eq!(text(&obj, tags::SEGMENTATION_TYPE), "BINARY");
    assert_eq!(text(&obj, tags::NUMBER_OF_FRAMES), "2", "empty slices are left out");
    // Patient, study and frame of reference are the source's.
    let first_source = std::fs::read_dir(&source).unwrap().next().unwrap().unwrap().path();
    let src = dicom_object::open_file(&first_source).unwrap();
    for tag in [tags::PATIENT_ID, tags::STUDY_INSTANCE_UID, tags::FRAME_OF_REFERENCE_UID] {
        assert_eq!(text(&obj, tag), text(&src, tag), "{tag}");
    }
    // Every source instance is referenced; each frame derives from one of them.
    let referenced = obj.element(tags::REFERENCED_SERIES_SEQUENCE).unwrap().items().unwrap()[0]
        .element(tags::REFERENCED_INSTANCE_SEQUENCE)
        .unwrap()
        .items()
        .unwrap()
        .len();
    assert_eq!(referenced, 5);
    let frames = obj
        .element(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .unwrap()
        .items()
        .unwrap();
    for frame in frames {
        let derivation = &frame.element(tags::DERIVATION_IMAGE_SEQUENCE).unwrap().items().unwrap()[0];
        let source_image = &derivation
            .element(tags::SOURCE_IMAGE_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()[0];
        assert!(!text(source_image, tags::REFERENCED_SOP_INSTANCE_UID).is_empty());
    }
    let segment = &obj.element(tags::SEGMENT_SEQUENCE).unwrap().items().unwrap()[0];
    assert_eq!(text(segment, tags::SEGMENT_LABEL), "lesion");
    assert_eq!(text(segment, tags::SEGMENT_ALGORITHM_NAME), "medico test");
}

#[test]
fn single_files_and_empty_masks_too() {
    let dir = tempfile::tempdir().unwrap();
    round_trip(&shared().join("data/dicom/CT_small.dcm"), dir.path(), &[0]);
    let (seg, _) = round_trip(&shared().join("data/dicom/CT_small.dcm"), dir.path(), &[]);
    let obj = dicom_object::open_file(&seg).unwrap();
    assert_eq!(
        text(&obj, tags::NUMBER_OF_FRAMES),
        "1",
        "an empty mask keeps one empty frame"
    );
}

#[test]
fn a_seg_of_another_grid_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (seg, _) = round_trip(&shared().join("data/dicom/series_ct5n"), dir.path(), &[2]);
    let other = read_dicom(&shared().join("data/dicom/MR_small.dcm")).unwrap();
    let error = read_dicom_seg(&seg, &other).unwrap_err().to_string();
    assert!(error.contains("seg.dcm") && error.contains("frames"), "{error}");
    let not_seg = read_dicom_seg(&shared().join("data/dicom/MR_small.dcm"), &other)
        .unwrap_err()
        .to_string();
    assert!(not_seg.contains("not a DICOM Segmentation"), "{not_seg}");
}
