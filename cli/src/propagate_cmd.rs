//! `segment --propagate`: segment the prompted slice(s) of a volume, then carry the mask through the volume
//! (see `medico_runtime::volume::propagation`), with slice embeddings cached on disk between runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::Args;
use medico_bundle::Bundle;
use medico_io::intensity::Intensity;
use medico_io::prompts_file::Annotation;
use medico_io::volume::Volume;
use medico_runtime::engines::BackendChoice;
use medico_runtime::prediction::preview::write_preview;
use medico_runtime::volume::propagation::{Propagation, PropagationConfig, StopReason, StopRule};
use medico_runtime::volume::session::VolumeSession;
use serde::Serialize;

use crate::common::{runtime_failure, ProjectionArgs};
use crate::progress::{self, Spinner};
use crate::Failure;

/// Propagation options of `segment`.
#[derive(Args, Debug, Clone)]
pub struct PropagationArgs {
    /// Volumes: after segmenting the prompted slice, propagate the mask through the volume.
    #[arg(long)]
    pub propagate: bool,
    #[command(flatten)]
    pub projection: ProjectionArgs,
    /// Segment no slice below this one.
    #[arg(long, value_name = "K")]
    pub stop_lower: Option<usize>,
    /// Segment no slice above this one.
    #[arg(long, value_name = "K")]
    pub stop_upper: Option<usize>,
    /// Several annotated slices (implies --propagate): a JSON list of {"slice": K, "box": [x0,y0,x1,y1],
    /// "points": [[x,y,label], ...]} in slice pixels, replayed in order (a later entry for the same slice
    /// replaces the earlier one, as a correction).
    #[arg(long, value_name = "JSON")]
    pub prompts: Option<PathBuf>,
    /// Embedding cache folder (default: $MEDICO_CACHE_DIR, else the user cache, + /embeddings).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Do not read or write the embedding cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Encode (or load from the cache) every slice of the plane first, with a progress bar, as annotation
    /// tools do; without it only the slices the propagation reaches are encoded.
    #[arg(long)]
    pub precompute: bool,
}

impl PropagationArgs {
    /// Whether propagation was asked for.
    pub fn enabled(&self) -> bool {
        self.propagate || self.prompts.is_some()
    }

    /// The propagation settings for `bundle`'s model, defaults filled in.
    fn config(&self, bundle: &Bundle) -> Result<PropagationConfig, Failure> {
        Ok(PropagationConfig {
            lower_limit: self.stop_lower,
            upper_limit: self.stop_upper,
            ..self.projection.config(bundle)?
        })
    }
}

/// Where the embeddings are cached, if anywhere.
pub fn cache_root(args: &PropagationArgs) -> Option<PathBuf> {
    if args.no_cache {
        return None;
    }
    Some(
        args.cache_dir
            .clone()
            .unwrap_or_else(|| medico_bundle::cache::default_cache_dir().join("embeddings")),
    )
}

fn stop_text(stop: Option<StopReason>) -> String {
    match stop {
        None => "not walked (annotated slice at the limit)".into(),
        Some(StopReason::Rule { slice, cause }) => format!("{cause} at slice {slice}"),
        Some(StopReason::Limit) => "volume border or stop slice".into(),
        Some(StopReason::EmptyMask) => "empty mask".into(),
    }
}

/// `segment --propagate --json`.
#[derive(Serialize)]
struct PropagationReport {
    input: String,
    output: String,
    backend: &'static str,
    axis: usize,
    annotated_slices: Vec<usize>,
    slices_covered: usize,
    slice_range: [Option<usize>; 2],
    voxels: usize,
    volume_ml: f64,
    iou_with_previous: BTreeMap<String, f64>,
    predicted_iou: BTreeMap<String, f32>,
    lower_stop: String,
    upper_stop: String,
    projection: String,
    stop_rule: StopRule,
    box_extension: f64,
    intensity: String,
    cache_dir: Option<String>,
    encoder_runs: usize,
    cache_hits: usize,
    cache_rebuilt: usize,
    decoder_runs: usize,
    encoder_seconds: f64,
    decoder_seconds: f64,
    total_seconds: f64,
    other_seconds: f64,
}

/// Everything `segment --propagate` needs besides the volume.
pub struct PropagationJob<'a> {
    /// The input path (for messages and the report).
    pub input: &'a Path,
    /// The output mask file (NIfTI, NRRD or DICOM SEG, by its name).
    pub output: &'a Path,
    /// The bundle.
    pub bundle: &'a Bundle,
    /// Slicing axis.
    pub axis: usize,
    /// Intensity mapping.
    pub intensity: Intensity,
    /// Engine and threads.
    pub backend: BackendChoice,
    /// Threads.
    pub threads: usize,
    /// The segment's name in a DICOM SEG output.
    pub label: &'a str,
    /// The output's format when its name does not say.
    pub format: Option<crate::mask_output::MaskFormat>,
    /// Annotations to replay.
    pub annotations: Vec<Annotation>,
    /// Multimask output on annotated slices.
    pub multimask: bool,
    /// JSON report.
    pub json: bool,
    /// Preview PNG of the first annotated slice.
    pub preview: Option<&'a Path>,
}

