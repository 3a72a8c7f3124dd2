//! The lab of the guide as data: which namespaces exist, which veth pairs and bridges connect them,
//! which addresses, routes and sysctls each one has. Nothing here touches the kernel; the network
//! module turns a [`Topology`] into namespaces and links.
//!
//! ```text
//!                  uplink (swallows everything: no forwarding, blackhole default)
//!     eth0 10.0.2.15 |   each host's eth0 has its own veth into uplink, like one Vagrant NAT per VM
//!   ┌────────────────┴───────────────────────┐
//!   │ router  loop1 10.10.1.200  loop2 10.10.2.200
//!   │ eth1 192.168.10.200        eth2 192.168.20.200
//!   └──────┬───────────────────────────┬─────┘
//!     fabric/seg10 (bridge)       fabric/seg20 (bridge)
//!      ├ k8s-ctr eth1 .10.100       └ k8s-w0 eth1 192.168.20.100
//!      └ k8s-w1  eth1 .10.101
//! ```
//!
//! Nodes route 192.168.0.0/16 and 172.20.0.0/16 via their router address, so native routing to
//! k8s-w0's pods reaches the router, which has no 172.20 route and sends it out of eth0 into the
//! uplink, where it dies: the guide's tcpdump, reproduced.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::cidr::ipv4_net;
use crate::name::LabName;

pub const ROUTER: &str = "router";
pub const K8S_CTR: &str = "k8s-ctr";
pub const K8S_W1: &str = "k8s-w1";
pub const K8S_W0: &str = "k8s-w0";
/// Stands in for the NAT network of Vagrant: the default route's next hop, where packets die.
pub const UPLINK: &str = "uplink";
/// Holds the two L2 segments (bridges), so that no bridge lives in the root namespace.
pub const FABRIC: &str = "fabric";

/// The address every host has on eth0, as Vagrant's NAT gives every VM 10.0.2.15.
const MGMT_ADDR: Ipv4Net = ipv4_net(10, 0, 2, 15, 24);
/// The uplink's side of every eth0. A /32, so the uplink has no route back to anyone: whatever
/// reaches it (even a ping to this address) cannot be answered and dies there.
const MGMT_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// The ranges nodes send to their router, as the guide's Vagrant lab configures them.
const NODE_ROUTED: [Ipv4Net; 2] = [ipv4_net(192, 168, 0, 0, 16), ipv4_net(172, 20, 0, 0, 16)];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostRole {
    /// A Kubernetes node of the guide: runs an agent (and, on k8s-ctr, etcd and the operator).
    Node,
    /// Routes between the two segments; its default route points into the uplink.
    Router,
    /// Infrastructure: the swallowing uplink.
    Uplink,
    /// Infrastructure: the bridges of the L2 segments.
    Fabric,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// The name users type: `router`, `k8s-ctr`, ...
    pub name: String,
    /// The network namespace: `<lab>-<name>`.
    pub namespace: String,
    pub role: HostRole,
    pub routes: Vec<Route>,
    pub sysctls: Vec<Sysctl>,
}

/// A sysctl under `/proc/sys`, written with slashes (`net/ipv4/ip_forward`) because that is the
/// file the value goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sysctl {
    pub key: &'static str,
    pub value: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `dst` (None = default) via `gateway` out of `dev`.
    Via { dst: Option<Ipv4Net>, gateway: Ipv4Addr, dev: String },
    /// `blackhole dst`: packets to `dst` are dropped silently.
    Blackhole { dst: Option<Ipv4Net> },
}

impl Route {
    /// The destination as `ip route` prints it.
    pub fn dst_string(&self) -> String {
        let dst = match self {
            Route::Via { dst, .. } | Route::Blackhole { dst } => dst,
        };
        dst.map_or_else(|| "default".to_string(), |d| d.to_string())
    }

    pub fn dev(&self) -> Option<&str> {
        match self {
            Route::Via { dev, .. } => Some(dev),
            Route::Blackhole { .. } => None,
        }
    }
}

/// One end of a veth pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VethEnd {
    pub host: String,
    pub ifname: String,
    /// Fixed MACs keep neighbour tables and captures the same across rebuilds.
    pub mac: [u8; 6],
    pub addresses: Vec<Ipv4Net>,
    /// The bridge this end is a port of.
    pub master: Option<String>,
}

