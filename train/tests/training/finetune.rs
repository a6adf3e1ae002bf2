//! Finetuning with a frozen image encoder on a small TinyViT in LiteMedSAM's layout (pointwise stem, 256²
//! input, BatchNorm): embeddings computed once, cached and verified, the same loss from embeddings as from
//! images, only the prompt encoder and mask decoder updated, BatchNorm statistics untouched, the loss
//! lowered; and whole runs from `train.json` that share the cache and resume exactly.

use std::path::{Path, PathBuf};

use medico_models::{EncoderConfig, Sam, SamConfig};
use medico_tests::shared_dir as shared;
use medico_train::backend::TchBackend;
use medico_train::data::{make_batch, make_embedding_batch, slice_samples, SliceSample};
use medico_train::embeddings::{encoder_cache_dir, sample_embeddings, ImageEncoder};
use medico_train::objective::{Batch, Objective, ObjectiveConfig};
use medico_train::run::{random_state, run};
use medico_train::trainer::{OptimizerConfig, TrainableParts, Trainer};
use ndarray::{ArrayD, IxDyn};
use tch::{Device, Tensor};

use crate::data::mni_tissue_axial;

/// LiteMedSAM's architecture shrunk: the same stem, stages and merge strides, narrow and one block each; a
/// narrow decoder.
pub(crate) fn small_tiny_vit() -> SamConfig {
    let mut config = SamConfig::preset("lite_medsam").unwrap();
    if let EncoderConfig::TinyVit { tiny_vit } = &mut config.encoder {
        tiny_vit.embed_dims = vec![8, 16, 16, 32];
        tiny_vit.depths = vec![1, 1, 1, 1];
        tiny_vit.num_heads = vec![1, 1, 1, 2];
    }
    config.prompt_embed_dim = 32;
    config.mask_in_chans = 4;
    config.decoder_mlp_dim = 64;
    config.decoder_num_heads = 2;
    config.iou_head_hidden_dim = 32;
    config
}

/// Axial MNI152 slices with their tissue classes, every 40th.
fn samples(config: &SamConfig) -> Vec<SliceSample> {
    slice_samples(&mni_tissue_axial(40), config, 25).unwrap()
}

fn objective() -> ObjectiveConfig {
    ObjectiveConfig {
        objective: Objective::MedicoSam,
        rounds: 3,
        mask_prob: 0.5,
        bce_weight: 0.0,
        iou_weight: 1.0,
        point_start: Default::default(),
        propagation_weight: 1.0,
        click_weight: 0.0,
        propagation_mask: false,
    }
}

