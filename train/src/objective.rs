//! MedicoSAM's training objective (micro-sam's `SamTrainer`, as the MedicoSAM paper trains) on the tch backend: image embeddings
//! once per batch, then decoding rounds — round 0 one random positive point (multimask, best of 3 by
//! predicted IoU) on even iterations or one jittered box on odd ones; each later round adds one positive click
//! in the missed region and one negative click in the false positives (earlier prompts kept) and, with
//! probability `mask_prob`, feeds the chosen mask's low-res logits back (detached) as mask prompt; loss per
//! round = soft Dice (squared denominator, best over the outputs) + MSE(predicted IoU, true IoU) (weight 1
//! unless configured), averaged over rounds. Ablations: `simple` (one round, point or box at random),
//! `medsam` (one round, box).

use medico_io::preprocess::MASK_LOGIT;
use medico_models::clicks::{correction_clicks, start_box, start_point, BOX_JITTER};
use medico_models::distance::farthest_interior_point;
use medico_models::prompt::{sparse_prompt, BoxPrompt, CoordinateMap, Point};
use medico_models::prompt_encoder::DensePrompt;
use medico_models::sam::PromptTensors;
use medico_models::Sam;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

use crate::backend::{TchBackend, TchTensor};
use crate::data::DerivedObject;

/// Which objective to train with (`medicosam`, `simple`, `medsam` or `walk` in a configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// The full iterative objective.
    MedicoSam,
    /// One round, a point or a box at random, no mask input.
    Simple,
    /// One round, box only.
    MedSam,
    /// The propagation term alone (every volume with `"propagation": true`): a decoder for a bundle's
    /// walks (`propagation_decoder_*`), which answers only the prompts a walk derives, never a user's clicks.
    Walk,
}

impl Objective {
    /// The name training configurations use.
    pub fn name(self) -> &'static str {
        match self {
            Objective::MedicoSam => "medicosam",
            Objective::Simple => "simple",
            Objective::MedSam => "medsam",
            Objective::Walk => "walk",
        }
    }
}

