//! ReduceLROnPlateau as PyTorch defines it (mode `min`, relative threshold 1e-4, no cooldown): the learning
//! rate is multiplied by `factor` when the monitored loss has not improved for more than `patience` checks.

/// The scheduler's state.
#[derive(Debug, Clone)]
pub struct Plateau {
    factor: f64,
    patience: u32,
    best: f64,
    bad_checks: u32,
}

/// PyTorch's default relative improvement threshold.
const THRESHOLD: f64 = 1e-4;

impl Plateau {
    /// A scheduler multiplying by `factor` after `patience` checks without improvement (medico-sam: 0.9, 10).
    pub fn new(factor: f64, patience: u32) -> Self {
        Self {
            factor,
            patience,
            best: f64::INFINITY,
            bad_checks: 0,
        }
    }

    /// The best loss so far and the checks since it (for a checkpoint).
    pub fn state(&self) -> (f64, u32) {
        (self.best, self.bad_checks)
    }

    /// Restores what [`Self::state`] returned.
    pub fn restore(&mut self, (best, bad_checks): (f64, u32)) {
        self.best = best;
        self.bad_checks = bad_checks;
    }

    /// Records `loss`; returns the new learning rate (`lr`, or `lr · factor` on a plateau).
    pub fn check(&mut self, loss: f64, lr: f64) -> f64 {
        if loss < self.best * (1.0 - THRESHOLD) {
            self.best = loss;
            self.bad_checks = 0;
            return lr;
        }
        self.bad_checks += 1;
        if self.bad_checks > self.patience {
            self.bad_checks = 0;
            return lr * self.factor;
        }
        lr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_drops_after_patience_checks_without_improvement() {
        let mut plateau = Plateau::new(0.5, 2);
        assert_eq!(plateau.check(1.0, 1.0), 1.0);
        assert_eq!(plateau.check(1.0, 1.0), 1.0);
        assert_eq!(plateau.check(1.0, 1.0), 1.0);
        assert_eq!(plateau.check(1.0, 1.0), 0.5, "third check without improvement");
        assert_eq!(plateau.check(0.5, 0.5), 0.5, "an improvement resets the count");
    }
}
