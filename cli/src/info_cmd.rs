//! `medico-cli info`: what a scan is — format, grid, spacing, orientation, affine, value range and the
//! slices per plane — as text or JSON.

use std::path::PathBuf;

use clap::Args;
use medico_runtime::image2d::Pixels;
use medico_runtime::input::{open_scan, Scan};
use medico_runtime::nifti_io::is_nifti;
use medico_runtime::volume::{Plane, Volume};
use serde_json::json;

use crate::segment_cmd::runtime_failure;
use crate::Failure;

#[derive(Args)]
pub struct InfoArgs {
    /// A 2D image, a NIfTI volume, a DICOM file or a folder holding one DICOM series.
    input: PathBuf,
    /// 4D NIfTI: which volume to describe (default 0).
    #[arg(long)]
    volume: Option<usize>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn volume_report(volume: &Volume) -> serde_json::Value {
    let planes: Vec<serde_json::Value> = [Plane::Axial, Plane::Coronal, Plane::Sagittal]
        .into_iter()
        .map(|plane| {
            let axis = volume.axis_for_plane(plane);
            json!({
                "plane": format!("{plane:?}").to_lowercase(),
                "axis": axis,
                "slices": volume.slices(axis),
            })
        })
        .collect();
    let range = volume.value_range();
    json!({
        "kind": "volume",
        "format": volume.format,
        "shape": volume.shape(),
        "spacing_mm": volume.spacing(),
        "orientation": volume.orientation(),
        "affine": volume.affine,
        "origin_mm": volume.voxel_to_world([0.0; 3]),
        "value_range": range.map(|(lo, hi)| [lo, hi]),
        "planes": planes,
        "notes": volume.notes,
    })
}

pub fn run(args: InfoArgs) -> Result<(), Failure> {
    // A 4D NIfTI without --volume is described through its first volume (its notes say so).
    let volume = if is_nifti(&args.input) {
        Some(args.volume.unwrap_or(0))
    } else {
        args.volume
    };
    let scan = open_scan(&args.input, volume).map_err(runtime_failure)?;
    let report = match &scan {
        Scan::Image(image) => {
            let gray = image.gray();
            let (lo, hi) = gray
                .iter()
                .filter(|v| v.is_finite())
                .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            let pixels = match image.pixels {
                Pixels::Rgb8(_) => "8-bit RGB",
                Pixels::Gray8(_) => "8-bit gray",
                Pixels::Gray(_) => "gray (16-bit or float)",
            };
            json!({
                "kind": "image",
                "format": pixels,
                "width": image.hw.1,
                "height": image.hw.0,
                "value_range": [lo, hi],
            })
        }
        Scan::Volume(volume) => volume_report(volume),
    };
    let mut report = report;
    report["input"] = json!(args.input.display().to_string());
    if args.json {
        println!("{report:#}");
        return Ok(());
    }
    print_text(&report);
    Ok(())
}

fn print_text(r: &serde_json::Value) {
    println!("{}", r["input"].as_str().unwrap_or_default());
    println!("  format:       {}", r["format"].as_str().unwrap_or_default());
    if r["kind"] == "image" {
        println!("  size:         {} x {} pixels", r["width"], r["height"]);
        println!("  value range:  {} .. {}", r["value_range"][0], r["value_range"][1]);
        return;
    }
    let triple = |v: &serde_json::Value| {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|x| format!("{:.4}", x.as_f64().unwrap_or(f64::NAN)))
                    .collect::<Vec<_>>()
                    .join(" x ")
            })
            .unwrap_or_default()
    };
    println!(
        "  shape:        {}",
        r["shape"]
            .as_array()
            .map(|a| a.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(" x "))
            .unwrap_or_default()
    );
    println!("  spacing (mm): {}", triple(&r["spacing_mm"]));
    println!(
        "  orientation:  {} (array axes 0,1,2 point to)",
        r["orientation"].as_str().unwrap_or_default()
    );
    println!("  origin (mm):  {}", triple(&r["origin_mm"]));
    if let Some(rows) = r["affine"].as_array() {
        println!("  affine (RAS):");
        for row in rows.iter().take(3) {
            println!("    {}", triple(row).replace(" x ", "  "));
        }
    }
    match r["value_range"].as_array() {
        Some(v) => println!("  value range:  {} .. {}", v[0], v[1]),
        None => println!("  value range:  no finite values"),
    }
    if let Some(planes) = r["planes"].as_array() {
        for p in planes {
            println!(
                "  {:<9}     axis {}, {} slices",
                format!("{}:", p["plane"].as_str().unwrap_or_default()),
                p["axis"],
                p["slices"]
            );
        }
    }
    if let Some(notes) = r["notes"].as_array() {
        for n in notes {
            println!("  note:         {}", n.as_str().unwrap_or_default());
        }
    }
}
