//! Cilium's LB-IPAM test catalogue (spec §7), ported as behaviour scenarios; numbers refer to the
//! spec's list. Pool A is 10.0.10.0/24 and Services live in `default` unless stated otherwise.

use std::net::IpAddr;

use api::LabelSelectorRequirement;
use api::types::{IpBlock, LbIpPool, Service};
use ipam::lbipam::DefaultLbServiceIpam;
use ipam::{LbIpam, LbIpamConfig};

use crate::fixture::*;

fn families(mut s: Service, policy: Option<&str>, fams: &[&str]) -> Service {
    s.spec.ip_family_policy = policy.map(str::to_string);
    s.spec.ip_families = fams.iter().map(|f| f.to_string()).collect();
    s
}

fn with_ports(mut s: Service, ports: &[(i64, &str)]) -> Service {
    s.spec.ports = ports.iter().map(|(p, proto)| port(*p, proto)).collect();
    s
}

fn lb_ip(mut s: Service, ip: &str) -> Service {
    s.spec.load_balancer_ip = Some(ip.into());
    s
}

fn created_at(mut p: LbIpPool, t: &str) -> LbIpPool {
    p.metadata.creation_timestamp = Some(t.into());
    p
}

fn in_range(ip: IpAddr, cidr: &str) -> bool {
    ipam::addr::IpRange::from_cidr(cidr).unwrap().contains(ip)
}

fn pool_a() -> LbIpPool {
    pool("pool-a", &["10.0.10.0/24"])
}

/// 1. TestConflictResolution
#[test]
fn newer_overlapping_pool_is_conflicting_in_all_its_ranges() {
    let mut c = Cluster::dual();
    c.apply_pool(pool_a());
    c.apply_pool(created_at(pool("pool-b", &["10.0.10.0/24", "FF::0/48"]), "2022-10-16T12:00:01Z"));
    assert_eq!(c.conflicting("pool-a").as_deref(), Some("False"));
    let cond = c.pool_condition("pool-b", "cilium.io/PoolConflict").unwrap();
    assert_eq!((cond.status.as_str(), cond.reason.as_str()), ("True", "cidr_overlap"));
    assert_eq!(
        cond.message,
        "Pool conflicts since range '10.0.10.0 - 10.0.10.255' overlaps range '10.0.10.0 - 10.0.10.255' from IP Pool 'pool-a'"
    );
    // Even the non-overlapping IPv6 range hands out nothing.
    c.apply_svc(families(svc("v6"), Some("SingleStack"), &["IPv6"]));
    assert!(c.ingress("v6").is_empty());
    assert_eq!(c.satisfied("v6"), ("False".into(), "no_pool".into()));

    // Phase 2: only the IPv6 block is left, the conflict clears and the waiting Service is served.
    let mut b = c.pools["pool-b"].clone();
    b.spec.blocks = vec![IpBlock { cidr: Some("FF::0/48".into()), ..Default::default() }];
    c.apply_pool(b);
    let cond = c.pool_condition("pool-b", "cilium.io/PoolConflict").unwrap();
    assert_eq!((cond.status.as_str(), cond.reason.as_str(), cond.message.as_str()), ("False", "resolved", ""));
    assert_eq!(c.ingress("v6"), [ip("ff::")]);
}

/// 2. TestPoolInternalConflict
#[test]
fn pool_overlapping_itself_is_conflicting() {
    let mut c = Cluster::v4();
    c.apply_pool(pool("pool-a", &["10.0.10.0/24", "10.0.10.64/28"]));
    let cond = c.pool_condition("pool-a", "cilium.io/PoolConflict").unwrap();
    assert_eq!(cond.status, "True");
    assert_eq!(
        cond.message,
        "Pool conflicts since range '10.0.10.0 - 10.0.10.255' overlaps range '10.0.10.64 - 10.0.10.79' from IP Pool 'pool-a'"
    );
    assert_eq!(c.ipam.is_conflicting("pool-a"), Some(true));
    c.apply_pool(pool_a());
    assert_eq!(c.conflicting("pool-a").as_deref(), Some("False"));
    assert_eq!(c.ipam.is_conflicting("pool-a"), Some(false));
}

/// 3. TestAllocHappyPath
#[test]
fn family_switches_move_the_address() {
    let mut c = Cluster::dual();
    c.apply_pool(pool("pool-a", &["10.0.10.0/24", "FF::0/48"]));
    c.apply_svc(families(svc("a"), Some("SingleStack"), &["IPv4"]));
    assert_eq!(c.ingress("a"), [ip("10.0.10.0")]);
    assert_eq!(c.get("a").status.conditions.len(), 1);
    assert_eq!(c.satisfied("a"), ("True".into(), "satisfied".into()));

    c.apply_svc(families(c.edit("a"), Some("SingleStack"), &["IPv6"]));
    assert_eq!(c.ingress("a"), [ip("ff::")]);
    c.apply_svc(families(c.edit("a"), Some("SingleStack"), &["IPv4"]));
    assert_eq!(c.ingress("a"), [ip("10.0.10.0")]);
    assert_eq!(c.get("a").status.conditions.len(), 1);

    c.apply_svc(families(c.edit("a"), Some("PreferDualStack"), &["IPv4", "IPv6"]));
    assert_eq!(c.ingress("a"), [ip("10.0.10.0"), ip("ff::")]);
}

fn keyed(name: &str, key: &str, ports: &[(i64, &str)]) -> Service {
    annotate(with_ports(svc(name), ports), "io.cilium/lb-ipam-sharing-key", key)
}

