//! Cilium's control-plane catalogue (l2.md §6.1, §6.5 C1–C16) restated for a computed
//! assignment, plus the properties of eligibility and rendezvous ownership.

use std::net::Ipv4Addr;

use api::Object;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::policy::compile_all;

/// A cluster as the assignment sees it, editable step by step like Cilium's test fixture.
#[derive(Clone, Debug, Default)]
struct Fx {
    services: Vec<ServiceInfo>,
    policies: Vec<Object>,
    nodes: BTreeMap<String, BTreeMap<String, String>>,
    ifaces: BTreeMap<String, Vec<Interface>>,
    live: BTreeSet<String>,
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn svc(name: &str, lbls: &[(&str, &str)], lb: &[&str], ext: &[&str]) -> ServiceInfo {
    ServiceInfo {
        key: ServiceKey::new("default", name),
        labels: labels(lbls),
        lb_ips: lb.iter().map(|s| ip(s)).collect(),
        external_ips: ext.iter().map(|s| ip(s)).collect(),
        ..Default::default()
    }
}

fn policy(name: &str, spec: Value) -> Object {
    let mut obj = Object::new(&api::kinds::L2_ANNOUNCEMENT_POLICY, None, name);
    obj.body.insert("spec".into(), spec);
    obj
}

fn up(name: &str, addrs: &[&str]) -> Interface {
    Interface::new(name, true, addrs.iter().map(|a| a.parse().unwrap()).collect())
}

impl Fx {
    /// Cilium's fixture: one node with device `eno01`.
    fn cilium() -> Fx {
        let mut fx = Fx::default();
        fx.node("node1", &[("kubernetes.io/hostname", "node1")], vec![up("eno01", &["10.0.0.1/24"])]);
        fx
    }

    fn node(&mut self, name: &str, lbls: &[(&str, &str)], ifaces: Vec<Interface>) {
        self.nodes.insert(name.into(), labels(lbls));
        self.ifaces.insert(name.into(), ifaces);
        self.live.insert(name.into());
    }

    fn set_policy(&mut self, obj: Object) {
        self.policies.retain(|p| p.name() != obj.name());
        self.policies.push(obj);
    }

    fn del_policy(&mut self, name: &str) {
        self.policies.retain(|p| p.name() != name);
    }

    fn set_svc(&mut self, s: ServiceInfo) {
        self.services.retain(|x| x.key != s.key);
        self.services.push(s);
    }

    fn svc_mut(&mut self, name: &str) -> &mut ServiceInfo {
        self.services.iter_mut().find(|s| s.key.name == name).unwrap()
    }

    fn run(&self) -> Assignment {
        let (policies, problems) = compile_all(&self.policies);
        assert!(problems.is_empty(), "{problems:?}");
        assign(&Inputs {
            services: &self.services,
            policies: &policies,
            nodes: &self.nodes,
            interfaces: &self.ifaces,
            candidates: &self.live,
        })
    }