impl std::fmt::Display for Objective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a point start clicks in its object (`uniform` or `farthest` in a configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PointStart {
    /// A uniformly random object pixel (micro-sam's training).
    #[default]
    Uniform,
    /// The object pixel farthest from its boundary: where `eval interactive` clicks, and where a user clicks
    /// to mean the whole object. Meant to tell nested objects apart (the nucleus whose centre it is, not the
    /// hemisphere it also lies in); on medico-lite it did not make the IoU head rank its outputs
    /// (docs/medico-lite.md).
    Farthest,
}

/// Objective settings.
#[derive(Debug, Clone, Copy)]
pub struct ObjectiveConfig {
    /// Which objective.
    pub objective: Objective,
    /// Decoding rounds of the `medicosam` objective (the paper: 8).
    pub rounds: usize,
    /// Probability of feeding the previous logits back in a round (the paper: 0.5).
    pub mask_prob: f64,
    /// Weight of a per-pixel binary cross-entropy on the best output, added to each round's loss (the paper:
    /// 0, Dice and IoU MSE only). Training from scratch, Dice alone leaves every logit negative for
    /// thousands of steps; the dense BCE term gives confident masks early.
    pub bce_weight: f64,
    /// Weight of the IoU MSE term (the paper: 1). A box-trained decoder (LiteMedSAM's) scores its multimask
    /// outputs alike; a larger weight presses its IoU token to tell them apart (tenfold on medico-lite, a few
    /// hundred CPU steps: not enough, docs/medico-lite.md).
    pub iou_weight: f64,
    /// Where a point start clicks.
    pub point_start: PointStart,
    /// Weight of the propagation term (batches with [`Batch::derived`] objects): one decoding of each derived
    /// box, loss = Dice + BCE (weight 1: Dice alone has no gradient towards an empty mask) + IoU MSE.
    pub propagation_weight: f64,
    /// Whether the propagation term also gives the decoder the neighbour's mask as the mask prompt (the
    /// runtime's `lite_medsam+mask` projection), not only its box.
    pub propagation_mask: bool,
    /// Weight of a click term added to each round's loss (0: the paper's loss): the binary cross-entropy of
    /// the best output's logit at every click so far against the click's label, each object's clicks
    /// averaged — a decoder that ignores a correction at the very pixel clicked pays for it. Training only:
    /// validation leaves it out, so stages stay comparable.
    pub click_weight: f64,
}

impl Default for ObjectiveConfig {
    fn default() -> Self {
        Self {
            objective: Objective::MedicoSam,
            rounds: 8,
            mask_prob: 0.5,
            bce_weight: 0.0,
            iou_weight: 1.0,
            point_start: PointStart::Uniform,
            propagation_weight: 1.0,
            propagation_mask: false,
            click_weight: 0.0,
        }
    }
}

impl ObjectiveConfig {
    /// How many rounds each batch is decoded: `rounds` for the full objective, one for the ablations, none
    /// for `walk` (its one decoding per derived box is the propagation term's).
    pub fn decoding_rounds(&self) -> usize {
        match self.objective {
            Objective::MedicoSam => self.rounds.max(1),
            Objective::Simple | Objective::MedSam => 1,
            Objective::Walk => 0,
        }
    }
}

/// What the objective starts from: images for the encoder, or the embeddings a frozen encoder gave them.
pub enum BatchInput {
    /// Normalized, padded images `[B, 3, S, S]`.
    Images(Tensor),
    /// Image embeddings `[B, C, 64, 64]`, computed once by a frozen image encoder.
    Embeddings(Tensor),
}

/// A training batch at the model's input size: images (or their embeddings) and, per object, its image
/// and mask. It may be one rank's shard of a global batch ([`crate::distributed::DataParallel`]): its
/// clicks then come from each object's own generator and its losses are divided by the global batch's
/// counts, so that the shards' gradients add up to the whole batch's.
pub struct Batch {
    /// The images or their embeddings.
    pub input: BatchInput,
    /// For each object: its image index in `images` and its `S x S` row-major mask.
    pub objects: Vec<(usize, Vec<bool>)>,
    /// Propagation objects: image index, the box derived from a neighbouring slice and this slice's mask.
    pub derived: Vec<(usize, DerivedObject)>,
    /// The seed of each object's click generator (start prompt and corrections), in `objects` order.
    pub object_seeds: Vec<u64>,
    /// The objects and propagation objects of the whole global batch (this batch's own when unsharded).
    pub totals: BatchTotals,
}

/// How many objects and propagation objects a global batch holds: what its losses are divided by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchTotals {
    /// Interactive objects.
    pub objects: usize,
    /// Propagation objects.
    pub derived: usize,
}

impl Batch {
    /// An unsharded batch: the objects' clicks seeded by their positions, the totals its own.
    pub fn new(input: BatchInput, objects: Vec<(usize, Vec<bool>)>, derived: Vec<(usize, DerivedObject)>) -> Self {
        let totals = BatchTotals {
            objects: objects.len(),
            derived: derived.len(),
        };
        Self {
            input,
            object_seeds: (0..objects.len() as u64).collect(),
            objects,
            derived,
            totals,
        }
    }
}

/// What one forward pass of the objective produced.
pub struct ObjectiveOutput {
    /// The loss to back-propagate (mean over rounds).
    pub loss: Tensor,
    /// Loss value per round (of the interactive objects).
    pub round_losses: Vec<f64>,
    /// The propagation term's value, when the batch had derived objects.
    pub propagation_loss: Option<f64>,
    /// Whether each round after the first got the previous logits as mask prompt.
    pub mask_fed: Vec<bool>,
    /// Whether any mask prompt handed to the decoder required gradients (it must not).
    pub feedback_required_grad: bool,
}

/// The prompt state of every object.
struct Prompts {
    points: Vec<Vec<Point>>,
    boxes: Vec<Option<BoxPrompt>>,
}

/// Soft Dice loss per object and output (torch-em's squared-denominator form): `[N, K]`.
fn dice_loss(probabilities: &Tensor, target: &Tensor) -> Tensor {
    let dims: &[i64] = &[2, 3];
    let intersection = (probabilities * target).sum_dim_intlist(dims, false, Kind::Float);
    let denominator = (probabilities * probabilities).sum_dim_intlist(dims, false, Kind::Float)
        + (target * target).sum_dim_intlist(dims, false, Kind::Float);
    1.0 - intersection * 2.0 / denominator.clamp_min(1e-6)
}

