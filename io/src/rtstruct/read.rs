//! Reading an RT Structure Set: its ROIs (number, name, colour, interpreted type, frame of reference) and
//! each ROI's contours (geometric type, points in patient coordinates, the image each references).

use std::path::{Path, PathBuf};

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::RT_STRUCTURE_SET_STORAGE;
use crate::dicom_elements::text;
use crate::dicom_io::{numbers, parse_dataset};
use crate::IoError;

/// One contour of an ROI.
#[derive(Debug, Clone)]
pub struct Contour {
    /// Contour Geometric Type: `CLOSED_PLANAR`, `OPEN_PLANAR`, `POINT`, ...
    pub geometric_type: String,
    /// Contour Data: points in patient coordinates (LPS mm).
    pub points: Vec<[f64; 3]>,
    /// The SOP Instance UID of the image the contour is drawn on (Contour Image Sequence), if given.
    pub image: Option<String>,
}

/// One region of interest with its contours.
#[derive(Debug, Clone)]
pub struct Roi {
    /// ROI Number.
    pub number: i64,
    /// ROI Name.
    pub name: String,
    /// The frame of reference its contours are in.
    pub frame_of_reference: Option<String>,
    /// ROI Display Color.
    pub color: Option<[u8; 3]>,
    /// RT ROI Interpreted Type (ORGAN, PTV, EXTERNAL, ...).
    pub interpreted_type: Option<String>,
    /// Its contours (none for an ROI declared without any).
    pub contours: Vec<Contour>,
}

/// An RT Structure Set as read.
#[derive(Debug, Clone)]
pub struct StructureSet {
    /// The file it was read from (named in errors).
    pub path: PathBuf,
    /// Structure Set Label.
    pub label: Option<String>,
    /// The frames of reference it references.
    pub frames_of_reference: Vec<String>,
    /// The Series Instance UIDs of the image series it references.
    pub referenced_series: Vec<String>,
    /// Its ROIs, in the file's order.
    pub rois: Vec<Roi>,
}

fn items(obj: &InMemDicomObject, tag: Tag) -> &[InMemDicomObject] {
    obj.get(tag).and_then(|e| e.value().items()).unwrap_or(&[])
}

fn integer(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    obj.get(tag).and_then(|e| e.to_int::<i64>().ok())
}

/// Whether a dataset is an RT Structure Set (its SOP Class, or its modality RTSTRUCT).
fn is_structure_set(obj: &InMemDicomObject) -> bool {
    text(obj, tags::SOP_CLASS_UID).as_deref() == Some(RT_STRUCTURE_SET_STORAGE)
        || text(obj, tags::MODALITY).as_deref() == Some("RTSTRUCT")
}

/// Reads the RT Structure Set at `path`; refuses, naming the file, one that is not a structure set or has
/// unreadable contour data.
pub fn read_structure_set(path: &Path) -> Result<StructureSet, IoError> {
    let bytes = std::fs::read(path).map_err(|e| IoError::read(path, e))?;
    let obj = parse_dataset(path, &bytes)?;
    if !is_structure_set(&obj) {
        return Err(IoError::unusable(
            path,
            "not an RT Structure Set (SOP Class UID 1.2.840.10008.5.1.4.1.1.481.3 or Modality RTSTRUCT)",
        ));
    }
    structure_set(path, &obj)
}

/// The RT Structure Set at `path` when it is one (a DICOM file whose SOP Class or Modality says so), read
/// with one parse; `None` for any other file, a DICOM file that does not parse included (its reader says
/// why).
pub fn read_if_structure_set(path: &Path) -> Result<Option<StructureSet>, IoError> {
    if !path.is_file() || !crate::dicom_io::looks_like_dicom(path) {
        return Ok(None);
    }
    let bytes = std::fs::read(path).map_err(|e| IoError::read(path, e))?;
    match parse_dataset(path, &bytes) {
        Ok(obj) if is_structure_set(&obj) => structure_set(path, &obj).map(Some),
        _ => Ok(None),
    }
}

