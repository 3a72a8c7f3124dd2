use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use api::types::{Pod, Service};
use datapath::events_abi::EventFlags;
use datapath::{EventKind, FlowEvent, ObservationPoint};
use flow::{DropReason, Endpoint, Layer4, TraceObservationPoint, TrafficDirection, Verdict};

use super::to_flow;
use crate::flows::directory::Directory;
use crate::flows::identity::workload_identity;
use crate::node_view::NodeView;

const CURL: Ipv4Addr = Ipv4Addr::new(172, 20, 0, 15);
const WEB: Ipv4Addr = Ipv4Addr::new(172, 20, 1, 33);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 12, 7);
const EMPTY_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 12, 8);

fn pod(ns: &str, name: &str, ip: Ipv4Addr, node: &str, app: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
        "spec": {"nodeName": node, "containers": []},
        "status": {"podIP": ip.to_string()},
    }))
    .unwrap()
}

fn service(name: &str, ip: Ipv4Addr) -> Service {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"clusterIP": ip.to_string(), "ports": [{"port": 80}]},
    }))
    .unwrap()
}

fn node(name: &str, ip: [u8; 4], cidr: &str) -> NodeView {
    NodeView { name: name.into(), internal_ip: Some(Ipv4Addr::from(ip)), pod_cidr: Some(cidr.parse().unwrap()) }
}

fn directory() -> Directory {
    Directory::build(
        "k8s-ctr",
        &[
            pod("default", "curl-pod", CURL, "k8s-ctr", "curl"),
            pod("default", "webpod-697b545f57-lq7nw", WEB, "k8s-w1", "webpod"),
        ],
        &[service("webpod", VIP), service("nobody", EMPTY_VIP)],
        &[node("k8s-ctr", [192, 168, 10, 100], "172.20.0.0/24"), node("k8s-w1", [192, 168, 10, 101], "172.20.1.0/24")],
    )
}

fn event(kind: EventKind, point: ObservationPoint, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) -> FlowEvent {
    FlowEvent {
        monotonic_ns: 0,
        kind,
        obs_point: point,
        drop_reason: 0,
        flags: EventFlags::empty(),
        ifindex: 9,
        pkt_len: 66,
        saddr: src.0,
        daddr: dst.0,
        sport: src.1,
        dport: dst.1,
        proto: 6,
        tcp_flags: 0x11,
        icmp_type: 0,
        icmp_code: 0,
        svc_addr: Ipv4Addr::UNSPECIFIED,
        svc_port: 0,
        out_ifindex: 0,
    }
}