/// Masks as a `[N, 1, S, S]` float target on `device`.
fn targets<'a>(masks: impl ExactSizeIterator<Item = &'a Vec<bool>>, side: usize, device: tch::Device) -> Tensor {
    let n = masks.len() as i64;
    let values: Vec<f32> = masks.flat_map(|m| m.iter().map(|&v| f32::from(u8::from(v)))).collect();
    Tensor::from_slice(&values)
        .reshape([n, 1, side as i64, side as i64])
        .to_device(device)
}

/// The embeddings of the images `indices` point at.
fn select_embeddings(embeddings: &TchTensor, indices: impl Iterator<Item = usize>, device: tch::Device) -> TchTensor {
    let index = Tensor::from_slice(&indices.map(|i| i as i64).collect::<Vec<_>>()).to_device(device);
    TchTensor(embeddings.0.index_select(0, &index))
}

/// The propagation term: each derived box decoded once (single-mask output, as the runtime's walk decodes
/// it) against this slice's mask, empty past the object's end: Dice + BCE (weight at least 1: Dice alone
/// has no gradient towards an empty mask) + IoU MSE, so that the model learns to return nothing, with a low
/// predicted IoU, where the object has ended.
fn propagation_term(
    sam: &Sam,
    backend: &TchBackend,
    embeddings: &TchTensor,
    batch: &Batch,
    config: ObjectiveConfig,
) -> Tensor {
    let side = sam.config.img_size;
    let device = backend.device();
    let object_embeddings = select_embeddings(embeddings, batch.derived.iter().map(|(i, _)| *i), device);
    let target = targets(batch.derived.iter().map(|(_, d)| &d.target), side, device);
    let prompts = Prompts {
        points: vec![Vec::new(); batch.derived.len()],
        boxes: batch.derived.iter().map(|(_, d)| Some(d.prompt)).collect(),
    };
    let (coords, labels) = sparse_inputs(backend, &prompts, side);
    let neighbour_masks = config
        .propagation_mask
        .then(|| backend.input(&neighbour_mask_prompts(batch, sam.config.low_res_size(), device)));
    let output = sam.decode(
        backend,
        &object_embeddings,
        PromptTensors {
            sparse: Some((&coords, &labels)),
            dense: neighbour_masks.as_ref().map_or(DensePrompt::None, DensePrompt::Mask),
        },
    );
    let selected = sam.select_outputs(backend, &output, false);
    let low_res = selected.masks.0.to_kind(Kind::Float);
    let predicted_iou = selected.iou_predictions.0.to_kind(Kind::Float);
    let logits = low_res.upsample_bilinear2d([side as i64, side as i64], false, None, None);
    let config = ObjectiveConfig {
        bce_weight: config.bce_weight.max(1.0),
        ..config
    };
    round_loss(&logits, &predicted_iou, &target, config, batch.totals.derived).0
}

/// The derived objects' neighbour masks as mask-prompt logits `[N, 1, low, low]` (±`MASK_LOGIT`, 0 in the
/// padding, as the runtime's `mask_logits`).
fn neighbour_mask_prompts(batch: &Batch, low: usize, device: tch::Device) -> Tensor {
    let values: Vec<f32> = batch
        .derived
        .iter()
        .flat_map(|(_, d)| {
            assert_eq!(
                d.prompt_mask.len(),
                low * low,
                "a derived object's mask prompt is low x low"
            );
            d.prompt_mask.iter().map(|&s| f32::from(s) * MASK_LOGIT)
        })
        .collect();
    Tensor::from_slice(&values)
        .reshape([batch.derived.len() as i64, 1, low as i64, low as i64])
        .to_device(device)
}

/// Whether this iteration starts from boxes, and how many rounds it decodes.
fn start_and_rounds(config: ObjectiveConfig, iteration: u64, rng: &mut impl Rng) -> (bool, usize) {
    let rounds = config.decoding_rounds();
    match config.objective {
        Objective::MedicoSam => (iteration % 2 == 1, rounds),
        Objective::Simple => (rng.random_bool(0.5), rounds),
        Objective::MedSam | Objective::Walk => (true, rounds),
    }
}