/// The structure set a parsed dataset holds.
fn structure_set(path: &Path, obj: &InMemDicomObject) -> Result<StructureSet, IoError> {
    let mut rois: Vec<Roi> = items(obj, tags::STRUCTURE_SET_ROI_SEQUENCE)
        .iter()
        .filter_map(|item| {
            let number = integer(item, tags::ROI_NUMBER)?;
            Some(Roi {
                number,
                name: text(item, tags::ROI_NAME).unwrap_or_else(|| format!("ROI {number}")),
                frame_of_reference: text(item, tags::REFERENCED_FRAME_OF_REFERENCE_UID),
                color: None,
                interpreted_type: None,
                contours: Vec::new(),
            })
        })
        .collect();
    for item in items(obj, tags::ROI_CONTOUR_SEQUENCE) {
        let Some(number) = integer(item, tags::REFERENCED_ROI_NUMBER) else {
            continue;
        };
        let Some(roi) = rois.iter_mut().find(|r| r.number == number) else {
            continue;
        };
        roi.color = numbers(item, tags::ROI_DISPLAY_COLOR)
            .filter(|c| c.len() == 3)
            .map(|c| std::array::from_fn(|n| c[n].clamp(0.0, 255.0) as u8));
        for (n, contour) in items(item, tags::CONTOUR_SEQUENCE).iter().enumerate() {
            roi.contours.push(read_contour(path, &roi.name, n, contour)?);
        }
    }
    for item in items(obj, tags::RTROI_OBSERVATIONS_SEQUENCE) {
        let number = integer(item, tags::REFERENCED_ROI_NUMBER);
        if let Some(roi) = rois.iter_mut().find(|r| Some(r.number) == number) {
            roi.interpreted_type = text(item, tags::RTROI_INTERPRETED_TYPE);
        }
    }
    let references = items(obj, tags::REFERENCED_FRAME_OF_REFERENCE_SEQUENCE);
    let referenced_series = references
        .iter()
        .flat_map(|f| items(f, tags::RT_REFERENCED_STUDY_SEQUENCE))
        .flat_map(|s| items(s, tags::RT_REFERENCED_SERIES_SEQUENCE))
        .filter_map(|s| text(s, tags::SERIES_INSTANCE_UID))
        .collect();
    Ok(StructureSet {
        path: path.to_path_buf(),
        label: text(obj, tags::STRUCTURE_SET_LABEL),
        frames_of_reference: references
            .iter()
            .filter_map(|f| text(f, tags::FRAME_OF_REFERENCE_UID))
            .collect(),
        referenced_series,
        rois,
    })
}

/// The `n`-th contour of ROI `roi`: its points must be finite triplets.
fn read_contour(path: &Path, roi: &str, n: usize, item: &InMemDicomObject) -> Result<Contour, IoError> {
    let values = numbers(item, tags::CONTOUR_DATA).unwrap_or_default();
    if !values.len().is_multiple_of(3) || values.iter().any(|v| !v.is_finite()) {
        return Err(IoError::unusable(
            path,
            format!(
                "ROI '{roi}', contour {}: Contour Data is not a list of finite (x, y, z) triplets",
                n + 1
            ),
        ));
    }
    Ok(Contour {
        geometric_type: text(item, tags::CONTOUR_GEOMETRIC_TYPE).unwrap_or_default(),
        points: values.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect(),
        image: items(item, tags::CONTOUR_IMAGE_SEQUENCE)
            .first()
            .and_then(|i| text(i, tags::REFERENCED_SOP_INSTANCE_UID)),
    })
}

impl StructureSet {
    /// The ROI named `name` (exactly, else ignoring case), or numbered `name`.
    pub fn roi(&self, name: &str) -> Result<&Roi, IoError> {
        self.rois
            .iter()
            .find(|r| r.name == name)
            .or_else(|| self.rois.iter().find(|r| r.name.eq_ignore_ascii_case(name)))
            .or_else(|| {
                let number = name.trim().parse::<i64>().ok()?;
                self.rois.iter().find(|r| r.number == number)
            })
            .ok_or_else(|| {
                let names: Vec<&str> = self.rois.iter().map(|r| r.name.as_str()).collect();
                IoError::unusable(
                    &self.path,
                    format!("no ROI named '{name}'; it holds: {}", names.join(", ")),
                )
            })
    }
}
