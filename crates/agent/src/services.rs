//! The datapath's desired state, computed from Services, EndpointSlices and Nodes without touching
//! the kernel: one [`ServiceEntry`] per frontend, the way Cilium expands service types.
//!
//! - ClusterIP: one frontend per cluster IP and port.
//! - NodePort (and LoadBalancer with node ports): one frontend per node InternalIP and node port.
//!   Every node's address is listed, not only this node's: a pod or a process of this node that
//!   connects to another node's NodePort is balanced right here, as Cilium's socket-LB does. One
//!   more per node port has the address 0.0.0.0 (Cilium's surrogate frontend): socket-LB uses it
//!   for the node's loopback addresses, so `curl 127.0.0.1:<nodePort>` on a node works.
//! - LoadBalancer: one frontend per `status.loadBalancer.ingress[].ip` and port.
//! - externalIPs: one frontend per address and port, whatever the type.
//!
//! Backends come from the Service's EndpointSlices: ready endpoints are active, terminating ones
//! stay for the connections they already have, others are left out. A frontend without backends
//! is still listed, so the datapath rejects at once instead of letting packets wander.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use api::types::{EndpointSlice, Service, ServicePort};
use datapath::{Backend, BackendState, Frontend, LbAlgorithm, Protocol, ServiceEntry, ServiceKind};

use crate::node_view::NodeView;

/// The Service annotation choosing Maglev or random per service, as in Cilium.
pub const LB_ALGORITHM_ANNOTATION: &str = "service.cilium.io/lb-algorithm";
/// Kubernetes' default `sessionAffinityConfig.clientIP.timeoutSeconds` (3 h).
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10800;

/// What the builder needs to know about the node it runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    pub node_name: String,
    /// For Services without the annotation (`--lb-algorithm`).
    pub default_algorithm: LbAlgorithm,
    /// Nodes this agent's heartbeats say are down ([`crate::l2_announcer`]): their endpoints get
    /// no new connections, long before the datastore marks the node lost.
    pub unreachable_nodes: std::collections::BTreeSet<String>,
}

/// A frontend two Services claim; the first by namespace/name keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub frontend: Frontend,
    pub kept: String,
    pub dropped: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// Sorted by frontend.
    pub entries: Vec<ServiceEntry>,
    pub conflicts: Vec<Conflict>,
    /// Frontend addresses left out because no Service may claim them, with why.
    pub refused: Vec<Refused>,
}

/// A frontend address a Service claims that no Service may have: a pod CIDR's address (a pod's,
/// or the pods' gateway and DNS server), a node's own address, or one no node can serve. Taking it
/// would hijack that traffic; the API refuses most, and this catches what was stored around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub service: String,
    pub address: Ipv4Addr,
    pub why: &'static str,
}

/// Why `address` can be no Service's frontend, if it can't.
fn refuse(address: Ipv4Addr, pod_cidrs: &[ipnet::Ipv4Net], node_ips: &BTreeSet<Ipv4Addr>) -> Option<&'static str> {
    if address.is_unspecified() || address.is_loopback() || address.is_link_local() {
        Some("no node can serve it")
    } else if address.is_multicast() || address.is_broadcast() {
        Some("it is a multicast or broadcast address")
    } else if pod_cidrs.iter().any(|c| c.contains(&address)) {
        Some("it is in a pod CIDR")
    } else if node_ips.contains(&address) {
        Some("it is a node's address")
    } else {
        None
    }
}

