//! medico's HTTP server: the part of MONAI Label's REST API that its interactive clients (3D Slicer's
//! MONAI Label module, `MONAILabelClient`, and the OHIF/QuPath/... plug-ins built on the same calls) use to
//! segment with a prompt — `GET /info/`, sessions (`PUT /session/`, `GET`/`DELETE /session/{id}`) and
//! `POST /infer/{model}` — so that every such tool gets a medical SAM on a plain CPU from one binary.
//! Exactly what is supported: `docs/serve.md`.
//!
//! Requests flow upload → session (a volume) → slice → embedding (kept per session, model and slice) →
//! prompts → mask → file on the volume's grid. Inference runs on a fixed pool of worker threads
//! ([`workers`]); memory is bounded by the upload limit, the number of sessions and of kept embeddings.

pub mod annotator;
pub mod body_timeout;
pub mod connections;
pub mod continuation;
pub mod data_dir;
pub mod data_routes;
pub mod embeddings;
pub mod error;
pub mod exposure;
pub mod infer;
pub mod json_errors;
pub mod prompts;
pub mod reply;
pub mod routes;
pub mod segment;
pub mod sessions;
pub mod upload;
pub mod work;
pub mod workers;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use medico_bundle::Bundle;
use medico_io::intensity::Intensity;
use medico_runtime::prediction::predictor::BackendChoice;
use medico_runtime::RuntimeError;

use crate::data_dir::DataDir;
use crate::embeddings::EmbeddingStore;
use crate::sessions::Session;
use crate::sessions::SessionStore;
use crate::workers::WorkerPool;
use medico_io::input::ReadLimits;

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

/// Bounds on what clients can make the server hold and do (docs/serve.md, "Limits").
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest request body (an upload), in bytes.
    pub max_upload_bytes: usize,
    /// Largest volume, in voxels as the server holds them (float32, 4 bytes each); a file's own voxel data
    /// may not be larger than that many float32s either, whatever its type. Checked from the file's header,
    /// before anything is decoded.
    pub max_voxels: usize,
    /// Uploads received and read at once (`PUT /session/`, or a file sent to `/infer/`); others wait.
    pub max_concurrent_uploads: usize,
    /// Sessions kept at once (the least recently used is evicted).
    pub max_sessions: NonZeroUsize,
    /// Slice embeddings kept in memory at once (4 MB each).
    pub max_embeddings: NonZeroUsize,
    /// A session unused for this long is deleted (the default of `PUT /session/`).
    pub session_expiry: Duration,
    /// The longest expiry a client may ask for.
    pub max_session_expiry: Duration,
    /// Clicks (foreground and background together) in one request.
    pub max_clicks: usize,
    /// Slices a 3D request may walk in each direction beyond its prompted slices.
    pub max_walk_slices: usize,
    /// Inference time one request may take (a 3D walk is stopped there, with a 503).
    pub work_timeout: Duration,
}

impl Limits {
    /// What the scan readers may take ([`Limits::max_voxels`]).
    pub fn read_limits(&self) -> ReadLimits {
        ReadLimits {
            max_voxels: self.max_voxels,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_upload_bytes: 512 << 20,
            max_voxels: 128 << 20,
            max_concurrent_uploads: 4,
            max_sessions: NonZeroUsize::new(16).expect("non-zero"),
            max_embeddings: NonZeroUsize::new(64).expect("non-zero"),
            session_expiry: Duration::from_secs(3600),
            max_session_expiry: Duration::from_secs(7 * 24 * 3600),
            max_clicks: 256,
            max_walk_slices: 512,
            work_timeout: Duration::from_secs(300),
        }
    }
}

/// Who may talk to the server and how slowly (docs/serve.md, "Exposure").
#[derive(Clone, Debug)]
pub struct Exposure {
    /// Host names answered besides `localhost` (IP literals are always answered: DNS rebinding needs a
    /// name). A request for any other name gets a 421.
    pub allowed_hosts: Vec<String>,
    /// Web origins (`scheme://host[:port]`) whose pages may call the server; a request carrying any other
    /// `Origin` header gets a 403. Clients that are not browsers send none.
    pub allowed_origins: Vec<String>,
    /// A request's header must arrive within this; an idle keep-alive connection is closed after it.
    pub header_timeout: Duration,
    /// A request body must keep arriving: no pause longer than this, and after this long at least
    /// [`Exposure::min_body_rate`] bytes per second on average.
    pub body_timeout: Duration,
    /// The slowest average upload rate accepted, bytes per second.
    pub min_body_rate: u64,
    /// After SIGTERM, requests in flight get this long to finish; then the server exits anyway.
    pub shutdown_grace: Duration,
}

