//! Label volumes for an image, from whatever holds them: a label map in any volume format medico reads
//! (NIfTI, NRRD, DICOM), on the image's grid or the same lattice stored in another orientation, or a DICOM RT
//! Structure Set whose ROIs are rasterised onto the image (voxels get ROI numbers). Evaluation ground truth
//! and training labels are read through here.

use std::path::Path;

use crate::dicom_source::SourceSeries;
use crate::input::{is_dicom_scan, open_scan_within, ReadLimits, Scan};
use crate::rtstruct::{label_map, read_if_structure_set, read_structure_set};
use crate::volume::{labels_on_image_grid, Volume};
use crate::IoError;

/// The labels at `labels_path` on the grid of `image` (read from `image_path`).
pub fn read_labels_for(labels_path: &Path, image: &Volume, image_path: &Path) -> Result<Volume, IoError> {
    read_labels_for_within(labels_path, image, image_path, &ReadLimits::UNLIMITED)
}

/// [`read_labels_for`] for files from untrusted sources: a label volume whose header declares more than
/// `limits` allow is refused before it is inflated (a structure set is bounded by its file: the label map it
/// fills is the image's grid).
pub fn read_labels_for_within(
    labels_path: &Path,
    image: &Volume,
    image_path: &Path,
    limits: &ReadLimits,
) -> Result<Volume, IoError> {
    if let Some(set) = read_if_structure_set(labels_path)? {
        let series = if is_dicom_scan(image_path) {
            Some(SourceSeries::read(image_path)?)
        } else {
            None
        };
        let data = label_map(&set, image, series.as_ref())?;
        return Ok(Volume {
            data,
            affine: image.affine,
            grid: image.grid.clone(),
            format: "DICOM RT Structure Set (ROI numbers)".into(),
            notes: series.map(|s| s.notes).unwrap_or_default(),
        });
    }
    match open_scan_within(labels_path, None, limits)? {
        Scan::Volume(labels) => labels_on_image_grid(*labels, image, labels_path),
        Scan::Image(_) => Err(IoError::unusable(
            labels_path,
            "a 2D image where a label volume was expected",
        )),
    }
}

/// The number of the ROI named `name` in the structure set at `path` (for a case or a configuration that
/// names its label by ROI).
pub fn roi_number(path: &Path, name: &str) -> Result<i64, IoError> {
    Ok(read_structure_set(path)?.roi(name)?.number)
}
