//! The mask decoder split for interactive use: what depends only on the image is computed once per image
//! ([`MaskDecoder::prepare_image`]), and each click runs only the prompt-dependent rest
//! ([`MaskDecoder::forward_prepared`]). Same parameters, same function as [`MaskDecoder::forward`] without a
//! mask prompt (equal up to float rounding); the evaluation order is changed where that saves work:
//!
//! - **Once per image**: the image tokens with the no-mask dense embedding added, and the first layer's
//!   projections of them — the keys and values its tokens attend to, the queries of its image-to-token
//!   attention (`3 x 4096 x 256 x 128` multiply-adds, over a quarter of the original per-click work).
//! - **Token-to-image attention on updated image tokens** (second layer, final attention): instead of
//!   projecting all 4096 image tokens to keys and values, the few prompt tokens are projected back into the
//!   image-token space: `q·(W_k x + b_k) = (W_kᵀ q)·x + const` (the constant cancels in the softmax) and
//!   `Σ a_i (W_v x_i + b_v) = W_v (Σ a_i x_i) + b_v` (attention weights sum to one).
//! - **Image-to-token attention**: likewise the image queries are never projected
//!   (`(W_q x + b_q)·k = x·(W_qᵀ k) + b_q·k`) and the output projection is applied to the prompt tokens'
//!   values before the attention weights mix them (`(A V) W_o = A (V W_o)`).
//! - **Output upscaling** as matrix products on channels-last image tokens (a 2x2 stride-2 transposed
//!   convolution is one product with the kernel laid out as `[in, 2·2·out]`), so the channel LayerNorm
//!   needs no transposes; after each one the rows are put in raster order by moving whole channel vectors.
//!
//! Batch size 1 (one image, one prompt set): the shape of an interactive click.

use crate::backend::{layer_norm_layer, linear_layer, Backend};
use crate::config::{DECODER_LAYERNORM_EPS, LAYERNORM2D_EPS};
use crate::mask_decoder::{mlp, DecoderOutput, MaskDecoder, PREFIX};

/// The image-only part of the mask decoder for one image (batch 1); see the module documentation.
#[derive(Clone)]
pub struct PreparedImage<T> {
    /// Image tokens plus the no-mask dense embedding, channels last: `[1, E·E, C]`.
    pub image_tokens: T,
    /// First layer, token-to-image attention: projected keys, per head and transposed `[1, H, C/2/H, E·E]`.
    pub layer0_keys: T,
    /// First layer, token-to-image attention: projected values per head `[1, H, E·E, C/2/H]`.
    pub layer0_values: T,
    /// First layer, image-to-token attention: projected image queries, per head and transposed
    /// `[1, H, C/2/H, E·E]`.
    pub layer0_queries: T,
}

impl PreparedImage<()> {
    /// The graph names of the prepared tensors, in field order.
    pub const NAMES: [&'static str; 4] = ["image_tokens", "layer0_keys", "layer0_values", "layer0_queries"];
}

impl<T> PreparedImage<T> {
    /// The tensors in the order of [`PreparedImage::NAMES`].
    pub fn tensors(&self) -> [&T; 4] {
        [
            &self.image_tokens,
            &self.layer0_keys,
            &self.layer0_values,
            &self.layer0_queries,
        ]
    }
}

/// Per-head layout helpers for one attention layer of the decoder.
struct HeadWeights<'b, B: Backend> {
    b: &'b B,
    prefix: String,
    heads: i64,
    head_dim: i64,
    dim: i64,
    /// Image tokens `E·E`.
    image_tokens: i64,
}

