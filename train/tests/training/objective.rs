//! The MedicoSAM objective and trainer on CPU with the tiny reference model: a step changes the weights, the
//! loss on a fixed batch falls over a few steps, fed-back masks carry no gradient and are fed about half of the
//! time, and the ablation objectives run a single round.

use std::path::PathBuf;

use medico_models::{load_checkpoint, Sam, SamConfig};
use medico_train::distributed::DataParallel;
use medico_train::objective::{Batch, BatchInput, Objective, ObjectiveConfig};
use medico_train::trainer::{OptimizerConfig, Trainer};
use tch::{Device, Tensor};

fn tiny() -> (Sam, medico_models::StateDict) {
    let shared = std::env::var_os("MEDICO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    let dir = shared.join("reference/tiny");
    let config = SamConfig::from_json_file(&dir.join("config.json")).unwrap();
    (
        Sam::new(config),
        load_checkpoint(&dir.join("weights.safetensors")).unwrap(),
    )
}

/// Two images at the model's input size with one bright square object each (values already normalized).
fn batch(side: usize) -> Batch {
    let squares = [(40usize, 60usize, 120usize, 150usize), (100, 30, 200, 90)];
    let mut pixels = vec![-1.0f32; 2 * 3 * side * side];
    let mut objects = Vec::new();
    for (i, &(x0, y0, x1, y1)) in squares.iter().enumerate() {
        let mask: Vec<bool> = (0..side * side)
            .map(|p| (x0..x1).contains(&(p % side)) && (y0..y1).contains(&(p / side)))
            .collect();
        for c in 0..3 {
            for (p, &m) in mask.iter().enumerate() {
                if m {
                    pixels[(i * 3 + c) * side * side + p] = 1.5;
                }
            }
        }
        objects.push((i, mask));
    }
    Batch::new(
        BatchInput::Images(Tensor::from_slice(&pixels).reshape([2, 3, side as i64, side as i64])),
        objects,
        Vec::new(),
    )
}

/// A MedicoSAM trainer (learning rate 1e-3) with one setting changed by `change`.
fn medicosam_with(change: impl FnOnce(&mut ObjectiveConfig)) -> Trainer {
    let mut objective = config(Objective::MedicoSam);
    change(&mut objective);
    trainer_with(objective, 1e-3)
}

fn trainer(objective: Objective, lr: f64) -> Trainer {
    trainer_with(config(objective), lr)
}

/// A trainer on the tiny model (fresh weights: the same for every call) with `config` and learning rate `lr`.
fn trainer_with(config: ObjectiveConfig, lr: f64) -> Trainer {
    let (sam, state) = tiny();
    let optimizer = OptimizerConfig {
        lr,
        weight_decay: 0.0,
        ..OptimizerConfig::default()
    };
    Trainer::new(sam, &state, Device::Cpu, config, optimizer, 1)
}

fn config(objective: Objective) -> ObjectiveConfig {
    ObjectiveConfig {
        objective,
        rounds: 4,
        mask_prob: 0.5,
        bce_weight: 0.0,
        iou_weight: 1.0,
        point_start: Default::default(),
        propagation_weight: 1.0,
        click_weight: 0.0,
        propagation_mask: false,
    }
}

#[test]
fn steps_change_the_weights_and_lower_the_loss_on_a_fixed_batch() {
    let mut trainer = trainer(Objective::MedicoSam, 1e-3);
    let side = 256;
    let data = batch(side);
    let watched = [
        "image_encoder.patch_embed.proj.weight",
        "mask_decoder.iou_prediction_head.layers.0.weight",
    ];
    let before: Vec<Tensor> = watched.iter().map(|k| trainer.parameter(k)).collect();
    let initial = trainer.evaluate(&data, 9);
    let mut fed = Vec::new();
    for _ in 0..10 {
        let report = trainer.step(&data);
        assert!(report.loss.is_finite());
        assert!(!report.feedback_required_grad, "fed-back logits must be detached");
        assert_eq!(report.round_losses.len(), 4);
        fed.extend(report.mask_fed);
    }
    for (k, old) in watched.iter().zip(&before) {
        let change = (trainer.parameter(k) - old).abs().max().double_value(&[]);
        assert!(change > 0.0, "{k} did not change");
    }
    let after = trainer.evaluate(&data, 9);
    println!(
        "loss on the fixed batch: {initial:.4} -> {after:.4}; mask fed in {} of {} rounds",
        fed.iter().filter(|&&f| f).count(),
        fed.len()
    );
    assert!(after < initial, "loss {initial} -> {after}");
    // 30 draws at p = 0.5: between 7 and 23 fed (probability of falling outside < 0.2 %).
    let count = fed.iter().filter(|&&f| f).count();
    assert!((7..=23).contains(&count), "{count} of {}", fed.len());
    assert_eq!(trainer.iteration(), 10);
}

#[test]
fn ablation_objectives_run_one_round_without_mask_feedback() {
    for objective in [Objective::MedSam, Objective::Simple] {
        let mut trainer = trainer(objective, 1e-4);
        let report = trainer.step(&batch(256));
        assert_eq!(report.round_losses.len(), 1, "{objective:?}");
        assert!(report.mask_fed.is_empty());
    }
    assert_eq!(
        serde_json::from_str::<Objective>("\"medsam\"").unwrap(),
        Objective::MedSam
    );
    assert_eq!(Objective::MedSam.to_string(), "medsam");
    assert!(serde_json::from_str::<Objective>("\"sam2\"").is_err());
}

#[test]
fn resuming_from_a_checkpoint_reproduces_the_next_step_exactly() {
    let dir = tempfile::Builder::new()
        .prefix("medico-train-resume-")
        .tempdir()
        .unwrap();
    let data = batch(256);
    let mut original = trainer(Objective::MedicoSam, 1e-3);
    original.step(&data);
    original.step(&data);
    let checkpoint = dir.path().join("run.safetensors");
    original.save_checkpoint(&checkpoint).unwrap();
    let next = original.step(&data);

    let (sam, _) = tiny();
    let optimizer = OptimizerConfig {
        lr: 1e-3,
        weight_decay: 0.0,
        ..OptimizerConfig::default()
    };
    let mut resumed = Trainer::resume(sam, &checkpoint, Device::Cpu, config(Objective::MedicoSam), optimizer).unwrap();
    assert_eq!(resumed.iteration(), 2);
    let again = resumed.step(&data);
    assert_eq!(
        again.loss.to_bits(),
        next.loss.to_bits(),
        "{} vs {}",
        again.loss,
        next.loss
    );
    assert_eq!(again.mask_fed, next.mask_fed);
    let key = "mask_decoder.iou_prediction_head.layers.0.weight";
    let gap = (resumed.parameter(key) - original.parameter(key))
        .abs()
        .max()
        .double_value(&[]);
    assert_eq!(
        gap, 0.0,
        "parameters after the resumed step equal the uninterrupted run's"
    );

    // The SAM part exports as an official-format state dict that medico's importer reads and checks.
    let exported = dir.path().join("sam.safetensors");
    resumed.export_state_dict(&exported).unwrap();
    let state = medico_models::load_checkpoint(&exported).unwrap();
    let (sam, _) = tiny();
    sam.param_specs()
        .check(&medico_models::checkpoint::shapes(&state))
        .unwrap();
}

#[test]
fn gradient_accumulation_makes_one_update_from_several_micro_batches() {
    let key = "image_encoder.blocks.0.attn.qkv.weight";
    // One micro-batch is exactly a plain step.
    let (mut plain, mut single) = (trainer(Objective::MedicoSam, 1e-3), trainer(Objective::MedicoSam, 1e-3));
    let a = plain.step(&batch(256));
    let b = single.step_accumulated(&[batch(256)], &DataParallel::Single).unwrap();
    assert_eq!(a.loss.to_bits(), b.loss.to_bits());
    let gap = (plain.parameter(key) - single.parameter(key))
        .abs()
        .max()
        .double_value(&[]);
    assert_eq!(gap, 0.0);

    // Three micro-batches: one update, the mean loss, every micro-batch's rounds and feedback draws.
    let mut accumulated = trainer(Objective::MedicoSam, 1e-3);
    let before = accumulated.parameter(key);
    let report = accumulated
        .step_accumulated(&[batch(256), batch(256), batch(256)], &DataParallel::Single)
        .unwrap();
    assert_eq!(accumulated.iteration(), 1, "one optimizer step");
    assert_eq!(report.round_losses.len(), 4);
    assert_eq!(
        report.mask_fed.len(),
        3 * 3,
        "3 micro-batches x 3 rounds after the first"
    );
    assert!(!report.feedback_required_grad);
    let mean_round = report.round_losses.iter().sum::<f64>() / 4.0;
    assert!(
        (mean_round - report.loss).abs() < 1e-5,
        "loss {} is the mean over rounds {mean_round}",
        report.loss
    );
    let change = (accumulated.parameter(key) - before).abs().max().double_value(&[]);
    assert!(change > 0.0, "the update changed the encoder");
}

#[test]
fn the_optional_bce_term_raises_the_loss_only_when_weighted() {
    let make = |bce_weight: f64| medicosam_with(|c| c.bce_weight = bce_weight);
    let data = batch(256);
    let plain = make(0.0).evaluate(&data, 3);
    let again = trainer(Objective::MedicoSam, 1e-3).evaluate(&data, 3);
    assert_eq!(plain.to_bits(), again.to_bits(), "weight 0 is the paper's loss");
    let weighted = make(1.0).evaluate(&data, 3);
    let doubled = make(2.0).evaluate(&data, 3);
    assert!(weighted > plain + 0.05, "{weighted} vs {plain}");
    // The BCE term is the same for the same clicks, so it scales with its weight.
    assert!(
        ((doubled - plain) - 2.0 * (weighted - plain)).abs() < 1e-4,
        "{plain} {weighted} {doubled}"
    );
}

#[test]
fn the_iou_term_scales_with_its_weight() {
    let make = |iou_weight: f64| medicosam_with(|c| c.iou_weight = iou_weight);
    let data = batch(256);
    let dice_only = make(0.0).evaluate(&data, 3);
    let paper = make(1.0).evaluate(&data, 3);
    let again = trainer(Objective::MedicoSam, 1e-3).evaluate(&data, 3);
    assert_eq!(paper.to_bits(), again.to_bits(), "weight 1 is the paper's loss");
    let tenfold = make(10.0).evaluate(&data, 3);
    // An untrained IoU head misses the true IoU, so the term is positive, and the same clicks give the same
    // term at every weight.
    assert!(paper > dice_only + 1e-4, "{paper} vs {dice_only}");
    assert!(
        ((tenfold - dice_only) - 10.0 * (paper - dice_only)).abs() < 1e-4,
        "{dice_only} {paper} {tenfold}"
    );
}

/// A propagation object on image `image`: the box `[x0, y0, x1, y1]`, its target and its mask prompt.
fn derived_object(
    image: usize,
    [x0, y0, x1, y1]: [f64; 4],
    target: Vec<bool>,
    prompt_mask: Vec<i8>,
) -> (usize, medico_train::data::DerivedObject) {
    let prompt = medico_models::prompt::BoxPrompt { x0, y0, x1, y1 };
    (
        image,
        medico_train::data::DerivedObject {
            prompt,
            target,
            prompt_mask,
        },
    )
}

#[test]
fn the_propagation_term_teaches_an_empty_mask_past_the_object() {
    let side = 256;
    // Derived boxes only, over a dark region where the object has ended: the target is empty.
    let derived = (0..2)
        .map(|i| derived_object(i, [30.0, 40.0, 130.0, 160.0], vec![false; side * side], Vec::new()))
        .collect();
    let data = Batch::new(batch(side).input, Vec::new(), derived);
    let mut trainer = trainer(Objective::MedicoSam, 1e-3);
    let initial = trainer.evaluate(&data, 3);
    for _ in 0..8 {
        let report = trainer.step(&data);
        assert!(report.round_losses.is_empty(), "no interactive objects, no rounds");
        assert!(report.propagation_loss.is_some_and(f64::is_finite));
    }
    let after = trainer.evaluate(&data, 3);
    assert!(after < 0.8 * initial, "propagation loss {initial} -> {after}");
}

#[test]
fn the_walk_objective_trains_the_propagation_term_alone() {
    let side = 256;
    let interactive = batch(side);
    let mask = interactive.objects[0].1.clone();
    let derived = vec![derived_object(0, [38.0, 57.0, 90.0, 110.0], mask, Vec::new())];
    let data = Batch::new(interactive.input, interactive.objects, derived);
    let without_objects = Batch::new(batch(side).input, Vec::new(), data.derived.clone());
    let walk = trainer(Objective::Walk, 1e-3);
    // The interactive objects are not decoded: the loss is the propagation term's, as for a batch without them.
    let propagation_only = trainer(Objective::MedicoSam, 1e-3).evaluate(&without_objects, 3);
    assert!((walk.evaluate(&data, 3) - propagation_only).abs() < 1e-6);
    assert!((trainer(Objective::MedicoSam, 1e-3).evaluate(&data, 3) - propagation_only).abs() > 1e-3);
    let mut walk = walk;
    let report = walk.step(&data);
    assert!(report.round_losses.is_empty(), "no rounds");
    let term = report.propagation_loss.expect("a propagation term");
    assert!((term - report.loss).abs() < 1e-6, "{term} {}", report.loss);
}

#[test]
fn the_neighbours_mask_is_the_walk_decoders_mask_prompt_when_asked() {
    let side = 256;
    let low = tiny().0.config.low_res_size();
    let interactive = batch(side);
    let target = interactive.objects[0].1.clone();
    // The neighbour's mask as the runtime's mask prompt: the square's rows and columns at low resolution.
    let scale = side / low;
    let prompt_mask: Vec<i8> = (0..low * low)
        .map(|i| {
            if target[(i / low) * scale * side + (i % low) * scale] {
                1
            } else {
                -1
            }
        })
        .collect();
    let derived = vec![derived_object(0, [38.0, 57.0, 122.0, 152.0], target, prompt_mask)];
    let data = Batch::new(interactive.input, Vec::new(), derived);
    let loss = |propagation_mask: bool| {
        let config = ObjectiveConfig {
            propagation_mask,
            ..config(Objective::Walk)
        };
        trainer_with(config, 1e-3).evaluate(&data, 5)
    };
    let (box_only, with_mask) = (loss(false), loss(true));
    assert!(box_only.is_finite() && with_mask.is_finite());
    assert!((box_only - with_mask).abs() > 1e-4, "{box_only} {with_mask}");
}

#[test]
fn the_propagation_weight_scales_the_term_added_to_the_rounds() {
    let side = 256;
    let mut data = batch(side);
    let mask = data.objects[0].1.clone();
    data.derived = vec![derived_object(0, [38.0, 57.0, 122.0, 152.0], mask, Vec::new())];
    let loss = |weight: f64| {
        let config = ObjectiveConfig {
            propagation_weight: weight,
            click_weight: 0.0,
            ..config(Objective::MedicoSam)
        };
        trainer_with(config, 1e-3).evaluate(&data, 5)
    };
    let (without, once, twice) = (loss(0.0), loss(1.0), loss(2.0));
    let term = once - without;
    assert!(term > 0.0, "{without} {once}");
    assert!(
        ((twice - without) - 2.0 * term).abs() < 1e-4 * (1.0 + twice.abs()),
        "{without} {once} {twice}"
    );
}

#[test]
fn the_click_term_weighs_the_logits_at_the_clicks_in_training_only() {
    let make = |click_weight: f64| medicosam_with(|c| c.click_weight = click_weight);
    let data = batch(256);
    let (mut plain, mut clicked) = (make(0.0), make(1.0));
    // Validation leaves the term out: the same loss for the same weights and clicks.
    assert_eq!(plain.evaluate(&data, 3).to_bits(), clicked.evaluate(&data, 3).to_bits());
    // Training adds it: an untrained decoder's logits at the clicks are far from confident.
    let (a, b) = (plain.step(&data), clicked.step(&data));
    assert!(b.loss > a.loss + 0.05, "{} vs {}", b.loss, a.loss);
    assert!(b.round_losses.iter().zip(&a.round_losses).all(|(x, y)| x > y));
}
