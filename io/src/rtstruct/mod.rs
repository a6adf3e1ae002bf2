//! DICOM RT Structure Sets, in and out: the contours radiotherapy exchanges (closed planar polygons per
//! slice in patient coordinates). Read: list the ROIs and rasterise one onto a volume's grid
//! ([`grid::rasterise_roi`], even-odd rule), or all of them into a label map ([`label_map`]). Write: masks on
//! a DICOM series' grid as contours ([`write::write_rtstruct`]).

pub mod contours;
pub mod grid;
pub mod raster;
pub mod read;
pub mod write;

use ndarray::Array3;

use crate::dicom_source::SourceSeries;
use crate::volume::Volume;
use crate::IoError;

pub use grid::{rasterise_roi, RasterisedRoi};
pub use read::{read_if_structure_set, read_structure_set, Roi, StructureSet};
pub use write::{write_rtstruct, Generation, RoiMask, ROI_COLORS};

/// RT Structure Set Storage.
pub const RT_STRUCTURE_SET_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.481.3";

/// Every ROI with an area (closed planar contours) of `set` on `volume`'s grid as one label map: voxels get
/// their ROI's number; where ROIs overlap (an organ inside the body outline) the smaller ROI wins, so
/// that every ROI that can be seen is. `series` as in [`rasterise_roi`].
pub fn label_map(set: &StructureSet, volume: &Volume, series: Option<&SourceSeries>) -> Result<Array3<f32>, IoError> {
    // Two passes keep one ROI's mask in memory at a time: the areas first, then the painting, largest first.
    let mut areas: Vec<(&read::Roi, usize)> = Vec::new();
    for roi in set.rois.iter().filter(|r| grid::is_area(r)) {
        let mask = rasterise_roi(set, roi, volume, series)?.mask;
        areas.push((roi, mask.iter().filter(|&&v| v != 0).count()));
    }
    areas.sort_by_key(|&(_, area)| std::cmp::Reverse(area));
    let mut labels = Array3::<f32>::zeros(volume.data.dim());
    for (roi, _) in areas {
        let mask = rasterise_roi(set, roi, volume, series)?.mask;
        let number = roi.number as f32;
        labels.zip_mut_with(&mask, |label, &inside| {
            if inside != 0 {
                *label = number;
            }
        });
    }
    Ok(labels)
}