/// Runs the propagation and writes the mask volume.
pub fn run(job: PropagationJob<'_>, volume: Volume, args: &PropagationArgs) -> Result<(), Failure> {
    let config = args.config(job.bundle)?;
    let slices = volume.slices(job.axis);
    if let Some(a) = job.annotations.iter().find(|a| a.slice >= slices) {
        return Err(Failure::input(anyhow!(
            "{}: annotated slice {} is outside the volume ({slices} slices along axis {})",
            job.input.display(),
            a.slice,
            job.axis
        )));
    }
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
    if args.precompute {
        let bar = progress::bar(slices as u64, "embedding slices");
        session.precompute(0..slices, |_| bar.inc(1)).map_err(runtime_failure)?;
        bar.finish_and_clear();
    }
    let spinner = Spinner::start(format!("segmenting and propagating ({})", session.engine_name()));
    let started = std::time::Instant::now();
    for a in &job.annotations {
        session
            .annotate(a.slice, &a.points, a.bbox.as_ref(), job.multimask)
            .map_err(runtime_failure)?;
    }
    let result = session.propagate(config.clone()).map_err(runtime_failure)?.clone();
    let total_seconds = started.elapsed().as_secs_f64();
    spinner.finish();
    let voxels = write_outputs(&job, &session, &result)?;
    let report = report(&job, &session, &result, &config, voxels, total_seconds);
    if job.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report serializes")
        );
    } else {
        println!(
            "wrote {} ({} slices, {voxels} voxels, {:.2} ml; encoder {:.1} s for {} slices, decoder {:.2} s for {} prompts)",
            job.output.display(),
            report.slices_covered,
            report.volume_ml,
            report.encoder_seconds,
            report.encoder_runs,
            report.decoder_seconds,
            report.decoder_runs
        );
    }
    Ok(())
}

/// Writes the mask volume (and the preview of the first annotated slice); the mask's voxel count.
fn write_outputs(job: &PropagationJob<'_>, session: &VolumeSession, result: &Propagation) -> Result<usize, Failure> {
    let hw = session.volume().slice_hw(job.axis);
    let masks = result.masks.iter().map(|(&z, m)| (z, m.as_slice()));
    let mask = session.volume().mask_from_slices(job.axis, masks, hw);
    crate::mask_output::write_volume_mask(
        job.output,
        job.format,
        job.input,
        session.volume(),
        &mask,
        job.bundle,
        job.label,
    )?;
    if let (Some(path), Some(first)) = (job.preview, job.annotations.first()) {
        let image = session.slice_image(first.slice);
        let slice_mask = &result.masks[&first.slice];
        write_preview(path, &image, slice_mask, &first.points, first.bbox.as_ref()).map_err(runtime_failure)?;
    }
    Ok(mask.iter().filter(|&&v| v != 0).count())
}

fn report(
    job: &PropagationJob<'_>,
    session: &VolumeSession,
    result: &Propagation,
    config: &PropagationConfig,
    voxels: usize,
    total_seconds: f64,
) -> PropagationReport {
    let spacing = session.volume().spacing();
    let covered: Vec<usize> = result
        .masks
        .iter()
        .filter(|(_, m)| m.iter().any(|&v| v))
        .map(|(&z, _)| z)
        .collect();
    let stats = session.stats();
    let (encoder_seconds, decoder_seconds) = (stats.encoder_time.as_secs_f64(), stats.decoder_time.as_secs_f64());
    PropagationReport {
        input: job.input.display().to_string(),
        output: job.output.display().to_string(),
        backend: session.engine_name(),
        axis: job.axis,
        annotated_slices: session.annotations().keys().copied().collect(),
        slices_covered: covered.len(),
        slice_range: [covered.first().copied(), covered.last().copied()],
        voxels,
        volume_ml: voxels as f64 * spacing.iter().product::<f64>() / 1000.0,
        iou_with_previous: result
            .evidence
            .iter()
            .map(|(z, e)| (z.to_string(), e.iou_with_previous))
            .collect(),
        predicted_iou: result
            .evidence
            .iter()
            .map(|(z, e)| (z.to_string(), e.predicted_iou))
            .collect(),
        lower_stop: stop_text(result.lower_stop),
        upper_stop: stop_text(result.upper_stop),
        projection: config.projection.to_string(),
        stop_rule: config.stop,
        box_extension: config.box_extension,
        intensity: job.intensity.to_string(),
        cache_dir: session.cache_dir().map(|p| p.display().to_string()),
        encoder_runs: stats.encoder_runs,
        cache_hits: stats.cache_hits,
        cache_rebuilt: stats.cache_rebuilt,
        decoder_runs: stats.decoder_runs,
        encoder_seconds,
        decoder_seconds,
        total_seconds,
        other_seconds: total_seconds - encoder_seconds - decoder_seconds,
    }
}
