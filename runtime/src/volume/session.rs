//! A long-lived segmentation session on one volume, for the CLI and for annotation tools: slice embeddings
//! computed once (and cached on disk), prompts on any slice, propagation through the volume, and corrections
//! that re-propagate only the slices they can change.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use medico_bundle::{Bundle, GraphRole};
use medico_models::prompt::{BoxPrompt, Point};
use ndarray::Array2;

use crate::engines::BackendChoice;
use crate::prediction::interaction::Interaction;
use crate::prediction::predictor::{DecoderUse, Prediction, Predictor};
use crate::volume::mask_prompts::SlicePrompt;
use crate::volume::propagation::{propagate_touching, Propagation, PropagationConfig, SliceMask, SliceSegmenter};
use crate::{PromptError, RuntimeError};
use medico_io::embedding_cache::{cache_key, EmbeddingCache, Lookup};
use medico_io::image2d::RgbImage;
use medico_io::intensity::Intensity;
use medico_io::volume::Volume;

/// Counters and time spent, for reports and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SessionStats {
    /// Slices run through the encoder.
    pub encoder_runs: usize,
    /// Slices whose embedding came from the disk cache.
    pub cache_hits: usize,
    /// Cache files that failed their checks and were rebuilt.
    pub cache_rebuilt: usize,
    /// Decoder runs.
    pub decoder_runs: usize,
    /// Time in the encoder (including preprocessing).
    pub encoder_time: Duration,
    /// Time in the decoder (including post-processing).
    pub decoder_time: Duration,
}

/// A volume, a plane and a model, ready to be prompted.
pub struct VolumeSession {
    volume: Volume,
    axis: usize,
    intensity: Intensity,
    predictor: Predictor,
    cache: Option<EmbeddingCache>,
    current: Option<usize>,
    stats: SessionStats,
    annotations: BTreeMap<usize, Vec<bool>>,
    result: Propagation,
    config: PropagationConfig,
}

impl VolumeSession {
    /// Opens a session on slices along `axis`; embeddings are cached under `cache_root` when given.
    pub fn open(
        volume: Volume,
        axis: usize,
        intensity: Intensity,
        bundle: &Bundle,
        backend: BackendChoice,
        threads: usize,
        cache_root: Option<&Path>,
    ) -> Result<Self, RuntimeError> {
        let predictor = Predictor::open(bundle, backend, threads)?;
        let cache = cache_root.map(|root| {
            let encoder_sha = bundle
                .manifest
                .graphs
                .get(&GraphRole::Encoder)
                .and_then(|file| bundle.manifest.files.get(file))
                .map(|entry| entry.sha256.clone())
                .unwrap_or_default();
            let standard = volume.data.as_standard_layout();
            let values = standard.as_slice().unwrap_or_default();
            let key = cache_key(values, volume.data.shape(), axis, &intensity.to_string(), &encoder_sha);
            EmbeddingCache::new(root, &key)
        });
        Ok(Self {
            volume,
            axis,
            intensity,
            predictor,
            cache,
            current: None,
            stats: SessionStats::default(),
            annotations: BTreeMap::new(),
            result: Propagation::default(),
            config: PropagationConfig::default(),
        })
    }

    /// The volume.
    pub fn volume(&self) -> &Volume {
        &self.volume
    }

    /// The slicing axis.
    pub fn axis(&self) -> usize {
        self.axis
    }

    /// Number of slices along the axis.
    pub fn slices(&self) -> usize {
        self.volume.slices(self.axis)
    }

