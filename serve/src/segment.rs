//! Inference on a worker: one slice from the request's prompts (2D models), or the annotated slices and
//! then propagation through the volume (a model's `-3d` variant), each slice's embedding loaded through the
//! worker's slot (held, kept, or encoded and kept).

use std::collections::BTreeMap;
use std::sync::Arc;

use medico_io::intensity::Intensity;
use medico_io::volume::Volume;
use medico_models::prompt::{BoxPrompt, Point};
use medico_runtime::prediction::interaction::Interaction;
use medico_runtime::prediction::predictor::DecoderUse;
use medico_runtime::volume::mask_prompts::SlicePrompt;
use medico_runtime::volume::propagation::{propagate, PropagationConfig, SliceMask, SliceSegmenter};
use medico_runtime::RuntimeError;
use ndarray::{Array2, Array3};

use crate::continuation::Continuation;
use crate::embeddings::{EmbeddingStore, SliceKey};
use crate::error::ApiError;
use crate::infer::Task;
use crate::prompts::{VolumePrompts, SLICE_AXIS};
use crate::work::WorkTicket;
use crate::workers::{Predictors, Slot};
use crate::AppState;

/// What a request asks a worker to do.
pub struct SegmentJob {
    /// The server's state (the embedding store).
    pub app: Arc<AppState>,
    /// The served model's name.
    pub model: String,
    /// The session, when the volume is one (its embeddings are kept).
    pub session: Option<String>,
    /// The volume.
    pub volume: Arc<Volume>,
    /// The model's intensity mapping.
    pub intensity: Intensity,
    /// The user's prompts, by slice.
    pub prompts: VolumePrompts,
    /// A segmentation sent with the request to continue from: on a prompted slice where it has voxels and
    /// the prompt is clicks alone, its mask starts and the clicks correct it.
    pub continuation: Option<Arc<Continuation>>,
    /// Propagation settings (the model's defaults).
    pub config: PropagationConfig,
    /// The slice, a walk through the volume, or every slice labelled.
    pub task: Task,
    /// Slices a walk may go in each direction beyond the annotated ones.
    pub max_walk_slices: usize,
    /// The request's deadline and cancellation, checked before each slice.
    pub ticket: WorkTicket,
}

/// The masks a job produced.
pub struct Segmented {
    /// `[h, w]` masks by slice along [`SLICE_AXIS`].
    pub masks: BTreeMap<usize, Vec<bool>>,
    /// Slice size.
    pub hw: (usize, usize),
    /// The predicted IoU of the (first) annotated slice's mask.
    pub score: Option<f32>,
    /// Slices the encoder ran on for this request.
    pub encoder_runs: usize,
    /// For a labelling request, the class of every voxel (0 background, `k` the head's class `k`).
    pub labels: Option<Array3<u8>>,
}

impl Segmented {
    /// The masks (or the labels) as a `u8` volume on `volume`'s grid.
    pub fn grid(&self, volume: &Volume) -> Array3<u8> {
        match &self.labels {
            Some(labels) => labels.clone(),
            None => volume.mask_from_slices(SLICE_AXIS, self.masks.iter().map(|(&k, m)| (k, m.as_slice())), self.hw),
        }
    }

    /// Voxels in the masks (or labelled as any class).
    pub fn voxels(&self) -> usize {
        match &self.labels {
            Some(labels) => labels.iter().filter(|&&v| v > 0).count(),
            None => self.masks.values().map(|m| m.iter().filter(|&&v| v).count()).sum(),
        }
    }
}

