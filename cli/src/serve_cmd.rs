//! `medico-cli serve`: the MONAI Label–compatible HTTP server (`medico-serve`) on a port, for 3D Slicer's
//! MONAI Label module and the other tools that speak that API.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::Args;
use medico_bundle::Bundle;
use medico_runtime::prediction::predictor::BackendChoice;
use medico_serve::data_dir::DataDir;
use medico_serve::{AppState, Exposure, Limits, ServeConfig, ServedModel};

use crate::common::{bundle_intensity, runtime_failure};
use crate::default_model::{resolve_model, DEFAULT_MODEL};
use crate::Failure;

#[derive(Args)]
pub struct ServeArgs {
    /// Models to serve (repeatable): bundle folders, `medico-tiny` or installed models; default medico-lite.
    /// Clients see each under its name (a folder's last component).
    #[arg(long = "model")]
    models: Vec<PathBuf>,
    /// Address to listen on (loopback by default: expose it deliberately).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0: any free port; `--json` tells which).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Require this key on every request (`Authorization: Bearer KEY` or `X-API-Key`; in 3D Slicer's login
    /// dialog, the password). Also read from MEDICO_API_KEY.
    #[arg(long, env = "MEDICO_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Inference engine: auto (ONNX Runtime if its library loads, else tract), ort or tract.
    #[arg(long, default_value = "auto")]
    backend: BackendChoice,
    /// Threads per inference.
    #[arg(long, default_value_t = crate::common::default_threads())]
    threads: usize,
    /// 2D inferences run at once (each worker holds its own copy of every model's engines).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// 3D walks run at once, on workers of their own (so that clicks never wait behind a walk).
    #[arg(long, default_value_t = 1)]
    walk_workers: usize,
    /// Largest upload (MB).
    #[arg(long, default_value_t = 512)]
    max_upload_mb: usize,
    /// Largest volume, in Mi voxels held as float32 (4 bytes each; 128: a 512^3 CT, 512 MB). Checked from
    /// the file's header before anything is decoded; a file's own voxel data may not be larger either.
    #[arg(long, default_value_t = 128)]
    max_megavoxels: usize,
    /// Uploads received and read at once; others wait up to 30 s, then get a 503.
    #[arg(long, default_value_t = 4)]
    max_concurrent_uploads: usize,
    /// Clicks (foreground and background together) one request may carry.
    #[arg(long, default_value_t = 256)]
    max_clicks: usize,
    /// Slices a 3D request may walk in each direction beyond its prompted slices.
    #[arg(long, default_value_t = 512)]
    max_walk_slices: usize,
    /// Seconds of inference one request may take (a longer walk is stopped with a 503).
    #[arg(long, default_value_t = 300)]
    work_timeout: u64,
    /// Sessions kept at once; the least recently used is closed to make room.
    #[arg(long, default_value_t = NonZeroUsize::new(16).expect("non-zero"))]
    max_sessions: NonZeroUsize,
    /// Slice embeddings kept in memory (4 MB each for SAM and LiteMedSAM).
    #[arg(long, default_value_t = NonZeroUsize::new(64).expect("non-zero"))]
    max_embeddings: NonZeroUsize,
    /// Seconds a session may stay unused before it is deleted (clients may ask for another expiry).
    #[arg(long, default_value_t = 3600)]
    session_expiry: u64,
    /// The longest session expiry a client may ask for, in seconds.
    #[arg(long, default_value_t = 7 * 24 * 3600)]
    max_session_expiry: u64,
    /// A host name the server answers besides localhost and IP addresses (repeatable): the name clients
    /// use to reach it, e.g. behind a proxy. `--host NAME` adds NAME. Requests for other names get a 421.
    #[arg(long = "allowed-host")]
    allowed_hosts: Vec<String>,
    /// A web origin (`https://viewer.example:8443`) whose pages may call the server (repeatable); requests
    /// from pages of any other origin get a 403. Clients that are not browsers are not affected.
    #[arg(long = "allowed-origin")]
    allowed_origins: Vec<String>,
    /// Seconds a client has to send a request's header; idle connections are closed after it too.
    #[arg(long, default_value_t = 30)]
    header_timeout: u64,
    /// Seconds an upload may pause; after it, an upload must average at least --min-upload-kbps.
    #[arg(long, default_value_t = 30)]
    body_timeout: u64,
    /// The slowest average upload accepted, kB per second.
    #[arg(long, default_value_t = 16)]
    min_upload_kbps: u64,
    /// Seconds requests in flight get to finish after SIGTERM or Ctrl-C.
    #[arg(long, default_value_t = 30)]
    shutdown_grace: u64,
    /// A folder of scans (NIfTI, NRRD, DICOM series folders) the web annotator lists and opens, and saves
    /// masks next to (new files only; never an input). Clients name scans relative to it and cannot leave it.
    #[arg(long = "data")]
    data: Option<PathBuf>,
    /// Print the startup line as JSON (`{"event":"listening","port":...}`) for launchers.
    #[arg(long)]
    json: bool,
    /// Do not log requests on standard error.
    #[arg(long)]
    quiet: bool,
}

