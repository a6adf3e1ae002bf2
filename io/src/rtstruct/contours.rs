//! A mask slice to closed polygons: marching squares at the half-way level between inside and outside pixel
//! centres (the boundary of a binary mask to sub-pixel accuracy), outer boundaries and holes as separate
//! polygons, simplified by Ramer-Douglas-Peucker within a tolerance. Filled back by the even-odd rule
//! ([`super::raster::fill_even_odd`]) they give the mask again, up to the pixels the simplification moves
//! across.

use contour::ContourBuilder;
use geo::{LineString, Simplify};

use super::raster::Vertex;

/// The largest distance simplification may move a boundary by, in pixels: below half a pixel, so that
/// filling the polygons back changes at most pixels the boundary runs close to.
pub const SIMPLIFY_TOLERANCE: f64 = 0.35;

/// The boundaries of `mask` (`(rows, columns)`, row-major) as closed polygons in pixel coordinates (pixel
/// centres at integers; the closing vertex is not repeated): every outer boundary and every hole, each
/// simplified within `tolerance` pixels. An empty mask gives none.
pub fn mask_polygons(mask: &[bool], (rows, columns): (usize, usize), tolerance: f64) -> Vec<Vec<Vertex>> {
    if rows == 0 || columns == 0 || !mask.contains(&true) {
        return Vec::new();
    }
    let values: Vec<f64> = mask.iter().map(|&m| f64::from(u8::from(m))).collect();
    let builder = ContourBuilder::new(columns, rows, false);
    let Ok(bands) = builder.contours(&values, &[0.5]) else {
        return Vec::new();
    };
    let mut polygons = Vec::new();
    for band in &bands {
        for polygon in band.geometry() {
            for ring in std::iter::once(polygon.exterior()).chain(polygon.interiors()) {
                polygons.extend(ring_vertices(ring, tolerance));
            }
        }
    }
    polygons
}

/// A ring's vertices in pixel coordinates, simplified; `None` when fewer than three remain. The contour
/// crate puts pixel `(x, y)`'s value at `(x + 0.5, y + 0.5)`.
fn ring_vertices(ring: &LineString<f64>, tolerance: f64) -> Option<Vec<Vertex>> {
    let simplified = if tolerance > 0.0 {
        ring.simplify(tolerance)
    } else {
        ring.clone()
    };
    let mut vertices: Vec<Vertex> = simplified.0.iter().map(|c| [c.x - 0.5, c.y - 0.5]).collect();
    if vertices.len() > 1 && vertices.first() == vertices.last() {
        vertices.pop();
    }
    (vertices.len() >= 3).then_some(vertices)
}

#[cfg(test)]
mod tests {
    use super::super::raster::fill_even_odd;
    use super::*;

    fn disc_with_hole(hw: (usize, usize)) -> Vec<bool> {
        let (cy, cx) = (hw.0 as f64 / 2.0, hw.1 as f64 / 2.0);
        (0..hw.0 * hw.1)
            .map(|n| {
                let (y, x) = ((n / hw.1) as f64 - cy, (n % hw.1) as f64 - cx);
                let r = (x * x + y * y).sqrt();
                (8.0..20.0).contains(&r) || r < 3.0
            })
            .collect()
    }

    #[test]
    fn unsimplified_polygons_fill_back_to_the_mask_exactly() {
        let hw = (50, 60);
        let mask = disc_with_hole(hw);
        let polygons = mask_polygons(&mask, hw, 0.0);
        assert_eq!(polygons.len(), 3, "outer boundary, hole, island");
        assert_eq!(fill_even_odd(&polygons, hw), mask);
    }

    #[test]
    fn simplified_polygons_are_smaller_and_stay_within_a_boundary_pixel() {
        let hw = (50, 60);
        let mask = disc_with_hole(hw);
        let full: usize = mask_polygons(&mask, hw, 0.0).iter().map(Vec::len).sum();
        let polygons = mask_polygons(&mask, hw, SIMPLIFY_TOLERANCE);
        let simple: usize = polygons.iter().map(Vec::len).sum();
        assert!(simple < full, "{simple} vertices of {full}");
        let back = fill_even_odd(&polygons, hw);
        let differ = back.iter().zip(&mask).filter(|(a, b)| a != b).count();
        let area = mask.iter().filter(|&&m| m).count();
        assert!(differ * 50 < area, "{differ} pixels differ of {area}");
    }

    #[test]
    fn a_mask_touching_the_border_is_closed_along_it() {
        let hw = (4, 5);
        let mask = vec![true; 20];
        let polygons = mask_polygons(&mask, hw, 0.0);
        assert_eq!(polygons.len(), 1);
        assert_eq!(fill_even_odd(&polygons, hw), mask);
        assert!(mask_polygons(&[false; 20], hw, 0.0).is_empty());
    }
}
