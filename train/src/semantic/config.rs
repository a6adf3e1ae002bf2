//! The training configuration of a semantic run (`"objective": "semantic"` in `train.json`).

use std::path::{Path, PathBuf};

use medico_io::IoError;
use medico_models::unetr::Upsampler;
use serde::Deserialize;

use crate::error::TrainError;
use crate::objective::ObjectiveConfig;

/// A volume with the label values of each class.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SemanticVolumeEntry {
    /// Image volume (relative paths: to the configuration file).
    pub image: PathBuf,
    /// Label volume on the same grid.
    pub labels: PathBuf,
    /// Slicing axis (default 2).
    #[serde(default = "default_axis")]
    pub axis: usize,
    /// Label values of each class, in the order of the run's `classes` (default: class `k` is value `k`).
    #[serde(default)]
    pub classes: Option<Vec<Vec<i64>>>,
    /// Use every `slice_step`-th slice (default 1).
    #[serde(default = "default_one")]
    pub slice_step: usize,
}

fn default_axis() -> usize {
    2
}

fn default_one() -> usize {
    1
}

/// A semantic run. Every field but `model`, `init`, `classes`, `train`, `steps` and `out` has a default:
/// medico-sam's recipe (AdamW lr 1e-4, ReduceLROnPlateau factor 0.9 patience 10, torch-em's 64 initial
/// features and bilinear upsampling), the encoder frozen.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SemanticRunConfig {
    /// Always `semantic` (what tells this configuration from an interactive one).
    pub objective: String,
    /// Architecture: a preset name or a path to a `config.json`.
    pub model: String,
    /// The SAM checkpoint whose image encoder the decoder reads.
    pub init: String,
    /// A decoder to start from (torch-em keys; every tensor but `out_conv`, as micro-sam's
    /// `--init_decoder_weights`), or none: random initialisation.
    pub init_decoder: Option<PathBuf>,
    /// Class names after background.
    pub classes: Vec<String>,
    /// Training volumes.
    pub train: Vec<SemanticVolumeEntry>,
    /// Validation volumes (held out by volume).
    pub val: Vec<SemanticVolumeEntry>,
    /// The decoder's finest features (torch-em's `initial_features`).
    pub initial_features: usize,
    /// The decoder's upsampling layers.
    pub upsampler: Upsampler,
    /// Optimisation steps.
    pub steps: u64,
    /// Slices per batch.
    pub batch_size: usize,
    /// Learning rate of the decoder (and of the encoder when it is trained).
    pub lr: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// ReduceLROnPlateau's factor.
    pub plateau_factor: f64,
    /// ReduceLROnPlateau's patience, in validations.
    pub plateau_patience: u32,
    /// Train the decoder on cached embeddings of a frozen encoder (default true).
    pub freeze_image_encoder: bool,
    /// The paper's joint mode: also MedicoSAM's interactive objective on the same images, with its own AdamW
    /// over the SAM parameters, each loss taking its own step on the shared encoder (needs
    /// `freeze_image_encoder: false`).
    pub joint: bool,
    /// Learning rate of the interactive objective in joint mode (the interactive recipe's 1e-5).
    pub interactive_lr: f64,
    /// Objects per image for the interactive objective in joint mode.
    pub objects_per_image: usize,
    /// Smallest class area (pixels at the model's input size) that makes a slice a sample.
    pub min_class_pixels: usize,
    /// Where the frozen encoder's embeddings are cached (default `out/embeddings`; the interactive runs'
    /// cache is shared when it points to the same folder).
    pub embedding_cache: Option<PathBuf>,
    /// Seed of initialisation and sampling.
    pub seed: u64,
    /// Validate every this many steps (and at the end).
    pub val_every: u64,
    /// Write `out/checkpoint.safetensors` every this many steps (and at the end); a rerun with more `steps`
    /// continues from it exactly.
    pub checkpoint_every: u64,
    /// Output folder.
    pub out: PathBuf,
}

impl Default for SemanticRunConfig {
    fn default() -> Self {
        Self {
            objective: "semantic".into(),
            model: String::new(),
            init: String::new(),
            init_decoder: None,
            classes: Vec::new(),
            train: Vec::new(),
            val: Vec::new(),
            initial_features: 64,
            upsampler: Upsampler::Bilinear,
            steps: 0,
            batch_size: 2,
            lr: 1e-4,
            weight_decay: 0.01,
            plateau_factor: 0.9,
            plateau_patience: 10,
            freeze_image_encoder: true,
            joint: false,
            interactive_lr: 1e-5,
            objects_per_image: 5,
            min_class_pixels: 25,
            embedding_cache: None,
            seed: 0,
            val_every: 25,
            checkpoint_every: 50,
            out: PathBuf::new(),
        }
    }
}

/// Whether the training configuration at `text` asks for the semantic objective.
pub fn is_semantic(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("objective").and_then(|o| o.as_str()).map(|o| o == "semantic"))
        .unwrap_or(false)
}

impl SemanticRunConfig {
    /// Reads and checks a semantic `train.json`.
    pub fn from_file(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| IoError::read(path, e))?;
        let run: Self = serde_json::from_str(&text).map_err(|source| TrainError::Json {
            path: path.into(),
            what: "semantic training configuration",
            source,
        })?;
        run.check().map_err(|problem| TrainError::Config {
            path: path.into(),
            problem: problem.into(),
        })?;
        Ok(run)
    }

    fn check(&self) -> Result<(), &'static str> {
        if self.objective != "semantic" {
            Err("objective must be \"semantic\"")
        } else if self.model.is_empty() || self.init.is_empty() || self.out.as_os_str().is_empty() {
            Err("need a model, the checkpoint of its image encoder and an output folder (`model`, `init`, `out`)")
        } else if self.classes.is_empty() || self.train.is_empty() {
            Err("need class names and training volumes (`classes`, `train`)")
        } else if [
            self.steps,
            self.batch_size as u64,
            self.val_every,
            self.checkpoint_every,
        ]
        .contains(&0)
            || self.initial_features == 0
        {
            Err("need steps, batch_size, val_every, checkpoint_every and initial_features > 0")
        } else if self.joint && self.freeze_image_encoder {
            Err("the joint mode trains the shared encoder: set freeze_image_encoder to false")
        } else if self
            .train
            .iter()
            .chain(&self.val)
            .any(|v| v.classes.as_ref().is_some_and(|c| c.len() != self.classes.len()))
        {
            Err("each volume's `classes` must list label values for every class of `classes`")
        } else {
            Ok(())
        }
    }

    /// The interactive objective of the joint mode: MedicoSAM's defaults.
    pub fn interactive_objective(&self) -> ObjectiveConfig {
        ObjectiveConfig::default()
    }
}

impl SemanticVolumeEntry {
    /// The label values of each of `count` classes: the entry's list, or value `k` for class `k`.
    pub fn class_values(&self, count: usize) -> Vec<Vec<i64>> {
        self.classes
            .clone()
            .unwrap_or_else(|| (1..=count as i64).map(|k| vec![k]).collect())
    }
}
