//! `medico-cli batch`: a cohort segmented as shards of one manifest, so that a Slurm job array (or any
//! launcher that sets RANK/WORLD_SIZE) spreads it over machines. Each manifest line is one `segment` run
//! (a prompted slice, a propagation or a semantic labelling); outputs are written atomically; a status file
//! per shard records each finished item with its output's SHA-256, so a killed or requeued job skips what
//! is done and redoes what is not; a failing item is recorded with its error and the rest go on.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, Context};
use clap::{Args, Parser};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::segment_cmd::SegmentArgs;
use crate::Failure;

#[derive(Args)]
pub struct BatchArgs {
    /// The manifest: JSON lines, one item each — {"scan": PATH, "output": NAME, "semantic": true} or
    /// {"scan", "output", "axis" | "plane", "slice", "box": [x0,y0,x1,y1], "points": [[x,y,label],...],
    /// "propagate": bool}, optionally "label", "format", "intensity"; scans relative to the manifest.
    manifest: PathBuf,
    /// Folder the outputs are written under (each item's `output` is relative to it).
    #[arg(long)]
    out: PathBuf,
    /// This process's shard of the manifest, I/N (items I, I+N, I+2N, ...); default: the Slurm array task
    /// (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN of SLURM_ARRAY_TASK_COUNT), else RANK of WORLD_SIZE, else 0/1.
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// Model for every item (as `segment --model`).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Threads for inference.
    #[arg(long)]
    threads: Option<usize>,
    /// Slice embeddings kept in this folder, shared by every process on the node (written atomically).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Print the summary as JSON on standard output.
    #[arg(long)]
    json: bool,
}

/// One manifest line.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Item {
    scan: PathBuf,
    output: String,
    #[serde(default)]
    semantic: bool,
    axis: Option<usize>,
    plane: Option<String>,
    slice: Option<usize>,
    #[serde(rename = "box")]
    bbox: Option<[f64; 4]>,
    #[serde(default)]
    points: Vec<[f64; 3]>,
    #[serde(default)]
    propagate: bool,
    label: Option<String>,
    format: Option<String>,
    intensity: Option<String>,
}

/// One line of a shard's status file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Status {
    output: String,
    /// The output's SHA-256 when the item finished.
    sha256: Option<String>,
    seconds: f64,
    /// The error, for an item that failed.
    error: Option<String>,
}

/// What a shard did.
#[derive(Debug, Default, Serialize)]
struct Summary {
    shard: String,
    items: usize,
    done: usize,
    skipped: usize,
    failed: usize,
    seconds_per_item: Option<f64>,
    failures: Vec<Status>,
}

/// `segment`'s arguments, parsed from an item as from a command line.
#[derive(Parser)]
#[command(name = "segment")]
struct SegmentLine {
    #[command(flatten)]
    args: SegmentArgs,
}

/// The shard `I/N` this process runs.
fn shard(asked: Option<&str>) -> Result<(usize, usize), Failure> {
    let parse = |i: &str, n: &str| -> Option<(usize, usize)> {
        let (i, n) = (i.trim().parse::<usize>().ok()?, n.trim().parse::<usize>().ok()?);
        (n > 0 && i < n).then_some((i, n))
    };
    if let Some(text) = asked {
        return text
            .split_once('/')
            .and_then(|(i, n)| parse(i, n))
            .ok_or_else(|| Failure::usage(anyhow!("--shard {text}: expected I/N with 0 <= I < N")));
    }
    let var = |name: &str| std::env::var(name).ok();
    if let (Some(id), Some(count)) = (var("SLURM_ARRAY_TASK_ID"), var("SLURM_ARRAY_TASK_COUNT")) {
        let min = var("SLURM_ARRAY_TASK_MIN").unwrap_or_else(|| "0".into());
        let index = id.trim().parse::<usize>().ok().zip(min.trim().parse::<usize>().ok());
        let index = index.and_then(|(id, min)| id.checked_sub(min)).map(|i| i.to_string());
        return index.and_then(|i| parse(&i, &count)).ok_or_else(|| {
            Failure::usage(anyhow!(
                "SLURM_ARRAY_TASK_ID {id} of SLURM_ARRAY_TASK_COUNT {count}: not a shard"
            ))
        });
    }
    if let (Some(rank), Some(size)) = (var("RANK"), var("WORLD_SIZE")) {
        return parse(&rank, &size)
            .ok_or_else(|| Failure::usage(anyhow!("RANK {rank} of WORLD_SIZE {size}: not a shard")));
    }
    Ok((0, 1))
}

