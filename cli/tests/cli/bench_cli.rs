//! `bench --json --profile` on an exported bundle: every engine's timings, the work per run from tract's
//! cost model, a measured MatMul peak and the per-op-type profiles; `--compare-python`'s references.

use std::path::Path;
use std::process::Output;

use crate::common::{export_small, medico, scratch, text};
use serde_json::Value;

/// `bench --json` on `bundle` with one encoder run, two decoder runs, one thread and a small probe, plus
/// `extra` arguments.
fn quick_bench(bundle: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "bench",
        "--model",
        bundle.to_str().unwrap(),
        "--runs",
        "1",
        "--decoder-runs",
        "2",
        "--threads",
        "1",
        "--probe-size",
        "64",
        "--json",
    ];
    args.extend(extra);
    medico(&args)
}

#[test]
fn bench_reports_work_throughput_and_the_matmul_peak() {
    let dir = scratch("bench");
    let bundle = export_small(&dir);
    let run = quick_bench(&bundle, &["--profile"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let report: Value = serde_json::from_str(&text(&run.stdout)).unwrap();
    let work = &report["work"];
    let gflop = |key: &str| work[key].as_f64().unwrap_or_else(|| panic!("{key}: {work}"));
    assert!(gflop("encoder_gflop") > 0.0 && gflop("prepare_gflop") > 0.0);
    assert!(gflop("decoder_gflop") > 0.0 && gflop("decoder_gflop") < gflop("encoder_gflop"));
    let results = report["results"].as_array().unwrap();
    let engines: Vec<&str> = results.iter().map(|r| r["backend"].as_str().unwrap()).collect();
    assert_eq!(engines, ["ort", "tract"]);
    for row in results {
        assert_eq!(row["decoder_ms"]["runs"], 2);
        assert!(row["prepare_ms"]["median"].as_f64().unwrap() > 0.0, "{row}");
        let peak = row["matmul_peak_gflops"].as_f64().unwrap();
        assert!(peak > 0.0);
        let click = &row["decoder_gflops"];
        let (rate, fraction) = (
            click["gflops"].as_f64().unwrap(),
            click["fraction_of_peak"].as_f64().unwrap(),
        );
        assert!((fraction - rate / peak).abs() < 1e-9);
        // --profile: per-op-type times of both graphs, most expensive first, matrix products among them.
        for graph in ["encoder", "click"] {
            let ops = row["profile"][graph]
                .as_array()
                .unwrap_or_else(|| panic!("{graph}: {row}"));
            let ms: Vec<f64> = ops.iter().map(|op| op[1].as_f64().unwrap()).collect();
            assert!(ms[0] > 0.0 && ms.windows(2).all(|w| w[0] >= w[1]), "{graph}: {ops:?}");
            let is_product = |op: &Value| ["MatMul", "Gemm"].iter().any(|m| op[0].as_str().unwrap().contains(m));
            assert!(ops.iter().any(is_product), "{graph}: {ops:?}");
        }
    }
}

/// `--compare-python`: the helper runs with the given interpreter and its report joins medico's: a part
/// either timed (the warm-up dropped, as many runs as asked) or not timed with its reason (here, at least the
/// PyTorch reference: the test bundle's architecture has none); an interpreter that does not exist or fails
/// is a clear error naming it.
#[test]
fn compare_python_times_the_references_or_says_why_not() {
    let dir = scratch("bench-compare");
    let bundle = export_small(&dir);
    let bench = |python: &str| quick_bench(&bundle, &["--backend", "ort", "--compare-python", python]);
    let run = bench("python3");
    assert!(run.status.success(), "{}", text(&run.stderr));
    let report: Value = serde_json::from_str(&text(&run.stdout)).unwrap();
    let references = &report["references"];
    assert!(references["python"].as_str().unwrap().starts_with('3'), "{references}");
    let rows = references["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{references}");
    for row in rows {
        if row["engine"].is_string() {
            assert_eq!(row["encoder_ms"]["runs"], 1, "{row}");
            assert_eq!(row["decoder_ms"]["runs"], 2, "{row}");
            assert!(
                row["first_engine_over_this"]["decoder"].as_f64().unwrap() > 0.0,
                "{row}"
            );
        } else {
            assert!(!row["error"].as_str().unwrap().is_empty(), "{row}");
        }
    }
    assert_eq!(
        rows[1]["error"].as_str(),
        Some("no PyTorch reference for architecture 'custom'"),
        "{references}"
    );

    let missing = dir.join("no-such-python");
    let run = bench(missing.to_str().unwrap());
    assert_eq!(run.status.code(), Some(3), "{}", text(&run.stderr));
    assert!(
        text(&run.stderr).contains("no-such-python: cannot run"),
        "{}",
        text(&run.stderr)
    );
    let run = bench("false");
    assert_eq!(run.status.code(), Some(3), "{}", text(&run.stderr));
    assert!(
        text(&run.stderr).contains("the Python helper failed"),
        "{}",
        text(&run.stderr)
    );
}
