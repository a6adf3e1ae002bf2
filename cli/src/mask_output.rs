//! Mask volumes to files, the format chosen by the output's name: DICOM SEG (`.dcm`, for DICOM inputs: it
//! references the source series), NRRD (`.nrrd`) or NIfTI (`.nii`, `.nii.gz`); always on the input's grid,
//! written atomically.

use std::path::Path;

use anyhow::anyhow;
use medico_bundle::Bundle;
use medico_io::dicom_seg::{algorithm_name, check_label, write_dicom_seg, SegmentDescription, SourceSeries};
use medico_io::input::is_dicom_scan;
use medico_io::nifti_io::write_mask_nifti;
use medico_io::nrrd_io::write_mask_nrrd;
use medico_io::volume::Volume;
use ndarray::Array3;

use crate::common::runtime_failure;
use crate::Failure;

/// The file formats a mask volume is written in.
#[derive(Clone, Copy, PartialEq, Debug)]
enum MaskFile {
    DicomSeg,
    Nrrd,
    Nifti,
}

fn mask_file(output: &Path) -> MaskFile {
    let name = output.to_string_lossy().to_lowercase();
    if name.ends_with(".dcm") {
        MaskFile::DicomSeg
    } else if name.ends_with(".nrrd") {
        MaskFile::Nrrd
    } else {
        MaskFile::Nifti
    }
}

/// Refuses, before any work, a DICOM SEG output for an input that is not DICOM, or with a `label` that is not
/// a valid DICOM LO value (over 64 characters, a backslash or control characters).
pub fn check_mask_output(output: &Path, input: &Path, label: &str) -> Result<(), Failure> {
    if mask_file(output) != MaskFile::DicomSeg {
        return Ok(());
    }
    if !is_dicom_scan(input) {
        return Err(Failure::usage(anyhow!(
            "{}: a DICOM SEG output references its source series, so the input must be DICOM (a file or a \
             series folder); {} is not. Write .nii.gz or .nrrd instead",
            output.display(),
            input.display()
        )));
    }
    check_label(label).map_err(|e| Failure::usage(anyhow!("--label: {e}")))
}

/// Writes `mask` (on `volume`'s grid, read from `input`) to `output` in the format its name asks for
/// (callers have refused a DICOM SEG of a non-DICOM input with [`check_mask_output`] before any work).
pub fn write_volume_mask(
    output: &Path,
    input: &Path,
    volume: &Volume,
    mask: &Array3<u8>,
    bundle: &Bundle,
    label: &str,
) -> Result<(), Failure> {
    match mask_file(output) {
        MaskFile::Nifti => write_mask_nifti(output, volume, mask).map_err(runtime_failure),
        MaskFile::Nrrd => write_mask_nrrd(output, volume, mask).map_err(runtime_failure),
        MaskFile::DicomSeg => {
            let source = SourceSeries::read(input).map_err(runtime_failure)?;
            let model = bundle
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| bundle.manifest.architecture.clone());
            let checkpoint = &bundle.manifest.source_checkpoint.sha256;
            let segment = SegmentDescription {
                label: label.to_string(),
                algorithm_name: algorithm_name(&model),
                algorithm_version: format!(
                    "medico {} (checkpoint sha256 {})",
                    env!("CARGO_PKG_VERSION"),
                    &checkpoint[..checkpoint.len().min(12)]
                ),
            };
            write_dicom_seg(output, volume, &source, mask, &segment).map_err(runtime_failure)
        }
    }
}
