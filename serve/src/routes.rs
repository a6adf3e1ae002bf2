//! The routes: MONAI Label's paths, the API-key check, request logging and JSON errors for everything
//! else.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::body_timeout::time_bodies;
use crate::error::ApiError;
use crate::exposure::check_host_and_origin;
use crate::json_errors::json_errors;
use crate::sessions::Session;
use crate::upload::{open_volume, receive, upload_slot};
use crate::AppState;

/// Largest body of the open `/auth/` routes (a login form).
const MAX_AUTH_BODY: usize = 16 << 10;

/// The router with every route and layer. From the outside in: request logging, errors as JSON, the
/// host and origin checks, bodies timed as they arrive, the API key, the body limit (small on `/auth/`).
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.limits.max_upload_bytes;
    let exposure = Arc::new(state.exposure.clone());
    Router::new()
        .route("/info/", get(info))
        .route("/session/", put(create_session))
        .route("/session/{id}", get(get_session).delete(remove_session))
        .route("/infer/{model}", post(crate::infer::infer))
        .route("/auth/", get(auth_status))
        .route(
            "/auth/token",
            post(auth_token).layer(DefaultBodyLimit::max(MAX_AUTH_BODY)),
        )
        .route("/auth/token/valid", get(token_valid))
        .merge(crate::annotator::routes())
        .merge(crate::data_routes::routes())
        .fallback(unknown_route)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), require_key))
        .layer(middleware::from_fn_with_state(Arc::clone(&exposure), time_bodies))
        .layer(middleware::from_fn_with_state(exposure, check_host_and_origin))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), log_request))
        .with_state(state)
}

/// `GET /info/`: the app and its models, as MONAI Label describes them; every model is offered as an
/// interactive 2D `deepgrow` model (clicks and a box on one slice) and as `NAME-3d` (dimension 3: the same
/// prompts, then propagation through the volume); a model with a semantic head also as `NAME-labels` (a
/// `segmentation` model: every slice labelled, no prompt).
async fn info(State(app): State<Arc<AppState>>) -> Json<Value> {
    let mut models = serde_json::Map::new();
    for m in &app.models {
        let architecture = &m.bundle.manifest.architecture;
        for (dimension, name, what) in [
            (2, m.name.clone(), "on one slice"),
            (
                3,
                format!("{}{}", m.name, crate::infer::THREE_D_SUFFIX),
                "on the prompted slices, then propagated through the volume",
            ),
        ] {
            let model = json!({
                "type": "deepgrow",
                "labels": [],
                "dimension": dimension,
                "description": format!(
                    "{} ({architecture}): Segment Anything from clicks and/or a box {what}, on medico",
                    m.name
                ),
                "config": {},
            });
            models.insert(name, model);
        }
        if let Some(head) = &m.bundle.manifest.semantic {
            let labels: serde_json::Map<String, Value> = head
                .classes
                .iter()
                .enumerate()
                .map(|(k, class)| (class.clone(), json!(k + 1)))
                .collect();
            let model = json!({
                "type": "segmentation",
                "labels": labels,
                "dimension": 3,
                "description": format!(
                    "{} ({architecture}): every slice labelled by its semantic segmentation head ({}), no prompt, on medico",
                    m.name,
                    head.classes.join(", ")
                ),
                "config": {},
            });
            models.insert(format!("{}{}", m.name, crate::infer::LABELS_SUFFIX), model);
        }
    }
    Json(json!({
        "name": "medico",
        "description": "medico: medical Segment Anything models on a CPU (MONAI Label API subset)",
        "version": env!("CARGO_PKG_VERSION"),
        "labels": [],
        "models": models,
        "trainers": {},
        "strategies": {},
        "scoring": {},
        "train_stats": {},
        "datastore": {"total": 0, "completed": 0},
    }))
}

/// The query of `PUT /session/`.
#[derive(Deserialize)]
struct SessionQuery {
    /// Seconds of inactivity before the session is deleted (0: the server's default).
    #[serde(default)]
    expiry: u64,
}

