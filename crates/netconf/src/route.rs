//! IPv4 routes with MTU metrics, and the kernel's route lookup.

use std::net::Ipv4Addr;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteMetric, RouteProtocol, RouteScope as NlScope,
    RouteType,
};
use rtnetlink::RouteMessageBuilder;

use crate::error::Result;
use crate::handle::Netconf;

/// The main routing table (RT_TABLE_MAIN).
pub const MAIN_TABLE: u32 = 254;

/// Route protocol number that marks routes installed by cilia, so a reconciler can tell its own
/// routes from the administrator's (`ip route show proto 193`). Cilium uses its own number the
/// same way; 193 is outside iproute2's named range and rt_protos entries in common use.
pub const CILIA_ROUTE_PROTOCOL: u8 = 193;

/// Route scope, as `ip route` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouteScope {
    #[default]
    Universe,
    Link,
    Host,
}

impl RouteScope {
    fn to_nl(self) -> NlScope {
        match self {
            RouteScope::Universe => NlScope::Universe,
            RouteScope::Link => NlScope::Link,
            RouteScope::Host => NlScope::Host,
        }
    }
}

/// A unicast IPv4 route: `destination [via gateway] [dev oif] [src prefsrc] [mtu mtu]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub destination: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    /// Output interface index.
    pub oif: Option<u32>,
    pub prefsrc: Option<Ipv4Addr>,
    /// Path MTU metric (`mtu 1450`), the kernel's PMTU/MSS signal for the destination.
    pub mtu: Option<u32>,
    pub scope: RouteScope,
    pub protocol: u8,
    pub table: u32,
    /// Gateway accepted even if not on-link (`onlink`).
    pub onlink: bool,
}

impl Route {
    /// A route to `destination` with cilia's protocol in the main table; refine with the setters.
    pub fn new(destination: Ipv4Net) -> Self {
        Route {
            destination: destination.trunc(),
            gateway: None,
            oif: None,
            prefsrc: None,
            mtu: None,
            scope: RouteScope::Universe,
            protocol: CILIA_ROUTE_PROTOCOL,
            table: MAIN_TABLE,
            onlink: false,
        }
    }

    /// `destination via gateway` (native routing: a remote node's pod CIDR via its node IP).
    pub fn via(destination: Ipv4Net, gateway: Ipv4Addr) -> Self {
        Route::new(destination).gateway(gateway)
    }

    pub fn gateway(mut self, gateway: Ipv4Addr) -> Self {
        self.gateway = Some(gateway);
        self
    }

    pub fn oif(mut self, index: u32) -> Self {
        self.oif = Some(index);
        self
    }

    pub fn prefsrc(mut self, src: Ipv4Addr) -> Self {
        self.prefsrc = Some(src);
        self
    }

    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    pub fn scope(mut self, scope: RouteScope) -> Self {
        self.scope = scope;
        self
    }

    pub fn protocol(mut self, protocol: u8) -> Self {
        self.protocol = protocol;
        self
    }

    pub fn table(mut self, table: u32) -> Self {
        self.table = table;
        self
    }

    pub fn onlink(mut self) -> Self {
        self.onlink = true;
        self
    }

    fn to_message(&self) -> RouteMessage {
        let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(self.destination.addr(), self.destination.prefix_len())
            .protocol(RouteProtocol::from(self.protocol))
            .scope(self.scope.to_nl())
            .table_id(self.table);
        if let Some(gw) = self.gateway {
            b = b.gateway(gw);
        }
        if let Some(oif) = self.oif {
            b = b.output_interface(oif);
        }
        if let Some(src) = self.prefsrc {
            b = b.pref_source(src);
        }
        if self.onlink {
            b = b.onlink();
        }
        if let Some(mtu) = self.mtu {
            // rtnetlink has no MTU setter; RTA_METRICS carries it.
            b.get_mut().attributes.push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
        }
        b.build()
    }

