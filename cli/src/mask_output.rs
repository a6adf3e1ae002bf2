//! Mask volumes to files, the format chosen by `--format` or else by the output's name: DICOM SEG (`.dcm`,
//! for DICOM inputs: it references the source series), an RT Structure Set (`--format rtstruct`, DICOM
//! inputs too: contours per slice), NRRD (`.nrrd`) or NIfTI (`.nii`, `.nii.gz`); always on the input's
//! grid, written atomically.

use std::path::Path;

use anyhow::anyhow;
use medico_bundle::Bundle;
use medico_io::dicom_seg::{algorithm_name, check_label, write_dicom_seg, SegmentDescription, SourceSeries};
use medico_io::input::is_dicom_scan;
use medico_io::nifti_io::write_mask_nifti;
use medico_io::nrrd_io::write_mask_nrrd;
use medico_io::rtstruct::{write_rtstruct, Generation, RoiMask, ROI_COLORS};
use medico_io::volume::Volume;
use ndarray::Array3;

use crate::common::runtime_failure;
use crate::Failure;

/// The file formats a mask volume is written in.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum MaskFormat {
    /// NIfTI-1 (`.nii`, `.nii.gz`).
    Nifti,
    /// NRRD (`.nrrd`).
    Nrrd,
    /// DICOM SEG (the default for `.dcm`).
    Seg,
    /// DICOM RT Structure Set: contours per slice, as treatment planning systems exchange them.
    Rtstruct,
}

impl MaskFormat {
    /// The format asked for, else the one the output's name implies.
    pub fn of(output: &Path, asked: Option<MaskFormat>) -> MaskFormat {
        if let Some(format) = asked {
            return format;
        }
        let name = output.to_string_lossy().to_lowercase();
        if name.ends_with(".dcm") {
            MaskFormat::Seg
        } else if name.ends_with(".nrrd") {
            MaskFormat::Nrrd
        } else {
            MaskFormat::Nifti
        }
    }

    fn is_dicom(self) -> bool {
        matches!(self, MaskFormat::Seg | MaskFormat::Rtstruct)
    }
}

/// The DICOM series `input` references, its assumptions told on standard error.
fn read_source(input: &Path) -> Result<SourceSeries, Failure> {
    let source = SourceSeries::read(input).map_err(runtime_failure)?;
    for note in &source.notes {
        eprintln!("note: {}: {note}", input.display());
    }
    Ok(source)
}

/// Writes a label map (`[i, j, k]` values 0..=classes.len(), on `volume`'s grid, read from the DICOM `input`)
/// as an RT Structure Set with one ROI per class that has voxels, named after the class.
pub fn write_label_rtstruct(
    output: &Path,
    input: &Path,
    volume: &Volume,
    labels: &Array3<u8>,
    classes: &[String],
    bundle: &Bundle,
) -> Result<(), Failure> {
    let source = read_source(input)?;
    let masks: Vec<(String, Array3<u8>)> = classes
        .iter()
        .enumerate()
        .map(|(k, name)| (name.clone(), labels.mapv(|v| u8::from(usize::from(v) == k + 1))))
        .filter(|(_, mask)| mask.iter().any(|&v| v != 0))
        .collect();
    if masks.is_empty() {
        return Err(Failure::input(anyhow!(
            "{}: no class has a voxel; an RT Structure Set needs an ROI",
            input.display()
        )));
    }
    let rois: Vec<RoiMask> = masks
        .iter()
        .enumerate()
        .map(|(n, (name, mask))| RoiMask {
            name: name.clone(),
            color: ROI_COLORS[n % ROI_COLORS.len()],
            mask,
        })
        .collect();
    let generation = Generation {
        algorithm_name: algorithm_name(&model_name(bundle)),
    };
    write_rtstruct(output, volume, &source, &rois, &generation).map_err(runtime_failure)
}

/// The model's name as derived objects record it: its bundle folder's, else its architecture.
fn model_name(bundle: &Bundle) -> String {
    bundle
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| bundle.manifest.architecture.clone())
}

/// Refuses, before any work, a DICOM output (SEG or RT Structure Set) for an input that is not DICOM, or with
/// a `label` that is not a valid DICOM LO value (over 64 characters, a backslash or control characters).
pub fn check_mask_output(output: &Path, format: Option<MaskFormat>, input: &Path, label: &str) -> Result<(), Failure> {
    let format = MaskFormat::of(output, format);
    if !format.is_dicom() {
        return Ok(());
    }
    if !is_dicom_scan(input) {
        let what = if format == MaskFormat::Seg {
            "DICOM SEG"
        } else {
            "RT Structure Set"
        };
        return Err(Failure::usage(anyhow!(
            "{}: a {what} output references its source series, so the input must be DICOM (a file or a \
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
    format: Option<MaskFormat>,
    input: &Path,
    volume: &Volume,
    mask: &Array3<u8>,
    bundle: &Bundle,
    label: &str,
) -> Result<(), Failure> {
    let model = model_name(bundle);
    match MaskFormat::of(output, format) {
        MaskFormat::Nifti => write_mask_nifti(output, volume, mask).map_err(runtime_failure),
        MaskFormat::Nrrd => write_mask_nrrd(output, volume, mask).map_err(runtime_failure),
        MaskFormat::Rtstruct => {
            let source = read_source(input)?;
            let roi = RoiMask {
                name: label.to_string(),
                color: ROI_COLORS[0],
                mask,
            };
            let generation = Generation {
                algorithm_name: algorithm_name(&model),
            };
            write_rtstruct(output, volume, &source, &[roi], &generation).map_err(runtime_failure)
        }
        MaskFormat::Seg => {
            let source = read_source(input)?;
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
