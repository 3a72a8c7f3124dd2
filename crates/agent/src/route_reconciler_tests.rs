//! The route reconciler against an in-memory kernel ([`FakeNetconf`]) and overlay
//! ([`FakeOverlay`]): the guide's k8s-ctr, whose eth1 holds 192.168.10.0/24 (k8s-w1 and k8s-w2 on
//! it) and which reaches k8s-w0 on 192.168.20.0/24 through the router 192.168.10.200.

use std::net::Ipv4Addr;

use datapath::{FakeOverlay, FakeOverlayCall, FakeOverlayOp, TunnelEntry};
use ipnet::Ipv4Net;
use netconf::{FakeCall, FakeNetconf, FakeOp, HOST_DEVICE, MAIN_TABLE, Route, VXLAN_DEVICE};

use super::*;

const OWN: &str = "k8s-ctr";
const ROUTER: Ipv4Addr = Ipv4Addr::new(172, 20, 0, 1);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 200);

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn own_cidr() -> Ipv4Net {
    net("172.20.0.0/24")
}

fn node(name: &str, cidr: &str, address: &str) -> NodeView {
    NodeView { name: name.into(), pod_cidr: Some(net(cidr)), internal_ip: Some(ip(address)) }
}

fn nodes() -> Vec<NodeView> {
    vec![
        node("k8s-ctr", "172.20.0.0/24", "192.168.10.100"),
        node("k8s-w1", "172.20.1.0/24", "192.168.10.101"),
        node("k8s-w2", "172.20.3.0/24", "192.168.10.102"),
        node("k8s-w0", "172.20.2.0/24", "192.168.20.100"),
    ]
}

fn without(name: &str) -> Vec<NodeView> {
    nodes().into_iter().filter(|n| n.name != name).collect()
}

/// The node's kernel and overlay, shared by every reconciler a test builds (as by an agent
/// restarted in another mode).
struct Node {
    kernel: FakeNetconf,
    overlay: FakeOverlay,
    eth1: u32,
    host: u32,
}

impl Node {
    fn new() -> Self {
        let kernel = FakeNetconf::new();
        let eth1 = kernel.add_link("eth1").index;
        let host = kernel.add_link(HOST_DEVICE).index;
        kernel.reach_locally(ip("192.168.10.100"));
        kernel.reach_directly(ip("192.168.10.101"), eth1);
        kernel.reach_directly(ip("192.168.10.102"), eth1);
        kernel.reach_via(ip("192.168.20.100"), GATEWAY, eth1);
        Node { kernel, overlay: FakeOverlay::new(), eth1, host }
    }

    fn reconciler(
        &self,
        mode: RoutingMode,
        auto_direct_node_routes: bool,
    ) -> RouteReconciler<FakeNetconf, FakeOverlay> {
        RouteReconciler::new(
            self.kernel.clone(),
            self.overlay.clone(),
            OWN,
            own_cidr(),
            ROUTER,
            auto_direct_node_routes,
        )
        .with_mode(mode, 1500, 8472)
    }

    /// `dst via gw dev eth1 proto cilia`.
    fn direct(&self, dst: &str, gw: &str) -> Route {
        Route::via(net(dst), ip(gw)).oif(self.eth1)
    }

    /// `dst via <router> dev cilium_host src <router> mtu 1450 proto cilia`.
    fn tunnel(&self, dst: &str) -> Route {
        Route::via(net(dst), ROUTER).oif(self.host).prefsrc(ROUTER).mtu(1450)
    }

    fn main_routes(&self) -> Vec<Route> {
        self.kernel.state().routes_in(MAIN_TABLE)
    }

    /// The route changes asked of the kernel from call `from` on.
    fn route_changes_since(&self, from: usize) -> Vec<FakeCall> {
        self.kernel.calls()[from..]
            .iter()
            .filter(|c| matches!(c, FakeCall::ReplaceRoute(_) | FakeCall::DeleteRoute(_)))
            .cloned()
            .collect()
    }
}

fn sorted(mut routes: Vec<Route>) -> Vec<Route> {
    routes.sort_by_key(|r| (r.destination, r.table));
    routes
}

// Native routing.

