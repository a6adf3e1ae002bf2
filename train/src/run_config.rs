//! `train.json`: what a training run reads — the model, where it starts, its data sources (volumes with
//! label volumes, folders of images with label maps, SA-Med2D indexes), the objective, the optimizer, whether
//! the image encoder is frozen, and where outputs go — with the defaults of the paper's recipe and the checks
//! that refuse a configuration that cannot train.

use std::path::{Path, PathBuf};

use medico_io::IoError;
use serde::Deserialize;

use crate::data::{LabelGroup, ObjectRule};
use crate::error::TrainError;
use crate::objective::{Objective, ObjectiveConfig, PointStart};
use crate::trainer::{OptimizerConfig, TrainableParts};

/// One data source of the configuration: a volume, a folder pair of 2D images and label maps, or an
/// SA-Med2D-style index (told apart by their fields).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DataEntry {
    /// `{"image": ..., "labels": ..., "axis": 2, "values": [...]}`.
    Volume(VolumeEntry),
    /// `{"images": "dir", "label_maps": "dir"}`.
    Folder(FolderEntry),
    /// `{"sa_med2d": "index.json"}`.
    SaMed2d(SaMed2dEntry),
}

/// 2D images with label maps of the same file names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderEntry {
    /// Folder of images (PNG/TIFF).
    pub images: PathBuf,
    /// Folder of label maps (0 = background, each other value an object).
    pub label_maps: PathBuf,
}

/// An SA-Med2D-20M style index (image → object masks).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaMed2dEntry {
    /// The JSON index; its paths are relative to its folder.
    pub sa_med2d: PathBuf,
}

/// One volume of the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeEntry {
    /// Image volume (relative paths: to the configuration file).
    pub image: PathBuf,
    /// Label volume on the same grid.
    pub labels: PathBuf,
    /// Slicing axis (default 2).
    #[serde(default = "default_axis")]
    pub axis: usize,
    /// Label values to use (default: all non-zero).
    #[serde(default)]
    pub values: Option<Vec<i64>>,
    /// Label values never to use (a held-out label set; default none).
    #[serde(default)]
    pub exclude: Vec<i64>,
    /// Use every `slice_step`-th slice (default 1: all).
    #[serde(default = "default_slice_step")]
    pub slice_step: usize,
    /// Label values merged into one object class each (`["1-999", "1000-1999"]`); excludes `values`.
    #[serde(default)]
    pub groups: Option<Vec<LabelGroup>>,
    /// `"labels"` (default: a class's whole mask is one object) or `"components"` (each connected piece).
    #[serde(default)]
    pub objects: ObjectRule,
    /// Also train propagation on this volume: prompts derived from a neighbouring slice's mask of each label
    /// value, targets this slice's (empty past the object's end); default false.
    #[serde(default)]
    pub propagation: bool,
    /// How likely each of this volume's slices is to be drawn into a batch, relative to the other entries'
    /// slices (default 1): a small CT series among large brain volumes can weigh as much as they do.
    #[serde(default = "default_weight")]
    pub weight: f64,
}

fn default_slice_step() -> usize {
    1
}

fn default_weight() -> f64 {
    1.0
}

fn default_axis() -> usize {
    2
}

