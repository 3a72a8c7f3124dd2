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
    let store = crate::context::connect(url).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    loop {
        match operator::run(store.clone(), config.clone(), shutdown.clone()).await {
            Ok(()) => return Ok(ExitCode::SUCCESS),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "operator stopped; campaigning again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
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
