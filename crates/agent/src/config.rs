//! The agent's settings: resolved from the command line and the stored configuration
//! `kube-system/cilium-config` ([`AgentConfig::resolve`]), checked before anything touches the
//! kernel ([`AgentConfig::validate`]).

use std::{collections::BTreeMap, fmt, path::PathBuf, str::FromStr, time::Duration};

use api::{ValidationError, cilium_config::CiliumConfig};
use datapath::LbAlgorithm;
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
    /// Every other node through the VXLAN overlay (`routing-mode: tunnel`).
    Tunnel,
    /// Direct routes to nodes on the same segment, the overlay to the others (`routing-mode: hybrid`).
    Hybrid,
}

impl FromStr for RoutingMode {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "native" => Ok(RoutingMode::Native),
            "tunnel" => Ok(RoutingMode::Tunnel),
            "hybrid" => Ok(RoutingMode::Hybrid),
            _ => Err(ConfigError::UnknownRoutingMode(s.to_string())),
        }
    }
}

impl fmt::Display for RoutingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RoutingMode::Native => "native",
            RoutingMode::Tunnel => "tunnel",
            RoutingMode::Hybrid => "hybrid",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown routing mode {0:?}; expected native, tunnel or hybrid")]
    UnknownRoutingMode(String),
    #[error(
        "auto direct node routes cannot be used with routing mode tunnel: packets must be routed through the tunnel \
         device (use hybrid for direct routes on the same segment)"
    )]
    DirectRoutesWithTunnel,
    #[error("tunnel port {0} is out of range (1 to 65535)")]
    TunnelPort(u16),
    #[error("the node name is empty")]
    NoNodeName,
    #[error("MTU {0} is out of range (576 to 65535)")]
    Mtu(u32),
    #[error("--ipv4-native-routing-cidr {cidr} is not a network address (did you mean {}?)", cidr.trunc())]
    NativeRoutingCidr { cidr: Ipv4Net },
    #[error("--lease-ttl must be at least 1 s (got {0:?})")]
    LeaseTtl(Duration),
    #[error("unknown load-balancing algorithm {0:?}; expected random or maglev")]
    LbAlgorithm(String),
    #[error("the BPF pin directory must be an absolute path (got {0:?})")]
    BpfDir(PathBuf),
    #[error("L2 announcements need kube-proxy replacement: the eBPF datapath answers their ARP requests")]
    L2WithoutDatapath,
    #[error(
        "the L2 heartbeat settings do not fit: dead-after {dead_after:?} must be at least three heartbeat intervals \
         ({interval:?}), and the interval at least 10ms"
    )]
    L2Timing { interval: Duration, dead_after: Duration },
    #[error("kube-system/cilium-config is invalid")]
    StoredConfig(#[source] ValidationError),
    #[error("{key} of kube-system/cilium-config")]
    StoredValue {
        key: &'static str,
        #[source]
        source: Box<ConfigError>,
    },
}

/// Parses `--lb-algorithm` (Cilium's `loadBalancer.algorithm`).
pub fn parse_lb_algorithm(s: &str) -> Result<LbAlgorithm, ConfigError> {
    match s {
        "random" => Ok(LbAlgorithm::Random),
        "maglev" => Ok(LbAlgorithm::Maglev),
        _ => Err(ConfigError::LbAlgorithm(s.to_string())),
    }
}

/// kube-proxy replacement: the eBPF service datapath and what feeds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceLbConfig {
    /// The node's bpffs directory; maps and links pinned here outlive the agent.
    pub bpf_dir: PathBuf,
    /// Devices that get `from_netdev`; empty: every up device with an IPv4 address except
    /// loopback, cilia's own and pod veths (Cilium's device auto-detection).
    pub devices: Vec<String>,
    /// For Services without the `service.cilium.io/lb-algorithm` annotation.
    pub algorithm: LbAlgorithm,
    /// Socket-LB for the node's own processes (cgroup hooks on the cgroup v2 root, acting only
    /// in this node's network namespace).
    pub socket_lb: bool,
    /// How often pod veths are looked for (new pods get their programs within this time).
    pub link_poll: Duration,
    /// `bpf-lb-map-max`: entries of each service map (frontend rows, backends, rev-NAT).
    pub map_max: u32,
    /// `conntrack-gc-interval`: how often the conntrack and SNAT maps are swept.
    pub gc_interval: Duration,
}

