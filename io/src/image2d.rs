//! 2D images (PNG, TIFF; 8/16-bit and float gray, RGB, RGBA) in, binary mask PNGs out.
//!
//! 8-bit images are used as they are unless an intensity mapping is asked for (as `SamPredictor` uses
//! them); 16-bit and float images go through an [`Intensity`] mapping (default: per-image 1st–99th
//! percentile, the normalization MedicoSAM was trained with). Masks are written to a temporary file in
//! the destination folder and renamed into place.

use std::path::Path;

use image::{DynamicImage, GrayImage, ImageDecoder};

use crate::atomic_output::{persist, temp_beside};
use crate::input::{Declared, ReadLimits};
use crate::intensity::Intensity;
use crate::IoError;

/// An RGB image ready for the predictor.
#[derive(Debug, Clone)]
pub struct RgbImage {
    /// Row-major `[h, w, 3]` pixels.
    pub pixels: Vec<u8>,
    /// Height and width.
    pub hw: (usize, usize),
    /// How intensities were mapped to 0–255.
    pub intensity: String,
}

impl RgbImage {
    /// Gray values mapped with `intensity`, copied to the three channels.
    pub fn from_gray(values: &[f32], hw: (usize, usize), intensity: Intensity) -> Self {
        Self {
            pixels: intensity.apply_rgb(values),
            hw,
            intensity: intensity.to_string(),
        }
    }
}

/// The pixels of a decoded 2D image.
#[derive(Debug, Clone)]
pub enum Pixels {
    /// 8-bit RGB, row-major `[h, w, 3]`.
    Rgb8(Vec<u8>),
    /// 8-bit gray, row-major `[h, w]`.
    Gray8(Vec<u8>),
    /// Gray of a higher bit depth or float, row-major `[h, w]`.
    Gray(Vec<f32>),
}

/// A decoded 2D image.
#[derive(Debug, Clone)]
pub struct Image2d {
    /// The pixels.
    pub pixels: Pixels,
    /// Height and width.
    pub hw: (usize, usize),
}

impl Image2d {
    /// Gray values of the image (BT.601 luma for RGB).
    pub fn gray(&self) -> Vec<f32> {
        match &self.pixels {
            Pixels::Rgb8(rgb) => rgb
                .chunks_exact(3)
                .map(|p| 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32)
                .collect(),
            Pixels::Gray8(g) => g.iter().map(|&v| v as f32).collect(),
            Pixels::Gray(g) => g.clone(),
        }
    }

    /// The RGB input for SAM: 8-bit images as they are unless `explicit` asks for a mapping; other
    /// images through `explicit`, else `default`. An explicit mapping on an RGB image is refused
    /// (it would drop the colour).
    pub fn to_rgb(&self, explicit: Option<Intensity>, default: Intensity) -> Result<RgbImage, RgbIntensityError> {
        match (&self.pixels, explicit) {
            (Pixels::Rgb8(rgb), None) => Ok(RgbImage {
                pixels: rgb.clone(),
                hw: self.hw,
                intensity: "none (8-bit image used as is)".into(),
            }),
            (Pixels::Gray8(g), None) => Ok(RgbImage {
                pixels: g.iter().flat_map(|&v| [v, v, v]).collect(),
                hw: self.hw,
                intensity: "none (8-bit image used as is)".into(),
            }),
            (Pixels::Rgb8(_), Some(i)) => Err(RgbIntensityError(i)),
            (_, Some(i)) => Ok(RgbImage::from_gray(&self.gray(), self.hw, i)),
            (Pixels::Gray(g), None) => Ok(RgbImage::from_gray(g, self.hw, default)),
        }
    }
}

/// An intensity mapping asked of an 8-bit RGB image.
#[derive(Debug, thiserror::Error)]
#[error("--intensity {0} applies to gray images; this is an 8-bit RGB image, used as is without it")]
pub struct RgbIntensityError(pub Intensity);

/// Reads a 2D image for segmentation.
pub fn read_image(path: &Path) -> Result<Image2d, IoError> {
    read_image_within(path, &ReadLimits::UNLIMITED)
}

/// Reads a 2D image, refusing with [`IoError::TooLarge`] one whose header declares more pixels (or more
/// decoded bytes) than `limits` allow, before it is decoded.
pub fn read_image_within(path: &Path, limits: &ReadLimits) -> Result<Image2d, IoError> {
    let bytes = std::fs::read(path).map_err(|e| IoError::read(path, e))?;
    image_from_bytes_within(path, &bytes, limits)
}

/// A 2D image from a PNG or TIFF file's bytes; `path` names it in errors. The decoder's default limits
/// (512 MB per image) bound what a corrupted header can make it allocate.
pub fn image_from_bytes(path: &Path, bytes: &[u8]) -> Result<Image2d, IoError> {
    image_from_bytes_within(path, bytes, &ReadLimits::UNLIMITED)
}

/// A 2D image from a PNG or TIFF file's bytes, refusing with [`IoError::TooLarge`] one whose header declares
/// more pixels than `limits` allow, or more bytes decoded than 4 a pixel, before it is decoded.
pub fn image_from_bytes_within(path: &Path, bytes: &[u8], limits: &ReadLimits) -> Result<Image2d, IoError> {
    let reader = || {
        image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| IoError::read(path, e))
    };
    if *limits != ReadLimits::UNLIMITED {
        // A decoder reads the header only; one that cannot be made is left to `decode` to report.
        if let Ok(decoder) = reader()?.into_decoder() {
            let (w, h) = decoder.dimensions();
            let voxels = u64::from(w) * u64::from(h);
            limits.check(
                path,
                &Declared {
                    voxels,
                    data_bytes: decoder.total_bytes(),
                    layout: format!("{:?}, {w}x{h}", decoder.color_type()),
                },
            )?;
        }
    }
    let decoded = reader()?
        .decode()
        .map_err(|e| IoError::corrupt(path, "not a readable PNG/TIFF image (truncated or corrupt?)", e))?;
    let hw = (decoded.height() as usize, decoded.width() as usize);
    if hw.0 == 0 || hw.1 == 0 {
        return Err(IoError::unusable(path, "image is empty"));
    }
    let pixels = match decoded {
        DynamicImage::ImageLuma8(g) => Pixels::Gray8(g.into_raw()),
        DynamicImage::ImageLumaA8(_) => Pixels::Gray8(decoded.to_luma8().into_raw()),
        DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_) => Pixels::Rgb8(decoded.to_rgb8().into_raw()),
        DynamicImage::ImageLuma16(g) => Pixels::Gray(g.into_raw().into_iter().map(f32::from).collect()),
        other => Pixels::Gray(other.to_luma32f().into_raw()),
    };
    Ok(Image2d { pixels, hw })
}

/// Writes a binary mask as an 8-bit PNG (0 / 255) atomically: temporary file, then rename.
pub fn write_mask_png(path: &Path, mask: &[bool], (h, w): (usize, usize)) -> Result<(), IoError> {
    let image = GrayImage::from_raw(
        w as u32,
        h as u32,
        mask.iter().map(|&m| if m { 255 } else { 0 }).collect(),
    )
    .ok_or_else(|| IoError::write(path, "mask size does not match"))?;
    save_png_atomically(path, &DynamicImage::ImageLuma8(image))
}

/// Saves an image as PNG through a temporary file in the destination folder and a rename.
pub fn save_png_atomically(path: &Path, image: &DynamicImage) -> Result<(), IoError> {
    let temp = temp_beside(path, ".png")?;
    image
        .save_with_format(temp.path(), image::ImageFormat::Png)
        .map_err(|e| IoError::write(path, e))?;
    persist(temp, path)
}