fn max_difference(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// A trainer of the small TinyViT model (random weights, seed 3) that trains `trainable` with lr 1e-3.
fn small_trainer(trainable: TrainableParts) -> Trainer {
    let config = small_tiny_vit();
    let state = random_state(&Sam::new(config.clone()), 3);
    let optimizer = OptimizerConfig {
        lr: 1e-3,
        weight_decay: 0.0,
        trainable,
    };
    Trainer::new(Sam::new(config), &state, Device::Cpu, objective(), optimizer, 5)
}

/// Takes 8 steps on `batch`; returns the loss before and after, and asserts that exactly the `watched`
/// parameters marked `true` changed.
fn train_watching(trainer: &mut Trainer, batch: &Batch, watched: &[(&str, bool)]) -> (f64, f64) {
    let before: Vec<Tensor> = watched.iter().map(|(k, _)| trainer.parameter(k)).collect();
    let initial = trainer.evaluate(batch, 9);
    for _ in 0..8 {
        assert!(trainer.step(batch).loss.is_finite());
    }
    let after = trainer.evaluate(batch, 9);
    for ((key, trained), old) in watched.iter().zip(&before) {
        let change = max_difference(&trainer.parameter(key), old);
        assert_eq!(change > 0.0, *trained, "{key} changed by {change}");
    }
    (initial, after)
}

#[test]
fn a_frozen_encoder_finetune_lowers_the_loss_and_changes_only_the_decoder() {
    let config = small_tiny_vit();
    let sam = || Sam::new(config.clone());
    let mut trainer = small_trainer(TrainableParts::PromptEncoderAndDecoder);
    let samples = samples(&config);
    assert!(samples.len() >= 3, "{}", samples.len());

    let cache = tempfile::tempdir().unwrap();
    let encoder_dir = encoder_cache_dir(cache.path(), trainer.backend());
    let embed = || sample_embeddings(&sam(), trainer.backend(), &samples, &encoder_dir, None, |_| {});
    let (embeddings, first) = embed().unwrap();
    assert_eq!((first.computed, first.reused), (samples.len(), 0));
    assert_eq!(embeddings[0].size(), [32, 64, 64]);
    // A second pass reads every embedding back; a damaged file is recomputed, not trusted.
    let damaged = std::fs::read_dir(cache.path())
        .unwrap()
        .flat_map(|encoder| std::fs::read_dir(encoder.unwrap().path()).unwrap())
        .flat_map(|source| std::fs::read_dir(source.unwrap().path()).unwrap())
        .map(|file| file.unwrap().path())
        .next()
        .unwrap();
    std::fs::write(&damaged, b"not an embedding").unwrap();
    let (again, second) = embed().unwrap();
    assert_eq!((second.computed, second.reused), (1, samples.len() - 1));
    for (a, b) in embeddings.iter().zip(&again) {
        assert_eq!(max_difference(a, b), 0.0);
    }

    // The objective on cached embeddings is the objective on the images.
    let chosen: Vec<&SliceSample> = samples.iter().take(2).collect();
    let tensors: Vec<&Tensor> = embeddings.iter().take(2).collect();
    let batch = make_embedding_batch(&chosen, &tensors, &[1, 2], 2);
    let from_images = make_batch(&chosen, &[1, 2], config.img_size, 2);
    let (a, b) = (trainer.evaluate(&batch, 9), trainer.evaluate(&from_images, 9));
    assert!((a - b).abs() < 1e-5, "{a} vs {b}");

    let watched = [
        ("image_encoder.neck.0.weight", false),
        ("image_encoder.patch_embed.seq.0.c.weight", false),
        ("image_encoder.patch_embed.seq.0.bn.running_var", false),
        ("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix", false),
        ("mask_decoder.iou_prediction_head.layers.0.weight", true),
        ("prompt_encoder.point_embeddings.0.weight", true),
    ];
    let (initial, after) = train_watching(&mut trainer, &batch, &watched);
    println!("frozen-encoder finetune, loss on the fixed batch: {initial:.4} -> {after:.4}");
    assert!(after < initial, "loss {initial} -> {after}");
}

#[test]
fn an_iou_head_finetune_changes_only_the_head_and_lowers_its_error() {
    let config = small_tiny_vit();
    let mut trainer = small_trainer(TrainableParts::IouHead);
    let samples = samples(&config);
    let chosen: Vec<&SliceSample> = samples.iter().take(2).collect();
    let batch = make_batch(&chosen, &[1, 2], config.img_size, 2);
    let watched = [
        ("mask_decoder.iou_prediction_head.layers.2.weight", true),
        ("mask_decoder.iou_prediction_head.layers.0.bias", true),
        ("mask_decoder.output_hypernetworks_mlps.0.layers.0.weight", false),
        ("mask_decoder.transformer.layers.0.self_attn.q_proj.weight", false),
        ("prompt_encoder.point_embeddings.0.weight", false),
        ("image_encoder.neck.0.weight", false),
    ];
    // Only the IoU term can move: the masks (and their Dice) stay, so the whole loss falls by the MSE alone.
    let (initial, after) = train_watching(&mut trainer, &batch, &watched);
    assert!(after < initial, "loss {initial} -> {after}");
}

/// Writes the small model's configuration and a frozen-encoder `train.json` for `steps` steps into `dir`.
pub(crate) fn write_run(dir: &Path, out: &str, steps: u64) -> PathBuf {
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, serde_json::to_string(&small_tiny_vit()).unwrap()).unwrap();
    let volumes = shared().join("data/volumes");
    let run = serde_json::json!({
        "model": "config.json",
        "init": "scratch",
        "freeze_image_encoder": true,
        "embedding_cache": "embeddings",
        "train": [{"image": volumes.join("mni152_t1.nii.gz"), "labels": volumes.join("mni152_tissue_labels.nii.gz"),
                   "axis": 2, "values": [1], "slice_step": 40}],
        "val": [{"image": volumes.join("mni152_t1.nii.gz"), "labels": volumes.join("mni152_tissue_labels.nii.gz"),
                 "axis": 1, "values": [2], "slice_step": 60}],
        "objective": "medicosam", "rounds": 2, "steps": steps, "batch_size": 2, "objects_per_image": 1,
        "lr": 1e-3, "seed": 4, "val_every": 2, "checkpoint_every": 2, "out": out
    });
    let path = dir.join(format!("{out}.json"));
    std::fs::write(&path, run.to_string()).unwrap();
    path
}

