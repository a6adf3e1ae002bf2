//! 2D images (PNG, TIFF; 8/16-bit gray, RGB, RGBA) in, binary mask PNGs out.
//!
//! 8-bit images are used as they are (as `SamPredictor` does); 16-bit and float images are mapped to
//! 0–255 with the per-image 1st–99th percentile window, the normalization MedicoSAM was trained with.
//! Masks are written to a temporary file in the destination folder and renamed into place.

use std::path::Path;

use image::{DynamicImage, GrayImage};

use crate::RuntimeError;

/// An RGB image ready for the predictor.
pub struct RgbImage {
    /// Row-major `[h, w, 3]` pixels.
    pub pixels: Vec<u8>,
    /// Height and width.
    pub hw: (usize, usize),
    /// How intensities were mapped to 0–255.
    pub intensity: String,
}

fn input_error(path: &Path, message: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Input {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// Maps values to 0–255 with the `lo`–`hi` percentile window.
pub fn percentile_to_u8(values: &[f32], lo: f64, hi: f64) -> Vec<u8> {
    let mut sorted: Vec<f32> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return vec![0; values.len()];
    }
    sorted.sort_by(f32::total_cmp);
    let at = |q: f64| {
        // Linear interpolation between closest ranks, as numpy.percentile.
        let pos = q / 100.0 * (sorted.len() - 1) as f64;
        let i = pos.floor() as usize;
        let j = (i + 1).min(sorted.len() - 1);
        sorted[i] as f64 + (sorted[j] as f64 - sorted[i] as f64) * (pos - i as f64)
    };
    let (low, high) = (at(lo), at(hi));
    let range = (high - low).max(f64::EPSILON);
    values
        .iter()
        .map(|&v| {
            let unit = ((v as f64 - low) / range).clamp(0.0, 1.0);
            (unit * 255.0).round() as u8
        })
        .collect()
}

/// Reads a 2D image for segmentation.
pub fn read_image(path: &Path) -> Result<RgbImage, RuntimeError> {
    let reader = image::ImageReader::open(path)
        .map_err(|e| input_error(path, format!("cannot open: {e}")))?
        .with_guessed_format()
        .map_err(|e| input_error(path, format!("cannot read: {e}")))?;
    let decoded = reader.decode().map_err(|e| {
        input_error(
            path,
            format!("not a readable PNG/TIFF image (truncated or corrupt?): {e}"),
        )
    })?;
    let hw = (decoded.height() as usize, decoded.width() as usize);
    if hw.0 == 0 || hw.1 == 0 {
        return Err(input_error(path, "image is empty"));
    }
    let (pixels, intensity) = match decoded {
        DynamicImage::ImageLuma8(_)
        | DynamicImage::ImageLumaA8(_)
        | DynamicImage::ImageRgb8(_)
        | DynamicImage::ImageRgba8(_) => (
            decoded.to_rgb8().into_raw(),
            "none (8-bit image used as is)".to_string(),
        ),
        other => {
            let gray: Vec<f32> = other.to_luma32f().into_raw();
            let mapped = percentile_to_u8(&gray, 1.0, 99.0);
            (
                mapped.iter().flat_map(|&v| [v, v, v]).collect(),
                "percentile:1,99".to_string(),
            )
        }
    };
    Ok(RgbImage { pixels, hw, intensity })
}

/// Writes a binary mask as an 8-bit PNG (0 / 255) atomically: temporary file, then rename.
pub fn write_mask_png(path: &Path, mask: &[bool], (h, w): (usize, usize)) -> Result<(), RuntimeError> {
    let output_error = |e: &dyn std::fmt::Display| RuntimeError::Output {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let image = GrayImage::from_raw(
        w as u32,
        h as u32,
        mask.iter().map(|&m| if m { 255 } else { 0 }).collect(),
    )
    .ok_or_else(|| output_error(&"mask size does not match"))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let temp = tempfile::Builder::new()
        .prefix(".medico-mask-")
        .suffix(".png")
        .tempfile_in(dir)
        .map_err(|e| output_error(&e))?;
    image
        .save_with_format(temp.path(), image::ImageFormat::Png)
        .map_err(|e| output_error(&e))?;
    temp.persist(path).map_err(|e| output_error(&e.error))?;
    Ok(())
}
