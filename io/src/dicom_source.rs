//! The DICOM series a mask was drawn on, as the writers of derived objects (SEG, RT Structure Set) reference
//! it: patient and study attributes to copy, the series and frame of reference, and every slice's SOP
//! instance and position in the volume's slice order. Imperfectly anonymised files are common: an empty SOP
//! Class or Instance UID in the dataset falls back to the file meta's Media Storage SOP Class / Instance
//! UID, and only what no part of the file gives is refused.

use std::path::{Path, PathBuf};

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, InMemDicomObject};

use crate::dicom_elements::{string, text};
use crate::dicom_io::{cross, dot, frame_geometry, parse_dataset, series_files, FrameGeometry};
use crate::volume::Volume;
use crate::IoError;

/// One slice of the source: which instance (and frame) it is and where it lies.
#[derive(Debug, Clone)]
pub(crate) struct SourceFrame {
    pub(crate) sop_class_uid: String,
    pub(crate) sop_instance_uid: String,
    /// 1-based frame number in a multi-frame instance.
    pub(crate) frame: Option<u32>,
    /// Image Position (Patient), LPS mm.
    pub(crate) position: [f64; 3],
}

impl SourceFrame {
    /// The image reference of this slice: Referenced SOP Class and Instance UID, and the frame number in a
    /// multi-frame instance.
    pub(crate) fn reference_elements(&self) -> Vec<DataElement<InMemDicomObject>> {
        let mut elements = vec![
            string(tags::REFERENCED_SOP_CLASS_UID, VR::UI, &self.sop_class_uid),
            string(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, &self.sop_instance_uid),
        ];
        if let Some(number) = self.frame {
            elements.push(DataElement::new(
                tags::REFERENCED_FRAME_NUMBER,
                VR::IS,
                PrimitiveValue::from(number.to_string()),
            ));
        }
        elements
    }
}

/// What a derived object (SEG, RT Structure Set) needs to know of the DICOM series a volume was read from: its patient/study attributes and
/// the source of every slice, in the volume's slice order.
#[derive(Debug, Clone)]
pub struct SourceSeries {
    pub(crate) header: SeriesHeader,
    /// Slices in the order of the volume's third axis (sorted along the normal, as the reader sorts).
    pub(crate) frames: Vec<SourceFrame>,
    /// What had to be assumed (UIDs the files lack), to tell the user.
    pub notes: Vec<String>,
}

/// A `2.25` UID derived from the SOP Instance UIDs of `frames` and `what` (an xxh3-128 as a decimal).
fn derived_uid(what: &str, frames: &[SourceFrame]) -> String {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(what.as_bytes());
    for frame in frames {
        hasher.update(frame.sop_instance_uid.as_bytes());
        hasher.update(&[0]);
    }
    format!("2.25.{}", hasher.digest128() >> 1)
}

/// The attributes a series' first file gives for the whole series.
#[derive(Debug, Clone)]
pub(crate) struct SeriesHeader {
    /// Patient, study and frame-of-reference attributes, copied into derived objects.
    pub(crate) shared: InMemDicomObject,
    pub(crate) series_instance_uid: String,
    pub(crate) orientation: [f64; 6],
    /// Pixel Spacing (between rows, between columns).
    pub(crate) spacing: [f64; 2],
    pub(crate) slice_thickness: Option<f64>,
    pub(crate) rows: usize,
    pub(crate) columns: usize,
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

fn missing(file: &Path, what: &str) -> IoError {
    IoError::unusable(
        file,
        format!("no {what}: cannot reference it from a derived object (DICOM SEG or RT Structure Set)"),
    )
}

/// The SOP Class and Instance UIDs of a file: the dataset's, else (an empty or absent value, as imperfect
/// anonymisers leave) the file meta's Media Storage SOP Class / Instance UID.
fn sop_uids(file: &Path, obj: &DefaultDicomObject) -> Result<(String, String), IoError> {
    let meta = obj.meta();
    let from_meta = |uid: &str| Some(uid.trim_end_matches(['\0', ' ']).to_string()).filter(|u| !u.is_empty());
    let class = text(obj, tags::SOP_CLASS_UID)
        .or_else(|| from_meta(&meta.media_storage_sop_class_uid))
        .ok_or_else(|| missing(file, "SOP Class UID (neither in the dataset nor in the file meta)"))?;
    let instance = text(obj, tags::SOP_INSTANCE_UID)
        .or_else(|| from_meta(&meta.media_storage_sop_instance_uid))
        .ok_or_else(|| missing(file, "SOP Instance UID (neither in the dataset nor in the file meta)"))?;
    Ok((class, instance))
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
            series_instance_uid: text(obj, tags::SERIES_INSTANCE_UID).unwrap_or_default(),
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
            let (sop_class_uid, sop_instance_uid) = sop_uids(&file, &obj)?;
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
        let mut header = header.ok_or_else(|| IoError::unusable(path, "the folder holds no files"))?;
        let o = header.orientation;
        let normal = cross([o[0], o[1], o[2]], [o[3], o[4], o[5]]);
        frames.sort_by(|a, b| dot(a.position, normal).total_cmp(&dot(b.position, normal)));
        let mut notes = Vec::new();
        // An anonymiser that emptied the series' or study's UID leaves nothing to reference them by; a UID
        // derived from the instances' own stands in, the same for every write from the same files.
        if header.series_instance_uid.is_empty() {
            header.series_instance_uid = derived_uid("series", &frames);
            notes.push(format!(
                "the series has no Series Instance UID; derived objects reference it as {} (derived from its \
                 SOP Instance UIDs)",
                header.series_instance_uid
            ));
        }
        if text(&header.shared, tags::STUDY_INSTANCE_UID).is_none() {
            let study = derived_uid("study", &frames);
            notes.push(format!(
                "the series has no Study Instance UID; derived objects use {study} (derived from its SOP \
                 Instance UIDs)"
            ));
            header.shared.put(DataElement::new(
                tags::STUDY_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from(study),
            ));
        }
        Ok(Self { header, frames, notes })
    }

    /// The series' Frame of Reference UID.
    pub fn frame_of_reference(&self) -> Option<String> {
        text(&self.header.shared, tags::FRAME_OF_REFERENCE_UID)
    }

    /// The series' Series Instance UID.
    pub fn series_instance_uid(&self) -> &str {
        &self.header.series_instance_uid
    }

    /// The volume slice of the single-frame instance `sop_instance_uid`, if the series holds it.
    pub fn slice_of(&self, sop_instance_uid: &str) -> Option<usize> {
        self.frames
            .iter()
            .position(|f| f.frame.is_none() && f.sop_instance_uid == sop_instance_uid)
    }

    /// The patient position (LPS mm) of pixel `(column, row)` (continuous) on volume slice `k`.
    pub(crate) fn patient_position(&self, k: usize, [column, row]: [f64; 2]) -> [f64; 3] {
        let o = self.header.orientation;
        let [row_spacing, column_spacing] = self.header.spacing;
        let origin = self.frames[k].position;
        std::array::from_fn(|a| origin[a] + column * column_spacing * o[a] + row * row_spacing * o[3 + a])
    }

    /// Whether the volume is this series' (same rows, columns and slices).
    pub(crate) fn check_volume(&self, path: &Path, volume: &Volume) -> Result<(), IoError> {
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