    /// `db/show l2-announce` of `node`, as (IP, interface) strings.
    fn rows(&self, node: &str) -> Vec<(String, String)> {
        self.run().entries_for(node).into_iter().map(|e| (e.ip.to_string(), e.interface)).collect()
    }
}

fn row(ip: &str, iface: &str) -> (String, String) {
    (ip.to_string(), iface.to_string())
}

fn blue_policy() -> Object {
    policy(
        "blue",
        json!({
            "serviceSelector": {"matchLabels": {"color": "blue"}},
            "interfaces": ["^eno"],
            "externalIPs": true,
            "loadBalancerIPs": true
        }),
    )
}

fn blue_service() -> ServiceInfo {
    svc("blue", &[("color", "blue")], &[], &["192.168.2.1"])
}

// C1
#[test]
fn happy_path() {
    let mut fx = Fx::cilium();
    fx.set_policy(blue_policy());
    fx.set_svc(blue_service());
    // Not live yet (the equivalent of "no leadership"): nothing is announced.
    fx.live.clear();
    assert!(fx.rows("node1").is_empty());
    assert_eq!(fx.run().owner(ip("192.168.2.1")), None);
    fx.live.insert("node1".into());
    let a = fx.run();
    let entries = a.entries_for("node1");
    assert_eq!(entries.len(), 1);
    assert_eq!((entries[0].ip, entries[0].interface.as_str()), (ip("192.168.2.1"), "eno01"));
    assert_eq!(entries[0].origins, [ServiceKey::new("default", "blue")]);
}

// C2
#[test]
fn the_result_does_not_depend_on_input_order() {
    let mut fx = Fx::cilium();
    fx.node("node2", &[], vec![up("eno01", &["10.0.0.2/24"])]);
    fx.set_policy(blue_policy());
    fx.set_policy(policy("ext", json!({"externalIPs": true, "interfaces": ["eno01"]})));
    fx.set_svc(blue_service());
    fx.set_svc(svc("red", &[("color", "red")], &["192.168.2.9"], &["192.168.2.1", "192.168.2.2"]));
    fx.set_svc(svc("cyan", &[], &[], &["192.168.2.3"]));
    let reference = fx.run();
    // Every ordering of the services and of the policies (Heap's algorithm, as Cilium's test).
    let mut services = fx.services.clone();
    for_each_permutation(&mut services, &mut |svcs| {
        let mut policies = fx.policies.clone();
        for_each_permutation(&mut policies, &mut |pols| {
            let f = Fx { services: svcs.to_vec(), policies: pols.to_vec(), ..fx.clone() };
            assert_eq!(f.run(), reference);
        });
    });
}

fn for_each_permutation<T: Clone>(items: &mut [T], f: &mut dyn FnMut(&[T])) {
    fn heap<T: Clone>(k: usize, items: &mut [T], f: &mut dyn FnMut(&[T])) {
        if k <= 1 {
            f(items);
            return;
        }
        for i in 0..k - 1 {
            heap(k - 1, items, f);
            if k.is_multiple_of(2) { items.swap(i, k - 1) } else { items.swap(0, k - 1) }
        }
        heap(k - 1, items, f);
    }
    let n = items.len();
    heap(n, items, f);
}

// C3
#[test]
fn policy_redundancy() {
    let mut fx = Fx::cilium();
    fx.set_policy(blue_policy());
    let mut second = blue_policy();
    second.metadata.name = "blue2".into();
    fx.set_policy(second);
    fx.set_svc(blue_service());
    assert_eq!(fx.rows("node1"), [row("192.168.2.1", "eno01")]);
    fx.del_policy("blue");
    assert_eq!(fx.rows("node1"), [row("192.168.2.1", "eno01")]);
    fx.del_policy("blue2");
    assert!(fx.rows("node1").is_empty());
}

// C4
#[test]
fn node_labels_stop_matching() {
    let mut fx = Fx::cilium();
    let mut p = blue_policy();
    p.body["spec"]["nodeSelector"] = json!({"matchLabels": {"kubernetes.io/hostname": "node1"}});
    fx.set_policy(p);
    fx.set_svc(blue_service());
    assert_eq!(fx.rows("node1").len(), 1);
    fx.nodes.insert("node1".into(), labels(&[("kubernetes.io/hostname", "node2")]));
    assert!(fx.rows("node1").is_empty());
    assert!(fx.run().get(ip("192.168.2.1")).unwrap().eligible.is_empty());
}

// C5
#[test]
fn node_labels_make_a_second_policy_match() {
    let mut fx = Fx::cilium();
    fx.set_policy(blue_policy());
    fx.set_policy(policy(
        "red",
        json!({
            "serviceSelector": {"matchLabels": {"color": "red"}},
            "nodeSelector": {"matchLabels": {"bgp": "red"}},
            "externalIPs": true
        }),
    ));
    fx.set_svc(blue_service());
    fx.set_svc(svc("red", &[("color", "red")], &[], &["192.168.2.2"]));
    assert_eq!(fx.rows("node1").len(), 1);
    fx.nodes.get_mut("node1").unwrap().insert("bgp".into(), "red".into());
    assert_eq!(fx.rows("node1"), [row("192.168.2.1", "eno01"), row("192.168.2.2", "eno01")]);
}

// C6, C7
#[test]
fn service_selector_narrowing_and_widening() {
    let mut fx = Fx::cilium();
    fx.set_policy(blue_policy());
    fx.set_svc(blue_service());
    fx.set_svc(svc("cyan", &[("color", "cyan")], &[], &["192.168.2.2"]));
    assert_eq!(fx.rows("node1"), [row("192.168.2.1", "eno01")]);
    let mut wide = blue_policy();
    wide.body["spec"]["serviceSelector"] =
        json!({"matchExpressions": [{"key": "color", "operator": "In", "values": ["blue", "cyan"]}]});
    fx.set_policy(wide);
    assert_eq!(fx.rows("node1"), [row("192.168.2.1", "eno01"), row("192.168.2.2", "eno01")]);
    let mut narrow = blue_policy();
    narrow.body["spec"]["serviceSelector"] = json!({"matchLabels": {"color": "green"}});
    fx.set_policy(narrow);
    assert!(fx.rows("node1").is_empty());
}

// C8
#[test]
fn ip_type_flags() {
    let mut fx = Fx::cilium();
    fx.set_policy(policy("none", json!({})));
    fx.set_svc(svc("both", &[], &["192.168.2.10"], &["192.168.2.20"]));
    fx.set_svc(svc("bare", &[], &[], &[]));
    assert!(fx.run().is_empty(), "both flags false select nothing");
    fx.set_policy(policy("none", json!({"loadBalancerIPs": true})));
    assert_eq!(fx.rows("node1"), [row("192.168.2.10", "eno01")], "LB IPs only");
    fx.set_policy(policy("none", json!({"externalIPs": true})));
    assert_eq!(fx.rows("node1"), [row("192.168.2.20", "eno01")], "external IPs only");

    // Hostname-only ingress and an empty ingress IP give nothing to announce.
    fx.set_policy(policy("none", json!({"loadBalancerIPs": true})));
    let mut obj = Object::new(&api::kinds::SERVICE, Some("default"), "both");
    obj.body.insert("spec".into(), json!({"type": "LoadBalancer"}));
    obj.body.insert("status".into(), json!({"loadBalancer": {"ingress": [{"hostname": "lb.example"}, {"ip": ""}]}}));
    fx.set_svc(ServiceInfo::from_object(&obj).unwrap());
    assert!(fx.run().is_empty());
    obj.body["status"]["loadBalancer"]["ingress"][1]["ip"] = json!("192.168.2.11");
    fx.set_svc(ServiceInfo::from_object(&obj).unwrap());
    assert_eq!(fx.rows("node1"), [row("192.168.2.11", "eno01")]);
    obj.body["status"]["loadBalancer"]["ingress"][1]["ip"] = json!("");
    fx.set_svc(ServiceInfo::from_object(&obj).unwrap());
    assert!(fx.rows("node1").is_empty(), "the ingress IP set to empty deselects it");
}

// C9
#[test]
fn interface_regex_change_moves_the_row() {
    let mut fx = Fx::cilium();
    fx.ifaces.get_mut("node1").unwrap().push(up("eth0", &["10.1.0.1/24"]));
    fx.set_policy(blue_policy());
    fx.set_svc(blue_service());
    assert_eq!(fx.rows("node1"), [row("192.168.2.1", "eno01")]);
    let mut p = blue_policy();
    p.body["spec"]["interfaces"] = json!(["^eth0$"]);
    fx.set_policy(p);
    assert_eq!(fx.rows("node1"), [row("192.168.2.1", "eth0")], "no stale eno01 row");
    // Empty: every reported interface.
    let mut p = blue_policy();
    p.body["spec"].as_object_mut().unwrap().remove("interfaces");
    fx.set_policy(p);
    assert_eq!(fx.rows("node1"), [row("192.168.2.1", "eno01"), row("192.168.2.1", "eth0")]);
}

// C10, C11
#[test]
fn service_ip_add_and_delete() {
    let mut fx = Fx::cilium();
    fx.set_policy(blue_policy());
    fx.set_svc(blue_service());
    fx.svc_mut("blue").external_ips.push(ip("192.168.2.2"));
    assert_eq!(fx.rows("node1"), [row("192.168.2.1", "eno01"), row("192.168.2.2", "eno01")]);
    fx.svc_mut("blue").external_ips.clear();
    assert!(fx.rows("node1").is_empty());
    assert!(fx.run().lease_holders().is_empty(), "no IP, no lease");
}

// C12
#[test]
fn service_relabel() {
    let mut fx = Fx::cilium();
    fx.set_policy(blue_policy());
    fx.set_svc(blue_service());
    fx.svc_mut("blue").labels.insert("color".into(), "red".into());
    assert!(fx.rows("node1").is_empty());
}

// C13
#[test]
fn load_balancer_class() {
    let mut fx = Fx::cilium();
    fx.set_policy(blue_policy());
    fx.set_svc(blue_service());
    fx.svc_mut("blue").load_balancer_class = Some("io.cilium/l2-announcer".into());
    assert_eq!(fx.rows("node1").len(), 1);
    fx.svc_mut("blue").load_balancer_class = Some("io.cilium/bgp-control-plane".into());
    assert!(fx.rows("node1").is_empty());
}

// C14
#[test]
fn service_delete() {
    let mut fx = Fx::cilium();
    fx.set_policy(blue_policy());
    fx.set_svc(blue_service());
    fx.services.clear();
    assert!(fx.rows("node1").is_empty());
}

// C15
#[test]
fn a_shared_ip_is_one_row_with_two_origins() {
    let mut fx = Fx::cilium();
    fx.set_policy(blue_policy());
    fx.set_svc(blue_service());
    fx.set_svc(svc("blue-udp", &[("color", "blue")], &["192.168.2.1"], &[]));
    let a = fx.run();
    let entries = a.entries_for("node1");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].origins, [ServiceKey::new("default", "blue"), ServiceKey::new("default", "blue-udp")]);
    assert_eq!(a.lease_holders().len(), 2);
    fx.services.retain(|s| s.key.name != "blue");
    let entries = fx.run().entries_for("node1");
    assert_eq!(entries.len(), 1, "the row stays while one origin remains");
    assert_eq!(entries[0].origins, [ServiceKey::new("default", "blue-udp")]);
}

