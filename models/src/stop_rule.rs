//! When a walk through the volume stops: the evidence the runtime has about each newly segmented slice (the
//! model's predicted IoU, the overlap and area change with the slice it was prompted from, how much of the
//! mask left that slice's box, whether the image slice is blank) and the rule that turns it into a verdict.
//!
//! A walk that never stops is the failure a user meets first: a model asked for the object on a slice past its
//! end still answers with something, and the next slice is prompted from that. The rule is chosen per model
//! (a bundle may declare its own, measured on the shared volumes; see `PropagationConfig::for_bundle`).

use std::fmt;

use crate::clicks::tight_box;
use serde::{Deserialize, Serialize};

/// What the walk knows about a slice it has just segmented from its neighbour's mask.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SliceEvidence {
    /// The model's predicted IoU of the mask (the decoder's score of the returned output).
    pub predicted_iou: f32,
    /// Foreground pixels of the new mask.
    pub area: usize,
    /// Foreground pixels of the mask it was prompted from.
    pub previous_area: usize,
    /// Foreground pixels of the annotated slice's mask the walk started from.
    pub start_area: usize,
    /// IoU of the new mask with the mask it was prompted from.
    pub iou_with_previous: f64,
    /// Fraction of the new mask outside the prompting mask's tight box grown by [`BOX_MARGIN_PX`] on every
    /// side (0 when the new mask is empty).
    pub outside_previous_box: f64,
    /// The image slice is constant (padding or outside the field of view: no anatomy to segment).
    pub blank_slice: bool,
}

/// Margin (pixels) around the prompting mask's box within which the new mask counts as inside it.
pub const BOX_MARGIN_PX: usize = 3;

impl SliceEvidence {
    /// The evidence for `mask` segmented from `previous` (both `[h, w]` row-major, width `w`) on a walk that
    /// started from a mask of `start_area` pixels.
    pub fn of(
        previous: &[bool],
        mask: &[bool],
        w: usize,
        predicted_iou: f32,
        blank_slice: bool,
        start_area: usize,
    ) -> Self {
        let (area, previous_area) = (area(mask), area(previous));
        let outside = match tight_box(previous, w) {
            Some([x0, y0, x1, y1]) if area > 0 => {
                let inside = |i: usize| {
                    let (y, x) = (i / w, i % w);
                    x + BOX_MARGIN_PX >= x0
                        && x < x1 + BOX_MARGIN_PX
                        && y + BOX_MARGIN_PX >= y0
                        && y < y1 + BOX_MARGIN_PX
                };
                let out = mask.iter().enumerate().filter(|&(i, &m)| m && !inside(i)).count();
                out as f64 / area as f64
            }
            _ => 0.0,
        };
        Self {
            predicted_iou,
            area,
            previous_area,
            start_area,
            iou_with_previous: iou(previous, mask),
            outside_previous_box: outside,
            blank_slice,
        }
    }

    /// The new mask's area over the annotated slice's mask's (infinite from an empty one).
    pub fn growth_from_start(&self) -> f64 {
        if self.start_area == 0 {
            f64::INFINITY
        } else {
            self.area as f64 / self.start_area as f64
        }
    }

    /// The new mask's area over the prompting mask's (infinite from an empty one).
    pub fn area_growth(&self) -> f64 {
        if self.previous_area == 0 {
            f64::INFINITY
        } else {
            self.area as f64 / self.previous_area as f64
        }
    }
}

/// Foreground pixels of a mask.
pub fn area(mask: &[bool]) -> usize {
    mask.iter().filter(|&&m| m).count()
}

/// Intersection over union of two masks (1 when both are empty).
pub fn iou(a: &[bool], b: &[bool]) -> f64 {
    let (mut inter, mut union) = (0usize, 0usize);
    for (&x, &y) in a.iter().zip(b) {
        inter += usize::from(x && y);
        union += usize::from(x || y);
    }
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

/// Which part of the rule ended a walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopCause {
    /// The new mask came back empty.
    EmptyMask,
    /// The image slice is constant.
    BlankSlice,
    /// The IoU with the previous slice's mask fell below the threshold.
    IouWithPrevious,
    /// The model's predicted IoU fell below the threshold.
    PredictedIou,
    /// The mask grew by more than the allowed factor.
    AreaGrowth,
    /// The mask outgrew the annotated slice's mask by more than the allowed factor.
    GrowthFromStart,
    /// Too much of the mask left the previous slice's box.
    LeftBox,
}

impl fmt::Display for StopCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::EmptyMask => "empty mask",
            Self::BlankSlice => "blank image slice",
            Self::IouWithPrevious => "IoU with the previous slice below threshold",
            Self::PredictedIou => "predicted IoU below threshold",
            Self::AreaGrowth => "mask grew beyond the allowed factor",
            Self::GrowthFromStart => "mask outgrew the annotated slice's mask",
            Self::LeftBox => "mask left the previous slice's box",
        })
    }
}

