//! DICOM SEG out (and back in): a BINARY Segmentation object that references the DICOM series a mask was
//! drawn on, with the attributes highdicom writes — patient, study and frame of reference copied from the
//! source; one frame per non-empty slice with its plane position, segment number and the source image it
//! derives from; the segment's description with the algorithm's name and version; dimensions over segment
//! number and image position; pixels bit-packed across frames. A hospital's PACS stores it beside the scan.

use std::path::Path;

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use ndarray::Array3;

use crate::dicom_elements::{
    code, date_time_now, decimals, item, new_uid, sequence, string, strings, text, unsigned, write_dataset,
};
use crate::dicom_io::{first_item, fixed, numbers, parse_dataset};
use crate::dicom_source::SourceFrame;
pub use crate::dicom_source::SourceSeries;
use crate::volume::Volume;
use crate::IoError;

/// Segmentation Storage.
const SEGMENTATION_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.66.4";

/// The segment a SEG holds. Each text is written as a DICOM LO (Long String): see
/// [`SegmentDescription::validate`].
#[derive(Debug, Clone)]
pub struct SegmentDescription {
    /// Segment Label (e.g. "liver", or the model's name when the user gave none).
    pub label: String,
    /// The algorithm: e.g. "medico medico-lite".
    pub algorithm_name: String,
    /// Its version (medico's version, the model's checksum).
    pub algorithm_version: String,
}

impl SegmentDescription {
    /// Checks that the label and the algorithm's name and version are valid DICOM LO values
    /// ([`check_long_string`]); [`write_dicom_seg`] refuses a description that is not, before writing anything.
    pub fn validate(&self) -> Result<(), TextError> {
        check_label(&self.label)?;
        check_long_string("algorithm name", &self.algorithm_name)?;
        check_long_string("algorithm version", &self.algorithm_version)
    }
}

/// Most characters of a DICOM LO (Long String) value.
pub const MAX_LONG_STRING_CHARS: usize = 64;

/// Why a text cannot be written as a DICOM LO (Long String) value; `field` names the attribute in words
/// ("segment label").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Nothing but spaces (the attribute is required, and DICOM drops leading and trailing spaces).
    #[error("the {field} is empty; a DICOM SEG needs one")]
    Empty {
        /// The attribute.
        field: &'static str,
    },
    /// More than [`MAX_LONG_STRING_CHARS`] characters.
    #[error("the {field} is {chars} characters long; DICOM allows at most {MAX_LONG_STRING_CHARS} (LO)")]
    TooLong {
        /// The attribute.
        field: &'static str,
        /// Its length in characters.
        chars: usize,
    },
    /// A backslash, which separates the values of a DICOM attribute.
    #[error("the {field} contains a backslash, which DICOM reserves to separate values")]
    Backslash {
        /// The attribute.
        field: &'static str,
    },
    /// A control character (line break, tab, ...), which LO values may not hold.
    #[error("the {field} contains the control character U+{code:04X}, which DICOM does not allow in it")]
    Control {
        /// The attribute.
        field: &'static str,
        /// The character's code point.
        code: u32,
    },
}

/// Checks a segment label: a valid DICOM LO value ([`check_long_string`]). Any Unicode text is written
/// (as UTF-8, Specific Character Set `ISO_IR 192`, when it is not ASCII).
pub fn check_label(label: &str) -> Result<(), TextError> {
    check_long_string("segment label", label)
}

/// The algorithm name of a SEG written with `model`: "medico MODEL", made a valid LO value whatever the
/// model is called (a backslash or control character becomes `_`, and the text is cut at
/// [`MAX_LONG_STRING_CHARS`] characters), since a model's name is the server's, not the user's, to fix.
pub fn algorithm_name(model: &str) -> String {
    format!("medico {model}")
        .chars()
        .map(|c| if c == '\\' || c.is_control() { '_' } else { c })
        .take(MAX_LONG_STRING_CHARS)
        .collect()
}

