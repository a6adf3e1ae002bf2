//! `model.json`: what a bundle holds and how its model must be fed.

use std::collections::BTreeMap;

use medico_models::{Preprocessing, SamConfig, UnetrConfig};
use serde::{Deserialize, Serialize};

/// Name of the manifest inside a bundle.
pub const MANIFEST: &str = "model.json";
/// Bundle format identifier.
pub const FORMAT: &str = "medico-bundle/1";
/// The intensity normalization MedicoSAM was trained with (per-slice 1st–99th percentile to 0–255).
pub const DEFAULT_INTENSITY: &str = "percentile:1,99";
/// MedSAM's (and so LiteMedSAM's) intensity rule for non-CT images: 0.5–99.5 percentile of the non-zero
/// values to 0–255.
pub const LITE_MEDSAM_INTENSITY: &str = "nonzero-percentile:0.5,99.5";

/// The intensity normalization a model with this preprocessing was trained with.
pub fn default_intensity(preprocessing: &Preprocessing) -> &'static str {
    if *preprocessing == Preprocessing::LITE_MEDSAM {
        LITE_MEDSAM_INTENSITY
    } else {
        DEFAULT_INTENSITY
    }
}

/// What a graph of the bundle does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GraphRole {
    /// Image → embeddings.
    Encoder,
    /// The official SAM ONNX decoder: all mask tokens, post-processed to the original image size.
    Decoder,
    /// The official decoder with `return_single_mask`.
    DecoderSingle,
    /// Low-resolution logits only (for engines that cannot resize by a runtime value).
    DecoderLowres,
    /// The decoder's image-only part, run once per image (optional; see `decoder_prompt`).
    DecoderPrepare,
    /// Low-resolution logits from a prepared image and points, no mask prompt: the per-click graph.
    DecoderPrompt,
    /// The semantic segmentation head (torch-em's UNETR decoder): embeddings → class probabilities at the
    /// encoder's input size (optional; see [`SemanticHead`]).
    SegmentationDecoder,
    /// The walk's own decoder, low-resolution logits (optional; see [`PropagationDefaults::decoder_blend`]):
    /// propagation prompts each slice with it instead of the interactive decoder.
    PropagationDecoderLowres,
    /// The walk's own decoder, image-only part (with `propagation_decoder_prompt`, optional).
    PropagationDecoderPrepare,
    /// The walk's own decoder, per-prompt part without a mask prompt (optional).
    PropagationDecoderPrompt,
}

impl GraphRole {
    /// The name `model.json` uses.
    pub fn name(self) -> &'static str {
        match self {
            GraphRole::Encoder => "encoder",
            GraphRole::Decoder => "decoder",
            GraphRole::DecoderSingle => "decoder_single",
            GraphRole::DecoderLowres => "decoder_lowres",
            GraphRole::DecoderPrepare => "decoder_prepare",
            GraphRole::DecoderPrompt => "decoder_prompt",
            GraphRole::SegmentationDecoder => "segmentation_decoder",
            GraphRole::PropagationDecoderLowres => "propagation_decoder_lowres",
            GraphRole::PropagationDecoderPrepare => "propagation_decoder_prepare",
            GraphRole::PropagationDecoderPrompt => "propagation_decoder_prompt",
        }
    }
}

impl std::fmt::Display for GraphRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a bundle's weights came from.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Provenance {
    /// Registry or model name, e.g. `vit_b_medical_imaging`.
    pub name: Option<String>,
    /// Download URL, when the checkpoint came from a registry.
    pub url: Option<String>,
    /// Training data, when known.
    pub training_data: Option<String>,
    /// Anything else worth keeping (command, seed, steps, metrics).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// A file of the bundle with its checksum.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    /// Lower-case hex SHA-256.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// `model.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// `vit_b`, `vit_l`, `vit_h` or `custom`.
    pub architecture: String,
    /// Every architecture number, pixel mean/std and mask threshold.
    pub config: SamConfig,
    /// Side of the square encoder input.
    pub input_size: usize,
    /// Resize and normalization of the encoder input (bundles without it: SAM's).
    #[serde(default)]
    pub preprocessing: Preprocessing,
    /// Intensity normalization the model expects for medical images (see the runtime's `--intensity`).
    pub intensity: String,
    /// Role → file name.
    pub graphs: BTreeMap<GraphRole, String>,
    /// File name → checksum, for every graph.
    pub files: BTreeMap<String, FileEntry>,
    /// The checkpoint the bundle was exported from.
    pub source_checkpoint: SourceCheckpoint,
    /// Who wrote the bundle.
    pub exporter: String,
    /// ONNX opset of the graphs.
    pub opset: i64,
    /// ONNX IR version of the graphs.
    pub ir_version: i64,
    /// Where the weights came from.
    pub provenance: Provenance,
    /// The semantic segmentation head, when the bundle has one (`segmentation_decoder.onnx`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semantic: Option<SemanticHead>,
    /// How propagation through a volume derives each slice's prompts and when it stops, when measured for
    /// this model (bundles without it get their architecture's defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation: Option<PropagationDefaults>,
    /// How an interactive segmentation's rounds are composed into decoder calls, when measured for this
    /// model (bundles without it get SAM's: every prompt at once, the best predicted IoU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interaction: Option<InteractionDefaults>,
    /// What is done to every binary mask the model returns, when measured for this model (bundles without it:
    /// nothing, as SAM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masks: Option<MaskDefaults>,
}

