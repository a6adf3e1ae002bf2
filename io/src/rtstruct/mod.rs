//! DICOM RT Structure Sets, in and out: the contours radiotherapy exchanges (closed planar polygons per
//! slice in patient coordinates). Read: list the ROIs and rasterise one onto a volume's grid
//! ([`grid::rasterise_roi`], even-odd rule), or all of them into a label map ([`label_map`]). Write: masks on
//! a DICOM series' grid as contours ([`write::write_rtstruct`]).

pub mod contours;
pub mod grid;
pub mod raster;
pub mod read;
pub mod write;

use std::path::Path;

use ndarray::Array3;

use crate::dicom_io::parse_dataset;
use crate::dicom_source::SourceSeries;
use crate::volume::Volume;
use crate::IoError;

pub use grid::{rasterise_roi, RasterisedRoi};
pub use read::{read_structure_set, Roi, StructureSet};
pub use write::{write_rtstruct, Generation, RoiMask};

/// RT Structure Set Storage.
pub const RT_STRUCTURE_SET_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.481.3";

/// Whether the file at `path` is an RT Structure Set (a DICOM file whose SOP Class or Modality says so).
pub fn is_structure_set_file(path: &Path) -> bool {
    if !path.is_file() || !crate::dicom_io::looks_like_dicom(path) {
        return false;
    }
    std::fs::read(path)
        .ok()
        .and_then(|bytes| parse_dataset(path, &bytes).ok())
        .is_some_and(|obj| read::is_structure_set(&obj))
}

/// Every ROI with an area (closed planar contours) of `set` on `volume`'s grid as one label map: voxels get
/// their ROI's number; where ROIs overlap (an organ inside the body outline) the smaller ROI wins, so
/// that every ROI that can be seen is. `series` as in [`rasterise_roi`].
pub fn label_map(set: &StructureSet, volume: &Volume, series: Option<&SourceSeries>) -> Result<Array3<f32>, IoError> {
    let mut rasterised: Vec<(f32, RasterisedRoi)> = Vec::new();
    for roi in set.rois.iter().filter(|r| grid::is_area(r)) {
        rasterised.push((roi.number as f32, rasterise_roi(set, roi, volume, series)?));
    }
    let area = |r: &RasterisedRoi| r.mask.iter().filter(|&&v| v != 0).count();
    rasterised.sort_by_key(|(_, r)| std::cmp::Reverse(area(r)));
    let mut labels = Array3::<f32>::zeros(volume.data.dim());
    for (number, roi) in &rasterised {
        labels.zip_mut_with(&roi.mask, |label, &inside| {
            if inside != 0 {
                *label = *number;
            }
        });
    }
    Ok(labels)
}
