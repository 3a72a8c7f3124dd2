//! Why the agent stops. Everything transient (datastore unreachable, a route the kernel refused)
//! is retried inside the agent; what ends up here needs a restart or an operator's attention.
//! Each variant's message names its layer only; the cause is its `source()`, printed by walking
//! the chain ([`api::error::Chain`], or anyhow's `{:#}` in the CLI).

use ipnet::Ipv4Net;

use crate::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("kernel")]
    Kernel(#[from] netconf::Error),
    #[error("pod networking")]
    PodNetwork(#[from] cni::ServerError),
    /// The service datapath cannot load or attach (no BPF support, bpffs not mountable).
    #[error("service datapath")]
    Datapath(#[from] datapath::Error),
    /// Pods keep their addresses from the old CIDR; a fresh start wires new pods from the new
    /// one (the supervisor or init system restarts the agent).
    #[error("the pod CIDR of node {node} changed from {old} to {new}; restarting pod networking")]
    PodCidrChanged { node: String, old: Ipv4Net, new: Ipv4Net },
}