impl<B: Backend> HeadWeights<'_, B> {
    /// A projection's weight `[H·d, C]` as `[H, d, C]`.
    fn per_head(&self, proj: &str) -> B::Tensor {
        let w = self.b.param(&format!("{}.{proj}.weight", self.prefix));
        self.b.reshape(&w, &[self.heads, self.head_dim, self.dim])
    }

    /// A projection's bias `[H·d]` as `[H, 1, d]`.
    fn bias_per_head(&self, proj: &str) -> B::Tensor {
        let bias = self.b.param(&format!("{}.{proj}.bias", self.prefix));
        self.b.reshape(&bias, &[self.heads, 1, self.head_dim])
    }

    /// Tokens `[1, T, C]` projected by `proj` and split into heads `[1, H, T, d]`.
    fn project_tokens(&self, tokens: &B::Tensor, proj: &str) -> B::Tensor {
        let projected = linear_layer(self.b, tokens, &format!("{}.{proj}", self.prefix));
        self.b.permute(
            &self.b.reshape(&projected, &[1, -1, self.heads, self.head_dim]),
            &[0, 2, 1, 3],
        )
    }

    /// Per-head vectors `[1, H, T, d]` mapped back through `proj`'s weight: `[H·T, C]`, row `h·T + t`.
    fn back_project(&self, heads: &B::Tensor, proj: &str) -> B::Tensor {
        self.b
            .reshape(&self.b.matmul(heads, &self.per_head(proj)), &[-1, self.dim])
    }

    /// Heads `[1, H, T, d]` joined to `[1, T, H·d]` and through the output projection.
    fn join_and_project_out(&self, heads: &B::Tensor) -> B::Tensor {
        let joined = self.b.reshape(
            &self.b.permute(heads, &[0, 2, 1, 3]),
            &[1, -1, self.heads * self.head_dim],
        );
        linear_layer(self.b, &joined, &format!("{}.out_proj", self.prefix))
    }

    fn scale(&self) -> f64 {
        1.0 / (self.head_dim as f64).sqrt()
    }

    /// Prompt tokens `[1, T, C]` as attention queries: projected, per head, scaled by `1/√d`.
    fn scaled_queries(&self, tokens: &B::Tensor) -> B::Tensor {
        self.b.scale(&self.project_tokens(tokens, "q_proj"), self.scale())
    }
}

