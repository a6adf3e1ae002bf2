//! Writing an RT Structure Set for masks drawn on a DICOM series: one ROI per mask (name, colour, the
//! generating algorithm), its contours per slice from the mask's boundaries in patient coordinates (outer
//! boundaries and holes as separate closed planar contours, simplified within [`SIMPLIFY_TOLERANCE`] of a
//! pixel), referencing the series (frame of reference, study, series and every image a contour lies on);
//! patient and study attributes copied from the series, as the SEG writer does.

use std::path::Path;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use ndarray::{Array3, Axis};

use super::contours::{mask_polygons, SIMPLIFY_TOLERANCE};
use super::RT_STRUCTURE_SET_STORAGE;
use crate::dicom_elements::{date_time_now, decimals, item, new_uid, sequence, string, text, write_dataset};
use crate::dicom_seg::check_long_string;
use crate::dicom_source::{SourceFrame, SourceSeries};
use crate::volume::Volume;
use crate::IoError;

/// The Study Component Management SOP Class, which RT Referenced Study items name (as every TPS writes).
const STUDY_COMPONENT_MANAGEMENT: &str = "1.2.840.10008.3.1.2.3.2";

/// Display colours for ROIs written without one of their own, in order (medico's segment colours).
pub const ROI_COLORS: [[u8; 3]; 6] = [
    [255, 64, 64],
    [64, 160, 255],
    [80, 200, 120],
    [240, 200, 40],
    [190, 90, 230],
    [255, 140, 40],
];

/// One ROI to write.
#[derive(Debug, Clone)]
pub struct RoiMask<'a> {
    /// ROI Name (a DICOM LO value).
    pub name: String,
    /// ROI Display Color.
    pub color: [u8; 3],
    /// Non-zero inside, `[column, row, slice]` on the series' grid.
    pub mask: &'a Array3<u8>,
}

/// What generated the ROIs: written as ROI Generation Description with algorithm type SEMIAUTOMATIC.
#[derive(Debug, Clone)]
pub struct Generation {
    /// E.g. "medico medico-lite" ([`crate::dicom_seg::algorithm_name`]).
    pub algorithm_name: String,
}

/// The contours of one ROI on one slice, in patient coordinates.
struct SliceContours<'a> {
    frame: &'a SourceFrame,
    polygons: Vec<Vec<[f64; 3]>>,
}

/// Every slice's contours of `mask`.
fn roi_contours<'a>(source: &'a SourceSeries, mask: &Array3<u8>) -> Vec<SliceContours<'a>> {
    let (columns, rows, _) = mask.dim();
    let mut out = Vec::new();
    for (k, plane) in mask.axis_iter(Axis(2)).enumerate() {
        if !plane.iter().any(|&v| v != 0) {
            continue;
        }
        let slice: Vec<bool> = (0..rows)
            .flat_map(|r| (0..columns).map(move |c| (c, r)))
            .map(|(c, r)| plane[[c, r]] != 0)
            .collect();
        let polygons = mask_polygons(&slice, (rows, columns), SIMPLIFY_TOLERANCE)
            .into_iter()
            .map(|polygon| {
                polygon
                    .into_iter()
                    .map(|vertex| source.patient_position(k, vertex))
                    .collect()
            })
            .collect();
        out.push(SliceContours {
            frame: &source.frames[k],
            polygons,
        });
    }
    out
}

/// An image reference (Referenced SOP Class and Instance UID).
fn image_reference(frame: &SourceFrame) -> InMemDicomObject {
    item(frame.reference_elements())
}

fn integer_string(tag: dicom_core::Tag, value: usize) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::IS, PrimitiveValue::from(value.to_string()))
}

/// Patient coordinates rounded to 0.1 µm, which keeps each DS value short.
fn contour_data(polygon: &[[f64; 3]]) -> DataElement<InMemDicomObject> {
    let values: Vec<f64> = polygon.iter().flatten().map(|v| (v * 1e4).round() / 1e4).collect();
    decimals(tags::CONTOUR_DATA, &values)
}

/// The ROI Contour Sequence item of ROI `number`.
fn roi_contour_item(number: usize, roi: &RoiMask, slices: &[SliceContours]) -> InMemDicomObject {
    let color = roi.color.map(|c| c.to_string());
    let mut elements = vec![
        DataElement::new(
            tags::ROI_DISPLAY_COLOR,
            VR::IS,
            PrimitiveValue::Strs(color.into_iter().collect()),
        ),
        integer_string(tags::REFERENCED_ROI_NUMBER, number),
    ];
    let contours: Vec<InMemDicomObject> = slices
        .iter()
        .flat_map(|s| s.polygons.iter().map(move |p| (s.frame, p)))
        .enumerate()
        .map(|(n, (frame, polygon))| {
            item(vec![
                sequence(tags::CONTOUR_IMAGE_SEQUENCE, vec![image_reference(frame)]),
                string(tags::CONTOUR_GEOMETRIC_TYPE, VR::CS, "CLOSED_PLANAR"),
                integer_string(tags::NUMBER_OF_CONTOUR_POINTS, polygon.len()),
                integer_string(tags::CONTOUR_NUMBER, n + 1),
                contour_data(polygon),
            ])
        })
        .collect();
    if !contours.is_empty() {
        elements.push(sequence(tags::CONTOUR_SEQUENCE, contours));
    }
    item(elements)
}

