//! Serves the node's flows over Hubble's Observer API: on the node's address at TCP 4244 (as
//! Hubble does, for Hubble's own clients) and on `hubble.sock` in the node's state directory (for
//! `cilia observe`, which reads every node's socket without sending traffic to lab addresses).
//!
//! The TCP port is closed to pods as the datastore's and the metrics ports are: it takes only TLS
//! with a client certificate of the cluster's CA (the files the metrics port uses). Without them
//! only the socket serves.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use flow::server::{FlowSource, OBSERVER_PORT, serve_incoming, serve_unix, socket_path};
use tokio_util::sync::CancellationToken;

use crate::flows::FlowHub;

/// Starts both listeners; they stop with `shutdown`. A listener that cannot start is logged and
/// left out: flows are an aid, never a reason for the agent to stop.
pub fn start(hub: Arc<FlowHub>, state_dir: &Path, node_ip: Option<IpAddr>, shutdown: CancellationToken) {
    let source: Arc<dyn FlowSource> = hub;
    let socket = socket_path(state_dir);
    let unix_source = source.clone();
    let unix_shutdown = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = unix_shutdown.cancelled() => {}
            result = serve_unix(&socket, unix_source) => {
                if let Err(e) = result {
                    tracing::warn!(socket = %socket.display(), error = %e, "observer API socket stopped");
                }
            }
        }
        // The socket file would otherwise outlive the agent and refuse the next reader.
        let _ = std::fs::remove_file(&socket);
    });
    let Some(ip) = node_ip else {
        tracing::info!("node address unknown: the observer API listens on its socket only");
        return;
    };
    let Some(files) = telemetry::tls::TlsFiles::from_env() else {
        tracing::info!("no TLS certificates: the observer API listens on its socket only");
        return;
    };
    let addr = SocketAddr::new(ip, OBSERVER_PORT);
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown.cancelled() => {}
            result = serve_tls(addr, &files, source) => {
                if let Err(e) = result {
                    tracing::warn!(%addr, error = %e, "observer API on TCP stopped");
                }
            }
        }
    });
}

/// The Observer API on `addr`, for clients with a certificate of the cluster's CA only.
async fn serve_tls(
    addr: SocketAddr,
    files: &telemetry::tls::TlsFiles,
    source: Arc<dyn FlowSource>,
) -> std::io::Result<()> {
    let config = telemetry::tls::server_config_for(files, b"h2").map_err(std::io::Error::other)?;
    let tcp = tokio::net::TcpListener::bind(addr).await?;
    let listener = telemetry::tls::TlsListener::new(tcp, config)?;
    tracing::info!(%addr, "observer API listening (TLS with client certificates)");
    let incoming = futures::stream::unfold(listener, |mut l| async move {
        let (conn, _peer) = l.next().await?;
        Some((Ok(conn), l))
    });
    serve_incoming(incoming, source, addr.to_string()).await
}
