//! libtorch's c10d Gloo process group through medico's shim: two ranks on loopback average their tensors as
//! DDP averages gradients, and a rank that never comes makes the other fail within the timeout with c10d's
//! error instead of hanging. Data-parallel training: two ranks (threads of this process) train the model one
//! process trains on the same global batches, interactive and semantic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use medico_train::distributed::{DataParallel, Launch, ProcessGroup};
use medico_train::run::{run, run_with_encoder};
use medico_train::semantic::loss::sharded_semantic_loss;
use medico_train::semantic::run_semantic;
use tch::{Device, Tensor};

use crate::finetune::{small_tiny_vit, write_run};
use crate::semantic::write_semantic_run;

fn launch(rank: usize, world_size: usize, port: u16) -> Launch {
    Launch {
        rank,
        world_size,
        local_rank: rank,
        master_addr: "127.0.0.1".into(),
        master_port: port,
        launcher_store: false,
    }
}

#[test]
fn two_ranks_average_their_tensors() {
    let ranks: Vec<_> = (0..2)
        .map(|rank| {
            std::thread::spawn(move || {
                let group = ProcessGroup::join(&launch(rank, 2, 29611), Duration::from_secs(30)).unwrap();
                assert_eq!((group.rank(), group.world_size()), (rank, 2));
                let mut tensors = vec![
                    Tensor::from_slice(&[1.0f32, 2.0, 3.0]) * (rank as f64 + 1.0),
                    Tensor::from_slice(&[10.0f32]) * rank as f64,
                ];
                group.all_reduce_mean(&mut tensors).unwrap();
                (
                    Vec::<f32>::try_from(&tensors[0]).unwrap(),
                    Vec::<f32>::try_from(&tensors[1]).unwrap(),
                )
            })
        })
        .collect();
    for rank in ranks {
        let (first, second) = rank.join().unwrap();
        assert_eq!(first, [1.5, 3.0, 4.5]);
        assert_eq!(second, [5.0]);
    }
}

#[test]
fn a_rank_that_never_comes_is_an_error_within_the_timeout() {
    let started = Instant::now();
    let error = ProcessGroup::join(&launch(0, 2, 29612), Duration::from_secs(3))
        .err()
        .expect("no second rank");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(30), "waited {elapsed:?}");
    assert!(error.to_string().starts_with("c10d:"), "{error}");
}

/// Runs `f` as each of `world_size` ranks of one process group on loopback port `port` (a thread each), the
/// results in rank order.
fn as_ranks<T: Send>(world_size: usize, port: u16, f: impl Fn(DataParallel) -> T + Sync) -> Vec<T> {
    std::thread::scope(|scope| {
        let ranks: Vec<_> = (0..world_size)
            .map(|rank| {
                let f = &f;
                scope.spawn(move || {
                    let group = ProcessGroup::join(&launch(rank, world_size, port), Duration::from_secs(60)).unwrap();
                    f(DataParallel::Group(group))
                })
            })
            .collect();
        ranks.into_iter().map(|r| r.join().unwrap()).collect()
    })
}

/// The largest difference between two state dicts with the same keys.
fn largest_difference(a: &Path, b: &Path) -> f64 {
    let read = |p: &Path| -> BTreeMap<String, Tensor> { Tensor::read_safetensors(p).unwrap().into_iter().collect() };
    let (a, b) = (read(a), read(b));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    a.iter()
        .map(|(k, x)| (x - &b[k]).abs().max().double_value(&[]))
        .fold(0.0, f64::max)
}