impl Default for Exposure {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            min_body_rate: 16 << 10,
            shutdown_grace: Duration::from_secs(30),
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
    /// 2D inferences run at once.
    pub workers: usize,
    /// 3D walks run at once, on workers of their own, so that a walk never holds up a click.
    pub walk_workers: usize,
    /// When set, every request but `/auth/` must carry it (`Authorization: Bearer KEY` or `X-API-Key`).
    pub api_key: Option<String>,
    /// Memory and work bounds.
    pub limits: Limits,
    /// Host names, origins, timeouts.
    pub exposure: Exposure,
    /// The folder of scans the web annotator lists and saves next to (`--data`).
    pub data: Option<DataDir>,
    /// Log one line per request on standard error.
    pub log_requests: bool,
}

/// The server's shared state.
pub struct AppState {
    /// The models offered.
    pub models: Vec<ServedModel>,
    /// The threads that segment one slice (2D requests).
    pub workers: WorkerPool,
    /// The threads that walk through or label whole volumes (3D and semantic requests).
    pub walkers: WorkerPool,
    /// Open sessions.
    pub sessions: SessionStore,
    /// Slice embeddings kept between requests.
    pub embeddings: EmbeddingStore,
    /// Uploads being received or read now, at most [`Limits::max_concurrent_uploads`].
    pub uploads: tokio::sync::Semaphore,
    /// Memory and work bounds.
    pub limits: Limits,
    /// Host names, origins, timeouts.
    pub exposure: Exposure,
    /// The folder of scans the web annotator lists and saves next to (`--data`).
    pub data: Option<DataDir>,
    /// The API key, when one is required.
    pub api_key: Option<String>,
    /// Whether requests are logged.
    pub log_requests: bool,
}

impl AppState {
    /// Opens every model on every worker; fails when one cannot be opened.
    pub fn start(config: ServeConfig) -> Result<Arc<Self>, RuntimeError> {
        let workers = WorkerPool::start(
            "click",
            &config.models,
            config.backend,
            config.threads,
            config.workers,
            false,
        )?;
        let walkers = WorkerPool::start(
            "walk",
            &config.models,
            config.backend,
            config.threads,
            config.walk_workers,
            true,
        )?;
        Ok(Arc::new(Self {
            models: config.models,
            workers,
            walkers,
            sessions: SessionStore::new(config.limits.max_sessions),
            embeddings: EmbeddingStore::new(config.limits.max_embeddings),
            uploads: tokio::sync::Semaphore::new(config.limits.max_concurrent_uploads.max(1)),
            limits: config.limits,
            exposure: config.exposure,
            data: config.data,
            api_key: config.api_key,
            log_requests: config.log_requests,
        }))
    }

    /// Opens `session`; `{session_id, session_info}` as `PUT /session/` answers. Sessions closed to make
    /// room (expired, or the least recently used) go with their embeddings.
    pub fn open_session(&self, session: Session) -> serde_json::Value {
        let info = session.info();
        let (id, dropped) = self.sessions.insert(session);
        self.forget_closed(dropped, "expired, or evicted as least recently used");
        serde_json::json!({ "session_id": id, "session_info": info })
    }

    /// Closes the sessions that expired (their files and embeddings go with them).
    pub fn close_expired_sessions(&self) {
        self.forget_closed(self.sessions.remove_expired(), "expired");
    }

    /// Forgets the embeddings of closed sessions, logging why they closed.
    fn forget_closed(&self, ids: Vec<String>, why: &str) {
        for id in ids {
            self.embeddings.forget_session(&id);
            if self.log_requests {
                eprintln!("session {id} closed ({why})");
            }
        }
    }
}

/// Serves `state` on `listener` until `shutdown` completes, then gives the requests in flight
/// [`Exposure::shutdown_grace`] to finish. Expired sessions are closed every 5 s, whether or not requests
/// come.
pub async fn serve(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let sweep_every = Duration::from_secs(5);
    let sweeper = {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(sweep_every);
            loop {
                tick.tick().await;
                state.close_expired_sessions();
            }
        })
    };
    let exposure = state.exposure.clone();
    let served = connections::serve_connections(listener, routes::router(state), &exposure, shutdown).await;
    sweeper.abort();
    served
}
