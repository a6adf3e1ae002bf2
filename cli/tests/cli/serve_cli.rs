//! `medico-cli serve` driven by MONAI Label's own clients (the `monailabel` 0.8.5 wheel's
//! `MONAILabelClient` and 3D Slicer's module's client, in the venv of scripts/setup.sh): the masks they get
//! are `medico-cli segment`'s on the same prompts, voxel for voxel, on the volume's grid; a load of 8
//! clients; bad requests answered with a 4xx and a message; shutdown on SIGTERM.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use flate2::read::GzDecoder;
use nifti::{IntoNdArray, NiftiObject, ReaderOptions};
use serde_json::Value;

use crate::common::{export_small, medico, scratch, shared, text};

/// A running `medico-cli serve`, stopped (SIGTERM) when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) port: u16,
}

impl Server {
    pub(crate) fn start(extra: &[&str]) -> Self {
        Self::start_model("medico-tiny", extra)
    }

    pub(crate) fn start_model(model: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_medico-cli"))
            .args(["serve", "--model", model, "--port", "0", "--json", "--threads", "2"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start medico-cli serve");
        let mut line = String::new();
        let mut stdout = child.stdout.take().unwrap();
        let mut byte = [0u8; 1];
        while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
            line.push(byte[0] as char);
        }
        let started: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).ok();
            panic!("startup line {line:?}: {e}; stderr: {err}")
        });
        assert_eq!(started["event"], "listening");
        assert!(model.ends_with(started["models"][0].as_str().unwrap()), "{started}");
        Self {
            port: started["port"].as_u64().unwrap() as u16,
            child,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGTERM, then the exit status and standard error.
    pub(crate) fn stop(mut self) -> (std::process::ExitStatus, String) {
        terminate(&self.child);
        let status = self.child.wait().unwrap();
        let mut err = String::new();
        self.child.stderr.take().unwrap().read_to_string(&mut err).ok();
        (status, err)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub(crate) fn terminate(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// The Python of the MONAI Label client venv (scripts/setup.sh).
fn client_python() -> PathBuf {
    let venv = std::env::var_os("MEDICO_MONAILABEL_CLIENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.deps/monailabel-client"));
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{}: MONAI Label's client venv is missing; run `bash scripts/setup.sh`",
        python.display()
    );
    python
}

/// Runs the client driver (`cli/tests/clients/monailabel_clients.py`) and parses its report.
pub(crate) fn drive(args: &[&str]) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/monailabel_clients.py");
    let run = Command::new(client_python()).arg(script).args(args).output().unwrap();
    assert!(run.status.success(), "client driver failed: {}", text(&run.stderr));
    serde_json::from_str(&text(&run.stdout)).unwrap_or_else(|e| panic!("{e}: {}", text(&run.stdout)))
}

pub(crate) fn volume_path() -> PathBuf {
    shared().join("data/volumes/mni152_t1.nii.gz")
}

