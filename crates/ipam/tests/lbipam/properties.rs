//! Properties over random sequences of pool and Service events in a small address space (so that
//! pools overlap, fill up and conflict often):
//! - no address is in two Services' ingress unless they may share it;
//! - every address a Service shows lies in a pool that exists and selects it, and every address it
//!   newly got lies in an enabled, non-conflicting pool;
//! - feeding a fresh controller the resulting objects, in any order, changes nothing;
//! - (from the fixture) the bookkeeping is consistent and feeding a written status back is a no-op.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use api::types::{IpBlock, LbIpPool, Service};
use ipam::addr::IpRange;
use proptest::prelude::*;

use crate::fixture::*;

#[derive(Clone, Debug)]
enum Block {
    Cidr(u8, u8),
    StartStop(u8, u8),
    V6(u8),
}

#[derive(Clone, Debug)]
enum Op {
    Pool { name: usize, blocks: Vec<Block>, color: Option<usize>, disabled: bool, no_edges: bool, later: bool },
    DeletePool(usize),
    Svc(SvcSpec),
    DeleteSvc(usize, usize),
}

#[derive(Clone, Debug)]
struct SvcSpec {
    name: usize,
    ns: usize,
    color: usize,
    lb: bool,
    request: Vec<u8>,
    key: Option<usize>,
    ports: Vec<(i64, bool)>,
    families: usize,
    local: bool,
    cross: bool,
}

const COLORS: [&str; 2] = ["red", "blue"];
const NAMESPACES: [&str; 2] = ["default", "other"];

fn block() -> impl Strategy<Value = Block> {
    prop_oneof![
        (0u8..16, 28u8..=32).prop_map(|(a, l)| Block::Cidr(a, l)),
        (0u8..16, 0u8..16).prop_map(|(a, b)| Block::StartStop(a.min(b), a.max(b))),
        (0u8..16).prop_map(Block::V6),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let svc = (
        (0usize..6, 0usize..2, 0usize..2, prop::bool::weighted(0.9)),
        prop::collection::vec(0u8..18, 0..3),
        prop::option::of(0usize..2),
        prop::collection::vec((80i64..83, any::<bool>()), 0..3),
        (0usize..4, prop::bool::weighted(0.2), prop::bool::weighted(0.3)),
    )
        .prop_map(|((name, ns, color, lb), request, key, ports, (families, local, cross))| {
            Op::Svc(SvcSpec { name, ns, color, lb, request, key, ports, families, local, cross })
        });
    let pool = (
        0usize..3,
        prop::collection::vec(block(), 1..3),
        prop::option::of(0usize..2),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.3),
        any::<bool>(),
    )
        .prop_map(|(name, blocks, color, disabled, no_edges, later)| Op::Pool {
            name,
            blocks,
            color,
            disabled,
            no_edges,
            later,
        });
    prop_oneof![
        3 => pool,
        1 => (0usize..3).prop_map(Op::DeletePool),
        8 => svc,
        2 => (0usize..6, 0usize..2).prop_map(|(n, ns)| Op::DeleteSvc(n, ns)),
    ]
}

fn v4(last: u8) -> String {
    format!("10.0.0.{last}")
}

fn build_pool(
    name: usize,
    blocks: &[Block],
    color: Option<usize>,
    disabled: bool,
    no_edges: bool,
    later: bool,
) -> LbIpPool {
    let mut p = pool(&format!("pool-{name}"), &[]);
    p.spec.blocks = blocks
        .iter()
        .map(|b| match b {
            Block::Cidr(a, l) => IpBlock { cidr: Some(format!("{}/{l}", v4(*a))), ..Default::default() },
            Block::StartStop(a, b) => IpBlock { start: Some(v4(*a)), stop: Some(v4(*b)), ..Default::default() },
            Block::V6(a) => IpBlock { cidr: Some(format!("ff::{a:x}/126")), ..Default::default() },
        })
        .collect();
    p.spec.service_selector = color.and_then(|c| selector(&[("color", COLORS[c])]));
    p.spec.disabled = disabled;
    p.spec.allow_first_last_ips = no_edges.then(|| "No".to_string());
    if later {
        p.metadata.creation_timestamp = Some("2022-10-16T12:00:01Z".into());
    }
    p
}

