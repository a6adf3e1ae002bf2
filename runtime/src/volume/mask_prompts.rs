//! Prompts derived from a binary mask, to carry a segmentation from one slice to its neighbour (micro-sam's
//! `segment_from_mask`): a box (optionally extended), points at distance-transform peaks inside (positive)
//! and outside (negative) the object, the single deepest interior point, and the mask itself as low-res
//! logits. Which ones are used is a [`Projection`].

use std::fmt;
use std::str::FromStr;

use medico_models::clicks::tight_box;
pub use medico_models::clicks::{lite_medsam_box, LITE_MEDSAM_BOX_SHIFT};
use medico_models::distance::{argmax_in_mask, distance_transform};
use medico_models::prompt::{BoxPrompt, Point};
use ndarray::Array2;

pub use medico_io::preprocess::{mask_logits, MASK_LOGIT};

/// Which prompts are derived from the previous slice's mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Projection {
    /// The mask's bounding box (extended by the box extension).
    pub use_box: bool,
    /// The mask as low-res logits.
    pub use_mask: bool,
    /// Points at distance-transform peaks (or the single deepest point with `single_point`).
    pub use_points: bool,
    /// With `use_points`: only the deepest interior point, positive.
    pub single_point: bool,
    /// With `use_box`: upstream LiteMedSAM's box instead of micro-sam's: the mask's inclusive corners
    /// moved out by [`LITE_MEDSAM_BOX_SHIFT`] pixels and clipped to the last pixel (the box extension is
    /// not used).
    pub lite_medsam_box: bool,
}

const MODES: [(&str, Projection); 6] = [
    ("mask", Projection::new(true, true, false, false)),
    ("points", Projection::new(false, false, true, false)),
    ("box", Projection::new(true, false, false, false)),
    ("points_and_mask", Projection::new(false, true, true, false)),
    ("single_point", Projection::new(false, false, true, true)),
    ("lite_medsam", Projection::LITE_MEDSAM),
];

impl Projection {
    const fn new(use_box: bool, use_mask: bool, use_points: bool, single_point: bool) -> Self {
        Self {
            use_box,
            use_mask,
            use_points,
            single_point,
            lite_medsam_box: false,
        }
    }

    /// Upstream LiteMedSAM's 3D rule: each slice prompted with the previous slice's box only (see
    /// [`Projection::lite_medsam_box`]); upstream stops only on an empty mask (IoU threshold 0).
    pub const LITE_MEDSAM: Self = Self {
        use_box: true,
        use_mask: false,
        use_points: false,
        single_point: false,
        lite_medsam_box: true,
    };
}

impl Default for Projection {
    /// `single_point`, the napari annotator's default since micro-sam PR #903.
    fn default() -> Self {
        MODES[4].1
    }
}

/// A projection spelling that names no mode.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown projection '{0}' (expected mask, points, box, points_and_mask, single_point, lite_medsam or a combination like box+mask+points or lite_medsam+mask)"
)]
pub struct UnknownProjection(pub String);

impl FromStr for Projection {
    type Err = UnknownProjection;

    /// A mode name, or a custom combination `box+mask+points` (any non-empty subset, `+`-separated; `lite_medsam`
    /// in a combination is upstream LiteMedSAM's box, as `lite_medsam+mask`).
    fn from_str(text: &str) -> Result<Self, UnknownProjection> {
        if let Some((_, p)) = MODES.iter().find(|(name, _)| *name == text) {
            return Ok(*p);
        }
        let mut p = Projection::new(false, false, false, false);
        for part in text.split('+') {
            match part {
                "box" => p.use_box = true,
                "lite_medsam" => {
                    p.use_box = true;
                    p.lite_medsam_box = true;
                }
                "mask" => p.use_mask = true,
                "points" => p.use_points = true,
                _ => return Err(UnknownProjection(text.into())),
            }
        }
        Ok(p)
    }
}

impl fmt::Display for Projection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((name, _)) = MODES.iter().find(|(_, p)| p == self) {
            return f.write_str(name);
        }
        let box_name = if self.lite_medsam_box { "lite_medsam" } else { "box" };
        let parts: Vec<&str> = [
            (self.use_box, box_name),
            (self.use_mask, "mask"),
            (self.use_points, "points"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        f.write_str(&parts.join("+"))
    }
}

