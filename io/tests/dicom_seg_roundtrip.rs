//! DICOM SEG written by medico reads back onto the same grid, references its source series, and carries
//! the attributes a PACS needs (checked here with dicom-rs; `scripts/check_dicom_seg.sh` runs dciodvfy and
//! highdicom on the same kind of file).

use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use medico_io::dicom_io::read_dicom;
use medico_io::dicom_seg::{check_label, read_dicom_seg, write_dicom_seg, SegmentDescription, SourceSeries, TextError};
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
    // All text is ASCII: the default repertoire, no Specific Character Set.
    assert!(obj.element(tags::SPECIFIC_CHARACTER_SET).is_err());
}

/// `mask` (a block on slice 0) written as a SEG of CT_small.dcm's volume, or the writer's error.
fn write_seg_of(source: &Path, out: &Path, segment: &SegmentDescription) -> Result<(), medico_io::IoError> {
    let volume = read_dicom(source).unwrap();
    let [ni, nj, nk] = volume.shape();
    let mut mask = Array3::<u8>::zeros((ni, nj, nk));
    mask[[ni / 2, nj / 2, 0]] = 1;
    let series = SourceSeries::read(source).unwrap();
    write_dicom_seg(out, &volume, &series, &mask, segment)
}

#[test]
fn labels_must_be_valid_long_strings_and_nothing_is_written_otherwise() {
    assert_eq!(check_label(&"a".repeat(64)), Ok(()));
    assert_eq!(check_label("肝臓"), Ok(()));
    assert_eq!(
        check_label(&"a".repeat(65)),
        Err(TextError::TooLong {
            field: "segment label",
            chars: 65
        })
    );
    // Characters, not bytes: 64 CJK characters are 192 bytes of UTF-8.
    assert_eq!(check_label(&"肝".repeat(64)), Ok(()));
    assert_eq!(
        check_label("liver\\spleen"),
        Err(TextError::Backslash { field: "segment label" })
    );
    assert_eq!(
        check_label("liver\nspleen"),
        Err(TextError::Control {
            field: "segment label",
            code: 0x0a
        })
    );
    assert_eq!(check_label("  "), Err(TextError::Empty { field: "segment label" }));

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("seg.dcm");
    let source = shared().join("data/dicom/CT_small.dcm");
    for (label, problem) in [
        (
            "x".repeat(5000),
            "the segment label is 5000 characters long; DICOM allows at most 64 (LO)",
        ),
        ("a\\b".into(), "the segment label contains a backslash"),
    ] {
        let segment = SegmentDescription { label, ..segment() };
        assert!(segment.validate().is_err());
        let error = write_seg_of(&source, &out, &segment).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, medico_io::IoError::InvalidText { .. }), "{message}");
        assert!(message.contains("seg.dcm") && message.contains(problem), "{message}");
        assert!(!out.exists());
    }
    let long_version = SegmentDescription {
        algorithm_version: "v".repeat(65),
        ..segment()
    };
    assert_eq!(
        long_version.validate(),
        Err(TextError::TooLong {
            field: "algorithm version",
            chars: 65
        })
    );
}

#[test]
fn non_ascii_labels_are_written_as_utf8_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let source = shared().join("data/dicom/CT_small.dcm");
    for label in ["肝臓", "Läsion", "ürün 1"] {
        let out = dir.path().join("seg.dcm");
        let segment = SegmentDescription {
            label: label.into(),
            ..segment()
        };
        write_seg_of(&source, &out, &segment).unwrap();
        let obj = dicom_object::open_file(&out).unwrap();
        assert_eq!(text(&obj, tags::SPECIFIC_CHARACTER_SET), "ISO_IR 192");
        let item = &obj.element(tags::SEGMENT_SEQUENCE).unwrap().items().unwrap()[0];
        assert_eq!(text(item, tags::SEGMENT_LABEL), label);
        // The label's bytes in the file are its UTF-8.
        let bytes = std::fs::read(&out).unwrap();
        assert!(bytes.windows(label.len()).any(|w| w == label.as_bytes()), "{label}");
        assert!(read_dicom_seg(&out, &read_dicom(&source).unwrap()).is_ok());
    }
}

#[test]
fn a_source_with_non_ascii_patient_names_gives_a_utf8_seg() {
    // CT_small.dcm with a Latin-1 patient name.
    let dir = tempfile::tempdir().unwrap();
    let mut source = dicom_object::open_file(shared().join("data/dicom/CT_small.dcm")).unwrap();
    source.put(dicom_core::DataElement::new(
        tags::SPECIFIC_CHARACTER_SET,
        dicom_core::VR::CS,
        "ISO_IR 100",
    ));
    source.put(dicom_core::DataElement::new(
        tags::PATIENT_NAME,
        dicom_core::VR::PN,
        "Müller^Jörg",
    ));
    let source_path = dir.path().join("latin1.dcm");
    source.write_to_file(&source_path).unwrap();
    let bytes = std::fs::read(&source_path).unwrap();
    assert!(
        bytes.windows(11).any(|w| w == b"M\xfcller^J\xf6rg"),
        "Latin-1 in the source"
    );

    let out = dir.path().join("seg.dcm");
    write_seg_of(&source_path, &out, &segment()).unwrap();
    let obj = dicom_object::open_file(&out).unwrap();
    assert_eq!(text(&obj, tags::SPECIFIC_CHARACTER_SET), "ISO_IR 192");
    assert_eq!(text(&obj, tags::PATIENT_NAME), "Müller^Jörg");
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
