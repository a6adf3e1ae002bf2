//! medico's HTTP server: the part of MONAI Label's REST API that its interactive clients (3D Slicer's
//! MONAI Label module, `MONAILabelClient`, and the OHIF/QuPath/... plug-ins built on the same calls) use to
//! segment with a prompt — `GET /info/`, sessions (`PUT /session/`, `GET`/`DELETE /session/{id}`) and
//! `POST /infer/{model}` — so that every such tool gets a medical SAM on a plain CPU from one binary.
//! Exactly what is supported: `docs/serve.md`.
//!
//! Requests flow upload → session (a volume) → slice → embedding (kept per session, model and slice) →
//! prompts → mask → file on the volume's grid. Inference runs on a fixed pool of worker threads
//! ([`workers`]); memory is bounded by the upload limit, the number of sessions and of kept embeddings.

pub mod embeddings;
pub mod error;
pub mod infer;
pub mod prompts;
pub mod reply;
pub mod routes;
pub mod segment;
pub mod sessions;
pub mod upload;
pub mod workers;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use medico_bundle::Bundle;
use medico_io::intensity::Intensity;
use medico_runtime::prediction::predictor::BackendChoice;
use medico_runtime::RuntimeError;

use crate::embeddings::EmbeddingStore;
use crate::sessions::SessionStore;
use crate::workers::WorkerPool;

/// A model the server offers, under the name clients use.
#[derive(Clone)]
pub struct ServedModel {
    /// The name in `/info/` and `/infer/{name}`.
    pub name: String,
    /// The verified bundle.
    pub bundle: Bundle,
    /// How slices are mapped to 0–255 for this model (the bundle's intensity).
    pub intensity: Intensity,
}

/// Bounds on what clients can make the server hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest request body (an upload), in bytes.
    pub max_upload_bytes: usize,
    /// Largest volume, in voxels.
    pub max_voxels: usize,
    /// Sessions kept at once (the least recently used is evicted).
    pub max_sessions: NonZeroUsize,
    /// Slice embeddings kept in memory at once (4 MB each).
    pub max_embeddings: NonZeroUsize,
    /// A session unused for this long is deleted.
    pub session_expiry: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_upload_bytes: 512 << 20,
            max_voxels: 256 << 20,
            max_sessions: NonZeroUsize::new(16).expect("non-zero"),
            max_embeddings: NonZeroUsize::new(64).expect("non-zero"),
            session_expiry: Duration::from_secs(3600),
        }
    }
}

/// Everything the server is started with.
pub struct ServeConfig {
    /// The models offered.
    pub models: Vec<ServedModel>,
    /// Inference engine.
    pub backend: BackendChoice,
    /// Threads per inference.
    pub threads: usize,
    /// Inferences run at once.
    pub workers: usize,
    /// When set, every request but `/auth/` must carry it (`Authorization: Bearer KEY` or `X-API-Key`).
    pub api_key: Option<String>,
    /// Memory bounds.
    pub limits: Limits,
    /// Log one line per request on standard error.
    pub log_requests: bool,
}

/// The server's shared state.
pub struct AppState {
    /// The models offered.
    pub models: Vec<ServedModel>,
    /// The inference threads.
    pub workers: WorkerPool,
    /// Open sessions.
    pub sessions: SessionStore,
    /// Slice embeddings kept between requests.
    pub embeddings: EmbeddingStore,
    /// Memory bounds.
    pub limits: Limits,
    /// The API key, when one is required.
    pub api_key: Option<String>,
    /// Whether requests are logged.
    pub log_requests: bool,
}

impl AppState {
    /// Opens every model on every worker; fails when one cannot be opened.
    pub fn start(config: ServeConfig) -> Result<Arc<Self>, RuntimeError> {
        let workers = WorkerPool::start(&config.models, config.backend, config.threads, config.workers)?;
        Ok(Arc::new(Self {
            models: config.models,
            workers,
            sessions: SessionStore::new(config.limits.max_sessions),
            embeddings: EmbeddingStore::new(config.limits.max_embeddings),
            limits: config.limits,
            api_key: config.api_key,
            log_requests: config.log_requests,
        }))
    }
}

/// Serves `state` on `listener` until `shutdown` completes, then finishes the requests in flight.
pub async fn serve(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, routes::router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
