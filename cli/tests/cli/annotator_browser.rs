//! The web annotator (`web/`, served by `medico-cli serve` at `/`) driven like a user in headless Chromium
//! (Debian's `chromium` through `playwright-core`, both installed by scripts/setup.sh) by
//! `web/tests/drive.mjs`: the mask the page shows after a real mouse box equals `medico-cli segment`'s on the
//! same prompt voxel for voxel, a negative click changes it exactly as on the CLI, propagation equals
//! `segment --propagate`, the downloaded NIfTI lies on the scan's grid, and a DICOM series opened in the page
//! gives the DICOM SEG the CLI writes, and the scan opened from the server's `--data` folder gives the same mask,
//! saved beside it. The page's click latency is printed beside MONAI Label's client's. The data folder's
//! endpoints are also tested without a browser, against names that try to leave the folder.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use nifti::{IntoNdArray, NiftiObject, ReaderOptions};
use serde_json::Value;

use crate::common::{medico, scratch, shared, text, zip_series};
use crate::serve_cli::Server;

/// The demo scan the README segments.
fn scan() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/mni152_t1.nii.gz")
}

/// The voxels of a NIfTI mask or label map holding `value`, as flat indices `i + ni * (j + nj * k)`.
fn voxels_valued(path: &Path, value: u8) -> BTreeSet<u64> {
    let volume = ReaderOptions::new()
        .read_file(path)
        .unwrap()
        .into_volume()
        .into_ndarray::<u8>()
        .unwrap();
    let shape = volume.shape().to_vec();
    volume
        .indexed_iter()
        .filter(|(_, &v)| v == value)
        .map(|(index, _)| (index[0] + shape[0] * (index[1] + shape[1] * index[2])) as u64)
        .collect()
}

/// The 1-voxels of a NIfTI mask.
fn ones_of_nifti(path: &Path) -> BTreeSet<u64> {
    voxels_valued(path, 1)
}

