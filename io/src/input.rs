//! Opens any supported scan by what it is: NIfTI and NRRD by name, DICOM (a folder, `.dcm`, or the `DICM`
//! marker), otherwise a 2D image (PNG/TIFF); within [`ReadLimits`] when the caller gives them.

use std::io::Read;
use std::path::Path;

use crate::dicom_io::{looks_like_dicom, read_dicom_within};
use crate::error::human_bytes;
use crate::image2d::{read_image_within, Image2d};
use crate::nifti_io::{is_nifti, read_nifti_within};
use crate::nrrd_io::{is_nrrd, read_nrrd_within};
use crate::volume::Volume;
use crate::IoError;

/// A scan: a 2D image, or a volume with geometry.
#[derive(Debug)]
pub enum Scan {
    /// A PNG/TIFF image.
    Image(Image2d),
    /// A NIfTI, NRRD or DICOM volume (a single DICOM frame is a volume of one slice).
    Volume(Box<Volume>),
}

/// How large a scan a reader takes, checked against what the file's header declares before its voxel data
/// is inflated, read in full or decoded; a file over the limit is refused with [`IoError::TooLarge`].
///
/// medico holds volumes as f32 (4 bytes a voxel): the decoded volume may hold at most `max_voxels` voxels,
/// and the file's own voxel data (as its header declares it, in its own type: uint8, int16, float64, ...)
/// at most `4 * max_voxels` bytes. A 4D NIfTI counts all its volumes, a DICOM series all its files.
/// Peak memory while reading stays near the file's bytes (inflated, for gzip), the voxel data and the
/// f32 volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Most voxels a scan may declare.
    pub max_voxels: usize,
}

impl ReadLimits {
    /// No limit but the readers' own sanity bounds (what [`open_scan`] uses).
    pub const UNLIMITED: ReadLimits = ReadLimits { max_voxels: usize::MAX };

    /// At most `max_voxels` voxels (and `4 * max_voxels` bytes of voxel data in the file).
    pub const fn max_voxels(max_voxels: usize) -> Self {
        Self { max_voxels }
    }

    /// Most bytes of voxel data a file may declare: 4 per voxel.
    pub fn max_data_bytes(&self) -> u64 {
        (self.max_voxels as u64).saturating_mul(4)
    }

    /// Refuses `path` when what it declares is over the limit.
    pub(crate) fn check(&self, path: &Path, declared: &Declared) -> Result<(), IoError> {
        if declared.voxels <= self.max_voxels as u64 && declared.data_bytes <= self.max_data_bytes() {
            return Ok(());
        }
        Err(IoError::TooLarge {
            path: path.into(),
            declared: format!(
                "{} voxels ({}, {})",
                declared.voxels,
                declared.layout,
                human_bytes(declared.data_bytes)
            ),
            voxels: Some(declared.voxels),
            max_voxels: self.max_voxels as u64,
        })
    }
}

impl Default for ReadLimits {
    /// [`ReadLimits::UNLIMITED`].
    fn default() -> Self {
        Self::UNLIMITED
    }
}

/// What a file's header declares of its voxel data, for [`ReadLimits::check`].
#[derive(Debug, Clone)]
pub(crate) struct Declared {
    /// Voxels (all volumes, all files).
    pub(crate) voxels: u64,
    /// Bytes of voxel data.
    pub(crate) data_bytes: u64,
    /// Type and layout, for the message: "int16, 512x512x300".
    pub(crate) layout: String,
}

/// The bytes of the file at `path`, read in two steps: its first `head` bytes (fewer for a shorter file)
/// go to `check`, which may refuse the file before the rest is read.
pub(crate) fn read_after_head(
    path: &Path,
    head: usize,
    check: impl FnOnce(&[u8]) -> Result<(), IoError>,
) -> Result<Vec<u8>, IoError> {
    let mut file = std::fs::File::open(path).map_err(|e| IoError::read(path, e))?;
    let mut bytes = Vec::new();
    (&mut file)
        .take(head as u64)
        .read_to_end(&mut bytes)
        .map_err(|e| IoError::read(path, e))?;
    check(&bytes)?;
    if let Ok(metadata) = file.metadata() {
        bytes.reserve_exact((metadata.len() as usize).saturating_sub(bytes.len()));
    }
    file.read_to_end(&mut bytes).map_err(|e| IoError::read(path, e))?;
    Ok(bytes)
}

/// Sizes as `AxBxC`.
pub(crate) fn dims_text(dims: &[u64]) -> String {
    dims.iter().map(u64::to_string).collect::<Vec<_>>().join("x")
}

/// Whether [`open_scan`] reads `path` as DICOM (not NIfTI or NRRD by name; a folder, `.dcm` or the `DICM`
/// marker).
pub fn is_dicom_scan(path: &Path) -> bool {
    !is_nifti(path) && !is_nrrd(path) && looks_like_dicom(path)
}

/// Reads `path`; `volume` picks the volume of a 4D NIfTI (an error for other inputs). No limit on its size
/// beyond the readers' own sanity bounds: see [`open_scan_within`] for files from untrusted sources.
pub fn open_scan(path: &Path, volume: Option<usize>) -> Result<Scan, IoError> {
    open_scan_within(path, volume, &ReadLimits::UNLIMITED)
}

/// Reads `path` as [`open_scan`] does, refusing with [`IoError::TooLarge`] a file whose header declares
/// more than `limits` allow, before its voxel data is inflated, read in full or decoded.
pub fn open_scan_within(path: &Path, volume: Option<usize>, limits: &ReadLimits) -> Result<Scan, IoError> {
    if !path.exists() {
        return Err(IoError::NotFound { path: path.into() });
    }
    let not_4d = |what: &str| IoError::unusable(path, format!("--volume applies to 4D NIfTI files; this is {what}"));
    if is_nifti(path) {
        return Ok(Scan::Volume(Box::new(read_nifti_within(path, volume, limits)?)));
    }
    if is_nrrd(path) {
        if volume.is_some() {
            return Err(not_4d("NRRD"));
        }
        return Ok(Scan::Volume(Box::new(read_nrrd_within(path, limits)?)));
    }
    if is_dicom_scan(path) {
        if volume.is_some() {
            return Err(not_4d("DICOM"));
        }
        return Ok(Scan::Volume(Box::new(read_dicom_within(path, limits)?)));
    }
    if volume.is_some() {
        return Err(not_4d("a 2D image"));
    }
    Ok(Scan::Image(read_image_within(path, limits)?))
}
