//! The difference between a [`Topology`] and what the kernel has, as `ip` batch commands per
//! namespace. Pure, so idempotency and repair are tested without root: a complete lab plans
//! nothing, a missing namespace or half of a veth pair plans exactly what brings it back.
//!
//! `up` only adds what is missing. It never removes what it does not own a name for: pods' veths,
//! addresses the agents add and the guide's manual routes on the router stay.

use std::collections::{BTreeMap, BTreeSet};

use crate::observed::{Observed, ObservedLink, ObservedNamespace, Presence};
use crate::topology::{Route, Topology, VethEnd};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Namespace files that exist but are not namespaces; removed before being created again.
    pub stale_namespaces: Vec<String>,
    pub create_namespaces: Vec<String>,
    /// Hosts whose namespace is new: processes that ran in the old one must start again.
    pub new_hosts: Vec<String>,
    /// Phase 1, per namespace: links to remove (half veth pairs, wrong kinds).
    pub delete: BTreeMap<String, Vec<String>>,
    /// Phase 2: veth pairs (created from one end's namespace) and bridges.
    pub create: BTreeMap<String, Vec<String>>,
    /// Phase 3: bridge ports, MACs, link state, addresses, then routes.
    pub configure: BTreeMap<String, Vec<String>>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes() == 0
    }

    /// Namespaces to create plus `ip` commands to run.
    pub fn changes(&self) -> usize {
        let lines = |m: &BTreeMap<String, Vec<String>>| m.values().map(Vec::len).sum::<usize>();
        self.create_namespaces.len() + lines(&self.delete) + lines(&self.create) + lines(&self.configure)
    }

    /// One `namespace: command` per line, for error messages and debugging.
    pub fn describe(&self) -> String {
        let mut out = Vec::new();
        for ns in &self.create_namespaces {
            out.push(format!("create namespace {ns}"));
        }
        for phase in [&self.delete, &self.create, &self.configure] {
            for (ns, lines) in phase {
                out.extend(lines.iter().map(|l| format!("{ns}: {l}")));
            }
        }
        out.join("; ")
    }
}

/// Computes what `up` must do to turn `observed` into `topology`.
pub fn plan(topology: &Topology, observed: &Observed) -> Plan {
    let mut p = Plan::default();

    // Namespaces. A namespace being created has nothing in it yet.
    let mut present: BTreeMap<&str, &ObservedNamespace> = BTreeMap::new();
    for host in topology.hosts() {
        match observed.get(&host.namespace) {
            Some(Presence::Present(ns)) => {
                present.insert(host.name.as_str(), ns);
            }
            Some(Presence::Stale) => {
                p.stale_namespaces.push(host.namespace.clone());
                p.create_namespaces.push(host.namespace.clone());
                p.new_hosts.push(host.name.clone());
            }
            Some(Presence::Missing) | None => {
                p.create_namespaces.push(host.namespace.clone());
                p.new_hosts.push(host.name.clone());
            }
        }
    }
    let link = |host: &str, name: &str| -> Option<&ObservedLink> { present.get(host).and_then(|ns| ns.link(name)) };
    let ns_of = |host: &str| topology.namespace_of(host).unwrap_or(host).to_string();
    let push = |m: &mut BTreeMap<String, Vec<String>>, host: &str, line: String| {
        m.entry(ns_of(host)).or_default().push(line);
    };

    // Links that are (re)created in this plan: whatever the kernel had on them is gone.
    let mut fresh: BTreeSet<(String, String)> = BTreeSet::new();

    for veth in topology.veths() {
        let (a, b) = (&veth.a, &veth.b);
        let (oa, ob) = (link(&a.host, &a.ifname), link(&b.host, &b.ifname));
        let paired = match (oa, ob) {
            (Some(la), Some(lb)) => la.peer_ifindex == Some(lb.ifindex) && lb.peer_ifindex == Some(la.ifindex),
            _ => false,
        };
        let is_veth = |l: Option<&ObservedLink>| l.is_some_and(|l| l.kind.as_deref() == Some("veth"));
        if paired && is_veth(oa) && is_veth(ob) {
            continue;
        }
        if oa.is_some() {
            push(&mut p.delete, &a.host, format!("link del {}", a.ifname));
        }
        // Deleting one end of a pair removes the other; deleting it again would fail.
        if ob.is_some() && !paired {
            push(&mut p.delete, &b.host, format!("link del {}", b.ifname));
        }
        push(
            &mut p.create,
            &a.host,
            format!(
                "link add {} address {} type veth peer name {} address {} netns {}",
                a.ifname,
                a.mac_string(),
                b.ifname,
                b.mac_string(),
                ns_of(&b.host)
            ),
        );
        fresh.insert((a.host.clone(), a.ifname.clone()));
        fresh.insert((b.host.clone(), b.ifname.clone()));
    }

    for bridge in topology.bridges() {
        let observed = link(&bridge.host, &bridge.name);
        if observed.is_some_and(|l| l.kind.as_deref() == Some("bridge")) {
            continue;
        }
        if observed.is_some() {
            push(&mut p.delete, &bridge.host, format!("link del {}", bridge.name));
        }
        // No STP and no forwarding delay: ports forward the moment they are up.
        push(
            &mut p.create,
            &bridge.host,
            format!("link add {} type bridge forward_delay 0 stp_state 0 mcast_snooping 0", bridge.name),
        );
        fresh.insert((bridge.host.clone(), bridge.name.clone()));
    }

    let current = |host: &str, name: &str| -> Option<&ObservedLink> {
        if fresh.contains(&(host.to_string(), name.to_string())) { None } else { link(host, name) }
    };

    for host in topology.hosts() {
        let h = host.name.as_str();
        let mut links = Vec::new();
        let mut addrs = Vec::new();
        let mut routes = Vec::new();

        if !link(h, "lo").is_some_and(|l| l.up) {
            links.push("link set lo up".to_string());
        }
        for bridge in topology.bridges().iter().filter(|b| b.host == h) {
            if !current(h, &bridge.name).is_some_and(|l| l.up) {
                links.push(format!("link set {} up", bridge.name));
            }
        }
        for end in topology.ends_in(h) {
            configure_end(end, current(h, &end.ifname), &mut links, &mut addrs);
        }
        for route in &host.routes {
            let have = present.get(h).is_some_and(|ns| {
                route.dev().is_none_or(|dev| current(h, dev).is_some())
                    && ns.routes.iter().any(|r| route_matches(route, r))
            });
            if !have {
                routes.push(route_command(route));
            }
        }

        let lines: Vec<String> = links.into_iter().chain(addrs).chain(routes).collect();
        if !lines.is_empty() {
            p.configure.insert(host.namespace.clone(), lines);
        }
    }
    p
}

