//! Turns the node list into kernel routes: asks the kernel how each node IP is reached, plans
//! with [`crate::direct_routes`], and applies the difference to the installed cilia routes.
//! Idempotent and safe to run at every start: nothing is torn down first, so pods keep their
//! connectivity while the agent restarts.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use ipnet::Ipv4Net;
use netconf::{MAIN_TABLE, Netconf};

use crate::{
    direct_routes::{self, Reachability},
    node_view::NodeView,
};

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub wanted: usize,
    pub installed: usize,
    pub removed: usize,
    /// Route operations the kernel refused; the caller retries soon.
    pub failed: usize,
}

pub struct RouteReconciler {
    node: Netconf,
    own: String,
    own_cidr: Ipv4Net,
    router_ip: Ipv4Addr,
    auto_direct_node_routes: bool,
    /// The skip message last logged per node, so a skip is logged when it starts or changes,
    /// not on every pass.
    reported: BTreeMap<String, String>,
}

impl RouteReconciler {
    pub fn new(
        node: Netconf,
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
            reported: BTreeMap::new(),
        }
    }

    /// One pass over `nodes` (the whole current list). Fails only if the routing table cannot be
    /// read; single route operations that fail are counted and logged.
    pub async fn reconcile(&mut self, nodes: &[NodeView]) -> netconf::Result<Outcome> {
        let plan = if self.auto_direct_node_routes {
            let mut reach = BTreeMap::new();
            let ips: BTreeSet<Ipv4Addr> = nodes
                .iter()
                .filter(|n| n.name != self.own && n.pod_cidr.is_some())
                .filter_map(|n| n.internal_ip)
                .collect();
            for ip in ips {
                reach.insert(ip, self.reachability(ip).await);
            }
            direct_routes::plan(&self.own, self.own_cidr, nodes, |ip| {
                reach.get(&ip).cloned().unwrap_or_else(|| Reachability::Unreachable("not looked up".into()))
            })
        } else {
            direct_routes::Plan::default()
        };
        self.report_skips(&plan.skipped);

        let installed: Vec<_> = self
            .node
            .routes(MAIN_TABLE)
            .await?
            .into_iter()
            .filter(|r| direct_routes::is_direct_node_route(r, self.router_ip, self.own_cidr))
            .collect();
        let changes = direct_routes::diff(&plan.routes, &installed);
        let mut outcome = Outcome { wanted: plan.routes.len(), ..Outcome::default() };
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
                    tracing::warn!(node = %route.node, error = %e, "installing direct route {}", route.destination);
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
                    tracing::warn!(error = %e, "removing stale direct route {} via {via}", route.destination);
                }
            }
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
            Err(e) => Reachability::Unreachable(e.to_string()),
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
