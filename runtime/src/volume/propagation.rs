//! Propagating a segmentation through a volume (micro-sam's `segment_mask_in_volume`): the mask of one slice
//! becomes the prompt of its neighbour, in both directions from the lowest and highest annotated slices,
//! stopping when the [`StopRule`] rejects a slice (see `medico_models::stop_rule`), at the volume border, or
//! at a stop slice; gaps between annotated slices are filled from both ends.
//!
//! Stop slices generalise micro-sam's `stop_lower`/`stop_upper` flags: `lower_limit = Some(k)` means no slice
//! below `k` is segmented (micro-sam's `stop_lower=True` is `Some(lowest annotated slice)`); when the limit
//! is the lowest annotated slice itself, the gap above it is filled from the other end only, as micro-sam
//! does for a stop slice.

use std::collections::BTreeMap;

use medico_bundle::{Bundle, PropagationDefaults};
pub use medico_models::stop_rule::{area, iou, SliceEvidence, StopCause, StopRule};

use crate::volume::mask_prompts::{prompts_from_mask, BoxExtension, Projection, SlicePrompt, UnknownProjection};
use crate::{PromptError, RuntimeError};

/// A slice's mask and the model's predicted IoU for it.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceMask {
    /// The binary mask (`[h, w]` row-major).
    pub mask: Vec<bool>,
    /// The decoder's predicted IoU of the returned output.
    pub predicted_iou: f32,
}

/// Segments one slice from prompts: the decoder on that slice's embedding, or a stand-in in tests.
pub trait SliceSegmenter {
    /// Height and width of every slice.
    fn slice_hw(&self) -> (usize, usize);
    /// Number of slices.
    fn slices(&self) -> usize;
    /// Side of the low-res mask prompt the model takes.
    fn low_res_size(&self) -> usize;
    /// Whether the image of slice `index` is constant (nothing to segment there).
    fn slice_is_blank(&self, index: usize) -> bool;
    /// The mask for `prompt` on slice `index`.
    fn segment(&mut self, index: usize, prompt: &SlicePrompt) -> Result<SliceMask, RuntimeError>;
}

/// Propagation settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PropagationConfig {
    /// Which prompts are derived from the previous slice's mask.
    pub projection: Projection,
    /// When a walk away from the annotated slices stops (gaps between annotated slices never stop).
    pub stop: StopRule,
    /// Box growth: a fraction of the side (< 1) or pixels (>= 1).
    pub box_extension: BoxExtension,
    /// No slice below this is segmented.
    pub lower_limit: Option<usize>,
    /// No slice above this is segmented.
    pub upper_limit: Option<usize>,
}

impl PropagationConfig {
    /// The defaults for a model of `architecture` (a bundle's `model.json`) that declares none: LiteMedSAM
    /// ignores points, so it walks with the previous slice's box (grown by 5 %) and the stop rule measured for
    /// it on the shared volumes (docs/propagation.md: 0.576 mean 3D Dice over 17 objects from one box, where
    /// upstream LiteMedSAM's rule gives 0.464); every other model the napari annotator's defaults.
    pub fn for_architecture(architecture: &str) -> Self {
        match architecture {
            "lite_medsam" => Self {
                projection: "box".parse().expect("a projection name"),
                stop: LITE_MEDSAM_STOP,
                ..Self::default()
            },
            _ => Self::default(),
        }
    }

    /// The defaults for a bundle: the propagation its `model.json` declares (measured for that model), else
    /// its architecture's. A declared projection medico cannot parse is refused naming the bundle (the
    /// thresholds were checked when the bundle was opened).
    pub fn for_bundle(bundle: &Bundle) -> Result<Self, RuntimeError> {
        let manifest = &bundle.manifest;
        let Some(declared) = &manifest.propagation else {
            return Ok(Self::for_architecture(&manifest.architecture));
        };
        let projection = declared
            .projection
            .parse()
            .map_err(|e: UnknownProjection| RuntimeError::Propagation {
                dir: bundle.dir.clone(),
                problem: e.to_string(),
            })?;
        Ok(Self {
            projection,
            stop: declared.stop,
            box_extension: declared.box_extension,
            lower_limit: None,
            upper_limit: None,
        })
    }
}