/// 4. TestSharedServiceUpdatedSharingKey
#[test]
fn changing_the_sharing_key_unshares() {
    let mut c = Cluster::v4();
    c.apply_pool(pool_a());
    c.apply_svc(keyed("a", "key-1", &[(80, "TCP")]));
    c.apply_svc(keyed("b", "key-1", &[(81, "TCP")]));
    assert_eq!(c.ingress("a"), c.ingress("b"));
    assert_eq!(c.ingress("a").len(), 1);

    c.apply_svc(annotate(c.edit("b"), "io.cilium/lb-ipam-sharing-key", "key-2"));
    assert_eq!(c.ingress("b").len(), 1);
    assert_ne!(c.ingress("a"), c.ingress("b"));
}

/// 5. TestSharedServiceUpdatedPorts
#[test]
fn a_port_clash_unshares() {
    let mut c = Cluster::v4();
    c.apply_pool(pool_a());
    c.apply_svc(keyed("a", "key-1", &[(80, "TCP")]));
    c.apply_svc(keyed("b", "key-1", &[(81, "TCP")]));
    assert_eq!(c.ingress("a"), c.ingress("b"));
    c.apply_svc(with_ports(c.edit("b"), &[(80, "TCP")]));
    assert_eq!(c.ingress("b").len(), 1);
    assert_ne!(c.ingress("a"), c.ingress("b"));
}

/// 6. TestSharedServiceSamePortWithDifferentProtocols (always protocol-aware, as Cilium v1.19+)
#[test]
fn same_port_different_protocol_shares() {
    let mut c = Cluster::v4();
    c.apply_pool(pool_a());
    c.apply_svc(keyed("a", "key-1", &[(80, "TCP")]));
    c.apply_svc(keyed("b", "key-1", &[(80, "UDP")]));
    assert_eq!(c.ingress("a"), c.ingress("b"));
}

/// 7. TestSharingKey
#[test]
fn sharing_key_lifecycle() {
    let mut c = Cluster::dual();
    c.apply_pool(pool("pool-a", &["10.0.10.0/24", "FF::0/48"]));
    let v4 = |s| families(s, Some("SingleStack"), &["IPv4"]);
    c.apply_svc(v4(keyed("a", "key-a", &[])));
    c.apply_svc(v4(keyed("b", "key-a", &[])));
    c.apply_svc(v4(keyed("c", "key-b", &[(80, "TCP")])));
    let ab = c.ingress("a");
    assert_eq!(ab, c.ingress("b"));
    assert_ne!(ab, c.ingress("c"));
    assert_eq!(c.counts("pool-a").2, "2");

    c.delete_svc("default", "a");
    assert_eq!(c.counts("pool-a").2, "2", "b still holds it");
    c.delete_svc("default", "b");
    assert_eq!(c.counts("pool-a").2, "1", "freed with the last sharer");

    let c_ip = c.ingress("c");
    c.apply_svc(v4(keyed("a", "key-b", &[(80, "TCP")])));
    assert_eq!(c.ingress("a").len(), 1);
    assert_ne!(c.ingress("a"), c_ip);
    // B joins the first compatible address of key-b: C's.
    c.apply_svc(v4(keyed("b", "key-b", &[(81, "TCP")])));
    assert_eq!(c.ingress("b"), c_ip);

    c.delete_svc("default", "c");
    assert_eq!(c.ingress("b"), c_ip);
    assert_eq!(c.counts("pool-a").2, "2");
    c.delete_svc("default", "b");
    assert_eq!(c.counts("pool-a").2, "1");
}

/// 9. TestSharingCrossNamespace
#[test]
fn cross_namespace_sharing_needs_both_sides() {
    let mut c = Cluster::v4();
    c.apply_pool(pool_a());
    let a = annotate(in_ns(keyed("a", "key-a", &[]), "ns-a"), "lbipam.cilium.io/sharing-cross-namespace", "ns-b");
    let b = annotate(in_ns(keyed("b", "key-a", &[]), "ns-b"), "lbipam.cilium.io/sharing-cross-namespace", "*");
    let cc = in_ns(keyed("c", "key-a", &[(80, "TCP")]), "ns-c");
    c.apply_svc(a);
    c.apply_svc(b);
    c.apply_svc(cc);
    assert_eq!(c.ingress_in("ns-a", "a"), c.ingress_in("ns-b", "b"));
    assert_eq!(c.ingress_in("ns-c", "c").len(), 1);
    assert_ne!(c.ingress_in("ns-c", "c"), c.ingress_in("ns-a", "a"));
    for (ns, name) in [("ns-a", "a"), ("ns-b", "b"), ("ns-c", "c")] {
        c.delete_svc(ns, name);
    }
    assert_eq!(c.counts("pool-a").2, "0");
}

/// Cross-namespace lists are trimmed (Cilium v1.18–v1.19 keep the space and never match).
#[test]
fn cross_namespace_list_with_spaces() {
    let mut c = Cluster::v4();
    c.apply_pool(pool_a());
    let a = annotate(in_ns(keyed("a", "k", &[]), "ns-a"), "lbipam.cilium.io/sharing-cross-namespace", "ns-x, ns-b");
    let b = annotate(in_ns(keyed("b", "k", &[]), "ns-b"), "lbipam.cilium.io/sharing-cross-namespace", "ns-y, ns-a");
    c.apply_svc(a);
    c.apply_svc(b);
    assert_eq!(c.ingress_in("ns-a", "a"), c.ingress_in("ns-b", "b"));
}

/// 10. TestServiceDelete
#[test]
fn deleting_a_service_frees_its_address() {
    let mut c = Cluster::v4();
    c.apply_pool(pool_a());
    assert_eq!(c.counts("pool-a"), ("256".into(), "256".into(), "0".into()));
    c.apply_svc(svc("a"));
    assert_eq!(c.counts("pool-a"), ("256".into(), "255".into(), "1".into()));
    assert_eq!(c.ipam.service_ips("default", "a"), [ip("10.0.10.0")]);
    c.delete_svc("default", "a");
    assert_eq!(c.counts("pool-a"), ("256".into(), "256".into(), "0".into()));
}

