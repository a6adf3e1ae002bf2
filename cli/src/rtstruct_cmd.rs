//! `medico-cli rtstruct`: an RT Structure Set's ROIs onto the grid of the series they were drawn on — one ROI
//! as a binary mask, or every ROI with an area as a label map (voxels hold ROI numbers) — written as NIfTI or
//! NRRD; and the ROI listing `info` prints for a structure set.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::Args;
use medico_io::dicom_seg::SourceSeries;
use medico_io::input::{is_dicom_scan, open_scan, Scan};
use medico_io::nifti_io::write_mask_nifti;
use medico_io::nrrd_io::write_mask_nrrd;
use medico_io::rtstruct::grid::is_area;
use medico_io::rtstruct::{label_map, rasterise_roi, read_structure_set, StructureSet};
use medico_io::volume::Volume;
use ndarray::Array3;
use serde::Serialize;

use crate::common::runtime_failure;
use crate::Failure;

#[derive(Args)]
pub struct RtstructArgs {
    /// The RT Structure Set (a DICOM file).
    input: PathBuf,
    /// The image series the contours were drawn on: a DICOM series folder or file (contours matched by the
    /// images they reference, frame of reference checked), or a NIfTI/NRRD volume in the same patient space
    /// (matched by position).
    #[arg(long)]
    series: PathBuf,
    /// The ROI to rasterise (its name, or its number); default: every ROI with an area, as a label map of ROI
    /// numbers (a smaller ROI wins where two overlap).
    #[arg(long)]
    roi: Option<String>,
    /// Output mask or label map on the series' grid: NIfTI (.nii/.nii.gz) or NRRD (.nrrd).
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
    /// Print a JSON report on standard output.
    #[arg(long)]
    json: bool,
}

/// One ROI as `info` lists it.
#[derive(Serialize)]
pub struct RoiReport {
    number: i64,
    name: String,
    interpreted_type: Option<String>,
    color: Option<[u8; 3]>,
    contours: usize,
    /// Contour geometric types other than CLOSED_PLANAR, if any.
    other_types: Vec<String>,
}

/// The structure set as `info` describes it.
#[derive(Serialize)]
pub struct StructureSetReport {
    label: Option<String>,
    frames_of_reference: Vec<String>,
    referenced_series: Vec<String>,
    rois: Vec<RoiReport>,
}

/// What `info` says of a structure set.
pub fn describe(set: &StructureSet) -> StructureSetReport {
    StructureSetReport {
        label: set.label.clone(),
        frames_of_reference: set.frames_of_reference.clone(),
        referenced_series: set.referenced_series.clone(),
        rois: set
            .rois
            .iter()
            .map(|roi| {
                let mut other_types: Vec<String> = roi
                    .contours
                    .iter()
                    .map(|c| c.geometric_type.clone())
                    .filter(|t| t != "CLOSED_PLANAR")
                    .collect();
                other_types.sort();
                other_types.dedup();
                RoiReport {
                    number: roi.number,
                    name: roi.name.clone(),
                    interpreted_type: roi.interpreted_type.clone(),
                    color: roi.color,
                    contours: roi.contours.len(),
                    other_types,
                }
            })
            .collect(),
    }
}

/// The ROI table `info` prints.
pub fn print_structure_set(input: &Path, report: &StructureSetReport) {
    println!("{}: DICOM RT Structure Set", input.display());
    if let Some(label) = &report.label {
        println!("  label: {label}");
    }
    println!("  referenced series: {}", report.referenced_series.join(", "));
    println!("  {} ROIs:", report.rois.len());
    println!("  {:>4}  {:<24} {:<12} {:>8}  colour", "#", "name", "type", "contours");
    for roi in &report.rois {
        let color = roi
            .color
            .map(|[r, g, b]| format!("{r},{g},{b}"))
            .unwrap_or_else(|| "-".into());
        let other = if roi.other_types.is_empty() {
            String::new()
        } else {
            format!("  (also {})", roi.other_types.join(", "))
        };
        println!(
            "  {:>4}  {:<24} {:<12} {:>8}  {color}{other}",
            roi.number,
            roi.name,
            roi.interpreted_type.as_deref().unwrap_or("-"),
            roi.contours
        );
    }
}

