//! DICOM SEG out (and back in): a BINARY Segmentation object that references the DICOM series a mask was
//! drawn on, with the attributes highdicom writes — patient, study and frame of reference copied from the
//! source; one frame per non-empty slice with its plane position, segment number and the source image it
//! derives from; the segment's description with the algorithm's name and version; dimensions over segment
//! number and image position; pixels bit-packed across frames. A hospital's PACS stores it beside the scan.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use dicom_core::value::{DataSetSequence, Value};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use ndarray::Array3;

use crate::atomic_output::{persist, temp_beside};
use crate::dicom_io::{
    cross, dot, first_item, fixed, frame_geometry, numbers, parse_dataset, series_files, FrameGeometry,
};
use crate::volume::Volume;
use crate::IoError;

/// Segmentation Storage.
const SEGMENTATION_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.66.4";
/// medico's implementation class UID (a UUID-derived `2.25` UID, fixed).
const IMPLEMENTATION_CLASS_UID: &str = "2.25.255734890216617463936347733829741651779";

/// One slice of the source: which instance (and frame) it is and where it lies.
#[derive(Debug, Clone)]
struct SourceFrame {
    sop_class_uid: String,
    sop_instance_uid: String,
    /// 1-based frame number in a multi-frame instance.
    frame: Option<u32>,
    /// Image Position (Patient), LPS mm.
    position: [f64; 3],
}

/// What a SEG needs to know of the DICOM series a volume was read from: its patient/study attributes and
/// the source of every slice, in the volume's slice order.
#[derive(Debug, Clone)]
pub struct SourceSeries {
    header: SeriesHeader,
    /// Slices in the order of the volume's third axis (sorted along the normal, as the reader sorts).
    frames: Vec<SourceFrame>,
}

/// The attributes a series' first file gives for the whole series.
#[derive(Debug, Clone)]
struct SeriesHeader {
    /// Patient, study and frame-of-reference attributes, copied into the SEG.
    shared: InMemDicomObject,
    series_instance_uid: String,
    orientation: [f64; 6],
    /// Pixel Spacing (between rows, between columns).
    spacing: [f64; 2],
    slice_thickness: Option<f64>,
    rows: usize,
    columns: usize,
}

/// Attributes copied from the source: the Patient, General Study, Frame of Reference modules (Type 2
/// ones written empty when the source lacks them).
const COPIED: [(Tag, VR); 12] = [
    (tags::PATIENT_NAME, VR::PN),
    (tags::PATIENT_ID, VR::LO),
    (tags::PATIENT_BIRTH_DATE, VR::DA),
    (tags::PATIENT_SEX, VR::CS),
    (tags::STUDY_INSTANCE_UID, VR::UI),
    (tags::STUDY_DATE, VR::DA),
    (tags::STUDY_TIME, VR::TM),
    (tags::REFERRING_PHYSICIAN_NAME, VR::PN),
    (tags::STUDY_ID, VR::SH),
    (tags::ACCESSION_NUMBER, VR::SH),
    (tags::FRAME_OF_REFERENCE_UID, VR::UI),
    (tags::POSITION_REFERENCE_INDICATOR, VR::LO),
];

fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    obj.get(tag)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
        .filter(|s| !s.is_empty())
}

fn missing(file: &Path, what: &str) -> IoError {
    IoError::unusable(file, format!("no {what}: cannot reference it from a DICOM SEG"))
}

impl SeriesHeader {
    /// The series attributes of `obj`, read from `file`.
    fn of(file: &Path, obj: &InMemDicomObject, geometry: &FrameGeometry) -> Result<Self, IoError> {
        let mut shared = InMemDicomObject::new_empty();
        for (tag, vr) in COPIED {
            match obj.get(tag) {
                Some(element) => shared.put(element.clone()),
                None => shared.put(DataElement::new(tag, vr, PrimitiveValue::Empty)),
            };
        }
        if text(obj, tags::FRAME_OF_REFERENCE_UID).is_none() {
            return Err(missing(file, "Frame of Reference UID"));
        }
        let int = |tag: Tag| obj.get(tag).and_then(|e| e.to_int::<usize>().ok());
        Ok(Self {
            shared,
            series_instance_uid: text(obj, tags::SERIES_INSTANCE_UID)
                .ok_or_else(|| missing(file, "Series Instance UID"))?,
            orientation: geometry
                .orientation
                .ok_or_else(|| missing(file, "Image Orientation (Patient)"))?,
            spacing: geometry.spacing.ok_or_else(|| missing(file, "Pixel Spacing"))?,
            slice_thickness: geometry.slice_spacing,
            rows: int(tags::ROWS).ok_or_else(|| missing(file, "Rows"))?,
            columns: int(tags::COLUMNS).ok_or_else(|| missing(file, "Columns"))?,
        })
    }
}

/// The files of a DICOM input: the file, or a series folder's files (as the volume reader lists them).
fn input_files(path: &Path) -> Result<Vec<PathBuf>, IoError> {
    if path.is_dir() {
        series_files(path)
    } else {
        Ok(vec![path.to_path_buf()])
    }
}

