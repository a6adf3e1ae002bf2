//! One step of semantic training: the UNETR decoder's loss on a batch of slices (embeddings of a frozen
//! encoder, or images through the encoder being trained), back-propagated into AdamW; in the joint mode the
//! interactive objective first takes its own step with its own AdamW over the SAM parameters (the shared
//! encoder gets both updates, as micro-sam's `JointSamTrainer`). Validation gives the loss that drives
//! ReduceLROnPlateau and the hard Dice per class.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use medico_models::{Sam, StateDict, UnetrDecoder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use crate::adamw::AdamW;
use crate::backend::TchBackend;
use crate::distributed::{DataParallel, DistributedError};
use crate::error::TrainError;
use crate::objective::{objective_forward, Batch, BatchInput, BatchTotals, ObjectiveConfig};
use crate::semantic::loss::{class_overlaps, dice_of, semantic_loss, sharded_semantic_loss, DICE_WEIGHT};
use crate::semantic::plateau::Plateau;
use crate::trainer::{write_atomically, IMAGE_ENCODER_PREFIX};

/// Slices with their class maps (and, for the joint mode, their objects for the interactive objective):
/// a whole batch, or one rank's shard of a global batch.
pub struct SemanticBatch {
    /// Images `[B, 3, S, S]` or embeddings `[B, C, g, g]`.
    pub input: BatchInput,
    /// Class maps `[B, S, S]` (int64).
    pub target: Tensor,
    /// Objects (image index, `S x S` mask) for the interactive objective of the joint mode.
    pub objects: Vec<(usize, Vec<bool>)>,
    /// The seed of each object's clicks.
    pub object_seeds: Vec<u64>,
    /// The global batch's images and objects.
    pub totals: SemanticTotals,
}

/// The size of a global semantic batch, which its losses are divided by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SemanticTotals {
    /// Slices.
    pub images: usize,
    /// The joint mode's objects.
    pub objects: usize,
}

impl SemanticBatch {
    /// A whole batch (not a shard): its own totals, its objects' clicks seeded by their positions.
    pub fn new(input: BatchInput, target: Tensor, objects: Vec<(usize, Vec<bool>)>) -> Self {
        let totals = SemanticTotals {
            images: target.size()[0] as usize,
            objects: objects.len(),
        };
        Self {
            input,
            target,
            object_seeds: (0..objects.len() as u64).collect(),
            objects,
            totals,
        }
    }
}

/// What the trainer updates and how.
#[derive(Debug, Clone, Copy)]
pub struct SemanticSettings {
    /// The decoder's (and the trained encoder's) learning rate.
    pub lr: f64,
    /// AdamW's weight decay.
    pub weight_decay: f64,
    /// Train the image encoder with the decoder loss.
    pub train_encoder: bool,
    /// The joint mode's interactive objective and its learning rate.
    pub joint: Option<(ObjectiveConfig, f64)>,
    /// ReduceLROnPlateau's factor and patience.
    pub plateau: (f64, u32),
}

/// What a step did.
#[derive(Debug, Clone, Copy)]
pub struct SemanticStep {
    /// The decoder loss before the update.
    pub loss: f64,
    /// Its Dice part (1 − soft Dice).
    pub dice: f64,
    /// Its cross-entropy part.
    pub cross_entropy: f64,
    /// The interactive objective's loss (joint mode).
    pub interactive_loss: Option<f64>,
}

/// Validation results.
#[derive(Debug, Clone)]
pub struct SemanticValidation {
    /// Mean decoder loss.
    pub loss: f64,
    /// Hard Dice per class (index 0: background) over all validation slices; `None` for an absent class.
    pub dice: Vec<Option<f64>>,
    /// The learning rate after ReduceLROnPlateau saw this loss.
    pub lr: f64,
}

/// The interactive half of the joint mode.
struct Interactive {
    optimizer: AdamW,
    objective: ObjectiveConfig,
}

