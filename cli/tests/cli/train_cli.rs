//! `medico-cli train` (feature `torch`): a tiny run on MNI152 tissue labels, validated on the brain mask,
//! writes a JSON-lines log, a checkpoint that a second invocation resumes from, the SAM state dict and a bundle
//! with provenance that `segment` can use.
#![cfg(feature = "torch")]

use crate::common::*;

#[test]
fn a_tiny_run_logs_checkpoints_resumes_and_exports_a_usable_bundle() {
    let dir = scratch("train");
    let data = shared().join("data/volumes");
    let config = dir.join("train.json");
    let write_config = |steps: u64| {
        let json = serde_json::json!({
            "model": shared().join("reference/tiny/config.json"),
            "init": "scratch",
            "train": [{"image": data.join("mni152_t1.nii.gz"), "labels": data.join("mni152_tissue_labels.nii.gz"), "axis": 2}],
            "val": [{"image": data.join("mni152_t1.nii.gz"), "labels": data.join("mni152_brain_mask.nii.gz"), "axis": 1}],
            "rounds": 2,
            "steps": steps,
            "batch_size": 2,
            "objects_per_image": 2,
            "lr": 1e-3,
            "seed": 3,
            "val_every": 2,
            "checkpoint_every": 2,
            "out": "run"
        });
        std::fs::write(&config, json.to_string()).unwrap();
    };
    write_config(2);
    let run = medico(&["train", "--config", config.to_str().unwrap(), "--device", "cpu"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let out = dir.join("run");
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[1]["val_loss"].as_f64().unwrap().is_finite());
    assert!(out.join("checkpoint.safetensors").exists());

    // Two more steps resume from the checkpoint (the log continues at step 3).
    write_config(4);
    let run = medico(&["train", "--config", config.to_str().unwrap(), "--device", "cpu"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    let steps: Vec<u64> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps, vec![1, 2, 3, 4]);

    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("bundle/model.json")).unwrap()).unwrap();
    assert_eq!(manifest["provenance"]["extra"]["steps"], 4);
    assert!(manifest["provenance"]["extra"]["config"]["train"].is_array());
    let seg = medico(&[
        "segment",
        shared().join("data/slices2d/mni152_axial_a2_082.png").to_str().unwrap(),
        "--model",
        out.join("bundle").to_str().unwrap(),
        "--box",
        "27,28,170,208",
        "-o",
        dir.join("mask.png").to_str().unwrap(),
    ]);
    assert!(seg.status.success(), "{}", text(&seg.stderr));

    std::fs::write(&config, "{\"model\": \"vit_q\"}").unwrap();
    let run = medico(&["train", "--config", config.to_str().unwrap(), "--device", "cpu"]);
    assert_eq!(run.status.code(), Some(3));
    assert!(text(&run.stderr).contains("train.json"), "{}", text(&run.stderr));
}
