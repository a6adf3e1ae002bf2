//! How an interactive segmentation is prompted round after round: a start prompt (a box or a click), then
//! corrections (clicks), composed into decoder calls by one [`Composition`] — whether the start box stays,
//! whether the previous low-res logits come back as the mask prompt, single or multimask output in the
//! corrections and how one of several outputs is chosen. `segment`, the server and the evaluation all prompt
//! through [`Interaction`], so what the evaluation measures is what a user gets.

use medico_bundle::Bundle;
use medico_models::clicks::box_prompt;
use medico_models::objects::reached;
use medico_models::prompt::{is_single_click, BoxPrompt, Point};
use ndarray::Array2;

use crate::prediction::predictor::{DecoderUse, Prediction, Predictor};
use crate::volume::mask_prompts::mask_logits;
use crate::{PromptError, RuntimeError};

/// How one of several outputs (the multimask outputs) is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// The highest predicted IoU (SAM's rule; it relies on the IoU head ranking its outputs).
    PredictedIou,
    /// The highest stability score: the IoU of the mask at logit thresholds `+1` and `-1` (SAM's automatic
    /// mask generator's filter), which needs no IoU head.
    Stability,
}

impl std::str::FromStr for Choice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "iou" => Ok(Self::PredictedIou),
            "stability" => Ok(Self::Stability),
            other => Err(format!("unknown output choice '{other}' (iou or stability)")),
        }
    }
}

/// The prompt composition of every round after the start prompt, and how outputs are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Composition {
    /// Keep the start box in the correction rounds (else only the clicks, and the mask when fed back).
    pub keep_box: bool,
    /// Feed the chosen output's low-res logits back as the next round's mask prompt.
    pub feed_mask: bool,
    /// Ask for the three multimask outputs in the correction rounds too (else the single-mask output).
    pub multimask_corrections: bool,
    /// How one of several outputs is chosen.
    pub choice: Choice,
    /// Among several outputs, keep only those that agree with the most clicks (positive inside, negative
    /// outside) before applying `choice`.
    pub respect_clicks: bool,
    /// After a box (or an existing mask) started the object, a correction removes only what it clicked: a
    /// region of the previous mask that the decoder's new mask drops is dropped only when it holds one of the
    /// round's clicks (additions are taken wherever the decoder makes them), so a correction cannot collapse
    /// the mask far from where the user clicked. After a lone click, whose first mask may be any of the
    /// nested structures under it, the decoder's whole new mask is taken.
    pub local_removals: bool,
}

impl Default for Composition {
    /// SAM's: every prompt decoded at once (the box kept, no mask fed back, single-mask output once there is
    /// more than a lone click), a lone click's three outputs ranked by predicted IoU, as `SamPredictor`.
    fn default() -> Self {
        Self {
            keep_box: true,
            feed_mask: false,
            multimask_corrections: false,
            choice: Choice::PredictedIou,
            respect_clicks: false,
            local_removals: false,
        }
    }
}

impl Composition {
    /// The composition a bundle declares (`model.json`'s `interaction`, measured for its model: medico-lite's
    /// feeds the previous mask back and chooses by stability, docs/corrections.md), else SAM's.
    pub fn for_bundle(bundle: &Bundle) -> Self {
        match &bundle.manifest.interaction {
            None => Self::default(),
            Some(declared) => Self {
                keep_box: declared.keep_box,
                feed_mask: declared.feed_mask,
                multimask_corrections: declared.multimask_corrections,
                // Validated when the bundle was opened.
                choice: declared.choose.parse().unwrap_or(Choice::PredictedIou),
                respect_clicks: declared.respect_clicks,
                local_removals: declared.local_removals,
            },
        }
    }
}

/// The stability score of logits: `|{l > threshold + 1}| / |{l > threshold - 1}|` (0 for an empty mask).
pub fn stability_score(logits: &Array2<f32>, threshold: f32) -> f32 {
    let (mut high, mut low) = (0usize, 0usize);
    for &l in logits {
        high += usize::from(l > threshold + 1.0);
        low += usize::from(l > threshold - 1.0);
    }
    if low == 0 {
        0.0
    } else {
        high as f32 / low as f32
    }
}

