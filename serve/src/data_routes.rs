//! The web annotator's routes over `serve --data DIR` ([`DataDir`]): list the folder's scans, open one as a
//! session, send its bytes to the page's viewer, and save a mask next to it. Without `--data` they answer 404.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::data_dir::DataDir;
use crate::error::ApiError;
use crate::sessions::Session;
use crate::upload::{read_volume, upload_slot};
use crate::AppState;

/// The routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/annotator/scans", get(list))
        .route("/annotator/open", put(open))
        .route("/annotator/scan", get(scan_bytes))
        .route("/annotator/save", post(save))
}

/// The server's data folder, or a 404 saying how to give one.
fn data_dir(app: &AppState) -> Result<&DataDir, ApiError> {
    app.data
        .as_ref()
        .ok_or_else(|| ApiError::not_found("this server has no data folder (start it with --data DIR)"))
}

/// `GET /annotator/scans`: `{"scans": [relative names]}`.
async fn list(State(app): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let data = data_dir(&app)?.clone();
    let scans = tokio::task::spawn_blocking(move || data.list())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(json!({ "scans": scans })))
}

/// A scan named relative to the data folder.
#[derive(Deserialize)]
struct ScanQuery {
    scan: String,
}

/// `PUT /annotator/open?scan=NAME`: a session on the folder's scan, as `PUT /session/` answers.
async fn open(State(app): State<Arc<AppState>>, Query(query): Query<ScanQuery>) -> Result<Json<Value>, ApiError> {
    let path = data_dir(&app)?.resolve(&query.scan)?;
    let _slot = upload_slot(&app.uploads).await?;
    let limits = app.limits.read_limits();
    let name = query.scan.clone();
    let (volume, path) = tokio::task::spawn_blocking(move || {
        read_volume(&path, &name, &[path.as_path()], &limits).map(|volume| (volume, path))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    let files = tempfile::Builder::new()
        .prefix("medico-session-")
        .tempdir()
        .map_err(|e| ApiError::internal(format!("cannot create a session folder: {e}")))?;
    let mut session = Session::new(volume, files, path, query.scan.clone(), app.limits.session_expiry);
    session.data_scan = Some(query.scan);
    Ok(Json(app.open_session(session)))
}

/// `GET /annotator/scan?scan=NAME`: the scan's bytes for the page's viewer: a NIfTI or NRRD file as it is, a
/// DICOM series folder as a zip of its files (stored, not compressed); at most the upload limit (413).
async fn scan_bytes(State(app): State<Arc<AppState>>, Query(query): Query<ScanQuery>) -> Result<Response, ApiError> {
    let path = data_dir(&app)?.resolve(&query.scan)?;
    let max = app.limits.max_upload_bytes as u64;
    let name = query.scan.clone();
    let (bytes, kind) = tokio::task::spawn_blocking(move || {
        let files = match path.is_dir() {
            true => series_files(&path),
            false => vec![path.clone()],
        };
        let size: u64 = files
            .iter()
            .map(|f| std::fs::metadata(f).map_or(u64::MAX, |m| m.len()))
            .fold(0, u64::saturating_add);
        if size > max {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("{name}: {size} bytes, over the server's upload limit"),
            ));
        }
        let read = |file: &std::path::Path| {
            std::fs::read(file).map_err(|e| ApiError::internal(format!("{}: {e}", file.display())))
        };
        match path.is_dir() {
            false => Ok((read(&path)?, "application/octet-stream")),
            true => {
                let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
                let stored =
                    zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
                for file in &files {
                    let entry = file.file_name().unwrap_or_default().to_string_lossy();
                    let failed = |e: String| ApiError::internal(format!("zipping {}: {e}", file.display()));
                    zip.start_file(entry, stored).map_err(|e| failed(e.to_string()))?;
                    std::io::Write::write_all(&mut zip, &read(file)?).map_err(|e| failed(e.to_string()))?;
                }
                let bytes = zip
                    .finish()
                    .map_err(|e| ApiError::internal(e.to_string()))?
                    .into_inner();
                Ok((bytes, "application/zip"))
            }
        }
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(([(header::CONTENT_TYPE, kind)], bytes).into_response())
}

/// The DICOM files directly in a series folder, by name.
fn series_files(folder: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(folder)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && medico_io::dicom_io::looks_like_dicom(p))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The query of `POST /annotator/save`.
#[derive(Deserialize)]
struct SaveQuery {
    session_id: String,
    #[serde(default)]
    label: String,
}

/// `POST /annotator/save?session_id=ID&label=NAME` with a NIfTI mask as the body: checked to be a mask on
/// the session's grid, then written as a new file beside the session's scan; `{"saved": NAME}`.
async fn save(
    State(app): State<Arc<AppState>>,
    Query(query): Query<SaveQuery>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let data = data_dir(&app)?.clone();
    let (view, _) = app
        .sessions
        .get(&query.session_id)
        .ok_or_else(|| ApiError::session_not_found(&query.session_id))?;
    let scan = view.data_scan.clone().ok_or_else(|| {
        ApiError::unprocessable(
            "this session was uploaded, not opened from the server's data folder: download the mask",
        )
    })?;
    let path = data.resolve(&scan)?;
    let limits = app.limits.read_limits();
    let saved = tokio::task::spawn_blocking(move || {
        let mask = medico_io::nifti_io::nifti_from_bytes_within(std::path::Path::new("mask"), &body, None, &limits)
            .map_err(|e| {
                ApiError::unprocessable(format!(
                    "the mask is not a readable NIfTI: {}",
                    medico_io::chain_text(&e)
                ))
            })?;
        let on_grid = mask.shape() == view.volume.shape()
            && mask
                .affine
                .iter()
                .flatten()
                .zip(view.volume.affine.iter().flatten())
                .all(|(a, b)| (a - b).abs() <= 1e-3 * (1.0 + b.abs()));
        if !on_grid {
            return Err(ApiError::unprocessable(format!(
                "the mask's grid ({:?}) is not the scan's ({:?}): it would not lie on the scan",
                mask.shape(),
                view.volume.shape()
            )));
        }
        if mask.data.iter().any(|&v| v != 0.0 && v != 1.0) {
            return Err(ApiError::unprocessable("the mask holds values other than 0 and 1"));
        }
        data.save_beside(&path, &query.label, &body)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(Json(json!({ "saved": saved })))
}
