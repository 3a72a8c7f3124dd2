//! Conversions between the model ([`crate::Flow`], [`crate::filter::FlowFilter`]) and the
//! generated wire types. Names match one to one; only representations differ (enums as `i32`,
//! addresses as strings, timestamps as `prost_types::Timestamp`).

use chrono::{DateTime, Utc};

use crate::filter::{EventTypeFilter, FlowFilter};
use crate::model::{
    DropReason, Endpoint, EventType, Flow, FlowType, Ip, IpVersion, Layer4, NetworkInterface, Service, TcpFlags,
    TraceObservationPoint, TrafficDirection, Verdict,
};
use crate::proto::flow as pb;
use crate::summary::summary;

pub fn timestamp_to_proto(t: &DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 }
}

pub fn timestamp_from_proto(t: &prost_types::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(t.seconds, t.nanos.clamp(0, 999_999_999) as u32).unwrap_or_default()
}

pub fn flow_to_proto(f: &Flow) -> pb::Flow {
    pb::Flow {
        time: Some(timestamp_to_proto(&f.time)),
        uuid: f.uuid.clone(),
        verdict: f.verdict as i32,
        drop_reason: f.drop_reason_desc.0,
        ip: f.ip.as_ref().map(|ip| pb::Ip {
            source: ip.source.to_string(),
            destination: ip.destination.to_string(),
            ip_version: ip.ip_version() as i32,
            encrypted: ip.encrypted,
        }),
        l4: f.l4.as_ref().map(l4_to_proto),
        source: Some(endpoint_to_proto(&f.source)),
        destination: Some(endpoint_to_proto(&f.destination)),
        r#type: f.flow_type as i32,
        node_name: f.node_name.clone(),
        reply: f.is_reply == Some(true),
        event_type: Some(pb::CiliumEventType { r#type: f.event_type.r#type, sub_type: f.event_type.sub_type }),
        source_service: f.source_service.as_ref().map(service_to_proto),
        destination_service: f.destination_service.as_ref().map(service_to_proto),
        traffic_direction: f.traffic_direction as i32,
        trace_observation_point: f.trace_observation_point as i32,
        drop_reason_desc: f.drop_reason_desc.0 as i32,
        is_reply: f.is_reply,
        interface: f.interface.as_ref().map(|i| pb::NetworkInterface { index: i.index, name: i.name.clone() }),
        summary: summary(f),
    }
}

/// Fails only on what the model cannot hold (an address that does not parse, a port above
/// 65535): a peer speaking Hubble's protocol with values cilia never produces. Takes the message
/// by value to move its strings rather than copy them: a follower converts every flow it gets.
pub fn flow_from_proto(p: pb::Flow) -> Result<Flow, String> {
    let ip = match &p.ip {
        Some(ip) if !ip.source.is_empty() || !ip.destination.is_empty() => Some(Ip {
            source: ip.source.parse().map_err(|_| format!("invalid source address {:?}", ip.source))?,
            destination: ip
                .destination
                .parse()
                .map_err(|_| format!("invalid destination address {:?}", ip.destination))?,
            encrypted: ip.encrypted,
        }),
        _ => None,
    };
    let l4 = match p.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(proto) => Some(l4_from_proto(proto)?),
        None => None,
    };
    let drop_reason = if p.drop_reason_desc != 0 { p.drop_reason_desc as u32 } else { p.drop_reason };
    Ok(Flow {
        time: p.time.as_ref().map(timestamp_from_proto).unwrap_or_default(),
        uuid: p.uuid,
        verdict: Verdict::from_number(p.verdict),
        drop_reason_desc: DropReason(drop_reason),
        ip,
        l4,
        source: p.source.map(endpoint_from_proto).unwrap_or_default(),
        destination: p.destination.map(endpoint_from_proto).unwrap_or_default(),
        flow_type: FlowType::from_number(p.r#type),
        node_name: p.node_name,
        event_type: p
            .event_type
            .as_ref()
            .map(|e| EventType { r#type: e.r#type, sub_type: e.sub_type })
            .unwrap_or_default(),
        source_service: p.source_service.map(service_from_proto),
        destination_service: p.destination_service.map(service_from_proto),
        traffic_direction: TrafficDirection::from_number(p.traffic_direction),
        trace_observation_point: TraceObservationPoint::from_number(p.trace_observation_point),
        is_reply: p.is_reply,
        interface: p.interface.map(|i| NetworkInterface { index: i.index, name: i.name }),
    })
}

fn l4_to_proto(l4: &Layer4) -> pb::Layer4 {
    use pb::layer4::Protocol;
    let protocol = match *l4 {
        Layer4::Tcp { source_port, destination_port, flags } => Protocol::Tcp(pb::Tcp {
            source_port: u32::from(source_port),
            destination_port: u32::from(destination_port),
            flags: Some(pb::TcpFlags {
                fin: flags.fin,
                syn: flags.syn,
                rst: flags.rst,
                psh: flags.psh,
                ack: flags.ack,
                urg: flags.urg,
                ece: flags.ece,
                cwr: flags.cwr,
                ns: flags.ns,
            }),
        }),
        Layer4::Udp { source_port, destination_port } => Protocol::Udp(pb::Udp {
            source_port: u32::from(source_port),
            destination_port: u32::from(destination_port),
        }),
        Layer4::Sctp { source_port, destination_port } => Protocol::Sctp(pb::Sctp {
            source_port: u32::from(source_port),
            destination_port: u32::from(destination_port),
        }),
        Layer4::Icmpv4 { r#type, code } => {
            Protocol::IcmPv4(pb::IcmPv4 { r#type: u32::from(r#type), code: u32::from(code) })
        }
        Layer4::Icmpv6 { r#type, code } => {
            Protocol::IcmPv6(pb::IcmPv6 { r#type: u32::from(r#type), code: u32::from(code) })
        }
    };
    pb::Layer4 { protocol: Some(protocol) }
}

fn port(n: u32) -> Result<u16, String> {
    u16::try_from(n).map_err(|_| format!("port {n} out of range"))
}

fn icmp(n: u32) -> Result<u8, String> {
    u8::try_from(n).map_err(|_| format!("ICMP type/code {n} out of range"))
}

fn l4_from_proto(p: &pb::layer4::Protocol) -> Result<Layer4, String> {
    use pb::layer4::Protocol;
    Ok(match p {
        Protocol::Tcp(t) => {
            let f = t.flags.unwrap_or_default();
            Layer4::Tcp {
                source_port: port(t.source_port)?,
                destination_port: port(t.destination_port)?,
                flags: TcpFlags {
                    fin: f.fin,
                    syn: f.syn,
                    rst: f.rst,
                    psh: f.psh,
                    ack: f.ack,
                    urg: f.urg,
                    ece: f.ece,
                    cwr: f.cwr,
                    ns: f.ns,
                },
            }
        }
        Protocol::Udp(u) => {
            Layer4::Udp { source_port: port(u.source_port)?, destination_port: port(u.destination_port)? }
        }
        Protocol::Sctp(s) => {
            Layer4::Sctp { source_port: port(s.source_port)?, destination_port: port(s.destination_port)? }
        }
        Protocol::IcmPv4(i) => Layer4::Icmpv4 { r#type: icmp(i.r#type)?, code: icmp(i.code)? },
        Protocol::IcmPv6(i) => Layer4::Icmpv6 { r#type: icmp(i.r#type)?, code: icmp(i.code)? },
    })
}

fn endpoint_to_proto(e: &Endpoint) -> pb::Endpoint {
    pb::Endpoint {
        id: e.id,
        identity: e.identity,
        namespace: e.namespace.clone(),
        labels: e.labels.clone(),
        pod_name: e.pod_name.clone(),
    }
}

fn endpoint_from_proto(e: pb::Endpoint) -> Endpoint {
    Endpoint { id: e.id, identity: e.identity, namespace: e.namespace, labels: e.labels, pod_name: e.pod_name }
}

fn service_to_proto(s: &Service) -> pb::Service {
    pb::Service { name: s.name.clone(), namespace: s.namespace.clone() }
}

fn service_from_proto(s: pb::Service) -> Service {
    Service { name: s.name, namespace: s.namespace }
}

pub fn filter_to_proto(f: &FlowFilter) -> pb::FlowFilter {
    pb::FlowFilter {
        source_ip: f.source_ip.clone(),
        source_pod: f.source_pod.clone(),
        source_label: f.source_label.clone(),
        source_service: f.source_service.clone(),
        destination_ip: f.destination_ip.clone(),
        destination_pod: f.destination_pod.clone(),
        destination_label: f.destination_label.clone(),
        destination_service: f.destination_service.clone(),
        traffic_direction: f.traffic_direction.iter().map(|d| *d as i32).collect(),
        verdict: f.verdict.iter().map(|v| *v as i32).collect(),
        event_type: f
            .event_type
            .iter()
            .map(|e| pb::EventTypeFilter { r#type: e.r#type, match_sub_type: e.match_sub_type, sub_type: e.sub_type })
            .collect(),
        protocol: f.protocol.clone(),
        source_port: f.source_port.clone(),
        destination_port: f.destination_port.clone(),
        reply: f.reply.clone(),
        source_identity: f.source_identity.clone(),
        destination_identity: f.destination_identity.clone(),
        node_name: f.node_name.clone(),
        ip_version: f.ip_version.iter().map(|v| *v as i32).collect(),
    }
}

pub fn filter_from_proto(p: &pb::FlowFilter) -> FlowFilter {
    FlowFilter {
        source_ip: p.source_ip.clone(),
        source_pod: p.source_pod.clone(),
        source_label: p.source_label.clone(),
        source_service: p.source_service.clone(),
        destination_ip: p.destination_ip.clone(),
        destination_pod: p.destination_pod.clone(),
        destination_label: p.destination_label.clone(),
        destination_service: p.destination_service.clone(),
        traffic_direction: p.traffic_direction.iter().map(|d| TrafficDirection::from_number(*d)).collect(),
        verdict: p.verdict.iter().map(|v| Verdict::from_number(*v)).collect(),
        event_type: p
            .event_type
            .iter()
            .map(|e| EventTypeFilter { r#type: e.r#type, match_sub_type: e.match_sub_type, sub_type: e.sub_type })
            .collect(),
        protocol: p.protocol.clone(),
        source_port: p.source_port.clone(),
        destination_port: p.destination_port.clone(),
        reply: p.reply.clone(),
        source_identity: p.source_identity.clone(),
        destination_identity: p.destination_identity.clone(),
        node_name: p.node_name.clone(),
        ip_version: p
            .ip_version
            .iter()
            .map(|v| match v {
                1 => IpVersion::Ipv4,
                2 => IpVersion::Ipv6,
                _ => IpVersion::NotUsed,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter_flags::FilterFlags;
    use crate::testing::{curl_to_webpod, drop_no_backend};
    use prost::Message;

    #[test]
    fn flows_round_trip_through_the_wire_bytes() {
        let mut icmp = curl_to_webpod();
        icmp.l4 = Some(Layer4::Icmpv6 { r#type: 128, code: 0 });
        icmp.ip =
            Some(Ip { source: "fd00::1".parse().unwrap(), destination: "fd00::2".parse().unwrap(), encrypted: true });
        icmp.interface = Some(NetworkInterface { index: 7, name: "cilia_vxlan".into() });
        icmp.is_reply = None;
        for flow in [curl_to_webpod(), drop_no_backend(), icmp] {
            let bytes = flow_to_proto(&flow).encode_to_vec();
            let back = flow_from_proto(pb::Flow::decode(bytes.as_slice()).unwrap()).unwrap();
            assert_eq!(back, flow);
        }
    }

    #[test]
    fn wire_numbers_are_hubbles() {
        let p = flow_to_proto(&curl_to_webpod());
        assert_eq!(p.verdict, 1);
        assert_eq!(p.trace_observation_point, 4);
        assert_eq!(p.traffic_direction, 2);
        assert_eq!(p.r#type, 1);
        assert_eq!(p.summary, "TCP Flags: ACK, FIN");
        let d = flow_to_proto(&drop_no_backend());
        assert_eq!(d.drop_reason_desc, 158);
        assert_eq!(pb::DropReason::try_from(d.drop_reason_desc), Ok(pb::DropReason::ServiceBackendNotFound));
        let mut e = curl_to_webpod();
        e.trace_observation_point = TraceObservationPoint::ToEndpoint;
        assert_eq!(flow_to_proto(&e).trace_observation_point, 101);
    }

    #[test]
    fn bad_wire_values_are_errors_not_panics() {
        let mut p = flow_to_proto(&curl_to_webpod());
        p.ip.as_mut().unwrap().source = "not-an-ip".into();
        assert!(flow_from_proto(p).is_err());
        let mut p = flow_to_proto(&curl_to_webpod());
        p.l4 = Some(pb::Layer4 {
            protocol: Some(pb::layer4::Protocol::Udp(pb::Udp { source_port: 70000, destination_port: 1 })),
        });
        assert!(flow_from_proto(p).is_err());
        // An empty message is a valid (unknown) flow.
        assert!(flow_from_proto(pb::Flow::default()).is_ok());
    }

    #[test]
    fn filters_round_trip() {
        let flags = FilterFlags {
            pods: vec!["curl-pod".into()],
            labels: vec!["app=curl".into()],
            ports: vec!["80".into()],
            protocols: vec!["tcp".into()],
            verdicts: vec!["FORWARDED".into()],
            nodes: vec!["k8s-*".into()],
            types: vec!["trace:to-overlay".into()],
            ..FilterFlags::default()
        };
        for f in flags.to_filters().unwrap() {
            let bytes = filter_to_proto(&f).encode_to_vec();
            assert_eq!(filter_from_proto(&pb::FlowFilter::decode(bytes.as_slice()).unwrap()), f);
        }
    }
}
