//! Sample flows shared by the unit tests of this crate and by other crates' tests.

use crate::model::{
    DropReason, Endpoint, EventType, Flow, FlowType, Ip, Layer4, Service, TcpFlags, TraceObservationPoint,
    TrafficDirection, Verdict,
};

fn curl_pod() -> Endpoint {
    Endpoint {
        id: 312,
        identity: 14553,
        namespace: "default".into(),
        labels: vec!["k8s:app=curl".into(), "k8s:io.kubernetes.pod.namespace=default".into()],
        pod_name: "curl-pod".into(),
    }
}

/// The guide's line: curl-pod -> webpod through the tunnel, an ACK+FIN, seen on k8s-w1.
pub fn curl_to_webpod() -> Flow {
    Flow {
        time: "2026-08-09T14:06:08.749318Z".parse().expect("valid time"),
        uuid: "3c0c3f0e-5d2c-4c47-9f27-1f3c9d8a7a11".into(),
        verdict: Verdict::Forwarded,
        ip: Some(Ip {
            source: "10.244.1.5".parse().expect("ip"),
            destination: "10.244.2.17".parse().expect("ip"),
            encrypted: false,
        }),
        l4: Some(Layer4::Tcp { source_port: 40372, destination_port: 80, flags: TcpFlags::from_header_bits(0x11) }),
        source: curl_pod(),
        destination: Endpoint {
            id: 0,
            identity: 8246,
            namespace: "default".into(),
            labels: vec!["k8s:app=webpod".into()],
            pod_name: "webpod-697b545f57-lq7nw".into(),
        },
        flow_type: FlowType::L3L4,
        node_name: "k8s-w1".into(),
        event_type: EventType::trace(TraceObservationPoint::ToOverlay),
        destination_service: Some(Service { name: "webpod".into(), namespace: "default".into() }),
        traffic_direction: TrafficDirection::Egress,
        trace_observation_point: TraceObservationPoint::ToOverlay,
        is_reply: Some(false),
        ..Flow::default()
    }
}

/// A SYN to a Service with no backends, dropped on k8s-ctr.
pub fn drop_no_backend() -> Flow {
    Flow {
        time: "2026-08-09T14:07:01.002Z".parse().expect("valid time"),
        verdict: Verdict::Dropped,
        drop_reason_desc: DropReason::SERVICE_BACKEND_NOT_FOUND,
        ip: Some(Ip {
            source: "10.244.1.5".parse().expect("ip"),
            destination: "10.96.0.50".parse().expect("ip"),
            encrypted: false,
        }),
        l4: Some(Layer4::Tcp { source_port: 51200, destination_port: 80, flags: TcpFlags::from_header_bits(0x02) }),
        source: curl_pod(),
        destination: Endpoint { identity: Endpoint::IDENTITY_WORLD, ..Endpoint::default() },
        flow_type: FlowType::L3L4,
        node_name: "k8s-ctr".into(),
        event_type: EventType::drop(DropReason::SERVICE_BACKEND_NOT_FOUND),
        destination_service: Some(Service { name: "nobackend".into(), namespace: "default".into() }),
        traffic_direction: TrafficDirection::Egress,
        is_reply: Some(false),
        ..Flow::default()
    }
}