/// 11. TestReallocOnInit: a foreign ingress address is replaced.
#[test]
fn foreign_ingress_is_replaced() {
    let mut c = Cluster::v4();
    c.apply_pool(pool_a());
    let mut s = svc("a");
    s.status.load_balancer.ingress =
        vec![api::types::LoadBalancerIngress { ip: Some("192.168.1.12".into()), ..Default::default() }];
    c.apply_svc(s);
    assert_eq!(c.ingress("a"), [ip("10.0.10.0")]);
    assert_eq!(c.get("a").status.conditions.len(), 1);
    assert_eq!(c.satisfied("a").0, "True");
}

/// TestAllocOnInit / TestAllocSharedOnInit: addresses in the status are kept, shared ones too.
#[test]
fn ingress_addresses_are_imported() {
    let mut c = Cluster::v4();
    c.apply_pool(pool_a());
    let with_ingress = |mut s: Service, addr: &str| {
        s.status.load_balancer.ingress = vec![api::types::LoadBalancerIngress {
            ip: Some(addr.into()),
            hostname: Some("kept.example".into()),
            ..Default::default()
        }];
        s
    };
    c.apply_svc(with_ingress(svc("a"), "10.0.10.77"));
    assert_eq!(c.ingress("a"), [ip("10.0.10.77")]);
    assert_eq!(c.get("a").status.load_balancer.ingress[0].hostname.as_deref(), Some("kept.example"));
    c.apply_svc(with_ingress(keyed("b", "k", &[(80, "TCP")]), "10.0.10.78"));
    c.apply_svc(with_ingress(keyed("c", "k", &[(81, "TCP")]), "10.0.10.78"));
    assert_eq!(c.ingress("b"), [ip("10.0.10.78")]);
    assert_eq!(c.ingress("c"), [ip("10.0.10.78")]);
    // Without a sharing key, an address someone holds is not imported.
    c.apply_svc(with_ingress(svc("d"), "10.0.10.77"));
    assert_eq!(c.ingress("d"), [ip("10.0.10.0")]);
}

/// 14. TestPoolSelectorBasic
#[test]
fn pool_selector_basic() {
    let mut c = Cluster::v4();
    let mut p = pool_a();
    p.spec.service_selector = selector(&[("color", "red")]);
    c.apply_pool(p);
    c.apply_svc(label(svc("red"), "color", "red"));
    c.apply_svc(label(svc("blue"), "color", "blue"));
    assert_eq!(c.ingress("red").len(), 1);
    assert_eq!(c.satisfied("red").0, "True");
    assert!(c.ingress("blue").is_empty());
    assert_eq!(c.satisfied("blue"), ("False".into(), "no_pool".into()));
    assert_eq!(
        c.condition("blue").unwrap().message,
        "There are no enabled CiliumLoadBalancerIPPools that match this service"
    );
}

/// 15. TestPoolSelectorNamespace
#[test]
fn namespace_label_cannot_be_spoofed() {
    let mut c = Cluster::v4();
    let mut p = pool_a();
    p.spec.service_selector = selector(&[("io.kubernetes.service.namespace", "tenant-one")]);
    c.apply_pool(p);
    c.apply_svc(in_ns(svc("one"), "tenant-one"));
    c.apply_svc(label(in_ns(svc("two"), "tenant-two"), "io.kubernetes.service.namespace", "tenant-one"));
    assert_eq!(c.ingress_in("tenant-one", "one").len(), 1);
    assert!(c.ingress_in("tenant-two", "two").is_empty());
    assert_eq!(c.condition_in("tenant-two", "two").unwrap().status, "False");
}

/// 16. TestChangeServiceType
#[test]
fn leaving_load_balancer_clears_everything() {
    let mut c = Cluster::v4();
    c.apply_pool(pool_a());
    let mut s = svc("a");
    s.spec.type_ = Some("ClusterIP".into());
    c.apply_svc(s);
    assert!(c.ingress("a").is_empty());
    assert!(c.condition("a").is_none());

    let mut s = c.edit("a");
    s.spec.type_ = Some("LoadBalancer".into());
    c.apply_svc(s);
    assert_eq!(c.ingress("a").len(), 1);
    assert_eq!(c.satisfied("a").0, "True");

    let mut s = c.edit("a");
    s.spec.type_ = Some("NodePort".into());
    s.status
        .load_balancer
        .ingress
        .push(api::types::LoadBalancerIngress { hostname: Some("other".into()), ..Default::default() });
    c.apply_svc(s);
    assert!(c.get("a").status.load_balancer.ingress.is_empty(), "all ingress entries go");
    assert!(c.get("a").status.conditions.is_empty());
    assert_eq!(c.counts("pool-a").2, "0");
}

fn slash30(allow: &str) -> LbIpPool {
    let mut p = pool("pool-a", &["10.0.10.16/30"]);
    p.spec.allow_first_last_ips = Some(allow.into());
    p
}

/// 17. TestAllowFirstLastIPs
#[test]
fn first_address_allowed_by_default() {
    let mut c = Cluster::v4();
    c.apply_pool(slash30("Yes"));
    c.apply_svc(lb_ip(svc("a"), "10.0.10.16"));
    assert_eq!(c.ingress("a"), [ip("10.0.10.16")]);
    assert_eq!(c.satisfied("a").0, "True");
}

