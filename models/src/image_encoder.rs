//! The image encoder of a SAM model: SAM's ViT or a TinyViT, as the configuration says, then the
//! convolutional neck both share (1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d, no biases).

use crate::backend::{layer_norm_2d, Backend};
use crate::config::{SamConfig, LAYERNORM2D_EPS};
use crate::encoder_config::EncoderConfig;
use crate::params::ParamSpecs;
use crate::tiny_vit::TinyVitEncoder;
use crate::vit::VitEncoder;

/// The image encoder of a [`SamConfig`]: its backbone, then the neck.
pub struct ImageEncoder<'a> {
    config: &'a SamConfig,
    backbone: Backbone<'a>,
}

/// The part before the neck.
enum Backbone<'a> {
    Vit(VitEncoder<'a>),
    TinyVit(TinyVitEncoder<'a>),
}

impl<'a> ImageEncoder<'a> {
    /// The encoder of `config`.
    pub fn new(config: &'a SamConfig) -> Self {
        let backbone = match &config.encoder {
            EncoderConfig::Vit(vit) => Backbone::Vit(VitEncoder::new(config, vit)),
            EncoderConfig::TinyVit { tiny_vit } => Backbone::TinyVit(TinyVitEncoder::new(config, tiny_vit)),
        };
        Self { config, backbone }
    }

    /// Declares the encoder's parameters.
    pub fn param_specs(&self, specs: &mut ParamSpecs) {
        let features = match &self.backbone {
            Backbone::Vit(e) => {
                e.param_specs(specs);
                e.output_dim()
            }
            Backbone::TinyVit(e) => {
                e.param_specs(specs);
                e.output_dim()
            }
        };
        let out = self.config.prompt_embed_dim;
        specs.add(format!("{NECK}.0.weight"), &[out, features, 1, 1]);
        specs.add_norm(&format!("{NECK}.1"), out);
        specs.add(format!("{NECK}.2.weight"), &[out, out, 3, 3]);
        specs.add_norm(&format!("{NECK}.3"), out);
    }

    /// Encodes normalized, padded images `[B, 3, S, S]` into embeddings `[B, C, E, E]`.
    pub fn forward<B: Backend>(&self, b: &B, images: &B::Tensor) -> B::Tensor {
        self.forward_traced(b, images, &mut |_, _| {})
    }

    /// As [`Self::forward`], and hands named intermediate outputs to `trace` (ViT: `patch_embed`,
    /// `block{i}`; TinyViT: `patch_embed`, `layer{i}`).
    pub fn forward_traced<B: Backend>(
        &self,
        b: &B,
        images: &B::Tensor,
        trace: &mut dyn FnMut(&str, &B::Tensor),
    ) -> B::Tensor {
        let tokens = match &self.backbone {
            Backbone::Vit(e) => e.features_traced(b, images, trace),
            Backbone::TinyVit(e) => e.features_traced(b, images, trace),
        };
        let channels_first = b.permute(&tokens, &[0, 3, 1, 2]);
        let y = b.conv2d(&channels_first, &b.param(&format!("{NECK}.0.weight")), None, 1, 0);
        let y = layer_norm_2d(b, &y, &format!("{NECK}.1"), LAYERNORM2D_EPS);
        let y = b.conv2d(&y, &b.param(&format!("{NECK}.2.weight")), None, 1, 1);
        layer_norm_2d(b, &y, &format!("{NECK}.3"), LAYERNORM2D_EPS)
    }
}

/// Key prefix of the neck's parameters.
const NECK: &str = "image_encoder.neck";