    /// Counters and timings so far.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// The engine's name.
    pub fn engine_name(&self) -> &'static str {
        self.predictor.engine_name()
    }

    /// The cache folder, when caching.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache.as_ref().map(|c| c.dir())
    }

    /// The RGB image SAM sees for slice `index`.
    pub fn slice_image(&self, index: usize) -> RgbImage {
        let (values, hw) = self.volume.slice(self.axis, index);
        RgbImage::from_gray(&values, hw, self.intensity)
    }

    /// Makes slice `index` the predictor's image: from the cache when a verified file exists, else encoded
    /// (and stored).
    pub fn load_slice(&mut self, index: usize) -> Result<(), RuntimeError> {
        if index >= self.slices() {
            return Err(PromptError::SliceOutside {
                index,
                slices: self.slices(),
                axis: self.axis,
            }
            .into());
        }
        if self.current == Some(index) {
            return Ok(());
        }
        let hw = SliceSegmenter::slice_hw(self);
        if let Some(cache) = &self.cache {
            match cache.load(index) {
                Lookup::Hit(embedding) => {
                    self.predictor.set_embedding(embedding, hw);
                    self.stats.cache_hits += 1;
                    self.current = Some(index);
                    return Ok(());
                }
                Lookup::Corrupt { .. } => self.stats.cache_rebuilt += 1,
                Lookup::Miss => {}
            }
        }
        let image = self.slice_image(index);
        let start = Instant::now();
        self.predictor.set_image(&image.pixels, image.hw)?;
        self.stats.encoder_time += start.elapsed();
        self.stats.encoder_runs += 1;
        if let (Some(cache), Some(embedding)) = (&self.cache, self.predictor.embedding()) {
            cache.store(index, embedding)?;
        }
        self.current = Some(index);
        Ok(())
    }

    /// The embedding of the slice last loaded ([`Self::load_slice`]).
    pub fn embedding(&self) -> Option<&ndarray::ArrayD<f32>> {
        self.predictor.embedding()
    }

    /// Encodes (or loads) every slice in `range`, calling `progress` after each.
    pub fn precompute(
        &mut self,
        range: std::ops::Range<usize>,
        mut progress: impl FnMut(usize),
    ) -> Result<(), RuntimeError> {
        for index in range {
            self.load_slice(index)?;
            progress(index);
        }
        Ok(())
    }

    /// Prompts slice `index` with the interactive decoder; single-mask output unless `multimask`.
    pub fn segment_slice(
        &mut self,
        index: usize,
        points: &[Point],
        bbox: Option<&BoxPrompt>,
        mask_logits: Option<&Array2<f32>>,
        multimask: bool,
    ) -> Result<Prediction, RuntimeError> {
        self.decode(index, DecoderUse::Interactive, points, bbox, mask_logits, multimask)
    }

    /// Runs `usage`'s decoder on slice `index`.
    fn decode(
        &mut self,
        index: usize,
        usage: DecoderUse,
        points: &[Point],
        bbox: Option<&BoxPrompt>,
        mask_logits: Option<&Array2<f32>>,
        multimask: bool,
    ) -> Result<Prediction, RuntimeError> {
        self.load_slice(index)?;
        let start = Instant::now();
        let prediction = self
            .predictor
            .predict_with(usage, points, bbox, mask_logits, multimask)?;
        self.stats.decoder_time += start.elapsed();
        self.stats.decoder_runs += 1;
        Ok(prediction)
    }

    /// The binary mask of the best output of a prediction of a walk.
    fn walked_mask(&self, prediction: &Prediction) -> Vec<bool> {
        self.predictor
            .binary_mask(DecoderUse::Propagation, &prediction.logits[prediction.best()])
    }

    /// Segments slice `index` from a user's prompts, in the order given (the box or first click, then each
    /// click a correction round: [`Interaction::replay`]), or all at once with the multimask outputs when
    /// `multimask`; records it as an annotation and returns its mask.
    pub fn annotate(
        &mut self,
        index: usize,
        points: &[Point],
        bbox: Option<&BoxPrompt>,
        multimask: bool,
    ) -> Result<Vec<bool>, RuntimeError> {
        self.load_slice(index)?;
        let start = Instant::now();
        let mut interaction = Interaction::new(self.predictor.composition());
        let round = if multimask {
            interaction.all_at_once(&mut self.predictor, points, bbox)?
        } else {
            interaction.replay(&mut self.predictor, points, bbox)?
        };
        self.stats.decoder_time += start.elapsed();
        self.stats.decoder_runs += interaction.decoder_calls();
        self.annotations.insert(index, round.mask.clone());
        Ok(round.mask)
    }

    /// Forgets every annotation and the last propagation (the embeddings and cache stay).
    pub fn clear_annotations(&mut self) {
        self.annotations.clear();
        self.result = Propagation::default();
    }

    /// The annotated slices and their masks.
    pub fn annotations(&self) -> &BTreeMap<usize, Vec<bool>> {
        &self.annotations
    }

    /// Propagates all annotations through the volume with `config`.
    pub fn propagate(&mut self, config: PropagationConfig) -> Result<&Propagation, RuntimeError> {
        let annotations = self.annotations.clone();
        self.config = config.clone();
        self.result = propagate_touching(self, &annotations, &config, None, Propagation::default())?;
        Ok(&self.result)
    }

    /// Replaces (or adds) the annotation of slice `index` with a new prompt and re-propagates only the slices
    /// that depend on it: the gaps to the neighbouring annotated slices, and the walk beyond it when it is
    /// the lowest or highest one. Uses the configuration of the last [`Self::propagate`].
    pub fn correct(
        &mut self,
        index: usize,
        points: &[Point],
        bbox: Option<&BoxPrompt>,
    ) -> Result<&Propagation, RuntimeError> {
        self.annotate(index, points, bbox, false)?;
        let annotations = self.annotations.clone();
        let config = self.config.clone();
        let previous = std::mem::take(&mut self.result);
        self.result = propagate_touching(self, &annotations, &config, Some(index), previous)?;
        Ok(&self.result)
    }

    /// The latest propagation.
    pub fn result(&self) -> &Propagation {
        &self.result
    }
}

impl SliceSegmenter for VolumeSession {
    fn slice_hw(&self) -> (usize, usize) {
        self.volume.slice_hw(self.axis)
    }

    fn slices(&self) -> usize {
        VolumeSession::slices(self)
    }

    fn low_res_size(&self) -> usize {
        self.predictor.config().low_res_size()
    }

    fn slice_is_blank(&self, index: usize) -> bool {
        self.volume.slice_is_constant(self.axis, index)
    }

    /// A propagated slice: the bundle's walk decoder, single-mask output.
    fn segment(&mut self, index: usize, prompt: &SlicePrompt) -> Result<SliceMask, RuntimeError> {
        let prediction = self.decode(
            index,
            DecoderUse::Propagation,
            &prompt.points,
            prompt.bbox.as_ref(),
            prompt.mask_logits.as_ref(),
            false,
        )?;
        Ok(SliceMask {
            mask: self.walked_mask(&prediction),
            predicted_iou: prediction.iou[prediction.best()],
        })
    }
}
