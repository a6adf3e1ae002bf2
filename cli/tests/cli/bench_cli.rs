//! `bench --json --profile` on an exported bundle: every engine's timings, the work per run from tract's
//! cost model, a measured MatMul peak and the per-op-type profiles.

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
        "--runs",
        "1",
        "--decoder-runs",
        "2",
        "--threads",
        "1",
        "--probe-size",
        "64",
        "--profile",
        "--json",
    ]);
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