/// The `loss` of each line of a run's log.
fn logged_losses(out: &Path) -> Vec<f64> {
    std::fs::read_to_string(out.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

/// Rewrites the run configuration at `path` with `changes` and output folder `out`, as `out.json`.
fn variant(path: &Path, out: &str, changes: serde_json::Value) -> PathBuf {
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for (key, value) in changes.as_object().unwrap() {
        config[key] = value.clone();
    }
    config["out"] = out.into();
    let variant = path.with_file_name(format!("{out}.json"));
    std::fs::write(&variant, config.to_string()).unwrap();
    variant
}

/// An interactive run training every parameter from scratch on MNI152 slices: 3 steps of a global batch of
/// `batch_size` images in `accumulate` micro-batches, up to 2 objects each (tissue classes and their
/// propagation boxes).
fn interactive_run(dir: &Path, batch_size: usize, accumulate: usize) -> PathBuf {
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string(&small_tiny_vit()).unwrap(),
    )
    .unwrap();
    let volumes = medico_tests::shared_dir().join("data/volumes");
    let volume = |axis: usize, step: usize| {
        serde_json::json!({"image": volumes.join("mni152_t1.nii.gz"), "labels": volumes.join("mni152_tissue_labels.nii.gz"),
                           "axis": axis, "slice_step": step, "propagation": true})
    };
    let run = serde_json::json!({
        "model": "config.json", "init": "scratch", "train": [volume(2, 30)], "val": [volume(1, 60)],
        "objective": "medicosam", "rounds": 3, "bce_weight": 1, "steps": 3, "batch_size": batch_size,
        "accumulate": accumulate, "objects_per_image": 2, "lr": 1e-3, "seed": 7, "val_every": 3,
        "checkpoint_every": 3, "out": "single"
    });
    let path = dir.join("single.json");
    std::fs::write(&path, run.to_string()).unwrap();
    path
}

/// Checks that the ranks' run (rank 0's output, `parallel`) trained the one-process run's model: `weights`
/// within `tolerance`, the logged losses within 1e-5 (relative).
fn assert_same_training(single: &Path, parallel: &Path, weights: &str, tolerance: f64) {
    let difference = largest_difference(&single.join(weights), &parallel.join(weights));
    assert!(difference <= tolerance, "the ranks' {weights} differ by {difference:e}");
    let (a, b) = (logged_losses(single), logged_losses(parallel));
    assert_eq!(a.len(), 3);
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-5 * x.abs().max(1.0), "losses {a:?} vs {b:?}");
    }
}

#[test]
fn two_ranks_train_the_model_one_process_trains() {
    let dir = tempfile::tempdir().unwrap();
    // A global batch of 3 images: shards of 2 and 1, with different numbers of objects.
    let single = interactive_run(dir.path(), 3, 1);
    let alone = run(&single, Device::Cpu, |_| {}).unwrap();
    let parallel = variant(&single, "parallel", serde_json::json!({}));
    let ranks = as_ranks(2, 29613, |group| {
        run_with_encoder(&parallel, Device::Cpu, None, &group, |_| {}).unwrap()
    });
    assert_eq!(ranks[0].out, ranks[1].out);
    assert_same_training(&alone.out, &ranks[0].out, "sam.safetensors", 1e-5);
    assert!((alone.val_loss.unwrap() - ranks[1].val_loss.unwrap()).abs() < 1e-5);
    assert!(ranks[0].bundle.join("model.json").exists());

    // Gradient accumulation over shards: 2 micro-batches of 4 images, split 2 + 2.
    let accumulated = variant(
        &single,
        "accumulated",
        serde_json::json!({"batch_size": 4, "accumulate": 2}),
    );
    let alone = run(&accumulated, Device::Cpu, |_| {}).unwrap();
    let both = variant(
        &single,
        "accumulated-ranks",
        serde_json::json!({"batch_size": 4, "accumulate": 2}),
    );
    let ranks = as_ranks(2, 29614, |group| {
        run_with_encoder(&both, Device::Cpu, None, &group, |_| {}).unwrap()
    });
    assert_same_training(&alone.out, &ranks[0].out, "sam.safetensors", 1e-5);
}

#[test]
fn the_semantic_loss_of_shards_has_the_gradient_of_the_whole_batch() {
    // Dice over the whole batch is not a sum over images: each shard's loss takes the global Dice sums.
    let values: Vec<f32> = (0..3 * 3 * 64).map(|i| ((i * 37 % 101) as f32) / 101.0).collect();
    let classes: Vec<i64> = (0..3 * 64).map(|i| (i * 7 % 11 % 3) as i64).collect();
    let outputs = Tensor::from_slice(&values).reshape([3, 3, 8, 8]);
    let target = Tensor::from_slice(&classes).reshape([3, 8, 8]);
    let whole = outputs.detach().copy().set_requires_grad(true);
    let loss = sharded_semantic_loss(&whole, &target, &DataParallel::Single, 3 * 64).unwrap();
    loss.loss.backward();
    let shards = as_ranks(2, 29615, |group| {
        let (start, len) = if group.rank() == 0 { (0, 2) } else { (2, 1) };
        let outputs = Tensor::from_slice(&values).reshape([3, 3, 8, 8]);
        let target = Tensor::from_slice(&classes).reshape([3, 8, 8]);
        let part = outputs.narrow(0, start, len).detach().copy().set_requires_grad(true);
        let shard_loss = sharded_semantic_loss(&part, &target.narrow(0, start, len), &group, 3 * 64).unwrap();
        shard_loss.loss.backward();
        (shard_loss.dice, shard_loss.cross_entropy, part.grad())
    });
    let gradient = Tensor::cat(&[&shards[0].2, &shards[1].2], 0);
    let difference = (whole.grad() - gradient).abs().max().double_value(&[]);
    assert!(difference < 1e-8, "{difference:e}");
    for (dice, _, _) in &shards {
        assert!((dice - loss.dice).abs() < 1e-6, "every shard sees the batch's Dice");
    }
    let cross_entropy = shards[0].1 + shards[1].1;
    assert!((cross_entropy - loss.cross_entropy).abs() < 1e-6);
}

