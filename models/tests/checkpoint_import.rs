//! Checkpoint import on the reference fixtures: every format yields the same tensors, the architecture
//! is inferred from shapes, mismatches are listed, and hostile or broken files are clean errors.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use medico_models::checkpoint::{load_checkpoint, shapes};
use medico_models::{ModelError, Sam, SamConfig, StateDict};

/// The error and its sources, `outer: inner`, as the command line prints them.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

fn reference(name: &str) -> PathBuf {
    let shared = std::env::var_os("MEDICO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    shared.join("reference").join(name)
}

fn load(name: &str, file: &str) -> StateDict {
    load_checkpoint(&reference(name).join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn every_format_loads_the_same_tensors() {
    let expected = load("tiny", "weights.safetensors");
    assert_eq!(expected.len(), 174);
    for file in [
        "weights.pth",
        "weights_legacy.pth",
        "checkpoint_nested.pt",
        "weights_ddp_prefix.pth",
    ] {
        let state = load("tiny", file);
        assert_eq!(
            state.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "{file}: keys differ"
        );
        for (key, tensor) in &expected {
            let other = &state[key];
            assert_eq!(other.shape, tensor.shape, "{file}: {key} shape");
            let same_bits = other
                .data
                .iter()
                .zip(&tensor.data)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same_bits, "{file}: {key} values differ");
        }
    }
}

#[test]
fn architecture_is_inferred_from_shapes() {
    for (name, heads) in [("tiny", Some(2)), ("small", None)] {
        let config = SamConfig::from_json_file(&reference(name).join("config.json")).unwrap();
        let state = load(name, "weights.safetensors");
        let inferred = SamConfig::infer_from_shapes(&shapes(&state), heads).unwrap();
        assert_eq!(inferred, config, "{name}");
        Sam::new(config).param_specs().check(&shapes(&state)).unwrap();
    }
}

#[test]
fn parameter_counts_match_the_reference() {
    // README: tiny 369,288 and small 5,720,496 parameters, plus the Gaussian PE matrix (a buffer).
    for (name, params, gaussian) in [("tiny", 369_288, 2 * 32), ("small", 5_720_496, 2 * 128)] {
        let config = SamConfig::from_json_file(&reference(name).join("config.json")).unwrap();
        assert_eq!(Sam::new(config).param_specs().numel(), params + gaussian, "{name}");
    }
}

#[test]
fn official_presets_have_the_published_sizes() {
    for (name, width) in [("vit_b", 768), ("vit_l", 1024), ("vit_h", 1280)] {
        let config = SamConfig::preset(name).unwrap();
        assert_eq!(config.architecture_name(), name);
        let specs = Sam::new(config).param_specs();
        let shapes: BTreeMap<String, Vec<usize>> = specs.iter().map(|p| (p.name.clone(), p.shape.clone())).collect();
        assert_eq!(shapes["image_encoder.patch_embed.proj.weight"][0], width);
        let inferred = SamConfig::infer_from_shapes(&shapes, None).unwrap();
        assert_eq!(inferred.architecture_name(), name);
    }
    // SAM ViT-B has 93,735,472 parameters, plus the 2 x 128 Gaussian PE buffer in its state dict.
    assert_eq!(
        Sam::new(SamConfig::preset("vit_b").unwrap()).param_specs().numel(),
        93_735_472 + 256
    );
}

#[test]
fn key_mismatches_are_listed() {
    let config = SamConfig::from_json_file(&reference("tiny").join("config.json")).unwrap();
    let mut found = shapes(&load("tiny", "weights.safetensors"));
    found.remove("mask_decoder.iou_token.weight");
    found.insert("mask_decoder.extra.weight".into(), vec![3]);
    found.insert("image_encoder.neck.1.weight".into(), vec![65]);
    let err = Sam::new(config).param_specs().check(&found).unwrap_err();
    let ModelError::KeyMismatch {
        missing,
        unexpected,
        misshaped,
    } = &err
    else {
        panic!("wrong error: {err}");
    };
    assert_eq!(missing, &["mask_decoder.iou_token.weight"]);
    assert_eq!(unexpected, &["mask_decoder.extra.weight"]);
    assert_eq!(misshaped.len(), 1);
    let message = err.to_string();
    assert!(
        message.contains("1 missing key(s): mask_decoder.iou_token.weight"),
        "{message}"
    );
    assert!(
        message.contains("image_encoder.neck.1.weight (expected [64], found [65])"),
        "{message}"
    );
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("medico-models-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn truncated_files_are_clear_errors() {
    for file in [
        "weights.safetensors",
        "weights.pth",
        "weights_legacy.pth",
        "checkpoint_nested.pt",
    ] {
        let bytes = std::fs::read(reference("tiny").join(file)).unwrap();
        for keep in [4, 100, bytes.len() / 2, bytes.len() - 7] {
            let path = temp_file(&format!("cut-{keep}-{file}"), &bytes[..keep]);
            let err = load_checkpoint(&path).expect_err("a truncated file must not load");
            let message = err.to_string();
            assert!(
                message.starts_with(&path.display().to_string()),
                "names the file: {message}"
            );
        }
    }
}

/// A pickle that would call `os.system("echo pwned")` if it were executed.
const EXPLOIT: &[u8] = b"\x80\x02cos\nsystem\nX\x0a\x00\x00\x00echo pwned\x85R.";

#[test]
fn foreign_pickle_globals_are_refused() {
    // As a legacy file.
    let path = temp_file("exploit.pth", EXPLOIT);
    let message = chain(&load_checkpoint(&path).unwrap_err());
    assert!(message.contains("refused pickle global 'os.system'"), "{message}");

    // Inside a zip archive, as torch.save writes it.
    let mut zip_bytes = Vec::new();
    {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(&mut zip_bytes));
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        writer.start_file("archive/data.pkl", options).unwrap();
        writer.write_all(EXPLOIT).unwrap();
        writer.finish().unwrap();
    }
    let path = temp_file("exploit_zip.pth", &zip_bytes);
    let message = chain(&load_checkpoint(&path).unwrap_err());
    assert!(message.contains("refused pickle global 'os.system'"), "{message}");
}

#[test]
fn unknown_files_are_rejected() {
    let path = temp_file("notes.txt", b"hello, this is not a checkpoint");
    let message = chain(&load_checkpoint(&path).unwrap_err());
    assert!(message.contains("not a checkpoint"), "{message}");
    let missing = std::env::temp_dir().join("medico-does-not-exist.pth");
    let message = chain(&load_checkpoint(&missing).unwrap_err());
    assert!(
        message.contains("cannot read") && message.contains("medico-does-not-exist.pth"),
        "{message}"
    );
}

/// Both TinyViT stems round-trip: the parameter shapes a configuration declares infer back to it, with the
/// input side that gives SAM's 64x64 grid (LiteMedSAM 256, MobileSAM 1024) and upstream's merge strides.
#[test]
fn tiny_vit_configurations_are_inferred_from_their_shapes() {
    let lite = SamConfig::preset("lite_medsam").unwrap();
    let mut mobile = lite.clone();
    mobile.img_size = 1024;
    if let medico_models::EncoderConfig::TinyVit { tiny_vit } = &mut mobile.encoder {
        tiny_vit.stem = medico_models::TinyVitStem::Strided;
    }
    for (config, side) in [(lite, 256), (mobile, 1024)] {
        let shapes: BTreeMap<String, Vec<usize>> = Sam::new(config.clone())
            .param_specs()
            .iter()
            .map(|p| (p.name.clone(), p.shape.clone()))
            .collect();
        let inferred = SamConfig::infer_from_shapes(&shapes, None).unwrap();
        assert_eq!(inferred, config, "{side}");
        assert_eq!((inferred.img_size, inferred.embedding_size()), (side, 64));
    }
    assert_eq!(
        Sam::new(SamConfig::preset("lite_medsam").unwrap()).param_specs().len(),
        // LiteMedSAM's 435 checkpoint tensors less the 27 BatchNorm counters import drops.
        435 - 27
    );
}