#[tokio::test]
async fn native_mode_routes_directly_reachable_nodes_only() {
    let n = Node::new();
    let outcome = n.reconciler(RoutingMode::Native, true).reconcile(&nodes()).await.unwrap();
    assert_eq!(outcome, Outcome { wanted: 2, installed: 2, ..Outcome::default() });
    assert_eq!(
        n.main_routes(),
        [n.direct("172.20.1.0/24", "192.168.10.101"), n.direct("172.20.3.0/24", "192.168.10.102")]
    );
    // No overlay in native mode.
    assert!(!n.kernel.state().links.contains_key(VXLAN_DEVICE));
    assert!(!n.kernel.calls().iter().any(|c| matches!(c, FakeCall::EnsureVxlanDevice { .. })));
    assert!(n.overlay.state().tunnel.is_empty() && n.overlay.state().attached.is_none());
}

#[tokio::test]
async fn a_second_pass_changes_nothing() {
    let n = Node::new();
    let mut r = n.reconciler(RoutingMode::Native, true);
    r.reconcile(&nodes()).await.unwrap();
    let after_first = n.kernel.calls().len();
    let outcome = r.reconcile(&nodes()).await.unwrap();
    assert_eq!(outcome, Outcome { wanted: 2, ..Outcome::default() });
    assert_eq!(n.route_changes_since(after_first), []);
}

#[tokio::test]
async fn stale_routes_go_and_routes_of_others_stay() {
    let n = Node::new();
    let stale = n.direct("172.20.9.0/24", "192.168.10.109");
    let others = [
        // The administrator's (proto static) and another table's.
        n.direct("172.20.8.0/24", "192.168.10.108").protocol(4),
        n.direct("172.20.7.0/24", "192.168.10.107").table(100),
        // The host device's route to the own pod CIDR and a pod's /32, both cilia's.
        Route::via(own_cidr(), ROUTER).oif(n.host),
        Route::new(net("172.20.0.7/32")).oif(9),
        Route::via(net("0.0.0.0/0"), GATEWAY).oif(n.eth1).protocol(3),
    ];
    n.kernel.add_route(stale.clone());
    for r in &others {
        n.kernel.add_route(r.clone());
    }
    let outcome = n.reconciler(RoutingMode::Native, true).reconcile(&nodes()).await.unwrap();
    assert_eq!(outcome, Outcome { wanted: 2, installed: 2, removed: 1, ..Outcome::default() });
    let routes = n.kernel.state().routes.clone();
    assert!(!routes.contains(&stale), "{routes:?}");
    for r in &others {
        assert!(routes.contains(r), "{r:?} was touched: {routes:?}");
    }
    assert_eq!(n.route_changes_since(0).len(), 3, "two installs and one delete");
}

#[tokio::test]
async fn a_changed_node_address_replaces_the_route_in_place() {
    let n = Node::new();
    n.kernel.add_route(n.direct("172.20.1.0/24", "192.168.10.99"));
    let outcome = n.reconciler(RoutingMode::Native, true).reconcile(&nodes()).await.unwrap();
    assert_eq!(outcome.removed, 0);
    let to_w1: Vec<_> = n.main_routes().into_iter().filter(|r| r.destination == net("172.20.1.0/24")).collect();
    assert_eq!(to_w1, [n.direct("172.20.1.0/24", "192.168.10.101")]);
    assert!(n.kernel.calls().contains(&FakeCall::ReplaceRoute(n.direct("172.20.1.0/24", "192.168.10.101"))));
    assert!(!n.kernel.calls().iter().any(|c| matches!(c, FakeCall::DeleteRoute(_))), "replaced, not deleted first");
}

#[tokio::test]
async fn a_node_leaving_takes_its_route_along() {
    let n = Node::new();
    let mut r = n.reconciler(RoutingMode::Native, true);
    r.reconcile(&nodes()).await.unwrap();
    let outcome = r.reconcile(&without("k8s-w2")).await.unwrap();
    assert_eq!(outcome, Outcome { wanted: 1, removed: 1, ..Outcome::default() });
    assert_eq!(n.main_routes(), [n.direct("172.20.1.0/24", "192.168.10.101")]);
}