impl VethEnd {
    pub fn mac_string(&self) -> String {
        let m = self.mac;
        format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

/// A veth pair. The lab has no other kind of cable: this kernel has no dummy devices, so even the
/// router's loop1 and loop2 are veths (their peers sit, unused, in the uplink).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Veth {
    pub a: VethEnd,
    pub b: VethEnd,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bridge {
    pub host: String,
    pub name: String,
}

/// What the CLI registers as a Node object after `up`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub internal_ip: Ipv4Addr,
    pub namespace: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    lab: LabName,
    hosts: Vec<Host>,
    bridges: Vec<Bridge>,
    veths: Vec<Veth>,
}

/// A node of the guide: name, eth1 address, segment bridge, router address on that segment.
struct NodeDef {
    name: &'static str,
    addr: Ipv4Net,
    segment: &'static str,
    router: Ipv4Addr,
}

const NODES: [NodeDef; 3] = [
    NodeDef {
        name: K8S_CTR,
        addr: ipv4_net(192, 168, 10, 100, 24),
        segment: "seg10",
        router: Ipv4Addr::new(192, 168, 10, 200),
    },
    NodeDef {
        name: K8S_W1,
        addr: ipv4_net(192, 168, 10, 101, 24),
        segment: "seg10",
        router: Ipv4Addr::new(192, 168, 10, 200),
    },
    NodeDef {
        name: K8S_W0,
        addr: ipv4_net(192, 168, 20, 100, 24),
        segment: "seg20",
        router: Ipv4Addr::new(192, 168, 20, 200),
    },
];

/// Every namespace: no reverse-path filtering (the router forwards between segments and the lab's
/// datapath will send replies on other interfaces than requests came in), and no IPv6: the guide
/// is IPv4 only, and neighbour discovery chatter would pollute captures and counters.
const COMMON_SYSCTLS: [Sysctl; 4] = [
    Sysctl { key: "net/ipv4/conf/all/rp_filter", value: "0" },
    Sysctl { key: "net/ipv4/conf/default/rp_filter", value: "0" },
    Sysctl { key: "net/ipv6/conf/all/disable_ipv6", value: "1" },
    Sysctl { key: "net/ipv6/conf/default/disable_ipv6", value: "1" },
];

/// Router and nodes forward. Every one of them has 10.0.2.15 on eth0, so they answer ARP only for
/// addresses of the asking interface (arp_ignore=1) and pick a source from the outgoing interface
/// (arp_announce=2); otherwise eth1 would claim 10.0.2.15 on the segment.
const FORWARDING_SYSCTLS: [Sysctl; 3] = [
    Sysctl { key: "net/ipv4/ip_forward", value: "1" },
    Sysctl { key: "net/ipv4/conf/all/arp_ignore", value: "1" },
    Sysctl { key: "net/ipv4/conf/all/arp_announce", value: "2" },
];

/// The uplink must not forward: that is what makes it swallow packets.
const NO_FORWARDING: Sysctl = Sysctl { key: "net/ipv4/ip_forward", value: "0" };

impl Topology {
    /// The guide's lab: router, k8s-ctr, k8s-w1, k8s-w0, plus the uplink and fabric namespaces.
    pub fn guide(lab: &LabName) -> Self {
        let mut t = Topology { lab: lab.clone(), hosts: Vec::new(), bridges: Vec::new(), veths: Vec::new() };
        let host = |name: &str, role: HostRole, routes: Vec<Route>| {
            let mut sysctls = COMMON_SYSCTLS.to_vec();
            match role {
                HostRole::Node | HostRole::Router => sysctls.extend(FORWARDING_SYSCTLS),
                HostRole::Uplink | HostRole::Fabric => sysctls.push(NO_FORWARDING),
            }
            Host { name: name.to_string(), namespace: lab.namespace(name), role, routes, sysctls }
        };
        let default_via_uplink = Route::Via { dst: None, gateway: MGMT_GATEWAY, dev: "eth0".into() };

        t.hosts.push(host(ROUTER, HostRole::Router, vec![default_via_uplink.clone()]));
        for node in &NODES {
            let mut routes = vec![default_via_uplink.clone()];
            routes.extend(NODE_ROUTED.iter().map(|dst| Route::Via {
                dst: Some(*dst),
                gateway: node.router,
                dev: "eth1".into(),
            }));
            t.hosts.push(host(node.name, HostRole::Node, routes));
        }
        t.hosts.push(host(UPLINK, HostRole::Uplink, vec![Route::Blackhole { dst: None }]));
        t.hosts.push(host(FABRIC, HostRole::Fabric, Vec::new()));

        for segment in ["seg10", "seg20"] {
            t.bridges.push(Bridge { host: FABRIC.into(), name: segment.into() });
        }

        // MACs: 02:c1:1a:<host>:<interface>:<side>, locally administered and stable.
        let mac = |host: u8, iface: u8, side: u8| [0x02, 0xc1, 0x1a, host, iface, side];
        let end = |host: &str, ifname: &str, mac, addresses: Vec<Ipv4Net>, master: Option<&str>| VethEnd {
            host: host.into(),
            ifname: ifname.into(),
            mac,
            addresses,
            master: master.map(Into::into),
        };
        let uplink_end = |host: &str, ifname: &str, mac| {
            end(UPLINK, &format!("{host}-{ifname}"), mac, vec![Ipv4Net::from(MGMT_GATEWAY)], None)
        };

        // router: eth0 to the uplink, eth1/eth2 on the segments, loop1/loop2 as stand-in dummies.
        t.veths.push(Veth {
            a: end(ROUTER, "eth0", mac(1, 0, 0), vec![MGMT_ADDR], None),
            b: uplink_end(ROUTER, "eth0", mac(1, 0, 1)),
        });
        for (i, (ifname, addr, segment)) in
            [("eth1", ipv4_net(192, 168, 10, 200, 24), "seg10"), ("eth2", ipv4_net(192, 168, 20, 200, 24), "seg20")]
                .into_iter()
                .enumerate()
        {
            let i = i as u8 + 1;
            t.veths.push(Veth {
                a: end(ROUTER, ifname, mac(1, i, 0), vec![addr], None),
                b: end(FABRIC, &format!("{ROUTER}-{ifname}"), mac(1, i, 1), Vec::new(), Some(segment)),
            });
        }
        for (i, (ifname, addr)) in
            [("loop1", ipv4_net(10, 10, 1, 200, 24)), ("loop2", ipv4_net(10, 10, 2, 200, 24))].into_iter().enumerate()
        {
            let i = i as u8 + 3;
            t.veths.push(Veth {
                a: end(ROUTER, ifname, mac(1, i, 0), vec![addr], None),
                b: end(UPLINK, &format!("{ROUTER}-{ifname}"), mac(1, i, 1), Vec::new(), None),
            });
        }

        for (n, node) in NODES.iter().enumerate() {
            let h = n as u8 + 2;
            t.veths.push(Veth {
                a: end(node.name, "eth0", mac(h, 0, 0), vec![MGMT_ADDR], None),
                b: uplink_end(node.name, "eth0", mac(h, 0, 1)),
            });
            t.veths.push(Veth {
                a: end(node.name, "eth1", mac(h, 1, 0), vec![node.addr], None),
                b: end(FABRIC, &format!("{}-eth1", node.name), mac(h, 1, 1), Vec::new(), Some(node.segment)),
            });
        }
        t
    }