/// Checks that `text` is a valid DICOM LO (Long String) value for the attribute `field`: not empty, at most
/// [`MAX_LONG_STRING_CHARS`] characters, no backslash, no control characters. Nothing is truncated or
/// replaced: a text that is not valid is refused.
pub fn check_long_string(field: &'static str, text: &str) -> Result<(), TextError> {
    if text.trim_matches(' ').is_empty() {
        return Err(TextError::Empty { field });
    }
    let chars = text.chars().count();
    if chars > MAX_LONG_STRING_CHARS {
        return Err(TextError::TooLong { field, chars });
    }
    if text.contains('\\') {
        return Err(TextError::Backslash { field });
    }
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(TextError::Control {
            field,
            code: u32::from(c),
        });
    }
    Ok(())
}

/// The Segment Sequence item of segment 1.
fn segment_item(segment: &SegmentDescription) -> InMemDicomObject {
    item(vec![
        unsigned(tags::SEGMENT_NUMBER, 1),
        string(tags::SEGMENT_LABEL, VR::LO, &segment.label),
        sequence(
            tags::SEGMENTED_PROPERTY_CATEGORY_CODE_SEQUENCE,
            vec![code("91723000", "SCT", "Anatomical Structure")],
        ),
        sequence(
            tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE,
            vec![code("85756007", "SCT", "Tissue")],
        ),
        string(tags::SEGMENT_ALGORITHM_TYPE, VR::CS, "SEMIAUTOMATIC"),
        string(tags::SEGMENT_ALGORITHM_NAME, VR::LO, &segment.algorithm_name),
        sequence(
            tags::SEGMENTATION_ALGORITHM_IDENTIFICATION_SEQUENCE,
            vec![item(vec![
                sequence(
                    tags::ALGORITHM_FAMILY_CODE_SEQUENCE,
                    vec![code("123109", "DCM", "Artificial Intelligence")],
                ),
                string(tags::ALGORITHM_NAME, VR::LO, &segment.algorithm_name),
                string(tags::ALGORITHM_VERSION, VR::LO, &segment.algorithm_version),
            ])],
        ),
    ])
}

/// The source image reference of a frame (in a Derivation Image or the top-level Source Image Sequence).
fn source_reference(frame: &SourceFrame, purpose: bool) -> InMemDicomObject {
    let mut elements = frame.reference_elements();
    if purpose {
        elements.push(sequence(
            tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
            vec![code("121322", "DCM", "Source image for image processing operation")],
        ));
        elements.push(string(tags::SPATIAL_LOCATIONS_PRESERVED, VR::CS, "YES"));
    }
    item(elements)
}

/// The Per-frame Functional Groups item of the `index`-th (0-based) SEG frame, drawn on `frame`.
fn per_frame_item(frame: &SourceFrame, index: usize) -> InMemDicomObject {
    item(vec![
        sequence(
            tags::DERIVATION_IMAGE_SEQUENCE,
            vec![item(vec![
                sequence(tags::SOURCE_IMAGE_SEQUENCE, vec![source_reference(frame, true)]),
                sequence(
                    tags::DERIVATION_CODE_SEQUENCE,
                    vec![code("113076", "DCM", "Segmentation")],
                ),
            ])],
        ),
        sequence(
            tags::FRAME_CONTENT_SEQUENCE,
            vec![item(vec![DataElement::new(
                tags::DIMENSION_INDEX_VALUES,
                VR::UL,
                PrimitiveValue::U32([1u32, index as u32 + 1].into_iter().collect()),
            )])],
        ),
        sequence(
            tags::PLANE_POSITION_SEQUENCE,
            vec![item(vec![decimals(tags::IMAGE_POSITION_PATIENT, &frame.position)])],
        ),
        sequence(
            tags::SEGMENT_IDENTIFICATION_SEQUENCE,
            vec![item(vec![unsigned(tags::REFERENCED_SEGMENT_NUMBER, 1)])],
        ),
    ])
}

