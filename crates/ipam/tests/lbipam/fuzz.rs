//! Garbage in, no panic out: arbitrary strings in annotations, block fields, selectors, families,
//! types and classes, fed through the parsers and the controller. After every event the bookkeeping
//! must still be consistent.

use std::collections::BTreeMap;

use api::types::{IpBlock, LbIpPool, Service};
use api::{LabelSelector, LabelSelectorRequirement};
use ipam::LbIpam;
use ipam::addr::IpRange;
use ipam::lbipam::annotations;
use proptest::prelude::*;

use crate::fixture::*;

/// Strings that are sometimes nearly right: IPs, CIDRs, lists, and plain noise.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".*",
        "[0-9a-f:./, *-]{0,40}",
        "(10\\.0\\.0\\.[0-9]{1,3}(/[0-9]{1,3})?)",
        "(ff::[0-9a-f]{0,4}(/[0-9]{1,3})?)",
        "((10\\.0\\.0\\.[0-9]{1,2}|ff::[0-9]|x) ?, ?){0,4}",
        Just(String::new()),
    ]
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of(text())
}

fn garbage_pool() -> impl Strategy<Value = LbIpPool> {
    (
        0usize..3,
        prop::collection::vec((opt_text(), opt_text(), opt_text()), 0..4),
        opt_text(),
        prop::option::of((text(), text(), prop::collection::vec(text(), 0..3))),
        any::<bool>(),
        opt_text(),
    )
        .prop_map(|(name, blocks, allow, sel, disabled, created)| {
            let mut p = pool(&format!("pool-{name}"), &[]);
            p.spec.blocks = blocks.into_iter().map(|(cidr, start, stop)| IpBlock { cidr, start, stop }).collect();
            p.spec.allow_first_last_ips = allow;
            p.spec.service_selector = sel.map(|(key, operator, values)| LabelSelector {
                match_labels: BTreeMap::new(),
                match_expressions: vec![LabelSelectorRequirement { key, operator, values }],
            });
            p.spec.disabled = disabled;
            p.metadata.creation_timestamp = created;
            p
        })
}

fn garbage_service() -> impl Strategy<Value = Service> {
    let annotation_keys = prop::sample::select(vec![
        annotations::IPS,
        annotations::IPS_ALIAS,
        annotations::SHARING_KEY,
        annotations::SHARING_KEY_ALIAS,
        annotations::SHARING_CROSS_NAMESPACE,
        annotations::SHARING_CROSS_NAMESPACE_ALIAS,
    ]);
    (
        (0usize..4, prop::option::of(prop::sample::select(vec!["default", "", "x"]))),
        prop::collection::vec((annotation_keys, text()), 0..5),
        (opt_text(), opt_text(), opt_text()),
        (prop::collection::vec(text(), 0..3), opt_text()),
        prop::collection::vec((any::<i64>(), opt_text()), 0..3),
        (opt_text(), prop::option::of(prop::collection::btree_map(text(), text(), 0..2))),
        prop::collection::vec(opt_text(), 0..3),
    )
        .prop_map(
            |((name, ns), annots, (type_, class, lb_ip), (families, policy), ports, (etp, selector), ingress)| {
                let mut s = svc(&format!("svc-{name}"));
                s.metadata.namespace = ns.map(str::to_string);
                for (k, v) in annots {
                    s.metadata.annotations.insert(k.to_string(), v);
                }
                if let Some(t) = type_ {
                    // Mostly LoadBalancer, so the interesting paths run.
                    s.spec.type_ = Some(if t.len() % 3 == 0 { t } else { "LoadBalancer".into() });
                }
                s.spec.load_balancer_class = class.filter(|c| c.len() % 2 == 0);
                s.spec.load_balancer_ip = lb_ip;
                s.spec.ip_families = families;
                s.spec.ip_family_policy = policy;
                s.spec.ports = ports
                    .into_iter()
                    .map(|(p, proto)| api::types::ServicePort { port: p, protocol: proto, ..Default::default() })
                    .collect();
                s.spec.external_traffic_policy = etp;
                s.spec.selector = selector;
                s.status.load_balancer.ingress = ingress
                    .into_iter()
                    .map(|ip| api::types::LoadBalancerIngress { ip, ..Default::default() })
                    .collect();
                s
            },
        )
}

