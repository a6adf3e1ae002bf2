//! Every error in FastAPI's shape: answers the framework makes by itself (a query string that does not
//! parse, a multipart request without a boundary, a method a route does not take, a body over the limit)
//! come as plain text or empty; they are rewritten as `{"detail": "..."}` with the same status.

use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Longest framework message kept (they are one line).
const MAX_MESSAGE: usize = 4 << 10;

/// The middleware.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_MESSAGE)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let detail = match text.is_empty() {
        true => status.canonical_reason().unwrap_or("error").to_string(),
        false => text,
    };
    let mut rewritten = ApiError::new(status, detail).into_response();
    // Headers the framework set for the client (e.g. `Allow` on a 405) stay.
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::Router;
    use tower_service::Service;

    async fn answer(router: &mut Router, request: axum::http::Request<Body>) -> (StatusCode, serde_json::Value) {
        let response = router.call(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn framework_errors_become_json_with_their_status() {
        let mut router = Router::new()
            .route("/text", get(|| async { (StatusCode::BAD_REQUEST, "bad query string") }))
            .route("/ok", get(|| async { "fine" }))
            .layer(axum::middleware::from_fn(json_errors));
        let get = |path: &str| axum::http::Request::get(path).body(Body::empty()).unwrap();
        let (status, body) = answer(&mut router, get("/text")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["detail"], "bad query string");
        // A method the route does not take: axum answers an empty 405.
        let post = axum::http::Request::post("/ok").body(Body::empty()).unwrap();
        let (status, body) = answer(&mut router, post).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["detail"], "Method Not Allowed");
        let response = router.call(get("/ok")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}
