//! `cilia operator`: runs the controllers until SIGTERM/SIGINT, standing by while another operator
//! leads and re-campaigning if leadership is lost.

use std::{process::ExitCode, time::Duration};

use anyhow::{Context as _, Result};
use operator::OperatorConfig;
use tokio_util::sync::CancellationToken;

pub async fn run(url: &str, identity: Option<String>, service_cidr: &str) -> Result<ExitCode> {
    let identity = match identity {
        Some(i) => i,
        None => nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .context("no --identity given and the host name is unreadable")?,
    };
    let mut config = OperatorConfig::new(identity);
    config.service_cidr =
        service_cidr.parse().with_context(|| format!("--service-cidr {service_cidr:?} is not an IPv4 CIDR"))?;
    config.kubernetes = crate::context::is_kubernetes(url);
    let store = crate::context::connect(url).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let (tcp, socket) = telemetry_listen();
    tokio::spawn(operator::metrics::start(store.clone(), tcp, socket, shutdown.clone()));
    loop {
        match operator::run(store.clone(), config.clone(), shutdown.clone()).await {
            Ok(()) => return Ok(ExitCode::SUCCESS),
            Err(e) => {
                let e = anyhow::Error::new(e);
                tracing::error!(error = %format!("{e:#}"), "operator stopped; campaigning again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Where the operator serves metrics and health: in a lab, on its host's address (port 9963)
/// and in its host's node directory, where `cilia status` looks; elsewhere on a socket under
/// /run/cilia only.
fn telemetry_listen() -> (Option<std::net::SocketAddr>, std::path::PathBuf) {
    let in_lab = std::env::var(lab::process::ENV_LAB).ok().zip(std::env::var(lab::process::ENV_HOST).ok());
    if let Some((name, host)) = in_lab
        && let Ok(lab) = lab::Lab::new(&name)
    {
        let dir = lab.paths().node_dir(&host);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot create the node directory for the metrics socket");
        }
        let ip = lab::nodes(lab.topology()).into_iter().find(|n| n.name == host).map(|n| n.internal_ip);
        let tcp = ip.map(|ip| std::net::SocketAddr::new(ip.into(), telemetry::OPERATOR_PORT));
        return (tcp, dir.join(telemetry::OPERATOR_SOCKET));
    }
    (None, std::path::PathBuf::from("/run/cilia").join(telemetry::OPERATOR_SOCKET))
}

async fn cancel_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    token.cancel();
}
