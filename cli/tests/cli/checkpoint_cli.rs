//! `medico-cli checkpoint info` as a user runs it: valid checkpoints of every format, hostile and broken
//! files (one-line error naming the file, exit code 4), usage errors (exit code 2).

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
