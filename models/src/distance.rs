//! Distances inside a binary mask: the exact Euclidean distance transform and the interior point farthest
//! from the boundary (the click `eval interactive` starts from, and a training start that matches it).

use crate::prompt::Point;

/// Exact Euclidean distance from each `true` pixel to the nearest `false` pixel (0 on `false` pixels), as
/// `scipy.ndimage.distance_transform_edt`; Felzenszwalb & Huttenlocher's separable algorithm. With no
/// `false` pixel at all, every distance is the image diagonal.
pub fn distance_transform(mask: &[bool], (h, w): (usize, usize)) -> Vec<f32> {
    const FAR: f64 = 1e20;
    if mask.iter().all(|&m| m) {
        return vec![((h * h + w * w) as f64).sqrt() as f32; h * w];
    }
    let mut grid: Vec<f64> = mask.iter().map(|&m| if m { FAR } else { 0.0 }).collect();
    let mut line = Vec::new();
    for x in 0..w {
        line.clear();
        line.extend((0..h).map(|y| grid[y * w + x]));
        let d = squared_distance_1d(&line);
        for y in 0..h {
            grid[y * w + x] = d[y];
        }
    }
    for y in 0..h {
        let d = squared_distance_1d(&grid[y * w..(y + 1) * w]);
        grid[y * w..(y + 1) * w].copy_from_slice(&d);
    }
    grid.iter().map(|&d| d.sqrt() as f32).collect()
}

/// 1D squared distance transform of sampled function `f` (lower envelope of parabolas).
fn squared_distance_1d(f: &[f64]) -> Vec<f64> {
    let n = f.len();
    let mut v = vec![0usize; n];
    let mut z = vec![0f64; n + 1];
    let mut k = 0;
    z[0] = f64::NEG_INFINITY;
    z[1] = f64::INFINITY;
    for q in 1..n {
        // z[0] is -inf and every s is finite, so k never drops below 0.
        let mut s;
        loop {
            let p = v[k];
            s = ((f[q] + (q * q) as f64) - (f[p] + (p * p) as f64)) / (2.0 * (q as f64 - p as f64));
            if s > z[k] {
                break;
            }
            k -= 1;
        }
        k += 1;
        v[k] = q;
        z[k] = s;
        z[k + 1] = f64::INFINITY;
    }
    let mut out = vec![0.0; n];
    let mut k = 0;
    for (q, o) in out.iter_mut().enumerate() {
        while z[k + 1] < q as f64 {
            k += 1;
        }
        let p = v[k];
        *o = (q as f64 - p as f64).powi(2) + f[p];
    }
    out
}

/// The mask pixel where `values` is largest (first in row-major order on ties), as a positive point.
pub fn argmax_in_mask(values: &[f32], mask: &[bool], hw: (usize, usize)) -> Option<Point> {
    let (i, _) = values.iter().enumerate().filter(|(i, _)| mask[*i]).fold(
        None,
        |best: Option<(usize, f32)>, (i, &v)| match best {
            Some((_, bv)) if bv >= v => best,
            _ => Some((i, v)),
        },
    )?;
    Some(Point {
        x: (i % hw.1) as f64,
        y: (i / hw.1) as f64,
        positive: true,
    })
}

/// The object pixel farthest from the boundary (first in row-major order on ties).
pub fn farthest_interior_point(mask: &[bool], hw: (usize, usize)) -> Option<Point> {
    argmax_in_mask(&distance_transform(mask, hw), mask, hw)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `[x0, y0, x1, y1)` rectangle.
    fn rect((h, w): (usize, usize), [x0, y0, x1, y1]: [usize; 4]) -> Vec<bool> {
        (0..h * w)
            .map(|i| (y0..y1).contains(&(i / w)) && (x0..x1).contains(&(i % w)))
            .collect()
    }

    #[test]
    fn distance_transform_is_euclidean() {
        let hw = (7, 7);
        let mask = rect(hw, [1, 1, 6, 6]);
        let d = distance_transform(&mask, hw);
        assert_eq!(d[3 * 7 + 3], 3.0, "centre of a 5x5 square is 3 from the outside");
        assert_eq!(d[7 + 1], 1.0);
        assert_eq!(d[0], 0.0);
        // A single background pixel in a corner: distance to (0, 0) is the hypotenuse.
        let mut one = vec![true; 25];
        one[0] = false;
        let d = distance_transform(&one, (5, 5));
        assert!((d[24] - (32f32).sqrt()).abs() < 1e-6);
    }

    #[test]
    fn the_farthest_interior_point_is_the_centre_of_a_square() {
        let hw = (9, 9);
        let p = farthest_interior_point(&rect(hw, [1, 1, 8, 8]), hw).unwrap();
        assert_eq!((p.x, p.y, p.positive), (4.0, 4.0, true));
        assert!(farthest_interior_point(&[false; 81], hw).is_none());
    }
}