// C16: a policy with a problem is not applied (its conditions are tested in `conditions`).
#[test]
fn a_bad_policy_is_not_applied() {
    let mut bad = blue_policy();
    bad.body["spec"]["interfaces"] = json!(["eno["]);
    let (ok, problems) = compile_all(&[bad, policy("fine", json!({}))]);
    assert_eq!(ok.len(), 1);
    assert_eq!(problems["blue"][0].kind.condition_type(), "io.cilium/bad-interface-regex");
}

#[test]
fn policies_union_by_ip_type_and_interface() {
    // Policy A announces LB IPs on eth0, policy B external IPs on eth1 (l2.md §1.3).
    let mut fx = Fx::default();
    fx.node("n", &[], vec![up("eth0", &[]), up("eth1", &[])]);
    fx.set_policy(policy("a", json!({"loadBalancerIPs": true, "interfaces": ["^eth0$"]})));
    fx.set_policy(policy("b", json!({"externalIPs": true, "interfaces": ["^eth1$"]})));
    fx.set_svc(svc("s", &[], &["192.168.2.10"], &["192.168.2.20"]));
    assert_eq!(fx.rows("n"), [row("192.168.2.10", "eth0"), row("192.168.2.20", "eth1")]);
    // Both policies yield the same IP: the union of their interfaces.
    fx.set_policy(policy("b", json!({"loadBalancerIPs": true, "interfaces": ["^eth1$"]})));
    assert_eq!(fx.rows("n"), [row("192.168.2.10", "eth0"), row("192.168.2.10", "eth1")]);
}

