//! The connection loop: each accepted connection is served by hyper's HTTP/1 with a header-read timeout (a
//! client that sends its header slowly, or stays idle between requests, is dropped), and at shutdown the
//! connections in flight get a bounded grace period to finish, whatever their clients do.

use std::future::Future;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::Exposure;

/// Accepts connections on `listener` and serves `router` on each until `shutdown` completes; then stops
/// accepting, lets the requests in flight finish for at most [`Exposure::shutdown_grace`] and returns.
pub async fn serve_connections(
    listener: TcpListener,
    router: Router,
    exposure: &Exposure,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(exposure.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    // Out of file descriptors, or a connection reset before it was accepted: go on.
                    Err(e) => {
                        eprintln!("medico: accepting a connection failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    // A client that goes away or times out ends its connection; nothing to report.
                    let _ = connection.await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(exposure.shutdown_grace) => {
            eprintln!(
                "medico: requests still in flight after the {} s grace period were dropped",
                exposure.shutdown_grace.as_secs()
            );
        }
    }
    Ok(())
}
