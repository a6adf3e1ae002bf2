//! Objects of a binary mask: its 8-connected components, as micro-sam's evaluation and MedicoSAM's training
//! data define an object (a class mask split into the pieces a user would click on one at a time).

use crate::distance::distance_transform;

/// 8-connected components of `mask` with at least `min_pixels` pixels, each as a full-size mask.
pub fn components(mask: &[bool], (h, w): (usize, usize), min_pixels: usize) -> Vec<Vec<bool>> {
    let mut label = vec![0usize; h * w];
    let mut objects = Vec::new();
    let mut next = 0;
    for seed in 0..h * w {
        if !mask[seed] || label[seed] != 0 {
            continue;
        }
        next += 1;
        label[seed] = next;
        let mut stack = vec![seed];
        let mut pixels = Vec::new();
        while let Some(i) = stack.pop() {
            pixels.push(i);
            for j in neighbours(i, (h, w)) {
                if mask[j] && label[j] == 0 {
                    label[j] = next;
                    stack.push(j);
                }
            }
        }
        if pixels.len() >= min_pixels {
            let mut object = vec![false; h * w];
            for i in pixels {
                object[i] = true;
            }
            objects.push(object);
        }
    }
    objects
}

/// The pixels of `mask` 8-connected to any of `seeds` (row-major indices; a seed outside the mask reaches
/// nothing): the union of the components that contain a seed.
pub fn reached(mask: &[bool], hw: (usize, usize), seeds: &[usize]) -> Vec<bool> {
    flood(mask, hw, seeds, |i| neighbours(i, hw))
}

/// `mask` with its holes filled: the background regions the image border does not reach. Background is
/// connected through edges only, so a diagonal step in an 8-connected outline still closes a hole.
pub fn fill_holes(mask: &[bool], (h, w): (usize, usize)) -> Vec<bool> {
    if h == 0 || w == 0 {
        return mask.to_vec();
    }
    let background: Vec<bool> = mask.iter().map(|&m| !m).collect();
    let border: Vec<usize> = (0..w)
        .chain((h - 1) * w..h * w)
        .chain((0..h).flat_map(|y| [y * w, y * w + w - 1]))
        .collect();
    let outside = flood(&background, (h, w), &border, |i| edge_neighbours(i, (h, w)));
    outside.iter().map(|&o| !o).collect()
}

/// `mask` closed with a disc of `radius` pixels (dilated, then eroded; outside the image is background):
/// gaps and notches narrower than the disc become mask, nothing of the mask is lost. Computed with two exact
/// Euclidean distance transforms on the image padded by the radius.
pub fn close(mask: &[bool], (h, w): (usize, usize), radius: f32) -> Vec<bool> {
    if h == 0 || w == 0 || radius <= 0.0 || !radius.is_finite() {
        return mask.to_vec();
    }
    let pad = radius.ceil() as usize + 1;
    let (ph, pw) = (h + 2 * pad, w + 2 * pad);
    let mut padded = vec![false; ph * pw];
    for y in 0..h {
        padded[(y + pad) * pw + pad..(y + pad) * pw + pad + w].copy_from_slice(&mask[y * w..(y + 1) * w]);
    }
    // Dilation: within `radius` of the mask; erosion of that: farther than `radius` from what it leaves out.
    let background: Vec<bool> = padded.iter().map(|&m| !m).collect();
    let to_mask = distance_transform(&background, (ph, pw));
    let dilation: Vec<bool> = to_mask.iter().map(|&d| d <= radius).collect();
    let to_outside = distance_transform(&dilation, (ph, pw));
    let closed: Vec<bool> = to_outside.iter().zip(&padded).map(|(&d, &m)| m || d > radius).collect();
    (0..h)
        .flat_map(|y| closed[(y + pad) * pw + pad..(y + pad) * pw + pad + w].iter().copied())
        .collect()
}

/// The pixels of `mask` reached from `seeds` (those inside it) through `next`'s neighbours.
fn flood<N: Iterator<Item = usize>>(
    mask: &[bool],
    (h, w): (usize, usize),
    seeds: &[usize],
    next: impl Fn(usize) -> N,
) -> Vec<bool> {
    let mut out = vec![false; h * w];
    let mut stack: Vec<usize> = seeds.iter().copied().filter(|&i| i < h * w && mask[i]).collect();
    for &i in &stack {
        out[i] = true;
    }
    while let Some(i) = stack.pop() {
        for j in next(i) {
            if mask[j] && !out[j] {
                out[j] = true;
                stack.push(j);
            }
        }
    }
    out
}

/// The edge-sharing (4-connected) neighbours of pixel `i` (row-major) inside an `h x w` image.
fn edge_neighbours(i: usize, (h, w): (usize, usize)) -> impl Iterator<Item = usize> {
    let (y, x) = (i / w, i % w);
    let up = (y > 0).then(|| i - w);
    let down = (y + 1 < h).then(|| i + w);
    let left = (x > 0).then(|| i - 1);
    let right = (x + 1 < w).then(|| i + 1);
    [up, down, left, right].into_iter().flatten()
}

