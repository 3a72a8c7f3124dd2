//! The summary column of a flow: `TCP Flags: ACK, FIN`, `ICMPv4 EchoRequest`, `UDP`.
//! Names follow what Hubble prints (gopacket's type/code names).

use crate::model::{Flow, Layer4};

pub fn summary(flow: &Flow) -> String {
    match &flow.l4 {
        Some(Layer4::Tcp { flags, .. }) => format!("TCP Flags: {}", flags.names().join(", ")),
        Some(Layer4::Udp { .. }) => "UDP".to_string(),
        Some(Layer4::Sctp { .. }) => "SCTP".to_string(),
        Some(Layer4::Icmpv4 { r#type, code }) => format!("ICMPv4 {}", icmpv4_text(*r#type, *code)),
        Some(Layer4::Icmpv6 { r#type, code }) => format!("ICMPv6 {}", icmpv6_text(*r#type, *code)),
        None => match &flow.ip {
            Some(ip) if ip.source.is_ipv6() => "IPv6".to_string(),
            Some(_) => "IPv4".to_string(),
            None => String::new(),
        },
    }
}

fn with_code(type_name: &str, code_name: Option<&str>, code: u8) -> String {
    match code_name {
        Some(c) => format!("{type_name}({c})"),
        None => format!("{type_name}(Code: {code})"),
    }
}

/// gopacket's `ICMPv4TypeCode.String()`: the type name, plus `(Code)` for types with codes.
pub fn icmpv4_text(r#type: u8, code: u8) -> String {
    let plain = |name: &str| {
        if code == 0 { name.to_string() } else { with_code(name, None, code) }
    };
    match r#type {
        0 => plain("EchoReply"),
        3 => {
            let c = [
                "Net",
                "Host",
                "Protocol",
                "Port",
                "FragmentationNeeded",
                "SourceRoutingFailed",
                "NetUnknown",
                "HostUnknown",
                "SourceIsolated",
                "NetAdminProhibited",
                "HostAdminProhibited",
                "NetTOS",
                "HostTOS",
                "CommAdminProhibited",
                "HostPrecedence",
                "PrecedenceCutoff",
            ]
            .get(usize::from(code))
            .copied();
            with_code("DestinationUnreachable", c, code)
        }
        4 => plain("SourceQuench"),
        5 => plain("Redirect"),
        8 => plain("EchoRequest"),
        9 => plain("RouterAdvertisement"),
        10 => plain("RouterSolicitation"),
        11 => {
            let c = ["TTLExceeded", "FragmentReassemblyTimeExceeded"].get(usize::from(code)).copied();
            with_code("TimeExceeded", c, code)
        }
        12 => plain("ParameterProblem"),
        13 => plain("TimestampRequest"),
        14 => plain("TimestampReply"),
        _ => format!("{type}({code})"),
    }
}

/// gopacket's `ICMPv6TypeCode.String()` for the common types.
pub fn icmpv6_text(r#type: u8, code: u8) -> String {
    let name = match r#type {
        1 => {
            let c = [
                "NoRouteToDst",
                "AdminProhibited",
                "BeyondScopeOfSrc",
                "Address",
                "Port",
                "SrcAddressFailedPolicy",
                "RejectRouteToDst",
            ]
            .get(usize::from(code))
            .copied();
            return with_code("DestinationUnreachable", c, code);
        }
        2 => "PacketTooBig",
        3 => {
            let c = ["HopLimitExceeded", "FragmentReassemblyTimeExceeded"].get(usize::from(code)).copied();
            return with_code("TimeExceeded", c, code);
        }
        4 => "ParameterProblem",
        128 => "EchoRequest",
        129 => "EchoReply",
        133 => "RouterSolicitation",
        134 => "RouterAdvertisement",
        135 => "NeighborSolicitation",
        136 => "NeighborAdvertisement",
        137 => "Redirect",
        _ => return format!("{type}({code})"),
    };
    if code == 0 { name.to_string() } else { with_code(name, None, code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icmp_names() {
        assert_eq!(icmpv4_text(8, 0), "EchoRequest");
        assert_eq!(icmpv4_text(0, 0), "EchoReply");
        assert_eq!(icmpv4_text(3, 3), "DestinationUnreachable(Port)");
        assert_eq!(icmpv4_text(11, 0), "TimeExceeded(TTLExceeded)");
        assert_eq!(icmpv4_text(200, 1), "200(1)");
        assert_eq!(icmpv6_text(128, 0), "EchoRequest");
        assert_eq!(icmpv6_text(1, 4), "DestinationUnreachable(Port)");
    }

    #[test]
    fn icmp_summary_of_a_flow() {
        let mut flow = crate::testing::curl_to_webpod();
        flow.l4 = Some(Layer4::Icmpv4 { r#type: 0, code: 0 });
        assert_eq!(summary(&flow), "ICMPv4 EchoReply");
    }
}
