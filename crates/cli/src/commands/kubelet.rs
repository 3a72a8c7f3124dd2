//! The lab's pod runtime (one per node) and its stand-ins for the Deployment controller and the
//! scheduler.

use std::{process::ExitCode, sync::Arc};

use anyhow::Result;
use store::Store;

#[derive(clap::Args, Debug)]
pub struct KubeletArgs {
    /// The node whose pods this runtime runs.
    #[arg(long, env = "CILIA_NODE")]
    pub node: String,
}

pub async fn run(_store: Arc<dyn Store>, _lab: &str, args: &KubeletArgs) -> Result<ExitCode> {
    anyhow::bail!("the pod runtime for node {} is not built yet", args.node)
}

pub async fn run_controllers(_store: Arc<dyn Store>) -> Result<ExitCode> {
    anyhow::bail!("the lab controllers are not built yet")
}