#[test]
fn only_selected_nodes_with_an_up_matching_interface_own() {
    let mut fx = Fx::default();
    fx.node("cp", &[("node-role.kubernetes.io/control-plane", "")], vec![up("eth0", &[])]);
    fx.node("w-down", &[], vec![Interface::new("eth0", false, vec![])]);
    fx.node("w-other", &[], vec![up("ens3", &[])]);
    fx.node("w-silent", &[], vec![]);
    fx.node("w-ok", &[], vec![up("eth0", &[]), up("eth1", &[])]);
    fx.ifaces.remove("w-silent");
    fx.set_policy(policy(
        "p",
        json!({
            "externalIPs": true,
            "interfaces": ["^eth"],
            "nodeSelector": {"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"}]}
        }),
    ));
    let ips: Vec<String> = (1..=200).map(|i| format!("10.9.{}.{}", i / 100, i % 100 + 1)).collect();
    let ext: Vec<&str> = ips.iter().map(String::as_str).collect();
    fx.set_svc(svc("many", &[], &[], &ext));
    let a = fx.run();
    assert_eq!(a.len(), 200);
    for row in a.iter() {
        assert_eq!(row.eligible, ["w-ok"]);
        assert_eq!(row.owner, Some("w-ok"));
        assert_eq!(row.interfaces, ["eth0", "eth1"]);
    }
    // F4: the holder's NIC goes down: it is no longer eligible, nobody else is either.
    fx.ifaces.insert("w-ok".into(), vec![Interface::new("eth0", false, vec![]), Interface::new("eth1", false, vec![])]);
    assert!(fx.run().iter().all(|r| r.owner.is_none() && r.eligible.is_empty()));
}