impl SourceSeries {
    /// Reads the references of the DICOM file or series folder at `path` (the input a volume was read
    /// from).
    pub fn read(path: &Path) -> Result<Self, IoError> {
        let mut frames = Vec::new();
        let mut header: Option<SeriesHeader> = None;
        for file in input_files(path)? {
            let bytes = std::fs::read(&file).map_err(|e| IoError::read(&file, e))?;
            let obj = parse_dataset(&file, &bytes)?;
            let sop_class_uid = text(&obj, tags::SOP_CLASS_UID).ok_or_else(|| missing(&file, "SOP Class UID"))?;
            let sop_instance_uid =
                text(&obj, tags::SOP_INSTANCE_UID).ok_or_else(|| missing(&file, "SOP Instance UID"))?;
            let n_frames = text(&obj, tags::NUMBER_OF_FRAMES)
                .and_then(|n| n.trim().parse::<usize>().ok())
                .unwrap_or(1)
                .max(1);
            let geometry = frame_geometry(&obj, n_frames);
            for (index, position) in geometry.positions.iter().enumerate() {
                frames.push(SourceFrame {
                    sop_class_uid: sop_class_uid.clone(),
                    sop_instance_uid: sop_instance_uid.clone(),
                    frame: (n_frames > 1).then_some(index as u32 + 1),
                    position: position.ok_or_else(|| missing(&file, "Image Position (Patient)"))?,
                });
            }
            if header.is_none() {
                header = Some(SeriesHeader::of(&file, &obj, &geometry)?);
            }
        }
        let header = header.ok_or_else(|| IoError::unusable(path, "the folder holds no files"))?;
        let o = header.orientation;
        let normal = cross([o[0], o[1], o[2]], [o[3], o[4], o[5]]);
        frames.sort_by(|a, b| dot(a.position, normal).total_cmp(&dot(b.position, normal)));
        Ok(Self { header, frames })
    }

    /// Whether the volume is this series' (same rows, columns and slices).
    fn check_volume(&self, path: &Path, volume: &Volume) -> Result<(), IoError> {
        let [columns, rows, slices] = volume.shape();
        if (columns, rows, slices) != (self.header.columns, self.header.rows, self.frames.len()) {
            return Err(IoError::unusable(
                path,
                format!(
                    "the mask's grid {columns}x{rows}x{slices} is not the source series' {}x{}x{}",
                    self.header.columns,
                    self.header.rows,
                    self.frames.len()
                ),
            ));
        }
        Ok(())
    }
}

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

/// Whether any text value of `obj`, its sequences' items included, is not ASCII.
fn has_non_ascii_text(obj: &InMemDicomObject) -> bool {
    obj.iter().any(|element| match element.value() {
        Value::Primitive(PrimitiveValue::Str(text)) => !text.is_ascii(),
        Value::Primitive(PrimitiveValue::Strs(texts)) => texts.iter().any(|t| !t.is_ascii()),
        Value::Sequence(sequence) => sequence.items().iter().any(has_non_ascii_text),
        _ => false,
    })
}

/// A new UID under the `2.25` root (a random 128-bit UUID as a decimal).
fn new_uid() -> String {
    format!("2.25.{}", rand::random::<u128>() >> 1)
}

/// Today's date and the time now (UTC), as DICOM DA and TM.
fn date_time_now() -> (String, String) {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        format!("{year:04}{month:02}{day:02}"),
        format!("{:02}{:02}{:02}", rest / 3600, rest / 60 % 60, rest % 60),
    )
}

fn string(tag: Tag, vr: VR, value: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::from(value))
}

fn strings(tag: Tag, vr: VR, values: &[&str]) -> DataElement<InMemDicomObject> {
    DataElement::new(
        tag,
        vr,
        PrimitiveValue::Strs(values.iter().map(|v| v.to_string()).collect()),
    )
}

/// Decimal strings (DS: at most 16 characters each).
fn decimals(tag: Tag, values: &[f64]) -> DataElement<InMemDicomObject> {
    let text = |v: f64| {
        let plain = format!("{}", v + 0.0);
        if plain.len() <= 16 {
            plain
        } else {
            format!("{:.10}", v)
                .chars()
                .take(16)
                .collect::<String>()
                .trim_end_matches('.')
                .to_string()
        }
    };
    DataElement::new(
        tag,
        VR::DS,
        PrimitiveValue::Strs(values.iter().map(|&v| text(v)).collect()),
    )
}

fn unsigned(tag: Tag, value: u16) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::US, PrimitiveValue::from(value))
}

fn sequence(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

fn item(elements: Vec<DataElement<InMemDicomObject>>) -> InMemDicomObject {
    InMemDicomObject::from_element_iter(elements)
}

/// A code sequence item (CodeValue, CodingSchemeDesignator, CodeMeaning).
fn code(value: &str, scheme: &str, meaning: &str) -> InMemDicomObject {
    item(vec![
        string(tags::CODE_VALUE, VR::SH, value),
        string(tags::CODING_SCHEME_DESIGNATOR, VR::SH, scheme),
        string(tags::CODE_MEANING, VR::LO, meaning),
    ])
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
    let mut elements = vec![
        string(tags::REFERENCED_SOP_CLASS_UID, VR::UI, &frame.sop_class_uid),
        string(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, &frame.sop_instance_uid),
    ];
    if let Some(number) = frame.frame {
        elements.push(DataElement::new(
            tags::REFERENCED_FRAME_NUMBER,
            VR::IS,
            PrimitiveValue::from(number.to_string()),
        ));
    }
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
    // Text beyond ASCII (a label such as "肝臓", a patient's name from a Latin-1 or Japanese source) is
    // written as UTF-8, and the file says so; an all-ASCII file keeps the default repertoire.
    if has_non_ascii_text(&obj) {
        obj.put(string(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"));
    }
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
                .implementation_version_name("MEDICO"),
        )
        .map_err(|e| IoError::write(path, e))?;
    let temp = temp_beside(path, ".dcm")?;
    file.write_to_file(temp.path()).map_err(|e| IoError::write(path, e))?;
    persist(temp, path)
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

    #[test]
    fn dates_are_civil() {
        let (date, time) = date_time_now();
        assert_eq!((date.len(), time.len()), (8, 6));
        assert!(date.starts_with("20"), "{date}");
    }
}
