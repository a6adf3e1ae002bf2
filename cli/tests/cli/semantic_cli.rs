//! `segment --semantic`, `export --segmentation-decoder` and `eval semantic` as a user runs them: the small
//! reference SAM with a torch-em UNETR decoder in its bundle (random weights: the labels are meaningless, the
//! behaviour is not) labels a real NIfTI volume on its own grid, reuses embeddings computed for interactive
//! use, reports each class's volume, and refuses what it cannot do with a clear error.

use std::path::{Path, PathBuf};

use serde_json::Value;

use nifti::{IntoNdArray, NiftiObject, ReaderOptions};

use crate::common::{export_small_to, medico, scratch, shared, text};

fn decoder(variant: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/data/unetr/{variant}_decoder.safetensors"))
}

/// `segment SCAN --model BUNDLE --semantic --axis 2 -o OUT` (the server's slicing axis), which must succeed.
pub(crate) fn label_along_k(scan: &Path, bundle: &Path, out: &Path) {
    let run = medico(&[
        "segment",
        scan.to_str().unwrap(),
        "--model",
        bundle.to_str().unwrap(),
        "--semantic",
        "--axis",
        "2",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
}

/// The small reference model exported with the 3-class bilinear reference decoder.
pub(crate) fn semantic_bundle(dir: &Path) -> PathBuf {
    let out = dir.join("semantic-bundle");
    let decoder = decoder("bilinear");
    let run = export_small_to(
        &out,
        &[
            "--segmentation-decoder",
            decoder.to_str().unwrap(),
            "--classes",
            "grey matter,white matter",
        ],
    );
    assert!(run.status.success(), "{}", text(&run.stderr));
    out
}

fn scan() -> PathBuf {
    shared().join("data/nifti_odd/anatomical.nii")
}

fn json(stdout: &[u8]) -> Value {
    serde_json::from_slice(stdout).unwrap_or_else(|e| panic!("{e}: {}", text(stdout)))
}

#[test]
fn semantic_labels_land_on_the_input_grid_and_reuse_interactive_embeddings() {
    let dir = scratch("semantic");
    let bundle = semantic_bundle(&dir);
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(bundle.join("model.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["semantic"]["classes"],
        serde_json::json!(["grey matter", "white matter"])
    );
    assert_eq!(manifest["graphs"]["segmentation_decoder"], "segmentation_decoder.onnx");
    let cache = dir.join("cache");
    let (bundle_arg, cache_arg, input) = (bundle.to_str().unwrap(), cache.to_str().unwrap(), scan());

    // Interactive use first: every axial slice encoded into the cache.
    let mask = dir.join("mask.nii.gz");
    let interactive = medico(&[
        "segment",
        input.to_str().unwrap(),
        "--model",
        bundle_arg,
        "--box",
        "8,8,25,30",
        "--propagate",
        "--precompute",
        "--cache-dir",
        cache_arg,
        "-o",
        mask.to_str().unwrap(),
    ]);
    assert!(interactive.status.success(), "{}", text(&interactive.stderr));

    let labels = dir.join("labels.nii.gz");
    let run = medico(&[
        "segment",
        input.to_str().unwrap(),
        "--model",
        bundle_arg,
        "--semantic",
        "--cache-dir",
        cache_arg,
        "--json",
        "-o",
        labels.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let report = json(&run.stdout);
    assert_eq!(report["slices"], 25);
    assert_eq!(report["encoder_runs"], 0, "the interactive run's embeddings are reused");
    assert_eq!(report["cache_hits"], 25);
    let classes = report["classes"].as_array().unwrap();
    let names: Vec<&str> = classes.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["background", "grey matter", "white matter"]);

    let written = ReaderOptions::new().read_file(&labels).unwrap();
    let original = ReaderOptions::new().read_file(&input).unwrap();
    let (a, b) = (written.header(), original.header());
    assert_eq!(a.dim, b.dim);
    assert_eq!((a.srow_x, a.srow_y, a.srow_z), (b.srow_x, b.srow_y, b.srow_z));
    assert_eq!(
        (a.qform_code, a.sform_code, a.pixdim),
        (b.qform_code, b.sform_code, b.pixdim)
    );
    let values = written.into_volume().into_ndarray::<u8>().unwrap();
    for (label, class) in classes.iter().enumerate() {
        let counted = values.iter().filter(|&&v| v as usize == label).count() as u64;
        assert_eq!(Some(counted), class["voxels"].as_u64(), "class {label}");
    }
    assert_eq!(values.len(), 33 * 41 * 25);
    assert!(values.iter().all(|&v| v <= 2));
}

#[test]
fn a_bundle_without_a_semantic_head_and_a_dicom_seg_label_map_are_refused() {
    let dir = scratch("semantic-refused");
    let out = dir.join("labels.nii.gz");
    let input = scan();
    let run = medico(&[
        "segment",
        input.to_str().unwrap(),
        "--model",
        "medico-tiny",
        "--semantic",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(4), "{}", text(&run.stderr));
    let error = text(&run.stderr);
    assert!(
        error.contains("no semantic segmentation head") && error.contains("segmentation_decoder"),
        "{error}"
    );
    assert!(!out.exists());

    let dcm = dir.join("labels.dcm");
    let run = medico(&[
        "segment",
        input.to_str().unwrap(),
        "--model",
        "medico-tiny",
        "--semantic",
        "-o",
        dcm.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run.stderr));
    assert!(text(&run.stderr).contains("NIfTI"), "{}", text(&run.stderr));

    let run = medico(&[
        "segment",
        input.to_str().unwrap(),
        "--semantic",
        "--box",
        "1,1,5,5",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        run.status.code(),
        Some(2),
        "prompts and --semantic conflict: {}",
        text(&run.stderr)
    );
}

#[test]
fn a_decoder_for_another_embedding_width_is_refused_at_export() {
    let dir = scratch("semantic-mismatch");
    let out = dir.join("bundle");
    let decoder = decoder("conv_transpose");
    let run = export_small_to(&out, &["--segmentation-decoder", decoder.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(4), "{}", text(&run.stderr));
    let error = text(&run.stderr);
    assert!(error.contains("64-channel") && error.contains("256"), "{error}");
    assert!(!out.exists(), "nothing half-written");
}

#[test]
fn eval_semantic_reports_dice_per_class_beside_one_box_per_class() {
    let dir = scratch("semantic-eval");
    let bundle = semantic_bundle(&dir);
    let volumes = shared().join("data/volumes");
    let data = serde_json::json!({
        "classes": ["grey matter", "white matter"],
        "volumes": [{"image": volumes.join("mni152_t1.nii.gz"), "labels": volumes.join("mni152_tissue_labels.nii.gz"),
                     "axis": 2, "slice_step": 60}]
    });
    let data_path = dir.join("data.json");
    std::fs::write(&data_path, data.to_string()).unwrap();
    let out = dir.join("results");
    let run = medico(&[
        "eval",
        "semantic",
        "--model",
        &format!("random={}", bundle.display()),
        "--data",
        data_path.to_str().unwrap(),
        "--boxes",
        "--cache-dir",
        dir.join("cache").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let csv = std::fs::read_to_string(out.join("results_semantic.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 4, "2 methods x 2 classes: {csv}");
    assert!(rows
        .iter()
        .any(|r| r.starts_with("random,semantic,mni152_t1.nii.gz,2,grey matter,")));
    assert!(rows
        .iter()
        .any(|r| r.starts_with("random,box per class,mni152_t1.nii.gz,2,white matter,")));
    for row in rows {
        let dice: f64 = row.split(',').nth(5).unwrap().parse().unwrap();
        assert!((0.0..=1.0).contains(&dice), "{row}");
    }
    assert!(text(&run.stdout).contains("mean over volumes"));
}

#[test]
fn the_server_offers_the_head_as_a_segmentation_model_that_labels_as_segment_semantic_does() {
    let dir = scratch("semantic-serve");
    let bundle = semantic_bundle(&dir);
    let server = crate::serve_cli::Server::start_model(bundle.to_str().unwrap(), &["--quiet"]);
    let get = |path: &str| {
        crate::serve_cli::http(
            server.port,
            &crate::serve_cli::head("GET", path, None, "text/plain", 0),
            b"",
            false,
        )
    };
    let info: Value = serde_json::from_str(&get("/info/").1).unwrap();
    let labels_model = &info["models"]["semantic-bundle-labels"];
    assert_eq!(labels_model["type"], "segmentation", "{info}");
    assert_eq!(
        labels_model["labels"],
        serde_json::json!({"grey matter": 1, "white matter": 2})
    );
    assert!(info["models"].get("medico-tiny-labels").is_none());

    let (ct, body) = crate::serve_cli::multipart("files", "anatomical.nii", &std::fs::read(scan()).unwrap(), None);
    let (status, created) = crate::serve_cli::http(
        server.port,
        &crate::serve_cli::head("PUT", "/session/", None, &ct, body.len()),
        &body,
        false,
    );
    assert_eq!(status, 200, "{created}");
    let id = serde_json::from_str::<Value>(&created).unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    // The labels as a file, and the reply's params (label names, voxels) as JSON.
    let (ct, body) = crate::serve_cli::multipart("label", "x.bin", b"", Some("{}"));
    let path = format!("/infer/semantic-bundle-labels?session_id={id}&output=json");
    let (status, params) = crate::serve_cli::http(
        server.port,
        &crate::serve_cli::head("POST", &path, None, &ct, body.len()),
        &body,
        false,
    );
    assert_eq!(status, 200, "{params}");
    let params: Value = serde_json::from_str(&params).unwrap();
    assert_eq!(params["label_names"]["white matter"], 2);
    let served = dir.join("served.nii.gz");
    let path = format!("/infer/semantic-bundle-labels?session_id={id}&output=image");
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    std::io::Write::write_all(
        &mut stream,
        crate::serve_cli::head("POST", &path, None, &ct, body.len()).as_bytes(),
    )
    .unwrap();
    std::io::Write::write_all(&mut stream, &body).unwrap();
    let mut response = Vec::new();
    std::io::Read::read_to_end(&mut stream, &mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(response.starts_with(b"HTTP/1.1 200"), "{}", text(&response[..split]));
    std::fs::write(&served, &response[split + 4..]).unwrap();

    let cli = dir.join("cli.nii.gz");
    label_along_k(&scan(), &bundle, &cli);
    let read = |path: &Path| {
        ReaderOptions::new()
            .read_file(path)
            .unwrap()
            .into_volume()
            .into_ndarray::<u8>()
            .unwrap()
    };
    let (from_server, from_cli) = (read(&served), read(&cli));
    assert!(from_cli.iter().any(|&v| v > 0), "the CLI labelled nothing");
    assert_eq!(
        from_server, from_cli,
        "the server's labels differ from segment --semantic's"
    );
    assert_eq!(
        params["voxels"].as_u64().unwrap() as usize,
        from_cli.iter().filter(|&&v| v > 0).count()
    );
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}

/// A label map of a DICOM series as an RT Structure Set: one ROI per class with voxels, named after the
/// class, that fills back to the label map's voxels of that class.
#[test]
fn semantic_labels_of_a_dicom_series_become_one_roi_per_class() {
    let dir = scratch("semantic-rtstruct");
    let bundle = semantic_bundle(&dir);
    let series = shared().join("data/dicom/series_ct5n");
    let (labels, contours) = (dir.join("labels.nii.gz"), dir.join("labels.dcm"));
    for (out, extra) in [(&labels, None), (&contours, Some("rtstruct"))] {
        let mut args = vec![
            "segment",
            series.to_str().unwrap(),
            "--model",
            bundle.to_str().unwrap(),
            "--semantic",
            "-o",
            out.to_str().unwrap(),
        ];
        if let Some(format) = extra {
            args.extend(["--format", format]);
        }
        let run = medico(&args);
        assert!(run.status.success(), "{}", text(&run.stderr));
    }
    let volume = medico_io::dicom_io::read_dicom(&series).unwrap();
    let source = medico_io::dicom_seg::SourceSeries::read(&series).unwrap();
    let set = medico_io::rtstruct::read_structure_set(&contours).unwrap();
    let map = medico_io::nifti_io::read_nifti(&labels, None).unwrap();
    let head = medico_bundle::Bundle::open(&bundle).unwrap().manifest.semantic.unwrap();
    assert!(!set.rois.is_empty());
    for roi in &set.rois {
        let class = head
            .classes
            .iter()
            .position(|c| c == &roi.name)
            .expect("ROIs are named after classes")
            + 1;
        let filled = medico_io::rtstruct::rasterise_roi(&set, roi, &volume, Some(&source)).unwrap();
        let expected = map.data.mapv(|v| u8::from(v as usize == class));
        assert_eq!(filled.mask, expected, "ROI {}", roi.name);
    }
}
