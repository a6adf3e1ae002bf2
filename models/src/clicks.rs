//! Simulated user prompts for iterative prompting, shared by the trainer (MedicoSAM's objective) and the
//! evaluation (simulated correction rounds), as micro-sam's `PointAndBoxPromptGenerator` and
//! `IterativePromptGenerator` define them:
//! - a start point: a uniformly random object pixel;
//! - a start box: the tight box with each side pushed outward by up to 2.5 % of the side length;
//! - a correction: one positive click uniformly from the missed region (false negatives; fallback: the object
//!   itself) and one negative click uniformly from the false positives (fallback: the ring of the object's box
//!   grown by 3 px outside the object; fallback: any background pixel).
//!
//! Masks are row-major `[h, w]` booleans; coordinates are pixels (x = column, y = row).

use rand::Rng;

use crate::prompt::{BoxPrompt, Point};

/// Outward jitter of each box side, as a fraction of the side length (micro-sam's
/// `box_distortion_factor`).
pub const BOX_JITTER: f64 = 0.025;
/// How far the object's box grows for the negative-click fallback ring.
const RING: usize = 3;

/// A uniformly random pixel among those where `keep(index)` holds.
fn random_pixel(len: usize, w: usize, rng: &mut impl Rng, keep: impl Fn(usize) -> bool) -> Option<(usize, usize)> {
    let count = (0..len).filter(|&i| keep(i)).count();
    if count == 0 {
        return None;
    }
    let nth = rng.random_range(0..count);
    (0..len).filter(|&i| keep(i)).nth(nth).map(|i| (i % w, i / w))
}

fn point((x, y): (usize, usize), positive: bool) -> Point {
    Point {
        x: x as f64,
        y: y as f64,
        positive,
    }
}

/// Tight box `[x0, y0, x1, y1)` of a mask.
pub fn tight_box(mask: &[bool], w: usize) -> Option<[usize; 4]> {
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for (i, _) in mask.iter().enumerate().filter(|(_, &m)| m) {
        let (x, y) = (i % w, i / w);
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1));
    }
    (x0 != usize::MAX).then_some([x0, y0, x1, y1])
}

/// Pixels upstream LiteMedSAM's 3D inference adds on every side of the previous slice's box.
pub const LITE_MEDSAM_BOX_SHIFT: usize = 3;

/// Upstream LiteMedSAM's box of a non-empty mask: inclusive corners `[x_min, y_min, x_max, y_max]` moved
/// out by [`LITE_MEDSAM_BOX_SHIFT`] and clipped to `[0, w - 1] x [0, h - 1]`.
pub fn lite_medsam_box(mask: &[bool], (h, w): (usize, usize)) -> Option<[usize; 4]> {
    tight_box(mask, w).map(|tight| lite_medsam_box_around(tight, (h, w)))
}

/// [`lite_medsam_box`] of a mask whose tight box `[x0, y0, x1, y1)` is already known.
pub fn lite_medsam_box_around([x0, y0, x1, y1]: [usize; 4], (h, w): (usize, usize)) -> [usize; 4] {
    let shift = LITE_MEDSAM_BOX_SHIFT;
    [
        x0.saturating_sub(shift),
        y0.saturating_sub(shift),
        (x1 - 1 + shift).min(w - 1),
        (y1 - 1 + shift).min(h - 1),
    ]
}

/// The tight box as a box prompt (exclusive ends, as regionprops' and SAM's boxes).
pub fn box_prompt(mask: &[bool], w: usize) -> Option<BoxPrompt> {
    tight_box(mask, w).map(|[x0, y0, x1, y1]| BoxPrompt {
        x0: x0 as f64,
        y0: y0 as f64,
        x1: x1 as f64,
        y1: y1 as f64,
    })
}

/// A uniformly random background pixel inside the object's tight box grown by `margin` pixels.
fn background_near(gt: &[bool], (h, w): (usize, usize), margin: usize, rng: &mut impl Rng) -> Option<(usize, usize)> {
    let [x0, y0, x1, y1] = tight_box(gt, w)?;
    let (rx0, ry0) = (x0.saturating_sub(margin), y0.saturating_sub(margin));
    let (rx1, ry1) = ((x1 + margin).min(w), (y1 + margin).min(h));
    random_pixel(gt.len(), w, rng, |i| {
        let (x, y) = (i % w, i / w);
        !gt[i] && (rx0..rx1).contains(&x) && (ry0..ry1).contains(&y)
    })
}

/// A negative point uniformly from the background inside the object's tight box grown by `margin` pixels
/// (micro-sam's 3D start takes 10 px); `None` when that ring holds no background.
pub fn negative_near(gt: &[bool], hw: (usize, usize), margin: usize, rng: &mut impl Rng) -> Option<Point> {
    background_near(gt, hw, margin, rng).map(|p| point(p, false))
}

/// A uniformly random object pixel as a positive point (`None` for an empty mask).
pub fn start_point(gt: &[bool], (_, w): (usize, usize), rng: &mut impl Rng) -> Option<Point> {
    random_pixel(gt.len(), w, rng, |i| gt[i]).map(|p| point(p, true))
}

/// The tight box with each side pushed outward by `U(0, jitter)` of its side length, clipped to the image.
pub fn start_box(gt: &[bool], (h, w): (usize, usize), jitter: f64, rng: &mut impl Rng) -> Option<BoxPrompt> {
    let [x0, y0, x1, y1] = tight_box(gt, w)?;
    let (bw, bh) = ((x1 - x0) as f64, (y1 - y0) as f64);
    let mut grow = |side: f64| rng.random_range(0.0..=jitter) * side;
    Some(BoxPrompt {
        x0: (x0 as f64 - grow(bw)).max(0.0),
        y0: (y0 as f64 - grow(bh)).max(0.0),
        x1: (x1 as f64 + grow(bw)).min(w as f64),
        y1: (y1 as f64 + grow(bh)).min(h as f64),
    })
}