/// The manifest's items; refuses, naming the line, one that is not an item, an output outside `--out` or
/// an output two items share.
fn read_manifest(path: &Path) -> Result<Vec<Item>, Failure> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))
        .map_err(Failure::input)?;
    let mut items: Vec<Item> = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = |what: String| Failure::input(anyhow!("{}: line {}: {what}", path.display(), n + 1));
        let item: Item = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        let output = Path::new(&item.output);
        if item.output.is_empty() || !output.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(bad(format!(
                "output '{}' must be a relative path inside --out",
                item.output
            )));
        }
        if items.iter().any(|i| i.output == item.output) {
            return Err(bad(format!("output '{}' is also another item's", item.output)));
        }
        items.push(item);
    }
    if items.is_empty() {
        return Err(Failure::input(anyhow!("{}: no items", path.display())));
    }
    Ok(items)
}

/// The status lines every shard wrote so far, by output (the last line of an output wins; a line a killed
/// process left half-written is ignored).
fn read_statuses(dir: &Path) -> HashMap<String, Status> {
    let mut statuses = HashMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return statuses;
    };
    let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    files.sort();
    for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "jsonl")) {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for status in text.lines().filter_map(|l| serde_json::from_str::<Status>(l).ok()) {
            statuses.insert(status.output.clone(), status);
        }
    }
    statuses
}

fn sha256_of(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    Some(format!("{:x}", Sha256::digest(bytes)))
}

/// Whether an item's output is done: recorded as finished with a checksum the file still has.
fn is_done(status: Option<&Status>, output: &Path) -> bool {
    status
        .and_then(|s| s.sha256.as_deref())
        .is_some_and(|sum| sha256_of(output).as_deref() == Some(sum))
}

/// The `segment` command line of an item.
fn segment_line(args: &BatchArgs, item: &Item, root: &Path, output: &Path) -> Vec<String> {
    let scan = if item.scan.is_absolute() {
        item.scan.clone()
    } else {
        root.join(&item.scan)
    };
    let mut line: Vec<String> = vec!["segment".into(), scan.display().to_string()];
    let mut push = |flag: &str, value: String| {
        line.push(flag.into());
        line.push(value);
    };
    if let Some(model) = &args.model {
        push("--model", model.display().to_string());
    }
    if let Some(threads) = args.threads {
        push("--threads", threads.to_string());
    }
    if let Some(axis) = item.axis {
        push("--axis", axis.to_string());
    }
    if let Some(plane) = &item.plane {
        push("--plane", plane.clone());
    }
    if let Some(slice) = item.slice {
        push("--slice", slice.to_string());
    }
    if let Some([x0, y0, x1, y1]) = item.bbox {
        push("--box", format!("{x0},{y0},{x1},{y1}"));
    }
    for [x, y, label] in &item.points {
        push("--point", format!("{x},{y},{label}"));
    }
    for (flag, value) in [
        ("--label", &item.label),
        ("--format", &item.format),
        ("--intensity", &item.intensity),
    ] {
        if let Some(value) = value {
            push(flag, value.clone());
        }
    }
    if item.propagate || item.semantic {
        if let Some(cache) = &args.cache_dir {
            push("--cache-dir", cache.display().to_string());
        }
    }
    push("-o", output.display().to_string());
    if item.semantic {
        line.push("--semantic".into());
    }
    if item.propagate {
        line.push("--propagate".into());
    }
    line
}