/// `medico-cli segment` on slice 90 along axis 2 with the given prompt arguments (propagation options
/// included); its mask file.
fn segment(dir: &Path, name: &str, prompts: &[&str]) -> PathBuf {
    let out = dir.join(format!("{name}.nii.gz"));
    let volume = volume_path();
    let mut args = vec![
        "segment",
        volume.to_str().unwrap(),
        "--model",
        "medico-tiny",
        "--axis",
        "2",
        "--slice",
        "90",
        "--threads",
        "2",
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(prompts);
    let run = medico(&args);
    assert!(run.status.success(), "{}", text(&run.stderr));
    out
}

fn read_nifti(path: &Path) -> (nifti::NiftiHeader, ndarray::ArrayD<u8>) {
    let object = ReaderOptions::new().read_file(path).unwrap();
    let header = object.header().clone();
    (header, object.into_volume().into_ndarray::<u8>().unwrap())
}

/// A NRRD file's header fields and voxels (gzip, Fortran order).
fn read_nrrd(path: &Path) -> (std::collections::HashMap<String, String>, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let split = bytes.windows(2).position(|w| w == b"\n\n").expect("NRRD header end");
    let header = std::str::from_utf8(&bytes[..split]).unwrap();
    assert!(header.starts_with("NRRD000"), "{header}");
    let fields = header
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut voxels = Vec::new();
    GzDecoder::new(&bytes[split + 2..]).read_to_end(&mut voxels).unwrap();
    (fields, voxels)
}

#[test]
fn monai_label_clients_get_the_masks_medico_segment_writes() {
    let dir = scratch("serve-clients");
    let server = Server::start(&[]);
    let report = drive(&[
        "roundtrip",
        &server.url(),
        volume_path().to_str().unwrap(),
        dir.to_str().unwrap(),
    ]);
    assert_eq!(report["monailabel_version"], "0.8.5");
    assert!(report["slicer_client"]
        .as_str()
        .unwrap()
        .ends_with("MONAILabelLib/client.py"));
    let model = &report["info"]["models"]["medico-tiny"];
    assert_eq!(
        (model["type"].as_str(), model["dimension"].as_u64()),
        (Some("deepgrow"), Some(2))
    );
    assert_eq!(report["auth_enabled"], false);
    assert_eq!(report["session"]["meta"]["shape"], serde_json::json!([197, 233, 189]));
    assert_eq!(report["deleted_session_status"], 404);

    // The same prompts on the command line: clicks at (98, 130) + and (40, 40) -, and the Slicer ROI
    // [140, 60, 50, 200, ...] = i 60..=140, j 50..=200, i.e. the box 60,50,141,201 (far corner exclusive).
    let clicks = segment(&dir, "cli-clicks", &["--point", "98,130,1", "--point", "40,40,0"]);
    let boxed = segment(&dir, "cli-box", &["--box", "60,50,141,201"]);
    let (input_header, _) = read_nifti(&volume_path());
    for (key, expected) in [("clicks_nifti", &clicks), ("box_nifti", &boxed)] {
        let (want_header, want) = read_nifti(expected);
        let served = PathBuf::from(report[key]["file"].as_str().unwrap());
        let (header, got) = read_nifti(&served);
        assert_eq!(got.shape(), [197, 233, 189], "{key}");
        assert_eq!(got, want, "{key}: the served mask differs from medico-cli segment's");
        assert!(got.iter().filter(|&&v| v == 1).count() > 100, "{key}: empty mask");
        assert_eq!(header, want_header, "{key}");
        assert_eq!(
            (header.srow_x, header.srow_y, header.srow_z),
            (input_header.srow_x, input_header.srow_y, input_header.srow_z),
            "{key}: not on the input's grid"
        );
        assert_eq!(report[key]["params"]["slice"], 90);
    }
    assert_eq!(report["clicks_nifti"]["params"]["label_names"]["brain"], 1);
    // The Slicer module's requests: NRRD in LPS with the input's grid, same voxels.
    for (key, expected) in [("clicks_nrrd", &clicks), ("box_nrrd", &boxed)] {
        let (_, want) = read_nifti(expected);
        let (fields, voxels) = read_nrrd(Path::new(report[key]["file"].as_str().unwrap()));
        assert_eq!(fields["sizes"], "197 233 189");
        assert_eq!(fields["type"], "uint8");
        assert_eq!(fields["space"], "left-posterior-superior");
        let origin = format!(
            "({},{},{})",
            -(input_header.srow_x[3] as f64) + 0.0,
            -(input_header.srow_y[3] as f64) + 0.0,
            input_header.srow_z[3] as f64
        );
        assert_eq!(fields["space origin"], origin);
        let fortran: Vec<u8> = want.t().iter().copied().collect();
        assert_eq!(
            voxels, fortran,
            "{key}: the NRRD voxels differ from medico-cli segment's mask"
        );
        assert_eq!(report[key]["params"]["label_names"]["brain"], 1);
    }
    // 3D: the same prompts, then propagation (the model's defaults; the Slicer ROI's k range 85..=95 bounds
    // it), as `segment --propagate` does.
    let clicks_3d = segment(&dir, "cli-clicks-3d", &["--point", "98,130,1", "--propagate"]);
    let box_3d = segment(
        &dir,
        "cli-box-3d",
        &[
            "--box",
            "60,50,141,201",
            "--propagate",
            "--stop-lower",
            "85",
            "--stop-upper",
            "95",
        ],
    );
    let (_, want) = read_nifti(&clicks_3d);
    let (_, got) = read_nifti(Path::new(report["clicks_3d"]["file"].as_str().unwrap()));
    assert_eq!(
        got, want,
        "3D clicks: the served mask differs from segment --propagate's"
    );
    let slices: Vec<usize> = (0..189)
        .filter(|&k| got.iter().skip(k).step_by(189).any(|&v| v == 1))
        .collect();
    assert!(slices.len() > 1, "3D: no propagation ({slices:?})");
    let (_, want) = read_nifti(&box_3d);
    let (_, voxels) = read_nrrd(Path::new(report["box_3d_nrrd"]["file"].as_str().unwrap()));
    let fortran: Vec<u8> = want.t().iter().copied().collect();
    assert_eq!(
        voxels, fortran,
        "3D box: the served mask differs from segment --propagate's"
    );
    assert!(fortran.contains(&1));
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("POST /infer/medico-tiny 200"), "request log: {log}");
    assert!(log.contains("POST /infer/medico-tiny-3d 200"), "request log: {log}");
}

