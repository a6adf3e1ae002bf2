//! Simulated 3D interactive segmentation (MedicoSAM's `evaluate_interactive_3d`, micro-sam's
//! `segment_mask_in_volume`): per object, the slice `floor(mean(first, last))` of its extent along the axis is
//! prompted — with the object's tight box, or with one random positive point and one random negative point
//! from the box grown by 10 px minus the object — and the mask is propagated through the volume in both
//! directions. The reference grid-searches the propagation parameters per volume and reports the best Dice
//! (an oracle); here they are fixed and given by the caller.

use medico_models::clicks::tight_box;
use medico_models::prompt::{BoxPrompt, Point};
use rand::seq::IndexedRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::interactive_eval::Start;
use crate::propagation::{PropagationConfig, StopReason};
use crate::volume::Volume;
use crate::volume_session::VolumeSession;
use crate::RuntimeError;

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

/// The object's mask on slice `index` (same layout as the image slices).
fn object_slice(labels: &Volume, label: f32, axis: usize, index: usize) -> Vec<bool> {
    labels.slice(axis, index).0.iter().map(|&v| v == label).collect()
}

/// The first and last slice along `axis` that hold the object, if any.
pub fn object_range(labels: &Volume, label: f32, axis: usize) -> Option<(usize, usize)> {
    let mut present = (0..labels.slices(axis)).filter(|&k| object_slice(labels, label, axis, k).contains(&true));
    let first = present.next()?;
    Some((first, present.next_back().unwrap_or(first)))
}

/// The start prompt on the central slice: the tight box, or a random object pixel (positive) and a random
/// pixel of the box grown by 10 px outside the object (negative).
fn start_prompt(
    mask: &[bool],
    (h, w): (usize, usize),
    start: Start,
    rng: &mut ChaCha8Rng,
) -> Option<(Vec<Point>, Option<BoxPrompt>)> {
    let [x0, y0, x1, y1] = tight_box(mask, w)?;
    match start {
        Start::Box => Some((
            Vec::new(),
            Some(BoxPrompt {
                x0: x0 as f64,
                y0: y0 as f64,
                x1: x1 as f64,
                y1: y1 as f64,
            }),
        )),
        Start::Point => {
            let inside: Vec<usize> = (0..h * w).filter(|&i| mask[i]).collect();
            let (gx0, gy0) = (x0.saturating_sub(NEGATIVE_RING_PX), y0.saturating_sub(NEGATIVE_RING_PX));
            // `tight_box` ends are exclusive (as regionprops' and SAM's boxes); the ring's are the last pixels.
            let (gx1, gy1) = (
                (x1 - 1 + NEGATIVE_RING_PX).min(w - 1),
                (y1 - 1 + NEGATIVE_RING_PX).min(h - 1),
            );
            let ring: Vec<usize> = (gy0..=gy1)
                .flat_map(|y| (gx0..=gx1).map(move |x| y * w + x))
                .filter(|&i| !mask[i])
                .collect();
            let point = |i: usize, positive: bool| Point {
                x: (i % w) as f64,
                y: (i / w) as f64,
                positive,
            };
            let mut points = vec![point(*inside.choose(rng)?, true)];
            points.extend(ring.choose(rng).map(|&i| point(i, false)));
            Some((points, None))
        }
    }
}

/// Evaluates one object (`labels == label`) of the session's volume: prompts `prompt_slice` (default: the
/// middle of the object's extent, `floor(mean(first, last))`) with `start`, propagates with `config`, and
/// compares with the object over the whole volume. `None` when the object is absent or has fewer than
/// [`MIN_CENTRAL_PIXELS`] on the prompted slice. The session's annotations are replaced.
pub fn evaluate_volume_object(
    session: &mut VolumeSession,
    labels: &Volume,
    label: f32,
    prompt_slice: Option<usize>,
    start: Start,
    config: &PropagationConfig,
    seed: u64,
) -> Result<Option<VolumeEvalResult>, RuntimeError> {
    let axis = session.axis();
    if labels.shape() != session.volume().shape() {
        return Err(RuntimeError::Prompt(format!(
            "label volume {:?} and image volume {:?} differ in shape",
            labels.shape(),
            session.volume().shape()
        )));
    }
    let Some(range) = object_range(labels, label, axis) else {
        return Ok(None);
    };
    let central = prompt_slice.unwrap_or((range.0 + range.1) / 2);
    if central >= labels.slices(axis) {
        return Err(RuntimeError::Prompt(format!(
            "slice {central} is outside the volume ({} slices along axis {axis})",
            labels.slices(axis)
        )));
    }
    let hw = labels.slice_hw(axis);
    let central_mask = object_slice(labels, label, axis, central);
    if central_mask.iter().filter(|&&m| m).count() < MIN_CENTRAL_PIXELS {
        return Ok(None);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let Some((points, bbox)) = start_prompt(&central_mask, hw, start, &mut rng) else {
        return Ok(None);
    };
    session.clear_annotations();
    session.annotate(central, &points, bbox.as_ref(), start == Start::Point)?;
    let result = session.propagate(config.clone())?;
    let (mut inter, mut total) = (0usize, 0usize);
    for k in 0..labels.slices(axis) {
        let truth = object_slice(labels, label, axis, k);
        let predicted = result.masks.get(&k);
        for (i, &t) in truth.iter().enumerate() {
            let p = predicted.is_some_and(|m| m[i]);
            inter += usize::from(p && t);
            total += usize::from(p) + usize::from(t);
        }
    }
    let dice = if total == 0 {
        1.0
    } else {
        2.0 * inter as f64 / total as f64
    };
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