/// 18. TestUpdateAllowFirstAndLastIPs
#[test]
fn reserved_first_address_is_granted_once_allowed() {
    let mut c = Cluster::v4();
    c.apply_pool(slash30("No"));
    assert_eq!(c.counts("pool-a"), ("4".into(), "2".into(), "2".into()));
    c.apply_svc(lb_ip(svc("a"), "10.0.10.16"));
    assert!(c.ingress("a").is_empty());
    assert_eq!(c.satisfied("a"), ("False".into(), "already_allocated".into()));
    c.apply_pool(slash30("Yes"));
    assert_eq!(c.ingress("a"), [ip("10.0.10.16")]);
    assert_eq!(c.satisfied("a").0, "True");
    assert_eq!(c.counts("pool-a"), ("4".into(), "3".into(), "1".into()));

    // Back to No: the held address stays with its Service (Cilium frees it under it), the free
    // edge is reserved again, and the held one is reserved once released.
    c.apply_pool(slash30("No"));
    assert_eq!(c.ingress("a"), [ip("10.0.10.16")]);
    assert_eq!(c.counts("pool-a"), ("4".into(), "2".into(), "2".into()));
    c.delete_svc("default", "a");
    assert_eq!(c.counts("pool-a"), ("4".into(), "2".into(), "2".into()));
    c.apply_svc(svc("b"));
    c.apply_svc(svc("c"));
    c.apply_svc(svc("d"));
    assert_eq!(c.ingress("b"), [ip("10.0.10.17")]);
    assert_eq!(c.ingress("c"), [ip("10.0.10.18")]);
    assert_eq!(c.satisfied("d"), ("False".into(), "out_of_ips".into()));
}

/// §5.2: a reserved address with a sharing key is denied too (v1.18 granted it, main panicked).
#[test]
fn reserved_address_with_sharing_key_is_denied() {
    let mut c = Cluster::v4();
    c.apply_pool(slash30("No"));
    c.apply_svc(lb_ip(keyed("a", "k", &[(80, "TCP")]), "10.0.10.19"));
    assert!(c.ingress("a").is_empty());
    assert_eq!(c.satisfied("a"), ("False".into(), "already_allocated".into()));
}

/// 19. TestRequestIPs
#[test]
fn requested_addresses() {
    let mut c = Cluster::v4();
    c.apply_pool(pool_a());
    c.apply_svc(lb_ip(svc("a"), "10.0.10.20"));
    assert_eq!(c.ingress("a"), [ip("10.0.10.20")]);
    c.apply_svc(annotate(lb_ip(svc("b"), "10.0.10.21"), "io.cilium/lb-ipam-ips", "10.0.10.22,10.0.10.23"));
    assert_eq!(c.ingress("b"), [ip("10.0.10.21"), ip("10.0.10.22"), ip("10.0.10.23")]);
    c.apply_svc(lb_ip(svc("c"), "10.0.10.21"));
    assert!(c.ingress("c").is_empty());
    let cond = c.condition("c").unwrap();
    assert_eq!(cond.reason, "already_allocated");
    assert_eq!(cond.message, "The IP '10.0.10.21' is already allocated to another service");
    // Freed addresses go to the Service waiting for them.
    c.delete_svc("default", "b");
    assert_eq!(c.ingress("c"), [ip("10.0.10.21")]);
    assert_eq!(c.satisfied("c").0, "True");
}

/// 21. TestAddPool
#[test]
fn adding_a_pool_serves_waiting_requests() {
    let mut c = Cluster::v4();
    c.apply_pool(pool_a());
    c.apply_svc(lb_ip(svc("a"), "10.0.20.10"));
    assert!(c.ingress("a").is_empty());
    let cond = c.condition("a").unwrap();
    assert_eq!(
        (cond.reason.as_str(), cond.message.as_str()),
        ("no_pool", "No pool exists with a CIDR containing '10.0.20.10'")
    );
    c.apply_pool(pool("pool-b", &["10.0.20.0/24"]));
    assert_eq!(c.ingress("a"), [ip("10.0.20.10")]);
}

/// 22. TestAddRange
#[test]
fn adding_a_range_serves_waiting_requests() {
    let mut c = Cluster::v4();
    c.apply_pool(pool_a());
    c.apply_svc(lb_ip(svc("a"), "10.0.20.10"));
    assert!(c.ingress("a").is_empty());
    c.apply_pool(pool("pool-a", &["10.0.10.0/24", "10.0.20.0/24"]));
    assert_eq!(c.ingress("a"), [ip("10.0.20.10")]);
}

/// 23. TestDisablePool
#[test]
fn disabled_pool_keeps_but_does_not_give() {
    let mut c = Cluster::v4();
    c.apply_pool(pool_a());
    c.apply_svc(svc("a"));
    let mut p = pool_a();
    p.spec.disabled = true;
    c.apply_pool(p.clone());
    c.apply_svc(svc("b"));
    assert_eq!(c.ingress("a"), [ip("10.0.10.0")]);
    assert!(c.ingress("b").is_empty());
    assert_eq!(c.satisfied("b"), ("False".into(), "no_pool".into()));
    c.apply_svc(lb_ip(svc("s"), "10.0.10.9"));
    assert_eq!(c.satisfied("s"), ("False".into(), "no_pool".into()));

    // Disabled pools keep their Services across a restart (Cilium loses them).
    let (fresh, updates) = c.restart(config_v4());
    assert!(updates.is_empty(), "{updates:#?}");
    assert_eq!(fresh.service_ips("default", "a"), [ip("10.0.10.0")]);

    p.spec.disabled = false;
    c.apply_pool(p);
    assert_eq!(c.ingress("b"), [ip("10.0.10.1")]);
    assert_eq!(c.ingress("s"), [ip("10.0.10.9")]);
}

/// 24. TestPoolDelete
#[test]
fn deleting_a_pool_moves_its_services() {
    let mut c = Cluster::v4();
    c.apply_pool(pool("pool-a", &["10.0.10.0/24", "10.1.10.0/24"]));
    c.apply_pool(pool("pool-b", &["10.0.20.0/24", "10.1.20.0/24"]));
    c.apply_svc(svc("a"));
    assert_eq!(c.ingress("a"), [ip("10.0.10.0")]);
    c.delete_pool("pool-a");
    assert_eq!(c.ingress("a"), [ip("10.0.20.0")]);
    assert_eq!(c.counts("pool-b").2, "1");
}