/// `train.json`. Every field but `model`, `train`, `steps` and `out` has a default ([`RunConfig::default`]:
/// the paper's objective and optimizer settings).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Architecture: a preset name (`vit_b`, …) or a path to a `config.json`.
    pub model: String,
    /// `"scratch"` or a checkpoint to start from.
    pub init: String,
    /// Training data.
    pub train: Vec<DataEntry>,
    /// Validation data (held out: split by volume or image, never by slice).
    pub val: Vec<DataEntry>,
    /// `medicosam`, `simple` or `medsam`.
    pub objective: Objective,
    /// Decoding rounds.
    pub rounds: usize,
    /// Mask feedback probability.
    pub mask_prob: f64,
    /// Weight of a per-pixel BCE added to the loss (default 0: the paper's Dice + IoU MSE).
    pub bce_weight: f64,
    /// Weight of the IoU MSE term (default 1: the paper's).
    pub iou_weight: f64,
    /// Where a point start clicks: `uniform` (default, micro-sam's) or `farthest` (the object's centre).
    pub point_start: PointStart,
    /// Weight of the propagation term (volumes with `"propagation": true`; default 1).
    pub propagation_weight: f64,
    /// Weight of the click term (default 0: the paper's loss).
    pub click_weight: f64,
    /// The propagation term also gives the neighbour's mask as the mask prompt (the runtime's
    /// `lite_medsam+mask` projection; default false: its box only).
    pub propagation_mask_prompt: bool,
    /// An overlay (`checkpoint diff`'s output) applied over `init` before training: a shipped finetune
    /// trained further from the files in the repository.
    pub init_overlay: Option<PathBuf>,
    /// With `init_overlay`: start this fraction of the way from `init` to the overlay (weight-space
    /// ensembling, as a bundle's blended walk decoder is made; default 1: the overlay as it is).
    pub init_overlay_blend: f64,
    /// Optimisation steps.
    pub steps: u64,
    /// Images per batch.
    pub batch_size: usize,
    /// Micro-batches of `batch_size` images whose gradients are summed before each update (gradient
    /// accumulation: the effective batch is `batch_size * accumulate` at one micro-batch's memory).
    pub accumulate: usize,
    /// Objects per image.
    pub objects_per_image: usize,
    /// Smallest object (pixels at the model's input size).
    pub min_object_pixels: usize,
    /// Learning rate.
    pub lr: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Freeze the image encoder: train the prompt encoder and mask decoder on embeddings computed once per
    /// sample and cached on disk (default false: train everything, the reference recipe).
    pub freeze_image_encoder: bool,
    /// Train only the IoU prediction head (needs `freeze_image_encoder`; default false).
    pub train_only_iou_head: bool,
    /// Where the frozen encoder's embeddings are cached (relative: to the configuration file; default
    /// `out/embeddings`). Runs on the same data and encoder may share it.
    pub embedding_cache: Option<PathBuf>,
    /// Seed of initialisation, sampling and clicks.
    pub seed: u64,
    /// Validate every this many steps (and at the end).
    pub val_every: u64,
    /// Write a checkpoint every this many steps (and at the end).
    pub checkpoint_every: u64,
    /// Output folder (relative: to the configuration file).
    pub out: PathBuf,
}

impl Default for RunConfig {
    /// The objective's and the optimizer's own defaults (one source for each number); the required fields
    /// empty, which [`RunConfig::check`] refuses.
    fn default() -> Self {
        let objective = ObjectiveConfig::default();
        let optimizer = OptimizerConfig::default();
        Self {
            model: String::new(),
            init: "scratch".into(),
            train: Vec::new(),
            val: Vec::new(),
            objective: objective.objective,
            rounds: objective.rounds,
            mask_prob: objective.mask_prob,
            bce_weight: objective.bce_weight,
            iou_weight: objective.iou_weight,
            point_start: objective.point_start,
            propagation_weight: objective.propagation_weight,
            click_weight: objective.click_weight,
            propagation_mask_prompt: objective.propagation_mask,
            init_overlay: None,
            init_overlay_blend: 1.0,
            steps: 0,
            batch_size: 2,
            accumulate: 1,
            objects_per_image: 5,
            min_object_pixels: 25,
            lr: optimizer.lr,
            weight_decay: optimizer.weight_decay,
            freeze_image_encoder: false,
            train_only_iou_head: false,
            embedding_cache: None,
            seed: 0,
            val_every: 50,
            checkpoint_every: 50,
            out: PathBuf::new(),
        }
    }
}

