//! A 3D volume with its voxel-to-world geometry, whatever file it came from (NIfTI-1/2, DICOM):
//! slices by array axis or anatomical plane, world ↔ voxel coordinates, and mask volumes on its grid.
//!
//! Slice convention (as `shared/data/cases.json`): on a slice along array axis `a`, image columns (x)
//! run along the lower remaining array axis and rows (y) along the higher one.

use std::path::Path;

use ndarray::{Array3, Axis};

use crate::nifti2::Nifti2Header;
use crate::IoError;

/// Anatomical plane of a slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Plane {
    /// Normal along the superior–inferior axis.
    Axial,
    /// Normal along the anterior–posterior axis.
    Coronal,
    /// Normal along the left–right axis.
    Sagittal,
}

/// The header a mask is written with, so that it lies on the input's exact grid.
#[derive(Debug, Clone)]
pub enum GridHeader {
    /// A NIfTI-1 header (from a NIfTI-1 input, or built from DICOM geometry).
    Nifti1(Box<nifti::NiftiHeader>),
    /// A NIfTI-2 input's header, kept byte for byte.
    Nifti2(Box<Nifti2Header>),
}

/// A 3D volume with its geometry.
#[derive(Debug, Clone)]
pub struct Volume {
    /// Values `[i, j, k]` (scaling / rescale applied).
    pub data: Array3<f32>,
    /// Voxel-to-world (RAS+ millimetres) affine, row-major 4x4.
    pub affine: [[f64; 4]; 4],
    /// The header masks are written with.
    pub grid: GridHeader,
    /// What the file was, in words (e.g. "NIfTI-1", "DICOM series of 5 files").
    pub format: String,
    /// Remarks about the geometry or the values worth telling the user (assumptions made).
    pub notes: Vec<String>,
}

impl Volume {
    /// The array axis whose direction is closest to the plane's normal in world space.
    pub fn axis_for_plane(&self, plane: Plane) -> usize {
        let world = match plane {
            Plane::Sagittal => 0,
            Plane::Coronal => 1,
            Plane::Axial => 2,
        };
        (0..3)
            .max_by(|&a, &b| {
                let weight = |axis: usize| self.direction(axis)[world].abs();
                weight(a).total_cmp(&weight(b))
            })
            .unwrap_or(2)
    }

    /// Unit world direction of array axis `axis`.
    pub fn direction(&self, axis: usize) -> [f64; 3] {
        let col: [f64; 3] = std::array::from_fn(|r| self.affine[r][axis]);
        let norm = col.iter().map(|v| v * v).sum::<f64>().sqrt().max(f64::EPSILON);
        col.map(|v| v / norm)
    }

    /// Orientation codes of the array axes (nibabel's `aff2axcodes`): for each axis the RAS+
    /// direction it points to most, e.g. `"RAS"` or `"LPS"`.
    pub fn orientation(&self) -> String {
        (0..3)
            .map(|axis| {
                let d = self.direction(axis);
                let world = (0..3).max_by(|&a, &b| d[a].abs().total_cmp(&d[b].abs())).unwrap_or(0);
                let positive = d[world] >= 0.0;
                match (world, positive) {
                    (0, true) => 'R',
                    (0, false) => 'L',
                    (1, true) => 'A',
                    (1, false) => 'P',
                    (_, true) => 'S',
                    (_, false) => 'I',
                }
            })
            .collect()
    }

    /// The anatomical plane a slice along `axis` shows (the world axis closest to the axis direction).
    pub fn plane_of_axis(&self, axis: usize) -> Plane {
        let d = self.direction(axis);
        match (0..3).max_by(|&a, &b| d[a].abs().total_cmp(&d[b].abs())) {
            Some(0) => Plane::Sagittal,
            Some(1) => Plane::Coronal,
            _ => Plane::Axial,
        }
    }

    /// Array shape `[ni, nj, nk]`.
    pub fn shape(&self) -> [usize; 3] {
        let s = self.data.shape();
        [s[0], s[1], s[2]]
    }

