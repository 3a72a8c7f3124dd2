//! `cilia lab whoami`: the lab's stand-in for the traefik/whoami image, started by the pod
//! runtime inside a pod's network namespace.

use std::{process::ExitCode, sync::Arc};

use anyhow::{Context as _, Result};
use podruntime::whoami::{self, Whoami};

#[derive(clap::Args, Debug)]
pub struct WhoamiArgs {
    /// The pod's name, answered as `Hostname:`.
    #[arg(long)]
    pub name: String,
    /// The TCP port to serve HTTP on.
    #[arg(long, default_value_t = 80)]
    pub port: u16,
}

pub async fn run(args: &WhoamiArgs) -> Result<ExitCode> {
    let identity = Whoami::from_interfaces(&args.name).context("listing this namespace's addresses")?;
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", args.port))
        .await
        .with_context(|| format!("listening on port {}", args.port))?;
    tracing::info!(name = %args.name, port = args.port, "whoami listening");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        served = whoami::serve(listener, Arc::new(identity)) => served.context("serving")?,
        _ = term.recv() => {}
    }
    Ok(ExitCode::SUCCESS)
}
