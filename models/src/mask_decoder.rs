//! SAM's mask decoder: the two-way transformer between prompt tokens and image tokens, output upscaling,
//! the hypernetwork MLPs that turn mask tokens into mask weights, and the IoU prediction head.

use crate::backend::{layer_norm_2d, layer_norm_layer, linear_layer, Backend};
use crate::config::{SamConfig, DECODER_LAYERNORM_EPS, LAYERNORM2D_EPS};
use crate::params::ParamSpecs;

pub(crate) const PREFIX: &str = "mask_decoder";

/// Output of [`MaskDecoder::forward`]: all mask tokens' outputs (index 0 = single-mask output).
pub struct DecoderOutput<T> {
    /// Low-resolution mask logits `[B, M, 4E, 4E]`, `M = num_multimask_outputs + 1`.
    pub masks: T,
    /// Predicted IoU `[B, M]`.
    pub iou_predictions: T,
}

/// The mask decoder of a [`SamConfig`].
pub struct MaskDecoder<'a> {
    config: &'a SamConfig,
}

impl<'a> MaskDecoder<'a> {
    /// The mask decoder of `config`.
    pub fn new(config: &'a SamConfig) -> Self {
        Self { config }
    }

    /// The architecture.
    pub(crate) fn config(&self) -> &SamConfig {
        self.config
    }

    /// Declares the mask decoder's parameters.
    pub fn param_specs(&self, specs: &mut ParamSpecs) {
        let c = self.config;
        let dim = c.prompt_embed_dim;
        let cross = dim / c.decoder_attention_downsample_rate;
        let t = format!("{PREFIX}.transformer");
        for i in 0..c.decoder_depth {
            let l = format!("{t}.layers.{i}");
            attention_specs(specs, &format!("{l}.self_attn"), dim, dim);
            specs.add_norm(&format!("{l}.norm1"), dim);
            attention_specs(specs, &format!("{l}.cross_attn_token_to_image"), dim, cross);
            specs.add_norm(&format!("{l}.norm2"), dim);
            specs.add_linear(&format!("{l}.mlp.lin1"), dim, c.decoder_mlp_dim, true);
            specs.add_linear(&format!("{l}.mlp.lin2"), c.decoder_mlp_dim, dim, true);
            specs.add_norm(&format!("{l}.norm3"), dim);
            specs.add_norm(&format!("{l}.norm4"), dim);
            attention_specs(specs, &format!("{l}.cross_attn_image_to_token"), dim, cross);
        }
        attention_specs(specs, &format!("{t}.final_attn_token_to_image"), dim, cross);
        specs.add_norm(&format!("{t}.norm_final_attn"), dim);
        specs.add(format!("{PREFIX}.iou_token.weight"), &[1, dim]);
        specs.add(format!("{PREFIX}.mask_tokens.weight"), &[c.num_mask_tokens(), dim]);
        specs.add(format!("{PREFIX}.output_upscaling.0.weight"), &[dim, dim / 4, 2, 2]);
        specs.add(format!("{PREFIX}.output_upscaling.0.bias"), &[dim / 4]);
        specs.add_norm(&format!("{PREFIX}.output_upscaling.1"), dim / 4);
        specs.add(format!("{PREFIX}.output_upscaling.3.weight"), &[dim / 4, dim / 8, 2, 2]);
        specs.add(format!("{PREFIX}.output_upscaling.3.bias"), &[dim / 8]);
        for i in 0..c.num_mask_tokens() {
            mlp_specs(
                specs,
                &format!("{PREFIX}.output_hypernetworks_mlps.{i}"),
                dim,
                dim,
                dim / 8,
                3,
            );
        }
        mlp_specs(
            specs,
            &format!("{PREFIX}.iou_prediction_head"),
            dim,
            c.iou_head_hidden_dim,
            c.num_mask_tokens(),
            c.iou_head_depth,
        );
    }

