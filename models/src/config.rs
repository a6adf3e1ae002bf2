//! SAM architecture configuration: presets (`vit_b`, `vit_l`, `vit_h`, `lite_medsam`), JSON files, and
//! inference from checkpoint shapes.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::encoder_config::{EncoderConfig, TinyVitConfig, VitConfig, SAM_EMBEDDING_SIDE};
use crate::ModelError;
use crate::Problem;

/// Largest encoder input side medico accepts (SAM's is 1024, LiteMedSAM's 256).
pub const MAX_IMG_SIZE: usize = 4096;

/// Every architecture number of a SAM model. Field names follow the reference `config.json` files, so
/// such a file (extra fields ignored) describes a custom model; the ViT numbers sit at the top level as in
/// those files, a TinyViT encoder under `tiny_vit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamConfig {
    /// Side of the square encoder input (1024 for the official models, 256 for LiteMedSAM).
    pub img_size: usize,
    /// Image channels (3).
    #[serde(default = "default_in_chans")]
    pub in_chans: usize,
    /// The image encoder's architecture.
    #[serde(flatten)]
    pub encoder: EncoderConfig,
    /// Width of prompt tokens, neck output and mask decoder.
    pub prompt_embed_dim: usize,
    /// Channels of the mask-prompt downscaling path.
    #[serde(default = "default_mask_in_chans")]
    pub mask_in_chans: usize,
    /// Two-way transformer layers.
    #[serde(default = "default_two")]
    pub decoder_depth: usize,
    /// Hidden width of the decoder transformer MLPs.
    #[serde(default = "default_decoder_mlp_dim")]
    pub decoder_mlp_dim: usize,
    /// Heads of the decoder attention layers.
    #[serde(default = "default_decoder_heads")]
    pub decoder_num_heads: usize,
    /// Internal width reduction of the decoder cross-attention layers.
    #[serde(default = "default_two")]
    pub decoder_attention_downsample_rate: usize,
    /// Masks of the multimask output (3); the decoder has one more mask token.
    #[serde(default = "default_multimask")]
    pub num_multimask_outputs: usize,
    /// Layers of the IoU prediction MLP.
    #[serde(default = "default_iou_depth")]
    pub iou_head_depth: usize,
    /// Hidden width of the IoU prediction MLP.
    #[serde(default = "default_iou_hidden")]
    pub iou_head_hidden_dim: usize,
    /// Per-channel mean subtracted on the 0–255 scale.
    #[serde(default = "default_pixel_mean")]
    pub pixel_mean: [f64; 3],
    /// Per-channel standard deviation on the 0–255 scale.
    #[serde(default = "default_pixel_std")]
    pub pixel_std: [f64; 3],
    /// Logit threshold of binary masks.
    #[serde(default)]
    pub mask_threshold: f64,
}

fn default_in_chans() -> usize {
    3
}
fn default_mask_in_chans() -> usize {
    16
}
fn default_two() -> usize {
    2
}
fn default_decoder_mlp_dim() -> usize {
    2048
}
fn default_decoder_heads() -> usize {
    8
}
fn default_multimask() -> usize {
    3
}
fn default_iou_depth() -> usize {
    3
}
fn default_iou_hidden() -> usize {
    256
}
fn default_pixel_mean() -> [f64; 3] {
    [123.675, 116.28, 103.53]
}
fn default_pixel_std() -> [f64; 3] {
    [58.395, 57.12, 57.375]
}

/// LayerNorm epsilon of the image encoder blocks.
pub const ENCODER_LAYERNORM_EPS: f64 = 1e-6;
/// Epsilon of `LayerNorm2d` (neck, mask downscaling, output upscaling).
pub const LAYERNORM2D_EPS: f64 = 1e-6;
/// LayerNorm epsilon of the two-way transformer.
pub const DECODER_LAYERNORM_EPS: f64 = 1e-5;

