//! SAM's prompt encoder: random-Fourier positional encoding of points and box corners, learned point-type
//! embeddings, and the dense mask prompt (downscaling convolutions, or the learned no-mask embedding).

use crate::backend::{layer_norm_2d, Backend};
use crate::config::{SamConfig, LAYERNORM2D_EPS};
use crate::params::ParamSpecs;

const PREFIX: &str = "prompt_encoder";

/// Number of learned point-type embeddings: negative, positive, box top-left, box bottom-right.
pub const NUM_POINT_EMBEDDINGS: usize = 4;

/// The dense (mask) prompt given to [`PromptEncoder::embed_dense`].
pub enum DensePrompt<'t, T> {
    /// No mask: the learned no-mask embedding everywhere.
    None,
    /// Low-resolution mask logits `[B, 1, 4E, 4E]`.
    Mask(&'t T),
    /// The official ONNX interface's blend: `has_mask * embed(mask) + (1 - has_mask) * no_mask`, where
    /// `has_mask` is a `[1]` tensor holding 0 or 1.
    Blend {
        /// Low-resolution mask logits `[1, 1, 4E, 4E]`.
        mask: &'t T,
        /// `[1]`: 1 when the mask is used.
        has_mask: &'t T,
    },
}

/// The prompt encoder of a [`SamConfig`].
pub struct PromptEncoder<'a> {
    config: &'a SamConfig,
}

impl<'a> PromptEncoder<'a> {
    /// The prompt encoder of `config`.
    pub fn new(config: &'a SamConfig) -> Self {
        Self { config }
    }

    /// Declares the prompt encoder's parameters.
    pub fn param_specs(&self, specs: &mut ParamSpecs) {
        let dim = self.config.prompt_embed_dim;
        let mask_chans = self.config.mask_in_chans;
        specs.add(
            format!("{PREFIX}.pe_layer.positional_encoding_gaussian_matrix"),
            &[2, dim / 2],
        );
        for i in 0..NUM_POINT_EMBEDDINGS {
            specs.add(format!("{PREFIX}.point_embeddings.{i}.weight"), &[1, dim]);
        }
        specs.add(format!("{PREFIX}.not_a_point_embed.weight"), &[1, dim]);
        specs.add(
            format!("{PREFIX}.mask_downscaling.0.weight"),
            &[mask_chans / 4, 1, 2, 2],
        );
        specs.add(format!("{PREFIX}.mask_downscaling.0.bias"), &[mask_chans / 4]);
        specs.add_norm(&format!("{PREFIX}.mask_downscaling.1"), mask_chans / 4);
        specs.add(
            format!("{PREFIX}.mask_downscaling.3.weight"),
            &[mask_chans, mask_chans / 4, 2, 2],
        );
        specs.add(format!("{PREFIX}.mask_downscaling.3.bias"), &[mask_chans]);
        specs.add_norm(&format!("{PREFIX}.mask_downscaling.4"), mask_chans);
        specs.add(format!("{PREFIX}.mask_downscaling.6.weight"), &[dim, mask_chans, 1, 1]);
        specs.add(format!("{PREFIX}.mask_downscaling.6.bias"), &[dim]);
        specs.add(format!("{PREFIX}.no_mask_embed.weight"), &[1, dim]);
    }

    /// Random-Fourier encoding of rank-3 coordinates normalized to `[0, 1]` (`[A, B, 2]` → `[A, B, C]`).
    fn encode_unit_coords<B: Backend>(&self, b: &B, coords: &B::Tensor) -> B::Tensor {
        let centered = b.add_scalar(&b.scale(coords, 2.0), -1.0);
        let gaussian = b.param(&format!("{PREFIX}.pe_layer.positional_encoding_gaussian_matrix"));
        let projected = b.scale(&b.matmul(&centered, &gaussian), 2.0 * std::f64::consts::PI);
        b.concat(&[&b.sin(&projected), &b.cos(&projected)], 2)
    }