#[test]
fn eight_clients_at_once_all_get_answers_in_bounded_memory() {
    let dir = scratch("serve-load");
    let server = Server::start(&["--quiet", "--max-sessions", "8", "--max-embeddings", "16"]);
    let pid = server.child.id().to_string();
    let report = drive(&[
        "load",
        &server.url(),
        volume_path().to_str().unwrap(),
        dir.to_str().unwrap(),
        "8",
        "50",
        &pid,
    ]);
    println!("load: {report}");
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    assert_eq!(report["completed"], 400);
    // 8 sessions of a 197x233x189 float volume (35 MB each) + 16 embeddings (4 MB) + the engines.
    let peak = report["peak_rss_mb"].as_f64().unwrap();
    assert!(peak < 1500.0, "peak RSS {peak} MB");
    let (status, _) = server.stop();
    assert!(status.success());
}

/// One raw HTTP/1.1 request; the status and the body.
pub(crate) fn http(port: u16, head: &str, body: &[u8], close_early: bool) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    if close_early {
        stream.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A multipart/form-data body with one file field and an optional params field.
pub(crate) fn multipart(file_field: &str, name: &str, content: &[u8], params: Option<&str>) -> (String, Vec<u8>) {
    let boundary = "medicotestboundary";
    let mut body = Vec::new();
    if let Some(p) = params {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"params\"\r\n\r\n{p}\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{file_field}\"; filename=\"{name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A request head with `Host: localhost` and `Connection: close`.
pub(crate) fn head(method: &str, path: &str, key: Option<&str>, content_type: &str, length: usize) -> String {
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}Content-Type: {content_type}\r\n\
         Content-Length: {length}\r\n\r\n"
    )
}

#[test]
fn bad_requests_get_a_4xx_with_a_message_and_sigterm_stops_cleanly() {
    let key = "k3y-for-tests";
    let server = Server::start(&["--api-key", key, "--max-upload-mb", "4", "--max-megavoxels", "9"]);
    let port = server.port;
    let detail = |(status, body): (u16, String)| -> (u16, String) {
        let json: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{status}: {body:?}: {e}"));
        (status, json["detail"].as_str().unwrap_or_default().to_string())
    };
    let get = |path: &str, key: Option<&str>| http(port, &head("GET", path, key, "text/plain", 0), b"", false);

    // The key: required everywhere but /auth/, which says it is.
    let (status, message) = detail(get("/info/", None));
    assert_eq!(status, 401);
    assert!(message.contains("API key"), "{message}");
    assert_eq!(detail(get("/info/", Some("wrong"))).0, 401);
    let (status, body) = get("/auth/", None);
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["enabled"], true);
    assert_eq!(get("/info/", Some(key)).0, 200);

    // Unknown session, model and route.
    let (status, message) = detail(get("/session/0123", Some(key)));
    assert_eq!(status, 404);
    assert!(message.contains("session '0123' not found"), "{message}");
    let (ct, body) = multipart("label", "x.bin", b"", Some(r#"{"foreground": [[1, 2, 3]]}"#));
    let post = |path: &str, ct: &str, body: &[u8]| {
        detail(http(port, &head("POST", path, Some(key), ct, body.len()), body, false))
    };
    let (status, message) = post("/infer/medico-tiny?session_id=nope", &ct, &body);
    assert_eq!(status, 404);
    assert!(message.contains("session 'nope' not found"), "{message}");
    assert_eq!(post("/infer/no-such-model?session_id=x", &ct, &body).0, 404);
    let (status, message) = detail(get("/datastore/?output=all", Some(key)));
    assert_eq!(status, 404);
    assert!(message.contains("not served"), "{message}");

    // Uploads: truncated, not an image, too large, then a good one.
    let volume = std::fs::read(volume_path()).unwrap();
    let (ct, body) = multipart("files", "scan.nii.gz", &volume, None);
    let (status, message) = detail(http(
        port,
        &head("PUT", "/session/", Some(key), &ct, body.len()),
        &body[..1000],
        true,
    ));
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("truncated"), "{message}");
    let (ct_bad, garbage) = multipart("files", "scan.nii.gz", b"not a nifti file at all", None);
    let (status, message) = detail(http(
        port,
        &head("PUT", "/session/", Some(key), &ct_bad, garbage.len()),
        &garbage,
        false,
    ));
    assert_eq!(status, 422);
    assert!(message.contains("scan.nii.gz"), "{message}");
    let big = vec![0u8; 5 << 20];
    let (ct_big, body_big) = multipart("files", "big.nii", &big, None);
    let (status, _) = http(
        port,
        &head("PUT", "/session/", Some(key), &ct_big, body_big.len()),
        &body_big,
        false,
    );
    assert_eq!(status, 413);
    // A ~100 kB gzip of a NIfTI declaring 100 Mi uint8 voxels, all present (limits: 4 MB of upload, 9 Mi
    // voxels): refused from its header, before the data is inflated.
    let bomb = {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder
            .write_all(&crate::serve_attacks::nifti_header([1024, 1024, 100], 2, 8))
            .unwrap();
        encoder.write_all(&vec![0u8; 100 << 20]).unwrap();
        encoder.finish().unwrap()
    };
    let (ct_bomb, body_bomb) = multipart("files", "bomb.nii.gz", &bomb, None);
    let (status, message) = detail(http(
        port,
        &head("PUT", "/session/", Some(key), &ct_bomb, body_bomb.len()),
        &body_bomb,
        false,
    ));
    assert_eq!(status, 413, "{message}");
    assert!(
        message.contains("bomb.nii.gz") && message.contains("declares 104857600 voxels"),
        "{message}"
    );
    let (status, body_ok) = http(
        port,
        &head("PUT", "/session/", Some(key), &ct, body.len()),
        &body,
        false,
    );
    assert_eq!(status, 200, "{body_ok}");
    let session: Value = serde_json::from_str(&body_ok).unwrap();
    let id = session["session_id"].as_str().unwrap();

    // Prompts outside the volume, malformed params, no prompt.
    let infer = format!("/infer/medico-tiny?session_id={id}");
    for (params, expect) in [
        (r#"{"foreground": [[500, 2, 3]]}"#, "outside the 197x233x189 volume"),
        (r#"{"roi": [1, 2, 3, 4]}"#, "expected 6"),
        (r#"{"foreground": "x"}"#, "params"),
        (r#"{"label": "x"}"#, "no prompt"),
        (r#"{"foreground": [[5, 5, 5]], "result_extension": ".png"}"#, ".png"),
    ] {
        let (ct, body) = multipart("label", "x.bin", b"", Some(params));
        let (status, message) = post(&infer, &ct, &body);
        assert!((400..500).contains(&status), "{params}: {status} {message}");
        assert!(message.contains(expect), "{params}: {message}");
    }
    // A good request still works after all that.
    let (ct, body) = multipart("label", "x.bin", b"", Some(r#"{"foreground": [[98, 130, 90]]}"#));
    let (status, _) = http(
        port,
        &head("POST", &format!("{infer}&output=json"), Some(key), &ct, body.len()),
        &body,
        false,
    );
    assert_eq!(status, 200);

    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("shut down"), "{log}");
}

/// Asserts that the DICOM SEG `seg` maps onto `series` exactly as `medico-cli segment`'s SEG of the box
/// 2,2,14,14 on slice 2 with `bundle` does (and that the CLI's is not empty).
pub(crate) fn assert_seg_is_the_clis(seg: &Path, series: &Path, bundle: &Path, dir: &Path) {
    let cli = dir.join("cli.dcm");
    let run = medico(&[
        "segment",
        series.to_str().unwrap(),
        "--model",
        bundle.to_str().unwrap(),
        "--axis",
        "2",
        "--slice",
        "2",
        "--box",
        "2,2,14,14",
        "-o",
        cli.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let volume = medico_io::dicom_io::read_dicom(series).unwrap();
    let from_seg = medico_io::dicom_seg::read_dicom_seg(seg, &volume).unwrap();
    let from_cli = medico_io::dicom_seg::read_dicom_seg(&cli, &volume).unwrap();
    assert!(from_cli.iter().any(|&v| v == 1), "the CLI's SEG is empty");
    assert_eq!(
        from_seg,
        from_cli,
        "{} differs from medico-cli segment's SEG",
        seg.display()
    );
}

#[test]
fn a_dicom_series_uploaded_as_a_zip_comes_back_as_the_dicom_seg_segment_writes() {
    let dir = scratch("serve-dicom-seg");
    let bundle = export_small(&dir);
    let series = shared().join("data/dicom/series_ct5n");
    let zipped = crate::common::zip_series(&series);
    let server = Server::start_model(bundle.to_str().unwrap(), &[]);
    let (ct, body) = multipart("files", "series.zip", &zipped, None);
    let (status, created) = http(
        server.port,
        &head("PUT", "/session/", None, &ct, body.len()),
        &body,
        false,
    );
    assert_eq!(status, 200, "{created}");
    let created: Value = serde_json::from_str(&created).unwrap();
    assert_eq!(created["session_info"]["meta"]["shape"], serde_json::json!([16, 16, 5]));
    let id = created["session_id"].as_str().unwrap();
    // Slicer's roi [13, 2, 2, 13, 2, 2] = the box 2,2,14,14 on slice 2, as a SEG labelled `label`: the reply's
    // head and body.
    let result_as = |output: &str, label: &str| {
        let path = format!("/infer/bundle?session_id={id}&output={output}");
        let params = serde_json::json!({"roi": [13, 2, 2, 13, 2, 2], "label": label}).to_string();
        let (ct, body) = multipart("label", "x.bin", b"", Some(&params));
        let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        stream
            .write_all(head("POST", &path, None, &ct, body.len()).as_bytes())
            .unwrap();
        stream.write_all(&body).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head_text = String::from_utf8_lossy(&response[..split]).to_string();
        (head_text, response[split + 4..].to_vec())
    };
    let seg_with_label = |label: &str| result_as("dicom_seg", label);
    let (head_text, seg) = seg_with_label("tumour");
    assert!(head_text.starts_with("HTTP/1.1 200"), "{head_text}");
    assert!(
        head_text.to_lowercase().contains("content-type: application/dicom"),
        "{head_text}"
    );
    let served = dir.join("served.dcm");
    std::fs::write(&served, &seg).unwrap();

    assert_seg_is_the_clis(&served, &series, &bundle, &dir);
    // The same mask as an RT Structure Set: one ROI named by the label, its contours filling the SEG's voxels.
    let (head_text, rtstruct) = result_as("rtstruct", "tumour");
    assert!(head_text.starts_with("HTTP/1.1 200"), "{head_text}");
    let contours = dir.join("served-rtstruct.dcm");
    std::fs::write(&contours, &rtstruct).unwrap();
    let set = medico_io::rtstruct::read_structure_set(&contours).unwrap();
    assert_eq!(set.rois[0].name, "tumour");
    let volume = medico_io::dicom_io::read_dicom(&series).unwrap();
    let source = medico_io::dicom_seg::SourceSeries::read(&series).unwrap();
    let filled = medico_io::rtstruct::rasterise_roi(&set, &set.rois[0], &volume, Some(&source)).unwrap();
    assert_eq!(
        filled.mask,
        medico_io::dicom_seg::read_dicom_seg(&served, &volume).unwrap()
    );
    // The structure set sent back as MONAI Label's `label` file: its ROI on the clicked slice starts and the
    // click corrects it (a different mask from the click alone); a label file that is no segmentation is a
    // 422 naming the client's file.
    let voxels_with_label = |name: &str, content: &[u8]| {
        let params = serde_json::json!({"foreground": [[8, 8, 2]], "label": "tumour"}).to_string();
        let (ct, body) = multipart("label", name, content, Some(&params));
        let path = format!("/infer/bundle?session_id={id}&output=json");
        http(server.port, &head("POST", &path, None, &ct, body.len()), &body, false)
    };
    let (status, alone) = voxels_with_label("x.bin", b"");
    assert_eq!(status, 200, "{alone}");
    let (status, continued) = voxels_with_label("contours.dcm", &rtstruct);
    assert_eq!(status, 200, "{continued}");
    let voxels = |reply: &str| {
        serde_json::from_str::<Value>(reply).unwrap()["voxels"]
            .as_u64()
            .unwrap()
    };
    assert!(voxels(&continued) > 0);
    assert_ne!(voxels(&continued), voxels(&alone), "the structure set's mask started");
    let (status, message) = voxels_with_label("junk.nii.gz", b"not a segmentation");
    assert_eq!(status, 422, "{message}");
    assert!(
        message.contains("label file junk.nii.gz") && !message.contains("/tmp"),
        "{message}"
    );
    // Labels: any language is written (UTF-8), one that is not a DICOM LO value is refused before any work.
    let (head_text, seg) = seg_with_label("肝臓 Läsion");
    assert!(head_text.starts_with("HTTP/1.1 200"), "{head_text}");
    let labelled = dir.join("labelled.dcm");
    std::fs::write(&labelled, &seg).unwrap();
    assert_eq!(crate::common::seg_label(&labelled), "肝臓 Läsion");
    for (label, expect) in [("x".repeat(5000), "5000 characters"), ("a\\b".to_string(), "backslash")] {
        let (head_text, body) = seg_with_label(&label);
        let message = String::from_utf8_lossy(&body).to_string();
        assert!(head_text.starts_with("HTTP/1.1 422"), "{head_text}: {message}");
        assert!(message.contains(expect), "{message}");
    }
    // A NIfTI session cannot give a SEG.
    let volume_bytes = std::fs::read(volume_path()).unwrap();
    let (ct, body) = multipart("files", "scan.nii.gz", &volume_bytes, None);
    let (_, created) = http(
        server.port,
        &head("PUT", "/session/", None, &ct, body.len()),
        &body,
        false,
    );
    let id = serde_json::from_str::<Value>(&created).unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (ct, body) = multipart("label", "x.bin", b"", Some(r#"{"foreground": [[98, 130, 90]]}"#));
    let path = format!("/infer/bundle?session_id={id}&output=dicom_seg");
    let (status, message) = http(server.port, &head("POST", &path, None, &ct, body.len()), &body, false);
    assert_eq!(status, 422);
    assert!(message.contains("not DICOM"), "{message}");
}