impl MaskDecoder<'_> {
    fn head_weights<'b, B: Backend>(&self, b: &'b B, prefix: String) -> HeadWeights<'b, B> {
        let c = self.config();
        let internal = c.prompt_embed_dim / c.decoder_attention_downsample_rate;
        HeadWeights {
            b,
            prefix,
            heads: c.decoder_num_heads as i64,
            head_dim: (internal / c.decoder_num_heads) as i64,
            dim: c.prompt_embed_dim as i64,
            image_tokens: (c.embedding_size() * c.embedding_size()) as i64,
        }
    }

    /// The image-only part for image embeddings `[1, C, E, E]`, the dense positional encoding
    /// `[1, C, E, E]` and the no-mask dense embedding (broadcastable to the embeddings).
    pub fn prepare_image<B: Backend>(
        &self,
        b: &B,
        image_embeddings: &B::Tensor,
        image_pe: &B::Tensor,
        no_mask_dense: &B::Tensor,
    ) -> PreparedImage<B::Tensor> {
        let dim = self.config().prompt_embed_dim as i64;
        let flatten = |x: &B::Tensor| b.permute(&b.reshape(x, &[1, dim, -1]), &[0, 2, 1]);
        let image_tokens = flatten(&b.add(image_embeddings, no_mask_dense));
        let with_pe = b.add(&image_tokens, &flatten(image_pe));
        let layer = format!("{PREFIX}.transformer.layers.0");
        let to_image = self.head_weights(b, format!("{layer}.cross_attn_token_to_image"));
        let to_token = self.head_weights(b, format!("{layer}.cross_attn_image_to_token"));
        let keys = to_image.project_tokens(&with_pe, "k_proj");
        PreparedImage {
            layer0_keys: b.permute(&keys, &[0, 1, 3, 2]),
            layer0_values: to_image.project_tokens(&image_tokens, "v_proj"),
            layer0_queries: b.permute(&to_token.project_tokens(&with_pe, "q_proj"), &[0, 1, 3, 2]),
            image_tokens,
        }
    }

    /// Masks and IoU predictions for one prepared image and its sparse prompt tokens `[1, N, C]`, with the
    /// dense positional encoding `[1, C, E, E]`: [`MaskDecoder::forward`] without a mask prompt.
    pub fn forward_prepared<B: Backend>(
        &self,
        b: &B,
        prepared: &PreparedImage<B::Tensor>,
        image_pe: &B::Tensor,
        sparse: &B::Tensor,
    ) -> DecoderOutput<B::Tensor> {
        let c = self.config();
        let dim = c.prompt_embed_dim as i64;
        let m = c.num_mask_tokens();
        let output_tokens = self.output_tokens(b);
        let tokens = b.concat(&[&output_tokens, sparse], 1);
        let key_pe = b.permute(&b.reshape(image_pe, &[1, dim, -1]), &[0, 2, 1]);
        let (hs, keys) = self.prepared_transformer(b, prepared, &key_pe, &tokens);
        let iou_token_out = b.reshape(&b.slice(&hs, 1, 0, 1), &[-1, dim]);
        let mask_tokens_out = b.slice(&hs, 1, 1, m + 1);
        let mask_dim = dim / 8;
        let hyper: Vec<B::Tensor> = (0..m)
            .map(|i| {
                let token = b.reshape(&b.slice(&mask_tokens_out, 1, i, i + 1), &[-1, dim]);
                let out = mlp(b, &token, &format!("{PREFIX}.output_hypernetworks_mlps.{i}"), 3);
                b.reshape(&out, &[1, 1, mask_dim])
            })
            .collect();
        let hyper_in = b.concat(&hyper.iter().collect::<Vec<_>>(), 1);
        let masks = self.upscaled_masks(b, &keys, &hyper_in);
        let iou_predictions = mlp(
            b,
            &iou_token_out,
            &format!("{PREFIX}.iou_prediction_head"),
            c.iou_head_depth,
        );
        DecoderOutput { masks, iou_predictions }
    }

    /// The two-way transformer on a prepared image: (queries `[1, T, C]`, image tokens `[1, E·E, C]`).
    fn prepared_transformer<B: Backend>(
        &self,
        b: &B,
        prepared: &PreparedImage<B::Tensor>,
        key_pe: &B::Tensor,
        point_embedding: &B::Tensor,
    ) -> (B::Tensor, B::Tensor) {
        let c = self.config();
        let t = format!("{PREFIX}.transformer");
        let norm = |x: &B::Tensor, name: &str| layer_norm_layer(b, x, name, DECODER_LAYERNORM_EPS);
        let mut queries = point_embedding.clone();
        let mut keys = prepared.image_tokens.clone();
        for i in 0..c.decoder_depth {
            let l = format!("{t}.layers.{i}");
            queries = self.tokens_self_attend(b, i, &queries, point_embedding);
            let to_image = self.head_weights(b, format!("{l}.cross_attn_token_to_image"));
            let q = b.add(&queries, point_embedding);
            let attn_out = if i == 0 {
                attend_prepared(&to_image, &q, &prepared.layer0_keys, &prepared.layer0_values)
            } else {
                attend_image(&to_image, &q, &b.add(&keys, key_pe), &keys)
            };
            queries = norm(&b.add(&queries, &attn_out), &format!("{l}.norm2"));
            queries = self.tokens_mlp(b, i, &queries);
            let to_token = self.head_weights(b, format!("{l}.cross_attn_image_to_token"));
            let token_keys = b.add(&queries, point_embedding);
            let image_queries = if i == 0 {
                ImageQueries::Projected(&prepared.layer0_queries)
            } else {
                ImageQueries::Tokens(b.add(&keys, key_pe))
            };
            let attn_out = attend_tokens(&to_token, image_queries, &token_keys, &queries);
            keys = norm(&b.add(&keys, &attn_out), &format!("{l}.norm4"));
        }
        let to_image = self.head_weights(b, format!("{t}.final_attn_token_to_image"));
        let q = b.add(&queries, point_embedding);
        let attn_out = attend_image(&to_image, &q, &b.add(&keys, key_pe), &keys);
        let queries = norm(&b.add(&queries, &attn_out), &format!("{t}.norm_final_attn"));
        (queries, keys)
    }

    /// Output upscaling and the hypernetwork product on channels-last image tokens `[1, E·E, C]` with
    /// mask weights `[1, M, C/8]`: low-res mask logits `[1, M, 4E, 4E]`.
    fn upscaled_masks<B: Backend>(&self, b: &B, keys: &B::Tensor, hyper_in: &B::Tensor) -> B::Tensor {
        let c = self.config();
        let dim = c.prompt_embed_dim as i64;
        let side = c.embedding_size() as i64;
        let m = c.num_mask_tokens() as i64;
        // A 2x2 stride-2 transposed convolution of a `side x side` raster of channels-last pixels:
        // out[y, x, dy, dx, o] = Σ_c in[y, x, c] · W[c, o, dy, dx] + bias[o], then the rows are put in
        // raster order of the doubled grid, (y, dy, x, dx) (the channels stay contiguous).
        let stride2 = |x: &B::Tensor, name: &str, side: i64, channels_in: i64, channels_out: i64| {
            let w = b.param(&format!("{PREFIX}.{name}.weight"));
            let w = b.reshape(&b.permute(&w, &[0, 2, 3, 1]), &[channels_in, 4 * channels_out]);
            let bias = b.param(&format!("{PREFIX}.{name}.bias"));
            let bias = b.concat(&[&bias, &bias, &bias, &bias], 0);
            let out = b.add(&b.matmul(&b.reshape(x, &[-1, channels_in]), &w), &bias);
            let out = b.reshape(&out, &[side, side, 2, 2, channels_out]);
            (out, move |t: &B::Tensor| {
                b.reshape(&b.permute(t, &[0, 2, 1, 3, 4]), &[1, -1, channels_out])
            })
        };
        let (up, to_raster) = stride2(keys, "output_upscaling.0", side, dim, dim / 4);
        let up = to_raster(&b.gelu(&layer_norm_layer(
            b,
            &up,
            &format!("{PREFIX}.output_upscaling.1"),
            LAYERNORM2D_EPS,
        )));
        let (up, to_raster) = stride2(&up, "output_upscaling.3", 2 * side, dim / 4, dim / 8);
        let up = b.reshape(&to_raster(&b.gelu(&up)), &[-1, dim / 8]);
        // [1, M, C/8] · [(4E)², C/8]ᵀ: every mask already in raster order.
        let masks = b.linear(hyper_in, &up, None);
        b.reshape(&masks, &[1, m, 4 * side, 4 * side])
    }
}

