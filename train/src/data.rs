//! Training samples from NIfTI volumes with label volumes, sliced along an array axis: each slice gets the
//! per-image 1st–99th percentile normalisation MedicoSAM trains with, SamPredictor's resize (longest side to
//! the model's input, Pillow bilinear) / normalise / pad, and one object per label value present with enough
//! pixels (the label map resized with nearest neighbour onto the same grid). Samples are grouped into
//! [`Batch`]es with at most a given number of objects per image, chosen by a seeded generator.

use std::path::{Path, PathBuf};

use medico_models::prompt::resized_size;
use medico_models::SamConfig;
use medico_runtime::intensity::Intensity;
use medico_runtime::nifti_io::read_nifti;
use medico_runtime::preprocess::encoder_input;
use rand::seq::SliceRandom;
use rand::Rng;
use tch::Tensor;

use crate::objective::Batch;

/// A volume and its labels.
#[derive(Debug, Clone)]
pub struct VolumeSource {
    /// The image volume.
    pub image: PathBuf,
    /// The label volume on the same grid (0 = background).
    pub labels: PathBuf,
    /// The slicing axis.
    pub axis: usize,
    /// Label values to train on (`None`: every non-zero value).
    pub values: Option<Vec<i64>>,
}

/// One slice ready for the model.
pub struct SliceSample {
    /// Preprocessed image `[3, S, S]`, row-major.
    pub input: Vec<f32>,
    /// Object masks `S x S` (row-major), one per label value present.
    pub objects: Vec<Vec<bool>>,
}

/// Nearest-neighbour resize of a label image (`[h, w]` row-major) to `(rh, rw)`, padded to `side x side` with 0.
fn resize_labels(labels: &[f32], (h, w): (usize, usize), (rh, rw): (usize, usize), side: usize) -> Vec<f32> {
    let mut out = vec![0.0; side * side];
    for y in 0..rh {
        let sy = ((y as f64 + 0.5) * h as f64 / rh as f64).floor().min((h - 1) as f64) as usize;
        for x in 0..rw {
            let sx = ((x as f64 + 0.5) * w as f64 / rw as f64).floor().min((w - 1) as f64) as usize;
            out[y * side + x] = labels[sy * w + sx];
        }
    }
    out
}

fn error(path: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: {e}", path.display())
}

/// Every slice of `source` that holds at least one object of `min_pixels` pixels (at model resolution).
pub fn slice_samples(source: &VolumeSource, config: &SamConfig, min_pixels: usize) -> Result<Vec<SliceSample>, String> {
    let image = read_nifti(&source.image, None).map_err(|e| e.to_string())?;
    let labels = read_nifti(&source.labels, None).map_err(|e| e.to_string())?;
    if image.shape() != labels.shape() {
        return Err(error(
            &source.labels,
            format!("grid {:?} differs from the image's {:?}", labels.shape(), image.shape()),
        ));
    }
    if source.axis > 2 {
        return Err(error(
            &source.image,
            format!("axis {} (expected 0, 1 or 2)", source.axis),
        ));
    }
    let side = config.img_size;
    let mut samples = Vec::new();
    for index in 0..image.slices(source.axis) {
        let (label_values, hw) = labels.slice(source.axis, index);
        let resized_hw = resized_size(hw.0, hw.1, side);
        let resized = resize_labels(&label_values, hw, resized_hw, side);
        let mut present: Vec<i64> = resized.iter().filter(|&&v| v != 0.0).map(|&v| v as i64).collect();
        present.sort_unstable();
        present.dedup();
        let objects: Vec<Vec<bool>> = present
            .into_iter()
            .filter(|v| source.values.as_ref().is_none_or(|wanted| wanted.contains(v)))
            .map(|v| resized.iter().map(|&l| l as i64 == v).collect::<Vec<bool>>())
            .filter(|m| m.iter().filter(|&&b| b).count() >= min_pixels)
            .collect();
        if objects.is_empty() {
            continue;
        }
        let (values, hw) = image.slice(source.axis, index);
        let rgb = Intensity::default().apply_rgb(&values);
        let (input, _) = encoder_input(&rgb, hw, side, config.pixel_mean, config.pixel_std);
        samples.push(SliceSample {
            input: input.iter().copied().collect(),
            objects,
        });
    }
    Ok(samples)
}

/// A batch of `samples` with at most `max_objects` objects per image, chosen at random.
pub fn make_batch(samples: &[&SliceSample], side: usize, max_objects: usize, rng: &mut impl Rng) -> Batch {
    let mut pixels = Vec::with_capacity(samples.len() * 3 * side * side);
    let mut objects = Vec::new();
    for (i, sample) in samples.iter().enumerate() {
        pixels.extend_from_slice(&sample.input);
        let mut order: Vec<usize> = (0..sample.objects.len()).collect();
        order.shuffle(rng);
        for &k in order.iter().take(max_objects) {
            objects.push((i, sample.objects[k].clone()));
        }
    }
    Batch {
        images: Tensor::from_slice(&pixels).reshape([samples.len() as i64, 3, side as i64, side as i64]),
        objects,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_resize_by_nearest_neighbour_and_pad_with_background() {
        // 2x4 labels to 1x2 (longest side 2), padded to 2x2.
        let labels = [1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0];
        assert_eq!(resize_labels(&labels, (2, 4), (1, 2), 2), vec![1.0, 2.0, 0.0, 0.0]);
    }
}
