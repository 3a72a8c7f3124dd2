//! Auto direct node routes, decided without touching the kernel: which `podCIDR via nodeIP` routes
//! this node wants, which nodes are skipped and why, and what to change in the installed routes.
//!
//! As in Cilium (`createDirectRouteSpec`), a route to another node's pod CIDR is installed only
//! when that node is directly reachable: the kernel's route to its IP has no gateway. A node on
//! another subnet is skipped (Cilium's `direct-routing-skip-unreachable`): its pods are then
//! reached, or not, through whatever the node's own routing table says, which is exactly the
//! guide's "Native Routing 모드의 한계".

use std::{collections::BTreeMap, fmt, net::Ipv4Addr};

use ipnet::Ipv4Net;
use netconf::{CILIA_ROUTE_PROTOCOL, MAIN_TABLE, Route};

use crate::node_view::NodeView;

/// How the kernel reaches a node IP (`ip route get`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reachability {
    /// On a directly attached segment, out of interface `oif`.
    Direct { oif: Option<u32> },
    /// Through a router.
    Gateway(Ipv4Addr),
    /// The address is this node's own.
    Local,
    /// No route at all, or the lookup failed.
    Unreachable(String),
}

/// One wanted route: `destination via gateway dev oif proto cilia`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectRoute {
    pub node: String,
    pub destination: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub oif: Option<u32>,
}

impl DirectRoute {
    pub fn to_route(&self) -> Route {
        let route = Route::via(self.destination, self.gateway);
        match self.oif {
            Some(oif) => route.oif(oif),
            None => route,
        }
    }
}

/// Why a node gets no direct route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    NoPodCidr,
    NoInternalIp,
    ViaGateway {
        ip: Ipv4Addr,
        gateway: Ipv4Addr,
    },
    Local {
        ip: Ipv4Addr,
    },
    Unreachable {
        ip: Ipv4Addr,
        error: String,
    },
    /// Another node (listed first by name) announces the same or an overlapping CIDR.
    CidrConflict {
        other_node: String,
        other_cidr: Ipv4Net,
    },
    /// The CIDR overlaps this node's own pod CIDR.
    OverlapsOwn {
        own: Ipv4Net,
    },
}

impl SkipReason {
    /// Whether the reason is worth a warning: a transient state (no CIDR yet) is not.
    pub fn is_problem(&self) -> bool {
        !matches!(self, SkipReason::NoPodCidr | SkipReason::NoInternalIp)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub node: String,
    pub pod_cidr: Option<Ipv4Net>,
    pub reason: SkipReason,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pod_cidr {
            Some(cidr) => write!(f, "skipping direct route to {} ({cidr}): ", self.node)?,
            None => write!(f, "skipping direct route to {}: ", self.node)?,
        }
        match &self.reason {
            SkipReason::NoPodCidr => write!(f, "it has no pod CIDR yet"),
            SkipReason::NoInternalIp => write!(f, "it has no InternalIP address"),
            SkipReason::ViaGateway { ip, gateway } => write!(f, "{ip} is reached via gateway {gateway}"),
            SkipReason::Local { ip } => write!(f, "{ip} is an address of this node"),
            SkipReason::Unreachable { ip, error } => write!(f, "no route to {ip} ({error})"),
            SkipReason::CidrConflict { other_node, other_cidr } => {
                write!(f, "it overlaps {other_cidr} of node {other_node}")
            }
            SkipReason::OverlapsOwn { own } => write!(f, "it overlaps this node's pod CIDR {own}"),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub routes: Vec<DirectRoute>,
    pub skipped: Vec<Skipped>,
}

/// The routes node `own` (pod CIDR `own_cidr`) wants to the other nodes, given how the kernel
/// reaches each node IP. Nodes are taken in name order, so of two nodes announcing overlapping
/// CIDRs the same one wins on every node.
pub fn plan(own: &str, own_cidr: Ipv4Net, nodes: &[NodeView], reach: impl Fn(Ipv4Addr) -> Reachability) -> Plan {
    let mut sorted: Vec<&NodeView> = nodes.iter().filter(|n| n.name != own).collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut plan = Plan::default();
    let mut taken: Vec<(Ipv4Net, &str)> = Vec::new();
    for node in sorted {
        let skip = |reason| Skipped { node: node.name.clone(), pod_cidr: node.pod_cidr, reason };
        let Some(cidr) = node.pod_cidr else {
            plan.skipped.push(skip(SkipReason::NoPodCidr));
            continue;
        };
        if overlaps(&cidr, &own_cidr) {
            plan.skipped.push(skip(SkipReason::OverlapsOwn { own: own_cidr }));
            continue;
        }
        if let Some((other_cidr, other_node)) = taken.iter().find(|(c, _)| overlaps(c, &cidr)) {
            plan.skipped
                .push(skip(SkipReason::CidrConflict { other_node: other_node.to_string(), other_cidr: *other_cidr }));
            continue;
        }
        taken.push((cidr, &node.name));
        let Some(ip) = node.internal_ip else {
            plan.skipped.push(skip(SkipReason::NoInternalIp));
            continue;
        };
        match reach(ip) {
            Reachability::Direct { oif } => {
                plan.routes.push(DirectRoute { node: node.name.clone(), destination: cidr, gateway: ip, oif });
            }
            Reachability::Gateway(gateway) => plan.skipped.push(skip(SkipReason::ViaGateway { ip, gateway })),
            Reachability::Local => plan.skipped.push(skip(SkipReason::Local { ip })),
            Reachability::Unreachable(error) => plan.skipped.push(skip(SkipReason::Unreachable { ip, error })),
        }
    }
    plan
}

/// Whether an installed route is a direct node route of this agent: tagged with cilia's protocol,
/// in the main table, via a gateway other than the router IP. The host device's routes (via the
/// router IP) and pods' /32 routes (no gateway) carry the same tag and are left alone, as is any
/// route to the node's own pod CIDR.
pub fn is_direct_node_route(route: &Route, router_ip: Ipv4Addr, own_cidr: Ipv4Net) -> bool {
    route.protocol == CILIA_ROUTE_PROTOCOL
        && route.table == MAIN_TABLE
        && route.gateway.is_some_and(|gw| gw != router_ip)
        && route.destination != own_cidr
}

/// What to do to get from the installed direct node routes to the wanted ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Added or replaced (`ip route replace`): missing, or different gateway or device.
    pub install: Vec<DirectRoute>,
    /// Deleted: to a destination no longer wanted (node deleted, its CIDR changed, or no longer
    /// directly reachable).
    pub remove: Vec<Route>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.install.is_empty() && self.remove.is_empty()
    }
}

