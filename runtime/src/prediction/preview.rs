//! A preview PNG: the image SAM saw, with the mask outline and the prompts drawn on it, for a quick look
//! at what was segmented.

use std::path::Path;

use image::{DynamicImage, Rgb, RgbImage as Canvas};

use crate::prompt::{BoxPrompt, Point};
use medico_io::image2d::{save_png_atomically, RgbImage};
use medico_io::IoError;

const OUTLINE: Rgb<u8> = Rgb([255, 220, 0]);
const BOX: Rgb<u8> = Rgb([0, 160, 255]);
const POSITIVE: Rgb<u8> = Rgb([0, 230, 0]);
const NEGATIVE: Rgb<u8> = Rgb([255, 40, 40]);

/// Pixels of `mask` (`[h, w]`) with a 4-neighbour outside the mask or on the image border.
pub fn outline(mask: &[bool], (h, w): (usize, usize)) -> Vec<bool> {
    let at = |y: usize, x: usize| mask[y * w + x];
    (0..h * w)
        .map(|i| {
            let (y, x) = (i / w, i % w);
            at(y, x)
                && (y == 0
                    || x == 0
                    || y + 1 == h
                    || x + 1 == w
                    || !at(y - 1, x)
                    || !at(y + 1, x)
                    || !at(y, x - 1)
                    || !at(y, x + 1))
        })
        .collect()
}

fn put(canvas: &mut Canvas, x: i64, y: i64, color: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < canvas.width() && (y as u32) < canvas.height() {
        canvas.put_pixel(x as u32, y as u32, color);
    }
}

/// Draws the preview: `image` in gray/colour, the mask outline, the box and the points.
pub fn render(image: &RgbImage, mask: &[bool], points: &[Point], bbox: Option<&BoxPrompt>) -> Canvas {
    let (h, w) = image.hw;
    let mut canvas = Canvas::from_raw(w as u32, h as u32, image.pixels.clone()).unwrap_or_else(|| Canvas::new(1, 1));
    for (i, &edge) in outline(mask, image.hw).iter().enumerate() {
        if edge {
            put(&mut canvas, (i % w) as i64, (i / w) as i64, OUTLINE);
        }
    }
    if let Some(b) = bbox {
        let (x0, y0, x1, y1) = (
            b.x0.round() as i64,
            b.y0.round() as i64,
            b.x1.round() as i64,
            b.y1.round() as i64,
        );
        for x in x0..=x1 {
            put(&mut canvas, x, y0, BOX);
            put(&mut canvas, x, y1, BOX);
        }
        for y in y0..=y1 {
            put(&mut canvas, x0, y, BOX);
            put(&mut canvas, x1, y, BOX);
        }
    }
    // A cross of radius 3 (sized to stay visible on small images without hiding the anatomy).
    for p in points {
        let color = if p.positive { POSITIVE } else { NEGATIVE };
        let (cx, cy) = (p.x.round() as i64, p.y.round() as i64);
        for d in -3..=3 {
            put(&mut canvas, cx + d, cy, color);
            put(&mut canvas, cx, cy + d, color);
        }
    }
    canvas
}

/// Renders the preview and writes it as PNG atomically.
pub fn write_preview(
    path: &Path,
    image: &RgbImage,
    mask: &[bool],
    points: &[Point],
    bbox: Option<&BoxPrompt>,
) -> Result<(), IoError> {
    save_png_atomically(path, &DynamicImage::ImageRgb8(render(image, mask, points, bbox)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outline_keeps_only_the_border_of_the_mask() {
        // 5x5 image, 3x3 square in the middle: 8 outline pixels, the centre is interior.
        let mask: Vec<bool> = (0..25)
            .map(|i| (1..4).contains(&(i / 5)) && (1..4).contains(&(i % 5)))
            .collect();
        let edge = outline(&mask, (5, 5));
        assert_eq!(edge.iter().filter(|&&e| e).count(), 8);
        assert!(!edge[12]);
        assert!(edge[6] && edge[18]);
    }

    #[test]
    fn render_draws_outline_box_and_points_in_their_colours() {
        let image = RgbImage {
            pixels: vec![0; 20 * 20 * 3],
            hw: (20, 20),
            intensity: String::new(),
        };
        let mask: Vec<bool> = (0..400)
            .map(|i| (5..10).contains(&(i / 20)) && (5..10).contains(&(i % 20)))
            .collect();
        let points = [
            Point {
                x: 7.0,
                y: 7.0,
                positive: true,
            },
            Point {
                x: 15.0,
                y: 15.0,
                positive: false,
            },
        ];
        let bbox = BoxPrompt {
            x0: 2.0,
            y0: 2.0,
            x1: 12.0,
            y1: 12.0,
        };
        let canvas = render(&image, &mask, &points, Some(&bbox));
        assert_eq!(*canvas.get_pixel(5, 9), OUTLINE);
        assert_eq!(*canvas.get_pixel(2, 12), BOX);
        assert_eq!(*canvas.get_pixel(7, 7), POSITIVE);
        assert_eq!(*canvas.get_pixel(15, 12), NEGATIVE);
        assert_eq!(*canvas.get_pixel(18, 1), Rgb([0, 0, 0]));
    }
}