    /// Parses a kernel route message; `None` for non-IPv4 or non-unicast routes.
    fn from_message(msg: &RouteMessage) -> Option<Self> {
        if msg.header.address_family != AddressFamily::Inet || msg.header.kind != RouteType::Unicast {
            return None;
        }
        let mut dst = Ipv4Addr::UNSPECIFIED;
        let mut table = u32::from(msg.header.table);
        let mut route = Route::new(Ipv4Net::default());
        for attr in &msg.attributes {
            match attr {
                RouteAttribute::Destination(RouteAddress::Inet(a)) => dst = *a,
                RouteAttribute::Gateway(RouteAddress::Inet(a)) => route.gateway = Some(*a),
                RouteAttribute::PrefSource(RouteAddress::Inet(a)) => route.prefsrc = Some(*a),
                RouteAttribute::Oif(i) => route.oif = Some(*i),
                RouteAttribute::Table(t) => table = *t,
                RouteAttribute::Metrics(metrics) => {
                    for m in metrics {
                        if let RouteMetric::Mtu(mtu) = m {
                            route.mtu = Some(*mtu);
                        }
                    }
                }
                _ => {}
            }
        }
        route.destination = Ipv4Net::new(dst, msg.header.destination_prefix_length).ok()?;
        route.table = table;
        route.protocol = msg.header.protocol.into();
        route.scope = match msg.header.scope {
            NlScope::Link => RouteScope::Link,
            NlScope::Host => RouteScope::Host,
            _ => RouteScope::Universe,
        };
        route.onlink = msg.header.flags.contains(RouteFlags::Onlink);
        Some(route)
    }
}

/// The kernel's answer to `ip route get <address>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLookup {
    pub destination: Ipv4Addr,
    /// The next hop, when the destination is not directly reachable.
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
    pub prefsrc: Option<Ipv4Addr>,
    /// The route is local (the address belongs to this namespace).
    pub local: bool,
}

impl RouteLookup {
    /// The destination is on a directly attached segment: no gateway in between. This is the
    /// test auto direct node routes need before `podCIDR via nodeIP` can be installed.
    pub fn is_direct(&self) -> bool {
        self.gateway.is_none() && !self.local
    }
}

impl Netconf {
    /// IPv4 unicast routes of `table` (e.g. [`MAIN_TABLE`]).
    pub async fn routes(&self, table: u32) -> Result<Vec<Route>> {
        let filter = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let msgs: Vec<RouteMessage> =
            self.handle.route().get(filter).execute().try_collect().await.map_err(self.nl_err("list routes", "*"))?;
        Ok(msgs.iter().filter_map(Route::from_message).filter(|r| r.table == table).collect())
    }

    /// Adds a route; fails with EEXIST (see [`crate::Error::is_exists`]) if one is there.
    pub async fn add_route(&self, route: &Route) -> Result<()> {
        self.handle
            .route()
            .add(route.to_message())
            .execute()
            .await
            .map_err(self.nl_err("add route", route.destination.to_string()))
    }

    /// Adds or replaces the route to the same destination (`ip route replace`): idempotent.
    pub async fn replace_route(&self, route: &Route) -> Result<()> {
        self.handle
            .route()
            .add(route.to_message())
            .replace()
            .execute()
            .await
            .map_err(self.nl_err("replace route", route.destination.to_string()))
    }

    /// Deletes the route; `Ok(false)` if there was none.
    pub async fn delete_route(&self, route: &Route) -> Result<bool> {
        let mut msg = route.to_message();
        // Matching on the metrics would make the kernel refuse a delete of a route whose MTU
        // changed meanwhile; destination, table, gateway and device identify it.
        msg.attributes.retain(|a| !matches!(a, RouteAttribute::Metrics(_)));
        // Scope NOWHERE matches any scope on delete (as `ip route del` does).
        msg.header.scope = NlScope::NoWhere;
        match self.handle.route().del(msg).execute().await {
            Ok(()) => Ok(true),
            Err(e) => {
                let err = (self.nl_err("delete route", route.destination.to_string()))(e);
                if err.is_not_found() { Ok(false) } else { Err(err) }
            }
        }
    }

    /// The kernel's route lookup for `destination` (`ip route get`).
    pub async fn route_get(&self, destination: Ipv4Addr) -> Result<RouteLookup> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(destination, 32).build();
        let mut answers = std::pin::pin!(self.handle.route().get(msg).execute());
        let answer = answers.try_next().await.map_err(self.nl_err("route get", destination.to_string()))?;
        let Some(answer) = answer else {
            return Err(self.invalid("route get", destination.to_string(), "kernel returned no route"));
        };
        let mut lookup = RouteLookup {
            destination,
            gateway: None,
            oif: None,
            prefsrc: None,
            local: answer.header.kind == RouteType::Local,
        };
        for attr in &answer.attributes {
            match attr {
                RouteAttribute::Gateway(RouteAddress::Inet(a)) => lookup.gateway = Some(*a),
                RouteAttribute::Oif(i) => lookup.oif = Some(*i),
                RouteAttribute::PrefSource(RouteAddress::Inet(a)) => lookup.prefsrc = Some(*a),
                _ => {}
            }
        }
        Ok(lookup)
    }
}
