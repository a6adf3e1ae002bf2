//! Semantic segmentation of a volume: the bundle's segmentation decoder (torch-em's UNETR) on each slice's
//! embedding — the same embeddings, from the same disk cache, as interactive segmentation uses — then
//! torch-em's post-processing (crop to the resized image, bilinear resize of each class's probabilities to
//! the slice's size) and the most probable class per pixel, written into a label volume on the input's grid.

use std::ops::Range;

use medico_bundle::{Bundle, GraphRole, SemanticHead};
use medico_models::prompt::resized_size;
use ndarray::{Array2, Array3, ArrayD, Axis};

use crate::engines::{open_engine, BackendChoice, Engine};
use crate::prediction::postprocess::upscale_logits;
use crate::prediction::predictor::required_graph;
use crate::volume::session::VolumeSession;
use crate::RuntimeError;
use medico_io::volume::Volume;

/// The segmentation decoder of a bundle on an engine, with what its channels mean.
pub struct SemanticSegmenter {
    engine: Box<dyn Engine>,
    head: SemanticHead,
    input_size: usize,
}

impl SemanticSegmenter {
    /// Opens `bundle`'s segmentation decoder; a bundle without one is refused with what is missing.
    pub fn open(bundle: &Bundle, backend: BackendChoice, threads: usize) -> Result<Self, RuntimeError> {
        let head = bundle
            .manifest
            .semantic
            .clone()
            .ok_or_else(|| RuntimeError::NoSemanticHead {
                dir: bundle.dir.clone(),
            })?;
        let graph = required_graph(bundle, GraphRole::SegmentationDecoder)?;
        Ok(Self {
            engine: open_engine(backend, &graph, threads)?,
            head,
            input_size: bundle.manifest.input_size,
        })
    }

    /// The classes and the decoder's numbers.
    pub fn head(&self) -> &SemanticHead {
        &self.head
    }

    /// The class of every pixel (`[h, w]`, 0 = background, `k` = `classes[k - 1]`) of a slice of size `hw`
    /// from its embedding `[1, C, g, g]`.
    pub fn label_slice(&mut self, embedding: &ArrayD<f32>, hw: (usize, usize)) -> Result<Array2<u8>, RuntimeError> {
        let outputs = self.engine.run_views(&[("image_embeddings", embedding.view())])?;
        let probabilities = outputs.get("probabilities").ok_or_else(|| RuntimeError::BadOutput {
            name: "probabilities".into(),
            problem: "missing".into(),
        })?;
        let channels = self.head.decoder.out_channels;
        let expected = [1, channels, self.input_size, self.input_size];
        if probabilities.shape() != expected {
            return Err(RuntimeError::BadOutput {
                name: "probabilities".into(),
                problem: format!("shape {:?}, expected {expected:?}", probabilities.shape()),
            });
        }
        let resized = resized_size(hw.0, hw.1, self.input_size);
        let image = probabilities.index_axis(Axis(0), 0);
        let per_class: Vec<Array2<f32>> = (0..channels)
            .map(|c| {
                let plane = image
                    .index_axis(Axis(0), c)
                    .into_dimensionality()
                    .expect("a 2D plane of a 4D output");
                upscale_logits(plane, self.input_size, resized, hw)
            })
            .collect();
        Ok(Array2::from_shape_fn(hw, |(y, x)| {
            most_probable(per_class.iter().map(|p| p[[y, x]]))
        }))
    }
}

/// The index of the largest value (the first on ties, as `argmax`).
fn most_probable(values: impl Iterator<Item = f32>) -> u8 {
    let mut best = (0usize, f32::NEG_INFINITY);
    for (index, value) in values.enumerate() {
        if value > best.1 {
            best = (index, value);
        }
    }
    best.0 as u8
}

/// A labelled volume with its voxel count per class.
pub struct LabelVolume {
    /// Class per voxel, on the input's grid.
    pub labels: Array3<u8>,
    /// Voxels per class (index 0: background).
    pub voxels: Vec<u64>,
}

/// Labels slices `slices` of `session`'s volume (every other slice is background), calling `progress` with
/// each slice index done.
pub fn label_volume(
    session: &mut VolumeSession,
    segmenter: &mut SemanticSegmenter,
    slices: Range<usize>,
    mut progress: impl FnMut(usize),
) -> Result<LabelVolume, RuntimeError> {
    let axis = session.axis();
    let hw = session.volume().slice_hw(axis);
    let mut labels = Array3::<u8>::zeros(session.volume().data.dim());
    for index in slices {
        session.load_slice(index)?;
        let embedding = session.embedding().expect("a loaded slice has an embedding");
        let slice = segmenter.label_slice(embedding, hw)?;
        let flat = slice.as_slice().expect("a fresh array is contiguous");
        Volume::fill_slice(&mut labels, axis, index, hw, |i| flat[i]);
        progress(index);
    }
    let mut voxels = vec![0u64; segmenter.head().decoder.out_channels];
    for &label in &labels {
        voxels[label as usize] += 1;
    }
    Ok(LabelVolume { labels, voxels })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_of_equal_probabilities_wins() {
        assert_eq!(most_probable([0.2, 0.7, 0.7].into_iter()), 1);
        assert_eq!(most_probable([0.9, 0.1].into_iter()), 0);
        assert_eq!(most_probable([f32::NAN, 0.3].into_iter()), 1);
    }
}