fn configure_end(end: &VethEnd, current: Option<&ObservedLink>, links: &mut Vec<String>, addrs: &mut Vec<String>) {
    let name = &end.ifname;
    if let Some(master) = &end.master
        && current.and_then(|l| l.master.as_ref()) != Some(master)
    {
        links.push(format!("link set {name} master {master}"));
    }
    if let Some(l) = current
        && !l.mac.as_deref().is_some_and(|m| m.eq_ignore_ascii_case(&end.mac_string()))
    {
        links.push(format!("link set {name} address {}", end.mac_string()));
    }
    if !current.is_some_and(|l| l.up) {
        links.push(format!("link set {name} up"));
    }
    for addr in &end.addresses {
        if !current.is_some_and(|l| l.ipv4.contains(addr)) {
            addrs.push(format!("addr add {addr} dev {name}"));
        }
    }
}

fn route_matches(want: &Route, have: &crate::observed::ObservedRoute) -> bool {
    if have.dst != want.dst_string() {
        return false;
    }
    match want {
        Route::Via { gateway, dev, .. } => {
            have.kind.is_none()
                && have.gateway.as_deref() == Some(gateway.to_string().as_str())
                && have.dev.as_deref() == Some(dev.as_str())
        }
        Route::Blackhole { .. } => have.kind.as_deref() == Some("blackhole"),
    }
}

