//! Helpers shared by the command-line tests: locating the shared data, running the binary, scratch
//! folders and a reference bundle. (Each test file uses a subset.)
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `shared/` beside the checkout, or `$MEDICO_SHARED`.
pub fn shared() -> PathBuf {
    std::env::var_os("MEDICO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

/// Runs `medico-cli` with extra environment variables.
pub fn medico_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_medico-cli"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run medico-cli")
}

/// Runs `medico-cli`.
pub fn medico(args: &[&str]) -> Output {
    medico_env(args, &[])
}

/// Lossy UTF-8 of captured output.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub use medico_tests::Scratch;

/// A fresh, empty scratch folder named after `name`, removed when the returned guard is dropped.
pub fn scratch(name: &str) -> Scratch {
    medico_tests::scratch_dir(&format!("cli-{name}"))
}

/// Exports the `small` reference model into `dir/bundle` through the CLI.
pub fn export_small(dir: &Path) -> PathBuf {
    let out = dir.join("bundle");
    let run = export_small_to(&out, &[]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    out
}

/// Runs `medico-cli export` of the `small` reference model into `out` with `extra` arguments.
pub fn export_small_to(out: &Path, extra: &[&str]) -> Output {
    let checkpoint = shared().join("reference/small/weights.safetensors");
    let mut args = vec![
        "export",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    medico(&args)
}

/// The Segment Label of a DICOM SEG's first segment.
pub fn seg_label(path: &Path) -> String {
    let object = dicom_object::open_file(path).unwrap();
    let segment = &object
        .element(dicom_dictionary_std::tags::SEGMENT_SEQUENCE)
        .unwrap()
        .items()
        .unwrap()[0];
    segment
        .element(dicom_dictionary_std::tags::SEGMENT_LABEL)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end()
        .to_string()
}

/// The files of `folder` as a zip under `series/`, the way a client uploads a DICOM series in one file.
pub fn zip_series(folder: &Path) -> Vec<u8> {
    use std::io::Write;
    let mut zipped = std::io::Cursor::new(Vec::new());
    let mut writer = zip::ZipWriter::new(&mut zipped);
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for file in files {
        let name = format!("series/{}", file.file_name().unwrap().to_string_lossy());
        writer
            .start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        writer.write_all(&std::fs::read(&file).unwrap()).unwrap();
    }
    writer.finish().unwrap();
    zipped.into_inner()
}