    /// Predicts masks for image embeddings `[B, C, E, E]` (one per prompt), the dense positional
    /// encoding `[1, C, E, E]`, sparse prompt tokens `[B, N, C]` (`None` for no sparse prompt) and dense
    /// prompt embeddings broadcastable to `[B, C, E, E]`.
    pub fn forward<B: Backend>(
        &self,
        b: &B,
        image_embeddings: &B::Tensor,
        image_pe: &B::Tensor,
        sparse: Option<&B::Tensor>,
        dense: &B::Tensor,
    ) -> DecoderOutput<B::Tensor> {
        let c = self.config;
        let dim = c.prompt_embed_dim as i64;
        let m = c.num_mask_tokens();
        let side = c.embedding_size() as i64;
        let output_tokens = self.output_tokens(b);
        let tokens = match sparse {
            Some(sparse) => b.concat(&[&b.expand_batch_like(&output_tokens, sparse), sparse], 1),
            None => b.expand_batch_like(&output_tokens, image_embeddings),
        };
        let src = b.add(image_embeddings, dense);
        let (hs, src) = self.two_way_transformer(b, &src, image_pe, &tokens);
        let iou_token_out = b.reshape(&b.slice(&hs, 1, 0, 1), &[-1, dim]);
        let mask_tokens_out = b.slice(&hs, 1, 1, m + 1);

        let src = b.reshape(&b.permute(&src, &[0, 2, 1]), &[-1, dim, side, side]);
        let up = b.conv_transpose2d(
            &src,
            &b.param(&format!("{PREFIX}.output_upscaling.0.weight")),
            Some(&b.param(&format!("{PREFIX}.output_upscaling.0.bias"))),
            2,
        );
        let up = b.gelu(&layer_norm_2d(
            b,
            &up,
            &format!("{PREFIX}.output_upscaling.1"),
            LAYERNORM2D_EPS,
        ));
        let up = b.gelu(&b.conv_transpose2d(
            &up,
            &b.param(&format!("{PREFIX}.output_upscaling.3.weight")),
            Some(&b.param(&format!("{PREFIX}.output_upscaling.3.bias"))),
            2,
        ));
        let low = 4 * side;
        let mask_dim = dim / 8;
        let hyper: Vec<B::Tensor> = (0..m)
            .map(|i| {
                let token = b.reshape(&b.slice(&mask_tokens_out, 1, i, i + 1), &[-1, dim]);
                let out = mlp(b, &token, &format!("{PREFIX}.output_hypernetworks_mlps.{i}"), 3);
                b.reshape(&out, &[-1, 1, mask_dim])
            })
            .collect();
        let hyper_in = b.concat(&hyper.iter().collect::<Vec<_>>(), 1);
        let flat = b.reshape(&up, &[-1, mask_dim, low * low]);
        let masks = b.reshape(&b.matmul(&hyper_in, &flat), &[-1, m as i64, low, low]);
        let iou_predictions = mlp(
            b,
            &iou_token_out,
            &format!("{PREFIX}.iou_prediction_head"),
            c.iou_head_depth,
        );
        DecoderOutput { masks, iou_predictions }
    }

    /// The learned output tokens (IoU token, then the mask tokens) `[1, M + 1, C]`.
    pub(crate) fn output_tokens<B: Backend>(&self, b: &B) -> B::Tensor {
        let c = self.config;
        let tokens = b.concat(
            &[
                &b.param(&format!("{PREFIX}.iou_token.weight")),
                &b.param(&format!("{PREFIX}.mask_tokens.weight")),
            ],
            0,
        );
        b.reshape(&tokens, &[1, c.num_mask_tokens() as i64 + 1, c.prompt_embed_dim as i64])
    }

    /// Layer `layer`'s token self-attention and `norm1`. The first layer replaces the tokens by their
    /// self-attention (no positional term, no residual); later layers add it to them.
    pub(crate) fn tokens_self_attend<B: Backend>(
        &self,
        b: &B,
        layer: usize,
        queries: &B::Tensor,
        point_embedding: &B::Tensor,
    ) -> B::Tensor {
        let l = format!("{PREFIX}.transformer.layers.{layer}");
        let self_attn = Attention {
            heads: self.config.decoder_num_heads,
            internal_dim: self.config.prompt_embed_dim,
        };
        let attended = if layer == 0 {
            self_attn.forward(b, &format!("{l}.self_attn"), queries, queries, queries)
        } else {
            let q = b.add(queries, point_embedding);
            b.add(
                queries,
                &self_attn.forward(b, &format!("{l}.self_attn"), &q, &q, queries),
            )
        };
        layer_norm_layer(b, &attended, &format!("{l}.norm1"), DECODER_LAYERNORM_EPS)
    }

    /// Layer `layer`'s token MLP with its residual and `norm3`.
    pub(crate) fn tokens_mlp<B: Backend>(&self, b: &B, layer: usize, queries: &B::Tensor) -> B::Tensor {
        let l = format!("{PREFIX}.transformer.layers.{layer}");
        let hidden = b.relu(&linear_layer(b, queries, &format!("{l}.mlp.lin1")));
        let mlp_out = linear_layer(b, &hidden, &format!("{l}.mlp.lin2"));
        layer_norm_layer(
            b,
            &b.add(queries, &mlp_out),
            &format!("{l}.norm3"),
            DECODER_LAYERNORM_EPS,
        )
    }

