//! The desired-state description of services the agent hands to the datapath: one
//! [`ServiceEntry`] per frontend, as `cilium-dbg service list` shows one row per frontend.
//!
//! The agent expands Kubernetes service types the way Cilium does: a LoadBalancer service becomes
//! a LoadBalancer entry per ingress IP plus NodePort entries (one per node address) plus a
//! ClusterIP entry; a NodePort service becomes NodePort entries plus a ClusterIP entry.

use std::net::Ipv4Addr;

use crate::abi;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => abi::IPPROTO_TCP,
            Protocol::Udp => abi::IPPROTO_UDP,
        }
    }
}

/// Which kind of frontend an entry is; decides who may reach it (a ClusterIP only from inside
/// the cluster, the others also from outside) and how dumps label it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceKind {
    ClusterIp,
    /// A node address and node port; the entry's address is one of the node's addresses.
    NodePort,
    LoadBalancer,
    ExternalIp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BackendState {
    /// Receives new connections.
    Active,
    /// Keeps its existing connections, receives no new ones (Kubernetes `terminating`).
    Terminating,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LbAlgorithm {
    /// A random backend per new connection (Cilium's default).
    #[default]
    Random,
    /// Maglev consistent hashing for north-south traffic; in-cluster traffic stays random.
    Maglev,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Frontend {
    pub address: Ipv4Addr,
    pub port: u16,
    pub protocol: Protocol,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Backend {
    pub address: Ipv4Addr,
    pub port: u16,
    pub state: BackendState,
    /// Runs on this node. North-south traffic to a remote backend is SNATed to the node, and
    /// only node-local backends serve eTP/iTP=Local.
    pub node_local: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEntry {
    pub frontend: Frontend,
    pub kind: ServiceKind,
    pub backends: Vec<Backend>,
    /// `sessionAffinity: ClientIP` with this timeout in seconds (Kubernetes default 10800).
    pub affinity_timeout: Option<u32>,
    pub algorithm: LbAlgorithm,
    /// `externalTrafficPolicy: Local`: north-south traffic only to node-local backends.
    pub external_traffic_local: bool,
    /// `internalTrafficPolicy: Local`: in-cluster traffic only to node-local backends.
    pub internal_traffic_local: bool,
}

impl ServiceEntry {
    /// A frontend with defaults: random selection, no affinity, Cluster traffic policies.
    pub fn new(kind: ServiceKind, address: Ipv4Addr, port: u16, protocol: Protocol, backends: Vec<Backend>) -> Self {
        ServiceEntry {
            frontend: Frontend { address, port, protocol },
            kind,
            backends,
            affinity_timeout: None,
            algorithm: LbAlgorithm::Random,
            external_traffic_local: false,
            internal_traffic_local: false,
        }
    }
}

impl Backend {
    pub fn active(address: Ipv4Addr, port: u16, node_local: bool) -> Self {
        Backend { address, port, state: BackendState::Active, node_local }
    }
}