/// 25. TestRangeDelete
#[test]
fn removing_a_range_moves_its_services() {
    let mut c = Cluster::v4();
    c.apply_pool(pool_a());
    c.apply_svc(svc("a"));
    let before = c.ingress("a");
    c.apply_pool(pool("pool-a", &["10.0.10.0/24", "10.0.20.0/24"]));
    assert_eq!(c.ingress("a"), before);
    c.apply_pool(pool("pool-a", &["10.0.20.0/24"]));
    assert_eq!(c.ingress("a").len(), 1);
    assert!(in_range(c.ingress("a")[0], "10.0.20.0/24"));
}

/// 27. TestRemoveServiceLabel
#[test]
fn relabelled_service_loses_its_address() {
    let mut c = Cluster::v4();
    let mut p = pool_a();
    p.spec.service_selector = selector(&[("color", "blue")]);
    c.apply_pool(p);
    c.apply_svc(label(svc("a"), "color", "blue"));
    assert_eq!(c.ingress("a").len(), 1);
    c.apply_svc(label(c.edit("a"), "color", "green"));
    assert!(c.ingress("a").is_empty());
    assert_eq!(c.satisfied("a"), ("False".into(), "no_pool".into()));
    assert_eq!(c.counts("pool-a").2, "0");
}

/// 28. TestRequestIPWithMismatchedLabel
#[test]
fn requested_address_from_a_pool_that_does_not_select() {
    let mut c = Cluster::v4();
    let mut p = pool_a();
    p.spec.service_selector = selector(&[("color", "blue")]);
    c.apply_pool(p);
    c.apply_svc(lb_ip(label(svc("a"), "color", "red"), "10.0.10.123"));
    let cond = c.condition("a").unwrap();
    assert_eq!(cond.reason, "pool_selector_mismatch");
    assert_eq!(cond.message, "The pool with the CIDR containing '10.0.10.123', doesn't select this service");
}

/// 29. TestRemoveRequestedIP
#[test]
fn unrequested_address_is_released() {
    let mut c = Cluster::v4();
    c.apply_pool(pool_a());
    c.apply_svc(annotate(lb_ip(svc("a"), "10.0.10.123"), "io.cilium/lb-ipam-ips", "10.0.10.124,10.0.10.125"));
    assert_eq!(c.ingress("a").len(), 3);
    c.apply_svc(annotate(c.edit("a"), "io.cilium/lb-ipam-ips", "10.0.10.124"));
    assert_eq!(c.ingress("a"), [ip("10.0.10.123"), ip("10.0.10.124")]);
    assert_eq!(c.counts("pool-a").2, "2");
}

/// 30. TestNonMatchingLBClass
#[test]
fn foreign_class_is_ignored() {
    let mut c = Cluster::v4();
    c.apply_pool(pool_a());
    let mut s = svc("a");
    s.spec.load_balancer_class = Some("net.example/some-other-class".into());
    c.apply_svc(s);
    assert!(c.ingress("a").is_empty());
    assert!(c.condition("a").is_none());
    assert!(c.log.iter().all(|u| !matches!(u, ipam::StatusUpdate::Service { .. })));
}

/// 31. TestRequiredLBClass
#[test]
fn class_required_when_not_default() {
    let config = LbIpamConfig {
        default_ipam: DefaultLbServiceIpam::NodeIpam,
        bgp_control_plane: true,
        l2_announcements: false,
        ..config_v4()
    };
    let mut c = Cluster::new(config);
    c.apply_pool(pool_a());
    c.apply_svc(svc("a"));
    assert!(c.ingress("a").is_empty());
    assert!(c.condition("a").is_none());
    let mut s = c.edit("a");
    s.spec.load_balancer_class = Some("io.cilium/l2-announcer".into());
    c.apply_svc(s);
    assert!(c.ingress("a").is_empty(), "L2 announcements are off");
    let mut s = c.edit("a");
    s.spec.load_balancer_class = Some("io.cilium/bgp-control-plane".into());
    c.apply_svc(s);
    assert_eq!(c.ingress("a").len(), 1);
}

/// 32. TestChangePoolSelector
#[test]
fn pool_selector_change_releases() {
    let mut c = Cluster::v4();
    let mut p = pool_a();
    p.spec.service_selector = selector(&[("color", "red")]);
    c.apply_pool(p.clone());
    c.apply_svc(label(svc("a"), "color", "red"));
    assert_eq!(c.ingress("a").len(), 1);
    p.spec.service_selector = selector(&[("color", "green")]);
    c.apply_pool(p);
    assert!(c.ingress("a").is_empty());
}

/// 34. TestLBIPAMStartupRestartShutdown: dormant without pools.
#[test]
fn dormant_until_the_first_pool() {
    let mut c = Cluster::v4();
    c.apply_svc(svc("early"));
    assert!(c.log.is_empty(), "no trace of LB-IPAM without pools");
    c.apply_pool(pool("pool-a", &["10.0.0.0/24"]));
    assert_eq!(c.ingress("early"), [ip("10.0.0.0")]);
    c.delete_pool("pool-a");
    assert!(c.ingress("early").is_empty());
    assert_eq!(c.satisfied("early"), ("False".into(), "no_pool".into()));
    let logged = c.log.len();
    c.apply_svc(svc("late"));
    assert_eq!(c.log.len(), logged, "dormant again");
    c.apply_pool(pool("pool-a", &["10.0.0.0/24"]));
    assert_eq!(c.ingress("early"), [ip("10.0.0.0")]);
    assert_eq!(c.ingress("late"), [ip("10.0.0.1")]);
}

