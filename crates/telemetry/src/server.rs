//! `/metrics`, `/healthz` and `/readyz` over HTTP/1.1 (axum), on a TCP address and a unix socket.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::health::Health;

/// The OpenMetrics text format's content type.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the endpoints answer from.
#[derive(Clone)]
pub struct Endpoints {
    /// The exposition, computed per scrape; may read BPF maps, so it runs on a blocking thread.
    pub metrics: Arc<dyn Fn() -> String + Send + Sync>,
    pub health: Arc<Health>,
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints").field("health", &self.health).finish()
    }
}

/// Where to listen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listen {
    /// The node's address and port (inside the node's network namespace).
    pub tcp: Option<SocketAddr>,
    /// A socket file, created root-only (0600); a stale one is replaced.
    pub unix: Option<PathBuf>,
    /// TLS with client certificates on `tcp`, as the datastore's port is closed to pods. `tcp`
    /// is served only with it: the node's address is never served in plain HTTP.
    pub tls: Option<crate::tls::TlsFiles>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {}", path.display())]
    Unix { path: PathBuf, source: std::io::Error },
}

pub fn router(endpoints: Endpoints) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(endpoints)
}

async fn metrics(State(e): State<Endpoints>) -> Response {
    let render = e.metrics.clone();
    match tokio::task::spawn_blocking(move || render()).await {
        Ok(text) => ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response(),
        Err(err) => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding the metrics failed: {err}\n")).into_response()
        }
    }
}

fn json_answer(ok: bool, body: &crate::HealthReport) -> Response {
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let text = serde_json::to_string(body).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    (status, [(header::CONTENT_TYPE, "application/json")], text + "\n").into_response()
}

async fn healthz(State(e): State<Endpoints>) -> Response {
    let report = e.health.report();
    json_answer(report.healthy, &report)
}

async fn readyz(State(e): State<Endpoints>) -> Response {
    let report = e.health.report();
    json_answer(report.ready, &report)
}

/// Binds the listeners of `listen` and serves until `shutdown`; also runs the heartbeat. The
/// unix socket failing is an error; the node's address failing (no certificates, address not
/// bound) is logged, and the socket serves alone.
pub async fn serve(
    endpoints: Endpoints,
    listen: &Listen,
    shutdown: CancellationToken,
) -> Result<Vec<JoinHandle<()>>, ServeError> {
    let mut tasks = Vec::new();
    let app = router(endpoints.clone());
    // Without a usable certificate, or when the address cannot be bound, the node's address
    // stays closed; the socket still serves.
    let mut tcp = None;
    match (listen.tcp, listen.tls.as_ref().map(crate::tls::server_config)) {
        (Some(addr), Some(Ok(config))) => {
            match tokio::net::TcpListener::bind(addr).await.and_then(|l| crate::tls::TlsListener::new(l, config)) {
                Ok(listener) => tcp = Some(listener),
                Err(e) => tracing::warn!(address = %addr, error = %e, "cannot listen on the node's address"),
            }
        }
        (Some(addr), Some(Err(e))) => tracing::warn!(address = %addr, error = %e, "not serving on the node's address"),
        (Some(addr), None) => tracing::warn!(
            address = %addr,
            "no TLS certificates (CILIA_METRICS_CA, _CERT, _KEY): not serving on the node's address"
        ),
        (None, _) => {}
    }
    let mut unix = None;
    if let Some(path) = &listen.unix {
        let err = |source| ServeError::Unix { path: path.clone(), source };
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        let listener = tokio::net::UnixListener::bind(path).map_err(err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
        unix = Some(listener);
    }
    if let Some(listener) = tcp {
        let (app, stop) = (app.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await {
                tracing::warn!(error = %e, "the metrics listener stopped");
            }
        }));
    }
    if let Some(listener) = unix {
        let (app, stop) = (app.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await {
                tracing::warn!(error = %e, "the metrics socket stopped");
            }
        }));
    }
    let health = endpoints.health.clone();
    tasks.push(tokio::spawn(async move { health.beat_until(shutdown).await }));
    Ok(tasks)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::client::get;

    #[tokio::test]
    async fn serves_metrics_health_and_readiness_on_a_root_only_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.sock");
        std::fs::write(&path, "stale").unwrap();
        let health = Arc::new(Health::new(&["services"]));
        let endpoints = Endpoints { metrics: Arc::new(|| "cilia_up 1\n# EOF\n".to_string()), health: health.clone() };
        let stop = CancellationToken::new();
        let listen = Listen { tcp: None, unix: Some(path.clone()), tls: None };
        let tasks = serve(endpoints, &listen, stop.clone()).await.unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let t = Duration::from_secs(2);

        let m = get(&path, "/metrics", t).await.unwrap();
        assert_eq!((m.status, m.body.as_str()), (200, "cilia_up 1\n# EOF\n"));
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(get(&path, "/healthz", t).await.unwrap().status, 200);
        let not_ready = get(&path, "/readyz", t).await.unwrap();
        assert_eq!(not_ready.status, 503);
        let report: crate::HealthReport = serde_json::from_str(&not_ready.body).unwrap();
        assert_eq!(report.not_ready(), ["services: not yet checked"]);
        health.set("services", true, "synced");
        assert_eq!(get(&path, "/readyz", t).await.unwrap().status, 200);
        assert_eq!(get(&path, "/nothing", t).await.unwrap().status, 404);
        let blocking = tokio::task::spawn_blocking(move || crate::client::get_blocking(&path, "/metrics", t));
        assert_eq!(blocking.await.unwrap().unwrap().status, 200);

        stop.cancel();
        for task in tasks {
            task.await.unwrap();
        }
    }

    #[tokio::test]
    async fn without_certificates_the_address_is_not_served_and_the_socket_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.sock");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let endpoints = Endpoints { metrics: Arc::new(String::new), health: Arc::new(Health::new(&[])) };
        let stop = CancellationToken::new();
        let listen = Listen { tcp: Some(addr), unix: Some(path.clone()), tls: None };
        let _tasks = serve(endpoints, &listen, stop.clone()).await.unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "plain HTTP on the address");
        assert_eq!(get(&path, "/metrics", Duration::from_secs(2)).await.unwrap().status, 200);
        stop.cancel();
    }
}