    /// Number of slices along `axis`.
    pub fn slices(&self, axis: usize) -> usize {
        self.data.shape()[axis]
    }

    /// Slice `index` along `axis` as a row-major image `[h, w]` (rows: higher remaining axis).
    pub fn slice(&self, axis: usize, index: usize) -> (Vec<f32>, (usize, usize)) {
        let plane = self.data.index_axis(Axis(axis), index);
        // `plane` is [lower axis, higher axis] = [x, y]; images are [y, x].
        let image = plane.t();
        let (h, w) = image.dim();
        (image.iter().copied().collect(), (h, w))
    }

    /// Whether every voxel of slice `index` along `axis` has the same value (padding, or a slice outside the
    /// field of view: nothing there to segment). Not-a-number voxels count as different.
    pub fn slice_is_constant(&self, axis: usize, index: usize) -> bool {
        let plane = self.data.index_axis(Axis(axis), index);
        let mut values = plane.iter();
        let Some(&first) = values.next() else {
            return true;
        };
        values.all(|&v| v == first)
    }

    /// Height and width of the slices along `axis` (rows: the higher in-plane axis).
    pub fn slice_hw(&self, axis: usize) -> (usize, usize) {
        let (x, y) = Self::in_plane_axes(axis);
        let shape = self.shape();
        (shape[y], shape[x])
    }

    /// The in-plane axes of a slice along `axis`: (x axis, y axis).
    pub fn in_plane_axes(axis: usize) -> (usize, usize) {
        match axis {
            0 => (1, 2),
            1 => (0, 2),
            _ => (0, 1),
        }
    }

    /// A `u8` mask volume on this grid holding a 2D mask (`[h, w]` row-major, as [`Self::slice`]
    /// returns images) at slice `index` along `axis`, zeros elsewhere.
    pub fn mask_from_slice(&self, axis: usize, index: usize, mask: &[bool], hw: (usize, usize)) -> Array3<u8> {
        self.mask_from_slices(axis, [(index, mask)], hw)
    }

    /// A `u8` mask volume on this grid holding 2D masks (`[h, w]` row-major) at the given slices along
    /// `axis`, zeros elsewhere.
    pub fn mask_from_slices<'a>(
        &self,
        axis: usize,
        masks: impl IntoIterator<Item = (usize, &'a [bool])>,
        (h, w): (usize, usize),
    ) -> Array3<u8> {
        let mut out = Array3::<u8>::zeros(self.data.dim());
        for (index, mask) in masks {
            Self::fill_slice(&mut out, axis, index, (h, w), |i| u8::from(mask[i]));
        }
        out
    }

    /// Writes a 2D image (`[h, w]` row-major, as [`Self::slice`] returns images; `value(i)` is pixel `i`)
    /// into slice `index` along `axis` of a volume on this grid.
    pub fn fill_slice(
        out: &mut Array3<u8>,
        axis: usize,
        index: usize,
        (h, w): (usize, usize),
        value: impl Fn(usize) -> u8,
    ) {
        let mut plane = out.index_axis_mut(Axis(axis), index);
        // The slice plane is [x, y] = [lower axis, higher axis]; the image is [y, x].
        for y in 0..h {
            for x in 0..w {
                plane[[x, y]] = value(y * w + x);
            }
        }
    }

    /// Voxel size (mm) along each array axis.
    pub fn spacing(&self) -> [f64; 3] {
        std::array::from_fn(|axis| (0..3).map(|r| self.affine[r][axis].powi(2)).sum::<f64>().sqrt())
    }

    /// World (RAS mm) position of a (continuous) voxel index.
    pub fn voxel_to_world(&self, ijk: [f64; 3]) -> [f64; 3] {
        std::array::from_fn(|r| (0..3).map(|c| self.affine[r][c] * ijk[c]).sum::<f64>() + self.affine[r][3])
    }