    /// Positional encoding of the image embedding grid, `[1, C, E, E]` (official `get_dense_pe`).
    pub fn dense_pe<B: Backend>(&self, b: &B) -> B::Tensor {
        let side = self.config.embedding_size();
        let mut grid = Vec::with_capacity(side * side * 2);
        for y in 0..side {
            for x in 0..side {
                grid.push(((x + 1) as f32 - 0.5) / side as f32);
                grid.push(((y + 1) as f32 - 0.5) / side as f32);
            }
        }
        let encoded = self.encode_unit_coords(b, &b.constant(&grid, &[side, side, 2]));
        let dim = self.config.prompt_embed_dim as i64;
        let s = side as i64;
        b.reshape(&b.permute(&encoded, &[2, 0, 1]), &[1, dim, s, s])
    }

    /// Sparse prompt embeddings `[B, N, C]` of points `[B, N, 2]` (pixels of the padded input frame)
    /// with labels `[B, N]`: -1 padding ("not a point"), 0 negative, 1 positive, 2 and 3 box corners.
    ///
    /// Equal to the official predictor's point and box embedding when boxes are passed as two corner
    /// points labelled 2 and 3 after the points, and a padding point is appended when there is no box.
    pub fn embed_points<B: Backend>(&self, b: &B, coords: &B::Tensor, labels: &B::Tensor) -> B::Tensor {
        let size = self.config.img_size as f64;
        let unit = b.scale(&b.add_scalar(coords, 0.5), 1.0 / size);
        let encoded = self.encode_unit_coords(b, &unit);
        let label_is = |value: f64| b.reshape(&b.equal_scalar(labels, value), &[0, 0, 1]);
        let is_padding = label_is(-1.0);
        let not_padding = b.add_scalar(&b.scale(&is_padding, -1.0), 1.0);
        let mut embedding = b.add(
            &b.mul(&encoded, &not_padding),
            &b.mul(&b.param(&format!("{PREFIX}.not_a_point_embed.weight")), &is_padding),
        );
        for i in 0..NUM_POINT_EMBEDDINGS {
            let learned = b.param(&format!("{PREFIX}.point_embeddings.{i}.weight"));
            embedding = b.add(&embedding, &b.mul(&learned, &label_is(i as f64)));
        }
        embedding
    }

    /// Dense prompt embeddings, broadcastable to `[B, C, E, E]`.
    pub fn embed_dense<B: Backend>(&self, b: &B, prompt: DensePrompt<'_, B::Tensor>) -> B::Tensor {
        match prompt {
            DensePrompt::None => self.no_mask_embedding(b),
            DensePrompt::Mask(mask) => self.downscale_mask(b, mask),
            DensePrompt::Blend { mask, has_mask } => {
                let without = b.add_scalar(&b.scale(has_mask, -1.0), 1.0);
                b.add(
                    &b.mul(&self.downscale_mask(b, mask), has_mask),
                    &b.mul(&self.no_mask_embedding(b), &without),
                )
            }
        }
    }

    fn no_mask_embedding<B: Backend>(&self, b: &B) -> B::Tensor {
        let dim = self.config.prompt_embed_dim as i64;
        b.reshape(&b.param(&format!("{PREFIX}.no_mask_embed.weight")), &[1, dim, 1, 1])
    }

    fn downscale_mask<B: Backend>(&self, b: &B, mask: &B::Tensor) -> B::Tensor {
        let conv = |x: &B::Tensor, layer: usize, stride: usize| {
            let p = format!("{PREFIX}.mask_downscaling.{layer}");
            b.conv2d(
                x,
                &b.param(&format!("{p}.weight")),
                Some(&b.param(&format!("{p}.bias"))),
                stride,
                0,
            )
        };
        let x = conv(mask, 0, 2);
        let x = b.gelu(&layer_norm_2d(
            b,
            &x,
            &format!("{PREFIX}.mask_downscaling.1"),
            LAYERNORM2D_EPS,
        ));
        let x = conv(&x, 3, 2);
        let x = b.gelu(&layer_norm_2d(
            b,
            &x,
            &format!("{PREFIX}.mask_downscaling.4"),
            LAYERNORM2D_EPS,
        ));
        conv(&x, 6, 1)
    }
}
