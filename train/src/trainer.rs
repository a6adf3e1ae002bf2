//! One optimisation step of the objective — zero-grad → objective → backward → (the ranks' gradients
//! summed) → AdamW over every SAM parameter (the reference recipe freezes nothing) — plus checkpoints that
//! resume exactly (parameters, AdamW moments, iteration and seed; the decisions a micro-batch shares come
//! from a generator seeded by (seed, iteration, micro-batch), each object's clicks from its own) and the
//! export of the SAM part as an official-format state dict.

use std::collections::HashMap;
use std::path::Path;

use medico_models::{Sam, StateDict};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use medico_io::atomic_output::{persist, temp_beside};

use crate::adamw::AdamW;
use crate::backend::TchBackend;
use crate::distributed::{DataParallel, DistributedError};
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
    /// Mask feedback per round after the first, of every micro-batch this rank had objects of.
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

/// The generator of the decisions micro-batch `micro` of iteration `iteration` shares (mask feedback per
/// round), in a run seeded with `seed`: every rank holding a shard of it draws the same.
fn micro_batch_rng(seed: u64, iteration: u64, micro: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ iteration.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    rng.set_stream(micro as u64);
    rng
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

    /// The loss of the objective on `batch` with clicks from `seed`, without updating anything (the click
    /// term, a training aid, left out).
    pub fn evaluate(&self, batch: &Batch, seed: u64) -> f64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let objective = ObjectiveConfig {
            click_weight: 0.0,
            ..self.objective
        };
        tch::no_grad(|| objective_forward(&self.sam, &self.backend, batch, objective, self.iteration, &mut rng).loss)
            .double_value(&[])
    }

    /// The objective on `batch` at the current iteration.
    fn forward(&self, batch: &Batch, rng: &mut ChaCha8Rng) -> ObjectiveOutput {
        objective_forward(&self.sam, &self.backend, batch, self.objective, self.iteration, rng)
    }

    /// One optimisation step on `batch`, in a process of its own.
    pub fn step(&mut self, batch: &Batch) -> StepReport {
        self.step_accumulated(std::slice::from_ref(batch), &DataParallel::Single)
            .expect("a single process exchanges nothing that could fail")
    }

    /// One optimisation step on the gradients of several micro-batches (gradient accumulation): each
    /// micro-batch's loss is scaled by `1 / batches.len()` and back-propagated before the single AdamW update,
    /// so only one micro-batch's activations are alive at a time; with one micro-batch this is exactly
    /// [`Self::step`]. In a data-parallel run each batch is this rank's shard of a global micro-batch
    /// ([`crate::data::batch_totals`] its totals): the gradients are summed over the ranks before the update and
    /// the report holds the global batch's values. Fails when another rank does (c10d's error).
    pub fn step_accumulated(
        &mut self,
        batches: &[Batch],
        parallel: &DataParallel,
    ) -> Result<StepReport, DistributedError> {
        assert!(!batches.is_empty(), "a step needs at least one micro-batch");
        self.optimizer.zero_grad();
        let scale = 1.0 / batches.len() as f64;
        let rounds = self.objective.decoding_rounds();
        // Summed over the ranks: the loss, each round's, and each micro-batch's propagation term.
        let mut values = vec![0.0; 1 + rounds + batches.len()];
        let mut mask_fed = Vec::new();
        let mut feedback_required_grad = false;
        for (micro, batch) in batches.iter().enumerate() {
            let mut rng = micro_batch_rng(self.seed, self.iteration, micro);
            let out = self.forward(batch, &mut rng);
            // With one micro-batch the scale is 1, an exact no-op on the loss and its gradients.
            (&out.loss * scale).backward();
            values[0] += out.loss.double_value(&[]) * scale;
            for (total, round) in values[1..=rounds].iter_mut().zip(&out.round_losses) {
                *total += round * scale;
            }
            values[1 + rounds + micro] = out.propagation_loss.unwrap_or(0.0);
            mask_fed.extend(out.mask_fed);
            feedback_required_grad |= out.feedback_required_grad;
        }
        parallel.sum_values(&mut values)?;
        parallel.sum_gradients(&self.optimizer.parameters())?;
        self.optimizer.step();
        self.iteration += 1;
        let with_objects = batches.iter().any(|b| b.totals.objects > 0);
        let propagated: Vec<f64> = batches
            .iter()
            .zip(&values[1 + rounds..])
            .filter(|(b, _)| b.totals.derived > 0)
            .map(|(_, &v)| v)
            .collect();
        Ok(StepReport {
            loss: values[0],
            round_losses: if with_objects {
                values[1..=rounds].to_vec()
            } else {
                Vec::new()
            },
            propagation_loss: (!propagated.is_empty())
                .then(|| propagated.iter().sum::<f64>() / propagated.len() as f64),
            mask_fed,
            feedback_required_grad,
        })
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
