//! The 2D UNETR decoder of torch-em (`torch_em/model/unetr.py: UNETR`, as micro-sam builds it for
//! MedicoSAM's semantic segmentation: no skip connections, Sigmoid output) on the embeddings of any medico
//! image encoder, with torch-em's key names, so a published `decoder_state` loads unchanged.
//!
//! From an embedding `[B, E, g, g]`: four chained `Deconv2DBlock`s (`deconv1..4`: 2x upsampling → 3x3
//! conv → BatchNorm → ReLU; features `8f, 4f, 2f, f`), a `base` `ConvBlock2d` (`[InstanceNorm → 3x3 conv
//! → ReLU] x 2`) on the embedding, three decoder stages (2x upsampling, concatenation with the matching
//! deconv map centre-cropped to the upsampled map's channels — torch-em's `Decoder._crop` crops every axis
//! after the batch, channels included — then a `ConvBlock2d`), `deconv_out` (2x), concatenation with
//! `deconv4`'s map, `decoder_head`, the 1x1 `out_conv` and a Sigmoid: `[B, classes, 16g, 16g]`. The
//! upsamplers are bilinear + 1x1 conv (`Upsampler2d`, keys `*.conv.*`) or a 2x2 transposed convolution
//! (`SingleDeconv2DBlock`, keys `*.block.*`), as the checkpoint says.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, BatchNorm};
use crate::params::ParamSpecs;
use crate::ModelError;

/// PyTorch's default epsilon of `BatchNorm2d` and `InstanceNorm2d`.
const NORM_EPS: f64 = 1e-5;
/// Number of 2x upsamplings from the embedding grid to the decoder output (`deconv1..4`).
const DOUBLINGS: usize = 4;
/// Stages of `decoder` (torch-em's `depth`).
const DECODER_STAGES: usize = 3;

/// How the decoder doubles its resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Upsampler {
    /// Bilinear interpolation then a 1x1 convolution (torch-em's default, `Upsampler2d`).
    Bilinear,
    /// A 2x2 transposed convolution with stride 2 (`use_conv_transpose=True`).
    ConvTranspose,
}

/// The numbers that fix a UNETR decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnetrConfig {
    /// Channels of the encoder output (SAM's neck: 256).
    pub embed_dim: usize,
    /// Features of the finest level (torch-em's `initial_features`, 64 by default); the levels have
    /// `8f, 4f, 2f, f`.
    pub initial_features: usize,
    /// Output channels: one per class, background included.
    pub out_channels: usize,
    /// The upsampling layers.
    pub upsampler: Upsampler,
}

impl UnetrConfig {
    /// Features per level, coarsest first (torch-em's `features_decoder`).
    pub fn features(&self) -> [usize; DOUBLINGS] {
        let f = self.initial_features;
        [8 * f, 4 * f, 2 * f, f]
    }

    /// How many times larger the output is than the embedding grid.
    pub fn output_scale(&self) -> usize {
        1 << DOUBLINGS
    }

    /// The configuration of a decoder state dict, from its shapes: the embedding width from `base`'s first
    /// convolution, the features and classes from `out_conv`, the upsampler from the decoder's sampler keys.
    pub fn infer_from_shapes(shapes: &BTreeMap<String, Vec<usize>>) -> Result<Self, ModelError> {
        let shape = |key: &str| {
            shapes
                .get(key)
                .ok_or_else(|| ModelError::config(format!("not a UNETR decoder: no '{key}'")))
        };
        let base = shape("base.block.1.weight")?;
        let out_conv = shape("out_conv.weight")?;
        let upsampler = if shapes.contains_key("decoder.samplers.0.block.weight") {
            Upsampler::ConvTranspose
        } else if shapes.contains_key("decoder.samplers.0.conv.weight") {
            Upsampler::Bilinear
        } else {
            return Err(ModelError::config(
                "not a UNETR decoder: no 'decoder.samplers.0.conv.weight' or 'decoder.samplers.0.block.weight'",
            ));
        };
        if base.len() != 4 || out_conv.len() != 4 {
            return Err(ModelError::config(
                "not a UNETR decoder: convolution weights must have 4 axes",
            ));
        }
        Ok(Self {
            embed_dim: base[1],
            initial_features: out_conv[1],
            out_channels: out_conv[0],
            upsampler,
        })
    }
}

