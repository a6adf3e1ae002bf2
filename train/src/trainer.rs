//! One optimisation step of the objective — zero-grad → objective → backward → AdamW over every SAM parameter
//! (the reference recipe freezes nothing) — plus checkpoints that resume exactly (parameters, AdamW moments,
//! iteration and seed; the clicks of iteration `i` come from a generator seeded by (seed, i)) and the export
//! of the SAM part as an official-format state dict.

use std::collections::HashMap;
use std::path::Path;

use medico_models::{Sam, StateDict};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use medico_io::atomic_output::{persist, temp_beside};

use crate::adamw::AdamW;
use crate::backend::TchBackend;
use crate::error::TrainError;
use crate::objective::{objective_forward, Batch, ObjectiveConfig, ObjectiveOutput};

/// Which parameters the optimizer updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrainableParts {
    /// Every SAM parameter (the reference recipe freezes nothing).
    #[default]
    Everything,
    /// The prompt encoder and the mask decoder; the image encoder is frozen, so its embeddings can be
    /// computed once per image ([`crate::embeddings`]).
    PromptEncoderAndDecoder,
    /// Only the mask decoder's IoU prediction head: the masks stay as they are, the head learns to score
    /// them (which multimask output a lone click keeps). The image encoder is frozen as above.
    IouHead,
}

impl TrainableParts {
    /// Whether parameter `name` is trained.
    pub fn trains(self, name: &str) -> bool {
        match self {
            TrainableParts::Everything => true,
            TrainableParts::PromptEncoderAndDecoder => !name.starts_with(IMAGE_ENCODER_PREFIX),
            TrainableParts::IouHead => name.starts_with(IOU_HEAD_PREFIX),
        }
    }
}

/// Key prefix of the image encoder's parameters.
pub const IMAGE_ENCODER_PREFIX: &str = "image_encoder.";
/// Key prefix of the mask decoder's IoU prediction head.
pub const IOU_HEAD_PREFIX: &str = "mask_decoder.iou_prediction_head.";

/// AdamW settings (the reference: lr 1e-5, PyTorch's AdamW defaults otherwise) and what it updates.
#[derive(Debug, Clone, Copy)]
pub struct OptimizerConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// The parameters updated (BatchNorm statistics never are).
    pub trainable: TrainableParts,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            lr: 1e-5,
            weight_decay: 0.01,
            trainable: TrainableParts::Everything,
        }
    }
}

/// What a step did.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// The loss before the update.
    pub loss: f64,
    /// Loss per round.
    pub round_losses: Vec<f64>,
    /// The propagation term (mean over the micro-batches that had derived objects).
    pub propagation_loss: Option<f64>,
    /// Mask feedback per round after the first.
    pub mask_fed: Vec<bool>,
    /// Whether a fed-back mask carried gradients (it must not).
    pub feedback_required_grad: bool,
}

/// A SAM model being trained.
pub struct Trainer {
    sam: Sam,
    backend: TchBackend,
    optimizer: AdamW,
    objective: ObjectiveConfig,
    iteration: u64,
    seed: u64,
}

const ITERATION_KEY: &str = "trainer.iteration";
const SEED_KEY: &str = "trainer.seed";
const STEPS_KEY: &str = "trainer.adamw_steps";

