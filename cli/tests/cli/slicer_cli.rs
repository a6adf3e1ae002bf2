//! 3D Slicer: the CLI-module description (`slicer-xml`) is well-formed and names only flags
//! `slicer-segment` takes; `slicer-segment` called as Slicer calls it (ROI as centre and radius, clicks in RAS,
//! volumes by position) writes `segment --world`'s mask; the scripted module's Python passes pyflakes and
//! its launcher runs the real server.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::{medico, medico_env, scratch, shared, text};

fn slicer_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../slicer")
}

fn xml() -> String {
    let run = medico(&["slicer-xml"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    text(&run.stdout)
}

/// The texts of every `<tag>` element.
fn elements(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .map(|rest| rest.split(&close).next().unwrap().to_string())
        .collect()
}

#[test]
fn the_module_description_is_well_formed_and_matches_slicer_segment() {
    let xml = xml();
    assert!(
        xml.starts_with("<?xml"),
        "Slicer requires the output to start with <?xml"
    );
    // Well-formed (Python's XML parser), with the schema's order of the executable's first elements.
    let mut parse = Command::new("python3")
        .args([
            "-c",
            "import sys, xml.etree.ElementTree as E; r = E.parse(sys.stdin).getroot(); \
             print(' '.join(c.tag for c in r))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    parse.stdin.take().unwrap().write_all(xml.as_bytes()).unwrap();
    let out = parse.wait_with_output().unwrap();
    assert!(out.status.success(), "not well-formed XML");
    assert_eq!(
        text(&out.stdout).trim(),
        "category title description version documentation-url license contributor parameters parameters parameters"
    );
    // Every flag Slicer will pass is one slicer-segment takes; images are positional (index 0 and 1).
    let help = text(&medico(&["slicer-segment", "--help"]).stdout);
    let flags = elements(&xml, "longflag");
    assert_eq!(
        flags,
        ["box", "foreground", "background", "propagate", "model", "threads"]
    );
    for flag in &flags {
        assert!(
            help.contains(&format!("--{flag}")),
            "--{flag} missing from slicer-segment: {help}"
        );
    }
    assert_eq!(elements(&xml, "index"), ["0", "1"]);
    // Slicer runs the executable with --xml; the wrapper in slicer/ passes it through.
    assert_eq!(text(&medico(&["slicer-segment", "--xml"]).stdout), xml);
    let wrapper = Command::new(slicer_dir().join("MedicoSegment"))
        .arg("--xml")
        .env("MEDICO_CLI", env!("CARGO_BIN_EXE_medico-cli"))
        .output()
        .unwrap();
    assert_eq!(text(&wrapper.stdout), xml);
}

#[test]
fn slicer_segment_writes_the_mask_segment_writes_from_the_same_world_prompts() {
    let dir = scratch("slicer-segment");
    let input = shared().join("data/volumes/mni152_t1.nii.gz");
    let (from_slicer, from_segment) = (dir.join("slicer.nii.gz"), dir.join("segment.nii.gz"));
    // mni152_t1: x = i - 98, y = j - 134, z = k - 72 (RAS mm). ROI centre (2, -4, 18), radius (40, 75, 3):
    // the box i 60..140, j 55..205 on axial slice 90; a click at voxel (98, 130, 90).
    let run = medico_env(
        &[
            "slicer-segment",
            "--box",
            "2,-4,18,40,75,3",
            "--foreground",
            "0,-4,18",
            "--model",
            "medico-tiny",
            "--threads",
            "2",
            input.to_str().unwrap(),
            from_slicer.to_str().unwrap(),
        ],
        &[],
    );
    assert!(run.status.success(), "{}", text(&run.stderr));
    let stdout = text(&run.stdout);
    assert!(stdout.contains("<filter-progress>1</filter-progress>"), "{stdout}");
    let run = medico(&[
        "segment",
        input.to_str().unwrap(),
        "--world",
        "--box",
        "-38,-79,18,42,71,18",
        "--point",
        "0,-4,18,1",
        "--model",
        "medico-tiny",
        "--threads",
        "2",
        "-o",
        from_segment.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let read = |p: &PathBuf| {
        use nifti::{IntoNdArray, NiftiObject, ReaderOptions};
        ReaderOptions::new()
            .read_file(p)
            .unwrap()
            .into_volume()
            .into_ndarray::<u8>()
            .unwrap()
    };
    let mask = read(&from_slicer);
    assert!(mask.iter().filter(|&&v| v == 1).count() > 100, "empty mask");
    assert!(
        mask.indexed_iter().filter(|(_, &v)| v == 1).all(|(ix, _)| ix[2] == 90),
        "not on slice 90"
    );
    assert_eq!(mask, read(&from_segment));
    // No prompt: a usage error, nothing written.
    let none = dir.join("none.nii.gz");
    let run = medico(&["slicer-segment", input.to_str().unwrap(), none.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(2));
    assert!(!none.exists());
}

#[test]
fn the_scripted_module_passes_pyflakes_and_its_launcher_runs_the_server() {
    let venv = std::env::var_os("MEDICO_MONAILABEL_CLIENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.deps/monailabel-client"));
    let python = venv.join("bin/python");
    assert!(python.exists(), "{}: run `bash scripts/setup.sh`", python.display());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/slicer_module_check.py");
    let run = Command::new(python)
        .arg(script)
        .arg(slicer_dir())
        .arg(env!("CARGO_BIN_EXE_medico-cli"))
        .arg("medico-tiny")
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    let report: Value = serde_json::from_str(&text(&run.stdout)).unwrap();
    assert_eq!(report["pyflakes_returncode"], 0, "{}", report["pyflakes_output"]);
    let files: Vec<&str> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(files.contains(&"MedicoSAM/MedicoSAM.py") && files.contains(&"MedicoSAM/MedicoSAMLib/server.py"));
    assert!(report["url"].as_str().unwrap().starts_with("http://127.0.0.1:"));
    assert_eq!(report["models"], serde_json::json!(["medico-tiny", "medico-tiny-3d"]));
    assert_eq!(report["model_type"], "deepgrow");
    assert_eq!(report["was_running"], true);
    assert_eq!(report["exit_code"], 0, "{report}");
}