/// A UNETR decoder of a [`UnetrConfig`].
#[derive(Debug, Clone)]
pub struct UnetrDecoder {
    /// Its numbers.
    pub config: UnetrConfig,
}

impl UnetrDecoder {
    /// The decoder of `config`.
    pub fn new(config: UnetrConfig) -> Self {
        Self { config }
    }

    /// The parameters, torch-em's keys (the module's own, without the encoder's `encoder.*`).
    pub fn param_specs(&self) -> ParamSpecs {
        let mut specs = ParamSpecs::default();
        let f = self.config.features();
        let e = self.config.embed_dim;
        let up = self.config.upsampler;
        let deconv_inputs = [e, f[0], f[1], f[2]];
        for (i, (&inp, &out)) in deconv_inputs.iter().zip(&f).enumerate() {
            add_deconv_block(&mut specs, &format!("deconv{}", i + 1), inp, out, up);
        }
        add_conv_block(&mut specs, "base", e, f[0]);
        for i in 0..DECODER_STAGES {
            add_upsampler(&mut specs, &format!("decoder.samplers.{i}"), f[i], f[i + 1], up);
            add_conv_block(&mut specs, &format!("decoder.blocks.{i}"), f[i], f[i + 1]);
        }
        add_upsampler(&mut specs, "deconv_out", f[3], f[3], up);
        add_conv_block(&mut specs, "decoder_head", 2 * f[3], f[3]);
        specs.add("out_conv.weight", &[self.config.out_channels, f[3], 1, 1]);
        specs.add("out_conv.bias", &[self.config.out_channels]);
        specs
    }

    /// Class probabilities `[B, classes, 16g, 16g]` (after the Sigmoid) of embeddings `[B, E, g, g]`.
    pub fn forward<B: Backend>(&self, b: &B, embeddings: &B::Tensor, grid: usize) -> B::Tensor {
        let f = self.config.features();
        let e = self.config.embed_dim;
        let up = self.config.upsampler;
        let mut skips = Vec::with_capacity(DOUBLINGS);
        let mut deconv = embeddings.clone();
        for i in 0..DOUBLINGS {
            deconv = deconv_block(b, &deconv, &format!("deconv{}", i + 1), grid << i, up);
            skips.push(deconv.clone());
        }
        let mut x = conv_block(b, embeddings, "base", e, f[0]);
        for (i, skip) in skips.iter().take(DECODER_STAGES).enumerate() {
            x = upsample(b, &x, &format!("decoder.samplers.{i}"), grid << i, up);
            let skip = centre_crop_channels(b, skip, f[i], f[i + 1]);
            x = conv_block(
                b,
                &b.concat(&[&x, &skip], 1),
                &format!("decoder.blocks.{i}"),
                f[i],
                f[i + 1],
            );
        }
        let x = upsample(b, &x, "deconv_out", grid << DECODER_STAGES, up);
        let x = conv_block(
            b,
            &b.concat(&[&x, &skips[DOUBLINGS - 1]], 1),
            "decoder_head",
            2 * f[3],
            f[3],
        );
        let logits = b.conv2d(&x, &b.param("out_conv.weight"), Some(&b.param("out_conv.bias")), 1, 0);
        b.sigmoid(&logits)
    }

    /// [`Self::forward`] resized to the encoder's input side `image_size` (torch-em's first
    /// post-processing step; the crop to the resized image and the resize to the original size follow
    /// outside, as for SAM's masks).
    pub fn forward_at_input_size<B: Backend>(
        &self,
        b: &B,
        embeddings: &B::Tensor,
        grid: usize,
        image_size: usize,
    ) -> B::Tensor {
        let probabilities = self.forward(b, embeddings, grid);
        if grid * self.config.output_scale() == image_size {
            probabilities
        } else {
            b.resize_bilinear(&probabilities, image_size, image_size)
        }
    }
}

/// The middle `keep` of `channels` channels (torch-em's `Decoder._crop` on the channel axis).
fn centre_crop_channels<B: Backend>(b: &B, x: &B::Tensor, channels: usize, keep: usize) -> B::Tensor {
    let start = (channels - keep) / 2;
    b.slice(x, 1, start, start + keep)
}

