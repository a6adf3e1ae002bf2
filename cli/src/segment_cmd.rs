//! `medico-cli segment`: prompt-based segmentation of a 2D image or one slice of a volume (NIfTI, DICOM)
//! with a bundle; writes the mask (PNG for 2D, NIfTI on the input's grid for volumes) and a preview.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::Args;
use medico_bundle::Bundle;
use medico_io::image2d::{write_mask_png, Image2d, RgbImage};
use medico_io::input::{open_scan, Scan};
use medico_io::intensity::Intensity;
use medico_io::label_source::{read_labels_for, roi_number};
use medico_io::prompts_file::{read_prompts_file, Annotation};
use medico_io::volume::{Plane, Volume};
use medico_models::clicks::tight_box;
use medico_models::prompt::{BoxPrompt, Point};
use medico_runtime::prediction::interaction::Interaction;
use medico_runtime::prediction::predictor::{BackendChoice, Predictor};
use medico_runtime::prediction::preview::write_preview;
use serde::Serialize;

use crate::common::{bundle_intensity, runtime_failure};
use crate::progress::Spinner;
use crate::prompt_args::RawPrompts;
use crate::propagate_cmd::{PropagationArgs, PropagationJob};
use crate::Failure;

#[derive(Args)]
pub struct SegmentArgs {
    /// Input: a 2D image (PNG/TIFF), a NIfTI volume (.nii, .nii.gz), a DICOM file or a folder holding one
    /// DICOM series.
    input: PathBuf,
    /// Model: a bundle folder (see `export`), `medico-tiny` (built in) or a model installed by `models pull`;
    /// default: medico-lite (`models pull medico-lite`: LiteMedSAM finetuned by medico).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Box prompt: x0,y0,x1,y1 in pixels of the slice (x1/y1 exclusive), or x0,y0,z0,x1,y1,z1 with --world.
    #[arg(long = "box", value_name = "X0,Y0,X1,Y1", allow_hyphen_values = true)]
    bbox: Option<String>,
    /// Point prompt: x,y[,label] in pixels (label 1 positive, 0 negative), or x,y,z[,label] with --world;
    /// repeatable.
    #[arg(long = "point", value_name = "X,Y[,LABEL]", allow_hyphen_values = true)]
    points: Vec<String>,
    /// Prompts are RAS millimetres (world coordinates of the volume), not slice pixels; the slice is the
    /// one they lie on unless --slice is given.
    #[arg(long)]
    world: bool,
    /// Decode every prompt at once with the multimask outputs, one kept by the model's rule. Without it, a
    /// model that declares a composition of correction rounds (medico-lite: docs/corrections.md) replays the
    /// prompts in the order given — the box (or the first click) starts, each further click is a correction
    /// round with the previous mask fed back — and other models decode them at once as SAM's predictor does;
    /// a lone click always gets the multimask outputs.
    #[arg(long)]
    multimask: bool,
    /// Print a JSON report (score, bounding box, area, volume, intensity) on standard output.
    #[arg(long)]
    json: bool,
    /// Output mask: PNG (0/255) for 2D input; for volumes, on the input's grid, NIfTI (.nii/.nii.gz), NRRD
    /// (.nrrd) or, for DICOM input, a DICOM SEG (.dcm) referencing the source series.
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
    /// The output's format when its name does not say: `rtstruct` writes a `.dcm` as a DICOM RT Structure
    /// Set (contours per slice) instead of a DICOM SEG.
    #[arg(long, value_enum)]
    format: Option<crate::mask_output::MaskFormat>,
    /// The segment's name in a DICOM SEG output (the ROI's in an RT Structure Set).
    #[arg(long, default_value = "segment")]
    label: String,
    /// Continue from an existing segmentation of the volume instead of starting anew: a mask or label map
    /// (NIfTI, NRRD, DICOM SEG) or an RT Structure Set on the input's grid; its mask on the prompted slice
    /// starts (its box, and the mask fed back as the previous round) and each --point corrects it.
    #[arg(long, value_name = "FILE")]
    from: Option<PathBuf>,
    /// With --from: the label value (a label map) or the ROI's name or number (an RT Structure Set) to
    /// continue; default: every non-zero voxel.
    #[arg(long, value_name = "LABEL|ROI", requires = "from")]
    from_label: Option<String>,
    /// Also write a PNG of the slice with the mask outline and the prompts.
    #[arg(long, value_name = "PNG")]
    preview: Option<PathBuf>,
    /// Intensity mapping to 0–255: minmax, percentile:LO,HI, nonzero-percentile:LO,HI, window:WIDTH,LEVEL,
    /// ct-abdomen, ct-lung, ct-brain, ct-bone or mr. Default: the bundle's (MedicoSAM: percentile:1,99);
    /// 8-bit 2D images are used as they are unless this is given.
    #[arg(long)]
    intensity: Option<Intensity>,
    /// Volumes: the slice to prompt (default: the central slice, or the one --world prompts lie on).
    #[arg(long)]
    slice: Option<usize>,
    /// Volumes: anatomical plane of the slice, resolved through the affine (default: axial, or the only
    /// plane of a single-slice image).
    #[arg(long, conflicts_with = "axis")]
    plane: Option<Plane>,
    /// Volumes: slice along this array axis instead of a plane.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..3))]
    axis: Option<u8>,
    /// 4D NIfTI: which volume (index along the 4th axis).
    #[arg(long)]
    volume: Option<usize>,
    /// Volumes: label every slice with the model's semantic segmentation head (no prompts) and write a
    /// label map on the input's grid (.nii, .nii.gz or .nrrd; value k = class k of the model's list, 0 =
    /// background); --json reports each class's volume. Slice embeddings come from, and go to, the same
    /// cache as interactive segmentation.
    #[arg(long, conflicts_with_all = ["bbox", "points", "world", "multimask", "preview", "propagate", "prompts"])]
    semantic: bool,
    /// Inference engine: auto (ONNX Runtime if its library loads, else tract), ort or tract.
    #[arg(long, default_value = "auto")]
    backend: BackendChoice,
    /// Threads for inference.
    #[arg(long, default_value_t = crate::common::default_threads())]
    threads: usize,
    #[command(flatten)]
    propagation: PropagationArgs,
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// What is being segmented: a 2D image, or one slice of a volume.
enum Target {
    Flat(RgbImage),
    Slice {
        volume: Box<Volume>,
        axis: usize,
        index: usize,
        image: RgbImage,
    },
}

impl Target {
    fn image(&self) -> &RgbImage {
        match self {
            Target::Flat(image) | Target::Slice { image, .. } => image,
        }
    }

