//! What the flow buffer knows about addresses: pods (by IP), Service frontends (by address and
//! port), nodes (by address and pod CIDR). Built from the cluster's objects (pure), replaced as a
//! whole when they change.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use api::types::{Pod, Service};
use ipnet::Ipv4Net;

use super::identity;
use crate::node_view::NodeView;

/// A pod as flows name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    /// Hubble's form, `k8s:key=value`.
    pub labels: Vec<String>,
    pub identity: u32,
    pub node: Option<String>,
}

/// A Service as flows name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceName {
    pub namespace: String,
    pub name: String,
}

/// What an address that is no pod's belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reserved {
    /// This node (its addresses and router IP).
    Host,
    /// Another node of the cluster.
    RemoteNode,
    /// Anything else.
    World,
}

#[derive(Clone, Debug, Default)]
pub struct Directory {
    node_name: String,
    pods: HashMap<Ipv4Addr, PodInfo>,
    /// (address, port) of ClusterIPs, external and LoadBalancer IPs; NodePorts under every node
    /// address.
    frontends: HashMap<(Ipv4Addr, u16), ServiceName>,
    /// Node name, address, pod CIDR.
    nodes: Vec<(String, Option<Ipv4Addr>, Option<Ipv4Net>)>,
}

impl Directory {
    pub fn build(node_name: &str, pods: &[Pod], services: &[Service], nodes: &[NodeView]) -> Directory {
        let mut d = Directory { node_name: node_name.to_string(), ..Directory::default() };
        for pod in pods {
            let host_network = pod.spec.host_network.unwrap_or(false);
            let Some(ip) = pod.status.pod_ip.as_deref().and_then(|s| s.parse::<Ipv4Addr>().ok()) else { continue };
            if host_network {
                continue;
            }
            let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
            let info = PodInfo {
                identity: identity::workload_identity(&namespace, &pod.metadata.labels),
                labels: identity::hubble_labels(&namespace, &pod.metadata.labels),
                name: pod.metadata.name.clone(),
                node: pod.spec.node_name.clone(),
                namespace,
            };
            d.pods.insert(ip, info);
        }
        let node_ips: Vec<Ipv4Addr> = nodes.iter().filter_map(|n| n.internal_ip).collect();
        for svc in services {
            let name = ServiceName {
                namespace: svc.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
                name: svc.metadata.name.clone(),
            };
            let mut addrs: Vec<Ipv4Addr> = Vec::new();
            let spec = &svc.spec;
            let texts = spec
                .cluster_ip
                .iter()
                .chain(spec.cluster_ips.iter())
                .chain(spec.external_ips.iter())
                .chain(spec.load_balancer_ip.iter())
                .chain(svc.status.load_balancer.ingress.iter().filter_map(|i| i.ip.as_ref()));
            for text in texts {
                if let Ok(a) = text.parse::<Ipv4Addr>()
                    && !addrs.contains(&a)
                {
                    addrs.push(a);
                }
            }
            for port in &spec.ports {
                let Ok(p) = u16::try_from(port.port) else { continue };
                for a in &addrs {
                    d.frontends.insert((*a, p), name.clone());
                }
                if let Some(np) = port.node_port.and_then(|np| u16::try_from(np).ok()) {
                    for a in &node_ips {
                        d.frontends.insert((*a, np), name.clone());
                    }
                }
            }
        }
        d.nodes = nodes.iter().map(|n| (n.name.clone(), n.internal_ip, n.pod_cidr)).collect();
        d
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    pub fn pod(&self, ip: Ipv4Addr) -> Option<&PodInfo> {
        self.pods.get(&ip)
    }

    /// Whether `ip` lies in this node's pod CIDR: one of its pods (or its router IP), known yet
    /// or not (a pod's address reaches the datastore, and this directory, a moment after its
    /// first packets).
    pub fn in_own_pod_cidr(&self, ip: Ipv4Addr) -> bool {
        self.nodes.iter().any(|(name, _, cidr)| *name == self.node_name && cidr.is_some_and(|c| c.contains(&ip)))
    }

    pub fn service(&self, ip: Ipv4Addr, port: u16) -> Option<&ServiceName> {
        self.frontends.get(&(ip, port))
    }

    /// What a non-pod address is: a node's own address or an address of its pod CIDR (its router
    /// IP) is the host here and a remote node elsewhere; the rest is the world. No address at all
    /// is the host too: a socket of the node refused by socket-LB before it had one.
    pub fn reserved(&self, ip: Ipv4Addr) -> Reserved {
        if ip.is_unspecified() {
            return Reserved::Host;
        }
        for (name, addr, cidr) in &self.nodes {
            if *addr == Some(ip) || cidr.is_some_and(|c| c.contains(&ip)) {
                return if *name == self.node_name { Reserved::Host } else { Reserved::RemoteNode };
            }
        }
        Reserved::World
    }
}
