//! OpenCV's `cv2.resize(..., interpolation=INTER_AREA)` on interleaved 8-bit images, reproduced byte for
//! byte (LiteMedSAM's preprocessing). OpenCV takes one of three paths (`imgproc/src/resize.cpp`):
//!
//! - shrinking by integer factors on both axes: block averages (`resizeAreaFast_`); 2x2 with 1, 3 or 4
//!   channels rounds `(sum + 2) >> 2`, other factors `sum * (1/area)` in f32 rounded half to even;
//! - shrinking otherwise: exact pixel-area weights in f32 (`computeResizeAreaTab`, `resizeArea_`);
//! - enlarging on either axis: bilinear interpolation with "area" coefficients in 11-bit fixed point
//!   (`resizeGeneric_` with `area_mode`), whose vertical pass rounds in two steps (high halves of
//!   16-bit products, then `(t + 2) >> 2`) rather than once.
//!
//! Checked byte for byte against OpenCV 5.0 (`opencv-python-headless`) on 40 size pairs covering the
//! three paths (random and smooth images): 0 differing bytes.

/// Fractional bits of OpenCV's fixed-point resize coefficients (`INTER_RESIZE_COEF_BITS`).
const COEF_BITS: u32 = 11;
/// `INTER_RESIZE_COEF_SCALE`.
const COEF_SCALE: i32 = 1 << COEF_BITS;

/// Resizes an interleaved 8-bit image (`[h, w, channels]` row-major) to `out_h x out_w` as OpenCV's
/// `INTER_AREA` does.
pub fn resize_area(pixels: &[u8], (h, w): (usize, usize), channels: usize, (out_h, out_w): (usize, usize)) -> Vec<u8> {
    debug_assert_eq!(pixels.len(), h * w * channels);
    if (h, w) == (out_h, out_w) {
        return pixels.to_vec();
    }
    let inv_scale_x = out_w as f64 / w as f64;
    let inv_scale_y = out_h as f64 / h as f64;
    let scale_x = 1.0 / inv_scale_x;
    let scale_y = 1.0 / inv_scale_y;
    let image = Image { pixels, h, w, channels };
    if scale_x >= 1.0 && scale_y >= 1.0 {
        let (ix, iy) = (scale_x as usize, scale_y as usize);
        if (scale_x - ix as f64).abs() < f64::EPSILON && (scale_y - iy as f64).abs() < f64::EPSILON {
            return image.block_average((ix, iy), (out_h, out_w));
        }
        return image.area_weighted((scale_x, scale_y), (out_h, out_w));
    }
    image.linear_area_mode((scale_x, scale_y), (inv_scale_x, inv_scale_y), (out_h, out_w))
}

struct Image<'p> {
    pixels: &'p [u8],
    h: usize,
    w: usize,
    channels: usize,
}

/// OpenCV's `saturate_cast<uchar>(float)`: round half to even, clamp.
fn saturate_u8(v: f32) -> u8 {
    v.round_ties_even().clamp(0.0, 255.0) as u8
}