impl PropagationConfig {
    /// These settings as a bundle's `model.json` declares them (the stop slices aside): the inverse of
    /// [`PropagationConfig::for_bundle`].
    pub fn declared(&self) -> PropagationDefaults {
        PropagationDefaults {
            projection: self.projection.to_string(),
            box_extension: self.box_extension,
            stop: self.stop,
            decoder_blend: None,
            decoder_overlay: None,
            measured: None,
        }
    }
}

/// The stop rule for LiteMedSAM-family bundles that declare none, chosen with `eval stop-rule` on the shared
/// volumes (docs/propagation.md): the IoU with the previous slice's mask, the model's predicted IoU (a
/// safety net against a confident-looking leak: no loss on the shared objects), blank slices, empty masks.
pub const LITE_MEDSAM_STOP: StopRule = StopRule {
    min_iou_with_previous: 0.5,
    min_predicted_iou: 0.5,
    max_area_growth: None,
    max_growth_from_start: None,
    max_outside_box: None,
    stop_on_blank_slice: true,
    stop_on_empty_mask: true,
};

impl Default for PropagationConfig {
    /// The napari annotator's interactive defaults (`single_point`, IoU with the previous slice 0.5, box
    /// extension 0.05); blank slices and empty masks stop a walk. Not measured here (no SAM weights can be had
    /// offline), so nothing is added that could stop a model early whose IoU head medico has not seen.
    fn default() -> Self {
        Self {
            projection: Projection::default(),
            stop: StopRule::default(),
            box_extension: 0.05,
            lower_limit: None,
            upper_limit: None,
        }
    }
}

/// Why a walk through the volume ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The stop rule rejected this slice (not written).
    Rule {
        /// The slice whose mask was rejected.
        slice: usize,
        /// Which check it failed.
        cause: StopCause,
    },
    /// The volume border or a stop slice was reached.
    Limit,
    /// The previous mask was empty: nothing left to carry.
    EmptyMask,
}

/// The result of a propagation: the masks per slice and what happened.
#[derive(Debug, Clone, Default)]
pub struct Propagation {
    /// Masks of every segmented slice (annotated ones included).
    pub masks: BTreeMap<usize, Vec<bool>>,
    /// What the walk knew about each propagated slice (its mask against the one it was prompted from).
    pub evidence: BTreeMap<usize, SliceEvidence>,
    /// How the walk below the lowest annotated slice ended (`None`: not walked).
    pub lower_stop: Option<StopReason>,
    /// How the walk above the highest annotated slice ended (`None`: not walked).
    pub upper_stop: Option<StopReason>,
}

struct Walker<'a, S: SliceSegmenter> {
    segmenter: &'a mut S,
    config: &'a PropagationConfig,
    result: Propagation,
}