/// How much the derived box grows: a fraction of its side (< 1) or pixels (>= 1).
pub type BoxExtension = f64;

/// Prompts for one slice.
#[derive(Debug, Clone, Default)]
pub struct SlicePrompt {
    /// Points (pixels of the slice).
    pub points: Vec<Point>,
    /// A box (pixels, exclusive end).
    pub bbox: Option<BoxPrompt>,
    /// Low-res mask logits (`low x low`).
    pub mask_logits: Option<Array2<f32>>,
}

/// Tight bounding box `[x0, y0, x1, y1)` of a non-empty mask, extended and clipped to the image.
pub fn box_from_mask(mask: &[bool], (h, w): (usize, usize), extension: BoxExtension) -> Option<[usize; 4]> {
    let [x0, y0, x1, y1] = tight_box(mask, w)?;
    let (ex, ey) = if extension >= 1.0 {
        (extension.round() as usize, extension.round() as usize)
    } else {
        (
            // numpy rounds half to even.
            (extension * (x1 - x0) as f64).round_ties_even() as usize,
            (extension * (y1 - y0) as f64).round_ties_even() as usize,
        )
    };
    Some([
        x0.saturating_sub(ex),
        y0.saturating_sub(ey),
        (x1 + ex).min(w),
        (y1 + ey).min(h),
    ])
}

/// Gaussian smoothing with σ = 1, truncated at 4σ, edges repeated (skimage's `gaussian` defaults).
pub fn gaussian_sigma1(image: &[f32], (h, w): (usize, usize)) -> Vec<f32> {
    let kernel: Vec<f64> = (-4i64..=4).map(|d| (-(d * d) as f64 / 2.0).exp()).collect();
    let total: f64 = kernel.iter().sum();
    let kernel: Vec<f64> = kernel.iter().map(|k| k / total).collect();
    let clamp = |v: i64, n: usize| v.clamp(0, n as i64 - 1) as usize;
    let mut rows = vec![0f32; h * w];
    for y in 0..h {
        for x in 0..w {
            let acc: f64 = (-4i64..=4)
                .map(|d| kernel[(d + 4) as usize] * image[y * w + clamp(x as i64 + d, w)] as f64)
                .sum();
            rows[y * w + x] = acc as f32;
        }
    }
    let mut out = vec![0f32; h * w];
    for y in 0..h {
        for x in 0..w {
            let acc: f64 = (-4i64..=4)
                .map(|d| kernel[(d + 4) as usize] * rows[clamp(y as i64 + d, h) * w + x] as f64)
                .sum();
            out[y * w + x] = acc as f32;
        }
    }
    out
}

/// Local maxima `(y, x)` as skimage's `peak_local_max(image, min_distance, exclude_border=False)`: pixels
/// equal to the maximum of their `(2d+1)²` window and above the image minimum, strongest first, keeping
/// only peaks more than `min_distance` (Chebyshev) from every stronger kept peak.
pub fn peak_local_max(image: &[f32], (h, w): (usize, usize), min_distance: usize) -> Vec<(usize, usize)> {
    let floor = image.iter().copied().fold(f32::INFINITY, f32::min);
    let d = min_distance as i64;
    let mut candidates: Vec<(usize, usize)> = (0..h * w)
        .map(|i| (i / w, i % w))
        .filter(|&(y, x)| {
            let v = image[y * w + x];
            if v <= floor {
                return false;
            }
            let (ylo, yhi) = (
                (y as i64 - d).max(0) as usize,
                (y as i64 + d).min(h as i64 - 1) as usize,
            );
            let (xlo, xhi) = (
                (x as i64 - d).max(0) as usize,
                (x as i64 + d).min(w as i64 - 1) as usize,
            );
            (ylo..=yhi).all(|yy| (xlo..=xhi).all(|xx| image[yy * w + xx] <= v))
        })
        .collect();
    candidates.sort_by(|a, b| image[b.0 * w + b.1].total_cmp(&image[a.0 * w + a.1]));
    let mut kept: Vec<(usize, usize)> = Vec::new();
    for c in candidates {
        let far = kept
            .iter()
            .all(|k| k.0.abs_diff(c.0).max(k.1.abs_diff(c.1)) > min_distance);
        if far {
            kept.push(c);
        }
    }
    kept
}