impl RunConfig {
    /// Reads and checks `train.json`.
    pub fn from_file(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| IoError::read(path, e))?;
        let run: RunConfig = serde_json::from_str(&text).map_err(|source| TrainError::Json {
            path: path.into(),
            what: "training configuration",
            source,
        })?;
        run.check(path)?;
        Ok(run)
    }

    /// Refuses configurations that cannot train.
    fn check(&self, path: &Path) -> Result<(), TrainError> {
        let problem = if self.model.is_empty() || self.out.as_os_str().is_empty() {
            Some("need a model and an output folder (`model`, `out`)")
        } else if self.train.is_empty() || self.steps == 0 || self.batch_size == 0 || self.accumulate == 0 {
            Some("need training volumes, steps > 0, batch_size > 0 and accumulate > 0")
        } else if self.val_every == 0 || self.checkpoint_every == 0 {
            Some("need val_every > 0 and checkpoint_every > 0")
        } else if self
            .train
            .iter()
            .chain(&self.val)
            .any(|entry| matches!(entry, DataEntry::Volume(v) if v.groups.is_some() && v.values.is_some()))
        {
            Some("a volume entry takes `values` or `groups`, not both")
        } else if ![
            self.bce_weight,
            self.iou_weight,
            self.propagation_weight,
            self.click_weight,
        ]
        .iter()
        .all(|w| w.is_finite() && *w >= 0.0)
        {
            Some("the loss weights (bce_weight, iou_weight, propagation_weight, click_weight) must be finite and not negative")
        } else if self
            .train
            .iter()
            .any(|entry| matches!(entry, DataEntry::Volume(v) if !(v.weight.is_finite() && v.weight > 0.0)))
        {
            Some("a volume entry's weight must be a positive number")
        } else if !(0.0..=1.0).contains(&self.init_overlay_blend) {
            Some("init_overlay_blend must be within [0, 1]")
        } else if self.objective == Objective::Walk
            && !self
                .train
                .iter()
                .chain(&self.val)
                .all(|e| matches!(e, DataEntry::Volume(v) if v.propagation))
        {
            Some("the walk objective trains on propagation only: every train and val entry must be a volume with \"propagation\": true")
        } else if !(0.0..=1.0).contains(&self.init_overlay_blend) {
            Some("init_overlay_blend must be within [0, 1]")
        } else if self.objective == Objective::Walk && self.propagation_weight == 0.0 {
            Some("the walk objective needs a propagation_weight above 0")
        } else if self.train_only_iou_head && !self.freeze_image_encoder {
            Some("train_only_iou_head needs freeze_image_encoder (the embeddings are computed once)")
        } else {
            None
        };
        match problem {
            Some(problem) => Err(TrainError::Config {
                path: path.into(),
                problem: problem.into(),
            }),
            None => Ok(()),
        }
    }

    /// The objective's settings.
    pub fn objective_config(&self) -> ObjectiveConfig {
        ObjectiveConfig {
            objective: self.objective,
            rounds: self.rounds,
            mask_prob: self.mask_prob,
            bce_weight: self.bce_weight,
            iou_weight: self.iou_weight,
            point_start: self.point_start,
            propagation_weight: self.propagation_weight,
            propagation_mask: self.propagation_mask_prompt,
            click_weight: self.click_weight,
        }
    }

    /// The optimizer's settings.
    pub fn optimizer_config(&self) -> OptimizerConfig {
        let trainable = if self.train_only_iou_head {
            TrainableParts::IouHead
        } else if self.freeze_image_encoder {
            TrainableParts::PromptEncoderAndDecoder
        } else {
            TrainableParts::Everything
        };
        OptimizerConfig {
            lr: self.lr,
            weight_decay: self.weight_decay,
            trainable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration with one volume entry holding `extra` fields, read from a file.
    fn with_volume_fields(extra: &str) -> Result<RunConfig, TrainError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.json");
        let text = format!(
            r#"{{"model": "vit_b", "steps": 1, "out": "o",
                "train": [{{"image": "i.nii.gz", "labels": "l.nii.gz", {extra}}}]}}"#
        );
        std::fs::write(&path, text).unwrap();
        RunConfig::from_file(&path)
    }

    #[test]
    fn volume_entries_take_groups_and_the_object_rule() {
        let run = with_volume_fields(r#""groups": ["1-999", "1000-1999"], "objects": "components""#).unwrap();
        let DataEntry::Volume(entry) = &run.train[0] else {
            panic!("a volume entry")
        };
        assert_eq!(entry.objects, ObjectRule::Components);
        let groups = entry.groups.as_ref().unwrap();
        assert!(groups[1].contains(1082) && !groups[0].contains(1082));
        let default = with_volume_fields(r#""axis": 1"#).unwrap();
        let DataEntry::Volume(entry) = &default.train[0] else {
            panic!("a volume entry")
        };
        assert_eq!((entry.objects, entry.groups.is_none()), (ObjectRule::Labels, true));
    }

    #[test]
    fn the_walk_objective_needs_propagation_on_every_volume() {
        let walk = |fields: &str| {
            with_volume_fields(&format!(
                r#""propagation": {fields}}}], "objective": "walk", "val": [{{"image": "i.nii.gz", "labels": "l.nii.gz", "propagation": true"#
            ))
        };
        let run = walk("true").unwrap();
        assert_eq!(run.objective, Objective::Walk);
        let err = walk("false").unwrap_err().to_string();
        assert!(err.contains("walk objective") && err.contains("train.json"), "{err}");
    }

    #[test]
    fn a_volume_weighs_one_unless_given_a_positive_weight() {
        let DataEntry::Volume(entry) = &with_volume_fields(r#""weight": 12.5"#).unwrap().train[0] else {
            panic!("a volume entry")
        };
        assert_eq!(entry.weight, 12.5);
        let DataEntry::Volume(entry) = &with_volume_fields(r#""axis": 2"#).unwrap().train[0] else {
            panic!("a volume entry")
        };
        assert_eq!(entry.weight, 1.0);
        for bad in ["0", "-1"] {
            let error = with_volume_fields(&format!(r#""weight": {bad}"#))
                .unwrap_err()
                .to_string();
            assert!(error.contains("weight must be a positive number"), "{error}");
        }
    }

    #[test]
    fn groups_with_values_or_a_bad_group_are_refused() {
        let both = with_volume_fields(r#""groups": ["1-9"], "values": [3]"#)
            .unwrap_err()
            .to_string();
        assert!(
            both.contains("`values` or `groups`, not both") && both.contains("train.json"),
            "{both}"
        );
        let bad = with_volume_fields(r#""groups": ["1-x"]"#).unwrap_err().to_string();
        assert!(bad.contains("train.json"), "{bad}");
    }

    /// A LiteMedSAM configuration with `extra` top-level fields (each followed by a comma), read from a file.
    fn with_fields(extra: &str) -> Result<RunConfig, TrainError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.json");
        let text = format!(
            r#"{{"model": "lite_medsam", "steps": 1, "out": "o", {extra}
                "train": [{{"image": "i.nii.gz", "labels": "l.nii.gz"}}]}}"#
        );
        std::fs::write(&path, text).unwrap();
        RunConfig::from_file(&path)
    }

    #[test]
    fn the_iou_head_alone_trains_only_on_a_frozen_encoder() {
        let err = with_fields(r#""train_only_iou_head": true,"#).unwrap_err().to_string();
        assert!(err.contains("needs freeze_image_encoder"), "{err}");
        let run = with_fields(r#""train_only_iou_head": true, "freeze_image_encoder": true,"#).unwrap();
        let trainable = run.optimizer_config().trainable;
        assert_eq!(trainable, TrainableParts::IouHead);
        assert!(trainable.trains("mask_decoder.iou_prediction_head.layers.2.weight"));
        assert!(!trainable.trains("mask_decoder.output_upscaling.0.weight"));
        assert!(!trainable.trains("prompt_encoder.point_embeddings.0.weight"));
    }

    #[test]
    fn loss_weights_default_to_the_paper_and_negative_ones_are_refused() {
        let default = with_fields("").unwrap().objective_config();
        assert_eq!((default.iou_weight, default.bce_weight), (1.0, 0.0));
        assert_eq!(
            with_fields(r#""iou_weight": 10,"#)
                .unwrap()
                .objective_config()
                .iou_weight,
            10.0
        );
        let err = with_fields(r#""iou_weight": -1,"#).unwrap_err().to_string();
        assert!(
            err.contains("must be finite and not negative") && err.contains("train.json"),
            "{err}"
        );
    }
}