/// Computes every frontend this node's datapath should carry.
pub fn desired(options: &BuildOptions, services: &[Service], slices: &[EndpointSlice], nodes: &[NodeView]) -> Desired {
    let mut by_service: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in slices.iter().filter(|s| s.address_type == "IPv4") {
        if let Some(svc) = slice.metadata.labels.get(api::labels::SERVICE_NAME) {
            let ns = slice.metadata.namespace.clone().unwrap_or_else(|| "default".into());
            by_service.entry((ns, svc.clone())).or_default().push(slice);
        }
    }
    let node_ips: BTreeSet<Ipv4Addr> = nodes.iter().filter_map(|n| n.internal_ip).collect();
    // Node ports are served on this node's own address (and the 0.0.0.0 surrogate), as Cilium
    // does: another node's address:port reaches that node, whose datapath serves it. Programming
    // every node's would cost every node a row per node, Service and port.
    let own_ips: BTreeSet<Ipv4Addr> =
        nodes.iter().filter(|n| n.name == options.node_name).filter_map(|n| n.internal_ip).collect();
    let pod_cidrs: Vec<ipnet::Ipv4Net> = nodes.iter().filter_map(|n| n.pod_cidr).collect();
    let mut refused = Vec::new();

    let mut sorted: Vec<&Service> = services.iter().collect();
    sorted.sort_by_key(|s| service_key(s));
    let mut out: BTreeMap<Frontend, (String, ServiceEntry)> = BTreeMap::new();
    let mut conflicts = Vec::new();
    for svc in sorted {
        let key = service_key(svc);
        let no_slices = Vec::new();
        let svc_slices = by_service.get(&key).unwrap_or(&no_slices);
        let owner = format!("{}/{}", key.0, key.1);
        for entry in service_entries(options, svc, svc_slices, &own_ips) {
            // Node ports live on node addresses by design; every other frontend is checked.
            if entry.kind != ServiceKind::NodePort
                && let Some(why) = refuse(entry.frontend.address, &pod_cidrs, &node_ips)
            {
                let r = Refused { service: owner.clone(), address: entry.frontend.address, why };
                if !refused.contains(&r) {
                    refused.push(r);
                }
                continue;
            }
            match out.get(&entry.frontend) {
                Some((kept, _)) => {
                    conflicts.push(Conflict { frontend: entry.frontend, kept: kept.clone(), dropped: owner.clone() })
                }
                None => {
                    out.insert(entry.frontend, (owner.clone(), entry));
                }
            }
        }
    }
    Desired { entries: out.into_values().map(|(_, e)| e).collect(), conflicts, refused }
}

fn service_key(svc: &Service) -> (String, String) {
    (svc.metadata.namespace.clone().unwrap_or_else(|| "default".into()), svc.metadata.name.clone())
}