/// The 8-connected neighbours of pixel `i` (row-major) inside an `h x w` image.
fn neighbours(i: usize, (h, w): (usize, usize)) -> impl Iterator<Item = usize> {
    let (y, x) = ((i / w) as i64, (i % w) as i64);
    (-1..=1)
        .flat_map(move |dy| (-1..=1).map(move |dx| (y + dy, x + dx)))
        .filter(move |&(ny, nx)| (ny, nx) != (y, x) && ny >= 0 && nx >= 0 && ny < h as i64 && nx < w as i64)
        .map(move |(ny, nx)| ny as usize * w + nx as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holes_are_filled_and_openings_to_the_border_are_not() {
        // A ring with a hole, a C open to the right, on a 7 x 9 image.
        let picture = [
            ".........",
            ".###.###.",
            ".#.#.#...",
            ".###.#...",
            ".....###.",
            "#........",
            ".#.......",
        ];
        let (h, w) = (picture.len(), picture[0].len());
        let mask: Vec<bool> = picture.iter().flat_map(|row| row.chars().map(|c| c == '#')).collect();
        let filled = fill_holes(&mask, (h, w));
        let changed: Vec<usize> = (0..h * w).filter(|&i| filled[i] != mask[i]).collect();
        assert_eq!(changed, [2 * w + 2], "only the ring's hole");
        // A hole closed only diagonally is still a hole (background is 4-connected).
        let diagonal = [".#.", "#.#", ".#."];
        let mask: Vec<bool> = diagonal.iter().flat_map(|row| row.chars().map(|c| c == '#')).collect();
        assert!(fill_holes(&mask, (3, 3))[4]);
        assert_eq!(fill_holes(&[], (0, 0)), Vec::<bool>::new());
        assert_eq!(fill_holes(&[], (3, 0)), Vec::<bool>::new());
        assert_eq!(
            fill_holes(&[true, false, true], (1, 3)),
            [true, false, true],
            "a one-row image has no hole"
        );
    }

    #[test]
    fn closing_bridges_narrow_gaps_and_keeps_the_mask() {
        // Two 5-wide bars 2 pixels apart: a 2-pixel disc bridges the gap, a 0.5-pixel one does not.
        let (h, w) = (9, 16);
        let mask: Vec<bool> = (0..h * w)
            .map(|i| (2..7).contains(&(i / w)) && ((1..6).contains(&(i % w)) || (8..13).contains(&(i % w))))
            .collect();
        let bridged = close(&mask, (h, w), 2.0);
        assert!(bridged[4 * w + 6] && bridged[4 * w + 7], "the gap is closed");
        assert!(
            mask.iter().zip(&bridged).all(|(&m, &c)| !m || c),
            "nothing of the mask is lost"
        );
        assert!(!bridged[0] && !bridged[8 * w + 15], "far background stays");
        assert_eq!(close(&mask, (h, w), 0.5), mask);
        // At the image border the outside counts as background: a bar touching it is not eroded away.
        let edge: Vec<bool> = (0..h * w).map(|i| i % w < 3).collect();
        assert_eq!(close(&edge, (h, w), 3.0), edge);
        assert_eq!(close(&[], (0, 0), 2.0), Vec::<bool>::new());
    }

    #[test]
    fn reached_pixels_are_the_components_holding_a_seed() {
        // Two separate squares; a seed in the first reaches it only, a seed outside the mask nothing.
        let hw = (10, 10);
        let mask: Vec<bool> = (0..100)
            .map(|i| (i / 10 < 3 && i % 10 < 3) || (i / 10 > 6 && i % 10 > 6))
            .collect();
        let first = reached(&mask, hw, &[11]);
        assert_eq!(first.iter().filter(|&&v| v).count(), 9);
        assert!(first[0] && !first[99]);
        assert!(reached(&mask, hw, &[55]).iter().all(|&v| !v));
        assert_eq!(reached(&mask, hw, &[0, 99]).iter().filter(|&&v| v).count(), 18);
    }

    #[test]
    fn components_are_8_connected_and_small_ones_dropped() {
        // Two diagonal-touching pixels form one component; a 25-pixel square is kept, a 4-pixel one dropped.
        let hw = (20, 20);
        let mut mask = vec![false; 400];
        for y in 0..5 {
            for x in 0..5 {
                mask[y * 20 + x] = true;
            }
        }
        mask[5 * 20 + 5] = true; // touches (4, 4) diagonally: joins the square
        for y in 10..12 {
            for x in 10..12 {
                mask[y * 20 + x] = true;
            }
        }
        let objects = components(&mask, hw, 20);
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].iter().filter(|&&m| m).count(), 26);
        assert_eq!(components(&mask, hw, 1).len(), 2);
    }
}
