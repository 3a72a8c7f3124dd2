//! Hubble's compact line format (`hubble observe -o compact`, the format of the guide):
//!
//! `<time>[ [node]]: <src> <srcID> <arrow> <dst> <dstID> <type> <verdict> (<summary>)`
//!
//! Rules follow `hubble/pkg/printer/printer.go`: Go's `StampMilli` time in UTC (protobuf
//! timestamps are UTC), `ns/pod:port` when the pod is known else the Service or the IP, reserved
//! identities by name, `<-` with source and destination swapped for replies and `<>` when the
//! direction is unknown.

use std::net::IpAddr;

use crate::model::{Endpoint, Flow, Layer4, Service};
use crate::summary::summary;

/// Go's `time.StampMilli` (`Jan _2 15:04:05.000`): the day is space-padded.
pub const STAMP_MILLI: &str = "%b %e %H:%M:%S%.3f";

/// [`STAMP_MILLI`] parsed once: a follower prints tens of thousands of lines a second.
static STAMP_MILLI_ITEMS: std::sync::LazyLock<Vec<chrono::format::Item<'static>>> = std::sync::LazyLock::new(|| {
    chrono::format::StrftimeItems::new(STAMP_MILLI).parse_to_owned().expect("STAMP_MILLI is a valid format")
});

/// One flow as a compact line (without the trailing newline). `print_node_name` adds ` [node]`
/// after the time, like `--print-node-name`.
pub fn compact_line(flow: &Flow, print_node_name: bool) -> String {
    let mut line = Vec::with_capacity(160);
    // Writing to a Vec cannot fail, and every piece written is UTF-8.
    let _ = write_compact_line(&mut line, flow, print_node_name);
    line.pop();
    String::from_utf8(line).unwrap_or_default()
}

/// [`compact_line`] and its newline written straight to `out`: a follower prints tens of
/// thousands of lines a second, and this builds no string on the way for a TCP flow.
pub fn write_compact_line(out: &mut impl std::io::Write, flow: &Flow, print_node_name: bool) -> std::io::Result<()> {
    write!(out, "{}", flow.time.format_with_items(STAMP_MILLI_ITEMS.iter()))?;
    if print_node_name {
        write!(out, " [{}]", flow.node_name)?;
    }
    let (src_ip, dst_ip) = match &flow.ip {
        Some(ip) => (Some(ip.source), Some(ip.destination)),
        None => (None, None),
    };
    let src = Host { ip: src_ip, port: flow.source_port(), ep: &flow.source, svc: flow.source_service.as_ref() };
    let dst = Host {
        ip: dst_ip,
        port: flow.destination_port(),
        ep: &flow.destination,
        svc: flow.destination_service.as_ref(),
    };
    let (left, arrow, right) = match flow.is_reply {
        None => (src, "<>", dst),
        Some(false) => (src, "->", dst),
        // Keep the client on the left: the reply travels from right to left.
        Some(true) => (dst, "<-", src),
    };
    write!(out, ": {left} {} {arrow} {right} {} ", Identity(left.ep.identity), Identity(right.ep.identity))?;
    if flow.is_drop() {
        write!(out, "{}", flow.drop_reason_desc.description())?;
    } else {
        out.write_all(event_type_text_static(flow).as_bytes())?;
    }
    write!(out, " {} (", flow.verdict.name())?;
    match &flow.l4 {
        Some(Layer4::Tcp { flags, .. }) => {
            out.write_all(b"TCP Flags: ")?;
            for (i, name) in flags.names().iter().enumerate() {
                if i > 0 {
                    out.write_all(b", ")?;
                }
                out.write_all(name.as_bytes())?;
            }
        }
        _ => out.write_all(summary(flow).as_bytes())?,
    }
    out.write_all(b")\n")
}

/// The time as Go's `StampMilli` prints it (`Aug  9 14:06:08.749`).
pub fn stamp_milli(time: &chrono::DateTime<chrono::Utc>) -> String {
    time.format_with_items(STAMP_MILLI_ITEMS.iter()).to_string()
}

/// Hubble's `GetHostNames`: both ends as the flow names them (`ns/pod:port`, else the Service,
/// else the address), source first.
pub fn host_names(flow: &Flow) -> (String, String) {
    let (src_ip, dst_ip) = match &flow.ip {
        Some(ip) => (Some(ip.source), Some(ip.destination)),
        None => (None, None),
    };
    (
        host(src_ip, flow.source_port(), &flow.source, flow.source_service.as_ref()),
        host(dst_ip, flow.destination_port(), &flow.destination, flow.destination_service.as_ref()),
    )
}

/// The "type" column: the observation point for traces, the drop reason text for drops.
pub fn event_type_text(flow: &Flow) -> String {
    if flow.is_drop() {
        return flow.drop_reason_desc.description();
    }
    event_type_text_static(flow).to_string()
}

/// [`event_type_text`] of a flow that is no drop.
fn event_type_text_static(flow: &Flow) -> &'static str {
    if flow.is_trace() || flow.event_type.r#type == 0 {
        return flow.trace_observation_point.name();
    }
    "UNKNOWN"
}

/// `(ID:n)`, or `(world)`, `(host)`, ... for reserved identities.
struct Identity(u32);

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match Endpoint::reserved_identity_name(self.0) {
            Some(name) => write!(f, "({name})"),
            None => write!(f, "(ID:{})", self.0),
        }
    }
}

/// Hubble's `Hostname`: `ns/pod` if the pod is known, else `ns/service`, else the IP; then
/// `:port` when there is a non-zero port (IPv6 addresses in brackets).
#[derive(Clone, Copy)]
struct Host<'a> {
    ip: Option<IpAddr>,
    port: Option<u16>,
    ep: &'a Endpoint,
    svc: Option<&'a Service>,
}