    /// Continuous voxel index of a world (RAS mm) position; `None` for a singular affine.
    pub fn world_to_voxel(&self, xyz: [f64; 3]) -> Option<[f64; 3]> {
        let m: [[f64; 3]; 3] = std::array::from_fn(|r| std::array::from_fn(|c| self.affine[r][c]));
        let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
        if det.abs() < 1e-12 {
            return None;
        }
        let b: [f64; 3] = std::array::from_fn(|r| xyz[r] - self.affine[r][3]);
        // Cramer's rule: replace column c by b.
        let solve = |c: usize| {
            let mut mc = m;
            for r in 0..3 {
                mc[r][c] = b[r];
            }
            (mc[0][0] * (mc[1][1] * mc[2][2] - mc[1][2] * mc[2][1])
                - mc[0][1] * (mc[1][0] * mc[2][2] - mc[1][2] * mc[2][0])
                + mc[0][2] * (mc[1][0] * mc[2][1] - mc[1][1] * mc[2][0]))
                / det
        };
        Some([solve(0), solve(1), solve(2)])
    }

    /// Whether `other` has this volume's shape and voxel-to-world affine (within 1e-3 mm).
    pub fn same_grid(&self, other: &Volume) -> bool {
        self.shape() == other.shape()
            && self
                .affine
                .iter()
                .flatten()
                .zip(other.affine.iter().flatten())
                .all(|(a, b)| (a - b).abs() <= 1e-3)
    }

    /// This volume's voxels reindexed onto `grid`'s when both are the same lattice of voxels in world space
    /// stored in another order (axes flipped or permuted: a scan's labels stored LAS beside its LPS DICOM
    /// series); `None` when they are not (another spacing, a shift, a rotation, a singular affine).
    pub fn reindexed_onto(&self, grid: &Volume) -> Option<Volume> {
        let base = self.world_to_voxel(grid.voxel_to_world([0.0; 3]))?;
        let step = |axis: usize| {
            let mut unit = [0.0; 3];
            unit[axis] = 1.0;
            self.world_to_voxel(grid.voxel_to_world(unit))
                .map(|p| std::array::from_fn::<f64, 3, _>(|r| p[r] - base[r]))
        };
        let steps = [step(0)?, step(1)?, step(2)?];
        let whole = |v: f64| (v - v.round()).abs() <= 1e-3;
        let unit = |d: &[f64; 3]| d.iter().all(|&v| whole(v)) && d.iter().map(|v| v.round().abs()).sum::<f64>() == 1.0;
        if !base.iter().all(|&v| whole(v)) || !steps.iter().all(unit) {
            return None;
        }
        let (base, steps) = (base.map(f64::round), steps.map(|d| d.map(f64::round)));
        let source = |ijk: [usize; 3]| -> [f64; 3] {
            std::array::from_fn(|r| base[r] + (0..3).map(|a| steps[a][r] * ijk[a] as f64).sum::<f64>())
        };
        let shape = self.shape();
        let [ni, nj, nk] = grid.shape();
        let inside = |p: [f64; 3]| (0..3).all(|r| p[r] >= 0.0 && p[r] < shape[r] as f64);
        let corners = [0, ni - 1].into_iter().flat_map(|i| {
            [0, nj - 1]
                .into_iter()
                .flat_map(move |j| [0, nk - 1].into_iter().map(move |k| [i, j, k]))
        });
        if grid.data.is_empty() || !corners.map(source).all(inside) {
            return None;
        }
        let data = Array3::from_shape_fn(grid.data.dim(), |(i, j, k)| {
            let p = source([i, j, k]);
            self.data[[p[0] as usize, p[1] as usize, p[2] as usize]]
        });
        Some(Volume {
            data,
            affine: grid.affine,
            grid: grid.grid.clone(),
            format: format!("{} (reindexed onto the image's grid)", self.format),
            notes: self.notes.clone(),
        })
    }

