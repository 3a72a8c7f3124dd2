//! The operator's settings, with the lab's defaults (those of the guide's cluster).

use std::time::Duration;

use ipnet::Ipv4Net;

#[derive(Clone, Debug)]
pub struct OperatorConfig {
    /// Who this operator is in the leader lease (`holderIdentity`).
    pub identity: String,
    /// How long a dead leader keeps the lease before a standby takes over.
    pub lease_ttl: Duration,
    /// Cluster IPs come from here (`--service-cluster-ip-range`).
    pub service_cidr: Ipv4Net,
    /// Node ports come from here (`--service-node-port-range`).
    pub node_ports: (u16, u16),
    /// LB-IPAM serves the class of L2 announcements (`io.cilium/l2-announcer`).
    pub l2_announcements: bool,
    /// Cluster-pool IPAM: per-node pod CIDRs come from these (`clusterPoolIPv4PodCIDRList`).
    pub cluster_pool_cidrs: Vec<Ipv4Net>,
    /// Prefix length of each node's pod CIDR (`clusterPoolIPv4MaskSize`).
    pub cluster_pool_mask: u8,
    /// The datastore is a Kubernetes API server: its own controllers allocate cluster IPs and node
    /// ports, keep EndpointSlices and node lifecycle, so the operator runs only cilia's (LB-IPAM,
    /// pod CIDRs, L2 policy status) and elects its leader with a Lease object.
    pub kubernetes: bool,
}

impl OperatorConfig {
    pub fn new(identity: impl Into<String>) -> Self {
        OperatorConfig {
            identity: identity.into(),
            lease_ttl: Duration::from_secs(5),
            service_cidr: "10.96.0.0/16".parse().expect("a valid literal CIDR"),
            node_ports: (30000, 32767),
            l2_announcements: true,
            cluster_pool_cidrs: vec!["172.20.0.0/16".parse().expect("a valid literal CIDR")],
            cluster_pool_mask: 24,
            kubernetes: false,
        }
    }
}
