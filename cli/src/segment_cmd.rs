//! `medico-cli segment`: prompt-based segmentation of a 2D image with a bundle.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;
use medico_export::Bundle;
use medico_models::prompt::{BoxPrompt, Point};
use medico_runtime::image2d::{percentile_to_u8, read_image, write_mask_png, RgbImage};
use medico_runtime::predictor::{BackendChoice, Predictor};
use medico_runtime::volume::{is_nifti, read_nifti, write_mask_nifti, Plane, Volume};
use medico_runtime::RuntimeError;

use crate::Failure;

#[derive(Args)]
pub struct SegmentArgs {
    /// Input: a 2D image (PNG or TIFF; 8/16-bit gray, RGB) or a NIfTI volume (.nii, .nii.gz).
    input: PathBuf,
    /// Model bundle folder (see `export` and `models pull`).
    #[arg(long)]
    model: PathBuf,
    /// Box prompt in pixels: x0,y0,x1,y1.
    #[arg(long = "box", value_name = "X0,Y0,X1,Y1")]
    bbox: Option<String>,
    /// Point prompt in pixels: x,y (positive) or x,y,label (1 positive, 0 negative); repeatable.
    #[arg(long = "point", value_name = "X,Y[,LABEL]")]
    points: Vec<String>,
    /// Return the multimask output and keep the mask with the highest predicted IoU.
    #[arg(long)]
    multimask: bool,
    /// Print a JSON report (score, bounding box, area) on standard output.
    #[arg(long)]
    json: bool,
    /// Output mask: PNG (0/255) for 2D input, NIfTI on the input's grid for volumes.
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
    /// Volumes: the slice to prompt (default: the central slice).
    #[arg(long)]
    slice: Option<usize>,
    /// Volumes: anatomical plane of the slice, resolved through the affine.
    #[arg(long, default_value = "axial", conflicts_with = "axis")]
    plane: Plane,
    /// Volumes: slice along this array axis instead of a plane.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..3))]
    axis: Option<u8>,
    /// 4D volumes: which volume (index along the 4th axis).
    #[arg(long)]
    volume: Option<usize>,
    /// Inference engine: auto (ONNX Runtime if its library loads, else tract), ort or tract.
    #[arg(long, default_value = "auto")]
    backend: BackendChoice,
    /// Threads for inference.
    #[arg(long, default_value_t = default_threads())]
    threads: usize,
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn numbers(text: &str, what: &str) -> Result<Vec<f64>, Failure> {
    text.split(',')
        .map(|v| v.trim().parse::<f64>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| Failure::usage(anyhow!("{what} '{text}': expected comma-separated numbers")))
}

fn parse_point(text: &str) -> Result<Point, Failure> {
    let v = numbers(text, "--point")?;
    let positive = match v.as_slice() {
        [_, _] => true,
        [_, _, l] if *l == 1.0 => true,
        [_, _, l] if *l == 0.0 => false,
        _ => {
            return Err(Failure::usage(anyhow!(
                "--point '{text}': expected x,y or x,y,label with label 0 or 1"
            )))
        }
    };
    Ok(Point {
        x: v[0],
        y: v[1],
        positive,
    })
}

fn parse_box(text: &str) -> Result<BoxPrompt, Failure> {
    match numbers(text, "--box")?.as_slice() {
        [x0, y0, x1, y1] => Ok(BoxPrompt {
            x0: *x0,
            y0: *y0,
            x1: *x1,
            y1: *y1,
        }),
        _ => Err(Failure::usage(anyhow!("--box '{text}': expected x0,y0,x1,y1"))),
    }
}

fn runtime_failure(e: RuntimeError) -> Failure {
    match e {
        RuntimeError::Model { .. } | RuntimeError::Backend(_) => Failure::model(e),
        _ => Failure::input(e),
    }
}

pub fn run(args: SegmentArgs) -> Result<(), Failure> {
    let points = args
        .points
        .iter()
        .map(|p| parse_point(p))
        .collect::<Result<Vec<_>, _>>()?;
    let bbox = args.bbox.as_deref().map(parse_box).transpose()?;
    if points.is_empty() && bbox.is_none() {
        return Err(Failure::usage(anyhow!("give a prompt: --box and/or --point")));
    }
    if same_file(&args.input, &args.output) {
        return Err(Failure::input(anyhow!(
            "{}: the output would overwrite the input; choose another -o",
            args.output.display()
        )));
    }
    let source = if is_nifti(&args.input) {
        Source::volume(&args)?
    } else {
        Source::Flat(read_image(&args.input).map_err(runtime_failure)?)
    };
    let image = source.image();
    let (h, w) = image.hw;
    let where_ = match &source {
        Source::Flat(_) => args.input.display().to_string(),
        Source::Slice { axis, index, .. } => format!("{} (slice {index} along axis {axis})", args.input.display()),
    };
    for p in &points {
        if !(0.0..=w as f64).contains(&p.x) || !(0.0..=h as f64).contains(&p.y) {
            return Err(Failure::input(anyhow!(
                "{where_}: point ({}, {}) lies outside the {w}x{h} image",
                p.x,
                p.y
            )));
        }
    }
    if let Some(b) = &bbox {
        if b.x1 <= b.x0 || b.y1 <= b.y0 {
            return Err(Failure::input(anyhow!(
                "{where_}: box ({}, {}, {}, {}) is empty or inverted (need x0 < x1 and y0 < y1)",
                b.x0,
                b.y0,
                b.x1,
                b.y1
            )));
        }
        if b.x0 < 0.0 || b.y0 < 0.0 || b.x1 > w as f64 || b.y1 > h as f64 {
            return Err(Failure::input(anyhow!(
                "{where_}: box ({}, {}, {}, {}) extends outside the {w}x{h} image",
                b.x0,
                b.y0,
                b.x1,
                b.y1
            )));
        }
    }
    let bundle = Bundle::open(&args.model).map_err(Failure::model)?;
    let mut predictor = Predictor::open(&bundle, args.backend, args.threads).map_err(runtime_failure)?;
    predictor.set_image(&image.pixels, image.hw).map_err(runtime_failure)?;
    let prediction = predictor
        .predict(&points, bbox.as_ref(), None, args.multimask)
        .map_err(runtime_failure)?;
    let best = prediction.best();
    let threshold = predictor.config().mask_threshold as f32;
    let mask: Vec<bool> = prediction.logits[best].iter().map(|&l| l > threshold).collect();
    let area = mask.iter().filter(|&&m| m).count();
    let pixel_mm2 = source.write_mask(&args.output, &mask).map_err(runtime_failure)?;
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for (i, _) in mask.iter().enumerate().filter(|(_, &m)| m) {
        let (y, x) = (i / w, i % w);
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1));
    }
    let bbox_json = if area > 0 {
        serde_json::json!([x0, y0, x1, y1])
    } else {
        serde_json::Value::Null
    };
    if args.json {
        let report = serde_json::json!({
            "input": args.input.display().to_string(),
            "output": args.output.display().to_string(),
            "backend": predictor.engine_name(),
            "mask_index": best,
            "score": prediction.iou[best],
            "bbox": bbox_json,
            "area_px": area,
            "area_mm2": pixel_mm2.map(|a| a * area as f64),
            "slice": source.slice_report(),
            "intensity": image.intensity,
        });
        println!("{report:#}");
    } else {
        println!(
            "wrote {} ({area} px, predicted IoU {:.3}, {})",
            args.output.display(),
            prediction.iou[best],
            predictor.engine_name()
        );
    }
    Ok(())
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// What is being segmented: a 2D image, or one slice of a volume.
enum Source {
    Flat(RgbImage),
    Slice {
        volume: Box<Volume>,
        axis: usize,
        index: usize,
        image: RgbImage,
    },
}

