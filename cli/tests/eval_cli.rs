//! `medico-cli eval interactive` on the shared 2D cases: Dice per iteration for box and point starts, written
//! as CSV and JSON, reproducible for a seed; bad inputs refused.

mod common;
use common::*;

#[test]
fn interactive_evaluation_reports_dice_per_iteration_reproducibly() {
    let dir = scratch("eval");
    let bundle = export_small(&dir);
    let cases = shared().join("data/cases.json");
    let run_into = |out: &std::path::Path| {
        let run = medico(&[
            "eval",
            "interactive",
            "--model",
            bundle.to_str().unwrap(),
            "--data",
            cases.to_str().unwrap(),
            "--rounds",
            "3",
            "--use-mask",
            "--seed",
            "5",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(run.status.success(), "{}", text(&run.stderr));
        text(&run.stdout)
    };
    let (a, b) = (dir.join("a"), dir.join("b"));
    let table = run_into(&a);
    assert!(
        table.contains("it0") && table.contains("it3") && table.contains("box") && table.contains("point"),
        "{table}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("results.json")).unwrap()).unwrap();
    for start in ["box", "point"] {
        let dice = summary["mean_dice"][start].as_array().unwrap();
        assert_eq!(dice.len(), 4, "start + 3 rounds");
        assert!(dice.iter().all(|d| (0.0..=1.0).contains(&d.as_f64().unwrap())));
    }
    let cases_2d = summary["per_case"].as_array().unwrap().len();
    assert_eq!(cases_2d, 18, "9 cases x 2 starts");
    let csv = std::fs::read_to_string(a.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 18 * 4);
    run_into(&b);
    assert_eq!(
        std::fs::read(a.join("results.json")).unwrap(),
        std::fs::read(b.join("results.json")).unwrap(),
        "same seed, same results"
    );

    let run = medico(&[
        "eval",
        "interactive",
        "--model",
        bundle.to_str().unwrap(),
        "--data",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(3));
    assert!(
        text(&run.stderr).contains("cases.json: cannot read"),
        "{}",
        text(&run.stderr)
    );
}
