//! SAM's ViT image encoder: patch embedding, absolute position embedding, blocks with windowed or global
//! attention and decomposed relative position embeddings (the neck is [`crate::image_encoder`]'s).

use crate::backend::{layer_norm_layer, linear_layer, Backend};
use crate::config::{SamConfig, ENCODER_LAYERNORM_EPS};
use crate::encoder_config::VitConfig;
use crate::params::ParamSpecs;
use crate::windows::{window_partition, window_unpartition};

/// The ViT image encoder of a [`SamConfig`].
pub struct VitEncoder<'a> {
    sam: &'a SamConfig,
    config: &'a VitConfig,
}

const PREFIX: &str = "image_encoder";

impl<'a> VitEncoder<'a> {
    /// The ViT `config` inside the model `sam`.
    pub fn new(sam: &'a SamConfig, config: &'a VitConfig) -> Self {
        Self { sam, config }
    }

    /// Declares the encoder's parameters.
    pub fn param_specs(&self, specs: &mut ParamSpecs) {
        let c = self.config;
        let dim = c.encoder_embed_dim;
        let grid = self.sam.embedding_size();
        specs.add(
            format!("{PREFIX}.patch_embed.proj.weight"),
            &[dim, self.sam.in_chans, c.patch_size, c.patch_size],
        );
        specs.add(format!("{PREFIX}.patch_embed.proj.bias"), &[dim]);
        if c.encoder_use_abs_pos {
            specs.add(format!("{PREFIX}.pos_embed"), &[1, grid, grid, dim]);
        }
        let hidden = self.mlp_hidden();
        let head_dim = dim / c.encoder_num_heads;
        for i in 0..c.encoder_depth {
            let p = format!("{PREFIX}.blocks.{i}");
            specs.add_norm(&format!("{p}.norm1"), dim);
            if c.encoder_use_rel_pos {
                let side = self.attention_side(i);
                specs.add(format!("{p}.attn.rel_pos_h"), &[2 * side - 1, head_dim]);
                specs.add(format!("{p}.attn.rel_pos_w"), &[2 * side - 1, head_dim]);
            }
            specs.add_linear(&format!("{p}.attn.qkv"), dim, 3 * dim, c.encoder_qkv_bias);
            specs.add_linear(&format!("{p}.attn.proj"), dim, dim, true);
            specs.add_norm(&format!("{p}.norm2"), dim);
            specs.add_linear(&format!("{p}.mlp.lin1"), dim, hidden, true);
            specs.add_linear(&format!("{p}.mlp.lin2"), hidden, dim, true);
        }
    }

    fn mlp_hidden(&self) -> usize {
        (self.config.encoder_embed_dim as f64 * self.config.encoder_mlp_ratio) as usize
    }

    fn is_global(&self, block: usize) -> bool {
        self.config.encoder_global_attn_indexes.contains(&block)
    }

    /// Side of the token grid block `block` attends over (the window, or the whole grid).
    fn attention_side(&self, block: usize) -> usize {
        if self.is_global(block) {
            self.sam.embedding_size()
        } else {
            self.config.encoder_window_size
        }
    }

    /// Width of the last block's tokens (the neck's input).
    pub fn output_dim(&self) -> usize {
        self.config.encoder_embed_dim
    }

    /// The tokens `[B, E, E, D]` of normalized, padded images `[B, 3, S, S]` before the neck; hands
    /// intermediate outputs to `trace`: `patch_embed` (before the position embedding) and `block{i}`.
    pub fn features_traced<B: Backend>(
        &self,
        b: &B,
        images: &B::Tensor,
        trace: &mut dyn FnMut(&str, &B::Tensor),
    ) -> B::Tensor {
        let c = self.config;
        let patches = b.conv2d(
            images,
            &b.param(&format!("{PREFIX}.patch_embed.proj.weight")),
            Some(&b.param(&format!("{PREFIX}.patch_embed.proj.bias"))),
            c.patch_size,
            0,
        );
        let mut x = b.permute(&patches, &[0, 2, 3, 1]);
        trace("patch_embed", &x);
        if c.encoder_use_abs_pos {
            x = b.add(&x, &b.param(&format!("{PREFIX}.pos_embed")));
        }
        for i in 0..c.encoder_depth {
            x = self.block(b, &x, i);
            trace(&format!("block{i}"), &x);
        }
        x
    }

    fn block<B: Backend>(&self, b: &B, x: &B::Tensor, index: usize) -> B::Tensor {
        let p = format!("{PREFIX}.blocks.{index}");
        let grid = self.sam.embedding_size();
        let normed = layer_norm_layer(b, x, &format!("{p}.norm1"), ENCODER_LAYERNORM_EPS);
        let attended = if self.is_global(index) {
            self.attention(b, &normed, &p, grid)
        } else {
            let ws = self.config.encoder_window_size;
            let dim = self.config.encoder_embed_dim;
            let windows = window_partition(b, &normed, grid, ws, dim);
            let out = self.attention(b, &windows, &p, ws);
            window_unpartition(b, &out, grid, ws, dim)
        };
        let x = b.add(x, &attended);
        let normed = layer_norm_layer(b, &x, &format!("{p}.norm2"), ENCODER_LAYERNORM_EPS);
        let hidden = b.gelu(&linear_layer(b, &normed, &format!("{p}.mlp.lin1")));
        b.add(&x, &linear_layer(b, &hidden, &format!("{p}.mlp.lin2")))
    }