/// 36. TestPoolUpdate
#[test]
fn widening_and_reselecting_keep_addresses() {
    let mut c = Cluster::v4();
    let mut p = pool_a();
    p.spec.service_selector = selector(&[("color", "blue")]);
    c.apply_pool(p.clone());
    c.apply_svc(label(svc("blue"), "color", "blue"));
    c.apply_svc(label(svc("red"), "color", "red"));
    let blue = c.ingress("blue");
    assert_eq!(blue.len(), 1);
    assert!(c.ingress("red").is_empty());

    p.spec.blocks = vec![IpBlock { cidr: Some("10.0.10.0/23".into()), ..Default::default() }];
    c.apply_pool(p.clone());
    assert_eq!(c.ingress("blue"), blue);
    assert!(c.ingress("red").is_empty());

    p.spec.blocks = vec![IpBlock { cidr: Some("10.0.10.0/24".into()), ..Default::default() }];
    p.spec.service_selector = Some(api::LabelSelector {
        match_expressions: vec![LabelSelectorRequirement {
            key: "color".into(),
            operator: "In".into(),
            values: vec!["red".into(), "blue".into()],
        }],
        ..Default::default()
    });
    c.apply_pool(p);
    assert_eq!(c.ingress("blue"), blue);
    assert_eq!(c.ingress("red").len(), 1);
}

/// 39. TestPoolShrink
#[test]
fn shrinking_updates_counts() {
    let mut c = Cluster::v4();
    c.apply_pool(pool("pool-a", &["10.0.10.0/24", "10.0.11.0/24"]));
    assert_eq!(c.counts("pool-a"), ("512".into(), "512".into(), "0".into()));
    c.apply_svc(svc("a"));
    assert_eq!(c.counts("pool-a"), ("512".into(), "511".into(), "1".into()));
    c.apply_pool(pool("pool-a", &["10.0.10.0/24"]));
    assert_eq!(c.counts("pool-a"), ("256".into(), "255".into(), "1".into()));
}

/// Widening a full pool: the old Services keep their addresses, the waiting one gets a new one
/// (v1.19 TestPoolExtendWithPendingServices; v1.18.0 reshuffled, issue #40358).
#[test]
fn extending_a_full_pool_with_pending_services() {
    let mut c = Cluster::v4();
    c.apply_pool(pool("pool-a", &["10.0.10.0/31"]));
    for name in ["a", "b", "c"] {
        c.apply_svc(svc(name));
    }
    assert_eq!(c.ingress("a"), [ip("10.0.10.0")]);
    assert_eq!(c.ingress("b"), [ip("10.0.10.1")]);
    assert_eq!(c.satisfied("c"), ("False".into(), "out_of_ips".into()));
    assert_eq!(
        c.condition("c").unwrap().message,
        "All enabled CiliumLoadBalancerIPPools that match this service ran out of allocatable IPs"
    );
    c.apply_pool(pool("pool-a", &["10.0.10.0/30"]));
    assert_eq!(c.ingress("a"), [ip("10.0.10.0")]);
    assert_eq!(c.ingress("b"), [ip("10.0.10.1")]);
    assert_eq!(c.ingress("c"), [ip("10.0.10.2")]);
}

/// Shrinking with pending Services: addresses still in the pool never move (main
/// TestPoolShrinkWithPendingServices; issue #41458).
#[test]
fn shrinking_with_pending_services() {
    let mut c = Cluster::v4();
    c.apply_pool(pool("pool-a", &["10.0.10.0/31", "10.0.20.0/31"]));
    for name in ["a", "b", "c", "d", "e"] {
        c.apply_svc(svc(name));
    }
    assert_eq!(c.ingress("c"), [ip("10.0.20.0")]);
    assert_eq!(c.ingress("d"), [ip("10.0.20.1")]);
    assert!(c.ingress("e").is_empty());
    c.apply_pool(pool("pool-a", &["10.0.20.0/31"]));
    assert_eq!(c.ingress("c"), [ip("10.0.20.0")]);
    assert_eq!(c.ingress("d"), [ip("10.0.20.1")]);
    for name in ["a", "b", "e"] {
        assert!(c.ingress(name).is_empty(), "{name}");
    }
    // The freed block comes back: the longest-waiting Service is served first.
    c.apply_pool(pool("pool-a", &["10.0.20.0/31", "10.0.30.0/32"]));
    let served: Vec<_> = ["a", "b", "e"].into_iter().filter(|n| !c.ingress(n).is_empty()).collect();
    assert_eq!(served, ["e"]);
}

/// 41. TestSharedSpecificIPThenGenericService
#[test]
fn generic_service_joins_a_specific_shared_address() {
    let mut c = Cluster::v4();
    c.apply_pool(pool_a());
    c.apply_svc(lb_ip(keyed("a", "key-1", &[(80, "TCP")]), "10.0.10.22"));
    c.apply_svc(keyed("b", "key-1", &[(81, "TCP")]));
    assert_eq!(c.ingress("a"), [ip("10.0.10.22")]);
    assert_eq!(c.ingress("b"), [ip("10.0.10.22")]);
}

/// 42. TestSharingClusters
#[test]
fn sharing_clusters() {
    let mut c = Cluster::v4();
    c.apply_pool(pool_a());
    for (name, p) in [("a", 80), ("b", 81), ("c", 80), ("d", 81)] {
        c.apply_svc(keyed(name, "key-1", &[(p, "TCP")]));
    }
    assert_eq!(c.ingress("a"), c.ingress("b"));
    assert_eq!(c.ingress("c"), c.ingress("d"));
    assert_ne!(c.ingress("a"), c.ingress("c"));
    assert_eq!(c.counts("pool-a").2, "2");
}

/// TestLBIPAMRestartOnFullPool: a restart with a Service listed before the ones holding addresses
/// does not reshuffle (issues #39033, #43131).
#[test]
fn restart_on_a_full_pool() {
    let mut c = Cluster::v4();
    c.apply_pool(pool("pool-a", &["10.0.10.0/31"]));
    for name in ["b", "c", "a"] {
        c.apply_svc(svc(name));
    }
    assert_eq!(c.satisfied("a").1, "out_of_ips");
    let mut fresh = LbIpam::new(config_v4());
    let services = vec![c.get("a").clone(), c.get("b").clone(), c.get("c").clone()];
    let updates = fresh.initial_sync(&[c.pools["pool-a"].clone()], &services);
    assert!(updates.is_empty(), "{updates:#?}");
    assert_eq!(fresh.service_ips("default", "b"), [ip("10.0.10.0")]);
    assert_eq!(fresh.service_ips("default", "c"), [ip("10.0.10.1")]);
    assert_eq!(fresh.unsatisfied_services(), [("default".to_string(), "a".to_string())]);
}

