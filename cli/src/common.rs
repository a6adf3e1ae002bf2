//! What several commands share: the propagation settings (`segment --propagate` and `eval interactive`'s
//! 3D cases), the default thread count, a bundle's intensity rule, and how runtime errors map to exit codes.

use anyhow::anyhow;
use clap::Args;
use medico_bundle::Bundle;
use medico_io::intensity::Intensity;
use medico_runtime::volume::mask_prompts::Projection;
use medico_runtime::volume::propagation::PropagationConfig;
use medico_runtime::RuntimeError;

use crate::Failure;

/// How propagation derives each slice's prompts from its neighbour's mask, and when it stops. Every setting
/// not given is the model's own (its `model.json`, else its architecture's defaults).
#[derive(Args, Debug, Clone)]
pub struct ProjectionArgs {
    /// Prompts derived from each slice's mask for the next: mask, points, box, points_and_mask,
    /// single_point, lite_medsam (upstream LiteMedSAM's: the previous box + 3 px), or a combination such as
    /// box+mask+points.
    #[arg(long)]
    pub projection: Option<Projection>,
    /// Stop when the IoU between consecutive slices' masks falls below this (0: off).
    #[arg(long)]
    pub iou_threshold: Option<f64>,
    /// Stop when the model's predicted IoU of a propagated mask falls below this (0: off).
    #[arg(long)]
    pub min_predicted_iou: Option<f64>,
    /// Stop when a propagated mask grows beyond this multiple of its neighbour's area (0: no limit).
    #[arg(long)]
    pub max_area_growth: Option<f64>,
    /// Stop when a propagated mask grows beyond this multiple of the annotated slice's mask (0: no limit).
    #[arg(long)]
    pub max_growth_from_start: Option<f64>,
    /// Stop when more than this fraction of a propagated mask lies outside its neighbour's box (1: off).
    #[arg(long)]
    pub max_outside_box: Option<f64>,
    /// Walk on through blank (constant) image slices instead of stopping there.
    #[arg(long)]
    pub through_blank_slices: bool,
    /// Grow the derived box by this fraction of its side (< 1) or by this many pixels (>= 1).
    #[arg(long)]
    pub box_extension: Option<f64>,
}

impl ProjectionArgs {
    /// The settings for `bundle`'s model, its own defaults overridden by what was given, over the whole
    /// volume.
    pub fn config(&self, bundle: &Bundle) -> Result<PropagationConfig, Failure> {
        let defaults = PropagationConfig::for_bundle(bundle).map_err(runtime_failure)?;
        let mut stop = defaults.stop;
        if let Some(t) = self.iou_threshold {
            stop.min_iou_with_previous = t;
        }
        if let Some(t) = self.min_predicted_iou {
            stop.min_predicted_iou = t;
        }
        if let Some(g) = self.max_area_growth {
            stop.max_area_growth = (g != 0.0).then_some(g);
        }
        if let Some(g) = self.max_growth_from_start {
            stop.max_growth_from_start = (g != 0.0).then_some(g);
        }
        if let Some(m) = self.max_outside_box {
            stop.max_outside_box = (m < 1.0).then_some(m);
        }
        if self.through_blank_slices {
            stop.stop_on_blank_slice = false;
        }
        stop.validate()
            .map_err(|p| Failure::usage(anyhow!("propagation stop rule: {p} (see --iou-threshold, --min-predicted-iou, --max-area-growth, --max-growth-from-start, --max-outside-box)")))?;
        let box_extension = self.box_extension.unwrap_or(defaults.box_extension);
        if !(box_extension >= 0.0 && box_extension.is_finite()) {
            return Err(Failure::usage(anyhow!("--box-extension must be a non-negative number")));
        }
        Ok(PropagationConfig {
            projection: self.projection.unwrap_or(defaults.projection),
            stop,
            box_extension,
            lower_limit: None,
            upper_limit: None,
        })
    }
}

/// All cores this process may use.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The bundle's default intensity mapping (`model.json`), or a model error naming the file.
pub fn bundle_intensity(bundle: &Bundle) -> Result<Intensity, Failure> {
    bundle.manifest.intensity.parse().map_err(|e| {
        Failure::model(anyhow!(
            "{}: model.json names intensity '{}': {e}",
            bundle.dir.join("model.json").display(),
            bundle.manifest.intensity
        ))
    })
}

/// Maps runtime errors (and the I/O errors they wrap) to exit codes: input files, outputs and prompts 3,
/// model and engine problems 4.
pub fn runtime_failure(e: impl Into<RuntimeError>) -> Failure {
    match e.into() {
        e @ (RuntimeError::Io(_) | RuntimeError::Prompt(_)) => Failure::input(e),
        e => Failure::model(e),
    }
}