/// The Dimension Organization and Dimension Index sequences: segment number, then image position.
fn dimensions() -> Vec<DataElement<InMemDicomObject>> {
    let organization = new_uid();
    let index = |pointer: Tag, group: Tag, label: &str| {
        item(vec![
            string(tags::DIMENSION_ORGANIZATION_UID, VR::UI, &organization),
            DataElement::new(
                tags::DIMENSION_INDEX_POINTER,
                VR::AT,
                PrimitiveValue::Tags([pointer].into_iter().collect()),
            ),
            DataElement::new(
                tags::FUNCTIONAL_GROUP_POINTER,
                VR::AT,
                PrimitiveValue::Tags([group].into_iter().collect()),
            ),
            string(tags::DIMENSION_DESCRIPTION_LABEL, VR::LO, label),
        ])
    };
    vec![
        sequence(
            tags::DIMENSION_ORGANIZATION_SEQUENCE,
            vec![item(vec![string(
                tags::DIMENSION_ORGANIZATION_UID,
                VR::UI,
                &organization,
            )])],
        ),
        sequence(
            tags::DIMENSION_INDEX_SEQUENCE,
            vec![
                index(
                    tags::REFERENCED_SEGMENT_NUMBER,
                    tags::SEGMENT_IDENTIFICATION_SEQUENCE,
                    "ReferencedSegmentNumber",
                ),
                index(
                    tags::IMAGE_POSITION_PATIENT,
                    tags::PLANE_POSITION_SEQUENCE,
                    "ImagePositionPatient",
                ),
            ],
        ),
    ]
}

/// Frames bit-packed across frame boundaries, first pixel in the lowest bit; padded to an even length.
fn pack_bits(frames: &[Vec<bool>]) -> Vec<u8> {
    let total: usize = frames.iter().map(Vec::len).sum();
    let mut bytes = vec![0u8; total.div_ceil(8)];
    for (n, bit) in frames.iter().flatten().enumerate() {
        if *bit {
            bytes[n / 8] |= 1 << (n % 8);
        }
    }
    if bytes.len() % 2 == 1 {
        bytes.push(0);
    }
    bytes
}