/// Crop of `mask` to `[x0, y0, x1, y1)`.
fn crop(mask: &[bool], w: usize, [x0, y0, x1, y1]: [usize; 4]) -> Vec<bool> {
    (y0..y1).flat_map(|y| (x0..x1).map(move |x| mask[y * w + x])).collect()
}

/// Positive points at the inner distance peaks (min distance 3) and negative points at the outer ones (min
/// distance 5), inside the extended box, as micro-sam's `_compute_points_from_mask`.
pub fn points_from_mask(mask: &[bool], hw: (usize, usize), extension: BoxExtension) -> Vec<Point> {
    let Some(b) = box_from_mask(mask, hw, extension) else {
        return Vec::new();
    };
    let crop_hw = (b[3] - b[1], b[2] - b[0]);
    let cropped = crop(mask, hw.1, b);
    let outside: Vec<bool> = cropped.iter().map(|&m| !m).collect();
    let inner = gaussian_sigma1(&distance_transform(&cropped, crop_hw), crop_hw);
    let outer = gaussian_sigma1(&distance_transform(&outside, crop_hw), crop_hw);
    let to_point = |(y, x): (usize, usize), positive| Point {
        x: (x + b[0]) as f64,
        y: (y + b[1]) as f64,
        positive,
    };
    let mut points: Vec<Point> = peak_local_max(&inner, crop_hw, 3)
        .into_iter()
        .map(|p| to_point(p, true))
        .collect();
    points.extend(
        peak_local_max(&outer, crop_hw, 5)
            .into_iter()
            .map(|p| to_point(p, false)),
    );
    points
}

/// The deepest interior point: the maximum of the smoothed inner distance, restricted to mask pixels.
pub fn deepest_point(mask: &[bool], hw: (usize, usize)) -> Option<Point> {
    argmax_in_mask(&gaussian_sigma1(&distance_transform(mask, hw), hw), mask, hw)
}