#[tokio::test]
async fn without_auto_direct_node_routes_nothing_is_looked_up_and_direct_routes_go() {
    let n = Node::new();
    n.kernel.add_route(n.direct("172.20.1.0/24", "192.168.10.101"));
    let outcome = n.reconciler(RoutingMode::Native, false).reconcile(&nodes()).await.unwrap();
    assert_eq!(outcome, Outcome { removed: 1, ..Outcome::default() });
    assert!(n.kernel.state().route_gets.is_empty());
    assert_eq!(n.main_routes(), []);
}

#[tokio::test]
async fn a_node_the_kernel_cannot_reach_gets_no_route_and_fails_nothing() {
    let n = Node::new();
    let mut list = nodes();
    list.push(node("k8s-far", "172.20.8.0/24", "10.9.9.9"));
    let outcome = n.reconciler(RoutingMode::Native, true).reconcile(&list).await.unwrap();
    assert_eq!(outcome, Outcome { wanted: 2, installed: 2, ..Outcome::default() });
    assert!(n.kernel.state().route_gets.contains(&ip("10.9.9.9")));
    assert!(!n.main_routes().iter().any(|r| r.destination == net("172.20.8.0/24")));
}

// Errors of the kernel: counted or reported, nothing lost, done on the next pass.

#[tokio::test]
async fn a_refused_route_is_counted_and_installed_on_the_next_pass() {
    let n = Node::new();
    let mut r = n.reconciler(RoutingMode::Native, true);
    n.kernel.fail_next_on(FakeOp::ReplaceRoute, "172.20.1.0/24");
    let outcome = r.reconcile(&nodes()).await.unwrap();
    assert_eq!(outcome, Outcome { wanted: 2, installed: 1, failed: 1, ..Outcome::default() });
    assert_eq!(n.main_routes(), [n.direct("172.20.3.0/24", "192.168.10.102")], "the other route still went in");
    let outcome = r.reconcile(&nodes()).await.unwrap();
    assert_eq!(outcome, Outcome { wanted: 2, installed: 1, ..Outcome::default() });
    assert_eq!(sorted(n.main_routes()).len(), 2);
}

#[tokio::test]
async fn a_refused_delete_is_counted_and_done_on_the_next_pass() {
    let n = Node::new();
    let stale = n.direct("172.20.9.0/24", "192.168.10.109");
    n.kernel.add_route(stale.clone());
    let mut r = n.reconciler(RoutingMode::Native, true);
    n.kernel.fail_next_on(FakeOp::DeleteRoute, "172.20.9.0/24");
    let outcome = r.reconcile(&nodes()).await.unwrap();
    assert_eq!((outcome.removed, outcome.failed), (0, 1));
    assert!(n.main_routes().contains(&stale));
    let outcome = r.reconcile(&nodes()).await.unwrap();
    assert_eq!((outcome.removed, outcome.failed), (1, 0));
    assert!(!n.main_routes().contains(&stale));
}

#[tokio::test]
async fn an_unreadable_routing_table_fails_the_pass_before_any_change() {
    let n = Node::new();
    let mut r = n.reconciler(RoutingMode::Native, true);
    n.kernel.fail_next(FakeOp::Routes);
    let err = r.reconcile(&nodes()).await.unwrap_err();
    let printed = api::error::Chain(&err).to_string();
    assert!(printed.contains("list routes"), "{printed}");
    assert_eq!(n.route_changes_since(0), []);
    let outcome = r.reconcile(&nodes()).await.unwrap();
    assert_eq!(outcome.installed, 2);
}

#[tokio::test]
async fn a_missing_host_device_fails_the_pass_before_any_change() {
    let n = Node::new();
    n.kernel.remove_link(HOST_DEVICE);
    let err = n.reconciler(RoutingMode::Tunnel, false).reconcile(&nodes()).await.unwrap_err();
    let printed = api::error::Chain(&err).to_string();
    assert!(printed.contains(HOST_DEVICE), "{printed}");
    assert_eq!(n.route_changes_since(0), []);
}

// Tunnel mode.

