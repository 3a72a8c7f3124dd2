//! Turns the node list into kernel routes: asks the kernel how each node IP is reached, plans
//! with [`crate::direct_routes`], and applies the difference to the installed cilia routes.
//! Idempotent and safe to run at every start: nothing is torn down first, so pods keep their
//! connectivity while the agent restarts.
//!
//! The kernel is reached only through [`RouteOps`], [`VxlanOps`] and [`OverlayDatapath`]: the
//! agent wires in [`Netconf`] and [`PinnedOverlay`], the tests fakes of both
//! (`route_reconciler_tests.rs`).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use api::error::Chain;
use datapath::{OverlayDatapath, PinnedOverlay};
use ipnet::Ipv4Net;
use netconf::{MAIN_TABLE, Netconf, RouteOps, VxlanOps};

use crate::{
    config::RoutingMode,
    direct_routes::{self, Reachability},
    error::AgentError,
    node_view::NodeView,
    overlay::OverlayManager,
    routing_plan::{self, TUNNEL_OVERHEAD},
};

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub wanted: usize,
    pub installed: usize,
    pub removed: usize,
    /// Tunnel map entries written and deleted.
    pub tunnel_written: usize,
    pub tunnel_deleted: usize,
    /// Route operations the kernel refused; the caller retries soon.
    pub failed: usize,
}

pub struct RouteReconciler<K = Netconf, O = PinnedOverlay> {
    node: K,
    own: String,
    own_cidr: Ipv4Net,
    router_ip: Ipv4Addr,
    auto_direct_node_routes: bool,
    mode: RoutingMode,
    /// MTU of the routes through the overlay: the device MTU minus the VXLAN overhead.
    route_mtu: u32,
    overlay: OverlayManager<O>,
    /// The skip message last logged per node, so a skip is logged when it starts or changes,
    /// not on every pass.
    reported: BTreeMap<String, String>,
}

impl<K: RouteOps + VxlanOps, O: OverlayDatapath> RouteReconciler<K, O> {
    /// A reconciler in native mode; `overlay` is the overlay's BPF side, brought up only in the
    /// overlay modes ([`Self::with_mode`]).
    pub fn new(
        node: K,
        overlay: O,
        own: &str,
        own_cidr: Ipv4Net,
        router_ip: Ipv4Addr,
        auto_direct_node_routes: bool,
    ) -> Self {
        RouteReconciler {
            node,
            own: own.to_string(),
            own_cidr,
            router_ip,
            auto_direct_node_routes,
            mode: RoutingMode::Native,
            route_mtu: 1500 - TUNNEL_OVERHEAD,
            overlay: OverlayManager::new(overlay, netconf::VXLAN_PORT, 1500),
            reported: BTreeMap::new(),
        }
    }

    /// Selects the routing mode and the overlay's settings (device MTU, UDP port).
    pub fn with_mode(mut self, mode: RoutingMode, mtu: u32, tunnel_port: u16) -> Self {
        self.mode = mode;
        self.route_mtu = mtu.saturating_sub(TUNNEL_OVERHEAD);
        self.overlay = self.overlay.with_device(tunnel_port, mtu);
        self
    }

