//! `medico-cli eval stop-rule`: chooses each model's propagation stop rule on the walks `eval interactive`
//! traced (`traces_3d.json`): every rule of a grid scored on every 3D object, ranked by the mean Dice of the
//! box-start walks as a user meets them (no extent), with the point start beside it, a held-out check (the
//! rule chosen without one modality, scored on it) and the per-object Dice of the best rule.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::Args;
use medico_runtime::evaluation::stop_rule_search::{mean_free_dice, rank_rules, RuleGrid};
use medico_runtime::evaluation::volume::VolumeTrace;
use medico_runtime::volume::propagation::StopRule;

use crate::eval_cmd::{ModelTraces, TraceFile};
use crate::Failure;

#[derive(Args)]
pub struct StopRuleArgs {
    /// `traces_3d.json` written by `eval interactive --out DIR`.
    #[arg(long)]
    traces: PathBuf,
    /// Only this model's traces (its label); default: every model in the file.
    #[arg(long)]
    model: Option<String>,
    /// How many of the best rules to list.
    #[arg(long, default_value_t = 5)]
    top: usize,
}

pub fn run(args: StopRuleArgs) -> Result<(), Failure> {
    let text = std::fs::read_to_string(&args.traces)
        .with_context(|| format!("{}: cannot read", args.traces.display()))
        .map_err(Failure::input)?;
    let file: TraceFile = serde_json::from_str(&text)
        .map_err(|e| Failure::input(anyhow!("{}: not a traces_3d.json: {e}", args.traces.display())))?;
    let models: Vec<&ModelTraces> = file
        .models
        .iter()
        .filter(|m| args.model.as_ref().is_none_or(|label| &m.label == label))
        .collect();
    if models.is_empty() {
        return Err(Failure::input(anyhow!(
            "{}: no traces{}",
            args.traces.display(),
            args.model
                .as_ref()
                .map(|m| format!(" for model '{m}'"))
                .unwrap_or_default()
        )));
    }
    let grid = RuleGrid::default();
    for model in models {
        report_model(model, &grid, args.top);
    }
    Ok(())
}

fn traces<'a>(model: &'a ModelTraces, start: &str, keep: impl Fn(&str) -> bool) -> Vec<&'a VolumeTrace> {
    model
        .objects
        .iter()
        .filter(|o| o.start == start && keep(&o.modality))
        .map(|o| &o.trace)
        .collect()
}

fn report_model(model: &ModelTraces, grid: &RuleGrid, top: usize) {
    let boxes = traces(model, "box", |_| true);
    let points = traces(model, "point", |_| true);
    println!(
        "{} ({} projection, {} box and {} point walks):",
        model.label,
        model.propagation.projection,
        boxes.len(),
        points.len()
    );
    let line = |rule: &StopRule| {
        format!(
            "box {:.3}  point {:.3}  {rule}",
            mean_free_dice(boxes.iter().copied(), rule),
            mean_free_dice(points.iter().copied(), rule)
        )
    };
    println!("  the rule it ran with:   {}", line(&model.propagation.stop));
    println!("  upstream (empty mask):  {}", line(&StopRule::UPSTREAM_LITE_MEDSAM));
    let ranked = rank_rules(&boxes, grid);
    println!("  best {top} of {} rules (mean Dice, no extent):", ranked.len());
    for ranked_rule in ranked.iter().take(top) {
        println!("    {}", line(&ranked_rule.rule));
    }
    let mut modalities: Vec<&str> = model.objects.iter().map(|o| o.modality.as_str()).collect();
    modalities.sort_unstable();
    modalities.dedup();
    if modalities.len() > 1 {
        println!("  held out by modality (rule chosen on the others, box start):");
        for held in &modalities {
            let chosen = rank_rules(&traces(model, "box", |m| m != *held), grid)[0].rule;
            let on_held = traces(model, "box", |m| m == *held);
            println!(
                "    {held}: {:.3} with the others' best ({chosen}); {:.3} with the best of all",
                mean_free_dice(on_held.iter().copied(), &chosen),
                mean_free_dice(on_held.iter().copied(), &ranked[0].rule)
            );
        }
    }
    if let Some(best) = ranked.first() {
        println!("  per object under the best rule (box / point, no extent):");
        for object in model.objects.iter().filter(|o| o.start == "box") {
            let point = model
                .objects
                .iter()
                .find(|o| o.start == "point" && o.case == object.case)
                .map_or("-".to_string(), |o| {
                    format!("{:.3}", o.trace.score(&best.rule, false).dice)
                });
            let score = object.trace.score(&best.rule, false);
            println!(
                "    {:<32} {:<3} {:.3} / {point}  slices {}..={} (object {}..={})",
                object.case,
                object.modality,
                score.dice,
                score.segmented_range.0,
                score.segmented_range.1,
                object.trace.object_range.0,
                object.trace.object_range.1
            );
        }
    }
}