impl ServiceLbConfig {
    pub fn new(bpf_dir: impl Into<PathBuf>) -> Self {
        ServiceLbConfig {
            bpf_dir: bpf_dir.into(),
            devices: Vec::new(),
            algorithm: LbAlgorithm::Random,
            socket_lb: true,
            link_poll: Duration::from_millis(200),
            map_max: datapath::abi::LB_SERVICES_MAP_SIZE,
            gc_interval: Duration::from_secs(30),
        }
    }
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
    /// The service datapath; None leaves services to something else.
    pub service_lb: Option<ServiceLbConfig>,
    /// Port of the cluster DNS server on the router IP; None: no DNS server.
    pub dns_port: Option<u16>,
    /// UDP port of the VXLAN device in tunnel and hybrid mode (`tunnel-port`).
    pub tunnel_port: u16,
    /// The node's bpffs directory, where the overlay's maps and links are pinned.
    pub bpf_dir: PathBuf,
    /// L2 announcements (`enable-l2-announcements`); they need the service datapath, whose
    /// `from_netdev` answers ARP.
    pub l2: Option<crate::l2_announcer::L2Config>,
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
            service_lb: None,
            dns_port: None,
            tunnel_port: netconf::VXLAN_PORT,
            bpf_dir: PathBuf::from(datapath::BPF_ROOT),
            l2: None,
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
        if self.routing_mode == RoutingMode::Tunnel && self.auto_direct_node_routes {
            return Err(ConfigError::DirectRoutesWithTunnel);
        }
        if self.tunnel_port == 0 {
            return Err(ConfigError::TunnelPort(self.tunnel_port));
        }
        if self.routing_mode != RoutingMode::Native && !self.bpf_dir.is_absolute() {
            return Err(ConfigError::BpfDir(self.bpf_dir.clone()));
        }
        if self.lease_ttl < Duration::from_secs(1) {
            return Err(ConfigError::LeaseTtl(self.lease_ttl));
        }
        if let Some(lb) = &self.service_lb
            && !lb.bpf_dir.is_absolute()
        {
            return Err(ConfigError::BpfDir(lb.bpf_dir.clone()));
        }
        if let Some(l2) = &self.l2 {
            if self.service_lb.is_none() {
                return Err(ConfigError::L2WithoutDatapath);
            }
            if l2.heartbeat_interval < Duration::from_millis(10) || l2.dead_after < l2.heartbeat_interval * 3 {
                return Err(ConfigError::L2Timing { interval: l2.heartbeat_interval, dead_after: l2.dead_after });
            }
        }
        Ok(())
    }
}

/// What the command line says. `None` leaves a setting to the stored configuration, and from
/// there to Cilium's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentFlags {
    pub node: String,
    pub routing_mode: Option<RoutingMode>,
    pub auto_direct_node_routes: Option<bool>,
    pub ipv4_native_routing_cidr: Option<Ipv4Net>,
    pub state_dir: PathBuf,
    pub cni_socket: PathBuf,
    pub mtu: Option<u32>,
    pub lease_ttl: Duration,
    pub kube_proxy_replacement: Option<bool>,
    /// Default `/sys/fs/bpf/cilia/<node>`.
    pub bpf_dir: Option<PathBuf>,
    pub devices: Vec<String>,
    pub lb_algorithm: Option<LbAlgorithm>,
    pub socket_lb: bool,
    /// 0 turns the cluster DNS server off.
    pub dns_port: u16,
    pub l2_heartbeat_port: u16,
}