/// A UNETR decoder (and optionally its encoder) being trained.
pub struct SemanticTrainer {
    sam: Sam,
    decoder: UnetrDecoder,
    backend: TchBackend,
    optimizer: AdamW,
    interactive: Option<Interactive>,
    plateau: Plateau,
    iteration: u64,
    seed: u64,
    /// Whether any SAM parameter is trained (then checkpoints carry the SAM too).
    trains_sam: bool,
}

/// Checkpoint keys of the trainer's own state.
const ITERATION_KEY: &str = "semantic_trainer.iteration";
const SEED_KEY: &str = "semantic_trainer.seed";
const LR_KEY: &str = "semantic_trainer.lr";
const PLATEAU_BEST_KEY: &str = "semantic_trainer.plateau_best";
const PLATEAU_BAD_KEY: &str = "semantic_trainer.plateau_bad_checks";
const SEMANTIC_STEPS_KEY: &str = "semantic_trainer.adamw_steps";
const INTERACTIVE_STEPS_KEY: &str = "semantic_trainer.interactive_adamw_steps";
/// Moment prefixes of the two optimizers (they share the encoder's parameters in the joint mode).
const SEMANTIC_MOMENTS: &str = "semantic_adamw";
const INTERACTIVE_MOMENTS: &str = "interactive_adamw";

impl SemanticTrainer {
    /// Starts from `state` (the SAM parameters and the decoder's, torch-em keys) on `device`.
    pub fn new(
        sam: Sam,
        decoder: UnetrDecoder,
        state: &StateDict,
        device: Device,
        settings: SemanticSettings,
        seed: u64,
    ) -> Self {
        let mut backend = TchBackend::from_state_dict(state, device, Kind::Float);
        let decoder_keys: BTreeSet<String> = decoder.param_specs().iter().map(|p| p.name.clone()).collect();
        let is_decoder = |name: &str| decoder_keys.contains(name);
        let is_encoder = |name: &str| name.starts_with(IMAGE_ENCODER_PREFIX);
        let params = backend.make_trainable(|name| {
            is_decoder(name) || (settings.train_encoder && is_encoder(name)) || settings.joint.is_some()
        });
        let semantic: Vec<(String, Tensor)> = params
            .iter()
            .filter(|(name, _)| is_decoder(name) || (settings.train_encoder && is_encoder(name)))
            .map(|(name, t)| (name.clone(), t.shallow_clone()))
            .collect();
        let interactive = settings.joint.map(|(objective, lr)| {
            let sam_params = params
                .iter()
                .filter(|(name, _)| !is_decoder(name))
                .map(|(name, t)| (name.clone(), t.shallow_clone()))
                .collect();
            Interactive {
                optimizer: AdamW::new(sam_params, lr, settings.weight_decay),
                objective,
            }
        });
        Self {
            sam,
            decoder,
            backend,
            optimizer: AdamW::new(semantic, settings.lr, settings.weight_decay),
            interactive,
            plateau: Plateau::new(settings.plateau.0, settings.plateau.1),
            iteration: 0,
            seed,
            trains_sam: settings.train_encoder || settings.joint.is_some(),
        }
    }

    /// Writes a checkpoint that [`Self::resume`] continues exactly: the decoder (and the SAM when it is
    /// trained), both optimizers' moments and step counts, the iteration, the seed, the learning rate and the
    /// plateau scheduler's state; safetensors, atomically.
    pub fn save_checkpoint(&self, path: &Path) -> Result<(), TrainError> {
        let mut tensors = self.decoder_tensors();
        if self.trains_sam {
            tensors.extend(self.sam_tensors());
        }
        let cpu = |(k, t): (String, Tensor)| (k, t.to_device(Device::Cpu));
        tensors.extend(self.optimizer.state_under(SEMANTIC_MOMENTS).into_iter().map(cpu));
        if let Some(interactive) = &self.interactive {
            tensors.extend(
                interactive
                    .optimizer
                    .state_under(INTERACTIVE_MOMENTS)
                    .into_iter()
                    .map(cpu),
            );
            tensors.push((INTERACTIVE_STEPS_KEY.into(), Tensor::from(interactive.optimizer.steps)));
        }
        let (best, bad_checks) = self.plateau.state();
        tensors.extend([
            (ITERATION_KEY.into(), Tensor::from(self.iteration as i64)),
            (SEED_KEY.into(), Tensor::from(self.seed as i64)),
            (SEMANTIC_STEPS_KEY.into(), Tensor::from(self.optimizer.steps)),
            (LR_KEY.into(), Tensor::from(self.optimizer.lr)),
            (PLATEAU_BEST_KEY.into(), Tensor::from(best)),
            (PLATEAU_BAD_KEY.into(), Tensor::from(bad_checks as i64)),
        ]);
        write_atomically(path, &tensors)
    }

