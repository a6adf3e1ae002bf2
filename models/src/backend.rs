//! The tensor operations SAM needs, as a trait.
//!
//! The SAM forward pass in this crate is written once against [`Backend`]. A backend either computes
//! (tch tensors in `medico-train`) or records (ONNX graph nodes in `medico-export`), so training, parity
//! tests and deployment all run the same code.
//!
//! Conventions: every float tensor is f32 (a computing backend may store it in another dtype);
//! shapes passed to [`Backend::reshape`] follow ONNX `Reshape`: `0` copies the input's size on that axis
//! and `-1` is inferred, which lets the same code handle a dynamic batch or token count.

/// Operations the SAM networks are written in.
pub trait Backend {
    /// A tensor handle of this backend (cloning copies the handle, not the data).
    type Tensor: Clone;

    /// The model parameter with the official state-dict key `name`.
    ///
    /// Callers validate checkpoints against [`crate::sam::Sam::param_specs`] first, so a missing key
    /// here is a programming error.
    fn param(&self, name: &str) -> Self::Tensor;
    /// A float constant of the given shape (row-major values).
    fn constant(&self, values: &[f32], shape: &[usize]) -> Self::Tensor;

    /// `x @ weight^T + bias` over the last axis (PyTorch `nn.Linear`).
    fn linear(&self, x: &Self::Tensor, weight: &Self::Tensor, bias: Option<&Self::Tensor>) -> Self::Tensor;
    /// 2D convolution of an NCHW tensor with an OIHW kernel, equal stride and padding on both axes.
    fn conv2d(
        &self,
        x: &Self::Tensor,
        weight: &Self::Tensor,
        bias: Option<&Self::Tensor>,
        stride: usize,
        padding: usize,
    ) -> Self::Tensor;
    /// A 2D convolution (`groups` channel groups, equal stride and padding on both axes; TinyViT's
    /// `Conv2d_BN` has no bias, the UNETR decoder's blocks do) followed by `BatchNorm2d` with its running
    /// statistics. A recording backend folds the normalization into the convolution's weight and bias.
    #[allow(clippy::too_many_arguments)]
    fn conv2d_batch_norm(
        &self,
        x: &Self::Tensor,
        weight: &Self::Tensor,
        bias: Option<&Self::Tensor>,
        norm: &BatchNorm<'_, Self::Tensor>,
        stride: usize,
        padding: usize,
        groups: usize,
    ) -> Self::Tensor;
    /// Transposed 2D convolution of an NCHW tensor (kernel `[in, out, k, k]`, no padding).
    fn conv_transpose2d(
        &self,
        x: &Self::Tensor,
        weight: &Self::Tensor,
        bias: Option<&Self::Tensor>,
        stride: usize,
    ) -> Self::Tensor;
    /// Layer normalization over the last axis with an affine weight and bias.
    fn layer_norm(&self, x: &Self::Tensor, weight: &Self::Tensor, bias: &Self::Tensor, eps: f64) -> Self::Tensor;
    /// GELU with the exact erf formulation.
    fn gelu(&self, x: &Self::Tensor) -> Self::Tensor;
    /// `max(x, 0)`.
    fn relu(&self, x: &Self::Tensor) -> Self::Tensor;
    /// `1 / (1 + exp(-x))`.
    fn sigmoid(&self, x: &Self::Tensor) -> Self::Tensor;
    /// Instance normalization of an NCHW tensor with `channels` channels: each (sample, channel) plane
    /// shifted to mean 0 and scaled to variance 1 (biased variance, `eps` added), no affine parameters
    /// (PyTorch's `InstanceNorm2d` defaults).
    fn instance_norm(&self, x: &Self::Tensor, channels: usize, eps: f64) -> Self::Tensor;
    /// Softmax over the last axis.
    fn softmax_last(&self, x: &Self::Tensor) -> Self::Tensor;
    /// Softmax over a short `axis` (a few prompt tokens, many rows). The same function as
    /// [`Backend::softmax_last`] on that axis; a recording backend may spell it in ops that engines run
    /// faster on short rows.
    fn softmax_short(&self, x: &Self::Tensor, axis: usize, rank: usize) -> Self::Tensor {
        let mut perm: Vec<usize> = (0..rank).filter(|&a| a != axis).collect();
        perm.push(axis);
        let mut inverse = vec![0; rank];
        for (position, &a) in perm.iter().enumerate() {
            inverse[a] = position;
        }
        self.permute(&self.softmax_last(&self.permute(x, &perm)), &inverse)
    }
    /// Element-wise sine.
    fn sin(&self, x: &Self::Tensor) -> Self::Tensor;
    /// Element-wise cosine.
    fn cos(&self, x: &Self::Tensor) -> Self::Tensor;
    /// Batched matrix product with broadcasting over leading axes.
    fn matmul(&self, a: &Self::Tensor, b: &Self::Tensor) -> Self::Tensor;
    /// Broadcasting element-wise sum.
    fn add(&self, a: &Self::Tensor, b: &Self::Tensor) -> Self::Tensor;
    /// Broadcasting element-wise difference.
    fn sub(&self, a: &Self::Tensor, b: &Self::Tensor) -> Self::Tensor;
    /// Broadcasting element-wise product.
    fn mul(&self, a: &Self::Tensor, b: &Self::Tensor) -> Self::Tensor;
    /// `x * factor`.
    fn scale(&self, x: &Self::Tensor, factor: f64) -> Self::Tensor;
    /// `x + value`.
    fn add_scalar(&self, x: &Self::Tensor, value: f64) -> Self::Tensor;
    /// 1.0 where `x == value`, else 0.0 (same shape as `x`).
    fn equal_scalar(&self, x: &Self::Tensor, value: f64) -> Self::Tensor;
    /// Reshape with ONNX semantics (`0` = keep that axis, `-1` = infer).
    fn reshape(&self, x: &Self::Tensor, shape: &[i64]) -> Self::Tensor;
    /// Axis permutation.
    fn permute(&self, x: &Self::Tensor, perm: &[usize]) -> Self::Tensor;
    /// `x[.., start..end, ..]` on `axis`.
    fn slice(&self, x: &Self::Tensor, axis: usize, start: usize, end: usize) -> Self::Tensor;
    /// Zero padding after the end of each listed axis: `(axis, amount)`.
    fn pad_end(&self, x: &Self::Tensor, pads: &[(usize, usize)]) -> Self::Tensor;
    /// Concatenation along `axis`.
    fn concat(&self, xs: &[&Self::Tensor], axis: usize) -> Self::Tensor;
    /// Rows of a 2D `table` picked by constant `indices`; the result has shape `index_shape + [cols]`.
    fn gather_rows(&self, table: &Self::Tensor, indices: &[i64], index_shape: &[usize]) -> Self::Tensor;
    /// Repeats `x` (leading axis of size 1) along axis 0 to the leading size of `like`.
    fn expand_batch_like(&self, x: &Self::Tensor, like: &Self::Tensor) -> Self::Tensor;
    /// Bilinear resize of an NCHW tensor to `h x w` (`align_corners = false`, no antialiasing).
    fn resize_bilinear(&self, x: &Self::Tensor, h: usize, w: usize) -> Self::Tensor;
}

