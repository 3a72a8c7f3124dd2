//! The row functions that [`desired`] composes, each on its own.

use std::net::Ipv4Addr;

use super::*;
use crate::service::{Backend, Protocol};

fn vip() -> Ipv4Addr {
    Ipv4Addr::new(10, 96, 0, 10)
}

fn be(last: u8, local: bool) -> Backend {
    Backend::active(Ipv4Addr::new(172, 20, 0, last), 8080, local)
}

fn terminating(last: u8) -> Backend {
    Backend { state: BackendState::Terminating, ..be(last, false) }
}

fn service(kind: ServiceKind, backends: Vec<Backend>) -> ServiceEntry {
    ServiceEntry::new(kind, vip(), 80, Protocol::Tcp, backends)
}

#[test]
fn ids_go_to_backends_first_then_frontends_in_listing_order() {
    let a = service(ServiceKind::ClusterIp, vec![be(2, false), be(1, false)]);
    let mut b = service(ServiceKind::ClusterIp, vec![be(1, false)]);
    b.frontend.port = 81;
    let ids = Ids::assign(&[a.clone(), b.clone()], &LbState::default()).unwrap();
    assert_eq!(ids.rev_nat, vec![1, 2]);
    assert_eq!(ids.backends[&backend_key(be(2, false).address, 8080, &a)], 1);
    assert_eq!(ids.backends[&backend_key(be(1, false).address, 8080, &b)], 2, "shared by both services");
    assert_eq!(ids.backends.len(), 2);
}

#[test]
fn a_backend_listed_active_anywhere_is_active() {
    let a = service(ServiceKind::ClusterIp, vec![terminating(1)]);
    let mut b = service(ServiceKind::ClusterIp, vec![be(1, true)]);
    b.frontend.port = 81;
    let services = [a, b];
    let ids = Ids::assign(&services, &LbState::default()).unwrap();
    let rows = backend_rows(&services, &ids.backends);
    assert_eq!(rows.len(), 1);
    let row = rows.values().next().unwrap();
    assert_eq!(row.flags & abi::BE_STATE_MASK, abi::BE_STATE_ACTIVE);
    assert_ne!(row.flags & abi::BE_F_NODE_LOCAL, 0);
    assert_eq!((row.port, row.proto), (abi::port_be(8080), abi::IPPROTO_TCP));
}

#[test]
fn active_backends_are_in_id_order_without_terminating_ones() {
    let s = service(ServiceKind::ClusterIp, vec![be(2, true), terminating(3), be(1, false)]);
    let ids = Ids::assign(std::slice::from_ref(&s), &LbState::default()).unwrap();
    assert_eq!(active_backends(&s, &ids.backends), vec![(1, true), (3, false)]);
}

#[test]
fn flags_follow_kind_policies_and_affinity() {
    let mut s = service(ServiceKind::ClusterIp, vec![]);
    s.external_traffic_local = true;
    assert_eq!(service_flags(&s), SvcFlags::empty(), "a ClusterIP has no external traffic");
    s.kind = ServiceKind::LoadBalancer;
    s.internal_traffic_local = true;
    s.affinity_timeout = Some(60);
    assert_eq!(
        service_flags(&s),
        SvcFlags::LOADBALANCER | SvcFlags::ROUTABLE | SvcFlags::ETP_LOCAL | SvcFlags::ITP_LOCAL | SvcFlags::AFFINITY
    );
}

#[test]
fn affinity_rows_only_with_session_affinity() {
    let mut s = service(ServiceKind::ClusterIp, vec![]);
    let active = [(4, false), (7, true)];
    assert!(affinity_rows(&s, 3, &active).is_empty());
    s.affinity_timeout = Some(60);
    let rows = affinity_rows(&s, 3, &active);
    assert_eq!(rows.iter().map(|m| (m.backend_id, m.rev_nat_index)).collect::<Vec<_>>(), vec![(4, 3), (7, 3)]);
}