    /// Continues a run from a checkpoint of [`Self::save_checkpoint`]; `sam_state` is the SAM the run started
    /// from (the checkpoint replaces what was trained).
    pub fn resume(
        sam: Sam,
        decoder: UnetrDecoder,
        mut sam_state: StateDict,
        path: &Path,
        device: Device,
        settings: SemanticSettings,
    ) -> Result<Self, TrainError> {
        let missing = |key: &str| TrainError::MissingTensor {
            file: path.into(),
            key: key.into(),
        };
        let tensors: HashMap<String, Tensor> = Tensor::read_safetensors(path)?.into_iter().collect();
        let scalar = |key: &str| tensors.get(key).ok_or_else(|| missing(key));
        let mut wanted: BTreeSet<String> = decoder.param_specs().iter().map(|p| p.name.clone()).collect();
        if settings.train_encoder || settings.joint.is_some() {
            wanted.extend(sam.param_specs().iter().map(|p| p.name.clone()));
        }
        for key in wanted {
            let tensor = tensors.get(&key).ok_or_else(|| missing(&key))?;
            sam_state.insert(key, host_tensor(tensor));
        }
        let seed = scalar(SEED_KEY)?.int64_value(&[]) as u64;
        let mut trainer = Self::new(sam, decoder, &sam_state, device, settings, seed);
        let on_device: HashMap<String, Tensor> = tensors
            .iter()
            .filter(|(k, _)| k.starts_with(SEMANTIC_MOMENTS) || k.starts_with(INTERACTIVE_MOMENTS))
            .map(|(k, t)| (k.clone(), t.to_device(device)))
            .collect();
        trainer
            .optimizer
            .load_state_under(&on_device, SEMANTIC_MOMENTS)
            .map_err(|e| missing(&e.0))?;
        trainer.optimizer.steps = scalar(SEMANTIC_STEPS_KEY)?.int64_value(&[]);
        trainer.optimizer.lr = scalar(LR_KEY)?.double_value(&[]);
        if let Some(interactive) = &mut trainer.interactive {
            interactive
                .optimizer
                .load_state_under(&on_device, INTERACTIVE_MOMENTS)
                .map_err(|e| missing(&e.0))?;
            interactive.optimizer.steps = scalar(INTERACTIVE_STEPS_KEY)?.int64_value(&[]);
        }
        let best = scalar(PLATEAU_BEST_KEY)?.double_value(&[]);
        let bad_checks = scalar(PLATEAU_BAD_KEY)?.int64_value(&[]) as u32;
        trainer.plateau.restore((best, bad_checks));
        trainer.iteration = scalar(ITERATION_KEY)?.int64_value(&[]) as u64;
        Ok(trainer)
    }

    /// The backend holding the current parameters.
    pub fn backend(&self) -> &TchBackend {
        &self.backend
    }

    /// Steps done.
    pub fn iteration(&self) -> u64 {
        self.iteration
    }

    /// The decoder's current learning rate.
    pub fn lr(&self) -> f64 {
        self.optimizer.lr
    }

    /// A copy of parameter `name`.
    pub fn parameter(&self, name: &str) -> Tensor {
        use medico_models::Backend;
        self.backend.param(name).0.detach().copy()
    }

    /// Class probabilities `[B, C, S, S]` of a batch input at the encoder's input size.
    fn outputs(&self, input: &BatchInput) -> Tensor {
        let embeddings = match input {
            BatchInput::Images(images) => self.sam.encode_image(&self.backend, &self.backend.input(images)),
            BatchInput::Embeddings(embeddings) => self.backend.input(embeddings),
        };
        let config = &self.sam.config;
        self.decoder
            .forward_at_input_size(&self.backend, &embeddings, config.embedding_size(), config.img_size)
            .0
    }

