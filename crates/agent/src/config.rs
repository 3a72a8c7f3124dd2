//! The agent's settings (`cilia agent` flags), checked before anything touches the kernel.

use std::{fmt, path::PathBuf, str::FromStr, time::Duration};

use ipnet::Ipv4Net;

/// Where the agent listens for the CNI plugin unless told otherwise.
pub const DEFAULT_CNI_SOCKET: &str = cni::DEFAULT_AGENT_SOCKET;
/// Where pod IP allocations are kept unless told otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cilia";

/// How packets to other nodes' pods leave this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RoutingMode {
    /// Plain kernel routing, no encapsulation (`routing-mode: native`).
    #[default]
    Native,
}

impl FromStr for RoutingMode {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "native" => Ok(RoutingMode::Native),
            "tunnel" | "hybrid" => Err(ConfigError::UnsupportedRoutingMode(s.to_string())),
            _ => Err(ConfigError::UnknownRoutingMode(s.to_string())),
        }
    }
}

impl fmt::Display for RoutingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RoutingMode::Native => "native",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("routing mode {0:?} is not available in this release; use native")]
    UnsupportedRoutingMode(String),
    #[error("unknown routing mode {0:?}; expected native")]
    UnknownRoutingMode(String),
    #[error("the node name is empty")]
    NoNodeName,
    #[error("MTU {0} is out of range (576 to 65535)")]
    Mtu(u32),
    #[error("--ipv4-native-routing-cidr {cidr} is not a network address (did you mean {}?)", cidr.trunc())]
    NativeRoutingCidr { cidr: Ipv4Net },
    #[error("--lease-ttl must be at least 1 s (got {0:?})")]
    LeaseTtl(Duration),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// This node's Node object.
    pub node_name: String,
    pub routing_mode: RoutingMode,
    /// Install `podCIDR via nodeIP` for every other node on a shared segment.
    pub auto_direct_node_routes: bool,
    /// The CIDR the network routes natively (`ipv4-native-routing-cidr`); informational until
    /// masquerading exists, and checked against the pod CIDRs.
    pub native_routing_cidr: Option<Ipv4Net>,
    /// Pod IP allocations live here.
    pub state_dir: PathBuf,
    /// The root-only socket the CNI plugin talks to.
    pub cni_socket: PathBuf,
    /// Device MTU of the host device and pod veths.
    pub mtu: u32,
    /// TTL of the membership lease; renewed every third of it.
    pub lease_ttl: Duration,
    /// Full route resync period, on top of the resync on every Node change: catches kernel
    /// changes (a node becoming reachable, a route deleted by hand).
    pub resync_interval: Duration,
}

impl AgentConfig {
    /// The defaults of a Cilium install with native routing, for node `node_name`.
    pub fn new(node_name: impl Into<String>) -> Self {
        AgentConfig {
            node_name: node_name.into(),
            routing_mode: RoutingMode::Native,
            auto_direct_node_routes: false,
            native_routing_cidr: None,
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            cni_socket: PathBuf::from(DEFAULT_CNI_SOCKET),
            mtu: 1500,
            lease_ttl: Duration::from_secs(10),
            resync_interval: Duration::from_secs(30),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_name.is_empty() {
            return Err(ConfigError::NoNodeName);
        }
        if !(576..=65535).contains(&self.mtu) {
            return Err(ConfigError::Mtu(self.mtu));
        }
        if let Some(cidr) = self.native_routing_cidr
            && cidr.trunc() != cidr
        {
            return Err(ConfigError::NativeRoutingCidr { cidr });
        }
        if self.lease_ttl < Duration::from_secs(1) {
            return Err(ConfigError::LeaseTtl(self.lease_ttl));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_modes() {
        assert_eq!("native".parse::<RoutingMode>(), Ok(RoutingMode::Native));
        assert_eq!(
            "tunnel".parse::<RoutingMode>().unwrap_err().to_string(),
            "routing mode \"tunnel\" is not available in this release; use native"
        );
        assert!(matches!("vxlan".parse::<RoutingMode>(), Err(ConfigError::UnknownRoutingMode(_))));
    }

    #[test]
    fn validation() {
        let ok = AgentConfig::new("k8s-ctr");
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(AgentConfig { mtu: 100, ..ok.clone() }.validate(), Err(ConfigError::Mtu(100)));
        assert_eq!(AgentConfig::new("").validate(), Err(ConfigError::NoNodeName));
        let bad = AgentConfig { native_routing_cidr: Some("172.20.1.0/16".parse().unwrap()), ..ok };
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "--ipv4-native-routing-cidr 172.20.1.0/16 is not a network address (did you mean 172.20.0.0/16?)"
        );
    }
}