    /// Multi-head attention over a `[B', side, side, D]` token grid.
    fn attention<B: Backend>(&self, b: &B, x: &B::Tensor, block: &str, side: usize) -> B::Tensor {
        let c = self.config;
        let heads = c.encoder_num_heads as i64;
        let dim = c.encoder_embed_dim as i64;
        let head_dim = dim / heads;
        let s = side as i64;
        let tokens = s * s;
        let qkv_bias = c.encoder_qkv_bias.then(|| b.param(&format!("{block}.attn.qkv.bias")));
        let qkv = b.linear(x, &b.param(&format!("{block}.attn.qkv.weight")), qkv_bias.as_ref());
        let qkv = b.reshape(&qkv, &[-1, tokens, 3, heads, head_dim]);
        let qkv = b.permute(&qkv, &[2, 0, 3, 1, 4]);
        let qkv = b.reshape(&qkv, &[3, -1, tokens, head_dim]);
        let part = |i: usize| b.reshape(&b.slice(&qkv, 0, i, i + 1), &[-1, tokens, head_dim]);
        let (q, k, v) = (part(0), part(1), part(2));
        let scaled_q = b.scale(&q, (head_dim as f64).powf(-0.5));
        let mut attn = b.matmul(&scaled_q, &b.permute(&k, &[0, 2, 1]));
        if c.encoder_use_rel_pos {
            attn = self.add_decomposed_rel_pos(b, &attn, &q, block, side);
        }
        let attn = b.softmax_last(&attn);
        let out = b.matmul(&attn, &v);
        let out = b.reshape(&out, &[-1, heads, s, s, head_dim]);
        let out = b.permute(&out, &[0, 2, 3, 1, 4]);
        let out = b.reshape(&out, &[-1, s, s, dim]);
        linear_layer(b, &out, &format!("{block}.attn.proj"))
    }

    /// Adds the decomposed relative position terms to attention logits `[B'', s*s, s*s]`.
    fn add_decomposed_rel_pos<B: Backend>(
        &self,
        b: &B,
        attn: &B::Tensor,
        q: &B::Tensor,
        block: &str,
        side: usize,
    ) -> B::Tensor {
        let s = side as i64;
        let head_dim = (self.config.encoder_embed_dim / self.config.encoder_num_heads) as i64;
        let rel_h = relative_position_table(b, &format!("{block}.attn.rel_pos_h"), side);
        let rel_w = relative_position_table(b, &format!("{block}.attn.rel_pos_w"), side);
        let r_q = b.reshape(q, &[-1, s, s, head_dim]);
        // rel_h[b, y, x, k] = sum_c r_q[b, y, x, c] * Rh[y, k, c]
        let by_row = b.reshape(&b.permute(&r_q, &[1, 0, 2, 3]), &[s, -1, head_dim]);
        let term_h = b.matmul(&by_row, &b.permute(&rel_h, &[0, 2, 1]));
        let term_h = b.permute(&b.reshape(&term_h, &[s, -1, s, s]), &[1, 0, 2, 3]);
        // rel_w[b, y, x, k] = sum_c r_q[b, y, x, c] * Rw[x, k, c]
        let by_col = b.reshape(&b.permute(&r_q, &[2, 0, 1, 3]), &[s, -1, head_dim]);
        let term_w = b.matmul(&by_col, &b.permute(&rel_w, &[0, 2, 1]));
        let term_w = b.permute(&b.reshape(&term_w, &[s, -1, s, s]), &[1, 2, 0, 3]);
        let attn = b.reshape(attn, &[-1, s, s, s, s]);
        let attn = b.add(&attn, &b.reshape(&term_h, &[-1, s, s, s, 1]));
        let attn = b.add(&attn, &b.reshape(&term_w, &[-1, s, s, 1, s]));
        b.reshape(&attn, &[-1, s * s, s * s])
    }
}

/// The `[side, side, C]` table of relative position embeddings for query/key grids of `side` tokens
/// (official `get_rel_pos` with equal query and key sizes): row `q - k + side - 1` of the stored
/// `[2 * side - 1, C]` table.
///
/// The official code linearly resamples a table whose length differs from `2 * side - 1`; with the
/// official (strict) state-dict loading that branch cannot be reached, because the parameter's shape is
/// fixed by the image size, and [`crate::params::ParamSpecs::check`] enforces the same shapes here.
pub fn relative_position_table<B: Backend>(b: &B, name: &str, side: usize) -> B::Tensor {
    let indices: Vec<i64> = (0..side)
        .flat_map(|q| (0..side).map(move |k| (q + side - 1 - k) as i64))
        .collect();
    b.gather_rows(&b.param(name), &indices, &[side, side])
}