#[derive(Clone, Debug)]
enum Event {
    Pool(Box<LbIpPool>),
    DeletePool(usize),
    Service(Box<Service>),
    DeleteService(usize),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        2 => garbage_pool().prop_map(|p| Event::Pool(Box::new(p))),
        // Sane pools too, so that garbage Services meet real ranges.
        2 => (0usize..3, "10\\.0\\.0\\.[0-9]{1,2}/(2[89]|3[0-2])").prop_map(|(n, c)| Event::Pool(Box::new(pool(&format!("pool-{n}"), &[&c])))),
        1 => (0usize..3).prop_map(Event::DeletePool),
        6 => garbage_service().prop_map(|s| Event::Service(Box::new(s))),
        1 => (0usize..4).prop_map(Event::DeleteService),
    ]
}

proptest! {
    #[test]
    fn parsers_take_anything(s in text(), t in opt_text()) {
        let _ = IpRange::from_cidr(&s);
        let _ = IpRange::from_start_stop(&s, t.as_deref());
        let mut svc = svc("x");
        svc.metadata.annotations.insert(annotations::IPS.into(), s.clone());
        svc.metadata.annotations.insert(annotations::SHARING_CROSS_NAMESPACE.into(), s.clone());
        svc.spec.load_balancer_ip = t;
        let request = annotations::requested_ips(&svc);
        // Every entry is either an address or reported.
        let entries = s.split(',').map(str::trim).filter(|e| !e.is_empty()).count();
        prop_assert!(request.ips.len() + request.invalid.len() <= entries + 1);
        let _ = annotations::sharing_cross_namespaces(&svc);
    }

    #[test]
    fn controller_takes_anything(events in prop::collection::vec(event(), 1..25)) {
        let mut ipam = LbIpam::new(config_dual());
        let mut pools: BTreeMap<String, LbIpPool> = BTreeMap::new();
        let mut services: BTreeMap<(String, String), Service> = BTreeMap::new();
        for event in events {
            let updates = match event {
                Event::Pool(p) => {
                    pools.insert(p.metadata.name.clone(), (*p).clone());
                    ipam.upsert_pool(&p)
                }
                Event::DeletePool(n) => {
                    pools.remove(&format!("pool-{n}"));
                    ipam.delete_pool(&format!("pool-{n}"))
                }
                Event::Service(s) => {
                    let ns = s.metadata.namespace.clone().unwrap_or_else(|| "default".into());
                    services.insert((ns, s.metadata.name.clone()), (*s).clone());
                    ipam.upsert_service(&s)
                }
                Event::DeleteService(n) => {
                    let name = format!("svc-{n}");
                    let mut out = Vec::new();
                    for ns in ["default", "", "x"] {
                        services.remove(&(ns.to_string(), name.clone()));
                        out.extend(ipam.delete_service(ns, &name));
                    }
                    out
                }
            };
            prop_assert!(ipam.check_consistency().is_ok(), "{:?}", ipam.check_consistency());
            // Statuses serialize: nothing unrepresentable is written.
            for u in &updates {
                if let ipam::StatusUpdate::Service { status, .. } = u {
                    prop_assert!(serde_json::to_string(status).is_ok());
                }
            }
        }
        // A restart on the same garbage is consistent too.
        let p: Vec<LbIpPool> = pools.into_values().collect();
        let s: Vec<Service> = services.into_values().collect();
        let mut fresh = LbIpam::new(config_dual());
        let _ = fresh.initial_sync(&p, &s);
        prop_assert!(fresh.check_consistency().is_ok(), "{:?}", fresh.check_consistency());
    }
}
