//! An in-memory kernel for unit tests of the agent's reconcilers: implements [`RouteOps`] and
//! [`VxlanOps`] without root or netlink. Routes are replaced and deleted with the kernel's
//! matching rules, every change is recorded in order, and any operation can be made to fail.
//!
//! [`FakeNetconf`] is a handle: clones share one state, so a test hands one clone to the code
//! under test and inspects the state through another.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::error::{Error, Result};
use crate::link::LinkInfo;
use crate::ops::{RouteOps, VxlanOps};
use crate::route::{Route, RouteLookup};

/// The operations of [`RouteOps`] and [`VxlanOps`], to make one fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeOp {
    Routes,
    ReplaceRoute,
    DeleteRoute,
    RouteGet,
    RequireLink,
    EnsureVxlanDevice,
    DeleteLink,
}

impl FakeOp {
    fn name(self) -> &'static str {
        match self {
            FakeOp::Routes => "list routes",
            FakeOp::ReplaceRoute => "replace route",
            FakeOp::DeleteRoute => "delete route",
            FakeOp::RouteGet => "route get",
            FakeOp::RequireLink => "get link",
            FakeOp::EnsureVxlanDevice => "ensure vxlan device",
            FakeOp::DeleteLink => "delete link",
        }
    }
}

/// A change asked of the fake kernel, whether or not it changed anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeCall {
    ReplaceRoute(Route),
    DeleteRoute(Route),
    EnsureVxlanDevice { name: String, port: u16, mtu: u32 },
    DeleteLink(String),
}

/// One planned failure: the next call of `op` (on `target` only, when set) fails.
#[derive(Debug, Clone)]
struct Failure {
    op: FakeOp,
    target: Option<String>,
}

/// What the fake kernel holds. Tests read it and may change it directly (a route another
/// program added, a device deleted behind the agent's back).
#[derive(Debug)]
pub struct FakeNetconfState {
    /// The routes of every table, in the order they were added.
    pub routes: Vec<Route>,
    /// Links by name.
    pub links: BTreeMap<String, LinkInfo>,
    /// UDP port of each VXLAN device, by name.
    pub vxlan_ports: BTreeMap<String, u16>,
    /// `ip route get` answers by destination; a destination not listed has no route.
    pub lookups: BTreeMap<Ipv4Addr, RouteLookup>,
    /// Every change asked for, in order (reads are not recorded).
    pub calls: Vec<FakeCall>,
    /// Every `ip route get` asked for, in order.
    pub route_gets: Vec<Ipv4Addr>,
    failures: Vec<Failure>,
    next_index: u32,
}

impl Default for FakeNetconfState {
    fn default() -> Self {
        FakeNetconfState {
            routes: Vec::new(),
            links: BTreeMap::new(),
            vxlan_ports: BTreeMap::new(),
            lookups: BTreeMap::new(),
            calls: Vec::new(),
            route_gets: Vec::new(),
            failures: Vec::new(),
            // 1 is the loopback device in every namespace.
            next_index: 2,
        }
    }
}

impl FakeNetconfState {
    /// The routes of `table`, in the order they were added.
    pub fn routes_in(&self, table: u32) -> Vec<Route> {
        self.routes.iter().filter(|r| r.table == table).cloned().collect()
    }

    /// Takes the planned failure for this call, if any, as the error to return.
    fn failure(&mut self, op: FakeOp, target: &str) -> Result<()> {
        let hit = self.failures.iter().position(|f| f.op == op && f.target.as_deref().is_none_or(|t| t == target));
        match hit {
            Some(i) => {
                self.failures.remove(i);
                Err(Error::Invalid {
                    netns: "fake".into(),
                    device: target.into(),
                    op: op.name(),
                    reason: "refused by the fake kernel".into(),
                })
            }
            None => Ok(()),
        }
    }

    fn new_link(&mut self, name: &str, mtu: Option<u32>) -> LinkInfo {
        let link = LinkInfo { index: self.next_index, name: name.into(), mac: None, mtu, up: true, alias: None };
        self.next_index += 1;
        self.links.insert(name.into(), link.clone());
        link
    }

    /// Deletes a link and, as the kernel does, every route through it.
    fn remove_link(&mut self, name: &str) -> bool {
        let Some(link) = self.links.remove(name) else {
            return false;
        };
        self.vxlan_ports.remove(name);
        self.routes.retain(|r| r.oif != Some(link.index));
        true
    }
}

/// Whether a delete request matches an installed route, by the kernel's rules
/// (`fib_table_delete`): destination and table always; protocol, preferred source, gateway and
/// device when the request sets them; scope and metrics never.
fn delete_matches(request: &Route, installed: &Route) -> bool {
    request.destination == installed.destination
        && request.table == installed.table
        && (request.protocol == 0 || request.protocol == installed.protocol)
        && (request.prefsrc.is_none() || request.prefsrc == installed.prefsrc)
        && (request.gateway.is_none() || request.gateway == installed.gateway)
        && (request.oif.is_none() || request.oif == installed.oif)
}

