//! `POST /infer/{model}`: one slice of a session's volume (or of a volume sent with the request),
//! prompted with clicks and/or a box; the mask comes back on the volume's grid.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Multipart, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use medico_io::image2d::RgbImage;
use medico_io::volume::Volume;
use serde::Deserialize;
use serde_json::json;

use crate::embeddings::SliceKey;
use crate::error::ApiError;
use crate::prompts::{InferParams, SlicePrompts, SLICE_AXIS};
use crate::reply::{self, MaskFormat};
use crate::upload::{open_volume, receive};
use crate::workers::Predictors;
use crate::AppState;

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
    /// A DICOM SEG referencing the session's DICOM series.
    DicomSeg,
}

impl Output {
    fn parse(text: Option<&str>) -> Result<Self, ApiError> {
        match text {
            None | Some("") | Some("all") => Ok(Self::All),
            Some("image") => Ok(Self::Image),
            Some("json") => Ok(Self::Json),
            Some("dicom_seg") => Ok(Self::DicomSeg),
            Some(other) => Err(ApiError::unprocessable(format!(
                "output '{other}' is not supported; use image, json, all or dicom_seg"
            ))),
        }
    }
}

/// One slice's mask and what the model said about it.
struct SliceMask {
    mask: Vec<bool>,
    hw: (usize, usize),
    score: f32,
    encoder_ran: bool,
}

/// The handler.
pub async fn infer(
    State(app): State<Arc<AppState>>,
    Path(model): Path<String>,
    Query(query): Query<InferQuery>,
    multipart: Multipart,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    let served = app
        .models
        .iter()
        .find(|m| m.name == model)
        .ok_or_else(|| ApiError::not_found(format!("no model '{model}'; GET /info/ lists them")))?;
    let intensity = served.intensity;
    let output = Output::parse(query.output.as_deref())?;
    let received = receive(multipart).await?;
    let params = InferParams::parse(received.fields.get("params").map(String::as_str))?;
    let format = MaskFormat::from_extension(params.result_extension.as_deref())?;
    if let Some(dtype) = params.result_dtype.as_deref().filter(|d| *d != "uint8") {
        return Err(ApiError::unprocessable(format!(
            "result_dtype '{dtype}' is not written; masks are uint8"
        )));
    }
    // The volume: the session's, else the file sent with the request (segmented once, nothing kept).
    let (volume, session, source) = if !query.session_id.is_empty() {
        let (view, _) = app.sessions.get(&query.session_id).ok_or_else(|| {
            ApiError::not_found(format!(
                "session '{}' not found (expired or deleted?)",
                query.session_id
            ))
        })?;
        (Arc::clone(&view.volume), Some(query.session_id.clone()), Some(view))
    } else if let Some(upload) = received.upload {
        let max_voxels = app.limits.max_voxels;
        let (volume, _) = tokio::task::spawn_blocking(move || open_volume(&upload, max_voxels))
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
    let prompts = params.slice_prompts(volume.shape())?;
    let key = session.map(|session| SliceKey {
        session,
        model: model.clone(),
        axis: SLICE_AXIS,
        slice: prompts.slice,
    });
    let job_volume = Arc::clone(&volume);
    let job_app = Arc::clone(&app);
    let job_prompts = prompts.clone();
    let job_model = model.clone();
    let result = app
        .workers
        .run(move |predictors| {
            segment_slice(
                predictors,
                &job_app,
                &job_model,
                key,
                &job_volume,
                intensity,
                &job_prompts,
            )
        })
        .await?;
    let label = params.label.clone().unwrap_or_else(|| "label".into());
    let area = result.mask.iter().filter(|&&m| m).count();
    let response_params = json!({
        "label_names": { label.clone(): 1 },
        "model": model,
        "axis": SLICE_AXIS,
        "slice": prompts.slice,
        "score": result.score,
        "area_px": area,
        "encoder": if result.encoder_ran { "ran" } else { "cached" },
        "latency_ms": start.elapsed().as_secs_f64() * 1000.0,
    });
    if let Output::Json = output {
        return Ok(Json(response_params).into_response());
    }
    if let Output::DicomSeg = output {
        let view = source.ok_or_else(|| {
            ApiError::unprocessable("output=dicom_seg needs a session holding a DICOM series (PUT /session/)")
        })?;
        let description = medico_io::dicom_seg::SegmentDescription {
            label: label.clone(),
            algorithm_name: format!("medico {model}"),
            algorithm_version: format!("medico {}", env!("CARGO_PKG_VERSION")),
        };
        let bytes = tokio::task::spawn_blocking(move || {
            let grid = volume.mask_from_slice(SLICE_AXIS, prompts.slice, &result.mask, result.hw);
            reply::dicom_seg(&view, &volume, &grid, &description)
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
        let name = format!("medico-{:016x}.dcm", rand::random::<u64>());
        return Ok(reply::file(bytes, &name, "application/dicom"));
    }
    let bytes = tokio::task::spawn_blocking(move || {
        let grid = volume.mask_from_slice(SLICE_AXIS, prompts.slice, &result.mask, result.hw);
        format.encode(&volume, &grid)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    let name = format!("medico-{:016x}{}", rand::random::<u64>(), format.extension());
    Ok(match output {
        Output::Image => reply::file(bytes, &name, "application/octet-stream"),
        _ => reply::multipart(&response_params, &bytes, &name),
    })
}

/// Runs on a worker: the slice's embedding (kept, or encoded and kept), then the decoder.
fn segment_slice(
    predictors: &mut Predictors,
    app: &AppState,
    model: &str,
    key: Option<SliceKey>,
    volume: &Volume,
    intensity: medico_io::intensity::Intensity,
    prompts: &SlicePrompts,
) -> Result<SliceMask, ApiError> {
    let held = key.as_ref().is_some_and(|k| predictors.holds(model, k));
    let hw = volume.slice_hw(SLICE_AXIS);
    let kept = match held {
        true => None,
        false => key.as_ref().and_then(|k| app.embeddings.get(k)),
    };
    let encoder_ran = !held && kept.is_none();
    if !held {
        // Until the new slice is loaded, the predictor's image is unknown.
        predictors.set_held(model, None);
    }
    let predictor = predictors.get(model)?;
    if !held {
        match kept {
            Some(embedding) => predictor.set_embedding((*embedding).clone(), hw),
            None => {
                let (values, hw) = volume.slice(SLICE_AXIS, prompts.slice);
                let image = RgbImage::from_gray(&values, hw, intensity);
                predictor
                    .set_image(&image.pixels, image.hw)
                    .map_err(|e| ApiError::from_runtime("encoding the slice", e))?;
                if let (Some(key), Some(embedding)) = (&key, predictor.embedding()) {
                    app.embeddings.put(key.clone(), Arc::new(embedding.clone()));
                }
            }
        }
    }
    let prediction = predictor
        .predict(&prompts.points, prompts.bbox.as_ref(), None, false)
        .map_err(|e| ApiError::from_runtime("decoding the prompts", e))?;
    let best = prediction.best();
    let threshold = predictor.config().mask_threshold as f32;
    let mask = prediction.logits[best].iter().map(|&l| l > threshold).collect();
    predictors.set_held(model, key);
    Ok(SliceMask {
        mask,
        hw,
        score: prediction.iou[best],
        encoder_ran,
    })
}
