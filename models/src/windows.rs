//! Window partition for windowed attention over a square token grid `[B, side, side, D]`, shared by the ViT
//! and TinyViT encoders: zero padding at the bottom/right to a multiple of the window, no masking.

use crate::backend::Backend;

/// `[B, side, side, D]` → `[B * n * n, ws, ws, D]` windows (`n = ceil(side / ws)`), the grid padded with
/// zeros at its end first.
pub fn window_partition<B: Backend>(b: &B, x: &B::Tensor, side: usize, ws: usize, dim: usize) -> B::Tensor {
    let padded_side = side.div_ceil(ws) * ws;
    let pad = padded_side - side;
    let padded = if pad > 0 {
        b.pad_end(x, &[(1, pad), (2, pad)])
    } else {
        x.clone()
    };
    let n = (padded_side / ws) as i64;
    let w = ws as i64;
    let d = dim as i64;
    let parted = b.reshape(&padded, &[-1, n, w, n, w, d]);
    let parted = b.permute(&parted, &[0, 1, 3, 2, 4, 5]);
    b.reshape(&parted, &[-1, w, w, d])
}

/// Inverse of [`window_partition`]: windows `[B * n * n, ws, ws, D]` back to `[B, side, side, D]`, the
/// padding dropped.
pub fn window_unpartition<B: Backend>(b: &B, windows: &B::Tensor, side: usize, ws: usize, dim: usize) -> B::Tensor {
    let padded_side = side.div_ceil(ws) * ws;
    let n = (padded_side / ws) as i64;
    let w = ws as i64;
    let d = dim as i64;
    let merged = b.reshape(windows, &[-1, n, n, w, w, d]);
    let merged = b.permute(&merged, &[0, 1, 3, 2, 4, 5]);
    let merged = b.reshape(&merged, &[-1, n * w, n * w, d]);
    if padded_side > side {
        b.slice(&b.slice(&merged, 1, 0, side), 2, 0, side)
    } else {
        merged
    }
}
