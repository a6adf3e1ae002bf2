//! Mask post-processing on the host, as the official predictor does it on low-resolution logits:
//! bilinear upsampling to the model's input size, crop to the resized image, bilinear resize to the
//! original size (PyTorch `align_corners=False` sampling).

use ndarray::{Array2, ArrayView2};

/// One output coordinate's two source samples and the weight of the second.
type Tap = (usize, usize, f32);

/// Bilinear taps for resizing `in_len` samples to `out_len` (half-pixel centers, edge clamped), for the
/// first `keep` outputs.
fn taps(in_len: usize, out_len: usize, keep: usize) -> Vec<Tap> {
    let scale = in_len as f32 / out_len as f32;
    (0..keep.min(out_len))
        .map(|o| {
            let src = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src as usize).min(in_len - 1);
            let i1 = (i0 + 1).min(in_len - 1);
            (i0, i1, src - i0 as f32)
        })
        .collect()
}

/// The top-left `keep_h x keep_w` corner of a bilinear resize of `input` to `out_h x out_w`, computed
/// separably (rows, then columns; the same arithmetic per pixel as the two-dimensional formula).
fn resize_corner(
    input: ArrayView2<f32>,
    (out_h, out_w): (usize, usize),
    (keep_h, keep_w): (usize, usize),
) -> Array2<f32> {
    let (in_h, in_w) = input.dim();
    let rows = taps(in_h, out_h, keep_h);
    let cols = taps(in_w, out_w, keep_w);
    let mut horizontal = Array2::<f32>::zeros((in_h, cols.len()));
    for (src, mut dst) in input.rows().into_iter().zip(horizontal.rows_mut()) {
        for (d, &(x0, x1, fx)) in dst.iter_mut().zip(&cols) {
            *d = src[x0] * (1.0 - fx) + src[x1] * fx;
        }
    }
    let mut out = Array2::<f32>::zeros((rows.len(), cols.len()));
    for (mut dst, &(y0, y1, fy)) in out.rows_mut().into_iter().zip(&rows) {
        let (top, bottom) = (horizontal.row(y0), horizontal.row(y1));
        for ((d, &t), &b) in dst.iter_mut().zip(top).zip(bottom) {
            *d = t * (1.0 - fy) + b * fy;
        }
    }
    out
}

/// Bilinear resize of a 2D array to `out_h x out_w` with half-pixel centers (PyTorch
/// `F.interpolate(mode="bilinear", align_corners=False)`, no antialiasing).
pub fn resize_bilinear(input: ArrayView2<f32>, out_h: usize, out_w: usize) -> Array2<f32> {
    resize_corner(input, (out_h, out_w), (out_h, out_w))
}

/// Low-res logits → full-size logits of the original image (official `postprocess_masks`). Only the
/// resized image's corner of the first upsampling is computed (the rest is cropped away), and the second
/// resize is skipped when the original size is the resized one (it would copy).
pub fn upscale_logits(
    low_res: ArrayView2<f32>,
    input_size: usize,
    resized_hw: (usize, usize),
    original_hw: (usize, usize),
) -> Array2<f32> {
    let cropped = resize_corner(low_res, (input_size, input_size), resized_hw);
    if original_hw == resized_hw {
        return cropped;
    }
    resize_bilinear(cropped.view(), original_hw.0, original_hw.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsampling_by_two_interpolates_between_samples() {
        let input = ndarray::array![[0.0f32, 4.0], [8.0, 12.0]];
        let out = resize_bilinear(input.view(), 4, 4);
        // PyTorch: first row [0, 1, 3, 4] (edge clamped), last row [8, 9, 11, 12].
        assert_eq!(out.row(0).to_vec(), vec![0.0, 1.0, 3.0, 4.0]);
        assert_eq!(out.row(3).to_vec(), vec![8.0, 9.0, 11.0, 12.0]);
        assert_eq!(out[[1, 0]], 2.0);
    }

    #[test]
    fn upscaling_computes_the_crop_of_the_full_resize() {
        let low = Array2::from_shape_fn((16, 16), |(y, x)| ((y * 7 + x * 3) % 11) as f32 - 5.0);
        let full = resize_bilinear(low.view(), 64, 64);
        let expected = resize_bilinear(full.slice(ndarray::s![..48, ..40]).view(), 30, 25);
        assert_eq!(upscale_logits(low.view(), 64, (48, 40), (30, 25)), expected);
        let same = upscale_logits(low.view(), 64, (48, 40), (48, 40));
        assert_eq!(same, full.slice(ndarray::s![..48, ..40]));
    }

    #[test]
    fn identity_size_keeps_values() {
        let input = Array2::from_shape_fn((3, 5), |(y, x)| (y * 5 + x) as f32);
        assert_eq!(resize_bilinear(input.view(), 3, 5), input);
    }
}
