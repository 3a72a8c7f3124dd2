//! `cilia lab kubelet --node N` (the lab's pod runtime, one per node) and `cilia lab controllers`
//! (its stand-ins for the Deployment controller and the scheduler). Both are started by the lab's
//! supervisor; see the `podruntime` crate.

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::{Context as _, Result};
use store::Store;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args, Debug)]
pub struct KubeletArgs {
    /// The node whose pods this runtime runs.
    #[arg(long, env = "CILIA_NODE")]
    pub node: String,
    /// The agent's CNI socket; defaults to the node's under the lab's state dir.
    #[arg(long)]
    pub cni_socket: Option<PathBuf>,
    /// The CNI plugin executable; defaults to `cilia-cni` beside this executable.
    #[arg(long)]
    pub cni_plugin: Option<PathBuf>,
}

pub async fn run(store: Arc<dyn Store>, lab: &str, args: &KubeletArgs) -> Result<ExitCode> {
    // Started with etcd in the lab: wait for it quietly.
    store::datastore_wait::wait_ready(store.as_ref(), "pod runtime", &CancellationToken::new()).await;
    let config = podruntime::kubelet::KubeletConfig {
        lab: lab::Lab::new(lab)?,
        node: args.node.clone(),
        agent_socket: args.cni_socket.clone(),
        cni_plugin: args.cni_plugin.clone(),
    };
    podruntime::kubelet::run(store, config, until_signalled())
        .await
        .with_context(|| format!("pod runtime of node {}", args.node))?;
    Ok(ExitCode::SUCCESS)
}

pub async fn run_controllers(store: Arc<dyn Store>) -> Result<ExitCode> {
    store::datastore_wait::wait_ready(store.as_ref(), "lab controllers", &CancellationToken::new()).await;
    podruntime::controllers::run(store, until_signalled()).await.context("lab controllers")?;
    Ok(ExitCode::SUCCESS)
}

/// Cancelled on SIGTERM or SIGINT, so the process returns cleanly; pods keep running.
fn until_signalled() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending().await,
        }
        cancel.cancel();
    });
    token
}