fn build_svc(s: &SvcSpec) -> Service {
    let mut svc = label(in_ns(svc(&format!("svc-{}", s.name)), NAMESPACES[s.ns]), "color", COLORS[s.color]);
    if !s.lb {
        svc.spec.type_ = Some("ClusterIP".into());
    }
    if !s.request.is_empty() {
        let ips: Vec<String> =
            s.request.iter().map(|&i| if i < 16 { v4(i) } else { format!("ff::{:x}", i - 16) }).collect();
        svc = annotate(svc, "lbipam.cilium.io/ips", &ips.join(","));
    }
    if let Some(k) = s.key {
        svc = annotate(svc, "lbipam.cilium.io/sharing-key", &format!("key-{k}"));
    }
    if s.cross {
        svc = annotate(svc, "lbipam.cilium.io/sharing-cross-namespace", "*");
    }
    let mut seen = BTreeSet::new();
    svc.spec.ports = s
        .ports
        .iter()
        .filter(|(p, udp)| seen.insert((*p, *udp)))
        .map(|(p, udp)| port(*p, if *udp { "UDP" } else { "TCP" }))
        .collect();
    let (policy, fams): (Option<&str>, &[&str]) = match s.families {
        0 => (None, &[]),
        1 => (Some("SingleStack"), &["IPv6"]),
        2 => (Some("PreferDualStack"), &["IPv4", "IPv6"]),
        _ => (Some("RequireDualStack"), &["IPv6", "IPv4"]),
    };
    svc.spec.ip_family_policy = policy.map(str::to_string);
    svc.spec.ip_families = fams.iter().map(|f| f.to_string()).collect();
    if s.local {
        svc.spec.external_traffic_policy = Some("Local".into());
        svc.spec.selector = Some([("app".to_string(), "web".to_string())].into());
    }
    svc
}

/// The sharing rules, restated independently of the controller.
fn may_share(a: &Service, b: &Service) -> bool {
    let ann = |s: &Service, k: &str| s.metadata.annotations.get(k).cloned();
    let key = ann(a, "lbipam.cilium.io/sharing-key");
    if key.is_none() || key != ann(b, "lbipam.cilium.io/sharing-key") {
        return false;
    }
    let cross = |s: &Service| ann(s, "lbipam.cilium.io/sharing-cross-namespace").as_deref() == Some("*");
    if a.metadata.namespace != b.metadata.namespace && !(cross(a) && cross(b)) {
        return false;
    }
    if a.spec.ports.iter().any(|p| b.spec.ports.iter().any(|q| p.port == q.port && p.protocol() == q.protocol())) {
        return false;
    }
    let etp = |s: &Service| s.spec.external_traffic_policy.clone().unwrap_or_else(|| "Cluster".into());
    etp(a) == etp(b) && (etp(a) != "Local" || (a.spec.selector.is_some() && a.spec.selector == b.spec.selector))
}

fn selects(p: &LbIpPool, s: &Service) -> bool {
    match &p.spec.service_selector {
        None => true,
        Some(sel) => sel.match_labels.iter().all(|(k, v)| s.metadata.labels.get(k) == Some(v)),
    }
}

fn pool_ranges(p: &LbIpPool) -> Vec<IpRange> {
    p.spec
        .blocks
        .iter()
        .filter_map(|b| match &b.cidr {
            Some(c) => IpRange::from_cidr(c).ok(),
            None => IpRange::from_start_stop(b.start.as_deref()?, b.stop.as_deref()).ok(),
        })
        .collect()
}

fn ingress(s: &Service) -> Vec<IpAddr> {
    s.status.load_balancer.ingress.iter().filter_map(|i| i.ip.as_deref()?.parse().ok()).collect()
}

