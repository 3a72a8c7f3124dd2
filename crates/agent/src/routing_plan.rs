//! Which routes and tunnel map entries a node wants in each routing mode, decided without
//! touching the kernel.
//!
//! - **native**: `podCIDR via nodeIP` to directly reachable nodes (with auto direct node routes),
//!   nothing for the others ([`crate::direct_routes`]).
//! - **tunnel**: every other node's pod CIDR `via <router IP> dev cilium_host mtu 1450` (Cilium's
//!   `createNodeRouteSpec`), plus a tunnel map entry `podCIDR → nodeIP`: the BPF program on
//!   `cilium_host` encapsulates what the route sends there.
//! - **hybrid** (CFP #32810): per node pair, a direct route when the kernel reaches the peer
//!   without a gateway, the tunnel otherwise.
//!
//! In every overlay mode the node's own pod CIDR is a local tunnel entry carrying its pods'
//! identity (the VNI of their packets) and the router IP a local /32 with the host identity.

use std::net::Ipv4Addr;

use datapath::TunnelEntry;
use datapath::tunnel_abi::{IDENTITY_HOST, OVERLAY_POD_IDENTITY_BASE};
use ipnet::Ipv4Net;
use netconf::{CILIA_ROUTE_PROTOCOL, MAIN_TABLE, Route};

use crate::config::RoutingMode;
use crate::direct_routes::{self, DirectRoute, Reachability, SkipReason, Skipped};
use crate::node_view::NodeView;

/// VXLAN overhead: outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14 (Cilium's TunnelOverhead).
pub const TUNNEL_OVERHEAD: u32 = 50;

/// One route through the host device to a node's pod CIDR, for the overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelRoute {
    pub node: String,
    pub destination: Ipv4Net,
    pub endpoint: Ipv4Addr,
}