/// When a walk stops: the first check a new slice fails rejects it (it is not written) and ends the walk.
/// Every threshold at its neutral value (0, or infinity for the growth) turns that check off.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StopRule {
    /// Stop when IoU(previous mask, new mask) falls below this.
    pub min_iou_with_previous: f64,
    /// Stop when the model's predicted IoU of the new mask falls below this.
    pub min_predicted_iou: f64,
    /// Stop when the new mask's area exceeds this multiple of the previous mask's (`None`: no limit).
    pub max_area_growth: Option<f64>,
    /// Stop when the new mask's area exceeds this multiple of the annotated slice's mask (`None`: no limit):
    /// an object seldom grows far beyond the slice a user prompted it on, a leak does.
    pub max_growth_from_start: Option<f64>,
    /// Stop when more than this fraction of the new mask lies outside the previous mask's box (`None`: no
    /// limit).
    pub max_outside_box: Option<f64>,
    /// Stop at a blank (constant) image slice.
    pub stop_on_blank_slice: bool,
    /// Stop when the new mask is empty (an empty mask carries nothing to the next slice anyway; turning this
    /// off only writes the empty slice before the walk ends).
    pub stop_on_empty_mask: bool,
}

impl Default for StopRule {
    /// The napari annotator's rule: IoU with the previous slice at least 0.5, plus the blank-slice check.
    fn default() -> Self {
        Self {
            min_iou_with_previous: 0.5,
            ..Self::NEVER
        }
        .with_blank_slice_stop()
    }
}

impl StopRule {
    /// A rule that never stops a walk before the volume's border (nor on an empty mask, which only ends it):
    /// for tracing a walk's evidence.
    pub const NEVER: Self = Self {
        min_iou_with_previous: 0.0,
        min_predicted_iou: 0.0,
        max_area_growth: None,
        max_growth_from_start: None,
        max_outside_box: None,
        stop_on_blank_slice: false,
        stop_on_empty_mask: false,
    };

    /// Upstream LiteMedSAM's 3D rule: stop only on an empty mask.
    pub const UPSTREAM_LITE_MEDSAM: Self = Self {
        stop_on_empty_mask: true,
        ..Self::NEVER
    };

    /// Only the IoU with the previous slice (micro-sam's `iou_threshold`), and the empty mask.
    pub fn iou_with_previous(threshold: f64) -> Self {
        Self {
            min_iou_with_previous: threshold,
            stop_on_empty_mask: true,
            ..Self::NEVER
        }
    }

    /// The same rule, stopping at blank image slices too.
    pub const fn with_blank_slice_stop(self) -> Self {
        Self {
            stop_on_blank_slice: true,
            stop_on_empty_mask: true,
            ..self
        }
    }

    /// The first check `evidence` fails, if any.
    pub fn verdict(&self, evidence: &SliceEvidence) -> Option<StopCause> {
        if self.stop_on_blank_slice && evidence.blank_slice {
            return Some(StopCause::BlankSlice);
        }
        if self.stop_on_empty_mask && evidence.area == 0 {
            return Some(StopCause::EmptyMask);
        }
        if evidence.iou_with_previous < self.min_iou_with_previous {
            return Some(StopCause::IouWithPrevious);
        }
        if f64::from(evidence.predicted_iou) < self.min_predicted_iou {
            return Some(StopCause::PredictedIou);
        }
        if self.max_area_growth.is_some_and(|g| evidence.area_growth() > g) {
            return Some(StopCause::AreaGrowth);
        }
        if self
            .max_growth_from_start
            .is_some_and(|g| evidence.growth_from_start() > g)
        {
            return Some(StopCause::GrowthFromStart);
        }
        if self.max_outside_box.is_some_and(|m| evidence.outside_previous_box > m) {
            return Some(StopCause::LeftBox);
        }
        None
    }