/// The click generator of iteration `iteration` of a run seeded with `seed`.
fn iteration_rng(seed: u64, iteration: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ iteration.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

impl Trainer {
    /// Starts from `state` (f32 on `device`), training the parameters `optimizer.trainable` names.
    pub fn new(
        sam: Sam,
        state: &StateDict,
        device: Device,
        objective: ObjectiveConfig,
        optimizer: OptimizerConfig,
        seed: u64,
    ) -> Self {
        Self::from_backend(
            sam,
            TchBackend::from_state_dict(state, device, Kind::Float),
            objective,
            optimizer,
            seed,
        )
    }

    fn from_backend(
        sam: Sam,
        mut backend: TchBackend,
        objective: ObjectiveConfig,
        optimizer: OptimizerConfig,
        seed: u64,
    ) -> Self {
        let params = backend.make_trainable(|name| optimizer.trainable.trains(name));
        Self {
            sam,
            backend,
            optimizer: AdamW::new(params, optimizer.lr, optimizer.weight_decay),
            objective,
            iteration: 0,
            seed,
        }
    }

    /// The backend holding the current parameters.
    pub fn backend(&self) -> &TchBackend {
        &self.backend
    }

    /// Iterations done.
    pub fn iteration(&self) -> u64 {
        self.iteration
    }

    /// The loss of the objective on `batch` with clicks from `seed`, without updating anything.
    pub fn evaluate(&self, batch: &Batch, seed: u64) -> f64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        tch::no_grad(|| self.forward(batch, &mut rng).loss).double_value(&[])
    }

    /// The objective on `batch` at the current iteration.
    fn forward(&self, batch: &Batch, rng: &mut ChaCha8Rng) -> ObjectiveOutput {
        objective_forward(&self.sam, &self.backend, batch, self.objective, self.iteration, rng)
    }

    /// One optimisation step on `batch`.
    pub fn step(&mut self, batch: &Batch) -> StepReport {
        self.step_accumulated(std::slice::from_ref(batch))
    }

    /// One optimisation step on the gradients of several micro-batches (gradient accumulation): each
    /// micro-batch's loss is scaled by `1 / batches.len()` and back-propagated before the single AdamW update,
    /// so only one micro-batch's activations are alive at a time. The clicks of all micro-batches come from the
    /// iteration's one random stream, in order; with one micro-batch this is exactly [`Self::step`].
    pub fn step_accumulated(&mut self, batches: &[Batch]) -> StepReport {
        assert!(!batches.is_empty(), "a step needs at least one micro-batch");
        let mut rng = iteration_rng(self.seed, self.iteration);
        self.optimizer.zero_grad();
        let scale = 1.0 / batches.len() as f64;
        let mut report = StepReport {
            loss: 0.0,
            round_losses: Vec::new(),
            propagation_loss: None,
            mask_fed: Vec::new(),
            feedback_required_grad: false,
        };
        let mut propagation = (0.0, 0usize);
        for batch in batches {
            let out = self.forward(batch, &mut rng);
            // With one micro-batch the scale is 1, an exact no-op on the loss and its gradients.
            (&out.loss * scale).backward();
            report.loss += out.loss.double_value(&[]) * scale;
            report.round_losses.resize(out.round_losses.len(), 0.0);
            for (total, round) in report.round_losses.iter_mut().zip(&out.round_losses) {
                *total += round * scale;
            }
            if let Some(term) = out.propagation_loss {
                propagation = (propagation.0 + term, propagation.1 + 1);
            }
            report.mask_fed.extend(out.mask_fed);
            report.feedback_required_grad |= out.feedback_required_grad;
        }
        report.propagation_loss = (propagation.1 > 0).then(|| propagation.0 / propagation.1 as f64);
        self.optimizer.step();
        self.iteration += 1;
        report
    }

    /// A copy of parameter `name`.
    pub fn parameter(&self, name: &str) -> Tensor {
        use medico_models::Backend;
        self.backend.param(name).0.detach().copy()
    }

    /// The SAM parameters under their official keys (detached copies on the CPU, f32).
    fn sam_tensors(&self) -> Vec<(String, Tensor)> {
        self.backend
            .named_params()
            .into_iter()
            .map(|(k, t)| (k, t.detach().to_device(Device::Cpu).to_kind(Kind::Float)))
            .collect()
    }

    /// Writes a checkpoint (parameters, AdamW moments, iteration, seed) as safetensors, atomically.
    pub fn save_checkpoint(&self, path: &Path) -> Result<(), TrainError> {
        let mut tensors = self.sam_tensors();
        tensors.extend(
            self.optimizer
                .state()
                .into_iter()
                .map(|(k, t)| (k, t.to_device(Device::Cpu))),
        );
        tensors.push((ITERATION_KEY.into(), Tensor::from(self.iteration as i64)));
        tensors.push((SEED_KEY.into(), Tensor::from(self.seed as i64)));
        tensors.push((STEPS_KEY.into(), Tensor::from(self.optimizer.steps)));
        write_atomically(path, &tensors)
    }

    /// Writes only the SAM parameters under their official keys: a state dict `load_checkpoint`, the exporter
    /// and the official `segment_anything` loader accept.
    pub fn export_state_dict(&self, path: &Path) -> Result<(), TrainError> {
        write_atomically(path, &self.sam_tensors())
    }

    /// Resumes a run from a checkpoint written by [`Self::save_checkpoint`].
    pub fn resume(
        sam: Sam,
        path: &Path,
        device: Device,
        objective: ObjectiveConfig,
        optimizer: OptimizerConfig,
    ) -> Result<Self, TrainError> {
        let missing = |key: String| TrainError::MissingTensor { file: path.into(), key };
        let tensors: HashMap<String, Tensor> = Tensor::read_safetensors(path)?.into_iter().collect();
        let scalar = |key: &str| {
            tensors
                .get(key)
                .map(|t| t.int64_value(&[]))
                .ok_or_else(|| missing(key.into()))
        };
        let (iteration, seed, steps) = (scalar(ITERATION_KEY)?, scalar(SEED_KEY)?, scalar(STEPS_KEY)?);
        let params: HashMap<String, Tensor> = tensors
            .iter()
            .filter(|(k, _)| !k.starts_with("adamw.") && !k.starts_with("trainer."))
            .map(|(k, t)| (k.clone(), t.to_device(device).to_kind(Kind::Float)))
            .collect();
        let backend = TchBackend::from_tensors(params, device, Kind::Float);
        let mut trainer = Self::from_backend(sam, backend, objective, optimizer, seed as u64);
        let on_device: HashMap<String, Tensor> = tensors
            .iter()
            .filter(|(k, _)| k.starts_with("adamw."))
            .map(|(k, t)| (k.clone(), t.to_device(device)))
            .collect();
        trainer.optimizer.load_state(&on_device).map_err(|e| missing(e.0))?;
        trainer.optimizer.steps = steps;
        trainer.iteration = iteration as u64;
        Ok(trainer)
    }
}

/// Writes `tensors` as safetensors through a temporary file beside `path` and a rename.
pub(crate) fn write_atomically(path: &Path, tensors: &[(String, Tensor)]) -> Result<(), TrainError> {
    let temp = temp_beside(path, ".safetensors")?;
    Tensor::write_safetensors(tensors, temp.path())?;
    Ok(persist(temp, path)?)
}
