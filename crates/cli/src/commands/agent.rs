//! `cilia agent`: the per-node agent.

use std::{process::ExitCode, sync::Arc};

use anyhow::Result;
use store::Store;

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// This node's name (its Node object).
    #[arg(long, env = "CILIA_NODE")]
    pub node: String,
}

pub async fn run(_store: Arc<dyn Store>, _url: &str, args: &AgentArgs) -> Result<ExitCode> {
    anyhow::bail!("the agent for node {} is not built yet", args.node)
}