impl SamConfig {
    /// Names of the presets [`Self::preset`] knows.
    pub const PRESETS: [&'static str; 4] = ["vit_b", "vit_l", "vit_h", "lite_medsam"];

    /// The official configuration named `vit_b`, `vit_l` or `vit_h`, or LiteMedSAM's (`lite_medsam`).
    pub fn preset(name: &str) -> Result<Self, ModelError> {
        if name == "lite_medsam" {
            return Ok(Self::with_encoder(
                256,
                EncoderConfig::TinyVit {
                    tiny_vit: TinyVitConfig::lite_medsam(),
                },
            ));
        }
        let (dim, depth, heads, global) = match name {
            "vit_b" => (768, 12, 12, vec![2, 5, 8, 11]),
            "vit_l" => (1024, 24, 16, vec![5, 11, 17, 23]),
            "vit_h" => (1280, 32, 16, vec![7, 15, 23, 31]),
            other => {
                return Err(ModelError::config(format!(
                    "unknown architecture '{other}' (expected one of {})",
                    Self::PRESETS.join(", ")
                )))
            }
        };
        Ok(Self::with_encoder(
            1024,
            EncoderConfig::Vit(VitConfig {
                patch_size: 16,
                encoder_embed_dim: dim,
                encoder_depth: depth,
                encoder_num_heads: heads,
                encoder_mlp_ratio: 4.0,
                encoder_global_attn_indexes: global,
                encoder_window_size: 14,
                encoder_use_rel_pos: true,
                encoder_use_abs_pos: true,
                encoder_qkv_bias: true,
            }),
        ))
    }

    /// SAM's prompt encoder and mask decoder (as in every official model) behind `encoder`.
    fn with_encoder(img_size: usize, encoder: EncoderConfig) -> Self {
        Self {
            img_size,
            in_chans: 3,
            encoder,
            prompt_embed_dim: 256,
            mask_in_chans: 16,
            decoder_depth: 2,
            decoder_mlp_dim: 2048,
            decoder_num_heads: 8,
            decoder_attention_downsample_rate: 2,
            num_multimask_outputs: 3,
            iou_head_depth: 3,
            iou_head_hidden_dim: 256,
            pixel_mean: default_pixel_mean(),
            pixel_std: default_pixel_std(),
            mask_threshold: 0.0,
        }
    }

    /// The ViT numbers, when the encoder is a ViT.
    pub fn vit(&self) -> Option<&VitConfig> {
        match &self.encoder {
            EncoderConfig::Vit(v) => Some(v),
            EncoderConfig::TinyVit { .. } => None,
        }
    }

    /// The TinyViT numbers, when the encoder is a TinyViT.
    pub fn tiny_vit(&self) -> Option<&TinyVitConfig> {
        match &self.encoder {
            EncoderConfig::TinyVit { tiny_vit } => Some(tiny_vit),
            EncoderConfig::Vit(_) => None,
        }
    }

    /// Reads a configuration from a JSON file with the fields of the reference `config.json`.
    pub fn from_json_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Read {
            path: path.into(),
            source,
        })?;
        let invalid = |source: Box<dyn std::error::Error + Send + Sync>| ModelError::ConfigFile {
            path: path.into(),
            source,
        };
        let config: Self = serde_json::from_str(&text).map_err(|e| invalid(e.into()))?;
        config.validate().map_err(|e| invalid(e.into()))?;
        Ok(config)
    }

    /// Checks that the numbers fit together (divisibility, index ranges).
    pub fn validate(&self) -> Result<(), Problem> {
        if !(1..=MAX_IMG_SIZE).contains(&self.img_size) {
            return Err(Problem(format!(
                "img_size {} is outside 1..={MAX_IMG_SIZE}",
                self.img_size
            )));
        }
        match &self.encoder {
            EncoderConfig::Vit(v) => v.validate(self.img_size)?,
            EncoderConfig::TinyVit { tiny_vit } => {
                tiny_vit.validate()?;
                if !self.img_size.is_multiple_of(tiny_vit.total_stride()) {
                    return Err(Problem::from(
                        "img_size must be a multiple of the TinyViT's total stride",
                    ));
                }
            }
        }
        let checks: [(bool, String); 3] = [
            (
                self.decoder_attention_downsample_rate > 0
                    && self.decoder_num_heads > 0
                    && (self.prompt_embed_dim / self.decoder_attention_downsample_rate)
                        .is_multiple_of(self.decoder_num_heads),
                "prompt_embed_dim / decoder_attention_downsample_rate must be a multiple of decoder_num_heads".into(),
            ),
            (
                self.prompt_embed_dim.is_multiple_of(8),
                "prompt_embed_dim must be a multiple of 8".into(),
            ),
            (
                self.mask_in_chans.is_multiple_of(4) && self.mask_in_chans > 0,
                "mask_in_chans must be a positive multiple of 4".into(),
            ),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, message)) => Err(Problem(message)),
            None => Ok(()),
        }
    }

    /// Side of the image embedding grid (ViT: `img_size / patch_size`; TinyViT: `img_size` over its total
    /// stride).
    pub fn embedding_size(&self) -> usize {
        match &self.encoder {
            EncoderConfig::Vit(v) => self.img_size / v.patch_size,
            EncoderConfig::TinyVit { tiny_vit } => self.img_size / tiny_vit.total_stride(),
        }
    }

    /// Side of the low-resolution mask logits (`4 * embedding_size`).
    pub fn low_res_size(&self) -> usize {
        4 * self.embedding_size()
    }

    /// Mask tokens of the decoder (multimask outputs + the single-mask token).
    pub fn num_mask_tokens(&self) -> usize {
        self.num_multimask_outputs + 1
    }

    /// Name of the matching preset when the model is one of them, else `custom` (`custom-tiny_vit` for a
    /// TinyViT encoder).
    pub fn architecture_name(&self) -> &'static str {
        for name in Self::PRESETS {
            if Self::preset(name).is_ok_and(|p| p == *self) {
                return name;
            }
        }
        match self.encoder {
            EncoderConfig::Vit(_) => "custom",
            EncoderConfig::TinyVit { .. } => "custom-tiny_vit",
        }
    }

    /// Infers the configuration from a state dict's tensor shapes; the encoder kind from its keys.
    ///
    /// Every number is read from shapes except `decoder_num_heads` (no shape carries it): it is 8, as in
    /// all official models, unless `decoder_heads` is given. A TinyViT's input side is the one that gives
    /// SAM's 64 x 64 embedding grid, and its merge strides follow upstream's rule.
    pub fn infer_from_shapes(
        shapes: &BTreeMap<String, Vec<usize>>,
        decoder_heads: Option<usize>,
    ) -> Result<Self, ModelError> {
        let get = |key: &str| -> Result<&Vec<usize>, ModelError> {
            shapes
                .get(key)
                .ok_or_else(|| ModelError::config(format!("cannot infer the architecture: key '{key}' is missing")))
        };
        let dim_at = |key: &str, axis: usize| -> Result<usize, ModelError> {
            get(key)?.get(axis).copied().ok_or_else(|| {
                ModelError::config(format!("cannot infer the architecture: '{key}' has too few dimensions"))
            })
        };
        let count = |prefix: &str, suffix: &str| {
            (0..)
                .take_while(|i| shapes.contains_key(&format!("{prefix}{i}{suffix}")))
                .count()
        };
        let (img_size, in_chans, encoder) = if shapes.contains_key("image_encoder.patch_embed.seq.0.c.weight") {
            let tiny_vit = TinyVitConfig::infer_from_shapes(shapes)?;
            let img_size = SAM_EMBEDDING_SIDE * tiny_vit.total_stride();
            let in_chans = dim_at("image_encoder.patch_embed.seq.0.c.weight", 1)?;
            (img_size, in_chans, EncoderConfig::TinyVit { tiny_vit })
        } else {
            let (img_size, vit) = VitConfig::infer_from_shapes(shapes)?;
            let in_chans = dim_at("image_encoder.patch_embed.proj.weight", 1)?;
            (img_size, in_chans, EncoderConfig::Vit(vit))
        };
        let prompt_embed_dim = dim_at("prompt_encoder.no_mask_embed.weight", 1)?;
        let cross_dim = dim_at(
            "mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight",
            0,
        )?;
        let config = Self {
            img_size,
            in_chans,
            encoder,
            prompt_embed_dim,
            mask_in_chans: dim_at("prompt_encoder.mask_downscaling.3.weight", 0)?,
            decoder_depth: count("mask_decoder.transformer.layers.", ".norm1.weight"),
            decoder_mlp_dim: dim_at("mask_decoder.transformer.layers.0.mlp.lin1.weight", 0)?,
            decoder_num_heads: decoder_heads.unwrap_or(8),
            decoder_attention_downsample_rate: prompt_embed_dim / cross_dim.max(1),
            num_multimask_outputs: dim_at("mask_decoder.mask_tokens.weight", 0)?.saturating_sub(1),
            iou_head_depth: count("mask_decoder.iou_prediction_head.layers.", ".weight"),
            iou_head_hidden_dim: dim_at("mask_decoder.iou_prediction_head.layers.0.weight", 0)?,
            pixel_mean: default_pixel_mean(),
            pixel_std: default_pixel_std(),
            mask_threshold: 0.0,
        };
        config
            .validate()
            .map_err(|e| ModelError::config(format!("inferred configuration is inconsistent: {e}")))?;
        Ok(config)
    }
}

