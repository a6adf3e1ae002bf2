//! Image preprocessing as the bundle declares it. SAM's, exactly as the official `SamPredictor.set_image`:
//! resize the longest side to the model's input size with Pillow's bilinear filter (antialiased when
//! shrinking, fixed-point arithmetic on 8-bit channels), normalize with the pixel mean and standard
//! deviation, zero-pad bottom and right. LiteMedSAM's: OpenCV `INTER_AREA` ([`crate::resize_area`]),
//! min-max to [0, 1], zero-pad.
//!
//! The resampler follows Pillow's separable convolution (`Resample.c`): per output pixel a triangle
//! filter stretched by the scale when shrinking, weights normalized and quantized to 22 fractional bits,
//! horizontal pass first, then vertical, rounding and clamping to 0–255 after each pass. Reproducing it
//! bit for bit is what makes our embeddings match the official predictor's.

use ndarray::{Array2, Array4};

use medico_models::preprocessing::{Normalization, Preprocessing, ResizeMethod};
use medico_models::prompt::resized_size;

use crate::resize_area::resize_area;

/// Fractional bits of Pillow's 8-bit resampling weights.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output position: first input index and quantized weights.
struct Taps {
    start: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

fn bilinear_filter(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for a bilinear filter (support 1).
fn taps(in_size: usize, out_size: usize) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale;
    let mut start = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let inv = 1.0 / filter_scale;
        // C casts truncate toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let raw: Vec<f64> = (xmin..xmax)
            .map(|x| bilinear_filter((x as f64 - center + 0.5) * inv))
            .collect();
        let total: f64 = raw.iter().sum();
        let quantized = raw
            .iter()
            .map(|&w| {
                let w = if total != 0.0 { w / total } else { w };
                let scaled = w * (1u64 << PRECISION_BITS) as f64;
                if w < 0.0 {
                    (scaled - 0.5) as i32
                } else {
                    (scaled + 0.5) as i32
                }
            })
            .collect();
        start.push(xmin);
        weights.push(quantized);
    }
    Taps { start, weights }
}

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes an interleaved 8-bit image (`channels` per pixel, row-major `[h, w, c]`) to `out_h x out_w`
/// with Pillow's bilinear filter.
pub fn resize_pillow_bilinear(
    pixels: &[u8],
    (h, w): (usize, usize),
    channels: usize,
    (out_h, out_w): (usize, usize),
) -> Vec<u8> {
    debug_assert_eq!(pixels.len(), h * w * channels);
    let round = 1i64 << (PRECISION_BITS - 1);
    // Horizontal pass (skipped when the width does not change, as Pillow does).
    let horizontal = if out_w != w {
        let t = taps(w, out_w);
        let mut out = vec![0u8; h * out_w * channels];
        for y in 0..h {
            for x in 0..out_w {
                for c in 0..channels {
                    let acc = t.weights[x].iter().enumerate().fold(round, |acc, (k, &wt)| {
                        acc + pixels[(y * w + t.start[x] + k) * channels + c] as i64 * wt as i64
                    });
                    out[(y * out_w + x) * channels + c] = clip8(acc);
                }
            }
        }
        out
    } else {
        pixels.to_vec()
    };
    if out_h == h {
        return horizontal;
    }
    let t = taps(h, out_h);
    let mut out = vec![0u8; out_h * out_w * channels];
    for y in 0..out_h {
        for x in 0..out_w {
            for c in 0..channels {
                let acc = t.weights[y].iter().enumerate().fold(round, |acc, (k, &wt)| {
                    acc + horizontal[((t.start[y] + k) * out_w + x) * channels + c] as i64 * wt as i64
                });
                out[(y * out_w + x) * channels + c] = clip8(acc);
            }
        }
    }
    out
}

