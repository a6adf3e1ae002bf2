//! Simulated interactive segmentation (the MedicoSAM / micro-sam evaluation protocol): per image and class,
//! objects are the connected components of the class mask (8-connected, at least 20 pixels); each object
//! starts from its tight box or from its interior point farthest from the boundary (multimask), then gets
//! correction rounds of one positive click in the missed region and one negative click in the false
//! positives, composed into decoder calls by an [`Interaction`] (the same as `segment` and the server use);
//! after every iteration the Dice between the union of the objects' masks and the class mask is recorded.

use medico_models::clicks::{box_prompt, correction_clicks};
use medico_models::distance::farthest_interior_point;
use medico_models::objects::components;
use medico_models::prompt::BoxPrompt;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::prediction::interaction::{Composition, Interaction};
use crate::prediction::predictor::Predictor;
use crate::RuntimeError;

/// Components smaller than this are not objects (micro-sam's evaluation).
pub const MIN_OBJECT_PIXELS: usize = 20;

/// How the first iteration prompts an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The tight bounding box.
    Box,
    /// The interior point farthest from the boundary (multimask output, best predicted IoU kept).
    Point,
}

/// Protocol settings.
#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    /// Correction rounds after the start prompt (the paper: 7).
    pub rounds: usize,
    /// How the start and correction prompts are composed into decoder calls.
    pub composition: Composition,
    /// Seed of the click sampling.
    pub seed: u64,
}

/// The overlap counts of two binary masks: `|a∩b|` and `|a| + |b|` (summed over slices for a volume Dice).
pub fn overlap(a: &[bool], b: &[bool]) -> (usize, usize) {
    a.iter().zip(b).fold((0, 0), |(inter, total), (&x, &y)| {
        (inter + usize::from(x && y), total + usize::from(x) + usize::from(y))
    })
}

/// Dice from overlap counts (1 when both masks are empty).
pub fn dice_of((inter, total): (usize, usize)) -> f64 {
    if total == 0 {
        1.0
    } else {
        2.0 * inter as f64 / total as f64
    }
}

/// Dice `2|a∩b| / (|a| + |b|)` of binary masks (1 when both are empty).
pub fn dice(a: &[bool], b: &[bool]) -> f64 {
    dice_of(overlap(a, b))
}

/// Runs the protocol on one image (already set on `predictor`) and one class mask; returns the Dice after
/// each iteration (`rounds + 1` values). An image without objects of the class gives `None`.
pub fn evaluate_class(
    predictor: &mut Predictor,
    class_mask: &[bool],
    hw: (usize, usize),
    start: Start,
    options: EvalOptions,
) -> Result<Option<Vec<f64>>, RuntimeError> {
    let objects = components(class_mask, hw, MIN_OBJECT_PIXELS);
    if objects.is_empty() {
        return Ok(None);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let mut per_iteration = vec![vec![false; hw.0 * hw.1]; options.rounds + 1];
    for object in &objects {
        let mut interaction = Interaction::new(options.composition);
        let mut round = match start {
            Start::Box => {
                let bbox: Option<BoxPrompt> = box_prompt(object, hw.1);
                interaction.start(predictor, &[], bbox.as_ref())?
            }
            Start::Point => {
                let point: Vec<_> = farthest_interior_point(object, hw).into_iter().collect();
                interaction.start(predictor, &point, None)?
            }
        };
        for (iteration, union) in per_iteration.iter_mut().enumerate() {
            for (u, &m) in union.iter_mut().zip(&round.mask) {
                *u |= m;
            }
            if iteration < options.rounds {
                let clicks = correction_clicks(object, &round.mask, hw, &mut rng);
                round = interaction.correct(predictor, clicks.as_ref().map_or(&[][..], |c| &c[..]))?;
            }
        }
    }
    Ok(Some(
        per_iteration.iter().map(|union| dice(union, class_mask)).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dice_counts_overlap() {
        assert_eq!(dice(&[true, true, false], &[true, false, false]), 2.0 / 3.0);
        assert_eq!(dice(&[false; 3], &[false; 3]), 1.0);
    }
}