impl SegmentJob {
    /// Runs the job on a worker's predictors.
    pub fn run(self, predictors: &mut Predictors) -> Result<Segmented, ApiError> {
        // A request whose client left while it waited for a worker is not started.
        self.ticket
            .check()
            .map_err(|e| ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        let mut slices = WorkerSlices {
            ticket: &self.ticket,
            slot: predictors.get(&self.model)?,
            embeddings: &self.app.embeddings,
            session: self.session.as_deref(),
            model: &self.model,
            volume: &self.volume,
            intensity: self.intensity,
            encoder_runs: 0,
            score: None,
        };
        if self.task == Task::Labels {
            return slices.label_volume();
        }
        let mut annotated = BTreeMap::new();
        for prompt in &self.prompts.annotations {
            let previous = match (&self.continuation, &prompt.bbox, prompt.points.is_empty()) {
                (Some(continuation), None, false) => continuation.slice_mask(prompt.slice),
                _ => None,
            };
            let mask = slices
                .interact(prompt.slice, &prompt.points, prompt.bbox.as_ref(), previous.as_deref())
                .map_err(|e| ApiError::from_runtime("segmenting the prompted slice", e))?;
            annotated.insert(prompt.slice, mask.mask);
        }
        let masks = match self.task {
            Task::Slice | Task::Labels => annotated,
            Task::Walk => {
                let (lower_limit, upper_limit) = self.walk_limits(annotated.keys().copied());
                let config = PropagationConfig {
                    lower_limit,
                    upper_limit,
                    ..self.config.clone()
                };
                propagate(&mut slices, &annotated, &config)
                    .map_err(|e| ApiError::from_runtime("propagating through the volume", e))?
                    .masks
            }
        };
        Ok(Segmented {
            masks,
            hw: self.volume.slice_hw(SLICE_AXIS),
            score: slices.score,
            encoder_runs: slices.encoder_runs,
            labels: None,
        })
    }
}

impl SegmentJob {
    /// The lowest and highest slice a walk from `annotated` slices may reach: the ROI's range when the
    /// request has one, and never more than [`SegmentJob::max_walk_slices`] beyond the annotated slices.
    fn walk_limits(&self, annotated: impl Iterator<Item = usize> + Clone) -> (Option<usize>, Option<usize>) {
        let (first, last) = (annotated.clone().min(), annotated.max());
        let lower = first.map(|z| z.saturating_sub(self.max_walk_slices));
        let upper = last.map(|z| z.saturating_add(self.max_walk_slices));
        match self.prompts.limits {
            Some((lo, hi)) => (
                Some(lower.map_or(lo, |l| l.max(lo))),
                Some(upper.map_or(hi, |u| u.min(hi))),
            ),
            None => (lower, upper),
        }
    }
}

/// A volume's slices through one worker's predictor of one model.
struct WorkerSlices<'a> {
    ticket: &'a WorkTicket,
    slot: &'a mut Slot,
    embeddings: &'a EmbeddingStore,
    session: Option<&'a str>,
    model: &'a str,
    volume: &'a Volume,
    intensity: Intensity,
    encoder_runs: usize,
    /// The predicted IoU of the first prompted slice.
    score: Option<f32>,
}