    /// One step in a process of its own: the interactive objective's (joint mode), then the decoder loss's.
    pub fn step(&mut self, batch: &SemanticBatch) -> SemanticStep {
        self.step_sharded(batch, &DataParallel::Single)
            .expect("a single process exchanges nothing that could fail")
    }

    /// One step on this rank's shard of a global batch: each loss divided by the global batch's size, the
    /// gradients summed over the ranks before each update, the report the global batch's. Fails when another
    /// rank does (c10d's error).
    pub fn step_sharded(
        &mut self,
        batch: &SemanticBatch,
        parallel: &DataParallel,
    ) -> Result<SemanticStep, DistributedError> {
        let interactive_loss = self.interactive_step(batch, parallel)?;
        self.optimizer.zero_grad();
        let target = batch.target.to_device(self.backend.device());
        let pixels = batch.totals.images * (target.numel() / batch.target.size()[0].max(1) as usize);
        let loss = sharded_semantic_loss(&self.outputs(&batch.input), &target, parallel, pixels)?;
        loss.loss.backward();
        parallel.sum_gradients(&self.optimizer.parameters())?;
        self.optimizer.step();
        self.iteration += 1;
        let mut cross_entropy = [loss.cross_entropy];
        parallel.sum_values(&mut cross_entropy)?;
        let [cross_entropy] = cross_entropy;
        Ok(SemanticStep {
            loss: loss.dice * DICE_WEIGHT + cross_entropy * (1.0 - DICE_WEIGHT),
            dice: loss.dice,
            cross_entropy,
            interactive_loss,
        })
    }

