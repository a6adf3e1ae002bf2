//! Where a graph's time goes, per op type, on either engine (`medico-cli bench --profile`): ONNX Runtime's
//! own profiler (kernel time per node, from its JSON trace), or tract's plan evaluated node by node.

use std::collections::HashMap;
use std::path::Path;

use ndarray::ArrayViewD;

use super::{BackendChoice, Engine, OrtEngine};
use crate::RuntimeError;

/// Milliseconds per run by op type, most expensive first.
pub type OpTimes = Vec<(String, f64)>;

/// Runs `model` `runs` times on `inputs` (after one untimed run) on `engine` with `threads` threads and
/// returns the time per op type.
pub fn op_times(
    engine: BackendChoice,
    model: &Path,
    threads: usize,
    inputs: &[(&str, ArrayViewD<'_, f32>)],
    runs: usize,
) -> Result<OpTimes, RuntimeError> {
    if super::uses_ort(engine) {
        ort_op_times(model, threads, inputs, runs)
    } else {
        tract_op_times(model, threads, inputs, runs)
    }
}

fn ort_op_times(
    model: &Path,
    threads: usize,
    inputs: &[(&str, ArrayViewD<'_, f32>)],
    runs: usize,
) -> Result<OpTimes, RuntimeError> {
    let profile_error = |problem: String| RuntimeError::Run {
        engine: "ONNX Runtime",
        source: problem.into(),
    };
    let dir = tempfile::tempdir().map_err(|e| profile_error(format!("no folder for the profile: {e}")))?;
    // The untimed run goes to a session without the profiler.
    OrtEngine::open(model, threads)?.run_views(inputs)?;
    let mut engine = OrtEngine::open_profiled(model, threads, &dir.path().join("profile"))?;
    for _ in 0..runs {
        engine.run_views(inputs)?;
    }
    let trace = engine.end_profiling()?;
    let unreadable = |e: &dyn std::fmt::Display| profile_error(format!("{}: unreadable profile: {e}", trace.display()));
    let text = std::fs::read_to_string(&trace).map_err(|e| unreadable(&e))?;
    let events: serde_json::Value = serde_json::from_str(&text).map_err(|e| unreadable(&e))?;
    let mut times: HashMap<String, f64> = HashMap::new();
    for event in events.as_array().into_iter().flatten() {
        let name = event["name"].as_str().unwrap_or_default();
        if event["cat"] != "Node" || !name.ends_with("_kernel_time") {
            continue;
        }
        let op = event["args"]["op_name"].as_str().unwrap_or("?");
        *times.entry(op.to_string()).or_default() += event["dur"].as_f64().unwrap_or(0.0) / 1e3;
    }
    Ok(sorted(times, runs))
}

#[cfg(feature = "tract")]
fn tract_op_times(
    model: &Path,
    threads: usize,
    inputs: &[(&str, ArrayViewD<'_, f32>)],
    runs: usize,
) -> Result<OpTimes, RuntimeError> {
    let mut engine = super::TractEngine::open(model, threads)?;
    engine.run_views(inputs)?;
    engine.op_times(inputs, runs)
}

#[cfg(not(feature = "tract"))]
fn tract_op_times(
    _model: &Path,
    _threads: usize,
    _inputs: &[(&str, ArrayViewD<'_, f32>)],
    _runs: usize,
) -> Result<OpTimes, RuntimeError> {
    Err(super::tract_unavailable())
}

/// Totals over `runs` runs → per run, most expensive first.
pub(crate) fn sorted(times: HashMap<String, f64>, runs: usize) -> OpTimes {
    let mut by_op: OpTimes = times
        .into_iter()
        .map(|(op, ms)| (op, ms / runs.max(1) as f64))
        .collect();
    by_op.sort_by(|a, b| b.1.total_cmp(&a.1));
    by_op
}