impl<S: SliceSegmenter> Walker<'_, S> {
    /// Segments `index` from `prompt_mask`; `None` when that mask is empty.
    fn segment_from(&mut self, index: usize, prompt_mask: &[bool]) -> Result<Option<SliceMask>, RuntimeError> {
        let hw = self.segmenter.slice_hw();
        let low = self.segmenter.low_res_size();
        let Some(prompt) = prompts_from_mask(prompt_mask, hw, self.config.projection, self.config.box_extension, low)
        else {
            return Ok(None);
        };
        self.segmenter.segment(index, &prompt).map(Some)
    }

    /// Segments `index` from `prompt_mask` and gathers the evidence about the new mask, on a walk that
    /// started from a mask of `start_area` pixels.
    fn segment_with_evidence(
        &mut self,
        index: usize,
        prompt_mask: &[bool],
        start_area: usize,
    ) -> Result<Option<(Vec<bool>, SliceEvidence)>, RuntimeError> {
        let Some(out) = self.segment_from(index, prompt_mask)? else {
            return Ok(None);
        };
        let w = self.segmenter.slice_hw().1;
        let blank = self.segmenter.slice_is_blank(index);
        let evidence = SliceEvidence::of(prompt_mask, &out.mask, w, out.predicted_iou, blank, start_area);
        Ok(Some((out.mask, evidence)))
    }

    /// Walks from `start` (segmented) one slice at a time in `direction` while `inside(z)`; with a rule,
    /// stops before writing a slice the rule rejects.
    fn walk(
        &mut self,
        start: usize,
        direction: i64,
        inside: impl Fn(i64) -> bool,
        rule: Option<&StopRule>,
    ) -> Result<StopReason, RuntimeError> {
        let mut previous = start;
        let start_area = area(&self.result.masks[&start]);
        let mut z = start as i64 + direction;
        while inside(z) {
            let index = z as usize;
            let prompt_mask = self.result.masks[&previous].clone();
            let Some((mask, evidence)) = self.segment_with_evidence(index, &prompt_mask, start_area)? else {
                return Ok(StopReason::EmptyMask);
            };
            if let Some(cause) = rule.and_then(|r| r.verdict(&evidence)) {
                return Ok(StopReason::Rule { slice: index, cause });
            }
            self.result.evidence.insert(index, evidence);
            self.result.masks.insert(index, mask);
            previous = index;
            z += direction;
        }
        Ok(StopReason::Limit)
    }

    /// Segments `index` from the union of the masks of slices `a` and `b` (those that exist: a walk into a
    /// gap can end early on an empty mask).
    fn segment_from_union(&mut self, index: usize, a: usize, b: usize) -> Result<(), RuntimeError> {
        let masks: Vec<&Vec<bool>> = [a, b].iter().filter_map(|z| self.result.masks.get(z)).collect();
        let Some(first) = masks.first() else {
            return Ok(());
        };
        let union: Vec<bool> = (0..first.len()).map(|i| masks.iter().any(|m| m[i])).collect();
        if let Some((mask, evidence)) = self.segment_with_evidence(index, &union, area(&union))? {
            self.result.evidence.insert(index, evidence);
            self.result.masks.insert(index, mask);
        }
        Ok(())
    }

    /// Fills the slices strictly between annotated slices `a < b`.
    fn fill_gap(
        &mut self,
        a: usize,
        b: usize,
        lowest_is_stop: bool,
        highest_is_stop: bool,
    ) -> Result<(), RuntimeError> {
        let diff = b - a;
        let mid = (a + b) / 2;
        if diff <= 1 {
            return Ok(());
        }
        if lowest_is_stop {
            self.walk(b, -1, |z| z > a as i64, None)?;
        } else if highest_is_stop {
            self.walk(a, 1, |z| z < b as i64, None)?;
        } else if diff == 2 {
            self.segment_from_union(a + 1, a, b)?;
        } else {
            // From below up to the middle (exclusive when the gap is even), from above down to it (exclusive).
            let even = diff.is_multiple_of(2);
            self.walk(a, 1, |z| if even { z < mid as i64 } else { z <= mid as i64 }, None)?;
            self.walk(b, -1, |z| z > mid as i64, None)?;
            if even {
                self.segment_from_union(mid, mid - 1, mid + 1)?;
            }
        }
        Ok(())
    }
}

/// Propagates the annotated masks (slice → `[h, w]` mask) through the volume.
pub fn propagate<S: SliceSegmenter>(
    segmenter: &mut S,
    annotated: &BTreeMap<usize, Vec<bool>>,
    config: &PropagationConfig,
) -> Result<Propagation, RuntimeError> {
    propagate_touching(segmenter, annotated, config, None, Propagation::default())
}

