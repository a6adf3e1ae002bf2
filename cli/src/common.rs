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

/// How propagation derives each slice's prompts from its neighbour's mask, and when it stops.
#[derive(Args, Debug, Clone)]
pub struct ProjectionArgs {
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
}

impl ProjectionArgs {
    /// The settings for `bundle`'s model, defaults filled in, over the whole volume.
    pub fn config(&self, bundle: &Bundle) -> Result<PropagationConfig, Failure> {
        let defaults = PropagationConfig::for_architecture(&bundle.manifest.architecture);
        let projection = self.projection.unwrap_or(defaults.projection);
        let iou_threshold = self.iou_threshold.unwrap_or(if projection == Projection::LITE_MEDSAM {
            0.0
        } else {
            PropagationConfig::default().iou_threshold
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