    /// The joint mode's interactive step on the batch's images and objects (its own AdamW step); a rank whose
    /// shard has no objects still takes part in the gradient sum when another's has.
    fn interactive_step(
        &mut self,
        batch: &SemanticBatch,
        parallel: &DataParallel,
    ) -> Result<Option<f64>, DistributedError> {
        let Some(interactive) = self.interactive.as_mut() else {
            return Ok(None);
        };
        let BatchInput::Images(images) = &batch.input else {
            return Ok(None);
        };
        if batch.totals.objects == 0 {
            return Ok(None);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ self.iteration.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        interactive.optimizer.zero_grad();
        let mut loss = [0.0];
        if !batch.objects.is_empty() {
            let sam_batch = Batch {
                input: BatchInput::Images(images.shallow_clone()),
                objects: batch.objects.clone(),
                derived: Vec::new(),
                object_seeds: batch.object_seeds.clone(),
                totals: BatchTotals {
                    objects: batch.totals.objects,
                    derived: 0,
                },
            };
            let out = objective_forward(
                &self.sam,
                &self.backend,
                &sam_batch,
                interactive.objective,
                self.iteration,
                &mut rng,
            );
            out.loss.backward();
            loss[0] = out.loss.double_value(&[]);
        }
        parallel.sum_gradients(&interactive.optimizer.parameters())?;
        interactive.optimizer.step();
        parallel.sum_values(&mut loss)?;
        Ok(Some(loss[0]))
    }

    /// Mean loss and hard Dice per class over `batches` without updating; the loss then drives
    /// ReduceLROnPlateau. The ranks of a data-parallel run share the batches out and sum the results, so every
    /// rank sees the same loss and keeps the same learning rate.
    pub fn validate(
        &mut self,
        batches: &[SemanticBatch],
        parallel: &DataParallel,
    ) -> Result<SemanticValidation, DistributedError> {
        let classes = self.decoder.config.out_channels;
        // The loss, then per class the pixels both give it and the pixels either gives it.
        let mut sums = vec![0.0; 1 + 2 * classes];
        tch::no_grad(|| {
            let mine = batches
                .iter()
                .enumerate()
                .filter(|(i, _)| i % parallel.world_size() == parallel.rank());
            for (_, batch) in mine {
                let target = batch.target.to_device(self.backend.device());
                let outputs = self.outputs(&batch.input);
                sums[0] += semantic_loss(&outputs, &target).loss.double_value(&[]);
                let found = class_overlaps(&outputs.argmax(1, false), &target, classes as i64);
                for (c, (both, sizes)) in found.into_iter().enumerate() {
                    sums[1 + 2 * c] += both;
                    sums[2 + 2 * c] += sizes;
                }
            }
        });
        parallel.sum_values(&mut sums)?;
        let loss = sums[0] / batches.len().max(1) as f64;
        let overlaps: Vec<(f64, f64)> = sums[1..].chunks(2).map(|pair| (pair[0], pair[1])).collect();
        self.optimizer.lr = self.plateau.check(loss, self.optimizer.lr);
        Ok(SemanticValidation {
            loss,
            dice: dice_of(&overlaps),
            lr: self.optimizer.lr,
        })
    }

    /// The decoder's tensors under torch-em's keys (BatchNorm statistics included), f32 on the CPU.
    pub fn decoder_tensors(&self) -> Vec<(String, Tensor)> {
        let keys: BTreeSet<String> = self.decoder.param_specs().iter().map(|p| p.name.clone()).collect();
        self.cpu_tensors(|name| keys.contains(name))
    }

    /// The SAM parameters under their official keys, f32 on the CPU.
    pub fn sam_tensors(&self) -> Vec<(String, Tensor)> {
        let keys: BTreeSet<String> = self.sam.param_specs().iter().map(|p| p.name.clone()).collect();
        self.cpu_tensors(|name| keys.contains(name))
    }

    fn cpu_tensors(&self, wanted: impl Fn(&str) -> bool) -> Vec<(String, Tensor)> {
        self.backend
            .named_params()
            .into_iter()
            .filter(|(k, _)| wanted(k))
            .map(|(k, t)| (k, t.detach().to_device(Device::Cpu).to_kind(Kind::Float)))
            .collect()
    }
}

/// A tch tensor as a host f32 tensor.
fn host_tensor(tensor: &Tensor) -> medico_models::HostTensor {
    let shape: Vec<usize> = tensor.size().iter().map(|&d| d as usize).collect();
    let data = Vec::<f32>::try_from(tensor.to_kind(Kind::Float).flatten(0, -1)).unwrap_or_default();
    medico_models::HostTensor::new(shape, data)
}

/// PyTorch's default initialisation of the decoder's layers (`Conv2d`/`ConvTranspose2d`: weights and biases
/// uniform in ±1/√fan_in; BatchNorm: unit scale and variance, zero shift and mean), drawn from a generator
/// seeded with `seed` (not libtorch's global one, which concurrent runs would share).
pub fn random_decoder_state(decoder: &UnetrDecoder, seed: u64) -> StateDict {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let specs = decoder.param_specs();
    let fan_in_of = |weight: &str| {
        let shape = &specs
            .iter()
            .find(|p| p.name == weight)
            .expect("a bias has its weight")
            .shape;
        // ConvTranspose2d keeps [in, out, k, k]; PyTorch's fan-in is computed from dimension 1 either way.
        shape[1..].iter().product::<usize>() as f32
    };
    specs
        .iter()
        .map(|spec| {
            let name = spec.name.as_str();
            let count: usize = spec.shape.iter().product();
            let is_norm = name.starts_with("deconv") && name.contains(".block.2.") && spec.shape.len() == 1;
            let data = if name.ends_with(".running_mean") || (is_norm && name.ends_with(".bias")) {
                vec![0.0; count]
            } else if name.ends_with(".running_var") || (is_norm && name.ends_with(".weight")) {
                vec![1.0; count]
            } else {
                let weight = name.strip_suffix(".bias").map(|p| format!("{p}.weight"));
                let bound = 1.0 / fan_in_of(weight.as_deref().unwrap_or(name)).sqrt();
                (0..count).map(|_| rng.random_range(-bound..bound)).collect()
            };
            (
                spec.name.clone(),
                medico_models::HostTensor::new(spec.shape.clone(), data),
            )
        })
        .collect()
}
