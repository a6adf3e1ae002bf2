//! An ROI's contours onto a volume's grid: each closed planar contour is matched to a slice by the image it
//! references (its SOP Instance UID in the series) or by its position, and every slice's contours are
//! filled together by the even-odd rule. Refused, naming the structure set: a frame of reference or a
//! referenced series that is not the volume's, a contour that is not closed and planar on the volume's
//! slices, or one whose referenced image and position disagree.

use ndarray::Array3;

use super::raster::{fill_even_odd, Vertex};
use super::read::{Contour, Roi, StructureSet};
use crate::dicom_source::SourceSeries;
use crate::volume::Volume;
use crate::IoError;

/// How far (in voxels) a contour's points may lie off its slice's plane and still be on it.
const PLANE_TOLERANCE: f64 = 0.25;

/// An ROI on a volume's grid.
#[derive(Debug, Clone)]
pub struct RasterisedRoi {
    /// 1 inside, 0 outside, `[i, j, k]` on the volume's grid.
    pub mask: Array3<u8>,
    /// Contours that lie on a slice of the volume.
    pub contours_on_volume: usize,
    /// Contours on slices the volume does not hold (e.g. the rest of a series of which one slice is given).
    pub contours_elsewhere: usize,
}

/// Whether the ROI has an area to fill: at least one contour, all of them closed planar.
pub fn is_area(roi: &Roi) -> bool {
    !roi.contours.is_empty() && roi.contours.iter().all(|c| c.geometric_type == "CLOSED_PLANAR")
}

/// Rasterises `roi` of `set` onto `volume`. With `series` (the DICOM series the volume was read from) the
/// frame of reference and the referenced series are checked and contours are matched to slices by the
/// images they reference; without (a NIfTI or NRRD volume) by position alone.
pub fn rasterise_roi(
    set: &StructureSet,
    roi: &Roi,
    volume: &Volume,
    series: Option<&SourceSeries>,
) -> Result<RasterisedRoi, IoError> {
    let refuse = |problem: String| IoError::unusable(&set.path, format!("ROI '{}': {problem}", roi.name));
    if let Some(series) = series {
        check_references(set, roi, series).map_err(refuse)?;
    }
    let shape = volume.shape();
    let mut per_slice: Vec<(usize, usize, Vec<Vertex>)> = Vec::new();
    let mut elsewhere = 0;
    for (n, contour) in roi.contours.iter().enumerate() {
        match place(contour, volume, series).map_err(|p| refuse(format!("contour {}: {p}", n + 1)))? {
            Some(placed) => per_slice.push(placed),
            None => elsewhere += 1,
        }
    }
    let mut mask = Array3::<u8>::zeros((shape[0], shape[1], shape[2]));
    let on_volume = per_slice.len();
    per_slice.sort_by_key(|(axis, index, _)| (*axis, *index));
    for group in per_slice.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
        let (axis, index) = (group[0].0, group[0].1);
        let polygons: Vec<Vec<Vertex>> = group.iter().map(|(_, _, p)| p.clone()).collect();
        let hw = volume.slice_hw(axis);
        let filled = fill_even_odd(&polygons, hw);
        Volume::fill_slice(&mut mask, axis, index, hw, |i| u8::from(filled[i]));
    }
    Ok(RasterisedRoi {
        mask,
        contours_on_volume: on_volume,
        contours_elsewhere: elsewhere,
    })
}

/// The ROI's frame of reference and the structure set's referenced series against the series'.
fn check_references(set: &StructureSet, roi: &Roi, series: &SourceSeries) -> Result<(), String> {
    let frame = series.frame_of_reference();
    let roi_frame = roi.frame_of_reference.as_ref().or(set.frames_of_reference.first());
    if let (Some(theirs), Some(ours)) = (roi_frame, frame.as_ref()) {
        if theirs != ours {
            return Err(format!(
                "its frame of reference {theirs} is not the series' ({ours}): the contours are in another \
                 patient coordinate system"
            ));
        }
    }
    let uid = series.series_instance_uid();
    if !set.referenced_series.is_empty() && !set.referenced_series.iter().any(|s| s == uid) {
        return Err(format!(
            "the structure set references series {} but the volume is series {uid}",
            set.referenced_series.join(", ")
        ));
    }
    Ok(())
}

/// The slice (axis, index) a contour lies on and its vertices in that slice's pixel coordinates; `None`
/// when it lies on no slice of the volume; an error for a contour that cannot be placed.
fn place(
    contour: &Contour,
    volume: &Volume,
    series: Option<&SourceSeries>,
) -> Result<Option<(usize, usize, Vec<Vertex>)>, String> {
    if contour.geometric_type != "CLOSED_PLANAR" {
        return Err(format!(
            "its geometric type is '{}', not CLOSED_PLANAR (only closed planar contours enclose an area)",
            contour.geometric_type
        ));
    }
    if contour.points.len() < 3 {
        return Err(format!("{} points cannot enclose an area", contour.points.len()));
    }
    let voxels = contour
        .points
        .iter()
        .map(|&[x, y, z]| volume.world_to_voxel([-x, -y, z]))
        .collect::<Option<Vec<[f64; 3]>>>()
        .ok_or("the volume's voxel-to-world affine is singular")?;
    let spread = |axis: usize| {
        let (lo, hi) = voxels.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v[axis]), hi.max(v[axis]))
        });
        hi - lo
    };
    // A DICOM series' slices lie along its third axis; any volume's along the axis the contour is flat on.
    let axis = match series {
        Some(_) => 2,
        None => (0..3).min_by(|&a, &b| spread(a).total_cmp(&spread(b))).unwrap_or(2),
    };
    if spread(axis) > PLANE_TOLERANCE {
        return Err(format!(
            "it is not planar on the volume's slices (its points span {:.2} slices)",
            spread(axis)
        ));
    }
    let position = voxels.iter().map(|v| v[axis]).sum::<f64>() / voxels.len() as f64;
    let referenced = series
        .zip(contour.image.as_deref())
        .and_then(|(s, uid)| s.slice_of(uid));
    let index = match referenced {
        Some(k) if (position - k as f64).abs() > 0.5 => {
            return Err(format!(
                "it references slice {k} of the series but lies at slice {position:.2}"
            ))
        }
        Some(k) => k,
        None => {
            let k = position.round();
            if (position - k).abs() > PLANE_TOLERANCE || k < 0.0 || k >= volume.slices(axis) as f64 {
                return Ok(None);
            }
            k as usize
        }
    };
    let (u, v) = Volume::in_plane_axes(axis);
    Ok(Some((axis, index, voxels.iter().map(|p| [p[u], p[v]]).collect())))
}
