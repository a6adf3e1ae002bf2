//! The TinyViT image encoder of MobileSAM and LiteMedSAM (`tiny_vit_sam.TinyViT`): a convolutional stem,
//! a stage of MBConv blocks, stages of windowed-attention blocks with learned attention biases, joined by
//! `PatchMerging` (the neck is [`crate::image_encoder`]'s). Official key names, so upstream checkpoints load
//! unchanged.
//!
//! Layout: stage 0 runs on NCHW feature maps; the attention stages on `[B, side, side, C]` token grids
//! (row-major the same values as upstream's `[B, L, C]`).

use crate::backend::{layer_norm_layer, linear_layer, Backend, BatchNorm};
use crate::config::SamConfig;
use crate::encoder_config::TinyVitConfig;
use crate::params::ParamSpecs;
use crate::windows::{window_partition, window_unpartition};

const PREFIX: &str = "image_encoder";
/// Epsilon of `BatchNorm2d` (PyTorch's default).
const BATCH_NORM_EPS: f64 = 1e-5;
/// Epsilon of the attention and MLP `LayerNorm`s (PyTorch's default).
const LAYER_NORM_EPS: f64 = 1e-5;

/// The TinyViT encoder of a [`SamConfig`].
pub struct TinyVitEncoder<'a> {
    sam: &'a SamConfig,
    config: &'a TinyVitConfig,
}

impl<'a> TinyVitEncoder<'a> {
    /// The TinyViT `config` inside the model `sam`.
    pub fn new(sam: &'a SamConfig, config: &'a TinyVitConfig) -> Self {
        Self { sam, config }
    }

    /// Declares the encoder's parameters (BatchNorm's `num_batches_tracked` is not one: checkpoint import
    /// drops it).
    pub fn param_specs(&self, specs: &mut ParamSpecs) {
        let c = self.config;
        let stem_mid = c.embed_dims[0] / 2;
        let k = c.stem.kernel();
        add_conv_bn(
            specs,
            &format!("{PREFIX}.patch_embed.seq.0"),
            self.sam.in_chans,
            stem_mid,
            k,
            1,
        );
        add_conv_bn(
            specs,
            &format!("{PREFIX}.patch_embed.seq.2"),
            stem_mid,
            c.embed_dims[0],
            k,
            1,
        );
        for stage in 0..c.stages() {
            let dim = c.embed_dims[stage];
            for block in 0..c.depths[stage] {
                let p = format!("{PREFIX}.layers.{stage}.blocks.{block}");
                if stage == 0 {
                    let hidden = self.mbconv_hidden();
                    add_conv_bn(specs, &format!("{p}.conv1"), dim, hidden, 1, 1);
                    add_conv_bn(specs, &format!("{p}.conv2"), hidden, hidden, 3, hidden);
                    add_conv_bn(specs, &format!("{p}.conv3"), hidden, dim, 1, 1);
                } else {
                    let offsets = c.window_sizes[stage] * c.window_sizes[stage];
                    specs.add(format!("{p}.attn.attention_biases"), &[c.num_heads[stage], offsets]);
                    specs.add_norm(&format!("{p}.attn.norm"), dim);
                    specs.add_linear(&format!("{p}.attn.qkv"), dim, 3 * dim, true);
                    specs.add_linear(&format!("{p}.attn.proj"), dim, dim, true);
                    let hidden = self.mlp_hidden(stage);
                    specs.add_norm(&format!("{p}.mlp.norm"), dim);
                    specs.add_linear(&format!("{p}.mlp.fc1"), dim, hidden, true);
                    specs.add_linear(&format!("{p}.mlp.fc2"), hidden, dim, true);
                    add_conv_bn(specs, &format!("{p}.local_conv"), dim, dim, c.local_conv_size, dim);
                }
            }
            if stage + 1 < c.stages() {
                let p = format!("{PREFIX}.layers.{stage}.downsample");
                let out = c.embed_dims[stage + 1];
                add_conv_bn(specs, &format!("{p}.conv1"), dim, out, 1, 1);
                add_conv_bn(specs, &format!("{p}.conv2"), out, out, 3, out);
                add_conv_bn(specs, &format!("{p}.conv3"), out, out, 1, 1);
            }
        }
    }

    fn mbconv_hidden(&self) -> usize {
        (self.config.embed_dims[0] as f64 * self.config.mbconv_expand_ratio) as usize
    }

    fn mlp_hidden(&self, stage: usize) -> usize {
        (self.config.embed_dims[stage] as f64 * self.config.mlp_ratio) as usize
    }

    /// Width of the last stage (the neck's input).
    pub fn output_dim(&self) -> usize {
        *self.config.embed_dims.last().expect("validated: at least two stages")
    }