#[test]
fn local_scope_only_with_a_local_traffic_policy() {
    let active = [(4, false), (7, true)];
    let mut s = service(ServiceKind::NodePort, vec![]);
    assert_eq!(scopes(&s, &active), vec![(abi::LB_SCOPE_ALL, vec![4, 7])]);
    s.internal_traffic_local = true;
    assert_eq!(scopes(&s, &active), vec![(abi::LB_SCOPE_ALL, vec![4, 7]), (abi::LB_SCOPE_LOCAL, vec![7])]);
}

#[test]
fn frontend_row_counts_its_slot_rows() {
    let mut s = service(ServiceKind::NodePort, vec![]);
    s.affinity_timeout = Some(600);
    s.algorithm = LbAlgorithm::Maglev;
    let rows = frontend_rows(&s, 5, abi::LB_SCOPE_LOCAL, &[9, 4]);
    assert_eq!(rows.len(), 3);
    let (key, frontend) = rows[0];
    assert_eq!(key, Lb4Key::new(vip(), 80, abi::IPPROTO_TCP, 0, abi::LB_SCOPE_LOCAL));
    assert_eq!((frontend.count, frontend.backend_id, frontend.rev_nat_index), (2, 600, 5));
    assert_eq!(frontend.algorithm, abi::LB_ALG_MAGLEV);
    let slots: Vec<(u16, u32)> = rows[1..].iter().map(|(k, v)| (k.backend_slot, v.backend_id)).collect();
    assert_eq!(slots, vec![(1, 9), (2, 4)]);
    assert!(rows[1..].iter().all(|(_, v)| v.rev_nat_index == 5 && v.flags.is_empty()));
}

#[test]
fn maglev_tables_are_built_once_per_backend_set() {
    let s = service(ServiceKind::ClusterIp, vec![be(1, false), be(2, false)]);
    let ids = Ids::assign(std::slice::from_ref(&s), &LbState::default()).unwrap();
    let backends = backend_rows(std::slice::from_ref(&s), &ids.backends);
    let none = BTreeMap::new();
    let mut tables = MaglevTables::reusing(&none);
    let t = tables.table(maglev_key(1, abi::LB_SCOPE_ALL), &[1, 2], &backends);
    assert_eq!(t.len(), abi::LB_MAGLEV_LUT_SIZE);
    assert!(same_ids(&t, &[1, 2]));
    assert_eq!(tables.table(maglev_key(2, abi::LB_SCOPE_ALL), &[1, 2], &backends), t);

    // a stored table over the same backends is kept as it is
    let stored = BTreeMap::from([(maglev_key(1, abi::LB_SCOPE_ALL), vec![2, 1, 2, 1])]);
    let mut tables = MaglevTables::reusing(&stored);
    assert_eq!(tables.table(maglev_key(1, abi::LB_SCOPE_ALL), &[1, 2], &backends), vec![2, 1, 2, 1]);
    assert_eq!(tables.table(maglev_key(1, abi::LB_SCOPE_ALL), &[1], &backends).len(), abi::LB_MAGLEV_LUT_SIZE);
}

#[test]
fn one_icmp_row_per_vip_but_none_for_node_ports() {
    let cluster_ip = service(ServiceKind::ClusterIp, vec![terminating(1)]);
    let mut lb = service(ServiceKind::LoadBalancer, vec![be(2, false)]);
    lb.frontend.port = 443;
    let mut np = service(ServiceKind::NodePort, vec![be(2, false)]);
    np.frontend.address = Ipv4Addr::new(192, 168, 10, 100);
    let rows = icmp_rows(&[cluster_ip.clone(), lb, np]);
    assert_eq!(rows.len(), 1);
    let row = rows[&Lb4Key::new(vip(), 0, abi::IPPROTO_ICMP, 0, abi::LB_SCOPE_ALL)];
    assert_eq!((row.count, row.flags), (1, SvcFlags::ICMP_ECHO | SvcFlags::ROUTABLE));

    let rows = icmp_rows(&[cluster_ip]);
    let row = rows.values().next().unwrap();
    assert_eq!((row.count, row.flags), (0, SvcFlags::ICMP_ECHO), "no active backend: no echo reply");
}