impl AgentConfig {
    /// The settings from `flags` over the stored configuration's `data` (None: no stored
    /// configuration, the agent's historical defaults with native routing), checked.
    pub fn resolve(flags: &AgentFlags, stored: Option<&BTreeMap<String, String>>) -> Result<AgentConfig, ConfigError> {
        let cilium = stored_settings(stored)?;
        let stored_value =
            |key: &'static str| move |e: ConfigError| ConfigError::StoredValue { key, source: Box::new(e) };
        let mut config = AgentConfig::new(&flags.node);
        config.routing_mode = match flags.routing_mode {
            Some(mode) => mode,
            None => cilium.routing_mode.parse().map_err(stored_value("routing-mode"))?,
        };
        config.auto_direct_node_routes = flags.auto_direct_node_routes.unwrap_or(cilium.auto_direct_node_routes);
        config.native_routing_cidr = flags.ipv4_native_routing_cidr.or(cilium.ipv4_native_routing_cidr);
        config.state_dir.clone_from(&flags.state_dir);
        config.cni_socket.clone_from(&flags.cni_socket);
        config.mtu = flags.mtu.unwrap_or(cilium.mtu);
        config.lease_ttl = flags.lease_ttl;
        config.tunnel_port = cilium.tunnel_port;
        config.bpf_dir = flags.bpf_dir.clone().unwrap_or_else(|| datapath::node_pin_dir(&flags.node));
        if flags.kube_proxy_replacement.unwrap_or(cilium.kube_proxy_replacement) {
            let mut lb = ServiceLbConfig::new(config.bpf_dir.clone());
            lb.devices.clone_from(&flags.devices);
            lb.algorithm = match flags.lb_algorithm {
                Some(a) => a,
                None => parse_lb_algorithm(&cilium.bpf_lb_algorithm).map_err(stored_value("bpf-lb-algorithm"))?,
            };
            lb.socket_lb = flags.socket_lb;
            lb.map_max = cilium.bpf_lb_map_max;
            lb.gc_interval = cilium.conntrack_gc_interval;
            config.service_lb = Some(lb);
        }
        if cilium.enable_l2_announcements {
            config.l2 = Some(crate::l2_announcer::L2Config {
                heartbeat_interval: cilium.l2_heartbeat_interval,
                dead_after: cilium.l2_dead_after,
                port: flags.l2_heartbeat_port,
                devices: flags.devices.clone(),
                neigh_discovery: cilium.enable_l2_neigh_discovery,
                state_dir: flags.state_dir.clone(),
            });
        }
        config.dns_port = (flags.dns_port != 0).then_some(flags.dns_port);
        config.validate()?;
        Ok(config)
    }
}

/// The stored configuration with defaults for what it leaves out.
fn stored_settings(stored: Option<&BTreeMap<String, String>>) -> Result<CiliumConfig, ConfigError> {
    match stored {
        Some(data) => {
            api::cilium_config::check(data).map_err(ConfigError::StoredConfig)?;
            Ok(CiliumConfig::from_data(data))
        }
        None => Ok(CiliumConfig::from_data(&[("routing-mode".to_string(), "native".to_string())].into())),
    }
}

#[cfg(test)]
#[path = "config_resolve_tests.rs"]
mod resolve_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_modes() {
        assert_eq!("native".parse::<RoutingMode>(), Ok(RoutingMode::Native));
        assert_eq!("tunnel".parse::<RoutingMode>(), Ok(RoutingMode::Tunnel));
        assert_eq!("hybrid".parse::<RoutingMode>(), Ok(RoutingMode::Hybrid));
        assert_eq!(RoutingMode::Hybrid.to_string(), "hybrid");
        assert!(matches!("vxlan".parse::<RoutingMode>(), Err(ConfigError::UnknownRoutingMode(_))));
    }

    #[test]
    fn validation() {
        let ok = AgentConfig::new("k8s-ctr");
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(AgentConfig { mtu: 100, ..ok.clone() }.validate(), Err(ConfigError::Mtu(100)));
        assert_eq!(AgentConfig::new("").validate(), Err(ConfigError::NoNodeName));
        let tunnel_adr = AgentConfig { routing_mode: RoutingMode::Tunnel, auto_direct_node_routes: true, ..ok.clone() };
        assert_eq!(tunnel_adr.validate(), Err(ConfigError::DirectRoutesWithTunnel));
        let hybrid = AgentConfig { routing_mode: RoutingMode::Hybrid, auto_direct_node_routes: true, ..ok.clone() };
        assert_eq!(hybrid.validate(), Ok(()));
        let bad = AgentConfig { native_routing_cidr: Some("172.20.1.0/16".parse().unwrap()), ..ok };
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "--ipv4-native-routing-cidr 172.20.1.0/16 is not a network address (did you mean 172.20.0.0/16?)"
        );
    }
}