impl TunnelRoute {
    /// `destination via router dev host src router mtu mtu proto 193`.
    pub fn to_route(&self, router_ip: Ipv4Addr, host_index: u32, mtu: u32) -> Route {
        Route::via(self.destination, router_ip).oif(host_index).prefsrc(router_ip).mtu(mtu)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModePlan {
    pub direct: Vec<DirectRoute>,
    pub tunnel: Vec<TunnelRoute>,
    /// Empty in native mode: the overlay is torn down.
    pub tunnel_entries: Vec<TunnelEntry>,
    pub skipped: Vec<Skipped>,
}

/// The identity of a node's pods, carried as VNI: 256 plus the pod CIDR's subnet number within
/// its /16 (k8s-ctr's 172.20.0.0/24 → 256, k8s-w1's 172.20.1.0/24 → 257, k8s-w0's → 258).
pub fn pod_identity(cidr: Ipv4Net) -> u32 {
    let len = u32::from(cidr.prefix_len());
    if len <= 16 {
        return OVERLAY_POD_IDENTITY_BASE;
    }
    let low = u32::from(cidr.network()) & 0xffff;
    OVERLAY_POD_IDENTITY_BASE + (low >> (32 - len))
}

/// Whether the mode uses the overlay (the VXLAN device, the BPF programs, the tunnel map).
pub fn uses_overlay(mode: RoutingMode) -> bool {
    matches!(mode, RoutingMode::Tunnel | RoutingMode::Hybrid)
}

/// What node `own` wants in `mode`. `reach` is how the kernel reaches each node IP.
pub fn plan(
    mode: RoutingMode,
    auto_direct_node_routes: bool,
    own: &str,
    own_cidr: Ipv4Net,
    router_ip: Ipv4Addr,
    nodes: &[NodeView],
    reach: impl Fn(Ipv4Addr) -> Reachability,
) -> ModePlan {
    let mut out = ModePlan::default();
    match mode {
        RoutingMode::Native => {
            if auto_direct_node_routes {
                let p = direct_routes::plan(own, own_cidr, nodes, reach);
                out.direct = p.routes;
                out.skipped = p.skipped;
            }
            return out;
        }
        RoutingMode::Tunnel => {
            // Reachability does not matter for the overlay (the outer packet follows the node's
            // routes), only that the peer is not this node.
            let p = direct_routes::plan(own, own_cidr, nodes, |ip| match reach(ip) {
                Reachability::Local => Reachability::Local,
                _ => Reachability::Direct { oif: None },
            });
            out.tunnel = p.routes.iter().map(to_tunnel).collect();
            out.skipped = p.skipped;
        }
        RoutingMode::Hybrid => {
            let p = direct_routes::plan(own, own_cidr, nodes, reach);
            out.direct = p.routes;
            for skip in p.skipped {
                match (&skip.reason, skip.pod_cidr) {
                    (SkipReason::ViaGateway { ip, .. }, Some(cidr)) => {
                        out.tunnel.push(TunnelRoute { node: skip.node.clone(), destination: cidr, endpoint: *ip });
                    }
                    _ => out.skipped.push(skip),
                }
            }
        }
    }
    out.tunnel_entries.push(TunnelEntry::local(own_cidr, pod_identity(own_cidr)));
    out.tunnel_entries.push(TunnelEntry::local(Ipv4Net::new(router_ip, 32).expect("/32 is valid"), IDENTITY_HOST));
    for t in &out.tunnel {
        out.tunnel_entries.push(TunnelEntry::remote(t.destination, t.endpoint, pod_identity(t.destination)));
    }
    out
}

fn to_tunnel(r: &DirectRoute) -> TunnelRoute {
    TunnelRoute { node: r.node.clone(), destination: r.destination, endpoint: r.gateway }
}

/// Whether an installed route is an overlay route of this agent: cilia's protocol, main table,
/// via the router IP, to another node's prefix (the host device's route to the own pod CIDR has
/// the same gateway and is left alone).
pub fn is_tunnel_route(route: &Route, router_ip: Ipv4Addr, own_cidr: Ipv4Net) -> bool {
    route.protocol == CILIA_ROUTE_PROTOCOL
        && route.table == MAIN_TABLE
        && route.gateway == Some(router_ip)
        && route.destination != own_cidr
        && !own_cidr.contains(&route.destination)
}

/// Routes to (re)install (missing, or another device, source or MTU) and installed ones to
/// remove (destination no longer wanted through the overlay).
pub fn diff_tunnel(wanted: &[Route], installed: &[Route]) -> (Vec<Route>, Vec<Route>) {
    let install = wanted
        .iter()
        .filter(|w| {
            !installed.iter().any(|r| {
                r.destination == w.destination
                    && r.gateway == w.gateway
                    && r.oif == w.oif
                    && r.prefsrc == w.prefsrc
                    && r.mtu == w.mtu
            })
        })
        .cloned()
        .collect();
    let remove = installed.iter().filter(|r| !wanted.iter().any(|w| w.destination == r.destination)).cloned().collect();
    (install, remove)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidr: &str, ip: &str) -> NodeView {
        NodeView { name: name.into(), pod_cidr: Some(cidr.parse().unwrap()), internal_ip: Some(ip.parse().unwrap()) }
    }

    fn guide() -> Vec<NodeView> {
        vec![
            node("k8s-ctr", "172.20.0.0/24", "192.168.10.100"),
            node("k8s-w1", "172.20.1.0/24", "192.168.10.101"),
            node("k8s-w0", "172.20.2.0/24", "192.168.20.100"),
        ]
    }

    fn from_ctr(ip: Ipv4Addr) -> Reachability {
        match ip.octets() {
            [192, 168, 10, 100] => Reachability::Local,
            [192, 168, 10, _] => Reachability::Direct { oif: Some(3) },
            _ => Reachability::Gateway("192.168.10.200".parse().unwrap()),
        }
    }

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn router() -> Ipv4Addr {
        "172.20.0.1".parse().unwrap()
    }

    fn run(mode: RoutingMode, adr: bool) -> ModePlan {
        plan(mode, adr, "k8s-ctr", net("172.20.0.0/24"), router(), &guide(), from_ctr)
    }

    #[test]
    fn native_routes_directly_and_has_no_overlay() {
        let p = run(RoutingMode::Native, true);
        assert_eq!(p.direct.iter().map(|r| r.destination).collect::<Vec<_>>(), [net("172.20.1.0/24")]);
        assert!(p.tunnel.is_empty() && p.tunnel_entries.is_empty());
        assert!(run(RoutingMode::Native, false).direct.is_empty());
    }

    #[test]
    fn tunnel_sends_every_other_node_through_the_overlay() {
        let p = run(RoutingMode::Tunnel, false);
        assert!(p.direct.is_empty());
        let dests: Vec<_> = p.tunnel.iter().map(|t| (t.destination, t.endpoint.to_string())).collect();
        assert_eq!(
            dests,
            [
                (net("172.20.2.0/24"), "192.168.20.100".to_string()),
                (net("172.20.1.0/24"), "192.168.10.101".to_string())
            ]
        );
        let entries: Vec<String> = p.tunnel_entries.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            entries,
            [
                "172.20.0.0/24 identity=256 tunnelendpoint=0.0.0.0 flags=local",
                "172.20.0.1/32 identity=1 tunnelendpoint=0.0.0.0 flags=local",
                "172.20.2.0/24 identity=258 tunnelendpoint=192.168.20.100 flags=hastunnel",
                "172.20.1.0/24 identity=257 tunnelendpoint=192.168.10.101 flags=hastunnel",
            ]
        );
        let r = p.tunnel[0].to_route(router(), 7, 1450);
        assert!(is_tunnel_route(&r, router(), net("172.20.0.0/24")));
        assert_eq!(r.mtu, Some(1450));
    }