fn route_command(route: &Route) -> String {
    match route {
        Route::Via { gateway, dev, .. } => {
            format!("route replace {} via {gateway} dev {dev}", route.dst_string())
        }
        Route::Blackhole { .. } => format!("route replace blackhole {}", route.dst_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::LabName;
    use crate::observed::{ObservedRoute, Presence};
    use crate::topology::{FABRIC, K8S_W1, ROUTER};

    fn topo() -> Topology {
        Topology::guide(&LabName::new("t").unwrap())
    }

    /// What the kernel looks like after a complete build: simulated from the topology with
    /// consistent ifindexes, so the test does not depend on a previous plan being right.
    fn complete(t: &Topology) -> Observed {
        let mut ns: BTreeMap<String, ObservedNamespace> = BTreeMap::new();
        let mut next = 10u32;
        let add = |ns: &mut BTreeMap<String, ObservedNamespace>, host: &str, l: ObservedLink| {
            ns.entry(t.namespace_of(host).unwrap().to_string()).or_default().links.push(l);
        };
        for h in t.hosts() {
            add(&mut ns, &h.name, link(1, "lo", None, None, &[]));
        }
        for b in t.bridges() {
            next += 1;
            add(&mut ns, &b.host, link(next, &b.name, Some("bridge"), None, &[]));
        }
        for v in t.veths() {
            let (ia, ib) = (next + 1, next + 2);
            next += 2;
            let mut la = link(ia, &v.a.ifname, Some("veth"), Some(ib), &v.a.addresses);
            la.mac = Some(v.a.mac_string());
            la.master = v.a.master.clone();
            let mut lb = link(ib, &v.b.ifname, Some("veth"), Some(ia), &v.b.addresses);
            lb.mac = Some(v.b.mac_string());
            lb.master = v.b.master.clone();
            add(&mut ns, &v.a.host, la);
            add(&mut ns, &v.b.host, lb);
        }
        for h in t.hosts() {
            let routes = &mut ns.get_mut(&h.namespace).unwrap().routes;
            for r in &h.routes {
                routes.push(match r {
                    Route::Via { gateway, dev, .. } => ObservedRoute {
                        kind: None,
                        dst: r.dst_string(),
                        gateway: Some(gateway.to_string()),
                        dev: Some(dev.clone()),
                    },
                    Route::Blackhole { .. } => {
                        ObservedRoute { kind: Some("blackhole".into()), dst: r.dst_string(), gateway: None, dev: None }
                    }
                });
            }
        }
        ns.into_iter().map(|(k, v)| (k, Presence::Present(v))).collect()
    }

    fn link(ifindex: u32, name: &str, kind: Option<&str>, peer: Option<u32>, addrs: &[ipnet::Ipv4Net]) -> ObservedLink {
        ObservedLink {
            ifindex,
            name: name.into(),
            kind: kind.map(Into::into),
            up: true,
            operstate: "UP".into(),
            qdisc: Some("noqueue".into()),
            bridge_port_state: None,
            master: None,
            peer_ifindex: peer,
            mac: None,
            ipv4: addrs.to_vec(),
            all_addresses: Vec::new(),
        }
    }

    fn ns_mut<'a>(o: &'a mut Observed, ns: &str) -> &'a mut ObservedNamespace {
        match o.get_mut(ns) {
            Some(Presence::Present(n)) => n,
            _ => panic!("{ns} not present"),
        }
    }

    #[test]
    fn complete_lab_plans_nothing() {
        let t = topo();
        let p = plan(&t, &complete(&t));
        assert!(p.is_empty(), "{}", p.describe());
    }

    #[test]
    fn empty_machine_plans_everything_once() {
        let t = topo();
        let p = plan(&t, &Observed::new());
        assert_eq!(p.create_namespaces.len(), t.hosts().len());
        assert!(p.delete.is_empty());
        let veths: usize = p.create.values().flatten().filter(|l| l.contains("veth")).count();
        assert_eq!(veths, t.veths().len());
        let router = &p.configure["t-router"];
        assert!(router.contains(&"addr add 192.168.10.200/24 dev eth1".to_string()));
        assert!(router.contains(&"route replace default via 10.0.2.2 dev eth0".to_string()));
        // Routes come after the addresses their gateways need.
        let first_route = router.iter().position(|l| l.starts_with("route")).unwrap();
        let last_addr = router.iter().rposition(|l| l.starts_with("addr")).unwrap();
        assert!(last_addr < first_route);
        let fabric = &p.configure["t-fabric"];
        assert!(fabric.contains(&"link set k8s-ctr-eth1 master seg10".to_string()));
        assert!(fabric.contains(&"link set seg20 up".to_string()));
        assert_eq!(p.configure["t-uplink"].last().unwrap(), "route replace blackhole default");
    }

    #[test]
    fn missing_namespace_recreates_it_and_its_cables() {
        let t = topo();
        let mut o = complete(&t);
        o.insert("t-k8s-w1".into(), Presence::Missing);
        // The kernel destroyed the peers in the fabric and the uplink with the namespace.
        ns_mut(&mut o, "t-fabric").links.retain(|l| l.name != "k8s-w1-eth1");
        ns_mut(&mut o, "t-uplink").links.retain(|l| l.name != "k8s-w1-eth0");
        let p = plan(&t, &o);
        assert_eq!(p.create_namespaces, ["t-k8s-w1"]);
        assert_eq!(p.new_hosts, [K8S_W1]);
        assert!(p.delete.is_empty());
        assert_eq!(p.create["t-k8s-w1"].len(), 2);
        assert_eq!(p.configure["t-fabric"], ["link set k8s-w1-eth1 master seg10", "link set k8s-w1-eth1 up"]);
        assert_eq!(p.configure["t-uplink"], ["link set k8s-w1-eth0 up", "addr add 10.0.2.2/32 dev k8s-w1-eth0"]);
        let w1 = &p.configure["t-k8s-w1"];
        assert_eq!(w1[0], "link set lo up");
        assert!(w1.contains(&"route replace 172.20.0.0/16 via 192.168.10.200 dev eth1".to_string()));
        assert!(!p.configure.contains_key("t-router"));
    }

    #[test]
    fn half_a_veth_pair_is_replaced() {
        let t = topo();
        let mut o = complete(&t);
        // The router's eth1 is gone but its fabric peer survived (e.g. re-paired by hand).
        ns_mut(&mut o, "t-router").links.retain(|l| l.name != "eth1");
        let p = plan(&t, &o);
        assert_eq!(p.delete["t-fabric"], ["link del router-eth1"]);
        assert_eq!(p.create["t-router"].len(), 1);
        assert!(
            p.create["t-router"][0]
                .starts_with("link add eth1 address 02:c1:1a:01:01:00 type veth peer name router-eth1")
        );
        assert!(p.create["t-router"][0].ends_with("netns t-fabric"));
        assert!(p.configure["t-router"].contains(&"addr add 192.168.10.200/24 dev eth1".to_string()));
        assert!(p.configure["t-fabric"].contains(&"link set router-eth1 master seg10".to_string()));
        assert!(p.new_hosts.is_empty());
    }

    #[test]
    fn wrong_peer_is_replaced_once() {
        let t = topo();
        let mut o = complete(&t);
        let eth2 = ns_mut(&mut o, "t-router").link("eth2").unwrap().ifindex;
        for l in &mut ns_mut(&mut o, "t-router").links {
            if l.name == "eth1" {
                l.peer_ifindex = Some(eth2 + 100);
            }
        }
        let p = plan(&t, &o);
        assert_eq!(p.delete["t-router"], ["link del eth1"]);
        assert_eq!(p.delete["t-fabric"], ["link del router-eth1"]);
    }

    #[test]
    fn lost_addresses_routes_and_state_come_back() {
        let t = topo();
        let mut o = complete(&t);
        let router = ns_mut(&mut o, "t-router");
        router.routes.clear();
        for l in &mut router.links {
            if l.name == "loop1" {
                l.ipv4.clear();
                l.up = false;
            }
        }
        let fabric = ns_mut(&mut o, "t-fabric");
        for l in &mut fabric.links {
            if l.name == "seg20" {
                l.up = false;
            }
            if l.name == "k8s-w0-eth1" {
                l.master = None;
            }
        }
        let p = plan(&t, &o);
        assert_eq!(
            p.configure["t-router"],
            ["link set loop1 up", "addr add 10.10.1.200/24 dev loop1", "route replace default via 10.0.2.2 dev eth0"]
        );
        assert_eq!(
            p.configure[&t.namespace_of(FABRIC).unwrap().to_string()],
            ["link set seg20 up", "link set k8s-w0-eth1 master seg20"]
        );
        assert_eq!(p.changes(), 5);
    }

    #[test]
    fn extra_state_is_left_alone() {
        let t = topo();
        let mut o = complete(&t);
        let router = ns_mut(&mut o, "t-router");
        router.routes.push(ObservedRoute {
            kind: None,
            dst: "172.20.2.0/24".into(),
            gateway: Some("192.168.20.100".into()),
            dev: Some("eth2".into()),
        });
        router.links.push(link(99, "lxc123", Some("veth"), Some(3), &[]));
        assert!(plan(&t, &o).is_empty());
    }

    #[test]
    fn stale_namespace_file_is_replaced() {
        let t = topo();
        let mut o = complete(&t);
        o.insert("t-router".into(), Presence::Stale);
        let p = plan(&t, &o);
        assert_eq!(p.stale_namespaces, ["t-router"]);
        assert_eq!(p.create_namespaces, ["t-router"]);
        assert_eq!(p.new_hosts, [ROUTER]);
    }
}
