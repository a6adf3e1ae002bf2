//! Prompts in image coordinates and their mapping to the model's input frame, as the official
//! `SamPredictor` does it (`ResizeLongestSide`).

/// A point prompt in original image pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Column (x).
    pub x: f64,
    /// Row (y).
    pub y: f64,
    /// True for foreground (label 1), false for background (label 0).
    pub positive: bool,
}

/// A box prompt in original image pixels: `x0, y0, x1, y1`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxPrompt {
    /// Left.
    pub x0: f64,
    /// Top.
    pub y0: f64,
    /// Right.
    pub x1: f64,
    /// Bottom.
    pub y1: f64,
}

/// Label of a padding point ("not a point").
pub const LABEL_PADDING: f32 = -1.0;
/// Label of a box's top-left corner.
pub const LABEL_BOX_TOP_LEFT: f32 = 2.0;
/// Label of a box's bottom-right corner.
pub const LABEL_BOX_BOTTOM_RIGHT: f32 = 3.0;

/// Size `(h, w)` of an image of `(height, width)` after resizing its longest side to `long_side`
/// (official `ResizeLongestSide.get_preprocess_shape`).
pub fn resized_size(height: usize, width: usize, long_side: usize) -> (usize, usize) {
    let scale = long_side as f64 / height.max(width) as f64;
    // At least one pixel per side: a 3000 x 1 slice would otherwise resize to nothing (SAM's own
    // `int(x + 0.5)` gives 0 there and its postprocessing fails).
    let h = ((height as f64 * scale + 0.5) as usize).max(1);
    let w = ((width as f64 * scale + 0.5) as usize).max(1);
    (h, w)
}

/// Maps points from an `original_hw` image to its resized frame (per-axis scale, as the predictor).
pub struct CoordinateMap {
    scale_x: f64,
    scale_y: f64,
}

impl CoordinateMap {
    /// The map for an image of `original_hw` resized so that its longest side is `long_side`.
    pub fn new(original_hw: (usize, usize), long_side: usize) -> Self {
        let (h, w) = resized_size(original_hw.0, original_hw.1, long_side);
        Self {
            scale_x: w as f64 / original_hw.1 as f64,
            scale_y: h as f64 / original_hw.0 as f64,
        }
    }

    /// `(x, y)` in the resized frame.
    pub fn apply(&self, x: f64, y: f64) -> (f32, f32) {
        ((x * self.scale_x) as f32, (y * self.scale_y) as f32)
    }
}

/// Point coordinates `[N, 2]` and labels `[N]` for the decoder, in the resized frame: the points, then
/// the box corners (labels 2 and 3), or a padding point when there is no box. `None` when there are
/// neither points nor a box (a mask-only prompt).
pub fn sparse_prompt(points: &[Point], bbox: Option<&BoxPrompt>, map: &CoordinateMap) -> Option<(Vec<f32>, Vec<f32>)> {
    if points.is_empty() && bbox.is_none() {
        return None;
    }
    let mut coords = Vec::with_capacity(2 * (points.len() + 2));
    let mut labels = Vec::with_capacity(points.len() + 2);
    for p in points {
        let (x, y) = map.apply(p.x, p.y);
        coords.extend([x, y]);
        labels.push(if p.positive { 1.0 } else { 0.0 });
    }
    match bbox {
        Some(b) => {
            let (x0, y0) = map.apply(b.x0, b.y0);
            let (x1, y1) = map.apply(b.x1, b.y1);
            coords.extend([x0, y0, x1, y1]);
            labels.extend([LABEL_BOX_TOP_LEFT, LABEL_BOX_BOTTOM_RIGHT]);
        }
        None => {
            coords.extend([0.0, 0.0]);
            labels.push(LABEL_PADDING);
        }
    }
    Some((coords, labels))
}

/// Whether a prompt is one click and nothing else: the ambiguous prompt SAM answers with its three multimask
/// outputs, keeping the one with the best predicted IoU (SAM's and micro-sam's rule; MedicoSAM's objective
/// trains a lone click only through those outputs, so the single-mask output is not meant for it).
pub fn is_single_click(points: &[Point], bbox: Option<&BoxPrompt>, has_mask: bool) -> bool {
    points.len() == 1 && bbox.is_none() && !has_mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resized_size_matches_the_reference_cases() {
        // tiny: 200 x 300 -> 171 x 256; small: 384 x 300 -> 512 x 400 (reference README).
        assert_eq!(resized_size(200, 300, 256), (171, 256));
        assert_eq!(resized_size(384, 300, 512), (512, 400));
    }

    #[test]
    fn only_a_lone_click_is_a_single_click() {
        let click = Point {
            x: 3.0,
            y: 4.0,
            positive: true,
        };
        let bbox = BoxPrompt {
            x0: 0.0,
            y0: 0.0,
            x1: 9.0,
            y1: 9.0,
        };
        assert!(is_single_click(&[click], None, false));
        assert!(!is_single_click(&[click, click], None, false));
        assert!(!is_single_click(&[click], Some(&bbox), false));
        assert!(!is_single_click(&[click], None, true));
        assert!(!is_single_click(&[], Some(&bbox), false));
    }

    #[test]
    fn padding_point_only_without_box() {
        let map = CoordinateMap::new((200, 300), 256);
        let point = Point {
            x: 150.0,
            y: 100.0,
            positive: true,
        };
        let (_, labels) = sparse_prompt(&[point], None, &map).unwrap();
        assert_eq!(labels, vec![1.0, LABEL_PADDING]);
        let bbox = BoxPrompt {
            x0: 10.0,
            y0: 20.0,
            x1: 100.0,
            y1: 120.0,
        };
        let (coords, labels) = sparse_prompt(&[point], Some(&bbox), &map).unwrap();
        assert_eq!(labels, vec![1.0, 2.0, 3.0]);
        assert_eq!(coords.len(), 6);
        assert!(sparse_prompt(&[], None, &map).is_none());
    }
}