/// The 1-voxels the page reported (drive.mjs's mask file).
fn ones_of_page(path: &Path) -> BTreeSet<u64> {
    let json: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    json["ones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

/// `medico-cli segment` of the scan on axial slice 82 with medico-tiny and `extra` arguments; its mask.
fn cli_mask(dir: &Path, name: &str, extra: &[&str]) -> BTreeSet<u64> {
    let out = dir.join(format!("{name}.nii.gz"));
    let scan = scan();
    let mut args = vec![
        "segment",
        scan.to_str().unwrap(),
        "--model",
        "medico-tiny",
        "--plane",
        "axial",
        "--slice",
        "82",
        "--box",
        "27,28,170,208",
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let run = medico(&args);
    assert!(run.status.success(), "{}", text(&run.stderr));
    ones_of_nifti(&out)
}

/// Asserts that the page's and the CLI's masks hold the same voxels (the difference's size and first voxels
/// when not).
fn same_voxels(what: &str, page: &BTreeSet<u64>, cli: &BTreeSet<u64>) {
    let only_page: Vec<_> = page.difference(cli).take(5).collect();
    let only_cli: Vec<_> = cli.difference(page).take(5).collect();
    assert!(
        only_page.is_empty() && only_cli.is_empty(),
        "{what}: the page shows {} voxels, the CLI {}; only the page's: {} (first {only_page:?}), only the CLI's: {} \
         (first {only_cli:?})",
        page.len(),
        cli.len(),
        page.difference(cli).count(),
        cli.difference(page).count()
    );
}

#[test]
fn the_annotator_in_a_browser_gives_the_masks_the_cli_gives() {
    let dir = scratch("annotator-browser");
    // medico-tiny for the MNI152 scan; the `small` reference model with a semantic head for the small CT
    // series (medico-tiny, a brain MRI model, finds nothing on it) and for labelling the scan.
    let bundle = crate::semantic_cli::semantic_bundle(&dir);
    // The scan also lies in the server's data folder, opened from the page's list and saved into.
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(scan(), data.join("mni152_t1.nii.gz")).unwrap();
    let server = Server::start(&[
        "--quiet",
        "--model",
        bundle.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    let driver = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../web/tests/drive.mjs");
    let out = dir.join("page");
    let series = shared().join("data/dicom/series_ct5n");
    let zip = dir.join("series.zip");
    std::fs::write(&zip, zip_series(&series)).unwrap();
    let run = Command::new("node")
        .arg(&driver)
        .arg(format!("{}/", server.url()))
        .arg(scan())
        .arg(&out)
        .arg(&zip)
        .env("MODEL", "medico-tiny")
        .env("DICOM_MODEL", "semantic-bundle")
        .env("LABELS_MODEL", "semantic-bundle")
        .env("DATA_SCAN", "mni152_t1.nii.gz")
        .output()
        .expect("node runs (scripts/setup.sh installs the annotator's packages and chromium)");
    println!("{}", text(&run.stdout));
    assert!(
        run.status.success(),
        "drive.mjs failed: {}{}",
        text(&run.stdout),
        text(&run.stderr)
    );

    let page_box = ones_of_page(&out.join("box.json"));
    assert!(!page_box.is_empty(), "the page shows an empty mask");
    same_voxels("box", &page_box, &cli_mask(&dir, "box", &[]));
    let page_negative = ones_of_page(&out.join("box_neg.json"));
    assert_ne!(page_negative, page_box, "the negative click changed nothing");
    same_voxels(
        "box + negative click",
        &page_negative,
        &cli_mask(&dir, "box_neg", &["--point", "98,60,0"]),
    );
    // The page propagates the slice's prompts (the box and the negative click).
    same_voxels(
        "propagation",
        &ones_of_page(&out.join("propagated.json")),
        &cli_mask(&dir, "propagated", &["--point", "98,60,0", "--propagate"]),
    );
    // The downloaded mask lies on the scan's grid: same dimensions and affine.
    let header = |path: &Path| ReaderOptions::new().read_file(path).unwrap().header().clone();
    let (scan_header, mask_header) = (header(&scan()), header(&out.join("download.nii.gz")));
    assert_eq!(scan_header.dim, mask_header.dim);
    assert_eq!(
        (scan_header.srow_x, scan_header.srow_y, scan_header.srow_z),
        (mask_header.srow_x, mask_header.srow_y, mask_header.srow_z)
    );
    assert_eq!(scan_header.sform_code, mask_header.sform_code);
    // "label all slices": one segment per class of the head, as `segment --semantic` labels the scan.
    let labelled: Value = serde_json::from_str(&std::fs::read_to_string(out.join("labels.json")).unwrap()).unwrap();
    let cli_labels = dir.join("labels.nii.gz");
    crate::semantic_cli::label_along_k(&scan(), &bundle, &cli_labels);
    for (k, class) in ["grey matter", "white matter"].iter().enumerate() {
        let cli = voxels_valued(&cli_labels, k as u8 + 1);
        let page: BTreeSet<u64> = labelled["classes"][class]["ones"]
            .as_array()
            .unwrap_or_else(|| panic!("no class {class} in labels.json"))
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        same_voxels(class, &page, &cli);
    }

    // A DICOM series: the page's DICOM SEG reads back onto the series as the CLI's does.
    crate::serve_cli::assert_seg_is_the_clis(&out.join("seg.dcm"), &series, &bundle, &dir);

    // The scan opened from the server's folder: the same box gives the same mask, saved beside the scan.
    let opened: Value = serde_json::from_str(&std::fs::read_to_string(out.join("data.json")).unwrap()).unwrap();
    let from_folder: BTreeSet<u64> = opened["box"]["ones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    same_voxels("box on the folder's scan", &from_folder, &page_box);
    let saved = data.join(opened["saved"].as_str().unwrap());
    assert_eq!(saved.parent(), Some(data.as_path()), "{}", saved.display());
    same_voxels("the mask saved beside the scan", &ones_of_nifti(&saved), &page_box);
    assert_eq!(
        std::fs::read(data.join("mni152_t1.nii.gz")).unwrap(),
        std::fs::read(scan()).unwrap()
    );

    // The same click through MONAI Label's client, in the same run: the page adds decoding and drawing.
    let latency: Value = serde_json::from_str(&std::fs::read_to_string(out.join("latency.json")).unwrap()).unwrap();
    let client = crate::serve_cli::drive(&[
        "clicks",
        &server.url(),
        scan().to_str().unwrap(),
        dir.to_str().unwrap(),
        "20",
        "98",
        "130",
        "82",
    ]);
    println!(
        "click -> overlay in the page: median {} ms (max {}); the same click through MONAILabelClient: median {:.1} ms",
        latency["median_ms"], latency["max_ms"], client["median_ms"]
    );
    assert_eq!(latency["clicks"], 20);
    assert!(client["median_ms"].as_f64().unwrap() > 0.0);
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}

/// One raw HTTP/1.1 request; the status and the body's bytes.
fn http_bytes(port: u16, method: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = String::from_utf8_lossy(&response[9..12]).parse().unwrap();
    (status, response[split + 4..].to_vec())
}

#[test]
fn the_data_folder_is_listed_opened_and_saved_into_without_leaving_it() {
    let dir = scratch("annotator-data");
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("brain")).unwrap();
    std::fs::copy(scan(), data.join("brain/mni.nii.gz")).unwrap();
    std::fs::write(dir.join("outside.nii"), b"not for clients").unwrap();
    let series = shared().join("data/dicom/series_ct5n");
    std::fs::create_dir_all(data.join("ct")).unwrap();
    for file in std::fs::read_dir(&series).unwrap() {
        let file = file.unwrap().path();
        std::fs::copy(&file, data.join("ct").join(file.file_name().unwrap())).unwrap();
    }
    let server = Server::start(&["--quiet", "--data", data.to_str().unwrap()]);
    let port = server.port;
    let json = |(status, body): (u16, Vec<u8>)| -> (u16, Value) {
        (
            status,
            serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{status}: {e}")),
        )
    };

    let (status, scans) = json(http_bytes(port, "GET", "/annotator/scans", "text/plain", b""));
    assert_eq!(status, 200);
    assert_eq!(scans["scans"], serde_json::json!(["brain/mni.nii.gz", "ct"]));
    // A series folder is sent to the page as a zip of its files.
    let (status, zipped) = http_bytes(port, "GET", "/annotator/scan?scan=ct", "text/plain", b"");
    assert_eq!(status, 200);
    let archive = zip::ZipArchive::new(std::io::Cursor::new(zipped)).unwrap();
    assert_eq!(archive.len(), std::fs::read_dir(&series).unwrap().count());
    for bad in ["../outside.nii", "%2Fetc%2Fpasswd", "brain/..%2F..%2Foutside.nii"] {
        let (status, answer) = json(http_bytes(
            port,
            "PUT",
            &format!("/annotator/open?scan={bad}"),
            "text/plain",
            b"",
        ));
        assert_eq!(status, 400, "{bad}: {answer}");
    }
    let (status, opened) = json(http_bytes(
        port,
        "PUT",
        "/annotator/open?scan=brain/mni.nii.gz",
        "text/plain",
        b"",
    ));
    assert_eq!(status, 200, "{opened}");
    assert_eq!(
        opened["session_info"]["meta"]["shape"],
        serde_json::json!([197, 233, 189])
    );
    let id = opened["session_id"].as_str().unwrap().to_string();
    let (status, bytes) = http_bytes(port, "GET", "/annotator/scan?scan=brain/mni.nii.gz", "text/plain", b"");
    assert_eq!((status, bytes), (200, std::fs::read(scan()).unwrap()));

    // A mask from the session, saved next to the scan: a new file, the scan untouched; again: a second file.
    let (ct, body) = crate::serve_cli::multipart(
        "label",
        "x.bin",
        b"",
        Some(r#"{"roi": [27, 169, 28, 207, 82, 82], "result_extension": ".nii.gz"}"#),
    );
    let (status, mask) = http_bytes(
        port,
        "POST",
        &format!("/infer/medico-tiny?session_id={id}&output=image"),
        &ct,
        &body,
    );
    assert_eq!(status, 200);
    let save = format!("/annotator/save?session_id={id}&label=whole%20brain");
    let (status, saved) = json(http_bytes(port, "POST", &save, "application/octet-stream", &mask));
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["saved"], "brain/mni_whole_brain.nii.gz");
    assert_eq!(std::fs::read(data.join("brain/mni_whole_brain.nii.gz")).unwrap(), mask);
    assert_eq!(
        std::fs::read(data.join("brain/mni.nii.gz")).unwrap(),
        std::fs::read(scan()).unwrap()
    );
    let (_, again) = json(http_bytes(port, "POST", &save, "application/octet-stream", &mask));
    assert_eq!(again["saved"], "brain/mni_whole_brain-2.nii.gz");
    // Not a mask on the scan's grid, or not from the folder: refused, nothing written.
    let (status, answer) = json(http_bytes(port, "POST", &save, "application/octet-stream", b"garbage"));
    assert_eq!(status, 422, "{answer}");
    let (ct, upload) = crate::serve_cli::multipart("files", "mni.nii.gz", &std::fs::read(scan()).unwrap(), None);
    let (_, uploaded) = json(http_bytes(port, "PUT", "/session/", &ct, &upload));
    let other = uploaded["session_id"].as_str().unwrap();
    let (status, answer) = json(http_bytes(
        port,
        "POST",
        &format!("/annotator/save?session_id={other}&label=x"),
        "application/octet-stream",
        &mask,
    ));
    assert_eq!(status, 422, "{answer}");
    assert_eq!(std::fs::read_dir(data.join("brain")).unwrap().count(), 3);
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");

    let plain = Server::start(&["--quiet"]);
    let (status, _) = json(http_bytes(plain.port, "GET", "/annotator/scans", "text/plain", b""));
    assert_eq!(status, 404);
}