    /// The tokens `[B, E, E, C]` of images `[B, 3, S, S]` before the neck; hands intermediate outputs to
    /// `trace`: `patch_embed` (NCHW) and `layer{i}` (the output of stage `i` after its `PatchMerging`,
    /// `[B, side, side, C]`), as upstream's `patch_embed` and `layers[i]` produce them.
    pub fn features_traced<B: Backend>(
        &self,
        b: &B,
        images: &B::Tensor,
        trace: &mut dyn FnMut(&str, &B::Tensor),
    ) -> B::Tensor {
        let c = self.config;
        let (k, stride) = (c.stem.kernel(), c.stem.conv_stride());
        let stem = |x: &B::Tensor, name: &str| conv_bn(b, x, &format!("{PREFIX}.patch_embed.{name}"), stride, k / 2, 1);
        let mut x = stem(&b.gelu(&stem(images, "seq.0")), "seq.2");
        trace("patch_embed", &x);
        for block in 0..c.depths[0] {
            x = self.mbconv(b, &x, block);
        }
        x = self.patch_merging(b, &x, 0);
        trace("layer0", &x);
        for stage in 1..c.stages() {
            let side = c.stage_side(self.sam.img_size, stage);
            for block in 0..c.depths[stage] {
                x = self.attention_block(b, &x, stage, block, side);
            }
            if stage + 1 < c.stages() {
                x = self.patch_merging(b, &b.permute(&x, &[0, 3, 1, 2]), stage);
            }
            trace(&format!("layer{stage}"), &x);
        }
        x
    }

    /// MBConv on NCHW: 1x1 → GELU → depthwise 3x3 → GELU → 1x1, plus the input, then GELU.
    fn mbconv<B: Backend>(&self, b: &B, x: &B::Tensor, block: usize) -> B::Tensor {
        let p = format!("{PREFIX}.layers.0.blocks.{block}");
        let hidden = self.mbconv_hidden();
        let h = b.gelu(&conv_bn(b, x, &format!("{p}.conv1"), 1, 0, 1));
        let h = b.gelu(&conv_bn(b, &h, &format!("{p}.conv2"), 1, 1, hidden));
        let h = conv_bn(b, &h, &format!("{p}.conv3"), 1, 0, 1);
        b.gelu(&b.add(&h, x))
    }

    /// `PatchMerging` after stage `stage`, NCHW in, `[B, side, side, C]` out: 1x1 → GELU → depthwise 3x3
    /// (the configured stride) → GELU → 1x1.
    fn patch_merging<B: Backend>(&self, b: &B, x: &B::Tensor, stage: usize) -> B::Tensor {
        let p = format!("{PREFIX}.layers.{stage}.downsample");
        let out = self.config.embed_dims[stage + 1];
        let stride = self.config.merge_strides[stage];
        let h = b.gelu(&conv_bn(b, x, &format!("{p}.conv1"), 1, 0, 1));
        let h = b.gelu(&conv_bn(b, &h, &format!("{p}.conv2"), stride, 1, out));
        let h = conv_bn(b, &h, &format!("{p}.conv3"), 1, 0, 1);
        b.permute(&h, &[0, 2, 3, 1])
    }

    /// `TinyViTBlock` on a `[B, side, side, C]` grid: windowed attention with residual, depthwise
    /// `local_conv` (no residual), MLP with residual.
    fn attention_block<B: Backend>(&self, b: &B, x: &B::Tensor, stage: usize, block: usize, side: usize) -> B::Tensor {
        let c = self.config;
        let p = format!("{PREFIX}.layers.{stage}.blocks.{block}");
        let (dim, ws) = (c.embed_dims[stage], c.window_sizes[stage]);
        // Upstream pads before the attention's own LayerNorm, so padded tokens enter as the norm's bias.
        let windows = window_partition(b, x, side, ws, dim);
        let attended = self.attention(b, &windows, &p, stage);
        let x = b.add(x, &window_unpartition(b, &attended, side, ws, dim));
        let local = conv_bn(
            b,
            &b.permute(&x, &[0, 3, 1, 2]),
            &format!("{p}.local_conv"),
            1,
            c.local_conv_size / 2,
            dim,
        );
        let x = b.permute(&local, &[0, 2, 3, 1]);
        let normed = layer_norm_layer(b, &x, &format!("{p}.mlp.norm"), LAYER_NORM_EPS);
        let hidden = b.gelu(&linear_layer(b, &normed, &format!("{p}.mlp.fc1")));
        b.add(&x, &linear_layer(b, &hidden, &format!("{p}.mlp.fc2")))
    }

