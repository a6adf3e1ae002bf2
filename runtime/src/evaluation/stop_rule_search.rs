//! Choosing a model's stop rule on traced walks ([`VolumeTrace`]): every rule of a grid scored on every object
//! without running the model again, ranked by the mean Dice of the walks as a user meets them (no extent).
//! One rule for every volume: no per-case settings.

use crate::evaluation::volume::VolumeTrace;
use crate::volume::propagation::StopRule;

/// Thresholds tried for each check (the neutral value first: that check off).
#[derive(Debug, Clone)]
pub struct RuleGrid {
    /// Minimum IoU with the previous slice's mask.
    pub min_iou_with_previous: Vec<f64>,
    /// Minimum predicted IoU.
    pub min_predicted_iou: Vec<f64>,
    /// Maximum area growth (`None`: no limit).
    pub max_area_growth: Vec<Option<f64>>,
    /// Maximum growth over the annotated slice's mask (`None`: no limit).
    pub max_growth_from_start: Vec<Option<f64>>,
    /// Maximum fraction outside the previous box (`None`: no limit).
    pub max_outside_box: Vec<Option<f64>>,
}

impl Default for RuleGrid {
    fn default() -> Self {
        Self {
            min_iou_with_previous: vec![0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],
            min_predicted_iou: vec![0.0, 0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9],
            max_area_growth: vec![None, Some(1.2), Some(1.5), Some(2.0), Some(3.0)],
            max_growth_from_start: vec![None, Some(1.0), Some(1.2), Some(1.5), Some(2.0)],
            max_outside_box: vec![None, Some(0.05), Some(0.1), Some(0.2), Some(0.4)],
        }
    }
}

impl RuleGrid {
    /// Every rule of the grid; blank slices and empty masks always stop.
    pub fn rules(&self) -> Vec<StopRule> {
        let mut rules = Vec::new();
        for &min_iou_with_previous in &self.min_iou_with_previous {
            for &min_predicted_iou in &self.min_predicted_iou {
                for &max_area_growth in &self.max_area_growth {
                    for &max_growth_from_start in &self.max_growth_from_start {
                        for &max_outside_box in &self.max_outside_box {
                            rules.push(
                                StopRule {
                                    min_iou_with_previous,
                                    min_predicted_iou,
                                    max_area_growth,
                                    max_growth_from_start,
                                    max_outside_box,
                                    ..StopRule::NEVER
                                }
                                .with_blank_slice_stop(),
                            );
                        }
                    }
                }
            }
        }
        rules
    }
}

/// A rule and the mean Dice it gives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankedRule {
    /// The rule.
    pub rule: StopRule,
    /// Mean Dice over the traces, no extent.
    pub mean_dice: f64,
}

/// Mean Dice of `traces` under `rule`, no extent (0 for no trace).
pub fn mean_free_dice<'a>(traces: impl IntoIterator<Item = &'a VolumeTrace>, rule: &StopRule) -> f64 {
    let (sum, count) = traces
        .into_iter()
        .fold((0.0, 0usize), |(sum, n), t| (sum + t.score(rule, false).dice, n + 1));
    if count == 0 {
        0.0
    } else {
        sum / count as f64
    }
}

/// Every rule of `grid` ranked by mean Dice over `traces` (best first; ties keep the simpler rule, the one
/// listed first by the grid).
pub fn rank_rules(traces: &[&VolumeTrace], grid: &RuleGrid) -> Vec<RankedRule> {
    let mut ranked: Vec<RankedRule> = grid
        .rules()
        .into_iter()
        .map(|rule| RankedRule {
            rule,
            mean_dice: mean_free_dice(traces.iter().copied(), &rule),
        })
        .collect();
    // A stable sort keeps the grid's order among equals.
    ranked.sort_by(|a, b| b.mean_dice.total_cmp(&a.mean_dice));
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluation::volume::TraceStep;
    use crate::volume::propagation::SliceEvidence;

    fn step(slice: usize, predicted_iou: f32, area: usize, intersection: usize) -> TraceStep {
        TraceStep {
            slice,
            evidence: SliceEvidence {
                predicted_iou,
                area,
                previous_area: 10,
                start_area: 12,
                iou_with_previous: 0.8,
                outside_previous_box: 0.0,
                blank_slice: false,
            },
            intersection,
        }
    }

    /// An object on slices 8..=12 (50 voxels); past its ends the model leaks with a low predicted IoU.
    fn leaking_trace() -> VolumeTrace {
        VolumeTrace {
            central_slice: 10,
            object_range: (8, 12),
            object_voxels: 50,
            central: (10, 12),
            below: vec![
                step(9, 0.9, 10, 9),
                step(8, 0.9, 10, 8),
                step(7, 0.2, 30, 0),
                step(6, 0.2, 30, 0),
            ],
            above: vec![step(11, 0.9, 10, 9), step(12, 0.8, 8, 6), step(13, 0.3, 20, 0)],
        }
    }

    #[test]
    fn a_trace_scores_any_rule_with_or_without_the_extent() {
        let trace = leaking_trace();
        let never = trace.score(&StopRule::NEVER, false);
        // 2 * (10 + 9 + 8 + 9 + 6) / (12 + 10 + 10 + 30 + 30 + 10 + 8 + 20 + 50)
        assert!((never.dice - 84.0 / 180.0).abs() < 1e-12);
        assert_eq!((never.slices_segmented, never.segmented_range), (8, (6, 13)));
        let extent = trace.score(&StopRule::NEVER, true);
        assert!((extent.dice - 84.0 / 100.0).abs() < 1e-12);
        let rule = StopRule {
            min_predicted_iou: 0.5,
            ..StopRule::NEVER
        };
        let stopped = trace.score(&rule, false);
        assert_eq!(stopped.dice, extent.dice);
        assert_eq!(stopped.segmented_range, (8, 12));
    }

    #[test]
    fn the_search_finds_the_threshold_that_separates_object_from_leak() {
        let trace = leaking_trace();
        let ranked = rank_rules(&[&trace], &RuleGrid::default());
        let best = ranked[0];
        assert!((best.mean_dice - 0.84).abs() < 1e-12);
        assert_eq!(trace.score(&best.rule, false).segmented_range, (8, 12));
        assert!(ranked.last().unwrap().mean_dice < best.mean_dice);
    }
}