/// Runs one item as `segment` would; its error as text.
fn run_item(line: &[String]) -> Result<(), String> {
    let parsed = SegmentLine::try_parse_from(line).map_err(|e| e.to_string().trim().to_string())?;
    crate::segment_cmd::run(parsed.args).map_err(|failure| format!("{:#}", failure.error))
}

/// Appends one status line (one `write` of a whole line, flushed, so a kill leaves at most the last line
/// half-written).
fn record(file: &mut std::fs::File, path: &Path, status: &Status) -> Result<(), Failure> {
    let line = serde_json::to_string(status).expect("a status serializes") + "\n";
    file.write_all(line.as_bytes())
        .and_then(|()| file.sync_data())
        .with_context(|| format!("{}: cannot record the status", path.display()))
        .map_err(Failure::input)
}

pub fn run(args: BatchArgs) -> Result<(), Failure> {
    let (index, count) = shard(args.shard.as_deref())?;
    let items = read_manifest(&args.manifest)?;
    let root = args.manifest.parent().unwrap_or(Path::new(".")).to_path_buf();
    let status_dir = args.out.join(".medico-batch");
    std::fs::create_dir_all(&status_dir)
        .with_context(|| format!("{}: cannot create", status_dir.display()))
        .map_err(Failure::input)?;
    let statuses = read_statuses(&status_dir);
    let status_path = status_dir.join(format!("status-{index}-of-{count}.jsonl"));
    let mut status_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&status_path)
        .with_context(|| format!("{}: cannot open", status_path.display()))
        .map_err(Failure::input)?;
    let mine: Vec<&Item> = items.iter().skip(index).step_by(count).collect();
    let mut summary = Summary {
        shard: format!("{index}/{count}"),
        items: mine.len(),
        ..Summary::default()
    };
    let mut busy = 0.0;
    for (n, item) in mine.iter().enumerate() {
        let output = args.out.join(&item.output);
        let progress = format!("[{}/{}] {}", n + 1, mine.len(), item.output);
        if is_done(statuses.get(&item.output), &output) {
            summary.skipped += 1;
            eprintln!("{progress}: done before, skipped");
            continue;
        }
        if let Some(parent) = output.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("{}: cannot create", parent.display()))
                .map_err(Failure::input)?;
        }
        let started = Instant::now();
        let result = run_item(&segment_line(&args, item, &root, &output));
        let seconds = started.elapsed().as_secs_f64();
        busy += seconds;
        let status = Status {
            output: item.output.clone(),
            sha256: result.as_ref().ok().and_then(|()| sha256_of(&output)),
            seconds,
            error: result.err(),
        };
        record(&mut status_file, &status_path, &status)?;
        match &status.error {
            None => {
                summary.done += 1;
                eprintln!("{progress}: done in {seconds:.1} s");
            }
            Some(error) => {
                summary.failed += 1;
                eprintln!("{progress}: failed: {error}");
                summary.failures.push(status);
            }
        }
    }
    let ran = summary.done + summary.failed;
    summary.seconds_per_item = (ran > 0).then(|| busy / ran as f64);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).expect("a summary serializes")
        );
    }
    eprintln!(
        "shard {}: {} items, {} done, {} skipped (done before), {} failed{}",
        summary.shard,
        summary.items,
        summary.done,
        summary.skipped,
        summary.failed,
        summary
            .seconds_per_item
            .map(|s| format!(", {s:.1} s per item"))
            .unwrap_or_default()
    );
    match summary.failed {
        0 => Ok(()),
        failed => Err(Failure::input(anyhow!(
            "{failed} of {} items failed (errors in {})",
            summary.items,
            status_path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_come_from_the_flag_slurm_or_torchrun() {
        assert_eq!(shard(Some("1/4")).unwrap(), (1, 4));
        assert!(shard(Some("4/4")).is_err());
        assert!(shard(Some("x")).is_err());
    }
}