/// A model's own treatment of its binary masks (`segment`, the server, propagation, `eval interactive`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MaskDefaults {
    /// Fill holes: the background regions of a mask that the image border does not reach become mask (an
    /// object's interior, such as the ventricles of a whole-brain mask, is the object's).
    #[serde(default)]
    pub fill_holes: bool,
    /// Close a walk's gaps first: each mask a propagation carries closed with a disc of this radius, in the
    /// model's input pixels (scaled to the image's), before its holes are filled — an outline open by less
    /// than the decoder resolves encloses its interior. A user's own rounds are not closed (it would undo
    /// a negative click in a notch). At most [`MAX_CLOSE_RADIUS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_radius: Option<f32>,
    /// Where the choice was measured (a document or a command), for the reader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured: Option<String>,
}

/// The largest `masks.close_radius` a bundle may declare (model input pixels).
pub const MAX_CLOSE_RADIUS: f32 = 32.0;

impl MaskDefaults {
    /// Refuses a closing radius that is not a number in (0, [`MAX_CLOSE_RADIUS`]].
    pub fn validate(&self) -> Result<(), medico_models::Problem> {
        match self.close_radius {
            Some(r) if !(r > 0.0 && r <= MAX_CLOSE_RADIUS) => {
                Err(format!("masks.close_radius must be within (0, {MAX_CLOSE_RADIUS}] (got {r})").into())
            }
            _ => Ok(()),
        }
    }
}

/// A model's own composition of correction rounds (`segment`, the server, `eval interactive`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InteractionDefaults {
    /// Keep the start box in the correction rounds.
    #[serde(default = "yes")]
    pub keep_box: bool,
    /// Feed the previous round's chosen low-res logits back as the mask prompt.
    #[serde(default)]
    pub feed_mask: bool,
    /// Multimask output in correction rounds too.
    #[serde(default)]
    pub multimask_corrections: bool,
    /// How one of several outputs is chosen: `iou` (predicted IoU) or `stability`.
    #[serde(default = "iou")]
    pub choose: String,
    /// Keep first the outputs that agree with the most clicks.
    #[serde(default)]
    pub respect_clicks: bool,
    /// A correction removes only the regions of the mask it clicked.
    #[serde(default)]
    pub local_removals: bool,
    /// Where the choice was measured (a document or a command), for the reader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured: Option<String>,
}

fn yes() -> bool {
    true
}

fn iou() -> String {
    "iou".into()
}

impl InteractionDefaults {
    /// Refuses an output choice medico does not know.
    pub fn validate(&self) -> Result<(), medico_models::Problem> {
        match self.choose.as_str() {
            "iou" | "stability" => Ok(()),
            other => Err(format!("interaction.choose must be iou or stability (got '{other}')").into()),
        }
    }
}

/// A model's own propagation settings (`segment --propagate`, the server's `-3d` models, `eval`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PropagationDefaults {
    /// The projection's name, as `segment --projection` takes it (`lite_medsam`, `box`, `box+mask`, ...).
    pub projection: String,
    /// Box growth: a fraction of the side (< 1) or pixels (>= 1).
    #[serde(default = "default_box_extension")]
    pub box_extension: f64,
    /// When a walk away from the annotated slices stops.
    pub stop: medico_models::stop_rule::StopRule,
    /// The walk's own decoder: the base checkpoint's prompt encoder and mask decoder moved this fraction of
    /// the way to a finetune's (weight-space ensembling, WiSE-FT; 0 is the base, 1 the finetune) — the
    /// walk decoder's own ([`Self::decoder_overlay`]) when there is one, else the interactive finetune —
    /// exported as the `propagation_decoder_*` graphs. Absent with no `decoder_overlay`: walks prompt with
    /// the interactive decoder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder_blend: Option<f64>,
    /// A walk decoder trained on its own (`train`'s `walk` objective): the overlay (file name and SHA-256)
    /// applied over the base checkpoint for the `propagation_decoder_*` graphs, all the way unless
    /// `decoder_blend` says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder_overlay: Option<SourceCheckpoint>,
    /// Where the choice was measured (a document or a command), for the reader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured: Option<String>,
}

fn default_box_extension() -> f64 {
    0.05
}

impl PropagationDefaults {
    /// What the walk's own decoder is, in words (`None`: walks prompt with the interactive decoder).
    pub fn walk_decoder(&self) -> Option<String> {
        match (&self.decoder_overlay, self.decoder_blend) {
            (Some(trained), Some(blend)) => Some(format!(
                "walk decoder {} blended {blend} of the way from the base",
                trained.file
            )),
            (Some(trained), None) => Some(format!("walk decoder trained for walks ({})", trained.file)),
            (None, Some(blend)) => Some(format!("walk decoder blended {blend} of the way to the finetune")),
            (None, None) => None,
        }
    }