#[test]
fn etp_local_needs_a_local_backend() {
    let mut fx = Fx::default();
    for n in ["w0", "w1", "w2", "w3"] {
        fx.node(n, &[], vec![up("eth0", &[])]);
    }
    fx.set_policy(policy("p", json!({"loadBalancerIPs": true})));
    let ips: Vec<String> = (1..=100).map(|i| format!("10.9.0.{i}")).collect();
    let lb: Vec<&str> = ips.iter().map(String::as_str).collect();
    let mut s = svc("local", &[], &lb, &[]);
    s.etp_local = true;
    s.local_backend_nodes = ["w1".to_string(), "w3".to_string()].into();
    fx.set_svc(s);
    let a = fx.run();
    let owners: BTreeSet<&str> = a.iter().filter_map(|r| r.owner).collect();
    assert_eq!(owners, ["w1", "w3"].into());
    assert!(a.iter().all(|r| r.eligible == ["w1", "w3"]));
    // A Cluster-policy Service sharing one of the IPs does not widen it: the Local one still needs
    // its backend.
    fx.set_svc(svc("cluster", &[], &["10.9.0.1"], &[]));
    assert_eq!(fx.run().get(ip("10.9.0.1")).unwrap().eligible, ["w1", "w3"]);
    // No backend anywhere: nobody announces (instead of attracting traffic that is dropped).
    fx.svc_mut("local").local_backend_nodes.clear();
    assert!(fx.run().get(ip("10.9.0.2")).unwrap().owner.is_none());
}

#[test]
fn subnet_preference() {
    let mut fx = Fx::default();
    fx.node("ctr", &[], vec![up("eth0", &["10.0.2.15/24"]), up("eth1", &["192.168.10.100/24"])]);
    fx.node("w0", &[], vec![up("eth0", &["10.0.2.16/24"]), up("eth1", &["192.168.10.101/24"])]);
    fx.node("w1", &[], vec![up("eth0", &["10.0.2.17/24"]), up("eth1", &["192.168.20.100/24"])]);
    fx.set_policy(policy("p", json!({"loadBalancerIPs": true})));
    let ips: Vec<String> = (1..=64).map(|i| format!("192.168.10.{}", 150 + i)).collect();
    let lb: Vec<&str> = ips.iter().map(String::as_str).collect();
    fx.set_svc(svc("web", &[], &lb, &[]));
    fx.set_svc(svc("elsewhere", &[], &["172.16.0.1"], &[]));
    let a = fx.run();
    for ip_s in &ips {
        let r = a.get(ip(ip_s)).unwrap();
        assert_eq!(r.eligible, ["ctr", "w0"], "w1 is not on 192.168.10.0/24");
        assert_eq!(r.interfaces, ["eth1"], "only the on-subnet interface");
    }
    // Both owners are used (rendezvous spreads the IPs).
    assert_eq!(a.iter().filter_map(|r| r.owner).filter(|o| *o != "ctr" && *o != "w0").count(), 1);
    assert!(a.iter().any(|r| r.owner == Some("ctr")) && a.iter().any(|r| r.owner == Some("w0")));
    // An IP on no node's subnet: every eligible node, every matching interface.
    let r = a.get(ip("172.16.0.1")).unwrap();
    assert_eq!(r.eligible, ["ctr", "w0", "w1"]);
    assert_eq!(r.interfaces, ["eth0", "eth1"]);
}