    /// Refuses thresholds outside their ranges (a message naming the field).
    pub fn validate(&self) -> Result<(), crate::Problem> {
        let fraction = |name: &str, v: f64| -> Result<(), crate::Problem> {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name} must lie in 0..1 (got {v})").into())
            }
        };
        fraction("min_iou_with_previous", self.min_iou_with_previous)?;
        fraction("min_predicted_iou", self.min_predicted_iou)?;
        if let Some(m) = self.max_outside_box {
            fraction("max_outside_box", m)?;
        }
        for (name, growth) in [
            ("max_area_growth", self.max_area_growth),
            ("max_growth_from_start", self.max_growth_from_start),
        ] {
            if let Some(g) = growth {
                if !(g > 0.0 && g.is_finite()) {
                    return Err(format!("{name} must be a finite positive number (got {g})").into());
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for StopRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.min_iou_with_previous > 0.0 {
            parts.push(format!("IoU with previous >= {}", self.min_iou_with_previous));
        }
        if self.min_predicted_iou > 0.0 {
            parts.push(format!("predicted IoU >= {}", self.min_predicted_iou));
        }
        if let Some(g) = self.max_area_growth {
            parts.push(format!("area growth <= {g}x"));
        }
        if let Some(g) = self.max_growth_from_start {
            parts.push(format!("area <= {g}x the annotated slice's"));
        }
        if let Some(m) = self.max_outside_box {
            parts.push(format!("outside previous box <= {m}"));
        }
        if self.stop_on_blank_slice {
            parts.push("not blank".into());
        }
        if self.stop_on_empty_mask {
            parts.push("not empty".into());
        }
        if parts.is_empty() {
            f.write_str("never stop")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(w: usize, x0: usize, y0: usize, side: usize) -> Vec<bool> {
        (0..w * w)
            .map(|i| (x0..x0 + side).contains(&(i % w)) && (y0..y0 + side).contains(&(i / w)))
            .collect()
    }

    #[test]
    fn evidence_measures_overlap_growth_and_leaving_the_box() {
        let w = 32;
        let previous = square(w, 10, 10, 4);
        let same = SliceEvidence::of(&previous, &previous, w, 0.9, false, 16);
        assert_eq!((same.area, same.previous_area, same.iou_with_previous), (16, 16, 1.0));
        assert_eq!(same.outside_previous_box, 0.0);
        assert_eq!(same.area_growth(), 1.0);
        // A mask four times larger, growing from the same corner: a quarter overlap; the part beyond the
        // box's 3 px margin is outside.
        let grown = SliceEvidence::of(&previous, &square(w, 10, 10, 8), w, 0.4, false, 16);
        assert_eq!(grown.area_growth(), 4.0);
        assert!((grown.iou_with_previous - 0.25).abs() < 1e-12);
        // Inside the margin: x, y in 10..17 -> 7 x 7 = 49 of 64 pixels.
        assert!((grown.outside_previous_box - 15.0 / 64.0).abs() < 1e-12);
        let empty = SliceEvidence::of(&previous, &vec![false; w * w], w, 0.1, true, 16);
        assert_eq!(
            (empty.area, empty.outside_previous_box, empty.iou_with_previous),
            (0, 0.0, 0.0)
        );
    }

    #[test]
    fn each_check_stops_only_when_switched_on() {
        let w = 32;
        let previous = square(w, 10, 10, 4);
        let grown = SliceEvidence::of(&previous, &square(w, 10, 10, 8), w, 0.4, false, 16);
        assert_eq!(StopRule::NEVER.verdict(&grown), None);
        let rule = |r: StopRule| r.verdict(&grown);
        assert_eq!(rule(StopRule::iou_with_previous(0.3)), Some(StopCause::IouWithPrevious));
        assert_eq!(rule(StopRule::iou_with_previous(0.2)), None);
        let predicted = StopRule {
            min_predicted_iou: 0.5,
            ..StopRule::NEVER
        };
        assert_eq!(rule(predicted), Some(StopCause::PredictedIou));
        let growth = StopRule {
            max_area_growth: Some(3.0),
            ..StopRule::NEVER
        };
        assert_eq!(rule(growth), Some(StopCause::AreaGrowth));
        let left = StopRule {
            max_outside_box: Some(0.2),
            ..StopRule::NEVER
        };
        assert_eq!(rule(left), Some(StopCause::LeftBox));
        let from_start = StopRule {
            max_growth_from_start: Some(3.5),
            ..StopRule::NEVER
        };
        assert_eq!(rule(from_start), Some(StopCause::GrowthFromStart));
        let blank = SliceEvidence {
            blank_slice: true,
            ..grown
        };
        assert_eq!(StopRule::default().verdict(&blank), Some(StopCause::BlankSlice));
        let empty = SliceEvidence::of(&previous, &vec![false; w * w], w, 0.9, false, 16);
        assert_eq!(
            StopRule::UPSTREAM_LITE_MEDSAM.verdict(&empty),
            Some(StopCause::EmptyMask)
        );
        assert_eq!(StopRule::NEVER.verdict(&empty), None);
    }

    #[test]
    fn out_of_range_thresholds_are_refused_by_name() {
        let bad = StopRule {
            max_area_growth: Some(-0.5),
            ..StopRule::NEVER
        };
        assert!(bad.validate().unwrap_err().0.contains("max_area_growth"));
        let bad = StopRule {
            max_growth_from_start: Some(f64::INFINITY),
            ..StopRule::NEVER
        };
        assert!(bad.validate().unwrap_err().0.contains("max_growth_from_start"));
        let bad = StopRule {
            min_predicted_iou: 1.5,
            ..StopRule::NEVER
        };
        assert!(bad.validate().unwrap_err().0.contains("min_predicted_iou"));
        assert!(StopRule::default().validate().is_ok());
    }
}