impl Source {
    fn volume(args: &SegmentArgs) -> Result<Self, Failure> {
        let volume = read_nifti(&args.input, args.volume).map_err(runtime_failure)?;
        let axis = match args.axis {
            Some(a) => a as usize,
            None => volume.axis_for_plane(args.plane),
        };
        let count = volume.slices(axis);
        let index = args.slice.unwrap_or(count / 2);
        if index >= count {
            return Err(Failure::input(anyhow!(
                "{}: slice {index} is outside the volume ({count} slices along axis {axis})",
                args.input.display()
            )));
        }
        let (values, hw) = volume.slice(axis, index);
        let gray = percentile_to_u8(&values, 1.0, 99.0);
        let image = RgbImage {
            pixels: gray.iter().flat_map(|&v| [v, v, v]).collect(),
            hw,
            intensity: "percentile:1,99".into(),
        };
        Ok(Self::Slice {
            volume: Box::new(volume),
            axis,
            index,
            image,
        })
    }

    fn image(&self) -> &RgbImage {
        match self {
            Self::Flat(image) | Self::Slice { image, .. } => image,
        }
    }

    /// Writes the mask; returns the area of one pixel in mm² when known.
    fn write_mask(&self, path: &std::path::Path, mask: &[bool]) -> Result<Option<f64>, RuntimeError> {
        match self {
            Self::Flat(image) => write_mask_png(path, mask, image.hw).map(|_| None),
            Self::Slice {
                volume,
                axis,
                index,
                image,
            } => {
                let out = volume.mask_from_slice(*axis, *index, mask, image.hw);
                write_mask_nifti(path, &volume.header, &out)?;
                let spacing = volume.spacing();
                let in_plane: Vec<f64> = (0..3).filter(|a| a != axis).map(|a| spacing[a]).collect();
                Ok(Some(in_plane[0] * in_plane[1]))
            }
        }
    }

    fn slice_report(&self) -> serde_json::Value {
        match self {
            Self::Flat(_) => serde_json::Value::Null,
            Self::Slice { axis, index, .. } => serde_json::json!({"axis": axis, "index": index}),
        }
    }
}
