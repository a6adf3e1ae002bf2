//! Medical volumes: NIfTI-1 (`.nii`, `.nii.gz`) in, with their voxel-to-world geometry, slices by array
//! axis or anatomical plane, and masks written back on the input's exact grid and header.
//!
//! Slice convention (as `shared/data/cases.json`): on a slice along array axis `a`, image columns (x)
//! run along the lower remaining array axis and rows (y) along the higher one.

use std::path::Path;

use ndarray::{Array3, Axis, Ix3, Ix4};
use nifti::{IntoNdArray, NiftiHeader, NiftiObject, ReaderOptions};

use crate::RuntimeError;

/// Anatomical plane of a slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    /// Normal along the superior–inferior axis.
    Axial,
    /// Normal along the anterior–posterior axis.
    Coronal,
    /// Normal along the left–right axis.
    Sagittal,
}

impl std::str::FromStr for Plane {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "axial" => Ok(Self::Axial),
            "coronal" => Ok(Self::Coronal),
            "sagittal" => Ok(Self::Sagittal),
            other => Err(format!("unknown plane '{other}' (expected axial, coronal or sagittal)")),
        }
    }
}

/// A 3D volume with its geometry.
pub struct Volume {
    /// Values `[i, j, k]` (scaling applied).
    pub data: Array3<f32>,
    /// The header, kept to write masks on the same grid.
    pub header: NiftiHeader,
    /// Voxel-to-world (RAS mm) affine, row-major 4x4.
    pub affine: [[f64; 4]; 4],
}