/// A cloneable handle on one in-memory kernel.
#[derive(Debug, Clone, Default)]
pub struct FakeNetconf {
    state: Arc<Mutex<FakeNetconfState>>,
}

impl FakeNetconf {
    pub fn new() -> Self {
        Self::default()
    }

    /// The kernel's state, to inspect or change.
    pub fn state(&self) -> MutexGuard<'_, FakeNetconfState> {
        // A test that panicked while holding the lock must not hide its own failure behind
        // poison errors in the next assertion.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a link (not a VXLAN device) and returns it with its new index.
    pub fn add_link(&self, name: &str) -> LinkInfo {
        self.state().new_link(name, None)
    }

    /// Deletes a link behind the reconciler's back, with the routes through it.
    pub fn remove_link(&self, name: &str) -> bool {
        self.state().remove_link(name)
    }

    /// Adds a route directly, as another program would (no call is recorded).
    pub fn add_route(&self, route: Route) {
        self.state().routes.push(route);
    }

    /// `ip route get ip` answers: on a directly attached segment out of `oif`.
    pub fn reach_directly(&self, ip: Ipv4Addr, oif: u32) {
        self.set_lookup(RouteLookup { destination: ip, gateway: None, oif: Some(oif), prefsrc: None, local: false });
    }

    /// `ip route get ip` answers: through the router `gateway` out of `oif`.
    pub fn reach_via(&self, ip: Ipv4Addr, gateway: Ipv4Addr, oif: u32) {
        self.set_lookup(RouteLookup {
            destination: ip,
            gateway: Some(gateway),
            oif: Some(oif),
            prefsrc: None,
            local: false,
        });
    }

    /// `ip route get ip` answers: an address of this namespace.
    pub fn reach_locally(&self, ip: Ipv4Addr) {
        self.set_lookup(RouteLookup { destination: ip, gateway: None, oif: Some(1), prefsrc: None, local: true });
    }

    fn set_lookup(&self, lookup: RouteLookup) {
        self.state().lookups.insert(lookup.destination, lookup);
    }

    /// The next call of `op` fails, whatever it is about.
    pub fn fail_next(&self, op: FakeOp) {
        self.state().failures.push(Failure { op, target: None });
    }

    /// The next call of `op` about `target` (a route's destination such as `172.20.1.0/24`, an
    /// address asked about, a device name) fails.
    pub fn fail_next_on(&self, op: FakeOp, target: &str) {
        self.state().failures.push(Failure { op, target: Some(target.into()) });
    }

    /// The changes asked for so far, in order.
    pub fn calls(&self) -> Vec<FakeCall> {
        self.state().calls.clone()
    }
}

impl RouteOps for FakeNetconf {
    async fn routes(&self, table: u32) -> Result<Vec<Route>> {
        let mut state = self.state();
        state.failure(FakeOp::Routes, "*")?;
        Ok(state.routes_in(table))
    }

    async fn replace_route(&self, route: &Route) -> Result<()> {
        let mut state = self.state();
        state.calls.push(FakeCall::ReplaceRoute(route.clone()));
        state.failure(FakeOp::ReplaceRoute, &route.destination.to_string())?;
        let same_key = |r: &Route| r.destination == route.destination && r.table == route.table;
        match state.routes.iter_mut().find(|r| same_key(r)) {
            Some(installed) => *installed = route.clone(),
            None => state.routes.push(route.clone()),
        }
        Ok(())
    }