/// Round 0's prompt of every object (from its own generator in `rngs`): a jittered box or one positive point.
fn start_prompts(
    batch: &Batch,
    hw: (usize, usize),
    use_box: bool,
    point_start: PointStart,
    rngs: &mut [ChaCha8Rng],
) -> Prompts {
    let n = batch.objects.len();
    let mut prompts = Prompts {
        points: vec![Vec::new(); n],
        boxes: vec![None; n],
    };
    for (k, ((_, mask), rng)) in batch.objects.iter().zip(rngs.iter_mut()).enumerate() {
        if use_box {
            prompts.boxes[k] = start_box(mask, hw, BOX_JITTER, rng);
        } else {
            let point = match point_start {
                PointStart::Uniform => start_point(mask, hw, rng),
                PointStart::Farthest => farthest_interior_point(mask, hw),
            };
            prompts.points[k].extend(point);
        }
    }
    prompts
}

/// Every object's points and box as decoder inputs `[N, T, 2]` and `[N, T]`.
fn sparse_inputs(backend: &TchBackend, prompts: &Prompts, side: usize) -> (TchTensor, TchTensor) {
    let identity = CoordinateMap::new((side, side), side);
    let n = prompts.points.len();
    let (mut coords, mut labels) = (Vec::new(), Vec::new());
    for k in 0..n {
        let (c, l) = sparse_prompt(&prompts.points[k], prompts.boxes[k].as_ref(), &identity)
            .expect("every object has a start prompt");
        coords.extend(c);
        labels.extend(l);
    }
    let tokens = (labels.len() / n) as i64;
    (
        backend.input(&Tensor::from_slice(&coords).reshape([n as i64, tokens, 2])),
        backend.input(&Tensor::from_slice(&labels).reshape([n as i64, tokens])),
    )
}

/// The IoU of each output's binarised mask with the target, `[N, K]` (no gradient: the IoU head's target).
fn true_iou(probabilities: &Tensor, target: &Tensor) -> Tensor {
    tch::no_grad(|| {
        let binary = probabilities.gt(0.5).to_kind(Kind::Float);
        let inter = (&binary * target).sum_dim_intlist([2i64, 3].as_slice(), false, Kind::Float);
        let union = (&binary + target)
            .clamp_max(1.0)
            .sum_dim_intlist([2i64, 3].as_slice(), false, Kind::Float);
        inter / union.clamp_min(1.0)
    })
}

/// One round's loss: Dice of the best output per object, MSE of the predicted IoUs against the true ones
/// (weighted by `iou_weight`), and optionally a BCE on the best output's logits; each a sum over this
/// batch's objects divided by the `total` objects of the global batch (the mean when unsharded). Also the
/// best output of each object.
fn round_loss(
    logits: &Tensor,
    predicted_iou: &Tensor,
    target: &Tensor,
    config: ObjectiveConfig,
    total: usize,
) -> (Tensor, Tensor) {
    let probabilities = logits.sigmoid();
    let (best_dice, best_output) = dice_loss(&probabilities, target).min_dim(1, false);
    let size = logits.size();
    let total = total.max(1) as f64;
    let mse = (predicted_iou - true_iou(&probabilities, target))
        .square()
        .sum(Kind::Float)
        / (total * size[1] as f64);
    let mut loss = best_dice.sum(Kind::Float) / total + mse * config.iou_weight;
    if config.bce_weight > 0.0 {
        let idx = best_output
            .view([size[0], 1, 1, 1])
            .expand([size[0], 1, size[2], size[3]], false);
        let best_logits = logits.gather(1, &idx, false);
        let bce = best_logits.binary_cross_entropy_with_logits::<Tensor>(target, None, None, tch::Reduction::Sum)
            / (total * (size[2] * size[3]) as f64);
        loss += bce * config.bce_weight;
    }
    (loss, best_output)
}

