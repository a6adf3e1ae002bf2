//! The built-in default model (`models/medico-tiny`): `segment` without `--model` installs it into the cache on
//! first use, reuses it, replaces a damaged copy, and segments the brain on the bundled MNI152 scan from a box;
//! the committed bundle carries its training provenance.

use std::path::{Path, PathBuf};

use nifti::{IntoNdArray, NiftiObject, ReaderOptions};

use crate::common::*;

/// The checkout's root.
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The binary mask of a NIfTI file as a 3D array.
fn read_mask(path: &Path) -> ndarray::Array3<bool> {
    let volume = ReaderOptions::new().read_file(path).unwrap().into_volume();
    let values = volume.into_ndarray::<f32>().unwrap();
    values.into_dimensionality::<ndarray::Ix3>().unwrap().mapv(|v| v > 0.0)
}

/// The smallest Dice of the default model's brain mask on axial slice 82 against the template's brain mask:
/// measured 0.785 (models/medico-tiny/README.md); the margin covers engine and thread-count differences.
const MIN_BRAIN_DICE: f64 = 0.75;

#[test]
fn segment_without_a_model_uses_the_built_in_default() {
    let dir = scratch("default-model");
    let cache = dir.join("cache");
    let cache_env = [("MEDICO_CACHE_DIR", cache.to_str().unwrap())];
    let scan = repo().join("examples/mni152_t1.nii.gz");
    let (mask_path, preview) = (dir.join("brain.nii.gz"), dir.join("brain.png"));
    let segment = || {
        medico_env(
            &[
                "segment",
                scan.to_str().unwrap(),
                "--plane",
                "axial",
                "--slice",
                "82",
                "--box",
                "27,28,170,208",
                "--preview",
                preview.to_str().unwrap(),
                "-o",
                mask_path.to_str().unwrap(),
            ],
            &cache_env,
        )
    };
    let run = segment();
    assert!(run.status.success(), "{}", text(&run.stderr));
    let installed: Vec<PathBuf> = std::fs::read_dir(cache.join("bundles"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(installed.len(), 1, "one installed copy, no staging left: {installed:?}");
    let bundle = &installed[0];
    assert!(bundle
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("medico-tiny-"));
    assert_eq!(
        std::fs::read(bundle.join("encoder.onnx")).unwrap(),
        std::fs::read(repo().join("models/medico-tiny/bundle/encoder.onnx")).unwrap()
    );

    let mask = read_mask(&mask_path);
    let truth = read_mask(&shared().join("data/volumes/mni152_brain_mask.nii.gz"));
    assert_eq!(mask.dim(), truth.dim(), "the mask is on the scan's grid");
    let (mut inter, mut total) = (0usize, 0usize);
    for ((_, _, k), &m) in mask.indexed_iter() {
        assert!(!m || k == 82, "mask voxel outside the prompted slice");
    }
    for (m, t) in mask
        .index_axis(ndarray::Axis(2), 82)
        .iter()
        .zip(truth.index_axis(ndarray::Axis(2), 82))
    {
        inter += usize::from(*m && *t);
        total += usize::from(*m) + usize::from(*t);
    }
    let dice = 2.0 * inter as f64 / total as f64;
    println!("default model: brain Dice {dice:.4} on axial slice 82");
    assert!(dice >= MIN_BRAIN_DICE, "brain Dice {dice:.3} < {MIN_BRAIN_DICE}");
    let preview_image = image::open(&preview).unwrap();
    assert_eq!((preview_image.width(), preview_image.height()), (197, 233));

    // A damaged installed copy is replaced; the result is the same.
    std::fs::write(bundle.join("encoder.onnx"), b"not a model").unwrap();
    let first = std::fs::read(&mask_path).unwrap();
    std::fs::remove_file(&mask_path).unwrap();
    let run = segment();
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(
        std::fs::read(bundle.join("encoder.onnx")).unwrap(),
        std::fs::read(repo().join("models/medico-tiny/bundle/encoder.onnx")).unwrap(),
        "the damaged copy was reinstalled"
    );
    assert_eq!(read_mask(&mask_path), read_mask_bytes(&first, &dir));
}

fn read_mask_bytes(bytes: &[u8], dir: &Path) -> ndarray::Array3<bool> {
    let path = dir.join("first.nii.gz");
    std::fs::write(&path, bytes).unwrap();
    read_mask(&path)
}

#[test]
fn the_default_model_carries_its_training_provenance() {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("models/medico-tiny/bundle/model.json")).unwrap())
            .unwrap();
    let provenance = &manifest["provenance"];
    let extra = &provenance["extra"];
    assert_eq!(extra["config"]["objective"], "medicosam");
    assert_eq!(extra["config"]["init"], "scratch");
    assert_eq!(extra["steps"], extra["config"]["steps"], "the run finished");
    assert!(extra["config"]["seed"].is_u64());
    assert!(extra["val_loss"].as_f64().unwrap() < 1.0);
    assert!(extra["command"]
        .as_str()
        .unwrap()
        .starts_with("medico-cli train --config"));
    let data = provenance["training_data"].as_str().unwrap();
    assert!(data.contains("inia19_t1_brain") && data.contains("mni152_t1"), "{data}");
    let train_config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("models/medico-tiny/train-medicosam.json")).unwrap())
            .unwrap();
    assert_eq!(
        extra["config"], train_config,
        "the committed configuration is the one trained with"
    );
    let size: u64 = std::fs::read_dir(repo().join("models/medico-tiny/bundle"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(size < 25 << 20, "bundle of {size} bytes");
}
