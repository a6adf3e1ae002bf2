//! The inference workers: threads that each own one [`Predictor`] per served model (engine sessions are
//! not shared between threads), fed jobs through a channel. Requests wait in the channel when every
//! worker is busy, so inference never runs more than `workers` at a time.

use std::collections::HashMap;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

use medico_runtime::prediction::predictor::{BackendChoice, Predictor};
use medico_runtime::RuntimeError;

use crate::embeddings::SliceKey;
use crate::error::ApiError;
use crate::ServedModel;

/// One worker's predictors, by model name, with the slice each holds.
pub struct Predictors {
    open: HashMap<String, Predictor>,
    /// The slice whose embedding (and prepared decoder state) each model's predictor holds now.
    current: HashMap<String, SliceKey>,
}

impl Predictors {
    /// The predictor of `model`.
    pub fn get(&mut self, model: &str) -> Result<&mut Predictor, ApiError> {
        self.open
            .get_mut(model)
            .ok_or_else(|| ApiError::not_found(format!("no model '{model}' on this server")))
    }

    /// Whether `model`'s predictor holds `key`'s slice (a further click on it needs neither the encoder
    /// nor the decoder's image preparation).
    pub fn holds(&self, model: &str, key: &SliceKey) -> bool {
        self.current.get(model) == Some(key)
    }

    /// Records the slice `model`'s predictor holds (`None`: unknown, e.g. an uploaded file's).
    pub fn set_held(&mut self, model: &str, key: Option<SliceKey>) {
        match key {
            Some(key) => self.current.insert(model.to_string(), key),
            None => self.current.remove(model),
        };
    }
}

type Job = Box<dyn FnOnce(&mut Predictors) + Send>;

/// The pool of inference threads.
pub struct WorkerPool {
    jobs: Sender<Job>,
}

impl WorkerPool {
    /// Starts `workers` threads and opens every model on each; returns when all are ready, or the first
    /// model that fails to open.
    pub fn start(
        models: &[ServedModel],
        backend: BackendChoice,
        threads: usize,
        workers: usize,
    ) -> Result<Self, RuntimeError> {
        let (jobs, receiver) = channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let (ready_tx, ready_rx) = channel();
        for index in 0..workers.max(1) {
            let receiver = Arc::clone(&receiver);
            let ready = ready_tx.clone();
            let bundles: Vec<_> = models.iter().map(|m| (m.name.clone(), m.bundle.clone())).collect();
            std::thread::Builder::new()
                .name(format!("medico-infer-{index}"))
                .spawn(move || {
                    let mut open = HashMap::new();
                    for (name, bundle) in bundles {
                        match Predictor::open(&bundle, backend, threads) {
                            Ok(predictor) => {
                                open.insert(name, predictor);
                            }
                            Err(e) => {
                                let _ = ready.send(Err(e));
                                return;
                            }
                        }
                    }
                    let _ = ready.send(Ok(()));
                    let current = HashMap::new();
                    work(&receiver, Predictors { open, current });
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
