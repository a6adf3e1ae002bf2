//! AdamW (decoupled weight decay, bias-corrected moments; PyTorch's `torch.optim.AdamW` update) whose state
//! lives in ordinary tensors, so that checkpoints can store it for an exact resume — libtorch's C++ optimizer
//! behind `tch::COptimizer` keeps its moments out of reach.

use tch::Tensor;

/// AdamW over named parameters.
pub struct AdamW {
    /// Learning rate.
    pub lr: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    /// Updates done (the bias correction's `t`).
    pub steps: i64,
    params: Vec<(String, Tensor)>,
    /// First and second moments, one pair per parameter.
    moments: Vec<(Tensor, Tensor)>,
}

impl AdamW {
    /// AdamW with PyTorch's defaults (betas 0.9/0.999, eps 1e-8) over `params`.
    pub fn new(params: Vec<(String, Tensor)>, lr: f64, weight_decay: f64) -> Self {
        let moments = params.iter().map(|(_, p)| (p.zeros_like(), p.zeros_like())).collect();
        Self {
            lr,
            weight_decay,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            steps: 0,
            params,
            moments,
        }
    }

    /// The parameters it updates (handles sharing their storage and gradients).
    pub fn parameters(&self) -> Vec<Tensor> {
        self.params.iter().map(|(_, p)| p.shallow_clone()).collect()
    }

    /// Clears the parameters' gradients.
    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    /// One update from the current gradients (parameters without a gradient are left alone).
    pub fn step(&mut self) {
        self.steps += 1;
        let t = self.steps as i32;
        let (c1, c2) = (1.0 - self.beta1.powi(t), 1.0 - self.beta2.powi(t));
        tch::no_grad(|| {
            for ((_, p), (m, v)) in self.params.iter_mut().zip(&mut self.moments) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let _ = p.g_mul_scalar_(1.0 - self.lr * self.weight_decay);
                let _ = m.g_mul_scalar_(self.beta1);
                let _ = m.g_add_(&(&g * (1.0 - self.beta1)));
                let _ = v.g_mul_scalar_(self.beta2);
                let _ = v.g_add_(&(&g * &g * (1.0 - self.beta2)));
                let denominator = (&*v / c2).sqrt() + self.eps;
                let _ = p.g_sub_(&(&*m / c1 / denominator * self.lr));
            }
        });
    }

    /// The moments as named tensors (`adamw.m.KEY`, `adamw.v.KEY`) for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.state_under(STATE_PREFIX)
    }

    /// The moments under `PREFIX.m.KEY` and `PREFIX.v.KEY` (several optimizers in one checkpoint).
    pub fn state_under(&self, prefix: &str) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .zip(&self.moments)
            .flat_map(|((k, _), (m, v))| {
                [
                    (format!("{prefix}.m.{k}"), m.shallow_clone()),
                    (format!("{prefix}.v.{k}"), v.shallow_clone()),
                ]
            })
            .collect()
    }

    /// Restores the moments from checkpoint tensors; every parameter must have both.
    /// `Err` names the first moment tensor the checkpoint lacks.
    pub fn load_state(&mut self, tensors: &std::collections::HashMap<String, Tensor>) -> Result<(), MissingMoment> {
        self.load_state_under(tensors, STATE_PREFIX)
    }

    /// [`Self::load_state`] from the moments [`Self::state_under`] wrote under `prefix`.
    pub fn load_state_under(
        &mut self,
        tensors: &std::collections::HashMap<String, Tensor>,
        prefix: &str,
    ) -> Result<(), MissingMoment> {
        for ((k, _), (m, v)) in self.params.iter().zip(&mut self.moments) {
            let get = |kind: &str| {
                let key = format!("{prefix}.{kind}.{k}");
                tensors.get(&key).ok_or(MissingMoment(key))
            };
            let (saved_m, saved_v) = (get("m")?, get("v")?);
            tch::no_grad(|| {
                m.copy_(saved_m);
                v.copy_(saved_v);
            });
        }
        Ok(())
    }
}

/// Key prefix of a single optimizer's moments in a checkpoint.
const STATE_PREFIX: &str = "adamw";

/// A moment tensor (`adamw.m.*` or `adamw.v.*`) a checkpoint lacks.
#[derive(Debug, thiserror::Error)]
#[error("checkpoint lacks {0}")]
pub struct MissingMoment(pub String);