    /// Refuses thresholds out of range and a negative or non-finite box extension.
    pub fn validate(&self) -> Result<(), medico_models::Problem> {
        if !(self.box_extension >= 0.0 && self.box_extension.is_finite()) {
            return Err(format!(
                "propagation.box_extension must be a non-negative number (got {})",
                self.box_extension
            )
            .into());
        }
        if let Some(blend) = self.decoder_blend {
            if !(0.0..=1.0).contains(&blend) {
                return Err(format!("propagation.decoder_blend must be within [0, 1] (got {blend})").into());
            }
        }
        self.stop.validate().map_err(|p| format!("propagation.stop.{p}").into())
    }
}

/// Output channels a semantic head may have: label maps are written with one byte per voxel.
pub const MAX_LABEL_CHANNELS: usize = 256;

/// A bundle's semantic segmentation head: the decoder's numbers, what each output channel means, and where
/// the decoder came from. Label maps store the channel index: 0 is background, `k` is `classes[k - 1]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SemanticHead {
    /// The UNETR decoder's configuration.
    pub decoder: UnetrConfig,
    /// Names of the classes after background, in output-channel order (channel `k` = `classes[k - 1]`).
    pub classes: Vec<String>,
    /// The decoder checkpoint the graph was exported from.
    pub source_checkpoint: SourceCheckpoint,
}

impl SemanticHead {
    /// Refuses a head whose class list does not name every output channel after background, or that has
    /// more classes than a label map of bytes holds.
    pub fn validate(&self) -> Result<(), medico_models::Problem> {
        let channels = self.decoder.out_channels;
        if channels != self.classes.len() + 1 {
            return Err(format!(
                "the segmentation decoder has {channels} output channels but {} class names (expected one per \
                 channel after background)",
                self.classes.len()
            )
            .into());
        }
        if channels > MAX_LABEL_CHANNELS {
            return Err(format!("{channels} classes: label maps hold at most {MAX_LABEL_CHANNELS}").into());
        }
        Ok(())
    }

    /// The name of label value `label` (`background` for 0), if the head has it.
    pub fn class_name(&self, label: usize) -> Option<&str> {
        match label {
            0 => Some("background"),
            k => self.classes.get(k - 1).map(String::as_str),
        }
    }
}

/// The source checkpoint of a bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceCheckpoint {
    /// File name (no directories).
    pub file: String,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closing_radius_must_be_positive_and_bounded() {
        let masks = |close_radius| MaskDefaults {
            fill_holes: true,
            close_radius,
            measured: None,
        };
        assert!(masks(None).validate().is_ok() && masks(Some(5.0)).validate().is_ok());
        for bad in [0.0, -1.0, f32::NAN, MAX_CLOSE_RADIUS + 1.0] {
            let problem = masks(Some(bad)).validate().unwrap_err().0;
            assert!(problem.contains("masks.close_radius"), "{problem}");
        }
    }

    #[test]
    fn graph_roles_are_written_as_model_json_names() {
        for role in [
            GraphRole::Encoder,
            GraphRole::Decoder,
            GraphRole::DecoderSingle,
            GraphRole::DecoderLowres,
            GraphRole::DecoderPrepare,
            GraphRole::DecoderPrompt,
            GraphRole::SegmentationDecoder,
            GraphRole::PropagationDecoderLowres,
            GraphRole::PropagationDecoderPrepare,
            GraphRole::PropagationDecoderPrompt,
        ] {
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{}\"", role.name()));
            assert_eq!(serde_json::from_str::<GraphRole>(&json).unwrap(), role);
        }
        assert!(serde_json::from_str::<GraphRole>("\"painter\"").is_err());
    }

    #[test]
    fn a_declared_propagation_reads_back_and_bad_thresholds_are_named() {
        let json = r#"{"projection": "box", "stop": {"min_iou_with_previous": 0.6, "min_predicted_iou": 0.4,
            "max_growth_from_start": 2.0, "stop_on_blank_slice": true, "stop_on_empty_mask": true}}"#;
        let declared: PropagationDefaults = serde_json::from_str(json).unwrap();
        assert_eq!(declared.box_extension, 0.05, "the default extension");
        assert_eq!(declared.stop.max_growth_from_start, Some(2.0));
        assert_eq!(declared.stop.max_area_growth, None, "unset checks are off");
        assert!(declared.validate().is_ok());
        let bad = PropagationDefaults {
            stop: medico_models::stop_rule::StopRule {
                min_predicted_iou: 1.5,
                ..declared.stop
            },
            ..declared.clone()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .0
            .contains("propagation.stop.min_predicted_iou"));
        let negative = PropagationDefaults {
            box_extension: -1.0,
            ..declared.clone()
        };
        assert!(negative.validate().unwrap_err().0.contains("box_extension"));
        let blended = PropagationDefaults {
            decoder_blend: Some(1.5),
            ..declared.clone()
        };
        assert!(blended.validate().unwrap_err().0.contains("decoder_blend"));
        assert!(
            serde_json::from_str::<PropagationDefaults>(r#"{"projection": "box", "stop": {"stop_after": 3}}"#).is_err()
        );
    }
}