fn input_error(path: &Path, message: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Input {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// True for `.nii` and `.nii.gz` paths.
pub fn is_nifti(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    name.ends_with(".nii") || name.ends_with(".nii.gz")
}

/// Voxel-to-world affine of a header: sform when its code is set, else qform, else voxel sizes.
pub fn header_affine(h: &NiftiHeader) -> [[f64; 4]; 4] {
    if h.sform_code > 0 {
        let row = |r: [f32; 4]| r.map(f64::from);
        return [row(h.srow_x), row(h.srow_y), row(h.srow_z), [0.0, 0.0, 0.0, 1.0]];
    }
    let (dx, dy, dz) = (h.pixdim[1] as f64, h.pixdim[2] as f64, h.pixdim[3] as f64);
    if h.qform_code <= 0 {
        return [
            [dx, 0.0, 0.0, 0.0],
            [0.0, dy, 0.0, 0.0],
            [0.0, 0.0, dz, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
    }
    let (b, c, d) = (h.quatern_b as f64, h.quatern_c as f64, h.quatern_d as f64);
    let a = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
    let qfac = if h.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
    let r = [
        [
            a * a + b * b - c * c - d * d,
            2.0 * (b * c - a * d),
            2.0 * (b * d + a * c),
        ],
        [
            2.0 * (b * c + a * d),
            a * a + c * c - b * b - d * d,
            2.0 * (c * d - a * b),
        ],
        [
            2.0 * (b * d - a * c),
            2.0 * (c * d + a * b),
            a * a + d * d - b * b - c * c,
        ],
    ];
    let scale = [dx, dy, dz * qfac];
    let offset = [h.quatern_x as f64, h.quatern_y as f64, h.quatern_z as f64];
    let mut m = [[0.0; 4]; 4];
    for i in 0..3 {
        for j in 0..3 {
            m[i][j] = r[i][j] * scale[j];
        }
        m[i][3] = offset[i];
    }
    m[3][3] = 1.0;
    m
}

/// Reads a NIfTI volume; a 4D file needs `volume` (the index along the 4th axis).
pub fn read_nifti(path: &Path, volume: Option<usize>) -> Result<Volume, RuntimeError> {
    let object = std::panic::catch_unwind(|| ReaderOptions::new().read_file(path))
        .map_err(|_| input_error(path, "the NIfTI reader crashed on this file (corrupt header?)"))?
        .map_err(|e| input_error(path, format!("not a readable NIfTI file (truncated or corrupt?): {e}")))?;
    let header = object.header().clone();
    let dims = header.dim;
    let rank = dims[0] as usize;
    let array = object
        .into_volume()
        .into_ndarray::<f32>()
        .map_err(|e| input_error(path, format!("cannot read the voxel data: {e}")))?;
    let data = match (rank, volume) {
        (3, None) | (3, Some(0)) => array.into_dimensionality::<Ix3>().map_err(|e| input_error(path, e))?,
        (3, Some(t)) => return Err(input_error(path, format!("--volume {t}: the file is 3D"))),
        (4, None) => {
            return Err(input_error(
                path,
                format!("4D volume with {} time points: choose one with --volume T", dims[4]),
            ))
        }
        (4, Some(t)) => {
            let four = array.into_dimensionality::<Ix4>().map_err(|e| input_error(path, e))?;
            if t >= four.shape()[3] {
                return Err(input_error(
                    path,
                    format!("--volume {t}: the file has {} volumes", four.shape()[3]),
                ));
            }
            four.index_axis(Axis(3), t).to_owned()
        }
        (r, _) => {
            return Err(input_error(
                path,
                format!("{r}-dimensional images are not supported (need 3D or 4D)"),
            ))
        }
    };
    let affine = header_affine(&header);
    Ok(Volume { data, header, affine })
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
                let weight = |axis: usize| {
                    let col: Vec<f64> = (0..3).map(|r| self.affine[r][axis]).collect();
                    let norm = col.iter().map(|v| v * v).sum::<f64>().sqrt().max(f64::EPSILON);
                    col[world].abs() / norm
                };
                weight(a).total_cmp(&weight(b))
            })
            .unwrap_or(2)
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

    /// A `u8` mask volume on this grid holding a 2D mask (`[h, w]` row-major, as [`Self::slice`]
    /// returns images) at slice `index` along `axis`, zeros elsewhere.
    pub fn mask_from_slice(&self, axis: usize, index: usize, mask: &[bool], (h, w): (usize, usize)) -> Array3<u8> {
        let mut out = Array3::<u8>::zeros(self.data.dim());
        let mut plane = out.index_axis_mut(Axis(axis), index);
        // The slice plane is [x, y] = [lower axis, higher axis]; the mask is [y, x].
        for y in 0..h {
            for x in 0..w {
                plane[[x, y]] = u8::from(mask[y * w + x]);
            }
        }
        out
    }

    /// Voxel size (mm) along each array axis.
    pub fn spacing(&self) -> [f64; 3] {
        let mut s = [0.0; 3];
        for (axis, v) in s.iter_mut().enumerate() {
            *v = (0..3).map(|r| self.affine[r][axis].powi(2)).sum::<f64>().sqrt();
        }
        s
    }
}

/// Writes a `u8` mask `[i, j, k]` as NIfTI on `reference`'s grid (affine, codes, units), atomically:
/// a temporary file in the destination folder, then a rename.
pub fn write_mask_nifti(path: &Path, reference: &NiftiHeader, mask: &Array3<u8>) -> Result<(), RuntimeError> {
    let output_error = |e: &dyn std::fmt::Display| RuntimeError::Output {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let suffix = if path.to_string_lossy().to_lowercase().ends_with(".gz") {
        ".nii.gz"
    } else {
        ".nii"
    };
    let temp = tempfile::Builder::new()
        .prefix(".medico-mask-")
        .suffix(suffix)
        .tempfile_in(dir)
        .map_err(|e| output_error(&e))?;
    nifti::writer::WriterOptions::new(temp.path())
        .reference_header(reference)
        .write_nifti(mask)
        .map_err(|e| output_error(&e))?;
    temp.persist(path).map_err(|e| output_error(&e.error))?;
    Ok(())
}
