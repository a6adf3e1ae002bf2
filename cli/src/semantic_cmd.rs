//! `segment --semantic`: label a whole volume with the bundle's segmentation decoder, slice by slice, through
//! the same embedding cache as interactive segmentation; the label map is written on the input's grid (class
//! `k` of `model.json`'s list as value `k`, 0 = background), with a per-class volume report.

use std::path::Path;

use anyhow::anyhow;
use medico_bundle::Bundle;
use medico_io::intensity::Intensity;
use medico_io::volume::Volume;
use medico_runtime::engines::BackendChoice;
use medico_runtime::volume::semantic::{label_volume, SemanticSegmenter};
use medico_runtime::volume::session::VolumeSession;
use serde::Serialize;

use crate::common::runtime_failure;
use crate::mask_output::MaskFormat;
use crate::progress;
use crate::propagate_cmd::{cache_root, PropagationArgs};
use crate::Failure;

/// Everything `segment --semantic` needs besides the volume.
pub struct SemanticJob<'a> {
    /// The input path (for messages and the report).
    pub input: &'a Path,
    /// The label map file (NIfTI or NRRD, by its name), or with `format` rtstruct an RT Structure Set.
    pub output: &'a Path,
    /// `--format`: rtstruct writes one ROI per class for a DICOM input.
    pub format: Option<MaskFormat>,
    /// The bundle.
    pub bundle: &'a Bundle,
    /// Slicing axis.
    pub axis: usize,
    /// Intensity mapping.
    pub intensity: Intensity,
    /// Engine.
    pub backend: BackendChoice,
    /// Threads.
    pub threads: usize,
    /// JSON report.
    pub json: bool,
}

/// One class of the report.
#[derive(Serialize)]
struct ClassReport {
    label: usize,
    name: String,
    voxels: u64,
    volume_ml: f64,
}

/// `segment --semantic --json`.
#[derive(Serialize)]
struct SemanticReport {
    input: String,
    output: String,
    backend: &'static str,
    axis: usize,
    slices: usize,
    classes: Vec<ClassReport>,
    intensity: String,
    cache_dir: Option<String>,
    encoder_runs: usize,
    cache_hits: usize,
    encoder_seconds: f64,
    total_seconds: f64,
}

/// Refuses, before any work, a label map format medico does not write (DICOM SEG holds one segment).
pub fn check_label_output(output: &Path, format: Option<MaskFormat>, input: &Path) -> Result<(), Failure> {
    if format == Some(MaskFormat::Rtstruct) {
        return crate::mask_output::check_mask_output(output, format, input, "labels");
    }
    let name = output.to_string_lossy().to_lowercase();
    if [".nii", ".nii.gz", ".nrrd"].iter().any(|ext| name.ends_with(ext)) {
        return Ok(());
    }
    Err(Failure::usage(anyhow!(
        "{}: a label map is written as NIfTI (.nii, .nii.gz), NRRD (.nrrd) or, for DICOM input, with \
         --format rtstruct as an RT Structure Set",
        output.display()
    )))
}

/// Labels every slice of `volume` and writes the label map.
pub fn run(job: SemanticJob<'_>, volume: Volume, args: &PropagationArgs) -> Result<(), Failure> {
    let mut segmenter = SemanticSegmenter::open(job.bundle, job.backend, job.threads).map_err(|e| match e {
        medico_runtime::RuntimeError::NoSemanticHead { .. } => Failure::model(e),
        other => runtime_failure(other),
    })?;
    let slices = volume.slices(job.axis);
    let mut session = VolumeSession::open(
        volume,
        job.axis,
        job.intensity,
        job.bundle,
        job.backend,
        job.threads,
        cache_root(args).as_deref(),
    )
    .map_err(runtime_failure)?;
    let started = std::time::Instant::now();
    let bar = progress::bar(slices as u64, &format!("labelling slices ({})", session.engine_name()));
    let labelled = label_volume(&mut session, &mut segmenter, 0..slices, |_| bar.inc(1)).map_err(runtime_failure)?;
    bar.finish_and_clear();
    // NIfTI or NRRD by the name, or one ROI per class (a DICOM SEG was refused by `check_label_output`).
    if job.format == Some(MaskFormat::Rtstruct) {
        let classes = segmenter.head().classes.clone();
        crate::mask_output::write_label_rtstruct(
            job.output,
            job.input,
            session.volume(),
            &labelled.labels,
            &classes,
            job.bundle,
        )?;
    } else {
        crate::mask_output::write_volume_mask(
            job.output,
            None,
            job.input,
            session.volume(),
            &labelled.labels,
            job.bundle,
            "labels",
        )?;
    }
    let total_seconds = started.elapsed().as_secs_f64();
    let voxel_ml = session.volume().spacing().iter().product::<f64>() / 1000.0;
    let head = segmenter.head();
    let classes: Vec<ClassReport> = labelled
        .voxels
        .iter()
        .enumerate()
        .map(|(label, &voxels)| ClassReport {
            label,
            name: head.class_name(label).unwrap_or_default().to_string(),
            voxels,
            volume_ml: voxels as f64 * voxel_ml,
        })
        .collect();
    let stats = session.stats();
    let report = SemanticReport {
        input: job.input.display().to_string(),
        output: job.output.display().to_string(),
        backend: session.engine_name(),
        axis: job.axis,
        slices,
        classes,
        intensity: job.intensity.to_string(),
        cache_dir: session.cache_dir().map(|p| p.display().to_string()),
        encoder_runs: stats.encoder_runs,
        cache_hits: stats.cache_hits,
        encoder_seconds: stats.encoder_time.as_secs_f64(),
        total_seconds,
    };
    if job.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report serializes")
        );
    } else {
        let summary: Vec<String> = report
            .classes
            .iter()
            .skip(1)
            .map(|c| format!("{} {:.2} ml", c.name, c.volume_ml))
            .collect();
        println!(
            "wrote {} ({} slices; {}; encoder {:.1} s for {} slices, {} from the cache)",
            job.output.display(),
            slices,
            summary.join(", "),
            report.encoder_seconds,
            report.encoder_runs,
            report.cache_hits
        );
    }
    Ok(())
}