/// Writes `mask` (`[column, row, slice]` on the grid of the volume read from `source`) as a BINARY DICOM
/// SEG at `path`, atomically. Slices without a voxel are left out (as highdicom does); an empty mask keeps
/// one empty frame.
pub fn write_dicom_seg(
    path: &Path,
    volume: &Volume,
    source: &SourceSeries,
    mask: &Array3<u8>,
    segment: &SegmentDescription,
) -> Result<(), IoError> {
    segment.validate().map_err(|problem| IoError::InvalidText {
        path: path.into(),
        problem,
    })?;
    source.check_volume(path, volume)?;
    let (columns, rows) = (source.header.columns, source.header.rows);
    let slice_mask = |k: usize| -> Vec<bool> {
        (0..rows)
            .flat_map(|r| (0..columns).map(move |c| (c, r)))
            .map(|(c, r)| mask[[c, r, k]] != 0)
            .collect()
    };
    let mut kept: Vec<usize> = (0..source.frames.len())
        .filter(|&k| mask.index_axis(ndarray::Axis(2), k).iter().any(|&v| v != 0))
        .collect();
    if kept.is_empty() {
        kept.push(0);
    }
    let frames: Vec<Vec<bool>> = kept.iter().map(|&k| slice_mask(k)).collect();
    let (date, time) = date_time_now();
    let mut obj = source.header.shared.clone();
    let mut put = |e: DataElement<InMemDicomObject>| {
        obj.put(e);
    };
    let sop_instance = new_uid();
    put(string(tags::SOP_CLASS_UID, VR::UI, SEGMENTATION_STORAGE));
    put(string(tags::SOP_INSTANCE_UID, VR::UI, &sop_instance));
    put(string(tags::MODALITY, VR::CS, "SEG"));
    put(string(tags::SERIES_INSTANCE_UID, VR::UI, &new_uid()));
    put(DataElement::new(
        tags::SERIES_NUMBER,
        VR::IS,
        PrimitiveValue::from("300"),
    ));
    put(string(tags::SERIES_DESCRIPTION, VR::LO, "medico segmentation"));
    put(DataElement::new(
        tags::INSTANCE_NUMBER,
        VR::IS,
        PrimitiveValue::from("1"),
    ));
    put(string(tags::MANUFACTURER, VR::LO, "medico"));
    put(string(tags::MANUFACTURER_MODEL_NAME, VR::LO, &segment.algorithm_name));
    put(string(tags::DEVICE_SERIAL_NUMBER, VR::LO, "1"));
    put(string(tags::SOFTWARE_VERSIONS, VR::LO, env!("CARGO_PKG_VERSION")));
    put(string(tags::CONTENT_DATE, VR::DA, &date));
    put(string(tags::CONTENT_TIME, VR::TM, &time));
    put(string(tags::SERIES_DATE, VR::DA, &date));
    put(string(tags::SERIES_TIME, VR::TM, &time));
    put(strings(tags::IMAGE_TYPE, VR::CS, &["DERIVED", "PRIMARY"]));
    put(string(tags::CONTENT_LABEL, VR::CS, "MEDICO"));
    put(string(tags::CONTENT_DESCRIPTION, VR::LO, "Segment Anything on medico"));
    put(DataElement::new(
        tags::CONTENT_CREATOR_NAME,
        VR::PN,
        PrimitiveValue::Empty,
    ));
    put(string(tags::SEGMENTATION_TYPE, VR::CS, "BINARY"));
    put(string(tags::SEGMENTS_OVERLAP, VR::CS, "NO"));
    put(sequence(tags::SEGMENT_SEQUENCE, vec![segment_item(segment)]));
    put(unsigned(tags::SAMPLES_PER_PIXEL, 1));
    put(string(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"));
    put(unsigned(tags::ROWS, rows as u16));
    put(unsigned(tags::COLUMNS, columns as u16));
    put(unsigned(tags::BITS_ALLOCATED, 1));
    put(unsigned(tags::BITS_STORED, 1));
    put(unsigned(tags::HIGH_BIT, 0));
    put(unsigned(tags::PIXEL_REPRESENTATION, 0));
    put(string(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00"));
    put(DataElement::new(
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        PrimitiveValue::from(frames.len().to_string()),
    ));
    let mut measures = vec![decimals(tags::PIXEL_SPACING, &source.header.spacing)];
    if let Some(thickness) = source.header.slice_thickness {
        measures.push(decimals(tags::SLICE_THICKNESS, &[thickness]));
    }
    put(sequence(
        tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
        vec![item(vec![
            sequence(
                tags::PLANE_ORIENTATION_SEQUENCE,
                vec![item(vec![decimals(
                    tags::IMAGE_ORIENTATION_PATIENT,
                    &source.header.orientation,
                )])],
            ),
            sequence(tags::PIXEL_MEASURES_SEQUENCE, vec![item(measures)]),
        ])],
    ));
    put(sequence(
        tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
        kept.iter()
            .enumerate()
            .map(|(i, &k)| per_frame_item(&source.frames[k], i))
            .collect(),
    ));
    for element in dimensions() {
        put(element);
    }
    put(sequence(
        tags::SOURCE_IMAGE_SEQUENCE,
        kept.iter()
            .map(|&k| source_reference(&source.frames[k], true))
            .collect(),
    ));
    let mut instances: Vec<&SourceFrame> = Vec::new();
    for frame in &source.frames {
        if !instances.iter().any(|f| f.sop_instance_uid == frame.sop_instance_uid) {
            instances.push(frame);
        }
    }
    put(sequence(
        tags::REFERENCED_SERIES_SEQUENCE,
        vec![item(vec![
            string(tags::SERIES_INSTANCE_UID, VR::UI, &source.header.series_instance_uid),
            sequence(
                tags::REFERENCED_INSTANCE_SEQUENCE,
                instances
                    .iter()
                    .map(|f| {
                        item(vec![
                            string(tags::REFERENCED_SOP_CLASS_UID, VR::UI, &f.sop_class_uid),
                            string(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, &f.sop_instance_uid),
                        ])
                    })
                    .collect(),
            ),
        ])],
    ));
    put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::from(pack_bits(&frames)),
    ));
    write_dataset(path, obj)
}

/// Reads a BINARY DICOM SEG (medico's, or another tool's on the same series) onto `volume`'s grid: each
/// frame goes to the slice at its plane position; voxels get their segment's number.
pub fn read_dicom_seg(path: &Path, volume: &Volume) -> Result<Array3<u8>, IoError> {
    let bytes = std::fs::read(path).map_err(|e| IoError::read(path, e))?;
    let obj = parse_dataset(path, &bytes)?;
    let bad = |what: String| IoError::unusable(path, what);
    if text(&obj, tags::SOP_CLASS_UID).as_deref() != Some(SEGMENTATION_STORAGE) {
        return Err(bad("not a DICOM Segmentation (SOP Class UID)".into()));
    }
    if text(&obj, tags::SEGMENTATION_TYPE).as_deref() != Some("BINARY") {
        return Err(bad("only BINARY segmentations are read".into()));
    }
    let int = |tag: Tag| obj.get(tag).and_then(|e| e.to_int::<usize>().ok());
    let [columns_v, rows_v, slices] = volume.shape();
    let (rows, columns) = (int(tags::ROWS).unwrap_or(0), int(tags::COLUMNS).unwrap_or(0));
    if (rows, columns) != (rows_v, columns_v) {
        return Err(bad(format!(
            "{columns}x{rows} frames; the volume's slices are {columns_v}x{rows_v}"
        )));
    }
    let per_frame: Vec<&InMemDicomObject> = obj
        .get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .and_then(|e| e.value().items())
        .map(|items| items.iter().collect())
        .unwrap_or_default();
    let n_frames = int(tags::NUMBER_OF_FRAMES).unwrap_or(1);
    if per_frame.len() != n_frames {
        return Err(bad(format!(
            "{} per-frame groups for {n_frames} frames",
            per_frame.len()
        )));
    }
    let pixels = obj
        .get(tags::PIXEL_DATA)
        .map(|e| e.to_bytes().map(|b| b.into_owned()))
        .transpose()
        .map_err(|e| IoError::corrupt(path, "unreadable Pixel Data", e))?
        .unwrap_or_default();
    let frame_bits = rows * columns;
    if pixels.len() * 8 < frame_bits * n_frames {
        return Err(bad(format!(
            "Pixel Data holds {} bytes; {n_frames} frames of {columns}x{rows} bits need {}",
            pixels.len(),
            (frame_bits * n_frames).div_ceil(8)
        )));
    }
    let mut mask = Array3::<u8>::zeros((columns, rows, slices));
    for (f, group) in per_frame.iter().enumerate() {
        let lps = fixed::<3>(
            first_item(group, tags::PLANE_POSITION_SEQUENCE).and_then(|p| numbers(p, tags::IMAGE_POSITION_PATIENT)),
        )
        .ok_or_else(|| bad(format!("frame {}: no Image Position (Patient)", f + 1)))?;
        let segment = first_item(group, tags::SEGMENT_IDENTIFICATION_SEQUENCE)
            .and_then(|s| s.get(tags::REFERENCED_SEGMENT_NUMBER))
            .and_then(|e| e.to_int::<u8>().ok())
            .unwrap_or(1);
        let ijk = volume
            .world_to_voxel([-lps[0], -lps[1], lps[2]])
            .ok_or_else(|| bad("the volume's affine is singular".into()))?;
        let k = ijk[2].round();
        let on_grid = ijk[0].abs() < 0.01 && ijk[1].abs() < 0.01 && (ijk[2] - k).abs() < 0.01;
        if !on_grid || k < 0.0 || k >= slices as f64 {
            return Err(bad(format!(
                "frame {} at ({:.2}, {:.2}, {:.2}) mm (LPS) is not a slice of the volume",
                f + 1,
                lps[0],
                lps[1],
                lps[2]
            )));
        }
        for r in 0..rows {
            for c in 0..columns {
                let n = f * frame_bits + r * columns + c;
                if pixels[n / 8] & (1 << (n % 8)) != 0 {
                    mask[[c, r, k as usize]] = segment;
                }
            }
        }
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_packed_across_frames_lowest_bit_first_to_an_even_length() {
        let frames = vec![
            vec![true, false, false],
            vec![false, false, false, true, true, false, false, false, true],
        ];
        assert_eq!(pack_bits(&frames), vec![0b1100_0001, 0b0000_1000]);
        assert_eq!(pack_bits(&[vec![true]]), vec![1, 0]);
    }

    #[test]
    fn any_model_name_gives_a_valid_algorithm_name() {
        assert_eq!(algorithm_name("medico-lite"), "medico medico-lite");
        let long = algorithm_name(&format!("{}\\x\n", "m".repeat(100)));
        assert_eq!(long.chars().count(), MAX_LONG_STRING_CHARS);
        assert_eq!(check_long_string("algorithm name", &long), Ok(()));
        assert_eq!(algorithm_name("a\\b\tc"), "medico a_b_c");
    }
}
