use std::net::Ipv4Addr;

use super::*;
use crate::service::{Backend, Protocol, ServiceEntry, ServiceKind};

fn vip() -> Ipv4Addr {
    Ipv4Addr::new(10, 96, 0, 10)
}

fn be(last: u8, local: bool) -> Backend {
    Backend::active(Ipv4Addr::new(172, 20, 0, last), 8080, local)
}

fn cluster_ip(backends: Vec<Backend>) -> ServiceEntry {
    ServiceEntry::new(ServiceKind::ClusterIp, vip(), 80, Protocol::Tcp, backends)
}

/// Applies a plan op by op, checking the invariants after each one, as the datapath would see
/// the maps between two writes.
fn apply_checked(current: &LbState, desired: &LbState) -> LbState {
    let mut s = current.clone();
    for op in plan(current, desired) {
        s.apply(&op);
        check_consistent(&s).unwrap_or_else(|e| panic!("after {op:?}: {e}"));
    }
    assert_eq!(&s, desired);
    s
}

fn sync(current: &LbState, services: &[ServiceEntry]) -> LbState {
    let d = desired(services, current).expect("valid services");
    apply_checked(current, &d)
}

fn frontend(s: &LbState, scope: u8) -> Lb4Service {
    s.services[&Lb4Key::new(vip(), 80, abi::IPPROTO_TCP, 0, scope)]
}

#[test]
fn frontend_slots_backends_revnat_and_icmp_rows() {
    let s = sync(&LbState::default(), &[cluster_ip(vec![be(1, true), be(2, false)])]);
    let f = frontend(&s, abi::LB_SCOPE_ALL);
    assert_eq!(f.count, 2);
    assert_eq!(f.flags, SvcFlags::empty(), "a ClusterIP is not routable");
    assert_eq!(s.backends.len(), 2);
    assert_eq!(s.revnat[&f.rev_nat_index].address, vip().octets());
    let icmp = s.services[&Lb4Key::new(vip(), 0, abi::IPPROTO_ICMP, 0, abi::LB_SCOPE_ALL)];
    assert_eq!((icmp.count, icmp.flags), (1, SvcFlags::ICMP_ECHO));
    // 1 frontend + 2 slots + 1 ICMP row
    assert_eq!(s.services.len(), 4);
}

#[test]
fn second_sync_is_a_no_op_and_ids_are_stable() {
    let svcs = [cluster_ip(vec![be(1, true), be(2, false)])];
    let s1 = sync(&LbState::default(), &svcs);
    let d = desired(&svcs, &s1).unwrap();
    assert!(plan(&s1, &d).is_empty());

    // Adding a backend keeps the ids of the others and of the frontend.
    let s2 = sync(&s1, &[cluster_ip(vec![be(1, true), be(2, false), be(3, false)])]);
    assert_eq!(frontend(&s1, 0).rev_nat_index, frontend(&s2, 0).rev_nat_index);
    for (id, b) in &s1.backends {
        assert_eq!(s2.backends.get(id), Some(b));
    }
}

#[test]
fn terminating_backends_stay_known_but_get_no_slot() {
    let mut b2 = be(2, false);
    b2.state = BackendState::Terminating;
    let s = sync(&LbState::default(), &[cluster_ip(vec![be(1, true), b2])]);
    assert_eq!(frontend(&s, 0).count, 1);
    let id2 = s.backends.iter().find(|(_, b)| b.address == b2.address.octets()).map(|(id, _)| *id).unwrap();
    assert_eq!(s.backends[&id2].flags & abi::BE_STATE_MASK, abi::BE_STATE_TERMINATING);
    assert!(s.services.iter().all(|(k, v)| k.backend_slot == 0 || v.backend_id != id2));

    // All terminating: the frontend stays (so existing flows keep reverse NAT) with count 0.
    let mut b1 = be(1, true);
    b1.state = BackendState::Terminating;
    let s = sync(&s, &[cluster_ip(vec![b1, b2])]);
    assert_eq!(frontend(&s, 0).count, 0);
    assert_eq!(s.backends.len(), 2);
}

#[test]
fn local_traffic_policy_adds_node_local_rows() {
    let mut svc =
        ServiceEntry::new(ServiceKind::LoadBalancer, vip(), 80, Protocol::Tcp, vec![be(1, true), be(2, false)]);
    svc.external_traffic_local = true;
    let s = sync(&LbState::default(), &[svc]);
    let all = frontend(&s, abi::LB_SCOPE_ALL);
    let local = frontend(&s, abi::LB_SCOPE_LOCAL);
    assert_eq!((all.count, local.count), (2, 1));
    assert!(all.flags.contains(SvcFlags::ETP_LOCAL | SvcFlags::ROUTABLE), "{:?}", all.flags);
    let slot = s.services[&Lb4Key::new(vip(), 80, abi::IPPROTO_TCP, 1, abi::LB_SCOPE_LOCAL)];
    assert_eq!(s.backends[&slot.backend_id].address, [172, 20, 0, 1]);
}

