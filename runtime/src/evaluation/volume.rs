//! Simulated 3D interactive segmentation (MedicoSAM's `evaluate_interactive_3d`, micro-sam's
//! `segment_mask_in_volume`): per object, the slice `floor(mean(first, last))` of its extent along the axis is
//! prompted — with the object's tight box, or with one random positive point and one random negative point
//! from the box grown by 10 px minus the object — and the mask is propagated through the volume in both
//! directions. The reference grid-searches the propagation parameters per volume and reports the best Dice
//! (an oracle); here one walk per object is traced to the volume's borders ([`VolumeTrace`]) and scored under
//! a stop rule fixed for every volume, with or without the object's extent.

use medico_models::clicks::{box_prompt, negative_near, start_point};
use medico_models::prompt::{BoxPrompt, Point};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::evaluation::interactive::{dice_of, overlap, Start};
use crate::volume::propagation::{area, PropagationConfig, SliceEvidence, StopRule};
use crate::volume::session::VolumeSession;
use crate::{PromptError, RuntimeError};
use medico_io::volume::Volume;

/// Objects with fewer pixels than this on their central slice are skipped (micro-sam).
pub const MIN_CENTRAL_PIXELS: usize = 10;

/// Growth of the box from which the negative start point is drawn (micro-sam: 10 px).
const NEGATIVE_RING_PX: usize = 10;

/// One propagated slice of a traced walk: what the walk knew, and how the mask compares with the truth.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TraceStep {
    /// The slice.
    pub slice: usize,
    /// The evidence the stop rule sees.
    pub evidence: SliceEvidence,
    /// Pixels of the mask that are object pixels.
    pub intersection: usize,
}

/// A walk from one prompted slice to the volume's borders that nothing stopped but an empty mask, with the
/// truth on every slice: the result of any stop rule, with or without the object's extent, follows from it
/// without running the model again (a rule only cuts a walk short; the masks before the cut are the same).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeTrace {
    /// The prompted slice.
    pub central_slice: usize,
    /// Extent of the object along the axis (first, last).
    pub object_range: (usize, usize),
    /// Object voxels in the whole volume.
    pub object_voxels: usize,
    /// The prompted slice's mask: (object pixels in it, its pixels).
    pub central: (usize, usize),
    /// The walk below the prompted slice, nearest first.
    pub below: Vec<TraceStep>,
    /// The walk above the prompted slice, nearest first.
    pub above: Vec<TraceStep>,
}

/// The outcome of one object under a stop rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VolumeScore {
    /// Dice of the propagated masks against the object over the whole volume.
    pub dice: f64,
    /// Slices that received a mask (the prompted one included).
    pub slices_segmented: usize,
    /// First and last slice segmented.
    pub segmented_range: (usize, usize),
}

impl VolumeTrace {
    /// What the walk gives under `rule`, kept within the object's extent when `within_extent` (as a 3D box
    /// prompt gives it).
    pub fn score(&self, rule: &StopRule, within_extent: bool) -> VolumeScore {
        let (mut intersection, mut mask_voxels) = self.central;
        let mut slices = 1;
        let mut range = (self.central_slice, self.central_slice);
        let (lo, hi) = self.object_range;
        for walk in [&self.below, &self.above] {
            for step in walk {
                let outside = step.slice < lo || step.slice > hi;
                if (within_extent && outside) || rule.verdict(&step.evidence).is_some() {
                    break;
                }
                intersection += step.intersection;
                mask_voxels += step.evidence.area;
                slices += 1;
                range = (range.0.min(step.slice), range.1.max(step.slice));
            }
        }
        VolumeScore {
            dice: dice_of((intersection, mask_voxels + self.object_voxels)),
            slices_segmented: slices,
            segmented_range: range,
        }
    }
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
}

/// Traces one object (`labels == label`) of the session's volume: prompts it as `prompt` says, then walks
/// with `config`'s projection to both borders, stopping only where an empty mask leaves nothing to carry
/// (`config`'s stop rule and limits are not used: score the trace with [`VolumeTrace::score`]). `None` when
/// the object is absent or has fewer than [`MIN_CENTRAL_PIXELS`] on the prompted slice. The session's
/// annotations are replaced.
pub fn trace_volume_object(
    session: &mut VolumeSession,
    labels: &Volume,
    label: f32,
    prompt: VolumePrompt,
    config: &PropagationConfig,
) -> Result<Option<VolumeTrace>, RuntimeError> {
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
    let central = prompt.slice.unwrap_or((range.0 + range.1) / 2);
    if central >= truth.len() {
        return Err(PromptError::SliceOutside {
            index: central,
            slices: truth.len(),
            axis,
        }
        .into());
    }
    let hw = labels.slice_hw(axis);
    let central_truth = &truth[central];
    if area(central_truth) < MIN_CENTRAL_PIXELS {
        return Ok(None);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(prompt.seed);
    let Some((points, bbox)) = start_prompt(central_truth, hw, prompt.start, &mut rng) else {
        return Ok(None);
    };
    session.clear_annotations();
    let central_mask = session.annotate(central, &points, bbox.as_ref(), false)?;
    let config = PropagationConfig {
        stop: StopRule::NEVER,
        lower_limit: None,
        upper_limit: None,
        ..config.clone()
    };
    let result = session.propagate(config)?;
    let step = |k: usize| {
        let evidence = result.evidence[&k];
        let (intersection, _) = overlap(&result.masks[&k], &truth[k]);
        TraceStep {
            slice: k,
            evidence,
            intersection,
        }
    };
    let below = result.masks.range(..central).rev().map(|(&k, _)| step(k)).collect();
    let above = result.masks.range(central + 1..).map(|(&k, _)| step(k)).collect();
    let (central_intersection, _) = overlap(&central_mask, central_truth);
    Ok(Some(VolumeTrace {
        central_slice: central,
        object_range: range,
        object_voxels: truth.iter().map(|s| area(s)).sum(),
        central: (central_intersection, area(&central_mask)),
        below,
        above,
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
