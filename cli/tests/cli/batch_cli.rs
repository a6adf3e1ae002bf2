//! `medico-cli batch`: a manifest's items split over shards (the flag, a Slurm job array's variables,
//! torchrun's RANK/WORLD_SIZE) give the outputs one process gives; a rerun skips what is done, redoes an
//! output that changed since, ignores a status line a killed job left half-written; a failing item is
//! recorded and the others go on.

use crate::common::*;

use std::path::{Path, PathBuf};

fn write_manifest(dir: &Path) -> PathBuf {
    let volume = shared().join("data/volumes/mni152_t1.nii.gz");
    let scan = volume.display();
    let lines = [
        format!(
            r#"{{"scan": "{scan}", "output": "axial/82.nii.gz", "plane": "axial", "slice": 82, "box": [27, 28, 170, 208]}}"#
        ),
        format!(
            r#"{{"scan": "{scan}", "output": "axial/90.nii.gz", "plane": "axial", "slice": 90, "box": [27, 28, 170, 208], "points": [[98, 113, 1]]}}"#
        ),
        r#"{"scan": "no-such-scan.nii.gz", "output": "missing.nii.gz", "slice": 1, "box": [1, 1, 5, 5]}"#.to_string(),
        format!(
            r#"{{"scan": "{scan}", "output": "coronal/100.nrrd", "plane": "coronal", "slice": 100, "box": [30, 20, 160, 170]}}"#
        ),
        format!(
            r#"{{"scan": "{scan}", "output": "walk.nii.gz", "plane": "axial", "slice": 82, "box": [27, 28, 170, 208], "propagate": true}}"#
        ),
    ];
    let manifest = dir.join("manifest.jsonl");
    std::fs::write(&manifest, lines.join("\n") + "\n").unwrap();
    manifest
}

const OUTPUTS: [&str; 4] = ["axial/82.nii.gz", "axial/90.nii.gz", "coronal/100.nrrd", "walk.nii.gz"];

fn batch(manifest: &Path, out: &Path, bundle: &Path, extra: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut args = vec![
        "batch",
        manifest.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--model",
        bundle.to_str().unwrap(),
        "--threads",
        "1",
    ];
    args.extend(extra);
    medico_env(&args, env)
}

#[test]
fn shards_give_the_outputs_of_one_process_and_a_rerun_resumes() {
    let dir = scratch("batch");
    let bundle = export_small(&dir);
    let manifest = write_manifest(&dir);
    let (sharded, single) = (dir.join("sharded"), dir.join("single"));
    let cache = dir.join("cache");
    let cache_flag = ["--cache-dir", cache.to_str().unwrap()];
    // Shard 0 of 2 by the flag, shard 1 as a Slurm array task (ids 5-6), the single run as RANK 0 of 1.
    let first = batch(
        &manifest,
        &sharded,
        &bundle,
        &[&["--shard", "0/2"][..], &cache_flag].concat(),
        &[],
    );
    assert_eq!(first.status.code(), Some(3), "the missing scan fails its shard");
    let log = text(&first.stderr);
    assert!(
        log.contains("shard 0/2") && log.contains("missing.nii.gz: failed"),
        "{log}"
    );
    assert!(log.contains("no-such-scan.nii.gz"), "{log}");
    let slurm = [
        ("SLURM_ARRAY_TASK_ID", "6"),
        ("SLURM_ARRAY_TASK_COUNT", "2"),
        ("SLURM_ARRAY_TASK_MIN", "5"),
    ];
    let second = batch(&manifest, &sharded, &bundle, &cache_flag, &slurm);
    assert!(second.status.success(), "{}", text(&second.stderr));
    let log = text(&second.stderr);
    assert!(log.contains("shard 1/2: 2 items, 2 done"), "{log}");
    let whole = batch(
        &manifest,
        &single,
        &bundle,
        &cache_flag,
        &[("RANK", "0"), ("WORLD_SIZE", "1")],
    );
    assert_eq!(whole.status.code(), Some(3));
    for output in OUTPUTS {
        let (a, b) = (
            std::fs::read(sharded.join(output)).unwrap(),
            std::fs::read(single.join(output)).unwrap(),
        );
        assert!(a == b, "{output}: shards and one process differ");
    }
    // A rerun skips every finished item; an output changed since is redone; a half-written status line (a
    // killed job) is ignored.
    let status = sharded.join(".medico-batch/status-1-of-2.jsonl");
    let mut text_status = std::fs::read_to_string(&status).unwrap();
    text_status.push_str(r#"{"output": "axial/90.nii.gz", "sha2"#);
    std::fs::write(&status, text_status).unwrap();
    let changed = sharded.join("coronal/100.nrrd");
    let original = std::fs::read(&changed).unwrap();
    std::fs::write(&changed, b"not the mask").unwrap();
    let again = batch(
        &manifest,
        &sharded,
        &bundle,
        &[&["--shard", "1/2", "--json"][..], &cache_flag].concat(),
        &[],
    );
    assert!(again.status.success(), "{}", text(&again.stderr));
    let summary: serde_json::Value =
        serde_json::from_slice(&again.stdout[again.stdout.iter().position(|&b| b == b'{').unwrap()..]).unwrap();
    assert_eq!(
        (
            summary["items"].as_u64(),
            summary["skipped"].as_u64(),
            summary["done"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
    assert_eq!(
        std::fs::read(&changed).unwrap(),
        original,
        "the changed output is written again"
    );
}

#[test]
fn a_bad_manifest_is_refused_naming_the_line() {
    let dir = scratch("batch-bad");
    let manifest = dir.join("manifest.jsonl");
    for (line, expected) in [
        (r#"{"scan": "a.nii.gz", "output": "../escape.nii.gz"}"#, "inside --out"),
        (
            r#"{"scan": "a.nii.gz", "output": "x.nii.gz", "colour": 1}"#,
            "unknown field",
        ),
        ("not json", "line 1"),
    ] {
        std::fs::write(&manifest, line).unwrap();
        let run = medico(&[
            "batch",
            manifest.to_str().unwrap(),
            "--out",
            dir.join("out").to_str().unwrap(),
        ]);
        assert_eq!(run.status.code(), Some(3), "{line}");
        let error = text(&run.stderr);
        assert!(error.contains("manifest.jsonl") && error.contains(expected), "{error}");
    }
    std::fs::write(
        &manifest,
        "{\"scan\": \"a\", \"output\": \"x\"}\n{\"scan\": \"b\", \"output\": \"x\"}\n",
    )
    .unwrap();
    let run = medico(&[
        "batch",
        manifest.to_str().unwrap(),
        "--out",
        dir.join("out").to_str().unwrap(),
    ]);
    assert!(
        text(&run.stderr).contains("line 2: output 'x' is also another item's"),
        "{}",
        text(&run.stderr)
    );
    let run = medico(&["batch", manifest.to_str().unwrap(), "--out", "o", "--shard", "2/2"]);
    assert_eq!(run.status.code(), Some(2));
}