    /// Attention over windows `[B', ws, ws, C]`: LayerNorm, qkv split per head into q, k, v (interleaved),
    /// `q k^T * scale + bias`, softmax, `@ v`, projection.
    fn attention<B: Backend>(&self, b: &B, windows: &B::Tensor, block: &str, stage: usize) -> B::Tensor {
        let c = self.config;
        let (dim, heads, ws) = (c.embed_dims[stage], c.num_heads[stage], c.window_sizes[stage]);
        let key_dim = (dim / heads) as i64;
        let tokens = (ws * ws) as i64;
        let normed = layer_norm_layer(b, windows, &format!("{block}.attn.norm"), LAYER_NORM_EPS);
        let qkv = linear_layer(b, &normed, &format!("{block}.attn.qkv"));
        let qkv = b.reshape(&qkv, &[-1, tokens, heads as i64, 3 * key_dim]);
        let qkv = b.permute(&qkv, &[0, 2, 1, 3]);
        let part = |i: i64| b.slice(&qkv, 3, (i * key_dim) as usize, ((i + 1) * key_dim) as usize);
        let (q, k, v) = (part(0), part(1), part(2));
        let logits = b.scale(
            &b.matmul(&q, &b.permute(&k, &[0, 1, 3, 2])),
            (key_dim as f64).powf(-0.5),
        );
        let logits = b.add(&logits, &self.attention_bias(b, block, ws));
        let out = b.matmul(&b.softmax_last(&logits), &v);
        let out = b.permute(&out, &[0, 2, 1, 3]);
        let out = b.reshape(&out, &[-1, ws as i64, ws as i64, dim as i64]);
        linear_layer(b, &out, &format!("{block}.attn.proj"))
    }

    /// `attention_biases[:, attention_bias_idxs]` as `[heads, N, N]`; the index buffer (not stored in
    /// checkpoints) is rebuilt by [`attention_bias_indices`].
    fn attention_bias<B: Backend>(&self, b: &B, block: &str, ws: usize) -> B::Tensor {
        let table = b.permute(&b.param(&format!("{block}.attn.attention_biases")), &[1, 0]);
        let n = ws * ws;
        let gathered = b.gather_rows(&table, &attention_bias_indices(ws), &[n, n]);
        b.permute(&gathered, &[2, 0, 1])
    }
}

/// Upstream's `attention_bias_idxs` for a `ws x ws` window: for every (query, key) pair of window
/// positions in row-major order, the number of their offset `(|dy|, |dx|)`, offsets numbered in the order
/// they are first seen.
pub fn attention_bias_indices(ws: usize) -> Vec<i64> {
    let points: Vec<(usize, usize)> = (0..ws).flat_map(|y| (0..ws).map(move |x| (y, x))).collect();
    let mut numbers = std::collections::HashMap::new();
    let mut indices = Vec::with_capacity(points.len() * points.len());
    for &(y1, x1) in &points {
        for &(y2, x2) in &points {
            let offset = (y1.abs_diff(y2), x1.abs_diff(x2));
            let next = numbers.len() as i64;
            indices.push(*numbers.entry(offset).or_insert(next));
        }
    }
    indices
}

/// `Conv2d_BN` named `prefix` (`{prefix}.c.weight`, `{prefix}.bn.*`) on an NCHW tensor.
fn conv_bn<B: Backend>(b: &B, x: &B::Tensor, prefix: &str, stride: usize, padding: usize, groups: usize) -> B::Tensor {
    let param = |name: &str| b.param(&format!("{prefix}.{name}"));
    let (weight, bias, mean, var) = (
        param("bn.weight"),
        param("bn.bias"),
        param("bn.running_mean"),
        param("bn.running_var"),
    );
    let norm = BatchNorm {
        weight: &weight,
        bias: &bias,
        running_mean: &mean,
        running_var: &var,
        eps: BATCH_NORM_EPS,
    };
    b.conv2d_batch_norm(x, &param("c.weight"), None, &norm, stride, padding, groups)
}

/// Declares a `Conv2d_BN`: bias-free conv `[out, in / groups, k, k]` and the BatchNorm's four vectors.
fn add_conv_bn(specs: &mut ParamSpecs, prefix: &str, inp: usize, out: usize, kernel: usize, groups: usize) {
    specs.add(format!("{prefix}.c.weight"), &[out, inp / groups, kernel, kernel]);
    for name in ["weight", "bias", "running_mean", "running_var"] {
        specs.add(format!("{prefix}.bn.{name}"), &[out]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bias_indices_number_offsets_in_first_seen_order() {
        // 2x2 window: points (0,0) (0,1) (1,0) (1,1); offsets (0,0)=0 (0,1)=1 (1,0)=2 (1,1)=3.
        assert_eq!(
            attention_bias_indices(2),
            vec![0, 1, 2, 3, 1, 0, 3, 2, 2, 3, 0, 1, 3, 2, 1, 0]
        );
        let seven = attention_bias_indices(7);
        assert_eq!(seven.len(), 49 * 49);
        assert_eq!(*seven.iter().max().unwrap(), 48, "49 distinct offsets for a 7x7 window");
    }
}