/// `PUT /session/`: reads the uploaded volume and opens a session on it.
async fn create_session(
    State(app): State<Arc<AppState>>,
    Query(query): Query<SessionQuery>,
    multipart: Multipart,
) -> Result<Json<Value>, ApiError> {
    let expiry = session_expiry(query.expiry, &app.limits)?;
    let _slot = upload_slot(&app.uploads).await?;
    let received = receive(multipart).await?;
    let upload = received.upload.ok_or_else(|| {
        ApiError::bad_request(
            "the upload has no 'files' field: send the image as multipart files (a NIfTI or NRRD file, a zip of \
             a DICOM series, or the series' files)",
        )
    })?;
    let limits = app.limits.read_limits();
    let (volume, image, upload) = tokio::task::spawn_blocking(move || {
        open_volume(&upload, &limits).map(|(volume, image)| (volume, image, upload))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    let session = Session::new(volume, upload.dir, image, upload.name, expiry);
    Ok(Json(app.open_session(session)))
}

/// The expiry a client asked for (0: the server's default); a 422 beyond the server's maximum.
fn session_expiry(seconds: u64, limits: &crate::Limits) -> Result<std::time::Duration, ApiError> {
    let asked = std::time::Duration::from_secs(seconds);
    match seconds {
        0 => Ok(limits.session_expiry),
        _ if asked > limits.max_session_expiry => Err(ApiError::unprocessable(format!(
            "expiry {seconds} s is over this server's maximum of {} s",
            limits.max_session_expiry.as_secs()
        ))),
        _ => Ok(asked),
    }
}

/// `GET /session/{id}`.
async fn get_session(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let (_, info) = app.sessions.get(&id).ok_or_else(|| ApiError::session_not_found(&id))?;
    Ok(Json(serde_json::to_value(info).unwrap_or_default()))
}

/// `DELETE /session/{id}`: the session, its files and its embeddings.
async fn remove_session(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let info = app
        .sessions
        .remove(&id)
        .ok_or_else(|| ApiError::session_not_found(&id))?;
    app.embeddings.forget_session(&id);
    Ok(Json(serde_json::to_value(info).unwrap_or_default()))
}

/// `GET /auth/`: whether a key is needed (MONAI Label's shape; its clients ask before anything else).
async fn auth_status(State(app): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({ "enabled": app.api_key.is_some(), "client_id": "medico", "realm": "" }))
}

/// The form of `POST /auth/token` (OAuth2's password grant, as the clients send it).
#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    password: String,
}

/// `POST /auth/token`: the API key, typed as the password in a client's login dialog, becomes the
/// bearer token.
async fn auth_token(State(app): State<Arc<AppState>>, Form(form): Form<TokenForm>) -> Result<Json<Value>, ApiError> {
    match &app.api_key {
        None => Ok(Json(json!({ "access_token": null, "token_type": null }))),
        Some(key) if same_secret(key, &form.password) => {
            Ok(Json(json!({ "access_token": key, "token_type": "Bearer" })))
        }
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong API key (give it as the password)",
        )),
    }
}

/// `GET /auth/token/valid`: 200 when the request's key is right (the key check has passed by now).
async fn token_valid() -> Json<Value> {
    Json(json!({ "username": "medico", "roles": ["user"] }))
}

/// Any other path: a JSON 404 naming what is served.
async fn unknown_route(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "{} {}: not served; medico serves /info/, /session/ and /infer/{{model}} of MONAI Label's API and \
         its web annotator at / (docs/serve.md)",
        request.method(),
        request.uri().path()
    ))
}

/// Refuses requests without the API key (when one is set); `/auth/` and `/auth/token` stay open so that
/// clients can find out and log in, and so does the annotator's page, which asks for the key.
async fn require_key(State(app): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let Some(key) = &app.api_key else {
        return next.run(request).await;
    };
    let path = request.uri().path();
    let open = matches!(path, "/auth/" | "/auth/token") || crate::annotator::is_annotator_path(path);
    if open || presented_key(request.headers()).is_some_and(|k| same_secret(key, k)) {
        return next.run(request).await;
    }
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "missing or wrong API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
    )
    .into_response()
}

/// The key a request carries: `X-API-Key`, or the token of `Authorization: <type> <token>`.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(key);
    }
    let auth = headers.get("authorization")?.to_str().ok()?;
    auth.split_once(' ').map(|(_, token)| token.trim())
}

/// Compares secrets in time independent of where they differ.
fn same_secret(expected: &str, given: &str) -> bool {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One line per request on standard error: method, path, status, milliseconds.
async fn log_request(State(app): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if !app.log_requests {
        return next.run(request).await;
    }
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let start = Instant::now();
    let response = next.run(request).await;
    eprintln!(
        "{method} {path} {} {:.1} ms",
        response.status().as_u16(),
        start.elapsed().as_secs_f64() * 1000.0
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn keys_are_read_from_either_header_and_compared_exactly() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer s3cret"));
        assert_eq!(presented_key(&headers), Some("s3cret"));
        headers.insert("x-api-key", HeaderValue::from_static("other"));
        assert_eq!(presented_key(&headers), Some("other"));
        assert!(same_secret("s3cret", "s3cret"));
        assert!(!same_secret("s3cret", "s3cre"));
        assert!(!same_secret("s3cret", "s3creT"));
    }
}
