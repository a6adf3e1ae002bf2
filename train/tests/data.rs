//! Training data from real volumes: MNI152 T1 with its tissue labels, axial slices at the tiny model's input
//! size, objects per label value; one trainer step on a batch of them.

use std::path::PathBuf;

use medico_models::{load_checkpoint, Sam, SamConfig};
use medico_train::data::{make_batch, slice_samples, VolumeSource};
use medico_train::objective::{Objective, ObjectiveConfig};
use medico_train::trainer::{OptimizerConfig, Trainer};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::Device;

fn shared() -> PathBuf {
    std::env::var_os("MEDICO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

#[test]
fn mni_slices_become_batches_the_trainer_steps_on() {
    let reference = shared().join("reference/tiny");
    let config = SamConfig::from_json_file(&reference.join("config.json")).unwrap();
    let data = shared().join("data/volumes");
    let source = VolumeSource {
        image: data.join("mni152_t1.nii.gz"),
        labels: data.join("mni152_tissue_labels.nii.gz"),
        axis: 2,
        values: None,
    };
    let samples = slice_samples(&source, &config, 20).unwrap();
    let side = config.img_size;
    // Tissue labels cover axial slices 2..=151 (cases.json); slices with objects of >= 20 px at 256² are kept.
    assert!(samples.len() > 100 && samples.len() <= 189, "{}", samples.len());
    for s in &samples {
        assert_eq!(s.input.len(), 3 * side * side);
        assert!((1..=2).contains(&s.objects.len()));
        assert!(s
            .objects
            .iter()
            .all(|m| m.len() == side * side && m.iter().filter(|&&b| b).count() >= 20));
    }
    // The padded area (233 x 197 -> 256 x 217) holds no object pixels.
    let last_column_used = samples
        .iter()
        .flat_map(|s| s.objects.iter())
        .flat_map(|m| m.iter().enumerate().filter(|(_, &b)| b).map(|(i, _)| i % side))
        .max()
        .unwrap();
    assert!(last_column_used < 217, "{last_column_used}");

    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let middle = samples.len() / 2;
    let batch = make_batch(&[&samples[middle], &samples[middle + 5]], side, 1, &mut rng);
    assert_eq!(batch.objects.len(), 2);
    let sam = Sam::new(config);
    let state = load_checkpoint(&reference.join("weights.safetensors")).unwrap();
    let objective = ObjectiveConfig {
        objective: Objective::MedicoSam,
        rounds: 2,
        mask_prob: 0.5,
    };
    let mut trainer = Trainer::new(sam, &state, Device::Cpu, objective, OptimizerConfig::default(), 0);
    let report = trainer.step(&batch);
    assert!(report.loss.is_finite() && report.loss > 0.0);
}

#[test]
fn mismatched_grids_are_refused_with_the_file_named() {
    let reference = shared().join("reference/tiny");
    let config = SamConfig::from_json_file(&reference.join("config.json")).unwrap();
    let source = VolumeSource {
        image: shared().join("data/volumes/mni152_t1.nii.gz"),
        labels: shared().join("data/volumes/inia19_neuromaps_labels.nii.gz"),
        axis: 2,
        values: None,
    };
    let err = slice_samples(&source, &config, 20).err().unwrap();
    assert!(
        err.contains("inia19_neuromaps_labels.nii.gz") && err.contains("differs"),
        "{err}"
    );
}