/// Writes `rois` (masks on the grid of the volume read from `source`) as an RT Structure Set at `path`,
/// atomically; refuses, before writing anything, ROI names that are not DICOM LO values, no ROI, or masks
/// not on the series' grid.
pub fn write_rtstruct(
    path: &Path,
    volume: &Volume,
    source: &SourceSeries,
    rois: &[RoiMask],
    generation: &Generation,
) -> Result<(), IoError> {
    let invalid = |problem| IoError::InvalidText {
        path: path.into(),
        problem,
    };
    if rois.is_empty() {
        return Err(IoError::unusable(path, "no ROI to write"));
    }
    for roi in rois {
        check_long_string("ROI name", &roi.name).map_err(invalid)?;
        if roi.mask.dim() != volume.data.dim() {
            return Err(IoError::unusable(
                path,
                format!("ROI '{}': the mask is not on the volume's grid", roi.name),
            ));
        }
    }
    check_long_string("algorithm name", &generation.algorithm_name).map_err(invalid)?;
    source.check_volume(path, volume)?;
    let frame_of_reference = source
        .frame_of_reference()
        .ok_or_else(|| IoError::unusable(path, "the source series has no Frame of Reference UID"))?;
    let contours: Vec<Vec<SliceContours>> = rois.iter().map(|roi| roi_contours(source, roi.mask)).collect();
    let mut obj = source.header.shared.clone();
    let (date, time) = date_time_now();
    let study = text(&obj, tags::STUDY_INSTANCE_UID).unwrap_or_default();
    for element in [
        string(tags::SOP_CLASS_UID, VR::UI, RT_STRUCTURE_SET_STORAGE),
        string(tags::SOP_INSTANCE_UID, VR::UI, &new_uid()),
        string(tags::MODALITY, VR::CS, "RTSTRUCT"),
        string(tags::SERIES_INSTANCE_UID, VR::UI, &new_uid()),
        integer_string(tags::SERIES_NUMBER, 301),
        string(tags::SERIES_DESCRIPTION, VR::LO, "medico contours"),
        string(tags::SERIES_DATE, VR::DA, &date),
        string(tags::SERIES_TIME, VR::TM, &time),
        DataElement::new(tags::OPERATORS_NAME, VR::PN, PrimitiveValue::Empty),
        integer_string(tags::INSTANCE_NUMBER, 1),
        string(tags::MANUFACTURER, VR::LO, "medico"),
        string(tags::MANUFACTURER_MODEL_NAME, VR::LO, &generation.algorithm_name),
        string(tags::SOFTWARE_VERSIONS, VR::LO, env!("CARGO_PKG_VERSION")),
        string(tags::STRUCTURE_SET_LABEL, VR::SH, "medico"),
        string(tags::STRUCTURE_SET_NAME, VR::LO, "medico contours"),
        string(tags::STRUCTURE_SET_DATE, VR::DA, &date),
        string(tags::STRUCTURE_SET_TIME, VR::TM, &time),
        referenced_frame_of_reference(source, &frame_of_reference, &study),
        sequence(
            tags::STRUCTURE_SET_ROI_SEQUENCE,
            rois.iter()
                .enumerate()
                .map(|(n, roi)| {
                    item(vec![
                        integer_string(tags::ROI_NUMBER, n + 1),
                        string(tags::REFERENCED_FRAME_OF_REFERENCE_UID, VR::UI, &frame_of_reference),
                        string(tags::ROI_NAME, VR::LO, &roi.name),
                        string(tags::ROI_GENERATION_ALGORITHM, VR::CS, "SEMIAUTOMATIC"),
                        string(tags::ROI_GENERATION_DESCRIPTION, VR::LO, &generation.algorithm_name),
                    ])
                })
                .collect(),
        ),
        sequence(
            tags::ROI_CONTOUR_SEQUENCE,
            rois.iter()
                .zip(&contours)
                .enumerate()
                .map(|(n, (roi, slices))| roi_contour_item(n + 1, roi, slices))
                .collect(),
        ),
        sequence(
            tags::RTROI_OBSERVATIONS_SEQUENCE,
            (1..=rois.len())
                .map(|n| {
                    item(vec![
                        integer_string(tags::OBSERVATION_NUMBER, n),
                        integer_string(tags::REFERENCED_ROI_NUMBER, n),
                        DataElement::new(tags::RTROI_INTERPRETED_TYPE, VR::CS, PrimitiveValue::Empty),
                        DataElement::new(tags::ROI_INTERPRETER, VR::PN, PrimitiveValue::Empty),
                    ])
                })
                .collect(),
        ),
    ] {
        obj.put(element);
    }
    write_dataset(path, obj)
}

/// The Referenced Frame of Reference Sequence: the frame of reference, the study and the series with every
/// image of it (Contour Image Sequence).
fn referenced_frame_of_reference(
    source: &SourceSeries,
    frame_of_reference: &str,
    study: &str,
) -> DataElement<InMemDicomObject> {
    let mut instances: Vec<&SourceFrame> = Vec::new();
    for frame in &source.frames {
        if !instances
            .iter()
            .any(|f| f.sop_instance_uid == frame.sop_instance_uid && f.frame == frame.frame)
        {
            instances.push(frame);
        }
    }
    sequence(
        tags::REFERENCED_FRAME_OF_REFERENCE_SEQUENCE,
        vec![item(vec![
            string(tags::FRAME_OF_REFERENCE_UID, VR::UI, frame_of_reference),
            sequence(
                tags::RT_REFERENCED_STUDY_SEQUENCE,
                vec![item(vec![
                    string(tags::REFERENCED_SOP_CLASS_UID, VR::UI, STUDY_COMPONENT_MANAGEMENT),
                    string(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, study),
                    sequence(
                        tags::RT_REFERENCED_SERIES_SEQUENCE,
                        vec![item(vec![
                            string(tags::SERIES_INSTANCE_UID, VR::UI, source.series_instance_uid()),
                            sequence(
                                tags::CONTOUR_IMAGE_SEQUENCE,
                                instances.iter().map(|f| image_reference(f)).collect(),
                            ),
                        ])],
                    ),
                ])],
            ),
        ])],
    )
}
