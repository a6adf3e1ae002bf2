//! How an image becomes a model's encoder input: the resize and the normalization it was trained with.
//! A bundle declares it (`model.json`), the runtime applies it (`medico-runtime`'s `preprocess`).

use serde::{Deserialize, Serialize};

use crate::encoder_config::{EncoderConfig, TinyVitStem};
use crate::SamConfig;

/// The resampling filter that brings the longest side to the input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeMethod {
    /// Pillow's bilinear filter on 8-bit RGB (SAM's `SamPredictor` via `ResizeLongestSide`).
    #[default]
    PillowBilinear,
    /// OpenCV's `INTER_AREA` on the 8-bit image (LiteMedSAM's upstream inference code).
    Cv2Area,
}

/// The per-pixel normalization after resizing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Normalization {
    /// `(v - pixel_mean) / pixel_std` per channel on the 0–255 scale (SAM).
    #[default]
    MeanStd,
    /// Min-max of the whole resized image to [0, 1] (denominator at least 1e-8), no mean/std (LiteMedSAM).
    #[serde(rename = "minmax01")]
    MinMax01,
}

/// Resize + normalization; then zero padding to the square input (bottom and right), for every model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Preprocessing {
    /// The resize.
    pub resize: ResizeMethod,
    /// The normalization.
    pub normalization: Normalization,
}

impl Preprocessing {
    /// SAM's own: Pillow bilinear, mean/std.
    pub const SAM: Self = Self {
        resize: ResizeMethod::PillowBilinear,
        normalization: Normalization::MeanStd,
    };
    /// LiteMedSAM's upstream inference code: OpenCV `INTER_AREA`, min-max to [0, 1].
    pub const LITE_MEDSAM: Self = Self {
        resize: ResizeMethod::Cv2Area,
        normalization: Normalization::MinMax01,
    };

    /// What a model of this architecture was trained with, when nothing says otherwise: LiteMedSAM's
    /// preprocessing for a TinyViT with a pointwise stem (only LiteMedSAM has one), SAM's for the rest.
    pub fn for_architecture(config: &SamConfig) -> Self {
        match &config.encoder {
            EncoderConfig::TinyVit { tiny_vit } if tiny_vit.stem == TinyVitStem::Pointwise => Self::LITE_MEDSAM,
            _ => Self::SAM,
        }
    }
}