    pub fn lab(&self) -> &LabName {
        &self.lab
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    pub fn bridges(&self) -> &[Bridge] {
        &self.bridges
    }

    pub fn veths(&self) -> &[Veth] {
        &self.veths
    }

    /// Namespace of a host, by the name users type.
    pub fn namespace_of(&self, host: &str) -> Option<&str> {
        self.host(host).map(|h| h.namespace.as_str())
    }

    /// Host names for error messages: `router, k8s-ctr, k8s-w1, k8s-w0, uplink, fabric`.
    pub fn host_names(&self) -> String {
        self.hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// Every veth end that lives in `host`.
    pub fn ends_in<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a VethEnd> + 'a {
        self.veths.iter().flat_map(|v| [&v.a, &v.b]).filter(move |e| e.host == host)
    }
}

/// The Kubernetes nodes of the lab with their InternalIP (the eth1 address).
pub fn nodes(topology: &Topology) -> Vec<NodeInfo> {
    topology
        .hosts
        .iter()
        .filter(|h| h.role == HostRole::Node)
        .filter_map(|h| {
            let eth1 = topology.ends_in(&h.name).find(|e| e.ifname == "eth1")?;
            Some(NodeInfo {
                name: h.name.clone(),
                internal_ip: eth1.addresses.first()?.addr(),
                namespace: h.namespace.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn guide() -> Topology {
        Topology::guide(&LabName::new("t1").unwrap())
    }

    #[test]
    fn nodes_are_the_guides() {
        let nodes = nodes(&guide());
        let got: Vec<_> =
            nodes.iter().map(|n| (n.name.as_str(), n.internal_ip.to_string(), n.namespace.as_str())).collect();
        assert_eq!(
            got,
            [
                ("k8s-ctr", "192.168.10.100".to_string(), "t1-k8s-ctr"),
                ("k8s-w1", "192.168.10.101".to_string(), "t1-k8s-w1"),
                ("k8s-w0", "192.168.20.100".to_string(), "t1-k8s-w0"),
            ]
        );
    }

    #[test]
    fn router_has_the_guides_interfaces() {
        let t = guide();
        let got: Vec<_> = t.ends_in(ROUTER).map(|e| format!("{} {}", e.ifname, e.addresses[0])).collect();
        assert_eq!(
            got,
            [
                "eth0 10.0.2.15/24",
                "eth1 192.168.10.200/24",
                "eth2 192.168.20.200/24",
                "loop1 10.10.1.200/24",
                "loop2 10.10.2.200/24",
            ]
        );
    }

    #[test]
    fn interface_names_fit_the_kernel_limit_and_are_unique_per_host() {
        let t = guide();
        for host in t.hosts() {
            let mut seen = BTreeSet::new();
            for e in t.ends_in(&host.name) {
                assert!(e.ifname.len() <= 15, "{} too long", e.ifname);
                assert!(seen.insert(e.ifname.clone()), "{} twice", e.ifname);
            }
            for b in t.bridges().iter().filter(|b| b.host == host.name) {
                assert!(seen.insert(b.name.clone()), "{} twice", b.name);
            }
        }
    }

    #[test]
    fn every_reference_resolves() {
        let t = guide();
        for v in t.veths() {
            for e in [&v.a, &v.b] {
                assert!(t.host(&e.host).is_some(), "{} unknown", e.host);
                if let Some(m) = &e.master {
                    assert!(
                        t.bridges().iter().any(|b| &b.name == m && b.host == e.host),
                        "bridge {m} not in {}",
                        e.host
                    );
                }
            }
        }
        for h in t.hosts() {
            for r in &h.routes {
                if let Some(dev) = r.dev() {
                    assert!(t.ends_in(&h.name).any(|e| e.ifname == dev));
                }
            }
        }
    }

    #[test]
    fn macs_are_unique() {
        let t = guide();
        let macs: Vec<_> = t.veths().iter().flat_map(|v| [v.a.mac, v.b.mac]).collect();
        let unique: BTreeSet<_> = macs.iter().collect();
        assert_eq!(macs.len(), unique.len());
    }

    #[test]
    fn nodes_route_lab_ranges_via_their_router() {
        let t = guide();
        let w0 = t.host(K8S_W0).unwrap();
        let dsts: Vec<_> = w0
            .routes
            .iter()
            .map(|r| match r {
                Route::Via { gateway, dev, .. } => {
                    format!("{} via {gateway} dev {dev}", r.dst_string())
                }
                Route::Blackhole { .. } => format!("blackhole {}", r.dst_string()),
            })
            .collect();
        assert_eq!(
            dsts,
            [
                "default via 10.0.2.2 dev eth0",
                "192.168.0.0/16 via 192.168.20.200 dev eth1",
                "172.20.0.0/16 via 192.168.20.200 dev eth1",
            ]
        );
        assert_eq!(t.host(UPLINK).unwrap().routes, [Route::Blackhole { dst: None }]);
    }
}