/// How many clicks a mask's logits agree with (positive clicks inside, negative clicks outside).
fn agreeing_clicks(logits: &Array2<f32>, points: &[Point], threshold: f32) -> usize {
    points
        .iter()
        .filter(|p| pixel_of(p, logits.dim()).is_some_and(|(y, x)| (logits[[y, x]] > threshold) == p.positive))
        .count()
}

/// The `(row, column)` of the pixel a click lies on in an image of `(rows, columns)`, if inside.
fn pixel_of(p: &Point, (h, w): (usize, usize)) -> Option<(usize, usize)> {
    let (x, y) = (p.x.round(), p.y.round());
    (x >= 0.0 && y >= 0.0 && (x as usize) < w && (y as usize) < h).then_some((y as usize, x as usize))
}

impl Composition {
    /// The index of the output this composition keeps from `prediction`, given the clicks so far.
    pub fn choose(&self, prediction: &Prediction, points: &[Point], threshold: f32) -> usize {
        let outputs = prediction.logits.len();
        if outputs <= 1 {
            return 0;
        }
        let mut candidates: Vec<usize> = (0..outputs).collect();
        if self.respect_clicks && !points.is_empty() {
            let agree: Vec<usize> = (0..outputs)
                .map(|k| agreeing_clicks(&prediction.logits[k], points, threshold))
                .collect();
            let most = agree.iter().copied().max().unwrap_or(0);
            candidates.retain(|&k| agree[k] == most);
        }
        let score = |k: usize| match self.choice {
            Choice::PredictedIou => prediction.iou[k],
            Choice::Stability => stability_score(&prediction.logits[k], threshold),
        };
        candidates
            .into_iter()
            .max_by(|&a, &b| score(a).total_cmp(&score(b)).then(b.cmp(&a)))
            .unwrap_or(0)
    }
}

/// One round's result: the chosen output's binary mask and its predicted IoU.
#[derive(Debug, Clone)]
pub struct RoundMask {
    /// The binary mask at the image's size, row-major.
    pub mask: Vec<bool>,
    /// The chosen output's predicted IoU.
    pub predicted_iou: f32,
    /// Which decoder output it is: 0 the single-mask output, 1-3 the multimask outputs.
    pub output: usize,
}

/// The prompts of one object so far and the last round's logits, on an image set on a [`Predictor`].
#[derive(Debug, Clone)]
pub struct Interaction {
    composition: Composition,
    bbox: Option<BoxPrompt>,
    points: Vec<Point>,
    feedback: Option<Array2<f32>>,
    /// The last round's mask and its `(rows, columns)`, kept when the composition's local removals need it.
    shown: Option<(Vec<bool>, (usize, usize))>,
    rounds: usize,
    /// Decoder calls made, all rounds and replays included.
    calls: usize,
}

impl Interaction {
    /// An interaction that has not been prompted yet.
    pub fn new(composition: Composition) -> Self {
        Self {
            composition,
            bbox: None,
            points: Vec::new(),
            feedback: None,
            shown: None,
            rounds: 0,
            calls: 0,
        }
    }

    /// The start round: a box and/or clicks given together (one lone click gets the multimask outputs).
    pub fn start(
        &mut self,
        predictor: &mut Predictor,
        points: &[Point],
        bbox: Option<&BoxPrompt>,
    ) -> Result<RoundMask, RuntimeError> {
        self.begin(points, bbox);
        self.decode(predictor, self.bbox, is_single_click(points, bbox, false))
    }

    /// A correction round: `clicks` are added to the earlier prompts.
    pub fn correct(&mut self, predictor: &mut Predictor, clicks: &[Point]) -> Result<RoundMask, RuntimeError> {
        self.points.extend_from_slice(clicks);
        let bbox = self.bbox.filter(|_| self.composition.keep_box);
        let multimask = self.composition.multimask_corrections;
        let previous = self.shown.take();
        let mut round = self.decode(predictor, bbox, multimask)?;
        let local = self.composition.local_removals && self.bbox.is_some();
        if let (true, Some((before, hw))) = (local, previous) {
            round.mask = removed_only_where_clicked(&before, &round.mask, hw, clicks);
            self.shown = Some((round.mask.clone(), hw));
        }
        Ok(round)
    }