    /// Finite minimum and maximum of the values (`None` when there is no finite value).
    pub fn value_range(&self) -> Option<(f32, f32)> {
        self.data
            .iter()
            .filter(|v| v.is_finite())
            .fold(None, |acc, &v| match acc {
                None => Some((v, v)),
                Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
            })
    }
}

/// A label volume on its image's grid: as it is when they share the grid, reindexed when it is the same
/// lattice stored in another orientation (a DICOM series' labels stored as LAS NIfTI), else refused.
pub fn labels_on_image_grid(labels: Volume, image: &Volume, label_path: &Path) -> Result<Volume, IoError> {
    if labels.same_grid(image) {
        return Ok(labels);
    }
    labels.reindexed_onto(image).ok_or_else(|| {
        IoError::unusable(
            label_path,
            format!(
                "grid {:?} ({}) differs from the image's {:?} ({}) and is not the same voxels reordered",
                labels.shape(),
                labels.orientation(),
                image.shape(),
                image.orientation()
            ),
        )
    })
}

/// A mask's voxels in Fortran order (`i` fastest), as NIfTI and NRRD store them. Loops ordered j, k, i so
/// that the reads (stride `nj * nk`) revisit the same cache lines for consecutive k: a plain transposed iteration took
/// ~45 ms for a 197x233x189 mask, most of a click's reply.
pub(crate) fn fortran_order(mask: &Array3<u8>) -> Vec<u8> {
    let [ni, nj, nk] = [mask.dim().0, mask.dim().1, mask.dim().2];
    let standard = mask.as_standard_layout();
    let data = standard.as_slice().expect("standard layout is contiguous");
    let mut out = vec![0u8; data.len()];
    for j in 0..nj {
        for k in 0..nk {
            let row = &mut out[(k * nj + j) * ni..][..ni];
            for (i, value) in row.iter_mut().enumerate() {
                *value = data[(i * nj + j) * nk + k];
            }
        }
    }
    out
}