impl Image<'_> {
    fn at(&self, y: usize, x: usize, c: usize) -> u8 {
        self.pixels[(y * self.w + x) * self.channels + c]
    }

    /// `resizeAreaFast_`: averages of `sx x sy` blocks.
    fn block_average(&self, (sx, sy): (usize, usize), (out_h, out_w): (usize, usize)) -> Vec<u8> {
        let cn = self.channels;
        let area = sx * sy;
        let scale = 1.0f32 / area as f32;
        let two_by_two = sx == 2 && sy == 2 && matches!(cn, 1 | 3 | 4);
        let full_w = self.w / sx;
        let mut out = vec![0u8; out_h * out_w * cn];
        for dy in 0..out_h {
            let y0 = dy * sy;
            // OpenCV averages whole blocks only where the block's rows all exist.
            let whole_cols = if y0 + sy <= self.h { full_w } else { 0 };
            for dx in 0..out_w {
                let x0 = dx * sx;
                for c in 0..cn {
                    let value = if y0 >= self.h {
                        0
                    } else if dx < whole_cols {
                        let sum: i32 = (0..sy)
                            .flat_map(|j| (0..sx).map(move |i| (j, i)))
                            .map(|(j, i)| self.at(y0 + j, x0 + i, c) as i32)
                            .sum();
                        if two_by_two {
                            ((sum + 2) >> 2) as u8
                        } else {
                            saturate_u8(sum as f32 * scale)
                        }
                    } else {
                        let (mut sum, mut count) = (0i32, 0i32);
                        for y in (y0..y0 + sy).take_while(|&y| y < self.h) {
                            for x in (x0..x0 + sx).take_while(|&x| x < self.w) {
                                sum += self.at(y, x, c) as i32;
                                count += 1;
                            }
                        }
                        saturate_u8(sum as f32 / count.max(1) as f32)
                    };
                    out[(dy * out_w + dx) * cn + c] = value;
                }
            }
        }
        out
    }

    /// `resizeArea_`: every source pixel weighted by the part of its area inside the target pixel, in f32.
    fn area_weighted(&self, (scale_x, scale_y): (f64, f64), (out_h, out_w): (usize, usize)) -> Vec<u8> {
        let cn = self.channels;
        let xtab = area_table(self.w, out_w, scale_x);
        let ytab = area_table(self.h, out_h, scale_y);
        let row_len = out_w * cn;
        let mut out = vec![0u8; out_h * row_len];
        let mut sum = vec![0f32; row_len];
        let mut buf = vec![0f32; row_len];
        let mut prev_dy = ytab.first().map_or(0, |t| t.dst);
        for t in &ytab {
            buf.iter_mut().for_each(|v| *v = 0.0);
            for x in &xtab {
                for c in 0..cn {
                    let i = x.dst * cn + c;
                    buf[i] += self.at(t.src, x.src, c) as f32 * x.alpha;
                }
            }
            if t.dst != prev_dy {
                for (i, s) in sum.iter_mut().enumerate() {
                    out[prev_dy * row_len + i] = saturate_u8(*s);
                    *s = t.alpha * buf[i];
                }
                prev_dy = t.dst;
            } else {
                for (s, b) in sum.iter_mut().zip(&buf) {
                    *s += t.alpha * b;
                }
            }
        }
        for (i, s) in sum.iter().enumerate() {
            out[prev_dy * row_len + i] = saturate_u8(*s);
        }
        out
    }

    /// Bilinear with OpenCV's area-mode coefficients in fixed point (used when enlarging).
    fn linear_area_mode(
        &self,
        (scale_x, scale_y): (f64, f64),
        (inv_x, inv_y): (f64, f64),
        (out_h, out_w): (usize, usize),
    ) -> Vec<u8> {
        let cn = self.channels;
        let xs = linear_taps(self.w, out_w, scale_x, inv_x);
        let ys = linear_taps(self.h, out_h, scale_y, inv_y);
        let row_len = out_w * cn;
        // Horizontal pass of one source row, in fixed point (exact integers, as OpenCV's SIMD and scalar).
        let horizontal = |y: usize| -> Vec<i32> {
            let mut row = vec![0i32; row_len];
            for (dx, tap) in xs.iter().enumerate() {
                for c in 0..cn {
                    let a = self.at(y, tap.src, c) as i32;
                    row[dx * cn + c] = if tap.border {
                        a * COEF_SCALE
                    } else {
                        a * tap.weights[0] as i32 + self.at(y, tap.src + 1, c) as i32 * tap.weights[1] as i32
                    };
                }
            }
            row
        };
        let mut out = vec![0u8; out_h * row_len];
        for (dy, tap) in ys.iter().enumerate() {
            let s0 = horizontal(tap.src);
            let s1 = horizontal((tap.src + 1).min(self.h - 1));
            let (b0, b1) = if tap.border {
                (COEF_SCALE as i16, 0)
            } else {
                (tap.weights[0], tap.weights[1])
            };
            let dst = &mut out[dy * row_len..(dy + 1) * row_len];
            for (x, value) in dst.iter_mut().enumerate() {
                *value = vertical(s0[x], s1[x], b0, b1);
            }
        }
        out
    }
}

/// One entry of OpenCV's `DecimateAlpha` table.
struct AreaTap {
    src: usize,
    dst: usize,
    alpha: f32,
}

/// `computeResizeAreaTab`: for each target pixel, the source pixels it covers and their area weights.
fn area_table(src_size: usize, dst_size: usize, scale: f64) -> Vec<AreaTap> {
    let mut tab = Vec::with_capacity(2 * src_size);
    for dx in 0..dst_size {
        let fsx1 = dx as f64 * scale;
        let fsx2 = fsx1 + scale;
        let cell = scale.min(src_size as f64 - fsx1);
        let mut sx1 = fsx1.ceil() as i64;
        let sx2 = (fsx2.floor() as i64).min(src_size as i64 - 1);
        sx1 = sx1.min(sx2);
        if sx1 as f64 - fsx1 > 1e-3 {
            tab.push(AreaTap {
                src: (sx1 - 1) as usize,
                dst: dx,
                alpha: ((sx1 as f64 - fsx1) / cell) as f32,
            });
        }
        for sx in sx1..sx2 {
            tab.push(AreaTap {
                src: sx as usize,
                dst: dx,
                alpha: (1.0 / cell) as f32,
            });
        }
        if fsx2 - sx2 as f64 > 1e-3 {
            tab.push(AreaTap {
                src: sx2 as usize,
                dst: dx,
                alpha: ((fsx2 - sx2 as f64).min(1.0).min(cell) / cell) as f32,
            });
        }
    }
    tab
}

