//! The inference workers: threads that each own one [`Predictor`] per served model (engine sessions are
//! not shared between threads), fed jobs through a channel. Requests wait in the channel when every
//! worker is busy, so inference never runs more than `workers` at a time.

use std::collections::HashMap;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

use medico_runtime::prediction::predictor::{BackendChoice, Predictor};
use medico_runtime::volume::semantic::SemanticSegmenter;
use medico_runtime::RuntimeError;

use medico_io::image2d::RgbImage;
use medico_io::intensity::Intensity;
use medico_io::volume::Volume;

use crate::embeddings::{EmbeddingStore, SliceKey};
use crate::error::ApiError;
use crate::prompts::SLICE_AXIS;
use crate::ServedModel;

/// A model's predictor on one worker, with the slice it holds.
pub struct Slot {
    /// The predictor.
    pub predictor: Predictor,
    /// The model's semantic segmentation head, on the pools that label whole volumes, when it has one.
    pub semantic: Option<SemanticSegmenter>,
    /// The slice whose embedding (and prepared decoder state) the predictor holds now; `None` when unknown.
    held: Option<SliceKey>,
}

impl Slot {
    /// Makes the predictor hold `slice` of `volume`: nothing to do when it already does, else the kept
    /// embedding, else the encoder (whose embedding is then kept). Returns whether the encoder ran. Without a
    /// `key` (a volume sent with the request) nothing is kept.
    pub fn load(
        &mut self,
        embeddings: &EmbeddingStore,
        key: Option<SliceKey>,
        volume: &Volume,
        intensity: Intensity,
        slice: usize,
    ) -> Result<bool, RuntimeError> {
        if key.is_some() && self.held == key {
            return Ok(false);
        }
        // Until the slice is loaded, what the predictor holds is unknown.
        self.held = None;
        let kept = key.as_ref().and_then(|k| embeddings.get(k));
        let encoder_ran = kept.is_none();
        match kept {
            Some(embedding) => self
                .predictor
                .set_embedding((*embedding).clone(), volume.slice_hw(SLICE_AXIS)),
            None => {
                let (values, hw) = volume.slice(SLICE_AXIS, slice);
                let image = RgbImage::from_gray(&values, hw, intensity);
                self.predictor.set_image(&image.pixels, image.hw)?;
                if let (Some(key), Some(embedding)) = (&key, self.predictor.embedding()) {
                    embeddings.put(key.clone(), Arc::new(embedding.clone()));
                }
            }
        }
        self.held = key;
        Ok(encoder_ran)
    }
}

/// One worker's predictors, by model name.
pub struct Predictors {
    slots: HashMap<String, Slot>,
}

impl Predictors {
    /// The slot of `model`.
    pub fn get(&mut self, model: &str) -> Result<&mut Slot, ApiError> {
        self.slots
            .get_mut(model)
            .ok_or_else(|| ApiError::not_found(format!("no model '{model}' on this server")))
    }
}

type Job = Box<dyn FnOnce(&mut Predictors) + Send>;

/// The pool of inference threads.
pub struct WorkerPool {
    jobs: Sender<Job>,
}

impl WorkerPool {
    /// Starts `workers` threads (named `medico-{role}-N`) and opens every model on each (with its semantic
    /// head when `with_semantic` and it has one); returns when all are ready, or the first model that fails
    /// to open.
    pub fn start(
        role: &str,
        models: &[ServedModel],
        backend: BackendChoice,
        threads: usize,
        workers: usize,
        with_semantic: bool,
    ) -> Result<Self, RuntimeError> {
        let (jobs, receiver) = channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let (ready_tx, ready_rx) = channel();
        for index in 0..workers.max(1) {
            let receiver = Arc::clone(&receiver);
            let ready = ready_tx.clone();
            let bundles: Vec<_> = models.iter().map(|m| (m.name.clone(), m.bundle.clone())).collect();
            std::thread::Builder::new()
                .name(format!("medico-{role}-{index}"))
                .spawn(move || {
                    let mut slots = HashMap::new();
                    for (name, bundle) in bundles {
                        let semantic = match with_semantic && bundle.manifest.semantic.is_some() {
                            true => SemanticSegmenter::open(&bundle, backend, threads).map(Some),
                            false => Ok(None),
                        };
                        match Predictor::open(&bundle, backend, threads).and_then(|p| Ok((p, semantic?))) {
                            Ok((predictor, semantic)) => {
                                slots.insert(
                                    name,
                                    Slot {
                                        predictor,
                                        semantic,
                                        held: None,
                                    },
                                );
                            }
                            Err(e) => {
                                let _ = ready.send(Err(e));
                                return;
                            }
                        }
                    }
                    let _ = ready.send(Ok(()));
                    work(&receiver, Predictors { slots });
                })
                .map_err(|e| RuntimeError::Unavailable {
                    engine: "worker thread",
                    reason: e.to_string(),
                })?;
        }
        drop(ready_tx);
        for _ in 0..workers.max(1) {
            ready_rx.recv().map_err(|_| RuntimeError::Unavailable {
                engine: "worker thread",
                reason: "a worker stopped while opening the models".into(),
            })??;
        }
        Ok(Self { jobs })
    }

    /// Runs `job` on the first free worker and returns its result.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Predictors) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let (reply, result) = tokio::sync::oneshot::channel();
        let boxed: Job = Box::new(move |predictors| {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(predictors)))
                .unwrap_or_else(|_| Err(ApiError::internal("inference failed unexpectedly (a panic, logged)")));
            let _ = reply.send(outcome);
        });
        self.jobs
            .send(boxed)
            .map_err(|_| ApiError::internal("the inference workers have stopped"))?;
        result
            .await
            .map_err(|_| ApiError::internal("the inference worker dropped the request"))?
    }
}

/// A worker's loop: take the next job until the pool is dropped.
fn work(receiver: &Mutex<Receiver<Job>>, mut predictors: Predictors) {
    loop {
        let next = match receiver.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        match next {
            Ok(job) => job(&mut predictors),
            Err(_) => return,
        }
    }
}
