//! Simulated 3D interactive segmentation (MedicoSAM's `evaluate_interactive_3d`, micro-sam's
//! `segment_mask_in_volume`): per object, the slice `floor(mean(first, last))` of its extent along the axis is
//! prompted — with the object's tight box, or with one random positive point and one random negative point
//! from the box grown by 10 px minus the object — and the mask is propagated through the volume in both
//! directions. The reference grid-searches the propagation parameters per volume and reports the best Dice
//! (an oracle); here they are fixed and given by the caller.

use medico_models::clicks::{box_prompt, negative_near, start_point};
use medico_models::prompt::{BoxPrompt, Point};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::evaluation::interactive::{dice_of, overlap, Start};
use crate::volume::propagation::{PropagationConfig, StopReason};
use crate::volume::session::VolumeSession;
use crate::{PromptError, RuntimeError};
use medico_io::volume::Volume;

/// Objects with fewer pixels than this on their central slice are skipped (micro-sam).
pub const MIN_CENTRAL_PIXELS: usize = 10;

/// Growth of the box from which the negative start point is drawn (micro-sam: 10 px).
const NEGATIVE_RING_PX: usize = 10;

/// The outcome for one object.
#[derive(Debug, Clone)]
pub struct VolumeEvalResult {
    /// The prompted slice.
    pub central_slice: usize,
    /// Dice of the propagated masks against the object over the whole volume.
    pub dice: f64,
    /// Slices that received a mask.
    pub slices_segmented: usize,
    /// Extent of the object along the axis (first, last).
    pub object_range: (usize, usize),
    /// How the walks below and above the prompted slice ended.
    pub stops: (Option<StopReason>, Option<StopReason>),
}

/// The object's mask on every slice along `axis` (same layout as the image slices).
fn object_slices(labels: &Volume, label: f32, axis: usize) -> Vec<Vec<bool>> {
    (0..labels.slices(axis))
        .map(|k| labels.slice(axis, k).0.iter().map(|&v| v == label).collect())
        .collect()
}

/// The first and last slice that hold the object, if any.
fn object_range(slices: &[Vec<bool>]) -> Option<(usize, usize)> {
    let mut present = slices
        .iter()
        .enumerate()
        .filter(|(_, s)| s.contains(&true))
        .map(|(k, _)| k);
    let first = present.next()?;
    Some((first, present.next_back().unwrap_or(first)))
}

/// The start prompt on the central slice: the tight box, or a random object pixel (positive) and a random
/// pixel of the box grown by 10 px outside the object (negative).
fn start_prompt(
    mask: &[bool],
    hw: (usize, usize),
    start: Start,
    rng: &mut ChaCha8Rng,
) -> Option<(Vec<Point>, Option<BoxPrompt>)> {
    match start {
        Start::Box => Some((Vec::new(), Some(box_prompt(mask, hw.1)?))),
        Start::Point => {
            let mut points = vec![start_point(mask, hw, rng)?];
            points.extend(negative_near(mask, hw, NEGATIVE_RING_PX, rng));
            Some((points, None))
        }
    }
}

/// How one object is prompted in a 3D evaluation.
#[derive(Debug, Clone, Copy)]
pub struct VolumePrompt {
    /// The prompted slice; default: the middle of the object's extent, `floor(mean(first, last))`.
    pub slice: Option<usize>,
    /// Box or point start.
    pub start: Start,
    /// Seed of the random point of a point start.
    pub seed: u64,
    /// Keep the walk within the object's extent along the axis, as a 3D box prompt gives it (upstream
    /// LiteMedSAM's protocol, whose walk stops only on an empty mask).
    pub within_object_extent: bool,
}

/// Evaluates one object (`labels == label`) of the session's volume: prompts it as `prompt` says,
/// propagates with `config`, and compares with the object over the whole volume. `None` when the object is
/// absent or has fewer than [`MIN_CENTRAL_PIXELS`] on the prompted slice. The session's annotations are
/// replaced.
pub fn evaluate_volume_object(
    session: &mut VolumeSession,
    labels: &Volume,
    label: f32,
    prompt: VolumePrompt,
    config: &PropagationConfig,
) -> Result<Option<VolumeEvalResult>, RuntimeError> {
    let (prompt_slice, start, seed) = (prompt.slice, prompt.start, prompt.seed);
    let axis = session.axis();
    if labels.shape() != session.volume().shape() {
        return Err(PromptError::LabelShape {
            labels: labels.shape().to_vec(),
            image: session.volume().shape().to_vec(),
        }
        .into());
    }
    let truth = object_slices(labels, label, axis);
    let Some(range) = object_range(&truth) else {
        return Ok(None);
    };
    let central = prompt_slice.unwrap_or((range.0 + range.1) / 2);
    if central >= truth.len() {
        return Err(PromptError::SliceOutside {
            index: central,
            slices: truth.len(),
            axis,
        }
        .into());
    }
    let hw = labels.slice_hw(axis);
    let central_mask = &truth[central];
    if central_mask.iter().filter(|&&m| m).count() < MIN_CENTRAL_PIXELS {
        return Ok(None);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let Some((points, bbox)) = start_prompt(central_mask, hw, start, &mut rng) else {
        return Ok(None);
    };
    session.clear_annotations();
    session.annotate(central, &points, bbox.as_ref(), start == Start::Point)?;
    let mut config = config.clone();
    if prompt.within_object_extent {
        config.lower_limit = Some(range.0);
        config.upper_limit = Some(range.1);
    }
    let result = session.propagate(config)?;
    let empty = vec![false; hw.0 * hw.1];
    let counts = truth.iter().enumerate().fold((0, 0), |(inter, total), (k, object)| {
        let (i, t) = overlap(result.masks.get(&k).unwrap_or(&empty), object);
        (inter + i, total + t)
    });
    let dice = dice_of(counts);
    Ok(Some(VolumeEvalResult {
        central_slice: central,
        dice,
        slices_segmented: result.masks.len(),
        object_range: range,
        stops: (result.lower_stop, result.upper_stop),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_start_has_a_positive_inside_and_a_negative_in_the_grown_box() {
        let (h, w) = (40, 40);
        let mask: Vec<bool> = (0..h * w)
            .map(|i| (15..25).contains(&(i / w)) && (12..20).contains(&(i % w)))
            .collect();
        for seed in 0..50 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let (points, bbox) = start_prompt(&mask, (h, w), Start::Point, &mut rng).unwrap();
            assert!(bbox.is_none());
            assert_eq!(points.len(), 2);
            let index = |p: &Point| p.y as usize * w + p.x as usize;
            assert!(points[0].positive && mask[index(&points[0])]);
            let negative = &points[1];
            assert!(!negative.positive && !mask[index(negative)]);
            assert!((2.0..=29.0).contains(&negative.x) && (5.0..=34.0).contains(&negative.y));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let (points, bbox) = start_prompt(&mask, (h, w), Start::Box, &mut rng).unwrap();
        assert!(points.is_empty());
        let b = bbox.unwrap();
        assert_eq!(
            (b.x0, b.y0, b.x1, b.y1),
            (12.0, 15.0, 20.0, 25.0),
            "exclusive ends, as SAM's boxes"
        );
    }
}