/// §5.8: settling conflicts before revalidating, an older pool widened over a newer pool's in-use
/// addresses cannot hand them out twice (Cilium can, until a restart).
#[test]
fn widened_older_pool_does_not_duplicate() {
    let mut c = Cluster::v4();
    c.apply_pool(pool("old", &["10.0.10.0/31"]));
    c.apply_pool(created_at(pool("new", &["10.0.20.0/31"]), "2022-10-16T12:00:01Z"));
    for name in ["a", "b", "c", "d"] {
        c.apply_svc(svc(name));
    }
    assert_eq!(c.ingress("c"), [ip("10.0.20.0")]);
    assert_eq!(c.ingress("d"), [ip("10.0.20.1")]);
    c.apply_pool(pool("old", &["10.0.10.0/31", "10.0.20.0/30"]));
    assert_eq!(c.conflicting("new").as_deref(), Some("True"));
    assert_eq!(c.ingress("c"), [ip("10.0.20.0")], "existing allocations of a conflicting pool stay");
    c.apply_svc(svc("e"));
    c.apply_svc(svc("f"));
    c.apply_svc(svc("g"));
    assert_eq!(c.ingress("e"), [ip("10.0.20.2")]);
    assert_eq!(c.ingress("f"), [ip("10.0.20.3")]);
    assert_eq!(c.satisfied("g").1, "out_of_ips");
    c.apply_svc(lb_ip(svc("h"), "10.0.20.1"));
    assert_eq!(c.satisfied("h").1, "already_allocated");
    // Addresses in use count in every pool that contains them.
    assert_eq!(c.counts("old"), ("6".into(), "0".into(), "6".into()));
    assert_eq!(c.counts("new"), ("2".into(), "0".into(), "2".into()));
    // Deleting the holder makes its address available through the older pool.
    c.delete_svc("default", "d");
    assert_eq!(c.ingress("g"), [ip("10.0.20.1")]);
    let (_, updates) = c.restart(config_v4());
    assert!(updates.is_empty(), "{updates:#?}");
}

/// Equal creation times: the name that sorts first wins, whatever the event order.
#[test]
fn conflict_tie_break_is_by_name() {
    for order in [["x", "y"], ["y", "x"]] {
        let mut c = Cluster::v4();
        for name in order {
            c.apply_pool(pool(name, &["10.0.10.0/24"]));
        }
        assert_eq!(c.conflicting("x").as_deref(), Some("False"));
        assert_eq!(c.conflicting("y").as_deref(), Some("True"));
        // Deleting the winner frees the other.
        c.delete_pool("x");
        assert_eq!(c.conflicting("y").as_deref(), Some("False"));
    }
}

/// §5.9 worked examples.
#[test]
fn count_examples() {
    let counts = |blocks: Vec<IpBlock>, allow: Option<&str>| {
        let mut c = Cluster::v4();
        let mut p = pool("p", &[]);
        p.spec.blocks = blocks;
        p.spec.allow_first_last_ips = allow.map(str::to_string);
        c.apply_pool(p);
        c.counts("p")
    };
    let cidr = |s: &str| IpBlock { cidr: Some(s.into()), ..Default::default() };
    let t = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(counts(vec![cidr("10.0.10.0/24")], None), t("256", "256", "0"));
    assert_eq!(counts(vec![cidr("10.0.10.0/24")], Some("No")), t("256", "254", "2"));
    assert_eq!(counts(vec![cidr("10.0.10.0/32")], Some("No")), t("1", "1", "0"));
    assert_eq!(counts(vec![cidr("10.0.10.0/31")], Some("No")), t("2", "2", "0"));
    assert_eq!(counts(vec![cidr("10.0.10.0/30")], Some("No")), t("4", "2", "2"));
    let start_stop =
        IpBlock { start: Some("20.0.20.100".into()), stop: Some("20.0.20.200".into()), ..Default::default() };
    assert_eq!(counts(vec![start_stop.clone()], Some("No")), t("101", "101", "0"));
    assert_eq!(counts(vec![cidr("10.0.10.0/24"), cidr("2004::0/112"), start_stop], None), t("65893", "65893", "0"));
    // A /64 next to a /24, with two Services: the figure of issue #41981.
    let mut c = Cluster::dual();
    c.apply_pool(pool("big", &["2001:db8::/64", "10.0.10.0/24"]));
    c.apply_svc(svc("a"));
    c.apply_svc(families(svc("b"), None, &["IPv6"]));
    assert_eq!(c.counts("big"), t("18446744073709551872", "18446744073709551870", "2"));
}

/// §4.2: a dual-stack Service failing the same way for both families still gets its condition
/// written (Cilium never patches it).
#[test]
fn dual_stack_failure_is_written() {
    let mut c = Cluster::dual();
    let mut p = pool("pool-a", &["10.0.10.0/24", "ff::/120"]);
    p.spec.service_selector = selector(&[("color", "blue")]);
    c.apply_pool(p);
    c.apply_svc(families(svc("a"), Some("RequireDualStack"), &["IPv4", "IPv6"]));
    assert_eq!(c.satisfied("a"), ("False".into(), "no_pool".into()));
}

