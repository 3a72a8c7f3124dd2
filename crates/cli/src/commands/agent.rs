//! `cilia agent`: the per-node agent. Runs until SIGTERM or SIGINT, then exits cleanly, leaving
//! the node's devices, routes and pinned datapath in place for the next start.
//!
//! Its settings come from `kube-system/cilium-config` (Cilium's key names, see `cilia config
//! view`) as the agent reads them at start; flags given on the command line override them. A
//! configuration change therefore takes effect at the next start (`cilia config set` restarts the
//! agents).

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use agent::{AgentConfig, RoutingMode, config::AgentFlags};
use anyhow::{Context as _, Result};
use store::Store;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// This node's name (its Node object).
    #[arg(long, env = "CILIA_NODE")]
    pub node: String,
    /// How packets reach other nodes' pods: native, tunnel (VXLAN) or hybrid; default from the
    /// stored configuration.
    #[arg(long, value_parser = parse_routing_mode)]
    pub routing_mode: Option<RoutingMode>,
    /// Route each directly reachable node's pod CIDR via its InternalIP.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub auto_direct_node_routes: Option<bool>,
    /// The CIDR the network routes natively, e.g. 172.20.0.0/16.
    #[arg(long, value_parser = parse_cidr)]
    pub ipv4_native_routing_cidr: Option<ipnet::Ipv4Net>,
    /// Where pod IP allocations are kept.
    #[arg(long, default_value = agent::config::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// The unix socket the CNI plugin talks to (created root-only).
    #[arg(long, default_value = agent::config::DEFAULT_CNI_SOCKET)]
    pub cni_socket: PathBuf,
    /// Device MTU of the host device, pod interfaces and the VXLAN device; default from the
    /// stored configuration (1500).
    #[arg(long)]
    pub mtu: Option<u32>,
    /// Seconds the node's membership lease outlives the agent.
    #[arg(long, default_value_t = 10)]
    pub lease_ttl: u64,
    /// Balance Services with the eBPF datapath (ClusterIP, NodePort, LoadBalancer, external IPs).
    #[arg(long)]
    pub kube_proxy_replacement: Option<bool>,
    /// Wait for kube-system/cilium-config to exist before starting (as a Cilium pod needs its
    /// ConfigMap); without it, missing settings take the flags' and Cilium's defaults.
    #[arg(long)]
    pub wait_for_config: bool,
    /// The node's bpffs directory for maps and links; default /sys/fs/bpf/cilia/<node>.
    #[arg(long, env = "CILIA_BPF_DIR")]
    pub bpf_dir: Option<PathBuf>,
    /// Node devices for NodePort and LoadBalancer traffic (comma-separated); default: every up
    /// device with an IPv4 address except loopback, cilia's own and pod veths.
    #[arg(long, value_delimiter = ',')]
    pub devices: Vec<String>,
    /// Backend selection for Services without the service.cilium.io/lb-algorithm annotation;
    /// default from the stored configuration (random).
    #[arg(long, value_parser = parse_lb_algorithm)]
    pub lb_algorithm: Option<datapath::LbAlgorithm>,
    /// Socket-LB for the node's own processes.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub socket_lb: bool,
    /// Port of the cluster DNS server on the router IP; 0 turns it off.
    #[arg(long, default_value_t = agent::dns::DNS_PORT)]
    pub dns_port: u16,
    /// UDP port of the L2 announcement heartbeats between agents.
    #[arg(long, default_value_t = agent::heartbeat_socket::HEARTBEAT_PORT)]
    pub l2_heartbeat_port: u16,
}

fn parse_lb_algorithm(s: &str) -> Result<datapath::LbAlgorithm, String> {
    agent::config::parse_lb_algorithm(s).map_err(|e| e.to_string())
}

fn parse_routing_mode(s: &str) -> Result<RoutingMode, String> {
    s.parse().map_err(|e: agent::ConfigError| e.to_string())
}

fn parse_cidr(s: &str) -> Result<ipnet::Ipv4Net, String> {
    s.parse().map_err(|_| format!("{s:?} is not an IPv4 CIDR (like 172.20.0.0/16)"))
}

impl AgentArgs {
    fn flags(&self) -> AgentFlags {
        AgentFlags {
            node: self.node.clone(),
            routing_mode: self.routing_mode,
            auto_direct_node_routes: self.auto_direct_node_routes,
            ipv4_native_routing_cidr: self.ipv4_native_routing_cidr,
            state_dir: self.state_dir.clone(),
            cni_socket: self.cni_socket.clone(),
            mtu: self.mtu,
            lease_ttl: Duration::from_secs(self.lease_ttl),
            kube_proxy_replacement: self.kube_proxy_replacement,
            bpf_dir: self.bpf_dir.clone(),
            devices: self.devices.clone(),
            lb_algorithm: self.lb_algorithm,
            socket_lb: self.socket_lb,
            dns_port: self.dns_port,
            l2_heartbeat_port: self.l2_heartbeat_port,
        }
    }
}

pub async fn run(store: Arc<dyn Store>, url: &str, args: &AgentArgs) -> Result<ExitCode> {
    // Started with etcd in the lab: wait for it quietly before reading the configuration.
    agent::wait_for_datastore(store.as_ref(), &CancellationToken::new()).await;
    let stored = super::config::read_cilium_config(store.as_ref(), args.wait_for_config).await?;
    let config = AgentConfig::resolve(&args.flags(), stored.as_ref()).context("invalid agent settings")?;
    tracing::info!(
        stored = stored.is_some(),
        routing_mode = %config.routing_mode,
        auto_direct_node_routes = config.auto_direct_node_routes,
        "settings from kube-system/cilium-config and flags"
    );
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
