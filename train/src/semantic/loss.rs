//! The semantic loss of medico-sam (`CustomCombinedLoss`): 0.5 · Dice + 0.5 · cross-entropy, where the Dice
//! term compares the softmax over the model's outputs with one-hot targets per channel (torch-em's Dice:
//! `2 Σ p·t / (Σ p² + Σ t²)`, averaged over channels) and the cross-entropy takes the outputs as logits — the
//! outputs being the UNETR's Sigmoid probabilities, as micro-sam trains it.

use tch::{Kind, Reduction, Tensor};

use crate::distributed::{DataParallel, DistributedError};

/// Weight of the Dice term (the cross-entropy gets the rest).
pub const DICE_WEIGHT: f64 = 0.5;
/// Smallest Dice denominator (torch-em's `eps`).
const DICE_EPS: f64 = 1e-7;

/// The loss and its parts.
pub struct SemanticLoss {
    /// `DICE_WEIGHT · dice + (1 − DICE_WEIGHT) · cross_entropy` (of a shard: its part of the global batch's).
    pub loss: Tensor,
    /// 1 − mean soft Dice over channels (of the global batch).
    pub dice: f64,
    /// Mean cross-entropy per pixel (of a shard: its pixels' sum over the global batch's pixel count).
    pub cross_entropy: f64,
}

/// The loss of `outputs` `[B, C, S, S]` against class maps `target` `[B, S, S]` (int64, values `0..C`).
pub fn semantic_loss(outputs: &Tensor, target: &Tensor) -> SemanticLoss {
    sharded_semantic_loss(outputs, target, &DataParallel::Single, target.numel())
        .expect("a single process exchanges nothing that could fail")
}

/// The loss of one rank's shard (`outputs`, `target`) of a global batch of `global_pixels` pixels, such that
/// the ranks' gradients add up to the global batch's: the Dice's per-channel sums are the global batch's
/// (summed over the ranks; the gradient flows through this shard's own part), the cross-entropy is this
/// shard's sum over the global pixel count.
pub fn sharded_semantic_loss(
    outputs: &Tensor,
    target: &Tensor,
    parallel: &DataParallel,
    global_pixels: usize,
) -> Result<SemanticLoss, DistributedError> {
    let channels = outputs.size()[1];
    let one_hot = target.one_hot(channels).permute([0, 3, 1, 2]).to_kind(outputs.kind());
    let soft = outputs.softmax(1, outputs.kind());
    let axes: &[i64] = &[0, 2, 3];
    let overlap = (&soft * &one_hot).sum_dim_intlist(axes, false, Kind::Float);
    let denominator = (&soft * &soft).sum_dim_intlist(axes, false, Kind::Float)
        + (&one_hot * &one_hot).sum_dim_intlist(axes, false, Kind::Float);
    let global = |local: Tensor| -> Result<Tensor, DistributedError> {
        let sum = parallel.sum_tensor(&local)?;
        Ok(&local + (sum - local.detach()))
    };
    let (overlap, denominator) = (global(overlap)?, global(denominator)?);
    let dice: Tensor = 1.0 - (overlap * 2.0 / denominator.clamp_min(DICE_EPS)).mean(Kind::Float);
    let cross_entropy =
        outputs.cross_entropy_loss::<Tensor>(target, None, Reduction::Sum, -100, 0.0) / global_pixels.max(1) as f64;
    let loss = &dice * DICE_WEIGHT + &cross_entropy * (1.0 - DICE_WEIGHT);
    Ok(SemanticLoss {
        dice: dice.double_value(&[]),
        cross_entropy: cross_entropy.double_value(&[]),
        loss,
    })
}

/// Per class of predicted class maps and targets (both `[B, S, S]` int64): the pixels both give the class
/// and the pixels either gives it (summed sizes), from which hard Dice = 2 · both / sizes.
pub fn class_overlaps(predicted: &Tensor, target: &Tensor, classes: i64) -> Vec<(f64, f64)> {
    (0..classes)
        .map(|c| {
            let (p, t) = (predicted.eq(c), target.eq(c));
            let both = p.logical_and(&t).sum(Kind::Float).double_value(&[]);
            let sizes = p.sum(Kind::Float).double_value(&[]) + t.sum(Kind::Float).double_value(&[]);
            (both, sizes)
        })
        .collect()
}

/// Hard Dice from accumulated [`class_overlaps`]; `None` for a class absent from predictions and targets.
pub fn dice_of(overlaps: &[(f64, f64)]) -> Vec<Option<f64>> {
    overlaps
        .iter()
        .map(|&(both, sizes)| (sizes > 0.0).then(|| 2.0 * both / sizes))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confident_right_outputs_cost_less_than_wrong_ones() {
        let target = Tensor::from_slice(&[0i64, 1, 1, 0]).reshape([1, 2, 2]);
        let right = Tensor::from_slice(&[0.99f32, 0.01, 0.01, 0.99, 0.01, 0.99, 0.99, 0.01]).reshape([1, 2, 2, 2]);
        let wrong = Tensor::from_slice(&[0.01f32, 0.99, 0.99, 0.01, 0.99, 0.01, 0.01, 0.99]).reshape([1, 2, 2, 2]);
        let (good, bad) = (semantic_loss(&right, &target), semantic_loss(&wrong, &target));
        assert!(good.loss.double_value(&[]) < bad.loss.double_value(&[]));
        assert!(good.dice < bad.dice && good.cross_entropy < bad.cross_entropy);
    }

    #[test]
    fn hard_dice_counts_overlap_per_class() {
        let target = Tensor::from_slice(&[0i64, 1, 1, 2]).reshape([1, 2, 2]);
        let predicted = Tensor::from_slice(&[0i64, 1, 0, 0]).reshape([1, 2, 2]);
        let dice = dice_of(&class_overlaps(&predicted, &target, 4));
        assert_eq!(dice[0], Some(2.0 * 1.0 / 4.0));
        assert_eq!(dice[1], Some(2.0 * 1.0 / 3.0));
        assert_eq!(dice[2], Some(0.0));
        assert_eq!(dice[3], None);
    }
}