#[tokio::test]
async fn tunnel_mode_brings_the_overlay_up_before_routing_through_it() {
    let n = Node::new();
    let outcome = n.reconciler(RoutingMode::Tunnel, false).reconcile(&nodes()).await.unwrap();
    assert_eq!(outcome, Outcome { wanted: 3, installed: 3, tunnel_written: 5, ..Outcome::default() });
    assert_eq!(
        sorted(n.main_routes()),
        [n.tunnel("172.20.1.0/24"), n.tunnel("172.20.2.0/24"), n.tunnel("172.20.3.0/24")]
    );
    let calls = n.kernel.calls();
    assert_eq!(calls[0], FakeCall::EnsureVxlanDevice { name: VXLAN_DEVICE.into(), port: 8472, mtu: 1500 });
    let vxlan = n.kernel.state().links[VXLAN_DEVICE].index;
    let overlay = n.overlay.state();
    assert_eq!(
        overlay.tunnel,
        [
            TunnelEntry::local(net("172.20.0.0/24"), 256),
            TunnelEntry::local(net("172.20.0.1/32"), datapath::tunnel_abi::IDENTITY_HOST),
            TunnelEntry::remote(net("172.20.1.0/24"), ip("192.168.10.101"), 257),
            TunnelEntry::remote(net("172.20.2.0/24"), ip("192.168.20.100"), 258),
            TunnelEntry::remote(net("172.20.3.0/24"), ip("192.168.10.102"), 259),
        ]
    );
    assert_eq!(overlay.attached.as_ref().map(|a| a.tunnel_ifindex), Some(vxlan));
}

#[tokio::test]
async fn a_second_tunnel_pass_writes_and_attaches_nothing() {
    let n = Node::new();
    let mut r = n.reconciler(RoutingMode::Tunnel, false);
    r.reconcile(&nodes()).await.unwrap();
    let after_first = n.kernel.calls().len();
    let outcome = r.reconcile(&nodes()).await.unwrap();
    assert_eq!(outcome, Outcome { wanted: 3, ..Outcome::default() });
    assert_eq!(n.route_changes_since(after_first), []);
    let attaches = n.overlay.state().calls.iter().filter(|c| matches!(c, FakeOverlayCall::Attach(_))).count();
    assert_eq!(attaches, 1);
}

#[tokio::test]
async fn overlay_routes_carry_the_device_mtu_minus_the_vxlan_overhead() {
    let n = Node::new();
    let mut r = RouteReconciler::new(n.kernel.clone(), n.overlay.clone(), OWN, own_cidr(), ROUTER, false).with_mode(
        RoutingMode::Tunnel,
        9000,
        4789,
    );
    r.reconcile(&nodes()).await.unwrap();
    assert!(n.main_routes().iter().all(|r| r.mtu == Some(8950)), "{:?}", n.main_routes());
    assert_eq!(n.kernel.calls()[0], FakeCall::EnsureVxlanDevice { name: VXLAN_DEVICE.into(), port: 4789, mtu: 9000 });
}

#[tokio::test]
async fn a_node_leaving_takes_its_overlay_route_and_tunnel_entry_along() {
    let n = Node::new();
    let mut r = n.reconciler(RoutingMode::Tunnel, false);
    r.reconcile(&nodes()).await.unwrap();
    let outcome = r.reconcile(&without("k8s-w0")).await.unwrap();
    assert_eq!(outcome, Outcome { wanted: 2, removed: 1, tunnel_deleted: 1, ..Outcome::default() });
    assert!(!n.main_routes().iter().any(|r| r.destination == net("172.20.2.0/24")));
    assert!(!n.overlay.state().tunnel.iter().any(|e| e.prefix == net("172.20.2.0/24")));
}

#[tokio::test]
async fn an_overlay_that_cannot_be_built_leaves_the_routes_alone() {
    let n = Node::new();
    n.reconciler(RoutingMode::Native, true).reconcile(&nodes()).await.unwrap();
    let direct = n.main_routes();
    let before = n.kernel.calls().len();
    let mut r = n.reconciler(RoutingMode::Tunnel, false);
    n.overlay.fail_next(FakeOverlayOp::SyncTunnel, "map full");
    assert!(r.reconcile(&nodes()).await.is_err());
    assert_eq!(n.main_routes(), direct, "no route may point at an incomplete overlay");
    assert_eq!(n.route_changes_since(before), []);
    r.reconcile(&nodes()).await.unwrap();
    assert_eq!(sorted(n.main_routes()).len(), 3);
    assert!(n.main_routes().iter().all(|r| r.gateway == Some(ROUTER)));
}