/// A volume `[i, j, k]` (standard layout) from voxel data stored in Fortran order (`i` fastest, as NIfTI and
/// NRRD store it), each sample `size` bytes decoded by `value`: one pass, no intermediate copy. Loops ordered
/// j, k, i as in [`fortran_order`] (reads sequential, writes revisiting the same cache lines for consecutive
/// k). `data` must hold at least `ni * nj * nk * size` bytes.
pub(crate) fn from_fortran_order(
    data: &[u8],
    [ni, nj, nk]: [usize; 3],
    size: usize,
    value: impl Fn(&[u8]) -> f32,
) -> Array3<f32> {
    let mut out = vec![0f32; ni * nj * nk];
    for j in 0..nj {
        for k in 0..nk {
            let row = &data[(k * nj + j) * ni * size..][..ni * size];
            for (i, sample) in row.chunks_exact(size).enumerate() {
                out[(i * nj + j) * nk + k] = value(sample);
            }
        }
    }
    Array3::from_shape_vec((ni, nj, nk), out).expect("the output has the shape's size")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fortran_order_is_the_transposed_iteration() {
        let mask = Array3::from_shape_fn((5, 4, 3), |(i, j, k)| (i * 12 + j * 3 + k) as u8);
        assert_eq!(fortran_order(&mask), mask.t().iter().copied().collect::<Vec<u8>>());
    }

    #[test]
    fn from_fortran_order_inverts_it() {
        let mask = Array3::from_shape_fn((5, 4, 3), |(i, j, k)| (i * 12 + j * 3 + k) as u8);
        let stored: Vec<u8> = fortran_order(&mask).iter().flat_map(|&v| [v, 0]).collect();
        let back = from_fortran_order(&stored, [5, 4, 3], 2, |b| f32::from(b[0]));
        assert!(back.is_standard_layout());
        assert_eq!(back, mask.mapv(f32::from));
    }

    fn volume_with(affine: [[f64; 4]; 4]) -> Volume {
        Volume {
            data: Array3::zeros((4, 5, 6)),
            affine,
            grid: GridHeader::Nifti1(Box::default()),
            format: "test".into(),
            notes: vec![],
        }
    }

    #[test]
    fn orientation_and_planes_follow_the_affine() {
        // LPS with 0.5 x 0.5 x 2 mm voxels, as a DICOM axial series.
        let lps = volume_with([
            [-0.5, 0.0, 0.0, 10.0],
            [0.0, -0.5, 0.0, 20.0],
            [0.0, 0.0, 2.0, -30.0],
            [0.0, 0.0, 0.0, 1.0],
        ]);
        assert_eq!(lps.orientation(), "LPS");
        assert_eq!(lps.axis_for_plane(Plane::Axial), 2);
        assert_eq!(lps.plane_of_axis(0), Plane::Sagittal);
        assert_eq!(lps.spacing(), [0.5, 0.5, 2.0]);
        // Axes permuted: array axis 0 runs superior, axis 2 anterior.
        let permuted = volume_with([
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ]);
        assert_eq!(permuted.orientation(), "SRA");
        assert_eq!(permuted.axis_for_plane(Plane::Axial), 0);
        assert_eq!(permuted.axis_for_plane(Plane::Coronal), 2);
    }

    #[test]
    fn world_and_voxel_coordinates_round_trip() {
        let oblique = volume_with([
            [-2.0, 0.0, 0.0, 117.86],
            [0.0, 1.97, -0.36, -35.72],
            [0.0, 0.32, 2.17, -7.25],
            [0.0, 0.0, 0.0, 1.0],
        ]);
        let ijk = [3.0, 7.5, -1.25];
        let back = oblique.world_to_voxel(oblique.voxel_to_world(ijk)).unwrap();
        for (a, b) in ijk.iter().zip(back) {
            assert!((a - b).abs() < 1e-9, "{ijk:?} -> {back:?}");
        }
        assert_eq!(oblique.voxel_to_world([0.0; 3]), [117.86, -35.72, -7.25]);
        let singular = volume_with([[0.0; 4], [0.0; 4], [0.0; 4], [0.0, 0.0, 0.0, 1.0]]);
        assert!(singular.world_to_voxel([0.0; 3]).is_none());
    }

    #[test]
    fn labels_stored_flipped_are_reindexed_onto_the_image_grid_and_nothing_else_is() {
        // The same 4 x 5 x 6 lattice stored LPS (the image) and LAS (the labels: axis 1 reversed).
        let image = volume_with([
            [-1.0, 0.0, 0.0, 10.0],
            [0.0, -1.0, 0.0, 20.0],
            [0.0, 0.0, 2.0, -30.0],
            [0.0, 0.0, 0.0, 1.0],
        ]);
        let mut labels = volume_with([
            [-1.0, 0.0, 0.0, 10.0],
            [0.0, 1.0, 0.0, 16.0],
            [0.0, 0.0, 2.0, -30.0],
            [0.0, 0.0, 0.0, 1.0],
        ]);
        labels.data = Array3::from_shape_fn((4, 5, 6), |(i, j, k)| (i * 100 + j * 10 + k) as f32);
        assert!(!labels.same_grid(&image) && image.same_grid(&image));
        let onto = labels.reindexed_onto(&image).unwrap();
        assert!(onto.same_grid(&image));
        for ((i, j, k), &v) in onto.data.indexed_iter() {
            assert_eq!(v, labels.data[[i, 4 - j, k]], "({i}, {j}, {k})");
        }
        // Shifted by two voxels, or by half a voxel, or with another spacing: not the same lattice.
        for (r, c, value) in [(0, 3, 8.0), (0, 3, 9.5), (2, 2, 3.0)] {
            let mut other = labels.clone();
            other.affine[r][c] = value;
            assert!(other.reindexed_onto(&image).is_none(), "affine[{r}][{c}] = {value}");
        }
    }
}