fn big_cluster(nodes: usize, ips: usize) -> Fx {
    let mut fx = Fx::default();
    for n in 0..nodes {
        fx.node(&format!("node-{n:03}"), &[], vec![up("eth0", &[])]);
    }
    fx.set_policy(policy("p", json!({"loadBalancerIPs": true})));
    for i in 0..ips {
        let addr = Ipv4Addr::from(0x0a00_0000u32 + i as u32).to_string();
        fx.services.push(svc(&format!("s{i:05}"), &[], &[&addr], &[]));
    }
    fx
}

#[test]
fn a_dead_node_moves_only_its_own_ips() {
    let mut fx = big_cluster(10, 3000);
    let before = fx.run();
    let victim = "node-004";
    let owned: BTreeSet<IpAddr> = before.owners().filter(|(_, o)| *o == Some(victim)).map(|(ip, _)| ip).collect();
    assert!((150..=450).contains(&owned.len()), "about 1/10 of 3000, got {}", owned.len());
    fx.live.remove(victim);
    let after = fx.run();
    let moved: BTreeSet<IpAddr> = after.owner_changes(&before).into_iter().collect();
    assert_eq!(moved, owned, "exactly the dead node's IPs move");
    assert!(after.owners().all(|(_, o)| o.is_some() && o != Some(victim)));
    // It comes back: exactly those IPs return, nothing else moves.
    fx.live.insert(victim.into());
    let back = fx.run();
    assert_eq!(back, before);
}

#[test]
fn a_new_node_takes_only_what_it_wins() {
    let mut fx = big_cluster(10, 3000);
    let before = fx.run();
    fx.node("node-new", &[], vec![up("eth0", &[])]);
    let after = fx.run();
    let changes = after.owner_changes(&before);
    assert!(changes.iter().all(|ip| after.owner(*ip) == Some("node-new")));
    assert!((150..=450).contains(&changes.len()), "about 1/11 of 3000, got {}", changes.len());
}

#[test]
fn every_node_computes_the_same_owner() {
    let fx = big_cluster(20, 500);
    // Each node builds its inputs independently (here: in another order) and keeps its own rows.
    let reference = fx.run();
    let mut seen = BTreeMap::new();
    for (k, node) in fx.nodes.keys().enumerate() {
        let mut services = fx.services.clone();
        let n = services.len();
        services.rotate_left(k * 7 % n);
        let mine = Fx { services, ..fx.clone() }.run();
        assert_eq!(mine, reference);
        for e in mine.entries_for(node) {
            assert!(seen.insert(e.ip, node.clone()).is_none(), "{} announced twice", e.ip);
        }
    }
    assert_eq!(seen.len(), 500, "every IP announced by exactly one node");
    // Load spreads: no node owns more than twice its share.
    let mut per_node: BTreeMap<&String, usize> = BTreeMap::new();
    for n in seen.values() {
        *per_node.entry(n).or_default() += 1;
    }
    assert!(per_node.values().all(|c| *c <= 50), "{per_node:?}");
}

#[test]
fn scores_are_pinned() {
    // Fixed by definition: a change here would make mixed-version clusters disagree.
    assert_eq!(score("k8s-w0", ip("192.168.10.245")), 0xf0a4_01b0_fdd7_57be);
    assert_eq!(score("k8s-w1", ip("192.168.10.245")), 0xd5eb_f43d_731c_5c70);
    assert_eq!(score("node-a", ip("fd00::1")), 0x89d6_1bfa_34ae_e13a);
}