#[derive(Serialize)]
struct RasterReport {
    input: String,
    series: String,
    output: String,
    rois: Vec<String>,
    contours_on_series: usize,
    contours_elsewhere: usize,
    voxels: usize,
}

/// The series as a volume, and its DICOM references when it is DICOM.
fn open_series(path: &Path) -> Result<(Volume, Option<SourceSeries>), Failure> {
    let volume = match open_scan(path, None).map_err(runtime_failure)? {
        Scan::Volume(volume) => *volume,
        Scan::Image(_) => {
            return Err(Failure::input(anyhow!(
                "{}: a 2D image has no patient coordinates; give the DICOM series the contours were drawn on",
                path.display()
            )))
        }
    };
    let series = if is_dicom_scan(path) {
        Some(SourceSeries::read(path).map_err(runtime_failure)?)
    } else {
        None
    };
    Ok((volume, series))
}

pub fn run(args: RtstructArgs) -> Result<(), Failure> {
    if args.output == args.input || args.output == args.series {
        return Err(Failure::usage(anyhow!(
            "{}: the output would overwrite an input; choose another path",
            args.output.display()
        )));
    }
    let set = read_structure_set(&args.input).map_err(runtime_failure)?;
    let (volume, series) = open_series(&args.series)?;
    let (mask, rois, on_series, elsewhere): (Array3<u8>, Vec<String>, usize, usize) = match &args.roi {
        Some(name) => {
            let roi = set.roi(name).map_err(runtime_failure)?;
            let raster = rasterise_roi(&set, roi, &volume, series.as_ref()).map_err(runtime_failure)?;
            (
                raster.mask,
                vec![roi.name.clone()],
                raster.contours_on_volume,
                raster.contours_elsewhere,
            )
        }
        None => {
            let labels = label_map(&set, &volume, series.as_ref()).map_err(runtime_failure)?;
            if labels.iter().any(|&v| v > 255.0) {
                return Err(Failure::input(anyhow!(
                    "{}: ROI numbers above 255 do not fit an 8-bit label map; rasterise them one by one with --roi",
                    args.input.display()
                )));
            }
            let names = set.rois.iter().filter(|r| is_area(r)).map(|r| r.name.clone()).collect();
            (labels.mapv(|v| v as u8), names, 0, 0)
        }
    };
    let name = args.output.to_string_lossy().to_lowercase();
    if name.ends_with(".nrrd") {
        write_mask_nrrd(&args.output, &volume, &mask).map_err(runtime_failure)?;
    } else if name.ends_with(".nii") || name.ends_with(".nii.gz") {
        write_mask_nifti(&args.output, &volume, &mask).map_err(runtime_failure)?;
    } else {
        return Err(Failure::usage(anyhow!(
            "{}: write the mask as .nii, .nii.gz or .nrrd",
            args.output.display()
        )));
    }
    let report = RasterReport {
        input: args.input.display().to_string(),
        series: args.series.display().to_string(),
        output: args.output.display().to_string(),
        rois,
        contours_on_series: on_series,
        contours_elsewhere: elsewhere,
        voxels: mask.iter().filter(|&&v| v != 0).count(),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report serializes")
        );
    } else {
        println!(
            "{} ({}) -> {}: {} voxels",
            report.input,
            report.rois.join(", "),
            report.output,
            report.voxels
        );
        if args.roi.is_some() {
            println!(
                "  {} contours on the series' slices, {} on slices it does not hold",
                report.contours_on_series, report.contours_elsewhere
            );
        }
    }
    Ok(())
}
