//! Semantic training: the UNETR decoder's loss falls on a fixed batch; a frozen encoder stays frozen; the joint
//! mode updates the shared encoder with both losses (each with its own AdamW) and the prompt encoder only
//! with the interactive one; a whole run from `train.json` writes torch-em's decoder keys and a bundle whose
//! model.json names the classes and whose segmentation graph runs.

use std::path::{Path, PathBuf};

use medico_bundle::{Bundle, GraphRole};
use medico_models::checkpoint::shapes;
use medico_models::unetr::{UnetrConfig, Upsampler};
use medico_models::{load_decoder_state, Sam, StateDict, UnetrDecoder};
use medico_tests::shared_dir as shared;
use medico_train::data::{class_map, semantic_slice_samples, SemanticVolumeSource, SliceSample};
use medico_train::distributed::DataParallel;
use medico_train::objective::{BatchInput, ObjectiveConfig};
use medico_train::run::random_state;
use medico_train::semantic::run::SemanticSummary;
use medico_train::semantic::run_semantic;
use medico_train::semantic::trainer::{random_decoder_state, SemanticBatch, SemanticSettings, SemanticTrainer};
use medico_train::TrainError;
use tch::{Device, Tensor};

use crate::finetune::small_tiny_vit;

fn decoder() -> UnetrDecoder {
    UnetrDecoder::new(UnetrConfig {
        embed_dim: small_tiny_vit().prompt_embed_dim,
        initial_features: 4,
        out_channels: 3,
        upsampler: Upsampler::Bilinear,
    })
}

fn mni_tissue(axis: usize, slice_step: usize) -> SemanticVolumeSource {
    let volumes = shared().join("data/volumes");
    SemanticVolumeSource {
        image: volumes.join("mni152_t1.nii.gz"),
        labels: volumes.join("mni152_tissue_labels.nii.gz"),
        axis,
        classes: vec![vec![1], vec![2]],
        slice_step,
    }
}

/// The small SAM's random weights with a random decoder.
fn state(decoder: &UnetrDecoder) -> StateDict {
    let mut state = random_state(&Sam::new(small_tiny_vit()), 2);
    state.extend(random_decoder_state(decoder, 3));
    state
}

/// Two axial slices as images with their class maps and one object per class.
fn image_batch(samples: &[SliceSample]) -> SemanticBatch {
    let side = small_tiny_vit().img_size as i64;
    let chosen = &samples[..2];
    let pixels: Vec<f32> = chosen.iter().flat_map(|s| s.input.iter().copied()).collect();
    let maps: Vec<i64> = chosen.iter().flat_map(class_map).collect();
    let objects = chosen
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            s.objects
                .iter()
                .filter(|m| m.iter().any(|&v| v))
                .map(move |m| (i, m.clone()))
        })
        .collect();
    SemanticBatch::new(
        BatchInput::Images(Tensor::from_slice(&pixels).reshape([2, 3, side, side])),
        Tensor::from_slice(&maps).reshape([2, side, side]),
        objects,
    )
}

fn settings(train_encoder: bool, joint: bool) -> SemanticSettings {
    SemanticSettings {
        lr: 1e-2,
        weight_decay: 0.0,
        train_encoder,
        joint: joint.then(|| {
            let objective = ObjectiveConfig {
                rounds: 2,
                ..ObjectiveConfig::default()
            };
            (objective, 1e-3)
        }),
        plateau: (0.9, 10),
    }
}

fn changed(trainer: &SemanticTrainer, before: &[(&str, Tensor)]) -> Vec<bool> {
    before
        .iter()
        .map(|(key, old)| (trainer.parameter(key) - old).abs().max().double_value(&[]) > 0.0)
        .collect()
}

const WATCHED: [&str; 5] = [
    "out_conv.weight",
    "deconv1.block.2.weight",
    "image_encoder.neck.0.weight",
    "prompt_encoder.point_embeddings.0.weight",
    "deconv1.block.2.running_mean",
];

fn snapshot(trainer: &SemanticTrainer) -> Vec<(&'static str, Tensor)> {
    WATCHED.iter().map(|&k| (k, trainer.parameter(k))).collect()
}

#[test]
fn the_decoder_loss_falls_on_a_fixed_batch_and_a_frozen_encoder_stays_frozen() {
    let decoder = decoder();
    let samples = semantic_slice_samples(&mni_tissue(2, 40), &small_tiny_vit(), 25).unwrap();
    assert!(samples.len() >= 2, "{}", samples.len());
    let mut trainer = SemanticTrainer::new(
        Sam::new(small_tiny_vit()),
        decoder.clone(),
        &state(&decoder),
        Device::Cpu,
        settings(false, false),
        1,
    );
    let before = snapshot(&trainer);
    let batch = image_batch(&samples);
    let first = trainer.step(&batch);
    assert!(first.interactive_loss.is_none());
    let mut last = first.loss;
    for _ in 0..7 {
        last = trainer.step(&batch).loss;
    }
    assert!(last < first.loss - 0.01, "loss {} -> {last}", first.loss);
    // Decoder weights and BatchNorm scale train; the encoder, the prompt encoder and BatchNorm statistics not.
    assert_eq!(changed(&trainer, &before), [true, true, false, false, false]);
}