#[test]
fn lease_holder_is_the_owner_of_the_lowest_owned_ip() {
    let mut fx = big_cluster(10, 0);
    let ips: Vec<String> = (1..=50).map(|i| format!("10.7.0.{i}")).collect();
    let lb: Vec<&str> = ips.iter().map(String::as_str).collect();
    fx.set_svc(svc("multi", &[], &lb, &[]));
    let a = fx.run();
    let owners: BTreeSet<_> = a.owners().filter_map(|(_, o)| o).collect();
    assert!(owners.len() > 1, "the IPs are spread");
    let holders = a.lease_holders();
    assert_eq!(holders[&ServiceKey::new("default", "multi")], a.owner(ip("10.7.0.1")).unwrap());
    // Its lowest IP's owner dies: the holder becomes the (new) owner of the lowest IP.
    let first = a.owner(ip("10.7.0.1")).unwrap().to_string();
    fx.live.remove(&first);
    let a = fx.run();
    assert_eq!(a.lease_holders()[&ServiceKey::new("default", "multi")], a.owner(ip("10.7.0.1")).unwrap());
}

#[test]
fn renders_like_db_show() {
    let entries = vec![
        AnnounceEntry { ip: ip("10.0.10.0"), interface: "eth0".into(), origins: vec![] },
        AnnounceEntry { ip: ip("192.168.10.245"), interface: "eth1".into(), origins: vec![] },
    ];
    assert_eq!(
        render_table(&entries),
        "IP               NetworkInterface\n10.0.10.0        eth0\n192.168.10.245   eth1\n"
    );
}

/// A random small cluster for the properties below.
fn arb_cluster() -> impl Strategy<Value = Fx> {
    let node = (
        prop::sample::select(vec!["a", "b"]),
        prop::collection::vec((prop::sample::select(vec!["eth0", "eth1", "ens3"]), any::<bool>(), 0u8..3), 0..3),
        any::<bool>(),
    );
    let service = (
        prop::sample::select(vec!["red", "blue"]),
        prop::collection::vec(0u8..12, 0..3),
        prop::collection::vec(0u8..12, 0..2),
        any::<bool>(),
        prop::collection::btree_set(0usize..6, 0..3),
    );
    let pol = (
        prop::option::of(prop::sample::select(vec!["red", "blue"])),
        prop::option::of(prop::sample::select(vec!["a", "b"])),
        prop::option::of(prop::sample::select(vec!["^eth", "1$", "ens"])),
        any::<bool>(),
        any::<bool>(),
    );
    (prop::collection::vec(node, 1..6), prop::collection::vec(service, 0..6), prop::collection::vec(pol, 0..3))
        .prop_map(|(nodes, services, policies)| {
            let mut fx = Fx::default();
            for (i, (zone, ifaces, live)) in nodes.into_iter().enumerate() {
                let name = format!("n{i}");
                let ifs = ifaces
                    .into_iter()
                    // Subnet k: 10.0.k.0/24; the service IPs below fall into 10.0.0-2.x.
                    .map(|(n, is_up, k)| {
                        Interface::new(n, is_up, vec![format!("10.0.{k}.{}/24", 200 + i).parse().unwrap()])
                    })
                    .collect();
                fx.node(&name, &[("zone", zone)], ifs);
                if !live {
                    fx.live.remove(&name);
                }
            }
            for (i, (color, lb, ext, local, backends)) in services.into_iter().enumerate() {
                let to_ip = |b: &u8| format!("10.0.{}.{}", b % 4, b);
                let lb: Vec<String> = lb.iter().map(to_ip).collect();
                let ext: Vec<String> = ext.iter().map(to_ip).collect();
                let mut s = svc(
                    &format!("s{i}"),
                    &[("color", color)],
                    &lb.iter().map(String::as_str).collect::<Vec<_>>(),
                    &ext.iter().map(String::as_str).collect::<Vec<_>>(),
                );
                s.etp_local = local;
                s.local_backend_nodes = backends.into_iter().map(|b| format!("n{b}")).collect();
                fx.services.push(s);
            }
            for (i, (color, zone, iface, lb, ext)) in policies.into_iter().enumerate() {
                let mut spec = json!({"loadBalancerIPs": lb, "externalIPs": ext});
                if let Some(c) = color {
                    spec["serviceSelector"] = json!({"matchLabels": {"color": c}});
                }
                if let Some(z) = zone {
                    spec["nodeSelector"] = json!({"matchLabels": {"zone": z}});
                }
                if let Some(re) = iface {
                    spec["interfaces"] = json!([re]);
                }
                fx.policies.push(policy(&format!("p{i}"), spec));
            }
            fx
        })
}