    async fn delete_route(&self, route: &Route) -> Result<bool> {
        let mut state = self.state();
        state.calls.push(FakeCall::DeleteRoute(route.clone()));
        state.failure(FakeOp::DeleteRoute, &route.destination.to_string())?;
        match state.routes.iter().position(|r| delete_matches(route, r)) {
            Some(i) => {
                state.routes.remove(i);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn route_get(&self, destination: Ipv4Addr) -> Result<RouteLookup> {
        let mut state = self.state();
        state.route_gets.push(destination);
        state.failure(FakeOp::RouteGet, &destination.to_string())?;
        state.lookups.get(&destination).cloned().ok_or_else(|| Error::Invalid {
            netns: "fake".into(),
            device: destination.to_string(),
            op: "route get",
            reason: "Network is unreachable".into(),
        })
    }

    async fn require_link(&self, op: &'static str, name: &str) -> Result<LinkInfo> {
        let mut state = self.state();
        state.failure(FakeOp::RequireLink, name)?;
        state.links.get(name).cloned().ok_or_else(|| Error::NoSuchDevice {
            netns: "fake".into(),
            device: name.into(),
            op,
        })
    }
}

impl VxlanOps for FakeNetconf {
    async fn ensure_vxlan_device(&self, name: &str, port: u16, mtu: u32) -> Result<LinkInfo> {
        let mut state = self.state();
        state.calls.push(FakeCall::EnsureVxlanDevice { name: name.into(), port, mtu });
        state.failure(FakeOp::EnsureVxlanDevice, name)?;
        // As the real one: a device of another kind or port is replaced, an MTU set in place.
        if state.links.contains_key(name) && state.vxlan_ports.get(name) != Some(&port) {
            state.remove_link(name);
        }
        let link = match state.links.get_mut(name) {
            Some(link) => {
                link.mtu = Some(mtu);
                link.clone()
            }
            None => state.new_link(name, Some(mtu)),
        };
        state.vxlan_ports.insert(name.into(), port);
        Ok(link)
    }

    async fn delete_link(&self, name: &str) -> Result<bool> {
        let mut state = self.state();
        state.calls.push(FakeCall::DeleteLink(name.into()));
        state.failure(FakeOp::DeleteLink, name)?;
        Ok(state.remove_link(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::MAIN_TABLE;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn route(dst: &str, gw: &str) -> Route {
        Route::via(dst.parse().unwrap(), ip(gw))
    }

    /// Runs a future of the fake to completion: nothing in it ever waits.
    fn now<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn replace_keys_on_destination_and_table() {
        let k = FakeNetconf::new();
        now(k.replace_route(&route("172.20.1.0/24", "192.168.10.101"))).unwrap();
        now(k.replace_route(&route("172.20.1.0/24", "192.168.10.99"))).unwrap();
        now(k.replace_route(&route("172.20.1.0/24", "192.168.10.98").table(100))).unwrap();
        let main = k.state().routes_in(MAIN_TABLE);
        assert_eq!(main, [route("172.20.1.0/24", "192.168.10.99")]);
        assert_eq!(k.state().routes.len(), 2);
        assert_eq!(k.calls().len(), 3);
    }

    #[test]
    fn delete_matches_like_the_kernel() {
        let k = FakeNetconf::new();
        k.add_route(route("172.20.1.0/24", "172.20.0.1").oif(5).mtu(1450));
        // Another gateway: not this route.
        assert!(!now(k.delete_route(&route("172.20.1.0/24", "192.168.10.101"))).unwrap());
        // Another protocol: not this route either.
        assert!(!now(k.delete_route(&route("172.20.1.0/24", "172.20.0.1").protocol(4))).unwrap());
        // The MTU is not compared.
        assert!(now(k.delete_route(&route("172.20.1.0/24", "172.20.0.1").oif(5))).unwrap());
        assert!(k.state().routes.is_empty());
    }

    #[test]
    fn planned_failures_hit_once_and_only_their_target() {
        let k = FakeNetconf::new();
        k.fail_next_on(FakeOp::ReplaceRoute, "172.20.2.0/24");
        now(k.replace_route(&route("172.20.1.0/24", "192.168.10.101"))).unwrap();
        let err = now(k.replace_route(&route("172.20.2.0/24", "192.168.10.102"))).unwrap_err();
        assert!(err.to_string().contains("replace route 172.20.2.0/24"), "{err}");
        now(k.replace_route(&route("172.20.2.0/24", "192.168.10.102"))).unwrap();
        assert_eq!(k.state().routes.len(), 2);
        k.fail_next(FakeOp::Routes);
        assert!(now(k.routes(MAIN_TABLE)).is_err());
        assert_eq!(now(k.routes(MAIN_TABLE)).unwrap().len(), 2);
    }

    #[test]
    fn lookups_answer_what_the_test_set() {
        let k = FakeNetconf::new();
        k.reach_directly(ip("192.168.10.101"), 3);
        k.reach_via(ip("192.168.20.100"), ip("192.168.10.200"), 3);
        k.reach_locally(ip("192.168.10.100"));
        assert!(now(k.route_get(ip("192.168.10.101"))).unwrap().is_direct());
        assert_eq!(now(k.route_get(ip("192.168.20.100"))).unwrap().gateway, Some(ip("192.168.10.200")));
        assert!(now(k.route_get(ip("192.168.10.100"))).unwrap().local);
        assert!(now(k.route_get(ip("10.9.9.9"))).is_err());
        assert_eq!(k.state().route_gets.len(), 4);
    }

    #[test]
    fn vxlan_device_is_reused_or_replaced_and_takes_its_routes_along() {
        let k = FakeNetconf::new();
        let first = now(k.ensure_vxlan_device("cilium_vxlan", 8472, 1500)).unwrap();
        let again = now(k.ensure_vxlan_device("cilium_vxlan", 8472, 9000)).unwrap();
        assert_eq!(again.index, first.index);
        assert_eq!(again.mtu, Some(9000));
        k.add_route(route("172.20.9.0/24", "192.168.10.9").oif(first.index));
        let moved = now(k.ensure_vxlan_device("cilium_vxlan", 4789, 1500)).unwrap();
        assert_ne!(moved.index, first.index, "another port needs a new device");
        assert!(k.state().routes.is_empty(), "the old device's routes went with it");
        assert!(now(k.delete_link("cilium_vxlan")).unwrap());
        assert!(!now(k.delete_link("cilium_vxlan")).unwrap());
        assert!(now(k.require_link("test", "cilium_vxlan")).is_err());
    }
}