/// Doubles the resolution of `x` (side `side`) with the upsampler under `prefix`.
fn upsample<B: Backend>(b: &B, x: &B::Tensor, prefix: &str, side: usize, up: Upsampler) -> B::Tensor {
    match up {
        Upsampler::Bilinear => {
            let resized = b.resize_bilinear(x, 2 * side, 2 * side);
            let (w, bias) = (
                b.param(&format!("{prefix}.conv.weight")),
                b.param(&format!("{prefix}.conv.bias")),
            );
            b.conv2d(&resized, &w, Some(&bias), 1, 0)
        }
        Upsampler::ConvTranspose => {
            let (w, bias) = (
                b.param(&format!("{prefix}.block.weight")),
                b.param(&format!("{prefix}.block.bias")),
            );
            b.conv_transpose2d(x, &w, Some(&bias), 2)
        }
    }
}

fn add_upsampler(specs: &mut ParamSpecs, prefix: &str, inp: usize, out: usize, up: Upsampler) {
    match up {
        Upsampler::Bilinear => {
            specs.add(format!("{prefix}.conv.weight"), &[out, inp, 1, 1]);
            specs.add(format!("{prefix}.conv.bias"), &[out]);
        }
        Upsampler::ConvTranspose => {
            specs.add(format!("{prefix}.block.weight"), &[inp, out, 2, 2]);
            specs.add(format!("{prefix}.block.bias"), &[out]);
        }
    }
}

/// `Deconv2DBlock`: upsampler (`block.0`), 3x3 conv (`block.1.block`), BatchNorm (`block.2`), ReLU.
fn deconv_block<B: Backend>(b: &B, x: &B::Tensor, prefix: &str, side: usize, up: Upsampler) -> B::Tensor {
    let x = upsample(b, x, &format!("{prefix}.block.0"), side, up);
    let param = |name: &str| b.param(&format!("{prefix}.block.{name}"));
    let (weight, bias, mean, var) = (
        param("2.weight"),
        param("2.bias"),
        param("2.running_mean"),
        param("2.running_var"),
    );
    let norm = BatchNorm {
        weight: &weight,
        bias: &bias,
        running_mean: &mean,
        running_var: &var,
        eps: NORM_EPS,
    };
    let y = b.conv2d_batch_norm(
        &x,
        &param("1.block.weight"),
        Some(&param("1.block.bias")),
        &norm,
        1,
        1,
        1,
    );
    b.relu(&y)
}

fn add_deconv_block(specs: &mut ParamSpecs, prefix: &str, inp: usize, out: usize, up: Upsampler) {
    add_upsampler(specs, &format!("{prefix}.block.0"), inp, out, up);
    specs.add(format!("{prefix}.block.1.block.weight"), &[out, out, 3, 3]);
    specs.add(format!("{prefix}.block.1.block.bias"), &[out]);
    for name in ["weight", "bias", "running_mean", "running_var"] {
        specs.add(format!("{prefix}.block.2.{name}"), &[out]);
    }
}

/// `ConvBlock2d`: `[InstanceNorm → 3x3 conv → ReLU]` twice (convolutions at `block.1` and `block.4`).
fn conv_block<B: Backend>(b: &B, x: &B::Tensor, prefix: &str, in_channels: usize, out_channels: usize) -> B::Tensor {
    let conv = |x: &B::Tensor, index: usize| {
        let weight = b.param(&format!("{prefix}.block.{index}.weight"));
        let bias = b.param(&format!("{prefix}.block.{index}.bias"));
        b.relu(&b.conv2d(x, &weight, Some(&bias), 1, 1))
    };
    let y = conv(&b.instance_norm(x, in_channels, NORM_EPS), 1);
    conv(&b.instance_norm(&y, out_channels, NORM_EPS), 4)
}

fn add_conv_block(specs: &mut ParamSpecs, prefix: &str, inp: usize, out: usize) {
    specs.add(format!("{prefix}.block.1.weight"), &[out, inp, 3, 3]);
    specs.add(format!("{prefix}.block.1.bias"), &[out]);
    specs.add(format!("{prefix}.block.4.weight"), &[out, out, 3, 3]);
    specs.add(format!("{prefix}.block.4.bias"), &[out]);
}