impl std::fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = if !self.ep.pod_name.is_empty() {
            Some((self.ep.namespace.as_str(), self.ep.pod_name.as_str()))
        } else {
            self.svc.filter(|s| !s.name.is_empty()).map(|s| (s.namespace.as_str(), s.name.as_str()))
        };
        let port = self.port.filter(|p| *p != 0);
        match (name, self.ip, port) {
            (Some((ns, name)), _, port) => {
                // Go's `path.Join(ns, name)`: no slash when the namespace is empty.
                if !ns.is_empty() {
                    write!(f, "{ns}/")?;
                }
                f.write_str(name)?;
                match port {
                    Some(port) => write!(f, ":{port}"),
                    None => Ok(()),
                }
            }
            (None, Some(IpAddr::V6(v6)), Some(port)) => write!(f, "[{v6}]:{port}"),
            (None, Some(ip), Some(port)) => write!(f, "{ip}:{port}"),
            (None, Some(ip), None) => write!(f, "{ip}"),
            (None, None, _) => Ok(()),
        }
    }
}

fn host(ip: Option<IpAddr>, port: Option<u16>, ep: &Endpoint, svc: Option<&Service>) -> String {
    Host { ip, port, ep, svc }.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Layer4, TraceObservationPoint};
    use crate::testing::{curl_to_webpod, drop_no_backend};

    #[test]
    fn golden_guide_line() {
        let flow = curl_to_webpod();
        assert_eq!(
            compact_line(&flow, false),
            "Aug  9 14:06:08.749: default/curl-pod:40372 (ID:14553) -> \
             default/webpod-697b545f57-lq7nw:80 (ID:8246) to-overlay FORWARDED (TCP Flags: ACK, FIN)"
        );
    }

    #[test]
    fn golden_icmp_reply_without_ports() {
        // The study notes' line: a reply, so the client stays on the left.
        let mut flow = curl_to_webpod();
        flow.time = "2026-08-06T06:50:26.228Z".parse().unwrap();
        flow.l4 = Some(Layer4::Icmpv4 { r#type: 0, code: 0 });
        flow.source = Endpoint {
            identity: 47080,
            namespace: "default".into(),
            pod_name: "netshoot-pod".into(),
            ..Endpoint::default()
        };
        flow.destination = Endpoint { pod_name: "curl-pod".into(), ..flow.source.clone() };
        flow.is_reply = Some(true);
        flow.trace_observation_point = TraceObservationPoint::ToEndpoint;
        flow.event_type = crate::model::EventType::trace(TraceObservationPoint::ToEndpoint);
        assert_eq!(
            compact_line(&flow, false),
            "Aug  6 06:50:26.228: default/curl-pod (ID:47080) <- default/netshoot-pod (ID:47080) \
             to-endpoint FORWARDED (ICMPv4 EchoReply)"
        );
    }

    #[test]
    fn node_name_follows_the_time() {
        let flow = curl_to_webpod();
        assert!(compact_line(&flow, true).starts_with("Aug  9 14:06:08.749 [k8s-w1]: default/curl-pod:"));
    }

    #[test]
    fn reply_swaps_sides_and_arrow() {
        let mut flow = curl_to_webpod();
        // The reply as the datapath sees it: webpod -> curl-pod.
        std::mem::swap(&mut flow.source, &mut flow.destination);
        if let Some(ip) = &mut flow.ip {
            std::mem::swap(&mut ip.source, &mut ip.destination);
        }
        flow.l4 = Some(Layer4::Tcp {
            source_port: 80,
            destination_port: 40372,
            flags: crate::model::TcpFlags::from_header_bits(0x12),
        });
        flow.is_reply = Some(true);
        flow.trace_observation_point = TraceObservationPoint::ToEndpoint;
        flow.event_type = crate::model::EventType::trace(TraceObservationPoint::ToEndpoint);
        assert_eq!(
            compact_line(&flow, false),
            "Aug  9 14:06:08.749: default/curl-pod:40372 (ID:14553) <- \
             default/webpod-697b545f57-lq7nw:80 (ID:8246) to-endpoint FORWARDED (TCP Flags: SYN, ACK)"
        );
    }

    #[test]
    fn unknown_direction_and_reserved_identity_and_bare_ip() {
        let mut flow = curl_to_webpod();
        flow.is_reply = None;
        flow.destination_service = None;
        flow.destination = Endpoint { identity: Endpoint::IDENTITY_WORLD, ..Endpoint::default() };
        let line = compact_line(&flow, false);
        assert!(line.contains(" <> 10.244.2.17:80 (world) "), "{line}");
    }

    #[test]
    fn drop_prints_reason_and_service_when_no_pod() {
        let line = compact_line(&drop_no_backend(), false);
        assert_eq!(
            line,
            "Aug  9 14:07:01.002: default/curl-pod:51200 (ID:14553) -> default/nobackend:80 (world) \
             Service backend not found DROPPED (TCP Flags: SYN)"
        );
    }

    #[test]
    fn single_digit_and_double_digit_days_align() {
        let mut flow = curl_to_webpod();
        flow.time = "2026-12-17T01:02:03.004Z".parse().unwrap();
        assert!(compact_line(&flow, false).starts_with("Dec 17 01:02:03.004: "));
        flow.time = "2026-01-02T01:02:03.000999Z".parse().unwrap();
        assert!(compact_line(&flow, false).starts_with("Jan  2 01:02:03.000: "));
    }
}
