//! `segment --propagate`: segment the prompted slice(s) of a volume, then carry the mask through the volume
//! (see `medico_runtime::propagation`), with slice embeddings cached on disk between runs.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use clap::Args;
use medico_export::Bundle;
use medico_models::prompt::{BoxPrompt, Point};
use medico_runtime::engine::BackendChoice;
use medico_runtime::intensity::Intensity;
use medico_runtime::mask_prompts::Projection;
use medico_runtime::nifti_io::write_mask_nifti;
use medico_runtime::preview::write_preview;
use medico_runtime::propagation::{PropagationConfig, StopReason};
use medico_runtime::volume::Volume;
use medico_runtime::volume_session::VolumeSession;
use serde::Deserialize;
use serde_json::json;

use crate::progress::{self, Spinner};
use crate::segment_cmd::runtime_failure;
use crate::Failure;

/// The napari annotator's IoU threshold between consecutive slices.
const DEFAULT_IOU_THRESHOLD: f64 = 0.5;

/// Propagation options of `segment`.
#[derive(Args, Debug, Clone)]
pub struct PropagationArgs {
    /// Volumes: after segmenting the prompted slice, propagate the mask through the volume.
    #[arg(long)]
    pub propagate: bool,
    /// Prompts derived from each slice's mask for the next: mask, points, box, points_and_mask,
    /// single_point, lite_medsam (upstream LiteMedSAM's: the previous box + 3 px), or a combination such as
    /// box+mask+points. Default: lite_medsam for a LiteMedSAM model (it ignores points), else single_point.
    #[arg(long)]
    pub projection: Option<Projection>,
    /// Stop when the IoU between consecutive slices' masks falls below this. Default: 0.5; 0 (stop only
    /// on an empty mask, as upstream) with the lite_medsam projection.
    #[arg(long)]
    pub iou_threshold: Option<f64>,
    /// Grow the derived box by this fraction of its side (< 1) or by this many pixels (>= 1).
    #[arg(long, default_value_t = 0.05)]
    pub box_extension: f64,
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
        let projection = self
            .projection
            .unwrap_or(if bundle.manifest.architecture == "lite_medsam" {
                Projection::LITE_MEDSAM
            } else {
                Projection::default()
            });
        let iou_threshold = self.iou_threshold.unwrap_or(if projection == Projection::LITE_MEDSAM {
            0.0
        } else {
            DEFAULT_IOU_THRESHOLD
        });
        if !(0.0..=1.0).contains(&iou_threshold) {
            return Err(Failure::usage(anyhow!("--iou-threshold must lie in 0..1")));
        }
        if !(self.box_extension >= 0.0 && self.box_extension.is_finite()) {
            return Err(Failure::usage(anyhow!("--box-extension must be a non-negative number")));
        }
        Ok(PropagationConfig {
            projection,
            iou_threshold,
            box_extension: self.box_extension,
            lower_limit: self.stop_lower,
            upper_limit: self.stop_upper,
        })
    }
}

/// One entry of a prompts file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlicePrompts {
    slice: usize,
    #[serde(default, rename = "box")]
    bbox: Option<[f64; 4]>,
    #[serde(default)]
    points: Vec<[f64; 3]>,
}

/// One annotated slice's prompts, in slice pixels.
pub struct Annotation {
    /// The slice.
    pub slice: usize,
    /// Points.
    pub points: Vec<Point>,
    /// Box.
    pub bbox: Option<BoxPrompt>,
}