/// The encoder input for an RGB image: `[1, 3, S, S]`, resized and normalized as `preprocessing` says
/// (SAM: Pillow bilinear, `(v - mean) / std`; LiteMedSAM: OpenCV `INTER_AREA`, min-max to [0, 1]),
/// zero-padded bottom and right; also returns the resized size `(h, w)`.
pub fn encoder_input(
    rgb: &[u8],
    (h, w): (usize, usize),
    input_size: usize,
    preprocessing: &Preprocessing,
    (pixel_mean, pixel_std): ([f64; 3], [f64; 3]),
) -> (Array4<f32>, (usize, usize)) {
    let (new_h, new_w) = resized_size(h, w, input_size);
    let resized = resize_rgb(rgb, (h, w), preprocessing.resize, (new_h, new_w));
    let table = normalized_values(preprocessing.normalization, &resized, (pixel_mean, pixel_std));
    let mut input = Array4::<f32>::zeros((1, 3, input_size, input_size));
    for (c, values) in table.iter().enumerate() {
        for y in 0..new_h {
            for x in 0..new_w {
                input[[0, c, y, x]] = values[resized[(y * new_w + x) * 3 + c] as usize];
            }
        }
    }
    (input, (new_h, new_w))
}

/// What each 8-bit value of each channel of `resized` becomes under `normalization`.
fn normalized_values(
    normalization: Normalization,
    resized: &[u8],
    (pixel_mean, pixel_std): ([f64; 3], [f64; 3]),
) -> [[f32; 256]; 3] {
    let mut table = [[0f32; 256]; 3];
    match normalization {
        Normalization::MeanStd => {
            for (c, values) in table.iter_mut().enumerate() {
                for (v, out) in values.iter_mut().enumerate() {
                    *out = (v as f32 - pixel_mean[c] as f32) / pixel_std[c] as f32;
                }
            }
        }
        Normalization::MinMax01 => {
            let lo = resized.iter().copied().min().unwrap_or(0) as f64;
            let hi = resized.iter().copied().max().unwrap_or(0) as f64;
            let range = (hi - lo).max(MIN_MAX_EPS);
            for values in table.iter_mut() {
                for (v, out) in values.iter_mut().enumerate() {
                    *out = ((v as f64 - lo) / range) as f32;
                }
            }
        }
    }
    table
}

/// Smallest denominator of the min-max normalization (LiteMedSAM's `np.clip(max - min, 1e-8, None)`).
const MIN_MAX_EPS: f64 = 1e-8;

/// An interleaved 8-bit RGB image resized to `(h, w)` with `method`.
pub fn resize_rgb(rgb: &[u8], hw: (usize, usize), method: ResizeMethod, out_hw: (usize, usize)) -> Vec<u8> {
    match method {
        ResizeMethod::PillowBilinear => resize_pillow_bilinear(rgb, hw, 3, out_hw),
        ResizeMethod::Cv2Area => resize_area(rgb, hw, 3, out_hw),
    }
}

/// Logit of probability 0.999 (and minus it for 0.001): how a binary mask becomes a mask prompt.
pub const MASK_LOGIT: f32 = 6.906_755;

/// The mask as a `low x low` logit prompt: resized (longest side to `low`, Pillow bilinear), re-binarised
/// at one half, ±[`MASK_LOGIT`], zero-padded bottom/right.
pub fn mask_logits(mask: &[bool], (h, w): (usize, usize), low: usize) -> Array2<f32> {
    let (rh, rw) = resized_size(h, w, low);
    let gray: Vec<u8> = mask.iter().map(|&m| if m { 255 } else { 0 }).collect();
    let resized = resize_pillow_bilinear(&gray, (h, w), 1, (rh, rw));
    let mut out = Array2::<f32>::zeros((low, low));
    for y in 0..rh {
        for x in 0..rw {
            out[[y, x]] = if resized[y * rw + x] >= 128 {
                MASK_LOGIT
            } else {
                -MASK_LOGIT
            };
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (inp, out) in [(300, 256), (300, 400), (7, 3), (3, 7)] {
            let t = taps(inp, out);
            for w in &t.weights {
                let sum: i64 = w.iter().map(|&v| v as i64).sum();
                assert!(
                    (sum - (1 << PRECISION_BITS)).abs() <= w.len() as i64,
                    "{inp}->{out}: {sum}"
                );
            }
        }
    }

    #[test]
    fn constant_images_stay_constant() {
        let pixels = vec![77u8; 5 * 9 * 3];
        let out = resize_pillow_bilinear(&pixels, (5, 9), 3, (3, 4));
        assert!(out.iter().all(|&v| v == 77));
        let out = resize_pillow_bilinear(&pixels, (5, 9), 3, (11, 20));
        assert!(out.iter().all(|&v| v == 77));
    }
}
