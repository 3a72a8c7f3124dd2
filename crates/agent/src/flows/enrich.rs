//! A datapath event made a Hubble flow: the packet's facts from the event, names from the
//! [`Directory`]: pod, namespace, labels and identity of both ends, the Service of a translated
//! (or refused) frontend, the node. Pure: the clock and the device names come in as arguments
//! ([`super::interfaces`] names the devices).

use std::net::{IpAddr, Ipv4Addr};

use chrono::{DateTime, Utc};
use datapath::{EventKind, FlowEvent, Translation};
use flow::{
    DropReason, Endpoint, EventType, Flow, FlowType, Ip, Layer4, NetworkInterface, Service, TcpFlags,
    TraceObservationPoint, TrafficDirection, Verdict,
};

use super::directory::{Directory, Reserved};

/// Ports from here up are ephemeral (Linux's default range starts at 32768): a client's side.
const EPHEMERAL_PORTS: u16 = 32768;

/// The flow of one event. `unix_ns` is the event's time on the wall clock
/// ([`datapath::events::monotonic_to_unix_ns`]); `ifname` names the event's device, if known.
pub fn to_flow(ev: &FlowEvent, dir: &Directory, unix_ns: u64, ifname: Option<String>) -> Flow {
    let (verdict, event_type, point, drop_reason) = match ev.kind {
        EventKind::Trace => {
            let point = TraceObservationPoint::from_datapath(ev.obs_point.code());
            (Verdict::Forwarded, EventType::trace(point), point, DropReason::UNKNOWN)
        }
        EventKind::Drop => {
            let reason = DropReason(u32::from(ev.drop_reason));
            (Verdict::Dropped, EventType::drop(reason), TraceObservationPoint::Unknown, reason)
        }
    };
    let source = endpoint(dir, ev.saddr);
    let destination = endpoint(dir, ev.daddr);
    let (source_service, destination_service) = services(ev, dir);
    let traffic_direction = if point == TraceObservationPoint::ToEndpoint {
        TrafficDirection::Ingress
    } else if dir.pod(ev.saddr).map_or(dir.in_own_pod_cidr(ev.saddr), |p| p.node.as_deref() == Some(dir.node_name())) {
        // Leaving one of this node's pods, whether the directory knows the pod yet or not.
        TrafficDirection::Egress
    } else {
        TrafficDirection::Unknown
    };
    Flow {
        time: DateTime::<Utc>::from_timestamp_nanos(i64::try_from(unix_ns).unwrap_or(i64::MAX)),
        uuid: String::new(),
        verdict,
        drop_reason_desc: drop_reason,
        ip: Some(Ip { source: IpAddr::V4(ev.saddr), destination: IpAddr::V4(ev.daddr), encrypted: false }),
        l4: layer4(ev),
        source,
        destination,
        flow_type: FlowType::L3L4,
        node_name: dir.node_name().to_string(),
        event_type,
        source_service,
        destination_service,
        traffic_direction,
        trace_observation_point: point,
        is_reply: is_reply(ev),
        // Index 0 is no device: Hubble leaves the field out then.
        interface: (ev.ifindex != 0).then(|| NetworkInterface { index: ev.ifindex, name: ifname.unwrap_or_default() }),
    }
}

fn endpoint(dir: &Directory, ip: Ipv4Addr) -> Endpoint {
    if let Some(pod) = dir.pod(ip) {
        return Endpoint {
            id: 0,
            identity: pod.identity,
            namespace: pod.namespace.clone(),
            labels: pod.labels.clone(),
            pod_name: pod.name.clone(),
        };
    }
    let (identity, label) = match dir.reserved(ip) {
        Reserved::Host => (Endpoint::IDENTITY_HOST, "reserved:host"),
        Reserved::RemoteNode => (Endpoint::IDENTITY_REMOTE_NODE, "reserved:remote-node"),
        Reserved::World => (Endpoint::IDENTITY_WORLD, "reserved:world"),
    };
    Endpoint { identity, labels: vec![label.to_string()], ..Endpoint::default() }
}

fn layer4(ev: &FlowEvent) -> Option<Layer4> {
    match ev.proto {
        6 => Some(Layer4::Tcp {
            source_port: ev.sport,
            destination_port: ev.dport,
            flags: TcpFlags::from_header_bits(u16::from(ev.tcp_flags)),
        }),
        17 => Some(Layer4::Udp { source_port: ev.sport, destination_port: ev.dport }),
        132 => Some(Layer4::Sctp { source_port: ev.sport, destination_port: ev.dport }),
        1 => Some(Layer4::Icmpv4 { r#type: ev.icmp_type, code: ev.icmp_code }),
        _ => None,
    }
}

/// The Services of the two ends: the frontend the LB translated from (a DNATed packet's
/// destination) or to (a reply's source), else a frontend the packet is addressed to or comes
/// from as it is (a refused connection to a Service without backends).
fn services(ev: &FlowEvent, dir: &Directory) -> (Option<Service>, Option<Service>) {
    let named = |ip: Ipv4Addr, port: u16| {
        dir.service(ip, port).map(|s| Service { name: s.name.clone(), namespace: s.namespace.clone() })
    };
    match ev.translation() {
        Some(Translation::Dnat(f)) => (named(ev.saddr, ev.sport), named(*f.ip(), f.port())),
        Some(Translation::RevNat(f)) => (named(*f.ip(), f.port()), named(ev.daddr, ev.dport)),
        None => (named(ev.saddr, ev.sport), named(ev.daddr, ev.dport)),
    }
}

/// Whether the packet is a reply: the datapath's answer when it knows (translation, SYN flags,
/// echo type), else by ports: of a well-known and an ephemeral port the ephemeral one is the
/// client's. Unknown (`None`) when the ports say nothing.
fn is_reply(ev: &FlowEvent) -> Option<bool> {
    if let Some(known) = ev.is_reply() {
        return Some(known);
    }
    if ev.proto != 6 && ev.proto != 17 {
        return None;
    }
    let (client_side_src, client_side_dst) = (ev.sport >= EPHEMERAL_PORTS, ev.dport >= EPHEMERAL_PORTS);
    match (client_side_src, client_side_dst) {
        (true, false) => Some(false),
        (false, true) => Some(true),
        _ => None,
    }
}

#[cfg(test)]
#[path = "enrich_tests.rs"]
mod tests;