/// Reads a prompts file.
pub fn read_prompts_file(path: &Path) -> Result<Vec<Annotation>, Failure> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read the prompts file", path.display()))
        .map_err(Failure::input)?;
    let entries: Vec<SlicePrompts> = serde_json::from_str(&text)
        .map_err(|e| Failure::input(anyhow!("{}: not a prompts list: {e}", path.display())))?;
    if entries.is_empty() {
        return Err(Failure::input(anyhow!("{}: the prompts list is empty", path.display())));
    }
    entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            if e.bbox.is_none() && e.points.is_empty() {
                return Err(Failure::input(anyhow!(
                    "{}: entry {i} (slice {}) has neither a box nor points",
                    path.display(),
                    e.slice
                )));
            }
            let points = e
                .points
                .iter()
                .map(|[x, y, label]| match *label {
                    l if l == 1.0 || l == 0.0 => Ok(Point {
                        x: *x,
                        y: *y,
                        positive: l == 1.0,
                    }),
                    other => Err(Failure::input(anyhow!(
                        "{}: entry {i}: point label {other} (expected 0 or 1)",
                        path.display()
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Annotation {
                slice: e.slice,
                points,
                bbox: e.bbox.map(|[x0, y0, x1, y1]| BoxPrompt { x0, y0, x1, y1 }),
            })
        })
        .collect()
}

/// Where the embeddings are cached, if anywhere.
fn cache_root(args: &PropagationArgs) -> Option<PathBuf> {
    if args.no_cache {
        return None;
    }
    Some(
        args.cache_dir
            .clone()
            .unwrap_or_else(|| medico_export::registry::default_cache_dir().join("embeddings")),
    )
}

fn stop_text(stop: Option<StopReason>) -> serde_json::Value {
    match stop {
        None => json!("not walked (annotated slice at the limit)"),
        Some(StopReason::Iou { slice }) => json!(format!("IoU below threshold at slice {slice}")),
        Some(StopReason::Limit) => json!("volume border or stop slice"),
        Some(StopReason::EmptyMask) => json!("empty mask"),
    }
}

/// Everything `segment --propagate` needs besides the volume.
pub struct PropagationJob<'a> {
    /// The input path (for messages and the report).
    pub input: &'a Path,
    /// The output NIfTI.
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
    let root = cache_root(args);
    let slices = volume.slices(job.axis);
    for a in &job.annotations {
        if a.slice >= slices {
            return Err(Failure::input(anyhow!(
                "{}: annotated slice {} is outside the volume ({slices} slices along axis {})",
                job.input.display(),
                a.slice,
                job.axis
            )));
        }
    }
    let mut session = VolumeSession::open(
        volume,
        job.axis,
        job.intensity,
        job.bundle,
        job.backend,
        job.threads,
        root.as_deref(),
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
    let hw = session.volume().slice_hw(job.axis);
    let masks = result.masks.iter().map(|(&z, m)| (z, m.as_slice()));
    let mask = session.volume().mask_from_slices(job.axis, masks, hw);
    write_mask_nifti(job.output, session.volume(), &mask).map_err(runtime_failure)?;
    if let (Some(path), Some(first)) = (job.preview, job.annotations.first()) {
        let image = session.slice_image(first.slice);
        let slice_mask = &result.masks[&first.slice];
        write_preview(path, &image, slice_mask, &first.points, first.bbox.as_ref()).map_err(runtime_failure)?;
    }
    let voxels = mask.iter().filter(|&&v| v != 0).count();
    let spacing = session.volume().spacing();
    let volume_ml = voxels as f64 * spacing.iter().product::<f64>() / 1000.0;
    let covered: Vec<usize> = result
        .masks
        .iter()
        .filter(|(_, m)| m.iter().any(|&v| v))
        .map(|(&z, _)| z)
        .collect();
    let stats = session.stats();
    if job.json {
        let report = json!({
            "input": job.input.display().to_string(),
            "output": job.output.display().to_string(),
            "backend": session.engine_name(),
            "axis": job.axis,
            "annotated_slices": session.annotations().keys().collect::<Vec<_>>(),
            "slices_covered": covered.len(),
            "slice_range": [covered.first(), covered.last()],
            "voxels": voxels,
            "volume_ml": volume_ml,
            "iou_with_previous": result.iou_with_previous.iter().map(|(z, v)| (z.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "lower_stop": stop_text(result.lower_stop),
            "upper_stop": stop_text(result.upper_stop),
            "projection": config.projection.to_string(),
            "iou_threshold": config.iou_threshold,
            "box_extension": config.box_extension,
            "intensity": job.intensity.to_string(),
            "cache_dir": session.cache_dir().map(|p| p.display().to_string()),
            "encoder_runs": stats.encoder_runs,
            "cache_hits": stats.cache_hits,
            "cache_rebuilt": stats.cache_rebuilt,
            "decoder_runs": stats.decoder_runs,
            "encoder_seconds": stats.encoder_time.as_secs_f64(),
            "decoder_seconds": stats.decoder_time.as_secs_f64(),
            "total_seconds": total_seconds,
            "other_seconds": total_seconds - stats.encoder_time.as_secs_f64() - stats.decoder_time.as_secs_f64(),
        });
        println!("{report:#}");
    } else {
        println!(
            "wrote {} ({} slices, {voxels} voxels, {volume_ml:.2} ml; encoder {:.1} s for {} slices, decoder {:.2} s for {} prompts)",
            job.output.display(),
            covered.len(),
            stats.encoder_time.as_secs_f64(),
            stats.encoder_runs,
            stats.decoder_time.as_secs_f64(),
            stats.decoder_runs
        );
    }
    Ok(())
}