fn weights(path: &Path) -> Vec<(String, Tensor)> {
    let mut tensors = Tensor::read_safetensors(path).unwrap();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors
}

#[test]
fn frozen_encoder_runs_share_the_embedding_cache_and_resume_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let straight = run(&write_run(dir.path(), "straight", 4), Device::Cpu, |_| {}).unwrap();
    let first = straight.embeddings.unwrap();
    assert!(first.computed > 0 && first.reused == 0, "{first:?}");

    // Another run on the same data and encoder computes nothing; stopped after 2 steps and resumed to 4, it
    // ends with the straight run's weights, bit for bit.
    let resumed_config = write_run(dir.path(), "resumed", 2);
    let half = run(&resumed_config, Device::Cpu, |_| {}).unwrap();
    assert_eq!(half.embeddings.unwrap().computed, 0);
    assert_eq!(half.embeddings.unwrap().reused, first.computed);
    let resumed = run(&write_run(dir.path(), "resumed", 4), Device::Cpu, |_| {}).unwrap();
    assert_eq!(resumed.final_loss.to_bits(), straight.final_loss.to_bits());
    let (a, b) = (
        weights(&straight.out.join("sam.safetensors")),
        weights(&resumed.out.join("sam.safetensors")),
    );
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert_eq!(max_difference(x, y), 0.0, "{name}");
    }
    assert!(straight.bundle.join("model.json").exists());
}

/// A stand-in for another engine (ONNX Runtime in the command line): libtorch's own embedding plus `offset`.
struct Shifted<'a> {
    sam: Sam,
    backend: &'a TchBackend,
    offset: f32,
    calls: usize,
}

impl ImageEncoder for Shifted<'_> {
    fn encode(&mut self, input: &[f32]) -> Result<ArrayD<f32>, String> {
        self.calls += 1;
        let side = self.sam.config.img_size as i64;
        let image = Tensor::from_slice(input).reshape([1, 3, side, side]);
        let out = tch::no_grad(|| self.sam.encode_image(self.backend, &self.backend.input(&image)).0).get(0)
            + f64::from(self.offset);
        let shape: Vec<usize> = out.size().iter().map(|&d| d as usize).collect();
        let values = Vec::<f32>::try_from(out.flatten(0, -1)).unwrap();
        Ok(ArrayD::from_shape_vec(IxDyn(&shape), values).unwrap())
    }

    fn name(&self) -> String {
        "shifted".into()
    }
}

#[test]
fn another_engine_fills_the_cache_only_when_it_matches_the_frozen_encoder() {
    let config = small_tiny_vit();
    let trainer = small_trainer(TrainableParts::PromptEncoderAndDecoder);
    let samples = samples(&config);
    let cache = tempfile::tempdir().unwrap();
    let encoder_dir = encoder_cache_dir(cache.path(), trainer.backend());
    // Off by far more than float32 engines differ: refused before anything is stored.
    let mut wrong = Shifted {
        sam: Sam::new(config.clone()),
        backend: trainer.backend(),
        offset: 0.01,
        calls: 0,
    };
    let err = sample_embeddings(
        &Sam::new(config.clone()),
        trainer.backend(),
        &samples,
        &encoder_dir,
        Some(&mut wrong),
        |_| {},
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("shifted") && err.contains("not the same weights"), "{err}");
    assert!(!encoder_dir.exists() || std::fs::read_dir(&encoder_dir).unwrap().next().is_none());
    // Within float32 noise: every missing embedding comes from the other engine.
    let mut close = Shifted {
        sam: Sam::new(config.clone()),
        backend: trainer.backend(),
        offset: 1e-5,
        calls: 0,
    };
    let (embeddings, report) = sample_embeddings(
        &Sam::new(config.clone()),
        trainer.backend(),
        &samples,
        &encoder_dir,
        Some(&mut close),
        |_| {},
    )
    .unwrap();
    assert_eq!((report.computed, close.calls), (samples.len(), samples.len()));
    let (reference, _) = sample_embeddings(
        &Sam::new(config),
        trainer.backend(),
        &samples,
        &tempfile::tempdir().unwrap().path().join("e"),
        None,
        |_| {},
    )
    .unwrap();
    for (a, b) in embeddings.iter().zip(&reference) {
        let difference = max_difference(a, b);
        assert!(difference > 0.0 && difference < 1e-4, "{difference}");
    }
}
