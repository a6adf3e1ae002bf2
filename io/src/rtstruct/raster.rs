//! Closed polygons to a mask slice by the even-odd rule: a pixel is inside when its centre is enclosed by an
//! odd number of the slice's contours, so holes (and islands in holes) given as separate contours come out
//! as RT Structure Sets mean them. A scanline sweep with an active edge list: memory grows with the edges,
//! work with the rows each edge spans.

/// A polygon vertex in pixel coordinates: `[x, y]` = (column, row), pixel centres at integers.
pub type Vertex = [f64; 2];

/// One polygon edge, `y0 < y1`.
#[derive(Debug, Clone, Copy)]
struct Edge {
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
}

impl Edge {
    /// The x where the edge crosses row `y` (for `y0 <= y < y1`).
    fn x_at(&self, y: f64) -> f64 {
        self.x0 + (y - self.y0) * (self.x1 - self.x0) / (self.y1 - self.y0)
    }
}

/// The non-horizontal edges of closed polygons (each closed from its last vertex to its first).
fn edges(polygons: &[Vec<Vertex>]) -> Vec<Edge> {
    let mut out = Vec::new();
    for polygon in polygons {
        for (n, &[xa, ya]) in polygon.iter().enumerate() {
            let [xb, yb] = polygon[(n + 1) % polygon.len()];
            if ya == yb {
                continue;
            }
            let (x0, y0, x1, y1) = if ya < yb { (xa, ya, xb, yb) } else { (xb, yb, xa, ya) };
            out.push(Edge { x0, y0, x1, y1 });
        }
    }
    out
}

/// Fills the polygons into a `(rows, columns)` mask (row-major) by the even-odd rule over all of them: the
/// pixel at `(x, y)` is inside when the horizontal ray from its centre crosses an odd number of edges (an
/// edge covers the rows `y0 <= y < y1`, so a vertex on a row is counted once). Vertices must be finite;
/// polygons may extend beyond the slice (clipped).
pub fn fill_even_odd(polygons: &[Vec<Vertex>], (rows, columns): (usize, usize)) -> Vec<bool> {
    let mut mask = vec![false; rows * columns];
    let mut pending = edges(polygons);
    pending.sort_by(|a, b| b.y0.total_cmp(&a.y0));
    let mut active: Vec<Edge> = Vec::new();
    let mut crossings: Vec<f64> = Vec::new();
    for row in 0..rows {
        let y = row as f64;
        while pending.last().is_some_and(|e| e.y0 <= y) {
            active.extend(pending.pop());
        }
        active.retain(|e| e.y1 > y);
        crossings.clear();
        crossings.extend(active.iter().filter(|e| e.y0 <= y).map(|e| e.x_at(y)));
        crossings.sort_by(f64::total_cmp);
        for pair in crossings.chunks_exact(2) {
            // Pixel centres x with pair[0] <= x < pair[1].
            let first = pair[0].ceil().max(0.0);
            let end = pair[1].ceil().min(columns as f64);
            if first < end {
                let line = &mut mask[row * columns..(row + 1) * columns];
                line[first as usize..end as usize].fill(true);
            }
        }
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(x0: f64, y0: f64, x1: f64, y1: f64) -> Vec<Vertex> {
        vec![[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
    }

    fn count(mask: &[bool]) -> usize {
        mask.iter().filter(|&&m| m).count()
    }

    #[test]
    fn a_square_covers_the_pixel_centres_inside_it() {
        let mask = fill_even_odd(&[square(0.5, 0.5, 3.5, 2.5)], (5, 5));
        // Columns 1..=3, rows 1..=2.
        assert_eq!(count(&mask), 6);
        assert!(mask[5 + 1] && mask[2 * 5 + 3] && !mask[3 * 5 + 1] && !mask[5 + 4]);
    }

    #[test]
    fn a_contour_inside_another_is_a_hole_and_one_inside_that_an_island() {
        let outer = square(-0.5, -0.5, 8.5, 8.5);
        let hole = square(1.5, 1.5, 6.5, 6.5);
        let island = square(3.5, 3.5, 4.5, 4.5);
        assert_eq!(count(&fill_even_odd(std::slice::from_ref(&outer), (9, 9))), 81);
        assert_eq!(count(&fill_even_odd(&[outer.clone(), hole.clone()], (9, 9))), 81 - 25);
        let with_island = fill_even_odd(&[outer, hole, island], (9, 9));
        assert_eq!(count(&with_island), 81 - 25 + 1);
        assert!(with_island[4 * 9 + 4]);
    }

    #[test]
    fn polygons_beyond_the_slice_are_clipped() {
        let mask = fill_even_odd(&[square(-10.0, -10.0, 1.5, 100.0)], (4, 4));
        assert_eq!(count(&mask), 8);
    }

    #[test]
    fn a_triangle_matches_a_point_in_polygon_test() {
        let triangle = vec![[0.3, 0.2], [9.7, 3.1], [2.2, 8.9]];
        let mask = fill_even_odd(std::slice::from_ref(&triangle), (10, 10));
        for y in 0..10 {
            for x in 0..10 {
                let (px, py) = (x as f64, y as f64);
                let mut inside = false;
                for n in 0..3 {
                    let [xa, ya] = triangle[n];
                    let [xb, yb] = triangle[(n + 1) % 3];
                    if (ya <= py) != (yb <= py) && px < xa + (py - ya) * (xb - xa) / (yb - ya) {
                        inside = !inside;
                    }
                }
                assert_eq!(mask[y * 10 + x], inside, "({x}, {y})");
            }
        }
    }
}
