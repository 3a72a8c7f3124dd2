//! `cilia agent`: the per-node agent. Runs until SIGTERM or SIGINT, then exits cleanly, leaving
//! the node's devices and routes in place for the next start.

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use agent::{AgentConfig, RoutingMode};
use anyhow::{Context as _, Result};
use store::Store;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// This node's name (its Node object).
    #[arg(long, env = "CILIA_NODE")]
    pub node: String,
    /// How packets reach other nodes' pods: native (kernel routes, no encapsulation).
    #[arg(long, default_value = "native", value_parser = parse_routing_mode)]
    pub routing_mode: RoutingMode,
    /// Route each directly reachable node's pod CIDR via its InternalIP.
    #[arg(long)]
    pub auto_direct_node_routes: bool,
    /// The CIDR the network routes natively, e.g. 172.20.0.0/16.
    #[arg(long, value_parser = parse_cidr)]
    pub ipv4_native_routing_cidr: Option<ipnet::Ipv4Net>,
    /// Where pod IP allocations are kept.
    #[arg(long, default_value = agent::config::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// The unix socket the CNI plugin talks to (created root-only).
    #[arg(long, default_value = agent::config::DEFAULT_CNI_SOCKET)]
    pub cni_socket: PathBuf,
    /// Device MTU of the host device and pod interfaces.
    #[arg(long, default_value_t = 1500)]
    pub mtu: u32,
    /// Seconds the node's membership lease outlives the agent.
    #[arg(long, default_value_t = 10)]
    pub lease_ttl: u64,
}

fn parse_routing_mode(s: &str) -> Result<RoutingMode, String> {
    s.parse().map_err(|e: agent::ConfigError| e.to_string())
}

fn parse_cidr(s: &str) -> Result<ipnet::Ipv4Net, String> {
    s.parse().map_err(|_| format!("{s:?} is not an IPv4 CIDR (like 172.20.0.0/16)"))
}

pub async fn run(store: Arc<dyn Store>, url: &str, args: &AgentArgs) -> Result<ExitCode> {
    let mut config = AgentConfig::new(&args.node);
    config.routing_mode = args.routing_mode;
    config.auto_direct_node_routes = args.auto_direct_node_routes;
    config.native_routing_cidr = args.ipv4_native_routing_cidr;
    config.state_dir.clone_from(&args.state_dir);
    config.cni_socket.clone_from(&args.cni_socket);
    config.mtu = args.mtu;
    config.lease_ttl = Duration::from_secs(args.lease_ttl);
    config.validate().context("invalid agent settings")?;
    tracing::info!(datastore = %url, "using the datastore");

    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    agent::run(store, config, shutdown).await.with_context(|| format!("agent of node {}", args.node))?;
    Ok(ExitCode::SUCCESS)
}

async fn cancel_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; the agent stops only when killed");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
    token.cancel();
}