    /// The input, and for a volume the slice, as error messages name them.
    fn describe(&self, input: &Path) -> String {
        match self {
            Target::Flat(_) => input.display().to_string(),
            Target::Slice { axis, index, .. } => format!("{} (slice {index} along axis {axis})", input.display()),
        }
    }
}

/// A target with its prompts, in its pixels.
struct Prompted {
    target: Target,
    points: Vec<Point>,
    bbox: Option<BoxPrompt>,
}

/// What the input asks for: one slice (or image) to segment, or a propagation through a volume.
enum Job {
    Segment(Prompted),
    Propagate(Box<Volume>, usize, Vec<Annotation>),
}

/// `segment --json`.
#[derive(Serialize)]
struct SegmentReport {
    input: String,
    output: String,
    preview: Option<String>,
    backend: &'static str,
    /// The decoder output kept: 0 the single-mask output, 1–3 the multimask outputs.
    mask_index: usize,
    score: f32,
    bbox: Option<[usize; 4]>,
    area_px: usize,
    area_mm2: Option<f64>,
    volume_ml: Option<f64>,
    slice: Option<SliceReport>,
    intensity: String,
}

/// Where a volume's mask was prompted.
#[derive(Serialize)]
struct SliceReport {
    axis: usize,
    index: usize,
    plane: String,
}

/// Checks prompts against the image size: points inside, boxes non-empty and inside.
fn check_prompts(
    where_: &str,
    points: &[Point],
    bbox: Option<&BoxPrompt>,
    (h, w): (usize, usize),
) -> Result<(), Failure> {
    for p in points {
        if !(0.0..=w as f64).contains(&p.x) || !(0.0..=h as f64).contains(&p.y) {
            return Err(Failure::input(anyhow!(
                "{where_}: point ({}, {}) lies outside the {w}x{h} image",
                p.x,
                p.y
            )));
        }
    }
    if let Some(b) = bbox {
        let text = format!("({}, {}, {}, {})", b.x0, b.y0, b.x1, b.y1);
        if b.x1 <= b.x0 || b.y1 <= b.y0 {
            return Err(Failure::input(anyhow!(
                "{where_}: box {text} is empty or inverted (need x0 < x1 and y0 < y1)"
            )));
        }
        if b.x0 < 0.0 || b.y0 < 0.0 || b.x1 > w as f64 || b.y1 > h as f64 {
            return Err(Failure::input(anyhow!(
                "{where_}: box {text} extends outside the {w}x{h} image"
            )));
        }
    }
    Ok(())
}

/// The array axis to slice: --axis, --plane, the only axis of a single-slice volume, else axial.
fn choose_axis(volume: &Volume, axis: Option<u8>, plane: Option<Plane>) -> usize {
    if let Some(a) = axis {
        return a as usize;
    }
    if let Some(p) = plane {
        return volume.axis_for_plane(p);
    }
    let singleton: Vec<usize> = (0..3).filter(|&a| volume.slices(a) == 1).collect();
    match singleton.as_slice() {
        [a] => *a,
        _ => volume.axis_for_plane(Plane::Axial),
    }
}

pub fn run(args: SegmentArgs) -> Result<(), Failure> {
    if args.semantic {
        return run_semantic(&args);
    }
    let raw = raw_prompts(&args)?;
    check_outputs(&args)?;
    check_from(&args)?;
    let model_dir = crate::default_model::resolve_model(args.model.as_deref()).map_err(Failure::model)?;
    let bundle = Bundle::open(&model_dir).map_err(Failure::model)?;
    let default_intensity = bundle_intensity(&bundle)?;
    let job = match open_scan(&args.input, args.volume).map_err(runtime_failure)? {
        Scan::Image(image) => Job::Segment(image_job(&args, &image, raw.as_ref(), default_intensity)?),
        Scan::Volume(volume) => volume_job(&args, volume, raw.as_ref(), default_intensity)?,
    };
    let prompted = match job {
        Job::Segment(prompted) => prompted,
        Job::Propagate(volume, axis, annotations) => {
            let propagation = PropagationJob {
                input: &args.input,
                output: &args.output,
                bundle: &bundle,
                axis,
                intensity: args.intensity.unwrap_or(default_intensity),
                backend: args.backend,
                threads: args.threads,
                annotations,
                multimask: args.multimask,
                json: args.json,
                preview: args.preview.as_deref(),
                label: &args.label,
                format: args.format,
            };
            return crate::propagate_cmd::run(propagation, *volume, &args.propagation);
        }
    };
    segment(&args, &bundle, &prompted)
}

/// `segment --semantic`: the label map of a whole volume.
fn run_semantic(args: &SegmentArgs) -> Result<(), Failure> {
    crate::semantic_cmd::check_label_output(&args.output, args.format, &args.input)?;
    check_outputs(args)?;
    let model_dir = crate::default_model::resolve_model(args.model.as_deref()).map_err(Failure::model)?;
    let bundle = Bundle::open(&model_dir).map_err(Failure::model)?;
    let default_intensity = bundle_intensity(&bundle)?;
    let volume = match open_scan(&args.input, args.volume).map_err(runtime_failure)? {
        Scan::Volume(volume) => volume,
        Scan::Image(_) => {
            return Err(Failure::usage(anyhow!(
                "{}: --semantic labels volumes (NIfTI, NRRD, DICOM); this is a 2D image",
                args.input.display()
            )))
        }
    };
    let job = crate::semantic_cmd::SemanticJob {
        input: &args.input,
        output: &args.output,
        format: args.format,
        bundle: &bundle,
        axis: choose_axis(&volume, args.axis, args.plane),
        intensity: args.intensity.unwrap_or(default_intensity),
        backend: args.backend,
        threads: args.threads,
        json: args.json,
    };
    crate::semantic_cmd::run(job, *volume, &args.propagation)
}

/// The prompts of `--box`/`--point`, or `None` when they come from `--prompts`.
fn raw_prompts(args: &SegmentArgs) -> Result<Option<RawPrompts>, Failure> {
    match &args.propagation.prompts {
        Some(_) if args.bbox.is_some() || !args.points.is_empty() || args.world => Err(Failure::usage(anyhow!(
            "give the prompts either with --box/--point or in --prompts, not both"
        ))),
        Some(_) => Ok(None),
        None => RawPrompts::parse(args.bbox.as_deref(), &args.points, args.world).map(Some),
    }
}

/// Refuses outputs that would overwrite the input, and a DICOM SEG for an input that is not DICOM.
fn check_outputs(args: &SegmentArgs) -> Result<(), Failure> {
    crate::mask_output::check_mask_output(&args.output, args.format, &args.input, &args.label)?;
    for out in std::iter::once(&args.output).chain(args.preview.as_ref()) {
        if same_file(&args.input, out) || out == &args.input {
            return Err(Failure::input(anyhow!(
                "{}: the output would overwrite the input; choose another path",
                out.display()
            )));
        }
    }
    Ok(())
}

/// A 2D image with its prompts; the volume-only options are refused.
fn image_job(
    args: &SegmentArgs,
    image: &Image2d,
    raw: Option<&RawPrompts>,
    default_intensity: Intensity,
) -> Result<Prompted, Failure> {
    let volume_only = args.world || args.slice.is_some() || args.axis.is_some() || args.plane.is_some();
    if volume_only || args.propagation.enabled() {
        return Err(Failure::usage(anyhow!(
            "{}: --world, --slice, --plane, --axis and propagation apply to volumes; this is a 2D image",
            args.input.display()
        )));
    }
    let (points, bbox) = raw.map(|r| r.in_pixels()).unwrap_or_default();
    let target = flat_target(&args.input, image, args.intensity, default_intensity)?;
    Ok(Prompted { target, points, bbox })
}

/// The slice to segment (or the annotations to propagate) of a volume.
fn volume_job(
    args: &SegmentArgs,
    volume: Box<Volume>,
    raw: Option<&RawPrompts>,
    default_intensity: Intensity,
) -> Result<Job, Failure> {
    let axis = choose_axis(&volume, args.axis, args.plane);
    let (points, bbox, prompt_slice) = match raw {
        Some(raw) if args.world => {
            let (p, b, k) = raw.on_slice_from_world(&volume, axis)?;
            (p, b, Some(k))
        }
        Some(raw) => {
            let (p, b) = raw.in_pixels();
            (p, b, None)
        }
        None => (Vec::new(), None, None),
    };
    let index = prompted_slice(args, &volume, axis, prompt_slice)?;
    if args.propagation.enabled() {
        let annotations = match &args.propagation.prompts {
            Some(file) => read_prompts_file(file).map_err(runtime_failure)?,
            None => vec![Annotation {
                slice: index,
                points,
                bbox,
            }],
        };
        let hw = volume.slice_hw(axis);
        for a in &annotations {
            let where_ = format!("{} (slice {} along axis {axis})", args.input.display(), a.slice);
            check_prompts(&where_, &a.points, a.bbox.as_ref(), hw)?;
        }
        return Ok(Job::Propagate(volume, axis, annotations));
    }
    let (values, hw) = volume.slice(axis, index);
    let image = RgbImage::from_gray(&values, hw, args.intensity.unwrap_or(default_intensity));
    let target = Target::Slice {
        volume,
        axis,
        index,
        image,
    };
    Ok(Job::Segment(Prompted { target, points, bbox }))
}

/// `--slice`, else the slice `--world` prompts lie on, else the central one; checked against the volume.
fn prompted_slice(
    args: &SegmentArgs,
    volume: &Volume,
    axis: usize,
    prompt_slice: Option<usize>,
) -> Result<usize, Failure> {
    let count = volume.slices(axis);
    let index = args.slice.or(prompt_slice).unwrap_or(count / 2);
    if index >= count {
        return Err(Failure::input(anyhow!(
            "{}: slice {index} is outside the volume ({count} slices along axis {axis})",
            args.input.display()
        )));
    }
    if let (Some(k), Some(s)) = (prompt_slice, args.slice) {
        if k != s {
            return Err(Failure::input(anyhow!(
                "{}: the --world prompts lie on slice {k}, not on --slice {s}",
                args.input.display()
            )));
        }
    }
    Ok(index)
}

/// Refuses `--from` with what it cannot go with: a box (the existing mask gives it), no click to correct
/// with, `--prompts`, `--propagate` or `--multimask`.
fn check_from(args: &SegmentArgs) -> Result<(), Failure> {
    let Some(from) = &args.from else {
        return Ok(());
    };
    let problem = if args.bbox.is_some() {
        Some("--box: the existing mask's box starts")
    } else if args.points.is_empty() {
        Some("no --point to correct it with")
    } else if args.propagation.prompts.is_some() || args.propagation.propagate {
        Some("--prompts or --propagate: --from corrects one slice")
    } else if args.multimask {
        Some("--multimask: corrections are single-mask rounds")
    } else {
        None
    };
    if let Some(problem) = problem {
        return Err(Failure::usage(anyhow!("--from {}: {problem}", from.display())));
    }
    if same_file(from, &args.output) || from == &args.output {
        return Err(Failure::input(anyhow!(
            "{}: the output would overwrite --from; choose another path",
            args.output.display()
        )));
    }
    Ok(())
}

/// With `--from`: the existing segmentation's mask on the prompted slice (`(rows, columns)` row-major).
fn continued_mask(args: &SegmentArgs, target: &Target) -> Result<Option<Vec<bool>>, Failure> {
    let Some(from) = &args.from else {
        return Ok(None);
    };
    let Target::Slice {
        volume, axis, index, ..
    } = target
    else {
        return Err(Failure::usage(anyhow!(
            "--from continues a segmentation of a volume; {} is a 2D image",
            args.input.display()
        )));
    };
    let labels = read_labels_for(from, volume, &args.input).map_err(runtime_failure)?;
    let wanted: Option<f32> = match &args.from_label {
        None => None,
        Some(text) => Some(match text.trim().parse::<f32>() {
            Ok(value) => value,
            Err(_) => roi_number(from, text).map_err(runtime_failure)? as f32,
        }),
    };
    let (values, _) = labels.slice(*axis, *index);
    let mask: Vec<bool> = values.iter().map(|&v| wanted.map_or(v != 0.0, |w| v == w)).collect();
    if !mask.contains(&true) {
        return Err(Failure::input(anyhow!(
            "{}: nothing to continue on slice {index} along axis {axis}{}",
            from.display(),
            args.from_label
                .as_ref()
                .map(|l| format!(" for '{l}'"))
                .unwrap_or_default()
        )));
    }
    Ok(Some(mask))
}

/// Encodes the target, decodes the prompts, writes the mask (and preview) and reports.
fn segment(args: &SegmentArgs, bundle: &Bundle, prompted: &Prompted) -> Result<(), Failure> {
    let Prompted { target, points, bbox } = prompted;
    let image = target.image();
    check_prompts(&target.describe(&args.input), points, bbox.as_ref(), image.hw)?;
    let mut predictor = Predictor::open(bundle, args.backend, args.threads).map_err(runtime_failure)?;
    let spinner = Spinner::start(format!(
        "encoding {}x{} image ({}, {} threads)",
        image.hw.1,
        image.hw.0,
        predictor.engine_name(),
        args.threads
    ));
    predictor.set_image(&image.pixels, image.hw).map_err(runtime_failure)?;
    spinner.finish();
    let mut interaction = Interaction::new(predictor.composition());
    let round = match continued_mask(args, target)? {
        Some(previous) => interaction.correct_mask(&mut predictor, &previous, image.hw, points),
        None if args.multimask => interaction.all_at_once(&mut predictor, points, bbox.as_ref()),
        None => interaction.replay(&mut predictor, points, bbox.as_ref()),
    }
    .map_err(runtime_failure)?;
    let mask = &round.mask;
    let measures = write_mask(args, bundle, target, mask)?;
    if let Some(preview) = &args.preview {
        write_preview(preview, image, mask, points, bbox.as_ref()).map_err(runtime_failure)?;
    }
    let area = mask.iter().filter(|&&m| m).count();
    if args.json {
        let report = SegmentReport {
            input: args.input.display().to_string(),
            output: args.output.display().to_string(),
            preview: args.preview.as_ref().map(|p| p.display().to_string()),
            backend: predictor.engine_name(),
            mask_index: round.output,
            score: round.predicted_iou,
            bbox: tight_box(mask, image.hw.1),
            area_px: area,
            area_mm2: measures.map(|m| m.pixel_mm2 * area as f64),
            volume_ml: measures.map(|m| m.voxel_mm3 * area as f64 / 1000.0),
            slice: slice_report(target),
            intensity: image.intensity.clone(),
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report serializes")
        );
    } else {
        println!(
            "wrote {} ({area} px, predicted IoU {:.3}, {}, intensity {})",
            args.output.display(),
            round.predicted_iou,
            predictor.engine_name(),
            image.intensity
        );
    }
    Ok(())
}

/// Pixel area and voxel volume of a volume's grid.
#[derive(Clone, Copy)]
struct Measures {
    pixel_mm2: f64,
    voxel_mm3: f64,
}

/// Writes the mask: PNG for a 2D image, a mask volume on the volume's grid for a slice (with its measures).
fn write_mask(
    args: &SegmentArgs,
    bundle: &Bundle,
    target: &Target,
    mask: &[bool],
) -> Result<Option<Measures>, Failure> {
    let output = &args.output;
    match target {
        Target::Flat(image) => {
            write_mask_png(output, mask, image.hw).map_err(runtime_failure)?;
            Ok(None)
        }
        Target::Slice {
            volume,
            axis,
            index,
            image,
        } => {
            let out = volume.mask_from_slice(*axis, *index, mask, image.hw);
            crate::mask_output::write_volume_mask(output, args.format, &args.input, volume, &out, bundle, &args.label)?;
            let spacing = volume.spacing();
            let (ax, ay) = Volume::in_plane_axes(*axis);
            Ok(Some(Measures {
                pixel_mm2: spacing[ax] * spacing[ay],
                voxel_mm3: spacing[0] * spacing[1] * spacing[2],
            }))
        }
    }
}

fn slice_report(target: &Target) -> Option<SliceReport> {
    match target {
        Target::Flat(_) => None,
        Target::Slice {
            volume, axis, index, ..
        } => Some(SliceReport {
            axis: *axis,
            index: *index,
            plane: format!("{:?}", volume.plane_of_axis(*axis)).to_lowercase(),
        }),
    }
}

fn flat_target(
    path: &Path,
    image: &Image2d,
    explicit: Option<Intensity>,
    default: Intensity,
) -> Result<Target, Failure> {
    image
        .to_rgb(explicit, default)
        .map(Target::Flat)
        .map_err(|e| Failure::usage(anyhow!("{}: {e}", path.display())))
}
