//! Mask post-processing on the host, as the official predictor does it on low-resolution logits:
//! bilinear upsampling to the model's input size, crop to the resized image, bilinear resize to the
//! original size (PyTorch `align_corners=False` sampling).

use ndarray::{s, Array2, ArrayView2};

/// Bilinear resize of a 2D array to `out_h x out_w` with half-pixel centers (PyTorch
/// `F.interpolate(mode="bilinear", align_corners=False)`, no antialiasing).
pub fn resize_bilinear(input: ArrayView2<f32>, out_h: usize, out_w: usize) -> Array2<f32> {
    let (in_h, in_w) = input.dim();
    let taps = |in_len: usize, out_len: usize| -> Vec<(usize, usize, f32)> {
        let scale = in_len as f32 / out_len as f32;
        (0..out_len)
            .map(|o| {
                let src = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (src as usize).min(in_len - 1);
                let i1 = (i0 + 1).min(in_len - 1);
                (i0, i1, src - i0 as f32)
            })
            .collect()
    };
    let rows = taps(in_h, out_h);
    let cols = taps(in_w, out_w);
    Array2::from_shape_fn((out_h, out_w), |(y, x)| {
        let (y0, y1, fy) = rows[y];
        let (x0, x1, fx) = cols[x];
        let top = input[[y0, x0]] * (1.0 - fx) + input[[y0, x1]] * fx;
        let bottom = input[[y1, x0]] * (1.0 - fx) + input[[y1, x1]] * fx;
        top * (1.0 - fy) + bottom * fy
    })
}

/// Low-res logits → full-size logits of the original image (official `postprocess_masks`).
pub fn upscale_logits(
    low_res: ArrayView2<f32>,
    input_size: usize,
    resized_hw: (usize, usize),
    original_hw: (usize, usize),
) -> Array2<f32> {
    let full = resize_bilinear(low_res, input_size, input_size);
    let cropped = full.slice(s![..resized_hw.0, ..resized_hw.1]);
    resize_bilinear(cropped, original_hw.0, original_hw.1)
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
    fn identity_size_keeps_values() {
        let input = Array2::from_shape_fn((3, 5), |(y, x)| (y * 5 + x) as f32);
        assert_eq!(resize_bilinear(input.view(), 3, 5), input);
    }
}
