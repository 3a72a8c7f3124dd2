//! The kernel operations the agent's reconcilers need, as two narrow traits: [`RouteOps`] for
//! the routing table and [`VxlanOps`] for the overlay's device. [`Netconf`] implements them over
//! rtnetlink; [`crate::FakeNetconf`] implements them in memory, so the reconcile logic is tested
//! without root. Only what a reconciler calls is here: everything else stays on [`Netconf`].

use std::net::Ipv4Addr;

use crate::error::Result;
use crate::handle::Netconf;
use crate::link::LinkInfo;
use crate::route::{Route, RouteLookup};

/// Reading and changing a namespace's IPv4 routes.
pub trait RouteOps: Send + Sync {
    /// IPv4 unicast routes of `table` (e.g. [`crate::MAIN_TABLE`]).
    fn routes(&self, table: u32) -> impl Future<Output = Result<Vec<Route>>> + Send;

    /// Adds or replaces the route to the same destination in the same table
    /// (`ip route replace`): idempotent.
    fn replace_route(&self, route: &Route) -> impl Future<Output = Result<()>> + Send;

    /// Deletes the route matching destination, table, protocol and, when set, gateway and
    /// device; `Ok(false)` if there was none.
    fn delete_route(&self, route: &Route) -> impl Future<Output = Result<bool>> + Send;

    /// The kernel's route lookup for `destination` (`ip route get`).
    fn route_get(&self, destination: Ipv4Addr) -> impl Future<Output = Result<RouteLookup>> + Send;

    /// The link called `name` (routes name their device by index); an error naming `op` if it
    /// is missing.
    fn require_link(&self, op: &'static str, name: &str) -> impl Future<Output = Result<LinkInfo>> + Send;
}

/// Creating and deleting the flow-based VXLAN device of the overlay.
pub trait VxlanOps: Send + Sync {
    /// Creates the VXLAN device `name` on UDP `port` with device MTU `mtu`, up; a device of that
    /// name that does not fit is replaced. Idempotent.
    fn ensure_vxlan_device(&self, name: &str, port: u16, mtu: u32) -> impl Future<Output = Result<LinkInfo>> + Send;

    /// Deletes the link called `name`; `Ok(false)` if it did not exist.
    fn delete_link(&self, name: &str) -> impl Future<Output = Result<bool>> + Send;
}

impl RouteOps for Netconf {
    async fn routes(&self, table: u32) -> Result<Vec<Route>> {
        Netconf::routes(self, table).await
    }

    async fn replace_route(&self, route: &Route) -> Result<()> {
        Netconf::replace_route(self, route).await
    }

    async fn delete_route(&self, route: &Route) -> Result<bool> {
        Netconf::delete_route(self, route).await
    }

    async fn route_get(&self, destination: Ipv4Addr) -> Result<RouteLookup> {
        Netconf::route_get(self, destination).await
    }

    async fn require_link(&self, op: &'static str, name: &str) -> Result<LinkInfo> {
        Netconf::require_link(self, op, name).await
    }
}

impl VxlanOps for Netconf {
    async fn ensure_vxlan_device(&self, name: &str, port: u16, mtu: u32) -> Result<LinkInfo> {
        Netconf::ensure_vxlan_device(self, name, port, mtu).await
    }

    async fn delete_link(&self, name: &str) -> Result<bool> {
        Netconf::delete_link(self, name).await
    }
}