proptest! {
    #[test]
    fn fast_subnet_test_agrees_with_ipnet(
        v4 in any::<bool>(), a in any::<u128>(), b in any::<u128>(), len in 0u8..=128, near in any::<bool>()
    ) {
        let (net, ip) = if v4 {
            let net = ipnet::IpNet::new(IpAddr::V4((a as u32).into()), len % 33).unwrap();
            // Half the time an address sharing the prefix's upper bits, so both answers occur.
            let ip = if near { (a as u32) ^ ((b as u32) & 0xff) } else { b as u32 };
            (net, IpAddr::V4(ip.into()))
        } else {
            let net = ipnet::IpNet::new(IpAddr::V6(a.into()), len).unwrap();
            let ip = if near { a ^ (b & 0xffff) } else { b };
            (net, IpAddr::V6(ip.into()))
        };
        prop_assert_eq!(Net::from(&net).contains(ip), net.contains(&ip));
        // Never across families.
        let other = if v4 { IpAddr::V6(a.into()) } else { IpAddr::V4((a as u32).into()) };
        prop_assert!(!Net::from(&net).contains(other));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn owners_are_live_eligible_and_able_to_serve(fx in arb_cluster()) {
        let (policies, _) = compile_all(&fx.policies);
        let a = fx.run();
        for r in a.iter() {
            if let Some(owner) = r.owner {
                prop_assert!(fx.live.contains(owner));
                prop_assert!(r.eligible.contains(&owner));
                prop_assert!(!r.interfaces.is_empty());
                // The best live eligible node by score.
                let best = r.eligible.iter().filter(|n| fx.live.contains(**n)).max_by(|x, y| score(x, r.ip).cmp(&score(y, r.ip)).then(y.cmp(x)));
                prop_assert_eq!(best, Some(&owner));
            } else {
                prop_assert!(r.eligible.iter().all(|n| !fx.live.contains(*n)));
            }
            for node in &r.eligible {
                let origins: Vec<&ServiceInfo> = fx.services.iter().filter(|s| r.origins.contains(&s.key)).collect();
                for s in origins.iter().filter(|s| s.etp_local) {
                    prop_assert!(s.local_backend_nodes.contains(*node), "ETP=Local without a backend");
                }
                // Some policy yielding this IP selects the node and has an up matching interface.
                let labels = &fx.nodes[*node];
                let ok = policies.iter().any(|p| {
                    p.selects_node(labels)
                        && origins.iter().any(|s| p.ips_for(s, &selection_labels(s)).any(|i| i == r.ip))
                        && fx.ifaces[*node].iter().any(|i| i.up && p.matches_interface(&i.name))
                });
                prop_assert!(ok, "{} eligible for {} without a policy", node, r.ip);
            }
            // Subnet preference: the owner announces either only on-subnet interfaces or none.
            if let Some(owner) = r.owner {
                let on = |name: &String| fx.ifaces[owner].iter().any(|i| &i.name == name && i.on_subnet_of(r.ip));
                let n_on = r.interfaces.iter().filter(|i| on(i)).count();
                prop_assert!(n_on == 0 || n_on == r.interfaces.len(), "subnet preference");
            }
        }
    }

    #[test]
    fn order_does_not_matter(fx in arb_cluster(), rot in 0usize..7) {
        let mut other = fx.clone();
        other.services.reverse();
        if !other.services.is_empty() {
            let n = other.services.len();
            other.services.rotate_left(rot % n);
        }
        other.policies.reverse();
        prop_assert_eq!(fx.run(), other.run());
    }
}
