//! `cilia dns --node N`: the node's cluster DNS as a process of its own, beside the agent, so
//! that restarting the agent never interrupts name resolution (see `agent::dns::standalone`).

use std::{process::ExitCode, sync::Arc};

use anyhow::{Result, anyhow};
use store::Store;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args, Debug)]
pub struct DnsArgs {
    /// The node whose pods this server answers (on the node's router IP).
    #[arg(long, env = "CILIA_NODE")]
    pub node: String,
    /// The UDP and TCP port to answer on.
    #[arg(long, default_value_t = agent::dns::DNS_PORT)]
    pub port: u16,
}

pub async fn run(store: Arc<dyn Store>, args: &DnsArgs) -> Result<ExitCode> {
    let shutdown = CancellationToken::new();
    // Started with etcd in the lab: wait for it quietly.
    store::datastore_wait::wait_ready(store.as_ref(), "cluster DNS", &shutdown).await;
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            on_signal.cancel();
        }
    });
    agent::dns::standalone::run(store, &args.node, args.port, shutdown)
        .await
        .map_err(|e| anyhow!("cluster DNS of node {}: {e}", args.node))?;
    Ok(ExitCode::SUCCESS)
}