impl VitConfig {
    /// Checks the ViT's numbers against the input side.
    pub fn validate(&self, img_size: usize) -> Result<(), Problem> {
        let checks: [(bool, &str); 4] = [
            (
                self.patch_size > 0 && img_size.is_multiple_of(self.patch_size),
                "img_size must be a multiple of patch_size",
            ),
            (
                self.encoder_num_heads > 0 && self.encoder_embed_dim.is_multiple_of(self.encoder_num_heads),
                "encoder_embed_dim must be a multiple of encoder_num_heads",
            ),
            (self.encoder_window_size > 0, "encoder_window_size must be positive"),
            (
                self.encoder_global_attn_indexes.iter().all(|&i| i < self.encoder_depth),
                "encoder_global_attn_indexes must be below encoder_depth",
            ),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, message)) => Err(message.into()),
            None => Ok(()),
        }
    }

    /// Infers the input side and the ViT's numbers from a state dict's shapes.
    fn infer_from_shapes(shapes: &BTreeMap<String, Vec<usize>>) -> Result<(usize, Self), ModelError> {
        let dim_at = |key: &str, axis: usize| -> Result<usize, ModelError> {
            shapes
                .get(key)
                .and_then(|s| s.get(axis).copied())
                .ok_or_else(|| ModelError::config(format!("cannot infer the architecture: key '{key}' is missing")))
        };
        let embed_dim = dim_at("image_encoder.patch_embed.proj.weight", 0)?;
        let patch_size = dim_at("image_encoder.patch_embed.proj.weight", 2)?;
        let depth = (0..)
            .take_while(|i| shapes.contains_key(&format!("image_encoder.blocks.{i}.norm1.weight")))
            .count();
        let use_abs_pos = shapes.contains_key("image_encoder.pos_embed");
        let use_rel_pos = shapes.contains_key("image_encoder.blocks.0.attn.rel_pos_h");
        let img_size = if use_abs_pos {
            dim_at("image_encoder.pos_embed", 1)? * patch_size
        } else {
            1024
        };
        let grid = img_size / patch_size.max(1);
        let (heads, global, window) = if use_rel_pos {
            let head_dim = dim_at("image_encoder.blocks.0.attn.rel_pos_h", 1)?;
            let lengths: Vec<usize> = (0..depth)
                .map(|i| dim_at(&format!("image_encoder.blocks.{i}.attn.rel_pos_h"), 0))
                .collect::<Result<_, _>>()?;
            let global: Vec<usize> = (0..depth).filter(|&i| lengths[i] == 2 * grid - 1).collect();
            let window = lengths
                .iter()
                .find(|&&l| l != 2 * grid - 1)
                .map(|l| l.div_ceil(2))
                .unwrap_or(14);
            (embed_dim / head_dim.max(1), global, window)
        } else {
            let preset = match embed_dim {
                768 => SamConfig::preset("vit_b")?,
                1024 => SamConfig::preset("vit_l")?,
                1280 => SamConfig::preset("vit_h")?,
                other => {
                    return Err(ModelError::config(format!(
                        "cannot infer heads and global blocks of a {other}-wide encoder without rel-pos tensors; give a config file"
                    )))
                }
            };
            let vit = preset.vit().expect("ViT presets have a ViT encoder");
            (
                vit.encoder_num_heads,
                vit.encoder_global_attn_indexes.clone(),
                vit.encoder_window_size,
            )
        };
        let mlp_hidden = dim_at("image_encoder.blocks.0.mlp.lin1.weight", 0)?;
        Ok((
            img_size,
            Self {
                patch_size,
                encoder_embed_dim: embed_dim,
                encoder_depth: depth,
                encoder_num_heads: heads,
                encoder_mlp_ratio: mlp_hidden as f64 / embed_dim as f64,
                encoder_global_attn_indexes: global,
                encoder_window_size: window,
                encoder_use_rel_pos: use_rel_pos,
                encoder_use_abs_pos: use_abs_pos,
                encoder_qkv_bias: shapes.contains_key("image_encoder.blocks.0.attn.qkv.bias"),
            },
        ))
    }
}