/// `installed` holds the routes for which [`is_direct_node_route`] is true.
pub fn diff(wanted: &[DirectRoute], installed: &[Route]) -> Changes {
    let mut by_destination: BTreeMap<Ipv4Net, Vec<&Route>> = BTreeMap::new();
    for r in installed {
        by_destination.entry(r.destination).or_default().push(r);
    }
    let install = wanted
        .iter()
        .filter(|w| {
            let present = by_destination.get(&w.destination).is_some_and(|routes| {
                routes.iter().any(|r| r.gateway == Some(w.gateway) && (w.oif.is_none() || r.oif == w.oif))
            });
            !present
        })
        .cloned()
        .collect();
    let remove = installed.iter().filter(|r| !wanted.iter().any(|w| w.destination == r.destination)).cloned().collect();
    Changes { install, remove }
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidr: Option<&str>, ip: Option<&str>) -> NodeView {
        NodeView {
            name: name.into(),
            pod_cidr: cidr.map(|c| c.parse().unwrap()),
            internal_ip: ip.map(|i| i.parse().unwrap()),
        }
    }

    fn guide_nodes() -> Vec<NodeView> {
        vec![
            node("k8s-ctr", Some("172.20.0.0/24"), Some("192.168.10.100")),
            node("k8s-w1", Some("172.20.1.0/24"), Some("192.168.10.101")),
            node("k8s-w0", Some("172.20.2.0/24"), Some("192.168.20.100")),
        ]
    }

    /// k8s-ctr's view of the guide's lab: eth1 (ifindex 3) holds 192.168.10.0/24, everything
    /// else goes via the router 192.168.10.200.
    fn from_ctr(ip: Ipv4Addr) -> Reachability {
        let ip = ip.octets();
        match ip {
            [192, 168, 10, 100] => Reachability::Local,
            [192, 168, 10, _] => Reachability::Direct { oif: Some(3) },
            _ => Reachability::Gateway(Ipv4Addr::new(192, 168, 10, 200)),
        }
    }

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn the_guides_k8s_ctr_routes_to_k8s_w1_only() {
        let plan = plan("k8s-ctr", net("172.20.0.0/24"), &guide_nodes(), from_ctr);
        assert_eq!(
            plan.routes,
            [DirectRoute {
                node: "k8s-w1".into(),
                destination: net("172.20.1.0/24"),
                gateway: "192.168.10.101".parse().unwrap(),
                oif: Some(3)
            }]
        );
        assert_eq!(plan.skipped.len(), 1);
        assert_eq!(
            plan.skipped[0].to_string(),
            "skipping direct route to k8s-w0 (172.20.2.0/24): 192.168.20.100 is reached via gateway 192.168.10.200"
        );
        assert!(plan.skipped[0].reason.is_problem());
    }

    #[test]
    fn nodes_without_cidr_or_address_are_skipped_quietly() {
        let nodes = vec![node("a", None, Some("192.168.10.1")), node("b", Some("172.20.5.0/24"), None)];
        let plan = plan("me", net("172.20.0.0/24"), &nodes, from_ctr);
        assert!(plan.routes.is_empty());
        let reasons: Vec<_> = plan.skipped.iter().map(|s| s.reason.clone()).collect();
        assert_eq!(reasons, [SkipReason::NoPodCidr, SkipReason::NoInternalIp]);
        assert!(plan.skipped.iter().all(|s| !s.reason.is_problem()));
        assert_eq!(plan.skipped[0].to_string(), "skipping direct route to a: it has no pod CIDR yet");
    }

    #[test]
    fn conflicting_cidrs_go_to_the_first_node_by_name() {
        let nodes = vec![
            node("z", Some("172.20.1.0/24"), Some("192.168.10.9")),
            node("a", Some("172.20.1.0/24"), Some("192.168.10.8")),
            node("own-twin", Some("172.20.0.0/23"), Some("192.168.10.7")),
        ];
        let plan = plan("me", net("172.20.0.0/24"), &nodes, from_ctr);
        assert_eq!(plan.routes.iter().map(|r| r.node.as_str()).collect::<Vec<_>>(), ["a"]);
        assert_eq!(
            plan.skipped.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            [
                "skipping direct route to own-twin (172.20.0.0/23): it overlaps this node's pod CIDR 172.20.0.0/24",
                "skipping direct route to z (172.20.1.0/24): it overlaps 172.20.1.0/24 of node a",
            ]
        );
    }

    #[test]
    fn unreachable_and_local_nodes_are_skipped() {
        let nodes = vec![
            node("dup", Some("172.20.7.0/24"), Some("192.168.10.100")),
            node("far", Some("172.20.8.0/24"), Some("10.9.9.9")),
        ];
        let plan = plan("k8s-ctr", net("172.20.0.0/24"), &nodes, |ip| match ip.octets()[0] {
            10 => Reachability::Unreachable("Network is unreachable".into()),
            _ => from_ctr(ip),
        });
        assert!(plan.routes.is_empty());
        assert_eq!(
            plan.skipped.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            [
                "skipping direct route to dup (172.20.7.0/24): 192.168.10.100 is an address of this node",
                "skipping direct route to far (172.20.8.0/24): no route to 10.9.9.9 (Network is unreachable)",
            ]
        );
    }

    fn installed(dst: &str, gw: &str, oif: u32) -> Route {
        Route::via(net(dst), gw.parse().unwrap()).oif(oif)
    }

    #[test]
    fn only_direct_node_routes_are_managed() {
        let router: Ipv4Addr = "172.20.0.1".parse().unwrap();
        let own = net("172.20.0.0/24");
        assert!(is_direct_node_route(&installed("172.20.1.0/24", "192.168.10.101", 3), router, own));
        // The host device's route to the local pod CIDR, a pod's /32, and routes of others.
        assert!(!is_direct_node_route(&Route::via(own, router).oif(5), router, own));
        assert!(!is_direct_node_route(&Route::new(net("172.20.0.7/32")).oif(9), router, own));
        assert!(!is_direct_node_route(&installed("172.20.0.0/16", "192.168.10.200", 3).protocol(4), router, own));
        assert!(!is_direct_node_route(&installed("172.20.1.0/24", "192.168.10.101", 3).table(100), router, own));
    }

    #[test]
    fn diff_installs_what_is_missing_and_removes_what_is_stale() {
        let want = |dst: &str, gw: &str| DirectRoute {
            node: "n".into(),
            destination: net(dst),
            gateway: gw.parse().unwrap(),
            oif: Some(3),
        };
        let wanted = vec![want("172.20.1.0/24", "192.168.10.101"), want("172.20.3.0/24", "192.168.10.103")];
        let have = vec![
            installed("172.20.1.0/24", "192.168.10.101", 3), // as wanted
            installed("172.20.3.0/24", "192.168.10.99", 3),  // the node's address changed
            installed("172.20.4.0/24", "192.168.10.104", 3), // the node is gone
        ];
        let changes = diff(&wanted, &have);
        assert_eq!(changes.install, [want("172.20.3.0/24", "192.168.10.103")]);
        assert_eq!(changes.remove, [installed("172.20.4.0/24", "192.168.10.104", 3)]);
        // Applying the changes converges: nothing left to do.
        let after =
            vec![installed("172.20.1.0/24", "192.168.10.101", 3), installed("172.20.3.0/24", "192.168.10.103", 3)];
        assert!(diff(&wanted, &after).is_empty());
        // Nothing wanted: everything of ours goes.
        assert_eq!(diff(&[], &after).remove.len(), 2);
    }
}
