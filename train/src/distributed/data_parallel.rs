//! What a training step needs of the ranks of a data-parallel run: which part of a global batch is this
//! rank's, sums of values and gradients over every rank, and which rank writes. One process is the run of a
//! single rank, with nothing to exchange.
//!
//! The trainers divide each loss by the size of the *global* batch (its objects, pixels or Dice sums), so
//! the gradients of the ranks' shards add up to the gradient of the whole batch: the all-reduce sums. That is
//! DDP's averaging of per-rank mean losses when the shards are equal, and stays exact when they are not
//! (an image with fewer objects, a batch that does not divide by the ranks).

use std::ops::Range;

use tch::{Kind, Tensor};

use super::{DistributedError, ProcessGroup};

/// This process's part in a data-parallel run.
pub enum DataParallel {
    /// The only rank.
    Single,
    /// One rank of a process group.
    Group(ProcessGroup),
}

impl DataParallel {
    /// This process's rank.
    pub fn rank(&self) -> usize {
        match self {
            DataParallel::Single => 0,
            DataParallel::Group(group) => group.rank(),
        }
    }

    /// How many ranks.
    pub fn world_size(&self) -> usize {
        match self {
            DataParallel::Single => 1,
            DataParallel::Group(group) => group.world_size(),
        }
    }

    /// Whether this rank writes the run's files (logs, checkpoints, the bundle): rank 0.
    pub fn writes(&self) -> bool {
        self.rank() == 0
    }

    /// This rank's contiguous part of `len` items (the first `len % world_size` ranks get one more).
    pub fn shard(&self, len: usize) -> Range<usize> {
        shard_of(len, self.rank(), self.world_size())
    }

    /// Sums `values` over every rank, in place.
    pub fn sum_values(&self, values: &mut [f64]) -> Result<(), DistributedError> {
        let DataParallel::Group(group) = self else {
            return Ok(());
        };
        if values.is_empty() {
            return Ok(());
        }
        let mut tensors = [Tensor::from_slice(values)];
        group.all_reduce_sum(&mut tensors)?;
        let summed = Vec::<f64>::try_from(&tensors[0]).map_err(|e| DistributedError::Collective(e.to_string()))?;
        values.copy_from_slice(&summed);
        Ok(())
    }

    /// Returns once every rank has called it (a collective: bounded by the group's timeout).
    pub fn barrier(&self) -> Result<(), DistributedError> {
        self.sum_values(&mut [0.0])
    }

    /// Sums detached `tensor` over every rank (on its device), returning the sum.
    pub fn sum_tensor(&self, tensor: &Tensor) -> Result<Tensor, DistributedError> {
        let mut tensors = [tensor.detach().copy()];
        if let DataParallel::Group(group) = self {
            group.all_reduce_sum(&mut tensors)?;
        }
        let [sum] = tensors;
        Ok(sum)
    }

    /// Sums the gradients of `parameters` over every rank, in place, before an optimizer step. A parameter
    /// that no object of this rank's shard reached has no gradient here; when another rank's shard did reach
    /// it, it gets a zero gradient first, so that every rank sums the same tensors and steps the same
    /// parameters (a parameter no rank reached keeps no gradient, as in a one-process step).
    pub fn sum_gradients(&self, parameters: &[Tensor]) -> Result<(), DistributedError> {
        let DataParallel::Group(group) = self else {
            return Ok(());
        };
        let mut reached: Vec<f64> = parameters
            .iter()
            .map(|p| f64::from(u8::from(p.grad().defined())))
            .collect();
        self.sum_values(&mut reached)?;
        let missing: Vec<&Tensor> = parameters
            .iter()
            .zip(&reached)
            .filter(|(p, &count)| count > 0.0 && !p.grad().defined())
            .map(|(p, _)| p)
            .collect();
        if !missing.is_empty() {
            // A zero gradient for each: the backward of zero times their sums.
            let sums: Vec<Tensor> = missing.iter().map(|p| p.sum(Kind::Float)).collect();
            (Tensor::stack(&sums, 0).sum(Kind::Float) * 0.0).backward();
        }
        let mut gradients: Vec<Tensor> = parameters
            .iter()
            .zip(&reached)
            .filter(|(_, &count)| count > 0.0)
            .map(|(p, _)| p.grad())
            .collect();
        group.all_reduce_sum(&mut gradients)
    }

    /// Fails unless every rank passes the same `values` (the same weights and iteration at the start of a run
    /// and at its end).
    pub fn check_same(&self, what: &str, values: &[f64]) -> Result<(), DistributedError> {
        let mut summed = values.to_vec();
        self.sum_values(&mut summed)?;
        let world = self.world_size() as f64;
        let same = values
            .iter()
            .zip(&summed)
            .all(|(&mine, &sum)| (sum - mine * world).abs() <= 1e-9 * (sum.abs() + 1.0));
        match same {
            true => Ok(()),
            false => Err(DistributedError::Collective(format!(
                "rank {} holds other {what} than the others (its {values:?}, summed over the ranks {summed:?})",
                self.rank()
            ))),
        }
    }
}

/// Rank `rank`'s contiguous part of `len` items among `world_size` ranks.
pub fn shard_of(len: usize, rank: usize, world_size: usize) -> Range<usize> {
    let start = |r: usize| r * (len / world_size) + r.min(len % world_size);
    start(rank)..start(rank + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_a_batch_once_in_order() {
        for (len, world) in [(8, 2), (7, 3), (2, 2), (5, 1), (3, 4)] {
            let shards: Vec<Range<usize>> = (0..world).map(|r| shard_of(len, r, world)).collect();
            let joined: Vec<usize> = shards.iter().flat_map(|s| s.clone()).collect();
            assert_eq!(joined, (0..len).collect::<Vec<_>>(), "{len} over {world}");
            let sizes: Vec<usize> = shards.iter().map(|s| s.len()).collect();
            assert!(
                sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
                "{sizes:?}"
            );
        }
    }

    #[test]
    fn a_single_process_exchanges_nothing() {
        let single = DataParallel::Single;
        let mut values = [1.5, -2.0];
        single.sum_values(&mut values).unwrap();
        assert_eq!(values, [1.5, -2.0]);
        assert!(single.writes() && single.shard(5) == (0..5));
        single.check_same("weights", &[3.0]).unwrap();
    }
}