/// The models, opened and named.
fn served_models(args: &ServeArgs) -> Result<Vec<ServedModel>, Failure> {
    let requested: Vec<Option<&PathBuf>> = match args.models.is_empty() {
        true => vec![None],
        false => args.models.iter().map(Some).collect(),
    };
    let mut models: Vec<ServedModel> = Vec::new();
    for model in requested {
        let dir = resolve_model(model.map(PathBuf::as_path)).map_err(Failure::model)?;
        let name = match model {
            None => DEFAULT_MODEL.to_string(),
            Some(m) if m.is_dir() => m
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| dir.display().to_string()),
            Some(m) => m.display().to_string(),
        };
        if models.iter().any(|m| m.name == name) {
            return Err(Failure::usage(anyhow!("two models are named '{name}'")));
        }
        let bundle = Bundle::open(&dir).map_err(Failure::model)?;
        let intensity = bundle_intensity(&bundle)?;
        models.push(ServedModel {
            name,
            bundle,
            intensity,
        });
    }
    Ok(models)
}

pub fn run(args: ServeArgs) -> Result<(), Failure> {
    let models = served_models(&args)?;
    let names: Vec<String> = models.iter().map(|m| m.name.clone()).collect();
    let mut allowed_hosts = args.allowed_hosts.clone();
    if args.host.parse::<std::net::IpAddr>().is_err() {
        allowed_hosts.push(args.host.clone());
    }
    let data = match &args.data {
        Some(dir) => Some(
            DataDir::open(dir)
                .with_context(|| format!("--data {}: not a readable folder", dir.display()))
                .map_err(Failure::usage)?,
        ),
        None => None,
    };
    let config = ServeConfig {
        models,
        backend: args.backend,
        threads: args.threads,
        workers: args.workers,
        walk_workers: args.walk_workers,
        api_key: args.api_key.clone().filter(|k| !k.is_empty()),
        limits: Limits {
            max_upload_bytes: args.max_upload_mb.saturating_mul(1 << 20),
            max_voxels: args.max_megavoxels.saturating_mul(1 << 20),
            max_concurrent_uploads: args.max_concurrent_uploads,
            max_sessions: args.max_sessions,
            max_embeddings: args.max_embeddings,
            session_expiry: Duration::from_secs(args.session_expiry),
            max_session_expiry: Duration::from_secs(args.max_session_expiry),
            max_clicks: args.max_clicks,
            max_walk_slices: args.max_walk_slices,
            work_timeout: Duration::from_secs(args.work_timeout),
        },
        exposure: Exposure {
            allowed_hosts,
            allowed_origins: args.allowed_origins.clone(),
            header_timeout: Duration::from_secs(args.header_timeout.max(1)),
            body_timeout: Duration::from_secs(args.body_timeout.max(1)),
            min_body_rate: args.min_upload_kbps.saturating_mul(1 << 10),
            shutdown_grace: Duration::from_secs(args.shutdown_grace),
        },
        data,
        log_requests: !args.quiet,
    };
    let state = AppState::start(config).map_err(runtime_failure)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(Failure::model)?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))
            .map_err(Failure::usage)?;
        let address: SocketAddr = listener
            .local_addr()
            .context("no local address")
            .map_err(Failure::usage)?;
        announce(&address, &names, args.json, state.api_key.is_some());
        medico_serve::serve(state, listener, shutdown_signal())
            .await
            .context("the server stopped")
            .map_err(Failure::model)?;
        eprintln!("medico: shut down");
        Ok(())
    })
}

/// The startup line: JSON for launchers, or a sentence.
fn announce(address: &SocketAddr, models: &[String], json: bool, keyed: bool) {
    let url = format!("http://{address}");
    if json {
        let line = serde_json::json!({
            "event": "listening",
            "url": url,
            "host": address.ip().to_string(),
            "port": address.port(),
            "models": models,
            "api_key": keyed,
            "pid": std::process::id(),
        });
        println!("{line}");
    } else {
        println!(
            "medico serving {} on {url} (MONAI Label API; Ctrl-C stops)",
            models.join(", ")
        );
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

/// Completes at Ctrl-C or SIGTERM; requests in flight then finish.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
}
