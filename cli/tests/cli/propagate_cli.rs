//! `segment --propagate`: the mask volume is written on the input grid, a second run on the same volume
//! takes every embedding from the cache (no encoder run), a corrupted cache file is rebuilt rather than
//! trusted, prompts files replay several annotated slices, and bad prompts files are refused.

use crate::common::*;

use std::path::Path;

fn propagate(input: &Path, bundle: &Path, cache: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "segment",
        input.to_str().unwrap(),
        "--model",
        bundle.to_str().unwrap(),
        "--propagate",
        "--iou-threshold",
        "0",
        "--min-predicted-iou",
        "0",
        "--projection",
        "box",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--json",
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    let run = medico(&args);
    assert!(run.status.success(), "{}", text(&run.stderr));
    serde_json::from_slice(&run.stdout).unwrap()
}

#[test]
fn the_second_run_skips_the_encoder_and_corrupt_cache_files_are_rebuilt() {
    let dir = scratch("propagate-cache");
    let bundle = export_small(&dir);
    let cache = dir.join("cache");
    let input = shared().join("data/dicom/series_ct5n");
    let out = dir.join("mask.nii.gz");
    let first = propagate(&input, &bundle, &cache, &out, &["--box", "1,1,15,15"]);
    let encoded = first["encoder_runs"].as_u64().unwrap();
    assert!(encoded >= 1);
    assert_eq!(first["cache_hits"], 0);
    assert_eq!(first["annotated_slices"], serde_json::json!([2]));
    assert!(out.exists());

    let second = propagate(&input, &bundle, &cache, &out, &["--box", "1,1,15,15"]);
    assert_eq!(second["encoder_runs"], 0, "every embedding comes from the cache");
    assert_eq!(second["cache_hits"].as_u64(), Some(encoded));
    assert_eq!(second["voxels"], first["voxels"], "same result from cached embeddings");

    // Truncate one cache file: it is detected, rebuilt (one encoder run), and the result is unchanged.
    let cache_dir = Path::new(second["cache_dir"].as_str().unwrap());
    let file = std::fs::read_dir(cache_dir).unwrap().next().unwrap().unwrap().path();
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let third = propagate(&input, &bundle, &cache, &out, &["--box", "1,1,15,15"]);
    assert_eq!(third["cache_rebuilt"], 1);
    assert_eq!(third["encoder_runs"], 1);
    assert_eq!(third["voxels"], first["voxels"]);
    assert_eq!(
        std::fs::read(&file).unwrap().len(),
        bytes.len(),
        "the rebuilt file is whole again"
    );

    // --precompute encodes every slice up front; all 5 are then in the cache.
    let all = propagate(&input, &bundle, &cache, &out, &["--box", "1,1,15,15", "--precompute"]);
    assert_eq!(
        all["encoder_runs"].as_u64().unwrap(),
        5 - encoded,
        "the slices not yet cached"
    );
    assert_eq!(std::fs::read_dir(cache_dir).unwrap().count(), 5);
    let again = propagate(&input, &bundle, &cache, &out, &["--box", "1,1,15,15", "--precompute"]);
    assert_eq!(again["encoder_runs"], 0);

    // A different intensity mapping is a different cache entry.
    let other = propagate(
        &input,
        &bundle,
        &cache,
        &out,
        &["--box", "1,1,15,15", "--intensity", "ct-abdomen"],
    );
    assert_eq!(other["cache_hits"], 0);
}

#[test]
fn prompts_files_replay_several_slices_and_bad_ones_are_refused() {
    let dir = scratch("propagate-prompts");
    let bundle = export_small(&dir);
    let cache = dir.join("cache");
    let input = shared().join("data/dicom/series_ct5n");
    let out = dir.join("mask.nii");
    let prompts = dir.join("prompts.json");
    std::fs::write(
        &prompts,
        r#"[{"slice": 0, "box": [1, 1, 15, 15]}, {"slice": 4, "points": [[8, 8, 1], [1, 1, 0]]}]"#,
    )
    .unwrap();
    let report = propagate(&input, &bundle, &cache, &out, &["--prompts", prompts.to_str().unwrap()]);
    assert_eq!(report["annotated_slices"], serde_json::json!([0, 4]));
    assert_eq!(report["lower_stop"], "not walked (annotated slice at the limit)");

    let b = bundle.to_str().unwrap();
    let o = out.to_str().unwrap();
    std::fs::remove_file(&out).unwrap();
    for (content, message) in [
        ("not json", "not a prompts list"),
        ("[]", "the prompts list is empty"),
        (r#"[{"slice": 1}]"#, "has neither a box nor points"),
        (
            r#"[{"slice": 9, "box": [1, 1, 5, 5]}]"#,
            "annotated slice 9 is outside the volume",
        ),
        (
            r#"[{"slice": 1, "box": [1, 1, 50, 5]}]"#,
            "extends outside the 16x16 image",
        ),
        (r#"[{"slice": 1, "points": [[1, 1, 7]]}]"#, "point label 7"),
    ] {
        std::fs::write(&prompts, content).unwrap();
        let run = medico(&[
            "segment",
            input.to_str().unwrap(),
            "--model",
            b,
            "--prompts",
            prompts.to_str().unwrap(),
            "-o",
            o,
        ]);
        let stderr = text(&run.stderr);
        assert_eq!(run.status.code(), Some(3), "{content}: {stderr}");
        assert!(stderr.contains(message), "{content}: {stderr}");
        assert!(!out.exists());
    }
    // Prompts on the command line and in a file at once is a usage error.
    let run = medico(&[
        "segment",
        input.to_str().unwrap(),
        "--model",
        b,
        "--prompts",
        prompts.to_str().unwrap(),
        "--box",
        "1,1,5,5",
        "-o",
        o,
    ]);
    assert_eq!(run.status.code(), Some(2));
}
