//! `bench --json` on an exported bundle: every engine's timings, the work per run from tract's cost model
//! (the per-click graph doing less than the full decoder would) and a measured MatMul peak.

use crate::common::{export_small, medico, scratch, text};
use serde_json::Value;

#[test]
fn bench_reports_work_throughput_and_the_matmul_peak() {
    let dir = scratch("bench");
    let bundle = export_small(&dir);
    let run = medico(&[
        "bench",
        "--model",
        bundle.to_str().unwrap(),
        "--backend",
        "tract",
        "--runs",
        "1",
        "--decoder-runs",
        "2",
        "--threads",
        "1",
        "--probe-size",
        "64",
        "--json",
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let report: Value = serde_json::from_str(&text(&run.stdout)).unwrap();
    let work = &report["work"];
    let gflop = |key: &str| work[key].as_f64().unwrap_or_else(|| panic!("{key}: {work}"));
    assert!(gflop("encoder_gflop") > 0.0 && gflop("prepare_gflop") > 0.0);
    assert!(gflop("decoder_gflop") > 0.0 && gflop("decoder_gflop") < gflop("encoder_gflop"));
    let row = &report["results"][0];
    assert_eq!(row["backend"], "tract");
    assert_eq!(row["decoder_ms"]["runs"], 2);
    assert!(row["prepare_ms"]["median"].as_f64().unwrap() > 0.0, "{row}");
    assert!(row["matmul_peak_gflops"].as_f64().unwrap() > 0.0);
    let click = &row["decoder_gflops"];
    let (rate, fraction) = (
        click["gflops"].as_f64().unwrap(),
        click["fraction_of_peak"].as_f64().unwrap(),
    );
    assert!((fraction - rate / row["matmul_peak_gflops"].as_f64().unwrap()).abs() < 1e-9);
}
