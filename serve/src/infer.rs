//! `POST /infer/{model}`: one slice of a session's volume (or of a volume sent with the request),
//! prompted with clicks and/or a box; the mask comes back on the volume's grid.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Multipart, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use medico_runtime::volume::propagation::PropagationConfig;
use serde::Deserialize;
use serde_json::json;

use crate::continuation::Continuation;
use crate::error::ApiError;
use crate::prompts::{InferParams, VolumePrompts, SLICE_AXIS};
use crate::reply::{self, MaskFormat};
use crate::segment::SegmentJob;
use crate::upload::{open_volume, receive, upload_slot};
use crate::work::WorkTicket;
use crate::AppState;

/// The name suffix of a model's 3D variant in `/info/` and `/infer/`.
pub const THREE_D_SUFFIX: &str = "-3d";
/// The name suffix of a model's semantic labelling (models with a segmentation head).
pub const LABELS_SUFFIX: &str = "-labels";

/// What a request's model name asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// The prompted slice (`NAME`).
    Slice,
    /// The prompted slices, then propagation through the volume (`NAME-3d`).
    Walk,
    /// Every slice labelled by the model's semantic head, no prompt (`NAME-labels`).
    Labels,
}

/// The query of `POST /infer/{model}`.
#[derive(Deserialize)]
pub struct InferQuery {
    /// MONAI Label's datastore image id (medico has no datastore: only sessions and uploaded files).
    #[serde(default)]
    image: String,
    /// The session to segment.
    #[serde(default)]
    session_id: String,
    /// `image` (the file), `json` (the params), `all` or absent (both, multipart).
    output: Option<String>,
}

/// What a mask request returns.
enum Output {
    All,
    Image,
    Json,
    /// A DICOM object referencing the session's DICOM series: a SEG or an RT Structure Set.
    Dicom(reply::DicomKind),
}

impl Output {
    fn parse(text: Option<&str>) -> Result<Self, ApiError> {
        match text {
            None | Some("") | Some("all") => Ok(Self::All),
            Some("image") => Ok(Self::Image),
            Some("json") => Ok(Self::Json),
            Some("dicom_seg") => Ok(Self::Dicom(reply::DicomKind::Seg)),
            Some("rtstruct") => Ok(Self::Dicom(reply::DicomKind::RtStruct)),
            Some(other) => Err(ApiError::unprocessable(format!(
                "output '{other}' is not supported; use image, json, all, dicom_seg or rtstruct"
            ))),
        }
    }
}