    /// One pass over `nodes` (the whole current list): direct routes, overlay routes and the
    /// overlay itself for the mode. Fails only if the routing table cannot be read or the
    /// overlay cannot be set up; single route operations that fail are counted and logged.
    ///
    /// Order keeps traffic flowing through a mode switch: entering an overlay mode, the overlay
    /// is complete before routes point at it; routes are replaced in place (`ip route replace`
    /// swaps a direct route for an overlay route to the same prefix and back) before stale ones
    /// are deleted; leaving, the overlay goes last.
    pub async fn reconcile(&mut self, nodes: &[NodeView]) -> Result<Outcome, AgentError> {
        let mut reach = BTreeMap::new();
        if self.mode != RoutingMode::Native || self.auto_direct_node_routes {
            let ips: BTreeSet<Ipv4Addr> = nodes
                .iter()
                .filter(|n| n.name != self.own && n.pod_cidr.is_some())
                .filter_map(|n| n.internal_ip)
                .collect();
            for ip in ips {
                reach.insert(ip, self.reachability(ip).await);
            }
        }
        let plan = routing_plan::plan(
            self.mode,
            self.auto_direct_node_routes,
            &self.own,
            self.own_cidr,
            self.router_ip,
            nodes,
            |ip| reach.get(&ip).cloned().unwrap_or_else(|| Reachability::Unreachable("not looked up".into())),
        );
        self.report_skips(&plan.skipped);

        let mut outcome = Outcome { wanted: plan.direct.len() + plan.tunnel.len(), ..Outcome::default() };
        if routing_plan::uses_overlay(self.mode) {
            let stats = self.overlay.ensure(&self.node, &plan.tunnel_entries).await?;
            outcome.tunnel_written = stats.written;
            outcome.tunnel_deleted = stats.deleted;
        }

        let table = self.node.routes(MAIN_TABLE).await?;
        let host_index = self.node.require_link("overlay routes", netconf::HOST_DEVICE).await?.index;
        let wanted_tunnel: Vec<_> =
            plan.tunnel.iter().map(|t| t.to_route(self.router_ip, host_index, self.route_mtu)).collect();
        let installed_tunnel: Vec<_> =
            table.iter().filter(|r| routing_plan::is_tunnel_route(r, self.router_ip, self.own_cidr)).cloned().collect();
        let (tunnel_install, tunnel_remove) = routing_plan::diff_tunnel(&wanted_tunnel, &installed_tunnel);
        for route in &tunnel_install {
            match self.node.replace_route(route).await {
                Ok(()) => {
                    outcome.installed += 1;
                    tracing::info!(
                        "installed overlay route {} via {} mtu {}",
                        route.destination,
                        self.router_ip,
                        self.route_mtu
                    );
                }
                Err(e) => {
                    outcome.failed += 1;
                    tracing::warn!(error = %Chain(&e), "installing overlay route {}", route.destination);
                }
            }
        }

        let installed: Vec<_> = table
            .into_iter()
            .filter(|r| direct_routes::is_direct_node_route(r, self.router_ip, self.own_cidr))
            .collect();
        let changes = direct_routes::diff(&plan.direct, &installed);
        for route in &changes.install {
            match self.node.replace_route(&route.to_route()).await {
                Ok(()) => {
                    outcome.installed += 1;
                    tracing::info!(
                        node = %route.node,
                        "installed direct route {} via {}",
                        route.destination,
                        route.gateway
                    );
                }
                Err(e) => {
                    outcome.failed += 1;
                    tracing::warn!(node = %route.node, error = %Chain(&e), "installing direct route {}", route.destination);
                }
            }
        }
        for route in &changes.remove {
            let via = route.gateway.map(|g| g.to_string()).unwrap_or_default();
            match self.node.delete_route(route).await {
                Ok(_) => {
                    outcome.removed += 1;
                    tracing::info!("removed stale direct route {} via {via}", route.destination);
                }
                Err(e) => {
                    outcome.failed += 1;
                    tracing::warn!(error = %Chain(&e), "removing stale direct route {} via {via}", route.destination);
                }
            }
        }
        for route in &tunnel_remove {
            // A route of the same prefix installed above replaced this one: nothing to delete.
            match self.node.delete_route(route).await {
                Ok(true) => {
                    outcome.removed += 1;
                    tracing::info!("removed stale overlay route {}", route.destination);
                }
                Ok(false) => {}
                Err(e) => {
                    outcome.failed += 1;
                    tracing::warn!(error = %Chain(&e), "removing stale overlay route {}", route.destination);
                }
            }
        }
        if !routing_plan::uses_overlay(self.mode) {
            self.overlay.remove(&self.node).await?;
        }
        Ok(outcome)
    }

    async fn reachability(&self, ip: Ipv4Addr) -> Reachability {
        match self.node.route_get(ip).await {
            Ok(lookup) if lookup.local => Reachability::Local,
            Ok(lookup) => match lookup.gateway {
                Some(gw) => Reachability::Gateway(gw),
                None => Reachability::Direct { oif: lookup.oif },
            },
            Err(e) => Reachability::Unreachable(Chain(&e).to_string()),
        }
    }

    fn report_skips(&mut self, skipped: &[direct_routes::Skipped]) {
        let mut now = BTreeMap::new();
        for skip in skipped {
            let message = skip.to_string();
            if self.reported.get(&skip.node) != Some(&message) {
                if skip.reason.is_problem() {
                    tracing::warn!("{message}");
                } else {
                    tracing::debug!("{message}");
                }
            }
            now.insert(skip.node.clone(), message);
        }
        self.reported = now;
    }
}

#[cfg(test)]
#[path = "route_reconciler_tests.rs"]
mod tests;