/// First source index and fixed-point weights of one output position; `border` = past the last source
/// pixel (the value is the edge pixel's).
struct LinearTap {
    src: usize,
    weights: [i16; 2],
    border: bool,
}

/// OpenCV's area-mode coefficients: `sx = floor(d * scale)`, `f = (d + 1) - (sx + 1) / scale`, wrapped
/// to [0, 1), quantized to 11 bits.
fn linear_taps(src_size: usize, dst_size: usize, scale: f64, inv_scale: f64) -> Vec<LinearTap> {
    let mut taps: Vec<LinearTap> = (0..dst_size)
        .map(|d| {
            let mut sx = (d as f64 * scale).floor() as i64;
            let f = ((d + 1) as f64 - (sx + 1) as f64 * inv_scale) as f32;
            let mut f = if f <= 0.0 { 0.0 } else { f - f.floor() };
            let border = sx + 1 >= src_size as i64;
            if sx >= src_size as i64 - 1 {
                f = 0.0;
                sx = src_size as i64 - 1;
            }
            let quantize = |v: f32| {
                (v * COEF_SCALE as f32)
                    .round_ties_even()
                    .clamp(i16::MIN as f32, i16::MAX as f32) as i16
            };
            LinearTap {
                src: sx.max(0) as usize,
                weights: [quantize(1.0 - f), quantize(f)],
                border,
            }
        })
        .collect();
    // OpenCV treats every position from the first border one on as border (`xmax`).
    if let Some(first) = taps.iter().position(|t| t.border) {
        taps[first..].iter_mut().for_each(|t| t.border = true);
    }
    taps
}

/// OpenCV's vertical rounding for 8-bit output (its SIMD kernel and the scalar tail of its u8
/// specialization alike): each product's high half of `(s >> 4) * b`, summed, then `(t + 2) >> 2`.
fn vertical(s0: i32, s1: i32, b0: i16, b1: i16) -> u8 {
    let term = |s: i32, b: i16| ((((s >> 4).clamp(i16::MIN as i32, i16::MAX as i32)) * b as i32) >> 16) as i16;
    let t = term(s0, b0).wrapping_add(term(s1, b1)) as i32;
    ((t + 2) >> 2).clamp(0, 255) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_images_stay_constant_on_every_path() {
        let pixels = vec![201u8; 12 * 18 * 3];
        for out in [(6, 9), (4, 6), (5, 7), (20, 31), (12, 25), (7, 18)] {
            let resized = resize_area(&pixels, (12, 18), 3, out);
            assert_eq!(resized.len(), out.0 * out.1 * 3);
            assert!(resized.iter().all(|&v| v == 201), "{out:?}");
        }
    }

    /// Every fixture of `tests/data/resize_area` (written by OpenCV, `scripts/gen_resize_area_fixtures.py`)
    /// reproduced byte for byte.
    #[test]
    fn reproduces_opencv_on_every_path() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/resize_area");
        let index: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
        let cases = index["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 12);
        for case in cases {
            let n = |k: &str| case[k].as_u64().unwrap() as usize;
            let name = case["name"].as_str().unwrap();
            let input = std::fs::read(dir.join(format!("{name}.in"))).unwrap();
            let expected = std::fs::read(dir.join(format!("{name}.out"))).unwrap();
            let got = resize_area(&input, (n("h"), n("w")), n("channels"), (n("out_h"), n("out_w")));
            let differing = got.iter().zip(&expected).filter(|(a, b)| a != b).count();
            assert_eq!(got.len(), expected.len(), "{name}");
            assert_eq!(differing, 0, "{name}: {differing} bytes differ from OpenCV");
        }
    }

    #[test]
    fn two_by_two_rounds_half_up() {
        // Block sums 2 and 6: (2+2)>>2 = 1 and (6+2)>>2 = 2, where half-to-even would give 0 and 2.
        let pixels = [0u8, 1, 1, 2, 1, 0, 1, 2];
        assert_eq!(resize_area(&pixels, (2, 4), 1, (1, 2)), vec![1, 2]);
    }
}