    /// Replays prompts given at once in the order a user gave them: the box (or, without one, the first
    /// click) starts, then every further click is one correction round. Returns the last round's mask.
    pub fn replay(
        &mut self,
        predictor: &mut Predictor,
        points: &[Point],
        bbox: Option<&BoxPrompt>,
    ) -> Result<RoundMask, RuntimeError> {
        let first = usize::from(bbox.is_none()).min(points.len());
        let mut last = self.start(predictor, &points[..first], bbox)?;
        let corrections = &points[first..];
        if self.composition.feed_mask {
            for click in corrections {
                last = self.correct(predictor, std::slice::from_ref(click))?;
            }
        } else if !corrections.is_empty() {
            // Without mask feedback a round depends only on the prompts so far: one decoder call.
            last = self.correct(predictor, corrections)?;
        }
        Ok(last)
    }

    /// The state after an existing mask's round: its tight box is the start box, the mask the previous
    /// round's logits.
    fn resume(&mut self, predictor: &Predictor, mask: &[bool], hw: (usize, usize)) -> Result<(), RuntimeError> {
        let bbox = box_prompt(mask, hw.1).ok_or(PromptError::Empty)?;
        self.begin(&[], Some(&bbox));
        self.feedback = Some(mask_logits(mask, hw, predictor.config().low_res_size()));
        if self.composition.local_removals {
            self.shown = Some((mask.to_vec(), hw));
        }
        self.rounds = 1;
        Ok(())
    }

    /// Continues from an existing mask of the image (a contour drawn elsewhere): its tight box starts and the
    /// mask is the previous round's (fed back when the composition feeds masks back), then each click is one
    /// correction round; returns the last round's mask. `mask` is `(rows, columns)` row-major at the image's
    /// size; an empty mask, or no click to correct with, is refused.
    pub fn correct_mask(
        &mut self,
        predictor: &mut Predictor,
        mask: &[bool],
        hw: (usize, usize),
        clicks: &[Point],
    ) -> Result<RoundMask, RuntimeError> {
        self.resume(predictor, mask, hw)?;
        let mut last = None;
        for click in clicks {
            last = Some(self.correct(predictor, std::slice::from_ref(click))?);
        }
        last.ok_or(PromptError::Empty.into())
    }

    /// All prompts in one decoder call with the multimask outputs, one chosen by the composition's rule
    /// (what `--multimask` asks for: no rounds, no feedback).
    pub fn all_at_once(
        &mut self,
        predictor: &mut Predictor,
        points: &[Point],
        bbox: Option<&BoxPrompt>,
    ) -> Result<RoundMask, RuntimeError> {
        self.begin(points, bbox);
        self.decode(predictor, self.bbox, true)
    }

    /// Forgets earlier rounds: the prompts are these.
    fn begin(&mut self, points: &[Point], bbox: Option<&BoxPrompt>) {
        self.bbox = bbox.copied();
        self.points = points.to_vec();
        self.feedback = None;
        self.shown = None;
        self.rounds = 0;
    }

    /// The decoder calls made so far.
    pub fn decoder_calls(&self) -> usize {
        self.calls
    }

    fn decode(
        &mut self,
        predictor: &mut Predictor,
        bbox: Option<BoxPrompt>,
        multimask: bool,
    ) -> Result<RoundMask, RuntimeError> {
        let mask_input = if self.composition.feed_mask && self.rounds > 0 {
            self.feedback.as_ref()
        } else {
            None
        };
        let prediction = predictor.predict(&self.points, bbox.as_ref(), mask_input, multimask)?;
        let threshold = predictor.config().mask_threshold as f32;
        let chosen = self.composition.choose(&prediction, &self.points, threshold);
        let Prediction {
            mut logits,
            iou,
            mut low_res,
        } = prediction;
        self.feedback = Some(low_res.swap_remove(chosen));
        self.rounds += 1;
        self.calls += 1;
        let logits = logits.swap_remove(chosen);
        let mask = predictor.binary_mask(DecoderUse::Interactive, &logits);
        if self.composition.local_removals {
            self.shown = Some((mask.clone(), logits.dim()));
        }
        Ok(RoundMask {
            mask,
            predicted_iou: iou[chosen],
            output: if multimask { chosen + 1 } else { 0 },
        })
    }
}