#[test]
fn two_ranks_train_the_semantic_model_one_process_trains() {
    let dir = tempfile::tempdir().unwrap();
    // The joint mode: the decoder loss over the whole batch's Dice sums, and the interactive objective.
    let base = write_semantic_run(dir.path(), "base", 3);
    let changes = serde_json::json!({"freeze_image_encoder": false, "joint": true, "batch_size": 3,
                                      "objects_per_image": 2, "val_every": 3, "checkpoint_every": 3});
    let single = variant(&base, "single", changes.clone());
    let alone = run_semantic(&single, Device::Cpu, &DataParallel::Single, |_| {}).unwrap();
    let parallel = variant(&base, "parallel", changes);
    let ranks = as_ranks(2, 29616, |group| {
        run_semantic(&parallel, Device::Cpu, &group, |_| {}).unwrap()
    });
    // This randomly initialised UNETR normalises nearly constant feature maps, which magnifies float32
    // rounding; AdamW turns a gradient element that rounding flips into a full step of the learning rate
    // (1e-3) the other way. One process with one thread instead of two differs from itself in 46 % of the
    // decoder's weights by more than 1e-5, so the bound here is AdamW's: two steps of the rate per step.
    assert_same_training(&alone.out, &ranks[0].out, "decoder.safetensors", 2.0 * 3.0 * 1e-3);
    assert_same_training(&alone.out, &ranks[0].out, "sam.safetensors", 2.0 * 3.0 * 1e-3);
    let (a, b) = (alone.validation.unwrap(), ranks[1].validation.clone().unwrap());
    assert!((a.loss - b.loss).abs() < 1e-4 && a.lr == b.lr, "{a:?} vs {b:?}");
}

#[test]
fn two_ranks_share_the_frozen_encoders_embeddings_and_train_as_one_process() {
    let dir = tempfile::tempdir().unwrap();
    // Each rank computes its share of the embeddings into the one cache and reads the other's.
    let shared_cache = write_run(dir.path(), "ranks", 3);
    let ranks = as_ranks(2, 29618, |group| {
        run_with_encoder(&shared_cache, Device::Cpu, None, &group, |_| {}).unwrap()
    });
    let reports: Vec<_> = ranks.iter().map(|r| r.embeddings.unwrap()).collect();
    let samples = reports[0].computed + reports[0].reused;
    assert!(reports.iter().all(|r| r.computed + r.reused == samples));
    assert!(
        reports.iter().all(|r| r.computed > 0),
        "both ranks computed a share: {reports:?}"
    );
    assert_eq!(
        reports[0].computed + reports[1].computed,
        samples,
        "each sample once: {reports:?}"
    );
    // One process on the cache the ranks filled: nothing to compute, the same model.
    let single = variant(&shared_cache, "single", serde_json::json!({}));
    let alone = run(&single, Device::Cpu, |_| {}).unwrap();
    assert_eq!(alone.embeddings.unwrap().computed, 0);
    assert_same_training(&alone.out, &ranks[0].out, "sam.safetensors", 1e-5);
}

#[test]
fn a_global_batch_smaller_than_the_ranks_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = interactive_run(dir.path(), 1, 1);
    let errors = as_ranks(2, 29617, |group| {
        run_with_encoder(&config, Device::Cpu, None, &group, |_| {})
            .unwrap_err()
            .to_string()
    });
    for error in errors {
        assert!(
            error.contains("batch_size 1 is the global batch and cannot be shared by 2 ranks"),
            "{error}"
        );
    }
}