/// The handler.
pub async fn infer(
    State(app): State<Arc<AppState>>,
    Path(model): Path<String>,
    Query(query): Query<InferQuery>,
    multipart: Multipart,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    let (served, task) = find_model(&app, &model)?;
    let (intensity, base) = (served.intensity, served.name.clone());
    let config = PropagationConfig::for_bundle(&served.bundle)
        .map_err(|e| ApiError::from_runtime("reading the model's propagation settings", e))?;
    let output = Output::parse(query.output.as_deref())?;
    let ticket = WorkTicket::new(app.limits.work_timeout);
    // Dropped with this request's future: a client that goes away stops its walk within a slice.
    let _cancel = ticket.cancel_on_drop();
    let _slot = match query.session_id.is_empty() {
        true => Some(upload_slot(&app.uploads).await?),
        false => None,
    };
    let received = receive(multipart).await?;
    let params = InferParams::parse(received.fields.get("params").map(String::as_str))?;
    params.check_clicks(app.limits.max_clicks)?;
    if let (Output::Dicom(_), Some(label)) = (&output, params.label.as_deref()) {
        // Checked before any work: a SEG's segment label or an RT Structure Set's ROI name is an LO (64
        // characters, no backslash or controls).
        medico_io::dicom_seg::check_label(label).map_err(|e| ApiError::unprocessable(e.to_string()))?;
    }
    let format = MaskFormat::from_extension(params.result_extension.as_deref())?;
    if let Some(dtype) = params.result_dtype.as_deref().filter(|d| *d != "uint8") {
        return Err(ApiError::unprocessable(format!(
            "result_dtype '{dtype}' is not written; masks are uint8"
        )));
    }
    // The volume: the session's, else the file sent with the request (segmented once, nothing kept).
    let (volume, session, source) = if !query.session_id.is_empty() {
        let (view, _) = app
            .sessions
            .get(&query.session_id)
            .ok_or_else(|| ApiError::session_not_found(&query.session_id))?;
        (Arc::clone(&view.volume), Some(query.session_id.clone()), Some(view))
    } else if let Some(upload) = received.upload {
        let limits = app.limits.read_limits();
        let (volume, _) = tokio::task::spawn_blocking(move || open_volume(&upload, &limits))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))??;
        (Arc::new(volume), None, None)
    } else if !query.image.is_empty() {
        return Err(ApiError::not_found(format!(
            "image '{}': medico has no datastore; upload the volume with PUT /session/ and pass session_id",
            query.image
        )));
    } else {
        return Err(ApiError::bad_request(
            "no image: pass session_id (PUT /session/ first) or send the volume as the 'file' field",
        ));
    };
    let prompts = match task {
        Task::Slice => VolumePrompts::one_slice(params.slice_prompts(volume.shape())?),
        Task::Walk => params.volume_prompts(volume.shape())?,
        Task::Labels => VolumePrompts {
            annotations: Vec::new(),
            limits: None,
        },
    };
    let continuation = match (received.label, task) {
        (Some(label), Task::Slice | Task::Walk) => {
            let image = source.as_ref().map(|view| view.image.clone());
            let (limits, volume, wanted) = (app.limits.read_limits(), Arc::clone(&volume), params.label.clone());
            let read = move || Continuation::read(&label.path, &volume, image.as_deref(), &limits, wanted.as_deref());
            Some(Arc::new(
                tokio::task::spawn_blocking(read)
                    .await
                    .map_err(|e| ApiError::internal(e.to_string()))??,
            ))
        }
        _ => None,
    };
    let classes = served
        .bundle
        .manifest
        .semantic
        .as_ref()
        .map(|head| head.classes.clone());
    let job = SegmentJob {
        app: Arc::clone(&app),
        model: base,
        session,
        volume: Arc::clone(&volume),
        intensity,
        prompts: prompts.clone(),
        continuation,
        config,
        task,
        max_walk_slices: app.limits.max_walk_slices,
        ticket,
    };
    // Walks and labelling run on workers of their own: a click never waits behind one.
    let pool = match task {
        Task::Slice => &app.workers,
        Task::Walk | Task::Labels => &app.walkers,
    };
    let result = pool.run(move |predictors| job.run(predictors)).await?;
    let label = params.label.clone().unwrap_or_else(|| "label".into());
    let label_names: serde_json::Map<String, serde_json::Value> = match (task, classes) {
        (Task::Labels, Some(classes)) => classes
            .iter()
            .enumerate()
            .map(|(k, c)| (c.clone(), json!(k + 1)))
            .collect(),
        _ => [(label.clone(), json!(1))].into_iter().collect(),
    };
    let voxels = result.voxels();
    let response_params = json!({
        "label_names": label_names,
        "model": model,
        "axis": SLICE_AXIS,
        "slice": prompts.annotations.first().map(|a| a.slice),
        "slices": result.masks.keys().collect::<Vec<_>>(),
        "score": result.score,
        "voxels": voxels,
        "encoder_runs": result.encoder_runs,
        "latency_ms": start.elapsed().as_secs_f64() * 1000.0,
    });
    if let Output::Json = output {
        return Ok(Json(response_params).into_response());
    }
    if let Output::Dicom(kind) = output {
        let view = source.ok_or_else(|| {
            ApiError::unprocessable(format!(
                "output={} needs a session holding a DICOM series (PUT /session/)",
                kind.name()
            ))
        })?;
        let description = medico_io::dicom_seg::SegmentDescription {
            label: label.clone(),
            algorithm_name: medico_io::dicom_seg::algorithm_name(&model),
            algorithm_version: format!("medico {}", env!("CARGO_PKG_VERSION")),
        };
        let bytes = tokio::task::spawn_blocking(move || {
            reply::dicom(kind, &view, &volume, &result.grid(&volume), &description)
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
        let name = format!("medico-{:016x}.dcm", rand::random::<u64>());
        return Ok(reply::file(bytes, &name, "application/dicom"));
    }
    let bytes = tokio::task::spawn_blocking(move || format.encode(&volume, &result.grid(&volume)))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    let name = format!("medico-{:016x}{}", rand::random::<u64>(), format.extension());
    Ok(match output {
        Output::Image => reply::file(bytes, &name, "application/octet-stream"),
        _ => reply::multipart(&response_params, &bytes, &name),
    })
}

/// `model`, `NAME-3d` (the same model, propagated through the volume) or `NAME-labels` (its semantic head,
/// for models with one); the task it names.
fn find_model<'a>(app: &'a AppState, model: &str) -> Result<(&'a crate::ServedModel, Task), ApiError> {
    let by_name = |name: &str| app.models.iter().find(|m| m.name == name);
    if let Some(served) = by_name(model) {
        return Ok((served, Task::Slice));
    }
    let walk = model
        .strip_suffix(THREE_D_SUFFIX)
        .and_then(by_name)
        .map(|m| (m, Task::Walk));
    let labels = model
        .strip_suffix(LABELS_SUFFIX)
        .and_then(by_name)
        .filter(|m| m.bundle.manifest.semantic.is_some())
        .map(|m| (m, Task::Labels));
    walk.or(labels)
        .ok_or_else(|| ApiError::not_found(format!("no model '{model}'; GET /info/ lists them")))
}