/// The parameters of a `BatchNorm2d` used with its running statistics.
pub struct BatchNorm<'t, T> {
    /// Scale (gamma).
    pub weight: &'t T,
    /// Shift (beta).
    pub bias: &'t T,
    /// Running mean.
    pub running_mean: &'t T,
    /// Running variance.
    pub running_var: &'t T,
    /// Added to the variance.
    pub eps: f64,
}

/// Layer normalization over the channel axis of an NCHW tensor (SAM's `LayerNorm2d`).
pub fn layer_norm_2d<B: Backend>(b: &B, x: &B::Tensor, prefix: &str, eps: f64) -> B::Tensor {
    let channels_last = b.permute(x, &[0, 2, 3, 1]);
    let normed = b.layer_norm(
        &channels_last,
        &b.param(&format!("{prefix}.weight")),
        &b.param(&format!("{prefix}.bias")),
        eps,
    );
    b.permute(&normed, &[0, 3, 1, 2])
}

/// `nn.LayerNorm` over the last axis whose parameters are `{prefix}.weight` and `{prefix}.bias`.
pub fn layer_norm_layer<B: Backend>(b: &B, x: &B::Tensor, prefix: &str, eps: f64) -> B::Tensor {
    b.layer_norm(
        x,
        &b.param(&format!("{prefix}.weight")),
        &b.param(&format!("{prefix}.bias")),
        eps,
    )
}

/// `nn.Linear` whose parameters are `{prefix}.weight` and `{prefix}.bias`.
pub fn linear_layer<B: Backend>(b: &B, x: &B::Tensor, prefix: &str) -> B::Tensor {
    b.linear(
        x,
        &b.param(&format!("{prefix}.weight")),
        Some(&b.param(&format!("{prefix}.bias"))),
    )
}
