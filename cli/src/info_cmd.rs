//! `medico-cli info`: what a scan is — format, grid, spacing, orientation, affine, value range and the
//! slices per plane — as text or JSON.

use std::path::PathBuf;

use clap::Args;
use medico_io::image2d::{Image2d, Pixels};
use medico_io::input::{open_scan, Scan};
use medico_io::nifti_io::is_nifti;
use medico_io::volume::{Plane, Volume};
use serde::Serialize;

use crate::common::runtime_failure;
use crate::Failure;

#[derive(Args)]
pub struct InfoArgs {
    /// A 2D image, a NIfTI volume, a DICOM file or a folder holding one DICOM series, or an RT Structure Set
    /// (its ROIs are listed).
    input: PathBuf,
    /// 4D NIfTI: which volume to describe (default 0).
    #[arg(long)]
    volume: Option<usize>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// `info --json`: the input and what it is.
#[derive(Serialize)]
struct InfoReport {
    input: String,
    #[serde(flatten)]
    scan: ScanReport,
}

/// A 2D image or a volume, told apart by `kind`.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum ScanReport {
    Image {
        format: &'static str,
        width: usize,
        height: usize,
        value_range: [f32; 2],
    },
    Volume(Box<VolumeReport>),
}

#[derive(Serialize)]
struct VolumeReport {
    format: String,
    shape: [usize; 3],
    spacing_mm: [f64; 3],
    orientation: String,
    affine: [[f64; 4]; 4],
    origin_mm: [f64; 3],
    value_range: Option<[f32; 2]>,
    planes: Vec<PlaneReport>,
    notes: Vec<String>,
}

#[derive(Serialize)]
struct PlaneReport {
    plane: String,
    axis: usize,
    slices: usize,
}

fn volume_report(volume: &Volume) -> VolumeReport {
    let planes = [Plane::Axial, Plane::Coronal, Plane::Sagittal]
        .into_iter()
        .map(|plane| {
            let axis = volume.axis_for_plane(plane);
            PlaneReport {
                plane: format!("{plane:?}").to_lowercase(),
                axis,
                slices: volume.slices(axis),
            }
        })
        .collect();
    VolumeReport {
        format: volume.format.clone(),
        shape: volume.shape(),
        spacing_mm: volume.spacing(),
        orientation: volume.orientation(),
        affine: volume.affine,
        origin_mm: volume.voxel_to_world([0.0; 3]),
        value_range: volume.value_range().map(|(lo, hi)| [lo, hi]),
        planes,
        notes: volume.notes.clone(),
    }
}

fn image_report(image: &Image2d) -> ScanReport {
    let (lo, hi) = image
        .gray()
        .iter()
        .filter(|v| v.is_finite())
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let format = match image.pixels {
        Pixels::Rgb8(_) => "8-bit RGB",
        Pixels::Gray8(_) => "8-bit gray",
        Pixels::Gray(_) => "gray (16-bit or float)",
    };
    ScanReport::Image {
        format,
        width: image.hw.1,
        height: image.hw.0,
        value_range: [lo, hi],
    }
}

pub fn run(args: InfoArgs) -> Result<(), Failure> {
    if let Some(set) = medico_io::rtstruct::read_if_structure_set(&args.input).map_err(runtime_failure)? {
        let report = crate::rtstruct_cmd::describe(&set);
        if args.json {
            let json = serde_json::json!({"input": args.input.display().to_string(), "kind": "rtstruct", "structure_set": report});
            println!("{}", serde_json::to_string_pretty(&json).expect("a report serializes"));
        } else {
            crate::rtstruct_cmd::print_structure_set(&args.input, &report);
        }
        return Ok(());
    }
    // A 4D NIfTI without --volume is described through its first volume (its notes say so).
    let volume = if is_nifti(&args.input) {
        Some(args.volume.unwrap_or(0))
    } else {
        args.volume
    };
    let scan = match open_scan(&args.input, volume).map_err(runtime_failure)? {
        Scan::Image(image) => image_report(&image),
        Scan::Volume(volume) => ScanReport::Volume(Box::new(volume_report(&volume))),
    };
    let report = InfoReport {
        input: args.input.display().to_string(),
        scan,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report serializes")
        );
    } else {
        print_text(&report);
    }
    Ok(())
}

fn triple(values: &[f64]) -> String {
    values.iter().map(|x| format!("{x:.4}")).collect::<Vec<_>>().join(" x ")
}

fn print_text(report: &InfoReport) {
    println!("{}", report.input);
    let v = match &report.scan {
        ScanReport::Image {
            format,
            width,
            height,
            value_range,
        } => {
            println!("  format:       {format}");
            println!("  size:         {width} x {height} pixels");
            println!("  value range:  {} .. {}", value_range[0], value_range[1]);
            return;
        }
        ScanReport::Volume(v) => v,
    };
    println!("  format:       {}", v.format);
    let shape: Vec<String> = v.shape.iter().map(|x| x.to_string()).collect();
    println!("  shape:        {}", shape.join(" x "));
    println!("  spacing (mm): {}", triple(&v.spacing_mm));
    println!("  orientation:  {} (array axes 0,1,2 point to)", v.orientation);
    println!("  origin (mm):  {}", triple(&v.origin_mm));
    println!("  affine (RAS):");
    for row in v.affine.iter().take(3) {
        println!("    {}", triple(row).replace(" x ", "  "));
    }
    match v.value_range {
        Some([lo, hi]) => println!("  value range:  {lo} .. {hi}"),
        None => println!("  value range:  no finite values"),
    }
    for p in &v.planes {
        println!(
            "  {:<9}     axis {}, {} slices",
            format!("{}:", p.plane),
            p.axis,
            p.slices
        );
    }
    for n in &v.notes {
        println!("  note:         {n}");
    }
}