// Hybrid mode and mode switches.

#[tokio::test]
async fn hybrid_routes_the_segment_directly_and_tunnels_across_the_router() {
    let n = Node::new();
    let mut list = nodes();
    list.push(node("k8s-far", "172.20.8.0/24", "10.9.9.9"));
    let outcome = n.reconciler(RoutingMode::Hybrid, false).reconcile(&list).await.unwrap();
    assert_eq!(outcome, Outcome { wanted: 3, installed: 3, tunnel_written: 3, ..Outcome::default() });
    assert_eq!(
        sorted(n.main_routes()),
        [
            n.direct("172.20.1.0/24", "192.168.10.101"),
            n.tunnel("172.20.2.0/24"),
            n.direct("172.20.3.0/24", "192.168.10.102"),
        ]
    );
    let remote: Vec<_> = n.overlay.state().tunnel.iter().filter(|e| !e.local).map(|e| e.prefix).collect();
    assert_eq!(remote, [net("172.20.2.0/24")], "an unreachable node is neither routed nor tunnelled");
}

#[tokio::test]
async fn hybrid_moves_a_node_to_the_tunnel_when_it_moves_behind_a_router() {
    let n = Node::new();
    let mut r = n.reconciler(RoutingMode::Hybrid, false);
    r.reconcile(&nodes()).await.unwrap();
    n.kernel.reach_via(ip("192.168.10.101"), GATEWAY, n.eth1);
    r.reconcile(&nodes()).await.unwrap();
    let to_w1: Vec<_> = n.main_routes().into_iter().filter(|r| r.destination == net("172.20.1.0/24")).collect();
    assert_eq!(to_w1, [n.tunnel("172.20.1.0/24")], "the overlay route replaced the direct one and stayed");
    assert!(n.overlay.state().tunnel.contains(&TunnelEntry::remote(net("172.20.1.0/24"), ip("192.168.10.101"), 257)));
}

#[tokio::test]
async fn entering_tunnel_mode_swaps_direct_routes_for_overlay_routes() {
    let n = Node::new();
    n.reconciler(RoutingMode::Native, true).reconcile(&nodes()).await.unwrap();
    let before = n.kernel.calls().len();
    n.reconciler(RoutingMode::Tunnel, false).reconcile(&nodes()).await.unwrap();
    assert_eq!(
        sorted(n.main_routes()),
        [n.tunnel("172.20.1.0/24"), n.tunnel("172.20.2.0/24"), n.tunnel("172.20.3.0/24")]
    );
    // The overlay is complete before the first route points at it.
    let calls = &n.kernel.calls()[before..];
    let device = calls.iter().position(|c| matches!(c, FakeCall::EnsureVxlanDevice { .. })).unwrap();
    let first_route = calls.iter().position(|c| matches!(c, FakeCall::ReplaceRoute(_))).unwrap();
    assert!(device < first_route, "{calls:?}");
    assert!(n.overlay.state().attached.is_some());
}

#[tokio::test]
async fn leaving_tunnel_mode_swaps_routes_first_and_removes_the_overlay_last() {
    let n = Node::new();
    n.reconciler(RoutingMode::Tunnel, false).reconcile(&nodes()).await.unwrap();
    let before = n.kernel.calls().len();
    let outcome = n.reconciler(RoutingMode::Native, true).reconcile(&nodes()).await.unwrap();
    assert_eq!(outcome, Outcome { wanted: 2, installed: 2, removed: 1, ..Outcome::default() });
    assert_eq!(
        n.main_routes(),
        [n.direct("172.20.1.0/24", "192.168.10.101"), n.direct("172.20.3.0/24", "192.168.10.102")]
    );
    let calls = &n.kernel.calls()[before..];
    assert_eq!(calls.last(), Some(&FakeCall::DeleteLink(VXLAN_DEVICE.into())), "{calls:?}");
    assert!(calls.contains(&FakeCall::DeleteRoute(n.tunnel("172.20.2.0/24"))));
    assert!(!n.kernel.state().links.contains_key(VXLAN_DEVICE));
    let overlay = n.overlay.state();
    assert!(overlay.tunnel.is_empty() && overlay.attached.is_none());
    assert_eq!(overlay.calls.last(), Some(&FakeOverlayCall::Remove));
}
