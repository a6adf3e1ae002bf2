//! Who the server answers: requests for a host name it does not serve are refused (a web page that
//! rebinds its own domain name to 127.0.0.1 cannot read the replies), and so are requests a browser sends
//! on behalf of a page of another origin (a cross-site form POST cannot run an inference). Pages of the
//! origins allowed get CORS (preflight and `Access-Control-Allow-Origin`).

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::Exposure;

/// The host part of a `Host` header value (`name`, `name:port`, `[v6]:port`), lower-cased.
fn host_name(value: &str) -> String {
    let value = value.trim();
    let host = if let Some(rest) = value.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        value.rsplit_once(':').map_or(value, |(host, port)| {
            // `a:b:c` without brackets is a bare IPv6 address, not host:port.
            if host.contains(':') || port.parse::<u16>().is_err() {
                value
            } else {
                host
            }
        })
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// The `host[:port]` of an origin `scheme://host[:port]`.
fn origin_authority(origin: &str) -> &str {
    origin
        .split_once("://")
        .map_or(origin, |(_, rest)| rest)
        .trim_end_matches('/')
}

impl Exposure {
    /// Whether a request for `host` (a `Host` header value) is answered: an IP literal (DNS rebinding
    /// needs a name), `localhost`, or a name given with `--allowed-host`.
    pub fn serves_host(&self, host: &str) -> bool {
        let name = host_name(host);
        name.parse::<IpAddr>().is_ok()
            || name == "localhost"
            || self.allowed_hosts.iter().any(|allowed| host_name(allowed) == name)
    }

    /// Whether a browser page of `origin` (an `Origin` header value) may call the server: only origins given
    /// with `--allowed-origin` (`null`, sent by sandboxed pages and files, never).
    pub fn allows_origin(&self, origin: &str) -> bool {
        let origin = origin.trim().trim_end_matches('/');
        self.allowed_origins
            .iter()
            .any(|allowed| allowed.trim_end_matches('/').eq_ignore_ascii_case(origin))
    }
}

/// The middleware: a 421 for a host name not served, a 403 for a foreign origin (the server's own page,
/// whose origin is the host it was asked for, is not foreign).
pub async fn check_host_and_origin(State(exposure): State<Arc<Exposure>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .map(str::to_string);
    let Some(host) = host else {
        return ApiError::bad_request("the request has no Host header").into_response();
    };
    if !exposure.serves_host(&host) {
        let name = host_name(&host);
        return ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            format!("host '{name}' is not served here; start the server with --allowed-host {name} to answer it"),
        )
        .into_response();
    }
    let Some(origin) = headers.get(header::ORIGIN).cloned() else {
        return next.run(request).await;
    };
    let text = origin.to_str().unwrap_or("(not text)").to_string();
    // Browsers send Origin on the page's module script and its POSTs too.
    if origin_authority(&text).eq_ignore_ascii_case(&host) {
        return next.run(request).await;
    }
    if !exposure.allows_origin(&text) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "requests from web pages of {text} are refused; start the server with --allowed-origin {text} to \
                 allow them"
            ),
        )
        .into_response();
    }
    // An allowed page gets CORS: its preflight is answered here, and every reply names it.
    let mut response = if request.method() == Method::OPTIONS {
        let mut preflight = StatusCode::NO_CONTENT.into_response();
        let headers = preflight.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, PUT, POST, DELETE"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, x-api-key, content-type"),
        );
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        preflight
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_and_localhost_are_served_and_other_names_only_when_allowed() {
        let exposure = Exposure {
            allowed_hosts: vec!["Medico.Clinic.example".into()],
            ..Exposure::default()
        };
        for served in [
            "127.0.0.1:8000",
            "localhost:8000",
            "LOCALHOST",
            "[::1]:8000",
            "::1",
            "10.1.2.3",
            "medico.clinic.example:443",
            "medico.clinic.example.",
        ] {
            assert!(exposure.serves_host(served), "{served}");
        }
        for refused in [
            "attacker.example:8000",
            "localhost.attacker.example",
            "127.0.0.1.nip.io",
            "",
        ] {
            assert!(!exposure.serves_host(refused), "{refused}");
        }
    }

    #[test]
    fn an_origins_authority_is_its_host_and_port() {
        assert_eq!(origin_authority("http://127.0.0.1:8000"), "127.0.0.1:8000");
        assert_eq!(origin_authority("https://medico.example/"), "medico.example");
    }

    #[test]
    fn only_listed_origins_are_allowed() {
        let exposure = Exposure {
            allowed_origins: vec!["https://ohif.clinic.example".into()],
            ..Exposure::default()
        };
        assert!(exposure.allows_origin("https://ohif.clinic.example"));
        assert!(exposure.allows_origin("https://OHIF.clinic.example/"));
        assert!(!exposure.allows_origin("http://ohif.clinic.example"));
        assert!(!exposure.allows_origin("https://evil.example"));
        assert!(!exposure.allows_origin("null"));
        assert!(!Exposure::default().allows_origin("http://localhost:3000"));
    }
}