fn check(c: &Cluster, before: &BTreeMap<(String, String), Vec<IpAddr>>) -> Result<(), TestCaseError> {
    let services: Vec<&Service> = c.services.values().collect();
    let mut holders: BTreeMap<IpAddr, Vec<&Service>> = BTreeMap::new();
    for s in &services {
        if s.type_() != "LoadBalancer" {
            prop_assert!(ingress(s).is_empty(), "{} is not a LoadBalancer but has ingress", s.metadata.name);
        }
        for ip in ingress(s) {
            holders.entry(ip).or_default().push(s);
        }
    }
    for (ip, list) in &holders {
        for (i, a) in list.iter().enumerate() {
            for b in &list[i + 1..] {
                prop_assert!(
                    may_share(a, b),
                    "{ip} held by {} and {} which may not share",
                    a.metadata.name,
                    b.metadata.name
                );
            }
        }
    }
    for s in &services {
        let key = (s.metadata.namespace.clone().unwrap(), s.metadata.name.clone());
        let old = before.get(&key).cloned().unwrap_or_default();
        for ip in ingress(s) {
            let containing: Vec<&LbIpPool> =
                c.pools.values().filter(|p| selects(p, s) && pool_ranges(p).iter().any(|r| r.contains(ip))).collect();
            prop_assert!(!containing.is_empty(), "{ip} of {} is in no pool that selects it", s.metadata.name);
            if !old.contains(&ip) {
                let usable = containing
                    .iter()
                    .any(|p| !p.spec.disabled && c.conflicting(&p.metadata.name).as_deref() == Some("False"));
                prop_assert!(usable, "{ip} newly given to {} from a disabled or conflicting pool", s.metadata.name);
            }
        }
    }
    Ok(())
}

fn run(ops: &[Op], shuffle_seed: u64) -> Result<(), TestCaseError> {
    let mut c = Cluster::dual();
    for op in ops {
        let before: BTreeMap<(String, String), Vec<IpAddr>> =
            c.services.iter().map(|(k, s)| (k.clone(), ingress(s))).collect();
        match op {
            Op::Pool { name, blocks, color, disabled, no_edges, later } => {
                c.apply_pool(build_pool(*name, blocks, *color, *disabled, *no_edges, *later))
            }
            Op::DeletePool(name) => c.delete_pool(&format!("pool-{name}")),
            Op::Svc(spec) => c.apply_svc(build_svc(spec)),
            Op::DeleteSvc(name, ns) => c.delete_svc(NAMESPACES[*ns], &format!("svc-{name}")),
        }
        check(&c, &before)?;
    }

    // Restart: the same objects in a scrambled order give the same result, with nothing to write.
    let mut pools: Vec<LbIpPool> = c.pools.values().cloned().collect();
    let mut services: Vec<Service> = c.services.values().cloned().collect();
    let rotate = |n: usize| if n == 0 { 0 } else { (shuffle_seed as usize) % n };
    let (np, ns) = (rotate(pools.len()), rotate(services.len()));
    pools.rotate_left(np);
    services.rotate_left(ns);
    if shuffle_seed % 2 == 1 {
        services.reverse();
    }
    let mut fresh = ipam::LbIpam::new(config_dual());
    let updates = fresh.initial_sync(&pools, &services);
    fresh.check_consistency().map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(updates.is_empty(), "restart changed {updates:#?}");
    for s in &services {
        let ns = s.metadata.namespace.as_deref().unwrap();
        let mut held = fresh.service_ips(ns, &s.metadata.name);
        let mut shown = ingress(s);
        held.sort();
        shown.sort();
        if s.type_() == "LoadBalancer" && !c.pools.is_empty() {
            prop_assert_eq!(held, shown, "{} after restart", s.metadata.name);
        }
    }
    Ok(())
}

proptest! {
    // 256 cases unless PROPTEST_CASES says otherwise.
    #![proptest_config(ProptestConfig { max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_event_sequences(ops in prop::collection::vec(op(), 1..40), seed in any::<u64>()) {
        run(&ops, seed)?;
    }
}