/// Token-to-image attention against prepared keys `[1, H, d, N]` and values `[1, H, N, d]`.
fn attend_prepared<B: Backend>(
    w: &HeadWeights<'_, B>,
    queries: &B::Tensor,
    keys: &B::Tensor,
    values: &B::Tensor,
) -> B::Tensor {
    let b = w.b;
    let weights = b.softmax_last(&b.matmul(&w.scaled_queries(queries), keys));
    w.join_and_project_out(&b.matmul(&weights, values))
}

/// Token-to-image attention on image tokens `[1, N, C]` (`keys` with, `values` without the positional
/// encoding) without projecting them: the queries go back through `W_k`, the weighted image tokens
/// through `W_v`.
fn attend_image<B: Backend>(
    w: &HeadWeights<'_, B>,
    queries: &B::Tensor,
    keys: &B::Tensor,
    values: &B::Tensor,
) -> B::Tensor {
    let b = w.b;
    let q_in_image_space = w.back_project(&w.scaled_queries(queries), "k_proj");
    // [1, H·T, N]: the keys' bias adds a constant per row and cancels in the softmax.
    let keys = b.reshape(keys, &[-1, w.dim]);
    let logits = b.linear(&b.reshape(&q_in_image_space, &[1, -1, w.dim]), &keys, None);
    let weights = b.softmax_last(&logits);
    let mixed = b.reshape(&b.matmul(&weights, values), &[1, w.heads, -1, w.dim]);
    let v = b.add(
        &b.matmul(&mixed, &b.permute(&w.per_head("v_proj"), &[0, 2, 1])),
        &w.bias_per_head("v_proj"),
    );
    w.join_and_project_out(&v)
}

/// The image side of an image-to-token attention.
enum ImageQueries<'t, T> {
    /// Queries already projected, per head and transposed `[1, H, d, N]`.
    Projected(&'t T),
    /// Image tokens with the positional encoding `[1, N, C]`, not projected.
    Tokens(T),
}

/// Image-to-token attention: every image token attends to the prompt tokens (`keys` with, `values`
/// without their positional encoding); the output projection is applied to the tokens' values first.
/// The attention weights are laid out `[1, H, T, N]` (the softmax runs over the short token axis, the
/// image tokens stay contiguous).
fn attend_tokens<B: Backend>(
    w: &HeadWeights<'_, B>,
    image: ImageQueries<'_, B::Tensor>,
    keys: &B::Tensor,
    values: &B::Tensor,
) -> B::Tensor {
    let b = w.b;
    let k = b.scale(&w.project_tokens(keys, "k_proj"), w.scale());
    let logits = match image {
        ImageQueries::Projected(q) => b.matmul(&k, q),
        ImageQueries::Tokens(x) => {
            let k_in_image_space = b.reshape(&w.back_project(&k, "q_proj"), &[1, -1, w.dim]);
            let logits = b.linear(&k_in_image_space, &b.reshape(&x, &[-1, w.dim]), None);
            let bias_term = b.matmul(&k, &b.permute(&w.bias_per_head("q_proj"), &[0, 2, 1]));
            b.add(&b.reshape(&logits, &[1, w.heads, -1, w.image_tokens]), &bias_term)
        }
    };
    // [1, H, T, N] → [1, N, H·T]
    let weights = b.softmax_short(&logits, 2, 4);
    let weights = b.permute(&b.reshape(&weights, &[1, -1, w.image_tokens]), &[0, 2, 1]);
    // V W_oᵀ per head: [1, H, T, C] → [H·T, C], row h·T + t as in the weights' last axis.
    let v = w.project_tokens(values, "v_proj");
    let out_weight = b.param(&format!("{}.out_proj.weight", w.prefix));
    let out_per_head = b.reshape(&b.permute(&out_weight, &[1, 0]), &[w.heads, w.head_dim, w.dim]);
    // Each head's weights sum to one over the tokens, so adding bias / H to every row adds the bias once.
    let bias_share = b.scale(&b.param(&format!("{}.out_proj.bias", w.prefix)), 1.0 / w.heads as f64);
    let v_out = b.add(&b.reshape(&b.matmul(&v, &out_per_head), &[-1, w.dim]), &bias_share);
    b.matmul(&weights, &v_out)
}