    #[test]
    fn hybrid_routes_the_segment_directly_and_tunnels_across_the_router() {
        let p = run(RoutingMode::Hybrid, false);
        assert_eq!(p.direct.iter().map(|r| r.node.as_str()).collect::<Vec<_>>(), ["k8s-w1"]);
        assert_eq!(p.tunnel.iter().map(|r| r.node.as_str()).collect::<Vec<_>>(), ["k8s-w0"]);
        assert!(p.skipped.is_empty());
        assert_eq!(p.tunnel_entries.len(), 3);
    }

    #[test]
    fn identities_follow_the_pod_cidr() {
        assert_eq!(pod_identity(net("172.20.0.0/24")), 256);
        assert_eq!(pod_identity(net("172.20.2.0/24")), 258);
        assert_eq!(pod_identity(net("10.0.0.0/8")), 256);
        assert!(pod_identity(net("10.0.255.255/32")) < 1 << 24);
    }

    #[test]
    fn own_routes_are_not_tunnel_routes_and_diff_converges() {
        let own = net("172.20.0.0/24");
        assert!(!is_tunnel_route(&Route::via(own, router()).oif(7), router(), own));
        assert!(!is_tunnel_route(&Route::via(net("172.20.1.0/24"), "192.168.10.101".parse().unwrap()), router(), own));
        let want = vec![Route::via(net("172.20.1.0/24"), router()).oif(7).prefsrc(router()).mtu(1450)];
        let stale = Route::via(net("172.20.5.0/24"), router()).oif(7).prefsrc(router()).mtu(1450);
        let no_mtu = Route::via(net("172.20.1.0/24"), router()).oif(7).prefsrc(router());
        let (install, remove) = diff_tunnel(&want, &[no_mtu, stale.clone()]);
        assert_eq!(install, want);
        assert_eq!(remove, [stale]);
        let (install, remove) = diff_tunnel(&want, &want);
        assert!(install.is_empty() && remove.is_empty());
    }
}
