//! `medico-cli checkpoint info`, `checkpoint diff` and `checkpoint apply` as a user runs them: valid checkpoints of every format,
//! hostile and broken files (one-line error naming the file, exit code 4), usage errors (exit code 2), and a
//! finetune shipped as an overlay and exported back over its base.

use std::path::Path;

use medico_bundle::Bundle;

use crate::common::*;

#[test]
fn every_checkpoint_format_is_a_valid_sam() {
    let tiny = shared().join("reference/tiny");
    let config = tiny.join("config.json");
    for file in [
        "weights.safetensors",
        "weights.pth",
        "weights_legacy.pth",
        "checkpoint_nested.pt",
        "weights_ddp_prefix.pth",
    ] {
        let path = tiny.join(file);
        let out = medico(&[
            "checkpoint",
            "info",
            path.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{file}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(stdout.contains("valid SAM checkpoint"), "{stdout}");
        assert!(stdout.contains("174 (369352 values)"), "{stdout}");
    }
}

#[test]
fn json_report_carries_the_inferred_config() {
    let path = shared().join("reference/small/weights.safetensors");
    let out = medico(&["checkpoint", "info", path.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(
        report["config"]["encoder_global_attn_indexes"],
        serde_json::json!([1, 3])
    );
    assert_eq!(report["config"]["img_size"], 512);
    assert_eq!(report["tensors"], 202);
}

#[test]
fn wrong_architecture_lists_the_mismatched_keys() {
    let path = shared().join("reference/tiny/weights.safetensors");
    let out = medico(&["checkpoint", "info", path.to_str().unwrap(), "--arch", "vit_b"]);
    assert_eq!(out.status.code(), Some(4));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("mis-shaped key(s)"), "{stderr}");
    assert!(
        stderr.contains("image_encoder.patch_embed.proj.weight (expected [768, 3, 16, 16]"),
        "{stderr}"
    );
}

#[test]
fn hostile_and_broken_files_fail_cleanly() {
    let dir = std::env::temp_dir().join(format!("medico-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exploit = dir.join("exploit.pth");
    std::fs::write(&exploit, b"\x80\x02cposix\nsystem\nX\x0a\x00\x00\x00echo pwned\x85R.").unwrap();
    let weights = std::fs::read(shared().join("reference/tiny/weights.pth")).unwrap();
    let truncated = dir.join("truncated.pth");
    std::fs::write(&truncated, &weights[..weights.len() / 3]).unwrap();

    for (path, expected) in [
        (&exploit, "refused pickle global 'posix.system'"),
        (&truncated, "invalid PyTorch zip archive"),
    ] {
        let out = medico(&["checkpoint", "info", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(path.to_str().unwrap()), "names the file: {stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }
}

#[test]
fn usage_errors_exit_with_2() {
    let out = medico(&["checkpoint", "info"]);
    assert_eq!(out.status.code(), Some(2));
}

/// A finetune shipped as what it changed: `checkpoint diff` writes only the changed tensors, and `export
/// --overlay` over the base gives the finetune's own bundle, graph for graph (f32 overlay); an overlay that
/// does not fit the base is refused with the overlay named.
#[test]
fn checkpoint_diff_and_export_overlay_rebuild_a_finetune() {
    let dir = scratch("overlay");
    let small = shared().join("reference/small");
    let (base, config) = (small.join("weights.safetensors"), small.join("config.json"));
    let mut state = medico_models::load_checkpoint(&base).unwrap();
    let changed_key = "mask_decoder.iou_prediction_head.layers.0.weight";
    for v in state.get_mut(changed_key).unwrap().data.iter_mut() {
        *v *= 1.5;
    }
    let finetuned = dir.join("finetuned.safetensors");
    std::fs::write(
        &finetuned,
        medico_export::overlay::overlay_bytes(&state, medico_export::overlay::OverlayPrecision::F32),
    )
    .unwrap();
    let overlay = dir.join("overlay.safetensors");
    let args = |precision: &str| {
        vec![
            "checkpoint".to_string(),
            "diff".into(),
            base.display().to_string(),
            finetuned.display().to_string(),
            "--precision".into(),
            precision.into(),
            "-o".into(),
            overlay.display().to_string(),
        ]
    };
    let run = medico(&args("f32").iter().map(String::as_str).collect::<Vec<_>>());
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(
        text(&run.stdout).contains(&format!("1 of {} tensors changed", state.len())),
        "{}",
        text(&run.stdout)
    );
    let written = medico_models::load_checkpoint(&overlay).unwrap();
    assert_eq!(written.keys().collect::<Vec<_>>(), [changed_key]);

    // `checkpoint apply` puts the finetune back together, tensor for tensor.
    let applied = dir.join("applied.safetensors");
    let apply = |overlay: &Path| {
        medico(&[
            "checkpoint",
            "apply",
            base.to_str().unwrap(),
            overlay.to_str().unwrap(),
            "-o",
            applied.to_str().unwrap(),
        ])
    };
    let run = apply(&overlay);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let rebuilt_state = medico_models::load_checkpoint(&applied).unwrap();
    assert_eq!(rebuilt_state.len(), state.len());
    for (key, tensor) in &state {
        assert_eq!(rebuilt_state[key].data, tensor.data, "{key}");
    }

    let export = |out: &Path, checkpoint: &Path, overlay: Option<&Path>| {
        let mut args = vec![
            "export",
            "--checkpoint",
            checkpoint.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        if let Some(overlay) = overlay {
            args.extend(["--overlay", overlay.to_str().unwrap()]);
        }
        medico(&args)
    };
    let (rebuilt, direct) = (dir.join("rebuilt"), dir.join("direct"));
    assert!(export(&rebuilt, &base, Some(&overlay)).status.success());
    assert!(export(&direct, &finetuned, None).status.success());
    for graph in ["encoder.onnx", "decoder.onnx", "decoder_lowres.onnx"] {
        assert_eq!(
            std::fs::read(rebuilt.join(graph)).unwrap(),
            std::fs::read(direct.join(graph)).unwrap(),
            "{graph}"
        );
    }
    let manifest = Bundle::open(&rebuilt).unwrap().manifest;
    assert!(manifest.provenance.extra["overlay"]["sha256"].as_str().unwrap().len() == 64);

    // An overlay from another architecture does not fit.
    let tiny_weights = shared().join("reference/tiny/weights.safetensors");
    let run = export(&dir.join("refused"), &base, Some(&tiny_weights));
    assert_eq!(run.status.code(), Some(4), "{}", text(&run.stderr));
    assert!(
        text(&run.stderr).contains("tiny/weights.safetensors"),
        "{}",
        text(&run.stderr)
    );
    assert!(!dir.join("refused").exists());
    std::fs::remove_file(&applied).unwrap();
    let run = apply(&tiny_weights);
    assert_eq!(run.status.code(), Some(4), "{}", text(&run.stderr));
    assert!(
        text(&run.stderr).contains("tiny/weights.safetensors"),
        "{}",
        text(&run.stderr)
    );
    assert!(!applied.exists());
}