/// Like [`propagate`], but with `changed = Some(k)` only the parts that depend on annotated slice `k` are
/// recomputed — the gaps to its annotated neighbours, the walk below it if it is the lowest and above it if
/// it is the highest — and the rest of `previous` is kept.
pub fn propagate_touching<S: SliceSegmenter>(
    segmenter: &mut S,
    annotated: &BTreeMap<usize, Vec<bool>>,
    config: &PropagationConfig,
    changed: Option<usize>,
    previous: Propagation,
) -> Result<Propagation, RuntimeError> {
    let slices = segmenter.slices();
    let (Some(&z0), Some(&z1)) = (annotated.keys().next(), annotated.keys().next_back()) else {
        return Err(PromptError::NoAnnotation.into());
    };
    if z1 >= slices {
        return Err(PromptError::AnnotationOutside { index: z1, slices }.into());
    }
    let lower = config.lower_limit.unwrap_or(0);
    let upper = config.upper_limit.unwrap_or(slices - 1).min(slices - 1);
    let touches = |z: usize| changed.is_none_or(|k| k == z);
    let mut result = match changed {
        None => Propagation::default(),
        Some(k) => {
            // Drop everything the changed slice can influence: up to its annotated neighbours, or the border.
            let below = annotated.range(..k).next_back().map_or(0, |(&z, _)| z + 1);
            let above = annotated.range(k + 1..).next().map_or(slices, |(&z, _)| z);
            let mut kept = previous;
            kept.masks.retain(|&z, _| !(below..above).contains(&z));
            kept.evidence.retain(|&z, _| !(below..above).contains(&z));
            kept
        }
    };
    result.masks.extend(annotated.iter().map(|(&z, m)| (z, m.clone())));
    let mut walker = Walker {
        segmenter,
        config,
        result,
    };
    if touches(z0) {
        walker.result.lower_stop = None;
        if z0 > lower {
            let stop = walker.walk(z0, -1, |z| z >= lower as i64, Some(&config.stop))?;
            walker.result.lower_stop = Some(stop);
        }
    }
    if touches(z1) {
        walker.result.upper_stop = None;
        if z1 < upper {
            let stop = walker.walk(z1, 1, |z| z <= upper as i64, Some(&config.stop))?;
            walker.result.upper_stop = Some(stop);
        }
    }
    let keys: Vec<usize> = annotated.keys().copied().collect();
    for pair in keys.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if !(touches(a) || touches(b)) {
            continue;
        }
        let lowest_is_stop = a == z0 && config.lower_limit == Some(z0);
        let highest_is_stop = b == z1 && config.upper_limit == Some(z1);
        walker.fill_gap(a, b, lowest_is_stop, highest_is_stop)?;
    }
    Ok(walker.result)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in decoder on a synthetic volume: a disc whose radius follows `radii[z]` (0: no object).
    /// It returns the slice's true object when the prompt touches it (a positive point inside, a box
    /// overlapping it, or mask logits over it), else nothing, and records every call.
    struct Disc {
        radii: Vec<f64>,
        calls: Vec<usize>,
        prompts: Vec<(usize, SlicePrompt)>,
    }

    const SIDE: usize = 32;

    fn disc(radius: f64) -> Vec<bool> {
        (0..SIDE * SIDE)
            .map(|i| {
                let (y, x) = ((i / SIDE) as f64 - 16.0, (i % SIDE) as f64 - 16.0);
                radius > 0.0 && x.hypot(y) <= radius
            })
            .collect()
    }

    impl Disc {
        fn new(radii: Vec<f64>) -> Self {
            Self {
                radii,
                calls: Vec::new(),
                prompts: Vec::new(),
            }
        }
    }

    impl SliceSegmenter for Disc {
        fn slice_hw(&self) -> (usize, usize) {
            (SIDE, SIDE)
        }
        fn slices(&self) -> usize {
            self.radii.len()
        }
        fn low_res_size(&self) -> usize {
            SIDE
        }
        fn slice_is_blank(&self, _index: usize) -> bool {
            false
        }
        fn segment(&mut self, index: usize, prompt: &SlicePrompt) -> Result<SliceMask, RuntimeError> {
            self.calls.push(index);
            self.prompts.push((index, prompt.clone()));
            let truth = disc(self.radii[index]);
            let at = |x: f64, y: f64| truth[(y as usize).min(SIDE - 1) * SIDE + (x as usize).min(SIDE - 1)];
            let touched = prompt.points.iter().any(|p| p.positive && at(p.x, p.y))
                || prompt.bbox.as_ref().is_some_and(|b| {
                    (b.y0 as usize..b.y1 as usize).any(|y| (b.x0 as usize..b.x1 as usize).any(|x| truth[y * SIDE + x]))
                })
                || prompt
                    .mask_logits
                    .as_ref()
                    .is_some_and(|m| m.indexed_iter().any(|((y, x), &v)| v > 0.0 && truth[y * SIDE + x]));
            let mask = if touched { truth } else { vec![false; SIDE * SIDE] };
            Ok(SliceMask {
                mask,
                predicted_iou: 0.9,
            })
        }
    }

    fn written(p: &Propagation) -> Vec<usize> {
        p.masks.keys().copied().collect()
    }

    fn annotate(radii: &[f64], slices: &[usize]) -> BTreeMap<usize, Vec<bool>> {
        slices.iter().map(|&z| (z, disc(radii[z]))).collect()
    }

    /// Object on slices 3..=12 of 16, radius peaking at the centre.
    fn object() -> Vec<f64> {
        (0..16)
            .map(|z| {
                if (3..=12).contains(&z) {
                    10.0 - (z as f64 - 7.5).abs()
                } else {
                    0.0
                }
            })
            .collect()
    }

    #[test]
    fn every_projection_follows_the_object_both_ways_and_stops_past_its_ends() {
        for mode in ["mask", "points", "box", "points_and_mask", "single_point", "box+points"] {
            let radii = object();
            let mut segmenter = Disc::new(radii.clone());
            let config = PropagationConfig {
                projection: mode.parse().unwrap(),
                ..PropagationConfig::default()
            };
            let result = propagate(&mut segmenter, &annotate(&radii, &[7]), &config).unwrap();
            assert_eq!(written(&result), (3..=12).collect::<Vec<_>>(), "{mode}");
            let stop = |slice| {
                Some(StopReason::Rule {
                    slice,
                    cause: StopCause::EmptyMask,
                })
            };
            assert_eq!(result.lower_stop, stop(2), "{mode}");
            assert_eq!(result.upper_stop, stop(13), "{mode}");
            // The prompts carry what the mode says.
            let projection: Projection = mode.parse().unwrap();
            for (_, prompt) in &segmenter.prompts {
                assert_eq!(prompt.bbox.is_some(), projection.use_box, "{mode}");
                assert_eq!(prompt.mask_logits.is_some(), projection.use_mask, "{mode}");
                assert_eq!(!prompt.points.is_empty(), projection.use_points, "{mode}");
                if projection.single_point {
                    assert_eq!(prompt.points.len(), 1);
                    assert!(prompt.points[0].positive);
                }
            }
        }
    }

    #[test]
    fn volume_borders_and_stop_slices_end_the_walk() {
        let radii = vec![5.0; 10];
        let mut segmenter = Disc::new(radii.clone());
        let result = propagate(&mut segmenter, &annotate(&radii, &[4]), &PropagationConfig::default()).unwrap();
        assert_eq!(written(&result), (0..10).collect::<Vec<_>>());
        assert_eq!(
            (result.lower_stop, result.upper_stop),
            (Some(StopReason::Limit), Some(StopReason::Limit))
        );

        let config = PropagationConfig {
            lower_limit: Some(2),
            upper_limit: Some(6),
            ..PropagationConfig::default()
        };
        let mut segmenter = Disc::new(radii.clone());
        let result = propagate(&mut segmenter, &annotate(&radii, &[4]), &config).unwrap();
        assert_eq!(written(&result), vec![2, 3, 4, 5, 6]);
        assert!(!segmenter.calls.contains(&1) && !segmenter.calls.contains(&7));

        // A stop at the annotated slice itself: nothing below it.
        let config = PropagationConfig {
            lower_limit: Some(4),
            ..PropagationConfig::default()
        };
        let mut segmenter = Disc::new(radii.clone());
        let result = propagate(&mut segmenter, &annotate(&radii, &[4]), &config).unwrap();
        assert_eq!(written(&result), (4..10).collect::<Vec<_>>());
        assert_eq!(result.lower_stop, None);
    }

    #[test]
    fn gaps_between_annotated_slices_are_filled_as_micro_sam_does() {
        let radii = vec![6.0; 30];
        let config = PropagationConfig {
            lower_limit: Some(0),
            upper_limit: Some(29),
            ..PropagationConfig::default()
        };
        // Gap 1 (adjacent): nothing. Gap 2: the middle slice from the union. Gap 5 (odd): 2 from below, 2
        // from above. Gap 6 (even): 2 from each side, the middle from the union of its neighbours.
        let annotated = [10, 11, 13, 18, 24];
        let mut segmenter = Disc::new(radii.clone());
        let result = propagate(&mut segmenter, &annotate(&radii, &annotated), &config).unwrap();
        assert_eq!(written(&result), (0..30).collect::<Vec<_>>());
        let gap_calls: Vec<usize> = segmenter
            .calls
            .iter()
            .copied()
            .filter(|z| (11..24).contains(z))
            .collect();
        assert_eq!(gap_calls, vec![12, 14, 15, 17, 16, 19, 20, 23, 22, 21]);

        // Lowest annotated slice is a stop slice: its gap is filled from above only.
        let config = PropagationConfig {
            lower_limit: Some(3),
            ..PropagationConfig::default()
        };
        let mut segmenter = Disc::new(radii.clone());
        let result = propagate(&mut segmenter, &annotate(&radii, &[3, 8]), &config).unwrap();
        assert_eq!(written(&result).first(), Some(&3));
        let gap_calls: Vec<usize> = segmenter.calls.iter().copied().filter(|z| (4..8).contains(z)).collect();
        assert_eq!(gap_calls, vec![7, 6, 5, 4]);
    }

    #[test]
    fn a_correction_recomputes_only_the_slices_it_influences() {
        let radii = vec![6.0; 20];
        let config = PropagationConfig::default();
        let mut annotated = annotate(&radii, &[5, 10, 15]);
        let mut segmenter = Disc::new(radii.clone());
        let first = propagate(&mut segmenter, &annotated, &config).unwrap();
        assert_eq!(written(&first), (0..20).collect::<Vec<_>>());
        // Re-annotating slice 10 touches the gaps 6..=9 and 11..=14 only.
        annotated.insert(10, disc(5.0));
        let mut segmenter = Disc::new(radii.clone());
        let second = propagate_touching(&mut segmenter, &annotated, &config, Some(10), first.clone()).unwrap();
        let mut calls = segmenter.calls.clone();
        calls.sort_unstable();
        assert_eq!(calls, vec![6, 7, 8, 9, 11, 12, 13, 14]);
        assert_eq!(written(&second), (0..20).collect::<Vec<_>>());
        assert_eq!(second.masks[&10], disc(5.0));
        assert_eq!(second.masks[&2], first.masks[&2], "outside the influence: kept");
        assert_eq!(second.lower_stop, first.lower_stop);
        // A new lowest annotation re-walks below it and fills the gap up to the next one.
        annotated.insert(2, disc(6.0));
        let mut segmenter = Disc::new(radii.clone());
        propagate_touching(&mut segmenter, &annotated, &config, Some(2), second).unwrap();
        let mut calls = segmenter.calls.clone();
        calls.sort_unstable();
        assert_eq!(calls, vec![0, 1, 3, 4]);
    }

    #[test]
    fn an_empty_slice_inside_an_even_gap_ends_that_walk_safely() {
        // Gap 2..6 (even) with an empty annotation at 2: nothing is carried up from it (slice 3 is never
        // written); from 6 the walk writes the empty slice 5; the middle slice 4 then has only an empty
        // neighbour mask to be prompted from and stays unsegmented.
        let mut radii = vec![6.0; 9];
        radii[2] = 0.0;
        radii[5] = 0.0;
        let config = PropagationConfig {
            lower_limit: Some(0),
            upper_limit: Some(8),
            ..PropagationConfig::default()
        };
        let mut segmenter = Disc::new(radii.clone());
        let result = propagate(&mut segmenter, &annotate(&radii, &[2, 6]), &config).unwrap();
        assert!(!result.masks.contains_key(&3) && !result.masks.contains_key(&4));
        assert!(result.masks[&5].iter().all(|&m| !m));
    }

    #[test]
    fn gaps_do_not_stop_on_iou() {
        // The object vanishes on slice 5, between the annotated slices 2 and 9: outside the gap the walks
        // go to the borders; inside it they carry on past the empty slice (no IoU stop in gaps).
        let mut radii = vec![6.0; 12];
        radii[5] = 0.0;
        let mut segmenter = Disc::new(radii.clone());
        let result = propagate(
            &mut segmenter,
            &annotate(&radii, &[2, 9]),
            &PropagationConfig::default(),
        )
        .unwrap();
        assert_eq!(written(&result), (0..12).collect::<Vec<_>>());
        assert!(result.masks[&5].iter().all(|&m| !m));
        assert!(result.masks[&4].iter().any(|&m| m) && result.masks[&6].iter().any(|&m| m));
    }

    /// A model never taught to return nothing, on a tall volume: on the object's slices it returns the
    /// object with a confident score; past its ends it returns the prompt's box grown by one pixel (a leak
    /// that grows slice by slice) with a low predicted IoU. Slices outside `blank` hold an image; those
    /// inside are constant.
    struct Leaky {
        object: std::ops::RangeInclusive<usize>,
        blank: std::ops::Range<usize>,
        slices: usize,
        calls: usize,
    }

    impl SliceSegmenter for Leaky {
        fn slice_hw(&self) -> (usize, usize) {
            (SIDE, SIDE)
        }
        fn slices(&self) -> usize {
            self.slices
        }
        fn low_res_size(&self) -> usize {
            SIDE
        }
        fn slice_is_blank(&self, index: usize) -> bool {
            self.blank.contains(&index)
        }
        fn segment(&mut self, index: usize, prompt: &SlicePrompt) -> Result<SliceMask, RuntimeError> {
            self.calls += 1;
            if self.object.contains(&index) {
                return Ok(SliceMask {
                    mask: disc(6.0),
                    predicted_iou: 0.93,
                });
            }
            let b = prompt.bbox.as_ref().expect("box projections only");
            let grown = |v: f64, d: f64| (v + d).clamp(0.0, SIDE as f64) as usize;
            let (x0, y0, x1, y1) = (grown(b.x0, -1.0), grown(b.y0, -1.0), grown(b.x1, 1.0), grown(b.y1, 1.0));
            let mask = (0..SIDE * SIDE)
                .map(|i| (x0..x1).contains(&(i % SIDE)) && (y0..y1).contains(&(i / SIDE)))
                .collect();
            Ok(SliceMask {
                mask,
                predicted_iou: 0.35,
            })
        }
    }

    const TALL: usize = 20_000;

    #[test]
    fn a_leaking_walk_through_20000_slices_is_bounded_by_the_rule_not_the_volume() {
        let object = 9_990..=10_010;
        // LiteMedSAM's family default (the leak's low predicted IoU), and a rule of the kind medico-lite
        // declares (the leak's growth), as each shipped model walks.
        let growth_limited = StopRule {
            min_iou_with_previous: 0.7,
            max_area_growth: Some(1.2),
            max_growth_from_start: Some(2.0),
            ..StopRule::NEVER
        }
        .with_blank_slice_stop();
        for (family, config) in [
            ("lite_medsam", PropagationConfig::for_architecture("lite_medsam")),
            (
                "growth-limited",
                PropagationConfig {
                    stop: growth_limited,
                    ..PropagationConfig::for_architecture("lite_medsam")
                },
            ),
        ] {
            let mut leaky = Leaky {
                object: object.clone(),
                blank: 0..0,
                slices: TALL,
                calls: 0,
            };
            let annotated = BTreeMap::from([(10_000, disc(6.0))]);
            let result = propagate(&mut leaky, &annotated, &config).unwrap();
            let slices = written(&result);
            assert_eq!(
                (slices.len(), slices.first(), slices.last()),
                (21, Some(object.start()), Some(object.end())),
                "{family}"
            );
            // The object's other 20 slices, and one rejected slice past each end.
            assert_eq!(leaky.calls, 22, "{family}");
            assert!(
                matches!(result.lower_stop, Some(StopReason::Rule { slice: 9_989, .. })),
                "{family}: {:?}",
                result.lower_stop
            );
            assert!(
                matches!(result.upper_stop, Some(StopReason::Rule { slice: 10_011, .. })),
                "{family}: {:?}",
                result.upper_stop
            );
        }
        // The same volume with upstream LiteMedSAM's rule (stop only on an empty mask) walks it all.
        let mut leaky = Leaky {
            object: object.clone(),
            blank: 0..0,
            slices: TALL,
            calls: 0,
        };
        let upstream = PropagationConfig {
            stop: StopRule::UPSTREAM_LITE_MEDSAM,
            ..PropagationConfig::for_architecture("lite_medsam")
        };
        let result = propagate(&mut leaky, &BTreeMap::from([(10_000, disc(6.0))]), &upstream).unwrap();
        assert_eq!(result.masks.len(), TALL);
    }

    #[test]
    fn blank_image_slices_end_a_walk() {
        // A rule that trusts every mask still stops where the image is constant (outside the field of view).
        let mut leaky = Leaky {
            object: 0..=TALL,
            blank: 40..TALL,
            slices: TALL,
            calls: 0,
        };
        let config = PropagationConfig {
            projection: Projection::LITE_MEDSAM,
            stop: StopRule::NEVER.with_blank_slice_stop(),
            ..PropagationConfig::default()
        };
        let result = propagate(&mut leaky, &BTreeMap::from([(20, disc(6.0))]), &config).unwrap();
        assert_eq!(written(&result), (0..40).collect::<Vec<_>>());
        assert_eq!(
            result.upper_stop,
            Some(StopReason::Rule {
                slice: 40,
                cause: StopCause::BlankSlice
            })
        );
        assert_eq!(result.lower_stop, Some(StopReason::Limit));
    }
}