/// The click term: per object, the mean binary cross-entropy of its `best` output's logit at each of its
/// clicks against the click's label; summed over the objects and divided by the global batch's `total`.
fn click_term(logits: &Tensor, best: &Tensor, points: &[Vec<Point>], total: usize) -> Option<Tensor> {
    let size = logits.size();
    let (outputs, side) = (size[1], size[2]);
    let best = Vec::<i64>::try_from(best.to_device(tch::Device::Cpu)).unwrap_or_default();
    let (mut index, mut labels, mut weights) = (Vec::new(), Vec::new(), Vec::new());
    for (k, (clicks, &output)) in points.iter().zip(&best).enumerate() {
        for p in clicks {
            let (x, y) = (
                (p.x.round() as i64).clamp(0, side - 1),
                (p.y.round() as i64).clamp(0, side - 1),
            );
            index.push(((k as i64 * outputs + output) * side + y) * side + x);
            labels.push(f32::from(u8::from(p.positive)));
            weights.push(1.0 / clicks.len() as f32);
        }
    }
    if index.is_empty() {
        return None;
    }
    let device = logits.device();
    let at_clicks = logits
        .flatten(0, -1)
        .index_select(0, &Tensor::from_slice(&index).to_device(device));
    let labels = Tensor::from_slice(&labels).to_device(device);
    let weights = Tensor::from_slice(&weights).to_device(device);
    let bce = at_clicks.binary_cross_entropy_with_logits(&labels, Some(weights), None::<Tensor>, tch::Reduction::Sum);
    Some(bce / total.max(1) as f64)
}

/// After a round (not differentiated): per object the output with the best predicted IoU, binarised at 0,
/// gets a correction click from the object's generator in `rngs`; the low-res logits are fed back as the
/// next mask prompt with probability `mask_prob` (MedicoSAM only), drawn from the batch's shared `rng`.
/// Returns whether they were, and the feedback.
fn update_prompts(
    batch: &Batch,
    prompts: &mut Prompts,
    (logits, low_res, predicted_iou): (&Tensor, &Tensor, &Tensor),
    config: ObjectiveConfig,
    (rng, rngs): (&mut impl Rng, &mut [ChaCha8Rng]),
) -> (bool, Option<Tensor>) {
    tch::no_grad(|| {
        let n = batch.objects.len() as i64;
        let best = predicted_iou.argmax(1, false);
        let gather = |t: &Tensor| {
            let idx = best.view([n, 1, 1, 1]).expand([n, 1, t.size()[2], t.size()[3]], false);
            t.gather(1, &idx, false)
        };
        let chosen_logits = gather(logits).gt(0.0);
        let chosen_low = gather(low_res).detach();
        let flat: Vec<u8> = Vec::<u8>::try_from(chosen_logits.to_kind(Kind::Uint8).flatten(0, -1)).unwrap_or_default();
        let side = logits.size()[2] as usize;
        for (k, ((_, mask), object_rng)) in batch.objects.iter().zip(rngs.iter_mut()).enumerate() {
            let pred: Vec<bool> = flat[k * side * side..(k + 1) * side * side]
                .iter()
                .map(|&v| v != 0)
                .collect();
            if let Some(clicks) = correction_clicks(mask, &pred, (side, side), object_rng) {
                prompts.points[k].extend(clicks);
            }
        }
        let feed = config.objective == Objective::MedicoSam && rng.random_bool(config.mask_prob);
        (feed, feed.then_some(chosen_low))
    })
}