/// `after`, except that the regions of `before` it drops stay unless they hold one of `clicks` (masks
/// `(rows, columns)` row-major; a click outside the image is ignored).
fn removed_only_where_clicked(before: &[bool], after: &[bool], (h, w): (usize, usize), clicks: &[Point]) -> Vec<bool> {
    let removed: Vec<bool> = before.iter().zip(after).map(|(&b, &a)| b && !a).collect();
    let seeds: Vec<usize> = clicks
        .iter()
        .filter_map(|p| pixel_of(p, (h, w)).map(|(y, x)| y * w + x))
        .collect();
    let clicked = reached(&removed, (h, w), &seeds);
    after
        .iter()
        .zip(removed.iter().zip(&clicked))
        .map(|(&a, (&r, &c))| a || (r && !c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prediction(logits: Vec<Array2<f32>>, iou: Vec<f32>) -> Prediction {
        let low_res = logits.clone();
        Prediction { logits, iou, low_res }
    }

    #[test]
    fn stability_is_the_overlap_of_the_offset_thresholds() {
        let logits = Array2::from_shape_vec((1, 4), vec![2.0, 0.5, -0.5, -3.0]).unwrap();
        assert_eq!(stability_score(&logits, 0.0), 1.0 / 3.0);
        assert_eq!(stability_score(&Array2::from_elem((2, 2), -5.0), 0.0), 0.0);
    }

    #[test]
    fn choice_follows_the_rule() {
        let crisp = Array2::from_shape_vec((1, 4), vec![5.0, 5.0, -5.0, -5.0]).unwrap();
        let vague = Array2::from_shape_vec((1, 4), vec![0.5, 0.5, 0.5, -0.5]).unwrap();
        let p = prediction(vec![crisp, vague], vec![0.2, 0.9]);
        let by_iou = Composition {
            choice: Choice::PredictedIou,
            ..Composition::default()
        };
        let by_stability = Composition {
            choice: Choice::Stability,
            ..Composition::default()
        };
        assert_eq!(by_iou.choose(&p, &[], 0.0), 1);
        assert_eq!(by_stability.choose(&p, &[], 0.0), 0);
    }

    #[test]
    fn respecting_clicks_drops_outputs_that_contradict_them() {
        let covers = Array2::from_shape_vec((1, 4), vec![5.0, 5.0, 5.0, -5.0]).unwrap();
        let misses = Array2::from_shape_vec((1, 4), vec![5.0, -5.0, -5.0, -5.0]).unwrap();
        let p = prediction(vec![covers, misses], vec![0.1, 0.9]);
        let click = Point {
            x: 2.0,
            y: 0.0,
            positive: true,
        };
        let by_iou = Composition {
            choice: Choice::PredictedIou,
            respect_clicks: false,
            ..Composition::default()
        };
        let respecting = Composition {
            respect_clicks: true,
            ..by_iou
        };
        assert_eq!(respecting.choose(&p, &[click], 0.0), 0);
        assert_eq!(by_iou.choose(&p, &[click], 0.0), 1);
    }

    #[test]
    fn a_correction_removes_only_the_regions_it_clicked() {
        // Before: two blobs (columns 0-1 and 4-5 of a 2 x 6 image). After: the decoder dropped both and
        // added column 3. A negative click on the second blob removes it; the first stays; the addition is kept.
        let row = |cols: &[usize]| -> Vec<bool> { (0..6).map(|c| cols.contains(&c)).collect() };
        let before = [row(&[0, 1, 4, 5]), row(&[0, 1, 4, 5])].concat();
        let after = [row(&[3]), row(&[3])].concat();
        let click = |x: f64, positive: bool| Point { x, y: 1.0, positive };
        let kept = removed_only_where_clicked(&before, &after, (2, 6), &[click(5.0, false)]);
        assert_eq!(kept, [row(&[0, 1, 3]), row(&[0, 1, 3])].concat());
        // A click elsewhere (or outside the image) removes nothing.
        let unclicked = removed_only_where_clicked(&before, &after, (2, 6), &[click(3.0, true), click(9.0, false)]);
        assert_eq!(unclicked, [row(&[0, 1, 3, 4, 5]), row(&[0, 1, 3, 4, 5])].concat());
    }
}