/// The frontends of one Service, all ports.
fn service_entries(
    options: &BuildOptions,
    svc: &Service,
    slices: &[&EndpointSlice],
    node_ips: &BTreeSet<Ipv4Addr>,
) -> Vec<ServiceEntry> {
    let spec = &svc.spec;
    let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
    if kind == "ExternalName" {
        return Vec::new();
    }
    // 0.0.0.0 is no frontend (the API refuses it; this skips what was stored before or around it),
    // and one such entry would make the datapath refuse every Service's.
    let frontend_ip = |ip: &str| ip.parse::<Ipv4Addr>().ok().filter(|a| !a.is_unspecified());
    let cluster_ips: BTreeSet<Ipv4Addr> =
        spec.cluster_ip.iter().chain(spec.cluster_ips.iter()).filter_map(|ip| frontend_ip(ip)).collect();
    let external_ips: BTreeSet<Ipv4Addr> = spec.external_ips.iter().filter_map(|ip| frontend_ip(ip)).collect();
    let lb_ips: BTreeSet<Ipv4Addr> = if kind == "LoadBalancer" {
        svc.status.load_balancer.ingress.iter().filter_map(|i| frontend_ip(i.ip.as_deref()?)).collect()
    } else {
        BTreeSet::new()
    };
    let with_node_ports = kind == "NodePort" || kind == "LoadBalancer";
    let algorithm = match svc.metadata.annotations.get(LB_ALGORITHM_ANNOTATION).map(String::as_str) {
        Some("maglev") => LbAlgorithm::Maglev,
        Some("random") => LbAlgorithm::Random,
        _ => options.default_algorithm,
    };
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.pointer("/clientIP/timeoutSeconds"))
            .and_then(serde_json::Value::as_u64)
            .and_then(|t| u32::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
    });
    let etp_local = spec.external_traffic_policy.as_deref() == Some("Local");
    let itp_local = spec.internal_traffic_policy.as_deref() == Some("Local");

    let mut entries = Vec::new();
    for port in &spec.ports {
        let Some(protocol) = protocol_of(port) else { continue };
        let Ok(service_port) = u16::try_from(port.port) else { continue };
        if service_port == 0 {
            continue;
        }
        let backends = backends_for(options, port, slices);
        let entry = |kind: ServiceKind, address: Ipv4Addr, port: u16| ServiceEntry {
            frontend: Frontend { address, port, protocol },
            kind,
            backends: backends.clone(),
            affinity_timeout,
            algorithm,
            external_traffic_local: etp_local && kind != ServiceKind::ClusterIp,
            internal_traffic_local: itp_local && kind == ServiceKind::ClusterIp,
        };
        for ip in &cluster_ips {
            entries.push(entry(ServiceKind::ClusterIp, *ip, service_port));
        }
        let node_port = port.node_port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0);
        if let (true, Some(node_port)) = (with_node_ports, node_port) {
            for ip in node_ips.iter().chain([&Ipv4Addr::UNSPECIFIED]) {
                entries.push(entry(ServiceKind::NodePort, *ip, node_port));
            }
        }
        for ip in &lb_ips {
            entries.push(entry(ServiceKind::LoadBalancer, *ip, service_port));
        }
        for ip in &external_ips {
            entries.push(entry(ServiceKind::ExternalIp, *ip, service_port));
        }
    }
    entries
}

fn protocol_of(port: &ServicePort) -> Option<Protocol> {
    match port.protocol() {
        "TCP" => Some(Protocol::Tcp),
        "UDP" => Some(Protocol::Udp),
        _ => None,
    }
}

/// The backends serving `port`: every slice that maps the port's name (and protocol) to a
/// number contributes its endpoints with that number, which is how a named `targetPort` that
/// pods resolve differently ends up right.
fn backends_for(options: &BuildOptions, port: &ServicePort, slices: &[&EndpointSlice]) -> Vec<Backend> {
    let name = port.name.clone().unwrap_or_default();
    let mut found: BTreeMap<(Ipv4Addr, u16), Backend> = BTreeMap::new();
    for slice in slices {
        let target = slice.ports.iter().find(|p| {
            p.name.clone().unwrap_or_default() == name && p.protocol.as_deref().unwrap_or("TCP") == port.protocol()
        });
        let Some(target) = target.and_then(|p| p.port).and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0) else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let terminating = endpoint.conditions.terminating == Some(true);
            // Kubernetes: an unset `ready` means ready.
            let ready = endpoint.conditions.ready.unwrap_or(true) && !terminating;
            let state = match (ready, terminating) {
                (true, _) => BackendState::Active,
                (false, true) => BackendState::Terminating,
                (false, false) => continue,
            };
            if endpoint.node_name.as_ref().is_some_and(|n| options.unreachable_nodes.contains(n)) {
                continue;
            }
            let node_local = endpoint.node_name.as_deref() == Some(options.node_name.as_str());
            let addresses = endpoint.addresses.iter().filter_map(|a| a.parse::<Ipv4Addr>().ok());
            for address in addresses.filter(|a| !a.is_unspecified()) {
                let backend = Backend { address, port: target, state, node_local };
                found
                    .entry((address, target))
                    .and_modify(|b| {
                        if state == BackendState::Active {
                            b.state = BackendState::Active;
                        }
                    })
                    .or_insert(backend);
            }
        }
    }
    found.into_values().collect()
}

#[cfg(test)]
#[path = "services_tests.rs"]
mod tests;