/// Bad input reaches the controller only if it slipped past validation; it is reported, never a
/// panic.
#[test]
fn malformed_requests_are_reported() {
    let mut c = Cluster::v4();
    c.apply_pool(pool_a());
    c.apply_svc(annotate(svc("typo"), "lbipam.cilium.io/ips", "10.0.10.2455"));
    assert!(c.ingress("typo").is_empty(), "a typo does not become a request for any address");
    let cond = c.condition("typo").unwrap();
    assert_eq!((cond.status.as_str(), cond.reason.as_str()), ("False", "invalid_request"));
    assert_eq!(cond.message, "'10.0.10.2455' in annotation lbipam.cilium.io/ips is not an IP address");

    c.apply_svc(annotate(svc("half"), "lbipam.cilium.io/ips", "10.0.10.7, nope"));
    assert_eq!(c.ingress("half"), [ip("10.0.10.7")]);
    assert_eq!(c.satisfied("half"), ("False".into(), "invalid_request".into()));
    c.apply_svc(annotate(c.edit("half"), "lbipam.cilium.io/ips", "10.0.10.7"));
    assert_eq!(c.satisfied("half"), ("True".into(), "satisfied".into()));

    c.apply_svc(lb_ip(svc("outside"), "172.16.0.1"));
    assert_eq!(c.satisfied("outside"), ("False".into(), "no_pool".into()));
    assert_eq!(c.condition("outside").unwrap().message, "No pool exists with a CIDR containing '172.16.0.1'");

    // Incompatible ports under one key: the second Service is refused the address, with the reason.
    c.apply_svc(lb_ip(keyed("k1", "k", &[(80, "TCP")]), "10.0.10.50"));
    c.apply_svc(lb_ip(keyed("k2", "k", &[(80, "TCP")]), "10.0.10.50"));
    assert_eq!(c.satisfied("k2").1, "already_allocated_incompatible_service");
}

#[test]
fn malformed_pools_are_reported() {
    let mut c = Cluster::v4();
    let mut p = pool("bad", &["10.0.10.0/24", "10.0.11.0/33"]);
    p.spec.blocks.push(IpBlock {
        start: Some("10.0.12.9".into()),
        stop: Some("10.0.12.1".into()),
        ..Default::default()
    });
    p.spec.blocks.push(IpBlock { start: Some("10.0.13.1".into()), stop: Some("::1".into()), ..Default::default() });
    p.spec.blocks.push(IpBlock { stop: Some("10.0.14.1".into()), ..Default::default() });
    c.apply_pool(p);
    let cond = c.pool_condition("bad", "cilium.io/PoolInvalid").unwrap();
    assert_eq!(cond.status, "True");
    assert_eq!(
        cond.message,
        "spec.blocks[1]: cidr '10.0.11.0/33' is not a CIDR (expected address/prefix-length); \
         spec.blocks[2]: start '10.0.12.9' is after stop '10.0.12.1'; \
         spec.blocks[3]: start '10.0.13.1' and stop '::1' are of different address families; \
         spec.blocks[4]: stop '10.0.14.1' without start: start and stop must be in the same block"
    );
    // The valid block still works.
    assert_eq!(c.counts("bad"), ("256".into(), "256".into(), "0".into()));
    c.apply_svc(svc("a"));
    assert_eq!(c.ingress("a"), [ip("10.0.10.0")]);
    // Fixed: the condition goes away.
    c.apply_pool(pool("bad", &["10.0.10.0/24"]));
    assert!(c.pool_condition("bad", "cilium.io/PoolInvalid").is_none());
    assert_eq!(c.ingress("a"), [ip("10.0.10.0")]);

    // An unparsable selector selects nothing.
    let mut p = pool("bad", &["10.0.10.0/24"]);
    p.spec.service_selector = Some(api::LabelSelector {
        match_expressions: vec![LabelSelectorRequirement {
            key: "a".into(),
            operator: "Within".into(),
            values: vec![],
        }],
        ..Default::default()
    });
    c.apply_pool(p);
    assert!(c.ingress("a").is_empty());
    assert!(
        c.pool_condition("bad", "cilium.io/PoolInvalid")
            .unwrap()
            .message
            .starts_with("spec.serviceSelector.matchExpressions[0].operator")
    );
}

/// Pools are tried oldest first; a new pool does not take over.
#[test]
fn oldest_pool_first() {
    let mut c = Cluster::v4();
    c.apply_pool(created_at(pool("zeta", &["10.0.30.0/24"]), "2022-10-16T11:00:00Z"));
    c.apply_pool(pool("alpha", &["10.0.10.0/24"]));
    c.apply_svc(svc("a"));
    assert_eq!(c.ingress("a"), [ip("10.0.30.0")]);
}

/// Restart after a key change by a sole holder: the address stays and remains joinable.
#[test]
fn sole_holder_key_change_keeps_the_address() {
    let mut c = Cluster::v4();
    c.apply_pool(pool_a());
    c.apply_svc(keyed("a", "k1", &[(80, "TCP")]));
    c.apply_svc(annotate(c.edit("a"), "io.cilium/lb-ipam-sharing-key", "k2"));
    assert_eq!(c.ingress("a"), [ip("10.0.10.0")]);
    c.apply_svc(keyed("b", "k1", &[(81, "TCP")]));
    assert_eq!(c.ingress("b"), [ip("10.0.10.1")], "no stale k1 entry to join");
    c.apply_svc(keyed("c", "k2", &[(81, "TCP")]));
    assert_eq!(c.ingress("c"), [ip("10.0.10.0")]);
}

/// §1: Services of another service proxy are invisible.
#[test]
fn other_service_proxies_are_ignored() {
    let mut c = Cluster::v4();
    c.apply_pool(pool_a());
    c.apply_svc(label(svc("a"), "service.kubernetes.io/service-proxy-name", "other-proxy"));
    assert!(c.ingress("a").is_empty());
    assert!(c.condition("a").is_none());
    let mut c = Cluster::new(LbIpamConfig { service_proxy_name: Some("cilia".into()), ..config_v4() });
    c.apply_pool(pool_a());
    c.apply_svc(label(svc("a"), "service.kubernetes.io/service-proxy-name", "cilia"));
    assert_eq!(c.ingress("a").len(), 1);
}
