//! The web annotator: the page at `/` and its assets, built from `web/` (NiiVue and medico's own modules,
//! bundled by `web/build.sh`) and compiled into the binary, so it works offline. The page uses the same API as
//! MONAI Label's clients (`/session/`, `/infer/{model}`): one implementation of prompts → masks.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::error::ApiError;

/// A built asset: name, content type, bytes.
type Asset = (&'static str, &'static str, &'static [u8]);

const ASSETS: [Asset; 4] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!(concat!(env!("OUT_DIR"), "/index.html")),
    ),
    (
        "annotator.js",
        "text/javascript; charset=utf-8",
        include_bytes!(concat!(env!("OUT_DIR"), "/annotator.js")),
    ),
    (
        "annotator.css",
        "text/css; charset=utf-8",
        include_bytes!(concat!(env!("OUT_DIR"), "/annotator.css")),
    ),
    (
        "THIRD_PARTY_LICENSES.txt",
        "text/plain; charset=utf-8",
        include_bytes!(concat!(env!("OUT_DIR"), "/THIRD_PARTY_LICENSES.txt")),
    ),
];

/// Whether `path` is the page or one of its assets (they hold no secret: they are served without the API
/// key, which the page then asks for).
pub fn is_annotator_path(path: &str) -> bool {
    path == "/" || ASSETS.iter().any(|(name, _, _)| path.strip_prefix('/') == Some(name))
}

/// The annotator's routes: `/` and its assets by name.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new().route("/", get(|| async { serve_asset("index.html") }));
    for (name, _, _) in ASSETS {
        router = router.route(&format!("/{name}"), get(move || async move { serve_asset(name) }));
    }
    router
}

/// The asset `name` with its type and the page's security headers.
fn serve_asset(name: &str) -> Response {
    let Some((_, content_type, bytes)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return ApiError::not_found(format!("no asset '{name}'")).into_response();
    };
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The page may not be framed by another site, and runs only its own scripts.
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; worker-src 'self' blob:",
        ),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
