//! `medico-cli eval interactive` on the shared cases: 2D Dice per iteration for box and point starts, 3D Dice
//! after propagation, for two models side by side, written as CSV, JSON and a PNG plot, reproducible for a
//! seed; bad inputs refused.

use crate::common::*;

#[test]
fn interactive_evaluation_reports_dice_per_iteration_reproducibly() {
    let dir = scratch("eval");
    let bundle = export_small(&dir);
    let bundle = bundle.to_str().unwrap();
    let cases = shared().join("data/cases.json");
    let (a, b) = (dir.join("a"), dir.join("b"));

    // Two labelled copies of one model, 2D and 3D cases.
    let first = format!("first={bundle}");
    let second = format!("second={bundle}");
    let run = medico(&[
        "eval",
        "interactive",
        "--model",
        &first,
        "--model",
        &second,
        "--data",
        cases.to_str().unwrap(),
        "--rounds",
        "3",
        "--feed-mask",
        "true",
        "--seed",
        "5",
        "--out",
        a.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let table = text(&run.stdout);
    for expected in [
        "first (",
        "second (",
        "it0",
        "it3",
        "3D, propagated",
        "free    all",
        "extent  all",
        "per group",
        "public MR",
        "corrections: Composition { keep_box: true, feed_mask: true",
    ] {
        assert!(table.contains(expected), "missing {expected:?} in {table}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("results.json")).unwrap()).unwrap();
    let models = summary["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    for model in models {
        for start in ["box", "point"] {
            let dice = model["mean_dice_2d"][start].as_array().unwrap();
            assert_eq!(dice.len(), 4, "start + 3 rounds");
            assert!(dice.iter().all(|d| (0.0..=1.0).contains(&d.as_f64().unwrap())));
            // Every object as a user meets it (free) and within its extent, over all and per modality.
            for extent in ["free", "extent"] {
                let mean = model["mean_dice_3d"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|m| m["modality"] == "all" && m["extent"] == extent)
                    .unwrap();
                assert_eq!(mean["objects"], 5);
                assert!((0.0..=1.0).contains(&mean[start].as_f64().unwrap()), "{mean}");
            }
        }
        assert_eq!(model["per_case_2d"].as_array().unwrap().len(), 18, "9 cases x 2 starts");
        // The 9 brain cases are one group: the set's name and the modality of the volumes they were cut from.
        let groups = model["mean_dice_2d_by_group"].as_object().unwrap();
        assert_eq!(groups.keys().collect::<Vec<_>>(), ["public MR"]);
        assert_eq!(groups["public MR"], model["mean_dice_2d"]);
        let per_case_3d = model["per_case_3d"].as_array().unwrap();
        assert_eq!(per_case_3d.len(), 10, "5 objects x 2 starts");
        for case in per_case_3d {
            assert_eq!(case["modality"], "MR", "{case}");
            let (first, last) = (
                case["object_range"][0].as_u64().unwrap(),
                case["object_range"][1].as_u64().unwrap(),
            );
            let central = case["central_slice"].as_u64().unwrap();
            assert!(first <= central && central <= last, "{case}");
            for key in ["dice_free", "dice_extent"] {
                assert!((0.0..=1.0).contains(&case[key].as_f64().unwrap()), "{case}");
            }
        }
    }
    assert_eq!(
        models[0]["per_case_2d"], models[1]["per_case_2d"],
        "same model, same seed"
    );
    assert_eq!(
        models[0]["per_case_3d"], models[1]["per_case_3d"],
        "same model, same seed"
    );
    let csv = std::fs::read_to_string(a.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 * 18 * 4);
    let csv_3d = std::fs::read_to_string(a.join("results_3d.csv")).unwrap();
    assert_eq!(csv_3d.lines().count(), 1 + 2 * 10 * 2, "free and extent rows");

    // The traced walks choose a stop rule: the rule each model ran with, then the grid's best, never worse.
    let traces = a.join("traces_3d.json");
    let stop_rule = |model: &str| {
        medico(&[
            "eval",
            "stop-rule",
            "--traces",
            traces.to_str().unwrap(),
            "--model",
            model,
            "--top",
            "2",
        ])
    };
    let run = stop_rule("first");
    assert!(run.status.success(), "{}", text(&run.stderr));
    let report = text(&run.stdout);
    let mean_of = |line: &str| -> f64 { line.split_whitespace().nth(1).unwrap().parse().unwrap() };
    let lines: Vec<&str> = report.lines().map(str::trim).collect();
    let ran_with = lines.iter().find(|l| l.starts_with("the rule it ran with:")).unwrap();
    let best = lines[lines.iter().position(|l| l.starts_with("best 2 of")).unwrap() + 1];
    let ran_with = ran_with.trim_start_matches("the rule it ran with:").trim();
    assert!(mean_of(best) >= mean_of(ran_with), "{report}");
    assert!(!report.contains("second ("), "only the model asked for: {report}");
    let run = stop_rule("third");
    assert_eq!(run.status.code(), Some(3));
    assert!(
        text(&run.stderr).contains("no traces for model 'third'"),
        "{}",
        text(&run.stderr)
    );
    assert!(a.join("dice_group1.png").exists(), "a plot per group");
    let plot = image::open(a.join("dice.png")).unwrap().to_rgb8();
    assert_eq!(plot.dimensions(), (960, 600));
    let coloured = plot
        .pixels()
        .filter(|p| p[0].abs_diff(p[1]) > 60 || p[1].abs_diff(p[2]) > 60)
        .count();
    assert!(
        coloured > 500,
        "the curves are drawn in colour ({coloured} coloured pixels)"
    );

    // One model, 2D only: the same Dice as in the first run.
    let run = medico(&[
        "eval",
        "interactive",
        "--model",
        bundle,
        "--data",
        cases.to_str().unwrap(),
        "--rounds",
        "3",
        "--feed-mask",
        "true",
        "--seed",
        "5",
        "--no-3d",
        "--out",
        b.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b.join("results.json")).unwrap()).unwrap();
    assert_eq!(
        again["models"][0]["per_case_2d"], models[0]["per_case_2d"],
        "reproducible for a seed"
    );
    assert_eq!(again["models"][0]["label"], "bundle");
    assert!(!b.join("results_3d.csv").exists());

    let run = medico(&[
        "eval",
        "interactive",
        "--model",
        bundle,
        "--data",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(3));
    assert!(
        text(&run.stderr).contains("cases.json: cannot read"),
        "{}",
        text(&run.stderr)
    );
    let run = medico(&[
        "eval",
        "interactive",
        "--model",
        "missing=/nonexistent/bundle",
        "--data",
        cases.to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    assert!(
        text(&run.stderr).contains("/nonexistent/bundle"),
        "{}",
        text(&run.stderr)
    );
}