/// Runs the objective on `batch`; `iteration` picks the point or box start (even: point, odd: box). Each
/// object's clicks come from its own generator (`Batch::object_seeds`); the decisions shared by the whole
/// batch (mask feedback per round, the `simple` objective's start) from `rng`, which every rank holding a
/// shard of the batch draws alike.
pub fn objective_forward(
    sam: &Sam,
    backend: &TchBackend,
    batch: &Batch,
    config: ObjectiveConfig,
    iteration: u64,
    rng: &mut impl Rng,
) -> ObjectiveOutput {
    let side = sam.config.img_size;
    let device = backend.device();
    let embeddings = match &batch.input {
        BatchInput::Images(images) => sam.encode_image(backend, &backend.input(images)),
        BatchInput::Embeddings(embeddings) => backend.input(embeddings),
    };
    let propagation = (!batch.derived.is_empty()).then(|| propagation_term(sam, backend, &embeddings, batch, config));
    let propagation_loss = propagation.as_ref().map(|t| t.double_value(&[]));
    let weighted = propagation.map(|t| t * config.propagation_weight);
    if batch.objects.is_empty() || config.objective == Objective::Walk {
        return ObjectiveOutput {
            loss: weighted.unwrap_or_else(|| Tensor::zeros([], (Kind::Float, device))),
            round_losses: Vec::new(),
            propagation_loss,
            mask_fed: Vec::new(),
            feedback_required_grad: false,
        };
    }
    let object_embeddings = select_embeddings(&embeddings, batch.objects.iter().map(|(i, _)| *i), device);
    let target = targets(batch.objects.iter().map(|(_, m)| m), side, device);
    let (use_box, rounds) = start_and_rounds(config, iteration, rng);
    let mut rngs: Vec<ChaCha8Rng> = batch
        .object_seeds
        .iter()
        .map(|&s| ChaCha8Rng::seed_from_u64(s))
        .collect();
    let mut prompts = start_prompts(batch, (side, side), use_box, config.point_start, &mut rngs);
    let mut feedback: Option<Tensor> = None;
    let (mut losses, mut round_losses, mut mask_fed) = (Vec::new(), Vec::new(), Vec::new());
    let mut feedback_required_grad = false;
    for round in 0..rounds {
        let (coords, labels) = sparse_inputs(backend, &prompts, side);
        let feedback_tensor = feedback.as_ref().map(|t| backend.input(t));
        if let Some(t) = &feedback_tensor {
            feedback_required_grad |= t.0.requires_grad();
        }
        let dense = match &feedback_tensor {
            Some(t) => DensePrompt::Mask(t),
            None => DensePrompt::None,
        };
        let sparse = Some((&coords, &labels));
        let output = sam.decode(backend, &object_embeddings, PromptTensors { sparse, dense });
        let multimask = round == 0 && !use_box;
        let selected = sam.select_outputs(backend, &output, multimask);
        let low_res = selected.masks.0.to_kind(Kind::Float);
        let predicted_iou = selected.iou_predictions.0.to_kind(Kind::Float);
        let logits = low_res.upsample_bilinear2d([side as i64, side as i64], false, None, None);
        let (mut loss, best) = round_loss(&logits, &predicted_iou, &target, config, batch.totals.objects);
        if config.click_weight > 0.0 {
            if let Some(term) = click_term(&logits, &best, &prompts.points, batch.totals.objects) {
                loss += term * config.click_weight;
            }
        }
        round_losses.push(loss.double_value(&[]));
        losses.push(loss);
        if round + 1 == rounds {
            break;
        }
        let (fed, next) = update_prompts(
            batch,
            &mut prompts,
            (&logits, &low_res, &predicted_iou),
            config,
            (&mut *rng, &mut rngs),
        );
        mask_fed.push(fed);
        feedback = next;
    }
    let mut loss = Tensor::stack(&losses, 0).mean(Kind::Float);
    if let Some(term) = weighted {
        loss += term;
    }
    ObjectiveOutput {
        loss,
        round_losses,
        propagation_loss,
        mask_fed,
        feedback_required_grad,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_farthest_point_start_clicks_the_centre_and_a_uniform_one_anywhere_inside() {
        let side = 16;
        // A 7 x 7 square: its centre is (5, 6); uniform clicks land all over it.
        let mask: Vec<bool> = (0..side * side)
            .map(|i| (2..9).contains(&(i % side)) && (3..10).contains(&(i / side)))
            .collect();
        let batch = Batch::new(
            BatchInput::Embeddings(Tensor::zeros([1, 1, 1, 1], (Kind::Float, tch::Device::Cpu))),
            vec![(0, mask.clone())],
            Vec::new(),
        );
        let mut rng = [ChaCha8Rng::seed_from_u64(0)];
        let mut clicks = std::collections::HashSet::new();
        for _ in 0..20 {
            let farthest = start_prompts(&batch, (side, side), false, PointStart::Farthest, &mut rng);
            let p = farthest.points[0][0];
            assert_eq!((p.x, p.y, p.positive), (5.0, 6.0, true));
            let uniform = start_prompts(&batch, (side, side), false, PointStart::Uniform, &mut rng);
            let q = uniform.points[0][0];
            assert!(mask[q.y as usize * side + q.x as usize] && q.positive);
            clicks.insert((q.x as usize, q.y as usize));
        }
        assert!(clicks.len() > 5, "uniform clicks vary: {clicks:?}");
    }
}