#[test]
fn a_pods_connection_through_the_overlay_names_both_pods_and_the_service() {
    let mut ev = event(EventKind::Trace, ObservationPoint::ToOverlay, (CURL, 40372), (WEB, 80));
    ev.flags = EventFlags::DNAT | EventFlags::ENCAP;
    ev.svc_addr = VIP;
    ev.svc_port = 80;
    let f = to_flow(&ev, &directory(), 1_754_748_368_749_000_000, Some("lxc1234".into()));
    assert_eq!(f.verdict, Verdict::Forwarded);
    assert_eq!(f.trace_observation_point, TraceObservationPoint::ToOverlay);
    assert_eq!(f.event_type.r#type, 4);
    assert_eq!(f.event_type.sub_type, 4);
    assert_eq!((f.source.namespace.as_str(), f.source.pod_name.as_str()), ("default", "curl-pod"));
    assert_eq!(f.destination.pod_name, "webpod-697b545f57-lq7nw");
    assert_eq!(
        f.destination.identity,
        workload_identity("default", &BTreeMap::from([("app".into(), "webpod".into())]))
    );
    assert!(f.destination.labels.contains(&"k8s:app=webpod".to_string()), "{:?}", f.destination.labels);
    assert_eq!(f.destination_service.as_ref().map(|s| s.name.as_str()), Some("webpod"));
    assert_eq!(f.source_service, None);
    assert_eq!(f.node_name, "k8s-ctr");
    assert_eq!(f.traffic_direction, TrafficDirection::Egress);
    assert_eq!(f.is_reply, Some(false), "ephemeral source port to port 80");
    match f.l4 {
        Some(Layer4::Tcp { source_port: 40372, destination_port: 80, flags }) => {
            assert_eq!(flags.names(), ["ACK", "FIN"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(f.time.timestamp_millis(), 1_754_748_368_749);
    assert_eq!(f.interface.as_ref().map(|i| (i.index, i.name.as_str())), Some((9, "lxc1234")));
}

#[test]
fn a_refused_connection_is_a_drop_with_its_reason_and_service() {
    let mut ev = event(EventKind::Drop, ObservationPoint::ToEndpoint, (CURL, 51000), (EMPTY_VIP, 80));
    ev.drop_reason = 158;
    ev.tcp_flags = 0x02;
    ev.flags = EventFlags::NOT_REPLY;
    let f = to_flow(&ev, &directory(), 0, None);
    assert_eq!(f.verdict, Verdict::Dropped);
    assert_eq!(f.drop_reason_desc, DropReason::SERVICE_BACKEND_NOT_FOUND);
    assert_eq!(f.event_type.r#type, 1);
    assert_eq!(f.event_type.sub_type, 158);
    assert_eq!(f.trace_observation_point, TraceObservationPoint::Unknown);
    assert_eq!(f.destination_service.as_ref().map(|s| s.name.as_str()), Some("nobody"));
    assert_eq!(f.destination.identity, Endpoint::IDENTITY_WORLD, "a VIP is no pod");
    assert_eq!(f.is_reply, Some(false));
}

#[test]
fn a_reply_reverse_natted_to_the_frontend_is_a_reply_from_the_service() {
    let mut ev = event(EventKind::Trace, ObservationPoint::ToEndpoint, (VIP, 80), (CURL, 40372));
    ev.flags = EventFlags::REV_NAT | EventFlags::REPLY;
    ev.svc_addr = VIP;
    ev.svc_port = 80;
    let f = to_flow(&ev, &directory(), 0, None);
    assert_eq!(f.is_reply, Some(true));
    assert_eq!(f.source_service.as_ref().map(|s| s.name.as_str()), Some("webpod"));
    assert_eq!(f.destination.pod_name, "curl-pod");
    assert_eq!(f.traffic_direction, TrafficDirection::Ingress);
}

#[test]
fn node_addresses_are_host_or_remote_node_and_the_rest_is_world() {
    let dir = directory();
    let here = to_flow(
        &event(EventKind::Trace, ObservationPoint::ToStack, (Ipv4Addr::new(172, 20, 0, 1), 53), (CURL, 40000)),
        &dir,
        0,
        None,
    );
    assert_eq!(here.source.identity, Endpoint::IDENTITY_HOST);
    assert_eq!(here.source.labels, ["reserved:host"]);
    let unbound = to_flow(
        &event(EventKind::Drop, ObservationPoint::Other(0xff), (Ipv4Addr::UNSPECIFIED, 0), (EMPTY_VIP, 80)),
        &dir,
        0,
        None,
    );
    assert_eq!(unbound.source.identity, Endpoint::IDENTITY_HOST, "a node socket refused by socket-LB");
    let remote = to_flow(
        &event(EventKind::Trace, ObservationPoint::ToNetwork, (Ipv4Addr::new(192, 168, 10, 101), 8472), (CURL, 40000)),
        &dir,
        0,
        None,
    );
    assert_eq!(remote.source.identity, Endpoint::IDENTITY_REMOTE_NODE);
    let world = to_flow(
        &event(EventKind::Trace, ObservationPoint::ToNetwork, (Ipv4Addr::new(8, 8, 8, 8), 443), (CURL, 40000)),
        &dir,
        0,
        None,
    );
    assert_eq!(world.source.identity, Endpoint::IDENTITY_WORLD);
    assert_eq!(world.is_reply, Some(true), "from a well-known port to an ephemeral one");
}

#[test]
fn icmp_keeps_type_and_code_and_direction_stays_unknown_between_ephemeral_ports() {
    let mut ev = event(EventKind::Trace, ObservationPoint::ToEndpoint, (WEB, 0), (CURL, 0));
    ev.proto = 1;
    ev.icmp_type = 3;
    ev.icmp_code = 4;
    let f = to_flow(&ev, &directory(), 0, None);
    assert!(matches!(f.l4, Some(Layer4::Icmpv4 { r#type: 3, code: 4 })), "{:?}", f.l4);
    assert_eq!(f.is_reply, None);
    let udp = FlowEvent { proto: 17, sport: 40000, dport: 50000, ..ev };
    assert_eq!(to_flow(&udp, &directory(), 0, None).is_reply, None);
}

#[test]
fn a_pod_of_this_node_the_directory_does_not_know_yet_still_sends_egress() {
    let newcomer = Ipv4Addr::new(172, 20, 0, 77);
    let f = to_flow(
        &event(EventKind::Trace, ObservationPoint::ToOverlay, (newcomer, 80), (WEB, 40000)),
        &directory(),
        0,
        None,
    );
    assert_eq!(f.traffic_direction, TrafficDirection::Egress);
    // A remote node's pod CIDR is not this node's.
    let remote = Ipv4Addr::new(172, 20, 1, 77);
    let f = to_flow(
        &event(EventKind::Trace, ObservationPoint::ToOverlay, (remote, 80), (CURL, 40000)),
        &directory(),
        0,
        None,
    );
    assert_eq!(f.traffic_direction, TrafficDirection::Unknown);
}

#[test]
fn the_device_is_named_when_known_and_left_out_when_there_is_none() {
    let mut ev = event(EventKind::Trace, ObservationPoint::ToOverlay, (CURL, 40372), (WEB, 80));
    let f = to_flow(&ev, &directory(), 0, None);
    assert_eq!(f.interface.as_ref().map(|i| (i.index, i.name.as_str())), Some((9, "")), "index without a name");
    ev.ifindex = 0;
    assert_eq!(to_flow(&ev, &directory(), 0, Some("lo".into())).interface, None);
}