#[test]
fn the_joint_mode_updates_the_shared_encoder_with_both_objectives() {
    let decoder = decoder();
    let samples = semantic_slice_samples(&mni_tissue(2, 40), &small_tiny_vit(), 25).unwrap();
    let mut trainer = SemanticTrainer::new(
        Sam::new(small_tiny_vit()),
        decoder.clone(),
        &state(&decoder),
        Device::Cpu,
        settings(true, true),
        1,
    );
    let before = snapshot(&trainer);
    let report = trainer.step(&image_batch(&samples));
    let interactive = report
        .interactive_loss
        .expect("the joint mode runs the interactive objective");
    assert!(interactive.is_finite() && report.loss.is_finite());
    assert_eq!(changed(&trainer, &before), [true, true, true, true, false]);
}

/// Writes the small model's configuration, its random initial weights and a semantic `train.json` for `steps`
/// steps with output folder `out` into `dir`; returns the configuration's path.
pub(crate) fn write_semantic_run(dir: &Path, out: &str, steps: u64) -> PathBuf {
    let sam = Sam::new(small_tiny_vit());
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string(&small_tiny_vit()).unwrap(),
    )
    .unwrap();
    let init: Vec<(String, Tensor)> = random_state(&sam, 2)
        .into_iter()
        .map(|(k, t)| {
            let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
            (k, Tensor::from_slice(&t.data).reshape(&shape))
        })
        .collect();
    Tensor::write_safetensors(&init, dir.join("init.safetensors")).unwrap();
    let volumes = shared().join("data/volumes");
    let volume = |axis: usize, step: usize| {
        serde_json::json!({"image": volumes.join("mni152_t1.nii.gz"), "labels": volumes.join("mni152_tissue_labels.nii.gz"),
                           "axis": axis, "slice_step": step})
    };
    let config = serde_json::json!({
        "objective": "semantic", "model": "config.json", "init": "init.safetensors",
        "classes": ["grey matter", "white matter"], "initial_features": 4, "embedding_cache": "embeddings",
        "train": [volume(2, 40)], "val": [volume(1, 60)],
        "steps": steps, "batch_size": 2, "lr": 1e-3, "val_every": 2, "checkpoint_every": 2, "seed": 3, "out": out
    });
    let path = dir.join(format!("{out}.json"));
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

fn sorted_tensors(path: &Path) -> Vec<(String, Tensor)> {
    let mut tensors = Tensor::read_safetensors(path).unwrap();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors
}

/// A semantic run in a process of its own.
fn run_alone(config: &Path) -> Result<SemanticSummary, TrainError> {
    run_semantic(config, Device::Cpu, &DataParallel::Single, |_| {})
}

#[test]
fn a_semantic_run_writes_torch_em_keys_and_a_bundle_with_its_classes() {
    let dir = tempfile::tempdir().unwrap();
    let summary = run_alone(&write_semantic_run(dir.path(), "out", 4)).unwrap();

    let log = std::fs::read_to_string(summary.out.join("log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 4);
    let validation = summary.validation.expect("validated");
    assert_eq!(validation.dice.len(), 3);
    assert!(validation.loss.is_finite());

    let decoder_state = load_decoder_state(&summary.decoder).unwrap();
    let config = UnetrConfig::infer_from_shapes(&shapes(&decoder_state)).unwrap();
    assert_eq!(
        (config.initial_features, config.out_channels, config.embed_dim),
        (4, 3, 32)
    );
    assert!(decoder_state.contains_key("decoder.samplers.2.conv.weight"));
    assert!(decoder_state.contains_key("deconv4.block.2.running_var"));

    let bundle = Bundle::open(&summary.bundle).unwrap();
    let head = bundle.manifest.semantic.as_ref().expect("a semantic head");
    assert_eq!(head.classes, ["grey matter", "white matter"]);
    assert_eq!(head.class_name(2), Some("white matter"));
    assert!(bundle.graph(GraphRole::SegmentationDecoder).is_some_and(|p| p.exists()));
    assert!(Path::new(&summary.bundle).join("encoder.onnx").exists());
}

#[test]
fn a_semantic_run_resumes_exactly_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let straight = run_alone(&write_semantic_run(dir.path(), "straight", 4)).unwrap();
    run_alone(&write_semantic_run(dir.path(), "resumed", 2)).unwrap();
    let resumed = run_alone(&write_semantic_run(dir.path(), "resumed", 4)).unwrap();
    let log = std::fs::read_to_string(resumed.out.join("log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 4, "the second run appended steps 3 and 4");
    let (a, b) = (sorted_tensors(&straight.decoder), sorted_tensors(&resumed.decoder));
    assert_eq!(a.len(), b.len());
    for ((ka, ta), (kb, tb)) in a.iter().zip(&b) {
        assert_eq!(ka, kb);
        assert!(ta.equal(tb), "{ka} differs after resuming");
    }
    assert_eq!(straight.final_loss, resumed.final_loss);
}

#[test]
fn a_semantic_configuration_that_cannot_train_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    let config = serde_json::json!({
        "objective": "semantic", "model": "lite_medsam", "init": "x.pth", "classes": ["a"],
        "train": [{"image": "i.nii.gz", "labels": "l.nii.gz", "classes": [[1], [2]]}], "steps": 1, "out": "o"
    });
    std::fs::write(&path, config.to_string()).unwrap();
    let error = run_alone(&path).unwrap_err().to_string();
    assert!(error.contains("bad.json") && error.contains("every class"), "{error}");
}
