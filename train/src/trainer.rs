//! One optimisation step of the objective: AdamW over every SAM parameter (the reference recipe freezes
//! nothing), zero-grad → objective → backward → step, counting iterations (which also alternate the point and
//! box starts).

use medico_models::{Sam, StateDict};
use rand::Rng;
use tch::{COptimizer, Device, Kind, Tensor};

use crate::backend::TchBackend;
use crate::objective::{objective_forward, Batch, ObjectiveConfig};

/// AdamW settings (the reference: lr 1e-5, PyTorch's AdamW defaults otherwise).
#[derive(Debug, Clone, Copy)]
pub struct OptimizerConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            lr: 1e-5,
            weight_decay: 0.01,
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
    /// Mask feedback per round after the first.
    pub mask_fed: Vec<bool>,
    /// Whether a fed-back mask carried gradients (it must not).
    pub feedback_required_grad: bool,
}

/// A SAM model being trained.
pub struct Trainer {
    sam: Sam,
    backend: TchBackend,
    optimizer: COptimizer,
    objective: ObjectiveConfig,
    iteration: u64,
}

impl Trainer {
    /// Starts from `state` (f32 on `device`) with every parameter trainable.
    pub fn new(
        sam: Sam,
        state: &StateDict,
        device: Device,
        objective: ObjectiveConfig,
        optimizer: OptimizerConfig,
    ) -> Result<Self, tch::TchError> {
        let mut backend = TchBackend::from_state_dict(state, device, Kind::Float);
        let mut adamw = COptimizer::adamw(optimizer.lr, 0.9, 0.999, optimizer.weight_decay, 1e-8, false)?;
        for (_, tensor) in backend.make_trainable() {
            adamw.add_parameters(&tensor, 0)?;
        }
        Ok(Self {
            sam,
            backend,
            optimizer: adamw,
            objective,
            iteration: 0,
        })
    }

    /// The backend holding the current parameters.
    pub fn backend(&self) -> &TchBackend {
        &self.backend
    }

    /// Iterations done.
    pub fn iteration(&self) -> u64 {
        self.iteration
    }

    /// The loss of the objective on `batch` without updating anything.
    pub fn evaluate(&self, batch: &Batch, rng: &mut impl Rng) -> f64 {
        tch::no_grad(|| objective_forward(&self.sam, &self.backend, batch, self.objective, self.iteration, rng).loss)
            .double_value(&[])
    }

    /// One optimisation step on `batch`.
    pub fn step(&mut self, batch: &Batch, rng: &mut impl Rng) -> Result<StepReport, tch::TchError> {
        self.optimizer.zero_grad()?;
        let out = objective_forward(&self.sam, &self.backend, batch, self.objective, self.iteration, rng);
        out.loss.backward();
        self.optimizer.step()?;
        self.iteration += 1;
        Ok(StepReport {
            loss: out.loss.double_value(&[]),
            round_losses: out.round_losses,
            mask_fed: out.mask_fed,
            feedback_required_grad: out.feedback_required_grad,
        })
    }

    /// A copy of parameter `name`.
    pub fn parameter(&self, name: &str) -> Tensor {
        use medico_models::Backend;
        self.backend.param(name).0.detach().copy()
    }
}