    /// The two-way transformer: returns (queries `[B, T, C]`, keys `[B, E*E, C]`).
    fn two_way_transformer<B: Backend>(
        &self,
        b: &B,
        image: &B::Tensor,
        image_pe: &B::Tensor,
        point_embedding: &B::Tensor,
    ) -> (B::Tensor, B::Tensor) {
        let c = self.config;
        let dim = c.prompt_embed_dim as i64;
        let flatten = |x: &B::Tensor| b.permute(&b.reshape(x, &[0, dim, -1]), &[0, 2, 1]);
        let image_tokens = flatten(image);
        let key_pe = flatten(image_pe);
        let t = format!("{PREFIX}.transformer");
        let norm = |x: &B::Tensor, name: &str| layer_norm_layer(b, x, name, DECODER_LAYERNORM_EPS);
        let heads = c.decoder_num_heads;
        let cross_dim = c.prompt_embed_dim / c.decoder_attention_downsample_rate;
        let cross_attn = Attention {
            heads,
            internal_dim: cross_dim,
        };
        let mut queries = point_embedding.clone();
        let mut keys = image_tokens;
        for i in 0..c.decoder_depth {
            let l = format!("{t}.layers.{i}");
            queries = self.tokens_self_attend(b, i, &queries, point_embedding);
            // Tokens attend to the image.
            let q = b.add(&queries, point_embedding);
            let k = b.add(&keys, &key_pe);
            let attn_out = cross_attn.forward(b, &format!("{l}.cross_attn_token_to_image"), &q, &k, &keys);
            queries = norm(&b.add(&queries, &attn_out), &format!("{l}.norm2"));
            queries = self.tokens_mlp(b, i, &queries);
            // The image attends to the tokens.
            let q = b.add(&queries, point_embedding);
            let k = b.add(&keys, &key_pe);
            let attn_out = cross_attn.forward(b, &format!("{l}.cross_attn_image_to_token"), &k, &q, &queries);
            keys = norm(&b.add(&keys, &attn_out), &format!("{l}.norm4"));
        }
        let q = b.add(&queries, point_embedding);
        let k = b.add(&keys, &key_pe);
        let attn_out = cross_attn.forward(b, &format!("{t}.final_attn_token_to_image"), &q, &k, &keys);
        let queries = norm(&b.add(&queries, &attn_out), &format!("{t}.norm_final_attn"));
        (queries, keys)
    }
}

/// Declares an attention layer whose q/k/v project `dim` to `internal` and out projects back.
fn attention_specs(specs: &mut ParamSpecs, prefix: &str, dim: usize, internal: usize) {
    for proj in ["q_proj", "k_proj", "v_proj"] {
        specs.add_linear(&format!("{prefix}.{proj}"), dim, internal, true);
    }
    specs.add_linear(&format!("{prefix}.out_proj"), internal, dim, true);
}

/// Declares an MLP of `depth` linear layers `input → hidden → … → output`.
fn mlp_specs(specs: &mut ParamSpecs, prefix: &str, input: usize, hidden: usize, output: usize, depth: usize) {
    for i in 0..depth {
        let inp = if i == 0 { input } else { hidden };
        let out = if i + 1 == depth { output } else { hidden };
        specs.add_linear(&format!("{prefix}.layers.{i}"), inp, out, true);
    }
}

/// The decoder's MLP: ReLU after every layer but the last.
pub(crate) fn mlp<B: Backend>(b: &B, x: &B::Tensor, prefix: &str, depth: usize) -> B::Tensor {
    let mut x = linear_layer(b, x, &format!("{prefix}.layers.0"));
    for i in 1..depth {
        x = linear_layer(b, &b.relu(&x), &format!("{prefix}.layers.{i}"));
    }
    x
}

/// Multi-head attention with separate q/k/v projections to `internal_dim` (`[B, n, C]` inputs).
pub(crate) struct Attention {
    pub(crate) heads: usize,
    pub(crate) internal_dim: usize,
}

impl Attention {
    pub(crate) fn forward<B: Backend>(
        &self,
        b: &B,
        prefix: &str,
        q: &B::Tensor,
        k: &B::Tensor,
        v: &B::Tensor,
    ) -> B::Tensor {
        let head_dim = (self.internal_dim / self.heads) as i64;
        let split_heads = |x: &B::Tensor, proj: &str| {
            let projected = linear_layer(b, x, &format!("{prefix}.{proj}"));
            b.permute(
                &b.reshape(&projected, &[0, -1, self.heads as i64, head_dim]),
                &[0, 2, 1, 3],
            )
        };
        let q = split_heads(q, "q_proj");
        let k = split_heads(k, "k_proj");
        let v = split_heads(v, "v_proj");
        let logits = b.scale(
            &b.matmul(&q, &b.permute(&k, &[0, 1, 3, 2])),
            1.0 / (head_dim as f64).sqrt(),
        );
        let out = b.matmul(&b.softmax_last(&logits), &v);
        let out = b.reshape(&b.permute(&out, &[0, 2, 1, 3]), &[0, -1, self.internal_dim as i64]);
        linear_layer(b, &out, &format!("{prefix}.out_proj"))
    }
}