#[test]
fn affinity_and_maglev() {
    let mut svc =
        ServiceEntry::new(ServiceKind::LoadBalancer, vip(), 80, Protocol::Tcp, vec![be(1, true), be(2, false)]);
    svc.affinity_timeout = Some(10800);
    svc.algorithm = LbAlgorithm::Maglev;
    let s = sync(&LbState::default(), &[svc]);
    let f = frontend(&s, 0);
    assert_eq!(f.backend_id, 10800, "the frontend row carries the affinity timeout");
    assert_eq!(f.algorithm, abi::LB_ALG_MAGLEV);
    assert_eq!(s.affinity_match.len(), 2);
    let table = &s.maglev[&maglev_key(f.rev_nat_index, abi::LB_SCOPE_ALL)];
    assert_eq!(table.len(), abi::LB_MAGLEV_LUT_SIZE);
    assert!(table.iter().all(|id| s.backends.contains_key(id)));
}

#[test]
fn shrinking_growing_and_removing_stay_consistent_at_every_step() {
    let mut svc = cluster_ip((1..=6).map(|i| be(i, false)).collect());
    svc.algorithm = LbAlgorithm::Maglev;
    let mut s = sync(&LbState::default(), std::slice::from_ref(&svc));
    svc.backends.truncate(2);
    s = sync(&s, std::slice::from_ref(&svc));
    assert_eq!(s.backends.len(), 2);
    svc.backends.extend((7..=9).map(|i| be(i, true)));
    s = sync(&s, std::slice::from_ref(&svc));
    assert_eq!(frontend(&s, 0).count, 5);
    s = sync(&s, &[]);
    assert_eq!(s, LbState::default());
}

#[test]
fn ids_of_removed_objects_are_not_reused_at_once() {
    let s1 = sync(&LbState::default(), &[cluster_ip(vec![be(1, false)])]);
    let old_id = *s1.backends.keys().next().unwrap();
    let s2 = sync(&s1, &[cluster_ip(vec![be(2, false)])]);
    let new_id = *s2.backends.keys().next().unwrap();
    assert_ne!(old_id, new_id, "a stale conntrack entry must not reach the new backend");
}

#[test]
fn invalid_services_are_rejected_whole() {
    let dup = [cluster_ip(vec![]), cluster_ip(vec![])];
    assert!(matches!(desired(&dup, &LbState::default()), Err(Error::InvalidService { .. })));
    let mut zero = cluster_ip(vec![]);
    zero.frontend.port = 0;
    assert!(desired(&[zero], &LbState::default()).is_err());
    let mut aff = cluster_ip(vec![]);
    aff.affinity_timeout = Some(0);
    assert!(desired(&[aff], &LbState::default()).is_err());
    // 0.0.0.0 is a node port's surrogate (socket-LB's loopback frontend), nothing else's.
    let mut unspecified = cluster_ip(vec![]);
    unspecified.frontend.address = Ipv4Addr::UNSPECIFIED;
    assert!(desired(&[unspecified], &LbState::default()).is_err());
    let surrogate =
        ServiceEntry::new(ServiceKind::NodePort, Ipv4Addr::UNSPECIFIED, 30080, Protocol::Tcp, vec![be(1, false)]);
    assert!(desired(&[surrogate], &LbState::default()).is_ok());
}

#[test]
fn node_ports_get_no_icmp_row() {
    let np = ServiceEntry::new(
        ServiceKind::NodePort,
        Ipv4Addr::new(192, 168, 10, 100),
        30080,
        Protocol::Tcp,
        vec![be(1, false)],
    );
    let s = sync(&LbState::default(), &[np]);
    assert!(s.services.keys().all(|k| k.proto != abi::IPPROTO_ICMP));
}

#[test]
fn maglev_tables_are_shared_between_frontends_and_kept_across_syncs() {
    let backends: Vec<Backend> = (1..=4).map(|i| be(i, false)).collect();
    let mut lb = ServiceEntry::new(
        ServiceKind::LoadBalancer,
        Ipv4Addr::new(192, 168, 10, 211),
        80,
        Protocol::Tcp,
        backends.clone(),
    );
    lb.algorithm = LbAlgorithm::Maglev;
    let mut np =
        ServiceEntry::new(ServiceKind::NodePort, Ipv4Addr::new(192, 168, 10, 100), 30080, Protocol::Tcp, backends);
    np.algorithm = LbAlgorithm::Maglev;
    let svcs = [lb, np];
    let s = sync(&LbState::default(), &svcs);
    let tables: Vec<&Vec<u32>> = s.maglev.values().collect();
    assert_eq!(tables.len(), 2);
    assert_eq!(tables[0], tables[1], "same backends, same table on every frontend (and every node)");
    assert!(plan(&s, &desired(&svcs, &s).unwrap()).is_empty());
}