/// One correction round: a positive click in the missed region and a negative click in the false positives,
/// with micro-sam's fallbacks. `None` only when the object is empty.
pub fn correction_clicks(gt: &[bool], pred: &[bool], (h, w): (usize, usize), rng: &mut impl Rng) -> Option<[Point; 2]> {
    let positive =
        random_pixel(gt.len(), w, rng, |i| gt[i] && !pred[i]).or_else(|| random_pixel(gt.len(), w, rng, |i| gt[i]))?;
    let negative = random_pixel(gt.len(), w, rng, |i| pred[i] && !gt[i])
        .or_else(|| background_near(gt, (h, w), RING, rng))
        .or_else(|| random_pixel(gt.len(), w, rng, |i| !gt[i]))?;
    Some([point(positive, true), point(negative, false)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A pseudo-random blob mask and a perturbed prediction of it.
    fn blob(seed: u64, hw: (usize, usize)) -> (Vec<bool>, Vec<bool>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (cx, cy, r) = (
            rng.random_range(5.0..25.0),
            rng.random_range(5.0..20.0),
            rng.random_range(2.0..8.0),
        );
        let (dx, dy, dr) = (
            rng.random_range(-3.0..3.0),
            rng.random_range(-3.0..3.0),
            rng.random_range(-2.0..2.0),
        );
        let disc = |cx: f64, cy: f64, r: f64| -> Vec<bool> {
            (0..hw.0 * hw.1)
                .map(|i| ((i % hw.1) as f64 - cx).hypot((i / hw.1) as f64 - cy) <= r)
                .collect()
        };
        (disc(cx, cy, r), disc(cx + dx, cy + dy, (r + dr).max(0.0)))
    }

    #[test]
    fn correction_clicks_fall_in_the_error_regions_or_their_fallbacks() {
        let hw = (24, 30);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for seed in 0..300 {
            let (gt, pred) = blob(seed, hw);
            let at = |p: &Point| p.y as usize * hw.1 + p.x as usize;
            let Some([pos, neg]) = correction_clicks(&gt, &pred, hw, &mut rng) else {
                assert!(
                    gt.iter().all(|&g| !g),
                    "seed {seed}: only an empty object has no clicks"
                );
                continue;
            };
            assert!(pos.positive && !neg.positive);
            let missed = gt.iter().zip(&pred).any(|(&g, &p)| g && !p);
            let spurious = gt.iter().zip(&pred).any(|(&g, &p)| p && !g);
            if missed {
                assert!(
                    gt[at(&pos)] && !pred[at(&pos)],
                    "seed {seed}: positive click outside the missed region"
                );
            } else {
                assert!(gt[at(&pos)], "seed {seed}: fallback positive inside the object");
            }
            if spurious {
                assert!(
                    pred[at(&neg)] && !gt[at(&neg)],
                    "seed {seed}: negative click outside the false positives"
                );
            } else {
                assert!(!gt[at(&neg)], "seed {seed}: fallback negative on the object");
                let [x0, y0, x1, y1] = tight_box(&gt, hw.1).unwrap();
                let (x, y) = (neg.x as usize, neg.y as usize);
                let in_ring = x + RING >= x0 && x < x1 + RING && y + RING >= y0 && y < y1 + RING;
                let ring_has_room = (0..gt.len()).any(|i| {
                    let (px, py) = (i % hw.1, i / hw.1);
                    !gt[i] && px + RING >= x0 && px < x1 + RING && py + RING >= y0 && py < y1 + RING
                });
                assert!(
                    in_ring || !ring_has_room,
                    "seed {seed}: fallback negative outside the ring"
                );
            }
        }
    }

    #[test]
    fn start_prompts_lie_on_the_object_and_around_it() {
        let hw = (24, 30);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for seed in 0..200 {
            let (gt, _) = blob(seed, hw);
            let Some([x0, y0, x1, y1]) = tight_box(&gt, hw.1) else {
                assert!(start_point(&gt, hw, &mut rng).is_none() && start_box(&gt, hw, BOX_JITTER, &mut rng).is_none());
                continue;
            };
            let p = start_point(&gt, hw, &mut rng).unwrap();
            assert!(p.positive && gt[p.y as usize * hw.1 + p.x as usize]);
            let b = start_box(&gt, hw, BOX_JITTER, &mut rng).unwrap();
            let (bw, bh) = ((x1 - x0) as f64, (y1 - y0) as f64);
            assert!(b.x0 <= x0 as f64 && b.x0 >= (x0 as f64 - BOX_JITTER * bw).max(0.0));
            assert!(b.y0 <= y0 as f64 && b.y0 >= (y0 as f64 - BOX_JITTER * bh).max(0.0));
            assert!(b.x1 >= x1 as f64 && b.x1 <= (x1 as f64 + BOX_JITTER * bw).min(hw.1 as f64));
            assert!(b.y1 >= y1 as f64 && b.y1 <= (y1 as f64 + BOX_JITTER * bh).min(hw.0 as f64));
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_clicks() {
        let hw = (24, 30);
        let (gt, pred) = blob(7, hw);
        let run = || {
            let mut rng = ChaCha8Rng::seed_from_u64(42);
            (0..5)
                .map(|_| correction_clicks(&gt, &pred, hw, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(format!("{:?}", run()), format!("{:?}", run()));
    }
}