/// The prompts `projection` derives from a non-empty `mask` (`None` for an empty one).
pub fn prompts_from_mask(
    mask: &[bool],
    hw: (usize, usize),
    projection: Projection,
    extension: BoxExtension,
    low: usize,
) -> Option<SlicePrompt> {
    let b = if projection.lite_medsam_box {
        lite_medsam_box(mask, hw)?
    } else {
        box_from_mask(mask, hw, extension)?
    };
    let points = match (projection.use_points, projection.single_point) {
        (false, _) => Vec::new(),
        (true, true) => deepest_point(mask, hw).into_iter().collect(),
        (true, false) => {
            let mut points = points_from_mask(mask, hw, extension);
            // A small object can have no distance peak far enough from the border: its deepest pixel is
            // still a positive point, so the prompt is never empty.
            if !points.iter().any(|p| p.positive) {
                points.extend(deepest_point(mask, hw));
            }
            points
        }
    };
    Some(SlicePrompt {
        points,
        bbox: projection.use_box.then(|| BoxPrompt {
            x0: b[0] as f64,
            y0: b[1] as f64,
            x1: b[2] as f64,
            y1: b[3] as f64,
        }),
        mask_logits: projection.use_mask.then(|| mask_logits(mask, hw, low)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rect(hw: (usize, usize), [x0, y0, x1, y1]: [usize; 4]) -> Vec<bool> {
        (0..hw.0 * hw.1)
            .map(|i| (y0..y1).contains(&(i / hw.1)) && (x0..x1).contains(&(i % hw.1)))
            .collect()
    }

    #[test]
    fn projection_names_and_combinations() {
        for name in [
            "mask",
            "points",
            "box",
            "points_and_mask",
            "single_point",
            "lite_medsam",
            "box+points",
            "lite_medsam+mask",
        ] {
            assert_eq!(name.parse::<Projection>().unwrap().to_string(), name);
        }
        assert_eq!("box+mask".parse::<Projection>().unwrap(), "mask".parse().unwrap());
        let lite_with_mask: Projection = "lite_medsam+mask".parse().unwrap();
        assert!(lite_with_mask.lite_medsam_box && lite_with_mask.use_box && lite_with_mask.use_mask);
        assert!("boxes"
            .parse::<Projection>()
            .unwrap_err()
            .to_string()
            .contains("unknown projection"));
        assert_eq!(Projection::default().to_string(), "single_point");
    }

    #[test]
    fn points_projection_always_has_a_positive_point() {
        let hw = (40, 40);
        for side in [1, 2, 3] {
            let mask = rect(hw, [20, 20, 20 + side, 20 + side]);
            let prompt = prompts_from_mask(&mask, hw, "points".parse().unwrap(), 0.05, 256).unwrap();
            assert!(prompt.points.iter().any(|p| p.positive), "{side}x{side} object");
        }
    }

    #[test]
    fn lite_medsam_box_is_inclusive_plus_three_pixels_clipped_to_the_last_pixel() {
        let hw = (50, 60);
        // Pixels x 10..=29, y 20..=29.
        let mask = rect(hw, [10, 20, 30, 30]);
        assert_eq!(lite_medsam_box(&mask, hw), Some([7, 17, 32, 32]));
        let corner = rect(hw, [1, 0, 59, 49]);
        assert_eq!(lite_medsam_box(&corner, hw), Some([0, 0, 59, 49]));
        let prompt = prompts_from_mask(&mask, hw, Projection::LITE_MEDSAM, 0.05, 256).unwrap();
        assert!(prompt.points.is_empty() && prompt.mask_logits.is_none());
        let b = prompt.bbox.unwrap();
        assert_eq!(
            [b.x0, b.y0, b.x1, b.y1],
            [7.0, 17.0, 32.0, 32.0],
            "the box extension is not used"
        );
    }

    #[test]
    fn box_extension_is_a_fraction_below_one_and_pixels_above() {
        let hw = (50, 60);
        let mask = rect(hw, [10, 20, 30, 30]);
        assert_eq!(box_from_mask(&mask, hw, 0.0), Some([10, 20, 30, 30]));
        // 5% of 20 px wide = 1 px; of 10 px high = 0.5 px, which numpy rounds (half to even) to 0.
        assert_eq!(box_from_mask(&mask, hw, 0.05), Some([9, 20, 31, 30]));
        assert_eq!(box_from_mask(&mask, hw, 12.0), Some([0, 8, 42, 42]));
        assert_eq!(box_from_mask(&vec![false; 3000], hw, 0.0), None);
    }

    #[test]
    fn points_are_inside_positive_and_outside_negative() {
        let hw = (40, 40);
        let mask = rect(hw, [10, 12, 30, 28]);
        let points = points_from_mask(&mask, hw, 5.0);
        assert!(points.iter().any(|p| p.positive) && points.iter().any(|p| !p.positive));
        for p in &points {
            let inside = mask[p.y as usize * 40 + p.x as usize];
            assert_eq!(inside, p.positive, "{p:?}");
        }
        let deepest = deepest_point(&mask, hw).unwrap();
        assert!(
            (18.0..=21.0).contains(&deepest.x) && (18.0..=21.0).contains(&deepest.y),
            "{deepest:?}"
        );
    }

    #[test]
    fn mask_logits_are_resized_binarised_and_padded() {
        let hw = (20, 40);
        let mask = rect(hw, [0, 0, 20, 20]);
        let logits = mask_logits(&mask, hw, 16);
        // 40x20 -> 16x8: left half object, right half background, rows 8.. padding.
        assert_eq!(logits[[0, 0]], MASK_LOGIT);
        assert_eq!(logits[[0, 15]], -MASK_LOGIT);
        assert_eq!(logits[[7, 0]], MASK_LOGIT);
        assert_eq!(logits[[8, 0]], 0.0);
        let prompt = prompts_from_mask(&mask, hw, "mask".parse().unwrap(), 0.0, 16).unwrap();
        assert!(prompt.points.is_empty() && prompt.bbox.is_some() && prompt.mask_logits.is_some());
    }
}
