//! Errors as the clients expect them: an HTTP status and a JSON body `{"detail": "..."}` (FastAPI's shape,
//! which MONAI Label's clients print in their exceptions).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use medico_runtime::RuntimeError;

/// A request that failed, with the status and the message the client gets.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {detail}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong, in words.
    pub detail: String,
}

impl ApiError {
    /// A malformed request (400).
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// A missing session, model or route (404).
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// A session that does not exist (any more) (404).
    pub fn session_not_found(id: &str) -> Self {
        Self::not_found(format!("session '{id}' not found (expired or deleted?)"))
    }

    /// A well-formed request that cannot be done (422): prompts outside the volume, an unreadable image.
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }

    /// A failure on the server's side (500).
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, detail)
    }

    /// An error with any status.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
        }
    }

    /// A runtime error: bad input files and prompts are the client's (422; a file over the limits 413),
    /// work stopped at its deadline 503, the rest the server's (500).
    pub fn from_runtime(context: &str, error: RuntimeError) -> Self {
        let text = format!("{context}: {}", medico_io::chain_text(&error));
        match error {
            RuntimeError::Io(medico_io::IoError::TooLarge { .. }) => Self::new(StatusCode::PAYLOAD_TOO_LARGE, text),
            RuntimeError::Io(_) | RuntimeError::Prompt(_) => Self::unprocessable(text),
            RuntimeError::Interrupted(_) => Self::new(StatusCode::SERVICE_UNAVAILABLE, text),
            _ => Self::internal(text),
        }
    }
}

impl IntoResponse for ApiError {
    /// The JSON answer. A server-side failure (500) can name the server's files and engines: its detail
    /// goes to the server's log under a reference, and the client gets the reference.
    fn into_response(self) -> Response {
        let detail = match self.status {
            StatusCode::INTERNAL_SERVER_ERROR => {
                let reference = format!("{:08x}", rand::random::<u32>());
                eprintln!("medico: error {reference}: {}", self.detail);
                format!("the server failed (reference {reference}; the details are in the server's log)")
            }
            _ => self.detail,
        };
        (self.status, Json(serde_json::json!({ "detail": detail }))).into_response()
    }
}