impl WorkerSlices<'_> {
    /// Every slice of the volume labelled by the model's semantic head (checked with the request's ticket
    /// before each slice).
    fn label_volume(&mut self) -> Result<Segmented, ApiError> {
        let hw = self.volume.slice_hw(SLICE_AXIS);
        let mut labels = Array3::<u8>::zeros(self.volume.data.dim());
        let fail = |e| ApiError::from_runtime("labelling the volume", e);
        for index in 0..self.volume.slices(SLICE_AXIS) {
            self.ticket
                .check()
                .map_err(|e| fail(RuntimeError::Interrupted(e.to_string())))?;
            let key = self.key(index);
            if self
                .slot
                .load(self.embeddings, key, self.volume, self.intensity, index)
                .map_err(fail)?
            {
                self.encoder_runs += 1;
            }
            let embedding = self
                .slot
                .predictor
                .embedding()
                .ok_or_else(|| ApiError::internal("a loaded slice has no embedding"))?
                .clone();
            let head = self
                .slot
                .semantic
                .as_mut()
                .ok_or_else(|| ApiError::internal("this worker holds no semantic head for the model"))?;
            let slice = head.label_slice(&embedding, hw).map_err(fail)?;
            let flat = slice
                .as_slice()
                .ok_or_else(|| ApiError::internal("a label slice is not contiguous"))?;
            Volume::fill_slice(&mut labels, SLICE_AXIS, index, hw, |i| flat[i]);
        }
        Ok(Segmented {
            masks: BTreeMap::new(),
            hw,
            score: None,
            encoder_runs: self.encoder_runs,
            labels: Some(labels),
        })
    }

    /// The key of slice `index`'s kept embedding (none for a volume sent with the request).
    fn key(&self, index: usize) -> Option<SliceKey> {
        self.session.map(|session| SliceKey {
            session: session.to_string(),
            model: self.model.to_string(),
            axis: SLICE_AXIS,
            slice: index,
        })
    }

    /// Slice `index`'s embedding on the worker's predictor (encoded, or taken from the session's kept ones).
    fn load(&mut self, index: usize) -> Result<(), RuntimeError> {
        self.ticket
            .check()
            .map_err(|e| RuntimeError::Interrupted(e.to_string()))?;
        let key = self.key(index);
        if self
            .slot
            .load(self.embeddings, key, self.volume, self.intensity, index)?
        {
            self.encoder_runs += 1;
        }
        Ok(())
    }

    /// The mask of slice `index` for a user's prompts, replayed in the order given (the box or first click,
    /// then each click a correction round), as `segment` and the evaluation compose them; with a `previous`
    /// mask of the slice, that mask starts and every click corrects it.
    fn interact(
        &mut self,
        index: usize,
        points: &[Point],
        bbox: Option<&BoxPrompt>,
        previous: Option<&[bool]>,
    ) -> Result<SliceMask, RuntimeError> {
        self.load(index)?;
        let predictor = &mut self.slot.predictor;
        let mut interaction = Interaction::new(predictor.composition());
        let round = match previous {
            Some(mask) => interaction.correct_mask(predictor, mask, self.volume.slice_hw(SLICE_AXIS), points)?,
            None => interaction.replay(predictor, points, bbox)?,
        };
        self.score.get_or_insert(round.predicted_iou);
        Ok(SliceMask {
            mask: round.mask,
            predicted_iou: round.predicted_iou,
        })
    }

    /// The mask of slice `index` for a prompt the propagation derived (single-mask output).
    fn prompt(
        &mut self,
        index: usize,
        points: &[Point],
        bbox: Option<&BoxPrompt>,
        mask_logits: Option<&Array2<f32>>,
    ) -> Result<SliceMask, RuntimeError> {
        self.load(index)?;
        let predictor = &mut self.slot.predictor;
        let prediction = predictor.predict_with(DecoderUse::Propagation, points, bbox, mask_logits, false)?;
        self.score.get_or_insert(prediction.iou[0]);
        Ok(SliceMask {
            mask: predictor.binary_mask(DecoderUse::Propagation, &prediction.logits[0]),
            predicted_iou: prediction.iou[0],
        })
    }
}

impl SliceSegmenter for WorkerSlices<'_> {
    fn slice_hw(&self) -> (usize, usize) {
        self.volume.slice_hw(SLICE_AXIS)
    }

    fn slices(&self) -> usize {
        self.volume.slices(SLICE_AXIS)
    }

    fn low_res_size(&self) -> usize {
        self.slot.predictor.config().low_res_size()
    }

    fn slice_is_blank(&self, index: usize) -> bool {
        self.volume.slice_is_constant(SLICE_AXIS, index)
    }

    fn segment(&mut self, index: usize, prompt: &SlicePrompt) -> Result<SliceMask, RuntimeError> {
        self.prompt(index, &prompt.points, prompt.bbox.as_ref(), prompt.mask_logits.as_ref())
    }
}
