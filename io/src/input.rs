//! Opens any supported scan by what it is: NIfTI and NRRD by name, DICOM (a folder, `.dcm`, or the `DICM`
//! marker), otherwise a 2D image (PNG/TIFF).

use std::path::Path;

use crate::dicom_io::{looks_like_dicom, read_dicom};
use crate::image2d::{read_image, Image2d};
use crate::nifti_io::{is_nifti, read_nifti};
use crate::nrrd_io::{is_nrrd, read_nrrd};
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

/// Whether [`open_scan`] reads `path` as DICOM (not NIfTI or NRRD by name; a folder, `.dcm` or the `DICM`
/// marker).
pub fn is_dicom_scan(path: &Path) -> bool {
    !is_nifti(path) && !is_nrrd(path) && looks_like_dicom(path)
}

/// Reads `path`; `volume` picks the volume of a 4D NIfTI (an error for other inputs).
pub fn open_scan(path: &Path, volume: Option<usize>) -> Result<Scan, IoError> {
    if !path.exists() {
        return Err(IoError::NotFound { path: path.into() });
    }
    let not_4d = |what: &str| IoError::unusable(path, format!("--volume applies to 4D NIfTI files; this is {what}"));
    if is_nifti(path) {
        return Ok(Scan::Volume(Box::new(read_nifti(path, volume)?)));
    }
    if is_nrrd(path) {
        if volume.is_some() {
            return Err(not_4d("NRRD"));
        }
        return Ok(Scan::Volume(Box::new(read_nrrd(path)?)));
    }
    if is_dicom_scan(path) {
        if volume.is_some() {
            return Err(not_4d("DICOM"));
        }
        return Ok(Scan::Volume(Box::new(read_dicom(path)?)));
    }
    if volume.is_some() {
        return Err(not_4d("a 2D image"));
    }
    Ok(Scan::Image(read_image(path)?))
}
